/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * netmeta.ini parsing. Keys are described by one table (section, key, type, limits) that drives
 * the defaults, the file and --set alike, so all three accept exactly the same things and say the
 * same things when they refuse a value.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include <iniparser/iniparser.h>

#include "config.h"
#include "../kafka/kafka.h"
#include "../encode/encode.h"

enum key_type { K_UINT, K_INT, K_STR, K_ENUM, K_UDP_PORTS, K_PREFIXES };

struct key_desc {
	const char *section;
	const char *key;
	enum key_type type;
	size_t off;		  /* offset in struct nm_config */
	size_t size;		  /* K_STR: buffer size; K_UINT/K_INT: 4 or 8 bytes */
	long long min, max;	  /* K_UINT/K_INT */
	const char *const *names; /* K_ENUM: NULL-terminated; the value stored is the index */
	const char *def;
	int live; /* a running engine applies a change on reload (SIGHUP); 0: needs a restart */
};

static const char *const formats[] = {"protobuf", "json", NULL};
static const char *const compressions[] = {"none", "gzip", "snappy", "lz4", "zstd", NULL};
static const char *const mirror_modes[] = {"deterministic", "random", NULL};
static const char *const yes_no[] = {"no", "yes", NULL};
static const char *const roles[] = {"collector", "mirror-rx", "mirror-tx", NULL};
/* DPDK's levels in order: the value stored is RTE_LOG_<LEVEL> - 1. */
static const char *const log_levels[] = {"emerg",  "alert", "crit",  "err", "warning",
					 "notice", "info",  "debug", NULL};

#define F(m) offsetof(struct nm_config, m), sizeof(((struct nm_config *)0)->m)

static const struct key_desc keys[] = {
	{"eal", "args", K_STR, F(eal_args), 0, 0, NULL, "-l 0-1"},
	{"collector", "ports", K_UDP_PORTS, 0, 0, 0, 0, NULL, "2055,2056,4739,6343"},
	{"collector", "default_sampling_rate", K_UINT, F(default_sampling_rate), 1, 1LL << 32, NULL,
	 "1"},
	{"collector", "allow", K_PREFIXES, 0, 0, 0, 0, NULL, ""},
	{"collector", "max_templates_per_exporter", K_UINT, F(max_templates_per_exporter), 1, 65535,
	 NULL, "1024"},
	{"collector", "max_rates_per_exporter", K_UINT, F(max_rates_per_exporter), 1, 65536, NULL,
	 "256"},
	/* Idle expiry and the held-set age (lib/tmpl): restart only, the cache is sized at start.
	 */
	{"collector", "template_timeout_s", K_UINT, F(template_timeout_s), 10, 7 * 86400, NULL,
	 "1800"},
	{"collector", "template_hold_s", K_UINT, F(template_hold_s), 1, 3600, NULL, "10"},
	{"collector", "max_exporters", K_UINT, F(max_exporters), 16, 1 << 20, NULL, "4096"},
	{"collector", "exporter_timeout_s", K_UINT, F(exporter_timeout_s), 0, 30 * 86400, NULL,
	 "3600"},
	{"collector", "sflow_agent_learn", K_ENUM, F(sflow_agent_learn), 0, 0, yes_no, "yes"},
	{"mirror", "sample_rate", K_UINT, F(mirror_sample_rate), 1, 1 << 30, NULL, "1000"},
	{"mirror", "mode", K_ENUM, F(mirror_random), 0, 0, mirror_modes, "deterministic"},
	{"mirror", "sampler_address", K_STR, F(mirror_sampler_address), 0, 0, NULL, "127.0.0.1"},
	{"aggregation", "max_flows", K_UINT, F(agg_max_flows), 16, 1 << 26, NULL, "524288"},
	{"kafka", "brokers", K_STR, F(kafka_brokers), 0, 0, NULL, "embedded"},
	{"kafka", "topic", K_STR, F(kafka_topic), 0, 0, NULL, "flow-messages"},
	{"kafka", "format", K_ENUM, F(kafka_format), 0, 0, formats, "protobuf"},
	{"kafka", "batch_bytes", K_UINT, F(kafka_batch_bytes), 1024, 100 << 20, NULL, "1000000"},
	{"kafka", "linger_ms", K_INT, F(kafka_linger_ms), 0, 60000, NULL, "100"},
	{"kafka", "compression", K_ENUM, 0, 0, 0, 0, compressions, "none"},
	{"kafka", "drain_timeout_ms", K_INT, F(kafka_drain_timeout_ms), 0, 3600000, NULL, "60000"},
	{"kafka", "exporter_groups", K_UINT, F(kafka_exporter_groups), 1, 1024, NULL, "16"},
	{"kafka", "queue_max_bytes", K_UINT, F(kafka_queue_max_bytes), 1 << 20, 1LL << 40, NULL,
	 "268435456"},
	{"kafka", "spool_dir", K_STR, F(kafka_spool_dir), 0, 0, NULL, ""},
	{"kafka", "spool_max_bytes", K_UINT, F(kafka_spool_max_bytes), 1 << 12, 1LL << 50, NULL,
	 "1073741824"},
	{"kafka", "spool_after_ms", K_INT, F(kafka_spool_after_ms), 1, 3600000, NULL, "1000"},
	{"kafka", "spool_max_rejects", K_UINT, F(kafka_spool_max_rejects), 1, 1000, NULL, "5"},
	{"engine", "mbufs", K_UINT, F(mbuf_count), 1023, 1 << 24, NULL, "16383"},
	{"engine", "rx_desc", K_UINT, F(rx_desc), 64, 16384, NULL, "1024"},
	{"engine", "stats_interval_ms", K_INT, F(stats_interval_ms), 0, 3600000, NULL, "1000", 1},
	{"engine", "log_level", K_ENUM, F(log_level), 0, 0, log_levels, "info", 1},
	{"engine", "test_rx_delay_us", K_UINT, F(test_rx_delay_us), 0, 1000000, NULL, "0", 0},
	{"engine", "test_drain_delay_us", K_UINT, F(test_drain_delay_us), 0, 1000000, NULL, "0", 0},
	{"engine", "idle_sleep_us", K_UINT, F(idle_sleep_us), 0, 10000, NULL, "0", 0},
};
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* Keys of a [port.NAME] section. */
static const char *const port_keys[] = {"device",  "role", "rx_queues",	      "lcores",
					"address", "peer", "sampler_address", NULL};

static int parse_addr(const char *text, uint8_t out[16]);
static int parse_prefix(const char *text, struct nm_cfg_prefix *out);

static void
trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		memmove(s, s + 1, strlen(s));
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
}

