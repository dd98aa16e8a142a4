"""tna bench's statistics and rendering, from hand-made samples (no root, no BPF)."""

from __future__ import annotations

import builtins
import json
from typing import Any

import pytest

from tna.bench import report as rep
from tna.bench.report import MicroResult, ProgProfile, Report, Result, Sample


def _res(scenario: str, mode: str, mpps: list[float], size: int = 64, **kw: Any) -> Result:
    samples = [Sample(pps=m * 1e6, offered_pps=m * 1.01e6) for m in mpps]
    return Result(scenario, size, mode, samples, **kw)


@pytest.fixture
def report() -> Report:
    return Report(
        meta={"date": "d", "machine": "m", "kernel": "k", "cpu": 1, "runs": 3, "seconds": 2,
              "warmup": 1},
        scenarios={"router-v4": "IPv4 router", "bridge": "Linux bridge"},
        results=[
            _res("router-v4", "null", [6.0, 6.2, 6.4]),
            _res("router-v4", "linux", [1.2, 1.0, 1.25]),
            _res("router-v4", "tna", [3.0, 3.1, 2.9]),
            _res("router-v4", "sol", [4.0, 4.2, 4.1]),
            _res("bridge", "null", [6.0]),
            _res("bridge", "linux", [0.8]),
            Result("bridge", 64, "tna", status="n/a",
                   note="n/a (bridge fast path not implemented)"),
            _res("bridge", "sol", [4.5]),
        ],
        micro=[MicroResult("router-v4", "tna (as loaded)", ["ipv4_router"], 1200, 250.0, 150.0,
                           100, {"redirect": 100})],
        profile=[ProgProfile("router-v4", 64, "tna", {"generator": 40.0, "dut": 200.0,
                                                      "sink": 40.0})],
    )


def test_median_spread_ratio() -> None:
    assert rep.median([3.0, 1.0, 2.0]) == 2.0
    assert rep.median([1.0, 2.0, 3.0, 4.0]) == 2.5
    with pytest.raises(ValueError):
        rep.median([])
    assert rep.spread([1.0, 2.0, 3.0]) == pytest.approx(1.0)
    assert rep.spread([5.0]) == 0.0
    assert rep.spread([]) == 0.0
    assert rep.ratio(3.0, 1.5) == 2.0
    assert rep.ratio(None, 1.0) is None
    assert rep.ratio(1.0, 0.0) is None
    assert rep.ns_per_packet(2e6) == pytest.approx(500.0)
    assert rep.ns_per_packet(None) is None


def test_result_properties() -> None:
    r = _res("router-v4", "linux", [1.2, 1.0, 1.25])
    assert r.mpps == pytest.approx(1.2)
    assert r.ns == pytest.approx(1e9 / 1.2e6)
    assert r.spread == pytest.approx(0.25 / 1.2)
    assert r.offered_mpps == pytest.approx(1.2 * 1.01)
    assert r.fast_path is None
    na = Result("bridge", 64, "tna", status="n/a")
    assert na.mpps is None and na.ns is None and not na.measured


def test_fast_path_is_the_median_of_runs() -> None:
    r = Result("router-v4", 64, "tna", [Sample(1e6, fast_path=f) for f in (0.9, 1.0, 0.99)])
    assert r.fast_path == pytest.approx(0.99)


def test_summary_ratios(report: Report) -> None:
    rows = {r["scenario"]: r for r in rep.summary(report)}
    v4 = rows["router-v4"]
    assert v4["linux"] == pytest.approx(1.2) and v4["tna"] == pytest.approx(3.0)
    assert v4["tna_vs_linux"] == pytest.approx(2.5)
    assert v4["tna_vs_limit"] == pytest.approx(3.0 / 4.1)
    assert v4["limit_vs_linux"] == pytest.approx(4.1 / 1.2)
    br = rows["bridge"]
    assert br["tna"] is None and br["tna_vs_linux"] is None
    assert "not implemented" in br["tna_note"]


