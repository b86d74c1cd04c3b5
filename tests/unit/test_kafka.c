/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Kafka sink against librdkafka's mock cluster (a real Kafka protocol peer on loopback): records
 * go in through nm_kafka_add/flush/drain and are read back with a librdkafka consumer; every
 * record must arrive exactly once, batches respect batch_bytes, and while the broker is down
 * records are counted unacked or failed, never lost without a trace.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "encode/encode.h"
#include "kafka/kafka.h"
#include "flow.pb-c.h"

static void
mk_rec(struct nm_flow_rec *r, uint32_t seq)
{
	const uint8_t a[4] = {10, 0, (uint8_t)(seq >> 8), (uint8_t)seq};

	memset(r, 0, sizeof(*r));
	r->key.type = NM_FLOW_IPFIX;
	r->key.time_received = 1700000000 + seq / 100;
	r->key.sampling_rate = 1 + seq % 7;
	r->key.sequence_num = seq;
	nm_addr_from_v4(r->key.src_addr, a);
	r->key.src_port = (uint16_t)(1024 + seq);
	r->key.dst_port = 443;
	r->key.proto = 6;
	r->bytes = 1000 + seq;
	r->packets = 1 + seq % 3;
}

/* A mock cluster of our own: the test's handle hosts it, the sink is just a client. */
struct cluster {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	const char *boot;
};

static void
cluster_start(struct cluster *c, const char *topic)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	char e[256];

	assert_int_equal(rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)), RD_KAFKA_CONF_OK);
	c->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	assert_non_null(c->rk);
	c->mc = rd_kafka_mock_cluster_new(c->rk, 1);
	assert_non_null(c->mc);
	assert_int_equal(rd_kafka_mock_topic_create(c->mc, topic, 1, 1), 0);
	c->boot = rd_kafka_mock_cluster_bootstraps(c->mc);
}

static void
cluster_stop(struct cluster *c)
{
	rd_kafka_mock_cluster_destroy(c->mc);
	rd_kafka_destroy(c->rk);
}

/* What a consumer read back. */
struct readback {
	unsigned int n_msgs;
	size_t max_msg;
	size_t min_msg; /* smallest but the last */
	uint64_t n_recs;
	unsigned int *seen; /* by sequence_num */
	unsigned int n_seen;
	enum nm_kafka_format fmt;
};

static void
read_pb(struct readback *rb, const uint8_t *p, size_t len)
{
	size_t off = 0;

	while (off < len) {
		uint64_t n = 0;
		unsigned int shift = 0;
		Netmeta__FlowMessage *m;

		do {
			assert_true(off < len && shift < 64);
			n |= (uint64_t)(p[off] & 0x7f) << shift;
			shift += 7;
		} while (p[off++] & 0x80);
		assert_true(n <= len - off);
		m = netmeta__flow_message__unpack(NULL, (size_t)n, p + off);
		assert_non_null(m);
		assert_true(m->sequencenum < rb->n_seen);
		assert_int_equal(m->bytes, 1000 + m->sequencenum);
		assert_int_equal(m->type, NM_FLOW_IPFIX);
		assert_int_equal(m->srcaddr.len, 16);
		rb->seen[m->sequencenum]++;
		rb->n_recs++;
		netmeta__flow_message__free_unpacked(m, NULL);
		off += n;
	}
}

static void
read_json(struct readback *rb, const char *p, size_t len)
{
	const char *end = p + len;

	assert_true(len > 0 && end[-1] == '\n');
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *s;
		char line[NM_ENCODE_JSON_MAX + 1];
		unsigned long seq;

		assert_non_null(nl);
		assert_true(nl - p < (long)sizeof(line));
		memcpy(line, p, (size_t)(nl - p));
		line[nl - p] = '\0';
		assert_true(line[0] == '{' && line[nl - p - 1] == '}');
		s = strstr(line, "\"SequenceNum\":");
		assert_non_null(s);
		seq = strtoul(s + 14, NULL, 10);
		assert_true(seq < rb->n_seen);
		assert_non_null(strstr(line, "\"SrcAddr\":\"::ffff:10.0."));
		rb->seen[seq]++;
		rb->n_recs++;
		p = nl + 1;
	}
}

