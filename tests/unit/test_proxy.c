#include <criterion/criterion.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netutil.h"
#include "helpers.h"
#include "promfork.h"

/* A server whose only handler is the proxy to worker 0, live. */
static struct event_base *base;
static struct registry reg;
static struct http_server *server;
static struct loop lp;
static struct canned cw;
static uint16_t port;
static pid_t sleeper;
static int continuity_off; /* start() turns slot continuity off */
static const char *carried; /* start() carries this for slot 0 */

/* The proxied scrape's deadline: short, but for the test that moves 30 MiB
 * through a client that reads late (slow under the sanitizers). */
static int deadline_ms = 1500;

static void
handle(struct http_conn *c, struct http_request *req, void *arg)
{
	proxy_serve(c, req, &reg, 0, web_scrape_deadline(req, deadline_ms));
}

static void
start(const char *response, size_t len, int hang, int worker_up)
{
	/* the whole request, the proxied scrape's deadline included */
	struct http_limits lim = { .header_max = 8192,
		.body_max = 1024,
		.deadline_ms = deadline_ms + 1500,
		.conns_max = 16 };
	char *cause = NULL;
	struct lease *l;
	enum registry_error error;
	int fd, created;
	uint16_t wport;

	/* As promfork does: a client gone is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	canned_start(&cw, response, len);
	cw.hang = hang;
	if (worker_up)
		canned_run(&cw);
	wport = cw.port;
	if (!worker_up) {
		close(cw.fd);
		cw.fd = -1;
	}
	base = event_base_new();
	registry_init(&reg, base, wport, wport, helpers_probe_all_free, NULL);
	if (continuity_off) {
		static const struct continuity_config off = { 0, 0, 0 };

		registry_continuity(&reg, &off);
	}
	if (carried != NULL)
		continuity_end(reg.cont, 0, carried, strlen(carried), 0);
	sleeper = netutil_sleeper();
	l = registry_lease_pid(&reg, sleeper, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	fd = netutil_listen(&port);
	evutil_make_socket_nonblocking(fd);
	server = http_server_create(base, fd, &lim, handle, NULL);
	loop_start(&lp, base);
}

static void
stop(void)
{
	loop_stop(&lp);
	http_server_free(server);
	kill(sleeper, SIGKILL);
	waitpid(sleeper, NULL, 0);
	registry_finish(&reg);
	event_base_free(base);
	if (cw.fd != -1)
		canned_stop(&cw);
}

TestSuite(proxy_live, .timeout = 30);

static size_t
get(const char *version, const char *extra, char **out)
{
	char req[512];

	snprintf(req, sizeof req,
	    "GET /workers/0/metrics HTTP/%s\r\nHost: t"
	    "\r\n%s\r\n",
	    version, extra);
	return netutil_exchange(port, req, strlen(req), 5000, out);
}

Test(proxy_live, length_passed_byte_for_byte)
{
	static char answer[4096 + 128];
	char *r, *expect = answer;
	size_t n, len, i;

	n = (size_t)sprintf(answer,
	    "HTTP/1.0 200 OK\r\nContent-Type: "
	    "application/octet-stream\r\nContent-Length: 4096\r\n\r\n");
	for (i = 0; i < 4096; i++)
		answer[n + i] = (char)(i * 7 % 256);
	start(answer, n + 4096, 0, 1);
	len = get("1.1", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "\r\nContent-Length: 4096\r\n"));
	cr_assert(strstr(r, "\r\nContent-Type: " HTTP_EXPOSITION_TYPE "\r\n"),
	    "not an exposition type: replaced");
	cr_assert_null(strstr(r, "Transfer-Encoding"));
	cr_assert_eq(len - (size_t)(helpers_body_of(r) - r), 4096);
	cr_assert_eq(memcmp(helpers_body_of(r), expect + n, 4096), 0);
	free(r);
	stop();
}

/* Issue 15 point 8: a worker (or a squatter) answering HTML is not served
 * as HTML on the listener's origin. */
Test(proxy_live, html_from_a_worker_is_not_served_as_html)
{
	const char answer[] = "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n"
			      "\r\n<script>alert(document.domain)</script>";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "\r\nContent-Type: " HTTP_EXPOSITION_TYPE "\r\n"),
	    "%s", r);
	cr_assert_null(strstr(r, "text/html"), "%s", r);
	cr_assert(strstr(r, "\r\nX-Content-Type-Options: nosniff\r\n"));
	free(r);
	stop();
}

