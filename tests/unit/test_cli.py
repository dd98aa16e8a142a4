"""CLI behaviour that needs no privileges: preflight errors and text formatting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tna import cli
from tna.model import Snapshot
from tna.plan import make_plan

DATA = Path(__file__).parent / "data"


def test_not_root_is_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err == "tna: must run as root (BPF and netlink configuration need it)\n"


def test_old_kernel_is_refused(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cli.os, "uname", lambda: type("U", (), {"release": "4.19.0-27"})())
    assert cli.main(["show"]) == 1
    assert "unsupported kernel 4.19.0-27" in capsys.readouterr().err


def test_plan_text_names_every_slow_path() -> None:
    snap = Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))
    text = cli.format_plan(make_plan(snap))
    assert text.splitlines() == [
        "r1: fast path: ipv4_router, ipv6_router, verify_l4_csum; egress target: yes",
        "r2: fast path: ipv4_router, ipv6_router, verify_l4_csum; egress target: yes",
    ]


def test_snapshot_text_lists_links() -> None:
    snap = Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))
    text = cli.format_snapshot(snap)
    assert "r1" in text and "veth" in text and "forwarding: ipv4=on ipv6=on" in text
