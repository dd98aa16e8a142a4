/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The forward hook: netfilter's filter chains on NF_INET_FORWARD, evaluated by a bit-vector
 * classifier that tna.firewall compiles from the live ruleset (layouts in tna_abi.h).
 *
 * Every field of the packet selects a class; the AND of the classes' bit vectors is the set of
 * rules the packet matches. Walking it from rule 0, the first final verdict decides; SKIP rules
 * (an accept ending one base chain, a return, a counter-only rule) move on to a later rule.
 * The cost depends on the number of 64-rule words, not on what the rules say.
 *
 * Conntrack: when the ruleset makes the kernel track connections, a packet is fast only if it
 * belongs to an established TCP or UDP flow whose next step in the kernel would be a timeout
 * refresh (conntrack.h), done here before the FIB lookup as conntrack runs before routing. An
 * entry with NAT also gives the rewrite: the destination manip before the FIB lookup and the
 * classifier (as PREROUTING does it), then both manips on the frame, tna_nat_rewrite().
 */
#ifndef TNA_LIB_FIREWALL_H
#define TNA_LIB_FIREWALL_H

#include "common.h"
#include "conntrack.h"
#include "ct_liberal.h"
#include "l4csum.h"
#include "maps.h"
#include "stats.h"

/* What the classifier needs of a packet. */
struct fw_packet {
	__u32 iif, oif;
	__u8 saddr[16], daddr[16];	/* IPv4: the first 4 bytes */
	__u8 l4proto, tcpflags, icmptype, v6;
	__u16 sport, dport;		/* host order */
};

/*
 * The state of one classification. It lives in the per-CPU scratch map, not on the stack,
 * which the callers' frames mostly use up; the walk's bpf_loop() callback reads it there.
 */
struct fw_loop {
	__u32 table;
	__u32 class[TNA_FW_NR_FIELDS];	/* the packet's class per field */
	__u64 nonzero;			/* words of the match vector with a bit set */
	__u32 pos;			/* walk: the next rule to consider */
	__u32 rule;			/* walk: the rule that decided */
	int verdict;			/* walk: TNA_FW_* of that rule; TNA_FW_PUNT until then */
	__u32 npassed;
	__u16 passed[8];		/* counted SKIP rules walked past (an accept ending one
					 * of several base chains), counted with the decision */
};

/* The header fields NAT rewrites, as received: put back if the redirect fails. */
struct nat_saved {
	__be32 saddr[4], daddr[4];	/* IPv4 in [0] */
	__be16 sport, dport;
	__sum16 ip_check, l4_check;
};

struct fw_scratch {
	struct tna_fw_bits match;	/* rules the packet matches */
	struct fw_loop l;
	struct fw_packet p;
	struct ct_nat nat;		/* the conntrack step's NAT for the packet, if any */
	struct nat_saved saved;
	struct tna_liberal_req ask;	/* with ask_pending: the connection to make liberal */
	struct ct_work ct;		/* conntrack's working data (conntrack.h) */
	__u32 ask_pending;		/* 0, or why the conntrack step left the packet to Linux:
					 * window tracking alone (ct_window) or the handshake's last
					 * ACK (ct_setup); the rest of the pipeline runs to see whether
					 * the fast path would carry it, and then Linux gets it anyway */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fw_scratch);
} tna_fw_scratch SEC(".maps");

/* ---- classification ---- */

static __always_inline const struct tna_fw_bits *fw_class(__u32 table, __u32 class)
{
	__u32 key = table * TNA_FW_MAX_CLASSES + class;

	if (class >= TNA_FW_MAX_CLASSES)
		return NULL;	/* an address absent from the LPM: tables being rewritten */
	return bpf_map_lookup_elem(&tna_fw_classes, &key);
}

/* Class of a field kept in an array map; class 0 (every rule) when the field is unused. */
static __always_inline __u32 fw_array_class(void *map, __u32 index)
{
	const __u32 *class = bpf_map_lookup_elem(map, &index);

	return class ? *class : 0;
}

static __always_inline __u32 fw_if_class(const struct tna_fw_table *hdr, __u32 table, int out,
					 __u32 ifindex)
{
	struct tna_fw_if_key key = { .tag = table * 2 + out, .ifindex = ifindex };
	const __u32 *class = bpf_map_lookup_elem(&tna_fw_ifs, &key);

	if (class)
		return *class;
	return out ? hdr->oif_default : hdr->iif_default;
}

