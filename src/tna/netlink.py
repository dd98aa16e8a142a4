"""TNA's one netlink layer: messages, attributes, requests, dumps and subscriptions.

Role in the flow: the wire under introspection (``introspect``, ``routecache``), the daemon's
notifications (``sync``), the FDB refresher (``fdbrefresh``) and the one conntrack change TNA
makes (``tna run --tcp-liberal``: :class:`Conntrack`).  pyroute2 reads what it
decodes completely (links, addresses, neighbours, qdiscs); this module serves the messages
whose newer attributes it does not decode, generic netlink families it has no class for
(``netdev``), and the raw notification streams the daemon classifies by type without decoding.
Every netlink header, constant shared between modules and message walk is here, once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import Iterable, Iterator

NETLINK_ROUTE, NETLINK_XFRM, NETLINK_NETFILTER, NETLINK_GENERIC = 0, 6, 12, 16

NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_TYPE_MASK = 0x3FFF
SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 270, 1
NETLINK_GET_STRICT_CHK = 12
SO_RCVBUFFORCE = 33

GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
CTRL_ATTR_MCAST_GROUPS = 7
CTRL_ATTR_MCAST_GRP_NAME = 1
CTRL_ATTR_MCAST_GRP_ID = 2

# rtnetlink: message types and headers more than one module uses
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_NEWNEIGH, RTM_DELNEIGH, RTM_GETNEIGH = 28, 29, 30
RTM_GETRULE = 34
RTMSG = struct.Struct("=BBBBBBBBI")  # family dst_len src_len tos table protocol scope type flags
NDMSG = struct.Struct("=BxxxiHBB")  # family, ifindex, state, flags, type
NDA_LLADDR, NDA_CACHEINFO, NDA_VLAN, NDA_MASTER, NDA_FLAGS_EXT = 2, 3, 5, 9, 15
AF_BRIDGE = 7
RTMGRP_LINK, RTMGRP_NEIGH = 0x1, 0x4

NETDEV_CMD_DEV_GET = 1
NETDEV_A_DEV_IFINDEX = 1
NETDEV_A_DEV_XDP_FEATURES = 3


NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
GENLMSGHDR = struct.Struct("=BBH")


class NetlinkError(OSError):
    """The kernel answered a netlink request with an error."""


def attr(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    header = struct.pack("=HH", 4 + len(payload), kind)
    return header + payload + b"\0" * (-len(payload) % 4)


def message(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    """One netlink message: header and payload."""
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), msg_type, flags, seq, 0) + payload


def messages(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """``(type, seq, payload)`` of every message in one datagram."""
    pos = 0
    while pos + NLMSGHDR.size <= len(data):
        length, kind, _, seq, _ = NLMSGHDR.unpack_from(data, pos)
        if length < NLMSGHDR.size:
            return
        yield kind, seq, data[pos + NLMSGHDR.size:pos + length]
        pos += (length + 3) & ~3


def parse_attrs(data: bytes) -> dict[int, bytes]:
    """Attribute type → payload; the last occurrence wins (no repeated attributes here)."""
    return dict(attributes(data))


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(type, payload)`` of every attribute, in order (a nested array: one per element)."""
    pos = 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4:
            return
        yield kind & NLA_TYPE_MASK, data[pos + 4:pos + length]
        pos += (length + 3) & ~3


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
        sock.send(message(msg_type, NLM_F_REQUEST | flags, seq, payload))
        while True:
            for kind, rseq, body in messages(sock.recv(1 << 20)):
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