static void
list_names(const char *const *names, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (; *names != NULL && o < len; names++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", o ? ", " : "", *names);
}

/* Set one described key from its text value. */
static int
set_key(struct nm_config *c, const struct key_desc *k, const char *value, const char *src,
	char *err, size_t errlen)
{
	char *end;

	switch (k->type) {
	case K_UINT:
	case K_INT: {
		long long v;

		errno = 0;
		v = strtoll(value, &end, 0);
		if (errno != 0 || end == value || *end != '\0' || v < k->min || v > k->max) {
			snprintf(err, errlen,
				 "%s: [%s] %s = \"%s\": expected an integer from %lld to %lld", src,
				 k->section, k->key, value, k->min, k->max);
			return -EINVAL;
		}
		if (k->size == 8)
			*(uint64_t *)(void *)((char *)c + k->off) = (uint64_t)v;
		else
			*(uint32_t *)(void *)((char *)c + k->off) = (uint32_t)v;
		return 0;
	}
	case K_STR:
		if (strlen(value) >= k->size) {
			snprintf(err, errlen, "%s: [%s] %s = \"%s\": longer than %zu characters",
				 src, k->section, k->key, value, k->size - 1);
			return -EINVAL;
		}
		snprintf((char *)c + k->off, k->size, "%s", value);
		return 0;
	case K_ENUM: {
		char allowed[256];
		int i;

		for (i = 0; k->names[i] != NULL; i++) {
			if (strcmp(value, k->names[i]) == 0) {
				if (k->names == compressions)
					snprintf(c->kafka_compression, sizeof(c->kafka_compression),
						 "%s", value);
				else
					*(int *)(void *)((char *)c + k->off) = i;
				return 0;
			}
		}
		list_names(k->names, allowed, sizeof(allowed));
		snprintf(err, errlen, "%s: [%s] %s = \"%s\": expected one of %s", src, k->section,
			 k->key, value, allowed);
		return -EINVAL;
	}
	case K_UDP_PORTS: {
		char buf[NM_CFG_STR], *tok, *save = NULL;
		uint16_t ports[NM_CFG_MAX_UDP_PORTS];
		unsigned int n = 0;

		snprintf(buf, sizeof(buf), "%s", value);
		for (tok = strtok_r(buf, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			long v;

			errno = 0;
			v = strtol(tok, &end, 10);
			if (errno != 0 || *end != '\0' || v < 1 || v > 65535 ||
			    n >= NM_CFG_MAX_UDP_PORTS) {
				snprintf(
					err, errlen,
					"%s: [%s] %s = \"%s\": expected a comma-separated list of at "
					"most %d UDP ports (1-65535)",
					src, k->section, k->key, value, NM_CFG_MAX_UDP_PORTS);
				return -EINVAL;
			}
			ports[n++] = (uint16_t)v;
		}
		if (n == 0) {
			snprintf(err, errlen,
				 "%s: [%s] %s = \"%s\": at least one UDP port is needed", src,
				 k->section, k->key, value);
			return -EINVAL;
		}
		/* Only a fully valid list replaces the current one. */
		memcpy(c->collector_ports, ports, n * sizeof(ports[0]));
		c->n_collector_ports = n;
		return 0;
	}
	case K_PREFIXES: {
		char buf[NM_CFG_STR], *tok, *save = NULL;
		struct nm_cfg_prefix pf[NM_CFG_MAX_ALLOW];
		unsigned int n = 0;

		snprintf(buf, sizeof(buf), "%s", value);
		for (tok = strtok_r(buf, ", ", &save); tok != NULL;
		     tok = strtok_r(NULL, ", ", &save)) {
			if (n >= NM_CFG_MAX_ALLOW || parse_prefix(tok, &pf[n]) != 0) {
				snprintf(
					err, errlen,
					"%s: [%s] %s = \"%s\": expected at most %d addresses or "
					"prefixes (192.0.2.0/24, 2001:db8::/32) separated by commas, "
					"or nothing (every source accepted)",
					src, k->section, k->key, value, NM_CFG_MAX_ALLOW);
				return -EINVAL;
			}
			n++;
		}
		memcpy(c->allow, pf, n * sizeof(pf[0]));
		c->n_allow = n;
		return 0;
	}
	}
	return -EINVAL;
}

static struct nm_port_cfg *
port_get(struct nm_config *c, const char *name, const char *src, char *err, size_t errlen)
{
	unsigned int i;

	for (i = 0; i < c->n_ports; i++)
		if (strcmp(c->ports[i].name, name) == 0)
			return &c->ports[i];
	if (c->n_ports == NM_CFG_MAX_PORTS || strlen(name) >= sizeof(c->ports[0].name) ||
	    name[0] == '\0') {
		snprintf(err, errlen, "%s: [port.%s]: %s", src, name,
			 name[0] == '\0' ? "a port section needs a name, e.g. [port.tap0]"
					 : "too many ports or name too long");
		return NULL;
	}
	memset(&c->ports[c->n_ports], 0, sizeof(c->ports[0]));
	snprintf(c->ports[c->n_ports].name, sizeof(c->ports[0].name), "%s", name);
	c->ports[c->n_ports].rx_queues = 1;
	return &c->ports[c->n_ports++];
}

static int
set_port_key(struct nm_config *c, const char *pname, const char *key, const char *value,
	     const char *src, char *err, size_t errlen)
{
	struct nm_port_cfg *p = port_get(c, pname, src, err, errlen);
	char allowed[256];
	char *end;
	int i;

	if (p == NULL)
		return -EINVAL;
	if (strcmp(key, "device") == 0) {
		char ifname[NM_CFG_IFNAMSIZ];

		if (strlen(value) >= sizeof(p->device) || value[0] == '\0')
			goto bad_str;
		/* The tap's interface name goes to ip(8) at start-up: check it now. */
		if (nm_config_tap_iface(value, ifname, sizeof(ifname)) == -EINVAL) {
			snprintf(err, errlen,
				 "%s: [port.%s] device = \"%s\": iface= must be 1 to 15 characters "
				 "of A-Z a-z 0-9 _ . -",
				 src, pname, value);
			return -EINVAL;
		}
		snprintf(p->device, sizeof(p->device), "%s", value);
	} else if (strcmp(key, "role") == 0) {
		for (i = 0; roles[i] != NULL; i++)
			if (strcmp(value, roles[i]) == 0)
				break;
		if (roles[i] == NULL) {
			list_names(roles, allowed, sizeof(allowed));
			snprintf(err, errlen, "%s: [port.%s] role = \"%s\": expected one of %s",
				 src, pname, value, allowed);
			return -EINVAL;
		}
		p->role = (enum nm_port_role)i;
	} else if (strcmp(key, "rx_queues") == 0) {
		long v = strtol(value, &end, 10);

		if (end == value || *end != '\0' || v < 1 || v > 64) {
			snprintf(
				err, errlen,
				"%s: [port.%s] rx_queues = \"%s\": expected an integer from 1 to 64",
				src, pname, value);
			return -EINVAL;
		}
		p->rx_queues = (unsigned int)v;
	} else if (strcmp(key, "lcores") == 0) {
		int r = nm_config_parse_lcores(value, p->lcores, NM_CFG_MAX_LCORES, &p->n_lcores);

		if (r != 0) {
			snprintf(err, errlen, "%s: [port.%s] lcores = \"%s\": %s", src, pname,
				 value,
				 r == -E2BIG ? "at most 32 lcores"
					     : "expected lcore ids from 0 to 127 like \"1\" or "
					       "\"1,2\" or \"1-3\"");
			return -EINVAL;
		}
	} else if (strcmp(key, "address") == 0) {
		if (nm_config_parse_cidr(value, NULL, NULL) != 0) {
			snprintf(err, errlen,
				 "%s: [port.%s] address = \"%s\": expected an IPv4 or IPv6 address "
				 "with an optional prefix length, like 169.254.20.1/24",
				 src, pname, value);
			return -EINVAL;
		}
		snprintf(p->address, sizeof(p->address), "%s", value);
	} else if (strcmp(key, "peer") == 0) {
		uint8_t a[16];

		if (strlen(value) >= sizeof(p->peer) ||
		    (inet_pton(AF_INET, value, a) != 1 && inet_pton(AF_INET6, value, a) != 1)) {
			snprintf(err, errlen,
				 "%s: [port.%s] peer = \"%s\": expected an IPv4 or IPv6 address",
				 src, pname, value);
			return -EINVAL;
		}
		snprintf(p->peer, sizeof(p->peer), "%s", value);
	} else if (strcmp(key, "sampler_address") == 0) {
		if (parse_addr(value, p->sampler_addr) != 0) {
			snprintf(err, errlen,
				 "%s: [port.%s] sampler_address = \"%s\": expected an IPv4 or IPv6 "
				 "address (e.g. 192.0.2.10 or 2001:db8::10)",
				 src, pname, value);
			return -EINVAL;
		}
		p->has_sampler_addr = 1;
	} else {
		list_names(port_keys, allowed, sizeof(allowed));
		snprintf(err, errlen, "%s: [port.%s] %s = \"%s\": unknown key; a port has %s", src,
			 pname, key, value, allowed);
		return -EINVAL;
	}
	return 0;
bad_str:
	snprintf(err, errlen, "%s: [port.%s] %s = \"%s\": empty or too long", src, pname, key,
		 value);
	return -EINVAL;
}

/* ---- [exporter.NAME] ---------------------------------------------------------------- */

static struct nm_exporter_cfg *
exporter_get(struct nm_config *c, const char *name, const char *src, char *err, size_t errlen)
{
	unsigned int i;

	for (i = 0; i < c->n_exporters; i++)
		if (strcmp(c->exporters[i].name, name) == 0)
			return &c->exporters[i];
	if (name[0] == '\0' || strlen(name) >= sizeof(c->exporters[0].name) ||
	    c->n_exporters == NM_CFG_MAX_EXPORTERS) {
		snprintf(err, errlen, "%s: [exporter.%s]: %s", src, name,
			 name[0] == '\0'
				 ? "an exporter section needs a name, e.g. [exporter.edge1]"
				 : "name longer than 63 characters or more than 256 exporters");
		return NULL;
	}
	memset(&c->exporters[c->n_exporters], 0, sizeof(c->exporters[0]));
	snprintf(c->exporters[c->n_exporters].name, sizeof(c->exporters[0].name), "%s", name);
	return &c->exporters[c->n_exporters++];
}

/* IPv4 or IPv6 text -> 16 bytes (IPv4 mapped). 0 or -EINVAL. */
static int
parse_addr(const char *text, uint8_t out[16])
{
	uint8_t v4[4];

	if (inet_pton(AF_INET, text, v4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, v4, 4);
		return 0;
	}
	return inet_pton(AF_INET6, text, out) == 1 ? 0 : -EINVAL;
}

/* "192.0.2.0/24", "2001:db8::/32" or an address (a /32, /128) -> prefix with host bits
 * cleared. 0 or -EINVAL. */
static int
parse_prefix(const char *text, struct nm_cfg_prefix *out)
{
	char a[64];
	const char *slash = strchr(text, '/');
	long len = -1;
	int v4;
	unsigned int i;

	if ((slash ? (size_t)(slash - text) : strlen(text)) >= sizeof(a))
		return -EINVAL;
	snprintf(a, sizeof(a), "%.*s", (int)(slash ? slash - text : (long)strlen(text)), text);
	if (parse_addr(a, out->addr) != 0)
		return -EINVAL;
	v4 = strchr(a, ':') == NULL;
	if (slash != NULL) {
		char *end;

		errno = 0;
		len = strtol(slash + 1, &end, 10);
		if (errno != 0 || end == slash + 1 || *end != '\0' || len < 0 ||
		    len > (v4 ? 32 : 128))
			return -EINVAL;
	} else {
		len = v4 ? 32 : 128;
	}
	out->len = (uint8_t)(v4 ? len + 96 : len);
	for (i = out->len; i < 128; i++)
		out->addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
	return 0;
}

/*
 * "17, 18" -> distinct ifIndexes. 0 or -EINVAL (empty, not a number, out of range, a
 * duplicate, more than max).
 */
static int
parse_if_list(const char *text, uint32_t *out, unsigned int max, unsigned int *n)
{
	const char *p = text;
	unsigned int i, k = 0;

	for (;;) {
		unsigned long long v;
		char *end;

		while (*p == ' ' || *p == '\t')
			p++;
		if (*p < '0' || *p > '9' || k == max)
			return -EINVAL;
		errno = 0;
		v = strtoull(p, &end, 10);
		if (errno != 0 || v > 0xffffffffULL)
			return -EINVAL;
		for (i = 0; i < k; i++)
			if (out[i] == v)
				return -EINVAL;
		out[k++] = (uint32_t)v;
		p = end;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		if (*p++ != ',')
			return -EINVAL;
	}
	*n = k;
	return 0;
}

static int
set_exporter_key(struct nm_config *c, const char *ename, const char *key, const char *value,
		 const char *src, char *err, size_t errlen)
{
	struct nm_exporter_cfg *e = exporter_get(c, ename, src, err, errlen);
	char *end;

	if (e == NULL)
		return -EINVAL;
	if (strcmp(key, "address") == 0) {
		if (parse_addr(value, e->address) != 0) {
			snprintf(err, errlen,
				 "%s: [exporter.%s] address = \"%s\": expected an IPv4 "
				 "or IPv6 address (e.g. 192.0.2.1 or 2001:db8::1)",
				 src, ename, value);
			return -EINVAL;
		}
		e->has_address = 1;
	} else if (strcmp(key, "sampling_rate") == 0) {
		unsigned long long v;

		errno = 0;
		v = strtoull(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || value[0] == '-' || v < 1 ||
		    v > (1ULL << 32)) {
			snprintf(err, errlen,
				 "%s: [exporter.%s] sampling_rate = \"%s\": expected an "
				 "integer from 1 to %llu (1:N packets)",
				 src, ename, value, 1ULL << 32);
			return -EINVAL;
		}
		e->sampling_rate = v;
	} else if (strcmp(key, "description") == 0) {
		if (strlen(value) >= sizeof(e->description)) {
			snprintf(err, errlen,
				 "%s: [exporter.%s] description = \"%.40s...\": longer "
				 "than %zu characters",
				 src, ename, value, sizeof(e->description) - 1);
			return -EINVAL;
		}
		snprintf(e->description, sizeof(e->description), "%s", value);
	} else if (strncmp(key, "interface.", 10) == 0) {
		const char *ix = key + 10;
		unsigned long long v;
		unsigned int i, ei = (unsigned int)(e - c->exporters);

		errno = 0;
		v = strtoull(ix, &end, 10);
		if (errno != 0 || end == ix || *end != '\0' || ix[0] == '-' || v > 0xffffffffULL) {
			snprintf(err, errlen,
				 "%s: [exporter.%s] %s = \"%s\": expected "
				 "interface.<ifIndex> with ifIndex an integer from 0 to 4294967295",
				 src, ename, key, value);
			return -EINVAL;
		}
		if (value[0] == '\0' || strlen(value) >= sizeof(c->ifnames[0].name)) {
			snprintf(err, errlen,
				 "%s: [exporter.%s] %s = \"%s\": expected an interface "
				 "name of 1 to %zu characters",
				 src, ename, key, value, sizeof(c->ifnames[0].name) - 1);
			return -EINVAL;
		}
		for (i = 0; i < c->n_ifnames; i++)
			if (c->ifnames[i].exporter == ei && c->ifnames[i].if_index == v)
				break;
		if (i == c->n_ifnames) {
			if (c->n_ifnames == NM_CFG_MAX_IFNAMES) {
				snprintf(err, errlen,
					 "%s: [exporter.%s] %s = \"%s\": more than %d "
					 "interface names in all",
					 src, ename, key, value, NM_CFG_MAX_IFNAMES);
				return -EINVAL;
			}
			c->n_ifnames++;
		}
		c->ifnames[i].exporter = ei;
		c->ifnames[i].if_index = (uint32_t)v;
		snprintf(c->ifnames[i].name, sizeof(c->ifnames[i].name), "%s", value);
	} else if (strcmp(key, "outward_interfaces") == 0) {
		if (parse_if_list(value, e->outward, NM_CFG_MAX_OUTWARD, &e->n_outward) != 0) {
			snprintf(
				err, errlen,
				"%s: [exporter.%s] outward_interfaces = \"%s\": expected 1 to %d "
				"distinct ifIndexes (integers from 0 to 4294967295) separated by commas",
				src, ename, value, NM_CFG_MAX_OUTWARD);
			return -EINVAL;
		}
	} else if (strcmp(key, "sflow_sources") == 0) {
		char buf[NM_CFG_STR], *tok, *save = NULL;

		snprintf(buf, sizeof(buf), "%s", value);
		e->n_sflow_sources = 0;
		for (tok = strtok_r(buf, ",", &save); tok != NULL;
		     tok = strtok_r(NULL, ",", &save)) {
			trim(tok);
			if (e->n_sflow_sources >= NM_CFG_MAX_SFLOW_SOURCES ||
			    parse_addr(tok, e->sflow_sources[e->n_sflow_sources]) != 0) {
				snprintf(err, errlen,
					 "%s: [exporter.%s] sflow_sources = \"%s\": expected 1 to "
					 "%d IPv4 or IPv6 addresses separated by commas",
					 src, ename, value, NM_CFG_MAX_SFLOW_SOURCES);
				return -EINVAL;
			}
			e->n_sflow_sources++;
		}
	} else {
		snprintf(err, errlen,
			 "%s: [exporter.%s] %s = \"%s\": unknown key; an exporter has "
			 "address, sampling_rate, description, interface.<ifIndex>, "
			 "outward_interfaces and sflow_sources",
			 src, ename, key, value);
		return -EINVAL;
	}
	return 0;
}

/*
 * Where problems go: the first one into err, and the caller stops (start-up and reload); or
 * each one to report, and the caller goes on (--check-config wants all of them at once).
 */
struct sink {
	char *err;
	size_t errlen;
	nm_config_report_fn report;
	void *ctx;
	unsigned int n;
};

/* A problem whose text is in s->err. 1: stop here (no reporter); 0: reported, go on. */
static int
problem(struct sink *s)
{
	s->n++;
	if (s->report == NULL)
		return 1;
	s->report(s->ctx, s->err);
	return 0;
}

/* Every exporter has an address, and no two have the same one. */
static int
validate_exporters(const struct nm_config *c, struct sink *sk)
{
	unsigned int i, j;

	for (i = 0; i < c->n_exporters; i++) {
		const struct nm_exporter_cfg *e = &c->exporters[i];

		if (!e->has_address) {
			snprintf(sk->err, sk->errlen,
				 "%s: [exporter.%s]: address is missing (the exporter's "
				 "IPv4 or IPv6 address, e.g. address = 192.0.2.1)",
				 c->source, e->name);
			if (problem(sk))
				return -EINVAL;
			continue;
		}
		for (j = 0; j < i; j++) {
			if (c->exporters[j].has_address &&
			    memcmp(c->exporters[j].address, e->address, 16) == 0) {
				snprintf(sk->err, sk->errlen,
					 "%s: [exporter.%s]: same address as "
					 "[exporter.%s]; one section per exporter address",
					 c->source, e->name, c->exporters[j].name);
				if (problem(sk))
					return -EINVAL;
				break;
			}
		}
	}
	return 0;
}

/* Set section/key to value, whatever the key. */
static int
set_any(struct nm_config *c, const char *section, const char *key, const char *value,
	const char *src, char *err, size_t errlen)
{
	unsigned int i;

	if (strncmp(section, "port.", 5) == 0)
		return set_port_key(c, section + 5, key, value, src, err, errlen);
	if (strncmp(section, "exporter.", 9) == 0)
		return set_exporter_key(c, section + 9, key, value, src, err, errlen);
	if (strcmp(section, "kafka") == 0 && strncmp(key, "property.", 9) == 0) {
		unsigned int n = c->n_kafka_props;
		char why[384];

		for (i = 0; i < n; i++)
			if (strcmp(c->kafka_prop_store[i][0], key + 9) == 0)
				break;
		if (nm_kafka_prop_check(key + 9, value, why, sizeof(why)) != 0) {
			snprintf(err, errlen, "%s: [kafka] %s: %s", src, key, why);
			return -EINVAL;
		}
		if (i == NM_CFG_MAX_PROPS || key[9] == '\0' || strlen(key + 9) >= NM_CFG_STR ||
		    strlen(value) >= NM_CFG_STR) {
			snprintf(
				err, errlen,
				"%s: [kafka] %s = \"%s\": too many properties (max %d) or too long",
				src, key, value, NM_CFG_MAX_PROPS);
			return -EINVAL;
		}
		snprintf(c->kafka_prop_store[i][0], NM_CFG_STR, "%s", key + 9);
		snprintf(c->kafka_prop_store[i][1], NM_CFG_STR, "%s", value);
		if (i == n)
			c->n_kafka_props++;
		for (i = 0; i < c->n_kafka_props; i++) {
			c->kafka_props[i].name = c->kafka_prop_store[i][0];
			c->kafka_props[i].value = c->kafka_prop_store[i][1];
		}
		return 0;
	}
	for (i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].key, key) == 0)
			return set_key(c, &keys[i], value, src, err, errlen);
	for (i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0)
			break;
	if (i == N_KEYS)
		snprintf(err, errlen,
			 "%s: [%s]: unknown section; sections are eal, collector, mirror, "
			 "aggregation, kafka, engine, port.NAME and exporter.NAME",
			 src, section);
	else {
		char allowed[512];
		size_t o = 0;

		allowed[0] = '\0';
		for (i = 0; i < N_KEYS && o < sizeof(allowed); i++)
			if (strcmp(keys[i].section, section) == 0)
				o += (size_t)snprintf(allowed + o, sizeof(allowed) - o, "%s%s",
						      o ? ", " : "", keys[i].key);
		snprintf(err, errlen, "%s: [%s] %s = \"%s\": unknown key; [%s] has %s%s", src,
			 section, key, value, section, allowed,
			 strcmp(section, "kafka") == 0 ? " and property.<librdkafka name>" : "");
	}
	return -EINVAL;
}

