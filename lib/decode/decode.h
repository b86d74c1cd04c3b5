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
 * RX lcore); telemetry sums them. Decoders that need shared state (templates, exporters) get it
 * through struct nm_decoder, whose contract is stated with each member.
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
#include "../exporter/exporter.h"
#include "../flow/flow.h"
#include "../tmpl/tmpl.h"

/* Per-protocol counters of one thread. */
struct nm_proto_stats {
	uint64_t datagrams; /* datagrams recognised as this protocol */
	uint64_t records;   /* flow records produced */
	uint64_t bad;	    /* datagrams rejected whole or in part */
};

struct nm_decode_stats {
	struct nm_proto_stats nf5;
	struct nm_proto_stats nf9;
	struct nm_proto_stats ipfix;
	struct nm_proto_stats sflow;
	uint64_t unknown;		 /* datagrams of no known protocol */
	uint64_t sflow_flow_samples;	 /* flow_sample + expanded_flow_sample */
	uint64_t sflow_counter_samples;	 /* counter_sample + expanded_counter_sample */
	uint64_t templates;		 /* v9/IPFIX (options) template records accepted */
	uint64_t template_withdrawals;	 /* IPFIX withdrawals */
	uint64_t options_records;	 /* v9/IPFIX options data records read */
	uint64_t pending_queued;	 /* data sets held until their template arrives */
	uint64_t pending_decoded;	 /* held data sets decoded later */
	uint64_t pending_dropped;	 /* held data sets dropped (queue full or expired) */
	uint64_t err[NM_DECODE_ERR_MAX]; /* by reason, all protocols */
};

/* Add every counter of src to dst. Any thread; plain loads, no lock. */
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

/* Count err against the protocol stats p and the reason table; returns -err for tail calls. */
static inline int
nm_decode_fail(struct nm_decoder *d, struct nm_proto_stats *p, enum nm_decode_err err)
{
	d->stats->err[err]++;
	if (p != NULL)
		p->bad++;
	return -(int)err;
}

#endif /* NM_DECODE_H */
