"""A stateful NAT gateway on the fast path: h1 -- r -- h2, r masquerading h1 (or forwarding a
port to h2), with ``ct state established,related accept``, ``ct state invalid drop`` and policy
drop on the forward hook.

A TCP download of 50 MB through the NAT must arrive byte for byte (sha256), be carried mostly
by the fast path (TNA's counters against the flow's packets), and close as Linux closes it: by
FIN or by RST, with conntrack's entry in the state Linux alone would leave it in.  UDP through
the NAT is fast in both directions.  An out-of-window segment is still dropped as invalid.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testing.netns_helpers import nat_gateway_router
from tna import netns
from tna.testbed import DaemonProcess, RouterTopology, Testbed, run_tna, tna_stats, wait_for

pytestmark = pytest.mark.root

SIZE = 50 << 20
PORT = 5001
FORWARDED_PORT = 8080  # r2's port forwarded to h2:PORT (DNAT)

RULESET = """
table ip tnanat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "r1" tcp dport %(fwd)d dnat to %(h2)s:%(port)d
        iifname "r1" udp dport %(fwd)d dnat to %(h2)s:%(port)d
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        ct status dnat accept
        oifname "r2" masquerade
    }
}
table inet tnafilter {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid counter drop
        ct state established,related accept
        iifname "r1" accept
    }
}
"""


@dataclass
class Gateway:
    topo: RouterTopology
    liberal: bool
    daemon: DaemonProcess | None = None


@contextlib.contextmanager
def built(liberal: bool, nat_commands: tuple[tuple[str, ...], ...] = (),
          run: tuple[str, ...] | None = None) -> Iterator[Gateway]:
    """The gateway; ``nat_commands``: iptables commands that replace the nft nat table;
    ``run``: 'tna run' with these options instead of 'tna apply'."""
    with Testbed(prefix="tnanat") as bed:
        t = nat_gateway_router(bed, liberal)
        ruleset = RULESET % {"fwd": FORWARDED_PORT, "h2": t.h2_v4, "port": PORT}
        if nat_commands:
            ruleset = ruleset[ruleset.index("table inet tnafilter"):]
            for argv in nat_commands:
                bed.run(t.r, *argv)
        bed.run(t.r, "nft", "-f", "-", input=ruleset)
        if run is None:
            run_tna(t.r, "apply")
            yield Gateway(t, liberal)
            return
        daemon = DaemonProcess(t.r, *run)
        try:
            yield Gateway(t, liberal, daemon)
        finally:
            if daemon.proc.poll() is None:
                daemon.stop()


@pytest.fixture(params=[False, True], ids=["be_liberal0", "be_liberal1"])
def gateway(request: pytest.FixtureRequest) -> Iterator[Gateway]:
    with built(request.param) as gw:
        yield gw


def payload() -> bytes:
    return random.Random(13).randbytes(SIZE)


@dataclass
class Download:
    digest: str = ""
    received: int = 0
    peer: tuple[str, int] = ("", 0)
    server_saw: str = ""  # how the server's side ended: "fin" or "rst"


def download(t: RouterTopology, connect_to: tuple[str, int], close: str,
             pace: float = 0.0) -> Download:
    """h1 fetches SIZE bytes from a server on h2:PORT; ``close``: "fin" (the server closes
    first, the client reads to EOF) or "rst" (the client aborts with SO_LINGER 0 once it has
    every byte; the server, waiting for more, sees the reset) or "sender_rst" (the client
    says it has every byte with one byte of its own; the server, the data's sender, then
    aborts with SO_LINGER 0: its RST's sequence number is the end of its data, the client's
    highest ACK).  ``pace``: seconds the server waits after each MiB (a transfer long enough
    to do something in the middle of it)."""
    data = payload()
    out = Download()
    with netns.entered(t.h2):
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((t.h2_v4, PORT))
        srv.listen(1)
    with netns.entered(t.h1):
        cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)

    def serve() -> None:
        conn, out.peer = srv.accept()
        with conn:
            if pace:
                for at in range(0, SIZE, 1 << 20):
                    conn.sendall(data[at:at + (1 << 20)])
                    time.sleep(pace)
            else:
                conn.sendall(data)
            if close == "fin":
                conn.shutdown(socket.SHUT_WR)
            if close == "sender_rst":
                out.server_saw = "done" if conn.recv(1) == b"k" else "short"
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return  # closed with linger 0: an RST
            try:
                out.server_saw = "fin" if conn.recv(1) == b"" else "data"
            except ConnectionResetError:
                out.server_saw = "rst"

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    digest = hashlib.sha256()
    try:
        cli.settimeout(60)
        cli.connect(connect_to)
        while out.received < SIZE or close == "fin":
            chunk = cli.recv(1 << 16)
            if not chunk:
                break
            digest.update(chunk)
            out.received += len(chunk)
        if close == "sender_rst":
            cli.sendall(b"k")
            with contextlib.suppress(ConnectionResetError):
                assert cli.recv(1) == b""  # the server's RST (or nothing more)
        if close == "rst":
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        cli.close()
        server.join(timeout=60)
        srv.close()
    out.digest = digest.hexdigest()
    return out


def counts(ns: str) -> dict[str, Any]:
    doc = tna_stats(ns)
    fast = sum(doc["interfaces"].get(i, {}).get("forwarded_packets", 0) for i in ("r1", "r2"))
    return {"fast": fast, "punted": doc["punt_reasons"], "nat_original":
            doc["nat_original_packets"], "nat_reply": doc["nat_reply_packets"]}


def flow_packets(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """(fast-path packets, punted packets) between two counts (ARP and the like included in
    the punts, which only makes the share smaller)."""
    fast = after["fast"] - before["fast"]
    punted = sum(after["punted"].values()) - sum(before["punted"].values())
    return fast, punted


def nat_packets(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, int]:
    """Packets the fast path NATed between two counts: (original, reply direction)."""
    return (after["nat_original"] - before["nat_original"],
            after["nat_reply"] - before["nat_reply"])


def punts_moved(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The punt reasons that moved between two counts, and by how much."""
    return {k: v - before["punted"].get(k, 0) for k, v in after["punted"].items()
            if v != before["punted"].get(k, 0)}


