/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_KAFKA_H
#define NM_KAFKA_H

/*
 * The Kafka sink: packs encoded records into Kafka messages of at most batch_bytes, produces them
 * with librdkafka (acks=all, idempotent, delivery reports on) and counts every record from the
 * moment it is handed in until it is acknowledged, spooled, dropped or failed:
 *
 *   records_in + records_recovered == records_acked + records_failed + records_unacked +
 *                                      records_dropped + records_deadletter + records_corrupt +
 *                                      spool_records + records_inflight
 *
 * holds at every moment (between calls on the sink's thread; counters read from other threads
 * may lag each other). records_recovered are the rows a spool left by an earlier run held at
 * start (those of entries found corrupt included: they count in records_corrupt as well);
 * spool_records are the rows in the spool now (waiting, or being replayed); in flight are rows in
 * open batches or in librdkafka's queue. nm_kafka_drain() returns the last term.
 *
 * Partitions, keyed by exporter: rows are grouped by exporter (the record key's sampler_addr)
 * into exporter_groups open batches, group = FNV-1a(sampler_addr) % exporter_groups. A message
 * holds rows of one group only and carries the group's number in decimal as its Kafka key, so
 * librdkafka's partitioner (consistent_random: CRC32 of the key modulo the partition count)
 * sends every message of a group -- all rows of an exporter -- to the same partition; with
 * idempotence on, librdkafka keeps them in order there. Use at least as many groups as the topic
 * has partitions. Spooled messages keep their key, so a replay goes to the same partition; it
 * comes later than newer live messages of the group, though (rows carry their own TimeReceived).
 *
 * A message is cut when the next record would not fit, when nm_kafka_poll() finds its batch
 * linger_ms old, or on nm_kafka_flush()/nm_kafka_drain().
 *
 * Broker down or slow (with a spool_dir): rows go to disk as soon as the outage is seen, not
 * after librdkafka's message.timeout.ms (300 s by default). The sink is seen in an outage when
 * live messages wait in librdkafka and either no broker connection is up (librdkafka's
 * statistics, every second, or its ALL_BROKERS_DOWN error) or no delivery report came for
 * spool_after_ms (1000 by default). It then purges librdkafka's queue -- the purged messages
 * were never sent, so spooling them makes no duplicate -- and the requests on the wire (those
 * the broker may have stored are counted in messages_possibly_persisted: a replay may duplicate
 * them), writes them to the spool, and sends every new batch straight to the spool; one spooled
 * message at a time is produced as a probe. The first successful delivery report ends the
 * outage: new batches go to librdkafka again and the spool is replayed. So a process killed
 * (kill -9) during an outage loses only what had not reached the sink's spool: rows in open
 * batches (at most linger_ms old) and rows handed to librdkafka in the last spool_after_ms
 * before the outage was seen (a second by default). See netmeta.ini, [kafka] spool_after_ms.
 * A batch the queue has no room for, and every message whose delivery fails (timed out, purged
 * at shutdown, any error), goes to the spool too (spool.h: segment files with CRC32C-checked
 * entries); only when the spool is full (spool_max_bytes) or cannot be written is a batch
 * dropped, counted in records_dropped and logged on stderr with its size. Spooled messages are
 * replayed in the order they were spooled: while the last delivery report was a success or
 * librdkafka's statistics show a broker connection up, up to 256 messages (64 MiB) at a time;
 * otherwise one, whose delivery report opens the window again. A replay that fails goes back to
 * the head of the spool. A replay Kafka refuses for good (a permanent error about the message
 * itself: too large, invalid or corrupt record, bad timestamp) spool_max_rejects times -- or one
 * librdkafka cannot send at all under this configuration -- goes to the spool's dead-letter file,
 * counted in records_deadletter, so it cannot block the spool's head. Spool entries found
 * corrupt (at start or when read) are lost rows, counted in records_corrupt (as far as their
 * header tells) and spool_corrupt. A spool left by an earlier run (a crash, or a drain that ran
 * out of time) is replayed the same way from the start.
 * Without a spool_dir, a message that fails delivery is counted in records_failed and gone, and
 * a full queue blocks for up to 1 s before the batch fails.
 * At-least-once: a message on the wire when its delivery fails (a lost acknowledgement) may
 * have been stored by the broker; it is spooled too, and counted in messages_possibly_persisted
 * so a duplicate can be explained. Messages that simply waited (broker down) are never sent
 * twice.
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
 * Threading: one thread (the flusher) calls everything except nm_kafka_get_stats() and
 * nm_kafka_last_error(), which any thread may call (counters are single-writer, nm_ctr_*). Delivery
 * reports, statistics and errors are served on the calling thread inside
 * nm_kafka_add/flush/poll/drain.
 *
 * Blocking, and the block callbacks: the sink may wait inside nm_kafka_add/flush (a full queue
 * without a spool: up to 1 s per batch), nm_kafka_poll (spool I/O: write, pread, the commit
 * pwrite, fdatasync at most once a second; the purge that starts an outage), nm_kafka_drain (up to
 * its timeout, plus the in-flight grace), nm_kafka_settle and nm_kafka_free (librdkafka's purge
 * and shutdown). Around each such wait or I/O call it calls params.block_begin(block_arg) before
 * and params.block_end(block_arg) after, on the calling thread, always as a pair and never
 * nested (a wait inside a wait calls nothing more), and touches nothing of the caller's between
 * them. The engine passes rcu_thread_offline/online there, so that its RCU grace periods do not
 * wait for a broker or a disk; the sink itself knows nothing of RCU. Encoding and the
 * non-blocking work of nm_kafka_add/poll run between pairs.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../ctr/ctr.h"
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
	const char *brokers; /* "host:port,..." or "embedded" */
	const char *topic;   /* e.g. "flow-messages" */
	enum nm_kafka_format format;
	size_t batch_bytes;	 /* max payload of one Kafka message; at least NM_ENCODE_PB_MAX
				  * (protobuf) or NM_ENCODE_JSON_MAX (JSON), at most 900,000,000 */
	int linger_ms;		 /* librdkafka linger.ms, and the longest a partial batch waits
				  * in the sink before nm_kafka_poll() produces it; < 0: keep
				  * librdkafka's default and produce partial batches on every poll */
	const char *compression; /* none, gzip, snappy, lz4, zstd; NULL or "": librdkafka's */
	const struct nm_kafka_prop *props; /* passed to librdkafka as they are, after the sink's own
					    * settings (so they override them) */
	unsigned int n_props;
	unsigned int exporter_groups; /* open batches / message keys; 0 means 1; at most 1024 */
	size_t queue_max_bytes;	  /* librdkafka's queue.buffering.max.kbytes * 1024; at least two
				   * batches; 0: 1 GiB */
	const char *spool_dir;	  /* NULL or "": no spool */
	uint64_t spool_max_bytes; /* segment files in total; at least two batches */
	int spool_after_ms; /* with a spool: no delivery report for this long while live messages
			     * wait means an outage (see above); 0: 1000; < 0: only a broker seen
			     * down does; must exceed linger_ms */
	unsigned int spool_max_rejects; /* permanent refusals of one spooled message before it
					 * goes to the dead-letter file; 0: 5 */
	/*
	 * Optional (NULL: nothing is called): around every wait and every spool I/O call, see
	 * "Blocking" above. Called with block_arg on the sink's thread.
	 */
	void (*block_begin)(void *block_arg);
	void (*block_end)(void *block_arg);
	void *block_arg;
};

