/* SPDX-License-Identifier: BSD-3-Clause */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>

#if defined(__AVX2__) || defined(__AES__)
#include <immintrin.h>
#endif

#include "agg.h"

/*
 * The canonical compact key. The 216-byte nm_flow_key is 54 32-bit words; a flow export record
 * sets 14-20 of them (v4 addresses are ::ffff:a.b.c.d, most optional fields are absent). The
 * compact form is a 64-bit header, bits 0-53 saying which words are non-zero and bits 56-59
 * which of the four addresses are IPv4-mapped (their ::ffff: word is then left out too), and the
 * non-zero words in order. It is a bijection of the full key, so equality of compact keys is
 * equality of keys, and the flusher gets the full key back.
 */
#define KEY_UNITS (sizeof(struct nm_flow_key) / 4)
#define UNIT_MASK ((UINT64_C(1) << KEY_UNITS) - 1)
#define V4_SHIFT 56
/* 8 + 216 bytes, and room for the 32-byte stores past the end (agg.h: tests see it too). */
#define CKEY_BUF NM_AGG_CKEY_BUF
#define AGG_BURST 32 /* records hashed and prefetched ahead of their updates */
#define likely_(x) __builtin_expect(!!(x), 1)

_Static_assert(KEY_UNITS == 54 && sizeof(struct nm_flow_key) % 4 == 0, "key layout");
_Static_assert(KEY_UNITS == NM_AGG_CK_WORDS && V4_SHIFT == NM_AGG_CK_V4_SHIFT,
	       "agg.h's compact form");

/*
 * The split of NM_AGG_BYTES_PER_FLOW: 1.5 index slots of 8 bytes (linear probing stays short at
 * a load of 2/3), 2 bytes for the overflow reserve (1/64 of the flows, 108 bytes each), and the
 * rest, 114 bytes on average, for the entry: 24 bytes of counters and the compact key padded to
 * 8 bytes (an IPv4 flow export record's takes 64-88; IPv6 ones more, and a table of those folds
 * before max_flows keys, counted as folded like any overflow).
 */
#define SLOTS_NUM 3
#define SLOTS_DEN 2
#define ARENA_PER_FLOW (NM_AGG_BYTES_PER_FLOW - 8 * SLOTS_NUM / SLOTS_DEN - 2)
/* An overflow key has at most 16 non-zero words (second, rate, exporter, domain, ifs, ...). */
#define OVERFLOW_ENTRY_MAX (24 + 8 + 16 * 4)

/* 32-bit word of an address that holds bytes 00 00 ff ff when the address is IPv4-mapped. */
static inline uint32_t
v4_word(void)
{
	static const uint8_t b[4] = {0, 0, 0xff, 0xff};
	uint32_t u;

	memcpy(&u, b, 4);
	return u;
}

/* Word i of a key; memcpy, not a uint32_t lvalue over fields of other types (strict aliasing). */
static inline uint32_t
word_at(const struct nm_flow_key *k, unsigned int i)
{
	uint32_t u;

	memcpy(&u, (const uint8_t *)k + 4 * i, 4);
	return u;
}

static const unsigned int addr_unit[4] = {
	offsetof(struct nm_flow_key, sampler_addr) / 4,
	offsetof(struct nm_flow_key, src_addr) / 4,
	offsetof(struct nm_flow_key, dst_addr) / 4,
	offsetof(struct nm_flow_key, next_hop) / 4,
};

/* An entry in the arena: counters, then the compact key padded to 8 bytes. */
struct agg_entry {
	uint64_t bytes;
	uint64_t packets;
	uint64_t flows;
	uint64_t key[];
};

struct nm_agg_table {
	/*
	 * Index: linear probing, slot = (32 high bits of the hash) << 32 | entry offset / 8; 0 is
	 * empty (the arena's first 8 bytes are never an entry). More slots than entries, so a
	 * probe always ends.
	 */
	uint64_t *index;
	uint32_t nslots;
	unsigned int cap;   /* entries, overflow reserve included */
	unsigned int limit; /* entries ordinary keys may take */
	unsigned int used;  /* entries handed out since the last drain */
	uint8_t *arena;
	size_t arena_bytes;
	size_t arena_limit; /* bytes ordinary keys may take: the rest is for overflow keys */
	size_t arena_used;
	struct nm_agg_stats st;
	/* Burst scratch: compact keys, their lengths, hashes and index slots. */
	uint64_t ck[AGG_BURST][CKEY_BUF / 8] __attribute__((aligned(64)));
	uint32_t len[AGG_BURST];
	uint32_t slot[AGG_BURST];
	uint64_t h[AGG_BURST];
};

