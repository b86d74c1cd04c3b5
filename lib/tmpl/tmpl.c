/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Template cache, sampling rates and held data sets shared by the RX threads (see tmpl.h).
 *
 * Readers (every data set, and every template record received again unchanged) only do
 * cds_lfht_lookup() under the QSBR read side, which costs no shared write. Writers are new or
 * changed templates, options data that changes a rate and withdrawals: rare, so one mutex
 * serialises them and the bookkeeping only writers read (per-exporter template counts in the
 * exporter entries, pool free lists) needs no atomics.
 *
 * Nothing is allocated after creation. Templates live in slots of a pool carved from one arena:
 * a slot's size class is the power of two (256 B .. 16 KiB) that holds the template; a class
 * takes fresh slots from the arena (bump pointer) until the arena is spent, and slots of replaced
 * or withdrawn templates come back to their class's free list after a grace period (call_rcu;
 * the callback takes the writer mutex). Arena memory given to a class stays in it: a template
 * mix that shifts between sizes can strand at most what it used at its peak in the old classes.
 * Held data sets live in a fixed pool touched only when a data set has no template or a
 * template arrives while sets are held.
 *
 * Idle expiry walks the storage, not the hash tables: the arena is a sequence of slots whose
 * header gives their size, and the rate entries an array, so the sweep resumes at an offset and
 * an index (a cds_lfht iterator cannot be kept across quiescent states). Each call looks at
 * `budget` entries under the writer mutex: 4,096 slot headers and last_seen words, a few
 * microseconds, however many exporters there are.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>
#include <urcu/uatomic.h>

#include "../base/hash.h"
#include "tmpl.h"

#define POOL_MIN_SHIFT 8 /* 256 B */
#define POOL_CLASSES 7	 /* 256 B .. 16 KiB */
#define POOL_DEFAULT_BYTES (16u << 20)
#define TIMEOUT_DEFAULT_S 1800
#define HOLD_DEFAULT_S 10
#define CHANGE_LOG_DEFAULT 64

_Static_assert(NM_TMPL_MAX_SIZE + 64 <= (1u << (POOL_MIN_SHIFT + POOL_CLASSES - 1)),
	       "largest template does not fit the largest pool class");

/* What precedes every template in its pool slot. */
struct slot {
	struct nm_tmpl_cache *c; /* for the call_rcu callback */
	struct slot *next;	 /* free list */
	uint32_t cls;
	uint8_t live; /* holds a template in the table (the sweep's test); under wlock */
	uint8_t pad_[64 - 2 * sizeof(void *) - 5];
	uint64_t t[]; /* struct nm_tmpl */
};

_Static_assert(sizeof(struct slot) == 64, "slot header keeps templates cache-aligned");

struct rate_key {
	uint8_t exporter[NM_ADDR_LEN];
	uint32_t domain;
	uint32_t sampler_id;
};

struct rate_ent {
	struct cds_lfht_node node;
	struct rate_key key;
	uint64_t rate;	    /* stored in place when it changes: readers load it atomically */
	uint64_t last_seen; /* time_received (s) it was last set or received unchanged */
	struct rcu_head rcu;
	struct nm_tmpl_cache *c; /* for the call_rcu callback */
	struct rate_ent *next;	 /* free list, under wlock */
	uint8_t live;		 /* in the table; under wlock */
	uint8_t owner_type;	 /* enum nm_flow_type of the exporter entry whose n_rates it is */
};

struct pend_slot {
	uint64_t age; /* insertion order; 0 = free */
	struct nm_tmpl_pending p;
};

struct nm_tmpl_cache {
	struct nm_tmpl_params p;
	struct cds_lfht *ht;	/* struct nm_tmpl */
	struct cds_lfht *rates; /* struct rate_ent */
	pthread_mutex_t wlock;	/* templates, rates, pool, exporter entries' n_templates */
	struct nm_exp_table *exp;
	struct nm_exp_table *own_exp;  /* created here when params.exp is NULL */
	struct nm_tmpl_cache_stats st; /* writers update under wlock / plock; readers racy */

	uint8_t *arena; /* template pool */
	size_t arena_size;
	size_t arena_used;
	struct slot *free_slots[POOL_CLASSES];

	struct rate_ent *rpool; /* max_rates entries: fresh ones in order, then the free list */
	unsigned int rate_used; /* rpool entries handed out at least once */
	struct rate_ent *rate_free;

	/* The idle sweep: where it resumes (under wlock) and the data's clock. */
	size_t sweep_off;	 /* arena offset of the next template slot */
	unsigned int sweep_rate; /* next rpool index */
	uint64_t clock;		 /* newest time_received given; relaxed, racy max */

