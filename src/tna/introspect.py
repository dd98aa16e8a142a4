"""Read the live configuration of the current network namespace into a :class:`Snapshot`.

Role in the flow: kernel → ``Snapshot``.  This is the only module that asks the kernel what
the forwarding configuration *is*; the planner then works on the snapshot alone.  The caller
has already entered the namespace (``tna.netns``), so every socket, ``/proc`` read and
subprocess here is opened by the current thread and sees that namespace.

Nothing here changes the kernel.  Where the kernel cannot tell (an error, a missing file),
the value chosen is the one that keeps the planner conservative.

Root qdiscs and ``Qdisc.default``: a qdisc the kernel attaches by itself when a device comes
up (``noqueue`` on veth/bridge/loopback, ``pfifo_fast``/``fq_codel``/``mq`` on real NICs, and
the per-queue children of ``mq``) reports handle ``0:`` (0x00000000).  A qdisc added with
``tc qdisc add`` never has major 0: without ``handle`` the kernel allocates one from
``8001:`` upwards (a global counter, so ``8006:`` and so on), with ``handle N:`` it is ``N``.
So ``default`` is "major number of the root handle is 0".
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import gzip
import os
import socket
import struct
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

from pyroute2 import IPRoute

from tna import netfilter, netlink
from tna.datapath import libbpf
from tna.model import (
    AF_INET,
    AF_INET6,
    BR_STATES,
    Address,
    BridgeInfo,
    BridgePort,
    FdbEntry,
    InterfaceSysctls,
    Link,
    Neighbour,
    NetfilterChain,
    NetfilterSet,
    Qdisc,
    Route,
    Rule,
    Snapshot,
    Sysctls,
    XdpAttachment,
    XfrmPolicy,
)
from tna.netlink import (
    AF_BRIDGE,
    NDA_CACHEINFO,
    NDA_FLAGS_EXT,
    NDA_LLADDR,
    NDA_MASTER,
    NDA_VLAN,
    NDMSG,
    RTM_DELROUTE,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    RTM_GETRULE,
    RTM_NEWNEIGH,
    RTMSG,
)

IFF_UP = 0x1
TC_H_ROOT = 0xFFFFFFFF
TC_H_CLSACT_EGRESS = 0xFFFFFFF3  # TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)

# rtm_type (include/uapi/linux/rtnetlink.h: RTN_*)
RTN_NAMES = {
    0: "unspec", 1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
    6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat", 11: "xresolve",
}

# FR_ACT_* (include/uapi/linux/fib_rules.h)
FR_ACT_NAMES = {
    0: "unspec", 1: "to_tbl", 2: "goto", 3: "nop", 6: "blackhole", 7: "unreachable",
    8: "prohibit",
}

# NUD_* bits (include/uapi/linux/neighbour.h); an entry has exactly one of them set.
NUD_NAMES = (
    (0x01, "incomplete"), (0x02, "reachable"), (0x04, "stale"), (0x08, "delay"),
    (0x10, "probe"), (0x20, "failed"), (0x40, "noarp"), (0x80, "permanent"),
)

# pyroute2 decodes IFLA_XDP_ATTACHED to these strings; the kernel's numbers are kept too.
XDP_MODES: dict[Any, str] = {
    "xdp": "native", "xdpgeneric": "generic", "xdpoffload": "offload", "xdpmulti": "multi",
    1: "native", 2: "generic", 3: "offload", 4: "multi",
}


def snapshot(netns: str = "", our_prog_ids: frozenset[int] = frozenset(),
             netfilter_chains: tuple[NetfilterChain, ...] | None = None,
             netfilter_sets: tuple[NetfilterSet, ...] | None = None,
             xfrm: tuple[XfrmPolicy, ...] | None = None, plan_only: bool = False,
             routes: tuple[Route, ...] | None = None) -> Snapshot:
    """Everything the planner needs, read from the current thread's network namespace.

    ``our_prog_ids`` are the ids of the XDP programs TNA attached, to tell them from others'.
    ``netfilter_chains`` (with ``netfilter_sets``) and ``xfrm``, when given, are used instead of
    reading them again: the daemon re-reads them only when their own notifications say they
    changed (they cost a subprocess each). ``plan_only`` leaves out what the planner does not read
    (IPv6 addresses but bridges', neighbours, the FDB: the fast path asks the kernel for those
    per packet, the FDB mirror follows its own notifications; of the routes, only those
    :func:`plan_routes` keeps).  ``routes``, when given, is used instead of reading them (the
    daemon follows them from notifications: :class:`PlanRoutes`).
    Raises :class:`tna.netfilter.NetfilterError` when the ruleset cannot be read: a snapshot
    that silently lacked netfilter would let the planner bypass it.
    """
    features = xdp_features()
    with IPRoute() as ip:  # opened here, so in the current namespace
        raw_links = list(ip.get_links())
        qdiscs = _qdiscs_by_ifindex(ip.get_qdiscs())
        present = {msg["index"] for msg in raw_links}
        links = tuple(
            _link(ip, msg, present, qdiscs.get(msg["index"], []), features, our_prog_ids)
            for msg in raw_links
        )
        # the planner reads addresses: bridges' (routing from a bridge needs one) and every
        # IPv4 address (the fast path must not forward from the namespace's own sources)
        bridges = {lk.ifindex for lk in links if lk.kind == "bridge"}
        addresses = tuple(
            a for a in (_address(msg) for fam in (AF_INET, AF_INET6)
                        for msg in ip.get_addr(family=fam))
            if not plan_only or a.family == AF_INET or a.ifindex in bridges)
        neighbours = () if plan_only else tuple(
            _neighbour(msg) for fam in (AF_INET, AF_INET6)
            for msg in ip.get_neighbours(family=fam))
    links = with_bridge_details(links)
    if netfilter_chains is None:
        netfilter_chains, netfilter_sets = netfilter.ruleset()
    return Snapshot(
        netns=netns,
        kernel=os.uname().release,
        links=links,
        addresses=addresses,
        routes=routes if routes is not None else plan_routes() if plan_only else all_routes(),
        rules=rules(),
        neighbours=neighbours,
        sysctls=sysctls(lk.ifname for lk in links),
        netfilter=netfilter_chains,
        netfilter_sets=netfilter_sets or (),
        xfrm_policies=xfrm_policies() if xfrm is None else xfrm,
        fdb=fdb() if not plan_only and any(lk.bridge for lk in links) else (),
    )


# --- links -------------------------------------------------------------------------------


def _link(ip: Any, msg: Any, present: set[int], qdiscs: list[Any],
          features: Mapping[int, int], our_prog_ids: frozenset[int]) -> Link:
    ifindex = int(msg["index"])
    linkinfo = msg.get_attr("IFLA_LINKINFO")
    kind = (linkinfo.get_attr("IFLA_INFO_KIND") if linkinfo is not None else None) or ""
    root = _root_qdisc(qdiscs)
    tcx_in, tcx_out = tcx_count(ifindex, BPF_TCX_INGRESS), tcx_count(ifindex, BPF_TCX_EGRESS)
    return Link(
        ifindex=ifindex,
        ifname=msg.get_attr("IFLA_IFNAME") or "",
        kind=kind,
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        address=(msg.get_attr("IFLA_ADDRESS") or "").lower(),
        operstate=msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN",
        up=bool(msg["flags"] & IFF_UP),
        master=msg.get_attr("IFLA_MASTER") or None,
        peer_ifindex=_veth_peer(msg, kind, present),
        xdp=xdp_attachment(msg.get_attr("IFLA_XDP"), our_prog_ids),
        qdisc=root,
        tc_ingress=tcx_in > 0 or any(_kind(q) in ("ingress", "clsact") for q in qdiscs),
        tc_egress=tcx_out > 0 or _egress_filters(ip, ifindex, qdiscs, root),
        xdp_features=features.get(ifindex),
        min_mtu=int(msg.get_attr("IFLA_MIN_MTU") or 0),
    )


def _veth_peer(msg: Any, kind: str, present: set[int]) -> int | None:
    """The peer's ifindex, only when the peer lives in this namespace too.

    IFLA_LINK alone is ambiguous: the kernel also sends it when the peer is elsewhere, as an
    ifindex of *that* namespace; IFLA_LINK_NETNSID is what marks the peer as foreign.
    """
    if kind != "veth" or msg.get_attr("IFLA_LINK_NETNSID") is not None:
        return None
    peer = msg.get_attr("IFLA_LINK")
    return int(peer) if peer and peer in present else None


def xdp_attachment(attr: Any, our_prog_ids: frozenset[int]) -> XdpAttachment | None:
    if attr is None:
        return None
    mode = XDP_MODES.get(attr.get_attr("IFLA_XDP_ATTACHED"))
    if mode is None:
        return None
    # In "multi" mode there is no IFLA_XDP_PROG_ID, only the per-mode ids.
    prog_id = next((int(v) for v in (attr.get_attr(name) for name in (
        "IFLA_XDP_PROG_ID", "IFLA_XDP_DRV_PROG_ID", "IFLA_XDP_SKB_PROG_ID",
        "IFLA_XDP_HW_PROG_ID")) if v), 0)
    return XdpAttachment(prog_id=prog_id, mode=mode, ours=prog_id in our_prog_ids)


# --- tc ------------------------------------------------------------------------------------


def _kind(qdisc: Any) -> str:
    return str(qdisc.get_attr("TCA_KIND") or "")


def _qdiscs_by_ifindex(msgs: Iterable[Any]) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for msg in msgs:
        out.setdefault(int(msg["index"]), []).append(msg)
    return out


def _root_qdisc(qdiscs: list[Any]) -> Qdisc | None:
    """The qdisc at TC_H_ROOT; a device that never came up has none at all."""
    for msg in qdiscs:
        if msg["parent"] == TC_H_ROOT:
            handle = int(msg["handle"])
            return Qdisc(kind=_kind(msg), handle=handle, default=handle >> 16 == 0)
    return None


def _egress_filters(ip: Any, ifindex: int, qdiscs: list[Any], root: Qdisc | None) -> bool:
    """Whether classifiers run on the way out: clsact egress, or on a root qdisc we added.

    Kernel-made roots cannot carry filters (noqueue has no classes; nobody attaches to the
    anonymous 0: handle), so only clsact and non-default roots are asked.
    """
    parents = []
    if any(_kind(q) == "clsact" for q in qdiscs):
        parents.append(TC_H_CLSACT_EGRESS)
    if root is not None and not root.default:
        parents.append(root.handle)
    for parent in parents:
        try:
            if any(True for _ in ip.get_filters(index=ifindex, parent=parent)):
                return True
        except Exception:
            return True  # unknown must not look like "nothing there"
    return False


# tcx (Linux 6.6+): pyroute2 does not speak bpf(2); libbpf does.
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47


def tcx_count(ifindex: int, attach_type: int) -> int:
    """Number of tcx programs on ``ifindex`` at ``attach_type``."""
    try:
        return libbpf.prog_count(ifindex, attach_type)
    except libbpf.LibbpfError as e:
        if e.errno in (errno.EINVAL, errno.ENODEV):
            return 0  # a kernel without tcx, or the device just went away: nothing attached
        return 1  # cannot tell (EPERM...): unknown must not look like "nothing there"


# --- addresses and neighbours ----------------------------------------------------------------


def _address(msg: Any) -> Address:
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on point-to-point
    # IPv4 links.  IPv6 only sends IFA_ADDRESS.
    addr = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS") or ""
    return Address(ifindex=int(msg["index"]), family=int(msg["family"]), address=addr,
                   prefixlen=int(msg["prefixlen"]), scope=int(msg["scope"]))


def nud_name(state: int) -> str:
    return next((name for bit, name in NUD_NAMES if state & bit), "none")


def _neighbour(msg: Any) -> Neighbour:
    return Neighbour(ifindex=int(msg["ifindex"]), family=int(msg["family"]),
                     dst=msg.get_attr("NDA_DST") or "", lladdr=msg.get_attr("NDA_LLADDR"),
                     nud_state=nud_name(int(msg["state"])))


# --- routes and rules ------------------------------------------------------------------------
# Read with raw netlink: pyroute2 0.9 decodes neither RTA_NH_ID (nexthop objects) nor the newer
# rule selectors (FRA_DSCP, FRA_FLOWLABEL, port masks), and a selector we cannot see would make
# a rule look like a default one.


def _u(data: bytes, fmt: str = "=I") -> int:
    return int(struct.unpack_from(fmt, data)[0])


def _addr(family: int, data: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if family == AF_INET6 else socket.AF_INET, data)


def _name(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")


RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_METRICS, RTA_MULTIPATH = 1, 4, 5, 6, 8, 9
RTA_TABLE, RTA_VIA, RTA_NH_ID = 15, 18, 30
RTAX_MTU = 2


T = TypeVar("T")


def _dump_bodies(msg_type: int, header: struct.Struct) -> Iterator[bytes]:
    """An rtnetlink dump of IPv4, then IPv6; ``header`` is the request's family-first header
    (rtmsg, fib_rule_hdr), all else zero."""
    for family in (AF_INET, AF_INET6):
        request = bytes([family]) + bytes(header.size - 1)  # the family byte comes first
        for _, body in netlink.dump(netlink.NETLINK_ROUTE, msg_type, request):
            yield body


def _dump_both_families(msg_type: int, header: struct.Struct,
                        parse: Callable[[bytes], T]) -> tuple[T, ...]:
    """The same dump, each message parsed."""
    return tuple(parse(body) for body in _dump_bodies(msg_type, header))


# --- the routes the planner reads ---------------------------------------------------------------
# bpf_fib_lookup reads the FIB per packet, so the plan needs only the few routes that change
# what the fast path may do: multipath and nexthop-object routes (a family stays on Linux),
# route MTU metrics (the smallest one per family), local routes a user added (Linux then
# validates every source) and IPv6's local table (its host routes, mirrored for fib_direct_v6).
# A routing table of 100k routes has typically a handful of them; a cheap scan finds them
# without decoding every route.

RTN_LOCAL, RTPROT_KERNEL, RT_TABLE_LOCAL = 2, 2, 255


def plan_relevant(body: bytes) -> bool:
    """Whether an RTM_NEWROUTE/RTM_DELROUTE payload is a route the planner reads."""
    if len(body) < RTMSG.size:
        return False
    if body[7] == RTN_LOCAL and body[5] != RTPROT_KERNEL:  # rtm_type, rtm_protocol
        return True
    if body[0] == AF_INET6 and body[4] == RT_TABLE_LOCAL:  # rtm_family, rtm_table
        return True  # a few host routes, mirrored for fib_direct_v6 (plan.router)
    pos, end = RTMSG.size, len(body)
    while pos + 4 <= end:
        length, kind = struct.unpack_from("=HH", body, pos)
        if length < 4:
            return False
        kind &= netlink.NLA_TYPE_MASK
        if kind in (RTA_MULTIPATH, RTA_NH_ID):
            return True
        if kind == RTA_METRICS:
            mtu = netlink.parse_attrs(body[pos + 4:pos + length]).get(RTAX_MTU)
            if mtu and _u(mtu):
                return True
        pos += (length + 3) & ~3
    return False


def plan_routes() -> tuple[Route, ...]:
    """The routes the planner reads, from a full dump (see :func:`plan_relevant`)."""
    return tuple(parse_route(body) for body in _dump_bodies(RTM_GETROUTE, RTMSG)
                 if plan_relevant(body))


class PlanRoutes:
    """The routes the planner reads, followed from RTM_NEWROUTE/RTM_DELROUTE notifications, so
    that nobody re-reads a large routing table to find them.

    A route is dropped only on a deletion of exactly that route.  Where the kernel may have
    removed or changed one without saying so exactly — the deletion of one IPv6 ECMP sibling,
    a link or an address deleted (IPv4 routes go with them silently) — the set is marked
    ``stale`` and the caller reads it in full again; until then a stale entry only makes the
    plan stricter.  A full read (:meth:`begin_reload`, :meth:`finish_reload`) replays the
    notifications that arrived while it ran, so a change is never lost between the dump and
    its messages.
    """

    def __init__(self) -> None:
        self._routes: set[Route] = set()
        self._log: list[tuple[int, bytes]] | None = None
        self.stale = False

    def doubt(self) -> bool:
        """A link or address was deleted: routes may have gone without a message.  Returns
        whether that can matter (the planner reads some route now)."""
        self.stale = self.stale or bool(self._routes)
        return bool(self._routes)

    def current(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def follow(self, msg_type: int, body: bytes) -> tuple[bool, bool]:
        """One route notification; returns (added, removed) for the planner's routes."""
        if self._log is not None:
            self._log.append((msg_type, body))
        return self._apply(msg_type, body)

    def _apply(self, msg_type: int, body: bytes) -> tuple[bool, bool]:
        if not plan_relevant(body) and not (msg_type == RTM_DELROUTE and self._routes):
            return False, False
        route = parse_route(body)
        if msg_type == RTM_DELROUTE:
            if route in self._routes:
                self._routes.discard(route)
                return False, True
            same = any((r.family, r.table, r.dst, r.dst_len)
                       == (route.family, route.table, route.dst, route.dst_len)
                       for r in self._routes)
            self.stale = self.stale or same  # e.g. one sibling of an ECMP route
            return False, same
        if not plan_relevant(body):
            return False, False
        added = route not in self._routes
        self._routes.add(route)
        return added, False

    def begin_reload(self) -> None:
        """A full read starts: notifications from now on are kept to be replayed onto it
        (a doubt raised meanwhile stays: the dump may have been read before the change)."""
        self._log = []
        self.stale = False

    def finish_reload(self, fresh: Iterable[Route]) -> None:
        log, self._log = self._log or [], None
        self._routes = set(fresh)
        for msg_type, body in log:
            self._apply(msg_type, body)


