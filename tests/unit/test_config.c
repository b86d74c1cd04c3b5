/* SPDX-License-Identifier: BSD-3-Clause */
/* netmeta.ini: the shipped file equals the defaults; bad input gets errors that name everything. */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config/config.h"
#include "config/eal_args.h"

static const char *
write_tmp(const char *text)
{
	static char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/tmp/nm_test_config_%d.ini", (int)getpid());
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

static void
test_shipped_file_is_the_defaults(void **state)
{
	struct nm_config *def = calloc(1, sizeof(*def)), *file = calloc(1, sizeof(*file));
	char err[512] = "";

	(void)state;
	nm_config_defaults(def);
	nm_config_defaults(file);
	assert_int_equal(nm_config_load(file, NM_SOURCE_ROOT "/netmeta.ini", err, sizeof(err)), 0);
	/* Everything but where it came from must be equal. */
	memset(def->source, 0, sizeof(def->source));
	memset(file->source, 0, sizeof(file->source));
	assert_memory_equal(def, file, sizeof(*def));
	assert_int_equal(def->n_collector_ports, 4);
	assert_int_equal(def->collector_ports[3], 6343);
	assert_string_equal(def->kafka_brokers, "embedded");
	assert_string_equal(def->kafka_topic, "flow-messages");
	assert_int_equal(def->kafka_format, NM_CFG_FORMAT_PROTOBUF);
	assert_int_equal(def->n_ports, 1);
	assert_string_equal(def->ports[0].device, "net_tap0,iface=nm0");
	free(def);
	free(file);
}

static void
test_set(void **state)
{
	struct nm_config c;
	char err[512] = "";

	(void)state;
	nm_config_defaults(&c);
	assert_int_equal(nm_config_set(&c, "kafka.brokers=127.0.0.1:9092", err, sizeof(err)), 0);
	assert_string_equal(c.kafka_brokers, "127.0.0.1:9092");
	assert_int_equal(nm_config_set(&c, "kafka.format = json", err, sizeof(err)), 0);
	assert_int_equal(c.kafka_format, NM_CFG_FORMAT_JSON);
	assert_int_equal(nm_config_set(&c, "collector.ports=9990", err, sizeof(err)), 0);
	assert_int_equal(c.n_collector_ports, 1);
	assert_int_equal(c.collector_ports[0], 9990);
	assert_int_equal(nm_config_set(&c, "kafka.property.sasl.mechanism=PLAIN", err, sizeof(err)),
			 0);
	assert_int_equal(c.n_kafka_props, 1);
	assert_string_equal(c.kafka_props[0].name, "sasl.mechanism");
	assert_string_equal(c.kafka_props[0].value, "PLAIN");
	assert_int_equal(
		nm_config_set(&c, "port.x1.device=net_pcap0,rx_pcap=a.pcap", err, sizeof(err)), 0);
	assert_int_equal(c.n_ports, 2);
	assert_int_equal(nm_config_set(&c, "kafka.compression=zstd", err, sizeof(err)), 0);
	assert_string_equal(c.kafka_compression, "zstd");
}

/*
 * [collector] template_timeout_s and template_hold_s: defaults (RFC 7011 s8.4 / s8), limits
 * named in the error, a reload says they need a restart (the cache takes them at creation).
 */
static void
test_template_expiry_keys(void **state)
{
	struct nm_config c, *b = malloc(sizeof(*b));
	struct nm_config_change ch[4];
	char err[512] = "";

	(void)state;
	assert_non_null(b);
	nm_config_defaults(&c);
	assert_int_equal(c.template_timeout_s, 1800);
	assert_int_equal(c.template_hold_s, 10);
	assert_int_equal(nm_config_set(&c, "collector.template_timeout_s=5", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[collector] template_timeout_s = \"5\""));
	assert_non_null(strstr(err, "from 10 to 604800"));
	assert_int_equal(nm_config_set(&c, "collector.template_hold_s=0", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[collector] template_hold_s = \"0\""));
	assert_non_null(strstr(err, "from 1 to 3600"));
	assert_int_equal(nm_config_set(&c, "collector.template_hold_s=abc", err, sizeof(err)),
			 -EINVAL);
	assert_int_equal(c.template_hold_s, 10);
	*b = c;
	assert_int_equal(nm_config_set(b, "collector.template_timeout_s=60", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "collector.template_hold_s=3", err, sizeof(err)), 0);
	assert_int_equal(b->template_timeout_s, 60);
	assert_int_equal(b->template_hold_s, 3);
	assert_int_equal(nm_config_diff(&c, b, ch, 4), 2);
	assert_string_equal(ch[0].key, "collector.template_timeout_s");
	assert_string_equal(ch[0].was, "1800");
	assert_string_equal(ch[0].now, "60");
	assert_int_equal(ch[0].restart, 1);
	assert_string_equal(ch[1].key, "collector.template_hold_s");
	assert_int_equal(ch[1].restart, 1);
	free(b);
}

/* [collector] max_exporters and exporter_timeout_s: defaults, bounds named, restart on reload. */
static void
test_exporter_expiry_keys(void **state)
{
	struct nm_config *c = malloc(sizeof(*c)), *b = malloc(sizeof(*b));
	struct nm_config_change ch[4];
	char err[512] = "";

	(void)state;
	assert_non_null(c);
	assert_non_null(b);
	nm_config_defaults(c);
	assert_int_equal(c->max_exporters, 4096);
	assert_int_equal(c->exporter_timeout_s, 3600);
	assert_int_equal(nm_config_set(c, "collector.exporter_timeout_s=0", err, sizeof(err)), 0);
	assert_int_equal(c->exporter_timeout_s, 0);
	assert_int_equal(nm_config_set(c, "collector.exporter_timeout_s=-1", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[collector] exporter_timeout_s = \"-1\": expected an integer "
				    "from 0 to 2592000"));
	assert_int_equal(nm_config_set(c, "collector.max_exporters=8", err, sizeof(err)), -EINVAL);
	assert_non_null(
		strstr(err, "[collector] max_exporters = \"8\": expected an integer from 16 to"));
	assert_int_equal(c->max_exporters, 4096);
	*b = *c;
	assert_int_equal(nm_config_set(b, "collector.max_exporters=64", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "collector.exporter_timeout_s=2", err, sizeof(err)), 0);
	assert_int_equal(nm_config_diff(c, b, ch, 4), 2);
	assert_int_equal(ch[0].restart, 1);
	assert_int_equal(ch[1].restart, 1);
	free(c);
	free(b);
}

/* [collector] allow and [exporter.NAME] sflow_sources: parsed, host bits cleared, errors named. */
static void
test_allow(void **state)
{
	static const uint8_t v4net[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 0};
	struct nm_config c;
	char err[512] = "";

	(void)state;
	nm_config_defaults(&c);
	assert_int_equal(c.n_allow, 0);
	assert_int_equal(c.sflow_agent_learn, 1);
	assert_int_equal(nm_config_set(&c, "collector.allow=192.0.2.77/24, 2001:db8::/32 ,10.0.0.1",
				       err, sizeof(err)),
			 0);
	assert_int_equal(c.n_allow, 3);
	assert_memory_equal(c.allow[0].addr, v4net, 16);
	assert_int_equal(c.allow[0].len, 120);
	assert_int_equal(c.allow[1].len, 32);
	assert_int_equal(c.allow[2].len, 128);
	assert_int_equal(nm_config_set(&c, "collector.allow=192.0.2.0/33", err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[collector] allow = \"192.0.2.0/33\""));
	assert_int_equal(c.n_allow, 3); /* a bad list replaces nothing */
	{
		/* A reload sees the change, as text, and says it needs a restart. */
		struct nm_config *b = malloc(sizeof(*b));
		struct nm_config_change ch[4];

		assert_non_null(b);
		*b = c;
		assert_int_equal(nm_config_set(b, "collector.allow=192.0.2.0/25", err, sizeof(err)),
				 0);
		assert_int_equal(nm_config_diff(&c, b, ch, 4), 1);
		assert_string_equal(ch[0].key, "collector.allow");
		assert_string_equal(ch[0].now, "192.0.2.0/25");
		assert_int_equal(ch[0].restart, 1);
		free(b);
	}
	assert_int_equal(nm_config_set(&c, "collector.allow=", err, sizeof(err)), 0);
	assert_int_equal(c.n_allow, 0);
	assert_int_equal(nm_config_set(&c, "collector.sflow_agent_learn=no", err, sizeof(err)), 0);
	assert_int_equal(c.sflow_agent_learn, 0);
	assert_int_equal(nm_config_set(&c, "exporter.e1.address=192.0.2.1", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(&c, "exporter.e1.sflow_sources=192.0.2.7, 2001:db8::7", err,
				       sizeof(err)),
			 0);
	assert_int_equal(c.exporters[0].n_sflow_sources, 2);
	assert_int_equal(
		nm_config_set(&c, "exporter.e1.sflow_sources=192.0.2.0/24", err, sizeof(err)),
		-EINVAL);
	assert_non_null(strstr(err, "sflow_sources"));
}

static void
test_errors_name_everything(void **state)
{
	struct nm_config c;
	char err[512] = "";

	(void)state;
	nm_config_defaults(&c);
	assert_int_equal(nm_config_set(&c, "kafka.format=xml", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "[kafka] format = \"xml\""));
	assert_non_null(strstr(err, "protobuf, json"));
	assert_int_equal(nm_config_set(&c, "collector.ports=9,70000", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "1-65535"));
	assert_int_equal(nm_config_set(&c, "aggregation.max_flows=5", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "from 16 to"));
	assert_int_equal(nm_config_set(&c, "kafka.colour=blue", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "unknown key"));
	assert_non_null(strstr(err, "brokers"));
	assert_int_equal(nm_config_set(&c, "nosuch.key=1", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "unknown section"));
	assert_int_equal(nm_config_set(&c, "novalue", err, sizeof(err)), -22);
	assert_int_equal(nm_config_set(&c, "port.p.role=sideways", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "collector, mirror-rx, mirror-tx"));
	/* The defaults are untouched by the refused values. */
	assert_int_equal(c.kafka_format, NM_CFG_FORMAT_PROTOBUF);
	assert_int_equal(c.n_collector_ports, 4);
	assert_int_equal(c.collector_ports[0], 2055);
}

static void
test_file_errors(void **state)
{
	struct nm_config c;
	char err[512] = "";
	const char *p;

	(void)state;
	nm_config_defaults(&c);
	p = write_tmp("[kafka]\ntopic = t1\nlinger_ms = soon\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), -22);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "[kafka] linger_ms = \"soon\""));
	nm_config_defaults(&c);
	p = write_tmp("[port.a]\nrole = collector\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "device is missing"));
	nm_config_defaults(&c);
	p = write_tmp("[port.a]\ndevice = 0000:01:00.0\nrx_queues = 2\nlcores = 1,2\n"
		      "[port.b]\ndevice = net_af_xdp0,iface=veth1\nrole = mirror-tx\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), 0);
	assert_int_equal(c.n_ports, 2); /* the file's ports replace the default tap */
	assert_int_equal(c.ports[0].rx_queues, 2);
	assert_int_equal(c.ports[0].n_lcores, 2);
	assert_int_equal(c.ports[0].lcores[0], 1);
	assert_int_equal(c.ports[0].lcores[1], 2);
	assert_int_equal(c.ports[1].n_lcores, 0); /* automatic */
	assert_int_equal(c.ports[1].role, NM_ROLE_MIRROR_TX);
	unlink(p);
	assert_int_equal(nm_config_load(&c, "/nonexistent/netmeta.ini", err, sizeof(err)), -2);
	assert_non_null(strstr(err, "/nonexistent/netmeta.ini"));
}

/* Kafka limits that depend on other keys: checked once the whole file is read. */
static void
test_kafka_limits(void **state)
{
	struct nm_config c;
	char err[512] = "";
	const char *p;

	(void)state;
	nm_config_defaults(&c);
	p = write_tmp("[kafka]\nformat = json\nbatch_bytes = 1024\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), -22);
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "[kafka] batch_bytes = 1024"));
	assert_non_null(strstr(err, "json needs at least 2048"));
	nm_config_defaults(&c);
	p = write_tmp("[kafka]\nformat = json\nbatch_bytes = 4096\nspool_dir = /tmp/x\n"
		      "spool_max_bytes = 8192\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), -22);
	assert_non_null(strstr(err, "[kafka] spool_max_bytes = 8192"));
	nm_config_defaults(&c);
	p = write_tmp("[kafka]\nformat = json\nbatch_bytes = 4096\nspool_dir = /var/spool/nm\n"
		      "spool_max_bytes = 65536\nexporter_groups = 4\nqueue_max_bytes = 1048576\n");
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), 0);
	assert_string_equal(c.kafka_spool_dir, "/var/spool/nm");
	assert_int_equal(c.kafka_spool_max_bytes, 65536);
	assert_int_equal(c.kafka_exporter_groups, 4);
	assert_int_equal(c.kafka_queue_max_bytes, 1048576);
	unlink(p);
	/* --set checks the same, against the values set so far. */
	nm_config_defaults(&c);
	assert_int_equal(nm_config_set(&c, "kafka.batch_bytes=1024", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(&c, "kafka.format=json", err, sizeof(err)), -22);
	assert_non_null(strstr(err, "batch_bytes = 1024"));
}

/* The engine applies all --set options first and checks once: their order does not matter. */
static void
test_set_all_order(void **state)
{
	const char *json_first[] = {"kafka.format=json", "kafka.batch_bytes=4096"};
	const char *bytes_first[] = {"kafka.batch_bytes=4096", "kafka.format=json"};
	const char *too_small[] = {"kafka.format=json", "kafka.batch_bytes=2047"};
	struct nm_config c;
	char err[512] = "";
	const char *p;

	(void)state;
	p = write_tmp("[kafka]\nbatch_bytes = 1024\n");
	nm_config_defaults(&c);
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), 0);
	assert_int_equal(nm_config_set_all(&c, json_first, 2, err, sizeof(err)), 0);
	assert_int_equal(c.kafka_batch_bytes, 4096);
	nm_config_defaults(&c);
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), 0);
	assert_int_equal(nm_config_set_all(&c, bytes_first, 2, err, sizeof(err)), 0);
	nm_config_defaults(&c);
	assert_int_equal(nm_config_load(&c, p, err, sizeof(err)), 0);
	assert_int_equal(nm_config_set_all(&c, too_small, 2, err, sizeof(err)), -22);
	/* The error names the file and --set, the key, the value and the limit. */
	assert_non_null(strstr(err, p));
	assert_non_null(strstr(err, "+ --set"));
	assert_non_null(strstr(err, "[kafka] batch_bytes = 2047"));
	assert_non_null(strstr(err, "at least 2048"));
	unlink(p);
}

