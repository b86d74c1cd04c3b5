/* SPDX-License-Identifier: BSD-3-Clause */
/* NetFlow v9 decoder: hand-built datagrams, hostile input, and the corpus against TRUTH.tsv. */
#include "decode_fixture.h"
#include "decode/ipfix_prog.h"

#define PROTO "nf9"

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

/*
 * The specialised form through the decoder: the cached template of test_fields' layout is all
 * moves, and reduced-size / odd-length integers (3-byte octets, 5-byte packets, 1-byte
 * interfaces, 3-byte AS numbers, a 6-byte MAC, a 7-byte flow start in ms since the epoch) come
 * out as their values. The same fields with a second source port (NBAR style) keep the two port
 * steps generic and give the last non-zero port.
 */
static void
test_compiled_form(void **state)
{
	static const uint16_t fl[][2] = {{8, 4},  {12, 4}, {1, 3},  {2, 5},  {10, 1},
					 {14, 1}, {16, 3}, {17, 3}, {56, 6}, {152, 7},
					 {7, 2},  {11, 2}, {4, 1},  {48, 2}, {180, 2}};
	struct nm_tmpl_key key;
	const struct nm_tmpl *t;
	const struct nm_flow_rec *r;
	unsigned int n, i, pass;
	struct msg m;

	(void)state;
	for (pass = 0; pass < 2; pass++) {
		struct fixture *f = fixture_new();

		n = pass == 0 ? 14 : 15; /* pass 1: with udpSourcePort (180) */
		msg_begin(&m, 2, 7);
		set_begin(&m, 0);
		p16(&m, 300);
		p16(&m, (uint16_t)n);
		for (i = 0; i < n; i++) {
			p16(&m, fl[i][0]);
			p16(&m, fl[i][1]);
		}
		set_end(&m);
		set_begin(&m, 300);
		pbytes(&m, (uint8_t[]){10, 1, 2, 3}, 4);
		pbytes(&m, (uint8_t[]){10, 4, 5, 6}, 4);
		pbytes(&m, (uint8_t[]){0x01, 0x02, 0x03}, 3);		  /* 66051 */
		pbytes(&m, (uint8_t[]){0x00, 0x00, 0x01, 0x00, 0x01}, 5); /* 65537 */
		p8(&m, 200);
		p8(&m, 201);
		pbytes(&m, (uint8_t[]){0x01, 0x00, 0x00}, 3); /* 65536 */
		pbytes(&m, (uint8_t[]){0x00, 0xfd, 0xe8}, 3); /* 65000 */
		pbytes(&m, (uint8_t[]){0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, 6);
		/* 1700000050123 ms in 7 bytes: 0x018BCFE62BCB */
		pbytes(&m, (uint8_t[]){0x00, 0x01, 0x8b, 0xcf, 0xe6, 0x2b, 0xcb}, 7);
		p16(&m, 0); /* L4_SRC_PORT 0: NBAR fills the UDP one */
		p16(&m, 123);
		p8(&m, 17);
		p16(&m, 9);
		if (pass == 1)
			p16(&m, 4500);
		set_end(&m);
		assert_int_equal(decode(f, &m), 1);
		r = rec(f, 0);
		assert_string_equal(astr(r->key.src_addr), "10.1.2.3");
		assert_string_equal(astr(r->key.dst_addr), "10.4.5.6");
		assert_int_equal(r->key.etype, 0x0800);
		assert_int_equal(r->bytes, 66051);
		assert_int_equal(r->packets, 65537);
		assert_int_equal(r->key.in_if, 200);
		assert_int_equal(r->key.out_if, 201);
		assert_int_equal(r->key.src_as, 65536);
		assert_int_equal(r->key.dst_as, 65000);
		assert_int_equal(r->key.src_mac, 0x021122334455ULL);
		assert_int_equal(r->key.time_flow_start, 1700000050);
		assert_int_equal(r->key.time_flow_end, 1700000100); /* no end: the export time */
		assert_int_equal(r->key.src_port, pass == 0 ? 0 : 4500);
		assert_int_equal(r->key.dst_port, 123);
		assert_int_equal(r->key.proto, 17);
		assert_int_equal(r->key.observation_domain_id, 7);

		memset(&key, 0, sizeof(key));
		memcpy(key.exporter, f->meta.exporter, NM_ADDR_LEN);
		key.domain = 7;
		key.id = 300;
		key.proto = NM_TMPL_NF9;
		t = nm_tmpl_lookup(f->d.tmpl, &key);
		assert_non_null(t);
		assert_true(t->flags & NM_TF_FAST);
		assert_true(t->flags & NM_TF_HAS_SAMPLER);
		/*
		 * pass 0: 14 moves and the step that ends them; pass 1: 13 moves, 2 port steps.
		 * The moves that are byte permutations (addresses, counters, interfaces, ASes,
		 * MAC, ports, protocol) run as byte shuffles (3 steps each, fewer than the moves
		 * they replace), the rest (milliseconds, sampler id) as moves.
		 */
		assert_true(t->flags & NM_TF_SHUF);
		for (i = 0; t->steps[i].op == NM_FOP_SHUF; i += 3)
			;
		assert_true(i > 0 && i / 3 < 12);
		for (; i < t->n_steps; i++) {
			if (pass == 0 && i == t->n_steps - 1u)
				assert_int_equal(t->steps[i].op, NM_OP_SKIP);
			else if (pass == 1 && i >= t->n_steps - 2u)
				assert_int_equal(t->steps[i].op, NM_OP_SPORT);
			else
				assert_true(t->steps[i].op >= NM_FOP_A4);
		}
		/* the sampler id: the last move */
		assert_int_equal(t->steps[t->n_steps - (pass == 0 ? 2 : 3)].op, NM_FOP_S32);
		fixture_free(f);
	}
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

static void
test_corpus(void **state)
{
	(void)state;
	run_corpus(PROTO);
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),		 cmocka_unit_test(test_uptime_wrap),
		cmocka_unit_test(test_options_sampling), cmocka_unit_test(test_held),
		cmocka_unit_test(test_hostile),		 cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_pairs),	 cmocka_unit_test(test_compiled_form),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
