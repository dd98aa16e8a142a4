"""The harness' pure parts, without namespaces (no root needed)."""

from __future__ import annotations

import random
import struct

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from testing.equivalence import capture, corpus, harness, randomised, report, scenarios
from testing.equivalence import normalise as norm
from testing.equivalence.capture import Frame

CTX = norm.context(["10.1.0.1", "10.66.0.0/24", "fd00:1::1"])


def frame(pkt: Packet, host: str = "h1") -> Frame:
    return Frame(host, "eth0", 0, bytes(pkt))


def test_ipv4_id_normalised_only_for_local_sources() -> None:
    local = Ether() / IP(src="10.1.0.1", dst="10.1.0.2", id=1234) / ICMP(type=11)
    anyip = Ether() / IP(src="10.66.0.9", dst="10.1.0.2", id=99) / ICMP(type=0)
    forwarded = Ether() / IP(src="10.1.0.2", dst="10.2.0.2", id=1234) / UDP()
    out, applied = norm.normalise(frame(local), CTX)
    assert applied == ["ipv4_id_of_local_packets"]
    ip = Ether(out.data)[IP]
    assert ip.id == 0 and ip.chksum == Ether(bytes(Ether() / IP(
        src="10.1.0.1", dst="10.1.0.2", id=0) / ICMP(type=11)))[IP].chksum
    assert norm.normalise(frame(anyip), CTX)[1] == ["ipv4_id_of_local_packets"]
    assert norm.normalise(frame(forwarded), CTX) == (frame(forwarded), [])


def test_bad_checksum_is_never_normalised() -> None:
    raw = bytearray(bytes(Ether() / IP(src="10.1.0.1", dst="10.1.0.2", id=7) / ICMP()))
    raw[24] ^= 0xFF
    f = Frame("h1", "eth0", 0, bytes(raw))
    assert norm.normalise(f, CTX) == (f, [])


def test_icmp_timestamp_reply_times() -> None:
    def reply(rx: int, tx: int) -> Frame:
        return frame(Ether() / IP(src="10.1.0.1", dst="10.1.0.2", id=0) / ICMP(
            type=14, id=5, seq=1, ts_ori=1000, ts_rx=rx, ts_tx=tx))
    a, b = norm.normalise(reply(5, 6), CTX), norm.normalise(reply(7, 8), CTX)
    assert a[0] == b[0] and "icmp_timestamp_reply_times" in a[1]
    assert Ether(a[0].data)[ICMP].ts_ori == 1000  # what the sender wrote is kept


def test_timestamp_option_times_only_in_filled_slots() -> None:
    def stamped(pointer: int, first: int, second: int) -> bytes:
        opt = bytes([68, 12, pointer, 0]) + struct.pack("!II", first, second)
        return bytes(Ether() / IP(src="10.1.0.2", dst="10.2.0.2", options=[opt]) / UDP())
    one, two = stamped(9, 1111, 0), stamped(9, 2222, 0)
    assert norm.normalise(Frame("h2", "eth0", 0, one), CTX)[0] == norm.normalise(
        Frame("h2", "eth0", 0, two), CTX)[0]
    # the pointer (whether the router stamped) is never normalised away
    assert norm.normalise(Frame("h2", "eth0", 0, stamped(5, 0, 0)), CTX)[1] == []
    assert norm.normalise(Frame("h2", "eth0", 0, one), CTX)[0] != norm.normalise(
        Frame("h2", "eth0", 0, stamped(13, 1111, 0)), CTX)[0]


def test_ipv6_fragment_id_normalised_only_for_local_sources() -> None:
    def frag(src: str, ident: int) -> Frame:
        return frame(Ether() / IPv6(src=src, dst="fd00:1::2") / IPv6ExtHdrFragment(
            id=ident, m=1) / Raw(b"x" * 16))
    a, b = norm.normalise(frag("fd00:1::1", 1), CTX), norm.normalise(frag("fd00:1::1", 2), CTX)
    assert a[0] == b[0] and a[1] == ["ipv6_fragment_id_of_local_packets"]
    assert norm.normalise(frag("fd00:1::2", 1), CTX)[1] == []


def test_timestamp_option_times_in_quoted_header() -> None:
    def error(stamp: int) -> Frame:
        opt = bytes([68, 8, 9, 0]) + struct.pack("!I", stamp)
        quoted = bytes(IP(src="10.2.0.2", dst="10.1.0.0", options=[opt]) / UDP())[:36]
        return frame(Ether() / IP(src="10.1.0.1", dst="10.2.0.2", id=0) / ICMP(type=3, code=1)
                     / Raw(quoted))
    a, b = norm.normalise(error(1), CTX), norm.normalise(error(2), CTX)
    assert a[0] == b[0] and "ipv4_timestamp_option_times" in a[1]
    assert norm._csum(a[0].data[34:]) == 0  # the ICMP checksum still verifies


def test_normalisations_are_documented() -> None:
    for n in norm.NORMALISATIONS:
        assert len(n.why) > 80, n.name


def test_differences_compare_multisets() -> None:
    a, b = Frame("h1", "eth0", 0, b"x" * 20), Frame("h2", "eth0", 0, b"y" * 20)
    assert harness.differences([a, b], [b, a]) == []
    diff = harness.differences([a, a, b], [a, b])
    assert [(d.host, d.count_a, d.count_b) for d in diff] == [("h1", 2, 1)]
    moved = Frame("h2", "eth0", 0, a.data)
    assert len(harness.differences([a], [moved])) == 2  # receiving interface counts


