"""The FDB mirror: the kernel bridges' forwarding databases and port states, in BPF maps.

Role in the flow: the planner decides which bridges and ports are accelerated; the control side
(:mod:`tna.fdbrefresh`, the daemon) reads the kernel's FDB and port states and hands them to
:class:`FdbMirror`, which keeps the pinned ``tna_fdb`` (bridge, VLAN, MAC -> port) and
``tna_brports`` (port -> bridge, STP state, punting flags) equal to them:

* full sync from a dump (:meth:`FdbMirror.full_sync`);
* incremental, one notification at a time (:meth:`FdbMirror.apply`);
* :meth:`FdbMirror.due`: the dynamic entries whose source the fast path forwarded since the
  kernel last refreshed them, which the control side then refreshes in the kernel (NTF_USE),
  so the kernel's ageing behaves as if it had seen the traffic.

Moves: when the fast path sees a known source on another port it marks the entry MOVED
(treated as absent) and punts the frame, so the kernel learns the new port and nothing more is
sent to the old one. A sync never revives a MOVED entry with the port it was moved away from
unless the kernel's entry was refreshed after the move (the host came back).
"""

from __future__ import annotations

import ctypes
import errno
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tna import abi
from tna.datapath import libbpf
from tna.datapath.maps import mac_bytes, read_ifaces
from tna.datapath.pins import has_map, open_map
from tna.model import FdbEntry
from tna.plan.types import BridgePortPlan

CS_NS = 10_000_000  # one clock_t (centisecond), the unit of the kernel's FDB ages
MOVE_MARGIN_NS = 2 * CS_NS  # the kernel's age is rounded to centiseconds, jiffies below


def _now_ns() -> int:
    """The clock of bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def key_of(entry: FdbEntry) -> bytes:
    mac = (ctypes.c_uint8 * 6)(*mac_bytes(entry.mac))
    return bytes(abi.TnaFdbKey(entry.bridge, entry.vlan, mac))


def value_of(entry: FdbEntry) -> tuple[int, int]:
    """(port, TNA_FDB_* flags) the mirror holds for a kernel entry."""
    flags = ((abi.TNA_FDB_LOCAL if entry.local else 0)
             | (0 if entry.ageing else abi.TNA_FDB_STATIC)
             | (abi.TNA_FDB_STICKY if "sticky" in entry.flags else 0))
    return entry.ifindex, flags


def mirrored(entry: FdbEntry) -> bool:
    """Locked entries (MAB) stay out: the fast path treats them as unknown."""
    return "locked" not in entry.flags


@dataclass
class SyncResult:
    written: int = 0
    deleted: int = 0
    kept_moved: int = 0
    full: int = 0  # new entries the full mirror could not take (left to Linux: a miss punts)


class _BrportArray:
    """tna_brpidx, the program's first place to look: written after tna_brports, emptied
    (bridge 0, flags unchanged) before an entry is deleted there. Absent while only an older
    TNA's maps are pinned."""

    def __init__(self) -> None:
        self.m = open_map("tna_brpidx") if has_map("tna_brpidx") else None
        self.size = libbpf.map_info(self.m.fd).max_entries if self.m else 0

    def write(self, key: bytes, value: bytes) -> None:
        if self.m is not None and struct.unpack("=I", key)[0] < self.size \
                and (self.m.lookup(key) or b"")[:len(value)] != value:
            self.m.update(key, value)

    def remove(self, key: bytes, old: bytes | None) -> None:
        size = ctypes.sizeof(abi.TnaBrport)
        entry = abi.TnaBrport.from_buffer_copy((old or bytes(size))[:size])
        self.write(key, bytes(abi.TnaBrport(0, entry.flags, 0)))

    def close(self) -> None:
        if self.m is not None:
            self.m.close()


