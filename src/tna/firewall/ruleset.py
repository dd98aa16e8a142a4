"""The netfilter rules as a model the firewall compiler can reason on.

Role in the flow: ``netfilter`` (kernel → :class:`~tna.model.NetfilterChain` and
:class:`~tna.model.NetfilterSet` records) → here (records → :class:`Ruleset`) →
``firewall.compile``.  Every rule becomes a conjunction of value sets, one per field (the fields
of ``tables.FIELDS`` plus ``ctstate``), with the address families it can match and its verdict.
Whatever the model does not cover makes the rule *unsupported*, with a reason; its supported
matches are kept as an over-approximation of the traffic it could affect.  Nothing is ignored.

Sources: nftables JSON (``nft -j list ruleset``, which includes iptables-nft) and
iptables-legacy ``-A`` lines (``iptables-save``).  Interface names are resolved to ifindexes
with the mapping the caller passes: the model is only valid for that set of interfaces.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from tna.firewall.tables import RuleRef
from tna.firewall.values import Values, prefix_span
from tna.model import AF_INET, AF_INET6, NetfilterChain, NetfilterSet
from tna.netfilter import parse_iptables_save, parse_nft_json, parse_nft_sets

BOTH = frozenset({AF_INET, AF_INET6})
TABLE_FAMILIES = {"ip": frozenset({AF_INET}), "ip6": frozenset({AF_INET6}), "inet": BOTH}
ADDR_BITS = {AF_INET: 32, AF_INET6: 128}
IFINDEX_TOP = 2**32 - 1
FIELD_TOP = {"iif": IFINDEX_TOP, "oif": IFINDEX_TOP, "l4proto": 255, "sport": 65535,
             "dport": 65535, "tcpflags": 255, "icmptype": 255}

# ct state bits (nf_conntrack_common.h: NF_CT_STATE_BIT, INVALID, UNTRACKED)
CT_STATES = {"invalid": 1, "established": 2, "related": 4, "new": 8, "untracked": 64}
ALL_CT_STATES = Values.points(CT_STATES.values())
TCP_FLAGS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ecn": 64,
             "ece": 64, "cwr": 128}
PORT_PROTOCOLS = {"tcp": 6, "udp": 17, "dccp": 33, "sctp": 132, "udplite": 136}
PORT_PROTOCOL_VALUES = Values.points(PORT_PROTOCOLS.values())
PROTOCOLS = {**PORT_PROTOCOLS, "icmp": 1, "igmp": 2, "ipip": 4, "egp": 8, "ipv6": 41,
             "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "ipv6-icmp": 58, "comp": 108}
ICMP_TYPES = {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4,
              "redirect": 5, "echo-request": 8, "router-advertisement": 9,
              "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
              "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15,
              "info-reply": 16, "address-mask-request": 17, "address-mask-reply": 18,
              # iptables' spellings
              "ping": 8, "pong": 0, "ttl-exceeded": 11}
ICMPV6_TYPES = {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3,
                "parameter-problem": 4, "echo-request": 128, "echo-reply": 129,
                "mld-listener-query": 130, "mld-listener-report": 131,
                "mld-listener-done": 132, "mld-listener-reduction": 132,
                "nd-router-solicit": 133, "nd-router-advert": 134,
                "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137,
                "router-renumbering": 138, "ind-neighbor-solicit": 141,
                "ind-neighbor-advert": 142, "mld2-listener-report": 143,
                # ip6tables' spellings
                "router-solicitation": 133, "router-advertisement": 134,
                "neighbour-solicitation": 135, "neighbor-solicitation": 135,
                "neighbour-advertisement": 136, "neighbor-advertisement": 136,
                "redirect": 137, "ttl-exceeded": 3, "ping": 128, "pong": 129}
FAMILY_CODES = {"nfproto": {AF_INET: AF_INET, AF_INET6: AF_INET6},
                "ethproto": {AF_INET: 0x0800, AF_INET6: 0x86DD}}
FAMILY_NAMES = {"ipv4": AF_INET, "ipv6": AF_INET6, "ip": 0x0800, "ip6": 0x86DD}


class Unsupported(Exception):
    """Raised while parsing one match or statement the model does not cover."""


@dataclass(frozen=True)
class Rule:
    """One rule: a conjunction of field constraints, then a verdict.

    ``match`` maps a field (``tables.FIELDS`` or ``ctstate``) to the values it accepts; a field
    not listed accepts anything.  ``ctstate`` values are :data:`CT_STATES` bits.
    """

    ref: RuleRef
    match: tuple[tuple[str, Values], ...] = ()
    families: frozenset[int] = BOTH  # address families whose packets it can match
    verdict: str | None = None  # accept, drop, jump, goto, return; None: none (or continue)
    target: str | None = None  # jump/goto: the chain's name (same table)
    counter: bool = False
    unsupported: str = ""  # what the fast path cannot evaluate ("" when it can)
    traffic: str = ""  # the supported matches, readable ("" matches everything)

    def constraints(self) -> dict[str, Values]:
        return dict(self.match)


@dataclass(frozen=True)
class Chain:
    source: str  # "nftables" or "iptables-legacy"
    family: str
    table: str
    name: str
    hook: str | None = None
    type: str | None = None
    priority: int | None = None
    policy: str | None = None
    rules: tuple[Rule, ...] = ()

    @property
    def is_base(self) -> bool:
        return self.hook is not None


@dataclass(frozen=True)
class Ruleset:
    chains: tuple[Chain, ...] = ()

    def chain(self, source: str, family: str, table: str, name: str) -> Chain | None:
        return next((c for c in self.chains if (c.source, c.family, c.table, c.name)
                     == (source, family, table, name)), None)


def build(chains: Iterable[NetfilterChain], sets: Iterable[NetfilterSet],
          ifindexes: Mapping[str, int]) -> Ruleset:
    """The model of ``chains`` (nftables and iptables-legacy records)."""
    chains = tuple(chains)
    ctx = _Context({(s.family, s.table, s.name): s for s in sets}, _updated_sets(chains),
                   dict(ifindexes))
    return Ruleset(tuple(_chain(c, chains, ctx) for c in chains))


def from_nft_json(text: str, ifindexes: Mapping[str, int]) -> Ruleset:
    """The model of ``nft -j list ruleset`` output."""
    return build(parse_nft_json(text), parse_nft_sets(text), ifindexes)


def from_iptables_save(text: str, family: str, ifindexes: Mapping[str, int]) -> Ruleset:
    """The model of ``iptables-save`` (family "ip") or ``ip6tables-save`` ("ip6") output."""
    return build(parse_iptables_save(text, family), (), ifindexes)


@dataclass
class _Context:
    sets: dict[tuple[str, str, str], NetfilterSet]
    updated: frozenset[tuple[str, str, str]]  # sets some rule adds to or updates
    ifindexes: dict[str, int]


def _updated_sets(chains: tuple[NetfilterChain, ...]) -> frozenset[tuple[str, str, str]]:
    found = set()
    for c in chains:
        for text in c.exprs:
            for stmt in json.loads(text):
                for key in ("set", "map"):
                    name = stmt.get(key, {}).get(key) if isinstance(stmt.get(key), dict) else None
                    if isinstance(name, str):
                        found.add((c.family, c.table, name.lstrip("@")))
    return frozenset(found)


def _chain(c: NetfilterChain, every: tuple[NetfilterChain, ...], ctx: _Context) -> Chain:
    if c.source == "iptables-legacy":
        names = {o.name for o in every if (o.source, o.family, o.table) ==
                 (c.source, c.family, c.table)}
        rules = tuple(_legacy_rule(c, i, line, names, ctx) for i, line in enumerate(c.rules))
    else:
        rules = tuple(_nft_rule(c, i, text, ctx) for i, text in enumerate(c.exprs))
    return Chain(c.source, c.family, c.table, c.name, c.hook, c.type, c.priority, c.policy,
                 rules)


# --- one rule, whatever its source -----------------------------------------------------------


@dataclass
class _Builder:
    families: frozenset[int]
    match: dict[str, Values] = field(default_factory=dict)
    why: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    verdict: str | None = None
    target: str | None = None
    counter: bool = False

    def constrain(self, name: str, values: Values) -> None:
        self.match[name] = self.match[name] & values if name in self.match else values

    def only(self, families: Iterable[int]) -> None:
        self.families = self.families & frozenset(families)

    def unsupported(self, why: str) -> None:
        if why not in self.why:
            self.why.append(why)

    def rule(self, ref: RuleRef) -> Rule:
        self._check_dependencies()
        return Rule(ref, tuple(sorted(self.match.items())), self.families, self.verdict,
                    self.target, self.counter, "; ".join(self.why), " ".join(self.texts))

    def _check_dependencies(self) -> None:
        """Port fields read the transport header of any protocol unless restricted."""
        proto = self.match.get("l4proto", Values.span(0, 255))
        if ({"sport", "dport"} & self.match.keys()
                and proto - PORT_PROTOCOL_VALUES):
            self.unsupported("ports without a restriction to port protocols")
            self.match.pop("sport", None)
            self.match.pop("dport", None)
        if "tcpflags" in self.match and proto - Values.points([6]):
            self.unsupported("tcp flags without a restriction to tcp")
            self.match.pop("tcpflags")
        if "icmptype" in self.match and proto - Values.points([1, 58]):
            self.unsupported("icmp type without a restriction to icmp")
            self.match.pop("icmptype")


def _ref(c: NetfilterChain, index: int, text: str) -> RuleRef:
    handle = c.handles[index] if index < len(c.handles) else index + 1
    return RuleRef(c.source, c.family, c.table, c.name, handle, text)


# --- nftables --------------------------------------------------------------------------------


class _Left(NamedTuple):
    field: str  # a FIELDS name, "ctstate" or "family"
    kind: str  # how the right-hand side reads: addr, port, proto, icmp, icmpv6, flags, ...
    af: int | None = None  # the address family the expression implies
    l4proto: int | None = None  # the protocol the expression implies (nft's dependency)
    mask: int | None = None  # "left & mask"


PAYLOAD_LEFTS = {
    ("ip", "saddr"): _Left("saddr", "addr", AF_INET),
    ("ip", "daddr"): _Left("daddr", "addr", AF_INET),
    ("ip", "protocol"): _Left("l4proto", "proto", AF_INET),
    ("ip6", "saddr"): _Left("saddr", "addr", AF_INET6),
    ("ip6", "daddr"): _Left("daddr", "addr", AF_INET6),
    ("ip6", "nexthdr"): _Left("l4proto", "proto", AF_INET6),
    ("th", "sport"): _Left("sport", "port"), ("th", "dport"): _Left("dport", "port"),
    ("tcp", "flags"): _Left("tcpflags", "flags", None, 6),
    ("icmp", "type"): _Left("icmptype", "icmp", None, 1),
    ("icmpv6", "type"): _Left("icmptype", "icmpv6", None, 58),
    **{(p, f): _Left(f, "port", None, n) for p, n in PORT_PROTOCOLS.items()
       for f in ("sport", "dport")},
}
META_LEFTS = {"iif": _Left("iif", "ifindex"), "oif": _Left("oif", "ifindex"),
              "iifname": _Left("iif", "ifname"), "oifname": _Left("oif", "ifname"),
              "l4proto": _Left("l4proto", "proto"), "nfproto": _Left("family", "nfproto"),
              "protocol": _Left("family", "ethproto")}


def _nft_rule(c: NetfilterChain, index: int, text: str, ctx: _Context) -> Rule:
    exprs = json.loads(text)
    b = _Builder(TABLE_FAMILIES.get(c.family, BOTH))
    for expr in exprs:
        ((key, value),) = expr.items()
        if b.verdict is not None:
            break  # a verdict ends the rule: what follows never runs
        try:
            _nft_expr(b, c, key, value, ctx)
        except Unsupported as exc:
            b.unsupported(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            b.unsupported(f"unexpected {key} expression")
    return b.rule(_ref(c, index, " ".join(_describe_safely(e) for e in exprs)))


def _describe_safely(expr: Any) -> str:
    try:
        return describe(expr)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        return json.dumps(expr, separators=(",", ":"))


def _nft_expr(b: _Builder, c: NetfilterChain, key: str, value: Any, ctx: _Context) -> None:
    if key == "match":
        _nft_match(b, c, value, ctx)
        b.texts.append(describe({key: value}))
    elif key == "counter":
        b.counter = True
    elif key in ("accept", "drop", "return"):
        b.verdict = key
    elif key in ("jump", "goto"):
        b.verdict, b.target = key, value["target"]
    elif key != "continue":
        raise Unsupported(_statement_name(key, value))


def _statement_name(key: str, value: Any) -> str:
    if key == "xt" and isinstance(value, dict):
        return f"xt {value.get('type', '')} {value.get('name', '')}".replace("  ", " ")
    return f"{key} statement"


def _nft_match(b: _Builder, c: NetfilterChain, m: dict[str, Any], ctx: _Context) -> None:
    left = _nft_left(m["left"])
    if left.af is not None:
        b.only([left.af])
    if left.l4proto is not None:
        b.constrain("l4proto", Values.points([left.l4proto]))
    values = _nft_values(left, m["op"], m["right"], lambda n: _named_set(c, n, ctx), ctx)
    if left.field == "family":
        codes = FAMILY_CODES[left.kind]
        b.only(af for af in BOTH if codes[af] in values)
    else:
        b.constrain(left.field, values)


def _nft_left(left: Any) -> _Left:
    if not isinstance(left, dict) or len(left) != 1:
        raise Unsupported(f"match on {json.dumps(left)}")
    ((key, value),) = left.items()
    found: _Left | None = None
    if key == "payload" and "protocol" in value:
        found = PAYLOAD_LEFTS.get((value["protocol"], value["field"]))
        name = f"{value['protocol']} {value['field']}"
    elif key == "meta":
        found, name = META_LEFTS.get(value["key"]), f"meta {value['key']}"
    elif key == "ct":
        name = f"ct {value['key']}"
        found = _Left("ctstate", "ctstate") if value["key"] == "state" else None
    elif key == "&" and isinstance(value, list) and len(value) == 2:
        inner = _nft_left(value[0])
        if inner.kind in ("flags", "ctstate"):
            return inner._replace(mask=_flag_value(inner.kind, value[1]))
        name = f"{describe(value[0])} & ..."
    else:
        name = "concatenation" if key == "concat" else key
    if found is None:
        raise Unsupported(name if key != "payload" or "protocol" in value else "raw payload")
    return found


def _nft_values(left: _Left, op: str, right: Any, named: Callable[[str], list[Any]],
                ctx: _Context) -> Values:
    if left.kind in ("flags", "ctstate"):
        return _flag_values(left, op, right, named)
    if op in ("<", "<=", ">", ">="):
        return _compare(left, op, _element(left, right, ctx))
    if op not in ("==", "!=", "in"):
        raise Unsupported(f"operator {op}")
    if isinstance(right, dict) and "set" in right:
        elements = right["set"]
    elif isinstance(right, str) and right.startswith("@"):
        elements = named(right[1:])
    else:
        elements = [right]
    values = Values()
    for e in elements:
        values = values | _element(left, e, ctx)
    return values.complement(_top(left)) if op == "!=" else values


def _top(left: _Left) -> int:
    if left.kind == "addr":
        return (1 << ADDR_BITS[left.af or AF_INET]) - 1
    if left.field == "family":
        return 0xFFFF
    return FIELD_TOP[left.field]


def _compare(left: _Left, op: str, value: Values) -> Values:
    if len(value.spans) != 1 or value.spans[0][0] != value.spans[0][1]:
        raise Unsupported(f"operator {op} on a non-scalar")
    v, top = value.spans[0][0], _top(left)
    return {"<": Values.span(0, v - 1), "<=": Values.span(0, v),
            ">": Values.span(v + 1, top), ">=": Values.span(v, top)}[op]


def _named_set(c: NetfilterChain, name: str, ctx: _Context) -> list[Any]:
    s = ctx.sets.get((c.family, c.table, name))
    if s is None:
        raise Unsupported(f"unknown set @{name}")
    if (c.family, c.table, name) in ctx.updated or s.timeout or {"dynamic", "timeout"} & set(
            s.flags):
        raise Unsupported(f"dynamic set @{name}")
    if " . " in s.type:
        raise Unsupported(f"concatenated set @{name}")
    return [json.loads(e) for e in s.elements]


def _element(left: _Left, e: Any, ctx: _Context) -> Values:
    """One element of a right-hand side: a value, prefix or range."""
    if isinstance(e, dict) and "elem" in e:
        if {"timeout", "expires"} & e["elem"].keys():
            raise Unsupported("set element with a timeout")
        e = e["elem"]["val"]
    if isinstance(e, dict) and "range" in e:
        lo, hi = (_element(left, v, ctx) for v in e["range"])
        return Values.span(lo.spans[0][0], hi.spans[-1][1]) if lo and hi else Values()
    if isinstance(e, dict) and "prefix" in e and left.kind == "addr":
        net = _address(left, e["prefix"]["addr"])
        return Values.span(*prefix_span(net, e["prefix"]["len"], ADDR_BITS[left.af or AF_INET]))
    if isinstance(e, dict | list):
        raise Unsupported(f"value {json.dumps(e)}")
    return _scalar(left, e, ctx)


def _scalar(left: _Left, e: str | int, ctx: _Context) -> Values:
    kind = left.kind
    if kind == "addr":
        return Values.points([_address(left, str(e))])
    if kind == "ifname":
        return _ifnames(str(e), ctx.ifindexes)
    if kind == "ifindex" and isinstance(e, str):
        if e not in ctx.ifindexes:
            raise Unsupported(f"unknown interface {e}")
        return Values.points([ctx.ifindexes[e]])
    if isinstance(e, int):
        return Values.points([e])
    names: dict[str, int] = {"proto": PROTOCOLS, "icmp": ICMP_TYPES, "icmpv6": ICMPV6_TYPES,
                             "nfproto": FAMILY_NAMES, "ethproto": FAMILY_NAMES}.get(kind, {})
    if e in names:
        return Values.points([names[e]])
    try:
        if kind == "port":
            return Values.points([socket.getservbyname(e)])
        if kind == "proto":
            return Values.points([socket.getprotobyname(e)])
    except OSError:
        pass
    if e.isdigit():
        return Values.points([int(e)])
    raise Unsupported(f"value {e!r} of {left.field}")


def _address(left: _Left, text: str) -> int:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as exc:
        raise Unsupported(f"address {text!r}") from exc
    if ADDR_BITS[left.af or AF_INET] != addr.max_prefixlen:
        raise Unsupported(f"address {text} of another family")
    return int(addr)


def _ifnames(pattern: str, ifindexes: Mapping[str, int], wildcard: str = "*") -> Values:
    """The ifindexes of the interfaces a name matches (a trailing ``wildcard``: a prefix)."""
    if pattern.endswith(wildcard) and not pattern.endswith("\\" + wildcard):
        stem = pattern[:-1]
        return Values.points(i for n, i in ifindexes.items() if n.startswith(stem))
    return Values.points([ifindexes[pattern]] if pattern in ifindexes else [])


def _flag_value(kind: str, v: Any) -> int:
    names = TCP_FLAGS if kind == "flags" else CT_STATES
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v in names:
        return names[v]
    if isinstance(v, list):
        return _or(_flag_value(kind, x) for x in v)
    if isinstance(v, dict) and isinstance(v.get("|"), list):
        return _or(_flag_value(kind, x) for x in v["|"])
    raise Unsupported(f"value {json.dumps(v)}")


def _or(values: Iterable[int]) -> int:
    out = 0
    for v in values:
        out |= v
    return out


def _flag_values(left: _Left, op: str, right: Any, named: Callable[[str], list[Any]]) -> Values:
    """Bitmask fields (tcp flags, ct state): every value that satisfies the comparison."""
    domain = list(range(256)) if left.kind == "flags" else list(CT_STATES.values())
    mask = 0xFF if left.mask is None else left.mask
    if (isinstance(right, dict) and "set" in right) or (
            isinstance(right, str) and right.startswith("@")):
        elements = right["set"] if isinstance(right, dict) else named(right[1:])
        wanted = {_flag_value(left.kind, e) for e in elements}
        inside = (x for x in domain if ((x & mask) in wanted) != (op == "!="))
        return Values.points(inside)
    v = _flag_value(left.kind, right)
    if op == "==":
        return Values.points(x for x in domain if x & mask == v)
    if op == "!=":
        return Values.points(x for x in domain if x & mask != v)
    if op == "in":
        return Values.points(x for x in domain if x & mask & v)
    raise Unsupported(f"operator {op} on flags")


# --- readable rule texts ---------------------------------------------------------------------


def describe(expr: Any) -> str:
    """An nft JSON expression or statement, in (approximately) nft syntax."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return _value_text(expr)
    ((key, value),) = expr.items()
    if key == "match":
        masked = isinstance(value["left"], dict) and "&" in value["left"]
        op = "" if value["op"] in ("==", "in") and not masked else f"{value['op']} "
        return f"{describe(value['left'])} {op}{_value_text(value['right'])}"
    if key == "payload" and "protocol" in value:
        return f"{value['protocol']} {value['field']}"
    if key == "meta":
        k = value["key"]
        return k if k in ("iif", "oif", "iifname", "oifname") else f"meta {k}"
    if key == "ct":
        return f"ct {value['key']}"
    if key == "&" and isinstance(value, list) and len(value) == 2:
        mask = value[1]
        mask_text = "(" + "|".join(map(str, mask)) + ")" if isinstance(mask, list) else mask
        return f"{describe(value[0])} & {mask_text}"
    if key == "concat" and isinstance(value, list):
        return " . ".join(describe(v) for v in value)
    if key in ("jump", "goto") and isinstance(value, dict):
        return f"{key} {value.get('target')}"
    if value is None or key == "counter":
        return key
    return f"{key} {json.dumps(value, separators=(',', ':'))}"


