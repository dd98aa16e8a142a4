"""tna bench --cpus 2, quickly: the "both CPUs" phase runs, its JSON has the expected shape,
and the sink's and the fast path's per-CPU counters show that both CPUs forwarded (and, the
control, that with one source only its CPU did).  Rates are not judged (machines vary)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tna import bench

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")]

MODES = ("null", "linux", "tna")


def test_two_cpus(tmp_path: Path, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--scenarios", "router-v4", "--sizes", "64", "--modes", ",".join(MODES),
                     "--runs", "1", "--seconds", "0.3", "--warmup", "0.2", "--cpus", "2",
                     "--retry-budget", "0", "--micro-iterations", "0", "--no-profile",
                     "--out", str(tmp_path), "--json", "--ns-prefix", prefix])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    cpus = doc["meta"]["cpus"]
    assert len(cpus) == 2 and cpus[0] == doc["meta"]["cpu"]
    results = {(r["mode"], len(r["cpus"])): r for r in doc["cores"]["results"]}
    assert set(results) == {(m, n) for m in MODES for n in (1, 2)}
    for (mode, n), r in results.items():
        assert r["status"] == "ok", f"{mode} on {n} CPU(s): {r['note']}"
        assert r["scenario"] == "router-v4" and r["size"] == 64 and r["cpus"] == cpus[:n]
        (sample,) = r["samples"]
        assert sample["pps"] > 0 and sample["cpu_ns"] > 0
        delivered = {int(c): v for c, v in sample["per_cpu"].items()}
        assert sum(delivered.values()) == pytest.approx(sample["pps"], rel=1e-6)
        if n == 1:  # control: the counters do tell CPUs apart
            assert delivered[cpus[0]] / sample["pps"] > 0.99, (mode, delivered)
        else:  # both CPUs delivered a real part of the packets
            assert all(delivered[c] / sample["pps"] > 0.05 for c in cpus), (mode, delivered)
    tna = results[("tna", 2)]["samples"][0]
    assert tna["fast_path"] >= 0.95
    forwarded = {int(c): v for c, v in tna["forwarded_per_cpu"].items()}
    assert all(forwarded[c] > 0 for c in cpus), forwarded  # TNA forwarded on both
    rows = {r["mode"]: r for r in doc["cores"]["summary"]}
    assert set(rows) == set(MODES)
    assert all(rows[m]["scaling"] > 0 and rows[m]["efficiency"] > 0 for m in MODES)
    assert "Both CPUs" in (tmp_path / "results.md").read_text()
