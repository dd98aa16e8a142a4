/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The way out of a routed frame: may the FIB's egress be redirected to (and through which
 * bridge port), does it fit the MTUs Linux would apply, the L2 rewrite, and the redirect.
 */
#ifndef TNA_LIB_TRANSMIT_H
#define TNA_LIB_TRANSMIT_H

#include "common.h"
#include "fdb.h"
#include "maps.h"
#include "redirects.h"
#include "stats.h"

/*
 * The egress interface, if the plan lets us redirect into it (else *why says why not), and in
 * *tx the device to redirect to: the FIB's egress, or when that is a bridge (and the program
 * has ``bridge_egress``), the port its FDB names for the next hop's MAC (what br_dev_xmit()
 * would pick).
 */
static __always_inline const struct tna_iface *
egress_port(const struct bpf_fib_lookup *fib, __u32 ingress, __u32 *tx, enum tna_code *why,
	    int via_gateway, int bridge_egress)
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
	if (bridge_egress && out &&
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

/*
 * The device would drop it (is_skb_forwardable, xdp_ok_fwd_dev): larger than the MTU. A frame
 * no longer than TNA_MTU_FLOOR fits a device whose MTU cannot go below that (TNA_IF_MTU_FLOOR,
 * from its IFLA_MIN_MTU) without asking: bpf_check_mtu() looks the device up by ifindex, which
 * costs ~15-30 ns a frame here.
 */
static __always_inline int fits_mtu(struct xdp_md *ctx, __u32 ifindex,
				    const struct tna_iface *out)
{
	__u32 mtu_len = 0;

	if ((out->flags & TNA_IF_MTU_FLOOR) &&
	    frame_end(ctx) - frame_start(ctx) <= TNA_MTU_FLOOR)
		return 1;
	return bpf_check_mtu(ctx, ifindex, &mtu_len, 0, 0) == BPF_MTU_CHK_RET_SUCCESS;
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
