/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Aggregation-table benchmark: updates/s on one core for a given number of distinct keys, table
 * presized to hold them all (the engine never resizes). Prints one line per key count.
 *   bench_agg [records] [distinct keys...]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu-qsbr.h>

#include "agg/agg.h"

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
visit(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	(void)rec;
	*(uint64_t *)ctx += flows;
}

int
main(int argc, char **argv)
{
	unsigned long records = argc > 1 ? strtoul(argv[1], NULL, 0) : 10000000;
	unsigned long defaults[] = {1000, 100000, 1000000};
	int nk = argc > 2 ? argc - 2 : 3, k;

	rcu_register_thread();
	printf("%-14s %-12s %s\n", "distinct keys", "records", "M updates/s");
	for (k = 0; k < nk; k++) {
		unsigned long keys = argc > 2 ? strtoul(argv[k + 2], NULL, 0) : defaults[k];
		struct nm_agg_params p = {.max_flows = (unsigned int)keys};
		struct nm_agg_table *t = nm_agg_table_create(&p);
		struct nm_flow_rec *recs = calloc(keys, sizeof(*recs));
		uint64_t flows = 0, x = 88172645463325252ULL;
		double t0, t1;
		unsigned long i;

		if (t == NULL || recs == NULL)
			return 1;
		for (i = 0; i < keys; i++) {
			recs[i].key.time_received = 1700000000;
			recs[i].key.src_addr[15] = (uint8_t)i;
			memcpy(recs[i].key.dst_addr + 12, &i, 4);
			recs[i].key.src_port = (uint16_t)(i * 7);
			recs[i].key.proto = 17;
			recs[i].bytes = 64;
			recs[i].packets = 1;
		}
		t0 = now();
		for (i = 0; i < records; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			nm_agg_add(t, &recs[x % keys]);
		}
		t1 = now();
		nm_agg_drain(t, visit, &flows);
		if (flows != records)
			fprintf(stderr, "bench_agg: lost records: %lu of %lu\n",
				(unsigned long)flows, records);
		printf("%-14lu %-12lu %.2f\n", keys, records, records / (t1 - t0) / 1e6);
		nm_agg_table_free(t);
		free(recs);
	}
	rcu_unregister_thread();
	return 0;
}
