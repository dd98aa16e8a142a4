/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tna run --tcp-liberal: the programs' side of marking connections liberal (layouts and rules
 * in tna_abi.h, the design in docs/stateful.md). The conntrack step names an established TCP
 * connection whose segment only window tracking keeps off the fast path; once the rest of the
 * pipeline said it would forward the segment, the segment still goes to Linux and the tuple
 * goes into tna_liberal_req, for the daemon. Only the punt path reaches this.
 */
#ifndef TNA_LIB_CT_LIBERAL_H
#define TNA_LIB_CT_LIBERAL_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TNA_LIBERAL_RING_BYTES);
} tna_liberal_req SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_liberal_stats);
} tna_liberal_cnt SEC(".maps");

/* Put one request in the ring, counted; a full ring (nobody reading) loses it, counted too. */
static __always_inline void liberal_ask(const struct tna_liberal_req *req)
{
	__u32 zero = 0;
	struct tna_liberal_stats *st = bpf_map_lookup_elem(&tna_liberal_cnt, &zero);

	if (bpf_ringbuf_output(&tna_liberal_req, (void *)req, sizeof(*req), 0)) {
		if (st)
			st->lost++;
	} else if (st) {
		st->requested++;
	}
}

#endif
