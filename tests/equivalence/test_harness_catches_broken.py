"""The harness must catch a fast path that skips a safety check (a test of the test).

The Makefile builds two deliberately broken objects (never loaded by tna itself): one that
forwards TTL/hop limit <= 1 instead of leaving it to Linux (which sends time exceeded), one
that forwards IPv4 packets with a bad header checksum (which Linux drops).  Run through the
very comparison the scenario tests use, each must fail, and the diff must name the corpus
frames that expose it.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.divergences import without_known
from testing.equivalence.scenarios import SCENARIOS
from tna import abi

pytestmark = pytest.mark.root

EXPOSED_BY = {
    "skip_ttl_check": ("h1:v4_ttl_1", "h1:v4_ttl_0", "h1:v6_hlim_1", "h1:v6_hlim_0"),
    "skip_csum_check": ("h1:v4_bad_csum",),
}


@pytest.mark.parametrize("variant", sorted(EXPOSED_BY))
def test_broken_fast_path_is_caught(variant: str) -> None:
    obj = abi.BPF_DIR / "testing" / f"tna_xdp_broken_{variant}.bpf.o"
    assert obj.exists(), f"{obj} is missing: run 'make build'"
    scenario = SCENARIOS["router"]
    frames = without_known("router", scenario.corpus())
    broken = harness.Mode(f"TNA on, broken ({variant})", True, str(obj))
    cmp = harness.compare(scenario, frames, harness.OFF, broken)
    assert not cmp.equal, f"the harness did not notice {variant}"
    causes = {c for d in cmp.differences for c in harness.origins(d.data, frames)}
    missing = set(EXPOSED_BY[variant]) - causes
    assert not missing, f"{variant}: no difference attributed to {missing}\n{cmp.report()}"
    report = cmp.report()
    assert all(name in report for name in EXPOSED_BY[variant]), report
