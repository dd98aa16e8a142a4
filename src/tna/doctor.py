"""Operator guidance: how much of each interface's traffic the fast path can take, what keeps
the rest on Linux, and the exact command that changes it.

Role in the flow: after the plan.  :func:`advise` is pure: from the snapshot, the plan and a
few facts the plan does not carry (:class:`Peer`: where a veth's peer lives and whether it
offloads TX checksums), it says per interface the expected fast-path share ("all", "none",
"partial: <what stays on Linux>") and, for every condition that blocks it, a
:class:`Finding` with the command that lifts it.  ``tna plan`` and ``tna apply`` print that;
``tna doctor`` adds what only the running system shows (:func:`doctor`: generic-mode XDP,
kernel features, br_netfilter).  A fix is offered only where it leaves what Linux does to
packets unchanged, or says in ``caveat`` what else it changes; forwarding that is off, a
netfilter hook or an xfrm policy are the configuration, not defects, and get no fix.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from tna import netns
from tna.model import Link, Snapshot
from tna.plan import InterfacePlan, Plan, SlowPath


@dataclass(frozen=True)
class Peer:
    """The other end of a veth, as far as it can be found from here."""

    ifindex: int  # in its own namespace
    ifname: str | None = None
    netns: str | None = None  # "" this namespace, a name from /run/netns, None unknown
    nsid: int | None = None  # IFLA_LINK_NETNSID, when elsewhere
    tx_csum: bool | None = None  # TX checksum offload on (None: unknown)

    def command(self, *argv: str) -> str:
        """``argv`` run where the peer lives, naming it by name where it has one."""
        if self.netns is not None and self.ifname:
            cmd = shlex.join([a.replace("{peer}", self.ifname) for a in argv])
            return cmd if self.netns == "" else f"ip netns exec {shlex.quote(self.netns)} {cmd}"
        where = f"ifindex {self.ifindex} in netns id {self.nsid}"
        return shlex.join(argv).replace("{peer}", f"<the veth peer: {where}>")


@dataclass(frozen=True)
class Finding:
    """One condition that keeps traffic on Linux (or TNA from working), and its fix."""

    subject: str  # an interface, or "namespace" / "kernel"
    reason: str  # the plan's slow-path reason, or a doctor check's name
    detail: str
    fix: str | None = None  # the exact command; None where there is none to give
    caveat: str = ""  # what the fix changes besides

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Share:
    """The expected fast-path share of what an interface receives."""

    ifname: str
    share: str  # "all", "none" or "partial"
    stays_on_linux: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()

    def text(self) -> str:
        if self.share == "partial":  # what stays on Linux
            return "partial: " + "; ".join(self.stays_on_linux)
        if self.share == "none" and self.stays_on_linux:
            return "none (" + "; ".join(self.stays_on_linux) + ")"
        return self.share

    def to_dict(self) -> dict[str, Any]:
        return {"share": self.share, "text": self.text(),
                "stays_on_linux": list(self.stays_on_linux),
                "findings": [f.to_dict() for f in self.findings]}


@dataclass
class Guidance:
    shares: dict[str, Share] = field(default_factory=dict)  # ifname -> share
    namespace: list[Finding] = field(default_factory=list)  # namespace-wide slow paths
    by_slow_path: dict[tuple[str, SlowPath], Finding] = field(default_factory=dict)

    def fix_for(self, ifname: str, slow: SlowPath) -> Finding | None:
        return self.by_slow_path.get((ifname, slow))

    def findings(self) -> list[Finding]:
        """Every finding once: namespace-wide, each interface's slow paths, and those of
        the guidance's own (local senders)."""
        out = list(self.namespace)
        for (ifname, _), f in self.by_slow_path.items():
            if ifname and f not in out:
                out.append(f)
        for s in self.shares.values():
            out += [f for f in s.findings if f not in out]
        return out

    def egress_fixes(self) -> list[str]:
        """The commands that would give the fast path somewhere to send frames."""
        return [f.fix for (ifname, s), f in self.by_slow_path.items()
                if ifname and _egress_block(s) and f.fix]

    def forwards_nothing(self, plan: Plan) -> bool:
        """Programs attached, but no interface's share is more than none."""
        return plan.attaches and all(s.share == "none" for s in self.shares.values())

    def to_dict(self) -> dict[str, Any]:
        return {"interfaces": {n: s.to_dict() for n, s in self.shares.items()},
                "namespace": [f.to_dict() for f in self.namespace]}


