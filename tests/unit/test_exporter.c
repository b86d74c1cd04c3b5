/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-exporter state (lib/exporter) through the decoders: sequence gaps, late and restarted
 * exporters, sampling-rate sources and overrides, pool overflow, two writers on one exporter,
 * sFlow interface counters, the corpus' exporters; and the [exporter.NAME] config sections.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <urcu-qsbr.h>

#include "config/config.h"
#include "decode/decode.h"
#include "exporter/exporter.h"
#include "tmpl/tmpl.h"

struct fixture {
	struct nm_decode_stats st;
	struct nm_decoder d;
	struct nm_rec_batch b;
	struct nm_flow_rec recs[64];
	struct nm_dgram_meta meta;
	uint64_t n, rate_sum, last_rate;
	uint8_t last_sampler[16];
};

static void
sink(struct nm_rec_batch *b, void *ctx)
{
	struct fixture *f = ctx;
	unsigned int i;

	for (i = 0; i < b->n; i++) {
		f->rate_sum += b->recs[i].key.sampling_rate;
		f->last_rate = b->recs[i].key.sampling_rate;
		memcpy(f->last_sampler, b->recs[i].key.sampler_addr, 16);
	}
	f->n += b->n;
}

/*
 * shared: the template cache counts templates in the fixture's exporter table and releases them
 * when an entry expires, as the engine wires them (workers.c); else it has a private table.
 */
static struct fixture *
fixture_new2(const struct nm_exp_params *p, int shared)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct nm_tmpl_params tp = {0};

	assert_non_null(f);
	f->d.stats = &f->st;
	f->d.default_sampling_rate = 1;
	f->d.exp = nm_exp_create(p);
	assert_non_null(f->d.exp);
	if (shared)
		tp.exp = f->d.exp;
	f->d.tmpl = nm_tmpl_cache_create(&tp);
	if (shared)
		nm_exp_set_release(f->d.exp, nm_tmpl_exp_release, f->d.tmpl);
	assert_non_null(f->d.tmpl);
	assert_non_null(f->d.exp);
	f->b.recs = f->recs;
	f->b.cap = 64;
	f->b.flush = sink;
	f->b.ctx = f;
	f->meta.time_received = 1700000000;
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 1});
	return f;
}

static struct fixture *
fixture_new(const struct nm_exp_params *p)
{
	return fixture_new2(p, 0);
}

static void
fixture_free(struct fixture *f)
{
	/* The cache first: it may count templates in the exporter table's entries. */
	nm_tmpl_cache_free(f->d.tmpl);
	nm_exp_free(f->d.exp);
	free(f);
}

static int
feed(struct fixture *f, const uint8_t *p, size_t len)
{
	int r = nm_decode_datagram(&f->d, p, len, &f->meta, &f->b);

	nm_rec_batch_flush(&f->b);
	return r;
}

static void
be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void
be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A NetFlow v5 datagram of n records, flow_sequence seq, sampling interval rate (0: none). */
static size_t
nf5(uint8_t *buf, uint16_t n, uint32_t seq, uint16_t rate)
{
	unsigned int i;

	memset(buf, 0, 24 + 48 * (size_t)n);
	be16(buf, 5);
	be16(buf + 2, n);
	be32(buf + 4, 100000);
	be32(buf + 8, 1700000000);
	be32(buf + 16, seq);
	buf[20] = 1; /* engine type */
	buf[21] = 2; /* engine id */
	be16(buf + 22, rate);
	for (i = 0; i < n; i++) {
		uint8_t *r = buf + 24 + 48 * i;

		r[0] = 10;
		r[3] = (uint8_t)i;
		be32(r + 16, 1);
		be32(r + 20, 100);
		r[38] = 6;
	}
	return 24 + 48 * (size_t)n;
}

/* An sFlow v5 datagram claiming agent v4, one compact flow sample of rate `rate`, no record. */
static size_t
sflow1(uint8_t *buf, const uint8_t agent[4], uint32_t seq, uint32_t rate)
{
	memset(buf, 0, 68);
	be32(buf, 5);
	be32(buf + 4, 1); /* IPv4 agent */
	memcpy(buf + 8, agent, 4);
	be32(buf + 16, seq);
	be32(buf + 24, 1);    /* samples */
	be32(buf + 28, 1);    /* flow_sample */
	be32(buf + 32, 32);   /* its length */
	be32(buf + 36, seq);  /* sample seq */
	be32(buf + 44, rate); /* sampling rate */
	be32(buf + 56, 7);    /* input ifIndex */
	return 68;
}

/*
 * nm_exp_foreach hands out copies valid during the call: the tests keep the live entry, found by
 * its key, to watch it change (they are QSBR readers and nothing expires it meanwhile).
 */
struct collect {
	struct nm_exp_table *t;
	const struct nm_exp_entry *e[16];
	unsigned int n;
};

static void
collect_fn(const struct nm_exp_entry *e, void *ctx)
{
	struct collect *c = ctx;

	if (c->n < 16)
		c->e[c->n++] = nm_exp_find(c->t, &e->key);
}

static const struct nm_exp_entry *
only_entry(struct fixture *f)
{
	struct collect c = {.t = f->d.exp};

	nm_exp_foreach(f->d.exp, collect_fn, &c);
	assert_int_equal(c.n, 1);
	return c.e[0];
}

static void
test_nf5_sequence(void **state)
{
	struct nm_exp_params p = {0};
	struct fixture *f;
	const struct nm_exp_entry *e;
	uint8_t buf[24 + 48 * 30];
	size_t len;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	len = nf5(buf, 10, 1000, 0);
	assert_int_equal(feed(f, buf, len), 10);
	e = only_entry(f);
	assert_int_equal(e->key.type, NM_FLOW_NF5);
	assert_int_equal(e->key.domain, 0x0102);
	assert_int_equal(e->version, 5);
	assert_int_equal(e->datagrams, 1);
	assert_int_equal(e->records, 10);
	/* No rate in the header: every record got the default and the exporter says so. */
	assert_int_equal(e->rate_default_records, 10);
	assert_int_equal(e->rates[0], 1);
	/* In order: 1010. */
	len = nf5(buf, 10, 1010, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_lost, 0);
	/* 25 records lost (1020..1044), then this one. */
	len = nf5(buf, 5, 1045, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_lost, 25);
	/* A late datagram (1020) does not move the expectation (1050). */
	len = nf5(buf, 10, 1020, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_out_of_order, 1);
	len = nf5(buf, 10, 1050, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_lost, 25);
	assert_int_equal(e->seq_resets, 0);
	/* A restart far below: resynchronised, not a loss. */
	len = nf5(buf, 10, 0, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_resets, 1);
	len = nf5(buf, 10, 10, 0);
	feed(f, buf, len);
	assert_int_equal(e->seq_lost, 25);
	assert_int_equal(e->datagrams, 7);
	assert_int_equal(e->records, 65);
	/* 25 records at 65/7 records per datagram: 3 datagrams (rounded up). */
	assert_int_equal(nm_exp_lost_datagrams(e), 3);
	/* A rate in the header: announced, a second distinct rate remembered. */
	len = nf5(buf, 4, 20, 512);
	feed(f, buf, len);
	assert_int_equal(f->last_rate, 512);
	assert_int_equal(e->rates[1], 512);
	assert_int_equal(e->rate_default_records, 65);
	fixture_free(f);
	rcu_unregister_thread();
}

