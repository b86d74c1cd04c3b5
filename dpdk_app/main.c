/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * netmeta: parse options, initialise EAL, ports, tables and Kafka, launch the RX workers, run the
 * flusher and console statistics on the main lcore, and tear everything down in reverse order.
 *
 *   netmeta [-c FILE] [--set SECTION.KEY=VALUE]... [--pcap FILE]... [--mirror-pcap FILE]...
 *           [--summary-json FILE] [-- EAL args]
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <limits.h>

#include <pcap/pcap.h>

#include <rte_eal.h>
#include <rte_ethdev.h>
#include <rte_cycles.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#define _LGPL_SOURCE
#include <urcu-qsbr.h>

#include "app.h"

RTE_LOG_REGISTER_DEFAULT(nm_logtype, INFO);

#define MAX_EAL_ARGS 128
#define MAX_PCAPS 16

struct options {
	const char *config;
	const char *sets[64];
	unsigned int n_sets;
	const char *pcaps[MAX_PCAPS];
	unsigned int n_pcaps;
	const char *mirror_pcaps[MAX_PCAPS];
	unsigned int n_mirror_pcaps;
	const char *summary_json;
	double duration; /* stop after this many seconds (0: run until drained/signalled) */
	char **eal_extra;
	int n_eal_extra;
};

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: netmeta [-c FILE] [--set SECTION.KEY=VALUE]... [--pcap FILE]...\n"
		"               [--mirror-pcap FILE]... [--summary-json FILE] [--duration S]\n"
		"               [-- EAL args]\n"
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
		"  -- ARGS               extra DPDK EAL arguments\n"
		"\n"
		"Exit status: 0 when every accepted record reached Kafka; 1 when records were lost\n"
		"(no memory, not acknowledged, dropped because the Kafka spool was full, found\n"
		"corrupt in the spool, or refused by Kafka into its dead-letter file); 2 on bad\n"
		"usage or configuration; 3 on set-up failure; 4 when nothing was lost but records wait\n"
		"in the Kafka spool (kafka.spool_dir) for the next start.\n");
}

static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"set", required_argument, NULL, 's'},
		{"pcap", required_argument, NULL, 'p'},
		{"mirror-pcap", required_argument, NULL, 'm'},
		{"summary-json", required_argument, NULL, 'j'},
		{"duration", required_argument, NULL, 'd'},
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
			if (o->n_pcaps == MAX_PCAPS)
				goto toomany;
			o->pcaps[o->n_pcaps++] = optarg;
			break;
		case 'm':
			if (o->n_mirror_pcaps == MAX_PCAPS)
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

/*
 * Frames in a capture file, so an offline run knows when a port is drained (0 if unknown), and
 * its link type. -EINVAL with a message for a file libpcap cannot read or a link type we cannot.
 */
static int
inspect_pcap(const char *path, uint64_t *frames, enum nm_link *link)
{
	char errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	uint64_t n = 0;
	pcap_t *p;
	int dlt;

	p = pcap_open_offline(path, errbuf);
	if (p == NULL) {
		fprintf(stderr, "netmeta: %s: %s\n", path, errbuf);
		return -EINVAL;
	}
	dlt = pcap_datalink(p);
	switch (dlt) {
	case DLT_EN10MB:
		*link = NM_LINK_ETHER;
		break;
	case DLT_LINUX_SLL:
		*link = NM_LINK_SLL;
		break;
	case DLT_RAW:
	case DLT_IPV4:
	case DLT_IPV6:
		*link = NM_LINK_RAW;
		break;
	default:
		fprintf(stderr,
			"netmeta: %s: link type %s is not supported (Ethernet, Linux "
			"cooked and raw IP are)\n",
			path, pcap_datalink_val_to_name(dlt));
		pcap_close(p);
		return -EINVAL;
	}
	while (pcap_next_ex(p, &h, &data) == 1)
		n++;
	pcap_close(p);
	*frames = n;
	return 0;
}

static unsigned int
hugepages_free(void)
{
	unsigned int n = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "r");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "HugePages_Free: %u", &n) == 1)
			break;
	fclose(f);
	return n;
}

static bool
is_pci(const char *dev)
{
	unsigned int a, b, c, d;

	return sscanf(dev, "%x:%x:%x.%x", &a, &b, &c, &d) == 4 ||
	       sscanf(dev, "%x:%x.%x", &b, &c, &d) == 3;
}

/*
 * An EAL core-list option: -l LIST, -lLIST, -c MASK, -cMASK, --lcores LIST, --lcores=LIST.
 * Returns 0 when arg is none, 1 when it carries its value, 2 when the value is the next word.
 */
static int
core_opt(const char *arg)
{
	if (strcmp(arg, "-l") == 0 || strcmp(arg, "-c") == 0 || strcmp(arg, "--lcores") == 0)
		return 2;
	if ((strncmp(arg, "-l", 2) == 0 || strncmp(arg, "-c", 2) == 0) && arg[2] != '-')
		return 1;
	if (strncmp(arg, "--lcores=", 9) == 0)
		return 1;
	return 0;
}

/*
 * argv for rte_eal_init: config args, then "--" args, then the ports' devices. A core list after
 * "--" replaces the config's (EAL refuses two), so the command line always wins.
 */
