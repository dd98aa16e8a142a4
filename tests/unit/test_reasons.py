"""Every counter code has exactly one description, and the stats/metrics views use them."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tna import abi, counters, metrics, reasons
from tna.datapath import status

HEADER = Path(__file__).parents[2] / "bpf" / "include" / "tna_abi.h"


def header_codes() -> list[str]:
    """The enum's names as written in the source header (not the built copy)."""
    body = re.search(r"enum tna_code \{(.*?)\};", HEADER.read_text(), re.S)
    assert body is not None
    return [n.removeprefix("PUNT_").lower()
            for n in re.findall(r"^\s*TNA_(\w+)\s*=\s*\d+\s*,", body[1], re.M)
            if n != "NR_CODES_USED"]


def test_every_code_has_exactly_one_entry() -> None:
    names = header_codes()
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(reasons.REASONS)


def test_parsed_codes_match_the_table() -> None:
    assert sorted(abi.codes().values()) == sorted(reasons.REASONS)


def test_entries_are_one_line_for_a_person() -> None:
    for name, r in reasons.REASONS.items():
        assert r.kind in (reasons.FAST, reasons.DROP, reasons.PUNT), name
        assert r.description and "\n" not in r.description and len(r.description) < 110, name
        assert r.setting is None or ("\n" not in r.setting and r.setting), name
    assert {n for n, r in reasons.REASONS.items() if r.kind != reasons.PUNT} == \
        {"forwarded", "transmitted", "bridged", "fw_dropped"}


def test_an_unknown_code_still_gets_a_line() -> None:
    assert "no description" in reasons.describe("from_the_future").description


def C(p: int, b: int = 0) -> status.Counter:
    return status.Counter(p, b)


def fake_rows(unknown: int = 0) -> counters.Rows:
    def row(**nonzero: int) -> dict[str, status.Counter]:
        return {n: C(nonzero.get(n, 0), 100 * nonzero.get(n, 0)) for n in reasons.REASONS}
    return {0: row(no_port=unknown), 1: row(forwarded=7, transmitted=2, ttl=3),
            2: row(transmitted=7, fw_dropped=1)}


def test_summary_drops_the_empty_unknown_slot_and_explains_what_occurs() -> None:
    doc = counters.summary(counters.Readout(fake_rows(), 1.0e9, 1.0e9))
    assert "(unknown)" not in doc["interfaces"] and "unknown_ingress" not in doc
    assert all(s["ifindex"] != 0 for s in doc["interfaces"].values())
    assert doc["forwarded_packets"] == 7 and doc["punt_reasons"]["ttl"] == 3
    assert doc["dropped_packets"] == 1 and doc["since"] == "2001-09-09T01:46:40Z"
    assert list(doc["legend"]) == ["forwarded", "fw_dropped", "ttl"]
    assert doc["legend"]["ttl"]["description"] == reasons.REASONS["ttl"].description
    full = counters.summary(counters.Readout(fake_rows(), 1.0e9, 1.0e9), describe_all=True)
    assert list(full["legend"]) == list(reasons.REASONS)


def test_summary_keeps_counted_unknown_ingress_apart_from_interfaces() -> None:
    doc = counters.summary(counters.Readout(fake_rows(unknown=4), 1.0e9, 1.0e9))
    assert doc["unknown_ingress"]["punt_reasons"]["no_port"] == 4
    assert doc["punt_reasons"]["no_port"] == 4 and doc["punted_packets"] == 7
    assert all(s["ifindex"] != 0 for s in doc["interfaces"].values())


def test_reset_baseline_is_subtracted(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rows = fake_rows()
    monkeypatch.setattr(counters, "baseline_path", lambda: str(tmp_path / "base.json"))
    monkeypatch.setattr(counters, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(counters, "created", lambda: 5.0)
    monkeypatch.setattr(status, "read_counters", lambda: rows)
    assert counters.read().rows[1]["forwarded"].packets == 7  # positive control
    counters.reset()
    assert counters.read().rows[1]["forwarded"] == C(0, 0)
    rows[1] = {**rows[1], "forwarded": C(10, 1000)}
    now = counters.read()
    assert now.rows[1]["forwarded"] == C(3, 300) and now.reset_at is not None
    rows[2] = {**rows[2], "transmitted": C(1, 0)}  # went backwards: the slot was reused
    assert counters.read().rows[2]["transmitted"] == C(1, 0)
    monkeypatch.setattr(counters, "created", lambda: 6.0)  # counters recreated since the reset
    assert counters.read().rows[1]["forwarded"] == C(10, 1000)


@pytest.mark.parametrize(("text", "want"), [("9100", ("127.0.0.1", 9100)),
                                            ("0.0.0.0:9100", ("0.0.0.0", 9100)),
                                            ("[::1]:9100", ("::1", 9100))])
def test_metrics_address(text: str, want: tuple[str, int]) -> None:
    assert metrics.parse_address(text) == want


@pytest.mark.parametrize("text", ["x", "1.2.3.4:", "1.2.3.4:70000"])
def test_metrics_bad_address(text: str) -> None:
    with pytest.raises(ValueError, match="--metrics"):
        metrics.parse_address(text)


def test_exposition_passes_promtool(monkeypatch: pytest.MonkeyPatch) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    monkeypatch.setattr(counters, "read_raw",
                        lambda: counters.Readout(fake_rows(unknown=4), 5.0, 5.0))
    monkeypatch.setattr(counters, "ifname", lambda i: f"eth{i}")
    monkeypatch.setattr(status, "attached", lambda: [])
    text = metrics.exposition(None)
    assert 'tna_forwarded_packets_total{interface="eth1"} 7.0' in text
    assert 'tna_punted_packets_total{interface="",reason="no_port"} 4.0' in text
    assert 'interface="eth0"' not in text  # slot 0 is never an interface
    assert 'tna_reason_info{' in text and "tna_counters_created_timestamp_seconds 5.0" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                           capture_output=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    bad = subprocess.run([promtool, "check", "metrics"], input="# TYPE x_total counter\n"
                         "x_total{a=\"1\"} 1\n# TYPE x_total counter\n", text=True,
                         capture_output=True, check=False)
    assert bad.returncode != 0  # the check can fail


def test_daemon_metrics_count_reconciliations() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    reg = CollectorRegistry()
    m = metrics.DaemonMetrics(reg)
    m.observe({"start"}, True, {"read": 0.002, "plan": 0.001, "apply": 0.003, "total": 0.006})
    m.observe({"periodic"}, False, {"total": 0.5})
    text = generate_latest(reg).decode()
    assert 'tna_reconciles_total{result="ok"} 1.0' in text
    assert 'tna_reconciles_total{result="error"} 1.0' in text
    assert 'tna_resyncs_total{trigger="periodic"} 1.0' in text
    assert 'tna_reconcile_duration_seconds_count{phase="total"} 2.0' in text
    assert "tna_last_reconcile_success 0.0" in text
