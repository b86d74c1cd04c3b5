/* SPDX-License-Identifier: BSD-3-Clause */
/* IPFIX decoder: hand-built messages, hostile input, and the corpus against TRUTH.tsv. */
#include "decode_fixture.h"
#include "decode/ipfix_prog.h"

#define PROTO "ipfix"

/* IPFIX header; the length is patched by msg_end(). */
static void
msg_begin(struct msg *m, uint32_t domain)
{
	m->n = 0;
	p16(m, 10);
	p16(m, 0);
	p32(m, 1700000500); /* export time */
	p32(m, 77);	    /* sequence */
	p32(m, domain);
}

static size_t
msg_end(struct msg *m)
{
	m->b[2] = (uint8_t)(m->n >> 8);
	m->b[3] = (uint8_t)m->n;
	return m->n;
}

/* ---- hand-built messages ---- */

/* Template 256: most IPv4 dimensions, reduced-size counters, MPLS, MACs, VLAN, ms times. */
static void
tmpl_v4(struct msg *m, uint16_t tid)
{
	static const uint16_t f[][2] = {
		{8, 4},	  {12, 4}, {7, 2},   {11, 2},  {4, 1},	 {1, 4},   {2, 2},
		{10, 2},  {14, 4}, {16, 4},  {17, 4},  {152, 8}, {153, 8}, {56, 6},
		{80, 6},  {58, 2}, {59, 2},  {6, 1},   {5, 1},	 {15, 4},  {9, 1},
		{13, 1},  {61, 1}, {89, 1},  {192, 1}, {70, 3},	 {71, 3},  {234, 4},
		{235, 4}, {32, 2}, {128, 4}, {54, 4},  {88, 2},
	};
	unsigned int i, n = sizeof(f) / sizeof(f[0]);

	set_begin(m, 2);
	p16(m, tid);
	p16(m, (uint16_t)n);
	for (i = 0; i < n; i++) {
		p16(m, f[i][0]);
		p16(m, f[i][1]);
	}
	set_end(m);
}

static void
data_v4(struct msg *m, unsigned int i)
{
	pbytes(m, (uint8_t[]){10, 0, 0, (uint8_t)i}, 4);
	pbytes(m, (uint8_t[]){198, 51, 100, 7}, 4);
	p16(m, 443);
	p16(m, 51000);
	p8(m, 6);
	p32(m, 1000 * (i + 1));	   /* octetDeltaCount in 4 bytes */
	p16(m, (uint16_t)(i + 1)); /* packetDeltaCount in 2 bytes */
	p16(m, 3);
	p32(m, 70000);
	p32(m, 65001);
	p32(m, 4200000000u);
	p64(m, 1700000400123ULL);
	p64(m, 1700000450999ULL);
	pbytes(m, (uint8_t[]){0x00, 0x11, 0x22, 0x33, 0x44, 0x55}, 6);
	pbytes(m, (uint8_t[]){0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb}, 6);
	p16(m, 100);
	p16(m, 200);
	p8(m, 0x12);
	p8(m, 0x20);
	pbytes(m, (uint8_t[]){192, 0, 2, 1}, 4);
	p8(m, 24);
	p8(m, 16);
	p8(m, 1);
	p8(m, 0x40);
	p8(m, 63);
	pbytes(m, (uint8_t[]){0x04, 0xe2, 0x50}, 3); /* label 20005, bos 0 */
	pbytes(m, (uint8_t[]){0x7f, 0xfd, 0xa1}, 3); /* label 524250, bos 1 */
	p32(m, 7);
	p32(m, 9);
	p16(m, 0x0303);
	p32(m, 65100);
	p32(m, 4242);
	p16(m, 185);
}

