"""Loading the XDP object once per feature set, sharing the namespace's pinned maps.

Role in the flow: the data path turns a plan's :class:`~tna.plan.types.Features` into a loaded
program: the features go into the object's read-only data (so the verifier prunes what is
off), the object is pointed at the namespace's pinned shared maps (or pins the ones it
creates), and the program is loaded, not yet attached.  :func:`program_features` reads the
features back from a running program.
"""

from __future__ import annotations

import ctypes
import os

from tna import abi
from tna.datapath import libbpf
from tna.datapath.firewall import MAP_NAMES as FIREWALL_MAPS
from tna.datapath.pins import (
    FEATURES_MAP_KERNEL_NAME,
    PROG_NAME,
    DatapathError,
    has_map,
    map_fd,
    pin_dir,
    u32,
)
from tna.plan.types import Features

# tna monitor's switch, rate limit and ring (bpf/lib/monitor.h)
MONITOR_MAPS = ("tna_mon_ctl", "tna_mon_state", "tna_mon_ring")
# tna run --tcp-liberal: the programs' requests and their counters (bpf/lib/ct_liberal.h)
LIBERAL_MAPS = ("tna_liberal_req", "tna_liberal_cnt")
# conntrack's retransmission counter around fast segments (bpf/lib/ct_last.h)
CT_LAST_MAPS = ("tna_ct_last",)
SHARED_MAPS = ("tna_ifaces", "tna_tx", "tna_stats", "tna_fdb", "tna_brports", "tna_src_deny",
               "tna_config", "tna_redirects", "tna_ifidx", "tna_src_bits", "tna_brpidx",
               "tna_local_v6", "tna_local6_bits",
               *FIREWALL_MAPS, *MONITOR_MAPS, *LIBERAL_MAPS, *CT_LAST_MAPS)
FEATURES_MAP = ".rodata.features"
BPF_F_MMAPABLE = 1 << 10


class Program:
    """One loaded (not yet attached) instance of the XDP object with its features."""

    def __init__(self, features: Features, pin_maps: bool = True,
                 obj_path: str | None = None) -> None:
        lib = libbpf.lib()
        path = (obj_path or str(abi.xdp_object())).encode()
        self.obj = libbpf.check_ptr(lib.bpf_object__open_file(path, None),
                                    "open BPF object")
        try:
            cfg = bytes(features.to_c())
            rodata = self._map(FEATURES_MAP)
            libbpf.check(lib.bpf_map__set_initial_value(rodata, cfg, len(cfg)),
                         "set features")
            reused = self._reuse_pinned_maps() if pin_maps else []
            libbpf.check(lib.bpf_object__load(self.obj), "load XDP program")
            if pin_maps:
                self._pin_new_maps(reused)
            prog = libbpf.check_ptr(lib.bpf_object__find_program_by_name(self.obj, PROG_NAME),
                                    "find program")
            self.fd = libbpf.check(lib.bpf_program__fd(prog), "program fd")
            self.features = features
        except Exception:
            self.close()
            raise

    def _map(self, name: str) -> int:
        return libbpf.check_ptr(libbpf.lib().bpf_object__find_map_by_name(
            self.obj, name.encode()), f"find map {name}")

    def _reuse_pinned_maps(self) -> list[str]:
        """Point the object at the namespace's shared maps, where they exist: those the
        running programs read, or else the pinned ones (:func:`~tna.datapath.pins.map_fd`).

        Done by hand rather than with libbpf's pin_path: the kernel adds BPF_F_RDONLY_PROG to
        device maps, so libbpf's compatibility check would refuse the pinned tna_tx.
        """
        reused = []
        for name in self._shared_maps():
            if not has_map(name):
                continue
            fd = map_fd(name)
            try:
                check_compatible(name, fd)
                libbpf.check(libbpf.lib().bpf_map__reuse_fd(self._map(name), fd), f"reuse {name}")
            finally:
                os.close(fd)  # libbpf holds its own duplicate
            reused.append(name)
        return reused

    def _shared_maps(self) -> list[str]:
        """The shared maps this object has: an older build (a benchmark variant) lacks some."""
        return [n for n in SHARED_MAPS
                if libbpf.lib().bpf_object__find_map_by_name(self.obj, n.encode())]

    def _pin_new_maps(self, reused: list[str]) -> None:
        for name in self._shared_maps():
            if name not in reused:
                fd = libbpf.check(libbpf.lib().bpf_map__fd(self._map(name)), f"{name} fd")
                libbpf.obj_pin(fd, os.path.join(pin_dir(), name))

    def close(self) -> None:
        if self.obj:
            libbpf.lib().bpf_object__close(self.obj)
            self.obj = 0


def object_shapes(obj_path: str | None = None) -> dict[str, tuple[int, int]]:
    """Key and value size of each shared map as this build's object declares it (the object
    opened, not loaded)."""
    path = obj_path or str(abi.xdp_object())
    cached = _shapes.get(path)
    if cached is not None:
        return cached
    lib = libbpf.lib()
    obj = libbpf.check_ptr(lib.bpf_object__open_file(path.encode(), None), "open BPF object")
    try:
        out = {}
        for name in SHARED_MAPS:
            m = lib.bpf_object__find_map_by_name(obj, name.encode())
            if m:
                out[name] = (lib.bpf_map__key_size(m), lib.bpf_map__value_size(m))
    finally:
        lib.bpf_object__close(obj)
    _shapes[path] = out
    return out


_shapes: dict[str, dict[str, tuple[int, int]]] = {}


def foreign_layout(maps: dict[str, int], obj_path: str | None = None) -> list[str]:
    """The maps (by name -> id, as a loaded program reads them) whose key or value size
    differs from this build's: a program of another TNA version reads them, and what this
    build would write there the program would misread (the kernel copies value_size bytes
    of whatever buffer it is given)."""
    wanted = object_shapes(obj_path)
    out = []
    for name, map_id in sorted(maps.items()):
        if name not in wanted:
            continue
        try:
            fd = libbpf.map_get_fd_by_id(map_id)
        except libbpf.LibbpfError:
            continue
        try:
            info = libbpf.map_info(fd)
        finally:
            os.close(fd)
        if (info.key_size, info.value_size) != wanted[name]:
            out.append(name)
    return out


def check_compatible(name: str, fd: int) -> None:
    """A pinned map of an older layout (counters per slot changed, tna_ct_last a hash map
    before it became an array of buckets) cannot be shared."""
    if ((name == "tna_stats" and libbpf.map_info(fd).max_entries
         != abi.max_ifaces() * abi.nr_codes())
            or (name == "tna_config"
                and libbpf.map_info(fd).value_size != ctypes.sizeof(abi.TnaConfig))
            or (name == "tna_fw_ports" and not libbpf.map_info(fd).map_flags & BPF_F_MMAPABLE)
            or (name == "tna_ct_last" and libbpf.map_info(fd).key_size != 4)):
        raise DatapathError("the pinned maps are from another TNA version (map layout "
                            "changed): run 'tna detach' first")


def program_features(prog_fd: int) -> Features | None:
    """The feature block of a loaded TNA program, read from its own read-only map."""
    for map_id in libbpf.prog_map_ids(prog_fd):
        fd = libbpf.map_get_fd_by_id(map_id)
        m = libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaFeatures))
        try:
            if libbpf.map_info(fd).name.decode() == FEATURES_MAP_KERNEL_NAME:
                raw = m.lookup(u32(0))
                return Features.from_c(raw[:ctypes.sizeof(abi.TnaFeatures)]) if raw else None
        finally:
            m.close()
    return None
