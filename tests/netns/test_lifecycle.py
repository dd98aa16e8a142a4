"""Lifecycle: nothing of TNA outlives what it belongs to.

Nothing is pinned where nothing is attached; pins and state files of namespaces that no longer
exist are found and removed (``tna gc``, and by ``apply``, ``run`` and ``status``); a daemon
whose namespace was deleted detaches and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tna import netns
from tna.datapath import libbpf, status
from tna.testbed import DaemonProcess, Testbed, run_tna, sh, wait_for

pytestmark = pytest.mark.root


def cookie_of(ns: str) -> int:
    with netns.entered(ns):
        return netns.cookie()


def pins_of(cookie: int) -> list[str]:
    try:
        return sorted(os.listdir(f"/sys/fs/bpf/tna/ns{cookie}"))
    except FileNotFoundError:
        return []


def two_veths(bed: Testbed, ns: str, forwarding: bool = True) -> None:
    bed.run(ns, "ip", "link", "add", "name", "va", "type", "veth", "peer", "name", "vb")
    for ifname in ("va", "vb"):
        bed.run(ns, "ip", "link", "set", ifname, "up")
    bed.sysctl(ns, "net.ipv4.ip_forward", "1" if forwarding else "0")


def test_nothing_pinned_when_nothing_is_attached(bed: Testbed) -> None:
    ns = bed.ns("lo")
    cookie = cookie_of(ns)
    assert "0 interface(s)" in run_tna(ns, "apply").stdout
    assert pins_of(cookie) == []
    assert "not attached" in run_tna(ns, "status").stdout
    # positive control: with interfaces to accelerate, maps and links are pinned...
    two_veths(bed, ns)
    run_tna(ns, "apply")
    assert "tna_ifaces" in pins_of(cookie) and any(p.startswith("link") for p in pins_of(cookie))
    # ...and when a change leaves no program to run, apply unpins everything again
    bed.sysctl(ns, "net.ipv4.ip_forward", "0")
    assert "detached" in run_tna(ns, "apply").stdout
    assert pins_of(cookie) == []


def state_files(cookie: int) -> list[str]:
    return sorted(n for n in os.listdir("/run/tna") if n.split(".")[0] == f"ns{cookie}")


def tna(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tna", *args], capture_output=True, text=True,
                          timeout=60, check=True)


def delete(bed: Testbed, ns: str) -> None:
    sh(["ip", "netns", "del", ns])
    bed.namespaces.remove(ns)


def bpf_ids(kind: str) -> dict[int, str]:
    """id -> name of every BPF program or map on the system (bpftool)."""
    listed = json.loads(sh(["bpftool", kind, "list", "-j"]).stdout)
    return {o["id"]: o.get("name", "") for o in listed}


def tna_object_ids(ns: str) -> tuple[set[int], set[int]]:
    """The ids of TNA's programs in ``ns`` and of every map they use."""
    with netns.entered(ns):
        progs = {a.prog_id for a in status.attached()}
        maps: set[int] = set()
        for prog_id in progs:
            fd = libbpf.prog_get_fd_by_id(prog_id)
            try:
                maps.update(libbpf.prog_map_ids(fd))
            finally:
                os.close(fd)
    return progs, maps


def test_gc_removes_what_a_deleted_namespace_left(bed: Testbed) -> None:
    ns = bed.ns("gone")
    cookie = cookie_of(ns)
    two_veths(bed, ns)
    run_tna(ns, "apply")
    # positive control: alive, so nothing of it is garbage
    assert "tna_ifaces" in pins_of(cookie)
    dry = json.loads(tna("gc", "--dry-run", "-j").stdout)
    assert cookie not in [c["cookie"] for c in dry["collected"]]
    listed = json.loads(tna("status", "--all", "-j").stdout)["namespaces"]
    mine = next(n for n in listed if n["cookie"] == cookie)
    assert mine["name"] == ns and mine["alive"] and len(mine["interfaces"]) == 2
    delete(bed, ns)
    assert pins_of(cookie)  # a deleted namespace leaves its pins: nothing in the kernel tells
    gone = json.loads(tna("gc", "-j").stdout)["collected"]
    mine_gone = next(c for c in gone if c["cookie"] == cookie)
    assert "tna_ifaces" in mine_gone["pins"]
    assert pins_of(cookie) == [] and state_files(cookie) == []


