/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Kafka sink. Records are encoded into the open batch of their exporter group (one buffer of
 * batch_bytes per group); a full batch becomes one Kafka message. A batch at least half full is
 * handed to librdkafka without a copy: the buffer travels with the message and comes back to a
 * free list on its delivery report, and the group gets a buffer from that list. Copying it
 * (RD_KAFKA_MSG_F_COPY, as before) cost a 1 MB memcpy per batch into memory librdkafka had just
 * malloc'd, so fresh pages: faults, zeroing and heap trims were ~8 % of the engine's CPU at
 * 3.5 M rows (perf, BENCHMARKS.md "Collector against a peer"). A smaller batch (linger_ms ran
 * out) is still copied, so that a buffer of batch_bytes in the queue always carries at least
 * batch_bytes / 2 of it: the buffers then take at most twice queue_max_bytes, plus one per group.
 * Each message carries a small descriptor
 * as its msg_opaque -- rows, Packets/Bytes sums, group, and the spool sequence when it is a
 * replay -- so the delivery report settles exactly those rows: acknowledged, or (with a spool)
 * written to the spool, or dropped when the spool is full, or (without one) failed.
 *
 * Everything runs on the caller's thread (the flusher): delivery reports, statistics and errors
 * are served by rd_kafka_poll()/rd_kafka_flush() from nm_kafka_add/flush/poll/drain. Counters are
 * only written there but read from anywhere, hence relaxed atomics.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka.h"
#include "spool.h"
#include "../agg/agg.h"
#include "../encode/encode.h"

/*
 * Without a spool: how long nm_kafka_add/flush keep retrying a message the local queue has no
 * room for (RD_KAFKA_RESP_ERR__QUEUE_FULL), serving delivery reports meanwhile, before its records
 * are counted as failed. With a spool the batch goes to the spool at once instead.
 */
#define NM_KAFKA_QUEUE_FULL_WAIT_MS 1000

/*
 * Spool replay: at most this many spooled messages (and bytes) are in librdkafka at once, so a
 * large spool does not push the live batches out of the bounded queue. While the broker is not
 * known to be up (no statistics saying so, and the last delivery report was a failure) only one
 * is: it is the probe whose delivery report opens the window again.
 */
#define NM_KAFKA_REPLAY_MAX_MSGS 256
#define NM_KAFKA_REPLAY_MAX_BYTES (64u << 20)

/* How long a drain that ran out of time still waits for requests on the wire, then purges them. */
#define NM_KAFKA_INFLIGHT_GRACE_MS 2000

#define NM_KAFKA_MAX_GROUPS 1024

#define NM_KAFKA_SPOOL_AFTER_MS 1000 /* spool_after_ms = 0 */
#define NM_KAFKA_MAX_REJECTS 5	     /* spool_max_rejects = 0 */

/*
 * A batch buffer (batch_bytes of data after the header). Free ones are listed; every one is on
 * the "all" list, so the buffers of messages librdkafka never reported are freed at the end.
 */
struct kbuf {
	struct kbuf *next; /* free list */
	struct kbuf *all;
	uint8_t data[] __attribute__((aligned(64)));
};

/* The descriptor of one produced message (its msg_opaque). */
struct kmsg {
	struct kmsg *next; /* free list */
	struct kmsg *all;  /* every descriptor, to free them at the end */
	struct kbuf *buf;  /* the payload's buffer when it was not copied, back to the list at DR */
	uint64_t seq;	   /* spool entry it replays; 0: a live batch */
	uint64_t packets;
	uint64_t bytes;
	uint32_t rows;
	uint32_t key;
};

/* One open batch: the rows of one exporter group. */
struct slot {
	uint8_t *buf;
	size_t len;
	uint32_t nrec;
	uint64_t packets;
	uint64_t bytes;
	uint64_t start_ms;
};

struct nm_kafka {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_t *mock_rk; /* owns the embedded cluster, NULL for real brokers */
	rd_kafka_mock_cluster_t *mock;
	enum nm_kafka_format format;
	int linger_ms;
	char *bootstrap;
	size_t cap; /* batch_bytes */

	struct slot *slots;
	unsigned int n_slots;

	struct kmsg *free_msgs;
	struct kmsg *all_msgs;
	struct kbuf *free_bufs;
	struct kbuf *all_bufs;

	/*
	 * group_of()'s answers for recent exporters, direct-mapped by the address' last byte: a
	 * drained table interleaves its exporters' rows, and FNV-1a of 16 bytes is 16 dependent
	 * multiplies (66 instructions a row when two exporters alternated, callgrind).
	 */
	struct {
		uint8_t addr[NM_ADDR_LEN];
		unsigned int group;
	} gcache[16];

	struct nm_spool *spool;	  /* NULL: no spool */
	unsigned int replay_msgs; /* spooled messages in librdkafka now */
	uint64_t replay_bytes;
	unsigned int live_msgs; /* live batches in librdkafka now */
	uint64_t dr_wait_ms;	/* since when live messages wait without any delivery report */
	int spool_after_ms;	/* < 0: only a broker seen down starts an outage */
	unsigned int max_rejects;
	bool spooling;		  /* outage: new batches go straight to the spool */
	uint64_t outage_purge_ms; /* last purge of live messages during the outage */
	bool last_dr_ok;
	bool spool_changed;
	uint64_t last_sync_ms;
	uint64_t last_spool_log_ms;

	struct nm_kafka_stats st; /* relaxed atomics: written here, read anywhere */
	int last_err;		  /* last delivery/transport error (atomic) */
	int broker_state;	  /* NM_KAFKA_BROKER_* (atomic) */
	bool fatal_logged;
	uint64_t lost_reported; /* failed + unacked + dropped when stderr last said so */

	void (*block_begin)(void *); /* kafka.h, "Blocking" */
	void (*block_end)(void *);
	void *block_arg;
	unsigned int blocked; /* depth of blk_begin(): only the outermost pair calls out */
};

/* The sink's thread is the counters' only writer (kafka.h): nm_ctr_*, no atomic RMW. */
#define ST_ADD(k, f, v) nm_ctr_add(&(k)->st.f, (uint64_t)(v))
#define ST_SUB(k, f, v) nm_ctr_sub(&(k)->st.f, (uint64_t)(v))
#define ST_GET(k, f) nm_ctr_get(&(k)->st.f)

static const struct nm_ctr_desc kafka_desc[] = {
	NM_KAFKA_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_kafka_stats)};