	/* Layout changes for the app's log: a ring under wlock; changes_n read without it. */
	struct nm_tmpl_change *chg;
	unsigned int chg_head;
	unsigned long changes_n;

	pthread_mutex_t plock; /* the held-set pool */
	struct pend_slot *pend;
	uint64_t pend_age;
	unsigned long pend_count; /* read without the lock as a hint */
};

_Static_assert(sizeof(struct nm_tmpl_key) == 24, "nm_tmpl_key layout");
_Static_assert(sizeof(struct rate_key) == 24, "rate_key layout");

static const struct nm_ctr_desc tmpl_desc[] = {
	NM_TMPL_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_tmpl_cache_stats)};
const struct nm_ctr_set nm_tmpl_ctr_set = NM_CTR_SET(
	"tmpl", "tmpl_", "the template cache (struct nm_tmpl_cache.st), written under its mutexes",
	SINGLE_WRITER, struct nm_tmpl_cache_stats, tmpl_desc);

/* The data's clock moves forward only; a racing older value may win once (harmless). */
static inline void
clock_note(struct nm_tmpl_cache *c, uint64_t now)
{
	if (now > CMM_LOAD_SHARED(c->clock))
		CMM_STORE_SHARED(c->clock, now);
}

struct nm_tmpl *
nm_tmpl_init(void *buf, size_t size, unsigned int n_steps, unsigned int n_fields)
{
	size_t sz = nm_tmpl_size(n_steps, n_fields);
	struct nm_tmpl *t = buf;

	if (sz > size)
		return NULL;
	memset(t, 0, sizeof(*t));
	t->fields = (struct nm_tmpl_field *)((uint8_t *)t + sz -
					     (size_t)n_fields * sizeof(struct nm_tmpl_field));
	return t;
}

int
nm_tmpl_same_fields(const struct nm_tmpl *t, const struct nm_tmpl_field *f, unsigned int n,
		    unsigned int n_scope, int is_options)
{
	return t->n_fields == n && t->n_scope == n_scope && t->is_options == !!is_options &&
	       memcmp(t->fields, f, n * sizeof(*f)) == 0;
}

static unsigned int
slot_class(size_t bytes)
{
	unsigned int cls = 0;

	while (((size_t)1 << (POOL_MIN_SHIFT + cls)) < bytes)
		cls++;
	return cls;
}

/* A slot for a template of bytes; NULL when its class is empty and the arena spent. Under wlock. */
static struct slot *
slot_take(struct nm_tmpl_cache *c, size_t bytes)
{
	unsigned int cls = slot_class(bytes + sizeof(struct slot));
	size_t sz = (size_t)1 << (POOL_MIN_SHIFT + cls);
	struct slot *s = c->free_slots[cls];

	if (s != NULL) {
		c->free_slots[cls] = s->next;
	} else {
		if (c->arena_size - c->arena_used < sz)
			return NULL;
		s = (struct slot *)(c->arena + c->arena_used);
		c->arena_used += sz;
		c->st.pool_bytes = c->arena_used;
		s->c = c;
		s->cls = cls;
	}
	s->next = NULL;
	c->st.pool_takes++;
	return s;
}

static struct slot *
slot_of(struct nm_tmpl *t)
{
	return caa_container_of((uint64_t *)t, struct slot, t[0]);
}

/* Back to its class. Under wlock. */
static void
slot_put(struct nm_tmpl_cache *c, struct slot *s)
{
	s->next = c->free_slots[s->cls];
	c->free_slots[s->cls] = s;
}

/* call_rcu callback: readers are done with the template; its slot is free again. */
static void
tmpl_free_rcu(struct rcu_head *h)
{
	struct nm_tmpl *t = caa_container_of(h, struct nm_tmpl, rcu);
	struct slot *s = slot_of(t);
	struct nm_tmpl_cache *c = s->c;

	pthread_mutex_lock(&c->wlock);
	slot_put(c, s);
	pthread_mutex_unlock(&c->wlock);
}

static unsigned int
pow2_at_least(unsigned int n)
{
	unsigned int v = 1;

	while (v < n && v < (1u << 30))
		v <<= 1;
	return v;
}

