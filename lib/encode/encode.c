/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * FlowMessage encoders. Both run once per exported row on the flusher, so they are written by
 * hand: no allocation, no descriptor walk, one pass over the record. When the caller's buffer
 * holds the worst case they write straight into it; otherwise they encode into a stack scratch
 * buffer and copy only if the result fits, so a short buffer is never written to.
 */
#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

#include "encode.h"
#include "../agg/agg.h"

#if defined(__BMI2__) || defined(__AVX2__)
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- protobuf */

enum { PB_VARINT = 0, PB_LEN = 2 };

static inline uint8_t *
pb_varint(uint8_t *p, uint64_t v)
{
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

/* Tags are compile-time constants: one byte for fields 1-15, two for 16-2047. */
static inline uint8_t *
pb_tag(uint8_t *p, unsigned int field, unsigned int wt)
{
	return pb_varint(p, ((uint64_t)field << 3) | wt);
}

static inline uint8_t *
pb_uint(uint8_t *p, unsigned int field, uint64_t v)
{
	if (v == 0)
		return p; /* proto3: a zero scalar is the default and is not sent */
	p = pb_tag(p, field, PB_VARINT);
	return pb_varint(p, v);
}

/*
 * Addresses are always sent, all 16 bytes, even when they are :: (see encode.h): a ClickHouse
 * FixedString(16)/IPv6 column then never sees an empty value, and every row has the same shape.
 */
static inline uint8_t *
pb_addr(uint8_t *p, unsigned int field, const uint8_t addr[NM_ADDR_LEN])
{
	p = pb_tag(p, field, PB_LEN);
	*p++ = NM_ADDR_LEN;
	memcpy(p, addr, NM_ADDR_LEN);
	return p + NM_ADDR_LEN;
}

/*
 * NetFlow v5 (and some v9/IPFIX templates) always carry a next hop and say "none" with 0.0.0.0,
 * which the decoders store as ::ffff:0.0.0.0. NetMeta's view turns an empty next hop into :: and
 * its dashboards filter NextHop != '::'; ::ffff:0.0.0.0 would show as a fake next hop. So an
 * absent next hop leaves the engine as ::, in both encodings.
 */
static const uint8_t *
next_hop(const struct nm_flow_key *k)
{
	static const uint8_t zero[NM_ADDR_LEN];
	static const uint8_t v4_zero[NM_ADDR_LEN] = {[10] = 0xff, [11] = 0xff};

	return memcmp(k->next_hop, v4_zero, NM_ADDR_LEN) == 0 ? zero : k->next_hop;
}

/* The FlowMessage body (no length prefix), in field-number order. dst holds NM_ENCODE_PB_MAX. */
static size_t
pb_body(const struct nm_flow_rec *rec, uint64_t flows, uint8_t *dst)
{
	const struct nm_flow_key *k = &rec->key;
	uint8_t *p = dst;

	p = pb_uint(p, 1, k->type);
	p = pb_uint(p, 2, k->time_received);
	p = pb_uint(p, 3, k->sampling_rate);
	p = pb_uint(p, 4, k->sequence_num);
	p = pb_uint(p, 5, k->time_flow_end);
	p = pb_addr(p, 6, k->src_addr);
	p = pb_addr(p, 7, k->dst_addr);
	p = pb_uint(p, 9, rec->bytes);
	p = pb_uint(p, 10, rec->packets);
	p = pb_addr(p, 11, k->sampler_addr);
	p = pb_addr(p, 12, next_hop(k));
	p = pb_uint(p, 13, k->next_hop_as);
	p = pb_uint(p, 14, k->src_as);
	p = pb_uint(p, 15, k->dst_as);
	p = pb_uint(p, 16, k->src_net);
	p = pb_uint(p, 17, k->dst_net);
	p = pb_uint(p, 18, k->in_if);
	p = pb_uint(p, 19, k->out_if);
	p = pb_uint(p, 20, k->proto);
	p = pb_uint(p, 21, k->src_port);
	p = pb_uint(p, 22, k->dst_port);
	p = pb_uint(p, 23, k->ip_tos);
	p = pb_uint(p, 24, k->forwarding_status);
	p = pb_uint(p, 25, k->ip_ttl);
	p = pb_uint(p, 26, k->tcp_flags);
	/*
	 * Runs of fields that are zero in most rows (flow exports carry no MACs, VLANs, ICMP,
	 * fragments, VRFs or MPLS) are tested as one OR and skipped whole: zero fields are not
	 * written anyway, so the bytes are the same, and a row pays one branch per run instead of
	 * one per field (pb_body was 12 % of the engine's CPU, perf at 3.56 M IPFIX rows).
	 */
	if ((k->src_mac | k->dst_mac | k->vlan_id) != 0) {
		p = pb_uint(p, 27, k->src_mac);
		p = pb_uint(p, 28, k->dst_mac);
		p = pb_uint(p, 29, k->vlan_id);
	}
	p = pb_uint(p, 30, k->etype);
	if ((k->icmp_type | k->icmp_code | k->src_vlan | k->dst_vlan | k->fragment_id |
	     k->fragment_offset | k->ipv6_flow_label) != 0) {
		p = pb_uint(p, 31, k->icmp_type);
		p = pb_uint(p, 32, k->icmp_code);
		p = pb_uint(p, 33, k->src_vlan);
		p = pb_uint(p, 34, k->dst_vlan);
		p = pb_uint(p, 35, k->fragment_id);
		p = pb_uint(p, 36, k->fragment_offset);
		p = pb_uint(p, 37, k->ipv6_flow_label);
	}
	p = pb_uint(p, 38, k->time_flow_start);
	if ((k->ingress_vrf_id | k->egress_vrf_id | k->bi_flow_direction | k->flow_direction) !=
	    0) {
		p = pb_uint(p, 39, k->ingress_vrf_id);
		p = pb_uint(p, 40, k->egress_vrf_id);
		p = pb_uint(p, 41, k->bi_flow_direction);
		p = pb_uint(p, 42, k->flow_direction);
	}
	if ((k->mpls_count | k->mpls_ttl[0] | k->mpls_label[0] | k->mpls_ttl[1] | k->mpls_label[1] |
	     k->mpls_ttl[2] | k->mpls_label[2] | k->mpls_last_ttl | k->mpls_last_label) != 0) {
		p = pb_uint(p, 53, k->mpls_count > 0);
		p = pb_uint(p, 54, k->mpls_count);
		p = pb_uint(p, 55, k->mpls_ttl[0]);
		p = pb_uint(p, 56, k->mpls_label[0]);
		p = pb_uint(p, 57, k->mpls_ttl[1]);
		p = pb_uint(p, 58, k->mpls_label[1]);
		p = pb_uint(p, 59, k->mpls_ttl[2]);
		p = pb_uint(p, 60, k->mpls_label[2]);
		p = pb_uint(p, 61, k->mpls_last_ttl);
		p = pb_uint(p, 62, k->mpls_last_label);
	}
	p = pb_uint(p, 70, k->observation_domain_id);
	p = pb_uint(p, 2000, flows);
	return (size_t)(p - dst);
}

/* The body is always shorter than 16384 bytes, so the prefix is one or two bytes. */
_Static_assert(NM_ENCODE_PB_MAX - 2 < 16384, "length prefix must fit two bytes");

size_t
nm_encode_pb(const struct nm_flow_rec *rec, uint64_t flows, uint8_t *buf, size_t cap)
{
	uint8_t scratch[NM_ENCODE_PB_MAX];
	size_t n, pfx;

	if (cap >= NM_ENCODE_PB_MAX) {
		/* Common case: room for the worst case. Encode after a two-byte prefix slot. */
		n = pb_body(rec, flows, buf + 2);
		if (n < 0x80) {
			memmove(buf + 1, buf + 2, n);
			buf[0] = (uint8_t)n;
			return n + 1;
		}
		buf[0] = (uint8_t)(n | 0x80);
		buf[1] = (uint8_t)(n >> 7);
		return n + 2;
	}
	n = pb_body(rec, flows, scratch);
	pfx = n < 0x80 ? 1 : 2;
	if (pfx + n > cap)
		return 0;
	(void)pb_varint(buf, n);
	memcpy(buf + pfx, scratch, n);
	return pfx + n;
}

/* ------------------------------------------------- protobuf from a compact row */

/*
 * The flusher's encoder (nm_encode_pb_row): the same bytes as pb_body, from the table's compact
 * key. The old path decoded every entry into a struct nm_flow_rec (memset and scatter of 216
 * bytes) and pb_body then loaded and tested every field. Here the key's non-zero words are
 * scattered into a zeroed word array, the compact header (which words are non-zero) gates whole
 * runs of fields with one test of a register against a constant, and varints are written
 * without a loop. pb_body stays as it is: it encodes records that never were in a table, and
 * tests/unit/test_encode.c holds the two to the same bytes.
 */

/* Field f's word and its header bit(s); a 64-bit field spans two words. */
#define KW(f) (offsetof(struct nm_flow_key, f) / 4)
#define KB(f) (UINT64_C(1) << KW(f))
#define KB64(f) (UINT64_C(3) << KW(f))

/* The key's bytes, as struct nm_flow_key lays them out; 224 so that it is whole 32-byte rows. */
union key_words {
	uint32_t w[56];
	uint8_t b[224];
};

_Static_assert(sizeof(struct nm_flow_key) <= sizeof(union key_words), "key words");

/* A field of the expanded key by its size; the switch folds away (sizes are constants). */
static inline uint64_t
kv(const uint8_t *b, size_t n)
{
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	switch (n) {
	case 1:
		return *b;
	case 2:
		memcpy(&v16, b, 2);
		return v16;
	case 4:
		memcpy(&v32, b, 4);
		return v32;
	default:
		memcpy(&v64, b, 8);
		return v64;
	}
}

#define KV(f) kv(k.b + offsetof(struct nm_flow_key, f), sizeof(((struct nm_flow_key *)0)->f))

/*
 * A varint in one 8-byte store (pdep spreads 7 bits a byte, the continuation bits are a shifted
 * constant) for values below 2^56: p must have 8 bytes of room, which the callers' buffers have
 * (NM_ENCODE_PB_MAX is far above a body's maximum, test_encode checks the margin).
 */
static inline uint8_t *
pb_varint8(uint8_t *p, uint64_t v)
{
#if defined(__BMI2__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	if (v < 0x80) {
		*p = (uint8_t)v;
		return p + 1;
	}
	if (v < (UINT64_C(1) << 56)) {
		/* The highest non-zero byte of the spread value is the varint's last. */
		uint64_t x = _pdep_u64(v, 0x7f7f7f7f7f7f7f7fULL);
		unsigned int last = (unsigned int)(63 - __builtin_clzll(x)) >> 3;

		x |= _bzhi_u64(0x8080808080808080ULL, 8 * last);
		memcpy(p, &x, 8);
		return p + last + 1;
	}
#endif
	return pb_varint(p, v);
}

