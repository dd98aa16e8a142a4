// SPDX-License-Identifier: GPL-2.0
/*
 * "Speed of light" reference (tna bench): what XDP redirect can do on a path with no lookup at
 * all. The egress and the new MACs are fixed at load time; the program only does the rewrite
 * a router must do (TTL/hop limit, IPv4 checksum, MACs) and redirects. A bridge reference
 * sets rewrite_l2 = rewrite_l3 = 0: frames leave unchanged.
 *
 * bench_fib is the next reference up: the same rewrite, but egress and MACs come from
 * bpf_fib_lookup(), as in any XDP router; no other check, no map, no counter. Between it and
 * TNA lies exactly what TNA adds to stay equivalent to Linux (checks, eligibility, counters).
 */

#include "lib/common.h"

struct bench_sol_cfg {
	__u8 dmac[ETH_ALEN];
	__u8 smac[ETH_ALEN];
	__u32 ifindex;		/* egress */
	__u8 rewrite_l2;	/* set the MACs */
	__u8 rewrite_l3;	/* decrement TTL / hop limit */
	__u8 pad[2];
};

const volatile struct bench_sol_cfg bench_sol_cfg SEC(".rodata.cfg") = {};

SEC("xdp")
int bench_sol(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
	if (bench_sol_cfg.rewrite_l3 && eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);
		__u32 check;

		if ((void *)(iph + 1) > end)
			return XDP_DROP;
		check = iph->check;	/* as ip_decrease_ttl() */
		check += bpf_htons(0x0100);
		iph->check = (__sum16)(check + (check >= 0xFFFF));
		iph->ttl--;
	} else if (bench_sol_cfg.rewrite_l3 && eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = (void *)(eth + 1);

		if ((void *)(ip6h + 1) > end)
			return XDP_DROP;
		ip6h->hop_limit--;
	}
	if (bench_sol_cfg.rewrite_l2) {
#pragma unroll
		for (int i = 0; i < ETH_ALEN; i++) {
			eth->h_dest[i] = bench_sol_cfg.dmac[i];
			eth->h_source[i] = bench_sol_cfg.smac[i];
		}
	}
	return bpf_redirect(bench_sol_cfg.ifindex, 0);
}

SEC("xdp")
int bench_fib(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6h;
	struct iphdr *iph;
	__u32 check;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	fib.ifindex = ctx->ingress_ifindex;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		iph = (void *)(eth + 1);
		if ((void *)(iph + 1) > end || iph->ttl <= 1)
			return XDP_PASS;
		fib.family = AF_INET;
		fib.tos = iph->tos;
		fib.l4_protocol = iph->protocol;
		fib.tot_len = bpf_ntohs(iph->tot_len);
		fib.ipv4_src = iph->saddr;
		fib.ipv4_dst = iph->daddr;
		if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		check = iph->check;
		check += bpf_htons(0x0100);
		iph->check = (__sum16)(check + (check >= 0xFFFF));
		iph->ttl--;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		ip6h = (void *)(eth + 1);
		if ((void *)(ip6h + 1) > end || ip6h->hop_limit <= 1)
			return XDP_PASS;
		fib.family = AF_INET6;
		fib.l4_protocol = ip6h->nexthdr;
		fib.tot_len = bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h);
		__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
		__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));
		if (bpf_fib_lookup(ctx, &fib, sizeof(fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
			return XDP_PASS;
		ip6h->hop_limit--;
	} else {
		return XDP_PASS;
	}
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	return bpf_redirect(fib.ifindex, 0);
}

char _license[] SEC("license") = "GPL";