struct nm_tmpl_cache *
nm_tmpl_cache_create(const struct nm_tmpl_params *p)
{
	struct nm_tmpl_cache *c = calloc(1, sizeof(*c));
	unsigned long buckets;

	if (c == NULL)
		return NULL;
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_init(&c->plock, NULL);
	c->p = *p;
	if (c->p.max_templates_per_exporter == 0)
		c->p.max_templates_per_exporter = 1024;
	if (c->p.max_templates == 0)
		c->p.max_templates = 65536;
	if (c->p.max_exporters == 0)
		c->p.max_exporters = 4096;
	if (c->p.max_pending == 0)
		c->p.max_pending = 256;
	if (c->p.max_pending_per_domain == 0)
		c->p.max_pending_per_domain = 4;
	if (c->p.max_rates == 0)
		c->p.max_rates = 65536;
	if (c->p.max_rates_per_exporter == 0)
		c->p.max_rates_per_exporter = 256;
	if (c->p.pool_bytes == 0)
		c->p.pool_bytes = POOL_DEFAULT_BYTES;
	if (c->p.template_timeout_s == 0)
		c->p.template_timeout_s = TIMEOUT_DEFAULT_S;
	if (c->p.hold_s == 0)
		c->p.hold_s = HOLD_DEFAULT_S;
	if (c->p.change_log == 0)
		c->p.change_log = CHANGE_LOG_DEFAULT;
	c->exp = c->p.exp;
	if (c->exp == NULL) {
		struct nm_exp_params ep = {.max_exporters = c->p.max_exporters, .max_ifaces = 1};

		c->exp = c->own_exp = nm_exp_create(&ep);
	}
	/*
	 * Presized so that the steady state never resizes. Growth beyond the initial buckets runs
	 * on liburcu's resize worker (the writer that crosses a threshold only queues it, with one
	 * small malloc inside liburcu: see tmpl.h); presizing to the maximum instead costs every
	 * walk and every destroy (65,536 empty buckets made test_nf9 take 3.7 s instead of 1.1).
	 */
	buckets = pow2_at_least(c->p.max_templates < 4096 ? c->p.max_templates : 4096);
	c->ht = cds_lfht_new(buckets, buckets, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	c->rates = cds_lfht_new(256, 256, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	c->arena_size = (c->p.pool_bytes + 63) & ~(size_t)63;
	c->arena = aligned_alloc(64, c->arena_size);
	/* aligned_alloc, not calloc: the memset below must really touch the pages. */
	c->rpool =
		aligned_alloc(64, ((size_t)c->p.max_rates * sizeof(*c->rpool) + 63) & ~(size_t)63);
	c->pend = calloc(c->p.max_pending, sizeof(*c->pend));
	c->chg = calloc(c->p.change_log, sizeof(*c->chg));
	if (c->exp == NULL || c->ht == NULL || c->rates == NULL || c->arena == NULL ||
	    c->rpool == NULL || c->pend == NULL || c->chg == NULL) {
		nm_tmpl_cache_free(c);
		errno = ENOMEM;
		return NULL;
	}
	/*
	 * liburcu creates its call_rcu worker thread at the first call_rcu() of the process; make
	 * that happen here rather than on the RX lcore that first replaces a template.
	 */
	if (get_default_call_rcu_data() == NULL) {
		nm_tmpl_cache_free(c);
		errno = ENOMEM;
		return NULL;
	}
	/*
	 * Touch every page now: a first touch on an RX lcore would be a page fault (a kernel entry
	 * and a page zeroed) in the middle of a burst.
	 */
	memset(c->arena, 0, c->arena_size);
	memset(c->rpool, 0, (size_t)c->p.max_rates * sizeof(*c->rpool));
	return c;
}

void
nm_tmpl_cache_free(struct nm_tmpl_cache *c)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	struct nm_tmpl *t;
	int online;

	if (c == NULL)
		return;
	/*
	 * Nobody reads any more. Unlink everything, then let pending call_rcu callbacks run (they
	 * put slots back into the arena, which must outlive them); QSBR forbids rcu_barrier() from
	 * an online reader, so go offline around it if we are one.
	 */
	online = rcu_read_ongoing();
	if (c->ht != NULL) {
		for (cds_lfht_first(c->ht, &it); (n = cds_lfht_iter_get_node(&it)) != NULL;
		     cds_lfht_next(c->ht, &it)) {
			t = caa_container_of(n, struct nm_tmpl, node);
			cds_lfht_del(c->ht, n);
			call_rcu(&t->rcu, tmpl_free_rcu);
		}
	}
	/* Rate entries live in rpool: only unlink them. */
	if (c->rates != NULL) {
		for (cds_lfht_first(c->rates, &it); (n = cds_lfht_iter_get_node(&it)) != NULL;
		     cds_lfht_next(c->rates, &it))
			cds_lfht_del(c->rates, n);
	}
	if (online)
		rcu_thread_offline();
	rcu_barrier();
	if (c->ht != NULL)
		cds_lfht_destroy(c->ht, NULL);
	if (c->rates != NULL)
		cds_lfht_destroy(c->rates, NULL);
	if (online)
		rcu_thread_online();
	nm_exp_free(c->own_exp);
	free(c->arena);
	free(c->rpool);
	free(c->pend);
	free(c->chg);
	pthread_mutex_destroy(&c->wlock);
	pthread_mutex_destroy(&c->plock);
	free(c);
}

void
nm_tmpl_cache_get_stats(const struct nm_tmpl_cache *c, struct nm_tmpl_cache_stats *st)
{
	nm_ctr_copy(&nm_tmpl_ctr_set, st, &c->st);
	st->pending = CMM_LOAD_SHARED(c->pend_count);
}

static int
tmpl_match(struct cds_lfht_node *node, const void *key)
{
	const struct nm_tmpl *t = caa_container_of(node, struct nm_tmpl, node);

	return memcmp(&t->key, key, sizeof(t->key)) == 0;
}

const struct nm_tmpl *
nm_tmpl_lookup(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	cds_lfht_lookup(c->ht, nm_hash_words(k, sizeof(*k)), tmpl_match, k, &it);
	n = cds_lfht_iter_get_node(&it);
	return n == NULL ? NULL : caa_container_of(n, struct nm_tmpl, node);
}

/* The exporter entry that owns k's templates, created when new; NULL when the table is full. */
static struct nm_exp_entry *
exp_of(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k)
{
	struct nm_exp_key ek;

	memset(&ek, 0, sizeof(ek));
	memcpy(ek.addr, k->exporter, NM_ADDR_LEN);
	ek.domain = k->domain;
	ek.type = k->proto == NM_TMPL_NF9 ? NM_FLOW_NF9 : NM_FLOW_IPFIX;
	return nm_exp_get(c->exp, &ek);
}

/* Link t into / out of its exporter entry's list (withdrawals walk it). Under wlock. */
static void
exp_link(struct nm_exp_entry *e, struct nm_tmpl *t)
{
	t->exp_prev = NULL;
	t->exp_next = e->tmpl_list;
	if (e->tmpl_list != NULL)
		e->tmpl_list->exp_prev = t;
	e->tmpl_list = t;
}

static void
exp_unlink(struct nm_exp_entry *e, struct nm_tmpl *t)
{
	if (t->exp_prev != NULL)
		t->exp_prev->exp_next = t->exp_next;
	else if (e->tmpl_list == t)
		e->tmpl_list = t->exp_next;
	if (t->exp_next != NULL)
		t->exp_next->exp_prev = t->exp_prev;
	t->exp_next = t->exp_prev = NULL;
}

void
nm_tmpl_note_refresh(struct nm_tmpl_cache *c, const struct nm_tmpl *t, uint64_t now)
{
	uatomic_inc(&c->st.refreshed);
	/*
	 * The template is immutable but for its idle clock: one relaxed store, and only when the
	 * second moved, so a template refreshed many times a second dirties its line once.
	 */
	if (now > CMM_LOAD_SHARED(t->last_seen))
		CMM_STORE_SHARED(((struct nm_tmpl *)(uintptr_t)t)->last_seen, now);
	clock_note(c, now);
}

/* Queue k's first layout change for the app's log. Under wlock. */
static int
change_queue(struct nm_tmpl_cache *c, const struct nm_tmpl *old, const struct nm_tmpl *nt,
	     uint64_t now)
{
	struct nm_tmpl_change *ch;

	if (c->changes_n >= c->p.change_log) {
		c->st.changes_unlogged++;
		return 0;
	}
	ch = &c->chg[(c->chg_head + c->changes_n) % c->p.change_log];
	ch->key = nt->key;
	ch->time_received = now;
	ch->old_fields = old->n_fields;
	ch->new_fields = nt->n_fields;
	CMM_STORE_SHARED(c->changes_n, c->changes_n + 1);
	return 1;
}

unsigned int
nm_tmpl_changes_take(struct nm_tmpl_cache *c, struct nm_tmpl_change *out, unsigned int max)
{
	unsigned int n = 0;

	if (CMM_LOAD_SHARED(c->changes_n) == 0)
		return 0;
	pthread_mutex_lock(&c->wlock);
	while (n < max && c->changes_n > 0) {
		out[n++] = c->chg[c->chg_head];
		c->chg_head = (c->chg_head + 1) % c->p.change_log;
		CMM_STORE_SHARED(c->changes_n, c->changes_n - 1);
	}
	pthread_mutex_unlock(&c->wlock);
	return n;
}

int
nm_tmpl_publish(struct nm_tmpl_cache *c, const struct nm_tmpl *t, uint64_t now)
{
	unsigned long h = nm_hash_words(&t->key, sizeof(t->key));
	/*
	 * The copy is compact: header and the steps in use, then the fields. The source may have
	 * room for more steps than it uses (a compiler reserves one per field).
	 */
	size_t hdr = nm_tmpl_size(t->n_steps, 0), sz = nm_tmpl_size(t->n_steps, t->n_fields);
	const struct nm_tmpl *old;
	struct nm_exp_entry *e = NULL;
	struct cds_lfht_node *rep;
	struct nm_tmpl *nt;
	struct slot *s;
	int ret;

	clock_note(c, now);
	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	old = nm_tmpl_lookup(c, &t->key);
	if (old != NULL &&
	    nm_tmpl_same_fields(old, t->fields, t->n_fields, t->n_scope, t->is_options)) {
		uatomic_inc(&c->st.refreshed);
		if (now > old->last_seen)
			CMM_STORE_SHARED(((struct nm_tmpl *)(uintptr_t)old)->last_seen, now);
		ret = 0;
		goto out;
	}
	ret = -ENOSPC;
	if (old == NULL) {
		e = exp_of(c, &t->key);
		if (e == NULL) {
			c->st.refused_exporters++;
			goto out;
		}
		if (e->n_templates >= c->p.max_templates_per_exporter) {
			c->st.refused_exporter++;
			goto out;
		}
		if (c->st.templates >= c->p.max_templates) {
			c->st.refused_total++;
			goto out;
		}
	}
	s = slot_take(c, sz);
	if (s == NULL) {
		c->st.refused_memory++;
		goto out;
	}
	nt = (struct nm_tmpl *)s->t;
	memcpy(nt, t, hdr);
	nt->fields = (struct nm_tmpl_field *)((uint8_t *)nt + hdr);
	memcpy(nt->fields, t->fields, (size_t)t->n_fields * sizeof(*t->fields));
	nt->last_seen = now;
	nt->change_logged = 0;
	if (old != NULL) {
		/*
		 * Same id, another layout: legitimate after an exporter's reconfiguration, and
		 * what a spoofer does to poison a router's decoding. Counted each time, queued for
		 * the log the first time per key (the flag travels with the replacements).
		 */
		c->st.changed++;
		nt->change_logged = old->change_logged || change_queue(c, old, nt, now);
	}
	s->live = 1;
	if (e != NULL) {
		if (e->n_templates++ == 0)
			c->st.exporters++;
		c->st.templates++;
	}
	rep = cds_lfht_add_replace(c->ht, h, tmpl_match, &nt->key, &nt->node);
	if (e == NULL)
		e = exp_of(c, &nt->key); /* a replacement: the entry exists */
	if (rep != NULL) {
		struct nm_tmpl *ot = caa_container_of(rep, struct nm_tmpl, node);

		if (e != NULL)
			exp_unlink(e, ot);
		slot_of(ot)->live = 0;
		call_rcu(&ot->rcu, tmpl_free_rcu);
	}
	if (e != NULL)
		exp_link(e, nt);
	c->st.published++;
	ret = 1;
out:
	pthread_mutex_unlock(&c->wlock);
	return ret;
}

/* Remove t from the table and account for it (the caller counts why). Under wlock. */
static void
tmpl_remove(struct nm_tmpl_cache *c, struct nm_tmpl *t)
{
	struct nm_exp_entry *e;

	if (cds_lfht_del(c->ht, &t->node) != 0)
		return;
	slot_of(t)->live = 0;
	e = exp_of(c, &t->key);
	if (e != NULL)
		exp_unlink(e, t);
	if (e != NULL && e->n_templates > 0 && --e->n_templates == 0)
		c->st.exporters--;
	c->st.templates--;
	call_rcu(&t->rcu, tmpl_free_rcu);
}

int
nm_tmpl_withdraw(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k)
{
	struct nm_tmpl *t;
	int ret = 0;

	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	t = (struct nm_tmpl *)nm_tmpl_lookup(c, k);
	if (t != NULL) {
		tmpl_remove(c, t);
		c->st.withdrawn++;
		ret = 1;
	}
	pthread_mutex_unlock(&c->wlock);
	return ret;
}

int
nm_tmpl_withdraw_all(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		     uint8_t proto, int options)
{
	struct nm_tmpl_key k;
	struct nm_exp_entry *e;
	struct nm_tmpl *t, *next;
	int n = 0;

	memset(&k, 0, sizeof(k));
	memcpy(k.exporter, exporter, NM_ADDR_LEN);
	k.domain = domain;
	k.proto = proto;
	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	/*
	 * One walk of this (exporter, domain)'s own templates (at most max_templates_per_exporter),
	 * not of the whole cache: a datagram full of 4-byte withdraw-all records used to walk every
	 * exporter's templates once per record under this mutex. No entry: it has no template.
	 */
	e = exp_of(c, &k);
	for (t = e != NULL ? e->tmpl_list : NULL; t != NULL; t = next) {
		next = t->exp_next;
		c->st.withdraw_visited++;
		if (!!t->is_options == !!options) {
			tmpl_remove(c, t);
			c->st.withdrawn++;
			n++;
		}
	}
	pthread_mutex_unlock(&c->wlock);
	return n;
}

int
nm_tmpl_exp_release(void *cache, struct nm_exp_entry *e, nm_exp_detach_fn detach, void *arg)
{
	struct nm_tmpl_cache *c = cache;
	struct nm_tmpl *t, *next;
	int n = 0;

	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	/* The list is e's own (no exp_of: that would find e, or make a new entry). */
	for (t = e->tmpl_list; t != NULL; t = next) {
		next = t->exp_next;
		t->exp_next = t->exp_prev = NULL;
		if (cds_lfht_del(c->ht, &t->node) != 0)
			continue;
		slot_of(t)->live = 0; /* the idle sweep leaves it alone (see tmpl_remove) */
		c->st.templates--;
		c->st.withdrawn++;
		call_rcu(&t->rcu, tmpl_free_rcu);
		n++;
	}
	e->tmpl_list = NULL;
	if (e->n_templates != 0)
		c->st.exporters--;
	e->n_templates = 0;
	/*
	 * Under the mutex: every writer finds entries (exp_of, rate_owner) with it held, so none
	 * links a template into e between the walk above and e leaving the exporter table.
	 */
	detach(e, arg);
	pthread_mutex_unlock(&c->wlock);
	return n;
}

static int
rate_match(struct cds_lfht_node *node, const void *key)
{
	const struct rate_ent *r = caa_container_of(node, struct rate_ent, node);

	return memcmp(&r->key, key, sizeof(r->key)) == 0;
}

static struct rate_ent *
rate_find(struct nm_tmpl_cache *c, const struct rate_key *k)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;

	cds_lfht_lookup(c->rates, nm_hash_words(k, sizeof(*k)), rate_match, k, &it);
	n = cds_lfht_iter_get_node(&it);
	return n == NULL ? NULL : caa_container_of(n, struct rate_ent, node);
}

