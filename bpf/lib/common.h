/* SPDX-License-Identifier: GPL-2.0 */
/* Includes, constants and small helpers every TNA program uses. */
#ifndef TNA_LIB_COMMON_H
#define TNA_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tna_abi.h"

/* The uapi headers of the build host may predate these; the values are kernel ABI. */
#ifndef BPF_FIB_LOOKUP_SKIP_NEIGH
#define BPF_FIB_LOOKUP_SKIP_NEIGH (1U << 2)
#endif

#define AF_INET 2
#define AF_INET6 10

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define frame_start(ctx) ((void *)(long)(ctx)->data)
#define frame_end(ctx) ((void *)(long)(ctx)->data_end)

static __always_inline int mac_equal(const __u8 *a, const __u8 *b)
{
	return ((const __u16 *)a)[0] == ((const __u16 *)b)[0] &&
	       ((const __u16 *)a)[1] == ((const __u16 *)b)[1] &&
	       ((const __u16 *)a)[2] == ((const __u16 *)b)[2];
}

#endif