static int
build_eal_args(const struct nm_config *cfg, const struct options *o, char **argv, char *store,
	       size_t storelen)
{
	int argc = 0, i;
	unsigned int p;
	char *tok, *save = NULL;
	bool has_huge_opt = false, has_mem = false, has_pci_opt = false, any_pci = false;
	bool extra_cores = false, skip_next = false;
	size_t used;

	for (i = 0; i < o->n_eal_extra; i++)
		extra_cores |= core_opt(o->eal_extra[i]) != 0;
	argv[argc++] = (char *)"netmeta";
	snprintf(store, storelen, "%s", cfg->eal_args);
	used = strlen(store) + 1;
	for (tok = strtok_r(store, " \t", &save); tok != NULL && argc < MAX_EAL_ARGS - 8;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (skip_next) {
			skip_next = false;
			continue;
		}
		if (extra_cores && core_opt(tok) != 0) {
			skip_next = core_opt(tok) == 2;
			continue;
		}
		argv[argc++] = tok;
	}
	for (i = 0; i < o->n_eal_extra && argc < MAX_EAL_ARGS - 8; i++)
		argv[argc++] = o->eal_extra[i];
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--no-huge") == 0 || strncmp(argv[i], "--huge-dir", 10) == 0)
			has_huge_opt = true;
		if (strcmp(argv[i], "-m") == 0 || strncmp(argv[i], "--socket-mem", 12) == 0)
			has_mem = true;
		if (strncmp(argv[i], "-a", 2) == 0 || strncmp(argv[i], "-b", 2) == 0 ||
		    strncmp(argv[i], "--allow", 7) == 0 || strncmp(argv[i], "--block", 7) == 0 ||
		    strcmp(argv[i], "--no-pci") == 0)
			has_pci_opt = true;
	}
	for (p = 0; p < cfg->n_ports; p++)
		any_pci |= is_pci(cfg->ports[p].device);
	/* DPDK 22.11 refuses --in-memory with --no-huge; --no-shconf is what that pair means. */
	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], "--no-huge") == 0)
			break;
	if (i < argc)
		for (i = 1; i < argc; i++)
			if (strcmp(argv[i], "--in-memory") == 0)
				argv[i] = (char *)"--no-shconf";
	/*
	 * Without an explicit PCI port, EAL must not probe PCI at all: it would take over every NIC
	 * a DPDK driver can drive, including the one this machine is reached through.
	 */
	if (!any_pci && !has_pci_opt)
		argv[argc++] = (char *)"--no-pci";
	if (!has_huge_opt && hugepages_free() == 0) {
		/* DPDK 22.11 refuses --in-memory with --no-huge; --no-shconf keeps no files. */
		fprintf(stderr, "netmeta: WARNING: no free hugepages; running with --no-huge "
				"--no-shconf (fine for tests, too slow for line rate; "
				"scripts/setup.sh reserves hugepages)\n");
		argv[argc++] = (char *)"--no-huge";
		argv[argc++] = (char *)"--no-shconf";
		if (!has_mem) {
			argv[argc++] = (char *)"-m";
			argv[argc++] = (char *)"512";
		}
	}
	for (p = 0; p < cfg->n_ports && argc < MAX_EAL_ARGS - 2; p++) {
		int w = snprintf(
			store + used, storelen - used, "%s%s",
			is_pci(cfg->ports[p].device) ? "-a" : "--vdev=", cfg->ports[p].device);

		if (w < 0 || (size_t)w >= storelen - used)
			return -ENOSPC;
		argv[argc++] = store + used;
		used += (size_t)w + 1;
	}
	argv[argc] = NULL;
	return argc;
}

static int
port_id_of(const char *device, uint16_t *port_id)
{
	char name[RTE_ETH_NAME_MAX_LEN];
	const char *comma = strchr(device, ',');
	size_t n = comma != NULL ? (size_t)(comma - device) : strlen(device);

	if (n >= sizeof(name))
		return -EINVAL;
	memcpy(name, device, n);
	name[n] = '\0';
	return rte_eth_dev_get_port_by_name(name, port_id);
}

/* Give a net_tap's kernel side its address and a neighbour entry for the engine's own. */
static void
setup_tap(const struct nm_port_cfg *pc, uint16_t port_id)
{
	const char *ifp = strstr(pc->device, "iface=");
	char iface[64] = "", cmd[512];
	struct rte_ether_addr mac;
	size_t n;

	if (ifp == NULL || pc->address[0] == '\0')
		return;
	ifp += 6;
	n = strcspn(ifp, ",");
	if (n >= sizeof(iface))
		return;
	memcpy(iface, ifp, n);
	iface[n] = '\0';
	rte_eth_macaddr_get(port_id, &mac);
	snprintf(cmd, sizeof(cmd), "ip addr replace %s dev %s && ip link set %s up", pc->address,
		 iface, iface);
	if (system(cmd) != 0)
		NM_LOG(WARNING, "port %s: could not run: %s\n", pc->name, cmd);
	if (pc->peer[0] != '\0') {
		snprintf(cmd, sizeof(cmd),
			 "ip neigh replace %s lladdr " RTE_ETHER_ADDR_PRT_FMT
			 " dev %s nud permanent",
			 pc->peer, RTE_ETHER_ADDR_BYTES(&mac), iface);
		if (system(cmd) != 0)
			NM_LOG(WARNING, "port %s: could not run: %s\n", pc->name, cmd);
	}
	NM_LOG(INFO,
	       "port %s: kernel interface %s has %s; send exports to %s (UDP ports of "
	       "[collector] ports)\n",
	       pc->name, iface, pc->address, pc->peer[0] ? pc->peer : "(no peer set)");
}

static struct rte_mempool *pools[RTE_MAX_NUMA_NODES];

/* The rx_pcap file of a net_pcap device string into buf; -ENOENT when it has none. */
static int
pcap_file_of(const char *device, char *buf, size_t buflen)
{
	const char *f = strstr(device, "rx_pcap=");
	size_t len;

	if (strncmp(device, "net_pcap", 8) != 0 || f == NULL)
		return -ENOENT;
	f += 8;
	len = strcspn(f, ",");
	if (len >= buflen)
		return -ENAMETOOLONG;
	memcpy(buf, f, len);
	buf[len] = '\0';
	return 0;
}

static bool
is_infinite_rx(const char *device)
{
	return strncmp(device, "net_pcap", 8) == 0 && strstr(device, "infinite_rx=1") != NULL;
}

/* Data an mbuf of our pools holds (RTE_MBUF_DEFAULT_BUF_SIZE less the headroom). */
#define NM_MBUF_DATA_ROOM RTE_MBUF_DEFAULT_DATAROOM

/*
 * net_pcap's infinite_rx mode loads the whole file into single-segment mbufs once and replays
 * them; a frame longer than an mbuf's data room makes its queue set-up fail with a bare EINVAL.
 * Find that case before set-up and name the file, the frame and the way out.
 */
static int
check_pcap_infinite_rx(const struct nm_port_cfg *pc)
{
	char path[NM_CFG_STR], errbuf[PCAP_ERRBUF_SIZE];
	struct pcap_pkthdr *h;
	const u_char *data;
	uint64_t n = 0, over = 0, first = 0;
	uint32_t max = 0;
	pcap_t *p;

	if (!is_infinite_rx(pc->device) || pcap_file_of(pc->device, path, sizeof(path)) != 0)
		return 0;
	p = pcap_open_offline(path, errbuf);
	if (p == NULL)
		return 0; /* net_pcap reports it */
	while (pcap_next_ex(p, &h, &data) == 1) {
		n++;
		if (h->caplen > NM_MBUF_DATA_ROOM && over++ == 0)
			first = n;
		if (h->caplen > max)
			max = h->caplen;
	}
	pcap_close(p);
	if (over == 0)
		return 0;
	fprintf(stderr,
		"netmeta: [port.%s] device = %s: %s holds %" PRIu64 " frame(s) longer than "
		"an mbuf's %u-byte data room (frame %" PRIu64 " first, the longest %u bytes); "
		"net_pcap's infinite_rx mode cannot chain mbufs for them. Drop those frames "
		"(e.g. tshark -r IN -Y 'frame.cap_len <= %u' -w OUT) or leave out "
		"infinite_rx=1\n",
		pc->name, pc->device, path, over, NM_MBUF_DATA_ROOM, first, max, NM_MBUF_DATA_ROOM);
	return -EMSGSIZE;
}

