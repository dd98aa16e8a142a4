// SPDX-License-Identifier: GPL-2.0
/*
 * TNA's per-interface XDP fast path. One source, specialised at load time: userspace fills
 * tna_features (read-only data), so the verifier removes every feature the plan left off and
 * the loaded program holds only what its interface needs. Everything not proven to be handled
 * exactly as Linux would is passed to the kernel with a counted reason (enum tna_code).
 */
#include "lib/common.h"
#include "lib/stats.h"
#include "lib/ipv4.h"
#include "lib/ipv6.h"
#include "lib/bridge.h"

const volatile struct tna_features tna_features SEC(".rodata.features") = {};

SEC("xdp")
int tna_xdp(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u32 ingress = ctx->ingress_ifindex;
	const struct tna_iface *in = iface_lookup(ingress);
	struct ethhdr *eth = data;

	if (!in)
		return punt(ctx, 0, TNA_PUNT_NO_PORT);
	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		note_redirect(ctx);
	if (tna_features.bridge_port)
		return bridge_rx(ctx, in);
	if (eth->h_dest[0] & 1)
		return punt(ctx, in->slot, TNA_PUNT_L2_MULTICAST);
	if (!mac_equal(eth->h_dest, in->mac))
		return punt(ctx, in->slot, TNA_PUNT_NOT_FOR_US);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		if (tna_features.ipv4_router && !(in->flags & TNA_IF_NO_IPV4))
			return ipv4_forward(ctx, in, ingress);
		return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
	case bpf_htons(ETH_P_IPV6):
		if (tna_features.ipv6_router && !(in->flags & TNA_IF_NO_IPV6))
			return ipv6_forward(ctx, in, ingress);
		return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
	default:
		return punt(ctx, in->slot, TNA_PUNT_NOT_IP);
	}
}

char _license[] SEC("license") = "GPL";
