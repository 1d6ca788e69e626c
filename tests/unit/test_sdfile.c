#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "promfork.h"

static char dir[] = "/tmp/promfork-test-sdfile.XXXXXX";

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	system(cmd);
}

TestSuite(sdfile, .init = setup, .fini = teardown);

static char *
path_in(const char *name)
{
	char *p;

	xasprintf(&p, "%s/%s", dir, name);
	return p;
}

static void
refused(const char *path, const char *needle)
{
	char *cause = NULL;

	cr_assert_eq(sdfile_check(path, &cause), -1, "accepted %s", path);
	cr_assert(strstr(cause, needle) != NULL, "\"%s\" not in \"%s\"", needle,
	    cause);
	free(cause);
}

Test(sdfile, check_good_and_bad_paths)
{
	char *good = path_in("app.json"), *nodir = path_in("no/app.json");
	char *notjson = path_in("app.yaml"), *isdir = path_in("d.json");
	char *cause = NULL;

	cr_assert_eq(sdfile_check(good, &cause), 0, "%s", cause);
	refused(nodir, "does not exist");
	refused(notjson, "must end in .json");
	mkdir(isdir, 0755);
	refused(isdir, "not a regular file");
	refused("/proc/promfork.json", "cannot write");
	free(good);
	free(nodir);
	free(notjson);
	free(isdir);
}

Test(sdfile, replace_is_whole_and_leaves_no_temp_files)
{
	char *path = path_in("app.json"), *cause = NULL, buf[64];
	struct stat sb;
	struct dirent *de;
	FILE *f;
	DIR *d;
	int n = 0;

	cr_assert_eq(sdfile_replace(path, "[1]\n", 4, &cause), 0, "%s", cause);
	cr_assert_eq(sdfile_replace(path, "[22]\n", 5, &cause), 0, "%s", cause);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fread(buf, 1, sizeof buf, f), 5);
	fclose(f);
	cr_assert_eq(memcmp(buf, "[22]\n", 5), 0);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0644);
	d = opendir(dir);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' || strstr(de->d_name, "tmp") != NULL)
			n++;
	}
	closedir(d);
	cr_assert_eq(n, 1, "only app.json remains");
	free(path);
}

Test(sdfile, replace_into_missing_directory_fails_cleanly)
{
	char *path = path_in("gone/app.json"), *cause = NULL;

	cr_assert_eq(sdfile_replace(path, "[]\n", 3, &cause), -1);
	cr_assert_not_null(cause);
	free(cause);
	free(path);
}
