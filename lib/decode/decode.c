/* SPDX-License-Identifier: BSD-3-Clause */
#include <string.h>

#include "decode.h"
#include "../base/rd.h"
#include "../exporter/exporter.h"

static void
proto_add(struct nm_proto_stats *dst, const struct nm_proto_stats *src)
{
	dst->datagrams += src->datagrams;
	dst->records += src->records;
	dst->bad += src->bad;
}

void
nm_decode_stats_add(struct nm_decode_stats *dst, const struct nm_decode_stats *src)
{
	unsigned int i;

	proto_add(&dst->nf5, &src->nf5);
	proto_add(&dst->nf9, &src->nf9);
	proto_add(&dst->ipfix, &src->ipfix);
	proto_add(&dst->sflow, &src->sflow);
	dst->unknown += src->unknown;
	dst->sflow_flow_samples += src->sflow_flow_samples;
	dst->sflow_counter_samples += src->sflow_counter_samples;
	dst->templates += src->templates;
	dst->template_withdrawals += src->template_withdrawals;
	dst->options_records += src->options_records;
	dst->pending_queued += src->pending_queued;
	dst->pending_decoded += src->pending_decoded;
	dst->pending_dropped += src->pending_dropped;
	for (i = 0; i < NM_DECODE_ERR_MAX; i++)
		dst->err[i] += src->err[i];
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
	d->stats->unknown++;
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
	uint64_t errs[NM_DECODE_ERR_MAX], recs;
	unsigned int i;
	int ret;

	memset(&d->info, 0, sizeof(d->info));
	if (d->exp == NULL)
		return dispatch(d, buf, len, meta, out);
	/* The configured rate of the datagram's source (sFlow also checks its agent address). */
	d->rate_override = nm_exp_override(d->exp, meta->exporter);
	memcpy(errs, d->stats->err, sizeof(errs));
	recs = records_of(d->stats);
	ret = dispatch(d, buf, len, meta, out);
	d->info.records = records_of(d->stats) - recs;
	for (i = 0; i < NM_DECODE_ERR_MAX; i++)
		errs[i] = d->stats->err[i] - errs[i];
	nm_exp_account(d->exp, &d->info, meta, ret, errs);
	d->rate_override = 0;
	return ret;
}
