"""The planner: a pure function from a :class:`~tna.model.Snapshot` to a :class:`Plan`.

Role in the flow: ``introspect`` → **plan** → ``datapath.loader.apply``.  For each interface the
plan says which fast-path features its program gets, whether the fast path may transmit out of
it, and, for every class of traffic left to Linux, why.  Every guard here exists because the
fast path could otherwise do something Linux would not (bypass a netfilter rule, a qdisc, an
xfrm policy, an rp_filter drop, or redirect into a device that drops XDP frames).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from tna.datapath.firewall import FirewallTooLarge, check_fits
from tna.datapath.loader import Features, Namespace, Port
from tna.firewall.compile import FirewallError, compile_family, conntrack_users
from tna.firewall.tables import FwTables
from tna.model import (
    AF_INET,
    AF_INET6,
    BridgeInfo,
    BridgePort,
    Link,
    NetfilterChain,
    NetfilterSet,
    Snapshot,
)

# Hooks that forwarded traffic crosses; a rule on any of them must see every forwarded packet.
FORWARD_HOOKS = frozenset({"prerouting", "forward", "postrouting"})
NFT_FAMILIES = {AF_INET: frozenset({"ip", "inet"}), AF_INET6: frozenset({"ip6", "inet"})}
FAMILY_NAME = {AF_INET: "ipv4", AF_INET6: "ipv6"}
# Kinds whose drivers have native XDP here; anything else is left to Linux for now.
XDP_KINDS = frozenset({"", "veth"})
NETDEV_XDP_ACT_NDO_XMIT = 1 << 2
RTPROT_KERNEL = 2
# Bridge-family hooks: bridged frames cross prerouting/forward/postrouting; frames for the
# bridge itself (routed from it) prerouting/input; frames the bridge sends output/postrouting.
BRIDGE_SWITCH_HOOKS = FORWARD_HOOKS
BRIDGE_IN_HOOKS = frozenset({"prerouting", "input"})
BRIDGE_OUT_HOOKS = frozenset({"output", "postrouting"})
BR_NF_SYSCTL = {AF_INET: "bridge-nf-call-iptables", AF_INET6: "bridge-nf-call-ip6tables"}


@dataclass(frozen=True)
class SlowPath:
    """A class of traffic left to Linux, with a reason code and an explanation."""

    traffic: str
    reason: str
    detail: str


@dataclass(frozen=True)
class BridgePortPlan:
    """What ``tna_brports`` says about a bridge port: data, changed without a reload."""

    bridge: int  # ifindex of the bridge
    forwarding: bool  # STP state forwarding
    punt: tuple[str, ...] = ()  # flags that leave all of the port's frames to the kernel


@dataclass(frozen=True)
class InterfacePlan:
    ifindex: int
    ifname: str
    mac: str
    features: Features | None  # None: no TNA program on this interface
    egress: bool  # the fast path may transmit out of this interface (a bridge: route into it)
    slow_path: tuple[SlowPath, ...] = ()
    bridge: bool = False  # a bridge device: no program, never a redirect target itself
    bridge_port: BridgePortPlan | None = None  # a port of an accelerated bridge
    accept_redirects: bool = False  # see _with_redirects()
    redirects_unwatched: bool = False

    @property
    def port(self) -> Port:
        return Port(self.ifindex, self.ifname, self.mac, self.egress, self.features,
                    bridge=self.bridge, accept_redirects=self.accept_redirects,
                    redirects_unwatched=self.redirects_unwatched)


@dataclass(frozen=True)
class Plan:
    netns: str
    interfaces: tuple[InterfacePlan, ...]
    slow_path: tuple[SlowPath, ...]  # namespace-wide
    namespace: Namespace = field(default_factory=Namespace)  # namespace-wide fast-path data

    def ports(self) -> list[Port]:
        """What the data path must know: interfaces with a program or usable as egress."""
        return [i.port for i in self.interfaces
                if i.features is not None or i.egress or i.bridge]

    def bridge_ports(self) -> list[InterfacePlan]:
        return [i for i in self.interfaces if i.bridge_port is not None]

    def interface(self, ifname: str) -> InterfacePlan:
        return next(i for i in self.interfaces if i.ifname == ifname)

    def to_dict(self) -> dict[str, Any]:
        # the classifier tables (up to 2 x 65536 port classes) are summarised, not dumped
        out = dataclasses.asdict(dataclasses.replace(
            self, namespace=dataclasses.replace(self.namespace, firewall=(None, None))))
        for i, iface in zip(out["interfaces"], self.interfaces, strict=True):
            i["features"] = iface.features.names() if iface.features else None
        out["namespace"]["denied_sources_v4"] = sorted(self.namespace.denied_sources_v4)
        out["namespace"]["firewall"] = {
            fam: None if ft is None else {
                "rules": len(ft.rules), "classes": len(ft.classes), "fields": sorted(ft.used),
                "stateful": ft.stateful, "unsupported": [str(u.rule) for u in ft.unsupported]}
            for fam, ft in zip(("ipv4", "ipv6"), self.namespace.firewall, strict=True)}
        return out


def make_plan(snap: Snapshot) -> Plan:
    firewalls = {af: _firewall(snap, af) for af in (AF_INET, AF_INET6)}
    family_blocks = {af: _family_guards(snap, af) + firewalls[af].blocks
                     for af in (AF_INET, AF_INET6)}
    global_slow = tuple(s for blocks in family_blocks.values() for s in blocks)
    global_slow += tuple(s for af, fw in firewalls.items() if not family_blocks[af]
                         for s in fw.partial)
    bridges = {lk.ifindex: _plan_bridge(snap, lk, family_blocks) for lk in snap.links
               if lk.kind == "bridge" and lk.bridge is not None}
    bridge_egress = any(b.routable_to for b in bridges.values())
    interfaces = tuple(_plan_interface(snap, link, family_blocks, bridges, bridge_egress)
                       for link in snap.links if link.ifname != "lo")
    tables = {af: None if family_blocks[af] else fw.tables for af, fw in firewalls.items()}
    interfaces = tuple(_with_firewall(i, tables) for i in interfaces)
    namespace = dataclasses.replace(
        _namespace(snap), firewall=(tables[AF_INET], tables[AF_INET6]),
        ct_timeouts_ms=(snap.sysctls.conntrack_udp_timeout_stream * 1000,
                        snap.sysctls.conntrack_udp_timeout * 1000))
    return Plan(snap.netns, _with_redirects(snap, interfaces), global_slow, namespace)


# ---- the forward hook ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Firewall:
    """One family's forward hook: its classifier, or why the family stays on Linux."""

    tables: FwTables | None = None  # None: no classifier needed (or possible)
    blocks: list[SlowPath] = field(default_factory=list)  # the whole family to Linux
    partial: list[SlowPath] = field(default_factory=list)  # traffic some rules keep on Linux