/*
 * The per-process hash key and, for AVX2, the compaction shuffles (a byte per lane, widened by
 * vpmovzxbd straight from memory: an 8-byte entry is one addressing mode, 2 KiB in all); set
 * once.
 */
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static uint64_t hash_key[16] __attribute__((aligned(32)));
#ifdef __AVX2__
static uint8_t perm_lut[256][8] __attribute__((aligned(64)));
#endif

static void
key_init(void)
{
	size_t got = 0;

	while (got < sizeof(hash_key)) {
		ssize_t r = getrandom((uint8_t *)hash_key + got, sizeof(hash_key) - got, 0);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < sizeof(hash_key)) {
		/* No getrandom (very old kernel): still a per-process key, if a guessable one. */
		struct timespec ts;
		uint64_t x;
		unsigned int i;

		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)&ts;
		for (i = 0; i < 16; i++) {
			x += 0x9e3779b97f4a7c15ULL;
			hash_key[i] = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
		}
	}
#ifdef __AVX2__
	for (unsigned int m = 0; m < 256; m++) {
		unsigned int k = 0, b;

		for (b = 0; b < 8; b++)
			if (m & (1u << b))
				perm_lut[m][k++] = b;
		while (k < 8)
			perm_lut[m][k++] = 0;
	}
#endif
}

/*
 * Bytes of the compact form the hash always reads, zero-padded: every key up to 96 bytes (an IPv4
 * flow export record takes 64-88, a mirror record 72) is hashed as exactly three 32-byte blocks
 * and compared as three, so a burst of keys of mixed lengths takes no mispredicted branch.
 */
#define CKEY_FIXED 96
_Static_assert(NM_AGG_CKEY_HASHED(CKEY_FIXED) == CKEY_FIXED, "agg.h's NM_AGG_CKEY_HASHED");

/*
 * Write k's compact form to out (CKEY_BUF bytes, 32-byte aligned) and return its length in bytes
 * (a multiple of 4). The bytes after it are zero up to CKEY_FIXED and up to the next 32-byte
 * boundary: the hash and the compare read whole 32-byte blocks.
 */
static inline __attribute__((always_inline)) uint32_t
ckey_encode(const struct nm_flow_key *k, uint64_t *out)
{
	uint64_t hdr;
	uint8_t *p = (uint8_t *)(out + 1);
#ifdef __AVX2__
	const uint32_t *u = (const uint32_t *)(const void *)k; /* vector loads only (may_alias) */
	const __m256i zero = _mm256_setzero_si256();
	const __m256i v4 = _mm256_set1_epi32((int)v4_word());
	__m256i v[7], z[7], lo, hi;
	uint64_t c;
	unsigned int g;

	/* Written out: as a loop, gcc 12 made the loads a memcpy() to the stack. */
	v[0] = _mm256_loadu_si256((const __m256i *)(const void *)u);
	v[1] = _mm256_loadu_si256((const __m256i *)(const void *)(u + 8));
	v[2] = _mm256_loadu_si256((const __m256i *)(const void *)(u + 16));
	v[3] = _mm256_loadu_si256((const __m256i *)(const void *)(u + 24));
	v[4] = _mm256_loadu_si256((const __m256i *)(const void *)(u + 32));
	v[5] = _mm256_loadu_si256((const __m256i *)(const void *)(u + 40));
	/* Words 48-53: no load past the key's end (lanes 6 and 7 are zero). */
	v[6] = _mm256_inserti128_si256(
		_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(const void *)(u + 48))),
		_mm_loadl_epi64((const __m128i *)(const void *)(u + 52)), 1);
	/*
	 * One bit per zero word, all 54 at once: the compare masks saturate to 16 and then 8 bits
	 * a word (packs work within 128-bit lanes, so the dwords come out as [w0-3 w8-11 w16-19
	 * w24-27 | w4-7 w12-15 w20-23 w28-31]; one vpermd restores the order), two movemasks.
	 * Bits 54-63 come out zero-word bits too (lanes 6-7 of v[6] and the all-ones filler).
	 */
	for (g = 0; g < 7; g++)
		z[g] = _mm256_cmpeq_epi32(v[g], zero);
	{
		const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);

		lo = _mm256_packs_epi16(_mm256_packs_epi32(z[0], z[1]),
					_mm256_packs_epi32(z[2], z[3]));
		hi = _mm256_packs_epi16(_mm256_packs_epi32(z[4], z[5]),
					_mm256_packs_epi32(z[6], _mm256_cmpeq_epi32(zero, zero)));
		lo = _mm256_permutevar8x32_epi32(lo, order);
		hi = _mm256_permutevar8x32_epi32(hi, order);
		hdr = ~((uint64_t)(uint32_t)_mm256_movemask_epi8(lo) |
			(uint64_t)(uint32_t)_mm256_movemask_epi8(hi) << 32);
	}
	/*
	 * IPv4-mapped addresses (words 12-27, four of them): words b and b+1 zero and word b+2
	 * 00 00 ff ff. c gets bit b+2 for each; the ::ffff: word is left out and the address'
	 * flag set in bits 56-59 (the multiply gathers bits 14, 18, 22, 26 into 9-12: no two
	 * partial products share a bit, so nothing carries).
	 */
	c = (uint64_t)(unsigned int)_mm256_movemask_ps(
		    _mm256_castsi256_ps(_mm256_cmpeq_epi32(v[1], v4)))
		    << 8 |
	    (uint64_t)(unsigned int)_mm256_movemask_ps(
		    _mm256_castsi256_ps(_mm256_cmpeq_epi32(v[2], v4)))
		    << 16 |
	    (uint64_t)(unsigned int)_mm256_movemask_ps(
		    _mm256_castsi256_ps(_mm256_cmpeq_epi32(v[3], v4)))
		    << 24;
	c &= ~hdr << 2 & ~hdr << 1 &
	     (UINT64_C(1) << 14 | UINT64_C(1) << 18 | UINT64_C(1) << 22 | UINT64_C(1) << 26);
	hdr = (hdr & ~c) | (((c >> 14) * 0x249) >> 9 & 0xf) << V4_SHIFT;
	out[0] = hdr;
	/* Zeros past the key up to CKEY_FIXED; the stores below overwrite what the key takes. */
	_mm256_store_si256((__m256i *)(void *)(out + 4), zero);
	_mm256_store_si256((__m256i *)(void *)(out + 8), zero);
	for (g = 0; g < 7; g++) {
		unsigned int m = ((const uint8_t *)out)[g];
		__m256i perm = _mm256_cvtepu8_epi32(
			_mm_loadl_epi64((const __m128i *)(const void *)perm_lut[m]));

		_mm256_storeu_si256((__m256i *)(void *)p, _mm256_permutevar8x32_epi32(v[g], perm));
		p += 4 * (size_t)__builtin_popcount(m);
	}
	_mm256_storeu_si256((__m256i *)(void *)p, zero);
