/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * /netmeta/ports: is the engine dropping, where, and how busy are its lcores. One reply holds
 *   port/<id>         the NIC's counters (rte_eth_stats_get), drops (imissed + rx_nombuf +
 *                     ierrors), link state and speed, the port's name, device and role
 *   port/<id>/q<q>    each RX queue: the PMD's per-queue counters where it gives them, the
 *                     frames the engine polled from it and the lcore that polls it
 *   lcore/<id>        each RX lcore: polls, the share that found work (busy %, over the last
 *                     second and over the run), bursts, mean burst size, records and frames
 *                     per second (from the main lcore's per-second tick, log_rate.c)
 * and at the top the totals: drops of every port, so a dropping engine shows in one number.
 * The port and queue counters are tables (opsview.h); the Prometheus exposition walks the same.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_ethdev.h>
#include <rte_telemetry.h>

#include "opsview.h"

static const struct nm_ctr_desc port_desc[] = {
	NM_PORT_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_port_stats)};
const struct nm_ctr_set nm_port_ctr_set =
	NM_CTR_SET("port", "", "per DPDK port, read from the PMD (rte_eth_stats_get) when asked",
		   SINGLE_WRITER, struct nm_port_stats, port_desc);

static const struct nm_ctr_desc queue_desc[] = {
	NM_QUEUE_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_queue_stats)};
const struct nm_ctr_set nm_queue_ctr_set =
	NM_CTR_SET("queue", "", "per RX queue: the PMD's q_* counters and the polling lcore's",
		   SINGLE_WRITER, struct nm_queue_stats, queue_desc);

const char *
nm_port_role_name(enum nm_port_role r)
{
	switch (r) {
	case NM_ROLE_COLLECTOR:
		return "collector";
	case NM_ROLE_MIRROR_RX:
		return "mirror-rx";
	case NM_ROLE_MIRROR_TX:
		return "mirror-tx";
	}
	return "unknown";
}

int
nm_port_read(const struct nm_app *app, unsigned int i, struct nm_port_stats *ps,
	     struct nm_queue_stats *qs, int *lcores, unsigned int max)
{
	const struct nm_port_cfg *pc = &app->cfg.ports[i];
	uint16_t pid = app->ports[i].id;
	struct rte_eth_stats es;
	struct rte_eth_link link;
	unsigned int q, n, w, k;
	int ret;

	memset(ps, 0, sizeof(*ps));
	ret = rte_eth_stats_get(pid, &es);
	if (ret != 0)
		return ret;
	ps->ipackets = es.ipackets;
	ps->ibytes = es.ibytes;
	ps->imissed = es.imissed;
	ps->rx_nombuf = es.rx_nombuf;
	ps->ierrors = es.ierrors;
	ps->drops = es.imissed + es.rx_nombuf + es.ierrors;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(pid, &link) == 0) {
		ps->link_up = link.link_status == RTE_ETH_LINK_UP;
		ps->link_speed_mbps =
			link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
	}
	n = RTE_MIN(pc->rx_queues, max);
	for (q = 0; q < n; q++) {
		memset(&qs[q], 0, sizeof(qs[q]));
		lcores[q] = -1;
		if (q < RTE_ETHDEV_QUEUE_STAT_CNTRS) {
			qs[q].packets = es.q_ipackets[q];
			qs[q].bytes = es.q_ibytes[q];
			qs[q].errors = es.q_errors[q];
		}
		for (w = 0; w < app->n_workers; w++)
			for (k = 0; k < app->workers[w]->n_rxq; k++) {
				const struct nm_rxq *r = &app->workers[w]->rxq[k];

				if (r->port_id == pid && r->queue_id == q) {
					lcores[q] = (int)app->workers[w]->lcore_id;
					qs[q].polled = nm_ctr_get(&r->rx_pkts);
				}
			}
	}
	return (int)n;
}

/* Telemetry callbacks get no user argument; the app is set once before registration. */
static const struct nm_app *tel_app;

static void
tel_add(const char *key, uint64_t value, const struct nm_ctr_desc *d, void *ctx)
{
	(void)d;
	rte_tel_data_add_dict_u64(ctx, key, value);
}

