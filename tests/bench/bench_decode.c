/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Decoder benchmark: flow records/s of each decoder (NetFlow v5, NetFlow v9, IPFIX, sFlow v5) on
 * one core, EAL-free, decoding the corpus' generated captures (real exporters' datagrams) again
 * and again. The UDP payloads are loaded into memory first; each pass hands every datagram of a
 * capture to nm_decode_datagram() in capture order (v9/IPFIX templates are learnt in a warm-up
 * pass, and the template datagrams of later passes are refreshes) with a 64-record batch whose
 * flush only adds up bytes and packets - no aggregation, no encoding. A run repeats passes for a
 * fixed time; the table shows the median, min and max of the runs, and in the last column the
 * median of as many runs interleaved with them with per-exporter accounting on (lib/exporter:
 * override lookup, entry lookup and counter updates per datagram).
 *
 *   bench_decode [--smoke] [--runs N] [--seconds S] [--passes P] [--only NAME] [CORPORA]
 *
 * --smoke: one short run per decoder (the bench-smoke suite, so the benchmark keeps working).
 * --passes P: each run decodes exactly P passes instead of running for S seconds (a fixed amount
 * of work, for instruction counts under callgrind: on a loaded machine they are the robust A/B).
 * --only NAME: only the rows whose decoder name contains NAME ("IPFIX", "v9").
 * CORPORA defaults to the build's corpora path; without it the benchmark says so and exits 77.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <urcu-qsbr.h>

#include "bench_util.h"

#include "decode/decode.h"
#include "exporter/exporter.h"
#include "tmpl/tmpl.h"

#ifndef NM_CORPORA
#define NM_CORPORA "../shared/corpora"
#endif

#define MAX_RUNS 31
#define BATCH 64

struct capture {
	const char *name;   /* decoder */
	const char *file;   /* relative to the corpora */
	uint8_t *data;	    /* the file */
	const uint8_t **pl; /* UDP payloads */
	size_t *len;
	uint8_t *has_tmpl; /* the datagram carries (options) templates */
	unsigned int n;
};

static struct capture caps[] = {
	{"NetFlow v5", "generated/softflowd-v5.pcap"},
	{"NetFlow v9", "generated/softflowd-v9.pcap"},
	{"IPFIX", "generated/softflowd-v10.pcap"},
	{"sFlow v5", "generated/pmacctd-sfprobe-sflow5.pcap"},
};
#define N_CAPS (sizeof(caps) / sizeof(caps[0]))

struct sink {
	uint64_t records, bytes, packets;
};

static void
sink_flush(struct nm_rec_batch *b, void *ctx)
{
	struct sink *s = ctx;
	unsigned int i;

	for (i = 0; i < b->n; i++) {
		s->bytes += b->recs[i].bytes;
		s->packets += b->recs[i].packets;
	}
	s->records += b->n;
}

static uint32_t
rd32(const uint8_t *p, int swap)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return swap ? __builtin_bswap32(v) : v;
}

/* Classic pcap, Ethernet (optionally 802.1Q) / IPv4 or IPv6 / UDP: keep the UDP payloads. */
static int
load(struct capture *c, const char *root)
{
	char path[1024];
	FILE *f;
	long size;
	size_t off = 24, cap = 0;
	int swap;

	snprintf(path, sizeof(path), "%s/%s", root, c->file);
	f = fopen(path, "rb");
	if (f == NULL)
		return -errno;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	c->data = malloc((size_t)size);
	if (c->data == NULL || fread(c->data, 1, (size_t)size, f) != (size_t)size || size < 24) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	swap = rd32(c->data, 0) == 0xd4c3b2a1 || rd32(c->data, 0) == 0x4d3cb2a1;
	if (rd32(c->data + 20, swap) != 1)
		return -EPROTONOSUPPORT;
	while (off + 16 <= (size_t)size) {
		uint32_t caplen = rd32(c->data + off + 8, swap);
		const uint8_t *p = c->data + off + 16, *end = p + caplen;
		unsigned int l3 = 14;
		uint16_t et;

		off += 16 + caplen;
		if (off > (size_t)size || caplen < 14)
			break;
		et = (uint16_t)(p[12] << 8 | p[13]);
		if (et == 0x8100 && caplen >= 18) {
			et = (uint16_t)(p[16] << 8 | p[17]);
			l3 = 18;
		}
		p += l3;
		if (et == 0x0800 && end - p >= 20 && p[9] == 17)
			p += (p[0] & 15) * 4;
		else if (et == 0x86dd && end - p >= 40 && p[6] == 17)
			p += 40;
		else
			continue;
		if (end - p < 8)
			continue;
		if (c->n == cap) {
			cap = cap ? cap * 2 : 256;
			c->pl = realloc(c->pl, cap * sizeof(*c->pl));
			c->len = realloc(c->len, cap * sizeof(*c->len));
			c->has_tmpl = realloc(c->has_tmpl, cap);
			if (c->pl == NULL || c->len == NULL || c->has_tmpl == NULL)
				return -ENOMEM;
		}
		c->pl[c->n] = p + 8;
		c->len[c->n] = (size_t)(end - p - 8);
		c->has_tmpl[c->n] = 0;
		c->n++;
	}
	return c->n > 0 ? 0 : -ENOENT;
}

