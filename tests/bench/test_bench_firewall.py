"""The firewall benchmark scenarios, briefly: they build, Linux forwards the benchmark flow
through their rulesets, and the stateful one really measures an established conntrack flow
(without the reply from the sink's side first, its policy drops every frame)."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from tna import netns
from tna.bench import frames, scenarios
from tna.bench.bpfobj import Sink
from tna.bench.runner import Config, run_scenario
from tna.testbed import Testbed, wait_for

pytestmark = pytest.mark.root


def _rates(name: str, prefix: str, modes: tuple[str, ...]) -> dict[str, float]:
    cfg = Config(scenarios=(name,), modes=modes, runs=1, seconds=0.2, warmup=0.1, cpu=0,
                 micro_iterations=0, profile=False, retries=0, ns_prefix=prefix)
    report = run_scenario(name, cfg, lambda _msg: None)
    source = report.meta["source"]  # whichever the host allows
    assert source in ("live", "skb")
    for r in report.results:
        assert r.status == "ok", f"{name} {r.mode}: {r.status} {r.note}"
        assert r.source == source
    return {r.mode: r.samples[0].pps for r in report.results}


@pytest.mark.parametrize("name", ["firewall-stateful", "firewall-ipt", "nat-udp", "stateful-tcp",
                                  "nat-tcp"])
def test_firewall_scenario_forwards(name: str, prefix: str) -> None:
    rates = _rates(name, prefix, (scenarios.LINUX, scenarios.TNA))
    assert rates[scenarios.LINUX] > 1000 and rates[scenarios.TNA] > 1000, rates


def test_stateful_flow_is_established(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scenarios.StatefulFirewall, "establish", lambda self: None)
    rates = _rates("firewall-stateful", prefix, (scenarios.LINUX,))
    # a forwarded flow is >100k pps; the sink may still count a stray frame or two of the
    # namespaces' own (neighbour discovery, MLD) in the window
    assert rates[scenarios.LINUX] < 1000, "the ruleset lets a flow pass that is not established"


def _send(scn: scenarios.Scenario, frame: bytes, count: int) -> None:
    with netns.entered(scn.sender), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((scn.sender_if, 0))
        for _ in range(count):
            s.send(frame)


def _count_exactly(scn: scenarios.Scenario, size: int) -> None:
    """Swap the scenario's sink for one that counts ``size``-byte frames only: r's interfaces
    send MLD reports of their own for a second after they come up (170 bytes here), which the
    plain sink counts too."""
    assert scn.sink is not None
    scn.sink.close()
    scn.sink = None
    scn.sink = Sink(scn.receiver, scn.receiver_if, only_len=size)


def _delivered(scn: scenarios.Scenario, frame: bytes, count: int) -> int:
    """Send ``count`` copies of ``frame``, then one benchmark frame as a marker; the frames
    the sink counted, the marker not included (polled until it arrives).  Exact only with a
    sink that counts the frames' size alone (``_count_exactly``)."""
    assert scn.sink is not None
    before = scn.sink.packets()
    _send(scn, frame, count)
    _send(scn, scn.frame_bytes(scn.sizes[0]), 1)
    wait_for(lambda: scn.sink is not None and scn.sink.packets() > before, what="the marker")
    return scn.sink.packets() - before - 1


def _sink_count(a: str, b: str, only_len: int, sent: tuple[bytes, ...], expected: int) -> int:
    """What a sink on b's eth0 counts of ``sent`` (from a), polled until ``expected``."""
    sink = Sink(b, "eth0", only_len=only_len)
    try:
        with netns.entered(a), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind(("eth0", 0))
            for frame in sent:
                s.send(frame)
        # one queue, one sender: the last frame arrives after the others
        wait_for(lambda: sink.packets() >= expected, what=f"{expected} frames")
        return sink.packets()
    finally:
        sink.close()


def test_sink_counts_one_length_only(prefix: str) -> None:
    """A sink loaded with ``only_len`` counts frames of that length and no other, whichever the
    length; the plain sink counts them all (and the namespaces' own MLD reports, if any)."""
    spec = frames.FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.0.2")
    short = frames.build(dataclasses.replace(spec, size=66))
    long = frames.build(dataclasses.replace(spec, size=124))
    with Testbed(prefix=prefix) as bed:
        a, b = bed.ns("a"), bed.ns("b")
        bed.veth(a, "eth0", b, "eth0")
        assert _sink_count(a, b, 0, (short, long, short, long, short), 5) >= 5
        assert _sink_count(a, b, 66, (short, long, short, long, short), 3) == 3
        assert _sink_count(a, b, 124, (short, long, short, long, short, long), 3) == 3


@pytest.mark.parametrize("name", ["stateful-tcp", "nat-tcp"])
def test_tcp_scenario_forwards_every_segment(name: str, prefix: str) -> None:
    """Linux forwards every benchmark segment (the sink counts as many as were sent), TNA takes
    every one on its fast path, and the window is really judged: the same segment with an ACK
    of data h2 never sent is INVALID to conntrack and dropped by the ruleset."""
    with Testbed(prefix=prefix) as bed:
        scn = scenarios.SCENARIOS[name](bed, scenarios.Options())
        try:
            scn.build()
            assert isinstance(scn, scenarios.StatefulTcp) and scn.ack is not None
            frame = scn.frame_bytes(scn.sizes[0])
            _count_exactly(scn, len(frame))
            for mode in (scenarios.LINUX, scenarios.TNA):
                scn.enter(mode)
                try:
                    before = scn.fast_path() if mode == scenarios.TNA else None
                    assert _delivered(scn, frame, 300) == 300, mode
                    if before is not None:
                        moved = scenarios.fast_path_delta(before, scn.fast_path())
                        # every segment fast; the hosts' own multicast (MLD reports of an
                        # interface come up) may be punted meanwhile, nothing else
                        assert moved.forwarded == 301, moved
                        assert set(moved.reasons) <= {"l2_multicast"}, moved
                finally:
                    scn.leave(mode)
            beyond = frames.build_tcp(scn.frame(scn.sizes[0]), dataclasses.replace(
                scn.ack, ack=(scn.ack.ack + 100_000) & 0xFFFFFFFF))
            scn.enter(scenarios.LINUX)
            try:
                assert _delivered(scn, beyond, 50) == 0
            finally:
                scn.leave(scenarios.LINUX)
        finally:
            scn.close()


def test_rulesets() -> None:
    nft = scenarios.firewall_ruleset(50)
    ipt = scenarios.iptables_ruleset(50)
    assert nft.count(" drop\n") == 50 and ipt.count("-j DROP\n") == 50
    assert nft.rstrip().endswith("accept\n  }\n}")
    assert ipt.endswith("-A FORWARD -j ACCEPT\nCOMMIT\n")
    stateful = scenarios.stateful_ruleset(50).splitlines()
    assert "policy drop" in stateful[2] and "established" in stateful[3]
    tcp = scenarios.tcp_stateful_ruleset(50).splitlines()
    assert "policy drop" in tcp[2] and "established" in tcp[3] and "tcp dport 9 accept" in tcp[-3]
