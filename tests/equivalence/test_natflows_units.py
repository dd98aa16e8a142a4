"""The conntrack comparison and the NAT conversations, without namespaces (no root needed)."""

from __future__ import annotations

import itertools
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from testing.equivalence import ctstate, natflows


def message(sport: int = 41203, timeout: int = 431996, status: int = 0x19E, mark: int = 0,
            state: int = 3, flags_original: int = 0x23, ct_id: int = 1) -> dict[str, Any]:
    """A dumped entry as pyroute2 nests it (attrs lists of (name, value))."""
    def tuple_(src: str, sp: int, dst: str, dp: int) -> dict[str, Any]:
        return {"attrs": [
            ("CTA_TUPLE_IP", {"attrs": [("CTA_IP_V4_SRC", src), ("CTA_IP_V4_DST", dst)]}),
            ("CTA_TUPLE_PROTO", {"attrs": [("CTA_PROTO_NUM", 6), ("CTA_PROTO_SRC_PORT", sp),
                                           ("CTA_PROTO_DST_PORT", dp)]})]}
    return {"attrs": [
        ("CTA_TUPLE_ORIG", tuple_("10.1.0.2", sport, "10.2.0.2", 80)),
        ("CTA_TUPLE_REPLY", tuple_("10.2.0.2", 80, "10.2.0.1", sport)),
        ("CTA_STATUS", status), ("CTA_TIMEOUT", timeout), ("CTA_MARK", mark),
        ("CTA_PROTOINFO", {"attrs": [("CTA_PROTOINFO_TCP", {"attrs": [
            ("CTA_PROTOINFO_TCP_STATE", state),
            ("CTA_PROTOINFO_TCP_WSCALE_ORIGINAL", 7),
            ("CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", {"attrs": [], "value": (flags_original, 0)}),
        ]})]}),
        ("CTA_ID", ct_id), ("CTA_USE", 1)]}


def test_an_entry_is_decoded_with_names_and_without_id_or_use() -> None:
    e = ctstate.entry_of(message())
    assert e.key == "tcp 10.1.0.2:41203 > 10.2.0.2:80 | 10.2.0.2:80 > 10.2.0.1:41203"
    attrs = dict(e.attrs)
    assert attrs["status"] == "SEEN_REPLY|ASSURED|CONFIRMED|SRC_NAT|SRC_NAT_DONE|DST_NAT_DONE"
    assert attrs["tcp.state"] == "ESTABLISHED"
    assert attrs["tcp.flags_original"] == "WINDOW_SCALE|SACK_PERM|MAXACK_SET"
    assert attrs["tcp.wscale_original"] == "7" and attrs["mark"] == "0"
    assert e.timeout == 431996
    assert not {"id", "use", "timeout"} & attrs.keys()


def test_equal_tables_and_timeouts_within_the_tolerance_compare_equal() -> None:
    a = [ctstate.entry_of(message())]
    b = [ctstate.entry_of(message(timeout=431996 - ctstate.TIMEOUT_TOLERANCE, ct_id=2))]
    assert ctstate.differences(a, a) == []
    assert ctstate.differences(a, b) == []  # another id, a timeout within the tolerance


def test_every_kind_of_difference_is_reported() -> None:
    base = ctstate.entry_of(message())
    cases = {
        "timeout": message(timeout=296),
        "status": message(status=0x19E & ~0x4),  # not assured
        "tcp.state": message(state=8),
        "tcp.flags_original": message(flags_original=0x33),  # data unacknowledged
        "mark": message(mark=7),
    }
    for what, msg in cases.items():
        diffs = ctstate.differences([base], [ctstate.entry_of(msg)])
        assert [d.what.split(":")[0] for d in diffs] == [what], (what, diffs)
    other = ctstate.entry_of(message(sport=41204))
    diffs = ctstate.differences([base], [other])
    assert sorted(d.what for d in diffs) == ["only in a", "only in b"]
    text = ctstate.format_differences(diffs, "TNA off", "TNA on")
    assert "only with TNA off" in text and "only with TNA on" in text and "41204" in text


