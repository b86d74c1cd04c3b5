/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Counter tables (lib/ctr): the generated structs, sums, key/value views, JSON and text, and
 * the Prometheus text exposition -- exact output for a small table, and for the library's real
 * sets the format's rules checked here and, when Debian's prometheus package is installed, by
 * promtool check metrics.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ctr/ctr.h"
#include "agg/agg.h"
#include "decode/decode.h"
#include "exporter/exporter.h"
#include "kafka/kafka.h"

static const char *
color(unsigned int i)
{
	static const char *const n[] = {"ok", "red \"x\"", "blue\\"};

	return n[i];
}

#define T_CTRS(X, A, c)                                                                            \
	X(c, frames, COUNTER, "packets", 0, "frames", "frames seen")                               \
	X(c, depth, GAUGE, "entries", NM_CTR_F_NONZERO | NM_CTR_F_BARE_JSON, "queue:depth",        \
	  "queue depth\nnow")                                                                      \
	X(c, peak, GAUGE, "entries", 0, "queue:peak", "highest depth")                             \
	A(c, by_color, 3, color, 1, "col", "colors", "colored", "color", NM_CTR_F_NONZERO, "c",    \
	  "frames by color")

struct t_stats {
	T_CTRS(NM_CTR_FIELD, NM_CTR_FIELD_ARRAY, _)
};

static const struct nm_ctr_desc t_desc[] = {T_CTRS(NM_CTR_DESC, NM_CTR_DESC_ARRAY, struct t_stats)};
static const struct nm_ctr_set t_set =
	NM_CTR_SET("test", "t_", "the test", SINGLE_WRITER, struct t_stats, t_desc);

/* Run fn into a memory stream and return what it wrote (caller frees). */
static char *
capture(void (*fn)(FILE *f, void *arg), void *arg)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	fn(f, arg);
	fclose(f);
	return buf;
}

static void
test_struct_and_sum(void **state)
{
	struct t_stats a = {.frames = 3, .depth = 2, .peak = 7, .by_color = {1, 2, 3}};
	struct t_stats b = {.frames = 10, .depth = 1, .peak = 1, .by_color = {0, 5, 0}};

	(void)state;
	assert_int_equal(sizeof(struct t_stats), 6 * sizeof(uint64_t));
	assert_int_equal(t_set.n, 4);
	nm_ctr_sum(&t_set, &a, &b);
	assert_int_equal(a.frames, 13);
	assert_int_equal(a.by_color[1], 7);
	assert_int_equal(a.by_color[0], 1);
	assert_int_equal(nm_ctr_by_name(&t_set, &a, "col"), 7 + 3); /* elements first.. */
	assert_int_equal(nm_ctr_group_total(&t_set, &a, "queue"), 3 + 8);
	nm_ctr_copy(&t_set, &b, &a);
	assert_memory_equal(&a, &b, sizeof(a));

	/* The single-writer helpers. */
	nm_ctr_inc(&a.frames);
	nm_ctr_add(&a.frames, 6);
	nm_ctr_sub(&a.depth, 1);
	nm_ctr_set(&a.peak, 42);
	assert_int_equal(nm_ctr_get(&a.frames), 20);
	assert_int_equal(a.depth, 2);
	assert_int_equal(a.peak, 42);
}

static void
kv(const char *key, uint64_t value, const struct nm_ctr_desc *d, void *ctx)
{
	char *out = ctx;

	(void)d;
	sprintf(out + strlen(out), "%s=%llu;", key, (unsigned long long)value);
}

