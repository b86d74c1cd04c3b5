/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Configuration versions and live reload.
 *
 * The config the engine started with is version 1. SIGHUP (systemctl reload) or the telemetry
 * command /netmeta/reload asks the main lcore -- the control thread -- to re-read the file the
 * way start-up read it (defaults, the file, then the command line's --set options, and the
 * --pcap ports in place of the file's) and to compare the result with the running config
 * (nm_config_diff):
 *
 *  - keys a running engine cannot change (ports, queues, lcores, EAL arguments, Kafka, the
 *    aggregation size...) refuse the whole reload: each is named with its old and new value and
 *    the running config stays as it was, version and all;
 *  - otherwise the live keys take effect and the version goes up by one: the [exporter.NAME]
 *    sections become a new struct nm_exp_conf, published through RCU (nm_exp_publish:
 *    rcu_xchg_pointer, then synchronize_rcu and the old one freed), engine.log_level and
 *    engine.stats_interval_ms are set.
 *
 * Nothing stops or waits on the RX lcores: they read the exporter version through
 * rcu_dereference once per datagram and pass a quiescent state once per poll loop, which is all
 * the grace period waits for. Records are never dropped or held back by a reload; the records of
 * a datagram decoded before the swap carry the old override, those after it the new one, so the
 * rows of the second after the reload carry only the new ones.
 *
 * The reload runs on the main lcore between two flusher polls, so it never races the flusher,
 * and it blocks that loop only for the file read and one grace period (a few microseconds).
 * Telemetry threads read the outcome under live.lock.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_telemetry.h>

#include <urcu-qsbr.h>
#include <urcu/uatomic.h>

#include "app.h"
#include "exporter/exporter.h"
#include "xdp_allow.h"

#define MAX_LISTED_CHANGES 64

static const char *const outcomes[] = {
	[NM_RELOAD_NONE] = "none",	     [NM_RELOAD_APPLIED] = "applied",
	[NM_RELOAD_UNCHANGED] = "unchanged", [NM_RELOAD_REFUSED] = "refused",
	[NM_RELOAD_FAILED] = "failed",
};

/* engine.log_level's values, as lib/config spells them (RTE_LOG_<LEVEL> - 1). */
static const char *const levels[] = {"emerg",	"alert",  "crit", "err",
				     "warning", "notice", "info", "debug"};

static uint64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

struct nm_exp_conf *
nm_reload_exp_conf(const struct nm_config *c, uint64_t version)
{
	struct nm_exp_conf *x =
		nm_exp_conf_create(NM_CFG_MAX_EXPORTERS, NM_CFG_MAX_IFNAMES, version);
	unsigned int i;
	int ret = 0;

	if (x == NULL)
		return NULL;
	/* The config has checked what could fail here (addresses unique, counts in range). */
	for (i = 0; i < c->n_exporters && ret == 0; i++)
		ret = nm_exp_conf_add(x, c->exporters[i].address, c->exporters[i].sampling_rate,
				      c->exporters[i].name, c->exporters[i].description);
	for (i = 0; i < c->n_ifnames && ret == 0; i++)
		ret = nm_exp_conf_ifname(x, c->exporters[c->ifnames[i].exporter].address,
					 c->ifnames[i].if_index, c->ifnames[i].name);
	if (ret != 0) {
		nm_exp_conf_free(x);
		errno = -ret;
		return NULL;
	}
	return x;
}

static void
apply_log_level(const struct nm_config *c)
{
	(void)rte_log_set_level(nm_logtype, (uint32_t)c->log_level + 1);
}

void
nm_reload_init(struct nm_app *app, const struct nm_options *o)
{
	struct nm_cfg_live *l = &app->live;

	pthread_mutex_init(&l->lock, NULL);
	l->opts = o;
	l->version = 1;
	l->loaded_ns = wall_ns();
	apply_log_level(&app->cfg);
}

void
nm_reload_request(struct nm_app *app)
{
	app->live.signalled = 1;
}

/* Record the outcome for telemetry and the summary, and log it. */
static void
finish(struct nm_app *app, enum nm_reload_outcome out, const char *msg)
{
	struct nm_cfg_live *l = &app->live;

	pthread_mutex_lock(&l->lock);
	l->last_outcome = out;
	l->last_ns = wall_ns();
	snprintf(l->last, sizeof(l->last), "%s", msg);
	l->counts[out]++;
	pthread_mutex_unlock(&l->lock);
	if (out == NM_RELOAD_APPLIED || out == NM_RELOAD_UNCHANGED)
		NM_LOG(NOTICE, "%s\n", msg);
	else
		NM_LOG(ERR, "%s\n", msg);
}

/* "key (\"was\" -> \"now\")" for each change with restart == want, comma-separated. */
static size_t
list_changes(char *buf, size_t len, const struct nm_config_change *ch, unsigned int n,
	     unsigned int total, int want)
{
	size_t o = 0;
	unsigned int i, k = 0;

	for (i = 0; i < n && o < len; i++) {
		if (ch[i].restart != want)
			continue;
		o += (size_t)snprintf(buf + o, len - o, "%s%s (\"%s\" -> \"%s\")", k++ ? ", " : "",
				      ch[i].key, ch[i].was, ch[i].now);
	}
	if (total > n && o < len)
		o += (size_t)snprintf(buf + o, len - o, " and %u more", total - n);
	return o < len ? o : len;
}

static void
reload(struct nm_app *app)
{
	const struct nm_options *o = app->live.opts;
	const char *path = o->config != NULL ? o->config : "(no -c file: defaults)";
	struct nm_config *next = calloc(1, sizeof(*next));
	struct nm_config_change *ch = calloc(MAX_LISTED_CHANGES, sizeof(*ch));
	char err[1024], msg[sizeof(app->live.last)];
	unsigned int n, shown, i, restart = 0;
	struct nm_exp_conf *x;
	uint64_t version = app->live.version;

	if (next == NULL || ch == NULL) {
		snprintf(msg, sizeof(msg),
			 "reload of %s failed: out of memory; the running config (version %" PRIu64
			 ") stays",
			 path, version);
		finish(app, NM_RELOAD_FAILED, msg);
		goto out;
	}
	nm_config_defaults(next);
	if ((o->config != NULL && nm_config_load(next, o->config, err, sizeof(err)) != 0) ||
	    nm_config_set_all(next, o->sets, o->n_sets, err, sizeof(err)) != 0) {
		snprintf(msg, sizeof(msg),
			 "reload failed: %s; the running config (version %" PRIu64 ") stays", err,
			 version);
		finish(app, NM_RELOAD_FAILED, msg);
		goto out;
	}
	/* --pcap/--mirror-pcap replaced the file's ports at start: they still do. */
	if (o->n_pcaps + o->n_mirror_pcaps > 0) {
		memcpy(next->ports, app->cfg.ports, sizeof(next->ports));
		next->n_ports = app->cfg.n_ports;
	}
	n = nm_config_diff(&app->cfg, next, ch, MAX_LISTED_CHANGES);
	shown = n < MAX_LISTED_CHANGES ? n : MAX_LISTED_CHANGES;
	for (i = 0; i < shown; i++)
		restart += (unsigned int)ch[i].restart;
	if (n == 0) {
		snprintf(msg, sizeof(msg),
			 "reload of %s: nothing changed; config version %" PRIu64 " stays live",
			 path, version);
		finish(app, NM_RELOAD_UNCHANGED, msg);
		goto out;
	}
	if (restart != 0 || n > MAX_LISTED_CHANGES) {
		size_t m = (size_t)snprintf(msg, sizeof(msg),
					    "reload of %s refused, the running config (version "
					    "%" PRIu64 ") stays: ",
					    path, version);

		if (restart == 0) {
			/* Too many to check each: refuse rather than apply what was not read. */
			snprintf(msg + m, sizeof(msg) - m,
				 "more than %d changes at once; restart the engine",
				 MAX_LISTED_CHANGES);
		} else {
			m += list_changes(msg + m, sizeof(msg) - m, ch, shown, shown, 1);
			m += (size_t)snprintf(msg + m, sizeof(msg) - m, " %s a restart",
					      restart > 1 ? "need" : "needs");
			if (restart < shown && m < sizeof(msg)) {
				m += (size_t)snprintf(msg + m, sizeof(msg) - m,
						      "; not applied either: ");
				if (m < sizeof(msg))
					list_changes(msg + m, sizeof(msg) - m, ch, shown, shown, 0);
			}
		}
		finish(app, NM_RELOAD_REFUSED, msg);
		goto out;
	}
	x = nm_reload_exp_conf(next, version + 1);
	if (x == NULL) {
		snprintf(msg, sizeof(msg),
			 "reload of %s failed: the exporter sections: %s; the running config "
			 "(version %" PRIu64 ") stays",
			 path, strerror(errno), version);
		finish(app, NM_RELOAD_FAILED, msg);
		goto out;
	}
	/*
	 * The XDP filters of net_af_xdp ports admit the new exporter addresses before the RX
	 * path does. On failure they may admit both versions' (the RX path still refuses).
	 */
	if (nm_xdp_allow_reload(app, next) != 0) {
		nm_exp_conf_free(x);
		snprintf(msg, sizeof(msg),
			 "reload of %s failed: the XDP filter's admitted sources could not be "
			 "updated (see the log); the running config (version %" PRIu64 ") stays",
			 path, version);
		finish(app, NM_RELOAD_FAILED, msg);
		goto out;
	}
	/* From here on nothing fails: the new version goes live as a whole. */
	nm_exp_publish(app->exp, x);
	/*
	 * Only the live keys of app->cfg change, under the lock telemetry reads them with; the RX
	 * lcores read none of them.
	 */
	pthread_mutex_lock(&app->live.lock);
	memcpy(app->cfg.exporters, next->exporters, sizeof(next->exporters));
	app->cfg.n_exporters = next->n_exporters;
	memcpy(app->cfg.ifnames, next->ifnames, sizeof(next->ifnames));
	app->cfg.n_ifnames = next->n_ifnames;
	app->cfg.stats_interval_ms = next->stats_interval_ms;
	app->cfg.log_level = next->log_level;
	apply_log_level(&app->cfg);
	app->live.version = version + 1;
	app->live.loaded_ns = wall_ns();
	pthread_mutex_unlock(&app->live.lock);
	{
		size_t m = (size_t)snprintf(msg, sizeof(msg),
					    "config version %" PRIu64 " live (%s): ", version + 1,
					    path);

		list_changes(msg + m, sizeof(msg) - m, ch, shown, n, 0);
	}
	finish(app, NM_RELOAD_APPLIED, msg);
out:
	free(ch);
	free(next);
}

void
nm_reload_poll(struct nm_app *app)
{
	struct nm_cfg_live *l = &app->live;
	uint64_t req = uatomic_read(&l->requests);

	if (!l->signalled && req == uatomic_read(&l->served))
		return;
	l->signalled = 0;
	reload(app);
	uatomic_set(&l->served, req);
}

/* Telemetry callbacks get no user argument; the app is set once before registration. */
static struct nm_app *tel_app;

static void
add_live(struct rte_tel_data *d)
{
	struct nm_cfg_live *l = &tel_app->live;
	char buf[RTE_TEL_MAX_STRING_LEN];
	const struct nm_options *o = l->opts;
	char *p;

	pthread_mutex_lock(&l->lock);
	rte_tel_data_add_dict_u64(d, "version", l->version);
	rte_tel_data_add_dict_u64(d, "loaded_at", l->loaded_ns / 1000000000ULL);
	snprintf(buf, sizeof(buf), "%s", o->config != NULL ? o->config : "(defaults)");
	rte_tel_data_add_dict_string(d, "file", buf);
	rte_tel_data_add_dict_u64(d, "set_options", o->n_sets);
	rte_tel_data_add_dict_u64(d, "reloads_applied", l->counts[NM_RELOAD_APPLIED]);
	rte_tel_data_add_dict_u64(d, "reloads_unchanged", l->counts[NM_RELOAD_UNCHANGED]);
	rte_tel_data_add_dict_u64(d, "reloads_refused", l->counts[NM_RELOAD_REFUSED]);
	rte_tel_data_add_dict_u64(d, "reloads_failed", l->counts[NM_RELOAD_FAILED]);
	rte_tel_data_add_dict_string(d, "last_reload", outcomes[l->last_outcome]);
	rte_tel_data_add_dict_u64(d, "last_reload_at", l->last_ns / 1000000000ULL);
	/* DPDK 22.11 cuts strings at 128 characters and writes them unescaped: the log has all. */
	snprintf(buf, sizeof(buf), "%.*s", (int)sizeof(buf) - 1, l->last);
	for (p = buf; *p != '\0'; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
			*p = '\'';
	rte_tel_data_add_dict_string(d, "last_reload_message", buf);
	rte_tel_data_add_dict_u64(d, "exporters_configured", tel_app->cfg.n_exporters);
	rte_tel_data_add_dict_u64(d, "stats_interval_ms", (uint64_t)tel_app->cfg.stats_interval_ms);
	if (tel_app->cfg.log_level >= 0 && tel_app->cfg.log_level < (int)RTE_DIM(levels))
		rte_tel_data_add_dict_string(d, "log_level", levels[tel_app->cfg.log_level]);
	pthread_mutex_unlock(&l->lock);
}

/* /netmeta/config: which config version is live, and what the last reload did. */
static int
tel_config(const char *cmd, const char *params, struct rte_tel_data *d)
{
	const struct nm_exp_conf *x;

	(void)cmd;
	(void)params;
	rte_tel_data_start_dict(d);
	add_live(d);
	/* The version the RX lcores read now: equal to version once a reload is through. */
	rcu_register_thread();
	x = nm_exp_conf_current(tel_app->exp);
	rte_tel_data_add_dict_u64(d, "exporter_sections_version", nm_exp_conf_version(x));
	rcu_unregister_thread();
	return 0;
}

/* /netmeta/reload: as SIGHUP, but waits (up to 10 s) and answers with the outcome. */
static int
tel_reload(const char *cmd, const char *params, struct rte_tel_data *d)
{
	struct nm_cfg_live *l = &tel_app->live;
	uint64_t mine = uatomic_add_return(&l->requests, 1);
	int i;

	(void)cmd;
	(void)params;
	for (i = 0; i < 10000 && uatomic_read(&l->served) < mine && !tel_app->quit; i++)
		usleep(1000);
	rte_tel_data_start_dict(d);
	if (uatomic_read(&l->served) < mine) {
		rte_tel_data_add_dict_string(
			d, "result", tel_app->quit ? "engine stopping" : "no answer in 10 s");
		return 0;
	}
	add_live(d);
	return 0;
}

int
nm_reload_register(struct nm_app *app)
{
	int ret;

	tel_app = app;
	ret = rte_telemetry_register_cmd("/netmeta/config", tel_config,
					 "The live config version, its file, and what the last "
					 "reload did.");
	if (ret == 0)
		ret = rte_telemetry_register_cmd("/netmeta/reload", tel_reload,
						 "Re-read the config file as SIGHUP does; answers "
						 "with the outcome.");
	return ret;
}
