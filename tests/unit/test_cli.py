"""CLI behaviour that needs no privileges: preflight errors and text formatting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tna import cli, netns
from tna.model import Snapshot
from tna.plan import make_plan

DATA = Path(__file__).parent / "data"


def test_not_root_is_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.main(["status"]) == 1
    err = capsys.readouterr().err
    assert err == "tna: must run as root (BPF and netlink configuration need it)\n"


def test_old_kernel_is_refused(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cli.os, "uname", lambda: type("U", (), {"release": "4.19.0-27"})())
    assert cli.main(["show"]) == 1
    assert "unsupported kernel 4.19.0-27" in capsys.readouterr().err


def test_plan_text_names_every_slow_path() -> None:
    snap = Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))
    text = cli.format_plan(make_plan(snap))
    assert text.splitlines() == [
        "r1: fast path: ipv4_router, ipv6_router, verify_l4_csum, fib_direct_v4; "
        "egress target: yes",
        "r2: fast path: ipv4_router, ipv6_router, verify_l4_csum, fib_direct_v4; "
        "egress target: yes",
    ]


def test_snapshot_text_lists_links() -> None:
    snap = Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))
    text = cli.format_snapshot(snap)
    assert "r1" in text and "veth" in text and "forwarding: ipv4=on ipv6=on" in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("tna ")


@pytest.mark.parametrize("argv", [
    ["-n", "r", "-j", "show"], ["show", "-n", "r", "-j"], ["--netns", "r", "show", "--json"],
    ["-j", "show", "--netns=r"]])
def test_netns_and_json_before_or_after_the_command(argv: list[str]) -> None:
    args = cli._parser().parse_args(argv)
    assert (args.netns, args.json, args.func) == ("r", True, cli.cmd_show)


def test_defaults_without_options() -> None:
    args = cli._parser().parse_args(["detach"])
    assert (args.netns, args.json) == (None, False)


def _as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cli.os, "uname", lambda: type("U", (), {"release": "6.1.0-18"})())


def test_empty_netns_is_refused(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    _as_root(monkeypatch)
    monkeypatch.setattr(cli, "cmd_show", lambda args: pytest.fail("ran on the host"))
    assert cli.main(["--netns", "", "show"]) == 1
    assert capsys.readouterr().err == ("tna: empty --netns: omit the option to act on this "
                                       "namespace\n")


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", "."])
def test_relative_namespace_paths_are_refused(name: str) -> None:
    with pytest.raises(netns.NetnsError, match="bad network namespace name"):
        netns.resolve(name)


def test_namespace_names_and_paths() -> None:
    assert netns.resolve("blue") == "/run/netns/blue"
    assert netns.resolve("/proc/42/ns/net") == "/proc/42/ns/net"


class _FakeLibbpf:
    def __init__(self, major: int) -> None:
        self.major = major

    def libbpf_major_version(self) -> int:
        return self.major

    def libbpf_minor_version(self) -> int:
        return 8


def _no_libbpf() -> None:
    raise OSError("libbpf.so.1: cannot open shared object file: No such file or directory")


@pytest.mark.parametrize(("lib", "needle"), [
    (_no_libbpf, "libbpf.so.1 (libbpf 1.0 or newer) cannot be loaded: install the Debian "
     "package libbpf1"),
    (lambda: _FakeLibbpf(0), "libbpf 0.8 is too old: need 1.0 or newer (Debian package "
     "libbpf1)")])
def test_libbpf_missing_or_too_old_is_one_line(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str],
                                               lib: object, needle: str) -> None:
    _as_root(monkeypatch)
    monkeypatch.setattr(cli.libbpf, "lib", lib)
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err == f"tna: {needle}\n"


def test_show_json_uses_names_like_ip() -> None:
    snap = Snapshot.from_dict(json.loads((DATA / "router_snapshot.json").read_text()))
    doc = cli.snapshot_json(snap)
    lo = next(a for a in doc["addresses"] if a["address"] == "127.0.0.1")
    assert (lo["family"], lo["scope"]) == ("inet", "host")
    route = next(r for r in doc["routes"] if r["dst"] == "10.1.0.0")
    assert (route["family"], route["scope"], route["table"], route["protocol"],
            route["rtm_type"]) == ("inet", "link", "main", "kernel", "unicast")
    assert {r["family"] for r in doc["rules"]} == {"inet", "inet6"}
    assert {n["family"] for n in doc["neighbours"]} <= {"inet", "inet6"}
    assert snap.to_dict()["addresses"][0]["family"] in (2, 10)  # the model keeps numbers


def _help_commands() -> list[str]:
    """Subcommands as ``tna --help`` lists them."""
    text = cli._parser().format_help()
    section = text.split("COMMAND\n", 1)[1].split("\n\n", 1)[0]
    return [m[1] for m in re.finditer(r"^    (\S+)", section, re.M)]


def test_readme_lists_every_command_of_help() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Using it", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    listed = [m[1] for m in re.finditer(r"^tna (?:\[[^\]]*\] )*([a-z-]+)", block, re.M)]
    assert listed and sorted(listed) == sorted(_help_commands())


def test_readme_documents_the_exit_codes() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for line in cli.EXIT_CODES.splitlines()[1:]:
        code = line.split()[0]
        assert re.search(rf"^\| `{code}` \|", readme, re.M), f"exit code {code}"
