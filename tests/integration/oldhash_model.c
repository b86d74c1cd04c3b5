/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The per-second table as it was before the keyed hash (commit 55dbb77's key hash: CRC32C in
 * four lanes over the key's 27 words, then a multiply mix) in front of an open-addressing,
 * linear-probing index: the cost test_attack_hash_collision.py compares the engine with.
 *
 *   oldhash_model < PREFIXES
 *
 * stdin: one line per key, 16 hex digits: the first 8 bytes of the key's IPv6 source address;
 * every other field of the key is the same for all keys. Fails (exit 1) unless every key has
 * the same old hash (the flood really collides under the old hash), then inserts the keys into
 * the model table, and again keys whose 8 bytes are random (the same count), and prints
 *   keys N old_hashes H probes_flood P seconds_flood S probes_random P seconds_random S
 * Probes are key comparisons; both runs use the same table code and sizes (1.5 slots a key).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flow/flow.h"
#include "../old_hash.h"

/* Insert every key into a fresh linear-probing table; returns the key comparisons made. */
static uint64_t
fill(const struct nm_flow_key *keys, const uint64_t *hashes, size_t n, double *seconds)
{
	size_t nslots = n + n / 2 + 1, i;
	uint32_t *slot = calloc(nslots, sizeof(*slot)); /* key index + 1; 0 = empty */
	struct timespec t0, t1;
	uint64_t probes = 0;

	if (slot == NULL)
		exit(2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < n; i++) {
		size_t s = hashes[i] % nslots;

		while (slot[s] != 0) {
			uint32_t e = slot[s] - 1;

			probes++;
			if (hashes[e] == hashes[i] &&
			    memcmp(&keys[e], &keys[i], sizeof(keys[i])) == 0)
				break;
			if (++s == nslots)
				s = 0;
		}
		if (slot[s] == 0)
			slot[s] = (uint32_t)i + 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	*seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	free(slot);
	return probes;
}

int
main(void)
{
	size_t cap = 1024, n = 0, i, distinct = 0;
	struct nm_flow_key base, *keys = malloc(cap * sizeof(*keys));
	uint64_t *hashes = malloc(cap * sizeof(*hashes)), pf, pr, x = 0x243f6a8885a308d3ULL;
	double sf, sr;
	char line[64];

	if (keys == NULL || hashes == NULL)
		return 2;
	memset(&base, 0, sizeof(base));
	base.time_received = 1700000000;
	base.etype = 0x86dd;
	base.proto = 17;
	base.src_port = 40000;
	base.dst_port = 53;
	memset(base.dst_addr, 0x20, NM_ADDR_LEN);
	while (fgets(line, sizeof(line), stdin) != NULL) {
		uint64_t pfx = strtoull(line, NULL, 16);
		uint8_t b[8];

		if (n == cap) {
			cap *= 2;
			keys = realloc(keys, cap * sizeof(*keys));
			hashes = realloc(hashes, cap * sizeof(*hashes));
			if (keys == NULL || hashes == NULL)
				return 2;
		}
		for (int j = 0; j < 8; j++) /* the address's bytes in wire order */
			b[j] = (uint8_t)(pfx >> (56 - 8 * j));
		keys[n] = base;
		memcpy(keys[n].src_addr, b, 8);
		hashes[n] = old_hash(&keys[n]);
		n++;
	}
	for (i = 0; i < n; i++)
		distinct += i == 0 || hashes[i] != hashes[0];
	if (n == 0 || distinct != 1) {
		fprintf(stderr,
			"oldhash_model: %zu keys, %zu old hash values: not a collision set\n", n,
			distinct);
		return 1;
	}
	pf = fill(keys, hashes, n, &sf);
	for (i = 0; i < n; i++) {
		x ^= x << 13; /* xorshift64: other keys, same count and layout */
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(keys[i].src_addr, &x, 8);
		hashes[i] = old_hash(&keys[i]);
	}
	pr = fill(keys, hashes, n, &sr);
	printf("keys %zu old_hashes %zu probes_flood %" PRIu64
	       " seconds_flood %.3f probes_random %" PRIu64 " seconds_random %.3f\n",
	       n, distinct, pf, sf, pr, sr);
	free(keys);
	free(hashes);
	return 0;
}
