/* SPDX-License-Identifier: BSD-3-Clause */
/* Template cache: publish/replace/withdraw, bounds, rates, held sets, racing writers and readers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <pthread.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <urcu-qsbr.h>

#include "decode/decode.h"
#include "exporter/exporter.h"
#include "tmpl/tmpl.h"

/*
 * Allocation and lock spies. This executable's malloc family and pthread_mutex_lock() take the
 * place of libc's for the whole process (the library is linked in statically), count calls made
 * by this thread while `spying` is set, and forward to libc. The cost contracts of tmpl.h are
 * checked with them, not only with the cache's own counters.
 */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t a, size_t n);

static __thread int spying;
static __thread unsigned long n_allocs, n_locks;

void *
malloc(size_t n)
{
	n_allocs += spying;
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t m)
{
	n_allocs += spying;
	return __libc_calloc(n, m);
}

void *
realloc(void *p, size_t n)
{
	n_allocs += spying;
	return __libc_realloc(p, n);
}

void *
aligned_alloc(size_t a, size_t n)
{
	n_allocs += spying;
	return __libc_memalign(a, n);
}

int
posix_memalign(void **p, size_t a, size_t n)
{
	n_allocs += spying;
	*p = __libc_memalign(a, n);
	return *p == NULL ? ENOMEM : 0;
}

int
pthread_mutex_lock(pthread_mutex_t *m)
{
	static int (*real)(pthread_mutex_t *);

	if (real == NULL)
		real = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
	n_locks += spying;
	return real(m);
}

static void
spy_start(void)
{
	n_allocs = n_locks = 0;
	spying = 1;
}

static void
spy_stop(void)
{
	spying = 0;
}

static struct nm_tmpl_key
key(uint8_t exp, uint32_t domain, uint16_t id)
{
	struct nm_tmpl_key k;

	memset(&k, 0, sizeof(k));
	k.exporter[10] = 0xff;
	k.exporter[11] = 0xff;
	k.exporter[15] = exp;
	k.domain = domain;
	k.id = id;
	k.proto = NM_TMPL_IPFIX;
	return k;
}

/* Room for one template being built (nm_tmpl_publish() copies it). */
struct tbuf {
	uint64_t w[(NM_TMPL_MAX_SIZE + 7) / 8];
};

/* A template whose n fields all say n (readers check that every field agrees), built in b. */
static struct nm_tmpl *
make_in(struct tbuf *b, struct nm_tmpl_key k, unsigned int n)
{
	struct nm_tmpl *t = nm_tmpl_init(b->w, sizeof(b->w), n, n);

	assert_non_null(t);
	t->key = k;
	t->n_fields = (uint16_t)n;
	t->n_steps = (uint16_t)n;
	t->min_len = (uint16_t)n;
	for (unsigned int i = 0; i < n; i++) {
		t->fields[i].ie = (uint16_t)n;
		t->fields[i].len = 1;
		t->steps[i].len = (uint16_t)n;
	}
	return t;
}

/* The same in a buffer of the main thread (one template at a time). */
static struct nm_tmpl *
make(struct nm_tmpl_key k, unsigned int n)
{
	static struct tbuf b;

	return make_in(&b, k, n);
}

