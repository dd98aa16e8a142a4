"""Snapshots are immutable and survive a JSON round trip unchanged."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tna.model import AF_INET, AF_INET6, NetfilterChain, Rule, Snapshot

DATA = Path(__file__).parent / "data"


def test_recorded_snapshot_round_trips() -> None:
    raw = json.loads((DATA / "router_snapshot.json").read_text())
    snap = Snapshot.from_dict(raw)
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    assert snap.link_by_name("r1") is not None
    assert snap.link(snap.link_by_name("r1").ifindex).ifname == "r1"  # type: ignore[union-attr]
    assert snap.sysctls.interfaces["r2"].ipv4_forwarding is True


def test_snapshot_is_frozen() -> None:
    snap = Snapshot(netns="", kernel="6.18")
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.netns = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("rule", "default"), [
    (Rule(AF_INET, 0, 255, "to_tbl"), True),
    (Rule(AF_INET6, 32766, 254, "to_tbl"), True),
    (Rule(AF_INET, 32767, 253, "to_tbl"), True),
    (Rule(AF_INET, 100, 254, "to_tbl"), False),
    (Rule(AF_INET, 32766, 254, "to_tbl", ("fwmark 0x1",)), False),
])
def test_rule_is_default(rule: Rule, default: bool) -> None:
    assert rule.is_default is default


@pytest.mark.parametrize(("chain", "effect"), [
    (NetfilterChain("nftables", "inet", "t", "c", hook="forward", policy="accept"), False),
    (NetfilterChain("nftables", "inet", "t", "c", hook="forward", policy="drop"), True),
    (NetfilterChain("nftables", "inet", "t", "c", hook="forward", rules=("x",)), True),
])
def test_chain_has_effect(chain: NetfilterChain, effect: bool) -> None:
    assert chain.has_effect is effect
