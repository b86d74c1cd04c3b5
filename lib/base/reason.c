/* SPDX-License-Identifier: BSD-3-Clause */
#include <stddef.h>

#include "reason.h"

static const char *const err_names[NM_DECODE_ERR_MAX] = {
	[NM_DECODE_OK] = "ok",
	[NM_DECODE_ERR_TRUNCATED] = "truncated",
	[NM_DECODE_ERR_BAD_VERSION] = "bad_version",
	[NM_DECODE_ERR_BAD_COUNT] = "bad_count",
	[NM_DECODE_ERR_BAD_LENGTH] = "bad_length",
	[NM_DECODE_ERR_UNKNOWN_PROTO] = "unknown_proto",
	[NM_DECODE_ERR_UNKNOWN_TEMPLATE] = "unknown_template",
	[NM_DECODE_ERR_BAD_TEMPLATE] = "bad_template",
	[NM_DECODE_ERR_TEMPLATE_LIMIT] = "template_limit",
	[NM_DECODE_ERR_UNSUPPORTED] = "unsupported",
	[NM_DECODE_ERR_BAD_ADDRESS] = "bad_address",
	[NM_DECODE_ERR_BAD_PACKET] = "bad_packet",
};

const char *
nm_decode_err_name(enum nm_decode_err err)
{
	if ((unsigned int)err >= NM_DECODE_ERR_MAX || err_names[err] == NULL)
		return "invalid";
	return err_names[err];
}