static void
test_fields(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	const struct nm_flow_rec *r;

	(void)state;
	msg_begin(&m, 42);
	tmpl_v4(&m, 256);
	set_begin(&m, 256);
	data_v4(&m, 1);
	data_v4(&m, 2);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 2);
	r = rec(f, 1);
	assert_string_equal(astr(r->key.src_addr), "10.0.0.2");
	assert_string_equal(astr(r->key.dst_addr), "198.51.100.7");
	assert_string_equal(astr(r->key.next_hop), "192.0.2.1");
	assert_string_equal(astr(r->key.sampler_addr), "192.0.2.9");
	assert_int_equal(r->key.type, NM_FLOW_IPFIX);
	assert_int_equal(r->key.etype, 0x0800);
	assert_int_equal(r->key.src_port, 443);
	assert_int_equal(r->key.dst_port, 51000);
	assert_int_equal(r->key.proto, 6);
	assert_int_equal(r->bytes, 3000);
	assert_int_equal(r->packets, 3);
	assert_int_equal(r->key.in_if, 3);
	assert_int_equal(r->key.out_if, 70000);
	assert_int_equal(r->key.src_as, 65001);
	assert_int_equal(r->key.dst_as, 4200000000u);
	assert_int_equal(r->key.next_hop_as, 65100);
	assert_int_equal(r->key.time_flow_start, 1700000400);
	assert_int_equal(r->key.time_flow_end, 1700000450);
	assert_int_equal(r->key.src_mac, 0x001122334455ULL);
	assert_int_equal(r->key.dst_mac, 0x66778899aabbULL);
	assert_int_equal(r->key.src_vlan, 100);
	assert_int_equal(r->key.dst_vlan, 200);
	assert_int_equal(r->key.vlan_id, 100);
	assert_int_equal(r->key.tcp_flags, 0x12);
	assert_int_equal(r->key.ip_tos, 0x20);
	assert_int_equal(r->key.src_net, 24);
	assert_int_equal(r->key.dst_net, 16);
	assert_int_equal(r->key.flow_direction, 1);
	assert_int_equal(r->key.forwarding_status, 0x40);
	assert_int_equal(r->key.ip_ttl, 63);
	assert_int_equal(r->key.mpls_count, 2);
	assert_int_equal(r->key.mpls_label[0], 20005);
	assert_int_equal(r->key.mpls_label[1], 524250);
	assert_int_equal(r->key.mpls_last_label, 524250);
	assert_int_equal(r->key.ingress_vrf_id, 7);
	assert_int_equal(r->key.egress_vrf_id, 9);
	assert_int_equal(r->key.icmp_type, 3);
	assert_int_equal(r->key.icmp_code, 3);
	assert_int_equal(r->key.fragment_id, 4242);
	assert_int_equal(r->key.fragment_offset, 185);
	assert_int_equal(r->key.sequence_num, 77);
	assert_int_equal(r->key.observation_domain_id, 42);
	assert_int_equal(r->key.time_received, 1700000000);
	assert_int_equal(r->key.sampling_rate, 1);
	assert_int_equal(f->st.ipfix.datagrams, 1);
	assert_int_equal(f->st.ipfix.records, 2);
	assert_int_equal(f->st.templates, 1);
	assert_int_equal(f->st.ipfix.bad, 0);
	fixture_free(f);
}

/* IPv6, NTP microsecond times, flow label, ICMPv6 type/code, ipVersion, total counters. */
static void
test_ipv6(void **state)
{
	static const uint8_t s6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	static const uint8_t d6[16] = {0x20, 0x01, 0x0d, 0xb8, [14] = 0xab, [15] = 2};
	static const uint8_t n6[16] = {0xfe, 0x80, [15] = 9};
	struct fixture *f = fixture_new();
	const struct nm_flow_rec *r;
	struct msg m;

	(void)state;
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 300);
	p16(&m, 11);
	p16(&m, 27);
	p16(&m, 16);
	p16(&m, 28);
	p16(&m, 16);
	p16(&m, 62);
	p16(&m, 16);
	p16(&m, 29);
	p16(&m, 1);
	p16(&m, 30);
	p16(&m, 1);
	p16(&m, 139);
	p16(&m, 2);
	p16(&m, 31);
	p16(&m, 4);
	p16(&m, 154);
	p16(&m, 8);
	p16(&m, 155);
	p16(&m, 8);
	p16(&m, 85);
	p16(&m, 8); /* total counts: used when the deltas are absent */
	p16(&m, 86);
	p16(&m, 8);
	set_end(&m);
	set_begin(&m, 300);
	pbytes(&m, s6, 16);
	pbytes(&m, d6, 16);
	pbytes(&m, n6, 16);
	p8(&m, 48);
	p8(&m, 64);
	p16(&m, 0x8000); /* echo request */
	p32(&m, 0x12345);
	p64(&m, (uint64_t)(1700000400ULL + 2208988800ULL) << 32);
	p64(&m, ((uint64_t)(1700000401ULL + 2208988800ULL) << 32) | 0x80000000u);
	p64(&m, 123456789012ULL);
	p64(&m, 99);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	r = rec(f, 0);
	assert_string_equal(astr(r->key.src_addr), "2001:db8::1");
	assert_string_equal(astr(r->key.dst_addr), "2001:db8::ab02");
	assert_string_equal(astr(r->key.next_hop), "fe80::9");
	assert_int_equal(r->key.etype, 0x86dd);
	assert_int_equal(r->key.src_net, 48);
	assert_int_equal(r->key.dst_net, 64);
	assert_int_equal(r->key.icmp_type, 128);
	assert_int_equal(r->key.icmp_code, 0);
	assert_int_equal(r->key.ipv6_flow_label, 0x12345);
	assert_int_equal(r->key.time_flow_start, 1700000400);
	assert_int_equal(r->key.time_flow_end, 1700000401);
	assert_int_equal(r->bytes, 123456789012ULL);
	assert_int_equal(r->packets, 99);
	fixture_free(f);
}

