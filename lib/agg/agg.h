/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_AGG_H
#define NM_AGG_H

/*
 * Per-second aggregation table: merges records with identical keys (every FlowMessage dimension
 * plus the second), adding bytes, packets and a count of merged records.
 *
 * Layout, sized at creation and never resized (memory is committed and faulted in then, so
 * adding never allocates nor faults):
 *  - entries live in an arena, each the record's counters and its key in a canonical compact
 *    form: a 64-bit header saying which 32-bit words of the 216-byte nm_flow_key are non-zero
 *    (and which addresses are IPv4-mapped), then only those words. An IPv4 flow export record
 *    takes 14-20 words instead of 54, so comparing touches one or two cache lines;
 *  - an open-addressing index (linear probing, 8-byte slots: 32 bits of the hash and the entry's
 *    place) with 1.5 slots per entry.
 * Both together take about 128 bytes per entry at typical key sizes (NM_AGG_BYTES_PER_FLOW is
 * the budget the arena is sized by; agg.c says how); the 216-byte key in a cds_lfht node took
 * 280.
 *
 * The hash is keyed with a random per-process key (AES rounds where the CPU has them, SipHash
 * otherwise): a sender that controls the key fields cannot craft distinct keys with one hash
 * value and turn a probe run into a list walk, as it could with the linear CRC32C lanes before.
 *
 * Threading: a table belongs to one RX lcore while it fills; the lcore then hands it to the
 * flusher (through a ring, which orders memory), which drains and resets it and hands it back.
 * There is never a concurrent reader, so the table needs no RCU read side of its own: it is
 * one of the per-lcore tables the design publishes and retires, not a shared one. One writer
 * at a time calls nm_agg_add*() or nm_agg_drain(); the counters (nm_agg_get_stats) may be
 * read by any thread (relaxed atomics).
 */

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#include "../ctr/ctr.h"
#include "../flow/flow.h"

/* Memory budget per flow of max_flows, index included (see agg.c for the split). */
#define NM_AGG_BYTES_PER_FLOW 128

struct nm_agg_params {
	unsigned int
		max_flows; /* distinct keys the table holds; the pool and buckets are sized by it */
};

/*
 * Counters of one table (lib/ctr/ctr.h): single writer, the worker that fills the table (the
 * flusher drains it but counts nothing here); any thread reads them with nm_agg_get_stats().
 */
#define NM_AGG_CTRS(X, A, c)                                                                       \
	X(c, records, COUNTER, "records", 0, "", "records added")                                  \
	X(c, merged, COUNTER, "records", 0, "aggregation:merged",                                  \
	  "records merged into an existing entry")                                                 \
	X(c, folded, COUNTER, "records", 0, "aggregation:folded",                                  \
	  "records folded into an overflow entry because the pool was empty")                      \
	X(c, dropped, COUNTER, "records", 0, "aggregation:dropped",                                \
	  "records lost: no entry left even for the overflow key")                                 \
	X(c, dropped_packets, COUNTER, "packets", 0, "", "Packets of the dropped records")         \
	X(c, dropped_bytes, COUNTER, "bytes", 0, "", "Bytes of the dropped records")

