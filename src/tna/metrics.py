"""Prometheus metrics: the fast path's counters, and the daemon's reconciliations.

Role in the flow: read-only, beside the daemon.  ``tna run --metrics ADDRESS:PORT`` serves
:func:`registry` over HTTP (prometheus-client's server, on a thread started after the CLI
entered the namespace, so it listens and reads inside it); ``tna stats --format prometheus``
prints the counter part once, for node-exporter's textfile collector.

Counters are read from the kernel at scrape time and exported raw: they only grow from their
creation (``tna_counters_created_timestamp_seconds``), whatever ``tna stats --reset`` recorded.
Names follow the Prometheus conventions: ``tna_<what>_<unit>_total``, bytes and seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tna import counters, reasons
from tna.counters import RuleTables
from tna.datapath import liberal as liberal_datapath
from tna.datapath import status

# counter name in tna_stats -> (metric stem, help); punts are one family with a reason label
VERDICT_METRICS = {
    "forwarded": ("tna_forwarded", "routed by the fast path, counted on the ingress interface"),
    "bridged": ("tna_bridged", "switched by the fast path between bridge ports, counted on the "
                "ingress interface"),
    "transmitted": ("tna_transmitted", "sent by the fast path, counted on the egress "
                    "interface"),
    "fw_dropped": ("tna_firewall_dropped", "dropped by a forward-hook firewall rule or policy "
                   "in the fast path, counted on the ingress interface"),
    "nat_original": ("tna_nat_original", "NATed by the fast path from conntrack's entry, "
                     "original direction (also counted as forwarded), on the ingress interface"),
    "nat_reply": ("tna_nat_reply", "NATed by the fast path from conntrack's entry, reply "
                  "direction (also counted as forwarded), on the ingress interface"),
}
PUNT_HELP = ("handed to Linux (XDP_PASS) by the fast path, by interface and reason; "
             "tna_reason_info and 'tna stats --describe' explain each reason")
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                     10.0)
RESYNC_TRIGGERS = ("periodic", "sighup", "overrun")


class FastPathCollector(Collector):
    """The kernel's counters, rule counters and attached programs, read at every scrape."""

    def __init__(self, tables: Callable[[], RuleTables | None],
                 marks: Callable[[], dict[str, int] | None] | None = None) -> None:
        self.tables = tables  # the firewall tables that name rule counters (the daemon's plan)
        self.marks = marks or (lambda: None)  # tna run --tcp-liberal: the daemon's marks

    def collect(self) -> Iterator[Metric]:
        raw = counters.read_raw()
        yield from _counter_families(raw)
        yield _reason_info()
        tables = self.tables()
        if tables is not None and raw.created is not None:
            yield from _rule_families(counters.rule_rows(tables, since_reset=False))
        yield from _program_families()
        yield from _liberal_families(liberal_datapath.read_stats(), self.marks())


def _liberal_families(requests: tuple[int, int] | None,
                      marks: dict[str, int] | None) -> Iterator[Metric]:
    """tna run --tcp-liberal: the programs' requests (and those a full ring lost), and the
    daemon's ctnetlink updates by result."""
    asked = CounterMetricFamily("tna_tcp_liberal_requests", "Requests the fast path made to "
                                "mark a TCP connection liberal, by outcome (queued, or lost "
                                "to a full ring).", labels=["outcome"])
    if requests is not None:
        asked.add_metric(["queued"], requests[0])
        asked.add_metric(["lost"], requests[1])
    yield asked
    done = CounterMetricFamily("tna_tcp_liberal_marks", "Conntrack entries the daemon was "
                               "asked to mark liberal or to close after their liberal side's "
                               "reset, by result (marked, closed, gone, failed, repeated).",
                               labels=["result"])
    for result, n in (marks or {}).items():
        done.add_metric([result], n)
    yield done


def _counter_families(raw: counters.Readout) -> Iterator[Metric]:
    fams: dict[str, CounterMetricFamily] = {}
    for name, (stem, text) in VERDICT_METRICS.items():
        fams[name + "/p"] = CounterMetricFamily(f"{stem}_packets", f"Packets {text}.",
                                                labels=["interface"])
        fams[name + "/b"] = CounterMetricFamily(f"{stem}_bytes", f"Bytes {text}.",
                                                labels=["interface"])
    punt_p = CounterMetricFamily("tna_punted_packets", f"Packets {PUNT_HELP}.",
                                 labels=["interface", "reason"])
    punt_b = CounterMetricFamily("tna_punted_bytes", f"Bytes {PUNT_HELP}.",
                                 labels=["interface", "reason"])
    for ifindex, row in sorted(raw.rows.items()):
        if counters.is_phantom(ifindex, row):
            continue
        # slot 0 counts frames from ports without a TNA entry: no interface to name
        ifname = counters.ifname(ifindex) if ifindex else ""
        for name, c in row.items():
            if name in VERDICT_METRICS:
                if ifindex == 0:
                    continue
                fams[name + "/p"].add_metric([ifname], c.packets)
                fams[name + "/b"].add_metric([ifname], c.bytes)
            else:
                punt_p.add_metric([ifname, name], c.packets)
                punt_b.add_metric([ifname, name], c.bytes)
    yield from fams.values()
    yield punt_p
    yield punt_b
    created = GaugeMetricFamily("tna_counters_created_timestamp_seconds",
                                "When the fast path's counters were created (Unix time).")
    if raw.created is not None:
        created.add_metric([], raw.created)
    yield created


