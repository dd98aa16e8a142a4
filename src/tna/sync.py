"""``tna run``: keep the fast path equal to the configuration as it changes.

Role in the flow: the daemon drives the control function (:mod:`tna.control`: introspect →
plan → reconcile) in a loop.  It subscribes to every kernel notification that can change the
plan *before* its first snapshot (so nothing is missed), coalesces bursts, and reconciles.

Enforcement is bounded by neither table size nor other work: a :class:`Sentinel` thread does
nothing but read notifications and, for what they may have made unsafe, restrict at once (map
writes only) — whatever the main thread is doing (reading a snapshot, loading programs, a full
re-read).  The main thread's reconciliation writes its map entries under the sentinel's lock and
leaves its relax out when the sentinel restricted since its snapshot was read; it then runs
again from a fresh read.

What needs no work at all: routes and neighbours.  ``bpf_fib_lookup`` reads the kernel's FIB
and neighbour tables for every packet.  The few routes the plan reads (multipath, nexthop
objects, MTU metrics, user-added local routes: :class:`tna.introspect.PlanRoutes`) are followed
from route notifications; the routing table is dumped in full only at start, after a netlink
overrun (ENOBUFS) and by a rare audit.

Fail to Linux: the daemon owns its links (file descriptors, not pins).  If it dies for any
reason, even SIGKILL, the kernel releases them and Linux forwards alone.  ``--keep`` pins them
on SIGTERM instead, so a successor adopts a running fast path without a gap.  A periodic,
cheap audit catches what has no notification (tcx attachments, iptables-legacy, some sysctls)
and reconciles only when the plan changed.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from tna import (
    control,
    fdbrefresh,
    introspect,
    liberal,
    netfilter,
    netlink,
    netns,
    owner,
    sdnotify,
    watcher,
)
from tna.datapath import pins
from tna.datapath.fdb import FdbMirror
from tna.datapath.loader import Changes, Datapath
from tna.datapath.maps import redirects_pending
from tna.introspect import PlanRoutes
from tna.model import NetfilterChain, NetfilterSet, XfrmPolicy
from tna.netlink import NETLINK_GENERIC, NETLINK_NETFILTER, NETLINK_ROUTE, NETLINK_XFRM
from tna.plan import Plan

# rtnetlink groups (RTNLGRP_*) and what their messages mean for TNA
RTNL_GROUPS = {1: "link", 3: "neigh", 4: "tc", 5: "addr", 7: "route", 8: "rule", 9: "addr",
               11: "route", 19: "rule", 24: "netconf", 25: "netconf", 32: "nexthop"}
RTM_KINDS = {(16, 18): "link", (20, 22): "addr", (24, 26): "route", (28, 30): "neigh",
             (32, 34): "rule", (36, 38): "tc", (40, 42): "tc", (44, 46): "tc",
             (80, 82): "netconf", (100, 103): "tc", (104, 107): "nexthop"}
NFNLGRP_NFTABLES = 7
XFRMNLGRP_POLICY = 4
RTA_MULTIPATH, RTA_NH_ID = 9, 30
RTM_DELADDR = 21
RT_TABLE_LOCAL = 255

# Event kinds that may change the plan; the others need no work (see the module docstring).
REPLAN_KINDS = frozenset({"link", "rule", "tc", "netconf", "nexthop", "netfilter", "xfrm",
                          "netdev", "addr4", "addr6", "plan_route", "route_local"})

# What makes a cycle re-read everything, the routing table included.
FULL_READ_KINDS = frozenset({"start", "audit", "sighup", "overrun"})
# a full re-read this often (the cheap audit runs every --resync seconds); the environment
# variable lets a test or benchmark make full re-reads overlap its changes
FULL_AUDIT_S = 300.0
WATCH_LOCK_WAIT_S = 30.0  # for a brief holder (apply handing over) or a watcher handing over
NETNS_POLL_S = 0.5  # how often the daemon looks whether its namespace was deleted
SWITCH_INTERVAL_S = 0.0005  # how long the sentinel may wait for the interpreter lock
SENTINEL_RT_PRIORITY = 1  # SCHED_FIFO: woken ahead of every ordinary task on a busy machine
SENTINEL_NICE = -10  # where real-time scheduling is refused

QUIET_S = 0.001  # a burst is over when nothing arrived for this long...
BURST_MAX_S = 0.020  # ...or when it has lasted this long


@dataclass
class Batch:
    """Notifications collected in one burst."""

    kinds: set[str] = field(default_factory=set)
    count: int = 0
    last_at: float = 0.0  # time.monotonic() of the last message
    overrun: bool = False
    multipath_route: bool = False
    first_at: float = 0.0  # time.monotonic() of the first message
    # what the burst may have made unsafe: every interface, or these ifindexes
    unsafe_all: bool = False
    unsafe: set[int] = field(default_factory=set)
    restricted: set[int] = field(default_factory=set)  # done already, during the burst
    restricted_all: bool = False
    fdb: list[tuple[int, bytes]] = field(default_factory=list)  # AF_BRIDGE neighbour messages
    safe_at: float = 0.0  # time.monotonic() when the pre-emptive restriction was written

    def add(self, kind: str) -> None:
        self.last_at = time.monotonic()
        if not self.count:
            self.first_at = self.last_at
        self.count += 1
        self.kinds.add(kind)


class EventSource:
    """Netlink sockets for every notification that can change the plan."""

    def __init__(self, routes: PlanRoutes | None = None) -> None:
        self.routes = routes or PlanRoutes()
        self.subs: dict[int, tuple[netlink.Subscription, Callable[[int, bytes, Batch], None]]] = {}
        self._open(NETLINK_ROUTE, list(RTNL_GROUPS), self._rtnl)
        self._open(NETLINK_NETFILTER, [NFNLGRP_NFTABLES], self._everything("netfilter"))
        self._open(NETLINK_XFRM, [XFRMNLGRP_POLICY], self._everything("xfrm"))
        try:  # device (and xdp_features) changes: a veth peer losing GRO, for one
            group = netlink.mcast_group_id("netdev", "mgmt")
            self._open(NETLINK_GENERIC, [group], self._netdev)
        except OSError:
            pass  # kernels before 6.3: the periodic resync covers it

    def _open(self, proto: int, groups: list[int],
              handler: Callable[[int, bytes, Batch], None]) -> None:
        sub = netlink.Subscription(proto, groups)
        self.subs[sub.fileno()] = (sub, handler)

    @staticmethod
    def _everything(kind: str) -> Callable[[int, bytes, Batch], None]:
        """A change that may concern any interface (a firewall rule, an xfrm policy)."""
        def handler(msg_type: int, body: bytes, batch: Batch) -> None:
            batch.unsafe_all = True
            batch.add(kind)
        return handler

    @staticmethod
    def _netdev(msg_type: int, body: bytes, batch: Batch) -> None:
        attrs = netlink.parse_attrs(body[netlink.GENLMSGHDR.size:])
        ifindex = attrs.get(netlink.NETDEV_A_DEV_IFINDEX)
        if ifindex is None:
            batch.unsafe_all = True
        else:
            batch.unsafe.add(struct.unpack("=I", ifindex[:4])[0])
        batch.add("netdev")

    def _rtnl(self, msg_type: int, body: bytes, batch: Batch) -> None:
        kind = next((k for (lo, hi), k in RTM_KINDS.items() if lo <= msg_type < hi), "other")
        if kind == "neigh" and body[:1] == bytes([netlink.AF_BRIDGE]):  # FDB: the mirror follows it
            batch.fdb.append((msg_type, body))
            kind = "fdb"
        elif kind == "route" and msg_type in (netlink.RTM_NEWROUTE, netlink.RTM_DELROUTE):
            added, removed = self.routes.follow(msg_type, body)
            if added:  # a stricter plan: multipath, a smaller route MTU, a local route
                batch.multipath_route |= _route_is_multipath(body)
                batch.unsafe_all = True
            if added or removed:
                kind = "plan_route"
            elif len(body) > 4 and body[4] == RT_TABLE_LOCAL:
                # the local table decides whether BPF_FIB_LOOKUP_DIRECT is exact (plan.router)
                batch.unsafe_all = True
                kind = "route_local"
        elif msg_type in (netlink.RTM_DELLINK, RTM_DELADDR):
            self.routes.doubt()  # IPv4 routes may go with it, without a message of their own
        if kind in ("link", "tc") and len(body) >= 8:  # ifinfomsg, tcmsg: ifindex at 4
            batch.unsafe.add(struct.unpack_from("=i", body, 4)[0])
        elif kind == "netconf":
            batch.unsafe_all |= _netconf_scope(body, batch.unsafe)
        elif kind in ("rule", "nexthop"):
            batch.unsafe_all = True
        elif kind == "addr" and body[:1] == bytes([socket.AF_INET]):
            # a new local IPv4 address is a source the fast path must stop forwarding from
            batch.unsafe_all = True
            kind = "addr4"
        elif kind == "addr" and body[:1] == bytes([socket.AF_INET6]):
            # a new local IPv6 address: fib_direct_v6 must recognise it (tna_local_v6)
            batch.unsafe_all = True
            kind = "addr6"
        batch.add(kind)

    def fds(self) -> list[int]:
        return list(self.subs)

    def drain(self, fd: int, batch: Batch) -> None:
        sub, handler = self.subs[fd]
        received, overrun = sub.receive()
        if overrun:  # the kernel dropped notifications: resync
            batch.overrun = batch.unsafe_all = True
            batch.add("overrun")
        for msg_type, body in received:
            handler(msg_type, body, batch)

    def close(self) -> None:
        for sub, _ in self.subs.values():
            sub.close()


NETCONFA_IFINDEX = 1
NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT = -1, -2


def _netconf_scope(body: bytes, unsafe: set[int]) -> bool:
    """Add the interface a netconf message is about; True when it is about all of them."""
    raw = netlink.parse_attrs(body[4:]).get(NETCONFA_IFINDEX)  # struct netconfmsg: 4
    if raw is None:
        return True
    ifindex = struct.unpack("=i", raw[:4])[0]
    if ifindex in (NETCONFA_IFINDEX_ALL, NETCONFA_IFINDEX_DEFAULT):
        return True
    unsafe.add(ifindex)
    return False


def _route_is_multipath(body: bytes) -> bool:
    attrs = netlink.parse_attrs(body[netlink.RTMSG.size:])
    return RTA_MULTIPATH in attrs or RTA_NH_ID in attrs


# ---- the daemon ------------------------------------------------------------------------------

class AlreadyRunning(Exception):
    """Another ``tna run`` manages this namespace."""


def state_path() -> str:
    return os.path.join(control.STATE_DIR, f"ns{netns.cookie()}.json")


def read_state() -> dict[str, Any] | None:
    """The running daemon's state for this namespace, or None if no daemon runs.

    Who runs is the namespace lock's holder (:mod:`tna.owner`), never the state file: that
    only adds the daemon's counters when it is the holder's own."""
    holder = owner.holder()
    if holder is None or holder.get("role") != "run":
        return None
    try:
        with open(state_path()) as f:
            state: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        state = {}
    if state.get("pid") != holder["pid"]:  # not written yet, or a dead daemon's
        state = {"cycles": 0, "errors": 0, "last": None}
    return {**state, "pid": holder["pid"]}


def _prioritise() -> None:
    """Run the calling thread ahead of other work (the main thread's, other processes'): it
    sleeps until a notification arrives and then only classifies the messages and writes a
    few map entries (per interface), so a real-time priority starves nobody for long (and the
    kernel's real-time throttling bounds even a storm of route messages)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(SENTINEL_RT_PRIORITY))
    except OSError:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), SENTINEL_NICE)


