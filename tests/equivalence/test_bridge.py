"""Bridge scenarios: TNA has no bridge fast path yet, so these hold trivially today.

The plan leaves enslaved ports and bridge devices to Linux, so "TNA on" attaches nothing the
frames meet (and the harness checks the fast path forwarded nothing).  The tests are here so
that the bridge fast path, when it lands, is held to the same property from its first day.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.scenarios import SCENARIOS

pytestmark = pytest.mark.root


@pytest.mark.parametrize("name", ["bridge", "bridge_router"])
def test_bridge_scenario(name: str) -> None:
    cmp = harness.check(SCENARIOS[name])
    assert cmp.a.frames, "the hosts received nothing at all: the harness is broken"
