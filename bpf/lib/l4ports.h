/* SPDX-License-Identifier: GPL-2.0 */
/* L4 ports for FIB lookups: policy rules may select on ipproto, sport and dport. */
#ifndef TNA_LIB_L4PORTS_H
#define TNA_LIB_L4PORTS_H

#include "common.h"

/* Ports of a TCP/UDP/SCTP header at l4 into the lookup; left 0 when absent or truncated. */
static __always_inline void l4_ports(struct bpf_fib_lookup *fib, const void *l4, const void *end)
{
	const __be16 *ports = l4;

	if (fib->l4_protocol != IPPROTO_TCP && fib->l4_protocol != IPPROTO_UDP &&
	    fib->l4_protocol != IPPROTO_SCTP)
		return;
	if ((const void *)(ports + 2) > end)
		return;
	fib->sport = ports[0];
	fib->dport = ports[1];
}

#endif
