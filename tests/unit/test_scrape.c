#include <sys/stat.h>
#include <sys/wait.h>

#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netutil.h"
#include "promfork.h"

static int
head(const char *text, struct scrape_head *h, size_t *used, char **cause)
{
	*cause = NULL;
	return scrape_parse_head(text, strlen(text), h, used, cause);
}

Test(scrape, head_with_length_and_type)
{
	const char *t =
	    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; "
	    "version=0.0.4\r\ncontent-length:  12 \r\nX-Other: y\r\n\r\nbody";
	struct scrape_head h;
	size_t used;
	char *cause;

	cr_assert_eq(head(t, &h, &used, &cause), 1);
	cr_assert_eq(h.status, 200);
	cr_assert_str_eq(h.content_type, "text/plain; version=0.0.4");
	cr_assert_eq(h.length, 12);
	cr_assert_eq(used, strlen(t) - 4);
}

Test(scrape, head_minimal_bare_newlines)
{
	struct scrape_head h;
	size_t used;
	char *cause;

	cr_assert_eq(head("HTTP/1.0 503\n\n", &h, &used, &cause), 1);
	cr_assert_eq(h.status, 503);
	cr_assert_eq(h.length, -1);
	cr_assert_str_eq(h.content_type, "");
	cr_assert_eq(used, 14);
}

Test(scrape, head_incomplete_until_whole)
{
	const char *t = "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n";
	struct scrape_head h;
	size_t used, n;
	char *cause = NULL;

	for (n = 0; n < strlen(t); n++)
		cr_assert_eq(scrape_parse_head(t, n, &h, &used, &cause), 0,
		    "incomplete at %zu", n);
	cr_assert_eq(scrape_parse_head(t, n, &h, &used, &cause), 1);
}

Test(scrape, bad_heads_are_refused)
{
	static const char *bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"HTTP/1.1 099 x\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n",
	};
	struct scrape_head h;
	size_t used, i;
	char *cause;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(head(bad[i], &h, &used, &cause), -1, "%s", bad[i]);
		cr_assert_not_null(cause);
		free(cause);
	}
}

