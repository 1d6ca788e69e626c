/*
 * What the proxy adds to a scrape: GET /workers/0/metrics on promfork's
 * listener against the baseline of scraping the worker directly, for a
 * 50 KB body.  promfork runs this program as its COMMAND (--worker): it
 * registers itself and serves the body on its port from a plain blocking
 * loop.  Each round makes one direct and one proxied scrape, each on a new
 * connection (promfork's own connection to the worker is a new one each
 * time), alternately, so drift hits both alike.
 *
 *     bench_proxy [BODY_BYTES [ROUNDS]]
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define ROUNDS_MAX 20000

static size_t body_size;

/* The body every scrape gets: metrics lines, cut at body_size bytes. */
static char *
proxy_body(int worker, size_t *len)
{
	char *body = malloc(body_size), line[128];
	size_t n = 0, k;
	int i;

	if (body == NULL)
		_exit(1);
	for (i = 0; n < body_size; i++) {
		k = (size_t)snprintf(line, sizeof line,
		    "bench_metric_total{kind=\"k%d\",path=\"/api/v1/x\"} %d\n",
		    i, i * 7);
		if (k > body_size - n)
			k = body_size - n;
		memcpy(body + n, line, k);
		n += k;
	}
	*len = body_size;
	return body;
}

/* One scrape on a new connection; its time in microseconds, or -1. */
static double
scrape(uint16_t port, const char *path, size_t want, char *buf, size_t cap)
{
	size_t len;
	double ms = bench_get(port, path, buf, cap, &len);

	return ms < 0 || len != want ? -1 : ms * 1e3;
}

int
main(int argc, char **argv)
{
	size_t size = argc > 1 ? (size_t)atol(argv[1]) : 50 * 1024;
	int rounds = argc > 2 ? atoi(argv[2]) : 1000, r, errors = 0;
	static double direct[ROUNDS_MAX], proxied[ROUNDS_MAX];
	char range[32], sock[512], listen[64], sz[32], *dir, *self, *buf;
	uint16_t low, lport;
	double dm, pm;
	pid_t pid;

	if (argc == 3 && strcmp(argv[1], "--worker") == 0) {
		body_size = (size_t)atol(argv[2]);
		bench_worker_serve(proxy_body);
	}
	if (size < 1 || size > 8 * 1024 * 1024 || rounds < 10 ||
	    rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_proxy [BODY_BYTES [ROUNDS]]\n");
		return 2;
	}
	dir = bench_tmpdir();
	self = bench_self();
	buf = malloc(size + 4096);
	if (buf == NULL || bench_port_range(5, &low) != 0) {
		fprintf(stderr, "no free ports\n");
		return 1;
	}
	lport = (uint16_t)(low + 4); /* the listener, outside the range */
	snprintf(range, sizeof range, "%u-%u", low, low + 3);
	snprintf(listen, sizeof listen, "127.0.0.1:%u", lport);
	snprintf(sock, sizeof sock, "%s/s", dir);
	snprintf(sz, sizeof sz, "%zu", size);
	{
		char *av[] = { (char *)bench_promfork(), "--port-range", range,
			"--socket", sock, "--listen", listen, "--target-host",
			"127.0.0.1", "--", self, "--worker", sz, NULL };

		pid = bench_spawn(av, 1);
	}
	/* ready: the proxied scrape answers whole (bounded: 10 s) */
	for (r = 0; r < 1000 &&
	     scrape(lport, "/workers/0/metrics", size, buf, size + 4096) < 0;
	     r++)
		usleep(10000);
	if (r == 1000) {
		fprintf(stderr,
		    "the worker never answered through the proxy\n");
		errors = 1;
	}
	for (r = 0; r < rounds && errors == 0; r++) {
		direct[r] = scrape(low, "/metrics", size, buf, size + 4096);
		proxied[r] =
		    scrape(lport, "/workers/0/metrics", size, buf, size + 4096);
		if (direct[r] < 0 || proxied[r] < 0)
			errors++;
	}
	kill(pid, SIGTERM);
	bench_reap(pid, 10000);
	bench_rmtree(dir);
	if (errors == 0) {
		double d50 = bench_pct(direct, (size_t)rounds, 50);
		double d99 = bench_pct(direct, (size_t)rounds, 99);
		double p50 = bench_pct(proxied, (size_t)rounds, 50);
		double p99 = bench_pct(proxied, (size_t)rounds, 99);

		dm = bench_mean(direct, (size_t)rounds);
		pm = bench_mean(proxied, (size_t)rounds);
		printf("%zu-byte scrapes, %d rounds, a new connection each\n",
		    size, rounds);
		printf(
		    "scrape p50 ms  proxied %6.3f   baseline (direct) %6.3f   "
		    "ratio %.2f   added %.3f ms   target <= 0.2 ms added: %s\n",
		    p50 / 1e3, d50 / 1e3, p50 / d50, (p50 - d50) / 1e3,
		    p50 - d50 <= 200 ? "met" : "MISSED");
		printf("scrape mean ms proxied %6.3f   baseline %6.3f   added "
		       "%.3f ms\n",
		    pm / 1e3, dm / 1e3, (pm - dm) / 1e3);
		printf("scrape p99 ms  proxied %6.3f   baseline %6.3f   added "
		       "%.3f ms\n",
		    p99 / 1e3, d99 / 1e3, (p99 - d99) / 1e3);
	} else
		printf("FAILED: %d scrapes failed\n", errors);
	free(buf);
	free(dir);
	free(self);
	return 0;
}
