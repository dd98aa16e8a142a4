"""The plan's types: what the planner decides and the data path carries out.

Role in the flow: the contract between the planner (``tna.plan``, which builds these from a
snapshot) and the data path (``tna.datapath``, which makes the kernel match them).  Nothing
here reads the kernel or touches BPF; the data path imports this module and nothing else of
the planner.

:class:`Features` is one interface's program switches.  Its members are those of the C
``struct tna_features`` (``bpf/include/tna_abi.h``), in the same order; conversion to and
from the C block and the names shown to operators are derived from that list, so adding a
switch means adding it to the header, here, and to the planner rule that sets it.
"""

from __future__ import annotations

import ctypes
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tna import abi
from tna.firewall.tables import FwTables


def _valued(names: dict[int, str]) -> Any:
    """A multi-valued switch (default 0) and how its values read: suffixes of its name."""
    return field(default=0, metadata={"names": names})


@dataclass(frozen=True)
class Features:
    """What one interface's program does; each field is a ``tna_features`` member.

    A value reads as the member's name; a multi-valued switch may name its values with
    ``_valued`` (``ipv4_rp_filter`` 1 reads ``ipv4_rp_filter_strict``).
    """

    ipv4_router: bool = False
    ipv6_router: bool = False
    ipv4_rp_filter: int = _valued({1: "strict", 2: "loose"})  # as the sysctl; 0 off
    verify_l4_csum: bool = False  # veth ingress: local senders may offload L4 checksums
    bridge_port: bool = False  # a bridge port: frames take the bridge's path (tna_fdb)
    # bridged IPv4: 0 Linux, 1 fast, 2 fast after br_netfilter's checks
    bridge_ipv4: int = _valued({2: "br_netfilter"})
    bridge_ipv6: int = _valued({2: "br_netfilter"})  # the same for IPv6
    bridge_egress: bool = False  # the FIB may name a bridge: its FDB resolves the port
    firewall_ipv4: bool = False  # routed IPv4 passes the forward-hook classifier
    firewall_ipv6: bool = False
    # bpf_fib_lookup() with BPF_FIB_LOOKUP_DIRECT (the main table alone) while the kernel says
    # no policy rule ever changed; IPv6 with its local table mirrored (Namespace.local_v6)
    fib_direct_v4: bool = False
    fib_direct_v6: bool = False
    # tna run --tcp-liberal: name established TCP connections the fast path would carry but
    # for conntrack's window tracking, for the daemon to make liberal (docs/stateful.md)
    ct_tcp_liberal: bool = False
    # a daemon follows (tna run): segments of a liberal TCP side (the sysctl or the entry's
    # flag) may be fast, and the RST of a side whose data the kernel did not see is named for
    # the daemon to close the entry as Linux alone would (docs/stateful.md)
    ct_liberal_fast: bool = False

    @staticmethod
    def c_members() -> list[str]:
        """The members of the C struct, in order: the one list the conversions follow."""
        return [name for name, _ in abi.feature_fields()]

    def to_c(self) -> abi.TnaFeatures:
        return abi.TnaFeatures(**{n: int(getattr(self, n)) for n in self.c_members()})

    @classmethod
    def from_c(cls, raw: bytes) -> Features:
        # a program loaded by an older TNA has a shorter block: the missing features are off
        c = abi.TnaFeatures.from_buffer_copy(raw.ljust(ctypes.sizeof(abi.TnaFeatures), b"\0"))
        switches = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, bool)}
        return cls(**{n: bool(v) if n in switches else v
                      for n, v in ((n, getattr(c, n)) for n in cls.c_members())})

    def names(self) -> list[str]:
        """The switches that are on, as operators read them (``tna plan``, ``tna status``)."""
        values = {f.name: f.metadata.get("names", {}) for f in dataclasses.fields(self)}
        out = []
        for name in self.c_members():
            value = int(getattr(self, name))
            if value:
                suffix = values[name].get(value)
                out.append(f"{name}_{suffix}" if suffix else name)
        return out


@dataclass(frozen=True)
class Port:
    """One interface as the data path sees it."""

    ifindex: int
    ifname: str
    mac: str
    egress: bool  # may be redirected to (a bridge: routed into)
    features: Features | None  # None: no TNA program on this interface
    bridge: bool = False  # a bridge device: never a redirect target itself
    accept_redirects: bool = False  # the kernel may hold redirect exceptions for routes out of it
    redirects_unwatched: bool = False  # redirects may arrive where no TNA program sees them
    mtu_floor: bool = False  # its MTU is never below TNA_MTU_FLOOR (IFLA_MIN_MTU)

    @property
    def flags(self) -> int:
        """The ``tna_ifaces`` flags of this port (``TNA_IF_*``)."""
        f = self.features
        return ((abi.TNA_IF_EGRESS if self.egress else 0)
                | (abi.TNA_IF_ACCEPT_REDIRECTS if self.accept_redirects else 0)
                | (abi.TNA_IF_REDIRECTS_UNWATCHED if self.redirects_unwatched else 0)
                | (0 if f and f.ipv4_router else abi.TNA_IF_NO_IPV4)
                | (0 if f and f.ipv6_router else abi.TNA_IF_NO_IPV6)
                | (0 if f and f.bridge_ipv4 else abi.TNA_IF_NO_BRIDGE_IPV4)
                | (0 if f and f.bridge_ipv6 else abi.TNA_IF_NO_BRIDGE_IPV6)
                | (abi.TNA_IF_BRIDGE if self.bridge else 0)
                | (abi.TNA_IF_MTU_FLOOR if self.mtu_floor else 0))


