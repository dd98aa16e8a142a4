"""``tna explain``: what TNA would do with one packet, next to what Linux's lookup says.

Role in the flow: read-only diagnosis after apply.  A packet description
(``udp 10.1.0.2:40000 > 10.2.0.9:443 --ttl 64``) becomes frame bytes (built here with
``struct``: nothing is sent on the wire), which run once through the very program attached to
the ingress interface, with its real maps, by plain ``BPF_PROG_TEST_RUN``.  The verdict and the
output frame say redirect, pass or drop and the rewritten MACs; the counters the run moved say
why (the punt reason), out of which interface (``transmitted`` on the egress slot) and under
which firewall rule.  Linux's side is ``ip route get ... iif IF`` over netlink.

The test run is a real run: it counts its packet (one packet under the reason on the ingress
interface, like any other); the output says so rather than writing the per-CPU counters back,
which the fast path updates without locks.  A bridged test frame also stamps its source MAC as
seen in the FDB mirror, and a conntrack lookup may refresh the flow it finds.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

from tna import counters, reasons
from tna.counters import RuleTables
from tna.datapath import libbpf, status

PROTOS = {"udp": 17, "tcp": 6, "icmp": 1}
XDP_ACTIONS = {0: "aborted", 1: "drop", 2: "pass", 3: "tx", 4: "redirect"}
TCP_FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20}
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"


class BadPacket(ValueError):
    """A packet description that cannot be built."""


@dataclass(frozen=True)
class PacketSpec:
    proto: str
    src: str
    dst: str
    sport: int = 40000
    dport: int = 443
    ttl: int = 64
    size: int = 0  # frame bytes; 0: as small as the headers allow (at least 60)
    tcp_flags: str = "S"
    src_mac: str = "02:00:00:00:00:01"
    dst_mac: str = ""  # '' = the ingress interface's own MAC
    bad_ip_csum: bool = False
    bad_l4_csum: bool = False

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.dst).version

    def describe(self) -> str:
        ports = self.proto in ("udp", "tcp")
        src = _endpoint(self.src, self.sport if ports else None)
        dst = _endpoint(self.dst, self.dport if ports else None)
        extra = f" flags {self.tcp_flags}" if self.proto == "tcp" else ""
        return (f"IPv{self.family} {self.proto.upper()} {src} > {dst}{extra} "
                f"{'ttl' if self.family == 4 else 'hop limit'} {self.ttl}")


def _endpoint(addr: str, port: int | None) -> str:
    if port is None:
        return addr
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def parse_endpoint(text: str) -> tuple[str, int | None]:
    """``10.1.0.2``, ``10.1.0.2:40000``, ``fd00::2``, ``[fd00::2]:40000``."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or None  # type: ignore[assignment]
    elif text.count(":") == 1:
        host, port = text.split(":")  # type: ignore[assignment]
    try:
        ipaddress.ip_address(host)
        number = int(port) if port is not None else None
    except ValueError:
        raise BadPacket(f"not an address[:port]: {text}") from None
    if number is not None and not 0 <= number < 65536:
        raise BadPacket(f"port out of range: {text}")
    return host, number


def parse(words: list[str], **options: Any) -> PacketSpec:
    """``PROTO SRC[:PORT] > DST[:PORT]`` plus keyword options of :class:`PacketSpec`."""
    if len(words) != 4 or words[2] not in (">", "to") or words[0] not in PROTOS:
        raise BadPacket(f"expected '{'|'.join(PROTOS)} SRC[:PORT] > DST[:PORT]', got "
                        f"{' '.join(words)!r}")
    (src, sport), (dst, dport) = parse_endpoint(words[1]), parse_endpoint(words[3])
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        raise BadPacket("source and destination of different families")
    given: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    given.update((k, v) for k, v in (("sport", sport), ("dport", dport)) if v is not None)
    spec = PacketSpec(words[0], src, dst, **given)
    if not 0 <= spec.ttl <= 255:
        raise BadPacket(f"TTL out of range: {spec.ttl}")
    if set(spec.tcp_flags) - set(TCP_FLAGS):
        raise BadPacket(f"TCP flags are letters of {''.join(TCP_FLAGS)}: {spec.tcp_flags}")
    for mac in (spec.src_mac, spec.dst_mac):
        if mac:
            _mac(mac)
    return spec