/* Read the topic's only partition from the beginning to its end. */
static void
consume(const char *boot, const char *topic, struct readback *rb, int timeout_ms)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *tp;
	rd_kafka_t *rk;
	char e[256];
	time_t deadline = time(NULL) + timeout_ms / 1000 + 1;
	size_t last = 0;
	int eof = 0;

	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "group.id", "nm-test", e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", e, sizeof(e)), 0);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
	assert_non_null(rk);
	rd_kafka_poll_set_consumer(rk);
	tp = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(tp, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(rk, tp), 0);
	rd_kafka_topic_partition_list_destroy(tp);

	rb->min_msg = SIZE_MAX;
	while (!eof && time(NULL) < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);

		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			eof = 1;
		} else if (m->err != 0) {
			fail_msg("consumer: %s", rd_kafka_message_errstr(m));
		} else {
			if (rb->n_msgs > 0 && last < rb->min_msg)
				rb->min_msg = last;
			last = m->len;
			rb->n_msgs++;
			if (m->len > rb->max_msg)
				rb->max_msg = m->len;
			if (rb->fmt == NM_KAFKA_FMT_JSON)
				read_json(rb, m->payload, m->len);
			else
				read_pb(rb, m->payload, m->len);
		}
		rd_kafka_message_destroy(m);
	}
	assert_true(eof);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
}

static void
assert_each_once(const struct readback *rb, unsigned int n)
{
	unsigned int i;

	assert_int_equal(rb->n_recs, n);
	for (i = 0; i < n; i++)
		if (rb->seen[i] != 1)
			fail_msg("record %u seen %u times", i, rb->seen[i]);
}

static void
add_range(struct nm_kafka *k, unsigned int from, unsigned int to)
{
	struct nm_flow_rec r;
	unsigned int i;

	for (i = from; i < to; i++) {
		mk_rec(&r, i);
		assert_int_equal(nm_kafka_add(k, &r), 0);
		if (i % 64 == 0)
			nm_kafka_poll(k);
	}
}

static void
assert_balanced(const struct nm_kafka *k)
{
	struct nm_kafka_stats st;

	nm_kafka_get_stats(k, &st);
	assert_true(st.records_acked + st.records_failed <= st.records_in);
	assert_true(st.messages_acked + st.messages_failed <=
		    st.messages_produced + st.messages_failed);
}

static void
run_roundtrip(enum nm_kafka_format fmt, int embedded, size_t batch, unsigned int n)
{
	struct cluster c = {0};
	struct nm_kafka_params p = {
		/* Long enough that nm_kafka_poll never cuts a batch here: only size does. */
		.topic = "flows",  .format = fmt,	  .batch_bytes = batch,
		.linger_ms = 2000, .compression = "none",
	};
	struct readback rb = {.n_seen = n, .fmt = fmt};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];
	size_t rec_max = fmt == NM_KAFKA_FMT_JSON ? NM_ENCODE_JSON_MAX : NM_ENCODE_PB_MAX;

	if (embedded) {
		p.brokers = "embedded";
	} else {
		cluster_start(&c, "flows");
		p.brokers = c.boot;
	}
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	if (embedded)
		assert_non_null(strstr(nm_kafka_bootstrap(k), "127.0.0.1:"));
	else
		assert_string_equal(nm_kafka_bootstrap(k), c.boot);

	add_range(k, 0, n);
	assert_int_equal(nm_kafka_drain(k, 15000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, n);
	assert_int_equal(st.records_acked, n);
	assert_int_equal(st.records_failed, 0);
	assert_int_equal(st.encode_errors, 0);
	assert_int_equal(st.messages_failed, 0);
	assert_int_equal(st.messages_acked, st.messages_produced);
	assert_true(st.messages_produced >= 2);

	rb.seen = calloc(n, sizeof(*rb.seen));
	assert_non_null(rb.seen);
	consume(nm_kafka_bootstrap(k), "flows", &rb, 15000);
	assert_each_once(&rb, n);
	assert_int_equal(rb.n_msgs, st.messages_acked);
	/* Never above batch_bytes, and a message was cut only when the next record did not fit. */
	assert_true(rb.max_msg <= batch);
	assert_true(rb.min_msg > batch - rec_max);
	/* bytes_acked counts the payloads. */
	assert_true(st.bytes_acked > (uint64_t)(rb.n_msgs - 1) * (batch - rec_max));
	assert_true(st.bytes_acked <= (uint64_t)rb.n_msgs * batch);
	print_message("%u records in %u messages (largest %zu, batch_bytes %zu)\n", n, rb.n_msgs,
		      rb.max_msg, batch);
	free(rb.seen);
	nm_kafka_free(k);
	if (!embedded)
		cluster_stop(&c);
}