def send_all(protocol: int, requests: Iterable[tuple[int, bytes]],
              batch_bytes: int = 32 << 10) -> None:
    """Send ``(type, payload)`` requests in batches, each acknowledged; errors are ignored
    (the caller's next full sync catches up).  The socket belongs to the calling thread's
    network namespace."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol) as sock:
        sock.bind((0, 0))
        batch, seq = b"", 0
        for msg_type, payload in requests:
            seq += 1
            batch += message(msg_type, NLM_F_REQUEST | NLM_F_ACK, seq, payload)
            if len(batch) > batch_bytes:
                sock.sendall(batch)
                _await_ack(sock, seq)
                batch = b""
        if batch:
            sock.sendall(batch)
            _await_ack(sock, seq)


def _await_ack(sock: socket.socket, last_seq: int) -> None:
    sock.settimeout(2.0)
    try:
        while not any(seq >= last_seq for _, seq, _ in messages(sock.recv(1 << 16))):
            pass
    except TimeoutError:
        return


class Subscription:
    """A non-blocking socket on multicast ``groups`` of ``protocol`` (group numbers, not
    masks), with a deep receive queue: overruns get rarer, never impossible."""

    def __init__(self, protocol: int, groups: Iterable[int]) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                                  protocol)
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE,
                                 int(os.environ.get("TNA_NETLINK_RCVBUF", 8 << 20)))
        self.sock.bind((0, 0))
        for g in groups:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> tuple[list[tuple[int, bytes]], bool]:
        """Everything queued now, as ``(type, payload)``; True when the kernel dropped
        notifications (ENOBUFS): the reader has missed something and must resync."""
        out: list[tuple[int, bytes]] = []
        overrun = False
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return out, overrun
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                overrun = True
                continue
            out += [(kind, body) for kind, _, body in messages(data)
                    if kind not in (NLMSG_ERROR, NLMSG_DONE)]

    def close(self) -> None:
        self.sock.close()


def family_id(name: str) -> int:
    """Resolve a generic-netlink family name to its (dynamic) message type."""
    request = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
    request += attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0")
    for _, body in dump(NETLINK_GENERIC, GENL_ID_CTRL, request, flags=0):
        attrs = parse_attrs(body[GENLMSGHDR.size:])
        if CTRL_ATTR_FAMILY_ID in attrs:
            return int(struct.unpack("=H", attrs[CTRL_ATTR_FAMILY_ID][:2])[0])
    raise NetlinkError(0, f"generic netlink family {name!r} has no id")


def mcast_group_id(family: str, group: str) -> int:
    """The id of a generic-netlink family's multicast group (e.g. netdev "mgmt")."""
    request = GENLMSGHDR.pack(CTRL_CMD_GETFAMILY, 1, 0)
    request += attr(CTRL_ATTR_FAMILY_NAME, family.encode() + b"\0")
    for _, body in dump(NETLINK_GENERIC, GENL_ID_CTRL, request, flags=0):
        groups = parse_attrs(body[GENLMSGHDR.size:]).get(CTRL_ATTR_MCAST_GROUPS, b"")
        for _, nest in attributes(groups):  # a nested array: one nest per group
            g = parse_attrs(nest)
            if g.get(CTRL_ATTR_MCAST_GRP_NAME, b"").rstrip(b"\0").decode() == group:
                return int(struct.unpack("=I", g[CTRL_ATTR_MCAST_GRP_ID][:4])[0])
    raise NetlinkError(0, f"generic netlink family {family!r} has no group {group!r}")


# ---- ctnetlink: marking an existing entry's TCP windows liberal, closing it ------------------

NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW = 1, 0
NFGENMSG = struct.Struct("=BBH")  # family, version (NFNETLINK_V0), res_id
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_PROTOINFO, CTA_TIMEOUT = 1, 4, 7
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
# CTA_IP_V4_SRC, CTA_IP_V6_SRC by family; the destination is the next attribute
CTA_IP_SRC: dict[int, int] = {socket.AF_INET: 1, socket.AF_INET6: 3}
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
TCP_CONNTRACK_CLOSE = 8  # enum tcp_conntrack
CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY = 4, 5
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08


def nested(kind: int, *attrs: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(attrs))


