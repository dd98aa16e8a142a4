"""Benchmark scenarios: topologies in namespaces and the modes each one is measured in.

Role in the flow: every scenario builds sender -- device under test (DUT) -- receiver out of
veth pairs (``tna.testbed``), keeps a counting XDP sink on the receiver's veth for its whole
life (which also makes XDP redirects into the receiver legal) and switches the DUT between:

``null``           the sink sits on the DUT's ingress: traffic source and veth cost alone
``null-tc``        punt-all only: as null, the sink at tcx ingress instead of XDP (the
                   difference is native XDP's skb-to-XDP conversion on a veth)
``linux``          no XDP on the DUT; GRO on its ingress veth so it accepts XDP-sent frames
``xdp-pass``       punt-all only: Linux behind an XDP program that passes everything (what
                   native XDP on a veth costs by itself, e.g. converting an skb source's skbs)
``linux-no-brnf``  bridges only: as ``linux`` with br_netfilter's bridge-nf-call-* off
``tna``            the real fast path: introspect -> plan -> reconcile (tna.control) in the DUT
``fib``            routers only: a bare XDP router (bpf_fib_lookup, rewrite, redirect; no
                   checks, maps or counters), the most any lookup-based fast path can do
``sol``            "speed of light": a fixed program that rewrites and redirects, no lookup

Addresses and MACs are fixed; every neighbour the DUT needs is permanent, so no ARP/ND happens
while measuring.  Nothing here runs in, or changes, the caller's namespace.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tna import control, netns
from tna.bench import frames
from tna.bench.bpfobj import BpfObject, Link, Sink, SolCfg, attach, ifindex_of
from tna.bench.frames import FrameSpec, Variation
from tna.datapath import libbpf, loader
from tna.datapath.loader import Features
from tna.plan import Plan
from tna.testbed import Testbed, wait_for

NULL, NULL_TC, LINUX, LINUX_NO_BRNF, XDP_PASS, TNA, FIB, SOL = \
    "null", "null-tc", "linux", "linux-no-brnf", "xdp-pass", "tna", "fib", "sol"
ALL_MODES = (NULL, NULL_TC, LINUX, LINUX_NO_BRNF, XDP_PASS, TNA, FIB, SOL)
REFERENCE_PROGRAMS = {SOL: "bench_sol", FIB: "bench_fib"}  # in bench_sol.bpf.o
BRNF_SYSCTLS = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")
FAST_PATH_MIN = 0.95  # below this share of fast-path forwards a TNA number is not a TNA number

H1_MAC, H2_MAC, H3_MAC = "02:00:00:00:01:02", "02:00:00:00:02:02", "02:00:00:00:03:02"
P1_MAC, P2_MAC, P3_MAC = "02:00:00:00:01:01", "02:00:00:00:02:01", "02:00:00:00:03:01"
BR_MAC = "02:00:00:00:00:01"
FLOW_MAC_BASE = "02:00:10:00:00:00"  # many-FDB destinations count up from here
FLOW_IP_BASE = "10.2.16.0"  # many-flows destinations count up from here, inside 10.2.0.0/16


@dataclass(frozen=True)
class Options:
    """Knobs of the scenarios (command-line flags)."""

    flows: int = 10_000
    fw_rules: int = 50
    variants: tuple[tuple[str, str], ...] = ()  # other builds of the TNA object: (name, path)
    without: tuple[str, ...] = ()  # profiling: TNA with these features forced off

    def tna_modes(self) -> list[str]:
        """The extra TNA modes these options ask for (beside ``tna`` itself)."""
        return ([f"{TNA}:{n}" for n, _ in self.variants]
                + [f"{TNA}:-{f}" for f in self.without])

    def tna_variant(self, mode: str) -> tuple[str | None, tuple[str, ...]]:
        """(object path or None for the production build, features forced off) of a mode."""
        name = mode.removeprefix(TNA).removeprefix(":")
        if not name:
            return None, ()
        if name.startswith("-"):
            return None, (name[1:],)
        return next(p for n, p in self.variants if n == name), ()


@dataclass
class FastPath:
    """TNA's counters on the DUT's ingress over one window."""

    forwarded: int
    punted: int
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        total = self.forwarded + self.punted
        return self.forwarded / total if total else 0.0


class Scenario:
    """A built topology; subclasses fill in the names and addresses in ``_build``."""

    name = ""
    title = ""
    family = 4
    sizes: tuple[int, ...] = (64,)
    modes: tuple[str, ...] = (NULL, LINUX, SOL)
    tna_na = ""  # why TNA is not measured here ("" when it is)
    punts_all = False  # TNA must hand every frame to Linux (punt-all)
    sol_l2 = sol_l3 = True  # what the speed-of-light program rewrites

    def __init__(self, bed: Testbed, opts: Options) -> None:
        self.bed, self.opts = bed, opts
        self.sender = self.dut = self.receiver = ""
        self.sender_if, self.ingress_if, self.egress_if, self.receiver_if = \
            "eth0", "", "", "eth0"
        self.src_mac, self.dst_mac = H1_MAC, ""
        self.sol_dmac, self.sol_smac = H2_MAC, ""
        self.src_ip = self.dst_ip = ""
        self.variation: Variation | None = None
        self.plan: Plan | None = None
        self.tna_expected_last: tuple[bool, str] = (False, "TNA never applied")
        self._mode_links: list[Link] = []
        self._mode_objs: list[BpfObject] = []
        self._null_sink: Sink | None = None
        self._pass: tuple[BpfObject, Link] | None = None
        self.sink: Sink | None = None

    # ---- building --------------------------------------------------------------------------

    def build(self) -> Scenario:
        self._build()
        self.bed.gro(self.dut, self.ingress_if)  # Linux mode: accept the generator's XDP frames
        self.sink = Sink(self.receiver, self.receiver_if)
        return self

    def _build(self) -> None:
        raise NotImplementedError

    def _set_mac(self, ns: str, ifname: str, mac: str) -> None:
        self.bed.run(ns, "ip", "link", "set", "dev", ifname, "address", mac)

    def _batch(self, ns: str, tool: str, lines: list[str]) -> None:
        """Many ``ip``/``bridge`` commands in one process (``-batch -``)."""
        if lines:
            self.bed.run(ns, tool, "-batch", "-", input="\n".join(lines) + "\n", timeout=300)

    def frame(self, size: int) -> FrameSpec:
        return FrameSpec(self.src_mac, self.dst_mac, self.src_ip, self.dst_ip, size=size)

    def frame_bytes(self, size: int) -> bytes:
        return frames.build(self.frame(size))

    def describe(self) -> str:
        return self.title

    # ---- modes -----------------------------------------------------------------------------

    def enter(self, mode: str) -> None:
        if mode in (NULL, NULL_TC):
            self._null_sink = Sink(self.dut, self.ingress_if, tc=mode == NULL_TC)
        elif mode in REFERENCE_PROGRAMS:
            self._attach_reference(REFERENCE_PROGRAMS[mode])
        elif mode.startswith(TNA):
            self._apply_tna(*self.opts.tna_variant(mode))
        elif mode == LINUX_NO_BRNF:
            self._brnf(False)
        elif mode == XDP_PASS:
            obj = BpfObject("bench_sink")
            try:
                self._pass = obj, attach(self.dut, self.ingress_if, obj.prog_fd("bench_pass"))
            except Exception:
                obj.close()
                raise

    def leave(self, mode: str) -> None:
        if mode in (NULL, NULL_TC) and self._null_sink:
            self._null_sink.close()
            self._null_sink = None
        elif mode in REFERENCE_PROGRAMS:
            for link in self._mode_links:
                link.close()
            for obj in self._mode_objs:
                obj.close()
            self._mode_links.clear()
            self._mode_objs.clear()
        elif mode.startswith(TNA):
            with netns.entered(self.dut):
                loader.detach_all()
            self.plan = None
        elif mode == LINUX_NO_BRNF:
            self._brnf(True)
        elif mode == XDP_PASS and self._pass:
            obj, link = self._pass
            link.close()
            obj.close()
            self._pass = None

    def counter(self, mode: str) -> Callable[[], int]:
        """Reads the packets delivered so far in ``mode``."""
        return self.sink_for(mode).packets

    def sink_for(self, mode: str) -> Sink:
        """The sink that counts the deliveries of ``mode``."""
        sink = self._null_sink if mode in (NULL, NULL_TC) else self.sink
        assert sink is not None
        return sink

    def sol_config(self) -> SolCfg:
        """The speed-of-light program's settings: this scenario's egress and rewrite."""
        cfg = SolCfg()
        with netns.entered(self.dut):
            cfg.ifindex = ifindex_of(self.egress_if)
        cfg.dmac[:] = list(frames.mac_bytes(self.sol_dmac))
        cfg.smac[:] = list(frames.mac_bytes(self.sol_smac or self.sol_dmac))
        cfg.rewrite_l2, cfg.rewrite_l3 = int(self.sol_l2), int(self.sol_l3)
        return cfg

    def ingress_prog_fd(self, mode: str) -> int | None:
        """A new fd of the program on the DUT's ingress in ``mode`` (None: no program)."""
        if mode in (NULL, NULL_TC) and self._null_sink:
            return os.dup(self._null_sink.obj.prog_fd(self._null_sink.prog))
        if mode in REFERENCE_PROGRAMS and self._mode_objs:
            return os.dup(self._mode_objs[-1].prog_fd(REFERENCE_PROGRAMS[mode]))
        if mode == XDP_PASS and self._pass:
            return os.dup(self._pass[0].prog_fd("bench_pass"))
        if mode.startswith(TNA):
            with netns.entered(self.dut):
                ingress = ifindex_of(self.ingress_if)
                ids = [a.prog_id for a in loader.attached() if a.ifindex == ingress]
            return libbpf.prog_get_fd_by_id(ids[0]) if ids else None
        return None

    def _attach_reference(self, prog: str) -> None:
        obj = BpfObject("bench_sol", self.sol_config())
        self._mode_objs.append(obj)
        self._mode_links.append(attach(self.dut, self.ingress_if, obj.prog_fd(prog)))

    def _brnf(self, on: bool) -> None:
        for key in BRNF_SYSCTLS:
            self.bed.sysctl(self.dut, f"net.bridge.{key}", "1" if on else "0")

    # ---- TNA -------------------------------------------------------------------------------

    def _apply_tna(self, obj_path: str | None = None, off: tuple[str, ...] = ()) -> None:
        """introspect -> plan -> apply, as ``tna run`` does (``followed``: nothing changes
        while measuring, as if a daemon followed); ``off`` is for profiling only."""
        with netns.entered(self.dut):
            self.plan = control.apply(
                self.dut, control.new_datapath(obj_path=obj_path), followed=True,
                tweak=lambda p: dataclasses.replace(p, features=without(p.features, off))).plan
        self.tna_expected_last = self.tna_expected()

    def tna_expected(self) -> tuple[bool, str]:
        """Whether the plan puts this traffic on the fast path; if not, the plan's reasons."""
        assert self.plan is not None
        fam = "ipv4" if self.family == 4 else "ipv6"
        ingress = self.plan.interface(self.ingress_if)
        egress = self.plan.interface(self.egress_if)
        feats = ingress.features
        fam_on = feats is not None and (
            (feats.ipv4_router or (feats.bridge_port and bool(feats.bridge_ipv4)))
            if self.family == 4 else
            (feats.ipv6_router or (feats.bridge_port and bool(feats.bridge_ipv6))))
        if fam_on and egress.egress:
            return True, ""
        out_of = f"routed out of {self.egress_if}"
        reasons = [s for s in self.plan.slow_path if s.traffic.startswith(fam)]
        reasons += [s for s in ingress.slow_path if "routed out of" not in s.traffic]
        reasons += [s for s in egress.slow_path if out_of in s.traffic]
        why = "; ".join(f"{s.reason}: {s.detail}" for s in reasons) or "not planned"
        return False, f"plan leaves {fam} forwarding to Linux ({why})"

    def fast_path(self) -> FastPath:
        """Cumulative TNA counters of the ingress interface (read in the DUT namespace)."""
        with netns.entered(self.dut):
            ifindex = ifindex_of(self.ingress_if)
            row = loader.read_counters().get(ifindex, {})
        reasons = {n: c.packets for n, c in row.items()
                   if n not in ("forwarded", "bridged", "transmitted", "nat_original",
                                "nat_reply") and c.packets}
        fwd = sum(row[n].packets for n in ("forwarded", "bridged") if n in row)
        return FastPath(fwd, sum(reasons.values()), reasons)

    # ---- teardown --------------------------------------------------------------------------

    def close(self) -> None:
        """Detach what the scenario attached; the Testbed deletes the namespaces."""
        for mode in (NULL, SOL, XDP_PASS):  # SOL and FIB share the clean-up
            self.leave(mode)
        if self.sink:
            self.sink.close()
            self.sink = None


