/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-exporter state, sampling-rate overrides and sFlow interface counters (see exporter.h).
 *
 * Both dynamic tables are a cds_lfht created at its final size without CDS_LFHT_AUTO_RESIZE
 * (buckets allocated once, never resized on the hot path) over a pool of cache-aligned entries
 * allocated at creation. A new key takes the next pool slot with one atomic increment and is
 * published with cds_lfht_add_unique(); when two lcores race on the same new key, the loser's
 * slot goes straight back to the free list (it was never published, so no reader can hold it).
 *
 * Slots come back through expiry (nm_exp_expire): the entry leaves the hash table and, after a
 * grace period (call_rcu), its slot is zeroed and pushed on a lock-free stack of free slot
 * indices. The stack's head packs a 32-bit tag with the index, and every push and pop bumps the
 * tag, so a compare-and-swap that read a stale head fails (no ABA). Lock-free rather than a
 * mutex on the new-exporter path: under a flood of new sources every datagram takes that path,
 * and a mutex there would make every RX lcore contend (and sleep in the kernel) for it; a pop
 * costs one load when the stack is empty and one compare-and-swap otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define _LGPL_SOURCE /* rcu_dereference() inlined: it is on the per-datagram path */
#include <urcu-qsbr.h>
#include <urcu/rculfhash.h>
#include <urcu/uatomic.h>

#include "../base/hash.h"
#include "exporter.h"

/* A configured exporter: its override, name and description. */
struct ovr_slot {
	uint8_t addr[NM_ADDR_LEN];
	uint64_t rate;
	char name[64];
	char description[256];
	uint8_t used;
};

/* A configured interface name, keyed by (exporter address, ifIndex). */
struct ifn_slot {
	uint8_t addr[NM_ADDR_LEN];
	uint32_t if_index;
	uint8_t used;
	char name[64];
};

/*
 * One version of what the configuration says about exporters. Two open-addressing arrays sized
 * at twice their capacity (probes stay short), allocated with the header in one block. Built by
 * the control thread, immutable once published; replaced as a whole.
 */
struct nm_exp_conf {
	uint64_t version;
	unsigned int max_ovr, n_ovr, ovr_mask;
	unsigned int max_ifn, n_ifn, ifn_mask;
	struct ovr_slot *ovr;
	struct ifn_slot *ifn;
};
/* state: 0 free, 1 being written, 2 published. cfg: configured (never rebound). */
struct agent_slot {
	uint8_t agent[NM_ADDR_LEN];
	uint8_t src[NM_ADDR_LEN];
	uint32_t state;
	uint32_t cfg;
};

#define AGENT_PROBES 8

/*
 * Free pool slots: a lock-free stack of slot indices. head: tag << 32 | (index + 1), 0 in the low
 * half when empty; next[i]: the index + 1 below slot i.
 */
struct free_stack {
	uint64_t head;
	uint32_t *next;
};

struct iface_key {
	uint8_t agent[NM_ADDR_LEN];
	uint32_t if_index;
};

struct nm_exp_table {
	struct nm_exp_params p;
	struct cds_lfht *ht; /* struct nm_exp_entry */
	struct nm_exp_entry *pool;
	unsigned long next;	/* pool slots handed out (may pass max: overflow) */
	struct free_stack free; /* recycled exporter slots */
	uint64_t in_use;	/* entries in the hash table */
	uint64_t expired;
	unsigned long sweep_pos; /* next slot nm_exp_expire visits */
	uint64_t sweep_now;	 /* now of its last call */
	int swept;
	nm_exp_release_fn release;
	void *release_ctx;
	struct cds_lfht *iht; /* struct nm_exp_iface */
	struct nm_exp_iface *ipool;
	unsigned long inext;
	struct free_stack ifree; /* recycled interface slots */
	uint64_t iin_use;
	uint64_t iexpired;
	unsigned long isweep_pos;
	struct nm_exp_conf *conf; /* RCU-protected: rcu_dereference to read, nm_exp_publish */
	unsigned int configured;  /* exporters in conf, for readers that are not RCU readers */
	uint64_t allow[NM_EXP_MAX_ALLOW][4]; /* prefix hi, lo, mask hi, lo (host order) */
	unsigned int n_allow;
	struct agent_slot *agents; /* see nm_exp_agent_check() */
	unsigned int agent_mask;
	uint64_t n_agents;
	uint64_t agent_mismatch;
	uint64_t agent_full;
	uint64_t agents_expired;   /* learned bindings dropped with their agent's entry */
	uint64_t rejected_unknown; /* datagrams rejected whole from no known exporter */
	uint64_t overflow;
	uint64_t iface_overflow;
};

static unsigned long
pow2_at_least(unsigned long n)
{
	unsigned long v = 1;

	while (v < n)
		v <<= 1;
	return v;
}

