"""The bridge path of the production XDP object through BPF_PROG_TEST_RUN, in a namespace with
real bridges, ports, FDB entries and routes; the maps are filled by the FDB mirror from the
kernel's own tables (``tna.datapath.fdb``), as ``tna apply`` fills them.

Table-driven like tests/bpf/test_xdp_router.py: every forward case states the exact output
frame, every punt case the one counter that must move (the reason, by name).
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Packet, Raw

from testing.bpf_helpers import (
    XDP_PASS,
    XDP_REDIRECT,
    clear_map,
    counted_run,
    counters,
    forwarded_v4,
    forwarded_v6,
)
from testing.datapath_hooks import load_for_test, sync_ports_for_test
from tna import abi, control, introspect, netns
from tna.datapath import fdb
from tna.datapath.pins import open_map
from tna.model import FdbEntry
from tna.plan.types import Features, Port
from tna.testbed import Testbed

pytestmark = pytest.mark.root

BR0_MAC, BR1_MAC = "02:00:00:00:b0:00", "02:00:00:00:b1:00"
R1_MAC = "02:00:00:00:30:fe"
H = {k: f"02:00:00:00:00:{k:02x}" for k in range(1, 10)}  # hosts behind br0 ports
G1, G9 = "02:00:00:00:01:01", "02:00:00:00:01:09"  # behind br1: in its FDB, and not
UNKNOWN = "02:00:00:00:00:99"

BRIDGE = Features(bridge_port=True, bridge_ipv4=1, bridge_ipv6=1)
BRNF = Features(bridge_port=True, bridge_ipv4=2, bridge_ipv6=2)
VETH = Features(verify_l4_csum=True, bridge_port=True, bridge_ipv4=1, bridge_ipv6=1)
SVI = Features(ipv4_router=True, ipv6_router=True, bridge_port=True, bridge_ipv4=1,
               bridge_ipv6=1, bridge_egress=True)
ROUTER = Features(ipv4_router=True, ipv6_router=True, bridge_egress=True)


@dataclass
class Switch:
    bed: Testbed
    ns: str
    ifindex: dict[str, int]
    mac: dict[str, str]
    prog_fd: int = -1
    features: Features = field(default_factory=Features)


def _ifindex(bed: Testbed, ns: str, ifname: str) -> int:
    return int(bed.run(ns, "cat", f"/sys/class/net/{ifname}/ifindex").stdout)


def _mac(bed: Testbed, ns: str, ifname: str) -> str:
    return bed.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()


@pytest.fixture(scope="module")
def switch() -> Iterator[Switch]:
    """sw: br0 (10.10/24) with ports p1..p7, br1 (10.20/24) with q1, and r1 (10.30/24).

    Hosts H[k] are static FDB entries behind pk (H7 behind p2: it "moves" to p1 in a test).
    p3 has MTU 1400, p4 is listening (STP, set by hand: with STP off the kernel turns a port
    set to "blocking" straight back to forwarding), p5 isolated, p6 not an eligible egress,
    p7 learning off.
    """
    with Testbed(prefix="tnabr") as bed:
        sw, h = bed.ns("sw"), bed.ns("h")
        for br, mac, v4, v6 in (("br0", BR0_MAC, "10.10.0.254/24", "fd00:10::fe/64"),
                                ("br1", BR1_MAC, "10.20.0.254/24", "fd00:20::fe/64")):
            bed.run(sw, "ip", "link", "add", br, "type", "bridge")
            bed.run(sw, "ip", "link", "set", br, "address", mac, "up")
            bed.run(sw, "ip", "addr", "add", v4, "dev", br)
            bed.run(sw, "ip", "addr", "add", v6, "dev", br)
        ports = [f"p{k}" for k in range(1, 8)]
        for i, port in enumerate([*ports, "q1", "r1"]):
            bed.veth(sw, port, h, f"x{i}", mtu=1400 if port == "p3" else None)
            if port != "r1":
                bed.run(sw, "ip", "link", "set", port, "master", "br0" if port[0] == "p" else "br1")
        bed.run(sw, "ip", "link", "set", "r1", "address", R1_MAC)
        bed.run(sw, "ip", "addr", "add", "10.30.0.254/24", "dev", "r1")
        bed.run(sw, "ip", "addr", "add", "fd00:30::fe/64", "dev", "r1")
        bed.sysctl(sw, "net.ipv4.ip_forward", "1")
        bed.sysctl(sw, "net.ipv6.conf.all.forwarding", "1")
        for k in range(1, 8):
            bed.run(sw, "bridge", "fdb", "add", H[k], "dev", "p2" if k == 7 else f"p{k}",
                    "master", "static")
        bed.run(sw, "bridge", "fdb", "add", G1, "dev", "q1", "master", "static")
        bed.run(sw, "bridge", "link", "set", "dev", "p4", "state", "1")  # listening
        bed.run(sw, "ip", "link", "set", "p5", "type", "bridge_slave", "isolated", "on")
        bed.run(sw, "ip", "link", "set", "p7", "type", "bridge_slave", "learning", "off")
        for addr, mac in (("10.20.0.1", G1), ("10.20.0.9", G9), ("fd00:20::1", G1),
                          ("10.10.0.2", H[2]), ("10.30.0.1", "02:00:00:00:30:01")):
            bed.run(sw, "ip", "neigh", "add", addr, "lladdr", mac, "dev",
                    "br0" if addr.startswith("10.10") else "r1" if addr.startswith("10.30")
                    else "br1", "nud", "permanent")
        names = [*ports, "q1", "r1", "br0", "br1"]
        yield Switch(bed, sw, {n: _ifindex(bed, sw, n) for n in names},
                     {n: _mac(bed, sw, n) for n in names})


def _reset_mirror(sw: Switch) -> None:
    """tna_fdb and tna_brports exactly as the kernel has them, with no fast-path state."""
    clear_map("tna_fdb")
    bridges = {sw.ifindex["br0"], sw.ifindex["br1"]}
    mirror = fdb.FdbMirror()
    mirror.sync_ports(control.current_ports(bridges))
    mirror.full_sync(introspect.fdb(), bridges)


@contextlib.contextmanager
def program(sw: Switch, features: Features, ingress: str = "p1") -> Iterator[None]:
    """Load the object with ``features`` for ``ingress``; fill the maps as apply would."""
    with netns.entered(sw.ns):
        prog = load_for_test(features)
        try:
            ports = [Port(sw.ifindex[n], n, sw.mac[n], n != "p6",
                          features if n == ingress else None)
                     for n in (*(f"p{k}" for k in range(1, 8)), "q1", "r1")]
            ports += [Port(sw.ifindex[b], b, sw.mac[b], True, None, bridge=True)
                      for b in ("br0", "br1")]
            sync_ports_for_test(ports)
            _reset_mirror(sw)
            sw.prog_fd, sw.features = prog.fd, features
            yield
        finally:
            prog.close()


def run(sw: Switch, frame: bytes, ingress: str = "p1") -> tuple[int, bytes, dict[str, int]]:
    """One test run (inside the namespace): verdict, output frame, ingress counters moved."""
    return counted_run(sw.prog_fd, frame, sw.ifindex[ingress])


def v4(src: str = H[1], dst: str = H[2], **ip: Any) -> Packet:
    return Ether(src=src, dst=dst) / IP(src="10.10.0.1", dst="10.10.0.2", **{"ttl": 64, **ip})


def v6(src: str = H[1], dst: str = H[2], **ip: Any) -> Packet:
    return Ether(src=src, dst=dst) / IPv6(src="fd00:10::1", dst="fd00:10::2",
                                          **{"hlim": 64, **ip})


def wire(pkt: Packet) -> bytes:
    return bytes(Ether(bytes(pkt)))  # lengths and checksums filled in, as on the wire


PAYLOAD = Raw(b"x" * 18)

# name -> (features, frame, expected output (None: unchanged), counter)
SWITCHED: dict[str, tuple[Features, Callable[[], bytes], Callable[[bytes], bytes] | None]] = {
    "ipv4_udp": (BRIDGE, lambda: wire(v4() / UDP(sport=1, dport=2) / PAYLOAD), None),
    "ipv4_tcp": (BRIDGE, lambda: wire(v4() / TCP(flags="A")), None),
    "ipv4_icmp": (BRIDGE, lambda: wire(v4() / ICMP()), None),
    "ipv4_ttl_1_is_switched": (BRIDGE, lambda: wire(v4(ttl=1) / UDP()), None),
    "ipv4_options_without_br_netfilter": (
        BRIDGE, lambda: wire(v4(options=[b"\x94\x04\x00\x00"]) / UDP()), None),
    "ipv4_bad_csum_without_br_netfilter": (
        BRIDGE, lambda: _corrupt_ip_csum(wire(v4() / UDP())), None),
    "ipv4_padding_kept_without_br_netfilter": (
        BRIDGE, lambda: wire(v4() / UDP() / Raw(b"ab")) + b"\0" * 12, None),
    "ipv6_udp": (BRIDGE, lambda: wire(v6() / UDP() / PAYLOAD), None),
    "ipv6_icmp": (BRIDGE, lambda: wire(v6() / ICMPv6EchoRequest()), None),
    "ipv6_link_local_is_switched": (
        BRIDGE, lambda: wire(Ether(src=H[1], dst=H[2]) / IPv6(src="fe80::1", dst="fe80::2")
                             / UDP()), None),
    "ipv4_br_netfilter": (BRNF, lambda: wire(v4() / UDP() / PAYLOAD), None),
    "ipv4_br_netfilter_trims_padding": (
        BRNF, lambda: wire(v4() / UDP() / Raw(b"ab")) + b"\0" * 12, lambda f: f[:-12]),
    "ipv6_br_netfilter_trims_padding": (
        BRNF, lambda: wire(v6() / UDP() / Raw(b"ab")) + b"\0" * 8, lambda f: f[:-8]),
    "veth_udp_checksum_verifies": (VETH, lambda: wire(v4() / UDP() / Raw(b"o" * 19)), None),
    "veth_tcp_checksum_verifies": (VETH, lambda: wire(v6() / TCP(flags="PA") / PAYLOAD), None),
    "to_mtu_exactly": (BRIDGE, lambda: wire(v4(dst=H[3]) / UDP() / Raw(b"m" * (1400 - 28))),
                       None),
    "routing_port_switches_too": (SVI, lambda: wire(v4() / UDP() / PAYLOAD), None),
}


def _corrupt_ip_csum(frame: bytes) -> bytes:
    raw = bytearray(frame)
    raw[24] ^= 0xFF
    return bytes(raw)


@pytest.mark.parametrize("case", sorted(SWITCHED))
def test_switched(switch: Switch, case: str) -> None:
    features, make, expect = SWITCHED[case]
    frame = make()
    with program(switch, features):
        verdict, out, moved = run(switch, frame)
    assert verdict == XDP_REDIRECT
    assert out == (expect(frame) if expect else frame)
    assert moved == {"bridged": 1}


def test_switched_frame_is_counted_at_the_egress(switch: Switch) -> None:
    with program(switch, BRIDGE):
        before = counters(switch.ifindex["p2"]).get("transmitted", 0)
        assert run(switch, wire(v4() / UDP()))[0] == XDP_REDIRECT
        assert counters(switch.ifindex["p2"])["transmitted"] == before + 1


def _routed_v4(pkt: Packet) -> bytes:
    return forwarded_v4(pkt, G1, BR1_MAC)


def _routed_v6(pkt: Packet) -> bytes:
    return forwarded_v6(pkt, G1, BR1_MAC)


def test_routed_from_bridge_into_bridge_ipv4(switch: Switch) -> None:
    pkt = Ether(wire(Ether(src=H[1], dst=BR0_MAC) / IP(src="10.10.0.1", dst="10.20.0.1",
                                                        ttl=64) / UDP() / PAYLOAD))
    with program(switch, SVI):
        before = counters(switch.ifindex["q1"]).get("transmitted", 0)
        verdict, out, moved = run(switch, bytes(pkt))
        assert counters(switch.ifindex["q1"])["transmitted"] == before + 1  # left by q1
    assert (verdict, out, moved) == (XDP_REDIRECT, _routed_v4(pkt), {"forwarded": 1})


def test_routed_from_bridge_into_bridge_ipv6(switch: Switch) -> None:
    pkt = Ether(wire(Ether(src=H[1], dst=BR0_MAC) / IPv6(src="fd00:10::1", dst="fd00:20::1",
                                                          hlim=64) / UDP() / PAYLOAD))
    with program(switch, SVI):
        verdict, out, moved = run(switch, bytes(pkt))
    assert (verdict, out, moved) == (XDP_REDIRECT, _routed_v6(pkt), {"forwarded": 1})


def test_routed_from_interface_into_bridge(switch: Switch) -> None:
    pkt = Ether(wire(Ether(src="02:00:00:00:30:01", dst=R1_MAC) / IP(
        src="10.30.0.1", dst="10.20.0.1", ttl=64) / UDP() / PAYLOAD))
    with program(switch, ROUTER, ingress="r1"):
        verdict, out, moved = run(switch, bytes(pkt), ingress="r1")
    assert (verdict, out, moved) == (XDP_REDIRECT, _routed_v4(pkt), {"forwarded": 1})


def _to_bridge(dst: str, src: str = H[1], mac: str = BR0_MAC, **ip: Any) -> bytes:
    return wire(Ether(src=src, dst=mac) / IP(src="10.10.0.1", dst=dst, **{"ttl": 64, **ip})
                / UDP())


def _partial_udp(pkt: Packet) -> bytes:
    raw = bytearray(wire(pkt))
    raw[14 + 20 + 6:14 + 20 + 8] = b"\x12\x34"  # not the complete checksum
    return bytes(raw)


# name -> (features, frame, reason[, ingress])
PUNTS: dict[str, tuple[Features, Callable[[Switch], bytes], str]] = {
    "source_multicast": (BRIDGE, lambda s: wire(v4(src="01:00:5e:00:00:01") / UDP()),
                         "martian"),
    "source_zero": (BRIDGE, lambda s: wire(v4(src="00:00:00:00:00:00") / UDP()), "martian"),
    "stp_bpdu": (BRIDGE, lambda s: bytes(Ether(src=H[1], dst="01:80:c2:00:00:00", type=0x26)
                                         / Raw(b"\x42\x42\x03" + b"\0" * 40)),
                 "link_local_group"),
    "lldp": (BRIDGE, lambda s: bytes(Ether(src=H[1], dst="01:80:c2:00:00:0e", type=0x88CC)
                                     / Raw(b"\0" * 46)), "link_local_group"),
    "eapol": (BRIDGE, lambda s: bytes(Ether(src=H[1], dst="01:80:c2:00:00:03", type=0x888E)
                                      / Raw(b"\0" * 46)), "link_local_group"),
    "vlan_tagged": (BRIDGE, lambda s: wire(Ether(src=H[1], dst=H[2]) / Dot1Q(vlan=5)
                                           / IP(dst="10.10.0.2") / UDP()), "tagged"),
    "qinq_tagged": (BRIDGE, lambda s: wire(Ether(src=H[1], dst=H[2]) / Dot1AD(vlan=5)
                                           / Dot1Q(vlan=6) / IP() / UDP()), "tagged"),
    "unknown_source": (BRIDGE, lambda s: wire(v4(src=UNKNOWN) / UDP()), "learn"),
    "source_is_bridge_mac": (BRIDGE, lambda s: wire(v4(src=BR0_MAC) / UDP()), "learn"),
    "source_is_port_mac": (BRIDGE, lambda s: wire(v4(src=s.mac["p2"]) / UDP()), "learn"),
    "source_behind_other_port": (BRIDGE, lambda s: wire(v4(src=H[7]) / UDP()), "learn"),
    "broadcast": (BRIDGE, lambda s: wire(v4(dst="ff:ff:ff:ff:ff:ff") / UDP()), "broadcast"),
    "arp_request": (BRIDGE, lambda s: bytes(Ether(src=H[1], dst="ff:ff:ff:ff:ff:ff")
                                            / ARP(pdst="10.10.0.2")), "broadcast"),
    "ipv4_multicast": (BRIDGE, lambda s: wire(v4(dst="01:00:5e:00:00:05") / UDP()),
                       "l2_multicast"),
    "ipv6_multicast": (BRIDGE, lambda s: wire(v6(dst="33:33:00:00:00:01") / UDP()),
                       "l2_multicast"),
    "unknown_destination": (BRIDGE, lambda s: wire(v4(dst=UNKNOWN) / UDP()),
                            "unknown_unicast"),
    "to_bridge_without_routing": (BRIDGE, lambda s: _to_bridge("10.20.0.1"), "bridge_local"),
    "to_port_mac": (SVI, lambda s: _to_bridge("10.20.0.1", mac=s.mac["p2"]), "bridge_local"),
    "arp_to_bridge": (SVI, lambda s: bytes(Ether(src=H[1], dst=BR0_MAC) / ARP(op=2)),
                      "bridge_local"),
    "to_same_port": (BRIDGE, lambda s: wire(v4(dst=H[1]) / UDP()), "same_iface"),
    "egress_listening": (BRIDGE, lambda s: wire(v4(dst=H[4]) / UDP()), "port_state"),
    "egress_isolated": (BRIDGE, lambda s: wire(v4(dst=H[5]) / UDP()), "port_flags"),
    "egress_not_eligible": (BRIDGE, lambda s: wire(v4(dst=H[6]) / UDP()), "egress"),
    "over_egress_mtu": (BRIDGE, lambda s: wire(v4(dst=H[3]) / UDP() / Raw(b"m" * 1373)),
                        "too_big"),
    "arp_unicast": (BRIDGE, lambda s: bytes(Ether(src=H[1], dst=H[2]) / ARP(op=2)), "not_ip"),
    "ipv4_family_off": (Features(bridge_port=True, bridge_ipv6=1),
                        lambda s: wire(v4() / UDP()), "family_off"),
    "ipv6_family_off": (Features(bridge_port=True, bridge_ipv4=1),
                        lambda s: wire(v6() / UDP()), "family_off"),
    "truncated_ipv4": (BRIDGE, lambda s: wire(v4() / UDP())[:14 + 12], "malformed"),
    "brnf_ipv4_version": (BRNF, lambda s: _set_byte(wire(v4() / UDP()), 14, 0x65),
                          "malformed"),
    "brnf_ipv4_bad_csum": (BRNF, lambda s: _corrupt_ip_csum(wire(v4() / UDP())), "bad_csum"),
    "brnf_ipv4_options": (BRNF, lambda s: wire(v4(options=[b"\x94\x04\x00\x00"]) / UDP()),
                          "ip_options"),
    "brnf_ipv4_too_long": (BRNF, lambda s: wire(v4(len=200) / UDP()), "bad_length"),
    "brnf_ipv4_fragment": (BRNF, lambda s: wire(v4(flags="MF") / UDP()), "fragment"),
    "brnf_ipv6_hop_by_hop": (BRNF, lambda s: wire(v6() / IPv6ExtHdrHopByHop() / UDP()),
                             "ipv6_ext"),
    "brnf_ipv6_too_long": (BRNF, lambda s: wire(v6(plen=300) / UDP()), "bad_length"),
    "brnf_ipv6_version": (BRNF, lambda s: wire(v6(version=4) / UDP()), "malformed"),
    "veth_partial_udp_checksum": (VETH, lambda s: _partial_udp(v4() / UDP() / PAYLOAD),
                                  "l4_csum"),
    "veth_gre": (VETH, lambda s: wire(v4() / GRE() / IP() / UDP()), "l4_csum"),
    "veth_fragment": (VETH, lambda s: wire(v4(flags="MF") / UDP() / PAYLOAD), "l4_csum"),
    "routed_unknown_in_bridge_fdb": (SVI, lambda s: _to_bridge("10.20.0.9"),
                                     "unknown_unicast"),
    "routed_ttl_1": (SVI, lambda s: _to_bridge("10.20.0.1", ttl=1), "ttl"),
    "routed_back_into_same_bridge": (SVI, lambda s: _to_bridge("10.10.0.2"), "same_iface"),
}


def _set_byte(frame: bytes, off: int, value: int) -> bytes:
    raw = bytearray(frame)
    raw[off] = value
    return bytes(raw)


@pytest.mark.parametrize("case", sorted(PUNTS))
def test_punt(switch: Switch, case: str) -> None:
    features, make, reason = PUNTS[case]
    frame = make(switch)
    with program(switch, features):
        verdict, out, moved = run(switch, frame)
    assert verdict == XDP_PASS
    assert out == frame, "a punted frame must reach Linux unmodified"
    assert moved == {reason: 1}


@pytest.mark.parametrize(("ingress", "reason"), [("p4", "port_state"), ("p5", "port_flags"),
                                                 ("p7", "port_flags")])
def test_ingress_port_state_and_flags(switch: Switch, ingress: str, reason: str) -> None:
    """Listening (STP), isolated and learning-off ports: all their frames are the kernel's."""
    src = {"p4": H[4], "p5": H[5], "p7": H[7]}[ingress]
    frame = wire(v4(src=src) / UDP())
    with program(switch, BRIDGE, ingress=ingress):
        verdict, out, moved = run(switch, frame, ingress=ingress)
    assert (verdict, out, moved) == (XDP_PASS, frame, {reason: 1})


