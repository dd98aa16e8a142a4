"""What ``tna monitor``'s switch costs the fast path: program-only, by BPF_PROG_TEST_RUN.

Role in the flow: a benchmark beside ``tna bench``, run as ``python3 -m tna.bench.monitor_cost``.
In an h1 — r — h2 router (``tna apply``, IPv4/IPv6 routing with veth checksum checks), the
program attached to r1 is loaded again and parked (as in :mod:`tna.bench.micro`), and runs a
routed UDP frame and a TTL-1 frame (punted, ``ttl``) with the monitor

- ``off``: the switch clear, as when nobody watches;
- ``expired``: a deadline in the past, as a killed monitor leaves it (the first punt clears it);
- ``on``: a deadline ahead and no rate limit, every punt copied into the ring, which is drained
  between batches (so nothing is lost to a full ring);
- ``limited``: on, with the default rate limit, so almost every punt is one over the budget;

and, with ``--baseline OBJ`` (the object built from the tree before the monitor existed), the
same program without any monitor code.  The routed frame runs once per test run (``repeat``
would rerun the rewritten frame, which is then a punt); the punted frame, which the program
leaves unchanged, in batches of ``repeat``.  Each round yields a trimmed mean (routed) or the
kernel's per-run average (punted); the median over rounds is reported, since the machine is
shared.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from typing import Any

from tna import abi, explain, netns
from tna.bench.bpfobj import Park
from tna.bench.micro import trimmed_mean
from tna.datapath import libbpf, loader
from tna.monitor import DEFAULT_RATE, Ctl, MonitorMaps
from tna.testbed import RouterTopology, Testbed, run_tna

MODES = ("off", "expired", "on", "limited")
NO_LIMIT = (1 << 32) - 1


def _frames(r1_mac: str) -> dict[str, bytes]:
    def frame(ttl: int) -> bytes:
        spec = explain.parse(["udp", "10.1.0.2:40000", ">", "10.2.0.2:443"], ttl=ttl)
        return explain.build(spec, r1_mac)

    return {"routed": frame(64), "punted (ttl)": frame(1)}


def _set_mode(maps: MonitorMaps, mode: str) -> None:
    now = time.monotonic_ns()
    if mode == "off":
        maps.write_ctl(Ctl())
    elif mode == "expired":
        maps.write_ctl(Ctl(now - 1, 0, 0, NO_LIMIT, 0))
    else:
        rate = NO_LIMIT if mode == "on" else DEFAULT_RATE
        maps.write_ctl(Ctl(now + 3600 * 10**9, 0, 0, rate, 0))


def _round(fd: int, frame: bytes, ingress: int, punted: bool, runs: int, repeat: int,
           ring: libbpf.RingBuffer) -> tuple[float, int]:
    """One round: ns per run, and the verdict."""
    if punted:
        per_run: list[float] = []
        verdict = -1
        for _ in range(max(1, runs // repeat)):
            verdict, _, ns = libbpf.test_run(fd, frame, ingress_ifindex=ingress, repeat=repeat)
            per_run.append(ns)
            ring.poll(0)
        return statistics.median(per_run), verdict
    durations: list[int] = []
    for i in range(runs):
        verdict, _, ns = libbpf.test_run(fd, frame, ingress_ifindex=ingress)
        durations.append(ns)
        if i % 1000 == 999:
            ring.poll(0)
    return trimmed_mean(durations), verdict


def measure(baseline: str | None, rounds: int, runs: int, repeat: int,
            log: Any = print, prefix: str = "tnamonb") -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with Testbed(prefix=prefix) as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        run_tna(t.r, "apply")
        park = Park(bed)
        progs: dict[str, loader.Program] = {}
        try:
            with netns.entered(t.r):
                ingress = socket.if_nametoindex("r1")
                attached = next(a for a in loader.attached() if a.ifindex == ingress)
                if baseline:
                    progs["without monitor code"] = loader.Program(attached.features,
                                                                   obj_path=baseline)
                progs["tna"] = loader.Program(attached.features)
                for p in progs.values():
                    park.attach(p.fd)
                frames = _frames(json.loads(bed.run(t.r, "ip", "-j", "link", "show", "r1")
                                            .stdout)[0]["address"])
                maps = MonitorMaps()
                drained = [0]
                ring = libbpf.RingBuffer(maps.ring_fd, lambda _raw: drained.__setitem__(
                    0, drained[0] + 1))
                try:
                    samples: dict[tuple[str, str, str], list[float]] = {}
                    verdicts: dict[tuple[str, str, str], int] = {}
                    for r in range(rounds):
                        for label, prog in progs.items():
                            for fname, frame in frames.items():
                                modes = MODES if label == "tna" else ("-",)
                                for mode in modes:
                                    if mode != "-":
                                        _set_mode(maps, mode)
                                    ns, verdict = _round(prog.fd, frame, ingress,
                                                         fname.startswith("punted"), runs,
                                                         repeat, ring)
                                    samples.setdefault((label, fname, mode), []).append(ns)
                                    verdicts[(label, fname, mode)] = verdict
                        log(f"  round {r + 1}/{rounds} done")
                    _set_mode(maps, "off")
                    for (label, fname, mode), xs in samples.items():
                        results.append({"program": label, "frame": fname, "monitor": mode,
                                        "ns_per_run_median": round(statistics.median(xs), 2),
                                        "rounds": [round(x, 2) for x in xs],
                                        "verdict": explain.XDP_ACTIONS.get(
                                            verdicts[(label, fname, mode)], "?")})
                    log(f"  events read from the ring meanwhile: {drained[0]}")
                finally:
                    ring.close()
                    maps.close()
        finally:
            park.close()
            for p in progs.values():
                p.close()
            run_tna(t.r, "detach", check=False)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tna.bench.monitor_cost",
                                description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--baseline", metavar="OBJ",
                   help="tna_xdp.bpf.o built without the monitor, for comparison")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=5000, help="test runs per round (default 5000)")
    p.add_argument("--repeat", type=int, default=1000,
                   help="repeat of one punted test run (default 1000; the ring holds "
                   f"{abi.TNA_MON_RING_BYTES // 128} events)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    results = measure(args.baseline, args.rounds, args.runs, args.repeat,
                      log=lambda s: print(s, file=sys.stderr))
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'program':<22} {'frame':<13} {'monitor':<8} {'ns/run (median)':>15}  verdict  "
          "rounds")
    for r in results:
        print(f"{r['program']:<22} {r['frame']:<13} {r['monitor']:<8} "
              f"{r['ns_per_run_median']:>15.1f}  {r['verdict']:<8} "
              f"{' '.join(f'{x:.1f}' for x in r['rounds'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
