/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * sFlow v5 decoder: hand-built datagrams (every record type we read, both sample formats),
 * hostile lengths and counts, and the corpus against TRUTH.tsv with a few records checked field
 * by field against tshark's dissection.
 */
#include "decode_fixture.h"

/* Decode, flush, and leave every record in f->s. */
static int
decode_buf(struct fixture *f, const uint8_t *buf, size_t len)
{
	int rc = nm_decode_datagram(&f->d, buf, len, &f->meta, &f->b);

	nm_rec_batch_flush(&f->b);
	return rc;
}

/* ---- a tiny XDR writer ---- */

struct w {
	uint8_t buf[16384];
	size_t n;
};

static void
put32(struct w *w, uint32_t v)
{
	w->buf[w->n++] = v >> 24;
	w->buf[w->n++] = v >> 16;
	w->buf[w->n++] = v >> 8;
	w->buf[w->n++] = v & 0xff;
}

static void
putb(struct w *w, const void *p, size_t n)
{
	memcpy(w->buf + w->n, p, n);
	w->n += n;
	while (w->n % 4)
		w->buf[w->n++] = 0;
}

static void
patch32(struct w *w, size_t at, uint32_t v)
{
	w->buf[at] = v >> 24;
	w->buf[at + 1] = v >> 16;
	w->buf[at + 2] = v >> 8;
	w->buf[at + 3] = v & 0xff;
}

/* Open a (tag, length) element; returns where its length goes. */
static size_t
open_elem(struct w *w, uint32_t tag)
{
	size_t at;

	put32(w, tag);
	at = w->n;
	put32(w, 0);
	return at;
}

static void
close_elem(struct w *w, size_t at)
{
	patch32(w, at, (uint32_t)(w->n - at - 4));
}

static void
dgram_v4(struct w *w, uint32_t nsamples)
{
	w->n = 0;
	put32(w, 5);
	put32(w, 1);
	putb(w, (const uint8_t[]){192, 0, 2, 1}, 4);
	put32(w, 7);	  /* sub-agent */
	put32(w, 4242);	  /* sequence */
	put32(w, 123456); /* uptime */
	put32(w, nsamples);
}

/* Ethernet / 802.1Q 100 / IPv4 10.1.2.3 -> 10.4.5.6 TCP 443 -> 51000 SYN|ACK, tos 0x20, ttl 63. */
static const uint8_t frame_tcp[] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0x81, 0x00, 0x00,
	0x64, 0x08, 0x00, 0x45, 0x20, 0x05, 0xdc, 0x12, 0x34, 0x40, 0x00, 0x3f, 0x06, 0x00, 0x00,
	10,   1,    2,	  3,	10,   4,    5,	  6,	0x01, 0xbb, 0xc7, 0x38, 0,    0,    0,
	1,    0,    0,	  0,	0,    0x50, 0x12, 0xff, 0xff, 0,    0,	  0,	0,
};

static void
rec_header(struct w *w, uint32_t proto, uint32_t frame_len, const uint8_t *hdr, size_t hlen)
{
	size_t at = open_elem(w, 1);

	put32(w, proto);
	put32(w, frame_len);
	put32(w, 4); /* stripped */
	put32(w, (uint32_t)hlen);
	putb(w, hdr, hlen);
	close_elem(w, at);
}

static void
rec_ipv4(struct w *w, uint32_t len, uint8_t proto, const uint8_t src[4], const uint8_t dst[4],
	 uint16_t sport, uint16_t dport)
{
	size_t at = open_elem(w, 3);

	put32(w, len);
	put32(w, proto);
	putb(w, src, 4);
	putb(w, dst, 4);
	put32(w, sport);
	put32(w, dport);
	put32(w, 0x18); /* tcp flags */
	put32(w, 0x48); /* tos */
	close_elem(w, at);
}

/* A compact flow sample with the four kinds of record we read and one we do not. */
static void
sample_compact_full(struct w *w, uint32_t rate)
{
	size_t s = open_elem(w, 1), r;

	put32(w, 99); /* sample sequence */
	put32(w, 3);  /* source id */
	put32(w, rate);
	put32(w, 100000); /* pool */
	put32(w, 0);	  /* drops */
	put32(w, 3);	  /* input ifIndex 3 */
	put32(w, 5);	  /* output ifIndex 5 */
	put32(w, 6);	  /* records */
	rec_header(w, 1, 1518, frame_tcp, sizeof(frame_tcp));
	r = open_elem(w, 1001); /* extended switch */
	put32(w, 100);
	put32(w, 0);
	put32(w, 200);
	put32(w, 0);
	close_elem(w, r);
	r = open_elem(w, 1003); /* extended gateway, before the router record */
	put32(w, 1);
	putb(w, (const uint8_t[]){203, 0, 113, 1}, 4);
	put32(w, 65000); /* as */
	put32(w, 0);	 /* src_as: 0 -> the router's own */
	put32(w, 64999); /* src_peer_as */
	put32(w, 2);	 /* two segments */
	put32(w, 2);
	put32(w, 2);
	put32(w, 65001);
	put32(w, 65002);
	put32(w, 1);
	put32(w, 1);
	put32(w, 65003);
	put32(w, 1); /* one community */
	put32(w, 0xfde80001);
	put32(w, 100); /* local pref */
	close_elem(w, r);
	r = open_elem(w, 1002); /* extended router */
	put32(w, 1);
	putb(w, (const uint8_t[]){10, 0, 0, 1}, 4);
	put32(w, 24);
	put32(w, 16);
	close_elem(w, r);
	r = open_elem(w, 1006); /* extended MPLS: not read, skipped by its length */
	put32(w, 0xdeadbeef);
	put32(w, 0xdeadbeef);
	close_elem(w, r);
	r = open_elem(w, (9 << 12) | 77); /* a vendor record */
	put32(w, 0xffffffff);
	close_elem(w, r);
	close_elem(w, s);
}

