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
    """Sources Linux may refuse, route MTU metrics and the IPv6 local addresses: data the fast
    path checks per packet."""
    mtus = {af: [r.mtu for r in snap.routes if r.family == af and r.mtu]
            for af in (AF_INET, AF_INET6)}
    return Namespace(denied_sources_v4(snap), min(mtus[AF_INET], default=0),
                     min(mtus[AF_INET6], default=0),
                     local_v6=local_destinations(snap, AF_INET6) or frozenset())


def denied_sources_v4(snap: Snapshot) -> frozenset[str]:
    denied: set[str] = set()
    for a in snap.addresses:
        if a.family != AF_INET:
            continue
        denied.add(a.address)  # inet_lookup_ifaddr_rcu(): a local source is martian
        if a.prefixlen < 31:  # fib_validate_source() full check: broadcast is no unicast
            net = ipaddress.IPv4Network(f"{a.address}/{a.prefixlen}", strict=False)
            denied.add(str(net.broadcast_address))
    return frozenset(denied)


def routing_features(snap: Snapshot, link: Link, family_blocks: dict[int, list[SlowPath]],
              slow: list[SlowPath], followed: bool = False) -> Features | None:
    """``followed``: a daemon follows the configuration (``tna run``), so data it mirrors
    (tna_local_v6) stays current."""
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
                    verify_l4_csum=link.kind == "veth",
                    fib_direct_v4=v4 and fib_direct(snap, AF_INET),
                    fib_direct_v6=v6 and followed and fib_direct(snap, AF_INET6))


# ---- BPF_FIB_LOOKUP_DIRECT -------------------------------------------------------------------

RT_TABLE_LOCAL, RT_TABLE_MAIN, RT_TABLE_DEFAULT = 255, 254, 253
# The rules a namespace starts with: (priority, table) per family, all "lookup".
DEFAULT_RULES = {AF_INET: {(0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN), (32767, RT_TABLE_DEFAULT)},
                 AF_INET6: {(0, RT_TABLE_LOCAL), (32766, RT_TABLE_MAIN)}}
# Local-table ranges whose destinations the header checks punt anyway (ipv4_martian(),
# ipv6_addr_check()): 127/8 on lo, IPv6 multicast and link-local.
PUNTED_ANYWAY = {AF_INET: (ipaddress.ip_network("127.0.0.0/8"),),
                 AF_INET6: (ipaddress.ip_network("ff00::/8"), ipaddress.ip_network("fe80::/10"))}
HOST_LEN = {AF_INET: 32, AF_INET6: 128}
LOCAL_TYPES = frozenset({"local", "broadcast", "anycast"})


def local_destinations(snap: Snapshot, af: int) -> frozenset[str] | None:
    """The local table's destinations the data path must recognise itself (host routes of
    type local, broadcast or anycast, outside the ranges it punts anyway), or None if the
    local table holds anything else (a local prefix, a unicast route, ...): then only the full
    lookup is exact."""
    out = set()
    for r in snap.routes:
        if r.family != af or r.table != RT_TABLE_LOCAL:
            continue
        net = ipaddress.ip_network(f"{r.dst or ('0.0.0.0' if af == AF_INET else '::')}"
                                   f"/{r.dst_len}")
        if any(net.subnet_of(p) for p in PUNTED_ANYWAY[af]):  # type: ignore[arg-type]
            continue
        if r.rtm_type not in LOCAL_TYPES or r.dst_len != HOST_LEN[af]:
            return None
        out.add(str(net.network_address))
    return frozenset(out)


def fib_direct(snap: Snapshot, af: int) -> bool:
    """May the fast path ask the main table alone (BPF_FIB_LOOKUP_DIRECT)?  The program asks
    only while the kernel says no policy rule ever changed (fib_has_custom_rules, read per
    packet: a new rule counts at once); the plan asks for it where that is in sight: the
    family's rules are the defaults (the default table is consulted only after a miss in
    main, and a miss punts either way), no VRF (DIRECT would use its table), and for IPv6,
    whose local table stays apart from main, a local table of host routes only, which the data
    path mirrors (Namespace.local_v6).  IPv4 needs no mirror: without custom rules the kernel
    keeps its local table merged into main."""
    rules = [r for r in snap.rules if r.family == af]
    if {(r.priority, r.table) for r in rules} != DEFAULT_RULES[af] or len(rules) != len(
            DEFAULT_RULES[af]) or any(r.selectors or r.action != "to_tbl" for r in rules):
        return False
    if any(lk.kind == "vrf" for lk in snap.links):
        return False
    return af == AF_INET or local_destinations(snap, af) is not None
