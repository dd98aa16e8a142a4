"""Stateful NAT scenarios: scripted TCP and UDP conversations through a NAT gateway.

Role in the equivalence suite: the fast path of established flows under conntrack and NAT
(docs/stateful.md) held to the suite's property, frame by frame *and* conntrack entry by
entry (``Scenario.conntrack``: the router's table at the end of each run must be the same,
timeouts within a tolerance, see ``ctstate``).

Topology: the router scenarios' (``scenarios.build_router``): h1 is the LAN (10.1.0.2), h2
the WAN (10.2.0.2), h3 a server (10.3.0.2).  The router masquerades (or SNATs) what leaves
r2 to 10.2.0.1, and forwards 10.2.0.1:8080/tcp to h3:80 and 10.2.0.1:8053/udp to h3:53
(DNAT).  The forward hook is the stateful firewall (established/related accept, **invalid
drop**, LAN out, services to h3, policy drop), written three ways: nftables, iptables-nft
and iptables-legacy.

The IPv6 gateway (``nat_nft6_liberal0``/``1``, nftables only): the same conversations in
IPv6 (``gateway_corpus`` with ``V6``): h1 fd00:1::2, h2 fd00:2::2, h3 fd00:3::2; a ``table
ip6 nat`` masquerades what leaves r2 to fd00:2::1 and forwards [fd00:2::1]:8080/tcp to
[fd00:3::2]:80 and [fd00:2::1]:8053/udp to [fd00:3::2]:53; the stateful filter is the same
inet table.  Its ICMP errors are ICMPv6: packet too big (MTU 1280, IPv6's minimum) for the
IPv4 fragmentation-needed, port unreachable for port unreachable.  The fences stay IPv4
echoes to the router.

Conversations: both ends are injected by the harness (the hosts are mute): the client's
segments from its host, the server's from the other, with consistent sequence numbers,
acknowledgements, window scaling, SACK-permitted and timestamps, as Linux endpoints would
send them.  The server answers to the address the NAT shows it (10.2.0.1 and the client's
port, which masquerade keeps, for the masqueraded flows; the WAN client's own address for the
port forward).  **Every step is its own fenced burst**: a step is sent only once the router
has handled the previous one (the harness' fence), so each segment meets conntrack in the
state the previous ones left, in both runs.

What each conversation exercises (``CONNECTIONS`` below):

* ``fin``: handshake, data both ways, duplicate ACKs both ways (fast), an ICMP
  fragmentation-needed (IPv6: packet too big) from the WAN about the flow (related, NATed
  back by Linux), FIN teardown (TIME_WAIT), then a late ACK;
* ``rst``: data, a duplicate ACK, the server's RST at the exact sequence number (CLOSE), then
  the client's stale ACK and data (no entry to be fast with);
* ``retrans``: data, then the client sends its last ACK again and the server retransmits a
  segment the client had acknowledged: the entry is left established with that
  retransmission last, so the snapshot holds the timeout its refresh chose;
* ``oow``: out-of-window segments under ``ct state invalid drop``: data a quarter of the
  sequence space ahead, an ACK of data never sent, data far below the window; then a
  duplicate ACK of the intact connection;
* ``dnat``: the TCP port forward, data both ways, duplicate ACKs, left established;
  ``dnat_fin``: the server closes first (TIME_WAIT); ``dnat_rst``: the client resets, then
  the server's late data (no entry to be fast with);
* UDP: a masqueraded flow and the UDP port forward, both directions, established then a
  stream (after 2 s idle, the packet that assures the entry is Linux's), and an ICMP port
  unreachable about each (from the WAN peer; from the port forward's server).

The ``expiry`` scenario sets short timeouts (``nf_conntrack_*_timeout`` in the router's
namespace), lets a UDP flow and a TCP connection expire while idle, keeps another TCP
connection alive only through fast-path refreshes, and then probes all three from both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, ICMPv6PacketTooBig, IPv6
from scapy.packet import Packet, Raw

from testing.equivalence import corpus
from testing.equivalence.corpus import CorpusFrame, Side, ip_id, payload, wire
from testing.equivalence.scenarios import (
    SIDES,
    STATEFUL_NFT,
    Network,
    RouterConfig,
    Scenario,
    build_router,
    sysctls,
)
from tna.testbed import Testbed

LAN, WAN, SRV = SIDES[1], SIDES[2], SIDES[3]
PUBLIC = "10.2.0.1"  # the router on link 2: the masquerade address and the port forwards'
H1, H2, H3 = LAN.v4, WAN.v4, SRV.v4
PUBLIC6 = "fd00:2::1"  # the same for IPv6


@dataclass(frozen=True)
class Addrs:
    """The gateway's addresses in one family: the LAN client, the WAN peer, the port forwards'
    server, and the router's WAN address (masquerade and port forwards)."""

    lan: str
    wan: str
    srv: str
    public: str

    @property
    def v6(self) -> bool:
        return ":" in self.public


