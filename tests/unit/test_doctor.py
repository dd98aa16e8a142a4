"""Operator guidance on a recorded router snapshot: the expected fast-path share per
interface, and the exact fix for each condition that blocks it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from testing.snapshots import with_link
from tna import doctor
from tna.doctor import Peer
from tna.model import XDP_ACT_NDO_XMIT, Snapshot, XdpAttachment
from tna.plan import make_plan

DATA = Path(__file__).parent / "data"
PEERS = {289: Peer(2, "eth0", "h1", 0, tx_csum=False), 292: Peer(2, "eth0", "h2", 1,
                                                                 tx_csum=False)}


@pytest.fixture
def snap() -> Snapshot:
    return Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))



def no_gro(snap: Snapshot, ifname: str) -> Snapshot:
    lk = next(lk for lk in snap.links if lk.ifname == ifname)
    assert lk.xdp_features is not None
    return with_link(snap, ifname, xdp_features=lk.xdp_features & ~XDP_ACT_NDO_XMIT)


def advise(snap: Snapshot, peers: dict[int, Peer] = PEERS) -> doctor.Guidance:
    return doctor.advise(snap, make_plan(snap), peers)


def test_a_healthy_router_forwards_everything(snap: Snapshot) -> None:
    g = advise(snap)
    assert {n: s.text() for n, s in g.shares.items()} == {"r1": "all", "r2": "all"}
    assert g.findings() == [] and not g.forwards_nothing(make_plan(snap))


def test_one_peer_without_gro_leaves_traffic_towards_it_on_linux(snap: Snapshot) -> None:
    g = advise(no_gro(snap, "r2"))
    # r1's traffic can only go out of r2; what r2 receives can still leave through r1
    assert g.shares["r1"].text() == "none (no other interface takes redirected frames (r2))"
    assert g.shares["r2"].share == "all"
    assert not g.forwards_nothing(make_plan(no_gro(snap, "r2")))
    [f] = g.findings()
    assert (f.subject, f.reason, f.fix) == ("r2", "no_xdp_xmit",
                                            "ip netns exec h2 ethtool -K eth0 gro on")


def test_no_peer_with_gro_forwards_nothing_and_says_how_to_fix_it(snap: Snapshot) -> None:
    s = no_gro(no_gro(snap, "r1"), "r2")
    g = advise(s)
    assert {n: sh.share for n, sh in g.shares.items()} == {"r1": "none", "r2": "none"}
    assert g.forwards_nothing(make_plan(s))
    assert sorted(g.egress_fixes()) == ["ip netns exec h1 ethtool -K eth0 gro on",
                                        "ip netns exec h2 ethtool -K eth0 gro on"]


def test_a_peer_in_an_unnamed_namespace_is_named_by_ifindex_and_netns_id(snap: Snapshot
                                                                         ) -> None:
    g = advise(no_gro(snap, "r2"), {292: Peer(7, None, None, 3)})
    assert g.findings()[0].fix == ("ethtool -K '<the veth peer: ifindex 7 in netns id 3>' "
                                   "gro on")


def test_local_senders_offloading_checksums_are_named_with_their_fix(snap: Snapshot) -> None:
    g = advise(snap, {**PEERS, 289: replace(PEERS[289], tx_csum=True)})
    assert g.shares["r1"].text() == "partial: TCP/UDP sent by programs behind r1's veth peer"
    assert [f.fix for f in g.shares["r1"].findings] == [
        "ip netns exec h1 ethtool -K eth0 tx off"]
    assert g.shares["r2"].share == "all"


def test_a_foreign_xdp_program_is_named_with_its_fix_and_a_caveat(snap: Snapshot) -> None:
    g = advise(with_link(snap, "r1", xdp=XdpAttachment(42, "native", ours=False)))
    assert g.shares["r1"].share == "none"
    [f] = g.shares["r1"].findings
    assert f.fix == "ip link set dev r1 xdp off" and "removed" in f.caveat


def test_forwarding_off_is_configuration_not_a_defect(snap: Snapshot) -> None:
    s = replace(snap, sysctls=replace(snap.sysctls, ipv6_forwarding=False))
    g = advise(s)
    [f] = g.namespace
    assert f.reason == "forwarding_disabled" and f.fix is None
    assert g.shares["r1"].text() == "partial: ipv6 forwarding"