def assert_download_is_linuxs(t: RouterTopology, got: Any, how: str, close: str) -> None:
    """Every byte, unchanged; the server saw the peer Linux's NAT gives it (h2: the
    masqueraded source; behind the port forward: h1 itself) and the teardown asked for."""
    assert got.received == SIZE
    assert got.digest == hashlib.sha256(payload()).hexdigest()
    assert got.peer[0] == (t.r2_v4 if how == "masquerade" else t.h1_v4)
    assert got.server_saw == close


def wait_teardown(t: RouterTopology, how: str, close: str) -> None:
    """conntrack's entry ends as Linux's own handling of FIN or RST leaves it."""
    expect = {"fin": "TIME_WAIT", "rst": "CLOSE"}[close]
    wait_for(lambda: expect in conntrack_states(t, PORT if how == "masquerade" else
                                                FORWARDED_PORT), timeout=5,
             what=f"conntrack entry in {expect}")


def conntrack_states(t: RouterTopology, port: int) -> list[str]:
    out = t.bed.run(t.r, "conntrack", "-L", "-p", "tcp", check=False).stdout
    return [line.split()[3] for line in out.splitlines() if f"dport={port} " in line]


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("how", ["masquerade", "dnat"])
def test_download_through_nat(gateway: Gateway, how: str, close: str,
                              record_property: Any) -> None:
    t = gateway.topo
    # masquerade: h1 fetches from h2 as r2; dnat: h1 fetches from r1's forwarded port
    target = (t.h2_v4, PORT) if how == "masquerade" else (t.r1_v4, FORWARDED_PORT)
    before = counts(t.r)
    got = download(t, target, close)
    after = counts(t.r)
    assert_download_is_linuxs(t, got, how, close)
    fast, punted = flow_packets(before, after)
    share = fast / (fast + punted)
    record_property("fast_share", round(share, 4))
    nat = nat_packets(before, after)
    record_property("nat_packets", nat)
    moved = punts_moved(before, after)
    record_property("punts", moved)
    print(f"{how} {close} liberal={gateway.liberal}: fast {fast} punted {punted} "
          f"share {share:.3f} nat {nat} punts {moved}")
    wait_teardown(t, how, close)
    if gateway.liberal:
        # the windows are not judged: every data segment (h2 -> h1, the entry's reply
        # direction) is fast; h1's ACKs acknowledge beyond conntrack's highest ACK, which
        # the kernel judges a later RST against, so they go to Linux (ct_window)
        assert share >= 0.95
        assert nat[1] >= SIZE // 1500
    else:
        # every data segment would move conntrack's window, every ACK its right edge: the
        # kernel must see them all, or it would judge a later segment against a stale window
        assert after["punted"]["ct_window"] - before["punted"]["ct_window"] >= SIZE // 1500


