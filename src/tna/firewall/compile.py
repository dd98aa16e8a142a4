"""Compile the forward hook's chains of one address family into a :class:`FwTables` classifier.

Role in the flow: ``firewall.ruleset`` (the model) → here → ``plan`` / ``datapath.loader``.

Flattening.  The filter-type base chains on the forward hook run in priority order; each is
flattened into one first-match list where a jump inlines the target chain under the jump rule's
match (per-field intersection) and evaluation then simply continues after the block; a
``return`` becomes a SKIP to the end of the block (in a base chain: the policy); a ``goto``
inlines too, but falling off its end (and any ``return`` in it) exits like a ``return`` of the
calling chain.  ``accept`` ends its base chain only: a SKIP to the next base chain (an ACCEPT in
the last one); ``drop`` and policies are final.  A rule the fast path cannot evaluate becomes a
PUNT rule matching the over-approximation made of its supported matches, and is listed in
``FwTables.unsupported``.

``ct state``: the data path fast-paths only packets of established conntrack entries (it punts
every other state), so a rule matches a fast-pathed packet iff its states include
``established``; the constraint is then dropped, or the rule left out.

Steps: the data path follows at most ``MAX_STEPS`` matched rules (SKIPs included) and punts a
packet that needs more.  Deep jump chains with many counter-only rules can reach that limit;
the result is then a punt (correct, only slower), so the compiler does not reject them.

Classes: per field, the distinct bit vectors over its value domain (bit *i*: rule *i* accepts
that value), computed from the rules' value spans with a sweep (ports, protocol, flags, ICMP
type), from the mentioned ifindexes (iif/oif) or as longest-prefix-match tables
(addresses: every prefix of every rule's set, carrying the rules whose sets contain it).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from tna.firewall import ruleset as rs
from tna.firewall.tables import (
    MAX_CLASSES,
    MAX_RULES,
    VERDICT_ACCEPT,
    VERDICT_DROP,
    VERDICT_PUNT,
    VERDICT_SKIP,
    FwRule,
    FwTables,
    RuleRef,
    Unsupported,
)
from tna.firewall.values import Values, span_prefixes
from tna.model import AF_INET, AF_INET6, NetfilterChain, NetfilterSet

MAX_DEPTH = 16  # nested jumps (the kernel's NFT_JUMP_STACK_SIZE)
NFT_FAMILIES = {AF_INET: ("ip", "inet"), AF_INET6: ("ip6", "inet")}
LEGACY_FAMILY = {AF_INET: "ip", AF_INET6: "ip6"}
FAMILY_NAME = {AF_INET: "ipv4", AF_INET6: "ipv6"}
ICMP_PROTOCOL = {AF_INET: 1, AF_INET6: 58}
SMALL_FIELDS = ("l4proto", "sport", "dport", "tcpflags", "icmptype")
MAX_IFACE_POINTS = 1 << 16


class FirewallError(Exception):
    """The family's forward hook cannot be compiled: it stays on Linux, for this reason."""


def compile_family(chains: Iterable[NetfilterChain], sets: Iterable[NetfilterSet], af: int,
                   ifindexes: Mapping[str, int]) -> FwTables:
    """The classifier of the forward hook for ``af`` (AF_INET or AF_INET6).

    ``chains``/``sets``: the namespace's whole netfilter ruleset (``Snapshot.netfilter``,
    ``Snapshot.netfilter_sets``); ``ifindexes``: its interfaces, name → ifindex (the result
    is valid only for those).  Raises :class:`FirewallError`.
    """
    chains = tuple(chains)
    model = rs.build(chains, sets, ifindexes)
    return compile_ruleset(model, af, stateful=bool(conntrack_users(chains, af)),
                           nat=bool(nat_chains(chains, af)))


def compile_ruleset(model: rs.Ruleset, af: int, stateful: bool = False,
                    nat: bool = False) -> FwTables:
    """The classifier of ``model``'s forward hook for ``af``; raises :class:`FirewallError`."""
    flat = _Flattener(model, af)
    flat.run(forward_chains(model, af))
    rules = _drop_noops(flat)
    tables = _classify(rules, af)
    return FwTables(
        rules=tuple(FwRule(r.verdict, r.target, r.counter) for r in rules),
        stateful=stateful, nat=nat, counters=tuple(flat.counters),
        unsupported=tuple(flat.unsupported.values()), **tables)


