/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_TMPL_H
#define NM_TMPL_H

/*
 * NetFlow v9 / IPFIX template cache and per-exporter state, shared by all RX lcores.
 *
 * Three tables live here, all keyed by the exporter's address and observation domain
 * (v9 source id / IPFIX observation domain id):
 *
 *  - compiled templates, keyed by (exporter, domain, template id, v9 or IPFIX). A template is an
 *    immutable struct nm_tmpl (a field program made by lib/decode/ipfix_prog.c) in an RCU hash
 *    table (liburcu QSBR, cds_lfht). Readers look it up without locking; a writer (the RX thread
 *    that received a template set) publishes a new version with cds_lfht_add_replace() and frees
 *    the old one with call_rcu(). Writers are serialised by a mutex: template updates are rare.
 *  - sampling rates learned from options data (IEs 34, 50, 305/306), keyed by
 *    (exporter, domain, sampler id); same RCU scheme, same writer mutex.
 *  - data sets that arrived before their template (held, copied, bounded), keyed by
 *    (exporter, domain, template id, protocol); a small preallocated pool under its own mutex,
 *    touched only on the slow path (unknown template, template arrival while sets are held).
 *
 * Bounds: templates per exporter address, templates in total, exporter addresses, held sets per
 * (exporter, domain) and in total. What does not fit is refused and counted, never allocated.
 *
 * Threading: nm_tmpl_cache_create()/free() from the control thread. Every other function may be
 * called from any RX thread that is a registered QSBR reader (rcu_register_thread()) and online;
 * pointers returned by lookups stay valid until that thread's next rcu_quiescent_state().
 */

#include <stdint.h>
#include <stddef.h>

#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "../flow/flow.h"

struct nm_tmpl_params {
	unsigned int max_templates_per_exporter; /* 0: 1024 */
	unsigned int max_templates;		 /* 0: 65536 */
	unsigned int max_exporters;		 /* exporter addresses; 0: 4096 */
	unsigned int max_pending;		 /* held data sets in total; 0: 256 */
	unsigned int max_pending_per_domain;	 /* held per (exporter, domain); 0: 4 */
	unsigned int max_rates;			 /* sampling-rate entries; 0: 65536 */
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
	uint8_t has_var;   /* at least one variable-length field: walk with a cursor */
	uint8_t has_frame; /* dataLinkFrameSection (IE 315) */
	uint8_t pad_;
	uint32_t flags;		      /* compiler's summary bits (enum nm_ipfix_tflag) */
	struct nm_tmpl_field *fields; /* points into this allocation */
	struct nm_tmpl_step steps[];
};

/* Allocate a template with room for n_steps steps and n_fields raw fields (slow path). */
struct nm_tmpl *nm_tmpl_alloc(unsigned int n_steps, unsigned int n_fields);
/* Free a template that was never published. */
void nm_tmpl_free(struct nm_tmpl *t);

struct nm_tmpl_cache;

/* Counters of the shared cache (sums, read racily by telemetry). */
struct nm_tmpl_cache_stats {
	uint64_t templates; /* live templates */
	uint64_t exporters; /* exporter addresses seen */
	uint64_t published; /* new or changed templates published */
	uint64_t refreshed; /* identical template received again (nothing published) */
	uint64_t withdrawn; /* templates removed by withdrawal */
	uint64_t
		refused_exporter; /* refused: the exporter already has max_templates_per_exporter */
	uint64_t refused_total;	  /* refused: max_templates reached */
	uint64_t refused_exporters; /* refused: max_exporters addresses already known */
	uint64_t rates;		    /* sampling-rate entries */
	uint64_t rates_refused;	    /* rate entries refused: max_rates reached */
	uint64_t pending;	    /* data sets held now */
	uint64_t pending_evicted;   /* held sets pushed out by newer ones of the same domain */
};

/* Create the cache; NULL with errno set on failure. Call from the control thread. */
struct nm_tmpl_cache *nm_tmpl_cache_create(const struct nm_tmpl_params *p);

/*
 * Free the cache after every reader is gone (waits for pending call_rcu callbacks with
 * rcu_barrier(); the calling thread must not be an online QSBR reader holding references).
 */
void nm_tmpl_cache_free(struct nm_tmpl_cache *c);

void nm_tmpl_cache_get_stats(const struct nm_tmpl_cache *c, struct nm_tmpl_cache_stats *st);

/* Find a template. RCU reader; the result is valid until the caller's next quiescent state. */
const struct nm_tmpl *nm_tmpl_lookup(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k);

/*
 * Publish t (key filled in) and take ownership of it. Returns 1 when a new template or a changed
 * layout was published, 0 when an identical template was already there (t is freed: a refresh),
 * -ENOSPC when a limit refused it (t is freed, the refusal counted). Writer: takes the mutex.
 */
int nm_tmpl_publish(struct nm_tmpl_cache *c, struct nm_tmpl *t);

/* Withdraw one template (1 removed, 0 unknown). Writer. */
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
 * Reader, lock-free.
 */
uint64_t nm_tmpl_rate_lookup(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN],
			     uint32_t domain, uint32_t sampler_id);

/* Set that rate (rate > 0). 0, or -ENOSPC when max_rates is reached. Writer. */
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
 * full and -EMSGSIZE when the set is too long (not held).
 */
int nm_tmpl_pending_put(struct nm_tmpl_cache *c, const struct nm_tmpl_pending *p);

/*
 * Move up to max held sets waiting for template k into out[] (oldest first) and forget them.
 * Returns how many were moved. Cheap when nothing is held (one relaxed load).
 */
unsigned int nm_tmpl_pending_take(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k,
				  struct nm_tmpl_pending *out, unsigned int max);

/* The per-(exporter, domain) bound of held sets (callers size their take buffer with it). */
unsigned int nm_tmpl_pending_per_domain(const struct nm_tmpl_cache *c);

#endif /* NM_TMPL_H */
