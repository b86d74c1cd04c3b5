// SPDX-License-Identifier: BSD-3-Clause
/*
 * An XDP program for net_af_xdp without the allow maps of dpdk_app/xdp/nm_xdp_collector.bpf.c
 * (what an .bpf.o of an older build, or a user's own program, looks like): every frame to the
 * AF_XDP socket of its queue. test_afxdp_allow.py starts the engine with it and [collector]
 * allow set, which must stop start-up.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

SEC("xdp")
int
nm_xdp_noallow(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual BSD/GPL";
