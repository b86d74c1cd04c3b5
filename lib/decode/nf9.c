/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * NetFlow v9 (RFC 3954): a 20-byte header (version, count, sysUptime, unix secs, sequence,
 * source id) and flowsets: templates (0), options templates (1), data (>= 256). The sets are
 * decoded by the machinery shared with IPFIX (ipfix_prog.c).
 */
#include "decode.h"
#include "ipfix_prog.h"
#include "../base/rd.h"

#define NF9_HDR_LEN 20

/*
 * Flowsets in [p, end) as nm_ipfix_walk_sets() will walk them: each one whose 4-byte header and
 * length fit; the walk stops at a zero-filled tail or a malformed header (the walker reports it).
 */
static unsigned int
count_sets(const uint8_t *p, const uint8_t *end)
{
	unsigned int n = 0;

	while (end - p >= 4) {
		unsigned int slen = nm_rd16(p + 2);

		if (slen < 4 || (size_t)(end - p) < slen)
			break;
		n++;
		p += slen;
	}
	return n;
}

int
nm_nf9_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
	      const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	struct nm_proto_stats *ps = &d->stats->nf9;
	struct nm_ipfix_hdr h = {0};
	unsigned int count;

	nm_ctr_inc(&ps->datagrams);
	if (len < NF9_HDR_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	if (nm_rd16(buf) != 9)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_VERSION);
	/* The package sequence counts datagrams (RFC 3954 5.1). */
	d->info.type = NM_FLOW_NF9;
	d->info.version = 9;
	d->info.domain = nm_rd32(buf + 16);
	d->info.seq = nm_rd32(buf + 12);
	d->info.seq_units = d->info.seq_units_alt = 1;
	d->info.has_seq = 1;
	/*
	 * The header's count (RFC 3954 5.1: template, options and data records of the packet) does
	 * not bound the walk: exporters get it wrong often enough (many count flowsets instead),
	 * and the set lengths bound everything. But every exporter in the wild counts at least one
	 * per flowset, so a count below the number of flowsets fits neither reading: the header
	 * contradicts the body, and nothing says which of its records are the ones it announces
	 * (tshark decodes the first `count` flowsets, another decoder could pick others). Such a
	 * datagram is rejected whole, before any template of it is learnt, and counted as
	 * bad_count - as NetFlow v5 does with a count that does not match its payload. Checking
	 * it costs one walk over the flowset headers (a handful per datagram).
	 */
	count = nm_rd16(buf + 2);
	if (count < count_sets(buf + NF9_HDR_LEN, buf + len))
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_COUNT);
	h.meta = meta;
	h.sys_uptime_ms = nm_rd32(buf + 4);
	h.export_secs = nm_rd32(buf + 8);
	h.seq = nm_rd32(buf + 12);
	h.domain = nm_rd32(buf + 16);
	h.proto = NM_TMPL_NF9;
	return nm_ipfix_walk_sets(d, ps, &h, buf + NF9_HDR_LEN, buf + len, out);
}
