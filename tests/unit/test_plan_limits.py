"""The planner's interface limit and the root-only directory checks (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tna import abi, rootdir
from tna.plan import BridgePortPlan, Features, InterfacePlan, within_slots

FAST = Features(ipv4_router=True)


def iface(ifindex: int, features: Features | None = FAST, egress: bool = True,
          bridge: bool = False, bridge_port: BridgePortPlan | None = None) -> InterfacePlan:
    return InterfacePlan(ifindex, f"if{ifindex}", "02:00:00:00:00:01", features, egress,
                         bridge=bridge, bridge_port=bridge_port)


def test_within_the_limit_nothing_changes() -> None:
    ifs = tuple(iface(i) for i in range(1, 11))
    assert within_slots(ifs, slots=10) == ifs


def test_past_the_limit_the_first_by_ifindex_stay_and_the_rest_go_to_linux() -> None:
    ifs = tuple(iface(i) for i in range(300, 0, -1))
    out = {i.ifindex: i for i in within_slots(ifs)}
    slots = abi.max_ifaces() - 1
    kept = [i for i in out.values() if i.features is not None]
    assert len(kept) == slots and max(i.ifindex for i in kept) == slots
    for i in out.values():
        if i.ifindex > slots:
            assert i.features is None and not i.egress
            assert [s.reason for s in i.slow_path] == ["iface_limit"]


def test_left_to_linux_interfaces_take_no_slot() -> None:
    ifs = (*(iface(i) for i in range(1, 4)), iface(4, features=None, egress=False))
    assert within_slots(ifs, slots=3) == ifs


def test_a_bridge_and_its_ports_fit_together_or_not_at_all() -> None:
    port = BridgePortPlan(bridge=3, forwarding=True)
    ifs = (iface(1), iface(2), iface(3, features=None, bridge=True),
           iface(4, bridge_port=port), iface(5, bridge_port=port), iface(6))
    out = {i.ifindex: i for i in within_slots(ifs, slots=4)}
    assert [i for i in (1, 2, 6) if out[i].features is not None] == [1, 2, 6]
    for i in (3, 4, 5):
        assert out[i].features is None and not out[i].bridge and out[i].bridge_port is None


def test_rootdir_refuses_symlinks_and_shared_modes(tmp_path: Path) -> None:
    good = tmp_path / "good"
    assert rootdir.ensure(str(good)) == str(good)
    assert os.stat(good).st_mode & 0o777 == 0o700
    assert rootdir.check(str(tmp_path / "absent")) is False
    (tmp_path / "link").symlink_to(good)
    with pytest.raises(rootdir.UnsafeDir, match="symlink"):
        rootdir.ensure(str(tmp_path / "link"))
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(rootdir.UnsafeDir, match="world-writable"):
        rootdir.check(str(shared))
    (tmp_path / "file").write_text("")
    with pytest.raises(rootdir.UnsafeDir, match="not a directory"):
        rootdir.check(str(tmp_path / "file"))


def test_rootdir_narrows_an_older_open_directory(tmp_path: Path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    old.chmod(0o755)
    rootdir.ensure(str(old))
    assert os.stat(old).st_mode & 0o777 == 0o700
