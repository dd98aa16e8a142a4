"""The planner on a recorded snapshot (h1 -- r -- h2 router), one variation per guard."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from testing.snapshots import with_link
from tna import abi
from tna.firewall.tables import VERDICT_ACCEPT, VERDICT_DROP, VERDICT_PUNT
from tna.model import (
    AF_INET,
    AF_INET6,
    InterfaceSysctls,
    Link,
    NetfilterChain,
    Qdisc,
    Route,
    Rule,
    Snapshot,
    XdpAttachment,
    XfrmPolicy,
)
from tna.plan import Features, Plan, make_plan

DATA = Path(__file__).parent / "data"
BOTH = Features(ipv4_router=True, ipv6_router=True, verify_l4_csum=True, fib_direct_v4=True)
V6_ONLY = Features(ipv6_router=True, verify_l4_csum=True)
V4_ONLY = Features(ipv4_router=True, verify_l4_csum=True, fib_direct_v4=True)


@pytest.fixture
def snap() -> Snapshot:
    return Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))



def with_if_sysctls(snap: Snapshot, ifname: str, **changes: Any) -> Snapshot:
    ifs = dict(snap.sysctls.interfaces)
    ifs[ifname] = replace(ifs[ifname], **changes)
    return replace(snap, sysctls=replace(snap.sysctls, interfaces=ifs))


def with_chain(snap: Snapshot, **fields: Any) -> Snapshot:
    chain = NetfilterChain(**{"source": "nftables", "table": "t", "name": "c", **fields})
    return replace(snap, netfilter=(*snap.netfilter, chain))


def reasons(plan: Plan, ifname: str | None = None) -> set[str]:
    slow = plan.interface(ifname).slow_path if ifname else plan.slow_path
    return {s.reason for s in slow}


def test_recorded_router_is_fully_accelerated(snap: Snapshot) -> None:
    plan = make_plan(snap)
    assert [i.ifname for i in plan.interfaces] == ["r1", "r2"]  # never loopback
    for i in plan.interfaces:
        assert (i.features, i.egress, i.slow_path) == (BOTH, True, ())
    assert plan.slow_path == ()
    assert [p.ifname for p in plan.ports()] == ["r1", "r2"]


def test_ipv4_forwarding_off_leaves_ipv4_to_linux(snap: Snapshot) -> None:
    off = replace(snap, sysctls=replace(snap.sysctls, ipv4_forwarding=False))
    for name in ("lo", "r1", "r2"):
        off = with_if_sysctls(off, name, ipv4_forwarding=False)
    plan = make_plan(off)
    assert reasons(plan) == {"forwarding_disabled"}
    assert plan.slow_path[0].traffic == "ipv4 forwarding"
    assert all(i.features == V6_ONLY for i in plan.interfaces)


def test_ipv6_forwarding_off_leaves_ipv6_to_linux(snap: Snapshot) -> None:
    plan = make_plan(replace(snap, sysctls=replace(snap.sysctls, ipv6_forwarding=False)))
    assert reasons(plan) == {"forwarding_disabled"}
    assert all(i.features == V4_ONLY for i in plan.interfaces)


def test_ipv4_forwarding_off_on_one_interface(snap: Snapshot) -> None:
    plan = make_plan(with_if_sysctls(snap, "r1", ipv4_forwarding=False))
    assert plan.interface("r1").features == V6_ONLY
    assert reasons(plan, "r1") == {"forwarding_disabled"}
    assert plan.interface("r2").features == BOTH


@pytest.mark.parametrize(("family", "hook", "left"), [
    ("ip", "prerouting", V6_ONLY), ("ip", "postrouting", V6_ONLY),
    ("inet", "prerouting", None),
])
def test_netfilter_rule_on_forwarding_hook(snap: Snapshot, family: str, hook: str,
                                           left: Features | None) -> None:
    plan = make_plan(with_chain(snap, family=family, hook=hook, priority=0, policy="accept",
                                rules=("udp dport 9 drop",)))
    assert "netfilter_hook" in reasons(plan)
    assert {i.features for i in plan.interfaces} == {left}


UDP_9_DROP = ('[{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},'
              '"right":9}},{"drop":null}]')
WITH_FIREWALL = {
    "inet": replace(BOTH, firewall_ipv4=True, firewall_ipv6=True),
    "ip": replace(BOTH, firewall_ipv4=True), "ip6": replace(BOTH, firewall_ipv6=True)}


@pytest.mark.parametrize("family", ["inet", "ip", "ip6"])
def test_forward_hook_rules_get_the_classifier(snap: Snapshot, family: str) -> None:
    plan = make_plan(with_chain(snap, family=family, hook="forward", priority=0, type="filter",
                                policy="accept", rules=("udp dport 9 drop",),
                                exprs=(UDP_9_DROP,), handles=(4,)))
    assert plan.slow_path == ()
    assert {i.features for i in plan.interfaces} == {WITH_FIREWALL[family]}
    v4, v6 = plan.namespace.firewall
    assert (v4 is not None, v6 is not None) == (family != "ip6", family != "ip")
    assert [r.verdict for r in (v4 or v6).rules] == [VERDICT_DROP, VERDICT_ACCEPT]  # type: ignore[union-attr]


def test_unsupported_forward_rule_is_named_with_its_traffic(snap: Snapshot) -> None:
    log = ('[{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},'
           '"right":22}},{"log":null},{"accept":null}]')
    plan = make_plan(with_chain(snap, family="ip", hook="forward", priority=0, type="filter",
                                policy="accept", rules=("tcp dport 22 log accept",),
                                exprs=(log,), handles=(7,)))
    [slow] = plan.slow_path
    assert slow.reason == "firewall_rule"
    assert "22" in slow.traffic and "log" in slow.detail
    assert plan.namespace.firewall[0].rules[0].verdict == VERDICT_PUNT  # type: ignore[union-attr]


def test_conntrack_rules_anywhere_make_forwarding_stateful(snap: Snapshot) -> None:
    ct = ('[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established"]}},'
          '{"accept":null}]')
    plan = make_plan(with_chain(snap, family="inet", hook="input", priority=0, type="filter",
                                policy="drop", rules=("ct state established accept",),
                                exprs=(ct,), handles=(2,)))
    assert {s.reason for s in plan.slow_path} == {"conntrack", "ct_window"}
    v4, v6 = plan.namespace.firewall
    assert v4 is not None and v4.stateful and v6 is not None and v6.stateful
    assert not v4.nat and not v6.nat
    acct = replace(snap, sysctls=replace(snap.sysctls, conntrack_acct=True))
    plan = make_plan(with_chain(acct, family="inet", hook="input", priority=0, type="filter",
                                policy="drop", rules=("ct state established accept",),
                                exprs=(ct,), handles=(2,)))
    assert "conntrack_acct" in reasons(plan)
    assert {i.features for i in plan.interfaces} == {None}


CT_NEW = '{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["new"]}}'
CT_ESTABLISHED = ('[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established"]}}'
                  ',{"accept":null}]')


@pytest.mark.parametrize(("hook", "rule", "exprs"), [
    ("forward", 'ct state new ct timeout set "agg"', f'[{CT_NEW},{{"ct timeout":"agg"}}]'),
    ("postrouting", 'ct timeout set "agg" masquerade', '[{"ct timeout":"agg"},'
                                                       '{"masquerade":null}]'),
    ("forward", "ct state new ct zone set 1",
     f'[{CT_NEW},{{"mangle":{{"key":{{"ct":{{"key":"zone"}}}},"value":1}}}}]'),
    ("forward", "ct state new notrack", f'[{CT_NEW},{{"notrack":null}}]'),
])
def test_zones_notrack_and_timeout_policies_keep_the_family_on_linux(
        snap: Snapshot, hook: str, rule: str, exprs: str) -> None:
    """The fast path looks conntrack entries up in zone 0 and refreshes them with the sysctls'
    timeouts. A rule that gives new connections a timeout policy (in the forward chain, or a
    nat chain, which sees their first packet), or that sets zones or untracks, keeps the
    family's forwarding on Linux (conntrack_lookup): established packets match no such rule,
    so the classifier alone would have let them be fast. The control: the same chain with an
    ordinary rule of the same shape keeps the stateful fast path."""
    def gateway(rule: str, exprs: str) -> Snapshot:
        fw = with_chain(snap, family="ip", name="fw", hook="forward", priority=0,
                        type="filter", policy="drop", rules=("ct state established accept",),
                        exprs=(CT_ESTABLISHED,), handles=(2,))
        if hook == "forward":
            return with_chain(fw, family="ip", name="fw2", hook="forward", priority=10,
                              type="filter", policy="accept", rules=(rule,), exprs=(exprs,),
                              handles=(5,))
        return with_chain(fw, family="ip", name="post", hook="postrouting", priority=100,
                          type="nat", policy="accept", rules=(rule,), exprs=(exprs,),
                          handles=(5,))

    control = make_plan(gateway("ct state new counter", f'[{CT_NEW},{{"counter":null}}]'))
    assert "conntrack_lookup" not in reasons(control)
    v4 = control.namespace.firewall[0]
    assert v4 is not None and v4.stateful
    plan = make_plan(gateway(rule, exprs))
    [block] = [s for s in plan.slow_path if s.reason == "conntrack_lookup"]
    assert block.traffic == "ipv4 forwarding" and "handle 5" in block.detail
    assert plan.namespace.firewall[0] is None
    assert all(i.features is not None and not i.features.ipv4_router
               for i in plan.interfaces)


@pytest.mark.parametrize(("source", "family", "table"), [
    ("nftables", "ip", "t"), ("nftables", "inet", "t"), ("iptables-legacy", "ip", "nat")])
def test_nat_chains_decide_first_packets_only(snap: Snapshot, source: str, family: str,
                                              table: str) -> None:
    """A nat chain keeps no family on Linux: its rules see a connection's first packet only
    (never fast), and conntrack's entry says what NAT does to the rest of the flow."""
    masq = ('[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"r2"}},'
            '{"masquerade":null}]')
    plan = make_plan(with_chain(snap, source=source, family=family, table=table,
                                name="POSTROUTING", hook="postrouting", priority=100,
                                type="nat", policy="accept",
                                rules=("oifname r2 masquerade",), exprs=(masq,), handles=(3,)))
    assert "netfilter_hook" not in reasons(plan)
    assert {"conntrack", "ct_window", "nat"} <= reasons(plan)
    v4, v6 = plan.namespace.firewall
    assert v4 is not None and v4.stateful and v4.nat
    assert {i.features for i in plan.interfaces} == {WITH_FIREWALL[family]}
    nat = next(s for s in plan.slow_path if s.reason == "nat" and s.traffic.startswith("ipv4"))
    assert "POSTROUTING" in nat.detail and "masquerade" in nat.detail
    nat6 = [s for s in plan.slow_path if s.reason == "nat" and s.traffic.startswith("ipv6")]
    if family == "inet":  # an inet chain registers both families' nat hooks
        assert v6 is not None and v6.nat
        assert len(nat6) == 1 and "NATed by the fast path" in nat6[0].detail
    else:
        assert nat6 == [] and (v6 is None or not v6.nat)


