/*
 * The fan-out scrape (/workers/metrics) against prometheus_client's
 * multiprocess mode, on the same metrics: every worker serves 1 000
 * counter series (10 families of 100 paths).
 *
 *   merge     the exposition merge alone, in this process: 16 and 64
 *             workers' answers into one;
 *   scrape    GET /workers/metrics on a real promfork whose COMMAND is this
 *             program (--master N: it forks N workers that register and
 *             serve their answer, and replaces each that dies), with 16
 *             workers, then again after 256 of them were killed and
 *             replaced;
 *   baseline  multiproc_baseline.py: a MultiProcessCollector over 16
 *             workers' files, then over the files 256 restarts leave;
 *             with BENCH_BASELINE=mmap, mmap_baseline.rb: Ruby's
 *             prometheus-client-mmap summing every worker's files
 *             (marshal_multiprocess), the same two cases.
 *
 *   carry     the same merge where every slot has a finished lifetime's
 *             totals carried (issue 14: at most 1.2x the merge alone).
 *
 *     bench_fanout [ROUNDS]
 *     bench_fanout --merge ROUNDS    (the in-process merges alone)
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <netinet/in.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "promfork.h"
#include "bench.h"

#define FAMILIES 10
#define PATHS 100
#define WORKERS_MAX 64
#define RESTARTS 256
#define ROUNDS_MAX 1000
#define RESP_MAX (64 * 1024 * 1024)

/* What worker w serves: the series multiproc_baseline.py writes. */
static char *
worker_text(int w, size_t *len)
{
	struct buf b = { NULL, 0, 0 };
	char line[256];
	int f, p, n;

	for (f = 0; f < FAMILIES; f++) {
		n = snprintf(line, sizeof line,
		    "# HELP bench_family_%d_total Family %d.\n"
		    "# TYPE bench_family_%d_total counter\n",
		    f, f, f);
		buf_add(&b, line, (size_t)n);
		for (p = 0; p < PATHS; p++) {
			n = snprintf(line, sizeof line,
			    "bench_family_%d_total{path=\"/api/v1/item/%d\"} "
			    "%d.0\n",
			    f, p, w + f + p + 1);
			buf_add(&b, line, (size_t)n);
		}
	}
	*len = b.len;
	return b.data;
}

/*
 * Median ms of merging n workers' answers.  Warm, as promfork does it: one
 * merge reset between rounds, its buffers kept; cold: all from scratch.
 */
static double
bench_merge(int n, int rounds, int warm, size_t *out_len)
{
	static double t[ROUNDS_MAX];
	char *text[WORKERS_MAX], name[16];
	size_t len[WORKERS_MAX];
	struct expo_merge *m = expo_merge_create();
	struct buf out = { NULL, 0, 0 };
	int i, r;

	for (i = 0; i < n; i++)
		text[i] = worker_text(i, &len[i]);
	for (r = 0; r < rounds; r++) {
		double t0 = bench_now_us();

		if (!warm) {
			expo_merge_free(m);
			buf_finish(&out);
			m = expo_merge_create();
		}
		expo_merge_reset(m);
		out.len = 0;
		for (i = 0; i < n; i++) {
			snprintf(name, sizeof name, "%d", i);
			if (expo_merge_add(m, name, text[i], len[i], NULL) != 0)
				return -1;
		}
		expo_merge_render(m, &out);
		t[r] = bench_now_us() - t0;
		*out_len = out.len;
	}
	expo_merge_free(m);
	buf_finish(&out);
	for (i = 0; i < n; i++)
		free(text[i]);
	return bench_pct(t, (size_t)rounds, 50) / 1e3;
}

/*
 * The 16-worker warm merge without and with carried totals, round for
 * round in turn, so that both see the same load of a shared machine:
 * their medians in *plain and *carried, and the median of the rounds'
 * ratios, which a load that comes and goes moves least.
 */
