// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark traffic source "skb" (tna bench), for hosts that refuse live-frames test_run
 * (hardened kernels, containers, kernels before 5.18). A SCHED_CLS program run through
 * BPF_PROG_TEST_RUN (no attachment) in the sender's namespace: each run sends `burst` clones
 * of the test skb out of the sender's veth with bpf_clone_redirect(), real skbs that take the
 * ordinary transmit path (no qdisc on veth) into the device under test.
 *
 * bpf_clone_redirect() hands the clone the current buffer and gives the original a fresh copy
 * of it (its head must stay writable), so every clone owns its bytes and the device under test
 * may rewrite them. The template is written before every clone all the same: with a variation
 * each frame differs from the last.
 *
 * Returns how many clones were handed to the veth in the run (test_run reports the last run's).
 */
#include "bench/bench_gen.h"

#define BENCH_MAX_BURST 256

struct bench_skbgen_cfg {
	struct bench_gen_cfg gen;
	__u32 ifindex;		/* the sender's veth */
	__u32 burst;		/* clones per run, <= BENCH_MAX_BURST */
};

const volatile struct bench_skbgen_cfg bench_skbgen_cfg SEC(".rodata.cfg") = {};

SEC("tc")
int bench_skbgen(struct __sk_buff *skb)
{
	__u32 burst = bench_skbgen_cfg.burst, sent = 0;

	if (burst > BENCH_MAX_BURST)
		burst = BENCH_MAX_BURST;
	for (__u32 i = 0; i < burst; i++) {
		/* reloaded: bpf_clone_redirect() invalidates packet pointers */
		void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;

		if (bench_gen_write(data, end, &bench_skbgen_cfg.gen))
			break;
		if (bpf_clone_redirect(skb, bench_skbgen_cfg.ifindex, 0) == 0)
			sent++;
	}
	return sent;
}

char _license[] SEC("license") = "GPL";