/* LPM class of an address; 0xffffffff when absent (the loader always inserts /0). */
static __always_inline __u32 fw_addr_class(__u32 table, int dst, const __u8 *addr, int v6)
{
	const __u32 *class;

	if (v6) {
		struct tna_fw_v6_key key = { .prefixlen = 32 + 128, .tag = table * 2 + dst };

		__builtin_memcpy(key.addr, addr, 16);
		class = bpf_map_lookup_elem(&tna_fw_v6, &key);
	} else {
		struct tna_fw_v4_key key = { .prefixlen = 32 + 32, .tag = table * 2 + dst };

		__builtin_memcpy(key.addr, addr, 4);
		class = bpf_map_lookup_elem(&tna_fw_v4, &key);
	}
	return class ? *class : 0xffffffff;
}

static __always_inline __u32 fw_field_class(const struct tna_fw_table *hdr, __u32 table,
					    const struct fw_packet *p, enum tna_fw_field f)
{
	if (!(hdr->used & (1U << f)))
		return 0;	/* class 0 has every rule's bit */
	switch (f) {
	case TNA_FW_IIF:
		return fw_if_class(hdr, table, 0, p->iif);
	case TNA_FW_OIF:
		return fw_if_class(hdr, table, 1, p->oif);
	case TNA_FW_SADDR:
		return fw_addr_class(table, 0, p->saddr, p->v6);
	case TNA_FW_DADDR:
		return fw_addr_class(table, 1, p->daddr, p->v6);
	case TNA_FW_L4PROTO:
		return fw_array_class(&tna_fw_small, (table * 3 + 0) * 256 + p->l4proto);
	case TNA_FW_TCPFLAGS:
		return fw_array_class(&tna_fw_small, (table * 3 + 1) * 256 + p->tcpflags);
	case TNA_FW_ICMPTYPE:
		return fw_array_class(&tna_fw_small, (table * 3 + 2) * 256 + p->icmptype);
	case TNA_FW_SPORT:
		return fw_array_class(&tna_fw_ports, (table * 2 + 0) * 65536 + p->sport);
	case TNA_FW_DPORT:
		return fw_array_class(&tna_fw_ports, (table * 2 + 1) * 65536 + p->dport);
	default:
		return 0xffffffff;
	}
}

/* Index of the lowest set bit of a non-zero word (de Bruijn: BPF has no ctz). */
static const __u8 fw_debruijn[64] = {
	0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4,
	62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18, 12, 5,
	63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11,
	46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6,
};

static __always_inline __u32 fw_ctz(__u64 x)
{
	return fw_debruijn[(((x & -x) * 0x03f79d71b4cb0a89ULL) >> 58) & 63];
}

/* The first matched rule at or after pos, or TNA_FW_MAX_RULES when there is none. */
static __always_inline __u32 fw_next(const struct fw_scratch *s, __u64 nonzero, __u32 pos)
{
	__u32 w = (pos >> 6) & (TNA_FW_WORDS - 1);
	__u64 bits;

	if (pos >= TNA_FW_MAX_RULES)
		return TNA_FW_MAX_RULES;
	bits = s->match.w[w] & (~0ULL << (pos & 63));
	if (bits)
		return w * 64 + fw_ctz(bits);
	nonzero &= ~0ULL << (w + 1);
	if (!nonzero)
		return TNA_FW_MAX_RULES;
	w = fw_ctz(nonzero) & (TNA_FW_WORDS - 1);
	return w * 64 + fw_ctz(s->match.w[w]);
}

static __always_inline void fw_count(__u32 table, __u32 rule, __u64 bytes)
{
	counter_add(&tna_fw_counters, table * TNA_FW_MAX_RULES + (rule & (TNA_FW_MAX_RULES - 1)),
		    bytes);
}

static __always_inline struct fw_scratch *fw_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&tna_fw_scratch, &zero);
}

/*
 * The match vector: the AND of the class vectors of the fields some rule constrains, a field
 * at a time over the table's words (a field no rule uses has class 0, every rule, and is
 * skipped). A global function, so the verifier checks its loops once, not once per way out.
 */
__attribute__((noinline)) int tna_fw_match(struct fw_scratch *s, __u32 nwords)
{
	const struct tna_fw_bits *b;
	__u64 nonzero = 0;
	struct fw_loop *l;
	__u32 w;

	if (!s)
		return -1;
	l = &s->l;
	b = fw_class(l->table, 0);	/* every rule: the start of the AND */
	if (!b)
		return -1;
	for (w = 0; w < TNA_FW_WORDS; w++) {
		if (w >= nwords)
			break;
		s->match.w[w] = b->w[w];
	}
#pragma unroll
	for (int f = 0; f < TNA_FW_NR_FIELDS; f++) {
		if (!l->class[f])
			continue;	/* a field no rule constrains */
		b = fw_class(l->table, l->class[f]);
		if (!b)
			return -1;	/* a class is missing: tables being rewritten */
		for (w = 0; w < TNA_FW_WORDS; w++) {
			if (w >= nwords)
				break;
			s->match.w[w] &= b->w[w];
		}
	}
	for (w = 0; w < TNA_FW_WORDS; w++) {
		__u64 x;

		if (w >= nwords)
			break;
		x = s->match.w[w];
		nonzero |= ((x | -x) >> 63) << w;	/* no branch */
	}
	l->nonzero = nonzero;
	return 0;
}

