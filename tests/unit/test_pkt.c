/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * L2-L4 parser of sampled/mirrored frames: hand-built frames for every layer it walks, the
 * truncations sFlow produces every day, and hostile tag/label/extension-header chains.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* lib/pkt stands below the decoders: its own header (and lib/base through it) is enough. */
#include "pkt/pkt.h"

/* A frame under construction. */
struct fb {
	uint8_t b[512];
	size_t n;
};

static void
add(struct fb *f, const void *p, size_t n)
{
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

#define ADD(f, ...) add((f), (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__}))

static void
eth(struct fb *f, uint16_t etype)
{
	f->n = 0;
	ADD(f, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, etype >> 8,
	    etype & 0xff);
}

/* IPv4 header, IHL 5, 10.0.0.1 -> 10.0.0.2. */
static void
ipv4(struct fb *f, uint8_t proto, uint16_t frag)
{
	ADD(f, 0x45, 0xb8, 0x00, 0x40, 0xbe, 0xef, frag >> 8, frag & 0xff, 0x3c, proto, 0, 0, 10, 0,
	    0, 1, 10, 0, 0, 2);
}

/* IPv6 header, tc 0xa5, flow label 0xbcdef, hop limit 33, 2001:db8::1 -> 2001:db8::2. */
static void
ipv6(struct fb *f, uint8_t nh)
{
	ADD(f, 0x6a, 0x5b, 0xcd, 0xef, 0x00, 0x20, nh, 33, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 1, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);
}

static void
tcp(struct fb *f)
{
	ADD(f, 0x01, 0xbb, 0xc3, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0);
}

static void
udp(struct fb *f)
{
	ADD(f, 0x00, 0x35, 0x9c, 0x40, 0x00, 0x08, 0x00, 0x00);
}

/* Parse an exact-size heap copy, so a sanitizer build sees any read past the end. */
static int
parse_eth(const struct fb *f, size_t n, struct nm_flow_key *k)
{
	uint8_t *copy = malloc(n ? n : 1);
	int rc;

	memcpy(copy, f->b, n);
	memset(k, 0, sizeof(*k));
	rc = nm_pkt_parse_eth(copy, n, k);
	free(copy);
	return rc;
}

static void
test_eth_ipv4_tcp(void **state)
{
	struct fb f;
	struct nm_flow_key k;
	char a[NM_ADDR_STRLEN];

	(void)state;
	eth(&f, 0x0800);
	ipv4(&f, 6, 0x4000);
	tcp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.dst_mac, 0x001122334455ULL);
	assert_int_equal(k.src_mac, 0x66778899aabbULL);
	assert_int_equal(k.etype, 0x0800);
	assert_int_equal(k.vlan_id, 0);
	assert_int_equal(k.mpls_count, 0);
	assert_string_equal(nm_addr_str(k.src_addr, a, sizeof(a)), "10.0.0.1");
	assert_string_equal(nm_addr_str(k.dst_addr, a, sizeof(a)), "10.0.0.2");
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.ip_tos, 0xb8);
	assert_int_equal(k.ip_ttl, 0x3c);
	assert_int_equal(k.fragment_id, 0xbeef);
	assert_int_equal(k.fragment_offset, 0);
	assert_int_equal(k.src_port, 443);
	assert_int_equal(k.dst_port, 50000);
	assert_int_equal(k.tcp_flags, 0x02);

	/* Cut after the ports, before the flags: fine, no flags. */
	assert_int_equal(parse_eth(&f, 14 + 20 + 4, &k), 0);
	assert_int_equal(k.src_port, 443);
	assert_int_equal(k.dst_port, 50000);
	assert_int_equal(k.tcp_flags, 0);
	/* Cut inside the ports: still past L3, fine, no ports. */
	assert_int_equal(parse_eth(&f, 14 + 20 + 3, &k), 0);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.src_port, 0);
	/* Cut inside the IPv4 header: truncated, L2 kept, etype known. */
	assert_int_equal(parse_eth(&f, 14 + 19, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(k.etype, 0x0800);
	assert_int_equal(k.src_mac, 0x66778899aabbULL);
	assert_int_equal(k.proto, 0);
	/* Shorter than Ethernet. */
	assert_int_equal(parse_eth(&f, 13, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(parse_eth(&f, 0, &k), -NM_DECODE_ERR_TRUNCATED);
}

static void
test_ipv4_options_fragments_icmp(void **state)
{
	struct fb f;
	struct nm_flow_key k;

	(void)state;
	/* IHL 6 (one option word), UDP after it. */
	eth(&f, 0x0800);
	ADD(&f, 0x46, 0, 0, 0x40, 0, 1, 0, 0, 64, 17, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 1, 0, 0);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.proto, 17);
	assert_int_equal(k.src_port, 53);
	assert_int_equal(k.dst_port, 40000);
	/* Options cut short: the fixed header is there, the rest is not. */
	assert_int_equal(parse_eth(&f, 14 + 22, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(k.proto, 17);
	assert_int_equal(k.src_port, 0);

	/* A non-first fragment (offset 185 * 8) has no transport header. */
	eth(&f, 0x0800);
	ipv4(&f, 17, 0x2000 | 185);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.fragment_offset, 185);
	assert_int_equal(k.fragment_id, 0xbeef);
	assert_int_equal(k.proto, 17);
	assert_int_equal(k.src_port, 0);
	assert_int_equal(k.dst_port, 0);
	/* The first fragment (MF set, offset 0) does have it. */
	eth(&f, 0x0800);
	ipv4(&f, 17, 0x2000);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.src_port, 53);

	/* ICMP echo request. */
	eth(&f, 0x0800);
	ipv4(&f, 1, 0);
	ADD(&f, 8, 0, 0xf7, 0xff, 0, 0, 0, 0);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.icmp_type, 8);
	assert_int_equal(k.icmp_code, 0);
	assert_int_equal(k.src_port, 0);
	/* SCTP ports. */
	eth(&f, 0x0800);
	ipv4(&f, 132, 0);
	ADD(&f, 0x0b, 0x59, 0x0b, 0x5a, 0, 0, 0, 0);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.src_port, 2905);
	assert_int_equal(k.dst_port, 2906);

	/* IHL below 5, and a version that is not 4 behind EtherType 0x0800. */
	eth(&f, 0x0800);
	ipv4(&f, 6, 0);
	f.b[14] = 0x44;
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
	f.b[14] = 0x65;
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
}

