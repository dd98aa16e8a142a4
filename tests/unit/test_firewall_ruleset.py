"""The firewall ruleset model, from recorded nft JSON and iptables-legacy listings (no root).

Recordings (nft 1.0.6 / iptables v1.8.9 legacy, in a scratch namespace):
``fw_nft_features.json`` (``nft -j -s list ruleset`` of an inet filter table covering the
supported matches, unsupported statements, jumps/gotos, named sets and an ip nat chain),
``fw_nft_sets.json`` (interval/timeout/concatenated sets, verdict maps, ct keys) and
``fw_iptables_legacy_save.txt``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tna.firewall import ruleset as rs
from tna.firewall.values import Values, span_prefixes
from tna.model import AF_INET, AF_INET6
from tna.netfilter import parse_nft_sets

DATA = Path(__file__).parent / "data"
IFINDEXES = {"lo": 1, "eth0": 2, "eth1": 3, "veth0": 4}


def rules_by_handle(model: rs.Ruleset, chain: str) -> dict[int | None, rs.Rule]:
    found = next(c for c in model.chains if c.name == chain)
    return {r.ref.handle: r for r in found.rules}


@pytest.fixture(scope="module")
def features() -> dict[int | None, rs.Rule]:
    model = rs.from_nft_json((DATA / "fw_nft_features.json").read_text(), IFINDEXES)
    return rules_by_handle(model, "fw")


def c(rule: rs.Rule) -> dict[str, Values]:
    return rule.constraints()


def test_values_arithmetic() -> None:
    a = Values.of([(5, 9), (1, 3), (4, 4), (20, 30)])
    assert a.spans == ((1, 9), (20, 30))
    assert (a & Values.span(8, 25)).spans == ((8, 9), (20, 25))
    assert a.complement(40).spans == ((0, 0), (10, 19), (31, 40))
    assert (a - Values.points([2])).spans == ((1, 1), (3, 9), (20, 30))
    assert list(span_prefixes(1, 6, 3)) == [(1, 3), (2, 2), (4, 2), (6, 3)]
    assert list(span_prefixes(0, 255, 8)) == [(0, 0)]


def test_nft_addresses_interfaces_ports(features: dict[int | None, rs.Rule]) -> None:
    r = features[9]  # iifname "eth*" oifname != "veth0" ip saddr @allowed tcp dport @ports
    assert r.families == {AF_INET} and r.verdict == "accept" and not r.unsupported
    assert c(r)["iif"] == Values.points([2, 3])
    assert c(r)["oif"] == Values.points([4]).complement(rs.IFINDEX_TOP)
    assert c(r)["saddr"] == Values.of([(0x0A000000, 0x0AFFFFFF), (0xC0A80101, 0xC0A80114)])
    assert c(r)["dport"] == Values.points([80, 443]) and c(r)["l4proto"] == Values.points([6])
    r = features[10]  # ip saddr != 10.1.0.0/16 ... udp sport 1000-2000 counter jump sub
    assert c(r)["saddr"] == Values.span(0x0A010000, 0x0A01FFFF).complement(2**32 - 1)
    assert c(r)["sport"] == Values.span(1000, 2000) and c(r)["l4proto"] == Values.points([17])
    assert (r.verdict, r.target, r.counter) == ("jump", "sub", True)
    assert features[27].verdict == "goto" and features[27].target == "sub"


def test_nft_protocols_icmp_flags_ct(features: dict[int | None, rs.Rule]) -> None:
    assert c(features[11])["icmptype"] == Values.points([128])
    assert features[11].families == {AF_INET6}
    assert c(features[13])["icmptype"] == Values.points([0, 8])
    assert c(features[28]) == {"l4proto": Values.points([6])}
    syn_only = c(features[14])["tcpflags"]  # tcp flags & (syn|ack) == syn
    assert 0x02 in syn_only and 0x12 not in syn_only and 0x03 in syn_only
    any_syn = c(features[15])["tcpflags"]  # tcp flags syn
    assert 0x12 in any_syn and 0x10 not in any_syn
    assert c(features[7])["ctstate"] == Values.points([2, 4])
    assert c(features[8])["ctstate"] == Values.points([1])
    assert c(features[19])["l4proto"] == Values.points([6, 17])  # meta l4proto {tcp, udp} th
    assert c(features[19])["dport"] == Values.points([53]) and not features[19].unsupported
    assert c(features[20]) == {"iif": Values.points([1])}  # iif "lo"
    assert c(features[21]) == {"iif": Values.points([2, 3])}  # iifname @ifs


@pytest.mark.parametrize("handle,why", [
    (17, "ports without a restriction to port protocols"),  # th dport 53
    (22, "log statement"), (23, "meta mark"), (24, "limit statement"),
    (30, "reject statement"), (37, "set statement"),
])
def test_nft_unsupported_rules(features: dict[int | None, rs.Rule], handle: int,
                               why: str) -> None:
    assert features[handle].unsupported == why


def test_nft_no_verdict_and_texts(features: dict[int | None, rs.Rule]) -> None:
    assert features[35].counter and features[35].verdict is None
    assert features[36].verdict is None and not features[36].counter  # continue
    assert features[9].ref.text == ('iifname eth* oifname != veth0 ip saddr @allowed '
                                    'tcp dport @ports accept')
    assert features[10].traffic.startswith("ip saddr != 10.1.0.0/16 ip daddr 10.2.0.1-10.2.0.9")


def test_nft_sets_and_other_keys() -> None:
    text = (DATA / "fw_nft_sets.json").read_text()
    sets = {s.name: s for s in parse_nft_sets(text)}
    assert sets["e"].flags == ("timeout",) and sets["c"].type == "ipv4_addr . inet_service"
    rules = [r for ch in rs.from_nft_json(text, IFINDEXES).chains for r in ch.rules]
    by_text = {r.ref.text.rsplit(" ", 1)[0]: r for r in rules}
    assert c(by_text["tcp dport < 1024"])["dport"] == Values.span(0, 1023)
    assert by_text["meta nfproto ipv6"].families == {AF_INET6}
    assert by_text["meta protocol ip"].families == {AF_INET}
    assert c(by_text["ip6 daddr @s6"])["daddr"].spans[0] == (0x20010DB8 << 96,
                                                             (0x20010DB8 << 96) + 2**64 - 1)
    assert by_text["ip saddr . tcp dport @c"].unsupported == "concatenation"
    assert by_text["ip saddr @e"].unsupported == "dynamic set @e"
    assert c(by_text["udp dport 22"])["dport"] == Values.points([22])
    assert c(by_text['iifname { eth*, lo }'])["iif"] == Values.points([1, 2, 3])
    assert c(by_text["ip6 nexthdr ipv6-icmp"])["l4proto"] == Values.points([58])
    assert by_text["ct mark 1"].unsupported == "ct mark"
    assert by_text["ct direction original"].unsupported == "ct direction"
    assert c(by_text["sctp dport 5"])["l4proto"] == Values.points([132])
    vmap = next(r for r in rules if "vmap" in r.ref.text)
    assert vmap.unsupported == "vmap statement"


def test_iptables_legacy() -> None:
    text = (DATA / "fw_iptables_legacy_save.txt").read_text()
    model = rs.from_iptables_save(text, "ip", IFINDEXES)
    fwd, lab = rules_by_handle(model, "FORWARD"), rules_by_handle(model, "LAB")
    assert c(fwd[1])["ctstate"] == Values.points([2, 4]) and fwd[1].verdict == "accept"
    assert c(fwd[2]) == {"saddr": Values.span(0x0A000000, 0x0AFFFFFF),
                         "iif": Values.points([2, 3]),
                         "oif": Values.points([4]).complement(rs.IFINDEX_TOP),
                         "l4proto": Values.points([6]), "dport": Values.points([22])}
    assert c(fwd[3])["dport"] == Values.of([(80, 80), (443, 443), (8000, 8080)])
    assert (fwd[3].verdict, fwd[3].target) == ("jump", "LAB")
    assert c(fwd[4])["sport"] == Values.points([53]).complement(65535)
    assert (fwd[4].verdict, fwd[4].target) == ("goto", "SUB")
    assert c(fwd[5])["tcpflags"] == Values.points(x for x in range(256) if x & 0x17 == 0x02)
    assert c(fwd[7])["icmptype"] == Values.points([0])
    assert fwd[8].unsupported == "-m limit; -j LOG"
    assert fwd[9].unsupported == "-j REJECT" and c(fwd[9])["dport"] == Values.points([22 + 3])
    assert c(fwd[10]) == {"daddr": Values.span(0xC0A80000, 0xC0A8FFFF)}
    assert c(fwd[11])["ctstate"] == Values.points([8])
    assert fwd[12].verdict is None and fwd[12].counter  # a counting rule
    assert lab[1].verdict == "return" and lab[2].verdict == "accept"


def test_iptables_legacy_details() -> None:
    text = ("*filter\n:FORWARD ACCEPT [0:0]\n"
            "-A FORWARD -s 2001:db8::/32 -p ipv6-icmp -m icmp6 --icmpv6-type echo-request "
            "-j ACCEPT\n"
            "-A FORWARD -p tcp -m tcp --syn -j DROP\n"
            "-A FORWARD ! -p tcp -m state ! --state ESTABLISHED -j DROP\n"
            "-A FORWARD -p icmp -m icmp --icmp-type 3/4 -j ACCEPT\n"
            "-A FORWARD -p tcp -m multiport --ports 1,2 -j ACCEPT\n"
            "-A FORWARD -j MARK --set-mark 1\nCOMMIT\n")
    fwd = rules_by_handle(rs.from_iptables_save(text, "ip6", IFINDEXES), "FORWARD")
    assert fwd[1].families == {AF_INET6} and c(fwd[1])["icmptype"] == Values.points([128])
    assert c(fwd[1])["saddr"].spans == ((0x20010DB8 << 96, (0x20010DB8 << 96) + 2**96 - 1),)
    assert c(fwd[2])["tcpflags"] == Values.points(x for x in range(256) if x & 0x17 == 2)
    assert c(fwd[3])["l4proto"] == Values.points([6]).complement(255)
    assert c(fwd[3])["ctstate"] == Values.points([1, 4, 8, 64])
    assert fwd[4].unsupported == "icmp code 3/4"
    assert fwd[5].unsupported == "--ports"
    assert fwd[6].unsupported == "-j MARK"


def test_malformed_expressions_are_unsupported_not_errors() -> None:
    text = ('{"nftables": [{"chain": {"family": "ip", "table": "t", "name": "c"}},'
            '{"rule": {"family": "ip", "table": "t", "chain": "c", "handle": 1, "expr": ['
            '{"match": {"op": "==", "left": {"meta": {}}, "right": 1}}, {"accept": null}]}}]}')
    rule = rules_by_handle(rs.from_nft_json(text, IFINDEXES), "c")[1]
    assert rule.unsupported == "unexpected match expression" and rule.verdict == "accept"
    legacy = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 1:x -j DROP\nCOMMIT\n"
    rule = rules_by_handle(rs.from_iptables_save(legacy, "ip", IFINDEXES), "FORWARD")[1]
    assert rule.unsupported == "value 'x' of dport" and rule.verdict == "drop"
