#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

static int
check(const char *name)
{
	char *cause = NULL;
	int rc = label_name_check(name, &cause);

	if (rc != 0) {
		cr_assert_not_null(cause);
		cr_assert_gt(strlen(cause), 10, "cause says why: %s", cause);
	}
	free(cause);
	return rc;
}

Test(label, good_names)
{
	cr_assert_eq(check("role"), 0);
	cr_assert_eq(check("_x"), 0);
	cr_assert_eq(check("a9_B"), 0);
	cr_assert_eq(check("_worker"), 0);
}

Test(label, bad_names)
{
	cr_assert_eq(check(""), -1);
	cr_assert_eq(check("9lives"), -1);
	cr_assert_eq(check("a-b"), -1);
	cr_assert_eq(check("a b"), -1);
	cr_assert_eq(check("é"), -1);
	cr_assert_eq(check("__meta"), -1);
	cr_assert_eq(check("__address__"), -1);
	cr_assert_eq(check("worker"), -1);
}

Test(label, long_name_refused)
{
	char name[300];

	memset(name, 'a', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	cr_assert_eq(check(name), -1);
}

Test(label, set_replaces_and_gets)
{
	struct labels ls = { NULL, 0 };
	char *cause = NULL;

	cr_assert_eq(labels_set(&ls, "a", "1", &cause), 0);
	cr_assert_eq(labels_set(&ls, "b", "2", &cause), 0);
	cr_assert_eq(labels_set(&ls, "a", "3", &cause), 0);
	cr_assert_eq(ls.n, 2);
	cr_assert_str_eq(labels_get(&ls, "a"), "3");
	cr_assert_null(labels_get(&ls, "c"));
	labels_finish(&ls);
	cr_assert_eq(ls.n, 0);
}

Test(label, arg_forms)
{
	struct labels ls = { NULL, 0 };
	char *cause = NULL;

	cr_assert_eq(labels_set_arg(&ls, "env=prod", &cause), 0);
	cr_assert_eq(labels_set_arg(&ls, "empty=", &cause), 0);
	cr_assert_eq(labels_set_arg(&ls, "eq=a=b", &cause), 0);
	cr_assert_str_eq(labels_get(&ls, "eq"), "a=b");
	cr_assert_str_eq(labels_get(&ls, "empty"), "");
	cr_assert_eq(labels_set_arg(&ls, "novalue", &cause), -1);
	cr_assert(strstr(cause, "NAME=VALUE") != NULL);
	free(cause);
	cause = NULL;
	cr_assert_eq(labels_set_arg(&ls, "=x", &cause), -1);
	free(cause);
	cause = NULL;
	cr_assert_eq(labels_set_arg(&ls, "worker=1", &cause), -1);
	free(cause);
	labels_finish(&ls);
}

Test(label, too_many_and_too_long)
{
	struct labels ls = { NULL, 0 };
	char *cause = NULL, name[16], *big;
	int i;

	for (i = 0; i < LABELS_MAX; i++) {
		snprintf(name, sizeof name, "l%d", i);
		cr_assert_eq(labels_set(&ls, name, "v", &cause), 0);
	}
	cr_assert_eq(labels_set(&ls, "one_more", "v", &cause), -1);
	free(cause);
	cause = NULL;
	big = malloc(LABEL_VALUE_MAX + 2);
	memset(big, 'v', LABEL_VALUE_MAX + 1);
	big[LABEL_VALUE_MAX + 1] = '\0';
	cr_assert_eq(labels_set(&ls, "l0", big, &cause), -1);
	free(cause);
	free(big);
	labels_finish(&ls);
}

Test(label, json_round_trip_and_bad_json)
{
	struct labels ls = { NULL, 0 };
	char *cause = NULL, *text;
	json_t *j;

	j = json_loads("{\"role\": \"web\", \"zone\": \"a\"}", 0, NULL);
	cr_assert_eq(labels_from_json(&ls, j, &cause), 0);
	json_decref(j);
	j = labels_to_json(&ls);
	text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
	cr_assert_str_eq(text, "{\"role\":\"web\",\"zone\":\"a\"}");
	free(text);
	json_decref(j);
	labels_finish(&ls);

	j = json_loads("{\"role\": 3}", 0, NULL);
	cr_assert_eq(labels_from_json(&ls, j, &cause), -1);
	free(cause);
	cause = NULL;
	json_decref(j);
	j = json_loads("[\"role\"]", 0, NULL);
	cr_assert_eq(labels_from_json(&ls, j, &cause), -1);
	free(cause);
	cause = NULL;
	json_decref(j);
	j = json_loads("{\"__address__\": \"evil:1\"}", 0, NULL);
	cr_assert_eq(labels_from_json(&ls, j, &cause), -1);
	free(cause);
	json_decref(j);
	labels_finish(&ls);
}

Test(label, equal_in_any_order)
{
	struct labels a = { NULL, 0 }, b = { NULL, 0 };
	char *cause = NULL;

	cr_assert(labels_equal(&a, &b), "both empty");
	labels_set(&a, "role", "web", &cause);
	labels_set(&a, "zone", "a", &cause);
	cr_assert_not(labels_equal(&a, &b));
	labels_set(&b, "zone", "a", &cause);
	labels_set(&b, "role", "web", &cause);
	cr_assert(labels_equal(&a, &b), "the same, in another order");
	labels_set(&b, "role", "batch", &cause);
	cr_assert_not(labels_equal(&a, &b), "another value");
	labels_finish(&a);
	labels_finish(&b);
}
