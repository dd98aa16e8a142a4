"""``tna run`` with bridges: a new bridge port is picked up, a moving MAC is followed."""

from __future__ import annotations

import time

import pytest

from testing.netns_helpers import ifindex, mirror_port, port_stats
from tna import traffic
from tna.testbed import BridgeTopology, DaemonProcess, Testbed, wait_for

pytestmark = pytest.mark.root


def test_daemon_accelerates_a_new_bridge_port() -> None:
    with Testbed(prefix="tnasbr") as bed:
        t = BridgeTopology.build(bed, {"br0": 2})
        d = DaemonProcess(t.sw)
        try:
            t.prime(("h1", "h2"))
            h3 = bed.ns("h3")
            bed.veth(h3, "eth0", t.sw, "p3")
            bed.gro(h3, "eth0")
            bed.tx_csum_offload(h3, "eth0", False)
            bed.run(h3, "ip", "link", "set", "eth0", "address", "02:00:0a:00:00:03")
            bed.run(h3, "ip", "addr", "add", "10.10.0.3/24", "dev", "eth0")
            t0 = time.monotonic()
            bed.run(t.sw, "ip", "link", "set", "p3", "master", "br0")
            d.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0
                   and "p3" in e["changes"].get("attached", []), what="p3 attached")
            wait_for(lambda: bed.run(t.hosts["h1"], "ping", "-n", "-c", "1", "-W", "1",
                                     "10.10.0.3", check=False).returncode == 0,
                     what="h3 reachable")
            wait_for(lambda: mirror_port(t, "02:00:0a:00:00:03") == ifindex(t, "p3"),
                     what="the daemon's mirror learning h3")
            before = port_stats(t, "p1")["bridged_packets"]
            assert traffic.udp(t.hosts["h1"], h3, "10.10.0.3", count=100) == 100
            assert port_stats(t, "p1")["bridged_packets"] - before >= 100
        finally:
            d.stop()
        assert d.errors() == []


def test_daemon_follows_a_moving_mac() -> None:
    with Testbed(prefix="tnasbr") as bed:
        t = BridgeTopology.build(bed, {"br0": 3})
        new = bed.ns("h2new")
        bed.veth(new, "eth0", t.sw, "p4")
        bed.gro(new, "eth0")
        bed.tx_csum_offload(new, "eth0", False)
        bed.run(t.sw, "ip", "link", "set", "p4", "master", "br0")
        d = DaemonProcess(t.sw)
        try:
            t.prime(("h1", "h2"))
            wait_for(lambda: mirror_port(t, t.mac["h2"]) == ifindex(t, "p2"),
                     what="h2 behind p2")
            bed.run(t.hosts["h2"], "ip", "addr", "flush", "dev", "eth0")
            bed.run(t.hosts["h2"], "ip", "link", "set", "eth0", "address", "02:00:0a:00:00:77")
            bed.run(new, "ip", "link", "set", "eth0", "address", t.mac["h2"])
            bed.run(new, "ip", "addr", "add", f"{t.v4['h2']}/24", "dev", "eth0")
            p2_tx = port_stats(t, "p2")["transmitted_packets"]
            assert bed.run(new, "ping", "-n", "-c", "1", "-W", "1", t.v4["h1"],
                           check=False).returncode == 0  # the first frame from the new port
            assert traffic.udp(t.hosts["h1"], new, t.v4["h2"], count=100) == 100
            wait_for(lambda: mirror_port(t, t.mac["h2"]) == ifindex(t, "p4"),
                     what="the daemon's mirror following h2 to p4")
            p4_tx = port_stats(t, "p4")["transmitted_packets"]
            assert traffic.udp(t.hosts["h1"], new, t.v4["h2"], count=100) == 100
            assert port_stats(t, "p4")["transmitted_packets"] - p4_tx >= 100
            assert port_stats(t, "p2")["transmitted_packets"] == p2_tx  # none to the old port
        finally:
            d.stop()
        assert d.errors() == []
