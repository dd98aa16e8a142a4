"""``tna.introspect.snapshot`` against real namespaces (needs root).

Every test builds its own namespaces with :class:`tna.testbed.Testbed`, which deletes them
even when the test fails; nothing here changes the caller's namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Iterator

import pytest

from tna import introspect, model, netlink
from tna.model import (
    AF_INET,
    AF_INET6,
    Address,
    Neighbour,
    NetfilterChain,
    Qdisc,
    Route,
    Rule,
    Snapshot,
    XdpAttachment,
    XfrmPolicy,
)
from tna.netns import entered
from tna.testbed import Testbed

pytestmark = pytest.mark.root

PREFIX = "tnaintro"


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed(prefix=PREFIX) as tb:
        yield tb
    left = [n for n in os.listdir("/run/netns") if n.startswith(f"{PREFIX}-{tb.tag}-")]
    assert left == [], f"namespaces left behind: {left}"


def snap(ns: str, our_prog_ids: frozenset[int] = frozenset()) -> Snapshot:
    with entered(ns):
        return introspect.snapshot(ns, our_prog_ids)


def ifindex(bed: Testbed, ns: str, ifname: str) -> int:
    return int(bed.run(ns, "cat", f"/sys/class/net/{ifname}/ifindex").stdout)


def mac(bed: Testbed, ns: str, ifname: str) -> str:
    return bed.run(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()


# --- a trivial BPF program, loaded and attached through BPF links with bpf(2) --------------

_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF = 321
BPF_PROG_LOAD, BPF_OBJ_GET_INFO_BY_FD, BPF_LINK_CREATE = 5, 15, 28
BPF_PROG_TYPE_SCHED_CLS, BPF_PROG_TYPE_XDP = 3, 6
BPF_XDP, BPF_TCX_INGRESS, BPF_TCX_EGRESS = 37, 46, 47
XDP_FLAGS_SKB_MODE, XDP_FLAGS_DRV_MODE = 2, 4


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    ret = int(_libc.syscall(SYS_BPF, cmd, buf, 128))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def _load(prog_type: int, ret: int) -> int:
    """Load ``r0 = ret; exit`` and return its fd."""
    insns = struct.pack("<BBhi", 0xB7, 0, 0, ret) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    ibuf, lic = ctypes.create_string_buffer(insns, len(insns)), ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("=IIQQ", prog_type, 2, ctypes.addressof(ibuf), ctypes.addressof(lic))
    return _bpf(BPF_PROG_LOAD, attr)


def _prog_id(fd: int) -> int:
    info = ctypes.create_string_buffer(8)
    _bpf(BPF_OBJ_GET_INFO_BY_FD, struct.pack("=IIQ", fd, 8, ctypes.addressof(info)))
    return int(struct.unpack_from("=II", info.raw)[1])


@contextlib.contextmanager
def bpf_link(ns: str, prog_type: int, ifidx: int, attach_type: int, flags: int = 0,
             ret: int = 0) -> Iterator[int]:
    """Attach a trivial program in ``ns`` for the duration of the block; yield its id."""
    with entered(ns):
        prog = _load(prog_type, ret)
        try:
            link = _bpf(BPF_LINK_CREATE, struct.pack("=IIII", prog, ifidx, attach_type, flags))
        finally:
            prog_id = _prog_id(prog)
            os.close(prog)
    try:
        yield prog_id
    finally:
        os.close(link)  # the link was the last reference: the program goes away


# --- links -----------------------------------------------------------------------------------


def test_fresh_namespace(bed: Testbed) -> None:
    ns = bed.ns("a")
    s = snap(ns)
    assert s.netns == ns and s.kernel == os.uname().release
    assert [(lk.ifindex, lk.ifname, lk.kind, lk.up) for lk in s.links] == [(1, "lo", "", True)]
    assert s.links[0].qdisc == Qdisc("noqueue", 0, True)
    assert all(r.is_default for r in s.rules)
    assert {(r.family, r.priority, r.table) for r in s.rules} == {
        (AF_INET, 0, 255), (AF_INET, 32766, 254), (AF_INET, 32767, 253),
        (AF_INET6, 0, 255), (AF_INET6, 32766, 254)}
    assert Address(1, AF_INET, "127.0.0.1", 8, 254) in s.addresses
    assert s.netfilter == () and s.xfrm_policies == ()


def test_links_bridge_and_veth_peers(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "x0", b, "x0", mtu=1400)
    bed.run(a, "ip", "link", "add", "br0", "type", "bridge")
    bed.run(a, "ip", "link", "add", "p0", "type", "veth", "peer", "name", "p1")
    bed.run(a, "ip", "link", "set", "p0", "master", "br0")
    bed.run(a, "ip", "link", "set", "br0", "up")
    bed.run(a, "ip", "link", "set", "p0", "up")
    s = snap(a)
    br0, p0, p1, x0 = (s.link_by_name(n) for n in ("br0", "p0", "p1", "x0"))
    assert br0 is not None and p0 is not None and p1 is not None and x0 is not None
    assert (br0.kind, p0.kind, p1.kind, x0.kind) == ("bridge", "veth", "veth", "veth")
    assert p0.master == br0.ifindex and p1.master is None and x0.master is None
    # Both ends here: each names the other.  Peer in another namespace: None.
    assert (p0.peer_ifindex, p1.peer_ifindex) == (p1.ifindex, p0.ifindex)
    assert x0.peer_ifindex is None
    assert x0.mtu == 1400 and x0.up and x0.operstate == "UP"
    assert not p1.up and p1.operstate == "DOWN"
    assert x0.address == mac(bed, a, "x0") and x0.address == x0.address.lower()
    assert x0.ifindex == ifindex(bed, a, "x0")
    assert x0.xdp is None and not x0.tc_ingress and not x0.tc_egress


def test_xdp_features_follow_peer_gro(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.gro(b, "eth0", False)

    def bits() -> int:
        link = snap(a).link_by_name("eth0")
        assert link is not None and link.xdp_features is not None
        return link.xdp_features

    base = model.XDP_ACT_BASIC | model.XDP_ACT_REDIRECT | model.XDP_ACT_RX_SG
    xmit = model.XDP_ACT_NDO_XMIT | model.XDP_ACT_NDO_XMIT_SG
    # veth_set_xdp_features(): frames may be redirected into a veth only when its peer
    # can take them, i.e. has an XDP program or GRO.
    assert bits() == base
    bed.gro(b, "eth0", True)
    assert bits() == base | xmit
    bed.gro(b, "eth0", False)
    assert bits() & model.XDP_ACT_NDO_XMIT == 0
    with entered(a):
        assert introspect.xdp_features()[ifindex(bed, a, "eth0")] == base


def test_xdp_attachments(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.veth(a, "eth1", b, "eth1")
    i0, i1 = ifindex(bed, a, "eth0"), ifindex(bed, a, "eth1")
    with bpf_link(a, BPF_PROG_TYPE_XDP, i0, BPF_XDP, XDP_FLAGS_DRV_MODE, ret=2) as native, \
         bpf_link(a, BPF_PROG_TYPE_XDP, i1, BPF_XDP, XDP_FLAGS_SKB_MODE, ret=2) as generic:
        s = snap(a, frozenset({native}))
        assert s.link(i0).xdp == XdpAttachment(native, "native", True)  # type: ignore[union-attr]
        assert s.link(i1).xdp == XdpAttachment(generic, "generic", False)  # type: ignore[union-attr]
    assert snap(a).link(i0).xdp is None  # type: ignore[union-attr]


# --- tc --------------------------------------------------------------------------------------


def test_qdiscs_and_clsact(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.veth(a, "eth1", b, "eth1")
    s = snap(a)
    # A qdisc the kernel attached itself has handle 0:.
    assert s.link_by_name("eth0").qdisc == Qdisc("noqueue", 0, True)  # type: ignore[union-attr]

    # fq_codel is the usual choice; some kernels are built without it.
    root = "fq_codel"
    if bed.run(a, "tc", "qdisc", "add", "dev", "eth1", "root", root, check=False).returncode:
        root = "pfifo"
        bed.run(a, "tc", "qdisc", "add", "dev", "eth1", "root", root)
    bed.run(a, "tc", "qdisc", "add", "dev", "eth0", "clsact")
    s = snap(a)
    eth0, eth1 = s.link_by_name("eth0"), s.link_by_name("eth1")
    assert eth0 is not None and eth1 is not None
    assert eth0.qdisc == Qdisc("noqueue", 0, True)
    assert eth0.tc_ingress and not eth0.tc_egress  # clsact without egress filters
    assert eth1.qdisc is not None and eth1.qdisc.kind == root and not eth1.qdisc.default
    assert eth1.qdisc.handle >> 16 >= 0x8001  # autohandle, never major 0
    assert not eth1.tc_ingress and not eth1.tc_egress

    bed.run(a, "tc", "filter", "add", "dev", "eth0", "egress", "protocol", "ip", "prio", "1",
            "u32", "match", "ip", "dst", "192.0.2.1/32", "flowid", "1:1")
    bed.run(a, "tc", "qdisc", "replace", "dev", "eth1", "root", "handle", "1:", "htb")
    bed.run(a, "tc", "filter", "add", "dev", "eth1", "parent", "1:", "protocol", "ip", "prio",
            "1", "u32", "match", "ip", "dst", "192.0.2.1/32", "flowid", "1:1")
    s = snap(a)
    eth0, eth1 = s.link_by_name("eth0"), s.link_by_name("eth1")
    assert eth0 is not None and eth1 is not None
    assert eth0.tc_egress
    assert eth1.qdisc == Qdisc("htb", 0x10000, False) and eth1.tc_egress

    bed.run(a, "tc", "qdisc", "del", "dev", "eth1", "root")
    bed.run(a, "tc", "qdisc", "add", "dev", "eth1", "ingress")
    eth1 = snap(a).link_by_name("eth1")
    assert eth1 is not None
    assert eth1.qdisc == Qdisc("noqueue", 0, True)  # the kernel's default is back
    assert eth1.tc_ingress and not eth1.tc_egress


def test_tcx_programs(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    i0 = ifindex(bed, a, "eth0")
    try:
        with bpf_link(a, BPF_PROG_TYPE_SCHED_CLS, i0, BPF_TCX_INGRESS):
            eth0 = snap(a).link(i0)
            assert eth0 is not None and eth0.tc_ingress and not eth0.tc_egress
            with entered(a):
                assert introspect.tcx_count(i0, introspect.BPF_TCX_INGRESS) == 1
            with bpf_link(a, BPF_PROG_TYPE_SCHED_CLS, i0, BPF_TCX_EGRESS):
                eth0 = snap(a).link(i0)
                assert eth0 is not None and eth0.tc_ingress and eth0.tc_egress
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            pytest.skip("kernel without tcx")
        raise
    eth0 = snap(a).link(i0)
    assert eth0 is not None and not eth0.tc_ingress and not eth0.tc_egress
    assert eth0.qdisc == Qdisc("noqueue", 0, True)  # tcx needs no qdisc


# --- routes, rules, neighbours, addresses ---------------------------------------------------


def test_routes_all_tables_and_types(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    i0 = ifindex(bed, a, "eth0")
    for argv in (["ip", "addr", "add", "10.9.0.1/24", "dev", "eth0"],
                 ["ip", "addr", "add", "fd00:9::1/64", "dev", "eth0"],
                 ["ip", "route", "add", "10.50.0.0/16", "via", "10.9.0.2", "table", "100"],
                 ["ip", "route", "add", "blackhole", "10.60.0.0/16"],
                 ["ip", "route", "add", "unreachable", "10.61.0.0/16", "table", "100"],
                 ["ip", "route", "add", "prohibit", "10.62.0.0/16"],
                 ["ip", "route", "add", "throw", "10.63.0.0/16", "table", "100"],
                 ["ip", "-6", "route", "add", "prohibit", "fd00:99::/64", "table", "200"],
                 ["ip", "route", "add", "10.70.0.0/16", "via", "10.9.0.2", "mtu", "1400",
                  "metric", "50"],
                 ["ip", "route", "add", "10.80.0.0/16", "nexthop", "via", "10.9.0.2",
                  "nexthop", "via", "10.9.0.3"],
                 ["ip", "nexthop", "add", "id", "10", "via", "10.9.0.2", "dev", "eth0"],
                 ["ip", "route", "add", "10.90.0.0/16", "nhid", "10"],
                 ["ip", "route", "add", "default", "via", "10.9.0.2"]):
        bed.run(a, *argv)
    routes = snap(a).routes

    def find(family: int, table: int, dst: str, dst_len: int) -> Route:
        found = [r for r in routes if (r.family, r.table, r.dst, r.dst_len)
                 == (family, table, dst, dst_len)]
        assert len(found) == 1, (family, table, dst, dst_len, routes)
        return found[0]

    boot, static = 3, 4  # RTPROT_BOOT (ip route add), RTPROT_STATIC
    assert find(AF_INET, 100, "10.50.0.0", 16) == Route(
        AF_INET, 100, "10.50.0.0", 16, "unicast", oif=i0, gateway="10.9.0.2", protocol=boot)
    assert find(AF_INET, 254, "10.60.0.0", 16).rtm_type == "blackhole"
    assert find(AF_INET, 100, "10.61.0.0", 16).rtm_type == "unreachable"
    assert find(AF_INET, 254, "10.62.0.0", 16).rtm_type == "prohibit"
    assert find(AF_INET, 100, "10.63.0.0", 16).rtm_type == "throw"
    assert find(AF_INET6, 200, "fd00:99::", 64).rtm_type == "prohibit"
    mtu = find(AF_INET, 254, "10.70.0.0", 16)
    assert (mtu.mtu, mtu.priority, mtu.gateway) == (1400, 50, "10.9.0.2")
    ecmp = find(AF_INET, 254, "10.80.0.0", 16)
    assert ecmp.multipath and ecmp.gateway is None and ecmp.nhid is None
    assert find(AF_INET, 254, "10.90.0.0", 16).nhid == 10
    assert find(AF_INET, 254, "", 0).gateway == "10.9.0.2"
    connected = find(AF_INET, 254, "10.9.0.0", 24)
    assert (connected.rtm_type, connected.protocol, connected.scope) == ("unicast", 2, 253)
    local = find(AF_INET, 255, "10.9.0.1", 32)
    assert (local.rtm_type, local.oif, local.scope) == ("local", i0, 254)
    assert find(AF_INET, 255, "10.9.0.255", 32).rtm_type == "broadcast"
    assert find(AF_INET6, 255, "fd00:9::1", 128).rtm_type == "local"
    assert find(AF_INET6, 255, "ff00::", 8).rtm_type == "multicast"
    assert static not in {r.protocol for r in routes}


def test_rules_with_selectors(bed: Testbed) -> None:
    a = bed.ns("a")
    bed.run(a, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    bed.run(a, "ip", "rule", "add", "from", "10.0.0.0/8", "fwmark", "0x1/0xff", "iif", "eth0",
            "lookup", "100", "pref", "100")
    bed.run(a, "ip", "rule", "add", "not", "to", "10.1.0.0/16", "tos", "0x10", "ipproto", "tcp",
            "sport", "1000", "dport", "80-90", "uidrange", "100-200", "oif", "eth1",
            "lookup", "100", "suppress_prefixlength", "0", "pref", "200")
    bed.run(a, "ip", "rule", "add", "pref", "300", "blackhole")
    bed.run(a, "ip", "-6", "rule", "add", "from", "fd00::/8", "goto", "500", "pref", "400")
    bed.run(a, "ip", "-6", "rule", "add", "l3mdev", "pref", "500")
    rules = snap(a).rules
    assert [r for r in rules if not r.is_default] == [
        Rule(AF_INET, 100, 100, "to_tbl", ("from 10.0.0.0/8", "fwmark 0x1/0xff", "iif eth0")),
        Rule(AF_INET, 200, 100, "to_tbl", (
            "not", "to 10.1.0.0/16", "tos 0x10", "oif eth1", "uidrange 100-200",
            "ipproto tcp", "sport 1000", "dport 80-90", "suppress_prefixlength 0")),
        Rule(AF_INET, 300, 0, "blackhole", ()),
        Rule(AF_INET6, 400, 0, "goto", ("from fd00::/8",)),
        Rule(AF_INET6, 500, 0, "to_tbl", ("l3mdev",)),
    ]
    assert sum(r.is_default for r in rules) == 5


def test_rule_selectors_iproute2_cannot_add(bed: Testbed) -> None:
    """FRA_DSCP (Linux 6.15+) sent by hand: the rule must not pass for a default one."""
    a = bed.ns("a")
    hdr = struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, 254, 0, 0, 1, 0)
    attrs = (netlink.attr(introspect.FRA_PRIORITY, struct.pack("=I", 32766))
             + netlink.attr(introspect.FRA_TABLE, struct.pack("=I", 254))
             + netlink.attr(introspect.FRA_DSCP, bytes([10])))
    with entered(a):
        try:
            list(netlink.dump(netlink.NETLINK_ROUTE, 32, hdr + attrs,  # RTM_NEWRULE
                                  flags=netlink.NLM_F_ACK | 0x400))  # NLM_F_CREATE
        except OSError as exc:
            pytest.skip(f"kernel refuses FRA_DSCP: {exc}")
    dscp = [r for r in snap(a).rules if r.priority == 32766 and r.family == AF_INET]
    assert Rule(AF_INET, 32766, 254, "to_tbl", ("dscp 10",)) in dscp
    assert not all(r.is_default for r in dscp)


def test_neighbours_and_addresses(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    i0 = ifindex(bed, a, "eth0")
    bed.run(a, "ip", "addr", "add", "10.9.0.1/24", "dev", "eth0")
    bed.run(a, "ip", "addr", "add", "fd00:9::1/64", "dev", "eth0")
    bed.run(a, "ip", "neigh", "add", "10.9.0.7", "lladdr", "02:00:00:00:00:07", "dev", "eth0",
            "nud", "permanent")
    bed.run(a, "ip", "neigh", "add", "fd00:9::7", "lladdr", "02:00:00:00:00:77", "dev", "eth0",
            "nud", "stale")
    bed.run(a, "ip", "neigh", "add", "10.9.0.8", "dev", "eth0", "nud", "failed")
    s = snap(a)
    assert Neighbour(i0, AF_INET, "10.9.0.7", "02:00:00:00:00:07", "permanent") in s.neighbours
    assert Neighbour(i0, AF_INET6, "fd00:9::7", "02:00:00:00:00:77", "stale") in s.neighbours
    assert Neighbour(i0, AF_INET, "10.9.0.8", None, "failed") in s.neighbours
    assert {n.family for n in s.neighbours} <= {AF_INET, AF_INET6}
    assert Address(i0, AF_INET, "10.9.0.1", 24, 0) in s.addresses
    assert Address(i0, AF_INET6, "fd00:9::1", 64, 0) in s.addresses
    assert any(x.ifindex == i0 and x.address.startswith("fe80::") and x.scope == 253
               for x in s.addresses)


# --- sysctls ---------------------------------------------------------------------------------


def test_sysctls(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.veth(a, "eth1", b, "eth1")
    before = snap(a).sysctls
    assert not before.ipv4_forwarding and not before.ipv6_forwarding
    assert before.interfaces["eth0"].send_redirects and before.interfaces["eth0"].rp_filter == 0

    for key, value in (("net.ipv4.ip_forward", "1"),  # also sets every conf/*/forwarding
                       ("net.ipv6.conf.all.forwarding", "1"),
                       ("net.ipv6.conf.all.proxy_ndp", "1"),
                       ("net.ipv4.fib_multipath_hash_policy", "1"),
                       ("net.ipv6.fib_multipath_hash_policy", "2"),
                       ("net.ipv4.conf.all.rp_filter", "1"),
                       ("net.ipv4.conf.eth0.rp_filter", "2"),
                       ("net.ipv4.conf.eth1.rp_filter", "0"),
                       ("net.ipv4.conf.eth1.forwarding", "0"),
                       ("net.ipv4.conf.all.send_redirects", "0"),
                       ("net.ipv4.conf.eth0.send_redirects", "0"),
                       ("net.ipv4.conf.eth1.accept_local", "1"),
                       ("net.ipv4.conf.all.src_valid_mark", "1"),
                       ("net.ipv4.conf.eth0.proxy_arp", "1")):
        bed.sysctl(a, key, value)
    s = snap(a).sysctls
    assert (s.ipv4_forwarding, s.ipv6_forwarding, s.ipv6_proxy_ndp) == (True, True, True)
    assert (s.fib_multipath_hash_policy, s.fib6_multipath_hash_policy) == (1, 2)
    eth0, eth1 = s.interfaces["eth0"], s.interfaces["eth1"]
    assert (eth0.rp_filter, eth1.rp_filter) == (2, 1)  # max(all, interface)
    assert (eth0.ipv4_forwarding, eth1.ipv4_forwarding) == (True, False)
    assert eth0.ipv6_forwarding and eth1.ipv6_forwarding
    assert (eth0.send_redirects, eth1.send_redirects) == (False, True)  # all OR interface
    assert (eth0.accept_local, eth1.accept_local) == (False, True)
    assert eth0.src_valid_mark and eth1.src_valid_mark
    assert (eth0.proxy_arp, eth1.proxy_arp) == (True, False)
    assert not eth0.ipv6_force_forwarding
    assert set(s.interfaces) == {"lo", "eth0", "eth1"}

    if os.path.exists("/proc/sys/net/ipv6/conf/all/force_forwarding"):
        bed.sysctl(a, "net.ipv6.conf.eth1.force_forwarding", "1")
        assert snap(a).sysctls.interfaces["eth1"].ipv6_force_forwarding


def test_sysctls_missing_files(bed: Testbed) -> None:
    a = bed.ns("a")
    bed.sysctl(a, "net.ipv4.ip_forward", "1")
    with entered(a):
        # No such interface: its files are missing, which reads as 0, never as an error.
        gone = introspect.sysctls(["nosuchdev0"]).interfaces["nosuchdev0"]
    assert gone.ipv4_forwarding is False and gone.ipv6_forwarding is False
    assert gone.rp_filter == 0 and not gone.ipv6_force_forwarding
    assert gone.send_redirects  # conf/all/send_redirects is 1, and the kernel ORs it in


# --- netfilter and xfrm ----------------------------------------------------------------------


def test_netfilter_chains(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.run(a, "nft", "-f", "-", input="""
table inet tna_test {
  chain forward {
    type filter hook forward priority 0; policy accept;
    ip daddr 10.2.0.0/16 drop
  }
  chain inbound {
    type filter hook input priority 10; policy accept;
  }
}
table netdev tna_edge {
  chain ing {
    type filter hook ingress device "eth0" priority -500; policy accept;
  }
}
""")
    bed.run(a, "iptables", "-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "DROP")
    chains = {(c.family, c.table, c.name): c for c in snap(a).netfilter}
    assert set(chains) == {("inet", "tna_test", "forward"), ("inet", "tna_test", "inbound"),
                           ("netdev", "tna_edge", "ing"), ("ip", "filter", "FORWARD")}
    fwd = chains[("inet", "tna_test", "forward")]
    assert (fwd.source, fwd.hook, fwd.priority, fwd.policy) == ("nftables", "forward", 0,
                                                                "accept")
    assert len(fwd.rules) == 1 and '"drop"' in fwd.rules[0] and "10.2.0.0" in fwd.rules[0]
    assert fwd.has_effect
    idle = chains[("inet", "tna_test", "inbound")]
    assert (idle.hook, idle.priority, idle.rules, idle.has_effect) == ("input", 10, (), False)
    assert chains[("netdev", "tna_edge", "ing")] == NetfilterChain(
        "nftables", "netdev", "tna_edge", "ing", "ingress", -500, "accept", ("eth0",), (),
        type="filter")
    ipt = chains[("ip", "filter", "FORWARD")]
    assert (ipt.source, ipt.hook, ipt.policy, len(ipt.rules)) == ("nftables", "forward",
                                                                   "accept", 1)
    assert "192.0.2.0" in ipt.rules[0] and '"drop"' in ipt.rules[0]


def test_xfrm_policy(bed: Testbed) -> None:
    a = bed.ns("a")
    bed.run(a, "ip", "xfrm", "policy", "add", "src", "10.0.0.0/24", "dst", "10.1.0.0/24",
            "dir", "fwd")
    assert snap(a).xfrm_policies == (
        XfrmPolicy(AF_INET, "fwd", "src 10.0.0.0/24 dst 10.1.0.0/24"),)
    bed.run(a, "ip", "xfrm", "policy", "add", "src", "fd00::/64", "dst", "fd01::/64", "proto",
            "tcp", "dport", "80", "dir", "out", "tmpl", "src", "fd00::1", "dst", "fd01::1",
            "proto", "esp", "mode", "tunnel")
    assert set(snap(a).xfrm_policies) == {
        XfrmPolicy(AF_INET, "fwd", "src 10.0.0.0/24 dst 10.1.0.0/24"),
        XfrmPolicy(AF_INET6, "out", "src fd00::/64 dst fd01::/64 proto tcp dport 80"),
    }


def test_snapshot_round_trips_through_json(bed: Testbed) -> None:
    a, b = bed.ns("a"), bed.ns("b")
    bed.veth(a, "eth0", b, "eth0")
    bed.run(a, "tc", "qdisc", "add", "dev", "eth0", "clsact")
    bed.run(a, "ip", "xfrm", "policy", "add", "src", "10.0.0.0/24", "dst", "10.1.0.0/24",
            "dir", "in")
    s = snap(a)
    assert Snapshot.from_dict(s.to_dict()) == s
    assert s == snap(a)  # nothing in it changes by itself between two reads


def test_peer_moves_namespace(bed: Testbed) -> None:
    """IFLA_LINK still names the peer after it moves away; only the netnsid tells."""
    a, b = bed.ns("a"), bed.ns("b")
    bed.run(a, "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
    assert snap(a).link_by_name("v0").peer_ifindex is not None  # type: ignore[union-attr]
    bed.run(a, "ip", "link", "set", "v1", "netns", b)
    assert snap(a).link_by_name("v0").peer_ifindex is None  # type: ignore[union-attr]


def test_foreign_peer_with_a_local_ifindex(bed: Testbed) -> None:
    """The peer's ifindex belongs to the other namespace, even when it exists here too."""
    a, b = bed.ns("a"), bed.ns("b")
    bed.run(a, "ip", "link", "add", "w0", "type", "veth", "peer", "name", "w1", "netns", b)
    local, foreign = ifindex(bed, a, "w0"), ifindex(bed, b, "w1")
    assert local == foreign  # both namespaces number from 2 after lo
    w0 = snap(a).link(local)
    assert w0 is not None and w0.ifname == "w0" and w0.peer_ifindex is None


