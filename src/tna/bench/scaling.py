"""Cost as the work grows: Linux against TNA while a table grows (issue 17), ``make bench-scaling``.

Role in the flow: outside the data path.  Each sweep builds one ``tna bench`` scenario
(``scenarios``) in throw-away namespaces, then for each size grows the table in the DUT (routes,
neighbours, rules, FDB entries, conntrack entries), times the installation, points the traffic
source at the grown work and measures the ``null``, ``linux`` and ``tna`` modes exactly as
``tna bench`` does (``runner``; the skb source on hosts that refuse live frames).  A point's
*path cost* is a mode's ns per packet minus the null mode's (source and sink alone), the lowest
of the runs each (interference on a shared machine only ever adds time).  Writes scaling.json,
scaling.md and one chart per sweep group (scaling-<group>.png, log x; needs matplotlib, the
``plot`` extra) to ``--out``; ``scaling_report`` renders them.

    python3 -m tna.bench.scaling                          # every sweep (~1 h), build/scaling/
    python3 -m tna.bench.scaling --sweeps routes4,rules-nft --max 10000
    python3 -m tna.bench.scaling --sweeps fdb --points 2,10 --runs 1   # a tiny sweep
    python3 -m tna.bench.scaling --from-json build/scaling/scaling.json --out docs
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tna import bench, netns
from tna.bench import ctfill, frames, scaling_report
from tna.bench.bpfobj import Park
from tna.bench.generator import AUTO, SOURCES
from tna.bench.prefixes import Prefixes
from tna.bench.report import Report, Result
from tna.bench.runner import Config, RetryBudget, _measure_size, pick_cpu, resolve_source
from tna.bench.scenarios import (
    FLOW_MAC_BASE,
    H2_MAC,
    LINUX,
    NULL,
    TNA,
    BridgeFdb,
    Firewall,
    FirewallIpt,
    Options,
    Router,
    RouterV6,
    Scenario,
    StatefulFirewall,
    _mac,
    firewall_ruleset,
    iptables_ruleset,
)
from tna.testbed import Testbed

DEFAULT_OUT = "build/scaling"
MODES = (NULL, LINUX, TNA)
FRAME = 64
DECADES = (1, 10, 100, 1_000, 10_000, 100_000, 1_000_000)
CHUNK = 100_000  # lines per ip/bridge -batch (ip keeps a whole batch in memory)
FLOWS_NET, FLOWS_BASE = "10.64.0.1/10", "10.65.0.1"  # on r2: room for a million neighbours
Log = Callable[[str], None]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- the sweeps ------------------------------------------------------------------------------

class Sweep:
    """One table grown in one scenario; subclasses say how."""

    name = ""
    title = ""
    group = ""  # sweeps of a group share a chart
    label = ""  # the line's name in the chart
    what = ""  # the x axis
    points: tuple[int, ...] = ()

    def scenario(self, bed: Testbed) -> Scenario:
        raise NotImplementedError

    def prepare(self, n: int) -> None:
        """Work before ``grow`` that is not the kernel's (not timed), e.g. drawing prefixes."""

    def grow(self, scn: Scenario, n: int) -> None:
        """Make the DUT hold ``n`` (more than before) and point the traffic at them (timed:
        the install time)."""
        raise NotImplementedError

    def facts(self, scn: Scenario) -> dict[str, object]:
        """What to record about the DUT at this size (besides the numbers)."""
        return {}

    def cap(self) -> int | None:
        """The largest size this machine allows (None: no limit)."""
        return None


def _batch(scn: Scenario, tool: Sequence[str], lines: Sequence[str]) -> None:
    for i in range(0, len(lines), CHUNK):
        scn.bed.run(scn.dut, *tool, "-force", "-batch", "-",
                    input="\n".join(lines[i:i + CHUNK]) + "\n", timeout=900)


class Routes(Sweep):
    group, what = "routes", "routes in the main table"
    points = DECADES[1:]

    def __init__(self, family: int) -> None:
        self.family = family
        self.name = f"routes{family}"
        self.label = f"IPv{family}"
        self.title = (f"IPv{family} router, N routes (public-table prefix-length mix) via the "
                      "receiver; the traffic walks through min(N, 4096) of them")
        self.prefixes = Prefixes(family)
        self.pending: list[str] = []

    def scenario(self, bed: Testbed) -> Scenario:
        return (Router if self.family == 4 else RouterV6)(bed, Options())

    def prepare(self, n: int) -> None:
        gw = "10.2.0.2" if self.family == 4 else "fd00:2::2"
        self.pending = [f"route add {net} via {gw}" for net in self.prefixes.grow(n)]

    def grow(self, scn: Scenario, n: int) -> None:
        _batch(scn, ("ip", f"-{self.family}"), self.pending)
        count = self.prefixes.destinations(n)
        scn.dst_ip = self.prefixes.first()
        make = frames.ipv4_destinations if self.family == 4 else frames.ipv6_destinations
        scn.variation = make(scn.dst_ip, count, self.prefixes.step) if count > 1 else None