Test(proxy_live, openmetrics_passes_as_it_is)
{
	const char answer[] =
	    "HTTP/1.0 200 OK\r\nContent-Type: application/openmetrics-text; "
	    "version=1.0.0; charset=utf-8\r\n\r\nx 1\n# EOF\n";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "", &r);
	cr_assert(strstr(r,
		      "\r\nContent-Type: application/openmetrics-text; "
		      "version=1.0.0; charset=utf-8\r\n"),
	    "%s", r);
	free(r);
	stop();
}

Test(proxy, content_types)
{
	static const char *pass[] = { "text/plain; version=0.0.4", "text/plain",
		"TEXT/PLAIN;version=0.0.4; charset=utf-8",
		"application/openmetrics-text; version=1.0.0; charset=utf-8",
		"application/openmetrics-text" };
	static const char *replaced[] = { "", "text/html",
		"text/html; charset=utf-8", "application/octet-stream",
		"text/plainx", "text/plai", "text/plain, text/html",
		"text/plain; charset=\"x\", text/html",
		"application/openmetrics-text,text/html", "text/plain\t",
		"image/svg+xml", "application/xhtml+xml", ";text/plain",
		"text/plain;\xc3\xa9" };
	size_t i;

	for (i = 0; i < sizeof pass / sizeof pass[0]; i++)
		cr_assert_eq(proxy_content_type(pass[i]), pass[i], "%s",
		    pass[i]);
	for (i = 0; i < sizeof replaced / sizeof replaced[0]; i++)
		cr_assert_str_eq(proxy_content_type(replaced[i]),
		    HTTP_EXPOSITION_TYPE, "%s", replaced[i]);
}

/*
 * Issue 15 point 8: a client that does not read holds the worker back;
 * without backpressure promfork would read the whole answer into memory
 * at once.  Then the client reads and gets every byte.
 */
Test(proxy_live, a_slow_client_holds_the_worker_back)
{
	const size_t body = 30 * 1024 * 1024;
	static char *answer;
	char head[128], req[128], *got;
	size_t n, len = 0, before, cap;
	int fd, small = 64 * 1024;
	ssize_t k;

	n = (size_t)snprintf(head, sizeof head,
	    "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n", body);
	/* 30 MiB through valgrind outlasts any deadline worth testing */
	if (helpers_under_valgrind())
		cr_skip_test("not under valgrind");
	deadline_ms = 20000;
	answer = malloc(n + body);
	memcpy(answer, head, n);
	for (size_t i = 0; i < body; i++)
		answer[n + i] = (char)('a' + i % 26);
	start(answer, n + body, 0, 1);

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
	{
		struct sockaddr_in sin = { .sin_family = AF_INET,
			.sin_port = htons(port),
			.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin),
		    0);
	}
	snprintf(req, sizeof req,
	    "GET /workers/0/metrics HTTP/1.1\r\nHost: t\r\n\r\n");
	cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL),
	    (ssize_t)strlen(req));
	/* Until the worker stops getting rid of its answer. */
	do {
		before = cw.sent;
		netutil_sleep_ms(150);
	} while (cw.sent != before && cw.sent < n + body);
	cr_assert_lt(cw.sent, n + body / 2,
	    "the worker sent %zu of %zu bytes to a client that reads nothing",
	    cw.sent, n + body);

	cap = n + body + 4096;
	got = malloc(cap);
	while (len < cap && (k = read(fd, got + len, cap - len)) > 0)
		len += (size_t)k;
	close(fd);
	cr_assert_gt(len, body);
	cr_assert(strstr(got, "\r\nContent-Length: 31457280\r\n"));
	cr_assert_eq(len - (size_t)(strstr(got, "\r\n\r\n") + 4 - got), body,
	    "every byte, once the client reads");
	cr_assert_eq(memcmp(strstr(got, "\r\n\r\n") + 4, answer + n, body), 0);
	free(got);
	free(answer);
	stop();
}

