/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_TMPL_H
#define NM_TMPL_H

/*
 * NetFlow v9 / IPFIX template cache, shared by all RX lcores.
 *
 * Three tables live here, all scoped by the exporter's identity: its address, observation
 * domain (v9 source id / IPFIX observation domain id) and protocol, i.e. the key of its entry in
 * lib/exporter, which owns per-exporter state. This module keeps no exporter table of its own: the
 * template count and cap of an exporter live in its struct nm_exp_entry (n_templates), found
 * through the exporter table given at creation (or a private one, see nm_tmpl_params.exp).
 *
 *  - compiled templates, keyed by (exporter, domain, template id, v9 or IPFIX). A template is an
 *    immutable struct nm_tmpl (a field program made by lib/decode/ipfix_prog.c) in an RCU hash
 *    table (liburcu QSBR, cds_lfht, presized to 4096 buckets; see "Allocation" below). Readers look
 * it up without locking. A template received again unchanged is recognised by the reader side
 *    (nm_tmpl_same_fields() on the cached one, then nm_tmpl_note_refresh()): no lock, no copy.
 *    Only a new or changed template takes the writer path: nm_tmpl_publish() copies it into a
 *    slot of a pool preallocated (and pre-faulted) at creation, publishes it with
 *    cds_lfht_add_replace() and returns the old slot to the pool after a grace period
 *    (call_rcu). Writers are serialised by a mutex: template changes are rare.
 *  - sampling rates learned from options data (IEs 34, 50, 305/306), keyed by
 *    (exporter, domain, sampler id): entries from a preallocated array, removed by idle expiry
 *    and reused after a grace period; a changed rate is stored in place (one aligned 64-bit
 *    store readers load atomically).
 *  - data sets that arrived before their template (held, copied, bounded), keyed by
 *    (exporter, domain, template id, protocol); a small preallocated pool under its own mutex,
 *    touched only on the slow path (unknown template, template arrival while sets are held).
 *
 * Bounds: templates per exporter (address, domain, protocol), templates in total, template
 * memory (pool_bytes), exporters (the exporter table's size), rates, held sets per (exporter,
 * domain) and in total. What does not fit is refused and counted, never allocated. What is not
 * received again goes: templates and rates after template_timeout_s (nm_tmpl_expire()), held
 * sets after hold_s; counted too.
 *
 * Allocation: nothing in this module allocates after nm_tmpl_cache_create(). One exception
 * inside liburcu: the template and rate hash tables grow (CDS_LFHT_AUTO_RESIZE) when they pass
 * 4096 templates / 256 rates and each doubling after that; liburcu then mallocs a small work
 * item on the writer that crossed the threshold and does the resize on its own worker thread.
 * That is a handful of times in a process's life, on the writer path only. Presizing to the
 * maximum instead was measured to make every walk and destroy 5x slower.
 *
 * Threading: nm_tmpl_cache_create()/free() from the control thread. Every other function may be
 * called from any RX thread that is a registered QSBR reader (rcu_register_thread()) and online;
 * pointers returned by lookups stay valid until that thread's next rcu_quiescent_state().
 * What each call costs is stated with it ("reader": lock-free, no allocation, no syscall;
 * "writer": takes the writer mutex, no allocation; a replaced or withdrawn template is handed to
 * call_rcu(), which may wake liburcu's worker thread (one futex syscall); no other syscall unless
 * the mutex is contended).
 */

#include <stdint.h>
#include <stddef.h>

#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "../ctr/ctr.h"
#include "../exporter/exporter.h"
#include "../flow/flow.h"

struct nm_tmpl_params {
	unsigned int max_templates_per_exporter; /* per (address, domain, protocol); 0: 1024 */
	unsigned int max_templates;		 /* 0: 65536 */
	unsigned int max_exporters; /* size of the private exporter table (exp NULL); 0: 4096 */
	unsigned int max_pending;   /* held data sets in total; 0: 256 */
	unsigned int max_pending_per_domain; /* held per (exporter, domain); 0: 4 */
	unsigned int max_rates;		     /* sampling-rate entries; 0: 65536 */
	unsigned int max_rates_per_exporter; /* per (address, domain); 0: 256 */
	size_t pool_bytes; /* memory for compiled templates, allocated and touched at creation;
			    * 0: 16 MiB (about 25,000 templates of 32 fields) */
	/*
	 * Idle expiry (seconds of time_received). A template or rate not received again for
	 * template_timeout_s is removed by nm_tmpl_expire(); 0: 1800 (RFC 7011 s8.4 and RFC 3954
	 * s9: over UDP a template lives until it times out, the exporter resends it periodically).
	 * A held data set older than hold_s is dropped, never decoded; 0: 10 (RFC 7011 s8: a
	 * collector may drop data sets of templates it does not know).
	 */
	unsigned int template_timeout_s;
	unsigned int hold_s;
	/* Template layout changes remembered for the app to log by key (a ring); 0: 64. */
	unsigned int change_log;
	/*
	 * The owner of per-exporter state (shared with accounting and telemetry), which must
	 * outlive the cache. NULL: the cache creates a private exporter table of max_exporters
	 * entries (tests, tools that account nothing per exporter).
	 */
	struct nm_exp_table *exp;
};