struct nm_exp_table *
nm_exp_create(const struct nm_exp_params *p)
{
	struct nm_exp_table *t = calloc(1, sizeof(*t));
	unsigned long size;

	if (t == NULL)
		return NULL;
	t->p = *p;
	if (t->p.max_exporters == 0)
		t->p.max_exporters = 4096;
	if (t->p.max_ifaces == 0)
		t->p.max_ifaces = 16384;
	if (t->p.max_overrides == 0)
		t->p.max_overrides = 1024;
	if (t->p.max_ifnames == 0)
		t->p.max_ifnames = 4096;
	if (t->p.default_sampling_rate == 0)
		t->p.default_sampling_rate = 1;
	if (t->p.max_agents == 0)
		t->p.max_agents = 4096;
	t->agent_mask = (unsigned int)pow2_at_least(2UL * t->p.max_agents) - 1;
	t->agents = calloc((size_t)t->agent_mask + 1, sizeof(*t->agents));
	size = pow2_at_least(t->p.max_exporters);
	t->ht = cds_lfht_new(size, size, size, 0, NULL);
	size = pow2_at_least(t->p.max_ifaces);
	t->iht = cds_lfht_new(size, size, size, 0, NULL);
	t->pool = aligned_alloc(64, sizeof(*t->pool) * t->p.max_exporters);
	t->free.next = calloc(t->p.max_exporters, sizeof(*t->free.next));
	t->ifree.next = calloc(t->p.max_ifaces, sizeof(*t->ifree.next));
	t->ipool = aligned_alloc(64, sizeof(*t->ipool) * t->p.max_ifaces);
	t->conf = nm_exp_conf_create(t->p.max_overrides, t->p.max_ifnames, 0);
	if (t->ht == NULL || t->iht == NULL || t->pool == NULL || t->ipool == NULL ||
	    t->conf == NULL || t->agents == NULL || t->free.next == NULL || t->ifree.next == NULL) {
		nm_exp_free(t);
		errno = ENOMEM;
		return NULL;
	}
	memset(t->pool, 0, sizeof(*t->pool) * t->p.max_exporters);
	memset(t->ipool, 0, sizeof(*t->ipool) * t->p.max_ifaces);
	for (size = 0; size < t->p.max_exporters; size++)
		t->pool[size].tab = t;
	for (size = 0; size < t->p.max_ifaces; size++)
		t->ipool[size].tab = t;
	return t;
}

void
nm_exp_free(struct nm_exp_table *t)
{
	if (t == NULL)
		return;
	/*
	 * Expired slots still waiting for their grace period are written by call_rcu callbacks:
	 * wait for them. liburcu's rcu_barrier() refuses (warns and returns) on a thread that is an
	 * online QSBR reader, so the caller goes offline for it.
	 */
	if (uatomic_read(&t->expired) + uatomic_read(&t->iexpired) != 0) {
		int online = rcu_read_ongoing();

		if (online)
			rcu_thread_offline();
		rcu_barrier();
		if (online)
			rcu_thread_online();
	}
	/* Nodes live in the pools: nothing to call_rcu, the tables only need their buckets. */
	if (t->ht != NULL) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *n;

		cds_lfht_for_each(t->ht, &it, n)(void) cds_lfht_del(t->ht, n);
		(void)cds_lfht_destroy(t->ht, NULL);
	}
	if (t->iht != NULL) {
		struct cds_lfht_iter it;
		struct cds_lfht_node *n;

		cds_lfht_for_each(t->iht, &it, n)(void) cds_lfht_del(t->iht, n);
		(void)cds_lfht_destroy(t->iht, NULL);
	}
	free(t->pool);
	free(t->free.next);
	free(t->ifree.next);
	free(t->ipool);
	nm_exp_conf_free(t->conf);
	free(t->agents);
	free(t);
}

struct nm_exp_conf *
nm_exp_conf_create(unsigned int max_exporters, unsigned int max_ifnames, uint64_t version)
{
	unsigned long no = pow2_at_least(2UL * (max_exporters ? max_exporters : 1));
	unsigned long ni = pow2_at_least(2UL * (max_ifnames ? max_ifnames : 1));
	struct nm_exp_conf *c;
	size_t size = sizeof(*c) + no * sizeof(struct ovr_slot) + ni * sizeof(struct ifn_slot);

	c = calloc(1, size);
	if (c == NULL)
		return NULL;
	c->version = version;
	c->max_ovr = max_exporters;
	c->ovr_mask = (unsigned int)no - 1;
	c->max_ifn = max_ifnames;
	c->ifn_mask = (unsigned int)ni - 1;
	c->ovr = (struct ovr_slot *)(void *)(c + 1);
	c->ifn = (struct ifn_slot *)(void *)(c->ovr + no);
	return c;
}

void
nm_exp_conf_free(struct nm_exp_conf *c)
{
	if (c == NULL)
		return;
	/*
	 * Emptied first: a reader that outlived its grace period (a bug) then finds no exporter
	 * configured -- its rate drops to the default, which test_exporter's readers notice --
	 * rather than looping over slots of garbage.
	 */
	memset(c->ovr, 0, ((size_t)c->ovr_mask + 1) * sizeof(*c->ovr));
	memset(c->ifn, 0, ((size_t)c->ifn_mask + 1) * sizeof(*c->ifn));
	free(c);
}

uint64_t
nm_exp_conf_version(const struct nm_exp_conf *c)
{
	return c->version;
}

int
nm_exp_conf_add(struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN], uint64_t rate,
		const char *name, const char *description)
{
	unsigned int i = (unsigned int)nm_hash_words(addr, NM_ADDR_LEN) & c->ovr_mask;

	for (;; i = (i + 1) & c->ovr_mask) {
		struct ovr_slot *s = &c->ovr[i];

		if (!s->used) {
			if (c->n_ovr >= c->max_ovr)
				return -ENOSPC;
			memcpy(s->addr, addr, NM_ADDR_LEN);
			s->rate = rate;
			snprintf(s->name, sizeof(s->name), "%s", name != NULL ? name : "");
			snprintf(s->description, sizeof(s->description), "%s",
				 description != NULL ? description : "");
			s->used = 1;
			c->n_ovr++;
			return 0;
		}
		if (memcmp(s->addr, addr, NM_ADDR_LEN) == 0)
			return -EEXIST;
	}
}

static unsigned int
ifn_hash(const uint8_t addr[NM_ADDR_LEN], uint32_t if_index)
{
	struct {
		uint8_t addr[NM_ADDR_LEN];
		uint32_t if_index;
	} k;

	memcpy(k.addr, addr, NM_ADDR_LEN);
	k.if_index = if_index;
	return (unsigned int)nm_hash_words(&k, sizeof(k));
}