static void
test_publish(void **state)
{
	struct nm_tmpl_params p = {
		.max_templates_per_exporter = 3, .max_templates = 4, .max_exporters = 2};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_cache_stats st;
	struct nm_tmpl_key k = key(1, 0, 256);
	const struct nm_tmpl *t;

	(void)state;
	assert_null(nm_tmpl_lookup(c, &k));
	assert_int_equal(nm_tmpl_publish(c, make(k, 2), 0), 1);
	assert_int_equal(nm_tmpl_lookup(c, &k)->n_fields, 2);
	assert_int_equal(nm_tmpl_publish(c, make(k, 2), 0), 0); /* refresh */
	assert_int_equal(nm_tmpl_publish(c, make(k, 5), 0), 1); /* new layout */
	t = nm_tmpl_lookup(c, &k);
	assert_int_equal(t->n_fields, 5);
	rcu_quiescent_state();
	/*
	 * v9 and IPFIX, domains, exporters are distinct keys; each (address, domain, protocol) is
	 * an exporter of lib/exporter's table, which holds its template count.
	 */
	k.proto = NM_TMPL_NF9;
	assert_null(nm_tmpl_lookup(c, &k));
	assert_int_equal(nm_tmpl_publish(c, make(k, 1), 0), 1);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 0, 257), 1), 0), 1);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 0, 258), 1), 0), 1);
	/* Per-exporter bound (3 for (1, 0, IPFIX)), the exporter table (2), the total (4). */
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 0, 259), 1), 0), -ENOSPC);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 1, 256), 1), 0), -ENOSPC);
	assert_int_equal(nm_tmpl_withdraw(c, &k), 1);
	assert_int_equal(nm_tmpl_withdraw(c, &k), 0);
	k.id = 257;
	assert_int_equal(nm_tmpl_publish(c, make(k, 1), 0), 1);
	k.id = 258;
	assert_int_equal(nm_tmpl_publish(c, make(k, 1), 0), -ENOSPC);
	assert_int_equal(nm_tmpl_withdraw_all(c, key(1, 0, 0).exporter, 0, NM_TMPL_IPFIX, 0), 3);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.templates, 1);
	assert_int_equal(st.exporters, 1); /* exporters holding templates now */
	assert_int_equal(st.refreshed, 1);
	assert_int_equal(st.refused_exporter, 1);
	assert_int_equal(st.refused_total, 1);
	assert_int_equal(st.refused_exporters, 1);
	assert_int_equal(st.withdrawn, 4);
	/* The withdrawn slots are reused after a grace period: the pool does not grow. */
	{
		uint64_t bytes = st.pool_bytes;

		rcu_thread_offline();
		rcu_barrier();
		rcu_thread_online();
		assert_int_equal(nm_tmpl_publish(c, make(key(1, 0, 300), 1), 0), 1);
		nm_tmpl_cache_get_stats(c, &st);
		assert_int_equal(st.pool_bytes, bytes);
	}
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

/*
 * A withdraw-all costs a walk of its own (exporter, domain)'s templates, not of the cache: with
 * 4,000 exporters of 8 templates each, 10,000 withdraw-all records of one exporter look at that
 * exporter's 8 templates once (then at none), and every other exporter keeps its templates.
 * The whole-table walk it replaces looked at 32,000 templates per record (3.2e8 here).
 */
static void
test_withdraw_cost(void **state)
{
	struct nm_tmpl_params p = {
		.max_templates_per_exporter = 16, .max_templates = 65536, .max_exporters = 8192};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_cache_stats st;
	struct nm_tmpl_key k;
	unsigned int e, i;
	struct timespec t0, t1;

	(void)state;
	assert_non_null(c);
	for (e = 0; e < 4000; e++)
		for (i = 0; i < 8; i++) {
			struct nm_tmpl *t;

			k = key(0, 0, (uint16_t)(256 + i));
			k.exporter[14] = (uint8_t)(e >> 8);
			k.exporter[15] = (uint8_t)e;
			t = make(k, 1 + i % 3);
			t->is_options = i >= 6; /* 2 options templates each */
			assert_int_equal(nm_tmpl_publish(c, t, 0), 1);
		}
	rcu_quiescent_state();
	k = key(0, 0, 0);
	k.exporter[14] = 0;
	k.exporter[15] = 7;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 0, NM_TMPL_IPFIX, 0), 6);
	for (i = 0; i < 10000; i++)
		assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 0, NM_TMPL_IPFIX, 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	nm_tmpl_cache_get_stats(c, &st);
	print_message(
		"10,001 withdraw-all over 32,000 templates: %llu templates visited, %.2f ms\n",
		(unsigned long long)st.withdraw_visited,
		(double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	assert_int_equal(st.withdrawn, 6);
	assert_int_equal(st.templates, 32000 - 6);
	/* 8 the first time, then the 2 options templates it keeps: the walk is per exporter. */
	assert_true(st.withdraw_visited <= 8 + 2 * 10000);
	/* The options ones go with an options withdraw-all; other domains/protocols untouched. */
	assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 1, NM_TMPL_IPFIX, 1), 0);
	assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 0, NM_TMPL_NF9, 1), 0);
	assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 0, NM_TMPL_IPFIX, 1), 2);
	/* A replaced template (new layout) stays listed: withdraw-all still finds it. */
	k.exporter[15] = 8;
	k.id = 256;
	assert_int_equal(nm_tmpl_publish(c, make(k, 7), 0), 1);
	assert_int_equal(nm_tmpl_withdraw_all(c, k.exporter, 0, NM_TMPL_IPFIX, 0), 6);
	assert_null(nm_tmpl_lookup(c, &k));
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.templates, 32000 - 14);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

