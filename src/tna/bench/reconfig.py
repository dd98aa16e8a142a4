"""Reconfiguration latency: how long after a kernel change the fast path follows it.

Role in the flow: a benchmark of ``tna run`` (issue: live sync).  A router topology runs the
daemon; each change is made *in-process* (netlink, libnftables, an ethtool ioctl, a sysctl
write), so the start time is the moment the change is in the kernel, not a subprocess spawn.
The end time is the daemon's own monotonic timestamp (CLOCK_MONOTONIC is machine-wide):

- ``route``: no daemon work exists; the clock stops when a BPF_PROG_TEST_RUN of the attached
  program already forwards to the new route (proving the very next packet follows);
- ``egress`` (map-only): a veth peer loses/regains GRO, so the egress becomes (in)eligible;
- ``netfilter``: a forward-hook rule appears (``safe``: traffic is back on Linux; ``done``:
  the programs have the classifier), another rule is added (a new generation of the
  classifier's maps, no program change) and the table disappears (programs without it);
- ``program swap``: rp_filter toggles, which changes the program's features.

    python -m tna.bench.reconfig [--iterations N] [--json]
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tna import abi, netns
from tna.datapath import fdb, libbpf, loader
from tna.testbed import BridgeTopology, DaemonProcess, RouterTopology, Testbed

SIOCETHTOOL = 0x8946
ETHTOOL_SGRO = 0x2C
XDP_REDIRECT = 4


@dataclass
class Series:
    name: str
    goal_ms: float
    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | str]:
        s = sorted(self.samples_ms)
        return {"change": self.name, "n": len(s), "p50_ms": round(statistics.median(s), 3),
                "p99_ms": round(s[min(len(s) - 1, int(len(s) * 0.99))], 3),
                "max_ms": round(s[-1], 3), "goal_p99_ms": self.goal_ms,
                "met": s[min(len(s) - 1, int(len(s) * 0.99))] < self.goal_ms}


class Nft:
    """libnftables in-process: the change is committed when the call returns."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self.lib, self.ctx = lib, lib.nft_ctx_new(0)

    def run(self, cmd: str) -> None:
        if self.lib.nft_run_cmd_from_buffer(self.ctx, cmd.encode()) != 0:
            raise RuntimeError(f"nft: {cmd!r} failed")


def _set_gro(ifname: str, on: bool) -> None:
    req = struct.pack("=II", ETHTOOL_SGRO, int(on))
    buf = ctypes.create_string_buffer(req)
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)


def _daemon_latency(d: DaemonProcess, change: Callable[[], None], key: str,
                    pred: Callable[[dict[str, Any]], bool]) -> float:
    t0 = time.monotonic()
    change()
    entry = d.wait(lambda e: e["event"] == "reconcile" and e["done_mono"] > t0 and pred(e),
                   what=key)
    return (float(entry[key]) - t0) * 1000


def measure_route(t: RouterTopology, n: int) -> Series:
    from pyroute2 import IPRoute
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether

    series = Series("route add (first packet follows)", 10.0)
    with netns.entered(t.r), IPRoute() as ip:
        r1 = ip.link_lookup(ifname="r1")[0]
        r1_mac = ip.get_links(r1)[0].get_attr("IFLA_ADDRESS")
        prog_id = next(a.prog_id for a in loader.attached() if a.ifindex == r1)
        prog_fd = libbpf.prog_get_fd_by_id(prog_id)
        try:
            for i in range(n):
                dst = f"10.{200 + i // 250}.{i % 250}.0/24"
                frame = bytes(Ether(dst=r1_mac) / IP(src=t.h1_v4, dst=dst[:-4] + "1", ttl=64)
                              / UDP())
                t0 = time.monotonic()
                ip.route("add", dst=dst, gateway=t.h2_v4)
                verdict, _, _ = libbpf.test_run(prog_fd, frame, ingress_ifindex=r1)
                series.samples_ms.append((time.monotonic() - t0) * 1000)
                if verdict != XDP_REDIRECT:
                    raise RuntimeError(f"first packet to {dst} not forwarded (verdict {verdict})")
                ip.route("del", dst=dst, gateway=t.h2_v4)
        finally:
            import os

            os.close(prog_fd)
    return series


def measure_egress(t: RouterTopology, d: DaemonProcess, n: int) -> tuple[Series, Series]:
    """A veth peer loses GRO (r2 must stop being a target at once) and regains it."""
    lost = Series("egress lost: redirects stop (map only)", 10.0)
    back = Series("egress back: redirects resume (map only)", 10.0)

    def gro(on: bool) -> None:
        with netns.entered(t.h2):
            _set_gro("eth0", on)
    for _ in range(n):
        lost.samples_ms.append(_daemon_latency(
            d, lambda: gro(False), "safe_mono",
            lambda e: "r2" in e["preempted"] or "*" in e["preempted"]))
        back.samples_ms.append(_daemon_latency(
            d, lambda: gro(True), "done_mono",
            lambda e: "r2" in e["changes"].get("relaxed", [])))
    return lost, back