/* Direction rules and the mirror ports' sampler address (NetMeta's lookup layer reads both). */
static void
test_outward_and_mirror_sampler(void **state)
{
	static const uint8_t lo[16] = {[10] = 0xff, [11] = 0xff, 127, 0, 0, 1};
	static const uint8_t v4[16] = {[10] = 0xff, [11] = 0xff, 192, 0, 2, 50};
	static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 0x10};
	struct nm_config *c = calloc(1, sizeof(*c));
	uint8_t a[16];
	char err[512] = "";
	const char *p;

	(void)state;
	nm_config_defaults(c);
	nm_config_mirror_sampler(c, &c->ports[0], a);
	assert_memory_equal(a, lo, 16); /* NetMeta's portmirror address by default */
	p = write_tmp(
		"[mirror]\nsampler_address = 192.0.2.50\n"
		"[port.rx]\ndevice = net_null0\nrole = mirror-rx\n"
		"[port.tx]\ndevice = net_null1\nrole = mirror-tx\nsampler_address = 2001:db8::10\n"
		"[exporter.edge1]\naddress = 192.0.2.1\noutward_interfaces = 17, 18,4294967295\n");
	assert_int_equal(nm_config_load(c, p, err, sizeof(err)), 0);
	nm_config_mirror_sampler(c, &c->ports[0], a);
	assert_memory_equal(a, v4, 16);
	nm_config_mirror_sampler(c, &c->ports[1], a);
	assert_memory_equal(a, v6, 16);
	assert_int_equal(c->exporters[0].n_outward, 3);
	assert_int_equal(c->exporters[0].outward[1], 18);
	assert_int_equal(c->exporters[0].outward[2], 4294967295u);

	static const char *const bad[][2] = {
		{"[exporter.e]\naddress = 192.0.2.1\noutward_interfaces = 17,17\n",
		 "outward_interfaces = \"17,17\": expected 1 to 64 distinct ifIndexes"},
		{"[exporter.e]\naddress = 192.0.2.1\noutward_interfaces = 4294967296\n",
		 "outward_interfaces = \"4294967296\""},
		{"[exporter.e]\naddress = 192.0.2.1\noutward_interfaces = 1,,2\n",
		 "outward_interfaces = \"1,,2\""},
		{"[exporter.e]\naddress = 192.0.2.1\noutward_interfaces = xe-0/0/1\n",
		 "outward_interfaces = \"xe-0/0/1\""},
		{"[port.m]\ndevice = net_null0\nrole = mirror-rx\nsampler_address = localhost\n",
		 "[port.m] sampler_address = \"localhost\": expected an IPv4 or IPv6 address"},
		{"[mirror]\nsampler_address = 300.1.1.1\n",
		 "[mirror] sampler_address = \"300.1.1.1\": expected an IPv4 or IPv6 address"},
	};
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		nm_config_defaults(c);
		p = write_tmp(bad[i][0]);
		assert_int_equal(nm_config_load(c, p, err, sizeof(err)), -22);
		if (strstr(err, bad[i][1]) == NULL || strstr(err, p) == NULL)
			fail_msg("%s: error '%s' lacks '%s'", bad[i][0], err, bad[i][1]);
	}
	/* 64 ifIndexes are accepted, 65 refused. */
	{
		char text[1024];
		size_t o = (size_t)snprintf(
			text, sizeof(text),
			"[exporter.e]\naddress = 192.0.2.1\noutward_interfaces = ");

		for (unsigned int i = 0; i < 65; i++)
			o += (size_t)snprintf(text + o, sizeof(text) - o, "%s%u", i ? "," : "", i);
		snprintf(text + o, sizeof(text) - o, "\n");
		nm_config_defaults(c);
		assert_int_equal(nm_config_load(c, write_tmp(text), err, sizeof(err)), -22);
		snprintf(strrchr(text, ','), 2, "\n"); /* drop the 65th */
		nm_config_defaults(c);
		assert_int_equal(nm_config_load(c, write_tmp(text), err, sizeof(err)), 0);
		assert_int_equal(c->exporters[0].n_outward, 64);
	}
	unlink(p);
	free(c);
}

