"""The planner's bridge guards, the bridge parsers and the FDB mirror's decisions, on snapshots
built here (no root needed): one variation per guard."""

from __future__ import annotations

import json
import struct
import time
from dataclasses import replace

import pytest

from testing.snapshots import with_link
from tna import abi, control, introspect, netlink
from tna.datapath import fdb
from tna.model import (
    AF_INET,
    AF_INET6,
    Address,
    BridgeInfo,
    BridgePort,
    FdbEntry,
    InterfaceSysctls,
    Link,
    NetfilterChain,
    Qdisc,
    Snapshot,
    Sysctls,
    XdpAttachment,
)
from tna.netlink import attr
from tna.plan import BridgePortPlan, Features, Plan, brport_plan, make_plan

XDP_ALL = 0b111  # BASIC | REDIRECT | NDO_XMIT
BR, P1, P2, P3, R1 = 10, 11, 12, 13, 20
SWITCHED = Features(verify_l4_csum=True, bridge_port=True, bridge_ipv4=1, bridge_ipv6=1)


def _link(ifindex: int, name: str, **kw: object) -> Link:
    base: dict[str, object] = {"kind": "veth", "mtu": 1500, "operstate": "UP", "up": True,
                               "address": f"02:00:00:00:00:{ifindex:02x}",
                               "xdp_features": XDP_ALL}
    return Link(ifindex=ifindex, ifname=name, **{**base, **kw})  # type: ignore[arg-type]


def snapshot(*, bridge: BridgeInfo | None = None, port: BridgePort | None = None,
             addresses: tuple[Address, ...] = (), chains: tuple[NetfilterChain, ...] = (),
             **sysctls: bool) -> Snapshot:
    links = (
        _link(1, "lo", kind="", address=""),
        _link(BR, "br0", kind="bridge", bridge=bridge or BridgeInfo(), xdp_features=0),
        *(_link(i, f"p{i - BR}", master=BR, bridge_port=port or BridgePort())
          for i in (P1, P2, P3)),
        _link(R1, "r1"),
    )
    ifs = {lk.ifname: InterfaceSysctls(True, True, 0) for lk in links}
    return Snapshot(netns="", kernel="6.18", links=links, addresses=addresses,
                    sysctls=Sysctls(True, True, interfaces=ifs, **sysctls), netfilter=chains)



def chain(family: str, hook: str, rules: tuple[str, ...] = ("drop",), **kw: object
          ) -> NetfilterChain:
    return NetfilterChain(**{"source": "nftables", "family": family, "table": "t",  # type: ignore[arg-type]
                             "name": hook, "hook": hook, "priority": 0, "policy": "accept",
                             "rules": rules, **kw})


def reasons(plan: Plan, name: str) -> set[str]:
    return {s.reason for s in plan.interface(name).slow_path}


SVI = (Address(BR, AF_INET, "10.10.0.254", 24), Address(BR, AF_INET6, "fd00:10::fe", 64))


def test_plain_bridge_ports_are_switched() -> None:
    plan = make_plan(snapshot())
    for name in ("p1", "p2", "p3"):
        i = plan.interface(name)
        assert (i.features, i.egress) == (SWITCHED, True)
        assert i.bridge_port == BridgePortPlan(BR, True, ())
        assert reasons(plan, name) == {"bridge_flood_learn"}
    br = plan.interface("br0")
    assert (br.features, br.egress, br.bridge, br.slow_path) == (None, True, True, ())
    # routers may route into the bridge: their programs resolve the port in its FDB
    assert plan.interface("r1").features == Features(True, True, verify_l4_csum=True,
                                                     bridge_egress=True)
    port = next(p for p in plan.ports() if p.ifname == "br0")
    assert port.bridge and port.flags & abi.TNA_IF_BRIDGE and port.flags & abi.TNA_IF_EGRESS
    p1 = next(p for p in plan.ports() if p.ifname == "p1")
    assert not p1.flags & (abi.TNA_IF_NO_BRIDGE_IPV4 | abi.TNA_IF_NO_BRIDGE_IPV6
                           | abi.TNA_IF_BRIDGE)
    assert p1.flags & abi.TNA_IF_NO_IPV4  # bridged, not routed
    json.dumps(plan.to_dict())


