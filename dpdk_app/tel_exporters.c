/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Per-exporter state (lib/exporter) in the engine, and its telemetry commands:
 *   /netmeta/exporters[,ADDRESS]   every exporter (address, domain, protocol): datagrams,
 *                                  records, sampling rates and where they came from, templates,
 *                                  sequence gaps, decode errors by reason
 *   /netmeta/interfaces[,AGENT]    sFlow generic interface counters per (agent, ifIndex)
 *
 * The table itself is made in set-up (nm_tables_create in workers.c, with the [exporter.NAME]
 * overrides and names) before the workers exist; nm_tel_exporters_register() only registers the
 * commands that read it. It is freed after the workers have stopped.
 *
 * The counters are read through nm_exp_foreach(), which walks the preallocated pools (never
 * freed while the table lives) and never the hash table, and hands each handler a consistent copy
 * of an entry: a slot recycled by expiry while it is read is skipped, never shown mixed. The
 * per-entry fields are generated from NM_EXP_ENTRY_CTRS (lib/exporter), as prom.c's series are.
 * Names, descriptions, overrides and interface names come from the configured version the table
 * holds now, which a reload replaces and frees after a grace period: each handler registers its
 * thread with urcu-qsbr for its duration (DPDK runs handlers on a thread per client connection), so
 * the version it reads stays valid until it unregisters, and one reply shows one version
 * throughout.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <rte_telemetry.h>

#include <urcu-qsbr.h>

#include "app.h"
#include "opsview.h"
#include "xdp_allow.h"
#include "exporter/exporter.h"

/* Telemetry callbacks get no user argument: the app is set once before registration. */
static struct nm_app *tel_app;

/*
 * Telemetry names may hold only letters, digits, '_' and '/': an address as a key becomes
 * 192_0_2_1 or 2001_db8__1 (its full text is in the entry's "address"/"agent" value).
 */
