/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * What the engine tells its log, and the per-second view of its lcores:
 *   - the main lcore's tick, once a second: each worker's records/s, frames/s, busy share and
 *     mean burst over that second (struct nm_worker_rate, for /netmeta/ports), and one line per
 *     per-packet condition that happened in that second, with its count and running total.
 *     RX lcores never log about packets: a flood of bad datagrams costs one line a second.
 *   - the start-up banner: ports, queues, lcores, memory, broker and topic.
 *   - under systemd (JOURNAL_STREAM set) a syslog priority prefix on every line (<3> ...), which
 *     journald turns into the entry's priority.
 *
 * Which counters are "conditions" is decided by the counter tables, not a list here: every
 * element of a by-reason or by-class array of the worker and decode sets except the good one
 * (frames that are simply not IP or not UDP on a shared link are not worth a warning), and
 * every counter of the exporter table's set (entries refused for want of room), and the template
 * cache's refusals, evictions and expiries. Losses the summary reports (aggregation drops, Kafka
 * drops and failures) are logged the same way. A template layout change is logged once per
 * (exporter, domain, template id): lib/tmpl queues the first change of a key, the tick prints
 * the queue (at most NM_LOG_CHANGES lines a second; the rest wait for the next seconds).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_log.h>
#include <rte_memory.h>

#include "opsview.h"
#include "base/addr.h"

/* ---- systemd journal priorities ---- */

struct jstream {
	int fd;
	int prio;    /* fixed priority, or -1: the priority of the rte_log message */
	bool at_bol; /* the next byte starts a line */
};

static ssize_t
jwrite(void *cookie, const char *buf, size_t size)
{
	struct jstream *j = cookie;
	size_t i = 0;

	while (i < size) {
		const char *nl = memchr(buf + i, '\n', size - i);
		size_t n = nl != NULL ? (size_t)(nl - (buf + i)) + 1 : size - i;

		if (j->at_bol && buf[i] != '<') {
			char pfx[8];
			int prio = j->prio >= 0 ? j->prio : rte_log_cur_msg_loglevel() - 1;

			if (prio < 0 || prio > 7)
				prio = 6;
			snprintf(pfx, sizeof(pfx), "<%d>", prio);
			if (write(j->fd, pfx, strlen(pfx)) < 0)
				return -1;
		}
		if (write(j->fd, buf + i, n) < 0)
			return -1;
		j->at_bol = nl != NULL;
		i += n;
	}
	return (ssize_t)size;
}

static FILE *
jopen(struct jstream *j)
{
	cookie_io_functions_t io = {.write = jwrite};
	FILE *f = fopencookie(j, "w", io);

	if (f != NULL)
		setvbuf(f, NULL, _IOLBF, 0);
	return f;
}

void
nm_log_journal_init(void)
{
	static struct jstream out = {1, 6, true}, err = {2, 3, true}, eal = {2, -1, true};
	FILE *f;

	if (getenv("JOURNAL_STREAM") == NULL)
		return;
	/*
	 * stdout carries the console line and the summary (info); stderr the engine's own error
	 * messages; rte_log lines (DPDK's and NM_LOG) carry their own level. EAL's default log
	 * writes to stdout and syslog both, which the journal would store twice: our stream
	 * replaces it.
	 */
	fflush(stdout);
	fflush(stderr);
	f = jopen(&out);
	if (f != NULL)
		stdout = f;
	f = jopen(&err);
	if (f != NULL)
		stderr = f;
	f = jopen(&eal);
	if (f != NULL)
		(void)rte_openlog_stream(f);
}

/* ---- the banner ---- */