static void
test_compact_sample(void **state)
{
	struct fixture *f = fixture_new();
	struct w w;
	const struct nm_flow_rec *r;
	char a[NM_ADDR_STRLEN];

	(void)state;
	dgram_v4(&w, 1);
	sample_compact_full(&w, 512);
	assert_int_equal(decode_buf(f, w.buf, w.n), 1);
	assert_int_equal(f->s.n, 1);
	r = &f->s.all[0];
	assert_int_equal(r->key.type, NM_FLOW_SFLOW5);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "192.0.2.1");
	assert_int_equal(r->key.sequence_num, 4242);
	assert_int_equal(r->key.time_received, 1700000000);
	assert_int_equal(r->key.sampling_rate, 512);
	assert_int_equal(r->key.in_if, 3);
	assert_int_equal(r->key.out_if, 5);
	assert_int_equal(r->key.forwarding_status, 0);
	assert_int_equal(r->packets, 1);
	assert_int_equal(r->bytes, 1518);
	assert_int_equal(r->key.flow_direction, 0);
	/* From the sampled header. */
	assert_int_equal(r->key.dst_mac, 0x001122334455ULL);
	assert_int_equal(r->key.src_mac, 0x66778899aabbULL);
	assert_int_equal(r->key.vlan_id, 100);
	assert_int_equal(r->key.etype, 0x0800);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "10.1.2.3");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "10.4.5.6");
	assert_int_equal(r->key.proto, 6);
	assert_int_equal(r->key.src_port, 443);
	assert_int_equal(r->key.dst_port, 51000);
	assert_int_equal(r->key.tcp_flags, 0x12);
	assert_int_equal(r->key.ip_tos, 0x20);
	assert_int_equal(r->key.ip_ttl, 63);
	/* Extended switch. */
	assert_int_equal(r->key.src_vlan, 100);
	assert_int_equal(r->key.dst_vlan, 200);
	/* Extended router: its next hop wins over the gateway's BGP next hop. */
	assert_string_equal(nm_addr_str(r->key.next_hop, a, sizeof(a)), "10.0.0.1");
	assert_int_equal(r->key.src_net, 24);
	assert_int_equal(r->key.dst_net, 16);
	/* Extended gateway: path 65001 65002 {65003}; src_as 0 falls back to the router's AS. */
	assert_int_equal(r->key.dst_as, 65003);
	assert_int_equal(r->key.next_hop_as, 65001);
	assert_int_equal(r->key.src_as, 65000);
	/* Counters. */
	assert_int_equal(f->st.sflow.datagrams, 1);
	assert_int_equal(f->st.sflow.records, 1);
	assert_int_equal(f->st.sflow.bad, 0);
	assert_int_equal(f->st.sflow_flow_samples, 1);
	assert_int_equal(f->st.sflow_counters_samples, 0);
	fixture_free(f);
}

/* IPv6 agent; a counter sample, an unknown sample, an expanded sample with a sampled IPv4 record.
 */