static void
rate_key_fill(struct rate_key *k, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
	      uint32_t sampler_id)
{
	memset(k, 0, sizeof(*k));
	memcpy(k->exporter, exporter, NM_ADDR_LEN);
	k->domain = domain;
	k->sampler_id = sampler_id;
}

uint64_t
nm_tmpl_rate_lookup(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		    uint32_t sampler_id)
{
	const struct rate_ent *r;
	struct rate_key k;

	if (CMM_LOAD_SHARED(c->st.rates) == 0)
		return 0;
	rate_key_fill(&k, exporter, domain, sampler_id);
	r = rate_find(c, &k);
	return r == NULL ? 0 : CMM_LOAD_SHARED(r->rate);
}

/*
 * The exporter entry a rate counts against. Rates are keyed (address, domain) for both
 * protocols; options data only decodes under an options template, whose publication made the
 * IPFIX or v9 entry of (address, domain), so one of them exists (IPFIX looked up first). NULL
 * when neither does (the exporter table was full): the rate is refused, as its template was.
 */
static struct nm_exp_entry *
rate_owner(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain)
{
	struct nm_exp_key ek;
	struct nm_exp_entry *e;

	memset(&ek, 0, sizeof(ek));
	memcpy(ek.addr, exporter, NM_ADDR_LEN);
	ek.domain = domain;
	ek.type = NM_FLOW_IPFIX;
	e = nm_exp_find(c->exp, &ek);
	if (e == NULL) {
		ek.type = NM_FLOW_NF9;
		e = nm_exp_find(c->exp, &ek);
	}
	return e;
}