# ---- frame bytes -----------------------------------------------------------------------------

def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071), ready to store."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _mac(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise BadPacket(f"not a MAC address: {text}")
    return raw


def _l4(spec: PacketSpec, pseudo: bytes, payload: bytes) -> bytes:
    """The L4 header and payload with its checksum (``pseudo``: b'' for ICMPv4)."""
    if spec.proto == "udp":
        hdr = struct.pack("!HHHH", spec.sport, spec.dport, 8 + len(payload), 0)
        at = 6
    elif spec.proto == "tcp":
        flags = sum(TCP_FLAGS[f] for f in spec.tcp_flags)
        hdr = struct.pack("!HHIIBBHHH", spec.sport, spec.dport, 1, 0, 5 << 4, flags, 65535,
                          0, 0)
        at = 16
    else:  # echo request: ICMP type 8, ICMPv6 type 128
        hdr = struct.pack("!BBHHH", 8 if spec.family == 4 else 128, 0, 0, 0x7a6e, 1)
        at = 2
    csum = checksum(pseudo + hdr + payload)
    if spec.proto == "udp" and csum == 0:
        csum = 0xFFFF  # 0 means "no checksum" for UDP
    if spec.bad_l4_csum:
        csum ^= 0x5A5A
    return hdr[:at] + struct.pack("!H", csum) + hdr[at + 2:] + payload


def build(spec: PacketSpec, ingress_mac: str) -> bytes:
    """Ethernet + IPv4/IPv6 + UDP/TCP/ICMP, lengths and checksums right (unless asked)."""
    src, dst = ipaddress.ip_address(spec.src), ipaddress.ip_address(spec.dst)
    l4_hdr = {"udp": 8, "tcp": 20, "icmp": 8}[spec.proto]
    ip_hdr = 20 if spec.family == 4 else 40
    size = spec.size or max(60, 14 + ip_hdr + l4_hdr)
    if size < 14 + ip_hdr + l4_hdr or size > 9014:
        raise BadPacket(f"frame size {size} outside {14 + ip_hdr + l4_hdr}..9014")
    payload = bytes(i & 0xFF for i in range(size - 14 - ip_hdr - l4_hdr))
    l4_len = l4_hdr + len(payload)
    proto = PROTOS[spec.proto] if spec.family == 4 or spec.proto != "icmp" else 58
    eth = _mac(spec.dst_mac or ingress_mac) + _mac(spec.src_mac)
    if spec.family == 4:
        pseudo = b"" if spec.proto == "icmp" else (
            src.packed + dst.packed + struct.pack("!BBH", 0, proto, l4_len))
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + l4_len, 0x1234, 0x4000, spec.ttl,
                         proto, 0, src.packed, dst.packed)
        csum = checksum(ip) ^ (0x5A5A if spec.bad_ip_csum else 0)
        ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
        return eth + struct.pack("!H", 0x0800) + ip + _l4(spec, pseudo, payload)
    if spec.bad_ip_csum:
        raise BadPacket("IPv6 has no header checksum")
    pseudo = src.packed + dst.packed + struct.pack("!I3xB", l4_len, proto)
    ip = struct.pack("!IHBB16s16s", 6 << 28, l4_len, proto, spec.ttl, src.packed, dst.packed)
    return eth + struct.pack("!H", 0x86DD) + ip + _l4(spec, pseudo, payload)


# ---- running it ------------------------------------------------------------------------------

@dataclass
class Verdict:
    action: str  # redirect, pass, drop, tx, aborted
    reason: str | None  # the counter the run moved on the ingress interface
    egress: str | None = None  # where the fast path sends it
    dst_mac: str | None = None
    src_mac: str | None = None
    rules: list[str] = field(default_factory=list)  # firewall rules whose counters moved
    counted: dict[str, dict[str, int]] = field(default_factory=dict)  # iface -> code -> +pkts

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "egress": self.egress,
                "dst_mac": self.dst_mac, "src_mac": self.src_mac, "rules": self.rules,
                "counted": self.counted}


class NotAttached(Exception):
    """The interface runs no TNA program."""