def _handled_by_firewall(chain: NetfilterChain) -> bool:
    """A forward-hook chain that the classifier evaluates (its unsupported rules included)."""
    return chain.hook == "forward" and chain.type in ("filter", None)


def _firewall(snap: Snapshot, af: int) -> _Firewall:
    fam = FAMILY_NAME[af]
    hooked = [c for c in snap.netfilter
              if _chain_sees_forwarding(c, af) and _handled_by_firewall(c)]
    tracking = conntrack_users(snap.netfilter, af)
    if not hooked and not tracking:
        return _Firewall()
    traffic = f"{fam} forwarding"
    if tracking and snap.sysctls.conntrack_acct:
        return _Firewall(blocks=[SlowPath(traffic, "conntrack_acct",
                                          "net.netfilter.nf_conntrack_acct is on: the fast path "
                                          "cannot keep conntrack's per-flow counters")])
    ifindexes = tuple(sorted((lk.ifname, lk.ifindex) for lk in snap.links))
    try:
        tables = _compiled(snap.netfilter, snap.netfilter_sets, af, ifindexes)
        check_fits(tables)  # what the data path's maps hold, checked here, not at load time
    except (FirewallError, FirewallTooLarge) as e:
        return _Firewall(blocks=[SlowPath(traffic, "firewall_unsupported", str(e))])
    partial = [SlowPath(f"{traffic}: {u.traffic}", "firewall_rule", f"{u.rule}: {u.why}")
               for u in tables.unsupported]
    if tracking:
        partial.append(SlowPath(f"{traffic}: every flow but established UDP", "conntrack",
                                f"conntrack is active ({tracking[0]}"
                                f"{f' and {len(tracking) - 1} more' if len(tracking) > 1 else ''})"
                                ": new flows, TCP (window tracking needs every segment) and "
                                "ICMP go to Linux"))
    return _Firewall(tables, partial=partial)


@functools.lru_cache(maxsize=8)
def _compiled(chains: tuple[NetfilterChain, ...], sets: tuple[NetfilterSet, ...], af: int,
              ifindexes: tuple[tuple[str, int], ...]) -> FwTables:
    """compile_family, remembered: the daemon re-plans on every route or link change, and a
    large ruleset takes a good part of a second to compile (errors are not cached)."""
    return compile_family(chains, sets, af, dict(ifindexes))


