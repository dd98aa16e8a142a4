/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What both benchmark traffic sources share (bench_gen.bpf.c: XDP live frames;
 * bench_skbgen.bpf.c: skbs through bpf_clone_redirect()): the template and the per-frame
 * variation of a 32-bit field (consecutive values, or a fixed step apart) with incremental
 * checksum updates (RFC 1624), written into the first BENCH_HDR_LEN bytes of every frame
 * before it leaves.
 */
#ifndef TNA_BENCH_GEN_H
#define TNA_BENCH_GEN_H

#include "lib/common.h"

#define BENCH_HDR_LEN 64	/* every generated frame is at least this long */

struct bench_gen_cfg {
	__u64 hdr[BENCH_HDR_LEN / 8];	/* the frame's first bytes, as they must leave */
	__u32 var_off;			/* offset of the varied field; 0: no variation */
	__u32 var_count;		/* distinct values; < 2: no variation */
	__u32 var_base;			/* first value, host order */
	__u16 csum_off[2];		/* checksums covering the field; 0: none */
	__u8 csum_udp[2];		/* 1: a UDP checksum (a result of 0 is sent as 0xffff) */
	__u8 pad[2];			/* explicit: the struct is a multiple of 8 bytes */
	__u32 var_step;			/* the value grows by this per frame; 0 means 1 */
};

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

/* Next variation index. A source runs on one CPU, so a plain global is enough. */
__u32 bench_gen_seq = 0;

/*
 * Write the template into the frame and vary its field; 0, or -1 for a frame too short or a
 * configuration out of bounds. The template is written every time: live-frames pages are
 * recycled without being copied again, and the skb source's buffer keeps the previous
 * frame's variation.
 */
static __always_inline int bench_gen_write(void *data, void *end,
					   const volatile struct bench_gen_cfg *cfg)
{
	__u64 *words = data;
	__u32 off, seq, old_be, new_be;

	if (data + BENCH_HDR_LEN > end)
		return -1;
#pragma unroll
	for (int i = 0; i < BENCH_HDR_LEN / 8; i++)
		words[i] = cfg->hdr[i];

	if (cfg->var_count < 2)
		return 0;
	off = cfg->var_off;
	if (off > BENCH_HDR_LEN - 4)
		return -1;
	seq = bench_gen_seq;
	bench_gen_seq = seq + 1 >= cfg->var_count ? 0 : seq + 1;
	old_be = bpf_htonl(cfg->var_base);	/* what the template holds */
	new_be = bpf_htonl(cfg->var_base + seq * (cfg->var_step ? cfg->var_step : 1));
	*(__be32 *)(data + off) = new_be;
	if (fix_csum(data, end, cfg->csum_off[0], old_be, new_be, cfg->csum_udp[0]) ||
	    fix_csum(data, end, cfg->csum_off[1], old_be, new_be, cfg->csum_udp[1]))
		return -1;
	return 0;
}

#endif
