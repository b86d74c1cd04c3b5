/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The flow-key hash before the keyed one (commit 55dbb77): CRC32C in four lanes over the key's
 * 27 words, then a multiply mix. Only tests use it: tests/unit/test_agg.c shows keys a sender can
 * make collide under it, tests/integration/oldhash_model.c measures what those keys cost a table
 * indexed by it. One copy, so both speak of the same function. Needs SSE4.2 (callers build it
 * under __SSE4_2__ or -msse4.2).
 */
#ifndef NM_TESTS_OLD_HASH_H
#define NM_TESTS_OLD_HASH_H

#include <stdint.h>
#include <string.h>
#include <nmmintrin.h>

#include "flow/flow.h"

/* The four CRC32C lane states after the key's words, before the mix. */
static inline void
old_hash_lanes(const struct nm_flow_key *k, uint64_t l[4])
{
	uint64_t w[sizeof(*k) / 8], a = 0x9e3779b9, b = 0x85ebca6b, c = 0xc2b2ae35, d = 0x27d4eb2f;
	unsigned int i, n = sizeof(*k) / 8;

	memcpy(w, k, sizeof(w)); /* not a uint64_t lvalue over the key's fields: strict aliasing */
	for (i = 0; i + 4 <= n; i += 4) {
		a = _mm_crc32_u64(a, w[i]);
		b = _mm_crc32_u64(b, w[i + 1]);
		c = _mm_crc32_u64(c, w[i + 2]);
		d = _mm_crc32_u64(d, w[i + 3]);
	}
	for (; i < n; i++)
		a = _mm_crc32_u64(a, w[i]);
	l[0] = a;
	l[1] = b;
	l[2] = c;
	l[3] = d;
}

static inline uint64_t
old_hash(const struct nm_flow_key *k)
{
	uint64_t l[4], h;

	old_hash_lanes(k, l);
	h = (l[0] << 32 | l[1]) ^ ((l[2] << 32 | l[3]) * 0x9e3779b97f4a7c15ULL);
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	h ^= h >> 32;
	return h;
}

#endif /* NM_TESTS_OLD_HASH_H */
