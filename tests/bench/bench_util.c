/*
 * Helpers shared by the benchmarks that run the real promfork; see bench.h.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

double
bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* CPU time of this thread, in µs: the machines benchmarks run on are shared. */
double
bench_cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int
bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
bench_pct(double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, bench_cmp);
	i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

double
bench_mean(const double *v, size_t n)
{
	double s = 0;
	size_t i;

	for (i = 0; i < n; i++)
		s += v[i];
	return n > 0 ? s / (double)n : 0;
}

char *
bench_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *d;

	if (base == NULL || *base == '\0')
		base = "/tmp";
	d = malloc(strlen(base) + 32);
	if (d == NULL)
		abort();
	sprintf(d, "%s/promfork-bench.XXXXXX", base);
	if (mkdtemp(d) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return d;
}

/* Removes dir, its files and its subdirectories' files (two levels). */
void
bench_rmtree(const char *dir)
{
	char path[PATH_MAX];
	struct dirent *e;
	struct stat sb;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
			bench_rmtree(path);
		else
			unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

static int
bench_bindable(uint16_t port)
{
	struct sockaddr_in sin;
	int fd, on = 1, ok;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	ok = bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
	close(fd);
	return ok;
}

/* A run of n ports free now, below the usual ephemeral range. */
int
bench_port_range(int n, uint16_t *low)
{
	int tries, p;

	srandom((unsigned int)(getpid() ^ (pid_t)bench_now_us()));
	for (tries = 0; tries < 200; tries++) {
		int l = 10000 + (int)(random() % (32000 - 10000 - n));

		for (p = l; p < l + n && bench_bindable((uint16_t)p); p++)
			;
		if (p == l + n) {
			*low = (uint16_t)l;
			return 0;
		}
	}
	return -1;
}

const char *
bench_promfork(void)
{
	const char *bin = getenv("PROMFORK_BIN");

	if (bin == NULL || *bin == '\0') {
		fprintf(stderr,
		    "PROMFORK_BIN is not set: run me with "
		    "`meson test --benchmark`\n");
		exit(2);
	}
	return bin;
}

char *
bench_self(void)
{
	char buf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);

	if (n <= 0) {
		perror("readlink /proc/self/exe");
		exit(1);
	}
	buf[n] = '\0';
	return strdup(buf);
}

