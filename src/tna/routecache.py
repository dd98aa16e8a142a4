"""IPv4 next-hop exceptions the kernel learnt from ICMP redirects (``ip route show cache``).

Role in the flow: ``bpf_fib_lookup`` honours route and PMTU state but not the gateway of a
redirect exception, so while one exists, gateway-routed IPv4 traffic out of an interface that
accepts redirects stays on Linux.  The data path notices a redirect arriving (it sees it first)
and the loader clears that mark only when this module finds no redirect exception left.
"""

from __future__ import annotations

import socket
import struct

from tna.netdev_genl import NLMSG_DONE, NLMSG_ERROR, NetlinkError

RTM_GETROUTE = 26
RTM_F_CLONED = 0x200
RTCF_REDIRECTED = 0x00040000
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12
_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")


def redirect_exceptions() -> int:
    """How many IPv4 route-cache entries of the current namespace come from a redirect."""
    request = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, RTM_F_CLONED)
    count = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        # strict checking makes the kernel honour RTM_F_CLONED: dump exceptions, not routes
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(request), RTM_GETROUTE,
                                 NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + request)
        while True:
            data = sock.recv(1 << 20)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, pos)
                body = data[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3
                if kind == NLMSG_DONE:
                    return count
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    raise NetlinkError(-code, "dumping the route cache")
                flags = _RTMSG.unpack_from(body)[8]
                if flags & RTM_F_CLONED and flags & RTCF_REDIRECTED:
                    count += 1
