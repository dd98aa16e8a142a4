"""The firewall compiler against a reference evaluator (no root).

The reference walks the model's chains the way netfilter does (a call stack for jump/goto/
return, base chains in priority order, policies).  The compiled tables are evaluated the way
the data path does: AND the class vectors of the packet's field values, take the first set bit
at or after the position, follow SKIPs, punt after MAX_STEPS.  Both must agree on every packet,
for randomized rulesets and packets; the reference answers PUNT at the first unsupported rule
whose supported matches hold.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tna.firewall import compile as fc
from tna.firewall import ruleset as rs
from tna.firewall.compile import FirewallError, compile_family, conntrack_users
from tna.firewall.tables import (
    MAX_STEPS,
    VERDICT_ACCEPT,
    VERDICT_DROP,
    VERDICT_PUNT,
    VERDICT_SKIP,
    FwTables,
    rule0_decides,
)
from tna.model import AF_INET, AF_INET6
from tna.netfilter import parse_iptables_save, parse_nft_json, parse_nft_sets

DATA = Path(__file__).parent / "data"
IFINDEXES = {"lo": 1, "eth0": 2, "eth1": 3, "veth0": 4, "veth1": 5}
PORT_PROTOCOLS = {6, 17, 33, 132, 136}
ESTABLISHED = rs.CT_STATES["established"]


@dataclass(frozen=True)
class Packet:
    iif: int
    oif: int
    saddr: int
    daddr: int
    l4proto: int
    sport: int
    dport: int
    tcpflags: int
    icmptype: int

    def datapath_view(self, af: int) -> dict[str, int]:
        """The values the data path classifies on (0 where the header has no such field)."""
        ports = self.l4proto in PORT_PROTOCOLS
        return {"iif": self.iif, "oif": self.oif, "saddr": self.saddr, "daddr": self.daddr,
                "l4proto": self.l4proto, "sport": self.sport if ports else 0,
                "dport": self.dport if ports else 0,
                "tcpflags": self.tcpflags if self.l4proto == 6 else 0,
                "icmptype": self.icmptype if self.l4proto == fc.ICMP_PROTOCOL[af] else 0}


# --- the reference: netfilter's walk over the model -------------------------------------------


def matches(rule: rs.Rule, pkt: Packet, af: int) -> bool:
    if af not in rule.families:
        return False
    values = {**pkt.__dict__, "ctstate": ESTABLISHED}
    return all(values[name] in allowed for name, allowed in rule.match)


def walk(model: rs.Ruleset, chain: rs.Chain, pkt: Packet, af: int) -> str | None:
    """accept/drop/punt, "return", or None when the chain ends."""
    for rule in chain.rules:
        if not matches(rule, pkt, af):
            continue
        if rule.unsupported:
            return "punt"
        if rule.verdict in ("accept", "drop", "return"):
            return rule.verdict
        if rule.verdict in ("jump", "goto"):
            target = model.chain(chain.source, chain.family, chain.table, rule.target or "")
            assert target is not None
            result = walk(model, target, pkt, af)
            if result in ("accept", "drop", "punt"):
                return result
            if rule.verdict == "goto":
                return "return"
    return None


def reference(model: rs.Ruleset, pkt: Packet, af: int) -> int:
    for base in fc.forward_chains(model, af):
        result = walk(model, base, pkt, af)
        if result in (None, "return"):
            result = base.policy or "accept"
        if result == "drop":
            return VERDICT_DROP
        if result == "punt":
            return VERDICT_PUNT
    return VERDICT_ACCEPT


# --- the data path's evaluation of the tables ---------------------------------------------------


def lpm(entries: tuple[tuple[int, int, int], ...], addr: int, bits: int) -> int:
    best = max((plen, cls) for net, plen, cls in entries
               if addr >> (bits - plen) == net >> (bits - plen))
    return best[1]


def class_of(t: FwTables, name: str, value: int, af: int) -> int:
    if name in ("iif", "oif"):
        return getattr(t, name).get(value, getattr(t, f"{name}_default"))
    if name in ("saddr", "daddr"):
        return lpm(getattr(t, name), value, 32 if af == AF_INET else 128)
    return int(getattr(t, name)[value])


def datapath(t: FwTables, pkt: Packet, af: int) -> int:
    if rule0_decides(t):  # the data path's shortcut (tna_fw_table.rule0_all): no lookups
        return t.rules[0].verdict
    view = pkt.datapath_view(af)
    matched = (1 << len(t.rules)) - 1
    for name in t.used:
        matched &= t.classes[class_of(t, name, view[name], af)]
    pos = 0
    for _ in range(MAX_STEPS):
        rest = matched >> pos
        assert rest, "no rule matched: the last rule must match everything"
        i = pos + (rest & -rest).bit_length() - 1
        rule = t.rules[i]
        if rule.verdict != VERDICT_SKIP:
            return rule.verdict
        assert rule.target > i
        pos = rule.target
    return VERDICT_PUNT


def check_tables(t: FwTables) -> None:
    assert len(t.classes) == len(set(t.classes))
    for name in ("l4proto", "tcpflags", "icmptype"):
        assert len(getattr(t, name)) == (256 if name in t.used else 0)
    for name in ("sport", "dport"):
        assert len(getattr(t, name)) == (65536 if name in t.used else 0)
    for name in ("saddr", "daddr"):
        assert (name in t.used) == any(plen == 0 for _, plen, _ in getattr(t, name))


# --- random rulesets ---------------------------------------------------------------------------

V4_ADDRS = ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3", "192.168.1.0/24", "172.16.0.0/12"]
V6_ADDRS = ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1::5", "fd00::/8"]
PORTS = [22, 53, 80, 443, {"range": [1000, 2000]}, {"range": [1500, 1600]}]


def payload(proto: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": fld}}


def match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def addr_value(rng: random.Random, pool: list[str]) -> Any:
    def one() -> Any:
        text = rng.choice(pool)
        if "/" in text:
            a, n = text.split("/")
            return {"prefix": {"addr": a, "len": int(n)}}
        return text
    kind = rng.random()
    if kind < 0.2:
        return {"set": [one(), one()]}
    if kind < 0.3 and pool is V4_ADDRS:
        return {"range": ["10.1.2.0", "10.1.9.255"]}
    if kind < 0.45:
        return "@v4" if pool is V4_ADDRS else "@v6"
    return one()


def random_match(rng: random.Random, family: str) -> list[dict[str, Any]]:
    op = "!=" if rng.random() < 0.25 else "=="
    kind = rng.randrange(11)
    if kind == 0 and family in ("ip", "inet"):
        return [match(payload("ip", rng.choice(["saddr", "daddr"])), addr_value(rng, V4_ADDRS),
                      op)]
    if kind == 1 and family in ("ip6", "inet"):
        return [match(payload("ip6", rng.choice(["saddr", "daddr"])),
                      addr_value(rng, V6_ADDRS), op)]
    if kind == 2:
        proto = rng.choice(["tcp", "udp", "sctp"])
        right = rng.choice([*PORTS, {"set": [22, {"range": [70, 90]}]}, "@ports"])
        return [match(payload(proto, rng.choice(["sport", "dport"])), right, op)]
    if kind == 3:
        return [match({"meta": {"key": "l4proto"}}, {"set": ["tcp", "udp"]}),
                match(payload("th", "dport"), rng.choice([53, 80, {"range": [50, 100]}]), op)]
    if kind == 4:
        return [match({"meta": {"key": "l4proto"}}, rng.choice(["tcp", "udp", "icmp", 58]), op)]
    if kind == 5:
        return [match({"meta": {"key": rng.choice(["iifname", "oifname"])}},
                      rng.choice(["eth*", "veth0", {"set": ["lo", "veth*"]}, "@ifs"]), op)]
    if kind == 6:
        return [match({"meta": {"key": rng.choice(["iif", "oif"])}}, rng.choice(["eth0", 5]),
                      op)]
    if kind == 7:
        return rng.choice([
            [match({"&": [payload("tcp", "flags"), ["syn", "ack"]]}, "syn", op)],
            [match(payload("tcp", "flags"), "syn", "in")],
            [match(payload("tcp", "flags"), ["syn", "ack"], op)]])
    if kind == 8 and family == "ip":
        return [match(payload("icmp", "type"), rng.choice(["echo-request", {"set": [0, 3]}]),
                      op)]
    if kind == 8 and family == "ip6":
        return [match(payload("icmpv6", "type"), rng.choice(["echo-request", 1]), op)]
    if kind == 9:
        return [match({"ct": {"key": "state"}},
                      rng.choice(["established", ["established", "related"], "new",
                                  {"set": ["new", "established"]}]),
                      "in" if op == "==" else "!=")]
    if kind == 10 and rng.random() < 0.3:
        return [match({"meta": {"key": "mark"}}, 1)]  # unsupported
    return []


def random_rule(rng: random.Random, family: str, table: str, chain: str, targets: list[str],
                handle: int) -> dict[str, Any]:
    exprs = [m for _ in range(rng.randrange(4)) for m in random_match(rng, family)]
    if rng.random() < 0.3:
        exprs.append({"counter": None})
    roll = rng.random()
    if roll < 0.05:
        exprs.append({"log": {"prefix": "x"}})  # unsupported statement
    if targets and roll < 0.35:
        exprs.append({rng.choice(["jump", "goto"]): {"target": rng.choice(targets)}})
    elif roll < 0.6:
        exprs.append({"accept": None})
    elif roll < 0.75:
        exprs.append({"drop": None})
    elif roll < 0.85:
        exprs.append({"return": None})
    elif roll < 0.9:
        exprs.append({"continue": None})
    return {"rule": {"family": family, "table": table, "chain": chain, "handle": handle,
                     "expr": exprs}}


def random_ruleset(seed: int) -> str:
    rng = random.Random(seed)
    objects: list[dict[str, Any]] = []
    handle = 100
    priorities = rng.sample(range(-20, 20), 6)
    for family, table in [("inet", "f"), ("ip", "g"), ("ip6", "h")]:
        objects += [
            {"set": {"family": family, "table": table, "name": "v4", "type": "ipv4_addr",
                     "flags": ["interval"], "elem": [{"prefix": {"addr": "10.1.0.0", "len": 16}},
                                                     "192.168.1.7"]}},
            {"set": {"family": family, "table": table, "name": "v6", "type": "ipv6_addr",
                     "flags": ["interval"],
                     "elem": [{"prefix": {"addr": "2001:db8:1::", "len": 48}}]}},
            {"set": {"family": family, "table": table, "name": "ports",
                     "type": "inet_service", "elem": [22, 443]}},
            {"set": {"family": family, "table": table, "name": "ifs", "type": "ifname",
                     "elem": ["eth1", "veth*"]}}]
        regular = [f"r{i}" for i in range(4)]
        bases = [f"b{i}" for i in range(rng.randrange(1, 3))]
        for name in bases:
            objects.append({"chain": {"family": family, "table": table, "name": name,
                                      "type": "filter", "hook": "forward",
                                      "prio": priorities.pop(),
                                      "policy": rng.choice(["accept", "drop"])}})
        for name in regular:
            objects.append({"chain": {"family": family, "table": table, "name": name}})
        for i, name in enumerate(bases + regular):
            targets = regular[i - len(bases) + 1:] if name in regular else regular
            for _ in range(rng.randrange(1, 7)):
                handle += 1
                objects.append(random_rule(rng, family, table, name, targets, handle))
    return json.dumps({"nftables": objects})


def interesting_values(model: rs.Ruleset, name: str) -> list[int]:
    found = {0}
    for chain in model.chains:
        for rule in chain.rules:
            for fld, values in rule.match:
                if fld == name:
                    for lo, hi in values.spans:
                        found.update({lo, hi, max(lo - 1, 0), hi + 1})
    return sorted(found)


def random_packets(model: rs.Ruleset, af: int, rng: random.Random, n: int) -> list[Packet]:
    pools = {name: interesting_values(model, name) for name in
             ("saddr", "daddr", "sport", "dport", "tcpflags", "icmptype")}
    top = 2**32 - 1 if af == AF_INET else 2**128 - 1
    out = []
    for _ in range(n):
        def pick(name: str, limit: int) -> int:
            pool = [v for v in pools[name] if v <= limit]
            return rng.choice(pool) if pool and rng.random() < 0.8 else rng.randint(0, limit)
        out.append(Packet(
            iif=rng.choice([1, 2, 3, 4, 5, 9]), oif=rng.choice([1, 2, 3, 4, 5, 9]),
            saddr=pick("saddr", top), daddr=pick("daddr", top),
            l4proto=rng.choice([1, 6, 17, 58, 132, 47]), sport=pick("sport", 65535),
            dport=pick("dport", 65535), tcpflags=pick("tcpflags", 255),
            icmptype=pick("icmptype", 255)))
    return out


def compiled(text: str, af: int) -> tuple[rs.Ruleset, FwTables]:
    chains, sets = parse_nft_json(text), parse_nft_sets(text)
    return rs.build(chains, sets, IFINDEXES), compile_family(chains, sets, af, IFINDEXES)


def assert_equivalent(model: rs.Ruleset, tables: FwTables, af: int, packets: list[Packet]
                      ) -> None:
    check_tables(tables)
    for pkt in packets:
        want, got = reference(model, pkt, af), datapath(tables, pkt, af)
        assert got == want or (got == VERDICT_PUNT and steps_exceeded(tables, pkt, af)), pkt


def steps_exceeded(t: FwTables, pkt: Packet, af: int) -> bool:
    """The data path ran out of steps (a punt: Linux decides)."""
    view = pkt.datapath_view(af)
    matched = (1 << len(t.rules)) - 1
    for name in t.used:
        matched &= t.classes[class_of(t, name, view[name], af)]
    pos, steps = 0, 0
    while True:
        rest = matched >> pos
        i = pos + (rest & -rest).bit_length() - 1
        steps += 1
        if t.rules[i].verdict != VERDICT_SKIP:
            return steps > MAX_STEPS
        pos = t.rules[i].target


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("af", [AF_INET, AF_INET6])
def test_random_rulesets_match_the_reference(seed: int, af: int) -> None:
    model, tables = compiled(random_ruleset(seed), af)
    assert_equivalent(model, tables, af, random_packets(model, af, random.Random(seed), 300))


@pytest.mark.parametrize("af", [AF_INET, AF_INET6])
def test_recorded_ruleset_matches_the_reference(af: int) -> None:
    model, tables = compiled((DATA / "fw_nft_features.json").read_text(), af)
    assert tables.stateful
    assert_equivalent(model, tables, af, random_packets(model, af, random.Random(af), 3000))


def test_recorded_iptables_legacy_matches_the_reference() -> None:
    chains = parse_iptables_save((DATA / "fw_iptables_legacy_save.txt").read_text(), "ip")
    model = rs.build(chains, (), IFINDEXES)
    tables = compile_family(chains, (), AF_INET, IFINDEXES)
    assert tables.stateful
    assert {u.why for u in tables.unsupported} == {"-m limit; -j LOG", "-j REJECT"}
    assert_equivalent(model, tables, AF_INET, random_packets(model, AF_INET,
                                                             random.Random(7), 3000))
    assert compile_family(chains, (), AF_INET6, IFINDEXES).rules[-1].verdict == VERDICT_ACCEPT


# --- semantics in detail -----------------------------------------------------------------------


def nft(*chains: tuple[str, dict[str, Any], list[list[dict[str, Any]]]],
        family: str = "inet", table: str = "t") -> str:
    """A ruleset: (name, base-chain attributes, rules as expression lists) per chain."""
    objects: list[dict[str, Any]] = []
    handle = 0
    for name, attrs, rules in chains:
        objects.append({"chain": {"family": family, "table": table, "name": name, **attrs}})
        for exprs in rules:
            handle += 1
            objects.append({"rule": {"family": family, "table": table, "chain": name,
                                     "handle": handle, "expr": exprs}})
    return json.dumps({"nftables": objects})


BASE = {"type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}
TCP22 = match(payload("tcp", "dport"), 22)
FROM10 = match(payload("ip", "saddr"), {"prefix": {"addr": "10.0.0.0", "len": 8}})


def tcp(dport: int, saddr: str = "10.1.1.1", flags: int = 0x10) -> Packet:
    return Packet(2, 3, int(ipaddress.ip_address(saddr)), 0x0A000001, 6, 40000, dport, flags, 0)


def verdict(text: str, pkt: Packet, af: int = AF_INET) -> int:
    model, tables = compiled(text, af)
    want = reference(model, pkt, af)
    assert datapath(tables, pkt, af) == want
    return want


def test_goto_falls_back_to_the_callers_return() -> None:
    text = nft(("fwd", {**BASE, "policy": "drop"},
                [[{"jump": {"target": "a"}}], [{"accept": None}]]),
               ("a", {}, [[FROM10, {"goto": {"target": "b"}}], [{"drop": None}]]),
               ("b", {}, [[TCP22, {"accept": None}]]))
    assert verdict(text, tcp(22)) == VERDICT_ACCEPT
    assert verdict(text, tcp(80)) == VERDICT_ACCEPT  # b ends → returns from a → accept
    assert verdict(text, tcp(80, "11.0.0.1")) == VERDICT_DROP  # a's drop


def test_accept_ends_only_its_base_chain() -> None:
    text = nft(("one", BASE, [[{"accept": None}]]),
               ("two", {**BASE, "prio": 10}, [[TCP22, {"drop": None}]]))
    assert verdict(text, tcp(22)) == VERDICT_DROP
    assert verdict(text, tcp(80)) == VERDICT_ACCEPT
    _, tables = compiled(text, AF_INET)
    assert tables.rules[0].verdict == VERDICT_SKIP


def test_same_priority_base_chains_are_an_error() -> None:
    text = json.dumps({"nftables": [
        *json.loads(nft(("one", BASE, [])))["nftables"],
        *json.loads(nft(("two", BASE, []), table="u"))["nftables"]]})
    with pytest.raises(FirewallError, match="share priority 0"):
        compiled(text, AF_INET)


def test_jump_loops_and_depth_are_errors() -> None:
    loop = nft(("fwd", BASE, [[{"jump": {"target": "a"}}]]),
               ("a", {}, [[{"jump": {"target": "b"}}]]), ("b", {}, [[{"goto": {"target": "a"}}]]))
    with pytest.raises(FirewallError, match="loop"):
        compiled(loop, AF_INET)
    deep = nft(("fwd", BASE, [[{"jump": {"target": "c0"}}]]),
               *[(f"c{i}", {}, [[{"jump": {"target": f"c{i + 1}"}}]]) for i in range(20)],
               ("c20", {}, []))
    with pytest.raises(FirewallError, match="deeper than 16"):
        compiled(deep, AF_INET)
    missing = nft(("fwd", BASE, [[{"jump": {"target": "nowhere"}}]]))
    with pytest.raises(FirewallError, match="no regular chain nowhere"):
        compiled(missing, AF_INET)


def test_too_many_rules_is_an_error() -> None:
    # each level jumps twice to the next: 2**12 copies of the last chain's rule
    chains: list[tuple[str, dict[str, Any], list[list[dict[str, Any]]]]] = [
        (f"c{i}", {}, [[{"jump": {"target": f"c{i + 1}"}}]] * 2) for i in range(12)]
    text = nft(("fwd", BASE, [[{"jump": {"target": "c0"}}]]), *chains,
               ("c12", {}, [[TCP22, {"counter": None}, {"drop": None}]]))
    with pytest.raises(FirewallError, match="more than 2048 rules"):
        compiled(text, AF_INET)


def test_too_many_classes_is_an_error() -> None:
    rules = [[match({"meta": {"key": "l4proto"}}, "tcp"),
              match(payload("th", "sport"), {"range": [i * 13, i * 13 + 5000]}),
              match(payload("th", "dport"), {"range": [i * 7, i * 7 + 9000]}),
              {"accept": None}] for i in range(2000)]
    with pytest.raises(FirewallError, match="classes"):
        compiled(nft(("fwd", BASE, rules)), AF_INET)


def test_steps_run_out_into_a_punt() -> None:
    text = nft(("fwd", BASE, [*[[{"counter": None}]] * 40, [{"drop": None}]]))
    model, tables = compiled(text, AF_INET)
    assert reference(model, tcp(22), AF_INET) == VERDICT_DROP
    assert datapath(tables, tcp(22), AF_INET) == VERDICT_PUNT  # documented: Linux decides
    assert len(tables.counters) == 41


def test_unsupported_rules_are_named_with_their_traffic() -> None:
    text = nft(("fwd", BASE, [
        [TCP22, {"log": {"prefix": "ssh"}}, {"accept": None}],
        [match({"meta": {"key": "mark"}}, 1), FROM10, {"drop": None}],
        [{"drop": None}]]))
    _, tables = compiled(text, AF_INET)
    found = {(u.rule.handle, u.why, u.traffic) for u in tables.unsupported}
    assert found == {(1, "log statement", "ipv4 tcp dport 22"),
                     (2, "meta mark", "ipv4 ip saddr 10.0.0.0/8")}
    assert verdict(text, tcp(22)) == VERDICT_PUNT
    assert verdict(text, tcp(80, "10.9.9.9")) == VERDICT_PUNT
    assert verdict(text, tcp(80, "11.9.9.9")) == VERDICT_DROP  # rules after them still apply
    assert [str(c) for c in tables.counters] == ["inet t fwd handle 3: drop"]


def test_icmp_of_the_other_family_punts() -> None:
    text = nft(("fwd", BASE, [[match(payload("icmp", "type"), "echo-request"),
                               {"drop": None}]]))
    _, v6 = compiled(text, AF_INET6)
    assert v6.unsupported[0].why == "icmp type of another family in ipv6"
    pkt = Packet(2, 3, 1, 2, 1, 0, 0, 0, 8)
    assert datapath(v6, pkt, AF_INET6) == VERDICT_PUNT
    _, v4 = compiled(text, AF_INET)
    assert datapath(v4, pkt, AF_INET) == VERDICT_DROP and not v4.unsupported


def test_ct_state_only_established_can_match() -> None:
    ct = {"ct": {"key": "state"}}
    text = nft(("fwd", {**BASE, "policy": "drop"}, [
        [match(ct, "new", "in"), {"accept": None}],
        [match(ct, ["established", "related"], "in"), TCP22, {"accept": None}]]))
    _, tables = compiled(text, AF_INET)
    assert tables.stateful and len(tables.rules) == 2
    assert verdict(text, tcp(22)) == VERDICT_ACCEPT
    assert verdict(text, tcp(23)) == VERDICT_DROP


def test_rule0_decides_only_when_it_matches_every_packet() -> None:
    """The shortcut (tna_fw_table.rule0_all) holds for a stateful ruleset's usual first rule
    and for a lone policy; not for a constrained rule 0, an accept that ends only one of two
    base chains (a SKIP), or a punted (unsupported) rule."""
    ct = {"ct": {"key": "state"}}
    established = [match(ct, ["established", "related"], "in"), {"accept": None}]
    fillers = [[TCP22, {"drop": None}], [FROM10, {"drop": None}]]
    decides = [nft(("fwd", {**BASE, "policy": "drop"}, [established, *fillers])),
               nft(("fwd", BASE, [])), nft(("fwd", BASE, [[{"drop": None}], *fillers]))]
    does_not = [nft(("fwd", BASE, [*fillers, established])),
                nft(("one", BASE, [[{"accept": None}]]),
                    ("two", {**BASE, "prio": 10}, [[TCP22, {"drop": None}]])),
                nft(("fwd", BASE, [[{"log": {"prefix": "x"}}, {"accept": None}], *fillers]))]
    for text in decides + does_not:
        _, tables = compiled(text, AF_INET)
        assert rule0_decides(tables) == (text in decides), text
        for pkt in (tcp(22), tcp(80), tcp(80, "11.0.0.1")):
            verdict(text, pkt)  # the shortcut agrees with the reference


def test_no_forward_chain_accepts_everything() -> None:
    tables = compile_family((), (), AF_INET, IFINDEXES)
    assert [r.verdict for r in tables.rules] == [VERDICT_ACCEPT] and not tables.used
    assert not tables.stateful and tables.classes == ()


def test_conntrack_users() -> None:
    features = (DATA / "fw_nft_features.json").read_text()
    users = conntrack_users(parse_nft_json(features), AF_INET)
    assert "nftables ip nat post: nat chain" in users
    assert "nftables ip nat post handle 2: masquerade" in users
    assert any(u.startswith("nftables inet filter fw handle 7: ct") for u in users)
    assert not any("nat" in u for u in conntrack_users(parse_nft_json(features), AF_INET6))
    legacy = parse_iptables_save((DATA / "iptables_legacy_save.txt").read_text(), "ip")
    users = conntrack_users(legacy, AF_INET)
    assert "iptables-legacy ip nat POSTROUTING: nat chain" in users
    assert any("-j NOTRACK" in u for u in users) and any("--ctstate" in u for u in users)
    assert conntrack_users(legacy, AF_INET6) == []
    plain = nft(("fwd", BASE, [[TCP22, {"drop": None}]]))
    assert conntrack_users(parse_nft_json(plain), AF_INET) == []
    assert not compiled(plain, AF_INET)[1].stateful


def test_thousand_rule_acl_compiles_fast() -> None:
    acl: list[list[dict[str, Any]]] = []
    for i in range(1000):
        addr = str(ipaddress.IPv4Address(0x0A000000 + i * 256))
        acl.append([match(payload("ip", "saddr"), {"prefix": {"addr": addr, "len": 24}}),
                          match(payload("tcp", "dport"), 1000 + i), {"accept": None}])
    text = nft(("fwd", {**BASE, "policy": "drop"}, acl))
    started = time.perf_counter()
    _, tables = compiled(text, AF_INET)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed
    assert len(tables.rules) == 1001 and len(tables.counters) == 1000
    assert datapath(tables, tcp(1005, "10.0.5.7"), AF_INET) == VERDICT_ACCEPT
    assert datapath(tables, tcp(1006, "10.0.5.7"), AF_INET) == VERDICT_DROP
