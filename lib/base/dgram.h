/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_DGRAM_H
#define NM_DGRAM_H

/*
 * Where an export datagram came from and when: what the RX worker knows of a UDP payload before
 * any decoder looks at it, and what the decoders (lib/decode) and per-exporter accounting
 * (lib/exporter) take with it. Plain data.
 */

#include <stdint.h>

#include "addr.h"

struct nm_dgram_meta {
	uint8_t exporter[NM_ADDR_LEN]; /* source address of the UDP datagram (IPv4 mapped) */
	uint16_t exporter_port;	       /* UDP source port */
	uint16_t dst_port;	       /* UDP destination port */
	uint64_t time_received;	       /* seconds since the epoch */
	uint64_t time_received_ns;     /* nanoseconds since the epoch (same instant) */
};

#endif /* NM_DGRAM_H */