static void
key_text(char *s)
{
	for (; *s != '\0'; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z') || *s == '/'))
			*s = '_';
}

/* DPDK 22.11 writes string values into the JSON reply as they are: keep quotes out. */
void
nm_tel_add_str(struct rte_tel_data *c, const char *name, const char *val)
{
	char buf[RTE_TEL_MAX_STRING_LEN];
	char *p;

	snprintf(buf, sizeof(buf), "%s", val);
	for (p = buf; *p != '\0'; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
	rte_tel_data_add_dict_string(c, name, buf);
}

/* The table's counters (the "exporter" set), as keys of the top-level dict. */
static void
tel_add(const char *key, uint64_t value, const struct nm_ctr_desc *d, void *ctx)
{
	(void)d;
	rte_tel_data_add_dict_u64(ctx, key, value);
}

/*
 * Room under RTE_TEL_MAX_DICT_ENTRIES for the summary keys of the top-level dict: the exporter
 * set, default_sampling_rate and not_listed.
 */
#define MAX_LISTED (RTE_TEL_MAX_DICT_ENTRIES - 16) /* room for the table counters */

struct walk {
	struct rte_tel_data *d;
	const struct nm_exp_conf *conf; /* the configured version, for the whole reply */
	const char *filter;		/* address text, or NULL */
	unsigned int listed;
	unsigned int skipped; /* over MAX_LISTED */
};

static void
add_exporter(const struct nm_exp_entry *e, void *ctx)
{
	struct walk *w = ctx;
	struct rte_tel_data *c;
	char addr[NM_ADDR_STRLEN], key[128], rates[128];
	struct nm_exp_configured cf;
	int configured;
	const char *src;
	size_t o = 0;
	unsigned int i;

	nm_addr_str(e->key.addr, addr, sizeof(addr));
	if (w->filter != NULL && strcmp(w->filter, addr) != 0)
		return;
	if (w->listed >= MAX_LISTED) {
		w->skipped++;
		return;
	}
	c = rte_tel_data_alloc();
	if (c == NULL)
		return;
	rte_tel_data_start_dict(c);
	rte_tel_data_add_dict_string(c, "address", addr);
	rte_tel_data_add_dict_string(c, "protocol", nm_exp_type_name(e->key.type));
	rte_tel_data_add_dict_u64(c, "version", e->version);
	rte_tel_data_add_dict_u64(c, "domain", e->key.domain);
	configured = nm_exp_configured(w->conf, e->key.addr, &cf);
	if (configured) {
		nm_tel_add_str(c, "name", cf.name);
		if (cf.description[0] != '\0')
			nm_tel_add_str(c, "description", cf.description);
	}
	/* The per-entry counters, from the table the Prometheus series are made from too. */
	nm_ctr_foreach(&nm_exp_entry_ctr_set, e, "", tel_add, c);
	/* The name this view had for `bad` before the table existed: kept for its readers. */
	rte_tel_data_add_dict_u64(c, "bad_datagrams", e->bad);
	/* Sampling: the rates seen, and whether they were announced, defaulted or overridden. */
	rates[0] = '\0';
	for (i = 0; i < NM_EXP_RATES && e->rates[i] != 0 && o < sizeof(rates); i++)
		o += (size_t)snprintf(rates + o, sizeof(rates) - o, "%s%" PRIu64, i ? "," : "",
				      e->rates[i]);
	if (e->rates_more != 0 && o < sizeof(rates))
		snprintf(rates + o, sizeof(rates) - o, ",...");
	rte_tel_data_add_dict_string(c, "sampling_rates", rates[0] ? rates : "-");
	if (e->rate_override_records != 0)
		src = e->rate_default_records != 0 ? "override+default" : "override";
	else if (e->rate_default_records == e->records && e->records != 0)
		src = "default (exporter sends no rate)";
	else if (e->rate_default_records != 0)
		src = "exporter+default (some records without a rate)";
	else
		src = e->records != 0 ? "exporter" : "-";
	rte_tel_data_add_dict_string(c, "sampling_source", src);
	if (configured && cf.rate != 0)
		rte_tel_data_add_dict_u64(c, "override_rate", cf.rate);
	/* NetFlow v5 and IPFIX number records, v9 and sFlow datagrams. */
	rte_tel_data_add_dict_string(c, "seq_unit",
				     e->key.type == NM_FLOW_NF5 || e->key.type == NM_FLOW_IPFIX
					     ? "records"
					     : "datagrams");
	rte_tel_data_add_dict_u64(c, "lost_datagrams_estimate", nm_exp_lost_datagrams(e));
	for (i = 1; i < NM_DECODE_ERR_MAX; i++) {
		if (e->err[i] != 0) {
			snprintf(key, sizeof(key), "err_%s", nm_decode_err_name(i));
			rte_tel_data_add_dict_u64(c, key, e->err[i]);
		}
	}
	snprintf(key, sizeof(key), "%s/%" PRIu32 "/%s", addr, e->key.domain,
		 nm_exp_type_name(e->key.type));
	key_text(key);
	if (rte_tel_data_add_dict_container(w->d, key, c, 0) != 0)
		rte_tel_data_free(c);
	else
		w->listed++;
}

static int
tel_exporters(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct walk w = {.d = d, .filter = params != NULL && params[0] ? params : NULL};
	struct nm_exp_stats st;

	(void)cmd;
	rte_tel_data_start_dict(d);
	if (tel_app->exp == NULL)
		return 0;
	nm_exp_get_stats(tel_app->exp, &st);
	nm_ctr_foreach(&nm_exp_ctr_set, &st, "", tel_add, d);
	rte_tel_data_add_dict_u64(d, "default_sampling_rate", tel_app->cfg.default_sampling_rate);
	rcu_register_thread();
	w.conf = nm_exp_conf_current(tel_app->exp);
	rte_tel_data_add_dict_u64(d, "config_version", nm_exp_conf_version(w.conf));
	nm_exp_foreach(tel_app->exp, add_exporter, &w);
	rcu_unregister_thread();
	rte_tel_data_add_dict_u64(d, "not_listed", w.skipped);
	return 0;
}

static void
add_iface(const struct nm_exp_iface *f, void *ctx)
{
	struct walk *w = ctx;
	struct rte_tel_data *c;
	char addr[NM_ADDR_STRLEN], key[128];
	const char *name;

	nm_addr_str(f->agent, addr, sizeof(addr));
	if (w->filter != NULL && strcmp(w->filter, addr) != 0)
		return;
	if (w->listed >= MAX_LISTED) {
		w->skipped++;
		return;
	}
	c = rte_tel_data_alloc();
	if (c == NULL)
		return;
	rte_tel_data_start_dict(c);
	rte_tel_data_add_dict_string(c, "agent", addr);
	rte_tel_data_add_dict_u64(c, "if_index", f->c.if_index);
	name = nm_exp_ifname(w->conf, f->agent, f->c.if_index);
	if (name != NULL)
		nm_tel_add_str(c, "name", name);
#define U(n, v) rte_tel_data_add_dict_u64(c, n, v)
	U("if_type", f->c.if_type);
	U("if_speed", f->c.if_speed);
	U("if_direction", f->c.if_direction);
	U("if_admin_up", f->c.if_status & 1);
	U("if_oper_up", (f->c.if_status >> 1) & 1);
	U("in_octets", f->c.in_octets);
	U("in_ucast_pkts", f->c.in_ucast);
	U("in_multicast_pkts", f->c.in_mcast);
	U("in_broadcast_pkts", f->c.in_bcast);
	U("in_discards", f->c.in_discards);
	U("in_errors", f->c.in_errors);
	U("in_unknown_protos", f->c.in_unknown);
	U("out_octets", f->c.out_octets);
	U("out_ucast_pkts", f->c.out_ucast);
	U("out_multicast_pkts", f->c.out_mcast);
	U("out_broadcast_pkts", f->c.out_bcast);
	U("out_discards", f->c.out_discards);
	U("out_errors", f->c.out_errors);
	U("promiscuous", f->c.promiscuous);
	U("counter_samples", f->samples);
	U("last_seen", f->last_seen);
#undef U
	snprintf(key, sizeof(key), "%s/%" PRIu32, addr, f->c.if_index);
	key_text(key);
	if (rte_tel_data_add_dict_container(w->d, key, c, 0) != 0)
		rte_tel_data_free(c);
	else
		w->listed++;
}

static int
tel_interfaces(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct walk w = {.d = d, .filter = params != NULL && params[0] ? params : NULL};
	struct nm_exp_stats st;

	(void)cmd;
	rte_tel_data_start_dict(d);
	if (tel_app->exp == NULL)
		return 0;
	nm_exp_get_stats(tel_app->exp, &st);
	nm_ctr_foreach(&nm_exp_ctr_set, &st, "", tel_add, d);
	rcu_register_thread();
	w.conf = nm_exp_conf_current(tel_app->exp);
	rte_tel_data_add_dict_u64(d, "config_version", nm_exp_conf_version(w.conf));
	nm_exp_iface_foreach(tel_app->exp, add_iface, &w);
	rcu_unregister_thread();
	rte_tel_data_add_dict_u64(d, "not_listed", w.skipped);
	return 0;
}

/*
 * /netmeta/refused: datagrams [collector] allow refused, in all and by heaviest source: the RX
 * path's, and with net_af_xdp ports the XDP filter's ("xdp_*" keys, "xdp_by_source" packets).
 * Sources are keys as key_text() spells them (10_77_0_3).
 */
static int
tel_refused(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_exp_refused r;
	struct nm_xdp_drops x;
	struct rte_tel_data *by;
	unsigned int i;
	char a[NM_ADDR_STRLEN];

	(void)cmd;
	(void)params;
	nm_app_refused(tel_app, &r);
	rte_tel_data_start_dict(d);
	rte_tel_data_add_dict_u64(d, "refused", r.total);
	for (i = 0; i < NM_EXP_REFUSED_TOP; i++) {
		if (r.top[i].count == 0)
			continue;
		/* Unsanitised, DPDK refused the address as a key: no source was ever listed. */
		nm_addr_str(r.top[i].addr, a, sizeof(a));
		key_text(a);
		rte_tel_data_add_dict_u64(d, a, r.top[i].count);
	}
	if (nm_app_xdp_drops(tel_app, &x) <= 0)
		return 0;
	rte_tel_data_add_dict_u64(d, "xdp_dropped", x.packets);
	rte_tel_data_add_dict_u64(d, "xdp_dropped_bytes", x.bytes);
	rte_tel_data_add_dict_u64(d, "xdp_sources", x.sources);
	by = rte_tel_data_alloc();
	if (by == NULL)
		return 0;
	rte_tel_data_start_dict(by);
	for (i = 0; i < x.n_top; i++) {
		nm_addr_str(x.top[i].addr, a, sizeof(a));
		key_text(a);
		rte_tel_data_add_dict_u64(by, a, x.top[i].packets);
	}
	if (rte_tel_data_add_dict_container(d, "xdp_by_source", by, 0) != 0)
		rte_tel_data_free(by);
	return 0;
}

void
nm_app_refused(const struct nm_app *app, struct nm_exp_refused *r)
{
	unsigned int i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < app->n_workers; i++)
		nm_exp_refused_merge(r, &app->workers[i]->refused);
}

NM_TEL_GUARDED(tel_exporters_g, tel_exporters, tel_app)
NM_TEL_GUARDED(tel_refused_g, tel_refused, tel_app)
NM_TEL_GUARDED(tel_interfaces_g, tel_interfaces, tel_app)

int
nm_tel_exporters_register(struct nm_app *app)
{
	int ret;

#define NM_ONE(...) +1
	RTE_BUILD_BUG_ON(0 NM_EXP_CTRS(NM_ONE, NM_ONE, _) + 3 >
			 RTE_TEL_MAX_DICT_ENTRIES - MAX_LISTED);
#undef NM_ONE
	tel_app = app;
	/* DPDK refuses help texts of RTE_TEL_MAX_STRING_LEN (128) characters or more. */
	ret = rte_telemetry_register_cmd(
		"/netmeta/exporters", tel_exporters_g,
		"Per exporter: datagrams, records, sampling rates, templates, "
		"sequence gaps, errors. Param: address");
	if (ret == 0)
		ret = rte_telemetry_register_cmd(
			"/netmeta/refused", tel_refused_g,
			"Datagrams refused by [collector] allow (RX path; xdp_*: "
			"XDP filter): totals, heaviest sources");
	if (ret == 0)
		ret = rte_telemetry_register_cmd("/netmeta/interfaces", tel_interfaces_g,
						 "sFlow generic interface counters per agent and "
						 "ifIndex. Param: agent address");
	return ret;
}