/* A byte's varint, one or two bytes, in one 16-bit store (p has the room, see pb_varint8). */
static inline uint8_t *
pb_varint_byte(uint8_t *p, uint8_t v)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	uint16_t x = v < 0x80 ? v : (uint16_t)(v | 0x100);

	memcpy(p, &x, 2);
	return p + 1 + (v >> 7);
#else
	return pb_varint(p, v);
#endif
}

static inline uint8_t *
pb_byte(uint8_t *p, unsigned int field, uint8_t v)
{
	if (v == 0)
		return p;
	p = pb_tag(p, field, PB_VARINT);
	return pb_varint_byte(p, v);
}

static inline uint8_t *
pb_u8(uint8_t *p, unsigned int field, uint64_t v)
{
	if (v == 0)
		return p;
	p = pb_tag(p, field, PB_VARINT);
	return pb_varint8(p, v);
}

/*
 * Field f of the expanded key as field number n: a byte in one 16-bit store, wider fields by
 * pb_varint8 (the loop of pb_varint costs a compare and a branch per byte).
 */
#define PBK(p, n, f)                                                                               \
	(sizeof(((struct nm_flow_key *)0)->f) == 1 ? pb_byte((p), (n), (uint8_t)KV(f))             \
						   : pb_u8((p), (n), KV(f)))