const struct nm_ctr_set nm_kafka_ctr_set =
	NM_CTR_SET("kafka", "kafka_", "one per sink, written by the thread that calls the sink",
		   SINGLE_WRITER, struct nm_kafka_stats, kafka_desc);

/*
 * The sink may wait (or do file I/O) from here to blk_end(): the caller hears of it once,
 * however deep the waits nest (a delivery report spooling inside a drain).
 */
static void
blk_begin(struct nm_kafka *k)
{
	if (k->blocked++ == 0 && k->block_begin != NULL)
		k->block_begin(k->block_arg);
}

static void
blk_end(struct nm_kafka *k)
{
	if (--k->blocked == 0 && k->block_end != NULL)
		k->block_end(k->block_arg);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
set_last_err(struct nm_kafka *k, int err)
{
	__atomic_store_n(&k->last_err, err, __ATOMIC_RELAXED);
}

static struct kmsg *
kmsg_get(struct nm_kafka *k)
{
	struct kmsg *d = k->free_msgs;

	if (d != NULL) {
		k->free_msgs = d->next;
		return d;
	}
	/* Bounded by librdkafka's queue: a descriptor exists per message it holds. */
	d = calloc(1, sizeof(*d));
	if (d != NULL) {
		d->all = k->all_msgs;
		k->all_msgs = d;
	}
	return d;
}

static void
kmsg_put(struct nm_kafka *k, struct kmsg *d)
{
	d->next = k->free_msgs;
	k->free_msgs = d;
}

/* A batch buffer from the free list, or a new one (bounded: see the comment at the top). */
static struct kbuf *
kbuf_get(struct nm_kafka *k)
{
	struct kbuf *b = k->free_bufs;

	if (b != NULL) {
		k->free_bufs = b->next;
		return b;
	}
	/* Pages are touched only as a batch fills, so idle groups cost little. */
	b = malloc(sizeof(*b) + k->cap);
	if (b != NULL) {
		b->all = k->all_bufs;
		k->all_bufs = b;
	}
	return b;
}

static void
kbuf_put(struct nm_kafka *k, struct kbuf *b)
{
	b->next = k->free_bufs;
	k->free_bufs = b;
}

static inline struct kbuf *
kbuf_of(uint8_t *data)
{
	return (struct kbuf *)(void *)(data - offsetof(struct kbuf, data));
}

static unsigned int
fnv_group(const uint8_t addr[NM_ADDR_LEN], unsigned int n_slots)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	unsigned int i;

	for (i = 0; i < NM_ADDR_LEN; i++)
		h = (h ^ addr[i]) * 16777619u;
	return h % n_slots;
}

static inline unsigned int
group_of(struct nm_kafka *k, const uint8_t sampler_addr[NM_ADDR_LEN])
{
	/* A 16-byte compare instead of 16 dependent multiplies for nearly every row. */
	unsigned int i = sampler_addr[NM_ADDR_LEN - 1] & 15;

	if (memcmp(sampler_addr, k->gcache[i].addr, NM_ADDR_LEN) != 0) {
		memcpy(k->gcache[i].addr, sampler_addr, NM_ADDR_LEN);
		k->gcache[i].group = fnv_group(sampler_addr, k->n_slots);
	}
	return k->gcache[i].group;
}

/*
 * A live batch did not reach Kafka (queue full, delivery failed, purged at shutdown): into the
 * spool, or dropped (counted, logged with its size) when the spool cannot take it; without a
 * spool its rows fail.
 */
static void
live_undelivered(struct nm_kafka *k, const void *payload, size_t len, uint32_t rows, uint32_t key,
		 uint64_t packets, uint64_t bytes, bool unacked)
{
	struct nm_spool_meta m = {.rows = rows, .key = key, .packets = packets, .bytes = bytes};
	int ret;

	ST_SUB(k, records_inflight, rows);
	if (k->spool == NULL) {
		if (unacked)
			ST_ADD(k, records_unacked, rows);
		else
			ST_ADD(k, records_failed, rows);
		return;
	}
	blk_begin(k);
	ret = nm_spool_append(k->spool, &m, payload, (uint32_t)len);
	blk_end(k);
	if (ret == 0) {
		ST_ADD(k, records_spooled, rows);
		ST_ADD(k, messages_spooled, 1);
		k->spool_changed = true;
		if (now_ms() - k->last_spool_log_ms >= 10000) {
			k->last_spool_log_ms = now_ms();
			fprintf(stderr,
				"kafka: spooling undelivered batches to %s (broker %s, "
				"last error %s)\n",
				nm_spool_dir(k->spool),
				k->broker_state == NM_KAFKA_BROKER_UP ? "up" : "not up",
				rd_kafka_err2name(k->last_err));
		}
		return;
	}
	ST_ADD(k, records_dropped, rows);
	ST_ADD(k, messages_dropped, 1);
	ST_ADD(k, packets_dropped, packets);
	ST_ADD(k, flow_bytes_dropped, bytes);
	ST_ADD(k, bytes_dropped, len);
	fprintf(stderr,
		"kafka: DROPPED a batch of %u records, %zu bytes (%" PRIu64 " packets, %" PRIu64
		" bytes of traffic): spool %s %s\n",
		rows, len, packets, bytes, nm_spool_dir(k->spool),
		ret == -ENOSPC ? "is full (kafka.spool_max_bytes)" : strerror(-ret));
}

/*
 * Errors about the message itself, which no retry and no broker coming back will change. Errors
 * about the cluster (authorisation, unknown topic, leaders, timeouts) are not: they end when
 * someone fixes the cluster, and the spool waits for that.
 */
static bool
err_permanent(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR_INVALID_MSG:
	case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
	case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		return true;
	default:
		return false;
	}
}

/*
 * A spooled message Kafka will never take: into the dead-letter file, out of the spool's way.
 * Its rows are lost to Kafka (counted); when even the dead-letter file cannot take it, they are
 * dropped (counted as such).
 */