static double
bench_merge_pair(int n, int rounds, double *plain, double *carried)
{
	static double t[2][ROUNDS_MAX], ratio[ROUNDS_MAX];
	char *text[WORKERS_MAX], name[16];
	size_t len[WORKERS_MAX];
	struct expo_merge *m[2] = { expo_merge_create(), expo_merge_create() };
	struct buf out[2] = { { NULL, 0, 0 }, { NULL, 0, 0 } },
		   served = { NULL, 0, 0 };
	struct carry_limits limits = { .max_series = 1000000 };
	struct carry *carries[WORKERS_MAX];
	double t0;
	int i, k, r, rc;

	for (i = 0; i < n; i++) {
		text[i] = worker_text(i, &len[i]);
		carries[i] = carry_create(&limits);
		carry_add_lifetime(carries[i], text[i], len[i], NULL);
	}
	for (r = 0; r < rounds; r++) {
		for (k = 0; k < 2; k++) {
			t0 = bench_now_us();
			expo_merge_reset(m[k]);
			out[k].len = 0;
			for (i = 0; i < n; i++) {
				snprintf(name, sizeof name, "%d", i);
				rc = k == 1
				    ? carry_merge_add(carries[i],
					  (uint64_t)r + 1, m[k], name, text[i],
					  len[i], &served, NULL)
				    : expo_merge_add(m[k], name, text[i],
					  len[i], NULL);
				if (rc != 0)
					return -1;
			}
			expo_merge_render(m[k], &out[k]);
			t[k][r] = bench_now_us() - t0;
		}
		ratio[r] = t[1][r] / t[0][r];
	}
	for (k = 0; k < 2; k++) {
		expo_merge_free(m[k]);
		buf_finish(&out[k]);
	}
	buf_finish(&served);
	for (i = 0; i < n; i++) {
		free(text[i]);
		carry_free(carries[i]);
	}
	*plain = bench_pct(t[0], (size_t)rounds, 50) / 1e3;
	*carried = bench_pct(t[1], (size_t)rounds, 50) / 1e3;
	return bench_pct(ratio, (size_t)rounds, 50);
}

/* The pre-fork master: keeps n workers, replacing each that dies. */
static int
master(int n)
{
	pid_t pid;
	int i;

	alarm(600);
	for (i = 0; i < n; i++)
		if (fork() == 0)
			bench_worker_serve(worker_text);
	for (;;) {
		pid = wait(NULL);
		if (pid == -1 && errno == ECHILD)
			return 1;
		if (pid > 0 && fork() == 0)
			bench_worker_serve(worker_text);
	}
}

static double
get(uint16_t port, const char *path, char *buf, size_t *len)
{
	return bench_get(port, path, buf, RESP_MAX - 1, len);
}

/* The pids of the leases now, from the registration API. */
static int
lease_pids(const char *sock, pid_t *pids, int max)
{
	static const char req[] = "GET /v1/workers HTTP/1.1\r\nHost: "
				  "promfork\r\nConnection: close\r\n\r\n";
	static char buf[256 * 1024];
	const char *body, *p;
	size_t blen;
	int fd, n = 0;

	if ((fd = bench_unix_connect(sock)) == -1)
		return -1;
	if (bench_http(fd, req, sizeof req - 1, buf, sizeof buf, &body,
		&blen) != 200) {
		close(fd);
		return -1;
	}
	close(fd);
	for (p = body; n < max && (p = strstr(p, "\"pid\":")) != NULL; p += 6)
		pids[n++] = atoi(p + 6);
	return n;
}

/* Median ms of rounds fan-out scrapes that carry every worker's series. */
static double
bench_scrape(uint16_t port, int rounds, int n, char *buf)
{
	static double t[ROUNDS_MAX];
	size_t len;
	int r;

	for (r = 0; r < rounds; r++) {
		t[r] = get(port, "/workers/metrics", buf, &len);
		if (t[r] < 0 ||
		    strstr(buf, "promfork_worker_up{worker=\"0\"} 1") == NULL)
			return -1;
	}
	(void)n;
	return bench_pct(t, (size_t)rounds, 50);
}

/*
 * Median ms of rounds fan-out scrapes asking for gzip, as Prometheus does;
 * *wire: the bytes of the last answer's body; *plain: those bytes
 * inflated (0 when they were not gzip).
 */