void
nm_banner(const struct nm_app *app)
{
	char lc[128];
	unsigned int i, nq = 0, w, k;
	size_t o = 0;

	for (i = 0; i < app->cfg.n_ports; i++)
		nq += app->cfg.ports[i].rx_queues;
	lc[0] = '\0';
	for (w = 0; w < app->n_workers && o < sizeof(lc); w++)
		o += (size_t)snprintf(lc + o, sizeof(lc) - o, "%s%u", w ? "," : "",
				      app->workers[w]->lcore_id);
	NM_LOG(INFO,
	       "start: %u port(s), %u RX queue(s), RX lcores %s, main lcore %u; memory: %s "
	       "(%" PRIu64 " MiB); kafka: topic %s on %s%s\n",
	       app->cfg.n_ports, nq, lc[0] ? lc : "none", rte_get_main_lcore(),
	       rte_eal_has_hugepages() ? "hugepages" : "no-huge", rte_eal_get_physmem_size() >> 20,
	       app->cfg.kafka_topic, app->kafka != NULL ? nm_kafka_bootstrap(app->kafka) : "-",
	       app->offline ? "; offline (capture files)" : "");
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];

		lc[0] = '\0';
		o = 0;
		for (w = 0; w < app->n_workers; w++)
			for (k = 0; k < app->workers[w]->n_rxq && o < sizeof(lc); k++)
				if (app->workers[w]->rxq[k].port_id == app->ports[i].id)
					o += (size_t)snprintf(lc + o, sizeof(lc) - o,
							      "%sq%u->lcore %u", o ? " " : "",
							      app->workers[w]->rxq[k].queue_id,
							      app->workers[w]->lcore_id);
		NM_LOG(INFO, "port %s: %s, %s, %u RX queue(s): %s\n", pc->name, pc->device,
		       nm_port_role_name(pc->role), pc->rx_queues, lc);
	}
}

/* ---- the tick ---- */

struct nm_lograte {
	uint64_t next_tsc;
	uint64_t last_tsc;
	bool have_prev;
	struct nm_stats_view prev;
	uint64_t lines; /* condition lines logged */
};

static struct nm_lograte lr_store;

void
nm_lograte_init(struct nm_app *app)
{
	memset(&lr_store, 0, sizeof(lr_store));
	lr_store.last_tsc = rte_rdtsc();
	lr_store.next_tsc = lr_store.last_tsc + app->tsc_hz;
	lr_store.have_prev = true; /* from zero: the first second's conditions are logged too */
	app->lograte = &lr_store;
}

static void
worker_rates(struct nm_app *app, double dt)
{
	unsigned int i;

	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];
		struct nm_worker_rate *r = &w->rate;
		uint64_t polls = nm_ctr_get(&w->st.polls), busy = nm_ctr_get(&w->st.busy_polls);
		uint64_t rec = nm_ctr_get(&w->st.records), rx = nm_ctr_get(&w->st.rx_packets);
		uint64_t bursts = nm_ctr_get(&w->st.bursts);
		uint64_t dp = polls - r->prev_polls, db = bursts - r->prev_bursts;

		nm_ctr_set(&r->records_per_s, (uint64_t)((double)(rec - r->prev_records) / dt));
		nm_ctr_set(&r->packets_per_s, (uint64_t)((double)(rx - r->prev_rx) / dt));
		nm_ctr_set(&r->busy_ppm, dp ? (busy - r->prev_busy) * 1000000 / dp : 0);
		nm_ctr_set(&r->burst_milli, db ? (rx - r->prev_rx) * 1000 / db : 0);
		r->prev_polls = polls;
		r->prev_busy = busy;
		r->prev_records = rec;
		r->prev_rx = rx;
		r->prev_bursts = bursts;
	}
}

/* One counter's second: a line when it moved. */
static void
cond_line(struct nm_lograte *lr, const char *what, const char *name, uint64_t now, uint64_t before,
	  uint32_t level)
{
	if (now <= before)
		return;
	rte_log(level, nm_logtype,
		"netmeta: %s: %" PRIu64 " %s in the last second (%" PRIu64 " since start)\n", what,
		now - before, name, now);
	lr->lines++;
}

static bool
benign_class(const char *elem)
{
	return strcmp(elem, "not_ip") == 0 || strcmp(elem, "not_udp") == 0;
}

/* Every element of the set's arrays but the good one (and, for frames, not-IP/not-UDP). */
static void
cond_arrays(struct nm_lograte *lr, const struct nm_ctr_set *s, const void *now, const void *before,
	    const char *what)
{
	unsigned int k, i;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];

		if (d->n == 0)
			continue;
		for (i = d->first > 0 ? d->first : 1; i < d->n; i++)
			if (!benign_class(d->elem(i)))
				cond_line(lr, what, d->elem(i), nm_ctr_value(d, now, i),
					  nm_ctr_value(d, before, i), RTE_LOG_WARNING);
	}
}