/* Enterprise fields are skipped by their length; variable-length fields in both encodings. */
static void
test_varlen_enterprise(void **state)
{
	struct fixture *f = fixture_new();
	uint8_t big[300];
	struct msg m;

	(void)state;
	memset(big, 'x', sizeof(big));
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 400);
	p16(&m, 5);
	p16(&m, 0x8000 | 100);
	p16(&m, 4);
	p32(&m, 9); /* PEN 9, 4 bytes */
	p16(&m, 82);
	p16(&m, 65535); /* interfaceName, var */
	p16(&m, 0x8000 | 12);
	p16(&m, 65535);
	p32(&m, 2636); /* enterprise, var */
	p16(&m, 1);
	p16(&m, 8);
	p16(&m, 8);
	p16(&m, 4);
	set_end(&m);
	set_begin(&m, 400);
	/* record 1: short var fields */
	p32(&m, 0xdeadbeef);
	p8(&m, 3);
	pbytes(&m, "et0", 3);
	p8(&m, 0);
	p64(&m, 1500);
	pbytes(&m, (uint8_t[]){10, 1, 1, 1}, 4);
	/* record 2: 255 + 2-byte length */
	p32(&m, 1);
	p8(&m, 255);
	p16(&m, 300);
	pbytes(&m, big, 300);
	p8(&m, 2);
	p16(&m, 0xffff);
	p64(&m, 64);
	pbytes(&m, (uint8_t[]){10, 1, 1, 2}, 4);
	p8(&m, 0); /* padding shorter than a record */
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 2);
	assert_int_equal(rec(f, 0)->bytes, 1500);
	assert_string_equal(astr(rec(f, 0)->key.src_addr), "10.1.1.1");
	assert_int_equal(rec(f, 1)->bytes, 64);
	assert_string_equal(astr(rec(f, 1)->key.src_addr), "10.1.1.2");
	assert_int_equal(f->st.ipfix.bad, 0);
	/* A variable-length field that runs past the set. */
	msg_begin(&m, 1);
	set_begin(&m, 400);
	p32(&m, 1);
	p8(&m, 255);
	p16(&m, 1000);
	pbytes(&m, big, 20);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_LENGTH], 1);
	nm_rec_batch_flush(&f->b);
	assert_int_equal(f->s.n, 2);
	fixture_free(f);
}

/* Options data teaches the rate: by domain (305/306) and by selector id (302 + 34). */
static void
test_options_sampling(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;

	(void)state;
	f->d.default_sampling_rate = 5;
	msg_begin(&m, 8);
	set_begin(&m, 3);
	p16(&m, 500);
	p16(&m, 3);
	p16(&m, 1);
	p16(&m, 149);
	p16(&m, 4); /* scope: observationDomainId */
	p16(&m, 305);
	p16(&m, 4);
	p16(&m, 306);
	p16(&m, 4);
	p16(&m, 501);
	p16(&m, 2);
	p16(&m, 1);
	p16(&m, 302);
	p16(&m, 4); /* scope: selectorId */
	p16(&m, 34);
	p16(&m, 4);
	set_end(&m);
	set_begin(&m, 500);
	p32(&m, 8);
	p32(&m, 1);
	p32(&m, 9);
	set_end(&m);
	set_begin(&m, 501);
	p32(&m, 3);
	p32(&m, 4096);
	set_end(&m);
	set_begin(&m, 2);
	p16(&m, 502);
	p16(&m, 2);
	p16(&m, 1);
	p16(&m, 4);
	p16(&m, 302);
	p16(&m, 1);
	set_end(&m);
	set_begin(&m, 502);
	p32(&m, 100);
	p8(&m, 3); /* selector 3: 4096 */
	p32(&m, 200);
	p8(&m, 0); /* no selector 0 entry: the domain's (1+9)/1 */
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 2);
	assert_int_equal(f->st.options_records, 2);
	assert_int_equal(rec(f, 0)->key.sampling_rate, 4096);
	assert_int_equal(rec(f, 1)->key.sampling_rate, 10);
	/* Another domain of the same exporter knows nothing: the default. */
	msg_begin(&m, 9);
	set_begin(&m, 2);
	p16(&m, 502);
	p16(&m, 1);
	p16(&m, 1);
	p16(&m, 4);
	set_end(&m);
	set_begin(&m, 502);
	p32(&m, 1);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 2)->key.sampling_rate, 5);
	fixture_free(f);
}

static void
simple_tmpl(struct msg *m, uint16_t tid, int with_pkts)
{
	set_begin(m, 2);
	p16(m, tid);
	p16(m, with_pkts ? 2 : 1);
	p16(m, 1);
	p16(m, 4);
	if (with_pkts) {
		p16(m, 2);
		p16(m, 4);
	}
	set_end(m);
}

static void
simple_data(struct msg *m, uint16_t tid, uint32_t a, uint32_t b, int two)
{
	set_begin(m, tid);
	p32(m, a);
	if (two)
		p32(m, b);
	set_end(m);
}

