/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * NetFlow v9 / IPFIX templates compiled into field programs, the record runner and the set
 * walker shared by nf9.c and ipfix.c (see ipfix_prog.h).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#ifdef __SSSE3__
#include <tmmintrin.h>
#endif

#include "ipfix_prog.h"
#include "../base/rd.h"
#include "../pkt/pkt.h"

/*
 * IE -> op. Fields that feed the same record field compete through a target and a rank: the
 * compiler keeps, per target, only the fields of the best rank present in the template.
 */
enum target {
	T_NONE = 0,
	T_BYTES,
	T_PKTS,
	T_INIF,
	T_OUTIF,
	T_NH4,
	T_NH6,
	T_SRCMAC,
	T_DSTMAC,
	T_SRCVLAN,
	T_DSTVLAN,
	T_START,
	T_END,
	T_SAMPLER,
	T_SAMPLING,
	T_FRAMESZ,
	T_RBYTES,
	T_RPKTS,
	T_MAX_,
};

struct ie_map {
	uint8_t op;
	uint8_t target;
	uint8_t rank;
};

#define M(ie, o, t, r) [ie] = {.op = (o), .target = (t), .rank = (r)}
#define IE_TABLE_LEN 512

static const struct ie_map flow_map[IE_TABLE_LEN] = {
	M(1, NM_OP_BYTES, T_BYTES, 0), M(85, NM_OP_BYTES, T_BYTES, 1), /* octetTotalCount */
	M(23, NM_OP_BYTES, T_BYTES, 2), /* postOctetDeltaCount (v9 OUT_BYTES) */
	M(2, NM_OP_PKTS, T_PKTS, 0), M(86, NM_OP_PKTS, T_PKTS, 1), M(24, NM_OP_PKTS, T_PKTS, 2),
	M(4, NM_OP_PROTO, T_NONE, 0), M(5, NM_OP_TOS, T_NONE, 0), M(6, NM_OP_TCPFLAGS, T_NONE, 0),
	/*
	 * Ports: every port IE of the template is applied and the last non-zero one wins. Cisco
	 * NBAR templates carry L4_SRC/DST_PORT next to TCP_SRC_PORT/UDP_DST_PORT and fill only one
	 * of them per flow (netflow_9_cisco_nbar_flowset_262: IE 11 = 0, IE 181 = 123 for NTP).
	 */
	M(7, NM_OP_SPORT, T_NONE, 0), M(180, NM_OP_SPORT, T_NONE, 0),  /* udpSourcePort */
	M(182, NM_OP_SPORT, T_NONE, 0),				       /* tcpSourcePort */
	M(11, NM_OP_DPORT, T_NONE, 0), M(181, NM_OP_DPORT, T_NONE, 0), /* udpDestinationPort */
	M(183, NM_OP_DPORT, T_NONE, 0),				       /* tcpDestinationPort */
	M(8, NM_OP_SRC4, T_NONE, 0), M(12, NM_OP_DST4, T_NONE, 0), M(27, NM_OP_SRC6, T_NONE, 0),
	M(28, NM_OP_DST6, T_NONE, 0), M(9, NM_OP_SRCNET, T_NONE, 0), M(29, NM_OP_SRCNET, T_NONE, 0),
	M(13, NM_OP_DSTNET, T_NONE, 0), M(30, NM_OP_DSTNET, T_NONE, 0),
	M(10, NM_OP_INIF, T_INIF, 0), M(252, NM_OP_INIF, T_INIF, 1), /* ingressPhysicalInterface */
	M(14, NM_OP_OUTIF, T_OUTIF, 0), M(253, NM_OP_OUTIF, T_OUTIF, 1),
	M(15, NM_OP_NH4, T_NH4, 0), /* ipNextHopIPv4Address */
	M(18, NM_OP_NH4, T_NH4, 1), /* bgpNextHopIPv4Address */
	M(62, NM_OP_NH6, T_NH6, 0), M(63, NM_OP_NH6, T_NH6, 1), M(16, NM_OP_SRCAS, T_NONE, 0),
	M(17, NM_OP_DSTAS, T_NONE, 0),
	/*
	 * bgpNextAdjacentAsNumber is the AS traffic goes to next: FlowMessage's NextHopAS.
	 * bgpPrevAdjacentAsNumber (129) has no FlowMessage field.
	 */
	M(128, NM_OP_NHAS, T_NONE, 0), M(56, NM_OP_SRCMAC, T_SRCMAC, 0), /* sourceMacAddress */
	M(81, NM_OP_SRCMAC, T_SRCMAC, 1),				 /* postSourceMacAddress */
	M(80, NM_OP_DSTMAC, T_DSTMAC, 0),				 /* destinationMacAddress */
	M(57, NM_OP_DSTMAC, T_DSTMAC, 1),    /* postDestinationMacAddress */
	M(58, NM_OP_SRCVLAN, T_SRCVLAN, 0),  /* vlanId */
	M(59, NM_OP_DSTVLAN, T_DSTVLAN, 0),  /* postVlanId */
	M(254, NM_OP_DSTVLAN, T_DSTVLAN, 1), /* postDot1qVlanId */
	M(243, NM_OP_VLAN, T_NONE, 0),	     /* dot1qVlanId */
	M(234, NM_OP_INVRF, T_NONE, 0), M(235, NM_OP_OUTVRF, T_NONE, 0),
	M(31, NM_OP_FLOWLABEL, T_NONE, 0), M(54, NM_OP_FRAGID, T_NONE, 0),
	M(88, NM_OP_FRAGOFF, T_NONE, 0), M(192, NM_OP_TTL, T_NONE, 0),
	M(32, NM_OP_ICMP_TC, T_NONE, 0), M(139, NM_OP_ICMP_TC, T_NONE, 0),
	M(176, NM_OP_ICMP_TYPE, T_NONE, 0), M(178, NM_OP_ICMP_TYPE, T_NONE, 0),
	M(177, NM_OP_ICMP_CODE, T_NONE, 0), M(179, NM_OP_ICMP_CODE, T_NONE, 0),
	/* Absolute times beat uptime-relative ones, milliseconds beat seconds. */
	M(152, NM_OP_START_MS, T_START, 0), M(150, NM_OP_START_S, T_START, 1),
	M(154, NM_OP_START_NTP, T_START, 1), M(156, NM_OP_START_NTP, T_START, 1),
	M(22, NM_OP_START_UP, T_START, 2), M(158, NM_OP_START_DUS, T_START, 3),
	M(153, NM_OP_END_MS, T_END, 0), M(151, NM_OP_END_S, T_END, 1),
	M(155, NM_OP_END_NTP, T_END, 1), M(157, NM_OP_END_NTP, T_END, 1),
	M(21, NM_OP_END_UP, T_END, 2), M(159, NM_OP_END_DUS, T_END, 3),
	M(160, NM_OP_SYSINIT_MS, T_NONE, 0), M(61, NM_OP_DIRECTION, T_NONE, 0),
	M(239, NM_OP_BIDIR, T_NONE, 0), M(89, NM_OP_FWD_STATUS, T_NONE, 0),
	M(70, NM_OP_MPLS, T_NONE, 0), M(71, NM_OP_MPLS, T_NONE, 0), M(72, NM_OP_MPLS, T_NONE, 0),
	M(73, NM_OP_MPLS, T_NONE, 0), M(74, NM_OP_MPLS, T_NONE, 0), M(75, NM_OP_MPLS, T_NONE, 0),
	M(76, NM_OP_MPLS, T_NONE, 0), M(77, NM_OP_MPLS, T_NONE, 0), M(78, NM_OP_MPLS, T_NONE, 0),
	M(79, NM_OP_MPLS, T_NONE, 0), M(60, NM_OP_IPVER, T_NONE, 0),
	M(48, NM_OP_SAMPLER_ID, T_SAMPLER, 0),	/* samplerId (v9 FLOW_SAMPLER_ID) */
	M(302, NM_OP_SAMPLER_ID, T_SAMPLER, 1), /* selectorId */
	M(34, NM_OP_SAMPLING, T_SAMPLING, 0),	/* samplingInterval */
	M(50, NM_OP_SAMPLING, T_SAMPLING, 1),	/* samplerRandomInterval */
	M(305, NM_OP_PKT_INTERVAL, T_NONE, 0), M(306, NM_OP_PKT_SPACE, T_NONE, 0),
	M(315, NM_OP_FRAME, T_NONE, 0),		/* dataLinkFrameSection */
	M(312, NM_OP_FRAME_SIZE, T_FRAMESZ, 0), /* dataLinkFrameSize */
	M(410, NM_OP_FRAME_SIZE, T_FRAMESZ, 1), /* sectionExportedOctets */
};