/* One step of the walk: the next matched rule decides, or moves the walk on (SKIP). */
static __always_inline long fw_walk_one(void)
{
	struct fw_scratch *s = fw_scratch();
	const struct tna_fw_rule *r;
	struct fw_loop *l;
	__u32 i, key;

	if (!s)
		return 1;
	l = &s->l;
	i = fw_next(s, l->nonzero, l->pos);
	if (i >= TNA_FW_MAX_RULES)
		return 1;	/* nothing matched: the tables are inconsistent: punt */
	key = l->table * TNA_FW_MAX_RULES + i;
	r = bpf_map_lookup_elem(&tna_fw_rules, &key);
	if (!r)
		return 1;
	if (r->verdict != TNA_FW_SKIP) {
		l->verdict = r->verdict;
		l->rule = r->counted ? i : TNA_FW_MAX_RULES;
		return 1;
	}
	if (r->target <= i)
		return 1;
	if (r->counted && l->npassed < 8)
		l->passed[l->npassed++ & 7] = i;
	l->pos = r->target;
	return 0;
}

/* bpf_loop()'s callback: the steps after the first (which fw_classify() takes inline). */
static long fw_walk_step(__u32 step, void *unused)
{
	return fw_walk_one();
}

/* TNA_FW_ACCEPT, TNA_FW_DROP or TNA_FW_PUNT for the packet, as the rules of table l->table
 * decide; l->rule and l->passed say which rules to count if the fast path acts on it. */
static __always_inline int fw_classify(const struct tna_fw_table *hdr, struct fw_scratch *s)
{
	struct fw_loop *l = &s->l;
	__u32 nwords = hdr->nwords;

	if (nwords > TNA_FW_WORDS)
		return TNA_FW_PUNT;
	l->verdict = TNA_FW_PUNT;
	if (tna_fw_match(s, nwords) || !l->nonzero)
		return TNA_FW_PUNT;
	/* most packets are decided by the first rule they match: no loop set up for those, and
	 * no call (a call and return cost ~10-20 ns on hosts with the SRSO Safe-RET mitigation) */
	if (fw_walk_one() == 0)
		bpf_loop(TNA_FW_MAX_STEPS - 1, fw_walk_step, NULL, 0);
	if (l->verdict != TNA_FW_ACCEPT && l->verdict != TNA_FW_DROP)
		return TNA_FW_PUNT;
	return l->verdict;
}

static __always_inline void fw_count_decision(const struct fw_loop *l, __u64 bytes)
{
	if (l->rule < TNA_FW_MAX_RULES)
		fw_count(l->table, l->rule, bytes);
#pragma unroll
	for (int k = 0; k < 8; k++)
		if (k < l->npassed)
			fw_count(l->table, l->passed[k], bytes);
}

/* ---- the hook ---- */

static __always_inline int fw_parse_l4(struct fw_packet *p, const void *l4, const void *end)
{
	const __u8 *b = l4;

	switch (p->l4proto) {
	case IPPROTO_TCP:
		if ((const void *)(b + 14) > end)
			return -1;
		p->tcpflags = b[13];
		/* fall through */
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP:
	case 33:	/* DCCP */
		if ((const void *)(b + 4) > end)
			return -1;
		p->sport = (b[0] << 8) | b[1];
		p->dport = (b[2] << 8) | b[3];
		return 0;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		if ((p->l4proto == IPPROTO_ICMPV6) != p->v6)
			return 0;	/* ICMP inside IPv6 (or v.v.): no type to match */
		if ((const void *)(b + 1) > end)
			return -1;
		p->icmptype = b[0];
		return 0;
	default:
		return 0;
	}
}

