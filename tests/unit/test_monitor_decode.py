"""tna monitor's header lines: frames decoded from their first bytes (no root, no kernel)."""

from __future__ import annotations

import datetime
import json

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tna import abi
from tna.monitor import Event, Record, decode, parse_event

ETH = Ether(src="02:00:00:00:01:02", dst="02:00:00:00:01:01")


def test_ipv4_udp_tcp_icmp() -> None:
    udp = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9", ttl=1) / UDP(sport=40000, dport=443))
    d = decode(udp, 64)
    assert d.text == "IPv4 10.1.0.2:40000 > 10.2.0.9:443 udp len 64 ttl 1"
    assert d.fields["sport"] == 40000 and d.fields["ttl"] == 1 and d.fields["proto"] == "udp"
    tcp = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9") / TCP(sport=1, dport=80, flags="SA"))
    assert decode(tcp, 60).text == "IPv4 10.1.0.2:1 > 10.2.0.9:80 tcp flags SA len 60 ttl 64"
    icmp = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9", ttl=1) / ICMP())
    assert decode(icmp, 98).text == "IPv4 10.1.0.2 > 10.2.0.9 icmp type 8 code 0 len 98 ttl 1"


def test_ipv4_fragment_and_options() -> None:
    frag = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9", frag=10, flags="MF", proto=17)
                 / (b"x" * 8))
    assert decode(frag, 60).text == "IPv4 10.1.0.2 > 10.2.0.9 udp frag off 80 MF len 60 " \
        "ttl 64"
    opts = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9", options=b"\x01" * 4) / UDP())
    assert "options 4" in decode(opts, 70).text


def test_ipv6_arp_vlan_other() -> None:
    v6 = bytes(ETH / IPv6(src="fd00:1::2", dst="fd00:2::2", hlim=1) / UDP(sport=5, dport=53))
    assert decode(v6, 70).text == "IPv6 [fd00:1::2]:5 > [fd00:2::2]:53 udp len 70 hlim 1"
    ping6 = bytes(ETH / IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest())
    assert decode(ping6, 70).text.startswith("IPv6 fe80::1 > ff02::1 icmp6 type 128")
    arp = bytes(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.1.0.2", pdst="10.1.0.1"))
    assert decode(arp, 42).text == "ARP who-has 10.1.0.1 tell 10.1.0.2 len 42"
    tagged = bytes(ETH / Dot1Q(vlan=7) / IP(src="10.1.0.2", dst="10.2.0.9") / UDP())
    assert decode(tagged, 64).text.startswith("vlan 7 IPv4 10.1.0.2:53 > 10.2.0.9:53 udp")
    lldp = bytes(Ether(src="02:00:00:00:00:01", dst="01:80:c2:00:00:0e", type=0x88CC) / b"x")
    assert decode(lldp, 60).text == "02:00:00:00:00:01 > 01:80:c2:00:00:0e ethertype 0x88cc " \
        "len 60"


def test_truncated_never_raises() -> None:
    full = bytes(ETH / IPv6(src="fd00:1::2", dst="fd00:2::2") / TCP())
    for n in range(len(full)):
        assert decode(full[:n], len(full)).text  # a line, whatever is left
    assert decode(b"", 0).text == "(truncated frame) len 0"


def test_record_from_ring_line_and_json() -> None:
    frame = bytes(ETH / IP(src="10.1.0.2", dst="10.2.0.9", ttl=1) / UDP(sport=40000, dport=443))
    e = Event(ts_ns=5_000_000_000, ifindex=3, len=len(frame), code=abi.code("ttl"),
              snap=len(frame))
    # the rest of frame[] stays zero: only snap bytes count
    e.frame[:len(frame)] = list(frame)
    wall = int(datetime.datetime(2026, 12, 7, 12, 0, 1, 234000).timestamp() * 1e9)
    rec = parse_event(bytes(e), wall - 5_000_000_000, lambda i: {3: "r1"}[i])
    assert rec.frame == frame and rec.kind == "punt" and rec.reason == "ttl"
    assert rec.line() == ("12:00:01.234 r1       punt ttl           IPv4 10.1.0.2:40000 > "
                          f"10.2.0.9:443 udp len {len(frame)} ttl 1")
    doc = json.loads(json.dumps(rec.to_dict()))
    assert doc["interface"] == "r1" and doc["reason"] == "ttl" and doc["header"]["dport"] == 443
    assert bytes.fromhex(doc["frame"]) == frame
    drop = Record(wall, 3, "r1", abi.code("fw_dropped"), 60, frame)
    assert drop.kind == "drop" and " drop fw_dropped " in drop.line()
