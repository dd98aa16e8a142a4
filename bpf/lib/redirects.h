/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ICMP redirects: bpf_fib_lookup() does not see the next-hop exceptions they leave in the
 * kernel's route cache. The fast path counts each redirect it sees arrive (before the kernel
 * does); while the control plane has not found the exception gone, gateway routes out of
 * interfaces that accept redirects go to Linux (tna_redirects, TNA_IF_ACCEPT_REDIRECTS).
 */
#ifndef TNA_LIB_REDIRECTS_H
#define TNA_LIB_REDIRECTS_H

#include "common.h"
#include "maps.h"

#define ICMP_REDIRECT_TYPE 5

/* A redirect arrived that the control plane has not yet found gone from the route cache. */
static __always_inline int redirect_pending(void)
{
	__u32 seen_key = 0, cleared_key = 1;
	const __u64 *seen = bpf_map_lookup_elem(&tna_redirects, &seen_key);
	const __u64 *cleared = bpf_map_lookup_elem(&tna_redirects, &cleared_key);

	return !seen || !cleared || *seen != *cleared;
}

/* Count an ICMP redirect arriving (any IPv4 frame with ICMP type 5), before anything else. */
static __always_inline void note_redirect(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct iphdr *iph = data + sizeof(struct ethhdr);
	__u8 *icmp_type;
	__u32 key = 0;
	__u64 *seen;

	if ((void *)(iph + 1) > end || iph->protocol != IPPROTO_ICMP || iph->ihl < 5)
		return;
	icmp_type = (__u8 *)iph + (iph->ihl & 0xf) * 4;
	if ((void *)(icmp_type + 1) > end || *icmp_type != ICMP_REDIRECT_TYPE)
		return;
	seen = bpf_map_lookup_elem(&tna_redirects, &key);
	if (seen)
		__sync_fetch_and_add(seen, 1);
}

#endif
