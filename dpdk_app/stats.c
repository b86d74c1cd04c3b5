/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The engine's counters: the worker and flusher sets (their tables are in app.h), summing the
 * per-lcore ones, the /netmeta/stats and /netmeta/kafka telemetry commands -- walks over the
 * counter tables (lib/ctr/ctr.h), no counter written out here. The Prometheus exposition is in
 * prom.c, the other operator's views in the files opsview.h lists.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_telemetry.h>

#include "app.h"
#include "opsview.h"
#include "exporter/exporter.h"

const char *
nm_udp_class_elem(unsigned int i)
{
	return nm_udp_class_name((enum nm_udp_class)i);
}

static const struct nm_ctr_desc worker_desc[] = {
	NM_WORKER_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_worker_stats)};
const struct nm_ctr_set nm_worker_ctr_set =
	NM_CTR_SET("worker", "", "per RX lcore (struct nm_worker.st), written by that lcore",
		   SINGLE_WRITER, struct nm_worker_stats, worker_desc);

static const struct nm_ctr_desc flusher_desc[] = {
	NM_FLUSHER_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_flusher_stats)};
const struct nm_ctr_set nm_flusher_ctr_set =
	NM_CTR_SET("flusher", "", "struct nm_app.fl, written by the main (flusher) lcore",
		   SINGLE_WRITER, struct nm_flusher_stats, flusher_desc);

void
nm_stats_sum(const struct nm_app *app, struct nm_worker_stats *out, struct nm_agg_stats *agg)
{
	unsigned int i, j;

	memset(out, 0, sizeof(*out));
	if (agg != NULL)
		memset(agg, 0, sizeof(*agg));
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];

		nm_ctr_sum(&nm_worker_ctr_set, out, &w->st);
		nm_ctr_sum(&nm_decode_ctr_set, &out->dec, &w->st.dec);
		if (agg != NULL)
			for (j = 0; j < NM_TABLES_PER_WORKER; j++)
				if (w->tables[j] != NULL)
					nm_agg_get_stats(w->tables[j], agg);
	}
}

void
nm_stats_snapshot(const struct nm_app *app, struct nm_stats_view *v)
{
	memset(v, 0, sizeof(*v));
	nm_stats_sum(app, &v->s, &v->a);
	nm_ctr_copy(&nm_flusher_ctr_set, &v->fl, &app->fl);
	if (app->kafka != NULL)
		nm_kafka_get_stats(app->kafka, &v->k);
	if (app->exp != NULL)
		nm_exp_get_stats(app->exp, &v->e);
	if (app->tmpl != NULL)
		nm_tmpl_cache_get_stats(app->tmpl, &v->t);
}

/*
 * Entries the sweep looks at per second: a full pass over the largest cache (65,536 templates
 * and as many rates) takes half a minute, against a timeout of minutes; each call holds the
 * template writer mutex for a few microseconds.
 */
#define NM_TMPL_SWEEP_BUDGET 4096

void
nm_tmpl_tick(struct nm_app *app)
{
	static uint64_t next_tsc;
	uint64_t tsc = rte_rdtsc();

	if (app->tmpl == NULL || tsc < next_tsc)
		return;
	next_tsc = tsc + app->tsc_hz;
	/*
	 * Wall-clock seconds, the scale of time_received; lib/tmpl clamps it to the data's.
	 * Whole seconds of TSC first: cycles * 1e9 would overflow 64 bits after a few seconds.
	 */
	(void)nm_tmpl_expire(app->tmpl,
			     app->start_ns / 1000000000ULL + (tsc - app->start_tsc) / app->tsc_hz,
			     NM_TMPL_SWEEP_BUDGET);
}

/* The sets of a view, in the order every combined view lists them. */
void
nm_stats_sets(const struct nm_stats_view *v, struct nm_stats_set out[NM_STATS_SETS])
{
	out[0] = (struct nm_stats_set){&nm_worker_ctr_set, &v->s};
	out[1] = (struct nm_stats_set){&nm_decode_ctr_set, &v->s.dec};
	out[2] = (struct nm_stats_set){&nm_agg_ctr_set, &v->a};
	out[3] = (struct nm_stats_set){&nm_flusher_ctr_set, &v->fl};
	out[4] = (struct nm_stats_set){&nm_kafka_ctr_set, &v->k};
	out[5] = (struct nm_stats_set){&nm_tmpl_ctr_set, &v->t};
	out[6] = (struct nm_stats_set){&nm_exp_ctr_set, &v->e};
}

