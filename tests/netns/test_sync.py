"""``tna run`` follows configuration changes; each change is followed by a traffic check."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from testing.netns_helpers import primed_router
from tna import traffic
from tna.testbed import DaemonProcess as DaemonProc
from tna.testbed import RouterTopology, run_tna, wait_for

pytestmark = pytest.mark.root


def tna(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tna(ns, *args, check=False)


def forwarded(ns: str, ifname: str = "r1") -> int:
    doc = json.loads(tna(ns, "stats", "--json").stdout)
    return int(doc["interfaces"].get(ifname, {}).get("forwarded_packets", 0))


def xdp_on(t: RouterTopology, ifname: str) -> bool:
    return " xdp" in t.bed.run(t.r, "ip", "-d", "link", "show", ifname).stdout


def fast_udp(t: RouterTopology, dst: str, dst_ns: str | None = None, count: int = 30) -> bool:
    """Delivered, and every datagram went through the fast path."""
    before = forwarded(t.r)
    got = traffic.udp(t.h1, dst_ns or t.h2, dst, count=count)
    return got == count and forwarded(t.r) - before >= count


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with primed_router("tnasync") as t:
        yield t


@pytest.fixture
def daemon(topo: RouterTopology) -> Iterator[DaemonProc]:
    d = DaemonProc(topo.r)
    try:
        yield d
    finally:
        if d.proc.poll() is None:
            d.stop()
    assert d.errors() == []


def test_start_attaches_and_sigterm_detaches(topo: RouterTopology) -> None:
    d = DaemonProc(topo.r)
    assert xdp_on(topo, "r1") and xdp_on(topo, "r2")
    assert fast_udp(topo, topo.h2_v4)
    status = json.loads(tna(topo.r, "status", "--json").stdout)
    assert status["daemon"]["pid"] == d.proc.pid
    assert "already manages" in tna(topo.r, "run").stderr  # one daemon per namespace
    assert "stop it before" in tna(topo.r, "apply").stderr
    assert d.stop() == 0
    assert not xdp_on(topo, "r1") and not xdp_on(topo, "r2")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20) == 20  # Linux alone
    assert d.lines[-1]["event"] == "stop"


def test_route_add_and_remove(topo: RouterTopology, daemon: DaemonProc) -> None:
    topo.bed.run(topo.h2, "ip", "addr", "add", "10.9.0.1/32", "dev", "lo")
    assert traffic.udp(topo.h1, topo.h2, "10.9.0.1", count=5) == 0  # control: no route yet
    topo.bed.run(topo.r, "ip", "route", "add", "10.9.0.0/24", "via", topo.h2_v4)
    assert fast_udp(topo, "10.9.0.1")  # the FIB is read per packet: no daemon work needed
    topo.bed.run(topo.r, "ip", "route", "del", "10.9.0.0/24")
    assert traffic.udp(topo.h1, topo.h2, "10.9.0.1", count=5) == 0


def test_neighbour_change(topo: RouterTopology, daemon: DaemonProc) -> None:
    real = topo.bed.run(topo.r, "ip", "neigh", "show", topo.h2_v4).stdout.split()[4]
    topo.bed.run(topo.r, "ip", "neigh", "replace", topo.h2_v4, "lladdr", "02:00:00:00:99:99",
                 "dev", "r2", "nud", "permanent")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=10) == 0  # sent to the wrong MAC
    topo.bed.run(topo.r, "ip", "neigh", "replace", topo.h2_v4, "lladdr", real, "dev", "r2",
                 "nud", "permanent")
    assert fast_udp(topo, topo.h2_v4)


def test_link_down_and_up(topo: RouterTopology, daemon: DaemonProc) -> None:
    t0 = time.monotonic()
    topo.bed.run(topo.r, "ip", "link", "set", "r2", "down")
    daemon.reconciled_after(t0, "link down")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=5) == 0
    topo.bed.run(topo.r, "ip", "link", "set", "r2", "up")
    wait_for(lambda: topo.ping(topo.h1, topo.h2_v4).returncode == 0, what="path back up")
    wait_for(lambda: fast_udp(topo, topo.h2_v4), what="fast path back")


def test_add_and_remove_an_interface(topo: RouterTopology, daemon: DaemonProc) -> None:
    bed = topo.bed
    h3 = bed.ns("h3")
    t0 = time.monotonic()
    bed.veth(topo.r, "r3", h3, "eth0")
    bed.gro(h3, "eth0")
    bed.tx_csum_offload(h3, "eth0", False)
    bed.run(topo.r, "ip", "addr", "add", "10.3.0.1/24", "dev", "r3")
    bed.run(h3, "ip", "addr", "add", "10.3.0.2/24", "dev", "eth0")
    bed.run(h3, "ip", "route", "add", "default", "via", "10.3.0.1")
    daemon.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0
                and "r3" in e["changes"].get("attached", []), what="r3 attached")
    wait_for(lambda: topo.ping(topo.h1, "10.3.0.2").returncode == 0, what="h3 reachable")
    assert fast_udp(topo, "10.3.0.2", dst_ns=h3)
    t1 = time.monotonic()
    bed.run(topo.r, "ip", "link", "del", "r3")
    daemon.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t1
                and "r3" not in json.dumps(e["changes"].get("attached", [])), what="r3 gone")
    assert fast_udp(topo, topo.h2_v4)  # the others carry on


def test_toggle_forwarding(topo: RouterTopology, daemon: DaemonProc) -> None:
    t0 = time.monotonic()
    topo.bed.sysctl(topo.r, "net.ipv4.ip_forward", "0")
    daemon.reconciled_after(t0, "forwarding off")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=10) == 0  # Linux does not forward
    t1 = time.monotonic()
    topo.bed.sysctl(topo.r, "net.ipv4.ip_forward", "1")
    daemon.reconciled_after(t1, "forwarding on")
    assert fast_udp(topo, topo.h2_v4)


def test_nft_rule_takes_effect_and_removal_restores_fast_path(topo: RouterTopology,
                                                               daemon: DaemonProc) -> None:
    assert fast_udp(topo, topo.h2_v4)  # control
    t0 = time.monotonic()
    topo.bed.run(topo.r, "nft", "-f", "-", input=(
        "table inet tnasync {\n chain forward_filter {\n  type filter hook forward priority 0;\n"
        "  udp dport 9999 drop\n }\n}\n"))
    entry = daemon.reconciled_after(t0, "netfilter rule")
    assert "netfilter" in entry["why"] and entry["preempted"] == ["*"]  # safety first
    # the programs gain the forward hook (a swap); the rule itself is data in the maps
    assert entry["safe_mono"] - t0 < 0.1 and entry["changes"].get("swapped")
    assert fast_udp(topo, topo.h2_v4)  # other traffic stays fast
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20, port=9999) == 0
    t1 = time.monotonic()
    topo.bed.run(topo.r, "nft", "delete", "table", "inet", "tnasync")
    daemon.reconciled_after(t1, "netfilter rule removed")
    assert fast_udp(topo, topo.h2_v4)


def test_program_swaps_under_traffic_lose_nothing(topo: RouterTopology,
                                                  daemon: DaemonProc) -> None:
    count = 3000
    server = traffic._start_server(topo.h2, "udp-server", topo.h2_v4, "--port", "5400",
                                   "--count", str(count))
    client = subprocess.Popen(traffic._in_ns(topo.h1, "udp-client", topo.h2_v4, "--port",
                                             "5400", "--count", str(count)))
    swaps = 0
    try:
        for i in range(8):  # rp_filter toggles change the program's features: a swap each
            t0 = time.monotonic()
            topo.bed.sysctl(topo.r, "net.ipv4.conf.r1.rp_filter", str((i + 1) % 2))
            entry = daemon.reconciled_after(t0, "rp_filter swap")
            swaps += len(entry["changes"].get("swapped", []))
        client.wait(timeout=60)
        received = traffic._finish(server, 3.0)
    finally:
        client.kill()
        server.kill()
    assert swaps >= 8
    assert received == count


def test_sigkill_leaves_linux_in_charge(topo: RouterTopology) -> None:
    d = DaemonProc(topo.r)
    assert xdp_on(topo, "r1")
    d.stop(signal.SIGKILL)
    wait_for(lambda: not xdp_on(topo, "r1") and not xdp_on(topo, "r2"),
             what="kernel releasing the dead daemon's links")
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20) == 20
    topo.bed.run(topo.r, "nft", "-f", "-", input=(
        "table inet k {\n chain forward_filter {\n  type filter hook forward priority 0;\n"
        "  udp dport 9999 drop\n }\n}\n"))
    assert traffic.udp(topo.h1, topo.h2, topo.h2_v4, count=20, port=9999) == 0
    assert "daemon" not in tna(topo.r, "status").stdout.split(":")[0]


def test_keep_and_adopt_without_a_gap(topo: RouterTopology) -> None:
    count = 2000
    server = traffic._start_server(topo.h2, "udp-server", topo.h2_v4, "--port", "5401",
                                   "--count", str(count))
    first = DaemonProc(topo.r, "--keep")
    client = subprocess.Popen(traffic._in_ns(topo.h1, "udp-client", topo.h2_v4, "--port",
                                             "5401", "--count", str(count)))
    try:
        assert first.stop() == 0
        assert xdp_on(topo, "r1")  # kept for the successor
        second = DaemonProc(topo.r)
        assert set(second.lines[0]["adopted"]) == {"r1", "r2"}
        client.wait(timeout=60)
        received = traffic._finish(server, 3.0)
        assert second.stop() == 0
    finally:
        client.kill()
        server.kill()
    assert received == count
    assert not xdp_on(topo, "r1")


def test_sighup_resyncs(topo: RouterTopology, daemon: DaemonProc) -> None:
    t0 = time.monotonic()
    daemon.proc.send_signal(signal.SIGHUP)
    entry = daemon.wait(lambda e: e["event"] == "reconcile" and "sighup" in e["why"]
                        and e["done_mono"] > t0, what="SIGHUP resync")
    assert entry["changes"] == {}


def test_route_burst_with_overruns_ends_equal_to_the_kernel(topo: RouterTopology) -> None:
    """10,000 route changes into a tiny socket buffer: ENOBUFS, then a full resync.

    The daemon is stopped during the burst, so the overrun is certain, not a race."""
    d = DaemonProc(topo.r, env={"TNA_NETLINK_RCVBUF": "4096"})
    try:
        lines = [f"route add 10.{100 + i // 250}.{i % 250}.0/24 via {topo.h2_v4}"
                 for i in range(10_000)]
        # last: a multipath route, which must take IPv4 back to Linux
        lines.append(f"route add 10.99.0.0/24 nexthop via {topo.h2_v4} nexthop via "
                     f"{topo.h2_v4}")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGSTOP)
        try:
            topo.bed.run(topo.r, "ip", "-batch", "-", input="\n".join(lines) + "\n",
                         timeout=120)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        d.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0
               and "overrun" in e["why"], timeout=30, what="overrun resync")
        d.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0
                       and {"r1", "r2"} <= set(e["changes"].get("swapped", [])), timeout=30,
                       what="multipath guard: IPv4 out of the programs")
        plan = json.loads(tna(topo.r, "plan", "--json").stdout)
        assert "multipath_route" in {s["reason"] for s in plan["slow_path"]}
        status = json.loads(tna(topo.r, "status", "--json").stdout)
        assert all("ipv4_router" not in r["features"] for r in status["interfaces"])
        assert d.proc.poll() is None and d.errors() == []
    finally:
        d.stop()


def test_new_local_address_stops_forwarding_from_it(topo: RouterTopology,
                                                    daemon: DaemonProc) -> None:
    """A source the router now owns is martian to Linux; the fast path must follow."""
    import socket

    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    from tna import netns

    def spoofed_sends() -> int:
        before = json.loads(tna(topo.r, "stats", "--json").stdout)["interfaces"]["r1"]
        r1_mac = topo.bed.run(topo.r, "cat", "/sys/class/net/r1/address").stdout.strip()
        frame = bytes(Ether(dst=r1_mac) / IP(src="10.2.0.77", dst=topo.h2_v4) / UDP(dport=7))
        with netns.entered(topo.h1), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind(("eth0", 0))
            for _ in range(5):
                s.send(frame)
        wait_for(lambda: json.loads(tna(topo.r, "stats", "--json").stdout)["interfaces"]["r1"]
                 ["punted_packets"] + json.loads(tna(topo.r, "stats", "--json").stdout)
                 ["interfaces"]["r1"]["forwarded_packets"]
                 >= before["punted_packets"] + before["forwarded_packets"] + 5,
                 what="spoofed frames counted")
        after = json.loads(tna(topo.r, "stats", "--json").stdout)["interfaces"]["r1"]
        return int(after["punt_reasons"]["martian"] - before["punt_reasons"]["martian"])

    assert spoofed_sends() == 0  # control: an ordinary source is forwarded
    t0 = time.monotonic()
    topo.bed.run(topo.r, "ip", "addr", "add", "10.2.0.77/32", "dev", "r2")
    entry = daemon.reconciled_after(t0, "address added")
    assert "addr4" in entry["why"] and entry["preempted"] == ["*"]
    assert spoofed_sends() == 5


def test_new_local_ipv6_address_is_delivered_not_forwarded(topo: RouterTopology,
                                                           daemon: DaemonProc) -> None:
    """With fib_direct_v6 the main table alone is asked; an address the router now owns must
    be recognised (tna_local_v6) as the local table would, or its frames would be forwarded."""
    import socket

    from scapy.layers.inet import UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    from tna import netns

    target = "fd00:2::77"
    h2_mac = topo.bed.run(topo.h2, "cat", "/sys/class/net/eth0/address").stdout.strip()
    topo.bed.run(topo.r, "ip", "neigh", "replace", target, "lladdr", h2_mac, "dev", "r2",
                 "nud", "permanent")

    def stats() -> dict[str, Any]:
        return dict(json.loads(tna(topo.r, "stats", "--json").stdout)["interfaces"]["r1"])

    def sends() -> tuple[int, int]:
        """(forwarded, punted as not_forwarded) of 5 frames to ``target``."""
        before = stats()
        r1_mac = topo.bed.run(topo.r, "cat", "/sys/class/net/r1/address").stdout.strip()
        frame = bytes(Ether(dst=r1_mac) / IPv6(src=topo.h1_v6, dst=target) / UDP(dport=7))
        with netns.entered(topo.h1), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind(("eth0", 0))
            for _ in range(5):
                s.send(frame)
        wait_for(lambda: stats()["punted_packets"] + stats()["forwarded_packets"]
                 >= before["punted_packets"] + before["forwarded_packets"] + 5,
                 what="frames counted")
        after = stats()
        return (int(after["forwarded_packets"] - before["forwarded_packets"]),
                int(after["punt_reasons"].get("not_forwarded", 0)
                    - before["punt_reasons"].get("not_forwarded", 0)))

    status = json.loads(tna(topo.r, "status", "--json").stdout)
    assert all("fib_direct_v6" in r["features"] for r in status["interfaces"]
               if r["ifname"] == "r1")
    assert sends() == (5, 0)  # control: the neighbour makes the main table forward it
    t0 = time.monotonic()
    topo.bed.run(topo.r, "ip", "addr", "add", f"{target}/128", "dev", "r2")
    entry = daemon.reconciled_after(t0, "address added")
    assert "addr6" in entry["why"] and entry["preempted"] == ["*"]
    assert sends() == (0, 5)
