/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * [collector] allow in the XDP filter (xdp_allow.h). The PMD loads the program and owns it; we
 * only find it on the interface (bpf_xdp_query_id -> program fd -> its map ids -> map fds,
 * matched by name and checked against nm_xdp_allow.h's layout) and keep the four map fds.
 */
#include <errno.h>
#include <inttypes.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>

#include "app.h"
#include "base/addr.h"
#include "xdp/nm_xdp_allow.h"
#include "xdp_allow.h"

enum { M_ALLOW, M_ON, M_DROP, M_TOTAL, M_COUNT };

static const struct {
	const char *name;
	uint32_t type, key_size, value_size;
} maps[M_COUNT] = {
	[M_ALLOW] = {NM_XDP_MAP_ALLOW, BPF_MAP_TYPE_LPM_TRIE, sizeof(struct nm_xdp_lpm_key), 1},
	[M_ON] = {NM_XDP_MAP_ALLOW_ON, BPF_MAP_TYPE_ARRAY, 4, 4},
	[M_DROP] = {NM_XDP_MAP_ALLOW_DROP, BPF_MAP_TYPE_LRU_HASH, sizeof(struct nm_xdp_src),
		    sizeof(struct nm_xdp_count)},
	[M_TOTAL] = {NM_XDP_MAP_ALLOW_TOTAL, BPF_MAP_TYPE_PERCPU_ARRAY, 4,
		     sizeof(struct nm_xdp_count)},
};

struct nm_xdp_allow {
	int fd[M_COUNT];
	uint32_t prog_id;
	int ncpus; /* possible CPUs: the per-CPU array's value count */
	char iface[IF_NAMESIZE];
	/* The set being written (sync): room for the largest config, not on the stack. */
	struct nm_xdp_lpm_key want[NM_XDP_ALLOW_MAX];
	struct nm_xdp_lpm_key stale[NM_XDP_ALLOW_MAX];
};

/* The value of key= in a vdev string into buf; -ENOENT when absent. */
static int
dev_arg(const char *device, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key);
	const char *p = strchr(device, ',');

	while (p != NULL) {
		p++;
		if (strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t n = strcspn(p + klen + 1, ",");

			if (n >= len)
				return -ENAMETOOLONG;
			memcpy(buf, p + klen + 1, n);
			buf[n] = '\0';
			return 0;
		}
		p = strchr(p, ',');
	}
	return -ENOENT;
}

/* The program's maps of ours into xa->fd (-1 where absent); -errno on a bpf(2) failure. */
static int
find_maps(struct nm_xdp_allow *xa, int prog_fd)
{
	uint32_t ids[64], i, j;
	struct bpf_prog_info pi;
	uint32_t len = sizeof(pi);

	memset(&pi, 0, sizeof(pi));
	pi.nr_map_ids = RTE_DIM(ids);
	pi.map_ids = (uint64_t)(uintptr_t)ids;
	if (bpf_obj_get_info_by_fd(prog_fd, &pi, &len) != 0)
		return -errno;
	for (i = 0; i < RTE_MIN(pi.nr_map_ids, (uint32_t)RTE_DIM(ids)); i++) {
		struct bpf_map_info mi;
		uint32_t mlen = sizeof(mi);
		int fd = bpf_map_get_fd_by_id(ids[i]);

		if (fd < 0)
			return -errno;
		memset(&mi, 0, sizeof(mi));
		if (bpf_obj_get_info_by_fd(fd, &mi, &mlen) != 0) {
			int ret = -errno;

			close(fd);
			return ret;
		}
		for (j = 0; j < M_COUNT; j++)
			if (xa->fd[j] < 0 && strcmp(mi.name, maps[j].name) == 0)
				break;
		if (j == M_COUNT) {
			close(fd);
			continue;
		}
		xa->fd[j] = fd;
		if (mi.type != maps[j].type || mi.key_size != maps[j].key_size ||
		    mi.value_size != maps[j].value_size) {
			fprintf(stderr,
				"netmeta: XDP program on %s: map %s has type %u, key %u and value "
				"%u bytes; this engine expects %u, %u and %u (the .bpf.o is from "
				"another version: use the one built with this engine)\n",
				xa->iface, mi.name, mi.type, mi.key_size, mi.value_size,
				maps[j].type, maps[j].key_size, maps[j].value_size);
			return -EPROTO;
		}
	}
	return 0;
}

