"""The benchmark's own BPF objects (traffic sources, sink, references) and unpinned XDP links.

Role in the flow: loads ``bench/bench_*.bpf.o`` (package data, built from ``bpf/bench/``)
through TNA's libbpf binding with their load-time configuration in ``.rodata.cfg``, attaches
the XDP ones with BPF links that are never pinned (closing the link fd detaches; deleting the
namespace does too) and reads the sink's per-CPU counter.  Nothing here touches TNA's pinned
maps or links.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
from dataclasses import dataclass

from tna import abi, netns
from tna.datapath import libbpf
from tna.testbed import Testbed

CFG_MAP = ".rodata.cfg"
HDR_LEN = 64  # BENCH_HDR_LEN in bpf/bench/bench_gen.h
MAX_BURST = 256  # BENCH_MAX_BURST in bpf/bench/bench_skbgen.bpf.c


class GenCfg(ctypes.Structure):
    """struct bench_gen_cfg (bpf/bench/bench_gen.h)."""

    _fields_ = [("hdr", ctypes.c_uint8 * HDR_LEN), ("var_off", ctypes.c_uint32),
                ("var_count", ctypes.c_uint32), ("var_base", ctypes.c_uint32),
                ("csum_off", ctypes.c_uint16 * 2), ("csum_udp", ctypes.c_uint8 * 2),
                ("pad", ctypes.c_uint8 * 2),
                ("var_step", ctypes.c_uint32)]


class SkbGenCfg(ctypes.Structure):
    """struct bench_skbgen_cfg (bpf/bench/bench_skbgen.bpf.c)."""

    _fields_ = [("gen", GenCfg), ("ifindex", ctypes.c_uint32), ("burst", ctypes.c_uint32)]


class RelayCfg(ctypes.Structure):
    """struct bench_relay_cfg (bpf/bench/bench_relay.bpf.c)."""

    _fields_ = [("ifindex", ctypes.c_uint32)]


class SolCfg(ctypes.Structure):
    """struct bench_sol_cfg (bpf/bench/bench_sol.bpf.c)."""

    _fields_ = [("dmac", ctypes.c_uint8 * 6), ("smac", ctypes.c_uint8 * 6),
                ("ifindex", ctypes.c_uint32), ("rewrite_l2", ctypes.c_uint8),
                ("rewrite_l3", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 2)]


def object_path(name: str) -> str:
    path = abi.BPF_DIR / "bench" / f"{name}.bpf.o"
    if not path.exists():
        raise abi.BuildMissing(f"{path} is missing: run 'make build'")
    return str(path)


class BpfObject:
    """One opened and loaded object; ``cfg`` becomes its ``.rodata.cfg`` before the load."""

    def __init__(self, name: str, cfg: ctypes.Structure | None = None) -> None:
        lib = libbpf.lib()
        self.name = name
        self.obj = libbpf.check_ptr(lib.bpf_object__open_file(object_path(name).encode(), None),
                                    f"open {name}")
        try:
            if cfg is not None:
                m = libbpf.check_ptr(lib.bpf_object__find_map_by_name(self.obj, CFG_MAP.encode()),
                                     f"{name}: find {CFG_MAP}")
                size = lib.bpf_map__value_size(m)
                raw = bytes(cfg)
                if size != len(raw):  # the C struct and its ctypes mirror drifted apart
                    raise RuntimeError(f"{name}: {CFG_MAP} is {size} bytes, config {len(raw)}")
                libbpf.check(lib.bpf_map__set_initial_value(m, raw, len(raw)), "set config")
            libbpf.check(lib.bpf_object__load(self.obj), f"load {name}")
        except Exception:
            self.close()
            raise

    def prog_fd(self, prog: str) -> int:
        lib = libbpf.lib()
        p = libbpf.check_ptr(lib.bpf_object__find_program_by_name(self.obj, prog.encode()),
                             f"{self.name}: find program {prog}")
        return libbpf.check(lib.bpf_program__fd(p), f"{prog} fd")

    def map_fd(self, name: str) -> int:
        lib = libbpf.lib()
        m = libbpf.check_ptr(lib.bpf_object__find_map_by_name(self.obj, name.encode()),
                             f"{self.name}: find map {name}")
        return libbpf.check(lib.bpf_map__fd(m), f"{name} fd")

    def close(self) -> None:
        if self.obj:
            libbpf.lib().bpf_object__close(self.obj)
            self.obj = 0


@dataclass
class Link:
    """An unpinned XDP link; the program stays attached while ``fd`` is open."""

    fd: int
    ifindex: int

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def attach(ns: str, ifname: str, prog_fd: int) -> Link:
    """Attach ``prog_fd`` in native mode to ``ifname`` of namespace ``ns``."""
    with netns.entered(ns):
        ifindex = ifindex_of(ifname)
        fd = libbpf.xdp_link_create(prog_fd, ifindex, libbpf.XDP_FLAGS_DRV_MODE)
    return Link(fd, ifindex)


BPF_TCX_INGRESS = 46  # enum bpf_attach_type


def attach_tcx(ns: str, ifname: str, prog_fd: int) -> Link:
    """Attach the SCHED_CLS ``prog_fd`` to tcx ingress of ``ifname`` in ``ns`` (a BPF link)."""
    with netns.entered(ns):
        ifindex = ifindex_of(ifname)
        opts = libbpf.LinkCreateOpts(sz=ctypes.sizeof(libbpf.LinkCreateOpts))
        fd = libbpf.check(libbpf.lib().bpf_link_create(prog_fd, ifindex, BPF_TCX_INGRESS,
                                                         ctypes.byref(opts)),
                          f"attach tcx ingress to {ifname}")
    return Link(fd, ifindex)


def ifindex_of(ifname: str) -> int:
    """ifindex of ``ifname`` in the current thread's namespace.

    Asked through a socket, which is opened in the thread's namespace; /sys/class/net would
    show the namespace sysfs was mounted in.
    """
    return socket.if_nametoindex(ifname)


class SinkCfg(ctypes.Structure):
    """struct bench_sink_cfg (bpf/bench/bench_sink.bpf.c)."""

    _fields_ = [("only_len", ctypes.c_uint32)]


class Sink:
    """bench_sink attached to one interface; ``packets()`` sums its per-CPU counter.

    ``tc``: bench_tc_sink at tcx ingress instead of XDP (no skb-to-XDP conversion on a veth).
    ``only_len``: count frames of that length only (for exact counts; 0 counts every frame).
    """

    def __init__(self, ns: str, ifname: str, tc: bool = False, only_len: int = 0) -> None:
        self.obj = BpfObject("bench_sink", SinkCfg(only_len))
        self.prog = "bench_tc_sink" if tc else "bench_sink"
        self.counter = libbpf.Map(os.dup(self.obj.map_fd("bench_count")), 4, 16, percpu=True)
        try:
            how = attach_tcx if tc else attach
            self.link = how(ns, ifname, self.obj.prog_fd(self.prog))
        except Exception:
            self.counter.close()
            self.obj.close()
            raise

    def packets(self) -> int:
        return sum(self.packets_per_cpu())

    def packets_per_cpu(self) -> list[int]:
        """Frames counted so far on each possible CPU (index = CPU number)."""
        return [struct.unpack("=QQ", v)[0]
                for v in self.counter.lookup_percpu(struct.pack("=I", 0))]

    def close(self) -> None:
        self.link.close()
        self.counter.close()
        self.obj.close()


class Park:
    """Idle veth devices in a namespace of their own, to keep programs "attached somewhere".

    BPF_PROG_TEST_RUN with repeat > 1 swaps the program into the XDP dispatcher and out again,
    and that swap waits for an RCU grace period (~25 ms here) unless the program is attached
    already; a program outside the dispatcher is also called indirectly (a retpoline on this
    machine).  Parking the generator and every micro-benchmarked program avoids both.
    """

    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.ns = ""
        self.links: list[Link] = []
        self._free: list[str] = []
        self._pairs = 0

    def _device(self) -> str:
        if not self.ns:
            self.ns = self.bed.ns("park")
        if not self._free:
            a, b = f"pk{self._pairs}a", f"pk{self._pairs}b"
            self._pairs += 1
            # Left down: nothing ever arrives, so a parked program never runs.
            self.bed.run(self.ns, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
            self._free += [a, b]
        return self._free.pop()

    def attach(self, prog_fd: int) -> Link:
        dev = self._device()
        link = attach(self.ns, dev, prog_fd)
        self.links.append(link)
        return link

    def close(self) -> None:
        for link in self.links:
            link.close()
        self.links.clear()
