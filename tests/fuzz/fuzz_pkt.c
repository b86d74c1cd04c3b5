/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: the frame parser (lib/pkt), both halves: the classifier that finds a
 * collector datagram in a frame (nm_pkt_udp_view*) and the L2-L4 parser that fills a flow key from
 * a sampled or mirrored frame (nm_pkt_parse_eth/_ip). The input is one frame; run_fuzz.py seeds it
 * with the frames of the corpus captures.
 *
 * Not only "no crash": every input is checked against the parser's own contract and traps when
 * one does not hold:
 *  - the classifier returns a known class; on NM_UDP_OK the payload lies inside the frame, right
 *    after a UDP header at the offset the headers give, the UDP length field is the payload length
 *    plus 8 and fits in the IP length, the ports and addresses are the frame's bytes;
 *  - the link-type variants agree with the Ethernet one on the same bytes;
 *  - the L2-L4 parser returns 0 or one of its two reasons, writes only the fields its header
 *    lists, keeps values inside their wire widths, reads MACs and MPLS labels from inside the
 * frame;
 *  - it agrees with the classifier on a UDP datagram (proto 17, same ports and addresses) and with
 *    nm_pkt_parse_ip on the IP header of an untagged frame;
 *  - a prefix of the frame, copied to a buffer of exactly its length (ASan sees any read past
 *    it), never yields a field value the whole frame contradicts: a short capture loses fields,
 *    it never invents them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/rd.h"
#include "base/reason.h"
#include "pkt/pkt.h"

#define CHECK(c)                                                                                   \
	do {                                                                                       \
		if (!(c))                                                                          \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != 0)
			return 0;
	return 1;
}

/* A classifier result on frame[0..len): the payload where the headers at l3 put it. */
static void
check_udp_view(enum nm_udp_class c, const uint8_t *frame, size_t len, const uint8_t *l3,
	       const struct nm_udp_view *v)
{
	const uint8_t *udp;
	size_t l3len;

	CHECK((unsigned int)c < NM_UDP_CLASS_MAX);
	CHECK(strcmp(nm_udp_class_name(c), "invalid") != 0);
	if (c != NM_UDP_OK)
		return;
	CHECK(l3 != NULL && l3 >= frame && l3 <= frame + len);
	l3len = (size_t)(frame + len - l3);
	CHECK(v->payload >= frame && v->payload <= frame + len);
	CHECK((size_t)(frame + len - v->payload) >= v->payload_len);
	udp = v->payload - 8;
	CHECK(udp >= l3);
	CHECK(nm_rd16(udp) == v->src_port && nm_rd16(udp + 2) == v->dst_port);
	CHECK(nm_rd16(udp + 4) == v->payload_len + 8u);
	if ((l3[0] >> 4) == 4) {
		unsigned int ihl = (l3[0] & 0x0f) * 4u;
		uint16_t tot = nm_rd16(l3 + 2);

		CHECK(l3len >= 20 && ihl >= 20 && l3[9] == 17 && (nm_rd16(l3 + 6) & 0x3fff) == 0);
		CHECK(udp == l3 + ihl);
		CHECK(tot <= l3len && ihl + v->payload_len + 8u <= tot);
		CHECK(memcmp(v->src + 12, l3 + 12, 4) == 0 && memcmp(v->dst + 12, l3 + 16, 4) == 0);
		CHECK(v->src[10] == 0xff && v->src[11] == 0xff && is_zero(v->src, 10));
	} else {
		CHECK((l3[0] >> 4) == 6 && l3len >= 40 && l3[6] == 17);
		CHECK(udp == l3 + 40);
		CHECK(v->payload_len + 8u <= nm_rd16(l3 + 4) && nm_rd16(l3 + 4) <= l3len - 40);
		CHECK(memcmp(v->src, l3 + 8, 16) == 0 && memcmp(v->dst, l3 + 24, 16) == 0);
	}
}

