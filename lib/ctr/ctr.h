/* SPDX-License-Identifier: BSD-3-Clause */
#ifndef NM_CTR_H
#define NM_CTR_H

/*
 * Counters, defined once. Each counter set (worker, decode, aggregation, flusher, Kafka,
 * exporters) is one X-macro table in its module's header; every entry names the counter, its
 * kind (COUNTER: only grows; GAUGE: a level now), its unit, flags, its place in the text
 * summary and a help text. From the table come:
 *   - the struct (NM_CTR_FIELD / NM_CTR_FIELD_ARRAY),
 *   - a descriptor array (NM_CTR_DESC / NM_CTR_DESC_ARRAY) in a struct nm_ctr_set, which the
 *     functions below walk: the per-lcore sum, every key/value view (telemetry dictionaries),
 *     the JSON summary, the text summary and the Prometheus text exposition.
 * So adding a counter is one line in one table.
 *
 * An entry: X(c, name, KIND, "unit", flags, "text", "help"). c is passed through (the struct
 * type when descriptors are made). name is the member and the key everywhere. text places the
 * counter in the text summary: "" not shown, "label" a line of its own, "group:word" one item
 * of the line "group" ("datagrams: 3 nf5, 0 nf9"; an empty word prints the value alone).
 * An array (per reason, per class): A(c, name, N, elem_name_fn, first, "key", "json", "prom",
 * "label", flags, "text", "help"): elements first..N-1; telemetry keys "key_<elem>", an object
 * "json" in the JSON summary, Prometheus netmeta_<set>_<prom>_total{label="<elem>"}, and in the
 * text summary each element a line of its own labelled by its name when text is not "".
 *
 * Single-writer counters (one owner thread bumps them, any thread reads): nm_ctr_inc/add/sub/set
 * on the owner, nm_ctr_get on readers -- relaxed atomic loads and stores, which compile to plain
 * moves on x86-64 but keep the compiler from tearing or caching them. Counters that several
 * threads bump (the per-exporter entries) use atomic adds; their set says so (writer).
 *
 * Threading: the functions are pure over the objects they are given; reading a set another
 * thread writes gives each counter's recent value (not one instant for all).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- single-writer counters ---- */

/* The owner adds v. Relaxed load + store: no lock prefix, no torn value for readers. */
static inline void
nm_ctr_add(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + v, __ATOMIC_RELAXED);
}

static inline void
nm_ctr_inc(uint64_t *c)
{
	nm_ctr_add(c, 1);
}

/* Gauges only: the owner takes v away / sets the level. */
static inline void
nm_ctr_sub(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) - v, __ATOMIC_RELAXED);
}

static inline void
nm_ctr_set(uint64_t *c, uint64_t v)
{
	__atomic_store_n(c, v, __ATOMIC_RELAXED);
}

/* Any thread. */
static inline uint64_t
nm_ctr_get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/* ---- tables ---- */

enum nm_ctr_kind {
	NM_CTR_COUNTER = 0, /* only grows: Prometheus counter, netmeta_<set>_<name>_total */
	NM_CTR_GAUGE = 1,   /* a level now: Prometheus gauge, netmeta_<set>_<name> */
};

/* Entry flags. */
#define NM_CTR_F_NONZERO 0x01	/* text summary: shown only when not zero */
#define NM_CTR_F_BARE_JSON 0x02 /* JSON summary: also under the bare name (a kept older key) */
#define NM_CTR_F_TEXT_NOT0 0x04 /* arrays: text summary leaves out element 0 (the good case) */

enum nm_ctr_writer {
	NM_CTR_SINGLE_WRITER = 0, /* one owner thread: nm_ctr_add and friends */
	NM_CTR_MULTI_WRITER = 1,  /* several threads: atomic read-modify-write */
};

struct nm_ctr_desc {
	const char *name;  /* member and key (arrays: key prefix) */
	const char *help;  /* one line, for Prometheus HELP and the tables' readers */
	const char *unit;  /* "packets", "bytes", "records", ... */
	const char *text;  /* text summary placement, see above; "" none */
	size_t off;	   /* of the uint64_t (arrays: of element 0) in the set's struct */
	uint16_t n;	   /* 0: scalar; arrays: elements */
	uint16_t first;	   /* arrays: first element shown */
	uint8_t kind;	   /* enum nm_ctr_kind */
	uint8_t flags;	   /* NM_CTR_F_* */
	const char *json;  /* arrays: object name in the JSON summary */
	const char *prom;  /* arrays: Prometheus metric name part */
	const char *label; /* arrays: Prometheus label name */
	const char *(*elem)(unsigned int i); /* arrays: element name */
};

struct nm_ctr_set {
	const char *name;   /* Prometheus: netmeta_<name>_...; "worker", "kafka", ... */
	const char *prefix; /* before keys in the combined views (/netmeta/stats, JSON summary) */
	const char *where;  /* where the counters live and who writes them */
	enum nm_ctr_writer writer;
	const struct nm_ctr_desc *desc;
	unsigned int n;
	size_t size; /* of the struct */
};

