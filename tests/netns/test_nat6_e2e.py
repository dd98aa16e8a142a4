"""IPv6 NAT on the fast path: h1 -- r -- h2, r an nftables IPv6 gateway masquerading h1 (LAN,
r1) behind r2 (WAN) and forwarding r2's port 8080 to h1 (DNAT), with ``ct state invalid drop``,
``ct state established,related accept``, LAN -> WAN accept, the forwarded service accept and
policy drop on the forward hook.

The IPv6 counterpart of test_nat_e2e.py: UDP through the masquerade and the port forward is
NATed by the fast path in both directions (the payloads, the peers each side sees and
conntrack's entry are Linux's); a TCP download and an upload through either arrive byte for
byte and close as Linux closes them, mostly on the fast path (NATed in the data's direction)
with ``nf_conntrack_tcp_be_liberal=1``, on Linux (window tracking) without; so is a response
after a fast request (HTTP's shape), and a download with be_liberal=0 under 'tna run
--tcp-liberal' (the daemon marks the IPv6 connection); an IPv6 NAT entry left behind when the
family's nat chains are gone is not rewritten by the fast path.

Hosts check every checksum in software (TX checksum offload off on the veths), so identical
bytes and answered datagrams also say the fast path's incremental IPv6 checksum updates are
right.
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
from dataclasses import dataclass, field
from typing import Any

import pytest

from testing.netns_helpers import nat_gateway_router
from tests.netns.test_nat_e2e import (
    FORWARDED_PORT,
    PORT,
    counts,
    flow_packets,
    invalid_drops,
    nat_packets,
    punts_moved,
)
from tna import netns
from tna.testbed import DaemonProcess, RouterTopology, Testbed, run_tna, tna_stats, wait_for

pytestmark = pytest.mark.root

SIZE = 8 << 20  # each way
FILTER = "tnafilter6"  # the forward hook's inet table

RULESET = """
table ip6 tnanat6 {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "r2" tcp dport %(fwd)d dnat to [%(h1)s]:%(port)d
        iifname "r2" udp dport %(fwd)d dnat to [%(h1)s]:%(port)d
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r2" masquerade
    }
}
table inet %(filter)s {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state invalid counter drop
        ct state established,related accept
        iifname "r1" oifname "r2" accept
        iifname "r2" oifname "r1" ip6 daddr %(h1)s tcp dport %(port)d accept
        iifname "r2" oifname "r1" ip6 daddr %(h1)s udp dport %(port)d accept
    }
}
"""

# An IPv4 nat chain, for the test that removes the IPv6 ones: the other family keeps its hooks.
RULESET_V4_NAT = """
table ip tnanat4 {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r2" masquerade
    }
}
"""


@contextlib.contextmanager
def gateway6(liberal: bool, extra: str = "",
             run: tuple[str, ...] | None = None) -> Iterator[RouterTopology]:
    """The IPv6 gateway, TNA applied (``run``: 'tna run' with these options, its errors
    checked at the end); everything removed on exit, also after a failure."""
    with Testbed(prefix="tnanat6") as bed:
        t = nat_gateway_router(bed, liberal)
        ruleset = RULESET % {"fwd": FORWARDED_PORT, "h1": t.h1_v6, "port": PORT,
                             "filter": FILTER}
        bed.run(t.r, "nft", "-f", "-", input=ruleset + extra)
        if run is None:
            run_tna(t.r, "apply")
            yield t
            return
        daemon = DaemonProcess(t.r, *run)
        try:
            yield t
            assert daemon.errors() == []
        finally:
            if daemon.proc.poll() is None:
                daemon.stop()


def ends(t: RouterTopology, how: str) -> tuple[tuple[str, str], tuple[str, str], tuple[str, int],
                                                tuple[str, int], str]:
    """(client ns and address, server ns and address, where the client connects to, where the
    server listens, the client's address as the server sees it).  masquerade: h1 (LAN) to h2
    (WAN), seen as r2; dnat: h2 to r2's forwarded port, served by h1, seen as itself."""
    if how == "masquerade":
        return ((t.h1, t.h1_v6), (t.h2, t.h2_v6), (t.h2_v6, PORT), (t.h2_v6, PORT), t.r2_v6)
    return ((t.h2, t.h2_v6), (t.h1, t.h1_v6), (t.r2_v6, FORWARDED_PORT), (t.h1_v6, PORT),
            t.h2_v6)


# ---- conntrack's view --------------------------------------------------------------------------

@dataclass
class Entry:
    """One line of ``conntrack -L -f ipv6``: the original and reply tuples, state, flags."""

    original: tuple[str, str, int, int]  # src, dst, sport, dport
    reply: tuple[str, str, int, int]
    state: str  # TCP's state, "" for UDP
    timeout: int
    flags: frozenset[str]
    line: str


def ct_entries(t: RouterTopology, proto: str) -> list[Entry]:
    out = t.bed.run(t.r, "conntrack", "-L", "-f", "ipv6", "-p", proto, check=False).stdout
    entries = []
    for line in out.splitlines():
        words = line.split()
        if not words or words[0] != proto:
            continue
        pairs = [w.split("=", 1) for w in words if "=" in w]
        vals: dict[str, list[str]] = {}
        for k, v in pairs:
            vals.setdefault(k, []).append(v)

        def tup(i: int, vals: dict[str, list[str]] = vals) -> tuple[str, str, int, int]:
            return (vals["src"][i], vals["dst"][i], int(vals["sport"][i]),
                    int(vals["dport"][i]))

        entries.append(Entry(tup(0), tup(1), words[3] if proto == "tcp" else "", int(words[2]),
                             frozenset(w.strip("[]") for w in words if w.startswith("[")),
                             line))
    return entries


def entry_of(t: RouterTopology, proto: str, sport: int, dport: int) -> Entry | None:
    """The entry whose original direction is sport -> dport."""
    return next((e for e in ct_entries(t, proto)
                 if e.original[2] == sport and e.original[3] == dport), None)


def fast_drops(t: RouterTopology) -> int:
    return int(tna_stats(t.r)["dropped_packets"])


# ---- UDP -----------------------------------------------------------------------------------------

@dataclass
class UdpFlow:
    """One UDP flow, client -> server, held open so it can be used in phases.  The server
    records every datagram it gets (payload, source) and echoes it while ``echo`` is set."""

    client: socket.socket
    server: socket.socket
    connect_to: tuple[str, int]
    echo: bool = True
    seen: list[tuple[bytes, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                data, peer = self.server.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.seen.append((data, peer[0], peer[1]))
            if self.echo:
                self.server.sendto(data, peer)

    def exchange(self, count: int, tag: int) -> list[tuple[bytes, bytes, tuple[str, int]]]:
        """``count`` datagrams, 10 ms apart, each waiting for its echo: (sent, echoed, the
        echo's source) per datagram (b"" where none came)."""
        got = []
        for i in range(count):
            data = datagram(tag, i)
            self.client.sendto(data, self.connect_to)
            try:
                echoed, src = self.client.recvfrom(2048)
            except TimeoutError:
                echoed, src = b"", ("", 0)
            got.append((data, echoed, (src[0], src[1])))
            time.sleep(0.01)
        return got

    def received(self, tag: int) -> list[tuple[bytes, str, int]]:
        with self.lock:
            return [s for s in self.seen if s[0][:4] == struct.pack("!I", tag)]


def datagram(tag: int, i: int) -> bytes:
    """Tag, sequence number, then bytes that depend on both (a payload rewritten anywhere
    would not match)."""
    return struct.pack("!II", tag, i) + random.Random(tag * 100000 + i).randbytes(200)


@contextlib.contextmanager
def udp_flow(t: RouterTopology, how: str, sport: int) -> Iterator[UdpFlow]:
    (cns, caddr), (sns, _), connect_to, listen, _ = ends(t, how)
    with netns.entered(sns):
        server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    with netns.entered(cns):
        client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    flow = UdpFlow(client, server, connect_to)
    thread = threading.Thread(target=flow.serve, daemon=True)
    try:
        server.bind(listen)
        client.bind((caddr, sport))
        client.settimeout(2)
        server.settimeout(0.1)
        thread.start()
        yield flow
    finally:
        flow.stop.set()
        if thread.is_alive():
            thread.join(timeout=5)
        client.close()
        server.close()


@pytest.mark.parametrize("how", ["masquerade", "dnat"])
def test_udp6_through_nat_is_fast_both_ways(how: str, record_property: Any) -> None:
    """300 datagrams client -> server, each echoed (3 s: past the 2 s after which
    udp_packet() assures the flow).  Every payload arrives unchanged both ways; the server
    sees the client as Linux's NAT makes it (masquerade: r2's address, same port as Linux
    picked; dnat: h2 itself); the client gets the echo from the address and port it sent to
    (un-DNAT); conntrack's entry records the translation and is assured; the fast path NATed
    most datagrams in both directions."""
    sport = 40001
    with gateway6(False) as t:  # be_liberal is TCP's alone
        _, _, connect_to, listen, seen_as = ends(t, how)
        before = counts(t.r)
        with udp_flow(t, how, sport) as flow:
            got = flow.exchange(300, tag=1)
            received = flow.received(1)
        after = counts(t.r)
        entry = entry_of(t, "udp", sport, connect_to[1])
        drops = fast_drops(t)
    nat = nat_packets(before, after)
    moved = punts_moved(before, after)
    record_property("nat_packets", nat)
    record_property("punts", moved)
    print(f"udp6 {how}: nat {nat} punts {moved} entry {entry and entry.line}")
    # positive controls first: every datagram went and came back, with its bytes
    assert [g[0] for g in got] == [g[1] for g in got], "an echo missing or changed"
    assert sorted(r[0] for r in received) == sorted(g[0] for g in got)
    assert {(r[1]) for r in received} == {seen_as}
    assert {g[2] for g in got} == {connect_to}  # replies from where the client sent to
    # conntrack's entry: original as the client sent, reply towards the NATed address
    assert entry is not None, "no conntrack entry"
    assert entry.original[:2] == (got_src(t, how), connect_to[0])
    assert entry.reply[0] == listen[0] and entry.reply[2] == listen[1]
    assert entry.reply[1] == seen_as
    if how == "masquerade":
        assert entry.reply[1] == t.r2_v6  # the masquerade address
        assert {r[2] for r in received} == {entry.reply[3]}  # the port Linux picked
    assert "ASSURED" in entry.flags
    # the fast path NATed both directions (the rest: before the flow was established,
    # and the datagram that assures it)
    assert nat[0] >= 200 and nat[1] >= 200, (nat, moved)
    assert moved.get("nat", 0) == 0, moved
    assert drops == 0


def got_src(t: RouterTopology, how: str) -> str:
    return t.h1_v6 if how == "masquerade" else t.h2_v6


# ---- TCP -----------------------------------------------------------------------------------------

def payload(which: str) -> bytes:
    return random.Random(f"nat6-{which}").randbytes(SIZE)


@dataclass
class Transfer:
    """What one TCP transfer did: the digest of what the receiving side got, how much, the
    client's address as the server saw it, the client's port, how the server's side ended."""

    digest: str = ""
    received: int = 0
    peer: str = ""
    client_port: int = 0
    server_saw: str = ""


def transfer(t: RouterTopology, how: str, direction: str, request: int = 0) -> Transfer:
    """One connection, SIZE bytes one way, then FIN.  "down" (the download of
    test_nat_e2e.py: the entry's reply direction): the client sends ``request`` bytes first
    (none by default), the server, once it has them, sends SIZE bytes and closes first, the
    client reads to EOF.  "up" (the original direction): the client sends SIZE bytes and
    closes first, the server reads to EOF and closes."""
    (cns, _), (sns, _), connect_to, listen, _ = ends(t, how)
    data = payload(direction)
    out = Transfer()
    with netns.entered(sns):
        srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with netns.entered(cns):
        cli = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)

    def read_to_eof(sock: socket.socket) -> None:
        digest = hashlib.sha256()
        while chunk := sock.recv(1 << 16):
            digest.update(chunk)
            out.received += len(chunk)
        out.digest = digest.hexdigest()

    def serve() -> None:
        conn, peer = srv.accept()
        out.peer = peer[0]
        with conn:
            conn.settimeout(60)
            if direction == "up":
                read_to_eof(conn)
                out.server_saw = "fin"
                return
            got = 0
            while got < request:
                got += len(conn.recv(request - got))
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
            try:
                out.server_saw = "fin" if conn.recv(1) == b"" else "data"
            except ConnectionResetError:
                out.server_saw = "rst"

    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server = threading.Thread(target=serve, daemon=True)
    try:
        srv.bind(listen)
        srv.listen(1)
        server.start()
        cli.settimeout(60)
        cli.connect(connect_to)
        out.client_port = cli.getsockname()[1]
        if direction == "up":
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
            assert cli.recv(1) == b""  # the server's FIN
        else:
            cli.sendall(b"r" * request)
            read_to_eof(cli)
    finally:
        cli.close()
        if server.is_alive():
            server.join(timeout=60)
        srv.close()
    return out


def assert_transfer_is_linuxs(t: RouterTopology, how: str, direction: str,
                              got: Transfer) -> None:
    """Every byte, unchanged; the server saw the peer Linux's NAT gives it; FIN teardown."""
    assert got.received == SIZE
    assert got.digest == hashlib.sha256(payload(direction)).hexdigest()
    assert got.peer == ends(t, how)[4]
    assert got.server_saw == "fin"


def wait_time_wait(t: RouterTopology, how: str, got: Transfer) -> Entry:
    """conntrack's entry of the connection in TIME_WAIT, as Linux's FIN handling leaves it."""
    dport = ends(t, how)[2][1]
    found: list[Entry | None] = [None]

    def closed() -> bool:
        found[0] = entry_of(t, "tcp", got.client_port, dport)
        return found[0] is not None and found[0].state == "TIME_WAIT"

    try:
        wait_for(closed, timeout=5, what="conntrack entry in TIME_WAIT")
    except TimeoutError:
        pytest.fail(f"conntrack entry not in TIME_WAIT: {found[0] and found[0].line}")
    entry = found[0]
    assert entry is not None
    return entry


@dataclass
class Measured:
    got: Transfer
    entry: Entry
    fast: int
    punted: int
    nat: tuple[int, int]
    moved: dict[str, int]
    invalid: int  # segments Linux judged invalid (dropped by ct state invalid drop)
    dropped: int  # by the fast path's forward hook

    @property
    def share(self) -> float:
        return self.fast / (self.fast + self.punted)


def measured(t: RouterTopology, how: str, direction: str, request: int = 0) -> Measured:
    before, invalid_before, drops_before = counts(t.r), invalid_drops(t, FILTER), fast_drops(t)
    got = transfer(t, how, direction, request)
    after = counts(t.r)
    entry = wait_time_wait(t, how, got)
    fast, punted = flow_packets(before, after)
    return Measured(got, entry, fast, punted, nat_packets(before, after),
                    punts_moved(before, after), invalid_drops(t, FILTER) - invalid_before,
                    fast_drops(t) - drops_before)


SEGMENTS = SIZE // 1500  # data segments of one transfer, at least (MSS 1428)


@pytest.mark.parametrize("how", ["masquerade", "dnat"])
@pytest.mark.parametrize("liberal", [False, True], ids=["be_liberal0", "be_liberal1"])
def test_tcp6_transfers_through_nat(how: str, liberal: bool, record_property: Any) -> None:
    """Through the IPv6 masquerade or port forward, a download (the data in the entry's reply
    direction), then an upload on a new connection (the original direction), each SIZE bytes
    and a FIN teardown.  Bytes identical, the server sees the peer Linux's NAT gives it, the
    entry records the translation and ends in TIME_WAIT, and Linux judged no segment invalid
    (the fast path never left its window stale, never forwarded what Linux would drop).

    be_liberal=1: the data segments are the fast path's, NATed in the direction they go, and so
    are the receiver's ACKs of them.  be_liberal=0: every
    segment moving the window goes to Linux (ct_window): the bulk stays on Linux, by design."""
    results = {}
    with gateway6(liberal) as t:
        for direction in ("down", "up"):
            results[direction] = m = measured(t, how, direction)
            record_property(f"{direction}_fast_share", round(m.share, 4))
            record_property(f"{direction}_nat_packets", m.nat)
            record_property(f"{direction}_punts", m.moved)
            print(f"tcp6 {how} {direction} liberal={liberal}: fast {m.fast} punted {m.punted} "
                  f"share {m.share:.3f} nat {m.nat} punts {m.moved} invalid {m.invalid} "
                  f"entry {m.entry.line}")
    for direction, m in results.items():
        assert_transfer_is_linuxs(t, how, direction, m.got)
        assert m.entry.reply[1] == ends(t, how)[4]  # where replies go: the NATed address
        if how == "masquerade":
            assert m.entry.reply[1] == t.r2_v6
        else:
            assert m.entry.reply[0] == t.h1_v6 and m.entry.reply[2] == PORT
        assert m.invalid == 0, "Linux judged a segment invalid"
        assert m.dropped == 0
        assert m.moved.get("nat", 0) == 0, m.moved
        if liberal:
            assert m.share >= 0.95, (direction, m.fast, m.punted, m.moved)
        else:
            assert m.moved.get("ct_window", 0) >= SEGMENTS, (direction, m.moved)
    if liberal:  # the data's direction: reply for the download, original for the upload
        assert results["down"].nat[1] >= SEGMENTS, results["down"].nat
        assert results["up"].nat[0] >= SEGMENTS, results["up"].nat


def test_tcp6_response_after_a_fast_request(record_property: Any) -> None:
    """be_liberal=1, through the masquerade: the client sends a 100-byte request, the server
    answers with SIZE bytes (HTTP's shape).  The bytes, the peer and the teardown are Linux's,
    and the response is fast: its segments ACK the fast request beyond the client's td_end
    that conntrack saw, which the kernel lets pass outside the window without moving the
    server's td_maxack, so the fast path need not hand them over (it did, every one, before:
    1 packet of 7000 fast)."""
    with gateway6(True) as t:
        m = measured(t, "masquerade", "down", request=100)
    record_property("fast_share", round(m.share, 4))
    print(f"request/response: fast {m.fast} punted {m.punted} nat {m.nat} punts {m.moved}")
    assert_transfer_is_linuxs(t, "masquerade", "down", m.got)
    assert m.invalid == 0 and m.dropped == 0
    assert m.moved.get("nat", 0) == 0, m.moved
    assert m.share >= 0.95, (m.fast, m.punted, m.nat, m.moved)
    assert m.nat[1] >= SEGMENTS, m.nat  # the response, NATed back on the fast path


def test_tcp6_liberal_opt_in_makes_bulk_tcp_fast(record_property: Any) -> None:
    """be_liberal=0 and 'tna run --tcp-liberal' (the daemon marks the connections the fast
    path would carry, by their IPv6 tuple): a download through the IPv6 masquerade is fast once
    marked, its bytes, peer and teardown Linux's, nothing judged invalid."""
    with gateway6(False, run=("--tcp-liberal",)) as t:
        m = measured(t, "masquerade", "down")
        wait_for(lambda: (tna_stats(t.r).get("tcp_liberal", {}).get("daemon") or {}).get(
            "marked", 0) >= 1, timeout=5, what="the daemon's mark counted")
        marks = tna_stats(t.r)["tcp_liberal"]
    record_property("fast_share", round(m.share, 4))
    print(f"tcp6 tcp-liberal: fast {m.fast} punted {m.punted} nat {m.nat} punts {m.moved} "
          f"liberal {marks}")
    assert_transfer_is_linuxs(t, "masquerade", "down", m.got)
    assert m.invalid == 0 and m.dropped == 0
    assert m.share >= 0.95, (m.fast, m.punted, m.moved)
    assert m.nat[1] >= SEGMENTS, m.nat
    assert marks["daemon"]["marked"] == 1 and marks["daemon"]["failed"] == 0


# ---- no nat chain left in the family -------------------------------------------------------------

def test_ipv6_nat_entry_without_nat_hooks_is_not_rewritten(record_property: Any) -> None:
    """A masqueraded UDP flow, NATed on the fast path (the control); then the IPv6 nat table
    goes (an IPv4 one stays: that family keeps its hooks).  The flow's conntrack entry
    outlives it, still recording the masquerade, but the kernel has no IPv6 nat hooks to
    apply it: h2 now gets h1's own address.  The fast path must not rewrite either: the
    datagrams go to Linux (nat), none NATed, none forwarded by XDP."""
    sport = 40010
    with gateway6(False, extra=RULESET_V4_NAT) as t, udp_flow(t, "masquerade", sport) as flow:
        before = counts(t.r)
        got = flow.exchange(300, tag=2)
        mid = counts(t.r)
        # positive control: NATed, and on the fast path
        assert [g[0] for g in got] == [g[1] for g in got]
        assert {r[1] for r in flow.received(2)} == {t.r2_v6}
        assert min(nat_packets(before, mid)) >= 200, nat_packets(before, mid)
        plan = run_tna(t.r, "plan").stdout
        assert "ip6 tnanat6" in plan and "ip tnanat4" in plan, plan

        t.bed.run(t.r, "nft", "delete", "table", "ip6", "tnanat6")
        run_tna(t.r, "apply")
        plan = run_tna(t.r, "plan").stdout
        assert "ip6 tnanat6" not in plan and "ip tnanat4" in plan, plan
        entry = entry_of(t, "udp", sport, PORT)
        if entry is None or entry.reply[1] != t.r2_v6:
            pytest.skip(f"the kernel dropped the NAT entry with its hooks: {entry}")

        flow.echo = False  # h2's answers to h1's own address would be a new flow, dropped
        before = counts(t.r)
        for i in range(50):
            flow.client.sendto(datagram(3, i), flow.connect_to)
        wait_for(lambda: len(flow.received(3)) == 50, timeout=10,
                 what="h2 receiving the datagrams sent after the nat table went")
        after = counts(t.r)
        received = flow.received(3)
        entry_after = entry_of(t, "udp", sport, PORT)
    fast, _ = flow_packets(before, after)
    nat = nat_packets(before, after)
    moved = punts_moved(before, after)
    record_property("punts", moved)
    print(f"no ip6 nat hooks: fast {fast} nat {nat} punts {moved} entry "
          f"{entry_after and entry_after.line}")
    # Linux, without IPv6 nat hooks, forwarded them unNATed; the payloads are intact
    assert sorted(r[0] for r in received) == sorted(datagram(3, i) for i in range(50))
    assert {r[1] for r in received} == {t.h1_v6}, received
    # and the fast path left every one of them to it
    assert nat == (0, 0)
    assert fast == 0
    assert moved.get("nat", 0) >= 50, moved
