"""End to end: hosts on Linux bridges in namespaces, driven through the ``tna`` command.

Each acceptance point of the bridge fast path: learning then fast path, a host moving to
another port, ports and FDB entries going away, STP port states, ageing with the fast path
refreshing the kernel's entries, routing between bridges, and br_netfilter / nft bridge rules.
Every negative assertion has a positive control before it; waits poll, they never sleep and hope.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time
from collections.abc import Iterator

import pytest

from testing.netns_helpers import ifindex, mirror_learnt, mirror_port, port_stats
from tna import abi, introspect, netns, traffic
from tna.datapath.pins import open_map
from tna.model import FdbEntry
from tna.testbed import BridgeTopology, Testbed, wait_for
from tna.testbed import run_tna as tna
from tna.testbed import tna_stats as stats

pytestmark = pytest.mark.root


def kernel_fdb(t: BridgeTopology) -> dict[str, FdbEntry]:
    """MAC -> the kernel's entry, for learnt (dynamic) entries."""
    with netns.entered(t.sw):
        return {e.mac: e for e in introspect.fdb() if e.ageing}


@pytest.fixture
def three() -> Iterator[BridgeTopology]:
    with Testbed(prefix="tnabre2e") as bed:
        yield BridgeTopology.build(bed, {"br0": 3})


def test_three_hosts_fast_after_learning(three: BridgeTopology) -> None:
    t = three
    assert stats(t.sw)["bridged_packets"] == 0  # control: nothing counted before apply
    tna(t.sw, "apply")
    # Nothing is learnt yet: the first frames go to the kernel bridge, which learns and floods.
    assert t.reaches("h1", "h2") and t.reaches("h1", "h3") and t.reaches("h2", "h3")
    p1 = port_stats(t, "p1")
    assert p1["punt_reasons"].get("learn", 0) + p1["punt_reasons"].get("broadcast", 0) >= 1
    for a in ("h1", "h2", "h3"):
        wait_for(mirror_learnt(t, a, behind=t.port[a]), what=f"mirror learning {a}")
    before = {p: port_stats(t, p) for p in ("p1", "p2", "p3")}
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=200) == 200
    assert traffic.tcp(t.hosts["h3"], t.hosts["h1"], t.v6["h1"], size=1 << 20) == 1 << 20
    assert t.ping("h2", "h3", "-i", "0.01", count=20).returncode == 0
    after = {p: port_stats(t, p) for p in ("p1", "p2", "p3")}
    assert after["p1"]["bridged_packets"] - before["p1"]["bridged_packets"] >= 200
    assert after["p3"]["bridged_packets"] - before["p3"]["bridged_packets"] >= 700 + 20
    assert after["p2"]["transmitted_packets"] - before["p2"]["transmitted_packets"] >= 200
    doc = stats(t.sw)
    assert doc["forwarded_packets"] == 0  # nothing routed: bridged and routed are apart
    assert doc["bridged_packets"] >= 900 and doc["bridged_bytes"] > 1 << 20
    assert "bridged" not in doc["punt_reasons"]


def test_plan_explains_each_bridge_port(three: BridgeTopology) -> None:
    t = three
    t.bed.run(t.sw, "ip", "link", "set", "p3", "type", "bridge_slave", "learning", "off")
    plan = json.loads(tna(t.sw, "plan", "--json").stdout)
    ifs = {i["ifname"]: i for i in plan["interfaces"]}
    assert ifs["p1"]["features"] == ["verify_l4_csum", "bridge_port",
                                     "bridge_ipv4_br_netfilter", "bridge_ipv6_br_netfilter"]
    assert ifs["p1"]["bridge_port"] == {"bridge": ifindex(t, "br0"), "forwarding": True,
                                        "punt": []}
    assert {s["reason"] for s in ifs["p1"]["slow_path"]} == {"bridge_flood_learn"}
    assert ifs["p3"]["bridge_port"]["punt"] == ["learning off"]
    assert "port_flags" in {s["reason"] for s in ifs["p3"]["slow_path"]}
    assert ifs["br0"]["features"] is None and ifs["br0"]["bridge"]
    text = tna(t.sw, "plan").stdout
    assert "p3: fast path: verify_l4_csum, bridge_port" in text and "learning off" in text


