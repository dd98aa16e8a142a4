"""XDP feature bits of every device, from the ``netdev`` generic-netlink family.

Role in the flow: ``introspect`` calls :func:`xdp_features` once per snapshot and stores the
bits in ``Link.xdp_features``; the planner only redirects into a device whose driver
advertises ``NDO_XMIT``.  The family exists since Linux 6.3; on older kernels, or on any
other failure, the answer is ``{}`` and the planner treats every device as not eligible.

pyroute2 has no message class for this family, so this module speaks raw netlink.  The same
small helpers (:func:`dump`, :func:`parse_attrs`) serve ``introspect`` for messages whose
newer attributes pyroute2 does not decode.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
NETLINK_GENERIC = 16

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_TYPE_MASK = 0x3FFF
SOL_NETLINK, NETLINK_GET_STRICT_CHK = 270, 12  # strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2

NETDEV_CMD_DEV_GET = 1
NETDEV_A_DEV_IFINDEX = 1
NETDEV_A_DEV_XDP_FEATURES = 3

# NETDEV_XDP_ACT_* (include/uapi/linux/netdev.h)
XDP_ACT_BASIC = 1 << 0
XDP_ACT_REDIRECT = 1 << 1
XDP_ACT_NDO_XMIT = 1 << 2
XDP_ACT_XSK_ZEROCOPY = 1 << 3
XDP_ACT_HW_OFFLOAD = 1 << 4
XDP_ACT_RX_SG = 1 << 5
XDP_ACT_NDO_XMIT_SG = 1 << 6

_NLMSGHDR = struct.Struct("=IHHII")
_GENLMSGHDR = struct.Struct("=BBH")


class NetlinkError(OSError):
    """The kernel answered a netlink request with an error."""


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type → payload; the last occurrence wins (no repeated attributes here)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            break
        out[kind & NLA_TYPE_MASK] = data[pos + 4:pos + length]
        pos += (length + 3) & ~3
    return out


def dump(protocol: int, msg_type: int, payload: bytes, flags: int = NLM_F_DUMP,
         strict: bool = False) -> Iterator[tuple[int, bytes]]:
    """Send one request and yield ``(type, payload)`` of every reply until it is done.

    The socket is opened here, so it belongs to the calling thread's network namespace.
    ``strict`` asks for strict checking, under which the kernel honours dump filters.
    """
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol) as sock:
        if strict:
            sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.bind((0, 0))
        seq = 1
        sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(payload), msg_type,
                                 NLM_F_REQUEST | flags, seq, 0) + payload)
        while True:
            data = sock.recv(1 << 20)
            pos = 0
            while pos + _NLMSGHDR.size <= len(data):
                length, kind, _, rseq, _ = _NLMSGHDR.unpack_from(data, pos)
                body = data[pos + _NLMSGHDR.size:pos + length]
                pos += (length + 3) & ~3
                if rseq != seq:
                    continue
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", body)
                    if code == 0:  # an ACK
                        return
                    raise NetlinkError(-code, os.strerror(-code))
                yield kind, body
            if not flags & NLM_F_DUMP and not flags & NLM_F_ACK:
                return  # a plain request has exactly one answer


def family_id(name: str) -> int:
    """Resolve a generic-netlink family name to its (dynamic) message type."""
    request = _GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
    request += attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
    for _, body in dump(NETLINK_GENERIC, GENL_ID_CTRL, request, flags=0):
        attrs = parse_attrs(body[_GENLMSGHDR.size:])
        if CTRL_ATTR_FAMILY_ID in attrs:
            return int(struct.unpack("=H", attrs[CTRL_ATTR_FAMILY_ID][:2])[0])
    raise NetlinkError(0, f"generic netlink family {name!r} has no id")


def mcast_group_id(family: str, group: str) -> int:
    """The id of a generic-netlink family's multicast group (e.g. netdev "mgmt")."""
    request = _GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
    request += attr(CTRL_ATTR_FAMILY_NAME, family.encode() + b"\0")
    for _, body in dump(NETLINK_GENERIC, GENL_ID_CTRL, request, flags=0):
        groups = parse_attrs(body[_GENLMSGHDR.size:]).get(CTRL_ATTR_MCAST_GROUPS, b"")
        pos = 0
        while pos + 4 <= len(groups):  # a nested array: one nest per group
            length = struct.unpack_from("=H", groups, pos)[0]
            if length < 4:
                break
            g = parse_attrs(groups[pos + 4:pos + length])
            if g.get(CTRL_ATTR_MCAST_GRP_NAME, b"").rstrip(b"\0").decode() == group:
                return int(struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID][:4])[0])
            pos += (length + 3) & ~3
    raise NetlinkError(0, f"generic netlink family {family!r} has no group {group!r}")


def xdp_features() -> dict[int, int]:
    """ifindex → NETDEV_XDP_ACT_* bits for every device of the current namespace."""
    try:
        netdev = family_id("netdev")
        request = _GENLMSGHDR.pack(NETDEV_CMD_DEV_GET, 1, 0)
        features: dict[int, int] = {}
        for _, body in dump(NETLINK_GENERIC, netdev, request):
            attrs = parse_attrs(body[_GENLMSGHDR.size:])
            if NETDEV_A_DEV_IFINDEX in attrs and NETDEV_A_DEV_XDP_FEATURES in attrs:
                (ifindex,) = struct.unpack("=I", attrs[NETDEV_A_DEV_IFINDEX][:4])
                (bits,) = struct.unpack("=Q", attrs[NETDEV_A_DEV_XDP_FEATURES][:8])
                features[ifindex] = bits
        return features
    except (OSError, struct.error):
        # Kernels before 6.3 have no "netdev" family (ENOENT); unknown means not eligible.
        return {}
