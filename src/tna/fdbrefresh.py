"""``tna fdb-refresh``: keeps the bridge FDB mirror current after ``tna apply``.

Role in the flow: a driver of the control function's FDB part (:mod:`tna.control`) for the
time no daemon runs: ``tna apply`` starts it in the background when the plan accelerates a
bridge; ``tna run`` stops it and drives the mirror itself.  It follows FDB and link
notifications, resyncs and refreshes the kernel's ageing on a timer, and exits when TNA is
detached (its pins are gone), when the named namespace is deleted, when no accelerated bridge
is left, or on SIGTERM.

One refresher per namespace: it holds an exclusive lock on its pidfile for its whole life, so
the lock (not the process table) says whether one runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
import time

from tna import control, netlink, netns, owner
from tna.datapath.fdb import FdbMirror, mirrored_bridges
from tna.datapath.pins import pinned

RTNLGRP_LINK, RTNLGRP_NEIGH = 1, 3


def pidfile() -> str:
    return os.path.join(control.STATE_DIR, f"ns{netns.cookie()}.fdb-refresher.pid")


def running_refresher() -> int | None:
    """The pid of this namespace's refresher, if one runs (it holds its pidfile's lock)."""
    try:
        fd = os.open(pidfile(), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # locked: the refresher is alive
            pid = os.read(fd, 32).strip()
            return int(pid) if pid.isdigit() and int(pid) else None
        return None  # nobody holds it: a stale file
    finally:
        os.close(fd)


def _lock_pidfile() -> int | None:
    """The pidfile, open and exclusively locked; None when a live refresher holds it."""
    owner.state_dir()
    fd = os.open(pidfile(), os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(5):  # running_refresher() may hold a shared lock for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            time.sleep(0.02)
    os.close(fd)
    return None


def ensure_refresher(netns_name: str) -> int:
    """Start ``tna fdb-refresh`` in the background unless one runs here; return its pid."""
    pid = running_refresher()
    if pid:
        return pid
    argv = [sys.executable, "-m", "tna", *(["--netns", netns_name] if netns_name else []),
            "fdb-refresh"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc.pid


def stop_refresher() -> None:
    """For ``tna run`` and ``tna detach``: the daemon drives the mirror itself."""
    pid = running_refresher()
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


class _Stop(Exception):
    """SIGTERM: leave the loop at once (select() would otherwise be resumed)."""


def _on_term(signum: int, frame: object) -> None:
    raise _Stop


class Refresher:
    """Follows FDB and link notifications, resyncs and refreshes on a timer."""

    def __init__(self, netns_name: str = "", interval: float | None = None) -> None:
        self.netns_name = netns_name
        self.fixed_interval = interval
        self.mirror = FdbMirror()
        self.bridges: set[int] = set()
        self.stop = False
        self.refreshed = 0

    def _should_exit(self) -> bool:
        if self.stop:
            return True
        if self.netns_name and not os.path.exists(os.path.join(netns.NETNS_RUN_DIR,
                                                               self.netns_name)):
            return True
        return not all(pinned(n) for n in ("tna_ifaces", "tna_fdb", "tna_brports"))

    def resync(self) -> None:
        """The bridges the last reconciliation mirrored, their ports as the kernel has them
        now, their FDB from a fresh dump, and the kernel's ageing refreshed."""
        self.bridges = mirrored_bridges()
        self.mirror.sync_ports(control.current_ports(self.bridges))
        if self.bridges:
            self.refreshed += len(control.refresh_fdb(self.mirror, self.bridges))
        else:
            self.mirror.full_sync((), self.bridges)

    def run(self, once: bool = False) -> int:
        lock = _lock_pidfile()
        if lock is None:
            return 0  # another refresher keeps this namespace's mirror
        os.ftruncate(lock, 0)
        os.write(lock, str(os.getpid()).encode())
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _on_term)
        # subscribed before the first dump: nothing slips by
        events = netlink.Subscription(netlink.NETLINK_ROUTE, (RTNLGRP_LINK, RTNLGRP_NEIGH))
        try:
            while not self._should_exit():
                try:
                    self.resync()
                except OSError:
                    if self._should_exit():
                        break
                    raise
                if once or not self.bridges:
                    break
                interval = self.fixed_interval or control.refresh_interval(self.bridges)
                deadline = time.monotonic() + interval
                while not self.stop and time.monotonic() < deadline:
                    ready, _, _ = select.select([events], [], [], deadline - time.monotonic())
                    if ready and self._follow(events):
                        break  # overrun: resync at once
        except _Stop:
            pass
        finally:
            events.close()
            with contextlib.suppress(OSError):
                os.unlink(pidfile())  # still under our lock: nobody else wrote it
            os.close(lock)
        return 0

    def _follow(self, events: netlink.Subscription) -> bool:
        """Apply what arrived; True when notifications were lost (resync needed)."""
        received, overrun = events.receive()
        if overrun:
            return True
        links_changed = False
        for kind, body in received:
            if kind in (netlink.RTM_NEWLINK, netlink.RTM_DELLINK):
                links_changed = True
            else:
                try:
                    control.follow_fdb(self.mirror, kind, body, self.bridges)
                except OSError:
                    return True  # maps gone or replaced: resync (or exit)
        if links_changed:
            try:
                self.bridges = mirrored_bridges()
                self.mirror.sync_ports(control.current_ports(self.bridges))
            except OSError:
                return True
        return False
