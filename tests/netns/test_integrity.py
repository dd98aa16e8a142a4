"""Control-plane integrity under faults (issue 14): one owner per namespace, programs and maps
as one unit, pin directories only root controls, limits and bad inputs.

Each fault scenario runs a flood through the router, adds an nft forward ``drop`` rule after
the fault, and asserts that after a bound not one datagram reaches the far host — with a
positive control first (the flood flows, on the fast path).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tna import abi, netns, owner, sync
from tna.datapath import libbpf, pins, status
from tna.testbed import DaemonProcess, RouterTopology, Testbed, run_tna, tna_stats, wait_for

pytestmark = pytest.mark.root

BOUND_S = 0.25  # from nft returning to the last datagram that may still arrive
PORT = 5301

_SERVER = """
import socket, sys, time, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(float(sys.argv[3]))
print("ready", flush=True)
times = []
try:
    while True:
        s.recv(2048)
        times.append(time.monotonic())
except TimeoutError:
    pass
print(json.dumps(times), flush=True)
"""

_CLIENT = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    s.sendto(b"f" * 64, (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.002)  # a few hundred datagrams a second
"""


@dataclass
class Flood:
    """UDP from h1 to h2 at a few hundred pps; the receiver records each arrival
    (CLOCK_MONOTONIC is the same in every network namespace)."""

    topo: RouterTopology
    seconds: float

    def __enter__(self) -> Flood:
        t = self.topo
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", t.h2, sys.executable, "-c", _SERVER, t.h2_v4, str(PORT),
             "1.0"], stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        assert self.server.stdout.readline().strip() == "ready"
        self.client = subprocess.Popen(
            ["ip", "netns", "exec", t.h1, sys.executable, "-c", _CLIENT, t.h2_v4, str(PORT),
             str(self.seconds)])
        self.started = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        for p in (self.client, self.server):
            if p.poll() is None:
                p.kill()
                p.wait()

    def arrivals(self) -> list[float]:
        self.client.wait(timeout=self.seconds + 30)
        out, _ = self.server.communicate(timeout=30)
        return [float(x) for x in json.loads(out.strip().splitlines()[-1])]


def forwarded(ns: str) -> int:
    return int(tna_stats(ns)["forwarded_packets"])


def add_forward_chain(t: RouterTopology) -> None:
    """A forward-hook chain the fast path models (its firewall is on), so that a rule added
    later is a map-only change: the case where maps nobody reads would go unnoticed."""
    t.bed.run(t.r, "nft", "-f", "-", input=(
        "table inet tnaprobe {\n chain probe {\n  type filter hook forward priority 0;\n"
        "  udp dport 9 drop\n }\n}\n"))


def add_drop_rule(t: RouterTopology) -> float:
    """An nft forward-hook drop for the flood; returns when nft returned."""
    t.bed.run(t.r, "nft", "add", "rule", "inet", "tnaprobe", "probe", "udp", "dport",
              str(PORT), "drop")
    return time.monotonic()


def assert_rule_holds(t: RouterTopology, fault: str) -> None:
    """Flood, check it flows on the fast path, add the rule, check nothing passes it."""
    before = forwarded(t.r)
    with Flood(t, seconds=2.0) as flood:
        wait_for(lambda: forwarded(t.r) - before >= 50, timeout=5,
                 what=f"the flood on the fast path after {fault}")
        rule_at = add_drop_rule(t)
        arrivals = flood.arrivals()
    passed = [a for a in arrivals if a < rule_at]
    late = [round(a - rule_at, 4) for a in arrivals if a > rule_at + BOUND_S]
    assert len(passed) >= 50, f"positive control: the flood flowed before the rule ({fault})"
    assert late == [], f"{len(late)} datagrams passed the drop rule after {fault}: {late[:5]}"


def xdp_programs(ns: str) -> dict[int, tuple[int, str]]:
    with netns.entered(ns):
        return status.xdp_programs()


def pin_dir_of(ns: str) -> str:
    with netns.entered(ns):
        return pins.pin_dir()