enum {
	NM_KAFKA_BROKER_UNKNOWN = -1, /* no statistics yet */
	NM_KAFKA_BROKER_DOWN = 0,     /* no broker connection is up */
	NM_KAFKA_BROKER_UP = 1,	      /* at least one is */
};

/*
 * The sink's counters and gauges (lib/ctr/ctr.h). Single writer: the thread that calls the sink
 * (delivery reports and statistics are served on it too); nm_kafka_get_stats() reads them from
 * any thread. The spool's, queue_messages and spool_enabled are filled in by the getter.
 */
#define NM_KAFKA_CTRS(X, A, c)                                                                     \
	X(c, records_in, COUNTER, "records", 0, "", "rows handed to nm_kafka_add()")               \
	X(c, records_recovered, COUNTER, "records", NM_CTR_F_NONZERO,                              \
	  "kafka spool:recovered at start",                                                        \
	  "rows in the spool left by an earlier run, found at start (corrupt ones included)")      \
	X(c, records_acked, COUNTER, "records", 0, "kafka records:acked",                          \
	  "rows in messages the broker acknowledged (replays included)")                           \
	X(c, records_failed, COUNTER, "records", 0, "kafka records:failed",                        \
	  "rows Kafka said no to: encode errors; without a spool also rows of messages whose "     \
	  "delivery failed or that librdkafka would not take")                                     \
	X(c, records_unacked, COUNTER, "records", 0, "kafka records:unacked",                      \
	  "rows with no answer: in flight when the sink was settled, purged (no spool)")           \
	X(c, records_dropped, COUNTER, "records", NM_CTR_F_NONZERO, "kafka dropped:records",       \
	  "rows in batches the full (or failing) spool could not take")                            \
	X(c, records_spooled, COUNTER, "records", NM_CTR_F_NONZERO,                                \
	  "kafka spool:written this run", "rows written to the spool by this run")                 \
	X(c, records_inflight, GAUGE, "records", 0, "",                                            \
	  "rows in open batches or in librdkafka's queue")                                         \
	X(c, messages_produced, COUNTER, "messages", 0, "",                                        \
	  "messages accepted by rd_kafka_produce() (replays included)")                            \
	X(c, messages_acked, COUNTER, "messages", 0, "kafka messages:acked",                       \
	  "messages the broker acknowledged")                                                      \
	X(c, messages_failed, COUNTER, "messages", 0, "",                                          \
	  "messages whose delivery failed (then spooled, with a spool) or never accepted")         \
	X(c, messages_spooled, COUNTER, "messages", 0, "", "messages written to the spool")        \
	X(c, messages_replayed, COUNTER, "messages", 0, "", "messages produced from the spool")    \
	X(c, messages_dropped, COUNTER, "messages", NM_CTR_F_NONZERO, "kafka dropped:batches",     \
	  "batches the spool could not take")                                                      \
	X(c, messages_possibly_persisted, COUNTER, "messages", 0, "",                              \
	  "messages that failed after being sent: a replay may duplicate them")                    \
	X(c, bytes_acked, COUNTER, "bytes", 0, "", "payload bytes of the acknowledged messages")   \
	X(c, bytes_failed, COUNTER, "bytes", 0, "",                                                \
	  "payload bytes of messages whose delivery failed")                                       \
	X(c, bytes_dropped, COUNTER, "bytes", NM_CTR_F_NONZERO, "kafka dropped:bytes",             \
	  "payload bytes of dropped batches")                                                      \
	X(c, packets_dropped, COUNTER, "packets", 0, "", "sum of the dropped rows' Packets")       \
	X(c, flow_bytes_dropped, COUNTER, "bytes", 0, "", "sum of the dropped rows' Bytes")        \
	X(c, queue_messages, GAUGE, "messages", 0, "",                                             \
	  "librdkafka's queue now (rd_kafka_outq_len)")                                            \
	X(c, queue_bytes, GAUGE, "bytes", 0, "", "payload bytes in librdkafka's queue now")        \
	X(c, spool_records, GAUGE, "records", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,               \
	  "kafka spool:records wait there now", "rows in the spool now")                           \
	X(c, spool_messages, GAUGE, "messages", 0, "", "messages in the spool now")                \
	X(c, spool_bytes, GAUGE, "bytes", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,                   \
	  "kafka spool:bytes", "size of the spool's files now")                                    \
	X(c, spool_corrupt, COUNTER, "regions", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,             \
	  "kafka spool losses:corrupt regions", "torn or corrupt spool regions skipped")           \
	X(c, spool_corrupt_bytes, COUNTER, "bytes", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,         \
	  "kafka spool losses:corrupt bytes", "bytes of the skipped spool regions")                \
	X(c, encode_errors, COUNTER, "records", 0, "",                                             \
	  "records that could not be encoded (in records_failed)")                                 \
	X(c, spool_enabled, GAUGE, "", 0, "", "1 when kafka.spool_dir is set")                     \
	X(c, records_corrupt, COUNTER, "records", NM_CTR_F_NONZERO,                                \
	  "kafka spool losses:records in corrupt regions",                                         \
	  "rows of spool entries found corrupt (lost; as far as their headers tell)")              \
	X(c, records_deadletter, COUNTER, "records", NM_CTR_F_NONZERO,                             \
	  "kafka spool losses:records dead-lettered",                                              \
	  "rows of spooled messages Kafka refused for good, moved to the dead-letter file (lost)") \
	X(c, messages_deadletter, COUNTER, "messages", 0, "",                                      \
	  "messages moved to the dead-letter file")                                                \
	X(c, messages_rejected, COUNTER, "messages", 0, "",                                        \
	  "permanent refusals of spooled messages (each try)")                                     \
	X(c, spool_write_errors, COUNTER, "errors", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,         \
	  "kafka spool losses:write errors", "spool appends that failed on I/O (batch dropped)")   \
	X(c, spool_sync_errors, COUNTER, "errors", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON,          \
	  "kafka spool losses:sync errors", "failed fsync/fdatasync/commit writes of the spool")   \
	X(c, spool_deadletter_bytes, GAUGE, "bytes", 0, "", "size of the dead-letter file now")    \
	X(c, outages, COUNTER, "outages", 0, "",                                                   \
	  "times the sink switched to spooling (broker seen down)")                                \
	X(c, spooling, GAUGE, "", 0, "", "1 while new batches go straight to the spool")

