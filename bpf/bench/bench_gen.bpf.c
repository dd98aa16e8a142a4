// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark traffic source "live" (tna bench). Run through BPF_PROG_TEST_RUN in live-frames
 * mode on the sender's veth: every frame it returns XDP_TX for leaves that veth towards the
 * device under test. Live-frames pages are recycled without being copied again, and the device
 * under test rewrites headers (TTL, MACs), so the first BENCH_HDR_LEN bytes are written from
 * the template on every frame (bench_gen.h). The payload behind them is never touched.
 */
#include "bench/bench_gen.h"

const volatile struct bench_gen_cfg bench_gen_cfg SEC(".rodata.cfg") = {};

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	if (bench_gen_write(frame_start(ctx), frame_end(ctx), &bench_gen_cfg))
		return XDP_ABORTED;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
