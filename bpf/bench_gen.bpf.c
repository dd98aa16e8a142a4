// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark traffic generator (tna bench). Run through BPF_PROG_TEST_RUN in live-frames mode
 * on the sender's veth: every frame it returns XDP_TX for leaves that veth towards the device
 * under test. Live-frames pages are recycled without being copied again, and the device under
 * test rewrites headers (TTL, MACs), so the first BENCH_HDR_LEN bytes are written from the
 * template on every frame. The payload behind them is never touched by anyone.
 *
 * Many-flows: a 32-bit big-endian field (an IPv4 destination, the low part of a destination
 * MAC) takes var_count consecutive values from var_base, one per frame, and the checksums that
 * cover it (IPv4 header, UDP via the pseudo-header) are updated incrementally (RFC 1624), so
 * every frame is as valid as the template.
 */
#include "lib/common.h"

#define BENCH_HDR_LEN 64	/* every generated frame is at least this long */

struct bench_gen_cfg {
	__u64 hdr[BENCH_HDR_LEN / 8];	/* the frame's first bytes, as they must leave */
	__u32 var_off;			/* offset of the varied field; 0: no variation */
	__u32 var_count;		/* distinct values; < 2: no variation */
	__u32 var_base;			/* first value, host order */
	__u16 csum_off[2];		/* checksums covering the field; 0: none */
	__u8 csum_udp[2];		/* 1: a UDP checksum (a result of 0 is sent as 0xffff) */
	__u8 pad[6];			/* explicit: the struct is a multiple of 8 bytes */
};

const volatile struct bench_gen_cfg bench_gen_cfg SEC(".rodata.cfg") = {};

/* Next variation index. The generator runs on one CPU, so a plain global is enough. */
__u32 bench_gen_seq = 0;

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 32-bit field that went from old to new. */
static __always_inline void csum_replace4(__u16 *check, __u32 old, __u32 new, int udp)
{
	__u32 sum = (__u16)~*check;

	sum += (__u16)~old + (__u16)~(old >> 16) + (new & 0xffff) + (new >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	*check = (__u16)~sum;
	if (udp && *check == 0)
		*check = 0xffff;
}

/* Update the checksum at off (if any) of the frame for the field change old -> new. */
static __always_inline int fix_csum(void *data, void *end, __u32 off, __u32 old, __u32 new,
				    int udp)
{
	__u16 *check;

	if (!off)
		return 0;
	if (off > BENCH_HDR_LEN - sizeof(*check))
		return -1;
	check = data + off;
	if ((void *)(check + 1) > end)
		return -1;
	csum_replace4(check, old, new, udp);
	return 0;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u64 *words = data;
	__u32 off, seq, old_be, new_be;

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
	old_be = bpf_htonl(bench_gen_cfg.var_base);	/* what the template holds */
	new_be = bpf_htonl(bench_gen_cfg.var_base + seq);
	*(__be32 *)(data + off) = new_be;
	if (fix_csum(data, end, bench_gen_cfg.csum_off[0], old_be, new_be,
		     bench_gen_cfg.csum_udp[0]) ||
	    fix_csum(data, end, bench_gen_cfg.csum_off[1], old_be, new_be,
		     bench_gen_cfg.csum_udp[1]))
		return XDP_ABORTED;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
