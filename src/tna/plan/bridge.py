"""Planning bridges: which bridges and ports take the fast bridge path, and what stays on Linux.

Role in the flow: part of the planner. A bridge port gets the bridge path (tna_fdb): known
unicast to a forwarding port is switched, frames for the bridge's own MAC are routed with the
bridge as input device (when the bridge has addresses and may route). What the kernel bridge
would decide differently (flooding, learning, STP, special port flags) is punted at run time,
from data in the maps; what would make every frame of a bridge different (VLAN filtering,
bridge-family netfilter, ...) keeps the whole bridge on Linux here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from tna import abi
from tna.firewall.compile import conntrack_users
from tna.model import AF_INET, AF_INET6, BridgeInfo, BridgePort, Link, NetfilterChain, Snapshot
from tna.plan.guards import (
    FAMILY_NAME,
    FORWARD_HOOKS,
    chain_sees_forwarding,
    egress_guard,
    egress_hooks_guard,
    ingress_guard,
    netdev_chain,
)
from tna.plan.router import routing_features
from tna.plan.types import BridgePortPlan, Features, InterfacePlan, SlowPath

# Bridge-family hooks: bridged frames cross prerouting/forward/postrouting; frames for the
# bridge itself (routed from it) prerouting/input; frames the bridge sends output/postrouting.
BRIDGE_SWITCH_HOOKS = FORWARD_HOOKS
BRIDGE_IN_HOOKS = frozenset({"prerouting", "input"})
BRIDGE_OUT_HOOKS = frozenset({"output", "postrouting"})
BR_NF_SYSCTL = {AF_INET: "bridge-nf-call-iptables", AF_INET6: "bridge-nf-call-ip6tables"}


def _chain_text(chain: NetfilterChain) -> str:
    return f"{chain.source} {chain.family} {chain.table} {chain.name} (hook {chain.hook})"


def _bridge_chains(snap: Snapshot, hooks: frozenset[str]) -> list[NetfilterChain]:
    return [c for c in snap.netfilter
            if c.family == "bridge" and c.hook in hooks and c.has_effect]


def port_punts(port: BridgePort, bridge: BridgeInfo) -> tuple[str, ...]:
    """Flags that change what the kernel does with a port's known-unicast frames.

    Flood flags (flood, mcast_flood, bcast_flood) only matter for frames the fast path never
    switches (unknown unicast, multicast, broadcast), so they leave the port accelerated.
    """
    out = [name for name, on in (
        ("learning off", not port.learning), ("hairpin", port.hairpin),
        ("isolated", port.isolated), ("locked", port.locked), ("mab", port.mab),
        ("neigh_suppress", port.neigh_suppress or port.neigh_vlan_suppress),
        ("proxy_arp", port.proxyarp), ("proxy_arp_wifi", port.proxyarp_wifi),
        ("vlan_tunnel", port.vlan_tunnel), ("backup_port", port.backup_port is not None),
        ("mrp", port.mrp_ring_open),
        ("bridge promiscuous", bridge.promisc)) if on]
    return tuple(out)


def brport_plan(bridge: int, port: BridgePort, info: BridgeInfo) -> BridgePortPlan:
    """The tna_brports entry of a port; pure, so live updates use it without a full plan."""
    return BridgePortPlan(bridge=bridge, forwarding=port.state == "forwarding",
                          punt=port_punts(port, info))


def bridge_port_plan(link: Link, bridge: Link) -> BridgePortPlan:
    assert link.bridge_port is not None and bridge.bridge is not None
    return brport_plan(bridge.ifindex, link.bridge_port, bridge.bridge)


@dataclass
class Bridge:
    """The planner's decisions for one bridge, shared by its ports."""

    link: Link
    blocks: list[SlowPath]  # the whole bridge stays on Linux
    modes: dict[int, int]  # family -> 0 Linux, 1 bridged, 2 bridged after br_netfilter's checks
    family_slow: list[SlowPath]
    route_from: Features | None  # routing with the bridge as input device
    route_slow: list[SlowPath]
    route_to_block: SlowPath | None

    @property
    def routable_to(self) -> bool:
        return not self.blocks and self.route_to_block is None

    def interface_plan(self, link: Link) -> InterfacePlan:
        slow = [*self.blocks, *self.family_slow, *self.route_slow]
        if self.route_to_block:
            slow.append(self.route_to_block)
        return InterfacePlan(link.ifindex, link.ifname, link.address, None, self.routable_to,
                             tuple(slow), bridge=True)


