/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_CONFIG_H
#define NM_CONFIG_H

/*
 * netmeta.ini: the engine's configuration (iniparser). Every key has a default compiled in, equal
 * to the shipped netmeta.ini, so the engine runs with no file at all. Unknown sections and keys and
 * bad values are errors that name the file, the section, the key, the value and what is allowed.
 *
 * Threading: load at start-up on the main thread; the result is read-only afterwards. A reload
 * (SIGHUP) loads a new struct on the control thread and compares it with the running one
 * (nm_config_diff); the live keys of the running struct change only under the engine's lock.
 * Cost: loading reads the file (syscalls, iniparser allocates and frees); struct nm_config itself
 * is plain data with no pointers to free. Not for the RX path.
 */

#include <stddef.h>
#include <stdint.h>

#define NM_CFG_MAX_PORTS 16
#define NM_CFG_MAX_UDP_PORTS 32
#define NM_CFG_MAX_PROPS 32
#define NM_CFG_STR 512
#define NM_CFG_MAX_LCORES 32	/* lcores one port's queues may name (the engine's worker limit) */
#define NM_CFG_LCORE_ID_MAX 127 /* highest lcore id (DPDK's RTE_MAX_LCORE is 128) */

/*
 * Config holds data only: it includes no other module of lib/. The app maps these values onto
 * the parameters of the modules they configure (e.g. nm_kafka_params).
 */

/* How rows are encoded on the topic ([kafka] format). */
enum nm_cfg_format {
	NM_CFG_FORMAT_PROTOBUF = 0, /* length-delimited FlowMessage */
	NM_CFG_FORMAT_JSON = 1,	    /* JSONEachRow */
};

/* A librdkafka property passed through ([kafka] property.NAME = VALUE). */
struct nm_cfg_prop {
	const char *name; /* point into the config's own storage */
	const char *value;
};

enum nm_port_role {
	NM_ROLE_COLLECTOR = 0,
	NM_ROLE_MIRROR_RX,
	NM_ROLE_MIRROR_TX,
};

struct nm_port_cfg {
	char name[64];		 /* section name after "port." */
	char device[NM_CFG_STR]; /* PCI address or vdev string (net_tap0,iface=...) */
	enum nm_port_role role;
	unsigned int rx_queues;
	/*
	 * lcore ids polling the queues, in the order given ("2,1" is 2 then 1; queue q goes to
	 * lcores[q % n_lcores]), each once; n_lcores 0: automatic (every worker lcore). Whether
	 * EAL runs them is checked at start-up, not here.
	 */
	uint16_t lcores[NM_CFG_MAX_LCORES];
	unsigned int n_lcores;
	char address[64]; /* net_tap only: address (CIDR) given to the kernel interface */
	char peer[64]; /* net_tap only: the engine's own address on that link (exporters send to it)
			*/
	/* mirror roles: SamplerAddress of the port's records (IPv4 as ::ffff:a.b.c.d) */
	uint8_t sampler_addr[16];
	int has_sampler_addr; /* 0: [mirror] sampler_address */
};

/*
 * [exporter.NAME] sections: what is known about an exporter. The schema is shared with the
 * ClickHouse dictionary generator (Python configparser), so its names are fixed:
 *   address = 192.0.2.1          IPv4 or IPv6 of the exporter (required)
 *   sampling_rate = 1000         used instead of the rate the exporter announces (optional)
 *   description = text           (optional)
 *   interface.<ifIndex> = name   interface names, any number (optional)
 *   outward_interfaces = 17, 18  ifIndexes facing outside (transit, peering): a flow that enters
 *                                through one is incoming, every other flow of this exporter
 *                                outgoing (the ClickHouse function isIncomingFlow; optional)
 *   sflow_sources = 192.0.2.9    UDP sources that may send sFlow for this agent address besides
 *                                the address itself (optional; see [collector] sflow_agent_learn)
 */
#define NM_CFG_MAX_EXPORTERS 256
#define NM_CFG_MAX_IFNAMES 4096
#define NM_CFG_MAX_OUTWARD 64	   /* outward_interfaces per exporter */
#define NM_CFG_MAX_SFLOW_SOURCES 8 /* sflow_sources per exporter */