static void
test_expanded_counters_ipv6_agent(void **state)
{
	static const uint8_t agent6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};
	struct fixture *f = fixture_new();
	struct w w;
	size_t s, r;
	const struct nm_flow_rec *rec;
	char a[NM_ADDR_STRLEN];

	(void)state;
	w.n = 0;
	put32(&w, 5);
	put32(&w, 2);
	putb(&w, agent6, 16);
	put32(&w, 0);
	put32(&w, 31337);
	put32(&w, 1);
	put32(&w, 3);
	/* counter sample with one generic interface record (contents irrelevant) */
	s = open_elem(&w, 2);
	put32(&w, 1);
	put32(&w, 3);
	put32(&w, 1);
	r = open_elem(&w, 1);
	for (int i = 0; i < 22; i++)
		put32(&w, (uint32_t)i);
	close_elem(&w, r);
	close_elem(&w, s);
	/* an enterprise sample we do not know */
	s = open_elem(&w, (4413 << 12) | 5);
	put32(&w, 1);
	put32(&w, 2);
	close_elem(&w, s);
	/* expanded flow sample, rate 0 (-> default), output discarded */
	s = open_elem(&w, 3);
	put32(&w, 1);	       /* seq */
	put32(&w, 0);	       /* source id type */
	put32(&w, 70000);      /* source id index */
	put32(&w, 0);	       /* rate */
	put32(&w, 10);	       /* pool */
	put32(&w, 0);	       /* drops */
	put32(&w, 0);	       /* input format */
	put32(&w, 2000000000); /* input value: above 2^30, only the expanded form carries it */
	put32(&w, 1);	       /* output format: discarded */
	put32(&w, 258);	       /* reason */
	put32(&w, 1);
	rec_ipv4(&w, 1400, 17, (const uint8_t[]){198, 51, 100, 1},
		 (const uint8_t[]){198, 51, 100, 2}, 53, 5353);
	close_elem(&w, s);

	f->d.default_sampling_rate = 33;
	assert_int_equal(decode_buf(f, w.buf, w.n), 1);
	assert_int_equal(f->s.n, 1);
	rec = &f->s.all[0];
	assert_string_equal(nm_addr_str(rec->key.sampler_addr, a, sizeof(a)), "2001:db8::1");
	assert_int_equal(rec->key.sequence_num, 31337);
	assert_int_equal(rec->key.sampling_rate, 33);
	assert_int_equal(rec->key.in_if, 2000000000);
	assert_int_equal(rec->key.out_if, 0);
	assert_int_equal(rec->key.forwarding_status, 128);
	assert_int_equal(rec->bytes, 1400);
	assert_int_equal(rec->packets, 1);
	assert_int_equal(rec->key.etype, 0x0800);
	assert_int_equal(rec->key.proto, 17);
	assert_string_equal(nm_addr_str(rec->key.src_addr, a, sizeof(a)), "198.51.100.1");
	assert_string_equal(nm_addr_str(rec->key.dst_addr, a, sizeof(a)), "198.51.100.2");
	assert_int_equal(rec->key.src_port, 53);
	assert_int_equal(rec->key.dst_port, 5353);
	assert_int_equal(rec->key.tcp_flags, 0x18);
	assert_int_equal(rec->key.ip_tos, 0x48);
	assert_int_equal(f->st.sflow_flow_samples, 1);
	assert_int_equal(f->st.sflow_counters_samples, 1);
	assert_int_equal(f->st.sflow.records, 1);
	assert_int_equal(f->st.sflow.bad, 0);
	fixture_free(f);
}

/* Compact interface encoding: format 1 (discarded) and 2 (multiple) give 0; the raw header wins
 * over a sampled IPv4 record that comes before it; IPv6 raw header (header_protocol 12). */
static void
test_interfaces_and_precedence(void **state)
{
	static const uint8_t ip6_udp[] = {
		0x60, 0x12, 0x34, 0x56, 0x00, 0x08, 0x11, 0x40, 0x20, 0x01, 0x0d, 0xb8,
		0,    0,    0,	  0,	0,    0,    0,	  0,	0,    0,    0,	  0xaa,
		0x20, 0x01, 0x0d, 0xb8, 0,    0,    0,	  0,	0,    0,    0,	  0,
		0,    0,    0,	  0xbb, 0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00,
	};
	struct fixture *f = fixture_new();
	struct w w;
	size_t s;
	const struct nm_flow_rec *r;
	char a[NM_ADDR_STRLEN];

	(void)state;
	dgram_v4(&w, 1);
	s = open_elem(&w, 1);
	put32(&w, 1);
	put32(&w, 0);
	put32(&w, 10);
	put32(&w, 10);
	put32(&w, 0);
	put32(&w, (2u << 30) | 7);   /* input: multiple */
	put32(&w, (1u << 30) | 258); /* output: discarded */
	put32(&w, 2);
	rec_ipv4(&w, 999, 6, (const uint8_t[]){1, 1, 1, 1}, (const uint8_t[]){2, 2, 2, 2}, 1, 2);
	rec_header(&w, 12, 62, ip6_udp, sizeof(ip6_udp));
	close_elem(&w, s);
	assert_int_equal(decode_buf(f, w.buf, w.n), 1);
	r = &f->s.all[0];
	assert_int_equal(r->key.in_if, 0);
	assert_int_equal(r->key.out_if, 0);
	assert_int_equal(r->key.forwarding_status, 128);
	assert_int_equal(r->key.sampling_rate, 10);
	assert_int_equal(r->bytes, 62);
	assert_int_equal(r->key.etype, 0x86dd);
	assert_int_equal(r->key.proto, 17);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "2001:db8::aa");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "2001:db8::bb");
	assert_int_equal(r->key.src_port, 12345);
	assert_int_equal(r->key.dst_port, 53);
	assert_int_equal(r->key.tcp_flags, 0);
	assert_int_equal(r->key.ip_tos, 0x01);
	assert_int_equal(r->key.ipv6_flow_label, 0x23456);
	assert_int_equal(r->key.ip_ttl, 0x40);
	fixture_free(f);
}

