/*
 * file.c: the atomic replace leaves the whole new text, mode 0644 and no
 * temporary file; a bounded read refuses what is not a small regular file.
 */
#include <criterion/criterion.h>

#include <sys/stat.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static char *dir;

static void
setup(void)
{
	dir = helpers_tmpdir("file");
}

static void
teardown(void)
{
	helpers_rmtree(dir);
	free(dir);
}

TestSuite(file, .init = setup, .fini = teardown);

Test(file, replace_is_whole_and_leaves_no_temp_files)
{
	char *path = helpers_path(dir, "app.json"), *cause = NULL, *text;
	struct stat sb;

	cr_assert_eq(file_replace(path, "[1]\n", 4, 0644, &cause), 0, "%s",
	    cause);
	cr_assert_eq(file_replace(path, "[22]\n", 5, 0644, &cause), 0, "%s",
	    cause);
	text = helpers_read_file(path);
	cr_assert_str_eq(text, "[22]\n");
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0644);
	cr_assert_eq(helpers_dir_entries(dir), 1, "only app.json remains");
	/* the state file is private */
	cr_assert_eq(file_replace(path, "{}\n", 3, 0600, &cause), 0, "%s",
	    cause);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);
	free(text);
	free(path);
}

Test(file, replace_into_missing_directory_fails_cleanly)
{
	char *path = helpers_path(dir, "gone/app.json"), *cause = NULL;

	cr_assert_eq(file_replace(path, "[]\n", 3, 0644, &cause), -1);
	cr_assert(strstr(cause, "cannot create a file in") != NULL, "%s",
	    cause);
	free(cause);
	free(path);
}

Test(file, read_is_bounded_and_regular_files_only)
{
	char *path = helpers_path(dir, "s.json"), *buf, *cause = NULL;
	size_t len;

	cr_assert_eq(file_read(path, 16, &buf, &len, &cause), 0, "missing");
	cr_assert_null(buf);
	cr_assert_eq(len, 0);
	helpers_write_file(path, "0123456789abcdef");
	cr_assert_eq(file_read(path, 16, &buf, &len, &cause), 0);
	cr_assert_eq(len, 16);
	cr_assert_str_eq(buf, "0123456789abcdef");
	free(buf);
	cr_assert_eq(file_read(path, 15, &buf, &len, &cause), -1, "too big");
	cr_assert(strstr(cause, "at most 15 bytes") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	cr_assert_eq(file_read(dir, 15, &buf, &len, &cause), -1, "directory");
	cr_assert(strstr(cause, "not a regular file") != NULL, "%s", cause);
	free(cause);
	free(path);
}

Test(file, dir_and_writable)
{
	char *d = file_dir("/a/b/c.json");

	cr_assert_str_eq(d, "/a/b");
	free(d);
	d = file_dir("c.json");
	cr_assert_str_eq(d, ".");
	free(d);
	cr_assert_eq(file_dir_writable(dir), 0);
	cr_assert_eq(helpers_dir_entries(dir), 0, "the probe is removed");
	cr_assert_eq(file_dir_writable("/proc"), -1);
}
