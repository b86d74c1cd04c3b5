/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_FUZZ_EXP_H
#define NM_FUZZ_EXP_H

/*
 * The per-exporter table every fuzz target decodes with, as the engine does: small bounds so the
 * inputs reach the overflow counters (exporters, sFlow interfaces), and one configured override
 * (::ffff:255.255.0.1, the second exporter address the v9/IPFIX targets use) so the override
 * path runs too. It persists across inputs. The caller is a registered QSBR reader and announces
 * a quiescent state after each input.
 */
#include <urcu-qsbr.h>

#include "exporter/exporter.h"

static struct nm_exp_table *
fuzz_exp(void)
{
	static struct nm_exp_table *t;

	if (t == NULL) {
		struct nm_exp_params p = {.max_exporters = 8,
					  .max_ifaces = 16,
					  .max_overrides = 2,
					  .default_sampling_rate = 1};
		uint8_t a[16] = {[10] = 0xff, [11] = 0xff, [15] = 1};

		t = nm_exp_create(&p);
		if (t == NULL || nm_exp_override_add(t, a, 7, "fuzz") != 0)
			__builtin_trap();
	}
	return t;
}

#endif /* NM_FUZZ_EXP_H */