static void
test_override(void **state)
{
	struct nm_exp_params p = {.max_overrides = 2};
	uint8_t a[16], b[16], c[16], buf[24 + 48 * 3];
	struct fixture *f;
	const struct nm_exp_entry *e;
	size_t len;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	nm_addr_from_v4(a, (const uint8_t[]){192, 0, 2, 1});
	nm_addr_from_v4(b, (const uint8_t[]){192, 0, 2, 2});
	memset(c, 0, 16);
	c[0] = 0x20;
	c[1] = 0x01;
	c[15] = 1;
	assert_int_equal(nm_exp_override_add(f->d.exp, a, 1000, "edge1"), 0);
	assert_int_equal(nm_exp_override_add(f->d.exp, a, 10, "again"), -EEXIST);
	assert_int_equal(nm_exp_override_add(f->d.exp, c, 0, "named only"), 0);
	assert_int_equal(nm_exp_override_add(f->d.exp, b, 5, "third"), -ENOSPC);
	assert_int_equal(nm_exp_override(f->d.exp, a), 1000);
	assert_int_equal(nm_exp_override(f->d.exp, b), 0);
	assert_int_equal(nm_exp_override(f->d.exp, c), 0);
	/* The override beats what the header announces. */
	len = nf5(buf, 3, 0, 64);
	assert_int_equal(feed(f, buf, len), 3);
	assert_int_equal(f->last_rate, 1000);
	assert_int_equal(f->rate_sum, 3000);
	e = only_entry(f);
	{
		struct nm_exp_configured cf;

		assert_int_equal(nm_exp_configured(nm_exp_conf_current(f->d.exp), a, &cf), 1);
		assert_int_equal(cf.rate, 1000);
		assert_string_equal(cf.name, "edge1");
		assert_string_equal(cf.description, "");
		assert_int_equal(nm_exp_configured(nm_exp_conf_current(f->d.exp), b, &cf), 0);
	}
	assert_int_equal(e->rate_override_records, 3);
	assert_int_equal(e->rate_default_records, 0);
	/* Another exporter keeps its own rate. */
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 2});
	feed(f, buf, len);
	assert_int_equal(f->last_rate, 64);
	fixture_free(f);
	rcu_unregister_thread();
}

/*
 * sFlow attribution: a stranger that writes a configured router's address as its agent gets
 * its rows credited to its own UDP source, never the router's override rate, counted; a
 * configured (agent, source) pair and a learned one are credited to the agent; the agent's
 * own address takes a learned agent back from a stranger that claimed it first.
 */
static void
test_sflow_agent(void **state)
{
	static const uint8_t router4[4] = {192, 0, 2, 1}, relay4[4] = {192, 0, 2, 7},
			     evil4[4] = {198, 51, 100, 66}, lone4[4] = {192, 0, 2, 50};
	struct nm_exp_params p = {.agent_learn = 1};
	uint8_t router[16], relay[16], evil[16], lone[16], buf[68];
	struct nm_exp_stats st;
	struct fixture *f;
	size_t len;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	nm_addr_from_v4(router, router4);
	nm_addr_from_v4(relay, relay4);
	nm_addr_from_v4(evil, evil4);
	nm_addr_from_v4(lone, lone4);
	assert_int_equal(nm_exp_override_add(f->d.exp, router, 1000, "edge1"), 0);
	assert_int_equal(nm_exp_agent_add(f->d.exp, router, relay), 0);

	/* The router itself: its agent, its override. */
	memcpy(f->meta.exporter, router, 16);
	len = sflow1(buf, router4, 1, 64);
	assert_int_equal(feed(f, buf, len), 1);
	assert_memory_equal(f->last_sampler, router, 16);
	assert_int_equal(f->last_rate, 1000);
	/* Through its configured relay: still the router. */
	memcpy(f->meta.exporter, relay, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, router4, 2, 64)), 1);
	assert_memory_equal(f->last_sampler, router, 16);
	assert_int_equal(f->last_rate, 1000);
	/* A stranger claiming the router: credited to the stranger at its own rate, counted. */
	memcpy(f->meta.exporter, evil, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, router4, 3, 64)), 1);
	assert_memory_equal(f->last_sampler, evil, 16);
	assert_int_equal(f->last_rate, 64);
	assert_int_equal(f->st.sflow_agent_mismatch, 1);

	/* An unconfigured agent is learned from its first source (relay)... */
	memcpy(f->meta.exporter, relay, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, lone4, 1, 8)), 1);
	assert_memory_equal(f->last_sampler, lone, 16);
	/* ...a second source is refused... */
	memcpy(f->meta.exporter, evil, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, lone4, 2, 8)), 1);
	assert_memory_equal(f->last_sampler, evil, 16);
	assert_int_equal(f->st.sflow_agent_mismatch, 2);
	/* ...and the agent's own address rebinds it: the relay is refused afterwards. */
	memcpy(f->meta.exporter, lone, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, lone4, 3, 8)), 1);
	assert_memory_equal(f->last_sampler, lone, 16);
	memcpy(f->meta.exporter, relay, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, lone4, 4, 8)), 1);
	assert_memory_equal(f->last_sampler, relay, 16);
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.sflow_agent_mismatch, 3);
	assert_int_equal(st.sflow_agents, 2);
	fixture_free(f);

	/* Learning off (the library default): an agent not sending from its own address and not
	 * configured is never credited. */
	p.agent_learn = 0;
	f = fixture_new(&p);
	memcpy(f->meta.exporter, relay, 16);
	assert_int_equal(feed(f, buf, sflow1(buf, lone4, 1, 8)), 1);
	assert_memory_equal(f->last_sampler, relay, 16);
	assert_int_equal(f->st.sflow_agent_mismatch, 1);
	fixture_free(f);
	rcu_unregister_thread();
}

/* The agent table is bounded: a flood of invented agents fills it, then is counted. */
static void
test_sflow_agent_bound(void **state)
{
	struct nm_exp_params p = {.agent_learn = 1, .max_agents = 16};
	struct nm_exp_stats st;
	uint8_t buf[68], src[16];
	struct fixture *f;
	unsigned int i;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	nm_addr_from_v4(src, (const uint8_t[]){198, 51, 100, 66});
	memcpy(f->meta.exporter, src, 16);
	for (i = 0; i < 1000; i++) {
		uint8_t a[4] = {10, 0, (uint8_t)(i >> 8), (uint8_t)i};

		assert_int_equal(feed(f, buf, sflow1(buf, a, i, 8)), 1);
	}
	nm_exp_get_stats(f->d.exp, &st);
	assert_true(st.sflow_agents <= 32); /* 2 * max_agents slots */
	assert_true(st.sflow_agents_full + st.sflow_agents >= 1000);
	assert_int_equal(st.sflow_agent_mismatch, st.sflow_agents_full);
	fixture_free(f);
	rcu_unregister_thread();
}

/*
 * A NetFlow v5 datagram rejected whole (its count does not fit its length) from an unknown
 * source makes no exporter entry, so such garbage from many sources cannot fill the pool; from
 * a known exporter it is counted on that exporter's entry.
 */
static void
test_rejected_no_entry(void **state)
{
	struct nm_exp_params p = {.max_exporters = 4};
	uint8_t buf[24 + 48 * 3];
	struct nm_exp_stats st;
	struct fixture *f;
	size_t len;
	unsigned int i;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	len = nf5(buf, 3, 0, 0);
	be16(buf + 2, 30); /* claims 30 records in a datagram of 3 */
	for (i = 0; i < 100; i++) {
		nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){203, 0, 113, (uint8_t)i});
		assert_true(feed(f, buf, len) < 0);
	}
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters, 0);
	assert_int_equal(st.exporters_overflow, 0);
	assert_int_equal(st.rejected_unknown, 100);
	/* A real exporter still gets its entry, and its own bad datagram is counted on it. */
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 1});
	assert_int_equal(feed(f, buf, nf5(buf, 3, 0, 0)), 3);
	be16(buf + 2, 30);
	assert_true(feed(f, buf, len) < 0);
	assert_int_equal(only_entry(f)->bad, 1);
	assert_int_equal(only_entry(f)->datagrams, 2);
	fixture_free(f);
	rcu_unregister_thread();
}