static void
test_views(void **state)
{
	struct t_stats a = {.frames = 3, .depth = 0, .peak = 7, .by_color = {1, 2, 3}};
	char keys[512] = "";
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	(void)state;
	nm_ctr_foreach(&t_set, &a, "x_", kv, keys);
	assert_string_equal(keys,
			    "x_frames=3;x_depth=0;x_peak=7;x_col_red \"x\"=2;x_col_blue\\=3;");

	f = open_memstream(&buf, &len);
	nm_ctr_json(&t_set, &a, f, "  ");
	fclose(f);
	assert_string_equal(buf, "  \"t_frames\": 3,\n"
				 "  \"t_depth\": 0,\n"
				 "  \"depth\": 0,\n"
				 "  \"t_peak\": 7,\n"
				 "  \"colors\": {\"red \"x\"\": 2, \"blue\\\": 3},\n");
	free(buf);

	/* Text: groups on one line where their first member is; zero NONZERO members hidden. */
	f = open_memstream(&buf, &len);
	nm_ctr_text(&t_set, &a, f);
	fclose(f);
	assert_string_equal(buf, "  frames                       3\n"
				 "  queue                        0 depth, 7 peak\n"
				 "  red \"x\"                      2\n"
				 "  blue\\                        3\n");
	free(buf);
	a.by_color[1] = 0;
	a.peak = 0;
	f = open_memstream(&buf, &len);
	nm_ctr_text(&t_set, &a, f);
	fclose(f);
	/* peak has no NONZERO flag: the group stays. */
	assert_string_equal(buf, "  frames                       3\n"
				 "  queue                        0 depth, 0 peak\n"
				 "  blue\\                        3\n");
	free(buf);
}

struct prom_arg {
	const struct nm_ctr_set *set;
	const void *const *objs;
	const char *const *labels;
	unsigned int n;
};

static void
prom_fn(FILE *f, void *arg)
{
	struct prom_arg *p = arg;

	assert_int_equal(nm_ctr_prom(p->set, p->objs, p->labels, p->n, f), 0);
}

static void
test_prom_exact(void **state)
{
	struct t_stats a = {.frames = 3, .depth = 1, .peak = 7, .by_color = {1, 2, 3}};
	struct t_stats b = {.frames = 4};
	const void *objs[] = {&a, &b};
	const char *labels[] = {"lcore=\"1\"", "lcore=\"2\""};
	struct prom_arg p = {&t_set, objs, labels, 2};
	char *out;

	(void)state;
	out = capture(prom_fn, &p);
	assert_string_equal(out,
			    "# HELP netmeta_test_frames_total frames seen (packets)\n"
			    "# TYPE netmeta_test_frames_total counter\n"
			    "netmeta_test_frames_total{lcore=\"1\"} 3\n"
			    "netmeta_test_frames_total{lcore=\"2\"} 4\n"
			    "# HELP netmeta_test_depth queue depth\\nnow (entries)\n"
			    "# TYPE netmeta_test_depth gauge\n"
			    "netmeta_test_depth{lcore=\"1\"} 1\n"
			    "netmeta_test_depth{lcore=\"2\"} 0\n"
			    "# HELP netmeta_test_peak highest depth (entries)\n"
			    "# TYPE netmeta_test_peak gauge\n"
			    "netmeta_test_peak{lcore=\"1\"} 7\n"
			    "netmeta_test_peak{lcore=\"2\"} 0\n"
			    "# HELP netmeta_test_colored_total frames by color\n"
			    "# TYPE netmeta_test_colored_total counter\n"
			    "netmeta_test_colored_total{lcore=\"1\",color=\"red \\\"x\\\"\"} 2\n"
			    "netmeta_test_colored_total{lcore=\"1\",color=\"blue\\\\\"} 3\n"
			    "netmeta_test_colored_total{lcore=\"2\",color=\"red \\\"x\\\"\"} 0\n"
			    "netmeta_test_colored_total{lcore=\"2\",color=\"blue\\\\\"} 0\n");
	free(out);
	/* No labels: bare samples. */
	p.labels = NULL;
	p.n = 1;
	out = capture(prom_fn, &p);
	assert_non_null(strstr(out, "\nnetmeta_test_frames_total 3\n"));
	assert_non_null(strstr(out, "\nnetmeta_test_colored_total{color=\"blue\\\\\"} 3\n"));
	free(out);
}

/* A metric name as the format allows it. */
static int
name_ok(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
		      (i > 0 && c >= '0' && c <= '9')))
			return 0;
	}
	return n > 0;
}

/*
 * The library's sets: every family has HELP, then TYPE, then samples of that name only;
 * counters end in _total, gauges do not; names are unique across the sets.
 */