static void
test_pb_roundtrip(void **state)
{
	(void)state;
	run_roundtrip(NM_KAFKA_FMT_PROTOBUF, 0, 4096, 5000);
}

static void
test_json_embedded(void **state)
{
	(void)state;
	run_roundtrip(NM_KAFKA_FMT_JSON, 1, 16384, 2000);
}

static void
test_pb_embedded_big_batch(void **state)
{
	(void)state;
	/*
	 * Messages above librdkafka's default message.max.bytes (1,000,000). The total stays under
	 * 5 MiB: the mock cluster keeps only that much per partition (see kafka.h).
	 */
	run_roundtrip(NM_KAFKA_FMT_PROTOBUF, 1, 2000000, 30000);
}

/*
 * Broker down: records stay unacked (counted) through a short drain, and arrive once it is up.
 */
static void
test_broker_down_then_up(void **state)
{
	static const struct nm_kafka_prop props[] = {
		{"reconnect.backoff.max.ms", "500"},
	};
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 4096,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 1,
	};
	struct readback rb = {.n_seen = 600, .fmt = NM_KAFKA_FMT_PROTOBUF};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];

	(void)state;
	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	assert_non_null(k);
	add_range(k, 0, 100);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);

	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 100, 600);
	assert_int_equal(nm_kafka_drain(k, 1500, NULL), 500);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 600);
	assert_int_equal(st.records_acked, 100);
	assert_int_equal(st.records_failed, 0);
	assert_balanced(k);

	assert_int_equal(rd_kafka_mock_broker_set_up(c.mc, 1), 0);
	assert_int_equal(nm_kafka_drain(k, 20000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_acked, 600);
	assert_int_equal(st.records_failed, 0);

	rb.seen = calloc(600, sizeof(*rb.seen));
	consume(c.boot, "flows", &rb, 15000);
	assert_each_once(&rb, 600); /* idempotence: no duplicates from the retries */
	free(rb.seen);
	nm_kafka_free(k);
	cluster_stop(&c);
}

/*
 * Broker down through the whole drain, no spool (the README's first command when its broker is
 * gone): nm_kafka_settle() purges what is in flight and counts it unacked -- not failed, since
 * Kafka never answered -- and the stats, the return value and a second settle (as nm_kafka_free
 * does) agree: one set of numbers.
 */
static void
test_settle_unacked(void **state)
{
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 4096,
		.linger_ms = 5,
		.compression = "none",
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];

	(void)state;
	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	assert_non_null(k);
	add_range(k, 0, 100);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);
	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 100, 400);
	assert_int_equal(nm_kafka_drain(k, 1000, NULL), 300);
	assert_int_equal(nm_kafka_settle(k), 300);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 400);
	assert_int_equal(st.records_acked, 100);
	assert_int_equal(st.records_failed, 0);
	assert_int_equal(st.records_unacked, 300);
	assert_int_equal(st.records_inflight, 0);
	assert_int_equal(st.records_acked + st.records_failed + st.records_unacked +
				 st.records_dropped + st.spool_records + st.records_inflight,
			 st.records_in + st.records_recovered);
	/* Settled once: nothing changes on a second call or in nm_kafka_free(). */
	assert_int_equal(nm_kafka_settle(k), 300);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_failed, 0);
	nm_kafka_free(k);
	cluster_stop(&c);
}