def all_routes() -> tuple[Route, ...]:
    """Every route of every table (the kernel dumps all tables unless asked to filter)."""
    return _dump_both_families(RTM_GETROUTE, RTMSG, parse_route)


def parse_route(body: bytes) -> Route:
    """One RTM_NEWROUTE payload → Route."""
    family, dst_len, _, _, table, protocol, scope, rtm_type, _ = RTMSG.unpack_from(body)
    a = netlink.parse_attrs(body[RTMSG.size:])
    gateway = _addr(family, a[RTA_GATEWAY]) if RTA_GATEWAY in a else None
    if gateway is None and RTA_VIA in a:  # IPv4 route with an IPv6 next hop (RFC 5549)
        via_family = _u(a[RTA_VIA], "=H")
        gateway = _addr(AF_INET6 if via_family == socket.AF_INET6 else AF_INET, a[RTA_VIA][2:])
    metrics = netlink.parse_attrs(a.get(RTA_METRICS, b""))
    return Route(
        family=family,
        table=_u(a[RTA_TABLE]) if RTA_TABLE in a else table,
        dst=_addr(family, a[RTA_DST]) if RTA_DST in a else "",
        dst_len=dst_len,
        rtm_type=RTN_NAMES.get(rtm_type, f"type{rtm_type}"),
        oif=_u(a[RTA_OIF]) if RTA_OIF in a else None,
        gateway=gateway,
        multipath=RTA_MULTIPATH in a,
        nhid=_u(a[RTA_NH_ID]) if RTA_NH_ID in a else None,
        protocol=protocol,
        scope=scope,
        priority=_u(a[RTA_PRIORITY]) if RTA_PRIORITY in a else None,
        mtu=(_u(metrics[RTAX_MTU]) or None) if RTAX_MTU in metrics else None,
    )


