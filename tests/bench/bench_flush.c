/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Flusher benchmark: the per-row cost of draining a full per-second table into protobuf
 * FlowMessages in a 1 MB batch, as dpdk_app/flusher.c does (without Kafka's produce and the
 * top-N), EAL-free, one core. Two paths on the same table contents:
 *   decode: nm_agg_drain() decodes every compact key into a struct nm_flow_rec, nm_encode_pb();
 *   rows:   nm_agg_drain_rows() hands the compact keys, nm_encode_pb_row() encodes from them.
 * With --kafka the rows go through the Kafka sink instead (nm_kafka_add() of the decoded record
 * against nm_kafka_add_row(); librdkafka's embedded mock broker, 1 MB batches, every row
 * acknowledged before the next run), which is the flusher's whole per-row path but the top-N.
 * Rows are shaped like flow exports (IPFIX/v9 from softflowd: IPv4-mapped addresses, ports,
 * times, no MACs; one row in eight IPv6) or, with --shape sflow, like sFlow samples (MACs,
 * VLAN, next hop). The table is refilled before each run (not timed).
 *   bench_flush [--shape ipfix|sflow] [--path decode|rows|both] [--kafka 0|1] [rows] [runs]
 * Under callgrind, flush_decode and flush_rows are the functions to toggle collection on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"

#include "agg/agg.h"
#include "encode/encode.h"
#include "kafka/kafka.h"

#define BATCH 1000000
#define MAX_RUNS 64

struct sink {
	struct nm_kafka *k; /* --kafka: rows go to the sink, not to buf */
	uint8_t *buf;
	size_t used, total;
	unsigned long rows;
};