int
nm_exp_conf_ifname(struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN], uint32_t if_index,
		   const char *name)
{
	unsigned int i = ifn_hash(addr, if_index) & c->ifn_mask;

	for (;; i = (i + 1) & c->ifn_mask) {
		struct ifn_slot *s = &c->ifn[i];

		if (!s->used) {
			if (c->n_ifn >= c->max_ifn)
				return -ENOSPC;
			memcpy(s->addr, addr, NM_ADDR_LEN);
			s->if_index = if_index;
			snprintf(s->name, sizeof(s->name), "%s", name);
			s->used = 1;
			c->n_ifn++;
			return 0;
		}
		if (s->if_index == if_index && memcmp(s->addr, addr, NM_ADDR_LEN) == 0)
			return -EEXIST;
	}
}

void
nm_exp_publish(struct nm_exp_table *t, struct nm_exp_conf *c)
{
	struct nm_exp_conf *old;

	uatomic_set(&t->configured, c->n_ovr);
	old = rcu_xchg_pointer(&t->conf, c);

	/*
	 * Readers (RX lcores between two quiescent states, telemetry threads while registered)
	 * may still hold old: free it once each has passed a quiescent state. The wait is one
	 * poll-loop iteration of each RX lcore; the caller goes offline meanwhile if it is a
	 * registered reader itself (urcu-qsbr's synchronize_rcu does that).
	 */
	synchronize_rcu();
	nm_exp_conf_free(old);
}

int
nm_exp_override_add(struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN], uint64_t rate,
		    const char *name)
{
	int ret = nm_exp_conf_add(t->conf, addr, rate, name, NULL);

	if (ret == 0)
		uatomic_set(&t->configured, t->conf->n_ovr);
	return ret;
}

static const struct ovr_slot *
ovr_find(const struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN])
{
	unsigned int i;

	if (c->n_ovr == 0)
		return NULL;
	for (i = (unsigned int)nm_hash_words(addr, NM_ADDR_LEN) & c->ovr_mask;;
	     i = (i + 1) & c->ovr_mask) {
		const struct ovr_slot *s = &c->ovr[i];

		if (!s->used)
			return NULL;
		if (memcmp(s->addr, addr, NM_ADDR_LEN) == 0)
			return s;
	}
}

uint64_t
nm_exp_override(const struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN])
{
	const struct ovr_slot *s = ovr_find(rcu_dereference(t->conf), addr);

	return s != NULL ? s->rate : 0;
}

const struct nm_exp_conf *
nm_exp_conf_current(const struct nm_exp_table *t)
{
	return rcu_dereference(t->conf);
}

int
nm_exp_configured(const struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN],
		  struct nm_exp_configured *out)
{
	const struct ovr_slot *s = ovr_find(c, addr);

	if (s == NULL)
		return 0;
	out->rate = s->rate;
	out->name = s->name;
	out->description = s->description;
	return 1;
}

const char *
nm_exp_ifname(const struct nm_exp_conf *c, const uint8_t addr[NM_ADDR_LEN], uint32_t if_index)
{
	unsigned int i;

	if (c->n_ifn == 0)
		return NULL;
	for (i = ifn_hash(addr, if_index) & c->ifn_mask;; i = (i + 1) & c->ifn_mask) {
		const struct ifn_slot *s = &c->ifn[i];

		if (!s->used)
			return NULL;
		if (s->if_index == if_index && memcmp(s->addr, addr, NM_ADDR_LEN) == 0)
			return s->name;
	}
}

static void
addr_words(const uint8_t a[NM_ADDR_LEN], uint64_t *hi, uint64_t *lo)
{
	unsigned int i;

	*hi = *lo = 0;
	for (i = 0; i < 8; i++) {
		*hi = *hi << 8 | a[i];
		*lo = *lo << 8 | a[8 + i];
	}
}

int
nm_exp_allow_add(struct nm_exp_table *t, const uint8_t prefix[NM_ADDR_LEN], unsigned int len)
{
	uint64_t *e, hi, lo;

	if (len > 128)
		return -EINVAL;
	if (t->n_allow >= NM_EXP_MAX_ALLOW)
		return -ENOSPC;
	e = t->allow[t->n_allow];
	e[2] = len >= 64 ? ~0ULL : len == 0 ? 0 : ~0ULL << (64 - len);
	e[3] = len <= 64 ? 0 : len == 128 ? ~0ULL : ~0ULL << (128 - len);
	addr_words(prefix, &hi, &lo);
	e[0] = hi & e[2];
	e[1] = lo & e[3];
	t->n_allow++;
	return 0;
}

int
nm_exp_allowed(const struct nm_exp_table *t, const uint8_t addr[NM_ADDR_LEN])
{
	uint64_t hi, lo;
	unsigned int i;

	if (t->n_allow == 0)
		return 1;
	addr_words(addr, &hi, &lo);
	for (i = 0; i < t->n_allow; i++) {
		const uint64_t *e = t->allow[i];

		if ((hi & e[2]) == e[0] && (lo & e[3]) == e[1])
			return 1;
	}
	return ovr_find(rcu_dereference(t->conf), addr) != NULL;
}

void
nm_exp_refused_note(struct nm_exp_refused *r, const uint8_t addr[NM_ADDR_LEN])
{
	unsigned int i, min = 0;

	r->total++;
	for (i = 0; i < NM_EXP_REFUSED_TOP; i++) {
		if (r->top[i].count != 0 && memcmp(r->top[i].addr, addr, NM_ADDR_LEN) == 0) {
			r->top[i].count++;
			return;
		}
		if (r->top[i].count < r->top[min].count)
			min = i;
	}
	memcpy(r->top[min].addr, addr, NM_ADDR_LEN);
	r->top[min].count++;
}

