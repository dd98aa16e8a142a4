"""``tna monitor``: punted (and dropped) frames as they happen, with reason, interface and header.

Role in the flow: read-only observation after apply, like ``cilium monitor --type drop``.  The
programs copy the start of each punted frame (and, with ``--drops``, of each frame a firewall
rule dropped) into a BPF ring buffer, but only while ``tna_mon_ctl`` says someone watches:
the check sits on the punt and drop paths (``bpf/lib/monitor.h``), never on the forwarded one.
This module is that someone.  It sets the switch with a deadline a second ahead, renews it
while it runs and clears it on exit (also on SIGINT/SIGTERM); a monitor killed outright stops
the events when its deadline passes.  The kernel side is bounded: at most ``--rate`` events a
second per CPU, and a ring of fixed size whose overflow is counted, never waited for.

Frames are decoded here (Ethernet, ARP, IPv4, IPv6, UDP/TCP ports, ICMP types) from the copied
bytes, so a line reads like ``10:02:01.234 r1  punt ttl  IPv4 10.1.0.2:40000 > 10.2.0.2:443
udp len 64 ttl 1``; ``--json`` prints one object per line.
"""

from __future__ import annotations

import ctypes
import datetime
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from tna import abi, counters, reasons
from tna.datapath import libbpf, status
from tna.datapath.pins import pin_dir, u32

DEFAULT_RATE = 1000  # events per second and CPU, the kernel's bound
POLL_MS = 100  # how long one ring poll waits: SIGTERM and --count are seen this often
RENEW_NS = abi.TNA_MON_TTL_MS * 1_000_000 // 4  # renew the deadline this often

Ctl = abi.struct_type("tna_mon_ctl")
State = abi.struct_type("tna_mon_state")
Event = abi.struct_type("tna_mon_event")


class MonitorError(Exception):
    """The monitor cannot run here; the message says why and what to do."""


# ---- the switch ------------------------------------------------------------------------------

class MonitorMaps:
    """The namespace's pinned tna_mon_* maps, open."""

    def __init__(self) -> None:
        paths = {n: os.path.join(pin_dir(), n) for n in ("tna_mon_ctl", "tna_mon_state",
                                                          "tna_mon_ring")}
        if not os.path.exists(os.path.join(pin_dir(), "tna_ifaces")):
            raise MonitorError("TNA is not attached in this namespace")
        if not all(os.path.exists(p) for p in paths.values()):
            raise MonitorError("the fast path here predates tna monitor: 'tna detach', then "
                               "'tna apply' (or restart 'tna run')")
        self.ctl = libbpf.Map(libbpf.obj_get(paths["tna_mon_ctl"]), 4, ctypes.sizeof(Ctl))
        self.state = libbpf.Map(libbpf.obj_get(paths["tna_mon_state"]), 4,
                                ctypes.sizeof(State), percpu=True)
        self.ring_fd = libbpf.obj_get(paths["tna_mon_ring"])
        self._check_types()

    def _check_types(self) -> None:
        """A map of another layout pinned under the name (bpffs is world-writable)."""
        for m, size in ((self.ctl.fd, ctypes.sizeof(Ctl)), (self.state.fd, ctypes.sizeof(State))):
            if libbpf.map_info(m).value_size != size:
                self.close()
                raise MonitorError("the pinned tna_mon maps have another layout: 'tna detach', "
                                   "then 'tna apply'")

    def read_ctl(self) -> Any:
        raw = self.ctl.lookup(u32(0)) or bytes(ctypes.sizeof(Ctl))
        return Ctl.from_buffer_copy(raw[:ctypes.sizeof(Ctl)])

    def write_ctl(self, ctl: Any) -> None:
        self.ctl.update(u32(0), bytes(ctl))

    def left_out(self) -> tuple[int, int]:
        """Events the kernel left out, over all CPUs: (rate limit, full ring)."""
        rows = [State.from_buffer_copy(v) for v in self.state.lookup_percpu(u32(0))]
        return sum(r.suppressed for r in rows), sum(r.lost for r in rows)

    def fed_by_programs(self) -> bool:
        """Whether some attached TNA program emits into these maps (an older one does not)."""
        ctl_id = libbpf.map_info(self.ctl.fd).id
        for a in status.attached():
            try:
                fd = libbpf.prog_get_fd_by_id(a.prog_id)
            except libbpf.LibbpfError:
                continue
            try:
                if ctl_id in libbpf.prog_map_ids(fd):
                    return True
            finally:
                os.close(fd)
        return False

    def close(self) -> None:
        self.ctl.close()
        self.state.close()
        if self.ring_fd >= 0:
            os.close(self.ring_fd)
            self.ring_fd = -1