static void
test_vlan_qinq(void **state)
{
	struct fb f;
	struct nm_flow_key k;

	(void)state;
	/* 802.1ad outer 1062 (PCP 2), 802.1Q inner 1493, IPv4 UDP. */
	eth(&f, 0x88a8);
	ADD(&f, 0x44, 0x26, 0x81, 0x00, 0x45, 0xd5, 0x08, 0x00);
	ipv4(&f, 17, 0);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.vlan_id, 1062);
	assert_int_equal(k.etype, 0x0800);
	assert_int_equal(k.dst_port, 40000);
	/* Single 802.1Q tag, IPv6 UDP. */
	eth(&f, 0x8100);
	ADD(&f, 0x00, 0x64, 0x86, 0xdd);
	ipv6(&f, 17);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.vlan_id, 100);
	assert_int_equal(k.etype, 0x86dd);
	assert_int_equal(k.src_port, 53);
	/* Cut inside the tag. */
	assert_int_equal(parse_eth(&f, 16, &k), -NM_DECODE_ERR_TRUNCATED);
	/* Five tags: more than any real frame carries. */
	eth(&f, 0x8100);
	for (int i = 0; i < 5; i++)
		ADD(&f, 0x00, 0x01, 0x81, 0x00);
	ipv4(&f, 17, 0);
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
	assert_int_equal(k.vlan_id, 1);
	/* A non-IP EtherType (ARP) behind a tag: parsed, nothing more to find. */
	eth(&f, 0x8100);
	ADD(&f, 0x00, 0x07, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.vlan_id, 7);
	assert_int_equal(k.etype, 0x0806);
	assert_int_equal(k.proto, 0);
}