void
nm_exp_refused_merge(struct nm_exp_refused *dst, const struct nm_exp_refused *src)
{
	unsigned int i, j, min;

	dst->total += src->total;
	for (i = 0; i < NM_EXP_REFUSED_TOP; i++) {
		if (src->top[i].count == 0)
			continue;
		for (j = 0, min = 0; j < NM_EXP_REFUSED_TOP; j++) {
			if (dst->top[j].count != 0 &&
			    memcmp(dst->top[j].addr, src->top[i].addr, NM_ADDR_LEN) == 0)
				break;
			if (dst->top[j].count < dst->top[min].count)
				min = j;
		}
		if (j == NM_EXP_REFUSED_TOP) {
			j = min;
			memcpy(dst->top[j].addr, src->top[i].addr, NM_ADDR_LEN);
		}
		dst->top[j].count += src->top[i].count;
	}
}

/*
 * Claim a free slot in agent's probe window for (agent, src). 1 done, 0 no room (or a racing
 * lcore took the last slot: that datagram is a mismatch, the next one finds the pair).
 */
static int
agent_claim(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
	    const uint8_t src[NM_ADDR_LEN], uint32_t cfg)
{
	unsigned int i = (unsigned int)nm_hash_words(agent, NM_ADDR_LEN), n;

	for (n = 0; n < AGENT_PROBES; n++, i++) {
		struct agent_slot *s = &t->agents[i & t->agent_mask];
		uint32_t expect = 0;

		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 0)
			continue;
		if (!__atomic_compare_exchange_n(&s->state, &expect, 1, 0, __ATOMIC_ACQUIRE,
						 __ATOMIC_RELAXED))
			continue;
		memcpy(s->agent, agent, NM_ADDR_LEN);
		memcpy(s->src, src, NM_ADDR_LEN);
		s->cfg = cfg;
		__atomic_store_n(&s->state, 2, __ATOMIC_RELEASE);
		uatomic_inc(&t->n_agents);
		return 1;
	}
	uatomic_inc(&t->agent_full);
	return 0;
}

int
nm_exp_agent_add(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
		 const uint8_t src[NM_ADDR_LEN])
{
	if (t->n_agents >= t->p.max_agents)
		return -ENOSPC;
	return agent_claim(t, agent, src, 1) ? 0 : -ENOSPC;
}

int
nm_exp_agent_check(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
		   const uint8_t src[NM_ADDR_LEN])
{
	return nm_exp_agent_check_memo(t, NULL, agent, src);
}

int
nm_exp_agent_check_memo(struct nm_exp_table *t, const void **memo, const uint8_t agent[NM_ADDR_LEN],
			const uint8_t src[NM_ADDR_LEN])
{
	unsigned int i, n;
	struct agent_slot *learned = NULL;
	int known = 0, self;

	if (memo != NULL && *memo != NULL) {
		const struct agent_slot *m = *memo;

		/* The slot that let this pair through last time, if it still holds the pair: the
		 * probe below would find it (or an earlier copy of it) and say the same. */
		if (__atomic_load_n(&m->state, __ATOMIC_ACQUIRE) == 2 &&
		    memcmp(m->agent, agent, NM_ADDR_LEN) == 0 &&
		    memcmp(m->src, src, NM_ADDR_LEN) == 0)
			return 1;
	}
	i = (unsigned int)nm_hash_words(agent, NM_ADDR_LEN);
	self = memcmp(agent, src, NM_ADDR_LEN) == 0;
	for (n = 0; n < AGENT_PROBES; n++, i++) {
		struct agent_slot *s = &t->agents[i & t->agent_mask];

		if (__atomic_load_n(&s->state, __ATOMIC_ACQUIRE) != 2 ||
		    memcmp(s->agent, agent, NM_ADDR_LEN) != 0)
			continue;
		known = 1;
		if (memcmp(s->src, src, NM_ADDR_LEN) == 0) {
			if (memo != NULL)
				*memo = s;
			return 1;
		}
		if (!s->cfg)
			learned = s;
	}
	if (self) {
		/* The agent speaks from its own address: a stranger's learned claim ends here.
		 * Rebinding is a plain store of 16 bytes: a reader racing with it may see a mix
		 * and count one mismatch, never read out of bounds. */
		if (learned != NULL)
			memcpy(learned->src, src, NM_ADDR_LEN);
		else if (!known && t->p.agent_learn)
			(void)agent_claim(t, agent, src, 0); /* so no stranger learns it later */
		return 1;
	}
	if (!known && t->p.agent_learn && agent_claim(t, agent, src, 0))
		return 1;
	uatomic_inc(&t->agent_mismatch);
	return 0;
}

static int
match_entry(struct cds_lfht_node *node, const void *key)
{
	const struct nm_exp_entry *e = caa_container_of(node, struct nm_exp_entry, node);

	return memcmp(&e->key, key, sizeof(e->key)) == 0;
}

struct nm_exp_entry *
nm_exp_find(struct nm_exp_table *t, const struct nm_exp_key *k)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;

	cds_lfht_lookup(t->ht, nm_hash_words(k, sizeof(*k)), match_entry, k, &it);
	node = cds_lfht_iter_get_node(&it);
	return node != NULL ? caa_container_of(node, struct nm_exp_entry, node) : NULL;
}

/* Push slot i on a free stack. Any thread. */
static void
free_push(struct free_stack *fs, uint32_t i)
{
	uint64_t h = uatomic_read(&fs->head), old;

	for (;;) {
		fs->next[i] = (uint32_t)h;
		old = uatomic_cmpxchg(&fs->head, h, ((h >> 32) + 1) << 32 | (i + 1));
		if (old == h)
			return;
		h = old;
	}
}

