#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <fcntl.h>

#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static const struct http_limits lim = {
	.header_max = 1024,
	.body_max = 64,
	.deadline_ms = 1000,
	.conns_max = 4,
};

static int
parse(const char *text, struct http_request *req, size_t *consumed, int *status)
{
	return http_request_parse(text, strlen(text), &lim, req, consumed,
	    status);
}

Test(http, get_with_headers)
{
	const char *t = "GET /v1/workers?x=1 HTTP/1.1\r\nHost: a\r\n"
			"X-Thing:  spaced value  \r\n\r\nNEXT";
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse(t, &req, &used, &status), 1);
	cr_assert_str_eq(req.method, "GET");
	cr_assert_str_eq(req.target, "/v1/workers?x=1");
	cr_assert_eq(req.minor, 1);
	cr_assert_eq(req.keep_alive, 1);
	cr_assert_str_eq(http_request_header(&req, "x-thing"), "spaced value");
	cr_assert_null(http_request_header(&req, "Content-Length"));
	cr_assert_eq(used, strlen(t) - 4, "pipelined bytes are left");
	http_request_finish(&req);
}

Test(http, post_with_body_and_bare_newlines)
{
	const char *t = "POST /v1/workers HTTP/1.0\nContent-Length: 4\n\n{}{}";
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse(t, &req, &used, &status), 1);
	cr_assert_eq(req.body_len, 4);
	cr_assert_str_eq(req.body, "{}{}");
	cr_assert_eq(req.keep_alive, 0, "HTTP/1.0 closes by default");
	http_request_finish(&req);
}

Test(http, incomplete_until_whole)
{
	const char *full =
	    "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
	struct http_request req;
	size_t used, n;
	int status;

	for (n = 0; n < strlen(full); n++)
		cr_assert_eq(http_request_parse(full, n, &lim, &req, &used,
				 &status),
		    0, "incomplete at %zu", n);
	cr_assert_eq(parse(full, &req, &used, &status), 1);
	http_request_finish(&req);
}

Test(http, connection_header)
{
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &req,
			 &used, &status),
	    1);
	cr_assert_eq(req.keep_alive, 0);
	http_request_finish(&req);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			 &req, &used, &status),
	    1);
	cr_assert_eq(req.keep_alive, 1);
	http_request_finish(&req);
}

static void
refused(const char *text, size_t len, int want)
{
	struct http_request req;
	size_t used;
	int status = 0;

	cr_assert_eq(http_request_parse(text, len, &lim, &req, &used, &status),
	    -1, "accepted %.*s", (int)len, text);
	cr_assert_eq(status, want, "status %d, want %d for %.*s", status, want,
	    (int)len, text);
}

#define REFUSED(text, want) refused(text, sizeof text - 1, want)

Test(http, bad_requests_get_the_right_status)
{
	char big[2048];

	REFUSED("\r\n\r\n", 400);
	REFUSED("GET\r\n\r\n", 400);
	REFUSED("get / HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET x HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1 \r\n\r\n", 400);
	REFUSED("GET / HTTP/2.0\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.2\r\n\r\n", 505);
	REFUSED("GET / FTP/1.1\r\n\r\n", 400);
	REFUSED("GET /\x01 HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\n: empty\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nX: \0\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: "
		"99999999999999999999999999\r\n\r\n",
	    400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413);
	REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	memset(big, 'a', sizeof big);
	refused(big, sizeof big, 431);
	memcpy(big, "GET /", 5);
	refused(big, sizeof big, 431);
}

Test(http, too_many_headers)
{
	char text[1024];
	size_t n;
	int i;

	n = (size_t)snprintf(text, sizeof text, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_HEADERS_MAX + 1; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "H%d: v\r\n",
		    i);
	n += (size_t)snprintf(text + n, sizeof text - n, "\r\n");
	refused(text, n, 431);
}

Test(http, long_target)
{
	struct http_limits big = lim;
	struct http_request req;
	static char text[5000];
	size_t used;
	int status;

	big.header_max = 8192;
	memcpy(text, "GET /", 5);
	memset(text + 5, 'a', 3000);
	strcpy(text + 3005, " HTTP/1.1\r\n\r\n");
	cr_assert_eq(http_request_parse(text, strlen(text), &big, &req, &used,
			 &status),
	    -1);
	cr_assert_eq(status, 414);
}

Test(http, status_texts)
{
	cr_assert_str_eq(http_status_text(404), "Not Found");
	cr_assert_str_eq(http_status_text(413), "Content Too Large");
	cr_assert_str_eq(http_status_text(999), "Unknown");
}

/* Live: a server on a Unix socket, served by the loop in this thread. */
static void
ok_handler(struct http_conn *c, struct http_request *req, void *arg)
{
	http_reply(c, 200, "text/plain", "ok", 2);
}

/* Answers whether the peer is still the process that connected. */
static void
alive_handler(struct http_conn *c, struct http_request *req, void *arg)
{
	if (http_conn_peer_alive(c))
		http_reply(c, 200, "text/plain", "ok", 2);
	else
		http_reply(c, 403, "text/plain", "ok gone", 7);
}

static struct event_base *
live_server(char *dir, char *path, size_t len, const struct http_limits *l,
    http_handler_fn handler, struct http_server **s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct event_base *base = event_base_new();
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, len, "%s/s", dir);
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	cr_assert_eq(listen(fd, 16), 0);
	*s = http_server_create(base, fd, l, handler, NULL);
	return base;
}

