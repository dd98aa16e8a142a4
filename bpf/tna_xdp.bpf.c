// SPDX-License-Identifier: GPL-2.0
/*
 * TNA's per-interface XDP fast path. One source, specialised at load time: userspace fills
 * tna_features (read-only data), so the verifier removes every feature the plan left off and
 * the loaded program holds only what its interface needs. Everything not proven to be handled
 * exactly as Linux would is passed to the kernel with a counted reason (enum tna_code).
 *
 * The pipelines are all in this file, read bottom-up from tna_xdp() at the end:
 *
 *   tna_xdp()          known ingress port, sane Ethernet header; then by role and ethertype
 *   bridge_rx()        a bridge port: source and destination in the FDB mirror, then
 *     bridge_forward()   known unicast to another port (switched), or
 *     bridge_route()     to the bridge's own MAC: routed with the bridge as input device
 *   ipv4_forward()     ip_rcv()/ip_forward()'s header checks, source checks, FIB request
 *   ipv6_forward()     ipv6_rcv()/ip6_forward()'s header checks, FIB request
 *   forward_tail()     both families: conntrack (and NAT's destination), FIB lookup, route
 *                      MTU, egress, veth checksums, forward hook (firewall), trim, NAT, TTL/hop
 *                      limit, MAC rewrite, redirect
 *
 * over helpers with one concern per header in lib/ (each includes only what it uses).
 */
#include "lib/bridge.h"
#include "lib/common.h"
#include "lib/fdb.h"
#include "lib/fib.h"
#include "lib/firewall.h"
#include "lib/ipv4.h"
#include "lib/ipv6.h"
#include "lib/l4csum.h"
#include "lib/l4ports.h"
#include "lib/local.h"
#include "lib/maps.h"
#include "lib/monitor.h"
#include "lib/redirects.h"
#include "lib/stats.h"
#include "lib/transmit.h"

/* The only declaration of the feature block: nothing in lib/ reads it (they take arguments). */
const volatile struct tna_features tna_features SEC(".rodata.features") = {};

#define IPV6_FLOWINFO_MASK bpf_htonl(0x0FFFFFFF)

/*
 * From the FIB lookup on, routed IPv4 and IPv6 take the same steps. ``l3`` is the IP header
 * (bounds-checked by the caller), ``v6`` a constant at each call site, ``wire_len`` the frame
 * as forwarded (Ethernet + what the IP header claims), ``ingress`` the L3 input device.
 */
