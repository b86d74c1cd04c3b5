/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The flusher runs on the main lcore: it takes the tables the workers have handed off, turns every
 * entry into a FlowMessage in a Kafka batch, empties the table and gives it back. It is the only
 * place records leave the engine, so every entry is counted either as a row or as a failure.
 * Its loop on the main lcore also prints the console line, and at the end drains Kafka, prints the
 * summary and decides the exit status.
 *
 * RCU: the main lcore is a registered QSBR reader, but it reads no RCU-protected state in this
 * loop (tables come through rings, counters are plain loads; reload is a writer). Grace periods
 * -- templates replaced or withdrawn by the RX lcores (call_rcu), exporter config versions --
 * wait for it all the same, so it must never hold one up: a quiescent state every loop and every
 * NM_FLUSHER_QS_EVERY rows of a drain, offline around every call that can block (the sink's
 * waits and spool I/O through its block callbacks, the banner, the per-second log tick and the
 * console line, the reload's file read, the idle wait, the drain and summary at the end). Before
 * this, a broker outage without a spool (1 s per batch on a full queue) kept it online for the
 * whole outage: no grace period completed and replaced templates were never given back
 * (test_rcu_outage).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_launch.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "app.h"
#include "opsview.h"

/*
 * A quiescent state every this many rows of a drain: a million-row table takes the flusher
 * about a second to encode, which grace periods need not wait for. One QS (a load, a store and
 * a fence: a few ns) per 4096 rows of ~1 us each is nothing.
 */
#define NM_FLUSHER_QS_EVERY 4096

/*
 * Idle wait: 1 ms after a poll that found work, then NM_FLUSHER_IDLE_LONG_US once nothing came
 * for NM_FLUSHER_IDLE_LOOPS polls in a row. Tables come once a second, so the longer wait
 * delays a table by at most 5 ms; see BENCHMARKS.md, "Idle main lcore".
 */
#define NM_FLUSHER_IDLE_US 1000
#define NM_FLUSHER_IDLE_LONG_US 5000
#define NM_FLUSHER_IDLE_LOOPS 20

/*
 * The sink's block callbacks (kafka.h, "Blocking"): offline while it waits, when the caller
 * was online. Main lcore only, so a plain static holds what to restore.
 */
static bool sink_was_online;

static void
sink_block(void *arg)
{
	(void)arg;
	sink_was_online = rcu_read_ongoing();
	if (sink_was_online)
		rcu_thread_offline();
}

static void
sink_unblock(void *arg)
{
	(void)arg;
	if (sink_was_online)
		rcu_thread_online();
}

/*
 * A burst of a table's entries (nm_agg_drain_rows): ranked, then encoded straight from the
 * compact key into the Kafka batch (the 216-byte key is built only for a row entering the
 * top-N, and for JSON). The row counters are written once a burst, not twice a row.
 */
static void
visit(const struct nm_agg_row *rows, unsigned int n, void *ctx)
{
	struct nm_app *app = ctx;
	uint64_t before, ok = 0;
	unsigned int i;

	for (i = 0; i < n; i++) {
		nm_top_offer_row(app->top, &rows[i]); /* /netmeta/top: the flusher ranks */
		ok += nm_kafka_add_row(app->kafka, &rows[i]) == 0;
	}
	before = nm_ctr_get(&app->fl.rows) + nm_ctr_get(&app->fl.rows_failed);
	nm_ctr_add(&app->fl.rows, ok);
	nm_ctr_add(&app->fl.rows_failed, n - ok);
	if (before / NM_FLUSHER_QS_EVERY != (before + n) / NM_FLUSHER_QS_EVERY)
		rcu_quiescent_state();
}

unsigned int
nm_flusher_poll(struct nm_app *app)
{
	unsigned int i, n = 0;

	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];
		struct nm_agg_table *t;

		while (rte_ring_dequeue(w->full, (void **)&t) == 0) {
			/*
			 * The worker stopped writing this table before enqueueing it, and the ring
			 * orders memory, so it is ours alone now.
			 */
			nm_agg_drain_rows(t, visit, app);
			if (unlikely(app->cfg.test_drain_delay_us != 0)) {
				/* Test only: a flusher slower than the RX lcores. */
				rcu_thread_offline();
				rte_delay_us_sleep(app->cfg.test_drain_delay_us);
				rcu_thread_online();
			}
			(void)rte_ring_enqueue(w->free, t);
			n++;
		}
	}
	nm_ctr_add(&app->fl.tables_drained, n);
	nm_kafka_poll(app->kafka);
	return n;
}