def without(features: Features | None, off: tuple[str, ...]) -> Features | None:
    """``features`` with the named ones turned off (profiling what a feature costs)."""
    if features is None or not off:
        return features
    known = {f.name for f in dataclasses.fields(Features)}
    unknown = set(off) - known
    if unknown:
        raise ValueError(f"no such feature(s): {', '.join(sorted(unknown))}")
    return dataclasses.replace(features, **{name: type(getattr(features, name))(0)
                                            for name in off})


def fast_path_delta(before: FastPath, after: FastPath) -> FastPath:
    reasons = {k: after.reasons.get(k, 0) - before.reasons.get(k, 0)
               for k in after.reasons if after.reasons.get(k, 0) - before.reasons.get(k, 0)}
    return FastPath(after.forwarded - before.forwarded, after.punted - before.punted, reasons)


# ---- routers ---------------------------------------------------------------------------------

class Router(Scenario):
    """h1 -- r -- h2: r routes 10.1.0.0/24 <-> 10.2.0.0/16 and fd00:1::/64 <-> fd00:2::/64."""

    name, title, family = "router-v4", "IPv4 router", 4
    sizes: tuple[int, ...] = (64, 1514)
    modes: tuple[str, ...] = (NULL, LINUX, TNA, FIB, SOL)
    flows = 1
    fw_rules = 0

    def _build(self) -> None:
        bed = self.bed
        self.sender, self.dut, self.receiver = bed.ns("h1"), bed.ns("r"), bed.ns("h2")
        self.ingress_if, self.egress_if = "r1", "r2"
        self.dst_mac, self.sol_smac = P1_MAC, P2_MAC
        bed.veth(self.sender, "eth0", self.dut, "r1")
        bed.veth(self.dut, "r2", self.receiver, "eth0")
        for ns, ifname, mac in ((self.sender, "eth0", H1_MAC), (self.dut, "r1", P1_MAC),
                                (self.dut, "r2", P2_MAC), (self.receiver, "eth0", H2_MAC)):
            self._set_mac(ns, ifname, mac)
        bed.sysctl(self.dut, "net.ipv4.ip_forward", "1")
        bed.sysctl(self.dut, "net.ipv6.conf.all.forwarding", "1")
        for ns, ifname, addrs in (
                (self.sender, "eth0", ("10.1.0.2/24", "fd00:1::2/64")),
                (self.dut, "r1", ("10.1.0.1/24", "fd00:1::1/64")),
                (self.dut, "r2", ("10.2.0.1/16", "fd00:2::1/64")),
                (self.receiver, "eth0", ("10.2.0.2/16", "fd00:2::2/64"))):
            for addr in addrs:
                bed.run(ns, "ip", "addr", "add", addr, "dev", ifname)
        neigh = [f"neigh add {ip} lladdr {mac} dev {dev} nud permanent" for ip, mac, dev in (
            ("10.1.0.2", H1_MAC, "r1"), ("fd00:1::2", H1_MAC, "r1"),
            ("10.2.0.2", H2_MAC, "r2"), ("fd00:2::2", H2_MAC, "r2"))]
        self.src_ip, self.dst_ip = ("10.1.0.2", "10.2.0.2") if self.family == 4 else \
            ("fd00:1::2", "fd00:2::2")
        if self.flows > 1:
            self.variation = frames.ipv4_destinations(FLOW_IP_BASE, self.flows)
            self.dst_ip = FLOW_IP_BASE
            neigh += [f"neigh add {ipaddress.IPv4Address(self.variation.value(i))} lladdr "
                      f"{H2_MAC} dev r2 nud permanent" for i in range(self.flows)]
        self._batch(self.dut, "ip", neigh)


