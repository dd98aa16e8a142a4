/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Maps shared by every TNA program of a namespace. Userspace pins them under
 * /sys/fs/bpf/tna/<netns cookie>/ and points every loaded object at the same pins, so data
 * changes (interfaces, egress eligibility) never need a reload.
 */
#ifndef TNA_LIB_MAPS_H
#define TNA_LIB_MAPS_H

#include "common.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TNA_MAX_IFACES);
	__type(key, __u32);			/* ifindex */
	__type(value, struct tna_iface);
} tna_ifaces SEC(".maps");

/*
 * The same entries, indexed by ifindex, for the ifindexes below TNA_IFIDX_MAX: the verifier
 * inlines an array lookup, a hash lookup costs ~12 ns per packet. Interfaces keep their ifindex
 * when moved between namespaces and the root namespace numbers them up without reuse, so veths
 * often have thousands (1 MiB covers 65536). Slot 0 marks an empty entry; larger ifindexes are
 * only in tna_ifaces. Userspace writes both maps, and empties an entry here (slot 0, the rest
 * unchanged, so a torn read cannot mix flags) before it deletes it there.
 */
#define TNA_IFIDX_MAX 65536

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_IFIDX_MAX);
	__type(key, __u32);			/* ifindex */
	__type(value, struct tna_iface);
} tna_ifidx SEC(".maps");

/*
 * An entry of an ifindex-keyed hash from its ifindex-indexed array twin where the array holds
 * it (its member `present` is set: 0 marks an empty entry), else from the hash.
 */
#define array_then_hash_lookup(array, hash, ifindex, present) ({			\
	const typeof(*(array).value) *__e = bpf_map_lookup_elem(&(array), (ifindex));	\
											\
	(__e && __e->present) ? __e : bpf_map_lookup_elem(&(hash), (ifindex));		\
})

/* An interface's tna_ifaces entry, from the array where it is there. */
static __always_inline const struct tna_iface *iface_lookup(__u32 ifindex)
{
	return array_then_hash_lookup(tna_ifidx, tna_ifaces, &ifindex, slot);
}

/* Redirect targets: exactly the interfaces with TNA_IF_EGRESS. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, TNA_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} tna_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TNA_MAX_IFACES * TNA_NR_CODES);
	__type(key, __u32);
	__type(value, struct tna_counter);
} tna_stats SEC(".maps");

/*
 * The FDB mirror: the kernel bridges' forwarding databases, fed from netlink (AF_BRIDGE
 * neighbours) by tna.datapath.fdb. Allocated on demand: most namespaces have few entries.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TNA_FDB_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tna_fdb_key);
	__type(value, struct tna_fdb_entry);
} tna_fdb SEC(".maps");

/* Bridge ports: their bridge, STP state and whether their flags leave frames to the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TNA_MAX_IFACES);
	__type(key, __u32);			/* ifindex of the port */
	__type(value, struct tna_brport);
} tna_brports SEC(".maps");

/* The same by ifindex, as tna_ifidx is for tna_ifaces; bridge 0 marks an empty entry. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_IFIDX_MAX);
	__type(key, __u32);			/* ifindex of the port */
	__type(value, struct tna_brport);
} tna_brpidx SEC(".maps");

static __always_inline const struct tna_brport *brport_lookup(__u32 ifindex)
{
	return array_then_hash_lookup(tna_brpidx, tna_brports, &ifindex, bridge);
}

/*
 * IPv4 sources the fast path never forwards: this namespace's own addresses (Linux drops them
 * as martian sources) and its subnets' broadcast addresses (dropped whenever Linux validates
 * sources against the FIB). Punted, so Linux decides.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __be32);
	__type(value, __u8);
} tna_src_deny SEC(".maps");

/*
 * A one-hash Bloom filter in front of tna_src_deny: the bit src_bit() picks is set for every
 * address there, so almost every source is cleared by an inlined array read instead of a ~20 ns
 * hash lookup. Userspace (tna.datapath.loader) sets bits once their addresses are in the hash
 * and clears them only when none of the hash's addresses needs them.
 */
#define TNA_SRC_BITS_LOG2 12

struct tna_src_bits {
	__u64 words[(1 << TNA_SRC_BITS_LOG2) / 64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_src_bits);
} tna_src_bits SEC(".maps");

/* Fibonacci hashing of the address as loaded from the packet (network order in a host word). */
static __always_inline __u32 src_bit(__be32 addr)
{
	return ((__u32)addr * 0x9E3779B1U) >> (32 - TNA_SRC_BITS_LOG2);
}

static __always_inline int src_denied(__be32 addr)
{
	__u32 zero = 0, bit = src_bit(addr);
	const struct tna_src_bits *bits = bpf_map_lookup_elem(&tna_src_bits, &zero);

	if (bits && !(bits->words[bit / 64] & (1ULL << (bit % 64))))
		return 0;
	return bpf_map_lookup_elem(&tna_src_deny, &addr) != NULL;
}

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tna_config);
} tna_config SEC(".maps");

/*
 * ICMP redirects: [0] counts those the fast path saw arrive (it sees them before the kernel
 * does), [1] is the count the control plane last found no redirect exception for. While they
 * differ, gateway routes out of interfaces that accept redirects go to Linux.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} tna_redirects SEC(".maps");

/* ---- the forward-hook firewall (lib/firewall.h; layouts in tna_abi.h) ---- */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_FW_TABLES);
	__type(key, __u32);
	__type(value, struct tna_fw_table);
} tna_fw_tables SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_FW_TABLES * TNA_FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct tna_fw_rule);
} tna_fw_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_FW_TABLES * TNA_FW_MAX_CLASSES);
	__type(key, __u32);
	__type(value, struct tna_fw_bits);
} tna_fw_classes SEC(".maps");

/* Interfaces some rule names -> class; the others have the table's iif/oif_default. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TNA_FW_TABLES * 2 * TNA_MAX_IFACES);
	__type(key, struct tna_fw_if_key);
	__type(value, __u32);
} tna_fw_ifs SEC(".maps");

/* [(t * 3 + (0 l4proto, 1 tcpflags, 2 icmptype)) * 256 + value] -> class */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_FW_TABLES * 3 * 256);
	__type(key, __u32);
	__type(value, __u32);
} tna_fw_small SEC(".maps");

/*
 * [(t * 2 + (0 sport, 1 dport)) * 65536 + port] -> class. Memory-mapped by userspace, which
 * writes a generation's 2 x 65536 entries as memory instead of one syscall step per entry.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TNA_FW_TABLES * 2 * 65536);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u32);
} tna_fw_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tna_fw_v4_key);
	__type(value, __u32);
} tna_fw_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct tna_fw_v6_key);
	__type(value, __u32);
} tna_fw_v6 SEC(".maps");

/* Packets and bytes the fast path accepted or dropped per rule: [t * TNA_FW_MAX_RULES + i]. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TNA_FW_TABLES * TNA_FW_MAX_RULES);
	__type(key, __u32);
	__type(value, struct tna_counter);
} tna_fw_counters SEC(".maps");

#endif
