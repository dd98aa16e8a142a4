"""Normalisations: the only bytes the comparison is allowed to ignore.

Role in the equivalence suite: a frame may differ between two runs of *plain Linux* only where
Linux itself fills a field nondeterministically.  Each such field is named here, with the
kernel code that makes it random and the narrowest condition under which it is rewritten.
Nothing else is ever rewritten: a normalisation that matched forwarded traffic could hide
exactly the differences the suite exists to find, so every one of them is restricted to
packets the router's *own stack* generated (source = one of its addresses), which the fast
path never produces.  ``tests/equivalence/test_harness.py`` proves the list is needed (two
runs of plain Linux differ without it) and sufficient (they do not with it).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from testing.equivalence.capture import Frame

ETH_P_IP = b"\x08\x00"
IPPROTO_ICMP = 1
ICMP_TIMESTAMPREPLY = 14
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})  # unreachable, quench, redirect, time, param


@dataclass(frozen=True)
class Context:
    """What a normalisation may know: what the namespaces under test send from."""

    local_v4: tuple[ipaddress.IPv4Network, ...]  # their "local" routes (addresses, AnyIP)
    local_v6: tuple[ipaddress.IPv6Network, ...] = ()

    def is_local(self, packed: bytes) -> bool:
        addr = ipaddress.IPv4Address(packed)
        return any(addr in net for net in self.local_v4)

    def is_local6(self, packed: bytes) -> bool:
        addr = ipaddress.IPv6Address(packed)
        return any(addr in net for net in self.local_v6)


@dataclass(frozen=True)
class Normalisation:
    name: str
    why: str
    rewrite: Callable[[bytes, Context], bytes | None]  # None: does not apply to this frame


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _local_ipv4_header(frame: bytes, ctx: Context) -> int | None:
    """Header length of an IPv4 packet sent by the router's own stack, else None."""
    if len(frame) < 34 or frame[12:14] != ETH_P_IP or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0x0F) * 4
    if ihl < 20 or len(frame) < 14 + ihl or not ctx.is_local(frame[26:30]):
        return None
    return ihl


def _ipv4_id(frame: bytes, ctx: Context) -> bytes | None:
    ihl = _local_ipv4_header(frame, ctx)
    if ihl is None:
        return None
    header = frame[14:14 + ihl]
    if _csum(header) != 0:
        return None  # Linux never sends a bad checksum: leave such a frame for the diff
    new = bytearray(header)
    new[4:6] = b"\0\0"
    new[10:12] = b"\0\0"
    new[10:12] = _csum(bytes(new)).to_bytes(2, "big")
    return frame[:14] + bytes(new) + frame[14 + ihl:]


def _icmp_timestamps(frame: bytes, ctx: Context) -> bytes | None:
    ihl = _local_ipv4_header(frame, ctx)
    if ihl is None or frame[23] != IPPROTO_ICMP:
        return None
    icmp = 14 + ihl
    if len(frame) < icmp + 20 or frame[icmp] != ICMP_TIMESTAMPREPLY:
        return None
    body = bytearray(frame[icmp:])
    body[12:20] = b"\0" * 8
    body[2:4] = b"\0\0"
    body[2:4] = _csum(bytes(body)).to_bytes(2, "big")
    return frame[:icmp] + bytes(body)


ETH_P_IPV6 = b"\x86\xdd"
NEXTHDR_FRAGMENT = 44
IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options


def _ipv6_fragment_id(frame: bytes, ctx: Context) -> bytes | None:
    if len(frame) < 54 or frame[12:14] != ETH_P_IPV6 or not ctx.is_local6(frame[22:38]):
        return None
    nexthdr, pos = frame[20], 54
    while nexthdr in IPV6_SKIPPABLE and pos + 2 <= len(frame):
        nexthdr, pos = frame[pos], pos + (frame[pos + 1] + 1) * 8
    if nexthdr != NEXTHDR_FRAGMENT or pos + 8 > len(frame):
        return None
    return frame[:pos + 4] + b"\0\0\0\0" + frame[pos + 8:]


IPOPT_END, IPOPT_NOOP, IPOPT_TIMESTAMP = 0, 1, 68
IPOPT_TS_TSONLY = 0


def _ipv4_header(frame: bytes) -> int | None:
    if len(frame) < 34 or frame[12:14] != ETH_P_IP or frame[14] >> 4 != 4:
        return None
    ihl = (frame[14] & 0x0F) * 4
    return ihl if ihl >= 20 and len(frame) >= 14 + ihl else None


def _zero_option_times(header: bytearray) -> bool:
    """Zero the times in the filled slots of a timestamp option; True if one was found."""
    ihl, pos, changed = len(header), 20, False
    while pos < ihl:
        kind = header[pos]
        if kind == IPOPT_END:
            break
        if kind == IPOPT_NOOP:
            pos += 1
            continue
        if pos + 1 >= ihl or header[pos + 1] < 2:
            return changed  # malformed options: Linux rejects the packet anyway
        length = header[pos + 1]
        if kind == IPOPT_TIMESTAMP and length >= 4 and pos + length <= ihl:
            pointer, flags = header[pos + 2], header[pos + 3] & 0x0F
            step = 4 if flags == IPOPT_TS_TSONLY else 8
            filled_end = min(pointer - 1, length)  # the pointer is 1-based
            for entry in range(4, filled_end - step + 1, step):
                ts = pos + entry + step - 4  # the time is the last 4 bytes of an entry
                header[ts:ts + 4] = b"\0\0\0\0"
                changed = True
        pos += length
    return changed


