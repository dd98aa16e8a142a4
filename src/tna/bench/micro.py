"""Program micro-benchmark: what one run of an XDP program costs, through BPF_PROG_TEST_RUN.

Role in the flow: with TNA applied in the DUT namespace (real routes and neighbours), each
program is run on a fresh copy of a benchmark frame with ``ingress_ifindex`` set to the DUT's
ingress, ``repeat=1``, many times; the kernel's own per-run time is collected and its median
reported, minus the median of the empty program (the harness's own cost).

Why ``repeat=1`` in a loop: with ``repeat > 1`` the kernel runs the program again on the
packet it has just rewritten, so after the first run the destination MAC is no longer the
router's and every later run measures a punt, not a forward.  Every program is parked on an
idle device first (:class:`~tna.bench.bpfobj.Park`) so the XDP dispatcher calls it directly,
as it calls an attached program in production.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tna.bench import frames
from tna.bench.bpfobj import BpfObject, Link, Park, ifindex_of
from tna.bench.report import MicroResult
from tna.bench.scenarios import TNA, Scenario, without
from tna.datapath import libbpf, loader
from tna.datapath.libbpf import LibbpfError
from tna.datapath.loader import Features
from tna.netns import entered

XDP_VERDICTS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}
TRIM = 0.1  # drop this share of the fastest and of the slowest runs
FLOW_PACKETS = 256  # distinct destinations cycled through in many-flows


# Features that change what an interface *is* rather than add work to its program: the
# "every feature on" build of a routed interface leaves them off.
ROLE_FEATURES = frozenset({"bridge_port"})


def all_features() -> Features:
    """Every feature on (rp_filter strict): the program TNA would load without specialising."""
    values: dict[str, Any] = {f.name: (1 if f.type in ("int", int) else True)
                              if f.name not in ROLE_FEATURES else getattr(Features(), f.name)
                              for f in dataclasses.fields(Features)}
    return Features(**values)


def trimmed_mean(xs: Sequence[float], trim: float = TRIM) -> float:
    """Mean of the middle of ``xs``: robust to outliers, and finer than the 10 ns steps the
    kernel's clock gives a single run here (a median would keep those steps)."""
    ys = sorted(xs)
    k = int(len(ys) * trim)
    mid = ys[k:len(ys) - k] or ys
    return sum(mid) / len(mid)


@dataclass(frozen=True)
class Timing:
    ns_run: float
    verdicts: dict[str, int]


def time_program(prog_fd: int, packets: Sequence[bytes], ingress: int, iterations: int
                 ) -> Timing:
    """Kernel-measured ns of single runs (trimmed mean), each on a fresh copy of a packet."""
    durations: list[int] = []
    verdicts: dict[str, int] = {}
    for i in range(iterations):
        ret, _, ns = libbpf.test_run(prog_fd, packets[i % len(packets)], ingress_ifindex=ingress)
        durations.append(ns)
        name = XDP_VERDICTS.get(ret, str(ret))
        verdicts[name] = verdicts.get(name, 0) + 1
    return Timing(trimmed_mean(durations), verdicts)


def optional_features(feats: Features) -> list[str]:
    """Features that are on besides the routers themselves: each one's cost is shown."""
    return [f.name for f in dataclasses.fields(Features)
            if f.name not in ("ipv4_router", "ipv6_router") and getattr(feats, f.name)]


def packets_for(scn: Scenario) -> list[bytes]:
    """The scenario's smallest frame (64 bytes but for TCP's 66-byte ACK); for many-flows,
    a spread of its destinations."""
    spec, var = scn.frame(64), scn.variation
    if var is None:
        return [scn.frame_bytes(min(scn.sizes))]
    step = max(1, var.count // FLOW_PACKETS)
    return [frames.build(frames.varied(spec, var, i * step)) for i in range(FLOW_PACKETS)]


def run(scn: Scenario, park: Park, iterations: int, variants: Sequence[tuple[str, str]] = (),
        log: Callable[[str], None] = print) -> list[MicroResult]:
    """Micro-benchmark the DUT's TNA programs (plus references); TNA is applied meanwhile."""
    try:
        scn.enter(TNA)  # inside: a half-applied TNA is detached too
        with entered(scn.dut):
            return _run(scn, park, iterations, variants, log)
    finally:
        scn.leave(TNA)


def _run(scn: Scenario, park: Park, iterations: int, variants: Sequence[tuple[str, str]],
         log: Callable[[str], None]) -> list[MicroResult]:
    ingress = ifindex_of(scn.ingress_if)
    packets = packets_for(scn)
    out: list[MicroResult] = []
    objs: list[BpfObject] = []
    progs: list[loader.Program] = []
    links: list[Link] = []

    def measure(label: str, fd: int, feats: list[str], insns: int | None, base: float | None
                ) -> float:
        links.append(park.attach(fd))
        t = time_program(fd, packets, ingress, iterations)
        out.append(MicroResult(scn.name, label, feats, insns, t.ns_run,
                               t.ns_run - base if base is not None else None, iterations,
                               t.verdicts))
        return t.ns_run

    try:
        sink = BpfObject("bench_sink")
        objs.append(sink)
        base = measure("empty program (harness cost)", sink.prog_fd("bench_nop"), [], None, None)
        loaded = [a for a in loader.attached() if a.ifindex == ingress]
        feats = loaded[0].features if loaded else all_features()
        for a in loaded:
            fd = libbpf.prog_get_fd_by_id(a.prog_id)
            try:
                measure("tna (as loaded)", fd, a.features.names(), a.xlated_insns, base)
            finally:
                os.close(fd)
        builds: list[tuple[str, str | None, Features]] = [
            ("tna (every feature on)", None, all_features())]
        for name in optional_features(feats):
            off = without(feats, (name,))
            assert off is not None
            builds.append((f"tna (as loaded, {name} off)", None, off))
        builds += [(f"variant {n}", p, feats) for n, p in variants]
        for label, path, features in builds:
            try:
                prog = loader.Program(features, obj_path=path)
            except (LibbpfError, OSError) as e:  # e.g. a variant built for another ABI
                log(f"  {scn.name}: {label} not measured: {e}")
                continue
            progs.append(prog)
            insns = libbpf.prog_info(prog.fd).xlated_prog_len // 8
            measure(label, prog.fd, features.names(), insns, base)
        refs = BpfObject("bench_sol", scn.sol_config())
        objs.append(refs)
        for label, name in (("bare XDP fib router", "bench_fib"), ("speed of light", "bench_sol")):
            fd = refs.prog_fd(name)
            measure(label, fd, [], libbpf.prog_info(fd).xlated_prog_len // 8, base)
    finally:
        for link in links:  # detach before the programs are closed
            link.close()
        for prog in progs:
            prog.close()
        for obj in objs:
            obj.close()
    return out