_FIB_RULE_HDR = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table res res action
FIB_RULE_INVERT = 0x2
(FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_GOTO, FRA_PRIORITY, FRA_FWMARK, FRA_FLOW, FRA_TUN_ID,
 FRA_SUPPRESS_IFGROUP, FRA_SUPPRESS_PREFIXLEN, FRA_TABLE, FRA_FWMASK, FRA_OIFNAME, FRA_PAD,
 FRA_L3MDEV, FRA_UID_RANGE, FRA_PROTOCOL, FRA_IP_PROTO, FRA_SPORT_RANGE, FRA_DPORT_RANGE,
 FRA_DSCP, FRA_FLOWLABEL, FRA_FLOWLABEL_MASK, FRA_SPORT_MASK, FRA_DPORT_MASK,
 FRA_DSCP_MASK) = (1, 2, 3, 4, 6, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
                   25, 26, 27, 28, 29, 30)
# Attributes that say what a rule does or who made it, not which packets it matches.
_NOT_SELECTORS = {FRA_GOTO, FRA_PRIORITY, FRA_TABLE, FRA_PAD, FRA_PROTOCOL}
_KNOWN_ATTRS = _NOT_SELECTORS | {
    FRA_DST, FRA_SRC, FRA_IIFNAME, FRA_FWMARK, FRA_FLOW, FRA_TUN_ID, FRA_SUPPRESS_IFGROUP,
    FRA_SUPPRESS_PREFIXLEN, FRA_FWMASK, FRA_OIFNAME, FRA_L3MDEV, FRA_UID_RANGE, FRA_IP_PROTO,
    FRA_SPORT_RANGE, FRA_DPORT_RANGE, FRA_DSCP, FRA_FLOWLABEL, FRA_FLOWLABEL_MASK,
    FRA_SPORT_MASK, FRA_DPORT_MASK, FRA_DSCP_MASK}
