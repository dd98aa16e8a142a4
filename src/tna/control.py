"""The control function: kernel configuration → snapshot → plan → data path, in one place.

Role in the flow: the one pipeline every driver runs — ``tna apply`` (:mod:`tna.cli`), the
daemon (:mod:`tna.sync`), the FDB refresher (:mod:`tna.fdbrefresh`), the equivalence harness
and the benchmark.  :func:`apply` reads a snapshot, plans, and :func:`reconcile` makes the data
path match the plan: programs and shared maps (``datapath.loader``, including the firewall
tables), then the bridge ports and the FDB mirror (:func:`sync_fdb`).

What the data path needs from the kernel's state beyond the plan is read here and handed to it:
the route cache's redirect exceptions (:func:`new_datapath`), the FDB and the live bridge-port
states.  What names the firewall's counters is recorded here too, when the tables are written
(:func:`firewall_record`), so ``tna stats`` need not compile the ruleset again to name them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from tna import introspect, netlink, netns, owner, routecache
from tna.datapath.fdb import FdbMirror, SyncResult
from tna.datapath.loader import Changes, Datapath, detach_all
from tna.datapath.maps import mac_bytes
from tna.datapath.status import our_prog_ids
from tna.firewall.tables import FwRule, FwTables, RuleRef
from tna.model import FdbEntry, Snapshot
from tna.plan import BridgePortPlan, Plan, Port, brport_plan, make_plan

STATE_DIR = owner.STATE_DIR  # per-namespace state files, named by the namespace cookie
NUD_REACHABLE = 0x02
NTF_USE, NTF_MASTER = 0x01, 0x04


@dataclass
class Applied:
    """One run of the pipeline: the plan, what the data path changed, and when the
    configuration had been read and the plan made (``time.monotonic()``)."""

    plan: Plan
    changes: Changes
    read_at: float
    planned_at: float
    snapshot: Snapshot | None = None  # what the plan was made from


def new_datapath(owned: bool = False, obj_path: str | None = None) -> Datapath:
    """The data path of the current namespace, told how to read the route cache."""
    return Datapath(owned=owned, obj_path=obj_path,
                    redirect_exceptions=routecache.redirect_exceptions)


def snapshot(netns_name: str, datapath: Datapath | None = None, **options: Any) -> Snapshot:
    """The current namespace's configuration; TNA's own programs are told from others' by
    the data path's links (a daemon's) or by the pinned maps they use."""
    ours = datapath.prog_ids() if datapath is not None and datapath.owned else our_prog_ids()
    return introspect.snapshot(netns_name, our_prog_ids=ours, **options)


def apply(netns_name: str, datapath: Datapath | None = None,
          tweak: Callable[[Port], Port] | None = None, gate: Gate | None = None,
          unchanged: Plan | None = None, followed: bool = False, tcp_liberal: bool = False,
          **snapshot_options: Any) -> Applied:
    """Snapshot → plan → reconcile, in the current namespace.  ``tweak`` changes the ports
    before they reach the data path (the benchmark's profiling of single features); ``gate``
    is a daemon's restrict lock (see :meth:`Datapath.reconcile`).  With ``unchanged`` (the
    plan in force), a plan equal to it is not reconciled at all (a daemon's audit).
    ``followed``: the caller follows every later change (the daemon), see make_plan();
    ``tcp_liberal``: the daemon marks connections liberal (``tna run --tcp-liberal``)."""
    datapath = datapath or new_datapath()
    snap = snapshot(netns_name, datapath, **snapshot_options)
    read_at = time.monotonic()
    plan = make_plan(snap, followed, tcp_liberal)
    planned_at = time.monotonic()
    if unchanged is not None and plan == unchanged:
        return Applied(plan, Changes(), read_at, planned_at, snap)
    return Applied(plan, reconcile(plan, datapath, tweak, gate), read_at, planned_at, snap)


@dataclass
class Gate:
    """How a daemon that restricts from another thread keeps a reconciliation from undoing
    it: the lock its restrictions are written under, and whether the relax may still run."""

    lock: AbstractContextManager[object]
    may_relax: Callable[[], bool]


def reconcile(plan: Plan, datapath: Datapath, tweak: Callable[[Port], Port] | None = None,
              gate: Gate | None = None) -> Changes:
    """Make the data path match ``plan``: programs, shared maps and firewall tables, then
    the bridge ports and the FDB mirror (which also forgets bridges that are gone)."""
    ports = plan.ports() if tweak is None else [tweak(p) for p in plan.ports()]
    changes = (datapath.reconcile(ports, plan.namespace) if gate is None else
               datapath.reconcile(ports, plan.namespace, gate.lock, gate.may_relax))
    if not ports:  # nothing attached: nothing pinned, nothing recorded, no FDB to mirror
        forget_firewall()
        return changes
    if changes.firewall_written:
        _record_firewall(plan.namespace.firewall)
    sync_fdb(plan.bridges(), plan.bridge_port_plans())
    return changes


def detach() -> int:
    """Remove everything TNA attached in this namespace; return the links removed."""
    forget_firewall()
    return detach_all()


# ---- the FDB mirror ---------------------------------------------------------------------------

def sync_fdb(bridges: set[int], ports: Mapping[int, BridgePortPlan],
             mirror: FdbMirror | None = None, refresh: bool = False) -> SyncResult:
    """Bridge ports as given, the FDB of ``bridges`` from a fresh dump; ``refresh`` also tells
    the kernel which entries the fast path used (see :func:`refresh_fdb`)."""
    mirror = mirror or FdbMirror()
    mirror.sync_ports(ports)
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    entries = introspect.fdb() if bridges else ()
    result = mirror.full_sync(entries, bridges, now)
    if refresh:
        send_use(mirror.due([e for e in entries if e.bridge in bridges], now))
    return result


def refresh_fdb(mirror: FdbMirror, bridges: set[int]) -> list[FdbEntry]:
    """Resync the FDB of ``bridges`` and refresh, in the kernel, every dynamic entry the fast
    path used since the kernel last saw it (its ageing restarts); return those entries."""
    now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    entries = [e for e in introspect.fdb() if e.bridge in bridges]
    mirror.full_sync(entries, bridges, now)
    due = mirror.due(entries, now)
    send_use(due)
    return due


def follow_fdb(mirror: FdbMirror, msg_type: int, body: bytes,
               bridges: Iterable[int] | None = None) -> bool:
    """One AF_BRIDGE neighbour notification (raw rtnetlink type and payload) into the mirror;
    returns whether the mirror changed."""
    if msg_type not in (netlink.RTM_NEWNEIGH, netlink.RTM_DELNEIGH):
        return False
    entry = introspect.parse_fdb(body)
    return entry is not None and mirror.apply(entry, msg_type == netlink.RTM_DELNEIGH, bridges)


def send_use(entries: list[FdbEntry]) -> None:
    """``bridge fdb replace MAC dev PORT master use`` for each entry, in batches.

    The kernel runs br_fdb_update() as for a received frame: the entry's ageing restarts.
    Errors (a port that left its bridge meanwhile) are ignored: the next sync catches up.
    """
    if entries:
        netlink.send_all(netlink.NETLINK_ROUTE,
                         ((netlink.RTM_NEWNEIGH, _use_request(e)) for e in entries))


def _use_request(e: FdbEntry) -> bytes:
    body = netlink.NDMSG.pack(netlink.AF_BRIDGE, e.ifindex, NUD_REACHABLE,
                              NTF_MASTER | NTF_USE, 0)
    body += netlink.attr(netlink.NDA_LLADDR, mac_bytes(e.mac))
    if e.vlan:
        body += netlink.attr(netlink.NDA_VLAN, struct.pack("=H", e.vlan))
    return body


def current_ports(bridges: set[int]) -> dict[int, BridgePortPlan]:
    """tna_brports entries from the kernel's links now (STP states and flags change live)."""
    details = introspect.bridge_details()
    out = {}
    for ifindex, (master, _, port) in details.items():
        info = details.get(master or 0, (None, None, None))[1]
        if master in bridges and port is not None and info is not None:
            out[ifindex] = brport_plan(master, port, info)
    return out


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


# ---- what names the firewall's counters -------------------------------------------------------

def _firewall_record_path() -> str:
    return os.path.join(STATE_DIR, f"ns{netns.cookie()}.firewall.json")


def _record_firewall(tables: tuple[FwTables | None, FwTables | None]) -> None:
    """Write, when tables were just loaded, what their rules are and which ruleset rule each
    counter belongs to (a state file, removed again when no family has a classifier)."""
    if tables == (None, None):
        forget_firewall()
        return
    record = [None if ft is None else {
        "rules": [[r.verdict, r.target, r.counter] for r in ft.rules],
        "counters": [dataclasses.asdict(ref) for ref in ft.counters]} for ft in tables]
    owner.state_dir()
    tmp = _firewall_record_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, _firewall_record_path())


def forget_firewall() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_firewall_record_path())


def firewall_record() -> tuple[FwTables | None, FwTables | None]:
    """The firewall tables as last written by :func:`reconcile`, reduced to their rules and
    counter names (enough to attribute counters); (None, None) when nothing was recorded."""
    try:
        with open(_firewall_record_path()) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None, None
    out: list[FwTables | None] = []
    for fam in record[:2]:
        out.append(None if fam is None else FwTables(
            rules=tuple(FwRule(v, t, c) for v, t, c in fam["rules"]), classes=(),
            counters=tuple(RuleRef(**ref) for ref in fam["counters"])))
    return out[0], out[1]
