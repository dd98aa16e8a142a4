/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Frames received on a bridge port: what br_handle_frame() and br_handle_frame_finish() would
 * do, for the one case the fast path takes over: known unicast from a known source, to a port
 * that forwards (switched), or to the bridge's own MAC when the bridge routes (SVI). Everything
 * else (flooding, learning, STP, link-local groups, special port flags) is the kernel's.
 *
 * XDP runs on the port before the bridge's rx_handler, so a punted frame reaches the bridge
 * exactly as if TNA were not there.
 */
#ifndef TNA_LIB_BRIDGE_H
#define TNA_LIB_BRIDGE_H

#include "fdb.h"
#include "ipv4.h"
#include "ipv6.h"

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

/* br_validate_ipv6(): the same for IPv6; extension headers (hop-by-hop length checks, fragments
 * conntrack would reassemble) are left to Linux. */
static __always_inline enum tna_code brnf_ipv6_check(const struct ipv6hdr *ip6h, __u32 frame_len)
{
	if (ip6h->version != 6)
		return TNA_PUNT_MALFORMED;
	if (bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h) + sizeof(struct ethhdr) > frame_len)
		return TNA_PUNT_BAD_LENGTH;
	if (ipv6_is_ext(ip6h->nexthdr))
		return TNA_PUNT_IPV6_EXT;
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
	if (iph->protocol == IPPROTO_ICMP)
		return 1;
	if (!l4_verifiable(iph->protocol))
		return 0;
	l4_len = tot_len - sizeof(*iph);
	return l4_csum_complete(ctx, sizeof(struct ethhdr) + sizeof(*iph), l4_len,
				pseudo_v4(iph, l4_len));
}

static __always_inline int bridged_ipv6_csum_ok(struct xdp_md *ctx, const struct ipv6hdr *ip6h,
						__u32 frame_len)
{
	__u32 l4_len = bpf_ntohs(ip6h->payload_len);

	if (ip6h->version != 6 || l4_len + sizeof(*ip6h) + sizeof(struct ethhdr) > frame_len)
		return 0;
	if (ip6h->nexthdr == IPPROTO_ICMPV6)
		return 1;
	if (!l4_verifiable(ip6h->nexthdr))
		return 0;
	return l4_csum_complete(ctx, sizeof(struct ethhdr) + sizeof(*ip6h), l4_len,
				pseudo_v6(ip6h, l4_len));
}

