"""Features follow the C struct: one member list, conversions and names derived from it."""

from __future__ import annotations

import dataclasses

from tna import abi
from tna.plan.types import Features


def test_features_are_the_c_members_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Features)] == Features.c_members()
    assert Features.c_members() == [m[0] for m in abi.TnaFeatures._fields_]
    assert all(f.default in (0, False) for f in dataclasses.fields(Features))


def test_round_trip_through_the_c_block() -> None:
    f = Features(ipv4_router=True, ipv4_rp_filter=2, bridge_port=True, bridge_ipv6=2,
                 firewall_ipv6=True)
    raw = bytes(f.to_c())
    assert raw[:3] == b"\x01\x00\x02"  # control: the block is positional, as the C struct
    assert Features.from_c(raw) == f
    assert Features.from_c(raw[:2]) == Features(ipv4_router=True)  # an older, shorter block


def test_names_read_values() -> None:
    assert Features().names() == []
    assert Features(True, True, 1, True).names() == [
        "ipv4_router", "ipv6_router", "ipv4_rp_filter_strict", "verify_l4_csum"]
    assert Features(ipv4_rp_filter=2, bridge_port=True, bridge_ipv4=2, bridge_ipv6=1,
                    bridge_egress=True, firewall_ipv4=True).names() == [
        "ipv4_rp_filter_loose", "bridge_port", "bridge_ipv4_br_netfilter", "bridge_ipv6",
        "bridge_egress", "firewall_ipv4"]