Test(proxy_live, close_delimited_to_an_http10_client)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\nx 1\n";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.0", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert_null(strstr(r, "Transfer-Encoding"));
	cr_assert_null(strstr(r, "Content-Length"));
	cr_assert(strstr(r, "Content-Type: text/plain; version=0.0.4"),
	    "the exposition type when the worker names none");
	cr_assert_str_eq(helpers_body_of(r), "x 1\n");
	free(r);
	stop();
}

Test(proxy_live, accept_is_passed_on_without_continuity)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\nx 1\n";
	char *r;

	continuity_off = 1;
	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "Accept: application/openmetrics-text; version=1.0.0\r\n",
	    &r);
	cr_assert(strstr(cw.request,
		      "\r\nAccept: application/openmetrics-"
		      "text; version=1.0.0\r\n"),
	    "%s", cw.request);
	free(r);
	stop();
}

/* Without continuity a worker's own gzip goes through as it is. */
Test(proxy_live, gzip_of_the_worker_passed_through)
{
	const char answer[] = "HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\n"
			      "Content-Length: 5\r\n\r\nGZIP!";
	char *r;

	continuity_off = 1;
	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "Accept-Encoding: gzip\r\n", &r);
	cr_assert(strstr(cw.request, "\r\nAccept-Encoding: gzip\r\n"), "%s",
	    cw.request);
	cr_assert(strstr(r, "\r\nContent-Encoding: gzip\r\n"), "%s", r);
	cr_assert_str_eq(helpers_body_of(r), "GZIP!");
	free(r);
	stop();
	/* a client that does not take gzip: the worker is not asked */
	continuity_off = 1;
	start("HTTP/1.0 200 OK\r\n\r\nx 1\n", 20, 0, 1);
	get("1.1", "", &r);
	cr_assert_null(strstr(cw.request, "Accept-Encoding"), "%s", cw.request);
	cr_assert_null(strstr(r, "Content-Encoding"), "%s", r);
	free(r);
	stop();
}

/* With continuity the worker is asked for text; promfork compresses a
 * whole answer it builds. */
Test(proxy_live, continuity_asks_for_text_and_compresses_itself)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\nx 1\n";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "Accept-Encoding: gzip\r\n", &r);
	cr_assert_null(strstr(cw.request, "Accept-Encoding"), "%s", cw.request);
	cr_assert_null(strstr(r, "Content-Encoding"),
	    "short: sent as it is: %s", r);
	free(r);
	stop();
}

Test(proxy_live, worker_status_passed_on)
{
	const char answer[] =
	    "HTTP/1.0 503 Busy\r\nContent-Length: 4\r\n\r\nbusy";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 503 ", 13) == 0, "%s", r);
	cr_assert_str_eq(helpers_body_of(r), "busy");
	free(r);
	stop();
}

Test(proxy_live, cut_short_body_is_seen_as_cut)
{
	const char answer[] = "HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n"
			      "only this";
	char *r;
	size_t len;

	start(answer, sizeof answer - 1, 0, 1);
	len = get("1.1", "", &r);
	cr_assert(strstr(r, "\r\nContent-Length: 100\r\n"), "%s", r);
	cr_assert_lt(len - (size_t)(helpers_body_of(r) - r), 100);
	free(r);
	stop();
}

Test(proxy_live, stalled_body_has_no_last_chunk)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\npartial";
	char *r;

	start(answer, sizeof answer - 1, 2, 1);
	get("1.1", "X-Prometheus-Scrape-Timeout-Seconds: 0.3\r\n", &r);
	cr_assert(strstr(r, "Transfer-Encoding: chunked"), "%s", r);
	cr_assert(strstr(helpers_body_of(r), "7\r\npartial\r\n"), "%s", r);
	cr_assert_null(strstr(helpers_body_of(r), "0\r\n\r\n"),
	    "no proper end");
	free(r);
	stop();
}

