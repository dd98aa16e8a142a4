/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ABI between TNA's BPF programs and its Python control plane: counter codes (punt reasons),
 * map value layouts and the load-time feature block.
 *
 * This file is the only definition. Python reads the enum and struct layouts back from the BTF
 * of the compiled object (tna.abi), and tests/bpf/test_abi.py fails if the two drift apart.
 * Append new codes before TNA_NR_CODES; never renumber (pinned counters outlive upgrades).
 */
#ifndef TNA_ABI_H
#define TNA_ABI_H

#include <linux/types.h>

#define TNA_MAX_IFACES 256	/* slots per namespace; slot 0 counts unknown ingress ports */
#define TNA_NR_CODES 64		/* counters per slot (raised from 32 for the bridge codes) */
#define TNA_FDB_MAX 65536	/* FDB mirror entries per namespace; more are simply not accelerated */

/* What happened to a frame. Every code but the first two is a reason for XDP_PASS. */
enum tna_code {
	TNA_FORWARDED = 0,		/* fast path forwarded it (counted on the ingress slot) */
	TNA_TRANSMITTED = 1,		/* fast path sent it out (counted on the egress slot) */
	TNA_PUNT_NOT_IP = 2,		/* ethertype is neither IPv4 nor IPv6 (ARP, VLAN, ...) */
	TNA_PUNT_L2_MULTICAST = 3,	/* broadcast or multicast destination MAC */
	TNA_PUNT_NOT_FOR_US = 4,	/* destination MAC is not the interface's */
	TNA_PUNT_MALFORMED = 5,		/* truncated header, wrong version, IHL < 5 */
	TNA_PUNT_BAD_CSUM = 6,		/* IPv4 header checksum does not verify */
	TNA_PUNT_BAD_LENGTH = 7,	/* IP length fields disagree with the frame */
	TNA_PUNT_IP_OPTIONS = 8,	/* IPv4 options present */
	TNA_PUNT_FRAGMENT = 9,		/* IPv4 fragment (MF or offset set) */
	TNA_PUNT_TTL = 10,		/* TTL / hop limit <= 1: Linux sends time exceeded */
	TNA_PUNT_IPV6_EXT = 11,		/* IPv6 extension header follows the fixed header */
	TNA_PUNT_LINK_LOCAL = 12,	/* link-local source or destination */
	TNA_PUNT_MARTIAN = 13,		/* address Linux never forwards (loopback, multicast, ...) */
	TNA_PUNT_FAMILY_OFF = 14,	/* this interface's plan leaves the family to Linux */
	TNA_PUNT_NOT_FORWARDED = 15,	/* FIB: no route, local, broadcast: not forwarded */
	TNA_PUNT_FWD_DISABLED = 16,	/* FIB: forwarding disabled on the ingress interface */
	TNA_PUNT_NO_NEIGH = 17,		/* FIB: next hop has no valid neighbour entry yet */
	TNA_PUNT_FRAG_NEEDED = 18,	/* FIB: larger than the egress MTU */
	TNA_PUNT_BLACKHOLE = 19,	/* FIB: blackhole route */
	TNA_PUNT_UNREACHABLE = 20,	/* FIB: unreachable route */
	TNA_PUNT_PROHIBIT = 21,		/* FIB: prohibit route */
	TNA_PUNT_FIB_OTHER = 22,	/* FIB: lightweight tunnel, error or unknown result */
	TNA_PUNT_SAME_IFACE = 23,	/* egress == ingress: Linux may send an ICMP redirect */
	TNA_PUNT_EGRESS = 24,		/* egress interface not eligible for XDP redirect */
	TNA_PUNT_RP_FILTER = 25,	/* reverse-path check not proven to pass */
	TNA_PUNT_NO_PORT = 26,		/* ingress interface has no TNA configuration */
	TNA_PUNT_L4_CSUM = 27,		/* veth ingress: L4 checksum not proven complete */
	TNA_BRIDGED = 28,		/* fast path bridged it (counted on the ingress slot) */
	TNA_PUNT_UNKNOWN_UNICAST = 29,	/* bridge: destination not in the FDB: the kernel floods */
	TNA_PUNT_BROADCAST = 30,	/* bridge: broadcast destination: the kernel floods */
	TNA_PUNT_LINK_LOCAL_GROUP = 31,	/* bridge: 01:80:c2:00:00:0x (STP, LACP, 802.1X, LLDP) */
	TNA_PUNT_LEARN = 32,		/* bridge: source MAC unknown, moved or local: the kernel learns */
	TNA_PUNT_BRIDGE_LOCAL = 33,	/* bridge: for the bridge's or a port's own MAC, not routed here */
	TNA_PUNT_PORT_STATE = 34,	/* bridge: ingress or egress port not forwarding (STP) or unknown */
	TNA_PUNT_PORT_FLAGS = 35,	/* bridge: port flags change the kernel's decision */
	TNA_PUNT_TAGGED = 36,		/* bridge: 802.1Q / 802.1ad tagged frame */
	TNA_PUNT_TOO_BIG = 37,		/* bridge: frame larger than the egress port's MTU */
	TNA_PUNT_REDIRECTED = 38,	/* via a gateway whose route an ICMP redirect may change */
	TNA_FW_DROPPED = 39,		/* firewall: a forward-hook rule (or policy) dropped it */
	TNA_PUNT_FIREWALL = 40,		/* firewall: a rule the fast path does not model may match */
	TNA_PUNT_CT = 41,		/* conntrack: not an established, assured flow it may refresh */
	TNA_PUNT_CT_PROTO = 42,		/* conntrack: only TCP and UDP flows are fast (ICMP, others) */
	TNA_PUNT_CT_WINDOW = 43,	/* conntrack: a TCP segment the kernel's window tracking must see */
	TNA_PUNT_CT_SETUP = 44,		/* conntrack: TCP not established, or SYN/FIN/RST/URG or no ACK */
	TNA_PUNT_NAT_RELATED = 45,	/* NAT: an ICMP error (related: Linux rewrites what it quotes) */
	TNA_PUNT_NAT = 46,		/* NAT: an entry the fast path does not rewrite (hooks off, set-up pending, unroutable target) */
	TNA_NAT_ORIGINAL = 47,		/* fast path NATed it, original direction (ingress slot) */
	TNA_NAT_REPLY = 48,		/* fast path NATed it, reply direction (ingress slot) */
	TNA_NR_CODES_USED = 49,
};