/* Room a body needs beyond its bytes: pb_varint8's 8-byte store. */
#define PB_ROW_SLACK 8

/*
 * The compact key's words back in their places, zeros elsewhere. With AVX2 and BMI2, eight words
 * at a time: the group's present words are loaded (a masked load, so nothing past the key is
 * read) and moved to their lanes by a permutation computed with pdep, no loop and no branch per
 * word: the scalar loop's exit mispredicted on every key (perf: a fifth of pb_body_row).
 */
static inline void
key_expand(union key_words *k, uint64_t hdr, const uint8_t *src)
{
#if defined(__AVX2__) && defined(__BMI2__)
	unsigned int g;

	for (g = 0; g < sizeof(k->w) / 32; g++) {
		uint64_t m = (hdr >> (8 * g)) & 0xff;
		unsigned int cnt = (unsigned int)__builtin_popcountll(m);
		uint64_t lanes = _pdep_u64(m, 0x0101010101010101ULL) * 0xff;
		uint64_t idx = _pdep_u64(0x0706050403020100ULL, lanes);
		__m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)idx));
		__m256i keep = _mm256_cvtepi8_epi32(_mm_cvtsi64_si128((long long)lanes));
		__m256i load = _mm256_cvtepi8_epi32(
			_mm_cvtsi64_si128((long long)_bzhi_u64(~UINT64_C(0), 8 * cnt)));
		__m256i v = _mm256_maskload_epi32((const int *)(const void *)src, load);

		v = _mm256_and_si256(_mm256_permutevar8x32_epi32(v, perm), keep);
		_mm256_store_si256((__m256i *)(void *)&k->w[8 * g], v);
		src += 4 * cnt;
	}
