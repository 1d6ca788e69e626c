/*
 * The mirror: a registry change is written after the debounce, off the
 * loop; a burst of changes is one write of the last text; a failed write
 * is counted and retried; stopping with a write queued neither hangs nor
 * leaves a half-written or temporary file behind.
 */
#include <criterion/criterion.h>

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"
#include "promfork.h"

static char *dir, *path;
static struct event_base *base;
static struct registry reg;

/* What the fake sink renders: text, and how often it was asked. */
struct sink {
	char text[64];
	int renders;
};

static void
setup(void)
{
	dir = helpers_tmpdir("mirror");
	path = helpers_path(dir, "app.json");
	base = event_base_new();
	registry_init(&reg, base, 42100, 42107, NULL, NULL);
}

static void
teardown(void)
{
	registry_finish(&reg);
	event_base_free(base);
	helpers_rmtree(dir);
	free(path);
	free(dir);
}

TestSuite(mirror, .init = setup, .fini = teardown, .timeout = 20);

static char *
sink_render(const struct registry *r, const void *arg, size_t *len)
{
	struct sink *s = (struct sink *)arg;

	s->renders++;
	*len = strlen(s->text);
	return xstrdup(s->text);
}

static void
start(struct mirror *m, struct sink *s, const char *p, int debounce_ms)
{
	struct mirror_config cfg = {
		.path = p,
		.what = "test file",
		.reg = &reg,
		.render = sink_render,
		.arg = s,
		.debounce_ms = debounce_ms,
		.retry_ms = 50,
	};

	mirror_init(m, &cfg);
}

/* What the registry does on every lease and release. */
static void
changed(void)
{
	size_t i;

	for (i = 0; i < reg.nlisteners; i++)
		reg.listeners[i].fn(reg.listeners[i].arg);
}

static int
written(void *arg)
{
	const struct mirror *m = arg;

	return m->writes >= 1;
}

Test(mirror, a_change_is_written_after_the_debounce)
{
	struct sink s = { "[1]\n", 0 };
	struct mirror m;
	char *text;

	start(&m, &s, path, 5);
	cr_assert_null(helpers_read_file(path), "nothing before a change");
	changed();
	cr_assert(helpers_loop_until(base, written, &m, 5000), "not written");
	text = helpers_read_file(path);
	cr_assert_str_eq(text, "[1]\n");
	cr_assert_eq(m.errors, 0);
	cr_assert_neq(m.last_write, 0);
	free(text);
	mirror_finish(&m);
	cr_assert_eq(reg.nlisteners, 0, "finish stops following the registry");
}

Test(mirror, a_burst_of_changes_is_one_write_of_the_last_text)
{
	struct sink s = { "", 0 };
	struct mirror m;
	char *text;
	int i;

	start(&m, &s, path, 20);
	for (i = 0; i < 200; i++) {
		snprintf(s.text, sizeof s.text, "[%d]\n", i);
		changed();
	}
	cr_assert(helpers_loop_until(base, written, &m, 5000), "not written");
	helpers_loop_ms(base, 60); /* time for a second write, were there one */
	text = helpers_read_file(path);
	cr_assert_str_eq(text, "[199]\n", "the file holds the last text");
	cr_assert_eq(s.renders, 1, "200 changes, %d renders", s.renders);
	cr_assert_eq(m.writes, 1, "200 changes, %llu writes", m.writes);
	free(text);
	mirror_finish(&m);
}

static int
holds_199(void *arg)
{
	char *text = helpers_read_file(path);
	int yes = text != NULL && strcmp(text, "[199]\n") == 0;

	free(text);
	return yes;
}

Test(mirror, the_latest_text_lands_last_when_the_thread_is_busy)
{
	struct sink s = { "", 0 };
	struct mirror m;
	char *text;
	int i;

	/* No debounce: every change is rendered and handed to the thread,
	 * which may still be writing an older one. */
	start(&m, &s, path, 0);
	for (i = 0; i < 200; i++) {
		snprintf(s.text, sizeof s.text, "[%d]\n", i);
		changed();
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	cr_assert_eq(s.renders, 200);
	cr_assert(helpers_loop_until(base, holds_199, NULL, 5000), "not [199]");
	helpers_loop_ms(base, 50); /* an older text must not land after it */
	text = helpers_read_file(path);
	cr_assert_str_eq(text, "[199]\n");
	free(text);
	cr_assert_geq(m.writes, 1);
	cr_assert_eq(m.errors, 0);
	cr_assert_eq(helpers_dir_entries(dir), 1, "no temporary file is left");
	mirror_finish(&m);
}

Test(mirror, a_failed_write_is_counted_and_retried)
{
	struct sink s = { "[]\n", 0 };
	struct mirror m;
	char *sub = helpers_path(dir, "later"),
	     *p = helpers_path(sub, "a.json");
	char *text;

	start(&m, &s, p, 5);
	cr_assert_eq(mirror_flush(&m), -1, "the directory is missing");
	cr_assert_eq(m.errors, 1);
	cr_assert_eq(m.writes, 0);
	cr_assert_eq(mkdir(sub, 0755), 0);
	cr_assert(helpers_loop_until(base, written, &m, 5000), "not retried");
	text = helpers_read_file(p);
	cr_assert_str_eq(text, "[]\n");
	cr_assert_eq(s.renders, 2, "one failed, one retried");
	free(text);
	mirror_finish(&m);
	free(p);
	free(sub);
}

Test(mirror, a_failure_off_the_loop_is_counted)
{
	struct sink s = { "[]\n", 0 };
	struct mirror m;
	char *p = helpers_path(dir, "gone/a.json");

	start(&m, &s, p, 0);
	changed();
	event_base_loop(base, EVLOOP_NONBLOCK); /* rendered, handed over */
	cr_assert_eq(s.renders, 1);
	cr_assert(helpers_loop_until(base, written, &m, 300) == 0);
	cr_assert_geq(m.errors, 1, "the thread's failure came back");
	mirror_finish(&m);
	free(p);
}

Test(mirror, stopping_with_a_write_queued)
{
	struct sink s = { "[42]\n", 0 };
	struct mirror m;
	char *text;
	int i;

	start(&m, &s, path, 0);
	for (i = 0; i < 20; i++) {
		changed();
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	cr_assert_eq(s.renders, 20);
	mirror_finish(&m); /* joins the thread; what is queued is dropped */
	cr_assert_eq(reg.nlisteners, 0);
	changed(); /* the mirror is gone: nothing may fire */
	event_base_loop(base, EVLOOP_NONBLOCK);
	text = helpers_read_file(path);
	/* whether a write finished before the stop is the thread's timing;
	 * that no file is half written or left over is not */
	if (text != NULL)
		cr_assert_str_eq(text, "[42]\n");
	cr_assert_leq(helpers_dir_entries(dir), 1, "a temporary file is left");
	free(text);
}
