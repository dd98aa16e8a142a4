"""The layer-2 corpus: frames a bridge must forward, flood, learn from or drop.

Role in the equivalence suite: the frames of the bridge scenarios.  Their order is part of the
case: a bridge learns source MACs, so "unicast to a MAC not learned yet" (flooded) and "the
same after the owner spoke" (forwarded to one port) differ only in what was sent before.  The
harness sends the corpus in order and fences each sender's burst, so that order is the same
in both runs.
"""

from __future__ import annotations

from collections.abc import Callable

from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import LLC, STP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from testing.equivalence.corpus import CorpusFrame, Side, payload, tag, wire

HOST_MAC = {1: "02:00:00:00:0b:01", 2: "02:00:00:00:0b:02", 3: "02:00:00:00:0b:03"}
BRIDGE_MAC = "02:00:00:00:0b:fe"
UNKNOWN_MAC = "02:00:00:00:0b:99"

L2Builder = Callable[[Side, str], Packet | bytes]


def _to(mac_key: str, body: Callable[[str], Packet] | None = None) -> L2Builder:
    def build(s: Side, name: str) -> Packet:
        dst = s.dst.get(mac_key, mac_key)
        return Ether(src=s.mac, dst=dst, type=0x88B5) / payload(name, 46) if body is None else (
            Ether(src=s.mac, dst=dst) / body(name))
    return build


def _ip(name: str) -> Packet:
    return IP(src="10.1.0.2", dst="10.1.0.4", ttl=0) / UDP(sport=5000, dport=5000) / payload(
        name)


def _src(src_mac: str, dst_key: str = "l2_peer_mac") -> L2Builder:
    def build(s: Side, name: str) -> Packet:
        return Ether(src=src_mac, dst=s.dst[dst_key], type=0x88B5) / payload(name, 46)
    return build


def _control(dst: str, type_: int | None = None) -> L2Builder:
    """IEEE 802.1D reserved group addresses (01:80:c2:00:00:0X) a bridge treats specially."""
    def build(s: Side, name: str) -> Packet:
        if type_ is None:  # spanning tree BPDU: LLC, no ethertype
            return Ether(src=s.mac, dst=dst) / LLC(dsap=0x42, ssap=0x42, ctrl=3) / STP() / Raw(
                tag(name))
        return Ether(src=s.mac, dst=dst, type=type_) / payload(name, 46)
    return build


def _vlan(vid: int, outer: int = 0x8100) -> L2Builder:
    def build(s: Side, name: str) -> bytes:
        frame = wire(Ether(src=s.mac, dst=s.dst["l2_peer_mac"]) / Dot1Q(vlan=vid) / _ip(name))
        return frame[:12] + outer.to_bytes(2, "big") + frame[14:]
    return build


# (sender, name, builder); the order is the case.
STEPS: tuple[tuple[int, str, L2Builder], ...] = (
    (1, "l2_unicast_unlearned", _to("l2_peer_mac")),
    (1, "l2_broadcast", _to("ff:ff:ff:ff:ff:ff")),
    (1, "l2_ipv4_multicast", _to("01:00:5e:01:02:03", lambda n: IP(
        src="10.1.0.2", dst="239.1.2.3") / UDP(sport=5001, dport=5001) / payload(n))),
    (1, "l2_ipv6_multicast", _to("33:33:00:00:00:01", lambda n: IPv6(
        src="fd00:1::2", dst="ff02::1") / UDP(sport=5002, dport=5002) / payload(n))),
    (1, "l2_stp_bpdu", _control("01:80:c2:00:00:00")),
    (1, "l2_pause", _control("01:80:c2:00:00:01", 0x8808)),
    (1, "l2_eapol", _control("01:80:c2:00:00:03", 0x888E)),
    (1, "l2_lldp", _control("01:80:c2:00:00:0e", 0x88CC)),
    (1, "l2_multicast_source", _src("01:00:5e:00:00:09")),
    (1, "l2_zero_source", _src("00:00:00:00:00:00")),
    (1, "l2_vlan_tagged", _vlan(10)),
    (1, "l2_vlan_priority_only", _vlan(0)),
    (1, "l2_qinq", _vlan(20, 0x88A8)),
    (1, "l2_to_bridge_mac", _to("l2_bridge_mac")),
    (1, "l2_to_own_mac", lambda s, n: Ether(src=s.mac, dst=s.mac, type=0x88B5) / payload(n, 46)),
    (1, "l2_runt_14", lambda s, n: wire(Ether(src=s.mac, dst=s.dst["l2_peer_mac"],
                                              type=0x88B5))),
    (1, "l2_ip_ttl_0", _to("l2_peer_mac", _ip)),
    (1, "l2_unknown_unicast", _to(UNKNOWN_MAC)),
    (2, "l2_unicast_learned", _to("l2_peer_mac")),  # h2 -> h1: h1 has spoken
    (2, "l2_unicast_third_unlearned", _to("l2_other_mac")),
    (3, "l2_unicast_to_h2_learned", _to("l2_other_mac")),
    (3, "l2_spoofed_source_h1", _src(HOST_MAC[1], "l2_other_mac")),  # h1's MAC moves to p3
    (2, "l2_unicast_after_move", _to("l2_peer_mac")),
)


def _sides() -> dict[int, Side]:
    """Each host's view: ``l2_peer_mac`` (h1 -> h2, h2 -> h1, h3 -> h1) and ``l2_other_mac``
    (the third host) are the MACs the steps address."""
    peer = {1: 2, 2: 1, 3: 1}
    other = {1: 3, 2: 3, 3: 2}
    return {i: Side(host=f"h{i}", mac=HOST_MAC[i], router_mac=BRIDGE_MAC, v4="", v6="",
                    neighbour_mac=UNKNOWN_MAC,
                    dst={"l2_peer_mac": HOST_MAC[peer[i]], "l2_other_mac": HOST_MAC[other[i]],
                         "l2_bridge_mac": BRIDGE_MAC})
            for i in (1, 2, 3)}


def _frames(sides: dict[int, Side], steps: tuple[tuple[int, str, L2Builder], ...]
            ) -> list[CorpusFrame]:
    out = []
    for host, step, builder in steps:
        side = sides[host]
        name = f"{side.host}:{step}"
        out.append(CorpusFrame(name, side.host, wire(builder(side, name))))
    return out


def bridge_corpus() -> list[CorpusFrame]:
    return _frames(_sides(), STEPS)


def build_bridged(h1: Side, h2: Side) -> list[CorpusFrame]:
    """The steps between two hosts on the router's bridge (its br0 is the third party)."""
    sides = {1: h1, 2: h2}
    steps = tuple(s for s in STEPS if s[0] in (1, 2) and "third" not in s[1])
    return _frames(sides, steps)
