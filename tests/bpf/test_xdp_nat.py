"""Established TCP and NAT from conntrack's entry, through BPF_PROG_TEST_RUN.

UDP entries come from ``conntrack -I`` (with ``--src-nat``/``--dst-nat``); the TCP entry from a
real handshake that the router namespace's Linux forwards and masquerades (so conntrack has
tracked windows). Every expected frame is built by scapy from the translated header fields
with its checksums computed from scratch: an independent check of the data path's incremental
updates, byte for byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import struct
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.sendrecv import sendp

from testing.bpf_helpers import (
    H1_MAC,
    H2_MAC,
    R1_MAC,
    R2_MAC,
    XDP_DROP,
    XDP_PASS,
    XDP_REDIRECT,
    Router,
    clear_map,
    ct_last_bucket,
    ct_last_key,
    ct_last_records,
    program,
    run,
    v4,
    v6,
)
from testing.datapath_hooks import sync_firewall_for_test, sync_namespace_for_test
from tna import abi, netlink, netns
from tna.datapath.liberal import Request, RequestRing, read_stats
from tna.datapath.pins import open_map
from tna.firewall.tables import VERDICT_ACCEPT, VERDICT_DROP, FwRule, FwTables
from tna.introspect import kernel_hz
from tna.plan.types import CT_TCP_DEFAULT, Features, Namespace
from tna.testbed import wait_for

pytestmark = pytest.mark.root

PUBLIC = "10.2.0.1"  # r2: the masquerading address
PUBLIC6 = "fd00:2::1"  # r2's address: the IPv6 masquerade address
H1_V6, H2_V6 = "fd00:1::2", "fd00:2::2"
FIREWALL = Features(True, True, firewall_ipv4=True, firewall_ipv6=True)


def nat_table(nat: bool = True) -> FwTables:
    """A stateful forward hook that accepts everything established; ``nat``: nat hooks."""
    return FwTables(rules=(FwRule(VERDICT_ACCEPT),), classes=(), stateful=True, nat=nat)


@contextlib.contextmanager
def gateway(router: Router, table: FwTables, liberal: bool = False,
            features: Features = FIREWALL, v6: bool = False,
            local_v6: frozenset[str] = frozenset()) -> Iterator[None]:
    """The program with ``table`` as the forward hook of IPv4 (or ``v6``); ``local_v6``: the
    mirror of the local table that fib_direct_v6 consults."""
    ct_tcp = (*CT_TCP_DEFAULT[:2], liberal)
    ns = Namespace(firewall=(None, table) if v6 else (table, None), ct_tcp=ct_tcp,
                   ct_hz=kernel_hz(), local_v6=local_v6)
    with program(router, features), netns.entered(router.ns):
        sync_firewall_for_test(ns)
        sync_namespace_for_test(ns)
        yield


def conntrack(router: Router, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", *args],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture
def flows(router: Router) -> Iterator[None]:
    try:
        yield
    finally:
        subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", "-F"],
                       capture_output=True, check=False)


def udp_entry(router: Router, src: str, dst: str, sport: int, dport: int, *nat: str) -> None:
    conntrack(router, "-I", "-p", "udp", "-s", src, "-d", dst, "--sport", str(sport),
              "--dport", str(dport), "-t", "30", "--status", "ASSURED,SEEN_REPLY", *nat)


def expected(pkt: Packet, src: str, sport: int, dst: str, dport: int, l4: type[Packet],
             keep_l4_csum: bool = False) -> bytes:
    """``pkt`` routed out r2 with the translated fields; checksums recomputed by scapy."""
    out = pkt.copy()
    out[Ether].src, out[Ether].dst = R2_MAC, H2_MAC
    out[IP].src, out[IP].dst, out[IP].ttl = src, dst, out[IP].ttl - 1
    out[l4].sport, out[l4].dport = sport, dport
    del out[IP].chksum
    if not keep_l4_csum:
        del out[l4].chksum
    return bytes(out)


def expected6(pkt: Packet, src: str, sport: int, dst: str, dport: int) -> bytes:
    """``pkt`` routed out r2 with the translated fields; the UDP checksum recomputed by
    scapy."""
    out = pkt.copy()
    out[Ether].src, out[Ether].dst = R2_MAC, H2_MAC
    out[IPv6].src, out[IPv6].dst, out[IPv6].hlim = src, dst, out[IPv6].hlim - 1
    out[UDP].sport, out[UDP].dport = sport, dport
    del out[UDP].chksum
    return bytes(out)


def csum16(data: bytes) -> int:
    """Ones'-complement sum of 16-bit words: to pick a payload, not to check the output."""
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@pytest.mark.usefixtures("flows")
def test_snat_original_direction_udp(router: Router) -> None:
    udp_entry(router, "10.1.0.2", "10.2.0.2", 4001, 53, "--src-nat", f"{PUBLIC}:40001")
    pkt = Ether(bytes(v4() / UDP(sport=4001, dport=53) / b"query"))
    with gateway(router, nat_table()):
        got, out, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected(pkt, PUBLIC, 40001, "10.2.0.2", 53, UDP)