static void
test_withdraw_refresh(void **state)
{
	struct fixture *f = fixture_new();
	struct nm_tmpl_cache_stats cs;
	struct msg m;

	(void)state;
	msg_begin(&m, 1);
	simple_tmpl(&m, 256, 0);
	simple_data(&m, 256, 10, 0, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	/* Same layout again: a refresh publishes nothing. */
	msg_begin(&m, 1);
	simple_tmpl(&m, 256, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	nm_tmpl_cache_get_stats(f->d.tmpl, &cs);
	assert_int_equal(cs.refreshed, 1);
	assert_int_equal(cs.published, 1);
	/* New layout under the same id: the data that follows uses it. */
	msg_begin(&m, 1);
	simple_tmpl(&m, 256, 1);
	simple_data(&m, 256, 20, 2, 1);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 1)->bytes, 20);
	assert_int_equal(rec(f, 1)->packets, 2);
	/* Withdraw 256: its data is unknown again (and held). */
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 256);
	p16(&m, 0);
	set_end(&m);
	simple_data(&m, 256, 30, 3, 1);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	assert_int_equal(f->st.template_withdrawals, 1);
	assert_int_equal(f->st.err[NM_DECODE_ERR_UNKNOWN_TEMPLATE], 1);
	assert_int_equal(f->st.pending_queued, 1);
	/* Withdraw all (id 2) removes every template of the domain, only of that domain. */
	msg_begin(&m, 1);
	simple_tmpl(&m, 257, 0);
	simple_tmpl(&m, 258, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	msg_begin(&m, 2);
	simple_tmpl(&m, 257, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 2);
	p16(&m, 0);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	nm_tmpl_cache_get_stats(f->d.tmpl, &cs);
	assert_int_equal(cs.templates, 1);
	msg_begin(&m, 2);
	simple_data(&m, 257, 1, 0, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	fixture_free(f);
}

/* Data before its template: held (bounded), decoded when the template arrives. */
static void
test_held(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	unsigned int i;

	(void)state;
	for (i = 0; i < 6; i++) {
		msg_begin(&m, 1);
		simple_data(&m, 260, 100 + i, 0, 0);
		msg_end(&m);
		assert_int_equal(decode(f, &m), 0);
	}
	assert_int_equal(f->st.pending_queued, 6);
	assert_int_equal(f->st.pending_dropped, 2); /* 4 per (exporter, domain) */
	/* Another exporter's template with the same id does not release them. */
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 10});
	msg_begin(&m, 1);
	simple_tmpl(&m, 260, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 0);
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 9});
	msg_begin(&m, 1);
	simple_tmpl(&m, 260, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 4);
	assert_int_equal(f->st.pending_decoded, 4);
	/* The four newest, oldest first. */
	for (i = 0; i < 4; i++)
		assert_int_equal(rec(f, i)->bytes, 102 + i);
	/* Same datagram, data first. */
	msg_begin(&m, 1);
	simple_data(&m, 261, 7, 0, 0);
	simple_tmpl(&m, 261, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 4)->bytes, 7);
	fixture_free(f);
}

