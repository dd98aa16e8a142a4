"""Frame bytes built with ``struct``: Ethernet and IPv4/IPv6 headers, L4 checksums.

Role in the flow: none in the pipeline; the one frame builder behind ``tna explain`` (a test
frame run through the attached program) and the benchmark's generator template (``tna.bench``
adds its UDP frames of a given size).  Pure functions: lengths and checksums as the RFCs say,
so a frame built here is what a sender's stack would put on the wire.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_LEN, IPV4_LEN, IPV6_LEN = 14, 20, 40
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
IPV4_DF, IPV4_MF = 0x4000, 0x2000  # flags in the fragment-offset field
IPV4_CSUM_AT = 10  # the header checksum's offset in the IPv4 header

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``, ready to store."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(text: str) -> bytes:
    """``02:00:00:00:00:01`` as six bytes; ValueError for anything else."""
    try:
        raw = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {text}")
    return raw


def payload(n: int) -> bytes:
    """``n`` bytes counting up: a payload whose corruption anywhere shows."""
    return bytes(i & 0xFF for i in range(n))


def ethernet(dst_mac: str, src_mac: str, family: int) -> bytes:
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack(
        "!H", ETH_P_IP if family == 4 else ETH_P_IPV6)


def pseudo_header(src: Address, dst: Address, proto: int, l4_len: int) -> bytes:
    """What the TCP/UDP/ICMPv6 checksum covers besides the segment (RFC 768, RFC 8200 8.1)."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, l4_len)
    return src.packed + dst.packed + struct.pack("!I3xB", l4_len, proto)


def ip_header(src: Address, dst: Address, proto: int, l4_len: int, ttl: int, *,
              ident: int = 0, frag: int = IPV4_DF, csum_xor: int = 0) -> bytes:
    """An IPv4 header without options (checksummed; ``csum_xor`` spoils it on purpose) or an
    IPv6 header without extensions; ``ttl`` is the hop limit there."""
    if src.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, IPV4_LEN + l4_len, ident, frag, ttl, proto, 0,
                         src.packed, dst.packed)
        csum = checksum(ip) ^ csum_xor
        return ip[:IPV4_CSUM_AT] + struct.pack("!H", csum) + ip[IPV4_CSUM_AT + 2:]
    return struct.pack("!IHBB16s16s", 6 << 28, l4_len, proto, ttl, src.packed, dst.packed)


def checksummed(pseudo: bytes, hdr: bytes, csum_at: int, data: bytes, udp: bool,
                csum_xor: int = 0) -> bytes:
    """An L4 header (its checksum field zero) and its data, with the checksum over ``pseudo``
    (b'' for ICMPv4) stored at ``csum_at``; UDP sends a computed 0 as 0xFFFF, since 0 means
    "no checksum" there.  ``csum_xor`` spoils it on purpose."""
    csum = checksum(pseudo + hdr + data)
    if udp and csum == 0:
        csum = 0xFFFF
    return hdr[:csum_at] + struct.pack("!H", csum ^ csum_xor) + hdr[csum_at + 2:] + data
