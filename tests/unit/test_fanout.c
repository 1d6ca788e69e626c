#include <criterion/criterion.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

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
static struct loop lp;
static struct canned cw[WORKERS_MAX];
static int ncw;
static pid_t sleepers[WORKERS_MAX];
static uint16_t port;

static void
handle(struct http_conn *c, struct http_request *req, void *arg)
{
	fanout_serve(c, &reg, web_scrape_deadline(req, 1500), &scratch);
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
