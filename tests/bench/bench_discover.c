/*
 * The cost of a discovery pass with many processes in the tree: forks
 * PROCS sleepers (default 300, or argv[1]) of which LISTENERS listen on a
 * port of the range, then times passes that map new listeners through
 * /proc (a fresh discover object each time) and steady passes that only
 * ask the kernel.  The listeners are the newest processes (a replaced
 * worker, the usual case), or with argv[2] "oldest" the oldest ones, which
 * makes the walk read every process of the tree.
 */
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

#define LISTENERS 4
#define ROUNDS 20
#define STEADY 1000

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* A listener on loopback port (0: any); its port is returned. */
static int
bench_listen(uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd, on = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0) {
		close(fd);
		return -1;
	}
	*bound = ntohs(sin.sin_port);
	return fd;
}

int
main(int argc, char **argv)
{
	int nprocs = argc > 1 ? atoi(argv[1]) : 300;
	int oldest = argc > 2 && strcmp(argv[2], "oldest") == 0;
	struct event_base *base;
	struct registry reg;
	struct discover_config cfg;
	struct discover *d;
	pid_t *kids;
	uint16_t low = 0, port;
	double t, walk_sum = 0, pass_sum = 0, walk_max = 0;
	char *cause = NULL;
	int i, ready[2], found;
	char c;

	if (nprocs < LISTENERS || nprocs > 100000) {
		fprintf(stderr, "usage: bench_discover [PROCS >= %d]\n",
		    LISTENERS);
		return 2;
	}
	log_init(LOG_LEVEL_WARN, 0);
	/* a run of LISTENERS free ports: the first is any free one */
	for (i = 0; i < 50 && low == 0; i++) {
		uint16_t p;
		int fds[LISTENERS], k, ok = 1;
		if ((fds[0] = bench_listen(0, &p)) == -1 || p > 65000)
			continue;
		for (k = 1; k < LISTENERS; k++) {
			uint16_t q;
			fds[k] = bench_listen((uint16_t)(p + k), &q);
			if (fds[k] == -1)
				ok = 0;
		}
		for (k = 0; k < LISTENERS; k++) {
			if (fds[k] != -1)
				close(fds[k]);
		}
		if (ok)
			low = p;
	}
	if (low == 0) {
		fprintf(stderr, "bench_discover: no free ports\n");
		return 1;
	}

	prctl(PR_SET_CHILD_SUBREAPER, 1);
	if (pipe(ready) != 0)
		return 1;
	kids = xcalloc((size_t)nprocs, sizeof *kids);
	for (i = 0; i < nprocs; i++) {
		if ((kids[i] = fork()) == -1) {
			perror("fork");
			nprocs = i;
			break;
		}
		if (kids[i] == 0) {
			int k = oldest ? i : nprocs - 1 - i;
			if (k < LISTENERS &&
			    bench_listen((uint16_t)(low + k), &port) == -1)
				_exit(1);
			c = 'r';
			if (write(ready[1], &c, 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
	}
	for (i = 0; i < nprocs; i++) {
		if (read(ready[0], &c, 1) != 1)
			return 1;
	}

	base = event_base_new();
	registry_init(&reg, base, low, (uint16_t)(low + LISTENERS - 1), NULL,
	    NULL);
	memset(&cfg, 0, sizeof cfg);
	cfg.root = getpid();
	cfg.low = low;
	cfg.high = (uint16_t)(low + LISTENERS - 1);
	cfg.interval_ms = 60000;

	/* passes that find LISTENERS new listeners and walk /proc */
	for (i = 0; i < ROUNDS; i++) {
		if ((d = discover_create(base, &reg, &cfg, &cause)) == NULL) {
			fprintf(stderr, "bench_discover: %s\n", cause);
			return 1;
		}
		t = now_us();
		discover_scan(d);
		t = now_us() - t;
		found = (int)reg.count;
		walk_sum += t;
		if (t > walk_max)
			walk_max = t;
		if (found != LISTENERS || discover_stats(d)->walks != 1) {
			fprintf(stderr, "bench_discover: found %d of %d\n",
			    found, LISTENERS);
			return 1;
		}
		if (i == 0)
			printf("listeners in the %s processes: the walk read "
			       "the fds of %zu\n",
			    oldest ? "oldest" : "newest",
			    discover_stats(d)->last_walk_procs);
		registry_clear(&reg, LEASE_END_SHUTDOWN);
		discover_free(d);
	}
	/* steady passes: the same listeners, nothing to look up */
	d = discover_create(base, &reg, &cfg, &cause);
	discover_scan(d);
	for (i = 0; i < STEADY; i++) {
		t = now_us();
		discover_scan(d);
		pass_sum += now_us() - t;
	}
	if (discover_stats(d)->walks != 1 || reg.count != LISTENERS) {
		fprintf(stderr, "bench_discover: steady passes walked\n");
		return 1;
	}
	printf("%d processes in the tree, %d listeners\n", nprocs, LISTENERS);
	printf("pass with new listeners (netlink + /proc walk): mean %.0f us, "
	       "max %.0f us over %d\n",
	    walk_sum / ROUNDS, walk_max, ROUNDS);
	printf("steady pass (netlink only): mean %.1f us over %d\n",
	    pass_sum / STEADY, STEADY);

	discover_free(d);
	registry_finish(&reg);
	event_base_free(base);
	for (i = 0; i < nprocs; i++)
		kill(kids[i], SIGKILL);
	for (i = 0; i < nprocs; i++)
		waitpid(kids[i], NULL, 0);
	free(kids);
	return 0;
}
