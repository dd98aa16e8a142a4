"""Loading, attaching, pinning and detaching TNA's XDP programs in the current namespace.

Role in the flow: :class:`Datapath` takes the per-interface port settings a plan produced and
makes the kernel match them: one specialised program per accelerated interface (features in
read-only data), shared maps for everything that is data, one BPF link per interface.

Every change goes in three phases, so that traffic which must return to Linux does so first
and never waits for the slower program loads:

1. *restrict*: each interface's map entry is narrowed to what both the old and the new plan
   allow (an egress withdrawn, a family handed back to Linux) — map writes only;
2. *programs*: new programs are loaded, then swapped in atomically with ``bpf_link_update``
   (never detach-then-attach), attached to new interfaces, detached from dropped ones;
3. *relax*: entries get exactly what the new plan allows.

Links are either pinned (``tna apply``: the fast path outlives the command) or owned by the
process (``tna run``: if the daemon dies, the kernel detaches them and Linux carries on alone).

Pins, per namespace (keyed by its never-reused cookie): ``/sys/fs/bpf/tna/ns<cookie>/`` holds
the shared maps ``tna_ifaces`` (and its array copy ``tna_ifidx``), ``tna_tx``, ``tna_stats``, ...
and pinned links ``link<ifindex>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tna import abi, netns, routecache
from tna.datapath import libbpf
from tna.datapath.firewall import MAP_NAMES as FIREWALL_MAPS
from tna.datapath.firewall import FirewallMaps, Written
from tna.datapath.libbpf import LibbpfError
from tna.plan.types import Features, Namespace, Port

BPFFS = "/sys/fs/bpf"
SHARED_MAPS = ("tna_ifaces", "tna_tx", "tna_stats", "tna_fdb", "tna_brports", "tna_src_deny",
               "tna_config", "tna_redirects", "tna_ifidx", "tna_src_bits", "tna_brpidx",
               *FIREWALL_MAPS)
FEATURES_MAP = ".rodata.features"
FEATURES_MAP_KERNEL_NAME = FEATURES_MAP[:15]  # the kernel keeps 15 characters of a map name
PROG_NAME = b"tna_xdp"
BPF_F_MMAPABLE = 1 << 10


def _min_mtu(a: int, b: int) -> int:
    """The stricter of two route MTU limits, where 0 means no limit."""
    return min(x for x in (a, b) if x) if (a or b) else 0


@dataclass
class Changes:
    """What one reconciliation did, by ifindex."""

    restricted: list[int] = field(default_factory=list)
    swapped: list[int] = field(default_factory=list)
    attached: list[int] = field(default_factory=list)
    detached: list[int] = field(default_factory=list)
    relaxed: list[int] = field(default_factory=list)
    safe_at: float = 0.0  # time.monotonic() when the restrict phase was done

    def by_kind(self) -> dict[str, list[int]]:
        return {k: v for k, v in vars(self).items() if isinstance(v, list) and v}

    def __bool__(self) -> bool:
        return bool(self.by_kind())


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


def _link_pin(ifindex: int) -> str:
    return os.path.join(pin_dir(), f"link{ifindex}")


def _ensure_bpffs() -> None:
    if not os.path.ismount(BPFFS):
        os.makedirs(BPFFS, exist_ok=True)
        if subprocess.run(["mount", "-t", "bpf", "bpf", BPFFS], check=False).returncode:
            raise DatapathError(f"cannot mount bpffs on {BPFFS}")


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
        """Point the object at the namespace's pinned shared maps, where they exist.

        Done by hand rather than with libbpf's pin_path: the kernel adds BPF_F_RDONLY_PROG to
        device maps, so libbpf's compatibility check would refuse the pinned tna_tx.
        """
        reused = []
        for name in self._shared_maps():
            path = os.path.join(pin_dir(), name)
            if not os.path.exists(path):
                continue
            fd = libbpf.obj_get(path)
            try:
                _check_compatible(name, fd)
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


# ---- shared maps -----------------------------------------------------------------------------

def _check_compatible(name: str, fd: int) -> None:
    """A pinned map of an older layout (counters per slot changed) cannot be shared."""
    if ((name == "tna_stats" and libbpf.map_info(fd).max_entries
         != abi.max_ifaces() * abi.nr_codes())
            or (name == "tna_config"
                and libbpf.map_info(fd).value_size != ctypes.sizeof(abi.TnaConfig))
            or (name == "tna_fw_ports" and not libbpf.map_info(fd).map_flags & BPF_F_MMAPABLE)):
        raise DatapathError("the pinned maps are from another TNA version (counter layout "
                            "changed): run 'tna detach' first")


def _u32(v: int) -> bytes:
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


def read_ifaces(ifaces: libbpf.Map) -> dict[int, abi.TnaIface]:
    out = {}
    for key in ifaces.all_keys():
        raw = ifaces.lookup(key)
        if raw is not None:
            out[struct.unpack("=I", key)[0]] = abi.TnaIface.from_buffer_copy(raw)
    return out


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")) if mac else b"\0" * 6


# Permissions as flags: EGRESS grants, NO_* withhold; BRIDGE ("not a redirect target") withholds.
_GRANTS = abi.TNA_IF_EGRESS
_WITHHOLDS = (abi.TNA_IF_NO_IPV4 | abi.TNA_IF_NO_IPV6 | abi.TNA_IF_NO_BRIDGE_IPV4
              | abi.TNA_IF_NO_BRIDGE_IPV6 | abi.TNA_IF_BRIDGE | abi.TNA_IF_ACCEPT_REDIRECTS
              | abi.TNA_IF_REDIRECTS_UNWATCHED)
_NOTHING = _WITHHOLDS  # no egress, no family: the most restrictive entry


def _gaining_firewall(running: Features | None, wanted: Features | None) -> int:
    """Families a program swap adds the forward hook to: until the new program runs, the
    old one would forward them past the ruleset."""
    if running is None or wanted is None:
        return 0
    return ((abi.TNA_IF_NO_IPV4 if wanted.firewall_ipv4 and not running.firewall_ipv4 else 0)
            | (abi.TNA_IF_NO_IPV6 if wanted.firewall_ipv6 and not running.firewall_ipv6 else 0))


def _intersect(a: int, b: int) -> int:
    """Flags allowing only what both ``a`` and ``b`` allow."""
    return (a & b & _GRANTS) | ((a | b) & _WITHHOLDS)


class _Maps:
    """The namespace's shared maps, open for one reconciliation."""

    def __init__(self) -> None:
        self.ifaces, self.tx, self.stats = (open_map(n) for n in SHARED_MAPS[:3])
        self.entries = read_ifaces(self.ifaces)
        self.ifidx, self.ifidx_max = _open_ifidx()
        self._sync_ifidx()

    def write(self, ifindex: int, mac: str, flags: int) -> None:
        """Set an entry; the device map follows so that an egress exists in both or neither.

        An egress is granted in tna_tx before tna_ifaces and withdrawn in the opposite order:
        the program checks the flag first, then redirects through tna_tx.
        """
        entry = self.entries.get(ifindex)
        slot = entry.slot if entry else self._new_slot()
        new = abi.TnaIface((ctypes.c_uint8 * 6)(*_mac_bytes(mac)), flags, slot)
        target = flags & abi.TNA_IF_EGRESS and not flags & abi.TNA_IF_BRIDGE
        if target:
            self.tx.update(_u32(ifindex), _u32(ifindex))
        self.ifaces.update(_u32(ifindex), bytes(new))
        self._write_ifidx(ifindex, bytes(new))
        if not target:
            self.tx.delete(_u32(ifindex))
        self.entries[ifindex] = new

    def remove(self, ifindex: int) -> None:
        # The array first (an empty entry sends the program to tna_ifaces), and only its slot
        # changes: a program reading the entry while it is rewritten sees the same flags.
        entry = self.entries.get(ifindex)
        if entry is not None:
            self._write_ifidx(ifindex, bytes(abi.TnaIface(entry.mac, entry.flags, 0)))
        self.ifaces.delete(_u32(ifindex))
        self.tx.delete(_u32(ifindex))
        self.entries.pop(ifindex, None)

    def _write_ifidx(self, ifindex: int, value: bytes) -> None:
        if self.ifidx is not None and ifindex < self.ifidx_max:
            self.ifidx.update(_u32(ifindex), value)

    def _sync_ifidx(self) -> None:
        """tna_ifidx follows tna_ifaces, also where a crash or an older TNA left it behind."""
        if self.ifidx is None:
            return
        for ifindex, entry in self.entries.items():
            value = bytes(entry)
            if (ifindex < self.ifidx_max
                    and (self.ifidx.lookup(_u32(ifindex)) or b"")[:len(value)] != value):
                self.ifidx.update(_u32(ifindex), value)

    def _new_slot(self) -> int:
        used = {e.slot for e in self.entries.values()}
        slot = next((s for s in range(1, abi.max_ifaces()) if s not in used), None)
        if slot is None:
            raise DatapathError(f"more than {abi.max_ifaces() - 1} interfaces")
        zero = bytes(ctypes.sizeof(abi.TnaCounter))
        for code in range(abi.nr_codes()):
            self.stats.update(_u32(slot * abi.nr_codes() + code), zero)
        return slot

    def close(self) -> None:
        for m in (self.ifaces, self.tx, self.stats, self.ifidx):
            if m is not None:
                m.close()


