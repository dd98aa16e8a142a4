"""The ``tna`` command: the operator's entry point to introspect, plan, apply and observe.

Role in the flow: parses arguments, enters ``--netns``, then runs one step of
introspect → plan → apply (or reads state back for status/stats).  Every expected failure is one
line on stderr and a non-zero exit; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import socket
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from tna import (
    abi,
    control,
    counters,
    doctor,
    fdbrefresh,
    gc,
    liberal,
    netns,
    owner,
    rootdir,
    sdnotify,
    sync,
    watcher,
)
from tna.datapath import libbpf, status
from tna.datapath import liberal as liberal_datapath
from tna.datapath.libbpf import LibbpfError
from tna.datapath.loader import Changes
from tna.datapath.pins import DatapathError
from tna.model import Snapshot
from tna.netfilter import NetfilterError
from tna.plan import Plan, SlowPath, make_plan

MIN_KERNEL = (5, 15)  # BPF links for XDP, test-run ingress_ifindex, netns cookies
PERIOD_RANGE_S = (0.05, 3600.0)  # what every period option (--resync, --interval) accepts


TCP_LIBERAL_HELP = (
    "opt-in, changes Linux's behaviour: with TCP window tracking on "
    "(nf_conntrack_tcp_be_liberal=0), make each established TCP connection the fast path "
    "would carry liberal in conntrack, as the kernel's flowtable does for the flows it "
    "offloads, so its bulk data is fast; such a connection stays liberal for its lifetime, "
    "also after TNA stops (docs/stateful.md)")


class UsageError(Exception):
    """Wrong use of the command or an environment TNA cannot work in."""


EXIT_CODES = """exit status:
  0    success
  1    error (one line on stderr: what is wrong, and what to do)
  2    wrong usage (unknown command or option)
  130  interrupted"""

LIBBPF_PACKAGE = "libbpf1"  # Debian's package for libbpf.so.1


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        return 2
    try:
        _normalise(args)
        _preflight(args)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except (UsageError, netns.NetnsError, DatapathError, NetfilterError,
            abi.BuildMissing, owner.Busy, rootdir.UnsafeDir) as e:
        print(f"tna: {e}", file=sys.stderr)
    except LibbpfError as e:
        print(f"tna: {e}", file=sys.stderr)
        if os.environ.get("TNA_DEBUG") and e.log:
            print(e.log, file=sys.stderr)
    except KeyboardInterrupt:
        print("tna: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tna show --json | head`: the reader left, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the environment (a read-only bpffs, a full /run): one line
        print(f"tna: {e.strerror or e}" + (f": {e.filename}" if e.filename else ""),
              file=sys.stderr)
    return 1


def _version() -> str:
    try:
        return metadata.version("tna")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    # -n/--netns and -j/--json go before or after the command, as with ip, bpftool and nft:
    # the main parser owns the defaults, the commands' copies only set what is given (SUPPRESS)
    common = argparse.ArgumentParser(add_help=False)
    _add_common(common, argparse.SUPPRESS)
    p = argparse.ArgumentParser(prog="tna", description="Transparent XDP acceleration for the "
                                "Linux network stack.", epilog=EXIT_CODES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-V", "--version", action="version", version=f"tna {_version()}")
    _add_common(p, None)
    sub = p.add_subparsers(metavar="COMMAND")
    commands: list[tuple[str, Callable[[argparse.Namespace], int], str]] = [
        ("show", cmd_show, "print the configuration snapshot TNA works from"),
        ("plan", cmd_plan, "print what would be accelerated and what stays on Linux"),
        ("apply", cmd_apply, "load and attach the fast path for the current configuration"),
        ("status", cmd_status, "show attached programs, their features and size"),
        ("stats", cmd_stats, "show fast-path counters and punt reasons"),
        ("top", cmd_top, "live rates: fast path, to Linux and why, rule hits"),
        ("monitor", cmd_monitor, "punted (and dropped) frames as they happen, with reason"),
        ("detach", cmd_detach, "remove everything TNA attached"),
        ("gc", cmd_gc, "remove pins and state files of namespaces that no longer exist"),
        ("doctor", cmd_doctor, "check a namespace: what keeps traffic on Linux, and the "
         "command that fixes it"),
        ("demo", cmd_demo, "build a demo router in namespaces and show TNA at work"),
    ]
    for name, func, help_text in commands:
        sp = sub.add_parser(name, help=help_text, description=help_text, parents=[common],
                            epilog=EXIT_CODES,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(func=func)
    sub.choices["plan"].add_argument(
        "--tcp-liberal", action="store_true",
        help="the plan as 'tna run --tcp-liberal' makes it (see 'tna run --help')")
    sp = sub.choices["status"]
    sp.add_argument("-a", "--all", action="store_true",
                    help="every namespace TNA manages, by name where it has one")
    sp = sub.choices["gc"]
    sp.add_argument("--dry-run", action="store_true",
                    help="say what would be removed, remove nothing")
    sp = sub.choices["stats"]
    sp.add_argument("--describe", action="store_true",
                    help="explain every counter and the setting that would change it")
    sp.add_argument("--reset", action="store_true",
                    help="count from now on (the kernel's counters are left alone)")
    sp.add_argument("--format", choices=("text", "json", "prometheus"), default="text",
                    help="output format; prometheus: for node-exporter's textfile collector")
    sp = sub.choices["top"]
    sp.add_argument("--all", action="store_true", help="every namespace 'ip netns' names too")
    sp.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                    help="refresh period (default 1)")
    sp.add_argument("--iterations", type=int, default=None, metavar="N",
                    help="print N refreshes as plain text, then exit")
    sp.add_argument("--once", action="store_true", help="the same as --iterations 1")
    sp = sub.choices["monitor"]
    sp.add_argument("--drops", action="store_true",
                    help="also frames a forward-hook firewall rule dropped")
    sp.add_argument("--interface", metavar="IFACE", help="only frames arriving on IFACE")
    sp.add_argument("--count", type=int, default=None, metavar="N",
                    help="exit after N frames")
    sp.add_argument("--rate", type=int, default=None, metavar="N",
                    help="at most N frames per second and CPU (default 1000)")
    sp = sub.add_parser("explain", help="what TNA would do with a packet, and what Linux's "
                        "lookup says (nothing is sent)", description="Build the packet, run it "
                        "once through the program attached to the interface (BPF_PROG_TEST_RUN "
                        "with its real maps: the run is counted) and compare with Linux's "
                        "route lookup. Example: tna explain --in r1 udp 10.1.0.2:40000 '>' "
                        "10.2.0.9:443 --ttl 64", parents=[common])
    sp.add_argument("--in", dest="ingress", required=True, metavar="IFACE",
                    help="the interface the packet arrives on")
    sp.add_argument("packet", nargs="+", metavar="PROTO SRC[:PORT] > DST[:PORT]",
                    help="udp, tcp or icmp (echo request); IPv4 or IPv6 ([ADDR]:PORT)")
    sp.add_argument("--ttl", type=int, help="TTL / hop limit (default 64)")
    sp.add_argument("--size", type=int, help="frame length in bytes (default: minimal)")
    sp.add_argument("--flags", dest="tcp_flags", metavar="FSRPAU", help="TCP flags (default S)")
    sp.add_argument("--src-mac", help="source MAC (default 02:00:00:00:00:01)")
    sp.add_argument("--dst-mac", help="destination MAC (default: the interface's)")
    sp.add_argument("--bad-ip-csum", action="store_true", help="corrupt the IPv4 checksum")
    sp.add_argument("--bad-l4-csum", action="store_true", help="corrupt the L4 checksum")
    sp.set_defaults(func=cmd_explain)
    sp = sub.add_parser("run", help="apply, then keep the fast path in sync with the "
                        "configuration (daemon)", description="Apply, then follow every "
                        "configuration change. Logs one JSON line per change (with or without "
                        "--json). SIGTERM detaches, SIGHUP re-reads everything.",
                        parents=[common])
    sp.add_argument("--keep", action="store_true",
                    help="on SIGTERM leave the fast path attached for a successor to adopt")
    sp.add_argument("--resync", type=float, default=1.0, metavar="SECONDS",
                    help="audit period, for changes without notifications (default 1)")
    sp.add_argument("--metrics", metavar="[ADDRESS:]PORT", default="",
                    help="serve Prometheus metrics over HTTP (address 127.0.0.1 unless given)")
    sp.add_argument("--tcp-liberal", action="store_true", help=TCP_LIBERAL_HELP)
    sp.set_defaults(func=cmd_run)
    sp = sub.add_parser("watch", help="the watcher 'apply' leaves running (started by it)",
                        description="What 'apply' leaves in the background: follows every "
                        "configuration change like 'run' (restricting at once what a change "
                        "may make unsafe), prints nothing, and owns the links: if it dies, "
                        "Linux forwards alone. SIGUSR1 hands the links back as pins (for "
                        "'apply', 'detach', 'run'); SIGTERM detaches everything.",
                        parents=[common])
    sp.set_defaults(func=cmd_watch)
    sp = sub.add_parser("fdb-refresh", help="keep the bridge FDB mirror current (started by "
                        "'apply' in the background)", description="Follow the kernel's bridge "
                        "FDB and port states into the fast path's maps, and refresh the kernel's "
                        "entries for sources the fast path forwarded (NTF_USE). Exits when TNA "
                        "is detached. Prints nothing.", parents=[common])
    sp.add_argument("--interval", type=float, default=None, metavar="SECONDS",
                    help="resync and refresh period (default: a tenth of the ageing time)")
    sp.add_argument("--once", action="store_true", help="one resync and refresh, then exit")
    sp.set_defaults(func=cmd_fdb_refresh)
    # the benchmark parses its own options: '+' keeps this parser from taking '--smoke'
    sp = sub.add_parser("bench", help="measure packet rates: Linux vs TNA vs the XDP limit",
                        add_help=False, prefix_chars="+")
    sp.add_argument("bench_args", nargs=argparse.REMAINDER)
    sp.set_defaults(func=cmd_bench)
    return p


def _add_common(p: argparse.ArgumentParser, default: Any) -> None:
    p.add_argument("-n", "--netns", metavar="NETNS", default=default,
                   help="act on this network namespace: a name from 'ip netns list' or a "
                   "path such as /proc/PID/ns/net (default: the caller's namespace)")
    p.add_argument("-j", "--json", action="store_true",
                   default=False if default is None else default,
                   help="machine-readable output (JSON)")


def _normalise(args: argparse.Namespace) -> None:
    """``--netns ""`` is an error, not the host: a script's unset variable must not end up
    accelerating the wrong namespace.  Internally "" means the caller's namespace."""
    if args.netns == "":
        raise UsageError('empty --netns: omit the option to act on this namespace')
    args.netns = args.netns or ""
    if args.json and args.func is cmd_demo:
        raise UsageError("demo is a guided tour in text: drop --json")
    if args.json and args.func is cmd_bench and "--json" not in args.bench_args:
        args.bench_args = [*args.bench_args, "--json"]


