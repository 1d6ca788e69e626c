#include <criterion/criterion.h>
#include <event2/buffer.h>
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
 * Real leases of sleeping processes in a registry whose ports are not
 * bound; each lease's port is then pointed at a canned worker on loopback.
 * The loop runs in this thread.
 */
#define NLEASES 3

static struct event_base *base;
static struct registry reg;
static pid_t sleepers[NLEASES + 1];
static int ctls[NLEASES]; /* each sleeper holds what it is given */
static struct lease *leases[NLEASES];

struct got {
	int dones;
	int heads[NLEASES];
	size_t bytes[NLEASES];
	int stop_body[NLEASES]; /* body returns -1 */
	struct collect_item items[NLEASES];
	size_t n;
};
static struct got g;

static void
setup(void)
{
	enum registry_error error;
	char *cause = NULL;
	int created;

	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	registry_init(&reg, base, 9400, 9400 + NLEASES, helpers_probe_all_free,
	    NULL);
	memset(&g, 0, sizeof g);
	for (int i = 0; i < NLEASES; i++) {
		sleepers[i] = netutil_holder(&ctls[i]);
		leases[i] = registry_lease_pid(&reg, sleepers[i], NULL,
		    LEASE_API, -1, &created, &error, &cause);
		cr_assert_not_null(leases[i], "%s", cause);
		cr_assert_eq(leases[i]->worker, i);
	}
	sleepers[NLEASES] = 0;
}

static void
teardown(void)
{
	registry_finish(&reg);
	event_base_free(base);
	for (int i = 0; i < NLEASES; i++)
		close(ctls[i]);
	for (int i = 0; i <= NLEASES; i++) {
		if (sleepers[i] > 0) {
			kill(sleepers[i], SIGKILL);
			waitpid(sleepers[i], NULL, 0);
		}
	}
}

TestSuite(collect, .init = setup, .fini = teardown, .timeout = 20);

static int
got_head_cb(struct collect_item *it, const struct scrape_head *h, void *arg)
{
	struct got *gg = arg;

	cr_assert_lt(it->index, NLEASES);
	gg->heads[it->index]++;
	return 0;
}

static int
got_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct got *gg = arg;

	gg->bytes[it->index] += evbuffer_get_length(chunk);
	return gg->stop_body[it->index] ? -1 : 0;
}

static void
got_done_cb(struct collect_item *items, size_t n, void *arg)
{
	struct got *gg = arg;

	gg->dones++;
	gg->n = n;
	cr_assert_leq(n, NLEASES);
	memcpy(gg->items, items, n * sizeof *items);
	event_base_loopbreak(base);
}

static const struct collect_callbacks got_cb = { got_head_cb, got_body_cb,
	got_done_cb };

