/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Kafka sink. Records are encoded into one reusable buffer of batch_bytes; a full buffer
 * becomes one Kafka message (librdkafka copies it, RD_KAFKA_MSG_F_COPY, so the buffer is reused
 * at once and no allocation failure can happen on our side). Each message carries the number of
 * records in it as its msg_opaque, so the delivery report moves exactly that many records from
 * "in flight" to acked or failed: records_in == records_acked + records_failed + in flight, always.
 *
 * Everything runs on the caller's thread (the flusher): delivery reports are served by
 * rd_kafka_poll()/rd_kafka_flush() from nm_kafka_poll/flush/drain. Counters are only written
 * there but read from anywhere, hence relaxed atomics.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka.h"
#include "../encode/encode.h"

/*
 * How long nm_kafka_add/flush keep retrying a message the local queue has no room for
 * (RD_KAFKA_RESP_ERR__QUEUE_FULL), serving delivery reports meanwhile, before its records are
 * counted as failed. The queue is sized generously (see nm_kafka_create), so it is full only when
 * the brokers have been unreachable for a long time; blocking the flusher longer than this would
 * only back the workers up.
 */
#define NM_KAFKA_QUEUE_FULL_WAIT_MS 1000

struct nm_kafka {
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	rd_kafka_t *mock_rk;           /* owns the embedded cluster, NULL for real brokers */
	rd_kafka_mock_cluster_t *mock;
	enum nm_kafka_format format;
	int linger_ms;
	char *bootstrap;

	/* the batch being filled */
	uint8_t *buf;
	size_t cap;
	size_t len;
	uint64_t nrec;
	uint64_t batch_start_ms;

	struct nm_kafka_stats st;      /* relaxed atomics: written here, read anywhere */
	int last_err;                  /* last delivery error, for the log at free */
	bool fatal_logged;
};

#define ST_ADD(k, f, v) __atomic_fetch_add(&(k)->st.f, (uint64_t)(v), __ATOMIC_RELAXED)
#define ST_GET(k, f) __atomic_load_n(&(k)->st.f, __ATOMIC_RELAXED)

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
unacked(const struct nm_kafka *k)
{
	uint64_t in = ST_GET(k, records_in);
	uint64_t done = ST_GET(k, records_acked) + ST_GET(k, records_failed);

	return in > done ? in - done : 0;
}

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	struct nm_kafka *k = opaque;
	uint64_t n = (uint64_t)(uintptr_t)m->_private;

	(void)rk;
	if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		ST_ADD(k, records_acked, n);
		ST_ADD(k, messages_acked, 1);
		ST_ADD(k, bytes_acked, m->len);
	} else {
		ST_ADD(k, records_failed, n);
		ST_ADD(k, messages_failed, 1);
		k->last_err = m->err;
	}
}

/*
 * Transient errors (a broker going away) are already in librdkafka's log and retried by it; a
 * fatal error (idempotence broken) stops the producer for good, so say it once, loudly: every
 * later record fails with ERR__FATAL and is counted.
 */
static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct nm_kafka *k = opaque;
	char why[512];

	if (err != RD_KAFKA_RESP_ERR__FATAL)
		return;
	err = rd_kafka_fatal_error(rk, why, sizeof(why));
	if (!k->fatal_logged)
		fprintf(stderr, "kafka: fatal producer error, no record will be delivered any more: "
				"%s: %s\n", rd_kafka_err2name(err), err ? why : reason);
	k->fatal_logged = true;
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

/* Hand the batch to librdkafka. On failure its records are counted failed; the batch is empty
 * afterwards either way. */
static int
produce_batch(struct nm_kafka *k)
{
	uint64_t deadline = 0;
	rd_kafka_resp_err_t err;
	int ret = 0;

	if (k->nrec == 0)
		return 0;
	for (;;) {
		if (rd_kafka_produce(k->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, k->buf,
				     k->len, NULL, 0, (void *)(uintptr_t)k->nrec) == 0) {
			ST_ADD(k, messages_produced, 1);
			break;
		}
		err = rd_kafka_last_error();
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			if (deadline == 0)
				deadline = now_ms() + NM_KAFKA_QUEUE_FULL_WAIT_MS;
			if (now_ms() < deadline) {
				/* Delivery reports free room in the queue. */
				rd_kafka_poll(k->rk, 10);
				continue;
			}
		}
		ST_ADD(k, records_failed, k->nrec);
		ST_ADD(k, messages_failed, 1);
		k->last_err = err;
		ret = err_to_errno(err);
		break;
	}
	k->len = 0;
	k->nrec = 0;
	return ret;
}

static size_t
encode(const struct nm_kafka *k, const struct nm_flow_rec *rec, uint8_t *dst, size_t cap)
{
	if (k->format == NM_KAFKA_FMT_JSON)
		return nm_encode_json(rec, (char *)dst, cap);
	return nm_encode_pb(rec, dst, cap);
}

int
nm_kafka_add(struct nm_kafka *k, const struct nm_flow_rec *rec)
{
	size_t n;

	if (k == NULL || rec == NULL)
		return -EINVAL;
	ST_ADD(k, records_in, 1);
	n = encode(k, rec, k->buf + k->len, k->cap - k->len);
	if (n == 0 && k->nrec > 0) {
		/* The record does not fit: the batch is full. Its failure, if any, is counted. */
		(void)produce_batch(k);
		n = encode(k, rec, k->buf, k->cap);
	}
	if (n == 0) {
		/* Cannot happen with the batch_bytes nm_kafka_create() accepts; counted anyway. */
		ST_ADD(k, encode_errors, 1);
		ST_ADD(k, records_failed, 1);
		return -EMSGSIZE;
	}
	if (k->nrec == 0)
		k->batch_start_ms = k->linger_ms > 0 ? now_ms() : 0;
	k->len += n;
	k->nrec++;
	return 0;
}

