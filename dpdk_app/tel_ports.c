/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * /netmeta/ports: is the engine dropping, where, and how busy are its lcores. One reply holds
 *   port/<id>         the NIC's counters (rte_eth_stats_get), drops (imissed + rx_nombuf +
 *                     ierrors), link state and speed, the port's name, device and role
 *   port/<id>/q<q>    each RX queue: the PMD's per-queue counters where it gives them, the
 *                     frames the engine polled from it and the lcore that polls it
 *   lcore/<id>        each RX lcore: polls, the share that found work (busy %, over the last
 *                     second and over the run), bursts, mean burst size, records and frames
 *                     per second (from the main lcore's per-second tick, log_rate.c)
 * and at the top the totals: drops of every port, so a dropping engine shows in one number.
 * The port and queue counters are tables (opsview.h); the Prometheus exposition walks the same.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/if_packet.h>
#include <linux/if_xdp.h>

#include <rte_ethdev.h>
#include <rte_telemetry.h>

#include "opsview.h"

static const struct nm_ctr_desc port_desc[] = {
	NM_PORT_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_port_stats)};
const struct nm_ctr_set nm_port_ctr_set =
	NM_CTR_SET("port", "", "per DPDK port, read from the PMD (rte_eth_stats_get) when asked",
		   SINGLE_WRITER, struct nm_port_stats, port_desc);

static const struct nm_ctr_desc queue_desc[] = {
	NM_QUEUE_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_queue_stats)};
const struct nm_ctr_set nm_queue_ctr_set =
	NM_CTR_SET("queue", "", "per RX queue: the PMD's q_* counters and the polling lcore's",
		   SINGLE_WRITER, struct nm_queue_stats, queue_desc);

const char *
nm_port_role_name(enum nm_port_role r)
{
	switch (r) {
	case NM_ROLE_COLLECTOR:
		return "collector";
	case NM_ROLE_MIRROR_RX:
		return "mirror-rx";
	case NM_ROLE_MIRROR_TX:
		return "mirror-tx";
	}
	return "unknown";
}

/*
 * The kernel's drops for software ports, which DPDK 22.11's PMDs leave out of imissed:
 *  - net_af_packet: the PACKET_RX_RING overflows when the lcore is slow; the kernel counts it
 *    in the socket's PACKET_STATISTICS tp_drops, which the PMD never reads. The sockets are
 *    this process' own: found in /proc/self/fd (AF_PACKET, bound to the port's ifindex).
 *    Reading the statistics resets them, so they are accumulated here, under a lock.
 *  - net_af_xdp: the PMD adds XDP_STATISTICS rx_dropped (no free buffer) but not rx_ring_full
 *    (the RX ring full: the lcore did not take the frames), which is added here -- when the
 *    engine has one net_af_xdp port: an XDP socket does not say which interface it is bound to.
 *  - net_tap: the kernel drops what it cannot queue to the tap (the lcore is slow) and counts
 *    it as the interface's tx_dropped; read from sysfs while the interface is in this network
 *    namespace (it is not when a test moved it away; then nothing is added).
 * Telemetry threads only: /proc and a few getsockopt calls per port, never on an RX lcore.
 */
static struct {
	pthread_mutex_t lock;
	uint64_t tp_drops[RTE_MAX_ETHPORTS];
} kd = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int
iface_of(const char *device, char *buf, size_t len)
{
	const char *p = strstr(device, "iface=");
	size_t n;

	if (p == NULL)
		return -ENOENT;
	p += 6;
	n = strcspn(p, ",");
	if (n == 0 || n >= len)
		return -EINVAL;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return 0;
}

static uint64_t
tap_drops(const char *device, uint32_t ifindex)
{
	char want[IF_NAMESIZE], name[IF_NAMESIZE], path[96];
	unsigned long long v = 0;
	FILE *f;

	if (iface_of(device, want, sizeof(want)) != 0 || if_indextoname(ifindex, name) == NULL ||
	    strcmp(name, want) != 0)
		return 0;
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/tx_dropped", name);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu", &v) != 1)
		v = 0;
	fclose(f);
	return v;
}