def test_iptables_legacy_tables(bed: Testbed) -> None:
    a = bed.ns("a")
    if bed.run(a, "iptables-legacy", "-A", "FORWARD", "-s", "198.51.100.0/24", "-j", "DROP",
               check=False).returncode:
        pytest.skip("no iptables-legacy")
    bed.run(a, "ip6tables-legacy", "-P", "FORWARD", "DROP")
    legacy = [c for c in snap(a).netfilter if c.source == "iptables-legacy"]
    assert legacy == [
        NetfilterChain("iptables-legacy", "ip", "filter", "INPUT", "input", 0, "accept",
                       type="filter"),
        NetfilterChain("iptables-legacy", "ip", "filter", "FORWARD", "forward", 0, "accept",
                       rules=("-A FORWARD -s 198.51.100.0/24 -j DROP",), type="filter",
                       handles=(1,)),
        NetfilterChain("iptables-legacy", "ip", "filter", "OUTPUT", "output", 0, "accept",
                       type="filter"),
        NetfilterChain("iptables-legacy", "ip6", "filter", "INPUT", "input", 0, "accept",
                       type="filter"),
        NetfilterChain("iptables-legacy", "ip6", "filter", "FORWARD", "forward", 0, "drop",
                       type="filter"),
        NetfilterChain("iptables-legacy", "ip6", "filter", "OUTPUT", "output", 0, "accept",
                       type="filter"),
    ]