static void
fill(struct nm_flow_rec *r, unsigned int i, int sflow)
{
	const uint8_t exp[4] = {10, 0, 0, (uint8_t)(1 + i % 2)};
	const uint8_t src[4] = {10, (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
	const uint8_t dst[4] = {172, 16, (uint8_t)(i >> 9), (uint8_t)(i * 7)};
	struct nm_flow_key *k = &r->key;

	memset(r, 0, sizeof(*r));
	k->time_received = 1764572400;
	nm_addr_from_v4(k->sampler_addr, exp);
	if (i % 8 == 7) {
		k->src_addr[0] = 0x20;
		k->src_addr[1] = 0x01;
		k->src_addr[2] = 0x0d;
		k->src_addr[3] = 0xb8;
		memcpy(k->src_addr + 12, &i, 4);
		memcpy(k->dst_addr, k->src_addr, 16);
		k->dst_addr[15] ^= 0x55;
		k->etype = 0x86dd;
	} else {
		nm_addr_from_v4(k->src_addr, src);
		nm_addr_from_v4(k->dst_addr, dst);
		k->etype = 0x0800;
	}
	k->src_port = (uint16_t)(1024 + i % 50000);
	k->dst_port = i % 3 ? 443 : 53;
	k->proto = i % 3 ? 6 : 17;
	k->ip_tos = (uint8_t)(i % 4 * 8);
	k->tcp_flags = i % 3 ? 0x1b : 0;
	if (sflow) {
		k->type = NM_FLOW_SFLOW5;
		k->sampling_rate = 1;
		k->sequence_num = i / 8;
		k->in_if = 1 + i % 4;
		k->out_if = 5;
		k->src_mac = 0x020000000001ULL + i % 16;
		k->dst_mac = 0x020000000100ULL;
		k->vlan_id = 10;
		k->ip_ttl = 64;
		nm_addr_from_v4(k->next_hop, exp);
	} else {
		k->type = NM_FLOW_IPFIX;
		k->time_flow_start = k->time_received - 1 - i % 30;
		k->time_flow_end = k->time_received - i % 2;
		k->sequence_num = i / 30;
		static const uint8_t none[4];
		nm_addr_from_v4(k->next_hop, none); /* ::ffff:0.0.0.0 -> :: */
	}
	r->bytes = 60ULL * (1 + i % 25);
	r->packets = 1 + i % 5;
}

static void
sink_put(struct sink *s, size_t n)
{
	if (n == 0) {
		fprintf(stderr, "bench_flush: a row did not encode\n");
		exit(1);
	}
	s->used += n;
	s->total += n;
	s->rows++;
}

static void
visit_decode(const struct nm_flow_rec *rec, uint64_t flows, void *ctx)
{
	struct sink *s = ctx;

	if (s->k != NULL) {
		s->rows += nm_kafka_add(s->k, rec, flows) == 0;
		return;
	}
	if (BATCH - s->used < NM_ENCODE_MAX)
		s->used = 0;
	sink_put(s, nm_encode_pb(rec, flows, s->buf + s->used, BATCH - s->used));
}

static void
visit_rows(const struct nm_agg_row *rows, unsigned int n, void *ctx)
{
	struct sink *s = ctx;
	unsigned int i;

	for (i = 0; i < n && s->k != NULL; i++)
		s->rows += nm_kafka_add_row(s->k, &rows[i]) == 0;
	for (i = 0; i < n && s->k == NULL; i++) {
		if (BATCH - s->used < NM_ENCODE_MAX)
			s->used = 0;
		sink_put(s, nm_encode_pb_row(&rows[i], s->buf + s->used, BATCH - s->used));
	}
}

__attribute__((noinline)) static unsigned int
flush_decode(struct nm_agg_table *t, struct sink *s)
{
	return nm_agg_drain(t, visit_decode, s);
}

__attribute__((noinline)) static unsigned int
flush_rows(struct nm_agg_table *t, struct sink *s)
{
	return nm_agg_drain_rows(t, visit_rows, s);
}

int
main(int argc, char **argv)
{
	unsigned long nrows = 200000;
	int runs = 5, sflow = 0, paths = 3, kafka = 0, a = 1, r, p;
	struct nm_agg_params ap;
	struct nm_agg_table *t;
	struct nm_flow_rec *recs;
	static uint8_t buf[BATCH];
	unsigned long i;

	for (; a < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
		if (a + 1 >= argc)
			break;
		if (strcmp(argv[a], "--shape") == 0)
			sflow = strcmp(argv[a + 1], "sflow") == 0;
		else if (strcmp(argv[a], "--kafka") == 0)
			kafka = atoi(argv[a + 1]);
		else if (strcmp(argv[a], "--path") == 0)
			paths = strcmp(argv[a + 1], "decode") == 0 ? 1
				: strcmp(argv[a + 1], "rows") == 0 ? 2
								   : 3;
	}
	if (a < argc)
		nrows = strtoul(argv[a++], NULL, 0);
	if (a < argc)
		runs = atoi(argv[a++]);
	if (runs < 1 || runs > MAX_RUNS)
		runs = 5;
	if (nrows == 0)
		nrows = 1;
	recs = calloc(nrows, sizeof(*recs));
	ap.max_flows = (unsigned int)nrows;
	t = nm_agg_table_create(&ap);
	if (recs == NULL || t == NULL) {
		fprintf(stderr, "bench_flush: no memory for %lu rows\n", nrows);
		return 1;
	}
	for (i = 0; i < nrows; i++)
		fill(&recs[i], (unsigned int)i, sflow);
	printf("%-7s %-6s %-9s %-5s %12s %16s %10s\n", "path", "shape", "rows", "runs",
	       "median ns/row", "min..max", "bytes/row");
	for (p = 1; p <= 2; p++) {
		double ns[MAX_RUNS];
		struct sink s = {.buf = buf};
		struct nm_kafka_params kp = {
			.brokers = "embedded",
			.topic = "flows",
			.format = NM_KAFKA_FMT_PROTOBUF,
			.batch_bytes = BATCH,
			.linger_ms = 100,
			.compression = "none",
			.queue_max_bytes = 256u << 20,
		};
		char err[256];

		if (!(paths & p))
			continue;
		if (kafka) {
			s.k = nm_kafka_create(&kp, err, sizeof(err));
			if (s.k == NULL) {
				fprintf(stderr, "bench_flush: kafka: %s\n", err);
				return 1;
			}
		}
		for (r = 0; r < runs; r++) {
			unsigned int got;
			double t0;

			nm_agg_add_burst(t, recs, (unsigned int)nrows);
			t0 = now();
			got = p == 1 ? flush_decode(t, &s) : flush_rows(t, &s);
			ns[r] = (now() - t0) * 1e9 / (double)got;
			if (got != nrows) {
				fprintf(stderr, "bench_flush: drained %u of %lu rows\n", got,
					nrows);
				return 1;
			}
			if (s.k != NULL && nm_kafka_drain(s.k, 60000, NULL) != 0) {
				fprintf(stderr,
					"bench_flush: kafka did not acknowledge every row\n");
				return 1;
			}
		}
		if (s.k != NULL) {
			struct nm_kafka_stats st;

			nm_kafka_get_stats(s.k, &st);
			s.total = st.bytes_acked;
			nm_kafka_free(s.k);
			if (st.records_acked != s.rows || s.rows != nrows * (unsigned long)runs) {
				fprintf(stderr, "bench_flush: %lu rows added, %lu acknowledged\n",
					s.rows, (unsigned long)st.records_acked);
				return 1;
			}
		}
		qsort(ns, (size_t)runs, sizeof(ns[0]), cmp_double);
		printf("%-7s %-6s %-9lu %-5d %12.1f %7.1f..%-7.1f %10.1f\n",
		       p == 1 ? (kafka ? "kdecode" : "decode") : (kafka ? "krows" : "rows"),
		       sflow ? "sflow" : "ipfix", nrows, runs, ns[runs / 2], ns[0], ns[runs - 1],
		       (double)s.total / (double)s.rows);
	}
	nm_agg_table_free(t);
	free(recs);
	return 0;
}