/* Pop a free slot index; -1 when none. Lock-free, any thread. */
static long
free_pop(struct free_stack *fs)
{
	uint64_t h = uatomic_read(&fs->head), old;

	for (;;) {
		uint32_t i = (uint32_t)h;

		if (i == 0)
			return -1;
		/* next[i - 1] may be stale when another thread popped i meanwhile: then the tag
		 * has moved on and the compare-and-swap fails. */
		old = uatomic_cmpxchg(&fs->head, h,
				      ((h >> 32) + 1) << 32 | CMM_LOAD_SHARED(fs->next[i - 1]));
		if (old == h)
			return (long)i - 1;
		h = old;
	}
}

/* A slot for a new key: a never-used one while there are (*next), then a recycled one. */
static long
slot_take(unsigned long *next, unsigned long max, struct free_stack *fs)
{
	unsigned long idx;

	if (uatomic_read(next) < max) {
		idx = uatomic_add_return(next, 1) - 1;
		if (idx < max)
			return (long)idx;
		uatomic_set(next, max); /* keep it from wrapping */
	}
	return free_pop(fs);
}

struct nm_exp_entry *
nm_exp_get(struct nm_exp_table *t, const struct nm_exp_key *k)
{
	unsigned long h = nm_hash_words(k, sizeof(*k));
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct nm_exp_entry *e;
	long idx;

	cds_lfht_lookup(t->ht, h, match_entry, k, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node != NULL)
		return caa_container_of(node, struct nm_exp_entry, node);
	/* New exporter: the slow path, once per exporter. */
	idx = slot_take(&t->next, t->p.max_exporters, &t->free);
	if (idx < 0) {
		uatomic_inc(&t->overflow);
		return NULL;
	}
	e = &t->pool[idx];
	/* The slot is zero from creation or from its recycling; the key makes it visible to
	 * nm_exp_foreach (with a datagram) and the sweep. */
	e->key = *k;
	cds_lfht_node_init(&e->node);
	node = cds_lfht_add_unique(t->ht, h, match_entry, k, &e->node);
	if (node != &e->node) {
		/* Another lcore added the key first: never published, so no grace period. */
		uatomic_inc(&e->gen);
		memset(&e->key, 0, sizeof(e->key));
		uatomic_inc(&e->gen);
		free_push(&t->free, (uint32_t)idx);
		return caa_container_of(node, struct nm_exp_entry, node);
	}
	uatomic_inc(&t->in_use);
	return e;
}

/* The zeroed part of a slot: the exporter's key and counters, up to the slot's own fields. */
#define ENTRY_STATE_OFF offsetof(struct nm_exp_entry, key)
#define ENTRY_STATE_LEN (offsetof(struct nm_exp_entry, rcu) - ENTRY_STATE_OFF)

/* After the grace period: nobody reaches the slot through the table any more. */
static void
entry_free_rcu(struct rcu_head *head)
{
	struct nm_exp_entry *e = caa_container_of(head, struct nm_exp_entry, rcu);
	struct nm_exp_table *t = e->tab;

	/* Odd generation while zeroing: nm_exp_foreach's copy of it is thrown away. */
	uatomic_inc(&e->gen);
	cmm_smp_wmb();
	memset((uint8_t *)e + ENTRY_STATE_OFF, 0, ENTRY_STATE_LEN);
	cmm_smp_wmb();
	uatomic_inc(&e->gen);
	uatomic_set(&e->dead, 0);
	free_push(&t->free, (uint32_t)(e - t->pool));
}

/* The zeroed part of an interface slot: from agent to the counters, up to its own fields. */
#define IFACE_STATE_OFF offsetof(struct nm_exp_iface, agent)
#define IFACE_STATE_LEN (offsetof(struct nm_exp_iface, rcu) - IFACE_STATE_OFF)

static void
iface_free_rcu(struct rcu_head *head)
{
	struct nm_exp_iface *f = caa_container_of(head, struct nm_exp_iface, rcu);
	struct nm_exp_table *t = f->tab;

	uatomic_inc(&f->gen);
	cmm_smp_wmb();
	memset((uint8_t *)f + IFACE_STATE_OFF, 0, IFACE_STATE_LEN);
	cmm_smp_wmb();
	uatomic_inc(&f->gen);
	uatomic_set(&f->dead, 0);
	free_push(&t->ifree, (uint32_t)(f - t->ipool));
}

/*
 * Interfaces go by the same rule as exporter entries, on their own: an (agent, ifIndex) whose
 * counter samples stopped for the timeout, of an agent that is not configured. Their counter
 * samples arrive in the agent's datagrams, so an idle agent's interfaces expire with it.
 */
static unsigned int
iface_expire(struct nm_exp_table *t, const struct nm_exp_conf *conf, uint64_t now,
	     unsigned int budget)
{
	unsigned long n = uatomic_read(&t->inext), v;
	unsigned int expired = 0;

	if (n > t->p.max_ifaces)
		n = t->p.max_ifaces;
	for (v = 0; v < budget && v < n; v++) {
		struct nm_exp_iface *f = &t->ipool[t->isweep_pos++ % n];
		uint32_t gen = uatomic_read(&f->gen);
		uint64_t samples;

		if ((gen & 1) != 0 || uatomic_read(&f->dead))
			continue;
		samples = uatomic_read(&f->samples);
		if (samples == 0)
			continue; /* free, or being filled */
		if (!f->sweep_seen || f->sweep_gen != gen || f->sweep_samples != samples) {
			f->sweep_seen = 1;
			f->sweep_gen = gen;
			f->sweep_samples = samples;
			f->sweep_idle_since = now;
			continue;
		}
		if (now < f->sweep_idle_since + t->p.exporter_timeout_s ||
		    ovr_find(conf, f->agent) != NULL)
			continue;
		uatomic_set(&f->dead, 1);
		(void)cds_lfht_del(t->iht, &f->node);
		uatomic_dec(&t->iin_use);
		uatomic_inc(&t->iexpired);
		call_rcu(&f->rcu, iface_free_rcu);
		expired++;
	}
	if (n != 0 && t->isweep_pos >= n)
		t->isweep_pos %= n;
	return expired;
}

