// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark traffic generator (tna bench). Run through BPF_PROG_TEST_RUN in live-frames mode
 * on the sender's veth: every frame it returns XDP_TX for leaves that veth towards the device
 * under test. Live-frames pages are recycled without being copied again, and the device under
 * test rewrites headers (TTL, MACs), so the first BENCH_HDR_LEN bytes are written from the
 * template on every frame. The payload behind them is never touched by anyone.
 *
 * Many-flows: a 32-bit big-endian field (an IPv4 destination, the low part of a destination
 * MAC) takes var_count consecutive values from var_base, one per frame; the IPv4 header
 * checksum is then recomputed (the frames of that mode carry UDP checksum 0, legal for IPv4).
 */
#include "lib/common.h"

#define BENCH_HDR_LEN 64	/* every generated frame is at least this long */

struct bench_gen_cfg {
	__u64 hdr[BENCH_HDR_LEN / 8];	/* the frame's first bytes, as they must leave */
	__u32 var_off;			/* offset of the varied field; 0: no variation */
	__u32 var_count;		/* distinct values; < 2: no variation */
	__u32 var_base;			/* first value, host order */
	__u32 ip_off;			/* offset of an IPv4 header to re-checksum; 0: none */
};

const volatile struct bench_gen_cfg bench_gen_cfg SEC(".rodata.cfg") = {};

/* Next variation index. The generator runs on one CPU, so a plain global is enough. */
__u32 bench_gen_seq = 0;

static __always_inline void ipv4_checksum(struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

	iph->check = 0;
#pragma unroll
	for (int i = 0; i < (int)sizeof(*iph) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	iph->check = (__sum16)~sum;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u64 *words = data;
	__u32 off, seq;

	if (data + BENCH_HDR_LEN > end)
		return XDP_ABORTED;
#pragma unroll
	for (int i = 0; i < BENCH_HDR_LEN / 8; i++)
		words[i] = bench_gen_cfg.hdr[i];

	if (bench_gen_cfg.var_count < 2)
		return XDP_TX;
	off = bench_gen_cfg.var_off;
	if (off > BENCH_HDR_LEN - 4)
		return XDP_ABORTED;
	seq = bench_gen_seq;
	bench_gen_seq = seq + 1 >= bench_gen_cfg.var_count ? 0 : seq + 1;
	*(__be32 *)(data + off) = bpf_htonl(bench_gen_cfg.var_base + seq);

	off = bench_gen_cfg.ip_off;
	if (off) {
		struct iphdr *iph;

		if (off > BENCH_HDR_LEN - sizeof(*iph))
			return XDP_ABORTED;
		iph = data + off;
		ipv4_checksum(iph);
	}
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