/* The entry r was counted against (the same key, not a lookup that may now find another). */
static struct nm_exp_entry *
rate_owner_of(struct nm_tmpl_cache *c, const struct rate_ent *r)
{
	struct nm_exp_key ek;

	memset(&ek, 0, sizeof(ek));
	memcpy(ek.addr, r->key.exporter, NM_ADDR_LEN);
	ek.domain = r->key.domain;
	ek.type = r->owner_type;
	return nm_exp_find(c->exp, &ek);
}

/* call_rcu callback: no reader sees the rate entry any more; back to the free list. */
static void
rate_free_rcu(struct rcu_head *h)
{
	struct rate_ent *r = caa_container_of(h, struct rate_ent, rcu);
	struct nm_tmpl_cache *c = r->c;

	pthread_mutex_lock(&c->wlock);
	r->next = c->rate_free;
	c->rate_free = r;
	pthread_mutex_unlock(&c->wlock);
}

/* A rate entry from the free list, else a fresh one; NULL when every entry is in use. */
static struct rate_ent *
rate_take(struct nm_tmpl_cache *c)
{
	struct rate_ent *r = c->rate_free;

	if (r != NULL) {
		c->rate_free = r->next;
		return r;
	}
	if (c->rate_used >= c->p.max_rates)
		return NULL;
	return &c->rpool[c->rate_used++];
}