struct nm_exporter_cfg {
	char name[64];	     /* section name after "exporter." */
	uint8_t address[16]; /* IPv4 stored as ::ffff:a.b.c.d */
	int has_address;
	uint64_t sampling_rate; /* 0: not overridden */
	char description[256];
	uint32_t outward[NM_CFG_MAX_OUTWARD]; /* outward_interfaces, as written */
	unsigned int n_outward;
	uint8_t sflow_sources[NM_CFG_MAX_SFLOW_SOURCES][16];
	unsigned int n_sflow_sources;
};

/* [collector] allow: an address prefix, IPv4 as ::ffff:a.b.c.d/(96 + len). */
#define NM_CFG_MAX_ALLOW 64
struct nm_cfg_prefix {
	uint8_t addr[16]; /* bits past len are zero */
	uint8_t len;	  /* 0-128 */
};

struct nm_ifname_cfg {
	unsigned int exporter; /* index in exporters[] */
	uint32_t if_index;
	char name[64];
};

struct nm_config {
	char source[NM_CFG_STR]; /* file the config came from, or "(defaults)" */

	struct nm_exporter_cfg exporters[NM_CFG_MAX_EXPORTERS];
	unsigned int n_exporters;
	struct nm_ifname_cfg ifnames[NM_CFG_MAX_IFNAMES];
	unsigned int n_ifnames;

	char eal_args[NM_CFG_STR];

	struct nm_port_cfg ports[NM_CFG_MAX_PORTS];
	unsigned int n_ports;

	uint16_t collector_ports[NM_CFG_MAX_UDP_PORTS];
	unsigned int n_collector_ports;
	uint64_t default_sampling_rate;
	int sflow_agent_learn; /* 1: bind an unconfigured agent to its first UDP source */
	unsigned int max_templates_per_exporter; /* per (address, domain, protocol) */
	unsigned int max_rates_per_exporter;	 /* sampling-rate entries per (address, domain) */
	unsigned int template_timeout_s; /* templates and rates not received again: expired */
	unsigned int template_hold_s;	 /* data sets held for their template at most this long */
	unsigned int max_exporters;	 /* exporter entries (address, domain, protocol) */
	unsigned int exporter_timeout_s; /* idle seconds before an entry expires; 0 never */
	struct nm_cfg_prefix allow[NM_CFG_MAX_ALLOW]; /* none: every source is accepted */
	unsigned int n_allow;

	unsigned int mirror_sample_rate;
	int mirror_random;		 /* 0 every Nth frame per queue, 1 random 1:N */
	char mirror_sampler_address[64]; /* default SamplerAddress of mirror ports (text) */

	unsigned int agg_max_flows;

	char kafka_brokers[NM_CFG_STR];
	char kafka_topic[256];
	enum nm_cfg_format kafka_format;
	unsigned int kafka_batch_bytes;
	int kafka_linger_ms;
	char kafka_compression[16];
	int kafka_drain_timeout_ms;
	unsigned int kafka_exporter_groups;
	uint64_t kafka_queue_max_bytes;
	char kafka_spool_dir[NM_CFG_STR];
	uint64_t kafka_spool_max_bytes;
	int kafka_spool_after_ms; /* no delivery report this long: spool (see kafka.h) */
	unsigned int kafka_spool_max_rejects; /* refusals before the dead-letter file */
	struct nm_cfg_prop kafka_props[NM_CFG_MAX_PROPS];
	char kafka_prop_store[NM_CFG_MAX_PROPS][2][NM_CFG_STR];
	unsigned int n_kafka_props;

	unsigned int mbuf_count;
	unsigned int rx_desc;
	int stats_interval_ms; /* console stats; 0 turns them off */
	int log_level; /* the engine's log level: RTE_LOG_<LEVEL> - 1 (0 emerg .. 7 debug) */
	unsigned int test_rx_delay_us; /* test only: RX lcores wait this long after a busy poll */
	unsigned int test_drain_delay_us; /* test only: the flusher waits this long per table */
	unsigned int idle_sleep_us;	  /* RX lcores sleep this long when idle; 0: they spin */
};

/* Fill c with the compiled-in defaults. */
void nm_config_defaults(struct nm_config *c);

/*
 * Load path over the defaults. 0, or -EINVAL/-ENOENT with a message in err naming the file,
 * section, key, value and what is allowed.
 */
int nm_config_load(struct nm_config *c, const char *path, char *err, size_t errlen);

/* Where nm_config_check() reports each problem: one message, as nm_config_load() words it. */
typedef void (*nm_config_report_fn)(void *ctx, const char *problem);