V4 = Addrs(H1, H2, H3, PUBLIC)
V6 = Addrs(LAN.v6, WAN.v6, SRV.v6, PUBLIC6)

# ---- rulesets ----------------------------------------------------------------------------------

NAT_NFT = """
table ip nat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "r2" tcp dport 8080 dnat to 10.3.0.2:80
        iifname "r2" udp dport 8053 dnat to 10.3.0.2:53
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r2" masquerade
    }
}
"""

# The IPv6 gateway: the same masquerade and port forwards, in an ip6 nat table (the stateful
# filter, STATEFUL_NFT, is an inet table: it covers IPv6 already).
NAT6_NFT = """
table ip6 nat {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
        iifname "r2" tcp dport 8080 dnat to [fd00:3::2]:80
        iifname "r2" udp dport 8053 dnat to [fd00:3::2]:53
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "r2" masquerade
    }
}
"""


# iptables-nft writes ``-m conntrack``/``-m state`` as xtables matches, whose options nft
# does not show: the fast path cannot evaluate them and leaves the family's forwarding to
# Linux (docs/firewall.md).  Its gateway therefore filters with native matches only; the
# stateful filter is tested through nftables and iptables-legacy.
IPT_STATELESS_FILTER = (
    "*filter",
    ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
    "-A FORWARD -i r2 -o r1 -p tcp --dport 23 -j DROP",
    "-A FORWARD -i r2 -p udp --dport 9 -j DROP",
    "COMMIT")
IPT_STATEFUL_FILTER = (
    "*filter",
    ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
    "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
    "-A FORWARD -i r1 -j ACCEPT",
    "-A FORWARD -o r3 -p tcp -m multiport --dports 22,80,443 -j ACCEPT",
    "-A FORWARD -p udp -m udp --dport 53 -j ACCEPT",
    "-A FORWARD -p icmp -m icmp --icmp-type 8 -j ACCEPT",
    "COMMIT")


def iptables_gateway(snat: str, stateful: bool) -> str:
    """iptables-restore input for the gateway: the nat table (``snat`` is the POSTROUTING
    target: MASQUERADE or SNAT) and the filter table: STATEFUL_NFT's IPv4 rules, or (for
    iptables-nft) a stateless filter with an accept policy."""
    return "\n".join((
        "*nat",
        ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        "-A PREROUTING -i r2 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.3.0.2:80",
        "-A PREROUTING -i r2 -p udp -m udp --dport 8053 -j DNAT --to-destination 10.3.0.2:53",
        f"-A POSTROUTING -o r2 -j {snat}",
        "COMMIT",
        *(IPT_STATEFUL_FILTER if stateful else IPT_STATELESS_FILTER), ""))


@dataclass(frozen=True)
class Gateway:
    """One way of writing the NAT gateway."""

    name: str
    summary: str
    nft: str = ""
    restore: tuple[tuple[str, str], ...] = ()
    needs: tuple[str, ...] = ()  # commands that must exist
    fast_path: bool = True  # False: the plan leaves forwarding to Linux (nothing fast)


GATEWAYS = (
    Gateway("nft", "nftables: masquerade, dnat", nft=STATEFUL_NFT + NAT_NFT),
    Gateway("ipt_nft", "iptables-nft: -t nat MASQUERADE, DNAT; a stateless filter, policy "
            "accept (invalid segments are forwarded, not NATed)",
            restore=(("iptables-nft-restore", iptables_gateway("MASQUERADE", False)),),
            needs=("iptables-nft-restore",)),
    Gateway("ipt_nft_xt", "iptables-nft: -t nat MASQUERADE, DNAT; the stateful filter's "
            "-m conntrack/-m multiport/-m icmp are xtables matches: forwarding stays on Linux",
            restore=(("iptables-nft-restore", iptables_gateway("MASQUERADE", True)),),
            needs=("iptables-nft-restore",), fast_path=False),
    Gateway("ipt_legacy", "iptables-legacy: -t nat SNAT --to-source 10.2.0.1, DNAT; "
            "-m conntrack",
            restore=(("iptables-legacy-restore",
                      iptables_gateway(f"SNAT --to-source {PUBLIC}", True)),),
            needs=("iptables-legacy-restore",)),
)
# The IPv6 gateway (gateway_corpus with V6): nftables only
GATEWAY6 = Gateway("nft6", "IPv6, nftables: ip6 nat masquerade to fd00:2::1, dnat to "
                   "[fd00:3::2]:80 and :53", nft=STATEFUL_NFT + NAT6_NFT)


