"""Entering a named network namespace from inside this process.

Role in the flow: the CLI enters ``--netns NAME`` once, before anything opens a socket, so that
netlink, ``/proc/sys/net``, subprocesses (``nft``) and BPF helpers all see that namespace.
Tests use :func:`entered` to run a block inside a namespace and come back.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"
SO_NETNS_COOKIE = 71

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(Exception):
    """A namespace that cannot be entered."""


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns: {os.strerror(err)}")


def resolve(name: str) -> str:
    """The file behind ``--netns``: a name from ``ip netns list`` (``/run/netns/NAME``) or an
    absolute path to a namespace file such as ``/proc/PID/ns/net``."""
    if not name:
        raise NetnsError("empty network namespace name (omit --netns for this namespace)")
    if os.path.isabs(name):
        return name
    if "/" in name or name in (".", ".."):
        raise NetnsError(f"bad network namespace name {name!r}: give a name from "
                         "'ip netns list' or an absolute path such as /proc/PID/ns/net")
    return os.path.join(NETNS_RUN_DIR, name)


def enter(name: str) -> None:
    """Move the calling thread into the namespace ``name`` (see :func:`resolve`)."""
    path = resolve(name)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise NetnsError(f"no such network namespace: {name}") from None
    except PermissionError:
        raise NetnsError(f"cannot open network namespace {name}: permission denied") from None
    except OSError as e:
        raise NetnsError(f"cannot open network namespace {name}: {e.strerror}") from None
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:  # a file, but not a network namespace
                raise NetnsError(f"{path} is not a network namespace (give a name from "
                                 "'ip netns list' or a path such as /proc/PID/ns/net)")
            raise NetnsError(f"cannot enter network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block inside namespace ``name``, then return to the original one."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def cookie() -> int:
    """The current namespace's cookie: unique for the life of the machine, never reused."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8)
    return int.from_bytes(raw, "little")


class Watch:
    """Whether the namespace a name stood for when we entered it is still there under that
    name: ``ip netns del`` removes the file, a process behind ``/proc/PID/ns/net`` exits.  A
    process inside a deleted namespace keeps it alive, so nothing else would tell it."""

    def __init__(self, name: str) -> None:
        self.path = resolve(name) if name else None
        self.inode = os.stat("/proc/thread-self/ns/net").st_ino  # where we are: the one named

    def gone(self) -> bool:
        if self.path is None:  # our own namespace: nobody can delete it from under us
            return False
        try:
            return os.stat(self.path).st_ino != self.inode
        except OSError:
            return True