@pytest.mark.parametrize("nat", [
    ("iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", "r2", "-j", "MASQUERADE"),
    ("iptables-nft", "-t", "nat", "-A", "POSTROUTING", "-o", "r2", "-j", "SNAT",
     "--to-source", "10.2.0.1"),
], ids=["legacy-masquerade", "nft-snat"])
def test_iptables_nat_download(nat: tuple[str, ...], record_property: Any) -> None:
    with built(True, (nat,)) as gw:
        t = gw.topo
        plan = run_tna(t.r, "plan").stdout
        assert "netfilter_hook" not in plan and "nat" in plan
        before = counts(t.r)
        got = download(t, (t.h2_v4, PORT), "fin")
        after = counts(t.r)
    assert got.received == SIZE and got.digest == hashlib.sha256(payload()).hexdigest()
    assert got.peer[0] == t.r2_v4
    fast, punted = flow_packets(before, after)
    record_property("fast_share", round(fast / (fast + punted), 4))
    assert fast / (fast + punted) >= 0.95
    assert after["nat_reply"] - before["nat_reply"] >= SIZE // 1500


def udp_echo(t: RouterTopology, sport: int, count: int = 300) -> tuple[int, set[str]]:
    """``count`` datagrams h1:sport -> h2, 10 ms apart, each echoed by h2: (answered, the
    sources h2 saw). 300 take 3 s: past the 2 s after which udp_packet() assures the flow."""
    with netns.entered(t.h2):
        echo = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        echo.bind((t.h2_v4, PORT))
        echo.settimeout(2)
    with netns.entered(t.h1):
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.bind((t.h1_v4, sport))
        cli.settimeout(2)
    peers: set[str] = set()

    def serve() -> None:
        while True:
            try:
                data, peer = echo.recvfrom(2048)
            except OSError:
                return
            peers.add(peer[0])
            echo.sendto(data, peer)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    answered = 0
    try:
        for i in range(count):
            cli.sendto(struct.pack("!I", i) + bytes(100), (t.h2_v4, PORT))
            if cli.recv(2048)[:4] == struct.pack("!I", i):
                answered += 1
            time.sleep(0.01)
    finally:
        cli.close()
        echo.close()
        server.join(timeout=5)
    return answered, peers


def test_udp_through_nat_is_fast_both_ways(gateway: Gateway, record_property: Any) -> None:
    """h1 -> h2 datagrams, echoed: after the first exchange (and the one that assures the
    flow, 2 s in), both directions are NATed on the fast path."""
    t = gateway.topo
    before = counts(t.r)
    answered, peers = udp_echo(t, 40001)
    after = counts(t.r)
    assert answered == 300
    assert peers == {t.r2_v4}
    nat = nat_packets(before, after)
    record_property("nat_packets", nat)
    assert min(nat) >= 200  # both directions; the rest before the flow was established


