"""The fixed corpus: named frame builders, each one a case the fast path must not get wrong.

Role in the equivalence suite: turns a sender's view of its link (:class:`Side`) into wire
bytes.  Nothing here knows about namespaces; a scenario says which groups each host sends.

Every frame that has room for it carries a tag, ``TNA:<host>:<name>;``, in its payload.  ICMP
errors quote the offending packet, so the tag also turns up in what the router sends back:
that is how a difference is attributed to the corpus frame that caused it.

Corpus rule: the fate of a frame must not depend on the order in which the router processes
*other* frames of the same burst.  With TNA on, a frame is received by the veth's NAPI, whose
queue (one per CPU) is picked by a flow hash, so frames of different flows may be handled in
another order than they were sent.  Hence one same-link frame per family and sender (Linux
rate-limits redirects per source, so which frame earned the redirect would depend on that
order; the scenarios keep every other destination off the sender's link), unique IPv4 IDs
(fragments of different cases must never meet in one reassembly queue), and the two halves
of a fragmented datagram only where their order does not matter.  Frames that change the
router's state for later ones (ICMP errors sent to it) go in an earlier sender's burst: the
harness fences bursts.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert, IPOption_RR
from scapy.layers.inet6 import (
    HBHOptUnknown,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6ND_RS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    RouterAlert,
)
from scapy.layers.l2 import ARP, LLC, Dot1Q, Ether
from scapy.packet import Packet, Raw

TAG_PREFIX = b"TNA:"
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP = 0x0800, 0x86DD, 0x0806


@dataclass(frozen=True)
class Side:
    """What a sending host knows about its link and where it may send to.

    ``dst`` names destinations, from the sender's point of view, e.g. ``peer4`` (a host behind
    the router, reached through an egress of MTU ``peer_mtu``), ``router4`` (the router's
    address on this link), ``blackhole4``.  A builder whose destination is missing from
    ``dst`` is skipped, so one corpus serves several topologies.
    """

    host: str
    mac: str
    router_mac: str  # the next hop's MAC on this link (router port, or the bridge's IP port)
    v4: str
    v6: str
    neighbour_mac: str  # another MAC on the link: neither ours nor the router's
    dst: Mapping[str, str] = field(default_factory=dict)
    peer_mtu: int = 1500  # egress MTU towards peer4 / peer6
    max_frame: int = 1514  # largest frame the host's own interface lets us send


@dataclass(frozen=True)
class CorpusFrame:
    """One frame to send, with the host that sends it and the name diffs show."""

    name: str  # "<host>:<builder>"
    host: str
    data: bytes
    fast: bool = False  # ordinary traffic the fast path is expected to forward
    # Fencing: the harness fences each run of consecutive frames of one host with the same
    # ``burst``; a conversation gives each step that depends on the previous one its own.
    burst: int = 0
    # Seconds the network stays idle (after the previous fence) before this frame's burst:
    # the scenarios that let conntrack entries expire (the time itself is the subject).
    idle_before: float = 0.0

    @property
    def tag(self) -> bytes:
        return tag(self.name)


Builder = Callable[[Side, str], Packet | bytes | None]


@dataclass(frozen=True)
class Entry:
    name: str
    group: str
    build: Builder
    fast: bool = False


def tag(name: str) -> bytes:
    return TAG_PREFIX + name.encode() + b";"


def payload(name: str, size: int = 32) -> Raw:
    """``size`` bytes beginning with the frame's tag (cut short if the tag does not fit)."""
    t = tag(name)
    return Raw((t + b"." * max(0, size - len(t)))[:size])


def ip_id(name: str) -> int:
    """A stable per-case IPv4 ID: distinct cases never share a reassembly queue."""
    return zlib.crc32(name.encode()) & 0xFFFF


# ---- frame skeletons ---------------------------------------------------------------------

def eth(s: Side, dst: str | None = None, type_: int | None = None) -> Ether:
    e = Ether(src=s.mac, dst=dst or s.router_mac)
    if type_ is not None:
        e.type = type_
    return e


def v4(s: Side, name: str, dst: str, mac: str | None = None, **ip: Any) -> Packet:
    fields: dict[str, Any] = {"src": s.v4, "dst": dst, "ttl": 64, "id": ip_id(name)}
    fields.update(ip)
    return eth(s, mac) / IP(**fields)


def v6(s: Side, dst: str, mac: str | None = None, **ip: Any) -> Packet:
    fields: dict[str, Any] = {"src": s.v6, "dst": dst, "hlim": 64}
    fields.update(ip)
    return eth(s, mac) / IPv6(**fields)


def udp(name: str, size: int = 32, dport: int = 7000) -> Packet:
    # Distinct source ports per case: no two cases form one flow.
    return UDP(sport=10000 + ip_id(name) % 50000, dport=dport) / payload(name, size)


def tcp(name: str, flags: str = "S", size: int = 0, dport: int = 80) -> Packet:
    seg = TCP(sport=10000 + ip_id(name) % 50000, dport=dport, flags=flags,
              seq=ip_id(name) << 8, ack=1 if "A" in flags else 0)
    return seg / payload(name, size) if size else seg


def wire(pkt: Packet | bytes) -> bytes:
    return pkt if isinstance(pkt, bytes) else bytes(pkt)


def patched(pkt: Packet | bytes, offset: int, new: bytes) -> bytes:
    """The frame with ``new`` written at ``offset`` after all checksums were computed."""
    raw = bytearray(wire(pkt))
    raw[offset:offset + len(new)] = new
    return bytes(raw)


def ipv4_csum(header: bytes) -> int:
    s = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def with_ipv4_csum(frame: bytes, ihl_bytes: int = 20) -> bytes:
    """Recompute the IPv4 header checksum after raw edits (header at offset 14)."""
    raw = bytearray(frame)
    raw[24:26] = b"\0\0"
    raw[24:26] = ipv4_csum(bytes(raw[14:14 + ihl_bytes])).to_bytes(2, "big")
    return bytes(raw)


def sized_v4(s: Side, name: str, dst: str, total: int, **ip: Any) -> Packet:
    """A UDP datagram whose IPv4 total length is exactly ``total``."""
    return v4(s, name, dst, **ip) / udp(name, total - 28)


def sized_v6(s: Side, name: str, dst: str, total: int, **ip: Any) -> Packet:
    return v6(s, dst, **ip) / udp(name, total - 48)


# ---- the entries ---------------------------------------------------------------------------
# Each builder gets the sender's Side and the frame's full name (for tags and IDs) and returns
# a frame, or None when the topology lacks what it needs.

def _need(s: Side, *keys: str) -> bool:
    return all(k in s.dst for k in keys)


