"""tna bench end to end, quickly: the harness works with whichever traffic source the host
allows (and names it), its generator sends what it should, and no namespace outlives a run,
even a failed one.  Numbers are not judged here (CI machines vary); only that every mode
produced one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testing.bench_gen import generated
from tna import bench
from tna.bench import frames
from tna.bench.frames import FrameSpec
from tna.bench.runner import Config, run_scenario
from tna.bench.scenarios import Router

pytestmark = pytest.mark.root

SPEC = FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.16.0")


def test_smoke(tmp_path: Path, prefix: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = bench.main(["--smoke", "--out", str(tmp_path), "--json", "--ns-prefix", prefix])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert json.loads(capsys.readouterr().out) == doc
    source = doc["meta"]["source"]
    assert source in ("live", "skb") and doc["meta"]["source_reason"]
    assert all(r["source"] == source for r in doc["results"])
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("Run ") and f"Traffic source: **{source}**" in md
    modes = {r["mode"]: r for r in doc["results"]}
    assert set(modes) == {"null", "linux", "tna", "fib", "sol"}
    for mode, r in modes.items():
        assert r["status"] == "ok", f"{mode}: {r['note']}"
        assert r["samples"] and all(s["pps"] > 0 for s in r["samples"]), mode
        assert r["mpps"] > 0 and r["ns_per_packet"] > 0
    assert modes["tna"]["fast_path"] >= 0.95  # else the TNA number is not TNA's
    assert rc == 0
    micro = {m["program"]: m for m in doc["micro"]}
    assert micro["tna (as loaded)"]["xlated_insns"] > 0
    assert micro["tna (as loaded)"]["verdicts"] == {"redirect": micro["tna (as loaded)"]
                                                    ["iterations"]}
    assert all(m["ns_run"] > 0 for m in doc["micro"])
    assert {p["mode"] for p in doc["profile"]} == {"null", "tna", "fib", "sol"}


def test_failed_scenario_leaves_nothing(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real_build = Router._build

    def broken_build(self: Router) -> None:
        real_build(self)  # namespaces exist by now
        raise RuntimeError("injected failure")

    monkeypatch.setattr(Router, "_build", broken_build)
    with pytest.raises(RuntimeError, match="injected"):
        run_scenario("router-v4", Config(scenarios=("router-v4",), runs=1, seconds=0.1,
                                         warmup=0.0, cpu=0, micro_iterations=0,
                                         ns_prefix=prefix),
                     lambda _msg: None)


@pytest.mark.parametrize("var", [None, frames.ipv4_destinations("10.2.16.0", 5),
                                 frames.mac_destinations("02:00:10:00:00:00", 3)])
def test_generator_frames(var: frames.Variation | None) -> None:
    """bench_gen's output, frame by frame, is the reference frame (checksums included)."""
    spec = SPEC if var is None or var.checksums else \
        FrameSpec(**{**SPEC.__dict__, "dst_mac": "02:00:10:00:00:00"})
    template = frames.build(spec)
    for i, out in enumerate(generated("tnabtgen", template, var, 7)):
        want = frames.build(frames.varied(spec, var, i)) if var else template
        assert out == want, f"frame {i}"
