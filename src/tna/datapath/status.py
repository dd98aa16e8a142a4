"""Reading back what runs: TNA's attached programs, their features, and the counters.

Role in the flow: the data path's read side, for ``tna status``/``tna stats`` and the control
loop.  Everything is read from the kernel, never from bookkeeping, so it cannot be stale.
"""

from __future__ import annotations

import ctypes
import os
import socket
from dataclasses import dataclass

from tna import abi
from tna.datapath import libbpf
from tna.datapath.firewall import FirewallMaps
from tna.datapath.libbpf import LibbpfError
from tna.datapath.maps import read_ifaces
from tna.datapath.pins import open_map, pin_dir, pinned, u32
from tna.datapath.program import program_features
from tna.plan.types import Features

XDP_MODES = {libbpf.XDP_ATTACHED_DRV: "native", libbpf.XDP_ATTACHED_SKB: "generic",
             libbpf.XDP_ATTACHED_HW: "offload", libbpf.XDP_ATTACHED_MULTI: "multi"}


@dataclass(frozen=True)
class Attached:
    ifindex: int
    prog_id: int
    xlated_insns: int
    features: Features
    mode: str  # "native" or "generic"


def _our_ifaces_map_id() -> int | None:
    if not pinned("tna_ifaces"):
        return None
    fd = libbpf.obj_get(os.path.join(pin_dir(), "tna_ifaces"))
    try:
        return libbpf.map_info(fd).id
    finally:
        os.close(fd)


def xdp_programs() -> dict[int, tuple[int, str]]:
    """ifindex -> (prog id, mode) of every XDP program attached in this namespace."""
    out = {}
    for ifindex, _ in socket.if_nameindex():
        try:
            query = libbpf.xdp_query(ifindex)
        except LibbpfError:
            continue  # the device went away since the listing
        mode = XDP_MODES.get(query.attach_mode)
        # in "multi" mode there is no single program id, only the per-mode ones
        prog_id = query.prog_id or query.drv_prog_id or query.skb_prog_id or query.hw_prog_id
        if mode and prog_id:
            out[ifindex] = (prog_id, mode)
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
            features = program_features(prog_fd) or Features()
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
    if not pinned("tna_stats"):
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
                per_cpu = stats.lookup_percpu(u32(slot * abi.nr_codes() + code))
                vals = [abi.TnaCounter.from_buffer_copy(v) for v in per_cpu]
                row[name] = Counter(sum(v.packets for v in vals), sum(v.bytes for v in vals))
        return out
    finally:
        ifaces.close()
        stats.close()


def firewall_state(family: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]]]:
    """The table in use for ``family`` (0 v4, 1 v6): its rules as (verdict, counted, target)
    and their (packets, bytes); empty when nothing was loaded."""
    if not pinned("tna_fw_tables"):
        return [], []
    config = open_map("tna_config")
    fw = FirewallMaps()
    try:
        raw = config.lookup(u32(0)) or bytes(ctypes.sizeof(abi.TnaConfig))
        cfg = abi.TnaConfig.from_buffer_copy(raw[:ctypes.sizeof(abi.TnaConfig)])
        t = (cfg.fw_gen & 1) * 2 + family
        n = fw.header(t).nrules
        return fw.read_rules(t, n), fw.read_counters(t, n)
    finally:
        fw.close()
        config.close()
