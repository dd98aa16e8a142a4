"""The CLI contract: one clear line and a non-zero exit for every expected failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tna.testbed import RouterTopology, Testbed

pytestmark = pytest.mark.root


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tna", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_no_such_namespace() -> None:
    assert_one_line_error(run("--netns", "tna-does-not-exist", "show"), "no such network namespace")


@pytest.mark.parametrize("args", [("frobnicate",), ("stats", "--bogus"), ("--netns",)])
def test_bad_arguments(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "usage:" in proc.stderr


def test_no_command_prints_usage() -> None:
    proc = run()
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_demo_refuses_netns() -> None:
    assert_one_line_error(run("--netns", "x", "demo"), "drop --netns")


def test_commands_in_an_empty_namespace(bed: Testbed) -> None:
    ns = bed.ns("empty")
    show = json.loads(run("--netns", ns, "show", "--json").stdout)
    assert [lk["ifname"] for lk in show["links"]] == ["lo"]
    plan = json.loads(run("--netns", ns, "plan", "--json").stdout)
    assert plan["interfaces"] == []
    stats = json.loads(run("--netns", ns, "stats", "--json").stdout)
    assert stats == {"since": None, "created": None, "reset": None,
                     "forwarded_packets": 0, "forwarded_bytes": 0, "bridged_packets": 0,
                     "bridged_bytes": 0, "dropped_packets": 0, "punted_packets": 0,
                     "punt_reasons": {}, "interfaces": {}, "legend": {}, "firewall_rules": []}
    assert json.loads(run("--netns", ns, "status", "--json").stdout) == {"interfaces": [],
                                                                         "daemon": None}
    assert "0 interface(s)" in run("--netns", ns, "detach").stdout
    text = run("--netns", ns, "show")
    assert text.returncode == 0 and "lo" in text.stdout


@pytest.mark.parametrize(("netns", "needle"), [
    ("", "empty --netns"),
    ("../../etc", "bad network namespace name '../../etc'"),
    ("/etc", "/etc is not a network namespace"),
    ("/proc/999999999/ns/net", "no such network namespace")])
def test_bad_namespace_paths(netns: str, needle: str) -> None:
    assert_one_line_error(run("--netns", netns, "show"), needle)


def test_namespace_by_path_and_options_after_the_command(bed: Testbed) -> None:
    ns = bed.ns("path")
    by_name = json.loads(run("show", "-n", ns, "-j").stdout)
    by_path = json.loads(run("-j", "show", "--netns", f"/run/netns/{ns}").stdout)
    assert [lk["ifname"] for lk in by_path["links"]] == ["lo"]
    assert by_path["links"] == by_name["links"]
    assert {a["family"] for a in by_path["addresses"]} == {"inet", "inet6"}


def test_stats_without_programs_says_not_attached(bed: Testbed) -> None:
    ns = bed.ns("fw")
    bed.run(ns, "nft", "-f", "-", input="table inet t {\nchain f {\ntype filter hook forward "
            "priority 0; policy accept;\ntcp dport 22 drop\n}\n}\n")
    proc = run("-n", ns, "stats")
    assert proc.returncode == 0 and not proc.stderr
    assert proc.stdout == "TNA is not attached in this namespace\n"
    assert "differ" not in proc.stdout
    assert json.loads(run("-n", ns, "stats", "-j").stdout)["firewall_rules"] == []


def test_apply_and_detach_json_say_what_they_did(bed: Testbed) -> None:
    ns = bed.ns("lonely")
    applied = json.loads(run("-n", ns, "apply", "-j").stdout)
    assert applied["attached"] is False and applied["forwards"] is False
    assert applied["changes"] == {}
    assert json.loads(run("-n", ns, "detach", "-j").stdout) == {"detached": 0}


def test_apply_json_tells_attached_but_forwarding_nothing(bed: Testbed) -> None:
    t = RouterTopology.build(bed, gro_h2=False)
    bed.gro(t.h1, "eth0", False)  # no veth peer takes redirected frames now
    applied = json.loads(run("-n", t.r, "-j", "apply").stdout)
    assert applied["attached"] is True and applied["forwards"] is False
    assert {i["ifname"]: i["egress"] for i in applied["interfaces"]} == {"r1": False,
                                                                        "r2": False}
    reasons = {s["reason"] for i in applied["interfaces"] for s in i["slow_path"]}
    assert "no_xdp_xmit" in reasons
    bed.gro(t.h1, "eth0", True)  # control: one peer with GRO makes it forward
    assert json.loads(run("-n", t.r, "-j", "apply").stdout)["forwards"] is True