int
nm_kafka_flush(struct nm_kafka *k)
{
	if (k == NULL)
		return -EINVAL;
	return produce_batch(k);
}

void
nm_kafka_poll(struct nm_kafka *k)
{
	if (k == NULL)
		return;
	/* A partial batch waits at most linger_ms, so a quiet engine still delivers rows. */
	if (k->nrec > 0 && (k->linger_ms <= 0 || now_ms() - k->batch_start_ms >= (uint64_t)k->linger_ms))
		(void)produce_batch(k);
	rd_kafka_poll(k->rk, 0);
}

uint64_t
nm_kafka_drain(struct nm_kafka *k, int timeout_ms)
{
	uint64_t deadline, now;

	if (k == NULL)
		return 0;
	(void)produce_batch(k);
	deadline = now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
	for (;;) {
		/* rd_kafka_flush also tells librdkafka to send lingering batches now. */
		now = now_ms();
		if (unacked(k) == 0 || now >= deadline)
			break;
		(void)rd_kafka_flush(k->rk, (int)(deadline - now < 100 ? deadline - now : 100));
	}
	rd_kafka_poll(k->rk, 0);
	return unacked(k);
}

void
nm_kafka_get_stats(const struct nm_kafka *k, struct nm_kafka_stats *out)
{
	if (k == NULL) {
		memset(out, 0, sizeof(*out));
		return;
	}
	out->records_in = ST_GET(k, records_in);
	out->records_acked = ST_GET(k, records_acked);
	out->records_failed = ST_GET(k, records_failed);
	out->messages_produced = ST_GET(k, messages_produced);
	out->messages_acked = ST_GET(k, messages_acked);
	out->messages_failed = ST_GET(k, messages_failed);
	out->bytes_acked = ST_GET(k, bytes_acked);
	out->encode_errors = ST_GET(k, encode_errors);
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
		snprintf(err, errlen, "embedded broker: topic %s: %s", topic, rd_kafka_err2str(rerr));
		return -EIO;
	}
	k->bootstrap = strdup(rd_kafka_mock_cluster_bootstraps(k->mock));
	if (k->bootstrap == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	fprintf(stderr, "kafka: embedded broker (librdkafka mock cluster) at %s, topic %s "
			"(1 partition)\n", k->bootstrap, topic);
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
		snprintf(err, errlen, "batch_bytes: %zu is outside %zu..900000000 (the %s encoding of "
			 "one record may need %zu bytes)", p->batch_bytes, min_batch,
			 p->format == NM_KAFKA_FMT_JSON ? "JSON" : "protobuf", min_batch);
		goto fail;
	}

	ret = -ENOMEM;
	k = calloc(1, sizeof(*k));
	if (k == NULL || (k->buf = malloc(p->batch_bytes)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	k->cap = p->batch_bytes;
	k->format = p->format;
	k->linger_ms = p->linger_ms;

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
	 * (librdkafka's default, 1 GiB) rather than by count, and let a message be a full batch plus
	 * the protocol's framing.
	 */
	if (conf_set(conf, "queue.buffering.max.messages", "1000000", err, errlen) != 0 ||
	    conf_set(conf, "queue.buffering.max.kbytes", "1048576", err, errlen) != 0)
		goto fail;
	snprintf(v, sizeof(v), "%zu", p->batch_bytes + 65536 > 1000000 ? p->batch_bytes + 65536
									  : (size_t)1000000);
	if (conf_set(conf, "message.max.bytes", v, err, errlen) != 0)
		goto fail;
	for (i = 0; i < p->n_props; i++) {
		if (p->props[i].name == NULL || p->props[i].value == NULL) {
			snprintf(err, errlen, "property %u: name or value missing", i);
			goto fail;
		}
		if (conf_set(conf, p->props[i].name, p->props[i].value, err, errlen) != 0)
			goto fail;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
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

void
nm_kafka_free(struct nm_kafka *k)
{
	uint64_t left;
	int i;

	if (k == NULL)
		return;
	if (k->rk != NULL) {
		/* The partial batch was never produced; purged messages report ERR__PURGE_*. */
		if (k->nrec > 0) {
			ST_ADD(k, records_failed, k->nrec);
			k->nrec = 0;
			k->len = 0;
		}
		(void)rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		for (i = 0; i < 10 && unacked(k) > 0; i++)
			rd_kafka_poll(k->rk, 10);
		left = unacked(k);
		ST_ADD(k, records_failed, left);
		if (ST_GET(k, records_failed) > 0)
			fprintf(stderr, "kafka: %" PRIu64 " of %" PRIu64 " records were not delivered "
					"(last error: %s)\n", ST_GET(k, records_failed),
				ST_GET(k, records_in), rd_kafka_err2str(k->last_err));
		if (k->rkt != NULL)
			rd_kafka_topic_destroy(k->rkt);
		rd_kafka_destroy(k->rk);
	}
	if (k->mock != NULL)
		rd_kafka_mock_cluster_destroy(k->mock);
	if (k->mock_rk != NULL)
		rd_kafka_destroy(k->mock_rk);
	free(k->bootstrap);
	free(k->buf);
	free(k);
}
