/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "decode.h"
#include "../base/rd.h"
#include "../exporter/exporter.h"

#define NM_DECODE_PROTO_DESC(c, p, name_, kind_, unit_, flags_, text_, help_)                      \
	{.name = #name_ "_" #p,                                                                    \
	 .help = help_,                                                                            \
	 .unit = unit_,                                                                            \
	 .text = text_ ":" #p,                                                                     \
	 .off = offsetof(c, p.name_),                                                              \
	 .kind = NM_CTR_##kind_,                                                                   \
	 .flags = flags_},
#define NM_DECODE_PROTO(c, p, pname) NM_PROTO_CTRS(NM_DECODE_PROTO_DESC, c, p, pname)

const char *
nm_decode_err_elem(unsigned int i)
{
	return nm_decode_err_name((enum nm_decode_err)i);
}

static const struct nm_ctr_desc decode_desc[] = {
	NM_DECODE_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, NM_DECODE_PROTO, struct nm_decode_stats)};

const struct nm_ctr_set nm_decode_ctr_set =
	NM_CTR_SET("decode", "", "per RX lcore (struct nm_decoder.stats), written by that lcore",
		   SINGLE_WRITER, struct nm_decode_stats, decode_desc);

void
nm_decode_stats_add(struct nm_decode_stats *dst, const struct nm_decode_stats *src)
{
	nm_ctr_sum(&nm_decode_ctr_set, dst, src);
}

static int
dispatch(struct nm_decoder *d, const uint8_t *buf, size_t len, const struct nm_dgram_meta *meta,
	 struct nm_rec_batch *out)
{
	/*
	 * NetFlow and IPFIX start with a 16-bit version; sFlow with a 32-bit version 5, whose first
	 * 16 bits are zero. Any port may carry any protocol, so the header decides.
	 */
	if (len >= 4 && nm_rd32(buf) == 5)
		return nm_sflow_decode(d, buf, len, meta, out);
	if (len >= 2) {
		switch (nm_rd16(buf)) {
		case 5:
			return nm_nf5_decode(d, buf, len, meta, out);
		case 9:
			return nm_nf9_decode(d, buf, len, meta, out);
		case 10:
			return nm_ipfix_decode(d, buf, len, meta, out);
		default:
			break;
		}
	}
	nm_ctr_inc(&d->stats->datagrams_unknown);
	return nm_decode_fail(d, NULL, NM_DECODE_ERR_UNKNOWN_PROTO);
}

static uint64_t
records_of(const struct nm_decode_stats *s)
{
	return s->nf5.records + s->nf9.records + s->ipfix.records + s->sflow.records;
}

int
nm_decode_datagram(struct nm_decoder *d, const uint8_t *buf, size_t len,
		   const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	uint64_t recs;
	int ret;

	memset(&d->info, 0, sizeof(d->info));
	if (d->dg_err_any) {
		/* A caller that decoded through a protocol decoder directly left a tally. */
		memset(d->dg_err, 0, sizeof(d->dg_err));
		d->dg_err_any = 0;
	}
	if (d->exp == NULL) {
		ret = dispatch(d, buf, len, meta, out);
		goto done;
	}
	/* The configured rate of the datagram's source (sFlow also checks its agent address). */
	d->rate_override = nm_exp_override(d->exp, meta->exporter);
	recs = records_of(d->stats);
	ret = dispatch(d, buf, len, meta, out);
	d->info.records = records_of(d->stats) - recs;
	/* The reasons this datagram counted: a clean one (the usual case) hands over none. */
	nm_exp_account_memo(d->exp, &d->exp_memo, &d->info, meta, ret,
			    d->dg_err_any ? d->dg_err : NULL);
	d->rate_override = 0;
done:
	if (d->dg_err_any) {
		memset(d->dg_err, 0, sizeof(d->dg_err));
		d->dg_err_any = 0;
	}
	return ret;
}