# ---- fixes for the plan's reasons -------------------------------------------------------------

def fix(snap: Snapshot, ifname: str, slow: SlowPath, peers: Mapping[int, Peer]) -> Finding:
    """The finding for one of the plan's slow-path entries, with its fix where there is one."""
    link = next((lk for lk in snap.links if lk.ifname == ifname), None)
    dev = shlex.quote(ifname)
    reason, detail = slow.reason, slow.detail
    cmd, caveat = None, ""
    if reason == "no_xdp_xmit" and link is not None and link.kind == "veth":
        peer = peers.get(link.ifindex)
        if peer is not None:
            cmd = peer.command("ethtool", "-K", "{peer}", "gro", "on")
            caveat = "then run 'tna apply' again (a running 'tna run' follows by itself)"
    elif reason == "link_down":
        cmd, caveat = f"ip link set dev {dev} up", "the interface starts carrying traffic"
    elif reason == "foreign_xdp":
        cmd = f"ip link set dev {dev} xdp off"
        caveat = "only if that XDP program is not needed: it is removed"
    elif reason in ("tc_ingress", "tc_egress"):
        cmd = f"tc qdisc del dev {dev} clsact"
        caveat = "only if those tc filters are not needed: they are removed (tcx programs: " \
                 "bpftool net detach)"
    elif reason == "qdisc":
        cmd, caveat = f"tc qdisc del dev {dev} root", "only if the root qdisc is not needed"
    elif reason == "redirects_unwatched":
        cmd = ("sysctl -w net.ipv4.conf.all.accept_redirects=0 "
               f"net.ipv4.conf.{ifname}.accept_redirects=0")
        caveat = "the router stops acting on ICMP redirects (routers rarely should)"
    elif reason == "rp_filter_with_rules":
        cmd = f"sysctl -w net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{ifname}.rp_filter=0"
        caveat = "only if source validation is not needed: Linux stops doing it too"
    elif reason == "proxy_ndp":
        cmd, caveat = "sysctl -w net.ipv6.conf.all.proxy_ndp=0", "only if proxy NDP is unused"
    elif reason == "br_netfilter":
        key = "bridge-nf-call-ip6tables" if "ip6tables" in detail else "bridge-nf-call-iptables"
        cmd = f"sysctl -w net.bridge.{key}=0"
        caveat = "ip(6)tables/nft rules stop seeing bridged packets"
    elif reason == "forwarding_disabled":
        caveat = "Linux does not forward this either: nothing to accelerate"
    return Finding(ifname or "namespace", reason, f"{slow.traffic}: {detail}", cmd, caveat)


def _egress_block(slow: SlowPath) -> bool:
    return slow.traffic.startswith("traffic routed out of")


def advise(snap: Snapshot, plan: Plan, peers: Mapping[int, Peer]) -> Guidance:
    """Per interface the expected share and the findings behind it; pure."""
    g = Guidance()
    for s in plan.slow_path:
        g.namespace.append(fix(snap, "", s, peers))
        g.by_slow_path[("", s)] = g.namespace[-1]
    for i in plan.interfaces:
        for s in i.slow_path:
            g.by_slow_path[(i.ifname, s)] = fix(snap, i.ifname, s, peers)
    for i in plan.interfaces:
        if not i.bridge:
            g.shares[i.ifname] = _share(snap, plan, i, g, peers)
    return g


