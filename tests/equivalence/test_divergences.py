"""Minimal reproductions of the known divergences (``divergences.KNOWN``).

Strict xfail: each must still differ.  When the data path is fixed the test XPASSes, which
fails the run on purpose: delete the entry from ``divergences.KNOWN`` and its frames go back
into the scenario tests.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.divergences import KNOWN, Divergence
from testing.equivalence.scenarios import SCENARIOS


@pytest.mark.parametrize("divergence", [
    pytest.param(d, id=d.id, marks=pytest.mark.xfail(strict=True, reason=d.reason))
    for d in KNOWN])
def test_known_divergence(divergence: Divergence) -> None:
    scenario = SCENARIOS[divergence.scenario]
    by_name = {f.name: f for f in scenario.corpus()}
    frames = [by_name[n] for n in divergence.frames]
    assert all(divergence.matches(f.data) for f in frames[-1:]), "repro outside its class"
    cmp = harness.compare(scenario, frames)
    assert cmp.equal, cmp.report()
