"""Guards the planner shares: what makes a family, an ingress or an egress stay on Linux.

Role in the flow: part of the planner (snapshot → plan); pure functions of the snapshot.  Each
returns the :class:`~tna.plan.types.SlowPath` that explains why, or nothing.
"""

from __future__ import annotations

from tna.model import AF_INET, AF_INET6, XDP_ACT_NDO_XMIT, Link, NetfilterChain, Snapshot
from tna.plan.types import SlowPath

# Hooks that forwarded traffic crosses; a rule on any of them must see every forwarded packet.
FORWARD_HOOKS = frozenset({"prerouting", "forward", "postrouting"})
NFT_FAMILIES = {AF_INET: frozenset({"ip", "inet"}), AF_INET6: frozenset({"ip6", "inet"})}
FAMILY_NAME = {AF_INET: "ipv4", AF_INET6: "ipv6"}
# Kinds whose drivers have native XDP here; anything else is left to Linux for now.
XDP_KINDS = frozenset({"", "veth"})
RTPROT_KERNEL = 2


def handled_by_firewall(chain: NetfilterChain) -> bool:
    """A forward-hook chain that the classifier evaluates (its unsupported rules included)."""
    return chain.hook == "forward" and chain.type in ("filter", None)


def family_guards(snap: Snapshot, af: int) -> list[SlowPath]:
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
        if (chain_sees_forwarding(chain, af) and not handled_by_firewall(chain)
                and not nat_chain(chain)):
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


def nat_chain(chain: NetfilterChain) -> bool:
    """A nat base chain: it decides a connection's first packet only (always Linux's, as the
    fast path takes established flows only); conntrack's entry then says what NAT does."""
    return chain.type == "nat" and chain.hook is not None


def chain_sees_forwarding(chain: NetfilterChain, af: int) -> bool:
    return (chain.family in NFT_FAMILIES[af] and chain.hook in FORWARD_HOOKS
            and chain.has_effect)


def ingress_guard(snap: Snapshot, link: Link, bridge_port: bool = False) -> SlowPath | None:
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
    return hooks_guard(snap, link, "ingress", everything, "tc ingress filters run after XDP")


def egress_guard(snap: Snapshot, link: Link) -> SlowPath | None:
    """Why the fast path may not transmit out of ``link``, or None."""
    routed_out = f"traffic routed out of {link.ifname}"
    if link.kind not in XDP_KINDS:
        return SlowPath(routed_out, "unsupported_kind", f"{link.kind} devices are not targets")
    if link.master is not None and not is_bridge_port(snap, link):
        return SlowPath(routed_out, "enslaved", "enslaved interfaces are not targets")
    if not link.up:
        return SlowPath(routed_out, "link_down", "interface is down")
    if link.xdp_features is None or not link.xdp_features & XDP_ACT_NDO_XMIT:
        why = ("its veth peer has neither an XDP program nor GRO on: redirected frames "
               "would be dropped silently" if link.kind == "veth"
               else "driver does not accept XDP frames (no ndo_xdp_xmit)")
        return SlowPath(routed_out, "no_xdp_xmit", why)
    return egress_hooks_guard(snap, link, routed_out)


def egress_hooks_guard(snap: Snapshot, link: Link, routed_out: str) -> SlowPath | None:
    """What an XDP redirect would bypass on the way out: a qdisc, tc or netfilter egress."""
    if link.qdisc and not link.qdisc.default:
        return SlowPath(routed_out, "qdisc",
                        f"root qdisc {link.qdisc.kind} would be bypassed by XDP redirect")
    return hooks_guard(snap, link, "egress", routed_out, "tc egress filters would be bypassed")


def hooks_guard(snap: Snapshot, link: Link, hook: str, affected: str,
                tc_why: str) -> SlowPath | None:
    """tc filters or a netdev netfilter chain on ``link`` at ``hook`` (ingress or egress), which
    XDP runs before or bypasses: reasons ``tc_<hook>`` and ``netfilter_<hook>``."""
    if link.tc_ingress if hook == "ingress" else link.tc_egress:
        return SlowPath(affected, f"tc_{hook}", tc_why)
    chain = netdev_chain(snap, link, hook)
    if chain:
        return SlowPath(affected, f"netfilter_{hook}",
                        f"netfilter {chain.family} {chain.table} {chain.name} hooks {hook}")
    return None


def netdev_chain(snap: Snapshot, link: Link, hook: str) -> NetfilterChain | None:
    """A netdev (or inet ingress) base chain bound to ``link`` at ``hook`` that can act."""
    for chain in snap.netfilter:
        if (chain.family in ("netdev", "inet") and chain.hook == hook and chain.has_effect
                and (link.ifname in chain.devices or not chain.devices)):
            return chain
    return None


def is_bridge_port(snap: Snapshot, link: Link) -> bool:
    master = snap.link(link.master) if link.master is not None else None
    return (link.bridge_port is not None and master is not None and master.kind == "bridge"
            and master.bridge is not None)