def test_ports_whose_driver_bounds_the_mtu_carry_the_mtu_floor() -> None:
    """TNA_IF_MTU_FLOOR (short frames skip bpf_check_mtu) only where IFLA_MIN_MTU >= 68."""
    snap = with_link(with_link(snapshot(), "p1", min_mtu=68), "p2", min_mtu=67)
    ports = {p.ifname: p for p in make_plan(snap).ports()}
    assert ports["p1"].mtu_floor and ports["p1"].flags & abi.TNA_IF_MTU_FLOOR
    assert not ports["p2"].flags & abi.TNA_IF_MTU_FLOOR  # a driver without the bound
    assert not ports["p3"].flags & abi.TNA_IF_MTU_FLOOR  # unknown (0)
    assert abi.TNA_MTU_FLOOR == 68


def test_physical_ports_skip_checksum_verification() -> None:
    plan = make_plan(with_link(snapshot(), "p1", kind=""))
    assert plan.interface("p1").features == replace(SWITCHED, verify_l4_csum=False)


@pytest.mark.parametrize("how", ["sysctl", "bridge_option"])
def test_br_netfilter_without_rules_checks_headers(how: str) -> None:
    snap = (snapshot(bridge_nf_call_iptables=True, bridge_nf_call_ip6tables=True)
            if how == "sysctl" else
            snapshot(bridge=BridgeInfo(nf_call_iptables=True, nf_call_ip6tables=True)))
    plan = make_plan(snap)
    assert plan.interface("p1").features == replace(SWITCHED, bridge_ipv4=2, bridge_ipv6=2)
    assert plan.interface("p1").features.names()[-2:] == [  # type: ignore[union-attr]
        "bridge_ipv4_br_netfilter", "bridge_ipv6_br_netfilter"]


@pytest.mark.parametrize(("family", "v4", "v6"), [("ip", 0, 2), ("ip6", 2, 0), ("inet", 0, 0)])
def test_br_netfilter_with_a_rule_leaves_that_family_to_linux(family: str, v4: int,
                                                              v6: int) -> None:
    snap = snapshot(bridge_nf_call_iptables=True, bridge_nf_call_ip6tables=True,
                    chains=(chain(family, "forward"),))
    plan = make_plan(snap)
    p1 = plan.interface("p1")
    if v4 or v6:
        assert p1.features == replace(SWITCHED, bridge_ipv4=v4, bridge_ipv6=v6)
    else:
        assert p1.features is None  # nothing left for a program to do
    assert "br_netfilter" in reasons(plan, "p1")
    assert any("bridge-nf-call-" in s.detail for s in p1.slow_path)


@pytest.mark.parametrize("hook", ["prerouting", "postrouting"])
def test_br_netfilter_every_forwarding_hook_counts(hook: str) -> None:
    plan = make_plan(snapshot(bridge_nf_call_iptables=True, chains=(chain("ip", hook),)))
    assert plan.interface("p1").features.bridge_ipv4 == 0  # type: ignore[union-attr]


def test_iptables_rules_do_not_see_bridged_traffic_without_br_netfilter() -> None:
    plan = make_plan(snapshot(chains=(chain("ip", "forward"),)))
    assert plan.interface("p1").features == SWITCHED  # bridged IPv4 never meets the rule
    assert plan.namespace.firewall[0] is not None  # routing does: through the classifier


def test_br_netfilter_input_chain_does_not_count() -> None:
    plan = make_plan(snapshot(bridge_nf_call_iptables=True, chains=(chain("ip", "input"),)))
    assert plan.interface("p1").features.bridge_ipv4 == 2  # type: ignore[union-attr]


@pytest.mark.parametrize("hook", ["prerouting", "forward", "postrouting"])
def test_nft_bridge_chain_keeps_the_bridge_on_linux(hook: str) -> None:
    plan = make_plan(snapshot(chains=(chain("bridge", hook),)))
    for name in ("p1", "p2", "p3"):
        assert plan.interface(name).features is None
        assert "netfilter_bridge" in reasons(plan, name)
        assert plan.interface(name).bridge_port is not None  # still data for the maps
    assert not plan.interface("br0").egress


def test_empty_accept_bridge_chain_changes_nothing() -> None:
    plan = make_plan(snapshot(chains=(chain("bridge", "forward", rules=()),)))
    assert plan.interface("p1").features == SWITCHED


