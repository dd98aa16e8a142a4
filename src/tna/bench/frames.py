"""Benchmark frames: Ethernet + IPv4/IPv6 + UDP (built by ``tna.frames``), lengths and checksums.

Role in the flow: the generator's template.  The fast path punts (or trims) a frame whose IP
length disagrees with the frame, and Linux trims padding, so a frame here is exactly as long
as its IP header says: no Ethernet padding.  ``size`` is the frame length without FCS (veth
carries none): 64 is the classic minimum-size test frame, 1514 a full-MTU (1500-byte) packet.
Pure functions, no root needed; the unit tests check them against the RFC arithmetic.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, replace

from tna.frames import (
    ETH_LEN,
    IPV4_DF,
    IPV4_LEN,
    IPV4_MF,
    IPV6_LEN,
    checksummed,
    ethernet,
    ip_header,
    mac_bytes,
    payload,
    pseudo_header,
)

UDP_LEN = 8
IPPROTO_UDP = 17
MIN_FRAME = 64  # the generator rewrites the first 64 bytes of every frame
MAX_FRAME = 1514  # MTU 1500 everywhere in the topologies
IPV4_DST_OFFSET = ETH_LEN + 16  # where the generator varies the IPv4 destination
MAC_DST_LOW_OFFSET = 2  # the low four bytes of the destination MAC


@dataclass(frozen=True)
class FrameSpec:
    """What the generator sends: one UDP flow, or a family of them (see ``Variation``)."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    size: int = 64
    ttl: int = 64
    sport: int = 4321
    dport: int = 9  # discard
    udp_csum: bool = True  # IPv4 only: False sends checksum 0 ("none"), legal for UDP/IPv4
    fragment: bool = False  # IPv4 only: a first fragment (MF set, offset 0) instead of DF

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.dst_ip).version


def build(spec: FrameSpec) -> bytes:
    """The frame bytes for ``spec``."""
    if not MIN_FRAME <= spec.size <= MAX_FRAME:
        raise ValueError(f"frame size {spec.size} outside {MIN_FRAME}..{MAX_FRAME}")
    src, dst = ipaddress.ip_address(spec.src_ip), ipaddress.ip_address(spec.dst_ip)
    if src.version != dst.version:
        raise ValueError("source and destination of different families")
    ip_len = IPV4_LEN if dst.version == 4 else IPV6_LEN
    if spec.size < ETH_LEN + ip_len + UDP_LEN:
        raise ValueError(f"frame size {spec.size} too small for IPv{dst.version}/UDP")
    data = payload(spec.size - ETH_LEN - ip_len - UDP_LEN)
    udp_len = UDP_LEN + len(data)
    hdr = struct.pack("!HHHH", spec.sport, spec.dport, udp_len, 0)
    if dst.version == 6 or spec.udp_csum:  # mandatory for IPv6
        udp = checksummed(pseudo_header(src, dst, IPPROTO_UDP, udp_len), hdr, 6, data, True)
    else:
        udp = hdr + data  # checksum 0: "none"
    ip = ip_header(src, dst, IPPROTO_UDP, udp_len, spec.ttl,
                   frag=IPV4_MF if spec.fragment else IPV4_DF)
    return ethernet(spec.dst_mac, spec.src_mac, dst.version) + ip + udp


@dataclass(frozen=True)
class Variation:
    """A 32-bit big-endian field that takes ``count`` values ``step`` apart (wrapping at
    2**32), one per frame.

    ``checksums`` are the 16-bit checksums covering the field, as (offset, is_udp); the
    generator updates them incrementally so that every frame stays valid.
    """

    offset: int
    base: int
    count: int
    checksums: tuple[tuple[int, bool], ...] = ()
    step: int = 1

    def value(self, i: int) -> int:
        return (self.base + (i % self.count) * self.step) & 0xFFFFFFFF


IPV4_CSUM_OFFSET = ETH_LEN + 10
UDP4_CSUM_OFFSET = ETH_LEN + IPV4_LEN + 6
IPV6_VAR_OFFSET = ETH_LEN + 24 + 2  # bytes 2..5 of the IPv6 destination
UDP6_CSUM_OFFSET = ETH_LEN + IPV6_LEN + 6


def ipv4_destinations(first: str, count: int, step: int = 1) -> Variation:
    """``count`` IPv4 destinations from ``first``, ``step`` apart (IPv4 + UDP checksums
    follow)."""
    return Variation(IPV4_DST_OFFSET, int(ipaddress.IPv4Address(first)), count,
                     ((IPV4_CSUM_OFFSET, False), (UDP4_CSUM_OFFSET, True)), step)


