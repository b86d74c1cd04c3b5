/* SPDX-License-Identifier: BSD-3-Clause */
/* Walking counter tables: sums, key/value views, JSON, text summary, Prometheus (ctr.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "ctr.h"

static const uint64_t *
slot(const struct nm_ctr_desc *d, const void *obj, unsigned int i)
{
	return (const uint64_t *)(const void *)((const char *)obj + d->off) + i;
}

uint64_t
nm_ctr_value(const struct nm_ctr_desc *d, const void *obj, unsigned int i)
{
	return nm_ctr_get(slot(d, obj, i));
}

static unsigned int
elems(const struct nm_ctr_desc *d)
{
	return d->n == 0 ? 1 : d->n;
}

void
nm_ctr_sum(const struct nm_ctr_set *s, void *dst, const void *src)
{
	unsigned int k, i;

	for (k = 0; k < s->n; k++)
		for (i = 0; i < elems(&s->desc[k]); i++)
			*(uint64_t *)(void *)((char *)dst + s->desc[k].off +
					      i * sizeof(uint64_t)) +=
				nm_ctr_value(&s->desc[k], src, i);
}

void
nm_ctr_copy(const struct nm_ctr_set *s, void *dst, const void *src)
{
	unsigned int k, i;

	for (k = 0; k < s->n; k++)
		for (i = 0; i < elems(&s->desc[k]); i++)
			*(uint64_t *)(void *)((char *)dst + s->desc[k].off + i * sizeof(uint64_t)) =
				nm_ctr_value(&s->desc[k], src, i);
}

void
nm_ctr_foreach(const struct nm_ctr_set *s, const void *obj, const char *prefix, nm_ctr_kv_fn fn,
	       void *ctx)
{
	char key[128];
	unsigned int k, i;

	if (prefix == NULL)
		prefix = "";
	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];

		if (d->n == 0) {
			snprintf(key, sizeof(key), "%s%s", prefix, d->name);
			fn(key, nm_ctr_value(d, obj, 0), d, ctx);
			continue;
		}
		for (i = d->first; i < d->n; i++) {
			snprintf(key, sizeof(key), "%s%s_%s", prefix, d->name, d->elem(i));
			fn(key, nm_ctr_value(d, obj, i), d, ctx);
		}
	}
}

void
nm_ctr_json(const struct nm_ctr_set *s, const void *obj, FILE *f, const char *indent)
{
	unsigned int k, i;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];

		if (d->n != 0) {
			fprintf(f, "%s\"%s\": {", indent, d->json);
			for (i = d->first; i < d->n; i++)
				fprintf(f, "%s\"%s\": %" PRIu64, i > d->first ? ", " : "",
					d->elem(i), nm_ctr_value(d, obj, i));
			fprintf(f, "},\n");
			continue;
		}
		fprintf(f, "%s\"%s%s\": %" PRIu64 ",\n", indent, s->prefix, d->name,
			nm_ctr_value(d, obj, 0));
		if ((d->flags & NM_CTR_F_BARE_JSON) && s->prefix[0] != '\0')
			fprintf(f, "%s\"%s\": %" PRIu64 ",\n", indent, d->name,
				nm_ctr_value(d, obj, 0));
	}
}

/* The group part of a text placement ("group:word" or "label"), its length. */
static size_t
group_len(const char *text)
{
	return strcspn(text, ":");
}

void
nm_ctr_text(const struct nm_ctr_set *s, const void *obj, FILE *f)
{
	unsigned int k, j, i;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];
		size_t gl = group_len(d->text);
		bool seen = false, any = false, all_nonzero = true;
		char group[64];

		if (gl == 0)
			continue;
		if (d->n != 0) {
			/* Per reason/class: a line for each element (that is not zero). */
			for (i = d->first; i < d->n; i++) {
				uint64_t v = nm_ctr_value(d, obj, i);

				if (i == 0 && (d->flags & NM_CTR_F_TEXT_NOT0))
					continue;
				if (v != 0 || !(d->flags & NM_CTR_F_NONZERO))
					fprintf(f, "  %-28s %" PRIu64 "\n", d->elem(i), v);
			}
			continue;
		}
		/* A group is printed where its first member is. */
		for (j = 0; j < k && !seen; j++)
			seen = s->desc[j].n == 0 && group_len(s->desc[j].text) == gl &&
			       strncmp(s->desc[j].text, d->text, gl) == 0;
		if (seen)
			continue;
		for (j = k; j < s->n; j++) {
			const struct nm_ctr_desc *m = &s->desc[j];

			if (m->n != 0 || group_len(m->text) != gl || strncmp(m->text, d->text, gl))
				continue;
			any |= nm_ctr_value(m, obj, 0) != 0;
			all_nonzero &= (m->flags & NM_CTR_F_NONZERO) != 0;
		}
		if (!any && all_nonzero)
			continue;
		snprintf(group, sizeof(group), "%.*s", (int)gl, d->text);
		fprintf(f, "  %-28s", group);
		for (j = k, i = 0; j < s->n; j++) {
			const struct nm_ctr_desc *m = &s->desc[j];
			const char *word;

			if (m->n != 0 || group_len(m->text) != gl || strncmp(m->text, d->text, gl))
				continue;
			word = m->text[gl] == ':' ? m->text + gl + 1 : "";
			fprintf(f, "%s%" PRIu64 "%s%s", i++ ? ", " : " ", nm_ctr_value(m, obj, 0),
				word[0] ? " " : "", word);
		}
		fprintf(f, "\n");
	}
}

