/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the decoder tests (test_nf5.c, test_sflow.c, test_nf9.c, test_ipfix.c) share: a decoder with
 * its own template cache and a record sink (the fixture), a byte builder for hand-made messages, a
 * classic-pcap reader that feeds a capture's UDP datagrams to the dispatcher, and the corpus test:
 * every TRUTH.tsv row of one protocol against tshark's totals, where tests/expected_differences.tsv
 * (the table the golden test reads too) gives the engine's exact numbers for the captures that
 * legitimately differ.
 *
 * Included by one test file each; everything is static. Single-threaded: the test thread is
 * the decoder's only RCU reader (setup_rcu registers it) and writer.
 */
#ifndef NM_TEST_DECODE_FIXTURE_H
#define NM_TEST_DECODE_FIXTURE_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <urcu-qsbr.h>

#include "decode/decode.h"
#include "pkt/pkt.h"
#include "tmpl/tmpl.h"

#define SINK_KEEP 8192

/* Every record the decoder flushes: the first SINK_KEEP kept, all counted and summed. */
struct sink {
	struct nm_flow_rec all[SINK_KEEP];
	unsigned int n;	      /* records seen */
	unsigned int flushes; /* batches flushed into it */
	unsigned long long pkts, bytes;
};

static inline void
sink_flush(struct nm_rec_batch *b, void *ctx)
{
	struct sink *s = ctx;

	s->flushes++;
	for (unsigned int i = 0; i < b->n; i++) {
		if (s->n < SINK_KEEP)
			s->all[s->n] = b->recs[i];
		s->n++;
		s->pkts += b->recs[i].packets;
		s->bytes += b->recs[i].bytes;
	}
}

struct fixture {
	struct nm_decode_stats st;
	struct nm_decoder d;
	struct nm_flow_rec recs[8];
	struct nm_rec_batch b;
	struct sink s;
	struct nm_dgram_meta meta;
};

/* A decoder with a fresh template cache, default rate 1, exporter 192.0.2.9. */
static inline struct fixture *
fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct nm_tmpl_params tp = {0};

	assert_non_null(f);
	f->d.stats = &f->st;
	f->d.default_sampling_rate = 1;
	f->d.tmpl = nm_tmpl_cache_create(&tp);
	assert_non_null(f->d.tmpl);
	f->b.recs = f->recs;
	f->b.cap = 8;
	f->b.flush = sink_flush;
	f->b.ctx = &f->s;
	f->meta.time_received = 1700000000;
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 9});
	return f;
}

static inline void
fixture_free(struct fixture *f)
{
	nm_tmpl_cache_free(f->d.tmpl);
	free(f);
}

/* ---- a byte builder for hand-made messages (each test file writes its own header) ---- */

struct msg {
	uint8_t b[8192];
	size_t n;
	size_t set_at;
};

static inline void
p8(struct msg *m, uint8_t v)
{
	m->b[m->n++] = v;
}

static inline void
p16(struct msg *m, uint16_t v)
{
	p8(m, (uint8_t)(v >> 8));
	p8(m, (uint8_t)v);
}

static inline void
p32(struct msg *m, uint32_t v)
{
	p16(m, (uint16_t)(v >> 16));
	p16(m, (uint16_t)v);
}

static inline void
p64(struct msg *m, uint64_t v)
{
	p32(m, (uint32_t)(v >> 32));
	p32(m, (uint32_t)v);
}

static inline void
pbytes(struct msg *m, const void *v, size_t n)
{
	memcpy(m->b + m->n, v, n);
	m->n += n;
}

/* A v9 flowset or IPFIX set: id and a length that set_end() patches. */
static inline void
set_begin(struct msg *m, uint16_t id)
{
	m->set_at = m->n;
	p16(m, id);
	p16(m, 0);
}

static inline void
set_end(struct msg *m)
{
	size_t l = m->n - m->set_at;

	m->b[m->set_at + 2] = (uint8_t)(l >> 8);
	m->b[m->set_at + 3] = (uint8_t)l;
}