# the kernel's defaults of Namespace.ct_tcp and ct_tcp_retrans (below), for a snapshot without
# the sysctls and for tables written without a plan
CT_TCP_DEFAULT: tuple[int, int, bool] = (432_000_000, 300_000, False)
CT_TCP_RETRANS_DEFAULT: tuple[int, int] = (300_000, 3)


@dataclass(frozen=True)
class Namespace:
    """Namespace-wide data: IPv4 sources never forwarded (own and broadcast addresses) and
    the smallest route MTU metric per family (0: none)."""

    denied_sources_v4: frozenset[str] = frozenset()
    route_mtu_v4: int = 0
    route_mtu_v6: int = 0
    # forward-hook classifiers (IPv4, IPv6); None: no program classifies that family
    firewall: tuple[FwTables | None, FwTables | None] = (None, None)
    # net.netfilter.nf_conntrack_udp_timeout_stream and nf_conntrack_udp_timeout, in ms
    ct_timeouts_ms: tuple[int, int] = (120_000, 30_000)
    # IPv6 local and anycast addresses (the local table's /128 routes): with fib_direct_v6,
    # frames to them go to Linux without asking the FIB
    local_v6: frozenset[str] = frozenset()
    # established TCP: nf_conntrack_tcp_timeout_established and _unacknowledged (ms), and
    # nf_conntrack_tcp_be_liberal (windows are not judged)
    ct_tcp: tuple[int, int, bool] = CT_TCP_DEFAULT
    # the retransmission rule: nf_conntrack_tcp_timeout_max_retrans (ms) and
    # nf_conntrack_tcp_max_retrans (repeats of the last segment from which it applies)
    ct_tcp_retrans: tuple[int, int] = CT_TCP_RETRANS_DEFAULT
    # jiffies per second (CONFIG_HZ; 0: unknown), when every timeout above is whole seconds:
    # the fast path then skips a refresh that would write the value the entry holds
    ct_hz: int = 0


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
    accept_redirects: bool = False  # see with_redirects()
    redirects_unwatched: bool = False
    mtu_floor: bool = False  # see Port

    @property
    def port(self) -> Port:
        return Port(self.ifindex, self.ifname, self.mac, self.egress, self.features,
                    bridge=self.bridge, accept_redirects=self.accept_redirects,
                    redirects_unwatched=self.redirects_unwatched, mtu_floor=self.mtu_floor)


@dataclass(frozen=True)
class Plan:
    netns: str
    interfaces: tuple[InterfacePlan, ...]
    slow_path: tuple[SlowPath, ...]  # namespace-wide
    namespace: Namespace = field(default_factory=Namespace)  # namespace-wide fast-path data

    @property
    def attaches(self) -> bool:
        """Whether any interface gets a program; without one the data path needs nothing at
        all (no maps pinned, no FDB mirrored)."""
        return any(i.features is not None for i in self.interfaces)

    def ports(self) -> list[Port]:
        """What the data path must know: interfaces with a program or usable as egress."""
        if not self.attaches:
            return []
        return [i.port for i in self.interfaces
                if i.features is not None or i.egress or i.bridge]

    def bridge_ports(self) -> list[InterfacePlan]:
        return [i for i in self.interfaces if i.bridge_port is not None]

    def bridge_port_plans(self) -> dict[int, BridgePortPlan]:
        """``tna_brports`` as the plan wants it: port ifindex -> entry."""
        if not self.attaches:
            return {}
        return {i.ifindex: i.bridge_port for i in self.interfaces if i.bridge_port}

    def bridges(self) -> set[int]:
        """The bridges the plan puts in ``tna_ifaces``: their FDBs are mirrored."""
        if not self.attaches:
            return set()
        return {i.ifindex for i in self.interfaces if i.bridge}

    def interface(self, ifname: str) -> InterfacePlan:
        return next(i for i in self.interfaces if i.ifname == ifname)

    def to_dict(self) -> dict[str, Any]:
        # the classifier tables (up to 2 x 65536 port classes) are summarised, not dumped
        out = dataclasses.asdict(dataclasses.replace(
            self, namespace=dataclasses.replace(self.namespace, firewall=(None, None))))
        for i, iface in zip(out["interfaces"], self.interfaces, strict=True):
            i["features"] = iface.features.names() if iface.features else None
        out["namespace"]["denied_sources_v4"] = sorted(self.namespace.denied_sources_v4)
        out["namespace"]["local_v6"] = sorted(self.namespace.local_v6)
        out["namespace"]["firewall"] = {
            fam: None if ft is None else {
                "rules": len(ft.rules), "classes": len(ft.classes), "fields": sorted(ft.used),
                "stateful": ft.stateful, "nat": ft.nat,
                "unsupported": [str(u.rule) for u in ft.unsupported]}
            for fam, ft in zip(("ipv4", "ipv6"), self.namespace.firewall, strict=True)}
        return out
