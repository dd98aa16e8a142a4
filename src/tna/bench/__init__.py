"""``tna bench``: packet rates of Linux, TNA and the XDP limit on scenario topologies.

Role in the flow: outside the data path.  Builds each scenario in throw-away namespaces
(``scenarios``), drives it with a traffic source (``generator``: live XDP frames where the host
allows them, else skbs through ``bpf_clone_redirect()``) in serial mode, counts what a sink
delivers, measures a few scenarios again with a source on each of several CPUs
(``multicore``, ``--cpus``), micro-benchmarks the loaded programs (``micro``) and writes
JSON, a Markdown table and a PNG chart (``report``), each naming the source.
``docs/benchmarks.md`` explains the method.

    tna bench                         # everything, 3 runs, results in build/bench/
    tna bench --smoke                 # a few seconds: does the harness work (CI)
    tna bench --scenarios router-v4 --runs 5 --seconds 3 --json
    tna bench --source skb            # the skb source even where live frames work
    tna bench --scenarios bridge --cpus 2   # bridge, serial mode and on two CPUs
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tna import abi
from tna.bench import multicore
from tna.bench import report as rep
from tna.bench.generator import AUTO, SOURCES
from tna.bench.runner import Config, RetryBudget, pick_cpu, run
from tna.bench.scenarios import ALL_MODES, SCENARIOS, Options

DEFAULT_OUT = "build/bench"
# --smoke: one scenario, one frame size, tiny windows; seconds in all (CI).
SMOKE_SCENARIOS, SMOKE_SIZES, SMOKE_SECONDS, SMOKE_WARMUP, SMOKE_MICRO = \
    ("router-v4",), (64,), 0.3, 0.2, 300


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _variant(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"expected NAME=PATH to a BPF object, got {text!r}")
    return name, os.path.abspath(path)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tna bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenarios", type=_csv, default=tuple(SCENARIOS),
                   help=f"comma-separated, from: {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--sizes", type=_csv, default=(),
                   help="frame sizes in bytes without FCS, e.g. 64,1514 (default: per "
                   "scenario: 64 and 1514 for the routers, 64 elsewhere)")
    p.add_argument("--modes", type=_csv, default=(),
                   help=f"only these modes, from: {', '.join(ALL_MODES)}")
    p.add_argument("--runs", type=int, default=3, help="runs per mode; the median is reported")
    p.add_argument("--seconds", type=float, default=1.5, help="length of a timed window")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up before each window")
    p.add_argument("--retry-budget", type=float, default=120.0,
                   help="seconds the run may spend measuring windows again that other tasks "
                   "disturbed (default 120)")
    p.add_argument("--cpu", type=int, default=None,
                   help="the CPU for generator and forwarding (default: the highest one)")
    p.add_argument("--cpus", type=int, default=None,
                   help="also measure router-v4, bridge and firewall with one traffic source "
                   "per CPU on this many CPUs against one (default 2 where the machine has "
                   "them, 1 with --smoke; 1 skips it)")
    p.add_argument("--flows", type=int, default=10_000,
                   help="destinations of many-flows / FDB entries of bridge-fdb")
    p.add_argument("--fw-rules", type=int, default=50, help="rules of the firewall scenario")
    p.add_argument("--micro-iterations", type=int, default=10_000,
                   help="test runs per program in the micro-benchmark (0: skip it)")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the windows with BPF run-time statistics (per-program ns)")
    p.add_argument("--variant", type=_variant, action="append", default=[],
                   metavar="NAME=PATH", help="also measure another build of tna_xdp.bpf.o "
                   "(mode tna:NAME, end to end and program-only); for profiling")
    p.add_argument("--without", action="append", default=[], metavar="FEATURE",
                   help="profiling: also measure TNA with this feature forced off (mode "
                   "tna:-FEATURE), e.g. verify_l4_csum; never a safe configuration")
    p.add_argument("--source", choices=(AUTO, *SOURCES), default=AUTO,
                   help="traffic source: live XDP frames, skbs through bpf_clone_redirect(), "
                   "those skbs relayed as XDP frames by an XDP program (relay), or auto "
                   "(live where the kernel allows it, else skb; default)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="with live frames, skip measuring router-v4, bridge and punt-all "
                   "once more with the skb source")
    p.add_argument("--smoke", action="store_true",
                   help="seconds-long check that the harness works (router-v4, 64 B, 1 run)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"directory for results.json, results.md, bench.png ({DEFAULT_OUT})")
    p.add_argument("--ns-prefix", default="tnabench", help=argparse.SUPPRESS)  # tests
    p.add_argument("--from-json", metavar="FILE",
                   help="do not measure: render FILE (an earlier results.json) again")
    return p


def config(args: argparse.Namespace) -> Config:
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        raise ValueError(f"unknown scenario(s) {', '.join(unknown)}; have {', '.join(SCENARIOS)}")
    bad_modes = [m for m in args.modes if m not in ALL_MODES]
    if bad_modes:
        raise ValueError(f"unknown mode(s) {', '.join(bad_modes)}; have {', '.join(ALL_MODES)}")
    sizes = tuple(int(s) for s in args.sizes)
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0:
        raise ValueError("--runs must be >= 1, --seconds > 0, --warmup >= 0")
    available = sorted(os.sched_getaffinity(0))
    cpu = pick_cpu(args.cpu, available)
    ncpus = args.cpus if args.cpus is not None else 1 if args.smoke else min(2, len(available))
    cpus = tuple(multicore.pick_cpus(ncpus, cpu, available)) if ncpus != 1 else ()
    options = Options(flows=args.flows, fw_rules=args.fw_rules, variants=tuple(args.variant),
                      without=tuple(args.without))
    if args.smoke:
        return Config(scenarios=SMOKE_SCENARIOS, sizes=SMOKE_SIZES, modes=args.modes, runs=1,
                      seconds=SMOKE_SECONDS, warmup=SMOKE_WARMUP, cpu=cpu,
                      micro_iterations=SMOKE_MICRO, profile=args.profile, options=options,
                      ns_prefix=args.ns_prefix, source=args.source, compare=False, cpus=cpus)
    return Config(scenarios=args.scenarios, sizes=sizes, modes=args.modes, runs=args.runs,
                  seconds=args.seconds, warmup=args.warmup, cpu=cpu,
                  micro_iterations=args.micro_iterations, profile=args.profile,
                  options=options, ns_prefix=args.ns_prefix, source=args.source,
                  compare=args.compare, retry_budget=RetryBudget(args.retry_budget),
                  cpus=cpus)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _git_revision() -> str:
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=5, check=False,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def _object_digest() -> str:
    """Which build of the fast path was measured (the work tree may differ from HEAD)."""
    try:
        return hashlib.sha256(abi.xdp_object().read_bytes()).hexdigest()[:12]
    except (OSError, abi.BuildMissing):
        return ""


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


def meta(cfg: Config, smoke: bool, started: str) -> dict[str, object]:
    return {
        "date": started,
        "machine": f"{os.cpu_count()} x {_cpu_model()}",
        "kernel": platform.release(),
        "revision": _git_revision(), "tna_xdp_sha256": _object_digest(),
        "cpu": cfg.cpu, "cpus": list(cfg.cpus), "runs": cfg.runs, "seconds": cfg.seconds,
        "warmup": cfg.warmup,
        "smoke": smoke, "flows": cfg.options.flows, "fw_rules": cfg.options.fw_rules,
        "micro_iterations": cfg.micro_iterations,
        "variants": dict(cfg.options.variants), "without": list(cfg.options.without),
        "source_requested": cfg.source,
    }


def write_outputs(report: rep.Report, out: str) -> list[str]:
    """results.json, results.md and bench.png in ``out``; returns messages for the user."""
    os.makedirs(out, exist_ok=True)
    Path(out, "results.json").write_text(rep.dumps(report))
    Path(out, "results.md").write_text(rep.markdown(report))
    why_not = rep.plot(report, os.path.join(out, "bench.png"))
    msgs = [f"wrote {out}/results.json, {out}/results.md"]
    msgs.append(why_not or f"wrote {out}/bench.png")
    return msgs


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises SystemExit, so the namespaces are deleted on the way out."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv[:1] == ["--"]:  # "tna bench -- --smoke": the separator is not ours
        argv = argv[1:]
    args = parser().parse_args(argv)
    if args.from_json:
        report = rep.from_json(json.loads(Path(args.from_json).read_text()))
    else:
        if os.geteuid() != 0:
            print("tna bench: must run as root (namespaces, BPF)", file=sys.stderr)
            return 2
        try:
            cfg = config(args)
        except ValueError as e:
            print(f"tna bench: {e}", file=sys.stderr)
            return 2
        started = _now()
        try:
            with _sigterm_unwinds():
                report = run(cfg)
        except ValueError as e:  # e.g. --source live where the kernel refuses it
            print(f"tna bench: {e}", file=sys.stderr)
            return 2
        report.meta = {**meta(cfg, args.smoke, started), **report.meta}
    for msg in write_outputs(report, args.out):
        print(f"tna bench: {msg}", file=sys.stderr)
    if args.json:
        sys.stdout.write(rep.dumps(report))
    else:
        sys.stdout.write(rep.markdown(report))
    bad = [r for r in report.results if r.status in ("error", "invalid")]
    for r in bad:
        print(f"tna bench: {r.scenario} {r.size}B {r.mode}: {r.status}: {r.note}",
              file=sys.stderr)
    return 1 if bad else 0
