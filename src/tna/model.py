"""Immutable snapshot of one network namespace's configuration.

Role in the flow: ``introspect`` reads the kernel and returns a :class:`Snapshot`; ``plan``
turns a snapshot into a plan without touching the kernel.  Snapshots round-trip through JSON
(``to_dict``/``from_dict``) so the planner can be unit-tested on recorded configurations.

Names follow the kernel where one exists (``nud_state``, ``rtm_type``, ``operstate``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

AF_INET = 2
AF_INET6 = 10
# NETDEV_XDP_ACT_* (include/uapi/linux/netdev.h): the bits of Link.xdp_features
XDP_ACT_BASIC = 1 << 0
XDP_ACT_REDIRECT = 1 << 1
XDP_ACT_NDO_XMIT = 1 << 2  # the driver accepts XDP_REDIRECTed frames
XDP_ACT_XSK_ZEROCOPY = 1 << 3
XDP_ACT_HW_OFFLOAD = 1 << 4
XDP_ACT_RX_SG = 1 << 5
XDP_ACT_NDO_XMIT_SG = 1 << 6


@dataclass(frozen=True)
class XdpAttachment:
    """An XDP program attached to a link (``IFLA_XDP``)."""

    prog_id: int
    mode: str  # "native", "generic", "offload" or "multi"
    ours: bool  # attached through a BPF link that TNA pinned


@dataclass(frozen=True)
class Qdisc:
    """The root qdisc of a link; ``default`` is true when the kernel created it itself."""

    kind: str
    handle: int
    default: bool


# STP port states (BR_STATE_*, include/uapi/linux/if_bridge.h)
BR_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")


@dataclass(frozen=True)
class BridgeInfo:
    """Attributes of a bridge device (IFLA_INFO_DATA of kind "bridge")."""

    ageing_time: int = 30000  # centiseconds; 0: the bridge never learns
    forward_delay: int = 1500  # centiseconds; also the ageing time during a topology change
    stp_state: int = 0  # 0 off, 1 kernel STP, 2 user-space STP
    vlan_filtering: bool = False
    mst_enabled: bool = False
    no_linklocal_learn: bool = False
    group_fwd_mask: int = 0
    fdb_max_learned: int = 0  # 0: no limit
    nf_call_iptables: bool = False  # per-bridge br_netfilter switches (ORed with the sysctls)
    nf_call_ip6tables: bool = False
    nf_call_arptables: bool = False
    promisc: bool = False  # IFF_PROMISC (a packet capture): known unicast is also passed up


@dataclass(frozen=True)
class BridgePort:
    """A bridge port's state and flags (IFLA_INFO_SLAVE_DATA of slave kind "bridge")."""

    state: str = "forwarding"  # one of BR_STATES
    learning: bool = True
    unicast_flood: bool = True
    mcast_flood: bool = True
    bcast_flood: bool = True
    hairpin: bool = False
    isolated: bool = False
    locked: bool = False
    mab: bool = False
    neigh_suppress: bool = False
    neigh_vlan_suppress: bool = False
    proxyarp: bool = False
    proxyarp_wifi: bool = False
    vlan_tunnel: bool = False
    mrp_ring_open: bool = False
    backup_port: int | None = None  # ifindex of the backup port
    group_fwd_mask: int = 0


@dataclass(frozen=True)
class FdbEntry:
    """One entry of a bridge's forwarding database (AF_BRIDGE neighbour with NDA_MASTER)."""

    bridge: int  # ifindex of the bridge (NDA_MASTER)
    ifindex: int  # the port the address is behind; the bridge's own for its local entries
    mac: str
    vlan: int = 0
    state: str = "reachable"  # "permanent" (local), "static", "reachable", "stale"
    flags: tuple[str, ...] = ()  # "extern_learn", "sticky", "offloaded", "locked"
    updated_cs: int = 0  # centiseconds since the kernel last refreshed it (NDA_CACHEINFO)
    used_cs: int = 0  # centiseconds since the kernel last forwarded to it

    @property
    def local(self) -> bool:
        return self.state == "permanent"

    @property
    def ageing(self) -> bool:
        """The kernel ages it out (dynamic, not learnt by a switch driver)."""
        return self.state in ("reachable", "stale") and "extern_learn" not in self.flags


