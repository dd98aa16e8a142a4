"""Enforcement at scale: how soon a new nft drop rule stops a flood on the fast path.

Role in the flow: a benchmark of ``tna run`` (issue #14, "bounded enforcement at any scale").
h1 -- r -- h2 with a large routing table in r (by default 100k IPv4 + 10k IPv6 routes, loaded
with ``ip -batch``), the daemon on r, and a UDP flood h1 -> h2 (~1 kpps) whose datagrams carry
their send time (CLOCK_MONOTONIC is machine-wide).  Each trial first proves the flow is on the
fast path (the daemon's ``forwarded`` counter grows: the positive control), then adds a forward
drop rule with libnftables in-process, so the clock starts when the rule is in the kernel.  The
enforcement delay is the send time of the last datagram h2 still received minus the moment
``nft`` returned (0 if none sent after it arrived); a datagram sent later than the bound and
still delivered is a leak.  The rule is removed and the fast path must come back before the
next trial.  Every second trial adds the rule while the daemon re-reads everything (SIGHUP:
the whole routing table), which must not delay it.  Then the daemon's CPU use is read from
``/proc/<pid>/stat`` while nothing changes.

    python -m tna.bench.enforce [--trials 20] [--routes 100000] [--routes6 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tna import netns
from tna.bench.reconfig import Nft
from tna.testbed import DaemonProcess, RouterTopology, Testbed, tna_stats, wait_for

PORT = 7700
RATE_PPS = 1000
BOUND_MS = 10.0
RULE = ("add table inet tnaenf; add chain inet tnaenf f { type filter hook forward priority 0; }; "
        f"add rule inet tnaenf f udp dport {PORT} drop")
STAMP = struct.Struct("=dI")  # send time (CLOCK_MONOTONIC), sequence number


@dataclass
class Flood:
    """A sender thread in h1 and a receiver thread in h2; arrivals keep their send time."""

    t: RouterTopology
    received: list[float] = field(default_factory=list)  # send times of delivered datagrams
    sent: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        ready = threading.Event()
        self._threads = [threading.Thread(target=self._receive, args=(ready,), daemon=True),
                         threading.Thread(target=self._send, args=(ready,), daemon=True)]
        for th in self._threads:
            th.start()

    def close(self) -> None:
        self.stop.set()
        for th in self._threads:
            th.join(timeout=5)

    def _receive(self, ready: threading.Event) -> None:
        netns.enter(self.t.h2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.t.h2_v4, PORT))
            s.settimeout(0.1)
            ready.set()
            while not self.stop.is_set():
                try:
                    data = s.recv(64)
                except TimeoutError:
                    continue
                self.received.append(STAMP.unpack_from(data)[0])

    def _send(self, ready: threading.Event) -> None:
        netns.enter(self.t.h1)
        ready.wait(5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            start = time.monotonic()
            while not self.stop.is_set():
                now = time.monotonic()
                s.sendto(STAMP.pack(now, self.sent) + bytes(20), (self.t.h2_v4, PORT))
                self.sent += 1
                delay = start + self.sent / RATE_PPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

    def delivered_since(self, t0: float) -> list[float]:
        return [ts for ts in list(self.received) if ts >= t0]


def _forwarded(ns: str) -> int:
    return int(tna_stats(ns)["interfaces"].get("r1", {}).get("forwarded_packets", 0))


def _on_fast_path(t: RouterTopology, flood: Flood) -> bool:
    """The positive control: datagrams arrive and r's fast path forwards them."""
    before, t0 = _forwarded(t.r), time.monotonic()
    time.sleep(0.1)
    return bool(flood.delivered_since(t0)) and _forwarded(t.r) - before >= 50


def load_routes(bed: Testbed, t: RouterTopology, v4: int, v6: int) -> float:
    lines = [f"route add {64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}.0/24 via {t.h2_v4}"
             for i in range(v4)]
    lines += [f"route add fd10:{i >> 16:x}:{i & 0xFFFF:x}::/64 via {t.h2_v6}" for i in range(v6)]
    t0 = time.monotonic()
    bed.run(t.r, "ip", "-batch", "-", input="\n".join(lines) + "\n", timeout=300)
    return time.monotonic() - t0


def cpu_percent(pid: int, seconds: float) -> float:
    """A process's CPU use (user + system, all threads) over ``seconds``, in % of one CPU."""
    def ticks() -> int:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    hz = os.sysconf("SC_CLK_TCK")
    t0, c0 = time.monotonic(), ticks()
    time.sleep(seconds)
    return 100.0 * (ticks() - c0) / hz / (time.monotonic() - t0)


