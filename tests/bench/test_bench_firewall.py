"""The firewall benchmark scenarios, briefly: they build, Linux forwards the benchmark flow
through their rulesets, and the stateful one really measures an established conntrack flow
(without the reply from the sink's side first, its policy drops every frame)."""

from __future__ import annotations

import pytest

from tna.bench import scenarios
from tna.bench.runner import Config, run_scenario

pytestmark = pytest.mark.root


def _rates(name: str, prefix: str, modes: tuple[str, ...]) -> dict[str, float]:
    cfg = Config(scenarios=(name,), modes=modes, runs=1, seconds=0.2, warmup=0.1, cpu=0,
                 micro_iterations=0, profile=False, retries=0, ns_prefix=prefix)
    report = run_scenario(name, cfg, lambda _msg: None)
    source = report.meta["source"]  # whichever the host allows
    assert source in ("live", "skb")
    for r in report.results:
        assert r.status == "ok", f"{name} {r.mode}: {r.status} {r.note}"
        assert r.source == source
    return {r.mode: r.samples[0].pps for r in report.results}


@pytest.mark.parametrize("name", ["firewall-stateful", "firewall-ipt"])
def test_firewall_scenario_forwards(name: str, prefix: str) -> None:
    rates = _rates(name, prefix, (scenarios.LINUX, scenarios.TNA))
    assert rates[scenarios.LINUX] > 1000 and rates[scenarios.TNA] > 1000, rates


def test_stateful_flow_is_established(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios.StatefulFirewall, "establish", lambda self: None)
    rates = _rates("firewall-stateful", prefix, (scenarios.LINUX,))
    # a forwarded flow is >100k pps; the sink may still count a stray frame or two of the
    # namespaces' own (neighbour discovery, MLD) in the window
    assert rates[scenarios.LINUX] < 1000, "the ruleset lets a flow pass that is not established"


def test_rulesets() -> None:
    nft = scenarios.firewall_ruleset(50)
    ipt = scenarios.iptables_ruleset(50)
    assert nft.count(" drop\n") == 50 and ipt.count("-j DROP\n") == 50
    assert nft.rstrip().endswith("accept\n  }\n}")
    assert ipt.endswith("-A FORWARD -j ACCEPT\nCOMMIT\n")
    stateful = scenarios.stateful_ruleset(50).splitlines()
    assert "policy drop" in stateful[2] and "established" in stateful[3]