int
nm_sink_create(struct nm_app *app)
{
	struct nm_kafka_params kp;
	struct nm_kafka_prop kprops[NM_CFG_MAX_PROPS];
	char err[1024];
	unsigned int i;

	memset(&kp, 0, sizeof(kp));
	kp.brokers = app->cfg.kafka_brokers;
	kp.topic = app->cfg.kafka_topic;
	/* Config holds data only (its own enum and property type): map them onto the sink's. */
	kp.format = app->cfg.kafka_format == NM_CFG_FORMAT_JSON ? NM_KAFKA_FMT_JSON
								: NM_KAFKA_FMT_PROTOBUF;
	kp.batch_bytes = app->cfg.kafka_batch_bytes;
	kp.linger_ms = app->cfg.kafka_linger_ms;
	kp.compression = app->cfg.kafka_compression;
	for (i = 0; i < app->cfg.n_kafka_props; i++) {
		kprops[i].name = app->cfg.kafka_props[i].name;
		kprops[i].value = app->cfg.kafka_props[i].value;
	}
	kp.props = kprops;
	kp.n_props = app->cfg.n_kafka_props;
	kp.exporter_groups = app->cfg.kafka_exporter_groups;
	kp.queue_max_bytes = (size_t)app->cfg.kafka_queue_max_bytes;
	kp.spool_dir = app->cfg.kafka_spool_dir;
	kp.spool_max_bytes = app->cfg.kafka_spool_max_bytes;
	kp.spool_after_ms = app->cfg.kafka_spool_after_ms;
	kp.spool_max_rejects = app->cfg.kafka_spool_max_rejects;
	kp.block_begin = sink_block;
	kp.block_end = sink_unblock;
	app->kafka = nm_kafka_create(&kp, err, sizeof(err));
	if (app->kafka == NULL) {
		fprintf(stderr, "netmeta: kafka: %s\n", err);
		return -EINVAL;
	}
	NM_LOG(INFO, "kafka: topic %s on %s (format %s)\n", app->cfg.kafka_topic,
	       nm_kafka_bootstrap(app->kafka),
	       app->cfg.kafka_format == NM_CFG_FORMAT_JSON ? "json" : "protobuf");
	if (strcmp(app->cfg.kafka_brokers, "embedded") == 0)
		printf("embedded Kafka broker: %s  (e.g. kcat -C -b %s -t %s)\n",
		       nm_kafka_bootstrap(app->kafka), nm_kafka_bootstrap(app->kafka),
		       app->cfg.kafka_topic);

	return 0;
}

void
nm_sink_free(struct nm_app *app)
{
	nm_kafka_free(app->kafka);
	app->kafka = NULL;
}

/* The console line is due: print it offline (stdout may be a slow pipe or terminal). */
static void
console_tick(struct nm_app *app, uint64_t *next_print)
{
	uint64_t period = app->tsc_hz * (uint64_t)app->cfg.stats_interval_ms / 1000;

	if (app->cfg.stats_interval_ms <= 0 || rte_rdtsc() < *next_print)
		return;
	nm_summary_line(app, (double)(rte_rdtsc() - app->start_tsc) / app->tsc_hz);
	*next_print += period;
	/* A reload may have turned the line on after a long time off. */
	if (*next_print < rte_rdtsc())
		*next_print = rte_rdtsc() + period;
}

/*
 * Cycles to nanoseconds without overflow: (d * 1e9) wraps 64 bits after ~6 s at 3 GHz, so whole
 * seconds and the remainder are scaled apart.
 */
static inline uint64_t
nm_tsc_to_ns(const struct nm_app *app, uint64_t d)
{
	return d / app->tsc_hz * 1000000000ULL + d % app->tsc_hz * 1000000000ULL / app->tsc_hz;
}

