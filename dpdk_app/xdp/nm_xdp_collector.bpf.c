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
 *
 * [collector] allow: the engine writes the admitted prefixes into nm_allow (an LPM trie keyed
 * like the config, IPv4 as ::ffff:a.b.c.d) and sets nm_allow_on once the PMD has loaded this
 * program (xdp_allow.c). Collector UDP from any other source is dropped here, before it costs
 * a descriptor, an mbuf or a look at the RX lcore: counted per source in an LRU table (a flood
 * from many sources evicts old ones, never grows it) and in a per-CPU total that eviction does
 * not touch. Until the flag is set (start-up) or with no allow list, every source passes to the
 * engine, whose RX path applies the same list: XDP is the cheap first cut, the RX path the
 * authority (and the only filter on ports without this program).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "nm_xdp_allow.h"

#ifndef NM_XDP_PORTS
#define NM_XDP_PORTS 2055, 2056, 4739, 6343
#endif

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, NM_XDP_ALLOW_MAX);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* the kernel demands it of LPM tries */
	__type(key, struct nm_xdp_lpm_key);
	__type(value, __u8);
} nm_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} nm_allow_on SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, NM_XDP_DROP_SOURCES);
	__type(key, struct nm_xdp_src);
	__type(value, struct nm_xdp_count);
} nm_allow_drop SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nm_xdp_count);
} nm_allow_total SEC(".maps");

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

/* 1: the source is admitted (or no list is set); 0: drop the datagram, counted. */
static __always_inline int
allowed(const struct nm_xdp_lpm_key *key, __u64 frame_len)
{
	struct nm_xdp_count *c, one = {1, frame_len};
	struct nm_xdp_src src;
	__u32 zero = 0, *on;

	on = bpf_map_lookup_elem(&nm_allow_on, &zero);
	if (on == NULL || *on == 0 || bpf_map_lookup_elem(&nm_allow, key) != NULL)
		return 1;
	c = bpf_map_lookup_elem(&nm_allow_total, &zero);
	if (c != NULL) {
		c->packets++;
		c->bytes += frame_len;
	}
	__builtin_memcpy(src.addr, key->addr, sizeof(src.addr));
	c = bpf_map_lookup_elem(&nm_allow_drop, &src);
	if (c == NULL && bpf_map_update_elem(&nm_allow_drop, &src, &one, BPF_NOEXIST) == 0)
		return 0;
	/* Known, or another CPU added it between the look-up and the insert. */
	if (c == NULL)
		c = bpf_map_lookup_elem(&nm_allow_drop, &src);
	if (c != NULL) {
		__sync_fetch_and_add(&c->packets, 1);
		__sync_fetch_and_add(&c->bytes, frame_len);
	}
	return 0;
}

SEC("xdp")
int
nm_xdp_collector(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct nm_xdp_lpm_key key = {.prefixlen = 128};
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
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__builtin_memcpy(&key.addr[12], &ip->saddr, 4);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = p;

		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
		__builtin_memcpy(key.addr, &ip6->saddr, 16);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > end || !collector_port(bpf_ntohs(udp->dest)))
		return XDP_PASS;
	if (!allowed(&key, (__u64)(end - data)))
		return XDP_DROP;
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
