/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The flusher runs on the main lcore: it takes the tables the workers have handed off, turns every
 * entry into a FlowMessage in a Kafka batch, empties the table and gives it back. It is the only
 * place records leave the engine, so every entry is counted either as a row or as a failure.
 */
#include "app.h"

static void
visit(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct nm_app *app = ctx;

	if (nm_kafka_add(app->kafka, rec, flows) == 0)
		app->rows++;
	else
		app->rows_failed++;
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
			nm_agg_drain(t, visit, app);
			(void)rte_ring_enqueue(w->free, t);
			n++;
		}
	}
	app->tables_drained += n;
	nm_kafka_poll(app->kafka);
	return n;
}