class RouterV6(Router):
    name, title, family = "router-v6", "IPv6 router", 6


class ManyFlows(Router):
    name, title, sizes = "many-flows", "IPv4 router, many destinations", (64,)

    def __init__(self, bed: Testbed, opts: Options) -> None:
        super().__init__(bed, opts)
        self.flows = opts.flows

    def describe(self) -> str:
        return f"IPv4 router, {self.flows} destinations (permanent neighbours in one /16)"


class PuntAll(Router):
    """The IPv4 router, but every frame is a first fragment (MF set): TNA attached hands each
    one to Linux (``fragment``: reassembly is Linux's business), Linux forwards it as any
    other packet.  What TNA costs the traffic it cannot help, against Linux alone and against
    an XDP program that passes everything (``xdp-pass``)."""

    name, title, sizes = "punt-all", "IPv4 router, every frame punted to Linux", (64,)
    modes: tuple[str, ...] = (NULL, NULL_TC, LINUX, XDP_PASS, TNA)
    punts_all = True

    def frame(self, size: int) -> FrameSpec:
        return dataclasses.replace(super().frame(size), fragment=True)

    def describe(self) -> str:
        return ("IPv4 router; every frame an IPv4 first fragment, which TNA punts to Linux "
                "(reason `fragment`) and Linux forwards")


