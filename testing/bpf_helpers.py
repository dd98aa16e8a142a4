"""Helpers of the BPF program tests (tests/bpf): namespaces, frames, one counted test run.

The router namespace the router and firewall tests run in (tests/bpf/conftest.py makes it the
module-scoped ``router`` fixture), the production object loaded there, the frames they send and
expect back, and a BPF_PROG_TEST_RUN that reports the ingress counters it moved.
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from testing.datapath_hooks import load_for_test, sync_ports_for_test
from tna import abi, netns
from tna.datapath import libbpf, status
from tna.datapath.pins import open_map
from tna.plan.types import Features, Port
from tna.testbed import Testbed

XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
H1_MAC, H2_MAC, H3_MAC = "02:00:00:00:01:02", "02:00:00:00:02:02", "02:00:00:00:03:02"
OTHER_MAC = "02:00:00:00:09:09"
R1_MAC, R2_MAC, R3_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:03:01"


@dataclass
class Router:
    bed: Testbed
    ns: str
    ifindex: dict[str, int]
    prog_fd: int = -1


def _ifindex(bed: Testbed, ns: str, ifname: str) -> int:
    out = bed.run(ns, "cat", f"/sys/class/net/{ifname}/ifindex").stdout
    return int(out)


@contextmanager
def router_namespace() -> Iterator[Router]:
    """r with r1 (ingress, 10.1/24), r2 (eligible egress, 10.2/24, MTU 1400), r3 (ineligible)."""
    with Testbed(prefix="tnabpf") as bed:
        r, h = bed.ns("r"), bed.ns("h")
        for i, mtu in ((1, None), (2, 1400), (3, None)):
            bed.veth(r, f"r{i}", h, f"h{i}", mtu=mtu)
            bed.run(r, "ip", "link", "set", f"r{i}", "address", f"02:00:00:00:0{i}:01")
            bed.run(r, "ip", "addr", "add", f"10.{i}.0.1/24", "dev", f"r{i}")
            bed.run(r, "ip", "addr", "add", f"fd00:{i}::1/64", "dev", f"r{i}")
        bed.sysctl(r, "net.ipv4.ip_forward", "1")
        bed.sysctl(r, "net.ipv6.conf.all.forwarding", "1")
        for i, mac in ((1, H1_MAC), (2, H2_MAC), (3, H3_MAC)):
            bed.run(r, "ip", "neigh", "add", f"10.{i}.0.2", "lladdr", mac, "dev", f"r{i}",
                    "nud", "permanent")
            bed.run(r, "ip", "neigh", "add", f"fd00:{i}::2", "lladdr", mac, "dev", f"r{i}",
                    "nud", "permanent")
        bed.run(r, "ip", "neigh", "add", "10.1.0.3", "lladdr", OTHER_MAC, "dev", "r1",
                "nud", "permanent")
        for kind, net in (("blackhole", "10.9.1.0/24"), ("unreachable", "10.9.2.0/24"),
                          ("prohibit", "10.9.3.0/24")):
            bed.run(r, "ip", "route", "add", kind, net)
        bed.run(r, "ip", "route", "add", "10.9.4.0/24", "via", "10.2.0.99")  # no neighbour
        bed.run(r, "ip", "route", "add", "10.3.9.0/24", "via", "10.3.0.2")
        bed.run(r, "ip", "route", "add", "10.9.8.0/24", "via", "10.2.0.2")  # a gateway route
        bed.run(r, "ip", "-6", "route", "add", "blackhole", "fd00:91::/64")
        yield Router(bed, r, {f"r{i}": _ifindex(bed, r, f"r{i}") for i in (1, 2, 3)})


@contextmanager
def program(router: Router, features: Features) -> Iterator[libbpf.Map]:
    """Load the object with ``features`` in the router namespace; yield the stats map."""
    with netns.entered(router.ns):
        prog = load_for_test(features)
        try:
            sync_ports_for_test([
                Port(router.ifindex["r1"], "r1", R1_MAC, True, features),
                Port(router.ifindex["r2"], "r2", R2_MAC, True, None),
                Port(router.ifindex["r3"], "r3", R3_MAC, False, None),
            ])
            router.prog_fd = prog.fd
            yield open_map("tna_stats")
        finally:
            prog.close()


BPF_MAP_TYPE_ARRAY = 2


def clear_map(name: str) -> None:
    """Empty the current namespace's shared map ``name``: delete every entry, or zero every
    value of an array (whose entries cannot be deleted)."""
    m = open_map(name)
    try:
        info = libbpf.map_info(m.fd)
        if info.type == BPF_MAP_TYPE_ARRAY:
            n = info.max_entries
            keys = b"".join(i.to_bytes(4, "little") for i in range(n))
            m.update_batch(keys, bytes(n * m.value_size), n)
            return
        for key in m.all_keys():
            m.delete(key)
    finally:
        m.close()


def ct_last_key(src: str, sport: int, dst: str, dport: int) -> Any:
    """The tna_ct_last owner of an IPv4 TCP connection (its original-direction tuple)."""
    key = abi.struct_type("tna_ct_last_key")()
    key.family = socket.AF_INET
    key.sport, key.dport = socket.htons(sport), socket.htons(dport)
    key.saddr[:4] = socket.inet_aton(src)
    key.daddr[:4] = socket.inet_aton(dst)
    return key


def ct_last_bucket(raw: bytes) -> int:
    """ct_last_bucket() of bpf/lib/ct_last.h, written again: the bucket of an owner (its
    bytes, as ``bytes(ct_last_key(...))``)."""
    h = 0
    for i in range(0, len(raw), 4):
        h = ((h ^ int.from_bytes(raw[i:i + 4], "little")) * 0x9E3779B1) & 0xFFFFFFFF
    return h >> (32 - abi.defines()["TNA_CT_LAST_BUCKET_BITS"])


def ct_last_records() -> list[Any]:
    """The records of tna_ct_last (conntrack's retransmission counter) in use, as ctypes
    ``struct tna_ct_last``."""
    bucket = abi.struct_type("tna_ct_last_bucket")
    m = open_map("tna_ct_last")
    try:
        values = [m.lookup(k) for k in m.all_keys()]
    finally:
        m.close()
    return [way for v in values if v is not None
            for way in bucket.from_buffer_copy(v[:ctypes.sizeof(bucket)]).way if way.key.family]


def counters(ifindex: int) -> dict[str, int]:
    """Counter name -> packets for one interface (punts and forwards count at ingress)."""
    return {name: c.packets for name, c in status.read_counters().get(ifindex, {}).items()}


def counted_run(prog_fd: int, frame: bytes, ifindex: int) -> tuple[int, bytes, dict[str, int]]:
    """One test run (inside the namespace): verdict, output frame, ingress counters moved."""
    before = counters(ifindex)
    verdict, out, _ = libbpf.test_run(prog_fd, frame, ingress_ifindex=ifindex)
    after = counters(ifindex)
    moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    return verdict, out, moved


def run(router: Router, frame: bytes, ingress: str = "r1") -> tuple[int, bytes, dict[str, int]]:
    """One test run of the router's program; see :func:`counted_run`."""
    return counted_run(router.prog_fd, frame, router.ifindex[ingress])


# Scapy field values differ in type per field: the keyword arguments pass them through.
def v4(dst: str = "10.2.0.2", src: str = "10.1.0.2", **ip: Any) -> Packet:
    return Ether(src=H1_MAC, dst=R1_MAC) / IP(src=src, dst=dst, **{"ttl": 64, **ip})


def v6(dst: str = "fd00:2::2", src: str = "fd00:1::2", **ip: Any) -> Packet:
    return Ether(src=H1_MAC, dst=R1_MAC) / IPv6(src=src, dst=dst, **{"hlim": 64, **ip})


def forwarded_v4(pkt: Packet, dst_mac: str = H2_MAC, src_mac: str = R2_MAC) -> bytes:
    out = pkt.copy()
    out[Ether].src, out[Ether].dst = src_mac, dst_mac
    out[IP].ttl -= 1
    del out[IP].chksum
    return bytes(out)


def forwarded_v6(pkt: Packet, dst_mac: str = H2_MAC, src_mac: str = R2_MAC) -> bytes:
    out = pkt.copy()
    out[Ether].src, out[Ether].dst = src_mac, dst_mac
    out[IPv6].hlim -= 1
    return bytes(out)