def plan_bridge(snap: Snapshot, br: Link, family_blocks: dict[int, list[SlowPath]]) -> Bridge:
    info = br.bridge
    assert info is not None
    switched = f"frames bridged by {br.ifname}"
    blocks: list[SlowPath] = []
    if info.vlan_filtering:
        blocks.append(SlowPath(switched, "vlan_filtering",
                               "VLAN-aware bridges are not accelerated (design: docs/bridge.md)"))
    if info.mst_enabled:
        blocks.append(SlowPath(switched, "bridge_mst", "per-VLAN (MST) port states"))
    if info.fdb_max_learned:
        blocks.append(SlowPath(switched, "fdb_max_learned",
                               f"fdb_max_learned {info.fdb_max_learned}: refreshing entries "
                               "for the kernel (NTF_USE) would take them out of the count of "
                               "learned entries"))
    blocks += [SlowPath(switched, "netfilter_bridge",
                        f"{_chain_text(c)} could act on bridged frames")
               for c in _bridge_chains(snap, BRIDGE_SWITCH_HOOKS)]

    modes: dict[int, int] = {}
    family_slow: list[SlowPath] = []
    ports = [lk for lk in snap.links if lk.master == br.ifindex and lk.bridge_port]
    for af in (AF_INET, AF_INET6):
        fam = FAMILY_NAME[af]
        called = (snap.sysctls.bridge_nf_call_iptables or info.nf_call_iptables
                  if af == AF_INET else
                  snap.sysctls.bridge_nf_call_ip6tables or info.nf_call_ip6tables)
        chains = [c for c in snap.netfilter if chain_sees_forwarding(c, af)] if called else []
        tracking = conntrack_users(snap.netfilter, af) if called else []
        modes[af] = 0 if chains or tracking else 2 if called else 1
        family_slow += [SlowPath(f"{fam} {switched}", "br_netfilter",
                                 f"{BR_NF_SYSCTL[af]} is on and {_chain_text(c)} could act on "
                                 "bridged packets") for c in chains]
        family_slow += [SlowPath(f"{fam} {switched}", "br_netfilter",
                                 f"{BR_NF_SYSCTL[af]} is on and conntrack tracks bridged "
                                 f"packets ({why})") for why in tracking[:1]]
    suppress = [p.ifname for p in ports if p.bridge_port and (
        p.bridge_port.neigh_suppress or p.bridge_port.neigh_vlan_suppress)]
    if suppress and modes[AF_INET6]:
        modes[AF_INET6] = 0
        family_slow.append(SlowPath(f"ipv6 {switched}", "neigh_suppress",
                                    f"neighbour suppression on {', '.join(suppress)}: the "
                                    "bridge answers or filters neighbour discovery"))

    route_slow: list[SlowPath] = []
    route_from = None
    has = {af: any(a.ifindex == br.ifindex and a.family == af and a.scope == 0
                   for a in snap.addresses) for af in (AF_INET, AF_INET6)}
    if any(has.values()):
        block = _bridge_in_guard(snap, br)
        if block:
            route_slow.append(block)
        else:
            route_from = routing_features(snap, br, family_blocks, route_slow)
            if route_from:
                v4 = route_from.ipv4_router and has[AF_INET]
                route_from = dataclasses.replace(
                    route_from, ipv4_router=v4, ipv6_router=route_from.ipv6_router
                    and has[AF_INET6], ipv4_rp_filter=route_from.ipv4_rp_filter if v4 else 0)
                if not (route_from.ipv4_router or route_from.ipv6_router):
                    route_from = None
    return Bridge(br, blocks, modes, family_slow, route_from, route_slow,
                   _bridge_out_guard(snap, br))