static void
dead_letter(struct nm_kafka *k, uint64_t seq, const char *why)
{
	struct nm_spool_meta m;
	int ret;

	blk_begin(k);
	ret = nm_spool_dead_letter(k->spool, seq, &m);
	blk_end(k);

	k->spool_changed = true;
	if (ret == -EBADMSG || ret == -ENOENT || ret == -EINVAL)
		return; /* corrupt (counted by the spool) or not there */
	if (ret == 0) {
		ST_ADD(k, records_deadletter, m.rows);
		ST_ADD(k, messages_deadletter, 1);
		fprintf(stderr,
			"kafka: a spooled batch of %u records (%" PRIu64 " packets, %" PRIu64
			" bytes of traffic) moved to %s/%s: %s\n",
			m.rows, m.packets, m.bytes, nm_spool_dir(k->spool), NM_SPOOL_DEAD_NAME,
			why);
		return;
	}
	ST_ADD(k, records_dropped, m.rows);
	ST_ADD(k, messages_dropped, 1);
	ST_ADD(k, packets_dropped, m.packets);
	ST_ADD(k, flow_bytes_dropped, m.bytes);
	fprintf(stderr,
		"kafka: DROPPED a batch of %u records from the spool (%s), and the dead-letter "
		"file could not take it: %s\n",
		m.rows, why, ret == -ENOSPC ? "it is full" : strerror(-ret));
}

/* Kafka refused a replayed message for good: count it, dead-letter it after max_rejects. */
static void
replay_rejected(struct nm_kafka *k, uint64_t seq, rd_kafka_resp_err_t err)
{
	char why[160];
	int n = nm_spool_reject(k->spool, seq);

	ST_ADD(k, messages_rejected, 1);
	if (n < 0 || (unsigned int)n < k->max_rejects)
		return;
	snprintf(why, sizeof(why), "refused %d times by Kafka (%s)", n, rd_kafka_err2name(err));
	dead_letter(k, seq, why);
}

/* The outage is over (a delivery report said so): new batches go to librdkafka again. */
static void
outage_end(struct nm_kafka *k)
{
	if (!k->spooling)
		return;
	__atomic_store_n(&k->spooling, false, __ATOMIC_RELAXED);
	fprintf(stderr,
		"kafka: delivery works again; batches go to the broker, the spool (%s) is "
		"replayed\n",
		nm_spool_dir(k->spool));
}

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct nm_kafka *k = opaque;
	struct kmsg *d = m->_private;

	(void)rk;
	if (d == NULL)
		return;
	ST_SUB(k, queue_bytes, m->len);
	if (d->seq != 0) {
		k->replay_msgs--;
		k->replay_bytes -= m->len;
	} else {
		k->live_msgs--;
	}
	k->dr_wait_ms = now_ms();
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		ST_ADD(k, records_acked, d->rows);
		ST_ADD(k, messages_acked, 1);
		ST_ADD(k, bytes_acked, m->len);
		if (d->seq != 0) {
			blk_begin(k); /* the commit file's pwrite, a segment unlinked */
			(void)nm_spool_release(k->spool, d->seq);
			blk_end(k);
			k->spool_changed = true;
		} else {
			ST_SUB(k, records_inflight, d->rows);
		}
		k->last_dr_ok = true;
		/* An acknowledgement is a broker up, whatever the last statistics said. */
		__atomic_store_n(&k->broker_state, NM_KAFKA_BROKER_UP, __ATOMIC_RELAXED);
		outage_end(k);
	} else {
		/* Our own purge at the end is no answer from Kafka: unacked, not failed. */
		bool purged = m->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
			      m->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT;

		bool permanent = err_permanent(m->err);

		if (!purged) {
			ST_ADD(k, messages_failed, 1);
			ST_ADD(k, bytes_failed, m->len);
			set_last_err(k, m->err);
			/* A refusal of this message says nothing about the broker being away. */
			if (!permanent)
				k->last_dr_ok = false;
		}
		if (rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
			ST_ADD(k, messages_possibly_persisted, 1);
		if (d->seq != 0 && permanent)
			replay_rejected(k, d->seq, m->err);
		else if (d->seq != 0)
			(void)nm_spool_untake(k->spool, d->seq); /* it waits, first in line */
		else
			live_undelivered(k, m->payload, m->len, d->rows, d->key, d->packets,
					 d->bytes, purged);
	}
	if (d->buf != NULL) {
		kbuf_put(k, d->buf);
		d->buf = NULL;
	}
	kmsg_put(k, d);
}

/*
 * Transient errors (a broker going away) are already in librdkafka's log and retried by it; a
 * fatal error (idempotence broken) stops the producer for good, so say it once, loudly: every
 * later batch fails with ERR__FATAL and goes to the spool (or is counted failed).
 */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct nm_kafka *k = opaque;
	char why[512];

	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		__atomic_store_n(&k->broker_state, NM_KAFKA_BROKER_DOWN, __ATOMIC_RELAXED);
	if (err != RD_KAFKA_RESP_ERR__FATAL) {
		set_last_err(k, err);
		return;
	}
	err = rd_kafka_fatal_error(rk, why, sizeof(why));
	set_last_err(k, err);
	if (!k->fatal_logged)
		fprintf(stderr,
			"kafka: fatal producer error, no record will be delivered any more: "
			"%s: %s\n",
			rd_kafka_err2name(err), err ? why : reason);
	k->fatal_logged = true;
}

/*
 * librdkafka's statistics (every second): the brokers' connection states. Up when any broker it
 * learned or was configured with (not its internal one) is in state UP. A string scan is enough
 * for the fixed shape of this JSON ("source":"...","state":"..." per broker).
 */
static int
stats_cb(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
	struct nm_kafka *k = opaque;
	const char *p = json, *end = json + len, *b;
	bool any = false, up = false;

	(void)rk;
	b = strstr(json, "\"brokers\":{");
	if (b == NULL)
		return 0;
	p = b;
	while (p < end && (p = strstr(p, "\"source\":\"")) != NULL) {
		const char *src = p + 10, *st = strstr(src, "\"state\":\"");

		if (st == NULL)
			break;
		if (strncmp(src, "internal\"", 9) != 0) {
			any = true;
			up |= strncmp(st + 9, "UP\"", 3) == 0;
		}
		p = st + 9;
	}
	if (any)
		__atomic_store_n(&k->broker_state, up ? NM_KAFKA_BROKER_UP : NM_KAFKA_BROKER_DOWN,
				 __ATOMIC_RELAXED);
	return 0; /* librdkafka frees json */
}

static int
err_to_errno(rd_kafka_resp_err_t err)
{
	switch (err) {
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
		return -ENOBUFS;
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		return -EMSGSIZE;
	case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		return -ENOENT;
	case RD_KAFKA_RESP_ERR__FATAL:
		return -ENOTCONN;
	default:
		return -EIO;
	}
}

