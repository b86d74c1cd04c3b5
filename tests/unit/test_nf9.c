/* SPDX-License-Identifier: BSD-3-Clause */
/* NetFlow v9 decoder: hand-built datagrams, hostile input, and the corpus against TRUTH.tsv. */
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
#define PROTO "nf9"

struct sink {
	struct nm_flow_rec all[SINK_KEEP];
	unsigned int n; /* records seen */
	unsigned long long pkts, bytes;
};

static void
sink_flush(struct nm_rec_batch *b, void *ctx)
{
	struct sink *s = ctx;

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

static struct fixture *
fixture_new(void)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct nm_tmpl_params tp = {0};

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

static void
fixture_free(struct fixture *f)
{
	nm_tmpl_cache_free(f->d.tmpl);
	free(f);
}

/* ---- a byte builder for hand-made messages ---- */

struct msg {
	uint8_t b[8192];
	size_t n;
	size_t set_at;
};

static void
p8(struct msg *m, uint8_t v)
{
	m->b[m->n++] = v;
}

static void
p16(struct msg *m, uint16_t v)
{
	p8(m, (uint8_t)(v >> 8));
	p8(m, (uint8_t)v);
}

static void
p32(struct msg *m, uint32_t v)
{
	p16(m, (uint16_t)(v >> 16));
	p16(m, (uint16_t)v);
}

static void
pbytes(struct msg *m, const void *v, size_t n)
{
	memcpy(m->b + m->n, v, n);
	m->n += n;
}

/* v9 header: count, sysUptime 100 s, unix secs 1700000100, sequence 4242, source id. */
static void
msg_begin(struct msg *m, uint16_t count, uint32_t source_id)
{
	m->n = 0;
	p16(m, 9);
	p16(m, count);
	p32(m, 100000);
	p32(m, 1700000100);
	p32(m, 4242);
	p32(m, source_id);
}

static void
set_begin(struct msg *m, uint16_t id)
{
	m->set_at = m->n;
	p16(m, id);
	p16(m, 0);
}

static void
set_end(struct msg *m)
{
	size_t l = m->n - m->set_at;

	m->b[m->set_at + 2] = (uint8_t)(l >> 8);
	m->b[m->set_at + 3] = (uint8_t)l;
}

static int
decode(struct fixture *f, struct msg *m)
{
	int r = nm_decode_datagram(&f->d, m->b, m->n, &f->meta, &f->b);

	rcu_quiescent_state();
	return r;
}

static const struct nm_flow_rec *
rec(struct fixture *f, unsigned int i)
{
	nm_rec_batch_flush(&f->b);
	assert_true(i < f->s.n);
	return &f->s.all[i];
}

static const char *
astr(const uint8_t a[NM_ADDR_LEN])
{
	static char buf[4][NM_ADDR_STRLEN];
	static unsigned int i;

	return nm_addr_str(a, buf[i++ % 4], NM_ADDR_STRLEN);
}

/* ---- hand-built datagrams ---- */

static void
tmpl_v9(struct msg *m, uint16_t tid)
{
	static const uint16_t f[][2] = {
		{8, 4},	 {12, 4}, {7, 2},  {11, 2}, {4, 1},  {1, 4},  {2, 4},
		{10, 2}, {14, 2}, {22, 4}, {21, 4}, {16, 2}, {17, 2}, {9, 1},
		{13, 1}, {15, 4}, {48, 1}, {6, 1},  {5, 1},  {61, 1}, {60, 1},
	};
	unsigned int i, n = sizeof(f) / sizeof(f[0]);

	set_begin(m, 0);
	p16(m, tid);
	p16(m, (uint16_t)n);
	for (i = 0; i < n; i++) {
		p16(m, f[i][0]);
		p16(m, f[i][1]);
	}
	set_end(m);
}

static void
data_v9(struct msg *m, unsigned int i, uint8_t sampler)
{
	pbytes(m, (uint8_t[]){10, 0, 0, (uint8_t)i}, 4);
	pbytes(m, (uint8_t[]){198, 51, 100, 7}, 4);
	p16(m, 53);
	p16(m, 40000);
	p8(m, 17);
	p32(m, 100 * (i + 1));
	p32(m, i + 1);
	p16(m, 5);
	p16(m, 6);
	p32(m, 90000); /* first: 10 s before sysUptime */
	p32(m, 99000); /* last: 1 s before */
	p16(m, 64512);
	p16(m, 64513);
	p8(m, 24);
	p8(m, 8);
	pbytes(m, (uint8_t[]){192, 0, 2, 254}, 4);
	p8(m, sampler);
	p8(m, 0x1b);
	p8(m, 0xb8);
	p8(m, 0);
	p8(m, 4);
}

static void
test_fields(void **state)
{
	struct fixture *f = fixture_new();
	const struct nm_flow_rec *r;
	struct msg m;

	(void)state;
	msg_begin(&m, 3, 33);
	tmpl_v9(&m, 256);
	set_begin(&m, 256);
	data_v9(&m, 1, 0);
	data_v9(&m, 2, 0);
	p8(&m, 0);
	p8(&m, 0); /* padding */
	set_end(&m);
	assert_int_equal(decode(f, &m), 2);
	r = rec(f, 1);
	assert_int_equal(r->key.type, NM_FLOW_NF9);
	assert_string_equal(astr(r->key.src_addr), "10.0.0.2");
	assert_string_equal(astr(r->key.dst_addr), "198.51.100.7");
	assert_string_equal(astr(r->key.next_hop), "192.0.2.254");
	assert_string_equal(astr(r->key.sampler_addr), "192.0.2.9");
	assert_int_equal(r->key.src_port, 53);
	assert_int_equal(r->key.dst_port, 40000);
	assert_int_equal(r->key.proto, 17);
	assert_int_equal(r->bytes, 300);
	assert_int_equal(r->packets, 3);
	assert_int_equal(r->key.in_if, 5);
	assert_int_equal(r->key.out_if, 6);
	assert_int_equal(r->key.time_flow_start, 1700000090);
	assert_int_equal(r->key.time_flow_end, 1700000099);
	assert_int_equal(r->key.src_as, 64512);
	assert_int_equal(r->key.dst_as, 64513);
	assert_int_equal(r->key.src_net, 24);
	assert_int_equal(r->key.dst_net, 8);
	assert_int_equal(r->key.tcp_flags, 0x1b);
	assert_int_equal(r->key.ip_tos, 0xb8);
	assert_int_equal(r->key.flow_direction, 0);
	assert_int_equal(r->key.etype, 0x0800);
	assert_int_equal(r->key.sequence_num, 4242);
	assert_int_equal(r->key.observation_domain_id, 33);
	assert_int_equal(r->key.sampling_rate, 1);
	assert_int_equal(f->st.nf9.records, 2);
	assert_int_equal(f->st.nf9.bad, 0);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_COUNT], 0);
	fixture_free(f);
}

