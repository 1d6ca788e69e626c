/*
 * promfork's resident memory with 1 024 leases.  promfork runs this
 * program as its COMMAND (--driver), which reads promfork's VmRSS from
 * /proc while it is idle (the baseline, same run), then forks 1 024
 * sleepers that each register themselves and reads it again with all of
 * them live; it also times those 1 024 registrations, made one after the
 * other so each meets every lease already there.
 *
 * Then the history (history.c) in this process: 64 live slots sampled a
 * full hour's worth (720 samples each) with 64 lifetimes each, its VmRSS
 * beside this process's before it (the baseline), and the CPU time of
 * one sampling of 64 workers beside the same 64 reads of /proc/PID/stat
 * done bare.
 *
 *     bench_rss [WORKERS]
 */
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "bench.h"
#include "promfork.h"

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

#define HISTORY_SLOTS 64

static int
bench_probe_free(uint16_t port, void *arg)
{
	return 1;
}

/* The 64 reads of a sampling, bare: open, read, close. */
static void
bench_bare_reads(const pid_t *kids)
{
	char path[64], buf[1024];
	int i, fd;

	for (i = 0; i < HISTORY_SLOTS; i++) {
		snprintf(path, sizeof path, "/proc/%d/stat", (int)kids[i]);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		if (read(fd, buf, sizeof buf) < 0)
			buf[0] = '\0';
		close(fd);
	}
}

/* The history's cost: memory for a full hour of 64 slots, CPU per sample. */
static int
bench_history(void)
{
	struct history_config hc = { HISTORY_RESOLUTION_S, HISTORY_WINDOW_S };
	struct event_base *base = event_base_new();
	static pid_t kids[HISTORY_SLOTS];
	double t0, sample_us, bare_us;
	enum registry_error err;
	struct history_totals t;
	struct registry reg;
	struct history *h;
	long before, after;
	char *cause = NULL;
	int i, j, created;

	registry_init(&reg, base, 20000, 20000 + HISTORY_SLOTS - 1,
	    bench_probe_free, NULL);
	for (i = 0; i < HISTORY_SLOTS; i++) {
		if ((kids[i] = fork()) == 0) {
			alarm(120);
			pause();
			_exit(0);
		}
		if (registry_lease_pid(&reg, kids[i], NULL, LEASE_API, i,
			&created, &err, &cause) == NULL) {
			printf("FAILED: lease %d: %s\n", i, cause);
			return 1;
		}
	}
	before = bench_rss_kib(getpid(), "VmRSS");
	h = history_create(NULL, &reg, &hc);
	history_changed(h);
	for (i = 0; i < HISTORY_SLOTS; i++) {
		/* a crash loop's worth: the ring of lifetimes full */
		for (j = 0; j < HISTORY_LIFETIMES_MAX; j++) {
			history_lifetime_end(h, i, LEASE_END_EXIT, 1000 + j);
			history_lifetime_start(h, i, kids[i], 1001 + j);
		}
	}
	for (i = 0; i < (int)h->nsamples; i++)
		history_sample(h);
	after = bench_rss_kib(getpid(), "VmRSS");
	history_totals(h, time(NULL), &t);
	/* CPU per sampling of 64 workers, against the bare reads */
	t0 = bench_cpu_us();
	for (i = 0; i < 200; i++)
		history_sample(h);
	sample_us = (bench_cpu_us() - t0) / 200;
	t0 = bench_cpu_us();
	for (i = 0; i < 200; i++)
		bench_bare_reads(kids);
	bare_us = (bench_cpu_us() - t0) / 200;
	printf("history, %d slots, a full hour (%zu samples each, %d "
	       "lifetimes each): VmRSS +%ld KiB (%.1f KiB per slot) over "
	       "%ld KiB before it (baseline); stated cost %zu bytes per slot, "
	       "%zu KiB in all\n",
	    HISTORY_SLOTS, h->nsamples, HISTORY_LIFETIMES_MAX, after - before,
	    (double)(after - before) / HISTORY_SLOTS, before,
	    history_slot_bytes(h), t.bytes / 1024);
	printf("history sampling of %d workers: %.1f us CPU per sample   "
	       "baseline (the same %d /proc/PID/stat reads, bare) %.1f us   "
	       "ratio %.2f; every %d s: %.4f%% of one CPU\n",
	    HISTORY_SLOTS, sample_us, HISTORY_SLOTS, bare_us,
	    sample_us / bare_us, HISTORY_RESOLUTION_S,
	    sample_us / (HISTORY_RESOLUTION_S * 1e6) * 100);
	for (i = 0; i < HISTORY_SLOTS; i++)
		kill(kids[i], SIGKILL);
	for (i = 0; i < HISTORY_SLOTS; i++)
		waitpid(kids[i], NULL, 0);
	history_free(h);
	registry_finish(&reg);
	event_base_free(base);
	free(cause);
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
	return bench_history();
}