/* Broker down past message.timeout.ms: the records are counted failed, none is unaccounted. */
static void
test_broker_down_timeout(void **state)
{
	static const struct nm_kafka_prop props[] = {
		{"message.timeout.ms", "1000"},
	};
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_JSON,
		.batch_bytes = 8192,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 1,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];

	(void)state;
	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	assert_non_null(k);
	add_range(k, 0, 50);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);
	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 50, 350);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 350);
	assert_int_equal(st.records_acked, 50);
	assert_int_equal(st.records_failed, 300);
	assert_true(st.messages_failed > 0);
	assert_int_equal(st.messages_acked + st.messages_failed, st.messages_produced);
	nm_kafka_free(k);
	cluster_stop(&c);
}

/* A local queue that is full for longer than the bounded wait: the batch is counted failed. */
static void
test_queue_full(void **state)
{
	static const struct nm_kafka_prop props[] = {
		{"queue.buffering.max.messages", "2"},
	};
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = NM_ENCODE_PB_MAX,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 1,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];

	(void)state;
	cluster_start(&c, "flows");
	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	assert_non_null(k);
	/* Four or five records per 512-byte batch: 20 records are 4-5 batches, 2 fit the queue. */
	add_range(k, 0, 20);
	assert_int_equal(nm_kafka_flush(k), -ENOBUFS);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 20);
	assert_int_equal(st.messages_produced, 2);
	assert_true(st.messages_failed >= 2);
	assert_int_equal(st.records_acked, 0);
	/* The two queued messages are in flight, everything else failed: nothing unaccounted. */
	assert_int_equal(nm_kafka_drain(k, 0, NULL), 20 - st.records_failed);
	assert_true(20 - st.records_failed >= 2 && 20 - st.records_failed <= 2 * 5);
	nm_kafka_free(k); /* purges the two queued messages */
	cluster_stop(&c);
}

/* A partial batch leaves on nm_kafka_poll once it is linger_ms old. */
static void
test_poll_lingers(void **state)
{
	struct nm_kafka_params p = {
		.brokers = "embedded",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 100000,
		.linger_ms = 500,
		.compression = "none",
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];

	(void)state;
	k = nm_kafka_create(&p, err, sizeof(err));
	assert_non_null(k);
	add_range(k, 0, 3);
	nm_kafka_poll(k);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.messages_produced, 0);
	usleep(600 * 1000);
	nm_kafka_poll(k);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.messages_produced, 1);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_acked, 3);
	assert_int_equal(st.messages_acked, 1);
	nm_kafka_free(k);
}

static void
test_create_errors(void **state)
{
	static const struct nm_kafka_prop bad_name[] = {{"no.such.property", "1"}};
	static const struct nm_kafka_prop bad_value[] = {{"linger.ms", "banana"}};
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 65536,
		.linger_ms = 5,
		.compression = "none",
	};
	char err[256];

	(void)state;
	p.props = bad_name;
	p.n_props = 1;
	assert_null(nm_kafka_create(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "no.such.property"));
	p.props = bad_value;
	assert_null(nm_kafka_create(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "linger.ms"));
	p.n_props = 0;
	p.compression = "brotli";
	assert_null(nm_kafka_create(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "compression.codec"));
	p.compression = "none";
	p.format = NM_KAFKA_FMT_JSON;
	p.batch_bytes = 1024;
	assert_null(nm_kafka_create(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "batch_bytes"));
	p.topic = "";
	assert_null(nm_kafka_create(&p, err, sizeof(err)));
	assert_non_null(strstr(err, "topic"));
}

/* ------------------------------------------------------------------ spool */

static char spool_dir[256];

static void
spool_dir_new(void)
{
	snprintf(spool_dir, sizeof(spool_dir), "/tmp/nm-test-kspool-XXXXXX");
	assert_non_null(mkdtemp(spool_dir));
}

