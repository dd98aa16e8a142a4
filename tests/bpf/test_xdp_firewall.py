"""The forward-hook classifier of the production XDP object, through BPF_PROG_TEST_RUN.

The tables are built here by brute force from a small rule list (not by tna.firewall.compile,
which has its own tests), so a failure points at the data path: class lookups, the AND of the
bit vectors, the walk with SKIPs, verdicts, rule counters, generations and conntrack.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from scapy.layers.inet import ICMP, TCP, UDP
from scapy.layers.l2 import Ether

from testing.bpf_helpers import (
    XDP_PASS,
    XDP_REDIRECT,
    Router,
    forwarded_v4,
    forwarded_v6,
    program,
    run,
    v4,
    v6,
)
from testing.datapath_hooks import firewall_counters, sync_firewall_for_test
from tna import netns
from tna.firewall.tables import (
    MAX_STEPS,
    VERDICT_ACCEPT,
    VERDICT_DROP,
    VERDICT_PUNT,
    VERDICT_SKIP,
    FwRule,
    FwTables,
    RuleRef,
    rule0_decides,
)
from tna.introspect import kernel_hz
from tna.plan.types import Features, Namespace

pytestmark = pytest.mark.root

XDP_DROP = 1
FIREWALL = Features(True, True, firewall_ipv4=True, firewall_ipv6=True)


@dataclass(frozen=True)
class R:
    """A test rule: field -> allowed values (addresses: networks), verdict, SKIP target."""

    verdict: int
    match: Mapping[str, Collection[Any]] = field(default_factory=dict)
    target: int = 0


def _vector(allowed: Iterable[bool]) -> int:
    """The bit vector of a class: bit i set when rule i allows it."""
    return sum(1 << i for i, ok in enumerate(allowed) if ok)


def _within(net: ipaddress.IPv4Network | ipaddress.IPv6Network,
            other: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """``net`` is a subnet of ``other`` (never across address families)."""
    return net.prefixlen >= other.prefixlen and net.network_address in other


def build(rules: list[R], stateful: bool = False) -> FwTables:
    """Classes by brute force over each field's domain; every rule counted."""
    classes: dict[int, int] = {}

    def cls(vector: int) -> int:
        return classes.setdefault(vector, len(classes))

    def array(name: str, size: int) -> tuple[int, ...]:
        return tuple(cls(_vector(name not in r.match or v in r.match[name] for r in rules))
                     for v in range(size))

    def prefixes(name: str) -> tuple[tuple[int, int, int], ...]:
        nets = {ipaddress.ip_network(n) for r in rules for n in r.match.get(name, ())}
        zero = ipaddress.ip_network("::/0" if any(n.version == 6 for n in nets) else "0.0.0.0/0")
        out = []
        for net in sorted(nets | {zero}, key=lambda n: n.prefixlen):
            vec = _vector(name not in r.match or any(
                _within(net, ipaddress.ip_network(m)) for m in r.match[name]) for r in rules)
            out.append((int(net.network_address), net.prefixlen, cls(vec)))
        return tuple(out)

    def ifs(name: str) -> tuple[dict[int, int], int]:
        named = {i for r in rules for i in r.match.get(name, ())}
        table = {i: cls(_vector(name not in r.match or i in r.match[name] for r in rules))
                 for i in named}
        return table, cls(_vector(name not in r.match for r in rules))

    used = frozenset(k for r in rules for k in r.match)
    iif, iif_default = ifs("iif")
    oif, oif_default = ifs("oif")
    built = dict(
        l4proto=array("l4proto", 256), tcpflags=array("tcpflags", 256),
        icmptype=array("icmptype", 256), sport=array("sport", 65536),
        dport=array("dport", 65536), saddr=prefixes("saddr"), daddr=prefixes("daddr"))
    refs = tuple(RuleRef("test", "ip", "t", "c", i, f"rule {i}") for i in range(len(rules)))
    return FwTables(
        rules=tuple(FwRule(r.verdict, r.target, i) for i, r in enumerate(rules)),
        classes=tuple(sorted(classes, key=classes.__getitem__)),
        used=used, iif=iif, iif_default=iif_default, oif=oif, oif_default=oif_default,
        stateful=stateful, counters=refs, **{k: v for k, v in built.items()  # type: ignore[arg-type]
                                            if k in used})