static void
check_format(const char *text, char names[][128], unsigned int *n_names)
{
	char family[128] = "", type[16] = "";
	const char *line = text;
	int expect = 0; /* 0 HELP, 1 TYPE, 2 sample or HELP */

	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		size_t len = (size_t)(nl - line);
		unsigned int i;

		assert_non_null(nl);
		if (strncmp(line, "# HELP ", 7) == 0) {
			const char *sp = memchr(line + 7, ' ', len - 7);

			assert_true(expect != 1);
			assert_non_null(sp);
			assert_true(sp - (line + 7) < 128);
			snprintf(family, sizeof(family), "%.*s", (int)(sp - (line + 7)), line + 7);
			assert_true(name_ok(family, strlen(family)));
			assert_true(sp + 1 < nl); /* a help text */
			for (i = 0; i < *n_names; i++)
				assert_string_not_equal(names[i], family);
			snprintf(names[(*n_names)++], 128, "%s", family);
			expect = 1;
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_int_equal(expect, 1);
			assert_int_equal(strncmp(line + 7, family, strlen(family)), 0);
			snprintf(type, sizeof(type), "%.*s", (int)(len - 8 - strlen(family)),
				 line + 8 + strlen(family));
			assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
			assert_int_equal(strcmp(type, "counter") == 0,
					 strlen(family) > 6 && strcmp(family + strlen(family) - 6,
								      "_total") == 0);
			expect = 2;
		} else {
			size_t fl = strlen(family);

			assert_int_equal(expect, 2);
			assert_int_equal(strncmp(line, family, fl), 0);
			assert_true(line[fl] == ' ' || line[fl] == '{');
			/* The value: digits to the end of the line. */
			const char *sp = memrchr(line, ' ', len);

			assert_non_null(sp);
			assert_true(sp + 1 < nl);
			for (sp++; sp < nl; sp++)
				assert_true(*sp >= '0' && *sp <= '9');
		}
		line = nl + 1;
	}
	assert_int_equal(expect, 2);
}

static void
test_prom_lib_sets(void **state)
{
	static struct nm_decode_stats dec;
	static struct nm_agg_stats agg;
	static struct nm_kafka_stats kafka;
	static struct nm_exp_stats exp;
	const struct nm_ctr_set *sets[] = {&nm_decode_ctr_set, &nm_agg_ctr_set, &nm_kafka_ctr_set,
					   &nm_exp_ctr_set};
	const void *objs[] = {&dec, &agg, &kafka, &exp};
	char path[64], cmd[160], names[256][128];
	unsigned int i, n_names = 0;
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int fd;

	(void)state;
	dec.nf9.datagrams = 5;
	dec.err[NM_DECODE_ERR_TRUNCATED] = 2;
	kafka.records_acked = 1000;
	kafka.queue_bytes = 12;
	f = open_memstream(&buf, &len);
	for (i = 0; i < 4; i++)
		assert_int_equal(nm_ctr_prom(sets[i], &objs[i], NULL, 1, f), 0);
	fclose(f);
	check_format(buf, names, &n_names);
	assert_true(n_names > 50);
	assert_non_null(strstr(buf, "\nnetmeta_decode_datagrams_nf9_total 5\n"));
	assert_non_null(strstr(buf, "\nnetmeta_decode_errors_total{reason=\"truncated\"} 2\n"));
	assert_null(strstr(buf, "reason=\"ok\"")); /* reason 0 is no error */
	assert_non_null(strstr(buf, "\nnetmeta_kafka_records_acked_total 1000\n"));
	assert_non_null(strstr(buf, "# TYPE netmeta_kafka_queue_bytes gauge\n"));
	assert_non_null(strstr(buf, "\nnetmeta_exporter_exporters 0\n"));

	/* The format's own checker, when Debian's prometheus package is there. */
	if (access("/usr/bin/promtool", X_OK) == 0) {
		snprintf(path, sizeof(path), "/tmp/nm_test_ctr_%d.prom", (int)getpid());
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, buf, len), (ssize_t)len);
		close(fd);
		snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s", path);
		assert_int_equal(system(cmd), 0);
		unlink(path);
	} else {
		fprintf(stderr, "test_ctr: /usr/bin/promtool not installed (apt-get install "
				"prometheus): only the built-in format checks ran\n");
	}
	free(buf);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_struct_and_sum),
		cmocka_unit_test(test_views),
		cmocka_unit_test(test_prom_exact),
		cmocka_unit_test(test_prom_lib_sets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
