/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_EXPORTER_H
#define NM_EXPORTER_H

/*
 * Per-exporter state shared by all RX lcores: what each exporter sends (protocol, datagrams,
 * records, sampling rates, templates, decode errors by reason), an estimate of the export
 * datagrams it lost (sequence-number gaps), the sampling-rate overrides of the configuration,
 * and the sFlow generic interface counters of each (agent, ifIndex).
 *
 * Three tables:
 *  - the configured exporters, a struct nm_exp_conf: exporter address -> sampling rate override,
 *    name and description, and (address, ifIndex) -> interface name ([exporter.NAME] in
 *    netmeta.ini). One immutable version at a time, published through RCU: the control thread
 *    builds a new version (reload), swaps it in with rcu_xchg_pointer() and frees the old one
 *    after a grace period; readers probe open-addressing arrays without locks and never wait.
 *  - exporters, keyed by (address, observation domain / source id / sub-agent id, protocol):
 *    a liburcu QSBR cds_lfht over a pool of entries preallocated at creation. An entry is taken
 *    from the pool the first time its key is seen (one atomic increment while the pool has
 *    never-used slots, then a pop from a lock-free free list; no allocation). When no slot is
 *    free the datagram is counted in `overflow` and not tracked. An entry that has had no
 *    datagram for exporter_timeout_s is expired by nm_exp_expire() (the main lcore, once a
 *    second): what other modules keep in it is released through the release hook
 *    (nm_exp_set_release(): lib/tmpl drops its templates), it leaves the hash table, and its
 *    slot goes back to the free list after a grace period (call_rcu). Entries of configured
 *    exporters ([exporter.NAME]) are never expired: their state is what the operator asked for.
 *    An expired sFlow entry also drops the learned (agent, UDP source) bindings of its agent.
 *    Pool memory is never freed while the table lives, so a reader that is not an RCU reader
 *    (DPDK's telemetry thread) may read a slot being recycled and see nonsense, never freed
 *    memory; nm_exp_foreach() hides that with a per-slot generation count.
 *    A pointer from nm_exp_get()/nm_exp_find() is valid until the caller's next quiescent state
 *    (QSBR readers), or while the caller holds the lock the release hook takes (lib/tmpl's
 *    writer mutex): keep keys, not entry pointers, across quiescent states.
 *  - sFlow interfaces, keyed by (agent address, ifIndex): same scheme, own pool and free
 *    stack; an interface without a counter sample for exporter_timeout_s (of an agent that is
 *    not configured) is expired the same way by the same sweep.
 *
 * Counters on the hot path: each exporter entry is cache-line aligned and its counters are
 * updated with relaxed atomic adds - once per datagram, not per record. RSS hashes an exporter's
 * 5-tuple to one RX queue, so in practice one lcore writes an entry and the cache line stays in
 * its core; the atomics keep counts exact should two lcores share an exporter (several source
 * ports, RSS on addresses only). Sequence tracking is a read-modify-write of one word by the
 * lcore that sees the datagram: with two lcores on one exporter the gap estimate may be off,
 * never the memory. Interface counters are stored field by field (a reader may see a snapshot
 * half old, half new).
 *
 * This module owns per-exporter state: other modules that keep something per exporter key it on
 * an entry (struct nm_exp_key) and keep their counts in it (lib/tmpl: n_templates), rather than
 * keeping an exporter table of their own. Per-(exporter, domain) caps and idle expiry belong
 * here, over these entries.
 *
 * Cost: nm_exp_get(), nm_exp_account() and nm_exp_iface_update() are lock-free and allocate
 * nothing: a hash, a cds_lfht lookup, relaxed atomic adds; a new key takes a pool slot (one
 * atomic increment, or a compare-and-swap on the free list) and a cds_lfht_add_unique().
 * nm_exp_override() probes the configured version it finds through rcu_dereference(): no lock, no
 * wait. nm_exp_create() allocates the tables; afterwards only the control thread allocates, a new
 * configured version on reload (nm_exp_conf_create), and nm_exp_publish() waits a grace period
 * before freeing the old one.
 *
 * Threading: create/free/override_add from the control thread with no RX lcore running;
 * nm_exp_publish from the control thread at any time (it waits for a grace period). Lookups
 * and updates from RX lcores that are registered QSBR readers, online. nm_exp_expire from the
 * main lcore (QSBR reader, online). The readers for telemetry (nm_exp_foreach,
 * nm_exp_iface_foreach) walk the pools from any thread, RCU reader or not: pool memory is never
 * freed while the table lives, and nm_exp_foreach() hands fn a copy of each entry taken between
 * two reads of the slot's generation, so an entry recycled meanwhile is skipped rather than shown
 * half old, half new (the telemetry thread of DPDK is not an RCU reader and relies on that).
 */

