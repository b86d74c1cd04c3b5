/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_AGG_H
#define NM_AGG_H

/*
 * Per-second aggregation table: merges records with identical keys (every FlowMessage dimension
 * plus the second), adding bytes, packets and a count of merged records.
 *
 * A table is a liburcu cds_lfht sized at creation (no resizing) with its entries taken from a
 * pool preallocated (and faulted in) at creation, so nm_agg_add() never allocates nor faults. A
 * small direct-mapped cache of recently used entries sits in front of the cds_lfht. One table
 * belongs to one RX lcore while it fills; the lcore then hands it to the flusher (through a queue
 * that orders memory), which drains and resets it and hands it back.
 *
 * Threading and RCU: a table has one writer at a time and no concurrent readers; the thread that
 * calls nm_agg_add() or nm_agg_drain() must be a registered liburcu QSBR thread (cds_lfht's read
 * side), online. The table's own counters may be read by any thread (relaxed atomics).
 */

#include <stdint.h>
#include <stddef.h>

#include "../ctr/ctr.h"
#include "../flow/flow.h"

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
 * Add a record: merge it into the entry of the same key or take a new entry. When the pool is
 * empty the record is folded into an overflow entry keyed by (second, exporter, type, sampling
 * rate, interfaces, direction, protocol) so the totals stay exact while the detail degrades; a
 * few entries are kept in reserve for those. Returns 0 merged, 1 new entry, 2 folded, -ENOSPC
 * dropped (counted).
 */
int nm_agg_add(struct nm_agg_table *t, const struct nm_flow_rec *rec);

/* Distinct entries in the table. */
unsigned int nm_agg_count(const struct nm_agg_table *t);

/* Called once per entry by nm_agg_drain(); flows is the number of records merged into it. */
typedef void (*nm_agg_visit_fn)(const struct nm_flow_rec *rec, uint64_t flows, void *ctx);

/*
 * Visit every entry (in the order they were created), then empty the table so it can be filled
 * again. Costs the entries in use, not the table's size. Returns the number of entries visited.
 */
unsigned int nm_agg_drain(struct nm_agg_table *t, nm_agg_visit_fn visit, void *ctx);

/* Add this table's counters (cumulative over every fill) into out. */
void nm_agg_get_stats(const struct nm_agg_table *t, struct nm_agg_stats *out);

#endif /* NM_AGG_H */