def _v4_to(key: str, body: Callable[[str], Packet], **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        return v4(s, name, s.dst[key], **ip) / body(name) if _need(s, key) else None
    return build


def _v6_to(key: str, body: Callable[[str], Packet], **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        return v6(s, s.dst[key], **ip) / body(name) if _need(s, key) else None
    return build


def _udp(name: str) -> Packet:
    return udp(name)


def _tcp_syn(name: str) -> Packet:
    return tcp(name, "S")


def _tcp_data(name: str) -> Packet:
    return tcp(name, "PA", size=100)


def _echo4(name: str) -> Packet:
    return ICMP(type=8, id=ip_id(name), seq=1) / payload(name)


def _echo6(name: str) -> Packet:
    return ICMPv6EchoRequest(id=ip_id(name), seq=1) / payload(name)


def _opaque(name: str) -> Packet:
    return payload(name, 24)


def _bad_ipv4_csum(s: Side, name: str) -> bytes | None:
    if not _need(s, "peer4"):
        return None
    frame = wire(v4(s, name, s.dst["peer4"]) / udp(name))
    return patched(frame, 24, (int.from_bytes(frame[24:26], "big") ^ 0x5A5A).to_bytes(2, "big"))


def _bad_ipv4_csum_ttl1(s: Side, name: str) -> bytes | None:
    if not _need(s, "peer4"):
        return None
    frame = wire(v4(s, name, s.dst["peer4"], ttl=1) / udp(name))
    return patched(frame, 24, (int.from_bytes(frame[24:26], "big") ^ 0x0101).to_bytes(2, "big"))


def _bad_l4_csum(proto: str, key: str) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, key):
            return None
        if proto == "udp":
            pkt = v4(s, name, s.dst[key]) / UDP(sport=20000, dport=7, chksum=0x1234) / payload(
                name)
        elif proto == "tcp":
            pkt = v4(s, name, s.dst[key]) / TCP(sport=20001, dport=80, flags="S",
                                                 chksum=0x1234)
        else:
            pkt = v4(s, name, s.dst[key]) / ICMP(type=8, chksum=0x1234) / payload(name)
        return wire(pkt)
    return build


def _bad_l4_csum6(s: Side, name: str) -> bytes | None:
    if not _need(s, "peer6"):
        return None
    return wire(v6(s, s.dst["peer6"]) / UDP(sport=20002, dport=7000, chksum=0x1234)
                / payload(name))


def _tot_len(delta: int) -> Builder:
    """IPv4 total length off by ``delta`` from the frame (checksum made valid again)."""
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer4"):
            return None
        frame = wire(v4(s, name, s.dst["peer4"]) / udp(name, 64))
        total = int.from_bytes(frame[16:18], "big") + delta
        return with_ipv4_csum(patched(frame, 16, total.to_bytes(2, "big")))
    return build


def _tot_len_value(value: int) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer4"):
            return None
        frame = wire(v4(s, name, s.dst["peer4"]) / udp(name, 64))
        return with_ipv4_csum(patched(frame, 16, value.to_bytes(2, "big")))
    return build


def _ihl(value: int, fix_csum: bool = True) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer4"):
            return None
        frame = patched(v4(s, name, s.dst["peer4"]) / udp(name), 14, bytes([0x40 | value]))
        return with_ipv4_csum(frame, 20) if fix_csum else frame
    return build


def _version(eth_type: int, first_byte: int) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer4"):
            return None
        frame = wire(v4(s, name, s.dst["peer4"]) / udp(name))
        return with_ipv4_csum(patched(patched(frame, 12, eth_type.to_bytes(2, "big")), 14,
                                      bytes([first_byte])))
    return build


def _plen(delta: int) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer6"):
            return None
        frame = wire(v6(s, s.dst["peer6"]) / udp(name, 64))
        plen = int.from_bytes(frame[18:20], "big") + delta
        return patched(frame, 18, plen.to_bytes(2, "big"))
    return build


def _truncated(pkt_builder: Builder, keep: int) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        pkt = pkt_builder(s, name)
        return None if pkt is None else wire(pkt)[:keep]
    return build


def _padded(pkt_builder: Builder, pad: bytes) -> Builder:
    def build(s: Side, name: str) -> bytes | None:
        pkt = pkt_builder(s, name)
        return None if pkt is None else wire(pkt) + pad
    return build


def _over_mtu(family: int, extra: int, **ip: Any) -> Builder:
    """A datagram ``extra`` bytes over (or, negative, under) the egress MTU towards peer."""
    def build(s: Side, name: str) -> Packet | None:
        key = "peer4" if family == 4 else "peer6"
        if not _need(s, key):
            return None
        total = s.peer_mtu + extra
        if total + 14 > s.max_frame:
            return None
        return (sized_v4(s, name, s.dst[key], total, **ip) if family == 4
                else sized_v6(s, name, s.dst[key], total, **ip))
    return build


def _route_mtu(family: int, key: str, total: int, **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, key):
            return None
        return (sized_v4(s, name, s.dst[key], total, **ip) if family == 4
                else sized_v6(s, name, s.dst[key], total, **ip))
    return build


def _oversize_ingress(s: Side, name: str) -> Packet | None:
    """Larger than the router port's MTU (the sender's MTU is larger): veth accepts up to
    MTU + 18 bytes, ip_rcv() does not check the MTU at all."""
    if not _need(s, "big_peer4") or s.max_frame < 1518:
        return None
    return sized_v4(s, name, s.dst["big_peer4"], 1504)


def _oversize_ingress6(s: Side, name: str) -> Packet | None:
    if not _need(s, "big_peer6") or s.max_frame < 1518:
        return None
    return sized_v6(s, name, s.dst["big_peer6"], 1504)


def _too_big_for_veth(s: Side, name: str) -> Packet | None:
    """Beyond MTU + 18: the router's veth drops it before XDP or Linux see it."""
    if not _need(s, "big_peer4") or s.max_frame < 1600:
        return None
    return sized_v4(s, name, s.dst["big_peer4"], 1580)


def _fragment(kind: str, key: str = "peer4") -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, key):
            return None
        dst = s.dst[key]
        if kind == "first":
            return v4(s, name, dst, flags="MF") / UDP(sport=3000, dport=7000, len=200) / payload(
                name, 32)
        if kind == "middle":
            return v4(s, name, dst, flags="MF", frag=10) / payload(name, 48)
        if kind == "last":
            return v4(s, name, dst, frag=20) / payload(name, 40)
        return v4(s, name, dst, flags="DF+MF") / payload(name, 40)  # "df_mf"
    return build


def _reassembled_echo(part: int) -> Builder:
    """Both halves of one ICMP echo to the router: Linux reassembles and answers."""
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, "router4"):
            return None
        whole = name.rsplit("_", 1)[0]  # both halves share ID and data
        full = wire(IP(src=s.v4, dst=s.dst["router4"], id=ip_id(whole), ttl=64)
                    / ICMP(type=8, id=7, seq=7) / payload(whole, 64))
        body = full[20:]
        if part == 0:
            return eth(s) / IP(src=s.v4, dst=s.dst["router4"], id=ip_id(whole), ttl=64,
                               flags="MF", proto=1) / Raw(body[:40])
        return eth(s) / IP(src=s.v4, dst=s.dst["router4"], id=ip_id(whole), ttl=64,
                           frag=5, proto=1) / Raw(body[40:])
    return build


def _v6_fragment(kind: str) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, "peer6"):
            return None
        ident = ip_id(name)
        base = v6(s, s.dst["peer6"])
        if kind == "first":
            return base / IPv6ExtHdrFragment(nh=17, offset=0, m=1, id=ident) / UDP(
                sport=3001, dport=7000, len=200) / payload(name, 32)
        if kind == "last":
            return base / IPv6ExtHdrFragment(nh=17, offset=5, m=0, id=ident) / payload(name, 40)
        return base / IPv6ExtHdrFragment(nh=17, offset=0, m=0, id=ident) / udp(name)  # atomic
    return build


def _v6_reassembled_echo(part: int) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, "router6"):
            return None
        whole = name.rsplit("_", 1)[0]
        full = wire(IPv6(src=s.v6, dst=s.dst["router6"], hlim=64)
                    / ICMPv6EchoRequest(id=7, seq=7) / payload(whole, 64))
        body = full[40:]
        frag = IPv6ExtHdrFragment(nh=58, offset=0 if part == 0 else 5, m=1 - part,
                                  id=ip_id(whole))
        chunk = body[:40] if part == 0 else body[40:]
        return v6(s, s.dst["router6"]) / frag / Raw(chunk)
    return build


def _options(*opts: object) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, "peer4"):
            return None
        return v4(s, name, s.dst["peer4"], options=list(opts)) / udp(name)
    return build


def _raw_options(raw: bytes, key: str = "peer4") -> Builder:
    """IPv4 options as raw bytes (padded to 4), so malformed ones can be expressed."""
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, key):
            return None
        opts = raw + b"\0" * (-len(raw) % 4)
        base = wire(v4(s, name, s.dst[key]) / udp(name))
        ihl = 5 + len(opts) // 4
        hdr = bytearray(base[14:34])
        hdr[0] = 0x40 | ihl
        hdr[2:4] = (len(base) - 14 + len(opts)).to_bytes(2, "big")
        frame = base[:14] + bytes(hdr) + opts + base[34:]
        return with_ipv4_csum(frame, ihl * 4)
    return build


def _arp(op: int, target: str | None, sender_ip: str | None = None,
         dst_mac: str = BROADCAST_MAC) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        tgt = s.dst.get(target) if target else s.v4
        if tgt is None:
            return None
        return Ether(src=s.mac, dst=dst_mac) / ARP(
            op=op, hwsrc=s.mac, psrc=sender_ip or s.v4, pdst=tgt,
            hwdst="00:00:00:00:00:00" if op == 1 else s.router_mac)
    return build