def build_gateway(bed: Testbed, gw: Gateway, ct_sysctls: Mapping[str, object]) -> Network:
    """The router with ``gw``'s rulesets; conntrack sysctls once the rules loaded the module
    (``net.netfilter`` exists in a namespace only with nf_conntrack loaded)."""
    net = build_router(bed, RouterConfig(nft=gw.nft, restore=gw.restore))
    sysctls(bed, net.namespaces["r"], ct_sysctls)
    return net


# ---- conversations ---------------------------------------------------------------------------

@dataclass
class Script:
    """The corpus of a scenario, step by step; each step its own fenced burst unless
    ``with_previous``."""

    frames: list[CorpusFrame] = field(default_factory=list)
    burst: int = 0
    liberal: bool = False  # the scenario's nf_conntrack_tcp_be_liberal (what is fast)

    def add(self, side: Side, name: str, pkt: Packet | bytes, fast: bool = False,
            with_previous: bool = False, idle_before: float = 0.0) -> None:
        if not with_previous:
            self.burst += 1
        self.frames.append(CorpusFrame(f"{side.host}:{name}", side.host, wire(pkt), fast,
                                       self.burst, idle_before))


def _ip(side: Side, name: str, src: str, dst: str) -> Packet:
    """The IP layer a Linux endpoint sends: IPv4 with DF and a per-step ID, or IPv6 (the family
    of ``src``)."""
    if ":" in src:
        return corpus.eth(side) / IPv6(src=src, dst=dst, hlim=64)
    return corpus.eth(side) / IP(src=src, dst=dst, id=ip_id(f"{side.host}:{name}"),
                                 flags="DF", ttl=64)


def _l3(data: bytes) -> Packet:
    """The IP packet of an Ethernet frame, IPv4 or IPv6."""
    return IPv6(data[14:]) if data[12:14] == b"\x86\xdd" else IP(data[14:])


@dataclass
class End:
    """One end of a TCP connection as it appears on its own link."""

    side: Side
    src: tuple[str, int]
    dst: tuple[str, int]
    isn: int
    nxt: int = 0  # next sequence number to send
    rcv: int = 0  # what it acknowledges
    ts: int = 0
    win: int = 502  # unscaled; window scale 7

    def __post_init__(self) -> None:
        self.nxt = self.isn
        self.ts = self.isn >> 12


class Tcp:
    """A TCP connection between a client and a server end, each injected on its own link.
    Sequence numbers, acknowledgements and timestamps follow the segments sent."""

    def __init__(self, script: Script, key: str, client: End, server: End) -> None:
        self.script, self.key, self.c, self.s = script, key, client, server
        self.sent: dict[str, bytes] = {}

    def _seg(self, who: End, peer: End, step: str, flags: str, size: int = 0,
             seq: int | None = None, ack: int | None = None, opts: list[Any] | None = None,
             advance: bool = True, win: int | None = None) -> bytes:
        name = f"{self.key}_{step}"
        who.ts += 10
        seq = who.nxt if seq is None else seq
        if opts is None:
            opts = [("NOP", None), ("NOP", None), ("Timestamp", (who.ts, peer.ts))]
        seg = TCP(sport=who.src[1], dport=who.dst[1], flags=flags, seq=seq & 0xFFFFFFFF,
                  ack=(who.rcv if ack is None else ack) & 0xFFFFFFFF if "A" in flags else 0,
                  window=who.win if win is None else win, options=opts)
        pkt = _ip(who.side, name, who.src[0], who.dst[0]) / seg
        if size:
            pkt = pkt / payload(f"{who.side.host}:{name}", size)
        if advance:
            who.nxt = seq + size + ("S" in flags) + ("F" in flags)
            peer.rcv = who.nxt
        data = wire(pkt)
        self.sent[step] = data
        return data

    def client(self, step: str, flags: str, size: int = 0, fast: bool = False,
               idle_before: float = 0.0, **kw: Any) -> bytes:
        data = self._seg(self.c, self.s, step, flags, size, **kw)
        self.script.add(self.c.side, f"{self.key}_{step}", data, fast, idle_before=idle_before)
        return data

    def server(self, step: str, flags: str, size: int = 0, fast: bool = False,
               idle_before: float = 0.0, **kw: Any) -> bytes:
        data = self._seg(self.s, self.c, step, flags, size, **kw)
        self.script.add(self.s.side, f"{self.key}_{step}", data, fast, idle_before=idle_before)
        return data

    def handshake(self) -> None:
        syn_opts = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (self.c.ts + 10, 0)),
                    ("NOP", None), ("WScale", 7)]
        self.client("syn", "S", opts=syn_opts)
        self.server("synack", "SA", opts=[("MSS", 1460), ("SAckOK", b""),
                                         ("Timestamp", (self.s.ts + 10, self.c.ts)),
                                         ("NOP", None), ("WScale", 7)])
        self.client("ack", "A")

    def resend(self, who: str, step: str, again: str, fast: bool = False) -> None:
        """A retransmission of ``step``: the same TCP segment, a new IP ID (as Linux)."""
        old = _l3(self.sent[step])
        end = self.c if who == "client" else self.s
        pkt = _ip(end.side, f"{self.key}_{again}", old.src, old.dst) / old[TCP]
        self.script.add(end.side, f"{self.key}_{again}", wire(pkt), fast)