@pytest.mark.usefixtures("flows")
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_egress_gone_from_the_devmap_leaves_the_frame_untouched(router: Router,
                                                               family: str) -> None:
    """The frame is committed to its egress (the redirect) before NAT, TTL and MACs are
    rewritten: when the egress vanished from tna_tx meanwhile, Linux gets the frame exactly as
    it arrived (egress), not half translated: addresses, ports and checksums put back. The
    control: the same frame NATed and forwarded while r2 is in the devmap."""
    v6_ = family == "ipv6"
    if v6_:
        udp_entry(router, H1_V6, H2_V6, 4111, 53, "--src-nat", f"[{PUBLIC6}]:40111")
        pkt = Ether(bytes(v6() / UDP(sport=4111, dport=53) / b"query"))
        nated = expected6(pkt, PUBLIC6, 40111, H2_V6, 53)
    else:
        udp_entry(router, "10.1.0.2", "10.2.0.2", 4011, 53, "--src-nat", f"{PUBLIC}:40011")
        pkt = Ether(bytes(v4() / UDP(sport=4011, dport=53) / b"query"))
        nated = expected(pkt, PUBLIC, 40011, "10.2.0.2", 53, UDP)
    key = struct.pack("=I", router.ifindex["r2"])
    with gateway(router, nat_table(), v6=v6_):
        got, out, moved = run(router, bytes(pkt))
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
        assert out == nated
        tx = open_map("tna_tx")
        try:
            entry = tx.lookup(key)
            assert entry is not None and tx.delete(key)
            got, out, moved = run(router, bytes(pkt))
            tx.update(key, entry)
        finally:
            tx.close()
    assert (got, out, moved) == (XDP_PASS, bytes(pkt), {"egress": 1})


@pytest.mark.usefixtures("flows")
def test_dnat_original_direction_routes_on_the_translated_destination(router: Router) -> None:
    """r1's own address is DNATed to h2: only a FIB lookup on the translation forwards it."""
    udp_entry(router, "10.1.0.2", "10.1.0.1", 4003, 8053, "--dst-nat", "10.2.0.2:53")
    pkt = Ether(bytes(v4(dst="10.1.0.1") / UDP(sport=4003, dport=8053) / (b"x" * 7)))
    with gateway(router, nat_table()):
        got, out, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected(pkt, "10.1.0.2", 4003, "10.2.0.2", 53, UDP)


@pytest.mark.usefixtures("flows")
def test_dnat_reply_direction_restores_the_public_source(router: Router) -> None:
    """A server behind a port forward answers: the reply leaves with the forwarded address."""
    udp_entry(router, "10.2.0.2", "10.9.9.9", 5000, 80, "--dst-nat", "10.1.0.2:8080")
    pkt = Ether(bytes(v4(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=8080, dport=5000) / b"ok"))
    with gateway(router, nat_table()):
        got, out, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_reply": 1})
    assert out == expected(pkt, "10.9.9.9", 80, "10.2.0.2", 5000, UDP)


@pytest.mark.usefixtures("flows")
def test_both_manips_on_a_negative_zero_header_checksum(router: Router) -> None:
    """An entry with DNAT and SNAT, and a header checksum sent as 0xffff (the other form of
    zero, valid): the kernel rewrites the destination, decrements the TTL, then the source;
    the fast path does both manips before the TTL. The bytes must be Linux's anyway, with the
    header checksum in the form the kernel's arithmetic leaves it (0xffff never)."""
    udp_entry(router, "10.1.0.2", "10.1.0.1", 4013, 8053, "--dst-nat", "10.2.0.2:53",
              "--src-nat", f"{PUBLIC}:40013")
    plain = v4(dst="10.1.0.1", id=0) / UDP(sport=4013, dport=8053) / b"both"
    header = bytearray(bytes(plain[IP])[:20])
    header[10:12] = b"\0\0"
    ident = 0xFFFF - csum16(bytes(header))  # the header then sums to 0 without its checksum
    pkt = Ether(bytes(v4(dst="10.1.0.1", id=ident, chksum=0xFFFF) / UDP(sport=4013, dport=8053)
                      / b"both"))
    assert csum16(bytes(pkt[IP])[:20]) == 0xFFFF  # a valid header
    with gateway(router, nat_table()):
        got, out, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected(pkt, PUBLIC, 40013, "10.2.0.2", 53, UDP)


@pytest.mark.usefixtures("flows")
def test_zero_udp_checksum_stays_zero_and_zero_result_is_mangled(router: Router) -> None:
    udp_entry(router, "10.1.0.2", "10.2.0.2", 4005, 53, "--src-nat", f"{PUBLIC}:40005")
    none = Ether(bytes(v4() / UDP(sport=4005, dport=53, chksum=0) / b"abcd"))
    # a payload word for which the translated datagram's checksum comes out as 0: Linux then
    # sends 0xffff (CSUM_MANGLED_0), which is also what scapy writes for a zero sum
    after = (bytes(IP(src=PUBLIC, dst="10.2.0.2"))[12:20] + b"\x00\x11\x00\x0a"
             + struct.pack("!HHH", 40005, 53, 10))
    word = 0xFFFF - csum16(after)
    mangled = Ether(bytes(v4() / UDP(sport=4005, dport=53) / struct.pack("!H", word)))
    with gateway(router, nat_table()):
        got, out, _ = run(router, bytes(none))
        assert got == XDP_REDIRECT
        assert out == expected(none, PUBLIC, 40005, "10.2.0.2", 53, UDP, keep_l4_csum=True)
        assert Ether(out)[UDP].chksum == 0
        got, out, _ = run(router, bytes(mangled))
    assert got == XDP_REDIRECT
    assert Ether(out)[UDP].chksum == 0xFFFF
    assert out == expected(mangled, PUBLIC, 40005, "10.2.0.2", 53, UDP)


