"""The firewall classifier's maps: :class:`~tna.firewall.tables.FwTables` → ``tna_fw_*``.

Role in the flow: part of the reconciliation's restrict phase (``datapath.loader``). The maps
hold two generations; the one not in use is rewritten completely, then ``tna_config.fw_gen``
flips, so a packet is classified either by the old ruleset or by the new one, never by a
mixture. Loaded programs read the tables without being reloaded: a rule change is a map update.

Class 0 of every table is reserved for "every rule" (the data path uses it for fields no
rule constrains), so the compiler's class *c* is written as *c + 1*.
"""

from __future__ import annotations

import ctypes
import mmap
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tna import abi
from tna.datapath import libbpf
from tna.datapath.pins import map_fd
from tna.firewall.tables import (
    FIELDS,
    MAX_CLASSES,
    MAX_RULES,
    FwTables,
    RuleRef,
    check_fits,
    rule0_decides,
)
from tna.plan.types import CT_TCP_DEFAULT, CT_TCP_RETRANS_DEFAULT

MAP_NAMES = ("tna_fw_tables", "tna_fw_rules", "tna_fw_classes", "tna_fw_ifs", "tna_fw_small",
             "tna_fw_ports", "tna_fw_v4", "tna_fw_v6", "tna_fw_counters")
SMALL_FIELDS = ("l4proto", "tcpflags", "icmptype")
PORT_FIELDS = ("sport", "dport")
FAMILIES = (0, 1)  # table = generation * 2 + family: 0 IPv4, 1 IPv6


