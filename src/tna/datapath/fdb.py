"""The FDB mirror: the kernel bridges' forwarding databases and port states, in BPF maps.

Role in the flow: the planner decides which bridges and ports are accelerated; this module keeps
the pinned ``tna_fdb`` (bridge, VLAN, MAC -> port) and ``tna_brports`` (port -> bridge, STP
state, punting flags) equal to the kernel, and tells the kernel which entries the fast path
used, so the kernel's ageing behaves as if it had seen the traffic.

Three ways to drive it, all through :class:`FdbMirror`:

* full sync from a dump (``tna apply``, and periodically, which also repairs lost events);
* incremental: :meth:`FdbMirror.handle_netlink` takes one AF_BRIDGE ``RTM_NEWNEIGH`` /
  ``RTM_DELNEIGH`` (raw netlink type and payload, as ``tna run`` receives them);
* :meth:`FdbMirror.refresh`: for every dynamic entry whose source the fast path forwarded since
  the kernel last refreshed it, send ``NTF_USE`` (``bridge fdb replace ... use``), which runs
  the kernel's own ``br_fdb_update()`` for it.

:class:`Refresher` runs all three in a loop for ``tna apply`` (started in the background by the
command, stopped when TNA is detached); the daemon calls the same methods from its own loop.

Moves: when the fast path sees a known source on another port it marks the entry MOVED
(treated as absent) and punts the frame, so the kernel learns the new port and nothing more is
sent to the old one. A sync never revives a MOVED entry with the port it was moved away from
unless the kernel's entry was refreshed after the move (the host came back).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tna import abi, introspect, netns
from tna.datapath import libbpf, loader
from tna.model import FdbEntry
from tna.netdev_genl import NLM_F_ACK, NLM_F_REQUEST, NetlinkError, attr
from tna.plan import BridgePortPlan, Plan, brport_plan

CS_NS = 10_000_000  # one clock_t (centisecond), the unit of the kernel's FDB ages
MOVE_MARGIN_NS = 2 * CS_NS  # the kernel's age is rounded to centiseconds, jiffies below
NTF_USE, NTF_MASTER = 0x01, 0x04
NUD_REACHABLE = 0x02
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4
RTM_NEWLINK, RTM_DELLINK = 16, 17
_NLMSGHDR = struct.Struct("=IHHII")
STATE_DIR = "/run/tna"


def _now_ns() -> int:
    """The clock of bpf_ktime_get_coarse_ns() (CLOCK_MONOTONIC)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def key_of(entry: FdbEntry) -> bytes:
    return bytes(abi.TnaFdbKey(entry.bridge, entry.vlan, (ctypes.c_uint8 * 6)(*_mac(entry.mac))))


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


class _BrportArray:
    """tna_brpidx, the program's first place to look: written after tna_brports, emptied
    (bridge 0, flags unchanged) before an entry is deleted there. Absent while only an older
    TNA's maps are pinned."""

    def __init__(self) -> None:
        pinned = os.path.exists(os.path.join(loader.pin_dir(), "tna_brpidx"))
        self.m = loader.open_map("tna_brpidx") if pinned else None
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
        m = loader.open_map("tna_brports")
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
        m = loader.open_map("tna_fdb")
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
        m = loader.open_map("tna_fdb")
        try:
            for key in m.all_keys():
                if key not in wanted and m.delete(key):
                    result.deleted += 1
            for key, e in wanted.items():
                self._put(m, key, e, result, kernel_updated_ns=now_ns - e.updated_cs * CS_NS)
        finally:
            m.close()
        return result

    def apply(self, msg_type: int, entry: FdbEntry, bridges: Iterable[int] | None = None
              ) -> bool:
        """One notification; returns whether the mirror changed."""
        if bridges is not None and entry.bridge not in set(bridges):
            return False
        m = loader.open_map("tna_fdb")
        try:
            key = key_of(entry)
            if msg_type == introspect.RTM_DELNEIGH or not mirrored(entry):
                return m.delete(key)
            result = SyncResult()
            # a notification's age is from when it was sent: never proof of a later refresh
            self._put(m, key, entry, result, kernel_updated_ns=None)
            return bool(result.written)
        finally:
            m.close()

    def handle_netlink(self, msg_type: int, body: bytes,
                       bridges: Iterable[int] | None = None) -> bool:
        """Raw rtnetlink (type, payload) of an AF_BRIDGE neighbour notification."""
        if msg_type not in (introspect.RTM_NEWNEIGH, introspect.RTM_DELNEIGH):
            return False
        entry = introspect.parse_fdb(body)
        return entry is not None and self.apply(msg_type, entry, bridges)

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
        m.update(key, bytes(abi.TnaFdbEntry(port, flags, 0, seen)))
        result.written += 1

    # -- ageing --
    def refresh(self, entries: Iterable[FdbEntry], now_ns: int | None = None) -> list[FdbEntry]:
        """Send NTF_USE for every dynamic entry the fast path used since the kernel last
        refreshed it; ``entries`` is a dump taken just now. Returns the refreshed entries."""
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
        send_use(due)
        return due


