/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the engine says about a run: the console line, the final summary and its JSON twin. The
 * counters and their labels come from the counter tables (lib/ctr/ctr.h); this file adds what is
 * not a counter: rates, the loss verdict, per-worker detail and the notes that explain numbers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "base/addr.h"
#include "xdp/nm_xdp_allow.h"
#include "xdp_allow.h"

/* Index of a set in nm_stats_sets(). */
enum { SET_WORKER, SET_DECODE, SET_AGG, SET_FLUSHER, SET_KAFKA, SET_TMPL, SET_EXP };

/*
 * The console line: a view on the tables, in reading order. how: 'v' the counter of that name,
 * 'g' the total of a text group (every protocol's datagrams), 't' an array's total.
 */
static const struct {
	const char *label;
	unsigned int set;
	char how;
	const char *name;
} console[] = {
	{"frames", SET_WORKER, 'v', "rx_packets"},
	{"  datagrams", SET_DECODE, 'g', "datagrams"},
	{"  records", SET_WORKER, 'v', "records"},
	{"  rows", SET_FLUSHER, 'v', "rows"},
	{"  kafka acked", SET_KAFKA, 'v', "records_acked"},
	{" failed", SET_KAFKA, 'v', "records_failed"},
	{"  decode errors", SET_DECODE, 't', "decode_err"},
	{"  agg folded", SET_AGG, 'v', "folded"},
	{" dropped", SET_AGG, 'v', "dropped"},
};

static const struct {
	const char *label;
	unsigned int set;
	const char *name;
} console_spool[] = {
	{"  spool", SET_KAFKA, "spool_records"},
	{" (bytes", SET_KAFKA, "spool_bytes"},
	{") kafka dropped", SET_KAFKA, "records_dropped"},
};

void
nm_summary_line(struct nm_app *app, double secs)
{
	struct nm_stats_view v;
	struct nm_stats_set sets[NM_STATS_SETS];
	unsigned int i;

	nm_stats_snapshot(app, &v);
	nm_stats_sets(&v, sets);
	printf("[%7.1fs] ", secs);
	for (i = 0; i < RTE_DIM(console); i++) {
		const struct nm_stats_set *s = &sets[console[i].set];

		printf("%s %" PRIu64, console[i].label,
		       console[i].how == 'g' ? nm_ctr_group_total(s->set, s->obj, console[i].name)
					     : nm_ctr_by_name(s->set, s->obj, console[i].name));
	}
	if (v.k.spool_enabled)
		for (i = 0; i < RTE_DIM(console_spool); i++)
			printf("%s %" PRIu64, console_spool[i].label,
			       nm_ctr_by_name(sets[console_spool[i].set].set,
					      sets[console_spool[i].set].obj,
					      console_spool[i].name));
	printf("\n");
	fflush(stdout);
}

/* The XDP filters' [collector] allow drops (xdp_allow.h), beside the RX path's "refused". */
static void
xdp_print(const struct nm_app *app, FILE *f)
{
	struct nm_xdp_drops x;
	unsigned int i;
	char a[NM_ADDR_STRLEN];

	if (nm_app_xdp_drops(app, &x) <= 0 || x.packets == 0)
		return;
	fprintf(f, "  %-28s %" PRIu64 " datagrams, %" PRIu64 " bytes, from %" PRIu64 "%s sources:",
		"xdp allow dropped", x.packets, x.bytes, x.sources,
		x.sources >= NM_XDP_DROP_SOURCES ? " or more" : "");
	for (i = 0; i < x.n_top && i < 4; i++)
		fprintf(f, " %s %" PRIu64, nm_addr_str(x.top[i].addr, a, sizeof(a)),
			x.top[i].packets);
	fprintf(f, "%s\n", x.n_top > 4 ? " ..." : "");
}

void
nm_summary_print(const struct nm_app *app, const struct nm_summary *sm, FILE *f)
{
	const struct nm_kafka_stats *k = &sm->v.k;
	struct nm_stats_set sets[NM_STATS_SETS];
	uint64_t frames = sm->v.s.rx_packets;
	unsigned int i;

	nm_stats_sets(&sm->v, sets);
	fprintf(f, "netmeta summary (%.1f s)\n", sm->secs);
	fprintf(f, "  %-28s %" PRIu64 " (%.3f Mpps over the run)\n", "frames received", frames,
		sm->rx_secs > 0 ? (double)frames / sm->rx_secs / 1e6 : 0.0);
	for (i = 0; i < NM_STATS_SETS; i++)
		nm_ctr_text(sets[i].set, sets[i].obj, f);
	if (k->records_failed + k->records_unacked != 0)
		fprintf(f,
			"  %-28s failed: Kafka reported an error or refused them (last: %s); "
			"unacked: no acknowledgement before the drain ended "
			"(kafka.drain_timeout_ms, or a second Ctrl-C)\n",
			"",
			nm_kafka_last_error(app->kafka)[0] ? nm_kafka_last_error(app->kafka)
							   : "none");
	if (k->spool_records != 0)
		fprintf(f,
			"  %-28s %" PRIu64 " records wait in kafka.spool_dir: delivered by the "
			"next start\n",
			"", k->spool_records);
	if (k->records_dropped != 0)
		fprintf(f, "  %-28s dropped: the spool was full\n", "");
	xdp_print(app, f);
	fprintf(f, "  %-28s %" PRIu64 "%s\n", "records lost", sm->lost,
		sm->lost ? "  <-- see above" : "");
	fprintf(f,
		"  %-28s version %" PRIu64 " (%s; reloads: %" PRIu64 " applied, %" PRIu64
		" refused, %" PRIu64 " failed)\n",
		"config", app->live.version, app->cfg.source, app->live.counts[NM_RELOAD_APPLIED],
		app->live.counts[NM_RELOAD_REFUSED], app->live.counts[NM_RELOAD_FAILED]);
}

