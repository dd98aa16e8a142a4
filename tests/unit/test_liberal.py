"""tna run --tcp-liberal and the RST repair without a kernel: the ctnetlink requests sent,
and how the daemon's marker counts and deduplicates the programs' requests."""

from __future__ import annotations

import errno
import pathlib
import socket
import struct

import pytest

from tna import liberal, netlink
from tna.datapath.liberal import RESET, Record, Request, decode


def test_request_names_the_original_tuple_and_only_the_liberal_bit() -> None:
    body = netlink.ct_liberal_request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80)
    family, version, res_id = netlink.NFGENMSG.unpack_from(body)
    assert (family, version, res_id) == (socket.AF_INET, 0, 0)
    top = netlink.parse_attrs(body[netlink.NFGENMSG.size:])
    assert set(top) == {netlink.CTA_TUPLE_ORIG, netlink.CTA_PROTOINFO}  # no status, no NAT
    tuple_ = netlink.parse_attrs(top[netlink.CTA_TUPLE_ORIG])
    ip = netlink.parse_attrs(tuple_[netlink.CTA_TUPLE_IP])
    assert (ip[1], ip[2]) == (socket.inet_aton("10.1.0.2"), socket.inet_aton("10.2.0.2"))
    proto = netlink.parse_attrs(tuple_[netlink.CTA_TUPLE_PROTO])
    assert proto[netlink.CTA_PROTO_NUM] == bytes([socket.IPPROTO_TCP])
    assert proto[netlink.CTA_PROTO_SRC_PORT] == struct.pack("!H", 4100)
    assert proto[netlink.CTA_PROTO_DST_PORT] == struct.pack("!H", 80)
    tcp = netlink.parse_attrs(netlink.parse_attrs(top[netlink.CTA_PROTOINFO])[
        netlink.CTA_PROTOINFO_TCP])
    liberal_only = bytes([netlink.IP_CT_TCP_FLAG_BE_LIBERAL] * 2)  # flags, mask
    assert set(tcp) == {netlink.CTA_PROTOINFO_TCP_FLAGS_ORIGINAL,
                        netlink.CTA_PROTOINFO_TCP_FLAGS_REPLY}
    assert all(v == liberal_only for v in tcp.values())


def test_ipv6_request_uses_the_ipv6_attributes() -> None:
    body = netlink.ct_liberal_request(socket.AF_INET6, "fd00:1::2", "fd00:2::2", 1, 2)
    top = netlink.parse_attrs(body[netlink.NFGENMSG.size:])
    ip = netlink.parse_attrs(netlink.parse_attrs(top[netlink.CTA_TUPLE_ORIG])[
        netlink.CTA_TUPLE_IP])
    assert set(ip) == {3, 4}  # CTA_IP_V6_SRC, CTA_IP_V6_DST
    assert ip[3] == socket.inet_pton(socket.AF_INET6, "fd00:1::2")


def test_record_decodes_to_the_connection() -> None:
    raw = Record(family=socket.AF_INET, l4proto=socket.IPPROTO_TCP,
                 sport=socket.htons(4100), dport=socket.htons(80))
    raw.saddr[:4] = list(socket.inet_aton("10.1.0.2"))
    raw.daddr[:4] = list(socket.inet_aton("10.2.0.2"))
    assert decode(bytes(raw)) == Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80)


def test_close_request_sets_close_and_the_timeout_only() -> None:
    """The RST repair: the entry's TCP state CLOSE and its timeout, nothing else (no status,
    no NAT, no flags); no NLM_F_CREATE is the caller's (Conntrack._change)."""
    body = netlink.ct_close_request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 4100, 80, 10)
    top = netlink.parse_attrs(body[netlink.NFGENMSG.size:])
    assert set(top) == {netlink.CTA_TUPLE_ORIG, netlink.CTA_TIMEOUT, netlink.CTA_PROTOINFO}
    assert top[netlink.CTA_TIMEOUT] == struct.pack("!I", 10)
    tcp = netlink.parse_attrs(netlink.parse_attrs(top[netlink.CTA_PROTOINFO])[
        netlink.CTA_PROTOINFO_TCP])
    assert tcp == {netlink.CTA_PROTOINFO_TCP_STATE: bytes([8])}  # TCP_CONNTRACK_CLOSE
    proto = netlink.parse_attrs(netlink.parse_attrs(top[netlink.CTA_TUPLE_ORIG])[
        netlink.CTA_TUPLE_PROTO])
    assert proto[netlink.CTA_PROTO_SRC_PORT] == struct.pack("!H", 4100)


def test_reset_record_decodes_with_its_kind_and_side() -> None:
    raw = Record(family=socket.AF_INET, l4proto=socket.IPPROTO_TCP, sport=socket.htons(1),
                 dport=socket.htons(2), kind=RESET, dir=1)
    req = decode(bytes(raw))
    assert (req.kind, req.dir) == (RESET, 1)
    assert req != Request(socket.AF_INET, "0.0.0.0", "0.0.0.0", 1, 2)  # not a mark


class FakeConntrack:
    def __init__(self, answers: dict[int, int]) -> None:
        self.answers = answers
        self.sent: list[int] = []  # marks by port, closes by -port
        self.timeouts: list[int] = []

    def set_liberal(self, family: int, saddr: str, daddr: str, sport: int, dport: int) -> int:
        self.sent.append(sport)
        return self.answers.get(sport, 0)

    def set_closed(self, family: int, saddr: str, daddr: str, sport: int, dport: int,
                   timeout_s: int) -> int:
        self.sent.append(-sport)
        self.timeouts.append(timeout_s)
        return self.answers.get(sport, 0)

    def close(self) -> None:
        pass


def test_marker_marks_once_and_counts_what_is_gone() -> None:
    errors: list[str] = []
    m = liberal.Marker(errors.append)
    fake = FakeConntrack({2: errno.ENOENT, 3: errno.EPERM})
    m._conntrack = fake  # type: ignore[assignment]
    for sport in (1, 1, 1, 2, 3):
        m.handle(Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", sport, 80))
    assert fake.sent == [1, 2, 3]  # the repeats of 1, in flight when it was marked, not sent
    assert m.counts() == {"marked": 1, "closed": 0, "gone": 1, "failed": 1, "repeated": 2}
    assert len(errors) == 1 and "EPERM" in errors[0]


def test_stats_summary_only_when_something_happened() -> None:
    assert liberal.summary(None, None) is None
    assert liberal.summary((0, 0), {"pid": 1}) is None  # programs without the switch
    assert liberal.summary((5, 1), None) == {"requested": 5, "lost": 1, "daemon": None}


def test_marker_closes_a_reset_entry_with_the_namespace_timeout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    """A RESET request closes the entry with the timeout read from the namespace's sysctl
    (not a constant), counted apart from marks; a mark of the same tuple is not a repeat."""
    sysctl = tmp_path / "nf_conntrack_tcp_timeout_close"
    sysctl.write_text("7\n")
    monkeypatch.setattr(liberal, "TIMEOUT_CLOSE", str(sysctl))
    m = liberal.Marker()
    fake = FakeConntrack({})
    m._conntrack = fake  # type: ignore[assignment]
    m.handle(Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 5, 80, kind=RESET))
    m.handle(Request(socket.AF_INET, "10.1.0.2", "10.2.0.2", 5, 80))
    assert fake.sent == [-5, 5] and fake.timeouts == [7]
    assert m.counts()["closed"] == 1 and m.counts()["marked"] == 1
