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
#ifdef __SSE4_2__
#include "../old_hash.h"
#endif

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

/* Keys of every shape come back from the compact form bit for bit. */
struct keep {
	struct nm_flow_rec recs[64];
	unsigned int n;
};

static void
visit_keep(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct keep *k = ctx;

	(void)flows;
	if (k->n < 64)
		k->recs[k->n] = *rec;
	k->n++;
}

static void
test_key_roundtrip(void **state)
{
	struct nm_agg_params p = {.max_flows = 1024};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	static struct nm_flow_rec in[64];
	static struct keep out;
	uint64_t x = 0x243f6a8885a308d3ULL;
	unsigned int i, j;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < 64; i++) {
		uint8_t *b = (uint8_t *)&in[i].key;

		memset(&in[i], 0, sizeof(in[i]));
		/* Random bytes in a random subset of the words, then address shapes. */
		for (j = 0; j < sizeof(in[i].key) - 5; j += 4) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			if (i == 1 || (x & 3) == 0)
				memcpy(b + j, &x, 4);
		}
		if (i % 4 == 1) {
			uint8_t v4[4] = {192, 0, 2, (uint8_t)i};

			nm_addr_from_v4(in[i].key.src_addr, v4);
			nm_addr_from_v4(in[i].key.next_hop, (uint8_t[4]){0, 0, 0, 0});
		}
		if (i % 4 == 2)
			memset(in[i].key.dst_addr, 0, NM_ADDR_LEN);
		if (i % 4 == 3)
			memset(in[i].key.sampler_addr, 0xff, NM_ADDR_LEN);
		in[i].key.time_received = 1000 + i; /* distinct keys */
		memset(in[i].key.pad_, 0, sizeof(in[i].key.pad_));
		in[i].bytes = i;
		in[i].packets = 1;
		assert_true(nm_agg_entry_bytes(&in[i].key) <= 24 + 8 + sizeof(in[i].key));
	}
	assert_int_equal(nm_agg_add_burst(t, in, 64), 64);
	assert_int_equal(nm_agg_add_burst(t, in, 64), 64); /* every one merges */
	assert_int_equal(nm_agg_count(t), 64);
	assert_int_equal(nm_agg_drain(t, visit_keep, &out), 64);
	for (i = 0; i < 64; i++) {
		assert_memory_equal(&out.recs[i].key, &in[i].key, sizeof(in[i].key));
		assert_int_equal(out.recs[i].bytes, 2 * i);
		assert_int_equal(out.recs[i].packets, 2);
	}
	nm_agg_table_free(t);
}

