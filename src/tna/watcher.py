"""The watcher ``tna apply`` leaves running: later configuration changes are followed at once.

Role in the flow: process management for the daemon (:mod:`tna.sync`) in its *watch* mode.
Plain ``tna apply`` used to leave a fast path nobody followed: a forward rule added later was
bypassed.  Now ``apply`` reconciles, then starts ``tna watch`` in the background and returns
once it is following every notification (and has reconciled once itself).  The watcher is
``tna run``'s loop with two differences: it is started by ``apply`` (and prints nothing), and
it hands its links back as pins (``SIGUSR1``) to a later ``apply``, ``detach`` or ``tna run``.
Like the daemon it holds the links as file descriptors: if it dies, even by SIGKILL, the
kernel detaches them and Linux forwards alone — never a fast path without its watcher.

One watcher per namespace: like ``tna run`` it owns the namespace's lock (:mod:`tna.owner`,
role ``watch``) for its whole life, which ``apply`` hands to it as it starts it and which
``apply``, ``detach`` and ``tna run`` take over (``SIGUSR1``).  Inside it, it holds an
exclusive lock on its pidfile, so the lock (not the process table) says whether one runs; the
pidfile says ``<pid> ready`` once the first reconciliation is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from tna import control, netns

READY = b"ready"


class WatcherError(Exception):
    """The watcher could not be started or stopped."""


def pidfile() -> str:
    return os.path.join(control.STATE_DIR, f"ns{netns.cookie()}.watcher.pid")


def _read() -> tuple[int | None, bool]:
    """(pid, ready) of this namespace's watcher if one holds the lock, else (None, False)."""
    try:
        fd = os.open(pidfile(), os.O_RDONLY)
    except OSError:
        return None, False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # locked: the watcher is alive
            words = os.read(fd, 64).split()
            pid = int(words[0]) if words and words[0].isdigit() else None
            return pid, READY in words[1:]
        return None, False  # nobody holds it: a stale file
    finally:
        os.close(fd)


def running() -> int | None:
    """The pid of this namespace's watcher, if one runs."""
    return _read()[0]


def hold() -> int | None:
    """For the watcher itself: its pidfile, open and exclusively locked, with its pid in it;
    None when another live watcher holds it."""
    os.makedirs(control.STATE_DIR, exist_ok=True)
    fd = os.open(pidfile(), os.O_RDWR | os.O_CREAT, 0o644)
    for _ in range(5):  # a reader may hold a shared lock for an instant
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            time.sleep(0.02)
    else:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def mark_ready(fd: int) -> None:
    os.pwrite(fd, f"{os.getpid()} ".encode() + READY, 0)


def release(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(pidfile())  # still under our lock: nobody else wrote it
    os.close(fd)


def start(netns_name: str, timeout: float = 20.0,
          on_spawned: Callable[[], None] | None = None) -> int:
    """Start ``tna watch`` in the background unless one runs; return its pid once it follows
    every notification and has reconciled once.  ``on_spawned`` runs once the watcher is
    started: ``apply`` hands it the namespace's lock there (the watcher waits for it)."""
    pid = running()
    if pid:
        if on_spawned is not None:
            on_spawned()
        return pid
    argv = [sys.executable, "-m", "tna", *(["--netns", netns_name] if netns_name else []),
            "watch"]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}  # not apply's unit's
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True, env=env)
    if on_spawned is not None:
        on_spawned()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, ready = _read()
        if ready and pid:
            if proc.stderr is not None:
                proc.stderr.close()
            return pid
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise WatcherError(f"tna watch exited {proc.returncode}"
                               + (f": {err.splitlines()[-1]}" if err else ""))
        time.sleep(0.01)
    raise WatcherError(f"tna watch (pid {proc.pid}) not ready after {timeout:.0f} s")


def stop(keep: bool = True, timeout: float = 10.0) -> bool:
    """Stop this namespace's watcher and wait until it is gone.  ``keep``: it pins its links
    first (the fast path stays, for ``apply``/``detach``/``tna run`` to take over); otherwise
    it detaches everything.  Returns whether one was running."""
    pid = running()
    if not pid:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGUSR1 if keep else signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running() == pid:
        if time.monotonic() > deadline:
            raise WatcherError(f"tna watch (pid {pid}) did not stop within {timeout:.0f} s")
        time.sleep(0.01)
    return True
