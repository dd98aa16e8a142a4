"""tna bench's frames and knobs: lengths, checksums, variations (no root, no BPF)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tna.bench import frames
from tna.bench.frames import FrameSpec
from tna.bench.generator import gen_config
from tna.bench.scenarios import Options, firewall_ruleset, without
from tna.datapath.loader import Features
from tna.frames import ETH_P_IP, checksum

V4 = FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.0.2")
V6 = FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "fd00:1::2", "fd00:2::2")


def _udp_ok(pseudo: bytes, udp: bytes) -> bool:
    return checksum(pseudo + udp) == 0


@pytest.mark.parametrize("size", [64, 128, 1514])
def test_ipv4_frame(size: int) -> None:
    f = frames.build(FrameSpec(**{**V4.__dict__, "size": size}))
    assert len(f) == size
    assert struct.unpack("!H", f[12:14])[0] == ETH_P_IP
    ip = f[14:34]
    assert checksum(ip) == 0  # a valid header sums to 0xffff
    assert struct.unpack("!H", ip[2:4])[0] == size - 14  # no padding beyond the IP length
    assert ip[8] == 64 and ip[9] == 17
    udp = f[34:]
    assert struct.unpack("!H", udp[4:6])[0] == len(udp)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    assert _udp_ok(pseudo, udp)


@pytest.mark.parametrize("size", [64, 1514])
def test_ipv6_frame(size: int) -> None:
    f = frames.build(FrameSpec(**{**V6.__dict__, "size": size}))
    assert len(f) == size
    ip = f[14:54]
    assert ip[0] >> 4 == 6 and ip[6] == 17 and ip[7] == 64
    udp = f[54:]
    assert struct.unpack("!H", ip[4:6])[0] == len(udp)
    pseudo = ip[8:40] + struct.pack("!I3xB", len(udp), 17)
    assert _udp_ok(pseudo, udp)
    assert struct.unpack("!H", udp[6:8])[0] != 0  # mandatory over IPv6


def test_frame_size_limits() -> None:
    with pytest.raises(ValueError):
        frames.build(FrameSpec(**{**V4.__dict__, "size": 60}))
    with pytest.raises(ValueError):
        frames.build(FrameSpec(**{**V4.__dict__, "size": 1515}))


def test_udp_checksum_zero_is_sent_as_ones() -> None:
    assert checksum(b"\xff\xff") == 0
    f = frames.build(FrameSpec(**{**V4.__dict__, "udp_csum": False}))
    assert f[40:42] == b"\0\0"


def test_ipv4_destination_variation() -> None:
    var = frames.ipv4_destinations("10.2.16.0", 10_000)
    assert var.value(0) == 0x0A021000 and var.value(9_999) == 0x0A021000 + 9_999
    assert var.value(10_000) == var.value(0)
    f = frames.build(frames.varied(V4, var, 300))
    assert f[frames.IPV4_DST_OFFSET:frames.IPV4_DST_OFFSET + 4] == bytes([10, 2, 17, 44])
    assert {off for off, _ in var.checksums} == {frames.IPV4_CSUM_OFFSET,
                                                  frames.UDP4_CSUM_OFFSET}


def test_mac_destination_variation() -> None:
    var = frames.mac_destinations("02:00:10:00:00:00", 1000)
    spec = frames.varied(FrameSpec(**{**V4.__dict__, "dst_mac": "02:00:10:00:00:00"}), var, 258)
    assert spec.dst_mac == "02:00:10:00:01:02"
    assert not var.checksums


def test_generator_config() -> None:
    f = frames.build(V4)
    cfg = gen_config(f, frames.ipv4_destinations("10.2.16.0", 5))
    assert bytes(cfg.hdr) == f[:64]
    assert (cfg.var_off, cfg.var_count, cfg.var_base) == (30, 5, 0x0A021000)
    assert list(cfg.csum_off) == [24, 40] and list(cfg.csum_udp) == [0, 1]
    plain = gen_config(f, None)
    assert plain.var_count == 0 and list(plain.csum_off) == [0, 0]


def test_firewall_ruleset() -> None:
    text = firewall_ruleset(50)
    assert text.count(" drop") == 50
    assert "hook forward" in text and text.rstrip().endswith("}")
    assert "10.2.0.2" not in text  # never matches the benchmark flow


def test_tna_modes() -> None:
    opts = Options(variants=(("nostats", "/tmp/x.o"),), without=("verify_l4_csum",))
    assert opts.tna_modes() == ["tna:nostats", "tna:-verify_l4_csum"]
    assert opts.tna_variant("tna") == (None, ())
    assert opts.tna_variant("tna:nostats") == ("/tmp/x.o", ())
    assert opts.tna_variant("tna:-verify_l4_csum") == (None, ("verify_l4_csum",))


def test_without_features() -> None:
    f = Features(ipv4_router=True, ipv6_router=True, ipv4_rp_filter=1)
    assert without(f, ("ipv4_rp_filter",)) == Features(True, True, 0)
    assert without(None, ("ipv4_router",)) is None
    assert without(f, ()) is f
    with pytest.raises(ValueError):
        without(f, ("no_such_feature",))


def test_cpu_interference() -> None:
    from tna.bench import cpu

    before = cpu.CpuTimes(busy=100, steal=0, total=1000, ours=90)
    after = cpu.CpuTimes(busy=300, steal=10, total=1200, ours=240)  # 200 busy, 150 ours
    other, steal = cpu.interference(before, after)
    assert other == pytest.approx(50 / 200) and steal == pytest.approx(10 / 200)
    assert cpu.interference(after, after) == (0.0, 0.0)


def test_task_ticks_parses_names_with_spaces(tmp_path: Any) -> None:
    from tna.bench import cpu

    stat = tmp_path / "stat"
    stat.write_text("123 (tna bench gen) S 1 1 1 0 -1 4194560 0 0 0 0 17 25 0 0 20 0 1 0\n")
    assert cpu._task_ticks(str(stat)) == 42
    assert cpu._task_ticks(str(tmp_path / "gone")) == 0


def test_first_fragment() -> None:
    f = frames.build(FrameSpec(**{**V4.__dict__, "fragment": True}))
    assert struct.unpack("!H", f[20:22])[0] == frames.IPV4_MF  # MF, offset 0, no DF
    assert checksum(f[14:34]) == 0
    assert struct.unpack("!H", frames.build(V4)[20:22])[0] == frames.IPV4_DF


def test_judge_punt_all() -> None:
    from tna.bench.report import Result, Sample
    from tna.bench.runner import judge_punt_all

    ok = Result("punt-all", 64, "tna", [Sample(1e6, delivered=1000, fast_path=0.0,
                                               punts={"fragment": 1003})])
    judge_punt_all(ok)
    assert ok.status == "ok" and "fragment" in ok.note
    fwd = Result("punt-all", 64, "tna", [Sample(1e6, delivered=1000, fast_path=1.0)])
    judge_punt_all(fwd)
    assert fwd.status == "invalid"
    few = Result("punt-all", 64, "tna", [Sample(1e6, delivered=1000, fast_path=0.0,
                                                punts={"fragment": 10})])
    judge_punt_all(few)
    assert few.status == "invalid"


def test_tcp_segment_round_trip_and_checksums() -> None:
    """The TCP scenarios' frame: a captured segment rebuilt with complete checksums (a local
    sender's capture may hold only the pseudo-header sum)."""
    seg = frames.TcpSegment(seq=0xFFFFFFF0, ack=12345, window=63,
                            options=b"\x01\x01\x08\x0a" + bytes(range(8)))
    spec = FrameSpec("02:00:00:00:01:02", "02:00:00:00:01:01", "10.1.0.2", "10.2.0.2")
    frame = frames.build_tcp(spec, seg)
    assert len(frame) == 66
    ip, tcp = frame[14:34], frame[34:]
    assert checksum(ip) == 0
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    assert checksum(pseudo + tcp) == 0
    assert frames.parse_tcp(frame) == ("10.1.0.2", "10.2.0.2", 4321, 9, seg)
    assert frames.parse_tcp(frame[:40]) is None
    with pytest.raises(ValueError):
        frames.build_tcp(spec, frames.TcpSegment(1, 2, 3, options=b"\x01"))
