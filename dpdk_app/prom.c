/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The Prometheus text exposition (format 0.0.4) of the engine, and /netmeta/metrics, which
 * serves it through the telemetry socket in pages so scripts/netmeta-stats can scrape it (the
 * engine itself opens no network port).
 *
 * Every family comes from a counter table (lib/ctr): nm_ctr_prom writes its HELP, TYPE and one
 * sample per object, so nothing here lists counters. Labels: lcore for the per-lcore sets
 * (worker, decode, aggregation), port/role and port/queue/lcore for the NIC's counters,
 * exporter/domain/protocol per exporter, reason and class for arrays.
 *
 * Paging: a telemetry reply is at most 16 KiB of JSON and a string at most 127 characters.
 * "/netmeta/metrics" renders the whole exposition once into a snapshot (kept in one of a few
 * slots, the oldest replaced) and returns its first page; "/netmeta/metrics,SNAPSHOT,OFFSET"
 * returns the page at that byte offset of the same snapshot, so a client that pages through
 * gets one consistent exposition. A page is an array of chunks of the text, percent-encoded
 * (%, ", \, control bytes) because DPDK 22.11 writes strings into its JSON unescaped.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rte_cycles.h>
#include <rte_telemetry.h>

#include "opsview.h"

#define LABEL_LEN 192

/* Objects and their label sets for one nm_ctr_prom call. */
struct objs {
	const void **o;
	char (*l)[LABEL_LEN];
	const char **lp;
	unsigned int n, cap;
};

static int
objs_init(struct objs *s, unsigned int cap)
{
	s->n = 0;
	s->cap = cap == 0 ? 1 : cap;
	s->o = calloc(s->cap, sizeof(*s->o));
	s->l = calloc(s->cap, sizeof(*s->l));
	s->lp = calloc(s->cap, sizeof(*s->lp));
	return s->o && s->l && s->lp ? 0 : -ENOMEM;
}

static void
objs_free(struct objs *s)
{
	free(s->o);
	free(s->l);
	free(s->lp);
}

static char *
objs_add(struct objs *s, const void *obj)
{
	if (s->n == s->cap)
		return NULL;
	s->o[s->n] = obj;
	s->lp[s->n] = s->l[s->n];
	return s->l[s->n++];
}

static int
emit(const struct nm_ctr_set *set, const struct objs *s, FILE *f)
{
	return nm_ctr_prom(set, s->o, s->lp, s->n, f);
}

/*
 * Per exporter: the counters of NM_EXP_ENTRY_CTRS (lib/exporter), labelled by exporter,
 * observation domain and protocol. nm_exp_foreach() hands out copies valid during its callback
 * only (slots are recycled by expiry): they are copied again into copies[] for the emit.
 */
struct exp_walk {
	struct objs *s;
	struct nm_exp_entry *copies; /* s->cap of them */
	unsigned int seen;
};

static void
exp_collect(const struct nm_exp_entry *e, void *ctx)
{
	struct exp_walk *w = ctx;
	char addr[NM_ADDR_STRLEN], esc[96], *l;
	struct nm_exp_entry *copy;

	w->seen++;
	if (w->s->n == w->s->cap)
		return; /* entries created since counting: the next scrape has them */
	copy = &w->copies[w->s->n];
	*copy = *e;
	l = objs_add(w->s, copy);
	nm_addr_str(e->key.addr, addr, sizeof(addr));
	nm_ctr_prom_escape(addr, esc, sizeof(esc));
	snprintf(l, LABEL_LEN, "exporter=\"%s\",domain=\"%" PRIu32 "\",protocol=\"%s\"", esc,
		 e->key.domain, nm_exp_type_name(e->key.type));
}

static void
exp_count(const struct nm_exp_entry *e, void *ctx)
{
	(void)e;
	(*(unsigned int *)ctx)++;
}

int
nm_prom_write(const struct nm_app *app, FILE *f)
{
	struct nm_agg_stats *agg = NULL;
	struct nm_port_stats ps[NM_CFG_MAX_PORTS];
	struct nm_queue_stats *qs = NULL;
	struct nm_stats_view v;
	struct objs s = {0};
	struct nm_exp_entry *copies = NULL;
	unsigned int i, j, nq = 0, n_exp = 0;
	char esc[96], *l;
	int ret = -ENOMEM;

	nm_stats_snapshot(app, &v);
	fprintf(f,
		"# HELP netmeta_start_time_seconds when the engine started (Unix seconds)\n"
		"# TYPE netmeta_start_time_seconds gauge\n"
		"netmeta_start_time_seconds %" PRIu64 "\n",
		(uint64_t)(app->start_ns / 1000000000ULL));

	/* Per lcore: the worker, decode and aggregation sets. */
	agg = calloc(app->n_workers + 1, sizeof(*agg));
	if (agg == NULL || objs_init(&s, app->n_workers) != 0)
		goto out;
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];

		for (j = 0; j < NM_TABLES_PER_WORKER; j++)
			if (w->tables[j] != NULL)
				nm_agg_get_stats(w->tables[j], &agg[i]);
		l = objs_add(&s, &w->st); /* room for every worker: cannot be NULL */
		if (l != NULL)
			snprintf(l, LABEL_LEN, "lcore=\"%u\"", w->lcore_id);
	}
	ret = emit(&nm_worker_ctr_set, &s, f);
	for (i = 0; i < s.n && ret == 0; i++)
		s.o[i] = &app->workers[i]->st.dec;
	if (ret == 0)
		ret = emit(&nm_decode_ctr_set, &s, f);
	for (i = 0; i < s.n && ret == 0; i++)
		s.o[i] = &agg[i];
	if (ret == 0)
		ret = emit(&nm_agg_ctr_set, &s, f);
	objs_free(&s);
	memset(&s, 0, sizeof(s));
	if (ret != 0)
		goto out;

	/* The engine-wide sets. */
	ret = nm_ctr_prom(&nm_flusher_ctr_set, (const void *[]){&v.fl}, NULL, 1, f);
	if (ret == 0 && app->kafka != NULL)
		ret = nm_ctr_prom(&nm_kafka_ctr_set, (const void *[]){&v.k}, NULL, 1, f);
	if (ret == 0 && app->exp != NULL)
		ret = nm_ctr_prom(&nm_exp_ctr_set, (const void *[]){&v.e}, NULL, 1, f);
	if (ret == 0 && app->tmpl != NULL)
		ret = nm_ctr_prom(&nm_tmpl_ctr_set, (const void *[]){&v.t}, NULL, 1, f);
	if (ret != 0)
		goto out;

	/* Ports and their RX queues. */
	ret = -ENOMEM;
	for (i = 0; i < app->cfg.n_ports; i++)
		nq += app->cfg.ports[i].rx_queues;
	qs = calloc(nq + 1, sizeof(*qs));
	if (qs == NULL || objs_init(&s, app->cfg.n_ports) != 0)
		goto out;
	{
		struct objs sq;
		int lcores[64];
		unsigned int qo = 0;

		if (objs_init(&sq, nq) != 0) {
			objs_free(&sq);
			goto out;
		}
		for (i = 0; i < app->cfg.n_ports; i++) {
			const struct nm_port_cfg *pc = &app->cfg.ports[i];
			unsigned int nmax = RTE_MIN(pc->rx_queues, RTE_DIM(lcores));
			int n = nm_port_read(app, i, &ps[i], &qs[qo], lcores, nmax);

			if (n < 0)
				continue;
			nm_ctr_prom_escape(pc->name, esc, sizeof(esc));
			l = objs_add(&s, &ps[i]);
			if (l != NULL)
				snprintf(l, LABEL_LEN, "port=\"%s\",role=\"%s\"", esc,
					 nm_port_role_name(pc->role));
			for (j = 0; j < (unsigned int)n; j++) {
				l = objs_add(&sq, &qs[qo + j]);
				if (l != NULL)
					snprintf(l, LABEL_LEN,
						 "port=\"%s\",queue=\"%u\",lcore=\"%d\"", esc, j,
						 lcores[j]);
			}
			qo += (unsigned int)n;
		}
		ret = emit(&nm_port_ctr_set, &s, f);
		if (ret == 0)
			ret = emit(&nm_queue_ctr_set, &sq, f);
		objs_free(&sq);
	}
	objs_free(&s);
	memset(&s, 0, sizeof(s));
	if (ret != 0 || app->exp == NULL)
		goto out;

	/* Per exporter. */
	ret = -ENOMEM;
	nm_exp_foreach(app->exp, exp_count, &n_exp);
	if (objs_init(&s, n_exp) != 0)
		goto out;
	copies = aligned_alloc(64, (size_t)s.cap * sizeof(*copies));
	if (copies == NULL)
		goto out;
	{
		struct exp_walk w = {.s = &s, .copies = copies};

		nm_exp_foreach(app->exp, exp_collect, &w);
	}
	ret = s.n > 0 ? emit(&nm_exp_entry_ctr_set, &s, f) : 0;