/* [collector] allow: prefixes of both families, configured exporters admitted, host bits. */
static void
test_allow(void **state)
{
	struct nm_exp_params p = {0};
	struct nm_exp_table *t;
	uint8_t a[16], v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	uint8_t v6b[16];

	(void)state;
	t = nm_exp_create(&p);
	assert_non_null(t);
	nm_addr_from_v4(a, (const uint8_t[]){198, 51, 100, 66});
	assert_true(nm_exp_allowed(t, a)); /* nothing configured: everyone */
	nm_addr_from_v4(a, (const uint8_t[]){192, 0, 2, 0});
	assert_int_equal(nm_exp_allow_add(t, a, 96 + 24), 0);
	assert_int_equal(nm_exp_allow_add(t, v6, 32), 0);
	assert_int_equal(nm_exp_allow_add(t, v6, 129), -EINVAL);
	nm_addr_from_v4(a, (const uint8_t[]){192, 0, 2, 200});
	assert_true(nm_exp_allowed(t, a));
	nm_addr_from_v4(a, (const uint8_t[]){192, 0, 3, 1});
	assert_false(nm_exp_allowed(t, a));
	memcpy(v6b, v6, 16);
	v6b[15] = 0x99;
	v6b[8] = 0xff;
	assert_true(nm_exp_allowed(t, v6b));
	v6b[3] = 0xb9;
	assert_false(nm_exp_allowed(t, v6b));
	/* A configured exporter outside every prefix is admitted. */
	assert_false(nm_exp_allowed(t, a));
	assert_int_equal(nm_exp_override_add(t, a, 0, "edge"), 0);
	assert_true(nm_exp_allowed(t, a));
	nm_exp_free(t);
}

/* The refused-source table: bounded, heavy hitters kept, counts never under. */
static void
test_refused_top(void **state)
{
	struct nm_exp_refused r, sum;
	uint8_t heavy[16], a[16];
	unsigned int i, found = 0;

	(void)state;
	memset(&r, 0, sizeof(r));
	nm_addr_from_v4(heavy, (const uint8_t[]){203, 0, 113, 9});
	for (i = 0; i < 10000; i++) {
		nm_addr_from_v4(a, (const uint8_t[]){10, 1, (uint8_t)(i >> 8), (uint8_t)i});
		nm_exp_refused_note(&r, a); /* 10,000 distinct one-off sources */
		if (i % 4 == 0)
			nm_exp_refused_note(&r, heavy); /* 2,500: 20 % of the total */
	}
	assert_int_equal(r.total, 12500);
	for (i = 0; i < NM_EXP_REFUSED_TOP; i++)
		if (memcmp(r.top[i].addr, heavy, 16) == 0) {
			assert_true(r.top[i].count >= 2500);
			found = 1;
		}
	assert_true(found);
	memset(&sum, 0, sizeof(sum));
	nm_exp_refused_merge(&sum, &r);
	nm_exp_refused_merge(&sum, &r);
	assert_int_equal(sum.total, 25000);
	for (i = 0, found = 0; i < NM_EXP_REFUSED_TOP; i++)
		if (memcmp(sum.top[i].addr, heavy, 16) == 0 && sum.top[i].count >= 5000)
			found = 1;
	assert_true(found);
}

static void
test_overflow(void **state)
{
	struct nm_exp_params p = {.max_exporters = 2};
	struct nm_exp_stats st;
	struct fixture *f;
	uint8_t buf[24 + 48];
	size_t len = nf5(buf, 1, 0, 0);
	unsigned int i;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	for (i = 0; i < 5; i++) {
		nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, (uint8_t)(i % 3)});
		assert_int_equal(feed(f, buf, len), 1); /* decoding goes on regardless */
	}
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters, 2);
	assert_int_equal(st.exporters_overflow, 1); /* the third address, once */
	fixture_free(f);
	rcu_unregister_thread();
}

/* Two lcores on one exporter: counts stay exact (atomics on its entry). */
struct racer {
	struct nm_exp_table *t;
	unsigned int n;
};