def send_use(entries: list[FdbEntry]) -> None:
    """``bridge fdb replace MAC dev PORT master use`` for each entry, in one batch.

    The kernel runs br_fdb_update() as for a received frame: the entry's ageing restarts.
    Errors (a port that left its bridge meanwhile) are ignored: the next sync catches up.
    """
    if not entries:
        return
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.bind((0, 0))
        batch = b""
        for seq, e in enumerate(entries, 1):
            body = introspect._NDMSG.pack(introspect.AF_BRIDGE, e.ifindex, NUD_REACHABLE,
                                          NTF_MASTER | NTF_USE, 0)
            body += attr(introspect.NDA_LLADDR, _mac(e.mac))
            if e.vlan:
                body += attr(introspect.NDA_VLAN, struct.pack("=H", e.vlan))
            batch += _NLMSGHDR.pack(_NLMSGHDR.size + len(body), introspect.RTM_NEWNEIGH,
                                    NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body
            if len(batch) > 32 << 10:
                sock.sendall(batch)
                _read_acks(sock, seq)
                batch = b""
        if batch:
            sock.sendall(batch)
            _read_acks(sock, len(entries))


def _read_acks(sock: socket.socket, last_seq: int) -> None:
    sock.settimeout(2.0)
    try:
        while True:
            data = sock.recv(1 << 16)
            pos, done = 0, False
            while pos + _NLMSGHDR.size <= len(data):
                length, _, _, seq, _ = _NLMSGHDR.unpack_from(data, pos)
                done = done or seq >= last_seq
                pos += (length + 3) & ~3
            if done:
                return
    except TimeoutError:
        return


# ---- the plan's view, and a fresh one -----------------------------------------------------------

def plan_ports(plan: Plan) -> dict[int, BridgePortPlan]:
    return {i.ifindex: i.bridge_port for i in plan.bridge_ports() if i.bridge_port}


def plan_bridges(plan: Plan) -> set[int]:
    return {i.ifindex for i in plan.interfaces if i.bridge}


def current_ports(bridges: set[int]) -> dict[int, BridgePortPlan]:
    """tna_brports entries from the kernel's links now (STP states and flags change live)."""
    details = introspect.bridge_details()
    out = {}
    for ifindex, (master, _, port) in details.items():
        info = details.get(master or 0, (None, None, None))[1]
        if master in bridges and port is not None and info is not None:
            out[ifindex] = brport_plan(master, port, info)
    return out


def mirrored_bridges() -> set[int]:
    """The bridges the plan put in ``tna_ifaces`` (TNA_IF_BRIDGE)."""
    m = loader.open_map("tna_ifaces")
    try:
        return {i for i, e in loader.read_ifaces(m).items() if e.flags & abi.TNA_IF_BRIDGE}
    finally:
        m.close()


def sync(plan: Plan) -> SyncResult:
    """After a reconciliation: ports from the plan, the FDB from a fresh dump."""
    mirror = FdbMirror()
    bridges = plan_bridges(plan)
    mirror.sync_ports(plan_ports(plan))
    now = _now_ns()
    return mirror.full_sync(introspect.fdb() if bridges else (), bridges, now)


def refresh_interval(bridges: set[int]) -> float:
    """Often enough that a used entry never gets near its ageing time: a tenth of the
    shortest hold time (the ageing time, or the forward delay during STP topology changes)."""
    details = introspect.bridge_details()
    holds = []
    for b in bridges:
        info = details.get(b, (None, None, None))[1]
        if info is None:
            continue
        if info.ageing_time:
            holds.append(info.ageing_time)
        if info.stp_state:
            holds.append(info.forward_delay)
    shortest_s = min(holds) / 100 if holds else 10.0
    return min(5.0, max(0.2, shortest_s / 10))


# ---- the refresher: keeps the mirror current until the live-sync daemon does --------------------

def pidfile() -> str:
    return os.path.join(STATE_DIR, f"ns{netns.cookie()}.fdb-refresher.pid")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"fdb-refresh" in f.read()
    except OSError:
        return False


def running_refresher() -> int | None:
    try:
        with open(pidfile()) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None
    return pid if pid and _alive(pid) else None


def _lock_pidfile() -> int | None:
    """The pidfile, open and exclusively locked; None when a live refresher holds it."""
    os.makedirs(STATE_DIR, exist_ok=True)
    fd = os.open(pidfile(), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def ensure_refresher(netns_name: str) -> int:
    """Start ``tna fdb-refresh`` in the background unless one runs here; return its pid."""
    pid = running_refresher()
    if pid:
        return pid
    argv = [sys.executable, "-m", "tna", *(["--netns", netns_name] if netns_name else []),
            "fdb-refresh"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def stop_refresher() -> None:
    """For ``tna run``: the daemon drives the mirror itself."""
    pid = running_refresher()
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class _Stop(Exception):
    """SIGTERM: leave the loop at once (select() would otherwise be resumed)."""


def _on_term(signum: int, frame: object) -> None:
    raise _Stop


class Refresher:
    """Follows FDB and link notifications, resyncs and refreshes on a timer.

    Exits when TNA is detached (its pins are gone), when the named namespace is deleted, when
    no accelerated bridge is left, or on SIGTERM.
    """

    def __init__(self, netns_name: str = "", interval: float | None = None) -> None:
        self.netns_name = netns_name
        self.fixed_interval = interval
        self.mirror = FdbMirror()
        self.bridges: set[int] = set()
        self.stop = False
        self.refreshed = 0

    def _should_exit(self) -> bool:
        if self.stop:
            return True
        if self.netns_name and not os.path.exists(os.path.join(netns.NETNS_RUN_DIR,
                                                               self.netns_name)):
            return True
        return not all(os.path.exists(os.path.join(loader.pin_dir(), n))
                       for n in ("tna_ifaces", "tna_fdb", "tna_brports"))

    def resync(self) -> None:
        self.bridges = mirrored_bridges()
        self.mirror.sync_ports(current_ports(self.bridges))
        now = _now_ns()
        entries = introspect.fdb() if self.bridges else ()
        self.mirror.full_sync(entries, self.bridges, now)
        self.refreshed += len(self.mirror.refresh(
            [e for e in entries if e.bridge in self.bridges], now))

    def run(self, once: bool = False) -> int:
        lock = _lock_pidfile()
        if lock is None:
            return 0  # another refresher keeps this namespace's mirror
        os.ftruncate(lock, 0)
        os.write(lock, str(os.getpid()).encode())
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_term)
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
        sock.bind((0, RTMGRP_LINK | RTMGRP_NEIGH))  # before the first dump: nothing slips by
        try:
            while not self._should_exit():
                try:
                    self.resync()
                except (OSError, NetlinkError):
                    if self._should_exit():
                        break
                    raise
                if once or not self.bridges:
                    break
                interval = self.fixed_interval or refresh_interval(self.bridges)
                deadline = time.monotonic() + interval
                while not self.stop and time.monotonic() < deadline:
                    ready, _, _ = select.select([sock], [], [], deadline - time.monotonic())
                    if ready and self._drain(sock):
                        break  # overrun: resync at once
        except _Stop:
            pass
        finally:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(pidfile())  # still under our lock: nobody else wrote it
            os.close(lock)
        return 0

    def _drain(self, sock: socket.socket) -> bool:
        """Apply what arrived; True when notifications were lost (resync needed)."""
        links_changed = False
        while True:
            try:
                data = sock.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    return True
                raise
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, pos)
                if length < _NLMSGHDR.size:
                    break
                body = data[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    links_changed = True
                elif kind in (introspect.RTM_NEWNEIGH, introspect.RTM_DELNEIGH):
                    try:
                        self.mirror.handle_netlink(kind, body, self.bridges)
                    except (OSError, NetlinkError):
                        return True  # maps gone or replaced: resync (or exit)
        if links_changed:
            try:
                self.bridges = mirrored_bridges()
                self.mirror.sync_ports(current_ports(self.bridges))
            except (OSError, NetlinkError):
                return True
        return False
