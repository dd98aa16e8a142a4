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

#define CSUM_MAX_LEN 4096	/* beyond any frame a non-frags XDP program sees */
#define CSUM_BLOCK 256		/* bpf_csum_diff() takes at most 512 bytes and multiples of 4 */
#define CSUM_CHUNK 32		/* read directly: cheaper than a helper call below a block */

static __always_inline __u16 csum_fold64(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)((sum & 0xffff) + (sum >> 16));
}

/* Where the last ``left`` bytes of off..off+len start, masked so the verifier sees a bound. */
static __always_inline void *csum_pos(void *data, __u32 off, __u32 len, __u32 left)
{
	__u32 at = off + len - left;

	/* where the compiler can prove the bound itself it drops the mask; the verifier cannot */
	asm volatile("" : "+r"(at));
	return data + (at & (2 * CSUM_MAX_LEN - 1));
}

/*
 * The last ``left`` (< 32) bytes of off..off+len added to ``sum``: a tail of at most
 * 16 + 8 + 4 + 2 + 1 bytes, each step a constant size at an offset computed from what is left;
 * -1 if the frame is shorter.
 */
static __always_inline __s64 csum_tail(void *data, void *end, __u32 off, __u32 len, __u32 left,
				       __u64 sum)
{
	__u32 *w;
	__u8 *p;

	if (left >= 16) {
		w = csum_pos(data, off, len, left);
		if ((void *)(w + 4) > end)
			return -1;
		sum += (__u64)w[0] + w[1] + w[2] + w[3];
		left -= 16;
	}
	if (left >= 8) {
		w = csum_pos(data, off, len, left);
		if ((void *)(w + 2) > end)
			return -1;
		sum += (__u64)w[0] + w[1];
		left -= 8;
	}
	if (left >= 4) {
		w = csum_pos(data, off, len, left);
		if ((void *)(w + 1) > end)
			return -1;
		sum += w[0];
		left -= 4;
	}
	p = csum_pos(data, off, len, left);
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
	return sum;	/* at most 4096 / 4 words of 32 bits: far below 2^63 */
}

/* One 32-byte chunk, ``left`` bytes before the end of the L4 bytes, added to *sum: 0, or -1
 * when it is not inside the frame. */
static __always_inline int csum_chunk(void *data, void *end, __u32 off, __u32 len, __u32 left,
				      __u64 *sum)
{
	__u32 *w = csum_pos(data, off, len, left);

	if ((void *)(w + CSUM_CHUNK / 4) > end)
		return -1;
	*sum += (__u64)w[0] + w[1] + w[2] + w[3] + w[4] + w[5] + w[6] + w[7];
	return 0;
}

/*
 * Ones'-complement sum (folded to 16 bits) of the len bytes at offset off of the frame, or -1.
 *
 * A global function on purpose: the verifier checks it once, on its own, with unknown
 * arguments, instead of once per call site and path of the caller. Inside, each step reads a
 * constant size at an offset computed from what is left (an unknown), so every way out of a
 * loop reaches the next in the same abstract state. Large blocks go to bpf_csum_diff(), the
 * rest is read in 32-byte chunks and a tail of at most 16 + 8 + 4 + 2 + 1 bytes, so that few
 * bounds checks and loop tests are paid per byte. Short sums (l4_sum()) do not come here.
 */
__attribute__((noinline)) int tna_l4_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u32 left = len;
	__u64 sum = 0;
	__s64 tail;
	__u8 *p;

	if (len > CSUM_MAX_LEN || off > CSUM_MAX_LEN)
		return -1;
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_MAX_LEN / CSUM_BLOCK && left >= CSUM_BLOCK; i++) {
		p = csum_pos(data, off, len, left);
		if ((void *)(p + CSUM_BLOCK) > end)
			return -1;
		sum += (__u32)bpf_csum_diff(NULL, 0, (__be32 *)p, CSUM_BLOCK, 0);
		left -= CSUM_BLOCK;
	}
#pragma clang loop unroll(disable)
	for (int i = 0; i < CSUM_BLOCK / CSUM_CHUNK && left >= CSUM_CHUNK; i++) {
		if (csum_chunk(data, end, off, len, left, &sum))
			return -1;
		left -= CSUM_CHUNK;
	}
	tail = csum_tail(data, end, off, len, left, sum);
	return tail < 0 ? -1 : csum_fold64(tail);
}

/*
 * The same sum, inline below CSUM_INLINE_MAX bytes (every minimum-size frame): at most one
 * 32-byte chunk and the tail, straight-line code the verifier walks cheaply at each call site.
 * A call costs more than such a sum here: each return pays the SRSO "Safe RET" thunk on this
 * kind of host (~20 ns a frame measured; docs/benchmarks.md, "The fixed cost").
 */
#define CSUM_INLINE_MAX (2 * CSUM_CHUNK)

static __always_inline int l4_sum(struct xdp_md *ctx, __u32 off, __u32 len)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u32 left = len;
	__u64 sum = 0;
	__s64 tail;

	if (len >= CSUM_INLINE_MAX || off > CSUM_MAX_LEN)
		return tna_l4_sum(ctx, off, len);
	if (left >= CSUM_CHUNK) {
		if (csum_chunk(data, end, off, len, left, &sum))
			return -1;
		left -= CSUM_CHUNK;
	}
	tail = csum_tail(data, end, off, len, left, sum);
	return tail < 0 ? -1 : csum_fold64(tail);
}

/* The pseudo-header plus the L4 bytes (their ``sum``, -1: unreadable) must sum to 0xffff. */
static __always_inline int csum_verifies(int sum, __u64 pseudo)
{
	return sum >= 0 && csum_fold64(pseudo + (__u32)sum) == 0xffff;
}

static __always_inline int l4_csum_complete(struct xdp_md *ctx, __u32 off, __u32 len,
					    __u64 pseudo)
{
	asm volatile("" : "+r"(pseudo));	/* see l4_csum_settled() */
	return csum_verifies(l4_sum(ctx, off, len), pseudo);
}

/* Only protocols whose checksum we can verify may leave a veth by the fast path. */
static __always_inline int l4_verifiable(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

/*
 * May a frame of L4 protocol ``proto`` leave a veth by the fast path: ICMP (``icmp_proto``:
 * IPPROTO_ICMP or IPPROTO_ICMPV6) is never sent with an offloaded checksum, TCP and UDP only
 * when theirs verifies, anything else never. A UDP checksum of 0 ("none") proves nothing: a
 * local tunnel sender (VXLAN without outer checksum) may have left the *inner* packet's
 * checksum to offload, which a redirect would lose (tests/netns/test_router_e2e.py).
 */
static __always_inline int l4_csum_settled(struct xdp_md *ctx, __u8 proto, __u8 icmp_proto,
					   __u32 l4_off, __u32 l4_len, __u64 pseudo)
{
	if (proto == icmp_proto)
		return 1;
	if (!l4_verifiable(proto))
		return 0;
	/*
	 * One register across the sum, not its parts: the compiler would otherwise keep the
	 * addresses' words in stack slots of their own, and a program with the forward hook has
	 * none to spare (its call chain and the main function share the verifier's 512 bytes).
	 */
	asm volatile("" : "+r"(pseudo));
	return csum_verifies(l4_sum(ctx, l4_off, l4_len), pseudo);
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
