/* SPDX-License-Identifier: BSD-3-Clause */
/* Summing per-lcore counters, and the /netmeta/... telemetry commands that show them. */
#include <rte_telemetry.h>

#include "app.h"

static void
add_worker(struct nm_worker_stats *dst, const struct nm_worker_stats *src)
{
	unsigned int i;

	dst->rx_packets += src->rx_packets;
	dst->rx_bytes += src->rx_bytes;
	for (i = 0; i < NM_UDP_CLASS_MAX; i++)
		dst->udp_class[i] += src->udp_class[i];
	dst->not_collector_port += src->not_collector_port;
	dst->records += src->records;
	dst->records_packets += src->records_packets;
	dst->records_bytes += src->records_bytes;
	dst->late_records += src->late_records;
	dst->mirror_frames += src->mirror_frames;
	dst->mirror_sampled += src->mirror_sampled;
	dst->mirror_parse_errors += src->mirror_parse_errors;
	dst->rotations += src->rotations;
	dst->rotations_deferred += src->rotations_deferred;
	dst->multiseg += src->multiseg;
	nm_decode_stats_add(&dst->dec, &src->dec);
}

void
nm_stats_sum(const struct nm_app *app, struct nm_worker_stats *out, struct nm_agg_stats *agg)
{
	unsigned int i, j;

	memset(out, 0, sizeof(*out));
	if (agg != NULL)
		memset(agg, 0, sizeof(*agg));
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];

		/* Torn reads of a 64-bit counter cannot happen on x86-64; values may lag a bit. */
		add_worker(out, &w->st);
		if (agg != NULL)
			for (j = 0; j < NM_TABLES_PER_WORKER; j++)
				if (w->tables[j] != NULL)
					nm_agg_get_stats(w->tables[j], agg);
	}
}

/* Telemetry callbacks get no user argument; the app is set once before registration. */
static const struct nm_app *tel_app;

#define D(name, v) rte_tel_data_add_dict_u64(d, name, v)

static int
tel_stats(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_worker_stats s;
	struct nm_agg_stats a;
	struct nm_kafka_stats k = {0};
	unsigned int i;

	(void)cmd;
	(void)params;
	nm_stats_sum(tel_app, &s, &a);
	if (tel_app->kafka != NULL)
		nm_kafka_get_stats(tel_app->kafka, &k);
	rte_tel_data_start_dict(d);
	D("rx_packets", s.rx_packets);
	D("rx_bytes", s.rx_bytes);
	for (i = 1; i < NM_UDP_CLASS_MAX; i++) {
		char name[64];

		snprintf(name, sizeof(name), "frames_%s", nm_udp_class_name(i));
		D(name, s.udp_class[i]);
	}
	D("not_collector_port", s.not_collector_port);
	D("datagrams_nf5", s.dec.nf5.datagrams);
	D("datagrams_nf9", s.dec.nf9.datagrams);
	D("datagrams_ipfix", s.dec.ipfix.datagrams);
	D("datagrams_sflow", s.dec.sflow.datagrams);
	D("datagrams_unknown", s.dec.unknown);
	for (i = 1; i < NM_DECODE_ERR_MAX; i++) {
		char name[64];

		snprintf(name, sizeof(name), "decode_err_%s", nm_decode_err_name(i));
		D(name, s.dec.err[i]);
	}
	D("records", s.records);
	D("records_packets", s.records_packets);
	D("records_bytes", s.records_bytes);
	D("late_records", s.late_records);
	D("mirror_frames", s.mirror_frames);
	D("mirror_sampled", s.mirror_sampled);
	D("agg_merged", a.merged);
	D("agg_folded", a.folded);
	D("agg_dropped", a.dropped);
	D("rotations", s.rotations);
	D("rotations_deferred", s.rotations_deferred);
	D("rows", __atomic_load_n(&tel_app->rows, __ATOMIC_RELAXED));
	D("kafka_records_in", k.records_in);
	D("kafka_records_acked", k.records_acked);
	D("kafka_records_failed", k.records_failed);
	D("kafka_messages_acked", k.messages_acked);
	D("kafka_bytes_acked", k.bytes_acked);
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
	D("queue_messages", k.queue_messages);
	D("queue_bytes", k.queue_bytes);
	D("records_in", k.records_in);
	D("records_inflight", k.records_inflight);
	D("records_acked", k.records_acked);
	D("records_failed", k.records_failed);
	D("records_unacked", k.records_unacked);
	D("records_spooled", k.records_spooled);
	D("records_recovered", k.records_recovered);
	D("records_dropped", k.records_dropped);
	D("messages_produced", k.messages_produced);
	D("messages_acked", k.messages_acked);
	D("messages_failed", k.messages_failed);
	D("messages_spooled", k.messages_spooled);
	D("messages_replayed", k.messages_replayed);
	D("messages_dropped", k.messages_dropped);
	D("messages_possibly_persisted", k.messages_possibly_persisted);
	D("bytes_acked", k.bytes_acked);
	D("bytes_failed", k.bytes_failed);
	D("bytes_dropped", k.bytes_dropped);
	D("packets_dropped", k.packets_dropped);
	D("flow_bytes_dropped", k.flow_bytes_dropped);
	D("spool_enabled", (uint64_t)k.spool_enabled);
	D("spool_records", k.spool_records);
	D("spool_messages", k.spool_messages);
	D("spool_bytes", k.spool_bytes);
	D("spool_corrupt", k.spool_corrupt);
	D("spool_corrupt_bytes", k.spool_corrupt_bytes);
	D("encode_errors", k.encode_errors);
	D("records_corrupt", k.records_corrupt);
	D("records_deadletter", k.records_deadletter);
	D("messages_deadletter", k.messages_deadletter);
	D("messages_rejected", k.messages_rejected);
	D("spool_write_errors", k.spool_write_errors);
	D("spool_sync_errors", k.spool_sync_errors);
	D("spool_deadletter_bytes", k.spool_deadletter_bytes);
	D("outages", k.outages);
	D("spooling", (uint64_t)k.spooling);
	return 0;
}

int
nm_telemetry_register(struct nm_app *app)
{
	int ret;

	tel_app = app;
	ret = rte_telemetry_register_cmd("/netmeta/stats", tel_stats,
					 "Engine counters: frames, datagrams by protocol, decode "
					 "errors by reason, records, aggregation, Kafka delivery.");
	if (ret == 0)
		ret = rte_telemetry_register_cmd(
			"/netmeta/kafka", tel_kafka,
			"Kafka sink: queue depth, spool, delivered/failed "
			"messages and bytes, drops, last error, broker state.");
	ret = nm_tel_exporters_register(app) != 0 ? -1 : ret;
	return ret;
}
