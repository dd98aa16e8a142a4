"""Fast-path counters as an operator reads them: since when, since a reset, without phantoms.

Role in the flow: read-only, after apply.  ``tna stats``, ``tna top`` and the metrics exporter
read the pinned per-CPU ``tna_stats`` map through :func:`tna.datapath.status.read_counters`
and shape it here.

*Since when*: the counters were created when ``tna_stats`` was pinned; the pin's inode time
says when (bpffs stamps it).  *Reset*: ``tna stats --reset`` does not write to the kernel's
counters (the fast path increments them without locks, and Prometheus wants counters that only
grow); it records the current values as a zero point in ``/run/tna/ns<cookie>.counters.json``,
which ``tna stats`` and ``tna top`` subtract.  A zero point from counters that have since been
recreated (a different pin time), or for an interface whose counters went backwards (its slot
was reused), is ignored.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from tna import netns, reasons
from tna.datapath import firewall as fw_datapath
from tna.datapath import pins, status
from tna.firewall.tables import FwTables

# The firewall tables of both families (IPv4, IPv6) that name the rule counters: the daemon's
# plan, or ``tna.control.firewall_record()`` (what the last reconciliation wrote).
RuleTables = tuple[FwTables | None, FwTables | None]

STATE_DIR = "/run/tna"
VERDICT_NAMES = ("forwarded", "transmitted", "bridged", "fw_dropped")

Rows = dict[int, dict[str, status.Counter]]


@dataclass
class Readout:
    rows: Rows  # ifindex (0: ingress without a TNA entry) -> counter name -> totals
    created: float | None  # when the counters were created (epoch seconds); None: no counters
    since: float | None  # the start of what ``rows`` count: created, or the last reset
    reset_at: float | None = None


def created() -> float | None:
    """When this namespace's ``tna_stats`` map was pinned, or None if it is not."""
    try:
        return os.stat(os.path.join(pins.pin_dir(), "tna_stats")).st_ctime
    except FileNotFoundError:
        return None


def baseline_path() -> str:
    return os.path.join(STATE_DIR, f"ns{netns.cookie()}.counters.json")


def read_raw() -> Readout:
    """The kernel's counters as they are: monotonic since ``created``."""
    born = created()
    rows = status.read_counters() if born is not None else {}
    return Readout(rows, born, born)


def read() -> Readout:
    """The counters since the last ``reset`` (or since they were created)."""
    raw = read_raw()
    base = _load_baseline()
    if raw.created is None or base is None or base.get("created") != raw.created:
        return raw
    zero: dict[str, dict[str, list[int]]] = base.get("rows", {})
    rows: Rows = {}
    for ifindex, row in raw.rows.items():
        start = zero.get(str(ifindex), {})
        if any(c.packets < start.get(n, (0, 0))[0] for n, c in row.items()):
            rows[ifindex] = row  # slot reused since the reset: counts from its creation
            continue
        rows[ifindex] = {n: status.Counter(c.packets - start.get(n, (0, 0))[0],
                                           c.bytes - start.get(n, (0, 0))[1])
                         for n, c in row.items()}
    return Readout(rows, raw.created, float(base["at"]), float(base["at"]))


def reset(tables: RuleTables | None = None) -> Readout:
    """Make the current counters (and the rule counters of ``tables``) the zero point of
    ``read`` and ``rule_rows``; returns what was reset."""
    raw = read_raw()
    if raw.created is None:
        return raw
    now = time.time()
    rules = rule_rows(tables, since_reset=False) if tables is not None else []
    doc = {"created": raw.created, "at": now,
           "rows": {str(i): {n: [c.packets, c.bytes] for n, c in row.items()}
                    for i, row in raw.rows.items()},
           "rules": {r["rule"]: [r["packets"], r["bytes"]] for r in rules if "stale" not in r}}
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = baseline_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, baseline_path())
    return Readout({}, raw.created, now, now)


def forget_reset() -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(baseline_path())


def _load_baseline() -> dict[str, Any] | None:
    try:
        with open(baseline_path()) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "at" in doc and "created" in doc else None


def is_phantom(ifindex: int, row: dict[str, status.Counter]) -> bool:
    """The unknown-ingress slot with nothing in it: no interface to show."""
    return ifindex == 0 and not any(c.packets for c in row.values())


def ifname(ifindex: int) -> str:
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex{ifindex}"


