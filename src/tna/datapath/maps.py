"""Writing the namespace's shared maps: interfaces, egresses, denied sources, MTUs, redirects.

Role in the flow: the data-path side of a reconciliation's *restrict* and *relax* phases
(:mod:`tna.datapath.loader`).  Each writer orders its updates so a program reading the maps
meanwhile never sees more permission than both the old and the new plan allow.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Callable, Iterable

from tna import abi
from tna.datapath import libbpf
from tna.datapath.firewall import FirewallMaps
from tna.datapath.pins import DatapathError, has_map, open_map, u32
from tna.plan.types import Features, Namespace

# How the control side tells how many redirect exceptions the kernel's route cache holds.
RedirectExceptions = Callable[[], int]


def min_mtu(a: int, b: int) -> int:
    """The stricter of two route MTU limits, where 0 means no limit."""
    return min(x for x in (a, b) if x) if (a or b) else 0


def read_ifaces(ifaces: libbpf.Map) -> dict[int, abi.TnaIface]:
    out = {}
    for key in ifaces.all_keys():
        raw = ifaces.lookup(key)
        if raw is not None:
            out[struct.unpack("=I", key)[0]] = abi.TnaIface.from_buffer_copy(raw)
    return out


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) if mac else b"\0" * 6


# Permissions as flags: EGRESS grants, NO_* withhold; BRIDGE ("not a redirect target") withholds.
_GRANTS = abi.TNA_IF_EGRESS | abi.TNA_IF_MTU_FLOOR
_WITHHOLDS = (abi.TNA_IF_NO_IPV4 | abi.TNA_IF_NO_IPV6 | abi.TNA_IF_NO_BRIDGE_IPV4
              | abi.TNA_IF_NO_BRIDGE_IPV6 | abi.TNA_IF_BRIDGE | abi.TNA_IF_ACCEPT_REDIRECTS
              | abi.TNA_IF_REDIRECTS_UNWATCHED)
NOTHING = _WITHHOLDS  # no egress, no family: the most restrictive entry


def gaining_firewall(running: Features | None, wanted: Features | None) -> int:
    """Families a program swap adds the forward hook to: until the new program runs, the
    old one would forward them past the ruleset."""
    if running is None or wanted is None:
        return 0
    return ((abi.TNA_IF_NO_IPV4 if wanted.firewall_ipv4 and not running.firewall_ipv4 else 0)
            | (abi.TNA_IF_NO_IPV6 if wanted.firewall_ipv6 and not running.firewall_ipv6 else 0))


def intersect(a: int, b: int) -> int:
    """Flags allowing only what both ``a`` and ``b`` allow."""
    return (a & b & _GRANTS) | ((a | b) & _WITHHOLDS)


class IfaceMaps:
    """The namespace's shared maps, open for one reconciliation."""

    def __init__(self) -> None:
        self.ifaces, self.tx, self.stats = (open_map(n)
                                            for n in ("tna_ifaces", "tna_tx", "tna_stats"))
        self.entries = read_ifaces(self.ifaces)
        self.ifidx, self.ifidx_max = _open_ifidx()
        self._sync_ifidx()

    def write(self, ifindex: int, mac: str, flags: int) -> None:
        """Set an entry; the device map follows so that an egress exists in both or neither.

        An egress is granted in tna_tx before tna_ifaces and withdrawn in the opposite order:
        the program checks the flag first, then redirects through tna_tx.
        """
        entry = self.entries.get(ifindex)
        slot = entry.slot if entry else self._new_slot()
        new = abi.TnaIface((ctypes.c_uint8 * 6)(*mac_bytes(mac)), flags, slot)
        target = flags & abi.TNA_IF_EGRESS and not flags & abi.TNA_IF_BRIDGE
        if target:
            self.tx.update(u32(ifindex), u32(ifindex))
        self.ifaces.update(u32(ifindex), bytes(new))
        self._write_ifidx(ifindex, bytes(new))
        if not target:
            self.tx.delete(u32(ifindex))
        self.entries[ifindex] = new

    def remove(self, ifindex: int) -> None:
        # The array first (an empty entry sends the program to tna_ifaces), and only its slot
        # changes: a program reading the entry while it is rewritten sees the same flags.
        entry = self.entries.get(ifindex)
        if entry is not None:
            self._write_ifidx(ifindex, bytes(abi.TnaIface(entry.mac, entry.flags, 0)))
        self.ifaces.delete(u32(ifindex))
        self.tx.delete(u32(ifindex))
        self.entries.pop(ifindex, None)

    def _write_ifidx(self, ifindex: int, value: bytes) -> None:
        if self.ifidx is not None and ifindex < self.ifidx_max:
            self.ifidx.update(u32(ifindex), value)

    def _sync_ifidx(self) -> None:
        """tna_ifidx follows tna_ifaces, also where a crash or an older TNA left it behind."""
        if self.ifidx is None:
            return
        for ifindex, entry in self.entries.items():
            value = bytes(entry)
            if (ifindex < self.ifidx_max
                    and (self.ifidx.lookup(u32(ifindex)) or b"")[:len(value)] != value):
                self.ifidx.update(u32(ifindex), value)

    def _new_slot(self) -> int:
        used = {e.slot for e in self.entries.values()}
        slot = next((s for s in range(1, abi.max_ifaces()) if s not in used), None)
        if slot is None:
            raise DatapathError(f"more than {abi.max_ifaces() - 1} interfaces")
        zero = bytes(ctypes.sizeof(abi.TnaCounter))
        for code in range(abi.nr_codes()):
            self.stats.update(u32(slot * abi.nr_codes() + code), zero)
        return slot

    def close(self) -> None:
        for m in (self.ifaces, self.tx, self.stats, self.ifidx):
            if m is not None:
                m.close()