IP_PROTOS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


def rules() -> tuple[Rule, ...]:
    return _dump_both_families(RTM_GETRULE, _FIB_RULE_HDR, parse_rule)


def _port_range(name: str, data: bytes, mask: bytes | None) -> str:
    lo, hi = struct.unpack_from("=HH", data)
    text = f"{name} {lo}" if lo == hi else f"{name} {lo}-{hi}"
    if mask is not None and _u(mask, "=H") != 0xFFFF:
        text += f"/0x{_u(mask, '=H'):x}"
    return text


def parse_rule(body: bytes) -> Rule:
    """One RTM_NEWRULE payload → Rule, with a human text for every selector present."""
    family, dst_len, src_len, tos, table, _, _, action, flags = _FIB_RULE_HDR.unpack_from(body)
    a = netlink.parse_attrs(body[_FIB_RULE_HDR.size:])
    sel: list[str] = []
    if flags & FIB_RULE_INVERT:
        sel.append("not")
    if FRA_SRC in a:
        sel.append(f"from {_addr(family, a[FRA_SRC])}/{src_len}")
    if FRA_DST in a:
        sel.append(f"to {_addr(family, a[FRA_DST])}/{dst_len}")
    if tos:
        sel.append(f"tos 0x{tos:02x}")
    if FRA_DSCP in a:
        text = f"dscp {a[FRA_DSCP][0]}"
        if FRA_DSCP_MASK in a and a[FRA_DSCP_MASK][0] != 0x3F:
            text += f"/0x{a[FRA_DSCP_MASK][0]:x}"
        sel.append(text)
    if FRA_FLOWLABEL in a:
        label = _u(a[FRA_FLOWLABEL], ">I")
        mask = _u(a[FRA_FLOWLABEL_MASK], ">I") if FRA_FLOWLABEL_MASK in a else 0xFFFFF
        sel.append(f"flowlabel 0x{label:x}/0x{mask:x}")
    if FRA_FWMARK in a or FRA_FWMASK in a:
        mark = _u(a[FRA_FWMARK]) if FRA_FWMARK in a else 0
        mask = _u(a[FRA_FWMASK]) if FRA_FWMASK in a else 0xFFFFFFFF
        sel.append(f"fwmark 0x{mark:x}" + ("" if mask == 0xFFFFFFFF else f"/0x{mask:x}"))
    if FRA_IIFNAME in a:
        sel.append(f"iif {_name(a[FRA_IIFNAME])}")
    if FRA_OIFNAME in a:
        sel.append(f"oif {_name(a[FRA_OIFNAME])}")
    if FRA_L3MDEV in a and a[FRA_L3MDEV][0]:
        sel.append("l3mdev")
    if FRA_UID_RANGE in a:
        lo, hi = struct.unpack_from("=II", a[FRA_UID_RANGE])
        sel.append(f"uidrange {lo}-{hi}")
    if FRA_IP_PROTO in a:
        sel.append(f"ipproto {IP_PROTOS.get(a[FRA_IP_PROTO][0], str(a[FRA_IP_PROTO][0]))}")
    if FRA_SPORT_RANGE in a:
        sel.append(_port_range("sport", a[FRA_SPORT_RANGE], a.get(FRA_SPORT_MASK)))
    if FRA_DPORT_RANGE in a:
        sel.append(_port_range("dport", a[FRA_DPORT_RANGE], a.get(FRA_DPORT_MASK)))
    if FRA_FLOW in a:
        sel.append(f"realms 0x{_u(a[FRA_FLOW]):x}")
    if FRA_TUN_ID in a:
        sel.append(f"tun_id {_u(a[FRA_TUN_ID], '>Q')}")
    if FRA_SUPPRESS_PREFIXLEN in a and _u(a[FRA_SUPPRESS_PREFIXLEN]) != 0xFFFFFFFF:
        sel.append(f"suppress_prefixlength {_u(a[FRA_SUPPRESS_PREFIXLEN])}")
    if FRA_SUPPRESS_IFGROUP in a and _u(a[FRA_SUPPRESS_IFGROUP]) != 0xFFFFFFFF:
        sel.append(f"suppress_ifgroup {_u(a[FRA_SUPPRESS_IFGROUP])}")
    # An attribute of a newer kernel may be a selector we do not know: show it rather than
    # let the rule pass for a default one.
    sel.extend(f"attr{kind} 0x{a[kind].hex()}" for kind in sorted(set(a) - _KNOWN_ATTRS))
    return Rule(
        family=family,
        priority=_u(a[FRA_PRIORITY]) if FRA_PRIORITY in a else 0,
        table=_u(a[FRA_TABLE]) if FRA_TABLE in a else table,
        action=FR_ACT_NAMES.get(action, f"action{action}"),
        selectors=tuple(sel),
    )