class Firewall(Router):
    """The router plus a forward-hook ruleset of ``rules`` rules the benchmark flow does not
    match (``ip daddr 198.18.x.y udp dport P drop``), then ``accept``; nft flavour."""

    name, title, sizes = "firewall", "IPv4 router + nft firewall", (64,)
    modes: tuple[str, ...] = (NULL, LINUX, TNA, SOL)
    flavour = "nft"  # nft, iptables-nft or iptables-legacy
    rules: int | None = None  # None: --fw-rules

    def __init__(self, bed: Testbed, opts: Options) -> None:
        super().__init__(bed, opts)
        self.fw_rules = self.rules if self.rules is not None else opts.fw_rules

    @classmethod
    def available(cls) -> bool:
        """Whether this machine has the flavour's tool (iptables-legacy may be missing)."""
        return shutil.which("nft" if cls.flavour == "nft" else f"{cls.flavour}-restore") \
            is not None

    def _build(self) -> None:
        super()._build()
        if self.flavour == "nft":
            self.bed.run(self.dut, "nft", "-f", "-", input=firewall_ruleset(self.fw_rules),
                         timeout=300)
        else:
            self.bed.run(self.dut, f"{self.flavour}-restore",
                         input=iptables_ruleset(self.fw_rules), timeout=300)

    def describe(self) -> str:
        how = {"nft": "nft forward chain", "iptables-nft": "iptables-nft FORWARD chain",
               "iptables-legacy": "iptables-legacy FORWARD chain"}[self.flavour]
        return f"IPv4 router, {how}: {self.fw_rules} non-matching rules, then accept"