/* sysUptime wrapped past 2^32 ms between the flow's start and the export. */
static void
test_uptime_wrap(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;

	(void)state;
	msg_begin(&m, 2, 1);
	m.b[4] = 0;
	m.b[5] = 0;
	m.b[6] = 0x13;
	m.b[7] = 0x88; /* sysUptime 5000 ms */
	set_begin(&m, 0);
	p16(&m, 256);
	p16(&m, 3);
	p16(&m, 22);
	p16(&m, 4);
	p16(&m, 21);
	p16(&m, 4);
	p16(&m, 1);
	p16(&m, 4);
	set_end(&m);
	set_begin(&m, 256);
	p32(&m, 0xffffffffu - 4999); /* 10 s before "now" across the wrap */
	p32(&m, 4000);
	p32(&m, 1);
	set_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 0)->key.time_flow_start, 1700000090);
	assert_int_equal(rec(f, 0)->key.time_flow_end, 1700000099);
	fixture_free(f);
}

/* Options template (scope System) with samplerId + samplingInterval; data carrying samplerId. */
static void
test_options_sampling(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;

	(void)state;
	f->d.default_sampling_rate = 3;
	msg_begin(&m, 10, 7);
	set_begin(&m, 1);
	p16(&m, 300);
	p16(&m, 4); /* scope length */
	p16(&m, 8); /* option length */
	p16(&m, 1);
	p16(&m, 4); /* scope System */
	p16(&m, 48);
	p16(&m, 1);
	p16(&m, 34);
	p16(&m, 4);
	p16(&m, 0); /* padding */
	set_end(&m);
	set_begin(&m, 300);
	p32(&m, 0);
	p8(&m, 2);
	p32(&m, 512);
	p32(&m, 0);
	p8(&m, 4);
	p32(&m, 1024);
	set_end(&m);
	/* Juniper SRX: scope field of length 0, no sampler id: the domain's rate. */
	set_begin(&m, 1);
	p16(&m, 301);
	p16(&m, 4);
	p16(&m, 4);
	p16(&m, 1);
	p16(&m, 0);
	p16(&m, 50);
	p16(&m, 2);
	p16(&m, 0);
	set_end(&m);
	set_begin(&m, 301);
	p16(&m, 100);
	set_end(&m);
	tmpl_v9(&m, 256);
	set_begin(&m, 256);
	data_v9(&m, 0, 2);
	data_v9(&m, 1, 4);
	data_v9(&m, 2, 9); /* unknown sampler: the domain-wide rate */
	set_end(&m);
	assert_int_equal(decode(f, &m), 3);
	assert_int_equal(f->st.options_records, 3);
	assert_int_equal(rec(f, 0)->key.sampling_rate, 512);
	assert_int_equal(rec(f, 1)->key.sampling_rate, 1024);
	assert_int_equal(rec(f, 2)->key.sampling_rate, 100);
	/* Another source id of the same exporter: the default. */
	msg_begin(&m, 2, 8);
	tmpl_v9(&m, 256);
	set_begin(&m, 256);
	data_v9(&m, 0, 2);
	set_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 3)->key.sampling_rate, 3);
	fixture_free(f);
}

