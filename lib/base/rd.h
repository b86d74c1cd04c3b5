/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_RD_H
#define NM_RD_H

/*
 * Unaligned big-endian reads for everything that parses wire data (decoders, packet parser). The
 * caller has checked the length. Inline loads and byte swaps: no allocation, any thread.
 */

#include <stdint.h>
#include <string.h>

static inline uint16_t
nm_rd16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

static inline uint32_t
nm_rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return __builtin_bswap32(v);
}

static inline uint64_t
nm_rd64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

/* Big-endian unsigned integer of 1..8 bytes (reduced-size encoding, RFC 7011 6.2). */
static inline uint64_t
nm_rdn(const uint8_t *p, unsigned int n)
{
	uint64_t v = 0;
	unsigned int i;

	for (i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

#endif /* NM_RD_H */
