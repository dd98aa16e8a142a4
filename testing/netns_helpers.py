"""Helpers of the end-to-end tests (tests/netns): topologies ready to use, and what the
switch namespace of a bridge topology reports.

A primed router topology in its own testbed, and the NAT tests' gateway router; the fast
path's per-port statistics (``tna stats``), the FDB mirror's view of a MAC (and a predicate to
wait for it), and port interface indexes, read from a :class:`~tna.testbed.BridgeTopology`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from tna import abi, netns
from tna.datapath import fdb
from tna.testbed import BridgeTopology, RouterTopology, Testbed, run_tna
from tna.testbed import tna_stats as stats


@contextlib.contextmanager
def primed_router(prefix: str) -> Iterator[RouterTopology]:
    """The router topology in a testbed of its own (names from ``prefix``), neighbours
    resolved; everything removed on exit, also after a failure."""
    with Testbed(prefix=prefix) as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        yield t


def nat_gateway_router(bed: Testbed, liberal: bool) -> RouterTopology:
    """The router topology of the NAT tests in ``bed``: hosts sending MTU-sized, complete
    frames (no TSO/GSO super-frames), neighbours resolved, conntrack loaded with
    nf_conntrack_tcp_be_liberal set to ``liberal``."""
    t = RouterTopology.build(bed)
    for host in (t.h1, t.h2):
        bed.run(host, "ethtool", "-K", "eth0", "tso", "off", "gso", "off")
    t.prime_neighbours()
    bed.run(t.r, "modprobe", "nf_conntrack", check=False)
    bed.sysctl(t.r, "net.netfilter.nf_conntrack_tcp_be_liberal", str(int(liberal)))
    return t


def port_stats(t: BridgeTopology, port: str) -> dict[str, Any]:
    return stats(t.sw)["interfaces"].get(port, {"forwarded_packets": 0, "bridged_packets": 0,
                                                "transmitted_packets": 0, "punted_packets": 0,
                                                "punt_reasons": {}})


def mirror_port(t: BridgeTopology, mac: str) -> int | None:
    """The port the FDB mirror has ``mac`` behind (None: absent or marked moved)."""
    want = bytes.fromhex(mac.replace(":", ""))
    with netns.entered(t.sw):
        for key, e in fdb.FdbMirror().read().items():
            k = abi.TnaFdbKey.from_buffer_copy(key)
            if bytes(k.mac) == want and not e.flags & abi.TNA_FDB_MOVED:
                return int(e.port)
    return None


def mirror_learnt(t: BridgeTopology, host: str, behind: str | None = None) -> Callable[[], bool]:
    """For wait_for: the FDB mirror has ``host``'s MAC (behind port ``behind``, if given)."""
    def learnt() -> bool:
        port = mirror_port(t, t.mac[host])
        return port is not None if behind is None else port == ifindex(t, behind)
    return learnt


def ifindex(t: BridgeTopology, ifname: str) -> int:
    return int(t.bed.run(t.sw, "cat", f"/sys/class/net/{ifname}/ifindex").stdout)


@contextlib.contextmanager
def router_with_ruleset(prefix: str, ruleset: str) -> Iterator[RouterTopology]:
    """A primed router topology with an nft ``ruleset`` and TNA applied; detached at the end."""
    with Testbed(prefix=prefix) as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        bed.run(t.r, "nft", "-f", "-", input=ruleset)
        run_tna(t.r, "apply")
        try:
            yield t
        finally:
            run_tna(t.r, "detach", check=False)