def test_host_moving_to_another_port_is_followed(three: BridgeTopology) -> None:
    """h2 reappears behind p4 (its old port stays up, as when a VM migrates): from the first
    frame it sends there, nothing more goes to p2 and nothing is lost."""
    t = three
    new = t.bed.ns("h2new")
    t.bed.veth(new, "eth0", t.sw, "p4")
    t.bed.gro(new, "eth0")
    t.bed.tx_csum_offload(new, "eth0", False)
    t.bed.run(t.sw, "ip", "link", "set", "p4", "master", "br0")
    tna(t.sw, "apply")
    t.prime(("h1", "h2"), ("h3", "h2"))
    wait_for(lambda: mirror_port(t, t.mac["h2"]) == ifindex(t, "p2"), what="h2 behind p2")
    before = port_stats(t, "p1")["bridged_packets"]
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=50) == 50  # control
    assert port_stats(t, "p1")["bridged_packets"] - before >= 50  # fast, to p2

    # the move: h2 lets go of its address and MAC, h2new takes them behind p4
    t.bed.run(t.hosts["h2"], "ip", "addr", "flush", "dev", "eth0")
    t.bed.run(t.hosts["h2"], "ip", "link", "set", "eth0", "address", "02:00:0a:00:00:77")
    t.bed.run(new, "ip", "link", "set", "eth0", "address", t.mac["h2"])
    t.bed.run(new, "ip", "addr", "add", f"{t.v4['h2']}/24", "dev", "eth0")
    assert t.fdb_port("h2") == "p2"  # the kernel still has it behind p2
    p2_tx = port_stats(t, "p2")["transmitted_packets"]

    # first frame from the new port: an echo request to h1; its reply must find p4 at once
    assert t.bed.run(new, "ping", "-n", "-c", "1", "-W", "1", t.v4["h1"],
                     check=False).returncode == 0
    assert t.fdb_port("h2") == "p4"
    assert traffic.udp(t.hosts["h1"], new, t.v4["h2"], count=100) == 100  # no black hole
    assert port_stats(t, "p2")["transmitted_packets"] == p2_tx  # nothing to the old port
    # and the mirror follows: h2 is fast again, now through p4
    wait_for(lambda: mirror_port(t, t.mac["h2"]) == ifindex(t, "p4"), what="h2 behind p4")
    p4_tx = port_stats(t, "p4")["transmitted_packets"]
    assert traffic.udp(t.hosts["h1"], new, t.v4["h2"], count=100) == 100
    assert port_stats(t, "p4")["transmitted_packets"] - p4_tx >= 100
    assert port_stats(t, "p2")["transmitted_packets"] == p2_tx


