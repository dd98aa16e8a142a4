"""The package as a user gets it: ``python -m build`` (sdist, then the wheel from the sdist),
installed into a fresh venv, run with no compiler on ``PATH`` against a namespace router.

The build and the venv are made once per session; everything runs from the venv's ``tna``
script with no ``PYTHONPATH`` and a working directory outside the source tree, so nothing of
the development tree can stand in for what the wheel should carry.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tna.testbed import RouterTopology, Testbed

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, BPF)")]

REPO = Path(__file__).resolve().parents[2]
COMPILERS = re.compile(r"^(clang|llc|llvm-|gcc|cc$|c\+\+|g\+\+|cpp|\w+-linux-gnu-)")
SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def wheel(dist: Path) -> Path:
    [whl] = dist.glob("tna-*.whl")
    return whl


@pytest.fixture(scope="session")
def no_compiler_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory of links to every system command except compilers: the target host."""
    bindir = tmp_path_factory.mktemp("nocc") / "bin"
    bindir.mkdir()
    for d in SYSTEM_PATH:
        for entry in sorted(Path(d).iterdir()) if os.path.isdir(d) else ():
            target = bindir / entry.name
            if COMPILERS.match(entry.name) or target.exists() or not os.access(entry, os.X_OK):
                continue
            target.symlink_to(entry.resolve())
    return str(bindir)


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    # no PYTHONPATH: pip would take the source tree's tna for an installed one
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120, env=env)
    proc = subprocess.run([str(root / "bin" / "pip"), "install", "-q",
                           "--disable-pip-version-check", str(wheel)],
                          capture_output=True, text=True, timeout=600, check=False, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def tna(venv: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{venv}/bin:{path}", "LANG": "C.UTF-8", "HOME": "/root"}
    return subprocess.run([str(venv / "bin" / "tna"), *args], capture_output=True, text=True,
                          timeout=120, check=False, env=env, cwd=venv)


def ok_json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    doc: dict = json.loads(proc.stdout)
    return doc


def test_sdist_is_source_and_wheel_carries_what_runtime_reads(dist: Path, wheel: Path) -> None:
    [sdist] = dist.glob("tna-*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = [n.split("/", 1)[1] for n in tf.getnames() if "/" in n]
    assert {"setup.py", "Makefile", "bpf/tna_xdp.bpf.c", "bpf/include/tna_abi.h"} <= set(names)
    assert not [n for n in names if n.endswith(".bpf.o")]  # built by the wheel, not shipped
    with zipfile.ZipFile(wheel) as zf:
        files = set(zf.namelist())
    assert {"tna/bpf/tna_xdp.bpf.o", "tna/bpf/tna_abi.h", "tna/cli.py"} <= files
    # every product object the Makefile builds (the bench's too); never the test-only builds
    # of bpf/tests/ (deliberately broken variants for the equivalence suite)
    sources = {Path(p).name.removesuffix(".bpf.c")
               for pattern in ("bpf/*.bpf.c", "bpf/bench/*.bpf.c")
               for p in glob.glob(f"{REPO}/{pattern}")}
    objects = {Path(f).name.removesuffix(".bpf.o") for f in files if f.endswith(".bpf.o")}
    assert sources <= objects
    assert not [f for f in files if "broken" in f or "/testing/" in f]


def test_the_path_has_no_compiler(no_compiler_path: str) -> None:
    assert shutil.which("ip", path=no_compiler_path)  # control: commands are there
    for cc in ("clang", "gcc", "cc", "llc"):
        assert shutil.which(cc, path=no_compiler_path) is None


def test_version_and_installed_copy(venv: Path, no_compiler_path: str) -> None:
    proc = tna(venv, no_compiler_path, "--version")
    assert proc.returncode == 0 and re.fullmatch(r"tna \d+\.\d+\.\d+\S*\n", proc.stdout)
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import tna; print(tna.__file__)"],
                           capture_output=True, text=True, check=True, cwd=venv,
                           env={"PATH": no_compiler_path})
    assert where.stdout.startswith(str(venv))  # the wheel's copy, not the source tree
    # what the systemd units' Documentation= and the deployment notes point at
    assert (venv / "share/doc/tna/deployment.md").is_file()
    assert {p.name for p in (venv / "share/tna/systemd").iterdir()} == {"tna.service",
                                                                        "tna@.service"}


def test_every_command_on_a_namespace_router(venv: Path, no_compiler_path: str) -> None:
    with Testbed(prefix="tnawhl") as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return tna(venv, no_compiler_path, "-n", t.r, *args)

        assert [lk["ifname"] for lk in ok_json(run("show", "-j"))["links"]] == ["lo", "r1", "r2"]
        plan = ok_json(run("plan", "-j"))
        assert {i["ifname"] for i in plan["interfaces"] if i["features"]} == {"r1", "r2"}
        assert ok_json(run("stats", "-j"))["forwarded_packets"] == 0  # control
        applied = ok_json(run("-j", "apply"))
        assert applied["attached"] and applied["forwards"]
        assert sorted(applied["changes"]["attached"]) == ["r1", "r2"]
        assert t.ping(t.h1, t.h2_v4, "-i", "0.01", count=5).returncode == 0
        assert ok_json(run("stats", "-j"))["forwarded_packets"] >= 5
        assert "forwarded (routed)" in run("stats").stdout
        status = ok_json(run("status", "-j"))
        assert {r["ifname"] for r in status["interfaces"]} == {"r1", "r2"}
        assert ok_json(run("detach", "-j")) == {"detached": 2}
        assert ok_json(run("status", "-j"))["interfaces"] == []
        assert t.ping(t.h1, t.h2_v4).returncode == 0  # Linux forwards alone
        fdb = run("fdb-refresh", "--once")
        assert fdb.returncode == 0 and not fdb.stderr, fdb.stderr
        _run_daemon(venv, no_compiler_path, t.r)
        assert ok_json(run("status", "-j"))["interfaces"] == []  # SIGTERM detached


def _run_daemon(venv: Path, path: str, ns: str) -> None:
    """``tna run`` from the wheel: ready (sd_notify) with programs attached, stops on SIGTERM."""
    name = f"tna-wheel-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(30)
        env = {"PATH": f"{venv}/bin:{path}", "NOTIFY_SOCKET": "@" + name}
        daemon = subprocess.Popen([str(venv / "bin" / "tna"), "-n", ns, "run"], env=env,
                                  cwd=venv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            assert listener.recv(64) == b"READY=1"
            status = ok_json(tna(venv, path, "-n", ns, "status", "-j"))
            assert {r["ifname"] for r in status["interfaces"]} == {"r1", "r2"}
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0 and not err, err
    assert json.loads(out.splitlines()[-1])["event"] == "stop"


def _libbpf_file() -> str:
    for pattern in ("/usr/lib/*/libbpf.so.1", "/lib/*/libbpf.so.1", "/usr/lib*/libbpf.so.1"):
        for hit in glob.glob(pattern):
            return os.path.realpath(hit)
    pytest.skip("no libbpf.so.1 on this host to hide")


def test_missing_libbpf_is_one_line_naming_the_package(venv: Path, no_compiler_path: str
                                                        ) -> None:
    script = 'mount --bind /dev/null "$1" && shift && exec "$@"'
    hidden = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
              _libbpf_file(), str(venv / "bin" / "tna"), "status"]
    env = {"PATH": f"{venv}/bin:{no_compiler_path}"}
    control = subprocess.run(hidden[-2:], capture_output=True, text=True, env=env, timeout=60,
                             check=False)
    assert control.returncode == 0, control.stderr
    proc = subprocess.run(hidden, capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "libbpf1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
