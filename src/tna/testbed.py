"""Throw-away topologies in network namespaces, for the demo, the tests and the benchmarks.

Role in the flow: nothing in the data path uses this module.  It builds hosts and routers out
of namespaces and veth pairs with ``ip``, and tears them down again, detaching TNA first so no
pinned BPF object outlives its namespace.  It never touches the caller's namespace.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class CommandError(Exception):
    """A testbed command that failed; carries what it printed."""


def sh(argv: Sequence[str], *, check: bool = True, timeout: float = 30,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          input=input, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"{shlex.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02,
             what: str = "condition") -> None:
    """Poll ``predicate`` until it holds; raise with ``what`` when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Testbed:
    """A set of namespaces that belong together and are removed together."""

    __test__ = False  # not a pytest test class

    prefix: str = "tna"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        """Create namespace ``<prefix>-<tag>-<role>`` with loopback up; return its name."""
        name = f"{self.prefix}-{self.tag}-{role}"
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.run(name, "ip", "link", "set", "lo", "up")
        # New interfaces skip IPv6 DAD so addresses are usable at once.
        self.sysctl(name, "net.ipv6.conf.default.accept_dad", "0")
        self.sysctl(name, "net.ipv6.conf.all.accept_dad", "0")
        return name

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        return sh(["ip", "netns", "exec", ns, *argv], check=check, timeout=timeout, input=input)

    def sysctl(self, ns: str, key: str, value: str) -> None:
        self.run(ns, "sysctl", "-qw", f"{key}={value}")

    def veth(self, ns_a: str, if_a: str, ns_b: str, if_b: str, mtu: int | None = None) -> None:
        """A veth pair with one end in each namespace, both up."""
        tmp_a, tmp_b = f"tv{secrets.token_hex(4)}", f"tv{secrets.token_hex(4)}"
        sh(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        sh(["ip", "link", "set", tmp_a, "netns", ns_a, "name", if_a])
        sh(["ip", "link", "set", tmp_b, "netns", ns_b, "name", if_b])
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            if mtu:
                self.run(ns, "ip", "link", "set", ifname, "mtu", str(mtu))
            self.run(ns, "ip", "link", "set", ifname, "up")

    def gro(self, ns: str, ifname: str, on: bool = True) -> None:
        self.run(ns, "ethtool", "-K", ifname, "gro", "on" if on else "off")

    def tx_csum_offload(self, ns: str, ifname: str, on: bool) -> None:
        self.run(ns, "ethtool", "-K", ifname, "tx", "on" if on else "off")

    def destroy(self) -> None:
        """Detach TNA from every namespace, then delete them; safe to call twice."""
        from tna import control, fdbrefresh, watcher  # late: the testbed works without BPF
        from tna.netns import entered

        for name in reversed(self.namespaces):
            if os.path.exists(f"/run/netns/{name}"):
                try:
                    with entered(name):
                        watcher.stop(keep=False)  # 'tna apply' leaves one
                        control.detach()
                        fdbrefresh.stop_refresher()
                except Exception:  # teardown must go on whatever detach says
                    pass
                sh(["ip", "netns", "del", name], check=False)
        self.namespaces.clear()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


@dataclass
class RouterTopology:
    """h1 -- r -- h2: two hosts on either side of a router, IPv4 and IPv6.

    The hosts' veths have GRO on, so the router may redirect XDP frames into them, and by
    default compute their checksums in software, as frames arriving from a wire have them
    (with offload on, a veth hands the router partial checksums, which TNA leaves to Linux).
    """

    bed: Testbed
    h1: str = ""
    r: str = ""
    h2: str = ""
    h1_v4: str = "10.1.0.2"
    r1_v4: str = "10.1.0.1"
    r2_v4: str = "10.2.0.1"
    h2_v4: str = "10.2.0.2"
    h1_v6: str = "fd00:1::2"
    r1_v6: str = "fd00:1::1"
    r2_v6: str = "fd00:2::1"
    h2_v6: str = "fd00:2::2"

    @classmethod
    def build(cls, bed: Testbed, *, mtu2: int | None = None, gro_h2: bool = True,
              host_csum_offload: bool = False) -> RouterTopology:
        t = cls(bed)
        t.h1, t.r, t.h2 = bed.ns("h1"), bed.ns("r"), bed.ns("h2")
        bed.veth(t.h1, "eth0", t.r, "r1")
        bed.veth(t.r, "r2", t.h2, "eth0", mtu=mtu2)
        bed.gro(t.h1, "eth0")
        bed.gro(t.h2, "eth0", gro_h2)
        for host in (t.h1, t.h2):
            bed.tx_csum_offload(host, "eth0", host_csum_offload)
        bed.sysctl(t.r, "net.ipv4.ip_forward", "1")
        bed.sysctl(t.r, "net.ipv6.conf.all.forwarding", "1")
        for ns, ifname, addrs in ((t.h1, "eth0", (f"{t.h1_v4}/24", f"{t.h1_v6}/64")),
                                  (t.r, "r1", (f"{t.r1_v4}/24", f"{t.r1_v6}/64")),
                                  (t.r, "r2", (f"{t.r2_v4}/24", f"{t.r2_v6}/64")),
                                  (t.h2, "eth0", (f"{t.h2_v4}/24", f"{t.h2_v6}/64"))):
            for addr in addrs:
                bed.run(ns, "ip", "addr", "add", addr, "dev", ifname)
        for ns, gw4, gw6 in ((t.h1, t.r1_v4, t.r1_v6), (t.h2, t.r2_v4, t.r2_v6)):
            bed.run(ns, "ip", "route", "add", "default", "via", gw4)
            bed.run(ns, "ip", "-6", "route", "add", "default", "via", gw6)
        return t

    def ping(self, src: str, dst: str, *extra: str, count: int = 1
             ) -> subprocess.CompletedProcess[str]:
        return self.bed.run(src, "ping", "-n", "-c", str(count), "-W", "1", *extra, dst,
                            check=False)

    def prime_neighbours(self) -> None:
        """One ping each way and family, so the router has resolved both neighbours."""
        for dst in (self.h2_v4, self.h2_v6):
            wait_for(functools.partial(self._answers, dst), timeout=10, what=f"h1 reaching {dst}")

    def _answers(self, dst: str) -> bool:
        return self.ping(self.h1, dst).returncode == 0


class DaemonProcess:
    """``tna --netns NS run`` in the background, its JSON log lines collected as they come."""

    def __init__(self, ns: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tna", "--netns", ns, "run", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait(lambda e: e["event"] == "reconcile" and "start" in e["why"], what="start")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 10,
             what: str = "log line") -> dict[str, Any]:
        """The first log line matching ``pred``, waiting for it to appear."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            found[:] = [e for e in list(self.lines) if pred(e)]
            return bool(found)
        if self.proc.poll() is not None and not seen():
            raise RuntimeError(f"tna run exited {self.proc.returncode}: "
                               f"{self.proc.stderr.read() if self.proc.stderr else ''}")
        wait_for(seen, timeout=timeout, what=f"daemon {what}; log: {self.lines[-5:]}")
        return found[0]

    def reconciled_after(self, t0: float, what: str = "reconciliation") -> dict[str, Any]:
        """The first reconciliation that finished after ``t0`` (time.monotonic())."""
        return self.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0,
                         what=what)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        return rc

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.lines if e["event"] == "error"]


@dataclass
class BridgeTopology:
    """Hosts on Linux bridges in one switch namespace ``sw``; optionally routed between them.

    ``bridges`` maps a bridge name to its number of hosts: ``{"br0": 3}`` is h1, h2, h3 on br0
    through ports p1, p2, p3.  Bridge *i* (in order) has 10.(10+i).0.0/24 and fd00:(10+i)::/64;
    host *k* of it is .k / ::k, the bridge's own address (``svi=True``) .254 / ::fe, and hosts
    route through it.  Host MACs are fixed (02:00:0a:<i>:00:<k>), so frames can be written by
    hand.  Hosts have GRO on (so their ports take XDP frames) and software checksums, like the
    router topology.
    """

    bed: Testbed
    sw: str = ""
    hosts: dict[str, str] = field(default_factory=dict)  # host -> namespace
    port: dict[str, str] = field(default_factory=dict)  # host -> its port in sw
    bridge: dict[str, str] = field(default_factory=dict)  # host -> its bridge
    v4: dict[str, str] = field(default_factory=dict)
    v6: dict[str, str] = field(default_factory=dict)
    mac: dict[str, str] = field(default_factory=dict)
    svi_v4: dict[str, str] = field(default_factory=dict)  # bridge -> its address
    svi_v6: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, bed: Testbed, bridges: dict[str, int] | None = None, *, svi: bool = False,
              ageing_cs: int | None = None, stp: bool = False) -> BridgeTopology:
        t = cls(bed)
        t.sw = bed.ns("sw")
        n = 0
        for i, (br, count) in enumerate((bridges or {"br0": 3}).items()):
            args = ["ip", "link", "add", br, "type", "bridge"]
            if ageing_cs is not None:
                args += ["ageing_time", str(ageing_cs)]
            if stp:
                args += ["stp_state", "1", "forward_delay", "200"]
            bed.run(t.sw, *args)
            bed.run(t.sw, "ip", "link", "set", br, "address", f"02:00:0a:{i:02x}:00:fe")
            bed.run(t.sw, "ip", "link", "set", br, "up")
            if svi:
                t.svi_v4[br], t.svi_v6[br] = f"10.{10 + i}.0.254", f"fd00:{10 + i}::fe"
                bed.run(t.sw, "ip", "addr", "add", f"{t.svi_v4[br]}/24", "dev", br)
                bed.run(t.sw, "ip", "addr", "add", f"{t.svi_v6[br]}/64", "dev", br)
            for k in range(1, count + 1):
                n += 1
                host, port = f"h{n}", f"p{n}"
                t.hosts[host], t.port[host], t.bridge[host] = bed.ns(host), port, br
                t.v4[host], t.v6[host] = f"10.{10 + i}.0.{k}", f"fd00:{10 + i}::{k}"
                t.mac[host] = f"02:00:0a:{i:02x}:00:{k:02x}"
                bed.veth(t.hosts[host], "eth0", t.sw, port)
                bed.run(t.hosts[host], "ip", "link", "set", "eth0", "address", t.mac[host])
                bed.gro(t.hosts[host], "eth0")
                bed.tx_csum_offload(t.hosts[host], "eth0", False)
                bed.run(t.sw, "ip", "link", "set", port, "master", br)
                bed.run(t.hosts[host], "ip", "addr", "add", f"{t.v4[host]}/24", "dev", "eth0")
                bed.run(t.hosts[host], "ip", "addr", "add", f"{t.v6[host]}/64", "dev", "eth0")
                if svi:
                    bed.run(t.hosts[host], "ip", "route", "add", "default", "via", t.svi_v4[br])
                    bed.run(t.hosts[host], "ip", "-6", "route", "add", "default", "via",
                            t.svi_v6[br])
        if svi:
            bed.sysctl(t.sw, "net.ipv4.ip_forward", "1")
            bed.sysctl(t.sw, "net.ipv6.conf.all.forwarding", "1")
        return t

    def ping(self, src: str, dst: str, *extra: str, count: int = 1
             ) -> subprocess.CompletedProcess[str]:
        """Ping from host ``src`` to ``dst`` (a host name or an address)."""
        addr = self.v4.get(dst, dst)
        return self.bed.run(self.hosts[src], "ping", "-n", "-c", str(count), "-W", "1",
                            *extra, addr, check=False)

    def reaches(self, src: str, dst: str) -> bool:
        return self.ping(src, dst).returncode == 0

    def prime(self, *pairs: tuple[str, str]) -> None:
        """A ping each way between the pairs, so the bridges have learnt every host."""
        for a, b in pairs:
            wait_for(functools.partial(self.reaches, a, b), timeout=10,
                     what=f"{a} reaching {b}")

    def fdb_port(self, host: str) -> str | None:
        """The port the kernel's FDB has ``host`` behind, if any."""
        out = self.bed.run(self.sw, "bridge", "fdb", "show", "br", self.bridge[host]).stdout
        for line in out.splitlines():
            words = line.split()
            if words and words[0] == self.mac[host] and "permanent" not in words:
                return words[words.index("dev") + 1]
        return None


def run_tna(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``tna --netns NS ARGS`` as a user would run it; with ``check``, fail on an error."""
    proc = subprocess.run([sys.executable, "-m", "tna", "--netns", ns, *args],
                          capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"tna {' '.join(args)} failed: {proc.stderr}")
    return proc


def tna_stats(ns: str) -> dict[str, Any]:
    """``tna stats --json`` of namespace ``ns``."""
    result: dict[str, Any] = json.loads(run_tna(ns, "stats", "--json").stdout)
    return result
