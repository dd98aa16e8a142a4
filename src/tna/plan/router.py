"""Planning routed traffic: per interface, which families its program forwards.

Role in the flow: part of the planner.  Decides the routing features of an interface (IPv4 and
IPv6 forwarding, source validation, checksum verification), the namespace-wide data the fast
path checks per packet (denied sources, route MTUs), and how ICMP redirects constrain egresses.
"""

from __future__ import annotations

import dataclasses
import ipaddress

from tna.model import AF_INET, AF_INET6, Link, Snapshot
from tna.plan.guards import RTPROT_KERNEL
from tna.plan.types import Features, InterfacePlan, Namespace, SlowPath


def with_redirects(snap: Snapshot, interfaces: tuple[InterfacePlan, ...]
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


def namespace_data(snap: Snapshot) -> Namespace:
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


def routing_features(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]],
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