def test_vlan_tag_is_put_back() -> None:
    aux = struct.pack("=IIIHHHH", capture.TP_STATUS_VLAN_VALID, 0, 0, 0, 0, 10, 0)
    data = bytes(range(12)) + b"\x08\x00" + b"payload"
    out = capture._vlan_restored(data, [(capture.SOL_PACKET, capture.PACKET_AUXDATA, aux)])
    assert out == bytes(range(12)) + b"\x81\x00\x00\x0a\x08\x00payload"


def test_corpus_frames_are_unique_named_and_sendable() -> None:
    for name, scenario in scenarios.SCENARIOS.items():
        frames = scenario.corpus()
        names = [f.name for f in frames]
        assert len(names) == len(set(names)), name
        for f in frames:
            side_max = 1614 if f.host in ("h1", "h3") else 1514
            assert 14 <= len(f.data) <= side_max + 4, f.name


def test_every_corpus_entry_is_used_somewhere() -> None:
    used = {f.name.split(":", 1)[1] for s in scenarios.SCENARIOS.values() for f in s.corpus()}
    assert set(corpus.BY_NAME) - used == set()


def test_ip_ids_do_not_collide() -> None:
    frames = scenarios.SCENARIOS["router"].corpus()
    flows = [f.data[26:34] + f.data[18:20] for f in frames
             if f.data[12:14] == b"\x08\x00" and len(f.data) >= 34]
    # duplicates only where the corpus means it (both halves of one reassembled datagram)
    dupes = {x for x in flows if flows.count(x) > 1}
    assert len(dupes) <= 1


def test_random_corpus_is_reproducible() -> None:
    a = scenarios.random_router_corpus(42, 150)
    b = scenarios.random_router_corpus(42, 150)
    c = scenarios.random_router_corpus(43, 150)
    assert [f.data for f in a] == [f.data for f in b]
    assert [f.data for f in a] != [f.data for f in c]
    assert all(14 <= len(f.data) <= 1618 for f in a)


def test_random_addresses_avoid_connected_subnets() -> None:
    gen = randomised.Generator(7, scenarios.SIDES[1], scenarios.RANDOM_AVOID)
    rng = random.Random(1)
    for _ in range(2000):
        for family in (4, 6):
            addr = gen._random_addr(rng, family)
            assert not addr.startswith(("10.1.0.", "10.2.0.", "10.3.0.", "10.9.4."))
            assert not addr.startswith(("fd00:1::", "fd00:2::", "fd00:3::", "fd00:94::"))


def test_origins_by_tag_and_by_ipv4_id() -> None:
    frames = scenarios.SCENARIOS["router"].corpus()
    ttl1 = next(f for f in frames if f.name == "h1:v4_ttl_1")
    error = bytes(Ether() / IP(src="10.1.0.1", dst="10.1.0.2") / ICMP(type=11) / ttl1.data[14:])
    assert harness.origins(error, frames) == ["h1:v4_ttl_1"]
    second_fragment = ttl1.data[:34] + b"no tag here"
    assert harness.origins(second_fragment, frames) == ["h1:v4_ttl_1 (by IPv4 ID)"]


def test_report_names_cause_and_fields() -> None:
    frames = scenarios.SCENARIOS["router"].corpus()
    ttl1 = next(f for f in frames if f.name == "h1:v4_ttl_1")
    fwd = Ether(ttl1.data)
    fwd[IP].ttl = 0
    del fwd[IP].chksum
    run_a = harness.Run(harness.OFF, [])
    run_b = harness.Run(harness.ON, [Frame("h2", "eth0", 0, bytes(fwd))],
                        counters={"forwarded": 1})
    cmp = harness.Comparison("router", run_a, run_b, frames,
                             harness.differences(run_a.frames, run_b.frames), seed=5)
    text = cmp.report()
    assert "h2/eth0" in text and "h1:v4_ttl_1" in text and "TNA_EQ_SEED=5" in text
    assert "forwarded" in text


def test_field_diff_names_changed_fields() -> None:
    a = bytes(Ether() / IP(src="10.1.0.2", dst="10.2.0.2", ttl=1) / UDP())
    b = bytes(Ether() / IP(src="10.1.0.2", dst="10.2.0.2", ttl=0) / UDP())
    changes = report.field_diff(a, b)
    assert "IP.ttl: 1 -> 0" in changes
    assert report.field_diff(a, a) == []


def test_random_corpus_respects_the_ip_error_budget() -> None:
    """At most RANDOM_ERRORS_PER_SOURCE frames per source may meet ip_error()'s limit."""
    error_dsts = {scenarios.SIDES[1].dst[k] for k in randomised.ERROR_KEYS_V4}
    per_source: dict[bytes, int] = {}
    for f in scenarios.random_router_corpus(9, 1000):
        if f.data[12:14] != b"\x08\x00" or len(f.data) < 34:
            continue
        dst = ".".join(str(b) for b in f.data[30:34])
        if dst in error_dsts or not dst.startswith("10."):
            per_source[f.data[26:30]] = per_source.get(f.data[26:30], 0) + 1
    assert per_source and max(per_source.values()) <= randomised.RANDOM_ERRORS_PER_SOURCE