def _attached(ifindex: int) -> status.Attached:
    for a in status.attached():
        if a.ifindex == ifindex:
            return a
    raise NotAttached(f"TNA is not attached to {counters.ifname(ifindex)}: Linux handles "
                      "every packet there")


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def run(ifindex: int, frame: bytes, tables: RuleTables | None) -> Verdict:
    """Run ``frame`` once through the program attached to ``ifindex``."""
    prog = _attached(ifindex)
    rules_before = _rules(tables)
    before = status.read_counters()
    fd = libbpf.prog_get_fd_by_id(prog.prog_id)
    try:
        retval, out, _ = libbpf.test_run(fd, frame, ingress_ifindex=ifindex)
    finally:
        os.close(fd)
    after = status.read_counters()
    rules_after = _rules(tables)
    moved: dict[int, dict[str, int]] = {}
    for i, row in after.items():
        for name, c in row.items():
            d = c.packets - before.get(i, {}).get(name, status.Counter(0, 0)).packets
            if d > 0:
                moved.setdefault(i, {})[name] = d
    verdict = Verdict(XDP_ACTIONS.get(retval, f"unknown({retval})"), None,
                      counted={counters.ifname(i) if i else "(no entry)": m
                               for i, m in moved.items()})
    mine = moved.get(ifindex) or moved.get(0) or {}
    # concurrent traffic may move other counters: prefer the one that fits the verdict
    fitting = [n for n in mine if (n in ("forwarded", "bridged")) == (retval == 4)
               and (n == "fw_dropped") == (retval == 1) and n != "transmitted"]
    verdict.reason = fitting[0] if len(fitting) == 1 else (",".join(fitting) or None)
    if retval == 4:
        out_if = [i for i, m in moved.items() if "transmitted" in m and i != ifindex]
        verdict.egress = counters.ifname(out_if[0]) if len(out_if) == 1 else None
        verdict.dst_mac, verdict.src_mac = _mac_str(out[:6]), _mac_str(out[6:12])
    verdict.rules = [r for r, n in rules_after.items() if n > rules_before.get(r, 0)]
    return verdict


def _rules(tables: RuleTables | None) -> dict[str, int]:
    if tables is None:
        return {}
    return {r["rule"]: r["packets"] for r in counters.rule_rows(tables, since_reset=False)
            if "stale" not in r}


# ---- Linux's view ----------------------------------------------------------------------------

def linux_route(spec: PacketSpec, ifindex: int) -> dict[str, Any]:
    """``ip route get DST from SRC iif IF`` and the next hop's neighbour entry."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ip:
        try:
            msg = ip.route("get", dst=spec.dst, src=spec.src, iif=ifindex)[0]
        except NetlinkError as e:
            return {"error": f"{e.args[1] if len(e.args) > 1 else e}"}
        types = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast",
                 6: "blackhole", 7: "unreachable", 8: "prohibit", 9: "throw", 10: "nat"}
        out: dict[str, Any] = {"type": types.get(msg["type"], str(msg["type"]))}
        oif = msg.get_attr("RTA_OIF")
        gateway = msg.get_attr("RTA_GATEWAY")
        if oif:
            out["dev"] = counters.ifname(oif)
        if gateway:
            out["via"] = gateway
        hop = gateway or spec.dst
        if oif and out["type"] == "unicast":
            neigh = ip.get_neighbours(dst=hop, ifindex=oif)
            if neigh:
                states = {0x01: "INCOMPLETE", 0x02: "REACHABLE", 0x04: "STALE", 0x08: "DELAY",
                          0x10: "PROBE", 0x20: "FAILED", 0x40: "NOARP", 0x80: "PERMANENT"}
                out["neighbour"] = {"lladdr": neigh[0].get_attr("NDA_LLADDR"),
                                    "state": states.get(neigh[0]["state"],
                                                        str(neigh[0]["state"]))}
            else:
                out["neighbour"] = None
    return out


def linux_bridge(bridge: int, dst_mac: str) -> dict[str, Any]:
    """Where the bridge's FDB sends ``dst_mac`` (a port, the bridge itself, or a flood)."""
    from tna import introspect

    out: dict[str, Any] = {"type": "bridge", "bridge": counters.ifname(bridge)}
    if int(dst_mac[:2], 16) & 1:
        out["flood"] = "broadcast" if dst_mac == BROADCAST_MAC else "multicast"
        return out
    for e in introspect.fdb():
        if e.bridge == bridge and e.mac.lower() == dst_mac.lower() and e.vlan == 0:
            out["port"] = None if e.local else counters.ifname(e.ifindex)
            out["state"] = e.state
            return out
    out["flood"] = "unknown unicast"
    return out