class Sentinel:
    """Reads every notification as it arrives and restricts what it may have made unsafe, in a
    thread of its own: nothing the main thread does (a snapshot, program loads, a full re-read
    of a large routing table) delays it by more than the interpreter's switch interval.

    ``lock`` guards the pending batch, the planner's routes and every map write that restricts
    or relaxes; ``generation`` counts the restrictions written, so a reconciliation can tell
    whether one happened since its configuration was read (:meth:`gate`)."""

    def __init__(self, events: EventSource, datapath: Datapath) -> None:
        self.events, self.datapath = events, datapath
        self.lock = threading.RLock()
        self.pending = Batch()
        self.generation = 0
        self.ready_r, self._ready_w = os.pipe2(os.O_NONBLOCK)  # the main thread waits on it
        self._stop_r, self._stop_w = os.pipe2(os.O_NONBLOCK)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tna-sentinel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        if self._thread.ident is not None:
            self._thread.join(timeout=5)
        for fd in (self.ready_r, self._ready_w, self._stop_r, self._stop_w):
            os.close(fd)

    def _run(self) -> None:
        _prioritise()
        fds = [*self.events.fds(), self._stop_r]
        try:
            while True:
                ready, _, _ = select.select(fds, [], [])
                if self._stop_r in ready:
                    return
                with self.lock:
                    for fd in ready:
                        self.events.drain(fd, self.pending)
                    self._preempt(self.pending)
                with contextlib.suppress(BlockingIOError):
                    os.write(self._ready_w, b"x")
        except BaseException as e:  # the main thread reports it and exits: links go with it
            self.error = e
            with contextlib.suppress(OSError):
                os.write(self._ready_w, b"x")

    def _preempt(self, batch: Batch) -> None:
        """Safety first: whatever the notifications may have made unsafe goes back to Linux
        now, before the burst is over and long before the snapshot and plan are done."""
        if batch.restricted_all:
            return
        if batch.unsafe_all:
            self.datapath.restrict(None)
            batch.restricted_all = True
        elif batch.unsafe - batch.restricted:
            self.datapath.restrict(batch.unsafe - batch.restricted)
            batch.restricted |= batch.unsafe
        else:
            return
        self.generation += 1
        batch.safe_at = batch.safe_at or time.monotonic()

    def take(self) -> tuple[Batch, int]:
        """The notifications so far (a new batch starts) and the restriction count now: a
        reconciliation from a snapshot read after this may relax only if it is unchanged."""
        with self.lock:
            batch, self.pending = self.pending, Batch()
            return batch, self.generation

    def wait_burst(self) -> None:
        """Until the burst is over: nothing for QUIET_S, or BURST_MAX_S since it began."""
        while True:
            with self.lock:
                first, last, count = (self.pending.first_at, self.pending.last_at,
                                      self.pending.count)
            now = time.monotonic()
            if not count or now - last >= QUIET_S or now - first >= BURST_MAX_S:
                return
            time.sleep(QUIET_S)

    def gate(self, generation: int) -> control.Gate:
        return control.Gate(self.lock, lambda: self.generation == generation)