void
nm_xdp_allow_free(struct nm_xdp_allow *xa)
{
	unsigned int i;

	if (xa == NULL)
		return;
	for (i = 0; i < M_COUNT; i++)
		if (xa->fd[i] >= 0)
			close(xa->fd[i]);
	free(xa);
}

int
nm_xdp_allow_open(const struct nm_config *cfg, const struct nm_port_cfg *pc,
		  struct nm_xdp_allow **out)
{
	struct nm_xdp_allow *xa = NULL;
	char prog[NM_CFG_STR];
	unsigned int i, found = 0;
	int ifindex, prog_fd = -1, ret;

	*out = NULL;
	if (strncmp(pc->device, "net_af_xdp", 10) != 0)
		return 0;
	if (dev_arg(pc->device, "xdp_prog", prog, sizeof(prog)) != 0) {
		if (cfg->n_allow != 0)
			NM_LOG(INFO,
			       "port %s: no xdp_prog=: the PMD's own XDP program passes every "
			       "source; [collector] allow is enforced in the RX path only\n",
			       pc->name);
		return 0;
	}
	xa = calloc(1, sizeof(*xa));
	if (xa == NULL)
		return -ENOMEM;
	for (i = 0; i < M_COUNT; i++)
		xa->fd[i] = -1;
	ret = dev_arg(pc->device, "iface", xa->iface, sizeof(xa->iface));
	if (ret != 0) {
		fprintf(stderr, "netmeta: [port.%s] device = %s: no iface= (%s)\n", pc->name,
			pc->device, strerror(-ret));
		goto cleanup;
	}
	ifindex = (int)if_nametoindex(xa->iface);
	if (ifindex == 0) {
		ret = -errno;
		fprintf(stderr, "netmeta: [port.%s] interface %s: %s\n", pc->name, xa->iface,
			strerror(errno));
		goto cleanup;
	}
	ret = bpf_xdp_query_id(ifindex, 0, &xa->prog_id);
	if (ret == 0 && xa->prog_id == 0)
		ret = -ENOENT;
	if (ret == 0) {
		prog_fd = bpf_prog_get_fd_by_id(xa->prog_id);
		ret = prog_fd < 0 ? -errno : find_maps(xa, prog_fd);
	}
	if (ret != 0) {
		fprintf(stderr,
			"netmeta: [port.%s] interface %s: cannot read the XDP program the PMD "
			"loaded (xdp_prog=%s): %s\n",
			pc->name, xa->iface, prog, strerror(-ret));
		goto cleanup;
	}
	for (i = 0; i < M_COUNT; i++)
		found += xa->fd[i] >= 0;
	if (found == 0 && cfg->n_allow == 0) {
		/* Another program of the user's: nothing of ours to fill or to read. */
		NM_LOG(INFO, "port %s: XDP program %u on %s has no allow maps\n", pc->name,
		       xa->prog_id, xa->iface);
		goto cleanup;
	}
	if (found != M_COUNT) {
		ret = -ENOENT;
		fprintf(stderr,
			"netmeta: [port.%s] interface %s: the XDP program (id %u, xdp_prog=%s) "
			"lacks the map %s: [collector] allow cannot be enforced in XDP; use "
			"nm_xdp_collector.bpf.o of this build\n",
			pc->name, xa->iface, xa->prog_id, prog,
			maps[xa->fd[M_ALLOW] < 0  ? M_ALLOW
			     : xa->fd[M_ON] < 0	  ? M_ON
			     : xa->fd[M_DROP] < 0 ? M_DROP
						  : M_TOTAL]
				.name);
		goto cleanup;
	}
	xa->ncpus = libbpf_num_possible_cpus();
	if (xa->ncpus <= 0) {
		ret = xa->ncpus < 0 ? xa->ncpus : -EINVAL;
		goto cleanup;
	}
	ret = nm_xdp_allow_sync(xa, cfg);
	if (ret != 0) {
		fprintf(stderr,
			"netmeta: [port.%s] interface %s: cannot write [collector] allow into "
			"the XDP program's map %s: %s\n",
			pc->name, xa->iface, NM_XDP_MAP_ALLOW, strerror(-ret));
		goto cleanup;
	}
	NM_LOG(INFO, "port %s: XDP filter on %s (program %u): [collector] allow %s\n", pc->name,
	       xa->iface, xa->prog_id,
	       cfg->n_allow != 0 ? "enforced" : "not set, every source passes");
	close(prog_fd);
	*out = xa;
	return 0;
cleanup:
	if (prog_fd >= 0)
		close(prog_fd);
	nm_xdp_allow_free(xa);
	return ret;
}