class FdbMirror:
    """The pinned ``tna_fdb`` and ``tna_brports`` of the current namespace.

    Maps are opened per call, so a mirror outlives a detach and re-apply (new maps).
    """

    # -- ports --
    def sync_ports(self, ports: Mapping[int, BridgePortPlan]) -> None:
        """Make ``tna_brports`` (and its array copy ``tna_brpidx``) hold exactly ``ports``."""
        m = open_map("tna_brports")
        idx = _BrportArray()
        try:
            for key in m.all_keys():
                if struct.unpack("=I", key)[0] not in ports:
                    idx.remove(key, m.lookup(key))
                    m.delete(key)
            for ifindex, p in ports.items():
                flags = ((abi.TNA_BRPORT_FORWARDING if p.forwarding else 0)
                         | (abi.TNA_BRPORT_PUNT if p.punt else 0))
                new = bytes(abi.TnaBrport(p.bridge, flags, 0))
                if m.lookup(struct.pack("=I", ifindex)) != new:
                    m.update(struct.pack("=I", ifindex), new)
                idx.write(struct.pack("=I", ifindex), new)
        finally:
            m.close()
            idx.close()

    # -- the forwarding database --
    def read(self) -> dict[bytes, abi.TnaFdbEntry]:
        m = open_map("tna_fdb")
        try:
            out = {}
            for key in m.all_keys():
                raw = m.lookup(key)
                if raw is not None:
                    out[key] = abi.TnaFdbEntry.from_buffer_copy(raw)
            return out
        finally:
            m.close()

    def full_sync(self, entries: Iterable[FdbEntry], bridges: Iterable[int],
                  now_ns: int | None = None) -> SyncResult:
        """Make ``tna_fdb`` equal to the kernel's entries of ``bridges`` (a dump taken just now:
        its ages are relative to ``now_ns``)."""
        now_ns = _now_ns() if now_ns is None else now_ns
        scope = set(bridges)
        wanted = {key_of(e): e for e in entries if e.bridge in scope and mirrored(e)}
        result = SyncResult()
        m = open_map("tna_fdb")
        try:
            for key in m.all_keys():
                if key not in wanted and m.delete(key):
                    result.deleted += 1
            for key, e in wanted.items():
                self._put(m, key, e, result, kernel_updated_ns=now_ns - e.updated_cs * CS_NS)
        finally:
            m.close()
        return result

    def apply(self, entry: FdbEntry, deleted: bool = False,
              bridges: Iterable[int] | None = None) -> bool:
        """One notification (``deleted``: RTM_DELNEIGH); returns whether the mirror changed."""
        if bridges is not None and entry.bridge not in set(bridges):
            return False
        m = open_map("tna_fdb")
        try:
            key = key_of(entry)
            if deleted or not mirrored(entry):
                return m.delete(key)
            result = SyncResult()
            # a notification's age is from when it was sent: never proof of a later refresh
            self._put(m, key, entry, result, kernel_updated_ns=None)
            return bool(result.written)
        finally:
            m.close()

    @staticmethod
    def _put(m: libbpf.Map, key: bytes, e: FdbEntry, result: SyncResult,
             kernel_updated_ns: int | None) -> None:
        port, flags = value_of(e)
        raw = m.lookup(key)
        seen = 0
        if raw is not None:
            cur = abi.TnaFdbEntry.from_buffer_copy(raw)
            if cur.flags & abi.TNA_FDB_MOVED:
                # the kernel has not (visibly) learnt the move yet: keep the entry absent
                came_back = (kernel_updated_ns is not None
                             and kernel_updated_ns > cur.seen_ns + MOVE_MARGIN_NS)
                if cur.port == port and not came_back:
                    result.kept_moved += 1
                    return
            elif (cur.port, cur.flags) == (port, flags):
                return  # unchanged: leave the fast path's seen stamp alone
            else:
                seen = cur.seen_ns if cur.port == port else 0
        try:
            m.update(key, bytes(abi.TnaFdbEntry(port, flags, 0, seen)))
        except libbpf.LibbpfError as err:
            if err.errno != errno.E2BIG or raw is not None:
                raise
            result.full += 1  # TNA_FDB_MAX entries mirrored already: Linux bridges the rest
            return
        result.written += 1

    # -- ageing --
    def due(self, entries: Iterable[FdbEntry], now_ns: int | None = None) -> list[FdbEntry]:
        """The dynamic entries the fast path used since the kernel last refreshed them
        (``entries`` is a dump taken just now): the kernel must hear of them (NTF_USE)."""
        now_ns = _now_ns() if now_ns is None else now_ns
        mirror = self.read()
        due = []
        for e in entries:
            if not e.ageing or e.ifindex == e.bridge:
                continue
            cur = mirror.get(key_of(e))
            if (cur is None or cur.flags & (abi.TNA_FDB_MOVED | abi.TNA_FDB_STATIC)
                    or cur.port != e.ifindex or not cur.seen_ns):
                continue
            if cur.seen_ns > now_ns - e.updated_cs * CS_NS:
                due.append(e)
        return due


def mirrored_bridges() -> set[int]:
    """The bridges the plan put in ``tna_ifaces`` (TNA_IF_BRIDGE)."""
    m = open_map("tna_ifaces")
    try:
        return {i for i, e in read_ifaces(m).items() if e.flags & abi.TNA_IF_BRIDGE}
    finally:
        m.close()