def test_port_state_follows_the_kernel_without_reload(switch: Switch) -> None:
    frame = wire(v4() / UDP())
    with program(switch, BRIDGE):
        assert run(switch, frame)[0] == XDP_REDIRECT  # control
        switch.bed.run(switch.ns, "bridge", "link", "set", "dev", "p2", "state", "2")
        try:
            fdb.FdbMirror().sync_ports(control.current_ports({switch.ifindex["br0"]}))
            verdict, _, moved = run(switch, frame)
        finally:
            switch.bed.run(switch.ns, "bridge", "link", "set", "dev", "p2", "state", "3")
        assert (verdict, moved) == (XDP_PASS, {"port_state": 1})
        fdb.FdbMirror().sync_ports(control.current_ports({switch.ifindex["br0"]}))
        assert run(switch, frame)[0] == XDP_REDIRECT


def _refresh(kernel: list[FdbEntry]) -> list[FdbEntry]:
    """What the control side does on its timer: NTF_USE for the entries the fast path used."""
    due = fdb.FdbMirror().due(kernel)
    control.send_use(due)
    return due


def _fdb_entry(mac: str, bridge: int) -> abi.TnaFdbEntry | None:
    key = bytes(abi.TnaFdbKey(bridge, 0, (ctypes.c_uint8 * 6)(*bytes.fromhex(
        mac.replace(":", "")))))
    return fdb.FdbMirror().read().get(key)