@pytest.fixture
def topo() -> Iterator[RouterTopology]:
    with Testbed(prefix="tnaown") as bed:
        t = RouterTopology.build(bed)
        add_forward_chain(t)
        t.prime_neighbours()
        yield t


def _stop(d: DaemonProcess) -> None:
    if d.proc.poll() is None:
        d.stop()


# ---- programs and their maps stay one unit --------------------------------------------------

def test_pins_removed_under_run(topo: RouterTopology) -> None:
    d = DaemonProcess(topo.r)
    try:
        pin = pin_dir_of(topo.r)
        assert os.path.exists(os.path.join(pin, "tna_ifaces"))  # control
        shutil.rmtree(pin)
        assert_rule_holds(topo, "the pins were removed")
        d.wait(lambda e: e["event"] == "warning" and "re-pinned" in e["message"],
               what="the re-pin warning")
        assert os.path.exists(os.path.join(pin, "tna_ifaces"))
        rows = json.loads(run_tna(topo.r, "status", "--json").stdout)
        assert {r["ifname"] for r in rows["interfaces"]} == {"r1", "r2"}
        assert rows["daemon"]["pid"] == d.proc.pid
    finally:
        _stop(d)
    assert d.errors() == []


def test_pins_moved_under_run(topo: RouterTopology) -> None:
    d = DaemonProcess(topo.r)
    pin = pin_dir_of(topo.r)
    moved = pin + "-moved"
    try:
        os.rename(pin, moved)
        assert_rule_holds(topo, "the pins were moved")
        d.wait(lambda e: e["event"] == "warning" and "re-pinned" in e["message"],
               what="the re-pin warning")
    finally:
        _stop(d)
        shutil.rmtree(moved, ignore_errors=True)
    assert xdp_programs(topo.r) == {}  # SIGTERM detached everything


def test_apply_recognises_its_programs_after_the_pins_moved(topo: RouterTopology) -> None:
    run_tna(topo.r, "apply")
    pin = pin_dir_of(topo.r)
    moved = pin + "-moved"
    os.rename(pin, moved)  # the link pins move too: the programs stay attached
    try:
        assert len(xdp_programs(topo.r)) == 2  # control
        rows = json.loads(run_tna(topo.r, "status", "--json").stdout)["interfaces"]
        assert {r["ifname"] for r in rows} == {"r1", "r2"}  # recognised without pins
        again = run_tna(topo.r, "apply")  # the watcher hands over, apply claims the links
        assert "fast path on 2 interface(s): r1, r2" in again.stdout  # not taken as foreign
        # put back by apply, or already by the watcher's audit (whichever came first)
        assert os.path.exists(os.path.join(pin, "tna_ifaces"))
        assert "2 interface(s)" in run_tna(topo.r, "detach").stdout
        assert xdp_programs(topo.r) == {}
    finally:
        shutil.rmtree(moved, ignore_errors=True)


def test_programs_of_another_version_are_replaced_not_fed(
        topo: RouterTopology, monkeypatch: pytest.MonkeyPatch) -> None:
    """An upgrade: programs of another TNA version are attached (here: this build told that
    its tna_fw_tables values are 8 bytes longer than those the running programs read). Apply
    must not write its layout into their maps; it detaches them and loads its own, on fresh
    maps, with a warning."""
    from tna import control
    from tna.datapath import program

    run_tna(topo.r, "apply")
    before = xdp_programs(topo.r)
    assert len(before) == 2  # control: our programs run
    warnings: list[str] = []
    with netns.entered(topo.r):
        # control: this build recognises them as its own (nothing foreign, nothing replaced)
        assert program.foreign_layout(pins.prog_maps(next(iter(before.values()))[0]) or {}) == []
        shapes = dict(program.object_shapes())
        key, value = shapes["tna_fw_tables"]
        shapes["tna_fw_tables"] = (key, value + 8)
        monkeypatch.setitem(program._shapes, str(abi.xdp_object()), shapes)
        datapath = control.new_datapath()
        datapath.warn = warnings.append
        control.apply(topo.r, datapath)
    after = xdp_programs(topo.r)
    assert any("another version" in w and "tna_fw_tables" in w for w in warnings), warnings
    assert set(after) == set(before)
    assert {p for p, _ in after.values()}.isdisjoint(p for p, _ in before.values())
    assert "2 interface(s)" in run_tna(topo.r, "detach").stdout


