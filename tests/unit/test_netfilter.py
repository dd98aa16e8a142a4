"""Parsing recorded netfilter listings (no root needed).

The nft recordings come from nft 1.0.6 on Linux 6.18, run inside a scratch namespace:
``nft -j -s list ruleset`` and ``nft list ruleset`` after loading an inet filter table
(forward base chain with a drop rule and a jump, a regular chain, an empty input base
chain), a netdev ingress chain on eth0, a dormant table, and ``iptables -A FORWARD -j DROP``
plus ``iptables -t nat -A POSTROUTING -o eth1 -j MASQUERADE`` (iptables-nft).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from tna import netfilter
from tna.model import NetfilterChain, NetfilterSet
from tna.netfilter import (
    NetfilterError,
    parse_iptables_save,
    parse_nft_json,
    parse_nft_text,
)

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


RULE_TEXT = re.compile(r"^handle (\d+): (\[.*\])(?: comment .*)?$")


def nft(family: str, table: str, name: str, hook: str | None = None,
        priority: int | None = None, policy: str | None = None,
        devices: tuple[str, ...] = (), rules: tuple[str, ...] = (),
        type: str = "filter") -> NetfilterChain:
    parsed = [RULE_TEXT.match(r) for r in rules]
    return NetfilterChain("nftables", family, table, name, hook, priority, policy, devices,
                          rules, type if hook else None,
                          exprs=tuple(m.group(2) for m in parsed if m),
                          handles=tuple(int(m.group(1)) for m in parsed if m))


FORWARD_DROP = ('handle 4: [{"match":{"op":"==","left":{"payload":{"protocol":"ip",'
                '"field":"saddr"}},"right":{"prefix":{"addr":"10.0.0.0","len":8}}}},'
                '{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},'
                '"right":22}},{"counter":null},{"drop":null}]')

EXPECTED_JSON = (
    nft("inet", "filter", "forward", "forward", 0, "accept",
        rules=(FORWARD_DROP, 'handle 5: [{"jump":{"target":"helper"}}]')),
    nft("inet", "filter", "helper",
        rules=('handle 6: [{"match":{"op":"==","left":{"meta":{"key":"iifname"}},'
               '"right":"eth0"}},{"accept":null}] comment "from the lab"',)),
    nft("inet", "filter", "input", "input", 0, "accept"),
    # nft 1.0.6 leaves the device out of the JSON; chains() takes it from the text.
    nft("netdev", "edge", "ingress", "ingress", -500, "accept",
        rules=('handle 2: [{"match":{"op":"==","left":{"payload":{"protocol":"ether",'
               '"field":"type"}},"right":"arp"}},{"accept":null}]',)),
    # nft 1.0.6 prints the table name as its flags, so JSON alone cannot see "dormant".
    nft("ip", "parked", "forwarding", "forward", 0, "drop"),
    nft("ip", "filter", "FORWARD", "forward", 0, "accept",
        rules=('handle 2: [{"counter":null},{"drop":null}]',)),
    nft("ip", "nat", "POSTROUTING", "postrouting", 100, "accept", type="nat",
        rules=('handle 2: [{"match":{"op":"==","left":{"meta":{"key":"oifname"}},'
               '"right":"eth1"}},{"counter":null},{"xt":{"type":"target","name":"MASQUERADE"}}]',)),
)


def test_empty_ruleset() -> None:
    assert parse_nft_json(read("nft_empty.json")) == ()


def test_recorded_ruleset() -> None:
    assert parse_nft_json(read("nft_ruleset.json")) == EXPECTED_JSON


def test_chain_properties() -> None:
    chains = {c.name: c for c in parse_nft_json(read("nft_ruleset.json"))}
    assert chains["forward"].is_base and chains["forward"].has_effect
    assert not chains["helper"].is_base
    assert chains["input"].is_base and not chains["input"].has_effect  # empty, accept
    assert chains["forwarding"].has_effect  # policy drop, no rules


def test_text_listing_gives_devices_and_dormant_tables() -> None:
    devices, dormant = parse_nft_text(read("nft_ruleset.txt"))
    assert devices == {("netdev", "edge", "ingress"): ("eth0",)}
    assert dormant == frozenset({("ip", "parked")})


def test_text_listing_multiple_devices_and_flowtable() -> None:
    text = """table netdev multi {
	flowtable ft {
		hook ingress priority filter
		devices = { eth9 }
	}

	chain m {
		type filter hook ingress devices = { "vx", vy } priority filter; policy accept;
	}
}
table inet t {
	chain c {
		type filter hook forward priority filter; policy accept;
	}

	flags dormant
}
"""
    devices, dormant = parse_nft_text(text)
    assert devices == {("netdev", "multi", "m"): ("vx", "vy")}
    assert dormant == frozenset({("inet", "t")})


def test_json_dev_string_or_list_and_dormant_flag() -> None:
    text = """{"nftables": [
      {"table": {"family": "netdev", "name": "n", "handle": 1}},
      {"table": {"family": "ip", "name": "off", "handle": 2, "flags": ["dormant"]}},
      {"chain": {"family": "netdev", "name": "a", "table": "n", "handle": 1,
                 "type": "filter", "hook": "ingress", "prio": 0, "policy": "accept",
                 "dev": "eth0"}},
      {"chain": {"family": "netdev", "name": "b", "table": "n", "handle": 2,
                 "type": "filter", "hook": "egress", "prio": 5, "policy": "drop",
                 "dev": ["eth0", "eth1"]}},
      {"chain": {"family": "ip", "name": "c", "table": "off", "handle": 1,
                 "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}
    ]}"""
    assert parse_nft_json(text) == (
        nft("netdev", "n", "a", "ingress", 0, "accept", devices=("eth0",)),
        nft("netdev", "n", "b", "egress", 5, "drop", devices=("eth0", "eth1")),
    )


def test_bad_json_raises() -> None:
    with pytest.raises(NetfilterError):
        parse_nft_json("not json")


def test_chains_fills_devices_and_drops_dormant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_libnftables", lambda: None)  # the nft binary path
    outputs = {"-j": read("nft_ruleset.json"), "list": read("nft_ruleset.txt")}
    monkeypatch.setattr(netfilter, "_run", lambda argv: outputs[argv[1]])
    monkeypatch.setattr(netfilter, "legacy_chains", lambda: ())
    expected = tuple(
        dataclasses.replace(c, devices=("eth0",)) if c.table == "edge" else c
        for c in EXPECTED_JSON if c.table != "parked")
    assert netfilter.chains() == expected


def test_missing_nft_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_libnftables", lambda: None)  # the nft binary path
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: None)
    with pytest.raises(NetfilterError, match="nft not found"):
        netfilter.chains()


def test_failing_nft_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_libnftables", lambda: None)  # the nft binary path
    monkeypatch.setattr(netfilter.shutil, "which", lambda name: "/usr/sbin/nft")
    monkeypatch.setattr(netfilter.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a[0], 1, "", "netlink: Error: cache initialization failed: Operation not permitted"))
    with pytest.raises(NetfilterError, match="Operation not permitted"):
        netfilter.chains()


def legacy(table: str, name: str, hook: str | None, priority: int | None,
           policy: str | None, *rules: str, family: str = "ip") -> NetfilterChain:
    return NetfilterChain("iptables-legacy", family, table, name, hook, priority, policy, (),
                          rules, ("nat" if table == "nat" else "filter") if hook else None,
                          handles=tuple(range(1, len(rules) + 1)))


def test_iptables_legacy_save() -> None:
    assert parse_iptables_save(read("iptables_legacy_save.txt"), "ip") == (
        legacy("raw", "PREROUTING", "prerouting", -300, "accept",
               "-A PREROUTING -i eth0 -p udp -m udp --dport 4789 -j NOTRACK"),
        legacy("raw", "OUTPUT", "output", -300, "accept"),
        legacy("nat", "PREROUTING", "prerouting", -100, "accept"),
        legacy("nat", "INPUT", "input", 100, "accept"),
        legacy("nat", "OUTPUT", "output", -100, "accept"),
        legacy("nat", "POSTROUTING", "postrouting", 100, "accept",
               "-A POSTROUTING -s 10.1.0.0/24 -o eth1 -j MASQUERADE"),
        legacy("filter", "INPUT", "input", 0, "accept"),
        legacy("filter", "FORWARD", "forward", 0, "drop",
               "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
               "-A FORWARD -j LAB-FWD"),
        legacy("filter", "OUTPUT", "output", 0, "accept"),
        legacy("filter", "LAB-FWD", None, None, None,
               "-A LAB-FWD -s 10.1.0.0/24 -d 10.2.0.0/24 -j ACCEPT",
               "-A LAB-FWD -p tcp -m tcp --dport 22 -j REJECT --reject-with "
               "icmp-port-unreachable"),
    )


def test_ip6tables_legacy_save_family() -> None:
    text = "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -s fd00::/8 -j DROP\nCOMMIT\n"
    assert parse_iptables_save(text, "ip6") == (
        legacy("filter", "FORWARD", "forward", 0, "accept", "-A FORWARD -s fd00::/8 -j DROP",
               family="ip6"),
    )


def test_legacy_skipped_without_tables(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    (tmp_path / "ip_tables_names").write_text("")  # module loaded, no table
    monkeypatch.setattr(netfilter, "PROC_NET", str(tmp_path))  # no ip6_tables_names at all

    def no_run(argv: list[str]) -> str:
        raise AssertionError(f"ran {argv}")

    monkeypatch.setattr(netfilter, "_run", no_run)
    assert netfilter.legacy_chains() == ()


def test_legacy_read_when_tables_exist(monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    (tmp_path / "ip6_tables_names").write_text("filter\n")
    monkeypatch.setattr(netfilter, "PROC_NET", str(tmp_path))
    monkeypatch.setattr(netfilter, "_run", lambda argv: {
        "ip6tables-legacy-save": "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"}[argv[0]])
    assert netfilter.legacy_chains() == (legacy("filter", "FORWARD", "forward", 0, "drop",
                                                family="ip6"),)


def test_nft_sets() -> None:
    text = """{"nftables": [
      {"table": {"family": "inet", "name": "t", "handle": 1}},
      {"table": {"family": "ip", "name": "off", "handle": 2, "flags": ["dormant"]}},
      {"set": {"family": "inet", "name": "a", "table": "t", "type": "ipv4_addr",
               "handle": 3, "flags": ["interval"],
               "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "1.2.3.4"]}},
      {"set": {"family": "inet", "name": "d", "table": "t", "type": "ipv4_addr",
               "handle": 4, "flags": "timeout", "timeout": 60}},
      {"set": {"family": "inet", "name": "c", "table": "t",
               "type": ["ipv4_addr", "inet_service"], "handle": 5}},
      {"map": {"family": "inet", "name": "m", "table": "t", "type": "ipv4_addr",
               "map": "verdict", "handle": 6}},
      {"set": {"family": "ip", "name": "x", "table": "off", "type": "ipv4_addr", "handle": 1}}
    ]}"""
    assert netfilter.parse_nft_sets(text) == (
        NetfilterSet("inet", "t", "a", "ipv4_addr", ("interval",),
                     ('{"prefix":{"addr":"10.0.0.0","len":8}}', '"1.2.3.4"')),
        NetfilterSet("inet", "t", "d", "ipv4_addr", ("timeout",), (), timeout=True),
        NetfilterSet("inet", "t", "c", "ipv4_addr . inet_service"),
    )


def test_ruleset_reads_chains_and_sets_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netfilter, "_libnftables", lambda: None)  # the nft binary path
    monkeypatch.setattr(netfilter, "_run",
                        lambda argv: read("fw_nft_sets.json") if "-j" in argv else "")
    monkeypatch.setattr(netfilter, "legacy_chains", lambda: ())
    chains, sets = netfilter.ruleset()
    assert [s.name for s in sets] == ["s6", "e", "c"]
    assert [c.name for c in chains] == ["c"] and len(chains[0].exprs) == 13
    assert chains[0].type == "filter" and chains[0].handles[0] is not None