/* Classification and the rule counters for a parsed packet (see tna_fw_hook). */
static __always_inline int fw_forward_hook(struct xdp_md *ctx, struct fw_scratch *s,
					   const void *l4, __u64 bytes)
{
	__u32 zero = 0;
	const struct tna_config *cfg = bpf_map_lookup_elem(&tna_config, &zero);
	struct fw_packet *p = &s->p;
	const struct tna_fw_table *hdr;
	struct fw_loop *l;
	__u32 table;
	int verdict;

	if (!cfg)
		return TNA_PUNT_FIREWALL;
	table = (cfg->fw_gen & 1) * 2 + p->v6;
	hdr = bpf_map_lookup_elem(&tna_fw_tables, &table);
	if (!hdr || !hdr->nrules)
		return TNA_PUNT_FIREWALL;
	if (fw_parse_l4(p, l4, frame_end(ctx)))
		return TNA_PUNT_MALFORMED;
	if (hdr->rule0_all && !tna_profile_off(TNA_PROF_SHORTCUTS)) {
		/* e.g. "ct state established,related accept" first: the walk would stop at rule
		 * 0 for every packet, so its verdict and counter need no class lookups */
		__u32 key = table * TNA_FW_MAX_RULES;
		const struct tna_fw_rule *r = bpf_map_lookup_elem(&tna_fw_rules, &key);

		if (r && (r->verdict == TNA_FW_ACCEPT || r->verdict == TNA_FW_DROP)) {
			if (s->ask_pending)	/* Linux's anyway: see below */
				return r->verdict == TNA_FW_ACCEPT ? 0 : s->ask_pending;
			if (r->counted)
				fw_count(table, 0, bytes);
			return r->verdict == TNA_FW_ACCEPT ? 0 : TNA_FW_DROPPED;
		}
	}
	if (s->nat.dst) {	/* the forward hook sees the packet after PREROUTING's DNAT */
		if (p->v6)
			__builtin_memcpy(p->daddr, s->nat.daddr, 16);
		else
			__builtin_memcpy(p->daddr, s->nat.daddr, 4);
		p->dport = bpf_ntohs(s->nat.dport);
	}
	l = &s->l;
	__builtin_memset(l, 0, sizeof(*l));
	l->table = table;
#pragma unroll
	for (int f = 0; f < TNA_FW_NR_FIELDS; f++)
		l->class[f] = fw_field_class(hdr, table, p, f);
	verdict = fw_classify(hdr, s);
	if (verdict == TNA_FW_PUNT)
		return TNA_PUNT_FIREWALL;
	/* Linux gets the packet anyway (ask_pending): its conntrack moves the window before its
	 * forward hook decides, and counts it there */
	if (s->ask_pending)
		return verdict == TNA_FW_ACCEPT ? 0 : s->ask_pending;
	fw_count_decision(l, bytes);
	return verdict == TNA_FW_ACCEPT ? 0 : TNA_FW_DROPPED;
}

/*
 * The forward hook for a routed packet whose L3 header (no IPv4 options, no IPv6 extension
 * headers) starts at l3_off: 0 to go on forwarding, TNA_FW_DROPPED to drop it, or the reason to
 * hand it to Linux. A global function, so the verifier checks it once, on its own.
 */
__attribute__((noinline)) int tna_fw_hook(struct xdp_md *ctx, __u32 l3_off, __u32 v6, __u32 iif,
					  __u32 oif)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct fw_scratch *s = fw_scratch();
	struct fw_packet *p;
	__u32 l4_off, l4_len;

	if (l3_off != sizeof(struct ethhdr) || !s)
		return TNA_PUNT_MALFORMED;
	p = &s->p;	/* not on the stack: the callers' frames leave little of it */
	__builtin_memset(p, 0, sizeof(*p));
	p->iif = iif;
	p->oif = oif;
	p->v6 = !!v6;
	if (v6) {
		struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);

		if ((void *)(ip6h + 1) > end)
			return TNA_PUNT_MALFORMED;
		l4_len = bpf_ntohs(ip6h->payload_len);
		__builtin_memcpy(p->saddr, &ip6h->saddr, 16);
		__builtin_memcpy(p->daddr, &ip6h->daddr, 16);
		p->l4proto = ip6h->nexthdr;
		l4_off = sizeof(struct ethhdr) + sizeof(*ip6h);
	} else {
		struct iphdr *iph = data + sizeof(struct ethhdr);

		if ((void *)(iph + 1) > end || bpf_ntohs(iph->tot_len) < sizeof(*iph))
			return TNA_PUNT_MALFORMED;
		l4_len = bpf_ntohs(iph->tot_len) - sizeof(*iph);
		__builtin_memcpy(p->saddr, &iph->saddr, 4);
		__builtin_memcpy(p->daddr, &iph->daddr, 4);
		p->l4proto = iph->protocol;
		l4_off = sizeof(struct ethhdr) + sizeof(*iph);
	}
	return fw_forward_hook(ctx, s, data + l4_off, l4_off + l4_len);
}