static void
test_rates(void **state)
{
	struct nm_tmpl_params p = {.max_rates = 2};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_key k = key(1, 0, 0);

	(void)state;
	/* Rates count against the exporter entry its options template made: none, no rate. */
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 0, 100, 0), -ENOSPC);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 5, 256), 1), 0), 1);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 6, 256), 1), 0), 1);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 0), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 0, 100, 0), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 7, 200, 0), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 7, 300, 0), 0); /* replaced */
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 6, 0, 1, 0), -ENOSPC);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 0), 100);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 7), 300);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 6, 0), 0);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

/*
 * Per-(exporter, domain) rate cap: one exporter announcing 65,536 sampler ids keeps
 * max_rates_per_exporter of them, and a later exporter's rate still finds room.
 */
static void
test_rates_per_exporter(void **state)
{
	struct nm_tmpl_params p = {.max_rates = 1024, .max_rates_per_exporter = 16};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_cache_stats st;
	struct nm_tmpl_key a = key(1, 0, 256), b = key(2, 0, 256);
	unsigned int i, ok = 0;

	(void)state;
	assert_int_equal(nm_tmpl_publish(c, make(a, 1), 0), 1);
	assert_int_equal(nm_tmpl_publish(c, make(b, 1), 0), 1);
	for (i = 0; i < 65536; i++)
		ok += nm_tmpl_rate_set(c, a.exporter, 0, i, 1000 + i, 0) == 0;
	assert_int_equal(ok, 16);
	assert_int_equal(nm_tmpl_rate_set(c, b.exporter, 0, 1, 512, 0), 0);
	assert_int_equal(nm_tmpl_rate_lookup(c, b.exporter, 0, 1), 512);
	/* A rate already held changes in place: no new entry, no refusal. */
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 3, 7, 0), 0);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.rates, 17);
	assert_int_equal(st.rates_refused_exporter, 65536 - 16);
	assert_int_equal(st.rates_refused, 0);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

static void
test_pending(void **state)
{
	struct nm_tmpl_params p = {.max_pending = 5, .max_pending_per_domain = 2};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	static struct nm_tmpl_pending in, out[4];
	unsigned int i;

	(void)state;
	in.len = 3;
	in.key = key(1, 0, 300);
	for (i = 0; i < 3; i++) {
		in.data[0] = (uint8_t)i;
		assert_int_equal(nm_tmpl_pending_put(c, &in), i < 2 ? 0 : 1); /* 3rd evicts 1st */
	}
	in.key = key(2, 0, 300);
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	in.key = key(3, 0, 300);
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	in.key = key(4, 0, 300);
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	in.key = key(5, 0, 300);
	assert_int_equal(nm_tmpl_pending_put(c, &in), -ENOSPC); /* pool of 5 full */
	in.len = NM_TMPL_PENDING_MAX_LEN + 1;
	assert_int_equal(nm_tmpl_pending_put(c, &in), -EMSGSIZE);
	in.key = key(1, 0, 300);
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, 0, out, 4), 2);
	assert_int_equal(out[0].data[0], 1);
	assert_int_equal(out[1].data[0], 2);
	assert_int_equal(out[0].len, 3);
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, 0, out, 4), 0);
	nm_tmpl_cache_free(c);
}

/* Two writers replace the same templates with new layouts while two readers use them. */
struct race {
	struct nm_tmpl_cache *c;
	unsigned int seed;
	unsigned long lookups, bad;
	volatile int *stop;
};