def test_moved_source_stops_forwarding_to_the_old_port(switch: Switch) -> None:
    """H7 is behind p2; a frame from H7 on p1 marks it moved: frames to it go to the kernel."""
    to_h7 = wire(v4(dst=H[7]) / UDP())
    with program(switch, BRIDGE):
        assert run(switch, to_h7)[0] == XDP_REDIRECT  # control: switched to p2
        assert run(switch, wire(v4(src=H[7], dst=H[2]) / UDP()))[2] == {"learn": 1}
        entry = _fdb_entry(H[7], switch.ifindex["br0"])
        assert entry is not None and entry.flags & abi.TNA_FDB_MOVED
        verdict, _, moved = run(switch, to_h7)
        assert (verdict, moved) == (XDP_PASS, {"unknown_unicast": 1})
        # the kernel never saw the frame here, so its entry still says p2: a sync keeps the mark
        bridges = {switch.ifindex["br0"], switch.ifindex["br1"]}
        result = fdb.FdbMirror().full_sync(introspect.fdb(), bridges)
        assert result.kept_moved == 1
        assert run(switch, to_h7)[2] == {"unknown_unicast": 1}


def test_sticky_entry_is_not_marked_moved(switch: Switch) -> None:
    sw = switch
    sw.bed.run(sw.ns, "bridge", "fdb", "replace", H[8], "dev", "p2", "master", "static",
               "sticky")
    try:
        with program(sw, BRIDGE):
            assert run(sw, wire(v4(src=H[8]) / UDP()))[2] == {"learn": 1}
            entry = _fdb_entry(H[8], sw.ifindex["br0"])
            assert entry is not None and not entry.flags & abi.TNA_FDB_MOVED
            assert run(sw, wire(v4(dst=H[8]) / UDP()))[0] == XDP_REDIRECT
    finally:
        sw.bed.run(sw.ns, "bridge", "fdb", "del", H[8], "dev", "p2", "master")