#else
	const uint32_t v4 = v4_word();
	unsigned int i, a;

	hdr = 0;
	for (i = 0; i < KEY_UNITS; i++)
		hdr |= (uint64_t)(word_at(k, i) != 0) << i;
	for (a = 0; a < 4; a++) {
		unsigned int b = addr_unit[a];
		uint64_t c = (word_at(k, b) | word_at(k, b + 1)) == 0 && word_at(k, b + 2) == v4;

		hdr &= ~(c << (b + 2));
		hdr |= c << (V4_SHIFT + a);
	}
	memset(out, 0, CKEY_FIXED);
	out[0] = hdr;
	for (i = 0; i < KEY_UNITS; i++) {
		memcpy(p, (const uint8_t *)k + 4 * i, 4);
		p += 4 * ((hdr >> i) & 1);
	}
	memset(p, 0, 32);
#endif
	return (uint32_t)(p - (uint8_t *)out);
}

/* The full key back from its compact form. */
static void
ckey_decode(const uint64_t *ck, struct nm_flow_key *k)
{
	uint8_t *u = (uint8_t *)k;
	const uint8_t *p = (const uint8_t *)(ck + 1);
	const uint32_t v4 = v4_word();
	uint64_t hdr = ck[0], m = hdr & UNIT_MASK;
	unsigned int a;

	memset(k, 0, sizeof(*k));
	while (m != 0) {
		memcpy(u + 4 * __builtin_ctzll(m), p, 4);
		p += 4;
		m &= m - 1;
	}
	for (a = 0; a < 4; a++)
		if (hdr & (UINT64_C(1) << (V4_SHIFT + a)))
			memcpy(u + 4 * (addr_unit[a] + 2), &v4, 4);
}

static inline uint32_t
ckey_words(uint32_t len)
{
	return (len + 7) / 8;
}

static inline uint32_t
ckey_len_of(const uint64_t *ck)
{
	return 8 + 4 * (uint32_t)__builtin_popcountll(ck[0] & UNIT_MASK);
}

#if !defined(__AES__)
#define ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = ROTL(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = ROTL(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = ROTL(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = ROTL(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = ROTL(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = ROTL(v2, 32);                                                                 \
	} while (0)
