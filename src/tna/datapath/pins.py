"""Where TNA's objects live, and which maps are the ones the running programs read.

Role in the flow: the data path's address book.  Everything TNA pins for a namespace lives in
``/sys/fs/bpf/tna/ns<cookie>/`` (the namespace cookie is never reused): the shared maps and,
for ``tna apply``, one link per interface (``link<ifindex>``).  Both directories are created
0700 and checked on every use (:mod:`tna.rootdir`): ``/sys/fs/bpf`` is world-writable.

Pins are an address book, not the truth: the maps that matter are the ones the attached
programs read.  Once the data path has found those in the kernel (link → program → map ids,
:func:`bind`), every writer opens the maps by id (:func:`map_fd`), so a pin that was removed,
moved or replaced can never make the control plane write into maps no program reads;
:func:`repin` then puts the pins back in line with what runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import stat
import struct
import subprocess

from tna import abi, netns, rootdir
from tna.datapath import libbpf
from tna.datapath.libbpf import LibbpfError

BPFFS = "/sys/fs/bpf"
PIN_ROOT = os.path.join(BPFFS, "tna")
_NS_DIR = re.compile(r"ns(\d+)")
_OUR_PIN = re.compile(r"tna_\w+|link\d+")  # a shared map or an interface's link
PROG_NAME = b"tna_xdp"
FEATURES_MAP_KERNEL_NAME = ".rodata.feature"  # the kernel keeps 15 characters of a map name


class DatapathError(Exception):
    """Loading or attaching failed; the message is for the operator."""


def tna_root() -> str:
    return os.path.join(BPFFS, "tna")


def pin_dir() -> str:
    """The namespace's pin directory (which may not exist yet), checked: refuses a directory
    (or its parent) that another user owns or could write, or a symlink."""
    path = os.path.join(tna_root(), f"ns{netns.cookie()}")
    try:
        if rootdir.check(tna_root()):
            rootdir.check(path)
    except rootdir.UnsafeDir as e:
        raise DatapathError(str(e)) from None
    return path


def make_pin_dir() -> str:
    """Create (0700) and check the pin directories, mounting bpffs where it is missing."""
    ensure_bpffs()
    try:
        rootdir.ensure(tna_root())
        return rootdir.ensure(pin_dir())
    except rootdir.UnsafeDir as e:
        raise DatapathError(str(e)) from None


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
        try:
            os.makedirs(BPFFS, exist_ok=True)
        except OSError as e:
            raise DatapathError(f"no bpffs on {BPFFS} and cannot create it: {e.strerror}"
                                ) from None
        if subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=False,
                          capture_output=True).returncode:
            raise DatapathError(f"no bpffs on {BPFFS} and cannot mount one")


def pinned_links() -> list[int]:
    try:
        names = os.listdir(pin_dir())
    except FileNotFoundError:
        return []
    return sorted(int(n[4:]) for n in names if n.startswith("link") and n[4:].isdigit())


def u32(v: int) -> bytes:
    return struct.pack("=I", v)


# ---- the maps of the running programs --------------------------------------------------------

MapIds = dict[str, int]  # map name (as the kernel keeps it) -> map id
# Maps each loaded program has for itself: libbpf's sections (names with a dot: the feature
# block, .rodata) and per-CPU scratch space.  They differ between programs of one namespace and
# say nothing about which shared maps a program reads (tests/unit/test_map_names.py keeps this
# list and the program's declarations in step).
PRIVATE_MAPS = ("tna_fw_scratch",)
_bound: dict[int, MapIds | None] = {}  # namespace cookie -> the maps TNA's programs read


def tna_maps(prog_fd: int) -> MapIds | None:
    """The maps of a loaded program by name, if it is one of TNA's: named ``tna_xdp``, with
    the feature block and the shared interface map.  None for anything else."""
    if libbpf.prog_info(prog_fd).name != PROG_NAME:
        return None
    out = {}
    for map_id in libbpf.prog_map_ids(prog_fd):
        try:
            fd = libbpf.map_get_fd_by_id(map_id)
        except LibbpfError:
            continue
        try:
            out[libbpf.map_info(fd).name.decode()] = map_id
        finally:
            os.close(fd)
    if FEATURES_MAP_KERNEL_NAME not in out or "tna_ifaces" not in out:
        return None
    return {n: i for n, i in out.items() if "." not in n and n not in PRIVATE_MAPS}


def prog_maps(prog_id: int) -> MapIds | None:
    try:
        fd = libbpf.prog_get_fd_by_id(prog_id)
    except LibbpfError:
        return None  # replaced or gone since it was listed
    try:
        return tna_maps(fd)
    finally:
        os.close(fd)


def bind(maps: MapIds | None) -> None:
    """From now on, open the namespace's maps by these ids (None: through the pins)."""
    _bound[netns.cookie()] = maps


def bound() -> MapIds | None:
    return _bound.get(netns.cookie())


def is_bound() -> bool:
    return netns.cookie() in _bound


def map_fd(name: str) -> int:
    """A new descriptor of the namespace's map ``name``: the one the running programs read
    when they are known (:func:`bind`), else the pinned one."""
    maps = bound()
    if maps is not None and name in maps:
        try:
            return libbpf.map_get_fd_by_id(maps[name])
        except LibbpfError as e:
            if e.errno != errno.ENOENT:
                raise
            # gone: no program reads it any more, so nothing runs on this set
            _bound.pop(netns.cookie(), None)
    return libbpf.obj_get(os.path.join(pin_dir(), name))


def has_map(name: str) -> bool:
    maps = bound()
    return (maps is not None and name in maps) or pinned(name)


def pins_intact(names: tuple[str, ...] | list[str]) -> bool:
    """Whether the pins of ``names`` are the bound maps (nothing removed, moved or replaced):
    a few syscalls, for a cheap audit to notice what :func:`repin` would put back."""
    maps = bound()
    if maps is None:
        return True
    base = os.path.join(BPFFS, "tna", f"ns{netns.cookie()}")  # unchecked: only looked at
    return all(_pinned_id(os.path.join(base, name)) == maps[name]
               for name in names if name in maps)


def repin(names: tuple[str, ...] | list[str]) -> list[str]:
    """Make the pins of ``names`` be the bound maps (removed, moved or replaced pins are put
    back); return the names that had to be re-pinned."""
    maps = bound()
    if maps is None:
        return []
    fixed = []
    for name in names:
        if name not in maps:
            continue
        path = os.path.join(pin_dir(), name)
        if _pinned_id(path) == maps[name]:
            continue
        if os.path.lexists(path):
            os.unlink(path)
        fd = libbpf.map_get_fd_by_id(maps[name])
        try:
            libbpf.obj_pin(fd, path)
        finally:
            os.close(fd)
        fixed.append(name)
    return fixed


def _pinned_id(path: str) -> int | None:
    try:
        fd = libbpf.obj_get(path)
    except LibbpfError:
        return None
    try:
        return int(libbpf.map_info(fd).id)
    except LibbpfError:
        return None  # not a map
    finally:
        os.close(fd)


def open_map(name: str) -> libbpf.Map:
    fd = map_fd(name)
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
    if name == "tna_local_v6":
        return libbpf.Map(fd, 16, 1)
    if name in ("tna_src_bits", "tna_local6_bits"):
        return libbpf.Map(fd, 4, libbpf.map_info(fd).value_size)
    if name == "tna_ct_last":
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.struct_type("tna_ct_last_bucket")))
    return libbpf.Map(fd, 4, 4)