def test_forwarding_stamps_the_source_and_refresh_renews_the_kernel_entry(switch: Switch
                                                                           ) -> None:
    """A dynamic source the fast path forwarded: its seen stamp moves, and refresh() sends
    NTF_USE, after which the kernel's entry is as fresh as if the kernel had seen the frame."""
    sw = switch
    sw.bed.run(sw.ns, "bridge", "fdb", "replace", H[9], "dev", "p1", "master", "dynamic")
    try:
        with program(sw, BRIDGE):
            entry = _fdb_entry(H[9], sw.ifindex["br0"])
            assert entry is not None and entry.seen_ns == 0
            kernel = [e for e in introspect.fdb() if e.mac == H[9]]
            assert _refresh(kernel) == []  # control: not used, not refreshed
            time.sleep(0.3)  # let the kernel's entry age measurably
            assert run(sw, wire(v4(src=H[9]) / UDP()))[0] == XDP_REDIRECT
            entry = _fdb_entry(H[9], sw.ifindex["br0"])
            assert entry is not None and entry.seen_ns > 0
            kernel = [e for e in introspect.fdb() if e.mac == H[9]]
            assert kernel[0].updated_cs >= 20
            assert [e.mac for e in _refresh(kernel)] == [H[9]]
            after = next(e for e in introspect.fdb() if e.mac == H[9])
            assert after.updated_cs < 10 and after.ifindex == sw.ifindex["p1"]
            assert after.state == "reachable"  # still a dynamic (learnt) entry
    finally:
        sw.bed.run(sw.ns, "bridge", "fdb", "del", H[9], "dev", "p1", "master", check=False)