def _tcp_steps(frames: list[Any], key: str) -> dict[str, Any]:
    return {f.name.split(":", 1)[1].removeprefix(f"{key}_"): Ether(f.data)
            for f in frames if f.name.split(":", 1)[1].startswith(f"{key}_")}


def test_conversations_are_consistent_tcp() -> None:
    for liberal in (False, True):
        frames = natflows.gateway_corpus(liberal)
        assert len({f.name for f in frames}) == len(frames), "duplicate names"
        steps = _tcp_steps(frames, "fin")
        syn, synack, ack = steps["syn"][TCP], steps["synack"][TCP], steps["ack"][TCP]
        assert synack.ack == syn.seq + 1 and ack.ack == synack.seq + 1 and ack.seq == syn.seq + 1
        data1, ack1 = steps["data1"], steps["ack1"][TCP]
        assert ack1.ack == data1[TCP].seq + len(data1[TCP].payload)
        fin, finack = steps["fin"][TCP], steps["finack"][TCP]
        assert finack.ack == fin.seq + 1 and steps["lastack"][TCP].ack == finack.seq + 1
        # the server answers the address the masquerade shows it
        assert steps["synack"][IP].dst == natflows.PUBLIC and steps["synack"][IP].src == "10.2.0.2"
        for f in frames:  # checksums as a sender computes them
            pkt = Ether(f.data)
            again = pkt.copy()
            del again[IP].chksum
            if TCP in again:
                del again[TCP].chksum
            elif UDP in again:
                del again[UDP].chksum
            assert bytes(Ether(bytes(again))) == f.data, f.name


def test_every_step_is_fenced_and_the_fast_marks_follow_be_liberal() -> None:
    for liberal in (False, True):
        frames = natflows.gateway_corpus(liberal)
        bursts = [f.burst for f in frames]
        assert bursts == sorted(bursts)
        shared = {b.name for a, b in itertools.pairwise(frames) if a.burst == b.burst}
        assert shared == {"h2:u_dnat_query3", "h1:b2b_dupack_after_fin"}  # on purpose
        fast = {f.name for f in frames if f.fast}
        assert ("h1:fin_data1" in fast) == liberal  # new data
        # the peer's ACK of fast data: outside the kernel's stale window, it moves nothing
        assert ("h2:fin_ack1" in fast) == liberal
        assert "h1:fin_dupack2" in fast  # the kernel's last again: counted
        assert {"h2:fin_dupack1", "h1:rst_dupack"} <= fast  # in both modes
        assert ("h1:storm_syn" in {f.name for f in frames}) != liberal
    idle = [f for f in natflows.expiry_corpus() if f.idle_before]
    assert [f.idle_before for f in idle] == [natflows.IDLE_1, natflows.IDLE_2]
    # what must expire does, what the fast path refreshes does not (seconds)
    udp_t = natflows.EXPIRY_SYSCTLS["net.netfilter.nf_conntrack_udp_timeout"]
    tcp_t = natflows.EXPIRY_SYSCTLS["net.netfilter.nf_conntrack_tcp_timeout_established"]
    idle_total, refreshed_before = natflows.IDLE_1 + natflows.IDLE_2, natflows.IDLE_2
    assert idle_total >= max(udp_t, tcp_t) + 1
    assert refreshed_before <= tcp_t - 1


def test_scenarios_compare_conntrack_and_claim_a_fast_path() -> None:
    for name, s in natflows.SCENARIOS.items():
        assert s.conntrack and s.fast_path is not None, name
        assert any(f.fast for f in s.corpus()), name
    assert [n for n, s in natflows.SCENARIOS.items() if not s.fast_path] == [
        "nat_ipt_nft_xt_liberal0"]
    assert natflows.NEEDS.keys() >= {n for n in natflows.SCENARIOS if "ipt" in n}
    assert natflows.KNOWN.keys() <= natflows.SCENARIOS.keys()
    assert all(r.startswith("DIVERGENCE:") for r in natflows.KNOWN.values())