/* One row of the tna_stats per-CPU array: index = slot * TNA_NR_CODES + code. */
struct tna_counter {
	__u64 packets;
	__u64 bytes;
};

/* tna_ifaces: ifindex -> what the data path needs to know about an interface. */
struct tna_iface {
	__u8 mac[6];		/* the interface's own MAC */
	__u16 flags;		/* TNA_IF_* */
	__u32 slot;		/* row block in tna_stats */
};

#define TNA_IF_EGRESS (1U << 0)	/* frames may be redirected out of this interface */

/* tna_fdb key: one bridge's forwarding database entry, as the kernel keys it (MAC, VLAN). */
struct tna_fdb_key {
	__u32 bridge;		/* ifindex of the bridge */
	__u16 vlan;		/* 802.1Q VID; 0 on bridges without VLAN filtering */
	__u8 mac[6];
};

/* tna_fdb value: where the kernel's FDB says the address is. */
struct tna_fdb_entry {
	__u32 port;		/* ifindex of the port behind which the address is (or the bridge's) */
	__u16 flags;		/* TNA_FDB_* */
	__u16 seen_jiffies;	/* fast path only: the low 16 bits of jiffies when it last wrote
				 * seen_ns (userspace writes 0) */
	__u64 seen_ns;		/* written by the fast path (coarse ktime): last frame forwarded from
				 * this source (at most TNA_SEEN_EVERY_JIFFIES old, 0.4 s at HZ 250),
				 * or with TNA_FDB_MOVED when the source was seen on another port */
};

#define TNA_FDB_LOCAL (1U << 0)	/* "permanent": frames to it go up to the bridge device */
#define TNA_FDB_STATIC (1U << 1)	/* not aged by the kernel (static, local, extern_learn) */
#define TNA_FDB_STICKY (1U << 2)	/* never roams to another port */
#define TNA_FDB_MOVED (1U << 3)	/* fast path saw the source on another port: treated as absent
				 * until the kernel's entry is read again */