void
nm_config_defaults(struct nm_config *c)
{
	char err[256];
	unsigned int i;

	memset(c, 0, sizeof(*c));
	snprintf(c->source, sizeof(c->source), "(defaults)");
	for (i = 0; i < N_KEYS; i++)
		(void)set_key(c, &keys[i], keys[i].def, "(defaults)", err, sizeof(err));
	/* The default port: a kernel-visible tap interface collecting exports. */
	(void)set_port_key(c, "tap0", "device", "net_tap0,iface=nm0", c->source, err, sizeof(err));
	(void)set_port_key(c, "tap0", "role", "collector", c->source, err, sizeof(err));
	(void)set_port_key(c, "tap0", "address", "169.254.20.1/24", c->source, err, sizeof(err));
	(void)set_port_key(c, "tap0", "peer", "169.254.20.2", c->source, err, sizeof(err));
}

void
nm_config_mirror_sampler(const struct nm_config *c, const struct nm_port_cfg *p, uint8_t out[16])
{
	if (p != NULL && p->has_sampler_addr)
		memcpy(out, p->sampler_addr, 16);
	else if (parse_addr(c->mirror_sampler_address, out) != 0)
		(void)parse_addr("127.0.0.1", out); /* not reached after validate() */
}

void
nm_config_clear_ports(struct nm_config *c)
{
	memset(c->ports, 0, sizeof(c->ports));
	c->n_ports = 0;
}