@pytest.mark.usefixtures("flows")
def test_veth_ingress_zero_udp_checksum_is_not_nated(router: Router) -> None:
    """On a veth, a UDP checksum of 0 may be a local sender's offload left to finish: such a
    datagram goes to Linux (l4_csum) even when its flow is NATed; a verified one is fast."""
    udp_entry(router, "10.1.0.2", "10.2.0.2", 4009, 53, "--src-nat", f"{PUBLIC}:40009")
    none = bytes(v4() / UDP(sport=4009, dport=53, chksum=0) / b"abcd")
    with gateway(router, nat_table(), features=dataclasses.replace(FIREWALL,
                                                                   verify_l4_csum=True)):
        assert run(router, bytes(v4() / UDP(sport=4009, dport=53) / b"abcd"))[0] == XDP_REDIRECT
        got, out, moved = run(router, none)
    assert (got, out, moved) == (XDP_PASS, none, {"l4_csum": 1})


@pytest.mark.usefixtures("flows")
def test_nat_entries_without_nat_hooks_and_icmp_go_to_linux(router: Router) -> None:
    udp_entry(router, "10.1.0.2", "10.2.0.2", 4007, 53, "--src-nat", f"{PUBLIC}:40007")
    pkt = bytes(v4() / UDP(sport=4007, dport=53))
    with gateway(router, nat_table()):
        assert run(router, pkt)[0] == XDP_REDIRECT  # positive control
        got, _, moved = run(router, bytes(v4() / ICMP(type=3, code=3) / IP() / UDP()))
        assert (got, moved) == (XDP_PASS, {"nat_related": 1})
    with gateway(router, nat_table(nat=False)):  # no nat chain: the kernel applies no NAT
        got, out, moved = run(router, pkt)
    assert (got, out, moved) == (XDP_PASS, pkt, {"nat": 1})


# ---- IPv6: the same rewrite over 128-bit addresses, no header checksum -------------------------

@pytest.mark.usefixtures("flows")
@pytest.mark.parametrize("fib_direct", [False, True], ids=["fib_full", "fib_direct"])
def test_ipv6_masquerade_both_directions(router: Router, fib_direct: bool) -> None:
    """Out: the source becomes the router's address. Back (a flow from h2 masqueraded out of
    r1): the reply is addressed to r1 itself and is forwarded only because conntrack's
    destination manip comes before the routing decision; with fib_direct_v6 the local-table
    mirror is asked about the translated destination. The control: the same reply without an
    entry of its own (established, without NAT) is Linux's, delivered locally."""
    udp_entry(router, H1_V6, H2_V6, 4101, 53, "--src-nat", f"[{PUBLIC6}]:40101")
    udp_entry(router, H2_V6, H1_V6, 53, 4102, "--src-nat", "[fd00:1::1]:40102")
    udp_entry(router, H1_V6, "fd00:1::1", 4102, 40199)
    out = Ether(bytes(v6() / UDP(sport=4101, dport=53) / b"query"))
    back = Ether(bytes(v6(dst="fd00:1::1") / UDP(sport=4102, dport=40102) / b"answer"))
    stray = Ether(bytes(v6(dst="fd00:1::1") / UDP(sport=4102, dport=40199) / b"answer"))
    features = dataclasses.replace(FIREWALL, fib_direct_v6=fib_direct)
    with gateway(router, nat_table(), features=features, v6=True,
                 local_v6=frozenset({PUBLIC6, "fd00:1::1"})):
        got, _, moved = run(router, bytes(stray))
        assert (got, moved) == (XDP_PASS, {"not_forwarded": 1})
        got, sent, moved = run(router, bytes(out))
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
        assert sent == expected6(out, PUBLIC6, 40101, H2_V6, 53)
        got, sent, moved = run(router, bytes(back))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_reply": 1})
    assert sent == expected6(back, H1_V6, 4102, H2_V6, 53)


@pytest.mark.usefixtures("flows")
def test_ipv6_dnat_routes_on_the_translated_destination(router: Router) -> None:
    """r1's own address is DNATed to h2: only a FIB lookup on the translation forwards it."""
    udp_entry(router, H1_V6, "fd00:1::1", 4103, 8053, "--dst-nat", f"[{H2_V6}]:53")
    pkt = Ether(bytes(v6(dst="fd00:1::1") / UDP(sport=4103, dport=8053) / (b"x" * 7)))
    with gateway(router, nat_table(), v6=True):
        got, out, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected6(pkt, H1_V6, 4103, H2_V6, 53)


