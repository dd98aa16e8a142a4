"""The monitor-cost benchmark runs, measures every mode, and leaves nothing behind.  Numbers are
not judged (the machine varies); verdicts are: the routed frame must really be forwarded and
the punted one passed, or the benchmark measures something else."""

from __future__ import annotations

import pytest

from tna.bench import monitor_cost

pytestmark = pytest.mark.root


def test_monitor_cost_smoke(prefix: str) -> None:
    results = monitor_cost.measure(None, rounds=1, runs=300, repeat=100, log=lambda _s: None,
                                   prefix=prefix)
    got = {(r["frame"], r["monitor"]): r for r in results}
    assert set(got) == {(f, m) for f in ("routed", "punted (ttl)") for m in monitor_cost.MODES}
    for (frame, _), r in got.items():
        assert r["verdict"] == ("redirect" if frame == "routed" else "pass"), r
        assert r["ns_per_run_median"] > 0