void
nm_exp_set_release(struct nm_exp_table *t, nm_exp_release_fn fn, void *ctx)
{
	t->release = fn;
	t->release_ctx = ctx;
}

static void
entry_detach(struct nm_exp_entry *e, void *arg)
{
	struct nm_exp_table *t = arg;

	(void)cds_lfht_del(t->ht, &e->node);
}

/*
 * Drop the learned (not configured) bindings of agent: its entry expired, so whatever relay
 * spoke for it is learned anew, on first use, when it speaks again. A reader racing with the
 * store of state 0 compares a slot it may no longer own: one mismatch at worst, the slot array
 * is never freed.
 */
static void
agent_forget(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN])
{
	unsigned int i = (unsigned int)nm_hash_words(agent, NM_ADDR_LEN), n;

	for (n = 0; n < AGENT_PROBES; n++, i++) {
		struct agent_slot *s = &t->agents[i & t->agent_mask];
		uint32_t expect = 2;

		if (s->cfg || memcmp(s->agent, agent, NM_ADDR_LEN) != 0)
			continue;
		if (!__atomic_compare_exchange_n(&s->state, &expect, 0, 0, __ATOMIC_RELEASE,
						 __ATOMIC_RELAXED))
			continue;
		uatomic_dec(&t->n_agents);
		uatomic_inc(&t->agents_expired);
	}
}

static void
entry_expire(struct nm_exp_table *t, struct nm_exp_entry *e)
{
	uatomic_set(&e->dead, 1); /* the sweep and nm_exp_foreach leave it alone from now on */
	if (t->release != NULL)
		(void)t->release(t->release_ctx, e, entry_detach, t);
	else
		entry_detach(e, t);
	if (e->key.type == NM_FLOW_SFLOW5)
		agent_forget(t, e->key.addr);
	uatomic_dec(&t->in_use);
	uatomic_inc(&t->expired);
	call_rcu(&e->rcu, entry_free_rcu);
}

unsigned int
nm_exp_expire(struct nm_exp_table *t, uint64_t now, unsigned int budget)
{
	unsigned long n, v;
	const struct nm_exp_conf *conf;
	unsigned int expired = 0;

	if (t == NULL || t->p.exporter_timeout_s == 0 || (t->swept && now == t->sweep_now))
		return 0;
	t->swept = 1;
	t->sweep_now = now;
	n = uatomic_read(&t->next);
	if (n > t->p.max_exporters)
		n = t->p.max_exporters;
	conf = rcu_dereference(t->conf);
	for (v = 0; v < budget && v < n; v++) {
		struct nm_exp_entry *e = &t->pool[t->sweep_pos++ % n];
		uint32_t gen = uatomic_read(&e->gen);
		uint64_t dg;

		if ((gen & 1) != 0 || uatomic_read(&e->dead) || e->key.type == 0)
			continue;
		dg = uatomic_read(&e->datagrams);
		if (!e->sweep_seen || e->sweep_gen != gen || e->sweep_datagrams != dg) {
			/* New to the sweep (or the slot was recycled), or it had datagrams since
			 * the last visit: idle from now on, as far as the sweep knows. */
			e->sweep_seen = 1;
			e->sweep_gen = gen;
			e->sweep_datagrams = dg;
			e->sweep_idle_since = now;
			continue;
		}
		if (now < e->sweep_idle_since + t->p.exporter_timeout_s)
			continue;
		/* Configured exporters keep their state however quiet they are. */
		if (ovr_find(conf, e->key.addr) != NULL)
			continue;
		entry_expire(t, e);
		expired++;
	}
	if (n != 0 && t->sweep_pos >= n)
		t->sweep_pos %= n;
	(void)iface_expire(t, conf, now, budget);
	return expired;
}

/* Remember a distinct rate in the first free slot (lock-free: compare-and-swap from 0). */
static void
note_rate(struct nm_exp_entry *e, uint64_t rate, uint64_t records)
{
	unsigned int i;

	for (i = 0; i < NM_EXP_RATES; i++) {
		uint64_t v = uatomic_read(&e->rates[i]);

		if (v == rate)
			return;
		if (v == 0) {
			v = uatomic_cmpxchg(&e->rates[i], 0, rate);
			if (v == 0 || v == rate)
				return;
		}
	}
	uatomic_add(&e->rates_more, records);
}

/* Largest forward jump still taken for losses; beyond it the exporter restarted. */
#define SEQ_MAX_GAP (1u << 20)
/* How far behind the last datagram one is still taken as late (in datagrams). */
#define SEQ_LATE_DATAGRAMS 16
/* Late datagrams in a row after which the exporter is taken to have restarted. */
#define SEQ_LATE_RUN 3

/*
 * Sequence numbers. NetFlow v9 and sFlow number datagrams; NetFlow v5 and IPFIX number records:
 * the header holds the records sent before this datagram (RFC 7011 3.1), so the step from one
 * datagram to the next is the previous datagram's record count. Some exporters count the
 * current datagram's records instead (softflowd's IPFIX), or leave options records out: a step
 * equal to any of these counts is no loss, and which reading the exporter follows is learnt
 * (seq_post) to measure the steps that are losses.
 */
