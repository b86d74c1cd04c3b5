/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_DECODE_H
#define NM_DECODE_H

/*
 * Flow-export decoders: NetFlow v5, NetFlow v9, IPFIX and sFlow v5.
 *
 * Every decoder is a function on (buf, len) of one UDP payload. It checks the length before every
 * read, writes records into a struct nm_rec_batch, bumps counters in a struct nm_decode_stats and
 * returns the number of records it produced, or a negative enum nm_decode_err when the datagram
 * (or the part of it that follows a good prefix) is malformed. Lengths and counts come from the
 * wire and are hostile until checked; no decoder allocates, asserts on packet contents or reads
 * outside [buf, buf + len).
 *
 * Threading: the decoders are reentrant. A struct nm_decode_stats belongs to one thread (one per
 * RX lcore, the only writer, through nm_ctr_*); telemetry sums them. Decoders that need shared
 * state (templates, exporters) get it through struct nm_decoder, whose contract is stated with each
 * member.
 *
 * Cost of one call (nm_decode_datagram() or a protocol decoder): no allocation, no syscall;
 * work bounded by len. NetFlow v5 and sFlow take no lock. With d->exp: one lock-free override
 * probe and one exporter lookup with relaxed atomic adds per datagram (lib/exporter). With
 * d->tmpl (v9/IPFIX): a lock-free template lookup per data set and per template record received
 * again unchanged; the template cache's writer mutex only for a new or changed template, a
 * changed sampling rate or a withdrawal, and its held-set mutex only for data of an unknown
 * template or a template that arrives while data is held (lib/tmpl/tmpl.h). The batch's flush
 * callback costs what its owner makes it cost.
 */

#include <stdint.h>
#include <stddef.h>

#include "../base/dgram.h"
#include "../base/reason.h"
#include "../ctr/ctr.h"
#include "../exporter/exporter.h"
#include "../flow/flow.h"
#include "../tmpl/tmpl.h"

/*
 * Counters of one decoder thread (single writer: its RX lcore, through nm_ctr_inc/add; readers
 * use nm_ctr_get). The tables (lib/ctr/ctr.h) give the structs and every view of them.
 * Per protocol: Y(c, proto, name, kind, unit, flags, text, help); keys are <name>_<proto>.
 */
#define NM_PROTO_CTRS(Y, c, p, pname)                                                              \
	Y(c, p, datagrams, COUNTER, "datagrams", 0, "datagrams", pname " datagrams recognised")    \
	Y(c, p, records, COUNTER, "records", 0, "", pname " flow records produced")                \
	Y(c, p, bad, COUNTER, "datagrams", 0, "", pname " datagrams rejected whole or in part")

#define NM_DECODE_CTRS(X, A, P, c)                                                                  \
	P(c, nf5, "NetFlow v5")                                                                     \
	P(c, nf9, "NetFlow v9")                                                                     \
	P(c, ipfix, "IPFIX")                                                                        \
	P(c, sflow, "sFlow v5")                                                                     \
	X(c, datagrams_unknown, COUNTER, "datagrams", 0, "datagrams:unknown",                       \
	  "datagrams of no known protocol")                                                         \
	X(c, sflow_flow_samples, COUNTER, "samples", 0, "",                                         \
	  "sFlow flow_sample + expanded_flow_sample")                                               \
	X(c, sflow_counters_samples, COUNTER, "samples", 0, "",                                     \
	  "sFlow counter_sample + expanded_counter_sample")                                         \
	X(c, sflow_agent_mismatch, COUNTER, "datagrams", 0, "sflow agent mismatch",                 \
	  "sFlow datagrams whose agent their UDP source may not speak for: credited to the source") \
	X(c, templates, COUNTER, "templates", 0, "",                                                \
	  "NetFlow v9/IPFIX (options) template records accepted")                                   \
	X(c, template_withdrawals, COUNTER, "templates", 0, "", "IPFIX template withdrawals")       \
	X(c, options_records, COUNTER, "records", 0, "",                                            \
	  "NetFlow v9/IPFIX options data records read")                                             \
	X(c, pending_queued, COUNTER, "sets", 0, "",                                                \
	  "data sets held until their template arrives")                                            \
	X(c, pending_decoded, COUNTER, "sets", 0, "", "held data sets decoded later")               \
	X(c, pending_dropped, COUNTER, "sets", 0, "",                                               \
	  "held data sets dropped (queue full or expired)")                                         \
	A(c, err, NM_DECODE_ERR_MAX, nm_decode_err_elem, 1, "decode_err", "decode_errors",          \
	  "errors", "reason", NM_CTR_F_NONZERO, "errors",                                           \
	  "datagrams or parts rejected, by reason (all protocols)")

#define NM_PROTO_FIELD(c, p, name, kind, unit, flags, text, help) uint64_t name;
#define NM_DECODE_PROTO_FIELD(c, p, pname) struct nm_proto_stats p;

struct nm_proto_stats {
	NM_PROTO_CTRS(NM_PROTO_FIELD, _, _, "")
};

