/*
 * webguard.c: the file is taken up again when it changes, a change that
 * does not load keeps the configuration in force (and is tried once, not
 * at every request), and a fixed file is taken up again.
 */
#include <criterion/criterion.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <event2/event.h>

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

static void
ok_handler(struct http_conn *c, struct http_request *req, void *arg)
{
	http_reply(c, 200, "text/plain", "ok", 2);
}

/* Sends req on a new connection to path; the answer in buf, read until
 * it holds until. */
static void
ask(struct event_base *base, const char *path, const char *req,
    const char *until, char *buf, size_t cap)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	helpers_ask(base, fd, req, until, buf, cap);
	close(fd);
}

/* The gate: 401 with WWW-Authenticate without the password, the
 * configured header on every answer, the handler only with the password. */
Test(webguard, gate_asks_for_the_password, .timeout = 20)
{
	static const struct http_limits l = { .header_max = 4096,
		.body_max = 64,
		.deadline_ms = 2000,
		.conns_max = 8 };
	char *path = helpers_path(dir, "web.yml"),
	     *sock = helpers_path(dir, "s");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct event_base *base = event_base_new();
	struct http_server *s;
	struct webguard *g;
	char *cause = NULL, buf[4096];
	int fd;

	/* user a, password "secret" */
	helpers_write_file(path,
	    "http_server_config:\n  headers:\n"
	    "    X-Frame-Options: deny\n"
	    "basic_auth_users:\n  a: " HASH "\n");
	g = webguard_create(path, &cause);
	cr_assert_not_null(g, "%s", cause);
	strcpy(sun.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	cr_assert_eq(listen(fd, 16), 0);
	s = http_server_create(base, fd, &l, ok_handler, NULL);
	webguard_attach(g, s);

	ask(base, sock, "GET / HTTP/1.1\r\n\r\n", "}\n", buf, sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 401 Unauthorized\r\n", 27) == 0, "%s",
	    buf);
	cr_assert(strstr(buf,
		      "\r\nWWW-Authenticate: Basic realm=\"promfork\"") != NULL,
	    "%s", buf);
	cr_assert(strstr(buf, "\r\nX-Frame-Options: deny\r\n") != NULL, "%s",
	    buf);
	/* a:wrong */
	ask(base, sock,
	    "GET / HTTP/1.1\r\nAuthorization: Basic YTp3cm9uZw==\r\n\r\n",
	    "}\n", buf, sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 401 ", 13) == 0, "%s", buf);
	/* a:secret */
	ask(base, sock,
	    "GET / HTTP/1.1\r\nAuthorization: Basic YTpzZWNyZXQ=\r\n\r\n",
	    "\r\n\r\nok", buf, sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	cr_assert(strstr(buf, "\r\nX-Frame-Options: deny\r\n") != NULL, "%s",
	    buf);
	cr_assert(strstr(buf, "WWW-Authenticate") == NULL, "%s", buf);
	cr_assert(strstr(buf, "\r\n\r\nok") != NULL, "%s", buf);
	/* the health checks, and only they, need no password */
	ask(base, sock, "GET /-/healthy HTTP/1.1\r\n\r\n", "\r\n\r\nok", buf,
	    sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ask(base, sock, "GET /-/ready?x=1 HTTP/1.1\r\n\r\n", "\r\n\r\nok", buf,
	    sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
	ask(base, sock, "GET /-/healthy/x HTTP/1.1\r\n\r\n", "}\n", buf,
	    sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 401 ", 13) == 0, "%s", buf);
	ask(base, sock, "GET /-/readyz HTTP/1.1\r\n\r\n", "}\n", buf,
	    sizeof buf);
	cr_assert(strncmp(buf, "HTTP/1.1 401 ", 13) == 0, "%s", buf);

	http_server_free(s);
	webguard_free(g);
	event_base_free(base);
	free(sock);
	free(path);
}
