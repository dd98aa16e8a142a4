"""NAT gateway conversations (``testing.equivalence.natflows``): TNA on vs off, frame by frame
and conntrack entry by entry.

Each scenario runs scripted TCP and UDP conversations through a masquerading gateway with
port forwards (nftables, iptables-nft, iptables-legacy; be_liberal 0 and 1; short timeouts
that expire while idle; the same conversations in IPv6 through an nftables ip6 nat table).
``harness.check`` fails on any frame difference, any difference of the router's conntrack
table at the end (entries, status, TCP state and flags, NAT tuples, timeouts within 2 s), and
when the fast path forwarded fewer frames than the corpus marks fast.  On top, the NAT
counters: the fast path rewrote packets of both directions of the entries, and Linux handled
what it must (handshakes and teardowns, ICMP errors of NATed flows).  The IPv6 gateway's
conversations are all NATed: every frame the fast path forwarded was NATed, none was left to
Linux as an entry it does not rewrite (``nat``).
"""

from __future__ import annotations

import shutil

import pytest

from testing.equivalence import harness
from testing.equivalence.natflows import KNOWN, NEEDS, SCENARIOS

pytestmark = pytest.mark.root

# the RST repair's scenario: its connections are reset and gone at the end (its own test)
RST_REPAIR = "nat_nft_liberal1_stale_window"
RETRANS_COUNT = "nat_nft_liberal0_retrans_count"
IPV6 = ("nat_nft6_liberal0", "nat_nft6_liberal1")
CLEAN = sorted(n for n in SCENARIOS if n not in KNOWN and n != RST_REPAIR)


def _skip_without_tools(name: str) -> None:
    missing = [tool for tool in NEEDS.get(name, ()) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


@pytest.mark.parametrize("name", CLEAN)
def test_nat_conversation_is_linux(name: str) -> None:
    _skip_without_tools(name)
    scenario = SCENARIOS[name]
    cmp = harness.check(scenario)  # frames, conntrack table, positive control
    counters = cmp.b.counters
    assert cmp.a.conntrack and cmp.b.conntrack, "no conntrack entries: nothing was compared"
    assert any(e.key.startswith("tcp") for e in cmp.a.conntrack), cmp.a.conntrack
    if not scenario.fast_path:  # check() made sure nothing was forwarded
        return
    if name == RETRANS_COUNT:  # its corpus: segments of the count, one fast reply among them
        assert counters.get("nat_original", 0) >= 7 and counters.get("nat_reply", 0) >= 1
        return
    assert counters.get("nat_original", 0) >= 2, counters
    assert counters.get("nat_reply", 0) >= 2, counters
    assert counters.get("ct_setup", 0) >= 2, counters  # handshakes and teardowns: Linux's
    if "expiry" not in name:
        assert counters.get("nat_related", 0) >= 3, counters  # the ICMP errors: Linux's
        if "liberal0" in name:  # what moves the window: Linux's
            assert counters.get("ct_window", 0) >= 10, counters
        else:  # be_liberal=1: after a fast segment, the window the kernel judges lags, and
            # what it lets pass outside moves nothing: fast
            assert counters.get("ct_window", 0) == 0, counters
    if name in IPV6:  # every connection NATed: so is every frame the fast path forwarded
        assert any(e.key.startswith("tcp fd00:1::2") for e in cmp.a.conntrack) and any(
            e.key.startswith("udp fd00:2::2") for e in cmp.a.conntrack), cmp.a.conntrack
        assert counters.get("nat_original", 0) + counters.get("nat_reply", 0) == \
            counters.get("forwarded", 0), counters
        assert counters.get("nat", 0) == 0, counters  # established IPv6 NAT entries: fast
        assert counters.get("not_forwarded", 0) == 0, counters  # the DNAT target is not local
        assert counters.get("nat_related", 0) >= 4, counters  # the four ICMPv6 errors


def test_liberal_rst_after_fast_data_is_linux() -> None:
    """be_liberal=1 under a daemon: a client's data goes through the fast path, then the client
    resets (an RST train; an RST at the server's highest ACK).  The kernel under TNA saw none
    of that data and recognises neither RST; the daemon's RST repair closes both entries as
    Linux alone does, so 11 s later the server's segment on the old mapping is answered by the
    router, not forwarded into the LAN.  Frames and the conntrack table are Linux's (both
    entries gone at the end), and the fast path carried the data and the NAT both ways."""
    cmp = harness.check(SCENARIOS[RST_REPAIR])
    counters = cmp.b.counters
    assert cmp.a.conntrack and cmp.b.conntrack, "no conntrack entries: nothing was compared"
    assert not any(e.key.startswith("tcp 10.1.0.2") for e in cmp.a.conntrack)  # closed, gone
    assert counters.get("ct_setup", 0) >= 4, counters  # handshakes and the RSTs: Linux's
    assert counters.get("forwarded", 0) >= 2, counters  # the data: the fast path's


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=reason,
                                            raises=harness.EquivalenceError))
    for n, reason in sorted(KNOWN.items())])
def test_known_divergence(name: str) -> None:
    """Strict xfail: XPASSes once the data path is fixed; then delete the entry from
    ``natflows.KNOWN`` and the scenario joins the ones above.  The fast path must have
    forwarded something, else the reproduction would prove nothing (a plain assertion: not
    the failure the xfail expects)."""
    scenario = SCENARIOS[name]
    cmp = harness.compare(scenario, scenario.corpus())
    assert cmp.b.forwarded, f"the fast path forwarded nothing (counters {cmp.b.counters})"
    if not cmp.equal:  # the only failure the xfail accepts
        raise harness.EquivalenceError(cmp.report())