/* The fields nm_pkt_parse_eth/_ip may write (pkt.h); everything else must stay as it was. */
static void
clear_parsed(struct nm_flow_key *k)
{
	k->src_mac = k->dst_mac = 0;
	k->vlan_id = 0;
	memset(k->mpls_label, 0, sizeof(k->mpls_label));
	memset(k->mpls_ttl, 0, sizeof(k->mpls_ttl));
	k->mpls_last_label = 0;
	k->mpls_last_ttl = 0;
	k->mpls_count = 0;
	k->etype = 0;
	memset(k->src_addr, 0, NM_ADDR_LEN);
	memset(k->dst_addr, 0, NM_ADDR_LEN);
	k->proto = 0;
	k->src_port = k->dst_port = 0;
	k->tcp_flags = k->icmp_type = k->icmp_code = 0;
	k->ip_tos = k->ip_ttl = 0;
	k->ipv6_flow_label = 0;
	k->fragment_id = k->fragment_offset = 0;
}

static void
check_key(int rc, const struct nm_flow_key *k)
{
	struct nm_flow_key rest = *k;

	CHECK(rc == 0 || rc == -NM_DECODE_ERR_TRUNCATED || rc == -NM_DECODE_ERR_BAD_PACKET);
	clear_parsed(&rest);
	CHECK(is_zero(&rest, sizeof(rest)));
	CHECK(k->src_mac >> 48 == 0 && k->dst_mac >> 48 == 0);
	CHECK(k->vlan_id <= 0x0fff);
	CHECK(k->mpls_count <= 16);
	for (int i = 0; i < 3; i++)
		CHECK(k->mpls_label[i] < 1u << 20);
	CHECK(k->mpls_last_label < 1u << 20);
	CHECK(k->ipv6_flow_label <= 0xfffff);
	CHECK(k->fragment_offset <= 0x1fff);
	if (k->etype == 0x0800)
		CHECK(k->fragment_id <= 0xffff);
}

/* Fields a short capture may lose but never changes (etype and proto may legitimately stop at a
 * tag or an extension header; the MPLS count at the labels seen). */
#define SAME_OR_ZERO(f) CHECK(part->f == 0 || part->f == whole->f)
static void
check_prefix(const struct nm_flow_key *part, const struct nm_flow_key *whole)
{
	SAME_OR_ZERO(src_mac);
	SAME_OR_ZERO(dst_mac);
	SAME_OR_ZERO(vlan_id);
	for (int i = 0; i < 3; i++) {
		SAME_OR_ZERO(mpls_label[i]);
		SAME_OR_ZERO(mpls_ttl[i]);
	}
	CHECK(part->mpls_count <= whole->mpls_count);
	SAME_OR_ZERO(src_port);
	SAME_OR_ZERO(dst_port);
	SAME_OR_ZERO(tcp_flags);
	SAME_OR_ZERO(icmp_type);
	SAME_OR_ZERO(icmp_code);
	SAME_OR_ZERO(ip_tos);
	SAME_OR_ZERO(ip_ttl);
	SAME_OR_ZERO(ipv6_flow_label);
	SAME_OR_ZERO(fragment_id);
	SAME_OR_ZERO(fragment_offset);
	CHECK(is_zero(part->src_addr, NM_ADDR_LEN) ||
	      memcmp(part->src_addr, whole->src_addr, NM_ADDR_LEN) == 0);
	CHECK(is_zero(part->dst_addr, NM_ADDR_LEN) ||
	      memcmp(part->dst_addr, whole->dst_addr, NM_ADDR_LEN) == 0);
}