/*
 * Hand one message to librdkafka. Its key is the exporter group's number, so librdkafka's
 * partitioner puts every message of a group on the same partition. wait: on a full queue, serve
 * delivery reports and retry for up to NM_KAFKA_QUEUE_FULL_WAIT_MS. 0 or -errno (nothing was
 * queued then; the caller settles the rows).
 */
static int
produce_one(struct nm_kafka *k, const void *payload, size_t len, uint32_t rows, uint32_t key,
	    uint64_t packets, uint64_t bytes, uint64_t seq, bool wait, struct kbuf *buf)
{
	uint64_t deadline = 0;
	rd_kafka_resp_err_t err;
	struct kmsg *d = kmsg_get(k);
	char kbuf[16];
	int klen = snprintf(kbuf, sizeof(kbuf), "%u", key);

	if (d == NULL)
		return -ENOMEM;
	d->buf = buf;
	d->seq = seq;
	d->rows = rows;
	d->key = key;
	d->packets = packets;
	d->bytes = bytes;
	for (;;) {
		if (rd_kafka_produce(k->rkt, RD_KAFKA_PARTITION_UA,
				     buf != NULL ? 0 : RD_KAFKA_MSG_F_COPY,
				     (void *)(uintptr_t)payload, len, kbuf, (size_t)klen, d) == 0) {
			ST_ADD(k, messages_produced, 1);
			ST_ADD(k, queue_bytes, len);
			if (seq == 0 && k->live_msgs++ == 0)
				k->dr_wait_ms = now_ms();
			return 0;
		}
		err = rd_kafka_last_error();
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL && wait) {
			if (deadline == 0)
				deadline = now_ms() + NM_KAFKA_QUEUE_FULL_WAIT_MS;
			if (now_ms() < deadline) {
				/* Delivery reports free room in the queue. */
				blk_begin(k);
				rd_kafka_poll(k->rk, 10);
				blk_end(k);
				continue;
			}
		}
		break;
	}
	d->buf = NULL;
	kmsg_put(k, d);
	if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
		set_last_err(k, err);
	return err_to_errno(err);
}

/* Produce the open batch of group g; the batch is empty afterwards either way. */
static int
produce_slot(struct nm_kafka *k, unsigned int g)
{
	struct slot *sl = &k->slots[g];
	int ret;

	if (sl->nrec == 0)
		return 0;
	if (k->spooling) {
		/* Outage: on disk at once, so a crash now cannot lose the batch. */
		live_undelivered(k, sl->buf, sl->len, sl->nrec, g, sl->packets, sl->bytes, false);
		ret = 0;
	} else {
		/* Hand the buffer over when the batch is at least half full and a spare exists. */
		struct kbuf *spare;

		/*
		 * Buffers come back with their delivery reports: serve the reports already in
		 * before a new buffer is taken. A drain of a big table calls no nm_kafka_poll
		 * between its batches, so without this every batch of it took a fresh malloc'd
		 * buffer and the flusher page-faulted through each (clear_page in pb_body, up to
		 * a quarter of its time at issue 10's size; BENCHMARKS.md, "the flusher").
		 */
		if (k->free_bufs == NULL && sl->len >= k->cap / 2)
			rd_kafka_poll(k->rk, 0);
		spare = sl->len >= k->cap / 2 ? kbuf_get(k) : NULL;

		ret = produce_one(k, sl->buf, sl->len, sl->nrec, g, sl->packets, sl->bytes, 0,
				  k->spool == NULL, spare != NULL ? kbuf_of(sl->buf) : NULL);
		if (spare != NULL && ret == 0)
			sl->buf = spare->data;
		else if (spare != NULL)
			kbuf_put(k, spare);
	}
	if (ret != 0) {
		if (k->spool == NULL)
			ST_ADD(k, messages_failed, 1);
		live_undelivered(k, sl->buf, sl->len, sl->nrec, g, sl->packets, sl->bytes, false);
	}
	sl->len = 0;
	sl->nrec = 0;
	sl->packets = 0;
	sl->bytes = 0;
	/* With a spool the batch is safe on disk: nothing failed as far as the caller goes. */
	return k->spool != NULL ? 0 : ret;
}

static int
produce_all(struct nm_kafka *k)
{
	unsigned int g;
	int ret = 0, r;

	for (g = 0; g < k->n_slots; g++) {
		r = produce_slot(k, g);
		if (r != 0 && ret == 0)
			ret = r;
	}
	return ret;
}

/* Feed spooled messages to librdkafka, oldest first, within the replay window. */
static void
replay(struct nm_kafka *k)
{
	unsigned int window;

	if (k->spool == NULL)
		return;
	window = !k->spooling && (k->last_dr_ok ||
				  __atomic_load_n(&k->broker_state, __ATOMIC_RELAXED) ==
					  NM_KAFKA_BROKER_UP)
			 ? NM_KAFKA_REPLAY_MAX_MSGS
			 : 1;
	while (k->replay_msgs < window && k->replay_bytes < NM_KAFKA_REPLAY_MAX_BYTES) {
		struct nm_spool_meta m;
		const void *payload;
		uint32_t len;
		int ret;

		blk_begin(k); /* pread of the entry */
		ret = nm_spool_take(k->spool, window, &m, &payload, &len);
		blk_end(k);

		if (ret <= 0)
			break;
		ret = produce_one(k, payload, len, m.rows, m.key, m.packets, m.bytes, m.seq, false,
				  NULL);
		if (ret == -EMSGSIZE) {
			/*
			 * Larger than this configuration lets librdkafka send (an earlier run had a
			 * larger batch_bytes): it can never leave, and must not block the spool.
			 */
			dead_letter(k, m.seq, "larger than message.max.bytes allows");
			continue;
		}
		if (ret != 0) {
			(void)nm_spool_untake(k->spool, m.seq);
			break;
		}
		k->replay_msgs++;
		k->replay_bytes += len;
		ST_ADD(k, messages_replayed, 1);
	}
}

/*
 * With a spool: is the broker away? Live messages waiting in librdkafka while no broker
 * connection is up, or without any delivery report for spool_after_ms, start an outage: the
 * waiting live messages are purged into the spool (their delivery reports, served right here,
 * spool them) and new batches go straight to the spool until a delivery report succeeds. Live
 * messages that come back into librdkafka's queue later in the outage (requests that were on the
 * wire, retried) are purged again, at most once per spool_after_ms.
 */
