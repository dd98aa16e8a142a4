"""``tna run`` with a forward-hook firewall: rule changes under traffic take effect per flow.

h1 -- r -- h2, the daemon on r.  Five UDP flows run all the time (h1 -> h2): A (port 6001),
B (6002), C (6003), D (6001 over IPv6) and E (6004), which h2 echoes back, so E is an
established conntrack flow in both directions.  Then, while they flow, the ruleset changes:

1. a stateful forward chain (policy drop; ct state established,related accept; LAN ports from a
   named set {6001, 6002, 6004}): C stops, the others go on;
2. a drop rule for port 6001 inserted at the top: A and D stop (E, B go on); removed: they
   come back;
3. set elements changed (+6003, -6004): C comes back, E goes on (established: the set is not
   consulted); then -6002: B stops.

Each expectation is polled with a deadline.  "Flow X stopped" is only concluded after a
positive control: a flow that should pass has delivered packets sent after X's mark (the
sender interleaves flows, so X's packets sent as late have had as much time to arrive).
The fast path classifies with the ruleset; under it, only the established flow E is fast (the
others are new to conntrack with every datagram, so Linux decides them), which the test checks
through the daemon's counters.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from testing.netns_helpers import primed_router
from tna import netns
from tna.testbed import DaemonProcess, RouterTopology, tna_stats, wait_for

pytestmark = pytest.mark.root

DEADLINE = 5.0  # s for a rule change to show in the traffic
INTERVAL = 0.002  # s between two rounds of the sender (one datagram per flow)
SLACK = 20  # control packets past the mark before a missing flow counts as stopped

RULESET = """
table inet tnafw {
    set allowed { type inet_service; elements = { 6001, 6002, 6004 } }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "r1" udp dport @allowed accept
    }
}
"""
FLOWS = {"A": (4, 6001), "B": (4, 6002), "C": (4, 6003), "D": (6, 6001), "E": (4, 6004)}
ECHOED = "E"


class Traffic:
    """The flows: a sender thread in h1, receivers in h2 (E is echoed back to h1)."""

    def __init__(self, topo: RouterTopology) -> None:
        self.sent = dict.fromkeys(FLOWS, 0)  # flow -> last sequence number sent
        self.received = dict.fromkeys(FLOWS, 0)  # flow -> highest sequence number arrived
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self._tx: dict[str, tuple[socket.socket, tuple[str, int]]] = {}
        dst = {4: topo.h2_v4, 6: topo.h2_v6}
        with netns.entered(topo.h2):
            for name, (fam, port) in FLOWS.items():
                rx = socket.socket(socket.AF_INET if fam == 4 else socket.AF_INET6,
                                   socket.SOCK_DGRAM)
                rx.bind((dst[fam], port))
                self._sel.register(rx, selectors.EVENT_READ, (name, name == ECHOED))
        with netns.entered(topo.h1):
            for name, (fam, port) in FLOWS.items():
                tx = socket.socket(socket.AF_INET if fam == 4 else socket.AF_INET6,
                                   socket.SOCK_DGRAM)
                self._tx[name] = (tx, (dst[fam], port))
                if name == ECHOED:  # the echo comes back to this socket
                    self._sel.register(tx, selectors.EVENT_READ, (name, False))
        self._threads = [threading.Thread(target=self._send, daemon=True),
                         threading.Thread(target=self._receive, daemon=True)]
        for t in self._threads:
            t.start()

    def _send(self) -> None:
        while not self._stop.is_set():
            for name, (sock, addr) in self._tx.items():
                seq = self.sent[name] + 1
                with contextlib.suppress(OSError):  # a transient ENOBUFS loses one datagram
                    sock.sendto(struct.pack("!4sI", name.encode(), seq), addr)
                self.sent[name] = seq
            time.sleep(INTERVAL)

    def _receive(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                name, echo = key.data
                try:
                    data, peer = sock.recvfrom(64)
                except OSError:
                    continue
                if echo:  # h2's side of E: send it back; counted when it reaches h1
                    sock.sendto(data, peer)
                    continue
                _, seq = struct.unpack("!4sI", data[:8])
                self.received[name] = max(self.received[name], seq)

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        for key in list(self._sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self._sel.close()

    # ---- expectations ------------------------------------------------------------------------

    def flowing(self, *names: str, timeout: float = DEADLINE) -> None:
        """Each flow delivers packets sent from now on (within ``timeout``)."""
        for name in names:
            mark = self.sent[name]
            wait_for(lambda n=name, m=mark: self.received[n] > m,  # type: ignore[misc]
                     timeout=timeout, what=f"flow {name} delivering (sent {mark} so far, "
                     f"received up to {self.received[name]})")

    def stopped(self, name: str, control: str, timeout: float = DEADLINE) -> None:
        """No packet of ``name`` sent after some moment arrives, while ``control`` flows."""
        deadline = time.monotonic() + timeout
        while True:
            mark, mark_ctl = self.sent[name], self.sent[control]
            wait_for(lambda m=mark_ctl: self.received[control] > m + SLACK,  # type: ignore[misc]
                     timeout=timeout, what=f"positive control: flow {control} delivering")
            if self.received[name] <= mark:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"flow {name} still delivered {timeout}s after the rule "
                                     f"change (received {self.received[name]}, mark {mark})")


def nft(topo: RouterTopology, *args: str, text: str | None = None) -> str:
    if text is not None:
        return topo.bed.run(topo.r, "nft", "-f", "-", input=text).stdout
    return topo.bed.run(topo.r, "nft", *args).stdout


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with primed_router("tnasyncfw") as t:
        yield t


def test_rule_changes_under_traffic_follow_the_rules(topo: RouterTopology) -> None:
    daemon = DaemonProcess(topo.r)
    traffic = Traffic(topo)
    try:
        traffic.flowing(*FLOWS)  # no ruleset yet: everything passes, through the fast path
        wait_for(lambda: tna_stats(topo.r)["forwarded_packets"] > 0, what="fast path in use")
        nft(topo, text=RULESET)
        traffic.flowing("A", "B", "D", "E")
        traffic.stopped("C", control="B")
        # under the ruleset the established flow E stays on the fast path (the others are new
        # to conntrack with every datagram: Linux's)
        before = tna_stats(topo.r)["forwarded_packets"]
        wait_for(lambda: tna_stats(topo.r)["forwarded_packets"] > before + 50,
                 what="the established flow forwarded by the fast path under the ruleset")

        # a drop rule at the top for port 6001 (A over IPv4, D over IPv6), then removed
        echo = nft(topo, "--echo", "--handle", "insert", "rule", "inet", "tnafw", "forward",
                   "udp", "dport", "6001", "drop")
        handle = re.search(r"# handle (\d+)", echo)
        assert handle, echo
        traffic.stopped("A", control="B")
        traffic.stopped("D", control="B")
        traffic.flowing("E")
        nft(topo, "delete", "rule", "inet", "tnafw", "forward", "handle", handle.group(1))
        traffic.flowing("A", "D", "B", "E")
        traffic.stopped("C", control="A")

        # set elements: C allowed, E's port no longer (E is established: it goes on)
        nft(topo, "add", "element", "inet", "tnafw", "allowed", "{ 6003 }")
        nft(topo, "delete", "element", "inet", "tnafw", "allowed", "{ 6004 }")
        traffic.flowing("C", "A", "E")
        nft(topo, "delete", "element", "inet", "tnafw", "allowed", "{ 6002 }")
        traffic.stopped("B", control="C")
        traffic.flowing("A", "C", "D", "E")

        # the ruleset gone: everything passes again
        nft(topo, "delete", "table", "inet", "tnafw")
        traffic.flowing(*FLOWS)
        assert daemon.proc.poll() is None
        assert daemon.errors() == []
    finally:
        traffic.close()
        if daemon.proc.poll() is None:
            daemon.stop()