static int
validate(const struct nm_config *c, struct sink *sk)
{
	unsigned int i, min_batch;

	/* Every record must fit one message, whatever it holds: the sink refuses less. */
	min_batch = c->kafka_format == NM_CFG_FORMAT_JSON ? NM_ENCODE_JSON_MAX : NM_ENCODE_PB_MAX;
	if (c->kafka_batch_bytes < min_batch) {
		snprintf(sk->err, sk->errlen,
			 "%s: [kafka] batch_bytes = %u: format %s needs at least %u "
			 "bytes (the longest encoding of one row)",
			 c->source, c->kafka_batch_bytes,
			 c->kafka_format == NM_CFG_FORMAT_JSON ? "json" : "protobuf", min_batch);
		if (problem(sk))
			return -EINVAL;
	}
	if (c->kafka_queue_max_bytes < 2 * (uint64_t)c->kafka_batch_bytes) {
		snprintf(sk->err, sk->errlen,
			 "%s: [kafka] queue_max_bytes = %" PRIu64 ": must hold two "
			 "batches of batch_bytes (%u), so at least %" PRIu64,
			 c->source, c->kafka_queue_max_bytes, c->kafka_batch_bytes,
			 2 * (uint64_t)c->kafka_batch_bytes);
		if (problem(sk))
			return -EINVAL;
	}
	if (c->kafka_spool_dir[0] != '\0' &&
	    c->kafka_spool_max_bytes < 2 * ((uint64_t)c->kafka_batch_bytes + 64)) {
		snprintf(sk->err, sk->errlen,
			 "%s: [kafka] spool_max_bytes = %" PRIu64 ": must hold two "
			 "batches of batch_bytes (%u), so at least %" PRIu64,
			 c->source, c->kafka_spool_max_bytes, c->kafka_batch_bytes,
			 2 * ((uint64_t)c->kafka_batch_bytes + 64));
		if (problem(sk))
			return -EINVAL;
	}
	if (c->kafka_spool_dir[0] != '\0' && c->kafka_spool_after_ms <= c->kafka_linger_ms) {
		snprintf(sk->err, sk->errlen,
			 "%s: [kafka] spool_after_ms = %d: must exceed linger_ms (%d), which a "
			 "batch waits in librdkafka before it is even sent",
			 c->source, c->kafka_spool_after_ms, c->kafka_linger_ms);
		if (problem(sk))
			return -EINVAL;
	}
	if (validate_exporters(c, sk) != 0)
		return -EINVAL;
	{
		uint8_t a[16];

		if (parse_addr(c->mirror_sampler_address, a) != 0) {
			snprintf(sk->err, sk->errlen,
				 "%s: [mirror] sampler_address = \"%s\": expected an IPv4 or IPv6 "
				 "address (e.g. 127.0.0.1 or 2001:db8::10)",
				 c->source, c->mirror_sampler_address);
			if (problem(sk))
				return -EINVAL;
		}
	}
	for (i = 0; i < c->n_ports; i++) {
		if (c->ports[i].device[0] == '\0') {
			snprintf(sk->err, sk->errlen,
				 "%s: [port.%s]: device is missing (e.g. device = "
				 "net_tap0,iface=nm0 or a PCI address 0000:01:00.0)",
				 c->source, c->ports[i].name);
			if (problem(sk))
				return -EINVAL;
		}
	}
	return sk->n != 0 ? -EINVAL : 0;
}