POLICY = """
table ip tnapolicy {
    ct timeout short {
        protocol udp; l3proto ip;
        policy = { unreplied : 7, replied : 7 }
    }
    chain forward {
        type filter hook forward priority 10; policy accept;
        ct state new ct timeout set "short"
    }
}
"""


def udp_timeouts(t: RouterTopology, sport: int) -> list[int]:
    out = t.bed.run(t.r, "conntrack", "-L", "-p", "udp", "--sport", str(sport),
                    check=False).stdout
    return [int(line.split()[2]) for line in out.splitlines() if line.startswith("udp")]


def test_timeout_policy_keeps_forwarding_on_linux() -> None:
    """A timeout policy given to new connections (``ct timeout set`` in a forward chain) keeps
    IPv4 forwarding on Linux (conntrack_lookup): the fast path would refresh the policy's
    entries with the sysctls' timeouts. The control: the gateway without it carries the
    echoed UDP flow on the fast path, its entry at the sysctl's 120 s; with the policy, Linux
    carries every datagram and the entry keeps the policy's 7 s."""
    with built(False) as gw:
        t = gw.topo
        before = counts(t.r)
        assert udp_echo(t, 40002)[0] == 300
        assert min(nat_packets(before, counts(t.r))) >= 200  # control: fast
        assert all(s > 100 for s in udp_timeouts(t, 40002)), udp_timeouts(t, 40002)
        t.bed.run(t.r, "nft", "-f", "-", input=POLICY)
        run_tna(t.r, "apply")
        plan = run_tna(t.r, "plan").stdout
        assert "conntrack_lookup" in plan and "ct timeout" in plan, plan
        before = counts(t.r)
        assert udp_echo(t, 40003)[0] == 300
        assert nat_packets(before, counts(t.r)) == (0, 0)
        timeouts = udp_timeouts(t, 40003)
        assert timeouts and all(s <= 7 for s in timeouts), timeouts


def test_out_of_window_segment_is_still_dropped(record_property: Any) -> None:
    """Under window tracking, a segment beyond the window of an established, masqueraded
    connection is invalid to Linux ("SEQ is over upper bound") and dropped by ``ct state
    invalid drop``: the fast path hands it to Linux instead of forwarding it."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    with built(False) as gw:
        t = gw.topo
        with netns.entered(t.h2):
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.bind((t.h2_v4, PORT))
            srv.listen(1)
            sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            sniff.bind(("eth0", 0))
            sniff.settimeout(5)
        with netns.entered(t.h1):
            cli = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            cli.connect((t.h2_v4, PORT))
        conn, _ = srv.accept()
        try:
            cli.sendall(b"hello")
            assert conn.recv(5) == b"hello"  # positive control: the connection works
            seq, ack = hello_segment(sniff)
            r1_mac = t.bed.run(t.r, "cat", "/sys/class/net/r1/address").stdout.strip()
            h1_mac = t.bed.run(t.h1, "cat", "/sys/class/net/eth0/address").stdout.strip()
            before_drop, before = invalid_drops(t), counts(t.r)
            # a quarter of the sequence space past what h1 sent: over any window conntrack
            # tracks, and not within its tolerance for overshooting senders
            frame = (Ether(src=h1_mac, dst=r1_mac) / IP(src=t.h1_v4, dst=t.h2_v4)
                     / TCP(sport=cli.getsockname()[1], dport=PORT, flags="A",
                           seq=(seq + 5 + (1 << 30)) & 0xFFFFFFFF, ack=ack)
                     / b"out of window")
            with netns.entered(t.h1), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as raw:
                raw.bind(("eth0", 0))
                raw.send(bytes(frame))
            wait_for(lambda: invalid_drops(t) == before_drop + 1, timeout=5,
                     what="Linux dropping the segment as invalid")
            after = counts(t.r)
        finally:
            sniff.close()
            conn.close()
            cli.close()
            srv.close()
    assert after["fast"] == before["fast"]
    assert after["punted"]["ct_window"] == before["punted"]["ct_window"] + 1


def hello_segment(sniff: socket.socket) -> tuple[int, int]:
    """(seq, ack) of the segment that carried b"hello" to h2."""
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    while True:
        pkt = Ether(sniff.recv(2048))
        if TCP in pkt and bytes(pkt[TCP].payload).startswith(b"hello"):
            return pkt[TCP].seq, pkt[TCP].ack


def invalid_drops(t: RouterTopology, table: str = "tnafilter") -> int:
    """Segments the ``ct state invalid`` rule of the inet ``table``'s forward chain dropped."""
    out = t.bed.run(t.r, "nft", "list", "chain", "inet", table, "forward").stdout
    line = next(ln for ln in out.splitlines() if "invalid" in ln)
    return int(line.split("packets")[1].split()[0])


