/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * sFlow version 5 (sflow.org, "sFlow Version 5", July 2004): an XDR datagram header (agent
 * address, sequence number, uptime, sample count) followed by samples, each a (tag, length,
 * body). Flow samples (compact format 1, expanded format 3) hold flow records, again
 * (tag, length, body); counter samples (2, 4) are counted and skipped. One flow sample becomes
 * exactly one flow record: 1 packet of the sampled frame's length, scaled by the sampling rate
 * downstream.
 *
 * Every length and count is hostile: a loop over samples or records consumes at least 8 bytes per
 * turn, so its length bounds it, never the count the wire claims.
 *
 * Partial datagrams: samples are decoded in order and each flow sample's record is committed to
 * the batch as soon as the sample is complete. When a later sample turns out malformed, the
 * datagram is counted bad and the function returns the negative reason, but the records already
 * committed from the good samples before it stay in the batch (and in stats->sflow.records): they
 * were well-formed, inside their own lengths, and an agent's later bug does not make them false.
 */
#include "decode.h"
#include "../base/rd.h"
#include "../exporter/exporter.h"
#include "../pkt/pkt.h"

#define SFLOW_VERSION 5

/* Sample and record tags: enterprise << 12 | format; enterprise 0 is sflow.org's. */
#define SF_FLOW_SAMPLE 1
#define SF_COUNTER_SAMPLE 2
#define SF_FLOW_SAMPLE_EXP 3
#define SF_COUNTER_SAMPLE_EXP 4

#define SF_REC_RAW_HEADER 1
#define SF_REC_ETHERNET 2
#define SF_REC_IPV4 3
#define SF_REC_IPV6 4
#define SF_REC_EXT_SWITCH 1001
#define SF_REC_EXT_ROUTER 1002
#define SF_REC_EXT_GATEWAY 1003

/* header_protocol of the raw packet header record (SFLHeader_protocol). */
#define SF_HDR_ETHERNET 1
#define SF_HDR_IPV4 11
#define SF_HDR_IPV6 12

#define SF_ADDR_IPV4 1
#define SF_ADDR_IPV6 2

/* Interface encoding (sFlow v5, "interface"): 2-bit format, 30-bit value. */
#define SF_IF_FORMAT_SINGLE 0
#define SF_IF_FORMAT_DISCARD 1
/* forwardingStatus (RFC 7270): 128 is "dropped, unknown reason". */
#define FWD_STATUS_DROPPED 128

/* A bounded cursor over [p, end). */
struct cur {
	const uint8_t *p;
	const uint8_t *end;
};

static inline size_t
cur_left(const struct cur *c)
{
	return (size_t)(c->end - c->p);
}

/* XDR pads opaque data to 4 bytes. */
static inline size_t
xdr_pad(uint32_t n)
{
	return ((size_t)n + 3) & ~(size_t)3;
}

/*
 * Split the next (tag, length, body) element off c into body. A length that runs past the parent
 * is impossible (BAD_LENGTH); fewer than 8 bytes for the tag and length is a cut datagram.
 */
static int
next_elem(struct cur *c, uint32_t *tag, struct cur *body)
{
	uint32_t l;

	if (cur_left(c) < 8)
		return -NM_DECODE_ERR_TRUNCATED;
	*tag = nm_rd32(c->p);
	l = nm_rd32(c->p + 4);
	c->p += 8;
	if (xdr_pad(l) > cur_left(c))
		return -NM_DECODE_ERR_BAD_LENGTH;
	body->p = c->p;
	body->end = c->p + l;
	c->p += xdr_pad(l);
	return 0;
}

/* An sFlow address (type, then 4 or 16 bytes) at c, stored IPv4-mapped. */
static int
rd_addr(struct cur *c, uint8_t dst[NM_ADDR_LEN])
{
	uint32_t type;

	if (cur_left(c) < 4)
		return -NM_DECODE_ERR_BAD_LENGTH;
	type = nm_rd32(c->p);
	c->p += 4;
	switch (type) {
	case SF_ADDR_IPV4:
		if (cur_left(c) < 4)
			return -NM_DECODE_ERR_BAD_LENGTH;
		nm_addr_from_v4(dst, c->p);
		c->p += 4;
		return 0;
	case SF_ADDR_IPV6:
		if (cur_left(c) < 16)
			return -NM_DECODE_ERR_BAD_LENGTH;
		memcpy(dst, c->p, 16);
		c->p += 16;
		return 0;
	default:
		return -NM_DECODE_ERR_BAD_ADDRESS;
	}
}

