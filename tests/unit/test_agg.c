/* SPDX-License-Identifier: BSD-3-Clause */
/* Aggregation table: merging, exact totals under overflow, reuse after drain. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <cmocka.h>

#include <urcu-qsbr.h>

#include "agg/agg.h"

struct totals {
	uint64_t rows, bytes, packets, flows;
	uint64_t max_bytes_row;
};

static void
visit(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct totals *t = ctx;

	t->rows++;
	t->bytes += rec->bytes;
	t->packets += rec->packets;
	t->flows += flows;
	if (rec->bytes > t->max_bytes_row)
		t->max_bytes_row = rec->bytes;
}

static void
make(struct nm_flow_rec *r, uint32_t src, uint16_t port, uint64_t sec)
{
	memset(r, 0, sizeof(*r));
	r->key.time_received = sec;
	r->key.src_addr[10] = r->key.src_addr[11] = 0xff;
	memcpy(r->key.src_addr + 12, &src, 4);
	r->key.src_port = port;
	r->key.proto = 6;
	r->key.in_if = 1;
	r->key.sampling_rate = 1;
	r->bytes = 100;
	r->packets = 1;
}

static void
test_merge(void **state)
{
	struct nm_agg_params p = {.max_flows = 1024};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct nm_agg_stats st = {0};
	struct totals tot = {0};
	struct nm_flow_rec r;

	(void)state;
	assert_non_null(t);
	make(&r, 1, 80, 100);
	assert_int_equal(nm_agg_add(t, &r), 1);
	assert_int_equal(nm_agg_add(t, &r), 0);
	assert_int_equal(nm_agg_add(t, &r), 0);
	make(&r, 1, 81, 100); /* another port: another key */
	assert_int_equal(nm_agg_add(t, &r), 1);
	make(&r, 1, 80, 101); /* another second: another key */
	assert_int_equal(nm_agg_add(t, &r), 1);
	assert_int_equal(nm_agg_count(t), 3);
	assert_int_equal(nm_agg_drain(t, visit, &tot), 3);
	assert_int_equal(tot.rows, 3);
	assert_int_equal(tot.bytes, 500);
	assert_int_equal(tot.packets, 5);
	assert_int_equal(tot.flows, 5);
	assert_int_equal(tot.max_bytes_row, 300);
	assert_int_equal(nm_agg_count(t), 0);
	/* Reused after drain: the same key is new again. */
	make(&r, 1, 80, 100);
	assert_int_equal(nm_agg_add(t, &r), 1);
	nm_agg_get_stats(t, &st);
	assert_int_equal(st.records, 6);
	assert_int_equal(st.merged, 2);
	nm_agg_table_free(t);
}

/* A random-source flood larger than the table keeps exact totals through folding. */
static void
test_overflow_exact(void **state)
{
	struct nm_agg_params p = {.max_flows = 1000};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct nm_agg_stats st = {0};
	struct totals tot = {0};
	struct nm_flow_rec r;
	uint64_t bytes = 0;
	uint32_t x = 12345;
	int i;

	(void)state;
	for (i = 0; i < 50000; i++) {
		x = x * 1103515245u + 12345u;
		make(&r, x, (uint16_t)(x >> 16), 200);
		r.bytes = 1 + (x % 1500);
		bytes += r.bytes;
		assert_true(nm_agg_add(t, &r) >= 0);
	}
	nm_agg_get_stats(t, &st);
	assert_true(st.folded > 40000);
	assert_int_equal(st.dropped, 0);
	assert_true(nm_agg_count(t) <= 1000 + 1000 / 64 + 16);
	nm_agg_drain(t, visit, &tot);
	assert_int_equal(tot.bytes, bytes);
	assert_int_equal(tot.packets, 50000);
	assert_int_equal(tot.flows, 50000);
	nm_agg_table_free(t);
}

/* Overflow keys are per second/exporter/interface/protocol; when even those run out, drops count.
 */
static void
test_overflow_drop_counted(void **state)
{
	struct nm_agg_params p = {.max_flows = 16};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct nm_agg_stats st = {0};
	struct nm_flow_rec r;
	int i, dropped = 0;

	(void)state;
	for (i = 0; i < 200; i++) {
		make(&r, (uint32_t)i, 1, 300);
		r.key.in_if = (uint32_t)i; /* every record its own overflow key too */
		if (nm_agg_add(t, &r) == -ENOSPC)
			dropped++;
	}
	nm_agg_get_stats(t, &st);
	assert_true(dropped > 0);
	assert_int_equal(st.dropped, (uint64_t)dropped);
	assert_int_equal(st.dropped_bytes, (uint64_t)dropped * 100);
	nm_agg_table_free(t);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A big table (the default 262144 flows) holding few entries drains in time proportional to the
 * entries, is empty afterwards and fills again with the same keys as new entries. Walking the
 * cds_lfht instead cost ~300 ms per drain here (every bucket node, in split order); five drains
 * must take far less than one such walk.
 */
static void
test_drain_big_table(void **state)
{
	struct nm_agg_params p = {.max_flows = 262144};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct nm_flow_rec r;
	double spent = 0;
	int round;
	uint32_t i;

	(void)state;
	assert_non_null(t);
	for (round = 0; round < 5; round++) {
		struct totals tot = {0};
		double t0;

		for (i = 0; i < 1024; i++) {
			make(&r, i, 80, 1700000000 + (uint64_t)round);
			assert_int_equal(nm_agg_add(t, &r),
					 1); /* new: the drain emptied the table */
			assert_int_equal(nm_agg_add(t, &r), 0);
		}
		assert_int_equal(nm_agg_count(t), 1024);
		t0 = now_s();
		assert_int_equal(nm_agg_drain(t, visit, &tot), 1024);
		spent += now_s() - t0;
		assert_int_equal(tot.rows, 1024);
		assert_int_equal(tot.packets, 2048);
		assert_int_equal(tot.flows, 2048);
		assert_int_equal(nm_agg_count(t), 0);
	}
	assert_true(spent < 0.1);
	nm_agg_table_free(t);
}

static void
test_bad_params(void **state)
{
	struct nm_agg_params p = {.max_flows = 0};

	(void)state;
	assert_null(nm_agg_table_create(&p));
	assert_int_equal(errno, EINVAL);
	assert_null(nm_agg_table_create(NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_overflow_exact),
		cmocka_unit_test(test_overflow_drop_counted),
		cmocka_unit_test(test_drain_big_table),
		cmocka_unit_test(test_bad_params),
	};
	int ret;

	rcu_register_thread();
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	rcu_unregister_thread();
	return ret;
}
