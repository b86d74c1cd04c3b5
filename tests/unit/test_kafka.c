/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Kafka sink against librdkafka's mock cluster (a real Kafka protocol peer on loopback): records
 * go in through nm_kafka_add/flush/drain and are read back with a librdkafka consumer; every
 * record must arrive exactly once, batches respect batch_bytes, and while the broker is down
 * records are counted unacked or failed, never lost without a trace.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "encode/encode.h"
#include "config/config.h"
#include "kafka/kafka.h"
#include "kafka/spool.h"
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
		assert_int_equal(nm_kafka_add(k, &r, 1), 0);
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

/* librdkafka's local queue holds two messages: with the broker down, the third waits. */
static const struct nm_kafka_prop queue_of_two[] = {
	{"queue.buffering.max.messages", "2"},
};

/* Small protobuf batches that leave at once, into a queue of two messages. */
static struct nm_kafka_params
queue_of_two_params(void)
{
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = NM_ENCODE_PB_MAX,
		.linger_ms = 5,
		.compression = "none",
		.props = queue_of_two,
		.n_props = 1,
	};

	return p;
}

/* A producer with params p on a new mock cluster (c) whose one broker is down. */
static struct nm_kafka *
create_broker_down(struct cluster *c, struct nm_kafka_params *p)
{
	struct nm_kafka *k;
	char err[256];

	cluster_start(c, "flows");
	assert_int_equal(rd_kafka_mock_broker_set_down(c->mc, 1), 0);
	p->brokers = c->boot;
	k = nm_kafka_create(p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	return k;
}

/* A local queue that is full for longer than the bounded wait: the batch is counted failed. */
static void
test_queue_full(void **state)
{
	struct cluster c;
	struct nm_kafka_params p = queue_of_two_params();
	struct nm_kafka_stats st;
	struct nm_kafka *k;

	(void)state;
	k = create_broker_down(&c, &p);
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
			 st.records_acked + st.records_failed + st.records_unacked +
				 st.records_dropped + st.records_deadletter + st.records_corrupt +
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

/* property.* may not undo acks=all or idempotence: refused at create, naming the property. */
static void
test_props_refused(void **state)
{
	static const struct {
		const char *name, *value;
	} bad[] = {
		{"acks", "1"},
		{"acks", "0"},
		{"request.required.acks", "1"},
		{"enable.idempotence", "false"},
		{"max.in.flight", "6"},
		{"max.in.flight.requests.per.connection", "100"},
	};
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.n_props = 1,
	};
	struct nm_kafka_prop prop;
	struct nm_kafka *k;
	rd_kafka_conf_t *conf;
	char err[512];
	unsigned int i;

	(void)state;
	p.props = &prop;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		prop.name = bad[i].name;
		prop.value = bad[i].value;
		err[0] = '\0';
		assert_null(nm_kafka_create(&p, err, sizeof(err)));
		assert_int_equal(errno, EINVAL);
		print_message("%s\n", err);
		assert_non_null(strstr(err, bad[i].name));
		assert_non_null(strstr(err, "refused"));
	}
	/* What the sink sets anyway is fine, as is anything else. */
	prop.name = "acks";
	prop.value = "all";
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("acks=all: %s", err);
	nm_kafka_free(k);
	prop.name = "max.in.flight";
	prop.value = "5";
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("max.in.flight=5: %s", err);
	nm_kafka_free(k);
	/* Would librdkafka refuse max.in.flight > 5 with idempotence itself? (it does: noted) */
	conf = rd_kafka_conf_new();
	assert_int_equal(rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof(err)),
			 RD_KAFKA_CONF_OK);
	assert_int_equal(rd_kafka_conf_set(conf, "max.in.flight", "6", err, sizeof(err)),
			 RD_KAFKA_CONF_OK);
	{
		rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));

		print_message("librdkafka alone, idempotence + max.in.flight=6: %s\n",
			      rk == NULL ? err : "accepted");
		if (rk != NULL)
			rd_kafka_destroy(rk);
		else
			conf = NULL;
	}
	(void)conf;
}

/*
 * kill -9 during an outage, with librdkafka's default message.timeout.ms (300 s): a child adds
 * rows steadily against a broker nobody answers for; the parent kills it with SIGKILL after 3 s.
 * The next sink on the same spool recovers every row the child had handed in but those of the
 * last moments: the loss is at most the rows of linger_ms + spool_after_ms (here 5 + 1000 ms)
 * and in practice a few batches, since after the outage is seen batches go to disk at once.
 * Without the early spooling every row would still be in librdkafka's memory when the kill comes.
 */