/* Random key shapes for the compact-form tests: words set at random density, address shapes. */
static uint64_t
xs64(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void
random_key(struct nm_flow_key *k, uint64_t *x)
{
	static const uint8_t v4w[4] = {0, 0, 0xff, 0xff};
	static const size_t addr_off[4] = {
		offsetof(struct nm_flow_key, sampler_addr),
		offsetof(struct nm_flow_key, src_addr),
		offsetof(struct nm_flow_key, dst_addr),
		offsetof(struct nm_flow_key, next_hop),
	};
	uint8_t *b = (uint8_t *)k;
	unsigned int density = (unsigned int)(xs64(x) % 9), j, a;

	memset(k, 0, sizeof(*k));
	for (j = 0; j + 4 <= sizeof(*k); j += 4) {
		uint64_t r = xs64(x);

		if (r % 8 >= density)
			continue;
		switch ((r >> 8) % 4) {
		case 0: /* one non-zero byte somewhere in the word */
			b[j + (r >> 16) % 4] = (uint8_t)(1 + (r >> 24) % 255);
			break;
		case 1: /* the IPv4-mapped word anywhere, not only in addresses */
			memcpy(b + j, v4w, 4);
			break;
		default:
			memcpy(b + j, &r, 4);
			break;
		}
	}
	/* Address shapes: IPv4-mapped (also ::ffff:0.0.0.0), near misses, zero, all ones. */
	for (a = 0; a < 4; a++) {
		uint8_t *p = b + addr_off[a];
		uint64_t r = xs64(x);

		switch (r % 6) {
		case 0:
			memset(p, 0, 10);
			p[10] = p[11] = 0xff;
			memcpy(p + 12, &r, (r >> 8) % 2 ? 4 : 0);
			break;
		case 1: /* ffff word, but a non-zero word before it */
			memset(p, 0, 12);
			p[(r >> 8) % 8] = 1;
			p[10] = p[11] = 0xff;
			break;
		case 2:
			memset(p, 0, 16);
			break;
		case 3:
			memset(p, 0xff, 16);
			break;
		default:
			break;
		}
	}
	memset(k->pad_, 0, sizeof(k->pad_));
}

/* The compact form as the first version of the table wrote it, one word at a time. */
static size_t
reference_compact(const struct nm_flow_key *k, uint8_t *out)
{
	static const uint8_t v4w[4] = {0, 0, 0xff, 0xff};
	static const unsigned int addr_unit[4] = {
		offsetof(struct nm_flow_key, sampler_addr) / 4,
		offsetof(struct nm_flow_key, src_addr) / 4,
		offsetof(struct nm_flow_key, dst_addr) / 4,
		offsetof(struct nm_flow_key, next_hop) / 4,
	};
	const uint8_t *u = (const uint8_t *)k;
	static const uint8_t zero4[4];
	uint64_t hdr = 0;
	size_t n = 8;
	unsigned int i, a;

	for (i = 0; i < sizeof(*k) / 4; i++)
		hdr |= (uint64_t)(memcmp(u + 4 * i, zero4, 4) != 0) << i;
	for (a = 0; a < 4; a++) {
		unsigned int w = addr_unit[a];

		if (memcmp(u + 4 * w, zero4, 4) == 0 && memcmp(u + 4 * w + 4, zero4, 4) == 0 &&
		    memcmp(u + 4 * w + 8, v4w, 4) == 0) {
			hdr &= ~(UINT64_C(1) << (w + 2));
			hdr |= UINT64_C(1) << (56 + a);
		}
	}
	memcpy(out, &hdr, 8);
	for (i = 0; i < sizeof(*k) / 4; i++)
		if (hdr >> i & 1) {
			memcpy(out + n, u + 4 * i, 4);
			n += 4;
		}
	return n;
}

/*
 * The vector encoder (AVX2 where built with it) against the plain reference, on 50,000 keys of
 * every shape: same bytes, same length, zeros after it as far as the hash reads (~10 ms).
 */
static void
test_compact_matches_reference(void **state)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL, ck[NM_AGG_CKEY_BUF / 8];
	uint8_t ref[NM_AGG_CKEY_BUF];
	struct nm_flow_key k;
	unsigned int i, lens[8] = {0};

	(void)state;
	for (i = 0; i < 50000; i++) {
		size_t len, rlen, j;

		random_key(&k, &x);
		if (i == 0)
			memset(&k, 0, sizeof(k));
		rlen = reference_compact(&k, ref);
		len = nm_agg_key_compact(&k, ck);
		assert_int_equal(len, rlen);
		assert_memory_equal(ck, ref, len);
		for (j = len; j < NM_AGG_CKEY_HASHED(len); j++)
			assert_int_equal(((const uint8_t *)ck)[j], 0);
		assert_int_equal(nm_agg_entry_bytes(&k), 24 + (len + 7) / 8 * 8);
		lens[len / 32]++;
	}
	/* The shapes cover every length class the hash and the compare treat apart. */
	for (i = 0; i < 7; i++)
		assert_true(lens[i] > 0);
}

struct keep_all {
	struct nm_flow_rec *recs;
	unsigned int n, cap;
};

static void
visit_all(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct keep_all *k = ctx;

	assert_true(k->n < k->cap);
	k->recs[k->n] = *rec;
	assert_int_equal(rec->packets, flows); /* one packet a record here */
	k->n++;
}

/*
 * Merging against a reference that groups keys with memcmp: 300 keys of every shape (and pairs
 * that differ in one word, at every place in the compact form, past 96 bytes too), 30,000
 * records in bursts of random length, every record counted once in the row of its own key.
 */