#include <stdint.h>
#include <stddef.h>

#include <urcu/call-rcu.h>
#include <urcu/rculfhash.h>

#include "../base/dgram.h"
#include "../ctr/ctr.h"
#include "../base/reason.h"
#include "../flow/flow.h"

/*
 * What a protocol decoder tells about the datagram it decoded, for per-exporter accounting
 * (nm_exp_account()). Filled by the decoders (lib/decode), which include this header; reset by
 * nm_decode_datagram() before each datagram.
 */
struct nm_dgram_info {
	uint8_t type;	    /* enum nm_flow_type; 0: not recognised (no exporter accounting) */
	uint8_t has_seq;    /* seq/seq_units are meaningful */
	uint8_t seq_unsure; /* seq_units could not be counted (data of unknown templates) */
	uint8_t has_agent;  /* sFlow: agent holds the datagram's agent address */
	uint16_t version;
	uint32_t domain;    /* v9 source id, IPFIX domain, sFlow sub-agent, v5 engine type/id */
	uint32_t seq;	    /* the header's sequence number */
	uint32_t seq_units; /* what this datagram adds to the sequence: 1 datagram, or records */
	uint32_t seq_units_alt;	  /* the same counted another way exporters use (IPFIX: no options
				   * records); equal to seq_units when there is no other way */
	uint32_t templates;	  /* (options) template records accepted */
	uint32_t rate_default;	  /* records that got default_sampling_rate */
	uint32_t rate_override;	  /* records that got the configured override */
	uint32_t data_records;	  /* data records read (IPFIX sequence numbers count them) */
	uint32_t options_records; /* of which options data records */
	uint64_t rate;		  /* sampling rate of the last record (0: no record) */
	uint64_t records;	  /* flow records produced (set by nm_decode_datagram) */
	uint8_t agent[NM_ADDR_LEN];
};

struct nm_exp_params {
	unsigned int max_exporters;	/* (address, domain, protocol) entries; 0: 4096 */
	unsigned int max_ifaces;	/* sFlow (agent, ifIndex) entries; 0: 16384 */
	unsigned int max_overrides;	/* configured exporters; 0: 1024 */
	unsigned int max_ifnames;	/* configured interface names; 0: 4096 */
	uint64_t default_sampling_rate; /* what records get when an exporter announces none */
	unsigned int max_agents;	/* sFlow (agent, UDP source) pairs; 0: 4096 */
	int agent_learn; /* bind an sFlow agent to the first UDP source that speaks for it */
	/* Seconds without a datagram after which an entry is expired (nm_exp_expire); 0: never. */
	unsigned int exporter_timeout_s;
};

/* Identity of an exporter entry. Hashed and compared as raw bytes: zero it before filling. */
struct nm_exp_key {
	uint8_t addr[NM_ADDR_LEN]; /* UDP source; sFlow: the agent address of the datagram */
	uint32_t domain;	   /* v9 source id, IPFIX observation domain, sFlow sub-agent id,
				    * NetFlow v5 engine type << 8 | engine id */
	uint8_t type;		   /* enum nm_flow_type */
	uint8_t pad_[3];
};

/* How many distinct sampling rates an entry remembers (the rest are counted in rates_more). */
#define NM_EXP_RATES 4