def masq_tcp(script: Script, key: str, port: int, a: Addrs = V4) -> Tcp:
    """h1:port -> h2:80, masqueraded to 10.2.0.1:port (``a``: the family's addresses)."""
    isn = (ip_id(key) << 16) | 0x1000
    return Tcp(script, key, End(LAN, (a.lan, port), (a.wan, 80), isn),
               End(WAN, (a.wan, 80), (a.public, port), isn ^ 0x5A5A0000))


def dnat_tcp(script: Script, key: str, port: int, a: Addrs = V4) -> Tcp:
    """h2:port -> 10.2.0.1:8080, forwarded to h3:80 (``a``: the family's addresses)."""
    isn = (ip_id(key) << 16) | 0x2000
    return Tcp(script, key, End(WAN, (a.wan, port), (a.public, 8080), isn),
               End(SRV, (a.srv, 80), (a.wan, port), isn ^ 0x3C3C0000))


def udp(script: Script, side: Side, name: str, src: tuple[str, int], dst: tuple[str, int],
        fast: bool = False, with_previous: bool = False, idle_before: float = 0.0) -> None:
    pkt = _ip(side, name, src[0], dst[0]) / UDP(sport=src[1], dport=dst[1]) / payload(
        f"{side.host}:{name}", 48)
    script.add(side, name, pkt, fast, with_previous, idle_before)


def icmp_error(script: Script, side: Side, name: str, src: str, dst: str, type_: int,
               code: int, quoted: Packet, **icmp: Any) -> None:
    """An ICMP error from ``side`` quoting ``quoted`` (IP header and 8+ bytes of it)."""
    pkt = _ip(side, name, src, dst) / ICMP(type=type_, code=code, **icmp) / Raw(
        wire(quoted)[:28 + 32])
    script.add(side, name, pkt)


def icmp6_error(script: Script, side: Side, name: str, src: str, dst: str, msg: Packet,
                quoted: Packet) -> None:
    """An ICMPv6 error ``msg`` from ``side`` quoting ``quoted`` (IPv6 header and 8+ bytes of
    it, as much as the IPv4 errors quote beyond their header)."""
    pkt = _ip(side, name, src, dst) / msg / Raw(wire(quoted)[:48 + 32])
    script.add(side, name, pkt)


def too_big(script: Script, side: Side, name: str, src: str, dst: str, quoted: Packet,
            mtu: int) -> None:
    """ICMP fragmentation needed (IPv4) or ICMPv6 packet too big (MTU at least 1280)."""
    if ":" in src:
        icmp6_error(script, side, name, src, dst, ICMPv6PacketTooBig(mtu=max(mtu, 1280)),
                    quoted)
    else:
        icmp_error(script, side, name, src, dst, 3, 4, quoted, nexthopmtu=mtu)


def port_unreachable(script: Script, side: Side, name: str, src: str, dst: str,
                     quoted: Packet) -> None:
    """ICMP or ICMPv6 port unreachable."""
    if ":" in src:
        icmp6_error(script, side, name, src, dst, ICMPv6DestUnreach(code=4), quoted)
    else:
        icmp_error(script, side, name, src, dst, 3, 3, quoted)


def quoted_ip(src: str, dst: str, ident: int) -> Packet:
    """The IP header of a packet as its receiver got it (one hop: TTL 63), for an ICMP error
    to quote; ``ident``: its IPv4 ID."""
    if ":" in src:
        return IPv6(src=src, dst=dst, hlim=63)
    return IP(src=src, dst=dst, ttl=63, id=ident)


def as_received(data: bytes, src: str) -> Packet:
    """The IP packet of a frame sent through the NAT, as the far side received it: source
    NATed to ``src``, TTL (hop limit) decremented, checksums recomputed (what an ICMP error
    there quotes)."""
    pkt = _l3(data)
    pkt.src = src
    if isinstance(pkt, IPv6):
        pkt.hlim -= 1
    else:
        pkt.ttl -= 1
        del pkt.chksum
    del pkt[TCP].chksum
    return type(pkt)(wire(pkt))


def as_received_dnat(data: bytes, public: str = PUBLIC) -> Packet:
    """A segment the port forward's server sent, as the WAN client received it: from
    ``public``:8080 (un-DNAT)."""
    pkt = as_received(data, public)
    pkt[TCP].sport = 8080
    del pkt[TCP].chksum
    return type(pkt)(wire(pkt))


