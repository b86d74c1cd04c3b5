/* SPDX-License-Identifier: BSD-3-Clause */
/* Placeholder until the full L2-L4 parser lands. */
#include "pkt.h"
#include "../decode/decode.h"

int
nm_pkt_parse_eth(const uint8_t *frame, size_t len, struct nm_flow_key *k)
{
	(void)frame; (void)len; (void)k;
	return -NM_DECODE_ERR_UNSUPPORTED;
}

int
nm_pkt_parse_ip(const uint8_t *pkt, size_t len, struct nm_flow_key *k)
{
	(void)pkt; (void)len; (void)k;
	return -NM_DECODE_ERR_UNSUPPORTED;
}
