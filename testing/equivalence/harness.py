"""Run a scenario with TNA off and with TNA on, and compare what every host received.

Role in the equivalence suite: the property itself.  For one scenario and one corpus:

1. build the scenario from scratch (fresh namespaces: no state from an earlier run);
2. TNA off: nothing attached.  TNA on: in every namespace under test, snapshot, plan and
   reconcile as ``tna apply`` does (``control.apply``), optionally with a different BPF object
   (the deliberately broken builds);
3. open AF_PACKET captures on every host interface, wait until the network is quiet and
   forget anything captured so far (announcements of the setup itself);
4. send the corpus in order from a thread pinned to one CPU; after each burst (consecutive
   frames of one sender with the same ``CorpusFrame.burst``), send its marker, wait for the
   marker's echo, then for ``FENCE_QUIET`` without traffic (the fence: everything sent before
   it has been processed before the next burst starts); a frame's ``idle_before`` lets that
   much time pass first (conntrack timeouts running out);
5. wait until no host received anything for ``QUIET`` seconds (consequences driven by timers:
   address resolution of an unreachable next hop ends 60 ms after it starts), check that no
   capture socket dropped a frame, read the fast-path counters;
6. normalise (only :mod:`testing.equivalence.normalise`), remove the markers, and compare the
   two runs as multisets per receiving interface: every frame, byte for byte, with its count.
   Frames the sender's own veth refused (ENOBUFS: its peer dropped them) are compared too;
7. for a scenario with ``conntrack``: compare the conntrack tables of the namespaces under test
   at the end of the two runs (:mod:`testing.equivalence.ctstate`).

Why a fence *and* a quiet period: the fence alone misses what timers send later; a quiet
period alone would have to be longer than the worst processing delay on a loaded machine.
The fence makes the quiet period only cover the known, short timers.

Why multisets and not sequences: with TNA on, XDP-redirected frames are flushed at the end of
a NAPI poll while punted frames go through the stack at once, and the veth picks its receive
queue by flow hash, so the interleaving of *different* flows legitimately changes.  Linux
promises nothing about it either.  (The order of frames *within* one flow is therefore not
checked either; where a flow's later frames depend on its earlier ones, the NAT
conversations, each step is a burst of its own.)
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from testing.equivalence import ctstate
from testing.equivalence import normalise as norm
from testing.equivalence.capture import Capture, CaptureError, Frame, Injector, pinned_to_one_cpu
from testing.equivalence.corpus import TAG_PREFIX, CorpusFrame
from testing.equivalence.report import format_report
from testing.equivalence.scenarios import MARK, Network, Scenario
from tna import control, liberal
from tna.datapath import status
from tna.netns import entered
from tna.testbed import Testbed

QUIET = 0.15  # s without a frame: over twice the longest timer chain (ARP/ND: 3 x 20 ms)
# After a fence: NAPI may still hold frames of the burst in another receive queue of the same
# port (the veth picks queues by flow hash), or the receiving host's NAPI may not have run yet.
FENCE_QUIET = 0.02
QUIET_TIMEOUT = 10.0
FENCE_TIMEOUT = 5.0
PREFIX = "tnaeq"


@dataclass(frozen=True)
class Mode:
    """How the namespaces under test run: plain Linux, or with TNA (and which object)."""

    label: str
    tna: bool
    obj_path: str | None = None
    # Test-only: runs in the built network after the corpus, before the conntrack snapshot
    # (the positive control of the conntrack comparison changes an entry here).
    tamper: Callable[[Testbed, Network], None] | None = None


OFF = Mode("TNA off", False)
ON = Mode("TNA on", True)


@dataclass
class Run:
    """What one run of a scenario produced."""

    mode: Mode
    frames: list[Frame]  # normalised, markers removed
    raw: list[Frame] = field(default_factory=list)  # as captured, markers removed
    counters: dict[str, int] = field(default_factory=dict)  # fast-path counter -> packets
    slow_path: dict[str, list[str]] = field(default_factory=dict)  # ns role -> plan reasons
    normalised: Counter[str] = field(default_factory=Counter)  # normalisation -> frames
    context: norm.Context = field(default_factory=lambda: norm.context([]))
    refused: dict[str, str] = field(default_factory=dict)  # corpus frame -> send error
    conntrack: list[ctstate.Entry] | None = None  # the router's table at the end
    seconds: float = 0.0

    @property
    def forwarded(self) -> int:
        return self.counters.get("forwarded", 0)


@dataclass(frozen=True)
class Difference:
    """Frames of one kind that one run received more often than the other."""

    host: str
    ifname: str
    data: bytes
    count_a: int
    count_b: int


@dataclass
class Comparison:
    scenario: str
    a: Run
    b: Run
    corpus: Sequence[CorpusFrame]
    differences: list[Difference]
    seed: int | None = None
    ct_differences: list[ctstate.EntryDifference] = field(default_factory=list)

    @property
    def refused_differently(self) -> bool:
        return self.a.refused != self.b.refused

    @property
    def equal(self) -> bool:
        return not self.differences and not self.refused_differently and not (
            self.ct_differences)

    def report(self) -> str:
        text = format_report(self, origins)
        if self.ct_differences:
            text += "\n" + ctstate.format_differences(self.ct_differences, self.a.mode.label,
                                                      self.b.mode.label)
        return text


class EquivalenceError(AssertionError):
    """TNA changed what Linux does; the message is the readable diff."""


# ---- one run -----------------------------------------------------------------------------------

def _local_routes(bed: Testbed, ns: str) -> list[str]:
    """Destinations of the ``local`` routes: every address the stack may send from."""
    out = []
    for family in ("-4", "-6"):
        out += json.loads(bed.run(ns, "ip", "-j", family, "route", "show", "table", "local",
                                  "type", "local").stdout or "[]")
    return [r["dst"] for r in out]


def _apply(ns: str, mode: Mode, followed: bool = False) -> list[str]:
    """Attach TNA in ``ns`` as ``tna apply`` would (``followed``: as ``tna run``'s
    reconciliation does); return the plan's slow-path reasons."""
    with entered(ns):
        plan = control.apply(ns, control.new_datapath(obj_path=mode.obj_path),
                             followed=followed).plan
    reasons = [f"{s.traffic}: {s.reason}" for s in plan.slow_path]
    reasons += [f"{s.traffic}: {s.reason}" for i in plan.interfaces for s in i.slow_path]
    return reasons