def test_removed_port_and_deleted_entries_stop_forwarding(three: BridgeTopology) -> None:
    t = three
    # h3 must stay quiet once its entry is deleted: no neighbour probes either way, no IPv6
    t.bed.run(t.hosts["h1"], "ip", "neigh", "replace", t.v4["h3"], "lladdr", t.mac["h3"],
              "dev", "eth0", "nud", "permanent")
    t.bed.run(t.hosts["h3"], "ip", "neigh", "replace", t.v4["h1"], "lladdr", t.mac["h1"],
              "dev", "eth0", "nud", "permanent")
    t.bed.sysctl(t.hosts["h3"], "net.ipv6.conf.all.disable_ipv6", "1")
    tna(t.sw, "apply")
    t.prime(("h1", "h2"), ("h1", "h3"))
    for host in ("h2", "h3"):
        wait_for(mirror_learnt(t, host), what=f"mirror {host}")
    p3_tx = port_stats(t, "p3")["transmitted_packets"]
    assert traffic.udp(t.hosts["h1"], t.hosts["h3"], t.v4["h3"], count=20) == 20  # control
    assert port_stats(t, "p3")["transmitted_packets"] - p3_tx >= 20

    # an FDB entry deleted: frames to h3 go to the kernel (flooded, still delivered)
    t.bed.run(t.sw, "bridge", "fdb", "del", t.mac["h3"], "dev", "p3", "master")
    wait_for(lambda: mirror_port(t, t.mac["h3"]) is None, what="mirror dropping h3")
    p3_tx = port_stats(t, "p3")["transmitted_packets"]
    unknown = port_stats(t, "p1")["punt_reasons"].get("unknown_unicast", 0)
    assert traffic.udp(t.hosts["h1"], t.hosts["h3"], t.v4["h3"], count=20) == 20
    assert port_stats(t, "p3")["transmitted_packets"] == p3_tx
    assert port_stats(t, "p1")["punt_reasons"]["unknown_unicast"] - unknown >= 20

    # a static entry added by hand is used at once (once mirrored)
    t.bed.run(t.sw, "bridge", "fdb", "add", t.mac["h3"], "dev", "p3", "master", "static")
    wait_for(lambda: mirror_port(t, t.mac["h3"]) == ifindex(t, "p3"), what="static entry")
    assert traffic.udp(t.hosts["h1"], t.hosts["h3"], t.v4["h3"], count=20) == 20
    assert port_stats(t, "p3")["transmitted_packets"] - p3_tx >= 20

    # a port leaving the bridge: Linux no longer reaches h2, and neither does the fast path
    p2_tx = port_stats(t, "p2")["transmitted_packets"]
    t.bed.run(t.sw, "ip", "link", "set", "p2", "nomaster")
    wait_for(lambda: mirror_port(t, t.mac["h2"]) is None, what="mirror dropping p2's hosts")
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20) == 0
    assert port_stats(t, "p2")["transmitted_packets"] == p2_tx

    # a port deleted (with its host's end): its device leaves the redirect map at once
    bridged = port_stats(t, "p1")["bridged_packets"]
    t.bed.run(t.sw, "ip", "link", "del", "p3")
    assert t.ping("h1", "h3", "-i", "0.01", count=5).returncode != 0
    assert port_stats(t, "p1")["bridged_packets"] == bridged
    wait_for(lambda: mirror_port(t, t.mac["h3"]) is None, what="mirror dropping p3's hosts")


def _udp_both(t: BridgeTopology) -> tuple[int, int]:
    return (traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20),
            traffic.udp(t.hosts["h2"], t.hosts["h1"], t.v4["h1"], count=20))


@pytest.mark.parametrize("state", ["learning", "listening", "disabled"])
def test_port_not_forwarding_stops_exactly_as_linux(three: BridgeTopology, state: str) -> None:
    """STP states set by hand (with STP off the kernel turns "blocking" straight back into
    forwarding; see the kernel-STP test below for a real blocking port)."""
    t = three
    t.prime(("h1", "h2"))
    t.bed.run(t.sw, "bridge", "link", "set", "dev", "p2", "state", state)
    linux = _udp_both(t)
    assert linux == (0, 0)  # control: the kernel neither forwards to nor from p2
    t.bed.run(t.sw, "bridge", "link", "set", "dev", "p2", "state", "forwarding")
    tna(t.sw, "apply")
    t.prime(("h1", "h2"))
    wait_for(lambda: mirror_port(t, t.mac["h2"]) is not None, what="mirror h2")
    assert _udp_both(t) == (20, 20)  # control: fast both ways
    before = port_stats(t, "p1")["punt_reasons"].get("port_state", 0)
    t.bed.run(t.sw, "bridge", "link", "set", "dev", "p2", "state", state)
    wait_for(lambda: _brport_forwarding(t, "p2") is False, what="tna_brports following STP")
    assert _udp_both(t) == linux
    assert port_stats(t, "p1")["punt_reasons"]["port_state"] - before >= 20
    t.bed.run(t.sw, "bridge", "link", "set", "dev", "p2", "state", "forwarding")
    wait_for(lambda: _brport_forwarding(t, "p2") is True, what="port forwarding again")
    t.prime(("h1", "h2"))
    wait_for(lambda: mirror_port(t, t.mac["h2"]) is not None, what="mirror h2 again")
    bridged = port_stats(t, "p1")["bridged_packets"]
    assert _udp_both(t) == (20, 20)
    assert port_stats(t, "p1")["bridged_packets"] - bridged >= 20