/* Data before its template in the same datagram and across datagrams; zero-filled tail. */
static void
test_held(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	unsigned int i;

	(void)state;
	msg_begin(&m, 2, 1);
	set_begin(&m, 256);
	data_v9(&m, 0, 0);
	set_end(&m);
	for (i = 0; i < 64; i++)
		p8(&m, 0); /* Palo Alto pads datagrams with zeros */
	assert_int_equal(decode(f, &m), 0);
	assert_int_equal(f->st.pending_queued, 1);
	assert_int_equal(f->st.nf9.bad, 0);
	msg_begin(&m, 2, 1);
	set_begin(&m, 256);
	data_v9(&m, 1, 0);
	set_end(&m);
	tmpl_v9(&m, 256);
	assert_int_equal(decode(f, &m), 2);
	assert_int_equal(f->st.pending_decoded, 2);
	assert_int_equal(rec(f, 0)->bytes, 100);
	assert_int_equal(rec(f, 1)->bytes, 200);
	/* Held records keep their own datagram's header. */
	assert_int_equal(rec(f, 0)->key.time_flow_end, 1700000099);
	fixture_free(f);
}

static void
test_hostile(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	unsigned int i;
	uint64_t bad, recs;

	(void)state;
	msg_begin(&m, 1, 1);
	tmpl_v9(&m, 256);
	assert_int_equal(nm_nf9_decode(&f->d, m.b, 19, &f->meta, &f->b), -NM_DECODE_ERR_TRUNCATED);
	m.b[1] = 8;
	assert_int_equal(nm_nf9_decode(&f->d, m.b, m.n, &f->meta, &f->b),
			 -NM_DECODE_ERR_BAD_VERSION);
	/* Flowset length < 4 (not zero padding) and past the datagram. */
	msg_begin(&m, 1, 1);
	p16(&m, 256);
	p16(&m, 2);
	p32(&m, 1);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	msg_begin(&m, 1, 1);
	p16(&m, 256);
	p16(&m, 100);
	p32(&m, 1);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	/* 600 fields; field count past the flowset. */
	msg_begin(&m, 1, 1);
	set_begin(&m, 0);
	p16(&m, 256);
	p16(&m, 600);
	for (i = 0; i < 600; i++) {
		p16(&m, 1);
		p16(&m, 4);
	}
	set_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	msg_begin(&m, 1, 1);
	set_begin(&m, 0);
	p16(&m, 256);
	p16(&m, 3);
	p16(&m, 1);
	p16(&m, 4);
	set_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Options template with a scope length that is not whole fields. */
	msg_begin(&m, 1, 1);
	set_begin(&m, 1);
	p16(&m, 300);
	p16(&m, 3);
	p16(&m, 4);
	p16(&m, 1);
	p16(&m, 4);
	p16(&m, 34);
	p16(&m, 4);
	set_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Only zero-length fields: a record of 0 bytes is refused, the data set cannot spin. */
	msg_begin(&m, 2, 1);
	set_begin(&m, 0);
	p16(&m, 256);
	p16(&m, 1);
	p16(&m, 1);
	p16(&m, 0);
	set_end(&m);
	set_begin(&m, 256);
	p32(&m, 0);
	set_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Reserved flowset ids 2..255 are skipped. */
	msg_begin(&m, 3, 1);
	set_begin(&m, 7);
	p32(&m, 1);
	set_end(&m);
	tmpl_v9(&m, 257);
	set_begin(&m, 257);
	data_v9(&m, 0, 0);
	set_end(&m);
	assert_int_equal(decode(f, &m), 1);
	/*
	 * A count of flowsets (3 here) instead of records is what many exporters send: accepted.
	 * A count below the flowsets fits no reading of RFC 3954's Count: the datagram is
	 * rejected whole (no record, no template learnt) and counted.
	 */
	m.b[2] = 0;
	m.b[3] = 3;
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_COUNT], 0);
	m.b[2] = 0;
	m.b[3] = 2;
	bad = f->st.nf9.bad;
	recs = f->st.nf9.records;
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_COUNT);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_COUNT], 1);
	assert_int_equal(f->st.nf9.bad, bad + 1);
	assert_int_equal(f->st.nf9.records, recs);
	fixture_free(f);
}

