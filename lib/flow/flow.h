/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_FLOW_H
#define NM_FLOW_H

/*
 * The flow record: what every decoder (NetFlow v5/v9, IPFIX, sFlow v5, port mirror) produces and
 * what the per-second aggregation table, the encoders and the Kafka sink consume.
 *
 * A record is a key (every FlowMessage dimension plus the second it was received) and the
 * counters that aggregation adds up. The key is hashed and compared as raw bytes, so it is laid
 * out without implicit padding and every producer starts from a zeroed record
 * (nm_rec_batch_slot() does that), or from a copy of one it filled from zero
 * (nm_rec_batch_slot_from()).
 *
 * Field names follow NetMeta's FlowMessage (proto/flow.proto); the comment after each field is
 * its protobuf field number.
 *
 * Cost: everything here is inline and allocates nothing; nm_rec_batch_slot(),
 * nm_rec_batch_slot_from() and nm_rec_batch_flush() cost what the batch owner's flush callback
 * costs when they call it.
 */

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "../base/addr.h"

enum nm_flow_type {
	NM_FLOW_UNKNOWN = 0,
	NM_FLOW_SFLOW5 = 1,
	NM_FLOW_NF5 = 2,
	NM_FLOW_NF9 = 3,
	NM_FLOW_IPFIX = 4,
};

struct nm_flow_key {
	/* 64-bit fields first, then 32, 16, 8: no implicit padding. */
	uint64_t time_received;	  /* 2: seconds since the epoch */
	uint64_t sampling_rate;	  /* 3 */
	uint64_t time_flow_start; /* 38: seconds since the epoch */
	uint64_t time_flow_end;	  /* 5 */
	uint64_t src_mac;	  /* 27: MAC in the low 48 bits, network order as an integer */
	uint64_t dst_mac;	  /* 28 */

	uint8_t sampler_addr[NM_ADDR_LEN]; /* 11: exporter / agent address */
	uint8_t src_addr[NM_ADDR_LEN];	   /* 6 */
	uint8_t dst_addr[NM_ADDR_LEN];	   /* 7 */
	uint8_t next_hop[NM_ADDR_LEN];	   /* 12 */

	uint32_t sequence_num;		/* 4 */
	uint32_t in_if;			/* 18 */
	uint32_t out_if;		/* 19 */
	uint32_t src_as;		/* 14 */
	uint32_t dst_as;		/* 15 */
	uint32_t next_hop_as;		/* 13 */
	uint32_t src_vlan;		/* 33 */
	uint32_t dst_vlan;		/* 34 */
	uint32_t vlan_id;		/* 29 */
	uint32_t ingress_vrf_id;	/* 39 */
	uint32_t egress_vrf_id;		/* 40 */
	uint32_t ipv6_flow_label;	/* 37 */
	uint32_t fragment_id;		/* 35 */
	uint32_t fragment_offset;	/* 36 */
	uint32_t observation_domain_id; /* 70 */
	uint32_t mpls_label[3];		/* 56, 58, 60: first three labels (20-bit values) */
	uint32_t mpls_last_label;	/* 62 */

	uint16_t etype;	   /* 30 */
	uint16_t src_port; /* 21 */
	uint16_t dst_port; /* 22 */

	uint8_t type;		   /* 1: enum nm_flow_type */
	uint8_t proto;		   /* 20 */
	uint8_t ip_tos;		   /* 23 */
	uint8_t ip_ttl;		   /* 25 */
	uint8_t tcp_flags;	   /* 26 */
	uint8_t icmp_type;	   /* 31 */
	uint8_t icmp_code;	   /* 32 */
	uint8_t forwarding_status; /* 24 */
	uint8_t src_net;	   /* 16 */
	uint8_t dst_net;	   /* 17 */
	uint8_t flow_direction;	   /* 42: 0 ingress, 1 egress */
	uint8_t bi_flow_direction; /* 41 */
	uint8_t mpls_count;	   /* 54; HasMPLS (53) is mpls_count > 0 */
	uint8_t mpls_ttl[3];	   /* 55, 57, 59 */
	uint8_t mpls_last_ttl;	   /* 61 */
	uint8_t pad_[5];	   /* explicit, always zero */
};

_Static_assert(sizeof(struct nm_flow_key) == 216, "nm_flow_key has implicit padding");

