/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Ports: --pcap/--mirror-pcap files as ports, capture-file inspection (frames, link type), the
 * DPDK port of each configured device, mbuf pools per NUMA socket (kept in the app context),
 * queue set-up with RSS chosen per driver, start, and the kernel side of net_tap ports.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pcap/pcap.h>

#include <rte_ethdev.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mbuf_dyn.h>

#include "app.h"
#include "xdp_allow.h"

/*
 * Records of a classic pcap file, counted by walking the record headers of a read-only mapping:
 * the page cache is mapped, not copied (pcap_next_ex() read the whole file through read(): ~10 %
 * of an offline run's CPU at 160 MB, perf). Stops where libpcap reports an error and stops too:
 * a record running past the end of the file, a capture length over its 262144-byte maximum for
 * the link types we accept. -1 for anything else (pcapng, modified pcap, no mapping): the caller
 * counts with libpcap.
 */
static int64_t
count_classic_pcap(const char *path)
{
	const uint8_t *m;
	uint64_t off = 24, n = 0, size, unmapped = 0;
	uint32_t magic, caplen;
	struct stat st;
	bool swap;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || st.st_size < 24) {
		close(fd);
		return -1;
	}
	size = (uint64_t)st.st_size;
	m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (m == MAP_FAILED)
		return -1;
	memcpy(&magic, m, sizeof(magic));
	if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
		swap = false;
	} else if (magic == 0xd4c3b2a1 || magic == 0x4d3cb2a1) {
		swap = true;
	} else {
		munmap((void *)(uintptr_t)m, size);
		return -1;
	}
	(void)madvise((void *)(uintptr_t)m, size, MADV_SEQUENTIAL);
	while (off + 16 <= size) {
		memcpy(&caplen, m + off + 8, sizeof(caplen));
		if (swap)
			caplen = __builtin_bswap32(caplen);
		if (caplen > 262144 || off + 16 + caplen > size)
			break;
		off += 16 + (uint64_t)caplen;
		n++;
		/* Unmap what was walked every 32 MiB: mapped file pages count in the RSS. */
		if (off - unmapped >= (32u << 20)) {
			uint64_t upto = off & ~(uint64_t)4095;

			(void)madvise((void *)(uintptr_t)(m + unmapped), upto - unmapped,
				      MADV_DONTNEED);
			unmapped = upto;
		}
	}
	munmap((void *)(uintptr_t)m, size);
	return (int64_t)n;
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
	int64_t c;
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
	c = count_classic_pcap(path);
	if (c >= 0)
		n = (uint64_t)c;
	else
		while (pcap_next_ex(p, &h, &data) == 1)
			n++;
	pcap_close(p);
	*frames = n;
	return 0;
}

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