static void *
writer(void *arg)
{
	struct race *r = arg;
	struct tbuf *b = malloc(sizeof(*b));

	rcu_register_thread();
	for (unsigned int i = 0; i < 20000; i++) {
		unsigned int n = 1 + (i * 7 + r->seed) % 40;

		(void)nm_tmpl_publish(r->c, make_in(b, key(1, 0, (uint16_t)(256 + i % 8)), n), 0);
		if (i % 97 == 0)
			(void)nm_tmpl_withdraw(r->c, &(struct nm_tmpl_key){0});
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	free(b);
	return NULL;
}

static void *
reader(void *arg)
{
	struct race *r = arg;

	rcu_register_thread();
	while (!*r->stop) {
		for (unsigned int id = 256; id < 264; id++) {
			struct nm_tmpl_key k = key(1, 0, (uint16_t)id);
			const struct nm_tmpl *t = nm_tmpl_lookup(r->c, &k);

			if (t == NULL)
				continue;
			r->lookups++;
			for (unsigned int i = 0; i < t->n_fields; i++)
				if (t->fields[i].ie != t->n_fields ||
				    t->steps[i].len != t->n_fields)
					r->bad++;
		}
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
	return NULL;
}

static void
test_race(void **state)
{
	struct nm_tmpl_params p = {0};
	volatile int stop = 0;
	struct race w[2], rd[2];
	pthread_t tw[2], tr[2];
	struct nm_tmpl_cache_stats st;
	unsigned int i;

	(void)state;
	memset(w, 0, sizeof(w));
	memset(rd, 0, sizeof(rd));
	w[0].c = w[1].c = rd[0].c = rd[1].c = nm_tmpl_cache_create(&p);
	rd[0].stop = rd[1].stop = &stop;
	w[1].seed = 3;
	/* This thread is a registered reader; it must not block grace periods while it waits. */
	rcu_thread_offline();
	for (i = 0; i < 2; i++) {
		pthread_create(&tr[i], NULL, reader, &rd[i]);
		pthread_create(&tw[i], NULL, writer, &w[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(tw[i], NULL);
	stop = 1;
	for (i = 0; i < 2; i++)
		pthread_join(tr[i], NULL);
	rcu_thread_online();
	nm_tmpl_cache_get_stats(w[0].c, &st);
	print_message("race: %lu lookups, %lu published, %lu refreshed\n",
		      rd[0].lookups + rd[1].lookups, (unsigned long)st.published,
		      (unsigned long)st.refreshed);
	assert_int_equal(rd[0].bad + rd[1].bad, 0);
	assert_true(rd[0].lookups + rd[1].lookups > 0);
	assert_int_equal(st.templates, 8);
	nm_tmpl_cache_free(w[0].c);
}

/*
 * An IPFIX message: one template set (id 256: octetDeltaCount, packetDeltaCount of `width`
 * bytes each, then 2 bytes of an element the engine does not map, so the template has fewer
 * steps than fields) and one data set of one record for it. Returns the length.
 */
static size_t
ipfix_msg(uint8_t *b, uint32_t seq, unsigned int width)
{
	size_t n = 0, tlen = 4 + 4 + 12, dlen = 4 + 2 * width + 2;
	unsigned int i;

#define P16(v) (b[n++] = (uint8_t)((v) >> 8), b[n++] = (uint8_t)(v))
#define P32(v) (P16((v) >> 16), P16(v))
	P16(10);
	P16(16 + tlen + dlen);
	P32(1700000000u);
	P32(seq);
	P32(7u); /* observation domain */
	P16(2);	 /* template set */
	P16(tlen);
	P16(256);
	P16(3);
	P16(1); /* octetDeltaCount */
	P16(width);
	P16(2); /* packetDeltaCount */
	P16(width);
	P16(4000); /* unassigned: skipped */
	P16(2);
	P16(256); /* data set */
	P16(dlen);
	for (i = 0; i < 2 * width + 2; i++)
		b[n++] = (uint8_t)(i == width - 1 ? 100 : i == 2 * width - 1 ? 2 : 0);
#undef P32
#undef P16
	return n;
}

struct count_sink {
	uint64_t records, bytes;
};

static void
count_flush(struct nm_rec_batch *b, void *ctx)
{
	struct count_sink *s = ctx;

	for (unsigned int i = 0; i < b->n; i++) {
		s->records++;
		s->bytes += b->recs[i].bytes;
	}
}

/*
 * The cost contracts of tmpl.h on the decoder's path: a template received again unchanged
 * allocates nothing, takes no lock and takes no pool slot; a changed template and a changed
 * sampling rate take the writer mutex but allocate nothing. The exporter table given to the cache
 * is the one owner of the exporter's state (its entry counts the templates and the datagrams).
 */
static void
test_refresh_cost(void **state)
{
	struct nm_exp_params ep = {.max_exporters = 16, .max_ifaces = 16};
	struct nm_exp_table *exp = nm_exp_create(&ep);
	struct nm_tmpl_params p = {.exp = exp};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	static struct nm_decoder d;
	struct nm_decode_stats ds;
	struct nm_flow_rec recs[4];
	struct count_sink sink = {0};
	struct nm_rec_batch b = {.recs = recs, .cap = 4, .flush = count_flush, .ctx = &sink};
	struct nm_dgram_meta meta = {.time_received = 1700000000};
	struct nm_tmpl_cache_stats s0, s1;
	uint8_t msg[256];
	size_t len;
	struct nm_exp_key ek;
	struct nm_exp_entry *e;

	(void)state;
	assert_non_null(exp);
	assert_non_null(c);
	memset(&ds, 0, sizeof(ds));
	memset(&d, 0, sizeof(d));
	d.stats = &ds;
	d.tmpl = c;
	d.exp = exp;
	d.default_sampling_rate = 1;
	nm_addr_from_v4(meta.exporter, (const uint8_t[]){192, 0, 2, 1});

	/* First sight: compiled and published (writer, one pool slot). */
	len = ipfix_msg(msg, 0, 4);
	assert_int_equal(nm_decode_datagram(&d, msg, len, &meta, &b), 1);
	nm_tmpl_cache_get_stats(c, &s0);
	assert_int_equal(s0.published, 1);
	assert_int_equal(s0.pool_takes, 1);
	assert_true(s0.writer_entries >= 1);

	/* The same template again, many times: reader work only. */
	spy_start();
	for (uint32_t i = 1; i <= 100; i++) {
		len = ipfix_msg(msg, i, 4);
		assert_int_equal(nm_decode_datagram(&d, msg, len, &meta, &b), 1);
	}
	spy_stop();
	nm_tmpl_cache_get_stats(c, &s1);
	print_message("100 unchanged refreshes: %lu allocations, %lu mutex locks\n", n_allocs,
		      n_locks);
	assert_int_equal(n_allocs, 0);
	assert_int_equal(n_locks, 0);
	assert_int_equal(s1.refreshed, 100);
	assert_int_equal(s1.published, 1);
	assert_int_equal(s1.pool_takes, s0.pool_takes);
	assert_int_equal(s1.writer_entries, s0.writer_entries);
	assert_int_equal(ds.templates, 101);

	/* A changed layout (8-byte counters): the writer path, still no allocation. */
	spy_start();
	len = ipfix_msg(msg, 101, 8);
	assert_int_equal(nm_decode_datagram(&d, msg, len, &meta, &b), 1);
	spy_stop();
	nm_tmpl_cache_get_stats(c, &s1);
	assert_int_equal(n_allocs, 0);
	assert_true(n_locks >= 1);
	assert_int_equal(s1.published, 2);
	assert_int_equal(s1.pool_takes, s0.pool_takes + 1);
	assert_int_equal(s1.writer_entries, s0.writer_entries + 1);
	nm_rec_batch_flush(&b);
	assert_int_equal(sink.records, 102);
	assert_int_equal(sink.bytes, 102 * 100);

	/* Sampling rates: new, unchanged (no lock), changed (lock, no allocation). */
	assert_int_equal(nm_tmpl_rate_set(c, meta.exporter, 7, 1, 100, 0), 0);
	spy_start();
	assert_int_equal(nm_tmpl_rate_set(c, meta.exporter, 7, 1, 100, 0), 0);
	spy_stop();
	assert_int_equal(n_allocs + n_locks, 0);
	spy_start();
	assert_int_equal(nm_tmpl_rate_set(c, meta.exporter, 7, 1, 1000, 0), 0);
	assert_int_equal(nm_tmpl_rate_set(c, meta.exporter, 7, 2, 10, 0), 0);
	spy_stop();
	assert_int_equal(n_allocs, 0);
	assert_int_equal(n_locks, 2);
	assert_int_equal(nm_tmpl_rate_lookup(c, meta.exporter, 7, 1), 1000);

	/* One owner: the exporter's entry holds its template count and its datagrams. */
	memset(&ek, 0, sizeof(ek));
	memcpy(ek.addr, meta.exporter, NM_ADDR_LEN);
	ek.domain = 7;
	ek.type = NM_FLOW_IPFIX;
	e = nm_exp_get(exp, &ek);
	assert_non_null(e);
	assert_int_equal(e->n_templates, 1);
	assert_int_equal(e->datagrams, 102);
	assert_int_equal(e->templates, 102);
	nm_tmpl_cache_free(c);
	nm_exp_free(exp);
}

/*
 * The counter table: every member of struct nm_tmpl_cache_stats is in the set (the struct is
 * generated from it, so the size must match), keys are unique, and the refusals and expiries
 * the views must show are there under the names telemetry and the summary use.
 */
static void
test_ctr_set(void **state)
{
	const struct nm_ctr_set *s = &nm_tmpl_ctr_set;
	static const char *const must[] = {
		"rates_refused",    "rates_refused_exporter", "rates_expired", "pending_evicted",
		"pending_expired",  "pending_refused",	      "expired",       "changed",
		"withdraw_visited", "refused_exporter",	      "refused_total", "refused_exporters",
		"refused_memory"};
	struct nm_tmpl_params p = {.max_rates_per_exporter = 1};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_key a = key(1, 0, 256);
	struct nm_tmpl_cache_stats st;
	unsigned int i, j;

	(void)state;
	assert_int_equal(s->n * sizeof(uint64_t), s->size);
	assert_string_equal(s->prefix, "tmpl_");
	for (i = 0; i < s->n; i++)
		for (j = i + 1; j < s->n; j++)
			assert_true(strcmp(s->desc[i].name, s->desc[j].name) != 0);
	for (i = 0; i < sizeof(must) / sizeof(must[0]); i++) {
		for (j = 0; j < s->n && strcmp(s->desc[j].name, must[i]) != 0; j++)
			;
		assert_true(j < s->n);
	}
	/* A refusal is seen through the set, as the views read it. */
	assert_int_equal(nm_tmpl_publish(c, make(a, 1), 5), 1);
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 1, 10, 5), 0);
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 2, 10, 5), -ENOSPC);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(nm_ctr_by_name(s, &st, "rates_refused_exporter"), 1);
	assert_int_equal(nm_ctr_by_name(s, &st, "templates"), 1);
	assert_int_equal(nm_ctr_by_name(s, &st, "rates"), 1);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

/* Let the call_rcu callbacks of removed templates and rates run (slots back in the pool). */
static void
grace(void)
{
	rcu_thread_offline();
	rcu_barrier();
	rcu_thread_online();
}

/*
 * Idle expiry of templates: only the ones not refreshed for template_timeout_s go, counted, and
 * their exporter's cap slot is free again; a refresh (reader path) keeps one alive; the sweep
 * visits at most budget entries per call and resumes; the clock is the data's (a sweep with a
 * wall clock far ahead of every time_received expires nothing the data has not aged).
 */
static void
test_expire_templates(void **state)
{
	struct nm_tmpl_params p = {.max_templates_per_exporter = 4, .template_timeout_s = 100};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_key k[4], fresh = key(1, 0, 999);
	struct nm_tmpl_cache_stats st;
	unsigned int i, n;

	(void)state;
	for (i = 0; i < 4; i++) {
		k[i] = key(1, 0, (uint16_t)(256 + i));
		assert_int_equal(nm_tmpl_publish(c, make(k[i], 2), 1000), 1);
	}
	assert_int_equal(nm_tmpl_publish(c, make(fresh, 2), 1000), -ENOSPC); /* cap of 4 */
	/* k[0] refreshed by the reader path, k[1] received again through publish (a race). */
	nm_tmpl_note_refresh(c, nm_tmpl_lookup(c, &k[0]), 1090);
	assert_int_equal(nm_tmpl_publish(c, make(k[1], 2), 1090), 0);
	/* Wall clock far ahead, data clock at 1090: nothing is 100 s idle by the data. */
	assert_int_equal(nm_tmpl_expire(c, 5000000000ULL, 1000), 0);
	assert_non_null(nm_tmpl_lookup(c, &k[2]));
	/* An RX lcore sees second 1100: k[2] and k[3] are 100 s idle. */
	nm_tmpl_note_refresh(c, nm_tmpl_lookup(c, &k[0]), 1100);
	/* Budget 1: one slot per call, so the four slots take four calls (the sweep resumes). */
	for (i = 0, n = 0; i < 4; i++)
		n += nm_tmpl_expire(c, 1100, 1);
	assert_int_equal(n, 2);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.expired, 2);
	assert_int_equal(st.withdrawn, 0);
	assert_int_equal(st.templates, 2);
	assert_int_equal(st.expire_visited, 4 + 4); /* one lap at 1090, four calls of one */
	assert_null(nm_tmpl_lookup(c, &k[2]));
	assert_null(nm_tmpl_lookup(c, &k[3]));
	assert_non_null(nm_tmpl_lookup(c, &k[0]));
	assert_non_null(nm_tmpl_lookup(c, &k[1]));
	/* The cap slots are free again. */
	rcu_quiescent_state();
	grace();
	assert_int_equal(nm_tmpl_publish(c, make(fresh, 2), 1100), 1);
	/* Everything idle: a whole pass removes all, then nothing is left to do. */
	nm_tmpl_note_refresh(c, nm_tmpl_lookup(c, &fresh), 1300);
	assert_int_equal(nm_tmpl_expire(c, 1300, 1000), 2); /* k[0], k[1]; fresh was refreshed */
	assert_int_equal(nm_tmpl_expire(c, 1300, 1000), 0);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.templates, 1);
	assert_int_equal(st.exporters, 1);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

/*
 * A sampler-id flood fills its exporter's rate cap; once it stops, its rates expire (counted),
 * the cap is free for its real rates, and a rate received again stays.
 */
static void
test_expire_rates(void **state)
{
	struct nm_tmpl_params p = {
		.max_rates = 64, .max_rates_per_exporter = 8, .template_timeout_s = 60};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_key a = key(1, 0, 256);
	struct nm_tmpl_cache_stats st;
	unsigned int i, ok = 0;

	(void)state;
	assert_int_equal(nm_tmpl_publish(c, make(a, 1), 100), 1);
	for (i = 0; i < 1000; i++)
		ok += nm_tmpl_rate_set(c, a.exporter, 0, i, 100 + i, 100) == 0;
	assert_int_equal(ok, 8);
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 5000, 42, 150), -ENOSPC);
	/* Sampler 3 keeps being announced (unchanged: the lock-free path), the rest stop. */
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 3, 103, 150), 0);
	nm_tmpl_note_refresh(c, nm_tmpl_lookup(c, &a), 160);
	assert_int_equal(nm_tmpl_expire(c, 160, 1000), 7);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.rates_expired, 7);
	assert_int_equal(st.rates, 1);
	assert_int_equal(nm_tmpl_rate_lookup(c, a.exporter, 0, 3), 103);
	assert_int_equal(nm_tmpl_rate_lookup(c, a.exporter, 0, 4), 0);
	/* After the grace period the entries are reused: the real exporter's rate fits. */
	rcu_quiescent_state();
	grace();
	assert_int_equal(nm_tmpl_rate_set(c, a.exporter, 0, 5000, 42, 160), 0);
	assert_int_equal(nm_tmpl_rate_lookup(c, a.exporter, 0, 5000), 42);
	for (i = 0, ok = 0; i < 1000; i++)
		ok += nm_tmpl_rate_set(c, a.exporter, 0, 10000 + i, 9, 160) == 0;
	assert_int_equal(ok, 6); /* 8 minus sampler 3 and 5000 */
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

