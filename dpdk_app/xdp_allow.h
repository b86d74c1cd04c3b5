/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * [collector] allow in the XDP filter of net_af_xdp ports (xdp/nm_xdp_collector.bpf.c): after
 * the PMD has loaded the program given by xdp_prog=, find its maps on the interface, write the
 * admitted prefixes, switch the filter on, and read back what it dropped.
 *
 * The set written is the one the RX path admits (nm_exp_allowed): the allow prefixes, and when
 * a list is set each [exporter.NAME] address and sflow_sources relay as a /128. With no list the
 * filter stays off and every source reaches the engine.
 *
 * Threading: open, sync and free run on the main lcore (start-up, reload, teardown); read runs
 * on any thread (telemetry, the summary) between open and free. Each call makes bpf(2) system
 * calls: never on an RX lcore.
 */
#ifndef NM_XDP_ALLOW_APP_H
#define NM_XDP_ALLOW_APP_H

#include <stdint.h>

#include "config/config.h"

struct nm_xdp_allow;

/* Heaviest sources a read reports. */
#define NM_XDP_DROPS_TOP 16

/* What the XDP filters of the ports dropped, summed. */
struct nm_xdp_drops {
	uint64_t packets; /* every drop, including sources the LRU table evicted */
	uint64_t bytes;
	uint64_t sources; /* sources in the drop tables now (at most NM_XDP_DROP_SOURCES each) */
	unsigned int n_top;
	struct {
		uint8_t addr[16];
		uint64_t packets;
		uint64_t bytes;
	} top[NM_XDP_DROPS_TOP]; /* by packets, heaviest first */
};

/*
 * For the started port pc (device net_af_xdp...,iface=IF,...,xdp_prog=...): find the program on
 * IF and its maps, fill them from cfg (nm_xdp_allow_sync). *out is NULL and 0 returned when the
 * port is not net_af_xdp with xdp_prog=, or when no allow list is set and the program has no
 * nm_allow maps. Otherwise a negative errno, with a message on stderr naming the port and the
 * interface: an allow list that cannot be enforced in XDP stops start-up.
 */
int nm_xdp_allow_open(const struct nm_config *cfg, const struct nm_port_cfg *pc,
		      struct nm_xdp_allow **out);

/*
 * Write cfg's admitted set: every entry is added first and only then are the entries cfg no
 * longer has deleted, so the filter admits a superset of the old and the new set in between
 * (the RX path still refuses what cfg refuses). 0 or a negative errno (the message is the
 * caller's; the filter may then admit more than cfg, never less than both).
 */
int nm_xdp_allow_sync(struct nm_xdp_allow *xa, const struct nm_config *cfg);

/* Add the filter's drops into d (clear d first). 0 or a negative errno. */
int nm_xdp_allow_read(const struct nm_xdp_allow *xa, struct nm_xdp_drops *d);

/* The interface the filter is on (for messages). */
const char *nm_xdp_allow_iface(const struct nm_xdp_allow *xa);

/* The filter's program id: ports on one interface share it (read it once). */
uint32_t nm_xdp_allow_prog_id(const struct nm_xdp_allow *xa);

struct nm_app;

/*
 * The drops of every port's filter into d (cleared first; ports sharing a program read once).
 * The number of filters read (0: none, d all zero) or a negative errno. Any thread, between
 * nm_ports_setup() and nm_ports_close().
 */
int nm_app_xdp_drops(const struct nm_app *app, struct nm_xdp_drops *d);

/*
 * Reload: write next's admitted set into every port's filter (nm_xdp_allow_sync). Main lcore.
 * 0, or a negative errno with a message naming the port and interface.
 */
int nm_xdp_allow_reload(struct nm_app *app, const struct nm_config *next);

/* Close the maps (the program stays until the PMD detaches it). NULL is ignored. */
void nm_xdp_allow_free(struct nm_xdp_allow *xa);

#endif /* NM_XDP_ALLOW_APP_H */
