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

#include <urcu-qsbr.h>

#include "tmpl/tmpl.h"

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

/* A template whose n fields all say n (readers check that every field agrees). */
static struct nm_tmpl *
make(struct nm_tmpl_key k, unsigned int n)
{
	struct nm_tmpl *t = nm_tmpl_alloc(n, n);

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
	assert_int_equal(nm_tmpl_publish(c, make(k, 2)), 1);
	assert_int_equal(nm_tmpl_lookup(c, &k)->n_fields, 2);
	assert_int_equal(nm_tmpl_publish(c, make(k, 2)), 0); /* refresh */
	assert_int_equal(nm_tmpl_publish(c, make(k, 5)), 1); /* new layout */
	t = nm_tmpl_lookup(c, &k);
	assert_int_equal(t->n_fields, 5);
	rcu_quiescent_state();
	/* v9 and IPFIX, domains, exporters are distinct keys. */
	k.proto = NM_TMPL_NF9;
	assert_null(nm_tmpl_lookup(c, &k));
	assert_int_equal(nm_tmpl_publish(c, make(k, 1)), 1);
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 1, 256), 1)), 1);
	/* Per-exporter bound (3), then the total (4), then the exporter table (2). */
	assert_int_equal(nm_tmpl_publish(c, make(key(1, 1, 257), 1)), -ENOSPC);
	assert_int_equal(nm_tmpl_publish(c, make(key(2, 0, 256), 1)), 1);
	assert_int_equal(nm_tmpl_publish(c, make(key(2, 0, 257), 1)), -ENOSPC);
	assert_int_equal(nm_tmpl_withdraw(c, &k), 1);
	assert_int_equal(nm_tmpl_withdraw(c, &k), 0);
	assert_int_equal(nm_tmpl_publish(c, make(key(3, 0, 256), 1)), -ENOSPC);
	assert_int_equal(nm_tmpl_withdraw_all(c, key(1, 0, 0).exporter, 0, NM_TMPL_IPFIX, 0), 1);
	nm_tmpl_cache_get_stats(c, &st);
	assert_int_equal(st.templates, 2);
	assert_int_equal(st.refreshed, 1);
	assert_int_equal(st.refused_exporter, 1);
	assert_int_equal(st.refused_total, 1);
	assert_int_equal(st.refused_exporters, 1);
	assert_int_equal(st.withdrawn, 2);
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
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 0), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 0, 100), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 7, 200), 0);
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 5, 7, 300), 0); /* replaced */
	assert_int_equal(nm_tmpl_rate_set(c, k.exporter, 6, 0, 1), -ENOSPC);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 0), 100);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 5, 7), 300);
	assert_int_equal(nm_tmpl_rate_lookup(c, k.exporter, 6, 0), 0);
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
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, out, 4), 2);
	assert_int_equal(out[0].data[0], 1);
	assert_int_equal(out[1].data[0], 2);
	assert_int_equal(out[0].len, 3);
	assert_int_equal(nm_tmpl_pending_take(c, &in.key, out, 4), 0);
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

	rcu_register_thread();
	for (unsigned int i = 0; i < 20000; i++) {
		unsigned int n = 1 + (i * 7 + r->seed) % 40;

		(void)nm_tmpl_publish(r->c, make(key(1, 0, (uint16_t)(256 + i % 8)), n));
		if (i % 97 == 0)
			(void)nm_tmpl_withdraw(r->c, &(struct nm_tmpl_key){0});
		rcu_quiescent_state();
	}
	rcu_unregister_thread();
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
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_pending),
		cmocka_unit_test(test_race),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
