/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Conntrack from XDP, through the upstream kfuncs (net/netfilter/nf_conntrack_bpf.c): does a
 * packet belong to an established TCP or UDP flow whose next step the kernel would take as a
 * mere timeout refresh, and which NAT rewrite does that flow's entry record? Used by the forward
 * hook (firewall.h) when the ruleset makes the kernel track connections. The entry's fields are
 * read with CO-RE, so only the ones named here must exist in the kernel. The entry is read-only
 * here except for its timeout: the fast path never creates, revives or changes an entry.
 *
 * TCP: conntrack judges every segment against the window it tracked from the segments it saw
 * (tcp_in_window()). A forwarded segment does not move that window, so a segment is fast only
 * if, seen by the kernel, it would have left the verdict-relevant state as it is (docs/
 * stateful.md explains why nothing weaker keeps every later verdict Linux's). With
 * nf_conntrack_tcp_be_liberal (or the entry's liberal flag) the window is not judged; the
 * highest ACK still is (RST checks). Only with a daemon to repair what the kernel then misses,
 * the RST of a side whose data was fast (CT_LIBERAL_FAST, the ct_liberal_fast feature).
 */
#ifndef TNA_LIB_CONNTRACK_H
#define TNA_LIB_CONNTRACK_H

#include "common.h"
#include "ct_last.h"
#include "ipv6.h"
#include "l4csum.h"
#include "profile.h"
#include <linux/tcp.h>
#include <linux/udp.h>

struct nf_ct_udp {
	unsigned long stream_ts;	/* jiffies after which a replied flow is a stream */
} __attribute__((preserve_access_index));

struct ip_ct_tcp_state {
	__u32 td_end;		/* max of seq + len */
	__u32 td_maxend;	/* max of ack + max(win, 1) */
	__u32 td_maxwin;	/* max(win) */
	__u32 td_maxack;	/* max of ack */
	__u8 td_scale;
	__u8 flags;
} __attribute__((preserve_access_index));

struct ip_ct_tcp {
	struct ip_ct_tcp_state seen[2];
	__u8 state;
	__u8 last_dir;		/* the last in-window ACK_SET segment the kernel saw: */
	__u8 retrans;		/* (and how many identical repeats of it it counted) */
	__u32 last_seq;		/* its direction, sequence number, ACK, end and raw window */
	__u32 last_ack;
	__u32 last_end;
	__u16 last_win;
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct nf_ct_udp udp;
	struct ip_ct_tcp tcp;
} __attribute__((preserve_access_index));

union nf_inet_addr___tna {
	__u32 all[4];
} __attribute__((preserve_access_index));

union nf_conntrack_man_proto___tna {
	__be16 all;
} __attribute__((preserve_access_index));

struct nf_conntrack_man___tna {
	union nf_inet_addr___tna u3;
	union nf_conntrack_man_proto___tna u;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple___tna {
	struct nf_conntrack_man___tna src;
	struct {
		union nf_inet_addr___tna u3;
		union {
			__be16 all;
		} u;
	} dst;
} __attribute__((preserve_access_index));

struct nf_conntrack_tuple_hash___tna {
	struct nf_conntrack_tuple___tna tuple;
} __attribute__((preserve_access_index));

struct nf_conn {
	__u32 timeout;		/* jiffies (32 bits) when the entry expires */
	struct nf_conntrack_tuple_hash___tna tuplehash[2];
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

struct bpf_ct_opts___local {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;		/* out: the direction of the tuple that matched */
	__u8 reserved[2];
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *tuple,
					 __u32 tuple__sz, struct bpf_ct_opts___local *opts,
					 __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *nfct, __u32 timeout) __ksym;

/* enum ip_conntrack_status (uapi nf_conntrack_common.h) */
#define CT_EXPECTED (1UL << 0)
#define CT_SEEN_REPLY (1UL << 1)
#define CT_ASSURED (1UL << 2)
#define CT_CONFIRMED (1UL << 3)
#define CT_SRC_NAT (1UL << 4)
#define CT_DST_NAT (1UL << 5)
#define CT_SEQ_ADJUST (1UL << 6)
#define CT_SRC_NAT_DONE (1UL << 7)
#define CT_DST_NAT_DONE (1UL << 8)
#define CT_DYING (1UL << 9)
#define CT_FIXED_TIMEOUT (1UL << 10)
#define CT_TEMPLATE (1UL << 11)
#define CT_UNTRACKED (1UL << 12)	/* also IPS_NAT_CLASH */
#define CT_HELPER (1UL << 13)
#define CT_OFFLOAD (1UL << 14)
#define CT_HW_OFFLOAD (1UL << 15)
/* established: seen both ways, in the table */
#define CT_NEEDED (CT_SEEN_REPLY | CT_CONFIRMED)
/* helpers inspect, seq-adjusted NAT rewrites sequence numbers, fixed timeouts are not
 * refreshed, related flows and offloaded ones are someone else's: Linux */
#define CT_REFUSED (CT_EXPECTED | CT_SEQ_ADJUST | CT_DYING | CT_FIXED_TIMEOUT | CT_TEMPLATE | \
		    CT_UNTRACKED | CT_HELPER | CT_OFFLOAD | CT_HW_OFFLOAD)
#define BPF_F_CURRENT_NETNS (-1)

/* enum tcp_conntrack, and the per-direction flags of struct ip_ct_tcp_state */
#define CT_TCP_SYN_RECV 2
#define CT_TCP_ESTABLISHED 3
#define CT_TCP_FLAG_SACK_PERM 0x02
#define CT_TCP_FLAG_BE_LIBERAL 0x08
#define CT_TCP_FLAG_DATA_UNACKNOWLEDGED 0x10
#define CT_TCP_FLAG_MAXACK_SET 0x20
#define CT_MAXACKWINCONST 66000		/* MAXACKWINCONST of nf_conntrack_proto_tcp.c */

#define TCPF_FIN 0x01
#define TCPF_SYN 0x02
#define TCPF_RST 0x04
#define TCPF_ACK 0x10
#define TCPF_URG 0x20

/* ct_established()'s ``mode``, from the program's features */
#define CT_ASK_LIBERAL 1	/* ct_tcp_liberal: name connections for the daemon to mark */
#define CT_LIBERAL_FAST 2	/* ct_liberal_fast: liberal sides are fast, their RSTs repaired */
#define CT_MODE(ask, fast) ((ask) | ((fast) << 1))	/* from the two features (0 or 1) */
#define CT_LIBERAL_ONLY 2	/* ct_tcp_step()'s *window_only: passed for a liberal sender */

/* sequence number comparisons modulo 2^32, as the kernel's before()/after() */
#define seq_before(a, b) ((__s32)((a) - (b)) < 0)
#define seq_after(a, b) seq_before(b, a)

/*
 * The NAT an established entry does to a packet of direction ``dir``, as nf_nat_packet() would:
 * the destination manip in PREROUTING (before routing and the forward hook), the source manip
 * in POSTROUTING. The targets are the other direction's tuple, inverted.
 */
struct ct_nat {
	__u8 dir;		/* IP_CT_DIR_ORIGINAL (0) or IP_CT_DIR_REPLY (1) */
	__u8 dst;		/* a destination manip applies */
	__u8 src;		/* a source manip applies */
	__u8 csum_ok;		/* the L4 checksum verified (not a UDP checksum of 0) */
	__be32 daddr[4], saddr[4];	/* targets; IPv4 in [0] */
	__be16 dport, sport;
};

/* The flow is gone or going: Linux must not see it revived (nf_ct_is_expired()). */
static __always_inline int ct_expired(const struct nf_conn *ct)
{
	return (__s32)(ct->timeout - (__u32)bpf_jiffies64()) <= 0;
}

/*
 * What tcp_packet()/udp_packet() do with the timeout: nf_ct_refresh_acct() sets it to now +
 * the timeout, and writes it only when that changes it. The kfunc always writes (through
 * msecs_to_jiffies()); at ``hz`` (the table's ct_hz: 0 unknown) the value it would write is
 * computed here, and when the entry already holds it (a packet of the same flow in the same
 * jiffy) the call is skipped as the kernel skips its write: nothing differs.
 */
static __always_inline void ct_refresh(struct nf_conn *ct, __u32 timeout_ms, __u32 hz)
{
	/* (read again here, not kept from ct_expired(): the stack has no room to spare) */
	if (hz && !tna_profile_off(TNA_PROF_SHORTCUTS) &&
	    ct->timeout == (__u32)bpf_jiffies64() + timeout_ms / 1000 * hz)
		return;
	bpf_ct_change_timeout(ct, timeout_ms);
}

static __always_inline int ipv4_unroutable(__be32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;

	return first == 0 || first == 127 || first >= 224;
}

/* nf_nat_manip_pkt(): the targets are the other direction's tuple ``t``, inverted. */
static __always_inline void ct_nat_targets(const struct nf_conntrack_tuple___tna *t, struct ct_nat *nat)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		nat->saddr[i] = t->dst.u3.all[i];
		nat->daddr[i] = t->src.u3.all[i];
	}
	nat->sport = t->dst.u.all;
	nat->dport = t->src.u.all;
}

/* A target Linux would not route as a plain unicast address: its flow stays Linux's. */
static __always_inline int ct_nat_unroutable(const __be32 *addr, int v6)
{
	return v6 ? !!ipv6_addr_check((const struct in6_addr *)addr) : ipv4_unroutable(addr[0]);
}

/*
 * Fill *nat for an entry with NAT: 0, or why the fast path leaves it to Linux. ``nat_on``: the
 * family's nat hooks are registered (without them the kernel applies no NAT at all).
 */
static __always_inline int ct_nat_of(const struct nf_conn *ct, unsigned long status, int dir,
				     int v6, int nat_on, struct ct_nat *nat)
{
	unsigned long dst_bit = dir ? CT_SRC_NAT : CT_DST_NAT;
	unsigned long src_bit = dir ? CT_DST_NAT : CT_SRC_NAT;

	nat->dst = !!(status & dst_bit);
	nat->src = !!(status & src_bit);
	nat->dir = dir;
	if (!nat->dst && !nat->src)
		return 0;
	if (!nat_on)
		return TNA_PUNT_NAT;
	/* a manip not yet set up: the kernel still has a first packet to NAT */
	if (((status & CT_SRC_NAT) && !(status & CT_SRC_NAT_DONE)) ||
	    ((status & CT_DST_NAT) && !(status & CT_DST_NAT_DONE)))
		return TNA_PUNT_NAT;
	ct_nat_targets(dir ? &ct->tuplehash[0].tuple : &ct->tuplehash[1].tuple, nat);
	if ((nat->dst && ct_nat_unroutable(nat->daddr, v6)) ||
	    (nat->src && ct_nat_unroutable(nat->saddr, v6)))
		return TNA_PUNT_NAT;
	return 0;
}

/* Conntrack's working data, in the per-CPU scratch (struct fw_scratch): it costs no stack. */
struct ct_work {
	struct bpf_ct_opts___local opts;	/* the lookup's */
	struct bpf_sock_tuple tuple;
	struct ct_last_work last;		/* the retransmission count's (ct_last.h) */
	struct tna_ct_seg owner;		/* tna_ct_last_held()'s: a record owner's values */
};

/* The entry of a TCP/UDP packet, referenced (bpf_ct_release() it), or NULL; *dir its side. */
static __always_inline struct nf_conn *ct_lookup(struct xdp_md *ctx, int v6, const __u8 *saddr,
						 const __u8 *daddr, __be16 sport, __be16 dport,
						 __u8 l4proto, int *dir, struct ct_work *w)
{
	struct bpf_ct_opts___local *opts = &w->opts;
	struct bpf_sock_tuple *tuple = &w->tuple;
	struct nf_conn *ct;
	__u32 tuple_len;

	/* every byte the kfunc reads is written: no memset (the scratch is not the stack) */
	opts->netns_id = BPF_F_CURRENT_NETNS;
	opts->error = 0;
	opts->l4proto = l4proto;
	opts->dir = 0;
	opts->reserved[0] = opts->reserved[1] = 0;
	if (v6) {
		__builtin_memcpy(tuple->ipv6.saddr, saddr, 16);
		__builtin_memcpy(tuple->ipv6.daddr, daddr, 16);
		tuple->ipv6.sport = sport;
		tuple->ipv6.dport = dport;
		tuple_len = sizeof(tuple->ipv6);
	} else {
		__builtin_memcpy(&tuple->ipv4.saddr, saddr, 4);
		__builtin_memcpy(&tuple->ipv4.daddr, daddr, 4);
		tuple->ipv4.sport = sport;
		tuple->ipv4.dport = dport;
		tuple_len = sizeof(tuple->ipv4);
	}
	ct = bpf_xdp_ct_lookup(ctx, tuple, tuple_len, opts, sizeof(*opts));
	*dir = opts->dir & 1;
	return ct;
}

/* The kernel's own last segment and retransmission count of an entry, read under no lock. */
static __always_inline void ct_kernel_seg(const struct nf_conn *ct, struct tna_ct_seg *k)
{
	k->seq = ct->proto.tcp.last_seq;
	k->ack = ct->proto.tcp.last_ack;
	k->end = ct->proto.tcp.last_end;
	k->win = ct->proto.tcp.last_win;
	k->dir = ct->proto.tcp.last_dir;
	k->retrans = ct->proto.tcp.retrans;
}

/*
 * For ct_last_way_for(): does way ``way`` of bucket ``bucket`` hold what only it knows? Its
 * connection's entry is still in the table (looked up by the record's tuple) and the kernel's
 * last_* and retrans still equal the record's snapshot: no segment reached the kernel since the
 * last fast one, so the record's truth is the only one there is. A global function: it runs
 * only for a bucket whose ways are both taken, and its caller's stack has no room for a second
 * lookup. It writes w->opts, w->tuple (the caller's lookup is done with them) and w->owner.
 */
__attribute__((noinline)) int tna_ct_last_held(struct xdp_md *ctx, struct ct_work *w,
					       __u32 bucket, __u32 way)
{
	struct tna_ct_last_bucket *b = bpf_map_lookup_elem(&tna_ct_last, &bucket);
	const struct tna_ct_last *rec;
	struct nf_conn *ct;
	int dir = 0;

	if (!w || !b)
		return 1;	/* cannot tell: keep it (the caller's segment goes to Linux) */
	rec = &b->way[way & (TNA_CT_LAST_WAYS - 1)];
	ct = ct_lookup(ctx, rec->key.family == AF_INET6, rec->key.saddr, rec->key.daddr,
		       rec->key.sport, rec->key.dport, IPPROTO_TCP, &dir, w);
	if (!ct)
		return 0;
	ct_kernel_seg(ct, &w->owner);	/* (in the scratch: the call chain's stack is full) */
	bpf_ct_release(ct);
	return !dir && ct_snapshot_same(&w->owner, &rec->kernel);
}

/*
 * udp_packet() for an established flow: *timeout_ms is what it would refresh the flow to: the
 * stream timeout once assured, the unreplied one before stream_ts (the packet after, which
 * makes the flow assured, is the kernel's). 0, or why Linux must see the datagram.
 */
static __always_inline int ct_udp_step(const struct nf_conn *ct, unsigned long status,
				       const struct tna_fw_table *p, __u32 *timeout_ms)
{
	if (status & CT_ASSURED) {
		*timeout_ms = p->ct_timeout_ms;
		return 0;
	}
	if ((__s64)(ct->proto.udp.stream_ts - bpf_jiffies64()) < 0)
		return TNA_PUNT_CT;
	*timeout_ms = p->ct_unreplied_ms;
	return 0;
}

/* One direction's tracked window, read through CO-RE (the index must be a constant). */
struct ct_tcp_side {
	__u32 end, maxend, maxwin, maxack;
	__u8 scale, flags;
};

static __always_inline void ct_tcp_side(const struct nf_conn *ct, int i, struct ct_tcp_side *s)
{
	if (i) {
		s->end = ct->proto.tcp.seen[1].td_end;
		s->maxend = ct->proto.tcp.seen[1].td_maxend;
		s->maxwin = ct->proto.tcp.seen[1].td_maxwin;
		s->maxack = ct->proto.tcp.seen[1].td_maxack;
		s->scale = ct->proto.tcp.seen[1].td_scale;
		s->flags = ct->proto.tcp.seen[1].flags;
	} else {
		s->end = ct->proto.tcp.seen[0].td_end;
		s->maxend = ct->proto.tcp.seen[0].td_maxend;
		s->maxwin = ct->proto.tcp.seen[0].td_maxwin;
		s->maxack = ct->proto.tcp.seen[0].td_maxack;
		s->scale = ct->proto.tcp.seen[0].td_scale;
		s->flags = ct->proto.tcp.seen[0].flags;
	}
}

/* What of a TCP segment tcp_in_window() looks at. */
struct ct_tcp_seg {
	__u32 seq, ack, end, win;	/* host order; win unscaled */
	__u32 len;			/* payload bytes */
};

/*
 * tcp_in_window()'s acceptance test: the segment is inside the tracked window (the kernel then
 * updates the window from it; outside it, be_liberal lets it pass without any update).
 */
static __always_inline int ct_tcp_in_window(const struct ct_tcp_seg *g,
					    const struct ct_tcp_side *s,
					    const struct ct_tcp_side *r)
{
	__u32 maxackwin = s->maxwin > CT_MAXACKWINCONST ? s->maxwin : CT_MAXACKWINCONST;

	return !seq_after(g->seq, s->maxend) &&
	       (!r->maxwin || seq_after(g->end, s->end - r->maxwin - 1)) &&
	       !seq_after(g->ack, r->end) && seq_after(g->ack, r->end - maxackwin - 1);
}

/*
 * tcp_packet()'s timeout for a segment that keeps the flow established: the unacknowledged one
 * (if lower) while either side has data in flight, as the kernel's flags say after this
 * segment. Inside the window, the kernel marks the sender when the segment carries *new* data
 * (beyond td_end: a retransmission does not) and unmarks the receiver when it acknowledges
 * everything the receiver sent (ack == td_end); outside it, nothing changes. A segment without
 * payload never marks its sender: with be_liberal, an ACK can end beyond a td_end that lags
 * because earlier data was fast, where Linux alone, having seen that data, marks nothing.
 */
static __always_inline __u32 ct_tcp_timeout(const struct ct_tcp_seg *g,
					    const struct ct_tcp_side *s,
					    const struct ct_tcp_side *r,
					    const struct tna_fw_table *p, int in_window)
{
	int s_unack = s->flags & CT_TCP_FLAG_DATA_UNACKNOWLEDGED;
	int r_unack = r->flags & CT_TCP_FLAG_DATA_UNACKNOWLEDGED;

	if (in_window) {
		if (g->len && seq_after(g->end, s->end))
			s_unack = 1;
		if (g->ack == r->end)
			r_unack = 0;
	}
	if ((s_unack || r_unack) && p->ct_tcp_unack_ms < p->ct_tcp_est_ms)
		return p->ct_tcp_unack_ms;
	return p->ct_tcp_est_ms;
}

/*
 * Would tcp_in_window() accept the segment, from its own tracked window and without updating
 * anything that a later verdict depends on? ``s``: the sender's side, ``r``: the receiver's.
 * The conditions are tcp_in_window()'s, read as "nothing to update" (see docs/stateful.md):
 *   - seq within the receiver's advertised window, ACK of data the kernel has seen, neither
 *     below the lower bounds (which would make the kernel ignore the segment);
 *   - no new data (end <= td_end): a later ACK of data the kernel did not see would be
 *     "ACK is over upper bound", INVALID;
 *   - no new right window edge, no larger window, no higher ACK than tracked: a later segment
 *     in the newly opened window would be "SEQ is over upper bound", a later RST judged
 *     against a stale td_maxack;
 *   - no acknowledgement that would clear the receiver's "data unacknowledged" mark (timeout).
 */
static __always_inline int ct_tcp_window_still(const struct ct_tcp_seg *g,
					       const struct ct_tcp_side *s,
					       const struct ct_tcp_side *r)
{
	__u32 maxackwin = s->maxwin > CT_MAXACKWINCONST ? s->maxwin : CT_MAXACKWINCONST;
	__u32 win = g->win << (s->scale & 15);

	if (seq_after(g->seq, s->maxend) || seq_after(g->ack, r->end))
		return 0;
	if (r->maxwin && !seq_after(g->end, s->end - r->maxwin - 1))
		return 0;
	if (!seq_after(g->ack, r->end - maxackwin - 1))
		return 0;
	if (seq_after(g->end, s->end) || seq_after(g->end, s->maxend))
		return 0;
	if (!g->win || seq_after(g->ack + win, r->maxend) || win > s->maxwin)
		return 0;
	if (g->ack == r->end && (r->flags & CT_TCP_FLAG_DATA_UNACKNOWLEDGED))
		return 0;
	return 1;
}

/* The segment may carry a SACK block (the receiver permitted SACK, and the options are other
 * than none or the timestamp alone): tcp_in_window() then judges the block's right edge. */
static __always_inline int ct_tcp_may_sack(const struct ct_tcp_side *r, __u32 doff, __u32 opt)
{
	return (r->flags & CT_TCP_FLAG_SACK_PERM) && doff != sizeof(struct tcphdr) &&
	       (doff != sizeof(struct tcphdr) + 12 || opt != bpf_htonl(0x0101080a));
}

/*
 * The handshake's last segment: the client's pure ACK of the SYN-ACK (the entry in SYN_RECV, the
 * original direction), which conntrack turns ESTABLISHED. With ``tna run --tcp-liberal`` the
 * connection is named here, while its data has not started: the daemon's mark then usually lands
 * before the first data segment instead of while a transfer keeps both CPUs busy. The SYN-ACK's
 * options (tcp_options() resets a side's flags) are behind it.
 */
static __always_inline int ct_tcp_handshake_ack(const struct nf_conn *ct, int dir,
						const struct tcphdr *th, __u32 l4_len)
{
	return !dir && ct->proto.tcp.state == CT_TCP_SYN_RECV &&
	       ((const __u8 *)th)[13] == TCPF_ACK && th->doff * 4 == l4_len;
}

/*
 * tcp_packet() for an established flow whose segment changes nothing but the timeout: 0 and
 * *timeout_ms, or why Linux must see it. ``dir``: the segment's direction; ``th``: its header,
 * bounds-checked for sizeof(*th); ``opt``: the first 4 option bytes, when doff > 5.
 * ``w``: the segment, and whether tcp_in_window() takes it in, for ct_last_count() (filled when
 * 0 is returned).
 * *window_only is set when the segment goes to Linux for window tracking alone (ct_window):
 * had the sender's side been liberal, it would have passed; CT_LIBERAL_ONLY when it passed
 * because its sender is liberal (the sysctl or the entry's flag), which the caller accepts only
 * under a daemon (CT_LIBERAL_FAST; the check is there, not here: this function's stack is full).
 */
static __always_inline int ct_tcp_step(const struct nf_conn *ct, int dir, const struct tcphdr *th,
				       __u32 l4_len, __u32 opt, const struct tna_fw_table *p,
				       __u32 *timeout_ms, int *window_only, struct ct_last_work *w)
{
	__u8 flags = ((const __u8 *)th)[13];
	struct ct_tcp_side s, r;
	struct ct_tcp_seg g;
	__u32 doff = th->doff * 4;

	if (ct->proto.tcp.state != CT_TCP_ESTABLISHED)
		return TNA_PUNT_CT_SETUP;
	/* only ACK_SET segments keep an established flow established; URG: keep it simple */
	if ((flags & (TCPF_FIN | TCPF_SYN | TCPF_RST | TCPF_URG | TCPF_ACK)) != TCPF_ACK)
		return TNA_PUNT_CT_SETUP;
	if (doff < sizeof(*th) || doff > l4_len)
		return TNA_PUNT_CT;	/* tcp_error(): Linux calls it invalid */
	ct_tcp_side(ct, dir, &s);
	ct_tcp_side(ct, !dir, &r);
	g.seq = bpf_ntohl(th->seq);
	g.ack = bpf_ntohl(th->ack_seq);
	g.win = bpf_ntohs(th->window);
	g.len = l4_len - doff;
	g.end = g.seq + g.len;
	/* (a repeat of the last segment the kernel saw is fast too: ct_last_count() counts it) */
	w->in_window = ct_tcp_in_window(&g, &s, &r);
	/* td_maxack: the kernel judges a later RST of the peer against it (in every mode), and
	 * only a segment inside the window moves it. One outside (a liberal sender's, acknowledging
	 * fast data beyond a td_end that lags) moves nothing, fast or not; but without a SACK
	 * block, whose edge the kernel's bounds would take for the ACK */
	if ((!(s.flags & CT_TCP_FLAG_MAXACK_SET) || seq_after(g.ack, s.maxack)) &&
	    (w->in_window || ct_tcp_may_sack(&r, doff, opt)))
		return TNA_PUNT_CT_WINDOW;
	if (!(p->ct_flags & TNA_FW_CT_LIBERAL) && !(s.flags & CT_TCP_FLAG_BE_LIBERAL)) {
		/* from here on, only the sender's window tracking stands in the way: a liberal
		 * sender (the sysctl, or the entry's own flag) would pass */
		*window_only = 1;
		/* a SACK block would move the ACK tcp_in_window() checks: only timestamps */
		if (ct_tcp_may_sack(&r, doff, opt) || !ct_tcp_window_still(&g, &s, &r))
			return TNA_PUNT_CT_WINDOW;
		*window_only = 0;
	}
	else
		*window_only = CT_LIBERAL_ONLY;	/* fast because its sender is liberal */
	w->seg.seq = g.seq;
	w->seg.ack = g.ack;
	w->seg.end = g.end;
	w->seg.win = g.win;
	w->seg.dir = dir;
	*timeout_ms = ct_tcp_timeout(&g, &s, &r, p, w->in_window);
	return 0;
}

/*
 * The entry's original-direction addresses (16 bytes each; an IPv4 address in the first word,
 * the others 0, as conntrack keeps them) and ports, as ctnetlink and tna_ct_last name it.
 */
static __always_inline void ct_orig_addrs(const struct nf_conn *ct, int v6, __u32 *src,
					  __u32 *dst, __be16 *sport, __be16 *dport)
{
	*sport = ct->tuplehash[0].tuple.src.u.all;
	*dport = ct->tuplehash[0].tuple.dst.u.all;
	src[0] = ct->tuplehash[0].tuple.src.u3.all[0];
	dst[0] = ct->tuplehash[0].tuple.dst.u3.all[0];
	if (v6) {
		src[1] = ct->tuplehash[0].tuple.src.u3.all[1];
		src[2] = ct->tuplehash[0].tuple.src.u3.all[2];
		src[3] = ct->tuplehash[0].tuple.src.u3.all[3];
		dst[1] = ct->tuplehash[0].tuple.dst.u3.all[1];
		dst[2] = ct->tuplehash[0].tuple.dst.u3.all[2];
		dst[3] = ct->tuplehash[0].tuple.dst.u3.all[3];
	} else {
		src[1] = src[2] = src[3] = 0;
		dst[1] = dst[2] = dst[3] = 0;
	}
}

/*
 * For ct_last_count(): the entry's original-direction tuple (the key) and the kernel's own
 * last segment and retransmission count (the snapshot).
 */
static __always_inline void ct_last_fill(const struct nf_conn *ct, int v6, struct ct_last_work *w)
{
	struct tna_ct_last_key *key = &w->val.key;

	key->family = v6 ? AF_INET6 : AF_INET;
	key->pad[0] = key->pad[1] = key->pad[2] = 0;
	ct_orig_addrs(ct, v6, (__u32 *)key->saddr, (__u32 *)key->daddr, &key->sport, &key->dport);
	ct_kernel_seg(ct, &w->val.kernel);
}

/*
 * tcp_packet()'s retransmission rules for the fast segment ct_tcp_step() left in ``w``: 0 and
 * *timeout_ms (the established or the unacknowledged timeout, from ct_tcp_timeout()) set to
 * nf_conntrack_tcp_timeout_max_retrans where the kernel would, or why Linux must see the
 * segment. Where the established timeout is longer: from nf_conntrack_tcp_max_retrans repeats
 * on (before the unacknowledged rule), or, after it, when the remembered segment's window is
 * 0 (only a liberal sender's segment can be fast with a zero window).
 */
static __always_inline int ct_tcp_retrans(struct xdp_md *ctx, const struct nf_conn *ct, int v6,
					  const struct tna_fw_table *p, struct ct_work *cw,
					  __u32 *timeout_ms)
{
	struct ct_last_work *w = &cw->last;
	int last;

	ct_last_fill(ct, v6, w);
	last = ct_last_count(ctx, cw, w);
	if (last < 0)
		return TNA_PUNT_CT_WINDOW;
	if (p->ct_tcp_est_ms <= p->ct_tcp_retrans_ms)
		return 0;
	if ((last & 0xff) >= p->ct_tcp_max_retrans ||
	    ((last & CT_LAST_WIN0) && *timeout_ms == p->ct_tcp_est_ms))
		*timeout_ms = p->ct_tcp_retrans_ms;
	return 0;
}

/* The entry's original-direction tuple, as ctnetlink names the entry (CTA_TUPLE_ORIG). */
static __always_inline void ct_orig_tuple(const struct nf_conn *ct, int v6,
					  struct tna_liberal_req *req)
{
	req->family = v6 ? AF_INET6 : AF_INET;
	req->l4proto = IPPROTO_TCP;
	req->kind = TNA_LIBERAL_MARK;
	req->dir = 0;
	ct_orig_addrs(ct, v6, (__u32 *)req->saddr, (__u32 *)req->daddr, &req->sport, &req->dport);
}

/* ct_established(): Linux's for window tracking alone (CT_ASK), or the handshake's last ACK
 * (CT_ASK_SETUP); *req names the connection (see lib/ct_liberal.h). Never returned unless asked
 * to (CT_ASK_LIBERAL). */
#define CT_ASK (-1)
#define CT_ASK_SETUP (-2)

/*
 * Conntrack's part of a TCP/UDP packet of an established flow: 0 when the fast path may take it
 * (the entry's timeout then refreshed as the kernel would, *nat filled), or why Linux must.
 * ``l4``: the L4 header, at least 8 bytes (UDP) or sizeof(struct tcphdr) (TCP) checked by the
 * caller; ``csum_ok``: the L4 checksum verifies (nf_conntrack_checksum; UDP 0 is "none").
 * ``mode``: CT_ASK_LIBERAL and CT_LIBERAL_FAST, as the program's features say.
 * With CT_ASK_LIBERAL (tna run --tcp-liberal), a TCP segment that only window tracking keeps
 * from the fast path returns CT_ASK instead of ct_window, *nat filled and *req naming the
 * connection, the timeout left to Linux: the caller decides whether the fast path would carry
 * it. The handshake's last ACK (ct_tcp_handshake_ack()) returns CT_ASK_SETUP the same way.
 * With CT_LIBERAL_FAST, a liberal sender's segments are not judged by its window.
 */
static __always_inline int ct_established(struct xdp_md *ctx, int v6, const __u8 *saddr,
					  const __u8 *daddr, __u8 l4proto, const void *l4,
					  __u32 l4_len, __u32 opt, const struct tna_fw_table *p,
					  struct ct_nat *nat, int mode, struct tna_liberal_req *req,
					  struct ct_work *w)
{
	const struct tcphdr *th = l4;
	struct nf_conn *ct;
	unsigned long status;
	__u32 timeout_ms = 0;
	int dir = 0, why, nat_why, window_only = 0;

	if (tna_profile_off(TNA_PROF_LOOKUP)) {
		nat->dst = nat->src = 0;
		return 0;
	}
	ct = ct_lookup(ctx, v6, saddr, daddr, th->source, th->dest, l4proto, &dir, w);
	if (!ct)
		return TNA_PUNT_CT;
	status = ct->status;
	why = TNA_PUNT_CT;
	if ((status & CT_NEEDED) != CT_NEEDED || (status & CT_REFUSED) || ct_expired(ct))
		goto linux;
	if (l4proto == IPPROTO_TCP) {
		if (!(status & CT_ASSURED)) {
			why = TNA_PUNT_CT_SETUP;
			window_only = (mode & CT_ASK_LIBERAL) &&
				      ct_tcp_handshake_ack(ct, dir, th, l4_len);
		} else {
			timeout_ms = p->ct_tcp_est_ms;	/* (profiling: what the step says) */
			why = tna_profile_off(TNA_PROF_WINDOW) ? 0 :
			      ct_tcp_step(ct, dir, th, l4_len, opt, p, &timeout_ms, &window_only,
					  &w->last);
			/* liberal data leaves the kernel's view of its sender stale: fast only
			 * where a daemon repairs what that breaks (ct_tcp_reset_stale()) */
			if (!why && window_only == CT_LIBERAL_ONLY && !(mode & CT_LIBERAL_FAST))
				why = TNA_PUNT_CT_WINDOW;
		}
	} else {
		why = ct_udp_step(ct, status, p, &timeout_ms);
	}
	if (why && !((mode & CT_ASK_LIBERAL) && window_only == 1))
		goto linux;
	nat_why = ct_nat_of(ct, status, dir, v6, p->ct_flags & TNA_FW_CT_NAT, nat);
	if (nat_why) {	/* a punt for the window comes first, as without ``ask`` */
		why = why ? why : nat_why;
		goto linux;
	}
	if (why) {	/* window tracking alone, or the handshake: Linux's (and its timeout) */
		ct_orig_tuple(ct, v6, req);
		why = why == TNA_PUNT_CT_SETUP ? CT_ASK_SETUP : CT_ASK;
		goto linux;
	}
	/* the retransmission counter, as Linux alone would have it (ct_last.h) */
	if (l4proto == IPPROTO_TCP && !tna_profile_off(TNA_PROF_WINDOW | TNA_PROF_LAST)) {
		why = ct_tcp_retrans(ctx, ct, v6, p, w, &timeout_ms);
		if (why)
			goto linux;
	}
	if (tna_profile_off(TNA_PROF_NAT))
		nat->dst = nat->src = 0;
	/* what tcp_packet()/udp_packet() do before the forward hook, whatever it decides */
	if (!tna_profile_off(TNA_PROF_REFRESH))
		ct_refresh(ct, timeout_ms, p->ct_hz);
linux:
	bpf_ct_release(ct);
	return why;
}

/*
 * The RST of a liberal side whose data the kernel did not see (docs/stateful.md, "The RST of a
 * liberal side"); ``th`` bounds-checked for sizeof(*th), its checksum verified. tcp_packet()
 * closes an ESTABLISHED entry on an RST of side S only if its sequence number is the peer's
 * td_maxack, or S's last in-window segment ended there (an "RST train"); anything else keeps
 * ESTABLISHED for a challenge ACK. Data of a liberal S the fast path forwarded never moved
 * td_end[S], and the peer's ACKs of it were then beyond td_end[S]: accepted (liberal) without
 * moving td_maxack. S's RST right after its data, or at the peer's highest ACK, lies beyond
 * td_end[S], so the kernel keeps the entry where Linux alone, having seen that data, closes it.
 * The test: an RST (RST or RST|ACK, as tcp_error() accepts) of a liberal side of an assured
 * ESTABLISHED entry, the peer's td_maxack set, whose sequence number is after the kernel's
 * td_end[S]. The peer's td_maxack and S's last_end never exceed td_end[S], so the kernel itself
 * closes none of these; a real stack's RST carries its snd_nxt, never before what the peer
 * acknowledged, so Linux alone would not have called it invalid either.
 */
static __always_inline int ct_tcp_reset_stale(const struct nf_conn *ct, int dir,
					      const struct tcphdr *th, __u32 l4_len,
					      const struct tna_fw_table *p)
{
	__u8 flags = ((const __u8 *)th)[13];
	struct ct_tcp_side s, r;

	if ((flags & (TCPF_FIN | TCPF_SYN | TCPF_RST | TCPF_URG)) != TCPF_RST)
		return 0;
	if (th->doff * 4 < sizeof(*th) || th->doff * 4 > l4_len)
		return 0;	/* tcp_error(): invalid, the kernel changes nothing */
	if (ct->proto.tcp.state != CT_TCP_ESTABLISHED)
		return 0;
	ct_tcp_side(ct, dir, &s);
	ct_tcp_side(ct, !dir, &r);
	if (!(p->ct_flags & TNA_FW_CT_LIBERAL) && !(s.flags & CT_TCP_FLAG_BE_LIBERAL))
		return 0;	/* window-tracked: its data was never fast */
	if (!(r.flags & CT_TCP_FLAG_MAXACK_SET))
		return 0;	/* tcp_packet() closes without looking at the sequence number */
	return seq_after(bpf_ntohl(th->seq), s.end);
}

#endif
