/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Finding the UDP payload of a collector datagram in an Ethernet frame. This is the first thing
 * the RX lcore does with every frame, so it only walks what a flow export can arrive in: Ethernet,
 * up to two VLAN tags, IPv4 or IPv6 (no extension headers other than none), UDP.
 */
#include "pkt.h"
#include "../base/rd.h"

static const char *const class_names[NM_UDP_CLASS_MAX] = {
	[NM_UDP_OK] = "ok",
	[NM_UDP_NOT_IP] = "not_ip",
	[NM_UDP_NOT_UDP] = "not_udp",
	[NM_UDP_FRAGMENT] = "fragment",
	[NM_UDP_TRUNCATED] = "truncated",
	[NM_UDP_BAD_HEADER] = "bad_header",
};

const char *
nm_udp_class_name(enum nm_udp_class c)
{
	if ((unsigned int)c >= NM_UDP_CLASS_MAX)
		return "invalid";
	return class_names[c];
}

enum nm_udp_class
nm_pkt_udp_view(const uint8_t *frame, size_t len, struct nm_udp_view *v)
{
	const uint8_t *p = frame, *end = frame + len;
	uint16_t etype;
	int tags = 0;

	if (len < 14)
		return NM_UDP_TRUNCATED;
	etype = nm_rd16(p + 12);
	p += 14;
	while ((etype == 0x8100 || etype == 0x88a8) && tags < 2) {
		if (end - p < 4)
			return NM_UDP_TRUNCATED;
		etype = nm_rd16(p + 2);
		p += 4;
		tags++;
	}
	return nm_pkt_udp_view_l3(etype, p, (size_t)(end - p), v);
}

enum nm_udp_class
nm_pkt_udp_view_link(enum nm_link link, const uint8_t *frame, size_t len, struct nm_udp_view *v)
{
	switch (link) {
	case NM_LINK_ETHER:
		return nm_pkt_udp_view(frame, len, v);
	case NM_LINK_SLL:
		/*
		 * Linux cooked capture: 16 bytes whose last two are the EtherType. Skipping the
		 * first two leaves 12 bytes of addresses and the EtherType: an Ethernet header in
		 * shape, which is all the classifier reads of it.
		 */
		if (len < 16)
			return NM_UDP_TRUNCATED;
		return nm_pkt_udp_view(frame + 2, len - 2, v);
	case NM_LINK_RAW:
		if (len < 1)
			return NM_UDP_TRUNCATED;
		return nm_pkt_udp_view_l3((frame[0] >> 4) == 6 ? 0x86dd : 0x0800, frame, len, v);
	}
	return NM_UDP_NOT_IP;
}

enum nm_udp_class
nm_pkt_udp_view_l3(uint16_t etype, const uint8_t *p, size_t len, struct nm_udp_view *v)
{
	const uint8_t *end = p + len, *udp;
	uint16_t ulen;

	if (etype == 0x0800) {
		unsigned int ihl;
		uint16_t tot, frag;

		if (end - p < 20)
			return NM_UDP_TRUNCATED;
		if ((p[0] >> 4) != 4 || (ihl = (p[0] & 0x0f) * 4u) < 20)
			return NM_UDP_BAD_HEADER;
		if (p[9] != 17)
			return NM_UDP_NOT_UDP;
		frag = nm_rd16(p + 6);
		if ((frag & 0x3fff) != 0) /* MF set or offset != 0 */
			return NM_UDP_FRAGMENT;
		tot = nm_rd16(p + 2);
		if (tot < ihl + 8 || (size_t)(end - p) < tot)
			return NM_UDP_TRUNCATED;
		nm_addr_from_v4(v->src, p + 12);
		nm_addr_from_v4(v->dst, p + 16);
		udp = p + ihl;
		end = p + tot; /* Ethernet padding is not payload */
	} else if (etype == 0x86dd) {
		uint16_t plen;

		if (end - p < 40)
			return NM_UDP_TRUNCATED;
		if ((p[0] >> 4) != 6)
			return NM_UDP_BAD_HEADER;
		if (p[6] == 44)
			return NM_UDP_FRAGMENT;
		if (p[6] != 17)
			return NM_UDP_NOT_UDP;
		plen = nm_rd16(p + 4);
		if (plen < 8 || (size_t)(end - p - 40) < plen)
			return NM_UDP_TRUNCATED;
		memcpy(v->src, p + 8, NM_ADDR_LEN);
		memcpy(v->dst, p + 24, NM_ADDR_LEN);
		udp = p + 40;
		end = udp + plen;
	} else {
		return NM_UDP_NOT_IP;
	}
	if (end - udp < 8)
		return NM_UDP_TRUNCATED;
	ulen = nm_rd16(udp + 4);
	if (ulen < 8)
		return NM_UDP_BAD_HEADER;
	if ((size_t)(end - udp) < ulen)
		return NM_UDP_TRUNCATED;
	v->src_port = nm_rd16(udp);
	v->dst_port = nm_rd16(udp + 2);
	v->payload = udp + 8;
	v->payload_len = (uint16_t)(ulen - 8);
	return NM_UDP_OK;
}
