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
 * An array of buckets, the bucket a hash of the connection's tuple: the lookup is a few
 * instructions, where a hash map's costs a call and a hash over the 40-byte key on every fast
 * segment. A record is never evicted while it holds something only it knows: a connection
 * whose bucket is taken by others (tna_ct_last_held()) has its segments go to Linux.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_CT_LAST_BUCKETS);
	__type(key, __u32);
	__type(value, struct tna_ct_last_bucket);
} tna_ct_last SEC(".maps");

/* What the conntrack step hands ct_last_count(), in the per-CPU scratch (no stack). */
struct ct_last_work {
	struct tna_ct_last val;		/* key: the entry's original-direction tuple; kernel: its
					 * values now; truth: filled here */
	struct tna_ct_seg seg;		/* the fast segment (retrans unused) */
	__u32 in_window;		/* tcp_in_window() takes it in (and checks it for a repeat);
					 * only a liberal sender's segment can be outside */
};

struct ct_work;

/* Whether way ``way`` of bucket ``bucket`` still holds what only it knows (conntrack.h). */
int tna_ct_last_held(struct xdp_md *ctx, struct ct_work *w, __u32 bucket, __u32 way);

#define CT_LAST_KEY_WORDS (sizeof(struct tna_ct_last_key) / 4)

/* The bucket of a tuple: multiplicative hashing, a word at a time; the top bits mix them all. */
static __always_inline __u32 ct_last_bucket(const struct tna_ct_last_key *k)
{
	const __u32 *word = (const __u32 *)k;
	__u32 h = 0;

#pragma unroll
	for (int i = 0; i < CT_LAST_KEY_WORDS; i++)
		h = (h ^ word[i]) * 0x9e3779b1;
	return h >> (32 - TNA_CT_LAST_BUCKET_BITS);
}

static __always_inline int ct_last_key_same(const struct tna_ct_last_key *a,
					    const struct tna_ct_last_key *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;
	__u32 diff = 0;

#pragma unroll
	for (int i = 0; i < CT_LAST_KEY_WORDS; i++)
		diff |= x[i] ^ y[i];
	return !diff;
}

/* Same segment for tcp_in_window()'s retransmission check: direction, seq, ack, end, window. */
static __always_inline int ct_seg_same(const struct tna_ct_seg *a, const struct tna_ct_seg *b)
{
	return a->dir == b->dir && a->seq == b->seq && a->ack == b->ack && a->end == b->end &&
	       a->win == b->win;
}

/* The kernel's values still those of a record's snapshot: no segment reached it since. */
static __always_inline int ct_snapshot_same(const struct tna_ct_seg *a,
					    const struct tna_ct_seg *b)
{
	return ct_seg_same(a, b) && a->retrans == b->retrans;
}

/* ct_last_count()'s result: the count in the low byte, and this flag */
#define CT_LAST_WIN0 0x100	/* the remembered segment's window is 0 (tcp_packet()'s
				 * last_win == 0 rule) */

/*
 * The way a connection without a record may write its own into: a free one, or one whose record
 * nothing needs any more (its connection gone, or seen by the kernel since); -1 if none.
 */
static __always_inline int ct_last_way_for(struct xdp_md *ctx, struct ct_work *cw,
					   const struct tna_ct_last_bucket *b, __u32 bucket)
{
#pragma unroll
	for (int i = 0; i < TNA_CT_LAST_WAYS; i++)
		if (!b->way[i].key.family)
			return i;
#pragma unroll
	for (int i = 0; i < TNA_CT_LAST_WAYS; i++)
		if (!tna_ct_last_held(ctx, cw, bucket, i))
			return i;
	return -1;
}

/*
 * The retransmission count Linux alone has after the fast segment w->seg (the kernel's values
 * in w->val.kernel, the connection in w->val.key), recorded in tna_ct_last, with CT_LAST_WIN0;
 * -1 when it cannot be recorded (both ways of its bucket hold other live connections' records):
 * the segment must then go to Linux, which is exact, as without a record the kernel's values are
 * the truth. Out of the window, tcp_in_window() remembers nothing: the count and the remembered
 * segment stay.
 */
static __always_inline int ct_last_count(struct xdp_md *ctx, struct ct_work *cw,
					 struct ct_last_work *w)
{
	__u32 bucket = ct_last_bucket(&w->val.key);
	struct tna_ct_last_bucket *b = bpf_map_lookup_elem(&tna_ct_last, &bucket);
	const struct tna_ct_seg *t = &w->val.kernel;
	struct tna_ct_last *rec = NULL;
	__u8 count;
	int way;

	if (!b)
		return -1;
#pragma unroll
	for (int i = 0; i < TNA_CT_LAST_WAYS; i++)
		if (ct_last_key_same(&b->way[i].key, &w->val.key))
			rec = &b->way[i];
	if (rec && ct_snapshot_same(&rec->kernel, t))
		t = &rec->truth;	/* no segment reached the kernel since the last fast one */
	if (!w->in_window)
		return t->retrans | (t->win ? 0 : CT_LAST_WIN0);
	count = ct_seg_same(t, &w->seg) ? t->retrans + 1 : 0;	/* u8: wraps as the kernel's */
	if (!rec) {
		way = ct_last_way_for(ctx, cw, b, bucket);
		if (way < 0)
			return -1;
		rec = &b->way[way & (TNA_CT_LAST_WAYS - 1)];
		rec->key = w->val.key;
	}
	rec->kernel = w->val.kernel;
	rec->truth.seq = w->seg.seq;
	rec->truth.ack = w->seg.ack;
	rec->truth.end = w->seg.end;
	rec->truth.win = w->seg.win;
	rec->truth.dir = w->seg.dir;
	rec->truth.retrans = count;
	return count | (w->seg.win ? 0 : CT_LAST_WIN0);
}

#endif