static int
setup_port(struct nm_app *app, const struct nm_port_cfg *pc, uint16_t port_id)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int socket = rte_eth_dev_socket_id(port_id), ret;
	uint16_t q, nb_rxd = (uint16_t)app->cfg.rx_desc, nb_txd = 64;
	uint16_t ntx;

	if (socket < 0)
		socket = 0;
	ret = check_pcap_infinite_rx(pc);
	if (ret != 0)
		return ret;
	ret = rte_eth_dev_info_get(port_id, &info);
	if (ret != 0)
		return ret;
	if (pc->rx_queues > info.max_rx_queues) {
		fprintf(stderr,
			"netmeta: [port.%s] rx_queues = %u: device %s has at most %u RX "
			"queues\n",
			pc->name, pc->rx_queues, pc->device, info.max_rx_queues);
		return -EINVAL;
	}
	memset(&conf, 0, sizeof(conf));
	if (pc->rx_queues > 1) {
		uint64_t want = RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP;

		if ((info.flow_type_rss_offloads & want) != 0) {
			/* Hash on addresses and ports: exporters and mirrored flows spread. */
			conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
			conf.rx_adv_conf.rss_conf.rss_hf = want & info.flow_type_rss_offloads;
			NM_LOG(INFO, "port %s: RSS over %u queues, hash functions 0x%" PRIx64 "\n",
			       pc->name, pc->rx_queues, conf.rx_adv_conf.rss_conf.rss_hf);
		} else if (strcmp(info.driver_name, "net_af_xdp") == 0) {
			/*
			 * net_af_xdp binds one socket per NIC queue (start_queue, queue_count): the
			 * kernel driver's own RSS spreads flows over those queues (ethtool -X / -N
			 * configure it), not the PMD.
			 */
			NM_LOG(INFO, "port %s: %u queues spread by the NIC's own RSS (ethtool)\n",
			       pc->name, pc->rx_queues);
		} else if (strcmp(info.driver_name, "net_af_packet") == 0) {
			/*
			 * net_af_packet spreads its queue pairs with a PACKET_FANOUT_HASH group:
			 * the kernel's flow hash over addresses and ports, which is RSS done by the
			 * kernel. There is nothing to configure on the DPDK side.
			 */
			NM_LOG(INFO,
			       "port %s: %u queues spread by the kernel's packet fanout hash\n",
			       pc->name, pc->rx_queues);
		} else {
			fprintf(stderr,
				"netmeta: [port.%s] rx_queues = %u: device %s (driver %s) cannot "
				"spread traffic over queues: it offers no RSS on IP addresses "
				"and UDP/TCP ports (flow_type_rss_offloads 0x%" PRIx64 "); use "
				"rx_queues = 1\n",
				pc->name, pc->rx_queues, pc->device, info.driver_name,
				info.flow_type_rss_offloads);
			return -EINVAL;
		}
	}
	if (app->offline && (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_TIMESTAMP))
		conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_TIMESTAMP;
	ntx = info.max_tx_queues > 0 ? 1 : 0;
	ret = rte_eth_dev_configure(port_id, (uint16_t)pc->rx_queues, ntx, &conf);
	if (ret != 0)
		return ret;
	ret = rte_eth_dev_adjust_nb_rx_tx_desc(port_id, &nb_rxd, &nb_txd);
	if (ret != 0)
		return ret;
	if (pools[socket] == NULL)
		return -ENOMEM;
	for (q = 0; q < pc->rx_queues; q++) {
		ret = rte_eth_rx_queue_setup(port_id, q, nb_rxd, (unsigned int)socket, NULL,
					     pools[socket]);
		if (ret != 0)
			return ret;
	}
	if (ntx > 0) {
		ret = rte_eth_tx_queue_setup(port_id, 0, nb_txd, (unsigned int)socket, NULL);
		if (ret != 0)
			return ret;
	}
	ret = rte_eth_dev_start(port_id);
	if (ret != 0)
		return ret;
	if (pc->role != NM_ROLE_COLLECTOR)
		(void)rte_eth_promiscuous_enable(port_id);
	if (strncmp(pc->device, "net_tap", 7) == 0)
		setup_tap(pc, port_id);
	return 0;
}

/*
 * One mbuf pool per NUMA socket that has ports, sized from the config: every RX descriptor of the
 * socket's queues can hold an mbuf, every lcore cache can be full, each worker holds a burst, and
 * a net_pcap infinite_rx port keeps its whole file in mbufs. [engine] mbufs is the floor.
 */
#define NM_POOL_CACHE 256

static int
create_pools(struct nm_app *app, const uint16_t *port_ids, const uint64_t *frames)
{
	uint64_t need[RTE_MAX_NUMA_NODES] = {0};
	unsigned int i, n_lcores = rte_lcore_count();
	int s;

	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];
		int socket = rte_eth_dev_socket_id(port_ids[i]);

		if (socket < 0 || socket >= RTE_MAX_NUMA_NODES)
			socket = 0;
		need[socket] += (uint64_t)pc->rx_queues * app->cfg.rx_desc + 64 +
				(uint64_t)n_lcores * (NM_POOL_CACHE * 3 / 2 + NM_BURST);
		if (is_infinite_rx(pc->device))
			need[socket] += frames[i];
	}
	for (s = 0; s < RTE_MAX_NUMA_NODES; s++) {
		char name[32];
		uint64_t n = need[s];

		if (n == 0)
			continue;
		if (n < app->cfg.mbuf_count)
			n = app->cfg.mbuf_count;
		n = rte_align64pow2(n + 1) - 1; /* a ring-backed pool is most compact at 2^k - 1 */
		if (n > UINT32_MAX) {
			fprintf(stderr, "netmeta: socket %d would need %" PRIu64 " mbufs\n", s, n);
			return -ENOMEM;
		}
		snprintf(name, sizeof(name), "mbufs_s%d", s);
		pools[s] = rte_pktmbuf_pool_create(name, (unsigned int)n, NM_POOL_CACHE, 0,
						   RTE_MBUF_DEFAULT_BUF_SIZE, s);
		if (pools[s] == NULL) {
			fprintf(stderr,
				"netmeta: cannot allocate %" PRIu64 " mbufs (%" PRIu64 " MiB) on "
				"socket %d for its ports' queues: %s (lower [engine] mbufs or "
				"rx_desc, or reserve more hugepages)\n",
				n, n * (RTE_MBUF_DEFAULT_BUF_SIZE + 128) >> 20, s,
				rte_strerror(rte_errno));
			return -ENOMEM;
		}
		NM_LOG(INFO,
		       "socket %d: %" PRIu64 " mbufs (%" PRIu64 " needed by its queues, [engine] "
		       "mbufs = %u)\n",
		       s, n, need[s], app->cfg.mbuf_count);
	}
	return 0;
}