@pytest.mark.usefixtures("flows")
def test_ipv6_zero_udp_checksum_stays_zero_and_zero_result_is_mangled(router: Router) -> None:
    """As for IPv4 (conntrack and NAT treat a UDP checksum of 0 the same in both families):
    0 stays 0, and a translated datagram whose checksum comes out 0 is sent as 0xffff."""
    udp_entry(router, H1_V6, H2_V6, 4105, 53, "--src-nat", f"[{PUBLIC6}]:40105")
    none = Ether(bytes(v6() / UDP(sport=4105, dport=53, chksum=0) / b"abcd"))
    pseudo = (bytes(IPv6(src=PUBLIC6, dst=H2_V6))[8:40] + struct.pack("!IxxxB", 10, 17)
              + struct.pack("!HHH", 40105, 53, 10))
    word = 0xFFFF - csum16(pseudo)
    mangled = Ether(bytes(v6() / UDP(sport=4105, dport=53) / struct.pack("!H", word)))
    with gateway(router, nat_table(), v6=True):
        got, out, _ = run(router, bytes(none))
        assert got == XDP_REDIRECT
        kept = none.copy()
        kept[Ether].src, kept[Ether].dst = R2_MAC, H2_MAC
        kept[IPv6].src, kept[IPv6].hlim, kept[UDP].sport = PUBLIC6, 63, 40105
        assert out == bytes(kept) and Ether(out)[UDP].chksum == 0
        got, out, _ = run(router, bytes(mangled))
    assert got == XDP_REDIRECT
    assert Ether(out)[UDP].chksum == 0xFFFF
    assert out == expected6(mangled, PUBLIC6, 40105, H2_V6, 53)


@pytest.mark.usefixtures("flows")
def test_ipv6_nat_without_nat_hooks_and_icmpv6_errors_go_to_linux(router: Router) -> None:
    udp_entry(router, H1_V6, H2_V6, 4107, 53, "--src-nat", f"[{PUBLIC6}]:40107")
    pkt = bytes(v6() / UDP(sport=4107, dport=53))
    error = bytes(v6() / ICMPv6DestUnreach(code=4) / IPv6(src=H2_V6, dst=H1_V6) / UDP())
    with gateway(router, nat_table(), v6=True):
        assert run(router, pkt)[0] == XDP_REDIRECT  # positive control
        got, _, moved = run(router, error)
        assert (got, moved) == (XDP_PASS, {"nat_related": 1})
    with gateway(router, nat_table(nat=False), v6=True):  # no nat chain: no NAT at all
        got, out, moved = run(router, pkt)
    assert (got, out, moved) == (XDP_PASS, pkt, {"nat": 1})


# ---- TCP: an entry conntrack tracked from a real handshake, masqueraded ----------------------

SEQ, SERVER_SEQ, WIN = 1000, 5000, 20000


@contextlib.contextmanager
def _handshake(router: Router, complete: bool) -> Iterator[int]:
    """h1:4100 -> h2:80 through r's Linux (masquerade, ct state invalid drop): SYN, SYN-ACK
    and (``complete``) ACK sent into r1/r2 from the hosts' ends; yields the masqueraded source
    port."""
    rules = """
table ip tnat {
    chain post {
        type nat hook postrouting priority srcnat;
        oifname "r2" masquerade
    }
}
table ip tfw {
    chain forward {
        type filter hook forward priority filter;
        ct state invalid drop
    }
}
"""
    subprocess.run(["ip", "netns", "exec", router.ns, "nft", "-f", "-"], input=rules,
                   text=True, check=True)
    try:
        host = next(ns for ns in router.bed.namespaces if ns.endswith("-h"))
        h1 = Ether(src=H1_MAC, dst=R1_MAC) / IP(src="10.1.0.2", dst="10.2.0.2")
        with netns.entered(host):
            sendp(h1 / TCP(sport=4100, dport=80, flags="S", seq=SEQ - 1, window=WIN),
                  iface="h1", verbose=False)
        port = _masqueraded_port(router)
        h2 = Ether(src=H2_MAC, dst=R2_MAC) / IP(src="10.2.0.2", dst=PUBLIC)
        with netns.entered(host):
            sendp(h2 / TCP(sport=80, dport=port, flags="SA", seq=SERVER_SEQ - 1, ack=SEQ,
                           window=WIN), iface="h2", verbose=False)
        if complete:
            with netns.entered(host):
                sendp(h1 / TCP(sport=4100, dport=80, flags="A", seq=SEQ, ack=SERVER_SEQ,
                               window=WIN), iface="h1", verbose=False)
            _wait_established(router)
        else:
            _wait_state(router, "SYN_RECV")
        yield port
    finally:
        subprocess.run(["ip", "netns", "exec", router.ns, "nft", "flush", "ruleset"],
                       check=False)
        subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", "-F"],
                       capture_output=True, check=False)


@pytest.fixture
def tcp_flow(router: Router) -> Iterator[int]:
    """An established, assured entry from a real handshake (see _handshake)."""
    with _handshake(router, complete=True) as port:
        yield port


@pytest.fixture
def tcp_syn_recv(router: Router) -> Iterator[int]:
    """The same connection before the handshake's last ACK: the entry in SYN_RECV."""
    with _handshake(router, complete=False) as port:
        yield port


