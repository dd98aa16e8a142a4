/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The L2 and br_netfilter checks of a frame received on a bridge port (the bridge pipeline
 * itself, bridge_rx(), is in tna_xdp.bpf.c).
 */
#ifndef TNA_LIB_BRIDGE_H
#define TNA_LIB_BRIDGE_H

#include "common.h"
#include "ipv4.h"
#include "ipv6.h"
#include "l4csum.h"

#define ETH_P_8021Q_BE bpf_htons(0x8100)
#define ETH_P_8021AD_BE bpf_htons(0x88A8)

/* 01:80:c2:00:00:0x, is_link_local_ether_addr(): trapped or forwarded per group_fwd_mask. */
static __always_inline int link_local_group(const __u8 *d)
{
	return d[0] == 0x01 && d[1] == 0x80 && d[2] == 0xc2 && d[3] == 0 && d[4] == 0 &&
	       (d[5] & 0xf0) == 0;
}

/* !is_valid_ether_addr(): multicast or all-zero source; br_handle_frame() drops it. */
static __always_inline int invalid_source(const __u8 *s)
{
	return (s[0] & 1) || !(s[0] | s[1] | s[2] | s[3] | s[4] | s[5]);
}

static __always_inline int broadcast(const __u8 *d)
{
	return (d[0] & d[1] & d[2] & d[3] & d[4] & d[5]) == 0xff;
}

/* br_validate_ipv4(): what br_netfilter drops before the iptables hooks, or 0. */
static __always_inline enum tna_code brnf_ipv4_check(const struct iphdr *iph, __u32 frame_len)
{
	__u32 tot_len = bpf_ntohs(iph->tot_len);

	if (iph->version != 4 || iph->ihl < 5)
		return TNA_PUNT_MALFORMED;
	if (iph->ihl > 5)	/* checksummed with the options: left to Linux */
		return TNA_PUNT_IP_OPTIONS;
	if (!ipv4_csum_ok(iph))
		return TNA_PUNT_BAD_CSUM;
	if (tot_len + sizeof(struct ethhdr) > frame_len || tot_len < sizeof(*iph))
		return TNA_PUNT_BAD_LENGTH;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))	/* conntrack would reassemble */
		return TNA_PUNT_FRAGMENT;
	return 0;
}

/* veth ingress: may leave by XDP only if no checksum is left to offload (see l4csum.h). */
static __always_inline int bridged_ipv4_csum_ok(struct xdp_md *ctx, const struct iphdr *iph,
						__u32 frame_len)
{
	__u32 tot_len = bpf_ntohs(iph->tot_len), l4_len;

	if (iph->version != 4 || iph->ihl != 5 || tot_len < sizeof(*iph) ||
	    tot_len + sizeof(struct ethhdr) > frame_len ||
	    (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)))
		return 0;
	l4_len = tot_len - sizeof(*iph);
	return l4_csum_settled(ctx, iph->protocol, IPPROTO_ICMP, sizeof(struct ethhdr) + sizeof(*iph),
			       l4_len, pseudo_v4(iph, l4_len));
}

static __always_inline int bridged_ipv6_csum_ok(struct xdp_md *ctx, const struct ipv6hdr *ip6h,
						__u32 frame_len)
{
	__u32 l4_len = bpf_ntohs(ip6h->payload_len);

	if (ip6h->version != 6 || l4_len + sizeof(*ip6h) + sizeof(struct ethhdr) > frame_len)
		return 0;
	return l4_csum_settled(ctx, ip6h->nexthdr, IPPROTO_ICMPV6,
			       sizeof(struct ethhdr) + sizeof(*ip6h), l4_len, pseudo_v6(ip6h, l4_len));
}

#endif