/* ---- conntrack and NAT ---- */

/* An ICMP error (it quotes the packet it is about): destination unreachable, source quench,
 * redirect, time exceeded, parameter problem; ICMPv6 types below 128. */
static __always_inline int icmp_error(__u8 l4proto, const __u8 *l4, const void *end)
{
	if ((const void *)(l4 + 1) > end)
		return 0;
	if (l4proto == IPPROTO_ICMPV6)
		return l4[0] < 128;
	return l4[0] == 3 || l4[0] == 4 || l4[0] == 5 || l4[0] == 11 || l4[0] == 12;
}

/*
 * Conntrack's part of a routed packet, before the FIB lookup (conntrack runs in PREROUTING):
 * 0 to go on (the family is not tracked, or the packet belongs to an established flow whose
 * timeout was refreshed; s->nat then says which NAT applies), or the reason to hand it to
 * Linux. The L3 header (no IPv4 options, no IPv6 extension headers) follows the Ethernet one.
 * Checks tcp_error()/udp_error() make: L4 header and length, checksum (nf_conntrack_checksum).
 * ``mode``: ct_established()'s. CT_ASK_LIBERAL (tna run --tcp-liberal): a TCP segment that
 * only window tracking keeps from the fast path, or the handshake's last ACK, returns 0 with
 * s->ask_pending set (ct_window or ct_setup); the caller must hand it to Linux with that
 * reason, asking for the connection to be made liberal if it would have forwarded it.
 * CT_LIBERAL_FAST: a liberal sender's data is not judged by its window (the caller then looks
 * at the RSTs it hands to Linux: tna_fw_reset_check()).
 */
__attribute__((noinline)) int tna_fw_conntrack(struct xdp_md *ctx, __u32 v6, __u32 mode)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct fw_scratch *s = fw_scratch();
	const struct tna_fw_table *hdr;
	const struct tna_config *cfg;
	__u32 zero = 0, table, l4_off, l4_len, opt = 0;
	__u8 l4proto, *l4;
	__u64 pseudo;
	int rc;

	if (!s)
		return TNA_PUNT_FIREWALL;
	s->nat.dst = 0;
	s->nat.src = 0;
	s->nat.csum_ok = 0;
	s->ask_pending = 0;
	cfg = bpf_map_lookup_elem(&tna_config, &zero);
	if (!cfg)
		return TNA_PUNT_FIREWALL;
	table = (cfg->fw_gen & 1) * 2 + !!v6;
	hdr = bpf_map_lookup_elem(&tna_fw_tables, &table);
	if (!hdr || !hdr->nrules)
		return TNA_PUNT_FIREWALL;
	if (!hdr->stateful)
		return 0;
	if (v6) {
		struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);

		if ((void *)(ip6h + 1) > end)
			return TNA_PUNT_MALFORMED;
		l4_len = bpf_ntohs(ip6h->payload_len);
		__builtin_memcpy(s->p.saddr, &ip6h->saddr, 16);
		__builtin_memcpy(s->p.daddr, &ip6h->daddr, 16);
		l4proto = ip6h->nexthdr;
		l4_off = sizeof(struct ethhdr) + sizeof(*ip6h);
		pseudo = pseudo_v6(ip6h, l4_len);
	} else {
		struct iphdr *iph = data + sizeof(struct ethhdr);

		if ((void *)(iph + 1) > end || bpf_ntohs(iph->tot_len) < sizeof(*iph))
			return TNA_PUNT_MALFORMED;
		l4_len = bpf_ntohs(iph->tot_len) - sizeof(*iph);
		__builtin_memcpy(s->p.saddr, &iph->saddr, 4);
		__builtin_memcpy(s->p.daddr, &iph->daddr, 4);
		l4proto = iph->protocol;
		l4_off = sizeof(struct ethhdr) + sizeof(*iph);
		pseudo = pseudo_v4(iph, l4_len);
	}
	l4 = data + (l4_off & 0xff);
	switch (l4proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = (void *)l4;

		if (!(hdr->ct_flags & TNA_FW_CT_TCP))
			return TNA_PUNT_CT_PROTO;
		if ((void *)(th + 1) > end || l4_len < sizeof(*th))
			return TNA_PUNT_CT;
		if (th->doff > 5) {
			if ((void *)(th + 1) + 4 > end)
				return TNA_PUNT_CT;
			opt = *(__u32 *)(th + 1);
		}
		if (!tna_profile_off(TNA_PROF_CSUM) && !l4_csum_complete(ctx, l4_off, l4_len, pseudo))
			return TNA_PUNT_CT;
		s->nat.csum_ok = 1;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *udp = (void *)l4;

		if ((void *)(udp + 1) > end || bpf_ntohs(udp->len) > l4_len ||
		    bpf_ntohs(udp->len) < sizeof(*udp))
			return TNA_PUNT_CT;
		if (udp->check) {
			if (!tna_profile_off(TNA_PROF_CSUM) &&
			    !l4_csum_complete(ctx, l4_off, l4_len, pseudo))
				return TNA_PUNT_CT;
			s->nat.csum_ok = 1;
		}
		break;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* errors are related to a flow; with NAT Linux rewrites the inner headers */
		if ((hdr->ct_flags & TNA_FW_CT_NAT) && icmp_error(l4proto, l4, end))
			return TNA_PUNT_NAT_RELATED;
		return TNA_PUNT_CT_PROTO;
	default:
		return TNA_PUNT_CT_PROTO;
	}
	rc = ct_established(ctx, v6, s->p.saddr, s->p.daddr, l4proto, l4, l4_len, opt, hdr,
			    &s->nat, mode, &s->ask, &s->ct);
	if (rc == CT_ASK || rc == CT_ASK_SETUP) {
		s->ask_pending = rc == CT_ASK ? TNA_PUNT_CT_WINDOW : TNA_PUNT_CT_SETUP;
		return 0;
	}
	return rc;
}