/* ---- corpus ---- */

/* A tiny classic-pcap reader: enough for the corpus (µs/ns magic, either byte order). */
struct pcap_rd {
	FILE *fp;
	int swap;
	int nsec;
	uint32_t linktype;
};

static uint32_t
sw32(const struct pcap_rd *r, uint32_t v)
{
	return r->swap ? __builtin_bswap32(v) : v;
}

static int
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
static long
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

static int
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
static unsigned int
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

/*
 * Where the engine and tshark's totals differ, and why. Every number here is what the engine
 * produces, asserted exactly; the reason says why tshark's differs. Files not listed must match
 * TRUTH.tsv exactly.
 */
struct expect {
	const char *file;
	unsigned long long records, pkts, bytes;
	const char *why;
};

static const struct expect expected[] = {
	{"generated/softflowd-psamp.pcap", 2445, 2445, 1384632,
	 "PSAMP packet reports have no octetDeltaCount, so tshark counts none; each is one sampled "
	 "packet of sectionExportedOctets bytes (RECIPES.md: sum 1384632)"},
	{"generated/softflowd-v10-bidir.pcap", 409, 2445, 2651189,
	 "RFC 5103 biflows: tshark counts 528 counter values (forward and reverse, zeros too); the "
	 "engine makes 264 forward records and a reverse one for the 145 with reverse traffic"},
	{"public/akvorado/historic/ethernet-over-mpls-with-control-word.pcap", 10, 10, 14557,
	 "the data set precedes its template: held, decoded when the template arrives "
	 "(10 dataLinkFrameSection records, one packet of dataLinkFrameSize bytes each)"},
	{"public/akvorado/historic/ipfix_v10_with_mpls_labels.pcap", 127, 380, 33820,
	 "10 data sets precede their template: 4 are held per (exporter, domain), so 6 are decoded "
	 "late (+22 records, +65 packets, +5785 bytes) and 4 dropped (pending_dropped)"},
	{"public/logstash-codec-netflow/ipfix_nokia_bras.pcap", 1, 0, 0,
	 "a flow record without counters: tshark counts records by their octet values"},
	{"public/logstash-codec-netflow/ipfix_procera.pcap", 8, 0, 0,
	 "flow records without counters"},
	{"public/logstash-codec-netflow/ipfix_options_template_from_juniper_mx240_junos_15_1_r6_s3.pcap",
	 0, 0, 0,
	 "tshark's 76 packets are exportedFlowRecordTotalCount-style statistics of an "
	 "options record (cflow.packetsexp), not traffic"},
	{"public/logstash-codec-netflow/ipfix_yaf_basic_with_applabel.pcap", 4, 10, 596,
	 "YAF counts with octetTotalCount/packetTotalCount (85/86; tshark files them as permanent "
	 "counters, not cflow.octets) and RFC 5103 reverse counters"},
	{"public/pmacct/112-IPFIXv10-CISCO-options-map-reassignment/traffic-00.pcap", 9, 19, 1197,
	 "the collector address changes mid-capture; Wireshark keys templates by address and port "
	 "pair and decodes nothing, the engine keys by exporter and domain (SOURCES.md: 9/19/1197)"},
	{"public/akvorado/netflow/data+templates.pcap", 21, 66, 58329,
	 "a data flowset precedes its own template in the same datagram: held and decoded when the "
	 "template follows (+11 records, +18 packets, +3737 bytes)"},
	{"public/akvorado/netflow/nat.pcap", 9, 0, 0, "NAT events without counters"},
	{"public/logstash-codec-netflow/netflow_9_cisco_asa.pcap", 14, 0, 888,
	 "ASA NSEL events count bytes in octetTotalCount (85), which tshark does not call octets"},
	{"public/logstash-codec-netflow/netflow_9_cisco_asa_2.pcap", 19, 0, 0,
	 "NSEL events without counters"},
	{"public/logstash-codec-netflow/netflow_9_macaddress.pcap", 29, 0, 0,
	 "flow records without counters"},
	{"public/logstash-codec-netflow/netflow_9_fortigate_fortios_5_2_1.pcap", 1, 3, 152,
	 "tshark adds OctetsExp/PacketsExp (exporter statistics in an options record) to the totals"},
	{"public/logstash-codec-netflow/netflow_9_h3c.pcap", 16, 6113, 8729687,
	 "tshark marks the data flowset malformed after the first record; all 16 are well-formed "
	 "(SOURCES.md's independent decoder: 16/6113/8729687)"},
	{"public/logstash-codec-netflow/netflow_9_invalid_01.pcap", 0, 0, 0,
	 "the header count (2) is below the 6 flowsets (and the 6 records: 2 templates, 1 options "
	 "template, 1 options record, 2 flow records), which no reading of RFC 3954's Count allows; "
	 "the datagram is rejected whole and counted as bad_count (tshark decodes the first 2 "
	 "flowsets, both templates: 0 records too)"},
};