static void
outage_check(struct nm_kafka *k)
{
	uint64_t now, after;
	unsigned int i;
	bool down;

	if (k->spool == NULL || k->live_msgs == 0)
		return;
	now = now_ms();
	after = k->spool_after_ms >= 0 ? (uint64_t)k->spool_after_ms : UINT64_MAX;
	if (k->spooling) {
		if (now - k->outage_purge_ms < (after != UINT64_MAX ? after : 1000))
			return;
	} else {
		down = __atomic_load_n(&k->broker_state, __ATOMIC_RELAXED) == NM_KAFKA_BROKER_DOWN;
		if (!down && (after == UINT64_MAX || now - k->dr_wait_ms < after))
			return;
		__atomic_store_n(&k->spooling, true, __ATOMIC_RELAXED);
		ST_ADD(k, outages, 1);
		fprintf(stderr,
			"kafka: %s: %u batches waiting in librdkafka and every new batch go to "
			"the spool %s until a delivery succeeds\n",
			down ? "no broker connection is up" : "no delivery report", k->live_msgs,
			nm_spool_dir(k->spool));
	}
	k->outage_purge_ms = now;
	blk_begin(k);
	(void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	/*
	 * Serve the purged batches' delivery reports (they spool them) before a newer batch is
	 * spooled, so the spool keeps the order the rows were produced in: messages on a broker
	 * thread's queue report their purge from that thread, a little later than one poll (a
	 * newer batch spooled first, test_kafka's replay-order check failed at load ~10).
	 * Bounded: 10 polls of 10 ms.
	 */
	for (i = 0; i < 10 && k->live_msgs > 0; i++)
		rd_kafka_poll(k->rk, 10);
	rd_kafka_poll(k->rk, 0);
	blk_end(k);
}

static void
spool_maybe_sync(struct nm_kafka *k, bool force)
{
	if (k->spool == NULL || !k->spool_changed)
		return;
	if (!force && now_ms() - k->last_sync_ms < 1000)
		return;
	blk_begin(k);
	(void)nm_spool_sync(k->spool);
	blk_end(k);
	k->spool_changed = false;
	k->last_sync_ms = now_ms();
}

static size_t
encode(const struct nm_kafka *k, const struct nm_flow_rec *rec, uint64_t flows, uint8_t *dst,
       size_t cap)
{
	if (k->format == NM_KAFKA_FMT_JSON)
		return nm_encode_json(rec, flows, (char *)dst, cap);
	return nm_encode_pb(rec, flows, dst, cap);
}

/*
 * Put one row into the open batch of group g: rec encoded by the configured format, or (rec
 * NULL) row by nm_encode_pb_row. Inlined into both callers, so each keeps one encoder call.
 */
static inline int
batch_add(struct nm_kafka *k, unsigned int g, const struct nm_flow_rec *rec,
	  const struct nm_agg_row *row, uint64_t flows, uint64_t packets, uint64_t bytes)
{
	struct slot *sl = &k->slots[g];
	size_t n;

	ST_ADD(k, records_in, 1);
	n = rec != NULL ? encode(k, rec, flows, sl->buf + sl->len, k->cap - sl->len)
			: nm_encode_pb_row(row, sl->buf + sl->len, k->cap - sl->len);
	if (n == 0 && sl->nrec > 0) {
		/* The record does not fit: the batch is full. Its failure, if any, is counted. */
		(void)produce_slot(k, g);
		n = rec != NULL ? encode(k, rec, flows, sl->buf, k->cap)
				: nm_encode_pb_row(row, sl->buf, k->cap);
	}
	if (n == 0) {
		/* Cannot happen with the batch_bytes nm_kafka_create() accepts; counted anyway. */
		ST_ADD(k, encode_errors, 1);
		ST_ADD(k, records_failed, 1);
		return -EMSGSIZE;
	}
	if (sl->nrec == 0)
		sl->start_ms = k->linger_ms > 0 ? now_ms() : 0;
	sl->len += n;
	sl->nrec++;
	sl->packets += packets;
	sl->bytes += bytes;
	ST_ADD(k, records_inflight, 1);
	return 0;
}

int
nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec, uint64_t flows)
{
	if (k == NULL || rec == NULL)
		return -EINVAL;
	return batch_add(k, group_of(k, rec->key.sampler_addr), rec, NULL, flows, rec->packets,
			 rec->bytes);
}

int
nm_kafka_add_row(struct nm_kafka *k, const struct nm_agg_row *row)
{
	uint8_t addr[NM_ADDR_LEN];
	struct nm_flow_rec rec;

	if (k == NULL || row == NULL)
		return -EINVAL;
	if (k->format == NM_KAFKA_FMT_JSON) {
		/* JSON is not the fast path (see BENCHMARKS.md, "Encoders"): the record is built.
		 */
		nm_agg_row_rec(row, &rec);
		return nm_kafka_add(k, &rec, row->flows);
	}
	nm_agg_ck_addr(row->ck, NM_AGG_CK_ADDR_SAMPLER, addr);
	return batch_add(k, group_of(k, addr), NULL, row, row->flows, row->packets, row->bytes);
}

int
nm_kafka_flush(struct nm_kafka *k)
{
	if (k == NULL)
		return -EINVAL;
	return produce_all(k);
}

void
nm_kafka_poll(struct nm_kafka *k)
{
	uint64_t now;
	unsigned int g;

	if (k == NULL)
		return;
	/* A partial batch waits at most linger_ms, so a quiet engine still delivers rows. */
	now = k->linger_ms > 0 ? now_ms() : 0;
	for (g = 0; g < k->n_slots; g++) {
		struct slot *sl = &k->slots[g];

		if (sl->nrec > 0 &&
		    (k->linger_ms <= 0 || now - sl->start_ms >= (uint64_t)k->linger_ms))
			(void)produce_slot(k, g);
	}
	rd_kafka_poll(k->rk, 0);
	outage_check(k);
	replay(k);
	spool_maybe_sync(k, false);
}

static uint64_t
spool_rows(const struct nm_kafka *k)
{
	struct nm_spool_stats ss;

	if (k->spool == NULL)
		return 0;
	nm_spool_get_stats(k->spool, &ss);
	return ss.rows;
}

/* Rows in librdkafka: live ones, or spooled ones being replayed. */
static bool
busy(const struct nm_kafka *k)
{
	return ST_GET(k, records_inflight) > 0 || k->replay_msgs > 0;
}

