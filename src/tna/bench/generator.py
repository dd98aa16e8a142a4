"""The traffic generator: BPF_PROG_TEST_RUN live frames, XDP_TX out of the sender's veth.

Role in the flow: a background thread, pinned to one CPU and moved into the sender's
namespace, calls ``test_run`` in live-frames mode again and again; every frame the kernel
injects runs ``bench_gen`` (which rewrites its header from the template) and leaves the veth
with XDP_TX.  The veth peer's NAPI runs in the softirq of the same CPU, so generator, device
under test and sink share that CPU ("serial mode"), which makes the rate a cost per packet.
"""

from __future__ import annotations

import os
import threading
import time

from tna import netns
from tna.bench.bpfobj import HDR_LEN, BpfObject, GenCfg, Park, ifindex_of
from tna.bench.frames import Variation
from tna.datapath import libbpf

BATCH = 64  # frames per live-frames batch: one xdp_do_flush, one softirq pass per batch
CALL_SECONDS = 0.1  # aim for test_run calls this long, so stop() answers quickly
MIN_REPEAT, MAX_REPEAT = 1 << 12, 1 << 22


def gen_config(frame: bytes, var: Variation | None) -> GenCfg:
    cfg = GenCfg()
    cfg.hdr[:] = list(frame[:HDR_LEN])
    if var is not None and var.count > 1:
        if len(var.checksums) > len(cfg.csum_off):
            raise ValueError("the generator updates at most two checksums")
        cfg.var_off, cfg.var_count, cfg.var_base = var.offset, var.count, var.base
        for i, (off, udp) in enumerate(var.checksums):
            cfg.csum_off[i], cfg.csum_udp[i] = off, int(udp)
    return cfg


class Generator:
    """Sends ``frame`` (varied by ``var``) out of ``ifname`` in ``ns`` from CPU ``cpu``."""

    def __init__(self, ns: str, ifname: str, frame: bytes, var: Variation | None,
                 cpu: int, park: Park) -> None:
        if len(frame) < HDR_LEN:
            raise ValueError(f"frames must be at least {HDR_LEN} bytes")
        self.ns, self.frame, self.cpu = ns, frame, cpu
        with netns.entered(ns):
            self.ifindex = ifindex_of(ifname)
        self.obj = BpfObject("bench_gen", gen_config(frame, var))
        self.prog_fd = self.obj.prog_fd("bench_gen")
        try:
            self.parked = park.attach(self.prog_fd)  # else every call waits for RCU
        except Exception:
            self.obj.close()
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._frames = 0  # frames injected by completed calls
        self._busy_ns = 0  # kernel time of those calls
        self._repeat = 1 << 16
        self.tid = 0  # the thread's kernel id while it runs (CPU accounting)

    # ---- one call --------------------------------------------------------------------------

    def _call(self) -> None:
        repeat = self._repeat
        t0 = time.perf_counter_ns()
        libbpf.test_run(self.prog_fd, self.frame, ingress_ifindex=self.ifindex, repeat=repeat,
                        flags=libbpf.BPF_F_TEST_XDP_LIVE_FRAMES, batch_size=BATCH)
        elapsed = max(time.perf_counter_ns() - t0, 1)
        with self._lock:
            self._frames += repeat
            self._busy_ns += elapsed
        # Size the next call from this one's rate.
        wanted = int(repeat * CALL_SECONDS * 1e9 / elapsed)
        self._repeat = max(MIN_REPEAT, min(MAX_REPEAT, wanted))

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
        """(frames injected, ns spent injecting them) over completed calls so far."""
        with self._lock:
            return self._frames, self._busy_ns

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.parked.close()
            self.obj.close()