struct nm_decode_stats {
	NM_DECODE_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, NM_DECODE_PROTO_FIELD, _)
};

/* The set of struct nm_decode_stats: "decode", keys without a prefix. */
extern const struct nm_ctr_set nm_decode_ctr_set;

/* nm_decode_err_name() for counter tables. */
const char *nm_decode_err_elem(unsigned int i);

/* Add every counter of src to dst. */
void nm_decode_stats_add(struct nm_decode_stats *dst, const struct nm_decode_stats *src);

/* Held data sets decoded per nm_tmpl_pending_take() (the per-domain bound is usually 4). */
#define NM_DECODER_HELD_MAX 8

/*
 * Decoder context of one RX thread. stats is the thread's own. tmpl and exp are shared by all
 * threads (RCU-protected; callers must be registered QSBR readers) and may be NULL: without
 * tmpl v9/IPFIX data sets count as unknown templates; without exp nothing is accounted per
 * exporter and no override applies. When both are set, tmpl should have been created with exp
 * as its exporter table (nm_tmpl_params.exp), so one table holds each exporter's state.
 * default_sampling_rate is used when an exporter says nothing about its rate.
 *
 * The rest is the thread's scratch, so that no decoder needs a static or thread-local buffer or
 * an allocation: rate_override and info per datagram (nm_decode_datagram()), a template being
 * compiled, the data set being held and the held sets being decoded (lib/decode/ipfix_prog.c).
 * The struct is about 24 KiB: embed it in the thread's context, not on a small stack.
 */
struct nm_decoder {
	struct nm_decode_stats *stats;
	struct nm_tmpl_cache *tmpl;
	struct nm_exp_table *exp;
	uint64_t default_sampling_rate;
	uint64_t rate_override; /* configured rate of this datagram's exporter, 0: none */
	struct nm_dgram_info info;
	uint64_t tmpl_scratch[(NM_TMPL_MAX_SIZE + 7) / 8]; /* a struct nm_tmpl being compiled */
	struct nm_tmpl_pending hold;			   /* a data set to hold */
	struct nm_tmpl_pending held[NM_DECODER_HELD_MAX];  /* held sets taken for decoding */
	/*
	 * Reasons counted while decoding the current datagram (nm_decode_count_err()), for its
	 * exporter's entry; dg_err_any says whether dg_err holds anything, so a clean datagram
	 * costs no snapshot of the counters. Zero when the decoder is made (like the rest);
	 * nm_decode_datagram() clears what it used.
	 */
	uint64_t dg_err[NM_DECODE_ERR_MAX];
	unsigned int dg_err_any;
	/*
	 * lib/exporter's memos: the entry of the last datagram, the agent slot of the last sFlow
	 * (agent, source) pair that passed. They point into exp: zero them if exp changes.
	 */
	struct nm_exp_memo exp_memo;
	const void *agent_memo;
};

/*
 * The rate a record gets when the datagram (or options data) says `announced` (0: nothing):
 * the configured override first, then the announced rate, then the default. Counts which one it
 * was in d->info.
 */
static inline uint64_t
nm_decode_rate(struct nm_decoder *d, uint64_t announced)
{
	uint64_t r;

	if (d->rate_override != 0) {
		d->info.rate_override++;
		r = d->rate_override;
	} else if (announced != 0) {
		r = announced;
	} else {
		d->info.rate_default++;
		r = d->default_sampling_rate != 0 ? d->default_sampling_rate : 1;
	}
	d->info.rate = r;
	return r;
}

/*
 * Recognise the protocol from the header and decode. Returns records produced (>= 0) or a
 * negative enum nm_decode_err (the reason is also counted in stats->err).
 */
int nm_decode_datagram(struct nm_decoder *d, const uint8_t *buf, size_t len,
		       const struct nm_dgram_meta *meta, struct nm_rec_batch *out);

/* Protocol decoders, same contract as nm_decode_datagram(); each counts in its own stats. */
int nm_nf5_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		  const struct nm_dgram_meta *meta, struct nm_rec_batch *out);
int nm_nf9_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		  const struct nm_dgram_meta *meta, struct nm_rec_batch *out);
int nm_ipfix_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		    const struct nm_dgram_meta *meta, struct nm_rec_batch *out);
int nm_sflow_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		    const struct nm_dgram_meta *meta, struct nm_rec_batch *out);

/* Count one err in the reason table and in the current datagram's tally (d->dg_err). */
static inline void
nm_decode_count_err(struct nm_decoder *d, enum nm_decode_err err)
{
	nm_ctr_inc(&d->stats->err[err]);
	d->dg_err[err]++;
	d->dg_err_any = 1;
}

/* Count err against the protocol stats p and the reason table; returns -err for tail calls. */
static inline int
nm_decode_fail(struct nm_decoder *d, struct nm_proto_stats *p, enum nm_decode_err err)
{
	nm_decode_count_err(d, err);
	if (p != NULL)
		nm_ctr_inc(&p->bad);
	return -(int)err;
}

#endif /* NM_DECODE_H */