static void *
race(void *arg)
{
	struct racer *r = arg;
	struct nm_dgram_info info = {.type = NM_FLOW_NF9, .version = 9, .records = 3, .rate = 1};
	struct nm_dgram_meta meta = {.time_received = 1};
	uint64_t errs[NM_DECODE_ERR_MAX] = {0};
	unsigned int i;

	errs[NM_DECODE_ERR_UNKNOWN_TEMPLATE] = 1;
	nm_addr_from_v4(meta.exporter, (const uint8_t[]){198, 51, 100, 7});
	rcu_register_thread();
	for (i = 0; i < r->n; i++) {
		nm_exp_account(r->t, &info, &meta, 3, errs);
		if (i % 64 == 0)
			rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static void
test_two_writers(void **state)
{
	struct nm_exp_params p = {0};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct racer r = {.t = t, .n = 200000};
	struct collect c = {.t = t};
	pthread_t a, b;

	(void)state;
	assert_non_null(t);
	assert_int_equal(pthread_create(&a, NULL, race, &r), 0);
	assert_int_equal(pthread_create(&b, NULL, race, &r), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	rcu_register_thread();
	nm_exp_foreach(t, collect_fn, &c);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.e[0]->datagrams, 400000);
	assert_int_equal(c.e[0]->records, 1200000);
	assert_int_equal(c.e[0]->err[NM_DECODE_ERR_UNKNOWN_TEMPLATE], 400000);
	nm_exp_free(t);
	rcu_unregister_thread();
}

/* ---- corpus ---- */

static int
udp_payload(const uint8_t *p, size_t caplen, uint8_t src[16], const uint8_t **pl, size_t *len)
{
	const uint8_t *end = p + caplen;
	uint16_t et;

	if (caplen < 14)
		return -1;
	et = (uint16_t)(p[12] << 8 | p[13]);
	p += 14;
	if (et == 0x8100 && end - p >= 4) {
		et = (uint16_t)(p[2] << 8 | p[3]);
		p += 4;
	}
	if (et == 0x0800 && end - p >= 20 && p[9] == 17) {
		nm_addr_from_v4(src, p + 12);
		p += (p[0] & 15) * 4;
	} else if (et == 0x86dd && end - p >= 40 && p[6] == 17) {
		memcpy(src, p + 8, 16);
		p += 40;
	} else {
		return -1;
	}
	if (end - p < 8)
		return -1;
	*pl = p + 8;
	*len = (size_t)(end - p - 8);
	return 0;
}

/* Feed a capture of the corpus; false when the corpus is absent. */
static bool
feed_pcap(struct fixture *f, const char *file)
{
	char path[1024];
	uint8_t *d;
	long size;
	size_t off = 24;
	FILE *fp;
	int swap;

	snprintf(path, sizeof(path), "%s/%s", NM_CORPORA, file);
	fp = fopen(path, "rb");
	if (fp == NULL)
		return false;
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	d = malloc((size_t)size);
	assert_non_null(d);
	assert_int_equal(fread(d, 1, (size_t)size, fp), (size_t)size);
	fclose(fp);
	swap = d[0] == 0xa1; /* big-endian file (magic a1b2c3d4 or a1b23c4d) */
	while (off + 16 <= (size_t)size) {
		uint32_t caplen;
		const uint8_t *pl;
		size_t len;

		memcpy(&caplen, d + off + 8, 4);
		if (swap)
			caplen = __builtin_bswap32(caplen);
		if (off + 16 + caplen > (size_t)size)
			break;
		if (udp_payload(d + off + 16, caplen, f->meta.exporter, &pl, &len) == 0)
			feed(f, pl, len);
		rcu_quiescent_state();
		off += 16 + caplen;
	}
	free(d);
	return true;
}

/* nm_exp_iface_foreach hands out copies valid during the call: keep copies. */
struct ifcollect {
	struct nm_exp_iface copy[64];
	const struct nm_exp_iface *i[64];
	unsigned int n;
};

static void
ifcollect_fn(const struct nm_exp_iface *i, void *ctx)
{
	struct ifcollect *c = ctx;

	if (c->n < 64) {
		c->copy[c->n] = *i;
		c->i[c->n] = &c->copy[c->n];
		c->n++;
	}
}

static void
test_corpus(void **state)
{
	static const struct {
		const char *file;
		uint8_t type;
		uint64_t datagrams, records, templates;
	} cases[] = {
		{"generated/softflowd-v5.pcap", NM_FLOW_NF5, 12, 337, 0},
		{"generated/softflowd-v9.pcap", NM_FLOW_NF9, 14, 397, 3},
		{"generated/softflowd-v10.pcap", NM_FLOW_IPFIX, 14, 397, 3},
		{"generated/pmacctd-nfprobe-v10.pcap", NM_FLOW_IPFIX, 57, 397, 0},
		{"generated/pmacctd-sfprobe-sflow5.pcap", NM_FLOW_SFLOW5, 377, 2445, 0},
	};
	struct nm_exp_params p = {0};
	unsigned int i;

	(void)state;
	rcu_register_thread();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct fixture *f = fixture_new(&p);
		const struct nm_exp_entry *e;

		if (!feed_pcap(f, cases[i].file)) {
			print_message("corpus absent at %s: skipping\n", NM_CORPORA);
			fixture_free(f);
			rcu_unregister_thread();
			skip();
		}
		e = only_entry(f);
		print_message("%-40s %s datagrams %llu records %llu templates %llu seq lost %llu "
			      "late %llu resets %llu default-rate records %llu\n",
			      cases[i].file, nm_exp_type_name(e->key.type),
			      (unsigned long long)e->datagrams, (unsigned long long)e->records,
			      (unsigned long long)e->templates, (unsigned long long)e->seq_lost,
			      (unsigned long long)e->seq_out_of_order,
			      (unsigned long long)e->seq_resets,
			      (unsigned long long)e->rate_default_records);
		assert_int_equal(e->key.type, cases[i].type);
		assert_int_equal(e->datagrams, cases[i].datagrams);
		assert_int_equal(e->records, cases[i].records);
		if (cases[i].templates != 0)
			assert_true(e->templates >= cases[i].templates);
		/* Captured on loopback with no drop: no gap, nothing late, no restart. */
		assert_int_equal(e->seq_lost, 0);
		assert_int_equal(e->seq_out_of_order, 0);
		assert_int_equal(e->seq_resets, 0);
		assert_int_equal(e->bad, 0);
		if (cases[i].type == NM_FLOW_NF5) /* softflowd's header says 0: no rate */
			assert_int_equal(e->rate_default_records, e->records);
		if (cases[i].type == NM_FLOW_SFLOW5) {
			struct ifcollect c = {0};
			char a[NM_ADDR_STRLEN];

			assert_int_equal(e->rate_default_records, 0);
			assert_int_equal(e->rates[0], 1);
			assert_string_equal(nm_addr_str(e->key.addr, a, sizeof(a)), "127.0.0.1");
			nm_exp_iface_foreach(f->d.exp, ifcollect_fn, &c);
			/* RECIPES.md: 2 counter samples (generic_interface) from the agent. */
			assert_int_equal(c.n, 1);
			assert_int_equal(c.i[0]->samples, 2);
			assert_int_equal(c.i[0]->c.if_type, 6);
			assert_true(c.i[0]->c.in_octets > 0);
		}
		fixture_free(f);
	}
	rcu_unregister_thread();
}

/* hsflowd counter samples of several agents and interfaces, IPv6 agent. */
static void
test_corpus_interfaces(void **state)
{
	struct nm_exp_params p = {0};
	struct ifcollect c = {0};
	struct collect ec = {0};
	struct fixture *f;
	char a[NM_ADDR_STRLEN];
	unsigned int i, v6 = 0;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	if (!feed_pcap(f, "public/tcpdump/sflow-print-v6.pcap")) {
		fixture_free(f);
		rcu_unregister_thread();
		skip();
	}
	nm_exp_iface_foreach(f->d.exp, ifcollect_fn, &c);
	ec.t = f->d.exp;
	nm_exp_foreach(f->d.exp, collect_fn, &ec);
	assert_int_equal(ec.n, 1);
	assert_string_equal(nm_addr_str(ec.e[0]->key.addr, a, sizeof(a)), "30::1:1:1");
	assert_int_equal(ec.e[0]->datagrams, 25);
	assert_true(c.n >= 2);
	for (i = 0; i < c.n; i++) {
		print_message("agent %s ifIndex %u samples %llu in_octets %llu out_octets %llu\n",
			      nm_addr_str(c.i[i]->agent, a, sizeof(a)), c.i[i]->c.if_index,
			      (unsigned long long)c.i[i]->samples,
			      (unsigned long long)c.i[i]->c.in_octets,
			      (unsigned long long)c.i[i]->c.out_octets);
		v6 += strcmp(a, "30::1:1:1") == 0;
	}
	assert_int_equal(v6, c.n);
	fixture_free(f);
	rcu_unregister_thread();
}

/* ---- [exporter.NAME] sections ---- */

static int
load_text(struct nm_config *c, const char *text, char *err, size_t errlen)
{
	char path[] = "/tmp/nm_test_exporter_XXXXXX";
	int fd = mkstemp(path), ret;
	FILE *fp;

	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	nm_config_defaults(c);
	ret = nm_config_load(c, path, err, errlen);
	unlink(path);
	return ret;
}

static void
test_config(void **state)
{
	struct nm_config *c = calloc(1, sizeof(*c));
	char err[1024], a[NM_ADDR_STRLEN];

	(void)state;
	assert_non_null(c);
	assert_int_equal(load_text(c,
				   "[exporter.edge1]\n"
				   "address = 192.0.2.1\n"
				   "sampling_rate = 1000\n"
				   "description = edge router, Frankfurt\n"
				   "interface.1 = xe-0/0/0\n"
				   "interface.513 = et-1/0/0\n"
				   "[exporter.core6]\n"
				   "address = 2001:db8::1\n",
				   err, sizeof(err)),
			 0);
	assert_int_equal(c->n_exporters, 2);
	assert_string_equal(c->exporters[0].name, "edge1");
	assert_string_equal(nm_addr_str(c->exporters[0].address, a, sizeof(a)), "192.0.2.1");
	assert_int_equal(c->exporters[0].sampling_rate, 1000);
	assert_string_equal(c->exporters[0].description, "edge router, Frankfurt");
	assert_string_equal(nm_addr_str(c->exporters[1].address, a, sizeof(a)), "2001:db8::1");
	assert_int_equal(c->exporters[1].sampling_rate, 0);
	assert_int_equal(c->n_ifnames, 2);
	assert_int_equal(c->ifnames[1].if_index, 513);
	assert_string_equal(c->ifnames[1].name, "et-1/0/0");
	assert_int_equal(c->ifnames[1].exporter, 0);
	/* --set reaches the same keys, interface.<ifIndex> included. */
	assert_int_equal(nm_config_set(c, "exporter.core6.interface.7=ge-0/0/7", err, sizeof(err)),
			 0);
	assert_int_equal(c->n_ifnames, 3);
	assert_int_equal(c->ifnames[2].exporter, 1);
	assert_int_equal(nm_config_set(c, "exporter.core6.sampling_rate=64", err, sizeof(err)), 0);
	assert_int_equal(c->exporters[1].sampling_rate, 64);

	/* Errors name the file or --set, the section, the key, the value and what is valid. */
	assert_int_equal(load_text(c, "[exporter.x]\nsampling_rate = 10\n", err, sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "[exporter.x]: address is missing"));
	assert_int_equal(load_text(c, "[exporter.x]\naddress = 192.0.2.300\n", err, sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "address = \"192.0.2.300\": expected an IPv4 or IPv6"));
	assert_int_equal(load_text(c, "[exporter.x]\naddress = 192.0.2.3\nsampling_rate = 0\n", err,
				   sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "sampling_rate = \"0\": expected an integer from 1"));
	assert_int_equal(load_text(c, "[exporter.x]\naddress = 192.0.2.3\nsamplingrate = 5\n", err,
				   sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "unknown key; an exporter has address, sampling_rate"));
	assert_int_equal(load_text(c, "[exporter.x]\naddress = 192.0.2.3\ninterface.eth = x\n", err,
				   sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "interface.<ifIndex>"));
	assert_int_equal(load_text(c,
				   "[exporter.a]\naddress = 192.0.2.3\n[exporter.b]\n"
				   "address = 192.0.2.3\n",
				   err, sizeof(err)),
			 -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "same address as [exporter.a]"));
	nm_config_defaults(c);
	assert_int_equal(nm_config_set(c, "exporter.y.sampling_rate=5", err, sizeof(err)), -EINVAL);
	print_message("%s\n", err);
	assert_non_null(strstr(err, "address is missing"));
	free(c);
}