# --- sysctls -------------------------------------------------------------------------------

PROC_NET = "/proc/sys/net"  # follows the reading thread's namespace


def _read_int(path: str, default: int = 0) -> int:
    """A sysctl as an integer; ``default`` when it does not exist (IPv6 disabled, conntrack
    not loaded, older kernel). Give one where 0 is a value of its own."""
    try:
        with open(os.path.join(PROC_NET, path)) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _interface_sysctls(ifname: str) -> InterfaceSysctls:
    v4, v6 = f"ipv4/conf/{ifname}", f"ipv6/conf/{ifname}"

    def either(key: str) -> bool:
        # IN_DEV_ORCONF in include/linux/inetdevice.h: on if conf/all or conf/<if> says so.
        return bool(_read_int(f"ipv4/conf/all/{key}") or _read_int(f"{v4}/{key}"))

    return InterfaceSysctls(
        ipv4_forwarding=bool(_read_int(f"{v4}/forwarding")),
        ipv6_forwarding=bool(_read_int(f"{v6}/forwarding")),
        # IN_DEV_RPFILTER is IN_DEV_MAXCONF: the stricter of conf/all and conf/<if>.
        rp_filter=max(_read_int("ipv4/conf/all/rp_filter"), _read_int(f"{v4}/rp_filter")),
        ipv6_force_forwarding=bool(_read_int(f"{v6}/force_forwarding")),  # Linux 6.17+
        accept_local=either("accept_local"),
        src_valid_mark=either("src_valid_mark"),
        proxy_arp=either("proxy_arp"),
        send_redirects=either("send_redirects"),
        accept_redirects=_accepts_redirects(v4),
    )