/* 40 samples through a batch of 8: every record reaches the consumer once, in order. */
static void
test_batch_flushes(void **state)
{
	struct fixture *f = fixture_new();
	struct w w;

	(void)state;
	dgram_v4(&w, 40);
	for (uint32_t i = 0; i < 40; i++) {
		size_t s = open_elem(&w, 1);

		put32(&w, i);
		put32(&w, 0);
		put32(&w, 100);
		put32(&w, 0);
		put32(&w, 0);
		put32(&w, i);
		put32(&w, 0);
		put32(&w, 1);
		rec_header(&w, 1, 1000 + i, frame_tcp, sizeof(frame_tcp));
		close_elem(&w, s);
	}
	assert_int_equal(decode_buf(f, w.buf, w.n), 40);
	assert_int_equal(f->s.n, 40);
	assert_true(f->s.flushes >= 5);
	for (unsigned int i = 0; i < 40; i++) {
		assert_int_equal(f->s.all[i].key.in_if, i);
		assert_int_equal(f->s.all[i].bytes, 1000 + i);
	}
	assert_int_equal(f->st.sflow.records, 40);
	fixture_free(f);
}

static int
decode_err(struct fixture *f, struct w *w)
{
	return decode_buf(f, w->buf, w->n);
}

static void
test_hostile(void **state)
{
	struct fixture *f = fixture_new();
	struct w w, good;
	size_t s;

	(void)state;
	dgram_v4(&good, 1);
	sample_compact_full(&good, 512);

	/* Header cut anywhere. */
	assert_int_equal(nm_sflow_decode(&f->d, good.buf, 4, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(nm_sflow_decode(&f->d, good.buf, 27, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	/* Wrong version through the decoder itself. */
	w = good;
	patch32(&w, 0, 4);
	assert_int_equal(nm_sflow_decode(&f->d, w.buf, w.n, &f->meta, &f->b),
			 -NM_DECODE_ERR_BAD_VERSION);
	/* Agent address type 7 and 0. */
	w = good;
	patch32(&w, 4, 7);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_ADDRESS);
	patch32(&w, 4, 0);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_ADDRESS);
	/* Agent address type 2 (16 bytes) in a datagram too short for it. */
	w = good;
	patch32(&w, 4, 2);
	assert_int_equal(nm_sflow_decode(&f->d, w.buf, 24, &f->meta, &f->b),
			 -NM_DECODE_ERR_TRUNCATED);
	/* Sample length 0xffffffff and one byte too many. */
	w = good;
	patch32(&w, 32, 0xffffffff);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	w = good;
	patch32(&w, 32, (uint32_t)(w.n - 36 + 1));
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* Sample too short for its own fixed fields. */
	w = good;
	patch32(&w, 32, 8);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* Record count huge: the records end long before; no record is committed. */
	w = good;
	patch32(&w, 36 + 28, 0xffffffff);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* First record (raw header) length past its sample. */
	w = good;
	patch32(&w, 36 + 32 + 4, 0x7ffffff0);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* Raw header's header_length past its record. */
	w = good;
	patch32(&w, 36 + 32 + 8 + 12, 4096);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	assert_int_equal(f->s.n, 0);
	assert_int_equal(f->st.sflow.records, 0);

	/*
	 * Sample count larger than the datagram: the good sample is decoded and kept, then the
	 * datagram is truncated. The loop is bounded by the bytes, not by 0xffffffff.
	 */
	w = good;
	patch32(&w, 24, 0xffffffff);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(f->s.n, 1);
	assert_int_equal(f->st.sflow.records, 1);
	assert_int_equal(f->s.all[0].bytes, 1518);

	/* Good sample, then a flow sample whose records run past it: the first record stays. */
	dgram_v4(&w, 2);
	sample_compact_full(&w, 512);
	s = open_elem(&w, 3);
	for (int i = 0; i < 10; i++)
		put32(&w, 1);
	put32(&w, 1);	 /* one record */
	put32(&w, 1);	 /* raw header tag */
	put32(&w, 1000); /* its length: past the sample */
	close_elem(&w, s);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	assert_int_equal(f->s.n, 2);
	assert_int_equal(f->st.sflow.records, 2);

	/* Gateway with a segment claiming 2^30 ASes. */
	dgram_v4(&w, 1);
	s = open_elem(&w, 1);
	for (int i = 0; i < 7; i++)
		put32(&w, 1);
	put32(&w, 1);
	{
		size_t r = open_elem(&w, 1003);

		put32(&w, 1);
		putb(&w, (const uint8_t[]){1, 2, 3, 4}, 4);
		put32(&w, 1);
		put32(&w, 2);
		put32(&w, 3);
		put32(&w, 1);
		put32(&w, 2);
		put32(&w, 0x40000000);
		put32(&w, 65001);
		close_elem(&w, r);
	}
	close_elem(&w, s);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* Segment count huge. */
	patch32(&w, w.n - 16, 0xffffffff);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	/* Router with next-hop address type 9. */
	dgram_v4(&w, 1);
	s = open_elem(&w, 1);
	for (int i = 0; i < 7; i++)
		put32(&w, 1);
	put32(&w, 1);
	{
		size_t r = open_elem(&w, 1002);

		put32(&w, 9);
		put32(&w, 0);
		put32(&w, 0);
		put32(&w, 0);
		close_elem(&w, r);
	}
	close_elem(&w, s);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_ADDRESS);
	/* Counter sample whose record runs past it. */
	dgram_v4(&w, 1);
	s = open_elem(&w, 2);
	put32(&w, 1);
	put32(&w, 1);
	put32(&w, 1);
	put32(&w, 1);
	put32(&w, 1954);
	close_elem(&w, s);
	assert_int_equal(decode_err(f, &w), -NM_DECODE_ERR_BAD_LENGTH);
	assert_int_equal(f->st.sflow_counters_samples, 1);

	assert_int_equal(f->s.n, 2);
	assert_int_equal(f->st.err[NM_DECODE_ERR_TRUNCATED], 4);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_VERSION], 1);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_ADDRESS], 3);
	assert_int_equal(f->st.err[NM_DECODE_ERR_BAD_LENGTH], 10);
	assert_int_equal(f->st.sflow.bad, 18);
	assert_int_equal(f->st.sflow.datagrams, 18);
	fixture_free(f);
}