/* tna_brports: ifindex of a bridge port -> its bridge and what the fast path may do with it. */
struct tna_brport {
	__u32 bridge;		/* ifindex of the bridge */
	__u16 flags;		/* TNA_BRPORT_* */
	__u16 pad;
};

#define TNA_BRPORT_FORWARDING (1U << 0)	/* STP state forwarding */
#define TNA_BRPORT_PUNT (1U << 1)	/* port or bridge flags change the kernel's decision */
/*
 * Ingress restrictions, written before a program swap so that traffic which must go back to
 * Linux does so at once, not when the slower program replacement is done.
 */
#define TNA_IF_NO_IPV4 (1U << 1)
#define TNA_IF_NO_IPV6 (1U << 2)
#define TNA_IF_NO_BRIDGE_IPV4 (1U << 4)	/* the same for bridged (switched) IPv4 */
#define TNA_IF_NO_BRIDGE_IPV6 (1U << 5)
/*
 * A bridge device: never a redirect target itself (it has no ndo_xdp_xmit); a frame routed
 * into it leaves through the port its FDB names. With TNA_IF_EGRESS, routing into it is allowed.
 */
#define TNA_IF_BRIDGE (1U << 3)
/*
 * Egress accepts ICMP redirects (IN_DEV_RX_REDIRECTS): the kernel may keep a next-hop exception
 * that bpf_fib_lookup() does not see. Gateway routes out of it stay fast only while no redirect
 * is pending (tna_redirects) and only if TNA sees every redirect that arrives (no UNWATCHED).
 */
#define TNA_IF_ACCEPT_REDIRECTS (1U << 6)
#define TNA_IF_REDIRECTS_UNWATCHED (1U << 7)
/*
 * The device's MTU can never be below TNA_MTU_FLOOR (its IFLA_MIN_MTU, a driver constant, is at
 * least that; ETH_MIN_MTU for veth and most NICs): a frame of at most TNA_MTU_FLOOR bytes fits
 * whatever its MTU is (dev->mtu + hard_header_len >= TNA_MTU_FLOOR), so the fast path need not
 * ask bpf_check_mtu() for it.
 */
#define TNA_IF_MTU_FLOOR (1U << 8)
#define TNA_MTU_FLOOR 68

/*
 * tna_config (one entry): namespace-wide settings. A route's MTU metric is honoured by
 * ip_forward() but not by bpf_fib_lookup() unless locked, so frames longer than the smallest
 * route MTU of their family go to Linux.
 */
struct tna_config {
	__u32 route_mtu_v4;	/* 0: no IPv4 route has an MTU metric */
	__u32 route_mtu_v6;
	__u32 fw_gen;		/* firewall tables in use: generation 0 or 1 (see tna_fw_table) */
	__u32 pad;
};

/* Load-time features of one program; lives in .rodata so the verifier prunes what is off. */
struct tna_features {
	__u8 ipv4_router;
	__u8 ipv6_router;
	__u8 ipv4_rp_filter;	/* 0 off, 1 strict, 2 loose: as net.ipv4.conf.*.rp_filter */
	__u8 verify_l4_csum;	/* ingress may carry offloaded (partial) checksums: veth */
	__u8 bridge_port;	/* a bridge port: frames take the bridge's path (tna_fdb) */
	__u8 bridge_ipv4;	/* bridged IPv4: 0 left to Linux, 1 bridged, 2 bridged after the
				 * header checks br_netfilter makes (bridge-nf-call-iptables) */
	__u8 bridge_ipv6;	/* the same for IPv6 (bridge-nf-call-ip6tables) */
	__u8 bridge_egress;	/* the FIB may name a bridge: resolve its port through tna_fdb */
	__u8 firewall_ipv4;	/* routed IPv4 passes the forward-hook classifier (tna_fw_*) */
	__u8 firewall_ipv6;
	__u8 fib_direct_v4;	/* BPF_FIB_LOOKUP_DIRECT (main table, no rules) while the kernel's
				 * fib_has_custom_rules is false (lib/local.h) */
	__u8 fib_direct_v6;	/* the same for IPv6, local destinations by tna_local_v6 */
	__u8 ct_tcp_liberal;	/* opt-in (tna run --tcp-liberal): an established TCP connection
				 * the fast path would carry but for conntrack's window tracking is
				 * named in tna_liberal_req, for the daemon to make liberal */
	__u8 ct_liberal_fast;	/* a daemon follows (tna run): segments of a liberal TCP side
				 * (nf_conntrack_tcp_be_liberal, or the entry's own flag) may be
				 * fast, and an RST of a side whose data the kernel did not see is
				 * named in tna_liberal_req (TNA_LIBERAL_RESET), for the daemon to
				 * close the entry as Linux alone would; off: a segment that passes
				 * only because its sender is liberal goes to Linux (ct_window) */
};

