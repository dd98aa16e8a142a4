"""Benchmark frames built byte by byte: Ethernet + IPv4/IPv6 + UDP, lengths and checksums right.

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

ETH_LEN, IPV4_LEN, IPV6_LEN, UDP_LEN = 14, 20, 40, 8
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPPROTO_UDP = 17
IPV4_DF, IPV4_MF = 0x4000, 0x2000  # flags in the fragment-offset field
MIN_FRAME = 64  # the generator rewrites the first 64 bytes of every frame
MAX_FRAME = 1514  # MTU 1500 everywhere in the topologies
IPV4_DST_OFFSET = ETH_LEN + 16  # where the generator varies the IPv4 destination
MAC_DST_LOW_OFFSET = 2  # the low four bytes of the destination MAC


def mac_bytes(mac: str) -> bytes:
    raw = bytes.fromhex(mac.replace(":", ""))
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac}")
    return raw


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``, ready to store."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _payload(n: int) -> bytes:
    return bytes(i & 0xFF for i in range(n))


def _udp(src_pseudo: bytes, sport: int, dport: int, payload: bytes, with_csum: bool) -> bytes:
    length = UDP_LEN + len(payload)
    hdr = struct.pack("!HHHH", sport, dport, length, 0)
    if not with_csum:
        return hdr + payload
    csum = checksum(src_pseudo + hdr + payload) or 0xFFFF  # 0 means "none" on the wire
    return struct.pack("!HHHH", sport, dport, length, csum) + payload


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
    l2 = mac_bytes(spec.dst_mac) + mac_bytes(spec.src_mac)
    if dst.version == 4:
        payload = _payload(spec.size - ETH_LEN - IPV4_LEN - UDP_LEN)
        udp_len = UDP_LEN + len(payload)
        pseudo = src.packed + dst.packed + struct.pack("!BBH", 0, IPPROTO_UDP, udp_len)
        udp = _udp(pseudo, spec.sport, spec.dport, payload, spec.udp_csum)
        flags = IPV4_MF if spec.fragment else IPV4_DF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IPV4_LEN + udp_len, 0, flags, spec.ttl,
                         IPPROTO_UDP, 0, src.packed, dst.packed)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        return l2 + struct.pack("!H", ETH_P_IP) + ip + udp
    if spec.size < ETH_LEN + IPV6_LEN + UDP_LEN:
        raise ValueError(f"frame size {spec.size} too small for IPv6/UDP")
    payload = _payload(spec.size - ETH_LEN - IPV6_LEN - UDP_LEN)
    udp_len = UDP_LEN + len(payload)
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", udp_len, IPPROTO_UDP)
    udp = _udp(pseudo, spec.sport, spec.dport, payload, True)  # mandatory for IPv6
    ip = struct.pack("!IHBB16s16s", 6 << 28, udp_len, IPPROTO_UDP, spec.ttl, src.packed,
                     dst.packed)
    return l2 + struct.pack("!H", ETH_P_IPV6) + ip + udp


@dataclass(frozen=True)
class Variation:
    """A 32-bit big-endian field that takes ``count`` consecutive values, one per frame.

    ``checksums`` are the 16-bit checksums covering the field, as (offset, is_udp); the
    generator updates them incrementally so that every frame stays valid.
    """

    offset: int
    base: int
    count: int
    checksums: tuple[tuple[int, bool], ...] = ()

    def value(self, i: int) -> int:
        return (self.base + i % self.count) & 0xFFFFFFFF


IPV4_CSUM_OFFSET = ETH_LEN + 10
UDP4_CSUM_OFFSET = ETH_LEN + IPV4_LEN + 6


def ipv4_destinations(first: str, count: int) -> Variation:
    """``count`` consecutive IPv4 destinations from ``first`` (IPv4 + UDP checksums follow)."""
    return Variation(IPV4_DST_OFFSET, int(ipaddress.IPv4Address(first)), count,
                     ((IPV4_CSUM_OFFSET, False), (UDP4_CSUM_OFFSET, True)))


def mac_destinations(first: str, count: int) -> Variation:
    """``count`` consecutive destination MACs: the low four bytes count up from ``first``'s."""
    return Variation(MAC_DST_LOW_OFFSET, int.from_bytes(mac_bytes(first)[2:], "big"), count)


def varied(spec: FrameSpec, var: Variation, i: int) -> FrameSpec:
    """The spec of the generator's ``i``-th frame: the reference the tests compare with."""
    value = var.value(i)
    if var.offset == IPV4_DST_OFFSET:
        return replace(spec, dst_ip=str(ipaddress.IPv4Address(value)))
    if var.offset == MAC_DST_LOW_OFFSET:
        high = mac_bytes(spec.dst_mac)[:2]
        return replace(spec, dst_mac=":".join(f"{b:02x}" for b in high + value.to_bytes(4, "big")))
    raise ValueError(f"no reference for a variation at offset {var.offset}")