static const struct expect *
expected_of(const char *file)
{
	for (size_t i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		if (strcmp(expected[i].file, file) == 0)
			return &expected[i];
	return NULL;
}

static void
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
	while (fgets(line, sizeof(line), truth) != NULL) {
		char file[512], protos[64];
		unsigned long long dgrams, records, pkts, bytes;
		const struct expect *e;
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
		e = expected_of(file);
		print_message(
			"%-72s truth %llu/%llu/%llu/%llu ours %llu/%u/%llu/%llu "
			"(dgrams/recs/pkts/bytes) held %llu late %llu dropped %llu%s%s\n",
			file, dgrams, records, pkts, bytes, (unsigned long long)ps->datagrams,
			f->s.n, f->s.pkts, f->s.bytes, (unsigned long long)f->st.pending_queued,
			(unsigned long long)f->st.pending_decoded,
			(unsigned long long)f->st.pending_dropped,
			e != NULL ? "\n    expected difference: " : "", e != NULL ? e->why : "");
		assert_int_equal(ps->datagrams, dgrams);
		/*
		 * No capture of the corpus has a malformed set the engine should reject; the
		 * invalid ones are rejected whole, once per datagram.
		 */
		assert_int_equal(ps->bad, strstr(file, "invalid") != NULL ? dgrams : 0);
		if (e != NULL) {
			assert_int_equal(f->s.n, e->records);
			assert_int_equal(f->s.pkts, e->pkts);
			assert_int_equal(f->s.bytes, e->bytes);
		} else {
			assert_int_equal(f->s.n, records);
			assert_int_equal(f->s.pkts, pkts);
			assert_int_equal(f->s.bytes, bytes);
		}
		if (strstr(file, "invalid") != NULL)
			assert_true(f->st.err[NM_DECODE_ERR_BAD_COUNT] > 0);
		files++;
		fixture_free(f);
	}
	fclose(truth);
	assert_true(files >= 5);
}

static void
test_corpus(void **state)
{
	(void)state;
	run_corpus(PROTO);
}