/* The admitted set of cfg (nm_exp_allowed's) into want[]; its size, or -ENOSPC. */
static int
admitted(const struct nm_config *cfg, struct nm_xdp_lpm_key *want)
{
	unsigned int i, j, n = 0;

	if (cfg->n_allow == 0)
		return 0;
	for (i = 0; i < cfg->n_allow; i++) {
		if (n == NM_XDP_ALLOW_MAX)
			return -ENOSPC;
		want[n].prefixlen = cfg->allow[i].len;
		memcpy(want[n++].addr, cfg->allow[i].addr, 16);
	}
	for (i = 0; i < cfg->n_exporters; i++) {
		const struct nm_exporter_cfg *e = &cfg->exporters[i];

		if (e->has_address) {
			if (n == NM_XDP_ALLOW_MAX)
				return -ENOSPC;
			want[n].prefixlen = 128;
			memcpy(want[n++].addr, e->address, 16);
		}
		for (j = 0; j < e->n_sflow_sources; j++) {
			if (n == NM_XDP_ALLOW_MAX)
				return -ENOSPC;
			want[n].prefixlen = 128;
			memcpy(want[n++].addr, e->sflow_sources[j], 16);
		}
	}
	return (int)n;
}

int
nm_xdp_allow_sync(struct nm_xdp_allow *xa, const struct nm_config *cfg)
{
	struct nm_xdp_lpm_key k, next;
	const uint8_t one = 1;
	uint32_t zero = 0, on = cfg->n_allow != 0;
	int n = admitted(cfg, xa->want), i, n_stale = 0;
	bool first = true;

	if (n < 0)
		return n;
	for (i = 0; i < n; i++)
		if (bpf_map_update_elem(xa->fd[M_ALLOW], &xa->want[i], &one, BPF_ANY) != 0)
			return -errno;
	/* The list first, then the switch: never on over a half-written list. */
	if (bpf_map_update_elem(xa->fd[M_ON], &zero, &on, BPF_ANY) != 0)
		return -errno;
	/* What the trie holds and cfg does not: collected first, the walk restarts on a delete. */
	memset(&k, 0, sizeof(k));
	while (n_stale < NM_XDP_ALLOW_MAX &&
	       bpf_map_get_next_key(xa->fd[M_ALLOW], first ? NULL : &k, &next) == 0) {
		for (i = 0; i < n; i++)
			if (memcmp(&xa->want[i], &next, sizeof(next)) == 0)
				break;
		if (i == n)
			xa->stale[n_stale++] = next;
		k = next;
		first = false;
	}
	for (i = 0; i < n_stale; i++)
		if (bpf_map_delete_elem(xa->fd[M_ALLOW], &xa->stale[i]) != 0 && errno != ENOENT)
			return -errno;
	return 0;
}