/*
 * Held sets older than hold_s are never decoded: dropped when their template comes late, when
 * a newer set is put, or by the sweep; counted in pending_expired.
 */
static void
test_pending_expire(void **state)
{
	struct nm_tmpl_params p = {.max_pending = 8, .max_pending_per_domain = 4, .hold_s = 10};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	static struct nm_tmpl_pending in, out[4];
	struct nm_tmpl_cache_stats st;

	(void)state;
	in.len = 3;
	in.key = key(1, 0, 300);
	in.time_received = 1000;
	in.data[0] = 1;
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	in.time_received = 1005;
	in.data[0] = 2;
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	/* The template comes at 1011: the first set is 11 s old, the second 6 s. */
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, 1011, out, 4), 1);
	assert_int_equal(out[0].data[0], 2);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.pending_expired, 1);
	assert_int_equal(st.pending, 0);
	/* Put drops stale sets of any exporter on its way. */
	in.key = key(2, 0, 300);
	in.time_received = 1020;
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	in.key = key(3, 0, 300);
	in.time_received = 1031;
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.pending_expired, 2);
	assert_int_equal(st.pending, 1);
	/* The sweep drops the last one once the data clock (1031) is 11 s ahead of it: at 1042. */
	assert_int_equal(nm_tmpl_expire(c, 2000000000ULL, 16), 0);
	in.key = key(4, 0, 300);
	in.time_received = 1042;
	assert_int_equal(nm_tmpl_pending_put(c, &in), 0); /* drops key 3's on the way */
	in.time_received = 1053;
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, 1053, out, 4), 0);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.pending_expired, 4);
	assert_int_equal(st.pending, 0);
	nm_tmpl_cache_free(c);
}