/*
 * Sum over this process' sockets of family fam bound to ifindex. XDP sockets do not tell their
 * interface (no getsockname): with any_xdp they all count (the engine has one net_af_xdp port).
 */
static uint64_t
socket_drops(int fam, uint32_t ifindex, uint16_t port_id, bool any_xdp)
{
	uint64_t sum = 0;
	struct dirent *e;
	DIR *d = opendir("/proc/self/fd");

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name), dom = 0;
		socklen_t len = sizeof(dom);
		struct stat st;

		if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) != 0 ||
		    !S_ISSOCK(st.st_mode) ||
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &dom, &len) != 0 || dom != fam)
			continue;
		if (fam == AF_PACKET) {
			struct sockaddr_ll sll;
			struct tpacket_stats ts;

			len = sizeof(sll);
			if (getsockname(fd, (struct sockaddr *)&sll, &len) != 0 ||
			    (uint32_t)sll.sll_ifindex != ifindex)
				continue;
			len = sizeof(ts);
			if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &ts, &len) == 0)
				kd.tp_drops[port_id] += ts.tp_drops; /* read resets: keep */
		} else {
			struct sockaddr_xdp sx;
			struct xdp_statistics xs;

			len = sizeof(sx);
			if (getsockname(fd, (struct sockaddr *)&sx, &len) == 0
				    ? sx.sxdp_ifindex != ifindex
				    : !any_xdp)
				continue;
			len = sizeof(xs);
			memset(&xs, 0, sizeof(xs));
			if (getsockopt(fd, SOL_XDP, XDP_STATISTICS, &xs, &len) == 0)
				sum += xs.rx_ring_full;
		}
	}
	closedir(d);
	return fam == AF_PACKET ? kd.tp_drops[port_id] : sum;
}

static uint64_t
kernel_drops(const struct nm_app *app, const struct nm_port_cfg *pc, uint16_t port_id)
{
	struct rte_eth_dev_info info;
	unsigned int i, n_xdp = 0;
	uint64_t v = 0;

	for (i = 0; i < app->cfg.n_ports; i++)
		n_xdp += strncmp(app->cfg.ports[i].device, "net_af_xdp", 10) == 0;

	if (rte_eth_dev_info_get(port_id, &info) != 0 || info.if_index == 0)
		return 0;
	pthread_mutex_lock(&kd.lock);
	if (strcmp(info.driver_name, "net_af_packet") == 0)
		v = socket_drops(AF_PACKET, info.if_index, port_id, false);
	else if (strcmp(info.driver_name, "net_af_xdp") == 0)
		v = socket_drops(AF_XDP, info.if_index, port_id, n_xdp == 1);
	else if (strcmp(info.driver_name, "net_tap") == 0)
		v = tap_drops(pc->device, info.if_index);
	pthread_mutex_unlock(&kd.lock);
	return v;
}

int
nm_port_read(const struct nm_app *app, unsigned int i, struct nm_port_stats *ps,
	     struct nm_queue_stats *qs, int *lcores, unsigned int max)
{
	const struct nm_port_cfg *pc = &app->cfg.ports[i];
	uint16_t pid = app->ports[i].id;
	struct rte_eth_stats es;
	struct rte_eth_link link;
	unsigned int q, n, w, k;
	int ret;

