/* SPDX-License-Identifier: GPL-2.0 */
/*
 * After the L3 checks: what a bpf_fib_lookup() result means, whether the egress may be
 * redirected to, and the L2 rewrite + redirect shared by IPv4 and IPv6.
 */
#ifndef TNA_LIB_FIB_H
#define TNA_LIB_FIB_H

#include "fdb.h"

extern const volatile struct tna_features tna_features;

/* Every result but SUCCESS is Linux's business; the comment says what Linux does with it. */
static __always_inline enum tna_code fib_punt_reason(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_BLACKHOLE:	/* Linux drops silently */
		return TNA_PUNT_BLACKHOLE;
	case BPF_FIB_LKUP_RET_UNREACHABLE:	/* Linux sends ICMP host unreachable */
		return TNA_PUNT_UNREACHABLE;
	case BPF_FIB_LKUP_RET_PROHIBIT:	/* Linux sends ICMP administratively prohibited */
		return TNA_PUNT_PROHIBIT;
	case BPF_FIB_LKUP_RET_NOT_FWDED:	/* no route (ICMP unreachable), local, broadcast */
		return TNA_PUNT_NOT_FORWARDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:	/* forwarding off: Linux drops or delivers locally */
		return TNA_PUNT_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_NO_NEIGH:	/* Linux resolves ARP/ND, queues, and later sends */
		return TNA_PUNT_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:	/* Linux fragments or sends frag-needed/too-big */
		return TNA_PUNT_FRAG_NEEDED;
	case BPF_FIB_LKUP_RET_UNSUPP_LWT:	/* encapsulating route: Linux encapsulates */
	default:				/* negative errno or a result newer than us */
		return TNA_PUNT_FIB_OTHER;
	}
}

/*
 * The egress interface, if the plan lets us redirect into it (else *why says why not), and in
 * *tx the device to redirect to: the FIB's egress, or when that is a bridge, the port its FDB
 * names for the next hop's MAC (what br_dev_xmit() would pick).
 */
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
	if ((void *)(icmp_type + 1) > end || *icmp_type != 5)
		return;
	seen = bpf_map_lookup_elem(&tna_redirects, &key);
	if (seen)
		__sync_fetch_and_add(seen, 1);
}

static __always_inline const struct tna_iface *
egress_port(const struct bpf_fib_lookup *fib, __u32 ingress, __u32 *tx, enum tna_code *why,
	    int via_gateway)
{
	__u32 ifindex = fib->ifindex;
	const struct tna_iface *out;

	if (ifindex == ingress) {
		*why = TNA_PUNT_SAME_IFACE;
		return NULL;
	}
	out = iface_lookup(ifindex);
	if (via_gateway && out && (out->flags & TNA_IF_ACCEPT_REDIRECTS) &&
	    ((out->flags & TNA_IF_REDIRECTS_UNWATCHED) || redirect_pending())) {
		*why = TNA_PUNT_REDIRECTED;
		return NULL;
	}
	if (tna_features.bridge_egress && out &&
	    (out->flags & (TNA_IF_EGRESS | TNA_IF_BRIDGE)) == (TNA_IF_EGRESS | TNA_IF_BRIDGE))
		return bridge_resolve(ifindex, fib->dmac, tx, why);
	/* a bridge device itself never takes XDP frames */
	if (!out || (out->flags & (TNA_IF_EGRESS | TNA_IF_BRIDGE)) != TNA_IF_EGRESS) {
		*why = TNA_PUNT_EGRESS;
		return NULL;
	}
	*tx = ifindex;
	return out;
}

/* Longer than the smallest route MTU metric of its family: ip_forward() might refuse it. */
static __always_inline int over_route_mtu(__u32 ip_len, int ipv6)
{
	__u32 zero = 0;
	const struct tna_config *cfg = bpf_map_lookup_elem(&tna_config, &zero);
	__u32 mtu = cfg ? (ipv6 ? cfg->route_mtu_v6 : cfg->route_mtu_v4) : 0;

	return mtu && ip_len > mtu;
}

/* Shrink the frame to what the IP header claims, as ip_rcv()/ipv6_rcv() trim padding. */
static __always_inline int trim_to(struct xdp_md *ctx, __u32 wanted)
{
	__u32 len = frame_end(ctx) - frame_start(ctx);

	if (len == wanted)
		return 0;
	return bpf_xdp_adjust_tail(ctx, (int)wanted - (int)len);
}

struct l2_saved {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
};

static __always_inline void rewrite_macs(struct ethhdr *eth, const struct bpf_fib_lookup *fib,
					 struct l2_saved *saved)
{
	__builtin_memcpy(saved->dst, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(saved->src, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
}

static __always_inline void restore_macs(struct ethhdr *eth, const struct l2_saved *saved)
{
	__builtin_memcpy(eth->h_dest, saved->dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, saved->src, ETH_ALEN);
}

/* Send the rewritten frame; XDP_PASS if the egress vanished from tna_tx meanwhile. */
static __always_inline int send(__u32 ifindex, __u32 in_slot, __u32 out_slot, __u64 bytes)
{
	int ret = bpf_redirect_map(&tna_tx, ifindex, XDP_PASS);

	if (ret == XDP_REDIRECT) {
		count(in_slot, TNA_FORWARDED, bytes);
		count(out_slot, TNA_TRANSMITTED, bytes);
	}
	return ret;
}

#endif