#endif

/*
 * Keyed hash of a compact key (len bytes at ck, zero-padded as ckey_encode leaves it). The
 * compact form is a bijection of the key and its header fixes its length, so hashing it, padded
 * to whole 32-byte blocks and to at least CKEY_FIXED bytes, is hashing the key: a mirror record
 * or an IPv4 export record is three blocks instead of the full key's seven.
 *
 * With AES-NI: two lanes of 32 bytes (one VAES register each, or two 16-byte halves without
 * VAES: the same function), each block XORed into its lane's state and put through two AES
 * rounds with secret round keys, the lanes joined and finished with more rounds. Two rounds
 * between absorptions spread a difference in one byte over the whole state through key-dependent
 * S-box inputs, so keys with one hash value cannot be made without the process' random key, as
 * they could for the linear CRC32C lanes this replaced (tests/unit/test_agg.c). Not a proven PRF;
 * an attacker sees no hash values. Without AES-NI: SipHash-1-3 over the same bytes.
 *
 * The blocks are read from memory a pass after ckey_encode() wrote them (nm_agg_add_burst): read
 * right after the unaligned stores that wrote them, store forwarding failed on most loads.
 */
/* The hash key in registers: loaded once per burst, not once per key. */
struct hkey {
#if defined(__VAES__) && defined(__AVX2__)
	__m256i k[4];
#elif defined(__AES__)
	__m128i k[8]; /* the halves of the VAES function's four keys */
#else
	uint64_t k[2];
#endif
};

static inline __attribute__((always_inline)) struct hkey
hkey_load(void)
{
	struct hkey hk;
	unsigned int i;

#if defined(__VAES__) && defined(__AVX2__)
	for (i = 0; i < 4; i++)
		hk.k[i] = _mm256_load_si256((const __m256i *)(const void *)hash_key + i);
#elif defined(__AES__)
	for (i = 0; i < 8; i++)
		hk.k[i] = _mm_load_si128((const __m128i *)(const void *)hash_key + i);
#else
	for (i = 0; i < 2; i++)
		hk.k[i] = hash_key[i];
#endif
	return hk;
}

/* The hash of nb 32-byte blocks at ck (see ckey_hash). */
static inline __attribute__((always_inline)) uint64_t
ckey_hash_blocks(const struct hkey *hk, const uint64_t *ck, uint32_t nb)
{
	uint32_t i;
#if defined(__VAES__) && defined(__AVX2__)
	const __m256i k0 = hk->k[0], k1 = hk->k[1], k2 = hk->k[2], k3 = hk->k[3];
	const __m256i *b = (const __m256i *)(const void *)ck;
	__m256i x = k0, y = k1;
	__m128i r;

	for (i = 0; i + 2 <= nb; i += 2) {
		x = _mm256_aesenc_epi128(_mm256_xor_si256(x, _mm256_load_si256(b + i)), k2);
		y = _mm256_aesenc_epi128(_mm256_xor_si256(y, _mm256_load_si256(b + i + 1)), k3);
		x = _mm256_aesenc_epi128(x, k1);
		y = _mm256_aesenc_epi128(y, k0);
	}
	if (i < nb) {
		x = _mm256_aesenc_epi128(_mm256_xor_si256(x, _mm256_load_si256(b + i)), k2);
		x = _mm256_aesenc_epi128(x, k1);
	}
	x = _mm256_aesenc_epi128(x, y);
	r = _mm_aesenc_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
	r = _mm_aesenc_si128(r, _mm256_castsi256_si128(k3));
	r = _mm_aesenc_si128(r, _mm256_castsi256_si128(k0));
	return (uint64_t)_mm_cvtsi128_si64(r) ^ (uint64_t)_mm_extract_epi64(r, 1);
#elif defined(__AES__)
	const __m128i k0l = hk->k[0], k0h = hk->k[1], k1l = hk->k[2], k1h = hk->k[3];
	const __m128i k2l = hk->k[4], k2h = hk->k[5], k3l = hk->k[6], k3h = hk->k[7];
	const __m128i *b = (const __m128i *)(const void *)ck;
	__m128i xl = k0l, xh = k0h, yl = k1l, yh = k1h, r;

	for (i = 0; i + 2 <= nb; i += 2) {
		xl = _mm_aesenc_si128(_mm_xor_si128(xl, _mm_load_si128(b + 2 * i)), k2l);
		xh = _mm_aesenc_si128(_mm_xor_si128(xh, _mm_load_si128(b + 2 * i + 1)), k2h);
		yl = _mm_aesenc_si128(_mm_xor_si128(yl, _mm_load_si128(b + 2 * i + 2)), k3l);
		yh = _mm_aesenc_si128(_mm_xor_si128(yh, _mm_load_si128(b + 2 * i + 3)), k3h);
		xl = _mm_aesenc_si128(xl, k1l);
		xh = _mm_aesenc_si128(xh, k1h);
		yl = _mm_aesenc_si128(yl, k0l);
		yh = _mm_aesenc_si128(yh, k0h);
	}
	if (i < nb) {
		xl = _mm_aesenc_si128(_mm_xor_si128(xl, _mm_load_si128(b + 2 * i)), k2l);
		xh = _mm_aesenc_si128(_mm_xor_si128(xh, _mm_load_si128(b + 2 * i + 1)), k2h);
		xl = _mm_aesenc_si128(xl, k1l);
		xh = _mm_aesenc_si128(xh, k1h);
	}
	xl = _mm_aesenc_si128(xl, yl);
	xh = _mm_aesenc_si128(xh, yh);
	r = _mm_aesenc_si128(xl, xh);
	r = _mm_aesenc_si128(r, k3l);
	r = _mm_aesenc_si128(r, k0l);
	return (uint64_t)_mm_cvtsi128_si64(r) ^ (uint64_t)_mm_extract_epi64(r, 1);
#else
	uint64_t v0 = hk->k[0] ^ 0x736f6d6570736575ULL, v1 = hk->k[1] ^ 0x646f72616e646f6dULL;
	uint64_t v2 = hk->k[0] ^ 0x6c7967656e657261ULL, v3 = hk->k[1] ^ 0x7465646279746573ULL;

	for (i = 0; i < nb * 4; i++) {
		v3 ^= ck[i];
		SIPROUND;
		v0 ^= ck[i];
	}
	v3 ^= (uint64_t)(nb * 32) << 56;
	SIPROUND;
	v0 ^= (uint64_t)(nb * 32) << 56;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
#endif
}