TCP_, UDP_, ICMP_ = 6, 17, 1


def v4_rules(router: Router) -> list[R]:
    return [
        R(VERDICT_DROP, {"l4proto": {TCP_}, "dport": {22}, "saddr": ["10.1.0.0/24"]}),  # 0
        R(VERDICT_PUNT, {"l4proto": {UDP_}, "dport": {5353}}),  # 1: an unsupported rule
        R(VERDICT_SKIP, {"saddr": ["10.1.0.9/32"]}, target=4),  # 2: accept ends base chain 1
        R(VERDICT_DROP, {"l4proto": {ICMP_}, "icmptype": {8},
                         "iif": {router.ifindex["r1"]}}),  # 3
        R(VERDICT_DROP, {"l4proto": {TCP_}, "tcpflags": {0x02}}),  # 4: SYN only
        R(VERDICT_DROP, {"oif": {router.ifindex["r2"]}, "l4proto": {UDP_},
                         "dport": range(8000, 8100)}),  # 5
        R(VERDICT_DROP, {"daddr": ["10.2.0.128/25"]}),  # 6
        R(VERDICT_ACCEPT),  # 7: policy
    ]


V6_RULES = [
    R(VERDICT_DROP, {"saddr": ["fd00:1::/64"], "l4proto": {UDP_}, "dport": {53}}),
    R(VERDICT_ACCEPT),
]


@contextlib.contextmanager
def firewall(router: Router, v4_table: FwTables | None,
             v6_table: FwTables | None = None) -> Iterator[None]:
    with program(router, FIREWALL), netns.entered(router.ns):
        # ct_hz as the planner writes it: refreshes that change nothing are skipped
        sync_firewall_for_test(Namespace(firewall=(v4_table, v6_table), ct_hz=kernel_hz()))
        yield