def _share(snap: Snapshot, plan: Plan, i: InterfacePlan, g: Guidance,
           peers: Mapping[int, Peer]) -> Share:
    own = [g.by_slow_path[(i.ifname, s)] for s in i.slow_path if not _egress_block(s)]
    if i.features is None:  # its own reasons, else the namespace's (forwarding off, ...)
        held = [s.traffic for s in i.slow_path if not _egress_block(s)]
        return Share(i.ifname, "none", tuple(held or [s.traffic for s in plan.slow_path]),
                     tuple(own or g.namespace))
    others = [o for o in plan.interfaces if o.ifindex != i.ifindex and not o.bridge]
    blocked = [o for o in others if not o.egress]
    out_findings = [g.by_slow_path[(o.ifname, s)] for o in blocked for s in o.slow_path
                    if _egress_block(s)]
    if not any(o.egress for o in plan.interfaces if o.ifindex != i.ifindex):
        names = ", ".join(o.ifname for o in blocked)
        why = (f"no other interface takes redirected frames ({names})" if blocked
               else "no other interface to forward to")
        return Share(i.ifname, "none", (why,), tuple(own + out_findings))
    stays = [s.traffic for s in plan.slow_path]
    stays += [s.traffic for s in i.slow_path if not _egress_block(s)]
    stays += [f"traffic routed out of {o.ifname}" for o in blocked]
    extra = _local_senders(snap, i, peers)
    stays += [local_senders(i.ifname)] if extra else []
    findings = tuple(own + out_findings + ([extra] if extra else []))
    return Share(i.ifname, "partial" if stays else "all", tuple(stays), findings)


def local_senders(ifname: str) -> str:
    return f"TCP/UDP sent by programs behind {ifname}'s veth peer"


def _local_senders(snap: Snapshot, i: InterfacePlan, peers: Mapping[int, Peer]
                   ) -> Finding | None:
    """A veth whose peer offloads TX checksums: what local programs behind it send arrives
    with partial checksums, which the fast path must leave to Linux (``l4_csum``)."""
    link = next((lk for lk in snap.links if lk.ifindex == i.ifindex), None)
    peer = peers.get(i.ifindex)
    if not (link and link.kind == "veth" and i.features and i.features.verify_l4_csum
            and peer and peer.tx_csum):
        return None
    return Finding(i.ifname, "l4_csum",
                   "the peer offloads TX checksums: what programs there send arrives with "
                   "partial checksums, which only Linux completes; traffic forwarded from "
                   "further away is not affected",
                   peer.command("ethtool", "-K", "{peer}", "tx", "off"),
                   "the sender computes checksums in software")


# ---- facts the plan does not carry (read from the kernel) -------------------------------------

def read_peers(snap: Snapshot) -> dict[int, Peer]:
    """ifindex -> the peer of each veth of the current namespace."""
    out: dict[int, Peer] = {}
    foreign: dict[int, tuple[int, int]] = {}  # ifindex -> (peer ifindex, nsid)
    for lk in snap.links:
        if lk.kind != "veth":
            continue
        if lk.peer_ifindex is not None:
            peer = snap.link(lk.peer_ifindex)
            out[lk.ifindex] = Peer(lk.peer_ifindex, peer.ifname if peer else None, "",
                                   tx_csum=_tx_csum(peer.ifname) if peer else None)
    if any(lk.kind == "veth" and lk.ifindex not in out for lk in snap.links):
        foreign = _foreign_peers()
    names = _nsid_names() if foreign else {}
    for ifindex, (peer_ifindex, nsid) in foreign.items():
        if ifindex in out:
            continue
        name = names.get(nsid)
        ifname, tx = (_in_namespace(name, peer_ifindex) if name else (None, None))
        out[ifindex] = Peer(peer_ifindex, ifname, name if ifname else None, nsid, tx)
    return out


def _foreign_peers() -> dict[int, tuple[int, int]]:
    from pyroute2 import IPRoute  # as introspect does: the current namespace's links

    out = {}
    with IPRoute() as ip:
        for msg in ip.get_links():
            link, nsid = msg.get_attr("IFLA_LINK"), msg.get_attr("IFLA_LINK_NETNSID")
            if link is not None and nsid is not None:
                out[msg["index"]] = (int(link), int(nsid))
    return out