/* Keys up to CKEY_FIXED bytes take the unrolled three-block path, without a branch per block. */
static inline __attribute__((always_inline)) uint64_t
ckey_hash(const struct hkey *hk, const uint64_t *ck, uint32_t len)
{
	if (likely_(len <= CKEY_FIXED))
		return ckey_hash_blocks(hk, ck, CKEY_FIXED / 32);
	return ckey_hash_blocks(hk, ck, (len + 31) / 32);
}

static inline uint32_t
slot_of(const struct nm_agg_table *t, uint64_t h)
{
	/* Multiply-shift range reduction: the slot count need not be a power of two. */
	return (uint32_t)(((uint64_t)(uint32_t)h * t->nslots) >> 32);
}

static inline struct agg_entry *
entry_at(const struct nm_agg_table *t, uint64_t slot)
{
	return (struct agg_entry *)(void *)(t->arena + ((slot & 0xffffffffu) << 3));
}

#ifdef __AVX2__
/* ones_then_zeros + CKEY_FIXED - len: a mask of the first len bytes of the first 96. */
static const uint8_t ones_then_zeros[2 * CKEY_FIXED] __attribute__((aligned(32))) = {
	[0 ... CKEY_FIXED - 1] = 0xff,
};
#endif

/*
 * Is the entry's compact key e the probe's ck (len bytes, zero-padded)? Keys up to CKEY_FIXED
 * bytes compare as three 32-byte blocks, the entry's bytes past len masked off (they belong to
 * the next entry: the arena has CKEY_FIXED bytes of slack so the last entry can be read so).
 */
static inline int
ckey_equal(const uint64_t *e, const uint64_t *ck, uint32_t len)
{
	uint64_t d = 0;
	uint32_t i, words;

#ifdef __AVX2__
	if (likely_(len <= CKEY_FIXED)) {
		const uint8_t *m = ones_then_zeros + CKEY_FIXED - len;
		const __m256i *a = (const __m256i *)(const void *)e;
		const __m256i *b = (const __m256i *)(const void *)ck;
		__m256i x;

		x = _mm256_xor_si256(_mm256_and_si256(_mm256_loadu_si256(a),
						      _mm256_loadu_si256((const __m256i *)m)),
				     _mm256_load_si256(b));
		x = _mm256_or_si256(
			x, _mm256_xor_si256(
				   _mm256_and_si256(_mm256_loadu_si256(a + 1),
						    _mm256_loadu_si256((const __m256i *)(m + 32))),
				   _mm256_load_si256(b + 1)));
		x = _mm256_or_si256(
			x, _mm256_xor_si256(
				   _mm256_and_si256(_mm256_loadu_si256(a + 2),
						    _mm256_loadu_si256((const __m256i *)(m + 64))),
				   _mm256_load_si256(b + 2)));
		return _mm256_testz_si256(x, x);
	}
#endif
	words = ckey_words(len);
	for (i = 0; i < words; i++)
		d |= e[i] ^ ck[i];
	return d == 0;
}