/* One datagram through the dispatcher, then the quiescent state of one RX poll loop. */
static inline int
decode(struct fixture *f, struct msg *m)
{
	int r = nm_decode_datagram(&f->d, m->b, m->n, &f->meta, &f->b);

	rcu_quiescent_state();
	return r;
}

/* Record i of the sink (flushes the batch first). */
static inline const struct nm_flow_rec *
rec(struct fixture *f, unsigned int i)
{
	nm_rec_batch_flush(&f->b);
	assert_true(i < f->s.n);
	return &f->s.all[i];
}

static inline const char *
astr(const uint8_t a[NM_ADDR_LEN])
{
	static char buf[4][NM_ADDR_STRLEN];
	static unsigned int i;

	return nm_addr_str(a, buf[i++ % 4], NM_ADDR_STRLEN);
}

/* ---- captures ---- */

/* A tiny classic-pcap reader: enough for the corpus (µs/ns magic, either byte order). */
struct pcap_rd {
	FILE *fp;
	int swap;
	int nsec;
	uint32_t linktype;
};

static inline uint32_t
sw32(const struct pcap_rd *r, uint32_t v)
{
	return r->swap ? __builtin_bswap32(v) : v;
}

static inline int
pcap_rd_open(struct pcap_rd *r, const char *path)
{
	uint32_t h[6];

	memset(r, 0, sizeof(*r));
	r->fp = fopen(path, "rb");
	if (r->fp == NULL || fread(h, 1, 24, r->fp) != 24)
		return -1;
	switch (h[0]) {
	case 0xa1b2c3d4:
		break;
	case 0xa1b23c4d:
		r->nsec = 1;
		break;
	case 0xd4c3b2a1:
		r->swap = 1;
		break;
	case 0x4d3cb2a1:
		r->swap = 1;
		r->nsec = 1;
		break;
	default:
		return -1;
	}
	r->linktype = sw32(r, h[5]);
	return 0;
}

/* Next frame into buf; returns its captured length, 0 at the end, -1 on a damaged file. */
static inline long
pcap_rd_next(struct pcap_rd *r, uint8_t *buf, size_t cap, uint64_t *ts_sec)
{
	uint32_t h[4], incl;

	if (fread(h, 1, 16, r->fp) != 16)
		return 0;
	incl = sw32(r, h[2]);
	if (incl > cap || fread(buf, 1, incl, r->fp) != incl)
		return -1;
	*ts_sec = sw32(r, h[0]);
	return (long)incl;
}

static inline int
link_of(uint32_t linktype, enum nm_link *l)
{
	switch (linktype) {
	case 1:
		*l = NM_LINK_ETHER;
		return 0;
	case 113:
		*l = NM_LINK_SLL;
		return 0;
	case 12:
	case 14:
	case 101:
		*l = NM_LINK_RAW;
		return 0;
	default:
		return -1;
	}
}

/* Feed every UDP datagram of a capture to the dispatcher. Returns frames read. */
static inline unsigned int
feed_pcap(struct fixture *f, const char *path)
{
	static uint8_t frame[262144];
	struct pcap_rd r;
	enum nm_link link = NM_LINK_ETHER;
	unsigned int frames = 0;
	uint64_t ts;
	long n;

	assert_int_equal(pcap_rd_open(&r, path), 0);
	assert_int_equal(link_of(r.linktype, &link), 0);
	while ((n = pcap_rd_next(&r, frame, sizeof(frame), &ts)) > 0) {
		struct nm_udp_view v;

		frames++;
		if (nm_pkt_udp_view_link(link, frame, (size_t)n, &v) != NM_UDP_OK)
			continue;
		memcpy(f->meta.exporter, v.src, NM_ADDR_LEN);
		f->meta.exporter_port = v.src_port;
		f->meta.dst_port = v.dst_port;
		f->meta.time_received = ts;
		(void)nm_decode_datagram(&f->d, v.payload, v.payload_len, &f->meta, &f->b);
		/* One RX poll loop per datagram. */
		rcu_quiescent_state();
	}
	assert_int_equal(n, 0);
	fclose(r.fp);
	nm_rec_batch_flush(&f->b);
	return frames;
}