/*
 * Parse path over c. Without a reporter it stops at the first bad key (-EINVAL, the message in
 * sk->err); with one it reports every bad key, skips it and goes on. -ENOENT/-EINVAL when the
 * file cannot be read at all, -ENOMEM. The checks across keys are the caller's (validate()).
 */
static int
load_file(struct nm_config *c, const char *path, struct sink *sk)
{
	dictionary *d;
	FILE *f;
	int ns, s, ret = 0;
	int file_has_ports = 0;

	/* iniparser prints its own errors on stderr and returns NULL; check readability first. */
	f = fopen(path, "r");
	if (f == NULL) {
		snprintf(sk->err, sk->errlen, "%s: cannot open: %s", path, strerror(errno));
		(void)problem(sk);
		return -ENOENT;
	}
	fclose(f);
	d = iniparser_load(path);
	if (d == NULL) {
		snprintf(sk->err, sk->errlen, "%s: not a valid INI file", path);
		(void)problem(sk);
		return -EINVAL;
	}
	snprintf(c->source, sizeof(c->source), "%s", path);
	ns = iniparser_getnsec(d);
	for (s = 0; s < ns && ret == 0; s++) {
		const char *sec = iniparser_getsecname(d, s);
		int nk = iniparser_getsecnkeys(d, sec), k;
		const char **ks;

		if (strncmp(sec, "port.", 5) == 0 && !file_has_ports) {
			/* A file that names ports replaces the default tap port. */
			nm_config_clear_ports(c);
			file_has_ports = 1;
		}
		if (nk <= 0) {
			if (strncmp(sec, "port.", 5) == 0 &&
			    set_any(c, sec, "role", "collector", path, sk->err, sk->errlen) != 0 &&
			    problem(sk))
				ret = -EINVAL;
			continue;
		}
		ks = calloc((size_t)nk, sizeof(*ks));
		if (ks == NULL) {
			ret = -ENOMEM;
			break;
		}
		iniparser_getseckeys(d, sec, ks);
		for (k = 0; k < nk && ret == 0; k++) {
			const char *full = ks[k];
			const char *key = strchr(full, ':');
			char val[NM_CFG_STR * 2];

			key = key != NULL ? key + 1 : full;
			snprintf(val, sizeof(val), "%s", iniparser_getstring(d, full, ""));
			trim(val);
			if (set_any(c, sec, key, val, path, sk->err, sk->errlen) != 0 &&
			    problem(sk))
				ret = -EINVAL;
		}
		free(ks);
	}
	iniparser_freedict(d);
	return ret;
}