#else
	uint64_t m = hdr & ((UINT64_C(1) << NM_AGG_CK_WORDS) - 1);

	memset(k, 0, sizeof(*k));
	while (m != 0) {
		memcpy(&k->w[__builtin_ctzll(m)], src, 4);
		src += 4;
		m &= m - 1;
	}
#endif
}

static size_t
pb_body_row(const struct nm_agg_row *row, uint8_t *dst)
{
	static const uint8_t v4[4] = {0, 0, 0xff, 0xff};
	union key_words k __attribute__((aligned(32)));
	const uint64_t hdr = row->ck[0];
	const uint8_t *src = (const uint8_t *)(row->ck + 1);
	uint32_t v4w;
	uint8_t *p = dst;

	key_expand(&k, hdr, src);
	/*
	 * IPv4-mapped addresses get their 00 00 ff ff word back. Not the next hop's when its
	 * IPv4 address is 0.0.0.0: that is NetFlow's "none", sent as :: (see next_hop()).
	 */
	memcpy(&v4w, v4, 4);
	if (hdr & (UINT64_C(1) << (NM_AGG_CK_V4_SHIFT + NM_AGG_CK_ADDR_SAMPLER)))
		k.w[KW(sampler_addr) + 2] = v4w;
	if (hdr & (UINT64_C(1) << (NM_AGG_CK_V4_SHIFT + NM_AGG_CK_ADDR_SRC)))
		k.w[KW(src_addr) + 2] = v4w;
	if (hdr & (UINT64_C(1) << (NM_AGG_CK_V4_SHIFT + NM_AGG_CK_ADDR_DST)))
		k.w[KW(dst_addr) + 2] = v4w;
	if ((hdr & (UINT64_C(1) << (NM_AGG_CK_V4_SHIFT + NM_AGG_CK_ADDR_NEXT_HOP))) &&
	    (hdr & (UINT64_C(1) << (KW(next_hop) + 3))))
		k.w[KW(next_hop) + 2] = v4w;

	p = PBK(p, 1, type);
	p = PBK(p, 2, time_received);
	if (hdr & KB64(sampling_rate))
		p = PBK(p, 3, sampling_rate);
	p = PBK(p, 4, sequence_num);
	p = PBK(p, 5, time_flow_end);
	p = pb_addr(p, 6, k.b + offsetof(struct nm_flow_key, src_addr));
	p = pb_addr(p, 7, k.b + offsetof(struct nm_flow_key, dst_addr));
	p = pb_u8(p, 9, row->bytes);
	p = pb_u8(p, 10, row->packets);
	p = pb_addr(p, 11, k.b + offsetof(struct nm_flow_key, sampler_addr));
	p = pb_addr(p, 12, k.b + offsetof(struct nm_flow_key, next_hop));
	if (hdr & (KB(next_hop_as) | KB(src_as) | KB(dst_as))) {
		p = PBK(p, 13, next_hop_as);
		p = PBK(p, 14, src_as);
		p = PBK(p, 15, dst_as);
	}
	p = PBK(p, 16, src_net);
	p = PBK(p, 17, dst_net);
	if (hdr & (KB(in_if) | KB(out_if))) {
		p = PBK(p, 18, in_if);
		p = PBK(p, 19, out_if);
	}
	p = PBK(p, 20, proto);
	p = PBK(p, 21, src_port);
	p = PBK(p, 22, dst_port);
	p = PBK(p, 23, ip_tos);
	p = PBK(p, 24, forwarding_status);
	p = PBK(p, 25, ip_ttl);
	p = PBK(p, 26, tcp_flags);
	if (hdr & (KB64(src_mac) | KB64(dst_mac) | KB(vlan_id))) {
		p = PBK(p, 27, src_mac);
		p = PBK(p, 28, dst_mac);
		p = PBK(p, 29, vlan_id);
	}
	p = PBK(p, 30, etype);
	if ((hdr & (KB(src_vlan) | KB(dst_vlan) | KB(fragment_id) | KB(fragment_offset) |
		    KB(ipv6_flow_label))) != 0 ||
	    (KV(icmp_type) | KV(icmp_code)) != 0) {
		p = PBK(p, 31, icmp_type);
		p = PBK(p, 32, icmp_code);
		p = PBK(p, 33, src_vlan);
		p = PBK(p, 34, dst_vlan);
		p = PBK(p, 35, fragment_id);
		p = PBK(p, 36, fragment_offset);
		p = PBK(p, 37, ipv6_flow_label);
	}
	p = PBK(p, 38, time_flow_start);
	if ((hdr & (KB(ingress_vrf_id) | KB(egress_vrf_id))) != 0 ||
	    (KV(bi_flow_direction) | KV(flow_direction)) != 0) {
		p = PBK(p, 39, ingress_vrf_id);
		p = PBK(p, 40, egress_vrf_id);
		p = PBK(p, 41, bi_flow_direction);
		p = PBK(p, 42, flow_direction);
	}
	if ((hdr & (KB(mpls_label[0]) | KB(mpls_label[1]) | KB(mpls_label[2]) |
		    KB(mpls_last_label) | KB(mpls_ttl[1]))) != 0 ||
	    (KV(mpls_count) | KV(mpls_ttl[0])) != 0) {
		p = pb_u8(p, 53, KV(mpls_count) > 0);
		p = PBK(p, 54, mpls_count);
		p = PBK(p, 55, mpls_ttl[0]);
		p = PBK(p, 56, mpls_label[0]);
		p = PBK(p, 57, mpls_ttl[1]);
		p = PBK(p, 58, mpls_label[1]);
		p = PBK(p, 59, mpls_ttl[2]);
		p = PBK(p, 60, mpls_label[2]);
		p = PBK(p, 61, mpls_last_ttl);
		p = PBK(p, 62, mpls_last_label);
	}
	p = PBK(p, 70, observation_domain_id);
	p = pb_u8(p, 2000, row->flows);
	return (size_t)(p - dst);
}

