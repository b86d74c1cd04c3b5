/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_PKT_H
#define NM_PKT_H

/*
 * Packet parsing shared by the RX path (finding the UDP payload of an export datagram), the sFlow
 * raw-packet-header record, IPFIX dataLinkFrameSection and the port-mirror sampler.
 *
 * Cursor-and-end parsing: every read is checked against the end of the buffer; a frame cut short
 * (sFlow headers are usually truncated at 128 bytes) fills what it can and reports how far it got.
 *
 * Cost: pure functions on (buf, len); no allocation, no lock, no syscall, no shared write. Work
 * is bounded by the frame and by fixed limits on what may repeat (4 VLAN tags, 16 MPLS labels,
 * 8 IPv6 extension headers). Reentrant: any thread.
 *
 * This module sits below the decoders (lib/decode uses it for sampled headers): it includes
 * nothing of them; its failure reasons are the shared enum nm_decode_err of lib/base.
 */

#include <stdint.h>
#include <stddef.h>

#include "../base/reason.h"
#include "../flow/flow.h"

/* Where a collector datagram sits in a frame. Addresses are IPv4-mapped for IPv4. */
struct nm_udp_view {
	uint8_t src[NM_ADDR_LEN];
	uint8_t dst[NM_ADDR_LEN];
	uint16_t src_port;
	uint16_t dst_port;
	const uint8_t *payload;
	uint16_t payload_len;
};

/* Why a frame is not a collector datagram. */
enum nm_udp_class {
	NM_UDP_OK = 0,
	NM_UDP_NOT_IP,	   /* not IPv4/IPv6 after Ethernet and up to two VLAN tags */
	NM_UDP_NOT_UDP,	   /* IP but not UDP (or an IPv6 extension header we do not walk) */
	NM_UDP_FRAGMENT,   /* an IP fragment: exports larger than the MTU are not reassembled */
	NM_UDP_TRUNCATED,  /* headers or UDP length run past the frame */
	NM_UDP_BAD_HEADER, /* IPv4 IHL < 5, bad version, UDP length < 8 */
	NM_UDP_CLASS_MAX,
};

const char *nm_udp_class_name(enum nm_udp_class c);

/*
 * Classify an Ethernet frame and, for UDP over IPv4/IPv6 (optionally 802.1Q/802.1ad tagged),
 * fill v. The payload length is the UDP length less its header (Ethernet padding is not payload).
 */
enum nm_udp_class nm_pkt_udp_view(const uint8_t *frame, size_t len, struct nm_udp_view *v);

/* Same, starting at the L3 header whose EtherType is etype (0x0800 or 0x86dd). */
enum nm_udp_class nm_pkt_udp_view_l3(uint16_t etype, const uint8_t *l3, size_t len,
				     struct nm_udp_view *v);

/* Link types a capture port may deliver (pcap files are not always Ethernet). */
enum nm_link {
	NM_LINK_ETHER = 0, /* DLT_EN10MB */
	NM_LINK_SLL,	   /* DLT_LINUX_SLL, Linux cooked capture */
	NM_LINK_RAW,	   /* DLT_RAW: the frame starts at the IP header */
};

/* nm_pkt_udp_view() for a frame of the given link type. */
enum nm_udp_class nm_pkt_udp_view_link(enum nm_link link, const uint8_t *frame, size_t len,
				       struct nm_udp_view *v);

/*
 * Parse a sampled/mirrored Ethernet frame into the L2..L4 fields of k: src_mac, dst_mac, vlan_id
 * (outermost 802.1Q/802.1ad tag), mpls_*, etype, src_addr, dst_addr, proto, src_port, dst_port,
 * tcp_flags, icmp_type, icmp_code, ip_tos, ip_ttl, ipv6_flow_label, fragment_id, fragment_offset.
 * Returns 0 when it reached L4 (or the frame is a non-IP Ethernet type), or a negative
 * enum nm_decode_err (NM_DECODE_ERR_TRUNCATED / NM_DECODE_ERR_BAD_PACKET) with the fields found
 * so far filled in.
 */
int nm_pkt_parse_eth(const uint8_t *frame, size_t len, struct nm_flow_key *k);

/* Same, starting at an IPv4 or IPv6 header (version from the first nibble). */
int nm_pkt_parse_ip(const uint8_t *pkt, size_t len, struct nm_flow_key *k);

#endif /* NM_PKT_H */
