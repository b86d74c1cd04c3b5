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
