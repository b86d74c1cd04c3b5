/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * NetFlow v9 (RFC 3954): a 20-byte header (version, count, sysUptime, unix secs, sequence,
 * source id) and flowsets: templates (0), options templates (1), data (>= 256). The sets are
 * decoded by the machinery shared with IPFIX (ipfix_prog.c).
 */
#include "decode.h"
#include "ipfix_prog.h"
#include "rd.h"

#define NF9_HDR_LEN 20

int
nm_nf9_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
	      const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	struct nm_proto_stats *ps = &d->stats->nf9;
	struct nm_ipfix_hdr h = {0};
	unsigned int count;
	int ret;

	ps->datagrams++;
	if (len < NF9_HDR_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	if (nm_rd16(buf) != 9)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_VERSION);
	/*
	 * The header's count (records of all kinds) does not bound the walk: exporters get it wrong
	 * often enough (some count flowsets), and the set lengths bound everything. A count below
	 * both the flowsets and the records actually read is a header that lies: counted as
	 * bad_count, but the data the set lengths vouch for is kept.
	 */
	count = nm_rd16(buf + 2);
	h.meta = meta;
	h.sys_uptime_ms = nm_rd32(buf + 4);
	h.export_secs = nm_rd32(buf + 8);
	h.seq = nm_rd32(buf + 12);
	h.domain = nm_rd32(buf + 16);
	h.proto = NM_TMPL_NF9;
	ret = nm_ipfix_walk_sets(d, ps, &h, buf + NF9_HDR_LEN, buf + len, out);
	if (count < h.n_sets && count < h.n_recs)
		d->stats->err[NM_DECODE_ERR_BAD_COUNT]++;
	return ret;
}
