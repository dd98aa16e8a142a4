"""Operator guidance: on default veths (peers without GRO, senders offloading checksums) TNA
says it can forward nothing and prints the exact fix; following it makes the fast path work.
"""

from __future__ import annotations

import json
import shlex

import pytest

from tna import traffic
from tna.testbed import RouterTopology, Testbed, run_tna, sh, tna_stats

pytestmark = pytest.mark.root


def fixes(text: str) -> list[str]:
    return [line.split("fix: ", 1)[1] for line in text.splitlines()
            if line.strip().startswith("fix: ")]


def default_veths(bed: Testbed) -> RouterTopology:
    """The router topology as a user's veths come: GRO off on both hosts, TX checksum
    offload on."""
    t = RouterTopology.build(bed, gro_h2=False, host_csum_offload=True)
    bed.gro(t.h1, "eth0", False)
    return t


def forwarded(ns: str) -> int:
    return int(tna_stats(ns)["forwarded_packets"])


def test_default_veths_apply_and_doctor_print_the_fix_that_works(bed: Testbed) -> None:
    t = default_veths(bed)
    t.prime_neighbours()
    applied = run_tna(t.r, "apply")
    assert "WARNING" in applied.stderr and "can forward nothing" in applied.stderr
    gro_fixes = {f"ip netns exec {t.h1} ethtool -K eth0 gro on",
                 f"ip netns exec {t.h2} ethtool -K eth0 gro on"}
    assert set(fixes(applied.stdout)) >= gro_fixes, applied.stdout
    assert "expected fast-path share: none" in applied.stdout
    as_json = json.loads(run_tna(t.r, "apply", "--json").stdout)
    assert as_json["attached"] and not as_json["forwards"]
    assert {n: s["share"] for n, s in as_json["guidance"]["interfaces"].items()} == {
        "r1": "none", "r2": "none"}
    doctor = run_tna(t.r, "doctor")
    assert set(fixes(doctor.stdout)) >= gro_fixes, doctor.stdout
    found = json.loads(run_tna(t.r, "doctor", "-j").stdout)["findings"]
    assert gro_fixes <= {f["fix"] for f in found if f["reason"] == "no_xdp_xmit"}
    # as advertised: nothing is forwarded by the fast path
    assert t.ping(t.h1, t.h2_v4, count=3).returncode == 0
    assert forwarded(t.r) == 0

    for cmd in gro_fixes:  # the operator follows the advice
        sh(shlex.split(cmd))
    applied = run_tna(t.r, "apply")
    assert "WARNING" not in applied.stderr
    # the hosts still offload TX checksums: their own TCP/UDP stays on Linux, and it says so
    tx_fixes = {f"ip netns exec {t.h1} ethtool -K eth0 tx off",
                f"ip netns exec {t.h2} ethtool -K eth0 tx off"}
    assert set(fixes(applied.stdout)) == tx_fixes, applied.stdout
    assert "expected fast-path share: partial" in applied.stdout
    assert t.ping(t.h1, t.h2_v4, count=3).returncode == 0
    assert forwarded(t.r) >= 3  # ICMP: the fast path moves

    before = tna_stats(t.r)["punt_reasons"].get("l4_csum", 0)
    assert traffic.udp(t.h1, t.h2, t.h2_v4, count=50) == 50
    assert tna_stats(t.r)["punt_reasons"].get("l4_csum", 0) >= before + 50
    for cmd in tx_fixes:
        sh(shlex.split(cmd))
    applied = run_tna(t.r, "apply")
    assert fixes(applied.stdout) == [] and "expected fast-path share: all" in applied.stdout
    n = forwarded(t.r)
    assert traffic.udp(t.h1, t.h2, t.h2_v4, count=50) == 50
    assert forwarded(t.r) >= n + 50  # local senders' UDP now takes the fast path too


def test_doctor_on_a_healthy_router_finds_nothing_to_fix(bed: Testbed) -> None:
    t = RouterTopology.build(bed)
    run_tna(t.r, "apply")
    out = run_tna(t.r, "doctor").stdout
    assert "expected fast-path share: all" in out and fixes(out) == []