def back_to_back(s: Script, t: Tcp, liberal: bool) -> None:
    """Segments that change the entry's state followed at once, in the same burst, by a
    duplicate ACK of before: with TNA the fast path may judge the second before the stack has
    handled the first (XDP_PASS hands packets to the stack in batches)."""
    t.handshake()
    t.client("data1", "PA", 100, fast=liberal)
    t.server("ack1", "A", fast=liberal)
    old = t.client("dupack", "A", fast=True)
    t.client("fin", "FA")
    s.add(t.c.side, f"{t.key}_dupack_after_fin", old, with_previous=True)
    t.server("finack", "FA")
    t.client("lastack", "A")


# ---- the corpus of the gateway scenarios ------------------------------------------------------

STREAM_IDLE = 2.5  # s: past a UDP entry's 2 s stream mark (udp_packet(): stream_ts)


def gateway_corpus(liberal: bool, a: Addrs = V4) -> list[CorpusFrame]:
    """The conversations of ``CONNECTIONS``; ``fast`` marks the steps the fast path must
    forward, with be_liberal ``liberal``; ``a``: the family's addresses (V4 or V6)."""
    s = Script(liberal=liberal)
    h1, h2, h3, public = a.lan, a.wan, a.srv, a.public
    # UDP first, compact: a replied flow stays unassured for 2 s after its creation, and
    # every datagram here must fall in that time (fast: refreshed to nf_conntrack_udp_timeout)
    udp(s, LAN, "u_masq_out1", (h1, 40301), (h2, 7000))
    udp(s, WAN, "u_masq_reply1", (h2, 7000), (public, 40301))
    udp(s, LAN, "u_masq_out2", (h1, 40301), (h2, 7000), fast=True)
    udp(s, WAN, "u_masq_reply2", (h2, 7000), (public, 40301), fast=True)
    udp(s, WAN, "u_dnat_query1", (h2, 40401), (public, 8053))
    udp(s, SRV, "u_dnat_answer1", (h3, 53), (h2, 40401))
    udp(s, WAN, "u_dnat_query2", (h2, 40401), (public, 8053), fast=True)
    udp(s, WAN, "u_dnat_query3", (h2, 40401), (public, 8053), fast=True, with_previous=True)
    udp(s, SRV, "u_dnat_answer2", (h3, 53), (h2, 40401), fast=True)
    # ICMP errors about the NATed UDP flows (Linux: related, the quoted header rewritten)
    port_unreachable(s, WAN, "u_masq_unreach", h2, public, quoted_ip(
        public, h2, 0x1111) / UDP(sport=40301, dport=7000) / payload("h2:u_masq_unreach"))
    port_unreachable(s, SRV, "u_dnat_unreach", h3, h2, quoted_ip(
        h2, h3, 0x2222) / UDP(sport=40401, dport=53) / payload("h3:u_dnat_unreach"))

    # With be_liberal=1 a connection's first data segment is fast; the kernel's window then
    # lags behind (it never saw that data), so the peer's ACK of it is outside the window: the
    # kernel lets it pass without moving anything (td_maxack included), and so may the fast
    # path; from then on every ACK-only or data segment of the connection is fast, up to the
    # FIN.  Without be_liberal, new data and every ACK that moves the window are Linux's;
    # duplicate ACKs and retransmissions inside the window are fast, a repeat of the very
    # segment the kernel saw last too (the fast path keeps conntrack's retransmission count
    # for it: tna_ct_last).
    lib = liberal

    # fin: data both ways, duplicate ACKs, an ICMP error about the flow, FIN teardown
    t = masq_tcp(s, "fin", 41201, a)
    t.handshake()
    t.client("data1", "PA", 100, fast=lib)
    t.server("ack1", "A", fast=lib)
    t.server("data2", "PA", 300, fast=lib)
    t.client("ack2", "A", fast=lib)
    t.client("dupack2", "A", fast=True)  # the kernel's last again: counted fast
    t.server("dupack1", "A", fast=True)
    big = t.client("data3", "PA", 400, fast=lib)
    too_big(s, WAN, "fin_too_big" if a.v6 else "fin_frag_needed", h2, public,
            as_received(big, public), 400)
    t.server("ack3", "A", fast=lib)
    t.client("fin", "FA")
    t.server("finack", "FA")
    t.client("lastack", "A")
    t.server("late_dupack", "A")

    # rst: the server resets at the exact sequence number; the client's stale segments
    t = masq_tcp(s, "rst", 41202, a)
    t.handshake()
    t.client("data1", "PA", 100, fast=lib)
    t.server("ack1", "A", fast=lib)
    t.client("dupack", "A", fast=True)
    t.server("rst", "RA")
    t.client("stale_ack", "A")
    t.client("stale_data", "PA", 50)

    # retrans: the last ACK again, then acknowledged data again; left established
    t = masq_tcp(s, "retrans", 41203, a)
    t.handshake()
    t.client("data1", "PA", 100, fast=lib)
    t.server("ack1", "A", fast=lib)
    t.server("data2", "PA", 200, fast=lib)
    t.client("ack2", "A", fast=lib)
    t.resend("client", "ack2", "ack2_again", fast=True)  # the kernel's last: counted fast
    t.resend("server", "data2", "data2_again", fast=True)
    if not liberal:
        # storm: data the client never acknowledges, sent again three times: conntrack
        # counts the repeats of its last segment and shortens the timeout
        # (nf_conntrack_tcp_timeout_max_retrans); the repeats are fast, counted in
        # tna_ct_last.  With be_liberal=1 the data itself would be fast: the kernel's window
        # would lag (part of STALE_WINDOW below).
        t = masq_tcp(s, "storm", 41205, a)
        t.handshake()
        t.client("data1", "PA", 100)
        t.server("ack1", "A")
        t.server("data2", "PA", 200)
        for i in (1, 2, 3):
            t.resend("server", "data2", f"data2_again{i}", fast=True)

    # oow: out-of-window segments under ct state invalid drop, then the connection goes on
    t = masq_tcp(s, "oow", 41204, a)
    t.handshake()
    t.client("data1", "PA", 100, fast=lib)
    t.server("ack1", "A", fast=lib)
    base = t.c.nxt
    t.client("ahead", "PA", 60, fast=lib, seq=base + (1 << 30), advance=False)
    t.server("ack_unseen", "A", fast=lib, ack=base + 5000, advance=False)
    t.client("below", "PA", 60, fast=lib, seq=base - (1 << 30), advance=False)
    t.client("dupack", "A", fast=True)

    # dnat: the TCP port forward, left established
    t = dnat_tcp(s, "dnat", 41301, a)
    t.handshake()
    t.client("req", "PA", 120, fast=lib)
    resp = t.server("resp", "PA", 600, fast=lib)
    # the WAN side reports the response too big for its link: related to the port forward's
    # entry, to the server with the quoted header translated back (Linux's)
    too_big(s, WAN, "dnat_too_big" if a.v6 else "dnat_frag_needed", h2, public,
            as_received_dnat(resp, public), 576)
    t.client("ack_resp", "A", fast=lib)
    t.client("dupack", "A", fast=True)  # the kernel's last segment again: counted fast
    t.server("dupack", "A", fast=True)

    # dnat_fin: the server closes first (TIME_WAIT); dnat_rst: the server resets at the
    # client's highest acknowledgement (CLOSE), then the client's late segment
    t = dnat_tcp(s, "dnat_fin", 41302, a)
    t.handshake()
    t.client("req", "PA", 80, fast=lib)
    t.server("resp", "PA", 200, fast=lib)
    t.client("ack_resp", "A", fast=lib)
    t.server("fin", "FA")
    t.client("finack", "FA")
    t.server("lastack", "A")
    t = dnat_tcp(s, "dnat_rst", 41303, a)
    t.handshake()
    t.client("req", "PA", 80, fast=lib)
    t.server("ack_req", "A", fast=lib)
    t.client("dupack", "A", fast=True)
    t.server("rst", "RA")
    t.client("late_data", "PA", 40)
    back_to_back(s, masq_tcp(s, "b2b", 41305, a), liberal)
    if not liberal:
        # A side resets after its own data was acknowledged.  With be_liberal=1 that data
        # is fast and the kernel does not recognise the RST: a known divergence
        # (STALE_WINDOW below), reproduced on its own.
        rst_after_data(s, dnat_tcp(s, "dnat_rst_client", 41304, a), train=False)

    # UDP again after its stream mark: the datagram that assures an entry is Linux's, the
    # next ones are fast again (refreshed to the stream timeout)
    udp(s, LAN, "u_masq_out3", (h1, 40301), (h2, 7000), idle_before=STREAM_IDLE)
    udp(s, WAN, "u_masq_reply3", (h2, 7000), (public, 40301), fast=True)
    udp(s, WAN, "u_dnat_query4", (h2, 40401), (public, 8053))
    udp(s, SRV, "u_dnat_answer4", (h3, 53), (h2, 40401), fast=True)
    udp(s, LAN, "u_masq_out4", (h1, 40301), (h2, 7000), fast=True)
    return s.frames


