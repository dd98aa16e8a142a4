"""Reading back what runs: TNA's attached programs, their features, and the counters.

Role in the flow: the data path's read side, for ``tna status``/``tna stats`` and the control
loop.  Everything is read from the kernel, never from bookkeeping, so it cannot be stale.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections import Counter as Tally
from dataclasses import dataclass

from tna import abi, netlink
from tna.datapath import libbpf
from tna.datapath.firewall import FirewallMaps
from tna.datapath.libbpf import LibbpfError
from tna.datapath.maps import read_ifaces
from tna.datapath.pins import MapIds, bind, has_map, open_map, prog_maps, u32
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


RTM_GETLINK, IFLA_XDP = 18, 43
IFLA_XDP_ATTACHED, IFLA_XDP_PROG_ID = 2, 4
IFLA_XDP_MODE_PROG_IDS = (5, 6, 7)  # drv, skb, hw: in "multi" mode there is no single id
IFINFOMSG = struct.Struct("=BxHiII")


def xdp_programs() -> dict[int, tuple[int, str]]:
    """ifindex -> (prog id, mode) of every XDP program attached in this namespace (one link
    dump, whatever the number of interfaces)."""
    out = {}
    for _, body in netlink.dump(netlink.NETLINK_ROUTE, RTM_GETLINK,
                                IFINFOMSG.pack(0, 0, 0, 0, 0)):
        ifindex = IFINFOMSG.unpack_from(body)[2]
        raw = netlink.parse_attrs(body[IFINFOMSG.size:]).get(IFLA_XDP)
        if raw is None:
            continue
        xdp = netlink.parse_attrs(raw)
        mode = XDP_MODES.get(xdp.get(IFLA_XDP_ATTACHED, b"\0")[0])
        ids = [struct.unpack("=I", xdp[a][:4])[0]
               for a in (IFLA_XDP_PROG_ID, *IFLA_XDP_MODE_PROG_IDS) if a in xdp]
        prog_id = next((i for i in ids if i), 0)
        if mode and prog_id:
            out[ifindex] = (prog_id, mode)
    return out


def tna_programs() -> dict[int, tuple[int, str, MapIds]]:
    """ifindex -> (prog id, mode, maps) of every TNA program attached in this namespace,
    recognised by what it is (:func:`~tna.datapath.pins.tna_maps`), not by any pin."""
    out = {}
    seen: dict[int, MapIds | None] = {}  # programs are shared by interfaces: look once
    for ifindex, (prog_id, mode) in xdp_programs().items():
        if prog_id not in seen:
            seen[prog_id] = prog_maps(prog_id)
        maps = seen[prog_id]
        if maps is not None:
            out[ifindex] = (prog_id, mode, maps)
    return out


def main_map_set(programs: dict[int, tuple[int, str, MapIds]]) -> MapIds | None:
    """The map set most of TNA's programs here read (normally all of them read one)."""
    tally = Tally(frozenset(maps.items()) for _, _, maps in programs.values())
    if not tally:
        return None
    return dict(tally.most_common(1)[0][0])


def bind_attached() -> MapIds | None:
    """Open this namespace's maps through the programs attached here from now on (see
    :func:`~tna.datapath.pins.bind`); nothing attached: through the pins."""
    maps = main_map_set(tna_programs())
    bind(maps)
    return maps


def attached() -> list[Attached]:
    """Every TNA program attached in this namespace (pinned, moved, or owned by a daemon),
    read back from the kernel."""
    out = []
    for ifindex, (prog_id, mode, _) in sorted(tna_programs().items()):
        try:
            prog_fd = libbpf.prog_get_fd_by_id(prog_id)
        except LibbpfError:
            continue  # replaced or gone since the dump
        try:
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
    if not has_map("tna_stats"):
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
    if not has_map("tna_fw_tables"):
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
