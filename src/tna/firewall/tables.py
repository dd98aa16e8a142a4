"""The firewall classifier as the data path reads it: one :class:`FwTables` per address family.

Role in the flow: the output of ``firewall.compile``, checked against the maps' sizes by the
planner (:func:`check_fits`), and the input of ``datapath.firewall``, which writes it into the
``tna_fw_*`` maps (``bpf/lib/firewall.h`` reads them).

The classifier is a bit-vector classifier (as in bpf-iptables): the forward hook's rules are
flattened into one list, first match wins.  For every packet field the data path looks the
packet's value up and gets a *class*; every class has a bit vector with bit *i* set when rule *i*
accepts that value.  ANDing the vectors of all fields gives the rules the packet matches; the
first one whose verdict is final decides.  Per-packet cost depends on the number of 64-rule
words, not on the rules' contents.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tna import abi

# Fields the data path classifies on, in this order (bit i of FwTables.used is FIELDS[i]).
#   iif/oif: ifindex of the L3 input device and of the FIB's output device (a bridge, not its
#            port), as the forward hook sees them (nft iif/oif, iifname/oifname resolved).
#   saddr/daddr: IPv4 or IPv6 address.
#   l4proto: IPv4 protocol / IPv6 next header (extension headers never reach the fast path).
#   sport/dport: TCP/UDP/UDP-Lite/SCTP/DCCP ports; 0 for other protocols, so a rule that
#                constrains a port must also restrict l4proto to those protocols.
#   tcpflags: the TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN); 0 for non-TCP.
#   icmptype: ICMP type (IPv4, protocol 1) or ICMPv6 type (protocol 58); 0 otherwise.
FIELDS = ("iif", "oif", "saddr", "daddr", "l4proto", "sport", "dport", "tcpflags", "icmptype")

# Rule verdicts (bpf/include/tna_abi.h TNA_FW_*).
VERDICT_ACCEPT = 1  # final: the packet passes the forward hook
VERDICT_DROP = 2  # final: dropped
VERDICT_PUNT = 3  # final: handed to Linux (an unsupported rule could match it)
VERDICT_SKIP = 4  # not final: evaluation continues at rule ``target`` (> this rule's index)

MAX_RULES = 2048  # flattened rules per family (32 words of 64 bits)
MAX_CLASSES = 4096  # distinct bit vectors per family
MAX_STEPS = 32  # matched rules (SKIPs included) the data path follows before it punts


@dataclass(frozen=True)
class RuleRef:
    """A rule of the kernel's ruleset, as the user knows it."""

    source: str  # "nftables" or "iptables-legacy"
    family: str  # nft family: ip, ip6, inet
    table: str
    chain: str
    handle: int | None  # nft handle; iptables-legacy: the rule's 1-based position
    text: str  # human-readable: nft syntax if known, else the rule's JSON or -A line

    def __str__(self) -> str:
        return f"{self.family} {self.table} {self.chain} handle {self.handle}: {self.text}"


@dataclass(frozen=True)
class FwRule:
    verdict: int  # VERDICT_*
    target: int = 0  # VERDICT_SKIP: where evaluation continues
    counter: int = -1  # index into FwTables.counters (packets it accepted or dropped), or -1


@dataclass(frozen=True)
class Unsupported:
    """A rule the fast path cannot evaluate: the traffic it could match goes to Linux."""

    rule: RuleRef
    why: str  # what is not modelled, e.g. "log statement", "meta mark"
    traffic: str  # the traffic kept on Linux, e.g. "tcp dport 22 from any" or "all"


@dataclass(frozen=True)
class FwTables:
    """One family's forward-hook classifier.

    ``rules`` ends with a rule every packet matches, so evaluation always ends.  Every table
    of values below maps to a class id, an index into ``classes``.
    """

    rules: tuple[FwRule, ...]
    classes: tuple[int, ...]  # class id -> bit vector as an int (bit i: rule i matches)
    used: frozenset[str] = frozenset()  # fields some rule constrains; others are not looked up
    iif: Mapping[int, int] = field(default_factory=dict)  # ifindex -> class
    iif_default: int = 0  # class of every ifindex not in iif
    oif: Mapping[int, int] = field(default_factory=dict)
    oif_default: int = 0
    saddr: tuple[tuple[int, int, int], ...] = ()  # (network as int, prefixlen, class); has /0
    daddr: tuple[tuple[int, int, int], ...] = ()
    l4proto: tuple[int, ...] = ()  # 256 classes, by value; () when not used
    tcpflags: tuple[int, ...] = ()  # 256
    icmptype: tuple[int, ...] = ()  # 256
    sport: tuple[int, ...] = ()  # 65536
    dport: tuple[int, ...] = ()  # 65536
    stateful: bool = False  # conntrack is active for the family: only established flows fast
    nat: bool = False  # a nat chain registers the family's nat hooks: NAT entries are rewritten
    counters: tuple[RuleRef, ...] = ()
    unsupported: tuple[Unsupported, ...] = ()


def rule0_decides(t: FwTables) -> bool:
    """Whether rule 0 decides every packet: a final verdict (accept or drop) whose bit every
    class has, so that no field of any packet can miss it (the data path then skips the
    classification; e.g. ``ct state established,related accept`` first in a stateful
    ruleset, whose constraint the fast path's packets all meet)."""
    return bool(t.rules) and t.rules[0].verdict in (VERDICT_ACCEPT, VERDICT_DROP) \
        and all(c & 1 for c in t.classes)


class FirewallTooLarge(ValueError):
    """The compiled tables do not fit the maps; the planner leaves the family to Linux."""


def check_fits(t: FwTables) -> None:
    """Raise :class:`FirewallTooLarge` unless ``t`` fits the data path's fixed sizes (the
    limits above; tests/bpf/test_abi.py holds them equal to the C ones)."""
    if not t.rules or len(t.rules) > MAX_RULES:
        raise FirewallTooLarge(f"{len(t.rules)} flattened rules (at most {MAX_RULES})")
    if len(t.classes) + 1 > MAX_CLASSES:
        raise FirewallTooLarge(f"{len(t.classes)} classes (at most {MAX_CLASSES - 1})")
    if len(t.iif) > abi.max_ifaces() or len(t.oif) > abi.max_ifaces():
        raise FirewallTooLarge(f"rules name more than {abi.max_ifaces()} interfaces")
