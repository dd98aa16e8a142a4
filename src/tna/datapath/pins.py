"""Where TNA's objects live: the namespace's pin directory on bpffs, and its maps by name.

Role in the flow: the data path's address book.  Everything TNA pins for a namespace lives in
``/sys/fs/bpf/tna/ns<cookie>/`` (the namespace cookie is never reused): the shared maps and,
for ``tna apply``, one link per interface (``link<ifindex>``).  Nothing here decides anything.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import stat
import struct
import subprocess

from tna import abi, netns
from tna.datapath import libbpf

BPFFS = "/sys/fs/bpf"
PIN_ROOT = os.path.join(BPFFS, "tna")
_NS_DIR = re.compile(r"ns(\d+)")
_OUR_PIN = re.compile(r"tna_\w+|link\d+")  # a shared map or an interface's link


class DatapathError(Exception):
    """Loading or attaching failed; the message is for the operator."""


def pin_dir() -> str:
    return os.path.join(BPFFS, "tna", f"ns{netns.cookie()}")


def _root_owned_dir(path: str) -> bool:
    """bpffs is world-writable: a directory counts only if root made it and only root can
    write to it."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and not st.st_mode & stat.S_IWOTH


def namespace_dirs() -> dict[int, str]:
    """Namespace cookie -> pin directory, for every namespace TNA has pins for."""
    if not _root_owned_dir(PIN_ROOT):
        return {}
    out = {}
    for name in os.listdir(PIN_ROOT):
        m = _NS_DIR.fullmatch(name)
        if m and _root_owned_dir(os.path.join(PIN_ROOT, name)):
            out[int(m[1])] = os.path.join(PIN_ROOT, name)
    return out


def remove_namespace_pins(cookie: int) -> list[str]:
    """Unpin TNA's maps and links of the namespace ``cookie`` (whatever else lies there, of
    another name or owner, stays), then its directory if empty; the names unpinned."""
    path = namespace_dirs().get(cookie)
    if path is None:
        return []
    removed = []
    for name in sorted(os.listdir(path)):
        entry = os.path.join(path, name)
        st = os.lstat(entry)
        if _OUR_PIN.fullmatch(name) and stat.S_ISREG(st.st_mode) and st.st_uid == 0:
            os.unlink(entry)
            removed.append(name)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    return removed


def link_pin(ifindex: int) -> str:
    return os.path.join(pin_dir(), f"link{ifindex}")


def pinned(name: str) -> bool:
    """Whether the namespace has the map (or link) ``name`` pinned."""
    return os.path.exists(os.path.join(pin_dir(), name))


def ensure_bpffs() -> None:
    if not os.path.ismount(BPFFS):
        os.makedirs(BPFFS, exist_ok=True)
        if subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=False).returncode:
            raise DatapathError(f"cannot mount bpffs on {BPFFS}")


def pinned_links() -> list[int]:
    try:
        names = os.listdir(pin_dir())
    except FileNotFoundError:
        return []
    return sorted(int(n[4:]) for n in names if n.startswith("link") and n[4:].isdigit())


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


def open_map(name: str) -> libbpf.Map:
    fd = libbpf.obj_get(os.path.join(pin_dir(), name))
    if name == "tna_stats":
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaCounter), percpu=True)
    if name in ("tna_ifaces", "tna_ifidx"):
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaIface))
    if name == "tna_fdb":
        return libbpf.Map(fd, ctypes.sizeof(abi.TnaFdbKey), ctypes.sizeof(abi.TnaFdbEntry))
    if name in ("tna_brports", "tna_brpidx"):
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaBrport))
    if name == "tna_src_deny":
        return libbpf.Map(fd, 4, 1)
    if name == "tna_config":
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaConfig))
    if name == "tna_redirects":
        return libbpf.Map(fd, 4, 8)
    if name == "tna_src_bits":
        return libbpf.Map(fd, 4, libbpf.map_info(fd).value_size)
    return libbpf.Map(fd, 4, 4)


