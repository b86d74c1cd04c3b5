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
 * Fixed-layout flow templates (every field of a fixed length: softflowd's, most vendors') are
 * then specialised: each field that is the only writer of its destination and needs nothing but
 * a copy (counters, ports, protocol, interfaces, addresses, times, ...) becomes a typed move, and
 * the moves are grouped by type, so a record runs a few tight loops of loads and stores instead
 * of a switch per field; the rest (masked VLANs, MPLS stacks, NTP times, fields that compete for
 * one destination, ...) keep their generic step and run after the moves, in template order.
 * Both forms decode every record to the same bytes (test_ipfix checks that on random templates).
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
	/*
	 * Specialised moves (fixed-layout flow templates only, see nm_ipfix_compile()): a field
	 * that is the only writer of its destination and needs no more than a copy. They reuse
	 * the step's members: off is where the 8-byte big-endian window that ends with the field
	 * starts (inside the record), len how many bits of it precede the field, ie the
	 * destination's byte offset in the record (R*, A*) or in the runner's per-record scratch
	 * (S*). Addresses (A4, A6) have off = the field's offset. They come first in the step
	 * array, grouped in this order; the generic steps follow in template order, or, when
	 * there are none, one NM_OP_SKIP of length 0 that ends the moves.
	 */
	NM_FOP_A4 = 0x80, /* IPv4 address -> IPv4-mapped 16 bytes */
	NM_FOP_A6,	  /* IPv6 address, 16 bytes */
	NM_FOP_R64,	  /* integer -> 64-bit record member */
	NM_FOP_MS64,	  /* milliseconds -> seconds, 64-bit record member */
	NM_FOP_R32,
	NM_FOP_R16,
	NM_FOP_R8,
	NM_FOP_S64, /* integer -> 64-bit scratch member */
	NM_FOP_S32,
	NM_FOP_S8,
	/*
	 * Byte shuffles (NM_TF_SHUF): every A4/A6/R64/R32/R16/R8 move of the template as a few
	 * 16-byte gathers. A shuffle step has off = the start of a 16-byte window of the data
	 * record, ie = the start of a 16-byte window of the record it ORs into, and the two steps
	 * after it hold the 16-byte pshufb mask (0x80: nothing). The record's slot starts from the
	 * set's base record, which is zero where a move writes except the 0xffff of IPv4-mapped
	 * addresses: one NM_FOP_A4C step per IPv4 address move (ie = its destination) follows
	 * the shuffles and tells the base-record builder where; the runner skips them.
	 */
	NM_FOP_SHUF,
	NM_FOP_A4C,
};

/* Compiler summary bits (struct nm_tmpl.flags). */
enum nm_ipfix_tflag {
	NM_TF_BYTES = 1u << 0,
	NM_TF_PKTS = 1u << 1,
	NM_TF_SAMPLING = 1u << 2, /* options: carries a rate */
	NM_TF_REVERSE = 1u << 3,  /* biflow: a reverse record follows each forward one */
	/*
	 * Specialised form: the record's state that the generic steps keep per record, known per
	 * template once the moves are fixed (a fixed layout runs every step of every record).
	 */
	NM_TF_FAST = 1u << 4,	      /* the steps start with NM_FOP_* moves */
	NM_TF_ETYPE4 = 1u << 5,	      /* the address moves set EtherType IPv4 */
	NM_TF_ETYPE6 = 1u << 6,	      /* ... IPv6 */
	NM_TF_HAS_START_UP = 1u << 7, /* a move writes the uptime-relative start */
	NM_TF_HAS_END_UP = 1u << 8,
	NM_TF_HAS_START_DUS = 1u << 9,
	NM_TF_HAS_END_DUS = 1u << 10,
	NM_TF_HAS_SAMPLER = 1u << 11,
	NM_TF_SHUF = 1u << 12, /* the A4..R8 moves are byte shuffles (NM_FOP_SHUF) */
};

/* nm_ipfix_compile_opts() options. */
enum nm_ipfix_copt {
	NM_IPFIX_GENERIC = 1u << 0, /* no specialised moves: every field through the generic step */
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

/*
 * nm_ipfix_compile() with options (enum nm_ipfix_copt): NM_IPFIX_GENERIC keeps the generic form,
 * which decodes every record to the same bytes as the specialised one; tests compare the two and
 * benchmarks measure one against the other. Same contract otherwise.
 */
struct nm_tmpl *nm_ipfix_compile_opts(const struct nm_tmpl_key *key, const struct nm_tmpl_field *f,
				      unsigned int n, unsigned int n_scope, int is_options,
				      unsigned int opts, void *buf, size_t size,
				      enum nm_decode_err *err);

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

/*
 * Decode the records of one data set [p, end) (after its set header) with template t, as the
 * walker does for a set whose template is cached: for tests and benchmarks that hold a compiled
 * template of their own. Returns flow records produced or a negative reason (counted in ps and
 * d's stats). Same threading as the walker.
 */
int nm_ipfix_run_set(struct nm_decoder *d, struct nm_proto_stats *ps, struct nm_ipfix_hdr *h,
		     const struct nm_tmpl *t, const uint8_t *p, const uint8_t *end,
		     struct nm_rec_batch *out);

#endif /* NM_IPFIX_PROG_H */