def _accepts_redirects(v4: str) -> bool:
    """IN_DEV_RX_REDIRECTS: with forwarding on, conf/all AND conf/<if>; otherwise either."""
    every, this = _read_int("ipv4/conf/all/accept_redirects"), _read_int(f"{v4}/accept_redirects")
    if _read_int(f"{v4}/forwarding"):
        return bool(every and this)
    return bool(every or this)


def sysctls(ifnames: Iterable[str]) -> Sysctls:
    return Sysctls(
        ipv4_forwarding=bool(_read_int("ipv4/ip_forward")),
        ipv6_forwarding=bool(_read_int("ipv6/conf/all/forwarding")),
        ipv6_proxy_ndp=bool(_read_int("ipv6/conf/all/proxy_ndp")),
        fib_multipath_hash_policy=_read_int("ipv4/fib_multipath_hash_policy"),
        fib6_multipath_hash_policy=_read_int("ipv6/fib_multipath_hash_policy"),
        interfaces={name: _interface_sysctls(name) for name in ifnames},
        # /proc/sys/net/bridge exists only with br_netfilter; without it nothing is called
        bridge_nf_call_iptables=bool(_read_int("bridge/bridge-nf-call-iptables")),
        bridge_nf_call_ip6tables=bool(_read_int("bridge/bridge-nf-call-ip6tables")),
        bridge_nf_call_arptables=bool(_read_int("bridge/bridge-nf-call-arptables")),
        conntrack_udp_timeout_stream=_read_int("netfilter/nf_conntrack_udp_timeout_stream")
        or 120,
        conntrack_udp_timeout=_read_int("netfilter/nf_conntrack_udp_timeout") or 30,
        conntrack_acct=bool(_read_int("netfilter/nf_conntrack_acct")),
        conntrack_tcp_timeout_established=_read_int(
            "netfilter/nf_conntrack_tcp_timeout_established") or 432000,
        conntrack_tcp_timeout_unacknowledged=_read_int(
            "netfilter/nf_conntrack_tcp_timeout_unacknowledged") or 300,
        conntrack_tcp_be_liberal=bool(_read_int("netfilter/nf_conntrack_tcp_be_liberal")),
        conntrack_tcp_timeout_max_retrans=_read_int(
            "netfilter/nf_conntrack_tcp_timeout_max_retrans") or 300,
        conntrack_tcp_max_retrans=_read_int("netfilter/nf_conntrack_tcp_max_retrans", 3),
        kernel_hz=kernel_hz(),
    )


KERNEL_CONFIG = "/proc/config.gz"


@functools.cache
def kernel_hz(path: str = KERNEL_CONFIG) -> int:
    """CONFIG_HZ of the running kernel; 0 when its configuration is not readable (no
    CONFIG_IKCONFIG_PROC): the fast path then refreshes conntrack timeouts unconditionally."""
    try:
        with gzip.open(path, "rt") as f:
            for line in f:
                if line.startswith("CONFIG_HZ="):
                    return int(line.split("=", 1)[1])
    except (OSError, ValueError, EOFError):
        pass
    return 0


# --- xfrm ----------------------------------------------------------------------------------