int
nm_config_load(struct nm_config *c, const char *path, char *err, size_t errlen)
{
	struct sink sk = {.err = err, .errlen = errlen};
	int ret = load_file(c, path, &sk);

	return ret != 0 ? ret : validate(c, &sk);
}

static int
apply_set(struct nm_config *c, const char *assignment, char *err, size_t errlen)
{
	char buf[NM_CFG_STR * 2], *eq, *dot, *section, *key, *value;

	if (strlen(assignment) >= sizeof(buf)) {
		snprintf(err, errlen, "--set %.40s...: too long", assignment);
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", assignment);
	eq = strchr(buf, '=');
	if (eq == NULL) {
		snprintf(err, errlen, "--set %s: expected SECTION.KEY=VALUE", assignment);
		return -EINVAL;
	}
	*eq = '\0';
	value = eq + 1;
	section = buf;
	trim(section);
	trim(value);
	/*
	 * kafka.property.<dotted librdkafka name>; exporter.NAME.key (the key may hold a dot:
	 * interface.<ifIndex>); port.NAME.key; otherwise SECTION.KEY.
	 */
	if (strncmp(section, "kafka.property.", 15) == 0) {
		section[5] = '\0';
		key = section + 6;
	} else if (strncmp(section, "exporter.", 9) == 0 && strchr(section + 9, '.') != NULL) {
		dot = strchr(section + 9, '.');
		*dot = '\0';
		key = dot + 1;
	} else {
		dot = strrchr(section, '.');
		if (dot == NULL || dot == section || dot[1] == '\0') {
			snprintf(err, errlen, "--set %s: expected SECTION.KEY=VALUE", assignment);
			return -EINVAL;
		}
		*dot = '\0';
		key = dot + 1;
	}
	if (set_any(c, section, key, value, "--set", err, errlen) != 0)
		return -EINVAL;
	return 0;
}

/* What the checks across keys name as the source once --set has changed something. */
static void
source_with_set(struct nm_config *c)
{
	size_t n = strlen(c->source);

	if (n < 6 || strcmp(c->source + n - 6, " --set") != 0)
		snprintf(c->source + n, sizeof(c->source) - n, "%s", " + --set");
}

int
nm_config_set(struct nm_config *c, const char *assignment, char *err, size_t errlen)
{
	struct sink sk = {.err = err, .errlen = errlen};

	if (apply_set(c, assignment, err, errlen) != 0)
		return -EINVAL;
	source_with_set(c);
	return validate(c, &sk);
}

int
nm_config_set_all(struct nm_config *c, const char *const *assignments, unsigned int n, char *err,
		  size_t errlen)
{
	struct sink sk = {.err = err, .errlen = errlen};
	unsigned int i;

	for (i = 0; i < n; i++)
		if (apply_set(c, assignments[i], err, errlen) != 0)
			return -EINVAL;
	if (n == 0)
		return 0;
	source_with_set(c);
	return validate(c, &sk);
}

unsigned int
nm_config_check(struct nm_config *c, const char *path, const char *const *assignments,
		unsigned int n, nm_config_report_fn report, void *ctx)
{
	char err[1024];
	struct sink sk = {.err = err, .errlen = sizeof(err), .report = report, .ctx = ctx};
	unsigned int i;

	nm_config_defaults(c);
	/* A file that cannot be read leaves nothing to check across keys. */
	if (path != NULL && load_file(c, path, &sk) == -ENOMEM) {
		snprintf(err, sizeof(err), "%s: out of memory while reading it", path);
		(void)problem(&sk);
	}
	for (i = 0; i < n; i++)
		if (apply_set(c, assignments[i], err, sizeof(err)) != 0)
			(void)problem(&sk);
	if (n != 0)
		source_with_set(c);
	(void)validate(c, &sk);
	return sk.n;
}

int
nm_config_parse_lcores(const char *text, uint16_t *out, unsigned int max, unsigned int *n)
{
	const char *p = text;
	unsigned int k = 0, i;

	*n = 0;
	if (*p == '\0')
		return 0; /* automatic */
	while (*p != '\0') {
		unsigned long a, b;
		char *end;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		/* strtoul would take a sign or leading blanks: only digits start an id here. */
		if (*p < '0' || *p > '9')
			return -EINVAL;
		a = strtoul(p, &end, 10);
		b = a;
		if (*end == '-') {
			p = end + 1;
			if (*p < '0' || *p > '9')
				return -EINVAL;
			b = strtoul(p, &end, 10);
			if (b < a)
				return -EINVAL;
		}
		if (b > NM_CFG_LCORE_ID_MAX || (*end != '\0' && *end != ',' && *end != ' '))
			return -EINVAL;
		p = end;
		for (; a <= b; a++) {
			for (i = 0; i < k && out[i] != a; i++)
				;
			if (i < k)
				continue;
			if (k == max)
				return -E2BIG;
			out[k++] = (uint16_t)a;
		}
	}
	if (k == 0)
		return -EINVAL;
	*n = k;
	return 0;
}

void
nm_config_format_lcores(const uint16_t *ids, unsigned int n, char *buf, size_t buflen)
{
	size_t o = 0;
	unsigned int i;

	if (buflen == 0)
		return;
	buf[0] = '\0';
	for (i = 0; i < n && o < buflen; i++) {
		int w = snprintf(buf + o, buflen - o, "%s%u", i ? "," : "", ids[i]);

		if (w < 0)
			break;
		o += (size_t)w;
	}
}

int
nm_config_tap_iface(const char *device, char *out, size_t outlen)
{
	const char *p;
	size_t n;

	if (strncmp(device, "net_tap", 7) != 0)
		return -ENOENT;
	/* The key starts the string's options: after a comma, never inside another value. */
	for (p = strchr(device, ','); p != NULL; p = strchr(p + 1, ','))
		if (strncmp(p + 1, "iface=", 6) == 0)
			break;
	if (p == NULL)
		return -ENOENT;
	p += 7;
	n = strcspn(p, ",");
	if (n == 0 || n >= NM_CFG_IFNAMSIZ || strspn(p, NM_CFG_IFNAME_CHARS) < n || p[0] == '-' ||
	    (n <= 2 && p[0] == '.' && (n == 1 || p[1] == '.')))
		return -EINVAL;
	if (n >= outlen)
		return -ENOSPC;
	memcpy(out, p, n);
	out[n] = '\0';
	return 0;
}

int
nm_config_parse_cidr(const char *text, char *addr, unsigned int *prefix)
{
	char buf[64];
	uint8_t bin[16];
	const char *slash = strchr(text, '/');
	size_t n = slash != NULL ? (size_t)(slash - text) : strlen(text);
	unsigned long len, max;
	char *end;
	int af;

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, text, n);
	buf[n] = '\0';
	if (inet_pton(AF_INET, buf, bin) == 1)
		af = AF_INET;
	else if (inet_pton(AF_INET6, buf, bin) == 1)
		af = AF_INET6;
	else
		return -EINVAL;
	max = af == AF_INET ? 32 : 128;
	len = max;
	if (slash != NULL) {
		if (slash[1] < '0' || slash[1] > '9')
			return -EINVAL;
		len = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || len > max || end - (slash + 1) > 3)
			return -EINVAL;
	}
	if (addr != NULL)
		memcpy(addr, buf, n + 1);
	if (prefix != NULL)
		*prefix = (unsigned int)len;
	return 0;
}