static void
conditions(struct nm_lograte *lr, const struct nm_stats_view *v, const struct nm_stats_view *p)
{
	unsigned int k;

	cond_arrays(lr, &nm_worker_ctr_set, &v->s, &p->s, "malformed frames");
	cond_arrays(lr, &nm_decode_ctr_set, &v->s.dec, &p->s.dec, "decode errors");
	cond_line(lr, "mirror", "frames whose headers could not be parsed",
		  v->s.mirror_parse_errors, p->s.mirror_parse_errors, RTE_LOG_WARNING);
	cond_line(lr, "templates", "held data sets dropped (template never came)",
		  v->s.dec.pending_dropped, p->s.dec.pending_dropped, RTE_LOG_WARNING);
	for (k = 0; k < nm_exp_ctr_set.n; k++) {
		const struct nm_ctr_desc *d = &nm_exp_ctr_set.desc[k];

		/* Expiry (idle exporters, interfaces, agent bindings) is housekeeping, not a
		 * refusal: logged at info. */
		int expiry = strstr(d->name, "expired") != NULL;

		if (d->n == 0 && d->kind == NM_CTR_COUNTER)
			cond_line(lr, expiry ? "exporters" : "refused", d->name,
				  nm_ctr_value(d, &v->e, 0), nm_ctr_value(d, &p->e, 0),
				  expiry ? RTE_LOG_INFO : RTE_LOG_WARNING);
	}
	/* The template cache: what it refused, pushed out or expired (never per datagram). */
	for (k = 0; k < nm_tmpl_ctr_set.n; k++) {
		const struct nm_ctr_desc *d = &nm_tmpl_ctr_set.desc[k];

		if (d->n == 0 && d->kind == NM_CTR_COUNTER &&
		    (strstr(d->name, "refused") != NULL || strstr(d->name, "expired") != NULL ||
		     strstr(d->name, "evicted") != NULL))
			cond_line(lr, "templates", d->name, nm_ctr_value(d, &v->t, 0),
				  nm_ctr_value(d, &p->t, 0),
				  strstr(d->name, "expired") != NULL ? RTE_LOG_INFO
								     : RTE_LOG_WARNING);
	}
	cond_line(lr, "aggregation", "records dropped (table full)", v->a.dropped, p->a.dropped,
		  RTE_LOG_ERR);
	cond_line(lr, "kafka", "records failed", v->k.records_failed, p->k.records_failed,
		  RTE_LOG_ERR);
	cond_line(lr, "kafka", "records dropped (spool full)", v->k.records_dropped,
		  p->k.records_dropped, RTE_LOG_ERR);
}

#define NM_LOG_CHANGES 8

/* Template layout changes, once per (exporter, domain, id) (see the file comment). */
static void
log_changes(struct nm_lograte *lr, struct nm_tmpl_cache *c)
{
	struct nm_tmpl_change ch[NM_LOG_CHANGES];
	unsigned int i, n;
	char a[64];

	if (c == NULL)
		return;
	n = nm_tmpl_changes_take(c, ch, NM_LOG_CHANGES);
	for (i = 0; i < n; i++) {
		rte_log(RTE_LOG_WARNING, nm_logtype,
			"netmeta: templates: exporter %s domain %u %s template %u changed layout "
			"(%u -> %u fields); further changes of it are counted only "
			"(tmpl_changed)\n",
			nm_addr_str(ch[i].key.exporter, a, sizeof(a)), ch[i].key.domain,
			ch[i].key.proto == NM_TMPL_NF9 ? "NetFlow v9" : "IPFIX", ch[i].key.id,
			ch[i].old_fields, ch[i].new_fields);
		lr->lines++;
	}
}

void
nm_lograte_tick(struct nm_app *app)
{
	struct nm_lograte *lr = app->lograte;
	static struct nm_stats_view v; /* main lcore only; large for its stack */
	uint64_t now = rte_rdtsc();
	double dt;

	if (lr == NULL || now < lr->next_tsc)
		return;
	dt = (double)(now - lr->last_tsc) / (double)app->tsc_hz;
	lr->last_tsc = now;
	lr->next_tsc = now + app->tsc_hz;
	worker_rates(app, dt > 0 ? dt : 1.0);
	nm_stats_snapshot(app, &v);
	if (lr->have_prev)
		conditions(lr, &v, &lr->prev);
	log_changes(lr, app->tmpl);
	lr->prev = v;
	lr->have_prev = true;
}