struct nm_agg_table *
nm_agg_table_create(const struct nm_agg_params *p)
{
	struct nm_agg_table *t;
	size_t slots;

	if (p == NULL || p->max_flows == 0 || p->max_flows > (1U << 28)) {
		errno = EINVAL;
		return NULL;
	}
	pthread_once(&key_once, key_init);
	t = aligned_alloc(64, sizeof(*t));
	if (t == NULL)
		return NULL;
	memset(t, 0, sizeof(*t));
	/* A small share is kept for overflow keys so that folding never fails. */
	t->limit = p->max_flows;
	t->cap = p->max_flows + p->max_flows / 64 + 16;
	slots = (size_t)t->cap * SLOTS_NUM / SLOTS_DEN + 1;
	t->nslots = (uint32_t)slots;
	t->arena_limit = 8 + (size_t)p->max_flows * ARENA_PER_FLOW;
	t->arena_bytes = t->arena_limit + (size_t)(t->cap - t->limit) * OVERFLOW_ENTRY_MAX;
	/*
	 * Touch every page now: calloc() of a large block maps zero pages lazily, and the RX lcore
	 * would take a page fault on the first entry of each page during its first busy seconds
	 * (clear_page in perf). Memory is committed at start-up, as the config sized it. The
	 * arena has CKEY_FIXED bytes of slack: ckey_equal() reads that far into the last entry.
	 */
	t->index = malloc(slots * sizeof(*t->index));
	t->arena = malloc(t->arena_bytes + CKEY_FIXED);
	if (t->index == NULL || t->arena == NULL) {
		free(t->index);
		free(t->arena);
		free(t);
		errno = ENOMEM;
		return NULL;
	}
	memset(t->index, 0, slots * sizeof(*t->index));
	memset(t->arena, 0, t->arena_bytes + CKEY_FIXED);
	t->arena_used = 8;
	return t;
}

void
nm_agg_table_free(struct nm_agg_table *t)
{
	if (t == NULL)
		return;
	free(t->index);
	free(t->arena);
	free(t);
}

static const struct nm_ctr_desc agg_desc[] = {
	NM_AGG_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct nm_agg_stats)};

const struct nm_ctr_set nm_agg_ctr_set =
	NM_CTR_SET("agg", "agg_", "per aggregation table, written by the worker that fills it",
		   SINGLE_WRITER, struct nm_agg_stats, agg_desc);

/* The table's counters are single-writer (lib/ctr): one helper for every update. */
static inline void
stat_add(uint64_t *c, uint64_t v)
{
	if (v != 0)
		nm_ctr_add(c, v);
}

/*
 * Find the compact key ck (len bytes, hash h, home slot i) or give it a new entry, within the
 * limits for ordinary keys (overflow == 0) or all of the table. NULL when full.
 */
static inline struct agg_entry *
lookup_or_add(struct nm_agg_table *t, const uint64_t *ck, uint32_t len, uint64_t h, uint32_t i,
	      int overflow, int *isnew)
{
	uint32_t words = ckey_words(len);
	uint64_t tag = h & ~UINT64_C(0xffffffff), s;
	struct agg_entry *e;
	size_t esize = sizeof(*e) + (size_t)words * 8;

	while ((s = t->index[i]) != 0) {
		if ((s & ~UINT64_C(0xffffffff)) == tag) {
			e = entry_at(t, s);
			if (ckey_equal(e->key, ck, len)) {
				*isnew = 0;
				return e;
			}
		}
		if (++i == t->nslots)
			i = 0;
	}
	if (overflow ? (t->used >= t->cap || t->arena_used + esize > t->arena_bytes)
		     : (t->used >= t->limit || t->arena_used + esize > t->arena_limit))
		return NULL;
	e = (struct agg_entry *)(void *)(t->arena + t->arena_used);
	e->bytes = 0;
	e->packets = 0;
	e->flows = 0;
	memcpy(e->key, ck, (size_t)words * 8);
	t->index[i] = tag | (t->arena_used >> 3);
	t->arena_used += esize;
	t->used++;
	*isnew = 1;
	return e;
}

struct burst_stats {
	uint64_t merged, folded, dropped, dropped_packets, dropped_bytes;
};

