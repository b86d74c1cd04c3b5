/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_IPFIX_PROG_H
#define NM_IPFIX_PROG_H

/*
 * Shared NetFlow v9 / IPFIX machinery: the template compiler (template fields -> field program),
 * the record runner and the set walker that both decoders call after their own header.
 *
 * A template is compiled once, when it arrives, into an array of {offset, length, op} steps that
 * only covers the fields the flow record uses (the mapping from IE numbers to record fields and
 * the preference between alternatives - octetDeltaCount over octetTotalCount, absolute over
 * uptime-relative times - is resolved then). Data records are then decoded by walking the steps:
 * no lookup of IE numbers per record.
 *
 * Threading: the walker is called by the RX thread that owns d (stats, scratch) and out, inside
 * its QSBR read side; it reads and (for template sets and options data) writes d->tmpl.
 *
 * Cost: data sets and unchanged templates are reader work (lookups, no lock, no allocation);
 * a new or changed template, a changed sampling rate and a withdrawal take the template cache's
 * writer mutex; a data set of an unknown template, or a template that arrives while data sets
 * are held, takes the held-set mutex (see tmpl.h). Nothing here allocates or makes a syscall.
 */

#include <stdint.h>
#include <stddef.h>

#include "decode.h"
#include "../tmpl/tmpl.h"

enum nm_ipfix_op {
	NM_OP_SKIP = 0,
	NM_OP_BYTES,
	NM_OP_PKTS,
	NM_OP_PROTO,
	NM_OP_TOS,
	NM_OP_TCPFLAGS,
	NM_OP_SPORT,
	NM_OP_DPORT,
	NM_OP_SRC4,
	NM_OP_DST4,
	NM_OP_SRC6,
	NM_OP_DST6,
	NM_OP_NH4,
	NM_OP_NH6,
	NM_OP_SRCNET,
	NM_OP_DSTNET,
	NM_OP_INIF,
	NM_OP_OUTIF,
	NM_OP_SRCAS,
	NM_OP_DSTAS,
	NM_OP_NHAS,
	NM_OP_SRCMAC,
	NM_OP_DSTMAC,
	NM_OP_SRCVLAN,
	NM_OP_DSTVLAN,
	NM_OP_VLAN,
	NM_OP_INVRF,
	NM_OP_OUTVRF,
	NM_OP_FLOWLABEL,
	NM_OP_FRAGID,
	NM_OP_FRAGOFF,
	NM_OP_TTL,
	NM_OP_ICMP_TC,
	NM_OP_ICMP_TYPE,
	NM_OP_ICMP_CODE,
	NM_OP_START_UP,
	NM_OP_END_UP, /* v9 sysUptime ms (IPFIX: since systemInitTime) */
	NM_OP_START_S,
	NM_OP_END_S,
	NM_OP_START_MS,
	NM_OP_END_MS,
	NM_OP_START_NTP,
	NM_OP_END_NTP, /* micro/nanoseconds: NTP 64-bit timestamps */
	NM_OP_START_DUS,
	NM_OP_END_DUS, /* delta microseconds before export time */
	NM_OP_SYSINIT_MS,
	NM_OP_DIRECTION,
	NM_OP_BIDIR,
	NM_OP_FWD_STATUS,
	NM_OP_MPLS,
	NM_OP_IPVER,
	NM_OP_SAMPLER_ID,
	NM_OP_SAMPLING,
	NM_OP_PKT_INTERVAL,
	NM_OP_PKT_SPACE,
	NM_OP_FRAME,
	NM_OP_FRAME_SIZE,
	NM_OP_REV_BYTES,
	NM_OP_REV_PKTS, /* RFC 5103 reverse counters (PEN 29305) */
	NM_OP_MAX,
};

/* Compiler summary bits (struct nm_tmpl.flags). */
enum nm_ipfix_tflag {
	NM_TF_BYTES = 1u << 0,
	NM_TF_PKTS = 1u << 1,
	NM_TF_SAMPLING = 1u << 2, /* options: carries a rate */
	NM_TF_REVERSE = 1u << 3,  /* biflow: a reverse record follows each forward one */
};

/*
 * Compile a template into buf (size bytes, 8-byte aligned; NM_TMPL_MAX_SIZE always suffices).
 * f[0..n) are the fields as received, the first n_scope of them scope fields (options
 * templates). For v9 options templates scope fields carry scope types, not IEs, and are skipped.
 * Returns the template in buf with key set, not yet published, or NULL with *err set to
 * NM_DECODE_ERR_BAD_TEMPLATE (impossible layout) or NM_DECODE_ERR_UNSUPPORTED (buf too small).
 * Pure: writes only buf, no allocation, no lock.
 */
struct nm_tmpl *nm_ipfix_compile(const struct nm_tmpl_key *key, const struct nm_tmpl_field *f,
				 unsigned int n, unsigned int n_scope, int is_options, void *buf,
				 size_t size, enum nm_decode_err *err);

/* What a data set needs from its message header. */
struct nm_ipfix_hdr {
	const struct nm_dgram_meta *meta;
	uint32_t export_secs;
	uint32_t sys_uptime_ms; /* v9 */
	uint32_t seq;
	uint32_t domain;
	uint8_t proto; /* enum nm_tmpl_proto */
	/* Filled in by the walker: sets walked, records of every kind read in this datagram. */
	unsigned int n_sets;
	unsigned int n_recs;
};

/*
 * Walk the sets in [p, end). Returns the flow records produced (including held data sets decoded
 * because their template arrived), or the negative reason of the first malformed set; every
 * problem is counted. Sets after a malformed one are still decoded when the lengths allow it.
 */
int nm_ipfix_walk_sets(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h,
		       const uint8_t *p, const uint8_t *end, struct nm_rec_batch *out);

#endif /* NM_IPFIX_PROG_H */