LIBERAL = "net.netfilter.nf_conntrack_tcp_be_liberal"


def _gateway_scenario(gw: Gateway, liberal: bool, a: Addrs = V4) -> Scenario:
    name = f"nat_{gw.name}_liberal{int(liberal)}"
    return Scenario(name, f"NAT gateway, TCP/UDP conversations ({gw.summary}; "
                          f"be_liberal={int(liberal)})",
                    lambda bed: build_gateway(bed, gw, {LIBERAL: int(liberal)}),
                    lambda: gateway_corpus(liberal, a), fast_path=gw.fast_path, conntrack=True,
                    daemon=liberal)  # be_liberal's fast data needs the daemon's RST repair


# ---- idle expiry -------------------------------------------------------------------------------

EXPIRY_SYSCTLS = {
    "net.netfilter.nf_conntrack_udp_timeout": 3,
    "net.netfilter.nf_conntrack_udp_timeout_stream": 30,
    "net.netfilter.nf_conntrack_tcp_timeout_established": 4,
}
# Idle periods, against those timeouts: after IDLE_1 + IDLE_2 everything Linux last saw
# before IDLE_1 has expired (UDP 2 s margin, TCP 1 s); a connection refreshed by the fast path
# between them is still alive (1.5 s margin).
IDLE_1 = 2.5
IDLE_2 = 2.5


