/*
 * The writer thread: the file ends as the latest text submitted, results
 * come back on the loop, failures carry their cause, and stopping with a
 * write queued neither hangs nor leaks.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

static char dir[] = "/tmp/promfork-test-writer.XXXXXX";
static struct event_base *base;

struct seen {
	int results;
	int calls;
	char cause[256];
};

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	base = event_base_new();
}

static void
teardown(void)
{
	char cmd[128];

	event_base_free(base);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	system(cmd);
}

TestSuite(writer, .init = setup, .fini = teardown, .timeout = 20);

static void
done_cb(int results, const char *cause, void *arg)
{
	struct seen *s = arg;

	s->results += results;
	s->calls++;
	if (cause != NULL)
		snprintf(s->cause, sizeof s->cause, "%s", cause);
}

/* Runs the loop until want results came back; bounded: 5 s. */
static void
wait_results(struct seen *s, int want)
{
	int i;

	for (i = 0; i < 500 && s->results < want; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (s->results < want)
			usleep(10 * 1000);
	}
	cr_assert_geq(s->results, want, "%d results of %d", s->results, want);
}

static char *
slurp(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	cr_assert_not_null(f, "%s", path);
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

Test(writer, writes_and_reports)
{
	struct seen s = { 0 };
	struct writer *w;
	char *path;

	xasprintf(&path, "%s/app.json", dir);
	w = writer_create(base, path, done_cb, &s);
	writer_submit(w, xstrdup("[1]\n"), 4);
	wait_results(&s, 1);
	cr_assert_str_eq(s.cause, "");
	cr_assert_str_eq(slurp(path), "[1]\n");
	writer_free(w);
	free(path);
}

Test(writer, the_latest_text_lands_last)
{
	struct seen s = { 0 };
	struct writer *w;
	char *path, *text;
	int i;

	xasprintf(&path, "%s/app.json", dir);
	w = writer_create(base, path, done_cb, &s);
	for (i = 0; i < 200; i++) {
		xasprintf(&text, "[%d]\n", i);
		writer_submit(w, text, strlen(text));
	}
	writer_drain(w);
	cr_assert_str_eq(slurp(path), "[199]\n");
	event_base_loop(base, EVLOOP_NONBLOCK);
	cr_assert_geq(s.results, 1);
	cr_assert_leq(s.results, 200, "queued texts are replaced, not kept");
	writer_free(w);
	free(path);
}

Test(writer, a_failure_carries_its_cause)
{
	struct seen s = { 0 };
	struct writer *w;
	char *path;

	xasprintf(&path, "%s/no/such/dir/app.json", dir);
	w = writer_create(base, path, done_cb, &s);
	writer_submit(w, xstrdup("[]\n"), 3);
	wait_results(&s, 1);
	cr_assert(strstr(s.cause, "cannot create a file in") != NULL, "%s",
	    s.cause);
	writer_free(w);
	free(path);
}

Test(writer, stopping_with_a_write_queued)
{
	struct seen s = { 0 };
	struct writer *w;
	char *path;
	int i;

	xasprintf(&path, "%s/app.json", dir);
	w = writer_create(base, path, done_cb, &s);
	for (i = 0; i < 20; i++)
		writer_submit(w, xstrdup("[]\n"), 3);
	writer_free(w); /* joins; the queued text is dropped */
	free(path);
}
