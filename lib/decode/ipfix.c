/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * IPFIX (RFC 7011): a 16-byte message header (version 10, message length, export time,
 * sequence, observation domain) and sets: templates (2), options templates (3), data (>= 256).
 * The sets are decoded by the machinery shared with NetFlow v9 (ipfix_prog.c).
 */
#include "decode.h"
#include "ipfix_prog.h"
#include "../base/rd.h"

#define IPFIX_HDR_LEN 16

int
nm_ipfix_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	struct nm_proto_stats *ps = &d->stats->ipfix;
	struct nm_ipfix_hdr h = {0};
	size_t mlen;
	int ret;

	nm_ctr_inc(&ps->datagrams);
	if (len < IPFIX_HDR_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	if (nm_rd16(buf) != 10)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_VERSION);
	d->info.type = NM_FLOW_IPFIX;
	d->info.version = 10;
	d->info.domain = nm_rd32(buf + 12);
	mlen = nm_rd16(buf + 2);
	if (mlen < IPFIX_HDR_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_LENGTH);
	if (mlen > len)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	h.meta = meta;
	h.export_secs = nm_rd32(buf + 4);
	h.sys_uptime_ms = 0;
	h.seq = nm_rd32(buf + 8);
	h.domain = nm_rd32(buf + 12);
	h.proto = NM_TMPL_IPFIX;
	/* Bytes after the message length are not part of the message (UDP carries one). */
	ret = nm_ipfix_walk_sets(d, ps, &h, buf + IPFIX_HDR_LEN, buf + mlen, out);
	/*
	 * The sequence number counts the Data Records sent before this message (RFC 7011 3.1):
	 * the next message should carry it plus the data records read here (some exporters leave
	 * options records out: the alternative count). Data sets held for their template are not
	 * counted yet, so the expectation is then unknown (seq_unsure).
	 */
	d->info.has_seq = 1;
	d->info.seq = h.seq;
	d->info.seq_units = d->info.data_records;
	d->info.seq_units_alt = d->info.data_records - d->info.options_records;
	return ret;
}