static void
track_seq(struct nm_exp_entry *e, const struct nm_dgram_info *info)
{
	if (e->seq_valid) {
		uint32_t step = info->seq - e->last_seq;
		uint32_t expect = e->seq_post ? info->seq_units : e->last_units;
		uint32_t unit = info->seq_units > 1 ? info->seq_units : 1;

		if (step == e->last_units || step == e->last_units_alt) {
			e->seq_post = 0;
		} else if (step == info->seq_units || step == info->seq_units_alt) {
			e->seq_post = 1;
		} else if (step - expect < 0x80000000u && step - expect <= SEQ_MAX_GAP) {
			uatomic_add(&e->seq_lost, step - expect);
		} else if (step >= 0x80000000u && -step <= SEQ_LATE_DATAGRAMS * unit &&
			   e->late_run < SEQ_LATE_RUN) {
			/*
			 * Late or duplicated: counted, the expectation stays where it is. Several
			 * in a row are rather an exporter that restarted just now: resynchronise
			 * then.
			 */
			e->late_run++;
			uatomic_inc(&e->seq_out_of_order);
			return;
		} else {
			/* Far ahead or far behind: the exporter restarted; start over from here. */
			uatomic_inc(&e->seq_resets);
		}
	}
	e->late_run = 0;
	e->last_seq = info->seq;
	e->last_units = info->seq_units;
	e->last_units_alt = info->seq_units_alt;
	e->seq_valid = !info->seq_unsure;
}

/* memo's entry when it still is k's (see nm_exp_account_memo()), else NULL. */
static struct nm_exp_entry *
memo_entry(const struct nm_exp_memo *memo, const struct nm_exp_key *k)
{
	struct nm_exp_entry *e = memo->e;
	uint32_t gen;

	if (e == NULL || memcmp(&memo->key, k, sizeof(*k)) != 0)
		return NULL;
	/* A seqlock read of the slot: stable generation, not expired, still this key. */
	gen = __atomic_load_n(&e->gen, __ATOMIC_ACQUIRE);
	if ((gen & 1) != 0 || gen != memo->gen ||
	    __atomic_load_n(&e->dead, __ATOMIC_ACQUIRE) != 0 || memcmp(&e->key, k, sizeof(*k)) != 0)
		return NULL;
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (__atomic_load_n(&e->gen, __ATOMIC_RELAXED) != gen)
		return NULL;
	return e;
}

void
nm_exp_account(struct nm_exp_table *t, const struct nm_dgram_info *info,
	       const struct nm_dgram_meta *meta, int ret, const uint64_t *errs)
{
	nm_exp_account_memo(t, NULL, info, meta, ret, errs);
}

void
nm_exp_account_memo(struct nm_exp_table *t, struct nm_exp_memo *memo,
		    const struct nm_dgram_info *info, const struct nm_dgram_meta *meta, int ret,
		    const uint64_t *errs)
{
	struct nm_exp_key k;
	struct nm_exp_entry *e;
	unsigned int i;

	if (info->type == 0)
		return;
	memset(&k, 0, sizeof(k));
	memcpy(k.addr, info->has_agent ? info->agent : meta->exporter, NM_ADDR_LEN);
	k.domain = info->domain;
	k.type = info->type;
	e = memo != NULL ? memo_entry(memo, &k) : NULL;
	if (e != NULL)
		goto found;
	/*
	 * A datagram rejected whole (nothing decoded from it) is counted on its exporter's entry
	 * only when there is one already: garbage from a stranger (a bad NetFlow v5 count, a wrong
	 * version...) must not take pool slots that later exporters need. Its reason is counted
	 * in the decode stats all the same; dropped_unknown counts it here.
	 */
	if (ret < 0 && info->records == 0 && info->templates == 0) {
		e = nm_exp_find(t, &k);
		if (e == NULL) {
			uatomic_inc(&t->rejected_unknown);
			return;
		}
	} else {
		e = nm_exp_get(t, &k);
	}
	if (e == NULL)
		return;
	if (memo != NULL) {
		memo->e = e;
		memo->key = k;
		memo->gen = __atomic_load_n(&e->gen, __ATOMIC_ACQUIRE);
	}
found:
	if (e->first_seen == 0)
		e->first_seen = meta->time_received;
	e->last_seen = meta->time_received;
	e->version = info->version;
	uatomic_inc(&e->datagrams);
	if (info->records != 0)
		uatomic_add(&e->records, info->records);
	if (info->templates != 0)
		uatomic_add(&e->templates, info->templates);
	if (info->rate_default != 0)
		uatomic_add(&e->rate_default_records, info->rate_default);
	if (info->rate_override != 0)
		uatomic_add(&e->rate_override_records, info->rate_override);
	if (info->rate != 0)
		note_rate(e, info->rate, info->records);
	if (ret < 0)
		uatomic_inc(&e->bad);
	if (errs != NULL)
		for (i = 1; i < NM_DECODE_ERR_MAX; i++)
			if (errs[i] != 0)
				uatomic_add(&e->err[i], errs[i]);
	if (info->has_seq)
		track_seq(e, info);
}

static int
match_iface(struct cds_lfht_node *node, const void *key)
{
	const struct nm_exp_iface *i = caa_container_of(node, struct nm_exp_iface, node);
	const struct iface_key *k = key;

	return i->if_index == k->if_index && memcmp(i->agent, k->agent, NM_ADDR_LEN) == 0;
}