out:
	objs_free(&s);
	free(copies);
	free(qs);
	free(agg);
	if (ret == 0 && (fflush(f) != 0 || ferror(f)))
		ret = -EIO;
	return ret;
}

/* ---- /netmeta/metrics: snapshots served in pages ---- */

#define SNAP_SLOTS 4
#define PAGE_ESCAPED 12000 /* escaped characters per page: the JSON stays under 16 KiB */
#define CHUNK 120	   /* escaped characters per string (DPDK: < 128) */

struct snap {
	uint64_t id; /* 0: free */
	char *text;
	size_t len;
};

static struct {
	pthread_mutex_t lock; /* telemetry threads only: one per connected client */
	uint64_t next_id;
	struct snap slot[SNAP_SLOTS];
} snaps = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_id = 1};

static const struct nm_app *tel_app;

static bool
plain(unsigned char c)
{
	return c >= 0x20 && c < 0x7f && c != '%' && c != '"' && c != '\\';
}

/* Take a snapshot into a slot (the oldest is replaced). Called with the lock held. */
static struct snap *
snap_take(void)
{
	struct snap *s = &snaps.slot[0];
	char *text = NULL;
	size_t len = 0;
	unsigned int i;
	FILE *f;

	for (i = 1; i < SNAP_SLOTS; i++)
		if (snaps.slot[i].id < s->id)
			s = &snaps.slot[i];
	f = open_memstream(&text, &len);
	if (f == NULL)
		return NULL;
	if (nm_prom_write(tel_app, f) != 0) {
		fclose(f);
		free(text);
		return NULL;
	}
	fclose(f);
	free(s->text);
	s->text = text;
	s->len = len;
	s->id = snaps.next_id++;
	return s;
}