static void
spool_dir_rm(void)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", spool_dir);
	assert_int_equal(system(cmd), 0);
}

static void
assert_invariant(const struct nm_kafka *k)
{
	struct nm_kafka_stats st;

	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in + st.records_recovered,
			 st.records_acked + st.records_failed + st.records_dropped +
				 st.spool_records + st.records_inflight);
}

/* Read every partition of topic from the beginning; records in the order of each partition. */
struct prec {
	int32_t partition;
	uint32_t seq;
	uint8_t sampler[16];
};

static unsigned int
consume_all(const char *boot, const char *topic, int partitions, struct prec *out, unsigned int max)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_topic_partition_list_t *tp;
	rd_kafka_t *rk;
	char e[256];
	time_t deadline = time(NULL) + 20;
	unsigned int n = 0;
	int eofs = 0, i;

	assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", boot, e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "group.id", "nm-test-all", e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e)), 0);
	assert_int_equal(rd_kafka_conf_set(conf, "fetch.wait.max.ms", "50", e, sizeof(e)), 0);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
	assert_non_null(rk);
	rd_kafka_poll_set_consumer(rk);
	tp = rd_kafka_topic_partition_list_new(partitions);
	for (i = 0; i < partitions; i++)
		rd_kafka_topic_partition_list_add(tp, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
	assert_int_equal(rd_kafka_assign(rk, tp), 0);
	rd_kafka_topic_partition_list_destroy(tp);
	while (eofs < partitions && time(NULL) < deadline) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
		size_t off = 0;

		if (m == NULL)
			continue;
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			eofs++;
		} else {
			const uint8_t *p = m->payload;

			assert_int_equal(m->err, 0);
			while (off < m->len) {
				uint64_t len = 0;
				unsigned int shift = 0;
				Netmeta__FlowMessage *fm;

				do {
					len |= (uint64_t)(p[off] & 0x7f) << shift;
					shift += 7;
				} while (p[off++] & 0x80);
				fm = netmeta__flow_message__unpack(NULL, (size_t)len, p + off);
				assert_non_null(fm);
				assert_true(n < max);
				out[n].partition = m->partition;
				out[n].seq = fm->sequencenum;
				assert_int_equal(fm->sampleraddress.len, 16);
				memcpy(out[n].sampler, fm->sampleraddress.data, 16);
				n++;
				netmeta__flow_message__free_unpacked(fm, NULL);
				off += len;
			}
		}
		rd_kafka_message_destroy(m);
	}
	assert_int_equal(eofs, partitions);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	return n;
}

/*
 * Broker down past message.timeout.ms: the failed messages go to the spool (none failed, none
 * in flight after the drain), and once it is up they are replayed, in order, each row once.
 */
