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
 *    (exporter, domain, sampler id): entries from a preallocated array, never removed; a changed
 *    rate is stored in place (one aligned 64-bit store readers load atomically).
 *  - data sets that arrived before their template (held, copied, bounded), keyed by
 *    (exporter, domain, template id, protocol); a small preallocated pool under its own mutex,
 *    touched only on the slow path (unknown template, template arrival while sets are held).
 *
 * Bounds: templates per exporter (address, domain, protocol), templates in total, template
 * memory (pool_bytes), exporters (the exporter table's size), rates, held sets per (exporter,
 * domain) and in total. What does not fit is refused and counted, never allocated.
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
	uint8_t pad_;		      /* zero */
	uint32_t flags;		      /* compiler's summary bits (enum nm_ipfix_tflag) */
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

/* Counters of the shared cache (sums, read racily by telemetry). */
struct nm_tmpl_cache_stats {
	uint64_t templates;	   /* live templates */
	uint64_t exporters;	   /* exporter addresses seen */
	uint64_t published;	   /* new or changed templates published */
	uint64_t refreshed;	   /* identical template received again (nothing published) */
	uint64_t withdrawn;	   /* templates removed by withdrawal */
	uint64_t withdraw_visited; /* templates a withdraw-all looked at (its cost) */
	uint64_t
		refused_exporter; /* refused: the exporter already has max_templates_per_exporter */
	uint64_t refused_total;	  /* refused: max_templates reached */
	uint64_t refused_exporters;	 /* refused: max_exporters addresses already known */
	uint64_t rates;			 /* sampling-rate entries */
	uint64_t rates_refused;		 /* rate entries refused: max_rates reached */
	uint64_t rates_refused_exporter; /* refused: the (address, domain) has
					  * max_rates_per_exporter, or no exporter entry */
	uint64_t pending;		 /* data sets held now */
	uint64_t pending_evicted;	 /* held sets pushed out by newer ones of the same domain */
	uint64_t refused_memory;	 /* refused: no pool slot of the template's size left */
	uint64_t writer_entries; /* times the writer mutex was taken (templates and rates) */
	uint64_t pool_takes;	 /* template slots taken from the pool */
	uint64_t pool_bytes;	 /* pool memory handed to size classes so far */
};

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
 * checked it with nm_tmpl_same_fields()). Reader: one relaxed atomic add, no lock.
 */
void nm_tmpl_note_refresh(struct nm_tmpl_cache *c);

/*
 * Publish a copy of t (key filled in; the caller keeps t, e.g. a scratch buffer). Returns 1 when
 * a new template or a changed layout was published, 0 when an identical template was already
 * there (a refresh that raced with another writer; nothing copied), -ENOSPC when a limit or the
 * pool refused it (counted). Writer: takes the mutex, takes a pool slot, looks up or creates the
 * exporter's entry in the exporter table (lock-free); the replaced template's slot goes back to
 * the pool after a grace period. No allocation.
 */
int nm_tmpl_publish(struct nm_tmpl_cache *c, const struct nm_tmpl *t);

/* Withdraw one template (1 removed, 0 unknown). Writer, no allocation. */
int nm_tmpl_withdraw(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k);

/*
 * Withdraw every template of (exporter, domain, proto) that is an options template when
 * options is 1, a plain one when 0 (IPFIX "withdraw all": template id 2 or 3). Returns the number
 * removed. Writer; walks the whole table (rare, and bounded by max_templates).
 */
int nm_tmpl_withdraw_all(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN],
			 uint32_t domain, uint8_t proto, int options);

/*
 * Sampling rate for (exporter, domain, sampler id) learned from options data, 0 when unknown.
 * Reader: no lookup at all while no rate is known, else one cds_lfht lookup; no lock.
 */
uint64_t nm_tmpl_rate_lookup(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN],
			     uint32_t domain, uint32_t sampler_id);

/*
 * Set that rate (rate > 0). 0, or -ENOSPC when max_rates is reached. An unchanged rate (options
 * data repeats every few seconds) costs a reader lookup and no lock; a changed or new one is a
 * writer: mutex, then an in-place store or an entry from the preallocated array. No allocation.
 */
int nm_tmpl_rate_set(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		     uint32_t sampler_id, uint64_t rate);

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
 * full and -EMSGSIZE when the set is too long (not held). Slow path: takes the held-set mutex,
 * scans the pool (max_pending slots), copies p->len bytes. No allocation.
 */
int nm_tmpl_pending_put(struct nm_tmpl_cache *c, const struct nm_tmpl_pending *p);

/*
 * Move up to max held sets waiting for template k into out[] (oldest first) and forget them.
 * Returns how many were moved. One relaxed load when nothing is held anywhere; otherwise takes
 * the held-set mutex and scans the pool once per set moved. No allocation.
 */
unsigned int nm_tmpl_pending_take(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k,
				  struct nm_tmpl_pending *out, unsigned int max);

/* The per-(exporter, domain) bound of held sets (callers size their take buffer with it). */
unsigned int nm_tmpl_pending_per_domain(const struct nm_tmpl_cache *c);

#endif /* NM_TMPL_H */
