/*
 * sdfile.c: the path check, and what promfork leaves behind at exit: [],
 * no file, or the current workers.
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
static struct target_config tc = { "127.0.0.1", NULL, NULL };
static pid_t kid;

static void
setup(void)
{
	dir = helpers_tmpdir("sdfile");
	path = helpers_path(dir, "app.json");
	base = event_base_new();
	registry_init(&reg, base, 42200, 42203, NULL, NULL);
}

static void
teardown(void)
{
	registry_finish(&reg);
	event_base_free(base);
	helpers_kid_kill(kid);
	helpers_rmtree(dir);
	free(path);
	free(dir);
}

TestSuite(sdfile, .init = setup, .fini = teardown, .timeout = 20);

static void
refused(const char *p, const char *needle)
{
	char *cause = NULL;

	cr_assert_eq(sdfile_check(p, &cause), -1, "accepted %s", p);
	cr_assert(strstr(cause, needle) != NULL, "\"%s\" not in \"%s\"", needle,
	    cause);
	free(cause);
}

Test(sdfile, check_good_and_bad_paths)
{
	char *nodir = helpers_path(dir, "no/app.json");
	char *notjson = helpers_path(dir, "app.yaml");
	char *isdir = helpers_path(dir, "d.json");
	char *cause = NULL;

	cr_assert_eq(sdfile_check(path, &cause), 0, "%s", cause);
	refused(nodir, "does not exist");
	refused(notjson, "must end in .json");
	mkdir(isdir, 0755);
	refused(isdir, "not a regular file");
	refused("/proc/promfork.json", "cannot write");
	free(nodir);
	free(notjson);
	free(isdir);
}

/* A mirror of a registry with one worker, written once. */
static void
one_worker(struct mirror *m)
{
	struct lease *l;
	char *cause = NULL, *text;
	enum registry_error error;
	int created;

	kid = helpers_kid();
	sdfile_init(m, path, &reg, &tc);
	l = registry_lease_pid(&reg, kid, NULL, LEASE_API, -1, &created, &error,
	    &cause);
	cr_assert_not_null(l, "%s", cause);
	cr_assert_eq(mirror_flush(m), 0);
	text = helpers_read_file(path);
	cr_assert(strstr(text, "127.0.0.1:42200") != NULL, "%s", text);
	free(text);
}

Test(sdfile, finish_empty_leaves_no_targets)
{
	struct mirror m;
	char *text;

	one_worker(&m);
	cr_assert_eq(sdfile_finish(&m, SD_EXIT_EMPTY), 0);
	text = helpers_read_file(path);
	cr_assert_str_eq(text, "[]\n");
	free(text);
	cr_assert_eq(reg.nlisteners, 0);
}

Test(sdfile, finish_remove_leaves_no_file)
{
	struct mirror m;

	one_worker(&m);
	cr_assert_eq(sdfile_finish(&m, SD_EXIT_REMOVE), 0);
	cr_assert_eq(access(path, F_OK), -1);
	cr_assert_eq(helpers_dir_entries(dir), 0);
}

Test(sdfile, finish_keep_leaves_the_workers)
{
	struct mirror m;
	char *text;

	one_worker(&m);
	unlink(path); /* so that only the last word can bring it back */
	cr_assert_eq(sdfile_finish(&m, SD_EXIT_KEEP), 0);
	text = helpers_read_file(path);
	cr_assert_not_null(text);
	cr_assert(strstr(text, "127.0.0.1:42200") != NULL, "%s", text);
	cr_assert(strstr(text, "\"worker\": \"0\"") != NULL, "%s", text);
	free(text);
}

Test(sdfile, finish_reports_a_failure)
{
	struct mirror m;
	char *sub = helpers_path(dir, "sub"), *p = helpers_path(sub, "a.json");

	cr_assert_eq(mkdir(sub, 0755), 0);
	sdfile_init(&m, p, &reg, &tc);
	cr_assert_eq(mirror_flush(&m), 0);
	cr_assert_eq(unlink(p), 0);
	cr_assert_eq(rmdir(sub), 0);
	cr_assert_eq(sdfile_finish(&m, SD_EXIT_EMPTY), -1, "no directory");
	free(p);
	free(sub);
}