def _open_ifidx() -> tuple[libbpf.Map | None, int]:
    """tna_ifidx and its size, or None where only an older TNA's maps are pinned so far."""
    if not has_map("tna_ifidx"):
        return None, 0
    m = open_map("tna_ifidx")
    return m, libbpf.map_info(m.fd).max_entries


def sync_redirects(exceptions: RedirectExceptions, clear: bool) -> None:
    """Keep tna_redirects honest about redirect exceptions in the kernel's route cache.

    With exceptions present the pair is made to differ (gateway routes go to Linux); with none,
    and no redirect seen meanwhile, it is made equal again. Only [1] is written here: [0]
    belongs to the data path, which counts redirects as they arrive.
    """
    m = open_map("tna_redirects")
    try:
        def read(key: int) -> int:
            return int(struct.unpack("=Q", (m.lookup(u32(key)) or bytes(8))[:8])[0])
        seen = read(0)
        present = exceptions()
        if present and read(1) == seen:
            m.update(u32(1), struct.pack("=Q", (seen - 1) % (1 << 64)))
        elif not present and clear and read(0) == seen and read(1) != seen:
            m.update(u32(1), struct.pack("=Q", seen))
    finally:
        m.close()


def redirects_pending() -> bool:
    """Whether tna_redirects holds gateway routes on Linux (a redirect seen, or exceptions
    found): only then can :func:`sync_redirects` change anything without a full check."""
    if not has_map("tna_redirects"):
        return False
    m = open_map("tna_redirects")
    try:
        seen, marked = ((m.lookup(u32(k)) or bytes(8))[:8] for k in (0, 1))
        return seen != marked
    finally:
        m.close()


def _src_bits(addrs: Iterable[str], size: int) -> bytes:
    """The tna_src_bits value (``size`` bytes) for these denied sources: src_bit() in
    bpf/lib/maps.h, on the address as the program loads it (network order in a host word)."""
    log2 = (size * 8).bit_length() - 1
    words = [0] * (size // 8)
    for addr in addrs:
        raw = struct.unpack("=I", socket.inet_aton(addr))[0]
        bit = (raw * 0x9E3779B1 & 0xFFFFFFFF) >> (32 - log2)
        words[bit // 64] |= 1 << (bit % 64)
    return struct.pack(f"={len(words)}Q", *words)


def _local_v6_bits(addrs: Iterable[str], size: int) -> bytes:
    """The tna_local6_bits value: local_v6_bit() in bpf/lib/local.h, the address's four
    words as loaded (network order in host words) chained through src_bit()'s multiplier,
    then hashed as src_bit()."""
    folded = []
    for addr in addrs:
        w = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, addr))
        h = w[0]
        for word in w[1:]:
            h = (h * 0x9E3779B1 & 0xFFFFFFFF) ^ word
        folded.append(socket.inet_ntoa(struct.pack("=I", h)))
    return _src_bits(folded, size)


