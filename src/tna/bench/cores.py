"""Results of the "both CPUs" phase: 1 CPU against N CPUs, and the scaling factor.

Role in the flow: ``multicore`` fills :class:`CoreResult` s (one per scenario, mode and CPU
count, raw samples with the per-CPU deliveries); everything derived here comes from the
samples alone (no root), so ``report`` can render a JSON file of an earlier run again.  The
scaling factor of a run is its N-CPU rate over its own 1-CPU rate: the two are measured back
to back in the same topology, so slow drifts of a shared machine hit both.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class CoreSample:
    """One timed window with the traffic source on ``CoreResult.cpus``."""

    pps: float  # delivered at the sink, all CPUs together
    per_cpu: dict[str, float] = field(default_factory=dict)  # CPU -> pps the sink took there
    forwarded_per_cpu: dict[str, float] = field(default_factory=dict)  # TNA: fast-path
    #                                                           forwards per second, per CPU
    fast_path: float | None = None  # TNA: share of the ingress packets the fast path forwarded
    offered_pps: float | None = None  # what the sources offered meanwhile, together
    cpu_other: float | None = None  # share of the used CPUs' time other tasks took
    cpu_ns: float | None = None  # CPU time the benchmark's own tasks spent per delivered
    #                              packet (sources, with the softirqs they run; ksoftirqd)

    def share(self, cpu: int) -> float:
        """The share of the deliveries that happened on ``cpu``."""
        total = sum(self.per_cpu.values())
        return self.per_cpu.get(str(cpu), 0.0) / total if total else 0.0


@dataclass
class CoreResult:
    """All runs of one (scenario, frame size, mode) with the source on ``cpus``."""

    scenario: str
    size: int
    mode: str
    cpus: list[int]
    samples: list[CoreSample] = field(default_factory=list)
    status: str = "ok"  # ok | error
    note: str = ""
    source: str = "skb"

    @property
    def n(self) -> int:
        return len(self.cpus)

    @property
    def pps(self) -> list[float]:
        return [s.pps for s in self.samples]

    @property
    def mpps(self) -> float | None:
        return statistics.median(self.pps) / 1e6 if self.ok else None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and bool(self.samples)

    def min_share(self) -> float | None:
        """The least loaded CPU's share of the deliveries (median over runs): about 1/N when
        the work is spread, 0 when one CPU did it all."""
        if not self.ok:
            return None
        return statistics.median(min(s.share(c) for c in self.cpus) for s in self.samples)

    def fast_path(self) -> float | None:
        vals = [s.fast_path for s in self.samples if s.fast_path is not None]
        return statistics.median(vals) if vals else None

    def min_forward_share(self) -> float | None:
        """TNA: the least busy CPU's share of the fast path's forwards (median over runs)."""
        shares = []
        for s in self.samples:
            total = sum(s.forwarded_per_cpu.values())
            if total:
                shares.append(min(s.forwarded_per_cpu.get(str(c), 0.0) for c in self.cpus)
                              / total)
        return statistics.median(shares) if shares else None

    def cpu_other(self) -> float | None:
        vals = [s.cpu_other for s in self.samples if s.cpu_other is not None]
        return max(vals) if vals else None

    def cpu_ns(self) -> float | None:
        vals = [s.cpu_ns for s in self.samples if s.cpu_ns]
        return statistics.median(vals) if vals and self.ok else None


def rows(results: list[CoreResult]) -> list[dict[str, Any]]:
    """One row per (scenario, size, mode): 1-CPU and N-CPU Mpps (median, min, max), the
    scaling factor (median and range of the per-run ratios) and the evidence of spreading.

    ``efficiency`` is the CPU time per packet on 1 CPU over that on N: 1.0 when every added
    CPU forwards as much as the first, below 1.0 when CPUs slow each other down (a shared
    lock, a bouncing cache line).  Unlike the rate it does not depend on how much of the
    CPUs other tasks left the benchmark, so on a shared machine it is the steadier answer."""
    out = []
    keys = list(dict.fromkeys((r.scenario, r.size, r.mode, r.source) for r in results))
    for scenario, size, mode, source in keys:
        group = [r for r in results if (r.scenario, r.size, r.mode, r.source)
                 == (scenario, size, mode, source)]
        one = next((r for r in group if r.n == 1), None)
        many = max(group, key=lambda r: r.n)
        if one is None or many is one:
            continue
        ratios = [b / a for a, b in zip(one.pps, many.pps, strict=False) if a > 0]
        one_ns, many_ns = one.cpu_ns(), many.cpu_ns()
        out.append({
            "scenario": scenario, "size": size, "mode": mode, "source": source,
            "cpus": many.cpus,
            "one_mpps": one.mpps, "one_runs": _range(one.pps),
            "many_mpps": many.mpps, "many_runs": _range(many.pps),
            "scaling": statistics.median(ratios) if ratios and one.ok and many.ok else None,
            "scaling_runs": [min(ratios), max(ratios)] if ratios else None,
            "one_cpu_ns": one_ns, "many_cpu_ns": many_ns,
            "efficiency": one_ns / many_ns if one_ns and many_ns else None,
            "min_cpu_share": many.min_share(),
            "min_forward_share": many.min_forward_share(),
            "fast_path": many.fast_path(),
            "cpu_other": _max(one.cpu_other(), many.cpu_other()),
            "note": "; ".join(r.note for r in (one, many) if r.note),
        })
    return out


def _range(pps: list[float]) -> list[float] | None:
    return [min(pps) / 1e6, max(pps) / 1e6] if pps else None


def _max(a: float | None, b: float | None) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    return max(vals) if vals else None


def to_json(results: list[CoreResult]) -> dict[str, Any]:
    return {"results": [asdict(r) for r in results], "summary": rows(results)}


def from_json(doc: dict[str, Any] | None) -> list[CoreResult]:
    if not doc:
        return []
    return [CoreResult(r["scenario"], r["size"], r["mode"], r["cpus"],
                       [CoreSample(**s) for s in r["samples"]], r["status"], r["note"],
                       r["source"])
            for r in doc.get("results", [])]