struct nm_kafka_stats {
	NM_KAFKA_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
	int broker_state; /* NM_KAFKA_BROKER_*; not a counter (a string in telemetry) */
};

/* The set of struct nm_kafka_stats: "kafka", keys prefixed "kafka_" in combined views. */
extern const struct nm_ctr_set nm_kafka_ctr_set;

struct nm_kafka;

/*
 * Create the producer (and the mock cluster for "embedded"), and open the spool (replaying what an
 * earlier run left there starts with the first nm_kafka_poll). Sets request.required.acks=-1,
 * enable.idempotence=true, linger.ms, compression.codec, queue.buffering.max.messages=1000000,
 * queue.buffering.max.kbytes (queue_max_bytes), message.max.bytes >= batch_bytes + 64 KiB,
 * statistics.interval.ms=1000, then props (each checked by nm_kafka_prop_check first).
 * On failure returns NULL, sets errno and writes a message naming the cause (the parameter or
 * the librdkafka property and value) into err.
 */
struct nm_kafka *nm_kafka_create(const struct nm_kafka_params *p, char *err, size_t errlen);

/*
 * May a librdkafka property be set over the sink's own settings? The sink's guarantees rest on
 * acks=all and idempotence: acks / request.required.acks other than all (-1),
 * enable.idempotence other than true, and max.in.flight(.requests.per.connection) above 5 (more
 * breaks the idempotent producer's ordering) are refused. 0, or -EINVAL with a message naming
 * the property, the value and why into err. Pure; any thread.
 */
