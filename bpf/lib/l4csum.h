/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Is the TCP/UDP checksum of this frame complete?
 *
 * A frame that a local stack sent through a veth may still carry CHECKSUM_PARTIAL: its L4
 * checksum field holds only the pseudo-header sum and the skb says "finish me". Linux forwards
 * such an skb with that promise intact; an XDP redirect turns it into bare bytes and the
 * receiver drops it. So on veth ingress we forward only frames whose checksum verifies (then
 * the bytes are exactly what Linux would deliver) and punt the rest, which Linux forwards with
 * their metadata. Frames from a wire always carry complete checksums; this check is only
 * compiled in for interfaces that need it (tna_features.verify_l4_csum).
 */
#ifndef TNA_LIB_L4CSUM_H
#define TNA_LIB_L4CSUM_H

#include "common.h"

#define CSUM_CHUNK 512		/* the most bpf_csum_diff() sums in one call */
#define CSUM_MAX_CHUNKS 8	/* 4 KiB: beyond any frame a non-frags XDP program sees */

static __always_inline __u16 csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)((sum & 0xffff) + (sum >> 16));
}

/* One constant-size step of the sum; the constant size is what the verifier needs. */
#define CSUM_STEP(size)                                                                  \
	if (left >= (size)) {                                                            \
		if ((void *)(p + (size)) > end)                                          \
			return -1;                                                       \
		sum += (__u32)bpf_csum_diff(NULL, 0, (__be32 *)p, (size), 0);            \
		p += (size);                                                             \
		left -= (size);                                                          \
	}

/* Ones'-complement sum of [l4, l4 + len) in memory byte order, or -1 if out of bounds. */
static __always_inline __s64 l4_sum(void *l4, void *end, __u32 len)
{
	__u8 *p = l4;
	__u32 left = len;
	__u64 sum = 0;

#pragma unroll
	for (int i = 0; i < CSUM_MAX_CHUNKS; i++) {
		CSUM_STEP(CSUM_CHUNK)
	}
	if (left >= CSUM_CHUNK)
		return -1;
	CSUM_STEP(256)
	CSUM_STEP(128)
	CSUM_STEP(64)
	CSUM_STEP(32)
	CSUM_STEP(16)
	CSUM_STEP(8)
	CSUM_STEP(4)
	if (left >= 2) {
		if ((void *)(p + 2) > end)
			return -1;
		sum += *(__u16 *)p;
		p += 2;
		left -= 2;
	}
	if (left) {
		if ((void *)(p + 1) > end)
			return -1;
		sum += *p;	/* the odd byte is the high-order byte of a zero-padded word */
	}
	return sum;
}

/* The pseudo-header plus payload must sum to 0xffff. */
static __always_inline int l4_csum_complete(void *l4, void *end, __u32 len, __u64 pseudo)
{
	__s64 sum = l4_sum(l4, end, len);

	return sum >= 0 && csum_fold64(pseudo + (__u64)sum) == 0xffff;
}

/* Only protocols whose checksum we can verify may leave a veth by the fast path. */
static __always_inline int l4_verifiable(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

static __always_inline __u64 pseudo_v4(const struct iphdr *iph, __u32 l4_len)
{
	return (__u64)iph->saddr + iph->daddr + bpf_htons(iph->protocol) + bpf_htons(l4_len);
}

static __always_inline __u64 pseudo_v6(const struct ipv6hdr *ip6h, __u32 l4_len)
{
	__u64 sum = bpf_htonl(l4_len) + (__u64)bpf_htonl(ip6h->nexthdr);

#pragma unroll
	for (int i = 0; i < 4; i++)
		sum += (__u64)ip6h->saddr.in6_u.u6_addr32[i] + ip6h->daddr.in6_u.u6_addr32[i];
	return sum;
}

#endif