/* Where the classifier's L3 header starts: after Ethernet and up to two 802.1Q/802.1ad tags. */
static const uint8_t *
eth_l3(const uint8_t *f, size_t len)
{
	size_t off = 14;
	int tags = 0;

	if (len < 14)
		return NULL;
	while ((nm_rd16(f + off - 2) == 0x8100 || nm_rd16(f + off - 2) == 0x88a8) && tags < 2) {
		if (len - off < 4)
			return NULL;
		off += 4;
		tags++;
	}
	return f + off;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nm_udp_view v, v2;
	struct nm_flow_key k, k2;
	enum nm_udp_class c, c2;
	size_t cut;
	int rc, rc2;

	/* The classifier, Ethernet. */
	memset(&v, 0, sizeof(v));
	c = nm_pkt_udp_view(data, size, &v);
	check_udp_view(c, data, size, c == NM_UDP_OK ? eth_l3(data, size) : NULL, &v);
	memset(&v2, 0, sizeof(v2));
	c2 = nm_pkt_udp_view_link(NM_LINK_ETHER, data, size, &v2);
	CHECK(c2 == c && memcmp(&v, &v2, sizeof(v)) == 0);

	/* Linux cooked: 16 bytes, the EtherType in the last two. */
	memset(&v2, 0, sizeof(v2));
	c2 = nm_pkt_udp_view_link(NM_LINK_SLL, data, size, &v2);
	if (c2 == NM_UDP_OK)
		check_udp_view(c2, data, size, eth_l3(data + 2, size - 2), &v2);
	else
		check_udp_view(c2, data, size, NULL, &v2);

	/* Raw IP: the frame is the L3 header. */
	memset(&v2, 0, sizeof(v2));
	c2 = nm_pkt_udp_view_link(NM_LINK_RAW, data, size, &v2);
	check_udp_view(c2, data, size, data, &v2);

	/* The L2-L4 parser. */
	memset(&k, 0, sizeof(k));
	rc = nm_pkt_parse_eth(data, size, &k);
	check_key(rc, &k);
	if (size >= 14) {
		CHECK(k.dst_mac == ((uint64_t)nm_rd16(data) << 32 | nm_rd32(data + 2)));
		CHECK(k.src_mac == ((uint64_t)nm_rd16(data + 6) << 32 | nm_rd32(data + 8)));
		CHECK(14u + 4u * k.mpls_count <= size);
	} else {
		CHECK(rc == -NM_DECODE_ERR_TRUNCATED && is_zero(&k, sizeof(k)));
	}
	/* Both parsers see the same UDP datagram (MPLS and 0x9100 tags are the parser's only). */
	if (c == NM_UDP_OK) {
		CHECK(rc == 0 && k.proto == 17 && k.mpls_count == 0);
		CHECK(k.src_port == v.src_port && k.dst_port == v.dst_port);
		CHECK(memcmp(k.src_addr, v.src, NM_ADDR_LEN) == 0);
		CHECK(memcmp(k.dst_addr, v.dst, NM_ADDR_LEN) == 0);
	}
	/* An untagged IP frame: the Ethernet entry and the IP entry agree past L2. */
	if (size >= 14 && (nm_rd16(data + 12) == 0x0800 || nm_rd16(data + 12) == 0x86dd) &&
	    size > 14 && (data[14] >> 4) == (nm_rd16(data + 12) == 0x0800 ? 4 : 6)) {
		memset(&k2, 0, sizeof(k2));
		rc2 = nm_pkt_parse_ip(data + 14, size - 14, &k2);
		check_key(rc2, &k2);
		k2.src_mac = k.src_mac;
		k2.dst_mac = k.dst_mac;
		CHECK(rc2 == rc && memcmp(&k, &k2, sizeof(k)) == 0);
	}
	memset(&k2, 0, sizeof(k2));
	check_key(nm_pkt_parse_ip(data, size, &k2), &k2);

	/* A prefix, in a buffer of exactly its length, cut where the last byte says. */
	if (size > 1) {
		uint8_t *part;

		cut = data[size - 1] % size;
		part = malloc(cut ? cut : 1);
		if (part == NULL)
			return 0;
		memcpy(part, data, cut);
		memset(&k2, 0, sizeof(k2));
		rc2 = nm_pkt_parse_eth(part, cut, &k2);
		check_key(rc2, &k2);
		check_prefix(&k2, &k);
		memset(&v2, 0, sizeof(v2));
		c2 = nm_pkt_udp_view(part, cut, &v2);
		check_udp_view(c2, part, cut, c2 == NM_UDP_OK ? eth_l3(part, cut) : NULL, &v2);
		free(part);
	}
	return 0;
}
