/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Aggregation-table benchmark: updates/s on one core for a given number of distinct keys, table
 * presized to hold them all (the engine never resizes), and the table's memory per entry.
 *   bench_agg [--runs R] [--single] [--min-rate M] [records] [distinct keys...]
 *
 * Keys are shaped like a softflowd IPFIX record (exporter, IPv4-mapped addresses, ports,
 * protocol, ToS, TCP flags, interfaces, flow start/end, observation domain, sequence number),
 * drawn at random (xorshift) from the set and handed to the table in bursts of 64 records as the
 * RX worker does (--single: one nm_agg_add() per record). Each run checks that every record is
 * accounted for (merged counts add up to the records, no fold, no drop) and fails otherwise;
 * --min-rate fails a run below M million updates/s (the bench-smoke suite uses a floor far below
 * the figures in BENCHMARKS.md: it catches breakage, not noise). Prints the median of R runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu-qsbr.h>

#include "bench_util.h"

#include "agg/agg.h"

#define BURST 64

struct totals {
	uint64_t flows, rows, packets;
};

static void
visit(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct totals *t = ctx;

	t->flows += flows;
	t->rows++;
	t->packets += rec->packets;
}

static void
make_key(struct nm_flow_rec *r, unsigned long i)
{
	static const uint8_t exporter[4] = {192, 0, 2, 1};
	uint8_t src[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
	uint8_t dst[4] = {198, 51, 100, (uint8_t)(i % 251)};

	memset(r, 0, sizeof(*r));
	r->key.time_received = 1700000000;
	r->key.time_flow_start = 1700000000 - (i % 7);
	r->key.time_flow_end = 1700000000;
	r->key.sampling_rate = 1;
	r->key.type = NM_FLOW_IPFIX;
	nm_addr_from_v4(r->key.sampler_addr, exporter);
	nm_addr_from_v4(r->key.src_addr, src);
	nm_addr_from_v4(r->key.dst_addr, dst);
	r->key.sequence_num = (uint32_t)(i / 30);
	r->key.observation_domain_id = 1;
	r->key.in_if = 1 + (uint32_t)(i % 3);
	r->key.out_if = 4;
	r->key.etype = 0x0800;
	r->key.src_port = (uint16_t)(1024 + i % 60000);
	r->key.dst_port = 443;
	r->key.proto = 6;
	r->key.ip_tos = (uint8_t)(i % 4);
	r->key.tcp_flags = 0x12;
	r->bytes = 64;
	r->packets = 1;
}

int
main(int argc, char **argv)
{
	unsigned long records = 10000000, keyv[16];
	double min_rate = 0;
	int runs = 1, single = 0, nk = 0, k, a, fail = 0;

	int npos = 0;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--runs") == 0 && a + 1 < argc)
			runs = atoi(argv[++a]);
		else if (strcmp(argv[a], "--single") == 0)
			single = 1;
		else if (strcmp(argv[a], "--min-rate") == 0 && a + 1 < argc)
			min_rate = atof(argv[++a]);
		else if (npos++ == 0)
			records = strtoul(argv[a], NULL, 0);
		else if (nk < 16)
			keyv[nk++] = strtoul(argv[a], NULL, 0);
	}
	if (runs < 1 || runs > 99) {
		fprintf(stderr, "bench_agg: --runs must be 1..99\n");
		return 2;
	}
	if (nk == 0) {
		keyv[0] = 1000;
		keyv[1] = 100000;
		keyv[2] = 1000000;
		nk = 3;
	}
	rcu_register_thread();
	printf("%-14s %-12s %-12s %-16s %-14s %s\n", "distinct keys", "records", "runs",
	       "M updates/s med", "min..max", "bytes/entry (table/keys)");
	for (k = 0; k < nk; k++) {
		unsigned long keys = keyv[k];
		struct nm_agg_params p = {.max_flows = (unsigned int)keys};
		struct nm_agg_table *t = nm_agg_table_create(&p);
		struct nm_flow_rec *recs = calloc(keys, sizeof(*recs));
		struct nm_flow_rec *burst = calloc(BURST, sizeof(*burst));
		double rate[100];
		int r;

		if (t == NULL || recs == NULL || burst == NULL) {
			fprintf(stderr, "bench_agg: no memory for %lu keys\n", keys);
			return 1;
		}
		for (unsigned long i = 0; i < keys; i++)
			make_key(&recs[i], i);
		for (r = 0; r < runs; r++) {
			struct nm_agg_stats st0 = {0}, st1 = {0};
			struct totals tot = {0};
			uint64_t x = 88172645463325252ULL + (uint64_t)r;
			unsigned long i, j;
			double t0, t1;

			nm_agg_get_stats(t, &st0);
			t0 = now();
			if (single) {
				for (i = 0; i < records; i++) {
					x ^= x << 13;
					x ^= x >> 7;
					x ^= x << 17;
					nm_agg_add(t, &recs[x % keys]);
				}
			} else {
				/* The worker's batch: records copied into a 64-slot array, then
				 * handed over. */
				for (i = 0; i < records; i += BURST) {
					unsigned int n = records - i < BURST ? records - i : BURST;

					for (j = 0; j < n; j++) {
						x ^= x << 13;
						x ^= x >> 7;
						x ^= x << 17;
						burst[j] = recs[x % keys];
					}
					nm_agg_add_burst(t, burst, n);
				}
			}
			t1 = now();
			rate[r] = (double)records / (t1 - t0) / 1e6;
			nm_agg_get_stats(t, &st1);
			if (r == runs - 1)
				printf("%-14lu %-12lu %-12d ", keys, records, runs);
			if (r == runs - 1) {
				size_t mem = nm_agg_mem_bytes(t);
				unsigned int cnt = nm_agg_count(t);
				double per = cnt ? (double)mem / keys : 0;

				qsort(rate, (size_t)runs, sizeof(rate[0]), cmp_double);
				printf("%-16.2f %.2f..%-8.2f %.1f/%zu (%u entries)\n",
				       rate[runs / 2], rate[0], rate[runs - 1], per,
				       nm_agg_entry_bytes(&recs[0].key), cnt);
			}
			nm_agg_drain(t, visit, &tot);
			if (tot.flows != records || tot.packets != records ||
			    st1.records - st0.records != records || st1.folded != st0.folded ||
			    st1.dropped != st0.dropped || tot.rows > keys) {
				fprintf(stderr,
					"bench_agg: FAIL: %lu keys: %lu records, %lu counted in %lu "
					"rows, folded %lu, dropped %lu\n",
					keys, records, (unsigned long)tot.flows,
					(unsigned long)tot.rows,
					(unsigned long)(st1.folded - st0.folded),
					(unsigned long)(st1.dropped - st0.dropped));
				fail = 1;
			}
		}
		if (min_rate > 0 && rate[runs / 2] < min_rate) {
			fprintf(stderr,
				"bench_agg: FAIL: %lu keys: median %.2f M updates/s < %.2f\n", keys,
				rate[runs / 2], min_rate);
			fail = 1;
		}
		nm_agg_table_free(t);
		free(recs);
		free(burst);
	}
	rcu_unregister_thread();
	return fail;
}
