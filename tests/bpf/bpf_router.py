"""The router namespace the BPF program tests run in (shared by the router and firewall tests)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tna.testbed import Testbed

H1_MAC, H2_MAC, H3_MAC = "02:00:00:00:01:02", "02:00:00:00:02:02", "02:00:00:00:03:02"
OTHER_MAC = "02:00:00:00:09:09"


@dataclass
class Router:
    bed: Testbed
    ns: str
    ifindex: dict[str, int]
    prog_fd: int = -1


def _ifindex(bed: Testbed, ns: str, ifname: str) -> int:
    out = bed.run(ns, "cat", f"/sys/class/net/{ifname}/ifindex").stdout
    return int(out)


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
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