/* ---- idle expiry ---- */

/* Let the call_rcu callbacks queued so far run (the test thread is an online QSBR reader). */
static void
settle(void)
{
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
}

static struct nm_exp_key
key4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t type)
{
	struct nm_exp_key k;

	memset(&k, 0, sizeof(k));
	nm_addr_from_v4(k.addr, (const uint8_t[]){a, b, c, d});
	k.type = type;
	return k;
}

static unsigned int count_fn_n;
static void
count_fn(const struct nm_exp_entry *e, void *ctx)
{
	(void)e;
	(void)ctx;
	count_fn_n++;
}

/*
 * Idle entries expire after exporter_timeout_s of the sweep's clock, configured and active ones
 * stay, a slot is reused only after its grace period, and comes back zeroed.
 */
static void
test_expire_reuse(void **state)
{
	struct nm_exp_params p = {.max_exporters = 16, .exporter_timeout_s = 5};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct nm_exp_entry *e[16], *one;
	struct nm_exp_key k;
	struct nm_exp_stats st;
	unsigned int i, n;

	(void)state;
	assert_non_null(t);
	rcu_register_thread();
	k = key4(10, 0, 0, 0, NM_FLOW_NF5);
	assert_int_equal(nm_exp_override_add(t, k.addr, 100, "kept"), 0);
	for (i = 0; i < 16; i++) {
		k = key4(10, 0, 0, (uint8_t)i, NM_FLOW_NF5);
		e[i] = nm_exp_get(t, &k);
		assert_non_null(e[i]);
		e[i]->datagrams = 1;
	}
	k = key4(10, 0, 1, 0, NM_FLOW_NF5);
	assert_null(nm_exp_get(t, &k));
	/* First sighting at 100; entry 1 gets a datagram at 103. */
	assert_int_equal(nm_exp_expire(t, 100, 1024), 0);
	e[1]->datagrams++;
	assert_int_equal(nm_exp_expire(t, 103, 1024), 0);
	assert_int_equal(nm_exp_expire(t, 104, 1024), 0);
	assert_int_equal(nm_exp_expire(t, 105, 1024), 14);
	assert_int_equal(nm_exp_expire(t, 105, 1024), 0); /* same second: nothing to do */
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.exporters, 2);
	assert_int_equal(st.expired, 14);
	assert_ptr_equal(nm_exp_find(t, &(struct nm_exp_key){0}), NULL);
	k = key4(10, 0, 0, 0, NM_FLOW_NF5);
	assert_ptr_equal(nm_exp_find(t, &k), e[0]); /* configured */
	k = key4(10, 0, 0, 1, NM_FLOW_NF5);
	assert_ptr_equal(nm_exp_find(t, &k), e[1]); /* active */
	k = key4(10, 0, 0, 2, NM_FLOW_NF5);
	assert_null(nm_exp_find(t, &k));
	/* Expired entries are not listed, even before their slots are recycled. */
	count_fn_n = 0;
	nm_exp_foreach(t, count_fn, NULL);
	assert_int_equal(count_fn_n, 2);
	/* No slot comes back before a grace period: this reader has not passed one. */
	k = key4(10, 0, 2, 0, NM_FLOW_NF5);
	assert_null(nm_exp_get(t, &k));
	settle();
	for (i = 0; i < 14; i++) {
		k = key4(10, 0, 2, (uint8_t)i, NM_FLOW_NF5);
		one = nm_exp_get(t, &k);
		assert_non_null(one);
		assert_true(one >= e[0] - 16 && one <= e[0] + 16); /* a slot of the pool */
		assert_int_equal(one->datagrams, 0);
		assert_int_equal(one->first_seen, 0);
		assert_null(one->tmpl_list);
		assert_int_equal(one->n_templates, 0);
		assert_memory_equal(&one->key, &k, sizeof(k));
	}
	k = key4(10, 0, 3, 0, NM_FLOW_NF5);
	assert_null(nm_exp_get(t, &k));
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.exporters, 16);
	assert_int_equal(st.exporters_overflow, 3);
	/* Entry 1 has been idle since 103: it goes at 108; the new ones are first seen then. */
	assert_int_equal(nm_exp_expire(t, 108, 1024), 1);
	/* Budget 1: one slot visited a call; the 14 new ones (idle since 108) go one by one. */
	for (i = 0, n = 0; i < 16; i++) {
		unsigned int r = nm_exp_expire(t, 200 + i, 1);

		assert_true(r <= 1);
		n += r;
	}
	assert_int_equal(n, 14);
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.expired, 29);
	assert_int_equal(st.exporters, 1);
	/* Freed with callbacks pending: nm_exp_free waits for them. */
	nm_exp_free(t);
	rcu_unregister_thread();
}

/* An expired entry takes its templates with it; the exporter's next templates make a new one. */
static void
test_expire_templates(void **state)
{
	struct nm_exp_params p = {.max_exporters = 64, .exporter_timeout_s = 60};
	struct nm_tmpl_cache_stats ts;
	struct nm_exp_stats st;
	struct fixture *f;
	uint64_t n1;

	(void)state;
	rcu_register_thread();
	f = fixture_new2(&p, 1);
	if (!feed_pcap(f, "generated/softflowd-v10.pcap")) {
		fixture_free(f);
		rcu_unregister_thread();
		skip();
	}
	n1 = f->n;
	assert_int_equal(n1, 397);
	nm_tmpl_cache_get_stats(f->d.tmpl, &ts);
	assert_true(ts.templates > 0);
	assert_int_equal(ts.exporters, 1);
	assert_int_equal(nm_exp_expire(f->d.exp, 1000, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 1059, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 1060, 1024), 1);
	nm_tmpl_cache_get_stats(f->d.tmpl, &ts);
	assert_int_equal(ts.templates, 0);
	assert_int_equal(ts.exporters, 0);
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters, 0);
	assert_int_equal(st.expired, 1);
	settle();
	/* The exporter comes back: its templates arrive again and every record decodes. */
	f->n = 0;
	assert_true(feed_pcap(f, "generated/softflowd-v10.pcap"));
	assert_int_equal(f->n, n1);
	assert_int_equal(only_entry(f)->datagrams, 14);
	assert_int_equal(only_entry(f)->records, n1);
	fixture_free(f);
	rcu_unregister_thread();
}

/*
 * 2 x max_exporters sources that send one datagram each take every entry; a real exporter is
 * untracked until they expire, then it gets an entry and its templates, and all its records.
 */