# ---- tna run --tcp-liberal: window tracking on, connections marked liberal by opt-in ----------

def liberal_counts(ns: str) -> dict[str, Any]:
    return tna_stats(ns).get("tcp_liberal") or {}


@pytest.mark.parametrize(("how", "close"), [("masquerade", "fin"), ("masquerade", "rst"),
                                            ("dnat", "fin"), ("dnat", "rst")])
def test_tcp_liberal_opt_in_makes_bulk_tcp_fast(how: str, close: str,
                                                record_property: Any) -> None:
    """nf_conntrack_tcp_be_liberal=0 (window tracking on) and 'tna run --tcp-liberal': the
    connection is named at its handshake's last ACK and marked liberal before (or a few
    segments into) its data, which from then on is fast; bytes, teardown and conntrack's last
    state are Linux's."""
    with built(False, run=("--tcp-liberal",)) as gw:
        t = gw.topo
        assert "--tcp-liberal is on" in run_tna(t.r, "plan").stdout  # the plan says so
        target = (t.h2_v4, PORT) if how == "masquerade" else (t.r1_v4, FORWARDED_PORT)
        before = counts(t.r)
        got = download(t, target, close)
        after = counts(t.r)
        wait_teardown(t, how, close)
        wait_for(lambda: (liberal_counts(t.r).get("daemon") or {}).get("marked", 0) >= 1,
                 timeout=5, what="the daemon's mark counted")
        marks = liberal_counts(t.r)
        assert gw.daemon is not None and gw.daemon.errors() == []
    assert_download_is_linuxs(t, got, how, close)
    fast, punted = flow_packets(before, after)
    share = fast / (fast + punted)
    nat = nat_packets(before, after)
    moved = punts_moved(before, after)
    for key, value in (("fast_share", round(share, 4)), ("nat_packets", nat), ("punts", moved),
                       ("tcp_liberal", marks)):
        record_property(key, value)
    print(f"tcp-liberal {how} {close}: fast {fast} punted {punted} share {share:.3f} nat {nat} "
          f"punts {moved} liberal {marks}")
    assert share >= 0.95
    assert nat[1] >= SIZE // 1500  # the data segments: the entry's reply direction
    assert marks["requested"] >= 1 and marks["lost"] == 0
    assert marks["daemon"]["marked"] == 1 and marks["daemon"]["failed"] == 0


