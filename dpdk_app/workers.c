/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Workers: the shared tables the decoders read (template cache, per-exporter table with the
 * config's overrides), the ports' lcore lists turned into queue -> lcore assignments, one
 * struct nm_worker per lcore that polls something, with its rings and aggregation tables, and
 * their launch and release.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_malloc.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "app.h"
#include "exporter/exporter.h"

int
nm_tables_create(struct nm_app *app)
{
	struct nm_tmpl_params tp = {.max_templates_per_exporter =
					    app->cfg.max_templates_per_exporter,
				    .max_rates_per_exporter = app->cfg.max_rates_per_exporter,
				    .template_timeout_s = app->cfg.template_timeout_s,
				    .hold_s = app->cfg.template_hold_s,
				    .max_templates = 65536,
				    .max_exporters = app->cfg.max_exporters};
	struct nm_exp_params ep = {
		.max_exporters = app->cfg.max_exporters,
		.exporter_timeout_s = app->cfg.exporter_timeout_s,
		.max_ifaces = 16384,
		.max_overrides = NM_CFG_MAX_EXPORTERS,
		.max_ifnames = NM_CFG_MAX_IFNAMES,
		.default_sampling_rate = app->cfg.default_sampling_rate,
		.agent_learn = app->cfg.sflow_agent_learn,
	};
	struct nm_exp_conf *x;
	unsigned int i;
	int ret;

	/*
	 * Without this table the [exporter.NAME] sampling overrides would silently not apply:
	 * its failure stops start-up like any other.
	 */
	app->exp = nm_exp_create(&ep);
	if (app->exp == NULL) {
		fprintf(stderr,
			"netmeta: cannot create the exporter table (%u exporters, %u "
			"interfaces): %s\n",
			ep.max_exporters, ep.max_ifaces, strerror(errno));
		return -ENOMEM;
	}
	/* Templates are counted and capped per exporter entry: one owner of per-exporter state. */
	tp.exp = app->exp;
	app->tmpl = nm_tmpl_cache_create(&tp);
	if (app->tmpl == NULL) {
		fprintf(stderr, "netmeta: cannot create the template cache: %s\n", strerror(errno));
		return -ENOMEM;
	}
	/* An expired exporter entry takes its templates with it (nm_exp_expire, flusher.c). */
	nm_exp_set_release(app->exp, nm_tmpl_exp_release, app->tmpl);
	/* [collector] allow first: the relays of sflow_sources take what room is left. */
	for (i = 0; i < app->cfg.n_allow; i++) {
		ret = nm_exp_allow_add(app->exp, app->cfg.allow[i].addr, app->cfg.allow[i].len);
		if (ret != 0) {
			fprintf(stderr, "netmeta: %s: [collector] allow: prefix %u: %s\n",
				app->cfg.source, i + 1, strerror(-ret));
			return ret;
		}
	}
	for (i = 0; i < app->cfg.n_exporters; i++) {
		const struct nm_exporter_cfg *e = &app->cfg.exporters[i];
		unsigned int j;

		for (j = 0, ret = 0; ret == 0 && j < e->n_sflow_sources; j++) {
			/* A relay named for an agent is admitted too (when allow is set). */
			if (app->cfg.n_allow != 0)
				ret = nm_exp_allow_add(app->exp, e->sflow_sources[j], 128);
			if (ret == 0)
				ret = nm_exp_agent_add(app->exp, e->address, e->sflow_sources[j]);
		}
		if (ret != 0) {
			fprintf(stderr,
				"netmeta: %s: [exporter.%s] sflow_sources cannot be applied: %s\n",
				app->cfg.source, e->name, strerror(-ret));
			return ret;
		}
	}
	/* Version 1 of the exporter sections (reload.c publishes the next ones). */
	x = nm_reload_exp_conf(&app->cfg, 1);
	if (x == NULL) {
		fprintf(stderr, "netmeta: %s: the [exporter.NAME] sections cannot be applied: %s\n",
			app->cfg.source, strerror(errno));
		return -ENOMEM;
	}
	nm_exp_publish(app->exp, x);
	return 0;
}

void
nm_tables_free(struct nm_app *app)
{
	/* The workers have stopped and unregistered; the main lcore is an online QSBR reader. */
	/* The template cache counts templates in the exporter table's entries: free it first. */
	nm_tmpl_cache_free(app->tmpl);
	app->tmpl = NULL;
	if (app->exp != NULL)
		nm_exp_free(app->exp);
	app->exp = NULL;
}

/*
 * The lcores that poll a port's queues: its lcores list, each an enabled worker lcore, or every
 * worker lcore when the list is empty. Queue q goes to the (q mod n)th of them.
 */
static int
port_lcores(const struct nm_port_cfg *pc, const unsigned int *workers, unsigned int n_workers,
	    unsigned int *out, unsigned int *n_out)
{
	char list[256];
	unsigned int i;

	RTE_BUILD_BUG_ON(NM_CFG_MAX_LCORES > NM_MAX_WORKERS);
	if (pc->n_lcores == 0) {
		memcpy(out, workers, n_workers * sizeof(*out));
		*n_out = n_workers;
		return 0;
	}
	for (i = 0; i < pc->n_lcores; i++) {
		unsigned int lc = pc->lcores[i];

		if (lc >= RTE_MAX_LCORE || !rte_lcore_is_enabled(lc) ||
		    lc == rte_get_main_lcore()) {
			nm_config_format_lcores(pc->lcores, pc->n_lcores, list, sizeof(list));
			fprintf(stderr,
				"netmeta: [port.%s] lcores = %s: lcore %u is %s; the worker lcores "
				"EAL runs are those of eal.args (-l) less the main lcore %u\n",
				pc->name, list, lc,
				lc == rte_get_main_lcore() ? "the main (flusher) lcore"
							   : "not an EAL lcore",
				rte_get_main_lcore());
			return -EINVAL;
		}
		out[i] = lc;
	}
	*n_out = pc->n_lcores;
	return 0;
}

int
nm_workers_create(struct nm_app *app)
{
	struct nm_agg_params ap = {.max_flows = app->cfg.agg_max_flows};
	unsigned int lcore, p, q, i, next = 0;
	unsigned int lcores[NM_MAX_WORKERS], n_lcores = 0;
	struct nm_worker *by_lcore[RTE_MAX_LCORE] = {NULL};

	RTE_LCORE_FOREACH_WORKER(lcore)
	{
		if (n_lcores < NM_MAX_WORKERS)
			lcores[n_lcores++] = lcore;
	}
	if (n_lcores == 0) {
		fprintf(stderr, "netmeta: no worker lcore: give EAL at least two lcores "
				"(e.g. [eal] args = -l 0-1); the main lcore runs the flusher\n");
		return -EINVAL;
	}
	for (p = 0; p < app->cfg.n_ports; p++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[p];
		unsigned int pl[NM_MAX_WORKERS], n_pl;
		int ret = port_lcores(pc, lcores, n_lcores, pl, &n_pl);

		if (ret != 0)
			return ret;
		for (q = 0; q < pc->rx_queues; q++) {
			unsigned int lc;
			struct nm_worker *w;
			struct nm_rxq *rq;

			/*
			 * Without an lcores key, queues of all such ports go round robin over every
			 * worker lcore (two one-queue ports land on two lcores).
			 */
			lc = pc->n_lcores == 0 ? lcores[next++ % n_lcores] : pl[q % n_pl];
			w = by_lcore[lc];
			if (w == NULL) {
				w = rte_zmalloc_socket("worker", sizeof(*w), RTE_CACHE_LINE_SIZE,
						       (int)rte_lcore_to_socket_id(lc));
				if (w == NULL)
					return -ENOMEM;
				w->app = app;
				w->lcore_id = lc;
				w->dec.stats = &w->st.dec;
				w->dec.tmpl = app->tmpl;
				w->dec.exp = app->exp;
				w->dec.default_sampling_rate = app->cfg.default_sampling_rate;
				by_lcore[lc] = w;
			}
			if (w->n_rxq == NM_MAX_QUEUES_PER_WORKER)
				return -E2BIG;
			rq = &w->rxq[w->n_rxq++];
			rq->port_id = app->ports[p].id;
			rq->queue_id = (uint16_t)q;
			rq->role = pc->role;
			rq->if_index = (uint32_t)app->ports[p].id + 1;
			nm_config_mirror_sampler(&app->cfg, pc, rq->sampler_addr);
			rq->link = app->ports[p].link;
			rq->expect_pkts = pc->rx_queues == 1 ? app->ports[p].expect_pkts : 0;
			NM_LOG(INFO, "port %s queue %u -> lcore %u\n", pc->name, q, lc);
		}
	}
	/* Workers are indexed densely from 0 in lcore order; idle lcores get none. */
	for (i = 0; i < n_lcores; i++) {
		struct nm_worker *w = by_lcore[lcores[i]];

		if (w == NULL)
			continue;
		w->index = app->n_workers;
		app->workers[app->n_workers++] = w;
	}
	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];
		char name[32];
		unsigned int t;

		snprintf(name, sizeof(name), "full%u", i);
		w->full = rte_ring_create(name, 8, (int)rte_lcore_to_socket_id(w->lcore_id),
					  RING_F_SP_ENQ | RING_F_SC_DEQ);
		snprintf(name, sizeof(name), "free%u", i);
		w->free = rte_ring_create(name, 8, (int)rte_lcore_to_socket_id(w->lcore_id),
					  RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (w->full == NULL || w->free == NULL)
			return -ENOMEM;
		for (t = 0; t < NM_TABLES_PER_WORKER; t++) {
			w->tables[t] = nm_agg_table_create(&ap);
			if (w->tables[t] == NULL) {
				fprintf(stderr,
					"netmeta: cannot allocate aggregation tables of %u "
					"flows: %s (lower [aggregation] max_flows)\n",
					ap.max_flows, strerror(errno));
				return -ENOMEM;
			}
			if (t == 0)
				w->cur = w->tables[t];
			else
				(void)rte_ring_enqueue(w->free, w->tables[t]);
		}
	}
	return 0;
}

void
nm_workers_free(struct nm_app *app)
{
	unsigned int i, t;

	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];

		for (t = 0; t < NM_TABLES_PER_WORKER; t++)
			nm_agg_table_free(w->tables[t]);
		rte_ring_free(w->full);
		rte_ring_free(w->free);
		rte_free(w);
	}
	app->n_workers = 0;
}

bool
nm_workers_done(const struct nm_app *app)
{
	unsigned int i;

	for (i = 0; i < app->n_workers; i++)
		if (!app->workers[i]->done)
			return false;
	return true;
}

void
nm_workers_launch(struct nm_app *app)
{
	unsigned int i;

	for (i = 0; i < app->n_workers; i++)
		rte_eal_remote_launch(nm_worker_main, app->workers[i], app->workers[i]->lcore_id);
}