CASES = {
    # name: (frame, expected verdict, counter that moves, flattened rule counted or None)
    "tcp22_from_lan_dropped": (lambda: v4() / TCP(dport=22, flags="A"), XDP_DROP,
                               "fw_dropped", 0),
    "tcp22_from_elsewhere_accepted": (lambda: v4(src="10.5.0.2") / TCP(dport=22, flags="A"),
                                      XDP_REDIRECT, "forwarded", 7),
    "udp5353_punted": (lambda: v4() / UDP(dport=5353), XDP_PASS, "firewall", None),
    "echo_dropped": (lambda: v4() / ICMP(type=8), XDP_DROP, "fw_dropped", 3),
    "echo_reply_accepted": (lambda: v4() / ICMP(type=0), XDP_REDIRECT, "forwarded", 7),
    "skip_passes_over_echo_rule": (lambda: v4(src="10.1.0.9") / ICMP(type=8), XDP_REDIRECT,
                                   "forwarded", 7),
    "skip_lands_on_syn_rule": (lambda: v4(src="10.1.0.9") / TCP(dport=80, flags="S"), XDP_DROP,
                               "fw_dropped", 4),
    "syn_dropped": (lambda: v4() / TCP(dport=80, flags="S"), XDP_DROP, "fw_dropped", 4),
    "ack_accepted": (lambda: v4() / TCP(dport=80, flags="A"), XDP_REDIRECT, "forwarded", 7),
    "oif_and_port_range_dropped": (lambda: v4() / UDP(dport=8050), XDP_DROP, "fw_dropped", 5),
    "port_range_edge_accepted": (lambda: v4() / UDP(dport=8100), XDP_REDIRECT, "forwarded", 7),
    "daddr_prefix_dropped": (lambda: v4(dst="10.2.0.200") / UDP(dport=1), XDP_DROP,
                             "fw_dropped", 6),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ipv4_classifier(router: Router, case: str) -> None:
    make, verdict, moved_counter, rule = CASES[case]
    pkt = Ether(bytes(make()))
    if pkt[Ether].payload.dst == "10.2.0.200":  # type: ignore[attr-defined]
        subprocess.run(["ip", "netns", "exec", router.ns, "ip", "neigh", "replace", "10.2.0.200",
                        "lladdr", "02:00:00:00:02:02", "dev", "r2"], check=True)
    with firewall(router, build(v4_rules(router))):
        got, out, moved = run(router, bytes(pkt))
        counters = firewall_counters(0)
    assert got == verdict
    assert moved == {moved_counter: 1}
    if verdict == XDP_REDIRECT:
        expect = forwarded_v4(pkt)
        assert out == expect or pkt[Ether].payload.dst == "10.2.0.200"  # type: ignore[attr-defined]
    counted = [i for i, (packets, _) in enumerate(counters) if packets]
    assert counted == ([] if rule is None else [rule] if case != "skip_passes_over_echo_rule"
                       and case != "skip_lands_on_syn_rule" else sorted({2, rule}))
    if rule is not None:
        assert counters[rule][1] == len(pkt)


@pytest.mark.parametrize("first", [VERDICT_ACCEPT, VERDICT_DROP])
def test_a_first_rule_for_every_packet_decides_and_is_counted(router: Router, first: int
                                                              ) -> None:
    """tna_fw_table.rule0_all: rule 0 without constraints decides without class lookups (the
    rules after it would decide otherwise), and its counter moves as the walk's would."""
    other = VERDICT_DROP if first == VERDICT_ACCEPT else VERDICT_ACCEPT
    table = build([R(first), R(other, {"l4proto": {UDP_}}), R(other)])
    assert rule0_decides(table)
    pkt = Ether(bytes(v4() / UDP(dport=7)))
    with firewall(router, table):
        got, out, moved = run(router, bytes(pkt))
        counters = firewall_counters(0)
    if first == VERDICT_ACCEPT:
        assert (got, out, moved) == (XDP_REDIRECT, forwarded_v4(pkt), {"forwarded": 1})
    else:
        assert (got, moved) == (XDP_DROP, {"fw_dropped": 1})
    assert counters[:3] == [(1, len(pkt)), (0, 0), (0, 0)]


def test_without_tables_the_family_is_punted(router: Router) -> None:
    """A program with the classifier but no table for the family hands it to Linux."""
    with firewall(router, None, None):
        got, _, moved = run(router, bytes(v4() / UDP()))
    assert (got, moved) == (XDP_PASS, {"firewall": 1})


def test_ipv6_classifier(router: Router) -> None:
    with firewall(router, build(v4_rules(router)), build(V6_RULES)):
        accepted = Ether(bytes(v6() / UDP(dport=54)))
        got, out, moved = run(router, bytes(accepted))
        assert (got, out, moved) == (XDP_REDIRECT, forwarded_v6(accepted), {"forwarded": 1})
        got, _, moved = run(router, bytes(v6() / UDP(dport=53)))
        assert (got, moved) == (XDP_DROP, {"fw_dropped": 1})
        assert firewall_counters(1) == [(1, len(v6() / UDP(dport=53))), (1, len(accepted))]


def test_a_new_generation_replaces_the_ruleset(router: Router) -> None:
    """Rule changes are map writes: the same program follows the new tables at once."""
    frame = bytes(v4() / UDP(dport=7))
    with firewall(router, build([R(VERDICT_ACCEPT)])):
        assert run(router, frame)[0] == XDP_REDIRECT  # positive control
        sync_firewall_for_test(Namespace(firewall=(build(
            [R(VERDICT_DROP, {"l4proto": {UDP_}, "dport": {7}}), R(VERDICT_ACCEPT)]), None)))
        assert run(router, frame)[0] == XDP_DROP
        sync_firewall_for_test(Namespace(firewall=(build([R(VERDICT_ACCEPT)]), None)))
        assert run(router, frame)[0] == XDP_REDIRECT


def test_1000_rules_walk_to_the_last_word(router: Router) -> None:
    """Rules spread over 16 words; the one that matches is in the last."""
    rules = [R(VERDICT_DROP, {"l4proto": {UDP_}, "dport": {10000 + i}}) for i in range(999)]
    rules.append(R(VERDICT_ACCEPT))
    with firewall(router, build(rules)):
        got, _, moved = run(router, bytes(v4() / UDP(dport=10000 + 998)))
        assert (got, moved) == (XDP_DROP, {"fw_dropped": 1})
        got, _, moved = run(router, bytes(v4() / UDP(dport=9999)))
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1})
        counters = firewall_counters(0)
    assert [i for i, c in enumerate(counters) if c[0]] == [998, 999]


# ---- conntrack ---------------------------------------------------------------------------------

