"""The planner: a pure function from a :class:`~tna.model.Snapshot` to a :class:`Plan`.

Role in the flow: ``introspect`` → **plan** → ``datapath``.  For each interface the plan says
which fast-path features its program gets, whether the fast path may transmit out of it, and,
for every class of traffic left to Linux, why.  Every guard exists because the fast path could
otherwise do something Linux would not (bypass a netfilter rule, a qdisc, an xfrm policy, an
rp_filter drop, or redirect into a device that drops XDP frames).

The planner imports the model and the firewall compiler, never the data path.  Its rooms:
``types`` (the plan, the contract with the data path), ``guards`` (shared reasons for the slow
path), ``router``, ``bridge`` and ``firewall`` (what each kind of traffic gets).
"""

from __future__ import annotations

import dataclasses

from tna import abi
from tna.model import AF_INET, AF_INET6, Link, Snapshot
from tna.plan.bridge import Bridge, bridge_port_plan, brport_plan, plan_bridge, plan_bridge_port
from tna.plan.firewall import family_firewall, with_firewall, with_tcp_liberal
from tna.plan.guards import egress_guard, family_guards, ingress_guard
from tna.plan.router import namespace_data, routing_features, with_redirects
from tna.plan.types import (
    BridgePortPlan,
    Features,
    InterfacePlan,
    Namespace,
    Plan,
    Port,
    SlowPath,
)

__all__ = ["BridgePortPlan", "Features", "InterfacePlan", "Namespace", "Plan", "Port",
           "SlowPath", "bridge_port_plan", "brport_plan", "make_plan", "within_slots"]


def make_plan(snap: Snapshot, followed: bool = False, tcp_liberal: bool = False) -> Plan:
    """``followed``: a daemon (``tna run``) follows every change, so what only it keeps in
    step with the kernel (the IPv6 local-address mirror behind fib_direct_v6) may be used.
    It also lets liberal TCP connections (nf_conntrack_tcp_be_liberal, or the opt-in's marks)
    carry data on the fast path: the daemon repairs the entries of those reset after fast
    data (``ct_liberal_fast``, docs/stateful.md).
    ``tcp_liberal``: the daemon's opt-in (``tna run --tcp-liberal``) to make the TCP
    connections the fast path would carry liberal (see :func:`with_tcp_liberal`); a daemon's,
    so it implies ``followed`` for the liberal fast path."""
    liberal_fast = followed or tcp_liberal
    firewalls = {af: family_firewall(snap, af, tcp_liberal, liberal_fast)
                 for af in (AF_INET, AF_INET6)}
    family_blocks = {af: family_guards(snap, af) + firewalls[af].blocks
                     for af in (AF_INET, AF_INET6)}
    global_slow = tuple(s for blocks in family_blocks.values() for s in blocks)
    global_slow += tuple(s for af, fw in firewalls.items() if not family_blocks[af]
                         for s in fw.partial)
    bridges = {lk.ifindex: plan_bridge(snap, lk, family_blocks) for lk in snap.links
               if lk.kind == "bridge" and lk.bridge is not None}
    bridge_egress = any(b.routable_to for b in bridges.values())
    interfaces = tuple(plan_interface(snap, link, family_blocks, bridges, bridge_egress,
                                      followed)
                       for link in snap.links if link.ifname != "lo")
    tables = {af: None if family_blocks[af] else fw.tables for af, fw in firewalls.items()}
    interfaces = within_slots(tuple(with_tcp_liberal(with_firewall(i, tables), tables,
                                                     tcp_liberal and not
                                                     snap.sysctls.conntrack_tcp_be_liberal,
                                                     liberal_fast)
                                    for i in interfaces))
    namespace = dataclasses.replace(
        namespace_data(snap), firewall=(tables[AF_INET], tables[AF_INET6]),
        ct_timeouts_ms=(snap.sysctls.conntrack_udp_timeout_stream * 1000,
                        snap.sysctls.conntrack_udp_timeout * 1000),
        ct_tcp=(snap.sysctls.conntrack_tcp_timeout_established * 1000,
                snap.sysctls.conntrack_tcp_timeout_unacknowledged * 1000,
                snap.sysctls.conntrack_tcp_be_liberal),
        ct_tcp_retrans=(snap.sysctls.conntrack_tcp_timeout_max_retrans * 1000,
                        snap.sysctls.conntrack_tcp_max_retrans),
        ct_hz=snap.sysctls.kernel_hz)
    return Plan(snap.netns, with_redirects(snap, interfaces), global_slow, namespace)


# ---- per interface ---------------------------------------------------------------------------

def within_slots(interfaces: tuple[InterfacePlan, ...], slots: int | None = None
                 ) -> tuple[InterfacePlan, ...]:
    """At most ``slots`` interfaces in the data path (``TNA_MAX_IFACES`` - 1: slot 0 counts
    unknown ingress ports): the first ones by ifindex keep their plan, a bridge and its ports
    together or not at all; the rest stay on Linux (``iface_limit``), nothing fails."""
    slots = abi.max_ifaces() - 1 if slots is None else slots
    groups: dict[int, list[InterfacePlan]] = {}
    for i in sorted(interfaces, key=lambda i: i.ifindex):
        if i.features is not None or i.egress or i.bridge:
            groups.setdefault(i.bridge_port.bridge if i.bridge_port else i.ifindex, []).append(i)
    if sum(map(len, groups.values())) <= slots:
        return interfaces
    cut: set[int] = set()
    used = 0
    for members in sorted(groups.values(), key=lambda g: min(i.ifindex for i in g)):
        if used + len(members) <= slots:
            used += len(members)
        else:
            cut.update(i.ifindex for i in members)
    reason = SlowPath("all", "iface_limit", f"more than {slots} interfaces: the fast path "
                      f"serves the first {slots} (by ifindex), this one stays on Linux")
    return tuple(dataclasses.replace(i, features=None, egress=False, bridge=False,
                                     bridge_port=None, slow_path=(*i.slow_path, reason))
                 if i.ifindex in cut else i for i in interfaces)


def plan_interface(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]],
                    bridges: dict[int, Bridge], bridge_egress: bool,
                    followed: bool = False) -> InterfacePlan:
    if link.ifindex in bridges:
        return bridges[link.ifindex].interface_plan(link)
    if link.master in bridges and link.bridge_port is not None:
        return plan_bridge_port(snap, link, bridges[link.master], bridge_egress)
    slow: list[SlowPath] = []
    ingress_block = ingress_guard(snap, link)
    features: Features | None = None
    if ingress_block:
        slow.append(ingress_block)
    else:
        features = routing_features(snap, link, family_blocks, slow, followed)
        if features and bridge_egress:  # a route may point into a bridge
            features = dataclasses.replace(features, bridge_egress=True)
    egress_block = egress_guard(snap, link)
    if egress_block:
        slow.append(egress_block)
    return InterfacePlan(link.ifindex, link.ifname, link.address, features,
                         egress_block is None, tuple(slow))