def _ns(s: Side, name: str) -> Packet | None:
    """Neighbour solicitation for the router's address (Linux answers with an NA)."""
    if not _need(s, "router6"):
        return None
    target = ipaddress.IPv6Address(s.dst["router6"])
    low24 = int(target) & 0xFFFFFF
    solicited = ipaddress.IPv6Address(int(ipaddress.IPv6Address("ff02::1:ff00:0")) | low24)
    mac = "33:33:" + ":".join(f"{b:02x}" for b in solicited.packed[12:])
    return (eth(s, mac) / IPv6(src=s.v6, dst=str(solicited), hlim=255)
            / ICMPv6ND_NS(tgt=str(target)) / ICMPv6NDOptSrcLLAddr(lladdr=s.mac))


def _rs(s: Side, name: str) -> Packet:
    return (eth(s, "33:33:00:00:00:02") / IPv6(src=s.v6, dst="ff02::2", hlim=255)
            / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=s.mac))


def _ethertype(type_: int, body: bytes = b"") -> Builder:
    def build(s: Side, name: str) -> bytes:
        return wire(eth(s, type_=type_)) + (body or tag(name) + b"\0" * 32)
    return build


def _vlan_ip(s: Side, name: str) -> Packet | None:
    if not _need(s, "peer4"):
        return None
    return eth(s) / Dot1Q(vlan=10) / IP(src=s.v4, dst=s.dst["peer4"], id=ip_id(name)) / udp(
        name)


def _llc(s: Side, name: str) -> Packet:
    return Ether(src=s.mac, dst=s.router_mac) / LLC(dsap=0x42, ssap=0x42, ctrl=3) / payload(
        name, 40)


def _not_for_us(mac_key: str) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, "peer4"):
            return None
        mac = s.neighbour_mac if mac_key == "neighbour" else s.dst.get(mac_key)
        if mac is None:
            return None
        return v4(s, name, s.dst["peer4"], mac=mac) / udp(name)
    return build


def _l2cast(mac: str, key: str, family: int = 4) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if key not in s.dst:
            return None
        if family == 4:
            return v4(s, name, s.dst[key], mac=mac) / _echo4(name)
        return v6(s, s.dst[key], mac=mac) / _echo6(name)
    return build


def _spoof4(src_key: str, dst_key: str = "peer4") -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, src_key, dst_key):
            return None
        return v4(s, name, s.dst[dst_key], src=s.dst[src_key]) / udp(name)
    return build


def _spoof6(src_key: str, dst_key: str = "peer6") -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, src_key, dst_key):
            return None
        return v6(s, s.dst[dst_key], src=s.dst[src_key]) / udp(name)
    return build


def _with_src(src: str, family: int) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        key = "peer4" if family == 4 else "peer6"
        if not _need(s, key):
            return None
        if family == 4:
            return v4(s, name, s.dst[key], src=src) / udp(name)
        return v6(s, s.dst[key], src=src) / udp(name)
    return build


def _with_src_key(src: str, dst_key: str) -> Builder:
    def build(s: Side, name: str) -> Packet | None:
        if not _need(s, dst_key):
            return None
        return v4(s, name, s.dst[dst_key], src=src) / udp(name)
    return build


def _icmp_to_router(kind: str) -> Builder:
    """An ICMP error from this host to the router about a packet the router sent.

    The quoted packet is an echo reply of the router: for a quoted ICMP packet Linux acts on
    the error (icmp_err()) only when it quotes an echo reply, which only the kernel sends.
    """
    def build(s: Side, name: str) -> Packet | None:
        if kind == "too_big":
            if not _need(s, "router6", "in_pmtu_dst6"):
                return None
            inner6 = IPv6(src=s.dst["router6"], dst=s.dst["in_pmtu_dst6"]) / ICMPv6EchoReply(
                id=1) / payload(name, 1300)
            return v6(s, s.dst["router6"]) / ICMPv6PacketTooBig(mtu=1300) / Raw(
                wire(inner6)[:1232])
        if not _need(s, "router4", "in_redirect_dst4", "in_redirect_gw4", "in_pmtu_dst4"):
            return None
        if kind == "redirect":
            inner = IP(src=s.dst["router4"], dst=s.dst["in_redirect_dst4"], id=1) / ICMP(
                type=0) / payload(name, 8)
            icmp = ICMP(type=5, code=1, gw=s.dst["in_redirect_gw4"])
        else:
            inner = IP(src=s.dst["router4"], dst=s.dst["in_pmtu_dst4"], id=1, flags="DF") / ICMP(
                type=0) / payload(name, 1372)
            icmp = ICMP(type=3, code=4, nexthopmtu=1300)
        return v4(s, name, s.dst["router4"]) / icmp / Raw(wire(inner)[:28 + len(tag(name))])
    return build


def _runt(length: int) -> Builder:
    """A frame shorter than Ethernet's 60-byte minimum (veth does not pad)."""
    def build(s: Side, name: str) -> bytes | None:
        if not _need(s, "peer4"):
            return None
        frame = wire(v4(s, name, s.dst["peer4"]) / UDP(sport=4000, dport=7000))  # 42 bytes
        return frame[:length]
    return build


def _big_echo(family: int) -> Builder:
    """An echo request larger than the way back: the router fragments its own reply."""
    def build(s: Side, name: str) -> Packet | None:
        key = "router4" if family == 4 else "router6"
        if not _need(s, key) or s.max_frame < 1518:
            return None
        if family == 4:
            return v4(s, name, s.dst[key]) / _echo4_sized(name, 1504 - 28)
        return v6(s, s.dst[key]) / ICMPv6EchoRequest(id=ip_id(name), seq=1) / payload(
            name, 1504 - 48)
    return build


def _echo4_sized(name: str, size: int) -> Packet:
    return ICMP(type=8, id=ip_id(name), seq=1) / payload(name, size)


def _timestamp(s: Side, name: str) -> Packet | None:
    if not _need(s, "router4"):
        return None
    return v4(s, name, s.dst["router4"]) / ICMP(type=13, id=ip_id(name), seq=1,
                                                ts_ori=1000, ts_rx=0, ts_tx=0)


def _e(name: str, group: str, build: Builder, fast: bool = False) -> Entry:
    return Entry(name, group, build, fast)