def _conntrack(router: Router, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", *args],
                          capture_output=True, text=True, check=False).stdout


def _udp_flow(router: Router, sport: int, status: str, timeout: int = 30) -> None:
    subprocess.run(["ip", "netns", "exec", router.ns, "conntrack", "-I", "-p", "udp",
                    "-s", "10.1.0.2", "-d", "10.2.0.2", "--sport", str(sport), "--dport", "53",
                    "-t", str(timeout), "--status", status], capture_output=True, check=True)


def _timeout(router: Router, sport: int) -> int:
    line = next(ln for ln in _conntrack(router, "-L", "-p", "udp").splitlines()
                if f"sport={sport} " in ln)
    return int(line.split()[2])


@pytest.fixture
def flows(router: Router) -> Iterator[None]:
    try:
        yield
    finally:
        _conntrack(router, "-F")


@pytest.mark.usefixtures("flows")
def test_stateful_only_established_assured_udp_is_fast(router: Router) -> None:
    table = build([R(VERDICT_ACCEPT)], stateful=True)
    _udp_flow(router, 4001, "ASSURED,SEEN_REPLY", timeout=30)
    _udp_flow(router, 4002, "SEEN_REPLY")  # not assured: udp_packet() may still assure it
    with firewall(router, table):
        got, _, moved = run(router, bytes(v4() / UDP(sport=4001, dport=53)))
        assert (got, moved) == (XDP_REDIRECT, {"forwarded": 1})
        assert _timeout(router, 4001) > 100  # refreshed to the stream timeout (120 s)
        for frame, reason in ((v4() / UDP(sport=4002, dport=53), "ct"),
                              (v4() / UDP(sport=4003, dport=53), "ct"),  # no flow at all
                              (v4() / TCP(sport=4001, dport=53, flags="A"), "ct"),
                              (v4() / ICMP(type=0), "ct_proto")):
            got, _, moved = run(router, bytes(frame))
            assert (got, moved) == (XDP_PASS, {reason: 1})
        # the reply direction of the flow is established too
        reply = Ether(bytes(v4(src="10.1.0.2", dst="10.2.0.2") / UDP(sport=4001, dport=53)))
        assert run(router, bytes(reply))[0] == XDP_REDIRECT


@pytest.mark.usefixtures("flows")
def test_stateful_drop_refreshes_the_flow(router: Router) -> None:
    """Conntrack runs before the forward hook: a dropped packet still refreshes its flow."""
    _udp_flow(router, 4011, "ASSURED,SEEN_REPLY", timeout=30)
    with firewall(router, build([R(VERDICT_DROP)], stateful=True)):
        got, _, moved = run(router, bytes(v4() / UDP(sport=4011, dport=53)))
    assert (got, moved) == (XDP_DROP, {"fw_dropped": 1})
    assert _timeout(router, 4011) > 100


@pytest.mark.usefixtures("flows")
def test_stateful_bad_udp_checksum_goes_to_linux(router: Router) -> None:
    """nf_conntrack_checksum: conntrack calls such a packet invalid; Linux decides."""
    _udp_flow(router, 4021, "ASSURED,SEEN_REPLY")
    raw = bytearray(bytes(Ether(bytes(v4() / UDP(sport=4021, dport=53) / b"abcd"))))
    raw[-1] ^= 0xFF
    with firewall(router, build([R(VERDICT_ACCEPT)], stateful=True)):
        got, _, moved = run(router, bytes(raw))
    assert (got, moved) == (XDP_PASS, {"ct": 1})


def test_a_walk_longer_than_the_step_limit_goes_to_linux(router: Router) -> None:
    """Each matched SKIP is a step; beyond TNA_FW_MAX_STEPS the packet is punted, not guessed."""
    def chain(n: int) -> list[R]:
        return [*(R(VERDICT_SKIP, target=i + 1) for i in range(n)), R(VERDICT_ACCEPT)]

    frame = bytes(v4() / UDP(dport=7))
    with firewall(router, build(chain(MAX_STEPS - 1))):
        assert run(router, frame)[0] == XDP_REDIRECT  # positive control: 32 steps decide
        sync_firewall_for_test(Namespace(firewall=(build(chain(MAX_STEPS)), None)))
        got, _, moved = run(router, frame)
    assert (got, moved) == (XDP_PASS, {"firewall": 1})
