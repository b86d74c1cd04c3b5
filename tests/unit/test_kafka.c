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
	assert_true(st.messages_acked + st.messages_failed <= st.messages_produced + st.messages_failed);
}

static void
run_roundtrip(enum nm_kafka_format fmt, int embedded, size_t batch, unsigned int n)
{
	struct cluster c = {0};
	struct nm_kafka_params p = {
		/* Long enough that nm_kafka_poll never cuts a batch here: only size does. */
		.topic = "flows", .format = fmt, .batch_bytes = batch, .linger_ms = 2000,
		.compression = "none",
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
	assert_int_equal(nm_kafka_drain(k, 15000), 0);
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
		.topic = "flows", .format = NM_KAFKA_FMT_PROTOBUF, .batch_bytes = 4096,
		.linger_ms = 5, .compression = "none", .props = props, .n_props = 1,
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
	assert_int_equal(nm_kafka_drain(k, 10000), 0);

	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 100, 600);
	assert_int_equal(nm_kafka_drain(k, 1500), 500);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.records_in, 600);
	assert_int_equal(st.records_acked, 100);
	assert_int_equal(st.records_failed, 0);
	assert_balanced(k);

	assert_int_equal(rd_kafka_mock_broker_set_up(c.mc, 1), 0);
	assert_int_equal(nm_kafka_drain(k, 20000), 0);
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

/* Broker down past message.timeout.ms: the records are counted failed, none is unaccounted. */
static void
test_broker_down_timeout(void **state)
{
	static const struct nm_kafka_prop props[] = {
		{"message.timeout.ms", "1000"},
	};
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows", .format = NM_KAFKA_FMT_JSON, .batch_bytes = 8192,
		.linger_ms = 5, .compression = "none", .props = props, .n_props = 1,
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
	assert_int_equal(nm_kafka_drain(k, 10000), 0);
	assert_int_equal(rd_kafka_mock_broker_set_down(c.mc, 1), 0);
	add_range(k, 50, 350);
	assert_int_equal(nm_kafka_drain(k, 10000), 0);
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
		.topic = "flows", .format = NM_KAFKA_FMT_PROTOBUF, .batch_bytes = NM_ENCODE_PB_MAX,
		.linger_ms = 5, .compression = "none", .props = props, .n_props = 1,
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
	assert_int_equal(nm_kafka_drain(k, 0), 20 - st.records_failed);
	assert_true(20 - st.records_failed >= 2 && 20 - st.records_failed <= 2 * 5);
	nm_kafka_free(k); /* purges the two queued messages */
	cluster_stop(&c);
}

/* A partial batch leaves on nm_kafka_poll once it is linger_ms old. */
static void
test_poll_lingers(void **state)
{
	struct nm_kafka_params p = {
		.brokers = "embedded", .topic = "flows", .format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 100000, .linger_ms = 500, .compression = "none",
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
	assert_int_equal(nm_kafka_drain(k, 10000), 0);
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
		.brokers = "127.0.0.1:1", .topic = "flows", .format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 65536, .linger_ms = 5, .compression = "none",
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
		cmocka_unit_test(test_queue_full),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