static void
test_mpls(void **state)
{
	struct fb f;
	struct nm_flow_key k;
	char a[NM_ADDR_STRLEN];

	(void)state;
	/* Labels 16 (ttl 255), 1000 (ttl 254), 99999 (ttl 10), 524287 bottom (ttl 1); IPv4 TCP. */
	eth(&f, 0x8847);
	ADD(&f, 0x00, 0x01, 0x00, 0xff);
	ADD(&f, 0x00, 0x3e, 0x80, 0xfe);
	ADD(&f, 0x18, 0x69, 0xf0, 0x0a);
	ADD(&f, 0x7f, 0xff, 0xf1, 0x01);
	ipv4(&f, 6, 0);
	tcp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.mpls_count, 4);
	assert_int_equal(k.mpls_label[0], 16);
	assert_int_equal(k.mpls_ttl[0], 255);
	assert_int_equal(k.mpls_label[1], 1000);
	assert_int_equal(k.mpls_ttl[1], 254);
	assert_int_equal(k.mpls_label[2], 99999);
	assert_int_equal(k.mpls_ttl[2], 10);
	assert_int_equal(k.mpls_last_label, 524287);
	assert_int_equal(k.mpls_last_ttl, 1);
	assert_int_equal(k.etype, 0x0800);
	assert_string_equal(nm_addr_str(k.dst_addr, a, sizeof(a)), "10.0.0.2");
	assert_int_equal(k.src_port, 443);

	/* One label, IPv6 under it, behind a VLAN tag. */
	eth(&f, 0x8100);
	ADD(&f, 0x00, 0x0a, 0x88, 0x47);
	ADD(&f, 0x00, 0x02, 0x01, 0x40);
	ipv6(&f, 6);
	tcp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.vlan_id, 10);
	assert_int_equal(k.mpls_count, 1);
	assert_int_equal(k.mpls_label[0], 32);
	assert_int_equal(k.mpls_last_label, 32);
	assert_int_equal(k.mpls_last_ttl, 64);
	assert_int_equal(k.etype, 0x86dd);
	assert_int_equal(k.dst_port, 50000);

	/* A pseudowire (control word 0x0...) under the stack: MPLS is all we know. */
	eth(&f, 0x8847);
	ADD(&f, 0x00, 0x02, 0x01, 0x40, 0x00, 0x00, 0x00, 0x00);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.etype, 0x8847);
	assert_int_equal(k.mpls_count, 1);
	/* Stack that ends with the frame. */
	assert_int_equal(parse_eth(&f, 18, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(parse_eth(&f, 16, &k), -NM_DECODE_ERR_TRUNCATED);
	/* 17 labels and no bottom of stack. */
	eth(&f, 0x8847);
	for (int i = 0; i < 17; i++)
		ADD(&f, 0x00, 0x10, 0x00, 0x40);
	ipv4(&f, 6, 0);
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
	assert_int_equal(k.mpls_count, 16);
}

static void
test_ipv6_ext_headers(void **state)
{
	struct fb f;
	struct nm_flow_key k;
	char a[NM_ADDR_STRLEN];

	(void)state;
	/* Hop-by-hop (8), routing (24), destination options (8), AH (16), UDP. */
	eth(&f, 0x86dd);
	ipv6(&f, 0);
	ADD(&f, 43, 0, 1, 4, 0, 0, 0, 0);
	ADD(&f, 60, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
	ADD(&f, 51, 0, 1, 4, 0, 0, 0, 0);
	ADD(&f, 17, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.etype, 0x86dd);
	assert_string_equal(nm_addr_str(k.src_addr, a, sizeof(a)), "2001:db8::1");
	assert_string_equal(nm_addr_str(k.dst_addr, a, sizeof(a)), "2001:db8::2");
	assert_int_equal(k.ip_tos, 0xa5);
	assert_int_equal(k.ipv6_flow_label, 0xbcdef);
	assert_int_equal(k.ip_ttl, 33);
	assert_int_equal(k.proto, 17);
	assert_int_equal(k.src_port, 53);
	assert_int_equal(k.dst_port, 40000);
	/* Cut inside the routing header: past L3, proto is the header we could not cross. */
	assert_int_equal(parse_eth(&f, 14 + 40 + 8 + 10, &k), 0);
	assert_int_equal(k.proto, 43);
	assert_int_equal(k.src_port, 0);
	/* Cut inside the fixed header. */
	assert_int_equal(parse_eth(&f, 14 + 39, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(k.etype, 0x86dd);

	/* Fragment header, first fragment: id and offset 0, transport parsed. */
	eth(&f, 0x86dd);
	ipv6(&f, 44);
	ADD(&f, 6, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef);
	tcp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.fragment_id, 0xdeadbeef);
	assert_int_equal(k.fragment_offset, 0);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.src_port, 443);
	/* Later fragment (offset 100 * 8): proto is the upper layer, no ports. */
	f.b[14 + 40 + 2] = 0x03;
	f.b[14 + 40 + 3] = 0x20;
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.fragment_offset, 100);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.src_port, 0);

	/*
	 * Two Fragment headers (found by fuzz_pkt): the first, offset 0, id 0xdeadbeef; the second
	 * another id. The frame is malformed; the first header's fields stay, whatever the capture
	 * length: a capture cut after the first header gives the same id as the whole frame.
	 */
	eth(&f, 0x86dd);
	ipv6(&f, 44);
	ADD(&f, 44, 0, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef);
	ADD(&f, 6, 0, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78);
	tcp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
	assert_int_equal(k.fragment_id, 0xdeadbeef);
	assert_int_equal(k.fragment_offset, 0);
	assert_int_equal(k.src_port, 0);
	assert_int_equal(parse_eth(&f, 14 + 40 + 8 + 4, &k), 0);
	assert_int_equal(k.fragment_id, 0xdeadbeef);
	assert_int_equal(k.proto, 44);

	/* ICMPv6 echo request. */
	eth(&f, 0x86dd);
	ipv6(&f, 58);
	ADD(&f, 128, 0, 0, 0);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.icmp_type, 128);
	assert_int_equal(k.icmp_code, 0);

	/* Nine hop-by-hop headers in a row: more than the walk allows. */
	eth(&f, 0x86dd);
	ipv6(&f, 0);
	for (int i = 0; i < 9; i++)
		ADD(&f, 0, 0, 0, 0, 0, 0, 0, 0);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
	/* A header length of 255 (2048 bytes) in a short frame. */
	eth(&f, 0x86dd);
	ipv6(&f, 60);
	ADD(&f, 17, 255, 0, 0, 0, 0, 0, 0);
	udp(&f);
	assert_int_equal(parse_eth(&f, f.n, &k), 0);
	assert_int_equal(k.proto, 60);
	assert_int_equal(k.src_port, 0);
	/* Version 4 behind EtherType 0x86dd. */
	eth(&f, 0x86dd);
	ipv6(&f, 17);
	f.b[14] = 0x4a;
	assert_int_equal(parse_eth(&f, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
}

static void
test_parse_ip(void **state)
{
	struct fb f;
	struct nm_flow_key k;
	char a[NM_ADDR_STRLEN];

	(void)state;
	f.n = 0;
	ipv4(&f, 17, 0);
	udp(&f);
	memset(&k, 0, sizeof(k));
	assert_int_equal(nm_pkt_parse_ip(f.b, f.n, &k), 0);
	assert_int_equal(k.etype, 0x0800);
	assert_int_equal(k.src_mac, 0);
	assert_string_equal(nm_addr_str(k.src_addr, a, sizeof(a)), "10.0.0.1");
	assert_int_equal(k.dst_port, 40000);
	f.n = 0;
	ipv6(&f, 6);
	tcp(&f);
	memset(&k, 0, sizeof(k));
	assert_int_equal(nm_pkt_parse_ip(f.b, f.n, &k), 0);
	assert_int_equal(k.etype, 0x86dd);
	assert_int_equal(k.tcp_flags, 0x02);
	/* Empty, too short, unknown version. */
	memset(&k, 0, sizeof(k));
	assert_int_equal(nm_pkt_parse_ip(f.b, 0, &k), -NM_DECODE_ERR_TRUNCATED);
	assert_int_equal(nm_pkt_parse_ip(f.b, 39, &k), -NM_DECODE_ERR_TRUNCATED);
	f.b[0] = 0x50;
	assert_int_equal(nm_pkt_parse_ip(f.b, f.n, &k), -NM_DECODE_ERR_BAD_PACKET);
}

/*
 * Every prefix of a frame with every layer: the result only ever improves as bytes are added,
 * and is 0 from the first byte of the L4 header on.
 */
static void
test_every_prefix(void **state)
{
	struct fb f;
	struct nm_flow_key k;
	size_t l3 = 14 + 4 + 4 + 8; /* Ethernet, 802.1ad, 802.1Q, two MPLS labels */

	(void)state;
	eth(&f, 0x88a8);
	ADD(&f, 0x00, 0x05, 0x81, 0x00, 0x00, 0x06, 0x88, 0x47);
	ADD(&f, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40);
	ipv6(&f, 0);
	ADD(&f, 44, 0, 0, 0, 0, 0, 0, 0);
	ADD(&f, 6, 0, 0, 0, 0, 0, 0, 9);
	tcp(&f);
	for (size_t n = 0; n <= f.n; n++) {
		int rc = parse_eth(&f, n, &k);

		if (n < l3 + 40)
			assert_int_equal(rc, -NM_DECODE_ERR_TRUNCATED);
		else
			assert_int_equal(rc, 0);
		if (n >= l3 + 40 + 16 + 14)
			assert_int_equal(k.tcp_flags, 0x02);
	}
	assert_int_equal(k.vlan_id, 5);
	assert_int_equal(k.mpls_count, 2);
	assert_int_equal(k.fragment_id, 9);
	assert_int_equal(k.proto, 6);
	assert_int_equal(k.src_port, 443);
}

/*
 * The MACs (one 8-byte load each) and the IPv4-mapped addresses (two 8-byte stores) against
 * byte-by-byte references, on 20,000 random Ethernet/IPv4 frames of every length from 14 to 80
 * bytes, each parsed from an exact-length heap copy (ASan sees any read past the frame).
 */
static void
test_random_frames_fields(void **state)
{
	uint64_t x = 0x853c49e6748fea9bULL;
	unsigned int i, j;

	(void)state;
	for (i = 0; i < 20000; i++) {
		size_t n = 14 + i % 67;
		uint8_t *b = malloc(n), want[NM_ADDR_LEN];
		struct nm_flow_key k;
		uint64_t dmac = 0, smac = 0;

		assert_non_null(b);
		for (j = 0; j < n; j++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			b[j] = (uint8_t)x;
		}
		b[12] = 0x08;
		b[13] = 0x00;
		if (n > 14)
			b[14] = (uint8_t)(0x45 + (i % 3 == 0)); /* IHL 5 or 6 */
		if (n > 21)
			b[20] = b[21] = 0; /* not a fragment: the L4 ports are read */
		memset(&k, 0xa5, sizeof(k));
		(void)nm_pkt_parse_eth(b, n, &k);
		for (j = 0; j < 6; j++) {
			dmac = dmac << 8 | b[j];
			smac = smac << 8 | b[6 + j];
		}
		assert_int_equal(k.dst_mac, dmac);
		assert_int_equal(k.src_mac, smac);
		if (n >= 34) {
			nm_addr_from_v4(want, b + 26);
			assert_memory_equal(k.src_addr, want, NM_ADDR_LEN);
			nm_addr_from_v4(want, b + 30);
			assert_memory_equal(k.dst_addr, want, NM_ADDR_LEN);
			assert_int_equal(k.proto, b[23]);
		}
		free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_eth_ipv4_tcp),
		cmocka_unit_test(test_ipv4_options_fragments_icmp),
		cmocka_unit_test(test_vlan_qinq),
		cmocka_unit_test(test_mpls),
		cmocka_unit_test(test_ipv6_ext_headers),
		cmocka_unit_test(test_parse_ip),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_random_frames_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