def _put_fdb_entry(mac: str, bridge: int, entry: abi.TnaFdbEntry) -> None:
    key = bytes(abi.TnaFdbKey(bridge, 0, (ctypes.c_uint8 * 6)(*bytes.fromhex(
        mac.replace(":", "")))))
    m = open_map("tna_fdb")
    try:
        m.update(key, bytes(entry))
    finally:
        m.close()


def _stamp(entry: abi.TnaFdbEntry | None) -> tuple[int, int, int, int]:
    assert entry is not None
    return entry.port, entry.flags, entry.seen_jiffies, entry.seen_ns


def test_seen_stamp_is_gated_on_jiffies_like_br_fdb_update(switch: Switch) -> None:
    """The seen stamp is written when TNA_SEEN_EVERY_JIFFIES (100) have passed since the last
    one (the low 16 bits of jiffies kept in the entry, wrapping) or when userspace left it 0;
    in between a forwarded frame leaves the entry byte for byte as it was."""
    sw, br0, p1 = switch, switch.ifindex["br0"], switch.ifindex["p1"]
    frame = wire(v4() / UDP() / PAYLOAD)
    with program(sw, BRIDGE):
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        assert run(sw, frame)[0] == XDP_REDIRECT  # first frame after userspace wrote seen 0
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        port, flags, jif, seen = _stamp(_fdb_entry(H[1], br0))
        assert (port, flags) == (p1, abi.TNA_FDB_STATIC)
        assert before - 20_000_000 <= seen <= after  # coarse clock: up to a tick behind
        # within the gate (well under 100 jiffies: 0.1 s even at HZ 1000): nothing written
        assert run(sw, frame)[0] == XDP_REDIRECT
        assert time.clock_gettime_ns(time.CLOCK_MONOTONIC) - after < 50_000_000
        assert _stamp(_fdb_entry(H[1], br0)) == (p1, abi.TNA_FDB_STATIC, jif, seen)
        # the last stamp 100 jiffies ago (across the 16-bit wrap when jif < 100): written
        old = (jif - 100) % 65536
        _put_fdb_entry(H[1], br0, abi.TnaFdbEntry(p1, abi.TNA_FDB_STATIC, old, 1))
        assert run(sw, frame)[0] == XDP_REDIRECT
        port, flags, jif2, seen2 = _stamp(_fdb_entry(H[1], br0))
        assert (port, flags) == (p1, abi.TNA_FDB_STATIC)
        assert (jif2 - jif) % 65536 < 100 and seen2 >= seen
        # 50 jiffies ago (the clock moves on meanwhile, but not by 50), with a stamp: shut
        shut = (jif2 - 50) % 65536
        _put_fdb_entry(H[1], br0, abi.TnaFdbEntry(p1, abi.TNA_FDB_STATIC, shut, 1))
        assert run(sw, frame)[0] == XDP_REDIRECT
        assert _stamp(_fdb_entry(H[1], br0)) == (p1, abi.TNA_FDB_STATIC, shut, 1)
        # userspace wrote the entry afresh (seen 0, seen_jiffies 0): stamped whatever jiffies
        _put_fdb_entry(H[1], br0, abi.TnaFdbEntry(p1, abi.TNA_FDB_STATIC, jif2, 0))
        assert run(sw, frame)[0] == XDP_REDIRECT
        assert _stamp(_fdb_entry(H[1], br0))[3] >= seen2


