/* SPDX-License-Identifier: BSD-3-Clause */
/* libFuzzer target: NetFlow v5 through the protocol dispatcher, and the frame classifier. */
#include <stddef.h>
#include <stdint.h>

#include "decode/decode.h"
#include "pkt/pkt.h"
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
	static struct nm_decode_stats st;
	static int registered;
	static struct nm_flow_rec recs[16];
	struct nm_decoder d = {.stats = &st, .default_sampling_rate = 1};
	struct nm_rec_batch b = {.recs = recs, .cap = 16, .flush = discard};
	struct nm_dgram_meta meta = {.time_received = 1700000000};
	struct nm_udp_view v;

	if (!registered) {
		rcu_register_thread();
		registered = 1;
	}
	(void)nm_nf5_decode(&d, data, size, &meta, &b);
	/* Again through the dispatcher with per-exporter accounting, as the engine decodes. */
	d.exp = fuzz_exp();
	meta.exporter[10] = 0xff;
	meta.exporter[11] = 0xff;
	meta.exporter[15] = size > 0 ? (data[size - 1] & 1) : 0;
	(void)nm_decode_datagram(&d, data, size, &meta, &b);
	rcu_quiescent_state();
	/* The same bytes as a whole frame: the classifier must stay inside them too. */
	if (nm_pkt_udp_view(data, size, &v) == NM_UDP_OK &&
	    (v.payload < data || v.payload + v.payload_len > data + size))
		__builtin_trap();
	return 0;
}
