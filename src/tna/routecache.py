"""IPv4 next-hop exceptions the kernel learnt from ICMP redirects (``ip route show cache``).

Role in the flow: ``bpf_fib_lookup`` honours route and PMTU state but not the gateway of a
redirect exception, so while one exists, gateway-routed IPv4 traffic out of an interface that
accepts redirects stays on Linux.  The data path notices a redirect arriving (it sees it first)
and clears that mark only when this module, which the control side hands to it
(``control.new_datapath``), finds no redirect exception left.
"""

from __future__ import annotations

import socket

from tna.netlink import NETLINK_ROUTE, RTM_GETROUTE, RTMSG, dump

RTM_F_CLONED = 0x200
RTCF_REDIRECTED = 0x00040000


def redirect_exceptions() -> int:
    """How many IPv4 route-cache entries of the current namespace come from a redirect."""
    request = RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, RTM_F_CLONED)
    # strict checking makes the kernel honour RTM_F_CLONED: dump exceptions, not routes
    flags = (RTMSG.unpack_from(body)[8] for _, body in
             dump(NETLINK_ROUTE, RTM_GETROUTE, request, strict=True))
    return sum(1 for f in flags if f & RTM_F_CLONED and f & RTCF_REDIRECTED)
