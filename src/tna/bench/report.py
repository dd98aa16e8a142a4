"""Benchmark results: statistics, JSON, the Markdown tables and the PNG chart.

Role in the flow: the runner fills a :class:`Report` with raw per-run samples; everything
derived (medians, ns/packet, spread, TNA/Linux and TNA/limit ratios, acceptance verdicts) is
computed here, from the samples alone, so the unit tests can check it without root and a JSON
file from an earlier run can be re-rendered.  matplotlib is optional: without it the chart is
skipped with a message.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# Mode order for tables and the chart.
MODE_ORDER = ("null", "linux", "linux-no-brnf", "tna", "fib", "sol")
MODE_LABEL = {"null": "null (generator -> drop)", "linux": "Linux", "tna": "TNA",
              "linux-no-brnf": "Linux, br_netfilter off", "fib": "bare XDP fib router",
              "sol": "speed of light"}

# Acceptance goals of the benchmark issue, checked on the 64-byte rows.
GOALS = (
    ("router-v4", "tna", "linux", 2.4, "TNA >= 2.4x Linux, IPv4 routing"),
    ("router-v4", "tna", "sol", 0.70, "TNA >= 70% of the speed-of-light reference, IPv4"),
    ("bridge", "tna", "linux", 3.0, "bridge >= 3x the Linux bridge (br_netfilter on)"),
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


def ns_per_packet(pps: float | None) -> float | None:
    return 1e9 / pps if pps else None


# ---- data ------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One timed window: packets per second delivered at the sink."""

    pps: float
    offered_pps: float | None = None  # what the generator injected meanwhile
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

    def result(self, scenario: str, size: int, mode: str) -> Result | None:
        return next((r for r in self.results
                     if (r.scenario, r.size, r.mode) == (scenario, size, mode)), None)

    def modes(self) -> list[str]:
        """Every mode measured: the standard ones in their order, then the rest (variants)."""
        seen = [r.mode for r in self.results]
        return [m for m in MODE_ORDER if m in seen] + \
            list(dict.fromkeys(m for m in seen if m not in MODE_ORDER))

    def groups(self) -> list[tuple[str, int]]:
        """(scenario, size) pairs in the order they were measured."""
        out: list[tuple[str, int]] = []
        for r in self.results:
            if (r.scenario, r.size) not in out:
                out.append((r.scenario, r.size))
        return out

    def mpps(self, scenario: str, size: int, mode: str) -> float | None:
        r = self.result(scenario, size, mode)
        return r.mpps if r is not None and r.status == "ok" else None


# ---- JSON ------------------------------------------------------------------------------------

def to_json(report: Report) -> dict[str, Any]:
    """Raw samples plus every derived number, so readers need not recompute."""
    results = []
    for r in report.results:
        d = asdict(r)
        d.update(mpps=r.mpps, ns_per_packet=r.ns, spread=r.spread if r.measured else None,
                 offered_mpps=r.offered_mpps, fast_path=r.fast_path, cpu_other=r.cpu_other)
        results.append(d)
    return {"meta": report.meta, "scenarios": report.scenarios, "results": results,
            "summary": summary(report), "goals": goals(report),
            "micro": [asdict(m) for m in report.micro],
            "profile": [asdict(p) for p in report.profile]}


def from_json(doc: dict[str, Any]) -> Report:
    results = [Result(r["scenario"], r["size"], r["mode"],
                      [Sample(**s) for s in r["samples"]], r["status"], r["note"])
               for r in doc["results"]]
    micro = [MicroResult(**m) for m in doc.get("micro", [])]
    profile = [ProgProfile(**p) for p in doc.get("profile", [])]
    return Report(doc.get("meta", {}), doc.get("scenarios", {}), results, micro, profile)


def dumps(report: Report) -> str:
    return json.dumps(to_json(report), indent=2) + "\n"


# ---- derived tables --------------------------------------------------------------------------

def summary(report: Report) -> list[dict[str, Any]]:
    """One row per (scenario, size): each mode's Mpps and the ratios that matter."""
    rows = []
    for scenario, size in report.groups():
        row: dict[str, Any] = {"scenario": scenario, "size": size}
        for mode in MODE_ORDER:
            row[mode] = report.mpps(scenario, size, mode)
        tna = report.result(scenario, size, "tna")
        row["tna_note"] = tna.note if tna is not None and tna.status != "ok" else ""
        row["tna_vs_linux"] = ratio(row["tna"], row["linux"])
        row["tna_vs_limit"] = ratio(row["tna"], row["sol"])
        row["tna_vs_fib"] = ratio(row["tna"], row["fib"])
        row["limit_vs_linux"] = ratio(row["sol"], row["linux"])
        rows.append(row)
    return rows


