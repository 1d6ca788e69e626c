/*
 * Registrations per second and their latency.  promfork runs this program
 * as its COMMAND (--driver), which forks CLIENTS client processes; each
 * keeps one connection to the socket and loops POST /v1/workers (201) and
 * DELETE /v1/workers/N (204), timing the POST.  The baseline is the same
 * clients doing the same two round trips of the same bytes against a
 * single-threaded epoll echo server on a Unix socket in the same run.
 * Rounds alternate baseline and promfork; the median round is reported.
 *
 *     bench_register [CLIENTS [CYCLES_PER_CLIENT [ROUNDS]]]
 */
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#define ROUNDS_MAX 9

static const char post_req[] =
    "POST /v1/workers HTTP/1.1\r\nHost: "
    "promfork\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    "\r\n{}";

struct shared {
	int errors;
	char first_error[256];
	double lat[]; /* clients * cycles, microseconds */
};

static void
fail(struct shared *sh, const char *what, const char *detail)
{
	if (__sync_fetch_and_add(&sh->errors, 1) == 0)
		snprintf(sh->first_error, sizeof sh->first_error, "%s: %.200s",
		    what, detail);
}

/* Reads exactly len bytes. */
static int
read_n(int fd, char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = read(fd, buf, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
client_promfork(const char *sock, struct shared *sh, double *lat, int cycles)
{
	char buf[4096], del[128];
	const char *body, *w;
	size_t blen;
	int fd, i, st, worker;
	double t0;

	if ((fd = bench_unix_connect(sock)) == -1) {
		fail(sh, "connect", strerror(errno));
		return;
	}
	for (i = 0; i < cycles; i++) {
		t0 = bench_now_us();
		st = bench_http(fd, post_req, sizeof post_req - 1, buf,
		    sizeof buf, &body, &blen);
		lat[i] = bench_now_us() - t0;
		if (st != 201 || (w = strstr(body, "\"worker\":")) == NULL) {
			fail(sh, "POST", st == -1 ? "no answer" : buf);
			break;
		}
		worker = atoi(w + 9);
		snprintf(del, sizeof del,
		    "DELETE /v1/workers/%d HTTP/1.1\r\n"
		    "Host: promfork\r\n\r\n",
		    worker);
		st = bench_http(fd, del, strlen(del), buf, sizeof buf, &body,
		    &blen);
		if (st != 204) {
			fail(sh, "DELETE", st == -1 ? "no answer" : buf);
			break;
		}
	}
	close(fd);
}

/* The same round trips, echoed: the request's bytes come back. */
static void
client_echo(const char *sock, struct shared *sh, double *lat, int cycles)
{
	static const char del[] = "DELETE /v1/workers/3 HTTP/1.1\r\nHost: "
				  "promfork\r\n\r\n";
	char buf[4096];
	int fd, i;
	double t0;

	if ((fd = bench_unix_connect(sock)) == -1) {
		fail(sh, "echo connect", strerror(errno));
		return;
	}
	for (i = 0; i < cycles; i++) {
		t0 = bench_now_us();
		if (write(fd, post_req, sizeof post_req - 1) !=
			(ssize_t)(sizeof post_req - 1) ||
		    read_n(fd, buf, sizeof post_req - 1) != 0) {
			fail(sh, "echo", "short");
			break;
		}
		lat[i] = bench_now_us() - t0;
		if (write(fd, del, sizeof del - 1) !=
			(ssize_t)(sizeof del - 1) ||
		    read_n(fd, buf, sizeof del - 1) != 0) {
			fail(sh, "echo", "short");
			break;
		}
	}
	close(fd);
}

/* A single-threaded epoll echo server, as lean as a server gets. */
static void
echo_serve(int lfd)
{
	struct epoll_event ev, evs[64];
	char buf[8192];
	int ep = epoll_create1(0), n, i;

	alarm(120);
	ev.events = EPOLLIN;
	ev.data.fd = lfd;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		n = epoll_wait(ep, evs, 64, -1);
		for (i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			ssize_t r;

			if (fd == lfd) {
				int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

				if (c == -1)
					continue;
				ev.events = EPOLLIN;
				ev.data.fd = c;
				epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				continue;
			}
			r = read(fd, buf, sizeof buf);
			if (r <= 0 || write(fd, buf, (size_t)r) != r)
				close(fd);
		}
	}
}

static int
echo_listen(const char *path)
{
	struct sockaddr_un sun;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path)
		exit(1);
	memcpy(sun.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (fd == -1 || bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0 ||
	    listen(fd, 128) != 0) {
		perror("echo socket");
		exit(1);
	}
	return fd;
}

/* One round: clients in parallel; returns cycles per second. */
static double
round_run(int echo, const char *sock, struct shared *sh, int clients,
    int cycles)
{
	pid_t kids[256];
	double t0, t1;
	int i;

	t0 = bench_now_us();
	for (i = 0; i < clients; i++) {
		if ((kids[i] = fork()) == 0) {
			double *lat = sh->lat + (size_t)i * (size_t)cycles;

			alarm(60);
			if (echo)
				client_echo(sock, sh, lat, cycles);
			else
				client_promfork(sock, sh, lat, cycles);
			_exit(0);
		}
	}
	for (i = 0; i < clients; i++)
		waitpid(kids[i], NULL, 0);
	t1 = bench_now_us();
	return (double)clients * cycles / ((t1 - t0) / 1e6);
}

struct result {
	double rate, p50, p99;
};

static int
result_cmp(const void *a, const void *b)
{
	double x = ((const struct result *)a)->rate;
	double y = ((const struct result *)b)->rate;

	return x < y ? -1 : x > y;
}

static int
driver(int argc, char **argv)
{
	const char *sock = getenv("PROMFORK_SOCKET");
	int clients = atoi(argv[3]), cycles = atoi(argv[4]);
	int rounds = atoi(argv[5]), r, lfd;
	size_t n = (size_t)clients * (size_t)cycles;
	struct result pf[ROUNDS_MAX], echo[ROUNDS_MAX], mp, me;
	struct shared *sh;
	char echo_path[256];
	pid_t server;

	if (sock == NULL)
		return 2;
	sh = mmap(NULL, sizeof *sh + n * sizeof(double), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	snprintf(echo_path, sizeof echo_path, "%s.echo", sock);
	lfd = echo_listen(echo_path);
	if ((server = fork()) == 0)
		echo_serve(lfd);
	close(lfd);

	for (r = 0; r < rounds; r++) {
		echo[r].rate = round_run(1, echo_path, sh, clients, cycles);
		echo[r].p50 = bench_pct(sh->lat, n, 50);
		echo[r].p99 = bench_pct(sh->lat, n, 99);
		pf[r].rate = round_run(0, sock, sh, clients, cycles);
		pf[r].p50 = bench_pct(sh->lat, n, 50);
		pf[r].p99 = bench_pct(sh->lat, n, 99);
	}
	kill(server, SIGKILL);
	waitpid(server, NULL, 0);
	unlink(echo_path);
	if (sh->errors > 0) {
		printf("FAILED: %d errors, the first: %s\n", sh->errors,
		    sh->first_error);
		return 1;
	}
	qsort(pf, (size_t)rounds, sizeof pf[0], result_cmp);
	qsort(echo, (size_t)rounds, sizeof echo[0], result_cmp);
	mp = pf[rounds / 2];
	me = echo[rounds / 2];
	printf("clients %d, %d register+release cycles each, %d rounds "
	       "(median round)\n",
	    clients, cycles, rounds);
	printf("registrations/s      promfork %8.0f   baseline (echo, same "
	       "round trips) %8.0f   ratio %.2f   target >= 20000: %s\n",
	    mp.rate, me.rate, mp.rate / me.rate,
	    mp.rate >= 20000 ? "met" : "MISSED");
	printf("registration p50 ms  promfork %8.3f   baseline %8.3f   "
	       "ratio %.1f\n",
	    mp.p50 / 1e3, me.p50 / 1e3, mp.p50 / me.p50);
	printf("registration p99 ms  promfork %8.3f   baseline %8.3f   "
	       "ratio %.1f\n",
	    mp.p99 / 1e3, me.p99 / 1e3, mp.p99 / me.p99);
	return 0;
}

int
main(int argc, char **argv)
{
	int clients = argc > 1 ? atoi(argv[1]) : 4;
	int cycles = argc > 2 ? atoi(argv[2]) : 5000;
	int rounds = argc > 3 ? atoi(argv[3]) : 3;
	char cl[16], cy[16], ro[16];

	if (argc == 6 && strcmp(argv[1], "--driver") == 0)
		return driver(argc, argv);
	if (clients < 1 || clients > 256 || cycles < 1 || cycles > 1000000 ||
	    rounds < 1 || rounds > ROUNDS_MAX) {
		fprintf(stderr,
		    "usage: bench_register [CLIENTS [CYCLES "
		    "[ROUNDS]]]\n");
		return 2;
	}
	snprintf(cl, sizeof cl, "%d", clients);
	snprintf(cy, sizeof cy, "%d", cycles);
	snprintf(ro, sizeof ro, "%d", rounds);
	{
		char *args[] = { cl, cy, ro, NULL };

		(void)bench_run_driver(clients + 8, args);
	}
	return 0;
}
