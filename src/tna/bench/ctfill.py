"""Fill a namespace's conntrack table with established UDP entries, in batches over ctnetlink.

Role in the flow: the ``conntrack`` scaling sweep (``tna.bench.scaling``) grows the DUT's table
to a million entries; ``conntrack -I`` would start one process per entry.  Here one netlink
socket, opened in the caller's current namespace, sends IPCTNL_MSG_CT_NEW messages many to a
buffer (the kernel handles each message of a buffer in turn) and asks for an acknowledgement of
the last one only: errors come back for every message regardless.  The entries are
``172.16.x.y:port -> 172.31.0.1:53`` UDP with their reply seen and assured, as a busy
resolver's would be, and outlive the benchmark (an hour).
"""

from __future__ import annotations

import os
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW = 1, 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_TIMEOUT = 1, 2, 3, 7
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
IPS_SEEN_REPLY, IPS_ASSURED, IPS_CONFIRMED = 1 << 1, 1 << 2, 1 << 3
IPPROTO_UDP = 17

SRC_BASE = 0xAC100000  # 172.16.0.0
DST = 0xAC1F0001  # 172.31.0.1
DST_PORT = 53
PORTS = 50_000  # source ports per source address (10000 ..)
TIMEOUT = 3600  # seconds
BATCH = 1000  # messages per send (~140 kB: within the socket's send buffer)


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _tuple(src: int, dst: int, sport: int, dport: int) -> bytes:
    ip = _nla(CTA_TUPLE_IP | NLA_F_NESTED, _nla(CTA_IP_V4_SRC, struct.pack("!I", src))
              + _nla(CTA_IP_V4_DST, struct.pack("!I", dst)))
    proto = _nla(CTA_TUPLE_PROTO | NLA_F_NESTED, _nla(CTA_PROTO_NUM, bytes([IPPROTO_UDP]))
                 + _nla(CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
                 + _nla(CTA_PROTO_DST_PORT, struct.pack("!H", dport)))
    return ip + proto


def entry(i: int) -> tuple[int, int, int, int]:
    """(source, destination, source port, destination port) of entry ``i`` (host order)."""
    return SRC_BASE + i // PORTS, DST, 10_000 + i % PORTS, DST_PORT


def message(i: int, seq: int, ack: bool = False) -> bytes:
    src, dst, sport, dport = entry(i)
    body = (struct.pack("=BBH", socket.AF_INET, 0, 0)
            + _nla(CTA_TUPLE_ORIG | NLA_F_NESTED, _tuple(src, dst, sport, dport))
            + _nla(CTA_TUPLE_REPLY | NLA_F_NESTED, _tuple(dst, src, dport, sport))
            # CONFIRMED too: the kernel has set it on the new entry already, and a status that
            # differs in it is refused (EBUSY)
            + _nla(CTA_STATUS, struct.pack("!I", IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED))
            + _nla(CTA_TIMEOUT, struct.pack("!I", TIMEOUT)))
    flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | (NLM_F_ACK if ack else 0)
    return struct.pack("=IHHII", 16 + len(body), NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW,
                       flags, seq, 0) + body


def _replies(sock: socket.socket, last_seq: int) -> None:
    """Read until the acknowledgement of ``last_seq``; raise on the first error."""
    while True:
        data = sock.recv(1 << 16)
        off = 0
        while off + 16 <= len(data):
            size, kind, _, seq, _ = struct.unpack_from("=IHHII", data, off)
            if kind == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, off + 16)
                if err:
                    raise OSError(-err, f"ctnetlink: entry insert failed: "
                                  f"{os.strerror(-err)} (message {seq})")
                if seq == last_seq:
                    return
            off += max(16, size + (-size % 4))


def fill(first: int, count: int) -> None:
    """Insert entries ``first`` .. ``first + count - 1`` in the current namespace."""
    if count <= 0:
        return
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind((0, 0))
        end = first + count
        for start in range(first, end, BATCH):
            stop = min(end, start + BATCH)
            buf = b"".join(message(i, i, ack=i == stop - 1) for i in range(start, stop))
            sock.send(buf)
            _replies(sock, stop - 1)


def count() -> int:
    """Entries in the current namespace's table."""
    with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
        return int(f.read())


def limits() -> dict[str, int]:
    """nf_conntrack_max and the (global, init-namespace) hash table size."""
    out = {}
    for key in ("nf_conntrack_max", "nf_conntrack_buckets"):
        try:
            with open(f"/proc/sys/net/netfilter/{key}") as f:
                out[key] = int(f.read())
        except (OSError, ValueError):
            out[key] = 0
    return out

