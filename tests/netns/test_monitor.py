"""``tna monitor`` end to end: a punted and a firewall-dropped packet shown as they happen, and
the switch off once the monitor is gone (cleanly, or killed and expired)."""

from __future__ import annotations

import ctypes
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testing.netns_helpers import router_with_ruleset
from tna import abi, netns
from tna.datapath import libbpf, status
from tna.monitor import MonitorMaps
from tna.testbed import RouterTopology, run_tna, tna_stats, wait_for

RULESET = """table inet tnamon {
    chain forward {
        type filter hook forward priority 0; policy accept;
        udp dport 9999 drop
    }
}
"""


@pytest.fixture(scope="module")
def topo() -> Iterator[RouterTopology]:
    with router_with_ruleset("tnamon", RULESET) as t:
        yield t


def ctl(ns: str) -> Any:
    with netns.entered(ns):
        maps = MonitorMaps()
        try:
            return maps.read_ctl()
        finally:
            maps.close()


def switched_on(ns: str, pid: int) -> bool:
    """Whether monitor ``pid`` has set the switch (a killed one's may still be there)."""
    c = ctl(ns)
    return bool(c.owner == pid and c.deadline_ns > time.monotonic_ns())


def r1_reason(ns: str, reason: str) -> int:
    return int(tna_stats(ns)["interfaces"]["r1"]["punt_reasons"].get(reason, 0))


def _raw(ns: str) -> int:
    """r1's fw_dropped counter (a verdict, not a punt reason)."""
    with netns.entered(ns):
        return status.read_counters()[socket.if_nametoindex("r1")]["fw_dropped"].packets