/* Largest data set held while its template is unknown (a typical MTU-sized export). */
#define NM_TMPL_PENDING_MAX_LEN 1500
/* Templates with more fields are refused (NM_DECODE_ERR_BAD_TEMPLATE). */
#define NM_TMPL_MAX_FIELDS 512
/* Field length that announces a variable-length field (RFC 7011 7). */
#define NM_TMPL_VARLEN 65535

enum nm_tmpl_proto {
	NM_TMPL_NF9 = 9,
	NM_TMPL_IPFIX = 10,
};

/* Identity of a template. Compared and hashed as raw bytes: zero it before filling it. */
struct nm_tmpl_key {
	uint8_t exporter[NM_ADDR_LEN];
	uint32_t domain;
	uint16_t id;
	uint8_t proto; /* enum nm_tmpl_proto */
	uint8_t pad_;
};

/* One template field as it came off the wire. */
struct nm_tmpl_field {
	uint32_t pen; /* enterprise number, 0 for IANA / Cisco v9 types */
	uint16_t ie;  /* element id without the enterprise bit (v9: field type / scope type) */
	uint16_t len; /* NM_TMPL_VARLEN for variable length */
};

/*
 * One step of a field program: apply op (enum nm_ipfix_op, lib/decode/ipfix_prog.h) to len bytes
 * at off. In templates with a variable-length field offsets are not fixed: the program then also
 * holds skip steps and is walked with a cursor.
 */
struct nm_tmpl_step {
	uint16_t off;
	uint16_t len;
	uint8_t op;
	uint8_t pad_;
	uint16_t ie;
};

/* A compiled template: immutable once published. */
struct nm_tmpl {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	struct nm_tmpl_key key;
	uint16_t n_fields; /* fields as received (for refresh comparison) */
	uint16_t n_scope;  /* options templates: scope fields */
	uint16_t n_steps;
	uint16_t min_len; /* fixed record length, or the least a record can take (var) */
	uint8_t is_options;
	uint8_t has_var;	      /* at least one variable-length field: walk with a cursor */
	uint8_t has_frame;	      /* dataLinkFrameSection (IE 315) */
	uint8_t change_logged;	      /* its key's layout change was queued for the log */
	uint32_t flags;		      /* compiler's summary bits (enum nm_ipfix_tflag) */
	uint64_t last_seen;	      /* time_received (s) it was last published or refreshed:
				       * relaxed loads and stores, the idle sweep reads it */
	struct nm_tmpl *exp_next;     /* the exporter entry's templates (tmpl_list), writer */
	struct nm_tmpl *exp_prev;     /* mutex only; never followed by readers */
	struct nm_tmpl_field *fields; /* points into the same memory, after the steps */
	struct nm_tmpl_step steps[];
};

/* Bytes a template with n_steps steps and n_fields raw fields takes. */
static inline size_t
nm_tmpl_size(unsigned int n_steps, unsigned int n_fields)
{
	size_t sz = sizeof(struct nm_tmpl) + (size_t)n_steps * sizeof(struct nm_tmpl_step);

	/* Fields go after the steps, aligned for their 32-bit member. */
	sz = (sz + 3) & ~(size_t)3;
	return sz + (size_t)n_fields * sizeof(struct nm_tmpl_field);
}

/* Room for the largest template (NM_TMPL_MAX_FIELDS fields, as many steps). */
#define NM_TMPL_MAX_SIZE                                                                           \
	(sizeof(struct nm_tmpl) + 4 +                                                              \
	 NM_TMPL_MAX_FIELDS * (sizeof(struct nm_tmpl_step) + sizeof(struct nm_tmpl_field)))

/*
 * Lay out an empty template with room for n_steps steps and n_fields fields in buf (size
 * bytes, 8-byte aligned), for a compiler to fill and nm_tmpl_publish() to copy. NULL when it
 * does not fit. Writes only buf: no allocation, any thread.
 */