/*
 * Every prefix of a good two-sample datagram: never more records than complete samples, the
 * datagram counted once, and any prefix short of the whole is an error. Each prefix is an exact
 * heap copy so a sanitizer build would see a read past it.
 */
static void
test_every_prefix(void **state)
{
	struct fixture *f = fixture_new();
	struct w w;
	size_t first_end;

	(void)state;
	dgram_v4(&w, 2);
	sample_compact_full(&w, 512);
	first_end = w.n;
	sample_compact_full(&w, 1024);
	for (size_t n = 0; n <= w.n; n++) {
		uint8_t *copy = malloc(n ? n : 1);
		unsigned int before = f->s.n;
		int rc;

		memcpy(copy, w.buf, n);
		rc = nm_sflow_decode(&f->d, copy, n, &f->meta, &f->b);
		nm_rec_batch_flush(&f->b);
		if (n == w.n) {
			assert_int_equal(rc, 2);
		} else {
			assert_true(rc < 0);
			assert_int_equal(f->s.n - before, n >= first_end ? 1 : 0);
		}
		free(copy);
	}
	assert_int_equal(f->st.sflow.datagrams, w.n + 1);
	assert_int_equal(f->st.sflow.bad, w.n);
	fixture_free(f);
}

/* ---- corpus ---- */

static uint16_t
be16(const uint8_t *b)
{
	return (uint16_t)(b[0] << 8 | b[1]);
}

/*
 * The test's own way to the UDP payload (independent of the engine's classifier): Ethernet, up
 * to two VLAN tags, IPv4 (not a non-first fragment) or IPv6 with UDP as next header. The payload
 * is what the UDP length says, cut to what was captured.
 */
static int
udp_payload(const uint8_t *fr, size_t len, uint8_t src[NM_ADDR_LEN], const uint8_t **pl,
	    size_t *pl_len, uint16_t *dport)
{
	const uint8_t *p = fr, *end = fr + len, *udp;
	uint16_t et, ulen;
	int tags = 0;

	if (len < 14)
		return -1;
	et = be16(p + 12);
	p += 14;
	while ((et == 0x8100 || et == 0x88a8) && tags++ < 2) {
		if (end - p < 4)
			return -1;
		et = be16(p + 2);
		p += 4;
	}
	if (et == 0x0800) {
		size_t ihl;

		if (end - p < 20 || p[9] != 17 || (be16(p + 6) & 0x1fff) != 0)
			return -1;
		ihl = (p[0] & 0xf) * 4u;
		if (ihl < 20 || (size_t)(end - p) < ihl + 8)
			return -1;
		nm_addr_from_v4(src, p + 12);
		udp = p + ihl;
	} else if (et == 0x86dd) {
		if (end - p < 48 || p[6] != 17)
			return -1;
		memcpy(src, p + 8, 16);
		udp = p + 40;
	} else {
		return -1;
	}
	ulen = be16(udp + 4);
	if (ulen < 8)
		return -1;
	*dport = be16(udp + 2);
	*pl = udp + 8;
	*pl_len = ulen - 8u;
	if (*pl_len > (size_t)(end - *pl))
		*pl_len = (size_t)(end - *pl);
	return 0;
}

struct truth_row {
	char file[512];
	unsigned long long dgrams, records, pkts, bytes, spkts, sbytes, malformed;
};

/*
 * Where our counters differ from tshark's row, and why. Every other file must match exactly,
 * including malformed == sflow.bad.
 */
struct expected_diff {
	const char *file;
	unsigned long long other_dgrams; /* UDP datagrams on the sFlow port that are not sFlow */
	unsigned long long bad;		 /* sFlow datagrams we reject */
	const char *why;
};