@dataclass(frozen=True)
class Link:
    ifindex: int
    ifname: str
    kind: str  # IFLA_INFO_KIND, "" for physical devices
    mtu: int
    address: str  # MAC, lower case, "" when the link has none
    operstate: str  # "UP", "DOWN", "LOWERLAYERDOWN", "UNKNOWN", ...
    up: bool  # IFF_UP
    master: int | None = None  # ifindex of the master (bridge, bond, vrf)
    peer_ifindex: int | None = None  # veth peer, when it lives in this namespace
    xdp: XdpAttachment | None = None
    qdisc: Qdisc | None = None
    tc_ingress: bool = False  # ingress/clsact qdisc or tcx ingress programs present
    tc_egress: bool = False  # clsact egress filters or tcx egress programs present
    # NETDEV_XDP_ACT_* bits from the netdev genetlink family; None when unknown.
    xdp_features: int | None = None
    bridge: BridgeInfo | None = None  # kind "bridge": its attributes
    bridge_port: BridgePort | None = None  # enslaved to a bridge: the port's state and flags
    min_mtu: int = 0  # IFLA_MIN_MTU: the driver's lower bound of mtu (0: none or unknown)


@dataclass(frozen=True)
class Address:
    ifindex: int
    family: int
    address: str
    prefixlen: int
    scope: int = 0


@dataclass(frozen=True)
class Route:
    family: int
    table: int
    dst: str  # "" for the default route
    dst_len: int
    rtm_type: str  # "unicast", "local", "blackhole", "unreachable", "prohibit", ...
    oif: int | None = None
    gateway: str | None = None
    multipath: bool = False
    nhid: int | None = None
    protocol: int = 0
    scope: int = 0
    priority: int | None = None
    mtu: int | None = None


@dataclass(frozen=True)
class Rule:
    family: int
    priority: int
    table: int
    action: str  # "to_tbl", "blackhole", "unreachable", "prohibit", "goto", "nop"
    selectors: tuple[str, ...] = ()  # e.g. ("from 10.0.0.0/8", "fwmark 0x1")

    @property
    def is_default(self) -> bool:
        """The rules every namespace starts with (local, main, default)."""
        return not self.selectors and (self.priority, self.table) in {
            (0, 255),
            (32766, 254),
            (32767, 253),
        }


@dataclass(frozen=True)
class Neighbour:
    ifindex: int
    family: int
    dst: str
    lladdr: str | None
    nud_state: str  # "reachable", "stale", "permanent", "failed", ...


@dataclass(frozen=True)
class InterfaceSysctls:
    """Per-interface sysctls that change how Linux forwards."""

    ipv4_forwarding: bool
    ipv6_forwarding: bool  # conf/<if>/forwarding; IPv6 forwards on conf/all (see Sysctls)
    rp_filter: int  # effective value: max(conf/all, conf/<if>)
    ipv6_force_forwarding: bool = False
    accept_local: bool = False
    src_valid_mark: bool = False
    proxy_arp: bool = False
    send_redirects: bool = True
    accept_redirects: bool = False  # effective (IN_DEV_RX_REDIRECTS)


@dataclass(frozen=True)
class Sysctls:
    ipv4_forwarding: bool  # net.ipv4.ip_forward (conf/all/forwarding)
    ipv6_forwarding: bool  # net.ipv6.conf.all.forwarding
    ipv6_proxy_ndp: bool = False
    fib_multipath_hash_policy: int = 0
    fib6_multipath_hash_policy: int = 0
    interfaces: dict[str, InterfaceSysctls] = field(default_factory=dict)
    # net.bridge.bridge-nf-call-*: bridged traffic passes ip/ip6/arp tables (br_netfilter)
    bridge_nf_call_iptables: bool = False
    bridge_nf_call_ip6tables: bool = False
    bridge_nf_call_arptables: bool = False
    # conntrack (net.netfilter.*): the timeout the fast path refreshes established UDP flows
    # to, and per-flow accounting, whose counters it could not keep
    conntrack_udp_timeout_stream: int = 120
    conntrack_udp_timeout: int = 30
    conntrack_acct: bool = False
    # TCP: the timeouts the fast path refreshes established flows to (seconds), and whether
    # the kernel judges TCP windows at all (nf_conntrack_tcp_be_liberal)
    conntrack_tcp_timeout_established: int = 432000
    conntrack_tcp_timeout_unacknowledged: int = 300
    conntrack_tcp_be_liberal: bool = False
    # the retransmission rule: from nf_conntrack_tcp_max_retrans repeats of the last segment
    # on, nf_conntrack_tcp_timeout_max_retrans (seconds) where the state's is longer
    conntrack_tcp_timeout_max_retrans: int = 300
    conntrack_tcp_max_retrans: int = 3
    # CONFIG_HZ of the running kernel (/proc/config.gz; 0: unknown): jiffies per second, the
    # unit conntrack keeps its timeouts in
    kernel_hz: int = 0


