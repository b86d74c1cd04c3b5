// SPDX-License-Identifier: BSD-3-Clause
/*
 * XDP filter for a net_af_xdp collector port: frames that carry UDP to one of the collector
 * ports go to the AF_XDP socket of their queue (the engine); everything else is passed to the
 * kernel, so the interface keeps working for SSH, ARP, routing protocols...
 *
 * Load it through the PMD: net_af_xdp0,iface=eth1,xdp_prog=.../nm_xdp_collector.bpf.o. The PMD
 * puts its sockets into xsks_map (that name is what it looks for).
 *
 * The ports are compiled in (NM_XDP_PORTS, default the shipped collector.ports 2055, 2056, 4739,
 * 6343): keep them equal to collector.ports. Cursor-and-end parsing, as the verifier demands:
 * every header is checked against data_end before it is read.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef NM_XDP_PORTS
#define NM_XDP_PORTS 2055, 2056, 4739, 6343
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct vlan_hdr_ {
	__be16 tci;
	__be16 proto;
};

static __always_inline int
collector_port(__u16 port)
{
	static const __u16 ports[] = {NM_XDP_PORTS};
	unsigned int i;

#pragma unroll
	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++)
		if (port == ports[i])
			return 1;
	return 0;
}

SEC("xdp")
int
nm_xdp_collector(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	__u16 proto;
	void *p;
	int i;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	proto = eth->h_proto;
	p = eth + 1;
#pragma unroll
	for (i = 0; i < 2; i++) {
		struct vlan_hdr_ *v = p;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(v + 1) > end)
			return XDP_PASS;
		proto = v->proto;
		p = v + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = p;

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5)
			return XDP_PASS;
		/* fragments go to the kernel: the engine does not reassemble */
		if (ip->frag_off & bpf_htons(0x3fff))
			return XDP_PASS;
		udp = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = p;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > end || !collector_port(bpf_ntohs(udp->dest)))
		return XDP_PASS;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
