"""Bounded enforcement at scale (issue #14): with 100k IPv4 + 10k IPv6 routes and a 1 kpps
UDP flood through the router under ``tna run``, a new nft forward drop rule stops the flood on
the fast path within 10 ms of ``nft`` returning (p99 of 20 trials, half of them while the
daemon re-reads the whole routing table), not one datagram passes after that bound, and the
idle daemon uses less than 2% of a CPU.  The measurement is :mod:`tna.bench.enforce`."""

from __future__ import annotations

import pytest

from tna.bench import enforce

pytestmark = pytest.mark.root


def test_drop_rule_enforced_within_bound_at_100k_routes() -> None:
    out = enforce.run(trials=20, routes=100_000, routes6=10_000, idle_s=10.0)
    summary = {k: v for k, v in out.items() if k != "per_trial"}
    # the measurement means something: every trial started with the flood on the fast path
    # (checked inside), and half of them overlapped a full re-read
    assert out["trials_during_full_resync"] >= 5, summary
    assert out["leaked_after_bound"] == 0, out["per_trial"]
    assert out["enforce_p99_ms"] <= enforce.BOUND_MS, summary
    assert out["idle_cpu_percent"] < 2.0, summary
    assert out["daemon_errors"] == [], summary


def test_planner_routes_follow_notifications_without_a_full_read() -> None:
    """An IPv6 ECMP route built and removed sibling by sibling: IPv6 leaves the programs at
    the first multipath message and comes back once the route is gone (a sibling's deletion
    only leaves the set in doubt, so the daemon reads the routes again)."""
    import json

    from tna.testbed import DaemonProcess, RouterTopology, Testbed, run_tna, wait_for

    def ipv6_fast() -> bool:
        status = json.loads(run_tna(t.r, "status", "--json").stdout)
        return all("ipv6_router" in r["features"] for r in status["interfaces"])

    with Testbed(prefix="tnaroutes") as bed:
        t = RouterTopology.build(bed)
        d = DaemonProcess(t.r)
        try:
            assert ipv6_fast()  # the control
            bed.run(t.r, "ip", "-6", "route", "add", "fd0a::/64", "via", t.h2_v6)
            bed.run(t.r, "ip", "-6", "route", "append", "fd0a::/64", "via", t.h1_v6)
            wait_for(lambda: not ipv6_fast(), what="IPv6 on Linux under a multipath route")
            bed.run(t.r, "ip", "-6", "route", "del", "fd0a::/64", "via", t.h2_v6)
            bed.run(t.r, "ip", "-6", "route", "del", "fd0a::/64")
            wait_for(ipv6_fast, what="IPv6 back on the fast path")
            assert d.errors() == []
        finally:
            d.stop()