def test_be_liberal_is_shown_and_carried_to_the_data_path(snap: Snapshot) -> None:
    ct = ('[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established"]}},'
          '{"accept":null}]')
    liberal = replace(snap, sysctls=replace(snap.sysctls, conntrack_tcp_be_liberal=True,
                                            conntrack_tcp_timeout_established=600))
    plan = make_plan(with_chain(liberal, family="ip", hook="forward", priority=0, type="filter",
                                policy="drop", rules=("ct state established accept",),
                                exprs=(ct,), handles=(2,)))
    assert plan.namespace.ct_tcp == (600_000, 300_000, True)
    window = next(s for s in plan.slow_path if s.reason == "ct_window")
    assert "be_liberal" in window.detail


def test_retransmission_rule_is_carried_to_the_data_path(snap: Snapshot) -> None:
    """nf_conntrack_tcp_timeout_max_retrans and nf_conntrack_tcp_max_retrans go into the
    table as read (0 repeats is a value of its own: the short timeout always applies)."""
    assert make_plan(snap).namespace.ct_tcp_retrans == (300_000, 3)  # control: the defaults
    tuned = replace(snap, sysctls=replace(snap.sysctls, conntrack_tcp_timeout_max_retrans=90,
                                          conntrack_tcp_max_retrans=0))
    assert make_plan(tuned).namespace.ct_tcp_retrans == (90_000, 0)