@contextlib.contextmanager
def _marker(ns: str) -> Iterator[liberal.Marker]:
    """The daemon's marker thread (tna.liberal), started in ``ns`` as 'tna run' starts it."""
    with entered(ns):
        marker = liberal.Marker()
        marker.start()  # the thread stays in the namespace it was started in
    try:
        marker.wake()
        yield marker
    finally:
        marker.stop()


def _counters(ns: str) -> dict[str, int]:
    with entered(ns):
        rows = status.read_counters()
    total: Counter[str] = Counter()
    for row in rows.values():
        for name, c in row.items():
            total[name] += c.packets
    return dict(total)


def _send(frames: Sequence[CorpusFrame], net: Network, cap: Capture, inj: Injector
          ) -> dict[str, str]:
    """The corpus in order; each sender's burst is fenced by its marker.

    Returns the frames the sender's own interface refused to transmit, with the error: a
    veth reports a frame its peer dropped (too big for the peer's MTU, a full ring) as
    ENOBUFS.  That is observable behaviour too, so it is compared like a received frame.
    """
    refused: dict[str, str] = {}
    with pinned_to_one_cpu():
        for seq, ((host, _), burst) in enumerate(itertools.groupby(
                frames, key=lambda f: (f.host, f.burst))):
            for i, f in enumerate(burst):
                if i == 0 and f.idle_before:
                    _idle(cap, f.idle_before)
                try:
                    inj.send(host, f.data)
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise CaptureError(f"cannot send {f.name} ({len(f.data)} bytes): "
                                           f"{e}") from e
                    refused[f.name] = errno.errorcode[e.errno]
            marker = net.marker(host, seq)
            inj.send(host, marker.frame)
            cap.wait_until(lambda got, m=marker: any(  # type: ignore[misc]
                m.token in f.data and f.host == m.echo_host for f in got),
                FENCE_TIMEOUT, f"the fence of {host} (burst {seq})")
            cap.wait_quiet(FENCE_QUIET, QUIET_TIMEOUT)
    return refused