static void
test_spool_outage_replay(void **state)
{
	static const struct nm_kafka_prop props[] = {
		{"message.timeout.ms", "1000"},
		{"reconnect.backoff.max.ms", "200"},
	};
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 2,
		.spool_max_bytes = 1 << 20,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	struct prec *got;
	unsigned int n, i;
	char err[256];

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	add_range(k, 0, 100);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);

	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 100, 600);
	assert_int_equal(nm_kafka_drain(k, 3000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_acked, 100);
	assert_int_equal(st.records_failed, 0);
	assert_int_equal(st.records_dropped, 0);
	assert_int_equal(st.spool_records, 500);
	assert_int_equal(st.records_spooled, 500);
	assert_true(st.spool_bytes > 500 * 40);
	assert_int_equal(st.broker_state, NM_KAFKA_BROKER_DOWN);
	assert_invariant(k);

	assert_int_equal(rd_kafka_mock_broker_set_up(c.mc, 1), 0);
	add_range(k, 600, 700); /* live rows while the spool is replayed */
	assert_int_equal(nm_kafka_drain(k, 20000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_acked, 700);
	assert_int_equal(st.spool_records, 0);
	assert_int_equal(st.spool_bytes, 0);
	assert_true(st.messages_replayed >= 500 / 30);
	/* The statistics come once a second. */
	for (i = 0; i < 30 && st.broker_state != NM_KAFKA_BROKER_UP; i++) {
		usleep(100 * 1000);
		nm_kafka_poll(k);
		nm_kafka_get_stats(k, &st);
	}
	assert_int_equal(st.broker_state, NM_KAFKA_BROKER_UP);
	assert_invariant(k);

	got = calloc(1000, sizeof(*got));
	n = consume_all(c.boot, "flows", 1, got, 1000);
	assert_int_equal(n, 700);
	{
		unsigned int seen[700] = {0};

		for (i = 0; i < n; i++)
			seen[got[i].seq]++;
		for (i = 0; i < 700; i++)
			if (seen[i] != 1)
				fail_msg("record %u seen %u times", i, seen[i]);
	}
	/* The spooled rows came back in the order they were produced. */
	for (i = 0, n = 0; i < 700; i++) {
		if (got[i].seq >= 100 && got[i].seq < 600) {
			if (n > 0)
				assert_true(got[i].seq > n);
			n = got[i].seq;
		}
	}
	free(got);
	nm_kafka_free(k);
	cluster_stop(&c);
	spool_dir_rm();
}

/*
 * A crash while the spool holds data: a child process spools (no broker) and _exit()s without
 * closing anything, as kill -9 would leave it; a torn entry is appended to the last segment.
 * The next sink replays every row once, counts the corrupt tail, and keeps the accounting.
 */
static void
test_spool_crash_recovery(void **state)
{
	static const struct nm_kafka_prop props[] = {{"message.timeout.ms", "500"}};
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 1,
		.spool_max_bytes = 1 << 20,
	};
	struct cluster c;
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	struct prec *got;
	unsigned int n, i, seen[400] = {0};
	char err[256], cmd[600];
	pid_t pid;
	int wst;

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		p.brokers = "127.0.0.1:1"; /* nobody listens: every message times out */
		k = nm_kafka_create(&p, err, sizeof(err));
		if (k == NULL)
			_exit(10);
		add_range(k, 0, 300);
		if (nm_kafka_drain(k, 3000, NULL) != 0)
			_exit(11);
		nm_kafka_get_stats(k, &st);
		_exit(st.spool_records == 300 ? 0 : 12);
	}
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFEXITED(wst));
	assert_int_equal(WEXITSTATUS(wst), 0);
	snprintf(cmd, sizeof(cmd),
		 "f=$(ls '%s'/*.seg | tail -1); printf 'NMSR\\001\\002' >> \"$f\"", spool_dir);
	assert_int_equal(system(cmd), 0);

	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_recovered, 300);
	assert_int_equal(st.spool_records, 300);
	assert_int_equal(st.spool_corrupt, 1);
	assert_int_equal(st.spool_corrupt_bytes, 6);
	assert_invariant(k);
	add_range(k, 300, 400);
	assert_int_equal(nm_kafka_drain(k, 20000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 100);
	assert_int_equal(st.records_acked, 400);
	assert_int_equal(st.spool_records, 0);
	assert_invariant(k);
	got = calloc(1000, sizeof(*got));
	n = consume_all(c.boot, "flows", 1, got, 1000);
	assert_int_equal(n, 400);
	for (i = 0; i < n; i++)
		seen[got[i].seq]++;
	for (i = 0; i < 400; i++)
		if (seen[i] != 1)
			fail_msg("record %u seen %u times", i, seen[i]);
	free(got);
	nm_kafka_free(k);
	cluster_stop(&c);
	spool_dir_rm();
}

