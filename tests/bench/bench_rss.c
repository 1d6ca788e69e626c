/*
 * promfork's resident memory with 1 024 leases.  promfork runs this
 * program as its COMMAND (--driver), which reads promfork's VmRSS from
 * /proc while it is idle (the baseline, same run), then forks 1 024
 * sleepers that each register themselves and reads it again with all of
 * them live; it also times those 1 024 registrations, made one after the
 * other so each meets every lease already there.
 *
 *     bench_rss [WORKERS]
 */
#include <sys/wait.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define WORKERS_MAX 4096

static const char post_req[] =
    "POST /v1/workers HTTP/1.1\r\nHost: "
    "promfork\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

static int
driver(char **argv)
{
	const char *sock = getenv("PROMFORK_SOCKET");
	int n = atoi(argv[3]), i, errors = 0, p[2];
	static pid_t kids[WORKERS_MAX];
	static double lat[WORKERS_MAX];
	pid_t pf = getppid();
	long idle, idle_anon, full, full_anon, after;
	double t0, t_all;
	char buf[2048], ok;
	const char *body;
	size_t blen;

	if (sock == NULL)
		return 2;
	idle = bench_rss_kib(pf, "VmRSS");
	idle_anon = bench_rss_kib(pf, "RssAnon");
	t_all = bench_now_us();
	for (i = 0; i < n; i++) {
		if (pipe(p) != 0)
			return 1;
		t0 = bench_now_us();
		if ((kids[i] = fork()) == 0) {
			int fd = bench_unix_connect(sock);

			close(p[0]);
			alarm(60);
			ok = fd != -1 &&
			    bench_http(fd, post_req, sizeof post_req - 1, buf,
				sizeof buf, &body, &blen) == 201;
			if (fd != -1)
				close(fd);
			if (write(p[1], &ok, 1) != 1)
				_exit(1);
			close(p[1]);
			pause();
			_exit(0);
		}
		close(p[1]);
		if (read(p[0], &ok, 1) != 1 || !ok)
			errors++;
		lat[i] = bench_now_us() - t0;
		close(p[0]);
	}
	t_all = bench_now_us() - t_all;
	full = bench_rss_kib(pf, "VmRSS");
	full_anon = bench_rss_kib(pf, "RssAnon");
	for (i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	for (i = 0; i < n; i++)
		waitpid(kids[i], NULL, 0);
	usleep(200000);
	after = bench_rss_kib(pf, "VmRSS");
	if (errors > 0) {
		printf("FAILED: %d of %d registrations\n", errors, n);
		return 1;
	}
	printf("%d live leases: VmRSS %.2f MiB   baseline (idle promfork) "
	       "%.2f MiB   ratio %.2f   added %.0f KiB (%.2f KiB per lease)   "
	       "target <= 8 MiB: %s\n",
	    n, full / 1024.0, idle / 1024.0, (double)full / (double)idle,
	    (double)(full - idle), (double)(full - idle) / n,
	    full <= 8 * 1024 ? "met" : "MISSED");
	printf("RssAnon (heap, stacks) %ld KiB idle, %ld KiB with %d leases; "
	       "VmRSS %.2f MiB after they all died\n",
	    idle_anon, full_anon, n, after / 1024.0);
	printf("fork+register one after another: %.0f/s overall; the last "
	       "100 (each among %d+ leases) p50 %.2f ms, the first 100 p50 "
	       "%.2f ms\n",
	    n / (t_all / 1e6), n - 100, bench_pct(lat + n - 100, 100, 50) / 1e3,
	    bench_pct(lat, 100, 50) / 1e3);
	return 0;
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 1024;
	char nw[16];

	if (argc == 4 && strcmp(argv[1], "--driver") == 0)
		return driver(argv);
	if (n < 200 || n > WORKERS_MAX) {
		fprintf(stderr, "usage: bench_rss [WORKERS, 200 to %d]\n",
		    WORKERS_MAX);
		return 2;
	}
	snprintf(nw, sizeof nw, "%d", n);
	{
		char *args[] = { nw, NULL };

		(void)bench_run_driver(n + 8, args);
	}
	return 0;
}
