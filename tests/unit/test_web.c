#include <criterion/criterion.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netutil.h"
#include "helpers.h"
#include "promfork.h"

static int
parse(const char *s, struct sockaddr_storage *ss, char **cause)
{
	socklen_t len;

	*cause = NULL;
	return web_parse_listen(s, ss, &len, cause);
}

static struct http_request *
request(const char *timeout)
{
	static struct http_request req;

	memset(&req, 0, sizeof req);
	if (timeout != NULL) {
		req.headers[0].name = "X-Prometheus-Scrape-Timeout-Seconds";
		req.headers[0].value = (char *)timeout;
		req.nheaders = 1;
	}
	return &req;
}

Test(web, scrape_deadline_from_prometheus)
{
	cr_assert_eq(web_scrape_deadline(request(NULL), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("0.9"), 7500), 900);
	cr_assert_eq(web_scrape_deadline(request("10"), 7500), 7500, "capped");
	cr_assert_eq(web_scrape_deadline(request("0.0001"), 7500), 1);
	cr_assert_eq(web_scrape_deadline(request("0"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("-3"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("abc"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("1s"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request(""), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("nan"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("inf"), 7500), 7500);
	cr_assert_eq(web_scrape_deadline(request("1e999"), 7500), 7500);
}

Test(web, listen_addresses)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	char *cause;

	cr_assert_eq(parse("127.0.0.1:9400", &ss, &cause), 0);
	cr_assert_eq(ss.ss_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 9400);
	cr_assert_eq(sin->sin_addr.s_addr, htonl(INADDR_LOOPBACK));

	cr_assert_eq(parse("[::1]:1", &ss, &cause), 0);
	cr_assert_eq(ss.ss_family, AF_INET6);
	cr_assert_eq(ntohs(sin6->sin6_port), 1);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	cr_assert_eq(parse(":65535", &ss, &cause), 0);
	cr_assert_eq(ss.ss_family, AF_INET6, "every address, both families");
	cr_assert(IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr));
	cr_assert_eq(ntohs(sin6->sin6_port), 65535);

	cr_assert_eq(parse("0.0.0.0:0", &ss, &cause), 0);
	cr_assert_eq(parse("[::]:0", &ss, &cause), 0);
}

Test(web, bad_listen_addresses)
{
	static const char *bad[] = { "", "9400", ":", "localhost:9400",
		"127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
		"127.0.0.1:+1", "127.0.0.1:9400x", "127.0.0.1:094000",
		"[::1]9400", "[::1", "::1:9400", "[127.0.0.1]:80", "1.2.3:80",
		"1.2.3.4.5:80", " 127.0.0.1:80", "[::1]:", "[]:80",
		"[::1%lo]:80x" };
	struct sockaddr_storage ss;
	char *cause, longer[300];
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(parse(bad[i], &ss, &cause), -1, "%s", bad[i]);
		cr_assert(strstr(cause, "--listen") != NULL);
		free(cause);
	}
	memset(longer, '1', sizeof longer);
	longer[sizeof longer - 1] = '\0';
	cr_assert_eq(parse(longer, &ss, &cause), -1);
	cr_assert_lt(strlen(cause), 400, "the message stays short");
	free(cause);
}

Test(web, listen_and_address)
{
	char *cause = NULL, *addr, host[256], want[300];
	int fd;

	fd = web_listen("127.0.0.1:0", &cause);
	cr_assert_neq(fd, -1, "%s", cause);
	addr = web_address(fd, "ignored");
	cr_assert(strncmp(addr, "127.0.0.1:", 10) == 0, "%s", addr);
	cr_assert_gt(atoi(addr + 10), 0);
	free(addr);
	close(fd);

	fd = web_listen(":0", &cause);
	cr_assert_neq(fd, -1, "%s", cause);
	addr = web_address(fd, "web1");
	cr_assert(strncmp(addr, "web1:", 5) == 0, "every address: %s", addr);
	free(addr);
	close(fd);

	fd = web_listen("[::1]:0", &cause);
	if (fd != -1) { /* hosts without IPv6 skip this */
		addr = web_address(fd, "x");
		cr_assert(strncmp(addr, "[::1]:", 6) == 0, "%s", addr);
		free(addr);
		close(fd);
	} else
		free(cause);

	gethostname(host, sizeof host);
	snprintf(want, sizeof want, "%s", host);
	cr_assert_eq(web_listen("127.0.0.1:99999", &cause), -1);
	free(cause);
}

Test(web, listen_on_a_taken_port)
{
	char *cause = NULL, *addr, spec[64];
	int fd, fd2;

	fd = web_listen("127.0.0.1:0", &cause);
	addr = web_address(fd, "x");
	snprintf(spec, sizeof spec, "%s", addr);
	fd2 = web_listen(spec, &cause);
	cr_assert_eq(fd2, -1);
	cr_assert(strstr(cause, "cannot listen") != NULL, "%s", cause);
	free(cause);
	free(addr);
	close(fd);
}

/* The whole listener, live: the loop in a thread, a canned worker. */
static struct event_base *base;
static struct registry reg;
static struct target_config tc;
static struct web *web;
static struct loop lp;
static struct canned cw;
static uint16_t listen_port;
static pid_t sleeper;
static char proxy_address[64];

static const char worker_answer[] =
    "HTTP/1.0 200 OK\r\n"
    "Content-Type: text/plain; version=0.0.4\r\n\r\n"
    "# TYPE app_up gauge\napp_up 1\n";

static void
live_setup(void)
{
	struct web_config cfg;
	char *cause = NULL, *addr;
	struct lease *l;
	enum registry_error error;
	int fd, created;

	/* As promfork does: a client gone is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	canned_start(&cw, worker_answer, sizeof worker_answer - 1);
	canned_run(&cw);
	base = event_base_new();
	registry_init(&reg, base, cw.port, cw.port, helpers_probe_all_free,
	    NULL);
	sleeper = fork();
	if (sleeper == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	l = registry_lease_pid(&reg, sleeper, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);

	fd = web_listen("127.0.0.1:0", &cause);
	cr_assert_neq(fd, -1, "%s", cause);
	addr = web_address(fd, "x");
	listen_port = (uint16_t)atoi(strchr(addr, ':') + 1);
	snprintf(proxy_address, sizeof proxy_address, "%s", addr);
	free(addr);
	memset(&tc, 0, sizeof tc);
	tc.host = "127.0.0.1";
	tc.proxy_address = proxy_address;
	memset(&cfg, 0, sizeof cfg);
	cfg.reg = &reg;
	cfg.tc = &tc;
	cfg.deadline_ms = 2000;
	web = web_create(base, &fd, 1, &cfg);
	loop_start(&lp, base);
}

static void
live_teardown(void)
{
	loop_stop(&lp);
	web_free(web);
	kill(sleeper, SIGKILL);
	waitpid(sleeper, NULL, 0);
	registry_finish(&reg);
	event_base_free(base);
	canned_stop(&cw);
}

TestSuite(web_live, .init = live_setup, .fini = live_teardown, .timeout = 30);

static char *
get(const char *path, size_t *len)
{
	char req[512], *out;
	size_t n;

	snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: t\r\n"
	    "Connection: close\r\n\r\n",
	    path);
	n = netutil_exchange(listen_port, req, strlen(req), 5000, &out);
	if (len != NULL)
		*len = n;
	return out;
}

Test(web_live, targets_are_http_sd)
{
	char *r = get("/targets", NULL);
	json_error_t err;
	json_t *groups, *labels;
	char path[64];

	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "\r\nContent-Type: application/json\r\n"));
	groups = json_loads(helpers_body_of(r), 0, &err);
	cr_assert_not_null(groups, "%s", err.text);
	cr_assert_eq(json_array_size(groups), 1);
	cr_assert_str_eq(json_string_value(json_array_get(
			     json_object_get(json_array_get(groups, 0),
				 "targets"),
			     0)),
	    proxy_address);
	labels = json_object_get(json_array_get(groups, 0), "labels");
	cr_assert_str_eq(json_string_value(json_object_get(labels, "worker")),
	    "0");
	snprintf(path, sizeof path, "/workers/0/metrics");
	cr_assert_str_eq(json_string_value(
			     json_object_get(labels, "__metrics_path__")),
	    path);
	json_decref(groups);
	free(r);
}

Test(web_live, own_metrics)
{
	char *r = get("/metrics?x=1", NULL);

	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "Content-Type: text/plain; version=0.0.4"));
	cr_assert(strstr(r, "\npromfork_leases 1\n"));
	cr_assert(strstr(r, "\npromfork_http_connections 1\n"));
	cr_assert(strstr(r,
	    "promfork_worker_resident_memory_bytes{worker="
	    "\"0\"} "));
	free(r);
}

Test(web_live, proxy_passes_the_worker_answer)
{
	char *r = get("/workers/0/metrics", NULL);

	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4\r\n"));
	cr_assert(strstr(r, "\r\nTransfer-Encoding: chunked\r\n"));
	cr_assert(strstr(helpers_body_of(r),
		      "1d\r\n# TYPE app_up gauge\napp_up 1\n"
		      "\r\n0\r\n\r\n"),
	    "%s", r);
	cr_assert(strncmp(cw.request, "GET /metrics HTTP/1.0\r\n", 23) == 0);
	free(r);
}

Test(web_live, status_page_probes_workers)
{
	char *r = get("/", NULL);

	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "Content-Type: text/html; charset=utf-8\r\n"));
	cr_assert(strstr(r, "data-worker=\"0\""));
	cr_assert(strstr(r, "data-scrape=\"ok\""), "the probe ran: %s", r);
	cr_assert_eq(cw.served, 1);
	free(r);
	r = get("/", NULL);
	cr_assert_eq(cw.served, 1, "a fresh result is not probed again");
	free(r);
}

/* The head of an answer: nosniff always, a policy where wanted. */
static void
check_head(const char *path, char *r, int want_policy)
{
	char *end = strstr(r, "\r\n\r\n"), *csp;

	cr_assert_not_null(end, "%s: %s", path, r);
	*end = '\0';
	cr_assert(strstr(r, "\r\nX-Content-Type-Options: nosniff"), "%s: %s",
	    path, r);
	csp = strstr(r, "\r\nContent-Security-Policy: default-src 'none'; ");
	if (want_policy) {
		cr_assert_not_null(csp, "%s", r);
		cr_assert_null(strstr(r, "script-src"));
	} else
		cr_assert_null(csp, "%s: only the page needs one", path);
}

/* Issue 15 point 8: no answer can be sniffed as HTML, and the status
 * page runs no script whatever a worker's labels hold. */
Test(web_live, every_answer_is_nosniff_and_the_page_has_a_policy)
{
	static const char *paths[] = { "/", "/metrics", "/targets",
		"/workers/0/metrics", "/workers/metrics", "/nope" };
	size_t i;

	for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		char *r = get(paths[i], NULL);

		check_head(paths[i], r, i == 0);
		free(r);
	}
}

Test(web_live, not_found_and_not_allowed)
{
	static const char *missing[] = { "/nope", "/workers/1/metrics",
		"/workers/01/metrics", "/workers/x/metrics",
		"/workers//metrics", "/workers/0/metricsx", "/workers/0",
		"/workers/99999999/metrics", "/targets/", "/metrics/x" };
	char *r, req[128];
	size_t i;

	for (i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		r = get(missing[i], NULL);
		cr_assert(strncmp(r, "HTTP/1.1 404 ", 13) == 0, "%s: %s",
		    missing[i], r);
		free(r);
	}
	/* what there is, said where nothing is */
	r = get("/nope", NULL);
	cr_assert(strstr(r, "/api/v1/history") != NULL &&
		strstr(r, "/-/ready") != NULL,
	    "%s", r);
	free(r);
	snprintf(req, sizeof req,
	    "POST /targets HTTP/1.1\r\n"
	    "Content-Length: 2\r\n\r\n{}");
	netutil_exchange(listen_port, req, strlen(req), 5000, &r);
	cr_assert(strncmp(r, "HTTP/1.1 405 ", 13) == 0, "%s", r);
	free(r);
}

Test(web_live, oversized_and_malformed_requests)
{
	static char req[20000];
	char *r;
	int n;

	n = sprintf(req, "GET / HTTP/1.1\r\nX-Big: ");
	memset(req + n, 'a', 10000);
	strcpy(req + n + 10000, "\r\n\r\n");
	netutil_exchange(listen_port, req, strlen(req), 5000, &r);
	cr_assert(strncmp(r, "HTTP/1.1 431 ", 13) == 0, "%s", r);
	free(r);

	sprintf(req, "GET /metrics HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
	netutil_exchange(listen_port, req, strlen(req), 5000, &r);
	cr_assert(strncmp(r, "HTTP/1.1 413 ", 13) == 0, "%s", r);
	free(r);

	sprintf(req, "BREW /pot HTCPCP/1.0\r\n\r\n");
	netutil_exchange(listen_port, req, strlen(req), 5000, &r);
	cr_assert(strncmp(r, "HTTP/1.1 400 ", 13) == 0, "%s", r);
	free(r);
}

Test(web_live, slow_client_is_cut_off_others_served)
{
	struct sockaddr_in sin;
	struct timespec t0, t1;
	char *r, buf[512];
	int fd, i;
	ssize_t n;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(listen_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* A byte every 100 ms: an idle timeout would never fire. */
	for (i = 0; i < 40; i++) {
		struct pollfd pfd = { fd, POLLIN, 0 };

		if (poll(&pfd, 1, 0) == 1 ||
		    send(fd, "X", 1, MSG_NOSIGNAL) != 1)
			break;
		if (i % 5 == 0) {
			r = get("/metrics", NULL);
			cr_assert(strncmp(r, "HTTP/1.1 200 OK", 15) == 0);
			free(r);
		}
		netutil_sleep_ms(100);
	}
	n = read(fd, buf, sizeof buf - 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert(strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "%s", buf);
	cr_assert_lt(t1.tv_sec - t0.tv_sec, 4, "cut at the 2 s deadline");
	close(fd);
}
