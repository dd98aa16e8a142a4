// SPDX-License-Identifier: GPL-2.0
/*
 * Test-only builds of the fast path with one safety check taken out: the equivalence suite
 * (tests/equivalence/test_harness_catches_broken.py) must catch each of them. Never loaded
 * by tna itself; the production object is built from ../tna_xdp.bpf.c alone.
 *
 * Built once per variant (Makefile BROKEN_VARIANTS) with -DTNA_BROKEN_<VARIANT>: the header
 * checks of the production helpers are wrapped here, the wrappers replace them by name in the
 * production pipeline, which is then compiled unchanged.
 */
#include "lib/ipv4.h"
#include "lib/ipv6.h"

/* The header checksum a correct sender would have written (computed with check = 0). */
static __always_inline __sum16 ipv4_header_csum(const struct iphdr *iph)
{
	return (__sum16)~ipv4_header_sum(iph);
}

#if defined(TNA_BROKEN_SKIP_TTL_CHECK)
/* TTL / hop limit <= 1 forwarded instead of left to Linux (which sends time exceeded). */
static __always_inline enum tna_code broken_ipv4_check(const struct iphdr *iph, __u32 frame_len)
{
	struct iphdr copy = *iph;

	copy.ttl = 64;
	copy.check = 0;
	copy.check = ipv4_csum_ok(iph) ? ipv4_header_csum(&copy) : iph->check;
	return ipv4_check(&copy, frame_len);
}

static __always_inline enum tna_code broken_ipv6_check(const struct ipv6hdr *ip6h,
							__u32 frame_len)
{
	struct ipv6hdr copy = *ip6h;

	copy.hop_limit = 64;
	return ipv6_check(&copy, frame_len);
}

#define ipv4_check broken_ipv4_check
#define ipv6_check broken_ipv6_check

#elif defined(TNA_BROKEN_SKIP_CSUM_CHECK)
/* IPv4 headers with a wrong checksum forwarded instead of dropped as Linux does. */
static __always_inline enum tna_code broken_ipv4_check(const struct iphdr *iph, __u32 frame_len)
{
	struct iphdr copy = *iph;

	copy.check = 0;
	copy.check = ipv4_header_csum(&copy);
	return ipv4_check(&copy, frame_len);
}

#define ipv4_check broken_ipv4_check

#else
#error "a broken variant: -DTNA_BROKEN_SKIP_TTL_CHECK or -DTNA_BROKEN_SKIP_CSUM_CHECK"
#endif

#include "tna_xdp.bpf.c"
