"""The traffic sources: live XDP frames where the host allows them, real skbs where it does not.

Role in the flow: a background thread, pinned to one CPU and moved into the sender's
namespace, calls ``BPF_PROG_TEST_RUN`` again and again; each call sends frames out of the
sender's veth towards the device under test.  The veth peer's NAPI runs in the softirq of the
same CPU, so source, device under test and sink share that CPU ("serial mode"), which makes
the rate a cost per packet.  Three sources:

``live``  ``bench_gen`` in live-frames mode (``BPF_F_TEST_XDP_LIVE_FRAMES``, kernel >= 5.18):
          every injected frame leaves with XDP_TX.  The cheapest source, but hardened hosts,
          containers and older kernels refuse it (EPERM, EINVAL).
``skb``   ``bench_skbgen``, a SCHED_CLS program run by plain test_run: each run sends
          ``BURST`` clones of the test skb out of the veth with ``bpf_clone_redirect()``.
          Works wherever test_run does; each frame is an skb, which native XDP on a veth first
          converts (copies) into an XDP buffer, and Linux does not (docs/benchmarks.md).
``relay`` the skb source into a veth pair of the sender's own whose far end's XDP program
          (``bench_relay``) redirects every frame on, out of the sender's veth: the device
          under test receives XDP frames, as from the live source; the copy happens on the
          relay, in every mode alike.  Only when asked for (``--source relay``).

``probe_live_frames`` asks the kernel once (a live-frames run of an XDP_DROP program) and
``choose`` picks the source for ``--source auto``.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import subprocess
import threading
import time
from dataclasses import dataclass

from tna import netns
from tna.bench.bpfobj import (
    HDR_LEN,
    MAX_BURST,
    BpfObject,
    GenCfg,
    Link,
    Park,
    RelayCfg,
    SkbGenCfg,
    attach,
    ifindex_of,
)
from tna.bench.frames import Variation
from tna.datapath import libbpf
from tna.datapath.libbpf import LibbpfError

LIVE, SKB, RELAY = "live", "skb", "relay"
SOURCES = (LIVE, SKB, RELAY)
SOURCE_LABEL = {
    LIVE: "live XDP frames (BPF_F_TEST_XDP_LIVE_FRAMES, XDP_TX)",
    SKB: "skbs (bpf_clone_redirect() from a test_run tc program)",
    RELAY: "XDP frames relayed from skbs (bpf_clone_redirect() into a veth pair whose XDP "
           "program redirects them on)",
}
_relays = itertools.count()  # numbers the relays' veth pairs (several share a namespace)
AUTO = "auto"
ENOTSUPP = 524  # the kernel's internal "not supported", which test_run can leak to user space
# What a kernel without (or refusing) live frames answers: the fallback, not an error.
REFUSALS = (errno.EPERM, errno.EOPNOTSUPP, errno.EINVAL, ENOTSUPP)
ERRNO_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP", ENOTSUPP: "ENOTSUPP"}  # not ENOTSUP

BATCH = 64  # live: frames per batch, one xdp_do_flush and one softirq pass per batch
BURST = 32  # skb: clones per program run, softirqs run after each run (local_bh_enable)
REFUSED_CALLS = 3  # skb: calls in a row that end with a burst the veth took none of: an error
CALL_SECONDS = 0.1  # aim for test_run calls this long, so stop() answers quickly
MIN_REPEAT, MAX_REPEAT = 1 << 12, 1 << 22


# ---- choosing a source -----------------------------------------------------------------------

@dataclass(frozen=True)
class Probe:
    """Whether live-frames test_run works here, and in words why (not)."""

    live: bool
    reason: str


def probe_live_frames(frame: bytes) -> Probe:
    """One live-frames test_run of an XDP_DROP program in the current namespace.

    Sends nothing (the program drops its one frame); it only asks the kernel whether the mode
    is allowed.
    """
    obj = BpfObject("bench_sink")
    try:
        libbpf.test_run(obj.prog_fd("bench_nop"), frame, repeat=1,
                        flags=libbpf.BPF_F_TEST_XDP_LIVE_FRAMES)
    except LibbpfError as e:
        if e.errno not in REFUSALS:
            raise
        return Probe(False, refused(e.errno))
    finally:
        obj.close()
    return Probe(True, "live-frames test_run works")


def refused(err: int) -> str:
    """The one-line reason for a refusal, e.g. ``live-frames test_run refused: EPERM``."""
    name = ERRNO_NAMES.get(err) or errno.errorcode.get(err, str(err))
    return f"live-frames test_run refused: {name}"


def choose(requested: str, probe: Probe) -> tuple[str, str]:
    """(source, why) for ``--source requested``; ValueError when ``live`` is asked in vain."""
    if requested == AUTO:
        if probe.live:
            return LIVE, "auto: live frames work here"
        return SKB, f"auto: {probe.reason}"
    if requested == LIVE and not probe.live:
        raise ValueError(f"--source live: {probe.reason}")
    if requested not in SOURCES:
        raise ValueError(f"unknown source {requested!r}; have {AUTO}, {', '.join(SOURCES)}")
    return requested, "requested"


def gen_config(frame: bytes, var: Variation | None) -> GenCfg:
    cfg = GenCfg()
    cfg.hdr[:] = list(frame[:HDR_LEN])
    if var is not None and var.count > 1:
        if len(var.checksums) > len(cfg.csum_off):
            raise ValueError("the generator updates at most two checksums")
        cfg.var_off, cfg.var_count, cfg.var_base = var.offset, var.count, var.base
        cfg.var_step = var.step
        for i, (off, udp) in enumerate(var.checksums):
            cfg.csum_off[i], cfg.csum_udp[i] = off, int(udp)
    return cfg


def skbgen_config(frame: bytes, var: Variation | None, ifindex: int, burst: int = BURST
                  ) -> SkbGenCfg:
    if not 1 <= burst <= MAX_BURST:
        raise ValueError(f"burst {burst} outside 1..{MAX_BURST}")
    return SkbGenCfg(gen=gen_config(frame, var), ifindex=ifindex, burst=burst)


def skb_test_run(prog_fd: int, packet: bytes, repeat: int) -> tuple[int, int]:
    """BPF_PROG_TEST_RUN of a SCHED_CLS program on ``packet``: (last run's return, ns/run)."""
    out = ctypes.create_string_buffer(len(packet) + 512)
    opts = libbpf.TestRunOpts(sz=ctypes.sizeof(libbpf.TestRunOpts))
    opts.data_in = ctypes.cast(ctypes.c_char_p(packet), ctypes.c_void_p)
    opts.data_size_in = len(packet)
    opts.data_out = ctypes.cast(out, ctypes.c_void_p)
    opts.data_size_out = len(out)
    opts.repeat = repeat
    libbpf.check(libbpf.lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)),
                 "bpf_prog_test_run (tc)")
    return opts.retval, opts.duration