struct nm_exp_entry {
	struct cds_lfht_node node; /* table linkage, not for users */
	struct nm_exp_key key;
	uint16_t version;  /* 5, 9, 10; sFlow 5 */
	uint8_t seq_valid; /* last_* describe the last in-order datagram */
	uint8_t late_run;  /* late datagrams in a row */
	uint8_t seq_post;  /* the exporter counts the current datagram's records */
	uint8_t pad2_[3];
	uint32_t last_seq;	   /* sequence number of the last in-order datagram */
	uint32_t last_units;	   /* what it added to the sequence (datagram or records) */
	uint32_t last_units_alt;   /* the same without options records (IPFIX) */
	uint32_t n_templates;	   /* templates it has in lib/tmpl now; written by the template
				    * cache under its writer mutex, the cap is checked there */
	uint32_t n_rates;	   /* sampling-rate entries of lib/tmpl it holds (IPFIX entry
				    * first, else v9); written under lib/tmpl's writer mutex */
	struct nm_tmpl *tmpl_list; /* those templates, linked by lib/tmpl under its writer
				    * mutex (a withdrawal walks them, not the whole cache) */

	uint64_t first_seen; /* time_received of the first datagram (s) */
	uint64_t last_seen;
	uint64_t datagrams;
	uint64_t records;		/* flow records produced */
	uint64_t bad;			/* datagrams rejected whole or in part */
	uint64_t templates;		/* (options) template records accepted */
	uint64_t rate_default_records;	/* records that got the configured default rate */
	uint64_t rate_override_records; /* records that got the configured override */
	uint64_t rates[NM_EXP_RATES];	/* distinct sampling rates seen (0: free slot) */
	uint64_t rates_more;		/* records with a rate that found no free slot */
	uint64_t seq_lost;		/* NetFlow v5, IPFIX: records; v9, sFlow: datagrams */
	uint64_t seq_out_of_order;	/* a little behind the expectation: late or duplicated */
	uint64_t seq_resets;		/* far ahead or far behind (restart): resynchronised */
	uint64_t err[NM_DECODE_ERR_MAX];

	/*
	 * The slot, not the exporter: kept when the slot is recycled (everything above from key
	 * on is zeroed then). gen: even while the slot is stable, odd while it is being zeroed;
	 * changes at every recycling. dead: expired, waiting for its grace period. sweep_*: the
	 * expiry sweep's own view, written only by nm_exp_expire.
	 */
	struct rcu_head rcu;
	struct nm_exp_table *tab;
	uint32_t gen;
	uint32_t dead;
	uint32_t sweep_gen;
	uint32_t sweep_seen;
	uint64_t sweep_datagrams;  /* datagrams when the sweep last saw them change */
	uint64_t sweep_idle_since; /* sweep clock (s) since when they have not changed */
} __attribute__((aligned(64)));

/*
 * The per-entry counters: telemetry's /netmeta/exporters fields and the Prometheus series
 * netmeta_exporter_<name>[_total]{exporter,domain,protocol} are both made from this table.
 * Errors by reason (err[]) stay in /netmeta/exporters only: eleven series more per exporter
 * would triple a scrape of a few thousand exporters, and netmeta_decode_errors_total{lcore,
 * reason} has the reasons.
 */
#define NM_EXP_ENTRY_CTRS(X, A, c)                                                                 \
	X(c, datagrams, COUNTER, "datagrams", 0, "", "datagrams of the exporter")                  \
	X(c, records, COUNTER, "records", 0, "", "flow records it produced")                       \
	X(c, bad, COUNTER, "datagrams", 0, "", "its datagrams rejected whole or in part")          \
	X(c, templates, COUNTER, "templates", 0, "", "its (options) template records accepted")    \
	X(c, rate_default_records, COUNTER, "records", 0, "",                                      \
	  "its records that got the configured default sampling rate")                             \
	X(c, rate_override_records, COUNTER, "records", 0, "",                                     \
	  "its records that got the configured override rate")                                     \
	X(c, seq_lost, COUNTER, "units", 0, "",                                                    \
	  "sequence gaps (NetFlow v5, IPFIX: records; v9, sFlow: datagrams)")                      \
	X(c, seq_out_of_order, COUNTER, "datagrams", 0, "", "datagrams late or duplicated")        \
	X(c, seq_resets, COUNTER, "datagrams", 0, "", "sequence restarts (resynchronised)")        \
	X(c, first_seen, GAUGE, "seconds", 0, "", "time of its first datagram (Unix seconds)")     \
	X(c, last_seen, GAUGE, "seconds", 0, "", "time of its last datagram (Unix seconds)")