def test_invalid_results_are_not_numbers(report: Report) -> None:
    tna = report.result("router-v4", 64, "tna")
    assert tna is not None
    tna.status, tna.note = "invalid", "fast path forwarded only 3%"
    row = rep.summary(report)[0]
    assert row["tna"] is None and row["tna_vs_linux"] is None
    assert "invalid" in rep.detail_table(report)


def test_goals_are_judged_on_path_cost(report: Report) -> None:
    goals = {g["goal"]: g for g in rep.goals(report)}
    null_ns = 1e3 / 6.2
    v4_linux = next(g for k, g in goals.items() if "3x Linux, IPv4" in k)
    assert v4_linux["e2e"] == pytest.approx(2.5)
    assert v4_linux["value"] == pytest.approx((1e3 / 1.2 - null_ns) / (1e3 / 3.0 - null_ns))
    assert v4_linux["met"] is True  # 3.91x
    v4_limit = next(g for k, g in goals.items() if "80%" in k)
    assert v4_limit["e2e"] == pytest.approx(3.0 / 4.1)  # 73% end to end ...
    assert v4_limit["met"] is False  # ... but the limit's path is 83 ns against TNA's 172
    bridge = next(g for g in goals.values() if g["scenario"] == "bridge")
    assert bridge["met"] is None and bridge["value"] is None


def test_goal_missed() -> None:
    r = Report(results=[_res("router-v4", "null", [8.0]), _res("router-v4", "linux", [1.0]),
                        _res("router-v4", "tna", [2.0]), _res("router-v4", "sol", [4.0])])
    goals = rep.goals(r)
    assert [g["met"] for g in goals[:2]] == [False, False]
    assert "**missed**" in rep.goals_table(r)


def test_markdown(report: Report) -> None:
    md = rep.markdown(report)
    assert "Traffic source: **live**" in md
    assert ("| router-v4 | 64 | 6.20 | 1.20 | 3.00 | - | 4.10 | 672 | 172 | 83 | 2.50x | 3.91x "
            "| 73% | 48% | - |") in md
    assert "| TNA >= 3x Linux, IPv4 routing | >= 3.0x | 3.91x | 2.50x | met |" in md
    assert "n/a (bridge fast path not implemented)" in md
    assert "| router-v4 | 64 | linux | 1.20 | 1.00-1.25 | 20.8% | 833 | 672 |" in md
    assert "tna (as loaded)" in md and "| 1200 | 250 | 150 | redirect |" in md
    # the profile row: DUT - sink = 160; path ns = tna ns - null ns = 172; the rest 12
    assert "| router-v4 | 64 | tna | 40 | 200 | 40 | 160 | 172 | 12 |" in md
    lines = [line for line in md.splitlines() if line.startswith("|")]
    assert all(line.endswith("|") for line in lines)


def test_variant_modes_are_listed_after_the_standard_ones() -> None:
    r = Report(results=[_res("router-v4", "tna:-verify_l4_csum", [2.5]),
                        _res("router-v4", "linux", [1.0])])
    assert r.modes() == ["linux", "tna:-verify_l4_csum"]
    assert "tna:-verify_l4_csum" in rep.detail_table(r)


def test_json_round_trip(report: Report) -> None:
    doc = json.loads(rep.dumps(report))
    assert doc["summary"][0]["tna_vs_linux"] == pytest.approx(2.5)
    tna = next(r for r in doc["results"] if r["mode"] == "tna" and r["scenario"] == "router-v4")
    assert tna["mpps"] == pytest.approx(3.0) and tna["ns_per_packet"] == pytest.approx(333.33, 0.01)
    again = rep.from_json(doc)
    assert rep.markdown(again) == rep.markdown(report)


