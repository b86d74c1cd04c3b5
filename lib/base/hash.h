/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_HASH_H
#define NM_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * 64-bit mix of a small key made of whole 32-bit words (splitmix64-style multiply-xorshift per
 * 8 bytes, then per remaining 4 bytes), folded so the low bits a hash table uses see the high
 * ones. For the control-plane tables (templates, rates, exporters); the per-second flow table has
 * its own wider hash (lib/agg). len must be a multiple of 4. Inline, pure: any thread.
 */
static inline unsigned long
nm_hash_words(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ len;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		h ^= w;
		h *= 0xbf58476d1ce4e5b9ULL;
		h ^= h >> 31;
	}
	for (; i < len; i += 4) {
		uint32_t w;

		memcpy(&w, p + i, 4);
		h ^= w;
		h *= 0x94d049bb133111ebULL;
		h ^= h >> 29;
	}
	h ^= h >> 32;
	return (unsigned long)h;
}

#endif /* NM_HASH_H */