/* Options data: only what sampling needs. */
static const struct ie_map opt_map[IE_TABLE_LEN] = {
	M(48, NM_OP_SAMPLER_ID, T_SAMPLER, 0), M(302, NM_OP_SAMPLER_ID, T_SAMPLER, 1),
	M(34, NM_OP_SAMPLING, T_SAMPLING, 0),  M(50, NM_OP_SAMPLING, T_SAMPLING, 1),
	M(305, NM_OP_PKT_INTERVAL, T_NONE, 0), M(306, NM_OP_PKT_SPACE, T_NONE, 0),
};

/* RFC 5103 reverse information elements: PEN 29305, same numbers as the forward ones. */
#define PEN_REVERSE 29305
static const struct ie_map rev_map[IE_TABLE_LEN] = {
	M(1, NM_OP_REV_BYTES, T_RBYTES, 0),
	M(85, NM_OP_REV_BYTES, T_RBYTES, 1),
	M(2, NM_OP_REV_PKTS, T_RPKTS, 0),
	M(86, NM_OP_REV_PKTS, T_RPKTS, 1),
};

#undef M

static const struct ie_map *
field_map(const struct ie_map *tab, const struct nm_tmpl_field *f)
{
	if (f->ie >= IE_TABLE_LEN)
		return NULL;
	/* Reverse counters of biflows feed a second record; other enterprise fields nothing. */
	if (f->pen == PEN_REVERSE && tab == flow_map)
		tab = rev_map;
	else if (f->pen != 0)
		return NULL;
	return tab[f->ie].op == NM_OP_SKIP ? NULL : &tab[f->ie];
}

/* Does a fixed-length field of len bytes make sense for op? (Var-length ones are checked later.) */
static int
len_ok(unsigned int op, unsigned int len)
{
	switch (op) {
	case NM_OP_SRC4:
	case NM_OP_DST4:
	case NM_OP_NH4:
		return len == 4;
	case NM_OP_SRC6:
	case NM_OP_DST6:
	case NM_OP_NH6:
		return len == 16;
	case NM_OP_SRCMAC:
	case NM_OP_DSTMAC:
		return len == 6;
	case NM_OP_FRAME:
		return len > 0;
	default:
		return len >= 1 && len <= 8; /* reduced-size integers */
	}
}

/* Per-record values that need the whole record before they land in the key. */
struct scratch {
	uint64_t start_up, end_up, sysinit_ms;
	uint64_t start_dus, end_dus;
	uint64_t sampling, pkt_interval, pkt_space, frame_size;
	uint64_t rev_bytes, rev_pkts;
	const uint8_t *frame;
	uint32_t frame_len;
	uint32_t sampler_id;
	uint8_t has_start_up, has_end_up, has_start_dus, has_end_dus, has_sampler;
	uint8_t written; /* W_* bits */
	uint8_t ipver;
	uint8_t mpls_seen;
};

enum { W_SRC = 1, W_DST = 2, W_NH = 4, W_ICMP = 8, W_SRCNET = 16, W_DSTNET = 32 };

/*
 * Specialisation of a fixed-layout flow template (see ipfix_prog.h). A generic step may become a
 * move when the record would get the same bytes either way. That holds when:
 * - its destination has no other writer in the template: then the generic step's conditions
 *   ("write the port when non-zero", "an address unless zero and one was written already", "the
 *   first network prefix always") reduce to a plain copy into the zeroed record, and moves can
 *   run before the generic steps and in any order among themselves (the generic steps left read
 *   only state that only they write: the W_* bits, the MPLS depth);
 * - its value is the field's big-endian integer truncated to the destination (or an address, or
 *   milliseconds / 1000); the masked ones (VLAN, flow label) and NTP times stay generic;
 * - for the address steps that set EtherType (source and destination): all of them are moves and
 *   of one family, so the EtherType is a per-template constant.
 */
enum { DST_NONE = 0xffff, DST_SCRATCH = 0x8000 };

#define RDST(m) ((uint16_t)offsetof(struct nm_flow_rec, m))
#define SDST(m) ((uint16_t)(DST_SCRATCH | offsetof(struct scratch, m)))

struct fast_map {
	uint8_t fop;  /* NM_FOP_*, 0: stays generic */
	uint16_t dst; /* destination (RDST/SDST) for the writer count, DST_NONE: none of its own */
	uint32_t tf;  /* template flag the move stands for (scratch "has" bits, EtherType) */
};

static struct fast_map
fast_of(unsigned int op)
{
#define F(o, f, d, t)                                                                              \
	case o:                                                                                    \
		return (struct fast_map)                                                           \
		{                                                                                  \
			.fop = (f), .dst = (d), .tf = (t)                                          \
		}
	switch (op) {
		F(NM_OP_BYTES, NM_FOP_R64, RDST(bytes), 0);
		F(NM_OP_PKTS, NM_FOP_R64, RDST(packets), 0);
		F(NM_OP_PROTO, NM_FOP_R8, RDST(key.proto), 0);
		F(NM_OP_TOS, NM_FOP_R8, RDST(key.ip_tos), 0);
		F(NM_OP_TCPFLAGS, NM_FOP_R8, RDST(key.tcp_flags), 0);
		F(NM_OP_SPORT, NM_FOP_R16, RDST(key.src_port), 0);
		F(NM_OP_DPORT, NM_FOP_R16, RDST(key.dst_port), 0);
		F(NM_OP_SRC4, NM_FOP_A4, RDST(key.src_addr), NM_TF_ETYPE4);
		F(NM_OP_DST4, NM_FOP_A4, RDST(key.dst_addr), NM_TF_ETYPE4);
		F(NM_OP_SRC6, NM_FOP_A6, RDST(key.src_addr), NM_TF_ETYPE6);
		F(NM_OP_DST6, NM_FOP_A6, RDST(key.dst_addr), NM_TF_ETYPE6);
		F(NM_OP_NH4, NM_FOP_A4, RDST(key.next_hop), 0);
		F(NM_OP_NH6, NM_FOP_A6, RDST(key.next_hop), 0);
		F(NM_OP_SRCNET, NM_FOP_R8, RDST(key.src_net), 0);
		F(NM_OP_DSTNET, NM_FOP_R8, RDST(key.dst_net), 0);
		F(NM_OP_INIF, NM_FOP_R32, RDST(key.in_if), 0);
		F(NM_OP_OUTIF, NM_FOP_R32, RDST(key.out_if), 0);
		F(NM_OP_SRCAS, NM_FOP_R32, RDST(key.src_as), 0);
		F(NM_OP_DSTAS, NM_FOP_R32, RDST(key.dst_as), 0);
		F(NM_OP_NHAS, NM_FOP_R32, RDST(key.next_hop_as), 0);
		F(NM_OP_SRCMAC, NM_FOP_R64, RDST(key.src_mac), 0);
		F(NM_OP_DSTMAC, NM_FOP_R64, RDST(key.dst_mac), 0);
		F(NM_OP_INVRF, NM_FOP_R32, RDST(key.ingress_vrf_id), 0);
		F(NM_OP_OUTVRF, NM_FOP_R32, RDST(key.egress_vrf_id), 0);
		F(NM_OP_FRAGID, NM_FOP_R32, RDST(key.fragment_id), 0);
		F(NM_OP_FRAGOFF, NM_FOP_R32, RDST(key.fragment_offset), 0);
		F(NM_OP_TTL, NM_FOP_R8, RDST(key.ip_ttl), 0);
		F(NM_OP_ICMP_TYPE, NM_FOP_R8, RDST(key.icmp_type), 0);
		F(NM_OP_ICMP_CODE, NM_FOP_R8, RDST(key.icmp_code), 0);
		F(NM_OP_START_S, NM_FOP_R64, RDST(key.time_flow_start), 0);
		F(NM_OP_END_S, NM_FOP_R64, RDST(key.time_flow_end), 0);
		F(NM_OP_START_MS, NM_FOP_MS64, RDST(key.time_flow_start), 0);
		F(NM_OP_END_MS, NM_FOP_MS64, RDST(key.time_flow_end), 0);
		F(NM_OP_DIRECTION, NM_FOP_R8, RDST(key.flow_direction), 0);
		F(NM_OP_BIDIR, NM_FOP_R8, RDST(key.bi_flow_direction), 0);
		F(NM_OP_FWD_STATUS, NM_FOP_R8, RDST(key.forwarding_status), 0);
		F(NM_OP_START_UP, NM_FOP_S64, SDST(start_up), NM_TF_HAS_START_UP);
		F(NM_OP_END_UP, NM_FOP_S64, SDST(end_up), NM_TF_HAS_END_UP);
		F(NM_OP_START_DUS, NM_FOP_S64, SDST(start_dus), NM_TF_HAS_START_DUS);
		F(NM_OP_END_DUS, NM_FOP_S64, SDST(end_dus), NM_TF_HAS_END_DUS);
		F(NM_OP_SYSINIT_MS, NM_FOP_S64, SDST(sysinit_ms), 0);
		F(NM_OP_IPVER, NM_FOP_S8, SDST(ipver), 0);
		F(NM_OP_SAMPLER_ID, NM_FOP_S32, SDST(sampler_id), NM_TF_HAS_SAMPLER);
		F(NM_OP_SAMPLING, NM_FOP_S64, SDST(sampling), 0);
		F(NM_OP_PKT_INTERVAL, NM_FOP_S64, SDST(pkt_interval), 0);
		F(NM_OP_PKT_SPACE, NM_FOP_S64, SDST(pkt_space), 0);
		F(NM_OP_FRAME_SIZE, NM_FOP_S64, SDST(frame_size), 0);
		F(NM_OP_REV_BYTES, NM_FOP_S64, SDST(rev_bytes), 0);
		F(NM_OP_REV_PKTS, NM_FOP_S64, SDST(rev_pkts), 0);
		/* Generic, with destinations other steps may share. */
		F(NM_OP_ICMP_TC, 0, RDST(key.icmp_type), 0); /* and icmp_code: see specialise() */
		F(NM_OP_SRCVLAN, 0, RDST(key.src_vlan), 0);
		F(NM_OP_DSTVLAN, 0, RDST(key.dst_vlan), 0);
		F(NM_OP_VLAN, 0, RDST(key.vlan_id), 0);
		F(NM_OP_FLOWLABEL, 0, RDST(key.ipv6_flow_label), 0);
		F(NM_OP_START_NTP, 0, RDST(key.time_flow_start), 0);
		F(NM_OP_END_NTP, 0, RDST(key.time_flow_end), 0);
	default: /* SKIP, MPLS, FRAME: nothing another step writes */
		return (struct fast_map){.fop = 0, .dst = DST_NONE, .tf = 0};
	}
#undef F
}

