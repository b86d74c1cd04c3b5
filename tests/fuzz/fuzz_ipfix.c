/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: IPFIX through the protocol dispatcher with a real template cache that
 * persists across inputs (templates from one input meet data of the next, as on the wire), small
 * bounds so floods hit the limits, and a QSBR quiescent state after each input so replaced
 * templates are really freed (use-after-free shows up under ASan).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <urcu-qsbr.h>

#include "decode/decode.h"
#include "tmpl/tmpl.h"
#include "fuzz_exp.h"

static void
discard(struct nm_rec_batch *b, void *ctx)
{
	(void)b;
	(void)ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nm_tmpl_cache *cache;
	static struct nm_decode_stats st;
	static struct nm_flow_rec recs[16];
	static uint8_t buf[65536];
	struct nm_decoder d = {.stats = &st, .default_sampling_rate = 1};
	struct nm_rec_batch b = {.recs = recs, .cap = 16, .flush = discard};
	struct nm_dgram_meta meta = {.time_received = 1700000000};
	size_t n = size < sizeof(buf) ? size : sizeof(buf);

	if (cache == NULL) {
		struct nm_tmpl_params p = {.max_templates_per_exporter = 64,
					   .max_templates = 256,
					   .max_exporters = 4,
					   .max_pending = 16};

		rcu_register_thread();
		cache = nm_tmpl_cache_create(&p);
		if (cache == NULL)
			__builtin_trap();
	}
	d.tmpl = cache;
	d.exp = fuzz_exp();
	/* Two exporters so keys differ by address too. */
	meta.exporter[10] = 0xff;
	meta.exporter[11] = 0xff;
	meta.exporter[15] = size > 0 ? (data[size - 1] & 1) : 0;
	(void)nm_decode_datagram(&d, data, size, &meta, &b);
	rcu_quiescent_state();
	if (n >= 4) {
		memcpy(buf, data, n);
		buf[0] = 0;
		buf[1] = 10;
		/* A message length that matches, so most inputs get past the header. */
		buf[2] = (uint8_t)(n >> 8);
		buf[3] = (uint8_t)n;
		(void)nm_decode_datagram(&d, buf, n, &meta, &b);
		rcu_quiescent_state();
	}
	if (b.n > b.cap)
		__builtin_trap();
	return 0;
}