def measure_netfilter(t: RouterTopology, d: DaemonProcess, n: int) -> tuple[Series, ...]:
    safe = Series("netfilter forward rule added: traffic back on Linux", 10.0)
    done = Series("netfilter forward rule added: fast path with the classifier", 100.0)
    update = Series("rule added to a classified ruleset: new generation live", 100.0)
    back = Series("netfilter rule removed: fast path without the classifier", 100.0)
    with netns.entered(t.r):
        nft = Nft()
        for _ in range(n):
            def add() -> None:
                nft.run("add table inet tnabench; add chain inet tnabench f { type filter hook "
                        "forward priority 0; }; add rule inet tnabench f udp dport 9 drop")
            t0 = time.monotonic()
            add()

            def swapped(e: dict[str, Any], t0: float = t0) -> bool:
                return bool(e["event"] == "reconcile" and e["done_mono"] > t0
                            and "netfilter" in e["why"] and e["changes"].get("swapped"))
            e = d.wait(swapped, what="netfilter restrict")
            safe.samples_ms.append((e["safe_mono"] - t0) * 1000)
            done.samples_ms.append((e["done_mono"] - t0) * 1000)
            update.samples_ms.append(_daemon_latency(
                d, lambda: nft.run("add rule inet tnabench f udp dport 10 drop"), "done_mono",
                lambda e: "netfilter" in e["why"]))
            back.samples_ms.append(_daemon_latency(
                d, lambda: nft.run("delete table inet tnabench"), "done_mono",
                lambda e: bool(e["changes"].get("swapped"))))
    return safe, done, update, back


def measure_fdb(n: int) -> Series:
    """A static FDB entry appears: time until the daemon's mirror holds it (map only).

    The change is made with the ``bridge`` command, and the clock starts before it is spawned,
    so this over-states the latency by the spawn time (~2 ms)."""
    series = Series("FDB entry added: mirror updated (map only)", 10.0)
    with Testbed(prefix="tnarcb") as bed:
        t = BridgeTopology.build(bed, {"br0": 2})
        d = DaemonProcess(t.sw, "--resync", "3600")
        try:
            for i in range(n):
                mac = f"02:00:0b:00:{i // 256:02x}:{i % 256:02x}"
                want = bytes.fromhex(mac.replace(":", ""))
                t0 = time.monotonic()
                bed.run(t.sw, "bridge", "fdb", "add", mac, "dev", "p1", "master", "static")
                with netns.entered(t.sw):
                    while not any(bytes(abi.TnaFdbKey.from_buffer_copy(k).mac) == want
                                  for k in fdb.FdbMirror().read()):
                        if time.monotonic() - t0 > 5:
                            raise RuntimeError(f"mirror never got {mac}")
                series.samples_ms.append((time.monotonic() - t0) * 1000)
        finally:
            d.stop()
    return series


def measure_swap(t: RouterTopology, d: DaemonProcess, n: int) -> Series:
    series = Series("program swap (rp_filter toggled)", 100.0)
    with netns.entered(t.r):
        for i in range(n):
            def change(v: int = (i + 1) % 2) -> None:
                with open("/proc/sys/net/ipv4/conf/r1/rp_filter", "w") as f:
                    f.write(str(v))
            series.samples_ms.append(_daemon_latency(
                d, change, "done_mono", lambda e: "r1" in e["changes"].get("swapped", [])))
    return series


def run(iterations: int) -> list[dict[str, float | int | str]]:
    with Testbed(prefix="tnarcf") as bed:
        t = RouterTopology.build(bed)
        t.prime_neighbours()
        d = DaemonProcess(t.r, "--resync", "3600")  # periodic resyncs would only add noise
        try:
            series = [measure_route(t, iterations), *measure_egress(t, d, iterations),
                      *measure_netfilter(t, d, iterations), measure_swap(t, d, iterations)]
        finally:
            d.stop()
        if d.errors():
            raise RuntimeError(f"daemon errors: {d.errors()}")
    series.append(measure_fdb(iterations))
    return [s.summary() for s in series]


def markdown(rows: list[dict[str, float | int | str]]) -> str:
    out = ["| change | n | p50 ms | p99 ms | max ms | goal (p99) | met |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['change']} | {r['n']} | {r['p50_ms']} | {r['p99_ms']} | "
                   f"{r['max_ms']} | < {r['goal_p99_ms']} ms | {'yes' if r['met'] else 'NO'} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tna.bench.reconfig", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rows = run(a.iterations)
    print(json.dumps(rows, indent=2) if a.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