def _open_ifidx() -> tuple[libbpf.Map | None, int]:
    """tna_ifidx and its size, or None where only an older TNA's maps are pinned so far."""
    if not os.path.exists(os.path.join(pin_dir(), "tna_ifidx")):
        return None, 0
    m = open_map("tna_ifidx")
    return m, libbpf.map_info(m.fd).max_entries


def _sync_redirects(clear: bool) -> None:
    """Keep tna_redirects honest about redirect exceptions in the kernel's route cache.

    With exceptions present the pair is made to differ (gateway routes go to Linux); with none,
    and no redirect seen meanwhile, it is made equal again. Only [1] is written here: [0]
    belongs to the data path, which counts redirects as they arrive.
    """
    m = open_map("tna_redirects")
    try:
        def read(key: int) -> int:
            return int(struct.unpack("=Q", (m.lookup(_u32(key)) or bytes(8))[:8])[0])
        seen = read(0)
        exceptions = routecache.redirect_exceptions()
        if exceptions and read(1) == seen:
            m.update(_u32(1), struct.pack("=Q", (seen - 1) % (1 << 64)))
        elif not exceptions and clear and read(0) == seen and read(1) != seen:
            m.update(_u32(1), struct.pack("=Q", seen))
    finally:
        m.close()


def _src_bits(addrs: Iterable[str], size: int) -> bytes:
    """The tna_src_bits value (``size`` bytes) for these denied sources: src_bit() in
    bpf/lib/maps.h, on the address as the program loads it (network order in a host word)."""
    log2 = (size * 8).bit_length() - 1
    words = [0] * (size // 8)
    for addr in addrs:
        raw = struct.unpack("=I", socket.inet_aton(addr))[0]
        bit = (raw * 0x9E3779B1 & 0xFFFFFFFF) >> (32 - log2)
        words[bit // 64] |= 1 << (bit % 64)
    return struct.pack(f"={len(words)}Q", *words)


class _NamespaceMaps:
    """tna_src_deny (with its filter tna_src_bits) and tna_config: stricter values first,
    looser ones after the swaps."""

    def __init__(self) -> None:
        self.deny, self.config = open_map("tna_src_deny"), open_map("tna_config")
        self.current = {socket.inet_ntoa(k) for k in self.deny.all_keys()}
        raw = self.config.lookup(_u32(0))
        self.cfg = abi.TnaConfig.from_buffer_copy(raw[:ctypes.sizeof(abi.TnaConfig)]) \
            if raw else abi.TnaConfig()
        bits = os.path.join(pin_dir(), "tna_src_bits")  # absent: only older maps pinned yet
        self.bits = open_map("tna_src_bits") if os.path.exists(bits) else None
        self._write_bits(self.current)  # also where a crash or an older TNA left it behind

    def restrict(self, ns: Namespace) -> None:
        for addr in ns.denied_sources_v4 - self.current:
            self.deny.update(socket.inet_aton(addr), b"\1")
        self._write_bits(self.current | ns.denied_sources_v4)  # bits after the addresses
        self._write(_min_mtu(self.cfg.route_mtu_v4, ns.route_mtu_v4),
                    _min_mtu(self.cfg.route_mtu_v6, ns.route_mtu_v6))

    def relax(self, ns: Namespace) -> None:
        for addr in self.current - ns.denied_sources_v4:
            self.deny.delete(socket.inet_aton(addr))
        self._write_bits(ns.denied_sources_v4)
        self._write(ns.route_mtu_v4, ns.route_mtu_v6)

    def _write_bits(self, addrs: Iterable[str]) -> None:
        if self.bits is None:
            return
        value = _src_bits(addrs, self.bits.value_size)
        if (self.bits.lookup(_u32(0)) or b"")[:len(value)] != value:
            self.bits.update(_u32(0), value)

    def _write(self, v4: int, v6: int) -> None:
        if (self.cfg.route_mtu_v4, self.cfg.route_mtu_v6) != (v4, v6):
            self.cfg = abi.TnaConfig(v4, v6, self.cfg.fw_gen)
            self.config.update(_u32(0), bytes(self.cfg))

    def write_firewall(self, ns: Namespace) -> None:
        """Fill the firewall generation not in use, then switch to it."""
        gen = 1 - (self.cfg.fw_gen & 1)
        fw = FirewallMaps()
        try:
            fw.write_generation(gen, ns.firewall, ns.ct_timeouts_ms)
        finally:
            fw.close()
        self.cfg = abi.TnaConfig(self.cfg.route_mtu_v4, self.cfg.route_mtu_v6, gen)
        self.config.update(_u32(0), bytes(self.cfg))

    def close(self) -> None:
        self.deny.close()
        self.config.close()
        if self.bits is not None:
            self.bits.close()


# ---- links -----------------------------------------------------------------------------------

def _create_link(ifindex: int, prog_fd: int) -> int:
    """Native XDP where the driver has it; generic only when native is impossible."""
    try:
        return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_DRV_MODE)
    except LibbpfError as e:
        if e.errno == errno.EBUSY:
            raise DatapathError(f"ifindex {ifindex} already has an XDP program") from e
        # EOPNOTSUPP/EINVAL: no native XDP; ERANGE: MTU beyond what a native program takes
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ERANGE):
            raise
    return libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_SKB_MODE)


