"""Loading, attaching, pinning and detaching TNA's XDP programs in the current namespace.

Role in the flow: ``apply`` takes the per-interface port settings a plan produced and makes the
kernel match them: it loads one specialised program per accelerated interface (features in
read-only data), fills the shared maps, attaches through BPF links (atomically replacing a
program we attached before) and pins links and maps under ``/sys/fs/bpf/tna/ns<cookie>/`` so
the fast path outlives the command.  ``detach_all`` removes exactly what TNA pinned.

Pin layout (one directory per namespace, keyed by its never-reused cookie)::

    tna_ifaces  tna_tx  tna_stats         shared maps
    if<ifindex>/link                      the XDP link of that interface
    if<ifindex>/features                  the program's read-only feature block
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tna import abi, netns
from tna.datapath import libbpf
from tna.datapath.libbpf import LibbpfError

BPFFS = "/sys/fs/bpf"
SHARED_MAPS = ("tna_ifaces", "tna_tx", "tna_stats")
FEATURES_MAP = ".rodata.features"
PROG_NAME = b"tna_xdp"


@dataclass(frozen=True)
class Features:
    """What one interface's program does; each field is a ``tna_features`` member."""

    ipv4_router: bool = False
    ipv6_router: bool = False
    ipv4_rp_filter: int = 0  # 0 off, 1 strict, 2 loose
    verify_l4_csum: bool = False  # veth ingress: local senders may offload L4 checksums

    def to_c(self) -> abi.TnaFeatures:
        return abi.TnaFeatures(int(self.ipv4_router), int(self.ipv6_router),
                               self.ipv4_rp_filter, int(self.verify_l4_csum))

    @classmethod
    def from_c(cls, raw: bytes) -> Features:
        c = abi.TnaFeatures.from_buffer_copy(raw)
        return cls(bool(c.ipv4_router), bool(c.ipv6_router), c.ipv4_rp_filter,
                   bool(c.verify_l4_csum))

    def names(self) -> list[str]:
        out = [n for n in ("ipv4_router", "ipv6_router") if getattr(self, n)]
        if self.ipv4_rp_filter:
            out.append(f"ipv4_rp_filter_{'strict' if self.ipv4_rp_filter == 1 else 'loose'}")
        if self.verify_l4_csum:
            out.append("verify_l4_csum")
        return out


@dataclass(frozen=True)
class Port:
    """One interface as the data path sees it."""

    ifindex: int
    ifname: str
    mac: str
    egress: bool  # may be redirected to
    features: Features | None  # None: no TNA program on this interface


@dataclass(frozen=True)
class Attached:
    ifindex: int
    prog_id: int
    xlated_insns: int
    features: Features
    mode: str  # "native" or "generic"


class DatapathError(Exception):
    """Loading or attaching failed; the message is for the operator."""


def pin_dir() -> str:
    return os.path.join(BPFFS, "tna", f"ns{netns.cookie()}")


def _ensure_bpffs() -> None:
    if not os.path.ismount(BPFFS):
        os.makedirs(BPFFS, exist_ok=True)
        if subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=False).returncode:
            raise DatapathError(f"cannot mount bpffs on {BPFFS}")


def _if_dir(ifindex: int) -> str:
    return os.path.join(pin_dir(), f"if{ifindex}")


# ---- loading ---------------------------------------------------------------------------------

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
            rodata = libbpf.check_ptr(lib.bpf_object__find_map_by_name(
                self.obj, FEATURES_MAP.encode()), "find feature map")
            libbpf.check(lib.bpf_map__set_initial_value(rodata, cfg, len(cfg)),
                         "set features")
            reused = self._reuse_pinned_maps() if pin_maps else []
            libbpf.check(lib.bpf_object__load(self.obj), "load XDP program")
            if pin_maps:
                self._pin_new_maps(reused)
            prog = libbpf.check_ptr(lib.bpf_object__find_program_by_name(self.obj, PROG_NAME),
                                    "find program")
            self.fd = libbpf.check(lib.bpf_program__fd(prog), "program fd")
            self.features_fd = libbpf.check(lib.bpf_map__fd(rodata), "feature map fd")
            self.features = features
        except Exception:
            self.close()
            raise

    def _map(self, name: str) -> int:
        return libbpf.check_ptr(libbpf.lib().bpf_object__find_map_by_name(
            self.obj, name.encode()), f"find map {name}")

    def _reuse_pinned_maps(self) -> list[str]:
        """Point the object at the namespace's pinned shared maps, where they exist.

        Done by hand rather than with libbpf's pin_path: the kernel adds BPF_F_RDONLY_PROG to
        device maps, so libbpf's compatibility check would refuse the pinned tna_tx.
        """
        reused = []
        for name in SHARED_MAPS:
            path = os.path.join(pin_dir(), name)
            if not os.path.exists(path):
                continue
            fd = libbpf.obj_get(path)
            try:
                libbpf.check(libbpf.lib().bpf_map__reuse_fd(self._map(name), fd), f"reuse {name}")
            finally:
                os.close(fd)  # libbpf holds its own duplicate
            reused.append(name)
        return reused

    def _pin_new_maps(self, reused: list[str]) -> None:
        for name in SHARED_MAPS:
            if name not in reused:
                fd = libbpf.check(libbpf.lib().bpf_map__fd(self._map(name)), f"{name} fd")
                libbpf.obj_pin(fd, os.path.join(pin_dir(), name))

    def map_fd(self, name: str) -> int:
        lib = libbpf.lib()
        m = libbpf.check_ptr(lib.bpf_object__find_map_by_name(self.obj, name.encode()), name)
        return libbpf.check(lib.bpf_map__fd(m), f"{name} fd")

    def close(self) -> None:
        if self.obj:
            libbpf.lib().bpf_object__close(self.obj)
            self.obj = 0