/*
 * Move everything librdkafka still holds into the spool: queued messages are purged at once
 * (never sent, so no duplicate can come of spooling them); requests on the wire get a short
 * grace, then are purged too (the broker may have stored them: a replay may duplicate those,
 * counted in messages_possibly_persisted -- better than losing them).
 */
static void
spool_rest(struct nm_kafka *k, bool say)
{
	uint64_t deadline;
	struct nm_spool_stats ss;

	blk_begin(k);
	(void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE);
	deadline = now_ms() + NM_KAFKA_INFLIGHT_GRACE_MS;
	while (busy(k) && now_ms() < deadline)
		rd_kafka_poll(k->rk, 10);
	if (busy(k)) {
		(void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		deadline = now_ms() + 500;
		while (busy(k) && now_ms() < deadline)
			rd_kafka_poll(k->rk, 10);
	}
	nm_spool_untake_all(k->spool);
	spool_maybe_sync(k, true);
	nm_spool_get_stats(k->spool, &ss);
	if (say && ss.rows > 0)
		fprintf(stderr,
			"kafka: %" PRIu64 " records (%" PRIu64 " messages, %" PRIu64
			" bytes on disk) wait in the spool %s; the next start with the "
			"same kafka.spool_dir delivers them\n",
			ss.rows, ss.entries, ss.disk_bytes, nm_spool_dir(k->spool));
	blk_end(k);
}

uint64_t
nm_kafka_drain(struct nm_kafka *k, int timeout_ms, const volatile bool *stop)
{
	uint64_t deadline, now;

	if (k == NULL)
		return 0;
	blk_begin(k); /* all of it: it waits by design */
	(void)produce_all(k);
	deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		replay(k);
		now = now_ms();
		if (ST_GET(k, records_inflight) == 0 && spool_rows(k) == 0)
			break;
		if (now >= deadline || (stop != NULL && *stop))
			break;
		/* rd_kafka_flush also tells librdkafka to send lingering batches now. */
		(void)rd_kafka_flush(k->rk, (int)(deadline - now < 20 ? deadline - now : 20));
		outage_check(k);
		spool_maybe_sync(k, false);
	}
	rd_kafka_poll(k->rk, 0);
	if (k->spool != NULL &&
	    (ST_GET(k, records_inflight) > 0 || k->replay_msgs > 0 || spool_rows(k) > 0))
		spool_rest(k, true);
	spool_maybe_sync(k, true);
	blk_end(k);
	return ST_GET(k, records_inflight);
}

void
nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *out)
{
	struct nm_spool_stats ss;

	if (k == NULL) {
		memset(out, 0, sizeof(*out));
		return;
	}
	nm_ctr_copy(&nm_kafka_ctr_set, out, &k->st);
	nm_spool_get_stats(k->spool, &ss);
	out->records_recovered = ss.recovered_rows;
	out->spool_records = ss.rows;
	out->spool_messages = ss.entries;
	out->spool_bytes = ss.disk_bytes;
	out->spool_corrupt = ss.corrupt;
	out->spool_corrupt_bytes = ss.corrupt_bytes;
	/* Rows of entries found corrupt at start entered through records_recovered. */
	out->records_recovered += ss.corrupt_rows_open;
	out->records_corrupt = ss.corrupt_rows;
	out->spool_write_errors = ss.write_errors;
	out->spool_sync_errors = ss.sync_errors;
	out->spool_deadletter_bytes = ss.dead_bytes;
	out->spooling = (uint64_t)__atomic_load_n(&k->spooling, __ATOMIC_RELAXED);
	out->queue_messages = k->rk != NULL ? (uint64_t)rd_kafka_outq_len(k->rk) : 0;
	out->broker_state = __atomic_load_n(&k->broker_state, __ATOMIC_RELAXED);
	out->spool_enabled = k->spool != NULL ? 1 : 0;
}

const char *
nm_kafka_last_error(const struct nm_kafka *k)
{
	int err = k != NULL ? __atomic_load_n(&k->last_err, __ATOMIC_RELAXED) : 0;

	return err == 0 ? "" : rd_kafka_err2name((rd_kafka_resp_err_t)err);
}

const char *
nm_kafka_bootstrap(const struct nm_kafka *k)
{
	return k != NULL && k->bootstrap != NULL ? k->bootstrap : "";
}

/* ------------------------------------------------------------------ set-up */

static int
conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *err, size_t errlen)
{
	char e[512];

	if (rd_kafka_conf_set(conf, name, value, e, sizeof(e)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "property %s = %s: %s", name, value, e);
		return -EINVAL;
	}
	return 0;
}

int
nm_kafka_prop_check(const char *name, const char *value, char *err, size_t errlen)
{
	const char *why = NULL;

	if (name == NULL || value == NULL) {
		snprintf(err, errlen, "property: name or value missing");
		return -EINVAL;
	}
	if (strcmp(name, "acks") == 0 || strcmp(name, "request.required.acks") == 0) {
		if (strcmp(value, "all") != 0 && strcmp(value, "-1") != 0)
			why = "the sink counts a row delivered only when every in-sync replica has "
			      "it (acks=all, -1)";
	} else if (strcmp(name, "enable.idempotence") == 0) {
		if (strcmp(value, "true") != 0)
			why = "the sink relies on the idempotent producer (no duplicate, no reordering "
			      "within a partition on retries)";
	} else if (strcmp(name, "max.in.flight") == 0 ||
		   strcmp(name, "max.in.flight.requests.per.connection") == 0) {
		char *end;
		long v;

		errno = 0;
		v = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || v > 5)
			why = "the idempotent producer keeps order only with at most 5 requests in "
			      "flight";
	}
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "property %s = %s: refused: %s; remove the property", name, value,
		 why);
	return -EINVAL;
}

/*
 * The embedded broker: librdkafka's mock cluster on its own rd_kafka_t, so it lives from before
 * the producer exists until after it is gone and the topic can be created first (consumers that
 * come early see it with its one partition). Its brokers listen on 127.0.0.1, ephemeral ports;
 * other processes (kcat, ClickHouse) reach them there.
 */
