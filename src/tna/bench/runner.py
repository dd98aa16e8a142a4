"""Runs the benchmark: scenarios x frame sizes x runs x modes, then the micro-benchmark.

Role in the flow: first the traffic source is chosen (``--source``; ``auto`` asks the kernel
whether live-frames test_run works, in a throw-away namespace).  Then for each scenario a fresh
:class:`~tna.testbed.Testbed` (deleted on any exit) holds the topology; for each frame size one
traffic source (``generator``); each run measures every mode once, in
turn, so slow drifts of a noisy VM hit all modes alike.  One measurement = switch the DUT to
the mode, start the generator, warm up, read the sink counter before and after a timed window;
for modes with XDP programs a second window follows with BPF run-time statistics on (what each
program on the path costs in situ; kept apart because the statistics cost time themselves).
In TNA mode the fast path's own counters say which share of the packets it forwarded.  When
the run uses live frames, a few scenarios are measured once more with the skb source, so the
two sources can be compared on one machine in one run.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tna import netns
from tna.bench import cpu, frames, generator, micro, multicore
from tna.bench.bpfobj import Park
from tna.bench.generator import AUTO, LIVE, RELAY, SKB, Generator, Probe
from tna.bench.report import ProgProfile, Report, Result, Sample, median
from tna.bench.scenarios import (
    FAST_PATH_MIN,
    LINUX,
    NULL,
    SCENARIOS,
    TNA,
    Options,
    Scenario,
    fast_path_delta,
)
from tna.datapath import libbpf
from tna.testbed import Testbed

# Measured once more with the skb source when the run uses live frames (64-byte frames).
COMPARE_SCENARIOS = ("router-v4", "bridge", "punt-all")
COMPARE_SIZE = 64

Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RetryBudget:
    """Seconds a whole run may spend measuring disturbed windows again: on a busy machine
    nearly every window is disturbed, and retrying them all would triple the run's length."""

    def __init__(self, seconds: float = 120.0) -> None:
        self.left = seconds

    def take(self, seconds: float) -> bool:
        if self.left < seconds:
            return False
        self.left -= seconds
        return True


@dataclass(frozen=True)
class Config:
    scenarios: tuple[str, ...]
    sizes: tuple[int, ...] = ()  # () = each scenario's own
    modes: tuple[str, ...] = ()  # () = each scenario's own
    runs: int = 3
    seconds: float = 1.5
    warmup: float = 0.5
    cpu: int = 0
    micro_iterations: int = 10_000  # 0 = no micro-benchmark
    profile: bool = True  # a window with BPF run-time statistics after each XDP mode's first
    #                       window (first run only)
    max_other: float = 0.03  # a window where other tasks took more of the CPU is measured again
    retries: int = 2  # ... at most this often; the least disturbed attempt is kept
    retry_budget: RetryBudget = field(default_factory=RetryBudget)  # shared by the whole run
    ns_prefix: str = "tnabench"  # namespaces are <prefix>-<tag>-<role>
    options: Options = field(default_factory=Options)
    source: str = AUTO  # auto | live | skb
    compare: bool = True  # with live frames, also measure COMPARE_SCENARIOS with skbs
    cpus: tuple[int, ...] = ()  # the "both CPUs" phase (multicore) on these CPUs; () skips it


# ---- the traffic source ----------------------------------------------------------------------

@functools.cache
def live_frames_probe(prefix: str = "tnabench") -> Probe:
    """Whether live-frames test_run works on this host (asked once per process, in a
    namespace of its own so nothing reaches the caller's)."""
    with Testbed(prefix=prefix) as bed:
        ns = bed.ns("probe")
        spec = frames.FrameSpec("02:00:00:00:00:02", "02:00:00:00:00:01", "10.0.0.1",
                                "10.0.0.2")
        with netns.entered(ns):
            return generator.probe_live_frames(frames.build(spec))