Test(proxy_live, worker_down_is_502)
{
	char *r;

	start("", 0, 0, 0);
	get("1.1", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 502 ", 13) == 0, "%s", r);
	cr_assert(strstr(r, "worker 0: cannot connect"), "%s", r);
	free(r);
	cr_assert_not(reg.slots[0]->scrape.ok);
	cr_assert_neq(reg.slots[0]->scrape.when, 0, "the failure is recorded");
	stop();
}

Test(proxy_live, silent_worker_is_504)
{
	char *r;

	start("", 0, 1, 1);
	get("1.1", "X-Prometheus-Scrape-Timeout-Seconds: 0.2\r\n", &r);
	cr_assert(strncmp(r, "HTTP/1.1 504 ", 13) == 0, "%s", r);
	cr_assert(strstr(r, "within 200 ms"), "%s", r);
	free(r);
	stop();
}

Test(proxy_live, client_leaving_cancels_the_scrape)
{
	const char req[] = "GET /workers/0/metrics HTTP/1.1\r\n\r\n";
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\nok\n";
	char *r;
	int i;

	start(answer, sizeof answer - 1, 0, 1);
	cw.delay_ms = 300;
	netutil_exchange(port, req, sizeof req - 1, 10, &r);
	free(r);
	for (i = 0; i < 100 && http_server_conns(server) > 0; i++)
		netutil_sleep_ms(10);
	cr_assert_eq(http_server_conns(server), 0);
	/* The server still serves, and the record is from a whole scrape. */
	cw.delay_ms = 0;
	get("1.1", "", &r);
	cr_assert(strstr(r, "ok\n"), "%s", r);
	free(r);
	stop();
}

Test(proxy_live, success_is_recorded)
{
	const char answer[] =
	    "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "", &r);
	free(r);
	cr_assert(reg.slots[0]->scrape.ok);
	cr_assert_eq(reg.slots[0]->scrape.status, 200);
	stop();
}

/* With continuity the worker is asked for the format the carry reads. */
Test(proxy_live, continuity_asks_for_the_text_format)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\nx 1\n";
	char *r;

	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "Accept: application/openmetrics-text; version=1.0.0\r\n",
	    &r);
	cr_assert(strstr(cw.request,
		      "\r\nAccept: text/plain;version=0.0.4\r\n"),
	    "%s", cw.request);
	cr_assert(strstr(helpers_body_of(r), "x 1\n"),
	    "nothing carried: as it is");
	free(r);
	stop();
}

/* A slot with carried totals: the answer is served with them added. */
Test(proxy_live, carried_totals_are_added)
{
	const char answer[] = "HTTP/1.0 200 OK\r\n\r\n"
			      "# TYPE req_total counter\n"
			      "req_total{code=\"200\"} 3\n"
			      "# TYPE busy gauge\nbusy 1\n";
	char *r;

	carried = "# HELP req_total Requests.\n# TYPE req_total counter\n"
		  "req_total{code=\"200\"} 50\nreq_total{code=\"500\"} 2\n";
	start(answer, sizeof answer - 1, 0, 1);
	get("1.1", "", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 ", 13) == 0, "%s", r);
	cr_assert_str_eq(helpers_body_of(r),
	    "# TYPE req_total counter\n"
	    "req_total{code=\"200\"} 53\n"
	    "req_total{code=\"500\"} 2\n"
	    "# TYPE busy gauge\nbusy 1\n");
	free(r);
	/* the next answer too; the live lifetime's own value is kept */
	get("1.1", "", &r);
	cr_assert(strstr(helpers_body_of(r), "req_total{code=\"200\"} 53\n"),
	    "%s", r);
	free(r);
	cr_assert_not_null(registry_find_worker(&reg, 0)->body.data);
	stop();
}