def xfrm_policies() -> tuple[XfrmPolicy, ...]:
    """IPsec policies; () when ``ip xfrm`` fails (no XFRM in the kernel, no iproute2)."""
    try:
        proc = subprocess.run(["ip", "-o", "xfrm", "policy", "list"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_xfrm_policies(proc.stdout) if proc.returncode == 0 else ()


def parse_xfrm_policies(text: str) -> tuple[XfrmPolicy, ...]:
    r"""Parse ``ip -o xfrm policy list``: one policy a line, parts separated by ``\``.

    The first part is the selector (``src A dst B [proto P ...] [dev D]``), a later one
    holds ``dir in|out|fwd``.
    """
    out = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("\\") if p.strip()]
        if not parts:
            continue
        words = " ".join(parts[1:]).split()
        direction = words[words.index("dir") + 1] if "dir" in words[:-1] else ""
        selector = parts[0]
        sel_words = selector.split()
        src = sel_words[sel_words.index("src") + 1] if "src" in sel_words[:-1] else ""
        family = AF_INET6 if ":" in src else AF_INET
        out.append(XfrmPolicy(family=family, direction=direction, selector=selector))
    return tuple(out)


# --- bridges -------------------------------------------------------------------------------
# Read with raw netlink: pyroute2 0.9 does not decode the newer bridge attributes
# (IFLA_BR_MULTI_BOOLOPT, IFLA_BR_FDB_MAX_LEARNED), and an attribute we cannot see must not
# look like "off".  The same parsers serve the FDB mirror's incremental updates.

IFF_PROMISC = 0x100
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFLA_MASTER, IFLA_LINKINFO = 10, 18
IFLA_INFO_KIND, IFLA_INFO_DATA, IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 1, 2, 4, 5
(IFLA_BR_FORWARD_DELAY, IFLA_BR_AGEING_TIME, IFLA_BR_STP_STATE, IFLA_BR_VLAN_FILTERING,
 IFLA_BR_GROUP_FWD_MASK, IFLA_BR_NF_CALL_IPTABLES, IFLA_BR_NF_CALL_IP6TABLES,
 IFLA_BR_NF_CALL_ARPTABLES, IFLA_BR_MULTI_BOOLOPT, IFLA_BR_FDB_MAX_LEARNED) = (
    1, 4, 5, 7, 9, 36, 37, 38, 46, 49)
BR_BOOLOPT_NO_LL_LEARN, BR_BOOLOPT_MST_ENABLE = 0, 2
# IFLA_BRPORT_* flag attributes (u8) -> BridgePort field
BRPORT_FLAGS = {4: "hairpin", 8: "learning", 9: "unicast_flood", 10: "proxyarp",
                12: "proxyarp_wifi", 27: "mcast_flood", 29: "vlan_tunnel", 30: "bcast_flood",
                32: "neigh_suppress", 33: "isolated", 35: "mrp_ring_open", 39: "locked",
                40: "mab", 43: "neigh_vlan_suppress"}
IFLA_BRPORT_STATE, IFLA_BRPORT_GROUP_FWD_MASK, IFLA_BRPORT_BACKUP_PORT = 1, 31, 34

NUD_NOARP, NUD_PERMANENT, NUD_STALE = 0x40, 0x80, 0x04
NTF_SELF, NTF_EXT_LEARNED, NTF_OFFLOADED, NTF_STICKY = 0x02, 0x10, 0x20, 0x40
NTF_EXT_LOCKED = 0x02


def parse_bridge_info(data: bytes, ifi_flags: int = 0) -> BridgeInfo:
    """IFLA_INFO_DATA of a bridge."""
    a = netlink.parse_attrs(data)
    boolopt = _u(a[IFLA_BR_MULTI_BOOLOPT]) if IFLA_BR_MULTI_BOOLOPT in a else 0
    return BridgeInfo(
        ageing_time=_u(a[IFLA_BR_AGEING_TIME]) if IFLA_BR_AGEING_TIME in a else 30000,
        forward_delay=_u(a[IFLA_BR_FORWARD_DELAY]) if IFLA_BR_FORWARD_DELAY in a else 1500,
        stp_state=_u(a[IFLA_BR_STP_STATE]) if IFLA_BR_STP_STATE in a else 0,
        vlan_filtering=bool(a.get(IFLA_BR_VLAN_FILTERING, b"\0")[0]),
        mst_enabled=bool(boolopt & 1 << BR_BOOLOPT_MST_ENABLE),
        no_linklocal_learn=bool(boolopt & 1 << BR_BOOLOPT_NO_LL_LEARN),
        group_fwd_mask=_u(a[IFLA_BR_GROUP_FWD_MASK], "=H") if IFLA_BR_GROUP_FWD_MASK in a else 0,
        fdb_max_learned=_u(a[IFLA_BR_FDB_MAX_LEARNED]) if IFLA_BR_FDB_MAX_LEARNED in a else 0,
        nf_call_iptables=bool(a.get(IFLA_BR_NF_CALL_IPTABLES, b"\0")[0]),
        nf_call_ip6tables=bool(a.get(IFLA_BR_NF_CALL_IP6TABLES, b"\0")[0]),
        nf_call_arptables=bool(a.get(IFLA_BR_NF_CALL_ARPTABLES, b"\0")[0]),
        promisc=bool(ifi_flags & IFF_PROMISC),
    )


def parse_bridge_port(data: bytes) -> BridgePort:
    """IFLA_INFO_SLAVE_DATA of a bridge port."""
    a = netlink.parse_attrs(data)
    state = a[IFLA_BRPORT_STATE][0] if IFLA_BRPORT_STATE in a else 0
    flags = {name: bool(a[kind][0]) for kind, name in BRPORT_FLAGS.items() if kind in a}
    return BridgePort(
        state=BR_STATES[state] if state < len(BR_STATES) else f"state{state}",
        backup_port=_u(a[IFLA_BRPORT_BACKUP_PORT]) if IFLA_BRPORT_BACKUP_PORT in a else None,
        group_fwd_mask=(_u(a[IFLA_BRPORT_GROUP_FWD_MASK], "=H")
                        if IFLA_BRPORT_GROUP_FWD_MASK in a else 0),
        **flags,
    )


def parse_link_bridging(body: bytes) -> tuple[int, int | None, BridgeInfo | None,
                                              BridgePort | None]:
    """One RTM_NEWLINK payload -> (ifindex, master, bridge attributes, bridge-port state)."""
    _, _, ifindex, ifi_flags, _ = _IFINFOMSG.unpack_from(body)
    a = netlink.parse_attrs(body[_IFINFOMSG.size:])
    master = _u(a[IFLA_MASTER]) if IFLA_MASTER in a else None
    info = netlink.parse_attrs(a.get(IFLA_LINKINFO, b""))
    bridge = port = None
    if _name(info.get(IFLA_INFO_KIND, b"")) == "bridge":
        bridge = parse_bridge_info(info.get(IFLA_INFO_DATA, b""), ifi_flags)
    if _name(info.get(IFLA_INFO_SLAVE_KIND, b"")) == "bridge":
        port = parse_bridge_port(info.get(IFLA_INFO_SLAVE_DATA, b""))
    return ifindex, master or None, bridge, port


def bridge_details() -> dict[int, tuple[int | None, BridgeInfo | None, BridgePort | None]]:
    """ifindex -> (master, bridge attributes, bridge-port state) for every link."""
    out = {}
    request = _IFINFOMSG.pack(0, 0, 0, 0, 0)
    for _, body in netlink.dump(netlink.NETLINK_ROUTE, RTM_GETLINK, request):
        ifindex, master, bridge, port = parse_link_bridging(body)
        out[ifindex] = (master, bridge, port)
    return out


def with_bridge_details(links: tuple[Link, ...]) -> tuple[Link, ...]:
    if not any(lk.kind == "bridge" for lk in links):
        return links
    details = bridge_details()
    out = []
    for lk in links:
        master, bridge, port = details.get(lk.ifindex, (None, None, None))
        # a port's state is only meaningful while it still has that master
        if port is not None and master != lk.master:
            port = None
        out.append(dataclasses.replace(lk, bridge=bridge, bridge_port=port)
                   if bridge or port else lk)
    return tuple(out)


def parse_fdb(body: bytes) -> FdbEntry | None:
    """One AF_BRIDGE RTM_NEWNEIGH/RTM_DELNEIGH payload -> FdbEntry; None unless it is an entry
    of a bridge's forwarding database (a device's own "self" entries are not)."""
    family, ifindex, state, flags, _ = NDMSG.unpack_from(body)
    a = netlink.parse_attrs(body[NDMSG.size:])
    if family != AF_BRIDGE or NDA_MASTER not in a or NDA_LLADDR not in a or flags & NTF_SELF:
        return None
    mac = a[NDA_LLADDR]
    if len(mac) != 6:
        return None
    if state & NUD_PERMANENT:
        name = "permanent"
    elif state & NUD_NOARP:
        name = "static"
    else:
        name = "stale" if state & NUD_STALE else "reachable"
    ext = _u(a[NDA_FLAGS_EXT]) if NDA_FLAGS_EXT in a else 0
    tags = tuple(t for bit, t in ((NTF_EXT_LEARNED, "extern_learn"), (NTF_STICKY, "sticky"),
                                  (NTF_OFFLOADED, "offloaded")) if flags & bit)
    if ext & NTF_EXT_LOCKED:
        tags += ("locked",)
    used = updated = 0
    if NDA_CACHEINFO in a and len(a[NDA_CACHEINFO]) >= 16:
        _, used, updated, _ = struct.unpack_from("=IIII", a[NDA_CACHEINFO])
    return FdbEntry(bridge=_u(a[NDA_MASTER]), ifindex=ifindex, mac=mac.hex(":"),
                    vlan=_u(a[NDA_VLAN], "=H") if NDA_VLAN in a else 0, state=name,
                    flags=tags, updated_cs=updated, used_cs=used)


def fdb() -> tuple[FdbEntry, ...]:
    """Every bridge's forwarding database in this namespace."""
    request = NDMSG.pack(AF_BRIDGE, 0, 0, 0, 0)
    out = []
    for msg_type, body in netlink.dump(netlink.NETLINK_ROUTE, RTM_GETNEIGH, request):
        if msg_type == RTM_NEWNEIGH and (entry := parse_fdb(body)) is not None:
            out.append(entry)
    return tuple(out)


def xdp_features() -> dict[int, int]:
    """ifindex → NETDEV_XDP_ACT_* bits for every device of the current namespace."""
    try:
        netdev = netlink.family_id("netdev")
        request = netlink.GENLMSGHDR.pack(netlink.NETDEV_CMD_DEV_GET, 1, 0)
        features: dict[int, int] = {}
        for _, body in netlink.dump(netlink.NETLINK_GENERIC, netdev, request):
            attrs = netlink.parse_attrs(body[netlink.GENLMSGHDR.size:])
            index, bits_attr = (attrs.get(netlink.NETDEV_A_DEV_IFINDEX),
                                attrs.get(netlink.NETDEV_A_DEV_XDP_FEATURES))
            if index is not None and bits_attr is not None:
                (ifindex,) = struct.unpack("=I", index[:4])
                (bits,) = struct.unpack("=Q", bits_attr[:8])
                features[ifindex] = bits
        return features
    except (OSError, struct.error):
        # Kernels before 6.3 have no "netdev" family (ENOENT); unknown means not eligible.
        return {}
