/* SPDX-License-Identifier: GPL-2.0 */
/*
 * tna monitor's kernel side: a copy of the start of punted (and, on request, firewall-dropped)
 * frames in a ring buffer, while someone watches (layouts and rules in tna_abi.h).
 *
 * Only the punt and drop paths call monitor_note(); the forwarded path never does. With nobody
 * watching, the cost there is one inlined array read and a compare with zero. A monitor that
 * died without clearing the switch leaves a deadline at most TNA_MON_TTL_MS ahead; the first
 * punt after it clears the switch, and from then on it costs nothing again.
 */
#ifndef TNA_LIB_MONITOR_H
#define TNA_LIB_MONITOR_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_mon_ctl);
} tna_mon_ctl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_mon_state);
} tna_mon_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TNA_MON_RING_BYTES);
} tna_mon_ring SEC(".maps");

#define TNA_MON_WINDOW_NS 1000000000ULL

/* Whether this CPU may emit one more event now (the window's budget), and the accounting. */
static __always_inline struct tna_mon_state *mon_budget(__u64 now, __u32 rate)
{
	__u32 zero = 0;
	struct tna_mon_state *st = bpf_map_lookup_elem(&tna_mon_state, &zero);

	if (!st)
		return NULL;
	if (now - st->window_ns >= TNA_MON_WINDOW_NS) {
		st->window_ns = now;
		st->sent = 0;
	}
	if (st->sent >= rate) {
		st->suppressed++;
		return NULL;
	}
	st->sent++;
	return st;
}

/*
 * Fill a reserved record. Not inlined, so that struct tna_mon_event is in the object's BTF
 * (tests/bpf/test_abi.py checks the header's layouts against it).
 */
static __attribute__((noinline)) void mon_fill(struct xdp_md *ctx, struct tna_mon_event *e,
					       __u64 now, __u32 code)
{
	__u32 len = ctx->data_end - ctx->data;
	__u64 snap = len < TNA_MON_SNAP ? len : TNA_MON_SNAP;	/* 64 bits: see below */

	/* keep the compiler from checking a copy: the verifier must see the bound on this one */
	asm volatile("" : "+r"(snap));
	e->ts_ns = now;
	e->ifindex = ctx->ingress_ifindex;
	e->len = len;
	e->code = code;
	e->pad = 0;
	if (snap == 0 || snap > TNA_MON_SNAP || bpf_xdp_load_bytes(ctx, 0, e->frame, snap))
		snap = 0;
	e->snap = snap;
}

/*
 * The slow part, verified once on its own (a global function): the switch is on, so check the
 * deadline, the filter and the budget, then copy the frame's start into the ring.
 */
__attribute__((noinline)) int tna_monitor_emit(struct xdp_md *ctx, __u32 code)
{
	__u32 zero = 0;
	struct tna_mon_ctl *ctl = bpf_map_lookup_elem(&tna_mon_ctl, &zero);
	struct tna_mon_state *st;
	__u64 deadline;
	struct tna_mon_event *e;
	__u64 now;

	if (!ctl)
		return 0;
	deadline = ctl->deadline_ns;
	if (!deadline)
		return 0;
	now = bpf_ktime_get_ns();
	if (now >= deadline) {
		/* the monitor is gone: switch off, so the next punts skip even the clock read
		 * (unless it renewed the deadline meanwhile, which the exchange leaves alone) */
		__sync_val_compare_and_swap(&ctl->deadline_ns, deadline, 0);
		return 0;
	}
	if (code == TNA_FW_DROPPED && !(ctl->flags & TNA_MON_DROPS))
		return 0;
	if (ctl->ifindex && ctl->ifindex != ctx->ingress_ifindex)
		return 0;
	st = mon_budget(now, ctl->rate);
	if (!st)
		return 0;
	e = bpf_ringbuf_reserve(&tna_mon_ring, sizeof(*e), 0);
	if (!e) {
		st->lost++;
		return 0;
	}
	mon_fill(ctx, e, now, code);
	bpf_ringbuf_submit(e, 0);
	return 1;
}

/* On a punt or drop path only: the switch is read here, and nothing else runs while off. */
static __always_inline void monitor_note(struct xdp_md *ctx, enum tna_code code)
{
	__u32 zero = 0;
	const struct tna_mon_ctl *ctl = bpf_map_lookup_elem(&tna_mon_ctl, &zero);

	if (ctl && ctl->deadline_ns)
		tna_monitor_emit(ctx, code);
}

#endif
