"""Randomised frames through the same comparison (three router scenarios: plain, strict
rp_filter, policy routing).

``TNA_EQ_RANDOM_N`` frames per run (default 200, the CI budget), drawn from ``TNA_EQ_SEED``
(default: a fresh seed each run).  A failure prints the seed; rerun with it to replay the
very same frames.  Frames of a known divergence class are left out (``divergences.KNOWN``).
"""

from __future__ import annotations

import os
import secrets

import pytest

from testing.equivalence import harness
from testing.equivalence.divergences import without_known
from testing.equivalence.scenarios import SCENARIOS, random_router_corpus

pytestmark = pytest.mark.root

DEFAULT_N = 200


@pytest.mark.parametrize("name", ["router", "router_rp_strict", "router_policy"])
def test_random_frames(name: str) -> None:
    seed = int(os.environ.get("TNA_EQ_SEED") or secrets.randbelow(1 << 32))
    count = int(os.environ.get("TNA_EQ_RANDOM_N") or DEFAULT_N)
    print(f"equivalence random seed: {seed} ({count} frames)")  # shown by pytest on failure
    frames = without_known(name, random_router_corpus(seed, count))
    harness.check(SCENARIOS[name], frames, seed=seed)