def _with_firewall(plan: InterfacePlan, tables: dict[int, FwTables | None]) -> InterfacePlan:
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


def _with_redirects(snap: Snapshot, interfaces: tuple[InterfacePlan, ...]
                    ) -> tuple[InterfacePlan, ...]:
    """Egresses that accept ICMP redirects: bpf_fib_lookup() ignores the exceptions they
    create, so gateway routes out of them are fast only while the data path has seen no
    redirect the kernel may still hold, and only if a TNA program sees where they arrive."""
    out = []
    for i in interfaces:
        ifs = snap.sysctls.interfaces.get(i.ifname)
        if not (ifs and ifs.accept_redirects and i.egress):
            out.append(i)
            continue
        ports = [p for p in interfaces if (lk := snap.link(p.ifindex)) and lk.master == i.ifindex]
        watched = (all(p.features is not None for p in ports) and bool(ports) if i.bridge
                   else i.features is not None)
        slow = i.slow_path if watched else (*i.slow_path, SlowPath(
            f"ipv4 routed via a gateway out of {i.ifname}", "redirects_unwatched",
            "accept_redirects is on and ICMP redirects arriving here bypass every TNA program "
            "(net.ipv4.conf.*.accept_redirects=0 lifts this)"))
        out.append(dataclasses.replace(i, accept_redirects=True, redirects_unwatched=not watched,
                                       slow_path=slow))
    return tuple(out)


def _namespace(snap: Snapshot) -> Namespace:
    """Sources Linux may refuse and route MTU metrics: data the fast path checks per packet."""
    denied: set[str] = set()
    for a in snap.addresses:
        if a.family != AF_INET:
            continue
        denied.add(a.address)  # inet_lookup_ifaddr_rcu(): a local source is martian
        if a.prefixlen < 31:  # fib_validate_source() full check: broadcast is no unicast
            net = ipaddress.IPv4Network(f"{a.address}/{a.prefixlen}", strict=False)
            denied.add(str(net.broadcast_address))
    mtus = {af: [r.mtu for r in snap.routes if r.family == af and r.mtu]
            for af in (AF_INET, AF_INET6)}
    return Namespace(frozenset(denied), min(mtus[AF_INET], default=0),
                     min(mtus[AF_INET6], default=0))


# ---- namespace-wide guards, per address family -----------------------------------------------

def _family_guards(snap: Snapshot, af: int) -> list[SlowPath]:
    """Reasons the whole family's forwarding must stay on Linux; empty if it may be fast."""
    fam = FAMILY_NAME[af]
    traffic = f"{fam} forwarding"
    out: list[SlowPath] = []
    enabled = snap.sysctls.ipv4_forwarding if af == AF_INET else snap.sysctls.ipv6_forwarding
    if af == AF_INET:  # IPv4 forwards per ingress interface (conf/<if>/forwarding)
        enabled = enabled or any(s.ipv4_forwarding for s in snap.sysctls.interfaces.values())
    if not enabled:
        out.append(SlowPath(traffic, "forwarding_disabled", f"{fam} forwarding is off"))
    for chain in snap.netfilter:
        if _chain_sees_forwarding(chain, af) and not _handled_by_firewall(chain):
            out.append(SlowPath(traffic, "netfilter_hook",
                                f"{chain.source} {chain.family} {chain.table} {chain.name} "
                                f"(hook {chain.hook}) could act on forwarded packets"))
    for pol in snap.xfrm_policies:
        if pol.family in (af, 0):
            out.append(SlowPath(traffic, "xfrm_policy",
                                f"xfrm policy dir {pol.direction} {pol.selector}"))
    multipath = [r for r in snap.routes if r.family == af and (r.multipath or r.nhid)]
    if multipath:
        out.append(SlowPath(traffic, "multipath_route",
                            f"{len(multipath)} multipath/nexthop-object route(s): next-hop "
                            "selection is not proven identical to Linux's"))
    if af == AF_INET6 and snap.sysctls.ipv6_proxy_ndp:
        out.append(SlowPath(traffic, "proxy_ndp", "net.ipv6.conf.all.proxy_ndp is on"))
    return out


def _chain_sees_forwarding(chain: NetfilterChain, af: int) -> bool:
    return (chain.family in NFT_FAMILIES[af] and chain.hook in FORWARD_HOOKS
            and chain.has_effect)


# ---- per interface ---------------------------------------------------------------------------

