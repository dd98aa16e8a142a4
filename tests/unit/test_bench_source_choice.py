"""Choosing the traffic source (no root, no BPF): the fallback is taken for every refusal a
kernel gives, also on a host whose own kernel has live frames."""

from __future__ import annotations

import errno

import pytest

from tna.bench import generator
from tna.bench.generator import AUTO, LIVE, SKB, Probe, choose, refused

WORKS = Probe(True, "live-frames test_run works")


@pytest.mark.parametrize("err, name", [(errno.EPERM, "EPERM"), (errno.EOPNOTSUPP, "EOPNOTSUPP"),
                                       (errno.EINVAL, "EINVAL"), (524, "ENOTSUPP")])
def test_auto_falls_back_to_skb(err: int, name: str) -> None:
    probe = Probe(False, refused(err))
    assert probe.reason == f"live-frames test_run refused: {name}"
    assert choose(AUTO, probe) == (SKB, f"auto: live-frames test_run refused: {name}")


def test_auto_prefers_live() -> None:
    assert choose(AUTO, WORKS)[0] == LIVE


def test_explicit_sources() -> None:
    assert choose(SKB, WORKS) == (SKB, "requested")
    assert choose(LIVE, WORKS) == (LIVE, "requested")
    with pytest.raises(ValueError, match=r"^--source live: live-frames test_run refused: EPERM$"):
        choose(LIVE, Probe(False, refused(errno.EPERM)))
    with pytest.raises(ValueError, match="unknown source"):
        choose("pktgen", WORKS)


def test_probe_maps_refusals(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe turns a refusal into the fallback, anything else into an error."""
    class FakeObj:
        def __init__(self, *_: object) -> None:
            pass

        def prog_fd(self, _name: str) -> int:
            return 3

        def close(self) -> None:
            pass

    def refuse(err: int):  # type: ignore[no-untyped-def]
        def test_run(*_a: object, **_k: object) -> None:
            raise generator.LibbpfError(err, "bpf_prog_test_run")
        return test_run

    monkeypatch.setattr(generator, "BpfObject", FakeObj)
    monkeypatch.setattr(generator.libbpf, "test_run", refuse(errno.EPERM))
    assert generator.probe_live_frames(b"\0" * 64) == Probe(False, refused(errno.EPERM))
    monkeypatch.setattr(generator.libbpf, "test_run", refuse(errno.ENOMEM))
    with pytest.raises(OSError):
        generator.probe_live_frames(b"\0" * 64)
    monkeypatch.setattr(generator.libbpf, "test_run", lambda *_a, **_k: (1, b"", 0))
    assert generator.probe_live_frames(b"\0" * 64).live


def test_skbgen_config() -> None:
    cfg = generator.skbgen_config(bytes(range(64)), None, ifindex=7, burst=32)
    assert (cfg.ifindex, cfg.burst) == (7, 32) and bytes(cfg.gen.hdr) == bytes(range(64))
    with pytest.raises(ValueError):
        generator.skbgen_config(bytes(64), None, ifindex=7, burst=0)