/*
 * tna_fw_conntrack()'s own first steps, inline: a stateless ruleset (or none) is known without
 * the call (~10-20 ns on hosts with the SRSO Safe-RET mitigation). The function repeats them,
 * reading the same maps, so it decides exactly as if it had been called directly.
 */
static __always_inline int fw_conntrack(struct xdp_md *ctx, __u32 v6, __u32 mode)
{
	struct fw_scratch *s = fw_scratch();
	const struct tna_fw_table *hdr;
	const struct tna_config *cfg;
	__u32 zero = 0, table;

	if (!s)
		return TNA_PUNT_FIREWALL;
	cfg = bpf_map_lookup_elem(&tna_config, &zero);
	if (!cfg)
		return TNA_PUNT_FIREWALL;
	table = (cfg->fw_gen & 1) * 2 + !!v6;
	hdr = bpf_map_lookup_elem(&tna_fw_tables, &table);
	if (hdr && hdr->nrules && !hdr->stateful) {
		s->nat.dst = 0;
		s->nat.src = 0;
		s->nat.csum_ok = 0;
		s->ask_pending = 0;
		return 0;
	}
	return tna_fw_conntrack(ctx, v6, mode);
}

/*
 * With ct_liberal_fast: a TCP segment tna_fw_conntrack() just handed to Linux as ct_setup; if it
 * is the RST of a liberal side whose data the kernel did not see (ct_tcp_reset_stale()), name
 * its entry in tna_liberal_req (TNA_LIBERAL_RESET) for the daemon to close, at once: conntrack
 * sees it in PREROUTING, whatever routing or the forward hook decide later. The packet still
 * goes to Linux. A lookup of its own (RSTs are rare; tna_fw_conntrack()'s stack is full); the
 * headers, their lengths and the checksum were checked by tna_fw_conntrack().
 */
__attribute__((noinline)) int tna_fw_reset_check(struct xdp_md *ctx, __u32 v6)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct fw_scratch *s = fw_scratch();
	const struct tna_fw_table *hdr;
	const struct tna_config *cfg;
	__u32 zero = 0, table, l4_len;
	struct tcphdr *th;
	struct nf_conn *ct;
	unsigned long status;
	int dir = 0;

	if (!s)
		return 0;
	cfg = bpf_map_lookup_elem(&tna_config, &zero);
	if (!cfg)
		return 0;
	table = (cfg->fw_gen & 1) * 2 + !!v6;
	hdr = bpf_map_lookup_elem(&tna_fw_tables, &table);
	if (!hdr)
		return 0;
	if (v6) {
		struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);

		th = (void *)(ip6h + 1);
		if ((void *)(th + 1) > end || ip6h->nexthdr != IPPROTO_TCP)
			return 0;
		l4_len = bpf_ntohs(ip6h->payload_len);
	} else {
		struct iphdr *iph = data + sizeof(struct ethhdr);

		th = (void *)(iph + 1);
		if ((void *)(th + 1) > end || iph->protocol != IPPROTO_TCP ||
		    bpf_ntohs(iph->tot_len) < sizeof(*iph))
			return 0;
		l4_len = bpf_ntohs(iph->tot_len) - sizeof(*iph);
	}
	if (!th->rst)
		return 0;
	ct = ct_lookup(ctx, v6, s->p.saddr, s->p.daddr, th->source, th->dest, IPPROTO_TCP, &dir,
		       &s->ct);
	if (!ct)
		return 0;
	status = ct->status;
	if ((status & (CT_NEEDED | CT_ASSURED)) == (CT_NEEDED | CT_ASSURED) &&
	    !(status & CT_REFUSED) && !ct_expired(ct) &&
	    ct_tcp_reset_stale(ct, dir, th, l4_len, hdr)) {
		ct_orig_tuple(ct, v6, &s->ask);
		s->ask.kind = TNA_LIBERAL_RESET;
		s->ask.dir = dir;
		liberal_ask(&s->ask);
	}
	bpf_ct_release(ct);
	return 0;
}

