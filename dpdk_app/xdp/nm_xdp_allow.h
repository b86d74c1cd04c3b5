/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the XDP filter (nm_xdp_collector.bpf.c) and the engine (xdp_allow.c) share about
 * [collector] allow: the maps' names, keys and values. Both sides include this header, so a
 * layout change cannot reach only one of them; the engine also checks each map's key and value
 * sizes against these structs and refuses a program built from another version.
 *
 * Threading: the XDP program writes nm_allow_drop (atomic adds) and nm_allow_total (per CPU);
 * the engine's main lcore writes nm_allow and nm_allow_on at start-up and on reload; telemetry
 * and the summary read the counters. The kernel serialises map updates per element.
 */
#ifndef NM_XDP_ALLOW_H
#define NM_XDP_ALLOW_H

#include <linux/types.h>

/* Map names as the kernel keeps them (at most BPF_OBJ_NAME_LEN - 1 = 15 characters). */
#define NM_XDP_MAP_ALLOW "nm_allow"		/* LPM trie of admitted sources */
#define NM_XDP_MAP_ALLOW_ON "nm_allow_on"	/* array[1]: 1 when an allow list is set */
#define NM_XDP_MAP_ALLOW_DROP "nm_allow_drop"	/* LRU hash: source -> dropped */
#define NM_XDP_MAP_ALLOW_TOTAL "nm_allow_total" /* per-CPU array[1]: every drop */

/*
 * Trie room: [collector] allow (64) + one /128 per [exporter.NAME] address (256) + its
 * sflow_sources relays (8 each): 2,368 at most; xdp_allow.c checks the count before writing.
 */
#define NM_XDP_ALLOW_MAX 4096
/* Sources the drop table attributes; beyond it the LRU evicts, the total still counts. */
#define NM_XDP_DROP_SOURCES 1024

/* An address as the config and the engine spell it: IPv4 as ::ffff:a.b.c.d/(96 + len). */
struct nm_xdp_lpm_key {
	__u32 prefixlen; /* 0-128 */
	__u8 addr[16];
};

struct nm_xdp_src {
	__u8 addr[16];
};

struct nm_xdp_count {
	__u64 packets;
	__u64 bytes; /* whole frames, Ethernet header included */
};

#endif /* NM_XDP_ALLOW_H */