/* The set of the per-entry counters over struct nm_exp_entry: "exporter". */
extern const struct nm_ctr_set nm_exp_entry_ctr_set;

/* sFlow generic interface counters (sFlow v5 counters_sample record 0:1) of one interface. */
struct nm_exp_ifcounters {
	uint32_t if_index;
	uint32_t if_type;
	uint64_t if_speed;
	uint32_t if_direction; /* 0 unknown, 1 full duplex, 2 half, 3 in, 4 out */
	uint32_t if_status;    /* bit 0 admin up, bit 1 oper up */
	uint64_t in_octets;
	uint32_t in_ucast, in_mcast, in_bcast, in_discards, in_errors, in_unknown;
	uint64_t out_octets;
	uint32_t out_ucast, out_mcast, out_bcast, out_discards, out_errors;
	uint32_t promiscuous;
};

struct nm_exp_iface {
	struct cds_lfht_node node;
	uint8_t agent[NM_ADDR_LEN];
	uint32_t if_index;
	uint32_t pad_;
	uint64_t samples;    /* counter samples received for it */
	uint64_t last_seen;  /* time_received of the last one (s) */
	uint32_t sample_seq; /* the counter sample's sequence number */
	uint32_t pad2_;
	struct nm_exp_ifcounters c; /* the latest values, as the agent sent them */

	/* The slot's own fields, as in struct nm_exp_entry (agent..c are zeroed on recycling). */
	struct rcu_head rcu;
	struct nm_exp_table *tab;
	uint32_t gen;
	uint32_t dead;
	uint32_t sweep_gen;
	uint32_t sweep_seen;
	uint64_t sweep_samples;
	uint64_t sweep_idle_since;
} __attribute__((aligned(64)));

/*
 * Counters of the table as a whole (lib/ctr/ctr.h), computed by nm_exp_get_stats() from the
 * table's own fields, which every RX lcore bumps with atomic adds (multi-writer). The per-exporter
 * entries' counters above are multi-writer too (uatomic_add): one exporter may reach several
 * lcores.
 */
#define NM_EXP_CTRS(X, A, c)                                                                       \
	X(c, exporters, GAUGE, "exporters", 0, "", "exporter entries in use")                      \
	X(c, exporters_overflow, COUNTER, "datagrams", 0, "",                                      \
	  "datagrams of exporters that found no free entry")                                       \
	X(c, expired, COUNTER, "exporters", NM_CTR_F_NONZERO, "exporters expired",                 \
	  "exporter entries expired after exporter_timeout_s without a datagram")                  \
	X(c, configured, GAUGE, "exporters", 0, "", "exporters configured ([exporter.NAME])")      \
	X(c, interfaces, GAUGE, "interfaces", 0, "", "sFlow interface entries in use")             \
	X(c, interfaces_overflow, COUNTER, "records", 0, "",                                       \
	  "counter records of interfaces that found no free entry")                                \
	X(c, interfaces_expired, COUNTER, "interfaces", 0, "",                                     \
	  "sFlow interface entries expired after exporter_timeout_s without a counter sample")     \
	X(c, sflow_agents, GAUGE, "agents", 0, "",                                                 \
	  "sFlow (agent, UDP source) pairs, configured and learned")                               \
	X(c, sflow_agent_mismatch, COUNTER, "datagrams", 0, "",                                    \
	  "sFlow datagrams credited to their UDP source: the agent was not theirs to claim")       \
	X(c, sflow_agents_full, COUNTER, "datagrams", 0, "",                                       \
	  "sFlow agents that found no slot to be learned in")                                      \
	X(c, sflow_agents_expired, COUNTER, "agents", 0, "",                                       \
	  "learned sFlow (agent, UDP source) pairs dropped with their agent's expired entry")      \
	X(c, rejected_unknown, COUNTER, "datagrams", 0, "",                                        \
	  "datagrams rejected whole from no known exporter: counted, no entry made")

