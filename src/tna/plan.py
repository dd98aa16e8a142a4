"""The planner: a pure function from a :class:`~tna.model.Snapshot` to a :class:`Plan`.

Role in the flow: ``introspect`` → **plan** → ``datapath.loader.apply``.  For each interface the
plan says which fast-path features its program gets, whether the fast path may transmit out of
it, and, for every class of traffic left to Linux, why.  Every guard here exists because the
fast path could otherwise do something Linux would not (bypass a netfilter rule, a qdisc, an
xfrm policy, an rp_filter drop, or redirect into a device that drops XDP frames).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tna.datapath.loader import Features, Port
from tna.model import AF_INET, AF_INET6, Link, NetfilterChain, Snapshot

# Hooks that forwarded traffic crosses; a rule on any of them must see every forwarded packet.
FORWARD_HOOKS = frozenset({"prerouting", "forward", "postrouting"})
NFT_FAMILIES = {AF_INET: frozenset({"ip", "inet"}), AF_INET6: frozenset({"ip6", "inet"})}
FAMILY_NAME = {AF_INET: "ipv4", AF_INET6: "ipv6"}
# Kinds whose drivers have native XDP here; anything else is left to Linux for now.
XDP_KINDS = frozenset({"", "veth"})
NETDEV_XDP_ACT_NDO_XMIT = 1 << 2


@dataclass(frozen=True)
class SlowPath:
    """A class of traffic left to Linux, with a reason code and an explanation."""

    traffic: str
    reason: str
    detail: str


@dataclass(frozen=True)
class InterfacePlan:
    ifindex: int
    ifname: str
    mac: str
    features: Features | None  # None: no TNA program on this interface
    egress: bool  # the fast path may transmit out of this interface
    slow_path: tuple[SlowPath, ...] = ()

    @property
    def port(self) -> Port:
        return Port(self.ifindex, self.ifname, self.mac, self.egress, self.features)


@dataclass(frozen=True)
class Plan:
    netns: str
    interfaces: tuple[InterfacePlan, ...]
    slow_path: tuple[SlowPath, ...]  # namespace-wide

    def ports(self) -> list[Port]:
        """What the data path must know: interfaces with a program or usable as egress."""
        return [i.port for i in self.interfaces if i.features is not None or i.egress]

    def interface(self, ifname: str) -> InterfacePlan:
        return next(i for i in self.interfaces if i.ifname == ifname)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for i, iface in zip(out["interfaces"], self.interfaces, strict=True):
            i["features"] = iface.features.names() if iface.features else None
        return out


def make_plan(snap: Snapshot) -> Plan:
    family_blocks = {af: _family_guards(snap, af) for af in (AF_INET, AF_INET6)}
    global_slow = tuple(s for blocks in family_blocks.values() for s in blocks)
    interfaces = tuple(_plan_interface(snap, link, family_blocks)
                       for link in snap.links if link.ifname != "lo")
    return Plan(snap.netns, interfaces, global_slow)


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
        if _chain_sees_forwarding(chain, af):
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

def _plan_interface(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]]
                    ) -> InterfacePlan:
    slow: list[SlowPath] = []
    ingress_block = _ingress_guard(snap, link)
    features: Features | None = None
    if ingress_block:
        slow.append(ingress_block)
    else:
        features = _features(snap, link, family_blocks, slow)
    egress_block = _egress_guard(snap, link)
    if egress_block:
        slow.append(egress_block)
    return InterfacePlan(link.ifindex, link.ifname, link.address, features,
                         egress_block is None, tuple(slow))


def _ingress_guard(snap: Snapshot, link: Link) -> SlowPath | None:
    """Why no TNA program may run on ``link``, or None."""
    everything = f"all traffic received on {link.ifname}"
    if link.xdp and not link.xdp.ours:
        return SlowPath(everything, "foreign_xdp",
                        f"XDP program {link.xdp.prog_id} of another owner is attached; "
                        "TNA leaves the interface alone")
    if link.kind not in XDP_KINDS:
        return SlowPath(everything, "unsupported_kind",
                        f"{link.kind} devices are not accelerated")
    if link.master is not None:
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
    if v4 and rp and any(not r.is_default for r in snap.rules if r.family == AF_INET):
        v4 = False
        slow.append(SlowPath(f"ipv4 forwarding from {link.ifname}", "rp_filter_with_rules",
                             f"rp_filter={rp} with policy routing rules cannot be emulated "
                             "exactly (Linux's reverse lookup uses iif=lo)"))
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
    if link.master is not None:
        return SlowPath(routed_out, "enslaved", "enslaved interfaces are not targets")
    if not link.up:
        return SlowPath(routed_out, "link_down", "interface is down")
    if link.xdp_features is None or not link.xdp_features & NETDEV_XDP_ACT_NDO_XMIT:
        why = ("its veth peer has neither an XDP program nor GRO on: redirected frames "
               "would be dropped silently" if link.kind == "veth"
               else "driver does not accept XDP frames (no ndo_xdp_xmit)")
        return SlowPath(routed_out, "no_xdp_xmit", why)
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