def test_nft_bridge_input_chain_blocks_routing_from_the_bridge_only() -> None:
    plan = make_plan(snapshot(addresses=SVI, chains=(chain("bridge", "input"),)))
    assert plan.interface("p1").features == SWITCHED
    assert "netfilter_bridge" in reasons(plan, "p1")
    assert plan.interface("br0").egress


def test_nft_bridge_output_chain_blocks_routing_into_the_bridge() -> None:
    plan = make_plan(snapshot(addresses=SVI, chains=(chain("bridge", "output"),)))
    assert not plan.interface("br0").egress
    assert "netfilter_bridge" in reasons(plan, "br0")
    assert not plan.interface("r1").features.bridge_egress  # type: ignore[union-attr]
    assert plan.interface("p1").features.ipv4_router  # type: ignore[union-attr]


@pytest.mark.parametrize(("info", "reason"), [
    (BridgeInfo(vlan_filtering=True), "vlan_filtering"),
    (BridgeInfo(mst_enabled=True), "bridge_mst"),
    (BridgeInfo(fdb_max_learned=100), "fdb_max_learned"),
])
def test_bridge_wide_guards(info: BridgeInfo, reason: str) -> None:
    plan = make_plan(snapshot(bridge=info))
    assert plan.interface("p1").features is None
    assert reason in reasons(plan, "p1") and reason in reasons(plan, "br0")
    assert not plan.interface("br0").egress


@pytest.mark.parametrize("state", ["disabled", "listening", "learning", "blocking"])
def test_port_states_are_data(state: str) -> None:
    plan = make_plan(snapshot(port=BridgePort(state=state)))
    p1 = plan.interface("p1")
    assert p1.features == SWITCHED  # no reload when STP moves the port: the map says it
    assert p1.bridge_port == BridgePortPlan(BR, False, ())
    assert "port_state" in reasons(plan, "p1")


@pytest.mark.parametrize(("port", "bridge", "punt"), [
    (BridgePort(learning=False), BridgeInfo(), "learning off"),
    (BridgePort(hairpin=True), BridgeInfo(), "hairpin"),
    (BridgePort(isolated=True), BridgeInfo(), "isolated"),
    (BridgePort(locked=True), BridgeInfo(), "locked"),
    (BridgePort(locked=True, mab=True), BridgeInfo(), "mab"),
    (BridgePort(proxyarp=True), BridgeInfo(), "proxy_arp"),
    (BridgePort(proxyarp_wifi=True), BridgeInfo(), "proxy_arp_wifi"),
    (BridgePort(vlan_tunnel=True), BridgeInfo(), "vlan_tunnel"),
    (BridgePort(backup_port=99), BridgeInfo(), "backup_port"),
    (BridgePort(mrp_ring_open=True), BridgeInfo(), "mrp"),
    (BridgePort(), BridgeInfo(promisc=True), "bridge promiscuous"),
])
def test_port_flags_that_change_the_decision_are_punted(port: BridgePort, bridge: BridgeInfo,
                                                        punt: str) -> None:
    plan = make_plan(snapshot(bridge=bridge, port=port))
    p1 = plan.interface("p1")
    assert p1.bridge_port is not None and punt in p1.bridge_port.punt
    assert p1.features is not None and p1.features.bridge_port
    assert "port_flags" in reasons(plan, "p1")


def test_flood_flags_do_not_matter_for_known_unicast() -> None:
    port = BridgePort(unicast_flood=False, mcast_flood=False, bcast_flood=False)
    plan = make_plan(snapshot(port=port))
    assert plan.interface("p1").bridge_port == BridgePortPlan(BR, True, ())


def test_neigh_suppress_leaves_bridged_ipv6_to_linux() -> None:
    snap = with_link(snapshot(), "p2", bridge_port=BridgePort(neigh_suppress=True))
    plan = make_plan(snap)
    assert plan.interface("p1").features == replace(SWITCHED, bridge_ipv6=0)
    assert "neigh_suppress" in reasons(plan, "p1")
    assert plan.interface("p2").bridge_port.punt == ("neigh_suppress",)  # type: ignore[union-attr]


def test_svi_ports_route_with_the_bridge_as_input() -> None:
    plan = make_plan(snapshot(addresses=SVI))
    assert plan.interface("p1").features == Features(
        ipv4_router=True, ipv6_router=True, verify_l4_csum=True, bridge_port=True,
        bridge_ipv4=1, bridge_ipv6=1, bridge_egress=True)


