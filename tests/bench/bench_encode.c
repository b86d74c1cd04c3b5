/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Encoder benchmark: FlowMessage rows/s on one core, protobuf and JSON, for rows shaped like the
 * engine's (IPv4-mapped and IPv6 addresses, ports, interfaces, AS numbers, times, MACs). Encodes
 * into a 1 MB batch buffer as the Kafka sink does, starting over when it is full. Prints the
 * median of the runs and the mean encoded size.
 *   bench_encode [rows per run] [runs]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#include "encode/encode.h"

#define NREC 4096
#define BATCH 1000000

static void
fill(struct nm_flow_rec *r, unsigned int i)
{
	const uint8_t exp[4] = {192, 0, 2, (uint8_t)(1 + i % 8)};
	const uint8_t src[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
	const uint8_t dst[4] = {198, 51, 100, (uint8_t)(i * 7)};

	memset(r, 0, sizeof(*r));
	r->key.type = 2;
	r->key.time_received = 1700000000 + i / 1000;
	r->key.time_flow_start = r->key.time_received - 3;
	r->key.time_flow_end = r->key.time_received;
	r->key.sampling_rate = 1000;
	r->key.sequence_num = i;
	nm_addr_from_v4(r->key.sampler_addr, exp);
	if (i % 5 == 0) { /* one row in five is IPv6 */
		r->key.src_addr[0] = 0x20;
		r->key.src_addr[1] = 0x01;
		r->key.src_addr[2] = 0x0d;
		r->key.src_addr[3] = 0xb8;
		memcpy(r->key.src_addr + 12, &i, 4);
		memcpy(r->key.dst_addr, r->key.src_addr, 16);
		r->key.dst_addr[15] ^= 0x55;
		r->key.etype = 0x86dd;
	} else {
		nm_addr_from_v4(r->key.src_addr, src);
		nm_addr_from_v4(r->key.dst_addr, dst);
		r->key.etype = 0x0800;
	}
	nm_addr_from_v4(r->key.next_hop, exp);
	r->key.src_port = (uint16_t)(1024 + i % 50000);
	r->key.dst_port = i % 3 ? 443 : 53;
	r->key.proto = i % 3 ? 6 : 17;
	r->key.in_if = 1 + i % 48;
	r->key.out_if = 49 + i % 4;
	r->key.src_as = 64500 + i % 10;
	r->key.dst_as = 15169;
	r->key.tcp_flags = i % 3 ? 0x18 : 0;
	r->key.src_mac = 0x020000000001ULL + i % 16;
	r->key.dst_mac = 0x020000000100ULL;
	r->key.ip_ttl = 64;
	r->bytes = 1500ULL * (1 + i % 10);
	r->packets = 1 + i % 10;
}

static double
run(const struct nm_flow_rec *recs, unsigned long rows, int json, uint8_t *buf, double *mean)
{
	size_t used = 0, total = 0;
	unsigned long i;
	double t0 = now(), t1;

	for (i = 0; i < rows; i++) {
		const struct nm_flow_rec *r = &recs[i % NREC];
		size_t n;

		if (BATCH - used < NM_ENCODE_MAX)
			used = 0;
		n = json ? nm_encode_json(r, 1, (char *)buf + used, BATCH - used)
			 : nm_encode_pb(r, 1, buf + used, BATCH - used);
		if (n == 0) {
			fprintf(stderr, "bench_encode: record %lu did not encode\n", i);
			exit(1);
		}
		used += n;
		total += n;
	}
	t1 = now();
	*mean = (double)total / (double)rows;
	return (double)rows / (t1 - t0);
}

int
main(int argc, char **argv)
{
	unsigned long rows = argc > 1 ? strtoul(argv[1], NULL, 0) : 5000000;
	int runs = argc > 2 ? atoi(argv[2]) : 5, f, r;
	static struct nm_flow_rec recs[NREC];
	static uint8_t buf[BATCH];
	unsigned int i;

	if (runs < 1 || runs > 64)
		runs = 5;
	for (i = 0; i < NREC; i++)
		fill(&recs[i], i);
	printf("%-9s %-10s %-6s %14s %14s %10s\n", "format", "rows", "runs", "median Mrows/s",
	       "min..max", "bytes/row");
	for (f = 0; f < 2; f++) {
		double rate[64], mean = 0;

		for (r = 0; r < runs; r++)
			rate[r] = run(recs, rows, f, buf, &mean) / 1e6;
		qsort(rate, (size_t)runs, sizeof(rate[0]), cmp_double);
		printf("%-9s %-10lu %-6d %14.2f %6.2f..%-6.2f %10.1f\n", f ? "json" : "protobuf",
		       rows, runs, rate[runs / 2], rate[0], rate[runs - 1], mean);
	}
	return 0;
}