/* What the records of one flow sample have told us so far (one byte: cleared with one store). */
struct sample_state {
	uint8_t have_header; /* a raw packet header record filled bytes and L2-L4 */
	uint8_t have_ip;     /* a sampled IPv4/IPv6 record filled them */
	uint8_t have_router; /* next_hop came from the extended router record */
};

static int
rec_raw_header(struct nm_decoder *d, struct cur *b, struct nm_flow_rec *rec, struct sample_state *s)
{
	struct nm_flow_key *k = &rec->key;
	uint32_t proto, frame_len, hdr_len;
	int rc;

	if (cur_left(b) < 16)
		return -NM_DECODE_ERR_BAD_LENGTH;
	proto = nm_rd32(b->p);
	frame_len = nm_rd32(b->p + 4);
	/* b->p + 8 is "stripped", the bytes removed before the header was taken (FCS...). */
	hdr_len = nm_rd32(b->p + 12);
	b->p += 16;
	if (hdr_len > cur_left(b))
		return -NM_DECODE_ERR_BAD_LENGTH;

	/*
	 * The sampled header describes the packet better than a sampled IPv4/IPv6 record (its frame
	 * length counts L2, as tshark and the truth files do), so it wins whichever comes first:
	 * forget what a sampled IP record said before parsing.
	 */
	rec->bytes = frame_len;
	if (s->have_ip) {
		memset(k->src_addr, 0, sizeof(k->src_addr));
		memset(k->dst_addr, 0, sizeof(k->dst_addr));
		k->src_port = k->dst_port = 0;
		k->proto = k->ip_tos = k->tcp_flags = 0;
		k->etype = 0;
	}
	switch (proto) {
	case SF_HDR_ETHERNET:
		rc = nm_pkt_parse_eth(b->p, hdr_len, k);
		break;
	case SF_HDR_IPV4:
	case SF_HDR_IPV6:
		rc = nm_pkt_parse_ip(b->p, hdr_len, k);
		break;
	default:
		/* Token ring, FDDI, PPP...: the counters are still right. */
		rc = 0;
		break;
	}
	/*
	 * A header we cannot parse still is one sampled packet of frame_len bytes: keep the
	 * record, note the reason (not a rejected datagram, so sflow.bad stays).
	 */
	if (rc == -NM_DECODE_ERR_BAD_PACKET)
		nm_decode_count_err(d, NM_DECODE_ERR_BAD_PACKET);
	s->have_header = 1;
	return 0;
}

static int
rec_sampled_ip(struct cur *b, struct nm_flow_rec *rec, struct sample_state *s, int v6)
{
	size_t alen = v6 ? 16 : 4;
	const uint8_t *p = b->p;
	struct nm_flow_key *k = &rec->key;

	/* length, protocol, src, dst, src_port, dst_port, tcp_flags, tos/priority */
	if (cur_left(b) < 8 + 2 * alen + 16)
		return -NM_DECODE_ERR_BAD_LENGTH;
	if (s->have_header)
		return 0;
	rec->bytes = nm_rd32(p);
	k->proto = (uint8_t)nm_rd32(p + 4);
	p += 8;
	if (v6) {
		memcpy(k->src_addr, p, 16);
		memcpy(k->dst_addr, p + 16, 16);
	} else {
		nm_addr_from_v4(k->src_addr, p);
		nm_addr_from_v4(k->dst_addr, p + 4);
	}
	p += 2 * alen;
	k->src_port = (uint16_t)nm_rd32(p);
	k->dst_port = (uint16_t)nm_rd32(p + 4);
	k->tcp_flags = (uint8_t)nm_rd32(p + 8);
	k->ip_tos = (uint8_t)nm_rd32(p + 12);
	k->etype = v6 ? 0x86dd : 0x0800;
	s->have_ip = 1;
	return 0;
}