def test_svi_rp_filter_comes_from_the_bridge() -> None:
    snap = snapshot(addresses=SVI)
    ifs = dict(snap.sysctls.interfaces)
    ifs["br0"] = InterfaceSysctls(True, True, 1)
    plan = make_plan(replace(snap, sysctls=replace(snap.sysctls, interfaces=ifs)))
    assert plan.interface("p1").features.ipv4_rp_filter == 1  # type: ignore[union-attr]


def test_routing_only_where_needed() -> None:
    plan = make_plan(snapshot())  # no address on the bridge: no router in the ports
    assert not plan.interface("p1").features.ipv4_router  # type: ignore[union-attr]
    plan = make_plan(snapshot(addresses=SVI[:1]))  # IPv4 only
    f = plan.interface("p1").features
    assert f is not None and f.ipv4_router and not f.ipv6_router


def test_svi_with_forwarding_off_on_the_bridge() -> None:
    snap = snapshot(addresses=SVI)
    ifs = dict(snap.sysctls.interfaces)
    ifs["br0"] = InterfaceSysctls(False, True, 0)
    plan = make_plan(replace(snap, sysctls=replace(snap.sysctls, interfaces=ifs)))
    f = plan.interface("p1").features
    assert f is not None and not f.ipv4_router and f.ipv6_router
    assert "forwarding_disabled" in reasons(plan, "p1")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"tc_ingress": True}, "tc_ingress"),
    ({"xdp": XdpAttachment(5, "generic", ours=False)}, "foreign_xdp"),
])
def test_svi_blocked_by_the_bridge_devices_own_ingress(changes: dict[str, object],
                                                       reason: str) -> None:
    plan = make_plan(with_link(snapshot(addresses=SVI), "br0", **changes))
    f = plan.interface("p1").features
    assert f == SWITCHED  # switching is unaffected: bridged frames never reach br0's stack
    assert reason in reasons(plan, "p1")


@pytest.mark.parametrize(("changes", "reason"), [
    ({"up": False, "operstate": "DOWN"}, "link_down"),
    ({"qdisc": Qdisc("htb", 0x10000, False)}, "qdisc"),
    ({"tc_egress": True}, "tc_egress"),
])
def test_routing_into_the_bridge_blocked_by_its_egress(changes: dict[str, object],
                                                       reason: str) -> None:
    plan = make_plan(with_link(snapshot(addresses=SVI), "br0", **changes))
    assert not plan.interface("br0").egress
    assert reason in reasons(plan, "br0")
    assert not plan.interface("r1").features.bridge_egress  # type: ignore[union-attr]


def test_port_interface_guards() -> None:
    plan = make_plan(with_link(snapshot(), "p1", tc_ingress=True))
    assert plan.interface("p1").features is None
    assert "tc_ingress" in reasons(plan, "p1")
    plan = make_plan(with_link(snapshot(), "p2", xdp_features=0b11))  # peer without GRO/XDP
    assert not plan.interface("p2").egress
    assert "no_xdp_xmit" in reasons(plan, "p2")
    assert plan.interface("p2").features == SWITCHED  # still an ingress


def test_ports_of_unknown_bridges_and_bonds_stay_enslaved() -> None:
    snap = with_link(snapshot(), "br0", bridge=None)
    snap = with_link(snap, "p1", bridge_port=None)
    plan = make_plan(snap)
    assert plan.interface("p1").features is None
    assert reasons(plan, "p1") == {"enslaved"}
    assert reasons(plan, "br0") == {"unsupported_kind"}
    bond = _link(30, "bond0", kind="bond")
    snap = replace(snapshot(), links=(*snapshot().links, bond))
    plan = make_plan(with_link(snap, "r1", master=30))
    assert reasons(plan, "r1") == {"enslaved"}


def test_brport_plan_is_pure() -> None:
    assert brport_plan(7, BridgePort(state="forwarding", isolated=True), BridgeInfo()) == \
        BridgePortPlan(7, True, ("isolated",))


