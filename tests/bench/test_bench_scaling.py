"""The scaling sweeps end to end, tiny: two sizes of the route and conntrack sweeps, JSON,
Markdown and charts written, every mode measured at every size, TNA on its fast path; and the
generator's stepped variation (IPv4 and IPv6 destination grids) frame by frame."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testing.bench_gen import generated
from tna.bench import frames, scaling
from tna.bench.prefixes import Prefixes

pytestmark = pytest.mark.root



def test_tiny_sweep(tmp_path: Path, prefix: str) -> None:
    rc = scaling.main(["--sweeps", "routes4,conntrack", "--points", "2,10", "--runs", "1",
                       "--seconds", "0.2", "--warmup", "0.1", "--retry-budget", "0",
                       "--out", str(tmp_path), "--ns-prefix", prefix])
    assert rc == 0
    doc = json.loads((tmp_path / "scaling.json").read_text())
    assert doc["meta"]["source"] in ("live", "skb") and doc["meta"]["nf_conntrack_buckets"] > 0
    assert set(doc["sweeps"]) == {"routes4", "conntrack"}
    for name, sweep in doc["sweeps"].items():
        assert [p["n"] for p in sweep["points"]] == [2, 10], name
        for p in sweep["points"]:
            assert set(p["modes"]) == {"null", "linux", "tna"}
            for mode, m in p["modes"].items():
                assert m["status"] == "ok", f"{name} {p['n']} {mode}: {m['note']}"
                assert m["ns"] and all(v > 0 for v in m["ns"])
            assert p["modes"]["tna"]["fast_path"] >= 0.95, f"{name} {p['n']}: not TNA's"
            assert p["tna_apply_s"] > 0
    # N conntrack entries: N - 1 inserted, and the benchmark flow's own
    assert [p["facts"]["nf_conntrack_count"] for p in doc["sweeps"]["conntrack"]["points"]] \
        == [2, 10]
    md = (tmp_path / "scaling.md").read_text()
    assert "**routes4**" in md and "**conntrack**" in md
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    assert (tmp_path / "scaling-routes.png").stat().st_size > 0
    assert (tmp_path / "scaling-conntrack.png").stat().st_size > 0


@pytest.mark.parametrize("family", [4, 6])
def test_generator_walks_the_destination_grid(family: int) -> None:
    """bench_gen with a step: each frame is the reference frame for its grid destination,
    checksums included."""
    grid = Prefixes(family)
    src = "10.1.0.2" if family == 4 else "fd00:1::2"
    spec = frames.FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", src, grid.first())
    make = frames.ipv4_destinations if family == 4 else frames.ipv6_destinations
    var = make(grid.first(), 5, grid.step)
    template = frames.build(spec)
    for i, out in enumerate(generated("tnabtgrid", template, var, 7)):
        assert out == frames.build(frames.varied(spec, var, i)), f"frame {i}"