/* Linux's csum_replace4()/inet_proto_csum_replace4() on an unoffloaded checksum: the same
 * arithmetic (RFC 1624, eqn. 3), so the bytes are the ones Linux would write. */
static __always_inline __u32 csum_add32(__u32 a, __u32 b)
{
	__u32 r = a + b;

	return r + (r < a);
}

static __always_inline __sum16 csum_replace(__sum16 check, __u32 from, __u32 to)
{
	__u32 sum = csum_add32(csum_add32(~(__u32)(__u16)check, ~from), to);

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__sum16)~sum;
}

/* Where the L4 checksum of a TCP/UDP header at ``l4`` is, or NULL. */
static __always_inline __sum16 *nat_l4_check(__u8 proto, __u8 *l4, void *end)
{
	if (proto == IPPROTO_TCP && (void *)(l4 + sizeof(struct tcphdr)) <= end)
		return (__sum16 *)(l4 + 16);
	if (proto == IPPROTO_UDP && (void *)(l4 + sizeof(struct udphdr)) <= end)
		return (__sum16 *)(l4 + 6);
	return NULL;
}

/* The fields NAT rewrites in the frame's option-less IPv4 or extension-less IPv6 TCP/UDP
 * packet: addresses (IPv4 in [0]), ports, checksums (ip_check: IPv4 only). */
struct nat_fields {
	__be32 *saddr, *daddr;
	__be16 *ports;
	__sum16 *l4_check, *ip_check;
	__u8 proto;
};

static __always_inline int nat_fields(struct xdp_md *ctx, int v6, struct nat_fields *f)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u8 *l4;

	if (v6) {
		struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);

		if ((void *)(ip6h + 1) > end)
			return -1;
		f->saddr = ip6h->saddr.in6_u.u6_addr32;
		f->daddr = ip6h->daddr.in6_u.u6_addr32;
		f->ip_check = NULL;
		f->proto = ip6h->nexthdr;
		l4 = (void *)(ip6h + 1);
	} else {
		struct iphdr *iph = data + sizeof(struct ethhdr);

		if ((void *)(iph + 1) > end)
			return -1;
		f->saddr = &iph->saddr;
		f->daddr = &iph->daddr;
		f->ip_check = &iph->check;
		f->proto = iph->protocol;
		l4 = (void *)(iph + 1);
	}
	f->ports = (__be16 *)l4;
	f->l4_check = nat_l4_check(f->proto, l4, end);
	return f->l4_check ? 0 : -1;
}

/*
 * One manip of nf_nat_manip_pkt() on the packet ``f``: ``src`` 0 the destination, 1 the
 * source, to ``to``/``to_port``. In the kernel's order: L4 checksum for the address
 * (pseudo-header), for the port, the port, then the address and, for IPv4, the header
 * checksum. A UDP checksum of 0 ("none") stays 0; one that becomes 0 is sent as 0xffff
 * (CSUM_MANGLED_0). The checksum bytes do not depend on how the address words are grouped
 * (inet_proto_csum_replace16() sums all eight at once): ones'-complement sums fold to the same
 * value.
 */
static __always_inline void nat_manip(const struct nat_fields *f, int src, const __be32 *to,
				      __be16 to_port, const int words)
{
	__be16 *port = src ? &f->ports[0] : &f->ports[1];
	__be32 *addr = src ? f->saddr : f->daddr;

	if (f->proto == IPPROTO_TCP || *f->l4_check) {
#pragma unroll
		for (int i = 0; i < words; i++)
			*f->l4_check = csum_replace(*f->l4_check, addr[i], to[i]);
		*f->l4_check = csum_replace(*f->l4_check, *port, to_port);
		if (f->proto == IPPROTO_UDP && !*f->l4_check)
			*f->l4_check = (__sum16)0xffff;
	}
	*port = to_port;
	if (f->ip_check)
		*f->ip_check = csum_replace(*f->ip_check, addr[0], to[0]);
#pragma unroll
	for (int i = 0; i < words; i++)
		addr[i] = to[i];
}

