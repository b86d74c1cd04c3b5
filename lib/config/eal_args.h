/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_EAL_ARGS_H
#define NM_EAL_ARGS_H

/*
 * The argv the engine gives rte_eal_init(), built from the config and the words after "--" on
 * the command line. Pure string work (no EAL, no I/O), so unit tests reach every rule:
 *   - [eal] args first, then the extra words, then one -a (PCI) or --vdev= per port;
 *   - a core list among the extra words (-l, -c, --lcores) replaces the config's, since EAL
 *     refuses two: the command line wins;
 *   - --no-pci unless a port is a PCI address or the arguments allow/block PCI devices: EAL
 *     must not take over NICs nobody asked for (the one this machine is reached through);
 *   - --in-memory becomes --no-shconf next to --no-huge (DPDK 22.11 refuses the pair);
 *   - without free hugepages (and no --no-huge/--huge-dir of the user's): --no-huge --no-shconf
 *     and -m 512 unless a memory size is given.
 *
 * Threading: any thread; argv points into store, extra and static strings.
 */

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define NM_EAL_MAX_ARGS 128

struct nm_eal_args {
	char *argv[NM_EAL_MAX_ARGS + 1]; /* NULL-terminated */
	int argc;
	bool no_huge_added; /* --no-huge was added because no hugepage was free */
	char store[8192];   /* the words argv points to */
};

/*
 * Build a from cfg (eal_args and ports' devices), the extra words (argv after "--") and whether
 * any hugepage is free. 0, or -ENOSPC when the words do not fit store or NM_EAL_MAX_ARGS.
 */
int nm_eal_args_build(struct nm_eal_args *a, const struct nm_config *cfg, char *const *extra,
		      int n_extra, bool hugepages_free);

#endif /* NM_EAL_ARGS_H */