/* Writers per destination: record bytes, then scratch bytes. */
#define DST_SLOTS (sizeof(struct nm_flow_rec) + sizeof(struct scratch))

static inline unsigned int
dst_slot(uint16_t dst)
{
	return dst & DST_SCRATCH ? sizeof(struct nm_flow_rec) + (dst & ~DST_SCRATCH) : dst;
}

/*
 * Byte shuffles (NM_FOP_SHUF, see ipfix_prog.h). The A4/A6/R64/R32/R16/R8 moves of a fixed
 * layout are each a byte permutation of the data record into the flow record (big-endian to
 * little-endian, truncated or zero-extended: destination byte j of an integer is the field's
 * byte len - 1 - j), so they can run as a few 16-byte gathers (pshufb) ORed into a slot that
 * starts from the set's base record (zero there). softflowd's IPv4 layout: 12 moves become 5
 * shuffles. Greedy: a 16-byte destination window at the first destination byte not covered
 * yet, then per window as many source windows as its bytes need.
 */
#define SHUF_MAX_OPS 16
#define SHUF_ROOM (3 * SHUF_MAX_OPS) /* steps reserved for them when there is room */
#define REC_BYTES ((unsigned int)sizeof(struct nm_flow_rec))

static int
shufflable(unsigned int fop)
{
	return fop == NM_FOP_A4 || fop == NM_FOP_A6 || fop == NM_FOP_R64 || fop == NM_FOP_R32 ||
	       fop == NM_FOP_R16 || fop == NM_FOP_R8;
}

/*
 * Write the shuffle steps for the shufflable moves of fast[0..n) of a record of min_len bytes
 * into out (room steps). Returns the steps written, or 0 when the shuffles would not be fewer
 * than the moves, do not fit, or the CPU has no pshufb (the moves stay).
 */
static unsigned int
build_shuffles(const struct nm_tmpl_step *fast, unsigned int n, unsigned int min_len,
	       struct nm_tmpl_step *out, unsigned int room)
{
#ifdef __SSSE3__
	int16_t src_of[REC_BYTES];
	uint8_t done[REC_BYTES];
	unsigned int i, j, moves = 0, ops = 0, d;

	if (min_len < 16)
		return 0;
	for (i = 0; i < REC_BYTES; i++)
		src_of[i] = -1;
	for (i = 0; i < n; i++) {
		const struct nm_tmpl_step *st = &fast[i];
		unsigned int w, flen, fend;

		if (!shufflable(st->op))
			continue;
		moves++;
		switch (st->op) {
		case NM_FOP_A4:
			for (j = 0; j < 4; j++)
				src_of[st->ie + 12 + j] = (int16_t)(st->off + j);
			continue;
		case NM_FOP_A6:
			for (j = 0; j < 16; j++)
				src_of[st->ie + j] = (int16_t)(st->off + j);
			continue;
		case NM_FOP_R64:
			w = 8;
			break;
		case NM_FOP_R32:
			w = 4;
			break;
		case NM_FOP_R16:
			w = 2;
			break;
		default:
			w = 1;
			break;
		}
		/* The window form: off = field end - 8, len = bits before the field. */
		flen = 8 - st->len / 8;
		fend = (unsigned int)st->off + 8;
		for (j = 0; j < w && j < flen; j++)
			src_of[st->ie + j] = (int16_t)(fend - 1 - j);
	}
	memset(done, 0, sizeof(done));
	for (d = 0; d < REC_BYTES;) {
		unsigned int dw;

		if (src_of[d] < 0 || done[d]) {
			d++;
			continue;
		}
		dw = d < REC_BYTES - 16 ? d : REC_BYTES - 16;
		for (;;) {
			unsigned int sw = min_len, k;
			uint8_t mask[16];

			for (k = dw; k < dw + 16; k++)
				if (src_of[k] >= 0 && !done[k] && (unsigned int)src_of[k] < sw)
					sw = (unsigned int)src_of[k];
			if (sw == min_len)
				break; /* every byte of this window is placed */
			if (sw > min_len - 16)
				sw = min_len - 16;
			if (ops == SHUF_MAX_OPS || 3 * (ops + 1) > room)
				return 0;
			memset(mask, 0x80, sizeof(mask));
			for (k = dw; k < dw + 16; k++) {
				if (src_of[k] < 0 || done[k] || (unsigned int)src_of[k] < sw ||
				    (unsigned int)src_of[k] >= sw + 16)
					continue;
				mask[k - dw] = (uint8_t)(src_of[k] - sw);
				done[k] = 1;
			}
			out[3 * ops] = (struct nm_tmpl_step){
				.off = (uint16_t)sw, .op = NM_FOP_SHUF, .ie = (uint16_t)dw};
			memcpy(&out[3 * ops + 1], mask, sizeof(mask));
			ops++;
		}
		d = dw + 16;
	}
	return ops < moves ? 3 * ops : 0;
#else
	(void)fast, (void)n, (void)min_len, (void)out, (void)room;
	return 0;
#endif
}