class Flows(Sweep):
    name, group, label = "flows", "flows", "IPv4"
    title = ("IPv4 router, N destinations on a connected /10, each a permanent neighbour; "
             "the traffic walks through all of them")
    what = "destinations (neighbours)"
    points = DECADES

    def __init__(self) -> None:
        self.have = 0

    def scenario(self, bed: Testbed) -> Scenario:
        scn = Router(bed, Options())
        real_build = scn._build

        def build() -> None:
            real_build()
            bed.run(scn.dut, "ip", "addr", "add", FLOWS_NET, "dev", "r2")
        scn._build = build  # type: ignore[method-assign]
        return scn

    def grow(self, scn: Scenario, n: int) -> None:
        var = frames.ipv4_destinations(FLOWS_BASE, n)
        _batch(scn, ("ip",), [f"neigh add {ipaddress.IPv4Address(var.value(i))} "
                              f"lladdr {H2_MAC} dev r2 nud permanent"
                              for i in range(self.have, n)])
        self.have = n
        scn.dst_ip = FLOWS_BASE
        scn.variation = var if n > 1 else None


class Rules(Sweep):
    group, what = "rules", "firewall rules (none matches)"
    points = (10, 100, 1_000, 10_000)

    def __init__(self, flavour: str) -> None:
        self.flavour = flavour
        self.name = "rules-nft" if flavour == "nft" else "rules-ipt"
        self.label = {"nft": "nft", "iptables-nft": "iptables-nft"}[flavour]
        self.title = (f"IPv4 router, {self.label} forward chain: N rules the flow does not "
                      "match, then accept")

    def scenario(self, bed: Testbed) -> Scenario:
        return (Firewall if self.flavour == "nft" else FirewallIpt)(bed, Options(fw_rules=0))

    def grow(self, scn: Scenario, n: int) -> None:
        if self.flavour == "nft":
            scn.bed.run(scn.dut, "nft", "-f", "-",
                        input="flush ruleset\n" + firewall_ruleset(n), timeout=600)
        else:  # iptables-restore replaces the table
            scn.bed.run(scn.dut, f"{self.flavour}-restore", input=iptables_ruleset(n),
                        timeout=600)
        assert isinstance(scn, Firewall)
        scn.fw_rules = n


class Fdb(Sweep):
    name, group, label = "fdb", "fdb", "bridge"
    title = "Linux bridge, 3 ports, N static FDB entries; the traffic walks through all of them"
    what = "FDB entries"
    points = DECADES[1:6]

    def __init__(self) -> None:
        self.have = 0

    def scenario(self, bed: Testbed) -> Scenario:
        return BridgeFdb(bed, Options(flows=0))

    def grow(self, scn: Scenario, n: int) -> None:
        var = frames.mac_destinations(FLOW_MAC_BASE, n)
        _batch(scn, ("bridge",), [f"fdb replace {_mac(var.value(i))} dev p2 master static"
                                  for i in range(self.have, n)])
        self.have = n
        scn.dst_mac = FLOW_MAC_BASE
        scn.variation = var if n > 1 else None


class Conntrack(Sweep):
    name, group, label = "conntrack", "conntrack", "nft stateful"
    title = ("IPv4 router, stateful nft forward chain (firewall-stateful); the flow is an "
             "established UDP flow; N conntrack entries in the DUT's table (N - 1 others, "
             "inserted through ctnetlink)")
    what = "conntrack entries in the DUT's namespace"
    points = DECADES

    def __init__(self) -> None:
        self.have = 0

    def scenario(self, bed: Testbed) -> Scenario:
        return StatefulFirewall(bed, Options())

    def cap(self) -> int | None:
        # nf_conntrack_max is the init namespace's (read-only in others): stay below it
        limit = ctfill.limits()["nf_conntrack_max"]
        return int(limit * 0.95) if limit else None

    def grow(self, scn: Scenario, n: int) -> None:
        with netns.entered(scn.dut):
            ctfill.fill(self.have, n - 1 - self.have)  # the benchmark flow is the N-th
        self.have = n - 1

    def facts(self, scn: Scenario) -> dict[str, object]:
        with netns.entered(scn.dut):
            return {"nf_conntrack_count": ctfill.count(), **ctfill.limits()}


def sweeps() -> dict[str, Callable[[], Sweep]]:
    return {"routes4": lambda: Routes(4), "routes6": lambda: Routes(6), "flows": Flows,
            "rules-nft": lambda: Rules("nft"), "rules-ipt": lambda: Rules("iptables-nft"),
            "fdb": Fdb, "conntrack": Conntrack}


