/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Template cache, sampling rates and held data sets shared by the RX threads (see tmpl.h).
 *
 * Readers (every data set) only do cds_lfht_lookup() under the QSBR read side, which costs no
 * shared write. Writers are template sets, options data that changes a rate and withdrawals: rare,
 * so one mutex serialises them and the bookkeeping that only writers read (per-exporter template
 * counts) needs no atomics. Held data sets live in a fixed pool allocated at creation: the pool is
 * touched only when a data set has no template or a template arrives while sets are held.
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

struct exp_slot {
	uint8_t addr[NM_ADDR_LEN];
	uint32_t n_templates;
	uint8_t used;
};

struct rate_key {
	uint8_t exporter[NM_ADDR_LEN];
	uint32_t domain;
	uint32_t sampler_id;
};

struct rate_ent {
	struct cds_lfht_node node;
	struct rcu_head rcu;
	struct rate_key key;
	uint64_t rate;
};

struct pend_slot {
	uint64_t age; /* insertion order; 0 = free */
	struct nm_tmpl_pending p;
};

struct nm_tmpl_cache {
	struct nm_tmpl_params p;
	struct cds_lfht *ht;	/* struct nm_tmpl */
	struct cds_lfht *rates; /* struct rate_ent */
	pthread_mutex_t wlock;	/* templates, rates, exporter table */
	struct exp_slot *exps;	/* open addressing, writer-only */
	unsigned int exps_mask;
	struct nm_tmpl_cache_stats st; /* writers update under wlock / plock; readers racy */

	pthread_mutex_t plock; /* the held-set pool */
	struct pend_slot *pend;
	uint64_t pend_age;
	unsigned long pend_count; /* read without the lock as a hint */
};

_Static_assert(sizeof(struct nm_tmpl_key) == 24, "nm_tmpl_key layout");
_Static_assert(sizeof(struct rate_key) == 24, "rate_key layout");

struct nm_tmpl *
nm_tmpl_alloc(unsigned int n_steps, unsigned int n_fields)
{
	size_t sz = sizeof(struct nm_tmpl) + (size_t)n_steps * sizeof(struct nm_tmpl_step);
	struct nm_tmpl *t;

	/* Fields go after the steps, aligned for their 32-bit member. */
	sz = (sz + 3) & ~(size_t)3;
	t = calloc(1, sz + (size_t)n_fields * sizeof(struct nm_tmpl_field));
	if (t == NULL)
		return NULL;
	t->fields = (struct nm_tmpl_field *)((uint8_t *)t + sz);
	return t;
}

void
nm_tmpl_free(struct nm_tmpl *t)
{
	free(t);
}

static void
tmpl_free_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct nm_tmpl, rcu));
}