def _brport_forwarding(t: BridgeTopology, port: str) -> bool | None:
    index = ifindex(t, port)
    with netns.entered(t.sw):
        m = open_map("tna_brports")
        try:
            raw = m.lookup(struct.pack("=I", index))
        finally:
            m.close()
    if raw is None:
        return None
    return bool(abi.TnaBrport.from_buffer_copy(raw).flags & abi.TNA_BRPORT_FORWARDING)


def test_kernel_stp_blocking_port_is_not_forwarded_to() -> None:
    """A loop through a second switch: kernel STP blocks one uplink of br0. Nothing is sent
    out of the blocked uplink; when the forwarding uplink fails, traffic flows again only once
    STP has moved the other one to forwarding, and then by the fast path."""
    with Testbed(prefix="tnabre2e") as bed:
        t = BridgeTopology.build(bed, {"br0": 1}, stp=True)
        ext = bed.ns("ext")
        bed.run(ext, "ip", "link", "add", "extbr", "type", "bridge", "stp_state", "1",
                "forward_delay", "200", "priority", "100")  # ext is the root bridge
        bed.run(ext, "ip", "link", "set", "extbr", "up")
        for up, down in (("u1", "v1"), ("u2", "v2")):
            bed.veth(t.sw, up, ext, down)
            bed.gro(ext, down)  # so the uplinks take XDP frames
            bed.run(t.sw, "ip", "link", "set", up, "master", "br0")
            bed.run(ext, "ip", "link", "set", down, "master", "extbr")
        h2 = bed.ns("h2")
        bed.veth(h2, "eth0", ext, "v3")
        bed.gro(h2, "eth0")
        bed.tx_csum_offload(h2, "eth0", False)
        bed.run(ext, "ip", "link", "set", "v3", "master", "extbr")
        bed.run(h2, "ip", "addr", "add", "10.10.0.2/24", "dev", "eth0")

        def states() -> dict[str, str]:
            out = {}
            for line in bed.run(t.sw, "bridge", "link", "show").stdout.splitlines():
                w = line.split()
                out[w[1].split("@")[0].rstrip(":")] = w[w.index("state") + 1]
            return out

        wait_for(lambda: {states().get("u1"), states().get("u2")} == {"forwarding",
                                                                      "blocking"},
                 timeout=20, what="STP converging")
        live = next(u for u in ("u1", "u2") if states()[u] == "forwarding")
        blocked = "u2" if live == "u1" else "u1"
        tna(t.sw, "apply")
        wait_for(lambda: t.reaches("h1", "10.10.0.2"), timeout=10, what="h1 reaching h2")
        wait_for(lambda: _brport_forwarding(t, blocked) is False, what="blocked in the map")
        h2_mac = bed.run(h2, "cat", "/sys/class/net/eth0/address").stdout.strip()
        wait_for(lambda: mirror_port(t, h2_mac) == ifindex(t, live), what="mirror h2")
        assert traffic.udp(t.hosts["h1"], h2, "10.10.0.2", count=50) == 50
        assert port_stats(t, live)["transmitted_packets"] >= 50  # fast, through the live uplink
        assert port_stats(t, blocked)["transmitted_packets"] == 0

        bed.run(ext, "ip", "link", "set", "v1" if live == "u1" else "v2", "down")
        wait_for(lambda: states()[blocked] != "blocking", timeout=10, what="STP reacting")
        # listening / learning: the kernel does not forward yet, nor does the fast path
        if states()[blocked] in ("listening", "learning"):
            sent_while = traffic.udp(t.hosts["h1"], h2, "10.10.0.2", count=20)
            assert port_stats(t, blocked)["transmitted_packets"] == 0
            assert sent_while in (0, 20)  # 20 only if STP finished during the burst
        wait_for(lambda: states()[blocked] == "forwarding", timeout=20, what="STP forwarding")
        wait_for(lambda: t.reaches("h1", "10.10.0.2"), timeout=10, what="h2 reachable again")
        wait_for(lambda: _brport_forwarding(t, blocked) is True, what="forwarding in the map")
        assert traffic.udp(t.hosts["h1"], h2, "10.10.0.2", count=50) == 50
        assert port_stats(t, blocked)["transmitted_packets"] >= 50


