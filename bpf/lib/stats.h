/* SPDX-License-Identifier: GPL-2.0 */
/* Per-CPU counters: every verdict is counted under a code of enum tna_code. */
#ifndef TNA_LIB_STATS_H
#define TNA_LIB_STATS_H

#include "common.h"
#include "maps.h"
#include "monitor.h"

/* One more packet of ``bytes`` in a per-CPU array of struct tna_counter. */
static __always_inline void counter_add(void *map, __u32 key, __u64 bytes)
{
	struct tna_counter *c = bpf_map_lookup_elem(map, &key);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
}

static __always_inline void count(__u32 slot, enum tna_code code, __u64 bytes)
{
	counter_add(&tna_stats, slot * TNA_NR_CODES + code, bytes);
}

/* Hand the frame to the kernel and say why (also to tna monitor, while one watches). */
static __always_inline int punt(struct xdp_md *ctx, __u32 slot, enum tna_code reason)
{
	count(slot, reason, frame_end(ctx) - frame_start(ctx));
	monitor_note(ctx, reason);
	return XDP_PASS;
}

#endif