static void
specialise(struct nm_tmpl *t, unsigned int cap)
{
	struct nm_tmpl_step fast[NM_TMPL_MAX_FIELDS], slow[NM_TMPL_MAX_FIELDS];
	uint8_t writers[DST_SLOTS];
	unsigned int i, j, k, end, n_fast = 0, n_slow = 0, etype_slow = 0;
	uint32_t etype = 0, tf = 0;
	struct fast_map fm;
	static const uint8_t order[] = {NM_FOP_A4,  NM_FOP_A6, NM_FOP_R64, NM_FOP_MS64, NM_FOP_R32,
					NM_FOP_R16, NM_FOP_R8, NM_FOP_S64, NM_FOP_S32,	NM_FOP_S8};

	memset(writers, 0, sizeof(writers));
	for (i = 0; i < t->n_steps; i++) {
		fm = fast_of(t->steps[i].op);
		if (fm.dst == DST_NONE)
			continue;
		if (writers[dst_slot(fm.dst)] < 255)
			writers[dst_slot(fm.dst)]++;
		if (t->steps[i].op == NM_OP_ICMP_TC && writers[RDST(key.icmp_code)] < 255)
			writers[RDST(key.icmp_code)]++;
	}
	/* EtherType: every source/destination address step a move, one family. */
	for (i = 0; i < t->n_steps; i++) {
		fm = fast_of(t->steps[i].op);
		if (!(fm.tf & (NM_TF_ETYPE4 | NM_TF_ETYPE6)))
			continue;
		if (writers[dst_slot(fm.dst)] != 1 || (etype != 0 && etype != fm.tf))
			etype_slow = 1;
		etype = fm.tf;
	}
	for (i = 0; i < t->n_steps; i++) {
		struct nm_tmpl_step st = t->steps[i];

		fm = fast_of(st.op);
		end = (unsigned int)st.off + st.len;
		if (fm.fop == 0 || writers[dst_slot(fm.dst)] != 1 ||
		    ((fm.tf & (NM_TF_ETYPE4 | NM_TF_ETYPE6)) && etype_slow)) {
			slow[n_slow++] = st;
			continue;
		}
		if (fm.fop != NM_FOP_A4 && fm.fop != NM_FOP_A6) {
			/*
			 * The 8-byte window ends at the field's end and must not start before the
			 * record: a field ending in the record's first 8 bytes stays generic.
			 */
			if (end < 8) {
				slow[n_slow++] = st;
				continue;
			}
			st.len = (uint16_t)((8 - st.len) * 8);
			st.off = (uint16_t)(end - 8);
		}
		st.op = fm.fop;
		st.ie = fm.dst & ~DST_SCRATCH;
		tf |= fm.tf;
		fast[n_fast++] = st;
	}
	/* The move loops stop at the first step that is not theirs: a generic one, or a no-op. */
	if (n_fast == 0 || (n_slow == 0 && n_fast == cap))
		return;
	/*
	 * Shuffles first when they pay, then an A4C marker per IPv4 address move; the room left
	 * must hold the other moves, the generic steps and the end step.
	 */
	k = 0;
	{
		unsigned int others = 0, n_a4 = 0;

		for (i = 0; i < n_fast; i++) {
			if (!shufflable(fast[i].op))
				others++;
			else if (fast[i].op == NM_FOP_A4)
				n_a4++;
		}
		if (cap > n_a4 + others + n_slow + 1)
			k = build_shuffles(fast, n_fast, t->min_len, t->steps,
					   cap - (n_a4 + others + n_slow + 1));
		if (k != 0) {
			for (i = 0; i < n_fast; i++)
				if (fast[i].op == NM_FOP_A4)
					t->steps[k++] = (struct nm_tmpl_step){.op = NM_FOP_A4C,
									      .ie = fast[i].ie};
			for (i = 0, j = 0; i < n_fast; i++)
				if (!shufflable(fast[i].op))
					fast[j++] = fast[i];
			n_fast = j;
			tf |= NM_TF_SHUF;
		}
	}
	/* Moves grouped by type (stable: fields keep their order in a group), then the rest. */
	for (j = 0; j < sizeof(order); j++)
		for (i = 0; i < n_fast; i++)
			if (fast[i].op == order[j])
				t->steps[k++] = fast[i];
	memcpy(&t->steps[k], slow, n_slow * sizeof(slow[0]));
	if (n_slow == 0) {
		t->steps[k] = (struct nm_tmpl_step){.op = NM_OP_SKIP};
		t->n_steps = (uint16_t)(k + 1);
	} else {
		/* Shuffles change the count of steps. */
		t->n_steps = (uint16_t)(k + n_slow);
	}
	t->flags |= NM_TF_FAST | tf;
}

struct nm_tmpl *
nm_ipfix_compile(const struct nm_tmpl_key *key, const struct nm_tmpl_field *f, unsigned int n,
		 unsigned int n_scope, int is_options, void *buf, size_t size,
		 enum nm_decode_err *err)
{
	return nm_ipfix_compile_opts(key, f, n, n_scope, is_options, 0, buf, size, err);
}

struct nm_tmpl *
nm_ipfix_compile_opts(const struct nm_tmpl_key *key, const struct nm_tmpl_field *f, unsigned int n,
		      unsigned int n_scope, int is_options, unsigned int opts, void *buf,
		      size_t size, enum nm_decode_err *err)
{
	const struct ie_map *tab = is_options ? opt_map : flow_map;
	uint8_t best[T_MAX_];
	const struct ie_map *m;
	unsigned int i, cap, n_steps = 0, has_var = 0;
	uint32_t fixed = 0, min_len = 0, flags = 0;
	struct nm_tmpl *t;
	struct nm_tmpl_step *s;

	*err = NM_DECODE_ERR_BAD_TEMPLATE;
	if (n == 0 || n > NM_TMPL_MAX_FIELDS || n_scope > n)
		return NULL;
	memset(best, 0xff, sizeof(best));
	for (i = 0; i < n; i++) {
		if (f[i].len == NM_TMPL_VARLEN) {
			has_var = 1;
			min_len += 1;
		} else {
			fixed += f[i].len;
			min_len += f[i].len;
		}
		/* v9 scope fields carry scope types (System, Interface, ...), not IEs. */
		if (is_options && key->proto == NM_TMPL_NF9 && i < n_scope)
			continue;
		m = field_map(tab, &f[i]);
		if (m != NULL && m->target != T_NONE && m->rank < best[m->target])
			best[m->target] = m->rank;
	}
	/*
	 * A record must take at least one byte or a data set would never end; it must also fit a
	 * set (16-bit length) so every offset fits the steps.
	 */
	if (min_len == 0 || min_len > 65535 - 4)
		return NULL;
	/* Upper bound on steps: one per field. */
	/* One step per field, and one for the end of the moves when they are all moves. */
	cap = n < NM_TMPL_MAX_FIELDS ? n + 1 : n;
	/* Room for byte shuffles (a fixed-layout flow template's moves), when buf has it. */
	if (!has_var && !is_options && !(opts & NM_IPFIX_GENERIC) &&
	    nm_tmpl_size(cap + SHUF_ROOM, n) <= size)
		cap += SHUF_ROOM;
	t = nm_tmpl_init(buf, size, cap, n);
	if (t == NULL) {
		*err = NM_DECODE_ERR_UNSUPPORTED;
		return NULL;
	}
	t->key = *key;
	t->n_fields = (uint16_t)n;
	t->n_scope = (uint16_t)n_scope;
	t->is_options = (uint8_t) !!is_options;
	t->has_var = (uint8_t)has_var;
	t->min_len = (uint16_t)min_len;
	memcpy(t->fields, f, n * sizeof(*f));

	for (i = 0, fixed = 0; i < n; i++) {
		unsigned int op = NM_OP_SKIP;

		if (!(is_options && key->proto == NM_TMPL_NF9 && i < n_scope)) {
			m = field_map(tab, &f[i]);
			if (m != NULL && (m->target == T_NONE || m->rank == best[m->target]) &&
			    (f[i].len == NM_TMPL_VARLEN || len_ok(m->op, f[i].len)))
				op = m->op;
		}
		if (op == NM_OP_BYTES)
			flags |= NM_TF_BYTES;
		else if (op == NM_OP_PKTS)
			flags |= NM_TF_PKTS;
		else if (op == NM_OP_SAMPLING || op == NM_OP_PKT_INTERVAL)
			flags |= NM_TF_SAMPLING;
		else if (op == NM_OP_FRAME)
			t->has_frame = 1;
		else if (op == NM_OP_REV_BYTES || op == NM_OP_REV_PKTS)
			flags |= NM_TF_REVERSE;
		if (!has_var) {
			/* Fixed layout: absolute offsets, skipped fields cost nothing. */
			if (op != NM_OP_SKIP) {
				s = &t->steps[n_steps++];
				s->off = (uint16_t)fixed;
				s->len = f[i].len;
				s->op = (uint8_t)op;
				s->ie = f[i].ie;
			}
			fixed += f[i].len;
			continue;
		}
		/* Cursor walk: consecutive fixed skips merge into one step. */
		if (op == NM_OP_SKIP && f[i].len != NM_TMPL_VARLEN && n_steps > 0) {
			s = &t->steps[n_steps - 1];
			if (s->op == NM_OP_SKIP && s->len != NM_TMPL_VARLEN &&
			    (uint32_t)s->len + f[i].len < NM_TMPL_VARLEN) {
				s->len = (uint16_t)(s->len + f[i].len);
				continue;
			}
		}
		if (op == NM_OP_SKIP && f[i].len == 0)
			continue;
		s = &t->steps[n_steps++];
		s->len = f[i].len;
		s->op = (uint8_t)op;
		s->ie = f[i].ie;
	}
	t->n_steps = (uint16_t)n_steps;
	t->flags = flags;
	if (!has_var && !is_options && !(opts & NM_IPFIX_GENERIC))
		specialise(t, cap);
	*err = NM_DECODE_OK;
	return t;
}

/* NTP (RFC 5905) 64-bit timestamp -> Unix seconds. */
#define NTP_UNIX_OFFSET 2208988800ULL

static inline uint64_t
ntp_secs(uint64_t v)
{
	uint64_t s = v >> 32;

	return s >= NTP_UNIX_OFFSET ? s - NTP_UNIX_OFFSET : 0;
}

/*
 * An address field: written when it is not zero, or when no field of the same role wrote one yet
 * (templates that carry both an IPv4 and an IPv6 address leave the other family zero).
 */
static inline void
put_addr(struct nm_flow_key *k, struct scratch *sc, unsigned int w, uint8_t *dst, const uint8_t *p,
	 unsigned int len, uint16_t etype)
{
	static const uint8_t zero[16];

	if (memcmp(p, zero, len) == 0 && (sc->written & w))
		return;
	sc->written |= (uint8_t)w;
	if (len == 4)
		nm_addr_from_v4(dst, p);
	else
		memcpy(dst, p, 16);
	if (etype != 0 && (w == W_SRC || w == W_DST))
		k->etype = etype;
}