/* Generators: struct members ... */
#define NM_CTR_FIELD(c, name, kind, unit, flags, text, help) uint64_t name;
#define NM_CTR_FIELD_ARRAY(c, name, n, elem, first, key, json, prom, label, flags, text, help)     \
	uint64_t name[n];

/* ... and descriptors (c is the struct type). */
#define NM_CTR_DESC(c, name_, kind_, unit_, flags_, text_, help_)                                  \
	{.name = #name_,                                                                           \
	 .help = help_,                                                                            \
	 .unit = unit_,                                                                            \
	 .text = text_,                                                                            \
	 .off = offsetof(c, name_),                                                                \
	 .kind = NM_CTR_##kind_,                                                                   \
	 .flags = flags_},
#define NM_CTR_DESC_ARRAY(c, name_, n_, elem_, first_, key_, json_, prom_, label_, flags_, text_,  \
			  help_)                                                                   \
	{.name = key_,                                                                             \
	 .help = help_,                                                                            \
	 .unit = "",                                                                               \
	 .text = text_,                                                                            \
	 .off = offsetof(c, name_),                                                                \
	 .n = n_,                                                                                  \
	 .first = first_,                                                                          \
	 .kind = NM_CTR_COUNTER,                                                                   \
	 .flags = flags_,                                                                          \
	 .json = json_,                                                                            \
	 .prom = prom_,                                                                            \
	 .label = label_,                                                                          \
	 .elem = elem_},

/* A set from its descriptor array. */
#define NM_CTR_SET(name_, prefix_, where_, writer_, type_, desc_)                                  \
	{                                                                                          \
		.name = name_, .prefix = prefix_, .where = where_, .writer = NM_CTR_##writer_,     \
		.desc = desc_, .n = sizeof(desc_) / sizeof(desc_[0]), .size = sizeof(type_)        \
	}

/* The counter of d (element i of an array) in obj, read relaxed. */
uint64_t nm_ctr_value(const struct nm_ctr_desc *d, const void *obj, unsigned int i);

/* dst += src for every counter of the set (reads of src relaxed; dst is the caller's). */
void nm_ctr_sum(const struct nm_ctr_set *s, void *dst, const void *src);

/* dst = src for every counter of the set, read relaxed (a snapshot another thread writes). */
void nm_ctr_copy(const struct nm_ctr_set *s, void *dst, const void *src);

/*
 * Call fn for every counter of obj with its key: prefix + name, arrays prefix + key_<elem> for
 * elements first..n-1. For telemetry dictionaries and other key/value views.
 */
typedef void (*nm_ctr_kv_fn)(const char *key, uint64_t value, const struct nm_ctr_desc *d,
			     void *ctx);
void nm_ctr_foreach(const struct nm_ctr_set *s, const void *obj, const char *prefix,
		    nm_ctr_kv_fn fn, void *ctx);

/*
 * JSON members ("key": value,\n with indent) for every counter, keys as nm_ctr_foreach with the
 * set's prefix (and bare too for NM_CTR_F_BARE_JSON); arrays as "json": {"elem": value, ...}.
 * Every member ends with ",\n": the caller writes the closing ones.
 */
void nm_ctr_json(const struct nm_ctr_set *s, const void *obj, FILE *f, const char *indent);

/*
 * Text summary lines of the counters that have a text placement, "  %-28s ..." as the engine's
 * summary prints them; groups in the order of their first member.
 */
void nm_ctr_text(const struct nm_ctr_set *s, const void *obj, FILE *f);

/*
 * The counter called name (a scalar's value, or an array's elements first..n-1 summed); 0 when
 * the set has none of that name.
 */
uint64_t nm_ctr_by_name(const struct nm_ctr_set *s, const void *obj, const char *name);

/* The sum of the scalars of a text summary group ("datagrams": every protocol's datagrams). */
uint64_t nm_ctr_group_total(const struct nm_ctr_set *s, const void *obj, const char *group);

/*
 * Prometheus text exposition (format 0.0.4) of the set: for every counter one # HELP and one
 * # TYPE line, then one sample per object: objs[i] with the label set labels[i] (e.g.
 * "lcore=\"1\""; NULL or "" for none; array elements add their own label). Names are
 * netmeta_<set>_<name>_total for counters, netmeta_<set>_<name> for gauges. Returns 0 or -EIO.
 */
int nm_ctr_prom(const struct nm_ctr_set *s, const void *const *objs, const char *const *labels,
		unsigned int n_objs, FILE *f);

/* Prometheus label value escaping (\\, \", \n) of v into buf; always terminated. */
void nm_ctr_prom_escape(const char *v, char *buf, size_t buflen);

#endif /* NM_CTR_H */