struct nm_tmpl *nm_tmpl_init(void *buf, size_t size, unsigned int n_steps, unsigned int n_fields);

/*
 * True when t was made from exactly these raw fields: n fields f[], n_scope of them scope
 * fields, options or not (a template received again). Reader; compares at most n fields.
 */
int nm_tmpl_same_fields(const struct nm_tmpl *t, const struct nm_tmpl_field *f, unsigned int n,
			unsigned int n_scope, int is_options);

struct nm_tmpl_cache;

/*
 * Counters of the shared cache, one table (lib/ctr/ctr.h): the struct, /netmeta/stats (keys
 * "tmpl_..."), the summary (text and JSON) and /netmeta/metrics (netmeta_tmpl_...) all come from
 * it. Writers bump them under the writer mutex (templates, rates) or the held-set mutex (held
 * sets), refreshed with an atomic add; readers copy them racily (nm_tmpl_cache_get_stats()).
 */
#define NM_TMPL_CTRS(X, A, c)                                                                      \
	X(c, templates, GAUGE, "templates", 0, "templates:live", "templates in the cache")         \
	X(c, exporters, GAUGE, "exporters", 0, "", "(exporter, domain, protocol) with templates")  \
	X(c, published, COUNTER, "templates", 0, "templates:published",                            \
	  "new or changed templates published")                                                    \
	X(c, refreshed, COUNTER, "templates", 0, "",                                               \
	  "identical template received again (nothing published)")                                 \
	X(c, changed, COUNTER, "templates", 0, "templates:changed",                                \
	  "templates replaced by another layout under the same id")                                \
	X(c, withdrawn, COUNTER, "templates", 0, "templates:withdrawn",                            \
	  "templates removed by an exporter's withdrawal")                                         \
	X(c, expired, COUNTER, "templates", 0, "templates:expired",                                \
	  "templates removed because not refreshed for template_timeout_s")                        \
	X(c, withdraw_visited, COUNTER, "templates", 0, "",                                        \
	  "templates a withdraw-all looked at (its cost)")                                         \
	X(c, refused_exporter, COUNTER, "templates", NM_CTR_F_NONZERO,                             \
	  "templates refused:per-exporter",                                                        \
	  "templates refused: the exporter has max_templates_per_exporter")                        \
	X(c, refused_total, COUNTER, "templates", NM_CTR_F_NONZERO, "templates refused:total",     \
	  "templates refused: the cache holds max_templates")                                      \
	X(c, refused_exporters, COUNTER, "templates", NM_CTR_F_NONZERO,                            \
	  "templates refused:no-exporter-entry",                                                   \
	  "templates refused: no exporter entry left for their exporter")                          \
	X(c, refused_memory, COUNTER, "templates", NM_CTR_F_NONZERO, "templates refused:memory",   \
	  "templates refused: no pool memory of their size left")                                  \
	X(c, rates, GAUGE, "rates", 0, "sampling rates:live",                                      \
	  "sampling-rate entries learned from options data")                                       \
	X(c, rates_refused, COUNTER, "rates", 0, "sampling rates:refused-total",                   \
	  "rates refused: the cache holds max_rates")                                              \
	X(c, rates_refused_exporter, COUNTER, "rates", 0, "sampling rates:refused-per-exporter",   \
	  "rates refused: the (exporter, domain) has max_rates_per_exporter, or no entry")         \
	X(c, rates_expired, COUNTER, "rates", 0, "sampling rates:expired",                         \
	  "rates removed because not received again for template_timeout_s")                       \
	X(c, pending, GAUGE, "sets", 0, "held data sets:now", "data sets held for their template") \
	X(c, pending_evicted, COUNTER, "sets", 0, "held data sets:evicted",                        \
	  "held sets pushed out by newer ones of the same (exporter, domain)")                     \
	X(c, pending_refused, COUNTER, "sets", 0, "held data sets:refused",                        \
	  "data sets not held: every held-set slot in use")                                        \
	X(c, pending_expired, COUNTER, "sets", 0, "held data sets:expired",                        \
	  "held sets dropped: older than template_hold_s, never decoded")                          \
	X(c, changes_unlogged, COUNTER, "templates", NM_CTR_F_NONZERO, "",                         \
	  "layout changes not logged by key: the log queue was full")                              \
	X(c, expire_visited, COUNTER, "entries", 0, "",                                            \
	  "templates and rates the idle sweep looked at (its cost)")                               \
	X(c, writer_entries, COUNTER, "calls", 0, "",                                              \
	  "times the writer mutex was taken (templates, rates, sweeps)")                           \
	X(c, pool_takes, COUNTER, "templates", 0, "", "template slots taken from the pool")        \
	X(c, pool_bytes, GAUGE, "bytes", 0, "", "pool memory handed to size classes so far")