static void
rate_free_rcu(struct rcu_head *h)
{
	free(caa_container_of(h, struct rate_ent, rcu));
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
	/* Presized so that the steady state never resizes on an RX thread. */
	buckets = pow2_at_least(c->p.max_templates < 4096 ? c->p.max_templates : 4096);
	c->ht = cds_lfht_new(buckets, buckets, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	c->rates = cds_lfht_new(256, 256, 0, CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, NULL);
	c->exps_mask = pow2_at_least(c->p.max_exporters * 2) - 1;
	c->exps = calloc((size_t)c->exps_mask + 1, sizeof(*c->exps));
	c->pend = calloc(c->p.max_pending, sizeof(*c->pend));
	if (c->ht == NULL || c->rates == NULL || c->exps == NULL || c->pend == NULL) {
		nm_tmpl_cache_free(c);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&c->wlock, NULL);
	pthread_mutex_init(&c->plock, NULL);
	return c;
}

void
nm_tmpl_cache_free(struct nm_tmpl_cache *c)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n;
	struct nm_tmpl *t;
	struct rate_ent *r;
	int online;

	if (c == NULL)
		return;
	/*
	 * Nobody reads any more. Unlink everything, then let pending call_rcu callbacks run; QSBR
	 * forbids rcu_barrier() from an online reader, so go offline around it if we are one.
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
	if (c->rates != NULL) {
		for (cds_lfht_first(c->rates, &it); (n = cds_lfht_iter_get_node(&it)) != NULL;
		     cds_lfht_next(c->rates, &it)) {
			r = caa_container_of(n, struct rate_ent, node);
			cds_lfht_del(c->rates, n);
			call_rcu(&r->rcu, rate_free_rcu);
		}
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
	free(c->exps);
	free(c->pend);
	free(c);
}

void
nm_tmpl_cache_get_stats(const struct nm_tmpl_cache *c, struct nm_tmpl_cache_stats *st)
{
	*st = c->st;
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

/* The exporter's slot, created when absent; NULL when the table is full. Under wlock. */
static struct exp_slot *
exp_get(struct nm_tmpl_cache *c, const uint8_t addr[NM_ADDR_LEN], int create)
{
	unsigned int i = (unsigned int)nm_hash_words(addr, NM_ADDR_LEN) & c->exps_mask;

	for (;;) {
		struct exp_slot *s = &c->exps[i];

		if (!s->used) {
			if (!create || c->st.exporters >= c->p.max_exporters)
				return NULL;
			s->used = 1;
			memcpy(s->addr, addr, NM_ADDR_LEN);
			c->st.exporters++;
			return s;
		}
		if (memcmp(s->addr, addr, NM_ADDR_LEN) == 0)
			return s;
		i = (i + 1) & c->exps_mask;
	}
}

static int
same_layout(const struct nm_tmpl *a, const struct nm_tmpl *b)
{
	return a->n_fields == b->n_fields && a->n_scope == b->n_scope &&
	       a->is_options == b->is_options &&
	       memcmp(a->fields, b->fields, a->n_fields * sizeof(*a->fields)) == 0;
}

int
nm_tmpl_publish(struct nm_tmpl_cache *c, struct nm_tmpl *t)
{
	unsigned long h = nm_hash_words(&t->key, sizeof(t->key));
	const struct nm_tmpl *old;
	struct cds_lfht_node *rep;
	struct exp_slot *e;
	int ret = 1;

	pthread_mutex_lock(&c->wlock);
	old = nm_tmpl_lookup(c, &t->key);
	if (old != NULL && same_layout(old, t)) {
		c->st.refreshed++;
		ret = 0;
		goto drop;
	}
	if (old == NULL) {
		e = exp_get(c, t->key.exporter, 1);
		if (e == NULL) {
			c->st.refused_exporters++;
			ret = -ENOSPC;
			goto drop;
		}
		if (e->n_templates >= c->p.max_templates_per_exporter) {
			c->st.refused_exporter++;
			ret = -ENOSPC;
			goto drop;
		}
		if (c->st.templates >= c->p.max_templates) {
			c->st.refused_total++;
			ret = -ENOSPC;
			goto drop;
		}
		e->n_templates++;
		c->st.templates++;
	}
	rep = cds_lfht_add_replace(c->ht, h, tmpl_match, &t->key, &t->node);
	if (rep != NULL)
		call_rcu(&caa_container_of(rep, struct nm_tmpl, node)->rcu, tmpl_free_rcu);
	c->st.published++;
	pthread_mutex_unlock(&c->wlock);
	return 1;
drop:
	pthread_mutex_unlock(&c->wlock);
	free(t);
	return ret;
}

/* Remove t from the table and account for it. Under wlock. */
static void
tmpl_remove(struct nm_tmpl_cache *c, struct nm_tmpl *t)
{
	struct exp_slot *e;

	if (cds_lfht_del(c->ht, &t->node) != 0)
		return;
	e = exp_get(c, t->key.exporter, 0);
	if (e != NULL && e->n_templates > 0)
		e->n_templates--;
	c->st.templates--;
	c->st.withdrawn++;
	call_rcu(&t->rcu, tmpl_free_rcu);
}

int
nm_tmpl_withdraw(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k)
{
	struct nm_tmpl *t;
	int ret = 0;

	pthread_mutex_lock(&c->wlock);
	t = (struct nm_tmpl *)nm_tmpl_lookup(c, k);
	if (t != NULL) {
		tmpl_remove(c, t);
		ret = 1;
	}
	pthread_mutex_unlock(&c->wlock);
	return ret;
}

int
nm_tmpl_withdraw_all(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		     uint8_t proto, int options)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *n_;
	struct nm_tmpl *t;
	int n = 0;

	pthread_mutex_lock(&c->wlock);
	/*
	 * Not cds_lfht_for_each_entry(): it forms container_of(NULL) at the end, which UBSan
	 * (rightly) reports; walk the nodes and convert only non-NULL ones.
	 */
	for (cds_lfht_first(c->ht, &it); (n_ = cds_lfht_iter_get_node(&it)) != NULL;
	     cds_lfht_next(c->ht, &it)) {
		t = caa_container_of(n_, struct nm_tmpl, node);
		if (t->key.domain == domain && t->key.proto == proto &&
		    !!t->is_options == !!options &&
		    memcmp(t->key.exporter, exporter, NM_ADDR_LEN) == 0) {
			tmpl_remove(c, t);
			n++;
		}
	}
	pthread_mutex_unlock(&c->wlock);
	return n;
}