def switch_on(maps: MonitorMaps, flags: int, ifindex: int, rate: int) -> None:
    """Start the events, unless another live monitor watches this namespace."""
    cur = maps.read_ctl()
    if (cur.deadline_ns > time.monotonic_ns() and cur.owner != os.getpid()
            and _alive(cur.owner)):
        raise MonitorError(f"another tna monitor (pid {cur.owner}) watches this namespace")
    maps.write_ctl(Ctl(_deadline(), flags, ifindex, rate, os.getpid()))


def renew(maps: MonitorMaps, flags: int, ifindex: int, rate: int) -> None:
    maps.write_ctl(Ctl(_deadline(), flags, ifindex, rate, os.getpid()))


def switch_off(maps: MonitorMaps) -> None:
    """Stop the events, if the switch is still ours (after a stall another may own it)."""
    if maps.read_ctl().owner in (os.getpid(), 0):
        maps.write_ctl(Ctl())


def _deadline() -> int:
    # bpf_ktime_get_ns() is CLOCK_MONOTONIC, which time.monotonic_ns() reads
    return time.monotonic_ns() + abi.TNA_MON_TTL_MS * 1_000_000


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- decoding ---------------------------------------------------------------------------------

ETH_P_IP, ETH_P_ARP, ETH_P_IPV6 = 0x0800, 0x0806, 0x86DD
VLAN_TYPES = (0x8100, 0x88A8)
L4_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 47: "gre", 50: "esp", 51: "ah",
            132: "sctp"}
V6_NAMES = {**L4_NAMES, 0: "hop-by-hop", 43: "routing", 44: "fragment", 60: "dstopts"}
TCP_FLAG_LETTERS = "FSRPAU"


@dataclass
class Decoded:
    """What the copied bytes say: a header line and its fields."""

    text: str
    fields: dict[str, Any]


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _l4(proto: int, l4: bytes, fields: dict[str, Any]) -> tuple[int | None, int | None, str]:
    """Ports and a suffix (TCP flags, ICMP type) for the header line."""
    if proto in (6, 17, 132) and len(l4) >= 4:
        sport, dport = struct.unpack("!HH", l4[:4])
        fields.update(sport=sport, dport=dport)
        extra = ""
        if proto == 6 and len(l4) >= 14:
            flags = "".join(c for i, c in enumerate(TCP_FLAG_LETTERS) if l4[13] >> i & 1)
            fields["tcp_flags"] = flags
            extra = f" flags {flags or '-'}"
        return sport, dport, extra
    if proto in (1, 58) and len(l4) >= 2:
        fields.update(icmp_type=l4[0], icmp_code=l4[1])
        return None, None, f" type {l4[0]} code {l4[1]}"
    return None, None, ""


def _ipv4(b: bytes, fields: dict[str, Any]) -> tuple[str, int]:
    if len(b) < 20 or b[0] >> 4 != 4:
        return "IPv4 (truncated or malformed)", -1
    ihl = (b[0] & 0xF) * 4
    tot_len, frag, ttl, proto = struct.unpack("!H2xHBB", b[2:10])
    src, dst = socket.inet_ntoa(b[12:16]), socket.inet_ntoa(b[16:20])
    fields.update(family="ipv4", src=src, dst=dst, proto=L4_NAMES.get(proto, str(proto)),
                  ttl=ttl, ip_len=tot_len)
    fragment = frag & 0x3FFF
    sport, dport, extra = _l4(proto, b[ihl:], fields) if not frag & 0x1FFF else (None, None, "")
    if fragment:
        extra += f" frag off {(frag & 0x1FFF) * 8}{' MF' if frag & 0x2000 else ''}"
    if ihl > 20:
        extra += f" options {ihl - 20}"
    return (f"IPv4 {_endpoint(src, sport)} > {_endpoint(dst, dport)} "
            f"{L4_NAMES.get(proto, f'proto {proto}')}{extra}"), ttl


