/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Conntrack from XDP, through the upstream kfuncs (net/netfilter/nf_conntrack_bpf.c): is a
 * datagram part of an established UDP flow, and what would conntrack refresh it to? Used by
 * the forward hook (firewall.h) when the ruleset makes the kernel track connections. The
 * entry's fields are read with CO-RE, so only the ones named here must exist in the kernel.
 */
#ifndef TNA_LIB_CONNTRACK_H
#define TNA_LIB_CONNTRACK_H

#include "common.h"
#include "l4csum.h"
#include <linux/udp.h>

struct nf_ct_udp {
	unsigned long stream_ts;	/* jiffies after which a replied flow is a stream */
} __attribute__((preserve_access_index));

union nf_conntrack_proto {
	struct nf_ct_udp udp;
} __attribute__((preserve_access_index));

struct nf_conn {
	unsigned long status;
	union nf_conntrack_proto proto;
} __attribute__((preserve_access_index));

struct bpf_ct_opts___local {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
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
#define CT_DYING (1UL << 9)
#define CT_FIXED_TIMEOUT (1UL << 10)
#define CT_TEMPLATE (1UL << 11)
#define CT_UNTRACKED (1UL << 12)	/* also IPS_NAT_CLASH */
#define CT_HELPER (1UL << 13)
#define CT_OFFLOAD (1UL << 14)
#define CT_HW_OFFLOAD (1UL << 15)
/* established: seen both ways, in the table */
#define CT_NEEDED (CT_SEEN_REPLY | CT_CONFIRMED)
/* NAT rewrites, helpers inspect, fixed timeouts are not refreshed, related flows: Linux */
#define CT_REFUSED (CT_EXPECTED | CT_SRC_NAT | CT_DST_NAT | CT_SEQ_ADJUST | CT_DYING | \
		    CT_FIXED_TIMEOUT | CT_TEMPLATE | CT_UNTRACKED | CT_HELPER | CT_OFFLOAD | \
		    CT_HW_OFFLOAD)
#define BPF_F_CURRENT_NETNS (-1)

/* net.netfilter.nf_conntrack_udp_timeout_stream and nf_conntrack_udp_timeout, in ms */
struct ct_udp_timeouts {
	__u32 stream_ms;
	__u32 unreplied_ms;
};

/*
 * The established UDP flow of a datagram, referenced (bpf_ct_release() it), or NULL: then
 * udp_packet() would do more than refresh a timeout, or udp_error() might call the datagram
 * invalid (length beyond the datagram, or, as net.netfilter.nf_conntrack_checksum has it by
 * default and is verified here always, a checksum that does not hold). *timeout_ms is what
 * udp_packet() would refresh the flow to: the stream timeout once it is assured, the
 * unreplied one before stream_ts (the packet after, which makes it assured, is the kernel's).
 */
static __always_inline struct nf_conn *ct_udp_flow(struct xdp_md *ctx, int v6, const __u8 *saddr,
						   const __u8 *daddr, const struct udphdr *udp,
						   __u32 l4_off, __u32 l4_len, __u64 pseudo,
						   const struct ct_udp_timeouts *t,
						   __u32 *timeout_ms)
{
	struct bpf_ct_opts___local opts = { .netns_id = BPF_F_CURRENT_NETNS,
					    .l4proto = IPPROTO_UDP };
	struct bpf_sock_tuple tuple = {};
	struct nf_conn *ct;
	__u32 tuple_len;

	if ((const void *)(udp + 1) > frame_end(ctx) || bpf_ntohs(udp->len) > l4_len ||
	    bpf_ntohs(udp->len) < sizeof(*udp))
		return NULL;
	if (udp->check && !l4_csum_complete(ctx, l4_off, l4_len, pseudo))
		return NULL;
	if (v6) {
		__builtin_memcpy(tuple.ipv6.saddr, saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, daddr, 16);
		tuple.ipv6.sport = udp->source;
		tuple.ipv6.dport = udp->dest;
		tuple_len = sizeof(tuple.ipv6);
	} else {
		__builtin_memcpy(&tuple.ipv4.saddr, saddr, 4);
		__builtin_memcpy(&tuple.ipv4.daddr, daddr, 4);
		tuple.ipv4.sport = udp->source;
		tuple.ipv4.dport = udp->dest;
		tuple_len = sizeof(tuple.ipv4);
	}
	ct = bpf_xdp_ct_lookup(ctx, &tuple, tuple_len, &opts, sizeof(opts));
	if (!ct)
		return NULL;
	if ((ct->status & CT_NEEDED) != CT_NEEDED || (ct->status & CT_REFUSED))
		goto linux;
	if (ct->status & CT_ASSURED) {
		*timeout_ms = t->stream_ms;
	} else {
		if ((__s64)(ct->proto.udp.stream_ts - bpf_jiffies64()) < 0)
			goto linux;
		*timeout_ms = t->unreplied_ms;
	}
	return ct;
linux:
	bpf_ct_release(ct);
	return NULL;
}

#endif
