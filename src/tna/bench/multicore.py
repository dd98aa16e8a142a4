"""``tna bench``'s "both CPUs" phase: forwarding spread over several CPUs, Linux against TNA.

Role in the flow: after the serial-mode scenarios the runner measures a few of them again
(``SCENARIOS``, 64-byte frames) with one traffic source per CPU, each pinned to its CPU and
sending its own flow (source port 4321 + i), against the same scenario with the first source
alone; the ratio says whether forwarding scales with cores.  Results: ``scaling``.

How the work is spread (drivers/net/veth.c, net/core/dev.c):

- every veth of the scenario gets one queue pair per CPU (``ethtool -L``) and transmit
  packet steering maps CPU i to TX queue i (``xps_cpus``).  A packet sent on CPU i leaves on
  TX queue i; ``veth_xmit`` turns the skb's queue mapping into the peer's RX queue i, whose
  NAPI (native XDP on the DUT, the sink on the receiver) is scheduled, and therefore runs, on
  CPU i.  Frames redirected by XDP (TNA) go to the peer's RX queue ``smp_processor_id() %
  queues`` (``veth_xdp_xmit``): the same queue i.  Without XDP on the DUT (Linux) the skb goes
  through ``netif_rx`` to the sending CPU's backlog, and Linux transmits the forwarded packet
  on that CPU, so XPS picks queue i again.  No queue, ring or NAPI is shared between CPUs and
  veth has no transmit lock (LLTX) or qdisc (noqueue);
- with one queue (the default) both CPUs would feed one ring and one NAPI instance, which
  runs on one CPU at a time: the receive side of every hop would serialise.

Threaded NAPI was the other candidate; it moves the polls into kernel threads, which must be
pinned as well and cost a context switch per poll on CPUs that also run the sources, while
queues per CPU keep each packet on the CPU that sent it, as serial mode does.

Evidence that both CPUs worked: the sink's counter is per CPU (its NAPI runs where the last
hop was forwarded), and in TNA mode the fast path's own per-CPU counters say on which CPU it
forwarded.  Limitation: the sources run on the same CPUs as the forwarding (a 2-CPU machine
has no spare one), so each CPU carries source + DUT + sink, as in serial mode; the factor to
look at is whether TNA's rate scales like Linux's, not an absolute multi-core rate.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from tna import abi, netns
from tna.bench import cpu, frames, generator
from tna.bench.bpfobj import Park, ifindex_of
from tna.bench.cores import CoreResult, CoreSample
from tna.bench.generator import Generator
from tna.bench.scenarios import FAST_PATH_MIN, LINUX, NULL, SCENARIOS, TNA, Options, Scenario
from tna.datapath.maps import read_ifaces
from tna.datapath.pins import has_map, open_map, u32
from tna.testbed import Testbed

SCENARIOS_MEASURED = ("router-v4", "bridge", "firewall")
MODES = (NULL, LINUX, TNA)  # null: what the sources and sinks alone do on N CPUs (control)
SIZE = 64
FORWARDS = ("forwarded", "bridged")  # TNA counters of frames the fast path sent on
CLK_TCK = os.sysconf("SC_CLK_TCK")  # the unit of task times in /proc

Log = Callable[[str], None]


class Budget(Protocol):
    def take(self, seconds: float) -> bool: ...


class Config(Protocol):
    """What this phase reads of the runner's configuration (``runner.Config``)."""

    @property
    def scenarios(self) -> tuple[str, ...]: ...
    @property
    def modes(self) -> tuple[str, ...]: ...
    @property
    def runs(self) -> int: ...
    @property
    def seconds(self) -> float: ...
    @property
    def warmup(self) -> float: ...
    @property
    def max_other(self) -> float: ...
    @property
    def retries(self) -> int: ...
    @property
    def retry_budget(self) -> Budget: ...
    @property
    def ns_prefix(self) -> str: ...
    @property
    def options(self) -> Options: ...


def pick_cpus(n: int, first: int, available: Sequence[int]) -> list[int]:
    """``n`` CPUs for the sources: ``first`` (serial mode's CPU), then the highest others."""
    if n < 1:
        raise ValueError(f"--cpus must be >= 1, got {n}")
    if n > len(available):
        raise ValueError(f"--cpus {n}: this process may use {len(available)} CPU(s) "
                         f"({', '.join(map(str, sorted(available)))})")
    others = sorted((c for c in available if c != first), reverse=True)
    return [first, *others[:n - 1]]


# ---- topology --------------------------------------------------------------------------------

