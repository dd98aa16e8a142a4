"""The programs' requests about liberal TCP connections, as the data path's read side.

Role in the flow: ``tna run`` (docs/stateful.md).  The programs put the original-direction
tuple of a TCP connection into the shared ring ``tna_liberal_req`` (``bpf/lib/ct_liberal.h``):
to mark an established connection that only conntrack's window tracking keeps off the fast path
liberal (``tna run --tcp-liberal``), or to close an entry whose liberal side reset the
connection after data the kernel did not see (the RST repair).  They count what they asked for,
and what a full ring lost, in ``tna_liberal_cnt``.  This module reads both; the daemon
(:mod:`tna.liberal`) acts on the requests.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

from tna import abi
from tna.datapath import libbpf
from tna.datapath.pins import has_map, map_fd, u32

RING_MAP, STATS_MAP = "tna_liberal_req", "tna_liberal_cnt"
Record = abi.struct_type("tna_liberal_req")
Stats = abi.struct_type("tna_liberal_stats")


MARK, RESET = abi.TNA_LIBERAL_MARK, abi.TNA_LIBERAL_RESET


@dataclass(frozen=True)
class Request:
    """A connection, by conntrack's original-direction tuple (zone 0), and what to do with it:
    :data:`MARK` it liberal, or close it after side ``dir``'s :data:`RESET`."""

    family: int  # socket.AF_INET or AF_INET6
    saddr: str
    daddr: str
    sport: int
    dport: int
    l4proto: int = socket.IPPROTO_TCP
    kind: int = MARK
    dir: int = 0  # RESET: the RST's direction (0 original, 1 reply)

    def __str__(self) -> str:
        return f"{self.saddr}:{self.sport} > {self.daddr}:{self.dport}"


def decode(raw: bytes) -> Request:
    r = Record.from_buffer_copy(raw[:ctypes.sizeof(Record)])
    size = 16 if r.family == socket.AF_INET6 else 4
    return Request(r.family, str(ipaddress.ip_address(bytes(r.saddr)[:size])),
                   str(ipaddress.ip_address(bytes(r.daddr)[:size])), socket.ntohs(r.sport),
                   socket.ntohs(r.dport), r.l4proto, r.kind, r.dir)


class RequestRing:
    """The namespace's request ring, open: :meth:`poll` hands each request to ``on_request``
    in the order the programs asked."""

    def __init__(self, on_request: Callable[[Request], None]) -> None:
        self.fd = map_fd(RING_MAP)
        try:
            self.map_id = libbpf.map_info(self.fd).id
            self._ring = libbpf.RingBuffer(self.fd, lambda raw: on_request(decode(raw)))
        except BaseException:
            os.close(self.fd)
            raise

    def poll(self, timeout_ms: int) -> int:
        return self._ring.poll(timeout_ms)

    def close(self) -> None:
        self._ring.close()
        os.close(self.fd)


def current_ring_id() -> int | None:
    """The id of the ring the running programs write to (None: no programs, no ring)."""
    if not has_map(RING_MAP):
        return None
    fd = map_fd(RING_MAP)
    try:
        return int(libbpf.map_info(fd).id)
    finally:
        os.close(fd)


def read_stats() -> tuple[int, int] | None:
    """(requested, lost) since the maps were created, over all CPUs; None without them."""
    if not has_map(STATS_MAP):
        return None
    m = libbpf.Map(map_fd(STATS_MAP), 4, ctypes.sizeof(Stats), percpu=True)
    try:
        per_cpu = [Stats.from_buffer_copy(v) for v in m.lookup_percpu(u32(0))]
    finally:
        m.close()
    return sum(s.requested for s in per_cpu), sum(s.lost for s in per_cpu)
