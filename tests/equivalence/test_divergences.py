"""The known divergences (``divergences.KNOWN``): the table, its filter, their reproductions.

Without root: the table is well formed (every entry reproducible in a real scenario with real
corpus frames, inside its own class), and ``without_known`` leaves out exactly an entry's class
and only in the scenarios it affects.  Both are checked on made-up entries too, because the
table is empty while no divergence is known, and a check over an empty table proves nothing.

With root, one reproduction per entry, a strict xfail: each must still differ.  When the data
path is fixed the test XPASSes, which fails the run on purpose: delete the entry from
``divergences.KNOWN`` and its frames go back into the scenario tests.
"""

from __future__ import annotations

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from testing.equivalence import divergences, harness
from testing.equivalence.divergences import (
    APPLY_FAILS,
    KNOWN,
    Divergence,
    v4_dst_in,
    v4_src_in,
    v6_dst_in,
)
from testing.equivalence.scenarios import SCENARIOS

V4 = bytes(Ether() / IP(src="10.1.0.2", dst="10.2.0.2") / UDP())
V6 = bytes(Ether() / IPv6(src="fd00:1::2", dst="fd00:2::2") / UDP())
ARP_FRAME = bytes(Ether() / ARP(psrc="10.1.0.2", pdst="10.2.0.2"))


def made_up(scenario: str = "router", frames: tuple[str, ...] = ("h1:v4_udp",),
            affects: frozenset[str] = frozenset({"router"})) -> Divergence:
    """An entry of the table's shape: h1's IPv4 traffic to 10.2.0.0/24 in ``router``."""
    return Divergence("made_up", "DIVERGENCE: made up for this test", scenario, frames,
                      affects, v4_dst_in("10.2.0.0/24"))


def problems(d: Divergence) -> list[str]:
    """What keeps ``d`` from being a reproducible entry of the table (empty: nothing)."""
    if not d.reason.startswith("DIVERGENCE:"):
        return [f"{d.id}: the reason must start with 'DIVERGENCE:'"]
    if d.scenario not in SCENARIOS or not d.affects <= SCENARIOS.keys():
        return [f"{d.id}: unknown scenario in {d.scenario!r} / {sorted(d.affects)}"]
    by_name = {f.name: f for f in SCENARIOS[d.scenario].corpus()}
    missing = [n for n in d.frames if n not in by_name]
    if missing or not d.frames:
        return [f"{d.id}: no such frames in {d.scenario}'s corpus: {missing or 'none given'}"]
    if not d.matches(by_name[d.frames[-1]].data):
        return [f"{d.id}: the reproduction's last frame is outside its class"]
    return []


def test_matchers_read_the_addresses_they_name() -> None:
    assert v4_src_in("10.1.0.0/24")(V4) and not v4_src_in("10.2.0.0/24")(V4)
    assert v4_dst_in("10.2.0.0/24")(V4) and not v4_dst_in("10.1.0.0/24")(V4)
    assert v6_dst_in("fd00:2::/64")(V6) and not v6_dst_in("fd00:1::/64")(V6)
    for other in (ARP_FRAME, V6, V4[:33]):  # not IPv4, or too short to hold both addresses
        assert not v4_src_in("0.0.0.0/0")(other) and not v4_dst_in("0.0.0.0/0")(other)
    for other in (ARP_FRAME, V4, V6[:53]):
        assert not v6_dst_in("::/0")(other)


def test_without_known_leaves_out_exactly_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = SCENARIOS["router"].corpus()
    entry = made_up()
    in_class = [f for f in corpus if entry.matches(f.data)]
    assert 0 < len(in_class) < len(corpus)  # control: the class is some frames, not all
    assert divergences.without_known("router", corpus) == corpus  # nothing known: all kept
    monkeypatch.setattr(divergences, "KNOWN", (entry,))
    assert divergences.without_known("router", corpus) == [
        f for f in corpus if f not in in_class]
    assert divergences.without_known("router_rp_strict", corpus) == corpus  # not affected


def test_problems_of_an_entry_are_found() -> None:
    assert problems(made_up()) == []  # control: a well-formed entry passes
    assert problems(made_up(scenario="no_such_scenario"))
    assert problems(made_up(affects=frozenset({"router", "no_such_scenario"})))
    assert problems(made_up(frames=("h1:no_such_frame",)))
    assert problems(made_up(frames=()))
    assert problems(made_up(frames=("h1:v6_udp",)))  # IPv6: outside the IPv4 class
    assert problems(Divergence("x", "no prefix", "router", ("h1:v4_udp",),
                               frozenset({"router"}), v4_dst_in("10.2.0.0/24")))


def test_table_is_well_formed() -> None:
    assert len({d.id for d in KNOWN}) == len(KNOWN), "duplicate ids"
    assert [p for d in KNOWN for p in problems(d)] == []
    assert APPLY_FAILS.keys() <= SCENARIOS.keys()


@pytest.mark.root
@pytest.mark.parametrize("divergence", [
    pytest.param(d, id=d.id, marks=pytest.mark.xfail(strict=True, reason=d.reason))
    for d in KNOWN])
def test_known_divergence(divergence: Divergence) -> None:
    scenario = SCENARIOS[divergence.scenario]
    by_name = {f.name: f for f in scenario.corpus()}
    frames = [by_name[n] for n in divergence.frames]
    assert all(divergence.matches(f.data) for f in frames[-1:]), "repro outside its class"
    cmp = harness.compare(scenario, frames)
    assert cmp.equal, cmp.report()
