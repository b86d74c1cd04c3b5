/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * /netmeta/top,N: the N heaviest rows of the last completed second, by bytes x sampling rate,
 * with the key's exporter, addresses, ports, protocol and interfaces.
 *
 * Kept by the flusher while it drains (nm_top_offer_row for every row it turns into a FlowMessage),
 * never on an RX lcore: a row costs one compare against the smallest kept weight, and one that
 * enters costs log2(NM_TOP_MAX) swaps in a fixed min-heap. The second being built is published
 * when it is over -- live, 200 ms after the clock left it (workers hand their tables within
 * ~100 us of the boundary, the flusher drains within a millisecond); offline, when rows of a
 * newer second arrive; and at the end of the run. Publishing copies the heap, sorted, into one
 * slot guarded by a sequence count: telemetry threads copy it out and retry if the flusher wrote
 * meanwhile (once a second), so neither side ever waits on a lock.
 *
 * A row is a key as aggregation keeps it: every exported dimension, per worker. Two rows that
 * show the same addresses and ports differ in some other dimension (or came from two workers).
 * Rows of a second older than the one being built (a lagging worker) are counted in "late",
 * not ranked.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_telemetry.h>

#include "opsview.h"

struct nm_top_second {
	uint64_t sec;	 /* 0: nothing yet */
	uint64_t rows;	 /* rows drained for that second */
	uint64_t weight; /* their bytes x rate */
	unsigned int n;
	struct nm_top_entry e[NM_TOP_MAX];
};

struct nm_top {
	/* The flusher's: the second being built, a min-heap on weight. */
	struct nm_top_second b;
	uint64_t late;
	/* Published: the last completed second, sorted heaviest first. */
	uint32_t seq; /* odd while the flusher writes pub */
	uint64_t published;
	struct nm_top_second pub;
};

static struct nm_top top_store;

void
nm_top_init(struct nm_app *app)
{
	memset(&top_store, 0, sizeof(top_store));
	app->top = &top_store;
}

static void
swap(struct nm_top_entry *a, struct nm_top_entry *b)
{
	struct nm_top_entry t = *a;

	*a = *b;
	*b = t;
}

static void
sift_down(struct nm_top_entry *h, unsigned int n, unsigned int i)
{
	for (;;) {
		unsigned int l = 2 * i + 1, r = l + 1, m = i;

		if (l < n && h[l].weight < h[m].weight)
			m = l;
		if (r < n && h[r].weight < h[m].weight)
			m = r;
		if (m == i)
			return;
		swap(&h[i], &h[m]);
		i = m;
	}
}

static void
sift_up(struct nm_top_entry *h, unsigned int i)
{
	while (i > 0 && h[(i - 1) / 2].weight > h[i].weight) {
		swap(&h[i], &h[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
}

static int
heavier_first(const void *a, const void *b)
{
	const struct nm_top_entry *x = a, *y = b;

	return x->weight < y->weight ? 1 : x->weight > y->weight ? -1 : 0;
}

static void
publish(struct nm_top *t)
{
	struct nm_top_second s = t->b;

	qsort(s.e, s.n, sizeof(s.e[0]), heavier_first);
	__atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(&t->pub, &s, sizeof(s));
	__atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
	nm_ctr_inc(&t->published);
	memset(&t->b, 0, sizeof(t->b));
}

/*
 * Account a row of second sec and weight w; the entry it takes in the heap, or NULL when it
 * is not ranked (late, or no heavier than the lightest of a full heap): most rows, once the
 * heap has filled, stop here and never need their key.
 */
static inline struct nm_top_entry *
admit(struct nm_top *t, uint64_t sec, uint64_t w)
{
	if (t->b.sec == 0) {
		t->b.sec = sec;
	} else if (sec > t->b.sec) {
		publish(t);
		t->b.sec = sec;
	} else if (sec < t->b.sec) {
		nm_ctr_inc(&t->late);
		return NULL;
	}
	t->b.rows++;
	t->b.weight += w;
	/* A full heap: a heavier row replaces the lightest, then sinks. */
	if (t->b.n == NM_TOP_MAX)
		return w > t->b.e[0].weight ? &t->b.e[0] : NULL;
	return &t->b.e[t->b.n++];
}

static void
enter(struct nm_top *t, struct nm_top_entry *e, const struct nm_flow_rec *rec, uint64_t rate,
      uint64_t w)
{
	const struct nm_flow_key *k = &rec->key;

	e->weight = w;
	e->bytes = rec->bytes;
	e->packets = rec->packets;
	e->sampling_rate = rate;
	memcpy(e->exporter, k->sampler_addr, NM_ADDR_LEN);
	memcpy(e->src_addr, k->src_addr, NM_ADDR_LEN);
	memcpy(e->dst_addr, k->dst_addr, NM_ADDR_LEN);
	e->in_if = k->in_if;
	e->out_if = k->out_if;
	e->src_port = k->src_port;
	e->dst_port = k->dst_port;
	e->proto = k->proto;
	e->type = k->type;
	if (e == &t->b.e[0] && t->b.n == NM_TOP_MAX)
		sift_down(t->b.e, t->b.n, 0);
	else
		sift_up(t->b.e, t->b.n - 1);
}

void
nm_top_offer_row(struct nm_top *t, const struct nm_agg_row *row)
{
	struct nm_flow_rec rec;
	uint64_t rate, w;
	struct nm_top_entry *e;

	if (t == NULL)
		return;
	/* The second and the rate from the compact key; the whole key only for a row that enters.
	 */
	rate = nm_agg_ck_u64(row->ck, offsetof(struct nm_flow_key, sampling_rate) / 4);
	rate += rate == 0;
	w = row->bytes * rate;
	e = admit(t, nm_agg_ck_u64(row->ck, offsetof(struct nm_flow_key, time_received) / 4), w);
	if (e != NULL) {
		nm_agg_row_rec(row, &rec);
		enter(t, e, &rec, rate, w);
	}
}

void
nm_top_tick(struct nm_top *t, uint64_t now_ns, int live)
{
	if (t == NULL || t->b.sec == 0 || !live)
		return;
	if (now_ns >= (t->b.sec + 1) * 1000000000ULL + 200000000ULL)
		publish(t);
}

void
nm_top_finish(struct nm_top *t)
{
	if (t != NULL && t->b.sec != 0)
		publish(t);
}

/* Copy the published second; false when the flusher kept writing (it does so once a second). */
static bool
top_read(const struct nm_top *t, struct nm_top_second *out)
{
	unsigned int tries;

	for (tries = 0; tries < 1000; tries++) {
		uint32_t s1 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);

		if (s1 & 1)
			continue;
		memcpy(out, &t->pub, sizeof(*out));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&t->seq, __ATOMIC_RELAXED) == s1)
			return true;
	}
	return false;
}