class Firewall1000(Firewall):
    name, title, rules = "firewall-1000", "IPv4 router + nft firewall, 1000 rules", 1000


class FirewallIpt(Firewall):
    name, title, flavour = "firewall-ipt", "IPv4 router + iptables-nft firewall", "iptables-nft"


class FirewallIpt1000(FirewallIpt):
    name, title, rules = ("firewall-ipt-1000", "IPv4 router + iptables-nft firewall, 1000 rules",
                          1000)


class FirewallLegacy(Firewall):
    name, title, flavour = ("firewall-legacy", "IPv4 router + iptables-legacy firewall",
                            "iptables-legacy")


class FirewallLegacy1000(FirewallLegacy):
    name, title, rules = ("firewall-legacy-1000",
                          "IPv4 router + iptables-legacy firewall, 1000 rules", 1000)


class StatefulFirewall(Firewall):
    """A stateful router firewall (policy drop; ``ct state established,related accept``
    first), and the benchmark flow is an established conntrack flow.

    Nothing but an established packet may pass from h1: before every mode the receiver's side
    sends one datagram 10.2.0.2:9 -> 10.1.0.2:4321, which the last rule accepts (so conntrack
    confirms the flow) and the generator's frames are its replies.  A Linux rate of zero would
    therefore mean the flow was not established.
    """

    name, title = "firewall-stateful", "IPv4 router + stateful nft firewall (established flow)"

    def _build(self) -> None:
        Router._build(self)
        self.bed.run(self.dut, "nft", "-f", "-", input=stateful_ruleset(self.fw_rules),
                     timeout=300)

    def enter(self, mode: str) -> None:
        super().enter(mode)
        self.establish()

    def establish(self) -> None:
        """The reply direction first (again before every mode: the conntrack entry may have
        timed out while another mode bypassed Linux)."""
        spec = frames.FrameSpec(H2_MAC, P2_MAC, self.dst_ip, self.opener_dst(), size=64,
                                sport=frames.FrameSpec.dport, dport=frames.FrameSpec.sport)
        with netns.entered(self.receiver), socket.socket(socket.AF_PACKET,
                                                         socket.SOCK_RAW) as s:
            s.bind((self.receiver_if, 0))
            s.send(frames.build(spec))

    def opener_dst(self) -> str:
        """Where the reply-direction opener goes: the benchmark flow's source."""
        return self.src_ip

    def describe(self) -> str:
        return (f"IPv4 router, nft forward chain, policy drop: ct state established,related "
                f"accept, ct state invalid drop, {self.fw_rules} non-matching rules, accept "
                "the reverse flow; the benchmark flow is established (reply direction)")


class NatUdp(StatefulFirewall):
    """The stateful firewall behind a UDP port forward: the opener from h2 goes to r2's own
    address (10.2.0.1) and is DNATed to h1; the benchmark flow (h1 -> h2) is that entry's
    reply direction, so every frame leaves with its source rewritten to 10.2.0.1 (NAT from
    conntrack's entry, docs/stateful.md)."""

    name, title = "nat-udp", "IPv4 NAT gateway (UDP port forward, established flow)"

    def _build(self) -> None:
        super()._build()
        self.bed.run(self.dut, "nft", "-f", "-", input=(
            "table ip tna_bench_nat {\n  chain pre {\n"
            "    type nat hook prerouting priority dstnat; policy accept;\n"
            f'    iifname "r2" udp dport {frames.FrameSpec.sport} dnat to {self.src_ip}\n'
            "  }\n}\n"))

    def opener_dst(self) -> str:
        return "10.2.0.1"  # r2's own address: the port forward DNATs it to h1

    def describe(self) -> str:
        return ("IPv4 router, the stateful nft forward chain of firewall-stateful, and a nat "
                "prerouting chain forwarding 10.2.0.1's UDP port to h1; the benchmark flow is "
                "the port forward's reply direction (source NATed back to 10.2.0.1)")