int
nm_tmpl_rate_set(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		 uint32_t sampler_id, uint64_t rate, uint64_t now)
{
	struct nm_exp_entry *e;
	struct rate_ent *r;
	struct rate_key k;
	int ret = 0;

	rate_key_fill(&k, exporter, domain, sampler_id);
	/* Exporters repeat their options data every few seconds: unchanged rates cost no lock. */
	clock_note(c, now);
	r = rate_find(c, &k);
	if (r != NULL && CMM_LOAD_SHARED(r->rate) == rate) {
		if (now > CMM_LOAD_SHARED(r->last_seen))
			CMM_STORE_SHARED(r->last_seen, now);
		return 0;
	}
	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	r = rate_find(c, &k);
	if (r != NULL) {
		/* A changed rate: one aligned store, readers see the old or the new value. */
		CMM_STORE_SHARED(r->rate, rate);
		if (now > r->last_seen)
			CMM_STORE_SHARED(r->last_seen, now);
	} else if ((e = rate_owner(c, exporter, domain)) == NULL ||
		   e->n_rates >= c->p.max_rates_per_exporter) {
		/* One exporter's options data (65,536 sampler ids) must not fill the table that
		 * every exporter's rates live in. */
		c->st.rates_refused_exporter++;
		ret = -ENOSPC;
	} else if (c->st.rates >= c->p.max_rates || (r = rate_take(c)) == NULL) {
		/* Entries expired in the last grace period are not back yet: refused too. */
		c->st.rates_refused++;
		ret = -ENOSPC;
	} else {
		e->n_rates++;
		r->key = k;
		r->rate = rate;
		r->last_seen = now;
		r->c = c;
		r->live = 1;
		r->owner_type = e->key.type;
		cds_lfht_node_init(&r->node);
		cds_lfht_add(c->rates, nm_hash_words(&k, sizeof(k)), &r->node);
		CMM_STORE_SHARED(c->st.rates, c->st.rates + 1);
	}
	pthread_mutex_unlock(&c->wlock);
	return ret;
}

