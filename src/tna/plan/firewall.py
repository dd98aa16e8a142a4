"""Planning the forward hook: the ruleset compiled into a classifier, or the family on Linux.

Role in the flow: part of the planner.  Compiles each family's forward-hook rules with
``tna.firewall`` and checks the tables fit the data path's maps; a ruleset the classifier cannot
evaluate keeps the family (or the traffic its unsupported rules could match) on Linux.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from tna.firewall.compile import FirewallError, compile_family, conntrack_users
from tna.firewall.tables import FirewallTooLarge, FwTables, check_fits
from tna.model import AF_INET, AF_INET6, NetfilterChain, NetfilterSet, Snapshot
from tna.plan.guards import FAMILY_NAME, chain_sees_forwarding, handled_by_firewall
from tna.plan.types import InterfacePlan, SlowPath


@dataclass(frozen=True)
class FamilyFirewall:
    """One family's forward hook: its classifier, or why the family stays on Linux."""

    tables: FwTables | None = None  # None: no classifier needed (or possible)
    blocks: list[SlowPath] = field(default_factory=list)  # the whole family to Linux
    partial: list[SlowPath] = field(default_factory=list)  # traffic some rules keep on Linux


def family_firewall(snap: Snapshot, af: int) -> FamilyFirewall:
    fam = FAMILY_NAME[af]
    hooked = [c for c in snap.netfilter
              if chain_sees_forwarding(c, af) and handled_by_firewall(c)]
    tracking = conntrack_users(snap.netfilter, af)
    if not hooked and not tracking:
        return FamilyFirewall()
    traffic = f"{fam} forwarding"
    if tracking and snap.sysctls.conntrack_acct:
        return FamilyFirewall(blocks=[SlowPath(traffic, "conntrack_acct",
                                          "net.netfilter.nf_conntrack_acct is on: the fast path "
                                          "cannot keep conntrack's per-flow counters")])
    ifindexes = tuple(sorted((lk.ifname, lk.ifindex) for lk in snap.links))
    try:
        tables = _compiled(snap.netfilter, snap.netfilter_sets, af, ifindexes)
        check_fits(tables)  # what the data path's maps hold, checked here, not at load time
    except (FirewallError, FirewallTooLarge) as e:
        return FamilyFirewall(blocks=[SlowPath(traffic, "firewall_unsupported", str(e))])
    partial = [SlowPath(f"{traffic}: {u.traffic}", "firewall_rule", f"{u.rule}: {u.why}")
               for u in tables.unsupported]
    if tracking:
        partial.append(SlowPath(f"{traffic}: every flow but established UDP", "conntrack",
                                f"conntrack is active ({tracking[0]}"
                                f"{f' and {len(tracking) - 1} more' if len(tracking) > 1 else ''})"
                                ": new flows, TCP (window tracking needs every segment) and "
                                "ICMP go to Linux"))
    return FamilyFirewall(tables, partial=partial)


@functools.lru_cache(maxsize=8)
def _compiled(chains: tuple[NetfilterChain, ...], sets: tuple[NetfilterSet, ...], af: int,
              ifindexes: tuple[tuple[str, int], ...]) -> FwTables:
    """compile_family, remembered: the daemon re-plans on every route or link change, and a
    large ruleset takes a good part of a second to compile (errors are not cached)."""
    return compile_family(chains, sets, af, dict(ifindexes))


def with_firewall(plan: InterfacePlan, tables: dict[int, FwTables | None]) -> InterfacePlan:
    """Routing features gain the forward hook wherever the family has a classifier."""
    f = plan.features
    if f is None:
        return plan
    v4 = f.ipv4_router and tables[AF_INET] is not None
    v6 = f.ipv6_router and tables[AF_INET6] is not None
    if (v4, v6) == (f.firewall_ipv4, f.firewall_ipv6):
        return plan
    return dataclasses.replace(plan, features=dataclasses.replace(
        f, firewall_ipv4=v4, firewall_ipv6=v6))