def _ipv6(b: bytes, fields: dict[str, Any]) -> tuple[str, int]:
    if len(b) < 40 or b[0] >> 4 != 6:
        return "IPv6 (truncated or malformed)", -1
    plen, nxt, hlim = struct.unpack("!HBB", b[4:8])
    src = str(ipaddress.IPv6Address(b[8:24]))
    dst = str(ipaddress.IPv6Address(b[24:40]))
    fields.update(family="ipv6", src=src, dst=dst, proto=V6_NAMES.get(nxt, str(nxt)),
                  hop_limit=hlim, payload_len=plen)
    sport, dport, extra = _l4(nxt, b[40:], fields)
    return (f"IPv6 {_endpoint(src, sport)} > {_endpoint(dst, dport)} "
            f"{V6_NAMES.get(nxt, f'next header {nxt}')}{extra}"), hlim


def _arp(b: bytes, fields: dict[str, Any]) -> str:
    if len(b) < 28:
        return "ARP (truncated)"
    op = struct.unpack("!H", b[6:8])[0]
    sha, spa, tpa = _mac(b[8:14]), socket.inet_ntoa(b[14:18]), socket.inet_ntoa(b[24:28])
    fields.update(family="arp", arp_op=op, src=spa, dst=tpa)
    if op == 1:
        return f"ARP who-has {tpa} tell {spa}"
    if op == 2:
        return f"ARP reply {spa} is-at {sha}"
    return f"ARP op {op} {spa} > {tpa}"


def decode(frame: bytes, length: int) -> Decoded:
    """The header line of a frame from its first bytes; ``length`` is the whole frame's."""
    fields: dict[str, Any] = {}
    if len(frame) < 14:
        return Decoded(f"(truncated frame) len {length}", fields)
    fields.update(dst_mac=_mac(frame[:6]), src_mac=_mac(frame[6:12]))
    ethertype, off = struct.unpack("!H", frame[12:14])[0], 14
    vlan = ""
    while ethertype in VLAN_TYPES and len(frame) >= off + 4:
        tci, ethertype = struct.unpack("!HH", frame[off:off + 4])
        fields.setdefault("vlan", tci & 0xFFF)
        vlan += f"vlan {tci & 0xFFF} "
        off += 4
    fields["ethertype"] = f"0x{ethertype:04x}"
    body = frame[off:]
    if ethertype == ETH_P_IP:
        text, ttl = _ipv4(body, fields)
        tail = f" len {length}" + (f" ttl {ttl}" if ttl >= 0 else "")
    elif ethertype == ETH_P_IPV6:
        text, hlim = _ipv6(body, fields)
        tail = f" len {length}" + (f" hlim {hlim}" if hlim >= 0 else "")
    elif ethertype == ETH_P_ARP:
        text, tail = _arp(body, fields), f" len {length}"
    else:
        text = f"{fields['src_mac']} > {fields['dst_mac']} ethertype 0x{ethertype:04x}"
        tail = f" len {length}"
    return Decoded(vlan + text + tail, fields)


# ---- events -----------------------------------------------------------------------------------

@dataclass
class Record:
    """One event as the monitor shows it."""

    wall_ns: int
    ifindex: int
    ifname: str
    code: int
    length: int
    frame: bytes

    @property
    def reason(self) -> str:
        return abi.codes().get(self.code, f"code{self.code}")

    @property
    def kind(self) -> str:
        return "drop" if reasons.describe(self.reason).kind == reasons.DROP else "punt"

    def line(self) -> str:
        stamp = datetime.datetime.fromtimestamp(self.wall_ns / 1e9)
        return (f"{stamp:%H:%M:%S}.{stamp.microsecond // 1000:03d} {self.ifname:<8} "
                f"{self.kind} {self.reason:<13} {decode(self.frame, self.length).text}")

    def to_dict(self) -> dict[str, Any]:
        d = decode(self.frame, self.length)
        stamp = datetime.datetime.fromtimestamp(self.wall_ns / 1e9, datetime.UTC)
        return {"time": stamp.isoformat(timespec="microseconds").replace("+00:00", "Z"),
                "interface": self.ifname, "ifindex": self.ifindex, "kind": self.kind,
                "reason": self.reason, "description": reasons.describe(self.reason).description,
                "len": self.length, "summary": d.text, "header": d.fields,
                "frame": self.frame.hex()}