static int
rec_ext_gateway(struct cur *b, struct nm_flow_key *k, struct sample_state *s)
{
	uint8_t nh[NM_ADDR_LEN];
	uint32_t as, src_as, nseg, i;
	uint32_t first_as = 0, last_as = 0;
	int have_path = 0, rc;

	rc = rd_addr(b, nh);
	if (rc < 0)
		return rc;
	/* as, src_as, src_peer_as, number of dst_as_path segments */
	if (cur_left(b) < 16)
		return -NM_DECODE_ERR_BAD_LENGTH;
	as = nm_rd32(b->p);
	src_as = nm_rd32(b->p + 4);
	nseg = nm_rd32(b->p + 12);
	b->p += 16;
	/* Each segment needs 8 bytes, so the record's length bounds the loop. */
	for (i = 0; i < nseg; i++) {
		uint32_t n;

		if (cur_left(b) < 8)
			return -NM_DECODE_ERR_BAD_LENGTH;
		n = nm_rd32(b->p + 4);
		b->p += 8;
		if (n > cur_left(b) / 4)
			return -NM_DECODE_ERR_BAD_LENGTH;
		if (n > 0) {
			if (!have_path)
				first_as = nm_rd32(b->p);
			last_as = nm_rd32(b->p + 4 * ((size_t)n - 1));
			have_path = 1;
		}
		b->p += 4 * (size_t)n;
	}
	/* Communities and local_pref follow; we export neither. */

	/*
	 * goflow2's semantics: the destination AS ends the path, the next-hop AS starts it; without
	 * a path the router's own AS is both source and destination. The gateway's next hop is the
	 * BGP next hop: it fills next_hop only when no extended router record gave the IGP one.
	 */
	if (have_path) {
		k->dst_as = last_as;
		k->next_hop_as = first_as;
	} else {
		k->dst_as = as;
	}
	k->src_as = src_as != 0 ? src_as : as;
	if (!s->have_router)
		memcpy(k->next_hop, nh, NM_ADDR_LEN);
	return 0;
}

static int
rec_ext_router(struct cur *b, struct nm_flow_key *k, struct sample_state *s)
{
	int rc = rd_addr(b, k->next_hop);

	if (rc < 0)
		return rc;
	if (cur_left(b) < 8)
		return -NM_DECODE_ERR_BAD_LENGTH;
	k->src_net = (uint8_t)nm_rd32(b->p);
	k->dst_net = (uint8_t)nm_rd32(b->p + 4);
	s->have_router = 1;
	return 0;
}

static int
flow_record(struct nm_decoder *d, uint32_t tag, struct cur *b, struct nm_flow_rec *rec,
	    struct sample_state *s)
{
	struct nm_flow_key *k = &rec->key;

	switch (tag) {
	case SF_REC_RAW_HEADER:
		return rec_raw_header(d, b, rec, s);
	case SF_REC_IPV4:
		return rec_sampled_ip(b, rec, s, 0);
	case SF_REC_IPV6:
		return rec_sampled_ip(b, rec, s, 1);
	case SF_REC_EXT_SWITCH:
		/* src_vlan, src_priority, dst_vlan, dst_priority */
		if (cur_left(b) < 16)
			return -NM_DECODE_ERR_BAD_LENGTH;
		k->src_vlan = nm_rd32(b->p);
		k->dst_vlan = nm_rd32(b->p + 8);
		return 0;
	case SF_REC_EXT_ROUTER:
		return rec_ext_router(b, k, s);
	case SF_REC_EXT_GATEWAY:
		return rec_ext_gateway(b, k, s);
	default:
		/* Sampled Ethernet (its fields are in the header record too), vendor records... */
		return 0;
	}
}

/* The interface value of the 2-bit format + 30-bit value encoding; 0 unless one ifIndex. */
static uint32_t
if_value(uint32_t format, uint32_t value)
{
	return format == SF_IF_FORMAT_SINGLE ? value : 0;
}

static int
flow_sample(struct nm_decoder *d, struct cur *b, int expanded, const struct nm_flow_rec *base,
	    struct nm_rec_batch *out)
{
	uint32_t rate, in_fmt, in_val, out_fmt, out_val, nrec, i;
	struct sample_state s = {0};
	struct nm_flow_rec *rec;
	struct cur c;
	const uint8_t *p = b->p;
	size_t fixed = expanded ? 44 : 32;
	int rc;