def trial(t: RouterTopology, d: DaemonProcess, nft: Nft, flood: Flood,
          during_resync: bool) -> dict[str, Any]:
    """One rule added and removed; ``during_resync``: while the daemon re-reads everything
    (SIGHUP, the routing table included), to show that other work does not delay it."""
    wait_for(lambda: _on_fast_path(t, flood), timeout=10, what="flood on the fast path")
    t0, wall0 = time.monotonic(), time.time()
    if during_resync:
        os.kill(d.proc.pid, signal.SIGHUP)
        time.sleep(0.05)
    with netns.entered(t.r):
        nft.run(RULE)
    added = time.monotonic()
    overlapped = False
    if during_resync:
        # the full re-read was still running when the rule came: its relax was deferred
        # (or it finished later, without having read the rule)
        resync = d.wait(lambda e: e["event"] in ("reconcile", "deferred")
                        and "sighup" in e["why"] and e["ts"] > wall0, what="SIGHUP resync")
        overlapped = resync["event"] == "deferred" or (
            resync["done_mono"] > added and "netfilter" not in resync["why"])
    time.sleep(0.3)
    late = flood.delivered_since(added)
    safe = d.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0
                  and "netfilter" in e["why"], what="the rule's reconciliation")
    with netns.entered(t.r):
        nft.run("delete table inet tnaenf")
    return {"enforce_ms": max(0.0, (max(late) - added) * 1000) if late else 0.0,
            "leaked_after_bound": sum(1 for ts in late if ts > added + BOUND_MS / 1000),
            "delivered_after_rule": len(late),
            "restrict_ms": round((safe["safe_mono"] - added) * 1000, 3)
            if safe.get("safe_mono") else None,
            "during_full_resync": overlapped,
            "notified_ms": round((safe["first_event_mono"] - added) * 1000, 3)}


def run(trials: int, routes: int, routes6: int, idle_s: float,
        full_audit_s: float | None = None) -> dict[str, Any]:
    """``full_audit_s`` makes the daemon re-read everything (the whole routing table) that
    often, so that trials overlap full re-reads."""
    env = {"TNA_FULL_AUDIT_S": str(full_audit_s)} if full_audit_s else None
    with Testbed(prefix="tnaenf") as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        load_s = load_routes(bed, t, routes, routes6)
        d = DaemonProcess(t.r, env=env)
        start = d.wait(lambda e: e["event"] == "reconcile" and "start" in e["why"])
        flood = Flood(t)
        flood.start()
        try:
            with netns.entered(t.r):
                nft = Nft()
            results = [trial(t, d, nft, flood, during_resync=i % 2 == 1) for i in range(trials)]
            wait_for(lambda: _on_fast_path(t, flood), timeout=10, what="fast path at the end")
            cpu = cpu_percent(d.proc.pid, idle_s) if idle_s else None
            errors = d.errors()
            audits = [e["ms"] for e in d.lines if e["event"] == "reconcile"
                      and "audit" in e["why"]]
        finally:
            flood.close()
            d.stop()
    delays = sorted(r["enforce_ms"] for r in results)
    restricts = sorted(r["restrict_ms"] for r in results if r["restrict_ms"] is not None)

    def pct(values: list[float], q: float) -> float:
        return round(values[min(len(values) - 1, int(len(values) * q))], 3) if values else 0.0
    return {"routes_v4": routes, "routes_v6": routes6, "route_load_s": round(load_s, 2),
            "trials": trials, "rate_pps": RATE_PPS, "bound_ms": BOUND_MS,
            "enforce_p50_ms": round(statistics.median(delays), 3),
            "enforce_p99_ms": pct(delays, 0.99), "enforce_max_ms": delays[-1],
            "restrict_p50_ms": pct(restricts, 0.5), "restrict_p99_ms": pct(restricts, 0.99),
            "leaked_after_bound": sum(r["leaked_after_bound"] for r in results),
            "trials_during_full_resync": sum(r["during_full_resync"] for r in results),
            "start_cycle_ms": start["ms"], "full_audits": len(audits),
            "full_audit_ms_max": max(audits, default=None),
            "idle_cpu_percent": None if cpu is None else round(cpu, 2), "idle_seconds": idle_s,
            "daemon_errors": errors, "per_trial": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tna.bench.enforce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--routes", type=int, default=100_000)
    ap.add_argument("--routes6", type=int, default=10_000)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds of CPU measurement")
    ap.add_argument("--full-audit", type=float, default=None, metavar="SECONDS",
                    help="make the daemon re-read everything this often (default: its own)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out = run(args.trials, args.routes, args.routes6, args.idle, args.full_audit)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print({k: v for k, v in out.items() if k != "per_trial"})
    ok = (out["enforce_p99_ms"] <= BOUND_MS and out["leaked_after_bound"] == 0
          and (out["idle_cpu_percent"] or 0.0) < 2.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