# ---- running ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    sweeps: tuple[str, ...]
    points: tuple[int, ...] = ()  # () = each sweep's own
    max_n: int | None = None
    quiet_load: float = 0.0  # before a point of >= 100 k, wait (up to wait_s) for a lower load
    wait_s: float = 120.0


def _wait_for_quiet(limit: float, most: float, log: Log) -> None:
    if limit <= 0:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] > limit and time.monotonic() - t0 < most:
        time.sleep(2)
    waited = time.monotonic() - t0
    if waited > 1:
        log(f"  waited {waited:.0f} s for the load to drop (now {os.getloadavg()[0]:.2f})")


def plan_points(sweep: Sweep, st: Settings) -> list[int]:
    pts = list(st.points or sweep.points)
    if st.max_n is not None:
        pts = [p for p in pts if p <= st.max_n]
    cap = sweep.cap()
    if cap is not None and any(p > cap for p in pts):
        pts = [p for p in pts if p < cap] + [cap]
    return sorted(set(pts))


def _timed_applies(scn: Scenario) -> list[float]:
    """Seconds each ``tna`` mode entry spends applying (introspect, plan, load, fill maps):
    the cost of (re)configuring grows with the tables too."""
    took: list[float] = []
    real = scn._apply_tna

    def timed(*args: object, **kwargs: object) -> None:
        t0 = time.monotonic()
        real(*args, **kwargs)  # type: ignore[arg-type]
        took.append(time.monotonic() - t0)
    scn._apply_tna = timed  # type: ignore[method-assign]
    return took


def point_row(n: int, install_s: float, results: Sequence[Result], load: tuple[float, ...],
              facts: dict[str, object]) -> dict[str, object]:
    """One size's numbers: every run's ns per packet for each mode, and its verdicts."""
    modes = {}
    for r in results:
        modes[r.mode] = {"ns": [1e9 / s.pps for s in r.samples if s.pps > 0],
                         "status": r.status, "note": r.note, "fast_path": r.fast_path,
                         "cpu_other": r.cpu_other}
    return {"n": n, "install_s": round(install_s, 3), "load": list(load), "modes": modes,
            **({"facts": facts} if facts else {})}


def run_sweep(sweep: Sweep, st: Settings, cfg: Config, source: str, log: Log
              ) -> dict[str, object]:
    pts = plan_points(sweep, st)
    rows: list[dict[str, object]] = []
    out: dict[str, object] = {"title": sweep.title, "group": sweep.group, "label": sweep.label,
                              "what": sweep.what, "points": rows}
    with Testbed(prefix=cfg.ns_prefix) as bed:
        scn = sweep.scenario(bed)
        park = Park(bed)
        try:
            scn.build()
            applies = _timed_applies(scn)
            for n in pts:
                if n >= 100_000:
                    _wait_for_quiet(st.quiet_load, st.wait_s, log)
                sweep.prepare(n)
                t0 = time.monotonic()
                sweep.grow(scn, n)
                installed = time.monotonic() - t0
                log(f"{sweep.name} {n:,}: installed in {installed:.1f} s; "
                    f"load {os.getloadavg()[0]:.2f}")
                load = os.getloadavg()
                part = Report()
                applies.clear()
                _measure_size(scn, FRAME, list(MODES), park, cfg, source, log, part)
                row = point_row(n, installed, part.results, load, sweep.facts(scn))
                if applies:
                    row["tna_apply_s"] = round(min(applies), 3)
                rows.append(row)
        finally:
            park.close()
            scn.close()
    return out


def run(st: Settings, cfg: Config, log: Log = _log, partial: str = "") -> dict[str, object]:
    source, why = resolve_source(cfg)
    log(f"traffic source: {source} ({why})")
    doc: dict[str, object] = {"meta": {}, "sweeps": {}}
    home = os.sched_getaffinity(0)
    others = home - {cfg.cpu}
    if others:  # keep this (mostly sleeping) thread off the measured CPU
        os.sched_setaffinity(0, others)
    t0 = time.monotonic()
    try:
        for name in st.sweeps:
            sweep = sweeps()[name]()
            log(f"sweep {name}: {sweep.title}")
            s0 = time.monotonic()
            part = run_sweep(sweep, st, cfg, source, log)
            part["seconds"] = round(time.monotonic() - s0, 1)
            doc["sweeps"][name] = part  # type: ignore[index]
            if partial:  # a long run killed later keeps its finished sweeps
                Path(partial).write_text(json.dumps(doc, indent=1) + "\n")
    finally:
        os.sched_setaffinity(0, home)
    doc["meta"] = {"source": source, "source_reason": why, "seconds": round(time.monotonic()
                                                                              - t0, 1)}
    return doc


# ---- the command line ------------------------------------------------------------------------

