"""``python -m tna.bench.sinkcheck``: does the receiver's sink charge a mode for its output?

Role in the flow: a one-off check of the benchmark's method, not part of ``tna bench``.  The
sink on the receiving host is an XDP program; an skb arriving there (Linux's output) may first
be copied into an XDP buffer, which would put the sink's cost into that mode's path.  For one
scenario and source, it measures ``null``, ``linux`` and ``tna`` as ``tna bench`` does, then
``linux`` and ``tna`` again with the sink at tcx ingress and GRO on the receiver's veth (which
then builds an skb for an XDP frame instead), and prints each mode's median path ns
(docs/benchmarks.md, "Relay source").
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence

from tna.bench import generator
from tna.bench.bpfobj import Park, Sink
from tna.bench.runner import Config, measure
from tna.bench.scenarios import LINUX, NULL, SCENARIOS, TNA, Scenario
from tna.testbed import Testbed

TC_SUFFIX = "+tc-sink"


def _window(scn: Scenario, bed: Testbed, mode: str, gen: generator.Generator,
            seconds: float) -> float:
    """ns per delivered packet of one window of ``mode`` (``TC_SUFFIX``: the tcx sink)."""
    tc = mode.endswith(TC_SUFFIX)
    if tc:
        assert scn.sink is not None
        scn.sink.close()
        scn.sink = Sink(scn.receiver, scn.receiver_if, tc=True)
        bed.gro(scn.receiver, scn.receiver_if, True)
    try:
        sample, _ = measure(scn, mode.removesuffix(TC_SUFFIX), gen, 0.5, seconds)
    finally:
        if tc:
            assert scn.sink is not None
            scn.sink.close()
            scn.sink = Sink(scn.receiver, scn.receiver_if)
            bed.gro(scn.receiver, scn.receiver_if, False)
    return 1e9 / sample.pps


def check(name: str, source: str, runs: int, seconds: float, cpu: int) -> dict[str, float]:
    """Median path ns per mode, the XDP sink's and the tcx sink's."""
    cfg = Config(scenarios=(name,), sizes=(), modes=(), runs=runs, seconds=seconds,
                 warmup=0.5, cpu=cpu, micro_iterations=0, profile=False, retries=0,
                 ns_prefix="tnasink", source=source)
    modes = (NULL, LINUX, TNA, LINUX + TC_SUFFIX, TNA + TC_SUFFIX)
    ns: dict[str, list[float]] = {m: [] for m in modes}
    with Testbed(prefix=cfg.ns_prefix) as bed:
        scn = SCENARIOS[name](bed, cfg.options)
        park = Park(bed)
        try:
            scn.build()
            gen = generator.make(source, scn.sender, scn.sender_if,
                                 scn.frame_bytes(scn.sizes[0]), scn.variation, cpu, park)
            try:
                for _ in range(runs):
                    for mode in modes:
                        ns[mode].append(_window(scn, bed, mode, gen, seconds))
            finally:
                gen.close()
        finally:
            park.close()
            scn.close()
    null = statistics.median(ns[NULL])
    return {m: statistics.median(v) - null for m, v in ns.items() if m != NULL}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tna.bench.sinkcheck", description=__doc__)
    p.add_argument("--scenario", default="router-v4", choices=sorted(SCENARIOS))
    p.add_argument("--source", default=generator.RELAY,
                   choices=(generator.SKB, generator.RELAY))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--cpu", type=int, default=1)
    args = p.parse_args(argv)
    for mode, path in check(args.scenario, args.source, args.runs, args.seconds,
                            args.cpu).items():
        print(f"{args.scenario} {args.source} {mode:<16} path {path:6.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main())