def test_snapshot_with_bridges_round_trips() -> None:
    snap = replace(snapshot(addresses=SVI, port=BridgePort(backup_port=12)),
                   fdb=(FdbEntry(BR, P1, "02:00:00:00:00:01", state="static",
                                 flags=("sticky",), updated_cs=5),))
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap


# ---- parsers ---------------------------------------------------------------------------------

def _ndmsg(ifindex: int, state: int, flags: int, *attrs: bytes) -> bytes:
    return netlink.NDMSG.pack(netlink.AF_BRIDGE, ifindex, state, flags, 0) + b"".join(
        attrs)


MAC = bytes.fromhex("020000000001")
CACHE = attr(netlink.NDA_CACHEINFO, struct.pack("=IIII", 0, 120, 340, 0))


def test_parse_fdb_entries() -> None:
    learnt = introspect.parse_fdb(_ndmsg(P1, 0x02, 0, attr(2, MAC), attr(9, struct.pack(
        "=I", BR)), CACHE))
    assert learnt == FdbEntry(BR, P1, "02:00:00:00:00:01", state="reachable",
                              updated_cs=340, used_cs=120)
    assert learnt.ageing and not learnt.local
    local = introspect.parse_fdb(_ndmsg(BR, 0x80, 0, attr(2, MAC), attr(9, struct.pack(
        "=I", BR))))
    assert local is not None and local.local and not local.ageing
    static = introspect.parse_fdb(_ndmsg(P1, 0x40, 0x40 | 0x10, attr(2, MAC), attr(9, struct.pack(
        "=I", BR)), attr(5, struct.pack("=H", 7)), attr(15, struct.pack("=I", 2))))
    assert static is not None
    assert (static.state, static.vlan, static.flags) == ("static", 7, ("extern_learn", "sticky",
                                                                       "locked"))
    # a device's own addresses ("self") and entries without a master are not FDB entries
    assert introspect.parse_fdb(_ndmsg(P1, 0x80, 0x02, attr(2, MAC))) is None
    assert introspect.parse_fdb(_ndmsg(P1, 0x02, 0, attr(2, MAC))) is None


def test_parse_bridge_attributes() -> None:
    data = (attr(4, struct.pack("=I", 500)) + attr(5, struct.pack("=I", 1))
            + attr(7, b"\x01") + attr(36, b"\x01")
            + attr(46, struct.pack("=II", 1 << 2, 0xFF)) + attr(49, struct.pack("=I", 64)))
    info = introspect.parse_bridge_info(data, ifi_flags=0x100)
    assert info == BridgeInfo(ageing_time=500, stp_state=1, vlan_filtering=True, mst_enabled=True,
                              fdb_max_learned=64, nf_call_iptables=True, promisc=True)
    port = introspect.parse_bridge_port(attr(1, b"\x04") + attr(8, b"\x00") + attr(33, b"\x01")
                                        + attr(34, struct.pack("=I", 9)))
    assert port == BridgePort(state="blocking", learning=False, isolated=True, backup_port=9)


# ---- the FDB mirror's decisions (a dict stands in for the BPF map) ---------------------------

class FakeMap:
    def __init__(self) -> None:
        self.d: dict[bytes, bytes] = {}

    def lookup(self, key: bytes) -> bytes | None:
        return self.d.get(key)

    def update(self, key: bytes, value: bytes) -> None:
        self.d[key] = value

    def entry(self, key: bytes) -> abi.TnaFdbEntry:
        return abi.TnaFdbEntry.from_buffer_copy(self.d[key])


E = FdbEntry(BR, P1, "02:00:00:00:00:01", updated_cs=0)


def put(m: FakeMap, e: FdbEntry, kernel_updated_ns: int | None = None) -> fdb.SyncResult:
    r = fdb.SyncResult()
    fdb.FdbMirror._put(m, fdb.key_of(e), e, r, kernel_updated_ns)  # type: ignore[arg-type]
    return r


def test_mirror_values() -> None:
    assert fdb.value_of(E) == (P1, 0)
    assert fdb.value_of(replace(E, state="permanent")) == (P1, abi.TNA_FDB_LOCAL
                                                           | abi.TNA_FDB_STATIC)
    assert fdb.value_of(replace(E, state="static", flags=("sticky",))) == (
        P1, abi.TNA_FDB_STATIC | abi.TNA_FDB_STICKY)
    assert fdb.value_of(replace(E, flags=("extern_learn",))) == (P1, abi.TNA_FDB_STATIC)
    assert not fdb.mirrored(replace(E, flags=("locked",)))
    assert len(fdb.key_of(E)) == 12