def _detach_link(link_fd: int) -> None:
    try:
        libbpf.link_detach(link_fd)
    except LibbpfError as e:
        if e.errno not in (errno.ENOLINK, errno.EINVAL, errno.ENODEV):  # device already gone
            raise


def pinned_links() -> list[int]:
    try:
        names = os.listdir(pin_dir())
    except FileNotFoundError:
        return []
    return sorted(int(n[4:]) for n in names if n.startswith("link") and n[4:].isdigit())


def _program_features(prog_fd: int) -> Features | None:
    """The feature block of a loaded TNA program, read from its own read-only map."""
    for map_id in libbpf.prog_map_ids(prog_fd):
        fd = libbpf.map_get_fd_by_id(map_id)
        m = libbpf.Map(fd, 4, ctypes.sizeof(abi.TnaFeatures))
        try:
            if libbpf.map_info(fd).name.decode() == FEATURES_MAP_KERNEL_NAME:
                raw = m.lookup(_u32(0))
                return Features.from_c(raw[:ctypes.sizeof(abi.TnaFeatures)]) if raw else None
        finally:
            m.close()
    return None


def _link_program(link_fd: int) -> tuple[int, Features | None]:
    prog_id = libbpf.link_info(link_fd).prog_id
    prog_fd = libbpf.prog_get_fd_by_id(prog_id)
    try:
        return prog_id, _program_features(prog_fd)
    finally:
        os.close(prog_fd)