static void
test_spool_kill9_outage(void **state)
{
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1", /* nobody listens */
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.spool_max_bytes = 64 << 20,
	};
	volatile uint64_t *shared;
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256];
	pid_t pid;
	int wst;
	uint64_t added, per_s, lost;

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(shared != MAP_FAILED);
	shared[0] = shared[1] = shared[2] = 0;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct nm_flow_rec r;
		uint32_t i = 0;

		k = nm_kafka_create(&p, err, sizeof(err));
		if (k == NULL)
			_exit(10);
		for (;;) { /* 20 rows every 2 ms: about 10,000 rows/s */
			unsigned int j;

			/*
			 * shared[2]: rows that may be in the spool (this batch included: a kill
			 * between an add and the store below leaves them there), shared[0]: rows
			 * added for sure.
			 */
			__atomic_store_n(&shared[2], (uint64_t)i + 20, __ATOMIC_RELEASE);
			for (j = 0; j < 20; j++, i++) {
				mk_rec(&r, i);
				if (nm_kafka_add(k, &r, 1) != 0)
					_exit(11);
			}
			__atomic_store_n(&shared[0], (uint64_t)i, __ATOMIC_RELEASE);
			nm_kafka_get_stats(k, &st);
			__atomic_store_n(&shared[1], st.outages, __ATOMIC_RELEASE);
			nm_kafka_poll(k);
			usleep(2000);
		}
	}
	sleep(3);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &wst, 0), pid);
	assert_true(WIFSIGNALED(wst));
	added = __atomic_load_n(&shared[0], __ATOMIC_ACQUIRE);
	print_message("child added %lu rows in 3 s, outages %lu\n", (unsigned long)added,
		      (unsigned long)shared[1]);
	assert_int_equal(shared[1], 1);
	per_s = added / 3;

	p.brokers = "127.0.0.1:1";
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	nm_kafka_get_stats(k, &st);
	assert_true(st.records_recovered <= __atomic_load_n(&shared[2], __ATOMIC_ACQUIRE));
	lost = added > st.records_recovered ? added - st.records_recovered : 0;
	print_message("recovered %lu of %lu rows after kill -9: %lu lost (bound %lu, 1.005 s)\n",
		      (unsigned long)st.records_recovered, (unsigned long)added,
		      (unsigned long)lost, (unsigned long)(per_s * 1005 / 1000));
	assert_true(lost <= per_s * 1005 / 1000);
	assert_true(st.records_recovered > added / 2);
	assert_int_equal(st.spool_corrupt, 0);
	nm_kafka_free(k);
	munmap((void *)shared, 4096);
	spool_dir_rm();
}

/*
 * A broker that is up but does not answer (5 s round trip): no delivery report for
 * spool_after_ms starts the outage too; once answers come again the spool is replayed and every
 * row arrives once.
 */
