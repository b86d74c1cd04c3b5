/* SPDX-License-Identifier: BSD-3-Clause */
/* The EAL argv of the engine; the rules are in eal_args.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "eal_args.h"

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

/* Append one word; the last slots stay free for the words added after the user's. */
static int
push(struct nm_eal_args *a, char *word, int reserve)
{
	if (a->argc >= NM_EAL_MAX_ARGS - reserve)
		return -ENOSPC;
	a->argv[a->argc++] = word;
	return 0;
}

int
nm_eal_args_build(struct nm_eal_args *a, const struct nm_config *cfg, char *const *extra,
		  int n_extra, bool hugepages_free)
{
	bool has_huge_opt = false, has_mem = false, has_pci_opt = false, any_pci = false;
	bool extra_cores = false, skip_next = false, no_huge = false;
	char *tok, *save = NULL;
	unsigned int p;
	size_t used;
	int i;

	memset(a->argv, 0, sizeof(a->argv));
	a->argc = 0;
	a->no_huge_added = false;
	for (i = 0; i < n_extra; i++)
		extra_cores |= core_opt(extra[i]) != 0;
	if (strlen(cfg->eal_args) >= sizeof(a->store))
		return -ENOSPC;
	(void)push(a, (char *)"netmeta", 0);
	snprintf(a->store, sizeof(a->store), "%s", cfg->eal_args);
	used = strlen(a->store) + 1;
	for (tok = strtok_r(a->store, " \t", &save); tok != NULL;
	     tok = strtok_r(NULL, " \t", &save)) {
		if (skip_next) {
			skip_next = false;
			continue;
		}
		if (extra_cores && core_opt(tok) != 0) {
			skip_next = core_opt(tok) == 2;
			continue;
		}
		if (push(a, tok, 8) != 0)
			return -ENOSPC;
	}
	for (i = 0; i < n_extra; i++)
		if (push(a, extra[i], 8) != 0)
			return -ENOSPC;
	for (i = 1; i < a->argc; i++) {
		const char *w = a->argv[i];

		if (strcmp(w, "--no-huge") == 0)
			no_huge = true;
		if (strcmp(w, "--no-huge") == 0 || strncmp(w, "--huge-dir", 10) == 0)
			has_huge_opt = true;
		if (strcmp(w, "-m") == 0 || strncmp(w, "--socket-mem", 12) == 0)
			has_mem = true;
		if (strncmp(w, "-a", 2) == 0 || strncmp(w, "-b", 2) == 0 ||
		    strncmp(w, "--allow", 7) == 0 || strncmp(w, "--block", 7) == 0 ||
		    strcmp(w, "--no-pci") == 0)
			has_pci_opt = true;
	}
	for (p = 0; p < cfg->n_ports; p++)
		any_pci |= is_pci(cfg->ports[p].device);
	/* DPDK 22.11 refuses --in-memory with --no-huge; --no-shconf is what that pair means. */
	if (no_huge)
		for (i = 1; i < a->argc; i++)
			if (strcmp(a->argv[i], "--in-memory") == 0)
				a->argv[i] = (char *)"--no-shconf";
	if (!any_pci && !has_pci_opt)
		(void)push(a, (char *)"--no-pci", 0);
	if (!has_huge_opt && !hugepages_free) {
		(void)push(a, (char *)"--no-huge", 0);
		(void)push(a, (char *)"--no-shconf", 0);
		if (!has_mem) {
			(void)push(a, (char *)"-m", 0);
			(void)push(a, (char *)"512", 0);
		}
		a->no_huge_added = true;
	}
	for (p = 0; p < cfg->n_ports; p++) {
		int w = snprintf(
			a->store + used, sizeof(a->store) - used, "%s%s",
			is_pci(cfg->ports[p].device) ? "-a" : "--vdev=", cfg->ports[p].device);

		if (w < 0 || (size_t)w >= sizeof(a->store) - used ||
		    push(a, a->store + used, 0) != 0)
			return -ENOSPC;
		used += (size_t)w + 1;
	}
	a->argv[a->argc] = NULL;
	return 0;
}