ENTRIES: tuple[Entry, ...] = (
    # ordinary traffic: what the fast path exists for (positive control)
    _e("v4_udp", "ordinary", _v4_to("peer4", _udp), fast=True),
    _e("v4_tcp_syn", "ordinary", _v4_to("peer4", _tcp_syn), fast=True),
    _e("v4_tcp_data", "ordinary", _v4_to("peer4", _tcp_data), fast=True),
    _e("v4_icmp_echo", "ordinary", _v4_to("peer4", _echo4), fast=True),
    _e("v4_tos_ecn", "ordinary", _v4_to("peer4", _udp, tos=0xB9), fast=True),
    _e("v4_df", "ordinary", _v4_to("peer4", _udp, flags="DF"), fast=True),
    _e("v4_ttl_255", "ordinary", _v4_to("peer4", _udp, ttl=255, id=0xFFFF), fast=True),
    _e("v4_via_gateway", "ordinary", _v4_to("gwroute4", _udp), fast=True),
    _e("v4_far", "ordinary", _v4_to("far4", _udp), fast=True),
    _e("v6_udp", "ordinary", _v6_to("peer6", _udp), fast=True),
    _e("v6_tcp_syn", "ordinary", _v6_to("peer6", _tcp_syn), fast=True),
    _e("v6_tcp_data", "ordinary", _v6_to("peer6", _tcp_data), fast=True),
    _e("v6_icmp_echo", "ordinary", _v6_to("peer6", _echo6), fast=True),
    _e("v6_flowlabel_tc", "ordinary", _v6_to("peer6", _udp, fl=0xABCDE, tc=0xB9), fast=True),
    _e("v6_via_gateway", "ordinary", _v6_to("gwroute6", _udp), fast=True),
    _e("v6_far", "ordinary", _v6_to("far6", _udp), fast=True),
    # shorter than Ethernet's minimum: a wire would pad it; ip_rcv() trims to the total length
    _e("v4_padded", "ordinary", _padded(_v4_to("peer4", lambda n: udp(n, 4)), b"\xAA" * 20),
       fast=True),
    _e("v6_padded", "ordinary", _padded(_v6_to("peer6", lambda n: udp(n, 4)), b"\xAA" * 8),
       fast=True),
    # TTL / hop limit
    _e("v4_ttl_0", "ttl", _v4_to("peer4", _udp, ttl=0)),
    _e("v4_ttl_1", "ttl", _v4_to("peer4", _udp, ttl=1)),
    _e("v4_ttl_1_tcp", "ttl", _v4_to("peer4", _tcp_syn, ttl=1)),
    _e("v4_ttl_1_icmp", "ttl", _v4_to("peer4", _echo4, ttl=1)),
    _e("v4_ttl_2", "ttl", _v4_to("peer4", _udp, ttl=2), fast=True),
    _e("v4_ttl_1_to_router", "ttl", _v4_to("router4", _echo4, ttl=1)),
    _e("v6_hlim_0", "ttl", _v6_to("peer6", _udp, hlim=0)),
    _e("v6_hlim_1", "ttl", _v6_to("peer6", _udp, hlim=1)),
    _e("v6_hlim_1_icmp", "ttl", _v6_to("peer6", _echo6, hlim=1)),
    _e("v6_hlim_2", "ttl", _v6_to("peer6", _udp, hlim=2), fast=True),
    _e("v6_hlim_1_to_router", "ttl", _v6_to("router6", _echo6, hlim=1)),
    # MTU: at, over (DF and not), route MTU metrics, frames larger than the ingress MTU
    _e("v4_at_mtu_df", "mtu", _over_mtu(4, 0, flags="DF"), fast=True),
    _e("v4_over_mtu_df", "mtu", _over_mtu(4, 1, flags="DF")),
    _e("v4_over_mtu_nodf", "mtu", _over_mtu(4, 1)),
    _e("v4_far_over_mtu_df", "mtu", _over_mtu(4, 100, flags="DF")),
    _e("v6_at_mtu", "mtu", _over_mtu(6, 0), fast=True),
    _e("v6_over_mtu", "mtu", _over_mtu(6, 1)),
    _e("v4_route_mtu_df", "mtu", _route_mtu(4, "routemtu4", 1350, flags="DF")),
    _e("v4_route_mtu_nodf", "mtu", _route_mtu(4, "routemtu4", 1350)),
    _e("v4_route_mtu_under", "mtu", _route_mtu(4, "routemtu4", 1250, flags="DF")),
    _e("v4_route_mtu_lock_df", "mtu", _route_mtu(4, "routemtulock4", 1350, flags="DF")),
    _e("v4_route_mtu_lock_nodf", "mtu", _route_mtu(4, "routemtulock4", 1350)),
    _e("v6_route_mtu", "mtu", _route_mtu(6, "routemtu6", 1350)),
    _e("v6_route_mtu_lock", "mtu", _route_mtu(6, "routemtulock6", 1350)),
    _e("v6_dev_mtu6", "mtu", _route_mtu(6, "mtu6_peer6", 1300)),
    _e("v4_oversize_ingress", "mtu", _oversize_ingress),
    _e("v6_oversize_ingress", "mtu", _oversize_ingress6),
    _e("v4_too_big_for_veth", "mtu", _too_big_for_veth),
    # IPv4 options
    _e("v4_opt_nop_eol", "options", _raw_options(b"\x01\x01\x01\x00")),
    _e("v4_opt_record_route", "options", _options(IPOption_RR(length=11, routers=["0.0.0.0"] * 2))),
    _e("v4_opt_router_alert", "options", _options(IPOption_Router_Alert())),
    _e("v4_opt_timestamp", "options", _raw_options(b"\x44\x0c\x05\x00" + b"\0" * 8)),
    _e("v4_opt_lsrr", "options", _raw_options(b"\x83\x07\x04\x0a\x09\x09\x09")),
    _e("v4_opt_bad_length", "options", _raw_options(b"\x07\x30\x04\x00")),
    _e("v4_opt_unknown", "options", _raw_options(b"\x9e\x04\x00\x00")),
    _e("v4_opt_to_router", "options", _raw_options(b"\x94\x04\x00\x00", key="router4")),
    # fragments
    _e("v4_frag_first", "fragments", _fragment("first")),
    _e("v4_frag_middle", "fragments", _fragment("middle")),
    _e("v4_frag_last", "fragments", _fragment("last")),
    _e("v4_frag_df_mf", "fragments", _fragment("df_mf")),
    _e("v4_frag_first_over_mtu", "fragments", lambda s, n: _over_mtu(4, 1, flags="MF")(s, n)),
    _e("v4_frag_to_router_0", "fragments", _reassembled_echo(0)),
    _e("v4_frag_to_router_1", "fragments", _reassembled_echo(1)),
    _e("v6_frag_first", "fragments", _v6_fragment("first")),
    _e("v6_frag_last", "fragments", _v6_fragment("last")),
    _e("v6_frag_atomic", "fragments", _v6_fragment("atomic")),
    _e("v6_frag_to_router_0", "fragments", _v6_reassembled_echo(0)),
    _e("v6_frag_to_router_1", "fragments", _v6_reassembled_echo(1)),
    # checksums
    _e("v4_bad_csum", "csum", _bad_ipv4_csum),
    _e("v4_bad_csum_ttl_1", "csum", _bad_ipv4_csum_ttl1),
    _e("v4_bad_udp_csum_forward", "csum", _bad_l4_csum("udp", "peer4")),
    _e("v4_bad_tcp_csum_forward", "csum", _bad_l4_csum("tcp", "peer4")),
    _e("v4_bad_icmp_csum_forward", "csum", _bad_l4_csum("icmp", "peer4")),
    _e("v4_bad_udp_csum_to_router", "csum", _bad_l4_csum("udp", "router4")),
    _e("v4_bad_tcp_csum_to_router", "csum", _bad_l4_csum("tcp", "router4")),
    _e("v4_bad_icmp_csum_to_router", "csum", _bad_l4_csum("icmp", "router4")),
    _e("v6_bad_udp_csum_forward", "csum", _bad_l4_csum6),
    _e("v4_udp_zero_csum", "csum", lambda s, n: _v4_to("peer4", lambda m: UDP(
        sport=4001, dport=7000, chksum=0) / payload(m))(s, n)),
    # invalid in IPv6 (RFC 8200), but ip6_forward() does not look at L4: forwarded as is
    _e("v6_udp_zero_csum", "csum", lambda s, n: _v6_to("peer6", lambda m: UDP(
        sport=4002, dport=7000, chksum=0) / payload(m))(s, n)),
    # lengths
    _e("v4_tot_len_plus_1", "length", _tot_len(1)),
    _e("v4_tot_len_plus_1000", "length", _tot_len(1000)),
    _e("v4_tot_len_minus_10", "length", _tot_len(-10)),
    _e("v4_tot_len_19", "length", _tot_len_value(19)),
    _e("v4_tot_len_20", "length", _tot_len_value(20)),
    _e("v4_tot_len_0", "length", _tot_len_value(0)),
    _e("v4_tot_len_below_options", "length", lambda s, n: None if (
        f := _raw_options(b"\x01" * 8)(s, n)) is None else with_ipv4_csum(
        patched(f, 16, (24).to_bytes(2, "big")), 28)),
    _e("v6_plen_plus_1", "length", _plen(1)),
    _e("v6_plen_minus_10", "length", _plen(-10)),
    _e("v6_plen_0_no_next", "length", lambda s, n: None if "peer6" not in s.dst else v6(
        s, s.dst["peer6"], nh=59, plen=0)),
    # truncated headers, IHL < 5, wrong versions
    _e("eth_only_ipv4", "truncated", lambda s, n: wire(eth(s, type_=ETH_P_IP))),
    _e("eth_only_ipv6", "truncated", lambda s, n: wire(eth(s, type_=ETH_P_IPV6))),
    _e("v4_header_cut_10", "truncated", _truncated(_v4_to("peer4", _udp), 24)),
    _e("v4_header_cut_19", "truncated", _truncated(_v4_to("peer4", _udp), 33)),
    _e("v4_udp_header_cut", "truncated", _truncated(_v4_to("peer4", _udp), 38)),
    _e("v4_tcp_header_cut", "truncated", _truncated(_v4_to("peer4", _tcp_syn), 44)),
    _e("v6_header_cut_39", "truncated", _truncated(_v6_to("peer6", _udp), 53)),
    _e("v6_udp_header_cut", "truncated", _truncated(_v6_to("peer6", _udp), 58)),
    _e("v4_ihl_4", "truncated", _ihl(4)),
    _e("v4_ihl_0", "truncated", _ihl(0)),
    _e("v4_ihl_15_short", "truncated", _ihl(15, fix_csum=False)),
    _e("v4_ihl_6_no_option_bytes", "truncated", _ihl(6)),
    _e("v4_version_6_in_ip", "truncated", _version(ETH_P_IP, 0x65)),
    _e("v4_version_0", "truncated", _version(ETH_P_IP, 0x05)),
    _e("v4_in_ipv6_ethertype", "truncated", _version(ETH_P_IPV6, 0x45)),
    _e("v6_version_4", "truncated", _v6_to("peer6", _udp, version=4)),
    # protocols the router does not know, tunnels it has no device for
    _e("v4_proto_253", "protocols", _v4_to("peer4", _opaque, proto=253)),
    _e("v4_proto_0", "protocols", _v4_to("peer4", _opaque, proto=0)),
    _e("v4_proto_255", "protocols", _v4_to("peer4", _opaque, proto=255)),
    _e("v4_proto_gre", "protocols", _v4_to("peer4", _opaque, proto=47)),
    _e("v4_proto_253_to_router", "protocols", _v4_to("router4", _opaque, proto=253)),
    _e("v4_proto_sctp", "protocols", _v4_to("peer4", _opaque, proto=132)),
    _e("v6_nh_no_next", "protocols", _v6_to("peer6", _opaque, nh=59)),
    _e("v6_nh_esp", "protocols", _v6_to("peer6", _opaque, nh=50)),
    _e("v6_nh_143", "protocols", _v6_to("peer6", _opaque, nh=143)),
    _e("v6_nh_253_to_router", "protocols", _v6_to("router6", _opaque, nh=253)),
    # IPv6 extension headers
    _e("v6_hbh_padn", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrHopByHop() / udp(n))),
    _e("v6_hbh_router_alert", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrHopByHop(
        options=[RouterAlert()]) / udp(n))),
    _e("v6_hbh_unknown_discard_icmp", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrHopByHop(
        options=[HBHOptUnknown(otype=0xC7, optdata=b"\0\0")]) / udp(n))),
    _e("v6_hbh_hlim_1", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrHopByHop() / udp(n),
                                      hlim=1)),
    _e("v6_dest_opts", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrDestOpt() / udp(n))),
    _e("v6_routing_type0", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrRouting(
        addresses=["fd00:99::1"], segleft=1) / udp(n))),
    _e("v6_routing_type0_to_router", "ext", _v6_to("router6", lambda n: IPv6ExtHdrRouting(
        addresses=["fd00:99::1"], segleft=1) / udp(n))),
    _e("v6_routing_segleft_0", "ext", _v6_to("peer6", lambda n: IPv6ExtHdrRouting(
        addresses=["fd00:99::1"], segleft=0) / udp(n))),
    _e("v6_ext_ah", "ext", _v6_to("peer6", lambda n: payload(n, 24), nh=51)),
    _e("v6_ext_mobility", "ext", _v6_to("peer6", lambda n: payload(n, 24), nh=135)),
    _e("v6_hbh_to_router", "ext", _v6_to("router6", lambda n: IPv6ExtHdrHopByHop() / _echo6(n))),
    # the router's own addresses
    _e("v4_echo_router", "local", _v4_to("router4", _echo4)),
    _e("v4_echo_router_other_if", "local", _v4_to("router_other4", _echo4)),
    _e("v4_udp_router_closed", "local", _v4_to("router4", _udp)),
    _e("v4_tcp_router_closed", "local", _v4_to("router4", _tcp_syn)),
    _e("v4_tcp_router_ack", "local", _v4_to("router4", lambda n: tcp(n, "A"))),
    _e("v4_timestamp_router", "local", _timestamp),
    _e("v4_echo_loopback", "local", lambda s, n: v4(s, n, "127.0.0.1") / _echo4(n)),
    _e("v4_to_zeronet", "local", lambda s, n: v4(s, n, "0.1.2.3") / _udp(n)),
    _e("v4_to_network_address", "local", _v4_to("net_other4", _echo4)),
    _e("v4_big_echo_router", "local", _big_echo(4)),
    _e("v6_echo_router", "local", _v6_to("router6", _echo6)),
    _e("v6_big_echo_router", "local", _big_echo(6)),
    _e("v6_echo_router_other_if", "local", _v6_to("router_other6", _echo6)),
    _e("v6_udp_router_closed", "local", _v6_to("router6", _udp)),
    _e("v6_tcp_router_closed", "local", _v6_to("router6", _tcp_syn)),
    _e("v6_echo_anycast", "local", _v6_to("anycast6", _echo6)),
    _e("v6_echo_loopback", "local", lambda s, n: v6(s, "::1") / _echo6(n)),
    _e("v6_echo_link_local", "local", lambda s, n: v6(s, "fe80::1") / _echo6(n)),
    _e("v6_ns_router", "local", _ns),
    _e("v6_rs", "local", _rs),
    # broadcast and multicast, at L2 and L3
    _e("v4_limited_broadcast", "l2cast", _l2cast(BROADCAST_MAC, "limited_bcast4")),
    _e("v4_directed_bcast_own", "l2cast", _l2cast(BROADCAST_MAC, "bcast4")),
    _e("v4_directed_bcast_other", "l2cast", _v4_to("bcast_other4", _echo4)),
    _e("v4_bcast_mac_unicast_ip", "l2cast", _l2cast(BROADCAST_MAC, "peer4")),
    _e("v4_mcast_mac_unicast_ip", "l2cast", _l2cast("01:00:5e:00:00:05", "peer4")),
    _e("v4_all_hosts", "l2cast", _l2cast("01:00:5e:00:00:01", "all_hosts4")),
    _e("v4_mcast_group", "l2cast", lambda s, n: v4(s, n, "239.1.2.3", mac="01:00:5e:01:02:03")
       / _udp(n)),
    _e("v4_mcast_ip_unicast_mac", "l2cast", lambda s, n: v4(s, n, "239.1.2.3") / _udp(n)),
    _e("v6_all_nodes", "l2cast", lambda s, n: v6(s, "ff02::1", mac="33:33:00:00:00:01")
       / _echo6(n)),
    _e("v6_mcast_site", "l2cast", lambda s, n: v6(s, "ff05::1:3", mac="33:33:00:01:00:03")
       / _udp(n)),
    _e("v6_mcast_ip_unicast_mac", "l2cast", lambda s, n: v6(s, "ff0e::1234") / _udp(n)),
    _e("v6_bcast_mac_unicast_ip", "l2cast", _l2cast(BROADCAST_MAC, "peer6", 6)),
    # special routes
    _e("v4_blackhole", "routes", _v4_to("blackhole4", _udp)),
    _e("v4_unreachable", "routes", _v4_to("unreachable4", _udp)),
    _e("v4_prohibit", "routes", _v4_to("prohibit4", _udp)),
    _e("v4_throw", "routes", _v4_to("throw4", _udp)),
    _e("v4_no_route", "routes", _v4_to("noroute4", _udp)),
    _e("v4_no_neighbour", "routes", _v4_to("noneigh4", _udp)),
    _e("v4_same_link", "routes", _v4_to("samelink4", _udp)),
    _e("v6_blackhole", "routes", _v6_to("blackhole6", _udp)),
    _e("v6_unreachable", "routes", _v6_to("unreachable6", _udp)),
    _e("v6_prohibit", "routes", _v6_to("prohibit6", _udp)),
    _e("v6_throw", "routes", _v6_to("throw6", _udp)),
    _e("v6_no_route", "routes", _v6_to("noroute6", _udp)),
    _e("v6_no_neighbour", "routes", _v6_to("noneigh6", _udp)),
    _e("v6_same_link", "routes", _v6_to("samelink6", _udp)),
    # spoofed and martian sources
    _e("v4_src_other_subnet", "spoof", _spoof4("spoof_other4")),
    _e("v4_src_unrouted", "spoof", _spoof4("spoof_unrouted4")),
    _e("v4_src_router", "spoof", _spoof4("router_other4")),
    _e("v4_src_router_own_link", "spoof", _spoof4("router4")),
    _e("v4_src_bcast_other", "spoof", _spoof4("bcast_other4")),
    _e("v4_src_bcast_own", "spoof", _spoof4("bcast4")),
    _e("v4_src_blackhole", "spoof", _spoof4("blackhole4")),
    _e("v4_src_loopback", "spoof", _with_src("127.0.0.1", 4)),
    _e("v4_src_zero", "spoof", _with_src("0.0.0.0", 4)),
    _e("v4_src_limited_bcast", "spoof", _with_src("255.255.255.255", 4)),
    _e("v4_src_multicast", "spoof", _with_src("224.0.0.9", 4)),
    _e("v4_src_class_e", "spoof", _with_src("240.0.0.1", 4)),
    _e("v6_src_other_subnet", "spoof", _spoof6("spoof_other6")),
    _e("v6_src_router", "spoof", _spoof6("router_other6")),
    _e("v6_src_loopback", "spoof", _with_src("::1", 6)),
    _e("v6_src_unspecified", "spoof", _with_src("::", 6)),
    _e("v6_src_multicast", "spoof", _with_src("ff02::1", 6)),
    _e("v6_src_link_local", "spoof", _with_src("fe80::2", 6)),
    _e("v6_src_v4_mapped", "spoof", _with_src("::ffff:10.1.0.2", 6)),
    # frames not addressed to the receiving interface
    _e("v4_mac_other_host", "l2", _not_for_us("neighbour")),
    _e("v4_mac_router_other_if", "l2", _not_for_us("router_other_mac")),
    _e("v6_mac_other_host", "l2", lambda s, n: None if "peer6" not in s.dst else v6(
        s, s.dst["peer6"], mac=s.neighbour_mac) / _udp(n)),
    # runts
    _e("runt_14", "runts", lambda s, n: wire(eth(s, type_=0x88B5))),
    _e("runt_v4_20", "runts", _runt(20)),
    _e("runt_v4_34", "runts", _runt(34)),
    _e("runt_v4_udp_42", "runts", _runt(42)),
    # ARP and other ethertypes
    _e("arp_who_has_router", "arp", _arp(1, "router4")),
    _e("arp_who_has_router_other_if", "arp", _arp(1, "router_other4")),
    _e("arp_who_has_other", "arp", _arp(1, "peer4")),
    _e("arp_gratuitous", "arp", _arp(1, None)),
    _e("arp_unicast_request", "arp", lambda s, n: _arp(1, "router4", dst_mac=s.router_mac)(s, n)),
    _e("arp_reply_unsolicited", "arp", lambda s, n: _arp(2, "router4",
                                                         dst_mac=s.router_mac)(s, n)),
    _e("arp_truncated", "arp", _truncated(_arp(1, "router4"), 30)),
    _e("ethertype_local_exp", "arp", _ethertype(0x88B5)),
    _e("ethertype_vlan_ip", "arp", _vlan_ip),
    _e("ethertype_qinq", "arp", _ethertype(0x88A8, b"\x00\x0a\x08\x00" + b"\0" * 40)),
    _e("ethertype_mpls", "arp", _ethertype(0x8847, b"\x00\x01\x01\x40" + b"\0" * 40)),
    _e("ethertype_pppoe", "arp", _ethertype(0x8864)),
    _e("ethertype_llc", "arp", _llc),
    # ICMP errors *to* the router from the next hop, about packets the router sent; then what
    # they changed: a redirect (accepted: accept_redirects is on, the sender is the current
    # gateway, the new one a known gateway) and path MTUs the router learns
    _e("icmp_redirect_to_router", "icmp_in4", _icmp_to_router("redirect")),
    _e("icmp_frag_needed_to_router", "icmp_in4", _icmp_to_router("frag_needed")),
    _e("icmp6_packet_too_big_to_router", "icmp_in6", _icmp_to_router("too_big")),
    _e("v4_after_redirect", "after_icmp", _v4_to("redirect_dst4", _udp)),
    _e("v4_after_learned_pmtu_df", "after_icmp", _route_mtu(4, "pmtu_dst4", 1350, flags="DF")),
    _e("v6_after_learned_pmtu", "after_icmp", _route_mtu(6, "pmtu_dst6", 1350)),
    # a netfilter forward rule (udp dport 9 drop) and its control
    _e("nft_v4_udp_dport_9", "nft", _v4_to("peer4", lambda n: udp(n, dport=9))),
    _e("nft_v4_udp_dport_10", "nft", _v4_to("peer4", lambda n: udp(n, dport=10))),
    _e("nft_v6_udp_dport_9", "nft", _v6_to("peer6", lambda n: udp(n, dport=9))),
    _e("nft_v6_udp_dport_10", "nft", _v6_to("peer6", lambda n: udp(n, dport=10))),
    # policy routing: rules selecting on ipproto/dport, source, destination, DSCP
    _e("policy_v4_dport_7100", "policy", _v4_to("peer4", lambda n: udp(n, dport=7100))),
    _e("policy_v6_dport_7100", "policy", _v6_to("peer6", lambda n: udp(n, dport=7100))),
    _e("policy_v4_tcp_dport_7100", "policy", _v4_to("peer4", lambda n: tcp(n, dport=7100))),
    _e("policy_v4_from_upper_half", "policy", _with_src_key("10.1.0.200", "peer4")),
    _e("policy_v4_to_prohibit_rule", "policy", _v4_to("rule_prohibit4", _udp)),
    _e("policy_v6_to_prohibit_rule", "policy", _v6_to("rule_prohibit6", _udp)),
    _e("policy_v4_dscp_4", "policy", _v4_to("peer4", _udp, tos=4 << 2)),
    _e("policy_v4_anyip_local", "policy", _v4_to("anyip4", _echo4)),
)

