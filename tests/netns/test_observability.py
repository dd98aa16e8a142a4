"""Observability end to end: stats with reasons and reset, Prometheus metrics of a daemon
scraped by a real Prometheus server inside the router's namespace."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.netns_helpers import primed_router
from tna import counters, netns
from tna.datapath.pins import open_map
from tna.testbed import DaemonProcess, RouterTopology, Testbed, run_tna, tna_stats, wait_for

METRICS_PORT, PROMETHEUS_PORT = 9489, 9490


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with primed_router("tnaobs") as t:
        yield t


def forwarded_r1(ns: str) -> int:
    return int(tna_stats(ns)["interfaces"].get("r1", {}).get("forwarded_packets", 0))


def test_stats_explain_reasons_count_since_and_reset(topo: RouterTopology) -> None:
    run_tna(topo.r, "apply")
    try:
        assert topo.ping(topo.h1, topo.h2_v4, "-i", "0.01", count=4).returncode == 0
        assert topo.ping(topo.h1, topo.h2_v4, "-t", "1").returncode != 0  # TTL 1: Linux's
        stats = tna_stats(topo.r)
        assert set(stats["interfaces"]) == {"r1", "r2"}  # no "(unknown)" / ifindex 0 row
        assert stats["since"] and stats["since"] == stats["created"] and stats["reset"] is None
        assert stats["interfaces"]["r1"]["forwarded_packets"] == 4
        assert stats["interfaces"]["r1"]["punt_reasons"]["ttl"] == 1
        assert "Linux sends ICMP time exceeded" in stats["legend"]["ttl"]["description"]
        text = run_tna(topo.r, "stats").stdout
        assert "legend:" in text and "ttl" in text and "(unknown)" not in text
        described = run_tna(topo.r, "stats", "--describe").stdout
        assert "rp_filter" in described and "net.ipv4.conf.IFACE.rp_filter" in described

        assert "counters reset at" in run_tna(topo.r, "stats", "--reset").stdout
        after = tna_stats(topo.r)
        assert after["reset"] and after["forwarded_packets"] == 0
        assert after["punt_reasons"].get("ttl", 0) == 0
        assert topo.ping(topo.h1, topo.h2_v4, "-i", "0.01", count=3).returncode == 0
        assert forwarded_r1(topo.r) == 3
        # the kernel's counters, which Prometheus sees, were not reset
        prom = run_tna(topo.r, "stats", "--format", "prometheus").stdout
        assert 'tna_forwarded_packets_total{interface="r1"} 7.0' in prom
        assert 'interface="(unknown)"' not in prom
        baseline = run_tna(topo.r, "stats", "--json")  # keeps the zero point...
        assert json.loads(baseline.stdout)["reset"]
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "metrics"], input=prom, text=True,
                                   capture_output=True, check=False)
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        run_tna(topo.r, "detach")
    with netns.entered(topo.r):  # ...which detach removes with the counters
        assert not os.path.exists(counters.baseline_path())


def _get(ns: str, url: str) -> bytes:
    with netns.entered(ns), urllib.request.urlopen(url, timeout=2) as resp:
        return bytes(resp.read())


def _query(ns: str, expr: str) -> list[dict[str, object]]:
    url = (f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?"
           + urllib.parse.urlencode({"query": expr}))
    try:
        doc = json.loads(_get(ns, url))
    except OSError:
        return []  # not listening yet
    result: list[dict[str, object]] = doc["data"]["result"]
    return result


@pytest.fixture
def prometheus(topo: RouterTopology) -> Iterator[subprocess.Popen[bytes]]:
    """A Prometheus server in the router's namespace scraping the daemon every 200 ms."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package prometheus)")
    with tempfile.TemporaryDirectory(prefix="tna-prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\n"
                          "scrape_configs:\n  - job_name: tna\n    static_configs:\n"
                          f"      - targets: ['127.0.0.1:{METRICS_PORT}']\n")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", topo.r, binary, f"--config.file={config}",
             f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_prometheus_scrapes_the_daemon(topo: RouterTopology,
                                       prometheus: subprocess.Popen[bytes]) -> None:
    daemon = DaemonProcess(topo.r, "--metrics", str(METRICS_PORT))
    try:
        page = _get(topo.r, f"http://127.0.0.1:{METRICS_PORT}/metrics").decode()
        assert 'tna_reconciles_total{result="ok"}' in page
        assert 'tna_program_info{features="ipv4_router,ipv6_router,verify_l4_csum,' \
               'fib_direct_v4,fib_direct_v6",interface="r1",mode="native"' in page
        promtool = shutil.which("promtool")
        if promtool:
            check = subprocess.run([promtool, "check", "metrics"], input=page, text=True,
                                   capture_output=True, check=False)
            assert check.returncode == 0, check.stdout + check.stderr
        # localhost only unless told: the router's own addresses do not answer
        with pytest.raises(OSError):
            _get(topo.r, f"http://{topo.r1_v4}:{METRICS_PORT}/metrics")

        expr = 'tna_forwarded_packets_total{job="tna",interface="r1"}'
        wait_for(lambda: bool(_query(topo.r, expr)), timeout=30, what="a first scrape")
        assert float(_query(topo.r, expr)[0]["value"][1]) == 0  # type: ignore[index]
        assert topo.ping(topo.h1, topo.h2_v4, "-i", "0.01", count=5).returncode == 0
        assert forwarded_r1(topo.r) == 5
        wait_for(lambda: float(_query(topo.r, expr)[0]["value"][1]) == 5,  # type: ignore[index]
                 timeout=10, what="Prometheus to see the 5 forwarded pings")
        up = _query(topo.r, 'tna_last_reconcile_success{job="tna"}')
        assert float(up[0]["value"][1]) == 1  # type: ignore[index]
    finally:
        daemon.stop()
    assert daemon.errors() == []


