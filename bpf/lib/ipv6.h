/* SPDX-License-Identifier: GPL-2.0 */
/* IPv6 forwarding: the checks ipv6_rcv()/ip6_forward() make, FIB lookup, rewrite. */
#ifndef TNA_LIB_IPV6_H
#define TNA_LIB_IPV6_H

#include "fib.h"
#include "ipv4.h"

#define IPV6_FLOWINFO_MASK bpf_htonl(0x0FFFFFFF)

/* Extension headers Linux may act on while forwarding (hop-by-hop first of all). */
static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:		/* hop-by-hop options: router alert, jumbograms */
	case 43:	/* routing */
	case 44:	/* fragment */
	case 51:	/* authentication header */
	case 60:	/* destination options */
	case 135:	/* mobility */
	case 139:	/* HIP */
	case 140:	/* shim6 */
	case 253:
	case 254:	/* experimental */
		return 1;
	}
	return 0;
}

/* Addresses ip6_forward() refuses or treats specially; 0 for ordinary unicast. */
static __always_inline enum tna_code ipv6_addr_check(const struct in6_addr *a)
{
	__u32 w0 = bpf_ntohl(a->in6_u.u6_addr32[0]);

	if ((w0 >> 24) == 0xff)				/* multicast */
		return TNA_PUNT_MARTIAN;
	if ((w0 & 0xffc00000) == 0xfe800000)		/* fe80::/10 */
		return TNA_PUNT_LINK_LOCAL;
	if (w0 == 0 && a->in6_u.u6_addr32[1] == 0)	/* ::, ::1, v4-mapped, v4-compatible */
		return TNA_PUNT_MARTIAN;
	return 0;
}

static __always_inline enum tna_code ipv6_check(const struct ipv6hdr *ip6h, __u32 frame_len)
{
	enum tna_code why;

	if (ip6h->version != 6)
		return TNA_PUNT_MALFORMED;
	if (bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h) + sizeof(struct ethhdr) > frame_len)
		return TNA_PUNT_BAD_LENGTH;
	if (ipv6_is_ext(ip6h->nexthdr))
		return TNA_PUNT_IPV6_EXT;
	why = ipv6_addr_check(&ip6h->saddr);
	if (!why)
		why = ipv6_addr_check(&ip6h->daddr);
	if (why)
		return why;
#ifndef TNA_BROKEN_SKIP_TTL_CHECK
	if (ip6h->hop_limit <= 1)
		return TNA_PUNT_TTL;
#endif
	return 0;
}

/* ``ingress``: the L3 input device: the receiving interface, or the bridge of a bridge port. */
static __always_inline int ipv6_forward(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 ingress)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);
	__u32 tx = 0, wire_len;
	struct bpf_fib_lookup fib = {};
	const struct tna_iface *out;
	struct l2_saved saved;
	enum tna_code why;
	int rc;

	if ((void *)(ip6h + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	why = ipv6_check(ip6h, end - data);
	if (why)
		return punt(ctx, in->slot, why);

	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6h & IPV6_FLOWINFO_MASK;
	fib.l4_protocol = ip6h->nexthdr;
	wire_len = sizeof(struct ethhdr) + sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	fib.tot_len = wire_len - sizeof(struct ethhdr);
	fib.ifindex = ingress;
	__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));
	l4_ports(&fib, ip6h + 1, end);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return punt(ctx, in->slot, fib_punt_reason(rc));
	if (over_route_mtu(sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len), 1))
		return punt(ctx, in->slot, TNA_PUNT_FRAG_NEEDED);
	out = egress_port(&fib, ingress, &tx, &why, 0);  /* IPv6 routers ignore redirects */
	if (!out)
		return punt(ctx, in->slot, why);
	if (tna_features.verify_l4_csum) {
		__u32 l4_len = bpf_ntohs(ip6h->payload_len);

		if (!l4_verifiable(ip6h->nexthdr) && ip6h->nexthdr != IPPROTO_ICMPV6)
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
		if (l4_verifiable(ip6h->nexthdr) &&
		    !l4_csum_complete(ctx, sizeof(struct ethhdr) + sizeof(*ip6h), l4_len,
				      pseudo_v6(ip6h, l4_len)))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	}
	if (tna_features.firewall_ipv6) {
		rc = fw_hook(ctx, in->slot, 1, ingress, fib.ifindex, wire_len);
		if (rc >= 0)
			return rc;
	}

	/* fib.tot_len now holds the egress MTU (it shares a union with mtu_result) */
	if (trim_to(ctx, wire_len))
		return punt(ctx, in->slot, TNA_PUNT_BAD_LENGTH);
	data = frame_start(ctx);
	end = frame_end(ctx);
	ip6h = data + sizeof(struct ethhdr);
	if ((void *)(ip6h + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	/* routed into a bridge: the port's MTU may be below the bridge's (is_skb_forwardable) */
	if (tna_features.bridge_egress && tx != fib.ifindex && !fits_mtu(ctx, tx))
		return punt(ctx, in->slot, TNA_PUNT_TOO_BIG);

	ip6h->hop_limit--;
	rewrite_macs(data, &fib, &saved);
	if (send(tx, in->slot, out->slot, wire_len) == XDP_REDIRECT)
		return XDP_REDIRECT;
	restore_macs(data, &saved);
	ip6h->hop_limit++;
	return punt(ctx, in->slot, TNA_PUNT_EGRESS);
}

#endif