struct nm_tmpl_cache_stats {
	NM_TMPL_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

/* The set of struct nm_tmpl_cache_stats: "tmpl", keys prefixed "tmpl_" in combined views. */
extern const struct nm_ctr_set nm_tmpl_ctr_set;

/*
 * Create the cache; NULL with errno set on failure. Control thread. Allocates (and touches)
 * everything the cache will ever use: the hash tables at their final size, the template pool,
 * the rate entries and the held-set pool.
 */
struct nm_tmpl_cache *nm_tmpl_cache_create(const struct nm_tmpl_params *p);

/*
 * Free the cache after every reader is gone (waits for pending call_rcu callbacks with
 * rcu_barrier(); the calling thread must not be an online QSBR reader holding references).
 */
void nm_tmpl_cache_free(struct nm_tmpl_cache *c);

/* Copy the counters (racy reads, no lock). Any thread. */
void nm_tmpl_cache_get_stats(const struct nm_tmpl_cache *c, struct nm_tmpl_cache_stats *st);

/*
 * Find a template. Reader: one hash and one cds_lfht lookup, no lock, no allocation, no shared
 * write. The result is valid until the caller's next quiescent state.
 */
const struct nm_tmpl *nm_tmpl_lookup(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k);

/*
 * Count a template received again unchanged (the caller found it with nm_tmpl_lookup() and
 * checked it with nm_tmpl_same_fields()) at now (the datagram's time_received, seconds): its
 * idle clock restarts. Reader: one relaxed atomic add, and at most once a second per template
 * one relaxed store into it (and into the cache's clock); no lock. t stays the caller's
 * (valid until its next quiescent state): a refresh racing with the template's expiry is lost,
 * the exporter's next refresh publishes it again.
 */
void nm_tmpl_note_refresh(struct nm_tmpl_cache *c, const struct nm_tmpl *t, uint64_t now);

/*
 * Publish a copy of t (key filled in; the caller keeps t, e.g. a scratch buffer). Returns 1 when
 * a new template or a changed layout was published, 0 when an identical template was already
 * there (a refresh that raced with another writer; nothing copied), -ENOSPC when a limit or the
 * pool refused it (counted). now: the carrying datagram's time_received (s), the template's
 * last_seen. A changed layout is counted (changed) and, the first time its key changes, queued
 * for the app to log (nm_tmpl_changes_take()). Writer: takes the mutex, takes a pool slot, looks up
 * or creates the exporter's entry in the exporter table (lock-free); the replaced template's slot
 * goes back to the pool after a grace period. No allocation.
 */
int nm_tmpl_publish(struct nm_tmpl_cache *c, const struct nm_tmpl *t, uint64_t now);

/* Withdraw one template (1 removed, 0 unknown). Writer, no allocation. */
int nm_tmpl_withdraw(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k);

/*
 * Withdraw every template of (exporter, domain, proto) that is an options template when
 * options is 1, a plain one when 0 (IPFIX "withdraw all": template id 2 or 3). Returns the number
 * removed. Writer; walks that (exporter, domain)'s own templates (at most
 * max_templates_per_exporter), counted in withdraw_visited.
 */
int nm_tmpl_withdraw_all(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN],
			 uint32_t domain, uint8_t proto, int options);

/*
 * Release what exporter entry e holds here when lib/exporter expires it (an nm_exp_release_fn:
 * pass the cache as the hook's ctx, nm_exp_set_release()): withdraw every template on its
 * tmpl_list, zero n_templates, then call detach(e, arg) with the writer mutex still held, so no
 * writer links a template into e after the walk. Rates learned for its (address, domain) stay
 * in the rate table, keyed by address, until their own idle expiry (template_timeout_s); n_rates
 * is zeroed with the recycled slot (the rate sweep only decrements a count above 0). Returns the
 * templates removed (counted in withdrawn). Writer: the mutex, one walk of e's templates (at most
 * max_templates_per_exporter). Main lcore, QSBR reader.
 */
int nm_tmpl_exp_release(void *cache, struct nm_exp_entry *e, nm_exp_detach_fn detach, void *arg);

/*
 * Sampling rate for (exporter, domain, sampler id) learned from options data, 0 when unknown.
 * Reader: no lookup at all while no rate is known, else one cds_lfht lookup; no lock.
 */