	/*
	 * compact:  seq, source_id, rate, pool, drops, input, output, nrec
	 * expanded: seq, source_id_type, source_id_index, rate, pool, drops,
	 *           input_format, input_value, output_format, output_value, nrec
	 */
	if (cur_left(b) < fixed)
		return -NM_DECODE_ERR_BAD_LENGTH;
	if (expanded) {
		rate = nm_rd32(p + 12);
		in_fmt = nm_rd32(p + 24);
		in_val = nm_rd32(p + 28);
		out_fmt = nm_rd32(p + 32);
		out_val = nm_rd32(p + 36);
	} else {
		uint32_t in = nm_rd32(p + 20), outif = nm_rd32(p + 24);

		rate = nm_rd32(p + 8);
		in_fmt = in >> 30;
		in_val = in & 0x3fffffff;
		out_fmt = outif >> 30;
		out_val = outif & 0x3fffffff;
	}
	nrec = nm_rd32(p + fixed - 4);
	b->p += fixed;

	/*
	 * Not committed until every record is read: a sample that fails is never seen. The slot
	 * starts as the datagram's base record (its shared fields, 1 packet, the rest zero).
	 */
	rec = nm_rec_batch_slot_from(out, base);
	rec->key.sampling_rate = nm_decode_rate(d, rate);
	rec->key.in_if = if_value(in_fmt, in_val);
	rec->key.out_if = if_value(out_fmt, out_val);
	if (out_fmt == SF_IF_FORMAT_DISCARD)
		rec->key.forwarding_status = FWD_STATUS_DROPPED;

	/*
	 * The records, through a cursor of our own: b's is in memory, and every byte stored into
	 * the record may alias it, so walking b itself reloads it after each store.
	 */
	c = *b;
	for (i = 0; i < nrec; i++) {
		struct cur rb;
		uint32_t tag;

		rc = next_elem(&c, &tag, &rb);
		if (rc < 0)
			return -NM_DECODE_ERR_BAD_LENGTH; /* runs past its sample */
		rc = flow_record(d, tag, &rb, rec, &s);
		if (rc < 0)
			return rc;
	}
	b->p = c.p;
	nm_rec_batch_commit(out);
	return 1;
}

/* Generic interface counters (counters_sample record 0:1, 88 bytes) into c. */
static void
rd_generic_if(const uint8_t *p, struct nm_exp_ifcounters *c)
{
	c->if_index = nm_rd32(p);
	c->if_type = nm_rd32(p + 4);
	c->if_speed = nm_rd64(p + 8);
	c->if_direction = nm_rd32(p + 16);
	c->if_status = nm_rd32(p + 20);
	c->in_octets = nm_rd64(p + 24);
	c->in_ucast = nm_rd32(p + 32);
	c->in_mcast = nm_rd32(p + 36);
	c->in_bcast = nm_rd32(p + 40);
	c->in_discards = nm_rd32(p + 44);
	c->in_errors = nm_rd32(p + 48);
	c->in_unknown = nm_rd32(p + 52);
	c->out_octets = nm_rd64(p + 56);
	c->out_ucast = nm_rd32(p + 64);
	c->out_mcast = nm_rd32(p + 68);
	c->out_bcast = nm_rd32(p + 72);
	c->out_discards = nm_rd32(p + 76);
	c->out_errors = nm_rd32(p + 80);
	c->promiscuous = nm_rd32(p + 84);
}

#define SF_CTR_GENERIC_IF 1
#define SF_CTR_GENERIC_IF_LEN 88

/*
 * Counter samples are not flows. Their records are walked to catch impossible lengths; generic
 * interface counters are kept per (agent, ifIndex) in d->exp (telemetry shows them).
 */
static int
counter_sample(struct nm_decoder *d, struct cur *b, int expanded, const struct nm_flow_key *dg)
{
	size_t fixed = expanded ? 16 : 12; /* seq, source id (1 or 2 words), nrec */
	uint32_t nrec, i, seq;

	if (cur_left(b) < fixed)
		return -NM_DECODE_ERR_BAD_LENGTH;
	seq = nm_rd32(b->p);
	nrec = nm_rd32(b->p + fixed - 4);
	b->p += fixed;
	for (i = 0; i < nrec; i++) {
		struct cur rb;
		uint32_t tag;

		if (next_elem(b, &tag, &rb) < 0)
			return -NM_DECODE_ERR_BAD_LENGTH;
		if (tag == SF_CTR_GENERIC_IF && cur_left(&rb) >= SF_CTR_GENERIC_IF_LEN &&
		    d->exp != NULL) {
			struct nm_exp_ifcounters c;

			rd_generic_if(rb.p, &c);
			nm_exp_iface_update(d->exp, dg->sampler_addr, dg->time_received, seq, &c);
		}
	}
	return 0;
}

