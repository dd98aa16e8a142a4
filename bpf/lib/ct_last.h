/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Conntrack's retransmission counter around fast segments (layouts in tna_abi.h, the design in
 * docs/stateful.md, "The retransmission counter"). tcp_in_window() remembers the last in-window
 * ACK_SET segment of a connection and counts its identical repeats; tcp_packet() shortens the
 * timeout from nf_conntrack_tcp_max_retrans repeats on. The kernel does not see what the fast
 * path forwards, so for every fast segment the shared map tna_ct_last keeps what Linux alone
 * would remember (``truth``) beside a snapshot of the kernel's own values (``kernel``): while
 * the kernel's values still equal the snapshot, no segment reached the kernel since, and the
 * truth holds; once they differ, the kernel saw a segment, and its values are the truth again.
 */
#ifndef TNA_LIB_CT_LAST_H
#define TNA_LIB_CT_LAST_H

#include "common.h"

/*
 * LRU: nothing tells the fast path that a connection ended, so entries of closed connections
 * must go by themselves. An evicted entry of a live connection costs exactness only if the
 * kernel's values are stale (a fast segment since the last one the kernel saw): its next fast
 * segment then counts from the kernel's values, as before this map existed.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, TNA_CT_LAST_ENTRIES);
	__type(key, struct tna_ct_last_key);
	__type(value, struct tna_ct_last);
} tna_ct_last SEC(".maps");

/* What the conntrack step hands ct_last_count(), in the per-CPU scratch (no stack). */
struct ct_last_work {
	struct tna_ct_last_key key;	/* the entry's original-direction tuple */
	struct tna_ct_last val;		/* kernel: its values now; truth: filled here */
	struct tna_ct_seg seg;		/* the fast segment (retrans unused) */
	__u32 in_window;		/* tcp_in_window() takes it in (and checks it for a repeat);
					 * only a liberal sender's segment can be outside */
};

/* Same segment for tcp_in_window()'s retransmission check: direction, seq, ack, end, window. */
static __always_inline int ct_seg_same(const struct tna_ct_seg *a, const struct tna_ct_seg *b)
{
	return a->dir == b->dir && a->seq == b->seq && a->ack == b->ack && a->end == b->end &&
	       a->win == b->win;
}

/* ct_last_count()'s result: the count in the low byte, and this flag */
#define CT_LAST_WIN0 0x100	/* the remembered segment's window is 0 (tcp_packet()'s
				 * last_win == 0 rule) */

/*
 * The retransmission count Linux alone has after the fast segment w->seg (the kernel's values
 * in w->val.kernel), recorded in tna_ct_last, with CT_LAST_WIN0; -1 when it cannot be recorded
 * (the map refused a new entry): the segment must then go to Linux, which is exact, as the
 * kernel's values are then the truth. Out of the window, tcp_in_window() remembers nothing:
 * the count and the remembered segment stay.
 */
static __always_inline int ct_last_count(struct ct_last_work *w)
{
	struct tna_ct_last *sh = bpf_map_lookup_elem(&tna_ct_last, &w->key);
	const struct tna_ct_seg *t = &w->val.kernel;
	struct tna_ct_seg *out = &w->val.truth;
	__u8 count;

	if (sh && ct_seg_same(&sh->kernel, t) && sh->kernel.retrans == t->retrans)
		t = &sh->truth;		/* no segment reached the kernel since the last fast one */
	if (!w->in_window)
		return t->retrans | (t->win ? 0 : CT_LAST_WIN0);
	count = ct_seg_same(t, &w->seg) ? t->retrans + 1 : 0;	/* u8: wraps as the kernel's */
	if (sh) {		/* in place: no allocation on the steady path */
		out = &sh->truth;
		sh->kernel = w->val.kernel;
	}
	out->seq = w->seg.seq;
	out->ack = w->seg.ack;
	out->end = w->seg.end;
	out->win = w->seg.win;
	out->dir = w->seg.dir;
	out->retrans = count;
	if (!sh && bpf_map_update_elem(&tna_ct_last, &w->key, &w->val, BPF_NOEXIST))
		return -1;
	return count | (w->seg.win ? 0 : CT_LAST_WIN0);
}

#endif
