"""Randomised corpus: header fields drawn at random, reproducible from one seed.

Role in the equivalence suite: the fixed corpus holds the cases someone thought of; this one
holds the combinations nobody did (a TTL of 1 *and* a bad checksum *and* options, a total
length one byte short of a fragment's payload, ...).  Every field is drawn from a seeded
:class:`random.Random`, so a failure is replayed exactly with the seed the report prints.

Fields are drawn mostly around the values Linux treats specially (TTL 0-3, lengths at and
around the MTU, DF/MF, valid versus broken checksums), mostly from destinations and sources
the scenario knows (routes of every type), and only sometimes entirely at random.

What is never drawn, and why (each would make *plain Linux* differ between two runs, because
the outcome would depend on timing or on the order of unrelated frames; the fixed corpus
covers each case once, in a controlled way):

* destinations on the sender's own link, link-local ones included (ICMP redirects are
  rate-limited per source with a time-based back-off: which frame earns one depends on
  timing);
* destinations behind an unresolvable next hop or in a connected subnet without a permanent
  neighbour entry (its network address, say), and sources on the sender's link other than
  addresses with permanent neighbour entries (address resolution is shared, timed state);
* neighbour discovery messages (types 133-137: they create neighbour entries that later
  frames would use or not, depending on their processing order).

IPv4 IDs and IPv6 fragment identifications are unique per frame, so fragments of different
frames never meet in one reassembly queue.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from testing.equivalence.corpus import CorpusFrame, Side, ipv4_csum, tag

T = TypeVar("T")
ETH_P_IP, ETH_P_IPV6, ETH_P_ARP, ETH_P_8021Q = 0x0800, 0x86DD, 0x0806, 0x8100
# ip_error() (ICMP for unreachable/prohibit/unrouted destinations) lets 5 through per source
# address and then one a second, a limit a namespace cannot lift: so at most this many frames
# per source go where that ICMP could be sent; the sixth would be timing-dependent.
RANDOM_ERRORS_PER_SOURCE = 4
ROUTED_V4 = ipaddress.IPv4Network("10.0.0.0/8")
ERROR_KEYS_V4 = ("unreachable4", "prohibit4", "throw4", "noroute4")
TTLS = ((0, 8), (1, 10), (2, 6), (3, 3), (64, 55), (128, 5), (255, 13))
ND_TYPES = range(133, 138)


def _pick(rng: random.Random, weighted: Sequence[tuple[T, int]]) -> T:
    values = [v for v, _ in weighted]
    weights = [w for _, w in weighted]
    return rng.choices(values, weights)[0]


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _csum(data: bytes) -> int:
    return ipv4_csum(data + b"\0" * (len(data) % 2))


class Generator:
    """Random frames from one sender, drawn in order: frame ``i`` depends on (seed, side, i)
    and on how many earlier frames used up their source's ip_error() budget."""

    def __init__(self, seed: int, side: Side, avoid: Sequence[str],
                 errors: dict[str, int] | None = None) -> None:
        self.seed, self.side = seed, side
        self.avoid = tuple(ipaddress.ip_network(n) for n in avoid)
        base = random.Random(f"{seed}:{side.host}")
        self.id_base = base.randrange(1 << 16)
        self.frag_base = base.randrange(1 << 32)
        # IPv4 source -> frames that may meet ip_error(); shared by the generators of one
        # corpus, since Linux keeps the count per source address, whoever sent the frame
        self.errors = errors if errors is not None else {}

    # ---- addresses -----------------------------------------------------------------------

    def _dst(self, rng: random.Random, family: int) -> str:
        d = self.side.dst
        keys4 = (("peer4", 25), ("far4", 10), ("gwroute4", 5), ("router4", 6),
                 ("router_other4", 4), ("bcast4", 2), ("bcast_other4", 2),
                 ("blackhole4", 2), ("unreachable4", 2), ("prohibit4", 2), ("throw4", 2),
                 ("noroute4", 2), ("routemtu4", 2), ("routemtulock4", 2),
                 ("limited_bcast4", 2), ("all_hosts4", 1), ("pmtu_dst4", 1))
        keys6 = (("peer6", 25), ("far6", 10), ("gwroute6", 5), ("router6", 6),
                 ("router_other6", 4), ("anycast6", 2), ("blackhole6", 2),
                 ("unreachable6", 2), ("prohibit6", 2), ("throw6", 2), ("noroute6", 2),
                 ("routemtu6", 2), ("routemtulock6", 2), ("mtu6_peer6", 2))
        fixed4 = (("239.1.2.3", 1), ("127.0.0.1", 1), ("0.0.0.1", 1))
        fixed6 = (("ff02::1", 2), ("ff05::1:3", 1), ("::1", 1))
        keys = keys4 if family == 4 else keys6
        kind, value = _pick(rng, [(("key", k), w) for k, w in keys if k in d]
                            + [(("addr", a), w) for a, w in (fixed4 if family == 4 else fixed6)]
                            + [(("random", ""), 8)])
        if kind == "key":
            return d[value]
        if kind == "addr":
            return value
        return self._random_addr(rng, family)

    def _random_addr(self, rng: random.Random, family: int) -> str:
        """Somewhere in the lab's space (rarely anywhere), outside the ``avoid`` networks."""
        while True:
            addr: ipaddress.IPv4Address | ipaddress.IPv6Address
            if family == 4:
                addr = ipaddress.IPv4Address(rng.choice(
                    [0x0A000000 | rng.randrange(1 << 24), rng.randrange(1 << 32)]))
            else:
                addr = ipaddress.IPv6Address(rng.choice(
                    [(0xFD00 << 112) | (rng.randrange(256) << 96) | rng.randrange(1 << 16),
                     rng.randrange(1 << 128)]))
            if not any(addr in net for net in self.avoid if net.version == addr.version):
                return str(addr)

    def _src(self, rng: random.Random, family: int) -> str:
        d = self.side.dst
        pool: tuple[tuple[str | None, int], ...]
        if family == 4:
            pool = ((self.side.v4, 78), (d.get("spoof_other4"), 5), (d.get("spoof_unrouted4"), 4),
                    (d.get("router4"), 2), (d.get("router_other4"), 2), (d.get("bcast4"), 1),
                    (d.get("bcast_other4"), 1), ("0.0.0.0", 1), ("127.0.0.1", 1),
                    ("224.0.0.9", 1), ("240.0.0.1", 1), ("255.255.255.255", 1),
                    (d.get("blackhole4"), 1))
        else:
            pool = ((self.side.v6, 80), (d.get("spoof_other6"), 5), ("2001:db8::7", 3),
                    (d.get("router6"), 2), (d.get("router_other6"), 2), ("::1", 1), ("::", 2),
                    ("ff02::1", 1), ("fe80::2", 2), ("::ffff:10.1.0.2", 1),
                    (d.get("blackhole6"), 1))
        return str(_pick(rng, [(a, w) for a, w in pool if a]))

    # ---- payloads --------------------------------------------------------------------------

    def _size(self, rng: random.Random, room: int) -> int:
        """Payload length: mostly small, sometimes around the MTUs that matter."""
        kind = _pick(rng, (("small", 70), ("medium", 15), ("mtu", 15)))
        if kind == "small":
            n = rng.randrange(0, 65)
        elif kind == "medium":
            n = rng.randrange(64, 600)
        else:
            edge = rng.choice((self.side.peer_mtu, 1280, 1300, 1400, 1500))
            n = edge - 48 + rng.randrange(-8, 9)
        return max(0, min(n, room))

    def _body(self, rng: random.Random, name: str, size: int) -> bytes:
        t = tag(name)
        filler = bytes(rng.randrange(256) for _ in range(min(size, 64)))
        body = (t + filler * (size // max(1, len(filler)) + 1))[:size]
        return body if size >= len(t) else bytes(rng.randrange(256) for _ in range(size))

    def _l4(self, rng: random.Random, proto: int, name: str, room: int,
            pseudo: Callable[[int], bytes]) -> bytes:
        """A TCP/UDP/ICMP header and payload, checksum mostly valid; else opaque bytes."""
        size = self._size(rng, max(0, room - 20))
        data = self._body(rng, name, size)
        if proto == 17:
            dport = rng.choice((7000, 9, 10, 7100, 53, 80, rng.randrange(65536)))
            length = 8 + len(data) if rng.random() < 0.9 else rng.randrange(65536)
            hdr = struct.pack("!HHHH", rng.randrange(1024, 65536), dport, length, 0)
            return self._with_l4_csum(rng, hdr + data, 6, pseudo, zero_ok=True)
        if proto == 6:
            off = 5 if rng.random() < 0.9 else rng.randrange(16)
            hdr = struct.pack("!HHIIBBHHH", rng.randrange(1024, 65536),
                              rng.choice((80, 7100, rng.randrange(65536))),
                              rng.randrange(1 << 32), rng.randrange(1 << 32), off << 4,
                              rng.choice((0x02, 0x10, 0x18, 0x12, 0x04, rng.randrange(256))),
                              rng.randrange(65536), 0, 0)
            return self._with_l4_csum(rng, hdr + data, 16, pseudo)
        if proto in (1, 58):
            types = (0, 3, 4, 5, 8, 11, 12, 13, 14) if proto == 1 else (1, 2, 3, 4, 128, 129)
            t = rng.choice(types) if rng.random() < 0.85 else rng.randrange(256)
            if proto == 58 and t in ND_TYPES:
                t = 128
            hdr = struct.pack("!BBHI", t, rng.randrange(4) if rng.random() < 0.8 else
                              rng.randrange(256), 0, rng.randrange(1 << 32))
            return self._with_l4_csum(rng, hdr + data, 2,
                                      pseudo if proto == 58 else (lambda n: b""))
        return data

    def _with_l4_csum(self, rng: random.Random, seg: bytes, at: int,
                      pseudo: Callable[[int], bytes], zero_ok: bool = False) -> bytes:
        roll = rng.random()
        if roll < 0.85:
            value = _csum(pseudo(len(seg)) + seg)
        elif zero_ok and roll < 0.9:
            value = 0  # UDP over IPv4: "no checksum"
        else:
            value = rng.randrange(65536)
        return seg[:at] + struct.pack("!H", value) + seg[at + 2:]

    # ---- IPv4 --------------------------------------------------------------------------------

    def _options(self, rng: random.Random) -> bytes:
        kind = rng.choice(("nop", "rr", "ts", "ra", "lsrr", "random"))
        raw = {"nop": b"\x01\x01\x01\x00", "rr": b"\x07\x07\x04" + b"\0" * 4,
               "ts": b"\x44\x0c\x05\x00" + b"\0" * 8, "ra": b"\x94\x04\x00\x00",
               "lsrr": b"\x83\x07\x04\x0a\x09\x09\x09"}.get(kind)
        if raw is None:
            raw = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
        return (raw + b"\0" * (-len(raw) % 4))[:40]

    def _may_meet_ip_error(self, dst: str) -> bool:
        d = self.side.dst
        return dst in {d.get(k) for k in ERROR_KEYS_V4} or (
            ipaddress.IPv4Address(dst) not in ROUTED_V4)

    def _ipv4_dst(self, rng: random.Random, src: str) -> str:
        dst = self._dst(rng, 4)
        if self._may_meet_ip_error(dst):
            if self.errors.get(src, 0) >= RANDOM_ERRORS_PER_SOURCE:
                return self.side.dst["peer4"]
            self.errors[src] = self.errors.get(src, 0) + 1
        return dst

    def _ipv4(self, rng: random.Random, i: int, name: str) -> bytes:
        src = self._src(rng, 4)
        dst = self._ipv4_dst(rng, src)
        opts = self._options(rng) if rng.random() < 0.1 else b""
        ihl = 5 + len(opts) // 4
        if rng.random() < 0.04:
            ihl = rng.randrange(5)
        proto = _pick(rng, ((17, 38), (6, 25), (1, 20), (rng.randrange(256), 17)))
        flags = _pick(rng, ((0, 45), (2, 40), (1, 7), (4, 3), (3, 2), (rng.randrange(8), 3)))
        frag = 0 if rng.random() < 0.88 else rng.choice((1, 2, 185, rng.randrange(8192)))
        ttl = _pick(rng, TTLS) if rng.random() < 0.95 else rng.randrange(256)
        s4, d4 = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed

        def pseudo(n: int) -> bytes:
            return s4 + d4 + struct.pack("!BBH", 0, proto, n)

        room = self.side.max_frame - 14 - 20 - len(opts)
        l4 = self._l4(rng, proto, name, room, pseudo) if frag == 0 else self._body(
            rng, name, self._size(rng, room))
        total = 20 + len(opts) + len(l4)
        roll = rng.random()
        if roll < 0.05:
            total += rng.randrange(-8, 9)
        elif roll < 0.09:
            total = rng.randrange(65536)
        elif roll < 0.12:
            total = rng.randrange(ihl * 4 + 1)
        version = 4 if rng.random() < 0.96 else rng.randrange(16)
        tos = 0 if rng.random() < 0.6 else rng.randrange(256)
        ident = (self.id_base + i) & 0xFFFF
        hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, total & 0xFFFF, ident,
                          (flags << 13) | frag, ttl, proto, 0, s4, d4) + opts
        check = _csum(hdr) if rng.random() < 0.9 else rng.randrange(65536)
        hdr = hdr[:10] + struct.pack("!H", check) + hdr[12:]
        return hdr + l4

    # ---- IPv6 ----------------------------------------------------------------------------------

    def _ext(self, rng: random.Random, i: int, nh: int) -> tuple[int, bytes]:
        """One extension header before ``nh``; returns (its type, its bytes)."""
        kind = rng.choice((0, 60, 43, 44, 44))
        if kind in (0, 60):  # hop-by-hop / destination options
            opt = rng.choice((b"\x01\x04\0\0\0\0", b"\x05\x02\0\0\x01\x00",
                              bytes([rng.randrange(256), 4]) + b"\0" * 4))
            return kind, bytes([nh, 0]) + opt
        if kind == 43:
            rtype, left = rng.choice((0, 2, 3, 4, rng.randrange(256))), rng.randrange(3)
            return 43, bytes([nh, 2, rtype, left]) + b"\0" * 4 + bytes(16)
        offset = 0 if rng.random() < 0.5 else rng.randrange(1, 8192)
        more = rng.randrange(2)
        ident = (self.frag_base + i) & 0xFFFFFFFF
        return 44, struct.pack("!BBHI", nh, 0, (offset << 3) | more, ident)

    def _ipv6(self, rng: random.Random, i: int, name: str) -> bytes:
        src, dst = self._src(rng, 6), self._dst(rng, 6)
        s6, d6 = ipaddress.IPv6Address(src).packed, ipaddress.IPv6Address(dst).packed
        proto = _pick(rng, ((17, 35), (6, 20), (58, 20), (59, 2), (50, 1), (51, 1),
                            (rng.randrange(256), 5), (-1, 16)))
        ext = b""
        if proto == -1:
            proto = _pick(rng, ((17, 50), (58, 30), (6, 20)))
            first, ext = self._ext(rng, i, proto)
        else:
            first = proto

        def pseudo(n: int) -> bytes:
            return s6 + d6 + struct.pack("!IxxxB", n, proto)

        room = self.side.max_frame - 14 - 40 - len(ext)
        body = ext + self._l4(rng, proto, name, room, pseudo)
        plen = len(body) if rng.random() < 0.9 else rng.choice(
            (len(body) + rng.randrange(-8, 9), rng.randrange(65536)))
        version = 6 if rng.random() < 0.97 else rng.randrange(16)
        tc = 0 if rng.random() < 0.7 else rng.randrange(256)
        fl = 0 if rng.random() < 0.7 else rng.randrange(1 << 20)
        hlim = _pick(rng, TTLS) if rng.random() < 0.95 else rng.randrange(256)
        first_word = (version << 28) | (tc << 20) | fl
        return struct.pack("!IHBB", first_word, plen & 0xFFFF, first, hlim) + s6 + d6 + body

    # ---- frames --------------------------------------------------------------------------------

    def _arp(self, rng: random.Random) -> bytes:
        d = self.side.dst
        target = str(_pick(rng, [(d.get(k), 3) for k in ("router4", "router_other4", "peer4")
                                 if d.get(k)] + [("192.0.2.99", 1)]))
        sender = self.side.v4 if rng.random() < 0.8 else "192.0.2.98"
        op = rng.choice((1, 1, 2, rng.randrange(65536)))
        return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, _mac(self.side.mac),
                           ipaddress.IPv4Address(sender).packed, b"\0" * 6,
                           ipaddress.IPv4Address(target).packed)

    def frame(self, i: int) -> CorpusFrame:
        rng = random.Random(f"{self.seed}:{self.side.host}:{i}")
        name = f"{self.side.host}:rand{i}"
        s = self.side
        dst_mac = str(_pick(rng, ((s.router_mac, 88), ("ff:ff:ff:ff:ff:ff", 4),
                                  (s.neighbour_mac, 3), ("01:00:5e:00:00:01", 2),
                                  (s.dst.get("router_other_mac", s.router_mac), 1),
                                  ("02:00:00:00:99:99", 2))))
        kind = _pick(rng, (("v4", 48), ("v6", 40), ("arp", 4), ("vlan", 2), ("other", 4),
                           ("mismatch", 2)))
        if kind == "v4":
            etype, body = ETH_P_IP, self._ipv4(rng, i, name)
        elif kind == "v6":
            etype, body = ETH_P_IPV6, self._ipv6(rng, i, name)
        elif kind == "arp":
            etype, body = ETH_P_ARP, self._arp(rng)
        elif kind == "vlan":
            etype = ETH_P_8021Q
            body = struct.pack("!HH", rng.randrange(4096), ETH_P_IP) + self._ipv4(rng, i, name)
        elif kind == "mismatch":  # the other family's header under the ethertype
            etype, body = ETH_P_IPV6, self._ipv4(rng, i, name)
        else:
            etype = rng.randrange(0x600, 0x10000)
            body = tag(name) + bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        frame = _mac(dst_mac) + _mac(s.mac) + struct.pack("!H", etype) + body
        limit = s.max_frame + (4 if etype == ETH_P_8021Q else 0)
        frame = frame[:limit]
        if rng.random() < 0.04:
            frame = frame[:rng.randrange(14, len(frame) + 1)]
        elif rng.random() < 0.05:
            frame = (frame + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 41))))[
                :limit]
        return CorpusFrame(name, s.host, frame)


def corpus(seed: int, senders: Sequence[tuple[Side, int]], avoid: Sequence[str]
           ) -> list[CorpusFrame]:
    """``count`` frames per (side, count), sender after sender.

    ``avoid``: networks no random address may fall in (connected subnets, whose unknown
    hosts would need address resolution, and routes to unresolvable next hops).
    """
    out: list[CorpusFrame] = []
    errors: dict[str, int] = {}
    for side, count in senders:
        gen = Generator(seed, side, avoid, errors)
        out.extend(gen.frame(i) for i in range(count))
    return out
