"""The traffic sources: live frames where the host allows them (skipped with the kernel's
answer where it does not), the skb source everywhere, the automatic fallback forced even on a
host with live frames, and the skb source's frames byte for byte."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence

import pytest

from tna import netns
from tna.bench import frames, generator, runner
from tna.bench import report as rep
from tna.bench.bpfobj import BpfObject, ifindex_of
from tna.bench.frames import FrameSpec
from tna.bench.generator import LIVE, SKB, Probe
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
            got: list[bytes] = []
            while len(got) < burst:
                data = cap.recv(4096)
                if data[12:14] == b"\x08\x00":  # not the namespace's own IPv6 chatter
                    got.append(data)
        finally:
            cap.close()
    want = [frames.build(frames.varied(SPEC, var, i)) if var else template
            for i in range(burst)]
    assert got == want
