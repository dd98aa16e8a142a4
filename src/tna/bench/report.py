"""Benchmark results: statistics, JSON, the Markdown tables and the PNG chart.

Role in the flow: the runner fills a :class:`Report` with raw per-run samples; everything
derived (medians, ns/packet, spread, TNA/Linux and TNA/limit ratios, acceptance verdicts) is
computed here, from the samples alone, so the unit tests can check it without root and a JSON
file from an earlier run can be re-rendered.  matplotlib is optional: without it the chart is
skipped with a message.

Two kinds of numbers: *end to end* (e2e) is what the sink receives, so it includes the traffic
source's and the sink's own cost; *path* ns is a mode's ns/packet minus the ``null`` mode's
(source straight into a drop on the DUT's ingress), the cost of the device under test alone.
A slower source adds the same ns to every mode and pulls e2e ratios towards 1; path ratios
do not move with the source, so the acceptance goals are judged on them.  Every result names
its traffic source; the report's own source (``meta["source"]``) is the one its tables show,
results from the other source appear in the comparison table only.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tna.bench import cores
from tna.bench.cores import CoreResult

# Mode order for tables and the chart.
MODE_ORDER = ("null", "null-tc", "linux", "linux-no-brnf", "xdp-pass", "tna", "fib", "sol")
MODE_LABEL = {"null": "null (source -> drop)", "null-tc": "null, tc sink", "linux": "Linux",
              "tna": "TNA",
              "linux-no-brnf": "Linux, br_netfilter off", "xdp-pass": "Linux + XDP_PASS",
              "fib": "bare XDP fib router", "sol": "speed of light"}
SOURCE_LABEL = {"live": "live XDP frames", "skb": "skbs via bpf_clone_redirect()",
                "relay": "skbs relayed as XDP frames by bench_relay"}
PUNT_ALL = "punt-all"

# Acceptance goals (issues 17 and 13), checked on the 64-byte rows (path cost).
GOALS = (
    ("router-v4", "tna", "linux", 3.0, "TNA >= 3x Linux, IPv4 routing"),
    ("router-v4", "tna", "sol", 0.80, "TNA >= 80% of the speed-of-light reference, IPv4"),
    ("router-v6", "tna", "linux", 2.5, "TNA >= 2.5x Linux, IPv6 routing"),
    ("bridge", "tna", "linux", 4.5, "bridge >= 4.5x the Linux bridge (br_netfilter on)"),
    ("firewall", "tna", "linux", 4.0, "nft, 50 rules >= 4x Linux"),
    ("nat-tcp", "tna", "linux", 3.0, "established TCP through NAT >= 3x Linux"),
    ("nat-udp", "tna", "linux", 3.0, "established UDP through NAT >= 3x Linux"),
)


# ---- statistics ------------------------------------------------------------------------------

def median(xs: Sequence[float]) -> float:
    if not xs:
        raise ValueError("median of nothing")
    return float(statistics.median(xs))


def spread(xs: Sequence[float]) -> float:
    """(max - min) / median: how far apart the runs were, as a fraction of the result."""
    if not xs:
        return 0.0
    m = median(xs)
    return (max(xs) - min(xs)) / m if m else 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def path_ratio(slow_ns: float | None, fast_ns: float | None) -> float | None:
    """How many times cheaper the ``fast_ns`` path is; None unless both costs are positive
    (a path at or below the null mode's cost is noise, not a speed-up)."""
    if slow_ns is None or fast_ns is None or slow_ns <= 0 or fast_ns <= 0:
        return None
    return slow_ns / fast_ns


def ns_per_packet(pps: float | None) -> float | None:
    return 1e9 / pps if pps else None


# ---- data ------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One timed window: packets per second delivered at the sink."""

    pps: float
    delivered: int = 0  # packets the sink counted in the window
    offered_pps: float | None = None  # what the source offered meanwhile
    fast_path: float | None = None  # TNA mode: share of ingress packets the fast path forwarded
    punts: dict[str, int] = field(default_factory=dict)
    cpu_other: float | None = None  # share of the measured CPU other tasks used meanwhile
    steal: float | None = None  # share the hypervisor stole


@dataclass
class Result:
    """All runs of one (scenario, frame size, mode)."""

    scenario: str
    size: int
    mode: str
    samples: list[Sample] = field(default_factory=list)
    status: str = "ok"  # ok | n/a | invalid (e.g. TNA mostly punted) | error
    note: str = ""
    source: str = "live"  # the traffic source (runs before sources existed used live frames)

    @property
    def measured(self) -> bool:
        return self.status in ("ok", "invalid") and bool(self.samples)

    @property
    def pps(self) -> list[float]:
        return [s.pps for s in self.samples]

    @property
    def median_pps(self) -> float | None:
        return median(self.pps) if self.measured else None

    @property
    def mpps(self) -> float | None:
        m = self.median_pps
        return m / 1e6 if m is not None else None

    @property
    def ns(self) -> float | None:
        return ns_per_packet(self.median_pps)

    @property
    def spread(self) -> float:
        return spread(self.pps)

    @property
    def offered_mpps(self) -> float | None:
        vals = [s.offered_pps for s in self.samples if s.offered_pps]
        return median(vals) / 1e6 if vals else None

    @property
    def fast_path(self) -> float | None:
        vals = [s.fast_path for s in self.samples if s.fast_path is not None]
        return median(vals) if vals else None

    @property
    def cpu_other(self) -> float | None:
        vals = [s.cpu_other for s in self.samples if s.cpu_other is not None]
        return max(vals) if vals else None


@dataclass
class MicroResult:
    """Program-only cost of one program through BPF_PROG_TEST_RUN."""

    scenario: str
    program: str  # "tna (loaded)", "tna (all features)", "speed of light", "empty", ...
    features: list[str]
    xlated_insns: int | None
    ns_run: float  # kernel-timed ns of one run, trimmed mean over the iterations
    ns_net: float | None  # minus the empty program's ns_run: the program's own cost
    iterations: int
    verdicts: dict[str, int] = field(default_factory=dict)


@dataclass
class ProgProfile:
    """In-situ cost of the programs on the path, from the kernel's BPF run-time statistics.

    Each value includes the statistics' own clock reads; the sink (a counter and a drop)
    costs almost nothing else, so "DUT - sink" estimates the DUT program's real cost.
    """

    scenario: str
    size: int
    mode: str
    ns: dict[str, float]  # "generator" / "dut" / "sink" -> ns per run, median of runs
    runs: list[dict[str, float]] = field(default_factory=list)
    source: str = "live"

    @property
    def dut_net(self) -> float | None:
        dut, sink = self.ns.get("dut"), self.ns.get("sink")
        return dut - sink if dut is not None and sink is not None else None


@dataclass
class Report:
    meta: dict[str, Any] = field(default_factory=dict)
    scenarios: dict[str, str] = field(default_factory=dict)  # name -> description
    results: list[Result] = field(default_factory=list)
    micro: list[MicroResult] = field(default_factory=list)
    profile: list[ProgProfile] = field(default_factory=list)
    cores: list[CoreResult] = field(default_factory=list)  # the "both CPUs" phase

    @property
    def source(self) -> str:
        """The traffic source of the main results (reports before sources: live frames)."""
        return str(self.meta.get("source", "live"))

    def sources(self) -> list[str]:
        """Every source with results: the main one first."""
        return list(dict.fromkeys([self.source] + [r.source for r in self.results]))

    def result(self, scenario: str, size: int, mode: str, source: str | None = None
               ) -> Result | None:
        want = (scenario, size, mode, source or self.source)
        return next((r for r in self.results
                     if (r.scenario, r.size, r.mode, r.source) == want), None)

    def main_results(self) -> list[Result]:
        return [r for r in self.results if r.source == self.source]

    def modes(self) -> list[str]:
        """Every mode measured: the standard ones in their order, then the rest (variants)."""
        seen = [r.mode for r in self.main_results()]
        return [m for m in MODE_ORDER if m in seen] + \
            list(dict.fromkeys(m for m in seen if m not in MODE_ORDER))

    def groups(self, source: str | None = None) -> list[tuple[str, int]]:
        """(scenario, size) pairs of one source's results, in the order they were measured."""
        out: list[tuple[str, int]] = []
        for r in self.results:
            if r.source == (source or self.source) and (r.scenario, r.size) not in out:
                out.append((r.scenario, r.size))
        return out

    def mpps(self, scenario: str, size: int, mode: str, source: str | None = None
             ) -> float | None:
        r = self.result(scenario, size, mode, source)
        return r.mpps if r is not None and r.status == "ok" else None

    def path(self, scenario: str, size: int, mode: str, source: str | None = None
             ) -> float | None:
        """ns/packet of ``mode`` minus the null mode's: what the DUT's path costs."""
        if mode.startswith("null"):
            return None
        r, null = (self.result(scenario, size, m, source) for m in (mode, "null"))
        if r is None or null is None or r.status != "ok" or null.status != "ok" \
                or r.ns is None or null.ns is None:
            return None
        return r.ns - null.ns


# ---- JSON ------------------------------------------------------------------------------------

def to_json(report: Report) -> dict[str, Any]:
    """Raw samples plus every derived number, so readers need not recompute."""
    results = []
    for r in report.results:
        d = asdict(r)
        d.update(mpps=r.mpps, ns_per_packet=r.ns,
                 path_ns=report.path(r.scenario, r.size, r.mode, r.source),
                 spread=r.spread if r.measured else None,
                 offered_mpps=r.offered_mpps, fast_path=r.fast_path, cpu_other=r.cpu_other)
        results.append(d)
    return {"meta": report.meta, "scenarios": report.scenarios, "results": results,
            "summary": summary(report), "goals": goals(report), "punt_all": punt_all(report),
            "comparison": comparison(report),
            "micro": [asdict(m) for m in report.micro],
            "profile": [asdict(p) for p in report.profile],
            "cores": cores.to_json(report.cores)}


def from_json(doc: dict[str, Any]) -> Report:
    results = [Result(r["scenario"], r["size"], r["mode"],
                      [Sample(**s) for s in r["samples"]], r["status"], r["note"],
                      r.get("source", "live"))
               for r in doc["results"]]
    micro = [MicroResult(**m) for m in doc.get("micro", [])]
    profile = [ProgProfile(**p) for p in doc.get("profile", [])]
    return Report(doc.get("meta", {}), doc.get("scenarios", {}), results, micro, profile,
                  cores.from_json(doc.get("cores")))


def dumps(report: Report) -> str:
    return json.dumps(to_json(report), indent=2) + "\n"


# ---- derived tables --------------------------------------------------------------------------

def summary(report: Report, source: str | None = None) -> list[dict[str, Any]]:
    """One row per (scenario, size): each mode's Mpps and path ns, and the ratios that matter.

    ``x_vs_y`` compares end-to-end rates; ``x_vs_y_path`` compares path costs (y's path ns
    over x's: how many times cheaper x's path is).
    """
    rows = []
    src = source or report.source
    for scenario, size in report.groups(src):
        row: dict[str, Any] = {"scenario": scenario, "size": size, "source": src}
        for mode in MODE_ORDER:
            row[mode] = report.mpps(scenario, size, mode, src)
            row[f"{mode}_path_ns"] = report.path(scenario, size, mode, src)
        tna = report.result(scenario, size, "tna", src)
        row["tna_note"] = tna.note if tna is not None and tna.status != "ok" else ""
        for name, a, b in (("tna_vs_linux", "tna", "linux"), ("tna_vs_limit", "tna", "sol"),
                           ("tna_vs_fib", "tna", "fib"), ("limit_vs_linux", "sol", "linux")):
            row[name] = ratio(row[a], row[b])
            row[f"{name}_path"] = path_ratio(row[f"{b}_path_ns"], row[f"{a}_path_ns"])
        rows.append(row)
    return rows


def goals(report: Report) -> list[dict[str, Any]]:
    """The issue's acceptance goals on the 64-byte frames, judged on path cost (the source's
    own cost taken out): value, the end-to-end value beside it, target, met (None: n/a)."""
    out = []
    for scenario, mode, versus, target, text in GOALS:
        size = _smallest_size(report, scenario)
        value = path_ratio(report.path(scenario, size, versus), report.path(scenario, size, mode))
        e2e = ratio(report.mpps(scenario, size, mode), report.mpps(scenario, size, versus))
        out.append({"goal": text, "scenario": scenario, "target": target, "value": value,
                    "e2e": e2e, "met": None if value is None else value >= target})
    return out


def _smallest_size(report: Report, scenario: str) -> int:
    """64 bytes, or the scenario's smallest frame when it cannot send 64 (a TCP ACK with
    timestamps is 66)."""
    sizes = [r.size for r in report.results if r.scenario == scenario]
    return 64 if not sizes or 64 in sizes else min(sizes)


def punt_all(report: Report) -> list[dict[str, Any]]:
    """Per source: what TNA attached costs traffic it hands to Linux, per packet.

    ``overhead_ns`` = TNA's e2e ns/packet minus Linux's (both see the same source, so the
    source's cost cancels); ``xdp_ns`` the part any XDP program on the ingress costs
    (``xdp-pass`` minus Linux), the rest is TNA's program up to its punt decision.
    ``conversion_ns`` = null minus null-tc: what native XDP on a veth costs an arriving frame
    before any program runs (an skb source's skb copied into an XDP buffer).
    """
    out = []
    for src in report.sources():
        for scenario, size in report.groups(src):
            if scenario != PUNT_ALL:
                continue
            r = {m: report.result(scenario, size, m, src)
                 for m in ("null", "null-tc", "linux", "xdp-pass", "tna")}
            ns = {m: (x.ns if x is not None and x.status == "ok" else None) for m, x in r.items()}
            tna = r["tna"]
            out.append({
                "source": src, "size": size, "linux_ns": ns["linux"],
                "xdp_pass_ns": ns["xdp-pass"], "tna_ns": ns["tna"],
                "overhead_ns": _minus(ns["tna"], ns["linux"]),
                "xdp_ns": _minus(ns["xdp-pass"], ns["linux"]),
                "conversion_ns": _minus(ns["null"], ns["null-tc"]),
                "tna_vs_linux": ratio(report.mpps(scenario, size, "tna", src),
                                      report.mpps(scenario, size, "linux", src)),
                "note": tna.note if tna is not None else ""})
    return out


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def comparison(report: Report) -> list[dict[str, Any]]:
    """(scenario, size, mode) measured with more than one source: Mpps and path ns of each."""
    srcs = report.sources()
    if len(srcs) < 2:
        return []
    rows = []
    for scenario, size in report.groups(srcs[1]):
        for mode in MODE_ORDER:
            per = {s: (report.mpps(scenario, size, mode, s), report.path(scenario, size, mode, s))
                   for s in srcs}
            if any(m is not None for m, _ in per.values()):
                rows.append({"scenario": scenario, "size": size, "mode": mode,
                             **{f"{s}_mpps": m for s, (m, _) in per.items()},
                             **{f"{s}_path_ns": p for s, (_, p) in per.items()}})
    return rows


# ---- Markdown --------------------------------------------------------------------------------

def fmt_mpps(v: float | None) -> str:
    return f"{v:.2f}" if v is not None else "-"


def fmt_ns(v: float | None) -> str:
    return f"{v:.0f}" if v is not None else "-"


def fmt_ratio(v: float | None) -> str:
    return f"{v:.2f}x" if v is not None else "-"


def fmt_pct(v: float | None, digits: int = 0) -> str:
    return f"{v * 100:.{digits}f}%" if v is not None else "-"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def summary_table(report: Report) -> str:
    rows = []
    for s in summary(report):
        tna = fmt_mpps(s["tna"]) if s["tna"] is not None else (s["tna_note"] or "-")
        rows.append([s["scenario"], str(s["size"]), fmt_mpps(s["null"]), fmt_mpps(s["linux"]),
                     tna, fmt_mpps(s["fib"]), fmt_mpps(s["sol"]),
                     fmt_ns(s["linux_path_ns"]), fmt_ns(s["tna_path_ns"]),
                     fmt_ns(s["sol_path_ns"]),
                     fmt_ratio(s["tna_vs_linux"]), fmt_ratio(s["tna_vs_linux_path"]),
                     fmt_pct(s["tna_vs_limit"]), fmt_pct(s["tna_vs_limit_path"]),
                     fmt_pct(s["tna_vs_fib"])])
    return _table(["scenario", "frame B", "null Mpps", "Linux Mpps", "TNA Mpps",
                   "fib ref. Mpps", "limit Mpps", "Linux path ns", "TNA path ns",
                   "limit path ns", "TNA/Linux e2e", "TNA/Linux path", "TNA/limit e2e",
                   "TNA/limit path", "TNA/fib ref. e2e"], rows)


def detail_table(report: Report) -> str:
    rows = []
    for scenario, size in report.groups():
        for mode in report.modes():
            r = report.result(scenario, size, mode)
            if r is None:
                continue
            if not r.measured:
                rows.append([scenario, str(size), mode, r.note or r.status] + ["-"] * 7)
                continue
            path = report.path(scenario, size, mode) if r.status == "ok" else None
            runs = f"{min(r.pps) / 1e6:.2f}-{max(r.pps) / 1e6:.2f}"
            note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
            rows.append([scenario, str(size), mode, fmt_mpps(r.mpps), runs,
                         fmt_pct(r.spread, 1), fmt_ns(r.ns), fmt_ns(path),
                         fmt_pct(r.fast_path, 1) if r.fast_path is not None else "",
                         fmt_pct(r.cpu_other, 1), note])
    return _table(["scenario", "frame B", "mode", "Mpps", "runs min-max", "spread", "ns/pkt",
                   "path ns", "fast path", "other tasks", "note"], rows)


def punt_all_table(report: Report) -> str:
    rows = [[p["source"], str(p["size"]), fmt_ns(p["linux_ns"]), fmt_ns(p["xdp_pass_ns"]),
             fmt_ns(p["tna_ns"]), fmt_ns(p["overhead_ns"]), fmt_ns(p["xdp_ns"]),
             fmt_ns(p["conversion_ns"]), fmt_ratio(p["tna_vs_linux"]), p["note"]]
            for p in punt_all(report)]
    return _table(["source", "frame B", "Linux ns/pkt", "Linux + XDP_PASS ns/pkt",
                   "TNA (all punted) ns/pkt", "TNA overhead ns", "XDP_PASS overhead ns",
                   "XDP on veth: null - null-tc ns", "TNA/Linux e2e", "TNA's counters"], rows)


def comparison_table(report: Report) -> str:
    srcs = report.sources()
    rows = [[c["scenario"], str(c["size"]), c["mode"]]
            + [f(c[f"{s}_{k}"]) for s in srcs for k, f in (("mpps", fmt_mpps),
                                                             ("path_ns", fmt_ns))]
            for c in comparison(report)]
    return _table(["scenario", "frame B", "mode"]
                  + [f"{s} {k}" for s in srcs for k in ("Mpps", "path ns")], rows)


def _verdicts(m: MicroResult) -> str:
    return ", ".join(f"{k} {v / m.iterations:.0%}" if v != m.iterations else k
                     for k, v in sorted(m.verdicts.items()))


def micro_table(report: Report) -> str:
    rows = [[m.scenario, m.program, ", ".join(m.features) or "-",
             str(m.xlated_insns) if m.xlated_insns is not None else "-",
             f"{m.ns_run:.0f}", fmt_ns(m.ns_net), _verdicts(m)] for m in report.micro]
    return _table(["scenario", "program", "features", "xlated insns", "ns/run",
                   "ns/pkt (- empty program)", "verdict"], rows)


def profile_table(report: Report) -> str:
    rows = []
    for p in report.profile:
        if p.source != report.source:
            continue
        path = report.path(p.scenario, p.size, p.mode)
        net = p.dut_net
        rest = path - net if path is not None and net is not None else None
        rows.append([p.scenario, str(p.size), p.mode, fmt_ns(p.ns.get("generator")),
                     fmt_ns(p.ns.get("dut")), fmt_ns(p.ns.get("sink")), fmt_ns(net),
                     fmt_ns(path), fmt_ns(rest)])
    return _table(["scenario", "frame B", "mode", "generator ns", "DUT program ns", "sink ns",
                   "DUT - sink", "path ns", "path - (DUT - sink)"], rows)


def goals_table(report: Report) -> str:
    rows = []
    for g in goals(report):
        target = f">= {g['target'] * 100:.0f}%" if g["target"] < 1 else f">= {g['target']}x"
        value = (fmt_pct(g["value"], 1) if g["target"] < 1 else fmt_ratio(g["value"])) \
            if g["value"] is not None else "n/a"
        e2e = fmt_pct(g["e2e"], 1) if g["target"] < 1 else fmt_ratio(g["e2e"])
        met = {True: "met", False: "**missed**", None: "not measurable"}[g["met"]]
        rows.append([g["goal"], target, value, e2e, met])
    return _table(["goal (64-byte frames)", "target", "path cost", "end to end",
                   "verdict (on path cost)"], rows)


def cores_table(report: Report) -> str:
    """The "both CPUs" phase: 1 CPU against N, per scenario and mode."""
    rows = []
    for r in cores.rows(report.cores):
        rows.append([r["scenario"], r["mode"], _runs(fmt_mpps(r["one_mpps"]), r["one_runs"]),
                     _runs(fmt_mpps(r["many_mpps"]), r["many_runs"]),
                     _runs(fmt_ratio(r["scaling"]), r["scaling_runs"]),
                     fmt_ns(r["one_cpu_ns"]), fmt_ns(r["many_cpu_ns"]),
                     fmt_pct(r["efficiency"]),
                     fmt_pct(r["min_cpu_share"]),
                     fmt_pct(r["min_forward_share"]) if r["mode"] == "tna" else "",
                     fmt_pct(r["cpu_other"]), r["note"]])
    n = max((len(r.cpus) for r in report.cores), default=2)
    return _table(["scenario", "mode", "1 CPU Mpps (runs)", f"{n} CPUs Mpps (runs)",
                   "scaling (runs)", "CPU ns/pkt, 1 CPU", f"CPU ns/pkt, {n} CPUs",
                   "efficiency", "least-used CPU's share of deliveries",
                   "its share of TNA's forwards", "other tasks", "note"], rows)


def _runs(median: str, runs: list[float] | None) -> str:
    """``median`` and, when the runs differed, their range."""
    if median == "-" or not runs or runs[0] == runs[1]:
        return median
    return f"{median} ({runs[0]:.2f}-{runs[1]:.2f})"


def source_line(report: Report) -> str:
    src = report.source
    why = report.meta.get("source_reason")
    return (f"Traffic source: **{src}** ({SOURCE_LABEL.get(src, src)}"
            + (f"; {why}" if why else "") + ").")


def markdown(report: Report) -> str:
    m = report.meta
    parts = [
        f"Run {m.get('date', '?')} on {m.get('machine', '?')}, kernel {m.get('kernel', '?')}; "
        f"serial mode on CPU {m.get('cpu', '?')}; {m.get('runs', '?')} run(s) of "
        f"{m.get('seconds', '?')} s after {m.get('warmup', '?')} s warm-up, median.",
        source_line(report) + " *e2e*: end to end, as the sink counts; *path ns*: ns/packet "
        "minus the null mode's (source and sink), the device under test's own cost.",
        "",
        "Scenarios: " + "; ".join(f"`{k}` {v}" for k, v in report.scenarios.items()) + ".",
        "",
        summary_table(report),
        "",
        goals_table(report),
        "",
        detail_table(report),
    ]
    if punt_all(report):
        parts += ["", "Punt-all: TNA attached, every frame handed to Linux, per source:", "",
                  punt_all_table(report)]
    if comparison(report):
        parts += ["", "The same scenarios with each traffic source (64-byte frames):", "",
                  comparison_table(report)]
    if report.cores:
        cpus = max((r.cpus for r in report.cores), key=len)
        parts += ["", f"Both CPUs: one traffic source per CPU ({', '.join(map(str, cpus))}), "
                  "a veth queue per CPU, 64-byte frames; each run measures 1 CPU and then all "
                  "of them back to back (docs/benchmarks.md, \"Both CPUs\"):", "",
                  cores_table(report)]
    if report.profile:
        parts += ["", profile_table(report)]
    if report.micro:
        parts += ["", micro_table(report)]
    return "\n".join(parts) + "\n"


# ---- chart -----------------------------------------------------------------------------------

def plot(report: Report, path: str) -> str | None:
    """Write the bar chart to ``path``; return why not when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'tna[plot]'): chart skipped"
    groups = report.groups()
    src = report.source
    modes = [mode for mode in report.modes()
             if any(report.mpps(s, z, mode) is not None for s, z in groups)]
    width = 0.8 / max(len(modes), 1)
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(groups) + 2), 5.2))
    for i, mode in enumerate(modes):
        xs, ys, lo, hi = [], [], [], []
        for g, (scenario, size) in enumerate(groups):
            r = report.result(scenario, size, mode)
            if r is None or r.status != "ok" or r.mpps is None:
                continue
            xs.append(g + (i - (len(modes) - 1) / 2) * width)
            ys.append(r.mpps)
            lo.append(r.mpps - min(r.pps) / 1e6)
            hi.append(max(r.pps) / 1e6 - r.mpps)
        bars = ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2,
                      label=MODE_LABEL.get(mode, mode))
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{s}\n{z} B" for s, z in groups], fontsize=8)
    ax.set_ylabel("delivered Mpps (median; bars: min-max of runs)")
    ax.set_title(f"tna bench - source: {src} ({SOURCE_LABEL.get(src, src)}) - serial mode, "
                 f"one CPU ({report.meta.get('kernel', '')})", fontsize=9)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(modes),
              frameon=False, title=f"mode (traffic source: {src})", title_fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