def _value_text(v: Any) -> str:
    if isinstance(v, dict) and "prefix" in v:
        return f"{v['prefix']['addr']}/{v['prefix']['len']}"
    if isinstance(v, dict) and "range" in v:
        return "-".join(_value_text(x) for x in v["range"])
    if isinstance(v, dict) and "set" in v:
        return "{ " + ", ".join(_value_text(x) for x in v["set"]) + " }"
    if isinstance(v, dict) and "|" in v:
        return "|".join(_value_text(x) for x in v["|"])
    if isinstance(v, list):
        return ",".join(_value_text(x) for x in v)
    if isinstance(v, dict):
        return describe(v)
    return str(v)


# --- iptables-legacy -------------------------------------------------------------------------

LEGACY_VERDICTS = {"ACCEPT": "accept", "DROP": "drop", "RETURN": "return"}
LEGACY_MATCHES = frozenset({"tcp", "udp", "udplite", "sctp", "dccp", "multiport", "state",
                            "conntrack", "icmp", "icmp6", "comment"})
LEGACY_CT_STATES = {"INVALID": 1, "ESTABLISHED": 2, "RELATED": 4, "NEW": 8, "UNTRACKED": 64}


def _legacy_rule(c: NetfilterChain, index: int, line: str, chains: set[str],
                 ctx: _Context) -> Rule:
    b = _Builder(TABLE_FAMILIES.get(c.family, BOTH), counter=True)
    af = AF_INET6 if c.family == "ip6" else AF_INET
    try:
        tokens = shlex.split(line)
    except ValueError:
        tokens = line.split()
    _legacy_tokens(b, tokens[2:] if tokens[:1] == ["-A"] else tokens, af, chains, ctx)
    return b.rule(_ref(c, index, line))