def _write_filter(bits: libbpf.Map | None, addrs: Iterable[str],
                  value_of: Callable[[Iterable[str], int], bytes]) -> None:
    """Write a bit filter (tna_src_bits, tna_local6_bits) for ``addrs``, where it changed."""
    if bits is None:
        return
    value = value_of(addrs, bits.value_size)
    if (bits.lookup(u32(0)) or b"")[:len(value)] != value:
        bits.update(u32(0), value)


class NamespaceMaps:
    """tna_src_deny (with its filter tna_src_bits) and tna_config: stricter values first,
    looser ones after the swaps."""

    def __init__(self) -> None:
        self.deny, self.config = open_map("tna_src_deny"), open_map("tna_config")
        self.current = {socket.inet_ntoa(k) for k in self.deny.all_keys()}
        raw = self.config.lookup(u32(0))
        self.cfg = abi.TnaConfig.from_buffer_copy(raw[:ctypes.sizeof(abi.TnaConfig)]) \
            if raw else abi.TnaConfig()
        # absent: only older maps pinned yet
        self.bits = open_map("tna_src_bits") if has_map("tna_src_bits") else None
        self._write_bits(self.current)  # also where a crash or an older TNA left it behind
        # absent: only older maps pinned yet
        self.local6 = open_map("tna_local_v6") if has_map("tna_local_v6") else None
        self.local6_bits = open_map("tna_local6_bits") if self.local6 else None
        self.local6_current = ({socket.inet_ntop(socket.AF_INET6, k)
                                for k in self.local6.all_keys()} if self.local6 else set())
        self._write_local6_bits(self.local6_current)

    def restrict(self, ns: Namespace) -> None:
        for addr in ns.denied_sources_v4 - self.current:
            self.deny.update(socket.inet_aton(addr), b"\1")
        self._write_bits(self.current | ns.denied_sources_v4)  # bits after the addresses
        if self.local6 is not None:
            for addr in ns.local_v6 - self.local6_current:
                self.local6.update(socket.inet_pton(socket.AF_INET6, addr), b"\1")
            self._write_local6_bits(self.local6_current | ns.local_v6)
        self._write(min_mtu(self.cfg.route_mtu_v4, ns.route_mtu_v4),
                    min_mtu(self.cfg.route_mtu_v6, ns.route_mtu_v6))

    def relax(self, ns: Namespace) -> None:
        for addr in self.current - ns.denied_sources_v4:
            self.deny.delete(socket.inet_aton(addr))
        self._write_bits(ns.denied_sources_v4)
        if self.local6 is not None:
            for addr in self.local6_current - ns.local_v6:
                self.local6.delete(socket.inet_pton(socket.AF_INET6, addr))
            self._write_local6_bits(ns.local_v6)
        self._write(ns.route_mtu_v4, ns.route_mtu_v6)

    def _write_bits(self, addrs: Iterable[str]) -> None:
        _write_filter(self.bits, addrs, _src_bits)

    def _write_local6_bits(self, addrs: Iterable[str]) -> None:
        _write_filter(self.local6_bits, addrs, _local_v6_bits)

    def _write(self, v4: int, v6: int) -> None:
        if (self.cfg.route_mtu_v4, self.cfg.route_mtu_v6) != (v4, v6):
            self.cfg = abi.TnaConfig(v4, v6, self.cfg.fw_gen)
            self.config.update(u32(0), bytes(self.cfg))

    def write_firewall(self, ns: Namespace) -> None:
        """Fill the firewall generation not in use, then switch to it."""
        gen = 1 - (self.cfg.fw_gen & 1)
        fw = FirewallMaps()
        try:
            fw.write_generation(gen, ns.firewall, ns.ct_timeouts_ms, ns.ct_tcp, ns.ct_hz,
                                ns.ct_tcp_retrans)
        finally:
            fw.close()
        self.cfg = abi.TnaConfig(self.cfg.route_mtu_v4, self.cfg.route_mtu_v6, gen)
        self.config.update(u32(0), bytes(self.cfg))

    def close(self) -> None:
        self.deny.close()
        self.config.close()
        if self.bits is not None:
            self.bits.close()
        for m in (self.local6, self.local6_bits):
            if m is not None:
                m.close()