class Daemon:
    """``tna run``; with ``watch``, the watcher ``tna apply`` leaves (:mod:`tna.watcher`)."""

    def __init__(self, netns_name: str, keep: bool = False, resync_s: float = 1.0,
                 log: TextIO = sys.stdout, watch: bool = False, tcp_liberal: bool = False) -> None:
        self.netns_name, self.keep, self.resync_s, self.log = netns_name, keep, resync_s, log
        self.watch = watch
        # --tcp-liberal: the programs name connections, this marks them (tna.liberal); with
        # or without it, the marker closes the entries of liberal connections reset after
        # fast data (the RST repair the liberal fast path needs: ct_liberal_fast)
        self.tcp_liberal = tcp_liberal
        self.marker: liberal.Marker | None = None
        self.datapath = control.new_datapath(owned=True)
        self.datapath.warn = lambda message: self._emit("warning", message=message)
        self._lock: owner.Lock | None = None  # the namespace's, for the daemon's whole life
        self.plan: Plan | None = None  # the plan in force (None: unknown, reconcile again)
        self.state: dict[str, Any] = {"pid": os.getpid(), "netns": netns_name,
                                      "started": time.time(), "cycles": 0, "errors": 0,
                                      "last": None}
        if tcp_liberal:  # its marks, and for 'tna plan': the opt-in is on
            self.state["tcp_liberal"] = dict.fromkeys(liberal.COUNTS, 0)
        self._stop = False
        self._resync = False
        # netfilter and xfrm cost a subprocess each: re-read only when they may have changed
        self._netfilter: tuple[tuple[NetfilterChain, ...], tuple[NetfilterSet, ...]] | None = None
        self._xfrm: tuple[XfrmPolicy, ...] | None = None
        self.routes = PlanRoutes()  # the routes the planner reads, followed by the sentinel
        self.sentinel: Sentinel | None = None
        self._carried = Changes()  # what deferred cycles changed
        self._carried_why: set[str] = set()  # and why they ran: said by the cycle that completes
        # the bridge FDB mirror: fed by notifications, refreshed (ageing) on a timer
        self.mirror = FdbMirror()
        self.bridges: set[int] = set()
        self._next_fdb_refresh = float("inf")
        self._home = netns.Watch(netns_name)  # a deleted namespace: detach and exit
        # called after every reconciliation: (why, succeeded, seconds by phase); for metrics
        self.observers: list[Callable[[set[str], bool, dict[str, float]], None]] = []

    # -- lifecycle --
    def run(self) -> int:
        # a hand-over request may come as soon as the lock is ours (see owner.acquire)
        signal.signal(signal.SIGUSR1, self._on_handover)
        try:  # the namespace's one owner, for the daemon's whole life (released at exit)
            if self.watch:  # 'tna apply' started us and hands its lock over as it returns
                self._lock = owner.acquire("watch", wait=WATCH_LOCK_WAIT_S,
                                           refuse=("run", "watch"))
            else:  # 'tna run' takes over from the watcher 'tna apply' left
                self._lock = owner.acquire("run", wait=WATCH_LOCK_WAIT_S, take_over=("watch",))
        except owner.Busy as e:
            if self.watch and e.holder.get("role") == "watch":
                return 0  # another watcher follows this namespace
            raise AlreadyRunning(str(e)) from None
        try:
            pins.make_pin_dir()  # refuse at once, not every cycle, a directory root does not own
            if not self.watch:
                return self._run()
            pidfile = watcher.hold()
            if pidfile is None:
                return 0  # another watcher follows this namespace
            try:
                return self._run(lambda: watcher.mark_ready(pidfile))
            finally:
                watcher.release(pidfile)  # before the lock: a successor finds no stale watcher
        finally:
            if not self.keep:
                self._lock.forget()  # nothing left to own: no lock file either
            else:
                self._lock.release()

    def _run(self, on_ready: Callable[[], None] | None = None) -> int:
        events = EventSource(self.routes)  # subscribe before the first snapshot
        self.sentinel = Sentinel(events, self.datapath)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w)
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_hup), (signal.SIGUSR1, self._on_handover)):
            signal.signal(sig, handler)
        sys.setswitchinterval(SWITCH_INTERVAL_S)  # the sentinel never waits long for the GIL
        try:
            fdbrefresh.stop_refresher()  # one left by 'tna apply': the daemon drives it now
            adopted = self.datapath.adopt()
            self._emit("start", adopted=[_name(i) for i in adopted], keep=self.keep)
            self.sentinel.start()
            # before the first programs: no request waits for a reader
            self.marker = liberal.Marker(lambda message: self._emit("warning",
                                                                    message=message))
            self.marker.start()
            self.cycle(Batch(kinds={"start"}, first_at=time.monotonic()),
                       self.sentinel.generation)
            sdnotify.ready()  # systemd Type=notify: the first reconciliation is done
            if on_ready is not None:
                on_ready()
            self._loop(wake_r)
        finally:
            if self.marker is not None:
                self.marker.stop()
            self.sentinel.stop()
            events.close()
            self.datapath.release(keep=self.keep)
            if not self.keep:
                control.forget_firewall()
            self._emit("stop", kept=self.keep)
            if not self.watch:
                _remove(state_path())
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._resync = True

    def _on_handover(self, signum: int, frame: object) -> None:
        """SIGUSR1: exit, leaving the links pinned for whoever takes over."""
        self.keep = self._stop = True

    def _loop(self, wake_r: int) -> None:
        assert self.sentinel is not None
        sentinel = self.sentinel
        now = time.monotonic()
        full_every = _env_seconds("TNA_FULL_AUDIT_S", FULL_AUDIT_S)
        next_audit, next_full = now + self.resync_s, now + full_every
        while not self._stop:
            if self._namespace_gone():
                return
            wake_at = min(next_audit, next_full, self._next_fdb_refresh,
                          time.monotonic() + NETNS_POLL_S)
            ready, _, _ = select.select([wake_r, sentinel.ready_r], [], [],
                                        max(0.0, wake_at - time.monotonic()))
            for fd in ready:
                _drain_pipe(fd)
            self._note_marks()
            if sentinel.error is not None:
                raise RuntimeError(f"notification reader failed: {sentinel.error!r}")
            if self._stop:
                return
            sentinel.wait_burst()
            batch, generation = sentinel.take()
            self._follow_fdb(batch)
            now = time.monotonic()
            if self._resync:  # SIGHUP: re-read everything, and say so
                self._resync = False
                batch.kinds.add("sighup")
                self.cycle(batch, generation)
            elif batch.overrun or now >= next_full:  # the routing table read in full
                next_full = now + full_every
                if not batch.overrun:
                    batch.kinds.add("audit")
                self.cycle(batch, generation)  # logged: rare, and worth seeing
            elif self._needs_cycle(batch):
                self.cycle(batch, generation)
            elif now >= next_audit:  # catches what has no notification, cheaply
                batch.kinds.add("periodic")
                self.cycle(batch, generation, quiet=True, audit=True)
            else:
                continue
            next_audit = time.monotonic() + self.resync_s  # any cycle was an audit too

    def _note_marks(self) -> None:
        """The marker's counts into the state file ('tna stats'), when they changed: under
        "tcp_liberal" with the opt-in (which 'tna plan' reads as the opt-in), else under
        "tcp_repair" (the RST repair alone)."""
        key = "tcp_liberal" if self.tcp_liberal else "tcp_repair"
        if self.marker is not None and self.state.get(key) != self.marker.counts():
            self.state[key] = self.marker.counts()
            self._save()

    def _namespace_gone(self) -> bool:
        """Our namespace was deleted while we kept it alive by being in it: detach (never
        keep: nobody can adopt the links) and leave, so it can go."""
        if not self._home.gone():
            return False
        self.keep = False
        self._emit("netns_gone", netns=self.netns_name)
        return True

    def _follow_fdb(self, batch: Batch) -> None:
        """FDB notifications are map updates, no cycle; a timer refreshes kernel ageing."""
        try:
            for msg_type, body in batch.fdb:
                control.follow_fdb(self.mirror, msg_type, body, self.bridges)
            if self.bridges and time.monotonic() >= self._next_fdb_refresh:
                control.refresh_fdb(self.mirror, self.bridges)
                self._next_fdb_refresh = (time.monotonic()
                                          + control.refresh_interval(self.bridges))
        except Exception as e:  # a cycle (periodic at the latest) resyncs the mirror
            self.state["errors"] += 1
            self._emit("error", why=["fdb"], error=f"{type(e).__name__}: {e}")

    def _needs_cycle(self, batch: Batch) -> bool:
        return bool(batch.overrun or batch.kinds & REPLAN_KINDS or batch.restricted
                    or batch.restricted_all or self.plan is None)

    # -- one reconciliation --
    def _read_routes(self) -> None:
        """The planner's routes from a full dump, with what arrived meanwhile replayed."""
        assert self.sentinel is not None
        with self.sentinel.lock:
            self.routes.begin_reload()
        fresh: tuple[Any, ...] = ()
        try:
            fresh = introspect.plan_routes()
        finally:
            with self.sentinel.lock:
                self.routes.finish_reload(fresh)

    def cycle(self, batch: Batch, generation: int, quiet: bool = False,
              audit: bool = False) -> None:
        """One reconciliation from a snapshot read after ``generation`` restrictions; an
        ``audit`` reconciles only if the plan changed (or redirects await their check)."""
        assert self.sentinel is not None
        started = time.monotonic()
        full = bool(batch.kinds & FULL_READ_KINDS)
        try:
            if full or self.routes.stale:
                self._read_routes()
            if full or "netfilter" in batch.kinds or self._netfilter is None:
                self._netfilter = netfilter.ruleset()
            elif audit:  # iptables-legacy has no notifications (nothing runs without tables)
                self._netfilter = (tuple(c for c in self._netfilter[0]
                                         if c.source != "iptables-legacy")
                                   + netfilter.legacy_chains(), self._netfilter[1])
            if full or "xfrm" in batch.kinds or self._xfrm is None:
                self._xfrm = introspect.xfrm_policies()
            with self.sentinel.lock:
                routes = self.routes.current()
            # an audit also notices pins removed or moved: the reconciliation puts them back
            unchanged = (self.plan if audit and not redirects_pending()
                         and self.datapath.pins_intact() else None)
            applied = control.apply(self.netns_name, self.datapath, followed=True,
                                    tcp_liberal=self.tcp_liberal,
                                    netfilter_chains=self._netfilter[0],
                                    netfilter_sets=self._netfilter[1], xfrm=self._xfrm,
                                    routes=routes, plan_only=True,
                                    gate=self.sentinel.gate(generation), unchanged=unchanged)
            plan, changes = applied.plan, applied.changes
            read, planned = applied.read_at, applied.planned_at
            self.bridges = plan.bridges()
            self._next_fdb_refresh = (time.monotonic() + control.refresh_interval(self.bridges)
                                      if self.bridges else float("inf"))
        except Exception as e:  # the daemon must outlive one bad cycle
            self.state["errors"] += 1
            self.plan = None
            self._emit("error", why=sorted(batch.kinds), error=f"{type(e).__name__}: {e}")
            self._save()
            self._observe(batch.kinds, False, {"total": time.monotonic() - started})
            return
        done = time.monotonic()
        if changes.deferred:  # restricted meanwhile: relax left out, the next cycle redoes it
            self.plan = None
            self._emit("deferred", why=sorted(batch.kinds), changes=_named(changes),
                       ms=_ms(done - started))
            self._carried = _merged(self._carried, changes)  # reported with the next cycle
            self._carried_why |= batch.kinds
            return
        self.plan = plan
        if self.marker is not None:  # programs (and their request ring) may be new
            self.marker.wake()
        changes, self._carried = _merged(self._carried, changes), Changes()
        why, self._carried_why = batch.kinds | self._carried_why, set()
        if audit and not changes:
            return  # nothing changed, nothing to say
        self._observe(why, True, {"read": read - started, "plan": planned - read,
                                  "apply": done - planned, "total": done - started})
        self.state["cycles"] += 1
        self.state["last"] = {"at": time.time(), "why": sorted(why),
                              "events": batch.count, "duration_ms": _ms(done - started),
                              "first_event_mono": batch.first_at, "done_mono": done,
                              "safe_mono": batch.safe_at or changes.safe_at,
                              "changes": _named(changes)}
        self._save()
        preempted = (["*"] if batch.restricted_all else sorted(_name(i) for i in batch.restricted))
        if changes or not quiet:
            self._emit("reconcile", why=sorted(why), events=batch.count,
                       preempted=preempted, changes=_named(changes), ms=_ms(done - started),
                       read_ms=_ms(read - started),
                       latency_ms=_ms(done - batch.first_at) if batch.first_at else None,
                       first_event_mono=batch.first_at,
                       safe_mono=batch.safe_at or changes.safe_at,
                       done_mono=done)

    def _observe(self, why: set[str], ok: bool, phases: dict[str, float]) -> None:
        for observer in self.observers:
            with contextlib.suppress(Exception):  # metrics never stop the reconciliations
                observer(why, ok, phases)

    def _emit(self, event: str, **fields: Any) -> None:
        line = {"ts": round(time.time(), 6), "event": event, **fields}
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    def _save(self) -> None:
        if self.watch:
            return  # the state file is a 'tna run''s (its counters for 'tna status')
        owner.state_dir()
        tmp = state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, state_path())


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if 0.1 <= value <= 86400 else default


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _name(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex{ifindex}"


def _merged(earlier: Changes, later: Changes) -> Changes:
    """What two reconciliations changed together (each interface once per kind)."""
    out = Changes(safe_at=later.safe_at, firewall_written=earlier.firewall_written
                  or later.firewall_written, deferred=later.deferred)
    for kind, ifindexes in (*earlier.by_kind().items(), *later.by_kind().items()):
        target = getattr(out, kind)
        target.extend(i for i in ifindexes if i not in target)
    return out


def _named(changes: Changes) -> dict[str, list[str]]:
    return {k: [_name(i) for i in v] for k, v in changes.by_kind().items()}


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
