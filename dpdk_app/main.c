/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * netmeta: parse options, then set up in order -- config, EAL, ports, shared tables, the Kafka
 * sink, workers, telemetry, signals -- run the flusher on the main lcore until the end, and tear
 * down in reverse order through one cleanup ladder. Each step lives in its own file (app.h).
 * --check-config checks the config and the host and stops there, before EAL (check.c).
 *
 *   netmeta [-c FILE] [--set SECTION.KEY=VALUE]... [--pcap FILE]... [--mirror-pcap FILE]...
 *           [--summary-json FILE] [--check-config] [-- EAL args]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "app.h"

RTE_LOG_REGISTER_DEFAULT(nm_logtype, INFO);

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: netmeta [-c FILE] [--set SECTION.KEY=VALUE]... [--pcap FILE]...\n"
		"               [--mirror-pcap FILE]... [--summary-json FILE] [--duration S]\n"
		"               [--check-config] [-- EAL args]\n"
		"\n"
		"  -c, --config FILE     configuration (default: the compiled-in defaults, which are\n"
		"                        those of the shipped netmeta.ini)\n"
		"  --set S.K=V           override one key, e.g. --set kafka.brokers=127.0.0.1:9092\n"
		"  --pcap FILE           collector port reading FILE (net_pcap); replaces the ports\n"
		"                        of the config; with only pcap ports the engine exits when\n"
		"                        the files are drained and every row is acknowledged\n"
		"  --mirror-pcap FILE    port-mirror (rx side) port reading FILE\n"
		"  --summary-json FILE   also write the final summary as JSON to FILE\n"
		"  --duration SECONDS    stop (as on SIGTERM) after this long\n"
		"  --check-config        check the config (every problem) and the host: hugepages,\n"
		"                        devices, lcores, spool directory; start nothing; exit 0 or 2\n"
		"  -- ARGS               extra DPDK EAL arguments\n"
		"\n"
		"Exit status: 0 when every accepted record reached Kafka; 1 when records were lost\n"
		"(no memory, not acknowledged, dropped because the Kafka spool was full, found\n"
		"corrupt in the spool, or refused by Kafka into its dead-letter file); 2 on bad\n"
		"usage or configuration; 3 on set-up failure; 4 when nothing was lost but records wait\n"
		"in the Kafka spool (kafka.spool_dir) for the next start.\n"
		"\n"
		"SIGHUP re-reads the config (-c, then --set): [exporter.NAME] sections,\n"
		"engine.log_level and engine.stats_interval_ms change live; a change to any other\n"
		"key is refused and logged, and the running config stays.\n");
}

static int
parse_options(int argc, char **argv, struct nm_options *o)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"pcap", required_argument, NULL, 'p'},
		{"mirror-pcap", required_argument, NULL, 'm'},
		{"summary-json", required_argument, NULL, 'j'},
		{"duration", required_argument, NULL, 'd'},
		{"check-config", no_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "c:h", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 's':
			if (o->n_sets == RTE_DIM(o->sets))
				goto toomany;
			o->sets[o->n_sets++] = optarg;
			break;
		case 'p':
			if (o->n_pcaps == NM_MAX_PCAPS)
				goto toomany;
			o->pcaps[o->n_pcaps++] = optarg;
			break;
		case 'm':
			if (o->n_mirror_pcaps == NM_MAX_PCAPS)
				goto toomany;
			o->mirror_pcaps[o->n_mirror_pcaps++] = optarg;
			break;
		case 'j':
			o->summary_json = optarg;
			break;
		case 'd': {
			char *end;

			o->duration = strtod(optarg, &end);
			if (*end != '\0' || o->duration <= 0) {
				fprintf(stderr, "netmeta: --duration %s: expected seconds > 0\n",
					optarg);
				return -EINVAL;
			}
			break;
		}
		case 'C':
			o->check_config = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	o->eal_extra = argv + optind;
	o->n_eal_extra = argc - optind;
	return 0;
toomany:
	fprintf(stderr, "netmeta: too many --set/--pcap/--mirror-pcap options\n");
	return -EINVAL;
}

/* The configuration: defaults, the file, --set, ports from --pcap. 0 or -EINVAL (exit 2). */
static int
load_config(struct nm_app *app, const struct nm_options *o)
{
	char err[1024];
	unsigned int i;

	nm_config_defaults(&app->cfg);
	if (o->config != NULL && nm_config_load(&app->cfg, o->config, err, sizeof(err)) != 0) {
		fprintf(stderr, "netmeta: %s\n", err);
		return -EINVAL;
	}
	if (nm_config_set_all(&app->cfg, o->sets, o->n_sets, err, sizeof(err)) != 0) {
		fprintf(stderr, "netmeta: %s\n", err);
		return -EINVAL;
	}
	if (nm_ports_from_options(app, o) != 0)
		return -EINVAL;
	for (i = 0; i < app->cfg.n_collector_ports; i++)
		app->collector_port_map[app->cfg.collector_ports[i] >> 3] |=
			(uint8_t)(1u << (app->cfg.collector_ports[i] & 7));
	return 0;
}

int
main(int argc, char **argv)
{
	static struct nm_app app_store;
	struct nm_app *app = &app_store;
	struct nm_options o;
	int status = 3; /* set-up failure, until the run decides */

	/* Before any thread exists, so that all of them inherit it (signals.c). */
	(void)nm_signals_block_all();
	if (parse_options(argc, argv, &o) != 0)
		return 2;
	if (o.check_config)
		return nm_check_config(&o);
	if (load_config(app, &o) != 0)
		return 2;
	if (nm_eal_init(app, &o) != 0)
		return 3;
	nm_reload_init(app, &o);
	rcu_register_thread();
	if (nm_ports_setup(app) != 0)
		goto out_ports;
	if (nm_tables_create(app) != 0)
		goto out_tables;
	if (nm_sink_create(app) != 0)
		goto out_tables;
	if (nm_workers_create(app) != 0)
		goto out_workers;
	if (nm_telemetry_register(app) != 0 || nm_reload_register(app) != 0)
		NM_LOG(WARNING, "telemetry commands not registered\n");
	/* Every thread exists now (EAL's, librdkafka's, the embedded broker's): see signals.c. */
	if (nm_signals_main(app) != 0) {
		fprintf(stderr, "netmeta: cannot install signal handlers: %s\n", strerror(errno));
		goto out_workers;
	}
	nm_app_clock_start(app);
	nm_workers_launch(app);
	status = nm_flusher_run(app, o.duration, o.summary_json);

out_workers:
	/* No telemetry handler may read what is freed from here on. */
	nm_tel_close(app);
	nm_workers_free(app);
	nm_sink_free(app);
out_tables:
	nm_tables_free(app);
out_ports:
	nm_ports_close(app);
	rcu_unregister_thread();
	nm_eal_cleanup();
	return status;
}