def test_liberal_fast_path_only_under_a_daemon(snap: Snapshot) -> None:
    """be_liberal=1's fast data needs the daemon's RST repair: followed (tna run), the tracked
    family's programs get ct_liberal_fast and the plan says what the daemon repairs; a one-shot
    apply leaves TCP data to Linux as with window tracking, and says so."""
    liberal = _stateful_forward(replace(snap, sysctls=replace(
        snap.sysctls, conntrack_tcp_be_liberal=True)))
    followed = make_plan(liberal, followed=True)
    fast = {i.ifname for i in followed.interfaces if i.features and i.features.ct_liberal_fast}
    assert fast and fast == {i.ifname for i in followed.interfaces
                             if i.features and i.features.firewall_ipv4}  # control
    assert "CLOSE" in next(s for s in followed.slow_path if s.reason == "ct_window").detail
    one_shot = make_plan(liberal)
    assert not any(i.features and i.features.ct_liberal_fast for i in one_shot.interfaces)
    detail = next(s for s in one_shot.slow_path if s.reason == "ct_window").detail
    assert "no daemon follows" in detail and "tna run" in detail
    # the opt-in is a daemon's: it brings the liberal fast path too
    optin = make_plan(_stateful_forward(snap), tcp_liberal=True)
    assert all(i.features.ct_liberal_fast for i in optin.interfaces
               if i.features and i.features.ct_tcp_liberal)


