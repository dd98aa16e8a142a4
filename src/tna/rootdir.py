"""Directories only root controls: TNA's pin directory on bpffs and its state directory.

Role in the flow: every writer (the data path, the daemon, ``apply``, ``detach``) goes through
here before it creates or opens anything under ``/sys/fs/bpf/tna`` or ``/run/tna``.
``/sys/fs/bpf`` is world-writable (mode 1777), so a local user could pre-create TNA's directory,
or a symlink in its place, and later rename what root put inside.  A directory is used only
when it is a real directory (``lstat``: not a symlink), owned by this (root) user and writable
by nobody else; TNA creates it 0700 and never removes it, so nobody can race a re-creation
(the sticky bit of the parent keeps others from renaming or removing a root-owned entry).
"""

from __future__ import annotations

import os
import stat


class UnsafeDir(Exception):
    """A directory TNA would use is not under root's sole control; the message says why."""


def check(path: str) -> bool:
    """Whether ``path`` exists; raise :class:`UnsafeDir` when it exists but another user could
    change what is in it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDir(f"{path} is a symlink: refusing to use it (remove it as root)")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDir(f"{path} is not a directory: refusing to use it (remove it as root)")
    if st.st_uid != os.geteuid():
        raise UnsafeDir(f"{path} is owned by uid {st.st_uid}, not root: refusing to use it "
                        "(remove it as root)")
    if st.st_mode & 0o022:
        raise UnsafeDir(f"{path} is group- or world-writable (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}): refusing to use it (remove it as "
                        "root)")
    return True


def ensure(path: str) -> str:
    """``path`` as a directory only root controls: created 0700 when absent, checked always
    (one an older TNA left readable by others is narrowed to 0700)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise UnsafeDir(f"cannot create {path}: {e.strerror}") from None
    check(path)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path
