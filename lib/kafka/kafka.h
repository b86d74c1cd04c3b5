/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_KAFKA_H
#define NM_KAFKA_H

/*
 * The Kafka sink: packs encoded records into Kafka messages of at most batch_bytes, produces them
 * with librdkafka (acks=all, idempotent, delivery reports on) and counts every record from the
 * moment it is handed in until it is acknowledged or failed:
 *
 *   records_in == records_acked + records_failed + (records still in flight)
 *
 * holds at every moment; nm_kafka_drain() returns the last term. A message is cut when the next
 * record would not fit, when nm_kafka_poll() finds the batch linger_ms old, or on
 * nm_kafka_flush()/nm_kafka_drain().
 *
 * brokers = "embedded" starts librdkafka's mock cluster inside the process (one broker, the topic
 * created with one partition before the producer starts). Its broker listens on 127.0.0.1 with an
 * ephemeral port; nm_kafka_bootstrap() returns "127.0.0.1:PORT" and the same line goes to stderr
 * ("kafka: embedded broker (librdkafka mock cluster) at 127.0.0.1:PORT ..."). Other processes
 * (kcat -C -b 127.0.0.1:PORT -t TOPIC, ClickHouse's Kafka engine) consume from it while the
 * engine runs. It is a test double, not a Kafka: it keeps only the newest ~5 MiB (and at most
 * 100,000 messages) of each partition in memory -- hard-coded in librdkafka 2.0.2 -- so a
 * consumer that falls further behind loses the oldest rows after the sink counted them acked.
 * Use a real broker (or keep consumers close) when that matters.
 *
 * Threading: one thread (the flusher) calls everything except nm_kafka_get_stats(), which any
 * thread may call (counters are read and written with relaxed atomics). Delivery reports are
 * served on the calling thread inside nm_kafka_add/flush/poll/drain.
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
	size_t batch_bytes;         /* max payload of one Kafka message; at least NM_ENCODE_PB_MAX
				     * (protobuf) or NM_ENCODE_JSON_MAX (JSON), at most 900,000,000 */
	int linger_ms;              /* librdkafka linger.ms, and the longest a partial batch waits
				     * in the sink before nm_kafka_poll() produces it; < 0: keep
				     * librdkafka's default and produce partial batches on every poll */
	const char *compression;    /* none, gzip, snappy, lz4, zstd; NULL or "": librdkafka's */
	const struct nm_kafka_prop *props; /* passed to librdkafka as they are, after the sink's own
				     * settings (so they override them) */
	unsigned int n_props;
};

struct nm_kafka_stats {
	uint64_t records_in;        /* handed to nm_kafka_add() */
	uint64_t records_acked;     /* in messages the broker acknowledged */
	uint64_t records_failed;    /* in messages that failed delivery or could not be produced,
				     * and left undelivered by nm_kafka_free() */
	uint64_t messages_produced; /* accepted by rd_kafka_produce() */
	uint64_t messages_acked;
	uint64_t messages_failed;   /* delivery failed, or never accepted by rd_kafka_produce() */
	uint64_t bytes_acked;       /* payload bytes of the acknowledged messages */
	uint64_t encode_errors;     /* records that could not be encoded (counted in records_failed) */
};

struct nm_kafka;

/*
 * Create the producer (and the mock cluster for "embedded"). Sets request.required.acks=-1,
 * enable.idempotence=true, linger.ms, compression.codec, queue.buffering.max.messages=1000000,
 * queue.buffering.max.kbytes=1048576, message.max.bytes >= batch_bytes + 64 KiB, then props.
 * On failure returns NULL, sets errno and writes a message naming the cause (the parameter or
 * the librdkafka property and value) into err.
 */
struct nm_kafka *nm_kafka_create(const struct nm_kafka_params *p, char *err, size_t errlen);

/* The bootstrap servers in use ("127.0.0.1:port" for the embedded cluster). Valid until free. */
const char *nm_kafka_bootstrap(const struct nm_kafka *k);

/*
 * Encode rec into the current batch; when it does not fit, produce the batch first (waiting up to
 * 1 s, serving delivery reports, while librdkafka's queue is full; after that the batch's records
 * count as failed). Returns 0 when rec is in the batch. -EINVAL for NULL arguments (nothing is
 * counted); -EMSGSIZE when rec cannot be encoded into an empty batch -- impossible with the
 * batch_bytes nm_kafka_create() accepts, and already counted in records_in, records_failed and
 * encode_errors, so do not count it again. Failures of earlier records show only in the stats.
 */
int nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec);

/*
 * Produce the current partial batch, if any. 0, or -errno when it could not be produced
 * (-ENOBUFS: queue full for 1 s); its records are then counted failed.
 */
int nm_kafka_flush(struct nm_kafka *k);

/*
 * Produce the partial batch if it is linger_ms old, and serve delivery reports, without blocking
 * (unless librdkafka's queue is full, see nm_kafka_add). Call it regularly, also when no records
 * come: it is what delivers the rows of a quiet second.
 */
void nm_kafka_poll(struct nm_kafka *k);

/*
 * Flush, then wait up to timeout_ms for every message to be acknowledged or failed. Returns the
 * number of records still in flight, neither acknowledged nor failed (0 when every record has an
 * outcome; records_failed says how many of those failed). May be called again, e.g. after the
 * broker came back.
 */
uint64_t nm_kafka_drain(struct nm_kafka *k, int timeout_ms);

void nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *out);

/*
 * Destroy the producer (and the embedded cluster). Records still in the batch or in flight are
 * dropped and counted failed, and a line on stderr says how many records were not delivered.
 * Read the stats (and drain) before: they go with the object. NULL is a no-op.
 */
void nm_kafka_free(struct nm_kafka *k);

#endif /* NM_KAFKA_H */