/* mpls_ttl[1], [2] and mpls_last_ttl share one word: the gate above tests it once. */
_Static_assert(KW(mpls_ttl[1]) == KW(mpls_ttl[2]) && KW(mpls_ttl[1]) == KW(mpls_last_ttl),
	       "MPLS TTL word");

size_t
nm_encode_pb_row(const struct nm_agg_row *row, uint8_t *buf, size_t cap)
{
	uint8_t scratch[NM_ENCODE_PB_MAX];
	size_t n, pfx;

	if (cap >= NM_ENCODE_PB_MAX) {
		n = pb_body_row(row, buf + 2);
		if (n < 0x80) {
#ifdef __AVX2__
			/* Under 128 bytes: four loads, then four stores (no memmove call). */
			__m256i a = _mm256_loadu_si256((const __m256i *)(const void *)(buf + 2));
			__m256i b = _mm256_loadu_si256((const __m256i *)(const void *)(buf + 34));
			__m256i c = _mm256_loadu_si256((const __m256i *)(const void *)(buf + 66));
			__m256i d = _mm256_loadu_si256((const __m256i *)(const void *)(buf + 98));

			_mm256_storeu_si256((__m256i *)(void *)(buf + 1), a);
			_mm256_storeu_si256((__m256i *)(void *)(buf + 33), b);
			_mm256_storeu_si256((__m256i *)(void *)(buf + 65), c);
			_mm256_storeu_si256((__m256i *)(void *)(buf + 97), d);
#else
			memmove(buf + 1, buf + 2, n);
#endif
			buf[0] = (uint8_t)n;
			return n + 1;
		}
		buf[0] = (uint8_t)(n | 0x80);
		buf[1] = (uint8_t)(n >> 7);
		return n + 2;
	}
	n = pb_body_row(row, scratch);
	pfx = n < 0x80 ? 1 : 2;
	if (pfx + n > cap)
		return 0;
	(void)pb_varint(buf, n);
	memcpy(buf + pfx, scratch, n);
	return pfx + n;
}