# ---- forward-hook firewalls (scenarios fw_*) -----------------------------------------------
# Probes of the rulesets in ``scenarios`` (ACL_RULES, STATEFUL_NFT): each frame selects one
# rule (or the policy).  Addresses are the router topology's hosts (h1 10.1.0.2, h2 10.2.0.2,
# h3 10.3.0.2); a probe is found again at its destination by IPv4 source, destination and ID,
# or by IPv6 source, destination and flow label (``fw_ident``): unique per case, kept by
# forwarding, present even in frames without room for a tag (TCP handshakes).

def fw_ident(data: bytes) -> bytes | None:
    """What identifies a firewall probe on the wire: (IPv4 src, dst, ID) or (IPv6 src, dst,
    flow label); None for anything else."""
    if len(data) >= 34 and data[12:14] == b"\x08\x00":
        return data[26:34] + data[18:20]
    if len(data) >= 54 and data[12:14] == b"\x86\xdd":
        return data[22:54] + bytes([data[15] & 0x0F]) + data[16:18]
    return None


L4 = Callable[[str], Packet]


def _fw_udp(dport: int, sport: int | None = None, **udp_: Any) -> L4:
    def body(name: str) -> Packet:
        return UDP(sport=sport or 10000 + ip_id(name) % 50000, dport=dport, **udp_) / payload(
            name)
    return body