def test_unchanged_entry_keeps_the_fast_paths_stamp() -> None:
    m = FakeMap()
    assert put(m, E).written == 1
    m.update(fdb.key_of(E), bytes(abi.TnaFdbEntry(P1, 0, 0, 12345)))
    assert put(m, E).written == 0
    assert m.entry(fdb.key_of(E)).seen_ns == 12345
    assert put(m, replace(E, ifindex=P2)).written == 1  # moved: the stamp was for p1
    assert (m.entry(fdb.key_of(E)).port, m.entry(fdb.key_of(E)).seen_ns) == (P2, 0)


def test_moved_mark_survives_until_the_kernel_knows_better() -> None:
    m = FakeMap()
    tomb = abi.TnaFdbEntry(P1, abi.TNA_FDB_MOVED, 0, 10_000_000_000)
    m.update(fdb.key_of(E), bytes(tomb))
    # a notification or dump still naming the old port does not revive it...
    assert put(m, E).kept_moved == 1
    assert put(m, E, kernel_updated_ns=10_000_000_000).kept_moved == 1
    assert m.entry(fdb.key_of(E)).flags & abi.TNA_FDB_MOVED
    # ...the new port does
    assert put(m, replace(E, ifindex=P2)).written == 1
    assert (m.entry(fdb.key_of(E)).port, m.entry(fdb.key_of(E)).flags) == (P2, 0)
    # and so does a dump showing the kernel refreshed the old port after the move
    m.update(fdb.key_of(E), bytes(tomb))
    assert put(m, E, kernel_updated_ns=10_100_000_000).written == 1
    assert m.entry(fdb.key_of(E)).flags == 0


def test_refresh_picks_entries_used_since_the_kernels_last_update(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = 100_000_000_000
    sent: list[FdbEntry] = []
    used = FdbEntry(BR, P1, "02:00:00:00:00:01", updated_cs=150)  # kernel: 1.5 s ago
    idle = FdbEntry(BR, P1, "02:00:00:00:00:02", updated_cs=150)
    static = FdbEntry(BR, P1, "02:00:00:00:00:03", state="static", updated_cs=150)
    moved = FdbEntry(BR, P1, "02:00:00:00:00:04", updated_cs=150)
    other_port = FdbEntry(BR, P2, "02:00:00:00:00:05", updated_cs=150)
    recent = now - 500_000_000  # the fast path forwarded from it 0.5 s ago
    mirror = {fdb.key_of(used): abi.TnaFdbEntry(P1, 0, 0, recent),
              fdb.key_of(idle): abi.TnaFdbEntry(P1, 0, 0, now - 3_000_000_000),
              fdb.key_of(static): abi.TnaFdbEntry(P1, abi.TNA_FDB_STATIC, 0, recent),
              fdb.key_of(moved): abi.TnaFdbEntry(P1, abi.TNA_FDB_MOVED, 0, recent),
              fdb.key_of(other_port): abi.TnaFdbEntry(P1, 0, 0, recent)}
    monkeypatch.setattr(fdb.FdbMirror, "read", lambda self: mirror)
    monkeypatch.setattr(control, "send_use", sent.extend)
    monkeypatch.setattr(introspect, "fdb", lambda: (used, idle, static, moved, other_port))
    monkeypatch.setattr(time, "clock_gettime_ns", lambda clock: now)
    monkeypatch.setattr(fdb.FdbMirror, "full_sync", lambda self, *args: fdb.SyncResult())
    due = control.refresh_fdb(fdb.FdbMirror(), {BR})
    assert due == sent == [used]


def test_refresh_interval_follows_the_shortest_hold_time(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    details = {1: (None, BridgeInfo(ageing_time=500), None),
               2: (None, BridgeInfo(ageing_time=30000, stp_state=1, forward_delay=1500), None)}
    monkeypatch.setattr(introspect, "bridge_details", lambda: details)
    assert control.refresh_interval({1}) == 0.5
    assert control.refresh_interval({2}) == 1.5  # forward delay: the hold time in a topology change
    assert control.refresh_interval({2, 1}) == 0.5
    assert control.refresh_interval(set()) == 1.0
