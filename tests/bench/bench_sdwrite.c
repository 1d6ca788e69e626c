/*
 * Writing the sd file for 1 024 workers: target_render and file_replace
 * over a registry of hand-made leases (as tests/unit/test_target.c makes
 * them), each with a label.  The baseline, interleaved round by round, is
 * the same bytes written with plain stdio: fopen, fwrite, fflush, fsync,
 * fclose, rename.  The directory is $TMPDIR (default /tmp).
 *
 *     bench_sdwrite [WORKERS [ROUNDS]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

#include "bench.h"

#define ROUNDS_MAX 5000

static int
stdio_replace(const char *path, const char *tmp, const char *data, size_t len)
{
	FILE *f = fopen(tmp, "w");

	if (f == NULL || fwrite(data, 1, len, f) != len || fflush(f) != 0 ||
	    fsync(fileno(f)) != 0) {
		if (f != NULL)
			fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return -1;
	return rename(tmp, path);
}

int
main(int argc, char **argv)
{
	int workers = argc > 1 ? atoi(argv[1]) : 1024;
	int rounds = argc > 2 ? atoi(argv[2]) : 300;
	static double render[ROUNDS_MAX], replace[ROUNDS_MAX],
	    total[ROUNDS_MAX], base[ROUNDS_MAX];
	struct target_config tc = { .host = "127.0.0.1" };
	struct registry reg;
	struct lease *leases;
	char *dir, path[512], tmp[512], *text, *cause = NULL, role[16];
	size_t len = 0;
	double t0, t1;
	int i, r;

	if (workers < 1 || workers > 60000 || rounds < 1 ||
	    rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_sdwrite [WORKERS [ROUNDS]]\n");
		return 2;
	}
	log_init(LOG_LEVEL_WARN, 0);
	memset(&reg, 0, sizeof reg);
	pool_init(&reg.pool, 1024, (uint16_t)(1024 + workers - 1), NULL, NULL);
	reg.slots = xcalloc(reg.pool.size, sizeof *reg.slots);
	leases = xcalloc((size_t)workers, sizeof *leases);
	for (i = 0; i < workers; i++) {
		leases[i].worker = i;
		leases[i].port = pool_port(&reg.pool, i);
		leases[i].pid = 1000 + i;
		snprintf(role, sizeof role, "web%d", i % 4);
		if (labels_set(&leases[i].labels, "role", role, &cause) != 0)
			fatalx("%s", cause);
		reg.slots[i] = &leases[i];
		reg.count++;
	}
	dir = bench_tmpdir();
	snprintf(path, sizeof path, "%s/app.json", dir);
	snprintf(tmp, sizeof tmp, "%s/.app.json.stdio", dir);

	for (r = 0; r < rounds; r++) {
		t0 = bench_now_us();
		text = target_render(&reg, &tc, &len);
		t1 = bench_now_us();
		if (file_replace(path, text, len, 0644, &cause) != 0)
			fatalx("%s", cause);
		render[r] = t1 - t0;
		replace[r] = bench_now_us() - t1;
		total[r] = bench_now_us() - t0;
		t0 = bench_now_us();
		if (stdio_replace(path, tmp, text, len) != 0)
			fatal("stdio write");
		base[r] = bench_now_us() - t0;
		free(text);
	}
	printf("%d workers, %zu bytes, %d rounds, in %s\n", workers, len,
	    rounds, dir);
	printf("render only           p50 ms %7.3f   p99 %7.3f\n",
	    bench_pct(render, (size_t)rounds, 50) / 1e3,
	    bench_pct(render, (size_t)rounds, 99) / 1e3);
	printf("file_replace only     p50 ms %7.3f   p99 %7.3f  (2 fsyncs: "
	       "file and directory)\n",
	    bench_pct(replace, (size_t)rounds, 50) / 1e3,
	    bench_pct(replace, (size_t)rounds, 99) / 1e3);
	printf(
	    "render+replace        p50 ms %7.3f   p99 %7.3f   baseline "
	    "(stdio write+fsync+rename) p50 %7.3f p99 %7.3f   ratio p50 %.2f  "
	    "target <= 2 ms (p50): %s\n",
	    bench_pct(total, (size_t)rounds, 50) / 1e3,
	    bench_pct(total, (size_t)rounds, 99) / 1e3,
	    bench_pct(base, (size_t)rounds, 50) / 1e3,
	    bench_pct(base, (size_t)rounds, 99) / 1e3,
	    bench_pct(total, (size_t)rounds, 50) /
		bench_pct(base, (size_t)rounds, 50),
	    bench_pct(total, (size_t)rounds, 50) <= 2e3 ? "met" : "MISSED");
	for (i = 0; i < workers; i++)
		labels_finish(&leases[i].labels);
	free(leases);
	free(reg.slots);
	pool_finish(&reg.pool);
	bench_rmtree(dir);
	free(dir);
	return 0;
}
