"""``tna run``: keep the fast path equal to the configuration as it changes.

Role in the flow: the daemon drives the control function (:mod:`tna.control`: introspect →
plan → reconcile) in a loop.  It
subscribes to every kernel notification that can change the plan *before* its first snapshot
(so nothing is missed), coalesces bursts, and reconciles.  The data path's three phases put
traffic that became unsafe back on Linux first (map writes), then swap programs.

What needs no work at all: routes and neighbours.  ``bpf_fib_lookup`` reads the kernel's FIB
and neighbour tables for every packet, so a route or neighbour change is followed by the very
next packet.  Only routes that change the plan (multipath, nexthop objects) trigger a cycle.

Fail to Linux: the daemon owns its links (file descriptors, not pins).  If it dies for any
reason, even SIGKILL, the kernel releases them and Linux forwards alone.  ``--keep`` pins them
on SIGTERM instead, so a successor adopts a running fast path without a gap.  Netlink overruns
(ENOBUFS) are expected under bursts and answered with a full resync.  A periodic resync
catches what has no notification (tcx attachments, iptables-legacy, some sysctls).
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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from tna import control, fdbrefresh, introspect, netfilter, netlink, netns, owner, sdnotify
from tna.datapath import pins
from tna.datapath.fdb import FdbMirror
from tna.datapath.loader import Changes
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

# Event kinds that may change the plan; the others need no work (see the module docstring).
REPLAN_KINDS = frozenset({"link", "rule", "tc", "netconf", "nexthop", "netfilter", "xfrm",
                          "netdev", "addr4"})

# What makes a cycle re-read everything, including what has no notification of its own.
FULL_READ_KINDS = frozenset({"start", "periodic", "sighup", "overrun"})

QUIET_S = 0.001  # a burst is over when nothing arrived for this long...
BURST_MAX_S = 0.020  # ...or when it has lasted this long


@dataclass
class Batch:
    """Notifications collected in one burst."""

    kinds: set[str] = field(default_factory=set)
    count: int = 0
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
        if not self.count:
            self.first_at = time.monotonic()
        self.count += 1
        self.kinds.add(kind)


class EventSource:
    """Netlink sockets for every notification that can change the plan."""

    def __init__(self) -> None:
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

    @staticmethod
    def _rtnl(msg_type: int, body: bytes, batch: Batch) -> None:
        kind = next((k for (lo, hi), k in RTM_KINDS.items() if lo <= msg_type < hi), "other")
        if kind == "neigh" and body[:1] == bytes([netlink.AF_BRIDGE]):  # FDB: the mirror follows it
            batch.fdb.append((msg_type, body))
            kind = "fdb"
        elif kind == "route" and _route_is_multipath(body):
            batch.multipath_route = batch.unsafe_all = True
        elif kind in ("link", "tc") and len(body) >= 8:  # ifinfomsg, tcmsg: ifindex at 4
            batch.unsafe.add(struct.unpack_from("=i", body, 4)[0])
        elif kind == "netconf":
            batch.unsafe_all |= _netconf_scope(body, batch.unsafe)
        elif kind in ("rule", "nexthop"):
            batch.unsafe_all = True
        elif kind == "addr" and body[:1] == bytes([socket.AF_INET]):
            # a new local IPv4 address is a source the fast path must stop forwarding from
            batch.unsafe_all = True
            kind = "addr4"
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


class Daemon:
    def __init__(self, netns_name: str, keep: bool = False, resync_s: float = 1.0,
                 log: TextIO = sys.stdout) -> None:
        self.netns_name, self.keep, self.resync_s, self.log = netns_name, keep, resync_s, log
        self.datapath = control.new_datapath(owned=True)
        self.datapath.warn = lambda message: self._emit("warning", message=message)
        self._lock: owner.Lock | None = None
        self.plan: Plan | None = None
        self.state: dict[str, Any] = {"pid": os.getpid(), "netns": netns_name,
                                      "started": time.time(), "cycles": 0, "errors": 0,
                                      "last": None}
        self._stop = False
        self._resync = False
        # netfilter and xfrm cost a subprocess each: re-read only when they may have changed
        self._netfilter: tuple[tuple[NetfilterChain, ...], tuple[NetfilterSet, ...]] | None = None
        self._xfrm: tuple[XfrmPolicy, ...] | None = None
        # the bridge FDB mirror: fed by notifications, refreshed (ageing) on a timer
        self.mirror = FdbMirror()
        self.bridges: set[int] = set()
        self._next_fdb_refresh = float("inf")
        # called after every reconciliation: (why, succeeded, seconds by phase); for metrics
        self.observers: list[Callable[[set[str], bool, dict[str, float]], None]] = []

    # -- lifecycle --
    def run(self) -> int:
        try:  # the namespace's one owner, for the daemon's whole life (released at exit)
            self._lock = owner.acquire("run")
        except owner.Busy as e:
            raise AlreadyRunning(str(e)) from None
        pins.make_pin_dir()  # refuse at once, not every cycle, a directory root does not own
        events = EventSource()  # subscribe before the first snapshot: nothing can slip by
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_w)
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_hup)):
            signal.signal(sig, handler)
        try:
            fdbrefresh.stop_refresher()  # one left by 'tna apply': the daemon drives it now
            adopted = self.datapath.adopt()
            self._emit("start", adopted=[_name(i) for i in adopted], keep=self.keep)
            self.cycle(Batch(kinds={"start"}, first_at=time.monotonic()))
            sdnotify.ready()  # systemd Type=notify: the first reconciliation is done
            self._loop(events, wake_r)
        finally:
            events.close()
            self.datapath.release(keep=self.keep)
            if not self.keep:
                control.forget_firewall()
            self._emit("stop", kept=self.keep)
            _remove(state_path())
            if not self.keep and self._lock is not None:
                self._lock.forget()  # nothing left to own: no lock file either
        return 0

    def _on_stop(self, signum: int, frame: object) -> None:
        self._stop = True

    def _on_hup(self, signum: int, frame: object) -> None:
        self._resync = True

    def _loop(self, events: EventSource, wake_r: int) -> None:
        next_resync = time.monotonic() + self.resync_s
        while not self._stop:
            wake_at = min(next_resync, self._next_fdb_refresh)
            batch = self._collect(events, wake_r, max(0.0, wake_at - time.monotonic()))
            if self._stop:
                return
            self._follow_fdb(batch)
            if self._resync:  # SIGHUP: re-read everything, and say so
                self._resync = False
                batch.kinds.add("sighup")
                self.cycle(batch)
            elif time.monotonic() >= next_resync:  # catches what has no notification
                next_resync = time.monotonic() + self.resync_s
                batch.kinds.add("periodic")
                self.cycle(batch, quiet=batch.count == 0)
            elif self._needs_cycle(batch):
                self.cycle(batch)

    def _collect(self, events: EventSource, wake_r: int, timeout: float) -> Batch:
        """Wait for notifications, then keep reading until the burst is over."""
        batch = Batch()
        fds = [*events.fds(), wake_r]
        ready, _, _ = select.select(fds, [], [], timeout)
        deadline = time.monotonic() + BURST_MAX_S
        while ready:
            for fd in ready:
                if fd == wake_r:
                    _drain_pipe(wake_r)
                else:
                    events.drain(fd, batch)
            self._preempt(batch)
            if self._stop or time.monotonic() >= deadline:
                break
            ready, _, _ = select.select(fds, [], [], QUIET_S)
        return batch

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
        batch.safe_at = batch.safe_at or time.monotonic()

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
        if (batch.overrun or batch.kinds & REPLAN_KINDS or batch.restricted
                or batch.restricted_all):
            return True
        # a route burst may have removed the multipath route that holds a family on Linux
        return "route" in batch.kinds and self.plan is not None and any(
            s.reason == "multipath_route" for s in self.plan.slow_path)

    # -- one reconciliation --
    def cycle(self, batch: Batch, quiet: bool = False) -> None:
        started = time.monotonic()
        full = bool(batch.kinds & FULL_READ_KINDS)
        try:
            if full or "netfilter" in batch.kinds or self._netfilter is None:
                self._netfilter = netfilter.ruleset()
            if full or "xfrm" in batch.kinds or self._xfrm is None:
                self._xfrm = introspect.xfrm_policies()
            applied = control.apply(self.netns_name, self.datapath,
                                    netfilter_chains=self._netfilter[0],
                                    netfilter_sets=self._netfilter[1], xfrm=self._xfrm,
                                    plan_only=True)
            plan, changes = applied.plan, applied.changes
            read, planned = applied.read_at, applied.planned_at
            self.bridges = plan.bridges()
            self._next_fdb_refresh = (time.monotonic() + control.refresh_interval(self.bridges)
                                      if self.bridges else float("inf"))
        except Exception as e:  # the daemon must outlive one bad cycle
            self.state["errors"] += 1
            self._emit("error", why=sorted(batch.kinds), error=f"{type(e).__name__}: {e}")
            self._save()
            self._observe(batch.kinds, False, {"total": time.monotonic() - started})
            return
        done = time.monotonic()
        self._observe(batch.kinds, True, {"read": read - started, "plan": planned - read,
                                          "apply": done - planned, "total": done - started})
        self.plan = plan
        self.state["cycles"] += 1
        self.state["last"] = {"at": time.time(), "why": sorted(batch.kinds),
                              "events": batch.count, "duration_ms": _ms(done - started),
                              "first_event_mono": batch.first_at, "done_mono": done,
                              "safe_mono": batch.safe_at or changes.safe_at,
                              "changes": _named(changes)}
        self._save()
        preempted = (["*"] if batch.restricted_all else sorted(_name(i) for i in batch.restricted))
        if changes or not quiet:
            self._emit("reconcile", why=sorted(batch.kinds), events=batch.count,
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
        owner.state_dir()
        tmp = state_path() + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.state, f)
        os.replace(tmp, state_path())


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _name(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex{ifindex}"


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
