"""The readable diff of a failed comparison.

Role in the equivalence suite: turns :class:`~testing.equivalence.harness.Comparison` into text a
person can act on: per receiving interface, which frames only one run received (or received
more often), which corpus frame caused each (by its tag, also found inside ICMP errors), a
one-line decode, the fields that differ when both runs produced a frame for the same cause,
and the fast-path counters of the TNA run.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from scapy.layers.l2 import Ether
from scapy.packet import NoPayload, Packet

from testing.equivalence.corpus import CorpusFrame

# The harness imports this module, so this one does not import the harness: a comparison and
# its differences (testing.equivalence.harness.Comparison, .Difference) arrive duck-typed, and the
# harness hands over how to attribute a frame to the corpus frames that caused it.
Comparison = Any
Difference = Any
Origins = Callable[[bytes, Sequence[CorpusFrame]], list[str]]

MAX_LISTED = 40  # differences shown in full; the rest are counted


def summary(data: bytes) -> str:
    try:
        return str(Ether(data).summary())
    except Exception:  # scapy may choke on a malformed frame; the hex still says it all
        return "(undecodable)"


def _fields(pkt: Packet) -> list[tuple[str, str]]:
    out = []
    layer: Packet = pkt
    while not isinstance(layer, NoPayload):
        for f in layer.fields_desc:
            value = layer.getfieldval(f.name)
            out.append((f"{layer.name}.{f.name}", f.i2repr(layer, value)))
        layer = layer.payload
    return out


def _clip(a: str, b: str, width: int = 48) -> str:
    """``a -> b``, or for long values the window around their first difference."""
    if len(a) <= width and len(b) <= width:
        return f"{a} -> {b}"
    i = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
             min(len(a), len(b)))
    lo = max(0, i - 8)
    return (f"...{a[lo:lo + width]}... -> ...{b[lo:lo + width]}... "
            f"(first difference at character {i}, lengths {len(a)}/{len(b)})")


def field_diff(a: bytes, b: bytes) -> list[str]:
    """``layer.field: a -> b`` for every decoded field that differs."""
    try:
        fa, fb = _fields(Ether(a)), _fields(Ether(b))
    except Exception:
        return []
    out = [f"{na}: {_clip(va, vb)}" for (na, va), (nb, vb) in zip(fa, fb, strict=False)
           if na == nb and va != vb]
    if [n for n, _ in fa] != [n for n, _ in fb]:
        out.append("different layers")
    if len(a) != len(b):
        out.append(f"length: {len(a)} -> {len(b)}")
    return out


def _hex(data: bytes, limit: int = 64) -> str:
    text = data[:limit].hex(" ")
    return text + (f" ... ({len(data)} bytes)" if len(data) > limit else f" ({len(data)} bytes)")


def _describe(d: Difference, label_a: str, label_b: str, causes: list[str]) -> list[str]:
    who = ", ".join(causes) if causes else "no corpus tag"
    return [f"  {d.count_a}x with {label_a}, {d.count_b}x with {label_b}  [{who}]",
            f"      {summary(d.data)}",
            f"      {_hex(d.data)}"]


def format_report(cmp: Comparison, origins: Origins) -> str:
    a, b = cmp.a.mode.label, cmp.b.mode.label
    lines = [f"EQUIVALENCE FAILED: scenario {cmp.scenario!r}: {len(cmp.differences)} "
             f"frame difference(s) between {a} and {b}"]
    if cmp.seed is not None:
        lines.append(f"  random seed {cmp.seed} (rerun: TNA_EQ_SEED={cmp.seed})")
    by_iface: dict[tuple[str, str], list[Difference]] = defaultdict(list)
    for d in cmp.differences:
        by_iface[(d.host, d.ifname)].append(d)
    shown = 0
    for (host, ifname), diffs in sorted(by_iface.items()):
        lines.append(f"{host}/{ifname}:")
        only_a: dict[str, bytes] = {}
        only_b: dict[str, bytes] = {}
        attributed = sorted(((origins(d.data, cmp.corpus), d) for d in diffs),
                            key=lambda cd: (cd[0] or ["~"], cd[1].count_b))
        for causes, d in attributed:
            if shown < MAX_LISTED:
                lines += _describe(d, a, b, causes)
            shown += 1
            for c in causes:
                (only_a if d.count_a > d.count_b else only_b).setdefault(c, d.data)
        for cause in sorted(only_a.keys() & only_b.keys()):
            changes = field_diff(only_a[cause], only_b[cause])
            lines.append(f"  {cause}: {a} -> {b}: " + ("; ".join(changes) or "bytes differ"))
    if shown > MAX_LISTED:
        lines.append(f"  ... {shown - MAX_LISTED} more")
    if cmp.refused_differently:
        lines.append("frames the sender's interface refused to send (ENOBUFS: dropped by "
                     "the veth peer):")
        for name in sorted(cmp.a.refused.keys() | cmp.b.refused.keys()):
            if cmp.a.refused.get(name) != cmp.b.refused.get(name):
                lines.append(f"  {name}: {a}: {cmp.a.refused.get(name, 'sent')}, "
                             f"{b}: {cmp.b.refused.get(name, 'sent')}")
    for r in (cmp.a, cmp.b):
        if r.mode.tna:
            moved = {k: v for k, v in sorted(r.counters.items()) if v}
            lines.append(f"fast-path counters ({r.mode.label}): {moved}")
    lines.append(f"frames received: {len(cmp.a.frames)} with {a}, {len(cmp.b.frames)} with {b}; "
                 f"corpus: {len(cmp.corpus)} frames")
    return "\n".join(lines)
