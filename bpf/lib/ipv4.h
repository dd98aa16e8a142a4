/* SPDX-License-Identifier: GPL-2.0 */
/* IPv4: the header checks ip_rcv()/ip_forward() make, rp_filter, the TTL decrement. */
#ifndef TNA_LIB_IPV4_H
#define TNA_LIB_IPV4_H

#include "common.h"

/* Ones'-complement sum of the (option-less) header, folded to 16 bits. */
static __always_inline __u32 ipv4_header_sum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)sizeof(*iph) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

static __always_inline int ipv4_csum_ok(const struct iphdr *iph)
{
	return ipv4_header_sum(iph) == 0xffff;
}

/* 0/8, 127/8, multicast, class E and broadcast: never forwarded as plain unicast. */
static __always_inline int ipv4_martian(__be32 addr)
{
	__u8 first = bpf_ntohl(addr) >> 24;

	return first == 0 || first == 127 || first >= 224;
}

/* Why ip_rcv()/ip_forward() would not simply forward this header, or 0. */
static __always_inline enum tna_code ipv4_check(const struct iphdr *iph, __u32 frame_len)
{
	__u32 tot_len = bpf_ntohs(iph->tot_len);

	if (iph->version != 4 || iph->ihl < 5)
		return TNA_PUNT_MALFORMED;
	if (iph->ihl > 5)
		return TNA_PUNT_IP_OPTIONS;
	if (tot_len < sizeof(*iph) || tot_len + sizeof(struct ethhdr) > frame_len)
		return TNA_PUNT_BAD_LENGTH;
	if (!ipv4_csum_ok(iph))
		return TNA_PUNT_BAD_CSUM;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TNA_PUNT_FRAGMENT;
	if (ipv4_martian(iph->saddr) || ipv4_martian(iph->daddr))
		return TNA_PUNT_MARTIAN;
	if (iph->ttl <= 1)
		return TNA_PUNT_TTL;
	return 0;
}

/*
 * rp_filter as fib_validate_source() does it: strict wants the route back to the source to
 * leave through the ingress interface, loose wants any unicast route back. Anything we
 * cannot prove passes goes to Linux, which makes the real decision.
 */
static __always_inline int ipv4_rp_ok(struct xdp_md *ctx, const struct iphdr *iph, __u32 ingress,
				      int loose)
{
	struct bpf_fib_lookup rev = {};

	rev.family = AF_INET;
	rev.tos = iph->tos;
	rev.ifindex = ingress;
	rev.ipv4_src = iph->daddr;
	rev.ipv4_dst = iph->saddr;
	if (bpf_fib_lookup(ctx, &rev, sizeof(rev), BPF_FIB_LOOKUP_SKIP_NEIGH) !=
	    BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	return loose || rev.ifindex == ingress;
}

/* Same arithmetic as the kernel's ip_decrease_ttl(), so the checksum bytes match. */
static __always_inline void ipv4_decrease_ttl(struct iphdr *iph)
{
	__u32 check = iph->check;

	check += bpf_htons(0x0100);
	iph->check = (__sum16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

#endif
