/*
 * webguard.c: the file is taken up again when it changes, a change that
 * does not load keeps the configuration in force (and is tried once, not
 * at every request), and a fixed file is taken up again.
 */
#include <criterion/criterion.h>

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

#define HASH "$2b$04$7qOaILEgy/.SBoxY7d90xeYbW7FZ3Q2lUiZf0M7.XvWx1ohVDIQg6"

static char *dir;

static void
setup(void)
{
	dir = helpers_tmpdir("webguard");
}

static void
teardown(void)
{
	helpers_rmtree(dir);
	free(dir);
}

TestSuite(webguard, .init = setup, .fini = teardown);

/* Writes text and moves the modification time on, as a later edit. */
static void
write_later(const char *path, const char *text, int n)
{
	struct timespec ts[2];

	helpers_write_file(path, text);
	clock_gettime(CLOCK_REALTIME, &ts[0]);
	ts[0].tv_sec += n;
	ts[1] = ts[0];
	cr_assert_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

Test(webguard, bad_file_at_start_is_refused)
{
	char *path = helpers_path(dir, "web.yml"), *cause = NULL;

	helpers_write_file(path, "basic_auth_users:\n  a: plain\n");
	cr_assert_null(webguard_create(path, &cause));
	cr_assert(strstr(cause, "web.yml:2:") != NULL, "%s", cause);
	free(cause);
	free(path);
}

Test(webguard, reload_takes_changes_and_keeps_the_old_on_error)
{
	char *path = helpers_path(dir, "web.yml"), *cause = NULL;
	struct webguard *g;

	helpers_write_file(path, "basic_auth_users:\n  a: " HASH "\n");
	g = webguard_create(path, &cause);
	cr_assert_not_null(g, "%s", cause);
	cr_assert_eq(webguard_reload(g), 0, "nothing changed");
	write_later(path, "basic_auth_users:\n  b: " HASH "\n", 1);
	cr_assert_eq(webguard_reload(g), 1);
	cr_assert_eq(webguard_reload(g), 0);
	write_later(path, "basic_auth_users:\n  b: [\n", 2);
	cr_assert_eq(webguard_reload(g), -1, "a broken file is refused");
	cr_assert_eq(webguard_reload(g), -1, "and stays refused");
	write_later(path,
	    "tls_server_config:\n  cert_file: x.crt\n"
	    "  key_file: x.key\n",
	    3);
	cr_assert_eq(webguard_reload(g), -1, "missing certificates");
	write_later(path, "basic_auth_users:\n  c: " HASH "\n", 4);
	cr_assert_eq(webguard_reload(g), 1, "fixed");
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(webguard_reload(g), -1, "a removed file");
	webguard_free(g);
	free(path);
}