static double
bench_scrape_gzip(uint16_t port, int rounds, char *buf, size_t *wire,
    size_t *plain)
{
	static const char req[] = "GET /workers/metrics HTTP/1.1\r\n"
				  "Host: 127.0.0.1\r\nAccept-Encoding: gzip\r\n"
				  "Connection: close\r\n\r\n";
	static double t[ROUNDS_MAX];
	const char *body = NULL;
	double t0;
	z_stream z;
	char *out;
	int r, fd;

	*wire = *plain = 0;
	for (r = 0; r < rounds; r++) {
		t0 = bench_now_us();
		if ((fd = bench_tcp_connect(port)) == -1)
			return -1;
		if (bench_http(fd, req, sizeof req - 1, buf, RESP_MAX, &body,
			wire) != 200) {
			close(fd);
			return -1;
		}
		close(fd);
		t[r] = (bench_now_us() - t0) / 1e3;
		if (strstr(buf, "\r\nContent-Encoding: gzip\r\n") == NULL)
			return -1;
	}
	out = malloc(RESP_MAX);
	memset(&z, 0, sizeof z);
	if (out != NULL && inflateInit2(&z, 16 + 15) == Z_OK) {
		z.next_in = (Bytef *)(uintptr_t)body;
		z.avail_in = (uInt)*wire;
		z.next_out = (Bytef *)out;
		z.avail_out = RESP_MAX - 1;
		if (inflate(&z, Z_FINISH) == Z_STREAM_END) {
			out[z.total_out] = '\0';
			if (strstr(out,
				"promfork_worker_up{worker=\"15\"} 1") != NULL)
				*plain = z.total_out;
		}
		inflateEnd(&z);
	}
	free(out);
	return bench_pct(t, (size_t)rounds, 50);
}

/* Waits until n workers are registered and answer; 0 when they do. */
static int
wait_workers(uint16_t port, const char *sock, int n, char *buf)
{
	pid_t pids[WORKERS_MAX];
	size_t len;
	char up[64];
	int i, tries;

	for (tries = 0; tries < 2000; tries++) {
		if (lease_pids(sock, pids, WORKERS_MAX) == n &&
		    get(port, "/workers/metrics", buf, &len) >= 0) {
			for (i = 0; i < n; i++) {
				snprintf(up, sizeof up,
				    "promfork_worker_up{worker=\"%d\"} 1", i);
				if (strstr(buf, up) == NULL)
					break;
			}
			if (i == n)
				return 0;
		}
		usleep(5000);
	}
	return -1;
}

/* The baseline's name: "mmap" (Ruby) or NULL (Python). */
static const char *
baseline_kind(void)
{
	const char *kind = getenv("BENCH_BASELINE");

	return kind != NULL && strcmp(kind, "mmap") == 0 ? kind : NULL;
}

