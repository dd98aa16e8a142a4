"""Lifecycle: which namespaces TNA manages, which of them still exist, and removing what is left
of those that do not.

Role in the flow: beside the pipeline, not in it.  TNA keys everything of a namespace by its
cookie (never reused): pins in ``/sys/fs/bpf/tna/ns<cookie>/`` (:mod:`tna.datapath.pins`) and
state files ``/run/tna/ns<cookie>*`` (the daemon's state, the FDB refresher's pidfile, the
firewall record, locks).  When a namespace is deleted nothing of the kernel tells TNA, so its
pins (maps holding locked memory, defunct links) and files would stay forever.
:func:`collect` finds them: a namespace is alive while anything can still reach it — a task
in it, an open descriptor of it, a bind mount of it (``/run/netns``, or in any mount
namespace) — or while a lock in its state files is held.  ``tna gc`` runs it, and so do
``apply``, ``run`` and ``status``.  In a namespace that is alive only the files of owners that
are gone are removed (a killed daemon's state, a dead refresher's pidfile).

What this cannot see: a namespace kept alive only by a socket created in it (no process,
descriptor or mount references the namespace itself).  Its pins would be collected; its
programs would keep running until the links' pins go, then Linux forwards alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from tna import control, netns
from tna.datapath import pins

PROC = "/proc"
_STATE_FILE = re.compile(r"ns(\d+)(\..+)?")
_NS_LINK = re.compile(r"net:\[(\d+)\]")
DAEMON_STATE = ".json"  # ns<cookie>.json: a running ``tna run`` (tna.sync)
LOCKS = (".lock", ".pid")  # held (flock) by a live owner


@dataclass
class Managed:
    """One namespace TNA has pins or state files for."""

    cookie: int
    name: str | None = None  # its name in /run/netns, "(host)" for the initial namespace
    path: str | None = None  # a file that reaches it while it is alive
    pins: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)  # file names in /run/tna
    locked: bool = False  # a state file's lock is held: its owner runs

    @property
    def alive(self) -> bool:
        return self.path is not None or self.locked


@dataclass
class Collected:
    cookie: int
    pins: list[str]
    state: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"cookie": self.cookie, "pins": self.pins, "state": self.state}


# ---- which namespaces exist ------------------------------------------------------------------

def _ns_inode(path: str) -> int | None:
    try:
        m = _NS_LINK.fullmatch(os.readlink(path))
    except OSError:
        return None
    return int(m[1]) if m else None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _references() -> Iterator[tuple[int | None, str, int | None]]:
    """(namespace inode or None, a path that opens it, pid) for every reference to a network
    namespace this host has: tasks, open descriptors, bind mounts."""
    for name in _listdir(netns.NETNS_RUN_DIR):
        path = os.path.join(netns.NETNS_RUN_DIR, name)
        with contextlib.suppress(OSError):
            yield os.stat(path).st_ino, path, None
    mount_namespaces: set[int | None] = set()
    for pid in filter(str.isdigit, _listdir(PROC)):
        for tid in _listdir(f"{PROC}/{pid}/task"):
            path = f"{PROC}/{pid}/task/{tid}/ns/net"
            yield _ns_inode(path), path, int(pid)
        for fd in _listdir(f"{PROC}/{pid}/fd"):
            path = f"{PROC}/{pid}/fd/{fd}"
            ino = _ns_inode(path)
            if ino is not None:
                yield ino, path, None
        mnt = _ns_inode_any(f"{PROC}/{pid}/ns/mnt")
        if mnt not in mount_namespaces:  # bind mounts of other mount namespaces (containers)
            mount_namespaces.add(mnt)
            yield from _nsfs_mounts(pid)


def _ns_inode_any(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _nsfs_mounts(pid: str) -> Iterator[tuple[int | None, str, int | None]]:
    try:
        with open(f"{PROC}/{pid}/mountinfo") as f:
            lines = f.readlines()
    except OSError:
        return
    for line in lines:
        fields = line.split()
        sep = fields.index("-") if "-" in fields else -1
        if sep > 0 and fields[sep + 1] == "nsfs":
            m = _NS_LINK.fullmatch(fields[3])
            mountpoint = fields[4].encode().decode("unicode_escape")
            if m:
                yield int(m[1]), f"{PROC}/{pid}/root{mountpoint}", None


def _cookie_at(path: str) -> int | None:
    try:
        with netns.entered(path):
            return netns.cookie()
    except (netns.NetnsError, OSError):
        return None  # gone meanwhile, or not a network namespace


@dataclass
class Live:
    """The namespaces that exist now: cookie -> a path that reaches it; which tasks are in
    which; the names under /run/netns."""

    paths: dict[int, str] = field(default_factory=dict)
    task_cookie: dict[int, int] = field(default_factory=dict)  # pid -> cookie
    names: dict[int, str] = field(default_factory=dict)


def live() -> Live:
    out = Live()
    by_inode: dict[int, int | None] = {}
    for ino, path, pid in _references():
        if ino is None:
            continue
        if by_inode.get(ino) is None:  # not reached yet: some paths refuse (another owner)
            by_inode[ino] = _cookie_at(path)
        cookie = by_inode[ino]
        if cookie is None:
            continue
        out.paths.setdefault(cookie, path)
        if pid is not None:
            out.task_cookie.setdefault(pid, cookie)
        if path.startswith(netns.NETNS_RUN_DIR + "/"):
            out.names.setdefault(cookie, os.path.basename(path))
    host = by_inode.get(_ns_inode(f"{PROC}/1/ns/net") or 0)
    if host is not None:
        out.names.setdefault(host, "(host)")
    return out


# ---- what TNA manages ------------------------------------------------------------------------

def _state_files() -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name in sorted(_listdir(control.STATE_DIR)):
        m = _STATE_FILE.fullmatch(name)
        path = os.path.join(control.STATE_DIR, name)
        if m and os.path.isfile(path) and not os.path.islink(path) and os.lstat(path).st_uid == 0:
            out.setdefault(int(m[1]), []).append(name)
    return out


def _lock_held(name: str, exclusive: bool = True) -> bool:
    """Whether someone holds a lock on the state file ``name`` (probed, never kept).  The
    exclusive probe sees shared holders too; the shared one is for files whose owner holds
    them exclusively, so that a probe never makes that owner's own attempt fail."""
    try:
        fd = os.open(os.path.join(control.STATE_DIR, name), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def managed(now: Live | None = None) -> list[Managed]:
    """Every namespace TNA has pins or state files for, alive or not."""
    now = now or live()
    dirs, files = pins.namespace_dirs(), _state_files()
    out = []
    for cookie in sorted(set(dirs) | set(files)):
        state = files.get(cookie, [])
        m = Managed(cookie, now.names.get(cookie), now.paths.get(cookie),
                    sorted(_listdir(dirs[cookie])) if cookie in dirs else [], state)
        # a lock only matters where nothing else shows the namespace alive: never probe
        # the locks of a namespace in use
        m.locked = m.path is None and any(n.endswith(LOCKS) and _lock_held(n) for n in state)
        out.append(m)
    return out


def _daemon_alive(name: str, cookie: int, now: Live) -> bool:
    """A daemon's state file belongs to a live owner: its pid runs in that namespace."""
    try:
        with open(os.path.join(control.STATE_DIR, name)) as f:
            pid = int(json.load(f)["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return now.task_cookie.get(pid) == cookie


def _stale_in_live(m: Managed, now: Live) -> list[str]:
    """Files of owners that are gone, in a namespace that is still alive."""
    def stale(name: str) -> bool:
        suffix = name[len(f"ns{m.cookie}"):]
        if suffix == DAEMON_STATE:
            return not _daemon_alive(name, m.cookie, now)
        return suffix == ".fdb-refresher.pid" and not _lock_held(name, exclusive=False)
    return [name for name in m.state if stale(name)]


def collect(dry_run: bool = False) -> list[Collected]:
    """Remove the pins and state files of namespaces that no longer exist, and the files of
    dead owners in those that do; return what was (or, ``dry_run``, would be) removed."""
    now = live()
    out, gone = [], set()
    for m in managed(now):
        if m.alive:
            stale = _stale_in_live(m, now)
            if stale:
                out.append(Collected(m.cookie, [], stale))
            continue
        gone.add(m.cookie)
        out.append(Collected(m.cookie, list(m.pins), list(m.state)))
    if not dry_run:
        for c in out:
            c.pins = pins.remove_namespace_pins(c.cookie) if c.cookie in gone else []
            for name in c.state:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(control.STATE_DIR, name))
    return out
