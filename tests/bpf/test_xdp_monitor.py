"""tna monitor's kernel side, through BPF_PROG_TEST_RUN: what goes into the ring, and when not.

Exact records: the punt's code, ingress, length and the frame's first bytes; nothing while the
switch is off or expired, for forwarded frames, for other interfaces, or beyond the rate.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import UDP

from testing.bpf_helpers import XDP_PASS, XDP_REDIRECT, Router, forwarded_v4, program, run, v4
from tna import abi, netns
from tna.datapath import libbpf
from tna.monitor import Ctl, Event, MonitorMaps
from tna.plan.types import Features

ROUTER = Features(ipv4_router=True)
NO_LIMIT = (1 << 32) - 1


@dataclass
class Mon:
    maps: MonitorMaps
    ring: libbpf.RingBuffer
    records: list[bytes]

    def set(self, ahead_s: float, rate: int = NO_LIMIT, ifindex: int = 0) -> None:
        deadline = time.monotonic_ns() + int(ahead_s * 1e9)
        self.maps.write_ctl(Ctl(deadline if ahead_s else 0, 0, ifindex, rate, 0))

    def events(self) -> list[Any]:  # Event: a ctypes type made from the header
        self.records.clear()
        self.ring.poll(0)
        return [Event.from_buffer_copy(r[:ctypes.sizeof(Event)]) for r in self.records]


@pytest.fixture
def mon(router: Router) -> Iterator[Mon]:
    with program(router, ROUTER), netns.entered(router.ns):
        maps = MonitorMaps()
        records: list[bytes] = []
        ring = libbpf.RingBuffer(maps.ring_fd, records.append)
        m = Mon(maps, ring, records)
        try:
            m.events()  # whatever an earlier test left
            yield m
        finally:
            maps.write_ctl(Ctl())
            ring.close()
            maps.close()


def ttl1(size: int = 0) -> bytes:
    frame = bytes(v4(ttl=1) / UDP(sport=40000, dport=443))
    return frame + bytes(max(0, size - len(frame)))


def test_off_emits_nothing_on_emits_the_punt(router: Router, mon: Mon) -> None:
    verdict, _, moved = run(router, ttl1())
    assert verdict == XDP_PASS and moved == {"ttl": 1}
    assert mon.events() == []  # off

    mon.set(ahead_s=5)
    before = time.monotonic_ns()
    verdict, _, moved = run(router, ttl1())
    after = time.monotonic_ns()
    assert verdict == XDP_PASS and moved == {"ttl": 1}
    [e] = mon.events()
    frame = ttl1()
    assert (e.code, e.ifindex, e.len, e.snap) == (abi.code("ttl"), router.ifindex["r1"],
                                                  len(frame), len(frame))
    assert bytes(e.frame)[:e.snap] == frame
    assert before <= e.ts_ns <= after


def test_long_frames_are_cut_at_the_snap_length(router: Router, mon: Mon) -> None:
    mon.set(ahead_s=5)
    frame = ttl1(size=300)
    run(router, frame)
    [e] = mon.events()
    assert (e.len, e.snap) == (300, abi.TNA_MON_SNAP)
    assert bytes(e.frame) == frame[:abi.TNA_MON_SNAP]


def test_forwarded_frames_never_emit(router: Router, mon: Mon) -> None:
    mon.set(ahead_s=5)
    pkt = v4() / UDP(sport=40000, dport=443)
    verdict, out, moved = run(router, bytes(pkt))
    assert verdict == XDP_REDIRECT and out == forwarded_v4(pkt) and moved == {"forwarded": 1}
    assert mon.events() == []
    run(router, ttl1())  # positive control: the switch is on
    assert len(mon.events()) == 1


def test_interface_filter(router: Router, mon: Mon) -> None:
    mon.set(ahead_s=5, ifindex=router.ifindex["r2"])
    run(router, ttl1())
    assert mon.events() == []
    mon.set(ahead_s=5, ifindex=router.ifindex["r1"])
    run(router, ttl1())
    assert len(mon.events()) == 1


def test_rate_limit_per_cpu_window(router: Router, mon: Mon) -> None:
    mon.set(ahead_s=5, rate=3)
    before = mon.maps.left_out()[0]
    verdict, _, _ = libbpf.test_run(router.prog_fd, ttl1(), ingress_ifindex=router.ifindex["r1"],
                                    repeat=10)
    assert verdict == XDP_PASS
    assert len(mon.events()) <= 3  # one CPU runs all ten; the window may have begun earlier
    assert mon.maps.left_out()[0] - before >= 7


def test_expired_deadline_emits_nothing_and_switches_off(router: Router, mon: Mon) -> None:
    mon.set(ahead_s=5)
    run(router, ttl1())
    assert len(mon.events()) == 1  # positive control
    mon.maps.write_ctl(Ctl(time.monotonic_ns() - 1, 0, 0, NO_LIMIT, 4242))
    verdict, _, moved = run(router, ttl1())
    assert verdict == XDP_PASS and moved == {"ttl": 1}
    assert mon.events() == []
    assert mon.maps.read_ctl().deadline_ns == 0  # the program cleared the stale switch