/* Known unicast to another port: br_forward() without the skb. */
static __always_inline int bridge_forward(struct xdp_md *ctx, const struct tna_iface *in,
					  __u32 bridge, __u32 port, struct tna_fdb_entry *src)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ethhdr *eth = data;
	__u32 frame_len = end - data, wire_len = frame_len;
	const struct tna_iface *out;
	enum tna_code why = 0;
	int ret;

	out = bridge_egress_port(bridge, port, &why);
	if (!out)
		return punt(ctx, in->slot, why);
	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + sizeof(*eth);

		if (!tna_features.bridge_ipv4 || (in->flags & TNA_IF_NO_BRIDGE_IPV4))
			return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
		if ((void *)(iph + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		if (tna_features.bridge_ipv4 == 2) {
			why = brnf_ipv4_check(iph, frame_len);
			if (why)
				return punt(ctx, in->slot, why);
			wire_len = sizeof(*eth) + bpf_ntohs(iph->tot_len);	/* it trims */
		}
		if (tna_features.verify_l4_csum && !bridged_ipv4_csum_ok(ctx, iph, frame_len))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + sizeof(*eth);

		if (!tna_features.bridge_ipv6 || (in->flags & TNA_IF_NO_BRIDGE_IPV6))
			return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
		if ((void *)(ip6h + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		if (tna_features.bridge_ipv6 == 2) {
			why = brnf_ipv6_check(ip6h, frame_len);
			if (why)
				return punt(ctx, in->slot, why);
			wire_len = sizeof(*eth) + sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		}
		if (tna_features.verify_l4_csum && !bridged_ipv6_csum_ok(ctx, ip6h, frame_len))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	} else {
		return punt(ctx, in->slot, TNA_PUNT_NOT_IP);
	}

	if (wire_len != frame_len && trim_to(ctx, wire_len))
		return punt(ctx, in->slot, TNA_PUNT_BAD_LENGTH);
	if (!fits_mtu(ctx, port))
		return punt(ctx, in->slot, TNA_PUNT_TOO_BIG);
	ret = bpf_redirect_map(&tna_tx, port, XDP_PASS);
	if (ret != XDP_REDIRECT)
		return punt(ctx, in->slot, TNA_PUNT_EGRESS);
	count(in->slot, TNA_BRIDGED, wire_len);
	count(out->slot, TNA_TRANSMITTED, wire_len);
	fdb_note_seen(src);
	return XDP_REDIRECT;
}

/* For the bridge's own MAC: br_pass_frame_up(), then routed with the bridge as input device. */
static __always_inline int bridge_route(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 bridge, __be16 proto, struct tna_fdb_entry *src)
{
	int ret;

	if (proto == bpf_htons(ETH_P_IP) && tna_features.ipv4_router &&
	    !(in->flags & TNA_IF_NO_IPV4))
		ret = ipv4_forward(ctx, in, bridge);
	else if (proto == bpf_htons(ETH_P_IPV6) && tna_features.ipv6_router &&
		 !(in->flags & TNA_IF_NO_IPV6))
		ret = ipv6_forward(ctx, in, bridge);
	else
		return punt(ctx, in->slot, TNA_PUNT_BRIDGE_LOCAL);
	if (ret == XDP_REDIRECT)
		fdb_note_seen(src);
	return ret;
}

static __always_inline int bridge_rx(struct xdp_md *ctx, const struct tna_iface *in)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ethhdr *eth = data;
	__u32 ingress = ctx->ingress_ifindex, bridge;
	const struct tna_brport *port;
	struct tna_fdb_entry *src, *dst;
	const struct tna_iface *br;

	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	if (invalid_source(eth->h_source))
		return punt(ctx, in->slot, TNA_PUNT_MARTIAN);
	if (link_local_group(eth->h_dest))
		return punt(ctx, in->slot, TNA_PUNT_LINK_LOCAL_GROUP);
	port = brport_lookup(ingress);
	if (!port || !(port->flags & TNA_BRPORT_FORWARDING))	/* learning state: learn + drop */
		return punt(ctx, in->slot, TNA_PUNT_PORT_STATE);
	if (port->flags & TNA_BRPORT_PUNT)
		return punt(ctx, in->slot, TNA_PUNT_PORT_FLAGS);
	if (eth->h_proto == ETH_P_8021Q_BE || eth->h_proto == ETH_P_8021AD_BE)
		return punt(ctx, in->slot, TNA_PUNT_TAGGED);
	bridge = port->bridge;

	/* br_fdb_update(): the kernel learns from every frame; only a source it already knows on
	 * this port needs nothing but the refresh we note on success. */
	src = fdb_lookup(bridge, eth->h_source);
	if (!src || (src->flags & (TNA_FDB_LOCAL | TNA_FDB_MOVED)))
		return punt(ctx, in->slot, TNA_PUNT_LEARN);
	if (src->port != ingress) {
		if (!(src->flags & TNA_FDB_STICKY))
			fdb_mark_moved(bridge, eth->h_source, src);
		return punt(ctx, in->slot, TNA_PUNT_LEARN);
	}

	if (eth->h_dest[0] & 1)
		return punt(ctx, in->slot, broadcast(eth->h_dest) ? TNA_PUNT_BROADCAST
								 : TNA_PUNT_L2_MULTICAST);
	dst = fdb_lookup(bridge, eth->h_dest);
	if (!dst || (dst->flags & TNA_FDB_MOVED))
		return punt(ctx, in->slot, TNA_PUNT_UNKNOWN_UNICAST);
	if (dst->flags & TNA_FDB_LOCAL) {
		if (tna_features.ipv4_router || tna_features.ipv6_router) {
			br = iface_lookup(bridge);
			if (br && mac_equal(eth->h_dest, br->mac))
				return bridge_route(ctx, in, bridge, eth->h_proto, src);
		}
		return punt(ctx, in->slot, TNA_PUNT_BRIDGE_LOCAL);
	}
	if (dst->port == ingress)	/* dropped unless hairpin (hairpin ports are punted) */
		return punt(ctx, in->slot, TNA_PUNT_SAME_IFACE);
	return bridge_forward(ctx, in, bridge, dst->port, src);
}

#endif