void
nm_ctr_prom_escape(const char *v, char *buf, size_t buflen)
{
	size_t o = 0;

	if (buflen == 0)
		return;
	for (; *v != '\0' && o + 2 < buflen; v++) {
		if (*v == '\\' || *v == '"' || *v == '\n') {
			buf[o++] = '\\';
			buf[o++] = *v == '\n' ? 'n' : *v;
		} else {
			buf[o++] = *v;
		}
	}
	buf[o] = '\0';
}

/* HELP text escaping: backslash and newline only (the format's rule for HELP). */
static void
help_line(FILE *f, const char *metric, const struct nm_ctr_desc *d)
{
	const char *p;

	fprintf(f, "# HELP %s ", metric);
	for (p = d->help; *p != '\0'; p++) {
		if (*p == '\\')
			fputs("\\\\", f);
		else if (*p == '\n')
			fputs("\\n", f);
		else
			fputc(*p, f);
	}
	if (d->unit[0] != '\0')
		fprintf(f, " (%s)", d->unit);
	fputc('\n', f);
}

static void
sample(FILE *f, const char *metric, const char *labels, const char *extra, uint64_t v)
{
	bool l = labels != NULL && labels[0] != '\0';
	bool e = extra != NULL && extra[0] != '\0';

	if (!l && !e)
		fprintf(f, "%s %" PRIu64 "\n", metric, v);
	else
		fprintf(f, "%s{%s%s%s} %" PRIu64 "\n", metric, l ? labels : "", l && e ? "," : "",
			e ? extra : "", v);
}

int
nm_ctr_prom(const struct nm_ctr_set *s, const void *const *objs, const char *const *labels,
	    unsigned int n_objs, FILE *f)
{
	char metric[160], extra[160], esc[96];
	unsigned int k, i, o;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];
		bool counter = d->kind == NM_CTR_COUNTER;

		snprintf(metric, sizeof(metric), "netmeta_%s_%s%s", s->name,
			 d->n != 0 ? d->prom : d->name, counter ? "_total" : "");
		help_line(f, metric, d);
		fprintf(f, "# TYPE %s %s\n", metric, counter ? "counter" : "gauge");
		for (o = 0; o < n_objs; o++) {
			const char *l = labels != NULL ? labels[o] : NULL;

			if (d->n == 0) {
				sample(f, metric, l, NULL, nm_ctr_value(d, objs[o], 0));
				continue;
			}
			for (i = d->first; i < d->n; i++) {
				nm_ctr_prom_escape(d->elem(i), esc, sizeof(esc));
				snprintf(extra, sizeof(extra), "%s=\"%s\"", d->label, esc);
				sample(f, metric, l, extra, nm_ctr_value(d, objs[o], i));
			}
		}
	}
	return ferror(f) ? -EIO : 0;
}

uint64_t
nm_ctr_by_name(const struct nm_ctr_set *s, const void *obj, const char *name)
{
	uint64_t sum = 0;
	unsigned int k, i;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];

		if (strcmp(d->name, name) != 0)
			continue;
		if (d->n == 0)
			return nm_ctr_value(d, obj, 0);
		for (i = d->first; i < d->n; i++)
			sum += nm_ctr_value(d, obj, i);
		return sum;
	}
	return 0;
}

uint64_t
nm_ctr_group_total(const struct nm_ctr_set *s, const void *obj, const char *group)
{
	size_t gl = strlen(group);
	uint64_t sum = 0;
	unsigned int k;

	for (k = 0; k < s->n; k++) {
		const struct nm_ctr_desc *d = &s->desc[k];

		if (d->n == 0 && group_len(d->text) == gl && strncmp(d->text, group, gl) == 0)
			sum += nm_ctr_value(d, obj, 0);
	}
	return sum;
}