/* The table is full for ordinary keys: fold rec into its overflow key. */
static struct agg_entry *
fold(struct nm_agg_table *t, const struct nm_flow_rec *rec, int *isnew)
{
	const struct nm_flow_key *k = &rec->key;
	struct nm_flow_key ok;
	uint64_t ck[CKEY_BUF / 8] __attribute__((aligned(32))), h;
	struct hkey hk;
	uint32_t len;

	memset(&ok, 0, sizeof(ok));
	ok.time_received = k->time_received;
	ok.sampling_rate = k->sampling_rate;
	memcpy(ok.sampler_addr, k->sampler_addr, NM_ADDR_LEN);
	ok.observation_domain_id = k->observation_domain_id;
	ok.in_if = k->in_if;
	ok.out_if = k->out_if;
	ok.etype = k->etype;
	ok.type = k->type;
	ok.proto = k->proto;
	ok.flow_direction = k->flow_direction;
	len = ckey_encode(&ok, ck);
	hk = hkey_load();
	h = ckey_hash(&hk, ck, len);
	return lookup_or_add(t, ck, len, h, slot_of(t, h), 1, isnew);
}

/* Merge rec, whose compact key is ck; returns as nm_agg_add() does. */
static inline int
add_one(struct nm_agg_table *t, const struct nm_flow_rec *rec, const uint64_t *ck, uint32_t len,
	uint64_t h, uint32_t slot, struct burst_stats *bs)
{
	struct agg_entry *e;
	int isnew, ret;

	e = lookup_or_add(t, ck, len, h, slot, 0, &isnew);
	if (likely_(e != NULL)) {
		ret = isnew;
		bs->merged += (uint64_t)(isnew == 0);
	} else {
		e = fold(t, rec, &isnew);
		if (e == NULL) {
			bs->dropped++;
			bs->dropped_packets += rec->packets;
			bs->dropped_bytes += rec->bytes;
			return -ENOSPC;
		}
		bs->folded++;
		ret = 2;
	}
	e->bytes += rec->bytes;
	e->packets += rec->packets;
	e->flows++;
	return ret;
}

static void
burst_stats_commit(struct nm_agg_table *t, const struct burst_stats *bs, unsigned int n)
{
	stat_add(&t->st.records, n);
	stat_add(&t->st.merged, bs->merged);
	stat_add(&t->st.folded, bs->folded);
	stat_add(&t->st.dropped, bs->dropped);
	stat_add(&t->st.dropped_packets, bs->dropped_packets);
	stat_add(&t->st.dropped_bytes, bs->dropped_bytes);
}

unsigned int
nm_agg_add_burst(struct nm_agg_table *t, const struct nm_flow_rec *recs, unsigned int n)
{
	struct burst_stats bs = {0};
	const struct hkey hk = hkey_load();
	unsigned int done, i;

	for (done = 0; done < n; done += AGG_BURST) {
		const struct nm_flow_rec *r = recs + done;
		unsigned int m = n - done < AGG_BURST ? n - done : AGG_BURST;

		/*
		 * Passes, so that the two cache misses of an update (index slot, entry) of one
		 * record overlap with the work on the others: encode every key; hash them (a pass
		 * later, when the stores that wrote them have retired) and prefetch their slots;
		 * then prefetch the entry a slot points to when the tag matches; then merge in
		 * order (a key added earlier in the burst is found).
		 */
		for (i = 0; i < m; i++)
			t->len[i] = ckey_encode(&r[i].key, t->ck[i]);
		for (i = 0; i < m; i++) {
			t->h[i] = ckey_hash(&hk, t->ck[i], t->len[i]);
			t->slot[i] = slot_of(t, t->h[i]);
			__builtin_prefetch(&t->index[t->slot[i]], 0, 3);
		}
		for (i = 0; i < m; i++) {
			uint64_t s = t->index[t->slot[i]];

			if (s != 0 && (s >> 32) == (t->h[i] >> 32)) {
				const uint8_t *e = (const uint8_t *)entry_at(t, s);

				__builtin_prefetch(e, 1, 3);
				__builtin_prefetch(e + 64, 1, 3);
			}
		}
		for (i = 0; i < m; i++)
			(void)add_one(t, &r[i], t->ck[i], t->len[i], t->h[i], t->slot[i], &bs);
	}
	burst_stats_commit(t, &bs, n);
	return n - (unsigned int)bs.dropped;
}

