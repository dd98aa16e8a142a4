"""``tna demo``: a router in namespaces, first plain Linux, then with TNA (and a forward-hook
firewall rule), then torn down.

Role in the flow: a guided tour for a new user.  It runs the real ``tna`` commands against a
throw-away topology (h1 -- r -- h2) and sends the same ping/UDP/TCP traffic before and after
``tna apply`` so the counters show which packets the fast path carried and which it punted.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

from tna import traffic
from tna.testbed import RouterTopology, Testbed


def _banner(text: str) -> None:
    print(f"\n=== {text} " + "=" * max(0, 74 - len(text)))


def _tna(ns: str, *args: str) -> str:
    print(f"$ tna --netns {ns} {shlex.join(args)}")
    proc = subprocess.run([sys.executable, "-m", "tna", "--netns", ns, *args],
                          capture_output=True, text=True, check=False)
    out = (proc.stdout + proc.stderr).rstrip()
    print("\n".join("  " + line for line in out.splitlines()))
    if proc.returncode:
        raise RuntimeError(f"tna {args[0]} failed")
    return proc.stdout


def _follow_fixes(plan_text: str) -> None:
    """Run the ``fix:`` commands ``tna plan`` printed, as an operator would."""
    for line in plan_text.splitlines():
        if line.strip().startswith("fix: "):
            cmd = line.split("fix: ", 1)[1]
            print(f"$ {cmd}")
            subprocess.run(shlex.split(cmd), check=True, capture_output=True)


def _traffic(t: RouterTopology) -> None:
    for dst in (t.h2_v4, t.h2_v6):
        ok = t.ping(t.h1, dst, "-i", "0.01", count=20).returncode == 0
        print(f"  ping h1 -> {dst:<10} 20 echo requests: {'all answered' if ok else 'LOST'}")
    for dst in (t.h2_v4, t.h2_v6):
        got = traffic.udp(t.h1, t.h2, dst, count=500)
        print(f"  udp  h1 -> {dst:<10} 500 datagrams: {got} received")
    for dst in (t.h2_v4, t.h2_v6):
        got = traffic.tcp(t.h1, t.h2, dst, size=4 << 20)
        print(f"  tcp  h1 -> {dst:<10} 4 MiB: {got} bytes received")


def run() -> int:
    start = time.monotonic()
    with Testbed(prefix="tnademo") as bed:
        _banner("topology: h1 (10.1.0.2, fd00:1::2) -- r -- h2 (10.2.0.2, fd00:2::2)")
        # veths as they come: the hosts' ends without GRO and with TX checksum offload
        t = RouterTopology.build(bed, gro_h2=False, host_csum_offload=True)
        bed.gro(t.h1, "eth0", False)
        print(f"  namespaces: {t.h1}, {t.r}, {t.h2}")
        t.prime_neighbours()

        _banner("1. plain Linux forwards")
        _traffic(t)
        _tna(t.r, "status")

        _banner("2. what TNA would do with this configuration, and what stops it")
        plan = _tna(t.r, "plan")

        _banner("3. apply TNA: on default veths it can forward nothing, and says why")
        _tna(t.r, "apply")

        _banner("4. follow the fixes it printed, then apply again")
        _follow_fixes(plan)
        _follow_fixes(_tna(t.r, "plan"))  # with GRO on, the checksum offload shows next
        _tna(t.r, "apply")
        _tna(t.r, "status")

        _banner("5. the same traffic, now carried by the fast path")
        _traffic(t)
        _tna(t.r, "stats")

        _banner("6. what the fast path cannot do exactly, Linux still does")
        out = t.ping(t.h1, t.h2_v4, "-t", "1").stdout
        line = next((x for x in out.splitlines() if "exceeded" in x), "(no reply)")
        print(f"  ping -t 1 h1 -> h2: {line.strip()}")
        _tna(t.r, "stats")

        _banner("7. an nftables forward rule: the fast path enforces it")
        rules = ("table inet demo {\n  chain forward {\n    type filter hook forward priority 0;"
                 "\n    udp dport 9999 counter drop\n  }\n}\n")
        print("$ nft -f - <<EOF\n" + rules + "EOF")
        bed.run(t.r, "nft", "-f", "-", input=rules)
        _tna(t.r, "apply")
        for port in (9999, 5300):
            got = traffic.udp(t.h1, t.h2, t.h2_v4, count=100, port=port)
            print(f"  udp  h1 -> {t.h2_v4}:{port} 100 datagrams: {got} received")
        _tna(t.r, "stats")

        _banner("8. detach: the kernel carries on alone")
        _tna(t.r, "detach")
        ok = t.ping(t.h1, t.h2_v4).returncode == 0
        print(f"  ping h1 -> h2 after detach: {'answered' if ok else 'LOST'}")
    print(f"\ndemo finished in {time.monotonic() - start:.1f}s; namespaces removed")
    return 0