static inline bool
corpus_present(void)
{
	char path[1024];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/TRUTH.tsv", NM_CORPORA);
	fp = fopen(path, "r");
	if (fp == NULL) {
		print_message("corpus absent at %s: skipping\n", NM_CORPORA);
		return false;
	}
	fclose(fp);
	return true;
}

/* Feed several captures of akvorado's netflow/ folder into one cache, in order. */
static inline struct fixture *
feed_files(const char *const *files)
{
	struct fixture *f = fixture_new();
	char path[1024];

	for (; *files != NULL; files++) {
		snprintf(path, sizeof(path), "%s/public/akvorado/netflow/%s", NM_CORPORA, *files);
		feed_pcap(f, path);
	}
	return f;
}

/* ---- tests/expected_differences.tsv ---- */

#define EXPECT_MAX 64
#define EXPECT_PATH NM_SOURCE_ROOT "/tests/expected_differences.tsv"

/* One row of the table (the columns are described in the file itself). */
struct expect {
	char file[256];
	char check[16];
	unsigned long long records, pkts, bytes;
	char detail[256];
	char why[1024];
};

static struct expect expected[EXPECT_MAX];
static unsigned int n_expected;

/* Split line at tabs into at most max fields (in place); returns the count. */
static inline unsigned int
tsv_split(char *line, char **col, unsigned int max)
{
	unsigned int n = 0;

	line[strcspn(line, "\r\n")] = '\0';
	while (n < max) {
		col[n++] = line;
		line = strchr(line, '\t');
		if (line == NULL)
			break;
		*line++ = '\0';
	}
	return n;
}

/* A column into a fixed field: a value that does not fit fails the test, never truncates. */
static inline void
col_copy(char *dst, size_t size, const char *src)
{
	size_t l = strlen(src);

	assert_true(l < size);
	memcpy(dst, src, l + 1);
}

/* Read the table once; a malformed row fails the test rather than being skipped. */
static inline void
expected_load(void)
{
	char line[4096];
	FILE *fp;

	if (n_expected > 0)
		return;
	fp = fopen(EXPECT_PATH, "r");
	if (fp == NULL)
		fail_msg("cannot open %s", EXPECT_PATH);
	while (fgets(line, sizeof(line), fp) != NULL) {
		struct expect *e = &expected[n_expected];
		char *col[8] = {NULL};
		unsigned int n;

		assert_non_null(strchr(line, '\n')); /* no row longer than the buffer */
		if (line[0] == '#' || line[0] == '\n' || strncmp(line, "file\t", 5) == 0)
			continue;
		n = tsv_split(line, col, 8);
		if (n != 8)
			print_message("%s: %u columns in the row of %s, 8 expected\n", EXPECT_PATH,
				      n, col[0]);
		assert_int_equal(n, 8);
		assert_true(n_expected < EXPECT_MAX);
		col_copy(e->file, sizeof(e->file), col[0]);
		col_copy(e->check, sizeof(e->check), col[1]);
		if (strcmp(e->check, "totals") == 0 || strcmp(e->check, "invalid") == 0) {
			char *end;

			e->records = strtoull(col[2], &end, 10);
			assert_true(*end == '\0' && end != col[2]);
			e->pkts = strtoull(col[3], &end, 10);
			assert_true(*end == '\0' && end != col[3]);
			e->bytes = strtoull(col[4], &end, 10);
			assert_true(*end == '\0' && end != col[4]);
		}
		col_copy(e->detail, sizeof(e->detail), col[5]);
		assert_true(strlen(col[7]) + strlen(col[6]) + 16 < sizeof(e->why));
		snprintf(e->why, sizeof(e->why), "%s (source: %s)", col[7], col[6]);
		n_expected++;
	}
	fclose(fp);
	assert_true(n_expected > 0);
}

