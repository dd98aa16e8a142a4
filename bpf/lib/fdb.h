/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The FDB mirror (tna_fdb) and the bridge ports (tna_brports): lookups, the "seen" stamp that
 * lets userspace refresh the kernel's entry (NTF_USE) for sources the fast path forwarded, and
 * the checks every bridge egress makes, whether the frame was bridged or routed into a bridge.
 */
#ifndef TNA_LIB_FDB_H
#define TNA_LIB_FDB_H

#include "common.h"
#include "maps.h"

/*
 * Write the seen stamp at most once per this many jiffies (1 s at HZ 100, 0.1 s at HZ 1000):
 * the kernel's br_fdb_update() writes fdb->updated once per jiffy, we keep the cache line
 * mostly read-only.
 */
#define TNA_SEEN_EVERY_JIFFIES 100

static __always_inline struct tna_fdb_entry *fdb_lookup(__u32 bridge, const __u8 *mac)
{
	struct tna_fdb_key key = { .bridge = bridge };

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	return bpf_map_lookup_elem(&tna_fdb, &key);
}

/*
 * The kernel would have refreshed the source's entry (br_fdb_update); note it for userspace.
 *
 * Gated on jiffies as br_fdb_update() is: the verifier inlines bpf_jiffies64() into one load,
 * where the clock helper costs a call on every frame (~15-20 ns here). Only when the gate opens
 * is the CLOCK_MONOTONIC stamp userspace compares with the kernel's ages read. The gate keeps
 * the low 16 bits of jiffies in the entry: after a wrap (65536 jiffies without a frame) it may
 * stay shut for up to TNA_SEEN_EVERY_JIFFIES more, the same bound as between any two stamps.
 * An entry userspace just wrote (seen_ns 0) is stamped by its first frame.
 */
static __always_inline void fdb_note_seen(struct tna_fdb_entry *e)
{
	__u16 now_j = (__u16)bpf_jiffies64();

	if ((__u16)(now_j - e->seen_jiffies) >= TNA_SEEN_EVERY_JIFFIES || !e->seen_ns) {
		e->seen_jiffies = now_j;
		e->seen_ns = bpf_ktime_get_coarse_ns();
	}
}

/*
 * The source showed up on another port: the kernel is about to move the entry (it sees this
 * very frame). Until userspace reads the kernel's entry again, the address counts as unknown,
 * so no frame is sent to the old port after the first one from the new port. Replaced with a
 * map update (not written in place) so a concurrent userspace update cannot swallow it.
 */
static __always_inline void fdb_mark_moved(__u32 bridge, const __u8 *mac,
					   const struct tna_fdb_entry *e)
{
	struct tna_fdb_key key = { .bridge = bridge };
	struct tna_fdb_entry moved = *e;

	__builtin_memcpy(key.mac, mac, ETH_ALEN);
	moved.flags |= TNA_FDB_MOVED;
	moved.seen_ns = bpf_ktime_get_coarse_ns();
	bpf_map_update_elem(&tna_fdb, &key, &moved, BPF_EXIST);
}

/*
 * May a frame of ``bridge`` leave through ``port``? What br_forward()/should_deliver() check:
 * the port belongs to the bridge and forwards (STP), no port flag changes the decision
 * (isolated, backup port, ...), and the plan lets the fast path transmit there.
 */
static __always_inline const struct tna_iface *
bridge_egress_port(__u32 bridge, __u32 port, enum tna_code *why)
{
	const struct tna_brport *bp = brport_lookup(port);
	const struct tna_iface *out;

	if (!bp || bp->bridge != bridge || !(bp->flags & TNA_BRPORT_FORWARDING)) {
		*why = TNA_PUNT_PORT_STATE;
		return NULL;
	}
	if (bp->flags & TNA_BRPORT_PUNT) {
		*why = TNA_PUNT_PORT_FLAGS;
		return NULL;
	}
	out = iface_lookup(port);
	if (!out || !(out->flags & TNA_IF_EGRESS) || (out->flags & TNA_IF_BRIDGE)) {
		*why = TNA_PUNT_EGRESS;
		return NULL;
	}
	return out;
}

/* The port behind ``mac`` on ``bridge`` for a frame the kernel sends (br_dev_xmit), or NULL. */
static __always_inline const struct tna_iface *
bridge_resolve(__u32 bridge, const __u8 *mac, __u32 *port, enum tna_code *why)
{
	const struct tna_fdb_entry *e = fdb_lookup(bridge, mac);

	if (!e || (e->flags & TNA_FDB_MOVED)) {
		*why = TNA_PUNT_UNKNOWN_UNICAST;	/* Linux floods it */
		return NULL;
	}
	if (e->flags & TNA_FDB_LOCAL) {
		*why = TNA_PUNT_BRIDGE_LOCAL;
		return NULL;
	}
	*port = e->port;
	return bridge_egress_port(bridge, e->port, why);
}

#endif