def forward_chains(model: rs.Ruleset, af: int) -> list[rs.Chain]:
    """The filter-type base chains on the forward hook that see ``af``, in priority order."""
    found = [c for c in model.chains if c.hook == "forward" and c.type in ("filter", None)
             and _sees(c, af)]
    found.sort(key=lambda c: c.priority or 0)
    for a, b in itertools.pairwise(found):
        if (a.priority or 0) == (b.priority or 0):
            raise FirewallError(
                f"{_name(a)} and {_name(b)} share priority {a.priority} on the forward hook: "
                "their order is not known")
    return found


def _sees(c: rs.Chain | NetfilterChain, af: int) -> bool:
    if c.source == "iptables-legacy":
        return c.family == LEGACY_FAMILY[af]
    return c.family in NFT_FAMILIES[af]


def _name(c: rs.Chain) -> str:
    return f"{c.source} {c.family} {c.table} {c.name}"


# --- conntrack -------------------------------------------------------------------------------

# nft JSON keys (statements and expressions) that need conntrack in the table's families
NFT_CT_KEYS = frozenset({"ct", "ct helper", "ct timeout", "ct expectation", "ct count",
                         "notrack", "flow", "snat", "dnat", "masquerade", "redirect",
                         "synproxy", "tproxy"})
# xtables extensions (iptables-nft "xt" expressions, iptables-legacy -m/-j) that do
CT_EXTENSIONS = frozenset({"state", "conntrack", "connmark", "CONNMARK", "connlimit",
                           "connbytes", "connlabel", "helper", "CT", "NOTRACK", "SNAT", "DNAT",
                           "MASQUERADE", "REDIRECT", "NETMAP", "cluster", "ipvs", "SYNPROXY",
                           "TPROXY", "socket", "CONNSECMARK", "HMARK"})


def conntrack_users(chains: Iterable[NetfilterChain], af: int) -> list[str]:
    """Why conntrack is active for ``af``: every rule or chain of the family that uses it."""
    out: list[str] = []
    for c in chains:
        if not _sees(c, af):
            continue
        where = f"{c.source} {c.family} {c.table} {c.name}"
        if c.type == "nat" or (c.source == "iptables-legacy" and c.table == "nat"):
            out.append(f"{where}: nat chain")
        if c.source == "iptables-legacy":
            out += [f"{where}: {line}" for line in c.rules if _legacy_uses_ct(line)]
        else:
            out += _nft_rules_with(c, _nft_ct_keys)
    return out


def conntrack_lookup_changers(chains: Iterable[NetfilterChain], af: int) -> list[str]:
    """The nft rules of the family that change which entry conntrack takes for a packet, or
    how long it lives: a conntrack zone (``ct zone set``), no tracking (``notrack``), a timeout
    policy (``ct timeout set``). The fast path looks entries up in zone 0 and refreshes them
    with the sysctls' timeouts, so with any of these it could take another entry than Linux,
    or keep one to another time. (iptables' ``CT`` and ``NOTRACK`` targets exist in the raw
    table only, whose chains keep forwarding on Linux anyway.)"""
    return [found for c in chains if _sees(c, af) and c.source != "iptables-legacy"
            for found in _nft_rules_with(c, _nft_lookup_changes)]


def _nft_rules_with(c: NetfilterChain, find: Callable[[Any], set[str]]) -> list[str]:
    """'<chain> handle N: <what>' for each nft rule of ``c`` in whose JSON ``find`` finds
    something."""
    out: list[str] = []
    for handle, text in zip(c.handles, c.exprs, strict=False):
        what = sorted(find(json.loads(text)))
        if what:
            out.append(f"{c.source} {c.family} {c.table} {c.name} handle {handle}: "
                       f"{', '.join(what)}")
    return out


def _nft_lookup_changes(node: Any) -> set[str]:
    found: set[str] = set()
    for key, value in _nft_items(node):
        if key in ("notrack", "ct timeout"):
            found.add(key)
        elif key == "mangle" and isinstance(value, dict) \
                and value.get("key") == {"ct": {"key": "zone"}}:
            found.add("ct zone set")
    return found