def _tcp_tuple(family: int, saddr: str, daddr: str, sport: int, dport: int) -> bytes:
    """CTA_TUPLE_ORIG of the TCP entry with this original tuple (zone 0)."""
    src = CTA_IP_SRC[family]
    return nested(
        CTA_TUPLE_ORIG,
        nested(CTA_TUPLE_IP, attr(src, socket.inet_pton(family, saddr)),
               attr(src + 1, socket.inet_pton(family, daddr))),
        nested(CTA_TUPLE_PROTO, attr(CTA_PROTO_NUM, bytes([socket.IPPROTO_TCP])),
               attr(CTA_PROTO_SRC_PORT, struct.pack("!H", sport)),
               attr(CTA_PROTO_DST_PORT, struct.pack("!H", dport))))


def ct_liberal_request(family: int, saddr: str, daddr: str, sport: int, dport: int) -> bytes:
    """IPCTNL_MSG_CT_NEW's payload that sets IP_CT_TCP_FLAG_BE_LIBERAL on both directions of
    the TCP entry with this original tuple (zone 0), and nothing else: struct nf_ct_tcp_flags
    {flags, mask} with only that bit in the mask (nlattr_to_tcp() keeps the other flags)."""
    flags = struct.pack("=BB", IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL)
    return NFGENMSG.pack(family, 0, 0) + _tcp_tuple(family, saddr, daddr, sport, dport) + nested(
        CTA_PROTOINFO, nested(CTA_PROTOINFO_TCP, attr(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, flags),
                              attr(CTA_PROTOINFO_TCP_FLAGS_REPLY, flags)))


def ct_close_request(family: int, saddr: str, daddr: str, sport: int, dport: int,
                     timeout_s: int) -> bytes:
    """IPCTNL_MSG_CT_NEW's payload that puts the TCP entry with this original tuple in state
    CLOSE with ``timeout_s`` left, as tcp_packet() does on an RST it recognises: ctnetlink's
    change of an existing entry sets the timeout (ctnetlink_change_timeout()) and the state
    (nlattr_to_tcp()), nothing else."""
    return NFGENMSG.pack(family, 0, 0) + _tcp_tuple(family, saddr, daddr, sport, dport) + attr(
        CTA_TIMEOUT, struct.pack("!I", timeout_s)) + nested(
        CTA_PROTOINFO, nested(CTA_PROTOINFO_TCP, attr(CTA_PROTOINFO_TCP_STATE,
                                                      bytes([TCP_CONNTRACK_CLOSE]))))


class Conntrack:
    """A ctnetlink socket of the calling thread's namespace that changes existing entries.
    Requests go without NLM_F_CREATE: an entry that is gone is not created again (ENOENT)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)
        self._seq = 0

    def set_liberal(self, family: int, saddr: str, daddr: str, sport: int, dport: int) -> int:
        """0 when the entry is now liberal both ways, else the kernel's errno (ENOENT: gone)."""
        return self._change(ct_liberal_request(family, saddr, daddr, sport, dport))

    def set_closed(self, family: int, saddr: str, daddr: str, sport: int, dport: int,
                   timeout_s: int) -> int:
        """0 when the entry is now CLOSE with ``timeout_s`` left, else the kernel's errno."""
        return self._change(ct_close_request(family, saddr, daddr, sport, dport, timeout_s))

    def _change(self, payload: bytes) -> int:
        self._seq += 1
        msg_type = NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
        self.sock.send(message(msg_type, NLM_F_REQUEST | NLM_F_ACK, self._seq, payload))
        while True:
            for kind, seq, body in messages(self.sock.recv(1 << 16)):
                if kind == NLMSG_ERROR and seq == self._seq:
                    return -int(struct.unpack_from("=i", body)[0])

    def close(self) -> None:
        self.sock.close()


def conntrack_set_liberal(family: int, saddr: str, daddr: str, sport: int, dport: int) -> int:
    """:meth:`Conntrack.set_liberal` on a socket of its own."""
    ct = Conntrack()
    try:
        return ct.set_liberal(family, saddr, daddr, sport, dport)
    finally:
        ct.close()
