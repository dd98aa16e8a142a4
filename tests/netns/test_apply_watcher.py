"""Plain ``tna apply`` leaves a watcher: a forward rule added later is never bypassed.

h1 -- r -- h2 with a ~1 kpps UDP flood h1 -> h2.  After ``tna apply`` (no daemon) the flood
runs on the fast path (the positive control); then a forward drop rule is added with
libnftables in r: not one datagram sent later than the bound after ``nft`` returned reaches
h2.  The rule removed, the fast path comes back (the watcher re-applied).  ``tna detach``
stops the watcher and detaches; a killed watcher takes the fast path with it (its links are
file descriptors), so Linux forwards alone.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest

from tna import netns, watcher
from tna.bench.enforce import RULE, Flood, _on_fast_path
from tna.bench.reconfig import Nft
from tna.testbed import RouterTopology, Testbed, run_tna, wait_for

pytestmark = pytest.mark.root

BOUND_MS = 10.0


def watcher_pid(ns: str) -> int | None:
    with netns.entered(ns):
        return watcher.running()


def xdp_on(t: RouterTopology, ifname: str) -> bool:
    return " xdp" in t.bed.run(t.r, "ip", "-d", "link", "show", ifname).stdout


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with Testbed(prefix="tnawatch") as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        yield t


@pytest.fixture
def flood(topo: RouterTopology) -> Iterator[Flood]:
    f = Flood(topo)
    f.start()
    try:
        yield f
    finally:
        f.close()


def test_rule_added_after_apply_stops_the_flood_within_the_bound(topo: RouterTopology,
                                                                 flood: Flood) -> None:
    run_tna(topo.r, "apply")
    pid = watcher_pid(topo.r)
    assert pid is not None
    with netns.entered(topo.r):
        nft = Nft()
    for _ in range(3):
        wait_for(lambda: _on_fast_path(topo, flood), timeout=10, what="flood on the fast path")
        with netns.entered(topo.r):
            nft.run(RULE)
        added = time.monotonic()
        time.sleep(0.3)
        late = flood.delivered_since(added + BOUND_MS / 1000)
        assert late == [], f"{len(late)} datagrams passed {BOUND_MS} ms after the rule"
        assert not flood.delivered_since(added + 0.1)
        with netns.entered(topo.r):
            nft.run("delete table inet tnaenf")
    wait_for(lambda: _on_fast_path(topo, flood), timeout=10, what="fast path back")
    assert watcher_pid(topo.r) == pid  # one watcher all along

    # a second apply hands over to a new watcher without a gap in the fast path
    run_tna(topo.r, "apply")
    assert watcher_pid(topo.r) not in (None, pid)
    assert _on_fast_path(topo, flood)

    run_tna(topo.r, "detach")
    assert watcher_pid(topo.r) is None
    assert not xdp_on(topo, "r1") and not xdp_on(topo, "r2")


def test_killed_watcher_leaves_linux_in_charge(topo: RouterTopology, flood: Flood) -> None:
    import os

    run_tna(topo.r, "apply")
    wait_for(lambda: _on_fast_path(topo, flood), timeout=10, what="flood on the fast path")
    pid = watcher_pid(topo.r)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not xdp_on(topo, "r1") and not xdp_on(topo, "r2"), timeout=10,
             what="links released with the watcher")
    t0 = time.monotonic()
    wait_for(lambda: bool(flood.delivered_since(t0)), what="Linux forwarding alone")
    run_tna(topo.r, "detach")  # the maps it left