def test_fast_flow_keeps_its_entries_while_a_silent_host_ages_out() -> None:
    with Testbed(prefix="tnabre2e") as bed:
        t = BridgeTopology.build(bed, {"br0": 3}, ageing_cs=500)  # 5 s
        bed.sysctl(t.hosts["h3"], "net.ipv6.conf.all.disable_ipv6", "1")  # no RS, no MLD
        tna(t.sw, "apply")
        t.prime(("h1", "h2"))
        # h3 speaks once and then never again (a ping would have h1 probe it 5 s later)
        assert traffic.udp(t.hosts["h3"], t.hosts["h1"], t.v4["h1"], count=1) == 1
        for h in ("h1", "h2", "h3"):
            wait_for(mirror_learnt(t, h), what=f"mirror {h}")
        bridged = port_stats(t, "p1")["bridged_packets"]
        start = time.monotonic()
        flow = subprocess.Popen(["ip", "netns", "exec", t.hosts["h1"], "ping", "-n", "-q", "-i",
                                 "0.1", "-w", "9", t.v4["h2"]], stdout=subprocess.PIPE,
                                text=True)
        oldest = 0
        while time.monotonic() - start < 8.5:
            entries = kernel_fdb(t)
            for h in ("h1", "h2"):
                assert t.mac[h] in entries, f"{h}'s entry aged out under a fast flow"
                oldest = max(oldest, entries[t.mac[h]].updated_cs)
            time.sleep(0.25)
        out, _ = flow.communicate(timeout=10)
        assert " 0% packet loss" in out
        assert t.mac["h3"] not in kernel_fdb(t)  # silent for > 5 s: aged out, as in Linux
        wait_for(lambda: mirror_port(t, t.mac["h3"]) is None, what="mirror dropping h3")
        assert oldest < 300  # refreshed well before the 5 s ageing time
        assert port_stats(t, "p1")["bridged_packets"] - bridged >= 70  # ~85 requests, fast
        # the refreshed entries are still ordinary learnt entries
        shown = t.bed.run(t.sw, "bridge", "fdb", "show", "br", "br0").stdout
        assert any(line.startswith(t.mac["h1"]) and "permanent" not in line
                   and "static" not in line for line in shown.splitlines())


def test_two_bridges_routed_both_ways() -> None:
    with Testbed(prefix="tnabre2e") as bed:
        t = BridgeTopology.build(bed, {"br0": 2, "br1": 2}, svi=True)
        t.prime(("h1", "h3"), ("h2", "h4"), ("h1", "h2"))
        plan = json.loads(tna(t.sw, "plan", "--json").stdout)
        ifs = {i["ifname"]: i for i in plan["interfaces"]}
        assert "ipv4_router" in ifs["p1"]["features"] and "bridge_egress" in ifs["p1"]["features"]
        assert ifs["br0"]["egress"] and ifs["br1"]["egress"]
        tna(t.sw, "apply")
        t.prime(("h1", "h3"), ("h3", "h1"))
        for h in ("h1", "h3"):
            wait_for(mirror_learnt(t, h), what=f"mirror {h}")
        before = {p: port_stats(t, p) for p in ("p1", "p3")}
        assert traffic.udp(t.hosts["h1"], t.hosts["h3"], t.v4["h3"], count=100) == 100
        assert traffic.udp(t.hosts["h3"], t.hosts["h1"], t.v4["h1"], count=100) == 100
        assert traffic.tcp(t.hosts["h1"], t.hosts["h3"], t.v6["h3"], size=256 << 10) == 256 << 10
        after = {p: port_stats(t, p) for p in ("p1", "p3")}
        for p in ("p1", "p3"):
            assert after[p]["forwarded_packets"] - before[p]["forwarded_packets"] >= 100
        assert after["p3"]["transmitted_packets"] - before["p3"]["transmitted_packets"] >= 100
        assert after["p1"]["transmitted_packets"] - before["p1"]["transmitted_packets"] >= 100
        # switching inside a bridge goes on beside it, counted apart
        bridged = port_stats(t, "p1")["bridged_packets"]
        assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=50) == 50
        assert port_stats(t, "p1")["bridged_packets"] - bridged >= 50
        ttl = t.ping("h1", "h3", "-t", "1").stdout
        assert "Time to live exceeded" in ttl  # Linux still answers what it must