static int
mock_create(struct nm_kafka *k, const char *topic, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[512];
	rd_kafka_resp_err_t rerr;

	/* This handle never connects anywhere; keep its "no bootstrap.servers" notice quiet. */
	if (conf_set(conf, "log_level", "3", err, errlen) != 0) {
		rd_kafka_conf_destroy(conf);
		return -EINVAL;
	}
	k->mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (k->mock_rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "embedded broker: %s", e);
		return -EIO;
	}
	k->mock = rd_kafka_mock_cluster_new(k->mock_rk, 1);
	if (k->mock == NULL) {
		snprintf(err, errlen, "embedded broker: cannot create the mock cluster");
		return -EIO;
	}
	rerr = rd_kafka_mock_topic_create(k->mock, topic, 1, 1);
	if (rerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errlen, "embedded broker: topic %s: %s", topic,
			 rd_kafka_err2str(rerr));
		return -EIO;
	}
	k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mock));
	if (k->bootstrap == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fprintf(stderr,
		"kafka: embedded broker (librdkafka mock cluster) at %s, topic %s "
		"(1 partition)\n",
		k->bootstrap, topic);
	return 0;
}

struct nm_kafka *
nm_kafka_create(const struct nm_kafka_params *p, char *err, size_t errlen)
{
	struct nm_kafka *k = NULL;
	rd_kafka_conf_t *conf = NULL;
	size_t min_batch;
	char v[32], e[512];
	unsigned int i;
	int ret = -EINVAL;

	if (p == NULL || p->brokers == NULL || p->brokers[0] == '\0') {
		snprintf(err, errlen, "brokers: empty (host:port,... or embedded)");
		goto fail;
	}
	if (p->topic == NULL || p->topic[0] == '\0') {
		snprintf(err, errlen, "topic: empty");
		goto fail;
	}
	if (p->format != NM_KAFKA_FMT_PROTOBUF && p->format != NM_KAFKA_FMT_JSON) {
		snprintf(err, errlen, "format: %d is neither protobuf nor json", (int)p->format);
		goto fail;
	}
	/* Every record must fit an empty batch, so encoding never fails on a valid record. */
	min_batch = p->format == NM_KAFKA_FMT_JSON ? NM_ENCODE_JSON_MAX : NM_ENCODE_PB_MAX;
	if (p->batch_bytes < min_batch || p->batch_bytes > 900000000) {
		snprintf(err, errlen,
			 "batch_bytes: %zu is outside %zu..900000000 (the %s encoding of "
			 "one record may need %zu bytes)",
			 p->batch_bytes, min_batch,
			 p->format == NM_KAFKA_FMT_JSON ? "JSON" : "protobuf", min_batch);
		goto fail;
	}

	if (p->exporter_groups > NM_KAFKA_MAX_GROUPS) {
		snprintf(err, errlen, "exporter_groups: %u is above %u", p->exporter_groups,
			 NM_KAFKA_MAX_GROUPS);
		goto fail;
	}
	if (p->queue_max_bytes != 0 && (p->queue_max_bytes < 2 * p->batch_bytes ||
					p->queue_max_bytes > (size_t)INT32_MAX * 1024)) {
		snprintf(err, errlen,
			 "queue_max_bytes: %zu must hold at least two batches of "
			 "batch_bytes (%zu), so at least %zu",
			 p->queue_max_bytes, p->batch_bytes, 2 * p->batch_bytes);
		goto fail;
	}
	if (p->spool_dir != NULL && p->spool_dir[0] != '\0' &&
	    p->spool_max_bytes < 2 * (p->batch_bytes + NM_SPOOL_HDR_LEN) + NM_SPOOL_SEG_HDR_LEN) {
		snprintf(err, errlen,
			 "spool_max_bytes: %" PRIu64 " cannot hold two batches of "
			 "batch_bytes (%zu); at least %zu",
			 p->spool_max_bytes, p->batch_bytes,
			 2 * (p->batch_bytes + NM_SPOOL_HDR_LEN) + NM_SPOOL_SEG_HDR_LEN);
		goto fail;
	}

	if (p->spool_after_ms > 0 && p->linger_ms > 0 && p->spool_after_ms <= p->linger_ms) {
		snprintf(err, errlen,
			 "spool_after_ms: %d must exceed linger_ms (%d): a batch waits that long "
			 "in librdkafka before it is even sent",
			 p->spool_after_ms, p->linger_ms);
		goto fail;
	}
	for (i = 0; i < p->n_props; i++) {
		if (p->props[i].name == NULL || p->props[i].value == NULL) {
			snprintf(err, errlen, "property %u: name or value missing", i);
			goto fail;
		}
		if (nm_kafka_prop_check(p->props[i].name, p->props[i].value, err, errlen) != 0)
			goto fail;
	}

	ret = -ENOMEM;
	k = calloc(1, sizeof(*k));
	if (k == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	k->cap = p->batch_bytes;
	k->format = p->format;
	k->block_begin = p->block_begin;
	k->block_end = p->block_end;
	k->block_arg = p->block_arg;
	k->linger_ms = p->linger_ms;
	k->broker_state = NM_KAFKA_BROKER_UNKNOWN;
	k->spool_after_ms = p->spool_after_ms != 0 ? p->spool_after_ms : NM_KAFKA_SPOOL_AFTER_MS;
	k->max_rejects = p->spool_max_rejects != 0 ? p->spool_max_rejects : NM_KAFKA_MAX_REJECTS;
	k->n_slots = p->exporter_groups > 0 ? p->exporter_groups : 1;
	for (i = 0; i < 16; i++) /* k is zeroed: every entry holds ::, give it its group */
		k->gcache[i].group = fnv_group(k->gcache[i].addr, k->n_slots);
	k->slots = calloc(k->n_slots, sizeof(*k->slots));
	if (k->slots == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (i = 0; i < k->n_slots; i++) {
		struct kbuf *b = kbuf_get(k);

		if (b == NULL) {
			snprintf(err, errlen, "out of memory: %u batches of %zu bytes", k->n_slots,
				 p->batch_bytes);
			goto fail;
		}
		k->slots[i].buf = b->data;
	}
	if (p->spool_dir != NULL && p->spool_dir[0] != '\0') {
		struct nm_spool_params sp = {.dir = p->spool_dir, .max_bytes = p->spool_max_bytes};

		k->spool = nm_spool_open(&sp, err, errlen);
		if (k->spool == NULL) {
			ret = -errno;
			goto fail;
		}
	}

	if (strcmp(p->brokers, "embedded") == 0) {
		ret = mock_create(k, p->topic, err, errlen);
		if (ret != 0)
			goto fail;
	} else if ((k->bootstrap = strdup(p->brokers)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	ret = -EINVAL;
	conf = rd_kafka_conf_new();
	/* No record is acknowledged before every in-sync replica has it, and none twice. */
	if (conf_set(conf, "bootstrap.servers", k->bootstrap, err, errlen) != 0 ||
	    conf_set(conf, "request.required.acks", "-1", err, errlen) != 0 ||
	    conf_set(conf, "enable.idempotence", "true", err, errlen) != 0)
		goto fail;
	if (p->linger_ms >= 0) {
		snprintf(v, sizeof(v), "%d", p->linger_ms);
		if (conf_set(conf, "linger.ms", v, err, errlen) != 0)
			goto fail;
	}
	if (p->compression != NULL && p->compression[0] != '\0' &&
	    conf_set(conf, "compression.codec", p->compression, err, errlen) != 0)
		goto fail;
	/*
	 * Our messages are whole batches, so the queue holds few of them: limit it by bytes
	 * (librdkafka's default, 1 GiB) rather than by count, and let a message be a full batch
	 * plus the protocol's framing.
	 */
	snprintf(v, sizeof(v), "%zu", p->queue_max_bytes ? p->queue_max_bytes / 1024 : 1048576);
	if (conf_set(conf, "queue.buffering.max.messages", "1000000", err, errlen) != 0 ||
	    conf_set(conf, "queue.buffering.max.kbytes", v, err, errlen) != 0)
		goto fail;
	/* The statistics say whether a broker connection is up (telemetry, spool replay). */
	if (conf_set(conf, "statistics.interval.ms", "1000", err, errlen) != 0)
		goto fail;
	snprintf(v, sizeof(v), "%zu",
		 p->batch_bytes + 65536 > 1000000 ? p->batch_bytes + 65536 : (size_t)1000000);
	if (conf_set(conf, "message.max.bytes", v, err, errlen) != 0)
		goto fail;
	for (i = 0; i < p->n_props; i++)
		if (conf_set(conf, p->props[i].name, p->props[i].value, err, errlen) != 0)
			goto fail;
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	rd_kafka_conf_set_stats_cb(conf, stats_cb);
	rd_kafka_conf_set_opaque(conf, k);

	k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	if (k->rk == NULL) {
		snprintf(err, errlen, "producer: %s", e);
		ret = -EIO;
		goto fail;
	}
	conf = NULL; /* owned by rk now */
	k->rkt = rd_kafka_topic_new(k->rk, p->topic, NULL);
	if (k->rkt == NULL) {
		snprintf(err, errlen, "topic %s: %s", p->topic,
			 rd_kafka_err2str(rd_kafka_last_error()));
		ret = -EIO;
		goto fail;
	}
	return k;

fail:
	if (conf != NULL)
		rd_kafka_conf_destroy(conf);
	nm_kafka_free(k);
	errno = -ret;
	return NULL;
}

/*
 * Give every record still in flight its outcome: with a spool, open batches and whatever
 * librdkafka holds go to disk; without one they are purged and counted unacked (Kafka never
 * answered for them). Then say once on stderr what was not delivered, with the stats' numbers.
 */
uint64_t
nm_kafka_settle(struct nm_kafka *k)
{
	uint64_t left, failed, unacked, dropped;
	unsigned int g;
	int i;

	if (k == NULL || k->rk == NULL)
		return 0;
	blk_begin(k);
	if (k->spool != NULL) {
		bool moved = ST_GET(k, records_inflight) > 0 || k->replay_msgs > 0;

		for (g = 0; g < k->n_slots; g++) {
			struct slot *sl = &k->slots[g];

			if (sl->nrec > 0)
				live_undelivered(k, sl->buf, sl->len, sl->nrec, g, sl->packets,
						 sl->bytes, true);
			sl->nrec = 0;
		}
		spool_rest(k, moved);
	} else if (ST_GET(k, records_inflight) > 0) {
		/* Open batches were never produced; purged messages report ERR__PURGE_*. */
		for (g = 0; g < k->n_slots; g++) {
			struct slot *sl = &k->slots[g];

			if (sl->nrec > 0) {
				ST_ADD(k, records_unacked, sl->nrec);
				ST_SUB(k, records_inflight, sl->nrec);
			}
			sl->nrec = 0;
			sl->len = 0;
		}
		(void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (i = 0; i < 100 && ST_GET(k, records_inflight) > 0; i++)
			rd_kafka_poll(k->rk, 10);
	}
	/* Whatever no delivery report settled (none should be left) had no answer either. */
	left = ST_GET(k, records_inflight);
	ST_ADD(k, records_unacked, left);
	ST_SUB(k, records_inflight, left);
	failed = ST_GET(k, records_failed);
	unacked = ST_GET(k, records_unacked);
	dropped = ST_GET(k, records_dropped);
	if (failed + unacked + dropped > k->lost_reported) {
		k->lost_reported = failed + unacked + dropped;
		fprintf(stderr,
			"kafka: %" PRIu64 " of %" PRIu64 " records were not delivered: %" PRIu64
			" failed (Kafka reported an error or refused them; last error: %s), %" PRIu64
			" unacked (no acknowledgement before the drain ended), %" PRIu64
			" dropped (spool full)\n",
			failed + unacked + dropped, ST_GET(k, records_in), failed,
			k->last_err != 0 ? rd_kafka_err2name((rd_kafka_resp_err_t)k->last_err)
					 : "none",
			unacked, dropped);
	}
	blk_end(k);
	return unacked;
}

void
nm_kafka_free(struct nm_kafka *k)
{
	struct kmsg *d, *next;
	struct kbuf *b, *bnext;

	if (k == NULL)
		return;
	blk_begin(k); /* librdkafka's shutdown joins its threads */
	if (k->rk != NULL) {
		(void)nm_kafka_settle(k);
		if (k->rkt != NULL)
			rd_kafka_topic_destroy(k->rkt);
		rd_kafka_destroy(k->rk);
	}
	nm_spool_close(k->spool);
	if (k->mock != NULL)
		rd_kafka_mock_cluster_destroy(k->mock);
	if (k->mock_rk != NULL)
		rd_kafka_destroy(k->mock_rk);
	blk_end(k);
	for (d = k->all_msgs; d != NULL; d = next) {
		next = d->all;
		free(d);
	}
	/* The groups' buffers and any a message still held are all on this list. */
	for (b = k->all_bufs; b != NULL; b = bnext) {
		bnext = b->all;
		free(b);
	}
	free(k->slots);
	free(k->bootstrap);
	free(k);
}