/* Runs the baseline script; its medians for 16 and 16 + RESTARTS files. */
static int
baseline(double *live, double *restarted)
{
	const char *src = getenv("BENCH_SOURCE");
	char cmd[1024], line[256];
	int files, got = 0;
	double ms;
	FILE *p;

	snprintf(cmd, sizeof cmd,
	    baseline_kind() != NULL
		? "/usr/bin/ruby %s/mmap_baseline.rb 16 %d"
		: "/usr/bin/python3 %s/multiproc_baseline.py 16 %d",
	    src != NULL ? src : ".", RESTARTS);
	if ((p = popen(cmd, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof line, p) != NULL)
		if (sscanf(line, "multiproc %d %lf", &files, &ms) == 2)
			*(got++ == 0 ? live : restarted) = ms;
	return pclose(p) == 0 && got == 2 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 200, i, failed = 0;
	char range[32], sock[512], listen[64], sixteen[] = "16", *dir, *self;
	double m16, k16, m64, c16, s16, s256, b16, b256, ratio, z16 = -1;
	size_t out16, out64, plain16 = 0, wire16 = 0, inflated16 = 0;
	pid_t pid, pids[WORKERS_MAX];
	uint16_t low, lport;
	char *buf;

	if (argc == 3 && strcmp(argv[1], "--master") == 0)
		return master(atoi(argv[2]));
	if (argc == 3 && strcmp(argv[1], "--merge") == 0) {
		/* The in-process merges alone: quick to rerun. */
		rounds = atoi(argv[2]);
		if (rounds < 5 || rounds > ROUNDS_MAX)
			return 2;
		ratio = bench_merge_pair(16, rounds, &m16, &k16);
		printf("merge, 16 workers, median ms: %.3f   with carried "
		       "totals %.3f   median ratio %.2f   target <= 1.2: "
		       "%s\n",
		    m16, k16, ratio, ratio <= 1.2 ? "met" : "MISSED");
		return 0;
	}
	if (rounds < 5 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_fanout [ROUNDS]\n");
		return 2;
	}
	ratio = bench_merge_pair(16, rounds, &m16, &k16);
	m16 = bench_merge(16, rounds, 1, &out16);
	c16 = bench_merge(16, rounds, 0, &out16);
	m64 = bench_merge(64, rounds / 4 < 5 ? 5 : rounds / 4, 1, &out64);

	buf = malloc(RESP_MAX);
	dir = bench_tmpdir();
	self = bench_self();
	if (buf == NULL || bench_port_range(20, &low) != 0) {
		fprintf(stderr, "no free ports\n");
		return 1;
	}
	lport = (uint16_t)(low + 19);
	snprintf(range, sizeof range, "%u-%u", low, low + 18);
	snprintf(listen, sizeof listen, "127.0.0.1:%u", lport);
	snprintf(sock, sizeof sock, "%s/s", dir);
	{
		char *av[] = { (char *)bench_promfork(), "--port-range", range,
			"--socket", sock, "--listen", listen, "--target-host",
			"127.0.0.1", "--", self, "--master", sixteen, NULL };

		pid = bench_spawn(av, 1);
	}
	s16 = s256 = -1;
	if (wait_workers(lport, sock, 16, buf) == 0) {
		s16 = bench_scrape(lport, rounds, 16, buf);
		if (s16 >= 0)
			plain16 = strlen(buf);
		/* The same scrapes with gzip, in the same run. */
		z16 =
		    bench_scrape_gzip(lport, rounds, buf, &wire16, &inflated16);
	}
	for (i = 0; i < RESTARTS && s16 >= 0; i++) {
		/* Kill one worker and wait for its replacement to answer. */
		if (lease_pids(sock, pids, WORKERS_MAX) != 16 ||
		    kill(pids[i % 16], SIGKILL) != 0) {
			failed = 1;
			break;
		}
		usleep(2000);
		if (wait_workers(lport, sock, 16, buf) != 0) {
			failed = 1;
			break;
		}
	}
	if (!failed && s16 >= 0)
		s256 = bench_scrape(lport, rounds, 16, buf);
	kill(pid, SIGTERM);
	bench_reap(pid, 10000);
	bench_rmtree(dir);

	printf("every worker: %d series (%d families of %d)\n",
	    FAMILIES * PATHS, FAMILIES, PATHS);
	printf("merge alone, median ms: 16 workers %.3f (%zu bytes out; "
	       "cold buffers %.3f)   64 workers %.3f (%zu bytes)   "
	       "target 16 < 10 ms: %s\n",
	    m16, out16, c16, m64, out64, m16 < 10 ? "met" : "MISSED");
	printf("merge with carried totals, 16 workers, median ms: %.3f   "
	       "median ratio to without, round for round, %.2f   target <= "
	       "1.2: %s\n",
	    k16, ratio, ratio <= 1.2 ? "met" : "MISSED");
	if (s16 < 0 || s256 < 0) {
		printf("FAILED: the fan-out scrape did not answer\n");
		return 1;
	}
	if (z16 < 0 || inflated16 == 0) {
		printf("FAILED: the gzipped fan-out did not answer in gzip\n");
		return 1;
	}
	printf("GET /workers/metrics, 16 workers x %d series: bytes on the "
	       "wire %zu plain, %zu gzip (%.1fx fewer; %zu inflated)   "
	       "median ms %.3f plain, %.3f gzip (ratio %.2f)\n",
	    FAMILIES * PATHS, plain16, wire16, (double)plain16 / (double)wire16,
	    inflated16, s16, z16, z16 / s16);
	printf("GET /workers/metrics, median ms: 16 workers %.3f   after %d "
	       "restarts %.3f   ratio %.2f (flat: %s)\n",
	    s16, RESTARTS, s256, s256 / s16, s256 / s16 < 1.5 ? "yes" : "NO");
	if (baseline(&b16, &b256) != 0) {
		printf("FAILED: the baseline script did not run\n");
		return 1;
	}
	printf("baseline %s, median ms: 16 workers' files %.3f   "
	       "after %d restarts (%d workers' files) %.3f   ratio %.2f\n",
	    baseline_kind() != NULL
		? "prometheus-client-mmap marshal_multiprocess (Ruby)"
		: "MultiProcessCollector",
	    b16, RESTARTS, 16 + RESTARTS, b256, b256 / b16);
	printf("speed-up over the baseline, 16 workers: merge %.1fx (cold "
	       "%.1fx), whole scrape over HTTP %.1fx   target >= 10x: %s\n",
	    b16 / m16, b16 / c16, b16 / s16,
	    b16 / m16 >= 10 ? "met" : "MISSED");
	printf("speed-up after %d restarts: scrape %.1fx\n", RESTARTS,
	    b256 / s256);
	free(buf);
	free(dir);
	free(self);
	return 0;
}