def resolve_source(cfg: Config) -> tuple[str, str]:
    """(source, why) of this configuration: ``auto`` becomes ``live`` or ``skb``."""
    if cfg.source in (SKB, RELAY):
        return cfg.source, "requested"
    return generator.choose(cfg.source, live_frames_probe(cfg.ns_prefix))


# ---- one measurement -------------------------------------------------------------------------

def _window(scn: Scenario, mode: str, gen: Generator, seconds: float) -> Sample:
    """Delivered (and offered) packets per second over ``seconds``; TNA's counters too."""
    count = scn.counter(mode)
    tna = mode.startswith(TNA)
    tasks = cpu.task_paths([gen.tid], gen.cpu)
    fp0 = scn.fast_path() if tna else None
    f0, busy0 = gen.progress()
    cpu0 = cpu.sample(gen.cpu, tasks)
    c0, t0 = count(), time.perf_counter()
    time.sleep(seconds)
    c1, t1 = count(), time.perf_counter()
    cpu1 = cpu.sample(gen.cpu, tasks)
    f1, busy1 = gen.progress()
    fp1 = scn.fast_path() if tna else None
    sample = Sample(pps=(c1 - c0) / (t1 - t0), delivered=c1 - c0)
    sample.cpu_other, sample.steal = cpu.interference(cpu0, cpu1)
    if busy1 > busy0:
        sample.offered_pps = (f1 - f0) * 1e9 / (busy1 - busy0)
    if fp0 is not None and fp1 is not None:
        delta = fast_path_delta(fp0, fp1)
        sample.fast_path = delta.fraction if delta.forwarded + delta.punted else None
        sample.punts = delta.reasons
    return sample


def _program_fds(scn: Scenario, mode: str, gen: Generator) -> dict[str, int]:
    """New fds of the programs on the path: generator, DUT ingress (if any), sink."""
    assert scn.sink is not None
    fds = {"generator": os.dup(gen.prog_fd)}
    if not mode.startswith(NULL):  # in null modes the receiver's sink is off the path
        fds["sink"] = os.dup(scn.sink.obj.prog_fd("bench_sink"))
    dut = scn.ingress_prog_fd(mode)
    if dut is not None:
        fds["dut"] = dut
    return fds


def _profile_window(scn: Scenario, mode: str, gen: Generator, seconds: float
                    ) -> dict[str, float]:
    """ns per frame of each program on the path, from BPF_ENABLE_STATS run-time counters."""
    fds = _program_fds(scn, mode, gen)
    stats_fd = -1
    try:
        stats_fd = libbpf.enable_run_time_stats()
        time.sleep(min(0.2, seconds))  # runs in flight when stats came on are half-timed
        before = {k: libbpf.prog_run_stats(fd) for k, fd in fds.items()}
        time.sleep(seconds)
        after = {k: libbpf.prog_run_stats(fd) for k, fd in fds.items()}
    finally:
        if stats_fd >= 0:
            os.close(stats_fd)
        for fd in fds.values():
            os.close(fd)
    per_frame = {"generator": gen.per_run}  # the skb source sends a burst per run
    return {k: (after[k][0] - before[k][0]) / (after[k][1] - before[k][1]) / per_frame.get(k, 1)
            for k in fds if after[k][1] > before[k][1]}


def measure(scn: Scenario, mode: str, gen: Generator, warmup: float, seconds: float,
            profile: bool = False) -> tuple[Sample, dict[str, float] | None]:
    """One timed window of ``mode`` (and, if asked, a profiling window); the DUT is switched
    into the mode and back."""
    try:
        scn.enter(mode)  # inside: a half-entered mode is left too
        gen.start()
        try:
            time.sleep(warmup)
            gen.check()
            sample = _window(scn, mode, gen, seconds)
            prof = _profile_window(scn, mode, gen, seconds) if profile else None
            gen.check()
        finally:
            gen.stop()
    finally:
        scn.leave(mode)
    return sample, prof


# ---- judging TNA numbers ---------------------------------------------------------------------