int
nm_agg_add(struct nm_agg_table *t, const struct nm_flow_rec *rec)
{
	struct burst_stats bs = {0};
	struct hkey hk;
	int ret;

	t->len[0] = ckey_encode(&rec->key, t->ck[0]);
	hk = hkey_load();
	t->h[0] = ckey_hash(&hk, t->ck[0], t->len[0]);
	ret = add_one(t, rec, t->ck[0], t->len[0], t->h[0], slot_of(t, t->h[0]), &bs);
	burst_stats_commit(t, &bs, 1);
	return ret;
}

unsigned int
nm_agg_count(const struct nm_agg_table *t)
{
	return t->used;
}

size_t
nm_agg_mem_bytes(const struct nm_agg_table *t)
{
	return sizeof(*t) + (size_t)t->nslots * sizeof(*t->index) + t->arena_bytes + CKEY_FIXED;
}

void
nm_agg_row_rec(const struct nm_agg_row *row, struct nm_flow_rec *out)
{
	ckey_decode(row->ck, &out->key);
	out->bytes = row->bytes;
	out->packets = row->packets;
}

unsigned int
nm_agg_drain_rows(struct nm_agg_table *t, nm_agg_rows_fn visit, void *ctx)
{
	struct nm_agg_row rows[NM_AGG_ROWS];
	unsigned int i = 0, k, n = t->used;
	size_t off = 8;

	/*
	 * Walk the arena: the entries in use are exactly those bump-allocated since the last
	 * drain, in creation order (a walk of a hash structure costs its size, not its entries:
	 * ~300 ms per drain of a 262144-flow cds_lfht however few entries it held). A burst of
	 * rows is collected (read in order, so the hardware prefetcher streams them; the next
	 * burst's first lines are asked for explicitly) and handed over at once. The index is then
	 * cleared in one memset (12 bytes a flow: ~3 ms for a million-flow table, on the flusher).
	 */
	while (i < n && visit != NULL) {
		for (k = 0; k < NM_AGG_ROWS && i < n; k++, i++) {
			const struct agg_entry *e =
				(const struct agg_entry *)(const void *)(t->arena + off);

			rows[k].ck = e->key;
			rows[k].bytes = e->bytes;
			rows[k].packets = e->packets;
			rows[k].flows = e->flows;
			off += sizeof(*e) + (size_t)ckey_words(ckey_len_of(e->key)) * 8;
		}
		__builtin_prefetch(t->arena + off, 0, 0);
		__builtin_prefetch(t->arena + off + 64, 0, 0);
		visit(rows, k, ctx);
	}
	t->used = 0;
	t->arena_used = 8;
	memset(t->index, 0, (size_t)t->nslots * sizeof(*t->index));
	return n;
}

/* nm_agg_drain()'s visitor over nm_agg_drain_rows(): each row decoded into a record. */
struct drain_rec_ctx {
	nm_agg_visit_fn visit;
	void *ctx;
};

static void
drain_rec(const struct nm_agg_row *rows, unsigned int n, void *arg)
{
	const struct drain_rec_ctx *d = arg;
	struct nm_flow_rec rec;
	unsigned int i;

	for (i = 0; i < n; i++) {
		nm_agg_row_rec(&rows[i], &rec);
		d->visit(&rec, rows[i].flows, d->ctx);
	}
}

unsigned int
nm_agg_drain(struct nm_agg_table *t, nm_agg_visit_fn visit, void *ctx)
{
	struct drain_rec_ctx d = {visit, ctx};

	return nm_agg_drain_rows(t, visit != NULL ? drain_rec : NULL, &d);
}

void
nm_agg_get_stats(const struct nm_agg_table *t, struct nm_agg_stats *out)
{
	nm_ctr_sum(&nm_agg_ctr_set, out, &t->st);
}

uint64_t
nm_agg_key_hash(const struct nm_flow_key *k)
{
	uint64_t ck[CKEY_BUF / 8] __attribute__((aligned(32)));
	struct hkey hk;

	pthread_once(&key_once, key_init);
	hk = hkey_load();
	return ckey_hash(&hk, ck, ckey_encode(k, ck));
}

size_t
nm_agg_entry_bytes(const struct nm_flow_key *k)
{
	uint64_t ck[CKEY_BUF / 8] __attribute__((aligned(32)));

	pthread_once(&key_once, key_init);
	return sizeof(struct agg_entry) + (size_t)ckey_words(ckey_encode(k, ck)) * 8;
}

size_t
nm_agg_key_compact(const struct nm_flow_key *k, uint64_t out[NM_AGG_CKEY_BUF / 8])
{
	uint64_t ck[CKEY_BUF / 8] __attribute__((aligned(32)));
	uint32_t len;

	pthread_once(&key_once, key_init);
	len = ckey_encode(k, ck);
	memcpy(out, ck, CKEY_BUF);
	return len;
}