def _bridge_in_guard(snap: Snapshot, br: Link) -> SlowPath | None:
    """Why frames for the bridge's own MAC may not be routed by a port's program."""
    routed = f"traffic routed from {br.ifname}"
    if br.xdp and not br.xdp.ours:
        return SlowPath(routed, "foreign_xdp",
                        f"XDP program {br.xdp.prog_id} on {br.ifname} sees what it receives")
    if br.tc_ingress:
        return SlowPath(routed, "tc_ingress", f"tc ingress filters on {br.ifname}")
    chain = netdev_chain(snap, br, "ingress")
    if chain:
        return SlowPath(routed, "netfilter_ingress",
                        f"netfilter {chain.family} {chain.table} {chain.name} hooks ingress")
    for c in _bridge_chains(snap, BRIDGE_IN_HOOKS):
        return SlowPath(routed, "netfilter_bridge",
                        f"{_chain_text(c)} could act on frames for {br.ifname}")
    return None


def _bridge_out_guard(snap: Snapshot, br: Link) -> SlowPath | None:
    """Why the fast path may not route into the bridge (resolving the port in its FDB)."""
    routed_out = f"traffic routed out of {br.ifname}"
    if not br.up:
        return SlowPath(routed_out, "link_down", "bridge is down")
    block = egress_hooks_guard(snap, br, routed_out)
    if block:
        return block
    for c in _bridge_chains(snap, BRIDGE_OUT_HOOKS):
        return SlowPath(routed_out, "netfilter_bridge",
                        f"{_chain_text(c)} could act on frames the bridge sends")
    return None


def plan_bridge_port(snap: Snapshot, link: Link, br: Bridge, bridge_egress: bool
                      ) -> InterfacePlan:
    assert link.bridge_port is not None
    slow: list[SlowPath] = []
    features: Features | None = None
    bp = bridge_port_plan(link, br.link)
    block = ingress_guard(snap, link, bridge_port=True)
    if block:
        slow.append(block)
    elif br.blocks:
        slow += br.blocks
    else:
        route = br.route_from
        v4, v6 = br.modes[AF_INET], br.modes[AF_INET6]
        slow += br.family_slow + br.route_slow
        if v4 or v6 or route:
            features = Features(
                ipv4_router=bool(route and route.ipv4_router),
                ipv6_router=bool(route and route.ipv6_router),
                ipv4_rp_filter=route.ipv4_rp_filter if route else 0,
                verify_l4_csum=link.kind == "veth",
                bridge_port=True, bridge_ipv4=v4, bridge_ipv6=v6,
                bridge_egress=bool(route) and bridge_egress)
            slow.append(SlowPath(
                f"frames on {link.ifname} that {br.link.ifname} floods or learns from",
                "bridge_flood_learn",
                "unknown unicast, broadcast, multicast, link-local groups (01:80:c2:00:00:0x), "
                "tagged and non-IP frames, frames from new or moved sources, and frames for the "
                "bridge that are not routed go to the kernel bridge"))
    if not bp.forwarding:
        slow.append(SlowPath(f"all frames of {link.ifname}", "port_state",
                             f"STP state {link.bridge_port.state}: the kernel does not forward "
                             "from or to it (checked per frame, follows state changes)"))
    if bp.punt:
        slow.append(SlowPath(f"all frames of {link.ifname}", "port_flags",
                             f"{', '.join(bp.punt)} change the kernel's decisions"))
    egress_block = egress_guard(snap, link)
    if egress_block:
        slow.append(egress_block)
    # IFLA_MIN_MTU is the driver's: no MTU the port can be given makes a short frame too big
    return InterfacePlan(link.ifindex, link.ifname, link.address, features,
                         egress_block is None, tuple(slow), bridge_port=bp,
                         mtu_floor=link.min_mtu >= abi.TNA_MTU_FLOOR)
