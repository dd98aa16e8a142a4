"""Sets of integers as sorted inclusive spans: the value sets firewall rules match on.

Role in the flow: the arithmetic under ``firewall.ruleset`` (a rule's constraint on a field)
and ``firewall.compile`` (intersections along jumps, classes).  Addresses, ports, interface
indexes and protocol numbers are all plain integers here, so one representation serves every
field without enumerating large domains.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Values:
    """A set of non-negative integers: sorted, disjoint, non-adjacent inclusive spans."""

    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, spans: Iterable[tuple[int, int]]) -> Values:
        merged: list[tuple[int, int]] = []
        for lo, hi in sorted(s for s in spans if s[0] <= s[1]):
            if merged and lo <= merged[-1][1] + 1:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return cls(tuple(merged))

    @classmethod
    def points(cls, values: Iterable[int]) -> Values:
        return cls.of((v, v) for v in values)

    @classmethod
    def span(cls, lo: int, hi: int) -> Values:
        return cls(((lo, hi),)) if lo <= hi else cls()

    def __bool__(self) -> bool:
        return bool(self.spans)

    def __iter__(self) -> Iterator[int]:
        """Every value; only for small sets."""
        for lo, hi in self.spans:
            yield from range(lo, hi + 1)

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and any(lo <= value <= hi for lo, hi in self.spans)

    def __or__(self, other: Values) -> Values:
        return Values.of(self.spans + other.spans)

    def __and__(self, other: Values) -> Values:
        out: list[tuple[int, int]] = []
        a, b, i, j = self.spans, other.spans, 0, 0
        while i < len(a) and j < len(b):
            lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
            if lo <= hi:
                out.append((lo, hi))
            if a[i][1] < b[j][1]:
                i += 1
            else:
                j += 1
        return Values(tuple(out))

    def __sub__(self, other: Values) -> Values:
        return self & other.complement(self.spans[-1][1]) if self.spans else self

    def complement(self, top: int) -> Values:
        """Every value of 0..top not in this set."""
        out, nxt = [], 0
        for lo, hi in self.spans:
            if lo > nxt:
                out.append((nxt, min(lo - 1, top)))
            nxt = hi + 1
        if nxt <= top:
            out.append((nxt, top))
        return Values.of(out)

    def covers(self, lo: int, hi: int) -> bool:
        return any(a <= lo and hi <= b for a, b in self.spans)

    def size(self) -> int:
        return sum(hi - lo + 1 for lo, hi in self.spans)


def prefix_span(network: int, prefixlen: int, bits: int) -> tuple[int, int]:
    """The addresses of ``network/prefixlen`` in a ``bits``-bit address space."""
    host = (1 << (bits - prefixlen)) - 1
    lo = network & ~host & ((1 << bits) - 1)
    return lo, lo | host


def span_prefixes(lo: int, hi: int, bits: int) -> Iterator[tuple[int, int]]:
    """The fewest prefixes (network, prefixlen) that cover exactly ``lo..hi``."""
    while lo <= hi:
        size = (lo & -lo).bit_length() - 1 if lo else bits  # alignment of lo
        while size > 0 and lo + (1 << size) - 1 > hi:
            size -= 1
        yield lo, bits - size
        lo += 1 << size