static void
test_expire_flood(void **state)
{
	struct nm_exp_params p = {.max_exporters = 64, .exporter_timeout_s = 2};
	uint8_t buf[24 + 48 * 3];
	struct nm_exp_stats st;
	struct fixture *f;
	unsigned int i;

	(void)state;
	rcu_register_thread();
	f = fixture_new2(&p, 1);
	for (i = 0; i < 128; i++) {
		nm_addr_from_v4(f->meta.exporter,
				(const uint8_t[]){198, 18, (uint8_t)(i >> 8), (uint8_t)i});
		assert_int_equal(feed(f, buf, nf5(buf, 3, 0, 0)), 3);
		rcu_quiescent_state();
	}
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters, 64);
	assert_int_equal(st.exporters_overflow, 64);
	/* A real exporter now: decoded (NetFlow v5 needs no state), but not tracked. */
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 1});
	assert_int_equal(feed(f, buf, nf5(buf, 3, 0, 0)), 3);
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters_overflow, 65);
	assert_int_equal(nm_exp_expire(f->d.exp, 0, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 1, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 2, 1024), 64);
	settle();
	f->n = 0;
	if (!feed_pcap(f, "generated/softflowd-v10.pcap")) {
		fixture_free(f);
		rcu_unregister_thread();
		skip();
	}
	assert_int_equal(f->n, 397);
	assert_int_equal(only_entry(f)->datagrams, 14);
	nm_exp_get_stats(f->d.exp, &st);
	assert_int_equal(st.exporters, 1);
	assert_int_equal(st.expired, 64);
	assert_int_equal(st.exporters_overflow, 65);
	fixture_free(f);
	rcu_unregister_thread();
}

/*
 * A telemetry-like walker on another thread, not an RCU reader, while slots are recycled: it
 * must never see a copy that mixes two exporters. The race window is a few instructions wide,
 * so this is a smoke test; test_expire_gen checks the mechanism deterministically.
 */
struct walker {
	struct nm_exp_table *t;
	volatile int stop;
	uint64_t seen, bad; /* written by the walker, read by the test */
};

static void
walk_fn(const struct nm_exp_entry *e, void *ctx)
{
	struct walker *w = ctx;

	w->seen++;
	/* Each entry's fields were written together from its key: a mix would break this. */
	if (e->records != (uint64_t)e->key.addr[15] * 3 || e->datagrams != e->key.addr[15] ||
	    e->key.type != NM_FLOW_NF5)
		w->bad++;
}

static void *
walk_thread(void *arg)
{
	struct walker *w = arg;

	while (!w->stop)
		nm_exp_foreach(w->t, walk_fn, w);
	return NULL;
}

static void
test_expire_walker(void **state)
{
	struct nm_exp_params p = {.max_exporters = 32, .exporter_timeout_s = 1};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct walker w = {.t = t};
	pthread_t th;
	unsigned int round, i;
	time_t t0 = time(NULL);

	(void)state;
	assert_non_null(t);
	rcu_register_thread();
	assert_int_equal(pthread_create(&th, NULL, walk_thread, &w), 0);
	/* 300 rounds, and on a loaded machine more until the walker has run (20 s at most). */
	for (round = 0; round < 300 || (uatomic_read(&w.seen) < 1000 && time(NULL) - t0 < 20);
	     round++) {
		for (i = 1; i <= 32; i++) {
			struct nm_exp_key k = key4(10, (uint8_t)(round >> 8), (uint8_t)round,
						   (uint8_t)i, NM_FLOW_NF5);
			struct nm_exp_entry *e = nm_exp_get(t, &k);

			if (e == NULL)
				continue;
			uatomic_add(&e->records, 3 * i);
			uatomic_add(&e->datagrams, i);
		}
		(void)nm_exp_expire(t, 2 * round, 1024);
		(void)nm_exp_expire(t, 2 * round + 1, 1024);
		settle();
	}
	w.stop = 1;
	pthread_join(th, NULL);
	print_message("walker: %llu entries seen, %llu inconsistent\n", (unsigned long long)w.seen,
		      (unsigned long long)w.bad);
	assert_true(w.seen > 0);
	assert_int_equal(w.bad, 0);
	nm_exp_free(t);
	rcu_unregister_thread();
}

static unsigned int ifcount_n;
static void
ifcount_fn(const struct nm_exp_iface *i, void *ctx)
{
	(void)i;
	(void)ctx;
	ifcount_n++;
}

/* sFlow interfaces expire like entries: idle ones of unconfigured agents, slots reused. */
static void
test_expire_interfaces(void **state)
{
	struct nm_exp_params p = {.max_ifaces = 8, .exporter_timeout_s = 5};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct nm_exp_ifcounters c;
	struct nm_exp_stats st;
	uint8_t a[16], b[16];
	unsigned int i;

	(void)state;
	assert_non_null(t);
	rcu_register_thread();
	nm_addr_from_v4(a, (const uint8_t[]){198, 51, 100, 1});
	nm_addr_from_v4(b, (const uint8_t[]){192, 0, 2, 9});
	assert_int_equal(nm_exp_override_add(t, b, 0, "agent"), 0);
	memset(&c, 0, sizeof(c));
	for (i = 0; i < 8; i++) {
		c.if_index = i;
		nm_exp_iface_update(t, i == 0 ? b : a, 1, i, &c);
	}
	c.if_index = 100;
	nm_exp_iface_update(t, a, 1, 0, &c);
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.interfaces, 8);
	assert_int_equal(st.interfaces_overflow, 1);
	(void)nm_exp_expire(t, 100, 1024);
	c.if_index = 1;
	nm_exp_iface_update(t, a, 1, 1, &c); /* a sample for (a, 1): it stays */
	(void)nm_exp_expire(t, 101, 1024);
	(void)nm_exp_expire(t, 105, 1024);
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.interfaces_expired, 6);
	assert_int_equal(st.interfaces, 2);
	ifcount_n = 0;
	nm_exp_iface_foreach(t, ifcount_fn, NULL);
	assert_int_equal(ifcount_n, 2);
	c.if_index = 200;
	nm_exp_iface_update(t, a, 1, 0, &c); /* no slot before the grace period */
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.interfaces_overflow, 2);
	settle();
	for (i = 0; i < 6; i++) {
		c.if_index = 300 + i;
		c.in_octets = 7;
		nm_exp_iface_update(t, a, 1, 0, &c);
	}
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.interfaces, 8);
	assert_int_equal(st.interfaces_overflow, 2);
	ifcount_n = 0;
	nm_exp_iface_foreach(t, ifcount_fn, NULL);
	assert_int_equal(ifcount_n, 8);
	nm_exp_free(t);
	rcu_unregister_thread();
}

/* An expired sFlow entry takes its agent's learned binding with it; configured pairs stay. */
static void
test_expire_agent_binding(void **state)
{
	struct nm_exp_params p = {.agent_learn = 1, .exporter_timeout_s = 5};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct nm_exp_stats st;
	struct nm_exp_key k;
	uint8_t x[16], r[16], s2[16], y[16], ry[16];

	(void)state;
	assert_non_null(t);
	rcu_register_thread();
	nm_addr_from_v4(x, (const uint8_t[]){192, 0, 2, 50});
	nm_addr_from_v4(r, (const uint8_t[]){198, 51, 100, 1});
	nm_addr_from_v4(s2, (const uint8_t[]){198, 51, 100, 2});
	nm_addr_from_v4(y, (const uint8_t[]){192, 0, 2, 60});
	nm_addr_from_v4(ry, (const uint8_t[]){198, 51, 100, 3});
	assert_int_equal(nm_exp_agent_add(t, y, ry), 0);  /* configured pair */
	assert_int_equal(nm_exp_agent_check(t, x, r), 1); /* r learned for x */
	assert_int_equal(nm_exp_agent_check(t, x, s2), 0);
	k = key4(192, 0, 2, 50, NM_FLOW_SFLOW5);
	nm_exp_get(t, &k)->datagrams = 1;
	k = key4(192, 0, 2, 60, NM_FLOW_SFLOW5);
	nm_exp_get(t, &k)->datagrams = 1;
	assert_int_equal(nm_exp_expire(t, 100, 1024), 0);
	assert_int_equal(nm_exp_expire(t, 105, 1024), 2);
	nm_exp_get_stats(t, &st);
	assert_int_equal(st.sflow_agents_expired, 1);
	assert_int_equal(st.sflow_agents, 1);
	/* x's binding is gone: the next source that speaks for it is learned; y's stays. */
	assert_int_equal(nm_exp_agent_check(t, x, s2), 1);
	assert_int_equal(nm_exp_agent_check(t, x, r), 0);
	assert_int_equal(nm_exp_agent_check(t, y, ry), 1);
	assert_int_equal(nm_exp_agent_check(t, y, s2), 0);
	nm_exp_free(t);
	rcu_unregister_thread();
}