static void
print_line(struct nm_app *app, double secs)
{
	struct nm_worker_stats s;
	struct nm_agg_stats a;
	struct nm_kafka_stats k = {0};
	uint64_t errs = 0;
	unsigned int i;

	nm_stats_sum(app, &s, &a);
	nm_kafka_get_stats(app->kafka, &k);
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		errs += s.dec.err[i];
	printf("[%7.1fs] frames %" PRIu64 "  datagrams %" PRIu64 "  records %" PRIu64
	       "  rows %" PRIu64 "  kafka acked %" PRIu64 " failed %" PRIu64
	       "  decode errors %" PRIu64 "  agg folded %" PRIu64 " dropped %" PRIu64 "%s",
	       secs, s.rx_packets,
	       s.dec.nf5.datagrams + s.dec.nf9.datagrams + s.dec.ipfix.datagrams +
		       s.dec.sflow.datagrams + s.dec.unknown,
	       s.records, app->rows, k.records_acked, k.records_failed, errs, a.folded, a.dropped,
	       k.spool_enabled ? "" : "\n");
	if (k.spool_enabled)
		printf("  spool %" PRIu64 " (%" PRIu64 " bytes) kafka dropped %" PRIu64 "\n",
		       k.spool_records, k.spool_bytes, k.records_dropped);
	fflush(stdout);
}

struct summary {
	struct nm_worker_stats s;
	struct nm_agg_stats a;
	struct nm_kafka_stats k;
	uint64_t lost;
	double secs;	/* whole run */
	double rx_secs; /* from start until RX stopped */
};

static void
print_summary(const struct nm_app *app, const struct summary *sm, FILE *f)
{
	const struct nm_worker_stats *s = &sm->s;
	unsigned int i;

	fprintf(f, "netmeta summary (%.1f s)\n", sm->secs);
	fprintf(f, "  %-28s %" PRIu64 " (%.3f Mpps over the run)\n", "frames received",
		s->rx_packets, sm->rx_secs > 0 ? (double)s->rx_packets / sm->rx_secs / 1e6 : 0.0);
	for (i = 1; i < NM_UDP_CLASS_MAX; i++)
		if (s->udp_class[i] != 0)
			fprintf(f, "  %-28s %" PRIu64 "\n", nm_udp_class_name(i), s->udp_class[i]);
	if (s->not_collector_port != 0)
		fprintf(f, "  %-28s %" PRIu64 "\n", "udp to other ports", s->not_collector_port);
	fprintf(f,
		"  %-28s %" PRIu64 " nf5, %" PRIu64 " nf9, %" PRIu64 " ipfix, %" PRIu64
		" sflow, %" PRIu64 " unknown\n",
		"datagrams", s->dec.nf5.datagrams, s->dec.nf9.datagrams, s->dec.ipfix.datagrams,
		s->dec.sflow.datagrams, s->dec.unknown);
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		if (s->dec.err[i] != 0)
			fprintf(f, "  %-28s %" PRIu64 "\n", nm_decode_err_name(i), s->dec.err[i]);
	if (s->mirror_frames != 0)
		fprintf(f, "  %-28s %" PRIu64 " of %" PRIu64 "\n", "mirror frames sampled",
			s->mirror_sampled, s->mirror_frames);
	fprintf(f, "  %-28s %" PRIu64 " (%" PRIu64 " packets, %" PRIu64 " bytes)\n", "records",
		s->records, s->records_packets, s->records_bytes);
	if (s->late_records != 0)
		fprintf(f, "  %-28s %" PRIu64 "\n", "late records", s->late_records);
	fprintf(f, "  %-28s %" PRIu64 " merged, %" PRIu64 " folded, %" PRIu64 " dropped\n",
		"aggregation", sm->a.merged, sm->a.folded, sm->a.dropped);
	fprintf(f, "  %-28s %" PRIu64 "\n", "rows (FlowMessages)", app->rows);
	fprintf(f,
		"  %-28s %" PRIu64 " acked, %" PRIu64 " failed, %" PRIu64 " unacked (%" PRIu64
		" messages acked)\n",
		"kafka records", sm->k.records_acked, sm->k.records_failed, sm->k.records_unacked,
		sm->k.messages_acked);
	if (sm->k.records_failed + sm->k.records_unacked != 0)
		fprintf(f,
			"  %-28s failed: Kafka reported an error or refused them (last: %s); "
			"unacked: no acknowledgement before the drain ended "
			"(kafka.drain_timeout_ms, or a second Ctrl-C)\n",
			"",
			nm_kafka_last_error(app->kafka)[0] ? nm_kafka_last_error(app->kafka)
							   : "none");
	if (sm->k.spool_enabled)
		fprintf(f,
			"  %-28s %" PRIu64 " records written this run, %" PRIu64 " recovered "
			"at start; %" PRIu64 " records (%" PRIu64 " bytes) wait there now%s\n",
			"kafka spool", sm->k.records_spooled, sm->k.records_recovered,
			sm->k.spool_records, sm->k.spool_bytes,
			sm->k.spool_records ? "  <-- delivered by the next start" : "");
	if (sm->k.records_dropped != 0)
		fprintf(f,
			"  %-28s %" PRIu64 " records in %" PRIu64 " batches (%" PRIu64
			" bytes): the spool was full\n",
			"kafka dropped", sm->k.records_dropped, sm->k.messages_dropped,
			sm->k.bytes_dropped);
	if (sm->k.spool_corrupt + sm->k.records_deadletter + sm->k.spool_write_errors +
		    sm->k.spool_sync_errors !=
	    0)
		fprintf(f,
			"  %-28s %" PRIu64 " records in %" PRIu64 " corrupt regions (%" PRIu64
			" bytes), %" PRIu64 " records dead-lettered (refused by Kafka); %" PRIu64
			" write errors, %" PRIu64 " sync errors\n",
			"kafka spool losses", sm->k.records_corrupt, sm->k.spool_corrupt,
			sm->k.spool_corrupt_bytes, sm->k.records_deadletter,
			sm->k.spool_write_errors, sm->k.spool_sync_errors);
	fprintf(f, "  %-28s %" PRIu64 "%s\n", "records lost", sm->lost,
		sm->lost ? "  <-- see above" : "");
}