def _reason_info() -> Metric:
    info = InfoMetricFamily("tna_reason", "What each counter reason means and the "
                            "setting that would change it.",
                            labels=["reason", "kind", "description", "setting"])
    for name, r in reasons.REASONS.items():
        info.add_metric([name, r.kind, r.description, r.setting or ""], {})
    return info


def _rule_families(rows: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["family", "table", "chain", "handle"]
    packets = CounterMetricFamily("tna_firewall_rule_packets", "Packets the fast path "
                                  "accepted or dropped under this netfilter rule.", labels=labels)
    nbytes = CounterMetricFamily("tna_firewall_rule_bytes", "Bytes the fast path accepted or "
                                 "dropped under this netfilter rule.", labels=labels)
    for r in rows:
        if "stale" in r:
            continue
        key = [str(r["family"]), str(r["table"]), str(r["chain"]), str(r["handle"])]
        packets.add_metric(key, r["packets"])
        nbytes.add_metric(key, r["bytes"])
    yield packets
    yield nbytes


def _program_families() -> Iterator[Metric]:
    info = InfoMetricFamily("tna_program", "The TNA program attached to an interface: mode "
                            "and load-time features.", labels=["interface"])
    insns = GaugeMetricFamily("tna_program_instructions", "Translated BPF instructions of the "
                              "program attached to an interface.", labels=["interface"])
    for a in status.attached():
        name = counters.ifname(a.ifindex)
        info.add_metric([name], {"mode": a.mode, "prog_id": str(a.prog_id),
                                 "features": ",".join(a.features.names())})
        insns.add_metric([name], a.xlated_insns)
    yield info
    yield insns


class DaemonMetrics:
    """What ``tna run`` does: reconciliations by result, their duration by phase, resyncs.
    The daemon calls :meth:`observe` after every reconciliation."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.reconciles = Counter("tna_reconciles", "Reconciliations of the fast path with the "
                                  "configuration, by result.", ["result"], registry=registry)
        self.duration = Histogram("tna_reconcile_duration_seconds", "Time a reconciliation "
                                  "took, by phase (read: introspection, plan, apply: data path; "
                                  "total).", ["phase"], registry=registry,
                                  buckets=RECONCILE_BUCKETS)
        self.resyncs = Counter("tna_resyncs", "Full re-reads of the configuration, by trigger.",
                               ["trigger"], registry=registry)
        self.last_success = Gauge("tna_last_reconcile_success", "1 if the last reconciliation "
                                  "succeeded, 0 if it failed.", registry=registry)
        self.last_time = Gauge("tna_last_reconcile_timestamp_seconds", "When the last "
                               "reconciliation ended (Unix time).", registry=registry)
        for result in ("ok", "error"):
            self.reconciles.labels(result)
        for trigger in RESYNC_TRIGGERS:
            self.resyncs.labels(trigger)

    def observe(self, why: set[str], ok: bool, phases: dict[str, float]) -> None:
        self.reconciles.labels("ok" if ok else "error").inc()
        for phase, seconds in phases.items():
            self.duration.labels(phase).observe(seconds)
        for trigger in RESYNC_TRIGGERS:
            if trigger in why:
                self.resyncs.labels(trigger).inc()
        self.last_success.set(1 if ok else 0)
        self.last_time.set(time.time())


def registry(tables: Callable[[], RuleTables | None],
             marks: Callable[[], dict[str, int] | None] | None = None) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(FastPathCollector(tables, marks))
    return reg


def exposition(tables: RuleTables | None) -> str:
    """The counters once, in the text format (``tna stats --format prometheus``)."""
    return generate_latest(registry(lambda: tables)).decode()


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``ADDRESS:PORT`` or ``[IPv6]:PORT``; without an address, 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--metrics {text}: expected [ADDRESS:]PORT") from None
    if not 0 < number < 65536:
        raise ValueError(f"--metrics {text}: port out of range")
    return host, number


def serve(address: str, tables: Callable[[], RuleTables | None],
          marks: Callable[[], dict[str, int] | None] | None = None) -> DaemonMetrics:
    """Serve the metrics over HTTP on a thread; returns the daemon's part to update."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    reg = registry(tables, marks)
    daemon = DaemonMetrics(reg)
    try:
        start_http_server(port, addr=host, registry=reg)
    except OSError as e:
        raise ValueError(f"--metrics {address}: cannot listen: {e.strerror or e}") from None
    return daemon
