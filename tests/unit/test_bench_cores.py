"""tna bench's "both CPUs" numbers: scaling, efficiency, evidence, JSON and Markdown, from
hand-made samples (no root, no BPF)."""

from __future__ import annotations

import json

import pytest

from tna.bench import cores
from tna.bench import report as rep
from tna.bench.cores import CoreResult, CoreSample
from tna.bench.multicore import cpumask, pick_cpus
from tna.bench.report import Report


def _one(mpps: float, ns: float) -> CoreSample:
    return CoreSample(pps=mpps * 1e6, per_cpu={"1": mpps * 1e6, "0": 0.0}, cpu_ns=ns,
                      cpu_other=0.01)


def _two(mpps: float, ns: float, share0: float = 0.5) -> CoreSample:
    pps = mpps * 1e6
    return CoreSample(pps=pps, per_cpu={"1": pps * (1 - share0), "0": pps * share0},
                      forwarded_per_cpu={"1": pps * (1 - share0), "0": pps * share0},
                      fast_path=1.0, cpu_ns=ns, cpu_other=0.02)


def _results() -> list[CoreResult]:
    return [
        CoreResult("router-v4", 64, "linux", [1], [_one(1.0, 1000), _one(1.1, 1000)]),
        CoreResult("router-v4", 64, "linux", [1, 0], [_two(2.0, 1000), _two(2.0, 1050)]),
        CoreResult("router-v4", 64, "tna", [1], [_one(2.0, 500), _one(2.0, 500)]),
        CoreResult("router-v4", 64, "tna", [1, 0], [_two(3.0, 1000, 0.1), _two(4.0, 1000, 0.3)]),
    ]


def test_rows_scaling_efficiency_and_shares() -> None:
    linux, tna = cores.rows(_results())
    assert linux["scaling"] == pytest.approx((2.0 + 2.0 / 1.1) / 2)  # median of per-run ratios
    assert linux["scaling_runs"] == pytest.approx([2.0 / 1.1, 2.0])
    assert linux["one_runs"] == pytest.approx([1.0, 1.1])
    assert linux["efficiency"] == pytest.approx(1000 / 1025)
    assert linux["min_cpu_share"] == pytest.approx(0.5)
    assert linux["min_forward_share"] == pytest.approx(0.5)  # filled in by the samples here
    assert tna["scaling"] == pytest.approx(1.75)
    assert tna["efficiency"] == pytest.approx(0.5)  # twice the CPU per packet on two CPUs
    assert tna["min_cpu_share"] == pytest.approx(0.2)  # median of 10% and 30%
    assert tna["cpus"] == [1, 0]


def test_rows_need_both_counts_and_skip_failed_ones() -> None:
    only_one = [r for r in _results() if r.n == 1]
    assert cores.rows(only_one) == []
    results = _results()
    results[3].status, results[3].note = "invalid", "fast path forwarded only 10.0%"
    tna = cores.rows(results)[1]
    assert tna["many_mpps"] is None and tna["scaling"] is None and tna["efficiency"] is None
    assert "10.0%" in tna["note"]


def test_one_cpu_share_is_all_on_that_cpu() -> None:
    s = _one(1.0, 1000)
    assert s.share(1) == 1.0 and s.share(0) == 0.0
    assert CoreSample(pps=0.0).share(0) == 0.0


def test_report_json_round_trip_and_markdown() -> None:
    report = Report(meta={"date": "d", "machine": "m", "kernel": "k", "cpu": 1},
                    cores=_results())
    doc = json.loads(rep.dumps(report))
    assert [r["mode"] for r in doc["cores"]["summary"]] == ["linux", "tna"]
    again = rep.from_json(doc)
    assert again.cores == report.cores
    md = rep.markdown(again)
    assert "Both CPUs" in md and "| router-v4 | tna | 2.00 | 3.50 (3.00-4.00) | 1.75x" in md
    assert rep.from_json({"results": []}).cores == []  # reports before this phase


def test_pick_cpus() -> None:
    assert pick_cpus(2, 1, [0, 1]) == [1, 0]
    assert pick_cpus(1, 1, [0, 1]) == [1]
    assert pick_cpus(3, 0, [0, 1, 2, 3]) == [0, 3, 2]
    with pytest.raises(ValueError, match="may use 2 CPU"):
        pick_cpus(3, 1, [0, 1])
    with pytest.raises(ValueError, match=">= 1"):
        pick_cpus(0, 1, [0, 1])


def test_cpumask() -> None:
    assert cpumask(0) == "00000001"
    assert cpumask(1) == "00000002"
    assert cpumask(35) == "00000008,00000000"