/* Runs the loop until done (or 5 s), then lets freed sockets close. */
static void
run(void)
{
	struct timeval tv = { 5, 0 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	event_base_loop(base, EVLOOP_NONBLOCK);
}

/* Lease i's port is the listener fd, held by its process as a worker's. */
static void
point(int i, int fd, uint16_t port)
{
	netutil_give(ctls[i], fd);
	leases[i]->port = port;
}

static struct collect *
start(size_t n, int deadline_ms)
{
	struct collect_config cfg = { NULL, deadline_ms, 1024, 0 };

	return collect_start(base, &reg, leases, n, &cfg, &got_cb, &g);
}

static const char ok_answer[] =
    "HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nup 1\nx 2\n";

Test(collect, no_leases_reports_once_from_the_loop)
{
	cr_assert_not_null(start(0, 1000));
	cr_assert_eq(g.dones, 0, "done never runs inside collect_start");
	run();
	cr_assert_eq(g.dones, 1);
	cr_assert_eq(g.n, 0);
}

Test(collect, each_outcome_is_reported_and_recorded)
{
	struct canned ok, hang;
	struct timespec t0, t1;
	double waited;

	canned_start(&ok, ok_answer, sizeof ok_answer - 1);
	canned_run(&ok);
	canned_start(&hang, "", 0);
	hang.hang = 1;
	canned_run(&hang);
	point(0, ok.fd, ok.port);
	leases[1]->port = netutil_dead_port();
	point(2, hang.fd, hang.port);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	start(NLEASES, 300);
	run();
	clock_gettime(CLOCK_MONOTONIC, &t1);
	waited = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	canned_stop(&ok);
	canned_stop(&hang);

	cr_assert_eq(g.dones, 1, "one report for the whole set");
	cr_assert_eq(g.n, NLEASES);
	cr_assert_geq(waited, 0.29, "the report waited for the slowest");
	cr_assert_lt(waited, 2.0, "and not much past the deadline");
	for (int i = 0; i < NLEASES; i++) {
		cr_assert_eq(g.items[i].index, (size_t)i);
		cr_assert_eq(g.items[i].worker, i);
		cr_assert_eq(g.items[i].pid, sleepers[i]);
	}

	cr_assert(g.items[0].ok, "%s", g.items[0].error);
	cr_assert_eq(g.items[0].status, 200);
	cr_assert_str_eq(g.items[0].error, "");
	cr_assert_eq(g.heads[0], 1);
	cr_assert_eq(g.bytes[0], 9);
	cr_assert(leases[0]->scrape.ok, "recorded on the lease");
	cr_assert_eq(leases[0]->scrape.status, 200);

	cr_assert_not(g.items[1].ok);
	cr_assert_eq(g.items[1].status, 0);
	cr_assert_not(g.items[1].timed_out);
	cr_assert(strstr(g.items[1].error, "cannot connect"), "%s",
	    g.items[1].error);
	cr_assert_eq(g.heads[1], 0);
	cr_assert_not(leases[1]->scrape.ok);
	cr_assert_neq(leases[1]->scrape.when, 0, "the failure is recorded");
	cr_assert_str_eq(leases[1]->scrape.error, g.items[1].error);

	cr_assert_not(g.items[2].ok);
	cr_assert(g.items[2].timed_out);
	cr_assert(strstr(g.items[2].error, "within 300 ms"), "%s",
	    g.items[2].error);
	cr_assert_geq(g.items[2].seconds, 0.29);
	cr_assert_not(leases[2]->scrape.ok);
}

Test(collect, garbage_answer_is_a_failure)
{
	const char garbage[] = "SSH-2.0-OpenSSH_9.6\r\n\r\n";
	struct canned cw;

	canned_start(&cw, garbage, sizeof garbage - 1);
	canned_run(&cw);
	point(0, cw.fd, cw.port);
	start(1, 2000);
	run();
	canned_stop(&cw);
	cr_assert_eq(g.dones, 1);
	cr_assert_not(g.items[0].ok);
	cr_assert(strstr(g.items[0].error, "not an HTTP/1.x response"), "%s",
	    g.items[0].error);
	cr_assert_str_eq(leases[0]->scrape.error, g.items[0].error);
}

Test(collect, a_body_callback_stops_its_own_scrape_only)
{
	struct canned cw;

	canned_start(&cw, ok_answer, sizeof ok_answer - 1);
	canned_run(&cw);
	point(0, cw.fd, cw.port);
	point(1, cw.fd, cw.port);
	g.stop_body[0] = 1;
	start(2, 2000);
	run();
	canned_stop(&cw);
	cr_assert_eq(g.dones, 1);
	cr_assert_not(g.items[0].ok);
	cr_assert_str_eq(g.items[0].error, "stopped by the caller");
	cr_assert(g.items[1].ok, "%s", g.items[1].error);
	cr_assert_eq(g.bytes[1], 9);
}

Test(collect, cancel_reports_and_records_nothing)
{
	struct timeval tv = { 0, 400 * 1000 };
	struct canned cw;
	struct collect *c;

	canned_start(&cw, ok_answer, sizeof ok_answer - 1);
	cw.delay_ms = 100;
	canned_run(&cw);
	point(0, cw.fd, cw.port);
	c = start(1, 200);
	event_base_loop(base, EVLOOP_NONBLOCK);
	collect_cancel(c);
	collect_cancel(NULL);
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
	canned_stop(&cw);
	cr_assert_eq(g.dones, 0);
	cr_assert_eq(leases[0]->scrape.when, 0, "nothing recorded");
}

Test(collect, a_lease_gone_meanwhile_is_not_recorded)
{
	enum registry_error error;
	char *cause = NULL;
	struct canned cw;
	struct lease *l;
	int created;

	canned_start(&cw, ok_answer, sizeof ok_answer - 1);
	cw.delay_ms = 100;
	canned_run(&cw);
	point(0, cw.fd, cw.port);
	start(1, 2000);
	/* Slot 0 goes to another process before the answer is in. */
	lease_close(leases[0], LEASE_END_RELEASE);
	sleepers[NLEASES] = netutil_sleeper();
	l = registry_lease_pid(&reg, sleepers[NLEASES], NULL, LEASE_API, 0,
	    &created, &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	run();
	canned_stop(&cw);
	cr_assert_eq(g.dones, 1);
	cr_assert(g.items[0].ok, "the answer still arrived");
	cr_assert_eq(g.items[0].pid, sleepers[0]);
	cr_assert_eq(l->scrape.when, 0, "not recorded on the new lease");
}

/*
 * Issue 15 point 9: a port whose listener is not held by the lease's
 * process (the worker died and another process took its port) is not
 * scraped: the error says who holds it, and not a byte goes there.
 */
Test(collect, a_squatter_on_the_port_gets_nothing)
{
	struct canned squatter;
	char want[160];

	canned_start(&squatter, ok_answer, sizeof ok_answer - 1);
	canned_run(&squatter);
	leases[0]->port = squatter.port; /* held by this process only */
	start(1, 1000);
	run();
	canned_stop(&squatter);
	cr_assert_eq(g.dones, 1);
	cr_assert_not(g.items[0].ok);
	snprintf(want, sizeof want,
	    "port %u is held by pid %d, not by worker 0 (pid %d)",
	    squatter.port, (int)getpid(), (int)sleepers[0]);
	cr_assert_str_eq(g.items[0].error, want);
	cr_assert_eq(squatter.served, 0, "no request reached the squatter");
	cr_assert_eq(g.heads[0], 0);
	cr_assert_str_eq(leases[0]->scrape.error, want, "recorded");
}

/* The same when the worker's own listener is there too, and a squatter
 * listens beside it on the other loopback address. */
Test(collect, a_squatter_on_ipv6_loopback_gets_nothing)
{
	struct sockaddr_in6 sin6;
	socklen_t len = sizeof sin6;
	int fd, conn, on = 1;
	char want[160];

	fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert_neq(fd, -1);
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
	memset(&sin6, 0, sizeof sin6);
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	if (bind(fd, (struct sockaddr *)&sin6, sizeof sin6) != 0)
		cr_skip_test("no IPv6 loopback here");
	cr_assert_eq(listen(fd, 8), 0);
	getsockname(fd, (struct sockaddr *)&sin6, &len);
	/* Nothing on 127.0.0.1: main fell back to [::1] and asked it. */
	leases[0]->port = ntohs(sin6.sin6_port);
	start(1, 500);
	run();
	conn = accept(fd, NULL, NULL);
	cr_assert_eq(conn, -1, "the squatter was never dialled");
	close(fd);
	cr_assert_not(g.items[0].ok);
	snprintf(want, sizeof want,
	    "port %u is held by pid %d, not by worker 0 (pid %d)",
	    leases[0]->port, (int)getpid(), (int)sleepers[0]);
	cr_assert_str_eq(g.items[0].error, want);
}

/* A lease whose own process holds the port is scraped, even with other
 * leases refused in the same collect (one dump serves them all). */
Test(collect, owners_are_scraped_beside_squatted_ports)
{
	struct canned mine, other;

	canned_start(&mine, ok_answer, sizeof ok_answer - 1);
	canned_run(&mine);
	canned_start(&other, ok_answer, sizeof ok_answer - 1);
	canned_run(&other);
	point(0, mine.fd, mine.port);
	point(1, other.fd, other.port);
	leases[2]->port = other.port; /* lease 2's process does not hold it */
	start(NLEASES, 1000);
	run();
	canned_stop(&mine);
	canned_stop(&other);
	cr_assert(g.items[0].ok, "%s", g.items[0].error);
	cr_assert(g.items[1].ok, "%s", g.items[1].error);
	cr_assert_not(g.items[2].ok);
	cr_assert(strstr(g.items[2].error, "not by worker 2"), "%s",
	    g.items[2].error);
	cr_assert_eq(other.served, 1, "only lease 1's scrape reached it");
}