@dataclass(frozen=True)
class NetfilterChain:
    """One chain of a netfilter ruleset, as far as the planner needs to know it."""

    source: str  # "nftables" (includes iptables-nft) or "iptables-legacy"
    family: str  # nft family: "ip", "ip6", "inet", "arp", "bridge", "netdev"
    table: str
    name: str
    hook: str | None = None  # None for regular chains
    priority: int | None = None
    policy: str | None = None  # "accept"/"drop" for base chains
    devices: tuple[str, ...] = ()  # netdev-family chains
    rules: tuple[str, ...] = ()  # one text per rule, for explanations
    type: str | None = None  # base chains: "filter", "nat" or "route"
    # nftables: per rule, its expressions as compact JSON (``nft -j``) and its handle, in the
    # order of ``rules``; iptables-legacy rules are their ``-A`` lines in ``rules``.
    exprs: tuple[str, ...] = ()
    handles: tuple[int | None, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.hook is not None

    @property
    def has_effect(self) -> bool:
        """A base chain with no rule and an accept policy cannot change a packet's fate."""
        return bool(self.rules) or (self.policy or "accept") != "accept"


@dataclass(frozen=True)
class NetfilterSet:
    """A named nftables set (``set`` object of ``nft -j list ruleset``)."""

    family: str
    table: str
    name: str
    type: str  # key type, e.g. "ipv4_addr"; concatenations joined with " . "
    flags: tuple[str, ...] = ()  # "interval", "constant", "dynamic", "timeout", ...
    elements: tuple[str, ...] = ()  # one compact JSON value per element, as nft lists it
    timeout: bool = False  # a default timeout: elements expire on their own


@dataclass(frozen=True)
class XfrmPolicy:
    family: int
    direction: str  # "in", "out", "fwd"
    selector: str


@dataclass(frozen=True)
class Snapshot:
    """Everything TNA knows about one namespace at one moment."""

    netns: str  # name given on the command line, or "" for the caller's namespace
    kernel: str
    links: tuple[Link, ...] = ()
    addresses: tuple[Address, ...] = ()
    routes: tuple[Route, ...] = ()
    rules: tuple[Rule, ...] = ()
    neighbours: tuple[Neighbour, ...] = ()
    sysctls: Sysctls = field(default_factory=lambda: Sysctls(False, False))
    netfilter: tuple[NetfilterChain, ...] = ()
    netfilter_sets: tuple[NetfilterSet, ...] = ()  # nftables named sets, for rules that use them
    xfrm_policies: tuple[XfrmPolicy, ...] = ()
    fdb: tuple[FdbEntry, ...] = ()  # every bridge's forwarding database

    def link(self, ifindex: int) -> Link | None:
        return next((lk for lk in self.links if lk.ifindex == ifindex), None)

    def link_by_name(self, ifname: str) -> Link | None:
        return next((lk for lk in self.links if lk.ifname == ifname), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        return _build(cls, data)


def _build(cls: type[T], data: Any) -> T:
    """Rebuild a (nested) frozen dataclass from the output of ``dataclasses.asdict``."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        return tuple(_convert(args[0], v) for v in value)
    if origin is dict:
        return {k: _convert(args[1], v) for k, v in value.items()}
    if dataclasses.is_dataclass(hint):
        return _build(hint, value)  # type: ignore[arg-type]
    return value
