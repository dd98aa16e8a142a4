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


def _v4(frame: bytes) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address] | None:
    if len(frame) < 34 or frame[12:14] != ETH_P_IP:
        return None
    return ipaddress.IPv4Address(frame[26:30]), ipaddress.IPv4Address(frame[30:34])


def _v6_dst(frame: bytes) -> ipaddress.IPv6Address | None:
    if len(frame) < 54 or frame[12:14] != ETH_P_IPV6:
        return None
    return ipaddress.IPv6Address(frame[38:54])


def v4_src_in(*nets: str) -> Callable[[bytes], bool]:
    networks = [ipaddress.IPv4Network(n) for n in nets]

    def match(frame: bytes) -> bool:
        a = _v4(frame)
        return a is not None and any(a[0] in n for n in networks)
    return match


def v4_dst_in(*nets: str) -> Callable[[bytes], bool]:
    networks = [ipaddress.IPv4Network(n) for n in nets]

    def match(frame: bytes) -> bool:
        a = _v4(frame)
        return a is not None and any(a[1] in n for n in networks)
    return match


def v6_dst_in(*nets: str) -> Callable[[bytes], bool]:
    networks = [ipaddress.IPv6Network(n) for n in nets]

    def match(frame: bytes) -> bool:
        a = _v6_dst(frame)
        return a is not None and any(a in n for n in networks)
    return match


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
