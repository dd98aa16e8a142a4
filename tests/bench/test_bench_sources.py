"""The traffic sources: live frames where the host allows them (skipped with the kernel's
answer where it does not), the skb source everywhere, the automatic fallback forced even on a
host with live frames, the skb source's frames byte for byte, and the relay source's frames:
XDP frames, not skbs."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence

import pytest

from tna import netns
from tna.bench import frames, generator, runner, sinkcheck
from tna.bench import report as rep
from tna.bench.bpfobj import BpfObject, ifindex_of
from tna.bench.frames import FrameSpec
from tna.bench.generator import LIVE, RELAY, SKB, Probe, RelayGenerator
from tna.bench.report import Result
from tna.bench.runner import Config, run, run_scenario
from tna.bench.scenarios import LINUX, NULL, NULL_TC, TNA, XDP_PASS
from tna.testbed import Testbed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, BPF)")

SPEC = FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.16.0")


def _cfg(prefix: str, modes: tuple[str, ...], source: str = "auto",
         scenarios: tuple[str, ...] = ("router-v4",)) -> Config:
    return Config(scenarios=scenarios, sizes=(64,), modes=modes, runs=1, seconds=0.2,
                  warmup=0.1, cpu=0, micro_iterations=0, profile=False, retries=0,
                  ns_prefix=prefix, source=source)


def _ok(results: Sequence[Result], source: str) -> None:
    assert results
    for r in results:
        assert r.source == source, (r.mode, r.source)
        assert r.status == "ok", f"{r.mode}: {r.status} {r.note}"
        assert r.samples[0].pps > 1000, r.mode


def test_live_frames_source(prefix: str) -> None:
    """Live frames end to end; on a host that refuses them, skipped with the kernel's answer."""
    probe = runner.live_frames_probe(prefix)
    if not probe.live:
        pytest.skip(probe.reason)
    report = run_scenario("router-v4", _cfg(prefix, (NULL, TNA), source=LIVE),
                          lambda _msg: None)
    assert report.meta["source"] == LIVE
    _ok(report.results, LIVE)


def test_live_source_refused_is_one_line(prefix: str) -> None:
    """--source live where the kernel refuses it: a clear error naming the refusal."""
    probe = runner.live_frames_probe(prefix)
    if probe.live:
        pytest.skip("this host allows live frames")
    with pytest.raises(ValueError, match="live-frames test_run refused: E"):
        run_scenario("router-v4", _cfg(prefix, (NULL,), source=LIVE), lambda _msg: None)