/* DPDK 22.11 writes string values into the JSON reply as they are: keep quotes out. */
static void
add_str(struct rte_tel_data *c, const char *name, const char *val)
{
	char buf[RTE_TEL_MAX_STRING_LEN];
	char *p;

	snprintf(buf, sizeof(buf), "%s", val);
	for (p = buf; *p != '\0'; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
	rte_tel_data_add_dict_string(c, name, buf);
}

/* a/b as a decimal with one digit ("37.5"); "-" when b is 0. */
static void
add_ratio(struct rte_tel_data *c, const char *name, uint64_t a, uint64_t b, double scale)
{
	char buf[32];

	if (b == 0)
		snprintf(buf, sizeof(buf), "-");
	else
		snprintf(buf, sizeof(buf), "%.1f", (double)a * scale / (double)b);
	rte_tel_data_add_dict_string(c, name, buf);
}

static void
add_container(struct rte_tel_data *d, const char *key, struct rte_tel_data *c)
{
	if (rte_tel_data_add_dict_container(d, key, c, 0) != 0)
		rte_tel_data_free(c);
}

/* Queues in one reply: the dict holds at most RTE_TEL_MAX_DICT_ENTRIES entries. */
#define MAX_Q 64

static int
tel_ports(const char *cmd, const char *params, struct rte_tel_data *d)
{
	const struct nm_app *app = tel_app;
	struct nm_port_stats ps;
	struct nm_queue_stats qs[MAX_Q];
	int lcores[MAX_Q];
	uint64_t drops = 0, imissed = 0;
	unsigned int i, q, listed = 0;
	char key[64];

	(void)cmd;
	(void)params;
	rte_tel_data_start_dict(d);
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];
		struct rte_tel_data *c;
		int n = nm_port_read(app, i, &ps, qs, lcores, MAX_Q);

		if (n < 0)
			continue;
		drops += ps.drops;
		imissed += ps.imissed;
		c = rte_tel_data_alloc();
		if (c == NULL)
			return -ENOMEM;
		rte_tel_data_start_dict(c);
		rte_tel_data_add_dict_u64(c, "port", app->ports[i].id);
		add_str(c, "name", pc->name);
		add_str(c, "device", pc->device);
		rte_tel_data_add_dict_string(c, "role", nm_port_role_name(pc->role));
		rte_tel_data_add_dict_string(c, "link", ps.link_up ? "up" : "down");
		rte_tel_data_add_dict_u64(c, "queues", pc->rx_queues);
		nm_ctr_foreach(&nm_port_ctr_set, &ps, "", tel_add, c);
		snprintf(key, sizeof(key), "port/%u", app->ports[i].id);
		add_container(d, key, c);
		for (q = 0; q < (unsigned int)n && listed < MAX_Q; q++, listed++) {
			c = rte_tel_data_alloc();
			if (c == NULL)
				return -ENOMEM;
			rte_tel_data_start_dict(c);
			rte_tel_data_add_dict_u64(c, "port", app->ports[i].id);
			add_str(c, "name", pc->name);
			rte_tel_data_add_dict_u64(c, "queue", q);
			rte_tel_data_add_dict_int(c, "lcore", lcores[q]);
			nm_ctr_foreach(&nm_queue_ctr_set, &qs[q], "", tel_add, c);
			snprintf(key, sizeof(key), "port/%u/q%u", app->ports[i].id, q);
			add_container(d, key, c);
		}
	}
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];
		const struct nm_worker_rate *r = &w->rate;
		struct rte_tel_data *c = rte_tel_data_alloc();
		uint64_t polls = nm_ctr_get(&w->st.polls), busy = nm_ctr_get(&w->st.busy_polls);
		uint64_t bursts = nm_ctr_get(&w->st.bursts), rx = nm_ctr_get(&w->st.rx_packets);
		char qlist[RTE_TEL_MAX_STRING_LEN];
		size_t o = 0;

		if (c == NULL)
			return -ENOMEM;
		rte_tel_data_start_dict(c);
		rte_tel_data_add_dict_u64(c, "lcore", w->lcore_id);
		qlist[0] = '\0';
		for (q = 0; q < w->n_rxq && o < sizeof(qlist); q++)
			o += (size_t)snprintf(qlist + o, sizeof(qlist) - o, "%s%u/%u", q ? " " : "",
					      w->rxq[q].port_id, w->rxq[q].queue_id);
		rte_tel_data_add_dict_string(c, "queues", qlist);
		add_ratio(c, "busy_pct", nm_ctr_get(&r->busy_ppm), 10000, 1.0);
		add_ratio(c, "busy_pct_run", busy, polls, 100.0);
		add_ratio(c, "mean_burst", nm_ctr_get(&r->burst_milli), 1000, 1.0);
		add_ratio(c, "mean_burst_run", rx, bursts, 1.0);
		rte_tel_data_add_dict_u64(c, "records_per_s", nm_ctr_get(&r->records_per_s));
		rte_tel_data_add_dict_u64(c, "packets_per_s", nm_ctr_get(&r->packets_per_s));
		rte_tel_data_add_dict_u64(c, "polls", polls);
		rte_tel_data_add_dict_u64(c, "busy_polls", busy);
		rte_tel_data_add_dict_u64(c, "bursts", bursts);
		rte_tel_data_add_dict_u64(c, "rx_packets", rx);
		rte_tel_data_add_dict_u64(c, "records", nm_ctr_get(&w->st.records));
		snprintf(key, sizeof(key), "lcore/%u", w->lcore_id);
		add_container(d, key, c);
	}
	rte_tel_data_add_dict_u64(d, "ports", app->cfg.n_ports);
	rte_tel_data_add_dict_u64(d, "lcores", app->n_workers);
	rte_tel_data_add_dict_u64(d, "imissed", imissed);
	rte_tel_data_add_dict_u64(d, "drops", drops);
	return 0;
}

int
nm_tel_ports_register(struct nm_app *app)
{
	tel_app = app;
	return rte_telemetry_register_cmd("/netmeta/ports", tel_ports,
					  "Per port and RX queue: packets, bytes, imissed, nombuf, "
					  "errors, drops, link, lcore; per lcore: busy %, bursts.");
}