/* -------------------------------------------------------------------- JSON */

static inline char *
js_u64(char *p, uint64_t v)
{
	char tmp[20];
	int i = 0;

	do {
		tmp[i++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	while (i > 0)
		*p++ = tmp[--i];
	return p;
}

/* Append a literal (a key with its quotes, colon and separator) known at compile time. */
#define JS_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

#define JS_NUM(p, name, v) js_u64(JS_LIT(p, ",\"" name "\":"), (v))

/*
 * Address text as inet_ntop(AF_INET6) writes it. IPv4-mapped addresses (nearly every row) and ::
 * take a fast path that gives the same text; the rest go to inet_ntop.
 */
static char *
js_addr(char *p, const uint8_t a[NM_ADDR_LEN])
{
	static const uint8_t zero[NM_ADDR_LEN];
	int i;

	*p++ = '"';
	if (nm_addr_is_v4(a)) {
		p = JS_LIT(p, "::ffff:");
		for (i = 12; i < 16; i++) {
			p = js_u64(p, a[i]);
			*p++ = i < 15 ? '.' : '"';
		}
		return p;
	}
	if (memcmp(a, zero, NM_ADDR_LEN) == 0) {
		p = JS_LIT(p, "::");
	} else if (inet_ntop(AF_INET6, a, p, INET6_ADDRSTRLEN) != NULL) {
		p += strlen(p);
	}
	*p++ = '"';
	return p;
}

#define JS_ADDR(p, name, a) js_addr(JS_LIT(p, ",\"" name "\":"), (a))

/* One JSON object and '\n'. dst holds NM_ENCODE_JSON_MAX. */
static size_t
js_row(const struct nm_flow_rec *rec, uint64_t flows, char *dst)
{
	const struct nm_flow_key *k = &rec->key;
	char *p = dst;

	/* Keys in proto/flow.proto's order. */
	p = js_u64(JS_LIT(p, "{\"Type\":"), k->type);
	p = JS_NUM(p, "TimeReceived", k->time_received);
	p = JS_NUM(p, "SequenceNum", k->sequence_num);
	p = JS_NUM(p, "SamplingRate", k->sampling_rate);
	p = JS_NUM(p, "FlowDirection", k->flow_direction);
	p = JS_ADDR(p, "SamplerAddress", k->sampler_addr);
	p = JS_NUM(p, "TimeFlowStart", k->time_flow_start);
	p = JS_NUM(p, "TimeFlowEnd", k->time_flow_end);
	p = JS_NUM(p, "Bytes", rec->bytes);
	p = JS_NUM(p, "Packets", rec->packets);
	p = JS_ADDR(p, "SrcAddr", k->src_addr);
	p = JS_ADDR(p, "DstAddr", k->dst_addr);
	p = JS_NUM(p, "Etype", k->etype);
	p = JS_NUM(p, "Proto", k->proto);
	p = JS_NUM(p, "SrcPort", k->src_port);
	p = JS_NUM(p, "DstPort", k->dst_port);
	p = JS_NUM(p, "InIf", k->in_if);
	p = JS_NUM(p, "OutIf", k->out_if);
	p = JS_NUM(p, "SrcMac", k->src_mac);
	p = JS_NUM(p, "DstMac", k->dst_mac);
	p = JS_NUM(p, "SrcVlan", k->src_vlan);
	p = JS_NUM(p, "DstVlan", k->dst_vlan);
	p = JS_NUM(p, "VlanId", k->vlan_id);
	p = JS_NUM(p, "IngressVrfID", k->ingress_vrf_id);
	p = JS_NUM(p, "EgressVrfID", k->egress_vrf_id);
	p = JS_NUM(p, "IPTos", k->ip_tos);
	p = JS_NUM(p, "ForwardingStatus", k->forwarding_status);
	p = JS_NUM(p, "IPTTL", k->ip_ttl);
	p = JS_NUM(p, "TCPFlags", k->tcp_flags);
	p = JS_NUM(p, "IcmpType", k->icmp_type);
	p = JS_NUM(p, "IcmpCode", k->icmp_code);
	p = JS_NUM(p, "IPv6FlowLabel", k->ipv6_flow_label);
	p = JS_NUM(p, "FragmentId", k->fragment_id);
	p = JS_NUM(p, "FragmentOffset", k->fragment_offset);
	p = JS_NUM(p, "BiFlowDirection", k->bi_flow_direction);
	p = JS_NUM(p, "SrcAS", k->src_as);
	p = JS_NUM(p, "DstAS", k->dst_as);
	p = JS_ADDR(p, "NextHop", next_hop(k));
	p = JS_NUM(p, "NextHopAS", k->next_hop_as);
	p = JS_NUM(p, "SrcNet", k->src_net);
	p = JS_NUM(p, "DstNet", k->dst_net);
	/* 0/1, not true/false: ClickHouse 18.16 JSONEachRow reads numbers into UInt8. */
	p = JS_NUM(p, "HasMPLS", k->mpls_count > 0);
	p = JS_NUM(p, "MPLSCount", k->mpls_count);
	p = JS_NUM(p, "MPLS1TTL", k->mpls_ttl[0]);
	p = JS_NUM(p, "MPLS1Label", k->mpls_label[0]);
	p = JS_NUM(p, "MPLS2TTL", k->mpls_ttl[1]);
	p = JS_NUM(p, "MPLS2Label", k->mpls_label[1]);
	p = JS_NUM(p, "MPLS3TTL", k->mpls_ttl[2]);
	p = JS_NUM(p, "MPLS3Label", k->mpls_label[2]);
	p = JS_NUM(p, "MPLSLastTTL", k->mpls_last_ttl);
	p = JS_NUM(p, "MPLSLastLabel", k->mpls_last_label);
	p = JS_NUM(p, "ObservationDomainID", k->observation_domain_id);
	p = JS_NUM(p, "Flows", flows);
	p = JS_LIT(p, "}\n");
	return (size_t)(p - dst);
}

size_t
nm_encode_json(const struct nm_flow_rec *rec, uint64_t flows, char *buf, size_t cap)
{
	char scratch[NM_ENCODE_JSON_MAX];
	size_t n;

	if (cap >= NM_ENCODE_JSON_MAX)
		return js_row(rec, flows, buf);
	n = js_row(rec, flows, scratch);
	if (n > cap)
		return 0;
	memcpy(buf, scratch, n);
	return n;
}
