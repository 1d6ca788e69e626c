/*
 * Targets: how the registry looks to Prometheus.  One group per worker,
 * sorted by worker, with the worker label, the static labels and the
 * worker's own; the same JSON serves the file_sd file and http_sd.
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

static json_t *
target_group(const struct lease *l, const struct target_config *tc)
{
	json_t *group, *targets, *labels;
	char *addr, worker[16];
	size_t i;

	addr = tc->proxy_address != NULL ? xstrdup(tc->proxy_address) :
	    target_address(tc, l->port);
	targets = json_array();
	json_array_append_new(targets, json_string(addr));
	free(addr);

	labels = json_object();
	if (tc->labels != NULL) {
		for (i = 0; i < tc->labels->n; i++)
			json_object_set_new(labels, tc->labels->v[i].name,
			    json_string(tc->labels->v[i].value));
	}
	for (i = 0; i < l->labels.n; i++)
		json_object_set_new(labels, l->labels.v[i].name,
		    json_string(l->labels.v[i].value));
	snprintf(worker, sizeof worker, "%d", l->worker);
	json_object_set_new(labels, "worker", json_string(worker));
	if (tc->proxy_address != NULL) {
		char *path;

		xasprintf(&path, "/workers/%d/metrics", l->worker);
		json_object_set_new(labels, "__metrics_path__",
		    json_string(path));
		free(path);
	}

	group = json_object();
	json_object_set_new(group, "targets", targets);
	json_object_set_new(group, "labels", labels);
	return group;
}

json_t *
target_groups(const struct registry *reg, const struct target_config *tc)
{
	json_t *groups = json_array();
	size_t s;

	for (s = 0; s < reg->pool.size; s++) {
		if (reg->slots[s] != NULL)
			json_array_append_new(groups,
			    target_group(reg->slots[s], tc));
	}
	return groups;
}

/* The groups as text with a final newline; never empty, [] at least. */
char *
target_render(const struct registry *reg, const struct target_config *tc,
    size_t *len)
{
	json_t *groups = target_groups(reg, tc);
	char *text, *out;
	size_t n;

	text = json_dumps(groups, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(groups);
	if (text == NULL)
		fatalx("cannot render targets");
	n = strlen(text);
	out = xmalloc(n + 2);
	memcpy(out, text, n);
	out[n] = '\n';
	out[n + 1] = '\0';
	free(text);
	*len = n + 1;
	return out;
}