/* lcore lists are a value: ids in the order given, each once; bad lists are config errors. */
static void
test_lcores(void **state)
{
	static const struct {
		const char *text;
		int ret;
		unsigned int n;
		uint16_t ids[8];
	} cases[] = {
		{"", 0, 0, {0}},
		{"1", 0, 1, {1}},
		{"1,2", 0, 2, {1, 2}},
		{"2,1", 0, 2, {2, 1}}, /* order kept: queue 0 goes to lcore 2 */
		{"1-3", 0, 3, {1, 2, 3}},
		{" 0, 2-3 ,5", 0, 4, {0, 2, 3, 5}},
		{"1,1,2-3,2", 0, 3, {1, 2, 3}}, /* duplicates once */
		{"127", 0, 1, {127}},
		{"128", -EINVAL, 0, {0}},
		{"3-1", -EINVAL, 0, {0}},
		{"1-", -EINVAL, 0, {0}},
		{"-1", -EINVAL, 0, {0}},
		{"1x", -EINVAL, 0, {0}},
		{",", -EINVAL, 0, {0}},
		{"0-40", -E2BIG, 0, {0}}, /* 41 ids, 32 at most */
		{"99999999999999999999", -EINVAL, 0, {0}},
	};
	uint16_t ids[NM_CFG_MAX_LCORES];
	char text[64];
	unsigned int i, j, n;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		n = 99;
		assert_int_equal(nm_config_parse_lcores(cases[i].text, ids, NM_CFG_MAX_LCORES, &n),
				 cases[i].ret);
		if (cases[i].ret != 0)
			continue;
		assert_int_equal(n, cases[i].n);
		for (j = 0; j < n; j++)
			assert_int_equal(ids[j], cases[i].ids[j]);
	}
	assert_int_equal(nm_config_parse_lcores("0-31", ids, NM_CFG_MAX_LCORES, &n), 0);
	assert_int_equal(n, 32);
	nm_config_format_lcores(ids, 3, text, sizeof(text));
	assert_string_equal(text, "0,1,2");
	nm_config_format_lcores(ids, 32, text, 8); /* truncated, still a string */
	assert_string_equal(text, "0,1,2,3");
}