class StatefulTcp(Firewall):
    """The stateful forward chain over a real TCP connection h1 -> h2 (port 9), opened through
    r before the sink is attached and held open for the scenario's life; the generator sends
    h1's last pure ACK of that connection, its window one smaller, again and again (a
    duplicate ACK; the exact repeat of the last segment the kernel saw would go to Linux,
    which counts repeats as retransmissions).

    With window tracking on (``nf_conntrack_tcp_be_liberal=0``, the default) the kernel's
    tracked window lets only segments that change nothing in it skip Linux (docs/stateful.md):
    a duplicate pure ACK is one, and every bench frame is the same segment (the skb source
    sends clones of one frame).  It carries the timestamps option, as Linux's ACKs do, so the
    frame is 66 bytes.  Conntrack's established timeout is days: no re-opening between modes.
    """

    name, title = "stateful-tcp", "IPv4 router + stateful nft firewall (established TCP)"
    sizes = (66,)
    port = frames.FrameSpec.dport
    ack: frames.TcpSegment | None = None

    def __init__(self, bed: Testbed, opts: Options) -> None:
        super().__init__(bed, opts)
        self._sockets: list[socket.socket] = []

    def _build(self) -> None:
        Router._build(self)
        self.bed.run(self.dut, "nft", "-f", "-", input=tcp_stateful_ruleset(self.fw_rules),
                     timeout=300)
        self._nat()
        for ns, via in ((self.sender, "10.1.0.1"), (self.receiver, "10.2.0.1")):
            self.bed.run(ns, "ip", "route", "add", "default", "via", via)
            self.bed.sysctl(ns, "net.ipv4.tcp_timestamps", "1")  # the 66-byte ACK
        self.ack = self._connect()

    def _nat(self) -> None:
        """No NAT here; nat-tcp masquerades."""

    def _connect(self) -> frames.TcpSegment:
        """Open the connection (h2 sends a few bytes, h1 acknowledges them) and return h1's
        last segment of it, captured on h1's veth: a pure ACK of everything h2 sent."""
        with netns.entered(self.receiver):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sockets.append(listener)
            listener.bind((self.dst_ip, self.port))
            listener.listen(1)
        with netns.entered(self.sender):
            # ETH_P_ALL: a socket bound to one protocol does not see outgoing frames
            cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._sockets += [cap, client]
        cap.bind((self.sender_if, 0))
        client.bind((self.src_ip, frames.FrameSpec.sport))
        client.settimeout(5)
        client.connect((self.dst_ip, self.port))
        listener.settimeout(5)
        server, _ = listener.accept()
        self._sockets.append(server)
        hello = b"established"
        server.sendall(hello)
        assert client.recv(64) == hello
        return self._last_ack(cap)

    def _last_ack(self, cap: socket.socket) -> frames.TcpSegment:
        """Poll the capture until h1's pure ACK of h2's data has gone out."""
        flow = (self.src_ip, self.dst_ip, frames.FrameSpec.sport, self.port)
        syn_ack: frames.TcpSegment | None = None
        deadline = time.monotonic() + 5
        cap.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                frame, info = cap.recvfrom(2048)
            except TimeoutError:
                continue
            got = frames.parse_tcp(frame)
            if got is None:
                continue
            if got[:4] == (*flow[1::-1], *flow[3:1:-1]) and got[4].flags & 0x02:
                syn_ack = got[4]  # h2's SYN-ACK: its data starts at seq + 1
            elif (got[:4] == flow and info[2] == socket.PACKET_OUTGOING and syn_ack
                  and got[4].flags == frames.TCP_ACK and not got[4].data
                  and got[4].ack == (syn_ack.seq + 1 + len(b"established")) & 0xFFFFFFFF):
                cap.close()
                return got[4]
        raise TimeoutError("h1 never acknowledged h2's data (no established TCP flow)")

    def enter(self, mode: str) -> None:
        if mode.startswith(TNA):
            self._other_last_segment()
        super().enter(mode)

    def _other_last_segment(self) -> None:
        """Let Linux see one more of h1's ACKs (its window two smaller) before TNA attaches:
        the bench frames then are not a repeat of the last segment the kernel saw (another
        mode may have sent them through Linux), which the fast path leaves to the kernel
        because it counts repeats as retransmissions.  Waited for at the sink, so that it is
        counted before the mode is."""
        frame = self._segment(self.sizes[0], 2)
        before = self.sink.packets() if self.sink is not None else None
        with netns.entered(self.sender), socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((self.sender_if, 0))
            s.send(frame)
        if before is not None:  # delivered (so counted) before the mode's counting starts
            wait_for(lambda: self.sink is not None and self.sink.packets() > before,
                     what="the ACK that precedes TNA's mode")

    def _segment(self, size: int, smaller_window: int) -> bytes:
        assert self.ack is not None, "built before the connection was opened"
        return frames.build_tcp(self.frame(size), dataclasses.replace(
            self.ack, window=max(self.ack.window - smaller_window, 1)))

    def frame_bytes(self, size: int) -> bytes:
        # one less window than h1's last ACK: moves nothing in the tracked window, and is not
        # the last segment the kernel saw (see _other_last_segment)
        frame = self._segment(size, 1)
        if len(frame) != size:
            raise ValueError(f"{self.name} sends h1's {len(frame)}-byte ACK, not {size} bytes")
        return frame

    def close(self) -> None:
        super().close()
        for s in self._sockets:
            s.close()
        self._sockets.clear()

    def describe(self) -> str:
        return (f"IPv4 router, nft forward chain, policy drop: ct state established,related "
                f"accept, ct state invalid drop, {self.fw_rules} non-matching rules, accept TCP "
                f"from r1 to port {self.port}; a real TCP connection h1 -> h2:{self.port} is "
                "held open, every frame a duplicate of h1's last pure ACK (timestamps, 66 B; "
                "be_liberal=0: a segment that moves nothing in the tracked window)")


