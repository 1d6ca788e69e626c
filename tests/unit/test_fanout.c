#include <criterion/criterion.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "netutil.h"
#include "promfork.h"
#include "helpers.h"

/*
 * A server whose only handler is the fan-out, its loop in a thread, over
 * leases of sleeping processes whose ports are pointed at canned workers
 * on loopback (the registry's own range is never bound).
 */
#define WORKERS_MAX 3

static struct event_base *base;
static struct registry reg;
static struct http_server *server;
static struct fanout_scratch scratch;
static struct budget budget;
static struct loop lp;
static struct canned cw[WORKERS_MAX];
static int ncw;
static pid_t sleepers[WORKERS_MAX];
static uint16_t port;

static void
handle(struct http_conn *c, struct http_request *req, void *arg)
{
	fanout_serve(c, req, &reg, web_scrape_deadline(req, 1500), &scratch);
}

/* One worker per answer; NULL answers hang until the deadline. */
static void
start(const char *const *answers, int n)
{
	static const struct http_limits lim = { .header_max = 8192,
		.body_max = 1024,
		.deadline_ms = 3000,
		.conns_max = 16 };
	enum registry_error error;
	char *cause = NULL;
	struct lease *l;
	int fd, created;

	/* As promfork does: a client gone is an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	registry_init(&reg, base, 9400, 9400 + WORKERS_MAX - 1,
	    helpers_probe_all_free, NULL);
	memset(&scratch, 0, sizeof scratch);
	budget_init(&budget, 1 << 20);
	scratch.budget = &budget;
	ncw = n;
	for (int i = 0; i < n; i++) {
		const char *a = answers[i] != NULL ? answers[i] : "";

		canned_start(&cw[i], a, strlen(a));
		cw[i].hang = answers[i] == NULL;
		canned_run(&cw[i]);
		sleepers[i] = netutil_sleeper();
		l = registry_lease_pid(&reg, sleepers[i], NULL, LEASE_API, -1,
		    &created, &error, &cause);
		cr_assert_not_null(l, "%s", cause);
		l->port = cw[i].port;
	}
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
	registry_finish(&reg);
	fanout_scratch_finish(&scratch);
	event_base_free(base);
	for (int i = 0; i < ncw; i++) {
		kill(sleepers[i], SIGKILL);
		waitpid(sleepers[i], NULL, 0);
		canned_stop(&cw[i]);
	}
}

TestSuite(fanout, .timeout = 30);

static size_t
get(const char *extra, char **out)
{
	char req[512];

	snprintf(req, sizeof req,
	    "GET /workers/metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n%s\r\n",
	    extra);
	return netutil_exchange(port, req, strlen(req), 5000, out);
}

/* Sends req and resets the connection: a client that has gone away. */
static void
send_and_reset(const char *req)
{
	struct linger lg = { 1, 0 };
	int fd = netutil_connect(port);

	cr_assert_eq(send(fd, req, strlen(req), MSG_NOSIGNAL),
	    (ssize_t)strlen(req));
	/* Let the server read the request and start the scrapes. */
	netutil_sleep_ms(50);
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
}

static void
assert_line(const char *text, const char *line)
{
	char want[256];

	snprintf(want, sizeof want, "\n%s\n", line);
	cr_assert(strstr(text, want) != NULL, "no line \"%s\" in:\n%s", line,
	    text);
}

static const char answer0[] =
    "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
    "# TYPE app_requests_total counter\napp_requests_total 3\n";
static const char answer1[] =
    "HTTP/1.0 200 OK\r\nContent-Length: 55\r\n\r\n"
    "# TYPE app_requests_total counter\napp_requests_total 5\n";

Test(fanout, workers_merged_with_their_labels)
{
	const char *answers[] = { answer0, answer1 };
	char *r;

	start(answers, 2);
	get("", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert(strstr(r, "Content-Type: " HTTP_EXPOSITION_TYPE "\r\n"), "%s",
	    r);
	assert_line(r, "app_requests_total{worker=\"0\"} 3");
	assert_line(r, "app_requests_total{worker=\"1\"} 5");
	assert_line(r, "promfork_worker_up{worker=\"0\"} 1");
	assert_line(r, "promfork_worker_up{worker=\"1\"} 1");
	assert_line(r,
	    "promfork_worker_scrape_malformed_lines{worker=\"1\"} 0");
	cr_assert(strstr(cw[0].request, "Accept: text/plain;version=0.0.4"),
	    "%s", cw[0].request);
	free(r);
	stop();
}

/* Nine tenths of Prometheus' 0.3 s: time is left to merge and answer. */
Test(fanout, worker_past_the_deadline_is_down_and_not_waited_for)
{
	const char *answers[] = { answer0, NULL };
	struct timespec t0, t1;
	double secs;
	char *r;

	start(answers, 2);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	get("X-Prometheus-Scrape-Timeout-Seconds: 0.3\r\n", &r);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	cr_assert_lt(secs, 1.4, "answered at the deadline, not the 1.5 s cap");
	assert_line(r, "app_requests_total{worker=\"0\"} 3");
	assert_line(r, "promfork_worker_up{worker=\"0\"} 1");
	assert_line(r, "promfork_worker_up{worker=\"1\"} 0");
	cr_assert_not(registry_find_worker(&reg, 1)->scrape.ok);
	cr_assert(strstr(registry_find_worker(&reg, 1)->scrape.error,
		      "within 270 ms"),
	    "%s", registry_find_worker(&reg, 1)->scrape.error);
	cr_assert(registry_find_worker(&reg, 0)->scrape.ok);
	free(r);
	stop();
}

Test(fanout, garbage_and_bad_lines)
{
	const char *answers[] = { "not http at all\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\ngood_metric 1\nthis is { not a line\n",
		"HTTP/1.0 500 Oops\r\nContent-Length: 4\r\n\r\noops" };
	char *r;

	start(answers, 3);
	get("", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	assert_line(r, "promfork_worker_up{worker=\"0\"} 0");
	assert_line(r, "promfork_worker_up{worker=\"1\"} 1");
	assert_line(r, "promfork_worker_up{worker=\"2\"} 0");
	assert_line(r, "good_metric{worker=\"1\"} 1");
	assert_line(r,
	    "promfork_worker_scrape_malformed_lines{worker=\"1\"} 1");
	cr_assert_null(strstr(r, "oops"), "a failed answer is not merged");
	cr_assert_str_eq(registry_find_worker(&reg, 2)->scrape.error,
	    "HTTP status 500");
	free(r);
	stop();
}

Test(fanout, no_workers_at_all)
{
	char *r;

	start(NULL, 0);
	get("", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	assert_line(r, "# TYPE promfork_worker_up gauge");
	cr_assert_null(strstr(r, "promfork_worker_up{"), "%s", r);
	free(r);
	stop();
}

Test(fanout, client_leaving_cancels_the_scrapes)
{
	const char req[] = "GET /workers/metrics HTTP/1.1\r\n\r\n";
	const char *answers[] = { answer0, answer1 };
	char *r;
	int i;

	start(answers, 2);
	cw[0].delay_ms = 300;
	cw[1].delay_ms = 300;
	send_and_reset(req);
	for (i = 0; i < 100 && http_server_conns(server) > 0; i++)
		netutil_sleep_ms(10);
	cr_assert_eq(http_server_conns(server), 0,
	    "gone before the workers "
	    "answered");
	/* Past the workers' delay: the cancelled scrapes recorded nothing. */
	netutil_sleep_ms(500);
	cr_assert_eq(registry_find_worker(&reg, 0)->scrape.when, 0);
	cr_assert_eq(registry_find_worker(&reg, 1)->scrape.when, 0);
	/* The server still serves. */
	cw[0].delay_ms = 0;
	cw[1].delay_ms = 0;
	get("", &r);
	assert_line(r, "promfork_worker_up{worker=\"1\"} 1");
	free(r);
	stop();
}

/* Reads one fd until the peer closes or timeout_ms passes. */
static char *
read_all(int fd, int timeout_ms, size_t *len)
{
	size_t cap = 65536;
	char *buf = malloc(cap + 1);
	struct pollfd pfd = { fd, POLLIN, 0 };
	ssize_t n;

	*len = 0;
	while (poll(&pfd, 1, timeout_ms) == 1) {
		if (*len == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		if ((n = read(fd, buf + *len, cap - *len)) <= 0)
			break;
		*len += (size_t)n;
	}
	buf[*len] = '\0';
	return buf;
}

#define CONCURRENT 6

/* Six clients at once, the workers slow: one scrape each, one answer. */
Test(fanout, concurrent_requests_share_one_scrape)
{
	const char req[] = "GET /workers/metrics HTTP/1.1\r\nHost: t\r\n"
			   "Connection: close\r\n\r\n";
	const char *answers[] = { answer0, answer1 };
	int fds[CONCURRENT], i;
	char *r[CONCURRENT], *body0;
	size_t len;

	start(answers, 2);
	cw[0].delay_ms = 200;
	cw[1].delay_ms = 200;
	for (i = 0; i < CONCURRENT; i++) {
		fds[i] = netutil_connect(port);
		cr_assert_eq(send(fds[i], req, strlen(req), MSG_NOSIGNAL),
		    (ssize_t)strlen(req));
	}
	for (i = 0; i < CONCURRENT; i++) {
		r[i] = read_all(fds[i], 5000, &len);
		close(fds[i]);
		cr_assert(strncmp(r[i], "HTTP/1.1 200 OK\r\n", 17) == 0,
		    "client %d: %s", i, r[i]);
		assert_line(r[i], "app_requests_total{worker=\"1\"} 5");
	}
	body0 = strstr(r[0], "\r\n\r\n");
	for (i = 1; i < CONCURRENT; i++)
		cr_assert_str_eq(strstr(r[i], "\r\n\r\n"), body0,
		    "client %d got another answer", i);
	cr_assert_eq(cw[0].served, 1, "worker 0 scraped %d times",
	    cw[0].served);
	cr_assert_eq(cw[1].served, 1, "worker 1 scraped %d times",
	    cw[1].served);
	cr_assert_eq(scratch.scrapes, 1);
	cr_assert_eq(scratch.joined, CONCURRENT - 1);
	cr_assert_eq(budget.used, 0, "%zu bytes still counted", budget.used);
	cr_assert_gt(budget.peak, 0);
	/* Once answered, the next request scrapes anew. */
	free(r[0]);
	get("", &r[0]);
	cr_assert_eq(cw[0].served, 2);
	for (i = 0; i < CONCURRENT; i++)
		free(r[i]);
	stop();
}

/* A body of many lines, to be worth compressing. */
static char *
long_answer(int lines)
{
	struct buf b = { NULL, 0, 0 };
	struct buf body = { NULL, 0, 0 };
	int i;

	buf_printf(&body, "# TYPE app_items_total counter\n");
	for (i = 0; i < lines; i++)
		buf_printf(&body, "app_items_total{path=\"/p/%d\"} %d\n", i, i);
	buf_printf(&b, "HTTP/1.0 200 OK\r\nContent-Length: %zu\r\n\r\n",
	    body.len);
	buf_add(&b, body.data, body.len);
	buf_add(&b, "", 1);
	buf_finish(&body);
	return b.data;
}

Test(fanout, gzip_when_asked)
{
	char *big = long_answer(500);
	const char *answers[] = { big };
	char *plain, *gz, *pbody, *zbody, *out;
	size_t plen, glen, zlen;
	uLongf outlen;

	start(answers, 1);
	plen = get("", &plain);
	glen = get("Accept-Encoding: gzip, deflate\r\n", &gz);
	cr_assert_null(strstr(plain, "Content-Encoding"), "%s", plain);
	cr_assert(strstr(gz, "\r\nContent-Encoding: gzip\r\n") != NULL,
	    "%.300s", gz);
	cr_assert(strstr(gz, "\r\nVary: Accept-Encoding\r\n") != NULL);
	pbody = strstr(plain, "\r\n\r\n") + 4;
	zbody = strstr(gz, "\r\n\r\n") + 4;
	zlen = glen - (size_t)(zbody - gz);
	cr_assert_lt(zlen * 4, plen, "gzip: %zu bytes of %zu", zlen, plen);
	/* inflate it (gzip wrapper: windowBits 16 + 15) */
	{
		z_stream z;

		outlen = (uLongf)plen * 2;
		out = malloc(outlen);
		memset(&z, 0, sizeof z);
		cr_assert_eq(inflateInit2(&z, 16 + 15), Z_OK);
		z.next_in = (Bytef *)zbody;
		z.avail_in = (uInt)zlen;
		z.next_out = (Bytef *)out;
		z.avail_out = (uInt)outlen;
		cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
		outlen = z.total_out;
		inflateEnd(&z);
	}
	/* the scrape durations differ: compare up to them */
	cr_assert_gt(outlen, 1000);
	cr_assert(strncmp(out, pbody,
		      strstr(pbody, "# HELP promfork_worker_scrape_duration") -
			  pbody) == 0,
	    "the gzipped answer is the plain one");
	free(out);
	free(plain);
	free(gz);
	free(big);
	stop();
}

Test(fanout, over_the_budget)
{
	char *big = long_answer(2000);
	const char *answers[] = { answer0, big };
	char *r;

	start(answers, 2);
	/* Answers in flight hold all of it: a new fan-out is refused. */
	budget_hold(&budget, budget.max);
	get("", &r);
	cr_assert(strncmp(r, "HTTP/1.1 503 ", 13) == 0, "%s", r);
	cr_assert(strstr(r, "budget") != NULL, "%s", r);
	cr_assert_eq(budget.refused, 1);
	cr_assert_eq(cw[0].served, 0, "refused before any scrape");
	free(r);
	/* Room for worker 0's body, not worker 1's 60 KB: that one stops. */
	budget_give(&budget, budget.max);
	budget.max = 4096;
	get("", &r);
	cr_assert(strncmp(r, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", r);
	assert_line(r, "promfork_worker_up{worker=\"0\"} 1");
	assert_line(r, "promfork_worker_up{worker=\"1\"} 0");
	cr_assert_eq(budget.stopped, 1);
	cr_assert_eq(budget.used, 0, "%zu bytes still counted", budget.used);
	free(r);
	free(big);
	stop();
}
