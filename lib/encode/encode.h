/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_ENCODE_H
#define NM_ENCODE_H

/*
 * FlowMessage encodings of a record: protobuf (proto/flow.proto, length-delimited, as ClickHouse's
 * "Protobuf" format and NetMeta's collector write it) and JSON (one JSONEachRow line, keys are the
 * FlowMessage field names). Reentrant, no allocation, no locks: any thread may call them.
 */

#include <stddef.h>
#include <stdint.h>

#include "../flow/flow.h"

/*
 * Upper bounds of one encoded record (prefix and newline included), for sizing buffers. Checked by
 * tests/unit/test_encode.c with every field at its maximum. A JSON row with every field set is
 * about 1.1 kB; the worst case is about 1.3 kB.
 */
#define NM_ENCODE_PB_MAX 512
#define NM_ENCODE_JSON_MAX 2048
#define NM_ENCODE_MAX 2048 /* the larger of the two */

/*
 * Append one record as a varint length prefix followed by the FlowMessage bytes. Scalars follow
 * proto3: a field equal to zero is omitted. The four address fields (SrcAddr 6, DstAddr 7,
 * SamplerAddress 11, NextHop 12) are always written, 16 bytes each, even when they are :: -- a
 * ClickHouse FixedString(16)/IPv6 column wants 16 bytes, and consumers never have to tell an
 * absent address from ::. A next hop of ::ffff:0.0.0.0 (NetFlow's "none") is written as ::, as
 * NetMeta's view stores an absent one. HasMPLS (53) is true when mpls_count > 0; MPLS1..3 come
 * from mpls_label[0..2] and mpls_ttl[0..2]. flows is the number of records merged into this row
 * (Flows, field 2000; >= 1 for every row the aggregation emits). Returns the bytes written, or 0
 * when cap is too small (buf is not touched then). cap >= NM_ENCODE_PB_MAX always suffices.
 */
size_t nm_encode_pb(const struct nm_flow_rec *rec, uint64_t flows, uint8_t *buf, size_t cap);

/*
 * nm_encode_pb() of a table entry as nm_agg_drain_rows() hands it (lib/agg/agg.h), encoded from
 * the compact key without building the record: the same bytes, cheaper (the flusher's path).
 * Same return value and buffer contract as nm_encode_pb(), except that with cap >=
 * NM_ENCODE_PB_MAX the bytes after the ones it reports, up to NM_ENCODE_PB_MAX, may be written
 * too (whole-word stores; the next row overwrites them).
 */
struct nm_agg_row;
size_t nm_encode_pb_row(const struct nm_agg_row *row, uint8_t *buf, size_t cap);

/*
 * Append one record as a JSON object and a newline (no NUL). Every field is present, keys in
 * proto/flow.proto's order; numbers are JSON numbers; addresses are text as inet_ntop(AF_INET6)
 * writes them (IPv4 as ::ffff:a.b.c.d so that ClickHouse's IPv6StringToNum reads every address,
 * :: when unset, NextHop :: also for ::ffff:0.0.0.0 as in nm_encode_pb); Type is the enum's
 * number; HasMPLS is 0 or 1 (ClickHouse 18.16's JSONEachRow reads that into UInt8); the last
 * key is Flows, the merged-records count. Returns the bytes written, or 0 when cap is too small
 * (buf is not touched then). cap >= NM_ENCODE_JSON_MAX always suffices.
 */
size_t nm_encode_json(const struct nm_flow_rec *rec, uint64_t flows, char *buf, size_t cap);

#endif /* NM_ENCODE_H */
