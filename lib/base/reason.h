/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_REASON_H
#define NM_REASON_H

/*
 * Why input was rejected: one reason code for the decoders (lib/decode), the packet parser
 * (lib/pkt) and per-exporter accounting (lib/exporter, which counts them per exporter). Functions
 * that parse wire data return a negative reason; every reason has a counter wherever it is
 * counted (nm_decode_stats.err, nm_exp_entry.err), indexed by this enum.
 *
 * Cost: nm_decode_err_name() is a table lookup. Any thread.
 */

enum nm_decode_err {
	NM_DECODE_OK = 0,
	NM_DECODE_ERR_TRUNCATED,     /* shorter than its header or its own length fields say */
	NM_DECODE_ERR_BAD_VERSION,   /* version field is not the protocol's */
	NM_DECODE_ERR_BAD_COUNT,     /* record count out of range for the protocol or the length */
	NM_DECODE_ERR_BAD_LENGTH,    /* a set/sample/record length that is impossible */
	NM_DECODE_ERR_UNKNOWN_PROTO, /* payload is none of the four protocols */
	NM_DECODE_ERR_UNKNOWN_TEMPLATE, /* v9/IPFIX data set whose template is not known (yet) */
	NM_DECODE_ERR_BAD_TEMPLATE,	/* template that cannot be compiled (bad length, too many
					   fields) */
	NM_DECODE_ERR_TEMPLATE_LIMIT,	/* template dropped: a template cache limit was reached */
	NM_DECODE_ERR_UNSUPPORTED, /* well-formed but not something we decode (counted, skipped) */
	NM_DECODE_ERR_BAD_ADDRESS, /* sFlow agent address type or similar enum out of range */
	NM_DECODE_ERR_BAD_PACKET,  /* sampled packet header that cannot be parsed */
	NM_DECODE_ERR_MAX,
};

/* Short lowercase names for counters and summaries ("truncated", "bad_version", ...). */
const char *nm_decode_err_name(enum nm_decode_err err);

#endif /* NM_REASON_H */
