/* SPDX-License-Identifier: GPL-2.0 */
/* What a bpf_fib_lookup() result other than SUCCESS means: the reason the frame is Linux's. */
#ifndef TNA_LIB_FIB_H
#define TNA_LIB_FIB_H

#include "common.h"

/* Every result but SUCCESS is Linux's business; the comment says what Linux does with it. */
static __always_inline enum tna_code fib_punt_reason(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_BLACKHOLE:	/* Linux drops silently */
		return TNA_PUNT_BLACKHOLE;
	case BPF_FIB_LKUP_RET_UNREACHABLE:	/* Linux sends ICMP host unreachable */
		return TNA_PUNT_UNREACHABLE;
	case BPF_FIB_LKUP_RET_PROHIBIT:	/* Linux sends ICMP administratively prohibited */
		return TNA_PUNT_PROHIBIT;
	case BPF_FIB_LKUP_RET_NOT_FWDED:	/* no route (ICMP unreachable), local, broadcast */
		return TNA_PUNT_NOT_FORWARDED;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:	/* forwarding off: Linux drops or delivers locally */
		return TNA_PUNT_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_NO_NEIGH:	/* Linux resolves ARP/ND, queues, and later sends */
		return TNA_PUNT_NO_NEIGH;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:	/* Linux fragments or sends frag-needed/too-big */
		return TNA_PUNT_FRAG_NEEDED;
	case BPF_FIB_LKUP_RET_UNSUPP_LWT:	/* encapsulating route: Linux encapsulates */
	default:				/* negative errno or a result newer than us */
		return TNA_PUNT_FIB_OTHER;
	}
}

#endif
