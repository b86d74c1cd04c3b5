/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_TMPL_H
#define NM_TMPL_H

/*
 * NetFlow v9 / IPFIX template cache and per-exporter state, shared by all RX lcores.
 * (Placeholder API; the v9/IPFIX work fills it in.)
 */

#include <stdint.h>

struct nm_tmpl_params {
	unsigned int max_templates_per_exporter;
	unsigned int max_templates;
	unsigned int max_exporters;
};

struct nm_tmpl_cache;

/* Create the cache; NULL with errno set on failure. Call from the control thread. */
struct nm_tmpl_cache *nm_tmpl_cache_create(const struct nm_tmpl_params *p);

/* Free the cache after every reader is gone. */
void nm_tmpl_cache_free(struct nm_tmpl_cache *c);

#endif /* NM_TMPL_H */
