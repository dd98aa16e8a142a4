/* SPDX-License-Identifier: GPL-2.0 */
/*
 * BPF_FIB_LOOKUP_DIRECT (the main table only, no policy rules) where it answers as the full
 * lookup would. The kernel itself says whether rules could matter: net->ipv4.fib_has_custom_rules
 * (and ipv6's) turns true the first time a rule is added or deleted in the namespace and never
 * back, so a rule change takes effect on the very next packet, daemon or not. While it is
 * false, IPv4 keeps the local table merged into the main one (fib_new_table()): the main table
 * alone already answers "local" or "broadcast", and a miss there (where the full lookup would
 * go on to the default table) is a punt either way. IPv6 keeps its local table apart, so the
 * local and anycast addresses it holds are mirrored in tna_local_v6 (which only a daemon
 * keeps current: the planner asks for fib_direct_v6 only under `tna run`), and a frame to one
 * of them goes to Linux as the full lookup would have said (BPF_FIB_LKUP_RET_NOT_FWDED).
 */
#ifndef TNA_LIB_LOCAL_H
#define TNA_LIB_LOCAL_H

#include <bpf/bpf_core_read.h>

#include "common.h"
#include "maps.h"

#ifndef BPF_FIB_LOOKUP_DIRECT
#define BPF_FIB_LOOKUP_DIRECT (1U << 0)
#endif

/* This namespace's IPv6 local and anycast addresses (the local table's /128 routes). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct in6_addr);
	__type(value, __u8);
} tna_local_v6 SEC(".maps");

/* A one-hash Bloom filter in front of tna_local_v6, as tna_src_bits is for tna_src_deny. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_src_bits);
} tna_local6_bits SEC(".maps");

/*
 * The four words of the address (as loaded, network order) chained through the multiplier of
 * src_bit(), then hashed as src_bit(). A plain XOR of the words would not do: structured
 * addresses (fd00:1::1, fd00:2::2) cancel out to the same value.
 */
static __always_inline __u32 local_v6_bit(const struct in6_addr *a)
{
	__u32 h = a->in6_u.u6_addr32[0];

	h = (h * 0x9E3779B1U) ^ a->in6_u.u6_addr32[1];
	h = (h * 0x9E3779B1U) ^ a->in6_u.u6_addr32[2];
	h = (h * 0x9E3779B1U) ^ a->in6_u.u6_addr32[3];
	return src_bit(h);
}

static __always_inline int local_v6(const struct in6_addr *a)
{
	__u32 zero = 0, bit = local_v6_bit(a);
	const struct tna_src_bits *bits = bpf_map_lookup_elem(&tna_local6_bits, &zero);
	struct in6_addr key;

	if (bits && !(bits->words[bit / 64] & (1ULL << (bit % 64))))
		return 0;
	__builtin_memcpy(&key, a, sizeof(key));
	return bpf_map_lookup_elem(&tna_local_v6, &key) != NULL;
}

/* The kernel's view, through the XDP context (CO-RE: only the fields read are declared). */
extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;

struct netns_ipv4___tna {
	__u8 fib_has_custom_rules;
} __attribute__((preserve_access_index));

struct netns_ipv6___tna {
	__u8 fib6_has_custom_rules;
} __attribute__((preserve_access_index));

struct net___tna {
	struct netns_ipv4___tna ipv4;
	struct netns_ipv6___tna ipv6;
} __attribute__((preserve_access_index));

struct net_device___tna {
	struct {
		struct net___tna *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct xdp_rxq_info___tna {
	struct net_device___tna *dev;
} __attribute__((preserve_access_index));

struct xdp_buff___tna {
	struct xdp_rxq_info___tna *rxq;
} __attribute__((preserve_access_index));

/*
 * BPF_FIB_LOOKUP_DIRECT if the namespace has never had a policy rule change, else 0. A kernel
 * built without multiple tables has no such flag (relocated to "absent" at load): then the
 * full lookup, always.
 */
static __always_inline __u32 fib_direct_flags(struct xdp_md *ctx, int v6)
{
	struct xdp_buff___tna *xdp = bpf_cast_to_kern_ctx(ctx);
	struct net___tna *net = xdp->rxq->dev->nd_net.net;

	if (v6) {
		if (!bpf_core_field_exists(net->ipv6.fib6_has_custom_rules) ||
		    net->ipv6.fib6_has_custom_rules)
			return 0;
	} else {
		if (!bpf_core_field_exists(net->ipv4.fib_has_custom_rules) ||
		    net->ipv4.fib_has_custom_rules)
			return 0;
	}
	return BPF_FIB_LOOKUP_DIRECT;
}

#endif
