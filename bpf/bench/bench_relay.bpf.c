// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark traffic source "relay" (tna bench), for hosts that refuse live-frames test_run: the
 * skb source's clones leave through a veth pair of the sender's own, whose far end runs this
 * program, which redirects every frame out of the sender's veth. The device under test then
 * receives XDP frames (veth_ndo_xdp_xmit), as from a NIC driver or the live source, instead of
 * skbs that native XDP on its veth would first copy into an XDP buffer. The copy still happens,
 * on the relay's veth, before the device under test: every mode pays it, and the null mode
 * measures it with the rest of the source.
 */
#include "lib/common.h"

struct bench_relay_cfg {
	__u32 ifindex;		/* the sender's veth towards the device under test */
};

const volatile struct bench_relay_cfg bench_relay_cfg SEC(".rodata.cfg") = {};

SEC("xdp")
int bench_relay(struct xdp_md *ctx)
{
	return bpf_redirect(bench_relay_cfg.ifindex, 0);
}

char _license[] SEC("license") = "GPL";