/* The row of file with the given check ("totals", "invalid"), or NULL. */
static inline const struct expect *
expected_of(const char *file, const char *check)
{
	expected_load();
	for (unsigned int i = 0; i < n_expected; i++)
		if (strcmp(expected[i].file, file) == 0 && strcmp(expected[i].check, check) == 0)
			return &expected[i];
	return NULL;
}

/* The N of "<reason>=N" in a detail column, -1 when the reason is not listed. */
static inline long long
detail_count(const char *detail, const char *reason)
{
	size_t l = strlen(reason);
	const char *p = detail;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, reason, l) == 0 && p[l] == '=')
			return strtoll(p + l + 1, NULL, 10);
		p = strchr(p, ';');
		if (p != NULL)
			p++;
	}
	return -1;
}

/*
 * Every TRUTH.tsv row of proto: datagrams as tshark counts them; records, packets and bytes as
 * TRUTH or, for a capture with a totals/invalid row in the table, as that row says. An invalid
 * capture must be rejected datagram by datagram with exactly the reasons of its detail column;
 * no other capture may have a bad datagram.
 */
static inline void
run_corpus(const char *proto)
{
	char path[1024], line[2048];
	FILE *truth;
	unsigned int files = 0;

	snprintf(path, sizeof(path), "%s/TRUTH.tsv", NM_CORPORA);
	truth = fopen(path, "r");
	if (truth == NULL) {
		print_message("corpus absent at %s: skipping the corpus test\n", NM_CORPORA);
		skip();
	}
	expected_load();
	while (fgets(line, sizeof(line), truth) != NULL) {
		char file[512], protos[64];
		unsigned long long dgrams, records, pkts, bytes;
		const struct expect *e, *inv;
		struct fixture *f;
		const struct nm_proto_stats *ps;

		if (sscanf(line, "%511s %63s %llu %llu %llu %llu", file, protos, &dgrams, &records,
			   &pkts, &bytes) != 6 ||
		    strcmp(protos, proto) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", NM_CORPORA, file);
		f = fixture_new();
		feed_pcap(f, path);
		ps = strcmp(proto, "nf9") == 0 ? &f->st.nf9 : &f->st.ipfix;
		inv = expected_of(file, "invalid");
		e = inv != NULL ? inv : expected_of(file, "totals");
		print_message(
			"%-72s truth %llu/%llu/%llu/%llu ours %llu/%u/%llu/%llu "
			"(dgrams/recs/pkts/bytes) held %llu late %llu dropped %llu%s%s\n",
			file, dgrams, records, pkts, bytes, (unsigned long long)ps->datagrams,
			f->s.n, f->s.pkts, f->s.bytes, (unsigned long long)f->st.pending_queued,
			(unsigned long long)f->st.pending_decoded,
			(unsigned long long)f->st.pending_dropped,
			e != NULL ? "\n    expected difference: " : "", e != NULL ? e->why : "");
		assert_int_equal(ps->datagrams, dgrams);
		if (e != NULL) {
			assert_int_equal(f->s.n, e->records);
			assert_int_equal(f->s.pkts, e->pkts);
			assert_int_equal(f->s.bytes, e->bytes);
		} else {
			assert_int_equal(f->s.n, records);
			assert_int_equal(f->s.pkts, pkts);
			assert_int_equal(f->s.bytes, bytes);
		}
		/* Invalid captures are rejected whole, once per datagram, for the listed reasons.
		 */
		assert_int_equal(ps->bad, inv != NULL ? dgrams : 0);
		if (inv != NULL) {
			for (int r = 0; r < NM_DECODE_ERR_MAX; r++) {
				long long want = detail_count(inv->detail, nm_decode_err_name(r));

				if (want >= 0)
					assert_int_equal(f->st.err[r], want);
			}
		}
		files++;
		fixture_free(f);
	}
	fclose(truth);
	assert_true(files >= 5);
}

static inline int
setup_rcu(void **state)
{
	(void)state;
	rcu_register_thread();
	return 0;
}

static inline int
teardown_rcu(void **state)
{
	(void)state;
	rcu_unregister_thread();
	return 0;
}

#endif /* NM_TEST_DECODE_FIXTURE_H */