def ipv6_destinations(first: str, count: int, step: int = 1) -> Variation:
    """``count`` IPv6 destinations from ``first`` whose bits 16..47 (the part routing prefixes
    /17../48 tell apart) grow by ``step``; the UDP checksum follows."""
    word = int(ipaddress.IPv6Address(first)) >> 80 & 0xFFFFFFFF
    return Variation(IPV6_VAR_OFFSET, word, count, ((UDP6_CSUM_OFFSET, True),), step)


def mac_destinations(first: str, count: int) -> Variation:
    """``count`` consecutive destination MACs: the low four bytes count up from ``first``'s."""
    return Variation(MAC_DST_LOW_OFFSET, int.from_bytes(mac_bytes(first)[2:], "big"), count)


def varied(spec: FrameSpec, var: Variation, i: int) -> FrameSpec:
    """The spec of the generator's ``i``-th frame: the reference the tests compare with."""
    value = var.value(i)
    if var.offset == IPV4_DST_OFFSET:
        return replace(spec, dst_ip=str(ipaddress.IPv4Address(value)))
    if var.offset == IPV6_VAR_OFFSET:
        dst = int(ipaddress.IPv6Address(spec.dst_ip))
        dst = dst & ~(0xFFFFFFFF << 80) | value << 80
        return replace(spec, dst_ip=str(ipaddress.IPv6Address(dst)))
    if var.offset == MAC_DST_LOW_OFFSET:
        high = mac_bytes(spec.dst_mac)[:2]
        return replace(spec, dst_mac=":".join(f"{b:02x}" for b in high + value.to_bytes(4, "big")))
    raise ValueError(f"no reference for a variation at offset {var.offset}")


# ---- TCP (the stateful-tcp and nat-tcp scenarios) -------------------------------------------

TCP_LEN = 20
IPPROTO_TCP = 6
TCP_ACK = 0x10


@dataclass(frozen=True)
class TcpSegment:
    """The TCP fields of a segment of a real connection (host order), as captured."""

    seq: int
    ack: int
    window: int  # unscaled, as on the wire
    flags: int = TCP_ACK
    options: bytes = b""  # a multiple of 4 bytes, e.g. NOP NOP timestamps
    data: bytes = b""


def build_tcp(spec: FrameSpec, seg: TcpSegment) -> bytes:
    """``spec``'s addresses, ports and TTL around ``seg`` (IPv4), checksums computed from
    scratch (a captured local segment may carry only the pseudo-header sum: offload)."""
    if len(seg.options) % 4 or len(seg.options) > 40:
        raise ValueError("TCP options must be a multiple of 4 bytes, at most 40")
    src, dst = ipaddress.ip_address(spec.src_ip), ipaddress.ip_address(spec.dst_ip)
    if src.version != 4 or dst.version != 4:
        raise ValueError("TCP frames are IPv4 only")
    doff = (TCP_LEN + len(seg.options)) // 4
    hdr = struct.pack("!HHIIBBHHH", spec.sport, spec.dport, seg.seq, seg.ack, doff << 4,
                      seg.flags, seg.window, 0, 0) + seg.options
    tcp_len = len(hdr) + len(seg.data)
    tcp = checksummed(pseudo_header(src, dst, IPPROTO_TCP, tcp_len), hdr, 16, seg.data, False)
    ip = ip_header(src, dst, IPPROTO_TCP, tcp_len, spec.ttl)
    return ethernet(spec.dst_mac, spec.src_mac, 4) + ip + tcp


def parse_tcp(frame: bytes) -> tuple[str, str, int, int, TcpSegment] | None:
    """(source, destination, sport, dport, segment) of an option-less IPv4 TCP frame."""
    if len(frame) < ETH_LEN + IPV4_LEN + TCP_LEN or frame[12:14] != b"\x08\x00" \
            or frame[ETH_LEN] != 0x45 or frame[ETH_LEN + 9] != IPPROTO_TCP:
        return None
    ip_len = struct.unpack_from("!H", frame, ETH_LEN + 2)[0]
    src = str(ipaddress.IPv4Address(frame[ETH_LEN + 12:ETH_LEN + 16]))
    dst = str(ipaddress.IPv4Address(frame[ETH_LEN + 16:ETH_LEN + 20]))
    t = ETH_LEN + IPV4_LEN
    sport, dport, seq, ack, off, flags, window = struct.unpack_from("!HHIIBBH", frame, t)
    doff = (off >> 4) * 4
    if doff < TCP_LEN or ETH_LEN + ip_len > len(frame) or IPV4_LEN + doff > ip_len:
        return None
    return src, dst, sport, dport, TcpSegment(seq, ack, window, flags, frame[t + TCP_LEN:t + doff],
                                              frame[t + doff:ETH_LEN + ip_len])
