"""Known divergences: classes of frames where TNA on does not do what Linux does.

Each one is a real bug of the data path, found by this suite, reproduced by
``test_divergences.py`` (strict xfail: the day the data path is fixed, that test fails with
XPASS and the entry must be deleted here).  Until then its frames are kept out of the other
tests of the scenarios it affects, so those tests keep guarding everything else.  Nothing in
the harness knows about this list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tna.equivalence.corpus import CorpusFrame

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
    Divergence(
        "v4_source_is_router_address",
        "DIVERGENCE: an IPv4 packet whose source is one of the router's own addresses is "
        "forwarded by the fast path; Linux drops it as a martian source "
        "(fib_validate_source(): inet_lookup_ifaddr_rcu() finds the source local, "
        "rp_filter off).  Repro: router scenario, h1 sends UDP 10.2.0.1 -> 10.2.0.2 "
        "(TTL 64, to r1's MAC): Linux: nothing; TNA: delivered to h2.",
        "router", ("h1:v4_src_router", "h1:v4_src_router_own_link"),
        FAST_ROUTERS - {"router_rp_strict", "router_rp_loose"},  # rp_filter: punted there
        v4_src_in(*ROUTER_ADDRESSES)),
    Divergence(
        "v4_source_broadcast_with_custom_rules",
        "DIVERGENCE: with policy rules or custom local routes present, Linux validates every "
        "forwarded IPv4 source against the FIB (fib_validate_source() -> full check: the "
        "source must resolve to a unicast route) and drops a packet from a subnet broadcast "
        "address; the fast path forwards it.  Repro: router_policy scenario, h1 sends UDP "
        "10.2.0.255 -> 10.2.0.2: Linux: nothing; TNA: delivered to h2.",
        "router_policy", ("h1:v4_src_bcast_other", "h1:v4_src_bcast_own"),
        frozenset({"router_policy"}),
        v4_src_in("10.1.0.255/32", "10.2.0.255/32", "10.3.0.255/32")),
    Divergence(
        "v4_route_mtu_metric",
        "DIVERGENCE: a route's (unlocked) MTU metric is ignored by the fast path: "
        "bpf_fib_lookup() checks ip_mtu_from_fib_result(), which uses fib_mtu only when "
        "locked, while ip_forward() honours it (ip_dst_mtu_maybe_forward()).  Repro: router "
        "scenario with 'ip route add 10.9.5.0/24 via 10.2.0.2 mtu 1300', h1 sends a 1350-byte "
        "UDP datagram to 10.9.5.1: Linux: frag-needed (DF) or two fragments; TNA: forwarded "
        "whole.",
        "router", ("h1:v4_route_mtu_df", "h1:v4_route_mtu_nodf"),
        FAST_ROUTERS, v4_dst_in("10.9.5.0/24")),
    Divergence(
        "v6_route_mtu_metric",
        "DIVERGENCE: an IPv6 route's (unlocked) MTU metric is ignored by the fast path; "
        "ip6_forward() honours it.  Repro: router scenario with 'ip -6 route add fd00:95::/64 "
        "via fd00:2::2 mtu 1300', h1 sends a 1350-byte UDP datagram to fd00:95::1: Linux: "
        "packet too big (MTU 1300) to h1; TNA: forwarded to h2.",
        "router", ("h1:v6_route_mtu",), FAST_ROUTERS, v6_dst_in("fd00:95::/64")),
    Divergence(
        "v4_redirect_exception_ignored",
        "DIVERGENCE: with net.ipv4.conf.all.accept_redirects=1 the router follows an ICMP "
        "redirect from its gateway (a next-hop exception, 'ip route show cache' says "
        "<redirected>); the fast path uses the FIB's gateway.  Repro: "
        "router_accept_redirects scenario, h3 (gateway of 10.9.7.0/24) redirects 10.9.7.9 to "
        "10.3.0.3, then h1 sends UDP to 10.9.7.9: Linux: to 10.3.0.3's MAC; TNA: to h3's.",
        "router_accept_redirects", ("h3:icmp_redirect_to_router", "h1:v4_after_redirect"),
        frozenset({"router_accept_redirects"}), v4_dst_in("10.9.7.9/32")),
)


# Scenarios TNA cannot even be applied to: the whole scenario test is a strict xfail.
APPLY_FAILS: dict[str, str] = {
    "router_jumbo": (
        "DIVERGENCE: tna apply fails on a router whose veth peer has an MTU above the "
        "single-buffer XDP limit (~3.5 KiB): attaching to r3 (peer MTU 9000) raises ERANGE "
        "after r1/r2 were attached, leaving the namespace half-applied; the plan should keep "
        "such a port on Linux (or load a frags-aware program).  Repro: router_jumbo scenario "
        "('ip link set r3 mtu 9000' on both ends), then tna apply."),
}


def applicable(scenario: str) -> list[Divergence]:
    return [d for d in KNOWN if scenario in d.affects]


def without_known(scenario: str, frames: Sequence[CorpusFrame]) -> list[CorpusFrame]:
    """The frames of ``scenario`` outside every known divergence class."""
    known = applicable(scenario)
    return [f for f in frames if not any(d.matches(f.data) for d in known)]
