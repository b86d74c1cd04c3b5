/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_OPSVIEW_H
#define NM_OPSVIEW_H

/*
 * The operator's view (issue 13): where the engine drops, how busy its lcores are, what the
 * traffic is, in forms a monitoring stack scrapes.
 *   tel_ports.c  /netmeta/ports: per port and RX queue (NIC counters, link, polling lcore) and
 *                per lcore (load, bursts, rates)
 *   top.c        /netmeta/top,N: the heaviest rows of the last completed second, kept by the
 *                flusher while it drains (never on an RX lcore)
 *   prom.c       /netmeta/metrics: the Prometheus text exposition from the counter tables, in
 *                pages under the telemetry reply limit, for scripts/netmeta-stats --prometheus
 *   log_rate.c   the main lcore's per-second tick: per-lcore rates, per-packet conditions
 *                logged at most once a second with their count, the start-up banner, syslog
 *                priority prefixes under systemd
 */

#include <stdint.h>
#include <stdio.h>

#include "app.h"

/* ---- tel_ports.c ---- */

/*
 * A port's counters (rte_eth_stats_get, rte_eth_link_get_nowait), read when asked; the NIC or
 * PMD writes them. drops = imissed + rx_nombuf + ierrors: a port that drops shows at a glance.
 * Software ports whose PMD leaves the kernel's drops out of imissed (DPDK 22.11: net_af_packet,
 * net_tap, and net_af_xdp's full-RX-ring drops) get them added, from the kernel (tel_ports.c).
 */
#define NM_PORT_CTRS(X, A, c)                                                                      \
	X(c, ipackets, COUNTER, "packets", 0, "", "frames the port received (rte_eth_stats)")      \
	X(c, ibytes, COUNTER, "bytes", 0, "", "bytes the port received")                           \
	X(c, imissed, COUNTER, "packets", 0, "",                                                   \
	  "frames the NIC dropped because the RX queues were full (the lcores were too slow)")     \
	X(c, kernel_drops, COUNTER, "packets", 0, "",                                              \
	  "of imissed: what the kernel dropped for a software port whose PMD does not count it")   \
	X(c, rx_nombuf, COUNTER, "packets", 0, "", "frames dropped for want of an mbuf")           \
	X(c, ierrors, COUNTER, "packets", 0, "", "erroneous frames the port received")             \
	X(c, drops, COUNTER, "packets", 0, "", "imissed + rx_nombuf + ierrors")                    \
	X(c, link_up, GAUGE, "", 0, "", "1 when the link is up")                                   \
	X(c, link_speed_mbps, GAUGE, "Mbit/s", 0, "", "link speed (0: unknown)")

struct nm_port_stats {
	NM_PORT_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

/* An RX queue's: the PMD's per-queue counters where it gives them, and what the engine polled. */
#define NM_QUEUE_CTRS(X, A, c)                                                                     \
	X(c, packets, COUNTER, "packets", 0, "", "frames of the queue (rte_eth_stats q_ipackets)") \
	X(c, bytes, COUNTER, "bytes", 0, "", "bytes of the queue (q_ibytes)")                      \
	X(c, errors, COUNTER, "packets", 0, "", "erroneous frames of the queue (q_errors)")        \
	X(c, polled, COUNTER, "packets", 0, "", "frames the polling lcore took from the queue")

struct nm_queue_stats {
	NM_QUEUE_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

extern const struct nm_ctr_set nm_port_ctr_set;	 /* "port" */
extern const struct nm_ctr_set nm_queue_ctr_set; /* "queue" */

/* The role of a configured port as the config spells it ("collector", "mirror-rx", ...). */
const char *nm_port_role_name(enum nm_port_role r);

/*
 * Port i of the config (app->ports[i]) now: its counters into ps, its queues' into qs (n of
 * them: the configured rx_queues, at most max) and the lcore polling each into lcores (-1: none).
 * Returns the number of queues, or -errno when the port cannot be read. Any thread.
 */
/*
 * A string value in a telemetry dict, with the characters DPDK's JSON writer would pass through
 * unescaped (quote, backslash, control characters) replaced by "'" (tel_exporters.c).
 */
struct rte_tel_data;
void nm_tel_add_str(struct rte_tel_data *c, const char *name, const char *val);

int nm_port_read(const struct nm_app *app, unsigned int i, struct nm_port_stats *ps,
		 struct nm_queue_stats *qs, int *lcores, unsigned int max);

/* ---- top.c ---- */

#define NM_TOP_MAX 32 /* entries kept per second; /netmeta/top,N serves N <= this */

/* One row of the top list: the key's displayed parts and its weight. */
struct nm_top_entry {
	uint64_t weight;	 /* bytes x sampling rate */
	uint64_t bytes, packets; /* as the row carries them (not scaled) */
	uint64_t sampling_rate;
	uint8_t exporter[NM_ADDR_LEN];
	uint8_t src_addr[NM_ADDR_LEN];
	uint8_t dst_addr[NM_ADDR_LEN];
	uint32_t in_if, out_if;
	uint16_t src_port, dst_port;
	uint8_t proto, type;
};

/*
 * The flusher's side (main lcore only): nm_top_init once before the loop; nm_top_offer_row for
 * every table entry it drains (lib/agg/agg.h: the second and rate read from the compact key, a
 * compare against the heap's smallest; a row that enters has its key decoded and costs
 * log2(NM_TOP_MAX) swaps);
 * nm_top_tick after each poll: publishes the second being built once a newer second arrives or
 * (live) the clock has passed it; nm_top_finish at the end publishes what is left.
 * Readers (telemetry threads) copy the published second under a sequence count, never a lock.
 */
void nm_top_init(struct nm_app *app);
void nm_top_offer_row(struct nm_top *t, const struct nm_agg_row *row);
void nm_top_tick(struct nm_top *t, uint64_t now_ns, int live);
void nm_top_finish(struct nm_top *t);

/* ---- prom.c ---- */

/*
 * The whole Prometheus text exposition (format 0.0.4) of the engine: every counter set from its
 * table (worker, decode and aggregation sets per lcore, label lcore; flusher, Kafka, exporter
 * table), ports (label port, role) and queues (port, queue, lcore), and per exporter (labels
 * exporter, domain, protocol; decode errors by reason). Any thread; 0 or -errno.
 */
int nm_prom_write(const struct nm_app *app, FILE *f);

/* ---- log_rate.c ---- */

/*
 * Under systemd (JOURNAL_STREAM set) every line on stdout/stderr and every rte_log line gets a
 * syslog priority prefix (<3> error, <4> warning, <6> info...), so the journal keeps priorities.
 * Call first in the process, before EAL starts logging. No-op elsewhere.
 */
void nm_log_journal_init(void);

/* The start-up banner: ports, queues, lcores, hugepages or not, broker and topic. Main lcore. */
void nm_banner(const struct nm_app *app);

/*
 * Main lcore, every loop iteration: once a second, per-lcore rates from counter deltas
 * (struct nm_worker_rate) and one log line per per-packet condition that occurred in that
 * second, with its count (malformed frames and datagrams, unknown templates, refusals, drops).
 * Nothing is logged on the RX path.
 */
void nm_lograte_init(struct nm_app *app);
void nm_lograte_tick(struct nm_app *app);

/* ---- registration (stats.c calls these) ---- */
int nm_tel_ports_register(struct nm_app *app);
int nm_top_register(struct nm_app *app);
int nm_prom_register(struct nm_app *app);

#endif /* NM_OPSVIEW_H */