/* Apply one step to the record. len is the field's length on the wire (checked by the caller). */
static inline void
apply(struct nm_flow_rec *r, struct scratch *sc, unsigned int op, unsigned int ie, const uint8_t *p,
      unsigned int len)
{
	struct nm_flow_key *k = &r->key;
	uint64_t v = 0;

	switch (op) {
	case NM_OP_SRC4:
		if (len == 4)
			put_addr(k, sc, W_SRC, k->src_addr, p, 4, 0x0800);
		return;
	case NM_OP_DST4:
		if (len == 4)
			put_addr(k, sc, W_DST, k->dst_addr, p, 4, 0x0800);
		return;
	case NM_OP_SRC6:
		if (len == 16)
			put_addr(k, sc, W_SRC, k->src_addr, p, 16, 0x86dd);
		return;
	case NM_OP_DST6:
		if (len == 16)
			put_addr(k, sc, W_DST, k->dst_addr, p, 16, 0x86dd);
		return;
	case NM_OP_NH4:
		if (len == 4)
			put_addr(k, sc, W_NH, k->next_hop, p, 4, 0);
		return;
	case NM_OP_NH6:
		if (len == 16)
			put_addr(k, sc, W_NH, k->next_hop, p, 16, 0);
		return;
	case NM_OP_SRCMAC:
		if (len == 6)
			k->src_mac = nm_rdn(p, 6);
		return;
	case NM_OP_DSTMAC:
		if (len == 6)
			k->dst_mac = nm_rdn(p, 6);
		return;
	case NM_OP_FRAME:
		sc->frame = p;
		sc->frame_len = len;
		return;
	case NM_OP_SKIP:
		return;
	default:
		break;
	}
	if (len == 0 || len > 8)
		return;
	v = len == 4 ? nm_rd32(p) : len == 2 ? nm_rd16(p) : len == 8 ? nm_rd64(p) : nm_rdn(p, len);
	switch (op) {
	case NM_OP_BYTES:
		r->bytes = v;
		break;
	case NM_OP_PKTS:
		r->packets = v;
		break;
	case NM_OP_PROTO:
		k->proto = (uint8_t)v;
		break;
	case NM_OP_TOS:
		k->ip_tos = (uint8_t)v;
		break;
	case NM_OP_TCPFLAGS:
		k->tcp_flags = (uint8_t)v;
		break;
	case NM_OP_SPORT:
		if (v != 0)
			k->src_port = (uint16_t)v;
		break;
	case NM_OP_DPORT:
		if (v != 0)
			k->dst_port = (uint16_t)v;
		break;
	case NM_OP_SRCNET:
		if (v != 0 || !(sc->written & W_SRCNET))
			k->src_net = (uint8_t)v;
		sc->written |= W_SRCNET;
		break;
	case NM_OP_DSTNET:
		if (v != 0 || !(sc->written & W_DSTNET))
			k->dst_net = (uint8_t)v;
		sc->written |= W_DSTNET;
		break;
	case NM_OP_INIF:
		k->in_if = (uint32_t)v;
		break;
	case NM_OP_OUTIF:
		k->out_if = (uint32_t)v;
		break;
	case NM_OP_SRCAS:
		k->src_as = (uint32_t)v;
		break;
	case NM_OP_DSTAS:
		k->dst_as = (uint32_t)v;
		break;
	case NM_OP_NHAS:
		k->next_hop_as = (uint32_t)v;
		break;
	case NM_OP_SRCVLAN:
		k->src_vlan = (uint32_t)v & 0xfff;
		break;
	case NM_OP_DSTVLAN:
		k->dst_vlan = (uint32_t)v & 0xfff;
		break;
	case NM_OP_VLAN:
		k->vlan_id = (uint32_t)v & 0xfff;
		break;
	case NM_OP_INVRF:
		k->ingress_vrf_id = (uint32_t)v;
		break;
	case NM_OP_OUTVRF:
		k->egress_vrf_id = (uint32_t)v;
		break;
	case NM_OP_FLOWLABEL:
		k->ipv6_flow_label = (uint32_t)v & 0xfffff;
		break;
	case NM_OP_FRAGID:
		k->fragment_id = (uint32_t)v;
		break;
	case NM_OP_FRAGOFF:
		k->fragment_offset = (uint32_t)v;
		break;
	case NM_OP_TTL:
		k->ip_ttl = (uint8_t)v;
		break;
	case NM_OP_ICMP_TC:
		/* type * 256 + code; the v4 and v6 fields often come together, one of them zero. */
		if (v != 0 || !(sc->written & W_ICMP)) {
			k->icmp_type = (uint8_t)(v >> 8);
			k->icmp_code = (uint8_t)v;
		}
		sc->written |= W_ICMP;
		break;
	case NM_OP_ICMP_TYPE:
		if (v != 0)
			k->icmp_type = (uint8_t)v;
		break;
	case NM_OP_ICMP_CODE:
		if (v != 0)
			k->icmp_code = (uint8_t)v;
		break;
	case NM_OP_START_UP:
		sc->start_up = v;
		sc->has_start_up = 1;
		break;
	case NM_OP_END_UP:
		sc->end_up = v;
		sc->has_end_up = 1;
		break;
	case NM_OP_START_S:
		k->time_flow_start = v;
		break;
	case NM_OP_END_S:
		k->time_flow_end = v;
		break;
	case NM_OP_START_MS:
		k->time_flow_start = v / 1000;
		break;
	case NM_OP_END_MS:
		k->time_flow_end = v / 1000;
		break;
	case NM_OP_START_NTP:
		k->time_flow_start = ntp_secs(v);
		break;
	case NM_OP_END_NTP:
		k->time_flow_end = ntp_secs(v);
		break;
	case NM_OP_START_DUS:
		sc->start_dus = v;
		sc->has_start_dus = 1;
		break;
	case NM_OP_END_DUS:
		sc->end_dus = v;
		sc->has_end_dus = 1;
		break;
	case NM_OP_SYSINIT_MS:
		sc->sysinit_ms = v;
		break;
	case NM_OP_DIRECTION:
		k->flow_direction = (uint8_t)v;
		break;
	case NM_OP_BIDIR:
		k->bi_flow_direction = (uint8_t)v;
		break;
	case NM_OP_FWD_STATUS:
		k->forwarding_status = (uint8_t)v;
		break;
	case NM_OP_MPLS: {
		/* 3 octets: 20-bit label, 3 exp bits, bottom-of-stack bit. */
		unsigned int idx = ie - 70;
		uint32_t label = (uint32_t)(v >> 4) & 0xfffff;

		if ((v & 0xffffff) == 0)
			break;
		if (idx < 3)
			k->mpls_label[idx] = label;
		if (idx + 1 > k->mpls_count)
			k->mpls_count = (uint8_t)(idx + 1);
		if (idx + 1 >= sc->mpls_seen) {
			k->mpls_last_label = label;
			sc->mpls_seen = (uint8_t)(idx + 1);
		}
		break;
	}
	case NM_OP_IPVER:
		sc->ipver = (uint8_t)v;
		break;
	case NM_OP_SAMPLER_ID:
		sc->sampler_id = (uint32_t)v;
		sc->has_sampler = 1;
		break;
	case NM_OP_SAMPLING:
		sc->sampling = v;
		break;
	case NM_OP_PKT_INTERVAL:
		sc->pkt_interval = v;
		break;
	case NM_OP_PKT_SPACE:
		sc->pkt_space = v;
		break;
	case NM_OP_FRAME_SIZE:
		sc->frame_size = v;
		break;
	case NM_OP_REV_BYTES:
		sc->rev_bytes = v;
		break;
	case NM_OP_REV_PKTS:
		sc->rev_pkts = v;
		break;
	default:
		break;
	}
}

/*
 * A move's value: the 8-byte big-endian window that ends where the field ends (at s->off, inside
 * the record), the bytes before the field shifted out.
 */
static inline uint64_t
window(const uint8_t *p, const struct nm_tmpl_step *s)
{
	uint64_t v;

	memcpy(&v, p + s->off, sizeof(v));
	return (be64toh(v) << s->len) >> s->len;
}

/*
 * The specialised moves of a fixed-layout record at p (NM_TF_FAST): a loop per type, no switch,
 * no length test. Returns the index of the first generic step (n_steps when there is none).
 */