static __always_inline int forward_tail(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 ingress, struct bpf_fib_lookup *fib, void *l3,
					int v6, __u32 wire_len)
{
	const __u32 l3_len = v6 ? sizeof(struct ipv6hdr) : sizeof(struct iphdr);
	const __u32 l4_off = sizeof(struct ethhdr) + l3_len, l4_len = wire_len - l4_off;
	struct iphdr *iph = l3;
	struct ipv6hdr *ip6h = l3;
	const struct tna_iface *out;
	void *data, *end;
	struct l2_saved saved;
	__u8 old_ttl = 0;
	__sum16 old_check = 0;
	enum tna_code why;
	__u32 tx = 0;
	int rc, via_gateway, firewall = v6 ? tna_features.firewall_ipv6 : tna_features.firewall_ipv4;
	struct fw_scratch *fws = NULL;	/* set: the packet is NATed */
	__be32 dst4 = v6 ? 0 : iph->daddr;
	int csum_ok = 0, ask = 0;

	if (firewall) {
		struct fw_scratch *s;

		/* conntrack runs in PREROUTING, and with it NAT's destination manip */
		rc = fw_conntrack(ctx, v6, CT_MODE(tna_features.ct_tcp_liberal,
						   tna_features.ct_liberal_fast));
		/* an RST of a liberal side: does the daemon have to close its entry? */
		if (rc == TNA_PUNT_CT_SETUP && tna_features.ct_liberal_fast)
			tna_fw_reset_check(ctx, v6);
		if (rc)
			return punt(ctx, in->slot, rc);
		s = fw_scratch();
		if (!s)
			return punt(ctx, in->slot, TNA_PUNT_FIREWALL);
		csum_ok = s->nat.csum_ok;
		/* Linux's for window tracking alone: does the rest say the fast path would carry
		 * it? (only with tna run --tcp-liberal; lib/ct_liberal.h) */
		ask = tna_features.ct_tcp_liberal && s->ask_pending;
		if (s->nat.dst || s->nat.src)
			fws = s;
		if (s->nat.dst) {
			if (v6) {
				__builtin_memcpy(fib->ipv6_dst, s->nat.daddr, sizeof(fib->ipv6_dst));
			} else {
				dst4 = s->nat.daddr[0];
				fib->ipv4_dst = dst4;
			}
			fib->dport = s->nat.dport;
		}
	}
	/* what the local table says, of the destination after PREROUTING's DNAT */
	if (v6 && tna_features.fib_direct_v6 && local_v6((struct in6_addr *)fib->ipv6_dst))
		return punt(ctx, in->slot, TNA_PUNT_NOT_FORWARDED);
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib),
			    (v6 ? tna_features.fib_direct_v6 : tna_features.fib_direct_v4) ?
			    fib_direct_flags(ctx, v6) : 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return punt(ctx, in->slot, fib_punt_reason(rc));
	if (over_route_mtu(wire_len - sizeof(struct ethhdr), v6))
		return punt(ctx, in->slot, TNA_PUNT_FRAG_NEEDED);
	/* bpf_fib_lookup() put the IPv4 gateway, if any, in ipv4_dst; IPv6 routers ignore
	 * redirects */
	via_gateway = !v6 && fib->ipv4_dst != dst4;
	out = egress_port(fib, ingress, &tx, &why, via_gateway, tna_features.bridge_egress);
	if (!out)
		return punt(ctx, in->slot, why);
	if (tna_features.verify_l4_csum && !csum_ok &&
	    !l4_csum_settled(ctx, v6 ? ip6h->nexthdr : iph->protocol,
			     v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, l4_off, l4_len,
			     v6 ? pseudo_v6(ip6h, l4_len) : pseudo_v4(iph, l4_len)))
		return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	if (firewall) {
		rc = fw_hook(ctx, in->slot, v6, ingress, fib->ifindex, wire_len);
		if (rc == XDP_DROP)
			monitor_note(ctx, TNA_FW_DROPPED);
		if (rc >= 0)
			return rc;
	}
	if (ask)	/* forwarded, but for window tracking: Linux's, and the daemon asked */
		return fw_ask_liberal(ctx, in->slot);

	/* (for IPv6, fib->tot_len now holds the egress MTU: it shares a union with mtu_result) */
	if (trim_to(ctx, wire_len))
		return punt(ctx, in->slot, TNA_PUNT_BAD_LENGTH);
	data = frame_start(ctx);
	end = frame_end(ctx);
	l3 = data + sizeof(struct ethhdr);
	iph = l3;
	ip6h = l3;
	if (l3 + l3_len > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	/* routed into a bridge: the port's MTU may be below the bridge's (is_skb_forwardable) */
	if (tna_features.bridge_egress && tx != fib->ifindex && !fits_mtu(ctx, tx, out))
		return punt(ctx, in->slot, TNA_PUNT_TOO_BIG);

	/* NAT (both manips; the kernel puts the TTL between them: the same bytes) */
	if (fws && tna_nat_rewrite(ctx, v6))
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	data = frame_start(ctx);
	end = frame_end(ctx);
	iph = data + sizeof(struct ethhdr);
	ip6h = (void *)iph;
	if (v6) {
		if ((void *)(ip6h + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		ip6h->hop_limit--;
	} else {
		if ((void *)(iph + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		old_ttl = iph->ttl;
		old_check = iph->check;
		ipv4_decrease_ttl(iph);
	}
	data = frame_start(ctx);
	end = frame_end(ctx);
	if (data + sizeof(struct ethhdr) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	rewrite_macs(data, fib, &saved);
	if (send(tx, in->slot, out->slot, wire_len) == XDP_REDIRECT) {
		if (fws)
			count(in->slot, fws->nat.dir ? TNA_NAT_REPLY : TNA_NAT_ORIGINAL, wire_len);
		return XDP_REDIRECT;
	}
	restore_macs(data, &saved);
	iph = data + sizeof(struct ethhdr);
	ip6h = (void *)iph;
	if (v6) {
		if ((void *)(ip6h + 1) <= end) {
			ip6h->hop_limit++;
			if (fws)
				tna_nat_undo(ctx, 1);
		}
	} else if ((void *)(iph + 1) <= end) {
		iph->ttl = old_ttl;
		iph->check = old_check;
		if (fws)
			tna_nat_undo(ctx, 0);
	}
	return punt(ctx, in->slot, TNA_PUNT_EGRESS);
}

/* ``ingress``: the L3 input device: the receiving interface, or the bridge of a bridge port. */
static __always_inline int ipv4_forward(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 ingress)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct bpf_fib_lookup fib = {};
	enum tna_code why;

	if ((void *)(iph + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	why = ipv4_check(iph, end - data);
	if (why)
		return punt(ctx, in->slot, why);
	if (src_denied(iph->saddr))
		return punt(ctx, in->slot, TNA_PUNT_MARTIAN);
	if (tna_features.ipv4_rp_filter &&
	    !ipv4_rp_ok(ctx, iph, ingress, tna_features.ipv4_rp_filter == 2))
		return punt(ctx, in->slot, TNA_PUNT_RP_FILTER);

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.l4_protocol = iph->protocol;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ifindex = ingress;
	fib.ipv4_src = iph->saddr;
	fib.ipv4_dst = iph->daddr;
	l4_ports(&fib, iph + 1, end);
	return forward_tail(ctx, in, ingress, &fib, iph, 0,
			    sizeof(struct ethhdr) + bpf_ntohs(iph->tot_len));
}

static __always_inline int ipv6_forward(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 ingress)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ipv6hdr *ip6h = data + sizeof(struct ethhdr);
	struct bpf_fib_lookup fib = {};
	enum tna_code why;
	__u32 wire_len;

	if ((void *)(ip6h + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	why = ipv6_check(ip6h, end - data);
	if (why)
		return punt(ctx, in->slot, why);

	wire_len = sizeof(struct ethhdr) + sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6h & IPV6_FLOWINFO_MASK;
	fib.l4_protocol = ip6h->nexthdr;
	fib.tot_len = wire_len - sizeof(struct ethhdr);
	fib.ifindex = ingress;
	__builtin_memcpy(fib.ipv6_src, &ip6h->saddr, sizeof(fib.ipv6_src));
	__builtin_memcpy(fib.ipv6_dst, &ip6h->daddr, sizeof(fib.ipv6_dst));
	l4_ports(&fib, ip6h + 1, end);
	return forward_tail(ctx, in, ingress, &fib, ip6h, 1, wire_len);
}

/*
 * Frames received on a bridge port: what br_handle_frame() and br_handle_frame_finish() would
 * do, for the one case the fast path takes over: known unicast from a known source, to a port
 * that forwards (switched), or to the bridge's own MAC when the bridge routes (SVI). Everything
 * else (flooding, learning, STP, link-local groups, special port flags) is the kernel's.
 *
 * XDP runs on the port before the bridge's rx_handler, so a punted frame reaches the bridge
 * exactly as if TNA were not there.
 */

/* Known unicast to another port: br_forward() without the skb. */
static __always_inline int bridge_forward(struct xdp_md *ctx, const struct tna_iface *in,
					  __u32 bridge, __u32 port, struct tna_fdb_entry *src)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ethhdr *eth = data;
	__u32 frame_len = end - data, wire_len = frame_len;
	const struct tna_iface *out;
	enum tna_code why = 0;
	int ret;

	out = bridge_egress_port(bridge, port, &why);
	if (!out)
		return punt(ctx, in->slot, why);
	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = data + sizeof(*eth);

		if (!tna_features.bridge_ipv4 || (in->flags & TNA_IF_NO_BRIDGE_IPV4))
			return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
		if ((void *)(iph + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		if (tna_features.bridge_ipv4 == 2) {
			why = brnf_ipv4_check(iph, frame_len);
			if (why)
				return punt(ctx, in->slot, why);
			wire_len = sizeof(*eth) + bpf_ntohs(iph->tot_len);	/* it trims */
		}
		if (tna_features.verify_l4_csum && !bridged_ipv4_csum_ok(ctx, iph, frame_len))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = data + sizeof(*eth);

		if (!tna_features.bridge_ipv6 || (in->flags & TNA_IF_NO_BRIDGE_IPV6))
			return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
		if ((void *)(ip6h + 1) > end)
			return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
		if (tna_features.bridge_ipv6 == 2) {
			why = ipv6_header_check(ip6h, frame_len);	/* br_validate_ipv6() */
			if (why)
				return punt(ctx, in->slot, why);
			wire_len = sizeof(*eth) + sizeof(*ip6h) + bpf_ntohs(ip6h->payload_len);
		}
		if (tna_features.verify_l4_csum && !bridged_ipv6_csum_ok(ctx, ip6h, frame_len))
			return punt(ctx, in->slot, TNA_PUNT_L4_CSUM);
	} else {
		return punt(ctx, in->slot, TNA_PUNT_NOT_IP);
	}

	if (wire_len != frame_len && trim_to(ctx, wire_len))
		return punt(ctx, in->slot, TNA_PUNT_BAD_LENGTH);
	if (!fits_mtu(ctx, port, out))
		return punt(ctx, in->slot, TNA_PUNT_TOO_BIG);
	ret = bpf_redirect_map(&tna_tx, port, XDP_PASS);
	if (ret != XDP_REDIRECT)
		return punt(ctx, in->slot, TNA_PUNT_EGRESS);
	count(in->slot, TNA_BRIDGED, wire_len);
	count(out->slot, TNA_TRANSMITTED, wire_len);
	fdb_note_seen(src);
	return XDP_REDIRECT;
}

/* For the bridge's own MAC: br_pass_frame_up(), then routed with the bridge as input device. */
static __always_inline int bridge_route(struct xdp_md *ctx, const struct tna_iface *in,
					__u32 bridge, __be16 proto, struct tna_fdb_entry *src)
{
	int ret;

	if (proto == bpf_htons(ETH_P_IP) && tna_features.ipv4_router &&
	    !(in->flags & TNA_IF_NO_IPV4))
		ret = ipv4_forward(ctx, in, bridge);
	else if (proto == bpf_htons(ETH_P_IPV6) && tna_features.ipv6_router &&
		 !(in->flags & TNA_IF_NO_IPV6))
		ret = ipv6_forward(ctx, in, bridge);
	else
		return punt(ctx, in->slot, TNA_PUNT_BRIDGE_LOCAL);
	if (ret == XDP_REDIRECT)
		fdb_note_seen(src);
	return ret;
}

static __always_inline int bridge_rx(struct xdp_md *ctx, const struct tna_iface *in)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	struct ethhdr *eth = data;
	__u32 ingress = ctx->ingress_ifindex, bridge;
	const struct tna_brport *port;
	struct tna_fdb_entry *src, *dst;
	const struct tna_iface *br;

	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	if (invalid_source(eth->h_source))
		return punt(ctx, in->slot, TNA_PUNT_MARTIAN);
	if (link_local_group(eth->h_dest))
		return punt(ctx, in->slot, TNA_PUNT_LINK_LOCAL_GROUP);
	port = brport_lookup(ingress);
	if (!port || !(port->flags & TNA_BRPORT_FORWARDING))	/* learning state: learn + drop */
		return punt(ctx, in->slot, TNA_PUNT_PORT_STATE);
	if (port->flags & TNA_BRPORT_PUNT)
		return punt(ctx, in->slot, TNA_PUNT_PORT_FLAGS);
	if (eth->h_proto == ETH_P_8021Q_BE || eth->h_proto == ETH_P_8021AD_BE)
		return punt(ctx, in->slot, TNA_PUNT_TAGGED);
	bridge = port->bridge;

	/* br_fdb_update(): the kernel learns from every frame; only a source it already knows on
	 * this port needs nothing but the refresh we note on success. */
	src = fdb_lookup(bridge, eth->h_source);
	if (!src || (src->flags & (TNA_FDB_LOCAL | TNA_FDB_MOVED)))
		return punt(ctx, in->slot, TNA_PUNT_LEARN);
	if (src->port != ingress) {
		if (!(src->flags & TNA_FDB_STICKY))
			fdb_mark_moved(bridge, eth->h_source, src);
		return punt(ctx, in->slot, TNA_PUNT_LEARN);
	}

	if (eth->h_dest[0] & 1)
		return punt(ctx, in->slot, broadcast(eth->h_dest) ? TNA_PUNT_BROADCAST
								 : TNA_PUNT_L2_MULTICAST);
	dst = fdb_lookup(bridge, eth->h_dest);
	if (!dst || (dst->flags & TNA_FDB_MOVED))
		return punt(ctx, in->slot, TNA_PUNT_UNKNOWN_UNICAST);
	if (dst->flags & TNA_FDB_LOCAL) {
		if (tna_features.ipv4_router || tna_features.ipv6_router) {
			br = iface_lookup(bridge);
			if (br && mac_equal(eth->h_dest, br->mac))
				return bridge_route(ctx, in, bridge, eth->h_proto, src);
		}
		return punt(ctx, in->slot, TNA_PUNT_BRIDGE_LOCAL);
	}
	if (dst->port == ingress)	/* dropped unless hairpin (hairpin ports are punted) */
		return punt(ctx, in->slot, TNA_PUNT_SAME_IFACE);
	return bridge_forward(ctx, in, bridge, dst->port, src);
}

SEC("xdp")
int tna_xdp(struct xdp_md *ctx)
{
	void *data = frame_start(ctx), *end = frame_end(ctx);
	__u32 ingress = ctx->ingress_ifindex;
	const struct tna_iface *in = iface_lookup(ingress);
	struct ethhdr *eth = data;

	if (!in)
		return punt(ctx, 0, TNA_PUNT_NO_PORT);
	if ((void *)(eth + 1) > end)
		return punt(ctx, in->slot, TNA_PUNT_MALFORMED);
	if (eth->h_proto == bpf_htons(ETH_P_IP))
		note_redirect(ctx);
	if (tna_features.bridge_port)
		return bridge_rx(ctx, in);
	if (eth->h_dest[0] & 1)
		return punt(ctx, in->slot, TNA_PUNT_L2_MULTICAST);
	if (!mac_equal(eth->h_dest, in->mac))
		return punt(ctx, in->slot, TNA_PUNT_NOT_FOR_US);

	switch (eth->h_proto) {
	case bpf_htons(ETH_P_IP):
		if (tna_features.ipv4_router && !(in->flags & TNA_IF_NO_IPV4))
			return ipv4_forward(ctx, in, ingress);
		return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
	case bpf_htons(ETH_P_IPV6):
		if (tna_features.ipv6_router && !(in->flags & TNA_IF_NO_IPV6))
			return ipv6_forward(ctx, in, ingress);
		return punt(ctx, in->slot, TNA_PUNT_FAMILY_OFF);
	default:
		return punt(ctx, in->slot, TNA_PUNT_NOT_IP);
	}
}

char _license[] SEC("license") = "GPL";