static void
test_merge_matches_reference(void **state)
{
	enum { NKEYS = 300, NRECS = 30000 };
	static struct nm_flow_rec keys[NKEYS], recs[NRECS], out[NKEYS];
	static uint64_t want_bytes[NKEYS], want_flows[NKEYS];
	struct nm_agg_params p = {.max_flows = 1024};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct keep_all got = {out, 0, NKEYS};
	uint64_t x = 0x2545f4914f6cdd1dULL;
	unsigned int i, j, distinct = 0;

	(void)state;
	assert_non_null(t);
	for (i = 0; i < NKEYS; i++) {
		if (i % 2 == 1) {
			/* One bit away from the key before it, at a random word. */
			uint8_t *b = (uint8_t *)&keys[i].key;

			keys[i] = keys[i - 1];
			b[xs64(&x) % (sizeof(keys[i].key) - 5)] ^= (uint8_t)(1u << (xs64(&x) % 8));
		} else {
			random_key(&keys[i].key, &x);
		}
	}
	/* Distinct keys only in the pool; the reference is then one row per pool key. */
	for (i = 0; i < NKEYS; i++)
		for (j = 0; j < i; j++)
			if (memcmp(&keys[i].key, &keys[j].key, sizeof(keys[i].key)) == 0)
				keys[i].key.time_received = 1000000 + i;
	for (i = 0; i < NRECS; i++) {
		unsigned int w = (unsigned int)(xs64(&x) % NKEYS);

		recs[i] = keys[w];
		recs[i].bytes = 1 + xs64(&x) % 1500;
		recs[i].packets = 1;
		want_bytes[w] += recs[i].bytes;
		want_flows[w]++;
	}
	for (i = 0; i < NRECS;) {
		unsigned int n = 1 + (unsigned int)(xs64(&x) % 100);

		n = n > NRECS - i ? NRECS - i : n;
		assert_int_equal(nm_agg_add_burst(t, recs + i, n), n);
		i += n;
	}
	for (i = 0; i < NKEYS; i++)
		distinct += want_flows[i] > 0;
	assert_int_equal(nm_agg_count(t), distinct);
	assert_int_equal(nm_agg_drain(t, visit_all, &got), distinct);
	assert_int_equal(got.n, distinct);
	for (i = 0; i < got.n; i++) {
		for (j = 0; j < NKEYS; j++)
			if (memcmp(&out[i].key, &keys[j].key, sizeof(keys[j].key)) == 0)
				break;
		assert_true(j < NKEYS);
		assert_int_equal(out[i].bytes, want_bytes[j]);
		assert_int_equal(out[i].packets, want_flows[j]);
		want_flows[j] = 0; /* one row per key */
	}
	nm_agg_table_free(t);
}

#ifdef __SSE4_2__
/*
 * The key hash before this table (tests/old_hash.h): CRC32C without its final inversion is
 * linear over GF(2), so a lane's state is an affine function of the words it reads; keys that
 * keep every lane's state have one hash value.
 *
 * What a sender could do to the old hash: the first 8 bytes of an IPv6 source address go through
 * one CRC lane, a linear map from 64 bits to 32, whose kernel has 32 dimensions or more. Source
 * addresses that differ by kernel vectors give distinct keys with one old hash value: 1,024 of
 * them all land in one bucket. Under the keyed hash they spread like random keys.
 */
static void
test_hash_collisions_spread(void **state)
{
	struct nm_flow_rec base, r;
	uint64_t w0, w, piv_x[32] = {0}, piv_c[32] = {0}, kern[64], h0, buckets[1024] = {0};
	uint64_t hashes[1024], l0[4], l1[4];
	unsigned int nk = 0, i, j, maxb = 0, distinct;
	struct nm_agg_params p = {.max_flows = 2048};
	struct nm_agg_table *t;

	(void)state;
	make(&base, 0, 443, 1700000000);
	memset(base.key.src_addr, 0x20, NM_ADDR_LEN); /* an IPv6 source */
	memcpy(&w0, base.key.src_addr, 8);
	old_hash_lanes(&base.key, l0);
	/* The lane's response to each bit of the word, then Gaussian elimination for the kernel. */
	for (i = 0; i < 64; i++) {
		uint64_t x, c = UINT64_C(1) << i;

		w = w0 ^ c;
		memcpy(base.key.src_addr, &w, 8);
		old_hash_lanes(&base.key, l1);
		x = l1[0] ^ l0[0];
		assert_true(l1[1] == l0[1] && l1[2] == l0[2] && l1[3] == l0[3]);
		for (j = 32; j-- > 0 && x != 0;) {
			if (!(x >> j & 1))
				continue;
			if (piv_x[j] == 0) {
				piv_x[j] = x;
				piv_c[j] = c;
				x = 0;
				c = 0;
				break;
			}
			x ^= piv_x[j];
			c ^= piv_c[j];
		}
		if (c != 0)
			kern[nk++] = c;
	}
	memcpy(base.key.src_addr, &w0, 8);
	assert_true(nk >= 32);
	h0 = old_hash(&base.key);
	t = nm_agg_table_create(&p);
	assert_non_null(t);
	for (i = 0; i < 1024; i++) {
		uint64_t d = 0;

		for (j = 0; j < 10; j++) /* combination number i of the first ten kernel vectors */
			if (i >> j & 1)
				d ^= kern[j];
		r = base;
		w = w0 ^ d;
		memcpy(r.key.src_addr, &w, 8);
		assert_true(old_hash(&r.key) == h0); /* one old hash value for all 1,024 keys */
		hashes[i] = nm_agg_key_hash(&r.key);
		if (++buckets[hashes[i] % 1024] > maxb)
			maxb = (unsigned int)buckets[hashes[i] % 1024];
		assert_int_equal(nm_agg_add(t, &r), 1); /* 1,024 distinct keys */
	}
	for (i = 0, distinct = 0; i < 1024; i++) {
		for (j = 0; j < i && hashes[j] != hashes[i]; j++)
			;
		distinct += j == i;
	}
	/* Random 64-bit values: all distinct; 1,024 balls in 1,024 bins: the fullest holds ~5. */
	assert_int_equal(distinct, 1024);
	assert_true(maxb <= 9);
	assert_int_equal(nm_agg_count(t), 1024);
	nm_agg_table_free(t);
}
#endif