def _plan_interface(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]],
                    bridges: dict[int, _Bridge], bridge_egress: bool) -> InterfacePlan:
    if link.ifindex in bridges:
        return bridges[link.ifindex].interface_plan(link)
    if link.master in bridges and link.bridge_port is not None:
        return _plan_bridge_port(snap, link, bridges[link.master], bridge_egress)
    slow: list[SlowPath] = []
    ingress_block = _ingress_guard(snap, link)
    features: Features | None = None
    if ingress_block:
        slow.append(ingress_block)
    else:
        features = _features(snap, link, family_blocks, slow)
        if features and bridge_egress:  # a route may point into a bridge
            features = dataclasses.replace(features, bridge_egress=True)
    egress_block = _egress_guard(snap, link)
    if egress_block:
        slow.append(egress_block)
    return InterfacePlan(link.ifindex, link.ifname, link.address, features,
                         egress_block is None, tuple(slow))


def _ingress_guard(snap: Snapshot, link: Link, bridge_port: bool = False) -> SlowPath | None:
    """Why no TNA program may run on ``link``, or None; ``bridge_port``: a port of a bridge
    TNA accelerates, where being enslaved is the point, not a reason."""
    everything = f"all traffic received on {link.ifname}"
    if link.xdp and not link.xdp.ours:
        return SlowPath(everything, "foreign_xdp",
                        f"XDP program {link.xdp.prog_id} of another owner is attached; "
                        "TNA leaves the interface alone")
    if link.kind not in XDP_KINDS:
        return SlowPath(everything, "unsupported_kind",
                        f"{link.kind} devices are not accelerated")
    if link.master is not None and not bridge_port:
        master = snap.link(link.master)
        return SlowPath(everything, "enslaved",
                        f"port of {master.ifname if master else link.master} "
                        f"({master.kind if master else '?'}); not accelerated yet")
    if link.tc_ingress:
        return SlowPath(everything, "tc_ingress", "tc ingress filters run after XDP")
    chain = _netdev_chain(snap, link, "ingress")
    if chain:
        return SlowPath(everything, "netfilter_ingress",
                        f"netfilter {chain.family} {chain.table} {chain.name} hooks ingress")
    return None


def _features(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]],
              slow: list[SlowPath]) -> Features | None:
    ifs = snap.sysctls.interfaces.get(link.ifname)
    v4 = not family_blocks[AF_INET] and ifs is not None and ifs.ipv4_forwarding
    if not family_blocks[AF_INET] and not v4:
        slow.append(SlowPath(f"ipv4 forwarding from {link.ifname}", "forwarding_disabled",
                             f"net.ipv4.conf.{link.ifname}.forwarding is off"))
    rp = ifs.rp_filter if ifs else 0
    # Linux validates sources against the FIB (fib_validate_source) under rp_filter, and also
    # whenever custom rules or local routes exist; we emulate it with a reverse lookup, which
    # differs from Linux's (iif=lo) only for rules that select on the input interface.
    custom = [r for r in snap.rules if r.family == AF_INET and not r.is_default]
    full_check = bool(custom) or any(r.family == AF_INET and r.rtm_type == "local"
                                     and r.protocol != RTPROT_KERNEL for r in snap.routes)
    by_iif = [r for r in custom if any(s.startswith(("iif ", "l3mdev")) for s in r.selectors)]
    if v4 and (rp or full_check) and by_iif:
        v4 = False
        slow.append(SlowPath(f"ipv4 forwarding from {link.ifname}", "rp_filter_with_rules",
                             f"source validation (rp_filter={rp}, custom rules) with rules "
                             "that select on the input interface cannot be emulated exactly "
                             "(Linux's reverse lookup uses iif=lo)"))
    if not rp and full_check:
        rp = 2  # Linux's full check with rp_filter 0: the source must route as unicast
    v6 = not family_blocks[AF_INET6]
    if not (v4 or v6):
        return None
    return Features(ipv4_router=v4, ipv6_router=v6,
                    ipv4_rp_filter=rp if v4 and rp in (1, 2) else 0,
                    # a veth's frames may come from a local stack with offloaded checksums
                    verify_l4_csum=link.kind == "veth")


def _egress_guard(snap: Snapshot, link: Link) -> SlowPath | None:
    """Why the fast path may not transmit out of ``link``, or None."""
    routed_out = f"traffic routed out of {link.ifname}"
    if link.kind not in XDP_KINDS:
        return SlowPath(routed_out, "unsupported_kind", f"{link.kind} devices are not targets")
    if link.master is not None and not _is_bridge_port(snap, link):
        return SlowPath(routed_out, "enslaved", "enslaved interfaces are not targets")
    if not link.up:
        return SlowPath(routed_out, "link_down", "interface is down")
    if link.xdp_features is None or not link.xdp_features & NETDEV_XDP_ACT_NDO_XMIT:
        why = ("its veth peer has neither an XDP program nor GRO on: redirected frames "
               "would be dropped silently" if link.kind == "veth"
               else "driver does not accept XDP frames (no ndo_xdp_xmit)")
        return SlowPath(routed_out, "no_xdp_xmit", why)
    return _egress_hooks_guard(snap, link, routed_out)