	memset(ps, 0, sizeof(*ps));
	ret = rte_eth_stats_get(pid, &es);
	if (ret != 0)
		return ret;
	ps->ipackets = es.ipackets;
	ps->ibytes = es.ibytes;
	ps->kernel_drops = kernel_drops(app, pc, pid);
	ps->imissed = es.imissed + ps->kernel_drops;
	ps->rx_nombuf = es.rx_nombuf;
	ps->ierrors = es.ierrors;
	ps->drops = ps->imissed + es.rx_nombuf + es.ierrors;
	memset(&link, 0, sizeof(link));
	if (rte_eth_link_get_nowait(pid, &link) == 0) {
		ps->link_up = link.link_status == RTE_ETH_LINK_UP;
		ps->link_speed_mbps =
			link.link_speed == RTE_ETH_SPEED_NUM_UNKNOWN ? 0 : link.link_speed;
	}
	n = RTE_MIN(pc->rx_queues, max);
	for (q = 0; q < n; q++) {
		memset(&qs[q], 0, sizeof(qs[q]));
		lcores[q] = -1;
		if (q < RTE_ETHDEV_QUEUE_STAT_CNTRS) {
			qs[q].packets = es.q_ipackets[q];
			qs[q].bytes = es.q_ibytes[q];
			qs[q].errors = es.q_errors[q];
		}
		for (w = 0; w < app->n_workers; w++)
			for (k = 0; k < app->workers[w]->n_rxq; k++) {
				const struct nm_rxq *r = &app->workers[w]->rxq[k];

				if (r->port_id == pid && r->queue_id == q) {
					lcores[q] = (int)app->workers[w]->lcore_id;
					qs[q].polled = nm_ctr_get(&r->rx_pkts);
				}
			}
	}
	return (int)n;
}

/* Telemetry callbacks get no user argument; the app is set once before registration. */
static const struct nm_app *tel_app;

static void
tel_add(const char *key, uint64_t value, const struct nm_ctr_desc *d, void *ctx)
{
	(void)d;
	rte_tel_data_add_dict_u64(ctx, key, value);
}

/* DPDK 22.11 writes string values into the JSON reply as they are: keep quotes out. */

/* a/b as a decimal with one digit ("37.5"); "-" when b is 0. */
static void
add_ratio(struct rte_tel_data *c, const char *name, uint64_t a, uint64_t b, double scale)
{
	char buf[32];

	if (b == 0)
		snprintf(buf, sizeof(buf), "-");
	else
		snprintf(buf, sizeof(buf), "%.1f", (double)a * scale / (double)b);
	rte_tel_data_add_dict_string(c, name, buf);
}

static void
add_container(struct rte_tel_data *d, const char *key, struct rte_tel_data *c)
{
	if (rte_tel_data_add_dict_container(d, key, c, 0) != 0)
		rte_tel_data_free(c);
}

/* Queues in one reply: the dict holds at most RTE_TEL_MAX_DICT_ENTRIES entries. */
#define MAX_Q 64

