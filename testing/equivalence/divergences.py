"""Known divergences: classes of frames where TNA on does not do what Linux does.

Each one is a real bug of the data path, found by this suite, reproduced by
``tests/equivalence/test_divergences.py`` (strict xfail: the day the data path is fixed, that
test fails with XPASS and the entry must be deleted here).  Until then its frames are kept out
of the other tests of the scenarios it affects, so those tests keep guarding everything else.
No other module of the harness reads this list: only the tests do.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from testing.equivalence.corpus import CorpusFrame

ETH_P_IP, ETH_P_IPV6 = b"\x08\x00", b"\x86\xdd"


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(ethertype: bytes, header_end: int, at: int,
             kind: type[Address]) -> Callable[[bytes], Address | None]:
    """Reads the address at ``at`` of frames of ``ethertype`` whose IP addresses are all there
    (``header_end``); None for any other frame."""
    size = 4 if kind is ipaddress.IPv4Address else 16

    def read(frame: bytes) -> Address | None:
        if len(frame) < header_end or frame[12:14] != ethertype:
            return None
        return kind(frame[at:at + size])
    return read


_v4_src = _address(ETH_P_IP, 34, 26, ipaddress.IPv4Address)
_v4_dst = _address(ETH_P_IP, 34, 30, ipaddress.IPv4Address)
_v6_dst = _address(ETH_P_IPV6, 54, 38, ipaddress.IPv6Address)


def _address_in(address: Callable[[bytes], Address | None],
                nets: Sequence[str]) -> Callable[[bytes], bool]:
    """A matcher: the frame's address (as ``address`` reads it) lies in one of ``nets``."""
    networks = [ipaddress.ip_network(n) for n in nets]

    def match(frame: bytes) -> bool:
        a = address(frame)
        return a is not None and any(a in n for n in networks)
    return match


def v4_src_in(*nets: str) -> Callable[[bytes], bool]:
    return _address_in(_v4_src, nets)


def v4_dst_in(*nets: str) -> Callable[[bytes], bool]:
    return _address_in(_v4_dst, nets)


def v6_dst_in(*nets: str) -> Callable[[bytes], bool]:
    return _address_in(_v6_dst, nets)


@dataclass(frozen=True)
class Divergence:
    id: str
    reason: str  # starts with "DIVERGENCE:"; pytest shows it for the xfail
    scenario: str  # the minimal reproduction runs here
    frames: tuple[str, ...]  # corpus frames of the reproduction, in order
    affects: frozenset[str]  # scenarios whose other tests must leave this class out
    matches: Callable[[bytes], bool]  # the class, on the frame as sent


ROUTER_ADDRESSES = ("10.1.0.1/32", "10.2.0.1/32", "10.3.0.1/32")
# The router scenarios whose plan accelerates forwarding (router_nft_forward's does not).
FAST_ROUTERS = frozenset({"router", "router_rp_strict", "router_rp_loose",
                          "router_accept_redirects", "router_jumbo", "router_policy",
                          "router_nft_input"})

KNOWN: tuple[Divergence, ...] = (
)


# Scenarios TNA cannot even be applied to: the whole scenario test is a strict xfail.
APPLY_FAILS: dict[str, str] = {}


def applicable(scenario: str) -> list[Divergence]:
    return [d for d in KNOWN if scenario in d.affects]


def without_known(scenario: str, frames: Sequence[CorpusFrame]) -> list[CorpusFrame]:
    """The frames of ``scenario`` outside every known divergence class."""
    known = applicable(scenario)
    return [f for f in frames if not any(d.matches(f.data) for d in known)]
