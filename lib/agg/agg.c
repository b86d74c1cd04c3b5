/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define _LGPL_SOURCE
#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "agg.h"

#define RTE_MIN_(a, b) ((a) < (b) ? (a) : (b))

struct agg_entry {
	struct cds_lfht_node node;
	uint64_t flows;
	struct nm_flow_rec rec;
};

/*
 * A direct-mapped cache in front of the cds_lfht: the slot of a key's hash remembers the entry
 * last found or added there. Mirror and export traffic repeat keys within a second, and a hit
 * costs one compare instead of a bucket walk in split order. Single writer: the table's owner.
 */
struct agg_cache_slot {
	uint64_t hash;
	struct agg_entry *e;
};

#define AGG_CACHE_MAX 4096

struct nm_agg_table {
	struct agg_cache_slot *cache;
	unsigned int cache_mask;
	struct cds_lfht *ht;
	struct agg_entry *pool;
	unsigned int cap;     /* entries in the pool */
	unsigned int used;    /* entries handed out since the last drain */
	unsigned int reserve; /* the last `reserve` entries are only for overflow keys */
	struct nm_agg_stats st;
};

/*
 * 64-bit hash of the key's words (the key has no padding, so every byte is defined). Four
 * independent lanes keep the multiplier pipeline full: the key is 27 words, and one serial chain
 * of multiply-xor rounds costs three times as much.
 */
static inline uint64_t
key_hash(const struct nm_flow_key *k)
{
#ifdef __SSE4_2__
	/*
	 * CRC32C instructions in four independent lanes: 3 cycles of latency per word and one word
	 * per cycle, so the 27 words of a key cost about 21 cycles instead of ~50 for the
	 * multiply-xorshift lanes below. CRC is linear, so the lanes are joined into 64 bits and
	 * finished with a multiply mix: bucket and cache indexes take the low bits.
	 */
	const uint64_t *w = (const uint64_t *)(const void *)k;
	uint64_t a = 0x9e3779b9, b = 0x85ebca6b, c = 0xc2b2ae35, d = 0x27d4eb2f, h;
	unsigned int i, n = sizeof(*k) / 8;

	for (i = 0; i + 4 <= n; i += 4) {
		a = _mm_crc32_u64(a, w[i]);
		b = _mm_crc32_u64(b, w[i + 1]);
		c = _mm_crc32_u64(c, w[i + 2]);
		d = _mm_crc32_u64(d, w[i + 3]);
	}
	for (; i < n; i++)
		a = _mm_crc32_u64(a, w[i]);
	h = (a << 32 | b) ^ ((c << 32 | d) * 0x9e3779b97f4a7c15ULL);
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
#else
	const uint64_t *w = (const uint64_t *)(const void *)k;
	uint64_t h0 = 0x9e3779b97f4a7c15ULL, h1 = 0xbf58476d1ce4e5b9ULL;
	uint64_t h2 = 0x94d049bb133111ebULL, h3 = 0x2545f4914f6cdd1dULL;
	unsigned int i, n = sizeof(*k) / 8;

	for (i = 0; i + 4 <= n; i += 4) {
		h0 = (h0 ^ w[i]) * 0xff51afd7ed558ccdULL;
		h1 = (h1 ^ w[i + 1]) * 0xc4ceb9fe1a85ec53ULL;
		h2 = (h2 ^ w[i + 2]) * 0xff51afd7ed558ccdULL;
		h3 = (h3 ^ w[i + 3]) * 0xc4ceb9fe1a85ec53ULL;
		h0 ^= h0 >> 29;
		h1 ^= h1 >> 31;
		h2 ^= h2 >> 29;
		h3 ^= h3 >> 31;
	}
	for (; i < n; i++)
		h0 = (h0 ^ w[i]) * 0xff51afd7ed558ccdULL;
	h0 ^= (h1 << 17 | h1 >> 47) ^ (h2 << 31 | h2 >> 33) ^ (h3 << 47 | h3 >> 17);
	h0 ^= h0 >> 33;
	h0 *= 0xff51afd7ed558ccdULL;
	h0 ^= h0 >> 33;
	return h0;
#endif
}