void
nm_exp_iface_update(struct nm_exp_table *t, const uint8_t agent[NM_ADDR_LEN],
		    uint64_t time_received, uint32_t sample_seq, const struct nm_exp_ifcounters *c)
{
	struct iface_key k;
	unsigned long h;
	long idx;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct nm_exp_iface *i;

	memset(&k, 0, sizeof(k));
	memcpy(k.agent, agent, NM_ADDR_LEN);
	k.if_index = c->if_index;
	h = nm_hash_words(&k, sizeof(k));
	cds_lfht_lookup(t->iht, h, match_iface, &k, &it);
	node = cds_lfht_iter_get_node(&it);
	if (node != NULL) {
		i = caa_container_of(node, struct nm_exp_iface, node);
	} else {
		idx = slot_take(&t->inext, t->p.max_ifaces, &t->ifree);
		if (idx < 0) {
			uatomic_inc(&t->iface_overflow);
			return;
		}
		i = &t->ipool[idx];
		memcpy(i->agent, agent, NM_ADDR_LEN);
		i->if_index = c->if_index;
		cds_lfht_node_init(&i->node);
		node = cds_lfht_add_unique(t->iht, h, match_iface, &k, &i->node);
		if (node != &i->node) {
			/* Lost the race: never published, straight back to the free stack. */
			uatomic_inc(&i->gen);
			memset(i->agent, 0, sizeof(i->agent));
			i->if_index = 0;
			uatomic_inc(&i->gen);
			free_push(&t->ifree, (uint32_t)idx);
			i = caa_container_of(node, struct nm_exp_iface, node);
		} else {
			uatomic_inc(&t->iin_use);
		}
	}
	i->c = *c;
	i->sample_seq = sample_seq;
	i->last_seen = time_received;
	uatomic_inc(&i->samples);
}

void
nm_exp_foreach(const struct nm_exp_table *t, void (*fn)(const struct nm_exp_entry *e, void *ctx),
	       void *ctx)
{
	unsigned long n = uatomic_read(&t->next), i;
	struct nm_exp_entry copy;

	if (n > t->p.max_exporters)
		n = t->p.max_exporters;
	for (i = 0; i < n; i++) {
		const struct nm_exp_entry *e = &t->pool[i];
		uint32_t gen = uatomic_read(&e->gen);

		if ((gen & 1) != 0 || uatomic_read(&e->dead) || e->key.type == 0)
			continue;
		cmm_smp_rmb();
		memcpy(&copy, e, sizeof(copy));
		cmm_smp_rmb();
		/* Recycled while copied: the copy may mix two exporters. Skip it. */
		if (uatomic_read(&e->gen) != gen || copy.dead)
			continue;
		/* A slot being filled right now shows no datagram yet. */
		if (copy.key.type != 0 && copy.datagrams != 0)
			fn(&copy, ctx);
	}
}

void
nm_exp_iface_foreach(const struct nm_exp_table *t,
		     void (*fn)(const struct nm_exp_iface *i, void *ctx), void *ctx)
{
	unsigned long n = uatomic_read(&t->inext), i;
	struct nm_exp_iface copy;

	if (n > t->p.max_ifaces)
		n = t->p.max_ifaces;
	for (i = 0; i < n; i++) {
		const struct nm_exp_iface *f = &t->ipool[i];
		uint32_t gen = uatomic_read(&f->gen);

		if ((gen & 1) != 0 || uatomic_read(&f->dead) || uatomic_read(&f->samples) == 0)
			continue;
		cmm_smp_rmb();
		memcpy(&copy, f, sizeof(copy));
		cmm_smp_rmb();
		/* Recycled while copied (see nm_exp_foreach). */
		if (uatomic_read(&f->gen) != gen || copy.dead || copy.samples == 0)
			continue;
		fn(&copy, ctx);
	}
}

static const struct nm_ctr_desc exp_desc[] = {
	NM_EXP_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_exp_stats)};

static const struct nm_ctr_desc exp_entry_desc[] = {
	NM_EXP_ENTRY_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_exp_entry)};

const struct nm_ctr_set nm_exp_entry_ctr_set =
	NM_CTR_SET("exporter", "", "per exporter entry, atomic adds by every RX lcore",
		   MULTI_WRITER, struct nm_exp_entry, exp_entry_desc);

const struct nm_ctr_set nm_exp_ctr_set = NM_CTR_SET(
	"exporter", "exp_", "one table per engine, bumped by every RX lcore (atomic adds)",
	MULTI_WRITER, struct nm_exp_stats, exp_desc);

void
nm_exp_get_stats(const struct nm_exp_table *t, struct nm_exp_stats *st)
{
	unsigned long m = uatomic_read(&t->inext);

	st->exporters = uatomic_read(&t->in_use);
	st->expired = uatomic_read(&t->expired);
	st->exporters_overflow = uatomic_read(&t->overflow);
	(void)m;
	st->interfaces = uatomic_read(&t->iin_use);
	st->interfaces_expired = uatomic_read(&t->iexpired);
	st->interfaces_overflow = uatomic_read(&t->iface_overflow);
	st->configured = uatomic_read(&t->configured);
	st->sflow_agents = uatomic_read(&t->n_agents);
	st->sflow_agent_mismatch = uatomic_read(&t->agent_mismatch);
	st->sflow_agents_full = uatomic_read(&t->agent_full);
	st->sflow_agents_expired = uatomic_read(&t->agents_expired);
	st->rejected_unknown = uatomic_read(&t->rejected_unknown);
}

uint64_t
nm_exp_lost_datagrams(const struct nm_exp_entry *e)
{
	uint64_t lost = uatomic_read(&e->seq_lost);
	uint64_t dg = uatomic_read(&e->datagrams), recs = uatomic_read(&e->records);

	/* NetFlow v5 and IPFIX number records, not datagrams: divide by records per datagram. */
	if (e->key.type == NM_FLOW_NF5 || e->key.type == NM_FLOW_IPFIX) {
		if (recs == 0)
			return lost != 0;
		return (lost * dg + recs - 1) / recs;
	}
	return lost;
}

const char *
nm_exp_type_name(uint8_t type)
{
	switch (type) {
	case NM_FLOW_NF5:
		return "nf5";
	case NM_FLOW_NF9:
		return "nf9";
	case NM_FLOW_IPFIX:
		return "ipfix";
	case NM_FLOW_SFLOW5:
		return "sflow";
	default:
		return "unknown";
	}
}
