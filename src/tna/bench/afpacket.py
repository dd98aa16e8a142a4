"""``python -m tna.bench.afpacket``: the skb source against AF_PACKET, the other source that
needs no live frames, measured into the same sink (why ``tna bench`` uses the skb source).

Role in the flow: a one-off comparison, not part of ``tna bench``.  In a throw-away namespace
pair joined by a veth, with ``bench_sink`` (XDP_DROP + counter) on the far end, it measures in
turn, pinned to one CPU: the skb source (``bpf_clone_redirect()`` from a test_run tc program)
and an AF_PACKET socket with ``PACKET_QDISC_BYPASS`` sending 1024 frames per ``sendmmsg()``.
Delivered Mpps of each, interleaved ``--rounds`` times.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence
from errno import ENOBUFS

from tna import netns
from tna.bench import frames
from tna.bench.bpfobj import Sink
from tna.bench.generator import SkbGenerator
from tna.testbed import Testbed

SOL_PACKET, PACKET_QDISC_BYPASS = 263, 20  # linux/if_packet.h
VLEN = 1024  # frames per sendmmsg(); UIO_MAXIOV


class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                ("iov", ctypes.POINTER(IoVec)), ("iovlen", ctypes.c_size_t),
                ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


def _afpacket(ns: str, ifname: str, frame: bytes, cpu: int, stop: threading.Event) -> None:
    """Send ``frame`` out of ``ifname`` until ``stop``, VLEN frames per sendmmsg()."""
    os.sched_setaffinity(0, {cpu})
    netns.enter(ns)  # this thread only
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(frame, len(frame))
    iov = IoVec(ctypes.cast(buf, ctypes.c_void_p), len(frame))
    msgs = (MMsgHdr * VLEN)()
    for m in msgs:
        m.hdr.iov, m.hdr.iovlen = ctypes.pointer(iov), 1
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        s.bind((ifname, 0))
        while not stop.is_set():
            # ENOBUFS: the veth dropped one (its peer's ring was full); go on like a sender
            if libc.sendmmsg(s.fileno(), msgs, VLEN, 0) < 0 and ctypes.get_errno() != ENOBUFS:
                raise OSError(ctypes.get_errno(), "sendmmsg")


def _window(sink: Sink, warmup: float, seconds: float) -> float:
    time.sleep(warmup)
    c0, t0 = sink.packets(), time.perf_counter()
    time.sleep(seconds)
    return (sink.packets() - c0) / (time.perf_counter() - t0) / 1e6


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m tna.bench.afpacket", description=__doc__)
    p.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    spec = frames.FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.0.2")
    frame = frames.build(spec)
    with Testbed(prefix="tnabafp") as bed:
        src, dst = bed.ns("src"), bed.ns("dst")
        bed.veth(src, "eth0", dst, "eth0")
        sink = Sink(dst, "eth0")
        try:
            for r in range(args.rounds):
                gen = SkbGenerator(src, "eth0", frame, None, args.cpu)
                gen.start()
                try:
                    skb = _window(sink, 0.5, args.seconds)
                finally:
                    gen.close()
                stop = threading.Event()
                t = threading.Thread(target=_afpacket, args=(src, "eth0", frame, args.cpu, stop),
                                     daemon=True)
                t.start()
                try:
                    afp = _window(sink, 0.5, args.seconds)
                finally:
                    stop.set()
                    t.join(timeout=10)
                print(f"round {r + 1}: skb source {skb:.2f} Mpps, AF_PACKET (qdisc bypass, "
                      f"sendmmsg x{VLEN}) {afp:.2f} Mpps delivered")
        finally:
            sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
