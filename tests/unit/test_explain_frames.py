"""``tna explain``'s packet descriptions and frames: lengths and checksums by the RFC."""

from __future__ import annotations

import struct

import pytest

from tna import explain

MAC = "02:00:00:00:00:aa"


def l4_sum_ok(frame: bytes, v4: bool, proto: int) -> bool:
    ip_len = 20 if v4 else 40
    l4 = frame[14 + ip_len:]
    if v4:
        src, dst = frame[26:30], frame[30:34]
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4)) if proto != 1 else b""
    else:
        src, dst = frame[22:38], frame[38:54]
        pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
    return explain.checksum(pseudo + l4) == 0


@pytest.mark.parametrize(("words", "v4", "proto"), [
    (["udp", "10.1.0.2:40000", ">", "10.2.0.9:443"], True, 17),
    (["tcp", "10.1.0.2:40000", ">", "10.2.0.9:443"], True, 6),
    (["icmp", "10.1.0.2", ">", "10.2.0.9"], True, 1),
    (["udp", "[fd00:1::2]:40000", ">", "[fd00:2::9]:443"], False, 17),
    (["tcp", "[fd00:1::2]:1", "to", "[fd00:2::9]:2"], False, 6),
    (["icmp", "fd00:1::2", ">", "fd00:2::9"], False, 58),
])
def test_frames_are_valid(words: list[str], v4: bool, proto: int) -> None:
    spec = explain.parse(words, ttl=7, size=100)
    frame = explain.build(spec, MAC)
    assert len(frame) == 100 and frame[:6] == bytes.fromhex(MAC.replace(":", ""))
    if v4:
        assert frame[12:14] == b"\x08\x00" and explain.checksum(frame[14:34]) == 0
        assert struct.unpack("!H", frame[16:18])[0] == 86 and frame[22] == 7
        assert frame[23] == proto
    else:
        assert frame[12:14] == b"\x86\xdd" and struct.unpack("!H", frame[18:20])[0] == 46
        assert frame[21] == 7 and frame[20] == proto
    assert l4_sum_ok(frame, v4, proto)


def test_corruptions_and_ports() -> None:
    spec = explain.parse(["udp", "10.1.0.2:1000", ">", "10.2.0.9:53"], bad_ip_csum=True)
    frame = explain.build(spec, MAC)
    assert len(frame) == 60 and struct.unpack("!HH", frame[34:38]) == (1000, 53)
    assert explain.checksum(frame[14:34]) != 0 and l4_sum_ok(frame, True, 17)
    bad_l4 = explain.build(explain.parse(["udp", "10.1.0.2", ">", "10.2.0.9"],
                                         bad_l4_csum=True), MAC)
    assert explain.checksum(bad_l4[14:34]) == 0 and not l4_sum_ok(bad_l4, True, 17)
    syn_ack = explain.build(explain.parse(["tcp", "10.1.0.2:1", ">", "10.2.0.9:2"],
                                          tcp_flags="SA"), MAC)
    assert syn_ack[14 + 20 + 13] == 0x12


@pytest.mark.parametrize(("words", "options", "message"), [
    (["udp", "10.1.0.2", "10.2.0.9"], {}, "expected"),
    (["gre", "10.1.0.2", ">", "10.2.0.9"], {}, "expected"),
    (["udp", "10.1.0.2", ">", "fd00::1"], {}, "different families"),
    (["udp", "10.1.0.300", ">", "10.2.0.9"], {}, "not an address"),
    (["udp", "10.1.0.2:70000", ">", "10.2.0.9"], {}, "port out of range"),
    (["udp", "10.1.0.2", ">", "10.2.0.9"], {"ttl": 256}, "TTL"),
    (["tcp", "10.1.0.2", ">", "10.2.0.9"], {"tcp_flags": "SX"}, "TCP flags"),
    (["udp", "10.1.0.2", ">", "10.2.0.9"], {"src_mac": "zz"}, "not a MAC"),
])
def test_bad_descriptions(words: list[str], options: dict[str, object], message: str) -> None:
    with pytest.raises(explain.BadPacket, match=message):
        explain.parse(words, **options)


def test_sizes_and_ipv6_checksum() -> None:
    with pytest.raises(explain.BadPacket, match="frame size"):
        explain.build(explain.parse(["tcp", "10.1.0.2", ">", "10.2.0.9"], size=40), MAC)
    with pytest.raises(explain.BadPacket, match="no header checksum"):
        explain.build(explain.parse(["udp", "fd00::1", ">", "fd00::2"], bad_ip_csum=True), MAC)