/* Equality of two keys without a libc call or a branch per word (27 words, no padding). */
static inline int
key_equal(const struct nm_flow_key *a, const struct nm_flow_key *b)
{
	const uint64_t *x = (const uint64_t *)(const void *)a,
		       *y = (const uint64_t *)(const void *)b;
	uint64_t d = 0;
	unsigned int i;

	for (i = 0; i < sizeof(*a) / 8; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

static int
key_match(struct cds_lfht_node *node, const void *key)
{
	const struct agg_entry *e = caa_container_of(node, struct agg_entry, node);

	return key_equal(&e->rec.key, key);
}

struct nm_agg_table *
nm_agg_table_create(const struct nm_agg_params *p)
{
	struct nm_agg_table *t;
	unsigned long buckets = 1;

	if (p == NULL || p->max_flows == 0 || p->max_flows > (1U << 30)) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	/* A small share of the pool is kept for overflow keys so that folding never fails. */
	t->reserve = p->max_flows / 64 + 16;
	t->cap = p->max_flows + t->reserve;
	/*
	 * Touch every page of the pool now: calloc() of a large block maps zero pages lazily, and
	 * the RX lcore would take a page fault on the first entry of each page during its first
	 * busy seconds (clear_page in perf). Memory is committed at start-up, as the config sized
	 * it.
	 */
	t->pool = calloc(t->cap, sizeof(*t->pool));
	if (t->pool == NULL)
		goto fail;
	memset(t->pool, 0, (size_t)t->cap * sizeof(*t->pool));
	/* Buckets: next power of two >= cap, so chains stay short at the limit. Never resized. */
	while (buckets < t->cap)
		buckets <<= 1;
	t->ht = cds_lfht_new(buckets, buckets, buckets, 0, NULL);
	if (t->ht == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	t->cache_mask = (unsigned int)RTE_MIN_(buckets, AGG_CACHE_MAX) - 1;
	t->cache = calloc(t->cache_mask + 1, sizeof(*t->cache));
	if (t->cache == NULL)
		goto fail;
	return t;
fail:
	if (t->ht != NULL)
		cds_lfht_destroy(t->ht, NULL);
	free(t->pool);
	free(t);
	return NULL;
}

void
nm_agg_table_free(struct nm_agg_table *t)
{
	if (t == NULL)
		return;
	if (t->ht != NULL) {
		nm_agg_drain(t, NULL, NULL);
		cds_lfht_destroy(t->ht, NULL);
	}
	free(t->cache);
	free(t->pool);
	free(t);
}

static const struct nm_ctr_desc agg_desc[] = {
	NM_AGG_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_agg_stats)};

const struct nm_ctr_set nm_agg_ctr_set =
	NM_CTR_SET("agg", "agg_", "per aggregation table, written by the worker that fills it",
		   SINGLE_WRITER, struct nm_agg_stats, agg_desc);

/* Find or insert key; limit is how many pool entries may be in use for this insert. */
static struct agg_entry *
lookup_or_add(struct nm_agg_table *t, const struct nm_flow_key *key, unsigned int limit, int *isnew)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	struct agg_entry *e;
	uint64_t h = key_hash(key);
	struct agg_cache_slot *cs = &t->cache[h & t->cache_mask];

	if (cs->hash == h && cs->e != NULL && key_equal(&cs->e->rec.key, key)) {
		*isnew = 0;
		return cs->e;
	}
	cds_lfht_lookup(t->ht, h, key_match, key, &it);
	n = cds_lfht_iter_get_node(&it);
	if (n != NULL) {
		*isnew = 0;
		e = caa_container_of(n, struct agg_entry, node);
		cs->hash = h;
		cs->e = e;
		return e;
	}
	if (t->used >= limit)
		return NULL;
	e = &t->pool[t->used++];
	cds_lfht_node_init(&e->node);
	e->rec.key = *key;
	e->rec.bytes = 0;
	e->rec.packets = 0;
	e->flows = 0;
	/* Single writer: nobody can have added the key since the lookup. */
	cds_lfht_add(t->ht, h, &e->node);
	cs->hash = h;
	cs->e = e;
	*isnew = 1;
	return e;
}

int
nm_agg_add(struct nm_agg_table *t, const struct nm_flow_rec *rec)
{
	struct nm_flow_key ok;
	struct agg_entry *e;
	int isnew, ret;

	nm_ctr_inc(&t->st.records);
	e = lookup_or_add(t, &rec->key, t->cap - t->reserve, &isnew);
	if (e != NULL) {
		ret = isnew;
	} else {
		const struct nm_flow_key *k = &rec->key;

		memset(&ok, 0, sizeof(ok));
		ok.time_received = k->time_received;
		ok.sampling_rate = k->sampling_rate;
		memcpy(ok.sampler_addr, k->sampler_addr, NM_ADDR_LEN);
		ok.observation_domain_id = k->observation_domain_id;
		ok.in_if = k->in_if;
		ok.out_if = k->out_if;
		ok.etype = k->etype;
		ok.type = k->type;
		ok.proto = k->proto;
		ok.flow_direction = k->flow_direction;
		e = lookup_or_add(t, &ok, t->cap, &isnew);
		if (e == NULL) {
			nm_ctr_inc(&t->st.dropped);
			nm_ctr_add(&t->st.dropped_packets, rec->packets);
			nm_ctr_add(&t->st.dropped_bytes, rec->bytes);
			return -ENOSPC;
		}
		nm_ctr_inc(&t->st.folded);
		ret = 2;
	}
	if (ret == 0)
		nm_ctr_inc(&t->st.merged);
	e->rec.bytes += rec->bytes;
	e->rec.packets += rec->packets;
	e->flows++;
	return ret;
}

unsigned int
nm_agg_count(const struct nm_agg_table *t)
{
	return t->used;
}

unsigned int
nm_agg_drain(struct nm_agg_table *t, nm_agg_visit_fn visit, void *ctx)
{
	unsigned int i, n = t->used;

	/*
	 * Walk the pool, not the hash table: the entries in use are exactly pool[0, used). A walk
	 * of the cds_lfht visits every bucket node in split order (bit-reversed, a cache miss each)
	 * and costs ~300 ms for a 262144-flow table however few entries it holds; this costs the
	 * entries. The table has no other reader (see agg.h), so a removed entry can be reused as
	 * soon as cds_lfht_del() returns: no grace period is needed before the pool is handed out
	 * again.
	 */
	for (i = 0; i < n; i++) {
		struct agg_entry *e = &t->pool[i];

		if (visit != NULL)
			visit(&e->rec, e->flows, ctx);
		(void)cds_lfht_del(t->ht, &e->node);
	}
	t->used = 0;
	memset(t->cache, 0, (t->cache_mask + 1) * sizeof(*t->cache));
	return n;
}

void
nm_agg_get_stats(const struct nm_agg_table *t, struct nm_agg_stats *out)
{
	nm_ctr_sum(&nm_agg_ctr_set, out, &t->st);
}