# ---- shared maps -----------------------------------------------------------------------------

def _u32(v: int) -> bytes:
    return struct.pack("=I", v)


def open_map(name: str) -> libbpf.Map:
    fd = libbpf.obj_get(os.path.join(pin_dir(), name))
    if name == "tna_stats":
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaCounter), percpu=True)
    if name == "tna_ifaces":
        return libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaIface))
    return libbpf.Map(fd, 4, 4)


def read_ifaces(ifaces: libbpf.Map) -> dict[int, abi.TnaIface]:
    out = {}
    for key in ifaces.all_keys():
        raw = ifaces.lookup(key)
        if raw is not None:
            out[struct.unpack("=I", key)[0]] = abi.TnaIface.from_buffer_copy(raw)
    return out


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) if mac else b"\0" * 6


def _sync_ports(ports: Sequence[Port]) -> None:
    """Make tna_ifaces/tna_tx hold exactly ``ports``; keep slots of known interfaces.

    Order matters for packets in flight: an egress is withdrawn from tna_ifaces before tna_tx
    (the program checks the flag first) and granted in tna_tx before tna_ifaces.
    """
    ifaces, tx, stats = (open_map(n) for n in SHARED_MAPS)
    try:
        current = read_ifaces(ifaces)
        wanted = {p.ifindex: p for p in ports}
        for ifindex in set(current) - set(wanted):
            ifaces.delete(_u32(ifindex))
            tx.delete(_u32(ifindex))
        used = {c.slot for i, c in current.items() if i in wanted}
        free = (s for s in range(1, abi.max_ifaces()) if s not in used)
        for p in ports:
            old = current.get(p.ifindex)
            slot = old.slot if old else next(free)
            if not old:
                _zero_slot(stats, slot)
            entry = abi.TnaIface((ctypes.c_uint8 * 6)(*_mac_bytes(p.mac)),
                                 abi.TNA_IF_EGRESS if p.egress else 0, slot)
            if p.egress:
                tx.update(_u32(p.ifindex), _u32(p.ifindex))
                ifaces.update(_u32(p.ifindex), bytes(entry))
            else:
                ifaces.update(_u32(p.ifindex), bytes(entry))
                tx.delete(_u32(p.ifindex))
    finally:
        for m in (ifaces, tx, stats):
            m.close()


def _zero_slot(stats: libbpf.Map, slot: int) -> None:
    zero = bytes(ctypes.sizeof(abi.TnaCounter))
    for code in range(abi.nr_codes()):
        stats.update(_u32(slot * abi.nr_codes() + code), zero)


# ---- links -----------------------------------------------------------------------------------

def _attach(ifindex: int, prog: Program) -> None:
    """Attach or atomically replace the program on ``ifindex``; pin link and features."""
    d = _if_dir(ifindex)
    link_pin = os.path.join(d, "link")
    if os.path.exists(link_pin):
        link_fd = libbpf.obj_get(link_pin)
        try:
            libbpf.link_update(link_fd, prog.fd)
        finally:
            os.close(link_fd)
    else:
        os.makedirs(d, exist_ok=True)
        link_fd = _create_link(ifindex, prog.fd)
        try:
            libbpf.obj_pin(link_fd, link_pin)
        finally:
            os.close(link_fd)
    feat_pin = os.path.join(d, "features")
    if os.path.exists(feat_pin):
        os.unlink(feat_pin)
    libbpf.obj_pin(prog.features_fd, feat_pin)


def _create_link(ifindex: int, prog_fd: int) -> int:
    """Native XDP where the driver has it; generic only when native is impossible."""
    try:
        return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_DRV_MODE)
    except LibbpfError as e:
        if e.errno == errno.EBUSY:
            raise DatapathError(f"ifindex {ifindex} already has an XDP program") from e
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_SKB_MODE)


