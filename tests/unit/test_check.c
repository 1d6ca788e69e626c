#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "promfork.h"

static char dir[] = "/tmp/promfork-test-check.XXXXXX";

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

TestSuite(check, .init = setup, .fini = teardown);

Test(check, socket_paths)
{
	char *cause = NULL, *path, longpath[200];

	xasprintf(&path, "%s/ok.sock", dir);
	cr_assert_eq(check_socket(path, &cause), 0);
	free(path);

	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	cr_assert_eq(check_socket(longpath, &cause), -1);
	cr_assert_not_null(strstr(cause, "longer than"));
	free(cause);

	cr_assert_eq(check_socket("/nonexistent-promfork/s.sock", &cause), -1);
	cr_assert_not_null(strstr(cause, "does not exist"), "%s", cause);
	free(cause);

	xasprintf(&path, "%s/file", dir);
	fclose(fopen(path, "w"));
	cr_assert_eq(check_socket(path, &cause), -1);
	cr_assert_not_null(strstr(cause, "not a socket"), "%s", cause);
	free(cause);
	free(path);
}

static int
unix_listener(const char *path, int do_listen)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	if (do_listen)
		cr_assert_eq(listen(fd, 1), 0);
	return fd;
}

Test(check, socket_live_and_stale)
{
	char *cause = NULL, *path;
	int fd;

	xasprintf(&path, "%s/live.sock", dir);
	fd = unix_listener(path, 1);
	cr_assert_eq(check_socket(path, &cause), -1);
	cr_assert_not_null(strstr(cause, "in use"), "%s", cause);
	free(cause);
	close(fd);
	/* left behind by a dead promfork: a start would replace it */
	cr_assert_eq(check_socket(path, &cause), 0);
	free(path);
}

/* A TCP listener on an ephemeral port of every IPv4 address. */
static int
tcp_listener(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static char *
read_all(FILE *f)
{
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);

	buf[n] = '\0';
	return buf;
}

/* No suite fixtures here: stdout is redirected, the test makes its dir. */
TestSuite(check_run);

Test(check_run, reports_holder_and_fails_when_no_port_is_free,
    .init = cr_redirect_stdout)
{
	struct options o;
	char want[64], *out;
	uint16_t port;
	int fd, rc;

	setup();
	fd = tcp_listener(&port);
	memset(&o, 0, sizeof o);
	o.port_low = o.port_high = port;
	xasprintf(&o.sd_file, "%s/app.json", dir);
	rc = check_run(&o);
	fflush(stdout);
	out = read_all(cr_get_redirected_stdout());
	snprintf(want, sizeof want, "held by pid %d", (int)getpid());
	cr_assert_not_null(strstr(out, want), "%s", out);
	snprintf(want, sizeof want, "uid %u)", (unsigned)getuid());
	cr_assert_not_null(strstr(out, want), "%s", out);
	cr_assert_not_null(strstr(out, "none of the 1 ports"), "%s", out);
	cr_assert_eq(rc, 2);
	close(fd);
	free(o.sd_file);
	teardown();
}

Test(check_run, usable_then_not, .init = cr_redirect_stdout)
{
	struct options o;
	uint16_t port;
	char *out;
	int fd, rc;

	setup();
	fd = tcp_listener(&port);
	close(fd); /* now very likely free */
	memset(&o, 0, sizeof o);
	o.port_low = port;
	o.port_high = port;
	xasprintf(&o.sd_file, "%s/app.json", dir);
	rc = check_run(&o);
	fflush(stdout);
	out = read_all(cr_get_redirected_stdout());
	cr_assert_eq(rc, 0, "%s", out);
	cr_assert_not_null(strstr(out, "usable"), "%s", out);
	free(o.sd_file);

	o.sd_file = xstrdup("/nonexistent-promfork/app.json");
	rc = check_run(&o);
	cr_assert_eq(rc, 2);
	free(o.sd_file);
	teardown();
}
