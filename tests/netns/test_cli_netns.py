"""The CLI contract: one clear line and a non-zero exit for every expected failure."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tna.testbed import Testbed


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tna", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_no_such_namespace() -> None:
    assert_one_line_error(run("--netns", "tna-does-not-exist", "show"), "no such network namespace")


@pytest.mark.parametrize("args", [("frobnicate",), ("stats", "--bogus"), ("--netns",)])
def test_bad_arguments(args: tuple[str, ...]) -> None:
    proc = run(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "usage:" in proc.stderr


def test_no_command_prints_usage() -> None:
    proc = run()
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_demo_refuses_netns() -> None:
    assert_one_line_error(run("--netns", "x", "demo"), "drop --netns")


def test_commands_in_an_empty_namespace(bed: Testbed) -> None:
    ns = bed.ns("empty")
    show = json.loads(run("--netns", ns, "show", "--json").stdout)
    assert [lk["ifname"] for lk in show["links"]] == ["lo"]
    plan = json.loads(run("--netns", ns, "plan", "--json").stdout)
    assert plan["interfaces"] == []
    stats = json.loads(run("--netns", ns, "stats", "--json").stdout)
    assert stats == {"since": None, "created": None, "reset": None,
                     "forwarded_packets": 0, "forwarded_bytes": 0, "bridged_packets": 0,
                     "bridged_bytes": 0, "dropped_packets": 0, "punted_packets": 0,
                     "punt_reasons": {}, "interfaces": {}, "legend": {}, "firewall_rules": []}
    assert json.loads(run("--netns", ns, "status", "--json").stdout) == {"interfaces": [],
                                                                         "daemon": None}
    assert "0 interface(s)" in run("--netns", ns, "detach").stdout
    text = run("--netns", ns, "show")
    assert text.returncode == 0 and "lo" in text.stdout