/* Keep the NM_XDP_DROPS_TOP heaviest (by packets) in d->top, sorted. */
static void
note_top(struct nm_xdp_drops *d, const uint8_t addr[16], const struct nm_xdp_count *c)
{
	unsigned int i, pos;

	for (pos = 0; pos < d->n_top && d->top[pos].packets >= c->packets; pos++)
		;
	if (pos == NM_XDP_DROPS_TOP)
		return;
	i = d->n_top < NM_XDP_DROPS_TOP ? d->n_top++ : NM_XDP_DROPS_TOP - 1;
	for (; i > pos; i--)
		d->top[i] = d->top[i - 1];
	memcpy(d->top[pos].addr, addr, 16);
	d->top[pos].packets = c->packets;
	d->top[pos].bytes = c->bytes;
}

int
nm_xdp_allow_read(const struct nm_xdp_allow *xa, struct nm_xdp_drops *d)
{
	struct nm_xdp_count *per_cpu, c;
	struct nm_xdp_src k, next;
	uint32_t zero = 0;
	bool first = true;
	int i, ret = 0;

	per_cpu = calloc((size_t)xa->ncpus, sizeof(*per_cpu));
	if (per_cpu == NULL)
		return -ENOMEM;
	if (bpf_map_lookup_elem(xa->fd[M_TOTAL], &zero, per_cpu) != 0) {
		ret = -errno;
		goto cleanup;
	}
	for (i = 0; i < xa->ncpus; i++) {
		d->packets += per_cpu[i].packets;
		d->bytes += per_cpu[i].bytes;
	}
	/*
	 * At most NM_XDP_DROP_SOURCES entries: two system calls each. An entry evicted under the
	 * walk restarts it from the first key, hence the bound on the steps.
	 */
	memset(&k, 0, sizeof(k));
	for (i = 0; i < 2 * NM_XDP_DROP_SOURCES &&
		    bpf_map_get_next_key(xa->fd[M_DROP], first ? NULL : &k, &next) == 0;
	     i++) {
		if (bpf_map_lookup_elem(xa->fd[M_DROP], &next, &c) == 0) {
			d->sources++;
			note_top(d, next.addr, &c);
		}
		k = next;
		first = false;
	}
cleanup:
	free(per_cpu);
	return ret;
}

const char *
nm_xdp_allow_iface(const struct nm_xdp_allow *xa)
{
	return xa->iface;
}

uint32_t
nm_xdp_allow_prog_id(const struct nm_xdp_allow *xa)
{
	return xa->prog_id;
}

int
nm_app_xdp_drops(const struct nm_app *app, struct nm_xdp_drops *d)
{
	unsigned int i, j;
	int ret, n = 0;

	memset(d, 0, sizeof(*d));
	for (i = 0; i < app->cfg.n_ports; i++) {
		const struct nm_xdp_allow *xa = app->ports[i].xdp_allow;

		if (xa == NULL)
			continue;
		/* Ports on one interface (queue ranges) share its program and maps. */
		for (j = 0; j < i; j++)
			if (app->ports[j].xdp_allow != NULL &&
			    app->ports[j].xdp_allow->prog_id == xa->prog_id)
				break;
		if (j < i)
			continue;
		ret = nm_xdp_allow_read(xa, d);
		if (ret != 0)
			return ret;
		n++;
	}
	return n;
}

int
nm_xdp_allow_reload(struct nm_app *app, const struct nm_config *next)
{
	unsigned int i;
	int ret;

	for (i = 0; i < app->cfg.n_ports; i++) {
		struct nm_xdp_allow *xa = app->ports[i].xdp_allow;

		if (xa == NULL)
			continue;
		ret = nm_xdp_allow_sync(xa, next);
		if (ret != 0) {
			fprintf(stderr,
				"netmeta: [port.%s] interface %s: cannot update the XDP filter's "
				"admitted sources: %s\n",
				app->cfg.ports[i].name, xa->iface, strerror(-ret));
			return ret;
		}
	}
	return 0;
}