def test_status_removes_a_killed_daemons_state(bed: Testbed) -> None:
    ns = bed.ns("killed")
    cookie = cookie_of(ns)
    two_veths(bed, ns)
    daemon = DaemonProcess(ns)
    assert f"ns{cookie}.json" in state_files(cookie)
    daemon.stop(signal.SIGKILL)
    assert f"ns{cookie}.json" in state_files(cookie)  # SIGKILL: no chance to clean up
    run_tna(ns, "status")
    assert f"ns{cookie}.json" not in state_files(cookie)
    run_tna(ns, "detach")


def test_daemon_exits_when_its_namespace_is_deleted(bed: Testbed) -> None:
    ns = bed.ns("daemon")
    cookie = cookie_of(ns)
    two_veths(bed, ns)
    daemon = DaemonProcess(ns)
    assert daemon.proc.poll() is None and pins_of(cookie)  # running, maps pinned
    deleted_at = time.monotonic()
    delete(bed, ns)
    assert daemon.proc.wait(timeout=5) == 0
    took = time.monotonic() - deleted_at
    daemon.wait(lambda e: e["event"] == "netns_gone", what="netns_gone")
    assert took < 2.0, f"daemon took {took:.2f}s to notice"
    assert pins_of(cookie) == [] and state_files(cookie) == []


def test_cycles_leave_no_bpf_objects(bed: Testbed) -> None:
    """20 apply / (detach) / netns-delete cycles: every program and map they created is
    gone after the next tna command.  Other tests may load TNA programs meanwhile, so the
    objects are tracked by id, not by counting."""
    created_progs: set[int] = set()
    created_maps: set[int] = set()
    for i in range(20):
        ns = bed.ns(f"c{i}")
        cookie = cookie_of(ns)
        two_veths(bed, ns)
        run_tna(ns, "apply")
        progs, maps = tna_object_ids(ns)
        assert len(progs) >= 1 and maps  # positive control: there is something to leak
        created_progs |= progs
        created_maps |= maps
        if i % 2:
            run_tna(ns, "detach")
        delete(bed, ns)
        tna("gc")
        assert pins_of(cookie) == [] and state_files(cookie) == []

    def released() -> bool:
        return not (created_progs & set(bpf_ids("prog"))
                    or created_maps & set(bpf_ids("map")))
    wait_for(released, timeout=10, what="programs and maps of deleted namespaces to be freed")


def test_gc_spares_held_locks_and_what_is_not_roots(tmp_path: Any) -> None:
    """A namespace cookie nothing references (cookies are small and never reused) with a
    held lock is alive; without the lock its files go; files of another owner stay."""
    fake = (1 << 62) + secrets.randbelow(1 << 20)
    lock = f"/run/tna/ns{fake}.lock"
    foreign = f"/run/tna/ns{fake}.json"
    pin_dir = f"/sys/fs/bpf/tna/ns{fake}"
    os.makedirs("/run/tna", exist_ok=True)
    os.makedirs(pin_dir)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        with open(foreign, "w") as f:
            f.write("{}")
        os.chown(foreign, 65534, 65534)
        fcntl.flock(fd, fcntl.LOCK_EX)
        listed = json.loads(tna("gc", "--dry-run", "-j").stdout)["collected"]
        assert fake not in [c["cookie"] for c in listed]  # held: its owner runs
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        [mine] = [c for c in json.loads(tna("gc", "-j").stdout)["collected"]
                  if c["cookie"] == fake]
        assert mine["state"] == [f"ns{fake}.lock"]  # not the file root does not own
        assert not os.path.exists(lock) and os.path.exists(foreign)
        assert not os.path.exists(pin_dir)  # an empty, root-owned pin directory of it
    finally:
        for path in (lock, foreign):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(pin_dir)