def _nsid_names() -> dict[int, str]:
    """nsid (as this namespace numbers others) -> name in /run/netns."""
    try:
        proc = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True,
                              timeout=10, check=False)
        listed = json.loads(proc.stdout or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return {}
    return {e["id"]: e["name"] for e in listed if isinstance(e.get("id"), int)}


def _in_namespace(name: str, ifindex: int) -> tuple[str | None, bool | None]:
    """The name and TX checksum offload of interface ``ifindex`` in namespace ``name``."""
    try:
        with netns.entered(name):
            ifname = socket.if_indextoname(ifindex)
            return ifname, _tx_csum(ifname)
    except (netns.NetnsError, OSError):
        return None, None


def _tx_csum(ifname: str) -> bool | None:
    """``ethtool -k``: whether TX checksum offload is on (None: unknown, no ethtool)."""
    try:
        proc = subprocess.run(["ethtool", "-k", ifname], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in proc.stdout.splitlines():
        if line.startswith("tx-checksumming:"):
            return line.split(":", 1)[1].split()[0] == "on"
    return None


# ---- tna doctor: what only the running system shows ------------------------------------------

BTF = "/sys/kernel/btf/vmlinux"
NATIVE_VETH_MTU = 3498  # a veth's largest MTU for native (single-buffer) XDP on 4 KiB pages


def doctor(snap: Snapshot, plan: Plan, modes: Mapping[int, str]) -> list[Finding]:
    """Kernel features and the running programs' modes, besides the plan's findings.
    ``modes``: ifindex -> "native"/"generic" of TNA's attached programs."""
    out = []
    if not os.path.exists(BTF):
        out.append(Finding("kernel", "no_btf", f"{BTF} is missing: the conntrack kfuncs "
                           "cannot be resolved", None, "a kernel built with CONFIG_DEBUG_INFO_BTF"))
    if not os.path.ismount("/sys/fs/bpf"):
        out.append(Finding("kernel", "no_bpffs", "bpffs is not mounted: 'tna apply' mounts it",
                           "mount -t bpf bpf /sys/fs/bpf"))
    if any(lk.xdp_features is None for lk in snap.links if lk.ifname != "lo"):
        out.append(Finding("kernel", "no_xdp_features", "the kernel does not report XDP "
                           "features (netdev genetlink, Linux 6.3+): no interface can be a "
                           "redirect target", None, "a newer kernel"))
    for lk in snap.links:
        if modes.get(lk.ifindex) == "generic":
            out.append(_generic(lk))
    br_nf = snap.sysctls.bridge_nf_call_iptables or snap.sysctls.bridge_nf_call_ip6tables
    bridged = any(lk.kind == "bridge" for lk in snap.links)
    if br_nf and bridged and not any(s.reason == "br_netfilter" for s in plan_findings(plan)):
        out.append(Finding("namespace", "br_netfilter", "br_netfilter calls ip(6)tables for "
                           "bridged packets (no rule acts on them now, so bridges stay fast; "
                           "any forward-hook rule would change that)"))
    return out


def plan_findings(plan: Plan) -> list[SlowPath]:
    return [s for i in plan.interfaces for s in i.slow_path] + list(plan.slow_path)


def _generic(lk: Link) -> Finding:
    dev = shlex.quote(lk.ifname)
    if lk.kind == "veth" and lk.mtu > NATIVE_VETH_MTU:
        return Finding(lk.ifname, "generic_xdp", f"TNA runs in generic (skb) mode: MTU {lk.mtu} "
                       "is beyond native XDP's single buffer", f"ip link set dev {dev} mtu 1500",
                       "then 'tna apply' again; larger frames are then fragmented or refused")
    return Finding(lk.ifname, "generic_xdp", "TNA runs in generic (skb) mode: the driver "
                   "refused native XDP; the fast path gains little there")


def format_findings(findings: list[Finding], indent: str = "") -> list[str]:
    lines = []
    for f in findings:
        lines.append(f"{indent}{f.subject}: {f.reason}: {f.detail}")
        if f.fix:
            lines.append(f"{indent}    fix: {f.fix}")
        if f.caveat:
            lines.append(f"{indent}    note: {f.caveat}")
    return lines