def _detach(ifindex: int) -> None:
    d = _if_dir(ifindex)
    link_pin = os.path.join(d, "link")
    if os.path.exists(link_pin):
        link_fd = libbpf.obj_get(link_pin)
        try:
            libbpf.link_detach(link_fd)
        except LibbpfError as e:
            if e.errno not in (errno.ENOLINK, errno.EINVAL):  # device already gone
                raise
        finally:
            os.close(link_fd)
    shutil.rmtree(d, ignore_errors=True)


def attached_ifindexes() -> list[int]:
    try:
        names = os.listdir(pin_dir())
    except FileNotFoundError:
        return []
    return sorted(int(n[2:]) for n in names if n.startswith("if") and n[2:].isdigit())


# ---- public operations -----------------------------------------------------------------------

def apply(ports: Sequence[Port], obj_path: str | None = None) -> list[int]:
    """Make the namespace's fast path match ``ports``; return the ifindexes with programs.

    ``obj_path`` loads another build of the object (tests use a deliberately broken one).
    """
    _ensure_bpffs()
    os.makedirs(pin_dir(), exist_ok=True)
    wanted = [p for p in ports if p.features is not None]
    programs: dict[int, Program] = {}
    try:
        for p in wanted:
            assert p.features is not None
            programs[p.ifindex] = Program(p.features, obj_path=obj_path)
        if not programs:  # the shared maps must exist even with nothing to attach
            Program(Features(), obj_path=obj_path).close()
        _sync_ports(ports)
        for p in wanted:
            _attach(p.ifindex, programs[p.ifindex])
    finally:
        for prog in programs.values():
            prog.close()
    for ifindex in set(attached_ifindexes()) - {p.ifindex for p in wanted}:
        _detach(ifindex)
    return [p.ifindex for p in wanted]


def detach_all() -> int:
    """Remove every program, link and map TNA pinned in this namespace; return links removed."""
    if not os.path.isdir(pin_dir()):
        return 0
    links = attached_ifindexes()
    for ifindex in links:
        _detach(ifindex)
    shutil.rmtree(pin_dir(), ignore_errors=True)
    return len(links)


def attached() -> list[Attached]:
    """What TNA has attached in this namespace, read back from the kernel."""
    out = []
    for ifindex in attached_ifindexes():
        d = _if_dir(ifindex)
        try:
            link_fd = libbpf.obj_get(os.path.join(d, "link"))
        except LibbpfError:
            continue
        try:
            info = libbpf.link_info(link_fd)
        finally:
            os.close(link_fd)
        prog_fd = libbpf.prog_get_fd_by_id(info.prog_id)
        try:
            pinfo = libbpf.prog_info(prog_fd)
        finally:
            os.close(prog_fd)
        out.append(Attached(ifindex=ifindex, prog_id=info.prog_id,
                            xlated_insns=pinfo.xlated_prog_len // 8,
                            features=_read_features(d), mode=""))
    return out


def _read_features(d: str) -> Features:
    fd = libbpf.obj_get(os.path.join(d, "features"))
    m = libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaFeatures))
    try:
        raw = m.lookup(_u32(0))
    finally:
        m.close()
    return Features.from_c(raw or bytes(ctypes.sizeof(abi.TnaFeatures)))


def our_prog_ids() -> frozenset[int]:
    return frozenset(a.prog_id for a in attached())


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


def read_counters() -> dict[int, dict[str, Counter]]:
    """ifindex (0 = unknown ingress) -> counter name -> totals over all CPUs."""
    if not os.path.exists(os.path.join(pin_dir(), "tna_stats")):
        return {}
    ifaces, stats = open_map("tna_ifaces"), open_map("tna_stats")
    try:
        slots = {c.slot: i for i, c in read_ifaces(ifaces).items()}
        slots[0] = 0
        names = abi.codes()
        out: dict[int, dict[str, Counter]] = {}
        for slot, ifindex in slots.items():
            row = out.setdefault(ifindex, {})
            for code, name in names.items():
                per_cpu = stats.lookup_percpu(_u32(slot * abi.nr_codes() + code))
                vals = [abi.TnaCounter.from_buffer_copy(v) for v in per_cpu]
                row[name] = Counter(sum(v.packets for v in vals), sum(v.bytes for v in vals))
        return out
    finally:
        ifaces.close()
        stats.close()


def load_for_test(features: Features, obj_path: str | None = None) -> Program:
    """A program whose maps are pinned in this namespace's directory, for BPF tests."""
    _ensure_bpffs()
    os.makedirs(pin_dir(), exist_ok=True)
    return Program(features, obj_path=obj_path)


def sync_ports_for_test(ports: Iterable[Port]) -> None:
    _sync_ports(list(ports))