def judge_tna(res: Result, expected: bool, why: str) -> None:
    """A TNA number where most packets were punted is a bug report, not a result."""
    if not expected:
        res.note = why
        return
    fp = res.fast_path
    if fp is None and res.mode != TNA:  # a profiling variant that counts nothing
        res.note = "fast-path counters did not move (variant without statistics?)"
        return
    if fp is None or fp < FAST_PATH_MIN:
        punts: dict[str, int] = {}
        for s in res.samples:
            for k, v in s.punts.items():
                punts[k] = punts.get(k, 0) + v
        res.status = "invalid"
        res.note = (f"fast path forwarded only {fp or 0:.1%} (punts: "
                    f"{', '.join(f'{k}={v}' for k, v in punts.items()) or 'none counted'})")


def judge_punt_all(res: Result) -> None:
    """punt-all measures TNA handing everything to Linux: the punt counter must account for
    (nearly) every frame the sink received, and the fast path must have forwarded none."""
    punted = sum(sum(s.punts.values()) for s in res.samples)
    delivered = sum(s.delivered for s in res.samples)
    fp = res.fast_path
    if delivered and punted >= FAST_PATH_MIN * delivered and fp is not None \
            and fp <= 1 - FAST_PATH_MIN:
        res.note = (f"punted {punted / delivered:.0%} of the delivered frames ("
                    + ", ".join(f"{k}" for k in sorted({k for s in res.samples
                                                        for k in s.punts})) + ")")
        return
    res.status = "invalid"
    res.note = (f"expected every frame punted: punted {punted} of {delivered} delivered, "
                f"fast path {fp or 0:.1%}")


# ---- scenarios -------------------------------------------------------------------------------

def _profiled(mode: str) -> bool:
    return not mode.startswith(LINUX)  # Linux modes have no program on the DUT


def _measure_quiet(scn: Scenario, mode: str, gen: Generator, cfg: Config, log: Log,
                   profile: bool) -> tuple[Sample, dict[str, float] | None]:
    """``measure``, again if other tasks took the CPU meanwhile; the least disturbed try."""
    best: tuple[Sample, dict[str, float] | None] | None = None
    profile = profile and _profiled(mode)
    for attempt in range(cfg.retries + 1):
        t0 = time.monotonic()
        got = measure(scn, mode, gen, cfg.warmup, cfg.seconds, profile)
        other = got[0].cpu_other or 0.0
        if best is None or other < (best[0].cpu_other or 0.0):
            best = got
        if other <= cfg.max_other or attempt == cfg.retries:
            break
        if not cfg.retry_budget.take(time.monotonic() - t0):
            log(f"  {scn.name} {mode}: other tasks took {other:.0%} of CPU {gen.cpu}; "
                "retry budget spent, kept")
            break
        log(f"  {scn.name} {mode}: other tasks took {other:.0%} of CPU {gen.cpu}; again")
    assert best is not None
    return best


def _measure_size(scn: Scenario, size: int, modes: Sequence[str], park: Park, cfg: Config,
                  source: str, log: Log, out: Report) -> None:
    """Every run of every mode at one frame size."""
    results = {mode: Result(scn.name, size, mode, source=source) for mode in modes}
    profiles: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    if scn.tna_na:
        out.results.append(Result(scn.name, size, TNA, status="n/a", note=scn.tna_na,
                                  source=source))
    out.results += results.values()
    gen = generator.make(source, scn.sender, scn.sender_if, scn.frame_bytes(size),
                         scn.variation, cfg.cpu, park)
    try:
        for run in range(cfg.runs):
            for mode, res in results.items():
                if res.status == "error":
                    continue
                try:
                    # the in-situ profile once (first run): it moves little between runs
                    sample, prof = _measure_quiet(scn, mode, gen, cfg, log,
                                                  cfg.profile and run == 0)
                except Exception as e:  # reported in the results; the other modes go on
                    res.status, res.note = "error", f"{type(e).__name__}: {e}"
                    log(f"  {scn.name} {size}B {mode}: ERROR {res.note}")
                    continue
                res.samples.append(sample)
                extra = (f", fast path {sample.fast_path:.1%}"
                         if sample.fast_path is not None else "")
                if prof:
                    profiles[mode].append(prof)
                    extra += "; in situ " + ", ".join(f"{k} {v:.0f} ns" for k, v in prof.items())
                log(f"  {scn.name} {size}B {source} run {run + 1}/{cfg.runs} {mode:<14} "
                    f"{sample.pps / 1e6:6.2f} Mpps{extra}")
    finally:
        gen.close()
    for mode, res in results.items():
        if mode.startswith(TNA) and res.status == "ok":
            if scn.punts_all:
                judge_punt_all(res)
            else:
                judge_tna(res, *scn.tna_expected_last)
        if profiles[mode]:
            out.profile.append(ProgProfile(scn.name, size, mode, median_profile(profiles[mode]),
                                           profiles[mode], source=source))