class NatTcp(StatefulTcp):
    """stateful-tcp behind a masquerading gateway: r masquerades h1 out of r2, as a home or
    office gateway does; the benchmark segments are the entry's original direction, each
    leaving with its source rewritten to 10.2.0.1 (SNAT from conntrack's entry)."""

    name, title = "nat-tcp", "IPv4 NAT gateway (masquerade, established TCP)"

    def _nat(self) -> None:
        self.bed.run(self.dut, "nft", "-f", "-", input=(
            "table ip tna_bench_nat {\n  chain post {\n"
            "    type nat hook postrouting priority srcnat; policy accept;\n"
            '    oifname "r2" masquerade\n'
            "  }\n}\n"))

    def describe(self) -> str:
        return ("IPv4 router, the stateful nft forward chain of stateful-tcp, and a nat "
                "postrouting chain masquerading everything out of r2; the TCP connection h1 -> "
                f"h2:{self.port} is masqueraded to 10.2.0.1, every frame a duplicate of h1's "
                "last pure ACK (original direction, source NATed)")


def firewall_ruleset(n: int) -> str:
    """An ip-family forward chain: ``n`` rules that never match the benchmark flow, accept."""
    return ("table ip tna_bench {\n  chain forward {\n"
            "    type filter hook forward priority filter; policy accept;\n"
            + "".join(f"    {r}\n" for r in _nft_filler(n)) + "    accept\n  }\n}\n")


def _filler(i: int) -> tuple[str, int]:
    return f"198.{18 + i // 64000 % 2}.{i % 64000 // 250}.{i % 250 + 1}", 1000 + i % 60000


def _nft_filler(n: int) -> list[str]:
    return [f"ip daddr {a} udp dport {p} drop" for a, p in map(_filler, range(n))]


def iptables_ruleset(n: int) -> str:
    """The same as ``firewall_ruleset`` for iptables-restore (filter table, FORWARD)."""
    rules = [f"-A FORWARD -d {a}/32 -p udp -m udp --dport {p} -j DROP"
             for a, p in map(_filler, range(n))]
    return "*filter\n:FORWARD ACCEPT [0:0]\n" + "".join(
        f"{r}\n" for r in rules) + "-A FORWARD -j ACCEPT\nCOMMIT\n"


def stateful_ruleset(n: int) -> str:
    """Policy drop; established first; ``n`` non-matching rules; the reverse flow's opener."""
    rules = ["ct state established,related accept", "ct state invalid drop",
             *_nft_filler(n),
             f'iifname "r2" udp sport {frames.FrameSpec.dport} '
             f"udp dport {frames.FrameSpec.sport} accept"]
    return ("table ip tna_bench {\n  chain forward {\n"
            "    type filter hook forward priority filter; policy drop;\n"
            + "".join(f"    {r}\n" for r in rules) + "  }\n}\n")


def tcp_stateful_ruleset(n: int) -> str:
    """As ``stateful_ruleset``, but the opener accepted is TCP from r1 to the benchmark port."""
    rules = ["ct state established,related accept", "ct state invalid drop",
             *_nft_filler(n), f'iifname "r1" tcp dport {frames.FrameSpec.dport} accept']
    return ("table ip tna_bench {\n  chain forward {\n"
            "    type filter hook forward priority filter; policy drop;\n"
            + "".join(f"    {r}\n" for r in rules) + "  }\n}\n")


# ---- bridges ---------------------------------------------------------------------------------

