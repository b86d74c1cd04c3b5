/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_ENCODE_H
#define NM_ENCODE_H

/*
 * FlowMessage encodings of a record: protobuf (proto/flow.proto, length-delimited, as ClickHouse's
 * "Protobuf" format and NetMeta's collector write it) and JSON (one JSONEachRow line, keys are the
 * FlowMessage field names). Reentrant, no allocation.
 */

#include <stddef.h>
#include <stdint.h>

#include "../flow/flow.h"

/* Upper bound of one encoded record in either format, for sizing buffers. */
#define NM_ENCODE_MAX 1024

/*
 * Append one record as a varint length prefix followed by the FlowMessage bytes (proto3: fields
 * equal to zero are omitted; HasMPLS is written when mpls_count > 0). Returns the bytes written,
 * or 0 when cap is too small (nothing is written then).
 */
size_t nm_encode_pb(const struct nm_flow_rec *rec, uint8_t *buf, size_t cap);

/*
 * Append one record as a JSON object and a newline. Every field is present; addresses are text
 * (IPv4 as ::ffff:a.b.c.d so that ClickHouse's IPv6StringToNum reads every address), Type is the
 * enum's number. Returns the bytes written, or 0 when cap is too small.
 */
size_t nm_encode_json(const struct nm_flow_rec *rec, char *buf, size_t cap);

#endif /* NM_ENCODE_H */