static void
test_lcores_errors(void **state)
{
	struct nm_config c;
	char err[512] = "";
	const char *bad = "port.p.lcores=0-200";

	(void)state;
	nm_config_defaults(&c);
	assert_int_equal(nm_config_set_all(&c, (const char *const[]){"port.p.device=net_null0"}, 1,
					   err, sizeof(err)),
			 0);
	assert_int_equal(nm_config_set_all(&c, &bad, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[port.p] lcores = \"0-200\""));
	assert_non_null(strstr(err, "from 0 to 127"));
}

static int
find_arg(const struct nm_eal_args *a, const char *w)
{
	int i;

	for (i = 0; i < a->argc; i++)
		if (strcmp(a->argv[i], w) == 0)
			return i;
	return -1;
}

/* The EAL argv: every rule of eal_args.h, without EAL. */
static void
test_eal_args(void **state)
{
	static struct nm_eal_args a;
	struct nm_config *c = calloc(1, sizeof(*c));
	char *extra[] = {"--lcores=0@0,1@1", "--file-prefix", "t1"};
	char *extra_pci[] = {"-a", "0000:02:00.0"};
	char *extra_huge[] = {"--no-huge", "--in-memory"};

	(void)state;
	assert_non_null(c);
	nm_config_defaults(c); /* [eal] args = -l 0-1, one net_tap port */
	assert_int_equal(nm_eal_args_build(&a, c, NULL, 0, true), 0);
	assert_string_equal(a.argv[0], "netmeta");
	assert_string_equal(a.argv[1], "-l");
	assert_string_equal(a.argv[2], "0-1");
	assert_string_equal(a.argv[3], "--no-pci"); /* no PCI port: EAL must not probe */
	assert_string_equal(a.argv[4], "--vdev=net_tap0,iface=nm0");
	assert_int_equal(a.argc, 5);
	assert_null(a.argv[5]);
	assert_false(a.no_huge_added);

	/* A core list after "--" replaces the config's, whatever its spelling. */
	assert_int_equal(nm_eal_args_build(&a, c, extra, 3, true), 0);
	assert_int_equal(find_arg(&a, "-l"), -1);
	assert_int_equal(find_arg(&a, "0-1"), -1);
	assert_int_equal(find_arg(&a, "--lcores=0@0,1@1"), 1);
	assert_int_equal(find_arg(&a, "t1"), 3);
	snprintf(c->eal_args, sizeof(c->eal_args), "-l0-1 --log-level=7");
	assert_int_equal(nm_eal_args_build(&a, c, extra, 1, true), 0);
	assert_int_equal(find_arg(&a, "-l0-1"), -1);
	assert_true(find_arg(&a, "--log-level=7") > 0);

	/* No free hugepages: --no-huge --no-shconf -m 512, and it says so. */
	assert_int_equal(nm_eal_args_build(&a, c, NULL, 0, false), 0);
	assert_true(a.no_huge_added);
	assert_true(find_arg(&a, "--no-huge") > 0);
	assert_true(find_arg(&a, "--no-shconf") > 0);
	assert_string_equal(a.argv[find_arg(&a, "-m") + 1], "512");
	/* The user's --no-huge: --in-memory becomes --no-shconf, nothing is added. */
	assert_int_equal(nm_eal_args_build(&a, c, extra_huge, 2, false), 0);
	assert_false(a.no_huge_added);
	assert_int_equal(find_arg(&a, "--in-memory"), -1);
	assert_true(find_arg(&a, "--no-shconf") > 0);
	assert_int_equal(find_arg(&a, "-m"), -1);

	/* A PCI port or an allow list: no --no-pci; PCI ports go as -a. */
	assert_int_equal(nm_eal_args_build(&a, c, extra_pci, 2, true), 0);
	assert_int_equal(find_arg(&a, "--no-pci"), -1);
	snprintf(c->ports[0].device, sizeof(c->ports[0].device), "0000:01:00.0");
	assert_int_equal(nm_eal_args_build(&a, c, NULL, 0, true), 0);
	assert_int_equal(find_arg(&a, "--no-pci"), -1);
	assert_true(find_arg(&a, "-a0000:01:00.0") > 0);

	/* Too many words is an error, not a silently shortened argv. */
	memset(c->eal_args, 0, sizeof(c->eal_args));
	for (int i = 0; i < 150; i++) /* 450 characters, 150 words */
		strcat(c->eal_args, "-v ");
	assert_int_equal(nm_eal_args_build(&a, c, NULL, 0, true), -ENOSPC);
	free(c);
}