/*
 * The forward-hook firewall: a bit-vector classifier (tna.firewall.tables). Its maps exist in
 * two generations; userspace fills the one not in use and then flips tna_config.fw_gen, so a
 * packet never sees half a ruleset. Table t = generation * 2 + (0 IPv4, 1 IPv6).
 */
#define TNA_FW_WORDS 32			/* 64-rule words: at most 2048 flattened rules */
#define TNA_FW_MAX_RULES (TNA_FW_WORDS * 64)
#define TNA_FW_MAX_CLASSES 4096		/* distinct bit vectors per table */
#define TNA_FW_MAX_STEPS 32		/* matched rules followed before giving up (punt) */
#define TNA_FW_TABLES 4

/* Fields, in tna.firewall.tables.FIELDS order: bit i of tna_fw_table.used. */
enum tna_fw_field {
	TNA_FW_IIF = 0,
	TNA_FW_OIF = 1,
	TNA_FW_SADDR = 2,
	TNA_FW_DADDR = 3,
	TNA_FW_L4PROTO = 4,
	TNA_FW_SPORT = 5,
	TNA_FW_DPORT = 6,
	TNA_FW_TCPFLAGS = 7,
	TNA_FW_ICMPTYPE = 8,
	TNA_FW_NR_FIELDS = 9,
};

enum tna_fw_verdict {
	TNA_FW_ACCEPT = 1,	/* passes the forward hook */
	TNA_FW_DROP = 2,
	TNA_FW_PUNT = 3,	/* a rule the fast path cannot evaluate could match: Linux decides */
	TNA_FW_SKIP = 4,	/* not final: continue at rule ``target`` */
};

/* tna_fw_tables[t]: the header of one table. */
struct tna_fw_table {
	__u32 nrules;		/* 0: no classifier for this table: punt */
	__u32 nwords;
	__u32 used;		/* fields some rule constrains (1 << enum tna_fw_field) */
	__u32 stateful;		/* conntrack active: only established UDP flows are fast */
	__u32 ct_timeout_ms;	/* net.netfilter.nf_conntrack_udp_timeout_stream, in ms */
	__u32 iif_default;	/* class of an input interface no rule names */
	__u32 oif_default;
	__u32 ct_unreplied_ms;	/* net.netfilter.nf_conntrack_udp_timeout: replied, not a stream */
	__u32 ct_flags;		/* TNA_FW_CT_*: what conntrack's fast path may serve */
	__u32 ct_tcp_est_ms;	/* net.netfilter.nf_conntrack_tcp_timeout_established, in ms */
	__u32 ct_tcp_unack_ms;	/* net.netfilter.nf_conntrack_tcp_timeout_unacknowledged, in ms */
	__u32 rule0_all;	/* rule 0 matches every packet the table classifies (every class
				 * has its bit): an ACCEPT or DROP there decides without lookups */
	__u32 ct_hz;		/* CONFIG_HZ when every timeout above is whole seconds, else 0:
				 * lets the fast path skip a refresh that would change nothing */
	__u32 ct_tcp_retrans_ms; /* net.netfilter.nf_conntrack_tcp_timeout_max_retrans, in ms */
	__u32 ct_tcp_max_retrans; /* net.netfilter.nf_conntrack_tcp_max_retrans: from this many
				 * repeats of the last segment on, the timeout above applies */
	__u32 pad;
};