def expiry_corpus() -> list[CorpusFrame]:
    """Flows x, y (UDP) and t, u (TCP) expire while idle; x and t are then probed from the
    WAN (the expired mapping must not be used: Linux answers for itself), y and u from the
    LAN (a new entry; a flow of its own each, so that the WAN probes' new entries never take
    the port masquerade would keep: it would then pick a random one).  k is kept alive by
    fast-path refreshes alone."""
    s = Script()
    tcp: dict[str, Tcp] = {}
    for key, port in (("x", 40501), ("y", 40502)):
        udp(s, LAN, f"{key}_out1", (H1, port), (H2, 7000))
        udp(s, WAN, f"{key}_reply1", (H2, 7000), (PUBLIC, port))
        # refreshed to nf_conntrack_udp_timeout (3 s), not to the stream timeout (30 s)
        udp(s, LAN, f"{key}_out2", (H1, port), (H2, 7000), fast=True)
    for key, port in (("t", 41501), ("u", 41502), ("k", 41503)):
        t = tcp[key] = masq_tcp(s, key, port)
        t.handshake()
        t.client("data1", "PA", 100)
        t.server("ack1", "A")
        t.client("dupack1", "A", fast=True)  # refreshed to established (4 s)
    k = tcp["k"]
    # a smaller window than the server's last ACK: not a repeat of the kernel's last segment
    k.server("dupack_a", "A", fast=True, idle_before=IDLE_1, win=501)
    # after IDLE_1 + IDLE_2: x, y, t, u expired; k, refreshed after IDLE_1, is alive
    udp(s, WAN, "x_reply_expired", (H2, 7000), (PUBLIC, 40501), idle_before=IDLE_2)
    tcp["t"].server("ack_expired", "A")
    k.server("dupack_b", "A", fast=True, win=501)
    udp(s, LAN, "y_out_again", (H1, 40502), (H2, 7000))
    tcp["u"].client("ack_again", "A")
    k.client("dupack2", "A", fast=True)
    return s.frames


EXPIRY = Scenario(
    "nat_nft_expiry", "NAT gateway (nftables) with short conntrack timeouts "
    "(UDP 3 s, stream 30 s, TCP established 4 s): entries expire while idle, one is kept "
    "alive by fast-path refreshes only",
    lambda bed: build_gateway(bed, GATEWAYS[0], {LIBERAL: 0, **EXPIRY_SYSCTLS}),
    expiry_corpus, fast_path=True, conntrack=True)

# ---- known divergences --------------------------------------------------------------------------

def rst_after_data(s: Script, t: Tcp, train: bool) -> None:
    """The client sends data, then resets: at once (an "RST train": the RST's sequence number
    is the end of that data) or after the server acknowledged it (the RST's sequence number is
    the server's highest ACK); then the server's late ACK."""
    t.handshake()
    t.client("data1", "PA", 100, fast=s.liberal)
    if not train:
        t.server("ack1", "A")
    t.client("rst", "RA")
    t.server("late", "A")


def stale_window_corpus() -> list[CorpusFrame]:
    """be_liberal=1 under a daemon, the client's data fast: it resets at once (train) or after
    the server's ACK (exact).  The kernel under TNA never saw the data, so it recognises
    neither RST; the daemon's RST repair closes both entries as Linux alone does.  Then, 11 s
    later, a segment of the train connection's server: Linux alone let the connection go 10 s
    after its last segment and answers it (RST); so must the router under TNA."""
    s = Script(liberal=True)
    train = masq_tcp(s, "train", 41601)
    rst_after_data(s, train, train=True)
    rst_after_data(s, dnat_tcp(s, "exact", 41602), train=False)
    train.server("after_close_timeout", "A", idle_before=STALE_IDLE)
    return s.frames