/* What reaches ip(8) for a tap: checked interface names and addresses, at load time too. */
static void
test_tap_words(void **state)
{
	struct nm_config c;
	char name[NM_CFG_IFNAMSIZ], addr[64], err[512];
	unsigned int prefix;
	const char *set;

	(void)state;
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=nm0", name, sizeof(name)), 0);
	assert_string_equal(name, "nm0");
	assert_int_equal(
		nm_config_tap_iface("net_tap1,persist,iface=a.b-c_9,x=1", name, sizeof(name)), 0);
	assert_string_equal(name, "a.b-c_9");
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=abcdefghijklmno", name, sizeof(name)),
			 0); /* 15 characters: the most IFNAMSIZ allows */
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=abcdefghijklmnop", name, sizeof(name)),
			 -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=x;reboot", name, sizeof(name)),
			 -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=$(id)", name, sizeof(name)), -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=a b", name, sizeof(name)), -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=-help", name, sizeof(name)), -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=..", name, sizeof(name)), -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0,iface=", name, sizeof(name)), -EINVAL);
	assert_int_equal(nm_config_tap_iface("net_tap0", name, sizeof(name)), -ENOENT);
	assert_int_equal(nm_config_tap_iface("net_tap0,remote=xiface=a", name, sizeof(name)),
			 -ENOENT);
	assert_int_equal(nm_config_tap_iface("net_pcap0,iface=nm0", name, sizeof(name)), -ENOENT);

	assert_int_equal(nm_config_parse_cidr("169.254.20.1/24", addr, &prefix), 0);
	assert_string_equal(addr, "169.254.20.1");
	assert_int_equal(prefix, 24);
	assert_int_equal(nm_config_parse_cidr("2001:db8::1", addr, &prefix), 0);
	assert_int_equal(prefix, 128);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1/32", NULL, NULL), 0);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1/33", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("2001:db8::1/129", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1/", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1/-1", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1/24 dev lo", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("10.0.0.1;id", NULL, NULL), -EINVAL);
	assert_int_equal(nm_config_parse_cidr("host.example", NULL, NULL), -EINVAL);

	/* The loader refuses the same words, naming the key. */
	nm_config_defaults(&c);
	set = "port.tap0.device=net_tap0,iface=nm0;id";
	assert_int_equal(nm_config_set_all(&c, &set, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "iface= must be 1 to 15 characters"));
	set = "port.tap0.address=169.254.20.1/24;id";
	assert_int_equal(nm_config_set_all(&c, &set, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[port.tap0] address = \"169.254.20.1/24;id\""));
	set = "port.tap0.peer=169.254.20.2 dev lo";
	assert_int_equal(nm_config_set_all(&c, &set, 1, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[port.tap0] peer ="));
	set = "port.tap0.peer=fe80::2";
	assert_int_equal(nm_config_set_all(&c, &set, 1, err, sizeof(err)), 0);
}

/* nm_config_check's reporter: the messages in order. */
struct reported {
	char msg[16][512];
	unsigned int n;
};

static void
collect(void *ctx, const char *problem)
{
	struct reported *r = ctx;

	if (r->n < 16)
		snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s", problem);
	r->n++;
}

/* The r->msg that contains every one of the strings (NULL-terminated), or -1. */
static int
find_msg(const struct reported *r, ...)
{
	unsigned int i;

	for (i = 0; i < r->n && i < 16; i++) {
		va_list ap;
		const char *s;
		int all = 1;

		va_start(ap, r);
		while ((s = va_arg(ap, const char *)) != NULL)
			if (strstr(r->msg[i], s) == NULL)
				all = 0;
		va_end(ap);
		if (all)
			return (int)i;
	}
	return -1;
}

/* --check-config: every problem of a file and of --set is named, not only the first. */
static void
test_check_names_every_problem(void **state)
{
	struct nm_config *c = calloc(1, sizeof(*c));
	struct reported *r = calloc(1, sizeof(*r));
	const char *sets[] = {"kafka.topic=ok", "mirror.mode=sometimes", "noequals"};
	const char *p;

	(void)state;
	/* The shipped file has none. */
	assert_int_equal(nm_config_check(c, NM_SOURCE_ROOT "/netmeta.ini", NULL, 0, collect, r), 0);
	assert_int_equal(r->n, 0);
	p = write_tmp("[kafka]\nlinger_ms = soon\nformat = xml\nbatch_bytes = 2048\n"
		      "colour = blue\n"
		      "[engine]\nlog_level = chatty\nmbufs = 12\n"
		      "[port.a]\nrole = collector\n"
		      "[port.b]\ndevice = net_pcap0,rx_pcap=x.pcap\nrx_queues = 99\n"
		      "[exporter.r1]\nsampling_rate = 0\n"
		      "[exporter.r2]\naddress = 192.0.2.1\n"
		      "[exporter.r3]\naddress = 192.0.2.1\n"
		      "[nosuch]\nkey = 1\n");
	assert_int_equal(nm_config_check(c, p, sets, 3, collect, r), 13);
	assert_int_equal(r->n, 13);
	assert_true(find_msg(r, p, "[kafka] linger_ms = \"soon\"", "from 0 to 60000", NULL) >= 0);
	assert_true(find_msg(r, p, "[kafka] format = \"xml\"", "protobuf, json", NULL) >= 0);
	assert_true(find_msg(r, p, "[kafka] colour = \"blue\"", "unknown key", NULL) >= 0);
	assert_true(find_msg(r, p, "[engine] log_level = \"chatty\"", "emerg", "debug", NULL) >= 0);
	assert_true(find_msg(r, p, "[engine] mbufs = \"12\"", "from 1023", NULL) >= 0);
	assert_true(find_msg(r, p, "[port.b] rx_queues = \"99\"", "from 1 to 64", NULL) >= 0);
	assert_true(find_msg(r, p, "[exporter.r1] sampling_rate = \"0\"", "from 1", NULL) >= 0);
	assert_true(find_msg(r, p, "[nosuch]", "unknown section", NULL) >= 0);
	assert_true(find_msg(r, "--set mirror.mode", NULL) < 0); /* set_key names the source */
	assert_true(find_msg(r, "--set: [mirror] mode = \"sometimes\"", "deterministic, random",
			     NULL) >= 0);
	assert_true(find_msg(r, "--set noequals", "SECTION.KEY=VALUE", NULL) >= 0);
	/* Checks across keys run too, over what was valid, naming the source with --set. */
	assert_true(find_msg(r, "+ --set: [port.a]: device is missing", NULL) >= 0);
	assert_true(find_msg(r, "[exporter.r1]: address is missing", NULL) >= 0);
	assert_true(find_msg(r, "[exporter.r3]: same address as [exporter.r2]", NULL) >= 0);
	/* The valid keys around the bad ones were applied. */
	assert_string_equal(c->kafka_topic, "ok");
	assert_int_equal(c->kafka_batch_bytes, 2048);
	/* A missing file is one problem, the defaults still checked. */
	memset(r, 0, sizeof(*r));
	assert_int_equal(nm_config_check(c, "/nonexistent/x.ini", NULL, 0, collect, r), 1);
	assert_true(find_msg(r, "/nonexistent/x.ini: cannot open", NULL) >= 0);
	unlink(p);
	free(c);
	free(r);
}

/* The keys a reload may change, the ones that need a restart, and sections that come and go. */
static void
test_diff(void **state)
{
	struct nm_config *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
	struct nm_config_change ch[16];
	char err[512] = "";
	const char *p;
	unsigned int n, i;

	(void)state;
	nm_config_defaults(a);
	nm_config_defaults(b);
	assert_int_equal(nm_config_diff(a, b, ch, 16), 0);
	p = write_tmp("[exporter.r1]\naddress = 192.0.2.1\nsampling_rate = 100\n"
		      "interface.1 = ge-0/0/1\ninterface.2 = ge-0/0/2\n"
		      "[exporter.gone]\naddress = 2001:db8::1\n");
	assert_int_equal(nm_config_load(a, p, err, sizeof(err)), 0);
	/* Same exporters in another order, other values. */
	p = write_tmp("[engine]\nlog_level = debug\nstats_interval_ms = 0\n"
		      "[exporter.new]\naddress = 192.0.2.9\n"
		      "[exporter.r1]\ninterface.3 = ge-0/0/3\ninterface.1 = uplink\n"
		      "sampling_rate = 200\naddress = 192.0.2.1\ndescription = edge\n"
		      "outward_interfaces = 1, 3\n");
	assert_int_equal(nm_config_load(b, p, err, sizeof(err)), 0);
	n = nm_config_diff(a, b, ch, 16);
	assert_int_equal(n, 10);
	for (i = 0; i < n; i++)
		assert_int_equal(ch[i].restart, 0);
	assert_string_equal(ch[0].key, "engine.stats_interval_ms");
	assert_string_equal(ch[0].was, "1000");
	assert_string_equal(ch[0].now, "0");
	assert_string_equal(ch[1].key, "engine.log_level");
	assert_string_equal(ch[1].now, "debug");
	assert_string_equal(ch[2].key, "exporter.r1.sampling_rate");
	assert_string_equal(ch[2].was, "100");
	assert_string_equal(ch[2].now, "200");
	assert_string_equal(ch[3].key, "exporter.r1.description");
	/* The direction rule (ClickHouse's isIncomingFlow) is live too. */
	assert_string_equal(ch[4].key, "exporter.r1.outward_interfaces");
	assert_string_equal(ch[4].was, "");
	assert_string_equal(ch[4].now, "1,3");
	assert_string_equal(ch[5].key, "exporter.gone");
	assert_string_equal(ch[5].was, "2001:db8::1");
	assert_string_equal(ch[5].now, "");
	assert_string_equal(ch[6].key, "exporter.new");
	assert_string_equal(ch[6].now, "192.0.2.9");
	assert_string_equal(ch[7].key, "exporter.r1.interface.1");
	assert_string_equal(ch[7].was, "ge-0/0/1");
	assert_string_equal(ch[7].now, "uplink");
	assert_string_equal(ch[8].key, "exporter.r1.interface.2");
	assert_string_equal(ch[8].now, "");
	assert_string_equal(ch[9].key, "exporter.r1.interface.3");
	/* max bounds what is written, not the count. */
	assert_int_equal(nm_config_diff(a, b, ch, 2), 10);

	/* Keys that need a restart. */
	nm_config_defaults(b);
	assert_int_equal(nm_config_load(b, p, err, sizeof(err)), 0);
	memcpy(b->exporters, a->exporters, sizeof(a->exporters));
	b->n_exporters = a->n_exporters;
	memcpy(b->ifnames, a->ifnames, sizeof(a->ifnames));
	b->n_ifnames = a->n_ifnames;
	b->log_level = a->log_level;
	b->stats_interval_ms = a->stats_interval_ms;
	assert_int_equal(nm_config_diff(a, b, ch, 16), 0);
	assert_int_equal(nm_config_set(b, "kafka.brokers=k1:9092", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "collector.ports=2055", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "kafka.compression=zstd", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "kafka.property.client.id=nm1", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "port.tap0.rx_queues=2", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "port.tap0.lcores=1", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "port.x.device=net_null0", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "eal.args=-l 0-2", err, sizeof(err)), 0);
	assert_int_equal(nm_config_set(b, "port.tap0.sampler_address=192.0.2.7", err, sizeof(err)),
			 0);
	n = nm_config_diff(a, b, ch, 16);
	assert_int_equal(n, 9);
	for (i = 0; i < n; i++)
		assert_int_equal(ch[i].restart, 1);
	assert_string_equal(ch[0].key, "eal.args");
	assert_string_equal(ch[0].was, "-l 0-1");
	assert_string_equal(ch[0].now, "-l 0-2");
	assert_string_equal(ch[1].key, "collector.ports");
	assert_string_equal(ch[1].was, "2055,2056,4739,6343");
	assert_string_equal(ch[1].now, "2055");
	assert_string_equal(ch[2].key, "kafka.brokers");
	assert_string_equal(ch[3].key, "kafka.compression");
	assert_string_equal(ch[3].now, "zstd");
	assert_string_equal(ch[4].key, "kafka.property.client.id");
	assert_string_equal(ch[5].key, "port.tap0.rx_queues");
	assert_string_equal(ch[6].key, "port.tap0.lcores");
	assert_string_equal(ch[6].was, "");
	assert_string_equal(ch[6].now, "1");
	assert_string_equal(ch[7].key, "port.tap0.sampler_address");
	assert_string_equal(ch[7].now, "192.0.2.7");
	assert_string_equal(ch[8].key, "port.x");
	unlink(p);
	free(a);
	free(b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_shipped_file_is_the_defaults),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_allow),
		cmocka_unit_test(test_exporter_expiry_keys),
		cmocka_unit_test(test_errors_name_everything),
		cmocka_unit_test(test_file_errors),
		cmocka_unit_test(test_kafka_limits),
		cmocka_unit_test(test_set_all_order),
		cmocka_unit_test(test_outward_and_mirror_sampler),
		cmocka_unit_test(test_lcores),
		cmocka_unit_test(test_lcores_errors),
		cmocka_unit_test(test_eal_args),
		cmocka_unit_test(test_tap_words),
		cmocka_unit_test(test_check_names_every_problem),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_template_expiry_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