static int
rate_match(struct cds_lfht_node *node, const void *key)
{
	const struct rate_ent *r = caa_container_of(node, struct rate_ent, node);

	return memcmp(&r->key, key, sizeof(r->key)) == 0;
}

static const struct rate_ent *
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
	return r == NULL ? 0 : r->rate;
}

int
nm_tmpl_rate_set(struct nm_tmpl_cache *c, const uint8_t exporter[NM_ADDR_LEN], uint32_t domain,
		 uint32_t sampler_id, uint64_t rate)
{
	const struct rate_ent *old;
	struct cds_lfht_node *rep;
	struct rate_ent *r;
	struct rate_key k;

	rate_key_fill(&k, exporter, domain, sampler_id);
	/* Exporters repeat their options data every few seconds: unchanged rates cost no lock. */
	old = rate_find(c, &k);
	if (old != NULL && old->rate == rate)
		return 0;
	pthread_mutex_lock(&c->wlock);
	old = rate_find(c, &k);
	if (old == NULL && c->st.rates >= c->p.max_rates) {
		c->st.rates_refused++;
		pthread_mutex_unlock(&c->wlock);
		return -ENOSPC;
	}
	r = calloc(1, sizeof(*r));
	if (r == NULL) {
		pthread_mutex_unlock(&c->wlock);
		return -ENOMEM;
	}
	r->key = k;
	r->rate = rate;
	rep = cds_lfht_add_replace(c->rates, nm_hash_words(&k, sizeof(k)), rate_match, &k,
				   &r->node);
	if (rep != NULL)
		call_rcu(&caa_container_of(rep, struct rate_ent, node)->rcu, rate_free_rcu);
	else
		CMM_STORE_SHARED(c->st.rates, c->st.rates + 1);
	pthread_mutex_unlock(&c->wlock);
	return 0;
}

static int
same_domain(const struct nm_tmpl_key *a, const struct nm_tmpl_key *b)
{
	return a->domain == b->domain && a->proto == b->proto &&
	       memcmp(a->exporter, b->exporter, NM_ADDR_LEN) == 0;
}

int
nm_tmpl_pending_put(struct nm_tmpl_cache *c, const struct nm_tmpl_pending *p)
{
	struct pend_slot *free_slot = NULL, *oldest = NULL;
	unsigned int i, same = 0;
	int ret = 0;

	if (p->len > NM_TMPL_PENDING_MAX_LEN)
		return -EMSGSIZE;
	pthread_mutex_lock(&c->plock);
	for (i = 0; i < c->p.max_pending; i++) {
		struct pend_slot *s = &c->pend[i];

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
nm_tmpl_pending_take(struct nm_tmpl_cache *c, const struct nm_tmpl_key *k,
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

			if (s->age != 0 && memcmp(&s->p.key, k, sizeof(*k)) == 0 &&
			    (best == NULL || s->age < best->age))
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