def _tcp_entry(router: Router) -> str:
    out = subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", "-L", "-p", "tcp",
                          "--orig-port-src", "4100"], capture_output=True, text=True,
                         check=False).stdout
    return out.strip()


def _masqueraded_port(router: Router) -> int:
    wait_for(lambda: "SYN_SENT" in _tcp_entry(router), timeout=5, what="the SYN tracked")
    return int(re.findall(r"dport=(\d+)", _tcp_entry(router))[-1])


def _wait_state(router: Router, state: str) -> None:
    wait_for(lambda: state in _tcp_entry(router), timeout=5, what=f"the entry in {state}")


def _wait_established(router: Router) -> None:
    wait_for(lambda: "ESTABLISHED" in _tcp_entry(router) and "ASSURED" in _tcp_entry(router),
             timeout=5, what="the handshake tracked")


def h1_segment(flags: str = "A", payload: bytes = b"", **tcp: Any) -> Packet:
    fields: dict[str, Any] = {"seq": SEQ, "ack": SERVER_SEQ, "window": WIN, **tcp}
    return Ether(bytes(v4() / TCP(sport=4100, dport=80, flags=flags, **fields) / Raw(payload)))


def h1_ack() -> Packet:
    """An ACK inside the tracked window that changes nothing (a slightly smaller window) and
    is not a repeat of the handshake's last ACK, which the kernel saw."""
    return h1_segment(window=WIN - 1)


def test_tcp_ack_inside_the_tracked_window_is_fast_and_masqueraded(router: Router,
                                                                   tcp_flow: int) -> None:
    ack = h1_ack()
    with gateway(router, nat_table()):
        got, out, moved = run(router, bytes(ack))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected(ack, PUBLIC, tcp_flow, "10.2.0.2", 80, TCP)


@pytest.mark.parametrize(("segment", "reason"), [
    (lambda: h1_segment(payload=b"new data"), "ct_window"),  # would move td_end
    (lambda: h1_segment(ack=SERVER_SEQ + 10), "ct_window"),  # acks data conntrack never saw
    (lambda: h1_segment(window=WIN + 10000), "ct_window"),  # a new right window edge
    (lambda: h1_segment(seq=SEQ + 10 * WIN), "ct_window"),  # out of window: Linux's invalid
    (lambda: h1_segment("FA"), "ct_setup"),
    (lambda: h1_segment("RA"), "ct_setup"),
    (lambda: h1_segment("UA"), "ct_setup"),
])
def test_tcp_segments_the_kernel_must_see(router: Router, tcp_flow: int, segment: object,
                                          reason: str) -> None:
    pkt = bytes(segment())  # type: ignore[operator]
    with gateway(router, nat_table()):
        assert run(router, bytes(h1_ack()))[0] == XDP_REDIRECT  # positive control
        got, out, moved = run(router, pkt)
    assert (got, out, moved) == (XDP_PASS, pkt, {reason: 1})


# ---- conntrack's retransmission counter around fast segments (tna_ct_last) -----------------

MAX_RETRANS_S = 300  # nf_conntrack_tcp_timeout_max_retrans (the router's default)


def _timeout(router: Router) -> int:
    """The remaining seconds of the TCP entry, as conntrack -L shows them."""
    return int(_tcp_entry(router).split()[2])


def _forget_counts() -> None:
    """Drop the fast path's remembered segments: earlier tests' flows had the same tuple and
    sequence numbers (a real connection's random ISNs tell them apart)."""
    clear_map("tna_ct_last")


def _counted(router: Router) -> int:
    """Linux alone's retransmission count of the flow, as the fast path keeps it."""
    counts = [rec.truth.retrans for rec in ct_last_records()]
    assert len(counts) == 1, counts
    return counts[0]


def _send_fast(router: Router, pkt: Packet) -> None:
    got, _, moved = run(router, bytes(pkt))
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})


def test_repeats_of_a_fast_duplicate_ack_shorten_the_timeout(router: Router,
                                                            tcp_flow: int) -> None:
    """Four copies of a fast duplicate ACK, all forwarded: Linux alone counts three repeats
    and, at the third (nf_conntrack_tcp_max_retrans), refreshes the entry to
    nf_conntrack_tcp_timeout_max_retrans; the kernel saw none of them. The count is the fast
    path's, and the timeout with it: established after two repeats (the control), 300 s
    after the third."""
    dup = h1_ack()
    with gateway(router, nat_table()):
        _forget_counts()
        for _ in range(3):
            _send_fast(router, dup)
        assert _counted(router) == 2
        assert _timeout(router) > MAX_RETRANS_S + 1000  # control: established's (432000 s)
        _send_fast(router, dup)
        assert _counted(router) == 3
    assert _timeout(router) <= MAX_RETRANS_S