/* The XDP filters' drops: totals and the heaviest sources (zero and {} without a filter). */
static void
xdp_json(const struct nm_app *app, FILE *f)
{
	struct nm_xdp_drops x;
	unsigned int i;
	char a[NM_ADDR_STRLEN];

	if (nm_app_xdp_drops(app, &x) < 0)
		memset(&x, 0, sizeof(x));
	fprintf(f,
		"  \"xdp_dropped\": %" PRIu64 ",\n  \"xdp_dropped_bytes\": %" PRIu64
		",\n  \"xdp_dropped_sources\": %" PRIu64 ",\n  \"xdp_dropped_by_source\": {",
		x.packets, x.bytes, x.sources);
	for (i = 0; i < x.n_top; i++)
		fprintf(f, "%s\"%s\": {\"packets\": %" PRIu64 ", \"bytes\": %" PRIu64 "}",
			i ? ", " : "", nm_addr_str(x.top[i].addr, a, sizeof(a)), x.top[i].packets,
			x.top[i].bytes);
	fprintf(f, "},\n");
}

int
nm_summary_json(const struct nm_app *app, const struct nm_summary *sm, const char *path)
{
	struct nm_stats_set sets[NM_STATS_SETS];
	FILE *f = fopen(path, "w");
	unsigned int i;

	if (f == NULL) {
		fprintf(stderr, "netmeta: cannot write %s: %s\n", path, strerror(errno));
		return -errno;
	}
	nm_stats_sets(&sm->v, sets);
	fprintf(f, "{\n");
	for (i = 0; i < NM_STATS_SETS; i++)
		nm_ctr_json(sets[i].set, sets[i].obj, f, "  ");
	/* What is not a counter: totals, the verdict, times. */
	fprintf(f, "  \"datagrams\": %" PRIu64 ",\n",
		nm_ctr_group_total(&nm_decode_ctr_set, &sm->v.s.dec, "datagrams"));
	fprintf(f, "  \"lost_records\": %" PRIu64 ",\n", sm->lost);
	fprintf(f, "  \"seconds\": %.6f,\n", sm->secs);
	fprintf(f, "  \"rx_seconds\": %.6f,\n", sm->rx_secs);
	/* Which config was live at the end, and what reloads did (reload.c). */
	fprintf(f, "  \"config_version\": %" PRIu64 ",\n", app->live.version);
	fprintf(f, "  \"config_reloads_applied\": %" PRIu64 ",\n",
		app->live.counts[NM_RELOAD_APPLIED]);
	fprintf(f, "  \"config_reloads_refused\": %" PRIu64 ",\n",
		app->live.counts[NM_RELOAD_REFUSED]);
	fprintf(f, "  \"config_reloads_failed\": %" PRIu64 ",\n",
		app->live.counts[NM_RELOAD_FAILED]);
	xdp_json(app, f);
	/* Per worker: which lcore polled which queues, and what each received. */
	fprintf(f, "  \"workers\": [");
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];
		unsigned int q;

		fprintf(f,
			"%s{\"lcore\": %u, \"rx_packets\": %" PRIu64 ", \"rx_bytes\": %" PRIu64
			", \"records\": %" PRIu64 ", \"late_records\": %" PRIu64 ", \"queues\": [",
			i ? ", " : "", w->lcore_id, nm_ctr_get(&w->st.rx_packets),
			nm_ctr_get(&w->st.rx_bytes), nm_ctr_get(&w->st.records),
			nm_ctr_get(&w->st.late_records));
		for (q = 0; q < w->n_rxq; q++)
			fprintf(f,
				"%s{\"port\": %u, \"queue\": %u, \"rx_packets\": %" PRIu64
				", \"mirror_sampled\": %" PRIu64 ", \"file_frames\": %" PRIu64 "}",
				q ? ", " : "", w->rxq[q].port_id, w->rxq[q].queue_id,
				nm_ctr_get(&w->rxq[q].rx_pkts), nm_ctr_get(&w->rxq[q].sampled),
				w->rxq[q].expect_pkts);
		fprintf(f, "]}");
	}
	fprintf(f, "],\n");
	fprintf(f, "  \"bootstrap\": \"%s\"\n}\n", nm_kafka_bootstrap(app->kafka));
	return fclose(f) == 0 ? 0 : -errno;
}
