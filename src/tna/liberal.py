"""``tna run``: the daemon marks the TCP connections the fast path would carry liberal
(``--tcp-liberal``), and closes the entries of liberal connections reset after fast data.

Role in the flow: beside the daemon's reconciliations (:mod:`tna.sync`), an explicit opt-in
that changes Linux's behaviour (docs/stateful.md, "Opt-in: liberal connections").  With window
tracking on, the fast path must hand every segment that moves conntrack's tracked window to
Linux.  The programs planned with ``ct_tcp_liberal`` name each established TCP connection that
only window tracking keeps off the fast path, once the rest of their pipeline said they would
forward it (and already at its handshake's last ACK, so that the mark lands before the data), in
a ring (:mod:`tna.datapath.liberal`); a :class:`Marker` thread reads the ring
and sets ``IP_CT_TCP_FLAG_BE_LIBERAL`` on both directions of the entry through ctnetlink
(:class:`tna.netlink.Conntrack`), as the kernel's flowtable does for the flows it offloads.
From then on the kernel no longer judges the connection's windows and its segments are fast.

The same thread repairs what a liberal connection's fast data leaves behind (docs/stateful.md,
"The RST of a liberal side"): the kernel's tracked window of a side whose data the fast path
forwarded lags, so the kernel no longer recognises that side's RST and keeps the entry
ESTABLISHED where Linux alone would close it.  The programs (with ``ct_liberal_fast``, planned
only under a daemon) name such an entry with a RESET request as the RST goes to Linux; the
marker sets it to CLOSE with the namespace's ``nf_conntrack_tcp_timeout_close``, what Linux
alone would have done.  Whichever of the two runs first, the entry ends CLOSE: an RST in
CLOSE stays CLOSE (and refreshes the same timeout).

Requests never create an entry (no NLM_F_CREATE): one that is gone (ENOENT) is counted and
forgotten.  A connection asked for again within :data:`DEDUP_S` of its mark (segments already
in flight when it was marked) is not sent again.  If the daemon stops or dies, nothing is
marked any more and the segments keep going to Linux: the programs' requests fill the ring and
are lost (counted); connections marked before stay liberal for their lifetime.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from tna import netlink
from tna.datapath.libbpf import LibbpfError
from tna.datapath.liberal import RESET, Request, RequestRing, current_ring_id

POLL_MS = 100  # one ring poll; the stop request is seen this often
RING_CHECK_S = 1.0  # how often the thread checks the programs still write to its ring (and
# at once when woken: the daemon wakes it after every reconciliation)
DEDUP_S = 1.0  # a connection marked this recently is not sent again
# Every segment until the mark goes to Linux: on a busy machine (the transfer's own softirq
# work, in ksoftirqd once it is heavy), an ordinary thread waits long for a CPU. The work is
# bounded (one netlink request per connection, repeats dropped), so the thread runs ahead of
# ordinary tasks as the daemon's sentinel does: SCHED_FIFO, else a lower nice value.
MARKER_RT_PRIORITY = 1
MARKER_NICE = -10
COUNTS = ("marked", "closed", "gone", "failed", "repeated")  # what Marker.counts() says
TIMEOUT_CLOSE = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close"
DEDUP_MAX = 65536  # connections remembered at most


class Marker:
    """A thread that turns the programs' requests into ctnetlink updates.

    ``on_error`` hears what fails other than a gone entry (the daemon logs it).  The thread is
    started after the namespace was entered: its sockets and maps are the namespace's."""

    def __init__(self, on_error: Callable[[str], None] | None = None) -> None:
        self.on_error = on_error or (lambda message: None)
        self.marked = 0  # entries made liberal
        self.closed = 0  # entries closed after their liberal side's RST
        self.gone = 0  # entries that no longer existed (ENOENT)
        self.failed = 0  # other errors
        self.repeated = 0  # requests for a connection marked within DEDUP_S
        self._recent: OrderedDict[Request, float] = OrderedDict()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tna-liberal", daemon=True)
        self._conntrack: netlink.Conntrack | None = None

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Look at once which ring the programs write to (a reconciliation may have loaded
        the first programs, or new ones with new maps)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.ident is not None:
            self._thread.join(timeout=5)

    def counts(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in COUNTS}

    def _run(self) -> None:
        ring: RequestRing | None = None
        checked = 0.0
        _prioritise()
        self._conntrack = netlink.Conntrack()
        try:
            while not self._stop.is_set():
                if self._wake.is_set() or time.monotonic() - checked >= RING_CHECK_S:
                    self._wake.clear()
                    checked = time.monotonic()
                    ring = self._follow(ring)
                if ring is None:
                    self._wake.wait(POLL_MS / 1000)
                    continue
                try:
                    ring.poll(POLL_MS)
                except LibbpfError as e:
                    self.on_error(f"request ring: {e}")
                    ring.close()
                    ring, checked = None, 0.0
        finally:
            if ring is not None:
                ring.close()
            self._conntrack.close()

    def _follow(self, ring: RequestRing | None) -> RequestRing | None:
        """The ring the programs write to now: reconciliations may have made a new one (all
        programs gone and loaded again), or none."""
        try:
            current = current_ring_id()
        except LibbpfError:
            current = None
        if ring is not None and ring.map_id == current:
            return ring
        if ring is not None:
            ring.close()
        if current is None:
            return None
        try:
            return RequestRing(self.handle)
        except LibbpfError as e:
            self.on_error(f"request ring: {e}")
            return None

    def handle(self, req: Request) -> None:
        """One request: mark the entry, or close it, unless that was done a moment ago."""
        now = time.monotonic()
        last = self._recent.get(req)
        if last is not None and now - last < DEDUP_S:
            self.repeated += 1
            return
        self._recent[req] = now
        self._recent.move_to_end(req)
        while len(self._recent) > DEDUP_MAX:
            self._recent.popitem(last=False)
        if self._conntrack is None:
            self._conntrack = netlink.Conntrack()
        closing = req.kind == RESET
        try:
            if closing:
                err = self._conntrack.set_closed(req.family, req.saddr, req.daddr, req.sport,
                                                 req.dport, timeout_close())
            else:
                err = self._conntrack.set_liberal(req.family, req.saddr, req.daddr,
                                                  req.sport, req.dport)
        except OSError as e:
            err = e.errno or errno.EIO
        if err == 0 and closing:
            self.closed += 1
        elif err == 0:
            self.marked += 1
        elif err == errno.ENOENT:
            self.gone += 1
        else:
            self.failed += 1
            what = "closing" if closing else "marking"
            self.on_error(f"{what} {req}{'' if closing else ' liberal'}: "
                          f"{errno.errorcode.get(err, err)}")


def timeout_close() -> int:
    """The calling thread's namespace's nf_conntrack_tcp_timeout_close, in seconds: what
    tcp_packet() gives an entry an RST closes."""
    with open(TIMEOUT_CLOSE) as f:
        return int(f.read())


def _prioritise() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(MARKER_RT_PRIORITY))
    except OSError:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), MARKER_NICE)


def summary(requested_lost: tuple[int, int] | None, daemon: dict[str, Any] | None
            ) -> dict[str, Any] | None:
    """The ``tcp_liberal`` part of ``tna stats``: what the programs asked for and lost (since
    their maps were created), what the running daemon marked and closed (since it started);
    None when neither exists."""
    marks = (daemon or {}).get("tcp_liberal") or (daemon or {}).get("tcp_repair")
    if not any(requested_lost or ()) and marks is None:
        return None
    requested, lost = requested_lost or (0, 0)
    return {"requested": requested, "lost": lost, "daemon": marks}