def test_a_repeat_of_the_kernels_last_segment_is_fast_and_counted(router: Router,
                                                                 tcp_flow: int) -> None:
    """The handshake's last ACK, which the kernel saw (its last segment, no repeat yet), sent
    again three times: each repeat is forwarded (it used to go to Linux, the only counter)
    and counted from the kernel's own values, so the third shortens the timeout as Linux's
    own count would."""
    again = h1_segment()
    with gateway(router, nat_table()):
        _forget_counts()
        _send_fast(router, again)
        _send_fast(router, again)
        assert _counted(router) == 2
        assert _timeout(router) > MAX_RETRANS_S + 1000  # control
        _send_fast(router, again)
        assert _counted(router) == 3
    assert _timeout(router) <= MAX_RETRANS_S


def test_another_segment_between_restarts_the_count(router: Router, tcp_flow: int) -> None:
    """A different fast segment between repeats restarts Linux alone's count: three copies of
    the handshake's ACK after a fast duplicate ACK with another window count two, not three,
    and the entry stays established; the control is the same series without it (previous
    test): three repeats, 300 s."""
    again = h1_segment()
    with gateway(router, nat_table()):
        _forget_counts()
        _send_fast(router, again)
        _send_fast(router, again)
        assert _counted(router) == 2  # control: the kernel's last, repeated twice
        _send_fast(router, h1_ack())
        assert _counted(router) == 0
        for _ in range(3):
            _send_fast(router, again)
        assert _counted(router) == 2
    assert _timeout(router) > MAX_RETRANS_S + 1000


def test_a_fast_zero_window_segment_shortens_the_timeout(router: Router, tcp_flow: int) -> None:
    """tcp_packet() refreshes an entry whose remembered segment advertised a zero window to
    nf_conntrack_tcp_timeout_max_retrans. Window-tracked, such a segment goes to Linux; a
    liberal sender's is fast (under a daemon), so the fast path applies the rule. The
    control: the same ACK with a window, established's timeout."""
    liberal_fast = dataclasses.replace(FIREWALL, ct_liberal_fast=True)
    with gateway(router, nat_table(), liberal=True, features=liberal_fast):
        _forget_counts()
        _send_fast(router, h1_segment(window=WIN - 1))
        assert _timeout(router) > MAX_RETRANS_S + 1000  # control
        _send_fast(router, h1_segment(window=0))
    assert _timeout(router) <= MAX_RETRANS_S


def _same_bucket(key: Any, n: int) -> list[tuple[str, int]]:
    """``n`` (source address, port) of connections to h2:80 whose tna_ct_last bucket is
    ``key``'s."""
    want, out = ct_last_bucket(bytes(key)), []
    for last in range(100, 200):
        src = f"10.9.0.{last}"
        other = ct_last_key(src, 0, "10.2.0.2", 80)
        for sport in range(1024, 65536):
            other.sport = socket.htons(sport)
            if ct_last_bucket(bytes(other)) == want:
                out.append((src, sport))
                if len(out) == n:
                    return out
    raise AssertionError("no tuples share the bucket")


def _fill_bucket(owners: list[tuple[str, int]], stale: int = -1) -> None:
    """Both ways of their bucket taken by records of ``owners`` (connections to h2:80) whose
    snapshot is what ``conntrack -I`` leaves (no segment tracked: all 0), but way ``stale``'s,
    which the kernel's values no longer match."""
    bucket_type = abi.struct_type("tna_ct_last_bucket")
    bucket = bucket_type()
    for i, (src, sport) in enumerate(owners):
        bucket.way[i].key = ct_last_key(src, sport, "10.2.0.2", 80)
        bucket.way[i].truth.seq = 77  # a fast segment's
        bucket.way[i].kernel.seq = 1 if i == stale else 0
    m = open_map("tna_ct_last")
    try:
        m.update(ct_last_bucket(bytes(bucket.way[0].key)).to_bytes(4, "little"), bytes(bucket))
    finally:
        m.close()


def _owners() -> set[tuple[str, int]]:
    return {(socket.inet_ntoa(bytes(r.key.saddr[:4])), socket.ntohs(r.key.sport))
            for r in ct_last_records()}


def test_a_bucket_held_by_live_connections_sends_the_segment_to_linux(router: Router,
                                                                      tcp_flow: int) -> None:
    """Both ways of the flow's bucket hold records their connections still need (entry in the
    table, snapshot equal to the kernel's values): the segment goes to Linux (ct_window),
    which counts it exactly, and the records stay. A way whose record is stale (the kernel
    saw a segment since) or whose connection is gone is taken: the segment is fast again."""
    ack, flow = h1_ack(), ("10.1.0.2", 4100)
    others = _same_bucket(ct_last_key(*flow, "10.2.0.2", 80), 2)
    for src, sport in others:
        conntrack(router, "-I", "-p", "tcp", "-s", src, "-d", "10.2.0.2", "--sport",
                  str(sport), "--dport", "80", "--state", "ESTABLISHED", "-t", "300",
                  "--status", "ASSURED,SEEN_REPLY")
    with gateway(router, nat_table()):
        _forget_counts()
        _send_fast(router, ack)  # positive control: an empty bucket
        assert _owners() == {flow}
        _fill_bucket(others)
        got, _, moved = run(router, bytes(ack))
        assert (got, moved) == (XDP_PASS, {"ct_window": 1})
        assert _owners() == set(others)
        _fill_bucket(others, stale=1)
        _send_fast(router, ack)
        assert _owners() == {others[0], flow}
        _fill_bucket(others)
        src, sport = others[0]
        conntrack(router, "-D", "-p", "tcp", "-s", src, "--sport", str(sport))
        _send_fast(router, ack)
        assert _owners() == {flow, others[1]}