def test_iptables_rule_on_bridged_traffic_keeps_it_in_the_kernel(three: BridgeTopology) -> None:
    t = three
    assert t.bed.run(t.sw, "cat", "/proc/sys/net/bridge/bridge-nf-call-iptables").stdout.strip() \
        == "1"  # br_netfilter is built into this kernel, on by default
    tna(t.sw, "apply")
    t.prime(("h1", "h2"))
    wait_for(lambda: mirror_port(t, t.mac["h2"]) is not None, what="mirror h2")
    bridged = port_stats(t, "p1")["bridged_packets"]
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=9999) == 20
    assert port_stats(t, "p1")["bridged_packets"] - bridged >= 20  # control: fast

    t.bed.run(t.sw, "iptables", "-A", "FORWARD", "-p", "udp", "--dport", "9999", "-j", "DROP")
    plan = json.loads(tna(t.sw, "plan", "--json").stdout)
    p1 = next(i for i in plan["interfaces"] if i["ifname"] == "p1")
    assert "br_netfilter" in {s["reason"] for s in p1["slow_path"]}
    assert "bridge_ipv4_br_netfilter" not in p1["features"]
    assert "bridge_ipv6_br_netfilter" in p1["features"]  # IPv6 never meets iptables
    tna(t.sw, "apply")
    before = port_stats(t, "p1")
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=9999) == 0
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=5300) == 20
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v6["h2"], count=20, port=9999) == 20
    after = port_stats(t, "p1")
    assert after["punt_reasons"]["family_off"] - before["punt_reasons"].get("family_off", 0) >= 40
    assert after["bridged_packets"] - before["bridged_packets"] >= 20  # the IPv6 ones
    rules = t.bed.run(t.sw, "iptables", "-vnxL", "FORWARD").stdout
    assert any(line.split()[0] == "20" and "dpt:9999" in line for line in rules.splitlines())

    # with bridge-nf-call-iptables off, iptables does not see bridged traffic: Linux delivers
    t.bed.sysctl(t.sw, "net.bridge.bridge-nf-call-iptables", "0")
    tna(t.sw, "apply")
    bridged = port_stats(t, "p1")["bridged_packets"]
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=9999) == 20
    assert port_stats(t, "p1")["bridged_packets"] - bridged >= 20


def test_nft_bridge_rule_keeps_the_bridge_in_the_kernel(three: BridgeTopology) -> None:
    t = three
    tna(t.sw, "apply")
    t.prime(("h1", "h2"))
    t.bed.run(t.sw, "nft", "-f", "-", input=(
        "table bridge tnatest {\n chain forward_filter {\n"
        "  type filter hook forward priority 0;\n"
        "  udp dport 9999 counter drop\n }\n}\n"))
    plan = json.loads(tna(t.sw, "plan", "--json").stdout)
    p1 = next(i for i in plan["interfaces"] if i["ifname"] == "p1")
    assert p1["features"] is None
    assert "netfilter_bridge" in {s["reason"] for s in p1["slow_path"]}
    tna(t.sw, "apply")
    rows = json.loads(tna(t.sw, "status", "--json").stdout)["interfaces"]
    assert not any(r["ifname"].startswith("p") for r in rows)  # no program on the ports
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=9999) == 0
    assert traffic.udp(t.hosts["h1"], t.hosts["h2"], t.v4["h2"], count=20, port=5300) == 20
    assert "packets 20 " in t.bed.run(t.sw, "nft", "list", "ruleset").stdout