def spread_queues(bed: Testbed, namespaces: Sequence[str], cpus: Sequence[int]) -> None:
    """Every veth in ``namespaces``: queue pairs 0..max(cpus), XPS sending CPU i on queue i
    (the queue ``veth_xdp_xmit`` picks for CPU i too: ``smp_processor_id() % queues``).

    Receive queues first, everywhere: veth refuses more TX queues than an XDP-enabled peer
    (the sink) has RX queues.
    """
    n = max(cpus) + 1
    devs = {ns: [link["ifname"] for link in json.loads(
        bed.run(ns, "ip", "-j", "link", "show", "type", "veth").stdout or "[]")]
        for ns in namespaces}
    steps = [lambda dev: [f"ethtool -L {dev} rx {n}"],
             lambda dev: [f"ethtool -L {dev} tx {n}"] + [
                 f"echo {cpumask(q)} > /sys/class/net/{dev}/queues/tx-{q}/xps_cpus"
                 for q in range(n)]]
    for step in steps:
        for ns, names in devs.items():
            cmds = [c for dev in names for c in step(dev)]
            if cmds:  # ip netns exec mounts the namespace's own /sys
                bed.run(ns, "sh", "-ec", "\n".join(cmds))


def cpumask(cpu: int) -> str:
    """The sysfs form of a mask with ``cpu`` alone: hex in comma-separated 32-bit groups."""
    digits = f"{1 << cpu:x}"
    digits = digits.zfill(-(-len(digits) // 8) * 8)
    return ",".join(digits[i:i + 8] for i in range(0, len(digits), 8))


def flow_frame(scn: Scenario, size: int, i: int) -> bytes:
    """Source i's frame: the scenario's flow with source port 4321 + i."""
    spec = scn.frame(size)
    return frames.build(dataclasses.replace(spec, sport=spec.sport + i))


# ---- counters --------------------------------------------------------------------------------

def tna_forwards_per_cpu(scn: Scenario) -> list[int]:
    """Frames TNA's fast path forwarded from the DUT's ingress so far, per CPU."""
    with netns.entered(scn.dut):
        if not has_map("tna_stats"):
            return []
        ifindex = ifindex_of(scn.ingress_if)
        ifaces, stats = open_map("tna_ifaces"), open_map("tna_stats")
        try:
            slot = next((c.slot for i, c in read_ifaces(ifaces).items() if i == ifindex), None)
            if slot is None:
                return []
            codes = [code for code, name in abi.codes().items() if name in FORWARDS]
            out: list[int] = []
            for code in codes:
                per_cpu = stats.lookup_percpu(u32(slot * abi.nr_codes() + code))
                vals = [abi.TnaCounter.from_buffer_copy(v).packets for v in per_cpu]
                out = [a + b for a, b in zip(out, vals, strict=True)] if out else vals
            return out
        finally:
            ifaces.close()
            stats.close()


def _per_cpu_rate(before: list[int], after: list[int], cpus: Sequence[int],
                  seconds: float) -> dict[str, float]:
    return {str(c): (after[c] - before[c]) / seconds for c in cpus
            if c < len(after) and c < len(before)}


def _task_paths(gens: Sequence[Generator]) -> list[str]:
    return [p for g in gens for p in cpu.task_paths([g.tid], g.cpu)]


# ---- one measurement -------------------------------------------------------------------------

def window(scn: Scenario, mode: str, gens: Sequence[Generator], seconds: float) -> CoreSample:
    """Delivered pps over ``seconds``, all CPUs and per CPU; TNA's per-CPU forwards too."""
    sink = scn.sink_for(mode)
    cpus = [g.cpu for g in gens]
    all_cpus = sorted(set(cpus) | set(range(len(sink.packets_per_cpu()))))
    tna = mode == TNA
    paths = _task_paths(gens)
    fast0 = scn.fast_path() if tna else None
    fw0 = tna_forwards_per_cpu(scn) if tna else []
    offered0 = [g.progress() for g in gens]
    cpu0 = cpu.sample_cpus(cpus, paths)
    s0, t0 = sink.packets_per_cpu(), time.perf_counter()
    time.sleep(seconds)
    s1, t1 = sink.packets_per_cpu(), time.perf_counter()
    cpu1 = cpu.sample_cpus(cpus, paths)
    offered1 = [g.progress() for g in gens]
    fw1 = tna_forwards_per_cpu(scn) if tna else []
    fast1 = scn.fast_path() if tna else None
    elapsed = t1 - t0
    sample = CoreSample(pps=(sum(s1) - sum(s0)) / elapsed,
                        per_cpu=_per_cpu_rate(s0, s1, all_cpus, elapsed))
    sample.cpu_other = cpu.interference(cpu0, cpu1)[0]
    delivered = sum(s1) - sum(s0)
    if delivered > 0 and cpu1.ours > cpu0.ours:
        sample.cpu_ns = (cpu1.ours - cpu0.ours) / CLK_TCK * 1e9 / delivered
    rates = [(f1 - f0) * 1e9 / (b1 - b0)
             for (f0, b0), (f1, b1) in zip(offered0, offered1, strict=True) if b1 > b0]
    sample.offered_pps = sum(rates) if rates else None
    if tna and fast0 is not None and fast1 is not None:
        fwd, punted = fast1.forwarded - fast0.forwarded, fast1.punted - fast0.punted
        sample.fast_path = fwd / (fwd + punted) if fwd + punted else None
        if fw0 and fw1:
            sample.forwarded_per_cpu = _per_cpu_rate(fw0, fw1, all_cpus, elapsed)
    return sample


def measure(scn: Scenario, mode: str, gens: Sequence[Generator], warmup: float,
            seconds: float) -> CoreSample:
    """Switch the DUT to ``mode``, run ``gens`` together, one window; back again."""
    try:
        scn.enter(mode)
        started: list[Generator] = []
        try:
            for g in gens:
                g.start()
                started.append(g)
            time.sleep(warmup)
            for g in gens:
                g.check()
            sample = window(scn, mode, gens, seconds)
            for g in gens:
                g.check()
        finally:
            errors = []
            for g in started:
                try:
                    g.stop()
                except RuntimeError as e:
                    errors.append(e)
            if errors:
                raise errors[0]
    finally:
        scn.leave(mode)
    return sample


def measure_pair(scn: Scenario, mode: str, gens: Sequence[Generator], cfg: Config, log: Log
                 ) -> tuple[CoreSample, CoreSample]:
    """The first source alone, then all together, back to back; again (the pair) while other
    tasks took more of the CPUs than ``cfg.max_other`` and the retry budget lasts."""
    best: tuple[CoreSample, CoreSample] | None = None
    for attempt in range(cfg.retries + 1):
        t0 = time.monotonic()
        got = (measure(scn, mode, gens[:1], cfg.warmup, cfg.seconds),
               measure(scn, mode, gens, cfg.warmup, cfg.seconds))
        if best is None or _other(got) < _other(best):
            best = got
        if _other(got) <= cfg.max_other or attempt == cfg.retries \
                or not cfg.retry_budget.take(time.monotonic() - t0):
            break
        log(f"  {scn.name} {mode}: other tasks took {_other(got):.0%} of the CPUs; again")
    assert best is not None
    return best


def _other(pair: tuple[CoreSample, CoreSample]) -> float:
    return max(s.cpu_other or 0.0 for s in pair)


# ---- a scenario ------------------------------------------------------------------------------

def _describe(sample: CoreSample, cpus: Sequence[int]) -> str:
    shares = ", ".join(f"CPU{c} {sample.share(c):.0%}" for c in cpus)
    extra = f", fast path {sample.fast_path:.1%}" if sample.fast_path is not None else ""
    return f"{sample.pps / 1e6:6.2f} Mpps ({shares}{extra})"


def run_scenario(name: str, cfg: Config, cpus: Sequence[int], source: str, log: Log
                 ) -> list[CoreResult]:
    """Build ``name`` with a queue per CPU; per run and mode, 1 CPU then all of ``cpus``."""
    counts = (1, len(cpus))
    with Testbed(prefix=cfg.ns_prefix) as bed:
        scn = SCENARIOS[name](bed, cfg.options)
        park = Park(bed)
        gens: list[Generator] = []
        try:
            scn.build()
            spread_queues(bed, list(bed.namespaces), cpus)
            modes = [m for m in MODES if m in scn.modes and (not cfg.modes or m in cfg.modes)]
            results = {(m, n): CoreResult(name, SIZE, m, list(cpus[:n]), source=source)
                       for m in modes for n in counts}
            gens = [generator.make(source, scn.sender, scn.sender_if, flow_frame(scn, SIZE, i),
                                   scn.variation, c, park) for i, c in enumerate(cpus)]
            for run in range(cfg.runs):
                for mode in modes:
                    pair = [results[(mode, n)] for n in counts]
                    if any(r.status != "ok" for r in pair):
                        continue
                    try:
                        samples = measure_pair(scn, mode, gens, cfg, log)
                    except Exception as e:  # reported; the other modes go on
                        for r in pair:
                            r.status, r.note = "error", f"{type(e).__name__}: {e}"
                        log(f"  {name} {mode}: ERROR {pair[0].note}")
                        continue
                    for res, sample in zip(pair, samples, strict=True):
                        res.samples.append(sample)
                    log(f"  {name} {SIZE}B {source} run {run + 1}/{cfg.runs} {mode:<6} "
                        + " | ".join(f"{r.n} CPU{'s' if r.n > 1 else ''} "
                                     + _describe(x, r.cpus) for r, x in zip(pair, samples,
                                                                            strict=True)))
            for (mode, _), res in results.items():
                if mode == TNA:
                    judge_tna(res, *scn.tna_expected_last)
        finally:
            for g in gens:
                g.close()
            park.close()
            scn.close()
    return list(results.values())


def judge_tna(res: CoreResult, expected: bool, why: str) -> None:
    """As in serial mode: a TNA number where the fast path did not forward is not TNA's."""
    if res.status != "ok":
        return
    if not expected:
        res.note = why
        return
    fp = res.fast_path()
    if fp is None or fp < FAST_PATH_MIN:
        res.status = "invalid"
        res.note = f"fast path forwarded only {fp or 0:.1%}"


def run(cfg: Config, cpus: Sequence[int], source: str, log: Log) -> list[CoreResult]:
    """The phase: each of ``SCENARIOS_MEASURED`` among the configuration's scenarios."""
    out: list[CoreResult] = []
    for name in (n for n in SCENARIOS_MEASURED if n in cfg.scenarios):
        log(f"{name}, {len(cpus)} CPUs ({', '.join(map(str, cpus))}) against 1:")
        out += run_scenario(name, cfg, cpus, source, log)
    return out