struct nm_exp_stats {
	NM_EXP_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

/* The set of struct nm_exp_stats: "exporter". */
extern const struct nm_ctr_set nm_exp_ctr_set;

struct nm_exp_table;
struct nm_tmpl;

/* Create the tables; NULL with errno set. Control thread. */
struct nm_exp_table *nm_exp_create(const struct nm_exp_params *p);

/*
 * Free them when no RX lcore uses them any more. Control thread, registered as a QSBR reader
 * and online (the hash tables are emptied with cds_lfht_del() first).
 */
void nm_exp_free(struct nm_exp_table *t);

/*
 * One version of the configured exporters. Build it on the control thread (create, add,
 * ifname), then publish it; it is immutable from then on and the table owns it.
 * create: NULL when out of memory; capacities as nm_exp_params' max_overrides/max_ifnames;
 * version is the caller's number for it (the engine's config version).
 * add: an exporter address with its rate override (0: none), name and description (copied;
 * NULL: ""). ifname: the name of (addr, if_index). Both 0, -EEXIST when the key is there
 * already, -ENOSPC when the capacity is reached.
 * free: only a version never published (the table frees the ones it held).
 */
struct nm_exp_conf;
struct nm_exp_conf *nm_exp_conf_create(unsigned int max_exporters, unsigned int max_ifnames,
				       uint64_t version);
int nm_exp_conf_add(struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN], uint64_t rate,
		    const char *name, const char *description);
int nm_exp_conf_ifname(struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN], uint32_t if_index,
		       const char *name);
void nm_exp_conf_free(struct nm_exp_conf *c);
uint64_t nm_exp_conf_version(const struct nm_exp_conf *c);

/*
 * Make c the table's configured exporters: rcu_xchg_pointer(), then synchronize_rcu() and free
 * the version it replaced. Records decoded after the swap get c's overrides; a datagram being
 * decoded during it gets the old or the new rate for all its records (the decoder reads the
 * override once per datagram). Control thread, registered with urcu-qsbr (online or offline);
 * never from an RX lcore or a thread that holds up the grace period. Waits one poll-loop
 * iteration of every RX lcore (and of any registered telemetry thread).
 */
void nm_exp_publish(struct nm_exp_table *t, struct nm_exp_conf *c);

/*
 * Add an exporter to the version the table holds now, in place: start-up and tests only, with
 * no reader running. Same returns as nm_exp_conf_add.
 */
int nm_exp_override_add(struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN], uint64_t rate,
			const char *name);

/* The configured rate of addr in the current version, 0 when none. QSBR reader, online. */
uint64_t nm_exp_override(const struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN]);

/*
 * The current version, for several lookups that must agree (telemetry). It stays valid until
 * the calling thread's next quiescent state (or rcu_unregister_thread()): QSBR reader, online.
 * Telemetry threads register around their handler for this.
 */
const struct nm_exp_conf *nm_exp_conf_current(const struct nm_exp_table *t);

/* What a version says about one exporter; the strings belong to the version. */
struct nm_exp_configured {
	uint64_t rate; /* 0: no override */
	const char *name;
	const char *description;
};

/* 1 and *out filled when addr is configured in c, 0 when not. */
int nm_exp_configured(const struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN],
		      struct nm_exp_configured *out);

/* The configured name of (addr, if_index) in c, or NULL. */
const char *nm_exp_ifname(const struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN],
			  uint32_t if_index);

/*
 * sFlow agent attribution. A datagram's agent address is a claim anybody can write; a row is
 * credited to the agent only when the datagram's UDP source may speak for it:
 *  - the source is the agent itself (and that rebinds a learned pair to the agent: the agent's
 *    own address always wins over a stranger that claimed it first);
 *  - the pair was configured (nm_exp_agent_add(), from [exporter.NAME] sflow_sources);
 *  - with agent_learn, the pair was learned: the first source seen for an agent that is neither
 *    configured nor seen sending from its own address is bound to it (trust on first use).
 * Otherwise the decoder attributes the datagram to its UDP source and counts agent_mismatch.
 *
 * The table: open addressing over max_agents * 2 slots, bounded probes (8). A slot is claimed
 * with a compare-and-swap and published with a release store, so RX lcores learn without a
 * lock; a reader that meets a slot being written treats the agent as unknown (a mismatch, once).
 * Configured pairs may be added only before the RX lcores start (control thread).
 */
int nm_exp_agent_add(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
		     const uint8_t src[NM_ADDR_LEN]);

/*
 * 1 when src may speak for agent (learning the pair when allowed), 0 when not (agent_mismatch
 * counted). Any RX lcore; lock-free, no allocation, at most 8 slots probed.
 */