class Datapath:
    """TNA's fast path in the current namespace.

    ``owned=False`` (``tna apply``): links are pinned and outlive the process.
    ``owned=True`` (``tna run``): links are held in this process's descriptors.
    """

    def __init__(self, owned: bool = False, obj_path: str | None = None) -> None:
        self.owned = owned
        self.obj_path = obj_path
        self.links: dict[int, int] = {}  # owned mode: ifindex -> link fd
        self._firewall: Written | None = None  # what the firewall maps hold, if we wrote them

    # -- link handles, whichever mode --
    @contextmanager
    def _link(self, ifindex: int) -> Iterator[int | None]:
        if self.owned:
            yield self.links.get(ifindex)
            return
        path = _link_pin(ifindex)
        if not os.path.exists(path):
            yield None
            return
        fd = libbpf.obj_get(path)
        try:
            yield fd
        finally:
            os.close(fd)

    def ifindexes(self) -> list[int]:
        return sorted(self.links) if self.owned else pinned_links()

    def programs(self) -> dict[int, Features | None]:
        """ifindex -> the features of the program running there now."""
        out = {}
        for ifindex in self.ifindexes():
            with self._link(ifindex) as fd:
                if fd is not None:
                    out[ifindex] = _link_program(fd)[1]
        return out

    def prog_ids(self) -> frozenset[int]:
        """Ids of the programs on this datapath's links."""
        out = set()
        for ifindex in self.ifindexes():
            with self._link(ifindex) as fd:
                if fd is not None:
                    out.add(libbpf.link_info(fd).prog_id)
        return frozenset(out)

    def adopt(self) -> list[int]:
        """Take over pinned links (left by ``tna apply`` or ``tna run --keep``), unpinning them.

        Only owned mode adopts; the programs keep running throughout.
        """
        assert self.owned
        taken = []
        for ifindex in pinned_links():
            path = _link_pin(ifindex)
            self.links[ifindex] = libbpf.obj_get(path)
            os.unlink(path)
            taken.append(ifindex)
        return taken

    # -- reconciliation --
    def restrict(self, ifindexes: Iterable[int] | None = None) -> list[int]:
        """Hand all traffic of ``ifindexes`` (None: every interface) back to Linux at once:
        no egress, no family. Map writes only; the next reconciliation relaxes what the new
        plan allows. Returns the interfaces whose entries changed."""
        if not os.path.exists(os.path.join(pin_dir(), SHARED_MAPS[0])):
            return []
        maps = _Maps()
        changed = []
        try:
            scope = maps.entries if ifindexes is None else set(ifindexes) & set(maps.entries)
            for ifindex in scope:
                entry = maps.entries[ifindex]
                flags = _intersect(entry.flags, _NOTHING)
                if flags != entry.flags:
                    maps.write(ifindex, _mac_str(bytes(entry.mac)), flags)
                    changed.append(ifindex)
        finally:
            maps.close()
        return changed

    def reconcile(self, ports: Sequence[Port], namespace: Namespace | None = None) -> Changes:
        """Make the fast path match ``ports`` in three phases (see the module docstring)."""
        _ensure_bpffs()
        os.makedirs(pin_dir(), exist_ok=True)
        self._ensure_maps()
        wanted = {p.ifindex: p for p in ports}
        changes = Changes()
        maps = _Maps()
        ns = _NamespaceMaps()
        redirects = any(p.accept_redirects for p in ports)
        namespace = namespace or Namespace()
        try:
            running = self.programs()
            self._restrict(maps, wanted, running, changes)
            ns.restrict(namespace)
            self._write_firewall(ns, namespace)
            if redirects:
                _sync_redirects(clear=False)
            changes.safe_at = time.monotonic()
            self._swap_programs(wanted, running, changes)
            self._relax(maps, wanted, changes)
            ns.relax(namespace)
            if redirects:
                _sync_redirects(clear=True)
        finally:
            maps.close()
            ns.close()
        return changes

    def _write_firewall(self, ns: _NamespaceMaps, namespace: Namespace) -> None:
        """A changed ruleset is a map update (both generations' layout is fixed), done in the
        restrict phase: a stricter ruleset then holds before any program changes."""
        wanted = Written(namespace.firewall, namespace.ct_timeouts_ms)
        if wanted != self._firewall:
            self._firewall = None  # unknown if the write fails half-way
            ns.write_firewall(namespace)
            self._firewall = wanted

    def _ensure_maps(self) -> None:
        if not all(os.path.exists(os.path.join(pin_dir(), n)) for n in SHARED_MAPS):
            Program(Features(), obj_path=self.obj_path).close()  # creates and pins them

    def _restrict(self, maps: _Maps, wanted: dict[int, Port], running: dict[int, Features | None],
                  changes: Changes) -> None:
        for ifindex, entry in list(maps.entries.items()):
            port = wanted.get(ifindex)
            flags = _intersect(entry.flags, port.flags if port else _NOTHING)
            if port is not None:
                flags |= _gaining_firewall(running.get(ifindex), port.features)
            if flags != entry.flags:
                maps.write(ifindex, port.mac if port else "", flags)
                changes.restricted.append(ifindex)
        for ifindex, port in wanted.items():
            if ifindex not in maps.entries:  # new: known to the program, allowed nothing yet
                maps.write(ifindex, port.mac, _NOTHING)

    def _swap_programs(self, wanted: dict[int, Port], running: dict[int, Features | None],
                       changes: Changes) -> None:
        todo = {i: p.features for i, p in wanted.items()
                if p.features is not None and running.get(i) != p.features}
        # one program per distinct feature set: it reads its interface from the context
        loaded = {f: Program(f, obj_path=self.obj_path) for f in set(todo.values()) if f}
        try:
            for ifindex, features in todo.items():
                assert features is not None
                prog_fd = loaded[features].fd
                if ifindex in running:
                    with self._link(ifindex) as fd:
                        assert fd is not None
                        libbpf.link_update(fd, prog_fd)
                    changes.swapped.append(ifindex)
                else:
                    self._attach(ifindex, prog_fd)
                    changes.attached.append(ifindex)
        finally:
            for prog in loaded.values():
                prog.close()
        for ifindex in running:
            port = wanted.get(ifindex)
            if port is None or port.features is None:
                self._detach(ifindex)
                changes.detached.append(ifindex)

    def _relax(self, maps: _Maps, wanted: dict[int, Port], changes: Changes) -> None:
        for ifindex in list(maps.entries):
            if ifindex not in wanted:
                maps.remove(ifindex)
        for ifindex, port in wanted.items():
            entry = maps.entries[ifindex]
            if (entry.flags, bytes(entry.mac)) != (port.flags, _mac_bytes(port.mac)):
                maps.write(ifindex, port.mac, port.flags)
                changes.relaxed.append(ifindex)

    def _attach(self, ifindex: int, prog_fd: int) -> None:
        link_fd = _create_link(ifindex, prog_fd)
        if self.owned:
            self.links[ifindex] = link_fd
            return
        try:
            libbpf.obj_pin(link_fd, _link_pin(ifindex))
        finally:
            os.close(link_fd)

    def _detach(self, ifindex: int) -> None:
        if self.owned:
            owned_fd = self.links.pop(ifindex)
            try:
                _detach_link(owned_fd)
            finally:
                os.close(owned_fd)
            return
        with self._link(ifindex) as fd:
            if fd is not None:
                _detach_link(fd)
        os.unlink(_link_pin(ifindex))

    def release(self, keep: bool) -> None:
        """Daemon exit: ``keep`` pins the links for a successor; otherwise detach everything."""
        if keep and self.owned:
            for ifindex, fd in self.links.items():
                libbpf.obj_pin(fd, _link_pin(ifindex))
                os.close(fd)
            self.links.clear()
            return
        for ifindex in self.ifindexes():
            self._detach(ifindex)
        shutil.rmtree(pin_dir(), ignore_errors=True)
        with contextlib.suppress(OSError):  # the last namespace gone: leave bpffs as found
            os.rmdir(os.path.dirname(pin_dir()))


