"""Where the stateful path's time goes: program-only cost of TNA's object beside its profiling
builds, interleaved so that a shared machine's noise hits every program alike.

Role in the flow: a measurement tool (``python -m tna.bench.ct_profile``), beside ``tna bench``'s
micro-benchmark.  For each scenario the topology is built (real conntrack entries: the UDP
openers, the TCP connection held open), TNA is applied in the DUT namespace, and each program
(the production object as loaded, every variant with the same features, the empty program)
is timed with ``BPF_PROG_TEST_RUN`` on the scenario's frame (``micro.time_program``), one
round of ``--iterations`` runs per program in turn, ``--rounds`` times.  Reported per
program: the median over rounds of its trimmed mean minus the empty program's of the same
round, and the spread.  The variants are the builds of ``make profile-variants``
(bpf/lib/profile.h: each takes one step of the stateful path out; ``before`` puts back the
code without this branch's shortcuts); a variant's cost difference to the production object
is what the step costs.
"""

from __future__ import annotations

import argparse
import glob
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tna.bench import micro
from tna.bench.bpfobj import BpfObject, Link, Park, ifindex_of
from tna.bench.scenarios import SCENARIOS, TNA, Options, Scenario
from tna.datapath import libbpf, loader
from tna.netns import entered
from tna.testbed import Testbed

DEFAULT_SCENARIOS = ("stateful-tcp", "nat-tcp", "firewall-stateful", "nat-udp")
VARIANT_GLOB = "build/profile/tna_xdp_*.bpf.o"
AS_LOADED = "tna (as loaded)"


@dataclass(frozen=True)
class Row:
    scenario: str
    program: str
    ns: float  # median over rounds, the empty program subtracted
    low: float
    high: float
    verdicts: str


def profile(name: str, variants: Sequence[tuple[str, str]], rounds: int, iterations: int,
            log: Callable[[str], None]) -> list[Row]:
    with Testbed(prefix="tnactprof") as bed:
        scn = SCENARIOS[name](bed, Options())
        park = Park(bed)
        try:
            scn.build()
            scn.enter(TNA)
            try:
                with entered(scn.dut):
                    return _rounds(scn, park, variants, rounds, iterations, log)
            finally:
                scn.leave(TNA)
        finally:
            park.close()
            scn.close()


def _rounds(scn: Scenario, park: Park, variants: Sequence[tuple[str, str]],
            rounds: int, iterations: int, log: Callable[[str], None]) -> list[Row]:
    ingress = ifindex_of(scn.ingress_if)
    packets = micro.packets_for(scn)
    links: list[Link] = []
    progs: list[loader.Program] = []
    fds: dict[str, int] = {}
    sink = BpfObject("bench_sink")
    try:
        fds["empty"] = sink.prog_fd("bench_nop")
        attached = [a for a in loader.attached() if a.ifindex == ingress]
        feats = attached[0].features
        fds[AS_LOADED] = libbpf.prog_get_fd_by_id(attached[0].prog_id)
        for label, path in variants:
            prog = loader.Program(feats, obj_path=path)
            progs.append(prog)
            fds[label] = prog.fd
        for fd in fds.values():
            links.append(park.attach(fd))
        _established(scn, fds[AS_LOADED], packets, ingress)
        per: dict[str, list[float]] = {k: [] for k in fds if k != "empty"}
        verdicts: dict[str, set[str]] = {k: set() for k in per}
        for r in range(rounds):
            base = micro.time_program(fds["empty"], packets, ingress, iterations).ns_run
            for label in per:
                t = micro.time_program(fds[label], packets, ingress, iterations)
                per[label].append(t.ns_run - base)
                verdicts[label].update(t.verdicts)
            log(f"  {scn.name}: round {r + 1}/{rounds}")
        return [Row(scn.name, label, statistics.median(xs), min(xs), max(xs),
                    ",".join(sorted(verdicts[label]))) for label, xs in per.items()]
    finally:
        for link in links:
            link.close()
        if AS_LOADED in fds:
            os.close(fds[AS_LOADED])
        for prog in progs:
            prog.close()
        sink.close()


def _established(scn: Scenario, fd: int, packets: list[bytes], ingress: int) -> None:
    """Until the production program forwards the frame and the flow is assured: test_run
    frames never reach Linux, so frames are sent for real from the sender (TNA punts them
    until Linux has seen the UDP flow's reply, and the one that assures it after its stream
    mark, as it would any flow's)."""
    deadline = time.monotonic() + 10
    while micro.time_program(fd, packets, ingress, 1).verdicts.get("redirect") is None \
            or "[ASSURED]" not in scn.bed.run(scn.dut, "conntrack", "-L").stdout:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{scn.name}: the flow never became fast")
        with entered(scn.sender), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((scn.sender_if, 0))
            s.send(packets[0])
        time.sleep(0.2)


def markdown(rows: Sequence[Row]) -> str:
    out = ["| scenario | program | ns/pkt (median) | rounds min-max | vs as loaded | verdict |",
           "|---|---|---|---|---|---|"]
    loaded = {r.scenario: r.ns for r in rows if r.program == AS_LOADED}
    for r in rows:
        delta = r.ns - loaded[r.scenario]
        out.append(f"| {r.scenario} | {r.program} | {r.ns:.0f} | {r.low:.0f}-{r.high:.0f} | "
                   f"{delta:+.0f} | {r.verdicts} |")
    return "\n".join(out) + "\n"


def default_variants() -> list[tuple[str, str]]:
    paths = sorted(glob.glob(VARIANT_GLOB))
    return [(os.path.basename(p).removeprefix("tna_xdp_").removesuffix(".bpf.o"), p)
            for p in paths]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tna.bench.ct_profile", description=__doc__)
    p.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--iterations", type=int, default=1000, help="runs per program per round")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                   help=f"default: every {VARIANT_GLOB} (make profile-variants)")
    args = p.parse_args(argv)
    if not all("=" in v for v in args.variant):
        p.error("--variant wants NAME=PATH")
    variants = [(v.split("=", 1)[0], v.split("=", 1)[1]) for v in args.variant] \
        or default_variants()
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    rows: list[Row] = []
    for name in names:
        rows += profile(name, variants, args.rounds, args.iterations,
                        lambda m: print(m, file=sys.stderr, flush=True))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
