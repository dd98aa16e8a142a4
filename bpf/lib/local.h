/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Local destinations known without the FIB's local table, so that bpf_fib_lookup() may skip the
 * policy rules and the local table (BPF_FIB_LOOKUP_DIRECT: the main table only) where the plan
 * proves that exact: default rules only, and a local table holding nothing but host routes the
 * planner mirrors here (IPv4: they are the addresses of tna_src_deny; IPv6: tna_local_v6) or
 * ranges the header checks punt anyway (127/8, ff00::/8). A frame to one of them goes to Linux,
 * which delivers it, as the full lookup would have said (BPF_FIB_LKUP_RET_NOT_FWDED).
 */
#ifndef TNA_LIB_LOCAL_H
#define TNA_LIB_LOCAL_H

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
} tna_local_v6_bits SEC(".maps");

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
	const struct tna_src_bits *bits = bpf_map_lookup_elem(&tna_local_v6_bits, &zero);
	struct in6_addr key;

	if (bits && !(bits->words[bit / 64] & (1ULL << (bit % 64))))
		return 0;
	__builtin_memcpy(&key, a, sizeof(key));
	return bpf_map_lookup_elem(&tna_local_v6, &key) != NULL;
}

/* IPv4: the own and broadcast addresses are exactly what tna_src_deny holds (the plan checks). */
static __always_inline int local_v4(__be32 daddr)
{
	return src_denied(daddr);
}

#endif