def _egress_hooks_guard(snap: Snapshot, link: Link, routed_out: str) -> SlowPath | None:
    """What an XDP redirect would bypass on the way out: a qdisc, tc or netfilter egress."""
    if link.qdisc and not link.qdisc.default:
        return SlowPath(routed_out, "qdisc",
                        f"root qdisc {link.qdisc.kind} would be bypassed by XDP redirect")
    if link.tc_egress:
        return SlowPath(routed_out, "tc_egress", "tc egress filters would be bypassed")
    chain = _netdev_chain(snap, link, "egress")
    if chain:
        return SlowPath(routed_out, "netfilter_egress",
                        f"netfilter {chain.family} {chain.table} {chain.name} hooks egress")
    return None


def _netdev_chain(snap: Snapshot, link: Link, hook: str) -> NetfilterChain | None:
    """A netdev (or inet ingress) base chain bound to ``link`` at ``hook`` that can act."""
    for chain in snap.netfilter:
        if (chain.family in ("netdev", "inet") and chain.hook == hook and chain.has_effect
                and (link.ifname in chain.devices or not chain.devices)):
            return chain
    return None



# ---- bridges ---------------------------------------------------------------------------------
# A bridge port gets the bridge path (tna_fdb): known unicast to a forwarding port is switched,
# frames for the bridge's own MAC are routed with the bridge as input device (when the bridge
# has addresses and may route). What the kernel bridge would decide differently (flooding,
# learning, STP, special port flags) is punted at run time, from data in the maps; what would
# make every frame of a bridge different (VLAN filtering, bridge-family netfilter, ...) keeps
# the whole bridge on Linux here.


def _is_bridge_port(snap: Snapshot, link: Link) -> bool:
    master = snap.link(link.master) if link.master is not None else None
    return (link.bridge_port is not None and master is not None and master.kind == "bridge"
            and master.bridge is not None)


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
class _Bridge:
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


def _plan_bridge(snap: Snapshot, br: Link, family_blocks: dict[int, list[SlowPath]]) -> _Bridge:
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
        chains = [c for c in snap.netfilter if _chain_sees_forwarding(c, af)] if called else []
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
            route_from = _features(snap, br, family_blocks, route_slow)
            if route_from:
                v4 = route_from.ipv4_router and has[AF_INET]
                route_from = dataclasses.replace(
                    route_from, ipv4_router=v4, ipv6_router=route_from.ipv6_router
                    and has[AF_INET6], ipv4_rp_filter=route_from.ipv4_rp_filter if v4 else 0)
                if not (route_from.ipv4_router or route_from.ipv6_router):
                    route_from = None
    return _Bridge(br, blocks, modes, family_slow, route_from, route_slow,
                   _bridge_out_guard(snap, br))


def _bridge_in_guard(snap: Snapshot, br: Link) -> SlowPath | None:
    """Why frames for the bridge's own MAC may not be routed by a port's program."""
    routed = f"traffic routed from {br.ifname}"
    if br.xdp and not br.xdp.ours:
        return SlowPath(routed, "foreign_xdp",
                        f"XDP program {br.xdp.prog_id} on {br.ifname} sees what it receives")
    if br.tc_ingress:
        return SlowPath(routed, "tc_ingress", f"tc ingress filters on {br.ifname}")
    chain = _netdev_chain(snap, br, "ingress")
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
    block = _egress_hooks_guard(snap, br, routed_out)
    if block:
        return block
    for c in _bridge_chains(snap, BRIDGE_OUT_HOOKS):
        return SlowPath(routed_out, "netfilter_bridge",
                        f"{_chain_text(c)} could act on frames the bridge sends")
    return None


def _plan_bridge_port(snap: Snapshot, link: Link, br: _Bridge, bridge_egress: bool
                      ) -> InterfacePlan:
    assert link.bridge_port is not None
    slow: list[SlowPath] = []
    features: Features | None = None
    bp = bridge_port_plan(link, br.link)
    block = _ingress_guard(snap, link, bridge_port=True)
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
    egress_block = _egress_guard(snap, link)
    if egress_block:
        slow.append(egress_block)
    return InterfacePlan(link.ifindex, link.ifname, link.address, features,
                         egress_block is None, tuple(slow), bridge_port=bp)