def median_profile(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = dict.fromkeys(k for r in runs for k in r)
    return {k: median([r[k] for r in runs if k in r]) for k in keys}


def run_scenario(name: str, cfg: Config, log: Log, source: str | None = None) -> Report:
    """Build scenario ``name``, measure it, tear it down (always); its part of the report.

    ``source`` None: the configuration's (``auto`` resolved); the report's meta names it.
    """
    out = Report()
    if source is None:
        source, why = resolve_source(cfg)
        out.meta.update(source=source, source_reason=why)
    with Testbed(prefix=cfg.ns_prefix) as bed:
        scn = SCENARIOS[name](bed, cfg.options)
        park = Park(bed)
        try:
            scn.build()
            out.scenarios[name] = scn.describe()
            modes = [m for m in scn.modes if not cfg.modes or m in cfg.modes]
            if TNA in modes:
                modes += cfg.options.tna_modes()
            for size in cfg.sizes or scn.sizes:
                _measure_size(scn, size, modes, park, cfg, source, log, out)
            if cfg.micro_iterations and TNA in modes and scn.tna_expected_last[0] \
                    and not scn.punts_all:
                log(f"  {name}: program micro-benchmark ({cfg.micro_iterations} runs each)")
                out.micro += micro.run(scn, park, cfg.micro_iterations, cfg.options.variants,
                                       log)
        finally:
            park.close()
            scn.close()
    return out


def run(cfg: Config, log: Log = stderr_log) -> Report:
    source, why = resolve_source(cfg)
    log(f"traffic source: {source} ({why})")
    report = Report(meta={"source": source, "source_reason": why})
    home = os.sched_getaffinity(0)
    others = home - {cfg.cpu}
    if others:  # keep this (mostly sleeping) thread off the measured CPU
        os.sched_setaffinity(0, others)
    try:
        for name in cfg.scenarios:
            log(f"{name}:")
            _merge(report, run_scenario(name, cfg, log, source))
        if len(cfg.cpus) > 1:
            report.cores += multicore.run(cfg, cfg.cpus, source, log)
        if source == LIVE and cfg.compare:
            compare_cfg = replace(cfg, sizes=(COMPARE_SIZE,), micro_iterations=0, profile=False)
            for name in (n for n in COMPARE_SCENARIOS if n in cfg.scenarios):
                log(f"{name}, once more with the skb source:")
                _merge(report, run_scenario(name, compare_cfg, log, SKB))
    finally:
        os.sched_setaffinity(0, home)
    return report


def _merge(report: Report, part: Report) -> None:
    report.scenarios.update(part.scenarios)
    report.results += part.results
    report.micro += part.micro
    report.profile += part.profile


def pick_cpu(requested: int | None, available: Sequence[int]) -> int:
    """The measured CPU: as requested, else the highest one this process may use."""
    if requested is not None:
        if requested not in available:
            raise ValueError(f"CPU {requested} is not available (have {sorted(available)})")
        return requested
    return max(available)
