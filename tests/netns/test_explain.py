"""``tna explain`` predicts what really happens: each crafted packet is explained (a test run
through the attached program), then the same bytes are sent from h1 and the router's counters
must move exactly where the prediction said."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from testing.netns_helpers import router_with_ruleset
from tna import netns
from tna.datapath import status
from tna.testbed import BridgeTopology, RouterTopology, Testbed, run_tna, wait_for

RULESET = """table inet tnaexplain {
    chain forward {
        type filter hook forward priority 0; policy accept;
        udp dport 9999 drop
        udp dport 8888 counter accept
    }
}
"""

# (name, packet words and options, expected action, reason on r1)
CASES = [
    ("udp4", ["udp", "10.1.0.2:40000", ">", "10.2.0.2:443"], "redirect", "forwarded"),
    ("tcp4_syn", ["tcp", "10.1.0.2:40000", ">", "10.2.0.2:80"], "redirect", "forwarded"),
    ("icmp4", ["icmp", "10.1.0.2", ">", "10.2.0.2"], "redirect", "forwarded"),
    ("udp6", ["udp", "[fd00:1::2]:40000", ">", "[fd00:2::2]:443"], "redirect", "forwarded"),
    ("icmp6_large", ["icmp", "fd00:1::2", ">", "fd00:2::2", "--size", "1000"], "redirect",
     "forwarded"),
    ("ttl1", ["udp", "10.1.0.2", ">", "10.2.0.2", "--ttl", "1"], "pass", "ttl"),
    ("hoplimit1", ["udp", "fd00:1::2", ">", "fd00:2::2", "--ttl", "1"], "pass", "ttl"),
    ("bad_ip_csum", ["udp", "10.1.0.2", ">", "10.2.0.2", "--bad-ip-csum"], "pass", "bad_csum"),
    ("bad_l4_csum", ["udp", "10.1.0.2", ">", "10.2.0.2", "--bad-l4-csum"], "pass", "l4_csum"),
    ("multicast_ip", ["udp", "10.1.0.2", ">", "224.1.1.1"], "pass", "martian"),
    ("no_route", ["tcp", "10.1.0.2:1", ">", "10.9.9.9:80"], "pass", "not_forwarded"),
    ("for_the_router", ["udp", "10.1.0.2", ">", "10.1.0.1"], "pass", "not_forwarded"),
    ("no_neighbour", ["udp", "10.1.0.2", ">", "10.2.0.77"], "pass", "no_neigh"),
    ("firewall_drop", ["udp", "10.1.0.2:5", ">", "10.2.0.2:9999"], "drop", "fw_dropped"),
    ("firewall_other_port", ["udp", "10.1.0.2:5", ">", "10.2.0.2:9998"], "redirect",
     "forwarded"),
    ("firewall_accept", ["udp", "10.1.0.2:5", ">", "10.2.0.2:8888"], "redirect", "forwarded"),
    ("other_mac", ["udp", "10.1.0.2", ">", "10.2.0.2", "--dst-mac", "02:99:00:00:00:01"],
     "pass", "not_for_us"),
    ("broadcast_mac", ["udp", "10.1.0.2", ">", "10.2.0.2", "--dst-mac", "ff:ff:ff:ff:ff:ff"],
     "pass", "l2_multicast"),
    ("link_local6", ["udp", "fe80::1", ">", "fd00:2::2"], "pass", "link_local"),
    ("loopback_src", ["udp", "127.0.0.1", ">", "10.2.0.2"], "pass", "martian"),
    ("own_src", ["udp", "10.2.0.1", ">", "10.2.0.2"], "pass", "martian"),
]


@pytest.fixture(scope="module")
def topo() -> Iterator[RouterTopology]:
    with router_with_ruleset("tnaexpl", RULESET) as t:
        yield t


def counts(ns: str, ifname: str) -> dict[str, int]:
    with netns.entered(ns):
        ifindex = socket.if_nametoindex(ifname)
        return {n: c.packets for n, c in status.read_counters()[ifindex].items()}


def r1_counts(topo: RouterTopology) -> dict[str, int]:
    return counts(topo.r, "r1")


def send(ns: str, frame: bytes) -> None:
    with netns.entered(ns), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind(("eth0", 0))
        s.send(frame)


def h1_mac(topo: RouterTopology) -> str:
    link = json.loads(topo.bed.run(topo.h1, "ip", "-j", "link", "show", "eth0").stdout)
    return str(link[0]["address"])


@pytest.mark.parametrize(("name", "words", "action", "reason"), CASES,
                         ids=[c[0] for c in CASES])
def test_prediction_matches_what_happens(topo: RouterTopology, name: str, words: list[str],
                                         action: str, reason: str) -> None:
    before = r1_counts(topo)
    doc = json.loads(run_tna(topo.r, "explain", "--json", "--in", "r1", "--src-mac",
                             h1_mac(topo), *words).stdout)
    tna = doc["tna"]
    assert (tna["action"], tna["reason"]) == (action, reason), doc
    if action == "redirect":
        assert tna["egress"] == "r2" and tna["src_mac"] != tna["dst_mac"]
        neigh = doc["linux"]["neighbour"]
        assert doc["linux"]["dev"] == "r2" and neigh["lladdr"] == tna["dst_mac"]
    if action == "drop" or name == "firewall_accept":
        assert len(tna["rules"]) == 1 and "tnaexplain" in tna["rules"][0], tna
    else:
        assert tna["rules"] == [], tna
    # the test run was counted, as the output says
    explained = r1_counts(topo)
    assert explained[reason] - before[reason] >= 1

    send(topo.h1, bytes.fromhex(doc["frame"]))
    wait_for(lambda: r1_counts(topo)[reason] > explained[reason], timeout=5,
             what=f"{name}: the real packet counted under {reason}")


def test_text_output_and_errors(topo: RouterTopology) -> None:
    text = run_tna(topo.r, "explain", "--in", "r1", "udp", "10.1.0.2", ">", "10.2.0.2",
                   "--ttl", "1").stdout
    assert "TNA:    to Linux: ttl" in text and "ICMP time exceeded" in text
    assert "Linux:  unicast dev r2" in text and "counted like a real packet" in text
    accepted = run_tna(topo.r, "explain", "--in", "r1", "udp", "10.1.0.2", ">",
                       "10.2.0.2:8888").stdout
    assert "fast path: routed out of r2" in accepted and "accepted by inet tnaexplain" in accepted
    for args, needle in ((["--in", "nope0", "udp", "10.1.0.2", ">", "10.2.0.2"],
                          "no such interface"),
                         (["--in", "lo", "udp", "10.1.0.2", ">", "10.2.0.2"],
                          "not attached"),
                         (["--in", "r1", "udp", "10.1.0.2", "10.2.0.2"], "expected")):
        proc = run_tna(topo.r, "explain", *args, check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def switch() -> Iterator[BridgeTopology]:
    with Testbed(prefix="tnaexplbr") as bed:
        t = BridgeTopology.build(bed, {"br0": 3})
        t.prime(("h1", "h2"), ("h3", "h2"))
        run_tna(t.sw, "apply")
        try:
            yield t
        finally:
            run_tna(t.sw, "detach", check=False)


# (name, destination MAC: a host's or a literal, expected action, reason, Linux's bridge says)
BRIDGE_CASES = [
    ("bridged", "h2", "redirect", "bridged", "out of p2"),
    ("unknown_unicast", "02:00:0a:00:00:77", "pass", "unknown_unicast", "flooded"),
    ("broadcast", "ff:ff:ff:ff:ff:ff", "pass", "broadcast", "flooded (broadcast)"),
    ("bridge_local", "02:00:0a:00:00:fe", "pass", "bridge_local", "up to the bridge"),
]


@pytest.mark.parametrize(("name", "dst", "action", "reason", "linux"), BRIDGE_CASES,
                         ids=[c[0] for c in BRIDGE_CASES])
def test_bridge_prediction_matches_what_happens(switch: BridgeTopology, name: str, dst: str,
                                                action: str, reason: str, linux: str) -> None:
    t = switch
    before = counts(t.sw, "p1")
    proc = run_tna(t.sw, "explain", "--in", "p1", "--src-mac", t.mac["h1"], "--dst-mac",
                   t.mac.get(dst, dst), "udp", t.v4["h1"], ">", t.v4["h2"])
    text = proc.stdout
    assert f"bridge br0: {linux}" in text, text
    doc = json.loads(run_tna(t.sw, "explain", "--json", "--in", "p1", "--src-mac", t.mac["h1"],
                             "--dst-mac", t.mac.get(dst, dst), "udp", t.v4["h1"], ">",
                             t.v4["h2"]).stdout)
    assert (doc["tna"]["action"], doc["tna"]["reason"]) == (action, reason), doc
    if action == "redirect":
        assert doc["tna"]["egress"] == "p2" and doc["tna"]["dst_mac"] == t.mac["h2"]
    explained = counts(t.sw, "p1")
    assert explained[reason] - before[reason] >= 2  # the two test runs were counted
    send(t.hosts["h1"], bytes.fromhex(doc["frame"]))
    wait_for(lambda: counts(t.sw, "p1")[reason] > explained[reason], timeout=5,
             what=f"{name}: the real frame counted under {reason}")