def refresh_hz(hz: int, timeouts_ms: Iterable[int]) -> int:
    """The table's ct_hz: CONFIG_HZ when every timeout is whole seconds that fit the kfunc's
    range (then msecs_to_jiffies(ms) is ms / 1000 * HZ, exactly what the kernel keeps), else
    0: every refresh calls the kfunc."""
    if hz <= 0 or (1000 % hz and hz % 1000):  # msecs_to_jiffies() is a plain division
        return 0
    if any(ms % 1000 or ms > 0x7FFFFFFF or ms // 1000 * hz > 0x7FFFFFFF for ms in timeouts_ms):
        return 0
    return hz


def _u32(v: int) -> bytes:
    return struct.pack("=I", v)


def _u32s(values: Iterable[int]) -> bytes:
    vals = list(values)
    return struct.pack(f"={len(vals)}I", *vals)


def _open(name: str) -> libbpf.Map:
    fd = map_fd(name)
    info = libbpf.map_info(fd)
    return libbpf.Map(fd, info.key_size, info.value_size,
                      percpu=name == "tna_fw_counters")


@dataclass(frozen=True)
class Written:
    """What one generation holds, to skip rewriting an unchanged ruleset."""

    tables: tuple[FwTables | None, FwTables | None]
    ct_timeouts_ms: tuple[int, int]
    ct_tcp: tuple[int, int, bool] = CT_TCP_DEFAULT
    ct_hz: int = 0
    ct_retrans: tuple[int, int] = CT_TCP_RETRANS_DEFAULT


class FirewallMaps:
    """The ``tna_fw_*`` maps of this namespace, open for one update."""

    def __init__(self) -> None:
        self.maps = {n: _open(n) for n in MAP_NAMES}

    def close(self) -> None:
        for m in self.maps.values():
            m.close()

    def write_generation(self, gen: int, tables: Sequence[FwTables | None],
                         ct_timeouts_ms: tuple[int, int],
                         ct_tcp: tuple[int, int, bool] = CT_TCP_DEFAULT, ct_hz: int = 0,
                         ct_retrans: tuple[int, int] = CT_TCP_RETRANS_DEFAULT) -> None:
        """Fill generation ``gen`` (not in use) with one table per family."""
        for fam in FAMILIES:
            self.maps["tna_fw_tables"].update(_u32(gen * 2 + fam), bytes(abi.TnaFwTable()))
        self._clear_keys(gen)
        for fam in FAMILIES:
            t = gen * 2 + fam
            ft = tables[fam]
            if ft is not None:
                self._write_table(t, ft, ct_timeouts_ms, ct_tcp, ct_hz, ct_retrans)

    def _write_table(self, t: int, ft: FwTables, ct_timeouts_ms: tuple[int, int],
                     ct_tcp: tuple[int, int, bool] = CT_TCP_DEFAULT, ct_hz: int = 0,
                     ct_retrans: tuple[int, int] = CT_TCP_RETRANS_DEFAULT) -> None:
        check_fits(ft)
        self._write_classes(t, ft)
        self._write_rules(t, ft)
        self._write_fields(t, ft)
        self._zero_counters(t, len(ft.rules))
        used = sum(1 << i for i, f in enumerate(FIELDS) if f in ft.used)
        nwords = (len(ft.rules) + 63) // 64
        ct_flags = (abi.TNA_FW_CT_TCP | (abi.TNA_FW_CT_LIBERAL if ct_tcp[2] else 0)
                    | (abi.TNA_FW_CT_NAT if ft.nat else 0))
        hdr = abi.TnaFwTable(len(ft.rules), nwords, used, int(ft.stateful), ct_timeouts_ms[0],
                             ft.iif_default + 1, ft.oif_default + 1, ct_timeouts_ms[1],
                             ct_flags, ct_tcp[0], ct_tcp[1], int(rule0_decides(ft)),
                             refresh_hz(ct_hz, (*ct_timeouts_ms, *ct_tcp[:2], ct_retrans[0])),
                             ct_retrans[0], ct_retrans[1])
        self.maps["tna_fw_tables"].update(_u32(t), bytes(hdr))  # last: the table goes live

    def _write_classes(self, t: int, ft: FwTables) -> None:
        words = MAX_RULES // 64
        full = (1 << len(ft.rules)) - 1
        vectors = [full, *ft.classes]
        base = t * MAX_CLASSES
        values = b"".join(v.to_bytes(words * 8, "little") for v in vectors)
        self.maps["tna_fw_classes"].update_batch(_u32s(range(base, base + len(vectors))),
                                                 values, len(vectors))

    def _write_rules(self, t: int, ft: FwTables) -> None:
        base = t * MAX_RULES
        values = b"".join(bytes(abi.TnaFwRule(r.verdict, int(r.counter >= 0), 0, r.target))
                          for r in ft.rules)
        self.maps["tna_fw_rules"].update_batch(_u32s(range(base, base + len(ft.rules))),
                                               values, len(ft.rules))

    def _write_fields(self, t: int, ft: FwTables) -> None:
        for out, mapping in enumerate((ft.iif, ft.oif)):
            if FIELDS[out] in ft.used:
                for ifindex, cls in mapping.items():
                    self.maps["tna_fw_ifs"].update(struct.pack("=II", t * 2 + out, ifindex),
                                                   _u32(cls + 1))
        for i, name in enumerate(SMALL_FIELDS):
            if name in ft.used:
                self._array("tna_fw_small", (t * 3 + i) * 256,
                            [c + 1 for c in getattr(ft, name)])
        for i, name in enumerate(PORT_FIELDS):
            if name in ft.used:
                self._mapped_array("tna_fw_ports", (t * 2 + i) * 65536,
                                   [c + 1 for c in getattr(ft, name)])
        for dst, name in enumerate(("saddr", "daddr")):
            if name in ft.used:
                self._prefixes(t * 2 + dst, getattr(ft, name))

    def _array(self, name: str, base: int, classes: Sequence[int]) -> None:
        self.maps[name].update_batch(_u32s(range(base, base + len(classes))), _u32s(classes),
                                     len(classes))

    def _mapped_array(self, name: str, base: int, classes: Sequence[int]) -> None:
        """Write a stretch of a BPF_F_MMAPABLE array of u32 through its memory mapping (the
        kernel lays such arrays out with 8-byte elements)."""
        m = self.maps[name]
        info = libbpf.map_info(m.fd)
        size = (info.max_entries * 8 + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE
        with mmap.mmap(m.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
            mm[base * 8:(base + len(classes)) * 8] = struct.pack(f"={len(classes)}Q", *classes)

    def _prefixes(self, tag: int, prefixes: Iterable[tuple[int, int, int]]) -> None:
        v6 = (tag // 2) % 2 == 1  # tag = table * 2 + dst; table = generation * 2 + family
        for network, plen, cls in prefixes:
            addr = network.to_bytes(16 if v6 else 4, "big")
            key = struct.pack("=II", 32 + plen, tag) + addr
            self.maps["tna_fw_v6" if v6 else "tna_fw_v4"].update(key, _u32(cls + 1))

    def _clear_keys(self, gen: int) -> None:
        """Remove the generation's LPM and interface entries (keyed maps keep stale keys).
        A key's tag is table * 2 + field, and table = generation * 2 + family."""
        for name, tag_at in (("tna_fw_v4", 4), ("tna_fw_v6", 4), ("tna_fw_ifs", 0)):
            m = self.maps[name]
            for key in m.all_keys():
                if struct.unpack_from("=I", key, tag_at)[0] // 4 == gen:
                    m.delete(key)

    def _zero_counters(self, t: int, n: int) -> None:
        m = self.maps["tna_fw_counters"]
        base = t * MAX_RULES
        slot = (ctypes.sizeof(abi.TnaCounter) + 7) // 8 * 8
        zero = bytes(slot * libbpf.num_possible_cpus() * n)
        m.update_batch(_u32s(range(base, base + n)), zero, n)

    def header(self, t: int) -> abi.TnaFwTable:
        raw = self.maps["tna_fw_tables"].lookup(_u32(t)) or bytes(ctypes.sizeof(abi.TnaFwTable))
        return abi.TnaFwTable.from_buffer_copy(raw[:ctypes.sizeof(abi.TnaFwTable)])

    def read_rules(self, t: int, n: int) -> list[tuple[int, int, int]]:
        """(verdict, counted, target) of rules 0..n-1 of table ``t``, as loaded."""
        m = self.maps["tna_fw_rules"]
        base = t * MAX_RULES
        out = []
        for i in range(n):
            r = abi.TnaFwRule.from_buffer_copy((m.lookup(_u32(base + i)) or bytes(8))[:8])
            out.append((r.verdict, r.counted, r.target))
        return out

    def read_counters(self, t: int, n: int) -> list[tuple[int, int]]:
        """(packets, bytes) of rules 0..n-1 of table ``t``, summed over CPUs."""
        m = self.maps["tna_fw_counters"]
        base = t * MAX_RULES
        out = []
        for i in range(n):
            vals = [abi.TnaCounter.from_buffer_copy(v) for v in m.lookup_percpu(_u32(base + i))]
            out.append((sum(v.packets for v in vals), sum(v.bytes for v in vals)))
        return out


def rule_counters(ft: FwTables, per_rule: Sequence[tuple[int, int]]
                  ) -> dict[RuleRef, tuple[int, int]]:
    """Flattened-rule counts folded onto the rules of the ruleset they came from."""
    out: dict[RuleRef, tuple[int, int]] = {ref: (0, 0) for ref in ft.counters}
    for rule, (packets, nbytes) in zip(ft.rules, per_rule, strict=True):
        if rule.counter >= 0:
            ref = ft.counters[rule.counter]
            p, b = out[ref]
            out[ref] = (p + packets, b + nbytes)
    return out
