"""One owner per namespace, known by the kernel: an exclusive ``flock`` on
``/run/tna/ns<cookie>.lock``.

Role in the flow: every writer of a namespace's fast path holds this lock while it writes — the
daemon (``tna run``) and the watcher ``tna apply`` leaves (``tna watch``) for their whole life,
``tna apply`` and ``tna detach`` for one command (taking over from a watcher, see :func:`acquire`).
Liveness *is* the lock: the kernel drops it when its holder exits, however it exits (SIGKILL
included), so no PID check, stale file or reused PID can make a dead owner look alive or a live
one look dead.  The holder writes who it is into the file (``{"pid", "role"}``) for ``tna
status`` and error messages; that record decides nothing.  ``/run/tna`` is a directory only
root controls (:mod:`tna.rootdir`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from tna import netns, rootdir

STATE_DIR = "/run/tna"


class Busy(Exception):
    """Another process owns the namespace; ``holder`` is its record (may be empty)."""

    def __init__(self, holder: dict[str, Any]) -> None:
        self.holder = holder
        who = (f"tna {holder.get('role', '?')} (pid {holder['pid']})" if holder.get("pid")
               else "another tna process")
        super().__init__(f"{who} already manages this namespace")


def state_dir() -> str:
    """``/run/tna``, created 0700 and checked (see :mod:`tna.rootdir`)."""
    return rootdir.ensure(STATE_DIR)


def lock_path() -> str:
    return os.path.join(STATE_DIR, f"ns{netns.cookie()}.lock")


@dataclass
class Lock:
    """The namespace's lock, held until :meth:`release` or the process's exit."""

    fd: int

    def forget(self) -> None:
        """Remove the lock file, still holding it: nothing of TNA is left in the namespace.
        A waiter that then gets the old file sees it is no longer at its path and retries."""
        if self.fd >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path())
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(role: str, wait: float = 0.0, take_over: Collection[str] = (),
            refuse: Collection[str] = ("run",)) -> Lock:
    """Take the namespace's exclusive lock as ``role`` ("run", "watch", "apply", "detach").

    ``wait`` seconds are granted to a brief holder (another ``apply``), never to a holder
    whose role is in ``refuse`` (a daemon): :class:`Busy` at once then.  A holder whose role
    is in ``take_over`` (the watcher ``tna apply`` leaves) is asked to hand over — ``SIGUSR1``:
    it pins its links and exits, which releases the lock — and waited for."""
    state_dir()
    deadline = time.monotonic() + wait
    signalled: set[int] = set()
    while True:
        fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            record = holder() or {}
            if record.get("role") in refuse or time.monotonic() >= deadline:
                raise Busy(record) from None
            pid = record.get("pid")
            if record.get("role") in take_over and pid and pid not in signalled:
                signalled.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)  # the kernel's holder, not a file's word
            time.sleep(0.02)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd):
            break
        os.close(fd)  # a holder removed the file (:func:`Lock.forget`) meanwhile: again
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "role": role}).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return Lock(fd)


def _same_file(fd: int) -> bool:
    try:
        path = os.lstat(lock_path())
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (path.st_dev, path.st_ino)


def holder() -> dict[str, Any] | None:
    """Who holds the namespace's lock now, or None when nobody does: the pid is the kernel's
    (``/proc/locks``); the role comes from the holder's record when the record is its own.
    Takes no lock itself, so looking never gets in an owner's way."""
    try:
        st = os.lstat(lock_path())
    except OSError:
        return None
    pid = _lock_pid(st)
    if pid is None:
        return None
    for _ in range(20):  # the holder writes its record right after taking the lock
        record = _read_record()
        if record.get("pid") == pid:
            return {"pid": pid, "role": record.get("role")}
        time.sleep(0.005)
    return {"pid": pid, "role": None}


def _lock_pid(st: os.stat_result) -> int | None:
    """The pid holding a flock on the file ``st`` describes, from /proc/locks."""
    ident = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            # "1: FLOCK  ADVISORY  WRITE 1234 00:1a:567 0 EOF"; waiters have "->" after "1:"
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == ident:
                return int(fields[4])
    return None


def _read_record() -> dict[str, Any]:
    try:
        with open(lock_path(), "rb") as f:
            record = json.loads(f.read() or b"null")
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}