static int
same_domain(const struct nm_tmpl_key *a, const struct nm_tmpl_key *b)
{
	return a->domain == b->domain && a->proto == b->proto &&
	       memcmp(a->exporter, b->exporter, NM_ADDR_LEN) == 0;
}

/* Held longer than hold_s at now (a set from a later second than now is not). */
static int
pend_stale(const struct nm_tmpl_cache *c, const struct pend_slot *s, uint64_t now)
{
	return now > s->p.time_received && now - s->p.time_received > c->p.hold_s;
}

/* Drop a stale held set. Under plock. */
static void
pend_expire(struct nm_tmpl_cache *c, struct pend_slot *s)
{
	s->age = 0;
	CMM_STORE_SHARED(c->pend_count, c->pend_count - 1);
	c->st.pending_expired++;
}

int
nm_tmpl_pending_put(struct nm_tmpl_cache *c, const struct nm_tmpl_pending *p)
{
	struct pend_slot *free_slot = NULL, *oldest = NULL;
	unsigned int i, same = 0;
	int ret = 0;

	if (p->len > NM_TMPL_PENDING_MAX_LEN)
		return -EMSGSIZE;
	clock_note(c, p->time_received);
	pthread_mutex_lock(&c->plock);
	for (i = 0; i < c->p.max_pending; i++) {
		struct pend_slot *s = &c->pend[i];

		if (s->age != 0 && pend_stale(c, s, p->time_received))
			pend_expire(c, s);
		if (s->age == 0) {
			if (free_slot == NULL)
				free_slot = s;
			continue;
		}
		if (same_domain(&s->p.key, &p->key)) {
			same++;
			if (oldest == NULL || s->age < oldest->age)
				oldest = s;
		}
	}
	if (same >= c->p.max_pending_per_domain) {
		/* The newest data is worth more: the template is likelier to come for it. */
		free_slot = oldest;
		c->pend_count--;
		c->st.pending_evicted++;
		ret = 1;
	} else if (free_slot == NULL) {
		c->st.pending_refused++;
		pthread_mutex_unlock(&c->plock);
		return -ENOSPC;
	}
	free_slot->age = ++c->pend_age;
	memcpy(&free_slot->p, p, offsetof(struct nm_tmpl_pending, data) + p->len);
	CMM_STORE_SHARED(c->pend_count, c->pend_count + 1);
	pthread_mutex_unlock(&c->plock);
	return ret;
}