/* Text of a table key's value in c (as the file would spell it), for the diff's messages. */
static void
key_value_text(const struct nm_config *c, const struct key_desc *k, char *buf, size_t len)
{
	const char *p = (const char *)c + k->off;

	switch (k->type) {
	case K_UINT:
	case K_INT:
		if (k->size == 8)
			snprintf(buf, len, "%" PRIu64, *(const uint64_t *)(const void *)p);
		else if (k->type == K_INT)
			snprintf(buf, len, "%d", *(const int32_t *)(const void *)p);
		else
			snprintf(buf, len, "%u", *(const uint32_t *)(const void *)p);
		return;
	case K_STR:
		snprintf(buf, len, "%s", p);
		return;
	case K_ENUM:
		if (k->names == compressions)
			snprintf(buf, len, "%s", c->kafka_compression);
		else
			snprintf(buf, len, "%s", k->names[*(const int *)(const void *)p]);
		return;
	case K_UDP_PORTS: {
		size_t o = 0;
		unsigned int i;

		buf[0] = '\0';
		for (i = 0; i < c->n_collector_ports && o < len; i++)
			o += (size_t)snprintf(buf + o, len - o, "%s%u", i ? "," : "",
					      c->collector_ports[i]);
		return;
	}
	case K_PREFIXES: {
		size_t o = 0;
		unsigned int i;

		buf[0] = '\0';
		for (i = 0; i < c->n_allow && o < len; i++) {
			const struct nm_cfg_prefix *pf = &c->allow[i];
			char a[INET6_ADDRSTRLEN];
			int v4 = pf->len >= 96 &&
				 memcmp(pf->addr, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0;

			if (inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? pf->addr + 12 : pf->addr, a,
				      sizeof(a)) == NULL)
				a[0] = '\0';
			o += (size_t)snprintf(buf + o, len - o, "%s%s/%u", i ? "," : "", a,
					      v4 ? pf->len - 96u : pf->len);
		}
		return;
	}
	}
}

struct diff {
	struct nm_config_change *out;
	unsigned int max;
	unsigned int n;
};

static void change(struct diff *d, int restart, const char *was, const char *now, const char *fmt,
		   ...) __attribute__((format(printf, 5, 6)));

static void
change(struct diff *d, int restart, const char *was, const char *now, const char *fmt, ...)
{
	struct nm_config_change *ch;
	va_list ap;

	if (d->n++ >= d->max)
		return;
	ch = &d->out[d->n - 1];
	va_start(ap, fmt);
	vsnprintf(ch->key, sizeof(ch->key), fmt, ap);
	va_end(ap);
	snprintf(ch->was, sizeof(ch->was), "%s", was);
	snprintf(ch->now, sizeof(ch->now), "%s", now);
	ch->restart = restart;
}

static void
addr_text(const uint8_t a[16], char *buf, size_t len)
{
	static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (memcmp(a, v4, 12) == 0 ? inet_ntop(AF_INET, a + 12, buf, (socklen_t)len) == NULL
				   : inet_ntop(AF_INET6, a, buf, (socklen_t)len) == NULL)
		snprintf(buf, len, "?");
}

static void
outward_text(const struct nm_exporter_cfg *e, char *buf, size_t len)
{
	size_t o = 0;
	unsigned int i;

	buf[0] = '\0';
	for (i = 0; i < e->n_outward && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRIu32, i ? "," : "", e->outward[i]);
}

static const struct nm_port_cfg *
port_find(const struct nm_config *c, const char *name)
{
	unsigned int i;

	for (i = 0; i < c->n_ports; i++)
		if (strcmp(c->ports[i].name, name) == 0)
			return &c->ports[i];
	return NULL;
}