def test_short_frames_skip_the_mtu_lookup_only_where_the_driver_bounds_the_mtu(
        switch: Switch) -> None:
    """TNA_IF_MTU_FLOOR: a frame of at most 68 bytes fits any MTU a port with IFLA_MIN_MTU >= 68
    can have, so bpf_check_mtu() is skipped for it. An ifb port (IFLA_MIN_MTU 0) at MTU 40 is
    what the flag must never be set for: without it a 62-byte frame is punted as too big
    (mtu + Ethernet header = 54); the same port flagged (a lie) shows the check was skipped."""
    sw, mac = switch, "02:00:00:00:00:d0"
    frame = wire(v4(dst=mac) / UDP() / Raw(b"s" * 20))
    assert len(frame) == 62
    sw.bed.run(sw.ns, "ip", "link", "add", "d0", "type", "ifb")
    try:
        sw.bed.run(sw.ns, "ip", "link", "set", "d0", "mtu", "40", "master", "br0", "up")
        sw.bed.run(sw.ns, "bridge", "fdb", "add", mac, "dev", "d0", "master", "static")
        d0 = _ifindex(sw.bed, sw.ns, "d0")
        with netns.entered(sw.ns):
            links = {lk.ifname: lk for lk in introspect.snapshot(plan_only=True).links}
        assert (links["p1"].min_mtu, links["d0"].min_mtu) == (68, 0)
        with program(sw, BRIDGE):
            with netns.entered(sw.ns):
                sync_ports_for_test([Port(d0, "d0", _mac(sw.bed, sw.ns, "d0"), True, None)])
            _reset_mirror(sw)
            assert run(sw, frame)[2] == {"too_big": 1}
            with netns.entered(sw.ns):
                sync_ports_for_test([Port(d0, "d0", _mac(sw.bed, sw.ns, "d0"), True, None,
                                          mtu_floor=True)])
            verdict, out, moved = run(sw, frame)
            assert (verdict, out, moved) == (XDP_REDIRECT, frame, {"bridged": 1})
            # longer than the floor: asked again even with the flag, and too big
            long = wire(v4(dst=mac) / UDP() / Raw(b"s" * 27))
            assert len(long) == 69 and run(sw, long)[2] == {"too_big": 1}
    finally:
        sw.bed.run(sw.ns, "ip", "link", "del", "d0", check=False)


