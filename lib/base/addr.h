/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_ADDR_H
#define NM_ADDR_H

/*
 * Addresses as the whole engine stores them: 16 bytes, IPv4 as ::ffff:a.b.c.d (RFC 4291
 * 2.5.5.2), so one type serves exporters, flow addresses, next hops, config and telemetry.
 *
 * Cost: nm_addr_from_v4() and nm_addr_is_v4() are inline byte copies/compares (hot path).
 * nm_addr_str() calls inet_ntop(): no allocation, no lock, no syscall, but meant for telemetry,
 * logs and tests, not per record. Any thread.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define NM_ADDR_LEN 16

/* Store an IPv4 address (network byte order, as on the wire) as ::ffff:a.b.c.d. */
static inline void
nm_addr_from_v4(uint8_t dst[NM_ADDR_LEN], const uint8_t v4[4])
{
	memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	memcpy(dst + 12, v4, 4);
}

/* True when addr is an IPv4-mapped IPv6 address. */
static inline int
nm_addr_is_v4(const uint8_t addr[NM_ADDR_LEN])
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(addr, prefix, 12) == 0;
}

/*
 * Format addr as text: dotted quad for IPv4-mapped addresses, RFC 5952 text otherwise.
 * buf must hold at least NM_ADDR_STRLEN bytes. Returns buf.
 */
#define NM_ADDR_STRLEN 46
const char *nm_addr_str(const uint8_t addr[NM_ADDR_LEN], char *buf, size_t len);

#endif /* NM_ADDR_H */