static void
test_spool_after_no_reports(void **state)
{
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.spool_max_bytes = 1 << 20,
		.spool_after_ms = 300,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	struct prec *got;
	unsigned int n, i, seen[400] = {0};
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
	rd_kafka_mock_broker_set_rtt(c.mc, 1, 5000);
	add_range(k, 100, 300);
	(void)nm_kafka_flush(k);
	for (i = 0; i < 100; i++) {
		nm_kafka_poll(k);
		nm_kafka_get_stats(k, &st);
		if (st.spooling && st.records_inflight == 0)
			break;
		usleep(10000);
	}
	print_message("spooled after %u ms without a delivery report\n", i * 10);
	assert_true(st.spooling);
	assert_int_equal(st.outages, 1);
	assert_int_equal(st.records_inflight, 0);
	assert_int_equal(st.spool_records, 200);
	assert_true(i * 10 < 1000);
	assert_invariant(k);
	rd_kafka_mock_broker_set_rtt(c.mc, 1, 0);
	add_range(k, 300, 400);
	assert_int_equal(nm_kafka_drain(k, 30000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.spool_records, 0);
	assert_false(st.spooling);
	assert_int_equal(st.records_acked + st.records_failed, 400);
	assert_invariant(k);
	got = calloc(1000, sizeof(*got));
	n = consume_all(c.boot, "flows", 1, got, 1000);
	for (i = 0; i < n; i++)
		seen[got[i].seq]++;
	/* Requests on the wire when the outage began may have been stored, then replayed. */
	print_message("%u rows read back, %lu messages possibly persisted\n", n,
		      (unsigned long)st.messages_possibly_persisted);
	for (i = 0; i < 400; i++)
		if (seen[i] < 1 || (seen[i] > 1 && st.messages_possibly_persisted == 0))
			fail_msg("record %u seen %u times", i, seen[i]);
	/* Only rows of the purged requests can come twice: at most a batch (2048 B) each. */
	assert_true(n - 400 <= st.messages_possibly_persisted * (2048 / 30));
	free(got);
	nm_kafka_free(k);
	cluster_stop(&c);
	spool_dir_rm();
}

/*
 * A message Kafka refuses for good (INVALID_RECORD) is spooled, replayed and refused
 * spool_max_rejects times, then moved to the dead-letter file: the rows behind it are
 * delivered, the refused rows are counted, nothing blocks.
 */
static void
test_spool_dead_letter(void **state)
{
	struct cluster c;
	struct nm_kafka_params p = {
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.spool_max_bytes = 1 << 20,
		.spool_max_rejects = 3,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	struct prec *got;
	unsigned int n, i;
	char err[256], path[400];
	struct stat sb;

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	cluster_start(&c, "flows");
	p.brokers = c.boot;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	add_range(k, 0, 10);
	assert_int_equal(nm_kafka_drain(k, 10000, NULL), 0);
	/* The live try and 3 replays are refused; a 5th try would be accepted. */
	rd_kafka_mock_push_request_errors(
		c.mc, 0 /* Produce */, 4, RD_KAFKA_RESP_ERR_INVALID_RECORD,
		RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR_INVALID_RECORD,
		RD_KAFKA_RESP_ERR_INVALID_RECORD);
	add_range(k, 10, 20);
	(void)nm_kafka_flush(k);
	for (i = 0; i < 500; i++) {
		nm_kafka_poll(k);
		nm_kafka_get_stats(k, &st);
		if (st.messages_deadletter > 0 || st.records_acked == 20)
			break;
		usleep(10000);
	}
	add_range(k, 20, 30);
	assert_int_equal(nm_kafka_drain(k, 15000, NULL), 0);
	nm_kafka_get_stats(k, &st);
	print_message("rejected %lu, dead-lettered %lu records, acked %lu, last error %s\n",
		      (unsigned long)st.messages_rejected, (unsigned long)st.records_deadletter,
		      (unsigned long)st.records_acked, nm_kafka_last_error(k));
	assert_int_equal(st.messages_rejected, 3);
	assert_int_equal(st.records_deadletter, 10);
	assert_int_equal(st.messages_deadletter, 1);
	assert_int_equal(st.records_acked, 20);
	assert_int_equal(st.spool_records, 0);
	assert_true(st.spool_deadletter_bytes > 8);
	assert_invariant(k);
	snprintf(path, sizeof(path), "%s/dead-letter.seg", spool_dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, st.spool_deadletter_bytes);
	got = calloc(100, sizeof(*got));
	n = consume_all(c.boot, "flows", 1, got, 100);
	assert_int_equal(n, 20);
	for (i = 0; i < n; i++)
		assert_true(got[i].seq < 10 || got[i].seq >= 20);
	free(got);
	nm_kafka_free(k);
	cluster_stop(&c);
	spool_dir_rm();
}

/* Spool entries found corrupt at start are rows lost: counted, and the accounting still adds up. */
static void
test_spool_corrupt_counted(void **state)
{
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.spool_max_bytes = 1 << 20,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	char err[256], cmd[600], seg[400];
	uint8_t h[NM_SPOOL_HDR_LEN + 1];
	uint32_t rows;
	FILE *f;
	int fd;

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	add_range(k, 0, 200);
	(void)nm_kafka_drain(k, 2000, NULL);
	nm_kafka_get_stats(k, &st);
	assert_int_equal(st.spool_records, 200);
	nm_kafka_free(k);
	/* Flip a payload byte of the first entry of the first segment. */
	snprintf(cmd, sizeof(cmd), "ls '%s'/*.seg | head -1", spool_dir);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_non_null(fgets(seg, sizeof(seg), f));
	pclose(f);
	seg[strcspn(seg, "\n")] = '\0';
	fd = open(seg, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, h, sizeof(h), NM_SPOOL_SEG_HDR_LEN), sizeof(h));
	rows = (uint32_t)h[16] | (uint32_t)h[17] << 8 | (uint32_t)h[18] << 16 |
	       (uint32_t)h[19] << 24;
	h[NM_SPOOL_HDR_LEN] ^= 0x01;
	assert_int_equal(
		pwrite(fd, h + NM_SPOOL_HDR_LEN, 1, NM_SPOOL_SEG_HDR_LEN + NM_SPOOL_HDR_LEN), 1);
	close(fd);

	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	nm_kafka_get_stats(k, &st);
	print_message("entry of %u rows corrupted: records_corrupt %lu, recovered %lu\n", rows,
		      (unsigned long)st.records_corrupt, (unsigned long)st.records_recovered);
	assert_true(rows > 0);
	assert_int_equal(st.spool_corrupt, 1);
	assert_int_equal(st.records_corrupt, rows);
	assert_int_equal(st.records_recovered, 200);
	assert_int_equal(st.spool_records, 200 - rows);
	assert_invariant(k);
	nm_kafka_free(k);
	spool_dir_rm();
}

/* The same refusal from the config, naming the source and the key; and the new [kafka] keys. */
static void
test_config_kafka_keys(void **state)
{
	struct nm_config c;
	char err[768];

	(void)state;
	nm_config_defaults(&c);
	assert_int_equal(c.kafka_spool_after_ms, 1000);
	assert_int_equal(c.kafka_spool_max_rejects, 5);
	assert_int_equal(nm_config_set(&c, "kafka.property.acks=1", err, sizeof(err)), -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "--set: [kafka] property.acks: property acks = 1: refused"));
	assert_int_equal(
		nm_config_set(&c, "kafka.property.enable.idempotence=false", err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "enable.idempotence"));
	assert_int_equal(nm_config_set(&c, "kafka.property.acks=all", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(&c, "kafka.spool_max_rejects=0", err, sizeof(err)), -EINVAL);
	assert_int_equal(nm_config_set(&c, "kafka.spool_dir=/tmp/x", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(&c, "kafka.spool_after_ms=100", err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "spool_after_ms = 100: must exceed linger_ms (100)"));
	assert_int_equal(nm_config_set(&c, "kafka.spool_after_ms=250", err, sizeof(err)), 0);
	assert_int_equal(c.kafka_spool_after_ms, 250);
}

/*
 * The spool cannot be written (the file size limit stands in for a failing disk): every batch
 * is dropped, each one counted as a write error and said on stderr; the accounting holds.
 */
static void
test_spool_write_errors(void **state)
{
	struct nm_kafka_params p = {
		.brokers = "127.0.0.1:1",
		.topic = "flows",
		.format = NM_KAFKA_FMT_PROTOBUF,
		.batch_bytes = 2048,
		.linger_ms = 5,
		.compression = "none",
		.spool_max_bytes = 1 << 20,
	};
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	struct rlimit old, lim;
	char err[256];

	(void)state;
	spool_dir_new();
	p.spool_dir = spool_dir;
	k = nm_kafka_create(&p, err, sizeof(err));
	if (k == NULL)
		fail_msg("create: %s", err);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 4; /* below a segment's magic: no segment can be started */
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	add_range(k, 0, 200);
	(void)nm_kafka_drain(k, 2500, NULL);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	nm_kafka_get_stats(k, &st);
	print_message("write errors %lu, dropped %lu records in %lu batches\n",
		      (unsigned long)st.spool_write_errors, (unsigned long)st.records_dropped,
		      (unsigned long)st.messages_dropped);
	assert_true(st.spool_write_errors > 0);
	assert_int_equal(st.spool_write_errors, st.messages_dropped);
	assert_int_equal(st.records_dropped, 200);
	assert_int_equal(st.spool_records, 0);
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
		assert_int_equal(nm_kafka_add(k, &r, 1), 0);
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

/*
 * The block callbacks (kafka.h, "Blocking"): what the engine uses to go offline for RCU. They
 * come in pairs, never nested, and cover the sink's waits: a full queue's 1 s retries, spool
 * writes, the drain. The wall time of a call that waited must be (almost) all inside pairs.
 */
struct blk_log {
	unsigned int begins, ends, depth, nested;
	uint64_t since_ns, blocked_ns;
};

static uint64_t
mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void
blk_begin_cb(void *arg)
{
	struct blk_log *b = arg;

	b->nested += b->depth != 0;
	b->depth++;
	b->begins++;
	b->since_ns = mono_ns();
}

static void
blk_end_cb(void *arg)
{
	struct blk_log *b = arg;

	b->nested += b->depth != 1;
	b->depth--;
	b->ends++;
	b->blocked_ns += mono_ns() - b->since_ns;
}

static void
test_block_callbacks(void **state)
{
	struct blk_log b = {0};
	struct cluster c;
	struct nm_kafka_params p = queue_of_two_params();
	struct nm_kafka_stats st;
	struct nm_kafka *k;
	uint64_t t0, wall;

	(void)state;
	p.block_begin = blk_begin_cb;
	p.block_end = blk_end_cb;
	p.block_arg = &b;
	k = create_broker_down(&c, &p);
	/* No spool, broker down, room for 2 messages: every further batch waits 1 s, then fails. */
	t0 = mono_ns();
	add_range(k, 0, 20);
	assert_int_equal(nm_kafka_flush(k), -ENOBUFS);
	wall = mono_ns() - t0;
	nm_kafka_get_stats(k, &st);
	print_message("no spool: %" PRIu64 " messages failed after waiting; %u pairs, %.3f s of "
		      "%.3f s inside them\n",
		      st.messages_failed, b.begins, (double)b.blocked_ns / 1e9, (double)wall / 1e9);
	assert_true(st.messages_failed >= 2);
	assert_int_equal(b.begins, b.ends);
	assert_int_equal(b.depth, 0);
	assert_int_equal(b.nested, 0);
	assert_true(b.begins >= 2 * 100 / 2); /* one pair per 10 ms poll of the two 1 s waits */
	assert_true(b.blocked_ns >= st.messages_failed * 900000000ULL);
	/* Only encoding and produce attempts between the waits. */
	assert_true(wall - b.blocked_ns < 200000000ULL);
	/* The drain waits as a whole: one pair. */
	memset(&b, 0, sizeof(b));
	t0 = mono_ns();
	(void)nm_kafka_drain(k, 300, NULL);
	wall = mono_ns() - t0;
	print_message("drain: %u pair(s), %.3f s of %.3f s inside\n", b.begins,
		      (double)b.blocked_ns / 1e9, (double)wall / 1e9);
	assert_int_equal(b.begins, 1);
	assert_int_equal(b.ends, 1);
	assert_int_equal(b.nested, 0);
	/*
	 * The whole wait is inside the pair; what is outside is bookkeeping (microseconds), bounded
	 * here by a quarter of the wait rather than a fixed 10 ms a descheduled thread can exceed
	 * on a loaded machine (seen at load 12). The drain's deadline is on a millisecond clock
	 * (now_ms() truncates), so its 300 ms can end up to 1 ms short in nanoseconds.
	 */
	assert_true(b.blocked_ns >= 299000000ULL && wall - b.blocked_ns < b.blocked_ns / 4);
	nm_kafka_free(k);
	assert_int_equal(b.begins, b.ends);
	assert_int_equal(b.nested, 0);
	cluster_stop(&c);

	/* With a spool, broker down: the outage's purge and the spool appends and syncs. */
	memset(&b, 0, sizeof(b));
	spool_dir_new();
	p.spool_dir = spool_dir;
	p.spool_max_bytes = 1 << 20;
	p.spool_after_ms = 200;
	p.props = NULL;
	p.n_props = 0;
	k = create_broker_down(&c, &p);
	add_range(k, 0, 20);
	(void)nm_kafka_flush(k);
	t0 = mono_ns();
	while (mono_ns() - t0 < 3000000000ULL) {
		nm_kafka_get_stats(k, &st);
		if (st.spooling && st.spool_records == 20)
			break;
		nm_kafka_poll(k);
		usleep(10000);
	}
	nm_kafka_get_stats(k, &st);
	print_message("spool: %" PRIu64 " records spooled, %u pairs\n", st.spool_records, b.begins);
	assert_int_equal(st.spool_records, 20);
	/*
	 * At least the outage's purge (the appends of the purged batches' delivery reports are
	 * inside it) and a sync.
	 */
	assert_true(b.begins >= 2);
	assert_int_equal(b.begins, b.ends);
	assert_int_equal(b.nested, 0);
	nm_kafka_free(k);
	assert_int_equal(b.begins, b.ends);
	assert_int_equal(b.depth, 0);
	cluster_stop(&c);
	spool_dir_rm();
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
		cmocka_unit_test(test_props_refused),
		cmocka_unit_test(test_config_kafka_keys),
		cmocka_unit_test(test_spool_kill9_outage),
		cmocka_unit_test(test_spool_after_no_reports),
		cmocka_unit_test(test_spool_dead_letter),
		cmocka_unit_test(test_spool_corrupt_counted),
		cmocka_unit_test(test_spool_write_errors),
		cmocka_unit_test(test_exporter_partitions),
		cmocka_unit_test(test_block_callbacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