static const struct nm_app *tel_app;

static int
tel_top(const char *cmd, const char *params, struct rte_tel_data *d)
{

	struct nm_top_second *sp;
	unsigned long n = 10;
	unsigned int i;
	char *end;
	int ret = 0;

	(void)cmd;
	if (params != NULL && params[0] != '\0') {
		n = strtoul(params, &end, 10);
		if (*end != '\0' || n == 0 || n > NM_TOP_MAX)
			return -EINVAL;
	}
	rte_tel_data_start_dict(d);
	if (tel_app->top == NULL)
		return 0;
	sp = malloc(sizeof(*sp)); /* telemetry threads may run concurrently: not the static */
	if (sp == NULL)
		return -ENOMEM;

	if (!top_read(tel_app->top, sp)) {
		ret = -EAGAIN;
		goto out;
	}
	rte_tel_data_add_dict_u64(d, "second", sp->sec);
	rte_tel_data_add_dict_u64(d, "rows", sp->rows);
	rte_tel_data_add_dict_u64(d, "bytes_scaled", sp->weight);
	rte_tel_data_add_dict_u64(d, "late_rows", nm_ctr_get(&tel_app->top->late));
	rte_tel_data_add_dict_u64(d, "seconds_published", nm_ctr_get(&tel_app->top->published));
	rte_tel_data_add_dict_u64(d, "listed", RTE_MIN(n, sp->n));
	for (i = 0; i < sp->n && i < n; i++) {
		const struct nm_top_entry *e = &sp->e[i];
		struct rte_tel_data *c = rte_tel_data_alloc();
		char addr[NM_ADDR_STRLEN], key[32], pct[16];

		if (c == NULL) {
			ret = -ENOMEM;
			goto out;
		}
		rte_tel_data_start_dict(c);
		rte_tel_data_add_dict_u64(c, "rank", i + 1);
		rte_tel_data_add_dict_string(c, "exporter",
					     nm_addr_str(e->exporter, addr, sizeof(addr)));
		rte_tel_data_add_dict_string(c, "protocol", nm_exp_type_name(e->type));
		rte_tel_data_add_dict_string(c, "src_addr",
					     nm_addr_str(e->src_addr, addr, sizeof(addr)));
		rte_tel_data_add_dict_string(c, "dst_addr",
					     nm_addr_str(e->dst_addr, addr, sizeof(addr)));
		rte_tel_data_add_dict_u64(c, "src_port", e->src_port);
		rte_tel_data_add_dict_u64(c, "dst_port", e->dst_port);
		rte_tel_data_add_dict_u64(c, "proto", e->proto);
		rte_tel_data_add_dict_u64(c, "in_if", e->in_if);
		rte_tel_data_add_dict_u64(c, "out_if", e->out_if);
		rte_tel_data_add_dict_u64(c, "bytes_scaled", e->weight);
		rte_tel_data_add_dict_u64(c, "packets_scaled", e->packets * e->sampling_rate);
		rte_tel_data_add_dict_u64(c, "bytes", e->bytes);
		rte_tel_data_add_dict_u64(c, "packets", e->packets);
		rte_tel_data_add_dict_u64(c, "sampling_rate", e->sampling_rate);
		snprintf(pct, sizeof(pct), "%.1f",
			 sp->weight ? 100.0 * (double)e->weight / (double)sp->weight : 0.0);
		rte_tel_data_add_dict_string(c, "share_pct", pct);
		snprintf(key, sizeof(key), "top/%u", i + 1);
		if (rte_tel_data_add_dict_container(d, key, c, 0) != 0)
			rte_tel_data_free(c);
	}
out:
	free(sp);
	return ret;
}

int
nm_top_register(struct nm_app *app)
{
	tel_app = app;
	return rte_telemetry_register_cmd("/netmeta/top", tel_top,
					  "Heaviest rows of the last completed second (bytes x "
					  "sampling rate). Param: N (default 10, at most 32)");
}
