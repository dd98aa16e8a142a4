"""The scaling sweeps' pure parts: route tables and destination grids, ctnetlink messages,
path costs and the Markdown table (no root)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path
from typing import Any

import pytest

from tna.bench import ctfill, frames, scaling, scaling_report
from tna.bench.prefixes import MAX_DESTINATIONS, MIX4, MIX6, Prefixes


@pytest.mark.parametrize("family", [4, 6])
def test_every_grid_destination_has_a_route_of_its_own(family: int) -> None:
    p = Prefixes(family)
    p.grow(10)
    p.grow(600)
    assert len(p.nets) == 600 == len(set(p.nets))
    routes = {p.route_of(i) for i in range(p.destinations(600))}
    assert len(routes) == p.destinations(600) == 600  # one route per destination
    mix = dict(MIX4 if family == 4 else MIX6)
    assert {n.prefixlen for n in p.nets} <= set(mix)


def test_destinations_stop_at_the_grid() -> None:
    p = Prefixes(4)
    assert p.destinations(1) == 1 and p.destinations(10) == 10
    assert p.destinations(10**6) == MAX_DESTINATIONS
    last = p.destination(MAX_DESTINATIONS - 1)
    assert isinstance(last, ipaddress.IPv4Address)
    assert last.is_global and not last.is_multicast
    assert all(not p.destination(i).is_link_local for i in range(MAX_DESTINATIONS))


def test_random_prefixes_avoid_the_scenarios_networks() -> None:
    p = Prefixes(4)
    p.grow(5_000)
    for net in p.nets:
        assert not net.overlaps(ipaddress.ip_network("10.0.0.0/8"))
        assert not net.overlaps(ipaddress.ip_network("127.0.0.0/8"))


@pytest.mark.parametrize("family", [4, 6])
def test_the_generator_variation_walks_the_grid(family: int) -> None:
    p = Prefixes(family)
    make = frames.ipv4_destinations if family == 4 else frames.ipv6_destinations
    var = make(p.first(), 100, p.step)
    spec = frames.FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01",
                            "10.1.0.2" if family == 4 else "fd00:1::2", p.first())
    for i in (0, 1, 57, 99, 100):
        assert frames.varied(spec, var, i).dst_ip == str(p.destination(i % 100))


def test_ctnetlink_message_layout() -> None:
    msg = ctfill.message(50_001, 7, ack=True)
    size, kind, flags, seq, _ = struct.unpack_from("=IHHII", msg)
    assert size == len(msg) and seq == 7
    assert kind == ctfill.NFNL_SUBSYS_CTNETLINK << 8 | ctfill.IPCTNL_MSG_CT_NEW
    assert flags & ctfill.NLM_F_ACK and flags & ctfill.NLM_F_CREATE
    src, dst, sport, dport = ctfill.entry(50_001)
    assert (src, sport) == (ctfill.SRC_BASE + 1, 10_001) and (dst, dport) == (ctfill.DST, 53)
    assert struct.pack("!I", src) in msg and struct.pack("!H", sport) in msg
    assert len({ctfill.entry(i) for i in range(120_000)}) == 120_000


def _row(n: int, null: list[float], linux: list[float], tna: list[float],
         fp: float | None = 1.0) -> dict[str, Any]:
    mode = {"status": "ok", "note": "", "cpu_other": 0.0}
    return {"n": n, "install_s": 0.5, "load": [0.5, 0.4, 0.3],
            "modes": {"null": {**mode, "ns": null, "fast_path": None},
                      "linux": {**mode, "ns": linux, "fast_path": None},
                      "tna": {**mode, "ns": tna, "fast_path": fp}}}


def test_path_cost_takes_the_lowest_runs() -> None:
    row = _row(10, [300, 280], [1000, 900, 1200], [500, 450])
    assert scaling_report.path_ns(row, "linux") == 620
    assert scaling_report.path_ns(row, "tna") == 170
    assert scaling_report.path_ns(_row(1, [], [1.0], [1.0]), "tna") is None


def test_markdown_names_every_point_and_flags_punting() -> None:
    doc: dict[str, Any] = {"meta": {"date": "d", "seconds": 60}, "sweeps": {"fdb": {
        "title": "t", "group": "fdb", "label": "bridge", "what": "FDB entries",
        "points": [_row(10, [300], [1300], [500]),
                   _row(100_000, [300], [1400], [900], fp=0.6)]}}}
    doc["sweeps"]["fdb"]["points"][1]["modes"]["tna"].update(status="invalid",
                                                              note="fast path 60%")
    md = scaling_report.markdown(doc)
    assert "| 10 | 0.5 | - | 1,000 | 200 | 5.0x | 100% |" in md
    assert "| 100,000 |" in md and "TNA invalid; fast path 60%" in md


def test_points_are_capped_and_limited() -> None:
    class Capped(scaling.Sweep):
        points = (1, 10, 100, 1000)

        def cap(self) -> int | None:
            return 500

    st = scaling.Settings(sweeps=())
    assert scaling.plan_points(Capped(), st) == [1, 10, 100, 500]
    assert scaling.plan_points(Capped(), scaling.Settings(sweeps=(), max_n=10)) == [1, 10]
    assert scaling.plan_points(Capped(), scaling.Settings(sweeps=(), points=(2, 5))) == [2, 5]


def test_bad_command_lines_get_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        scaling.main(["--points", "ten"])
    assert "expected sizes like" in capsys.readouterr().err


def test_merged_runs_keep_the_lowest_of_all() -> None:
    def doc(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"meta": {"date": "d"}, "sweeps": {"fdb": {
            "title": "t", "group": "fdb", "label": "bridge", "what": "FDB entries",
            "points": rows}}}

    a = doc([_row(10, [300], [1300], [500])])
    a["sweeps"]["fdb"]["points"][0]["modes"]["tna"].update(status="error", note="E2BIG")
    b = doc([_row(10, [280], [1500], [450], fp=0.5), _row(100, [300], [1400], [600])])
    merged = scaling_report.merge([a, b])
    rows = merged["sweeps"]["fdb"]["points"]
    assert [r["n"] for r in rows] == [10, 100]
    assert scaling_report.path_ns(rows[0], "tna") == 170  # 450 - 280
    assert scaling_report.tna_fast(rows[0]) == 0.5  # the worse share
    assert rows[0]["modes"]["tna"]["status"] == "ok"  # a run that worked beats one that failed
    assert a["sweeps"]["fdb"]["points"][0]["modes"]["tna"]["ns"] == [500]  # inputs untouched
    assert merged["meta"]["merged"][0]["date"] == "d"


def test_a_foreign_json_gets_a_one_line_error(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert scaling.main(["--from-json", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "not a scaling.json" in capsys.readouterr().err