int
nm_sflow_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
		const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	struct nm_proto_stats *ps = &d->stats->sflow;
	struct cur c = {buf, buf + len};
	struct nm_flow_rec base;
	struct nm_flow_key *dg = &base.key;
	uint32_t nsamples, i, flow_samples = 0;
	int produced = 0, rc;

	nm_ctr_inc(&ps->datagrams);
	if (len < 8)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	if (nm_rd32(buf) != SFLOW_VERSION)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_VERSION);
	c.p += 4;

	/* The fields every record of the datagram shares: each flow sample's record starts so. */
	nm_rec_clear(&base);
	base.packets = 1;
	dg->type = NM_FLOW_SFLOW5;
	dg->time_received = meta->time_received;
	d->info.type = NM_FLOW_SFLOW5;
	d->info.version = 5;
	rc = rd_addr(&c, dg->sampler_addr);
	if (rc == -NM_DECODE_ERR_BAD_ADDRESS)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_BAD_ADDRESS);
	if (rc < 0 || cur_left(&c) < 16)
		return nm_decode_fail(d, ps, NM_DECODE_ERR_TRUNCATED);
	/* c.p: sub_agent_id, sequence_number, uptime, num_samples */
	dg->sequence_num = nm_rd32(c.p + 4);
	nsamples = nm_rd32(c.p + 12);
	/* The agent is the exporter (it may send through another address) only when its UDP
	 * source may speak for it (lib/exporter, nm_exp_agent_check()): otherwise anybody who
	 * reaches the port could write rows, rates and interface counters for any router. A
	 * mismatch goes to the UDP source, counted. Its sequence counts datagrams of one
	 * sub-agent. */
	if (d->exp != NULL &&
	    !nm_exp_agent_check_memo(d->exp, &d->agent_memo, dg->sampler_addr, meta->exporter)) {
		d->stats->sflow_agent_mismatch++;
		memcpy(dg->sampler_addr, meta->exporter, NM_ADDR_LEN);
	}
	memcpy(d->info.agent, dg->sampler_addr, NM_ADDR_LEN);
	d->info.has_agent = 1;
	d->info.domain = nm_rd32(c.p);
	d->info.seq = dg->sequence_num;
	d->info.seq_units = d->info.seq_units_alt = 1;
	d->info.has_seq = 1;
	if (d->exp != NULL && memcmp(dg->sampler_addr, meta->exporter, NM_ADDR_LEN) != 0) {
		uint64_t ov = nm_exp_override(d->exp, dg->sampler_addr);

		if (ov != 0)
			d->rate_override = ov;
	}
	c.p += 16;

	for (i = 0; i < nsamples; i++) {
		struct cur sb;
		uint32_t tag;

		rc = next_elem(&c, &tag, &sb);
		if (rc < 0)
			goto bad;
		switch (tag) {
		case SF_FLOW_SAMPLE:
		case SF_FLOW_SAMPLE_EXP:
			/* Counted once per datagram below (shared counters: one store, not one
			 * per sample). */
			flow_samples++;
			rc = flow_sample(d, &sb, tag == SF_FLOW_SAMPLE_EXP, &base, out);
			if (rc < 0)
				goto bad;
			produced += rc;
			break;
		case SF_COUNTER_SAMPLE:
		case SF_COUNTER_SAMPLE_EXP:
			nm_ctr_inc(&d->stats->sflow_counters_samples);
			rc = counter_sample(d, &sb, tag == SF_COUNTER_SAMPLE_EXP, dg);
			if (rc < 0)
				goto bad;
			break;
		default:
			/* Vendor samples, discard notifications...: skipped by their length. */
			break;
		}
	}
	nm_ctr_add(&d->stats->sflow_flow_samples, flow_samples);
	nm_ctr_add(&ps->records, (uint64_t)produced);
	return produced;

bad:
	/* The records committed before the bad sample stay in the batch; see the file comment. */
	nm_ctr_add(&d->stats->sflow_flow_samples, flow_samples);
	nm_ctr_add(&ps->records, (uint64_t)produced);
	return nm_decode_fail(d, ps, (enum nm_decode_err) - rc);
}