static void
test_hostile(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	unsigned int i;

	(void)state;
	/* Short header, bad version, message length beyond the datagram or below the header. */
	msg_begin(&m, 1);
	simple_tmpl(&m, 256, 0);
	msg_end(&m);
	assert_int_equal(nm_ipfix_decode(&f->d, m.b, 15, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(nm_ipfix_decode(&f->d, m.b, m.n - 1, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	m.b[2] = 0;
	m.b[3] = 8;
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	m.b[1] = 11;
	assert_int_equal(nm_ipfix_decode(&f->d, m.b, m.n, &f->meta, &f->b),
			 -NM_DECODE_ERR_BAD_VERSION);
	/* Set length < 4 and past the message. */
	msg_begin(&m, 1);
	p16(&m, 256);
	p16(&m, 3);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	msg_begin(&m, 1);
	p16(&m, 256);
	p16(&m, 40);
	p32(&m, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_LENGTH);
	/* 513 fields; field count running past the set. */
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 256);
	p16(&m, 513);
	for (i = 0; i < 513; i++) {
		p16(&m, 1);
		p16(&m, 4);
	}
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 256);
	p16(&m, 10);
	p16(&m, 1);
	p16(&m, 4);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Enterprise bit with the PEN cut off. */
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 256);
	p16(&m, 1);
	p16(&m, 0x8001);
	p16(&m, 4);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Template id < 256; options template with scope count 0 or above the field count. */
	msg_begin(&m, 1);
	simple_tmpl(&m, 255, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	msg_begin(&m, 1);
	set_begin(&m, 3);
	p16(&m, 600);
	p16(&m, 1);
	p16(&m, 0);
	p16(&m, 34);
	p16(&m, 4);
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* A record that takes no bytes would never end a data set: refused. */
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 256);
	p16(&m, 2);
	p16(&m, 1);
	p16(&m, 0);
	p16(&m, 2);
	p16(&m, 0);
	set_end(&m);
	simple_data(&m, 256, 1, 0, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_BAD_TEMPLATE);
	/* Data set ids 4..255 are reserved: skipped, the rest of the message still decoded. */
	msg_begin(&m, 1);
	simple_data(&m, 5, 1, 0, 0);
	simple_tmpl(&m, 270, 0);
	simple_data(&m, 270, 9, 0, 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(f->st.err[NM_DECODE_ERR_UNSUPPORTED], 1);
	/* Without a cache every data set is an unknown template; templates are still checked. */
	{
		struct nm_tmpl_cache *c = f->d.tmpl;

		f->d.tmpl = NULL;
		assert_int_equal(decode(f, &m), 0);
		f->d.tmpl = c;
	}
	fixture_free(f);
}

/* Template floods stop at the per-exporter bound; other exporters are not affected. */
static void
test_flood(void **state)
{
	struct nm_tmpl_params tp = {.max_templates_per_exporter = 8, .max_templates = 12};
	struct fixture *f = fixture_new();
	struct nm_tmpl_cache_stats cs;
	struct msg m;
	unsigned int i;

	(void)state;
	nm_tmpl_cache_free(f->d.tmpl);
	f->d.tmpl = nm_tmpl_cache_create(&tp);
	msg_begin(&m, 1);
	for (i = 0; i < 20; i++)
		simple_tmpl(&m, (uint16_t)(256 + i), 0);
	msg_end(&m);
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_TEMPLATE_LIMIT);
	assert_int_equal(f->st.templates, 8);
	assert_int_equal(f->st.err[NM_DECODE_ERR_TEMPLATE_LIMIT], 12);
	nm_addr_from_v4(f->meta.exporter, (const uint8_t[]){192, 0, 2, 10});
	assert_int_equal(decode(f, &m), -NM_DECODE_ERR_TEMPLATE_LIMIT);
	nm_tmpl_cache_get_stats(f->d.tmpl, &cs);
	assert_int_equal(cs.templates, 12);
	assert_int_equal(cs.refused_exporter, 12);
	assert_int_equal(cs.refused_total, 16);
	fixture_free(f);
}

/* dataLinkFrameSection: one sampled packet of dataLinkFrameSize bytes. */
static void
test_frame_section(void **state)
{
	struct fixture *f = fixture_new();
	struct msg m;
	uint8_t frame[60] = {0};

	(void)state;
	msg_begin(&m, 1);
	set_begin(&m, 2);
	p16(&m, 384);
	p16(&m, 2);
	p16(&m, 312);
	p16(&m, 2);
	p16(&m, 315);
	p16(&m, 65535);
	set_end(&m);
	set_begin(&m, 384);
	p16(&m, 1514);
	p8(&m, sizeof(frame));
	pbytes(&m, frame, sizeof(frame));
	set_end(&m);
	msg_end(&m);
	assert_int_equal(decode(f, &m), 1);
	assert_int_equal(rec(f, 0)->bytes, 1514);
	assert_int_equal(rec(f, 0)->packets, 1);
	fixture_free(f);
}

/* ---- corpus ---- */

static void
test_corpus(void **state)
{
	(void)state;
	run_corpus(PROTO);
}

/* akvorado's mpls.pcap, first record, against tshark -V. */
static void
test_corpus_fields(void **state)
{
	static const char *const files[] = {"mpls.pcap", NULL};
	const struct nm_flow_rec *r;
	struct fixture *f;

	(void)state;
	if (!corpus_present())
		skip();
	f = feed_files(files);
	assert_int_equal(f->s.n, 2);
	r = &f->s.all[0];
	assert_string_equal(astr(r->key.src_addr), "fd00::1:0:1:7:1");
	assert_string_equal(astr(r->key.dst_addr), "fd00::1:0:1:5:1");
	assert_string_equal(astr(r->key.sampler_addr), "10.127.100.7");
	assert_int_equal(r->key.etype, 0x86dd);
	assert_int_equal(r->key.src_port, 49153);
	assert_int_equal(r->key.dst_port, 862);
	assert_int_equal(r->key.proto, 17);
	assert_int_equal(r->key.in_if, 0);
	assert_int_equal(r->key.out_if, 16);
	assert_int_equal(r->key.egress_vrf_id, 1);
	assert_int_equal(r->key.flow_direction, 1);
	assert_int_equal(r->key.forwarding_status, 0x42);
	assert_int_equal(r->key.mpls_count, 2);
	assert_int_equal(r->key.mpls_label[0], 20005);
	assert_int_equal(r->key.mpls_label[1], 524250);
	assert_int_equal(r->key.mpls_last_label, 524250);
	assert_int_equal(r->packets, 1);
	assert_int_equal(r->bytes, 89);
	/* Options data: samplingPacketInterval 1, samplingPacketSpace 9. */
	assert_int_equal(r->key.sampling_rate, 10);
	assert_int_equal(r->key.time_flow_start, 1699893330); /* Nov 13, 2023 16:35:30 UTC */
	fixture_free(f);
}

/* Template and data captures fed in order, against SOURCES.md's independent decoder. */
static void
test_corpus_pairs(void **state)
{
	static const char *const probe[] = {"ipfixprobe-templates.pcap", "ipfixprobe-data.pcap",
					    NULL};
	static const char *const dl[] = {"datalink-template.pcap", "datalink-data.pcap", NULL};
	struct fixture *f;
	unsigned long long fwd_p = 0, fwd_b = 0;
	unsigned int i, fwd = 0;

	(void)state;
	if (!corpus_present())
		skip();
	/* ipfixprobe biflows: forward 4/34/24268; with reverse counters tshark's 60/25942. */
	f = feed_files(probe);
	assert_int_equal(f->s.pkts, 60);
	assert_int_equal(f->s.bytes, 25942);
	for (i = 0; i < f->s.n; i++) {
		if (i == 0 || f->s.all[i].key.src_port != f->s.all[i - 1].key.dst_port ||
		    memcmp(f->s.all[i].key.src_addr, f->s.all[i - 1].key.dst_addr, NM_ADDR_LEN)) {
			fwd++;
			fwd_p += f->s.all[i].packets;
			fwd_b += f->s.all[i].bytes;
		}
	}
	print_message("ipfixprobe: %u records, %u forward (%llu pkts %llu bytes)\n", f->s.n, fwd,
		      fwd_p, fwd_b);
	assert_int_equal(f->s.n, 6);
	assert_int_equal(fwd, 4);
	assert_int_equal(fwd_p, 34);
	assert_int_equal(fwd_b, 24268);
	assert_int_equal(f->st.pending_queued, 0);
	fixture_free(f);
	/* dataLinkFrameSection: one record. */
	f = feed_files(dl);
	assert_int_equal(f->s.n, 1);
	assert_int_equal(f->s.all[0].packets, 1);
	print_message("datalink: bytes %llu\n", (unsigned long long)f->s.all[0].bytes);
	fixture_free(f);
}

/* ---- the specialised form against the generic one ---- */

static uint64_t
xs(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *st = x;
}

/* Every IE the compiler maps (flow templates), a few it does not, and RFC 5103 reverse ones. */
static const uint16_t cand_ie[] = {
	1,   2,	  4,   5,   6,	 7,   8,   9,	10,  11,  12,  13,  14,	 15,  16,  17,
	18,  21,  22,  23,  24,	 27,  28,  29,	30,  31,  32,  34,  48,	 50,  54,  56,
	57,  58,  59,  60,  61,	 62,  63,  70,	71,  72,  73,  74,  75,	 76,  77,  78,
	79,  80,  81,  85,  86,	 88,  89,  128, 139, 150, 151, 152, 153, 154, 155, 156,
	157, 158, 159, 160, 176, 177, 178, 179, 180, 181, 182, 183, 192, 234, 235, 239,
	243, 252, 253, 254, 302, 305, 306, 312, 410, 136, 0,   999, 315,
};

/* The length the IE's type has on the wire; the test also draws reduced and wrong sizes. */
static uint16_t
natural_len(uint16_t ie)
{
	switch (ie) {
	case 8:
	case 12:
	case 15:
	case 18:
		return 4;
	case 27:
	case 28:
	case 62:
	case 63:
		return 16;
	case 56:
	case 57:
	case 80:
	case 81:
		return 6;
	case 70 ... 79:
		return 3;
	case 4:
	case 5:
	case 6:
	case 9:
	case 13:
	case 29:
	case 30:
	case 60:
	case 61:
	case 89:
	case 136:
	case 192:
	case 239:
		return 1;
	case 1:
	case 2:
	case 23:
	case 24:
	case 85:
	case 86:
	case 152:
	case 153:
	case 154:
	case 155:
	case 156:
	case 157:
		return 8;
	case 315:
		return 20;
	case 7:
	case 11:
	case 32:
	case 139:
	case 58:
	case 59:
	case 243:
	case 254:
	case 180:
	case 181:
	case 182:
	case 183:
	case 88:
		return 2;
	default:
		return 4;
	}
}

static void
random_template(uint64_t *st, struct nm_tmpl_field *f, unsigned int *n)
{
	unsigned int i, kind;

	*n = 1 + (unsigned int)(xs(st) % 40);
	for (i = 0; i < *n; i++) {
		f[i].ie = cand_ie[xs(st) % (sizeof(cand_ie) / sizeof(cand_ie[0]))];
		f[i].pen = 0;
		f[i].len = natural_len(f[i].ie);
		kind = (unsigned int)(xs(st) % 16);
		if (kind == 0)
			f[i].len = (uint16_t)(xs(st) % 9); /* reduced, odd, zero or wrong size */
		else if (kind == 1)
			f[i].len = (uint16_t)(1 + xs(st) % 20);
		else if (kind == 2)
			f[i].pen = xs(st) & 1 ? 29305 : 9; /* reverse element or a vendor's */
		else if (kind == 3 && xs(st) % 4 == 0)
			f[i].len = NM_TMPL_VARLEN;
	}
}

/* Record bytes: each field zero, all ones or random (the generic steps treat zero specially). */
static size_t
random_records(uint64_t *st, const struct nm_tmpl_field *f, unsigned int n, uint8_t *b, size_t cap,
	       unsigned int *n_recs)
{
	size_t o = 0;
	unsigned int r, i, j;

	*n_recs = 1 + (unsigned int)(xs(st) % 6);
	for (r = 0; r < *n_recs; r++) {
		for (i = 0; i < n; i++) {
			unsigned int len = f[i].len, how = (unsigned int)(xs(st) % 4);

			if (len == NM_TMPL_VARLEN) {
				len = (unsigned int)(xs(st) % 12);
				if (o + 1 + len > cap)
					return o;
				b[o++] = (uint8_t)len;
			}
			if (o + len > cap)
				return o;
			for (j = 0; j < len; j++)
				b[o + j] = how == 0 ? 0 : how == 1 ? 0xff : (uint8_t)xs(st);
			o += len;
		}
	}
	/* Padding, or a cut record. */
	j = (unsigned int)(xs(st) % 8);
	while (j-- > 0 && o < cap)
		b[o++] = (uint8_t)(xs(st) & 1 ? 0 : xs(st));
	return o;
}

static unsigned int
run_form(struct fixture *f, struct nm_ipfix_hdr *h, const struct nm_tmpl *t, const uint8_t *b,
	 size_t len, int *ret)
{
	f->s.n = 0;
	f->b.n = 0;
	*ret = nm_ipfix_run_set(&f->d, &f->st.ipfix, h, t, b, b + len, &f->b);
	nm_rec_batch_flush(&f->b);
	return f->s.n;
}

/*
 * Random templates (every mapped IE, reduced and odd sizes, wrong sizes, zero-length, variable-
 * length and enterprise fields, duplicates that compete for one record field) compiled both
 * ways, random records decoded with each: the records must be the same bytes. Both protocols
 * (v9 and IPFIX differ in how uptime-relative times resolve). The specialised form includes the
 * byte shuffles (NM_TF_SHUF: about 12,000 of the templates), whose masks, windows clamped to
 * the record's end and IPv4 prefixes from the base record this compares against the generic
 * steps. ~40,000 templates, ~1 s.
 */
static void
test_compiled_equals_generic(void **state)
{
	struct fixture *f = fixture_new();
	static uint64_t fast_buf[(NM_TMPL_MAX_SIZE + 7) / 8], gen_buf[(NM_TMPL_MAX_SIZE + 7) / 8];
	static struct nm_flow_rec want[SINK_KEEP];
	struct nm_tmpl_field fl[64];
	uint8_t data[4096];
	uint64_t st = 0x243f6a8885a308d3ULL;
	unsigned int it, n, n_recs, specialised = 0, all_moves = 0, compared = 0, nw, ng;
	unsigned int shuffled = 0;
	struct nm_dgram_meta meta = f->meta;

	(void)state;
	for (it = 0; it < 40000; it++) {
		struct nm_tmpl_key key = {.id = 256, .domain = 1};
		struct nm_ipfix_hdr h = {
			.meta = &meta,
			.export_secs = 1700000500,
			.sys_uptime_ms = 3600000,
			.seq = 77,
			.domain = 1,
		};
		enum nm_decode_err e1, e2;
		const struct nm_tmpl *tf, *tg;
		int rf, rg;
		size_t len;

		key.proto = h.proto = it & 1 ? NM_TMPL_NF9 : NM_TMPL_IPFIX;
		random_template(&st, fl, &n);
		tf = nm_ipfix_compile_opts(&key, fl, n, 0, 0, 0, fast_buf, sizeof(fast_buf), &e1);
		tg = nm_ipfix_compile_opts(&key, fl, n, 0, 0, NM_IPFIX_GENERIC, gen_buf,
					   sizeof(gen_buf), &e2);
		assert_int_equal(e1, e2);
		if (tf == NULL) {
			assert_null(tg);
			continue;
		}
		assert_non_null(tg);
		assert_false(tg->flags & NM_TF_FAST);
		if (tf->flags & NM_TF_FAST) {
			specialised++;
			shuffled += !!(tf->flags & NM_TF_SHUF);
			if (tf->steps[tf->n_steps - 1].op == NM_OP_SKIP &&
			    tf->steps[tf->n_steps - 1].len == 0)
				all_moves++;
		}
		len = random_records(&st, fl, n, data, sizeof(data), &n_recs);
		ng = run_form(f, &h, tg, data, len, &rg);
		memcpy(want, f->s.all, sizeof(want[0]) * (ng < SINK_KEEP ? ng : SINK_KEEP));
		nw = run_form(f, &h, tf, data, len, &rf);
		assert_int_equal(rf, rg);
		assert_int_equal(nw, ng);
		for (unsigned int i = 0; i < ng && i < SINK_KEEP; i++) {
			if (memcmp(&want[i], &f->s.all[i], sizeof(want[i])) != 0)
				fail_msg(
					"iteration %u record %u: specialised form differs (%u fields)",
					it, i, n);
		}
		compared += ng;
	}
	print_message("%u templates specialised (%u with only moves, %u with byte shuffles), %u "
		      "records compared\n",
		      specialised, all_moves, shuffled, compared);
	/* The generator must reach the specialised form, and its all-move shape, often. */
	assert_true(specialised > 20000);
	assert_true(all_moves > 500);
	assert_true(shuffled > 5000);
	assert_true(compared > 50000);
	fixture_free(f);
}

/* softflowd's layouts become moves only: no generic step is left for a record. */
static void
test_softflowd_layout_moves(void **state)
{
	static const uint16_t v4[][2] = {{8, 4},  {12, 4}, {22, 4}, {21, 4},  {1, 4}, {2, 4},
					 {10, 4}, {14, 4}, {61, 1}, {136, 1}, {7, 2}, {11, 2},
					 {4, 1},  {6, 1},  {60, 1}, {5, 1}};
	static const uint16_t v6[][2] = {{27, 16}, {28, 16}, {152, 8}, {153, 8}, {1, 8},
					 {2, 8},   {7, 2},   {11, 2},  {4, 1},	 {6, 1}};
	static uint64_t buf[(NM_TMPL_MAX_SIZE + 7) / 8];
	struct nm_tmpl_key key = {.id = 256, .proto = NM_TMPL_IPFIX};
	struct nm_tmpl_field fl[16];
	const struct nm_tmpl *t;
	enum nm_decode_err e;
	unsigned int i;

	(void)state;
	for (i = 0; i < 16; i++)
		fl[i] = (struct nm_tmpl_field){.ie = v4[i][0], .len = v4[i][1]};
	t = nm_ipfix_compile(&key, fl, 16, 0, 0, buf, sizeof(buf), &e);
	assert_non_null(t);
	assert_true(t->flags & NM_TF_FAST);
	assert_true(t->flags & NM_TF_ETYPE4);
	assert_true(t->flags & NM_TF_HAS_START_UP);
	assert_true(t->flags & NM_TF_HAS_END_UP);
	/*
	 * 15 moves (flowEndReason, 136, is not mapped), then the step that ends them. The 12
	 * that are byte permutations (addresses, counters, interfaces, direction, ports,
	 * protocol, flags, ToS) run as 5 byte shuffles of 3 steps, then an A4C marker per IPv4
	 * address; the uptimes and the IP version stay moves (to the scratch).
	 */
	assert_true(t->flags & NM_TF_SHUF);
	assert_int_equal(t->n_steps, 5 * 3 + 2 + 3 + 1);
	for (i = 0; i < 15; i += 3)
		assert_int_equal(t->steps[i].op, NM_FOP_SHUF);
	assert_int_equal(t->steps[15].op, NM_FOP_A4C);
	assert_int_equal(t->steps[16].op, NM_FOP_A4C);
	assert_int_equal(t->steps[17].op, NM_FOP_S64);
	assert_int_equal(t->steps[18].op, NM_FOP_S64);
	assert_int_equal(t->steps[19].op, NM_FOP_S8);
	assert_int_equal(t->steps[20].op, NM_OP_SKIP);
	assert_int_equal(t->steps[20].len, 0);
	for (i = 0; i < 10; i++)
		fl[i] = (struct nm_tmpl_field){.ie = v6[i][0], .len = v6[i][1]};
	t = nm_ipfix_compile(&key, fl, 10, 0, 0, buf, sizeof(buf), &e);
	assert_non_null(t);
	assert_true(t->flags & NM_TF_ETYPE6);
	/* 8 permutation moves (two 16-byte addresses among them) in fewer shuffles, 2 moves of
	 * milliseconds, the end step */
	assert_true(t->flags & NM_TF_SHUF);
	for (i = 0; t->steps[i].op == NM_FOP_SHUF; i += 3)
		;
	assert_true(i > 0 && i / 3 < 8);
	assert_int_equal(t->n_steps, i + 3);
	assert_int_equal(t->steps[i].op, NM_FOP_MS64);
	assert_int_equal(t->steps[i + 1].op, NM_FOP_MS64);
	assert_int_equal(t->steps[i + 2].op, NM_OP_SKIP);
	/* Two source ports (Cisco NBAR style) compete: both stay generic, the rest are moves. */
	fl[10] = (struct nm_tmpl_field){.ie = 180, .len = 2};
	t = nm_ipfix_compile(&key, fl, 11, 0, 0, buf, sizeof(buf), &e);
	assert_non_null(t);
	assert_int_equal(t->steps[t->n_steps - 1].op, NM_OP_SPORT);
	assert_int_equal(t->steps[t->n_steps - 2].op, NM_OP_SPORT);
	assert_true(t->steps[t->n_steps - 3].op >= NM_FOP_A4);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_varlen_enterprise),
		cmocka_unit_test(test_options_sampling),
		cmocka_unit_test(test_withdraw_refresh),
		cmocka_unit_test(test_held),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_flood),
		cmocka_unit_test(test_frame_section),
		cmocka_unit_test(test_compiled_equals_generic),
		cmocka_unit_test(test_softflowd_layout_moves),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_fields),
		cmocka_unit_test(test_corpus_pairs),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