def test_fallback_forced(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto on a host whose kernel (we pretend) refuses live frames: the skb source, named."""
    monkeypatch.setattr(runner, "live_frames_probe",
                        lambda _prefix="": Probe(False, generator.refused(errno.EPERM)))
    report = run_scenario("router-v4", _cfg(prefix, (NULL, LINUX, TNA)), lambda _msg: None)
    assert report.meta == {"source": SKB,
                           "source_reason": "auto: live-frames test_run refused: EPERM"}
    _ok(report.results, SKB)
    tna = next(r for r in report.results if r.mode == TNA)
    assert tna.fast_path is not None and tna.fast_path >= 0.95


def test_live_run_also_measures_skb(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With live frames the comparison scenarios are measured once more with skbs.  The live
    source is stood in for by the skb one, so this runs on any host."""
    monkeypatch.setattr(runner, "live_frames_probe", lambda _prefix="": Probe(True, "works"))
    real_make = generator.make
    monkeypatch.setattr(generator, "make", lambda kind, *a: real_make(SKB, *a))
    report = run(_cfg(prefix, (NULL, LINUX), scenarios=("router-v4", "router-v6")),
                 lambda _msg: None)
    assert report.meta["source"] == LIVE
    got = {(r.scenario, r.source) for r in report.results}
    assert got == {("router-v4", LIVE), ("router-v6", LIVE), ("router-v4", SKB)}
    assert [c["mode"] for c in rep.comparison(report)] == [NULL, LINUX]  # router-v4's


def test_punt_all(prefix: str) -> None:
    """punt-all: TNA hands every frame to Linux (its punt counter says so), Linux forwards."""
    report = run_scenario("punt-all", _cfg(prefix, (NULL, NULL_TC, LINUX, XDP_PASS, TNA),
                                           scenarios=("punt-all",)), lambda _msg: None)
    _ok(report.results, report.meta["source"])
    tna = next(r for r in report.results if r.mode == TNA)
    assert tna.fast_path == 0.0 and "fragment" in tna.note
    assert sum(tna.samples[0].punts.values()) >= 0.95 * tna.samples[0].delivered


@pytest.mark.parametrize("var", [None, frames.ipv4_destinations("10.2.16.0", 5)])
def test_skb_source_frames(var: frames.Variation | None) -> None:
    """bench_skbgen's clones, as they arrive at the veth's peer, are the reference frames."""
    template = frames.build(SPEC)
    burst = 7
    with Testbed(prefix="tnabtskb") as bed:
        ns = bed.ns("gen")
        bed.veth(ns, "ga", ns, "gb")
        with netns.entered(ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        try:
            cap.bind(("gb", 0))
            cap.settimeout(2)
            with netns.entered(ns):
                cfg = generator.skbgen_config(template, var, ifindex_of("ga"), burst)
                obj = BpfObject("bench_skbgen", cfg)
                try:
                    sent, _ = generator.skb_test_run(obj.prog_fd("bench_skbgen"), template, 1)
                finally:
                    obj.close()
            assert sent == burst
            got = _ipv4_frames(cap, burst)
        finally:
            cap.close()
    want = [frames.build(frames.varied(SPEC, var, i)) if var else template
            for i in range(burst)]
    assert got == want


def test_relay_source(prefix: str) -> None:
    """--source relay end to end: every mode measures, TNA on its fast path."""
    report = run_scenario("router-v4", _cfg(prefix, (NULL, LINUX, TNA), source=RELAY),
                          lambda _msg: None)
    assert report.meta == {"source": RELAY, "source_reason": "requested"}
    _ok(report.results, RELAY)
    tna = next(r for r in report.results if r.mode == TNA)
    assert tna.fast_path is not None and tna.fast_path >= 0.95


def _ipv4_frames(cap: socket.socket, want: int) -> list[bytes]:
    """Up to ``want`` IPv4 frames off ``cap`` (not the namespace's own IPv6 chatter); fewer
    if the socket's timeout passes first."""
    got: list[bytes] = []
    while len(got) < want:
        try:
            data = cap.recv(4096)
        except TimeoutError:
            break
        if data[12:14] == b"\x08\x00":
            got.append(data)
    return got


def test_relay_delivers_xdp_frames() -> None:
    """The relay's frames reach the far veth as XDP frames (veth_ndo_xdp_xmit), byte for byte
    the skb source's: they arrive where that veth has GRO on, and vanish where it has neither
    GRO nor an XDP program, which only redirected XDP frames do (an skb would arrive). Closing
    the generator removes the relay's veth pair."""
    template = frames.build(SPEC)
    with Testbed(prefix="tnabtrly") as bed:
        ns = bed.ns("gen")
        bed.veth(ns, "ga", ns, "gb")
        with netns.entered(ns):
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        gen = RelayGenerator(ns, "ga", template, None, cpu=0, burst=5)
        try:
            cap.bind(("gb", 0))
            cap.settimeout(1)
            bed.gro(ns, "gb", True)
            with netns.entered(ns):
                assert gen._send(1) == 5
            assert _ipv4_frames(cap, 5) == [template] * 5  # positive control
            bed.gro(ns, "gb", False)
            with netns.entered(ns):
                gen._send(1)
            assert _ipv4_frames(cap, 1) == []
        finally:
            gen.close()
            cap.close()
        links = bed.run(ns, "ip", "-o", "link", "show").stdout
        assert "tnarl" not in links


def test_sinkcheck_measures_both_sinks() -> None:
    """python -m tna.bench.sinkcheck: every mode with either sink delivered and has a path;
    TNA's XDP frames cost less at the XDP sink than turned into skbs for the tcx one."""
    got = sinkcheck.check("router-v4", RELAY, runs=1, seconds=0.3, cpu=0)
    assert set(got) == {LINUX, TNA, LINUX + sinkcheck.TC_SUFFIX, TNA + sinkcheck.TC_SUFFIX}
    assert got[TNA] < got[TNA + sinkcheck.TC_SUFFIX]
    assert got[TNA] < got[LINUX]
