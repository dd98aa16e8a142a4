"""The conntrack comparison must catch a conntrack table that differs (a test of the test).

The TNA-on run of a NAT gateway scenario is tampered with after its corpus, before the
snapshot: one entry's timeout set far beyond the tolerance, another's mark changed, a third
deleted.  The frames are untouched, so only the conntrack comparison can see it; it must
report each change, attributed to its entry.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.natflows import SCENARIOS
from testing.equivalence.scenarios import Network
from tna.netns import entered
from tna.testbed import Testbed

pytestmark = pytest.mark.root

SCENARIO = "nat_nft_liberal0"
RETRANS = "tcp 10.1.0.2:41203 > 10.2.0.2:80 | 10.2.0.2:80 > 10.2.0.1:41203"
OOW = "tcp 10.1.0.2:41204 > 10.2.0.2:80 | 10.2.0.2:80 > 10.2.0.1:41204"
DNAT_UDP = "udp 10.2.0.2:40401 > 10.2.0.1:8053 | 10.3.0.2:53 > 10.2.0.2:40401"


def _tuple(proto: int, src: str, sport: int, dst: str, dport: int) -> object:
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    return NFCTAttrTuple(saddr=src, daddr=dst, proto=proto, sport=sport, dport=dport)


def tamper(bed: Testbed, net: Network) -> None:
    """Through ctnetlink, as conntrack-tools would (``conntrack -U`` refuses to update an
    entry with NAT: it sends the NAT status bits back, which the kernel does not let change)."""
    from pyroute2 import NFCTSocket

    with entered(net.namespaces["r"]), NFCTSocket() as sock:
        sock.entry("set", timeout=5000, tuple_orig=_tuple(6, "10.1.0.2", 41203, "10.2.0.2", 80))
        sock.entry("set", mark=7, tuple_orig=_tuple(6, "10.1.0.2", 41204, "10.2.0.2", 80))
        sock.entry("del", tuple_orig=_tuple(17, "10.2.0.2", 40401, "10.2.0.1", 8053))


def test_a_different_conntrack_table_is_a_divergence() -> None:
    scenario = SCENARIOS[SCENARIO]
    tampered = harness.Mode("TNA on, conntrack tampered", True, tamper=tamper)
    cmp = harness.compare(scenario, scenario.corpus(), harness.OFF, tampered)
    assert not cmp.differences, "control: the frames were not touched\n" + cmp.report()
    assert not cmp.equal, "the harness did not notice a different conntrack table"
    found = {(d.key, d.what.split(":")[0]) for d in cmp.ct_differences}
    assert (RETRANS, "timeout") in found, cmp.report()
    assert (OOW, "mark") in found, cmp.report()
    assert (DNAT_UDP, "only in a") in found, cmp.report()
    assert len(cmp.ct_differences) == 3, cmp.report()
    report = cmp.report()
    assert "conntrack table: 3 difference(s)" in report and "only with TNA off" in report
