/* SPDX-License-Identifier: BSD-3-Clause */
#include <stdio.h>
#include <arpa/inet.h>

#include "addr.h"

const char *
nm_addr_str(const uint8_t addr[NM_ADDR_LEN], char *buf, size_t len)
{
	if (nm_addr_is_v4(addr)) {
		if (inet_ntop(AF_INET, addr + 12, buf, (socklen_t)len) == NULL)
			snprintf(buf, len, "?");
	} else if (inet_ntop(AF_INET6, addr, buf, (socklen_t)len) == NULL) {
		snprintf(buf, len, "?");
	}
	return buf;
}
