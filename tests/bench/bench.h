/*
 * Shared pieces of the benchmarks that run the real promfork: clocks and
 * percentiles, a scratch directory, a free run of ports, starting promfork
 * (PROMFORK_BIN, set by meson) with this very program as its COMMAND, and a
 * small blocking HTTP/1.1 client for its Unix socket and loopback TCP.
 */
#ifndef BENCH_H
#define BENCH_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

#define BENCH_RESP_MAX (256 * 1024)

double bench_now_us(void);
double bench_cpu_us(void);
/* Sorts v and returns its p-th percentile (0..100). */
double bench_pct(double *v, size_t n, double p);
double bench_mean(const double *v, size_t n);
char *bench_tmpdir(void);
void bench_rmtree(const char *dir);
int bench_port_range(int n, uint16_t *low);
const char *bench_promfork(void);
char *bench_self(void);
/* Starts argv in a process group of its own; stderr to /dev/null when
 * quiet.  bench_reap waits at most timeout_ms, then kills the group. */
pid_t bench_spawn(char *const argv[], int quiet);
int bench_reap(pid_t, int timeout_ms);
int bench_wait_path(const char *path, int timeout_ms);
int bench_unix_connect(const char *path);
int bench_tcp_connect(uint16_t port);
/* Sends req and reads one whole response into buf (Content-Length or the
 * close); returns the status, -1 on error; *body points into buf. */
int bench_http(int fd, const char *req, size_t len, char *buf, size_t cap,
    const char **body, size_t *body_len);
long bench_rss_kib(pid_t pid, const char *field);
int bench_write_all(int fd, const char *p, size_t len);
/* promfork running this program: SELF --driver SD_FILE ARGS... */
int bench_run_driver(int nports, char *const args[]);
void bench_worker_serve(char *(*make_body)(int worker, size_t *len));
double
bench_get(uint16_t port, const char *path, char *buf, size_t cap, size_t *len);

#endif