struct nm_flow_rec {
	struct nm_flow_key key;
	uint64_t bytes;	  /* 9 */
	uint64_t packets; /* 10 */
};

/*
 * A batch of records a decoder writes into. The owner (RX worker, test, benchmark) provides the
 * storage and a flush callback that consumes recs[0..n) and is called when the batch is full;
 * decoders take a slot, fill it and commit it, so a record that fails half-way is never seen.
 *
 * Threading: a batch belongs to one thread.
 */
struct nm_rec_batch;
typedef void (*nm_rec_flush_fn)(struct nm_rec_batch *b, void *ctx);

struct nm_rec_batch {
	struct nm_flow_rec *recs;
	unsigned int n;
	unsigned int cap;
	nm_rec_flush_fn flush;
	void *ctx;
};

/*
 * Copy a whole record with 32-byte unaligned vector moves (8 loads and stores). A 232-byte
 * memset() or struct copy compiles to a call into libc (memset/memcpy, ~25-36 instructions and
 * a branchy size dispatch) per record, which was 5-9 % of a decoder's instructions per record
 * (callgrind on bench_decode).
 */
typedef uint8_t nm_rec_v32_ __attribute__((vector_size(32), aligned(1), may_alias));

static inline void
nm_rec_copy(struct nm_flow_rec *dst, const struct nm_flow_rec *src)
{
	nm_rec_v32_ *d = (nm_rec_v32_ *)(void *)dst;
	const nm_rec_v32_ *s = (const nm_rec_v32_ *)(const void *)src;
	uint64_t tail;
	unsigned int i;

	_Static_assert(sizeof(struct nm_flow_rec) % 8 == 0, "nm_flow_rec is whole words");
	for (i = 0; i < sizeof(*dst) / 32; i++)
		d[i] = s[i];
	if (sizeof(*dst) % 32 != 0) {
		/* The last 8..24 bytes: one overlapping vector would do, but words are simpler. */
		for (i = sizeof(*dst) / 32 * 32; i < sizeof(*dst); i += 8) {
			memcpy(&tail, (const uint8_t *)src + i, 8);
			memcpy((uint8_t *)dst + i, &tail, 8);
		}
	}
}

/* Zero a whole record with vector stores (see nm_rec_copy()). */
static inline void
nm_rec_clear(struct nm_flow_rec *r)
{
	nm_rec_v32_ *d = (nm_rec_v32_ *)(void *)r;
	const nm_rec_v32_ z = {0};
	const uint64_t zero = 0;
	unsigned int i;

	for (i = 0; i < sizeof(*r) / 32; i++)
		d[i] = z;
	for (i = sizeof(*r) / 32 * 32; i < sizeof(*r); i += 8)
		memcpy((uint8_t *)r + i, &zero, 8);
}

/* The next slot of b, flushing the batch first when it is full; not initialised. */
static inline struct nm_flow_rec *
nm_rec_batch_next_(struct nm_rec_batch *b)
{
	if (b->n == b->cap) {
		b->flush(b, b->ctx);
		b->n = 0;
	}
	return &b->recs[b->n];
}

/* A zeroed slot for the next record; flushes the batch first when it is full. */
static inline struct nm_flow_rec *
nm_rec_batch_slot(struct nm_rec_batch *b)
{
	struct nm_flow_rec *r = nm_rec_batch_next_(b);

	nm_rec_clear(r);
	return r;
}

/*
 * A slot for the next record that starts as a copy of *base (fields every record of a datagram
 * or data set shares, the rest zero) instead of zeros: one copy instead of a clear and the
 * per-record stores of the shared fields. Flushes the batch first when it is full.
 */
static inline struct nm_flow_rec *
nm_rec_batch_slot_from(struct nm_rec_batch *b, const struct nm_flow_rec *base)
{
	struct nm_flow_rec *r = nm_rec_batch_next_(b);

	nm_rec_copy(r, base);
	return r;
}

/* Make the slot returned by the last nm_rec_batch_slot() part of the batch. */
static inline void
nm_rec_batch_commit(struct nm_rec_batch *b)
{
	b->n++;
}

/* Hand the records in the batch to its consumer now. */
static inline void
nm_rec_batch_flush(struct nm_rec_batch *b)
{
	if (b->n > 0) {
		b->flush(b, b->ctx);
		b->n = 0;
	}
}

#endif /* NM_FLOW_H */
