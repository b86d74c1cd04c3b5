/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_KAFKA_H
#define NM_KAFKA_H

/*
 * The Kafka sink: packs encoded records into Kafka messages of at most batch_bytes, produces them
 * with librdkafka (delivery reports on) and counts every record from the moment it is handed in
 * until it is acknowledged or failed. brokers = "embedded" starts librdkafka's mock cluster inside
 * the process; nm_kafka_bootstrap() then says where other clients (kcat, ClickHouse) reach it.
 *
 * Threading: one thread (the flusher) calls everything except nm_kafka_get_stats(), which any
 * thread may call (counters are read and written with relaxed atomics).
 */

#include <stddef.h>
#include <stdint.h>

#include "../flow/flow.h"

enum nm_kafka_format {
	NM_KAFKA_FMT_PROTOBUF = 0,
	NM_KAFKA_FMT_JSON = 1,
};

struct nm_kafka_prop {
	const char *name;
	const char *value;
};

struct nm_kafka_params {
	const char *brokers;        /* "host:port,..." or "embedded" */
	const char *topic;          /* e.g. "flow-messages" */
	enum nm_kafka_format format;
	size_t batch_bytes;         /* max payload of one Kafka message */
	int linger_ms;              /* librdkafka linger.ms */
	const char *compression;    /* none, gzip, snappy, lz4, zstd */
	const struct nm_kafka_prop *props; /* passed to librdkafka as they are */
	unsigned int n_props;
};

struct nm_kafka_stats {
	uint64_t records_in;        /* handed to nm_kafka_add() */
	uint64_t records_acked;     /* in messages the broker acknowledged */
	uint64_t records_failed;    /* in messages that failed delivery or could not be produced */
	uint64_t messages_produced;
	uint64_t messages_acked;
	uint64_t messages_failed;
	uint64_t bytes_acked;
	uint64_t encode_errors;     /* records that could not be encoded (counted in records_failed) */
};

struct nm_kafka;

/*
 * Create the producer (and the mock cluster for "embedded"). On failure returns NULL and writes
 * a message naming the cause into err.
 */
struct nm_kafka *nm_kafka_create(const struct nm_kafka_params *p, char *err, size_t errlen);

/* The bootstrap servers in use ("127.0.0.1:port,..." for the embedded cluster). */
const char *nm_kafka_bootstrap(const struct nm_kafka *k);

/* Encode rec into the current batch; produce the batch when it is full. 0 or -errno. */
int nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec);

/* Produce the current partial batch, if any. 0 or -errno. */
int nm_kafka_flush(struct nm_kafka *k);

/* Serve delivery reports without blocking. */
void nm_kafka_poll(struct nm_kafka *k);

/*
 * Flush, then wait up to timeout_ms for every message to be acknowledged or failed. Returns the
 * number of records still unacknowledged (0 when everything is delivered).
 */
uint64_t nm_kafka_drain(struct nm_kafka *k, int timeout_ms);

void nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *out);

/* Destroy the producer (and the embedded cluster). Undelivered messages are dropped and counted. */
void nm_kafka_free(struct nm_kafka *k);

#endif /* NM_KAFKA_H */