int
nm_flusher_run(struct nm_app *app, double duration, const char *summary_json)
{
	struct nm_summary sm;
	uint64_t next_print;
	unsigned int idle = 0;
	double rx_secs;
	int status;

	nm_top_init(app);
	nm_lograte_init(app);
	/* The RX lcores run already: the banner's lines to stderr/the journal, offline. */
	rcu_thread_offline();
	nm_banner(app);
	rcu_thread_online();
	next_print = rte_rdtsc() + app->tsc_hz * (uint64_t)app->cfg.stats_interval_ms / 1000;
	while (!app->quit) {
		rcu_quiescent_state();
		/*
		 * Control work, offline: the reload reads a file, takes live.lock and publishes
		 * (its grace period waits offline anyway); the per-second log tick and the console
		 * line write to stderr/stdout. None of them reads RCU-protected state.
		 */
		rcu_thread_offline();
		nm_reload_poll(app); /* SIGHUP, /netmeta/reload */
		nm_lograte_tick(app);
		console_tick(app, &next_print);
		rcu_thread_online();

		uint64_t tsc = rte_rdtsc();

		nm_tmpl_tick(app); /* template cache idle expiry, once a second (stats.c) */
		/* Idle exporter entries: a bounded sweep step when the second changes. */
		(void)nm_exp_expire(app->exp, (tsc - app->start_tsc) / app->tsc_hz,
				    NM_EXP_SWEEP_BUDGET);
		nm_top_tick(app->top, app->start_ns + nm_tsc_to_ns(app, tsc - app->start_tsc),
			    !app->offline);
		if (nm_flusher_poll(app) == 0) {
			/*
			 * Nothing to drain. The main lcore is control, not data: it sleeps,
			 * offline, longer once it has been idle a while (a table waits at most that
			 * long).
			 */
			idle += idle < NM_FLUSHER_IDLE_LOOPS;
			rcu_thread_offline();
			usleep(idle < NM_FLUSHER_IDLE_LOOPS ? NM_FLUSHER_IDLE_US
							    : NM_FLUSHER_IDLE_LONG_US);
			rcu_thread_online();
		} else {
			idle = 0;
		}
		if (app->offline && nm_workers_done(app))
			break;
		if (duration > 0 &&
		    rte_rdtsc() - app->start_tsc >= (uint64_t)(duration * (double)app->tsc_hz))
			break;
	}
	/* Stop RX, keep draining while workers hand off their last tables. */
	app->stop_rx = true;
	rx_secs = (double)(rte_rdtsc() - app->start_tsc) / (double)app->tsc_hz;
	while (!nm_workers_done(app)) {
		nm_flusher_poll(app);
		rcu_quiescent_state();
	}
	rte_eal_mp_wait_lcore();
	nm_flusher_poll(app);
	nm_top_finish(app->top);

	/*
	 * The end: drain (up to kafka.drain_timeout_ms), settle, the summary on stdout and in a
	 * file. All of it may block and none of it reads RCU-protected state: offline throughout
	 * (the sink's callbacks then find the thread offline and leave it so).
	 */
	rcu_thread_offline();
	memset(&sm, 0, sizeof(sm));
	app->draining = true;
	nm_kafka_get_stats(app->kafka, &sm.v.k);
	if (sm.v.k.records_inflight + sm.v.k.spool_records > 0)
		fprintf(stderr,
			"netmeta: waiting up to %d ms for Kafka to acknowledge %" PRIu64
			" records (%" PRIu64 " of them spooled); Ctrl-C/SIGTERM now "
			"spools the rest at once\n",
			app->cfg.kafka_drain_timeout_ms,
			sm.v.k.records_inflight + sm.v.k.spool_records, sm.v.k.spool_records);
	(void)nm_kafka_drain(app->kafka, app->cfg.kafka_drain_timeout_ms, &app->drain_abort);
	/* Every record gets its outcome before the summary, so stderr and summary agree. */
	(void)nm_kafka_settle(app->kafka);
	nm_stats_snapshot(app, &sm.v);
	sm.secs = (double)(rte_rdtsc() - app->start_tsc) / app->tsc_hz;
	sm.rx_secs = rx_secs;
	sm.lost = sm.v.a.dropped + sm.v.fl.rows_failed + sm.v.k.records_failed +
		  sm.v.k.records_dropped + sm.v.k.records_unacked + sm.v.k.records_corrupt +
		  sm.v.k.records_deadletter;
	nm_summary_print(app, &sm, stdout);
	if (summary_json != NULL)
		(void)nm_summary_json(app, &sm, summary_json);
	/* Spooled rows are safe on disk but not in Kafka yet: say so in the status, too. */
	/* A corrupt spool region lost rows even when no header said how many. */
	status = sm.lost != 0 || sm.v.k.spool_corrupt != 0 ? 1 : sm.v.k.spool_records != 0 ? 4 : 0;
	rcu_thread_online();
	return status;
}
