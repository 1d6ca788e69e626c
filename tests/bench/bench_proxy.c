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

static const char post_req[] =
    "POST /v1/workers HTTP/1.1\r\nHost: "
    "promfork\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

static int
worker(size_t size)
{
	const char *sock = getenv("PROMFORK_SOCKET"), *body, *p;
	char *resp, buf[4096], line[128];
	size_t blen, hlen, n = 0;
	struct sockaddr_in sin;
	int fd, lfd, on = 1, port, i;

	alarm(110);
	if (sock == NULL || (fd = bench_unix_connect(sock)) == -1 ||
	    bench_http(fd, post_req, sizeof post_req - 1, buf, sizeof buf,
		&body, &blen) != 201 ||
	    (p = strstr(body, "\"port\":")) == NULL)
		return 1;
	close(fd);
	port = atoi(p + 7);
	resp = malloc(size + 512);
	if (resp == NULL)
		return 1;
	hlen = (size_t)snprintf(resp, 512,
	    "HTTP/1.1 200 OK\r\nContent-Type: "
	    "text/plain; version=0.0.4\r\nContent-Length: %zu\r\n\r\n",
	    size);
	for (i = 0; n < size; i++) {
		size_t k = (size_t)snprintf(line, sizeof line,
		    "bench_metric_total{kind=\"k%d\",path=\"/api/v1/x\"} %d\n",
		    i, i * 7);
		if (k > size - n)
			k = size - n;
		memcpy(resp + hlen + n, line, k);
		n += k;
	}
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(lfd, 64) != 0)
		return 1;
	for (;;) {
		int c = accept(lfd, NULL, NULL), keep = 1;
		size_t have = 0;

		if (c == -1)
			continue;
		while (keep) {
			ssize_t r = read(c, buf + have, sizeof buf - 1 - have);
			char *end;

			if (r <= 0)
				break;
			have += (size_t)r;
			buf[have] = '\0';
			if ((end = strstr(buf, "\r\n\r\n")) == NULL) {
				if (have == sizeof buf - 1)
					break;
				continue;
			}
			keep = strcasestr(buf, "connection: close") == NULL;
			if (write(c, resp, hlen + size) !=
			    (ssize_t)(hlen + size))
				break;
			have = 0;
		}
		close(c);
	}
}

/* One scrape on a new connection; its time in microseconds, or -1. */
static double
scrape(uint16_t port, const char *path, size_t want, char *buf, size_t cap)
{
	char req[256];
	const char *body;
	size_t blen;
	double t0 = bench_now_us();
	int fd, st;

	snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n",
	    path);
	if ((fd = bench_tcp_connect(port)) == -1)
		return -1;
	st = bench_http(fd, req, strlen(req), buf, cap, &body, &blen);
	close(fd);
	if (st != 200 || blen != want)
		return -1;
	return bench_now_us() - t0;
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

	if (argc == 3 && strcmp(argv[1], "--worker") == 0)
		return worker((size_t)atol(argv[2]));
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
