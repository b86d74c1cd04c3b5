/* SPDX-License-Identifier: BSD-3-Clause */
/* What the engine says about a run: the console line, the final summary, its JSON twin. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "app.h"

void
nm_summary_line(struct nm_app *app, double secs)
{
	struct nm_worker_stats s;
	struct nm_agg_stats a;
	struct nm_kafka_stats k = {0};
	uint64_t errs = 0;
	unsigned int i;

	nm_stats_sum(app, &s, &a);
	nm_kafka_get_stats(app->kafka, &k);
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		errs += s.dec.err[i];
	printf("[%7.1fs] frames %" PRIu64 "  datagrams %" PRIu64 "  records %" PRIu64
	       "  rows %" PRIu64 "  kafka acked %" PRIu64 " failed %" PRIu64
	       "  decode errors %" PRIu64 "  agg folded %" PRIu64 " dropped %" PRIu64 "%s",
	       secs, s.rx_packets,
	       s.dec.nf5.datagrams + s.dec.nf9.datagrams + s.dec.ipfix.datagrams +
		       s.dec.sflow.datagrams + s.dec.unknown,
	       s.records, app->rows, k.records_acked, k.records_failed, errs, a.folded, a.dropped,
	       k.spool_enabled ? "" : "\n");
	if (k.spool_enabled)
		printf("  spool %" PRIu64 " (%" PRIu64 " bytes) kafka dropped %" PRIu64 "\n",
		       k.spool_records, k.spool_bytes, k.records_dropped);
	fflush(stdout);
}

void
nm_summary_print(const struct nm_app *app, const struct nm_summary *sm, FILE *f)
{
	const struct nm_worker_stats *s = &sm->s;
	unsigned int i;

	fprintf(f, "netmeta summary (%.1f s)\n", sm->secs);
	fprintf(f, "  %-28s %" PRIu64 " (%.3f Mpps over the run)\n", "frames received",
		s->rx_packets, sm->rx_secs > 0 ? (double)s->rx_packets / sm->rx_secs / 1e6 : 0.0);
	for (i = 1; i < NM_UDP_CLASS_MAX; i++)
		if (s->udp_class[i] != 0)
			fprintf(f, "  %-28s %" PRIu64 "\n", nm_udp_class_name(i), s->udp_class[i]);
	if (s->not_collector_port != 0)
		fprintf(f, "  %-28s %" PRIu64 "\n", "udp to other ports", s->not_collector_port);
	fprintf(f,
		"  %-28s %" PRIu64 " nf5, %" PRIu64 " nf9, %" PRIu64 " ipfix, %" PRIu64
		" sflow, %" PRIu64 " unknown\n",
		"datagrams", s->dec.nf5.datagrams, s->dec.nf9.datagrams, s->dec.ipfix.datagrams,
		s->dec.sflow.datagrams, s->dec.unknown);
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		if (s->dec.err[i] != 0)
			fprintf(f, "  %-28s %" PRIu64 "\n", nm_decode_err_name(i), s->dec.err[i]);
	if (s->mirror_frames != 0)
		fprintf(f, "  %-28s %" PRIu64 " of %" PRIu64 "\n", "mirror frames sampled",
			s->mirror_sampled, s->mirror_frames);
	fprintf(f, "  %-28s %" PRIu64 " (%" PRIu64 " packets, %" PRIu64 " bytes)\n", "records",
		s->records, s->records_packets, s->records_bytes);
	if (s->late_records != 0)
		fprintf(f, "  %-28s %" PRIu64 "\n", "late records", s->late_records);
	fprintf(f, "  %-28s %" PRIu64 " merged, %" PRIu64 " folded, %" PRIu64 " dropped\n",
		"aggregation", sm->a.merged, sm->a.folded, sm->a.dropped);
	fprintf(f, "  %-28s %" PRIu64 "\n", "rows (FlowMessages)", app->rows);
	fprintf(f,
		"  %-28s %" PRIu64 " acked, %" PRIu64 " failed, %" PRIu64 " unacked (%" PRIu64
		" messages acked)\n",
		"kafka records", sm->k.records_acked, sm->k.records_failed, sm->k.records_unacked,
		sm->k.messages_acked);
	if (sm->k.records_failed + sm->k.records_unacked != 0)
		fprintf(f,
			"  %-28s failed: Kafka reported an error or refused them (last: %s); "
			"unacked: no acknowledgement before the drain ended "
			"(kafka.drain_timeout_ms, or a second Ctrl-C)\n",
			"",
			nm_kafka_last_error(app->kafka)[0] ? nm_kafka_last_error(app->kafka)
							   : "none");
	if (sm->k.spool_enabled)
		fprintf(f,
			"  %-28s %" PRIu64 " records written this run, %" PRIu64 " recovered "
			"at start; %" PRIu64 " records (%" PRIu64 " bytes) wait there now%s\n",
			"kafka spool", sm->k.records_spooled, sm->k.records_recovered,
			sm->k.spool_records, sm->k.spool_bytes,
			sm->k.spool_records ? "  <-- delivered by the next start" : "");
	if (sm->k.records_dropped != 0)
		fprintf(f,
			"  %-28s %" PRIu64 " records in %" PRIu64 " batches (%" PRIu64
			" bytes): the spool was full\n",
			"kafka dropped", sm->k.records_dropped, sm->k.messages_dropped,
			sm->k.bytes_dropped);
	if (sm->k.spool_corrupt + sm->k.records_deadletter + sm->k.spool_write_errors +
		    sm->k.spool_sync_errors !=
	    0)
		fprintf(f,
			"  %-28s %" PRIu64 " records in %" PRIu64 " corrupt regions (%" PRIu64
			" bytes), %" PRIu64 " records dead-lettered (refused by Kafka); %" PRIu64
			" write errors, %" PRIu64 " sync errors\n",
			"kafka spool losses", sm->k.records_corrupt, sm->k.spool_corrupt,
			sm->k.spool_corrupt_bytes, sm->k.records_deadletter,
			sm->k.spool_write_errors, sm->k.spool_sync_errors);
	fprintf(f, "  %-28s %" PRIu64 "%s\n", "records lost", sm->lost,
		sm->lost ? "  <-- see above" : "");
}

int
nm_summary_json(const struct nm_app *app, const struct nm_summary *sm, const char *path)
{
	const struct nm_worker_stats *s = &sm->s;
	FILE *f = fopen(path, "w");
	unsigned int i;

	if (f == NULL) {
		fprintf(stderr, "netmeta: cannot write %s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "{\n");
#define J(name, v) fprintf(f, "  \"%s\": %" PRIu64 ",\n", name, (uint64_t)(v))
	J("rx_packets", s->rx_packets);
	J("rx_bytes", s->rx_bytes);
	J("datagrams", s->dec.nf5.datagrams + s->dec.nf9.datagrams + s->dec.ipfix.datagrams +
			       s->dec.sflow.datagrams + s->dec.unknown);
	J("datagrams_nf5", s->dec.nf5.datagrams);
	J("datagrams_nf9", s->dec.nf9.datagrams);
	J("datagrams_ipfix", s->dec.ipfix.datagrams);
	J("datagrams_sflow", s->dec.sflow.datagrams);
	J("datagrams_unknown", s->dec.unknown);
	J("not_collector_port", s->not_collector_port);
	J("records", s->records);
	J("records_packets", s->records_packets);
	J("records_bytes", s->records_bytes);
	J("late_records", s->late_records);
	J("mirror_frames", s->mirror_frames);
	J("mirror_sampled", s->mirror_sampled);
	J("agg_merged", sm->a.merged);
	J("agg_folded", sm->a.folded);
	J("agg_dropped", sm->a.dropped);
	J("rows", app->rows);
	J("rows_failed", app->rows_failed);
	J("kafka_records_in", sm->k.records_in);
	J("kafka_records_acked", sm->k.records_acked);
	J("kafka_records_failed", sm->k.records_failed);
	J("kafka_records_unacked", sm->k.records_unacked);
	J("kafka_messages_acked", sm->k.messages_acked);
	J("kafka_records_recovered", sm->k.records_recovered);
	J("kafka_records_spooled", sm->k.records_spooled);
	J("kafka_records_dropped", sm->k.records_dropped);
	J("kafka_packets_dropped", sm->k.packets_dropped);
	J("kafka_flow_bytes_dropped", sm->k.flow_bytes_dropped);
	J("kafka_messages_spooled", sm->k.messages_spooled);
	J("kafka_messages_replayed", sm->k.messages_replayed);
	J("kafka_messages_dropped", sm->k.messages_dropped);
	J("kafka_messages_failed", sm->k.messages_failed);
	J("kafka_messages_possibly_persisted", sm->k.messages_possibly_persisted);
	J("spool_records", sm->k.spool_records);
	J("spool_bytes", sm->k.spool_bytes);
	J("spool_corrupt", sm->k.spool_corrupt);
	J("spool_corrupt_bytes", sm->k.spool_corrupt_bytes);
	J("kafka_records_corrupt", sm->k.records_corrupt);
	J("kafka_records_deadletter", sm->k.records_deadletter);
	J("kafka_messages_deadletter", sm->k.messages_deadletter);
	J("kafka_messages_rejected", sm->k.messages_rejected);
	J("spool_write_errors", sm->k.spool_write_errors);
	J("spool_sync_errors", sm->k.spool_sync_errors);
	J("kafka_outages", sm->k.outages);
	J("lost_records", sm->lost);
	fprintf(f, "  \"seconds\": %.6f,\n", sm->secs);
	fprintf(f, "  \"rx_seconds\": %.6f,\n", sm->rx_secs);
	/* Per worker: which lcore polled which queues, and what each received. */
	fprintf(f, "  \"workers\": [");
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];
		unsigned int q;

		fprintf(f,
			"%s{\"lcore\": %u, \"rx_packets\": %" PRIu64 ", \"rx_bytes\": %" PRIu64
			", \"records\": %" PRIu64 ", \"late_records\": %" PRIu64 ", \"queues\": [",
			i ? ", " : "", w->lcore_id, w->st.rx_packets, w->st.rx_bytes, w->st.records,
			w->st.late_records);
		for (q = 0; q < w->n_rxq; q++)
			fprintf(f,
				"%s{\"port\": %u, \"queue\": %u, \"rx_packets\": %" PRIu64
				", \"mirror_sampled\": %" PRIu64 "}",
				q ? ", " : "", w->rxq[q].port_id, w->rxq[q].queue_id,
				w->rxq[q].rx_pkts, w->rxq[q].sampled);
		fprintf(f, "]}");
	}
	fprintf(f, "],\n");
#undef J
	fprintf(f, "  \"frames\": {");
	for (i = 0; i < NM_UDP_CLASS_MAX; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", nm_udp_class_name(i),
			s->udp_class[i]);
	fprintf(f, "},\n  \"decode_errors\": {");
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i > 1 ? ", " : "", nm_decode_err_name(i),
			s->dec.err[i]);
	fprintf(f, "},\n  \"bootstrap\": \"%s\"\n}\n", nm_kafka_bootstrap(app->kafka));
	fclose(f);
	return 0;
}
