/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libFuzzer target: sFlow v5 through the protocol dispatcher (and so the L2-L4 parser of its
 * sampled headers), and the packet parser on the raw bytes as a frame and as an IP packet.
 */
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
	static struct nm_flow_rec recs[4];
	struct nm_decoder d = {.stats = &st, .default_sampling_rate = 1};
	struct nm_rec_batch b = {.recs = recs, .cap = 4, .flush = discard};
	struct nm_dgram_meta meta = {.time_received = 1700000000};
	uint64_t before = st.sflow.records;
	struct nm_flow_key k;
	int rc;

	if (!registered) {
		rcu_register_thread();
		registered = 1;
	}
	/* Per-exporter accounting and sFlow interface counters on, as in the engine. */
	d.exp = fuzz_exp();
	rc = nm_decode_datagram(&d, data, size, &meta, &b);
	rcu_quiescent_state();
	/*
	 * Every sFlow record is one flow sample, and a sample takes at least 8 bytes: the wire's
	 * counts never make more records than the bytes allow. (Any protocol may arrive here; only
	 * sFlow records are checked.)
	 */
	if (rc > (int)(size / 8) || st.sflow.records - before > size / 8)
		__builtin_trap();
	for (unsigned int i = 0; i < b.n; i++)
		if (recs[i].key.type == NM_FLOW_SFLOW5 && recs[i].packets != 1)
			__builtin_trap();

	memset(&k, 0, sizeof(k));
	(void)nm_pkt_parse_eth(data, size, &k);
	if (k.mpls_count > 16)
		__builtin_trap();
	memset(&k, 0, sizeof(k));
	(void)nm_pkt_parse_ip(data, size, &k);
	return 0;
}