static int
tel_ports(const char *cmd, const char *params, struct rte_tel_data *d)
{
	const struct nm_app *app = tel_app;
	struct nm_port_stats ps;
	struct nm_queue_stats qs[MAX_Q];
	int lcores[MAX_Q];
	uint64_t drops = 0, imissed = 0;
	unsigned int i, q, listed = 0;
	char key[64];

	(void)cmd;
	(void)params;
	rte_tel_data_start_dict(d);
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_port_cfg *pc = &app->cfg.ports[i];
		struct rte_tel_data *c;
		int n = nm_port_read(app, i, &ps, qs, lcores, MAX_Q);

		if (n < 0)
			continue;
		drops += ps.drops;
		imissed += ps.imissed;
		c = rte_tel_data_alloc();
		if (c == NULL)
			return -ENOMEM;
		rte_tel_data_start_dict(c);
		rte_tel_data_add_dict_u64(c, "port", app->ports[i].id);
		nm_tel_add_str(c, "name", pc->name);
		nm_tel_add_str(c, "device", pc->device);
		rte_tel_data_add_dict_string(c, "role", nm_port_role_name(pc->role));
		rte_tel_data_add_dict_string(c, "link", ps.link_up ? "up" : "down");
		rte_tel_data_add_dict_u64(c, "queues", pc->rx_queues);
		nm_ctr_foreach(&nm_port_ctr_set, &ps, "", tel_add, c);
		snprintf(key, sizeof(key), "port/%u", app->ports[i].id);
		add_container(d, key, c);
		for (q = 0; q < (unsigned int)n && listed < MAX_Q; q++, listed++) {
			c = rte_tel_data_alloc();
			if (c == NULL)
				return -ENOMEM;
			rte_tel_data_start_dict(c);
			rte_tel_data_add_dict_u64(c, "port", app->ports[i].id);
			nm_tel_add_str(c, "name", pc->name);
			rte_tel_data_add_dict_u64(c, "queue", q);
			rte_tel_data_add_dict_int(c, "lcore", lcores[q]);
			nm_ctr_foreach(&nm_queue_ctr_set, &qs[q], "", tel_add, c);
			snprintf(key, sizeof(key), "port/%u/q%u", app->ports[i].id, q);
			add_container(d, key, c);
		}
	}
	for (i = 0; i < app->n_workers; i++) {
		const struct nm_worker *w = app->workers[i];
		const struct nm_worker_rate *r = &w->rate;
		struct rte_tel_data *c = rte_tel_data_alloc();
		uint64_t polls = nm_ctr_get(&w->st.polls), busy = nm_ctr_get(&w->st.busy_polls);
		uint64_t bursts = nm_ctr_get(&w->st.bursts), rx = nm_ctr_get(&w->st.rx_packets);
		char qlist[RTE_TEL_MAX_STRING_LEN];
		size_t o = 0;

		if (c == NULL)
			return -ENOMEM;
		rte_tel_data_start_dict(c);
		rte_tel_data_add_dict_u64(c, "lcore", w->lcore_id);
		qlist[0] = '\0';
		for (q = 0; q < w->n_rxq && o < sizeof(qlist); q++)
			o += (size_t)snprintf(qlist + o, sizeof(qlist) - o, "%s%u/%u", q ? " " : "",
					      w->rxq[q].port_id, w->rxq[q].queue_id);
		rte_tel_data_add_dict_string(c, "queues", qlist);
		add_ratio(c, "busy_pct", nm_ctr_get(&r->busy_ppm), 10000, 1.0);
		add_ratio(c, "busy_pct_run", busy, polls, 100.0);
		add_ratio(c, "mean_burst", nm_ctr_get(&r->burst_milli), 1000, 1.0);
		add_ratio(c, "mean_burst_run", rx, bursts, 1.0);
		rte_tel_data_add_dict_u64(c, "records_per_s", nm_ctr_get(&r->records_per_s));
		rte_tel_data_add_dict_u64(c, "packets_per_s", nm_ctr_get(&r->packets_per_s));
		rte_tel_data_add_dict_u64(c, "polls", polls);
		rte_tel_data_add_dict_u64(c, "busy_polls", busy);
		rte_tel_data_add_dict_u64(c, "bursts", bursts);
		rte_tel_data_add_dict_u64(c, "rx_packets", rx);
		rte_tel_data_add_dict_u64(c, "records", nm_ctr_get(&w->st.records));
		snprintf(key, sizeof(key), "lcore/%u", w->lcore_id);
		add_container(d, key, c);
	}
	rte_tel_data_add_dict_u64(d, "ports", app->cfg.n_ports);
	rte_tel_data_add_dict_u64(d, "lcores", app->n_workers);
	rte_tel_data_add_dict_u64(d, "imissed", imissed);
	rte_tel_data_add_dict_u64(d, "drops", drops);
	return 0;
}

int
nm_tel_ports_register(struct nm_app *app)
{
	tel_app = app;
	return rte_telemetry_register_cmd("/netmeta/ports", tel_ports,
					  "Per port and RX queue: packets, bytes, imissed, nombuf, "
					  "errors, drops, link, lcore; per lcore: busy %, bursts.");
}