@pytest.mark.parametrize("mode", ["opt_in", "be_liberal1"])
def test_sender_reset_after_fast_data_closes_the_entry(mode: str,
                                                       record_property: Any) -> None:
    """The RST repair: the server, whose 50 MB went through the fast path (the opt-in's
    liberal mark, or be_liberal=1 under 'tna run'), aborts once the client has every byte.
    Its RST's sequence number is the client's highest ACK, which closes the entry in Linux
    alone (CLOSE, nf_conntrack_tcp_timeout_close); the kernel under TNA saw neither that data
    nor (out of its window) the ACK, and keeps ESTABLISHED unless the daemon closes the entry.
    Poll for CLOSE, never ESTABLISHED; the daemon counts one close."""
    liberal = mode == "be_liberal1"
    with built(liberal, run=() if liberal else ("--tcp-liberal",)) as gw:
        t = gw.topo
        gw.topo.bed.sysctl(t.r, "net.netfilter.nf_conntrack_tcp_timeout_close", "9")
        before = counts(t.r)
        got = download(t, (t.h2_v4, PORT), "sender_rst")
        after = counts(t.r)
        states: list[list[str]] = []

        def closed() -> bool:
            states.append(conntrack_states(t, PORT))
            return "CLOSE" in states[-1]

        try:
            wait_for(closed, timeout=3, what="conntrack entry in CLOSE")
        except TimeoutError:
            pytest.fail(f"conntrack entry not in CLOSE after the sender's RST: {states[-1]}")
        timeout = t.bed.run(t.r, "conntrack", "-L", "-p", "tcp", "--dport", str(PORT),
                            check=False).stdout.split()[2]
        wait_for(lambda: (tna_stats(t.r).get("tcp_liberal", {}).get("daemon") or {}).get(
            "closed", 0) >= 1, timeout=5, what="the daemon's close counted")
        marks = tna_stats(t.r)["tcp_liberal"]
        assert gw.daemon is not None and gw.daemon.errors() == []
    fast, punted = flow_packets(before, after)
    record_property("fast", fast)
    record_property("tcp_liberal", marks)
    print(f"{mode}: fast {fast} punted {punted} close timeout {timeout} s, states polled "
          f"{states}, liberal {marks}")
    assert got.received == SIZE and got.server_saw == "done"
    assert got.digest == hashlib.sha256(payload()).hexdigest()
    assert fast >= SIZE // 1500  # positive control: the data was the fast path's
    assert int(timeout) <= 9  # the namespace's nf_conntrack_tcp_timeout_close, read
    assert marks["daemon"]["closed"] == 1 and marks["daemon"]["failed"] == 0


def test_tcp_liberal_daemon_killed_mid_transfer(record_property: Any) -> None:
    """SIGKILL to 'tna run --tcp-liberal' in the middle of a download whose connection it
    marked: its links go with it, Linux forwards the rest alone (the entry stays liberal, so
    the segments the fast path carried never made Linux's view stale), the bytes are
    identical and the connection closes as Linux closes it."""
    with built(False, run=("--tcp-liberal",)) as gw:
        t, daemon = gw.topo, gw.daemon
        assert daemon is not None
        before = counts(t.r)
        result: list[Download] = []
        fetch = threading.Thread(target=lambda: result.append(
            download(t, (t.h2_v4, PORT), "fin", pace=0.1)), daemon=True)
        fetch.start()
        # positive control: the connection was marked and the fast path carries it
        wait_for(lambda: counts(t.r)["fast"] - before["fast"] >= 2000, timeout=20,
                 what="the marked connection on the fast path")
        fast_before_kill = counts(t.r)["fast"] - before["fast"]
        daemon.proc.kill()
        daemon.proc.wait(timeout=10)
        wait_for(lambda: "not attached" in run_tna(t.r, "status").stdout, timeout=10,
                 what="the programs gone with the daemon")
        fetch.join(timeout=120)
        assert result, "the download did not finish"
        got = result[0]
        wait_for(lambda: "TIME_WAIT" in conntrack_states(t, PORT), timeout=5,
                 what="conntrack entry in TIME_WAIT")
    record_property("fast_before_kill", fast_before_kill)
    print(f"killed after {fast_before_kill} fast-path packets; received {got.received}")
    assert got.received == SIZE
    assert got.digest == hashlib.sha256(payload()).hexdigest()
    assert got.server_saw == "fin"
