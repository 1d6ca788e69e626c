/*
 * From a worker's death to the rewritten sd file.  promfork runs this
 * program as its COMMAND (--driver); each round it forks a worker that
 * registers itself, waits for the file that has it (inotify on the sd
 * directory, IN_MOVED_TO of the file's name), then SIGKILLs the worker and
 * times until the file is replaced again.  The baseline, in the same run,
 * is a fork+exit+waitpid cycle: the least a death can cost to notice.
 *
 *     bench_death [ROUNDS]
 */
#include <sys/inotify.h>
#include <sys/wait.h>

#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define ROUNDS_MAX 2000

static const char post_req[] =
    "POST /v1/workers HTTP/1.1\r\nHost: "
    "promfork\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

/* Waits for the next rename onto name; 0, or -1 after timeout_ms. */
static int
wait_moved(int in, const char *name, int timeout_ms)
{
	char buf[8192] __attribute__((aligned(8)));
	double end = bench_now_us() + timeout_ms * 1e3;
	struct pollfd pfd = { in, POLLIN, 0 };

	for (;;) {
		ssize_t n, off;
		int left = (int)((end - bench_now_us()) / 1e3);

		if (left <= 0 || poll(&pfd, 1, left) != 1)
			return -1;
		if ((n = read(in, buf, sizeof buf)) <= 0)
			return -1;
		for (off = 0; off < n;) {
			struct inotify_event *ev = (void *)(buf + off);

			if ((ev->mask & IN_MOVED_TO) && ev->len > 0 &&
			    strcmp(ev->name, name) == 0)
				return 0;
			off += (ssize_t)(sizeof *ev + ev->len);
		}
	}
}

static void
worker(const char *sock, int ready)
{
	char buf[2048], ok;
	const char *body;
	size_t blen;
	int fd = bench_unix_connect(sock);

	alarm(30);
	ok = fd != -1 &&
	    bench_http(fd, post_req, sizeof post_req - 1, buf, sizeof buf,
		&body, &blen) == 201;
	if (write(ready, &ok, 1) != 1)
		_exit(1);
	pause();
	_exit(0);
}

static int
driver(char **argv)
{
	const char *sock = getenv("PROMFORK_SOCKET");
	char *path = argv[2], *copy = strdup(path), *dir, *name;
	int rounds = atoi(argv[3]), r, in, p[2], errors = 0;
	static double lat[ROUNDS_MAX], base[ROUNDS_MAX];
	double t0;
	pid_t pid;
	char ok;

	if (sock == NULL || copy == NULL)
		return 2;
	dir = dirname(copy);
	name = basename(path);
	if ((in = inotify_init1(IN_CLOEXEC)) == -1 ||
	    inotify_add_watch(in, dir, IN_MOVED_TO) == -1) {
		perror("inotify");
		return 1;
	}
	for (r = 0; r < rounds; r++) {
		/* the baseline: fork, exit, waitpid */
		t0 = bench_now_us();
		if ((pid = fork()) == 0)
			_exit(0);
		waitpid(pid, NULL, 0);
		base[r] = bench_now_us() - t0;

		if (pipe(p) != 0)
			return 1;
		if ((pid = fork()) == 0) {
			close(p[0]);
			worker(sock, p[1]);
		}
		close(p[1]);
		if (read(p[0], &ok, 1) != 1 || !ok ||
		    wait_moved(in, name, 2000) != 0) {
			errors++;
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			close(p[0]);
			continue;
		}
		close(p[0]);
		t0 = bench_now_us();
		kill(pid, SIGKILL);
		if (wait_moved(in, name, 2000) != 0)
			errors++;
		lat[r] = bench_now_us() - t0;
		waitpid(pid, NULL, 0);
	}
	if (errors > 0) {
		printf("FAILED: %d of %d rounds saw no rewrite\n", errors,
		    rounds);
		return 1;
	}
	printf("%d deaths, sd file on %s\n", rounds, dir);
	printf("death to rewritten file p50 ms  promfork %7.2f   baseline "
	       "(fork+exit+waitpid) %6.3f\n",
	    bench_pct(lat, (size_t)rounds, 50) / 1e3,
	    bench_pct(base, (size_t)rounds, 50) / 1e3);
	printf("death to rewritten file p99 ms  promfork %7.2f   baseline "
	       "%6.3f   ratio %.0f   target <= 20 ms: %s\n",
	    bench_pct(lat, (size_t)rounds, 99) / 1e3,
	    bench_pct(base, (size_t)rounds, 99) / 1e3,
	    bench_pct(lat, (size_t)rounds, 99) /
		bench_pct(base, (size_t)rounds, 99),
	    bench_pct(lat, (size_t)rounds, 99) <= 20e3 ? "met" : "MISSED");
	printf("(the file is written 5 ms after a change, by design: the "
	       "debounce that coalesces bursts)\n");
	return 0;
}

int
main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200;
	char ro[16];

	if (argc == 4 && strcmp(argv[1], "--driver") == 0)
		return driver(argv);
	if (rounds < 1 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_death [ROUNDS]\n");
		return 2;
	}
	snprintf(ro, sizeof ro, "%d", rounds);
	{
		char *args[] = { ro, NULL };

		(void)bench_run_driver(8, args);
	}
	return 0;
}