pid_t
bench_spawn(char *const argv[], int quiet)
{
	pid_t pid = fork();
	int fd;

	if (pid == -1) {
		perror("fork");
		exit(1);
	}
	if (pid == 0) {
		setpgid(0, 0);
		if (quiet && (fd = open("/dev/null", O_WRONLY)) != -1) {
			dup2(fd, 2);
			close(fd);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	setpgid(pid, pid);
	return pid;
}

int
bench_reap(pid_t pid, int timeout_ms)
{
	double end = bench_now_us() + timeout_ms * 1e3;
	int status;
	pid_t r;

	while (
	    (r = waitpid(pid, &status, WNOHANG)) == 0 && bench_now_us() < end)
		usleep(2000);
	killpg(pid, SIGKILL); /* whatever is left of its group */
	if (r == 0) {
		fprintf(stderr, "pid %d did not end in %d ms: killed\n",
		    (int)pid, timeout_ms);
		waitpid(pid, &status, 0);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int
bench_wait_path(const char *path, int timeout_ms)
{
	double end = bench_now_us() + timeout_ms * 1e3;

	while (access(path, F_OK) != 0) {
		if (bench_now_us() > end)
			return -1;
		usleep(1000);
	}
	return 0;
}

int
bench_unix_connect(const char *path)
{
	struct sockaddr_un sun;
	int fd, tries;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
	/* A full backlog answers EAGAIN: try again, a bounded number of times */
	for (tries = 0; tries < 5000; tries++) {
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0)
			return fd;
		close(fd);
		if (errno != EAGAIN)
			return -1;
		usleep(1000);
	}
	return -1;
}

int
bench_tcp_connect(uint16_t port)
{
	struct sockaddr_in sin;
	int fd, on = 1;

	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int
bench_write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
bench_http(int fd, const char *req, size_t len, char *buf, size_t cap,
    const char **body, size_t *body_len)
{
	size_t have = 0, hlen = 0, want = (size_t)-1;
	char *end = NULL, *cl;
	int status;

	if (bench_write_all(fd, req, len) != 0)
		return -1;
	for (;;) {
		ssize_t n;

		if (have == cap - 1)
			return -1;
		n = read(fd, buf + have, cap - 1 - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0) {
			if (end == NULL || want != (size_t)-1)
				return -1;
			break; /* the close ends a body without a length */
		}
		have += (size_t)n;
		buf[have] = '\0';
		if (end == NULL && (end = strstr(buf, "\r\n\r\n")) != NULL) {
			hlen = (size_t)(end - buf) + 4;
			cl = strcasestr(buf, "\r\nContent-Length:");
			if (cl != NULL && cl < end)
				want = hlen + strtoul(cl + 17, NULL, 10);
		}
		if (end != NULL && want != (size_t)-1 && have >= want)
			break;
	}
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return -1;
	*body = buf + hlen;
	*body_len = have - hlen;
	return status;
}

/* A field of /proc/PID/status in KiB (VmRSS, VmHWM, RssAnon); -1 if none. */
long
bench_rss_kib(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

/*
 * A worker: registers with $PROMFORK_SOCKET (POST {}), then answers every
 * request on its port with body, from a plain blocking loop; make_body
 * gets the worker number.  Never returns; exits 1 on failure.
 */
void
bench_worker_serve(char *(*make_body)(int worker, size_t *len))
{
	static const char post_req[] =
	    "POST /v1/workers HTTP/1.1\r\nHost: promfork\r\n"
	    "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
	const char *sock = getenv("PROMFORK_SOCKET"), *body, *p, *w;
	char buf[4096], head[256], *text;
	struct sockaddr_in sin;
	size_t blen, tlen;
	int fd, lfd, on = 1, hlen;

	alarm(600);
	if (sock == NULL || (fd = bench_unix_connect(sock)) == -1 ||
	    bench_http(fd, post_req, sizeof post_req - 1, buf, sizeof buf,
		&body, &blen) != 201 ||
	    (p = strstr(body, "\"port\":")) == NULL ||
	    (w = strstr(body, "\"worker\":")) == NULL)
		_exit(1);
	close(fd);
	text = make_body(atoi(w + 9), &tlen);
	hlen = snprintf(head, sizeof head,
	    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; "
	    "version=0.0.4\r\nContent-Length: %zu\r\n\r\n",
	    tlen);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)atoi(p + 7));
	if (bind(lfd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(lfd, 64) != 0)
		_exit(1);
	for (;;) {
		int c = accept(lfd, NULL, NULL), keep = 1;
		size_t have = 0;

		if (c == -1)
			continue;
		while (keep) {
			ssize_t r = read(c, buf + have, sizeof buf - 1 - have);

			if (r <= 0)
				break;
			have += (size_t)r;
			buf[have] = '\0';
			if (strstr(buf, "\r\n\r\n") == NULL) {
				if (have == sizeof buf - 1)
					break;
				continue;
			}
			/* HTTP/1.0 (promfork's scrapes) or a close: one answer */
			keep = strcasestr(buf, "connection: close") == NULL &&
			    strstr(buf, "HTTP/1.0") == NULL;
			if (bench_write_all(c, head, (size_t)hlen) != 0 ||
			    bench_write_all(c, text, tlen) != 0)
				break;
			have = 0;
		}
		close(c);
	}
}

/* GET path on a new connection; its time in ms, or -1 unless 200.  The
 * body is left at the start of buf, NUL-terminated, its length in *len. */
double
bench_get(uint16_t port, const char *path, char *buf, size_t cap, size_t *len)
{
	char req[256];
	const char *body;
	double t0 = bench_now_us();
	int fd, st;

	snprintf(req, sizeof req,
	    "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n",
	    path);
	if ((fd = bench_tcp_connect(port)) == -1)
		return -1;
	st = bench_http(fd, req, strlen(req), buf, cap, &body, len);
	close(fd);
	if (st != 200)
		return -1;
	memmove(buf, body, *len);
	buf[*len] = '\0'; /* the head was longer than this byte */
	return (bench_now_us() - t0) / 1e3;
}

/*
 * Runs promfork on nports free ports, with a socket and an sd file in a
 * fresh directory, and this program as its COMMAND: `SELF --driver SD_FILE
 * ARGS...`; waits for it (100 s at most) and cleans up.  0 when both
 * succeeded.
 */
int
bench_run_driver(int nports, char *const args[])
{
	char range[32], sock[512], sd[512], *dir, *self, *av[32];
	size_t n = 0, i;
	uint16_t low;
	int rc;

	if (bench_port_range(nports, &low) != 0) {
		fprintf(stderr, "no free run of %d ports\n", nports);
		return 1;
	}
	dir = bench_tmpdir();
	self = bench_self();
	snprintf(range, sizeof range, "%u-%u", low, low + nports - 1);
	snprintf(sock, sizeof sock, "%s/s", dir);
	snprintf(sd, sizeof sd, "%s/app.json", dir);
	av[n++] = (char *)bench_promfork();
	av[n++] = "--port-range";
	av[n++] = range;
	av[n++] = "--socket";
	av[n++] = sock;
	av[n++] = "--sd-file";
	av[n++] = sd;
	av[n++] = "--target-host";
	av[n++] = "127.0.0.1";
	av[n++] = "--";
	av[n++] = self;
	av[n++] = "--driver";
	av[n++] = sd;
	for (i = 0; args[i] != NULL && n < 31; i++)
		av[n++] = args[i];
	av[n] = NULL;
	rc = bench_reap(bench_spawn(av, 1), 100000);
	bench_rmtree(dir);
	free(dir);
	free(self);
	if (rc != 0)
		fprintf(stderr, "promfork or the driver failed (%d)\n", rc);
	return rc;
}
