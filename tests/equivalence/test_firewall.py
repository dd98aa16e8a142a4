"""TNA on must filter every forwarded frame exactly as Linux's forward hook does.

The scenarios ``fw_*`` (``testing.equivalence.scenarios``): stateless ACLs of 1, 100 and 1000
rules in nftables, the 100-rule ACL through iptables-nft and iptables-legacy, and a stateful
router firewall whose corpus opens flows in one burst and answers them in the next.  Each
test builds its scenario twice from scratch (fresh namespaces, so no conntrack entry of the
TNA-off run exists in the TNA-on run), compares what every host received and checks, in both
runs, that each probe met the verdict the ruleset gives it.

Positive control: taken from the plan of the TNA-on run.  While the planner leaves forwarding
to Linux whenever a forward-hook rule exists, nothing may be forwarded by XDP; once a family's
forwarding is planned fast despite the ruleset (the firewall fast path), the fast path must
have forwarded something, or the comparison proves nothing about it.
"""

from __future__ import annotations

import shutil

import pytest

from testing.equivalence import harness
from testing.equivalence.scenarios import SCENARIOS

pytestmark = pytest.mark.root

FIREWALLS = sorted(n for n in SCENARIOS if n.startswith("fw_"))
NEEDS = {"fw_ipt_legacy_acl_100": ("iptables-legacy-restore", "ip6tables-legacy-restore"),
         "fw_ipt_nft_acl_100": ("iptables-nft-restore", "ip6tables-nft-restore")}


def families_left_to_linux(reasons: list[str]) -> set[str]:
    """Address families whose forwarding the plan keeps on Linux because of netfilter."""
    return {r.split()[0] for r in reasons if r.endswith(": netfilter_hook")}


@pytest.mark.parametrize("name", FIREWALLS)
def test_firewall_scenario(name: str) -> None:
    missing = [tool for tool in NEEDS.get(name, ()) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    scenario = SCENARIOS[name]
    cmp = harness.check(scenario)
    assert cmp.a.frames, "the hosts received nothing at all: the harness is broken"
    on_linux = families_left_to_linux(cmp.b.slow_path.get("r", []))
    if on_linux >= {"ipv4", "ipv6"}:
        assert cmp.b.forwarded == 0, (
            f"the plan leaves forwarding to Linux, yet XDP forwarded {cmp.b.forwarded} frames "
            f"(counters {cmp.b.counters})")
    else:
        assert cmp.b.forwarded > 0, (
            f"the plan accelerates {sorted({'ipv4', 'ipv6'} - on_linux)} forwarding under "
            f"this ruleset, but the fast path forwarded nothing (counters {cmp.b.counters}): "
            "a comparison where Linux did all the work proves nothing")


def test_rulesets_have_the_advertised_size() -> None:
    from testing.equivalence import scenarios as s

    for n in (100, 1000):
        chains = s.acl_chains(n, "drop")
        assert sum(map(len, chains.values())) == n
        text = s.nft_acl(n, "drop")
        assert text.count(" accept\n") + text.count(" drop\n") + text.count(
            " return\n") + text.count("prohibited\n") + text.count(" from_dmz\n") + text.count(
            " wan_udp\n") == n
    v4, v6 = s.iptables_acl(100, "drop", 4), s.iptables_acl(100, "drop", 6)
    assert v4.count("\n-A ") + v6.count("\n-A ") >= 100