def _idle(cap: Capture, seconds: float) -> None:
    """Let ``seconds`` pass without sending (conntrack timeouts running out), still reading
    the captures.  The one wait that is not a poll for a condition: the passage of time is
    what the scenario tests, and it only has to be long enough (the scenario's timeouts are
    set to leave a margin of at least a second either way)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        cap.poll(left)


def run(scenario: Scenario, frames: Sequence[CorpusFrame], mode: Mode) -> Run:
    """Build ``scenario`` from scratch, send ``frames``, return what the hosts received."""
    start = time.monotonic()
    result = Run(mode, [])
    with Testbed(prefix=PREFIX) as bed:
        net = scenario.build(bed)
        local = [a for ns in net.tna_namespaces.values() for a in _local_routes(bed, ns)]
        if mode.tna:
            for role, ns in net.tna_namespaces.items():
                result.slow_path[role] = _apply(ns, mode, followed=scenario.daemon)
        with contextlib.ExitStack() as daemons:
            if mode.tna and scenario.daemon:  # until the end: a repair may be late
                for ns in net.tna_namespaces.values():
                    daemons.enter_context(_marker(ns))
            with Capture(net.taps) as cap, Injector(net.taps) as inj:
                cap.wait_quiet(QUIET, QUIET_TIMEOUT)
                cap.discard()
                result.refused = _send(frames, net, cap, inj)
                cap.wait_quiet(QUIET, QUIET_TIMEOUT)
                cap.check_drops()
                captured = cap.frames()
        if mode.tamper is not None:
            mode.tamper(bed, net)
        if scenario.conntrack:
            result.conntrack = [e for ns in net.tna_namespaces.values()
                                for e in ctstate.snapshot(ns)]
        if mode.tna:
            for ns in net.tna_namespaces.values():
                for name, packets in _counters(ns).items():
                    result.counters[name] = result.counters.get(name, 0) + packets
    ctx = result.context = norm.context(local)
    for frame in captured:
        if MARK in frame.data:
            continue
        result.raw.append(frame)
        frame, applied = norm.normalise(frame, ctx)
        result.normalised.update(applied)
        result.frames.append(frame)
    result.seconds = time.monotonic() - start
    return result


# ---- comparing ---------------------------------------------------------------------------------

def _key(f: Frame) -> tuple[str, str, int, bytes]:
    return (f.host, f.ifname, f.pkttype, f.data)


def differences(a: Iterable[Frame], b: Iterable[Frame]) -> list[Difference]:
    ca, cb = Counter(map(_key, a)), Counter(map(_key, b))
    out = [Difference(k[0], k[1], k[3], ca[k], cb[k]) for k in ca.keys() | cb.keys()
           if ca[k] != cb[k]]
    return sorted(out, key=lambda d: (d.host, d.ifname, d.data))


def compare(scenario: Scenario, frames: Sequence[CorpusFrame], a: Mode = OFF, b: Mode = ON,
            seed: int | None = None) -> Comparison:
    run_a = run(scenario, frames, a)
    run_b = run(scenario, frames, b)
    ct = (ctstate.differences(run_a.conntrack, run_b.conntrack)
          if run_a.conntrack is not None and run_b.conntrack is not None else [])
    return Comparison(scenario.name, run_a, run_b, frames,
                      differences(run_a.frames, run_b.frames), seed, ct)


def _ipv4_flow(data: bytes) -> bytes | None:
    """Source, destination and ID of an IPv4 frame: what its fragments have in common."""
    if len(data) < 34 or data[12:14] != b"\x08\x00":
        return None
    return data[26:34] + data[18:20]


def origins(data: bytes, frames: Sequence[CorpusFrame]) -> list[str]:
    """The corpus frames that caused ``data``: by tag (ICMP errors quote their cause), else
    by IPv4 source, destination and ID (a fragment after the first carries no tag)."""
    if TAG_PREFIX in data:
        return [f.name for f in frames if f.tag in data]
    flow = _ipv4_flow(data)
    if flow is None:
        return []
    return [f"{f.name} (by IPv4 ID)" for f in frames if _ipv4_flow(f.data) == flow]


def fast_frames(frames: Sequence[CorpusFrame]) -> int:
    return sum(f.fast for f in frames)


def check(scenario: Scenario, frames: Sequence[CorpusFrame] | None = None,
          seed: int | None = None) -> Comparison:
    """The equivalence property for one scenario; raises :class:`EquivalenceError`.

    Besides "no difference", both runs must satisfy the scenario's own expectation (e.g. the
    nft rule took effect), and the TNA-on run must prove it used the fast path (or, where the
    plan leaves everything to Linux, that it did not).
    """
    frames = list(frames if frames is not None else scenario.corpus())
    cmp = compare(scenario, frames, seed=seed)
    if not cmp.equal:
        raise EquivalenceError(cmp.report())
    if scenario.check is not None:
        for r in (cmp.a, cmp.b):
            scenario.check(r.frames)
    expected = fast_frames(frames)
    if scenario.fast_path and cmp.b.forwarded < max(1, expected):
        raise EquivalenceError(
            f"{scenario.name}: positive control failed: the fast path forwarded "
            f"{cmp.b.forwarded} frames, the corpus has {expected} it should forward "
            f"(counters {cmp.b.counters}); a comparison where Linux did all the work proves "
            "nothing")
    if scenario.fast_path is False and cmp.b.forwarded:
        raise EquivalenceError(f"{scenario.name}: the fast path forwarded {cmp.b.forwarded} "
                               "frames where the plan should leave everything to Linux")
    return cmp