# under a daemon (tna run): liberal sides' data may be fast, their RSTs repaired
LIBERAL_FAST = dataclasses.replace(FIREWALL, ct_liberal_fast=True)


def test_be_liberal_forwards_data_but_not_a_new_highest_ack(router: Router,
                                                           tcp_flow: int) -> None:
    """With be_liberal, a new highest ACK goes to Linux when the kernel would take it in (it
    moves td_maxack, against which the kernel judges the peer's RSTs), and is fast when the
    kernel would let it pass outside the window, moving nothing: an ACK of data the kernel
    never saw (here, before the server's data crossed Linux; in real traffic, of a fast
    request's answer). After that data crossed Linux, the same ACK is inside the window."""
    data = h1_segment("PA", b"GET / HTTP/1.0\r\n\r\n")
    higher = bytes(h1_segment(ack=SERVER_SEQ + 10))
    answer = (Ether(src=H2_MAC, dst=R2_MAC) / IP(src="10.2.0.2", dst=PUBLIC)
              / TCP(sport=80, dport=tcp_flow, flags="PA", seq=SERVER_SEQ, ack=SEQ, window=WIN)
              / Raw(b"0123456789"))
    with gateway(router, nat_table(), liberal=True, features=LIBERAL_FAST):
        got, out, moved = run(router, bytes(data))
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
        assert out == expected(data, PUBLIC, tcp_flow, "10.2.0.2", 80, TCP)
        got, _, moved = run(router, higher)  # beyond the server's td_end: outside
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
        host = next(ns for ns in router.bed.namespaces if ns.endswith("-h"))
        with netns.entered(host):  # the server's data through Linux: its td_end moves
            sendp(answer, iface="h2", verbose=False)
        wait_for(lambda: _timeout(router) <= 300, what="the server's data unacknowledged")
        got, _, moved = run(router, higher)
    assert (got, moved) == (XDP_PASS, {"ct_window": 1})


def test_be_liberal_data_is_linux_without_a_daemon(router: Router, tcp_flow: int) -> None:
    """Without ct_liberal_fast (no daemon to repair the entries of connections reset after
    fast data: a one-shot 'tna apply'), a liberal side's segments go to Linux (ct_window):
    the same data segment the daemon's programs forward (the control)."""
    data = bytes(h1_segment("PA", b"GET / HTTP/1.0\r\n\r\n"))
    with gateway(router, nat_table(), liberal=True, features=LIBERAL_FAST):
        assert run(router, data)[0] == XDP_REDIRECT  # control: fast under a daemon
    with gateway(router, nat_table(), liberal=True):
        got, out, moved = run(router, data)
    assert (got, out, moved) == (XDP_PASS, data, {"ct_window": 1})


# ---- the RST of a liberal side: a reset request when the kernel did not see its data --------

def reset(direction: int) -> Request:
    return Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80,
                   kind=abi.TNA_LIBERAL_RESET, dir=direction)


def test_rst_of_a_stale_liberal_side_asks_for_a_reset(router: Router, tcp_flow: int) -> None:
    """be_liberal=1 under a daemon: h1's RST after 100 bytes the kernel never saw (seq beyond
    its td_end: the data went through the fast path) goes to Linux and names the entry, h1's
    side, exactly once; an RST at the kernel's td_end (the kernel itself judges it: the peer's
    td_maxack, or an RST train) names nothing."""
    stale = bytes(h1_segment("RA", seq=SEQ + 100))
    fresh = bytes(h1_segment("RA"))
    with gateway(router, nat_table(), liberal=True, features=LIBERAL_FAST):
        drained_requests(router)
        before = liberal_stats(router)
        got, out, moved = run(router, stale)  # the positive control first
        stale_requests = drained_requests(router)
        fresh_verdict = run(router, fresh)
        fresh_requests = drained_requests(router)
        after = liberal_stats(router)
    assert (got, out, moved) == (XDP_PASS, stale, {"ct_setup": 1})
    assert stale_requests == [reset(0)]
    assert fresh_verdict == (XDP_PASS, fresh, {"ct_setup": 1})
    assert fresh_requests == []
    assert (after[0] - before[0], after[1] - before[1]) == (1, 0)


@pytest.mark.parametrize("why", ["no_daemon", "window_tracked", "not_an_rst"])
def test_no_reset_request_without_a_repair_to_make(router: Router, tcp_flow: int,
                                                   why: str) -> None:
    """The same stale RST asks nothing without ct_liberal_fast (its data was never fast), nor
    when h1's side is window-tracked (be_liberal=0, no flag); a FIN there asks nothing either.
    The control: the stale RST under a daemon with be_liberal=1 asks."""
    stale = bytes(h1_segment("FA" if why == "not_an_rst" else "RA", seq=SEQ + 100))
    with gateway(router, nat_table(), liberal=True, features=LIBERAL_FAST):
        drained_requests(router)
        run(router, bytes(h1_segment("RA", seq=SEQ + 100)))
        assert drained_requests(router) == [reset(0)]  # control
    with gateway(router, nat_table(), liberal=why != "window_tracked",
                 features=FIREWALL if why == "no_daemon" else LIBERAL_FAST):
        drained_requests(router)
        got, out, moved = run(router, stale)
        requests = drained_requests(router)
    assert (got, out, moved) == (XDP_PASS, stale, {"ct_setup": 1})
    assert requests == []