/*
 * One pass over the capture; returns records produced. data_only: skip the datagrams that carry
 * templates (after the warm-up they are refreshes: compiled and compared again under the cache's
 * writer mutex, which is not the data path being measured).
 */
static uint64_t
pass(struct capture *c, struct nm_decoder *d, struct nm_rec_batch *b, struct sink *s,
     const struct nm_dgram_meta *meta, int data_only)
{
	uint64_t before = s->records;
	unsigned int i;

	for (i = 0; i < c->n; i++) {
		if (data_only && c->has_tmpl[i])
			continue;
		(void)nm_decode_datagram(d, c->pl[i], c->len[i], meta, b);
	}
	nm_rec_batch_flush(b);
	rcu_quiescent_state();
	return s->records - before;
}

/* Warm-up pass: learn the templates and note which datagrams carry them. */
static uint64_t
warm_up(struct capture *c, struct nm_decoder *d, struct nm_rec_batch *b, struct sink *s,
	const struct nm_dgram_meta *meta)
{
	uint64_t before = s->records;
	unsigned int i;

	for (i = 0; i < c->n; i++) {
		uint64_t t = d->stats->templates;

		(void)nm_decode_datagram(d, c->pl[i], c->len[i], meta, b);
		c->has_tmpl[i] = d->stats->templates != t;
	}
	nm_rec_batch_flush(b);
	rcu_quiescent_state();
	return s->records - before;
}

