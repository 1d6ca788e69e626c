/*
 * Label sets: the static --label pairs and each lease's own labels.  Names
 * follow Prometheus' rules; names that Prometheus reserves (__*) or that
 * promfork owns (worker) are refused, so a target's identity can't be forged.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "promfork.h"

int
label_name_check(const char *name, char **cause)
{
	const char *p;

	if (name[0] == '\0') {
		*cause = xstrdup("label name is empty");
		return -1;
	}
	for (p = name; *p != '\0'; p++) {
		int alpha = (*p >= 'a' && *p <= 'z') ||
		    (*p >= 'A' && *p <= 'Z') || *p == '_';
		int digit = *p >= '0' && *p <= '9';
		if (!alpha && !(digit && p != name)) {
			xasprintf(cause,
			    "label name \"%.64s\" is not valid: use letters, "
			    "digits and _, not starting with a digit",
			    name);
			return -1;
		}
		if (p - name > 128) {
			xasprintf(cause,
			    "label name \"%.64s...\" is longer "
			    "than 128 characters",
			    name);
			return -1;
		}
	}
	if (strncmp(name, "__", 2) == 0) {
		xasprintf(cause,
		    "label name \"%.64s\" is reserved: names "
		    "starting with __ belong to Prometheus",
		    name);
		return -1;
	}
	if (strcmp(name, "worker") == 0) {
		*cause = xstrdup("label name \"worker\" is reserved: promfork "
				 "sets it to the worker's slot");
		return -1;
	}
	return 0;
}

static int
label_value_check(const char *name, const char *value, char **cause)
{
	if (strlen(value) > LABEL_VALUE_MAX) {
		xasprintf(cause,
		    "value of label \"%s\" is longer than %d bytes", name,
		    LABEL_VALUE_MAX);
		return -1;
	}
	return 0;
}

const char *
labels_get(const struct labels *ls, const char *name)
{
	size_t i;

	for (i = 0; i < ls->n; i++) {
		if (strcmp(ls->v[i].name, name) == 0)
			return ls->v[i].value;
	}
	return NULL;
}

/* The same names with the same values, in any order (names are unique). */
int
labels_equal(const struct labels *a, const struct labels *b)
{
	const char *v;
	size_t i;

	if (a->n != b->n)
		return 0;
	for (i = 0; i < a->n; i++) {
		v = labels_get(b, a->v[i].name);
		if (v == NULL || strcmp(v, a->v[i].value) != 0)
			return 0;
	}
	return 1;
}

/* Sets name to value, replacing an earlier value of the same name. */
int
labels_set(struct labels *ls, const char *name, const char *value, char **cause)
{
	size_t i;

	if (label_name_check(name, cause) != 0 ||
	    label_value_check(name, value, cause) != 0)
		return -1;
	for (i = 0; i < ls->n; i++) {
		if (strcmp(ls->v[i].name, name) == 0) {
			free(ls->v[i].value);
			ls->v[i].value = xstrdup(value);
			return 0;
		}
	}
	if (ls->n >= LABELS_MAX) {
		xasprintf(cause, "more than %d labels", LABELS_MAX);
		return -1;
	}
	ls->v = xreallocarray(ls->v, ls->n + 1, sizeof *ls->v);
	ls->v[ls->n].name = xstrdup(name);
	ls->v[ls->n].value = xstrdup(value);
	ls->n++;
	return 0;
}

/* Parses NAME=VALUE, as given to --label. */
int
labels_set_arg(struct labels *ls, const char *arg, char **cause)
{
	const char *eq = strchr(arg, '=');
	char *name;
	int rc;

	if (eq == NULL) {
		xasprintf(cause, "label \"%.64s\" has no '=': write NAME=VALUE",
		    arg);
		return -1;
	}
	name = xstrndup(arg, (size_t)(eq - arg));
	rc = labels_set(ls, name, eq + 1, cause);
	free(name);
	return rc;
}

/* Reads {"name": "value", ...}; every value must be a string. */
int
labels_from_json(struct labels *ls, json_t *obj, char **cause)
{
	const char *name;
	json_t *value;

	if (!json_is_object(obj)) {
		*cause = xstrdup("\"labels\" must be an object of strings");
		return -1;
	}
	json_object_foreach(obj, name, value)
	{
		if (!json_is_string(value)) {
			xasprintf(cause,
			    "value of label \"%.64s\" must be a "
			    "string",
			    name);
			return -1;
		}
		if (labels_set(ls, name, json_string_value(value), cause) != 0)
			return -1;
	}
	return 0;
}

json_t *
labels_to_json(const struct labels *ls)
{
	json_t *obj = json_object();
	size_t i;

	for (i = 0; i < ls->n; i++)
		json_object_set_new(obj, ls->v[i].name,
		    json_string(ls->v[i].value));
	return obj;
}

void
labels_copy(struct labels *dst, const struct labels *src)
{
	size_t i;

	labels_finish(dst);
	if (src->n == 0)
		return;
	dst->v = xreallocarray(NULL, src->n, sizeof *dst->v);
	for (i = 0; i < src->n; i++) {
		dst->v[i].name = xstrdup(src->v[i].name);
		dst->v[i].value = xstrdup(src->v[i].value);
	}
	dst->n = src->n;
}

void
labels_finish(struct labels *ls)
{
	size_t i;

	for (i = 0; i < ls->n; i++) {
		free(ls->v[i].name);
		free(ls->v[i].value);
	}
	free(ls->v);
	ls->v = NULL;
	ls->n = 0;
}