def _top_rows(text: str, ifname: str) -> list[list[str]]:
    return [ln.split() for ln in text.splitlines() if ln.split()[:1] == [ifname]]


def test_top_shows_rates_and_reasons(topo: RouterTopology) -> None:
    idle = run_tna(topo.r, "top", "--once", "--interval", "0.2").stdout
    assert "TNA is not attached here" in idle
    run_tna(topo.r, "apply")
    fast = ttl = None
    try:
        fast = subprocess.Popen(["ip", "netns", "exec", topo.h1, "ping", "-n", "-q", "-i", "0.01",
                                 "-c", "1000", topo.h2_v4], stdout=subprocess.DEVNULL)
        ttl = subprocess.Popen(["ip", "netns", "exec", topo.h1, "ping", "-n", "-q", "-t", "1",
                                "-i", "0.05", "-c", "200", topo.h2_v4],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: forwarded_r1(topo.r) > 10, timeout=10, what="pings forwarded")
        out = run_tna(topo.r, "top", "--iterations", "2", "--interval", "0.5").stdout
        r1 = _top_rows(out, "r1")
        assert len(r1) == 2, out  # two refreshes
        fast_pps, linux_pps = float(r1[-1][1].rstrip("k")), float(r1[-1][3].rstrip("k"))
        assert fast_pps >= 20 and linux_pps >= 5, out  # ~60-100/s, ~20/s
        assert "ttl" in r1[-1], out
        every = subprocess.run([sys.executable, "-m", "tna", "top", "--all", "--once",
                                "--interval", "0.3"], capture_output=True, text=True,
                               timeout=60, check=True).stdout
        assert any(ln.split()[:2] == [topo.r, "r1"] for ln in every.splitlines()), every
    finally:
        for p in (fast, ttl):
            if p is not None:
                p.kill()
                p.wait()
        run_tna(topo.r, "detach")


@pytest.mark.parametrize(("args", "needle"), [
    (("run", "--metrics", "localhost:x"), "expected [ADDRESS:]PORT"),
    (("run", "--metrics", "70000"), "port out of range"),
    (("top", "--iterations", "0"), "at least 1"),
    (("top", "--interval", "0"), "must be a number of seconds"),
    (("top", "--all"), "not both"),
])
def test_bad_options_are_one_line(bed: Testbed, args: tuple[str, ...], needle: str) -> None:
    proc = run_tna(bed.ns("empty"), *args, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr


def test_reading_counters_writes_nothing(topo: RouterTopology) -> None:
    """stats, metrics and top only read: a reader that rewrote a shared map (tna_src_bits)
    from a stale view could undo a concurrent reconciliation."""
    run_tna(topo.r, "apply")
    try:
        with netns.entered(topo.r):
            bits = open_map("tna_src_bits")
            written = bits.lookup(struct.pack("=I", 0))  # as TNA wrote it: exact
            marked = b"\xff" * bits.value_size
            bits.update(struct.pack("=I", 0), marked)  # more bits set: only slower, still exact

            def unchanged() -> bool:
                return bits.lookup(struct.pack("=I", 0)) == marked
            try:
                assert unchanged()
                assert written is not None and written != marked
                bits.update(struct.pack("=I", 0), written)  # positive control: a write shows
                assert not unchanged()
                bits.update(struct.pack("=I", 0), marked)
                for args in (("stats", "--json"), ("stats", "--format", "prometheus"),
                             ("top", "--once", "--interval", "0.1"),
                             ("explain", "--in", "r1", "udp", "10.1.0.2", ">", "10.2.0.2")):
                    run_tna(topo.r, *args)
                    assert unchanged(), args
            finally:
                bits.close()
    finally:
        run_tna(topo.r, "detach")