def _legacy_tokens(b: _Builder, tokens: list[str], af: int, chains: set[str],
                   ctx: _Context) -> None:
    negate, skipping, i = False, False, 0
    while i < len(tokens):
        opt, rest = tokens[i], tokens[i + 1:]
        i += 1
        if opt == "!":
            negate = True
            continue
        if opt in ("-m", "--match"):
            skipping = bool(rest) and rest[0] not in LEGACY_MATCHES
        if skipping and opt not in ("-m", "--match", "-j", "--jump", "-g", "--goto"):
            continue  # an option of an unsupported match, already reported
        try:
            i += _legacy_option(b, opt, rest, negate, af, chains, ctx)
        except (Unsupported, ValueError, IndexError) as exc:
            b.unsupported(str(exc) if isinstance(exc, Unsupported) else f"unexpected {opt}")
            if opt in ("-j", "--jump", "-g", "--goto"):
                return  # what follows are the target's options
        negate = False


def _legacy_option(b: _Builder, opt: str, rest: list[str], negate: bool, af: int,
                   chains: set[str], ctx: _Context) -> int:
    """Apply one option; returns how many arguments it consumed."""
    arg = rest[0] if rest else ""
    synthetic = opt == "--syn"
    if synthetic:
        opt, rest = "--tcp-flags", ["FIN,SYN,RST,ACK", "SYN"]
    handler = LEGACY_OPTIONS.get(opt)
    if handler is not None:
        fld = LEGACY_FIELDS[opt]
        consumed = 2 if fld == "tcpflags" else 1
        values = handler(rest[:consumed], af, ctx)
        if fld == "tcpflags":
            b.constrain("l4proto", Values.points([6]))
        b.constrain(fld, (_legacy_top(fld, af) - values) if negate else values)
        b.texts.append(" ".join(["!"] * negate + [opt, *rest[:consumed]]))
        return 0 if synthetic else consumed
    if opt in ("-m", "--match"):
        if arg not in LEGACY_MATCHES:
            b.unsupported(f"-m {arg}")
        return 1
    if opt in ("-j", "--jump", "-g", "--goto"):
        _legacy_target(b, opt, arg, chains)
        return 1
    if opt == "--comment":
        return 1
    if opt == "-c":
        return 2
    if opt.startswith("-"):
        raise Unsupported(f"{'! ' if negate else ''}{opt}")
    return 0  # an argument of an unsupported option, already reported


