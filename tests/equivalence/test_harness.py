"""Self-tests of the harness against plain Linux (no TNA at all).

Two runs of plain Linux must compare equal after normalisation (else every scenario test
would be flaky), and every normalisation must be necessary: without it, those same two runs
differ.  A normalisation that is never needed would be a blind spot for nothing.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence import normalise as norm
from testing.equivalence.harness import Comparison
from testing.equivalence.scenarios import SCENARIOS

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def linux_twice() -> Comparison:
    scenario = SCENARIOS["router"]
    return harness.compare(scenario, scenario.corpus(), harness.OFF,
                           harness.Mode("TNA off, again", False))


def test_plain_linux_is_deterministic(linux_twice: Comparison) -> None:
    assert linux_twice.equal, linux_twice.report()
    assert len(linux_twice.a.frames) > 100


@pytest.mark.parametrize("dropped", [n.name for n in norm.NORMALISATIONS])
def test_every_normalisation_is_needed(linux_twice: Comparison, dropped: str) -> None:
    others = [n for n in norm.NORMALISATIONS if n.name != dropped]
    runs = [[norm.normalise(f, r.context, others)[0] for f in r.raw]
            for r in (linux_twice.a, linux_twice.b)]
    assert harness.differences(*runs), f"{dropped} made no difference: drop it"