def unacked_corpus() -> list[CorpusFrame]:
    """be_liberal=1 under a daemon: the client sends more data and then a pure ACK while that
    data is unacknowledged.  Linux alone marks the client DATA_UNACKNOWLEDGED and refreshes
    the entry to the unacknowledged timeout, 300 s; the kernel under TNA never saw the data."""
    s = Script(liberal=True)
    t = masq_tcp(s, "unacked", 41603)
    t.handshake()
    t.client("data1", "PA", 100, fast=True)
    t.server("ack1", "A")
    t.client("data2", "PA", 100, fast=True)
    t.client("ack", "A", fast=True)
    return s.frames


STALE_IDLE = 11.0  # s: past nf_conntrack_tcp_timeout_close (10 s)


STALE_WINDOW = Scenario(
    "nat_nft_liberal1_stale_window", "be_liberal=1 under a daemon: a connection whose data "
    "went through the fast path is reset by that data's sender (the daemon's RST repair)",
    lambda bed: build_gateway(bed, GATEWAYS[0], {LIBERAL: 1}), stale_window_corpus,
    fast_path=True, conntrack=True, daemon=True)

UNACKED = Scenario(
    "nat_nft_liberal1_unacked", "be_liberal=1: conntrack's unacknowledged-data timeout of a "
    "connection whose data went through the fast path (known divergence of the conntrack "
    "table)",
    lambda bed: build_gateway(bed, GATEWAYS[0], {LIBERAL: 1}), unacked_corpus,
    fast_path=True, conntrack=True, daemon=True)

def retrans_count_corpus() -> list[CorpusFrame]:
    """be_liberal=0: conntrack counts a segment identical to the last one it saw as a
    retransmission and, from the third, shortens the timeout (nf_conntrack_tcp_max_retrans,
    nf_conntrack_tcp_timeout_max_retrans).  over: a fast segment of the other side between the
    client's ACK and its three repeats; Linux alone restarts counting there (432000 s), where
    the kernel alone would count three (300 s).  under: four copies of a fast duplicate ACK:
    Linux alone counts three (300 s), where the kernel, seeing none, would count none.  Every
    segment after the handshake's data is fast: the count is the fast path's (tna_ct_last)."""
    s = Script()
    t = masq_tcp(s, "over", 41801)
    t.handshake()
    t.client("data1", "PA", 100)
    t.server("ack1", "A")
    t.server("data2", "PA", 200)
    t.client("ack2", "A")
    t.server("dupack", "A", fast=True)
    for i in (1, 2, 3):
        t.resend("client", "ack2", f"ack2_again{i}", fast=True)
    t = masq_tcp(s, "under", 41802)
    t.handshake()
    t.client("data1", "PA", 100)
    t.server("ack1", "A")
    t.client("dupack", "A", fast=True)
    for i in (1, 2, 3):
        t.resend("client", "dupack", f"dupack_again{i}", fast=True)
    return s.frames


RETRANS_COUNT = Scenario(
    "nat_nft_liberal0_retrans_count", "be_liberal=0: conntrack's retransmission counter "
    "around fast segments (the fast path keeps it: tna_ct_last)",
    lambda bed: build_gateway(bed, GATEWAYS[0], {LIBERAL: 0}), retrans_count_corpus,
    fast_path=True, conntrack=True)

# Scenarios that reproduce a known divergence (a strict xfail in tests/equivalence/
# test_nat_flows.py: the day the data path is fixed it XPASSes, and the entry goes).
KNOWN: dict[str, str] = {
    UNACKED.name: (
        "DIVERGENCE: with nf_conntrack_tcp_be_liberal=1 the fast path forwards data the "
        "kernel never sees: its td_end lags, the peer's ACK of that data is outside the window "
        "and moves neither td_maxack nor the flags. The sender is never marked "
        "DATA_UNACKNOWLEDGED: while its data is unacknowledged its segments refresh the entry "
        "to 432000 s, where Linux alone uses nf_conntrack_tcp_timeout_unacknowledged (300 s). "
        "Not fixable from XDP: the entry's window, flags and last-segment fields are read-only "
        "to BPF (the RST of such a sender, the other consequence, is repaired by the daemon: "
        "nat_nft_liberal1_stale_window)"),
}

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    *(_gateway_scenario(gw, liberal) for gw in GATEWAYS for liberal in (False, True)
      if gw.fast_path or not liberal),
    *(_gateway_scenario(GATEWAY6, liberal, V6) for liberal in (False, True)),
    EXPIRY,
    STALE_WINDOW,
    UNACKED,
    RETRANS_COUNT,
)}
NEEDS: dict[str, tuple[str, ...]] = {
    f"nat_{gw.name}_liberal{i}": gw.needs for gw in GATEWAYS for i in (0, 1)}