def _legacy_top(fld: str, af: int) -> Values:
    if fld in ("saddr", "daddr"):
        return Values.span(0, (1 << ADDR_BITS[af]) - 1)
    if fld == "ctstate":
        return ALL_CT_STATES
    return Values.span(0, FIELD_TOP[fld])


def _legacy_target(b: _Builder, opt: str, arg: str, chains: set[str]) -> None:
    if arg in LEGACY_VERDICTS and opt in ("-j", "--jump"):
        b.verdict = LEGACY_VERDICTS[arg]
    elif arg in chains:
        b.verdict, b.target = ("goto" if opt in ("-g", "--goto") else "jump"), arg
    else:
        raise Unsupported(f"-j {arg}")
    if b.verdict in ("jump", "goto", "return"):
        b.counter = False  # only rules that count packets they decide on keep a counter


def _legacy_address(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    bits, out = ADDR_BITS[af], Values()
    for item in arg.split(","):
        text, _, mask = item.partition("/")
        try:
            net = ipaddress.ip_network(f"{text}/{mask or bits}", strict=False)
        except ValueError as exc:
            raise Unsupported(f"address {item}") from exc
        if net.max_prefixlen != bits:
            raise Unsupported(f"address {item} of another family")
        out = out | Values.span(int(net.network_address), int(net.broadcast_address))
    return out


def _legacy_iface(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    return _ifnames(arg, ctx.ifindexes, "+")


def _legacy_proto(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    if arg in ("all", "0"):
        return Values.span(0, 255)
    return _scalar(_Left("l4proto", "proto"), int(arg) if arg.isdigit() else arg, ctx)


def _legacy_ports(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    out = Values()
    for item in arg.split(","):
        lo, sep, hi = item.partition(":")
        first = _scalar(_Left("dport", "port"), lo or "0", ctx).spans[0][0]
        last = _scalar(_Left("dport", "port"), hi or "65535", ctx).spans[0][0] if sep else first
        out = out | Values.span(first, last)
    return out


def _legacy_states(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    try:
        return Values.points(LEGACY_CT_STATES[s] for s in arg.split(","))
    except KeyError as exc:
        raise Unsupported(f"conntrack state {exc.args[0]}") from exc


def _legacy_tcp_flags(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    def flags(text: str) -> int:
        if text == "ALL":
            return 0xFF
        if text == "NONE":
            return 0
        try:
            return _or(TCP_FLAGS[f.lower()] for f in text.split(","))
        except KeyError as exc:
            raise Unsupported(f"tcp flag {exc.args[0]}") from exc
    mask, comp = flags(arg), flags(args[1] if len(args) > 1 else "")
    return Values.points(x for x in range(256) if x & mask == comp)


def _legacy_icmp(args: list[str], af: int, ctx: _Context) -> Values:
    arg = args[0] if args else ""
    names = ICMPV6_TYPES if af == AF_INET6 else ICMP_TYPES
    if arg == "any":
        return Values.span(0, 255)
    if "/" in arg:
        raise Unsupported(f"icmp code {arg}")
    if arg.isdigit():
        return Values.points([int(arg)])
    if arg not in names:
        raise Unsupported(f"icmp type {arg}")
    return Values.points([names[arg]])


LegacyHandler = Callable[[list[str], int, _Context], Values]
LEGACY_OPTIONS: dict[str, LegacyHandler] = {
    "-s": _legacy_address, "--source": _legacy_address, "--src": _legacy_address,
    "-d": _legacy_address, "--destination": _legacy_address, "--dst": _legacy_address,
    "-i": _legacy_iface, "--in-interface": _legacy_iface,
    "-o": _legacy_iface, "--out-interface": _legacy_iface,
    "-p": _legacy_proto, "--protocol": _legacy_proto,
    "--sport": _legacy_ports, "--source-port": _legacy_ports, "--sports": _legacy_ports,
    "--source-ports": _legacy_ports, "--dport": _legacy_ports,
    "--destination-port": _legacy_ports, "--dports": _legacy_ports,
    "--destination-ports": _legacy_ports,
    "--state": _legacy_states, "--ctstate": _legacy_states,
    "--tcp-flags": _legacy_tcp_flags, "--icmp-type": _legacy_icmp,
    "--icmpv6-type": _legacy_icmp,
}
LEGACY_FIELDS = {
    **{o: "saddr" for o in ("-s", "--source", "--src")},
    **{o: "daddr" for o in ("-d", "--destination", "--dst")},
    **{o: "iif" for o in ("-i", "--in-interface")},
    **{o: "oif" for o in ("-o", "--out-interface")},
    **{o: "l4proto" for o in ("-p", "--protocol")},
    **{o: "sport" for o in ("--sport", "--source-port", "--sports", "--source-ports")},
    **{o: "dport" for o in ("--dport", "--destination-port", "--dports",
                           "--destination-ports")},
    "--state": "ctstate", "--ctstate": "ctstate", "--tcp-flags": "tcpflags",
    "--icmp-type": "icmptype", "--icmpv6-type": "icmptype",
}