int nm_exp_agent_check(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
		       const uint8_t src[NM_ADDR_LEN]);

/*
 * nm_exp_agent_check() that first tries *memo, the slot that let a pair through last (NULL at
 * first; the call sets it): when that slot still holds (agent, src) the answer is 1 without
 * hashing and probing. The agent table lives as long as t, so memo must be forgotten (zeroed)
 * only when the caller switches to another table. memo belongs to the calling thread.
 */
int nm_exp_agent_check_memo(struct nm_exp_table *t, const void **memo,
			    const uint8_t agent[NM_ADDR_LEN], const uint8_t src[NM_ADDR_LEN]);

/*
 * Admission ([collector] allow): which UDP sources may have their datagrams decoded at all.
 * With no prefix added every source is admitted; once one is, a source is admitted when it lies
 * in an added prefix or is a configured exporter address (nm_exp_override_add()). The check
 * runs before any decoder reads the payload, so a refused datagram costs a linear walk of at
 * most max_allow prefixes (two masked 64-bit compares each) and one override probe, and
 * creates no state. Prefixes are added by the control thread before the RX lcores start;
 * nm_exp_allowed() is then read-only, any thread.
 */
#define NM_EXP_MAX_ALLOW 64
int nm_exp_allow_add(struct nm_exp_table *t, const uint8_t prefix[NM_ADDR_LEN], unsigned int len);
int nm_exp_allowed(const struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN]);

/*
 * Refused sources of one RX lcore: a total and the heaviest sources, kept with the
 * space-saving algorithm in NM_EXP_REFUSED_TOP slots (a new source takes the least-counted
 * slot and inherits its count + 1: a count may be over, never under, and a source that sent
 * more than total / NM_EXP_REFUSED_TOP is always listed). Bounded memory whatever the number of
 * sources; nm_exp_refused_note() costs at most NM_EXP_REFUSED_TOP compares.
 * Threading: one writer (the lcore that owns it), plain stores; a reader on another thread may
 * see one slot half-updated (telemetry only).
 */
#define NM_EXP_REFUSED_TOP 16
struct nm_exp_refused {
	uint64_t total;
	struct {
		uint8_t addr[NM_ADDR_LEN];
		uint64_t count; /* 0: free */
	} top[NM_EXP_REFUSED_TOP];
};

void nm_exp_refused_note(struct nm_exp_refused *r, const uint8_t addr[NM_ADDR_LEN]);

/* Add src's total and sources into dst (same algorithm; for telemetry's sum over lcores). */
void nm_exp_refused_merge(struct nm_exp_refused *dst, const struct nm_exp_refused *src);

/*
 * The entry of k, created from the pool when new; NULL (and overflow counted) when no slot is
 * free. QSBR reader; the pointer stays valid until the caller's next quiescent state. Lock-free:
 * a new key costs one atomic increment or a compare-and-swap pop of the free list, and when
 * nothing is free one relaxed load and the overflow count (a flood of new sources costs every
 * lcore a lookup and two loads per datagram, no lock, no wait).
 */
struct nm_exp_entry *nm_exp_get(struct nm_exp_table *t, const struct nm_exp_key *k);

/* The entry of k when there is one, NULL otherwise (nothing created). QSBR reader. */
struct nm_exp_entry *nm_exp_find(struct nm_exp_table *t, const struct nm_exp_key *k);

/*
 * Account one decoded datagram: info as the decoder filled it, ret what it returned (records or
 * a negative reason), errs the decode errors the datagram added by reason (NULL: none). A
 * datagram rejected whole (ret < 0, no record, no template) creates no entry: it is counted on
 * an existing one, else in rejected_unknown. QSBR reader on an RX lcore; no lock, no allocation.
 */
void nm_exp_account(struct nm_exp_table *t, const struct nm_dgram_info *info,
		    const struct nm_dgram_meta *meta, int ret, const uint64_t *errs);

/*
 * One thread's memo of the entry its last datagram was accounted to (zero it before first use).
 * An exporter's datagrams come in runs on its RX lcore, and a hash plus a cds_lfht lookup per
 * datagram was ~250 instructions, 30 a sample for sFlow's 8 samples a datagram (callgrind).
 */