def nat_chains(chains: Iterable[NetfilterChain], af: int) -> list[NetfilterChain]:
    """The base chains of type nat that see ``af`` (nft, iptables-nft, iptables-legacy -t nat).

    Any one of them registers the family's nat hooks, and those apply every conntrack entry's
    NAT to the packets of its flow.  Their rules run for a connection's first packet only (the
    one that picks the mapping, always on Linux since the fast path takes established flows
    only), so what they say does not matter to the fast path: only that they exist.
    """
    return [c for c in chains if c.type == "nat" and c.hook is not None and _sees(c, af)]


def _nft_ct_keys(node: Any) -> set[str]:
    found: set[str] = set()
    for key, value in _nft_items(node):
        if key in NFT_CT_KEYS:
            found.add(key)
        if key == "xt" and isinstance(value, dict) and value.get("name") in CT_EXTENSIONS:
            found.add(f"xt {value['name']}")
    return found


def _nft_items(node: Any) -> Iterator[tuple[str, Any]]:
    """Every (key, value) of every object in an nft JSON tree, depth first."""
    if isinstance(node, list):
        for item in node:
            yield from _nft_items(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _nft_items(value)


def _legacy_uses_ct(line: str) -> bool:
    tokens = line.split()
    return any(opt in ("-m", "--match", "-j", "--jump") and arg in CT_EXTENSIONS
               for opt, arg in itertools.pairwise(tokens))


# --- flattening ------------------------------------------------------------------------------


class _Exit(NamedTuple):
    verdict: int
    label: int = -1  # VERDICT_SKIP: where evaluation continues


@dataclass
class _Flat:
    match: dict[str, Values]
    verdict: int
    label: int = -1  # VERDICT_SKIP: a label until resolved, then the target index
    counter: int = -1
    target: int = 0


class _Flattener:
    def __init__(self, model: rs.Ruleset, af: int) -> None:
        self.model, self.af = model, af
        self.rules: list[_Flat] = []
        self.labels: list[int] = []  # label -> rule index (-1 until placed)
        self.counters: list[RuleRef] = []
        self.counter_of: dict[RuleRef, int] = {}
        self.unsupported: dict[RuleRef, Unsupported] = {}
        self.full = _full_domains(af)

    def run(self, bases: Sequence[rs.Chain]) -> None:
        for k, chain in enumerate(bases):
            last = k == len(bases) - 1
            nxt = self.label()
            accept = _Exit(VERDICT_ACCEPT) if last else _Exit(VERDICT_SKIP, nxt)
            policy = _Exit(VERDICT_DROP) if chain.policy == "drop" else accept
            self.chain(chain, {}, policy, accept, (_key(chain),))
            if policy.verdict != VERDICT_SKIP:
                self.emit({}, policy)
            self.place(nxt)
        if not self.rules or self.rules[-1].match or self.rules[-1].verdict == VERDICT_SKIP:
            self.emit({}, _Exit(VERDICT_ACCEPT))

    def label(self) -> int:
        self.labels.append(-1)
        return len(self.labels) - 1

    def place(self, label: int) -> None:
        self.labels[label] = len(self.rules)

    def emit(self, match: dict[str, Values], exit_: _Exit, counter: int = -1) -> None:
        if len(self.rules) >= MAX_RULES:
            raise FirewallError(f"{FAMILY_NAME[self.af]} forward hook flattens to more than "
                                f"{MAX_RULES} rules")
        self.rules.append(_Flat(match, exit_.verdict, exit_.label, counter))

    def skip_next(self, match: dict[str, Values], counter: int) -> None:
        nxt = self.label()
        self.emit(match, _Exit(VERDICT_SKIP, nxt), counter)
        self.place(nxt)

    def counter(self, rule: rs.Rule) -> int:
        if rule.ref not in self.counter_of:
            self.counter_of[rule.ref] = len(self.counters)
            self.counters.append(rule.ref)
        return self.counter_of[rule.ref]

    def chain(self, chain: rs.Chain, ctx: dict[str, Values], ret: _Exit, accept: _Exit,
              stack: tuple[tuple[str, ...], ...]) -> None:
        for rule in chain.rules:
            if self.af not in rule.families:
                continue
            why, own = self.family_check(rule)
            match = self.conjunction(ctx, own)
            if match is None:
                continue
            if why:
                self.punt(rule, why, match)
            else:
                self.verdict(chain, rule, match, ret, accept, stack)

    def family_check(self, rule: rs.Rule) -> tuple[str, dict[str, Values]]:
        """What of ``rule`` this family cannot evaluate, and its constraints without it."""
        own, why = rule.constraints(), rule.unsupported
        if "icmptype" in own and own.get("l4proto", Values()) - Values.points(
                [ICMP_PROTOCOL[self.af]]):
            own.pop("icmptype")
            why = "; ".join(filter(None, [why, f"icmp type of another family in "
                                               f"{FAMILY_NAME[self.af]}"]))
        return why, own

    def conjunction(self, ctx: dict[str, Values],
                    own: dict[str, Values]) -> dict[str, Values] | None:
        """``ctx`` and ``own`` (None when no fast-pathed packet matches both)."""
        match = dict(ctx)
        for name, values in own.items():
            if name == "ctstate":
                if rs.CT_STATES["established"] not in values:
                    return None
                continue
            values = match[name] & values if name in match else values
            if not values:
                return None
            if values == self.full[name]:
                match.pop(name, None)
            else:
                match[name] = values
        return match

    def punt(self, rule: rs.Rule, why: str, match: dict[str, Values]) -> None:
        self.emit(match, _Exit(VERDICT_PUNT))
        traffic = f"{FAMILY_NAME[self.af]} {rule.traffic or 'all'}"
        self.unsupported.setdefault(rule.ref, Unsupported(rule.ref, why, traffic))

    def verdict(self, chain: rs.Chain, rule: rs.Rule, match: dict[str, Values], ret: _Exit,
                accept: _Exit, stack: tuple[tuple[str, ...], ...]) -> None:
        v = rule.verdict
        if v in ("accept", "drop"):
            exit_ = accept if v == "accept" else _Exit(VERDICT_DROP)
            self.emit(match, exit_, self.counter(rule))
        elif v == "return":
            self.emit(match, ret, self.counter(rule) if rule.counter else -1)
        elif v in ("jump", "goto"):
            if rule.counter:
                self.skip_next(match, self.counter(rule))
            self.inline(chain, rule, match, ret, accept, stack)
        elif rule.counter:
            self.skip_next(match, self.counter(rule))

    def inline(self, chain: rs.Chain, rule: rs.Rule, match: dict[str, Values], ret: _Exit,
               accept: _Exit, stack: tuple[tuple[str, ...], ...]) -> None:
        target = self.model.chain(chain.source, chain.family, chain.table, rule.target or "")
        if target is None or target.is_base:
            raise FirewallError(f"{rule.ref}: no regular chain {rule.target}")
        key = _key(target)
        if key in stack:
            raise FirewallError(f"{rule.ref}: jump loop through {target.name}")
        if len(stack) > MAX_DEPTH:
            raise FirewallError(f"{rule.ref}: jumps nested deeper than {MAX_DEPTH}")
        if rule.verdict == "jump":
            end = self.label()
            self.chain(target, match, _Exit(VERDICT_SKIP, end), accept, (*stack, key))
            self.place(end)
        else:  # goto: falling off the end returns from the calling chain
            self.chain(target, match, ret, accept, (*stack, key))
            self.emit(match, ret)


def _key(c: rs.Chain) -> tuple[str, ...]:
    return (c.source, c.family, c.table, c.name)


def _full_domains(af: int) -> dict[str, Values]:
    addr = Values.span(0, (1 << rs.ADDR_BITS[af]) - 1)
    return {**{f: Values.span(0, top) for f, top in rs.FIELD_TOP.items()},
            "saddr": addr, "daddr": addr}


def _drop_noops(flat: _Flattener) -> list[_Flat]:
    """Resolve labels and remove SKIPs to the next rule that count nothing."""
    rules = flat.rules
    for r in rules:
        if r.verdict == VERDICT_SKIP:
            r.target = flat.labels[r.label]
    keep = [not (r.verdict == VERDICT_SKIP and r.target == i + 1 and r.counter < 0)
            for i, r in enumerate(rules)]
    new_index, n = [], 0
    for k in [*keep, True]:
        new_index.append(n)
        n += k
    out = [r for r, k in zip(rules, keep, strict=True) if k]
    for r in out:
        if r.verdict == VERDICT_SKIP:
            r.target = new_index[r.target]
    return out


# --- classes ---------------------------------------------------------------------------------


class _Classes:
    def __init__(self) -> None:
        self.ids: dict[int, int] = {}

    def id(self, vector: int) -> int:
        cid = self.ids.setdefault(vector, len(self.ids))
        if cid >= MAX_CLASSES - 1:  # the data path keeps one class for "every rule"
            raise FirewallError(f"the forward hook needs more than {MAX_CLASSES - 1} classes")
        return cid


def _classify(rules: Sequence[_Flat], af: int) -> dict[str, Any]:
    every = (1 << len(rules)) - 1
    classes = _Classes()
    used = sorted({name for r in rules for name in r.match})
    out: dict[str, Any] = {"used": frozenset(used)}
    for name in used:
        constrained = [(i, r.match[name]) for i, r in enumerate(rules) if name in r.match]
        free = every
        for i, _ in constrained:
            free &= ~(1 << i)
        if name in SMALL_FIELDS:
            out[name] = _dense(constrained, free, rs.FIELD_TOP[name], classes)
        elif name in ("iif", "oif"):
            out[name], out[f"{name}_default"] = _ifaces(constrained, free, classes)
        else:
            out[name] = _prefixes(constrained, free, rs.ADDR_BITS[af], classes)
    out["classes"] = tuple(sorted(classes.ids, key=classes.ids.__getitem__))
    return out


def _dense(constrained: list[tuple[int, Values]], free: int, top: int,
           classes: _Classes) -> tuple[int, ...]:
    """Class per value 0..top, by sweeping the rules' span boundaries."""
    toggles: dict[int, int] = {0: 0, top + 1: 0}
    for i, values in constrained:
        for lo, hi in values.spans:
            toggles[lo] = toggles.get(lo, 0) ^ (1 << i)
            toggles[hi + 1] = toggles.get(hi + 1, 0) ^ (1 << i)
    table: list[int] = []
    vector = 0
    bounds = sorted(toggles)
    for lo, hi in itertools.pairwise(bounds):
        vector ^= toggles[lo]
        table.extend([classes.id(free | vector)] * (hi - lo))
    return tuple(table)


def _ifaces(constrained: list[tuple[int, Values]], free: int,
            classes: _Classes) -> tuple[dict[int, int], int]:
    """Class per mentioned ifindex, and the class of every other one."""
    points: set[int] = set()
    for _, values in constrained:
        finite = values if values.size() <= MAX_IFACE_POINTS else values.complement(
            rs.IFINDEX_TOP)
        if finite.size() > MAX_IFACE_POINTS:
            raise FirewallError("an interface match covers a range of ifindexes")
        points.update(finite)
    other = next(v for v in range(len(points) + 1) if v not in points)

    def vector(ifindex: int) -> int:
        bits = free
        for i, values in constrained:
            if ifindex in values:
                bits |= 1 << i
        return bits

    return {p: classes.id(vector(p)) for p in sorted(points)}, classes.id(vector(other))


def _prefixes(constrained: list[tuple[int, Values]], free: int, bits: int,
              classes: _Classes) -> tuple[tuple[int, int, int], ...]:
    """LPM entries: every prefix of every rule's set, with the rules whose set contains it."""
    owners: dict[tuple[int, int], int] = {(0, 0): free}
    for i, values in constrained:
        for lo, hi in values.spans:
            for prefix in span_prefixes(lo, hi, bits):
                owners[prefix] = owners.get(prefix, 0) | (1 << i)
    lengths = sorted({plen for _, plen in owners})
    out = []
    for net, plen in sorted(owners, key=lambda p: (p[1], p[0])):
        vector = 0
        for length in lengths:
            if length > plen:
                break
            mask = ((1 << length) - 1) << (bits - length)
            vector |= owners.get((net & mask, length), 0)
        out.append((net, plen, classes.id(vector)))
    return tuple(out)