static int
tel_metrics(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct rte_tel_data *arr;
	struct snap *s = NULL;
	unsigned long long id = 0, off = 0;
	char chunk[CHUNK + 4];
	size_t o, used = 0, cl = 0;
	unsigned int i;
	int ret = 0;

	(void)cmd;
	if (params != NULL && params[0] != '\0' && sscanf(params, "%llu,%llu", &id, &off) != 2)
		return -EINVAL;
	arr = rte_tel_data_alloc();
	if (arr == NULL)
		return -ENOMEM;
	rte_tel_data_start_array(arr, RTE_TEL_STRING_VAL);
	pthread_mutex_lock(&snaps.lock);
	if (id == 0) {
		s = snap_take();
	} else {
		for (i = 0; i < SNAP_SLOTS; i++)
			if (snaps.slot[i].id == id)
				s = &snaps.slot[i];
	}
	rte_tel_data_start_dict(d);
	if (s == NULL || off > s->len) {
		/* Replaced by newer snapshots (or never taken): the client starts again. */
		rte_tel_data_add_dict_string(d, "error", id == 0 ? "exposition failed" : "expired");
		rte_tel_data_free(arr);
		goto out;
	}
	for (o = off; o < s->len && used < PAGE_ESCAPED; o++) {
		unsigned char c = (unsigned char)s->text[o];

		if (cl + 3 > CHUNK) {
			chunk[cl] = '\0';
			rte_tel_data_add_array_string(arr, chunk);
			cl = 0;
		}
		if (plain(c)) {
			chunk[cl++] = (char)c;
			used++;
		} else {
			cl += (size_t)snprintf(chunk + cl, sizeof(chunk) - cl, "%%%02X", c);
			used += 3;
		}
	}
	if (cl > 0) {
		chunk[cl] = '\0';
		rte_tel_data_add_array_string(arr, chunk);
	}
	rte_tel_data_add_dict_u64(d, "snapshot", s->id);
	rte_tel_data_add_dict_u64(d, "offset", off);
	rte_tel_data_add_dict_u64(d, "next", o);
	rte_tel_data_add_dict_u64(d, "size", s->len);
	rte_tel_data_add_dict_string(d, "encoding", "percent");
	if (rte_tel_data_add_dict_container(d, "text", arr, 0) != 0) {
		rte_tel_data_free(arr);
		ret = -ENOSPC;
	}
out:
	pthread_mutex_unlock(&snaps.lock);
	return ret;
}

int
nm_prom_register(struct nm_app *app)
{
	tel_app = app;
	return rte_telemetry_register_cmd("/netmeta/metrics", tel_metrics,
					  "Prometheus exposition, in pages: no param takes a "
					  "snapshot; SNAPSHOT,OFFSET continues it.");
}
