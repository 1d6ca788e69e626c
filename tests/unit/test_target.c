#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

/* A registry with hand-made leases: rendering needs no processes. */
static struct registry reg;
static struct lease leases[3];

static void
fake_lease(int i, int worker, const char *name, const char *value)
{
	char *cause = NULL;

	memset(&leases[i], 0, sizeof leases[i]);
	leases[i].worker = worker;
	leases[i].port = pool_port(&reg.pool, worker);
	if (name != NULL)
		cr_assert_eq(labels_set(&leases[i].labels, name, value, &cause),
		    0);
	reg.slots[worker] = &leases[i];
	reg.count++;
}

static void
setup(void)
{
	memset(&reg, 0, sizeof reg);
	pool_init(&reg.pool, 9400, 9409, NULL, NULL);
	reg.slots = calloc(reg.pool.size, sizeof *reg.slots);
}

static void
teardown(void)
{
	for (int i = 0; i < 3; i++)
		labels_finish(&leases[i].labels);
	free(reg.slots);
	pool_finish(&reg.pool);
}

TestSuite(target, .init = setup, .fini = teardown);

Test(target, empty_is_an_empty_array)
{
	struct target_config tc = { .host = "h" };
	size_t len;
	char *text = target_render(&reg, &tc, &len);

	cr_assert_str_eq(text, "[]\n");
	cr_assert_eq(len, 3);
	free(text);
}

Test(target, groups_sorted_by_worker_with_labels)
{
	struct labels statics = { NULL, 0 };
	struct target_config tc = { .host = "web1", .labels = &statics };
	char *cause = NULL, *text;
	json_t *j, *g;
	size_t len;

	labels_set(&statics, "env", "prod", &cause);
	labels_set(&statics, "role", "default", &cause);
	fake_lease(0, 7, "role", "web");
	fake_lease(1, 2, NULL, NULL);
	text = target_render(&reg, &tc, &len);
	j = json_loads(text, 0, NULL);
	cr_assert(json_is_array(j), "%s", text);
	cr_assert_eq(json_array_size(j), 2);
	g = json_array_get(j, 0);
	cr_assert_str_eq(json_string_value(
			     json_array_get(json_object_get(g, "targets"), 0)),
	    "web1:9402");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "worker")),
	    "2");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "role")),
	    "default");
	g = json_array_get(j, 1);
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "worker")),
	    "7");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "role")),
	    "web", "a worker's own label wins over a static one");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "env")),
	    "prod");
	json_decref(j);
	free(text);
	labels_finish(&statics);
}

Test(target, ipv6_hosts_get_brackets)
{
	struct target_config tc = { .host = "::1" };
	char *addr = target_address(&tc, 9400);

	cr_assert_str_eq(addr, "[::1]:9400");
	free(addr);
	tc.host = "10.0.0.1";
	addr = target_address(&tc, 1);
	cr_assert_str_eq(addr, "10.0.0.1:1");
	free(addr);
}

Test(target, label_values_are_escaped_json)
{
	struct target_config tc = { .host = "h" };
	size_t len;
	char *text;
	json_t *j;

	fake_lease(0, 0, "quote", "a\"b\\c\nd");
	text = target_render(&reg, &tc, &len);
	j = json_loads(text, 0, NULL);
	cr_assert_not_null(j, "valid JSON: %s", text);
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(json_array_get(j,
								 0),
						 "labels"),
				 "quote")),
	    "a\"b\\c\nd");
	json_decref(j);
	free(text);
}

Test(target, proxy_targets_name_the_listener)
{
	struct target_config tc = { .host = "h", .proxy_address = "web1:9399" };
	json_t *j, *g;
	size_t len;
	char *text;

	fake_lease(0, 3, NULL, NULL);
	text = target_render(&reg, &tc, &len);
	j = json_loads(text, 0, NULL);
	g = json_array_get(j, 0);
	cr_assert_str_eq(json_string_value(
			     json_array_get(json_object_get(g, "targets"), 0)),
	    "web1:9399");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "__metrics_path__")),
	    "/workers/3/metrics");
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(g, "labels"),
				 "worker")),
	    "3");
	json_decref(j);
	free(text);
}

/* The text is written directly, not through jansson (issue #9): it must
 * still be JSON that says what a tree would, one group per line. */
Test(target, render_is_json_one_group_per_line)
{
	struct labels statics = { NULL, 0 };
	struct target_config tc = { .host = "h\"x", .labels = &statics };
	char *cause = NULL, *text, *nl;
	json_t *parsed, *g, *labels;
	size_t len, lines = 0;

	labels_set(&statics, "env", "pr\x01od", &cause);
	labels_set(&statics, "role", "default", &cause);
	fake_lease(0, 7, "role", "w\u00e9b \t\\ \"q\"");
	fake_lease(1, 2, "zone", "\u65e5\u672c");
	fake_lease(2, 4, NULL, NULL);
	for (int proxy = 0; proxy < 2; proxy++) {
		tc.proxy_address = proxy ? "web1:9399" : NULL;
		text = target_render(&reg, &tc, &len);
		cr_assert_eq(strlen(text), len);
		parsed = json_loads(text, 0, NULL);
		cr_assert_not_null(parsed, "valid JSON: %s", text);
		cr_assert_eq(json_array_size(parsed), 3);
		g = json_array_get(parsed, 0); /* worker 2 */
		labels = json_object_get(g, "labels");
		cr_assert_str_eq(json_string_value(
				     json_object_get(labels, "worker")),
		    "2");
		cr_assert_str_eq(json_string_value(
				     json_object_get(labels, "zone")),
		    "\u65e5\u672c");
		cr_assert_str_eq(json_string_value(
				     json_object_get(labels, "env")),
		    "pr\x01od");
		cr_assert_str_eq(json_string_value(
				     json_object_get(labels, "role")),
		    "default");
		cr_assert_str_eq(json_string_value(
				     json_array_get(json_object_get(g,
							"targets"),
					 0)),
		    proxy ? "web1:9399" : "h\"x:9402");
		g = json_array_get(parsed, 2); /* worker 7 overrides role */
		labels = json_object_get(g, "labels");
		cr_assert_str_eq(json_string_value(
				     json_object_get(labels, "role")),
		    "w\u00e9b \t\\ \"q\"");
		cr_assert_eq(json_object_get(labels, "__metrics_path__") !=
			NULL,
		    proxy);
		for (lines = 0, nl = text; (nl = strchr(nl, '\n')) != NULL;
		     nl++)
			lines++;
		cr_assert_eq(lines, 5, "[, 3 groups, ]: %s", text);
		json_decref(parsed);
		free(text);
	}
	labels_finish(&statics);
}