/* A spool too small for the outage: batches are dropped, each counted; the rest is spooled. */
static void
test_spool_full_drops(void **state)
{
	static const struct nm_kafka_prop props[] = {{"message.timeout.ms", "300"}};
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 4096,
		.linger_ms = 5,
		.compression = "none",
		.props = props,
		.n_props = 1,
		.spool_max_bytes = 3 * (4096 + 48) + 8,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];
	uint64_t all_packets = 0;
	unsigned int i;

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	add_range(k, 0, 2000);
	for (i = 0; i < 2000; i++)
		all_packets += 1 + i % 3;
	assert_int_equal(nm_kafka_drain(k, 3000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_true(st.records_dropped > 0);
	assert_true(st.messages_dropped > 0);
	assert_true(st.spool_records > 0);
	assert_int_equal(st.spool_records + st.records_dropped, 2000);
	assert_true(st.packets_dropped > 0 && st.packets_dropped < all_packets);
	assert_true(st.spool_bytes <= p.spool_max_bytes);
	assert_invariant(k);
	nm_kafka_free(k);
	spool_dir_rm();
}

/* Rows of one exporter go to one partition, in order; exporters spread over partitions. */
static void
test_exporter_partitions(void **state)
{
	struct nm_kafka_params p = {
		.topic = "flows4",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 1024,
		.linger_ms = 5,
		.compression = "none",
		.exporter_groups = 16,
	};
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	struct cluster c;
	struct nm_kafka *k;
	struct prec *got;
	int32_t part_of[8];
	uint32_t last[8];
	unsigned int n, i, used = 0;
	char e[256];

	(void)state;
	assert_int_equal(rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e)), RD_KAFKA_CONF_OK);
	c.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
	c.mc = rd_kafka_mock_cluster_new(c.rk, 1);
	assert_int_equal(rd_kafka_mock_topic_create(c.mc, "flows4", 4, 1), 0);
	c.boot = rd_kafka_mock_cluster_bootstraps(c.mc);
	p.brokers = c.boot;
	k = nm_kafka_create(&p, e, sizeof(e));
	assert_non_null(k);
	for (i = 0; i < 2000; i++) {
		struct nm_flow_rec r;
		const uint8_t ex[4] = {192, 0, 2, (uint8_t)(1 + i % 8)};

		mk_rec(&r, i);
		nm_addr_from_v4(r.key.sampler_addr, ex);
		assert_int_equal(nm_kafka_add(k, &r), 0);
		if (i % 64 == 0)
			nm_kafka_poll(k);
	}
	assert_int_equal(nm_kafka_drain(k, 15000, NULL), 0);
	got = calloc(3000, sizeof(*got));
	n = consume_all(c.boot, "flows4", 4, got, 3000);
	assert_int_equal(n, 2000);
	for (i = 0; i < 8; i++) {
		part_of[i] = -1;
		last[i] = 0;
	}
	for (i = 0; i < n; i++) {
		unsigned int x = got[i].sampler[15] - 1;

		assert_true(x < 8);
		assert_int_equal(got[i].seq % 8, x);
		if (part_of[x] < 0)
			part_of[x] = got[i].partition;
		if (part_of[x] != got[i].partition)
			fail_msg("exporter %u on partitions %d and %d", x, part_of[x],
				 got[i].partition);
		/* Within the partition, the exporter's rows come in the order they were added. */
		if (last[x] != 0 || got[i].seq >= 8)
			assert_true(got[i].seq > last[x] || (last[x] == 0 && got[i].seq == x));
		last[x] = got[i].seq;
	}
	for (i = 0; i < 4; i++) {
		unsigned int x;

		for (x = 0; x < 8; x++)
			if (part_of[x] == (int32_t)i)
				break;
		used += x < 8;
	}
	print_message("8 exporters over %u of 4 partitions\n", used);
	assert_true(used >= 2);
	free(got);
	nm_kafka_free(k);
	cluster_stop(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_pb_roundtrip),
		cmocka_unit_test(test_json_embedded),
		cmocka_unit_test(test_pb_embedded_big_batch),
		cmocka_unit_test(test_poll_lingers),
		cmocka_unit_test(test_broker_down_then_up),
		cmocka_unit_test(test_broker_down_timeout),
		cmocka_unit_test(test_settle_unacked),
		cmocka_unit_test(test_queue_full),
		cmocka_unit_test(test_spool_outage_replay),
		cmocka_unit_test(test_spool_crash_recovery),
		cmocka_unit_test(test_spool_full_drops),
		cmocka_unit_test(test_exporter_partitions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