/* The burst API and one record at a time give the same rows, counters and folding. */
static void
test_burst_same_as_single(void **state)
{
	struct nm_agg_params p = {.max_flows = 500};
	struct nm_agg_table *a = nm_agg_table_create(&p), *b = nm_agg_table_create(&p);
	struct nm_agg_stats sa = {0}, sb = {0};
	struct totals ta = {0}, tb = {0};
	static struct nm_flow_rec recs[3000];
	uint32_t x = 7;
	unsigned int i;

	(void)state;
	for (i = 0; i < 3000; i++) {
		x = x * 1103515245u + 12345u;
		make(&recs[i], x % 900, (uint16_t)(x % 3), 400); /* repeats and overflow */
		recs[i].bytes = 1 + x % 1000;
	}
	for (i = 0; i < 3000; i++)
		assert_true(nm_agg_add(a, &recs[i]) >= 0);
	for (i = 0; i < 3000; i += 100)
		assert_int_equal(nm_agg_add_burst(b, recs + i, 100), 100);
	nm_agg_get_stats(a, &sa);
	nm_agg_get_stats(b, &sb);
	assert_memory_equal(&sa, &sb, sizeof(sa));
	assert_true(sa.folded > 0);
	assert_int_equal(nm_agg_count(a), nm_agg_count(b));
	nm_agg_drain(a, visit, &ta);
	nm_agg_drain(b, visit, &tb);
	assert_memory_equal(&ta, &tb, sizeof(ta));
	assert_int_equal(ta.flows, 3000);
	nm_agg_table_free(a);
	nm_agg_table_free(b);
}

/* max_flows keys of export shape fit in NM_AGG_BYTES_PER_FLOW bytes each, index included. */
static void
test_memory_per_flow(void **state)
{
	struct nm_agg_params p = {.max_flows = 100000};
	struct nm_agg_table *t = nm_agg_table_create(&p);
	struct nm_agg_stats st = {0};
	struct nm_flow_rec r;
	uint32_t i;

	(void)state;
	assert_non_null(t);
	assert_true(nm_agg_mem_bytes(t) <= (size_t)NM_AGG_BYTES_PER_FLOW * p.max_flows);
	for (i = 0; i < p.max_flows; i++) {
		uint8_t v4[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};

		make(&r, i, (uint16_t)i, 1700000000);
		nm_addr_from_v4(r.key.sampler_addr, (uint8_t[4]){192, 0, 2, 1});
		nm_addr_from_v4(r.key.dst_addr, v4);
		r.key.time_flow_start = r.key.time_flow_end = 1700000000;
		r.key.out_if = 2;
		r.key.dst_port = 443;
		r.key.tcp_flags = 0x18;
		r.key.ip_tos = 1;
		r.key.sequence_num = i;
		r.key.observation_domain_id = 1;
		r.key.etype = 0x0800;
		r.key.type = NM_FLOW_IPFIX;
		assert_int_equal(nm_agg_add(t, &r), 1);
	}
	nm_agg_get_stats(t, &st);
	assert_int_equal(st.folded, 0);
	assert_int_equal(nm_agg_count(t), p.max_flows);
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
		cmocka_unit_test(test_key_roundtrip),
		cmocka_unit_test(test_compact_matches_reference),
		cmocka_unit_test(test_merge_matches_reference),
#ifdef __SSE4_2__
		cmocka_unit_test(test_hash_collisions_spread),
#endif
		cmocka_unit_test(test_burst_same_as_single),
		cmocka_unit_test(test_memory_per_flow),
		cmocka_unit_test(test_bad_params),
	};
	int ret;

	rcu_register_thread();
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	rcu_unregister_thread();
	return ret;
}