/*
 * --check-config: the defaults, then path (NULL: none), then the n assignments, as start-up
 * applies them -- but a bad key is reported and skipped instead of stopping, and every check
 * across keys runs, so one call names every problem (file, section, key, value, what is
 * allowed), each through report. Returns the number of problems: 0 means start-up would accept
 * the same file and options, and c is what it would run with.
 */
unsigned int nm_config_check(struct nm_config *c, const char *path, const char *const *assignments,
			     unsigned int n, nm_config_report_fn report, void *ctx);

/*
 * One difference between two configs, for reload. key as --set spells it ("kafka.brokers",
 * "port.tap0.rx_queues", "exporter.edge1.interface.17"); a section added or removed as a whole is
 * one change named "port.NAME" or "exporter.NAME" with was or now "". was/now: the values as
 * text, cut to fit.
 */
struct nm_config_change {
	char key[160];
	char was[96];
	char now[96];
	int restart; /* 1: a running engine cannot apply it (ports, queues, lcores, EAL, Kafka...)
		      */
};

/*
 * Every difference from a (the running config) to b (the file re-read): writes the first max
 * into out and returns how many there are (may exceed max). Live without a restart: the
 * [exporter.NAME] sections (overrides, descriptions, interface names), engine.log_level and
 * engine.stats_interval_ms; every other key needs a restart. Pure; any thread.
 */
unsigned int nm_config_diff(const struct nm_config *a, const struct nm_config *b,
			    struct nm_config_change *out, unsigned int max);

/* Apply one "section.key=value" override (the --set option), same checks and errors as a file. */
int nm_config_set(struct nm_config *c, const char *assignment, char *err, size_t errlen);

/*
 * Apply n overrides in order, then check the keys that depend on each other once (so the order
 * of --set options never matters: format=json then batch_bytes=4096 works either way round).
 * Errors of those checks name the source as "<file> + --set".
 */
int nm_config_set_all(struct nm_config *c, const char *const *assignments, unsigned int n,
		      char *err, size_t errlen);

/*
 * The SamplerAddress (16 bytes, IPv4 mapped) of the records of mirror port p: its
 * sampler_address, else [mirror] sampler_address (default 127.0.0.1, as NetMeta's portmirror).
 * c must have passed nm_config_load/set_all (or hold the defaults).
 */
void nm_config_mirror_sampler(const struct nm_config *c, const struct nm_port_cfg *p,
			      uint8_t out[16]);

/*
 * Parse an lcore list ("1", "1,2", "1-3", "0, 2-3"; ids up to NM_CFG_LCORE_ID_MAX) into out, in
 * the order given, each id once. 0, or -EINVAL for bad syntax, a reversed range or an id out of
 * range, -E2BIG when more than max distinct ids. Pure; any thread.
 */
int nm_config_parse_lcores(const char *text, uint16_t *out, unsigned int max, unsigned int *n);

/* The list as text ("1,2,5"), for messages; always terminated. */
void nm_config_format_lcores(const uint16_t *ids, unsigned int n, char *buf, size_t buflen);

/* Interface names as the kernel takes them (IFNAMSIZ 16 with the NUL), from a safe alphabet. */
#define NM_CFG_IFNAMSIZ 16
#define NM_CFG_IFNAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"

/*
 * The kernel interface of a net_tap device string (its iface= option) into out. 0; -ENOENT when
 * the device is no net_tap or has no iface=; -EINVAL when the name is empty, longer than 15,
 * "." or "..", starts with '-' (an option to ip(8)), or has a character outside
 * NM_CFG_IFNAME_CHARS; -ENOSPC when out is too small.
 * Pure; any thread.
 */
int nm_config_tap_iface(const char *device, char *out, size_t outlen);

/*
 * "ADDRESS[/PREFIX]" with an IPv4 or IPv6 address (inet_pton) and a prefix length up to 32/128
 * (absent: the full length). 0 with the address text in addr (>= 64 bytes, or NULL) and the
 * prefix in *prefix (or NULL); -EINVAL otherwise. Pure; any thread.
 */
int nm_config_parse_cidr(const char *text, char *addr, unsigned int *prefix);

/* Drop the ports of the config (--pcap/--mirror-pcap replace them). */
void nm_config_clear_ports(struct nm_config *c);

#endif /* NM_CONFIG_H */
