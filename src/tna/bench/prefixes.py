"""Routing tables for the scaling sweeps: random prefixes with a public-table-like length mix,
and a grid of destinations each inside a route of its own.

Role in the flow: pure data for ``tna.bench.scaling`` (the ``routes4``/``routes6`` sweeps) and
``scripts/route_scaling.py`` (the program-only sweep).  The traffic source varies one 32-bit
field by a fixed step (``frames.Variation``), so the destinations are a grid: ``base + i *
step``, spread over the whole range the routes come from; :meth:`Prefixes.grow` first adds, for
each grid destination, a route of a length drawn from the mix that contains it, then random
prefixes up to the size asked for.  Every frame therefore takes a different route (up to
:data:`MAX_DESTINATIONS` of them), as traffic to many networks would.  No root needed.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# prefix-length mix: IPv4 like the public BGP table (~60% /24), IPv6 mostly /48 and /32..44
MIX4 = ((24, 60), (23, 9), (22, 10), (21, 5), (20, 5), (19, 4), (18, 2), (17, 1), (16, 3),
        (15, 1))
MIX6 = ((48, 50), (44, 8), (40, 8), (36, 6), (32, 15), (29, 5), (47, 3), (46, 5))
MAX_DESTINATIONS = 4096  # distinct destinations (and so routes) the traffic walks through

# random IPv4 prefixes come from 11.0.0.0 .. 222.255.255.255 (not 10/8, not 127/8)
V4_LOW, V4_HIGH = 0x0B000000, 0xDF000000
V4_EXCLUDED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.0/8"))
# the IPv4 destination grid: 128.0.1.1 .. below 224.0.0.0 (no martians, not link-local)
V4_GRID_BASE, V4_GRID_SPAN = 0x80000101, 0x5FFF0000
V4_GRID_AVOID = (ipaddress.ip_network("169.254.0.0/16"),)
# IPv6: 2001:<32 random bits>:<16 random bits>::/48 and shorter; the grid varies bits 16..47
V6_TOP = 0x2001 << 112
V6_GRID_LOW = 1  # the destinations' interface identifier: ::1


@dataclass
class Prefixes:
    """A growing route set of one family (seeded: the same sizes give the same tables)."""

    family: int
    seed: int = 1
    nets: list[Network] = field(default_factory=list)
    seen: set[Network] = field(default_factory=set)
    covered: int = 0  # how many grid destinations have their route

    def __post_init__(self) -> None:
        if self.family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {self.family}")
        self.rng = random.Random(self.seed)

    # ---- the destination grid --------------------------------------------------------------

    @property
    def step(self) -> int:
        """The distance between grid destinations, in the generator's 32-bit field."""
        if self.family == 4:
            return V4_GRID_SPAN // MAX_DESTINATIONS
        return (1 << 32) // MAX_DESTINATIONS

    def first(self) -> str:
        """The first grid destination (the template's address)."""
        return str(self.destination(0))

    def destination(self, i: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        if self.family == 4:
            return ipaddress.IPv4Address(V4_GRID_BASE + i * self.step)
        return ipaddress.IPv6Address(V6_TOP | (i * self.step) << 80 | V6_GRID_LOW)

    @staticmethod
    def destinations(routes: int) -> int:
        """How many grid destinations the traffic walks through with ``routes`` routes."""
        return max(1, min(routes, MAX_DESTINATIONS))

    # ---- growing ---------------------------------------------------------------------------

    def plen(self) -> int:
        mix = MIX4 if self.family == 4 else MIX6
        r = self.rng.uniform(0, sum(w for _, w in mix))
        for p, w in mix:
            r -= w
            if r <= 0:
                return p
        return mix[0][0]

    def _random(self) -> Network:
        while True:
            p = self.plen()
            if self.family == 4:
                net: Network = ipaddress.ip_network((self.rng.randrange(V4_LOW, V4_HIGH), p),
                                                    strict=False)
                if any(net.overlaps(x) for x in V4_EXCLUDED):
                    continue
            else:
                net = ipaddress.ip_network((V6_TOP | self.rng.getrandbits(48) << 64, p),
                                           strict=False)
            if net not in self.seen:
                return net

    def _add(self, net: Network) -> None:
        self.seen.add(net)
        self.nets.append(net)

    def grow(self, total: int) -> list[Network]:
        """Add routes until there are ``total``: first one around each grid destination the
        traffic will use, then random ones; returns the new ones."""
        before = len(self.nets)
        want = self.destinations(total) if total else 0
        while self.covered < want:
            dst = self.destination(self.covered)
            if self.family == 4 and any(dst in x for x in V4_GRID_AVOID):
                raise ValueError(f"grid destination {dst} is in an avoided range")
            net = ipaddress.ip_network((int(dst), self.plen()), strict=False)
            if net not in self.seen:  # (a shorter random prefix may hold it already: fine)
                self._add(net)
            self.covered += 1
        while len(self.nets) < total:
            self._add(self._random())
        return self.nets[before:]

    def route_of(self, i: int) -> Network:
        """The most specific route holding grid destination ``i`` (tests)."""
        dst = self.destination(i)
        return max((n for n in self.nets if dst in n), key=lambda n: n.prefixlen)