def parse_event(raw: bytes, wall_offset_ns: int, names: Callable[[int], str]) -> Record:
    """A ring record as a :class:`Record`; ``wall_offset_ns`` turns the monotonic stamp into
    wall-clock time."""
    e = Event.from_buffer_copy(raw[:ctypes.sizeof(Event)].ljust(ctypes.sizeof(Event), b"\0"))
    snap = min(e.snap, abi.TNA_MON_SNAP)
    return Record(e.ts_ns + wall_offset_ns, e.ifindex, names(e.ifindex), e.code, e.len,
                  bytes(e.frame)[:snap])


@contextmanager
def _signals_noted() -> Iterator[list[int]]:
    """SIGINT, SIGTERM and SIGHUP end the event loop at its next turn, the switch cleared.
    Noted, not raised: an exception raised from a signal handler while a ring callback runs
    is lost in ctypes (printed, the monitor running on)."""
    got: list[int] = []

    def note(signum: int, _frame: object) -> None:
        got.append(signum)

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield got
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(*, drops: bool = False, ifindex: int = 0, count: int | None = None,
        as_json: bool = False, rate: int = DEFAULT_RATE, out: TextIO | None = None) -> int:
    """Show events until ``count`` of them were shown or a signal ends it."""
    out = out or sys.stdout
    maps = MonitorMaps()
    ring: libbpf.RingBuffer | None = None
    flags = abi.TNA_MON_DROPS if drops else 0
    try:
        if not maps.fed_by_programs():
            raise MonitorError("no attached TNA program feeds tna monitor (loaded by an older "
                               "TNA): 'tna detach', then 'tna apply'")
        pending: list[bytes] = []
        ring = libbpf.RingBuffer(maps.ring_fd, pending.append)
        left_before = maps.left_out()
        wall_offset = time.time_ns() - time.monotonic_ns()
        names: dict[int, str] = {}

        def ifname(i: int) -> str:
            if i not in names:
                names[i] = counters.ifname(i) if i else "(none)"
            return names[i]

        shown = 0
        with _signals_noted() as signals:
            try:
                switch_on(maps, flags, ifindex, rate)
                if not as_json:
                    what = "punted and dropped" if drops else "punted"
                    print(f"tna monitor: {what} frames as they happen (at most {rate}/s per "
                          "CPU); Ctrl-C ends", file=sys.stderr)
                renewed = time.monotonic_ns()
                while not signals and (count is None or shown < count):
                    if time.monotonic_ns() - renewed >= RENEW_NS:
                        renew(maps, flags, ifindex, rate)
                        renewed = time.monotonic_ns()
                    ring.poll(POLL_MS)
                    for raw in pending:
                        rec = parse_event(raw, wall_offset, ifname)
                        if ifindex and rec.ifindex != ifindex:
                            continue
                        print(json.dumps(rec.to_dict()) if as_json else rec.line(), file=out,
                              flush=True)
                        shown += 1
                        if count is not None and shown >= count:
                            break
                    pending.clear()
            finally:
                switch_off(maps)
        # Ctrl-C: the summary, then exit status 130 as elsewhere; SIGTERM, SIGHUP: 0
        interrupted = signal.SIGINT in signals
        if not as_json:
            rated = maps.left_out()
            limited, lost = (a - b for a, b in zip(rated, left_before, strict=True))
            if limited or lost:
                print(f"tna monitor: {limited} events left out by the rate limit, {lost} by a "
                      "full ring", file=sys.stderr)
        if interrupted:
            raise KeyboardInterrupt
        return 0
    finally:
        if ring is not None:
            ring.close()
        maps.close()