static inline unsigned int
run_moves(struct nm_flow_rec *r, struct scratch *sc, const struct nm_tmpl *t, const uint8_t *p)
{
	const struct nm_tmpl_step *s = t->steps;
	uint8_t *rb = (uint8_t *)r, *sb = (uint8_t *)sc;
	uint32_t f = t->flags;
	uint64_t v;
	uint32_t v32;
	uint16_t v16;

#ifdef __SSSE3__
	/* Byte shuffles (NM_TF_SHUF): OR a 16-byte gather of the data record into the slot. */
	for (; s->op == NM_FOP_SHUF; s += 3) {
		__m128i m = _mm_loadu_si128((const __m128i *)(const void *)(s + 1));
		__m128i x = _mm_shuffle_epi8(
			_mm_loadu_si128((const __m128i *)(const void *)(p + s->off)), m);
		__m128i *dw = (__m128i *)(void *)(rb + s->ie);

		_mm_storeu_si128(dw, _mm_or_si128(_mm_loadu_si128(dw), x));
	}
#endif
	if (f & NM_TF_SHUF) {
		/* The IPv4 address markers: the base record holds their 0xffff. */
		for (; s->op == NM_FOP_A4C; s++)
			;
	} else {
		for (; s->op == NM_FOP_A4; s++)
			nm_addr_from_v4(rb + s->ie, p + s->off);
		for (; s->op == NM_FOP_A6; s++)
			memcpy(rb + s->ie, p + s->off, NM_ADDR_LEN);
		for (; s->op == NM_FOP_R64; s++) {
			v = window(p, s);
			memcpy(rb + s->ie, &v, 8);
		}
	}
	for (; s->op == NM_FOP_MS64; s++) {
		v = window(p, s) / 1000;
		memcpy(rb + s->ie, &v, 8);
	}
	if (!(f & NM_TF_SHUF)) {
		for (; s->op == NM_FOP_R32; s++) {
			v32 = (uint32_t)window(p, s);
			memcpy(rb + s->ie, &v32, 4);
		}
		for (; s->op == NM_FOP_R16; s++) {
			v16 = (uint16_t)window(p, s);
			memcpy(rb + s->ie, &v16, 2);
		}
		for (; s->op == NM_FOP_R8; s++)
			rb[s->ie] = (uint8_t)window(p, s);
	}
	for (; s->op == NM_FOP_S64; s++) {
		v = window(p, s);
		memcpy(sb + s->ie, &v, 8);
	}
	for (; s->op == NM_FOP_S32; s++) {
		v32 = (uint32_t)window(p, s);
		memcpy(sb + s->ie, &v32, 4);
	}
	for (; s->op == NM_FOP_S8; s++)
		sb[s->ie] = (uint8_t)window(p, s);
	if (f & NM_TF_ETYPE4)
		r->key.etype = 0x0800;
	else if (f & NM_TF_ETYPE6)
		r->key.etype = 0x86dd;
	sc->has_start_up = !!(f & NM_TF_HAS_START_UP);
	sc->has_end_up = !!(f & NM_TF_HAS_END_UP);
	sc->has_start_dus = !!(f & NM_TF_HAS_START_DUS);
	sc->has_end_dus = !!(f & NM_TF_HAS_END_DUS);
	sc->has_sampler = !!(f & NM_TF_HAS_SAMPLER);
	/* A fixed layout has no generic skip step: a skip here is the end of an all-move program.
	 */
	return (unsigned int)(s - t->steps) + (s->op == NM_OP_SKIP);
}

/* Rate a record states itself (IE 34/50, or 305/306), 0 when none. */
static inline uint64_t
inline_rate(const struct scratch *sc)
{
	if (sc->sampling != 0)
		return sc->sampling;
	if (sc->pkt_interval != 0)
		return (sc->pkt_interval + sc->pkt_space) / sc->pkt_interval;
	return 0;
}

/* State of one data set being decoded. */
struct dset {
	struct nm_decoder *d;
	const struct nm_ipfix_hdr *h;
	const struct nm_tmpl *t;
	uint64_t last_rate; /* rate lookup cache for the set: last sampler id and its rate */
	uint32_t last_sampler;
	uint8_t last_valid;
	unsigned int *n_recs; /* records of every kind read (v9 header count check) */
};

static uint64_t
learned_rate(struct dset *ds, const struct scratch *sc)
{
	uint32_t sid = sc->has_sampler ? sc->sampler_id : 0;
	struct nm_tmpl_cache *c = ds->d->tmpl;
	uint64_t rate = 0;

	if (ds->last_valid && ds->last_sampler == sid)
		return ds->last_rate;
	if (c != NULL) {
		rate = nm_tmpl_rate_lookup(c, ds->h->meta->exporter, ds->h->domain, sid);
		/* A rate announced without a sampler id applies to every sampler of the domain. */
		if (rate == 0 && sid != 0)
			rate = nm_tmpl_rate_lookup(c, ds->h->meta->exporter, ds->h->domain, 0);
	}
	ds->last_sampler = sid;
	ds->last_rate = rate;
	ds->last_valid = 1;
	return rate;
}

static void
finish_flow(struct dset *ds, struct nm_flow_rec *r, struct scratch *sc)
{
	const struct nm_ipfix_hdr *h = ds->h;
	struct nm_flow_key *k = &r->key;
	uint64_t now_ms = (uint64_t)h->export_secs * 1000, rate;

	/* type, time_received, sampler_addr, sequence_num, observation_domain_id: the set's base
	 * record (set_base()) gave them. */
	if (sc->frame != NULL) {
		/* RFC 7133 packet section: the frame tells L2..L4; one sampled packet. */
		(void)nm_pkt_parse_eth(sc->frame, sc->frame_len, k);
		if (!(ds->t->flags & NM_TF_BYTES))
			r->bytes = sc->frame_size != 0 ? sc->frame_size : sc->frame_len;
		if (!(ds->t->flags & NM_TF_PKTS))
			r->packets = 1;
	}
	/* Uptime-relative times: v9 against the header's sysUptime, IPFIX against systemInitTime.
	 */
	if (sc->has_start_up) {
		if (h->proto == NM_TMPL_NF9)
			k->time_flow_start =
				(now_ms - (uint32_t)(h->sys_uptime_ms - (uint32_t)sc->start_up)) /
				1000;
		else if (sc->sysinit_ms != 0)
			k->time_flow_start = (sc->sysinit_ms + sc->start_up) / 1000;
	}
	if (sc->has_end_up) {
		if (h->proto == NM_TMPL_NF9)
			k->time_flow_end =
				(now_ms - (uint32_t)(h->sys_uptime_ms - (uint32_t)sc->end_up)) /
				1000;
		else if (sc->sysinit_ms != 0)
			k->time_flow_end = (sc->sysinit_ms + sc->end_up) / 1000;
	}
	if (sc->has_start_dus)
		k->time_flow_start = (now_ms * 1000 - sc->start_dus) / 1000000;
	if (sc->has_end_dus)
		k->time_flow_end = (now_ms * 1000 - sc->end_dus) / 1000000;
	/* No usable time: the export time is the best bound we have. */
	if (k->time_flow_end == 0)
		k->time_flow_end = h->export_secs;
	if (k->time_flow_start == 0)
		k->time_flow_start = k->time_flow_end;

	/*
	 * Exporters without ICMP IEs (Cisco, softflowd, ...) put type * 256 + code in the
	 * destination port of ICMP flows.
	 */
	if (!(sc->written & W_ICMP) && k->icmp_type == 0 && k->icmp_code == 0 &&
	    (k->proto == 1 || k->proto == 58) && k->src_port == 0) {
		k->icmp_type = (uint8_t)(k->dst_port >> 8);
		k->icmp_code = (uint8_t)k->dst_port;
	}
	if (k->vlan_id == 0)
		k->vlan_id = k->src_vlan;
	if (k->etype == 0) {
		if (sc->ipver == 4)
			k->etype = 0x0800;
		else if (sc->ipver == 6)
			k->etype = 0x86dd;
	}
	rate = inline_rate(sc);
	if (rate == 0 && ds->d->rate_override == 0)
		rate = learned_rate(ds, sc);
	k->sampling_rate = nm_decode_rate(ds->d, rate);
}

static void
finish_options(struct dset *ds, struct scratch *sc)
{
	uint64_t rate = inline_rate(sc);

	nm_ctr_inc(&ds->d->stats->options_records);
	if (rate != 0 && ds->d->tmpl != NULL)
		(void)nm_tmpl_rate_set(ds->d->tmpl, ds->h->meta->exporter, ds->h->domain,
				       sc->has_sampler ? sc->sampler_id : 0, rate,
				       ds->h->meta->time_received);
}

#define SWAP(a, b)                                                                                 \
	do {                                                                                       \
		__typeof__(a) tmp_ = (a);                                                          \
		(a) = (b);                                                                         \
		(b) = tmp_;                                                                        \
	} while (0)