def _fw_tcp(dport: int, flags: str = "S", sport: int | None = None, seq: int | None = None,
            ack: int = 0, data: bool = True) -> L4:
    """A TCP segment; ``data`` adds the tag as payload (not for handshakes conntrack tracks)."""
    def body(name: str) -> Packet:
        seg = TCP(sport=sport or 10000 + ip_id(name) % 50000, dport=dport, flags=flags,
                  seq=ip_id(name) << 8 if seq is None else seq, ack=ack, window=65535)
        return seg / payload(name) if data else seg
    return body


def _fw_echo(family: int, type_: int | None = None, ident: int | None = None) -> L4:
    def body(name: str) -> Packet:
        i = ip_id(name) if ident is None else ident
        if family == 4:
            return ICMP(type=8 if type_ is None else type_, id=i, seq=1) / payload(name)
        if type_ == 129:
            return ICMPv6EchoReply(id=i, seq=1) / payload(name)
        return ICMPv6EchoRequest(id=i, seq=1) / payload(name)
    return body


def _fw_unreach(src: str, dst: str, sport: int, dport: int) -> L4:
    """ICMP port unreachable quoting a UDP datagram ``src:sport -> dst:dport`` (the quoted
    payload carries the error's own tag)."""
    def body(name: str) -> Packet:
        quoted = IP(src=src, dst=dst, id=0x1111, ttl=63) / UDP(sport=sport, dport=dport) / (
            payload(name))
        return ICMP(type=3, code=3) / Raw(wire(quoted))
    return body