/* Sends a request and runs the loop until its answer (or the close). */
static int
live_ask(struct event_base *base, int fd, char *buf, size_t cap)
{
	return helpers_ask(base, fd, "GET / HTTP/1.1\r\n\r\n", "\r\n\r\nok",
	    buf, cap);
}

/*
 * A client that asks now and then, never idle for long, still has a
 * bounded life: after life_ms its next answer closes the connection.
 */
Test(http, keep_alive_life_is_bounded, .timeout = 10)
{
	static const struct http_limits l = { .header_max = 1024,
		.body_max = 64,
		.deadline_ms = 1000,
		.conns_max = 4,
		.idle_ms = 300,
		.life_ms = 400 };
	char dir[] = "/tmp/promfork-test-http.XXXXXX", path[256], buf[1024];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct http_server *s;
	struct event_base *base =
	    live_server(dir, path, sizeof path, &l, ok_handler, &s);
	int fd, i, closed = 0;

	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	for (i = 0; i < 10 && !closed; i++) {
		cr_assert_gt(live_ask(base, fd, buf, sizeof buf), 0,
		    "request %d answered", i);
		closed = strstr(buf, "Connection: close") != NULL;
		usleep(100 * 1000); /* well within the idle timeout */
	}
	cr_assert(closed, "closed after its life, not kept for ever");
	cr_assert(i >= 4 && i <= 7, "after about 400 ms: request %d", i);
	close(fd);
	http_server_free(s);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}

/*
 * A connection handed on by a process that then exits is no longer that
 * process's: pinned by SO_PEERPIDFD, and as on older kernels by pidfd_open
 * and the start time.
 */
static void
peer_gone(int by_pid)
{
	static const struct http_limits l = { .header_max = 1024,
		.body_max = 64,
		.deadline_ms = 2000,
		.conns_max = 4 };
	char dir[] = "/tmp/promfork-test-http.XXXXXX", path[256], buf[1024];
	char cbuf[CMSG_SPACE(sizeof(int))], x = 0;
	struct iovec iov = { &x, 1 };
	struct msghdr msg = { 0 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct http_server *s;
	struct event_base *base =
	    live_server(dir, path, sizeof path, &l, alive_handler, &s);
	int sv[2], fd, i;
	pid_t kid;

	if (by_pid)
		http_server_pin_by_pid(s);
	strcpy(sun.sun_path, path);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	if ((kid = fork()) == 0) {
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
			_exit(3);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof fd);
		if (sendmsg(sv[1], &msg, 0) != 1 || read(sv[1], &x, 1) != 1)
			_exit(4);
		_exit(0);
	}
	cr_assert_eq(recvmsg(sv[0], &msg, 0), 1);
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof fd);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	for (i = 0; i < 5; i++) { /* accepted, pinned, while it lives */
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(10 * 1000);
	}
	cr_assert_gt(live_ask(base, fd, buf, sizeof buf), 0);
	cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "alive: %s", buf);
	cr_assert_eq(write(sv[0], "x", 1), 1);
	waitpid(kid, NULL, 0);
	cr_assert_gt(live_ask(base, fd, buf, sizeof buf), 0);
	cr_assert(strncmp(buf, "HTTP/1.1 403", 12) == 0, "gone: %s", buf);
	close(fd);
	close(sv[0]);
	close(sv[1]);
	http_server_free(s);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}

Test(http, peer_gone_by_peerpidfd, .timeout = 10)
{
	peer_gone(0);
}

Test(http, peer_gone_by_pid_and_start_time, .timeout = 10)
{
	peer_gone(1);
}

/*
 * Turned away at the accept, a client that has sent its request reads the
 * 503 and then the end, not a reset: its request is read before the close.
 */
Test(http, refusal_ends_without_a_reset, .timeout = 10)
{
	static const struct http_limits l = { .header_max = 1024,
		.body_max = 64,
		.deadline_ms = 2000,
		.conns_max = 1 };
	static const char req[] = "GET / HTTP/1.1\r\n\r\n";
	char dir[] = "/tmp/promfork-test-http.XXXXXX", path[256], buf[1024];
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct http_server *s;
	struct event_base *base =
	    live_server(dir, path, sizeof path, &l, ok_handler, &s);
	size_t len = 0;
	ssize_t n = -1;
	int held, fd, i;

	strcpy(sun.sun_path, path);
	held = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(connect(held, (struct sockaddr *)&sun, sizeof sun), 0);
	event_base_loop(base, EVLOOP_NONBLOCK); /* the one connection */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sun, sizeof sun), 0);
	cr_assert_eq(write(fd, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
	for (i = 0; i < 200 && n != 0; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = read(fd, buf + len, sizeof buf - 1 - len);
		if (n > 0)
			len += (size_t)n;
		else if (n == -1 && errno != EAGAIN)
			break;
		else if (n == -1)
			usleep(10 * 1000);
	}
	buf[len] = '\0';
	cr_assert(strncmp(buf, "HTTP/1.1 503", 12) == 0, "refused: %s", buf);
	cr_assert_eq(n, 0, "the end after the answer (%s)",
	    n == -1 ? strerror(errno) : "more");
	close(fd);
	close(held);
	http_server_free(s);
	event_base_free(base);
	unlink(path);
	rmdir(dir);
}
