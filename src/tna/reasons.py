"""What each counter code means to an operator, and which setting would change it.

Role in the flow: ``tna stats --describe``, the JSON legend, the Prometheus help and ``tna top``
explain counters with this table.  The codes themselves are declared once, in
``bpf/include/tna_abi.h`` (read by :mod:`tna.abi`); this module only adds prose, keyed by the
code's name, and ``tests/unit/test_reasons.py`` fails unless every code of the header has
exactly one entry here (and nothing else has one).
"""

from __future__ import annotations

from dataclasses import dataclass

# What happened to the frame: the fast path did the work, dropped it, or handed it to Linux.
FAST, DROP, PUNT = "fast_path", "drop", "punt"


@dataclass(frozen=True)
class Reason:
    kind: str  # FAST, DROP or PUNT
    description: str  # one line, for a person
    setting: str | None = None  # what would change it, where something does

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "description": self.description, "setting": self.setting}


_NEEDS_PLAN = "see 'tna plan' for why this interface or family is left to Linux"

REASONS: dict[str, Reason] = {
    "forwarded": Reason(FAST, "routed by the fast path (counted on the ingress interface)"),
    "transmitted": Reason(FAST, "sent out by the fast path (counted on the egress interface)"),
    "bridged": Reason(FAST, "switched by the fast path between ports of a bridge (ingress)"),
    "fw_dropped": Reason(DROP, "dropped by a forward-hook firewall rule or policy, as Linux "
                         "would", "the netfilter forward chain (nft list ruleset)"),
    "not_ip": Reason(PUNT, "not IPv4/IPv6 (ARP, LLDP, VLAN-tagged ...): always Linux's"),
    "l2_multicast": Reason(PUNT, "broadcast or multicast destination MAC"),
    "not_for_us": Reason(PUNT, "destination MAC is not the interface's (promiscuous or "
                         "misdirected frame)"),
    "malformed": Reason(PUNT, "truncated header or wrong IP version: Linux drops or counts it"),
    "bad_csum": Reason(PUNT, "IPv4 header checksum does not verify: Linux drops it"),
    "bad_length": Reason(PUNT, "IP length fields disagree with the frame: Linux drops it"),
    "ip_options": Reason(PUNT, "IPv4 header with options: Linux processes them"),
    "fragment": Reason(PUNT, "IPv4 fragment: Linux forwards (or reassembles) fragments"),
    "ttl": Reason(PUNT, "TTL / hop limit would expire: Linux sends ICMP time exceeded"),
    "ipv6_ext": Reason(PUNT, "IPv6 extension header (hop-by-hop, routing, fragment ...)"),
    "link_local": Reason(PUNT, "link-local source or destination: never forwarded"),
    "martian": Reason(PUNT, "address Linux never forwards (loopback, multicast, own or "
                      "broadcast source ...)"),
    "family_off": Reason(PUNT, "the plan leaves this address family on this interface to "
                         "Linux", _NEEDS_PLAN),
    "not_forwarded": Reason(PUNT, "for this host, broadcast, or no route: Linux delivers or "
                            "answers", "the routing table (ip route get ADDRESS)"),
    "fwd_disabled": Reason(PUNT, "forwarding disabled on the ingress interface",
                           "net.ipv4.conf.IFACE.forwarding / net.ipv6.conf.IFACE.forwarding"),
    "no_neigh": Reason(PUNT, "next hop not resolved yet: Linux resolves it (ARP/ND) and "
                       "queues", "transient; a permanent neighbour entry avoids it"),
    "frag_needed": Reason(PUNT, "larger than the egress or route MTU: Linux fragments or "
                          "sends packet-too-big", "MTU of the egress interface or route"),
    "blackhole": Reason(PUNT, "blackhole route: Linux discards it", "the blackhole route"),
    "unreachable": Reason(PUNT, "unreachable route: Linux answers ICMP unreachable",
                          "the unreachable route"),
    "prohibit": Reason(PUNT, "prohibit route: Linux answers ICMP prohibited",
                       "the prohibit route"),
    "fib_other": Reason(PUNT, "route the fast path does not handle (lightweight tunnel, "
                        "error)", "the route's encapsulation"),
    "same_iface": Reason(PUNT, "leaves where it came in: Linux may send an ICMP redirect"),
    "egress": Reason(PUNT, "the egress interface takes no fast-path frames (qdisc, tc or "
                     "netfilter egress, down, peer without XDP/GRO)",
                     "'tna doctor' prints the command that fixes it (a veth peer: ethtool -K "
                     "PEER gro on, run where the peer lives)"),
    "rp_filter": Reason(PUNT, "reverse-path check not proven to pass: Linux validates the "
                        "source", "net.ipv4.conf.IFACE.rp_filter"),
    "no_port": Reason(PUNT, "ingress interface without a TNA entry (being reconfigured)",
                      "transient; 'tna apply' or 'tna run' writes it"),
    "l4_csum": Reason(PUNT, "veth ingress: TCP/UDP checksum not proven complete, or another "
                      "protocol", "the sender's TX checksum offload (ethtool -K DEV tx off)"),
    "unknown_unicast": Reason(PUNT, "bridge: destination not in the FDB: the kernel floods"),
    "broadcast": Reason(PUNT, "bridge: broadcast destination: the kernel floods"),
    "link_local_group": Reason(PUNT, "bridge: 01:80:c2:00:00:0x (STP, LACP, LLDP, 802.1X)"),
    "learn": Reason(PUNT, "bridge: source MAC new, moved or local: the kernel learns it",
                    "transient; 'bridge fdb' shows what is learnt"),
    "bridge_local": Reason(PUNT, "bridge: for the bridge's or a port's own MAC and not routed "
                           "by the fast path"),
    "port_state": Reason(PUNT, "bridge: ingress or egress port not forwarding (STP state)",
                         "STP: bridge link show"),
    "port_flags": Reason(PUNT, "bridge: port flags change the kernel's decision",
                         "bridge link set dev PORT ... (learning, flood, isolated, locked ...)"),
    "tagged": Reason(PUNT, "bridge: 802.1Q / 802.1ad tagged frame"),
    "too_big": Reason(PUNT, "bridge: frame larger than the egress port's MTU",
                      "MTU of the bridge ports"),
    "redirected": Reason(PUNT, "via a gateway whose route an ICMP redirect may change",
                         "net.ipv4.conf.IFACE.accept_redirects=0"),
    "firewall": Reason(PUNT, "a firewall rule the fast path does not model may match",
                       "the rule ('tna plan --json' lists the unsupported rules)"),
    "ct": Reason(PUNT, "conntrack: not an established, assured TCP/UDP flow (new, related, "
                 "invalid, helper ...)", "transient per flow; stateful rules in the forward "
                 "chain"),
    "ct_proto": Reason(PUNT, "conntrack: only TCP and UDP flows are fast (ICMP and others go "
                       "to Linux)", "stateful rules in the forward chain"),
    "ct_window": Reason(PUNT, "conntrack: a TCP segment that moves conntrack's tracked window "
                        "(new data, ACK, window edge)",
                        "net.netfilter.nf_conntrack_tcp_be_liberal=1, or tna run --tcp-liberal "
                        "(docs/stateful.md)"),
    "ct_setup": Reason(PUNT, "conntrack: TCP connection setup or teardown (SYN, FIN, RST, "
                       "URG, or not ESTABLISHED)"),
    "nat_related": Reason(PUNT, "NAT: an ICMP error about a NATed flow: Linux rewrites the "
                          "header it quotes"),
    "nat": Reason(PUNT, "NAT: an entry the fast path does not rewrite (IPv6, not set up yet, "
                  "no nat hooks)", "see 'tna plan'"),
    "nat_original": Reason(FAST, "NATed by the fast path from conntrack's entry, original "
                           "direction (also counted as forwarded)"),
    "nat_reply": Reason(FAST, "NATed by the fast path from conntrack's entry, reply "
                        "direction (also counted as forwarded)"),
}


def describe(name: str) -> Reason:
    """The entry for a counter name; a code without one (a newer header) still gets a line."""
    return REASONS.get(name) or Reason(PUNT, f"counter {name} (no description)")


def legend(names: list[str] | None = None) -> dict[str, dict[str, str | None]]:
    """Name -> description and setting, for ``names`` or every known code."""
    return {n: describe(n).to_dict() for n in (names if names is not None else REASONS)}