class Bridge(Scenario):
    """h1, h2, h3 on the three ports of br0 in b; h1 sends to h2 (static FDB entry)."""

    name, title = "bridge", "Linux bridge, 3 ports"
    modes = (NULL, LINUX, LINUX_NO_BRNF, TNA, SOL)
    sol_l2 = sol_l3 = False  # a bridge forwards frames unchanged
    fdb_entries = 0

    def _build(self) -> None:
        bed = self.bed
        self.sender, self.dut, self.receiver = bed.ns("h1"), bed.ns("b"), bed.ns("h2")
        h3 = bed.ns("h3")
        self.ingress_if, self.egress_if = "p1", "p2"
        self.dst_mac = H2_MAC
        self.src_ip, self.dst_ip = "10.0.0.1", "10.0.0.2"
        bed.run(self.dut, "ip", "link", "add", "br0", "address", BR_MAC, "type", "bridge")
        for i, host, mac, pmac in ((1, self.sender, H1_MAC, P1_MAC),
                                   (2, self.receiver, H2_MAC, P2_MAC), (3, h3, H3_MAC, P3_MAC)):
            bed.veth(host, "eth0", self.dut, f"p{i}")
            self._set_mac(host, "eth0", mac)
            self._set_mac(self.dut, f"p{i}", pmac)
            bed.run(self.dut, "ip", "link", "set", f"p{i}", "master", "br0")
            bed.run(host, "ip", "addr", "add", f"10.0.0.{i}/24", "dev", "eth0")
        bed.run(self.dut, "ip", "link", "set", "br0", "up")
        fdb = [f"fdb replace {mac} dev {dev} master static"
               for mac, dev in ((H1_MAC, "p1"), (H2_MAC, "p2"), (H3_MAC, "p3"))]
        if self.fdb_entries > 1:
            self.variation = frames.mac_destinations(FLOW_MAC_BASE, self.fdb_entries)
            self.dst_mac = FLOW_MAC_BASE
            fdb += [f"fdb replace {_mac(self.variation.value(i))} dev p2 master static"
                    for i in range(self.fdb_entries)]
        self._batch(self.dut, "bridge", fdb)


def _mac(low32: int, high: bytes = b"\x02\x00") -> str:
    return ":".join(f"{b:02x}" for b in high + low32.to_bytes(4, "big"))


class BridgeFdb(Bridge):
    name, title = "bridge-fdb", "Linux bridge, many destinations"

    def __init__(self, bed: Testbed, opts: Options) -> None:
        super().__init__(bed, opts)
        self.fdb_entries = opts.flows

    def describe(self) -> str:
        return f"Linux bridge, 3 ports, {self.fdb_entries} static FDB entries"


class BridgeRouting(Scenario):
    """h1 on br1, h2 on br2 (a spare port each), r routes between br1 and br2."""

    name, title = "bridge-routing", "routing between two bridges"
    modes = (NULL, LINUX, LINUX_NO_BRNF, TNA, SOL)

    def _build(self) -> None:
        bed = self.bed
        self.sender, self.dut, self.receiver = bed.ns("h1"), bed.ns("r"), bed.ns("h2")
        self.ingress_if, self.egress_if = "p1", "p2"
        self.dst_mac, self.sol_smac = P1_MAC, P2_MAC  # br1's and br2's MACs
        self.src_ip, self.dst_ip = "10.1.0.2", "10.2.0.2"
        bed.sysctl(self.dut, "net.ipv4.ip_forward", "1")
        for i, mac in ((1, P1_MAC), (2, P2_MAC)):
            bed.run(self.dut, "ip", "link", "add", f"br{i}", "address", mac, "type", "bridge")
        # ports p1/p3 on br1 (hosts h1 eth0/eth1), p2/p4 on br2 (h2 eth0/eth1)
        for port, host, hif, br in ((1, self.sender, "eth0", 1), (3, self.sender, "eth1", 1),
                                    (2, self.receiver, "eth0", 2), (4, self.receiver, "eth1", 2)):
            bed.veth(host, hif, self.dut, f"p{port}")
            self._set_mac(self.dut, f"p{port}", f"02:00:00:00:0{port}:0a")
            bed.run(self.dut, "ip", "link", "set", f"p{port}", "master", f"br{br}")
        self._set_mac(self.sender, "eth0", H1_MAC)
        self._set_mac(self.receiver, "eth0", H2_MAC)
        for i in (1, 2):
            bed.run(self.dut, "ip", "addr", "add", f"10.{i}.0.1/24", "dev", f"br{i}")
            bed.run(self.dut, "ip", "link", "set", f"br{i}", "up")
        bed.run(self.sender, "ip", "addr", "add", "10.1.0.2/24", "dev", "eth0")
        bed.run(self.receiver, "ip", "addr", "add", "10.2.0.2/24", "dev", "eth0")
        self._batch(self.dut, "ip", [
            f"neigh add 10.1.0.2 lladdr {H1_MAC} dev br1 nud permanent",
            f"neigh add 10.2.0.2 lladdr {H2_MAC} dev br2 nud permanent"])
        self._batch(self.dut, "bridge", [f"fdb replace {H1_MAC} dev p1 master static",
                                         f"fdb replace {H2_MAC} dev p2 master static"])


FIREWALLS: tuple[type[Firewall], ...] = (
    Firewall, Firewall1000, FirewallIpt, FirewallIpt1000, FirewallLegacy, FirewallLegacy1000,
    StatefulFirewall, NatUdp, StatefulTcp, NatTcp)
_ALL: tuple[type[Scenario], ...] = (Router, RouterV6, ManyFlows, PuntAll,
                                    *(f for f in FIREWALLS if f.available()), Bridge,
                                    BridgeRouting, BridgeFdb)
SCENARIOS: dict[str, type[Scenario]] = {cls.name: cls for cls in _ALL}