def _stateful_forward(snap: Snapshot) -> Snapshot:
    ct = ('[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":["established"]}},'
          '{"accept":null}]')
    return with_chain(snap, family="ip", hook="forward", priority=0, type="filter",
                      policy="drop", rules=("ct state established accept",), exprs=(ct,),
                      handles=(2,))


def test_tcp_liberal_is_an_opt_in_said_by_the_plan(snap: Snapshot) -> None:
    """Off by default: no program names connections, and the ct_window hint says how to get
    bulk TCP fast; on: the tracked family's programs get the switch and the plan says what
    changes in Linux's behaviour."""
    stateful = _stateful_forward(snap)
    off = make_plan(stateful)
    assert not any(i.features and i.features.ct_tcp_liberal for i in off.interfaces)
    hint = next(s for s in off.slow_path if s.reason == "ct_window").detail
    assert "--tcp-liberal" in hint and "be_liberal=1" in hint
    on = make_plan(stateful, tcp_liberal=True)
    assert {i.ifname for i in on.interfaces if i.features and i.features.ct_tcp_liberal} == {
        i.ifname for i in on.interfaces if i.features and i.features.firewall_ipv4}
    assert any(i.features and i.features.ct_tcp_liberal for i in on.interfaces)
    detail = next(s for s in on.slow_path if s.reason == "ct_window").detail
    assert "--tcp-liberal is on" in detail and "lifetime" in detail
    assert "ct_tcp_liberal" in on.to_dict()["interfaces"][1]["features"]


@pytest.mark.parametrize("why", ["sysctl", "stateless"])
def test_tcp_liberal_has_nothing_to_mark(snap: Snapshot, why: str) -> None:
    """With the sysctl every connection is liberal already; without conntrack there is no
    window tracking: either way no program names connections."""
    if why == "sysctl":
        base = _stateful_forward(replace(snap, sysctls=replace(
            snap.sysctls, conntrack_tcp_be_liberal=True)))
    else:
        base = with_chain(snap, family="ip", hook="forward", priority=0, type="filter",
                          policy="accept", rules=("counter",),
                          exprs=('[{"counter":{"packets":0,"bytes":0}}]',), handles=(2,))
    plan = make_plan(base, tcp_liberal=True)
    assert any(i.features for i in plan.interfaces)  # control: programs are planned
    assert not any(i.features and i.features.ct_tcp_liberal for i in plan.interfaces)