/* nm_exp_foreach skips a slot being zeroed (odd generation) and an expired entry. */
static void
test_expire_gen(void **state)
{
	struct nm_exp_params p = {.max_exporters = 4, .exporter_timeout_s = 1};
	struct nm_exp_table *t = nm_exp_create(&p);
	struct nm_exp_entry *e[3];
	unsigned int i;

	(void)state;
	assert_non_null(t);
	rcu_register_thread();
	for (i = 0; i < 3; i++) {
		struct nm_exp_key k = key4(10, 2, 0, (uint8_t)i, NM_FLOW_NF5);

		e[i] = nm_exp_get(t, &k);
		assert_non_null(e[i]);
		e[i]->datagrams = 1;
	}
	count_fn_n = 0;
	nm_exp_foreach(t, count_fn, NULL);
	assert_int_equal(count_fn_n, 3);
	e[0]->gen++; /* as entry_free_rcu while it zeroes the slot */
	count_fn_n = 0;
	nm_exp_foreach(t, count_fn, NULL);
	assert_int_equal(count_fn_n, 2);
	e[0]->gen++;
	(void)nm_exp_expire(t, 10, 1024);
	e[0]->datagrams++;
	e[2]->datagrams++;
	assert_int_equal(nm_exp_expire(t, 11, 1024), 1); /* e[1] */
	count_fn_n = 0;
	nm_exp_foreach(t, count_fn, NULL);
	assert_int_equal(count_fn_n, 2);
	nm_exp_free(t);
	rcu_unregister_thread();
}

/*
 * The decoder's memo of the entry of its last datagram (nm_exp_account_memo) is a hint: a run of
 * one exporter's datagrams is counted on its entry through it; after the entry expires (before
 * its grace period, the slot not recycled) the next datagram makes a new entry instead of
 * counting on the dead one; after the old slot is recycled for another exporter, the memo does
 * not reach that stranger's entry.
 */
static void
test_account_memo(void **state)
{
	struct nm_exp_params p = {.max_exporters = 2, .exporter_timeout_s = 1};
	struct nm_exp_key k = key4(192, 0, 2, 1, NM_FLOW_NF5), ks = key4(10, 9, 9, 9, NM_FLOW_NF5);
	struct nm_exp_entry *e0, *e1, *stranger;
	struct fixture *f;
	uint8_t buf[24 + 48 * 2];
	size_t len = nf5(buf, 2, 0, 0);
	unsigned int i;

	(void)state;
	rcu_register_thread();
	f = fixture_new(&p);
	k.domain = 0x0102;
	for (i = 0; i < 5; i++) {
		be32(buf + 16, 2 * i);
		assert_int_equal(feed(f, buf, len), 2);
	}
	e0 = nm_exp_find(f->d.exp, &k);
	assert_non_null(e0);
	assert_ptr_equal(f->d.exp_memo.e, e0);
	assert_int_equal(e0->datagrams, 5);
	assert_int_equal(e0->records, 10);
	assert_int_equal(e0->seq_lost, 0);
	/* Expired (idle since 100): dead, still in the pool, not yet recycled. */
	assert_int_equal(nm_exp_expire(f->d.exp, 100, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 102, 1024), 1);
	assert_null(nm_exp_find(f->d.exp, &k));
	assert_int_equal(feed(f, buf, len), 2);
	e1 = nm_exp_find(f->d.exp, &k);
	assert_non_null(e1);
	assert_ptr_not_equal(e1, e0);
	assert_int_equal(e1->datagrams, 1);
	assert_int_equal(e0->datagrams, 5); /* nothing more on the dead entry */
	assert_ptr_equal(f->d.exp_memo.e, e1);
	/* e1 expires too; after the grace period a stranger takes a recycled slot. */
	assert_int_equal(nm_exp_expire(f->d.exp, 103, 1024), 0);
	assert_int_equal(nm_exp_expire(f->d.exp, 105, 1024), 1);
	settle();
	stranger = nm_exp_get(f->d.exp, &ks);
	assert_non_null(stranger);
	assert_true(stranger == e0 || stranger == e1);
	assert_int_equal(stranger->datagrams, 0);
	/* The memo still names e1 (maybe the stranger's slot now): the exporter gets the other. */
	assert_int_equal(feed(f, buf, len), 2);
	assert_int_equal(stranger->datagrams, 0);
	assert_int_equal(stranger->records, 0);
	e1 = nm_exp_find(f->d.exp, &k);
	assert_non_null(e1);
	assert_ptr_not_equal(e1, stranger);
	assert_int_equal(e1->datagrams, 1);
	assert_int_equal(e1->records, 2);
	fixture_free(f);
	rcu_unregister_thread();
}

/*
 * Every decoder's whole-datagram rejects (bad version, length, count) make no entry: 100
 * strangers sending each kind leave the table empty, counted in rejected_unknown or not
 * accounted at all (not recognised as any protocol).
 */
static void
test_rejected_no_entry_all(void **state)
{
	struct nm_exp_params p = {.max_exporters = 4};
	struct {
		const char *what;
		uint8_t b[64];
		size_t len;
		unsigned int rejected; /* rejected_unknown: 0 when not recognised as a protocol */
	} c[] = {
		{"nf5 truncated header", {0, 5, 0, 1}, 10, 0},
		{"nf5 count 0", {0, 5, 0, 0}, 24, 100},
		{"nf5 count 31", {0, 5, 0, 31}, 64, 100},
		{"nf9 truncated header", {0, 9, 0, 1}, 12, 0},
		{"nf9 flowset length 2", {0, 9, 0, 1, [20] = 1, 0, 0, 2}, 24, 100},
		{"nf9 flowset past the end", {0, 9, 0, 1, [20] = 1, 0, 0, 200}, 40, 100},
		{"ipfix truncated header", {0, 10, 0, 16}, 12, 0},
		{"ipfix length field too long", {0, 10, 0, 60}, 40, 100},
		{"ipfix length field too short", {0, 10, 0, 8}, 40, 100},
		{"ipfix set length 2", {0, 10, 0, 24, [16] = 1, 0, 0, 2}, 24, 100},
		{"sflow truncated header", {0, 0, 0, 5, 0, 0, 0, 1}, 20, 100},
		{"sflow bad agent type", {0, 0, 0, 5, 0, 0, 0, 3}, 40, 100},
		{"sflow 1000 samples, none there",
		 {0, 0, 0, 5, 0, 0, 0, 1, [24] = 0, 0, 3, 0xe8},
		 28,
		 100},
		{"version 7", {0, 7, 0, 1}, 40, 0},
	};
	struct nm_exp_stats st;
	struct fixture *f;
	unsigned int i, j;
	uint64_t rej = 0;

	(void)state;
	rcu_register_thread();
	f = fixture_new2(&p, 1);
	for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		for (j = 0; j < 100; j++) {
			nm_addr_from_v4(f->meta.exporter,
					(const uint8_t[]){203, 0, (uint8_t)i, (uint8_t)j});
			if (feed(f, c[i].b, c[i].len) >= 0)
				fail_msg("%s: accepted", c[i].what);
		}
		nm_exp_get_stats(f->d.exp, &st);
		print_message("%-32s rejected_unknown +%llu\n", c[i].what,
			      (unsigned long long)(st.rejected_unknown - rej));
		if (st.rejected_unknown - rej != c[i].rejected)
			fail_msg("%s: rejected_unknown +%llu, expected +%u", c[i].what,
				 (unsigned long long)(st.rejected_unknown - rej), c[i].rejected);
		rej = st.rejected_unknown;
		if (st.exporters != 0 || st.exporters_overflow != 0)
			fail_msg("%s: %llu entries made", c[i].what,
				 (unsigned long long)st.exporters);
	}
	fixture_free(f);
	rcu_unregister_thread();
}

