"""TNA on must do to every frame exactly what Linux does: the router scenarios.

Each test builds its scenario twice from scratch (TNA off, TNA on), sends the scenario's
whole fixed corpus and compares what every host received (``testing.equivalence.harness``).
Frames of a known divergence class are left out here and reproduced in
``test_divergences.py``; a scenario TNA cannot be applied to at all is a strict xfail.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.divergences import APPLY_FAILS, without_known
from testing.equivalence.scenarios import SCENARIOS
from tna.datapath.libbpf import LibbpfError
from tna.datapath.pins import DatapathError

pytestmark = pytest.mark.root

ROUTERS = [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=APPLY_FAILS[n],
                                            raises=(LibbpfError, DatapathError)))
    if n in APPLY_FAILS else n
    for n in sorted(SCENARIOS) if n.startswith("router")]


@pytest.mark.parametrize("name", ROUTERS)
def test_router_scenario(name: str) -> None:
    scenario = SCENARIOS[name]
    frames = without_known(name, scenario.corpus())
    cmp = harness.check(scenario, frames)
    assert cmp.a.frames, "the hosts received nothing at all: the harness is broken"