def test_plot_writes_png(report: Report, tmp_path: Any) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    assert rep.plot(report, str(out)) is None
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib(report: Report, tmp_path: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_mpl(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    why = rep.plot(report, str(tmp_path / "bench.png"))
    assert why is not None and "matplotlib" in why
    assert not (tmp_path / "bench.png").exists()


def test_path_ratio_ignores_noise() -> None:
    assert rep.path_ratio(600.0, 200.0) == pytest.approx(3.0)
    assert rep.path_ratio(600.0, -5.0) is None  # below the null mode: noise, not a speed-up
    assert rep.path_ratio(None, 200.0) is None


def _two_sources() -> Report:
    skb = [Result(s.scenario, s.size, s.mode, s.samples, source="skb") for s in (
        _res("router-v4", "null", [1.8]), _res("router-v4", "linux", [0.9]),
        _res("router-v4", "tna", [1.25]), _res("punt-all", "null", [1.8]),
        _res("punt-all", "null-tc", [2.0]),
        _res("punt-all", "linux", [0.8]), _res("punt-all", "xdp-pass", [0.78]),
        _res("punt-all", "tna", [0.75]))]
    live = [_res("router-v4", "null", [6.0]), _res("router-v4", "linux", [1.2]),
            _res("router-v4", "tna", [3.0]), _res("punt-all", "null", [6.0]),
            _res("punt-all", "linux", [1.1]), _res("punt-all", "tna", [1.0])]
    return Report(meta={"source": "live"}, results=live + skb)


def test_tables_show_the_main_source_and_compare_the_other() -> None:
    r = _two_sources()
    assert r.sources() == ["live", "skb"]
    assert [s["scenario"] for s in rep.summary(r)] == ["router-v4", "punt-all"]
    assert rep.summary(r)[0]["tna"] == pytest.approx(3.0)  # not the skb 1.25
    assert rep.summary(r, "skb")[0]["tna"] == pytest.approx(1.25)
    comp = {(c["scenario"], c["mode"]): c for c in rep.comparison(r)}
    tna = comp[("router-v4", "tna")]
    assert tna["live_mpps"] == pytest.approx(3.0) and tna["skb_mpps"] == pytest.approx(1.25)
    assert tna["skb_path_ns"] == pytest.approx(1e3 / 1.25 - 1e3 / 1.8)
    md = rep.markdown(r)
    assert "| scenario | frame B | mode | live Mpps | live path ns | skb Mpps | skb path ns |" in md
    assert "| router-v4 | 64 | tna | 3.00 | 167 | 1.25 | 244 |" in md


def test_punt_all_overhead_per_source() -> None:
    rows = {p["source"]: p for p in rep.punt_all(_two_sources())}
    assert set(rows) == {"live", "skb"}
    skb = rows["skb"]
    assert skb["overhead_ns"] == pytest.approx(1e3 / 0.75 - 1e3 / 0.8)  # 83 ns
    assert skb["xdp_ns"] == pytest.approx(1e3 / 0.78 - 1e3 / 0.8)
    assert rows["live"]["xdp_ns"] is None  # xdp-pass not measured there
    assert skb["conversion_ns"] == pytest.approx(1e3 / 1.8 - 1e3 / 2.0)
    md = rep.markdown(_two_sources())
    assert "| skb | 64 | 1250 | 1282 | 1333 | 83 | 32 | 56 | 0.94x |" in md


def test_json_names_the_source_of_every_result() -> None:
    doc = json.loads(rep.dumps(_two_sources()))
    assert {r["source"] for r in doc["results"]} == {"live", "skb"}
    assert doc["punt_all"] and doc["comparison"]
    assert rep.from_json(doc).result("router-v4", 64, "tna", "skb") is not None


def test_reports_from_before_sources_are_live() -> None:
    doc = json.loads(rep.dumps(Report(results=[_res("router-v4", "linux", [1.0])])))
    del doc["results"][0]["source"]
    assert rep.from_json(doc).results[0].source == "live"