static int
write_summary_json(const struct nm_app *app, const struct summary *sm, const char *path)
{
	const struct nm_worker_stats *s = &sm->s;
	FILE *f = fopen(path, "w");
	unsigned int i;

	if (f == NULL) {
		fprintf(stderr, "netmeta: cannot write %s: %s\n", path, strerror(errno));
		return -errno;
	}
	fprintf(f, "{\n");
#define J(name, v) fprintf(f, "  \"%s\": %" PRIu64 ",\n", name, (uint64_t)(v))
	J("rx_packets", s->rx_packets);
	J("rx_bytes", s->rx_bytes);
	J("datagrams", s->dec.nf5.datagrams + s->dec.nf9.datagrams + s->dec.ipfix.datagrams +
			       s->dec.sflow.datagrams + s->dec.unknown);
	J("datagrams_nf5", s->dec.nf5.datagrams);
	J("datagrams_nf9", s->dec.nf9.datagrams);
	J("datagrams_ipfix", s->dec.ipfix.datagrams);
	J("datagrams_sflow", s->dec.sflow.datagrams);
	J("datagrams_unknown", s->dec.unknown);
	J("not_collector_port", s->not_collector_port);
	J("records", s->records);
	J("records_packets", s->records_packets);
	J("records_bytes", s->records_bytes);
	J("late_records", s->late_records);
	J("mirror_frames", s->mirror_frames);
	J("mirror_sampled", s->mirror_sampled);
	J("agg_merged", sm->a.merged);
	J("agg_folded", sm->a.folded);
	J("agg_dropped", sm->a.dropped);
	J("rows", app->rows);
	J("rows_failed", app->rows_failed);
	J("kafka_records_in", sm->k.records_in);
	J("kafka_records_acked", sm->k.records_acked);
	J("kafka_records_failed", sm->k.records_failed);
	J("kafka_records_unacked", sm->k.records_unacked);
	J("kafka_messages_acked", sm->k.messages_acked);
	J("kafka_records_recovered", sm->k.records_recovered);
	J("kafka_records_spooled", sm->k.records_spooled);
	J("kafka_records_dropped", sm->k.records_dropped);
	J("kafka_packets_dropped", sm->k.packets_dropped);
	J("kafka_flow_bytes_dropped", sm->k.flow_bytes_dropped);
	J("kafka_messages_spooled", sm->k.messages_spooled);
	J("kafka_messages_replayed", sm->k.messages_replayed);
	J("kafka_messages_dropped", sm->k.messages_dropped);
	J("kafka_messages_failed", sm->k.messages_failed);
	J("kafka_messages_possibly_persisted", sm->k.messages_possibly_persisted);
	J("spool_records", sm->k.spool_records);
	J("spool_bytes", sm->k.spool_bytes);
	J("spool_corrupt", sm->k.spool_corrupt);
	J("spool_corrupt_bytes", sm->k.spool_corrupt_bytes);
	J("kafka_records_corrupt", sm->k.records_corrupt);
	J("kafka_records_deadletter", sm->k.records_deadletter);
	J("kafka_messages_deadletter", sm->k.messages_deadletter);
	J("kafka_messages_rejected", sm->k.messages_rejected);
	J("spool_write_errors", sm->k.spool_write_errors);
	J("spool_sync_errors", sm->k.spool_sync_errors);
	J("kafka_outages", sm->k.outages);
	J("lost_records", sm->lost);
	fprintf(f, "  \"seconds\": %.6f,\n", sm->secs);
	fprintf(f, "  \"rx_seconds\": %.6f,\n", sm->rx_secs);
	/* Per worker: which lcore polled which queues, and what each received. */
	fprintf(f, "  \"workers\": [");
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];
		unsigned int q;

		fprintf(f,
			"%s{\"lcore\": %u, \"rx_packets\": %" PRIu64 ", \"rx_bytes\": %" PRIu64
			", \"records\": %" PRIu64 ", \"late_records\": %" PRIu64 ", \"queues\": [",
			i ? ", " : "", w->lcore_id, w->st.rx_packets, w->st.rx_bytes, w->st.records,
			w->st.late_records);
		for (q = 0; q < w->n_rxq; q++)
			fprintf(f,
				"%s{\"port\": %u, \"queue\": %u, \"rx_packets\": %" PRIu64
				", \"mirror_sampled\": %" PRIu64 "}",
				q ? ", " : "", w->rxq[q].port_id, w->rxq[q].queue_id,
				w->rxq[q].rx_pkts, w->rxq[q].sampled);
		fprintf(f, "]}");
	}
	fprintf(f, "],\n");
#undef J
	fprintf(f, "  \"frames\": {");
	for (i = 0; i < NM_UDP_CLASS_MAX; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i ? ", " : "", nm_udp_class_name(i),
			s->udp_class[i]);
	fprintf(f, "},\n  \"decode_errors\": {");
	for (i = 1; i < NM_DECODE_ERR_MAX; i++)
		fprintf(f, "%s\"%s\": %" PRIu64, i > 1 ? ", " : "", nm_decode_err_name(i),
			s->dec.err[i]);
	fprintf(f, "},\n  \"bootstrap\": \"%s\"\n}\n", nm_kafka_bootstrap(app->kafka));
	fclose(f);
	return 0;
}

/*
 * The lcores that poll a port's queues: its lcores key ("1,2", "1-3"), each an enabled worker
 * lcore, or every worker lcore when the key is empty. Queue q goes to the (q mod n)th of them.
 */