static void
diff_ports(const struct nm_config *a, const struct nm_config *b, struct diff *d)
{
	unsigned int i;

	for (i = 0; i < a->n_ports; i++) {
		const struct nm_port_cfg *p = &a->ports[i], *q = port_find(b, p->name);
		char x[128], y[128];

		if (q == NULL) {
			change(d, 1, p->device, "", "port.%s", p->name);
			continue;
		}
		if (strcmp(p->device, q->device) != 0)
			change(d, 1, p->device, q->device, "port.%s.device", p->name);
		if (p->role != q->role)
			change(d, 1, roles[p->role], roles[q->role], "port.%s.role", p->name);
		if (p->rx_queues != q->rx_queues) {
			snprintf(x, sizeof(x), "%u", p->rx_queues);
			snprintf(y, sizeof(y), "%u", q->rx_queues);
			change(d, 1, x, y, "port.%s.rx_queues", p->name);
		}
		if (p->n_lcores != q->n_lcores ||
		    memcmp(p->lcores, q->lcores, p->n_lcores * sizeof(p->lcores[0])) != 0) {
			nm_config_format_lcores(p->lcores, p->n_lcores, x, sizeof(x));
			nm_config_format_lcores(q->lcores, q->n_lcores, y, sizeof(y));
			change(d, 1, x, y, "port.%s.lcores", p->name);
		}
		if (strcmp(p->address, q->address) != 0)
			change(d, 1, p->address, q->address, "port.%s.address", p->name);
		if (strcmp(p->peer, q->peer) != 0)
			change(d, 1, p->peer, q->peer, "port.%s.peer", p->name);
		if (p->has_sampler_addr != q->has_sampler_addr ||
		    memcmp(p->sampler_addr, q->sampler_addr, sizeof(p->sampler_addr)) != 0) {
			addr_text(p->sampler_addr, x, sizeof(x));
			addr_text(q->sampler_addr, y, sizeof(y));
			change(d, 1, p->has_sampler_addr ? x : "", q->has_sampler_addr ? y : "",
			       "port.%s.sampler_address", p->name);
		}
	}
	for (i = 0; i < b->n_ports; i++)
		if (port_find(a, b->ports[i].name) == NULL)
			change(d, 1, "", b->ports[i].device, "port.%s", b->ports[i].name);
}

static void
diff_props(const struct nm_config *a, const struct nm_config *b, struct diff *d)
{
	unsigned int i, j;

	for (i = 0; i < a->n_kafka_props; i++) {
		for (j = 0; j < b->n_kafka_props; j++)
			if (strcmp(a->kafka_prop_store[i][0], b->kafka_prop_store[j][0]) == 0)
				break;
		if (j == b->n_kafka_props ||
		    strcmp(a->kafka_prop_store[i][1], b->kafka_prop_store[j][1]) != 0)
			change(d, 1, a->kafka_prop_store[i][1],
			       j == b->n_kafka_props ? "" : b->kafka_prop_store[j][1],
			       "kafka.property.%s", a->kafka_prop_store[i][0]);
	}
	for (j = 0; j < b->n_kafka_props; j++) {
		for (i = 0; i < a->n_kafka_props; i++)
			if (strcmp(a->kafka_prop_store[i][0], b->kafka_prop_store[j][0]) == 0)
				break;
		if (i == a->n_kafka_props)
			change(d, 1, "", b->kafka_prop_store[j][1], "kafka.property.%s",
			       b->kafka_prop_store[j][0]);
	}
}

static const struct nm_exporter_cfg *
exporter_find(const struct nm_config *c, const char *name)
{
	unsigned int i;

	for (i = 0; i < c->n_exporters; i++)
		if (strcmp(c->exporters[i].name, name) == 0)
			return &c->exporters[i];
	return NULL;
}

static const char *
ifname_find(const struct nm_config *c, const char *exporter, uint32_t if_index)
{
	unsigned int i;

	for (i = 0; i < c->n_ifnames; i++)
		if (c->ifnames[i].if_index == if_index &&
		    strcmp(c->exporters[c->ifnames[i].exporter].name, exporter) == 0)
			return c->ifnames[i].name;
	return NULL;
}

/* The interface names of exporters in both configs; whole sections come and go as one change. */
static void
diff_ifnames(const struct nm_config *a, const struct nm_config *b, struct diff *d)
{
	unsigned int i;

	for (i = 0; i < a->n_ifnames; i++) {
		const struct nm_ifname_cfg *n = &a->ifnames[i];
		const char *ex = a->exporters[n->exporter].name, *other;

		if (exporter_find(b, ex) == NULL)
			continue;
		other = ifname_find(b, ex, n->if_index);
		if (other == NULL || strcmp(other, n->name) != 0)
			change(d, 0, n->name, other != NULL ? other : "",
			       "exporter.%s.interface.%" PRIu32, ex, n->if_index);
	}
	for (i = 0; i < b->n_ifnames; i++) {
		const struct nm_ifname_cfg *n = &b->ifnames[i];
		const char *ex = b->exporters[n->exporter].name;

		if (exporter_find(a, ex) != NULL && ifname_find(a, ex, n->if_index) == NULL)
			change(d, 0, "", n->name, "exporter.%s.interface.%" PRIu32, ex,
			       n->if_index);
	}
}

static void
diff_exporters(const struct nm_config *a, const struct nm_config *b, struct diff *d)
{
	unsigned int i;
	char x[64], y[64];

	for (i = 0; i < a->n_exporters; i++) {
		const struct nm_exporter_cfg *e = &a->exporters[i], *f = exporter_find(b, e->name);

		addr_text(e->address, x, sizeof(x));
		if (f == NULL) {
			change(d, 0, x, "", "exporter.%s", e->name);
			continue;
		}
		if (memcmp(e->address, f->address, sizeof(e->address)) != 0) {
			addr_text(f->address, y, sizeof(y));
			change(d, 0, x, y, "exporter.%s.address", e->name);
		}
		if (e->sampling_rate != f->sampling_rate) {
			snprintf(x, sizeof(x), "%" PRIu64, e->sampling_rate);
			snprintf(y, sizeof(y), "%" PRIu64, f->sampling_rate);
			change(d, 0, e->sampling_rate ? x : "", f->sampling_rate ? y : "",
			       "exporter.%s.sampling_rate", e->name);
		}
		if (strcmp(e->description, f->description) != 0)
			change(d, 0, e->description, f->description, "exporter.%s.description",
			       e->name);
		/* The direction rule is the ClickHouse dictionaries' (isIncomingFlow): live here.
		 */
		if (e->n_outward != f->n_outward ||
		    memcmp(e->outward, f->outward, e->n_outward * sizeof(e->outward[0])) != 0) {
			char ox[96], oy[96];

			outward_text(e, ox, sizeof(ox));
			outward_text(f, oy, sizeof(oy));
			change(d, 0, ox, oy, "exporter.%s.outward_interfaces", e->name);
		}
	}
	for (i = 0; i < b->n_exporters; i++)
		if (exporter_find(a, b->exporters[i].name) == NULL) {
			addr_text(b->exporters[i].address, y, sizeof(y));
			change(d, 0, "", y, "exporter.%s", b->exporters[i].name);
		}
	diff_ifnames(a, b, d);
}

unsigned int
nm_config_diff(const struct nm_config *a, const struct nm_config *b, struct nm_config_change *out,
	       unsigned int max)
{
	struct diff d = {.out = out, .max = max};
	unsigned int i;

	for (i = 0; i < N_KEYS; i++) {
		const struct key_desc *k = &keys[i];
		char x[NM_CFG_STR], y[NM_CFG_STR];

		/* Compare the text: it covers every type, the port list and compression alike. */
		key_value_text(a, k, x, sizeof(x));
		key_value_text(b, k, y, sizeof(y));
		if (strcmp(x, y) != 0)
			change(&d, !k->live, x, y, "%s.%s", k->section, k->key);
	}
	diff_props(a, b, &d);
	diff_ports(a, b, &d);
	diff_exporters(a, b, &d);
	return d.n;
}