# ---- one owner -------------------------------------------------------------------------------

def _start_run(ns: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tna", "--netns", ns, "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_daemons_started_together_50_times(bed: Testbed) -> None:
    ns = bed.ns("r")
    bed.run(ns, "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb")
    bed.run(ns, "ip", "link", "set", "va", "up")
    bed.run(ns, "ip", "link", "set", "vb", "up")
    for trial in range(50):
        procs = [_start_run(ns), _start_run(ns)]
        try:
            wait_for(lambda ps=procs: any(p.poll() is not None for p in ps),  # type: ignore[misc]
                     timeout=20, what=f"one of two daemons to give up (trial {trial})")
            loser = next(p for p in procs if p.poll() is not None)
            winner = next(p for p in procs if p is not loser)
            _, err = loser.communicate()
            assert loser.returncode == 1, err
            assert err.count("\n") == 1 and "already manages this namespace" in err, err
            assert winner.poll() is None, f"trial {trial}: both exited"
            doc = json.loads(run_tna(ns, "status", "--json").stdout)
            assert doc["daemon"] is not None and doc["daemon"]["pid"] == winner.pid
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    p.communicate(timeout=20)


def _holder(ns: str) -> dict[str, object] | None:
    with netns.entered(ns):
        return owner.holder()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_the_watcher_apply_leaves_owns_the_namespace(topo: RouterTopology) -> None:
    """apply hands its lock to the watcher it starts; a later apply and 'tna run' take over
    from it (it pins its links, then lets the lock go); apply and detach refuse a run."""
    run_tna(topo.r, "apply")
    first = _holder(topo.r)
    assert first is not None and first["role"] == "watch", first
    run_tna(topo.r, "apply")  # takes over from the first watcher, hands to a second
    second = _holder(topo.r)
    assert second is not None and second["role"] == "watch", second
    assert second["pid"] != first["pid"] and not _alive(int(str(first["pid"])))
    assert len(xdp_programs(topo.r)) == 2
    d = DaemonProcess(topo.r)  # takes over from the watcher and adopts its links
    try:
        assert _holder(topo.r) == {"pid": d.proc.pid, "role": "run"}
        wait_for(lambda: not _alive(int(str(second["pid"]))), timeout=5,
                 what="the second watcher gone")
        assert d.lines[0]["event"] == "start" and len(d.lines[0]["adopted"]) == 2
        for cmd in ("apply", "detach"):
            refused = run_tna(topo.r, cmd, check=False)
            assert refused.returncode == 1 and "manages this namespace" in refused.stderr
        assert_rule_holds(topo, "apply and detach were refused under run")
    finally:
        _stop(d)
    assert _holder(topo.r) is None and xdp_programs(topo.r) == {}


def test_two_daemons_drop_rule_holds(topo: RouterTopology) -> None:
    procs = [_start_run(topo.r), _start_run(topo.r)]
    try:
        wait_for(lambda: any(p.poll() is not None for p in procs), timeout=20,
                 what="one of two daemons to give up")
        wait_for(lambda: len(xdp_programs(topo.r)) == 2, timeout=10, what="the fast path")
        assert_rule_holds(topo, "two daemons started at once")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.communicate(timeout=20)
    assert xdp_programs(topo.r) == {}


def test_sigkill_and_pid_reuse_block_nothing(topo: RouterTopology) -> None:
    d = DaemonProcess(topo.r)
    d.proc.kill()  # SIGKILL: the kernel releases its links and its lock
    d.proc.wait()
    wait_for(lambda: xdp_programs(topo.r) == {}, timeout=5, what="links released")
    with netns.entered(topo.r):
        # "PID reuse": the dead daemon's state file and lock record name a live process
        with open(sync.state_path(), "w") as f:
            json.dump({"pid": os.getpid(), "cycles": 1, "errors": 0, "last": None}, f)
        with open(owner.lock_path(), "w") as f:
            json.dump({"pid": os.getpid(), "role": "run"}, f)
        assert sync.read_state() is None and owner.holder() is None
    assert json.loads(run_tna(topo.r, "status", "--json").stdout)["daemon"] is None
    run_tna(topo.r, "apply")  # not blocked by a live but unrelated pid
    run_tna(topo.r, "detach")
    d2 = DaemonProcess(topo.r)
    try:
        assert json.loads(run_tna(topo.r, "status", "--json").stdout)["daemon"]["pid"] \
            == d2.proc.pid
        assert_rule_holds(topo, "SIGKILL and a reused pid")
    finally:
        _stop(d2)


# ---- a pin directory only root controls ------------------------------------------------------

def _private_bpffs(script: str, ns: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a private mount namespace over a private bpffs: the real /sys/fs/bpf
    (and every other test using it) is never touched.  $TNA runs the command."""
    tna = f"{sys.executable} -m tna --netns {ns}"
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-ec",
         f"mount -t bpf bpf /sys/fs/bpf\nTNA='{tna}'\n{script}"],
        capture_output=True, text=True, timeout=60, env={**os.environ})


@pytest.mark.parametrize("setup, says", [
    ("mkdir /sys/fs/bpf/tna && chown 65534 /sys/fs/bpf/tna", "owned by uid 65534"),
    ("mkdir -m 0777 /sys/fs/bpf/tna", "world-writable"),
    ("mkdir /tmp/tna-elsewhere-$$ && ln -s /tmp/tna-elsewhere-$$ /sys/fs/bpf/tna", "symlink"),
])
def test_pin_dir_of_another_user_is_refused(topo: RouterTopology, setup: str,
                                             says: str) -> None:
    assert topo.ping(topo.h1, topo.h2_v4).returncode == 0  # control: Linux forwards
    for cmd in ("apply", "run"):
        proc = _private_bpffs(f"{setup}\n$TNA {cmd} && exit 9 || exit $?", topo.r)
        assert proc.returncode == 1, proc
        line = proc.stderr.strip()
        assert "\n" not in line and says in line and "refusing" in line, line
    assert xdp_programs(topo.r) == {}  # nothing attached: Linux alone, rules hold
    rule_at = add_drop_rule(topo)
    with Flood(topo, seconds=1.0) as flood:
        assert [a for a in flood.arrivals() if a > rule_at] == []


def test_read_only_and_missing_bpffs_are_one_line_errors(topo: RouterTopology) -> None:
    ro = _private_bpffs("mount -o remount,ro /sys/fs/bpf\n$TNA apply", topo.r)
    assert ro.returncode == 1 and ro.stderr.count("\n") == 1, ro
    assert "Read-only file system" in ro.stderr and "Traceback" not in ro.stderr
    gone = _private_bpffs("umount /sys/fs/bpf\nmount -t tmpfs -o ro none /sys/fs\n$TNA apply",
                          topo.r)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1, gone
    assert "bpffs" in gone.stderr
    assert xdp_programs(topo.r) == {}


def test_detach_keeps_the_root_pin_directory(topo: RouterTopology) -> None:
    run_tna(topo.r, "apply")
    root = os.path.dirname(pin_dir_of(topo.r))
    st = os.lstat(root)
    assert st.st_uid == 0 and st.st_mode & 0o777 == 0o700
    assert os.lstat(pin_dir_of(topo.r)).st_mode & 0o777 == 0o700
    assert os.lstat(owner.STATE_DIR).st_mode & 0o777 == 0o700
    with netns.entered(topo.r):
        lock = owner.lock_path()
    assert os.path.exists(lock)  # control: apply held the namespace's lock
    run_tna(topo.r, "detach")
    assert os.path.isdir(root)  # never removed: nobody can race its re-creation
    assert not os.path.exists(lock)  # detach leaves nothing to own behind


BPF_MAP_TYPE_LRU_HASH = 9


def test_pinned_map_of_an_older_layout_is_a_one_line_error(topo: RouterTopology) -> None:
    """A tna_ct_last pinned by an older TNA (an LRU hash of 40-byte keys, before it became an
    array of buckets) is not shared with this build's programs: apply says so in one line and
    attaches nothing; detach clears the pins, and apply works again."""
    run_tna(topo.r, "apply")  # control
    assert xdp_programs(topo.r)
    run_tna(topo.r, "detach")
    with netns.entered(topo.r):
        path = os.path.join(pins.make_pin_dir(), "tna_ct_last")
        fd = libbpf.check(libbpf.lib().bpf_map_create(BPF_MAP_TYPE_LRU_HASH, b"tna_ct_last",
                                                       40, 32, 1024, None), "bpf_map_create")
        try:
            libbpf.obj_pin(fd, path)
        finally:
            os.close(fd)
    bad = run_tna(topo.r, "apply", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad
    assert "another TNA version" in bad.stderr and "Traceback" not in bad.stderr
    assert xdp_programs(topo.r) == {}
    run_tna(topo.r, "detach")
    run_tna(topo.r, "apply")
    assert xdp_programs(topo.r)


# ---- limits and inputs -----------------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "1e-9", "-1", "0", "1e9"])
def test_resync_values_are_validated(topo: RouterTopology, value: str) -> None:
    proc = run_tna(topo.r, "run", "--resync", value, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc
    assert "--resync must be a number of seconds" in proc.stderr


def test_broken_pipe_is_quiet(topo: RouterTopology) -> None:
    run_tna(topo.r, "apply")
    for cmd in ("status", "stats", "show", "plan"):
        proc = subprocess.run(f"{sys.executable} -m tna --netns {topo.r} {cmd} | head -c 0",
                              shell=True, capture_output=True, text=True, timeout=60)
        assert proc.stderr == "", (cmd, proc.stderr)


def test_failed_apply_leaves_nothing_behind(topo: RouterTopology,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tna import cli
    from tna.datapath import loader
    from tna.datapath.pins import DatapathError

    real = loader.create_link
    calls: list[int] = []

    def fail_second(ifindex: int, prog_fd: int) -> int:
        calls.append(ifindex)
        if len(calls) == 2:
            raise DatapathError("forced failure")
        return real(ifindex, prog_fd)

    monkeypatch.setattr(loader, "create_link", fail_second)
    with netns.entered(topo.r):
        assert cli.main(["apply"]) == 1
        assert len(calls) == 2  # control: the first interface had been attached
        assert status.xdp_programs() == {}
        assert not os.path.exists(pins.pin_dir())
    assert topo.ping(topo.h1, topo.h2_v4).returncode == 0


def test_300_interfaces(bed: Testbed) -> None:
    ns = bed.ns("r")
    bed.sysctl(ns, "net.ipv4.ip_forward", "1")
    batch = "".join(f"link add v{i}a type veth peer name v{i}b\n" for i in range(150))
    bed.run(ns, "ip", "-batch", "-", input=batch)
    up = "".join(f"link set v{i}{s} up\n" for i in range(150) for s in "ab")
    bed.run(ns, "ip", "-batch", "-", input=up)
    for i in range(150):
        bed.run(ns, "ip", "addr", "add", f"10.{i // 100}.{i % 100}.1/24", "dev", f"v{i}a")
    doc = json.loads(run_tna(ns, "apply", "--json").stdout)
    fast = [i for i in doc["interfaces"] if i["features"] is not None or i["egress"]]
    left = [i for i in doc["interfaces"]
            if any(s["reason"] == "iface_limit" for s in i["slow_path"])]
    assert len(fast) == 255 and len(left) == 300 - 255
    assert len(xdp_programs(ns)) == sum(1 for i in fast if i["features"] is not None)
    assert len(json.loads(run_tna(ns, "status", "--json").stdout)["interfaces"]) == \
        len(xdp_programs(ns))
    run_tna(ns, "detach")
    assert xdp_programs(ns) == {}