def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _sizes(text: str) -> tuple[int, ...]:
    try:
        pts = tuple(int(x.replace("_", "").replace("k", "000").replace("M", "000000"))
                    for x in _csv(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 10,1k,1M, got {text!r}") from None
    if not pts or min(pts) < 1:
        raise argparse.ArgumentTypeError("sizes must be >= 1")
    return pts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python3 -m tna.bench.scaling",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--sweeps", type=_csv, default=tuple(sweeps()),
                   help=f"comma-separated, from: {', '.join(sweeps())} (default: all)")
    p.add_argument("--points", type=_sizes, default=(),
                   help="these sizes in every sweep instead of its own, e.g. 10,1k,100k")
    p.add_argument("--max", dest="max_n", type=_sizes, default=None,
                   help="leave out sizes above this")
    p.add_argument("--runs", type=int, default=3, help="runs per mode and size (default 3)")
    p.add_argument("--seconds", type=float, default=0.5, help="length of a timed window")
    p.add_argument("--warmup", type=float, default=0.25, help="warm-up before each window")
    p.add_argument("--retry-budget", type=float, default=300.0,
                   help="seconds the run may spend measuring disturbed windows again")
    p.add_argument("--quiet-load", type=float, default=0.0,
                   help="before each size of 100 k or more, wait up to --wait seconds for the "
                   "1-minute load average to drop below this (0: do not wait)")
    p.add_argument("--wait", type=float, default=120.0,
                   help="seconds --quiet-load waits at most before a size (default 120)")
    p.add_argument("--cpu", type=int, default=None, help="the measured CPU (default: highest)")
    p.add_argument("--source", choices=(AUTO, *SOURCES), default=AUTO,
                   help="traffic source (as tna bench --source)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"directory for scaling.json, scaling.md, scaling-*.png ({DEFAULT_OUT})")
    p.add_argument("--ns-prefix", default="tnascale", help=argparse.SUPPRESS)  # tests
    p.add_argument("--from-json", metavar="FILE",
                   help="do not measure: render FILE (an earlier scaling.json) again; "
                   "FILE,FILE...: several runs as one (the lowest of all their runs)")
    return p


def _machine() -> dict[str, object]:
    return {"machine": f"{os.cpu_count()} x {bench._cpu_model()}",
            "kernel": platform.release(), "revision": bench._git_revision(),
            "tna_xdp_sha256": bench._object_digest()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.from_json:
        try:
            doc = scaling_report.merge([json.loads(Path(f).read_text())
                                        for f in _csv(args.from_json)])
        except (OSError, ValueError, KeyError) as e:
            print(f"tna bench scaling: {args.from_json}: {e}", file=sys.stderr)
            return 2
    else:
        if os.geteuid() != 0:
            print("tna bench scaling: must run as root (namespaces, BPF)", file=sys.stderr)
            return 2
        unknown = [s for s in args.sweeps if s not in sweeps()]
        if unknown or args.runs < 1 or args.seconds <= 0 or args.warmup < 0:
            print(f"tna bench scaling: unknown sweep(s) {', '.join(unknown)} (have "
                  f"{', '.join(sweeps())})" if unknown else
                  "tna bench scaling: --runs must be >= 1, --seconds > 0, --warmup >= 0",
                  file=sys.stderr)
            return 2
        try:
            cpu = pick_cpu(args.cpu, sorted(os.sched_getaffinity(0)))
        except ValueError as e:
            print(f"tna bench scaling: {e}", file=sys.stderr)
            return 2
        cfg = Config(scenarios=(), modes=MODES, runs=args.runs, seconds=args.seconds,
                     warmup=args.warmup, cpu=cpu, micro_iterations=0, profile=False,
                     ns_prefix=args.ns_prefix, source=args.source, compare=False,
                     retry_budget=RetryBudget(args.retry_budget))
        st = Settings(sweeps=args.sweeps, points=args.points,
                      max_n=max(args.max_n) if args.max_n else None,
                      quiet_load=args.quiet_load, wait_s=args.wait)
        started, load0 = bench._now(), os.getloadavg()
        try:
            os.makedirs(args.out, exist_ok=True)
            doc = run(st, cfg, partial=os.path.join(args.out, "scaling.partial.json"))
        except (ValueError, OSError) as e:
            print(f"tna bench scaling: {e}", file=sys.stderr)
            return 1
        doc["meta"] = {**_machine(), "date": started, "ended": bench._now(),
                       "cpu": cpu, "runs": args.runs, "window_s": args.seconds,
                       "warmup_s": args.warmup, "frame": FRAME, "load_start": list(load0),
                       "load_end": list(os.getloadavg()), **ctfill.limits(),
                       **doc["meta"]}  # type: ignore[dict-item]
    for msg in scaling_report.write(doc, args.out):
        print(f"tna bench scaling: {msg}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