/* Feed several captures into one cache, in order (akvorado's template/data file pairs). */
static struct fixture *
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

static bool
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

/* Template and data captures fed in order, against SOURCES.md's independent decoder / tshark. */
static void
test_corpus_pairs(void **state)
{
	static const char *const plain[] = {"template.pcap", "data.pcap", NULL};
	static const char *const icmp[] = {"icmp-template.pcap", "icmp-data.pcap", NULL};
	static const char *const inl[] = {"samplingrate-template.pcap", "samplingrate-data.pcap",
					  NULL};
	static const char *const multi[] = {"multiplesamplingrates-options-template.pcap",
					    "multiplesamplingrates-options-data.pcap",
					    "multiplesamplingrates-template.pcap",
					    "multiplesamplingrates-data.pcap", NULL};
	static const char *const opts[] = {"options-template.pcap", "options-data.pcap",
					   "template.pcap", "data.pcap", NULL};
	unsigned long long r2000 = 0, r4000 = 0;
	struct fixture *f;
	unsigned int i;

	(void)state;
	if (!corpus_present())
		skip();
	f = feed_files(plain);
	assert_int_equal(f->s.n, 4);
	assert_int_equal(f->s.pkts, 4);
	assert_int_equal(f->s.bytes, 5848);
	assert_int_equal(f->st.nf9.bad, 0);
	fixture_free(f);
	/* icmp: 2 records in the template capture, 2 in the data one; tshark 4/376. */
	f = feed_files(icmp);
	assert_int_equal(f->s.n, 4);
	assert_int_equal(f->s.pkts, 4);
	assert_int_equal(f->s.bytes, 376);
	for (i = 0; i < f->s.n; i++)
		print_message("icmp %u: %s -> %s proto %u type %u code %u\n", i,
			      astr(f->s.all[i].key.src_addr), astr(f->s.all[i].key.dst_addr),
			      f->s.all[i].key.proto, f->s.all[i].key.icmp_type,
			      f->s.all[i].key.icmp_code);
	/* tshark: ICMP type/code in the destination port (0x8000 echo request, 0x8100 reply). */
	assert_int_equal(f->s.all[0].key.icmp_type, 128);
	assert_int_equal(f->s.all[1].key.icmp_type, 129);
	assert_int_equal(f->s.all[0].key.etype, 0x86dd);
	assert_int_equal(f->s.all[2].key.etype, 0x0800);
	fixture_free(f);
	/* samplingInterval 2048 in every data record. */
	f = feed_files(inl);
	assert_int_equal(f->s.n, 6);
	assert_int_equal(f->s.bytes, 3740);
	for (i = 0; i < f->s.n; i++)
		assert_int_equal(f->s.all[i].key.sampling_rate, 2048);
	fixture_free(f);
	/* Per-sampler rates from options data (2000 and 4000), samplerId in the data records. */
	f = feed_files(multi);
	assert_int_equal(f->s.n, 12);
	assert_int_equal(f->s.pkts, 38);
	assert_int_equal(f->s.bytes, 14818);
	for (i = 0; i < f->s.n; i++) {
		r2000 += f->s.all[i].key.sampling_rate == 2000;
		r4000 += f->s.all[i].key.sampling_rate == 4000;
	}
	print_message("multiplesamplingrates: %llu records at 2000, %llu at 4000\n", r2000, r4000);
	assert_int_equal(r2000 + r4000, 12);
	assert_true(r2000 > 0 && r4000 > 0);
	fixture_free(f);
	/* options-data: samplingInterval 30000 for the exporter's samplers. */
	f = feed_files(opts);
	assert_int_equal(f->st.options_records, 4);
	assert_int_equal(f->s.n, 4);
	for (i = 0; i < f->s.n; i++)
		assert_int_equal(f->s.all[i].key.sampling_rate, 30000);
	fixture_free(f);
}

static int
setup_rcu(void **state)
{
	(void)state;
	rcu_register_thread();
	return 0;
}

static int
teardown_rcu(void **state)
{
	(void)state;
	rcu_unregister_thread();
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),		 cmocka_unit_test(test_uptime_wrap),
		cmocka_unit_test(test_options_sampling), cmocka_unit_test(test_held),
		cmocka_unit_test(test_hostile),		 cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_pairs),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