def goals(report: Report) -> list[dict[str, Any]]:
    """The issue's acceptance goals on the 64-byte frames: value, target, met (None: n/a)."""
    out = []
    for scenario, mode, versus, target, text in GOALS:
        value = ratio(report.mpps(scenario, 64, mode), report.mpps(scenario, 64, versus))
        out.append({"goal": text, "scenario": scenario, "target": target, "value": value,
                    "met": None if value is None else value >= target})
    return out


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
        rows.append([s["scenario"], str(s["size"]), fmt_mpps(s["linux"]), tna,
                     fmt_mpps(s["fib"]), fmt_mpps(s["sol"]), fmt_mpps(s["null"]),
                     fmt_ratio(s["tna_vs_linux"]), fmt_pct(s["tna_vs_limit"]),
                     fmt_pct(s["tna_vs_fib"]), fmt_ratio(s["limit_vs_linux"])])
    return _table(["scenario", "frame B", "Linux Mpps", "TNA Mpps", "fib ref. Mpps",
                   "limit Mpps", "null Mpps", "TNA/Linux", "TNA/limit", "TNA/fib ref.",
                   "limit/Linux"], rows)


def detail_table(report: Report) -> str:
    rows = []
    for scenario, size in report.groups():
        null = report.result(scenario, size, "null")
        null_ns = null.ns if null is not None and null.status == "ok" else None
        for mode in report.modes():
            r = report.result(scenario, size, mode)
            if r is None:
                continue
            if not r.measured:
                rows.append([scenario, str(size), mode, r.note or r.status] + ["-"] * 7)
                continue
            path = r.ns - null_ns if r.ns is not None and null_ns is not None and \
                mode != "null" else None
            runs = f"{min(r.pps) / 1e6:.2f}-{max(r.pps) / 1e6:.2f}"
            note = r.note if r.status == "ok" else f"**{r.status}**: {r.note}"
            rows.append([scenario, str(size), mode, fmt_mpps(r.mpps), runs,
                         fmt_pct(r.spread, 1), fmt_ns(r.ns), fmt_ns(path),
                         fmt_pct(r.fast_path, 1) if r.fast_path is not None else "",
                         fmt_pct(r.cpu_other, 1), note])
    return _table(["scenario", "frame B", "mode", "Mpps", "runs min-max", "spread", "ns/pkt",
                   "path ns", "fast path", "other tasks", "note"], rows)


def _verdicts(m: MicroResult) -> str:
    return ", ".join(f"{k} {v / m.iterations:.0%}" if v != m.iterations else k
                     for k, v in sorted(m.verdicts.items()))


def micro_table(report: Report) -> str:
    rows = [[m.scenario, m.program, ", ".join(m.features) or "-",
             str(m.xlated_insns) if m.xlated_insns is not None else "-",
             f"{m.ns_run:.0f}", fmt_ns(m.ns_net), _verdicts(m)] for m in report.micro]
    return _table(["scenario", "program", "features", "xlated insns", "ns/run",
                   "ns/pkt (- empty program)", "verdict"], rows)


def path_ns(report: Report, scenario: str, size: int, mode: str) -> float | None:
    """ns/packet of ``mode`` minus the null case: what the DUT's path costs."""
    r, null = report.result(scenario, size, mode), report.result(scenario, size, "null")
    if r is None or null is None or r.ns is None or null.ns is None or mode == "null":
        return None
    return r.ns - null.ns


def profile_table(report: Report) -> str:
    rows = []
    for p in report.profile:
        path = path_ns(report, p.scenario, p.size, p.mode)
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
        met = {True: "met", False: "**missed**", None: "not measurable"}[g["met"]]
        rows.append([g["goal"], target, value, met])
    return _table(["goal (64-byte frames)", "target", "measured", "verdict"], rows)


def markdown(report: Report) -> str:
    m = report.meta
    parts = [
        f"Run {m.get('date', '?')} on {m.get('machine', '?')}, kernel {m.get('kernel', '?')}; "
        f"serial mode on CPU {m.get('cpu', '?')}; {m.get('runs', '?')} run(s) of "
        f"{m.get('seconds', '?')} s after {m.get('warmup', '?')} s warm-up, median.",
        "",
        "Scenarios: " + "; ".join(f"`{k}` {v}" for k, v in report.scenarios.items()) + ".",
        "",
        summary_table(report),
        "",
        goals_table(report),
        "",
        detail_table(report),
    ]
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
    ax.set_title(f"tna bench - serial mode, one CPU ({report.meta.get('kernel', '')})")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(modes),
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None
