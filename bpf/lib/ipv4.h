/* SPDX-License-Identifier: GPL-2.0 */
/* IPv4 forwarding: the checks ip_rcv()/ip_forward() make, FIB lookup, rewrite. */
#ifndef TNA_LIB_IPV4_H
#define TNA_LIB_IPV4_H

#include "fib.h"
#include "l4csum.h"
#include "firewall.h"

extern const volatile struct tna_features tna_features;

static __always_inline int ipv4_csum_ok(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)sizeof(*iph) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
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
#ifndef TNA_BROKEN_SKIP_CSUM_CHECK	/* test-only build: the equivalence suite must notice */
	if (!ipv4_csum_ok(iph))
		return TNA_PUNT_BAD_CSUM;
#endif
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return TNA_PUNT_FRAGMENT;
	if (ipv4_martian(iph->saddr) || ipv4_martian(iph->daddr))
		return TNA_PUNT_MARTIAN;
#ifndef TNA_BROKEN_SKIP_TTL_CHECK	/* test-only build: the equivalence suite must notice */
	if (iph->ttl <= 1)
		return TNA_PUNT_TTL;
#endif
	return 0;
}

/*
 * rp_filter as fib_validate_source() does it: strict (1) wants the route back to the source to
 * leave through the ingress interface, loose (2) wants any unicast route back. Anything we
 * cannot prove passes goes to Linux, which makes the real decision.
 */
static __always_inline int ipv4_rp_ok(struct xdp_md *ctx, const struct iphdr *iph, __u32 ingress)
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
	return tna_features.ipv4_rp_filter == 2 || rev.ifindex == ingress;
}

/* Ports for fib rules that select on them (ipproto/sport/dport); 0 when absent. */
static __always_inline void l4_ports(struct bpf_fib_lookup *fib, const void *l4, const void *end)
{
	const __be16 *ports = l4;

	if (fib->l4_protocol != IPPROTO_TCP && fib->l4_protocol != IPPROTO_UDP &&
	    fib->l4_protocol != IPPROTO_SCTP)
		return;
	if ((const void *)(ports + 2) > end)
		return;
	fib->sport = ports[0];
	fib->dport = ports[1];
}

/* Same arithmetic as the kernel's ip_decrease_ttl(), so the checksum bytes match. */
static __always_inline void ipv4_decrease_ttl(struct iphdr *iph)
{
	__u32 check = iph->check;

	check += bpf_htons(0x0100);
	iph->check = (__sum16)(check + (check >= 0xFFFF));
	iph->ttl--;
}

/* ``ingress``: the L3 input device: the receiving interface, or the bridge of a bridge port. */
static __always_inline int ipv4_forward(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 ingress)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct iphdr *iph = data + sizeof(struct ethhdr);
	__u32 tx = 0, wire_len;
	struct bpf_fib_lookup fib = {};
	const struct tna_iface *out;
	struct l2_saved saved;
	__u8 old_ttl;
	__sum16 old_check;
	enum tna_code why;
	int rc;

	if ((void *)(iph + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	why = ipv4_check(iph, end - data);
	if (why)
		return punt(ctx, in->slot, why);
	if (src_denied(iph->saddr))
		return punt(ctx, in->slot, TNA_PUNT_MARTIAN);
	if (tna_features.ipv4_rp_filter && !ipv4_rp_ok(ctx, iph, ingress))
		return punt(ctx, in->slot, TNA_PUNT_RP_FILTER);

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ifindex = ingress;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	l4_ports(&fib, iph + 1, end);
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return punt(ctx, in->slot, fib_punt_reason(rc));
	if (over_route_mtu(bpf_ntohs(iph->tot_len), 0))
		return punt(ctx, in->slot, TNA_PUNT_FRAG_NEEDED);
	/* bpf_fib_lookup() put the gateway, if any, in ipv4_dst */
	out = egress_port(&fib, ingress, &tx, &why, fib.ipv4_dst != iph->daddr);
	if (!out)
		return punt(ctx, in->slot, why);
	wire_len = sizeof(struct ethhdr) + bpf_ntohs(iph->tot_len);
	if (tna_features.verify_l4_csum) {
		__u32 l4_len = wire_len - sizeof(struct ethhdr) - sizeof(*iph);

		if (!l4_verifiable(iph->protocol) && iph->protocol != IPPROTO_ICMP)
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
		if (l4_verifiable(iph->protocol) &&
		    !l4_csum_complete(ctx, sizeof(struct ethhdr) + sizeof(*iph), l4_len,
				      pseudo_v4(iph, l4_len)))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	}
	if (tna_features.firewall_ipv4) {
		rc = fw_hook(ctx, in->slot, 0, ingress, fib.ifindex, wire_len);
		if (rc >= 0)
			return rc;
	}

	if (trim_to(ctx, wire_len))
		return punt(ctx, in->slot, TNA_PUNT_BAD_LENGTH);
	data = frame_start(ctx);
	end = frame_end(ctx);
	iph = data + sizeof(struct ethhdr);
	if ((void *)(iph + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	/* routed into a bridge: the port's MTU may be below the bridge's (is_skb_forwardable) */
	if (tna_features.bridge_egress && tx != fib.ifindex && !fits_mtu(ctx, tx))
		return punt(ctx, in->slot, TNA_PUNT_TOO_BIG);

	old_ttl = iph->ttl;
	old_check = iph->check;
	ipv4_decrease_ttl(iph);
	rewrite_macs(data, &fib, &saved);
	if (send(tx, in->slot, out->slot, wire_len) == XDP_REDIRECT)
		return XDP_REDIRECT;
	restore_macs(data, &saved);
	iph->ttl = old_ttl;
	iph->check = old_check;
	return punt(ctx, in->slot, TNA_PUNT_EGRESS);
}

#endif