/* The reverse direction of an RFC 5103 biflow: endpoints swapped, reverse counters. */
static void
reverse_of(struct nm_flow_rec *r, const struct nm_flow_rec *fwd, const struct scratch *sc)
{
	struct nm_flow_key *k = &r->key;
	uint8_t a[NM_ADDR_LEN];

	*r = *fwd;
	memcpy(a, k->src_addr, NM_ADDR_LEN);
	memcpy(k->src_addr, k->dst_addr, NM_ADDR_LEN);
	memcpy(k->dst_addr, a, NM_ADDR_LEN);
	SWAP(k->src_port, k->dst_port);
	SWAP(k->src_mac, k->dst_mac);
	SWAP(k->src_as, k->dst_as);
	SWAP(k->src_net, k->dst_net);
	SWAP(k->in_if, k->out_if);
	SWAP(k->src_vlan, k->dst_vlan);
	r->bytes = sc->rev_bytes;
	r->packets = sc->rev_pkts;
}

/*
 * The fields every flow record of a data set shares (from the message header and the datagram),
 * the rest zero: each record's slot starts as a copy of it, which costs what clearing the slot
 * did and saves the per-record stores of these fields.
 */
static void
set_base(struct nm_flow_rec *base, const struct nm_ipfix_hdr *h, const struct nm_tmpl *t)
{
	struct nm_flow_key *k = &base->key;
	const struct nm_tmpl_step *s = t->steps;

	nm_rec_clear(base);
	k->type = h->proto == NM_TMPL_NF9 ? NM_FLOW_NF9 : NM_FLOW_IPFIX;
	k->time_received = h->meta->time_received;
	memcpy(k->sampler_addr, h->meta->exporter, NM_ADDR_LEN);
	k->sequence_num = h->seq;
	k->observation_domain_id = h->domain;
	if (!(t->flags & NM_TF_SHUF))
		return;
	/* IPv4-mapped addresses that shuffles fill: their ::ffff: prefix is the base's. */
	while (s->op == NM_FOP_SHUF)
		s += 3;
	for (; s->op == NM_FOP_A4C; s++) {
		((uint8_t *)base)[s->ie + 10] = 0xff;
		((uint8_t *)base)[s->ie + 11] = 0xff;
	}
}

/* Zero the per-record scratch with vector stores (a plain memset is 14 word stores). */
typedef uint8_t scratch_v32 __attribute__((vector_size(32), aligned(1), may_alias));

static inline void
scratch_clear(struct scratch *sc)
{
	const scratch_v32 z = {0};
	unsigned int i;

	_Static_assert(sizeof(*sc) % 8 == 0, "scratch is whole words");
	for (i = 0; i + 32 <= sizeof(*sc); i += 32)
		*(scratch_v32 *)(void *)((uint8_t *)sc + i) = z;
	for (; i < sizeof(*sc); i += 8)
		memset((uint8_t *)sc + i, 0, 8);
}

/*
 * Decode the records of one data set [p, end) with its template. Returns flow records produced,
 * or -NM_DECODE_ERR_BAD_LENGTH (counted) when a variable-length field runs past the set.
 */
static int
run_set(struct dset *ds, struct nm_proto_stats *ps, const uint8_t *p, const uint8_t *end,
	struct nm_rec_batch *out)
{
	const struct nm_tmpl *t = ds->t;
	struct nm_flow_rec dummy, base;
	unsigned int i, n = 0;

	if (!t->is_options)
		set_base(&base, ds->h, t);
	/* Anything shorter than the least a record takes is padding (RFC 7011 3.3.1). */
	while ((size_t)(end - p) >= t->min_len) {
		struct nm_flow_rec *r = t->is_options ? &dummy : nm_rec_batch_slot_from(out, &base);
		struct scratch sc;

		scratch_clear(&sc);
		if (!t->has_var) {
			i = t->flags & NM_TF_FAST ? run_moves(r, &sc, t, p) : 0;
			for (; i < t->n_steps; i++) {
				const struct nm_tmpl_step *s = &t->steps[i];

				apply(r, &sc, s->op, s->ie, p + s->off, s->len);
			}
			p += t->min_len;
		} else {
			const uint8_t *q = p;

			for (i = 0; i < t->n_steps; i++) {
				const struct nm_tmpl_step *s = &t->steps[i];
				size_t l = s->len;

				if (l == NM_TMPL_VARLEN) {
					if (q >= end)
						goto bad;
					l = *q++;
					if (l == 255) {
						if (end - q < 2)
							goto bad;
						l = nm_rd16(q);
						q += 2;
					}
				}
				if ((size_t)(end - q) < l)
					goto bad;
				apply(r, &sc, s->op, s->ie, q, (unsigned int)l);
				q += l;
			}
			p = q;
		}
		if (ds->n_recs != NULL) {
			(*ds->n_recs)++;
			ds->d->info.data_records++;
			if (t->is_options)
				ds->d->info.options_records++;
		}
		if (t->is_options) {
			finish_options(ds, &sc);
			continue;
		}
		finish_flow(ds, r, &sc);
		if ((t->flags & NM_TF_REVERSE) && (sc.rev_bytes != 0 || sc.rev_pkts != 0)) {
			/* Copy first: taking the next slot may flush the batch under r. */
			struct nm_flow_rec fwd = *r;

			nm_rec_batch_commit(out);
			r = nm_rec_batch_slot(out);
			reverse_of(r, &fwd, &sc);
			n++;
		}
		nm_rec_batch_commit(out);
		n++;
	}
	nm_ctr_add(&ps->records, n);
	return (int)n;
bad:
	nm_ctr_add(&ps->records, n);
	nm_decode_count_err(ds->d, NM_DECODE_ERR_BAD_LENGTH);
	return -NM_DECODE_ERR_BAD_LENGTH;
}

int
nm_ipfix_run_set(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h,
		 const struct nm_tmpl *t, const uint8_t *p, const uint8_t *end,
		 struct nm_rec_batch *out)
{
	struct dset ds = {.d = d, .h = h, .t = t, .n_recs = &h->n_recs};

	return run_set(&ds, ps, p, end, out);
}

static struct nm_tmpl_key
make_key(const struct nm_ipfix_hdr *h, uint16_t id)
{
	struct nm_tmpl_key k;

	memset(&k, 0, sizeof(k));
	memcpy(k.exporter, h->meta->exporter, NM_ADDR_LEN);
	k.domain = h->domain;
	k.id = id;
	k.proto = h->proto;
	return k;
}

/* Template k was just published: decode the data sets that waited for it. */
static int
decode_held(struct nm_decoder *d, struct nm_proto_stats *ps, const struct nm_tmpl_key *k,
	    const struct nm_tmpl *t, uint64_t now, struct nm_rec_batch *out)
{
	struct nm_tmpl_pending *held = d->held;
	unsigned int i, n;
	int total = 0;

	while ((n = nm_tmpl_pending_take(d->tmpl, k, now, held, NM_DECODER_HELD_MAX)) > 0) {
		for (i = 0; i < n; i++) {
			struct nm_tmpl_pending *hp = &held[i];
			struct nm_dgram_meta meta = {
				.exporter_port = hp->exporter_port,
				.dst_port = hp->dst_port,
				.time_received = hp->time_received,
				.time_received_ns = hp->time_received_ns,
			};
			struct nm_ipfix_hdr h = {
				.meta = &meta,
				.export_secs = hp->export_secs,
				.sys_uptime_ms = hp->sys_uptime_ms,
				.seq = hp->seq,
				.domain = hp->key.domain,
				.proto = hp->key.proto,
			};
			struct dset ds = {.d = d, .h = &h, .t = t};
			int r;

			memcpy(meta.exporter, hp->key.exporter, NM_ADDR_LEN);
			nm_ctr_inc(&d->stats->pending_decoded);
			r = run_set(&ds, ps, hp->data, hp->data + hp->len, out);
			if (r > 0)
				total += r;
		}
	}
	return total;
}

static void
note_err(struct nm_decoder *d, enum nm_decode_err *first, enum nm_decode_err e)
{
	nm_decode_count_err(d, e);
	if (*first == NM_DECODE_OK)
		*first = e;
}

/*
 * A template record, its fields parsed into f[0..n): take it and decode what waited for it.
 * Returns records produced. Exporters repeat every template every few seconds or packets, so the
 * unchanged one is recognised first, on the reader side, against the cached copy: no compile,
 * no lock, no pool slot. Only a new or changed layout is compiled (into the decoder's scratch)
 * and published (copied into the cache's pool under its writer mutex).
 */