static int
port_lcores(const struct nm_port_cfg *pc, const unsigned int *workers, unsigned int n_workers,
	    unsigned int *out, unsigned int *n_out)
{
	const char *p = pc->lcores;
	unsigned int n = 0, i;

	if (*p == '\0') {
		memcpy(out, workers, n_workers * sizeof(*out));
		*n_out = n_workers;
		return 0;
	}
	while (*p != '\0') {
		char *end;
		unsigned long a, b;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		a = strtoul(p, &end, 10);
		if (end == p)
			goto bad;
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtoul(p, &end, 10);
			if (end == p || b < a)
				goto bad;
		}
		p = end;
		for (; a <= b; a++) {
			if (a >= RTE_MAX_LCORE || !rte_lcore_is_enabled((unsigned int)a) ||
			    a == rte_get_main_lcore()) {
				fprintf(stderr,
					"netmeta: [port.%s] lcores = %s: lcore %lu is %s; the "
					"worker lcores EAL runs are those of eal.args (-l) less "
					"the main lcore %u\n",
					pc->name, pc->lcores, a,
					a == rte_get_main_lcore() ? "the main (flusher) lcore"
								  : "not an EAL lcore",
					rte_get_main_lcore());
				return -EINVAL;
			}
			for (i = 0; i < n && out[i] != a; i++)
				;
			if (i == n) {
				if (n == NM_MAX_WORKERS)
					goto bad;
				out[n++] = (unsigned int)a;
			}
		}
	}
	if (n == 0)
		goto bad;
	*n_out = n;
	return 0;
bad:
	fprintf(stderr, "netmeta: [port.%s] lcores = %s: expected lcore ids like 1 or 1,2 or 1-3\n",
		pc->name, pc->lcores);
	return -EINVAL;
}

static int
create_workers(struct nm_app *app, const uint16_t *port_ids, const uint64_t *expect,
	       const enum nm_link *links)
{
	struct nm_agg_params ap = {.max_flows = app->cfg.agg_max_flows};
	unsigned int lcore, p, q, i, next = 0;
	unsigned int lcores[NM_MAX_WORKERS], n_lcores = 0;
	struct nm_worker *by_lcore[RTE_MAX_LCORE] = {NULL};

	RTE_LCORE_FOREACH_WORKER(lcore)
	{
		if (n_lcores < NM_MAX_WORKERS)
			lcores[n_lcores++] = lcore;
	}
	if (n_lcores == 0) {
		fprintf(stderr, "netmeta: no worker lcore: give EAL at least two lcores "
				"(e.g. [eal] args = -l 0-1); the main lcore runs the flusher\n");
		return -EINVAL;
	}
	for (p = 0; p < app->cfg.n_ports; p++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[p];
		unsigned int pl[NM_MAX_WORKERS], n_pl;
		int ret = port_lcores(pc, lcores, n_lcores, pl, &n_pl);

		if (ret != 0)
			return ret;
		for (q = 0; q < pc->rx_queues; q++) {
			unsigned int lc;
			struct nm_worker *w;
			struct nm_rxq *rq;

			/*
			 * Without an lcores key, queues of all such ports go round robin over every
			 * worker lcore (two one-queue ports land on two lcores).
			 */
			lc = pc->lcores[0] == '\0' ? lcores[next++ % n_lcores] : pl[q % n_pl];
			w = by_lcore[lc];
			if (w == NULL) {
				w = rte_zmalloc_socket("worker", sizeof(*w), RTE_CACHE_LINE_SIZE,
						       (int)rte_lcore_to_socket_id(lc));
				if (w == NULL)
					return -ENOMEM;
				w->app = app;
				w->lcore_id = lc;
				w->dec.stats = &w->st.dec;
				w->dec.tmpl = app->tmpl;
				w->dec.default_sampling_rate = app->cfg.default_sampling_rate;
				by_lcore[lc] = w;
			}
			if (w->n_rxq == NM_MAX_QUEUES_PER_WORKER)
				return -E2BIG;
			rq = &w->rxq[w->n_rxq++];
			rq->port_id = port_ids[p];
			rq->queue_id = (uint16_t)q;
			rq->role = pc->role;
			rq->if_index = (uint32_t)port_ids[p] + 1;
			nm_config_mirror_sampler(&app->cfg, pc, rq->sampler_addr);
			rq->link = links[p];
			rq->expect_pkts = pc->rx_queues == 1 ? expect[p] : 0;
			NM_LOG(INFO, "port %s queue %u -> lcore %u\n", pc->name, q, lc);
		}
	}
	/* Workers are indexed densely from 0 in lcore order; idle lcores get none. */
	for (i = 0; i < n_lcores; i++) {
		struct nm_worker *w = by_lcore[lcores[i]];

		if (w == NULL)
			continue;
		w->index = app->n_workers;
		app->workers[app->n_workers++] = w;
	}
	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];
		char name[32];
		unsigned int t;

		snprintf(name, sizeof(name), "full%u", i);
		w->full = rte_ring_create(name, 8, (int)rte_lcore_to_socket_id(w->lcore_id),
					  RING_F_SP_ENQ | RING_F_SC_DEQ);
		snprintf(name, sizeof(name), "free%u", i);
		w->free = rte_ring_create(name, 8, (int)rte_lcore_to_socket_id(w->lcore_id),
					  RING_F_SP_ENQ | RING_F_SC_DEQ);
		if (w->full == NULL || w->free == NULL)
			return -ENOMEM;
		for (t = 0; t < NM_TABLES_PER_WORKER; t++) {
			w->tables[t] = nm_agg_table_create(&ap);
			if (w->tables[t] == NULL) {
				fprintf(stderr,
					"netmeta: cannot allocate aggregation tables of %u "
					"flows: %s (lower [aggregation] max_flows)\n",
					ap.max_flows, strerror(errno));
				return -ENOMEM;
			}
			if (t == 0)
				w->cur = w->tables[t];
			else
				(void)rte_ring_enqueue(w->free, w->tables[t]);
		}
	}
	return 0;
}

static void
free_workers(struct nm_app *app)
{
	unsigned int i, t;

	for (i = 0; i < app->n_workers; i++) {
		struct nm_worker *w = app->workers[i];

		for (t = 0; t < NM_TABLES_PER_WORKER; t++)
			nm_agg_table_free(w->tables[t]);
		rte_ring_free(w->full);
		rte_ring_free(w->free);
		rte_free(w);
	}
	app->n_workers = 0;
}

static bool
workers_done(const struct nm_app *app)
{
	unsigned int i;

	for (i = 0; i < app->n_workers; i++)
		if (!app->workers[i]->done)
			return false;
	return true;
}

static uint64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * EAL leaves its runtime directory (/var/run/dpdk/<file-prefix>: config, memseg arrays,
 * telemetry socket) behind when the primary process exits. The engine runs no secondary
 * processes, so nothing can use them once it is gone; remove them so that runs with a fresh
 * --file-prefix each (tests, benchmarks) do not pile up directories.
 */