# ---- module-level operations for the CLI -----------------------------------------------------

def apply(ports: Sequence[Port], obj_path: str | None = None,
          namespace: Namespace | None = None) -> Changes:
    """``tna apply``: reconcile with pinned links, so the fast path persists."""
    return Datapath(owned=False, obj_path=obj_path).reconcile(ports, namespace)


def detach_all() -> int:
    """Remove every pinned link and map TNA has in this namespace; return links removed."""
    if not os.path.isdir(pin_dir()):
        return 0
    links = pinned_links()
    Datapath(owned=False).release(keep=False)
    return len(links)


def _our_ifaces_map_id() -> int | None:
    path = os.path.join(pin_dir(), "tna_ifaces")
    if not os.path.exists(path):
        return None
    fd = libbpf.obj_get(path)
    try:
        return libbpf.map_info(fd).id
    finally:
        os.close(fd)


def xdp_programs() -> dict[int, tuple[int, str]]:
    """ifindex -> (prog id, mode) of every XDP program attached in this namespace."""
    from pyroute2 import IPRoute

    from tna.introspect import xdp_attachment  # late: introspect imports this module's users

    out = {}
    with IPRoute() as ip:
        for msg in ip.get_links():
            xdp = xdp_attachment(msg.get_attr("IFLA_XDP"), frozenset())
            if xdp and xdp.prog_id:
                out[msg["index"]] = (xdp.prog_id, xdp.mode)
    return out