Test(scrape, nul_byte_in_head)
{
	const char t[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
	struct scrape_head h;
	size_t used;
	char *cause = NULL;

	cr_assert_eq(scrape_parse_head(t, sizeof t - 1, &h, &used, &cause), -1);
	free(cause);
}

Test(scrape, long_content_type_and_many_headers)
{
	static char t[SCRAPE_HEAD_MAX * 2];
	char *p;
	struct scrape_head h;
	size_t used;
	char *cause;
	int i;

	p = t + sprintf(t, "HTTP/1.1 200 OK\r\nContent-Type: ");
	memset(p, 'a', 300);
	strcpy(p + 300, "\r\n\r\n");
	cr_assert_eq(head(t, &h, &used, &cause), -1);
	cr_assert(strstr(cause, "Content-Type") != NULL);
	free(cause);

	p = t + sprintf(t, "HTTP/1.1 200 OK\r\n");
	for (i = 0; i < 101; i++)
		p += sprintf(p, "X-%d: y\r\n", i);
	strcpy(p, "\r\n");
	cr_assert_eq(head(t, &h, &used, &cause), -1);
	free(cause);
}

Test(scrape, head_without_end_is_capped)
{
	static char t[SCRAPE_HEAD_MAX + 10];
	struct scrape_head h;
	size_t used;
	char *cause = NULL;

	memcpy(t, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(t + 20, 'x', SCRAPE_HEAD_MAX - 10);
	cr_assert_eq(scrape_parse_head(t, SCRAPE_HEAD_MAX - 1, &h, &used,
			 &cause),
	    0, "still waiting below the cap");
	memset(t + 20, 'x', SCRAPE_HEAD_MAX - 10);
	cr_assert_eq(scrape_parse_head(t, SCRAPE_HEAD_MAX + 10, &h, &used,
			 &cause),
	    -1);
	cr_assert(strstr(cause, "larger") != NULL);
	free(cause);
}

/* Live scrapes: the event loop in this thread, a canned worker in another. */
struct got {
	struct event_base *base;
	int heads, dones;
	struct scrape_head head;
	struct evbuffer *body;
	int status, timed_out, stop_in_body;
	char error[256];
	size_t bytes;
};

static int
got_head_cb(const struct scrape_head *h, void *arg)
{
	struct got *g = arg;

	g->heads++;
	g->head = *h;
	return 0;
}

static int
got_body_cb(struct evbuffer *chunk, void *arg)
{
	struct got *g = arg;

	evbuffer_add_buffer(g->body, chunk);
	return g->stop_in_body ? -1 : 0;
}

static void
got_done_cb(const struct scrape_result *r, void *arg)
{
	struct got *g = arg;

	g->dones++;
	g->status = r->status;
	g->timed_out = r->timed_out;
	g->bytes = r->bytes;
	snprintf(g->error, sizeof g->error, "%s",
	    r->error != NULL ? r->error : "");
	event_base_loopbreak(g->base);
}

static const struct scrape_callbacks got_cb = { got_head_cb, got_body_cb,
	got_done_cb };

static struct event_base *base;
static struct got g;

static void
setup(void)
{
	base = event_base_new();
	memset(&g, 0, sizeof g);
	g.base = base;
	g.body = evbuffer_new();
}

static void
teardown(void)
{
	evbuffer_free(g.body);
	event_base_free(base);
}

TestSuite(scrape_live, .init = setup, .fini = teardown, .timeout = 20);

static void
scrape_canned(const char *response, size_t len, const char *accept,
    int deadline_ms, size_t body_max, struct canned *cw)
{
	struct scrape *s;

	canned_start(cw, response, len);
	canned_run(cw);
	s = scrape_start(base, cw->port, "/metrics", accept, 0, deadline_ms,
	    body_max, &got_cb, &g);
	cr_assert_not_null(s);
	event_base_dispatch(base);
	/* libevent closes a freed bufferevent's socket from the loop. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	canned_stop(cw);
	cr_assert_eq(g.dones, 1);
}

Test(scrape_live, close_delimited_body)
{
	const char r[] = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
			 "a_metric 1\n";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, "text/plain", 2000, 1024, &cw);
	cr_assert_str_eq(g.error, "");
	cr_assert_eq(g.status, 200);
	cr_assert_eq(g.heads, 1);
	cr_assert_str_eq(g.head.content_type, "text/plain");
	cr_assert_eq(g.bytes, 11);
	cr_assert_eq(evbuffer_get_length(g.body), 11);
	cr_assert(
	    strstr(cw.request, "GET /metrics HTTP/1.0\r\n") == cw.request);
	cr_assert(strstr(cw.request, "\r\nAccept: text/plain\r\n") != NULL);
	cr_assert(strstr(cw.request, "\r\nHost: 127.0.0.1:") != NULL);
}

Test(scrape_live, length_delimited_body_ignores_extra_bytes)
{
	const char r[] =
	    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, NULL, 2000, 1024, &cw);
	cr_assert_str_eq(g.error, "");
	cr_assert_eq(g.bytes, 4);
	cr_assert_eq(memcmp(evbuffer_pullup(g.body, -1), "abcd", 4), 0);
	cr_assert(strstr(cw.request, "Accept:") == NULL);
}

Test(scrape_live, bad_accept_is_not_sent)
{
	const char r[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, "a\r\nX-Injected: 1", 2000, 1024, &cw);
	cr_assert_str_eq(g.error, "");
	cr_assert_eq(g.status, 204);
	cr_assert(strstr(cw.request, "X-Injected") == NULL);
}

Test(scrape_live, body_cut_short)
{
	const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, NULL, 2000, 1024, &cw);
	cr_assert(strstr(g.error, "cut short") != NULL, "%s", g.error);
	cr_assert_eq(g.bytes, 3);
}

Test(scrape_live, body_over_the_cap)
{
	static char r[64 * 1024];
	struct canned cw;
	int n = sprintf(r, "HTTP/1.0 200 OK\r\n\r\n");

	memset(r + n, 'x', sizeof r - (size_t)n);
	scrape_canned(r, sizeof r, NULL, 2000, 1000, &cw);
	cr_assert(strstr(g.error, "larger than 1000") != NULL, "%s", g.error);
	cr_assert_leq(g.bytes, 1000);
}

Test(scrape_live, announced_length_over_the_cap)
{
	const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nab";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, NULL, 2000, 1000, &cw);
	cr_assert(strstr(g.error, "5000") != NULL, "%s", g.error);
	cr_assert_eq(g.heads, 0, "the caller never sees a head it cannot use");
}

Test(scrape_live, garbage_answer)
{
	const char r[] = "SSH-2.0-OpenSSH_9.2\r\n\r\n";
	struct canned cw;

	scrape_canned(r, sizeof r - 1, NULL, 2000, 1000, &cw);
	cr_assert(strstr(g.error, "not an HTTP") != NULL, "%s", g.error);
	cr_assert_eq(g.status, 0);
}

Test(scrape_live, closed_without_answer)
{
	struct canned cw;

	scrape_canned("", 0, NULL, 2000, 1000, &cw);
	cr_assert(strstr(g.error, "closed before") != NULL, "%s", g.error);
}

Test(scrape_live, caller_stops_in_body)
{
	const char r[] = "HTTP/1.0 200 OK\r\n\r\nsome body";
	struct canned cw;

	g.stop_in_body = 1;
	scrape_canned(r, sizeof r - 1, NULL, 2000, 1000, &cw);
	cr_assert(strstr(g.error, "stopped") != NULL, "%s", g.error);
}

Test(scrape_live, refused_reports_later)
{
	struct scrape *s;

	s = scrape_start(base, netutil_dead_port(), "/metrics", NULL, 0, 2000,
	    1000, &got_cb, &g);
	cr_assert_not_null(s);
	cr_assert_eq(g.dones, 0, "done never runs inside scrape_start");
	event_base_dispatch(base);
	cr_assert_eq(g.dones, 1);
	cr_assert(strstr(g.error, "cannot connect") != NULL, "%s", g.error);
	cr_assert(strstr(g.error, "refused") != NULL, "%s", g.error);
	cr_assert_eq(g.timed_out, 0);
}

Test(scrape_live, deadline)
{
	struct canned cw;
	struct scrape *s;

	canned_start(&cw, "", 0);
	cw.hang = 1;
	canned_run(&cw);
	s = scrape_start(base, cw.port, "/metrics", NULL, 0, 200, 1000, &got_cb,
	    &g);
	cr_assert_not_null(s);
	event_base_dispatch(base);
	/* libevent closes a freed bufferevent's socket from the loop. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	canned_stop(&cw);
	cr_assert_eq(g.dones, 1);
	cr_assert_eq(g.timed_out, 1);
	cr_assert(strstr(g.error, "within 200 ms") != NULL, "%s", g.error);
}

static void
cancel_cb(evutil_socket_t fd, short what, void *arg)
{
	scrape_cancel(arg);
}

Test(scrape_live, cancel_calls_nothing)
{
	struct timeval tv = { 0, 100 * 1000 };
	struct canned cw;
	struct scrape *s;
	struct event *ev;

	canned_start(&cw, "", 0);
	cw.hang = 1;
	canned_run(&cw);
	s = scrape_start(base, cw.port, "/metrics", NULL, 0, 5000, 1000,
	    &got_cb, &g);
	ev = evtimer_new(base, cancel_cb, s);
	evtimer_add(ev, &tv);
	event_base_dispatch(base); /* ends when nothing is left to wait for */
	canned_stop(&cw);
	event_free(ev);
	cr_assert_eq(g.dones, 0);
}

Test(scrape_live, bad_paths_fail_through_done)
{
	const char *bad[] = { "metrics", "/a b", "/a\r\nX: y" };
	struct canned cw;

	canned_start(&cw, "HTTP/1.0 200 OK\r\n\r\n", 19);
	canned_run(&cw);
	for (size_t i = 0; i < 3; i++) {
		g.dones = 0;
		cr_assert_not_null(scrape_start(base, cw.port, bad[i], NULL, 0,
		    1000, 10, &got_cb, &g));
		cr_assert_eq(g.dones, 0, "done never runs inside scrape_start");
		event_base_dispatch(base);
		cr_assert_eq(g.dones, 1);
		cr_assert(strstr(g.error, "not an absolute path"), "%s",
		    g.error);
		cr_assert_eq(g.status, 0);
	}
	canned_stop(&cw);
	cr_assert_eq(cw.served, 0, "nothing was sent");
}

/* The sockets connected to port, in this process: the scrape's. */
static size_t
scrape_sockets(uint16_t port, ino_t *inodes, size_t max)
{
	struct sockaddr_in sin;
	socklen_t len;
	struct stat sb;
	size_t n = 0;
	int fd;

	for (fd = 3; fd < 1024 && n < max; fd++) {
		len = sizeof sin;
		if (getpeername(fd, (struct sockaddr *)&sin, &len) == 0 &&
		    sin.sin_family == AF_INET && ntohs(sin.sin_port) == port &&
		    fstat(fd, &sb) == 0)
			inodes[n++] = sb.st_ino;
	}
	return n;
}

struct leak {
	struct scrape *s;
	uint16_t port;
	size_t found; /* scrape sockets in this process */
	char child[8192]; /* what an exec'd child has open */
};

/* Forks and execs a child while the scrape waits, as --workers does. */
static void
leak_fork_cb(evutil_socket_t fd, short what, void *arg)
{
	struct leak *lk = arg;
	ino_t inodes[8];
	char want[64];
	size_t i, got = 0;
	ssize_t n;
	int p[2];
	pid_t pid;

	lk->found = scrape_sockets(lk->port, inodes, 8);
	cr_assert_eq(pipe(p), 0);
	if ((pid = fork()) == 0) {
		dup2(p[1], 1);
		execl("/bin/ls", "ls", "-l", "/proc/self/fd", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (
	    (n = read(p[0], lk->child + got, sizeof lk->child - 1 - got)) > 0)
		got += (size_t)n;
	lk->child[got] = '\0';
	close(p[0]);
	waitpid(pid, NULL, 0);
	for (i = 0; i < lk->found; i++) {
		snprintf(want, sizeof want, "socket:[%lu]",
		    (unsigned long)inodes[i]);
		cr_expect(strstr(lk->child, want) == NULL,
		    "the child holds the scrape's %s:\n%s", want, lk->child);
	}
	scrape_cancel(lk->s);
}

Test(scrape_live, socket_not_inherited)
{
	struct timeval tv = { 0, 100 * 1000 };
	struct canned cw;
	struct leak lk;
	struct event *ev;

	memset(&lk, 0, sizeof lk);
	canned_start(&cw, "", 0);
	cw.hang = 1;
	canned_run(&cw);
	lk.port = cw.port;
	lk.s = scrape_start(base, cw.port, "/metrics", NULL, 0, 5000, 1000,
	    &got_cb, &g);
	cr_assert_not_null(lk.s);
	ev = evtimer_new(base, leak_fork_cb, &lk);
	evtimer_add(ev, &tv);
	event_base_dispatch(base);
	canned_stop(&cw);
	event_free(ev);
	cr_assert_eq(lk.found, 1, "one scrape socket in flight");
	cr_assert(strstr(lk.child, " -> ") != NULL,
	    "the child listed its fds: %s", lk.child);
}