def _fw4(dst: str, body: L4, src: str | None = None, **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet:
        return v4(s, name, dst, **({"src": src} if src else {}), **ip) / body(name)
    return build


def _fw6(dst: str, body: L4, src: str | None = None, **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet:
        fields: dict[str, Any] = {"fl": ip_id(name)}
        if src:
            fields["src"] = src
        fields.update(ip)
        return v6(s, dst, **fields) / body(name)
    return build


def _fw_sized(family: int, dst: str, total: int, dport: int, **ip: Any) -> Builder:
    def build(s: Side, name: str) -> Packet:
        if family == 4:
            return v4(s, name, dst, **ip) / _fw_udp(dport)(name) / Raw(b"." * (total - 60))
        return v6(s, dst, fl=ip_id(name), **ip) / _fw_udp(dport)(name) / Raw(
            b"." * (total - 80))
    return build


H1_4, H2_4, H3_4 = "10.1.0.2", "10.2.0.2", "10.3.0.2"
R2_4 = "10.2.0.1"  # the router on link 2: the NAT gateway's public address
H1_6, H2_6, H3_6 = "fd00:1::2", "fd00:2::2", "fd00:3::2"

FIREWALL_ENTRIES: tuple[Entry, ...] = (
    # the stateless ACL (scenarios fw_acl_*, fw_ipt_*), from the LAN side (h1)
    _e("fw4_start_accept", "fw_lan", _fw4(H2_4, _fw_udp(7001))),
    _e("fw4_start_drop", "fw_lan", _fw4(H2_4, _fw_tcp(7002))),
    _e("fw6_start_accept", "fw_lan", _fw6(H2_6, _fw_udp(7001))),
    _e("fw6_start_drop", "fw_lan", _fw6(H2_6, _fw_tcp(7002))),
    _e("fw4_neg_saddr", "fw_lan", _fw4(H2_4, _fw_udp(7500), src="172.16.5.5")),
    _e("fw4_range_accept", "fw_lan", _fw4(H3_4, _fw_udp(7150))),
    _e("fw4_srange_drop", "fw_lan", _fw4(H2_4, _fw_udp(7500), src="10.1.0.110")),
    _e("fw4_srange_ctl", "fw_lan", _fw4(H2_4, _fw_udp(7500))),
    _e("fw4_anonset_443", "fw_lan", _fw4(H3_4, _fw_tcp(443))),
    _e("fw4_anonset_miss", "fw_lan", _fw4(H3_4, _fw_tcp(8443))),
    _e("fw4_end_drop", "fw_lan", _fw4(H2_4, _fw_tcp(7501))),
    _e("fw6_end_accept", "fw_lan", _fw6(H2_6, _fw_udp(7500))),
    _e("fw6_end_drop", "fw_lan", _fw6(H2_6, _fw_tcp(7501))),
    _e("fw4_reject", "fw_lan", _fw4(H2_4, _fw_udp(7502))),
    _e("fw6_reject", "fw_lan", _fw6(H2_6, _fw_udp(7502))),
    _e("fw4_echo", "fw_lan", _fw4(H2_4, _fw_echo(4))),
    _e("fw6_echo_policy", "fw_lan", _fw6(H2_6, _fw_echo(6))),
    _e("fw4_oif", "fw_lan", _fw4(H2_4, _fw_tcp(7600))),
    _e("fw4_oif_miss", "fw_lan", _fw4(H3_4, _fw_tcp(7600))),
    _e("fw4_policy", "fw_lan", _fw4(H2_4, _fw_udp(7999))),
    _e("fw6_policy", "fw_lan", _fw6(H2_6, _fw_udp(7999))),
    # Linux checks TTL and MTU before the forward hook: ICMP errors even for dropped traffic
    _e("fw4_ttl_1_policy", "fw_lan", _fw4(H2_4, _fw_udp(7999), ttl=1)),
    _e("fw6_hlim_1_policy", "fw_lan", _fw6(H2_6, _fw_udp(7999), hlim=1)),
    _e("fw4_df_over_mtu_policy", "fw_lan", _fw_sized(4, H2_4, 1450, 7999, flags="DF")),
    _e("fw6_over_mtu_policy", "fw_lan", _fw_sized(6, H3_6, 1300, 7999)),
    # ... from the WAN side (h2)
    _e("fw4_neg_drop", "fw_wan", _fw4(H1_4, _fw_udp(7011))),
    _e("fw4_neg_pass", "fw_wan", _fw4(H1_4, _fw_udp(7010))),
    _e("fw4_named_addr_drop", "fw_wan", _fw4(H3_4, _fw_udp(7205), src="10.2.0.70")),
    _e("fw4_named_svc", "fw_wan", _fw4(H3_4, _fw_udp(7205))),
    _e("fw6_named_svc", "fw_wan", _fw6(H3_6, _fw_udp(7201))),
    _e("fw4_named_svc_miss", "fw_wan", _fw4(H3_4, _fw_udp(7202))),
    _e("fw4_goto_accept", "fw_wan", _fw4(H3_4, _fw_udp(7350))),
    _e("fw4_goto_drop", "fw_wan", _fw4(H3_4, _fw_udp(7351))),
    _e("fw4_goto_end", "fw_wan", _fw4(H3_4, _fw_udp(7360))),
    _e("fw4_policy_wan", "fw_wan", _fw4(H3_4, _fw_tcp(7999))),
    # ... from the DMZ (h3): a jump to a user chain with a return
    _e("fw4_jump_drop", "fw_dmz", _fw4(H2_4, _fw_udp(7400))),
    _e("fw4_jump_return", "fw_dmz", _fw4(H2_4, _fw_udp(7401))),
    _e("fw4_jump_accept", "fw_dmz", _fw4(H2_4, _fw_tcp(7402))),
    _e("fw4_jump_fallthrough", "fw_dmz", _fw4(H2_4, _fw_udp(7403))),
    _e("fw6_jump_drop", "fw_dmz", _fw6(H2_6, _fw_udp(7400))),
    _e("fw6_jump_return", "fw_dmz", _fw6(H2_6, _fw_udp(7401))),
    # The stateful router firewall (scenario fw_stateful): h1 is the LAN, h2 the WAN, h3 a
    # server.  Flows are opened in one burst and answered in a later one (bursts are fenced);
    # nothing depends on the order of frames inside a burst.
    # burst 1, LAN: new flows
    _e("st4_udp_a_out1", "st_lan", _fw4(H2_4, _fw_udp(7000, sport=40001))),
    _e("st4_udp_a_out2", "st_lan", _fw4(H2_4, _fw_udp(7000, sport=40001))),
    _e("st4_udp_b_out", "st_lan", _fw4(H2_4, _fw_udp(7001, sport=40002))),
    _e("st6_udp_c_out", "st_lan", _fw6(H2_6, _fw_udp(7000, sport=40003))),
    _e("st4_udp_e_out", "st_lan", _fw4(H3_4, _fw_udp(7000, sport=40005))),
    _e("st4_tcp_t_syn", "st_lan", _fw4(H2_4, _fw_tcp(80, "S", 41001, 1000, data=False))),
    _e("st4_echo_out", "st_lan", _fw4(H2_4, _fw_echo(4, ident=0x4242))),
    _e("st6_echo_out", "st_lan", _fw6(H2_6, _fw_echo(6, ident=0x4343))),
    _e("st4_tcp_ack_no_handshake_lan", "st_lan", _fw4(H2_4, _fw_tcp(
        80, "A", 41003, 7000, ack=9000, data=False))),
    # burst 2, WAN: replies (established, related), out-of-state and invalid packets, services
    _e("st4_udp_a_reply1", "st_wan", _fw4(H1_4, _fw_udp(40001, sport=7000))),
    _e("st4_udp_a_reply2", "st_wan", _fw4(H1_4, _fw_udp(40001, sport=7000))),
    _e("st4_icmp_b_related", "st_wan", _fw4(H1_4, _fw_unreach(H1_4, H2_4, 40002, 7001))),
    _e("st6_udp_c_reply", "st_wan", _fw6(H1_6, _fw_udp(40003, sport=7000))),
    _e("st4_tcp_t_synack", "st_wan", _fw4(H1_4, _fw_tcp(41001, "SA", 80, 5000, ack=1001,
                                                        data=False))),
    _e("st4_echo_reply", "st_wan", _fw4(H1_4, _fw_echo(4, type_=0, ident=0x4242))),
    _e("st6_echo_reply", "st_wan", _fw6(H1_6, _fw_echo(6, type_=129, ident=0x4343))),
    _e("st4_udp_unsolicited", "st_wan", _fw4(H1_4, _fw_udp(40099, sport=7000))),
    _e("st6_udp_unsolicited", "st_wan", _fw6(H1_6, _fw_udp(40099, sport=7000))),
    _e("st4_tcp_ack_no_handshake", "st_wan", _fw4(H1_4, _fw_tcp(41099, "A", 80, 7000,
                                                                ack=9000, data=False))),
    _e("st4_icmp_unreach_no_flow", "st_wan", _fw4(H1_4, _fw_unreach(H1_4, H2_4, 40098,
                                                                     7000))),
    _e("st4_udp_d_dns", "st_wan", _fw4(H3_4, _fw_udp(53, sport=40004))),
    _e("st6_udp_f_dns", "st_wan", _fw6(H3_6, _fw_udp(53, sport=40006))),
    _e("st4_udp_dns_bad_csum", "st_wan", _fw4(H3_4, _fw_udp(53, sport=40007, chksum=0x1234))),
    _e("st4_tcp_u_syn", "st_wan", _fw4(H3_4, _fw_tcp(443, "S", 41002, 3000, data=False))),
    _e("st4_tcp_server_8080", "st_wan", _fw4(H3_4, _fw_tcp(8080, "S", 41004, 3000,
                                                          data=False))),
    _e("st4_tcp_lan_80", "st_wan", _fw4(H1_4, _fw_tcp(80, "S", 41005, 3000, data=False))),
    _e("st4_tcp_synfin", "st_wan", _fw4(H3_4, _fw_tcp(80, "SF", 41006, 3000, data=False))),
    _e("st4_echo_wan", "st_wan", _fw4(H1_4, _fw_echo(4))),
    _e("st4_udp_wan_other", "st_wan", _fw4(H3_4, _fw_udp(7000, sport=40008))),
    # burst 3, server: replies and an unsolicited datagram
    _e("st4_tcp_u_synack", "st_srv", _fw4(H2_4, _fw_tcp(41002, "SA", 443, 8000, ack=3001,
                                                       data=False))),
    _e("st4_udp_d_reply", "st_srv", _fw4(H2_4, _fw_udp(40004, sport=53))),
    _e("st6_udp_f_reply", "st_srv", _fw6(H2_6, _fw_udp(40006, sport=53))),
    _e("st4_udp_e_reply", "st_srv", _fw4(H1_4, _fw_udp(40005, sport=7000))),
    _e("st4_udp_server_unsolicited", "st_srv", _fw4(H2_4, _fw_udp(40010, sport=7000))),
    # burst 4, LAN: the flows go on
    _e("st4_udp_a_out3", "st_lan2", _fw4(H2_4, _fw_udp(7000, sport=40001))),
    _e("st6_udp_c_out2", "st_lan2", _fw6(H2_6, _fw_udp(7000, sport=40003))),
    _e("st4_tcp_t_ack", "st_lan2", _fw4(H2_4, _fw_tcp(80, "A", 41001, 1001, ack=5001,
                                                     data=False))),
    _e("st4_tcp_t_data", "st_lan2", _fw4(H2_4, _fw_tcp(80, "PA", 41001, 1001, ack=5001))),
    # burst 5, WAN: established both ways
    _e("st4_udp_a_reply3", "st_wan2", _fw4(H1_4, _fw_udp(40001, sport=7000))),
    _e("st4_udp_b_reply", "st_wan2", _fw4(H1_4, _fw_udp(40002, sport=7001))),
    _e("st6_udp_c_reply2", "st_wan2", _fw6(H1_6, _fw_udp(40003, sport=7000))),
    _e("st4_tcp_t_data_in", "st_wan2", _fw4(H1_4, _fw_tcp(41001, "PA", 80, 5001,
                                                         ack=1001 + 32))),
    # The NAT gateway (scenario fw_nat_gateway): the stateful firewall above, r masquerading
    # out of r2 (10.2.0.1, ports kept) and forwarding 10.2.0.1:8053/udp to h3:53.  Bursts as
    # above: flows opened, answered, then going on both ways (then NATed by the fast path).
    # burst 1, LAN: new flows out through the masquerade
    _e("nat4_udp_out1", "nat_lan", _fw4(H2_4, _fw_udp(7000, sport=40101))),
    _e("nat4_tcp_syn", "nat_lan", _fw4(H2_4, _fw_tcp(80, "S", 41101, 1000, data=False))),
    # burst 2, WAN: replies to the masqueraded address, a port forward, strays
    _e("nat4_udp_reply1", "nat_wan", _fw4(R2_4, _fw_udp(40101, sport=7000))),
    _e("nat4_tcp_synack", "nat_wan", _fw4(R2_4, _fw_tcp(41101, "SA", 80, 5000, ack=1001,
                                                       data=False))),
    _e("nat4_dnat_query1", "nat_wan", _fw4(R2_4, _fw_udp(8053, sport=40201))),
    _e("nat4_icmp_related", "nat_wan", _fw4(R2_4, _fw_unreach(R2_4, H2_4, 40101, 7000))),
    _e("nat4_udp_unmapped", "nat_wan", _fw4(R2_4, _fw_udp(40199, sport=7000))),
    # burst 3, server: the port forward's answer (the entry's reply direction)
    _e("nat4_dnat_answer1", "nat_srv", _fw4(H2_4, _fw_udp(40201, sport=53))),
    # burst 4, LAN: established flows go on
    _e("nat4_udp_out2", "nat_lan2", _fw4(H2_4, _fw_udp(7000, sport=40101))),
    _e("nat4_tcp_ack", "nat_lan2", _fw4(H2_4, _fw_tcp(80, "A", 41101, 1001, ack=5001,
                                                     data=False))),
    _e("nat4_tcp_data", "nat_lan2", _fw4(H2_4, _fw_tcp(80, "PA", 41101, 1001, ack=5001))),
    # burst 5, WAN and server: established both ways
    _e("nat4_udp_reply2", "nat_wan2", _fw4(R2_4, _fw_udp(40101, sport=7000))),
    _e("nat4_dnat_query2", "nat_wan2", _fw4(R2_4, _fw_udp(8053, sport=40201))),
    _e("nat4_tcp_data_in", "nat_wan2", _fw4(R2_4, _fw_tcp(41101, "PA", 80, 5001,
                                                         ack=1001 + 32))),
    _e("nat4_dnat_answer2", "nat_srv2", _fw4(H2_4, _fw_udp(40201, sport=53))),
)
ENTRIES = ENTRIES + FIREWALL_ENTRIES

GROUPS = tuple(dict.fromkeys(e.group for e in ENTRIES))
BY_NAME = {e.name: e for e in ENTRIES}


def build(sides: Iterable[tuple[Side, Iterable[str]]]) -> list[CorpusFrame]:
    """The frames each side sends: every entry of the given groups that applies to it."""
    out: list[CorpusFrame] = []
    for side, groups in sides:
        wanted = set(groups)
        unknown = wanted - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown corpus groups: {sorted(unknown)}")
        for entry in ENTRIES:
            if entry.group not in wanted:
                continue
            name = f"{side.host}:{entry.name}"
            pkt = entry.build(side, name)
            if pkt is not None:
                out.append(CorpusFrame(name, side.host, wire(pkt), entry.fast))
    return out