/*
 * A layout change is counted every time and queued for the log once per key, however often
 * the exporter (or a spoofer) flips it; the queue is bounded and its overflow counted.
 */
static void
test_changed(void **state)
{
	struct nm_tmpl_params p = {.change_log = 2};
	struct nm_tmpl_cache *c = nm_tmpl_cache_create(&p);
	struct nm_tmpl_key a = key(1, 7, 256), b = key(2, 7, 300), d = key(3, 7, 301);
	struct nm_tmpl_change ch[4];
	struct nm_tmpl_cache_stats st;
	unsigned int i;

	(void)state;
	assert_int_equal(nm_tmpl_publish(c, make(a, 1), 10), 1);
	for (i = 0; i < 10; i++)
		assert_int_equal(nm_tmpl_publish(c, make(a, 2 + (i & 1)), 11 + i), 1);
	assert_int_equal(nm_tmpl_publish(c, make(a, 3), 30), 0); /* unchanged: a refresh */
	assert_int_equal(nm_tmpl_publish(c, make(b, 1), 30), 1);
	assert_int_equal(nm_tmpl_publish(c, make(b, 2), 31), 1);
	assert_int_equal(nm_tmpl_publish(c, make(d, 1), 30), 1);
	assert_int_equal(nm_tmpl_publish(c, make(d, 2), 31), 1); /* ring of 2 full */
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.changed, 12);
	assert_int_equal(st.changes_unlogged, 1);
	assert_int_equal(nm_tmpl_changes_take(c, ch, 4), 2);
	assert_memory_equal(&ch[0].key, &a, sizeof(a));
	assert_int_equal(ch[0].old_fields, 1);
	assert_int_equal(ch[0].new_fields, 2);
	assert_int_equal(ch[0].time_received, 11);
	assert_memory_equal(&ch[1].key, &b, sizeof(b));
	assert_int_equal(nm_tmpl_changes_take(c, ch, 4), 0);
	/* Once taken, a's later flips stay counted, not queued again. */
	assert_int_equal(nm_tmpl_publish(c, make(a, 1), 40), 1);
	assert_int_equal(nm_tmpl_changes_take(c, ch, 4), 0);
	rcu_quiescent_state();
	nm_tmpl_cache_free(c);
}

static int
setup_rcu(void **state)
{
	(void)state;
	rcu_register_thread();
	return 0;
}

static int
teardown_rcu(void **state)
{
	(void)state;
	rcu_unregister_thread();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_publish),
		cmocka_unit_test(test_withdraw_cost),
		cmocka_unit_test(test_rates_per_exporter),
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_race),
		cmocka_unit_test(test_refresh_cost),
		cmocka_unit_test(test_ctr_set),
		cmocka_unit_test(test_expire_templates),
		cmocka_unit_test(test_expire_rates),
		cmocka_unit_test(test_pending_expire),
		cmocka_unit_test(test_changed),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