/* Telemetry callbacks get no user argument; the app is set once before registration. */
static struct nm_app *tel_app;

static void
tel_add(const char *key, uint64_t value, const struct nm_ctr_desc *d, void *ctx)
{
	(void)d;
	rte_tel_data_add_dict_u64(ctx, key, value);
}

/* Every counter of the engine, keys with their set's prefix (kafka_..., agg_...). */
static int
tel_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_stats_view v;
	struct nm_stats_set sets[NM_STATS_SETS];
	unsigned int i;

	(void)cmd;
	(void)params;
	nm_stats_snapshot(tel_app, &v);
	nm_stats_sets(&v, sets);
	rte_tel_data_start_dict(d);
	/*
	 * A DPDK telemetry dictionary holds at most RTE_TEL_MAX_DICT_ENTRIES (256) entries and
	 * the other sets fill most of it: the template cache's answers /netmeta/templates.
	 */
	for (i = 0; i < NM_STATS_SETS; i++)
		if (sets[i].set != &nm_tmpl_ctr_set)
			nm_ctr_foreach(sets[i].set, sets[i].obj, sets[i].set->prefix, tel_add, d);
	return 0;
}

/* The template cache: templates, rates, held sets; every refusal and expiry. */
static int
tel_templates(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_tmpl_cache_stats t;

	(void)cmd;
	(void)params;
	memset(&t, 0, sizeof(t));
	if (tel_app->tmpl != NULL)
		nm_tmpl_cache_get_stats(tel_app->tmpl, &t);
	rte_tel_data_start_dict(d);
	nm_ctr_foreach(&nm_tmpl_ctr_set, &t, nm_tmpl_ctr_set.prefix, tel_add, d);
	return 0;
}

/* The Kafka sink: delivery, its queue, the spool, drops, the last error and the broker state. */
static int
tel_kafka(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_kafka_stats k = {0};

	(void)cmd;
	(void)params;
	if (tel_app->kafka != NULL)
		nm_kafka_get_stats(tel_app->kafka, &k);
	rte_tel_data_start_dict(d);
	rte_tel_data_add_dict_string(d, "broker_state",
				     k.broker_state == NM_KAFKA_BROKER_UP     ? "up"
				     : k.broker_state == NM_KAFKA_BROKER_DOWN ? "down"
									      : "unknown");
	rte_tel_data_add_dict_string(d, "last_error", nm_kafka_last_error(tel_app->kafka));
	nm_ctr_foreach(&nm_kafka_ctr_set, &k, "", tel_add, d);
	return 0;
}

NM_TEL_GUARDED(tel_stats_g, tel_stats, tel_app)
NM_TEL_GUARDED(tel_kafka_g, tel_kafka, tel_app)
NM_TEL_GUARDED(tel_templates_g, tel_templates, tel_app)

void
nm_tel_close(struct nm_app *app)
{
	__atomic_store_n(&app->tel_closed, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&app->tel_busy, __ATOMIC_SEQ_CST) != 0)
		rte_delay_us_sleep(1000);
}

int
nm_telemetry_register(struct nm_app *app)
{
	int ret;

	tel_app = app;
	ret = rte_telemetry_register_cmd("/netmeta/stats", tel_stats_g,
					 "Engine counters: frames, datagrams by protocol, decode "
					 "errors by reason, records, aggregation, Kafka delivery.");
	if (ret == 0)
		ret = rte_telemetry_register_cmd(
			"/netmeta/kafka", tel_kafka_g,
			"Kafka sink: queue depth, spool, delivered/failed "
			"messages and bytes, drops, last error, broker state.");
	if (ret == 0)
		ret = rte_telemetry_register_cmd(
			"/netmeta/templates", tel_templates_g,
			/* DPDK 22.11 refuses help texts of 128 bytes or more. */
			"Template cache: templates, rates, held sets; every refusal, eviction, "
			"expiry (tmpl_*).");
	ret = nm_tel_exporters_register(app) != 0 ? -1 : ret;
	ret = nm_tel_ports_register(app) != 0 ? -1 : ret;
	ret = nm_top_register(app) != 0 ? -1 : ret;
	ret = nm_prom_register(app) != 0 ? -1 : ret;
	return ret;
}
