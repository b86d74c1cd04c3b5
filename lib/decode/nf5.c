/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * NetFlow v5: a 24-byte header and up to 30 fixed 48-byte records (Cisco's NetFlow v5 export
 * format). The header carries the export time, the exporter's uptime and the sampling interval.
 */
#include "decode.h"
#include "../base/rd.h"

#define NF5_HDR_LEN 24
#define NF5_REC_LEN 48
#define NF5_MAX_RECS 30

int
nm_nf5_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
	      const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	struct nm_proto_stats *ps = &d->stats->nf5;
	uint32_t uptime_ms, unix_secs, seq;
	uint16_t count, sampling;
	uint64_t rate, now_ms;
	const uint8_t *r;
	unsigned int i;

	nm_ctr_inc(&ps->datagrams);
	if (len < NF5_HDR_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	if (nm_rd16(buf) != 5)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_VERSION);
	d->info.type = NM_FLOW_NF5;
	d->info.version = 5;
	d->info.domain = (uint32_t)buf[20] << 8 | buf[21]; /* engine type, engine id */
	count = nm_rd16(buf + 2);
	/*
	 * A count that does not match the payload means the header cannot be trusted; decoding the
	 * records that happen to be there would report traffic with invented totals, so the whole
	 * datagram is rejected (logstash's netflow5_test_invalid01/02 are exactly this).
	 */
	if (count == 0 || count > NF5_MAX_RECS)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_COUNT);
	if (len < NF5_HDR_LEN + (size_t)count * NF5_REC_LEN)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);

	uptime_ms = nm_rd32(buf + 4);
	unix_secs = nm_rd32(buf + 8);
	seq = nm_rd32(buf + 16);
	sampling = nm_rd16(buf + 22);
	/* Top two bits are the sampling mode, the low 14 the interval; 0 means not sampled/unknown.
	 */
	rate = nm_decode_rate(d, sampling & 0x3fff);
	/* That counted one record as defaulted or overridden; the other count - 1 are too. */
	if (d->info.rate_default != 0)
		d->info.rate_default += count - 1u;
	else if (d->info.rate_override != 0)
		d->info.rate_override += count - 1u;
	d->info.has_seq = 1;
	d->info.seq = seq; /* flow_sequence: flows exported before this datagram */
	d->info.seq_units = d->info.seq_units_alt = count;
	now_ms = (uint64_t)unix_secs * 1000 + nm_rd32(buf + 12) / 1000000;

	for (i = 0, r = buf + NF5_HDR_LEN; i < count; i++, r += NF5_REC_LEN) {
		struct nm_flow_rec *rec = nm_rec_batch_slot(out);
		struct nm_flow_key *k = &rec->key;
		uint32_t first = nm_rd32(r + 24), last = nm_rd32(r + 28);

		k->type = NM_FLOW_NF5;
		k->time_received = meta->time_received;
		k->sequence_num = seq;
		k->sampling_rate = rate;
		memcpy(k->sampler_addr, meta->exporter, NM_ADDR_LEN);
		nm_addr_from_v4(k->src_addr, r);
		nm_addr_from_v4(k->dst_addr, r + 4);
		nm_addr_from_v4(k->next_hop, r + 8);
		k->in_if = nm_rd16(r + 12);
		k->out_if = nm_rd16(r + 14);
		rec->packets = nm_rd32(r + 16);
		rec->bytes = nm_rd32(r + 20);
		/* First/Last are sysUptime in ms; uptime_ms is "now" on the same clock. */
		k->time_flow_start = (now_ms - (uint64_t)(uint32_t)(uptime_ms - first)) / 1000;
		k->time_flow_end = (now_ms - (uint64_t)(uint32_t)(uptime_ms - last)) / 1000;
		k->src_port = nm_rd16(r + 32);
		k->dst_port = nm_rd16(r + 34);
		k->tcp_flags = r[37];
		k->proto = r[38];
		k->ip_tos = r[39];
		k->src_as = nm_rd16(r + 40);
		k->dst_as = nm_rd16(r + 42);
		k->src_net = r[44];
		k->dst_net = r[45];
		k->etype = 0x0800;
		nm_rec_batch_commit(out);
	}
	nm_ctr_add(&ps->records, count);
	return count;
}