# ---- tna run --tcp-liberal: the program names the connection, Linux gets the segment ---------

ASKING = dataclasses.replace(FIREWALL, ct_tcp_liberal=True, ct_liberal_fast=True)


def drained_requests(router: Router) -> list[Request]:
    """What the programs put in the namespace's request ring since it was last drained."""
    got: list[Request] = []
    with netns.entered(router.ns):
        ring = RequestRing(got.append)
        try:
            ring.poll(0)
        finally:
            ring.close()
    return got


def liberal_stats(router: Router) -> tuple[int, int]:
    with netns.entered(router.ns):
        stats = read_stats()
    assert stats is not None
    return stats


@pytest.mark.parametrize("asking", [True, False], ids=["knob_on", "knob_off"])
def test_window_punt_asks_for_the_connection_only_with_the_knob(router: Router, tcp_flow: int,
                                                                asking: bool) -> None:
    """A data segment of an established, masqueraded connection under window tracking: Linux's
    either way (ct_window); with the knob, exactly one request naming conntrack's
    original-direction tuple (h1's side, not the masqueraded one)."""
    data = bytes(h1_segment("PA", b"more data"))
    with gateway(router, nat_table(), features=ASKING if asking else FIREWALL):
        drained_requests(router)
        before = liberal_stats(router)
        # positive control: an ACK inside the window is fast and asks nothing
        assert run(router, bytes(h1_ack()))[0] == XDP_REDIRECT
        assert drained_requests(router) == []
        got, out, moved = run(router, data)
        requests = drained_requests(router)
        after = liberal_stats(router)
    assert (got, out, moved) == (XDP_PASS, data, {"ct_window": 1})
    if asking:
        assert requests == [Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80)]
        assert (after[0] - before[0], after[1] - before[1]) == (1, 0)
    else:
        assert requests == []
        assert after == before


@pytest.mark.parametrize("asking", [True, False], ids=["knob_on", "knob_off"])
def test_handshake_last_ack_asks_for_the_connection(router: Router, tcp_syn_recv: int,
                                                    asking: bool) -> None:
    """The client's pure ACK of the SYN-ACK (entry in SYN_RECV): Linux's (ct_setup) either way;
    with the knob it names the connection at once, before any data (the daemon's mark then
    lands while the machine is still quiet). The same ACK carrying data is Linux's and asks
    nothing: the control that the request is the handshake ACK's."""
    ack = bytes(h1_segment("A"))
    with_data = bytes(h1_segment("A", b"GET"))
    with gateway(router, nat_table(), features=ASKING if asking else FIREWALL):
        drained_requests(router)
        got, out, moved = run(router, with_data)
        assert (got, out, moved) == (XDP_PASS, with_data, {"ct_setup": 1})
        assert drained_requests(router) == []
        got, out, moved = run(router, ack)
        requests = drained_requests(router)
    assert (got, out, moved) == (XDP_PASS, ack, {"ct_setup": 1})
    named = [Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80)]
    assert requests == (named if asking else [])
    assert "SYN_RECV" in _tcp_entry(router)  # test_run hands nothing to the kernel


def test_no_request_for_a_segment_the_forward_hook_drops(router: Router, tcp_flow: int) -> None:
    """The request is made only once the rest of the pipeline would have forwarded the segment:
    one a forward-hook rule drops asks nothing, and goes to Linux, not to XDP_DROP (Linux's
    conntrack must still see it move the window before its own forward hook drops it)."""
    data = bytes(h1_segment("PA", b"more data"))
    dropping = FwTables(rules=(FwRule(VERDICT_DROP),), classes=(), stateful=True, nat=True)
    with gateway(router, dropping, features=ASKING):
        drained_requests(router)
        assert run(router, bytes(h1_ack()))[0] == XDP_DROP  # control: the rule drops
        got, out, moved = run(router, data)
        requests = drained_requests(router)
    assert (got, out, moved) == (XDP_PASS, data, {"ct_window": 1})
    assert requests == []


def test_liberal_entry_is_fast_and_asks_nothing(router: Router, tcp_flow: int) -> None:
    """Once the entry is liberal (set here with ctnetlink, as the daemon does), the same data
    segment is forwarded and NATed, and nothing more is asked."""
    data = h1_segment("PA", b"more data")
    with gateway(router, nat_table(), features=ASKING):
        drained_requests(router)
        with netns.entered(router.ns):
            assert netlink.conntrack_set_liberal(socket.AF_INET, "10.1.0.2", "10.2.0.2",
                                                 4100, 80) == 0
        got, out, moved = run(router, bytes(data))
        requests = drained_requests(router)
    assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1, "nat_original": 1})
    assert out == expected(data, PUBLIC, tcp_flow, "10.2.0.2", 80, TCP)
    assert requests == []
