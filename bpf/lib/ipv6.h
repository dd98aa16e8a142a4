/* SPDX-License-Identifier: GPL-2.0 */
/* IPv6: the header checks ipv6_rcv()/ip6_forward() make. */
#ifndef TNA_LIB_IPV6_H
#define TNA_LIB_IPV6_H

#include "common.h"

/* Extension headers Linux may act on while forwarding (hop-by-hop first of all). */
static __always_inline int ipv6_is_ext(__u8 nexthdr)
{
	switch (nexthdr) {
	case 0:		/* hop-by-hop options: router alert, jumbograms */
	case 43:	/* routing */
	case 44:	/* fragment */
	case 51:	/* authentication header */
	case 60:	/* destination options */
	case 135:	/* mobility */
	case 139:	/* HIP */
	case 140:	/* shim6 */
	case 253:
	case 254:	/* experimental */
		return 1;
	}
	return 0;
}

/* Addresses ip6_forward() refuses or treats specially; 0 for ordinary unicast. */
static __always_inline enum tna_code ipv6_addr_check(const struct in6_addr *a)
{
	__u32 w0 = bpf_ntohl(a->in6_u.u6_addr32[0]);

	if ((w0 >> 24) == 0xff)				/* multicast */
		return TNA_PUNT_MARTIAN;
	if ((w0 & 0xffc00000) == 0xfe800000)		/* fe80::/10 */
		return TNA_PUNT_LINK_LOCAL;
	if (w0 == 0 && a->in6_u.u6_addr32[1] == 0)	/* ::, ::1, v4-mapped, v4-compatible */
		return TNA_PUNT_MARTIAN;
	return 0;
}

/*
 * The header's own checks, as br_validate_ipv6() makes them too: version, a payload length
 * within the frame, and no extension headers (hop-by-hop length checks, fragments conntrack
 * would reassemble: left to Linux).
 */
static __always_inline enum tna_code ipv6_header_check(const struct ipv6hdr *ip6h,
							__u32 frame_len)
{
	if (ip6h->version != 6)
		return TNA_PUNT_MALFORMED;
	if (bpf_ntohs(ip6h->payload_len) + sizeof(*ip6h) + sizeof(struct ethhdr) > frame_len)
		return TNA_PUNT_BAD_LENGTH;
	if (ipv6_is_ext(ip6h->nexthdr))
		return TNA_PUNT_IPV6_EXT;
	return 0;
}

static __always_inline enum tna_code ipv6_check(const struct ipv6hdr *ip6h, __u32 frame_len)
{
	enum tna_code why = ipv6_header_check(ip6h, frame_len);

	if (why)
		return why;
	why = ipv6_addr_check(&ip6h->saddr);
	if (!why)
		why = ipv6_addr_check(&ip6h->daddr);
	if (why)
		return why;
	if (ip6h->hop_limit <= 1)
		return TNA_PUNT_TTL;
	return 0;
}

#endif