#define TNA_FW_CT_TCP (1U << 0)		/* established TCP may be fast (else TCP punts ct_proto) */
#define TNA_FW_CT_LIBERAL (1U << 1)	/* nf_conntrack_tcp_be_liberal: windows are not judged */
#define TNA_FW_CT_NAT (1U << 2)		/* nat hooks are registered: NAT entries are rewritten */

/* tna_fw_ifs key: tag = t * 2 + (0 iif, 1 oif); value: class. */
struct tna_fw_if_key {
	__u32 tag;
	__u32 ifindex;
};

/* tna_fw_rules[t * TNA_FW_MAX_RULES + i] */
struct tna_fw_rule {
	__u8 verdict;		/* enum tna_fw_verdict */
	__u8 counted;		/* count fast-path packets under tna_fw_counters[same index] */
	__u16 pad;
	__u32 target;		/* TNA_FW_SKIP: next rule to consider */
};

/* tna_fw_classes[t * TNA_FW_MAX_CLASSES + class]: bit i set when rule i accepts the value. */
struct tna_fw_bits {
	__u64 w[TNA_FW_WORDS];
};

/* tna_fw_v4 (LPM): tag = t * 2 + (0 saddr, 1 daddr); prefixlen counts the tag's 32 bits. */
struct tna_fw_v4_key {
	__u32 prefixlen;
	__u32 tag;
	__u8 addr[4];
};

struct tna_fw_v6_key {
	__u32 prefixlen;
	__u32 tag;
	__u8 addr[16];
};

/*
 * tna monitor: punted (and, on request, firewall-dropped) frames as they happen. The program
 * emits an event only while tna_mon_ctl says someone watches (now < deadline_ns); the check
 * sits on the punt and drop paths only, never on the forwarded one. The monitor renews the
 * deadline every fraction of a second and clears it on exit, so a killed monitor stops the
 * events within TNA_MON_TTL_MS. Per CPU at most ``rate`` events a second go into the ring.
 */
#define TNA_MON_SNAP 96			/* frame bytes copied into an event */
#define TNA_MON_RING_BYTES (256 * 1024)	/* tna_mon_ring: ~2000 events */
#define TNA_MON_TTL_MS 1000		/* how far ahead the monitor sets the deadline */
#define TNA_MON_DROPS (1U << 0)		/* tna_mon_ctl.flags: firewall drops too */

/* tna_mon_ctl (one entry), written by tna monitor. */
struct tna_mon_ctl {
	__u64 deadline_ns;	/* bpf_ktime_get_ns() before which events are emitted; 0: off */
	__u32 flags;		/* TNA_MON_* */
	__u32 ifindex;		/* ingress interface to watch; 0: all */
	__u32 rate;		/* events per second and CPU at most */
	__u32 owner;		/* pid of the monitor that set it */
};

/* tna_mon_state (per CPU): the rate limit's window and what it and a full ring cost. */
struct tna_mon_state {
	__u64 window_ns;	/* start of the current one-second window */
	__u32 sent;		/* events emitted in the window */
	__u32 pad;
	__u64 suppressed;	/* events the rate limit left out */
	__u64 lost;		/* events the full ring left out */
};

/* One record in tna_mon_ring. */
struct tna_mon_event {
	__u64 ts_ns;		/* bpf_ktime_get_ns() */
	__u32 ifindex;		/* ingress */
	__u32 len;		/* the frame's length */
	__u16 code;		/* enum tna_code */
	__u16 snap;		/* bytes of frame[] that hold the frame's start */
	__u32 pad;
	__u8 frame[TNA_MON_SNAP];
};

/*
 * tna run --tcp-liberal (docs/stateful.md): the programs ask, the daemon marks. When window
 * tracking alone keeps an established TCP segment off the fast path (ct_window) and the rest of
 * the pipeline (FIB, egress, forward hook) would forward it, the program still hands the segment
 * to Linux and puts the connection's original-direction tuple in the ring; the daemon sets
 * IP_CT_TCP_FLAG_BE_LIBERAL on both directions of the entry through ctnetlink, as the kernel's
 * flowtable does for the connections it offloads. Nobody reading: the ring fills, requests are
 * lost (counted), segments keep going to Linux.
 */