int
main(int argc, char **argv)
{
	const char *root = NM_CORPORA;
	unsigned int runs = 7, passes = 0, r, i;
	double seconds = 0.3;
	const char *only = NULL;
	int smoke = 0, fail = 0;
	struct nm_flow_rec recs[BATCH];

	for (i = 1; i < (unsigned int)argc; i++) {
		if (strcmp(argv[i], "--smoke") == 0) {
			smoke = 1;
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < (unsigned int)argc) {
			runs = (unsigned int)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < (unsigned int)argc) {
			seconds = atof(argv[++i]);
		} else if (strcmp(argv[i], "--passes") == 0 && i + 1 < (unsigned int)argc) {
			passes = (unsigned int)atoi(argv[++i]);
		} else if (strcmp(argv[i], "--only") == 0 && i + 1 < (unsigned int)argc) {
			only = argv[++i];
		} else if (argv[i][0] != '-') {
			root = argv[i];
		} else {
			fprintf(stderr, "usage: bench_decode [--smoke] [--runs N] [--seconds S] "
					"[--passes P] [--only NAME] [CORPORA]\n");
			return 2;
		}
	}
	if (smoke) {
		runs = 1;
		seconds = 0.02;
	}
	if (runs < 1 || runs > MAX_RUNS || seconds <= 0) {
		fprintf(stderr, "bench_decode: --runs 1..%d, --seconds > 0\n", MAX_RUNS);
		return 2;
	}
	for (i = 0; i < N_CAPS; i++) {
		int rc = load(&caps[i], root);

		if (rc != 0) {
			printf("SKIP: %s/%s: %s (the corpora are needed)\n", root, caps[i].file,
			       strerror(-rc));
			return 77;
		}
	}
	rcu_register_thread();
	printf("decoders on one core, %u run(s) of %.2f s each, records/s (median [min, max])\n\n",
	       runs, seconds);
	printf("%-11s %-44s %6s %9s %14s %12s %12s %8s %14s\n", "decoder", "capture", "dgrams",
	       "recs/pass", "records/s", "min", "max", "ns/rec", "+exporters");
	for (i = 0; i < 2 * N_CAPS; i++) {
		struct capture *c = &caps[i / 2];
		int data_only = i % 2;
		struct nm_tmpl_params tp = {0};
		struct nm_decode_stats st;
		struct nm_decoder d = {.stats = &st, .default_sampling_rate = 1};
		struct sink s = {0};
		struct nm_rec_batch b = {
			.recs = recs, .cap = BATCH, .flush = sink_flush, .ctx = &s};
		struct nm_dgram_meta meta = {.dst_port = 2055, .time_received = 1700000000};
		char name[64];
		double rate[MAX_RUNS], rate_exp[MAX_RUNS];
		/* As the engine's default ([collector] sflow_agent_learn = yes): an sFlow agent is
		 * bound to its UDP source, and the check finds the pair. */
		struct nm_exp_params ep = {.agent_learn = 1};
		struct nm_exp_table *exp;
		uint64_t per_pass;
		unsigned int nd = 0, k, np;

		if (only != NULL && strstr(c->name, only) == NULL)
			continue;
		memset(&st, 0, sizeof(st));
		d.tmpl = nm_tmpl_cache_create(&tp);
		if (d.tmpl == NULL) {
			perror("nm_tmpl_cache_create");
			return 1;
		}
		nm_addr_from_v4(meta.exporter, (const uint8_t[]){127, 0, 0, 1});
		per_pass = warm_up(c, &d, &b, &s, &meta);
		for (k = 0; k < c->n; k++)
			nd += !(data_only && c->has_tmpl[k]);
		if (data_only && nd == c->n) {
			/* No template datagrams (NetFlow v5, sFlow): the same row again. */
			rcu_thread_offline();
			nm_tmpl_cache_free(d.tmpl);
			rcu_thread_online();
			continue;
		}
		if (data_only)
			per_pass = pass(c, &d, &b, &s, &meta, 1);
		if (per_pass == 0) {
			fprintf(stderr, "bench_decode: %s decoded no record\n", c->file);
			return 1;
		}
		exp = nm_exp_create(&ep);
		if (exp == NULL) {
			perror("nm_exp_create");
			return 1;
		}
		/* Runs alternate without and with per-exporter accounting (lib/exporter). */
		for (r = 0; r < 2 * runs; r++) {
			uint64_t n = 0;
			double t0 = now(), t;

			d.exp = r % 2 ? exp : NULL;
			np = 0;
			do {
				uint64_t got = pass(c, &d, &b, &s, &meta, data_only);

				/* Every pass decodes the same records, or something was lost. */
				if (got != per_pass && !fail) {
					fprintf(stderr,
						"bench_decode: FAIL: %s: a pass gave %llu records, "
						"the first %llu\n",
						c->file, (unsigned long long)got,
						(unsigned long long)per_pass);
					fail = 1;
				}
				n += got;
				t = now();
			} while (passes != 0 ? ++np < passes : t - t0 < seconds);
			if (r % 2)
				rate_exp[r / 2] = (double)n / (t - t0);
			else
				rate[r / 2] = (double)n / (t - t0);
		}
		d.exp = NULL;
		qsort(rate, runs, sizeof(rate[0]), cmp_double);
		qsort(rate_exp, runs, sizeof(rate_exp[0]), cmp_double);
		snprintf(name, sizeof(name), "%s%s", c->file + strlen("generated/"),
			 data_only ? " (data dgrams)" : "");
		printf("%-11s %-44s %6u %9llu %14.0f %12.0f %12.0f %8.1f %14.0f\n", c->name, name,
		       nd, (unsigned long long)per_pass, rate[runs / 2], rate[0], rate[runs - 1],
		       1e9 / rate[runs / 2], rate_exp[runs / 2]);
		if (st.nf5.bad + st.nf9.bad + st.ipfix.bad + st.sflow.bad != 0) {
			fprintf(stderr,
				"bench_decode: FAIL: %s: %llu datagrams rejected (the capture is not "
				"what it was, or a decoder regressed)\n",
				c->file,
				(unsigned long long)(st.nf5.bad + st.nf9.bad + st.ipfix.bad +
						     st.sflow.bad));
			fail = 1;
		}
		nm_exp_free(exp);
		rcu_thread_offline();
		nm_tmpl_cache_free(d.tmpl);
		rcu_thread_online();
	}
	rcu_unregister_thread();
	for (i = 0; i < N_CAPS; i++) {
		free(caps[i].data);
		free(caps[i].pl);
		free(caps[i].len);
		free(caps[i].has_tmpl);
	}
	return fail;
}