static int
setup_port(struct nm_app *app, const struct nm_port_cfg *pc, struct nm_port *port)
{
	uint16_t port_id = port->id;
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
	if (app->pools[socket] == NULL)
		return -ENOMEM;
	for (q = 0; q < pc->rx_queues; q++) {
		ret = rte_eth_rx_queue_setup(port_id, q, nb_rxd, (unsigned int)socket, NULL,
					     app->pools[socket]);
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
		nm_tap_setup(pc, port_id);
	/* The PMD has loaded xdp_prog= by now: fill its allow maps (net_af_xdp only). */
	return nm_xdp_allow_open(&app->cfg, pc, &port->xdp_allow);
}

/*
 * One mbuf pool per NUMA socket that has ports, sized from the config: every RX descriptor of the
 * socket's queues can hold an mbuf, every lcore cache can be full, each worker holds a burst, and
 * a net_pcap infinite_rx port keeps its whole file in mbufs. [engine] mbufs is the floor.
 */
#define NM_POOL_CACHE 256

static int
create_pools(struct nm_app *app)
{
	uint64_t need[RTE_MAX_NUMA_NODES] = {0};
	unsigned int i, n_lcores = rte_lcore_count();
	int s;

	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];
		int socket = rte_eth_dev_socket_id(app->ports[i].id);

		if (socket < 0 || socket >= RTE_MAX_NUMA_NODES)
			socket = 0;
		need[socket] += (uint64_t)pc->rx_queues * app->cfg.rx_desc + 64 +
				(uint64_t)n_lcores * (NM_POOL_CACHE * 3 / 2 + NM_BURST);
		if (is_infinite_rx(pc->device))
			need[socket] += app->ports[i].expect_pkts;
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
		app->pools[s] = rte_pktmbuf_pool_create(name, (unsigned int)n, NM_POOL_CACHE, 0,
							RTE_MBUF_DEFAULT_BUF_SIZE, s);
		if (app->pools[s] == NULL) {
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

int
nm_ports_from_options(struct nm_app *app, const struct nm_options *o)
{
	unsigned int i;

	if (o->n_pcaps + o->n_mirror_pcaps > 0) {
		nm_config_clear_ports(&app->cfg);
		for (i = 0; i < o->n_pcaps + o->n_mirror_pcaps; i++) {
			bool mirror = i >= o->n_pcaps;
			const char *file = mirror ? o->mirror_pcaps[i - o->n_pcaps] : o->pcaps[i];
			struct nm_port_cfg *pc = &app->cfg.ports[app->cfg.n_ports];
			struct nm_port *port = &app->ports[app->cfg.n_ports];

			if (strchr(file, ',') != NULL || access(file, R_OK) != 0) {
				fprintf(stderr, "netmeta: %s %s: %s\n",
					mirror ? "--mirror-pcap" : "--pcap", file,
					strchr(file, ',')
						? "a path with a comma cannot be passed to "
						  "net_pcap"
						: strerror(errno));
				return -EINVAL;
			}
			if (app->cfg.n_ports == NM_CFG_MAX_PORTS) {
				fprintf(stderr, "netmeta: at most %d ports\n", NM_CFG_MAX_PORTS);
				return -EINVAL;
			}
			memset(pc, 0, sizeof(*pc));
			snprintf(pc->name, sizeof(pc->name), "pcap%u", i);
			snprintf(pc->device, sizeof(pc->device), "net_pcap%u,rx_pcap=%s", i, file);
			pc->role = mirror ? NM_ROLE_MIRROR_RX : NM_ROLE_COLLECTOR;
			pc->rx_queues = 1;
			if (inspect_pcap(file, &port->expect_pkts, &port->link) != 0)
				return -EINVAL;
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
			if (inspect_pcap(path, &app->ports[i].expect_pkts, &app->ports[i].link) !=
			    0)
				return -EINVAL;
			if (is_infinite_rx(pc->device))
				all_files = false;
		}
		app->offline = all_files;
	}
	if (app->cfg.n_ports == 0) {
		fprintf(stderr, "netmeta: no ports: add a [port.NAME] section or use --pcap\n");
		return -EINVAL;
	}
	return 0;
}

int
nm_ports_setup(struct nm_app *app)
{
	unsigned int i;
	int ret;

	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];

		if (port_id_of(pc->device, &app->ports[i].id) != 0) {
			fprintf(stderr,
				"netmeta: [port.%s] device = %s: no such DPDK port: EAL did "
				"not create it (see the driver's messages above; check the "
				"device string and that the NIC is bound to a DPDK driver)\n",
				pc->name, pc->device);
			return -ENODEV;
		}
	}
	ret = create_pools(app);
	if (ret != 0)
		return ret;
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];

		ret = setup_port(app, pc, &app->ports[i]);
		if (ret != 0) {
			fprintf(stderr, "netmeta: [port.%s] device = %s: set-up failed: %s\n",
				pc->name, pc->device, strerror(-ret));
			return ret;
		}
	}
	app->ts_dynfield = rte_mbuf_dynfield_lookup(RTE_MBUF_DYNFIELD_TIMESTAMP_NAME, NULL);
	ret = rte_mbuf_dynflag_lookup(RTE_MBUF_DYNFLAG_RX_TIMESTAMP_NAME, NULL);
	app->ts_dynflag = ret >= 0 ? RTE_BIT64(ret) : 0;
	if (app->offline && app->ts_dynfield < 0)
		NM_LOG(WARNING, "no RX timestamps from the pcap ports: rows get arrival time\n");
	return 0;
}

void
nm_ports_close(struct nm_app *app)
{
	unsigned int i;
	int s;

	/* A port EAL created but set-up did not reach is closed too: it holds the PMD's state. */
	for (i = 0; i < app->cfg.n_ports; i++) {
		uint16_t pid;

		nm_xdp_allow_free(app->ports[i].xdp_allow);
		app->ports[i].xdp_allow = NULL;
		if (port_id_of(app->cfg.ports[i].device, &pid) == 0) {
			(void)rte_eth_dev_stop(pid);
			(void)rte_eth_dev_close(pid);
		}
	}
	/* Only now: closed ports gave their mbufs back. */
	for (s = 0; s < RTE_MAX_NUMA_NODES; s++) {
		rte_mempool_free(app->pools[s]);
		app->pools[s] = NULL;
	}
}
