#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "promfork.h"

/*
 * Each test runs in its own process (criterion forks), so the logger's
 * state and fd 2 are ours to change.  stderr goes into a pipe that
 * collect() reads back.
 */
static int pipe_rd = -1;

static void
capture(enum log_level level, int json, int journal)
{
	struct stat sb;
	char js[64];
	int fds[2];

	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	cr_assert_neq(dup2(fds[1], STDERR_FILENO), -1);
	close(fds[1]);
	pipe_rd = fds[0];
	if (journal) {
		cr_assert_eq(fstat(STDERR_FILENO, &sb), 0);
		snprintf(js, sizeof js, "%llu:%llu",
		    (unsigned long long)sb.st_dev,
		    (unsigned long long)sb.st_ino);
		setenv("JOURNAL_STREAM", js, 1);
	} else
		unsetenv("JOURNAL_STREAM");
	log_init(level, json);
}

/* Returns everything logged so far; stderr is closed, so call it once. */
static char *
collect(void)
{
	static char buf[65536];
	size_t len = 0;
	ssize_t n;

	close(STDERR_FILENO);
	while ((n = read(pipe_rd, buf + len, sizeof buf - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	close(pipe_rd);
	return buf;
}

Test(log, level_parse)
{
	enum log_level l;

	cr_assert_eq(log_level_parse("debug", &l), 0);
	cr_assert_eq(l, LOG_LEVEL_DEBUG);
	cr_assert_eq(log_level_parse("error", &l), 0);
	cr_assert_eq(l, LOG_LEVEL_ERROR);
	cr_assert_eq(log_level_parse("warning", &l), -1);
	cr_assert_eq(log_level_parse("", &l), -1);
	cr_assert_eq(log_level_parse("INFO", &l), -1);
}

Test(log, text_one_line_per_event_with_level)
{
	capture(LOG_LEVEL_DEBUG, 0, 0);
	log_info("worker %d leased port %u", 3, 9403);
	log_warnx("plain warning");
	log_debug("details");
	cr_assert_str_eq(collect(),
	    "promfork: info: worker 3 leased port 9403\n"
	    "promfork: warn: plain warning\n"
	    "promfork: debug: details\n");
}

Test(log, text_threshold)
{
	capture(LOG_LEVEL_WARN, 0, 0);
	log_info("hidden");
	log_debug("hidden too");
	log_warnx("shown");
	cr_assert_str_eq(collect(), "promfork: warn: shown\n");
}

Test(log, warn_adds_strerror_and_keeps_errno)
{
	capture(LOG_LEVEL_INFO, 0, 0);
	errno = ENOENT;
	log_warn("cannot open %s", "x.json");
	cr_assert_eq(errno, ENOENT);
	cr_assert_str_eq(collect(),
	    "promfork: warn: cannot open x.json: No such file or directory\n");
}

Test(log, text_escapes_newlines_and_controls)
{
	capture(LOG_LEVEL_INFO, 0, 0);
	log_info("two\nlines\tand\x1b[31mred");
	cr_assert_str_eq(collect(),
	    "promfork: info: two\\nlines\tand\\x1b[31mred\n");
}

static json_t *
json_line(const char *line)
{
	json_error_t err;
	json_t *j = json_loads(line, JSON_DISABLE_EOF_CHECK, &err);

	cr_assert_not_null(j, "not JSON: %s (%s)", line, err.text);
	return j;
}

Test(log, json_fields)
{
	char *out, *nl;
	json_t *j;

	capture(LOG_LEVEL_INFO, 1, 0);
	log_warnx("sd file %s written", "app.json");
	out = collect();
	nl = strchr(out, '\n');
	cr_assert_not_null(nl);
	cr_assert_eq(nl[1], '\0', "one line: %s", out);
	j = json_line(out);
	cr_assert_str_eq(json_string_value(json_object_get(j, "level")),
	    "warn");
	cr_assert_str_eq(json_string_value(json_object_get(j, "msg")),
	    "sd file app.json written");
	cr_assert(json_is_number(json_object_get(j, "ts")));
	cr_assert_gt(json_number_value(json_object_get(j, "ts")), 1.5e9);
	json_decref(j);
}

Test(log, json_escapes)
{
	json_t *j;

	capture(LOG_LEVEL_INFO, 1, 0);
	log_info("q\"b\\n\nc\x01 caf\xc3\xa9 bad\xff\xc3 end");
	j = json_line(collect());
	cr_assert_str_eq(json_string_value(json_object_get(j, "msg")),
	    "q\"b\\n\nc\x01 caf\xc3\xa9 bad\xef\xbf\xbd\xef\xbf\xbd end");
	json_decref(j);
}

Test(log, json_long_message_stays_valid)
{
	char big[3000];
	json_t *j;
	char *out;

	memset(big, '"', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	capture(LOG_LEVEL_INFO, 1, 0);
	log_info("%s", big);
	out = collect();
	cr_assert_eq(strchr(out, '\n')[1], '\0');
	j = json_line(out);
	cr_assert_gt(strlen(json_string_value(json_object_get(j, "msg"))),
	    1000);
	json_decref(j);
}

Test(log, journal_priority_prefix)
{
	capture(LOG_LEVEL_DEBUG, 0, 1);
	log_info("started");
	log_warnx("careful");
	log_debug("noise");
	cr_assert_str_eq(collect(), "<6>started\n<4>careful\n<7>noise\n");
}

Test(log, journal_json_keeps_priority)
{
	char *out;
	json_t *j;

	capture(LOG_LEVEL_INFO, 1, 1);
	log_warnx("careful");
	out = collect();
	cr_assert_eq(strncmp(out, "<4>{", 4), 0, "got %s", out);
	j = json_line(out + 3);
	cr_assert_str_eq(json_string_value(json_object_get(j, "level")),
	    "warn");
	json_decref(j);
}

Test(log, journal_stream_of_another_file_is_ignored)
{
	setenv("JOURNAL_STREAM", "1:2", 1);
	capture(LOG_LEVEL_INFO, 0, 0);
	setenv("JOURNAL_STREAM", "1:2", 1);
	log_init(LOG_LEVEL_INFO, 0);
	log_info("plain");
	cr_assert_str_eq(collect(), "promfork: info: plain\n");
}

Test(log, fatalx_exits_1_with_error_priority, .exit_code = 1)
{
	capture(LOG_LEVEL_ERROR, 0, 1);
	fatalx("cannot continue");
}

/* A flood of one kind of line is cut to LOG_LIMIT_PER_S a second, and
 * the next second says how many were left out. */
Test(log, limit_cuts_a_flood)
{
	struct log_limit ll;
	struct timespec now;
	int i, logged = 0;
	char *out;

	memset(&ll, 0, sizeof ll);
	capture(LOG_LEVEL_INFO, 0, 0);
	/* start at the beginning of a second, so that all of it is one */
	do
		clock_gettime(CLOCK_MONOTONIC, &now);
	while (now.tv_nsec > 100000000);
	for (i = 0; i < 1000; i++)
		logged += log_limit(&ll, "things");
	cr_assert_eq(logged, LOG_LIMIT_PER_S);
	cr_assert_eq(ll.suppressed, 1000 - LOG_LIMIT_PER_S);
	ll.second--; /* as if a second had passed */
	cr_assert_eq(log_limit(&ll, "things"), 1);
	out = collect();
	cr_assert(strstr(out, "990 more things not logged") != NULL, "%s", out);
}
