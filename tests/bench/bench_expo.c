/*
 * The fan-out merge against hostile answers (issue 15: hash flooding).
 * Each crafted answer is merged alone, as the fan-out does it (one merge
 * kept warm, reset between rounds), beside an ordinary answer of the same
 * size (counter families of 100 series with a path label, as
 * bench_fanout's workers serve); the crafted one must take at most twice
 * as long:
 *
 *   names       distinct untyped names, one short sample each, past the
 *               per-worker names cap (EXPO_NAMES_MAX)
 *   histograms  distinct histograms: each claims four names and looks up
 *               its suffixes
 *   metadata    HELP and TYPE lines of distinct names, without samples
 *   series      one short name, far past the series cap (EXPO_SERIES_MAX)
 *   labels      64 labels a sample, the most there may be
 *   worker      64 labels named worker, exported_worker, ... (each sample
 *               renames its worker label with a prefix per level)
 *
 * Names that collide cannot be crafted: each merge hashes with SipHash
 * under its own random key (test_table shows the key changes).  Times are
 * CPU times of this thread, as the machine may be shared.
 *
 *     bench_expo [ROUNDS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "promfork.h"
#include "bench.h"

#define ROUNDS_MAX 1000

typedef void (*gen_fn)(struct buf *, size_t size);

static void
gen_ordinary(struct buf *b, size_t size)
{
	int f, p;

	for (f = 0; b->len < size; f++) {
		buf_printf(b,
		    "# HELP bench_family_%d_total Family %d.\n"
		    "# TYPE bench_family_%d_total counter\n",
		    f, f, f);
		for (p = 0; p < 100 && b->len < size; p++)
			buf_printf(b,
			    "bench_family_%d_total{path=\"/api/v1/item/%d\"} "
			    "%d.0\n",
			    f, p, f + p + 1);
	}
}

static void
gen_names(struct buf *b, size_t size)
{
	int i;

	for (i = 0; b->len < size; i++)
		buf_printf(b, "n%07d 1\n", i);
}

static void
gen_histograms(struct buf *b, size_t size)
{
	int i;

	for (i = 0; b->len < size; i++)
		buf_printf(b,
		    "# TYPE h%06d histogram\nh%06d_bucket{le=\"+Inf\"} 1\n"
		    "h%06d_sum 1\nh%06d_count 1\n",
		    i, i, i, i);
}

static void
gen_metadata(struct buf *b, size_t size)
{
	int i;

	for (i = 0; b->len < size; i++)
		buf_printf(b, "# HELP m%07d x\n# TYPE m%07d gauge\n", i, i);
}

static void
gen_series(struct buf *b, size_t size)
{
	while (b->len < size)
		buf_printf(b, "s 1\n");
}

static void
gen_labels(struct buf *b, size_t size)
{
	int i, k;

	for (i = 0; b->len < size; i++) {
		buf_printf(b, "l{");
		for (k = 0; k < EXPO_LABELS_MAX; k++)
			buf_printf(b, "%sa%02d=\"%d\"", k > 0 ? "," : "", k, i);
		buf_printf(b, "} 1\n");
	}
}

static void
gen_worker(struct buf *b, size_t size)
{
	int i, k, j;

	for (i = 0; b->len < size; i++) {
		buf_printf(b, "w{");
		for (k = EXPO_LABELS_MAX - 1; k >= 0; k--) {
			buf_printf(b, "%s", k < EXPO_LABELS_MAX - 1 ? "," : "");
			for (j = 0; j < k; j++)
				buf_printf(b, "exported_");
			buf_printf(b, "worker=\"%d\"", i);
		}
		buf_printf(b, "} 1\n");
	}
}

/* Median CPU ms of merging text alone, warm, as the fan-out does. */
static double
bench_merge(const struct buf *text, int rounds, struct expo_stats *st)
{
	static double t[ROUNDS_MAX];
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 };
	int r;

	for (r = 0; r < rounds; r++) {
		double t0 = bench_cpu_us();

		expo_merge_reset(m);
		out.len = 0;
		expo_merge_add(m, "3", text->data, text->len, st);
		expo_merge_render(m, &out);
		t[r] = bench_cpu_us() - t0;
	}
	expo_merge_free(m);
	buf_finish(&out);
	return bench_pct(t, (size_t)rounds, 50) / 1e3;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		gen_fn gen;
	} cases[] = {
		{ "names", gen_names },
		{ "histograms", gen_histograms },
		{ "metadata", gen_metadata },
		{ "series", gen_series },
		{ "labels", gen_labels },
		{ "worker", gen_worker },
	};
	static const size_t sizes[] = { 64 * 1024, 1024 * 1024,
		FANOUT_BODY_MAX };
	int rounds = argc > 1 ? atoi(argv[1]) : 100, n;
	double ordinary, ms, worst = 0;
	struct expo_stats st;
	size_t s, c;

	if (rounds < 5 || rounds > ROUNDS_MAX) {
		fprintf(stderr, "usage: bench_expo [ROUNDS]\n");
		return 2;
	}
	printf("per-worker caps: %d series, %d names\n", EXPO_SERIES_MAX,
	    EXPO_NAMES_MAX);
	for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		struct buf ord = { 0 };

		/* Fewer rounds for the big answers: the same total time. */
		n = s == 0 ? rounds : rounds / (int)(4 * s) + 5;
		gen_ordinary(&ord, sizes[s]);
		ordinary = bench_merge(&ord, n, &st);
		printf("%zu KiB: ordinary %.3f ms (%zu samples)\n",
		    sizes[s] / 1024, ordinary, st.samples);
		for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
			struct buf text = { 0 };

			cases[c].gen(&text, sizes[s]);
			ms = bench_merge(&text, n, &st);
			printf("  %-10s %8.3f ms  ratio %.2f  (%zu samples "
			       "kept, %zu over the caps, %zu malformed)\n",
			    cases[c].name, ms, ms / ordinary, st.samples,
			    st.capped, st.malformed);
			if (ms / ordinary > worst)
				worst = ms / ordinary;
			buf_finish(&text);
		}
		buf_finish(&ord);
	}
	printf("worst crafted answer against an ordinary one of the same "
	       "size: %.2fx   target <= 2x: %s\n",
	    worst, worst <= 2 ? "met" : "MISSED");
	return 0;
}