struct nm_agg_stats {
	NM_AGG_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

/* The set of struct nm_agg_stats: "agg", keys prefixed "agg_" in combined views. */
extern const struct nm_ctr_set nm_agg_ctr_set;

struct nm_agg_table;

/* Create a table; NULL with errno set (EINVAL for max_flows 0, ENOMEM). Control thread only. */
struct nm_agg_table *nm_agg_table_create(const struct nm_agg_params *p);

/* Free a table nobody uses any more. */
void nm_agg_table_free(struct nm_agg_table *t);

/*
 * Add a burst of records (the hot path): every key is encoded and hashed first and its index
 * slot prefetched, then the entries found are prefetched, then each record is merged or takes a
 * new entry, in order. When the table is full (max_flows keys, or the arena's bytes) a record is
 * folded into an overflow entry keyed by (second, exporter, observation domain, type, sampling
 * rate, interfaces, direction, ether type, protocol) so the totals stay exact while the detail
 * degrades; a few entries are kept in reserve for those. Returns the records kept (n minus
 * those dropped, which are counted).
 */
unsigned int nm_agg_add_burst(struct nm_agg_table *t, const struct nm_flow_rec *recs,
			      unsigned int n);

/* Add one record. Returns 0 merged, 1 new entry, 2 folded, -ENOSPC dropped (counted). */
int nm_agg_add(struct nm_agg_table *t, const struct nm_flow_rec *rec);

/* Distinct entries in the table. */
unsigned int nm_agg_count(const struct nm_agg_table *t);

/* Bytes the table holds in memory (index, arena and bookkeeping). */
size_t nm_agg_mem_bytes(const struct nm_agg_table *t);

/* Called once per entry by nm_agg_drain(); flows is the number of records merged into it. */
typedef void (*nm_agg_visit_fn)(const struct nm_flow_rec *rec, uint64_t flows, void *ctx);

/*
 * Visit every entry (in the order they were created), then empty the table so it can be filled
 * again. Costs the entries in use plus clearing the index. Returns the number of entries visited.
 */
unsigned int nm_agg_drain(struct nm_agg_table *t, nm_agg_visit_fn visit, void *ctx);

/*
 * The drain for the flusher's hot path: entries are handed over as they sit in the arena, the key
 * in its compact form, so a visitor that only needs a few fields (the top-N's weight, the Kafka
 * exporter group) or encodes straight from the compact form (nm_encode_pb_row) never builds the
 * 216-byte key; nm_agg_row_rec() builds it for those that need it (JSON).
 *
 * The compact form, ck[0] a 64-bit header then the key's non-zero 32-bit words in order:
 *  - header bit w (0-53) set: word w of struct nm_flow_key (bytes 4w..4w+3) is non-zero and
 *    is the next word after those of the lower set bits;
 *  - bits 56-59 (NM_AGG_CK_V4_SHIFT + NM_AGG_CK_ADDR_*): that address is IPv4-mapped,
 *    ::ffff:a.b.c.d; its words 0 and 1 are then zero and its word 2 (00 00 ff ff) is not stored
 *    (its bit is clear), only a.b.c.d if non-zero.
 */
#define NM_AGG_CK_WORDS 54
#define NM_AGG_CK_V4_SHIFT 56
enum { NM_AGG_CK_ADDR_SAMPLER, NM_AGG_CK_ADDR_SRC, NM_AGG_CK_ADDR_DST, NM_AGG_CK_ADDR_NEXT_HOP };

/* One entry as nm_agg_drain_rows() hands it; ck points into the table, valid in the call. */
struct nm_agg_row {
	const uint64_t *ck; /* compact key, above */
	uint64_t bytes;
	uint64_t packets;
	uint64_t flows; /* records merged into the entry */
};

/* Called by nm_agg_drain_rows() with up to NM_AGG_ROWS entries at a time, in creation order. */
#define NM_AGG_ROWS 32
typedef void (*nm_agg_rows_fn)(const struct nm_agg_row *rows, unsigned int n, void *ctx);

/*
 * As nm_agg_drain(), entries handed as compact rows, a burst at a time (the arena ahead is
 * prefetched while the visitor works). Returns the number of entries visited.
 */
unsigned int nm_agg_drain_rows(struct nm_agg_table *t, nm_agg_rows_fn visit, void *ctx);

/* The record of a row: the full key decoded, bytes and packets. Any thread. */
void nm_agg_row_rec(const struct nm_agg_row *row, struct nm_flow_rec *out);

/* Word w (< NM_AGG_CK_WORDS) of a row's key; an address' IPv4-mapped marker word reads 0. */
static inline uint32_t
nm_agg_ck_word(const uint64_t *ck, unsigned int w)
{
	uint64_t h = ck[0];
	uint32_t u = 0;

	if ((h >> w) & 1)
		memcpy(&u,
		       (const uint8_t *)(ck + 1) +
			       4 * __builtin_popcountll(h & ((UINT64_C(1) << w) - 1)),
		       4);
	return u;
}

/*
 * Words w .. w + n - 1 of a row's key into x (n <= 4): one popcount for the first one's place, the
 * next ones follow it in the compact form.
 */
static inline void
nm_agg_ck_words(const uint64_t *ck, unsigned int w, unsigned int n, uint32_t *x)
{
	uint64_t h = ck[0];
	const uint8_t *p =
		(const uint8_t *)(ck + 1) + 4 * __builtin_popcountll(h & ((UINT64_C(1) << w) - 1));
	unsigned int i;

	for (i = 0; i < n; i++) {
		x[i] = 0;
		if ((h >> (w + i)) & 1) {
			memcpy(&x[i], p, 4);
			p += 4;
		}
	}
}

/* The 64-bit field of the key at word w (w, w + 1 in memory order). */
static inline uint64_t
nm_agg_ck_u64(const uint64_t *ck, unsigned int w)
{
	uint32_t x[2];
	uint64_t v;

	nm_agg_ck_words(ck, w, 2, x);
	memcpy(&v, x, 8);
	return v;
}

/* Address a (NM_AGG_CK_ADDR_*) of a row's key into out (16 bytes). */
static inline void
nm_agg_ck_addr(const uint64_t *ck, unsigned int a, uint8_t out[NM_ADDR_LEN])
{
	static const unsigned int w0[4] = {
		offsetof(struct nm_flow_key, sampler_addr) / 4,
		offsetof(struct nm_flow_key, src_addr) / 4,
		offsetof(struct nm_flow_key, dst_addr) / 4,
		offsetof(struct nm_flow_key, next_hop) / 4,
	};
	uint32_t x[4];

	nm_agg_ck_words(ck, w0[a], 4, x);
	if ((ck[0] >> (NM_AGG_CK_V4_SHIFT + a)) & 1) {
		static const uint8_t v4[4] = {0, 0, 0xff, 0xff};

		memcpy(&x[2], v4, 4);
	}
	memcpy(out, x, NM_ADDR_LEN);
}

/* Add this table's counters (cumulative over every fill) into out. */
void nm_agg_get_stats(const struct nm_agg_table *t, struct nm_agg_stats *out);

/*
 * The table's keyed hash of a key (the process-wide random key is drawn by the first
 * nm_agg_table_create()), and the bytes an entry with this key takes in the arena. For tests
 * and benchmarks; any thread.
 */
uint64_t nm_agg_key_hash(const struct nm_flow_key *k);
size_t nm_agg_entry_bytes(const struct nm_flow_key *k);

/*
 * The compact form of k as the table stores and hashes it (agg.c says what it is): written to
 * out, NM_AGG_CKEY_BUF bytes; returns its length in bytes. The bytes after it are zero up to
 * NM_AGG_CKEY_HASHED(len), which the hash reads. For tests (they check it against a plain
 * reference encoder); any thread.
 */
#define NM_AGG_CKEY_BUF 256
#define NM_AGG_CKEY_HASHED(len) ((len) <= 96 ? 96 : ((len) + 31) / 32 * 32)
size_t nm_agg_key_compact(const struct nm_flow_key *k, uint64_t out[NM_AGG_CKEY_BUF / 8]);

#endif /* NM_AGG_H */
