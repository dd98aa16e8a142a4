"""The systemd units in contrib/ and the daemon's readiness notification.

``systemd-analyze verify`` checks the units as systemd would load them (rendered with the path
of a real ``tna`` script, as docs/deployment.md says to); the daemon must send READY=1 on
``$NOTIFY_SOCKET`` only once its first reconciliation has attached the fast path.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tna.testbed import RouterTopology, Testbed, run_tna

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
UNITS = {"tna.service": "tna.service", "tna@.service": "tna@blue.service"}


def _verify(unit_dir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", *units], cwd=unit_dir,
                          capture_output=True, text=True, timeout=60, check=False)


def _render(src: Path, dst: Path, tna: str) -> None:
    text = src.read_text()
    assert "ExecStart=/usr/local/bin/tna " in text  # absolute, no shell, no PATH lookup
    dst.write_text(text.replace("/usr/local/bin/tna", tna))


@pytest.fixture
def analyze() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt package systemd)")


@pytest.mark.usefixtures("analyze")
def test_units_verify_cleanly(tmp_path: Path) -> None:
    tna = tmp_path / "tna"  # an executable standing in for the installed script
    tna.write_text("#!/bin/sh\nexit 0\n")
    tna.chmod(0o755)
    for src, dst in UNITS.items():
        _render(CONTRIB / src, tmp_path / dst, str(tna))
    # control: verify does complain about a broken unit (on stderr, exit status 0 or not)
    broken = (tmp_path / "tna.service").read_text().replace("Type=notify", "Type=notifyy")
    (tmp_path / "broken.service").write_text(broken)
    assert "notifyy" in _verify(tmp_path, "broken.service").stderr
    proc = _verify(tmp_path, *UNITS.values())
    assert proc.returncode == 0 and not proc.stderr.strip() and not proc.stdout.strip(), \
        proc.stderr


def test_units_are_hardened_and_name_no_special_instance() -> None:
    for unit in UNITS:
        lines = set((CONTRIB / unit).read_text().splitlines())
        assert {"Type=notify", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "RuntimeDirectory=tna"} <= lines
        assert any(x.startswith("CapabilityBoundingSet=CAP_") for x in lines)
        assert not any("host" in x for x in lines if x.startswith("ExecStart"))
    assert "ConditionPathExists=/run/netns/%i" in (CONTRIB / "tna@.service").read_text()


def test_ready_only_after_the_first_reconciliation() -> None:
    # an abstract address lives in the host namespace: the daemon must connect before setns
    name = f"tna-notify-{secrets.token_hex(4)}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind("\0" + name)
    listener.settimeout(30)
    with listener, Testbed(prefix="tnasd") as bed:
        t = RouterTopology.build(bed)
        env = {**os.environ, "NOTIFY_SOCKET": "@" + name}
        daemon = subprocess.Popen([sys.executable, "-m", "tna", "-n", t.r, "run"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert listener.recv(4096) == b"READY=1"
            # by then the fast path is attached: status in the daemon's namespace says so
            status = json.loads(run_tna(t.r, "status", "--json").stdout)
            assert {r["ifname"] for r in status["interfaces"]} == {"r1", "r2"}
            assert status["daemon"]["pid"] == daemon.pid
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=20)
        assert daemon.returncode == 0, err
        events = [json.loads(line)["event"] for line in out.splitlines()]
        assert events[0] == "start" and "reconcile" in events and events[-1] == "stop"


def test_no_notify_socket_no_notification(monkeypatch: pytest.MonkeyPatch) -> None:
    from tna import sdnotify

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(sdnotify, "_sock", None)
    sdnotify.connect()
    assert sdnotify.ready() is False
