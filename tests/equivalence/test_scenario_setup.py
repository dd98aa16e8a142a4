"""The scenario's configuration must still hold when the corpus is sent, however late the
kernel gets round to its own asynchronous work.

The one such setting today: the router's per-device IPv6 MTU (``net.ipv6.conf.r3.mtu``,
``scenarios.MTU6``).  addrconf resets it to the device MTU when the port first becomes ready,
and a veth becomes ready in link-watch work that runs after ``ip link set up`` returned.  When
that work ran after the harness' sysctl (a loaded machine), the run silently had no IPv6 MTU
on link 3: Linux, and so TNA, forwarded what the other run answered with Packet Too Big, and
the comparison blamed TNA (fw_acl_1, corpus entry fw6_over_mtu_policy).

The test makes the late link-watch happen on purpose: h3's end of link 3 comes up (and so r3
becomes ready) only after the router's next sysctl, as if link-watch had been held up until
then.  Without ``scenarios.set_ipv6_mtus``' wait the MTU is lost every time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from subprocess import CompletedProcess

import pytest

from testing.equivalence import scenarios
from tna.testbed import Testbed, wait_for

pytestmark = pytest.mark.root

PEER_UP = ("ip", "link", "set", "eth0", "up")


@dataclass
class LateLinkWatch(Testbed):
    """A testbed on which h3's port comes up only after the router's next ``sysctl``."""

    __test__ = False

    held: str = ""  # namespace whose eth0 is waiting to come up
    ready_after: list[str] = field(default_factory=list)  # the command that released it

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 30,
            input: str | None = None) -> CompletedProcess[str]:
        if argv == PEER_UP and ns.endswith("-h3") and not self.ready_after:
            self.held = ns
            return CompletedProcess(argv, 0, "", "")
        proc = super().run(ns, *argv, check=check, timeout=timeout, input=input)
        if self.held and not self.ready_after and ns.endswith("-r") and argv[0] == "sysctl":
            self.ready_after.append(" ".join(argv))
            super().run(self.held, *PEER_UP)
        return proc


def operstate(bed: Testbed, ns: str, ifname: str) -> str:
    return bed.run(ns, "cat", f"/sys/class/net/{ifname}/operstate").stdout.strip()


def test_ipv6_mtu_survives_a_late_link_watch() -> None:
    bed = LateLinkWatch(prefix="tnaeq-late")
    with bed:
        net = scenarios.build_router(bed)
        r = net.namespaces["r"]
        # positive control: the port really became ready only after the router's
        # configuration had started (the condition of the flake)
        assert bed.held and bed.ready_after, "h3's port was never held back: test is void"
        wait_for(lambda: operstate(bed, r, "r3") == "up", what="r3 to become ready")
        bed.run(r, "ip", "link", "set", "r3", "up")  # takes the RTNL: link-watch is done
        mtu = int(bed.run(r, "sysctl", "-n", "net.ipv6.conf.r3.mtu").stdout)
        assert mtu == scenarios.MTU6[3], (
            f"net.ipv6.conf.r3.mtu is {mtu}, not {scenarios.MTU6[3]}: the port became ready "
            f"after `{bed.ready_after[0][:60]}...` and addrconf reset it to the device MTU")
