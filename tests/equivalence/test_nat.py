"""The NAT gateway (scenario ``fw_nat_gateway``): TNA on vs off, frame by frame, and the NAT
actually done by the fast path.

``test_firewall`` compares the scenario with the other firewalls; this test adds the positive
control that matters for NAT: the established flows' later packets (masqueraded UDP both ways,
the UDP port forward both ways) were rewritten by the fast path, from conntrack's entries, and
what conntrack must see (the TCP handshake, ICMP errors of NATed flows) went to Linux.
"""

from __future__ import annotations

import pytest

from testing.equivalence import harness
from testing.equivalence.scenarios import SCENARIOS

pytestmark = pytest.mark.root


def test_nat_gateway_is_linux_frame_by_frame_and_nated_by_the_fast_path() -> None:
    cmp = harness.check(SCENARIOS["fw_nat_gateway"])  # raises on any divergence
    counters = cmp.b.counters
    # burst 4 and 5: nat4_udp_out2 and nat4_dnat_query2 (original), nat4_udp_reply2 and
    # nat4_dnat_answer2 (reply)
    assert counters.get("nat_original", 0) >= 2, counters
    assert counters.get("nat_reply", 0) >= 2, counters
    assert counters.get("nat_related", 0) >= 1, counters  # the ICMP error quoting a NATed flow
    assert counters.get("ct_setup", 0) >= 1, counters  # the SYN-ACK and the handshake's ACK