@pytest.mark.parametrize(("hook", "policy", "rules"), [
    ("input", "drop", ("tcp dport 22 accept",)),  # local traffic only
    ("output", "accept", ("counter",)),
    ("forward", "accept", ()),  # empty accept chain: cannot change a packet's fate
])
def test_netfilter_chains_that_cannot_touch_forwarding(snap: Snapshot, hook: str, policy: str,
                                                       rules: tuple[str, ...]) -> None:
    plan = make_plan(with_chain(snap, family="inet", hook=hook, priority=0, policy=policy,
                                rules=rules))
    assert plan.slow_path == ()
    assert {i.features for i in plan.interfaces} == {BOTH}


def test_empty_forward_chain_with_drop_policy_counts(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, family="ip", hook="forward", priority=0, policy="drop"))
    assert [r.verdict for r in plan.namespace.firewall[0].rules] == [VERDICT_DROP]  # type: ignore[union-attr]


def test_iptables_legacy_forward_rule(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, source="iptables-legacy", family="ip", table="filter",
                                name="FORWARD", hook="forward", policy="accept",
                                rules=("-A FORWARD -p udp -j DROP",), handles=(1,)))
    assert plan.slow_path == ()
    assert {i.features for i in plan.interfaces} == {WITH_FIREWALL["ip"]}


def test_forward_chain_of_another_type_keeps_the_family_on_linux(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, family="ip", hook="forward", priority=0, type="route",
                                policy="accept", rules=("udp dport 9 drop",)))
    assert "netfilter_hook" in reasons(plan)


def test_netdev_ingress_chain_leaves_that_interface_alone(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, family="netdev", hook="ingress", priority=0,
                                policy="accept", devices=("r1",), rules=("drop",)))
    assert plan.interface("r1").features is None
    assert reasons(plan, "r1") == {"netfilter_ingress"}
    assert plan.interface("r2").features == BOTH


def test_netdev_egress_chain_makes_interface_no_target(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, family="netdev", hook="egress", priority=0,
                                policy="accept", devices=("r2",), rules=("drop",)))
    assert not plan.interface("r2").egress
    assert reasons(plan, "r2") == {"netfilter_egress"}
    assert plan.interface("r1").egress