struct nm_exp_memo {
	struct nm_exp_entry *e;
	struct nm_exp_key key;
	uint32_t gen;
};

/*
 * nm_exp_account() that first tries memo's entry. The memo is only a hint: it is used when the
 * key is the same and the slot is still that exporter's (its generation unchanged, not expired,
 * the key still in it; checked like nm_exp_foreach() checks a copy), so a memo kept across
 * quiescent states never reaches a recycled slot (pool memory lives as long as the table, and a
 * slot is recycled only after a grace period that this call's read side holds back). Same
 * contract as nm_exp_account(); memo belongs to the calling thread.
 */
void nm_exp_account_memo(struct nm_exp_table *t, struct nm_exp_memo *memo,
			 const struct nm_dgram_info *info, const struct nm_dgram_meta *meta,
			 int ret, const uint64_t *errs);

/* Record the generic interface counters of (agent, c->if_index). QSBR reader. */
void nm_exp_iface_update(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
			 uint64_t time_received, uint32_t sample_seq,
			 const struct nm_exp_ifcounters *c);

/*
 * Expiry. The release hook is called by nm_exp_expire() for each entry it expires, with the
 * entry still in the table; it must drop what its module keeps in the entry and call
 * detach(e, arg) exactly once, under the lock that keeps its own writers from finding e (after
 * detach, no lookup finds e; a writer that found it before must be done with it once the hook
 * holds its lock). lib/tmpl's nm_tmpl_exp_release() fits, with the template cache as ctx.
 * Without a hook, detach is called directly. Control thread, before the RX lcores start.
 */
typedef void (*nm_exp_detach_fn)(struct nm_exp_entry *e, void *arg);
typedef int (*nm_exp_release_fn)(void *ctx, struct nm_exp_entry *e, nm_exp_detach_fn detach,
				 void *arg);
void nm_exp_set_release(struct nm_exp_table *t, nm_exp_release_fn fn, void *ctx);

/*
 * Expire idle entries: visit up to budget pool slots (and as many interface slots) from where
 * the last call stopped; an entry
 * whose datagram count has not changed for exporter_timeout_s seconds of now (any monotonic
 * clock in seconds, the same at every call; the sweep keeps its own time per entry, so the
 * packets' timestamps, which may be a capture's, play no part) and whose address is not
 * configured is released (hook), removed from the hash table and its slot freed after a grace
 * period (call_rcu). A call with the same now as the previous one returns at once (0), so the
 * caller may call it every loop iteration; exporter_timeout_s 0 turns expiry off. Returns the
 * entries expired. Cost: at most budget slots visited and budget entries expired, each release
 * bounded by the hook (lib/tmpl: max_templates_per_exporter templates). An entry that gets a
 * datagram while it is being expired loses that datagram's counts, and a new entry is made for the
 * next one. Main lcore, QSBR reader, online.
 */
unsigned int nm_exp_expire(struct nm_exp_table *t, uint64_t now, unsigned int budget);

/*
 * What the engine's main lcore passes as budget: 1,024 slots a second is a full pass over the
 * default 4,096 entries in 4 s, a few microseconds of work per call.
 */
#define NM_EXP_SWEEP_BUDGET 1024

/*
 * Call fn on every exporter entry / interface in use (pool order). Both pass a copy (consistent:
 * taken between two equal even reads of the slot's generation), valid only during the call. See
 * the file comment.
 */
void nm_exp_foreach(const struct nm_exp_table *t,
		    void (*fn)(const struct nm_exp_entry *e, void *ctx), void *ctx);
void nm_exp_iface_foreach(const struct nm_exp_table *t,
			  void (*fn)(const struct nm_exp_iface *i, void *ctx), void *ctx);

void nm_exp_get_stats(const struct nm_exp_table *t, struct nm_exp_stats *st);

/* Export datagrams an entry lost, estimated from its sequence numbers (records / per datagram
 * for the record-counting sequences of NetFlow v5 and IPFIX). */
uint64_t nm_exp_lost_datagrams(const struct nm_exp_entry *e);

/* "nf5", "nf9", "ipfix", "sflow" for an enum nm_flow_type. */
const char *nm_exp_type_name(uint8_t type);

#endif /* NM_EXPORTER_H */
