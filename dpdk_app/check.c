/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * netmeta --check-config: is this config fit to run on this host? Everything start-up would
 * refuse, found without starting anything -- no EAL, no hugepage taken, no port opened, no
 * thread -- and all of it at once: an operator fixing a file wants the whole list, not one
 * problem per try. Each problem is one line on stderr naming the file, the section, the key, the
 * value and what would be accepted; the exit status is 0 (runnable) or 2.
 *
 * The host: lcores of [eal] args and of the ports are online CPUs and fit together; each port's
 * device exists (PCI address in /sys/bus/pci/devices; the files and interfaces its vdev string
 * names; /dev/net/tun for net_tap); free hugepages cover the mbuf pools the config asks for
 * (sized as ports.c sizes them, the same sum netmeta-setup-host and README's Sizing use); the
 * spool directory can be created and written and its file system has room for spool_max_bytes.
 * What is worth knowing but does not stop a start (a NIC still on its kernel driver, which
 * netmeta-setup-host binds at service start) is printed as a note on stdout.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/stat.h>
#include <sys/statvfs.h>

#include "app.h"
#include "config/eal_args.h"

/* Where the host is read from: a test may point these elsewhere (NM_CHECK_SYSFS). */
#define CPU_ONLINE "/devices/system/cpu/online"
#define PCI_DEVICES "/bus/pci/devices"
#define NET_CLASS "/class/net"
#define HUGEPAGES "/kernel/mm/hugepages"

/* An mbuf of the pools (ports.c): 2 KiB data + headroom (2176), rte_mbuf (128), pool header. */
#define MBUF_BYTES 2368
#define POOL_CACHE 256

struct check {
	const char *src; /* the config's source for messages */
	unsigned int problems;
	unsigned int notes;
	char sysfs[256];
};

static void problem(struct check *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem(struct check *ck, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "netmeta: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ck->problems++;
}

static void note(struct check *ck, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
note(struct check *ck, const char *fmt, ...)
{
	va_list ap;

	printf("note: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	ck->notes++;
}

/* The config's own problems, already worded by lib/config. */
static void
report(void *ctx, const char *msg)
{
	problem(ctx, "%s", msg);
}

static int
read_text(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && isspace((unsigned char)buf[n - 1]))
		buf[--n] = '\0';
	return 0;
}

static void sys_path(const struct check *ck, char *out, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
sys_path(const struct check *ck, char *out, size_t len, const char *fmt, ...)
{
	size_t o = (size_t)snprintf(out, len, "%s", ck->sysfs);
	va_list ap;

	va_start(ap, fmt);
	if (o < len)
		vsnprintf(out + o, len - o, fmt, ap);
	va_end(ap);
}

/* ---- lcores ---------------------------------------------------------------------------- */

/* The lcore list of an EAL argv: -l LIST, -c MASK, --lcores LIST (simple lists only). */
static int
eal_lcores(const struct nm_eal_args *a, uint16_t *ids, unsigned int *n, const char **text,
	   int *main_lcore)
{
	int i, found = 0;

	*main_lcore = -1;
	for (i = 0; i < a->argc; i++) {
		const char *w = a->argv[i], *v = NULL;

		if ((strcmp(w, "-l") == 0 || strcmp(w, "-c") == 0 || strcmp(w, "--lcores") == 0) &&
		    i + 1 < a->argc)
			v = a->argv[i + 1];
		else if ((strncmp(w, "-l", 2) == 0 || strncmp(w, "-c", 2) == 0) && w[1] != '-' &&
			 w[2] != '\0')
			v = w + 2;
		else if (strncmp(w, "--lcores=", 9) == 0)
			v = w + 9;
		else if (strcmp(w, "--main-lcore") == 0 && i + 1 < a->argc)
			*main_lcore = atoi(a->argv[i + 1]);
		else if (strncmp(w, "--main-lcore=", 13) == 0)
			*main_lcore = atoi(w + 13);
		if (v == NULL)
			continue;
		*text = v;
		found = 1;
		if (w[1] == 'c') {
			/* A hex mask: bit i is lcore i. */
			char *end;
			unsigned long long m = strtoull(v, &end, 16);
			unsigned int b;

			*n = 0;
			if (*end != '\0' || m == 0)
				return -EINVAL;
			for (b = 0; b < 64; b++)
				if (m & (1ULL << b))
					ids[(*n)++] = (uint16_t)b;
		} else if (strpbrk(v, "@()") != NULL) {
			return -ENOTSUP; /* lcore-to-CPU maps: EAL checks those */
		} else if (nm_config_parse_lcores(v, ids, NM_CFG_LCORE_ID_MAX + 1, n) != 0) {
			return -EINVAL;
		}
	}
	return found ? 0 : -ENOENT;
}

static int
has_id(const uint16_t *ids, unsigned int n, unsigned int id)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (ids[i] == id)
			return 1;
	return 0;
}

/* Returns how many worker lcores EAL would run (0 when unknown or none). */
static unsigned int
check_lcores(struct check *ck, const struct nm_config *c, const struct nm_eal_args *a)
{
	uint16_t eal[NM_CFG_LCORE_ID_MAX + 1], online[NM_CFG_LCORE_ID_MAX + 1];
	unsigned int n_eal = 0, n_online = 0, i, p, workers = 0;
	char path[512], text[512], list[256];
	const char *lt = "";
	int main_lc, r;

	sys_path(ck, path, sizeof(path), CPU_ONLINE);
	if (read_text(path, text, sizeof(text)) != 0 ||
	    nm_config_parse_lcores(text, online, RTE_DIM(online), &n_online) != 0) {
		note(ck, "cannot read the online CPUs from %s: lcores not checked", path);
		return 0;
	}
	r = eal_lcores(a, eal, &n_eal, &lt, &main_lc);
	if (r == -ENOENT) {
		note(ck, "[eal] args names no lcores (-l/-c/--lcores): EAL takes every CPU (%s)",
		     text);
		memcpy(eal, online, n_online * sizeof(eal[0]));
		n_eal = n_online;
	} else if (r == -ENOTSUP) {
		note(ck, "[eal] args: --lcores %s maps lcores to CPUs: not checked here", lt);
		return 0;
	} else if (r != 0) {
		problem(ck,
			"%s: [eal] args = \"%s\": core list \"%s\": expected -l with ids like 0-1 or "
			"0,2-3, or -c with a hex mask",
			ck->src, c->eal_args, lt);
		return 0;
	}
	for (i = 0; i < n_eal; i++)
		if (!has_id(online, n_online, eal[i]))
			problem(ck,
				"%s: [eal] args = \"%s\": lcore %u is not an online CPU of this "
				"host (online: %s, from %s)",
				ck->src, c->eal_args, eal[i], text, path);
	/* EAL's main lcore is the lowest id of the list unless --main-lcore says otherwise. */
	if (main_lc < 0)
		for (i = 0; i < n_eal; i++)
			if (main_lc < 0 || eal[i] < (unsigned int)main_lc)
				main_lc = eal[i];
	if (main_lc < 0)
		main_lc = 0;
	for (i = 0; i < n_eal; i++)
		workers += eal[i] != (unsigned int)main_lc;
	if (workers == 0)
		problem(ck,
			"%s: [eal] args = \"%s\": no worker lcore: give EAL at least two lcores "
			"(e.g. -l 0-1); the main lcore %d runs the flusher",
			ck->src, c->eal_args, main_lc);
	for (p = 0; p < c->n_ports; p++) {
		const struct nm_port_cfg *pc = &c->ports[p];

		nm_config_format_lcores(pc->lcores, pc->n_lcores, list, sizeof(list));
		for (i = 0; i < pc->n_lcores; i++) {
			if (pc->lcores[i] == (unsigned int)main_lc)
				problem(ck,
					"%s: [port.%s] lcores = \"%s\": lcore %u is the main lcore "
					"(it runs the flusher); worker lcores are those of [eal] args "
					"(%s) less %d",
					ck->src, pc->name, list, pc->lcores[i], lt, main_lc);
			else if (!has_id(eal, n_eal, pc->lcores[i]))
				problem(ck,
					"%s: [port.%s] lcores = \"%s\": lcore %u is not in [eal] args' "
					"core list (%s); add it there or pick one of those",
					ck->src, pc->name, list, pc->lcores[i], lt);
		}
	}
	return workers;
}

/* ---- devices --------------------------------------------------------------------------- */

static int
is_pci(const char *dev, char *full, size_t len)
{
	unsigned int d, b, s, f;
	char tail;

	if (sscanf(dev, "%x:%x:%x.%x%c", &d, &b, &s, &f, &tail) == 4)
		return snprintf(full, len, "%04x:%02x:%02x.%x", d, b, s, f), 1;
	if (sscanf(dev, "%x:%x.%x%c", &b, &s, &f, &tail) == 3)
		return snprintf(full, len, "0000:%02x:%02x.%x", b, s, f), 1;
	return 0;
}

/* The value of key= in a vdev string ("net_pcap0,rx_pcap=a.pcap,..."), or 0. */
static int
devarg(const char *dev, const char *key, char *out, size_t len)
{
	size_t kl = strlen(key);
	const char *p;

	for (p = strchr(dev, ','); p != NULL; p = strchr(p + 1, ',')) {
		if (strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '=') {
			size_t n = strcspn(p + 2 + kl, ",");

			if (n >= len)
				n = len - 1;
			memcpy(out, p + 2 + kl, n);
			out[n] = '\0';
			return 1;
		}
	}
	return 0;
}

static void
need_iface(struct check *ck, const struct nm_port_cfg *pc, const char *key)
{
	char name[64], path[512];

	if (!devarg(pc->device, key, name, sizeof(name)))
		return;
	sys_path(ck, path, sizeof(path), NET_CLASS "/%s", name);
	if (access(path, F_OK) != 0)
		problem(ck,
			"%s: [port.%s] device = \"%s\": %s=%s: no such network interface on this "
			"host (%s; ip link lists them)",
			ck->src, pc->name, pc->device, key, name, path);
}

static void
need_file(struct check *ck, const struct nm_port_cfg *pc, const char *key, int mode)
{
	char file[PATH_MAX], dir[PATH_MAX], *slash;

	if (!devarg(pc->device, key, file, sizeof(file)))
		return;
	if (mode == R_OK) {
		if (access(file, R_OK) != 0)
			problem(ck, "%s: [port.%s] device = \"%s\": %s=%s: cannot read: %s",
				ck->src, pc->name, pc->device, key, file, strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "%s", file);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		*(slash == dir ? slash + 1 : slash) = '\0';
	if (access(dir, W_OK | X_OK) != 0)
		problem(ck, "%s: [port.%s] device = \"%s\": %s=%s: cannot write in %s: %s", ck->src,
			pc->name, pc->device, key, file, dir, strerror(errno));
}

static void
check_device(struct check *ck, const struct nm_port_cfg *pc)
{
	char full[32], path[512], link[512];
	ssize_t n;

	if (is_pci(pc->device, full, sizeof(full))) {
		sys_path(ck, path, sizeof(path), PCI_DEVICES "/%s", full);
		if (access(path, F_OK) != 0) {
			problem(ck,
				"%s: [port.%s] device = \"%s\": no such PCI device on this host "
				"(%s); dpdk-devbind.py --status lists the NICs",
				ck->src, pc->name, pc->device, path);
			return;
		}
		sys_path(ck, path, sizeof(path), PCI_DEVICES "/%s/driver", full);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		{
			const char *drv =
				strrchr(link, '/') != NULL ? strrchr(link, '/') + 1 : link;

			if (strcmp(drv, "vfio-pci") != 0 && strcmp(drv, "uio_pci_generic") != 0 &&
			    strcmp(drv, "igb_uio") != 0 && strncmp(drv, "mlx", 3) != 0)
				note(ck,
				     "[port.%s] device = %s is on driver %s: netmeta-setup-host "
				     "(the service's ExecStartPre) binds it to vfio-pci",
				     pc->name, full, drv[0] != '\0' ? drv : "(none)");
		}
		return;
	}
	if (strncmp(pc->device, "net_pcap", 8) == 0) {
		need_file(ck, pc, "rx_pcap", R_OK);
		need_file(ck, pc, "tx_pcap", W_OK);
		need_iface(ck, pc, "rx_iface");
		need_iface(ck, pc, "rx_iface_in");
		need_iface(ck, pc, "tx_iface");
		need_iface(ck, pc, "iface");
	} else if (strncmp(pc->device, "net_af_packet", 13) == 0 ||
		   strncmp(pc->device, "net_af_xdp", 10) == 0) {
		if (!devarg(pc->device, "iface", link, sizeof(link)))
			problem(ck,
				"%s: [port.%s] device = \"%s\": needs iface=<interface> (e.g. "
				"%.*s,iface=eth1)",
				ck->src, pc->name, pc->device, (int)strcspn(pc->device, ","),
				pc->device);
		need_iface(ck, pc, "iface");
		need_file(ck, pc, "xdp_prog", R_OK);
	} else if (strncmp(pc->device, "net_tap", 7) == 0) {
		if (access("/dev/net/tun", R_OK | W_OK) != 0)
			problem(ck,
				"%s: [port.%s] device = \"%s\": /dev/net/tun: %s (the tun module "
				"makes it: modprobe tun)",
				ck->src, pc->name, pc->device, strerror(errno));
	}
}

/* ---- hugepages ------------------------------------------------------------------------- */

static uint64_t
pow2_minus1_at_least(uint64_t n)
{
	uint64_t v = 1;

	while (v - 1 < n)
		v <<= 1;
	return v - 1;
}

/* Free bytes of hugepages of every size, with a description of each size. */
static uint64_t
huge_free(const struct check *ck, char *desc, size_t len)
{
	static const struct {
		const char *dir;
		uint64_t bytes;
		const char *name;
	} sizes[] = {
		{"hugepages-2048kB", 2ULL << 20, "2 MiB"},
		{"hugepages-1048576kB", 1ULL << 30, "1 GiB"},
	};
	uint64_t total = 0;
	size_t o = 0;
	unsigned int i;

	desc[0] = '\0';
	for (i = 0; i < RTE_DIM(sizes); i++) {
		char path[512], fr[32], nr[32];

		sys_path(ck, path, sizeof(path), HUGEPAGES "/%s/free_hugepages", sizes[i].dir);
		if (read_text(path, fr, sizeof(fr)) != 0)
			continue;
		sys_path(ck, path, sizeof(path), HUGEPAGES "/%s/nr_hugepages", sizes[i].dir);
		if (read_text(path, nr, sizeof(nr)) != 0)
			snprintf(nr, sizeof(nr), "?");
		total += strtoull(fr, NULL, 10) * sizes[i].bytes;
		if (o < len)
			o += (size_t)snprintf(desc + o, len - o, "%s%s pages: %s free of %s",
					      o ? ", " : "", sizes[i].name, fr, nr);
	}
	return total;
}

static void
check_hugepages(struct check *ck, const struct nm_config *c, const struct nm_eal_args *a,
		unsigned int workers)
{
	uint64_t need = 0, n, pool, need_mib, free_b;
	unsigned int i, lcores = workers + 1;
	char desc[256];
	int j;

	for (j = 0; j < a->argc; j++) {
		if (strcmp(a->argv[j], "--no-huge") == 0) {
			note(ck,
			     "[eal] args has --no-huge: no hugepages needed (not for line rate)");
			return;
		}
	}
	if (c->n_ports == 0)
		return;
	/* One pool (all ports on one NUMA node, as on these machines), sized as ports.c does. */
	for (i = 0; i < c->n_ports; i++)
		need += (uint64_t)c->ports[i].rx_queues * c->rx_desc + 64 +
			(uint64_t)lcores * (POOL_CACHE * 3 / 2 + NM_BURST);
	n = pow2_minus1_at_least(need > c->mbuf_count ? need : c->mbuf_count);
	pool = n * MBUF_BYTES + (n + 1) * 8;
	/* Plus EAL, ethdev rings, worker structs and telemetry: 16 MiB measured-with-margin. */
	need_mib = (pool >> 20) + 16 + 1;
	free_b = huge_free(ck, desc, sizeof(desc));
	if (desc[0] == '\0') {
		note(ck, "no hugepage sizes under %s%s: hugepages not checked", ck->sysfs,
		     HUGEPAGES);
		return;
	}
	if (free_b < need_mib << 20)
		problem(ck,
			"%s: [engine] mbufs = %u, rx_desc = %u: the mbuf pool (%" PRIu64
			" mbufs for %u port(s)) and EAL need about %" PRIu64 " MiB of hugepages, "
			"%" PRIu64 " MiB are free (%s): reserve more (netmeta-setup-host, or "
			"scripts/setup.sh) or lower [engine] mbufs / rx_desc / rx_queues",
			ck->src, c->mbuf_count, c->rx_desc, n, c->n_ports, need_mib, free_b >> 20,
			desc);
	else
		printf("hugepages: about %" PRIu64 " MiB needed (%" PRIu64 " mbufs), %" PRIu64
		       " MiB free (%s)\n",
		       need_mib, n, free_b >> 20, desc);
}

/* ---- spool ----------------------------------------------------------------------------- */

static void
check_spool(struct check *ck, const struct nm_config *c)
{
	const char *dir = c->kafka_spool_dir;
	char parent[NM_CFG_STR], *slash;
	struct statvfs vfs;
	struct stat st;
	const char *fs = dir;

	if (dir[0] == '\0')
		return;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			problem(ck, "%s: [kafka] spool_dir = \"%s\": exists and is not a directory",
				ck->src, dir);
			return;
		}
		if (access(dir, R_OK | W_OK | X_OK) != 0) {
			problem(ck, "%s: [kafka] spool_dir = \"%s\": not writable: %s", ck->src,
				dir, strerror(errno));
			return;
		}
	} else {
		/* The engine creates the directory itself (one level, mode 0750). */
		snprintf(parent, sizeof(parent), "%s", dir);
		while ((slash = strrchr(parent, '/')) != NULL && slash[1] == '\0' &&
		       slash != parent)
			*slash = '\0';
		slash = strrchr(parent, '/');
		if (slash == NULL)
			snprintf(parent, sizeof(parent), ".");
		else
			*(slash == parent ? slash + 1 : slash) = '\0';
		if (access(parent, W_OK | X_OK) != 0) {
			problem(ck,
				"%s: [kafka] spool_dir = \"%s\": does not exist and cannot be "
				"created in %s: %s (the engine creates the directory, not its "
				"parents; the service's StateDirectory=netmeta makes "
				"/var/lib/netmeta)",
				ck->src, dir, parent, strerror(errno));
			return;
		}
		fs = parent;
	}
	if (statvfs(fs, &vfs) == 0 &&
	    (uint64_t)vfs.f_bavail * vfs.f_frsize < c->kafka_spool_max_bytes)
		problem(ck,
			"%s: [kafka] spool_max_bytes = %" PRIu64 ": the file system of %s has only "
			"%" PRIu64 " MiB free; lower spool_max_bytes or free space",
			ck->src, c->kafka_spool_max_bytes, dir,
			((uint64_t)vfs.f_bavail * vfs.f_frsize) >> 20);
}

int
nm_check_config(const struct nm_options *o)
{
	struct nm_config *c = calloc(1, sizeof(*c));
	struct nm_eal_args *a = calloc(1, sizeof(*a));
	struct check ck = {.src = o->config != NULL ? o->config : "(defaults)"};
	const char *env = getenv("NM_CHECK_SYSFS");
	unsigned int i, workers = 0;
	int ret;

	if (c == NULL || a == NULL) {
		fprintf(stderr, "netmeta: --check-config: out of memory\n");
		free(c);
		free(a);
		return 2;
	}
	snprintf(ck.sysfs, sizeof(ck.sysfs), "%s", env != NULL ? env : "/sys");
	/* The config's problems come through report(), each counted there. */
	(void)nm_config_check(c, o->config, o->sets, o->n_sets, report, &ck);
	if (o->n_sets > 0)
		ck.src = c->source;
	if (o->n_pcaps + o->n_mirror_pcaps > 0) {
		/* --pcap/--mirror-pcap replace the config's ports: the files must be readable. */
		nm_config_clear_ports(c);
		for (i = 0; i < o->n_pcaps + o->n_mirror_pcaps; i++) {
			const char *f =
				i < o->n_pcaps ? o->pcaps[i] : o->mirror_pcaps[i - o->n_pcaps];

			if (access(f, R_OK) != 0)
				problem(&ck, "--%spcap %s: cannot read: %s",
					i < o->n_pcaps ? "" : "mirror-", f, strerror(errno));
		}
	}
	/* The argv start-up would give EAL (the ports' -a/--vdev and all). */
	ret = nm_eal_args_build(a, c, o->eal_extra, o->n_eal_extra, true);
	if (ret != 0)
		problem(&ck, "%s: [eal] args = \"%.60s...\": too many words for EAL (at most %d)",
			ck.src, c->eal_args, NM_EAL_MAX_ARGS);
	else
		workers = check_lcores(&ck, c, a);
	for (i = 0; i < c->n_ports; i++)
		check_device(&ck, &c->ports[i]);
	if (ret == 0)
		check_hugepages(&ck, c, a, workers);
	check_spool(&ck, c);
	if (ck.problems != 0)
		fprintf(stderr, "netmeta: %s: %u problem(s); nothing was started\n", ck.src,
			ck.problems);
	else
		printf("%s: config and host OK: %u port(s), %u worker lcore(s), %u exporter "
		       "section(s), Kafka %s\n",
		       ck.src, c->n_ports, workers, c->n_exporters, c->kafka_brokers);
	free(c);
	free(a);
	return ck.problems != 0 ? 2 : 0;
}