def _timestamp_option_times(frame: bytes, ctx: Context) -> bytes | None:
    ihl = _ipv4_header(frame)
    if ihl is None or _csum(frame[14:14 + ihl]) != 0:
        return None
    out = bytearray(frame)
    header = bytearray(frame[14:14 + ihl])
    if ihl > 20 and _zero_option_times(header):
        header[10:12] = b"\0\0"
        header[10:12] = _csum(bytes(header)).to_bytes(2, "big")
        out[14:14 + ihl] = header
    # An ICMP error the router sends quotes the offending header *after* the router's own
    # option processing stamped it (ip_options_compile() runs on input, before routing).
    icmp = 14 + ihl
    if (frame[23] == IPPROTO_ICMP and ctx.is_local(frame[26:30]) and len(frame) >= icmp + 28
            and frame[icmp] in ICMP_ERRORS and _csum(frame[icmp:]) == 0):
        inner = icmp + 8
        inner_ihl = (frame[inner] & 0x0F) * 4
        quoted = bytearray(frame[inner:inner + inner_ihl])
        valid = len(quoted) == inner_ihl and _csum(bytes(quoted)) == 0
        if frame[inner] >> 4 == 4 and inner_ihl > 20 and len(quoted) == inner_ihl and \
                _zero_option_times(quoted):
            if valid:  # stamped, then forwarded: the checksum covers the time; else stale
                quoted[10:12] = b"\0\0"
                quoted[10:12] = _csum(bytes(quoted)).to_bytes(2, "big")
            out[inner:inner + inner_ihl] = quoted
            out[icmp + 2:icmp + 4] = b"\0\0"
            out[icmp + 2:icmp + 4] = _csum(bytes(out[icmp:])).to_bytes(2, "big")
    return bytes(out) if out != frame else None


NORMALISATIONS: tuple[Normalisation, ...] = (
    Normalisation(
        "ipv4_id_of_local_packets",
        "The IPv4 ID of a packet the router's own stack sends without DF (ICMP errors and "
        "echo replies: icmp sockets use IP_PMTUDISC_DONT) comes from ip_select_ident(): "
        "ip_idents_reserve() hashes the destination with a per-namespace random key "
        "(net->ipv4.ip_id_key) and adds a random, time-dependent increment.  ID and header "
        "checksum are zeroed (checksum recomputed), only when the source is one of the "
        "router's own addresses and the checksum was valid.",
        _ipv4_id),
    Normalisation(
        "icmp_timestamp_reply_times",
        "An ICMP timestamp reply carries the receive and transmit times of the router "
        "(inet_current_timestamp(): milliseconds since midnight UTC).  Those 8 bytes and the "
        "ICMP checksum are zeroed (checksum recomputed) in timestamp replies the router "
        "itself sends.",
        _icmp_timestamps),
    Normalisation(
        "ipv6_fragment_id_of_local_packets",
        "When the router fragments a packet of its own (an echo reply larger than the MTU of "
        "the way back), the Identification of the Fragment header comes from "
        "ipv6_select_ident(): a hash of the addresses with a per-namespace random key and "
        "ip_idents_reserve()'s random, time-dependent increments.  Zeroed only in packets "
        "whose source is local to the router; IPv6 has no header checksum, and the "
        "upper-layer checksum does not cover it.",
        _ipv6_fragment_id),
    Normalisation(
        "ipv4_timestamp_option_times",
        "A router that forwards (or answers) a packet with the IPv4 timestamp option writes "
        "its current time into the next free slot (ip_options_compile()/ip_forward_options(): "
        "inet_current_timestamp()).  The times in the slots before the option's pointer are "
        "zeroed and the header checksum recomputed; pointer, overflow count, flags and "
        "recorded addresses are kept, so whether and where the router stamped still counts.  "
        "The same for the header quoted in an ICMP error the router sends: it quotes the "
        "packet as stamped on input.",
        _timestamp_option_times),
)


def context(local_routes: list[str]) -> Context:
    """From the destinations of the ``local`` routes of the namespaces under test."""
    nets = [ipaddress.ip_network(r, strict=False) for r in local_routes]
    return Context(tuple(n for n in nets if isinstance(n, ipaddress.IPv4Network)),
                   tuple(n for n in nets if isinstance(n, ipaddress.IPv6Network)))


def normalise(frame: Frame, ctx: Context,
              which: Sequence[Normalisation] = NORMALISATIONS) -> tuple[Frame, list[str]]:
    """The frame with every applicable normalisation applied, and their names."""
    data, applied = frame.data, []
    for n in which:
        new = n.rewrite(data, ctx)
        if new is not None:
            if new != data:
                applied.append(n.name)
            data = new
    if not applied:
        return frame, []
    return Frame(frame.host, frame.ifname, frame.pkttype, data), applied