int nm_kafka_prop_check(const char *name, const char *value, char *err, size_t errlen);

/* The bootstrap servers in use ("127.0.0.1:port" for the embedded cluster). Valid until free. */
const char *nm_kafka_bootstrap(const struct nm_kafka *k);

/*
 * Encode rec (flows: the number of records merged into it, the FlowMessage's Flows) into the
 * open batch of its exporter group; when it does not fit, produce the batch
 * first (a full queue sends it to the spool; without a spool the call waits up to 1 s, serving
 * delivery reports, and then the batch's records count as failed). Returns 0 when rec is in
 * the batch. -EINVAL for NULL arguments (nothing is counted); -EMSGSIZE when rec cannot be
 * encoded into an empty batch -- impossible with the batch_bytes nm_kafka_create() accepts,
 * and already counted in records_in, records_failed and encode_errors, so do not count it again.
 * Failures of earlier records show only in the stats.
 */
int nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec, uint64_t flows);

/*
 * nm_kafka_add() of a table entry as nm_agg_drain_rows() hands it (lib/agg/agg.h): protobuf is
 * encoded straight from the compact key (nm_encode_pb_row), JSON from the record built from it.
 * Same returns and counting as nm_kafka_add(); same thread.
 */
struct nm_agg_row;
int nm_kafka_add_row(struct nm_kafka *k, const struct nm_agg_row *row);

/*
 * Produce the open batches. 0, or (without a spool) -errno when one could not be produced
 * (-ENOBUFS: queue full for 1 s); its records are then counted failed.
 */
int nm_kafka_flush(struct nm_kafka *k);

/*
 * Produce the batches that are linger_ms old, serve delivery reports, replay spooled messages
 * and sync the spool (at most once a second), without blocking (unless librdkafka's queue is
 * full and there is no spool, see nm_kafka_add). Call it regularly, also when no records come:
 * it is what delivers the rows of a quiet second and what empties the spool.
 */
void nm_kafka_poll(struct nm_kafka *k);

/*
 * Flush, then wait up to timeout_ms (or until *stop, when stop is not NULL) for every message to
 * be acknowledged -- the spool's, too -- riding out a broker that is down meanwhile. With a spool,
 * what is still queued or in flight then goes to the spool (queued messages at once, those on the
 * wire after a 2 s grace) and a line on stderr says how many records wait there. Returns the
 * number of records still in flight, neither acknowledged nor spooled nor failed (0 when every
 * record has an outcome; see the stats for which). May be called again, e.g. after the broker
 * came back.
 */
uint64_t nm_kafka_drain(struct nm_kafka *k, int timeout_ms, const volatile bool *stop);

/*
 * The end of the sink's work, after the last nm_kafka_drain(): every record gets its final
 * outcome. Without a spool, what is still in flight is purged and counted in records_unacked
 * (with one, nm_kafka_drain() spooled it already). Writes one line on stderr when any record was
 * not delivered, with the same numbers the stats hold (failed, unacked, dropped), and returns
 * records_unacked. nm_kafka_free() does the same for a sink that was not settled.
 */
uint64_t nm_kafka_settle(struct nm_kafka *k);

/* Counters and gauges; any thread. */
void nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *out);

/* Name of the last delivery or transport error (e.g. "_MSG_TIMED_OUT"), "" if none; any thread. */
const char *nm_kafka_last_error(const struct nm_kafka *k);

/*
 * Destroy the producer (and the embedded cluster), close the spool. Records still in open batches
 * or in flight go to the spool; without one they are counted failed, and a line on stderr says
 * how many records were not delivered.
 * Read the stats (and drain) before: they go with the object. NULL is a no-op.
 */
void nm_kafka_free(struct nm_kafka *k);

#endif /* NM_KAFKA_H */
