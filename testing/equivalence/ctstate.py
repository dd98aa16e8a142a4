"""The conntrack table of a namespace, as a comparable snapshot.

Role in the equivalence suite: frames are not the only thing the stateful fast path must leave
as Linux would; the entries it refreshes (and the ones it must leave to Linux to create,
change, close or let expire) are state that decides the fate of later packets.  A scenario
with ``conntrack=True`` snapshots the router's table at the end of each run, through
ctnetlink (pyroute2's ``NFCTSocket``, opened inside the namespace), and the two runs must
agree:

* the same entries (by their original and reply tuples: the NAT mapping is the reply tuple);
* per entry, every attribute ctnetlink reports, exactly: all status bits (``IPS_*``: seen
  reply, assured, NAT set up and done, ...), the TCP state, window scales and per-direction
  flags (SACK permitted, be-liberal, data unacknowledged, max-ACK set), mark, zone, labels;
* the remaining timeout within ``TIMEOUT_TOLERANCE`` seconds: the two runs take the snapshot
  at different moments after their last packet (the harness' quiet periods, a loaded
  machine), and ctnetlink reports whole seconds.

Left out, and why: ``CTA_ID`` (a hash of the entry's address and a boot-time random key),
``CTA_USE`` (a reference count: a lookup in flight holds one).  Nothing else is normalised.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tna.netns import entered

# Seconds two runs' remaining timeouts may differ by.  The snapshot comes at least one quiet
# period (0.15 s) after the last packet; on a shared 2-core machine, a run's end can take a
# second longer than the other's.  Every timeout a wrong refresh would choose instead differs
# by far more (UDP 30 vs 120 s, TCP 300 vs 432000 s, 120 s TIME_WAIT vs 10 s CLOSE), and the
# short-timeout scenarios keep their values at least 3 s apart.
TIMEOUT_TOLERANCE = 2

IGNORED = ("CTA_ID", "CTA_USE", "CTA_TIMEOUT")

# enum ip_conntrack_status (uapi/linux/netfilter/nf_conntrack_common.h)
STATUS_BITS = ("EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT", "DST_NAT",
               "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE", "DYING", "FIXED_TIMEOUT",
               "TEMPLATE", "NAT_CLASH", "HELPER", "OFFLOAD", "HW_OFFLOAD")
# enum tcp_conntrack
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
              "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")
# IP_CT_TCP_FLAG_* (the per-direction flags of struct ip_ct_tcp_state)
TCP_FLAGS = ("WINDOW_SCALE", "SACK_PERM", "CLOSE_INIT", "BE_LIBERAL", "DATA_UNACKNOWLEDGED",
             "MAXACK_SET", "EXP_CHALLENGE_ACK", "SIMULTANEOUS_OPEN")


@dataclass(frozen=True)
class Entry:
    """One conntrack entry: what identifies it, what must be equal, and its timeout."""

    key: str  # "tcp 10.1.0.2:41101 > 10.2.0.2:80 | 10.2.0.2:80 > 10.2.0.1:41101"
    attrs: tuple[tuple[str, str], ...]  # (attribute, value), sorted
    timeout: int  # seconds left, as ctnetlink reports it

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.attrs)
        return f"{self.key} timeout={self.timeout} {shown}"


@dataclass(frozen=True)
class EntryDifference:
    key: str
    what: str  # one line: which attribute differs, or which run lacks the entry
    a: Entry | None
    b: Entry | None


def _names(value: int, names: Sequence[str]) -> str:
    return "|".join(n for i, n in enumerate(names) if value >> i & 1) or "0"


def _plain(value: Any) -> Any:
    """pyroute2's nested attributes as plain dicts (name -> value); an attribute that is a
    structure (``struct nf_ct_tcp_flags``) as its ``value``."""
    if hasattr(value, "get"):
        if value.get("attrs"):
            return {name: _plain(v) for name, v, *_ in value["attrs"]}
        if "value" in value:
            return value["value"]
    return value


def _endpoint(t: Mapping[str, Any]) -> tuple[str, str, str]:
    ip = t.get("CTA_TUPLE_IP", {})
    proto = t.get("CTA_TUPLE_PROTO", {})
    src = ip.get("CTA_IP_V4_SRC") or ip.get("CTA_IP_V6_SRC")
    dst = ip.get("CTA_IP_V4_DST") or ip.get("CTA_IP_V6_DST")
    if "CTA_PROTO_SRC_PORT" in proto:
        return (f"{proto.get('CTA_PROTO_NUM')}", f"{src}:{proto['CTA_PROTO_SRC_PORT']}",
                f"{dst}:{proto['CTA_PROTO_DST_PORT']}")
    icmp = {k.removeprefix("CTA_PROTO_"): v for k, v in proto.items() if k != "CTA_PROTO_NUM"}
    return (f"{proto.get('CTA_PROTO_NUM')}", f"{src}", f"{dst} {sorted(icmp.items())}")


PROTO_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


def _key(msg: Mapping[str, Any]) -> str:
    p, osrc, odst = _endpoint(msg.get("CTA_TUPLE_ORIG", {}))
    _, rsrc, rdst = _endpoint(msg.get("CTA_TUPLE_REPLY", {}))
    return f"{PROTO_NAMES.get(p, p)} {osrc} > {odst} | {rsrc} > {rdst}"


def _first_int(value: Any) -> int:
    """The flags byte of a ``struct nf_ct_tcp_flags`` ({flags, mask}), however pyroute2
    nested it (a dict with ``value``, a tuple, a tuple in a tuple)."""
    while not isinstance(value, int):
        value = value.get("value") if hasattr(value, "get") else value[0]
    return value


def _protoinfo(info: Mapping[str, Any]) -> dict[str, str]:
    tcp = info.get("CTA_PROTOINFO_TCP")
    if not isinstance(tcp, Mapping):
        return {f"protoinfo.{k}": repr(v) for k, v in info.items()}
    out = {}
    for name, value in tcp.items():
        short = name.removeprefix("CTA_PROTOINFO_TCP_").lower()
        if name == "CTA_PROTOINFO_TCP_STATE":
            out["tcp.state"] = TCP_STATES[value] if value < len(TCP_STATES) else str(value)
        elif name.startswith("CTA_PROTOINFO_TCP_FLAGS_"):
            out[f"tcp.{short}"] = _names(_first_int(value), TCP_FLAGS)
        else:
            out[f"tcp.{short}"] = str(value)
    return out


def entry_of(msg: Any) -> Entry:
    """One dumped ctnetlink message as an :class:`Entry`."""
    attrs = _plain(msg)
    shown: dict[str, str] = {}
    for name, value in attrs.items():
        if name in IGNORED or name in ("CTA_TUPLE_ORIG", "CTA_TUPLE_REPLY"):
            continue
        if name == "CTA_STATUS":
            shown["status"] = _names(int(value), STATUS_BITS)
        elif name == "CTA_PROTOINFO":
            shown.update(_protoinfo(value))
        else:
            shown[name.removeprefix("CTA_").lower()] = repr(value)
    return Entry(_key(attrs), tuple(sorted(shown.items())), int(attrs.get("CTA_TIMEOUT", 0)))


def snapshot(ns: str) -> list[Entry]:
    """Every conntrack entry of namespace ``ns`` (all families), sorted by tuple.

    The socket is created and used inside the namespace: pyroute2 opens it lazily, and a
    netlink socket belongs to the namespace it was created in.  ``AF_UNSPEC``: every family
    (pyroute2's default, ``AF_INET``, makes the kernel leave IPv6 entries out).
    """
    from pyroute2 import NFCTSocket  # late: only stateful scenarios need it

    with entered(ns), NFCTSocket(nfgen_family=socket.AF_UNSPEC) as sock:
        entries = [entry_of(m) for m in sock.dump()]
    return sorted(entries, key=lambda e: e.key)


def differences(a: Iterable[Entry], b: Iterable[Entry],
                tolerance: int = TIMEOUT_TOLERANCE) -> list[EntryDifference]:
    """Where two snapshots disagree: missing entries, attributes, timeouts beyond
    ``tolerance`` seconds.  Two entries with one key (a dump races with nothing here, but a
    tuple may be reused after expiry) are compared in order."""
    by_a: dict[str, list[Entry]] = {}
    by_b: dict[str, list[Entry]] = {}
    for e in a:
        by_a.setdefault(e.key, []).append(e)
    for e in b:
        by_b.setdefault(e.key, []).append(e)
    out: list[EntryDifference] = []
    for key in sorted(by_a.keys() | by_b.keys()):
        xs, ys = by_a.get(key, []), by_b.get(key, [])
        for i in range(max(len(xs), len(ys))):
            x = xs[i] if i < len(xs) else None
            y = ys[i] if i < len(ys) else None
            if x is None or y is None:
                out.append(EntryDifference(key, "only in " + ("b" if x is None else "a"), x, y))
                continue
            ax, ay = dict(x.attrs), dict(y.attrs)
            for name in sorted(ax.keys() | ay.keys()):
                if ax.get(name) != ay.get(name):
                    out.append(EntryDifference(key, f"{name}: {ax.get(name)} vs "
                                                    f"{ay.get(name)}", x, y))
            if abs(x.timeout - y.timeout) > tolerance:
                out.append(EntryDifference(key, f"timeout: {x.timeout} vs {y.timeout} s "
                                                f"(tolerance {tolerance} s)", x, y))
    return out


def format_differences(diffs: Sequence[EntryDifference], label_a: str, label_b: str) -> str:
    lines = [f"conntrack table: {len(diffs)} difference(s) ({label_a} vs {label_b})"]
    for d in diffs:
        what = d.what.replace("only in a", f"only with {label_a}").replace(
            "only in b", f"only with {label_b}")
        lines.append(f"  {d.key}: {what}")
        for label, e in ((label_a, d.a), (label_b, d.b)):
            if e is not None:
                lines.append(f"      {label}: timeout={e.timeout} "
                             + ", ".join(f"{k}={v}" for k, v in e.attrs))
    return "\n".join(lines)