def attached() -> list[Attached]:
    """Every TNA program attached in this namespace (pinned or owned by a daemon), read back
    from the kernel: a program is ours when it uses this namespace's pinned ``tna_ifaces``."""
    ours = _our_ifaces_map_id()
    if ours is None:
        return []
    out = []
    for ifindex, (prog_id, mode) in sorted(xdp_programs().items()):
        try:
            prog_fd = libbpf.prog_get_fd_by_id(prog_id)
        except LibbpfError:
            continue  # replaced or gone since the dump
        try:
            if ours not in libbpf.prog_map_ids(prog_fd):
                continue
            info = libbpf.prog_info(prog_fd)
            features = _program_features(prog_fd) or Features()
        finally:
            os.close(prog_fd)
        out.append(Attached(ifindex, prog_id, info.xlated_prog_len // 8, features, mode))
    return out


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
    """Write map entries for ``ports`` without touching programs (BPF tests run unattached)."""
    maps = _Maps()
    try:
        for p in ports:
            maps.write(p.ifindex, p.mac, p.flags)
    finally:
        maps.close()


def sync_firewall_for_test(namespace: Namespace) -> None:
    """Write the firewall tables of ``namespace`` (a new generation) without touching programs."""
    ns = _NamespaceMaps()
    try:
        ns.write_firewall(namespace)
    finally:
        ns.close()


def firewall_state(family: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """The table in use for ``family`` (0 v4, 1 v6): its rules as (verdict, counted, target)
    and their (packets, bytes); empty when nothing was loaded."""
    if not os.path.exists(os.path.join(pin_dir(), "tna_fw_tables")):
        return [], []
    ns = _NamespaceMaps()
    fw = FirewallMaps()
    try:
        t = (ns.cfg.fw_gen & 1) * 2 + family
        n = fw.header(t).nrules
        return fw.read_rules(t, n), fw.read_counters(t, n)
    finally:
        fw.close()
        ns.close()


def firewall_counters(family: int) -> list[tuple[int, int]]:
    """(packets, bytes) per flattened rule of the table in use for ``family``."""
    return firewall_state(family)[1]


def sync_namespace_for_test(namespace: Namespace) -> None:
    """Write the namespace-wide maps as a reconciliation would, without touching programs."""
    ns = _NamespaceMaps()
    try:
        ns.restrict(namespace)
        ns.relax(namespace)
    finally:
        ns.close()