static void
remove_runtime_dir(const char *dir)
{
	struct dirent *e;
	char path[PATH_MAX];
	DIR *d;

	if (dir == NULL || dir[0] == '\0' || (d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) < (int)sizeof(path))
			(void)unlink(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

int
main(int argc, char **argv)
{
	static struct nm_app app_store;
	struct nm_app *app = &app_store;
	struct options o;
	char err[1024], eal_store[8192], runtime_dir[PATH_MAX];
	char *eal_argv[MAX_EAL_ARGS + 1];
	uint16_t port_ids[NM_CFG_MAX_PORTS];
	uint64_t expect[NM_CFG_MAX_PORTS] = {0};
	enum nm_link links[NM_CFG_MAX_PORTS] = {0};
	struct nm_kafka_params kp;
	struct nm_kafka_prop kprops[NM_CFG_MAX_PROPS];
	struct nm_tmpl_params tp = {
		.max_templates_per_exporter = 1024, .max_templates = 65536, .max_exporters = 4096};
	struct summary sm;
	uint64_t next_print;
	double rx_secs;
	unsigned int i;
	int eal_argc, ret, status = 0;

	/* Before any thread exists, so that all of them inherit it (signals.c). */
	(void)nm_signals_block_all();
	if (parse_options(argc, argv, &o) != 0)
		return 2;
	nm_config_defaults(&app->cfg);
	if (o.config != NULL && nm_config_load(&app->cfg, o.config, err, sizeof(err)) != 0) {
		fprintf(stderr, "netmeta: %s\n", err);
		return 2;
	}
	if (nm_config_set_all(&app->cfg, o.sets, o.n_sets, err, sizeof(err)) != 0) {
		fprintf(stderr, "netmeta: %s\n", err);
		return 2;
	}
	if (o.n_pcaps + o.n_mirror_pcaps > 0) {
		nm_config_clear_ports(&app->cfg);
		for (i = 0; i < o.n_pcaps + o.n_mirror_pcaps; i++) {
			bool mirror = i >= o.n_pcaps;
			const char *file = mirror ? o.mirror_pcaps[i - o.n_pcaps] : o.pcaps[i];
			struct nm_port_cfg *pc = &app->cfg.ports[app->cfg.n_ports];

			if (strchr(file, ',') != NULL || access(file, R_OK) != 0) {
				fprintf(stderr, "netmeta: %s %s: %s\n",
					mirror ? "--mirror-pcap" : "--pcap", file,
					strchr(file, ',')
						? "a path with a comma cannot be passed to "
						  "net_pcap"
						: strerror(errno));
				return 2;
			}
			if (app->cfg.n_ports == NM_CFG_MAX_PORTS) {
				fprintf(stderr, "netmeta: at most %d ports\n", NM_CFG_MAX_PORTS);
				return 2;
			}
			memset(pc, 0, sizeof(*pc));
			snprintf(pc->name, sizeof(pc->name), "pcap%u", i);
			snprintf(pc->device, sizeof(pc->device), "net_pcap%u,rx_pcap=%s", i, file);
			pc->role = mirror ? NM_ROLE_MIRROR_RX : NM_ROLE_COLLECTOR;
			pc->rx_queues = 1;
			if (inspect_pcap(file, &expect[app->cfg.n_ports],
					 &links[app->cfg.n_ports]) != 0)
				return 2;
			app->cfg.n_ports++;
		}
		app->offline = true;
	} else {
		/* Config ports that are all capture files (no infinite_rx) are an offline run too.
		 */
		bool all_files = app->cfg.n_ports > 0;

		for (i = 0; i < app->cfg.n_ports; i++) {
			const struct nm_port_cfg *pc = &app->cfg.ports[i];
			char path[NM_CFG_STR];

			if (pcap_file_of(pc->device, path, sizeof(path)) != 0) {
				all_files = false;
				continue;
			}
			if (inspect_pcap(path, &expect[i], &links[i]) != 0)
				return 2;
			if (is_infinite_rx(pc->device))
				all_files = false;
		}
		app->offline = all_files;
	}
	if (app->cfg.n_ports == 0) {
		fprintf(stderr, "netmeta: no ports: add a [port.NAME] section or use --pcap\n");
		return 2;
	}
	for (i = 0; i < app->cfg.n_collector_ports; i++)
		app->collector_port_map[app->cfg.collector_ports[i] >> 3] |=
			(uint8_t)(1u << (app->cfg.collector_ports[i] & 7));

	eal_argc = build_eal_args(&app->cfg, &o, eal_argv, eal_store, sizeof(eal_store));
	if (eal_argc < 0) {
		fprintf(stderr, "netmeta: EAL arguments too long\n");
		return 2;
	}
	ret = rte_eal_init(eal_argc, eal_argv);
	if (ret < 0) {
		fprintf(stderr, "netmeta: EAL initialisation failed: %s\n",
			rte_strerror(rte_errno));
		return 3;
	}
	app->tsc_hz = rte_get_tsc_hz();
	app->start_tsc = rte_rdtsc();
	app->start_ns = wall_ns();
	rcu_register_thread();

	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];

		if (port_id_of(pc->device, &port_ids[i]) != 0) {
			fprintf(stderr,
				"netmeta: [port.%s] device = %s: no such DPDK port: EAL did "
				"not create it (see the driver's messages above; check the "
				"device string and that the NIC is bound to a DPDK driver)\n",
				pc->name, pc->device);
			status = 3;
			goto out_eal;
		}
	}
	if (create_pools(app, port_ids, expect) != 0) {
		status = 3;
		goto out_ports;
	}
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];

		ret = setup_port(app, pc, port_ids[i]);
		if (ret != 0) {
			fprintf(stderr, "netmeta: [port.%s] device = %s: set-up failed: %s\n",
				pc->name, pc->device, strerror(-ret));
			status = 3;
			goto out_ports;
		}
	}
	app->ts_dynfield = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
	ret = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
	app->ts_dynflag = ret >= 0 ? RTE_BIT64(ret) : 0;
	if (app->offline && app->ts_dynfield < 0)
		NM_LOG(WARNING, "no RX timestamps from the pcap ports: rows get arrival time\n");

	app->tmpl = nm_tmpl_cache_create(&tp);
	if (app->tmpl == NULL) {
		fprintf(stderr, "netmeta: cannot create the template cache\n");
		status = 3;
		goto out_ports;
	}
	memset(&kp, 0, sizeof(kp));
	kp.brokers = app->cfg.kafka_brokers;
	kp.topic = app->cfg.kafka_topic;
	kp.format = app->cfg.kafka_format == NM_CFG_FORMAT_JSON ? NM_KAFKA_FMT_JSON
								: NM_KAFKA_FMT_PROTOBUF;
	kp.batch_bytes = app->cfg.kafka_batch_bytes;
	kp.linger_ms = app->cfg.kafka_linger_ms;
	kp.compression = app->cfg.kafka_compression;
	for (i = 0; i < app->cfg.n_kafka_props; i++) {
		kprops[i].name = app->cfg.kafka_props[i].name;
		kprops[i].value = app->cfg.kafka_props[i].value;
	}
	kp.props = kprops;
	kp.n_props = app->cfg.n_kafka_props;
	kp.exporter_groups = app->cfg.kafka_exporter_groups;
	kp.queue_max_bytes = (size_t)app->cfg.kafka_queue_max_bytes;
	kp.spool_dir = app->cfg.kafka_spool_dir;
	kp.spool_max_bytes = app->cfg.kafka_spool_max_bytes;
	kp.spool_after_ms = app->cfg.kafka_spool_after_ms;
	kp.spool_max_rejects = app->cfg.kafka_spool_max_rejects;
	app->kafka = nm_kafka_create(&kp, err, sizeof(err));
	if (app->kafka == NULL) {
		fprintf(stderr, "netmeta: kafka: %s\n", err);
		status = 3;
		goto out_tmpl;
	}
	NM_LOG(INFO, "kafka: topic %s on %s (format %s)\n", app->cfg.kafka_topic,
	       nm_kafka_bootstrap(app->kafka),
	       app->cfg.kafka_format == NM_CFG_FORMAT_JSON ? "json" : "protobuf");
	if (strcmp(app->cfg.kafka_brokers, "embedded") == 0)
		printf("embedded Kafka broker: %s  (e.g. kcat -C -b %s -t %s)\n",
		       nm_kafka_bootstrap(app->kafka), nm_kafka_bootstrap(app->kafka),
		       app->cfg.kafka_topic);

	ret = create_workers(app, port_ids, expect, links);
	if (ret != 0) {
		fprintf(stderr, "netmeta: worker set-up failed: %s\n", strerror(-ret));
		status = 3;
		goto out_workers;
	}
	if (nm_telemetry_register(app) != 0)
		NM_LOG(WARNING, "telemetry commands not registered\n");

	/* Every thread exists now (EAL's, librdkafka's, the embedded broker's): see signals.c. */
	if (nm_signals_main(app) != 0) {
		fprintf(stderr, "netmeta: cannot install signal handlers: %s\n", strerror(errno));
		status = 3;
		goto out_workers;
	}
	app->start_tsc = rte_rdtsc();
	app->start_ns = wall_ns();
	for (i = 0; i < app->n_workers; i++)
		rte_eal_remote_launch(nm_worker_main, app->workers[i], app->workers[i]->lcore_id);

	next_print = rte_rdtsc() + app->tsc_hz * (uint64_t)app->cfg.stats_interval_ms / 1000;
	while (!app->quit) {
		if (nm_flusher_poll(app) == 0) {
			/* The main lcore is control, not data: it may sleep, offline for QSBR. */
			rcu_thread_offline();
			usleep(1000);
			rcu_thread_online();
		}
		if (app->cfg.stats_interval_ms > 0 && rte_rdtsc() >= next_print) {
			print_line(app, (double)(rte_rdtsc() - app->start_tsc) / app->tsc_hz);
			next_print += app->tsc_hz * (uint64_t)app->cfg.stats_interval_ms / 1000;
		}
		if (app->offline && workers_done(app))
			break;
		if (o.duration > 0 &&
		    rte_rdtsc() - app->start_tsc >= (uint64_t)(o.duration * (double)app->tsc_hz))
			break;
	}
	/* Stop RX, keep draining while workers hand off their last tables. */
	app->stop_rx = true;
	rx_secs = (double)(rte_rdtsc() - app->start_tsc) / (double)app->tsc_hz;
	while (!workers_done(app)) {
		nm_flusher_poll(app);
		rcu_quiescent_state();
	}
	rte_eal_mp_wait_lcore();
	nm_flusher_poll(app);

	memset(&sm, 0, sizeof(sm));
	app->draining = true;
	nm_kafka_get_stats(app->kafka, &sm.k);
	if (sm.k.records_inflight + sm.k.spool_records > 0)
		fprintf(stderr,
			"netmeta: waiting up to %d ms for Kafka to acknowledge %" PRIu64
			" records (%" PRIu64 " of them spooled); Ctrl-C/SIGTERM now "
			"spools the rest at once\n",
			app->cfg.kafka_drain_timeout_ms, sm.k.records_inflight + sm.k.spool_records,
			sm.k.spool_records);
	(void)nm_kafka_drain(app->kafka, app->cfg.kafka_drain_timeout_ms, &app->drain_abort);
	/* Every record gets its outcome before the summary, so stderr and summary agree. */
	(void)nm_kafka_settle(app->kafka);
	nm_stats_sum(app, &sm.s, &sm.a);
	nm_kafka_get_stats(app->kafka, &sm.k);
	sm.secs = (double)(rte_rdtsc() - app->start_tsc) / app->tsc_hz;
	sm.rx_secs = rx_secs;
	sm.lost = sm.a.dropped + app->rows_failed + sm.k.records_failed + sm.k.records_dropped +
		  sm.k.records_unacked + sm.k.records_corrupt + sm.k.records_deadletter;
	print_summary(app, &sm, stdout);
	if (o.summary_json != NULL)
		(void)write_summary_json(app, &sm, o.summary_json);
	/* Spooled rows are safe on disk but not in Kafka yet: say so in the status, too. */
	/* A corrupt spool region lost rows even when no header said how many. */
	status = sm.lost != 0 || sm.k.spool_corrupt != 0 ? 1 : sm.k.spool_records != 0 ? 4 : 0;

out_workers:
	free_workers(app);
	if (app->kafka != NULL)
		nm_kafka_free(app->kafka);
out_tmpl:
	nm_tmpl_cache_free(app->tmpl);
out_ports:
	for (i = 0; i < app->cfg.n_ports; i++) {
		uint16_t pid;

		if (port_id_of(app->cfg.ports[i].device, &pid) == 0) {
			(void)rte_eth_dev_stop(pid);
			(void)rte_eth_dev_close(pid);
		}
	}
out_eal:
	rcu_unregister_thread();
	snprintf(runtime_dir, sizeof(runtime_dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	remove_runtime_dir(runtime_dir);
	return status;
}