/* The shipped netmeta.ini loads, and its commented example, uncommented, does too. */
static void
test_config_example(void **state)
{
	struct nm_config *c = calloc(1, sizeof(*c));
	char path[1024], err[1024], line[1024], *text;
	size_t used = 0, cap = 1 << 16;
	int in_example = 0;
	FILE *fp;

	(void)state;
	snprintf(path, sizeof(path), "%s/netmeta.ini", NM_SOURCE_ROOT);
	fp = fopen(path, "r");
	assert_non_null(fp);
	text = calloc(1, cap);
	while (fgets(line, sizeof(line), fp) != NULL) {
		const char *l = line;

		if (strncmp(line, ";[exporter.", 11) == 0)
			in_example = 1;
		if (in_example && line[0] == ';' && line[1] != ' ')
			l = line + 1; /* uncomment the example */
		used += (size_t)snprintf(text + used, cap - used, "%s", l);
	}
	fclose(fp);
	assert_true(in_example);
	assert_int_equal(load_text(c, text, err, sizeof(err)), 0);
	assert_int_equal(c->n_exporters, 2);
	assert_int_equal(c->exporters[0].sampling_rate, 1000);
	assert_true(c->n_ifnames >= 3);
	free(text);
	free(c);
}

/* Reload: versions published while a reader decodes (the RX lcore's view). */
struct pub_reader {
	struct fixture *f;
	uint8_t addr[16];
	volatile int stop;
	uint64_t datagrams, inconsistent, went_back, distinct;
	uint64_t last_rate;
	char why[160];
};

static void *
pub_reader_main(void *arg)
{
	struct pub_reader *r = arg;
	uint8_t buf[24 + 48 * 3];
	size_t len = nf5(buf, 3, 0, 0);

	rcu_register_thread();
	while (!r->stop) {
		const struct nm_exp_conf *c;
		struct nm_exp_configured cf;
		const char *ifn;
		char want[64];
		uint64_t before = r->f->rate_sum;

		/* Every record of one datagram has the rate of one version. */
		(void)feed(r->f, buf, len);
		if (r->f->rate_sum - before != 3 * r->f->last_rate) {
			r->inconsistent++;
			snprintf(r->why, sizeof(r->why),
				 "datagram rates sum %" PRIu64 ", last %" PRIu64,
				 r->f->rate_sum - before, r->f->last_rate);
		}
		if (r->f->last_rate < r->last_rate)
			r->went_back++;
		if (r->f->last_rate != r->last_rate)
			r->distinct++;
		r->last_rate = r->f->last_rate;
		/* Name, description and interface name of one version agree with its rate. */
		c = nm_exp_conf_current(r->f->d.exp);
		if (nm_exp_configured(c, r->addr, &cf) == 1) {
			snprintf(want, sizeof(want), "v%" PRIu64, cf.rate);
			ifn = nm_exp_ifname(c, r->addr, 7);
			if (strcmp(cf.name, want) != 0 || cf.description[0] != 'd' ||
			    strcmp(cf.description + 1, want + 1) != 0 || ifn == NULL ||
			    strcmp(ifn + 2, want + 1) != 0 ||
			    nm_exp_conf_version(c) * 10 != cf.rate) {
				r->inconsistent++;
				snprintf(r->why, sizeof(r->why),
					 "rate %" PRIu64 " name %.20s ifname %.20s", cf.rate,
					 cf.name, ifn != NULL ? ifn : "(none)");
			}
		}
		r->datagrams++;
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static void
test_publish(void **state)
{
	struct nm_exp_params p = {.max_overrides = 4, .max_ifnames = 8};
	struct pub_reader *r = calloc(1, sizeof(*r));
	struct nm_exp_stats st;
	struct nm_exp_conf *c;
	pthread_t th;
	uint64_t v;
	char name[32], descr[32], ifn[32];

	(void)state;
	assert_non_null(r);
	rcu_register_thread();
	r->f = fixture_new(&p);
	memcpy(r->addr, r->f->meta.exporter, 16);
	/* Capacities hold for each version. */
	c = nm_exp_conf_create(1, 1, 1);
	assert_int_equal(nm_exp_conf_add(c, r->addr, 10, "v10", "d10"), 0);
	assert_int_equal(nm_exp_conf_add(c, r->addr, 20, "x", NULL), -EEXIST);
	assert_int_equal(nm_exp_conf_ifname(c, r->addr, 7, "if10"), 0);
	assert_int_equal(nm_exp_conf_ifname(c, r->addr, 7, "if10"), -EEXIST);
	assert_int_equal(nm_exp_conf_ifname(c, r->addr, 8, "if10"), -ENOSPC);
	nm_exp_publish(r->f->d.exp, c);
	assert_int_equal(pthread_create(&th, NULL, pub_reader_main, r), 0);
	for (v = 2; v <= 400; v++) {
		c = nm_exp_conf_create(p.max_overrides, p.max_ifnames, v);
		assert_non_null(c);
		snprintf(name, sizeof(name), "v%" PRIu64, v * 10);
		snprintf(descr, sizeof(descr), "d%" PRIu64, v * 10);
		snprintf(ifn, sizeof(ifn), "if%" PRIu64, v * 10);
		assert_int_equal(nm_exp_conf_add(c, r->addr, v * 10, name, descr), 0);
		assert_int_equal(nm_exp_conf_ifname(c, r->addr, 7, ifn), 0);
		nm_exp_publish(r->f->d.exp, c);
		if (v % 50 == 0)
			usleep(2000); /* let the reader decode a few datagrams per version */
	}
	r->stop = 1;
	pthread_join(th, NULL);
	printf("reader: %" PRIu64 " datagrams, %" PRIu64 " rate changes seen, last rate %" PRIu64
	       "\n",
	       r->datagrams, r->distinct, r->last_rate);
	assert_true(r->inconsistent == 0 || (printf("%s\n", r->why), 0));
	assert_int_equal(r->went_back, 0);
	assert_true(r->distinct >= 2);
	assert_int_equal(nm_exp_override(r->f->d.exp, r->addr), 4000);
	assert_int_equal(nm_exp_conf_version(nm_exp_conf_current(r->f->d.exp)), 400);
	nm_exp_get_stats(r->f->d.exp, &st);
	assert_int_equal(st.configured, 1);
	/* A version with no exporter: the override is gone for the next datagram. */
	nm_exp_publish(r->f->d.exp, nm_exp_conf_create(4, 8, 401));
	assert_int_equal(nm_exp_override(r->f->d.exp, r->addr), 0);
	nm_exp_get_stats(r->f->d.exp, &st);
	assert_int_equal(st.configured, 0);
	fixture_free(r->f);
	rcu_unregister_thread();
	free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nf5_sequence),
		cmocka_unit_test(test_override),
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_overflow),
		cmocka_unit_test(test_two_writers),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_interfaces),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_sflow_agent),
		cmocka_unit_test(test_sflow_agent_bound),
		cmocka_unit_test(test_allow),
		cmocka_unit_test(test_refused_top),
		cmocka_unit_test(test_rejected_no_entry),
		cmocka_unit_test(test_config_example),
		cmocka_unit_test(test_expire_reuse),
		cmocka_unit_test(test_expire_templates),
		cmocka_unit_test(test_expire_flood),
		cmocka_unit_test(test_expire_walker),
		cmocka_unit_test(test_expire_gen),
		cmocka_unit_test(test_account_memo),
		cmocka_unit_test(test_expire_interfaces),
		cmocka_unit_test(test_expire_agent_binding),
		cmocka_unit_test(test_rejected_no_entry_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