static const struct expected_diff expected_diffs[] = {
	{"public/tcpdump/sflow_multiple_counter_30_pdus.pcap", 5, 0,
	 "frames 13 and 19-22 are NetFlow v5 datagrams sent to port 6343: tshark, told the port is "
	 "sFlow, shows nothing for them; we recognise them by their header (nf5) and emit no sFlow "
	 "record from them. tshark marks frames 12 and 18 malformed, but they are well-formed "
	 "hsflowd counter samples (records 2001, 2005, 2004, 2003, 2006, 2000 end exactly at the "
	 "sample's end, walked by hand): Wireshark 4.0 misreads the host_adapters record (2001), so "
	 "we accept them"},
	{"generated/pmacctd-sfprobe-sflow5.pcap", 0, 0,
	 "tshark marks frame 46 malformed while dissecting a sampled packet header inside a good "
	 "sFlow datagram (the inner frame is cut at 128 bytes); the sFlow datagram itself is fine"},
};

static const struct expected_diff *
find_diff(const char *file)
{
	for (size_t i = 0; i < sizeof(expected_diffs) / sizeof(expected_diffs[0]); i++)
		if (strcmp(expected_diffs[i].file, file) == 0)
			return &expected_diffs[i];
	return NULL;
}

static struct fixture *
decode_capture(const char *file, unsigned long long *udp_dgrams)
{
	static uint8_t frame[262144];
	char path[1024];
	struct pcap_rd pr;
	struct fixture *f = fixture_new();
	uint64_t ts;
	long caplen;

	snprintf(path, sizeof(path), "%s/%s", NM_CORPORA, file);
	assert_int_equal(pcap_rd_open(&pr, path), 0);
	assert_int_equal(pr.linktype, 1);
	*udp_dgrams = 0;
	while ((caplen = pcap_rd_next(&pr, frame, sizeof(frame), &ts)) > 0) {
		const uint8_t *pl;
		size_t pl_len;
		uint16_t dport;

		if (udp_payload(frame, (size_t)caplen, f->meta.exporter, &pl, &pl_len, &dport) != 0)
			continue;
		(*udp_dgrams)++;
		f->meta.time_received = ts;
		f->meta.dst_port = dport;
		(void)nm_decode_datagram(&f->d, pl, pl_len, &f->meta, &f->b);
	}
	assert_int_equal(caplen, 0);
	fclose(pr.fp);
	nm_rec_batch_flush(&f->b);
	return f;
}

/* Every sFlow v5 capture of the corpus, decoded EAL-free, against tshark's totals. */
static void
test_corpus(void **state)
{
	char path[1024], line[4096];
	FILE *truth;
	unsigned int files = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/TRUTH.tsv", NM_CORPORA);
	truth = fopen(path, "r");
	if (truth == NULL) {
		print_message("corpus absent at %s: skipping the corpus test\n", NM_CORPORA);
		skip();
	}
	while (fgets(line, sizeof(line), truth) != NULL) {
		struct truth_row t;
		char protos[64], rates[128];
		unsigned long long udp = 0, recs = 0, pkts = 0, bytes = 0, spkts = 0, sbytes = 0;
		unsigned long long other;
		const struct expected_diff *x;
		struct fixture *f;

		if (sscanf(line, "%511s %63s %llu %llu %llu %llu %llu %llu %127s %llu", t.file,
			   protos, &t.dgrams, &t.records, &t.pkts, &t.bytes, &t.spkts, &t.sbytes,
			   rates, &t.malformed) != 10 ||
		    strstr(protos, "sflow5") == NULL)
			continue;
		f = decode_capture(t.file, &udp);
		assert_int_equal(f->s.n < SINK_KEEP, 1);
		for (unsigned int i = 0; i < f->s.n; i++) {
			const struct nm_flow_rec *r = &f->s.all[i];

			if (r->key.type != NM_FLOW_SFLOW5)
				continue;
			recs++;
			pkts += r->packets;
			bytes += r->bytes;
			spkts += r->packets * r->key.sampling_rate;
			sbytes += r->bytes * r->key.sampling_rate;
		}
		x = find_diff(t.file);
		other = f->st.nf5.datagrams + f->st.nf9.datagrams + f->st.ipfix.datagrams +
			f->st.datagrams_unknown;
		print_message("%-58s truth %llu dg %llu rec %llu pkt %llu B %llu spkt %llu sB "
			      "%llu malformed | ours %llu dg (%llu sflow) %llu rec %llu pkt %llu B "
			      "%llu spkt %llu sB %llu bad\n",
			      t.file, t.dgrams, t.records, t.pkts, t.bytes, t.spkts, t.sbytes,
			      t.malformed, udp, (unsigned long long)f->st.sflow.datagrams, recs,
			      pkts, bytes, spkts, sbytes, (unsigned long long)f->st.sflow.bad);
		if (x != NULL)
			print_message("    expected difference: %s\n", x->why);
		assert_int_equal(udp, t.dgrams);
		assert_int_equal(f->st.sflow.datagrams, t.dgrams - (x ? x->other_dgrams : 0));
		assert_int_equal(other, x ? x->other_dgrams : 0);
		assert_int_equal(recs, t.records);
		assert_int_equal(f->st.sflow.records, t.records);
		assert_int_equal(pkts, t.pkts);
		assert_int_equal(bytes, t.bytes);
		assert_int_equal(spkts, t.spkts);
		assert_int_equal(sbytes, t.sbytes);
		assert_int_equal(f->st.sflow.bad, x ? x->bad : t.malformed);
		files++;
		fixture_free(f);
	}
	fclose(truth);
	assert_true(files >= 20);
}

