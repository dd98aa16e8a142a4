"""End to end: h1 -- r -- h2 in namespaces, driven through the ``tna`` command like a user would.

Every negative assertion has a positive control before it, and every "exactly as Linux" claim
is checked by doing the same thing with TNA off and on.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tna import netns, traffic
from tna.datapath.pins import pin_dir
from tna.testbed import RouterTopology, Testbed, wait_for
from tna.testbed import run_tna as tna
from tna.testbed import tna_stats as stats

pytestmark = pytest.mark.root


def iface_stats(ns: str, ifname: str) -> dict[str, Any]:
    return stats(ns)["interfaces"].get(ifname, {"forwarded_packets": 0, "punted_packets": 0,
                                                "punt_reasons": {}})


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with Testbed(prefix="tnae2e") as bed:
        t = RouterTopology.build(bed, mtu2=1280)
        # ICMP errors are rate limited per destination; comparisons send them back to back.
        bed.sysctl(t.r, "net.ipv4.icmp_ratelimit", "0")
        bed.sysctl(t.r, "net.ipv6.icmp.ratelimit", "0")
        t.prime_neighbours()
        yield t


def xdp_attached(t: RouterTopology, ifname: str) -> bool:
    return " xdp" in t.bed.run(t.r, "ip", "-d", "link", "show", ifname).stdout


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_traffic_is_delivered_and_carried_by_the_fast_path(topo: RouterTopology,
                                                           family: str) -> None:
    dst = topo.h2_v4 if family == "ipv4" else topo.h2_v6
    assert stats(topo.r)["forwarded_packets"] == 0  # control: nothing counted before apply
    tna(topo.r, "apply")
    before = iface_stats(topo.r, "r1")["forwarded_packets"]

    assert topo.ping(topo.h1, dst, "-i", "0.01", count=10).returncode == 0
    assert traffic.udp(topo.h1, topo.h2, dst, count=200) == 200
    assert traffic.tcp(topo.h1, topo.h2, dst, size=1 << 20) == 1 << 20

    after = iface_stats(topo.r, "r1")
    # 10 echo requests + 200 datagrams + a TCP connection's ~700 segments, all in XDP
    assert after["forwarded_packets"] - before >= 10 + 200 + 700
    assert iface_stats(topo.r, "r2")["forwarded_packets"] >= 10  # replies and ACKs back
    doc = stats(topo.r)
    assert set(doc) >= {"forwarded_packets", "punted_packets", "punt_reasons", "interfaces"}
    assert isinstance(doc["punt_reasons"], dict) and isinstance(doc["punted_packets"], int)


def _ping_error_line(t: RouterTopology, dst: str, *args: str) -> str:
    # forget path MTUs learnt by an earlier probe, so each probe reaches the router
    for family in ("-4", "-6"):
        t.bed.run(t.h1, "ip", family, "route", "flush", "cache")
    out = t.ping(t.h1, dst, *args).stdout
    return next((ln.split(" icmp_seq")[0] + ln.split("icmp_seq=1")[-1]
                 for ln in out.splitlines() if ln.startswith("From")), "(no ICMP error)")


@pytest.mark.parametrize(("dst_attr", "args", "reason", "expect"), [
    ("h2_v4", ("-t", "1"), "ttl", "Time to live exceeded"),
    ("h2_v6", ("-t", "1"), "ttl", "Time exceeded: Hop limit"),
    ("h2_v4", ("-M", "do", "-s", "1300"), "frag_needed", "mtu = 1280"),
    ("h2_v6", ("-M", "do", "-s", "1300"), "frag_needed", "Packet too big: mtu=1280"),
])
def test_icmp_errors_come_from_linux_exactly_as_without_tna(
        topo: RouterTopology, dst_attr: str, args: tuple[str, ...], reason: str,
        expect: str) -> None:
    dst = getattr(topo, dst_attr)
    linux = _ping_error_line(topo, dst, *args)
    assert expect in linux  # control: Linux itself answers this way
    tna(topo.r, "apply")
    punted = iface_stats(topo.r, "r1")["punt_reasons"].get(reason, 0)
    with_tna = _ping_error_line(topo, dst, *args)
    assert with_tna == linux
    assert iface_stats(topo.r, "r1")["punt_reasons"][reason] == punted + 1


def test_nft_forward_drop_rule_is_enforced_by_the_fast_path(topo: RouterTopology) -> None:
    tna(topo.r, "apply")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20, port=9999) == 20  # control
    topo.bed.run(topo.r, "nft", "-f", "-", input=(
        "table inet tnatest {\n chain forward_filter {\n"
        "  type filter hook forward priority 0;\n  udp dport 9999 counter drop\n }\n}\n"))
    plan = json.loads(tna(topo.r, "plan", "--json").stdout)
    r1 = next(i for i in plan["interfaces"] if i["ifname"] == "r1")
    assert {"firewall_ipv4", "firewall_ipv6"} <= set(r1["features"])
    tna(topo.r, "apply")
    before = iface_stats(topo.r, "r1")

    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20, port=5300) == 20  # positive
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20, port=9999) == 0  # rule works
    after = iface_stats(topo.r, "r1")
    assert after["forwarded_packets"] - before["forwarded_packets"] >= 20  # by the fast path
    assert after["dropped_packets"] - before["dropped_packets"] == 20
    stats = json.loads(tna(topo.r, "stats", "--json").stdout)
    [rule] = [r for r in stats["firewall_rules"] if r["family"] == "inet" and r["packets"]]
    assert (rule["table"], rule["chain"], rule["packets"]) == ("tnatest", "forward_filter", 20)
    ruleset = topo.bed.run(topo.r, "nft", "list", "ruleset").stdout
    assert "packets 0 " in ruleset  # Linux never saw them: the fast path counts them instead


def test_veth_whose_peer_has_no_xdp_and_no_gro_is_not_redirected_to() -> None:
    with Testbed(prefix="tnae2e") as bed:
        t = RouterTopology.build(bed, gro_h2=False)
        t.prime_neighbours()
        tna(t.r, "apply")
        plan = json.loads(tna(t.r, "plan", "--json").stdout)
        r2 = next(i for i in plan["interfaces"] if i["ifname"] == "r2")
        assert not r2["egress"]
        assert "no_xdp_xmit" in {s["reason"] for s in r2["slow_path"]}

        assert traffic.udp(t.h1, t.h2, t.h2_v4, count=50) == 50  # delivered, by Linux
        r1 = iface_stats(t.r, "r1")
        assert r1["forwarded_packets"] == 0
        assert r1["punt_reasons"]["egress"] >= 50
        # control: the reverse direction (into h1, whose veth has GRO on) is fast
        assert traffic.udp(t.h2, t.h1, t.h1_v4, count=50) == 50
        assert iface_stats(t.r, "r2")["forwarded_packets"] >= 50


def test_detach_returns_the_namespace_to_plain_linux(topo: RouterTopology) -> None:
    tna(topo.r, "apply")
    assert xdp_attached(topo, "r1") and xdp_attached(topo, "r2")  # control
    with netns.entered(topo.r):
        pins = pin_dir()
    assert os.path.isdir(pins)
    out = tna(topo.r, "detach").stdout
    assert "2 interface(s)" in out
    assert not xdp_attached(topo, "r1") and not xdp_attached(topo, "r2")
    assert not os.path.exists(pins)
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=50) == 50
    assert stats(topo.r)["forwarded_packets"] == 0
    assert "not attached" in tna(topo.r, "status").stdout


def test_status_shows_features_mode_and_size(topo: RouterTopology) -> None:
    tna(topo.r, "apply")
    rows = json.loads(tna(topo.r, "status", "--json").stdout)["interfaces"]
    assert {r["ifname"] for r in rows} == {"r1", "r2"}
    for r in rows:
        assert r["mode"] == "native"
        # fib_direct_v6 too: the watcher apply leaves follows every change (tna_local_v6)
        assert r["features"] == ["ipv4_router", "ipv6_router", "verify_l4_csum", "fib_direct_v4",
                                 "fib_direct_v6"]
        assert 100 < r["xlated_insns"] < 10000


def test_reapply_replaces_programs_without_detaching(topo: RouterTopology) -> None:
    tna(topo.r, "apply")
    first = {r["ifname"]: r["prog_id"] for r in
             json.loads(tna(topo.r, "status", "--json").stdout)["interfaces"]}
    topo.bed.sysctl(topo.r, "net.ipv4.conf.r1.rp_filter", "1")
    tna(topo.r, "apply")
    rows = json.loads(tna(topo.r, "status", "--json").stdout)["interfaces"]
    r1 = next(r for r in rows if r["ifname"] == "r1")
    assert r1["prog_id"] != first["r1"]
    assert "ipv4_rp_filter_strict" in r1["features"]
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20) == 20
    wait_for(lambda: iface_stats(topo.r, "r1")["forwarded_packets"] >= 20,
             what="forwarding under rp_filter")


def test_local_senders_with_checksum_offload_are_delivered() -> None:
    """Partial checksums from a local veth sender go to Linux, and arrive intact."""
    with Testbed(prefix="tnae2e") as bed:
        t = RouterTopology.build(bed, host_csum_offload=True)
        t.prime_neighbours()
        tna(t.r, "apply")
        assert traffic.udp(t.h1, t.h2, t.h2_v4, count=50) == 50
        assert traffic.tcp(t.h1, t.h2, t.h2_v6, size=256 << 10) == 256 << 10
        assert iface_stats(t.r, "r1")["punt_reasons"]["l4_csum"] >= 50


def test_udp_tunnel_without_outer_checksum_keeps_its_inner_offload() -> None:
    """Outer UDP checksum 0 does not mean "nothing left to offload": a local VXLAN sender
    (IPv4 VXLAN has no outer checksum by default) over a veth hands the router skbs whose
    *inner* TCP checksum is still partial.  Linux completes it on the way out; an XDP redirect
    would send the pseudo-header sum and the far end would drop every segment.  So such frames
    must go to Linux (l4_csum), and the inner connection must work with TNA as without."""
    with Testbed(prefix="tnae2e") as bed:
        t = RouterTopology.build(bed, host_csum_offload=True)
        t.prime_neighbours()
        for ns, local, remote, inner in ((t.h1, t.h1_v4, t.h2_v4, "10.200.0.1/24"),
                                         (t.h2, t.h2_v4, t.h1_v4, "10.200.0.2/24")):
            bed.run(ns, "ip", "link", "add", "vx0", "type", "vxlan", "id", "42", "local", local,
                    "remote", remote, "dstport", "4789", "noudpcsum")
            bed.run(ns, "ip", "link", "set", "vx0", "mtu", "1400", "up")
            bed.run(ns, "ip", "addr", "add", inner, "dev", "vx0")
        tna(t.r, "apply")
        before = iface_stats(t.r, "r1")
        # positive control: the router's fast path is on and carries what it can prove
        assert t.ping(t.h1, t.h2_v4, "-i", "0.01", count=5).returncode == 0
        wait_for(lambda: iface_stats(t.r, "r1")["forwarded_packets"]
                 >= before["forwarded_packets"] + 5, what="echo requests on the fast path")
        assert traffic.tcp(t.h1, t.h2, "10.200.0.2", size=256 << 10) == 256 << 10
        punted = iface_stats(t.r, "r1")["punt_reasons"]["l4_csum"]
        assert punted - before["punt_reasons"].get("l4_csum", 0) >= 100


def test_stats_reasons_are_named(topo: RouterTopology) -> None:
    tna(topo.r, "apply")
    topo.ping(topo.h1, topo.h2_v4, "-t", "1")
    reasons = iface_stats(topo.r, "r1")["punt_reasons"]
    assert reasons["ttl"] == 1
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in reasons)
