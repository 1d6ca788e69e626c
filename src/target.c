/*
 * Targets: how the registry looks to Prometheus.  One group per worker,
 * sorted by worker, with the worker label, the static labels and the
 * worker's own; the same text serves the file_sd file and http_sd.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "promfork.h"

char *
target_address(const struct target_config *tc, uint16_t port)
{
	char *s;

	if (strchr(tc->host, ':') != NULL)
		xasprintf(&s, "[%s]:%u", tc->host, port);
	else
		xasprintf(&s, "%s:%u", tc->host, port);
	return s;
}

struct target_buf {
	char *p;
	size_t len;
	size_t cap;
};

static void
target_buf_add(struct target_buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap < 4096 ? 4096 : b->cap * 2;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
target_buf_str(struct target_buf *b, const char *s)
{
	target_buf_add(b, s, strlen(s));
}

/*
 * Appends s as a JSON string.  ASCII is escaped here; anything else goes
 * through jansson, which refuses what is not UTF-8: then nothing is
 * appended and -1 is returned, and the caller leaves the string out.
 */
static int
target_buf_json(struct target_buf *b, const char *s)
{
	const unsigned char *c;
	char esc[8];
	json_t *j;
	char *text;

	for (c = (const unsigned char *)s; *c != '\0' && *c < 0x80; c++)
		;
	if (*c != '\0') {
		if ((j = json_string(s)) == NULL)
			return -1;
		text = json_dumps(j, JSON_ENCODE_ANY);
		json_decref(j);
		if (text == NULL)
			return -1;
		target_buf_str(b, text);
		free(text);
		return 0;
	}
	target_buf_add(b, "\"", 1);
	for (c = (const unsigned char *)s; *c != '\0'; c++) {
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			target_buf_add(b, esc, 2);
		} else if (*c < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", *c);
			target_buf_add(b, esc, 6);
		} else
			target_buf_add(b, (const char *)c, 1);
	}
	target_buf_add(b, "\"", 1);
	return 0;
}

/* Appends "name": "value", with the separator when it is not the first. */
static void
target_buf_label(struct target_buf *b, const char *name, const char *value,
    int *first)
{
	size_t mark = b->len;

	if (!*first)
		target_buf_add(b, ", ", 2);
	if (target_buf_json(b, name) != 0 ||
	    (target_buf_add(b, ": ", 2), target_buf_json(b, value)) != 0) {
		b->len = mark; /* not UTF-8: left out */
		b->p[mark] = '\0';
		return;
	}
	*first = 0;
}

static int
target_label_reserved(const char *name, const struct target_config *tc)
{
	return strcmp(name, "worker") == 0 ||
	    (tc->proxy_address != NULL &&
		strcmp(name, "__metrics_path__") == 0);
}

/* One group on one line, its labels in the order target_group sets them. */
static void
target_render_group(struct target_buf *b, const struct lease *l,
    const struct target_config *tc)
{
	const struct labels *st = tc->labels;
	char *addr, num[64];
	const char *v;
	size_t i;
	int first = 1;

	addr = tc->proxy_address != NULL ? xstrdup(tc->proxy_address)
					 : target_address(tc, l->port);
	target_buf_str(b, "  {\"targets\": [");
	(void)target_buf_json(b, addr);
	free(addr);
	target_buf_str(b, "], \"labels\": {");
	for (i = 0; st != NULL && i < st->n; i++) {
		if (target_label_reserved(st->v[i].name, tc))
			continue;
		v = labels_get(&l->labels, st->v[i].name);
		target_buf_label(b, st->v[i].name,
		    v != NULL ? v : st->v[i].value, &first);
	}
	for (i = 0; i < l->labels.n; i++) {
		if (target_label_reserved(l->labels.v[i].name, tc) ||
		    (st != NULL && labels_get(st, l->labels.v[i].name) != NULL))
			continue;
		target_buf_label(b, l->labels.v[i].name, l->labels.v[i].value,
		    &first);
	}
	snprintf(num, sizeof num, "%d", l->worker);
	target_buf_label(b, "worker", num, &first);
	if (tc->proxy_address != NULL) {
		snprintf(num, sizeof num, "/workers/%d/metrics", l->worker);
		target_buf_label(b, "__metrics_path__", num, &first);
	}
	target_buf_str(b, "}}");
}

/*
 * The groups as text with a final newline; never empty, [] at least.  One
 * group per line, written directly: the sd file is rewritten on every
 * change, and building a JSON tree for a thousand workers costs more than
 * the write.  The sd file and http_sd (/targets) both serve this text.
 */
char *
target_render(const struct registry *reg, const struct target_config *tc,
    size_t *len)
{
	struct target_buf b = { NULL, 0, 0 };
	const struct lease *l;
	size_t n = 0;

	target_buf_str(&b, "[");
	REGISTRY_FOREACH (l, reg) {
		target_buf_str(&b, n++ == 0 ? "\n" : ",\n");
		target_render_group(&b, l, tc);
	}
	target_buf_str(&b, n > 0 ? "\n]\n" : "]\n");
	*len = b.len;
	return b.p;
}