/*
 * Records checked field by field. The expected values were read from
 * `tshark -r FILE -d udp.port==6343,sflow -V` (Wireshark 4.0) and typed in here.
 */
static const struct nm_flow_rec *
only_rec(struct fixture *f, unsigned int i)
{
	assert_true(i < f->s.n);
	return &f->s.all[i];
}

static void
test_corpus_fields(void **state)
{
	char path[1024], a[NM_ADDR_STRLEN];
	unsigned long long udp;
	const struct nm_flow_rec *r;
	struct fixture *f;
	FILE *probe;

	(void)state;
	snprintf(path, sizeof(path), "%s/TRUTH.tsv", NM_CORPORA);
	probe = fopen(path, "r");
	if (probe == NULL) {
		print_message("corpus absent at %s: skipping the corpus field test\n", NM_CORPORA);
		skip();
	}
	fclose(probe);

	/* Expanded flow sample, Ethernet header + sampled Ethernet + switch + sampled IPv4. */
	f = decode_capture("public/akvorado/sflow/data-sflow-ipv4-data.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "49.49.49.49");
	assert_int_equal(r->key.sequence_num, 52291006);
	assert_int_equal(r->key.sampling_rate, 256);
	assert_int_equal(r->key.in_if, 0);
	assert_int_equal(r->key.out_if, 182);
	assert_int_equal(r->bytes, 1390); /* frame length, not the IPv4 record's 1344 */
	assert_int_equal(r->key.src_mac, 0x00fec8990547ULL);
	assert_int_equal(r->key.dst_mac, 0x01005e2aaa04ULL);
	assert_int_equal(r->key.etype, 0x0800);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "50.50.50.50");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "51.51.51.51");
	assert_int_equal(r->key.proto, 17);
	assert_int_equal(r->key.src_port, 46622);
	assert_int_equal(r->key.dst_port, 58631);
	assert_int_equal(r->key.ip_ttl, 64);
	assert_int_equal(r->key.fragment_id, 0xa2af);
	assert_int_equal(r->key.src_vlan, 0);
	assert_int_equal(r->key.dst_vlan, 3001);
	fixture_free(f);

	/* Compact sample 2 of 5: IPv4 TCP, extended gateway with an empty AS path, router. */
	f = decode_capture("public/akvorado/sflow/data-1140.pcap", &udp);
	assert_int_equal(f->s.n, 5);
	r = only_rec(f, 1);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "172.16.0.3");
	assert_int_equal(r->key.sequence_num, 812646826);
	assert_int_equal(r->key.sampling_rate, 1024);
	assert_int_equal(r->key.in_if, 49001);
	assert_int_equal(r->key.out_if, 25);
	assert_int_equal(r->bytes, 439);
	assert_int_equal(r->key.src_vlan, 0xffffffffu); /* as the agent sent it */
	assert_int_equal(r->key.dst_vlan, 100);
	assert_int_equal(r->key.src_mac, 0xc4ca2bae3437ULL);
	assert_int_equal(r->key.dst_mac, 0xae18b04b268aULL);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "104.26.8.24");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "45.90.161.46");
	assert_int_equal(r->key.proto, 6);
	assert_int_equal(r->key.src_port, 443);
	assert_int_equal(r->key.dst_port, 56876);
	assert_int_equal(r->key.tcp_flags, 0x18);
	assert_int_equal(r->key.ip_ttl, 59);
	assert_int_equal(r->key.fragment_id, 0xa572);
	assert_int_equal(r->key.src_as, 13335);
	assert_int_equal(r->key.dst_as, 39421); /* empty path: the router's AS */
	assert_int_equal(r->key.next_hop_as, 0);
	assert_string_equal(nm_addr_str(r->key.next_hop, a, sizeof(a)), "45.90.161.46");
	assert_int_equal(r->key.src_net, 20);
	assert_int_equal(r->key.dst_net, 27);
	/* Sample 1: IPv6 TCP. */
	r = only_rec(f, 0);
	assert_int_equal(r->key.etype, 0x86dd);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)),
			    "2a0c:8880:2:0:185:21:130:38");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)),
			    "2a0c:8880:2:0:185:21:130:39");
	assert_int_equal(r->key.src_port, 46026);
	assert_int_equal(r->key.dst_port, 22);
	assert_int_equal(r->key.tcp_flags, 0x10);
	assert_int_equal(r->key.ip_ttl, 64);
	assert_int_equal(r->key.in_if, 27);
	assert_int_equal(r->key.out_if, 28);
	assert_int_equal(r->bytes, 1518);
	fixture_free(f);

	/* Expanded sample: 802.1Q 809, gateway with a 3-AS sequence, router. */
	f = decode_capture("public/tcpdump/sflow_expanded.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "49.49.49.49");
	assert_int_equal(r->key.sequence_num, 115694180);
	assert_int_equal(r->key.sampling_rate, 1000);
	assert_int_equal(r->key.in_if, 29001);
	assert_int_equal(r->key.out_if, 1285816721);
	assert_int_equal(r->bytes, 126);
	assert_int_equal(r->key.vlan_id, 809);
	assert_int_equal(r->key.src_mac, 0x948ed30a713bULL);
	assert_int_equal(r->key.dst_mac, 0x22421f4a9fcdULL);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "52.52.52.52");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "53.53.53.53");
	assert_int_equal(r->key.ip_tos, 0x08);
	assert_int_equal(r->key.ip_ttl, 61);
	assert_int_equal(r->key.src_port, 22);
	assert_int_equal(r->key.dst_port, 52237);
	assert_int_equal(r->key.tcp_flags, 0x18);
	assert_int_equal(r->key.src_as, 203476);
	assert_int_equal(r->key.dst_as, 203361);
	assert_int_equal(r->key.next_hop_as, 8218);
	assert_string_equal(nm_addr_str(r->key.next_hop, a, sizeof(a)), "54.54.54.54");
	assert_int_equal(r->key.src_net, 32);
	assert_int_equal(r->key.dst_net, 22);
	fixture_free(f);

	/* Expanded sample, QinQ: the outer tag is the VLAN. */
	f = decode_capture("public/akvorado/sflow/data-qinq.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "172.17.128.58");
	assert_int_equal(r->key.sequence_num, 184089);
	assert_int_equal(r->key.sampling_rate, 4096);
	assert_int_equal(r->key.in_if, 369098852);
	assert_int_equal(r->key.out_if, 369098851);
	assert_int_equal(r->key.vlan_id, 1062);
	assert_int_equal(r->key.src_mac, 0x4caea3520ff6ULL);
	assert_int_equal(r->key.dst_mac, 0x000110621493ULL);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)), "49.49.49.2");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "49.49.49.109");
	assert_int_equal(r->key.ip_ttl, 62);
	assert_int_equal(r->key.proto, 6);
	assert_int_equal(r->key.src_port, 32017);
	assert_int_equal(r->key.dst_port, 443);
	fixture_free(f);

	/* Output "packet discarded" (format 1): no interface, forwarding status dropped. */
	f = decode_capture("public/akvorado/sflow/data-discard-interface.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_int_equal(r->key.in_if, 27);
	assert_int_equal(r->key.out_if, 0);
	assert_int_equal(r->key.forwarding_status, 128);
	assert_int_equal(r->key.ip_tos, 0x08);
	assert_int_equal(r->key.ipv6_flow_label, 0x68094);
	assert_int_equal(r->key.src_vlan, 100);
	assert_int_equal(r->key.dst_vlan, 100);
	fixture_free(f);

	/* Output "multiple interfaces" (format 2, 7 of them): no single interface. */
	f = decode_capture("public/akvorado/sflow/data-multiple-interfaces.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_int_equal(r->key.in_if, 27);
	assert_int_equal(r->key.out_if, 0);
	assert_int_equal(r->key.forwarding_status, 0);
	fixture_free(f);

	/* ICMPv6 neighbour solicitation. */
	f = decode_capture("public/akvorado/sflow/data-icmpv6.pcap", &udp);
	assert_int_equal(f->s.n, 1);
	r = only_rec(f, 0);
	assert_string_equal(nm_addr_str(r->key.sampler_addr, a, sizeof(a)), "127.0.0.1");
	assert_int_equal(r->key.in_if, 1073741823);
	assert_int_equal(r->key.out_if, 1073741823);
	assert_int_equal(r->key.proto, 58);
	assert_int_equal(r->key.icmp_type, 135);
	assert_int_equal(r->key.icmp_code, 0);
	assert_int_equal(r->key.ip_ttl, 255);
	assert_string_equal(nm_addr_str(r->key.src_addr, a, sizeof(a)),
			    "fe80::d05b:45ff:feee:5ecf");
	assert_string_equal(nm_addr_str(r->key.dst_addr, a, sizeof(a)), "2001:db8::");
	assert_int_equal(r->bytes, 90);
	fixture_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compact_sample),
		cmocka_unit_test(test_expanded_counters_ipv6_agent),
		cmocka_unit_test(test_interfaces_and_precedence),
		cmocka_unit_test(test_batch_flushes),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_corpus),
		cmocka_unit_test(test_corpus_fields),
	};

	return cmocka_run_group_tests(tests, setup_rcu, teardown_rcu);
}