# ---- the sources -----------------------------------------------------------------------------

class Generator:
    """The thread that drives a source: ``frame`` (varied by ``var``) out of ``ifname``."""

    kind = ""
    prog_name = ""

    def __init__(self, ns: str, ifname: str, frame: bytes, var: Variation | None,
                 cpu: int) -> None:
        if len(frame) < HDR_LEN:
            raise ValueError(f"frames must be at least {HDR_LEN} bytes")
        self.ns, self.frame, self.var, self.cpu = ns, frame, var, cpu
        with netns.entered(ns):
            self.ifindex = ifindex_of(ifname)
        self.obj: BpfObject | None = None
        self.prog_fd = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._frames = 0  # frames offered by completed calls
        self._busy_ns = 0  # wall time of those calls
        self._repeat = 1 << 12
        self.tid = 0  # the thread's kernel id while it runs (CPU accounting)

    # ---- one call --------------------------------------------------------------------------

    def _send(self, repeat: int) -> int:
        """One test_run call of ``repeat`` runs; the frames it offered."""
        raise NotImplementedError

    def _call(self) -> None:
        repeat = self._repeat
        t0 = time.perf_counter_ns()
        sent = self._send(repeat)
        elapsed = max(time.perf_counter_ns() - t0, 1)
        with self._lock:
            self._frames += sent
            self._busy_ns += elapsed
        # Size the next call from this one's rate.
        wanted = int(repeat * CALL_SECONDS * 1e9 / elapsed)
        self._repeat = max(MIN_REPEAT // self.per_run, min(MAX_REPEAT // self.per_run, wanted))

    @property
    def per_run(self) -> int:
        """Frames one program run sends."""
        return 1

    def _loop(self) -> None:
        self.tid = threading.get_native_id()
        try:
            os.sched_setaffinity(0, {self.cpu})  # this thread only
            netns.enter(self.ns)  # this thread only; it ends with the thread
            while not self._stop.is_set():
                self._call()
        except BaseException as e:
            self._error = e

    # ---- control ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("generator already running")
        self._stop.clear()
        self._error = None
        self._thread = threading.Thread(target=self._loop, name="tna-bench-gen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current call; re-raise whatever ended the thread early."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=30)
        alive = self._thread.is_alive()
        self._thread = None
        if alive:
            raise RuntimeError("generator thread did not stop")
        if self._error is not None:
            raise RuntimeError(f"generator failed: {self._error}") from self._error

    def check(self) -> None:
        """Raise at once if the generator thread has died."""
        if self._error is not None:
            raise RuntimeError(f"generator failed: {self._error}") from self._error

    def progress(self) -> tuple[int, int]:
        """(frames offered, ns spent offering them) over completed calls so far."""
        with self._lock:
            return self._frames, self._busy_ns

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self.obj is not None:
                self.obj.close()
                self.obj = None


class LiveGenerator(Generator):
    """Live frames: ``bench_gen`` returns XDP_TX for every frame the kernel injects."""

    kind, prog_name = LIVE, "bench_gen"

    def __init__(self, ns: str, ifname: str, frame: bytes, var: Variation | None,
                 cpu: int, park: Park) -> None:
        super().__init__(ns, ifname, frame, var, cpu)
        self.obj = BpfObject("bench_gen", gen_config(frame, var))
        self.prog_fd = self.obj.prog_fd("bench_gen")
        self._repeat = 1 << 16
        try:
            self.parked: Link | None = park.attach(self.prog_fd)  # else each call waits for RCU
        except Exception:
            self.obj.close()
            raise

    def _send(self, repeat: int) -> int:
        libbpf.test_run(self.prog_fd, self.frame, ingress_ifindex=self.ifindex, repeat=repeat,
                        flags=libbpf.BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=BATCH)
        return repeat

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.parked is not None:
                self.parked.close()
                self.parked = None


class SkbGenerator(Generator):
    """skbs: each run of ``bench_skbgen`` clones the test skb ``burst`` times out of the veth."""

    kind, prog_name = SKB, "bench_skbgen"

    def __init__(self, ns: str, ifname: str, frame: bytes, var: Variation | None,
                 cpu: int, burst: int = BURST) -> None:
        super().__init__(ns, ifname, frame, var, cpu)
        self.burst = burst
        self._refused = 0  # calls in a row whose last burst the veth took none of
        self.obj = BpfObject("bench_skbgen", skbgen_config(frame, var, self.ifindex, burst))
        self.prog_fd = self.obj.prog_fd("bench_skbgen")

    @property
    def per_run(self) -> int:
        return self.burst

    def _send(self, repeat: int) -> int:
        sent, _ = skb_test_run(self.prog_fd, self.frame, repeat)
        # test_run reports the last run: a burst can meet a full veth ring now and then (the
        # relay's, while softirqs wait for ksoftirqd); calls that all end so mean the veth
        # takes nothing (e.g. it is down): say so instead of measuring nothing
        self._refused = self._refused + 1 if sent == 0 else 0
        if self._refused >= REFUSED_CALLS:
            raise RuntimeError(f"bpf_clone_redirect() sent nothing out of ifindex "
                               f"{self.ifindex}")
        return repeat * self.burst


class RelayGenerator(SkbGenerator):
    """XDP frames from skbs: the skb source sends out of a veth pair of the sender's own
    (``tnarl<n>a`` to ``tnarl<n>b``), whose far end's ``bench_relay`` redirects every frame
    out of ``ifname``, so the device under test receives XDP frames, as from the live source
    (bench_relay.bpf.c)."""

    kind = RELAY

    def __init__(self, ns: str, ifname: str, frame: bytes, var: Variation | None,
                 cpu: int, burst: int = BURST) -> None:
        n = next(_relays)
        near, far = self.pair = (f"tnarl{n}a", f"tnarl{n}b")
        self.relay_ns = ns
        subprocess.run(["ip", "-n", ns, "link", "add", near, "type", "veth", "peer", "name",
                        far], check=True, capture_output=True)
        self.relay: BpfObject | None = None
        self.link: Link | None = None
        try:
            for dev in self.pair:
                subprocess.run(["ip", "-n", ns, "link", "set", dev, "up"], check=True,
                               capture_output=True)
            with netns.entered(ns):
                out = ifindex_of(ifname)
            self.relay = BpfObject("bench_relay", RelayCfg(out))
            self.link = attach(ns, far, self.relay.prog_fd("bench_relay"))
            super().__init__(ns, near, frame, var, cpu, burst)
        except Exception:
            self._remove_relay()
            raise

    def _remove_relay(self) -> None:
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        subprocess.run(["ip", "-n", self.relay_ns, "link", "del", self.pair[0]],
                       check=False, capture_output=True)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._remove_relay()


def make(kind: str, ns: str, ifname: str, frame: bytes, var: Variation | None, cpu: int,
         park: Park) -> Generator:
    """A source of ``kind`` (``live``, ``skb`` or ``relay``) ready to start."""
    if kind == LIVE:
        return LiveGenerator(ns, ifname, frame, var, cpu, park)
    if kind == SKB:
        return SkbGenerator(ns, ifname, frame, var, cpu)
    if kind == RELAY:
        return RelayGenerator(ns, ifname, frame, var, cpu)
    raise ValueError(f"unknown source {kind!r}")
