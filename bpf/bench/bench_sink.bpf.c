// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark sink (tna bench): drops every frame on the receiving host's veth and counts it in
 * a per-CPU counter that userspace reads before and after a timed window. Its presence also
 * enables NAPI on that veth, which is what makes XDP redirects into its peer legal.
 *
 * bench_nop is the empty program: its BPF_PROG_TEST_RUN time is the test harness's own cost,
 * subtracted from the program-only measurements.
 *
 * bench_tc_sink is the same sink at the first hook an skb meets in the stack (tcx ingress): on
 * the router's ingress it measures the source without native XDP's skb-to-XDP conversion.
 *
 * only_len (load time) makes a sink count frames of that one length only: a test that counts
 * exactly sets it, so a frame the namespaces send on their own (the MLD report of an interface
 * coming up) is not counted. The benchmark loads 0, and the verifier drops the test.
 *
 * bench_pass does nothing and returns XDP_PASS: on the router's ingress it makes native XDP
 * on the veth convert every frame (an skb source's skb into an XDP buffer and back), which is
 * what an skb source charges any XDP program and Linux alone never pays.
 */
#include "lib/common.h"

struct bench_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_count);
} bench_count SEC(".maps");

struct bench_sink_cfg {
	__u32 only_len;		/* count frames of this length only; 0: every frame */
};

const volatile struct bench_sink_cfg bench_sink_cfg SEC(".rodata.cfg") = {};

/* One frame of ``len`` bytes into this CPU's counter: both sinks count the same way. */
static __always_inline void count_frame(__u64 len)
{
	__u32 key = 0;
	struct bench_count *c;

	if (bench_sink_cfg.only_len && len != bench_sink_cfg.only_len)
		return;
	c = bpf_map_lookup_elem(&bench_count, &key);

	if (c) {
		c->packets++;
		c->bytes += len;
	}
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	count_frame(frame_end(ctx) - frame_start(ctx));
	return XDP_DROP;
}

SEC("tc")
int bench_tc_sink(struct __sk_buff *skb)
{
	count_frame(skb->len);
	return 2;	/* TC_ACT_SHOT */
}

SEC("xdp")
int bench_nop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("xdp")
int bench_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
