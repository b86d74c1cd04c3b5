/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * EAL: the argv (built by lib/config/eal_args.c from the config and the command line), the
 * hugepage probe that decides --no-huge, rte_eal_init, and at exit the runtime directory.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>

#include "app.h"
#include "opsview.h"
#include "config/eal_args.h"

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

static uint64_t
wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

int
nm_eal_init(struct nm_app *app, const struct nm_options *o)
{
	/* rte_eal_init keeps pointers into argv for the process' life. */
	static struct nm_eal_args a;
	int ret;

	ret = nm_eal_args_build(&a, &app->cfg, o->eal_extra, o->n_eal_extra, hugepages_free() > 0);
	if (ret != 0) {
		fprintf(stderr, "netmeta: EAL arguments too long ([eal] args, -- ARGS, devices)\n");
		return ret;
	}
	if (a.no_huge_added)
		fprintf(stderr, "netmeta: WARNING: no free hugepages; running with --no-huge "
				"--no-shconf (fine for tests, too slow for line rate; "
				"scripts/setup.sh reserves hugepages)\n");
	nm_log_journal_init(); /* before EAL logs anything: priorities for the journal */
	if (rte_eal_init(a.argc, a.argv) < 0) {
		fprintf(stderr, "netmeta: EAL initialisation failed: %s\n",
			rte_strerror(rte_errno));
		return -rte_errno;
	}
	app->tsc_hz = rte_get_tsc_hz();
	nm_app_clock_start(app);
	return 0;
}

void
nm_app_clock_start(struct nm_app *app)
{
	app->start_tsc = rte_rdtsc();
	app->start_ns = wall_ns();
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

void
nm_eal_cleanup(void)
{
	char runtime_dir[PATH_MAX];

	snprintf(runtime_dir, sizeof(runtime_dir), "%s", rte_eal_get_runtime_dir());
	rte_eal_cleanup();
	remove_runtime_dir(runtime_dir);
}