def test_bridged_l4_checksum_verified_at_every_length_around_the_inline_sum(
        switch: Switch) -> None:
    """Short L4 sums (below 64 bytes) are computed inline, longer ones by tna_l4_sum(): at
    every length on both sides, a complete checksum is switched unchanged and one byte
    changed at the start or the end of the L4 payload is punted (l4_csum)."""
    sw = switch
    with program(sw, VETH):
        for make, family in ((v4, "ipv4"), (v6, "ipv6")):
            for n in range(0, 90):
                good = wire(make() / UDP(sport=7, dport=9) / Raw((bytes(range(3, 256)))[:n]))
                assert run(sw, good)[:2] == (XDP_REDIRECT, good), (family, n)
                l4 = 14 + (20 if family == "ipv4" else 40)
                for at in {l4 + 8, len(good) - 1} if n else ():
                    bad = bytearray(good)
                    bad[at] ^= 0x5a
                    assert run(sw, bytes(bad))[2] == {"l4_csum": 1}, (family, n, at)

BRIDGE_REASONS = {"unknown_unicast", "broadcast", "link_local_group", "learn", "bridge_local",
                  "port_state", "port_flags", "tagged", "too_big"}


def test_every_bridge_reason_is_exercised() -> None:
    covered = {r for _, _, r in PUNTS.values()} | {"port_state", "port_flags"}
    new_codes = {n for c, n in abi.punt_reasons().items()
                 if abi.code("l4_csum") < c < abi.code("redirected")}  # after: router codes
    assert new_codes == BRIDGE_REASONS
    assert covered >= BRIDGE_REASONS


def test_counter_rows_hold_the_new_codes(switch: Switch) -> None:
    """Codes above 31 (TNA_NR_CODES was raised to 64) land in the interface's own row."""
    with program(switch, BRIDGE):
        before = counters(switch.ifindex["p1"]).get("too_big", 0)
        run(switch, wire(v4(dst=H[3]) / UDP() / Raw(b"m" * 1373)))
        assert abi.code("too_big") > 32
        assert counters(switch.ifindex["p1"])["too_big"] == before + 1
        assert counters(switch.ifindex["p2"]).get("too_big", 0) == 0