def test_custom_root_qdisc_makes_interface_no_target(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r2", qdisc=Qdisc("pfifo", 0x80010000, False)))
    assert not plan.interface("r2").egress
    assert reasons(plan, "r2") == {"qdisc"}
    assert plan.interface("r2").features == BOTH  # still accelerated as an ingress


def test_tc_egress_filters_make_interface_no_target(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r2", tc_egress=True))
    assert (plan.interface("r2").egress, reasons(plan, "r2")) == (False, {"tc_egress"})


def test_tc_ingress_filters_leave_interface_to_linux(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r1", tc_ingress=True))
    assert plan.interface("r1").features is None
    assert reasons(plan, "r1") == {"tc_ingress"}
    assert plan.interface("r1").egress  # redirecting into it skips only its ingress hook


def test_xfrm_policy_leaves_family_to_linux(snap: Snapshot) -> None:
    pol = XfrmPolicy(AF_INET, "fwd", "src 10.0.0.0/24 dst 10.1.0.0/24")
    plan = make_plan(replace(snap, xfrm_policies=(pol,)))
    assert reasons(plan) == {"xfrm_policy"}
    assert {i.features for i in plan.interfaces} == {V6_ONLY}


@pytest.mark.parametrize("mode", [1, 2])
def test_rp_filter_is_emulated(snap: Snapshot, mode: int) -> None:
    plan = make_plan(with_if_sysctls(snap, "r1", rp_filter=mode))
    assert plan.interface("r1").features == replace(BOTH, ipv4_rp_filter=mode)
    assert plan.interface("r2").features == BOTH


def test_rp_filter_with_policy_rules_is_emulated(snap: Snapshot) -> None:
    rule = Rule(AF_INET, 100, 200, "to_tbl", ("from 10.1.0.0/24",))
    plan = make_plan(replace(with_if_sysctls(snap, "r1", rp_filter=1),
                             rules=(*snap.rules, rule)))
    # a policy rule: the main table alone may answer differently (no fib_direct_v4)
    assert plan.interface("r1").features == replace(BOTH, ipv4_rp_filter=1, fib_direct_v4=False)
    # custom rules make Linux validate every source (full check), rp_filter 0 or not
    assert plan.interface("r2").features == replace(BOTH, ipv4_rp_filter=2, fib_direct_v4=False)


def test_source_validation_with_iif_rules_is_punted(snap: Snapshot) -> None:
    rule = Rule(AF_INET, 100, 200, "to_tbl", ("iif r1",))
    plan = make_plan(replace(snap, rules=(*snap.rules, rule)))
    for name in ("r1", "r2"):
        assert plan.interface(name).features == V6_ONLY
        assert reasons(plan, name) == {"rp_filter_with_rules"}


def test_custom_local_route_turns_on_source_validation(snap: Snapshot) -> None:
    route = Route(AF_INET, 255, "10.9.9.9", 32, "local", oif=2, protocol=3)
    plan = make_plan(replace(snap, routes=(*snap.routes, route)))
    assert {i.features for i in plan.interfaces} == {replace(BOTH, ipv4_rp_filter=2)}


def test_fib_direct_only_with_the_default_rules(snap: Snapshot) -> None:
    followed = replace(BOTH, fib_direct_v6=True)
    assert make_plan(snap, followed=True).interface("r1").features == followed  # control
    # only a daemon keeps the IPv6 local mirror current
    assert make_plan(snap).interface("r1").features == BOTH
    for rule in (Rule(AF_INET6, 100, 200, "to_tbl", ("from 2001:db8::/32",)),
                 Rule(AF_INET6, 32766, 254, "to_tbl", ("fwmark 0x1",))):
        plan = make_plan(replace(snap, rules=(*snap.rules, rule)), followed=True)
        assert plan.interface("r1").features == BOTH
    no_main = tuple(r for r in snap.rules if (r.family, r.table) != (AF_INET, 254))
    assert make_plan(replace(snap, rules=no_main), followed=True).interface("r1").features == \
        replace(followed, fib_direct_v4=False)


@pytest.mark.parametrize("route", [
    Route(AF_INET6, 255, "2001:db8:99::", 64, "local", oif=2),  # ip route add local <prefix>
    Route(AF_INET6, 255, "2001:db8:99::1", 128, "unicast", oif=2),
])
def test_fib_direct_v6_only_with_a_mirrored_local_table(snap: Snapshot, route: Route) -> None:
    plan = make_plan(replace(snap, routes=(*snap.routes, route)), followed=True)
    assert plan.interface("r1").features == BOTH


def test_fib_direct_v4_needs_no_mirror(snap: Snapshot) -> None:
    """Without custom rules the kernel merges IPv4's local table into main: DIRECT sees it."""
    route = Route(AF_INET, 255, "10.1.0.0", 24, "local", oif=2)
    feats = make_plan(replace(snap, routes=(*snap.routes, route))).interface("r1").features
    assert feats is not None and feats.fib_direct_v4


def test_fib_direct_v6_mirrors_local_and_anycast_addresses(snap: Snapshot) -> None:
    extra = (Route(AF_INET6, 255, "2001:db8:99::5", 128, "local", oif=2),
             Route(AF_INET6, 255, "2001:db8:99::", 128, "anycast", oif=2),
             Route(AF_INET6, 255, "ff00::", 8, "multicast", oif=2))  # punted by the header checks
    plan = make_plan(replace(snap, routes=(*snap.routes, *extra)), followed=True)
    assert plan.interface("r1").features == replace(BOTH, fib_direct_v6=True)
    assert {"2001:db8:99::5", "2001:db8:99::"} <= plan.namespace.local_v6
    assert not any(a.startswith(("ff", "fe80")) for a in plan.namespace.local_v6)
    assert {r.dst for r in snap.routes if r.family == AF_INET6 and r.table == 255
            and r.dst_len == 128 and not r.dst.startswith("fe80")} <= plan.namespace.local_v6


def test_no_fib_direct_with_a_vrf(snap: Snapshot) -> None:
    vrf = replace(snap.links[-1], ifindex=99, ifname="vrf1", kind="vrf")
    plan = make_plan(replace(snap, links=(*snap.links, vrf)), followed=True)
    assert plan.interface("r1").features == replace(BOTH, fib_direct_v4=False)


def test_namespace_data_denies_own_and_broadcast_sources(snap: Snapshot) -> None:
    ns = make_plan(snap).namespace
    assert {"10.1.0.1", "10.2.0.1", "10.1.0.255", "10.2.0.255", "127.0.0.1"} <= \
        ns.denied_sources_v4
    assert "10.1.0.2" not in ns.denied_sources_v4
    assert (ns.route_mtu_v4, ns.route_mtu_v6) == (0, 0)


def test_namespace_data_takes_the_smallest_route_mtu(snap: Snapshot) -> None:
    routes = (Route(AF_INET, 254, "10.9.5.0", 24, "unicast", mtu=1300),
              Route(AF_INET, 100, "10.9.6.0", 24, "unicast", mtu=1400),
              Route(AF_INET6, 254, "fd00:95::", 64, "unicast", mtu=1280))
    ns = make_plan(replace(snap, routes=(*snap.routes, *routes))).namespace
    assert (ns.route_mtu_v4, ns.route_mtu_v6) == (1300, 1280)


def test_foreign_xdp_program_is_left_alone(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r1", xdp=XdpAttachment(77, "native", ours=False)))
    assert plan.interface("r1").features is None
    assert reasons(plan, "r1") == {"foreign_xdp"}


def test_our_own_xdp_program_is_replanned(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r1", xdp=XdpAttachment(77, "native", ours=True)))
    assert plan.interface("r1").features == BOTH


@pytest.mark.parametrize("features", [35, 0, None])
def test_veth_whose_peer_cannot_receive_xdp_is_no_target(snap: Snapshot,
                                                         features: int | None) -> None:
    plan = make_plan(with_link(snap, "r2", xdp_features=features))
    assert not plan.interface("r2").egress
    assert reasons(plan, "r2") == {"no_xdp_xmit"}
    assert "GRO" in plan.interface("r2").slow_path[0].detail
    assert [p.ifname for p in plan.ports()] == ["r1", "r2"]  # r2 still an ingress


def test_multipath_route_leaves_family_to_linux(snap: Snapshot) -> None:
    route = Route(AF_INET6, 254, "fd00:9::", 64, "unicast", multipath=True)
    plan = make_plan(replace(snap, routes=(*snap.routes, route)))
    assert reasons(plan) == {"multipath_route"}
    assert {i.features for i in plan.interfaces} == {V4_ONLY}


def test_proxy_ndp_leaves_ipv6_to_linux(snap: Snapshot) -> None:
    plan = make_plan(replace(snap, sysctls=replace(snap.sysctls, ipv6_proxy_ndp=True)))
    assert reasons(plan) == {"proxy_ndp"}


def test_enslaved_and_unsupported_kinds(snap: Snapshot) -> None:
    bridge = Link(ifindex=50, ifname="br0", kind="bridge", mtu=1500, address="02:00:00:00:00:50",
                  operstate="UP", up=True, xdp_features=0)
    snap = with_link(snap, "r2", master=50)
    snap = replace(snap, links=(*snap.links, bridge))
    plan = make_plan(snap)
    assert (plan.interface("r2").features, plan.interface("r2").egress) == (None, False)
    assert reasons(plan, "r2") == {"enslaved"}
    assert (plan.interface("br0").features, plan.interface("br0").egress) == (None, False)
    assert reasons(plan, "br0") == {"unsupported_kind"}
    assert [p.ifname for p in plan.ports()] == ["r1"]


def test_down_interface_is_no_target(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r2", up=False, operstate="DOWN"))
    assert reasons(plan, "r2") == {"link_down"}


def test_physical_interfaces_skip_l4_checksum_verification(snap: Snapshot) -> None:
    plan = make_plan(with_link(snap, "r1", kind=""))
    assert plan.interface("r1").features == replace(BOTH, verify_l4_csum=False)


def test_plan_json_names_features(snap: Snapshot) -> None:
    out = make_plan(with_if_sysctls(snap, "r1", rp_filter=1)).to_dict()
    assert out["interfaces"][0]["features"] == ["ipv4_router", "ipv6_router",
                                                "ipv4_rp_filter_strict", "verify_l4_csum",
                                                "fib_direct_v4"]
    json.dumps(out)  # serialisable as is


def test_missing_interface_sysctls_mean_no_ipv4(snap: Snapshot) -> None:
    ifs = {k: v for k, v in snap.sysctls.interfaces.items() if k != "r1"}
    plan = make_plan(replace(snap, sysctls=replace(snap.sysctls, interfaces=ifs)))
    assert plan.interface("r1").features == V6_ONLY


def test_ipv4_forwarding_per_interface_even_with_global_off(snap: Snapshot) -> None:
    """net.ipv4.ip_forward=0 but conf/r1/forwarding=1: Linux forwards from r1."""
    off = replace(snap, sysctls=replace(snap.sysctls, ipv4_forwarding=False))
    off = with_if_sysctls(off, "r2", ipv4_forwarding=False)
    plan = make_plan(off)
    assert plan.interface("r1").features == BOTH
    assert plan.interface("r2").features == V6_ONLY


def test_interface_sysctls_defaults() -> None:
    assert InterfaceSysctls(True, True, 0).send_redirects


def test_egress_accepting_redirects_is_marked(snap: Snapshot) -> None:
    plan = make_plan(with_if_sysctls(snap, "r2", accept_redirects=True))
    r2 = plan.interface("r2")
    assert (r2.accept_redirects, r2.redirects_unwatched, r2.slow_path) == (True, False, ())
    assert r2.port.flags & abi.TNA_IF_ACCEPT_REDIRECTS
    assert not plan.interface("r1").accept_redirects


def test_redirects_arriving_where_no_program_sees_them(snap: Snapshot) -> None:
    snap = with_link(with_if_sysctls(snap, "r2", accept_redirects=True), "r2", tc_ingress=True)
    r2 = make_plan(snap).interface("r2")
    assert (r2.features, r2.egress, r2.redirects_unwatched) == (None, True, True)
    assert reasons(make_plan(snap), "r2") == {"tc_ingress", "redirects_unwatched"}


def test_uncompilable_forward_hook_keeps_the_family_on_linux(snap: Snapshot) -> None:
    """Two base chains at one priority run in an order TNA cannot know."""
    two = with_chain(with_chain(snap, family="ip", hook="forward", priority=0, type="filter",
                                policy="accept", rules=("udp dport 9 drop",),
                                exprs=(UDP_9_DROP,), handles=(4,)),
                     table="u", family="ip", hook="forward", priority=0, type="filter",
                     policy="accept", rules=("udp dport 9 drop",), exprs=(UDP_9_DROP,),
                     handles=(4,))
    plan = make_plan(two)
    assert reasons(plan) == {"firewall_unsupported"}
    assert {i.features for i in plan.interfaces} == {V6_ONLY}
    assert plan.namespace.firewall == (None, None)


def test_plan_json_summarises_the_classifier(snap: Snapshot) -> None:
    plan = make_plan(with_chain(snap, family="ip", hook="forward", priority=0, type="filter",
                                policy="accept", rules=("udp dport 9 drop",),
                                exprs=(UDP_9_DROP,), handles=(4,)))
    v4 = plan.namespace.firewall[0]
    assert v4 is not None
    out = json.loads(json.dumps(plan.to_dict()))
    assert out["namespace"]["firewall"] == {
        "ipv4": {"rules": 2, "classes": len(v4.classes), "fields": ["dport", "l4proto"],
                 "stateful": False, "nat": False, "unsupported": []},
        "ipv6": None}
    assert len(json.dumps(out)) < 20_000  # not the 65536-entry port table
