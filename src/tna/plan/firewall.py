"""Planning the forward hook: the ruleset compiled into a classifier, or the family on Linux.

Role in the flow: part of the planner.  Compiles each family's forward-hook rules with
``tna.firewall`` and checks the tables fit the data path's maps; a ruleset the classifier cannot
evaluate keeps the family (or the traffic its unsupported rules could match) on Linux.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from tna.firewall.compile import (
    FirewallError,
    compile_family,
    conntrack_lookup_changers,
    conntrack_users,
    nat_chains,
)
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


def family_firewall(snap: Snapshot, af: int, tcp_liberal: bool = False,
                    liberal_fast: bool = False) -> FamilyFirewall:
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
    changers = conntrack_lookup_changers(
        [c for c in snap.netfilter if chain_sees_forwarding(c, af)], af)
    if changers:
        more = f" and {len(changers) - 1} more" if len(changers) > 1 else ""
        return FamilyFirewall(blocks=[SlowPath(
            traffic, "conntrack_lookup",
            f"{changers[0]}{more}: conntrack zones, untracked packets or timeout policies; "
            "the fast path looks entries up in zone 0 and refreshes them with the sysctls' "
            "timeouts, so it could take another entry than Linux, or keep it to another "
            "time")])
    ifindexes = tuple(sorted((lk.ifname, lk.ifindex) for lk in snap.links))
    try:
        tables = _compiled(snap.netfilter, snap.netfilter_sets, af, ifindexes)
        check_fits(tables)  # what the data path's maps hold, checked here, not at load time
    except (FirewallError, FirewallTooLarge) as e:
        return FamilyFirewall(blocks=[SlowPath(traffic, "firewall_unsupported", str(e))])
    partial = [SlowPath(f"{traffic}: {u.traffic}", "firewall_rule", f"{u.rule}: {u.why}")
               for u in tables.unsupported]
    if tracking:
        partial += conntrack_slow_paths(snap, af, tracking, tcp_liberal, liberal_fast)
    return FamilyFirewall(tables, partial=partial)


def conntrack_slow_paths(snap: Snapshot, af: int, tracking: list[str],
                         tcp_liberal: bool = False, liberal_fast: bool = False
                         ) -> list[SlowPath]:
    """What conntrack (and NAT) keep on Linux when the family is tracked; the rest of an
    established TCP or UDP flow is fast, NATed from conntrack's own entry.  ``tcp_liberal``:
    the daemon's opt-in to make the connections the fast path would carry liberal;
    ``liberal_fast``: a daemon follows, so liberal connections' data may be fast."""
    traffic = f"{FAMILY_NAME[af]} forwarding"
    more = f" and {len(tracking) - 1} more" if len(tracking) > 1 else ""
    out = [SlowPath(f"{traffic}: every packet but those of established TCP and UDP flows",
                    "conntrack", f"conntrack is active ({tracking[0]}{more}): new flows, "
                    "related and invalid packets, ICMP and other protocols go to Linux, which "
                    "creates and changes entries (ct, ct_proto)")]
    if snap.sysctls.conntrack_tcp_be_liberal and liberal_fast:
        window = ("net.netfilter.nf_conntrack_tcp_be_liberal is on: the kernel does not judge "
                  f"TCP windows, so only a segment inside the tracked window acknowledging "
                  f"beyond the highest ACK conntrack tracked goes to Linux (ct_window); "
                  f"{LIBERAL_REPAIR}")
    elif snap.sysctls.conntrack_tcp_be_liberal:
        window = ("net.netfilter.nf_conntrack_tcp_be_liberal is on, but no daemon follows "
                  "this namespace ('tna apply' alone): TCP segments of established "
                  "connections go to Linux (ct_window), because the fast path's liberal data "
                  "needs the daemon's repair of the connections reset after it; 'tna run' "
                  "makes it fast (docs/stateful.md)")
    elif tcp_liberal:
        window = (f"{TCP_LIBERAL_ON}; until a connection is marked, a segment that would "
                  "move conntrack's tracked window goes to Linux (ct_window), and so does one "
                  "inside it acknowledging beyond the highest ACK conntrack tracked; "
                  f"{LIBERAL_REPAIR}")
    else:
        window = ("conntrack judges every TCP segment against the window it tracked from the "
                  "segments it saw: a segment that would move that window (new data, a new "
                  "ACK or window edge) goes to Linux, so a later verdict is never taken "
                  "from a stale window (ct_window): bulk transfers stay on Linux unless "
                  "net.netfilter.nf_conntrack_tcp_be_liberal=1, or 'tna run --tcp-liberal' "
                  "makes the connections the fast path would carry liberal (docs/stateful.md)")
    out.append(SlowPath(f"{traffic}: TCP segments that set up, tear down or move conntrack's "
                        "view of a connection", "ct_window",
                        f"SYN, FIN, RST, URG and non-ESTABLISHED entries (ct_setup); {window}"))
    nat = nat_chains(snap.netfilter, af)
    if nat:
        names = ", ".join(f"{c.source} {c.family} {c.table} {c.name}" for c in nat)
        how = ("established flows are NATed by the fast path with the addresses and ports of "
               "conntrack's entry (masquerade, snat, dnat; redirect delivers locally, so "
               "Linux)")
        out.append(SlowPath(f"{traffic}: each NATed connection's first packet, ICMP errors "
                            "of NATed flows", "nat",
                            f"nat chains ({names}) pick a mapping for a new connection on "
                            f"Linux; {how}; related ICMP errors need their inner headers "
                            "rewritten (nat_related)"))
    return out


# What the daemon does for liberal connections whose data is fast (docs/stateful.md, "The RST
# of a liberal side"), as 'tna plan' says it.
LIBERAL_REPAIR = (
    "the kernel does not see that data, so it would not recognise the RST of its sender and "
    "would keep the entry ESTABLISHED: such an RST goes to Linux and the daemon puts the entry "
    "in CLOSE (nf_conntrack_tcp_timeout_close), as Linux alone would")

# What the opt-in changes, as 'tna plan' says it (docs/stateful.md, "Opt-in").
TCP_LIBERAL_ON = (
    "tna run --tcp-liberal is on (a change of Linux's behaviour, by opt-in): an established "
    "TCP connection the fast path would carry but for window tracking is made liberal in "
    "conntrack (IP_CT_TCP_FLAG_BE_LIBERAL both ways, as the kernel's flowtable does for the "
    "flows it offloads) by the daemon; from then on its data and window updates are fast and "
    "the kernel no longer judges its windows, for the connection's lifetime, also if TNA "
    "stops")


def with_tcp_liberal(plan: InterfacePlan, tables: dict[int, FwTables | None],
                     on: bool, liberal_fast: bool = False) -> InterfacePlan:
    """The daemon's switches wherever a tracked family is classified.  ``ct_liberal_fast``
    (``liberal_fast``: a daemon follows): liberal connections' data may be fast, and the
    programs name the entries of those reset after it, for the daemon to close.  The
    opt-in's ``ct_tcp_liberal`` (``on``): the programs name the connections for the daemon to
    mark; off while the sysctl makes every connection liberal anyway."""
    f = plan.features
    if f is None or not (on or liberal_fast):
        return plan
    tracked = ((f.firewall_ipv4 and _stateful(tables[AF_INET]))
               or (f.firewall_ipv6 and _stateful(tables[AF_INET6])))
    if not tracked:
        return plan
    return dataclasses.replace(plan, features=dataclasses.replace(
        f, ct_tcp_liberal=on, ct_liberal_fast=liberal_fast or on))


def _stateful(tables: FwTables | None) -> bool:
    return tables is not None and tables.stateful


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
