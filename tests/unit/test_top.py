"""``tna top``'s arithmetic and rendering on made-up samples (no kernel needed)."""

from __future__ import annotations

from rich.console import Console

from tna import top
from tna.datapath.status import Counter


def row(**counts: tuple[int, int]) -> dict[str, Counter]:
    names = ("forwarded", "transmitted", "bridged", "fw_dropped", "ttl", "no_neigh", "egress")
    return {n: Counter(*counts.get(n, (0, 0))) for n in names}


def test_rates_share_and_top_reasons() -> None:
    before = top.Sample(10.0, {("", "r1"): row(forwarded=(100, 10000), ttl=(5, 500))},
                        {("", "rule a"): 40})
    after = top.Sample(12.0, {("", "r1"): row(forwarded=(300, 30000), bridged=(100, 5000),
                                              ttl=(25, 2500), no_neigh=(45, 4500),
                                              egress=(55, 5500), fw_dropped=(40, 0)),
                              ("", "r2"): row(transmitted=(7, 700))},
                       {("", "rule a"): 60})
    r1, r2 = top.rates(before, after)
    assert (r1.ifname, r1.fast_pps, r1.fast_bps) == ("r1", 150.0, (20000 + 5000) * 8 / 2)
    assert r1.linux_pps == (20 + 45 + 55) / 2 and r1.dropped_pps == 20
    assert r1.reasons == [("egress", 27.5), ("no_neigh", 22.5), ("ttl", 10.0)]
    assert r1.share == (150 + 20) / (150 + 60 + 20)
    assert r2.share is None and r2.reasons == []  # egress only: nothing received
    assert top.rule_rates(before, after) == [("", "rule a", 10.0, 60)]


def test_counters_recreated_count_from_zero() -> None:
    before = top.Sample(0.0, {("", "r1"): row(forwarded=(1000, 0))})
    after = top.Sample(1.0, {("", "r1"): row(forwarded=(4, 0))})
    assert top.rates(before, after)[0].fast_pps == 4


def test_render_is_plain_text() -> None:
    before = top.Sample(0.0, {("ns1", "r1"): row()})
    after = top.Sample(1.0, {("ns1", "r1"): row(forwarded=(2500, 2500 * 1000), ttl=(3, 0))})
    console = Console(width=160, record=True, force_terminal=False)
    console.print(top.render(before, after, labelled=True, interval=1.0))
    text = console.export_text()
    assert "\x1b[" not in text
    line = next(ln for ln in text.splitlines() if " r1 " in ln)
    assert line.split()[:4] == ["ns1", "r1", "2.5k", "20.0M"] and "ttl 3.0" in line
    assert "99.9%" in line


def test_human() -> None:
    assert [top.human(v) for v in (0, 0.5, 12, 1500, 2.5e6, 3e9)] == \
        ["0", "0.5", "12", "1.5k", "2.5M", "3.0G"]