def interface_summary(ifindex: int, row: dict[str, status.Counter]) -> dict[str, Any]:
    zero = status.Counter(0, 0)
    punts = {n: c for n, c in row.items() if n not in VERDICT_NAMES}
    return {
        "ifindex": ifindex,
        "forwarded_packets": row.get("forwarded", zero).packets,  # routed
        "forwarded_bytes": row.get("forwarded", zero).bytes,
        "bridged_packets": row.get("bridged", zero).packets,  # switched by a bridge port
        "bridged_bytes": row.get("bridged", zero).bytes,
        "transmitted_packets": row.get("transmitted", zero).packets,
        "dropped_packets": row.get("fw_dropped", zero).packets,  # by forward-hook rules
        "punted_packets": sum(c.packets for c in punts.values()),
        "punted_bytes": sum(c.bytes for c in punts.values()),
        "punt_reasons": {n: c.packets for n, c in punts.items()},
    }


def summary(readout: Readout, describe_all: bool = False) -> dict[str, Any]:
    """The ``tna stats --json`` object: totals, then per interface, then a legend of the
    reasons that occur (all of them with ``describe_all``)."""
    interfaces: dict[str, Any] = {}
    unknown: dict[str, Any] | None = None
    for ifindex, row in sorted(readout.rows.items()):
        if is_phantom(ifindex, row):
            continue
        s = interface_summary(ifindex, row)
        if ifindex == 0:  # never an interface: frames from ports TNA has no entry for
            unknown = s
        else:
            interfaces[ifname(ifindex)] = s
    everything = [*interfaces.values(), *([unknown] if unknown else [])]
    totals: dict[str, int] = {}
    for s in everything:
        for name, n in s["punt_reasons"].items():
            totals[name] = totals.get(name, 0) + n
    out: dict[str, Any] = {
        "since": _iso(readout.since),
        "created": _iso(readout.created),
        "reset": _iso(readout.reset_at),
        "forwarded_packets": sum(s["forwarded_packets"] for s in everything),
        "forwarded_bytes": sum(s["forwarded_bytes"] for s in everything),
        "bridged_packets": sum(s["bridged_packets"] for s in everything),
        "bridged_bytes": sum(s["bridged_bytes"] for s in everything),
        "dropped_packets": sum(s["dropped_packets"] for s in everything),
        "punted_packets": sum(totals.values()),
        "punt_reasons": totals,
        "interfaces": interfaces,
    }
    if unknown:
        out["unknown_ingress"] = unknown
    done = {"forwarded": out["forwarded_packets"], "bridged": out["bridged_packets"],
            "fw_dropped": out["dropped_packets"]}
    seen = [n for n in reasons.REASONS if totals.get(n) or done.get(n)]
    out["legend"] = reasons.legend(None if describe_all else seen)
    return out


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def age(t: float | None, now: float | None = None) -> str:
    """'3h12m' style age of an epoch time, for text output."""
    if t is None:
        return "-"
    s = int(max(0.0, (now or time.time()) - t))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def rule_rows(tables: RuleTables, since_reset: bool = True) -> list[dict[str, Any]]:
    """Per netfilter rule: what the fast path accepted or dropped under it.  Counts are only
    attributed while the loaded tables are ``tables`` (the ones that name the counters)."""
    out: list[dict[str, Any]] = []
    rules: dict[str, dict[str, Any]] = {}  # an inet rule counts for IPv4 and IPv6: one row
    for family, ft in enumerate(tables):
        if ft is None:
            continue
        loaded, counts = status.firewall_state(family)
        if loaded != [(r.verdict, int(r.counter >= 0), r.target) for r in ft.rules]:
            out.append({"rule": f"{('ipv4', 'ipv6')[family]} forward hook", "packets": 0,
                        "bytes": 0, "stale": "loaded tables differ from the ruleset: "
                        "run tna apply"})
            continue
        for ref, (packets, nbytes) in fw_datapath.rule_counters(ft, counts).items():
            row = rules.setdefault(str(ref), {
                "rule": str(ref), "family": ref.family, "table": ref.table, "chain": ref.chain,
                "handle": ref.handle, "packets": 0, "bytes": 0})
            row["packets"] += packets
            row["bytes"] += nbytes
    base = _load_baseline() if since_reset else None
    if base is not None and base.get("created") == created():
        for row in rules.values():
            p, b = base.get("rules", {}).get(row["rule"], (0, 0))
            if row["packets"] >= p:  # else: counters recreated since the reset
                row["packets"] -= p
                row["bytes"] -= b
    return out + list(rules.values())