uint64_t nm_tmpl_rate_lookup(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN],
			     uint32_t domain, uint32_t sampler_id);

/*
 * Set that rate (rate > 0) at now (the datagram's time_received, s: the entry's idle clock).
 * 0, or -ENOSPC when max_rates or the exporter's cap is reached (counted). An unchanged rate
 * (options data repeats every few seconds) costs a reader lookup, at most one relaxed store a
 * second, and no lock; a changed or new one is a writer: mutex, then an in-place store or an entry
 * from the preallocated array. No allocation.
 */
int nm_tmpl_rate_set(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		     uint32_t sampler_id, uint64_t rate, uint64_t now);

/* A data set held until its template arrives, with what is needed to decode it later. */
struct nm_tmpl_pending {
	struct nm_tmpl_key key; /* the template it waits for */
	uint64_t time_received; /* of the datagram that carried it */
	uint64_t time_received_ns;
	uint32_t export_secs;	/* header fields of that datagram */
	uint32_t sys_uptime_ms; /* v9 only */
	uint32_t seq;
	uint16_t exporter_port;
	uint16_t dst_port;
	uint16_t len;
	uint8_t data[NM_TMPL_PENDING_MAX_LEN]; /* the set's records (after the set header) */
};

/*
 * Hold a copy of p (p->len <= NM_TMPL_PENDING_MAX_LEN). Returns 0 when held, 1 when held after
 * evicting the oldest set of the same (exporter, domain, proto), -ENOSPC when the global pool is
 * full and -EMSGSIZE when the set is too long (not held). Sets older than hold_s by
 * p->time_received are dropped on the way (pending_expired), so expired sets never keep a
 * newer one out. Slow path: takes the held-set mutex, scans the pool (max_pending slots),
 * copies p->len bytes. No allocation.
 */
int nm_tmpl_pending_put(struct nm_tmpl_cache *c, const struct nm_tmpl_pending *p);

/*
 * Move up to max held sets waiting for template k into out[] (oldest first) and forget them.
 * now is the time_received (s) of the datagram that brought the template: sets older than
 * hold_s by it are dropped and counted (pending_expired), not returned, so no set is decoded
 * with a template that came long after it. Returns how many were moved. One relaxed load when
 * nothing is held anywhere; otherwise takes the held-set mutex and scans the pool once per set
 * moved. No allocation.
 */
unsigned int nm_tmpl_pending_take(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k,
				  uint64_t now, struct nm_tmpl_pending *out, unsigned int max);

/* The per-(exporter, domain) bound of held sets (callers size their take buffer with it). */
unsigned int nm_tmpl_pending_per_domain(const struct nm_tmpl_cache *c);

/*
 * The idle sweep: remove templates whose last_seen is template_timeout_s behind now (counted
 * in expired, their exporter's cap slot freed), rates likewise (rates_expired, the exporter's
 * rate cap freed) and held sets older than hold_s (pending_expired). now is the caller's clock
 * in seconds of time_received; the sweep uses the smaller of now and the newest time_received
 * the cache has been given, so a replay of an old capture (time_received from the file) or a
 * quiet spell with no datagram at all ages nothing the data has not aged.
 * Bounded cost: visits at most budget template slots and rate entries per call, resuming where
 * the last call stopped (a full pass over N entries takes N / budget calls); held sets are a
 * walk of max_pending slots when any is held. Returns the entries removed.
 * Writer: takes the writer mutex once (and the held-set mutex once); no allocation; removed
 * templates and rates are freed after a grace period (call_rcu). Call it off the hot path, from
 * one thread that is a registered QSBR reader, online (the engine: the main lcore, once a
 * second).
 */
unsigned int nm_tmpl_expire(struct nm_tmpl_cache *c, uint64_t now, unsigned int budget);

/* A template layout change for the log: where it happened and how often since it was queued. */
struct nm_tmpl_change {
	struct nm_tmpl_key key;
	uint64_t time_received; /* of the first change */
	uint16_t old_fields, new_fields;
};

/*
 * Move up to max queued layout changes into out[] (oldest first). A key is queued the first
 * time its template changes layout (a flag the replacing template inherits), so the app logs it
 * once however often the exporter flips it; when the ring is full the change is counted in
 * changes_unlogged instead. lib/ never prints: the app's once-a-second tick calls this.
 * Takes the writer mutex (only when a change is queued: one relaxed load otherwise). Any thread.
 */
unsigned int nm_tmpl_changes_take(struct nm_tmpl_cache *c, struct nm_tmpl_change *out,
				  unsigned int max);

#endif /* NM_TMPL_H */