def linux_summary(route: dict[str, Any], ttl: int) -> str:
    if route.get("type") == "bridge":
        where = (f"flooded ({route['flood']})" if "flood" in route else
                 f"out of {route['port']} ({route['state']})" if route["port"] else
                 "up to the bridge itself (local address): routed or delivered")
        return f"bridge {route['bridge']}: {where}"
    if "error" in route:
        return f"no forwarding: {route['error']}"
    text = route["type"]
    if "via" in route:
        text += f" via {route['via']}"
    if "dev" in route:
        text += f" dev {route['dev']}"
    neigh = route.get("neighbour", "")
    if neigh:
        text += f", neighbour {neigh['lladdr']} {neigh['state']}"
    elif neigh is None:
        text += ", neighbour not resolved (Linux resolves it and queues the packet)"
    if route["type"] == "unicast" and ttl <= 1:
        text += "; TTL expires: ICMP time exceeded"
    return text


# ---- the command -----------------------------------------------------------------------------

def explain(ifname: str, spec: PacketSpec, tables: RuleTables | None) -> dict[str, Any]:
    try:
        ifindex = socket.if_nametoindex(ifname)
    except OSError:
        raise BadPacket(f"no such interface: {ifname}") from None
    mac, bridge = _link(ifname)
    frame = build(spec, mac)
    verdict = run(ifindex, frame, tables)
    route = (linux_bridge(bridge, spec.dst_mac or mac) if bridge else
             linux_route(spec, ifindex))
    return {"interface": ifname, "packet": spec.describe(), "ttl": spec.ttl,
            "frame": frame.hex(),
            "tna": verdict.to_dict(), "linux": route,
            "reason": reasons.describe(verdict.reason).to_dict() if verdict.reason
            and "," not in verdict.reason else None}


def _link(ifname: str) -> tuple[str, int]:
    """The interface's MAC and, for a bridge port, its bridge's ifindex (else 0).  Over
    netlink: /sys/class/net shows the namespace sysfs was mounted in, not ours."""
    from pyroute2 import IPRoute

    with IPRoute() as ip:
        link = ip.link("get", ifname=ifname)[0]
        master = link.get_attr("IFLA_MASTER") or 0
        if master:
            info = ip.link("get", index=master)[0].get_attr("IFLA_LINKINFO")
            if info is None or info.get_attr("IFLA_INFO_KIND") != "bridge":
                master = 0
    return str(link.get_attr("IFLA_ADDRESS") or "00:00:00:00:00:00"), int(master)


def format_text(doc: dict[str, Any]) -> str:
    v = doc["tna"]
    if v["action"] == "redirect":
        what = (f"fast path: {'bridged' if v['reason'] == 'bridged' else 'routed'} out of "
                f"{v['egress'] or '?'}, {v['src_mac']} > {v['dst_mac']}")
        if v["rules"]:
            what += f", accepted by {', '.join(v['rules'])}"
    elif v["action"] == "drop":
        rule = f" by {', '.join(v['rules'])}" if v["rules"] else ""
        what = f"drop ({v['reason']}){rule}"
    elif v["action"] == "pass":
        what = f"to Linux: {v['reason'] or '?'}"
    else:
        what = f"XDP {v['action']} ({v['reason'] or '?'})"
    lines = [f"packet: {doc['packet']}, in {doc['interface']}",
             f"TNA:    {what}"]
    if doc["reason"] and v["action"] != "redirect":
        lines.append(f"        {doc['reason']['description']}")
        if doc["reason"]["setting"]:
            lines.append(f"        setting: {doc['reason']['setting']}")
    lines.append(f"Linux:  {linux_summary(doc['linux'], doc['ttl'])}")
    counted = "; ".join(f"{i}: " + ", ".join(f"{n} +{d}" for n, d in m.items())
                        for i, m in v["counted"].items())
    lines.append(f"note:   the test run was counted like a real packet ({counted or 'nothing'})")
    return "\n".join(lines)
