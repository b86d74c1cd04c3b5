/* SPDX-License-Identifier: BSD-3-Clause */
/* Placeholder until the template cache lands. */
#include <errno.h>
#include <stdlib.h>

#include "tmpl.h"

struct nm_tmpl_cache {
	struct nm_tmpl_params p;
};

struct nm_tmpl_cache *
nm_tmpl_cache_create(const struct nm_tmpl_params *p)
{
	struct nm_tmpl_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->p = *p;
	return c;
}

void
nm_tmpl_cache_free(struct nm_tmpl_cache *c)
{
	free(c);
}