#define TNA_LIBERAL_RING_BYTES (64 * 1024)	/* tna_liberal_req: ~1100 requests */

/*
 * The same ring carries the RST repair (docs/stateful.md, "The RST of a liberal side"): with
 * ct_liberal_fast, data the fast path forwarded never moved the kernel's td_end of its sender,
 * so the kernel no longer recognises that side's RST (exact at the peer's highest ACK, or right
 * after its data) and keeps the entry ESTABLISHED. An RST whose sequence number is beyond the
 * kernel's td_end of its sender still goes to Linux, and the entry is named with
 * TNA_LIBERAL_RESET: the daemon sets it to CLOSE with nf_conntrack_tcp_timeout_close.
 */
#define TNA_LIBERAL_MARK 0	/* make the connection liberal both ways */
#define TNA_LIBERAL_RESET 1	/* side ``dir`` reset the connection: close the entry */

/* One record in tna_liberal_req: conntrack's original-direction tuple (zone 0, the one the
 * fast path's lookup uses), and what to do with the entry. */
struct tna_liberal_req {
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 l4proto;		/* IPPROTO_TCP */
	__be16 sport;
	__be16 dport;
	__u8 kind;		/* TNA_LIBERAL_MARK or TNA_LIBERAL_RESET */
	__u8 dir;		/* RESET: the RST's direction (0 original, 1 reply) */
	__u8 saddr[16];		/* IPv4: the first 4 bytes */
	__u8 daddr[16];
};

/* tna_liberal_cnt (per CPU): what the programs asked for (marks and resets), and what a full
 * ring left out. */
struct tna_liberal_stats {
	__u64 requested;
	__u64 lost;
};

/*
 * tna_ct_last (shared array of buckets): conntrack's retransmission counter around fast
 * segments (docs/stateful.md, "The retransmission counter"). tcp_in_window() remembers the last
 * in-window ACK_SET segment of a connection (last_dir, last_seq, last_ack, last_end, last_win)
 * and counts its identical repeats (retrans); tcp_packet() shortens the timeout to
 * nf_conntrack_tcp_timeout_max_retrans from nf_conntrack_tcp_max_retrans repeats on. The
 * kernel does not see fast segments: for a connection with one, a record here holds what
 * Linux alone would remember (``truth``), valid while the kernel's own values still equal the
 * snapshot taken then (``kernel``): a segment the kernel saw since changed them. A connection's
 * record is in the bucket its tuple hashes to (ct_last_bucket() in bpf/lib/ct_last.h), in one
 * of its ways.
 */
#define TNA_CT_LAST_BUCKET_BITS 15
#define TNA_CT_LAST_BUCKETS (1 << TNA_CT_LAST_BUCKET_BITS)
#define TNA_CT_LAST_WAYS 2

/* One segment as tcp_in_window()'s retransmission check sees it, and the count after it. */
struct tna_ct_seg {
	__u32 seq;
	__u32 ack;
	__u32 end;		/* seq + payload length (SYN/FIN never fast) */
	__u16 win;		/* raw, unscaled */
	__u8 dir;		/* 0 original, 1 reply */
	__u8 retrans;		/* repeats of it counted (u8 as the kernel's: it wraps) */
};

/* A record's owner: the entry's original-direction tuple (zone 0, as the fast path's lookup);
 * family 0: the way is free. Every field at a 4-byte boundary: hashed and compared by words. */
struct tna_ct_last_key {
	__u8 family;		/* AF_INET or AF_INET6 */
	__u8 pad[3];
	__be16 sport;
	__be16 dport;
	__u8 saddr[16];		/* IPv4: the first 4 bytes */
	__u8 daddr[16];
} __attribute__((aligned(4)));

struct tna_ct_last {
	struct tna_ct_last_key key;	/* whose record this is */
	struct tna_ct_seg kernel;	/* the kernel's last_* and retrans when written */
	struct tna_ct_seg truth;	/* Linux alone's: the last fast segment and its count */
};

struct tna_ct_last_bucket {
	struct tna_ct_last way[TNA_CT_LAST_WAYS];
};

#endif /* TNA_ABI_H */