unsigned int
nm_tmpl_pending_take(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k, uint64_t now,
		     struct nm_tmpl_pending *out, unsigned int max)
{
	unsigned int n = 0;

	if (CMM_LOAD_SHARED(c->pend_count) == 0)
		return 0;
	pthread_mutex_lock(&c->plock);
	while (n < max) {
		struct pend_slot *best = NULL;
		unsigned int i;

		for (i = 0; i < c->p.max_pending; i++) {
			struct pend_slot *s = &c->pend[i];

			if (s->age == 0 || memcmp(&s->p.key, k, sizeof(*k)) != 0)
				continue;
			/* Its template came too late: decoding it now would be a guess. */
			if (pend_stale(c, s, now)) {
				pend_expire(c, s);
				continue;
			}
			if (best == NULL || s->age < best->age)
				best = s;
		}
		if (best == NULL)
			break;
		memcpy(&out[n++], &best->p, offsetof(struct nm_tmpl_pending, data) + best->p.len);
		best->age = 0;
		CMM_STORE_SHARED(c->pend_count, c->pend_count - 1);
	}
	pthread_mutex_unlock(&c->plock);
	return n;
}

unsigned int
nm_tmpl_pending_per_domain(const struct nm_tmpl_cache *c)
{
	return c->p.max_pending_per_domain;
}

/* The template sweep's share of one call: up to budget slots from sweep_off. Under wlock. */
static unsigned int
sweep_templates(struct nm_tmpl_cache *c, uint64_t cutoff, unsigned int budget,
		unsigned int *visited)
{
	unsigned int removed = 0;

	while (*visited < budget && c->sweep_off < c->arena_used) {
		struct slot *s = (struct slot *)(c->arena + c->sweep_off);
		struct nm_tmpl *t = (struct nm_tmpl *)s->t;

		c->sweep_off += (size_t)1 << (POOL_MIN_SHIFT + s->cls);
		(*visited)++;
		if (s->live && CMM_LOAD_SHARED(t->last_seen) <= cutoff) {
			tmpl_remove(c, t);
			c->st.expired++;
			removed++;
		}
	}
	return removed;
}

/* The rate sweep's share, from sweep_rate. Under wlock. */
static unsigned int
sweep_rates(struct nm_tmpl_cache *c, uint64_t cutoff, unsigned int budget, unsigned int *visited)
{
	unsigned int removed = 0;

	while (*visited < budget && c->sweep_rate < c->rate_used) {
		struct rate_ent *r = &c->rpool[c->sweep_rate++];
		struct nm_exp_entry *e;

		(*visited)++;
		if (!r->live || CMM_LOAD_SHARED(r->last_seen) > cutoff)
			continue;
		if (cds_lfht_del(c->rates, &r->node) != 0)
			continue;
		r->live = 0;
		e = rate_owner_of(c, r);
		if (e != NULL && e->n_rates > 0)
			e->n_rates--;
		CMM_STORE_SHARED(c->st.rates, c->st.rates - 1);
		c->st.rates_expired++;
		call_rcu(&r->rcu, rate_free_rcu);
		removed++;
	}
	return removed;
}

unsigned int
nm_tmpl_expire(struct nm_tmpl_cache *c, uint64_t now, unsigned int budget)
{
	uint64_t clk = CMM_LOAD_SHARED(c->clock), cutoff;
	unsigned int removed = 0, visited = 0, i;

	if (clk < now)
		now = clk;
	if (CMM_LOAD_SHARED(c->pend_count) != 0) {
		pthread_mutex_lock(&c->plock);
		for (i = 0; i < c->p.max_pending; i++)
			if (c->pend[i].age != 0 && pend_stale(c, &c->pend[i], now)) {
				pend_expire(c, &c->pend[i]);
				removed++;
			}
		pthread_mutex_unlock(&c->plock);
	}
	if (now < c->p.template_timeout_s || budget == 0)
		return removed;
	cutoff = now - c->p.template_timeout_s; /* idle since cutoff or before: expired */
	pthread_mutex_lock(&c->wlock);
	c->st.writer_entries++;
	/* Templates, then rates; at the end of a lap the next call starts again. */
	removed += sweep_templates(c, cutoff, budget, &visited);
	removed += sweep_rates(c, cutoff, budget, &visited);
	if (c->sweep_off >= c->arena_used && c->sweep_rate >= c->rate_used) {
		c->sweep_off = 0;
		c->sweep_rate = 0;
	}
	c->st.expire_visited += visited;
	pthread_mutex_unlock(&c->wlock);
	return removed;
}