/* Both manips the entry asks for, destination first; ``words``: of an address, a constant. */
static __always_inline void nat_manips(const struct nat_fields *f, const struct ct_nat *nat,
				       const int words)
{
	if (nat->dst)
		nat_manip(f, 0, nat->daddr, nat->dport, words);
	if (nat->src)
		nat_manip(f, 1, nat->saddr, nat->sport, words);
}

/* Keep the fields NAT rewrites (``undo`` 0) or put them back (1); ``words`` a constant. */
static __always_inline void nat_saved_copy(const struct nat_fields *f, struct nat_saved *k,
					   int undo, const int words)
{
#pragma unroll
	for (int i = 0; i < words; i++) {
		if (undo) {
			f->saddr[i] = k->saddr[i];
			f->daddr[i] = k->daddr[i];
		} else {
			k->saddr[i] = f->saddr[i];
			k->daddr[i] = f->daddr[i];
		}
	}
	if (undo) {
		f->ports[0] = k->sport;
		f->ports[1] = k->dport;
		if (f->ip_check)
			*f->ip_check = k->ip_check;
		*f->l4_check = k->l4_check;
	} else {
		k->sport = f->ports[0];
		k->dport = f->ports[1];
		if (f->ip_check)
			k->ip_check = *f->ip_check;
		k->l4_check = *f->l4_check;
	}
}

/*
 * What tna_nat_rewrite() and tna_nat_undo() do for one family, ``v6`` a constant: each
 * family's code stands alone, as the verifier cannot relate two tests of a runtime flag.
 */
static __always_inline int nat_apply(struct xdp_md *ctx, struct fw_scratch *s, int undo,
				     const int v6)
{
	const int words = v6 ? 4 : 1;
	struct nat_fields f;

	if (nat_fields(ctx, v6, &f))
		return -1;
	nat_saved_copy(&f, &s->saved, undo, words);
	if (!undo)
		nat_manips(&f, &s->nat, words);
	return 0;
}

/*
 * The conntrack step's NAT on the frame's TCP/UDP packet, in one call before the TTL: the
 * fields it rewrites kept for tna_nat_undo(), then the destination manip (PREROUTING) and the
 * source manip (POSTROUTING). The kernel decrements the TTL between the two; the bytes are the
 * same in either order, as every step leaves the IPv4 header checksum in the one form
 * (csum_replace() and ip_decrease_ttl() never write 0xffff) and the TTL does not enter the L4
 * checksum. 0, or -1 if malformed.
 */
__attribute__((noinline)) int tna_nat_rewrite(struct xdp_md *ctx, __u32 v6)
{
	struct fw_scratch *s = fw_scratch();

	if (!s)
		return -1;
	return v6 ? nat_apply(ctx, s, 0, 1) : nat_apply(ctx, s, 0, 0);
}

/* The frame as it was before tna_nat_rewrite() (a redirect that failed: Linux's). */
__attribute__((noinline)) int tna_nat_undo(struct xdp_md *ctx, __u32 v6)
{
	struct fw_scratch *s = fw_scratch();

	if (!s)
		return -1;
	return v6 ? nat_apply(ctx, s, 1, 1) : nat_apply(ctx, s, 1, 0);
}

/*
 * A packet the conntrack step left pending (ask_pending) that the fast path would have
 * forwarded: Linux's (ct_window or ct_setup), and its connection asked to be made liberal.
 */
static __always_inline int fw_ask_liberal(struct xdp_md *ctx, __u32 slot)
{
	struct fw_scratch *s = fw_scratch();

	if (!s)
		return punt(ctx, slot, TNA_PUNT_CT_WINDOW);
	liberal_ask(&s->ask);
	return punt(ctx, slot, s->ask_pending);
}

/*
 * The forward hook (above) in the forwarding functions' terms: XDP_DROP (counted), XDP_PASS
 * (counted with the reason) or -1 to go on forwarding.
 */
static __always_inline int fw_hook(struct xdp_md *ctx, __u32 slot, int v6, __u32 iif, __u32 oif,
				   __u32 wire_len)
{
	int why = tna_profile_off(TNA_PROF_CLASSIFY) ? 0 :
		  tna_fw_hook(ctx, sizeof(struct ethhdr), v6, iif, oif);

	if (why == TNA_FW_DROPPED) {
		count(slot, TNA_FW_DROPPED, wire_len);
		return XDP_DROP;
	}
	return why ? punt(ctx, slot, why) : -1;
}

#endif