def _require_libbpf() -> None:
    """libbpf >= 1.0 (its return conventions are what the binding expects), or one line
    naming the package to install."""
    try:
        lib = libbpf.lib()
        major, minor = lib.libbpf_major_version(), lib.libbpf_minor_version()
    except (OSError, AttributeError):
        raise UsageError(f"libbpf.so.1 (libbpf 1.0 or newer) cannot be loaded: install the "
                         f"Debian package {LIBBPF_PACKAGE}") from None
    if major < 1:
        raise UsageError(f"libbpf {major}.{minor} is too old: need 1.0 or newer (Debian "
                         f"package {LIBBPF_PACKAGE})")


def _preflight(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise UsageError("must run as root (BPF and netlink configuration need it)")
    release = os.uname().release
    try:
        version = tuple(int(x) for x in release.split("-")[0].split(".")[:2])
    except ValueError:
        version = (0, 0)
    if version < MIN_KERNEL:
        raise UsageError(f"unsupported kernel {release}: need Linux "
                         f"{MIN_KERNEL[0]}.{MIN_KERNEL[1]} or newer")
    _require_libbpf()
    if args.func in (cmd_run, cmd_watch):
        sdnotify.connect()  # before setns: see tna.sdnotify
    if args.netns:
        if args.func in (cmd_demo, cmd_bench):
            raise UsageError(f"{args.func.__name__[4:]} makes its own namespaces; drop --netns")
        if args.func is cmd_gc or (args.func is cmd_status and args.all):
            raise UsageError("this covers every namespace; drop --netns")
        netns.enter(args.netns)


def _snapshot(args: argparse.Namespace) -> Snapshot:
    return control.snapshot(args.netns)


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


# ---- commands --------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    if args.json:
        _print_json(snapshot_json(snap))
    else:
        print(format_snapshot(snap))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    # the opt-in as asked, or as the running daemon has it; a running daemon (or the opt-in,
    # a daemon's) follows the namespace
    daemon = sync.read_state() or {}
    plan = make_plan(snap, followed=bool(daemon),
                     tcp_liberal=getattr(args, "tcp_liberal", False) or "tcp_liberal" in daemon)
    guidance = advise(snap, plan)
    if args.json:
        _print_json({**plan.to_dict(), "guidance": guidance.to_dict()})
    else:
        print(format_plan(plan, guidance))
    return 0


def advise(snap: Snapshot, plan: Plan) -> doctor.Guidance:
    return doctor.advise(snap, plan, doctor.read_peers(snap))


def cmd_doctor(args: argparse.Namespace) -> int:
    snap = _snapshot(args)
    plan = make_plan(snap)
    guidance = advise(snap, plan)
    modes = {a.ifindex: a.mode for a in status.attached()}
    findings = doctor.doctor(snap, plan, modes) + guidance.findings()
    if args.json:
        _print_json({"findings": [f.to_dict() for f in findings],
                     "interfaces": {n: s.to_dict() for n, s in guidance.shares.items()}})
        return 0
    where = args.netns or "this namespace"
    for ifname, share in guidance.shares.items():
        print(f"{ifname}: expected fast-path share: {share.text()}")
    if not findings:
        print(f"{where}: nothing keeps traffic on Linux that TNA could take")
        return 0
    print(f"\n{where}: {len(findings)} finding(s)")
    print("\n".join(doctor.format_findings(findings, "  ")))
    return 0


def _own(action: str) -> owner.Lock:
    """The namespace's lock for one command; refused while ``tna run`` owns the namespace,
    a few seconds granted to another brief writer, taken over from the watcher an earlier
    ``apply`` left (it pins its links and exits)."""
    try:
        return owner.acquire(action, wait=30.0, take_over=("watch",))
    except owner.Busy as e:
        if e.holder.get("role") == "run":
            raise UsageError(f"tna run (pid {e.holder['pid']}) manages this namespace; stop "
                             f"it before '{action}'") from None
        raise


def _detach_unfollowed(error: Exception) -> None:
    """The watcher did not start: never a fast path nobody follows.  Detached under the lock
    again, unless a 'tna run' took the namespace over meanwhile (it follows it then)."""
    try:
        lock = owner.acquire("apply", wait=30.0, take_over=("watch",))
    except owner.Busy as e:
        raise UsageError(f"{error}; {e}") from None
    with lock:
        control.detach()
        lock.forget()
    raise UsageError(f"{error}; TNA detached again, Linux forwards alone") from None


def _period(option: str, value: float) -> float:
    """A period in seconds within PERIOD_RANGE_S (nan, inf and 1e-9 are refused)."""
    lo, hi = PERIOD_RANGE_S
    if not math.isfinite(value) or not lo <= value <= hi:
        raise UsageError(f"{option} must be a number of seconds from {lo:g} to {hi:g}, "
                         f"not {value!r}")
    return value


def collect_garbage(args: argparse.Namespace) -> list[gc.Collected]:
    """What namespaces that no longer exist left behind goes first (apply, run, status):
    never a reason for the command itself to fail."""
    try:
        collected = gc.collect()
    except OSError as e:
        print(f"tna: warning: could not look for leftovers of deleted namespaces: {e}",
              file=sys.stderr)
        return []
    if collected and not args.json and args.func is not cmd_run:
        print(f"tna: removed {format_collected(collected)}", file=sys.stderr)
    return collected


def format_collected(collected: list[gc.Collected]) -> str:
    pins = sum(len(c.pins) for c in collected)
    files = sum(len(c.state) for c in collected)
    return (f"{pins} pin(s) and {files} state file(s) of {len(collected)} namespace(s) "
            "that no longer exist or whose owner is gone")


def cmd_gc(args: argparse.Namespace) -> int:
    collected = gc.collect(dry_run=args.dry_run)
    if args.json:
        _print_json({"dry_run": args.dry_run, "collected": [c.to_dict() for c in collected]})
        return 0
    if not collected:
        print("nothing to remove: every namespace TNA has pins or state for exists")
        return 0
    for c in collected:
        what = ", ".join(c.pins + c.state)
        print(f"{'would remove' if args.dry_run else 'removed'} ns{c.cookie}: {what}")
    if not args.dry_run:
        print(f"removed {format_collected(collected)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    _period("--resync", args.resync)
    collect_garbage(args)
    daemon = sync.Daemon(args.netns, keep=args.keep, resync_s=args.resync,
                         tcp_liberal=args.tcp_liberal)
    if args.metrics:
        from tna import metrics  # prometheus_client only where it is used

        try:
            daemon.observers.append(metrics.serve(
                args.metrics, lambda: daemon.plan.namespace.firewall if daemon.plan else None,
                lambda: daemon.marker.counts() if daemon.marker else None).observe)
        except ValueError as e:
            raise UsageError(str(e)) from None
    try:
        return daemon.run()
    except (sync.AlreadyRunning, watcher.WatcherError) as e:
        raise UsageError(str(e)) from None


def cmd_apply(args: argparse.Namespace) -> int:
    collect_garbage(args)
    with _own("apply") as lock:  # a previous apply's watcher hands over: its links become pins
        try:
            applied = control.apply(args.netns)
        except BaseException:
            # nothing half-done stays behind: no pins, no links; the kernel forwards alone
            with contextlib.suppress(Exception):
                control.detach()
            lock.forget()  # nor a lock file
            raise
        plan, changes = applied.plan, applied.changes
        if not plan.attaches:
            lock.forget()  # nothing left to own (the maps went with the last program)
        assert applied.snapshot is not None
        guidance = advise(applied.snapshot, plan)
        try:
            # later changes are followed at once (a rule added after apply is never bypassed):
            # the watcher waits for the lock, which is handed to it as it starts
            pid = watcher.start(args.netns, on_spawned=lock.release) if plan.attaches else None
        except watcher.WatcherError as e:
            _detach_unfollowed(e)
    if args.json:
        _print_json({**apply_json(plan, changes, pid), "guidance": guidance.to_dict()})
        return 0
    print(format_plan(plan, guidance))
    names = [i.ifname for i in plan.interfaces if i.features is not None]
    print(f"\napplied: fast path on {len(names)} interface(s)"
          + (f": {', '.join(names)}" if names else "") + f" ({format_changes(changes)})")
    if guidance.forwards_nothing(plan):
        fixes = guidance.egress_fixes()
        print(f"WARNING: TNA attached programs to {len(names)} interface(s) that can forward "
              "nothing: every packet still goes to Linux"
              + (f"; fix: {' ; '.join(fixes)}" if fixes else "; see 'tna doctor'"),
              file=sys.stderr)
    if pid is not None:
        print(f"followed by tna watch (pid {pid}) until 'tna detach': later changes are "
              "enforced at once; if it stops, Linux forwards alone")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        with open(os.devnull, "w") as quiet:
            return sync.Daemon(args.netns, log=quiet, watch=True).run()
    except sync.AlreadyRunning as e:
        raise UsageError(str(e)) from None


def cmd_fdb_refresh(args: argparse.Namespace) -> int:
    if args.interval is not None:
        _period("--interval", args.interval)
    return fdbrefresh.Refresher(args.netns, args.interval).run(once=args.once)


def format_changes(changes: Changes) -> str:
    parts = [f"{what} {', '.join(_ifname(i) for i in ifs)}"
             for what, ifs in changes.by_kind().items()]
    return "; ".join(parts) or "no change"


def cmd_status(args: argparse.Namespace) -> int:
    collect_garbage(args)
    if args.all:
        return status_all(args)
    status.bind_attached()
    rows = status_rows()
    daemon = sync.read_state()
    watching = watcher.running()
    if args.json:
        _print_json({"interfaces": rows, "daemon": daemon, "watcher_pid": watching})
        return 0
    if watching:
        print(f"watcher: tna watch, pid {watching} (left by 'tna apply', stopped by 'detach')")
    if daemon:
        last = daemon.get("last") or {}
        print(f"daemon: tna run, pid {daemon['pid']}, {daemon['cycles']} reconciliations, "
              f"{daemon['errors']} errors; last: {', '.join(last.get('why', [])) or '-'} "
              f"in {last.get('duration_ms', '-')} ms")
    if not rows:
        print("TNA is not attached in this namespace")
        return 0
    print(f"{'interface':<12} {'mode':<8} {'prog':>6} {'insns':>6}  features")
    for r in rows:
        print(f"{r['ifname']:<12} {r['mode']:<8} {r['prog_id']:>6} {r['xlated_insns']:>6}  "
              f"{', '.join(r['features']) or '-'}")
    return 0


def status_all(args: argparse.Namespace) -> int:
    """Every namespace TNA manages, read from inside each (the collection just ran, so all
    of them exist)."""
    out = []
    for m in gc.managed():
        row: dict[str, Any] = {"cookie": m.cookie, "name": m.name, "alive": m.alive,
                               "interfaces": [], "daemon": None, "pins": len(m.pins)}
        if m.path is not None:
            try:
                with netns.entered(m.path):
                    row["interfaces"], row["daemon"] = status_rows(), sync.read_state()
            except (netns.NetnsError, OSError, LibbpfError):
                pass  # gone meanwhile
        out.append(row)
    if args.json:
        _print_json({"namespaces": out})
        return 0
    if not out:
        print("TNA manages no namespace")
        return 0
    print(f"{'namespace':<24} {'cookie':>8}  {'pins':>4}  {'daemon':>7}  attached")
    for r in out:
        name = r["name"] or ("(unnamed)" if r["alive"] else "(gone)")
        daemon = f"pid {r['daemon']['pid']}" if r["daemon"] else "-"
        ifs = ", ".join(f"{i['ifname']} ({i['mode']})" for i in r["interfaces"])
        print(f"{name:<24} {r['cookie']:>8}  {r['pins']:>4}  {daemon:>7}  {ifs or '-'}")
    return 0


def status_rows() -> list[dict[str, Any]]:
    return [{"ifname": _ifname(a.ifindex), "ifindex": a.ifindex, "prog_id": a.prog_id,
             "xlated_insns": a.xlated_insns, "mode": a.mode, "features": a.features.names()}
            for a in status.attached()]


def cmd_stats(args: argparse.Namespace) -> int:
    status.bind_attached()
    if args.reset:
        return _reset_stats(args)
    if args.format == "prometheus":
        from tna import metrics  # prometheus_client only where it is used

        sys.stdout.write(metrics.exposition(control.firewall_record()))
        return 0
    stats = collect_stats(describe_all=args.describe)
    tcp_liberal = liberal.summary(liberal_datapath.read_stats(), sync.read_state())
    if tcp_liberal is not None:
        stats["tcp_liberal"] = tcp_liberal
    attached = bool(status.attached())
    # rule counters are attributed only while programs run: with none, there is nothing stale
    stats["firewall_rules"] = firewall_rule_stats(args) if attached else []
    if args.json or args.format == "json":
        _print_json(stats)
        return 0
    if not attached:
        print("TNA is not attached in this namespace" + (
            "; counters of the last programs:" if stats["interfaces"] else ""))
        if not stats["interfaces"]:
            return 0
    print(format_stats(stats, describe_all=args.describe))
    return 0


def _reset_stats(args: argparse.Namespace) -> int:
    done = counters.reset(control.firewall_record())
    if done.created is None:
        print("TNA is not attached in this namespace: no counters to reset")
    else:
        print(f"counters reset at {counters.summary(done)['since']} (the kernel's counters, "
              "and Prometheus, keep counting from their creation)")
    return 0


def format_stats(stats: dict[str, Any], describe_all: bool = False) -> str:
    since = stats["since"]
    lines = [f"since {since} ({'reset' if stats['reset'] else 'created'})" if since else
             "TNA has no counters in this namespace",
             f"forwarded (routed) {stats['forwarded_packets']} packets "
             f"({stats['forwarded_bytes']} bytes), bridged {stats['bridged_packets']} packets "
             f"({stats['bridged_bytes']} bytes), dropped by forward-hook rules "
             f"{stats['dropped_packets']}, punted {stats['punted_packets']} to Linux"]
    rows = list(stats["interfaces"].items())
    if "unknown_ingress" in stats:
        rows.append(("(no entry)", stats["unknown_ingress"]))
    for ifname, s in rows:
        reasons = ", ".join(f"{k}={v}" for k, v in s["punt_reasons"].items() if v)
        lines.append(f"  {ifname:<12} forwarded {s['forwarded_packets']:>10}  bridged "
                     f"{s['bridged_packets']:>10}  transmitted {s['transmitted_packets']:>10}  "
                     f"punted {s['punted_packets']:>8}" + (f"  ({reasons})" if reasons else ""))
    for r in stats["firewall_rules"]:
        lines.append(f"  rule {r['rule']}: {r['packets']} packets ({r['bytes']} bytes) "
                     f"{r.get('stale', 'accepted or dropped by the fast path')}")
    if "tcp_liberal" in stats:
        lines.append(format_tcp_liberal(stats["tcp_liberal"]))
    legend = stats["legend"]
    if legend:
        lines.append("all counters:" if describe_all else "legend:")
        width = max(len(n) for n in legend)
        for name, d in legend.items():
            setting = f"  [setting: {d['setting']}]" if d["setting"] else ""
            lines.append(f"  {name:<{width}}  {d['description']}{setting}")
    return "\n".join(lines)


def format_tcp_liberal(s: dict[str, Any]) -> str:
    daemon = s["daemon"]
    marks = (f"the daemon marked {daemon.get('marked', 0)} connection(s) liberal, closed "
             f"{daemon.get('closed', 0)} reset after fast data "
             f"({daemon.get('gone', 0)} gone before, {daemon.get('failed', 0)} failed)"
             if daemon is not None else "no 'tna run' marks or closes them")
    return (f"tcp-liberal: {s['requested']} requests for connections the fast path would carry "
            f"or reset after fast data ({s['lost']} lost to a full ring); {marks}")


def firewall_rule_stats(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Per netfilter rule: what the fast path accepted or dropped under it, named from the
    record the last reconciliation wrote with the tables (``control.firewall_record``): nothing
    is compiled again."""
    return counters.rule_rows(control.firewall_record())


def collect_stats(describe_all: bool = False) -> dict[str, Any]:
    """The ``tna stats --json`` object: since when, totals, per interface, legend."""
    return counters.summary(counters.read(), describe_all=describe_all)


def _ifname(ifindex: int) -> str:
    if ifindex == 0:
        return "(unknown)"
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"ifindex{ifindex}"


def cmd_top(args: argparse.Namespace) -> int:
    _period("--interval", args.interval)
    if args.iterations is not None and args.iterations < 1:
        raise UsageError("--iterations must be at least 1")
    if args.all and args.netns:
        raise UsageError("top: give --netns or --all, not both")
    from tna import top  # rich only where it is used

    return top.run(args.all, args.interval, 1 if args.once else args.iterations)


def cmd_monitor(args: argparse.Namespace) -> int:
    from tna import monitor

    if args.count is not None and args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.rate is not None and not 1 <= args.rate < 1 << 32:
        raise UsageError("--rate must be at least 1")
    ifindex = 0
    if args.interface:
        try:
            ifindex = socket.if_nametoindex(args.interface)
        except OSError:
            raise UsageError(f"no interface {args.interface} in this namespace") from None
    try:
        return monitor.run(drops=args.drops, ifindex=ifindex, count=args.count,
                           as_json=args.json, rate=args.rate or monitor.DEFAULT_RATE)
    except monitor.MonitorError as e:
        raise UsageError(str(e)) from None


def cmd_explain(args: argparse.Namespace) -> int:
    from tna import explain

    try:
        spec = explain.parse(args.packet, ttl=args.ttl, size=args.size, tcp_flags=args.tcp_flags,
                             src_mac=args.src_mac, dst_mac=args.dst_mac,
                             bad_ip_csum=args.bad_ip_csum or None,
                             bad_l4_csum=args.bad_l4_csum or None)
        doc = explain.explain(args.ingress, spec, control.firewall_record())
    except (explain.BadPacket, explain.NotAttached) as e:
        raise UsageError(str(e)) from None
    if args.json:
        _print_json(doc)
    else:
        print(explain.format_text(doc))
    return 0


def cmd_detach(args: argparse.Namespace) -> int:
    with _own("detach") as lock:  # the watcher hands over first: it would follow the detach
        n = control.detach()
        lock.forget()  # nothing left to own: no lock file either
    counters.forget_reset()  # the counters are gone, and their zero point with them
    if args.json:
        _print_json({"detached": n})
        return 0
    print(f"detached TNA from {n} interface(s); the kernel forwards alone")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from tna import bench

    return bench.main(args.bench_args)


def cmd_demo(args: argparse.Namespace) -> int:
    from tna import demo

    return demo.run()


# ---- output formatting ----------------------------------------------------------------------

# Names for the kernel's numbers, as `ip -j` prints them (iproute2's rt_scopes, rt_tables and
# rt_protos); numbers without a name stay numbers.
FAMILY_NAMES = {0: "unspec", 2: "inet", 7: "bridge", 10: "inet6"}
SCOPE_NAMES = {0: "global", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
TABLE_NAMES = {0: "unspec", 253: "default", 254: "main", 255: "local"}
PROTOCOL_NAMES = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 8: "gated",
                  9: "ra", 10: "mrt", 11: "zebra", 12: "bird", 13: "dnrouted", 14: "xorp",
                  15: "ntk", 16: "dhcp", 17: "mrouted", 18: "keepalived", 42: "babel",
                  99: "openr", 186: "bgp", 187: "isis", 188: "ospf", 189: "rip", 192: "eigrp"}
_NAMED_FIELDS = {"family": FAMILY_NAMES, "scope": SCOPE_NAMES, "table": TABLE_NAMES,
                 "protocol": PROTOCOL_NAMES}
_NAMED_SECTIONS = ("addresses", "routes", "rules", "neighbours", "xfrm_policies")


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """``tna show --json``: the snapshot with names where ``ip -j`` prints names."""
    doc = snap.to_dict()
    for section in _NAMED_SECTIONS:
        for entry in doc.get(section, ()):
            for key, names in _NAMED_FIELDS.items():
                if isinstance(entry.get(key), int):
                    entry[key] = names.get(entry[key], entry[key])
    return doc


def apply_json(plan: Plan, changes: Changes, watcher_pid: int | None
               ) -> dict[str, Any]:
    """``tna apply --json``: what was attached where, and whether it can forward anything.

    ``forwards`` is false when programs were attached but no interface may transmit what they
    would forward (no egress target, e.g. veth peers without GRO or XDP): every packet then
    goes to Linux, which a script must be able to tell from success."""
    interfaces = [{"ifname": i.ifname, "ifindex": i.ifindex,
                   "features": i.features.names() if i.features else None, "egress": i.egress,
                   "slow_path": [dataclasses.asdict(s) for s in i.slow_path]}
                  for i in plan.interfaces]
    attached = any(i.features is not None for i in plan.interfaces)
    return {"attached": attached,
            "forwards": attached and any(i.egress for i in plan.interfaces if not i.bridge),
            "interfaces": interfaces,
            "slow_path": [dataclasses.asdict(s) for s in plan.slow_path],
            "changes": {kind: [_ifname(i) for i in ifs]
                        for kind, ifs in changes.by_kind().items()},
            "watcher_pid": watcher_pid}


# ---- text formatting -------------------------------------------------------------------------

def format_snapshot(snap: Snapshot) -> str:
    lines = [f"namespace {snap.netns or '(current)'}  kernel {snap.kernel}",
             f"forwarding: ipv4={'on' if snap.sysctls.ipv4_forwarding else 'off'} "
             f"ipv6={'on' if snap.sysctls.ipv6_forwarding else 'off'}", "links:"]
    for lk in snap.links:
        xdp = f" xdp={lk.xdp.prog_id}({lk.xdp.mode}{',tna' if lk.xdp.ours else ''})" \
            if lk.xdp else ""
        qd = f" qdisc={lk.qdisc.kind}{'' if lk.qdisc.default else '(custom)'}" if lk.qdisc else ""
        master = snap.link(lk.master) if lk.master else None
        lines.append(f"  {lk.ifindex:>3} {lk.ifname:<12} {lk.kind or 'phys':<7} {lk.operstate:<8}"
                     f" mtu {lk.mtu:<5} {lk.address}{xdp}{qd}"
                     + (f" master={master.ifname}" if master else ""))
    lines.append(f"addresses: {len(snap.addresses)}  routes: {len(snap.routes)}  "
                 f"rules: {len(snap.rules)}  neighbours: {len(snap.neighbours)}")
    for chain in snap.netfilter:
        hook = f" hook {chain.hook}" if chain.hook else ""
        lines.append(f"netfilter: {chain.source} {chain.family} {chain.table} {chain.name}"
                     f"{hook} ({len(chain.rules)} rules)")
    for pol in snap.xfrm_policies:
        lines.append(f"xfrm policy: dir {pol.direction} {pol.selector}")
    return "\n".join(lines)


def format_plan(plan: Plan, guidance: doctor.Guidance | None = None) -> str:
    """The plan per interface; with ``guidance``, each interface's expected fast-path share
    and under each slow-path reason the command that lifts it."""
    lines = []

    def fix_lines(ifname: str, s: SlowPath, indent: str) -> list[str]:
        f = guidance.fix_for(ifname, s) if guidance else None
        return ([f"{indent}fix: {f.fix}"] if f and f.fix else []) + (
            [f"{indent}note: {f.caveat}"] if f and f.caveat else [])
    for s in plan.slow_path:
        lines.append(f"slow path: {s.traffic}: {s.reason} ({s.detail})")
        lines += fix_lines("", s, "    ")
    for i in plan.interfaces:
        feats = ", ".join(i.features.names()) if i.features else "none (left to Linux)"
        lines.append(f"{i.ifname}: fast path: {feats}; egress target: "
                     f"{'yes' if i.egress else 'no'}")
        share = guidance.shares.get(i.ifname) if guidance else None
        if share is not None:
            lines.append(f"    expected fast-path share: {share.text()}")
        for s in i.slow_path:
            lines.append(f"    slow path: {s.traffic}: {s.reason} ({s.detail})")
            lines += fix_lines(i.ifname, s, "        ")
        for f in share.findings if share else ():
            if f.reason == "l4_csum":  # not a plan reason: found by the guidance
                lines.append(f"    slow path: {doctor.local_senders(i.ifname)}: l4_csum "
                             f"({f.detail})")
                lines += [f"        fix: {f.fix}"] if f.fix else []
    return "\n".join(lines)