static int
take_template(struct nm_decoder *d, struct nm_proto_stats *ps, const struct nm_ipfix_hdr *h,
	      uint16_t tid, const struct nm_tmpl_field *f, unsigned int n, unsigned int n_scope,
	      int options, struct nm_rec_batch *out, enum nm_decode_err *first_err)
{
	struct nm_tmpl_key k = make_key(h, tid);
	const struct nm_tmpl *pub;
	enum nm_decode_err e;
	struct nm_tmpl *t;
	int r;

	pub = nm_tmpl_lookup(d->tmpl, &k);
	if (pub != NULL && nm_tmpl_same_fields(pub, f, n, n_scope, options)) {
		nm_tmpl_note_refresh(d->tmpl, pub, h->meta->time_received);
	} else {
		t = nm_ipfix_compile(&k, f, n, n_scope, options, d->tmpl_scratch,
				     sizeof(d->tmpl_scratch), &e);
		if (t == NULL) {
			note_err(d, first_err, e);
			return 0;
		}
		r = nm_tmpl_publish(d->tmpl, t, h->meta->time_received);
		if (r < 0) {
			note_err(d, first_err, NM_DECODE_ERR_TEMPLATE_LIMIT);
			return 0;
		}
		pub = nm_tmpl_lookup(d->tmpl, &k);
	}
	d->stats->templates++;
	d->info.templates++;
	if (pub == NULL)
		return 0;
	return decode_held(d, ps, &k, pub, h->meta->time_received, out);
}

/* v9 template flowset (id 0) or options template flowset (id 1). */
static int
nf9_templates(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h, int options,
	      const uint8_t *p, const uint8_t *end, struct nm_rec_batch *out,
	      enum nm_decode_err *first_err)
{
	struct nm_tmpl_field f[NM_TMPL_MAX_FIELDS];
	int produced = 0;

	for (;;) {
		unsigned int tid, n, n_scope = 0, i;

		if (end - p < (options ? 6 : 4))
			break; /* padding */
		tid = nm_rd16(p);
		if (!options) {
			n = nm_rd16(p + 2);
			p += 4;
		} else {
			unsigned int sl = nm_rd16(p + 2), ol = nm_rd16(p + 4);

			if (tid == 0 && sl == 0 && ol == 0)
				break; /* zero padding */
			if (sl % 4 != 0 || ol % 4 != 0) {
				note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
				return produced;
			}
			n_scope = sl / 4;
			n = (sl + ol) / 4;
			p += 6;
		}
		if (tid == 0 && n == 0)
			break; /* zero padding */
		if (tid < 256 || n == 0 || n > NM_TMPL_MAX_FIELDS || (size_t)(end - p) < n * 4) {
			note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
			return produced;
		}
		h->n_recs++;
		for (i = 0; i < n; i++, p += 4) {
			f[i].pen = 0;
			f[i].ie = nm_rd16(p);
			f[i].len = nm_rd16(p + 2);
		}
		if (d->tmpl == NULL)
			continue;
		produced += take_template(d, ps, h, (uint16_t)tid, f, n, n_scope, options, out,
					  first_err);
	}
	return produced;
}

/* IPFIX template set (id 2) or options template set (id 3), withdrawals included. */
static int
ipfix_templates(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h,
		int options, const uint8_t *p, const uint8_t *end, struct nm_rec_batch *out,
		enum nm_decode_err *first_err)
{
	struct nm_tmpl_field f[NM_TMPL_MAX_FIELDS];
	int produced = 0;

	while (end - p >= 4) {
		unsigned int tid = nm_rd16(p), n = nm_rd16(p + 2), n_scope = 0, i;
		struct nm_tmpl_key k;

		if (tid == 0 && n == 0)
			break; /* padding */
		p += 4;
		if (n == 0) {
			/* Withdrawal (RFC 7011 8.1): id 2/3 withdraws every (options) template. */
			nm_ctr_inc(&d->stats->template_withdrawals);
			if (d->tmpl == NULL)
				continue;
			if (tid == (options ? 3u : 2u))
				(void)nm_tmpl_withdraw_all(d->tmpl, h->meta->exporter, h->domain,
							   h->proto, options);
			else if (tid >= 256) {
				k = make_key(h, (uint16_t)tid);
				(void)nm_tmpl_withdraw(d->tmpl, &k);
			} else {
				note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
				return produced;
			}
			continue;
		}
		if (options) {
			if (end - p < 2) {
				note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
				return produced;
			}
			n_scope = nm_rd16(p);
			p += 2;
			if (n_scope == 0 || n_scope > n) {
				note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
				return produced;
			}
		}
		if (tid < 256 || n > NM_TMPL_MAX_FIELDS) {
			note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
			return produced;
		}
		h->n_recs++;
		for (i = 0; i < n; i++) {
			if (end - p < 4)
				goto bad;
			f[i].ie = nm_rd16(p) & 0x7fff;
			f[i].len = nm_rd16(p + 2);
			f[i].pen = 0;
			if (nm_rd16(p) & 0x8000) {
				if (end - p < 8)
					goto bad;
				f[i].pen = nm_rd32(p + 4);
				p += 4;
			}
			p += 4;
		}
		if (d->tmpl == NULL)
			continue;
		produced += take_template(d, ps, h, (uint16_t)tid, f, n, n_scope, options, out,
					  first_err);
	}
	return produced;
bad:
	note_err(d, first_err, NM_DECODE_ERR_BAD_TEMPLATE);
	return produced;
}

/* A data set: decode it, or hold it until its template comes. */
static int
data_set(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h, uint16_t tid,
	 const uint8_t *p, const uint8_t *end, struct nm_rec_batch *out,
	 enum nm_decode_err *first_err)
{
	struct nm_tmpl_key k;
	const struct nm_tmpl *t = NULL;
	struct dset ds;
	int r;

	if (d->tmpl != NULL) {
		k = make_key(h, tid);
		t = nm_tmpl_lookup(d->tmpl, &k);
	}
	if (t == NULL) {
		nm_decode_count_err(d, NM_DECODE_ERR_UNKNOWN_TEMPLATE);
		d->info.seq_unsure = 1; /* its records are not counted in data_records */
		if (d->tmpl != NULL) {
			struct nm_tmpl_pending *hp = &d->hold;
			size_t len = (size_t)(end - p);

			if (len > NM_TMPL_PENDING_MAX_LEN) {
				nm_ctr_inc(&d->stats->pending_dropped);
				return 0;
			}
			hp->key = k;
			hp->time_received = h->meta->time_received;
			hp->time_received_ns = h->meta->time_received_ns;
			hp->export_secs = h->export_secs;
			hp->sys_uptime_ms = h->sys_uptime_ms;
			hp->seq = h->seq;
			hp->exporter_port = h->meta->exporter_port;
			hp->dst_port = h->meta->dst_port;
			hp->len = (uint16_t)len;
			memcpy(hp->data, p, len);
			r = nm_tmpl_pending_put(d->tmpl, hp);
			if (r < 0) {
				nm_ctr_inc(&d->stats->pending_dropped);
			} else {
				nm_ctr_inc(&d->stats->pending_queued);
				if (r == 1)
					nm_ctr_inc(&d->stats->pending_dropped); /* an older one made
										   room */
			}
		}
		return 0;
	}
	ds = (struct dset){.d = d, .h = h, .t = t, .n_recs = &h->n_recs};
	r = run_set(&ds, ps, p, end, out);
	if (r < 0) {
		if (*first_err == NM_DECODE_OK)
			*first_err = (enum nm_decode_err) - r;
		return 0;
	}
	return r;
}

static int
all_zero(const uint8_t *p, const uint8_t *end)
{
	for (; p < end; p++)
		if (*p != 0)
			return 0;
	return 1;
}

int
nm_ipfix_walk_sets(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h,
		   const uint8_t *p, const uint8_t *end, struct nm_rec_batch *out)
{
	enum nm_decode_err first_err = NM_DECODE_OK;
	int produced = 0;
	int v9 = h->proto == NM_TMPL_NF9;

	while (p < end) {
		unsigned int id, slen;
		const uint8_t *s_end;

		if (end - p < 4 || (slen = nm_rd16(p + 2)) < 4) {
			/* Some v9 exporters zero-fill the rest of a fixed-size datagram. */
			if (v9 && all_zero(p, end))
				break;
			note_err(d, &first_err, NM_DECODE_ERR_BAD_LENGTH);
			break;
		}
		if ((size_t)(end - p) < slen) {
			note_err(d, &first_err, NM_DECODE_ERR_BAD_LENGTH);
			break;
		}
		id = nm_rd16(p);
		s_end = p + slen;
		h->n_sets++;
		if (id >= 256)
			produced += data_set(d, ps, h, (uint16_t)id, p + 4, s_end, out, &first_err);
		else if (v9 && id <= 1)
			produced += nf9_templates(d, ps, h, id == 1, p + 4, s_end, out, &first_err);
		else if (!v9 && (id == 2 || id == 3))
			produced +=
				ipfix_templates(d, ps, h, id == 3, p + 4, s_end, out, &first_err);
		else
			nm_decode_count_err(d, NM_DECODE_ERR_UNSUPPORTED); /* reserved set id:
										  skipped */
		p = s_end;
	}
	if (first_err != NM_DECODE_OK) {
		nm_ctr_inc(&ps->bad);
		return -(int)first_err;
	}
	return produced;
}
