"""Injecting frames into host namespaces and capturing what every host receives.

Role in the equivalence suite: the only module that touches sockets.  Everything runs in this
process: an AF_PACKET socket keeps the network namespace it was created in, so the harness
enters each host's namespace just long enough to open its sockets (``tna.netns.entered``) and
then reads and writes them from the calling thread.  No subprocess, no pcap file.

What a capture records: every frame the host's interface *received* (``PACKET_HOST``,
``BROADCAST``, ``MULTICAST``, ``OTHERHOST``).  The host's own transmissions (``PACKET_OUTGOING``)
are dropped, always, so the sender's capture holds exactly what came back to it (ICMP errors,
redirects, ARP replies).  The interface strips VLAN tags into metadata (rx-vlan-offload); the
tag is put back from ``PACKET_AUXDATA`` so a capture is the frame as it was on the wire.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tna.netns import entered

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
ETH_P_8021Q = 0x8100
# struct tpacket_auxdata: tp_status, tp_len, tp_snaplen, tp_mac, tp_net, tp_vlan_tci, tp_vlan_tpid
_AUXDATA = struct.Struct("=IIIHHHH")
SO_RCVBUFFORCE = 33  # not exported by Python's socket module
RCVBUF = 8 << 20  # far more than a run produces: a full buffer would lose frames silently
MAX_FRAME = 1 << 18  # GSO frames can exceed 64 KiB of payload plus headers
PKTTYPE_NAMES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost"}


@dataclass(frozen=True)
class Tap:
    """One interface of one host to capture on (and to send from)."""

    host: str  # role in the scenario, e.g. "h1"; what diffs print
    netns: str
    ifname: str


@dataclass(frozen=True)
class Frame:
    """One received frame: where it arrived and its bytes as they were on the wire."""

    host: str
    ifname: str
    pkttype: int  # PACKET_HOST, ... (a function of the bytes and the host's MAC)
    data: bytes


class CaptureError(Exception):
    """The capture cannot be trusted (a socket dropped frames, a frame was truncated)."""


@dataclass
class _Socket:
    tap: Tap
    sock: socket.socket
    frames: list[Frame] = field(default_factory=list)


def _open_packet_socket(tap: Tap, protocol: int) -> socket.socket:
    """An AF_PACKET socket in ``tap.netns``, bound to ``tap.ifname`` for ``protocol``."""
    with entered(tap.netns):
        # Protocol 0 at creation: the socket receives nothing until bound to the interface,
        # so frames of other interfaces (lo) never slip in.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            sock.bind((tap.ifname, protocol))
        except OSError:
            sock.close()
            raise
    return sock


def _vlan_restored(data: bytes, ancdata: list[tuple[int, int, bytes]]) -> bytes:
    """Re-insert the 802.1Q/802.1ad tag the device moved into metadata."""
    for level, kind, raw in ancdata:
        if level != SOL_PACKET or kind != PACKET_AUXDATA or len(raw) < _AUXDATA.size:
            continue
        status, _, _, _, _, tci, tpid = _AUXDATA.unpack_from(raw)
        if status & TP_STATUS_VLAN_VALID:
            if not status & TP_STATUS_VLAN_TPID_VALID:
                tpid = ETH_P_8021Q
            return data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data


class Capture:
    """AF_PACKET capture on every tap; open it before the first frame is sent."""

    def __init__(self, taps: Sequence[Tap]) -> None:
        self._socks: list[_Socket] = []
        try:
            for tap in taps:
                sock = _open_packet_socket(tap, ETH_P_ALL)
                self._socks.append(_Socket(tap, sock))
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                sock.setblocking(False)
        except Exception:
            self.close()
            raise
        self._poll = select.poll()
        for s in self._socks:
            self._poll.register(s.sock.fileno(), select.POLLIN)
        self._by_fd = {s.sock.fileno(): s for s in self._socks}

    def close(self) -> None:
        for s in self._socks:
            s.sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading ----------------------------------------------------------------------------

    def _read_one(self, s: _Socket) -> bool:
        try:
            data, ancdata, flags, addr = s.sock.recvmsg(MAX_FRAME, socket.CMSG_SPACE(64))
        except BlockingIOError:
            return False
        if flags & socket.MSG_TRUNC:
            raise CaptureError(f"{s.tap.host}/{s.tap.ifname}: frame larger than {MAX_FRAME}")
        pkttype = addr[2]
        if pkttype != PACKET_OUTGOING:
            s.frames.append(Frame(s.tap.host, s.tap.ifname, pkttype,
                                  _vlan_restored(data, ancdata)))
        return True

    def poll(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for traffic; read everything queued; return count."""
        got = 0
        for fd, _ in self._poll.poll(max(0, int(timeout * 1000))):
            s = self._by_fd[fd]
            while self._read_one(s):
                got += 1
        return got

    def frames(self) -> list[Frame]:
        return [f for s in self._socks for f in s.frames]

    def discard(self) -> None:
        """Forget what was captured so far (background before the corpus)."""
        self.poll(0)
        for s in self._socks:
            s.frames.clear()

    def wait_until(self, predicate: Callable[[list[Frame]], bool], timeout: float,
                   what: str) -> None:
        """Read until ``predicate(frames)`` holds; raise after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate(self.frames()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaptureError(f"timed out after {timeout}s waiting for {what}")
            self.poll(min(left, 0.05))

    def wait_quiet(self, quiet: float, timeout: float) -> float:
        """Read until no frame arrived for ``quiet`` seconds; return the time it took.

        Raises when traffic never stops within ``timeout`` (something keeps transmitting:
        the comparison would depend on when we stopped looking).
        """
        start = time.monotonic()
        last = start
        while True:
            now = time.monotonic()
            if now - last >= quiet:
                return now - start
            if now - start > timeout:
                raise CaptureError(f"traffic did not stop within {timeout}s")
            if self.poll(quiet - (now - last)):
                last = time.monotonic()

    def check_drops(self) -> None:
        """Fail when any socket dropped a frame: an incomplete capture proves nothing."""
        for s in self._socks:
            raw = s.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            _, drops = struct.unpack("=II", raw)  # reading also resets the kernel's counters
            if drops:
                raise CaptureError(f"{s.tap.host}/{s.tap.ifname}: socket dropped {drops} frames")


class Injector:
    """AF_PACKET senders, one per tap, created inside the host namespaces."""

    def __init__(self, taps: Sequence[Tap]) -> None:
        self._socks: dict[str, socket.socket] = {}
        try:
            for tap in taps:
                self._socks[tap.host] = _open_packet_socket(tap, 0)
        except Exception:
            self.close()
            raise

    def send(self, host: str, frame: bytes) -> None:
        sent = self._socks[host].send(frame)
        if sent != len(frame):
            raise CaptureError(f"{host}: sent {sent} of {len(frame)} bytes")

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def pinned_to_one_cpu() -> Iterator[None]:
    """Run the block on one CPU.

    A frame sent into a veth without NAPI is queued on the *sending* CPU's backlog; a thread
    that migrated between two sends could have its frames processed out of order on two CPUs.
    Pinned, the order on the wire is the order of the corpus, in both runs.
    """
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
