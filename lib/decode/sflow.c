/* SPDX-License-Identifier: BSD-3-Clause */
/* Placeholder until the decoder lands: counts the datagram as unsupported. */
#include "decode.h"

int
nm_sflow_decode(struct nm_decoder *d, const uint8_t *buf, size_t len,
	      const struct nm_dgram_meta *meta, struct nm_rec_batch *out)
{
	(void)buf; (void)len; (void)meta; (void)out;
	d->stats->sflow.datagrams++;
	return nm_decode_fail(d, &d->stats->sflow, NM_DECODE_ERR_UNSUPPORTED);
}
