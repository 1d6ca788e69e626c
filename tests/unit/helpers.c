/*
 * What the unit suites share (helpers.h).  Failures here are the test's:
 * they assert with criterion, so a broken fixture fails the test that
 * uses it instead of crashing it.
 */
#include <criterion/criterion.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "helpers.h"
#include "promfork.h"

char *
helpers_tmpdir(const char *suite)
{
	char *dir;

	xasprintf(&dir, "/tmp/promfork-test-%s.XXXXXX", suite);
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
	return dir;
}

static int
helpers_rm_cb(const char *path, const struct stat *sb, int flag,
    struct FTW *ftw)
{
	/* a test may have left a directory unreadable */
	if (flag == FTW_DNR)
		chmod(path, 0700);
	(void)remove(path);
	return 0;
}

void
helpers_rmtree(const char *dir)
{
	if (dir != NULL)
		nftw(dir, helpers_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

char *
helpers_path(const char *dir, const char *name)
{
	char *p;

	xasprintf(&p, "%s/%s", dir, name);
	return p;
}

char *
helpers_read_file(const char *path)
{
	char *text = NULL, *cause = NULL;
	size_t len;

	if (file_read(path, 64 * 1024 * 1024, &text, &len, &cause) != 0)
		cr_assert_fail("%s", cause);
	return text;
}

void
helpers_write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

int
helpers_dir_entries(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir(dir);
	int n = 0;

	cr_assert_not_null(d, "%s", dir);
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 &&
		    strcmp(de->d_name, "..") != 0)
			n++;
	}
	closedir(d);
	return n;
}

static long long
helpers_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
helpers_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

int
helpers_loop_until(struct event_base *base, int (*cond)(void *), void *arg,
    int ms)
{
	long long end = helpers_now_ms() + ms;

	while (!cond(arg) && helpers_now_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (!cond(arg))
			helpers_sleep_ms(1);
	}
	return cond(arg);
}

static int
helpers_never(void *arg)
{
	return 0;
}

void
helpers_loop_ms(struct event_base *base, int ms)
{
	helpers_loop_until(base, helpers_never, NULL, ms);
}

int
helpers_under_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");

	return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

int
helpers_probe_all_free(uint16_t port, void *arg)
{
	return 1;
}

const char *
helpers_body_of(const char *response)
{
	const char *p = strstr(response, "\r\n\r\n");

	cr_assert_not_null(p, "no body in %s", response);
	return p + 4;
}

pid_t
helpers_kid(void)
{
	pid_t pid = fork();

	cr_assert_neq(pid, -1);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

void
helpers_kid_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

char *
helpers_evbuffer_text(struct evbuffer *out)
{
	size_t len = evbuffer_get_length(out);
	char *text = malloc(len + 1);

	cr_assert_not_null(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

int
helpers_count(const char *hay, const char *needle)
{
	int n = 0;

	for (; (hay = strstr(hay, needle)) != NULL; hay++)
		n++;
	return n;
}

/*
 * Writes req on fd and runs the loop until what has come back holds until
 * (or the peer closes, or about 2 s pass); returns the length read into
 * buf, NUL-terminated.
 */
int
helpers_ask(struct event_base *base, int fd, const char *req, const char *until,
    char *buf, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	int i;

	buf[0] = '\0';
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		return -1;
	for (i = 0; i < 400; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = read(fd, buf + len, cap - 1 - len);
		if (n == 0)
			break;
		if (n > 0) {
			len += (size_t)n;
			buf[len] = '\0';
			if (strstr(buf, until) != NULL)
				break;
		}
		helpers_sleep_ms(5);
	}
	return (int)len;
}