class Monitor:
    """``tna --netns NS monitor ARGS --json`` in the background; its lines as they come."""

    def __init__(self, ns: str, *args: str) -> None:
        self.ns = ns
        self.proc = subprocess.Popen([sys.executable, "-m", "tna", "--netns", ns, "monitor",
                                      "--json", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.sel = selectors.DefaultSelector()
        assert self.proc.stdout is not None
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)
        wait_for(lambda: switched_on(ns, self.proc.pid) or self.proc.poll() is not None,
                 timeout=20,
                 what="monitor switched on")
        assert self.proc.poll() is None, self.proc.communicate()

    def next_event(self, timeout: float) -> dict[str, Any] | None:
        assert self.proc.stdout is not None
        if not self.sel.select(timeout):
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def wait_for_event(self, pred: Any, within: float) -> dict[str, Any]:
        end = time.monotonic() + within
        while (left := end - time.monotonic()) > 0:
            ev = self.next_event(left)
            if ev is not None and pred(ev):
                return ev
        raise AssertionError(f"no matching event within {within} s")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self.sel.close()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        return rc


def send_udp(ns: str, dst: str, port: int) -> None:
    with netns.entered(ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"tna monitor test", (dst, port))


def test_punted_packet_shown_within_a_second(topo: RouterTopology) -> None:
    before = r1_reason(topo.r, "ttl")
    mon = Monitor(topo.r, "--interface", "r1", "--count", "50")
    try:
        sent = time.monotonic()
        ping = subprocess.Popen(["ip", "netns", "exec", topo.h1, "ping", "-n", "-c", "1", "-t",
                                 "1", "-W", "1", topo.h2_v4], stdout=subprocess.DEVNULL)
        ev = mon.wait_for_event(lambda e: e["reason"] == "ttl", within=1.0)
        assert time.monotonic() - sent < 1.0
        ping.wait(timeout=10)
    finally:
        assert mon.stop() == 0
    assert r1_reason(topo.r, "ttl") > before  # positive control: the counter moved too
    assert ev["interface"] == "r1" and ev["kind"] == "punt"
    assert ev["header"]["src"] == topo.h1_v4 and ev["header"]["dst"] == topo.h2_v4
    assert ev["header"]["ttl"] == 1 and ev["header"]["proto"] == "icmp"
    assert ev["summary"].startswith(f"IPv4 {topo.h1_v4} > {topo.h2_v4} icmp type 8")
    assert ctl(topo.r).deadline_ns == 0  # after the monitor exits the switch is off


def test_count_one_exits_by_itself_and_switches_off(topo: RouterTopology) -> None:
    mon = Monitor(topo.r, "--interface", "r1", "--count", "1")
    try:
        for _ in range(20):
            if mon.proc.poll() is not None:
                break
            topo.ping(topo.h1, topo.h2_v4, "-t", "1")
        assert mon.proc.wait(timeout=10) == 0
        assert mon.proc.stdout is not None
        lines = mon.proc.stdout.read().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["interface"] == "r1"
    finally:
        mon.stop()
    assert ctl(topo.r).deadline_ns == 0


def test_drops_shown_with_drops_only(topo: RouterTopology) -> None:
    before = _raw(topo.r)
    plain = Monitor(topo.r, "--interface", "r1", "--count", "50")
    try:
        send_udp(topo.h1, topo.h2_v4, 9999)
        wait_for(lambda: _raw(topo.r) > before, timeout=5, what="fast-path drop counted")
        topo.ping(topo.h1, topo.h2_v4, "-t", "1")
        # the TTL punt after the drop is shown; the drop before it was not
        seen: list[str] = []

        def ttl(e: dict[str, Any]) -> bool:
            seen.append(e["reason"])
            return e["reason"] == "ttl"

        plain.wait_for_event(ttl, 2.0)
        assert "fw_dropped" not in seen, seen
    finally:
        assert plain.stop() == 0

    before = _raw(topo.r)
    mon = Monitor(topo.r, "--drops", "--interface", "r1", "--count", "50")
    try:
        send_udp(topo.h1, topo.h2_v4, 9999)
        ev = mon.wait_for_event(lambda e: e["reason"] == "fw_dropped", within=2.0)
    finally:
        assert mon.stop() == 0
    assert _raw(topo.r) > before
    assert ev["kind"] == "drop" and ev["header"]["dport"] == 9999
    assert ev["summary"].startswith(f"IPv4 {topo.h1_v4}:")
    assert ctl(topo.r).deadline_ns == 0


def test_a_killed_monitor_stops_costing_within_a_second(topo: RouterTopology) -> None:
    mon = Monitor(topo.r)
    assert mon.stop(signal.SIGKILL) == -signal.SIGKILL
    on = ctl(topo.r)
    assert on.deadline_ns, "SIGKILL leaves the switch set"  # positive control
    assert on.deadline_ns <= time.monotonic_ns() + abi.TNA_MON_TTL_MS * 1_000_000
    wait_for(lambda: time.monotonic_ns() > on.deadline_ns, timeout=2, what="deadline passed")
    with netns.entered(topo.r):
        maps = MonitorMaps()
        records: list[bytes] = []
        ring = libbpf.RingBuffer(maps.ring_fd, records.append)
        try:
            while ring.poll(0):  # what the killed monitor left unread
                records.clear()
            before = r1_reason(topo.r, "ttl")
            topo.ping(topo.h1, topo.h2_v4, "-t", "1")
            assert r1_reason(topo.r, "ttl") > before  # punted, counted...
            ring.poll(200)
            assert records == []  # ...but not emitted: the deadline passed
            assert ctl(topo.r).deadline_ns == 0  # and that punt switched the monitor off
        finally:
            ring.close()
            maps.close()
    # a new monitor takes over the stale switch (its owner is dead)
    again = Monitor(topo.r)
    assert ctl(topo.r).owner == again.proc.pid
    assert again.stop() == 0
    assert ctl(topo.r).deadline_ns == 0


def test_second_monitor_refused_and_bad_options(topo: RouterTopology) -> None:
    first = Monitor(topo.r)
    try:
        proc = run_tna(topo.r, "monitor", check=False)
        assert proc.returncode == 1 and "another tna monitor" in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    finally:
        assert first.stop(signal.SIGINT) == 130  # Ctrl-C: "interrupted", as other commands
    assert ctl(topo.r).deadline_ns == 0
    for args, needle in ((("--count", "0"), "at least 1"),
                         (("--interface", "nosuch0"), "no interface nosuch0")):
        proc = run_tna(topo.r, "monitor", *args, check=False)
        assert proc.returncode == 1 and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def _ttl_flood(ns: str, dst: str, stop: threading.Event) -> None:
    """UDP datagrams with TTL 1 every millisecond until ``stop``: punted at r1 ('ttl')."""
    with netns.entered(ns), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 1)
        while not stop.wait(0.001):
            s.sendto(b"ttl flood", (dst, 9))


def test_ctrl_c_while_events_flow_exits_130(topo: RouterTopology) -> None:
    """Ctrl-C lands anywhere in the event loop, also while a ring callback runs (a signal
    raised there would be lost in ctypes and the monitor run on): exit 130 every time, the
    switch cleared. Events are flowing each time (the control): datagrams with TTL 1 keep
    r1's 'ttl' punts coming."""
    stop = threading.Event()
    flood = threading.Thread(target=_ttl_flood, args=(topo.h1, topo.h2_v4, stop))
    flood.start()
    try:
        for _ in range(5):
            mon = Monitor(topo.r)
            try:
                mon.wait_for_event(lambda e: e["reason"] == "ttl", within=5.0)
            finally:
                assert mon.stop(signal.SIGINT) == 130
            assert ctl(topo.r).deadline_ns == 0
    finally:
        stop.set()
        flood.join()


def test_not_attached_is_one_line(topo: RouterTopology) -> None:
    proc = run_tna(topo.bed.ns("empty"), "monitor", check=False)
    assert proc.returncode == 1 and "not attached" in proc.stderr, proc.stderr
    assert ctypes.sizeof(abi.struct_type("tna_mon_event")) == 24 + abi.TNA_MON_SNAP
