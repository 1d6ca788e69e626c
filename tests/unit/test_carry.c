#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

static struct carry_limits limits;

static void
setup(void)
{
	memset(&limits, 0, sizeof limits);
	limits.max_series = 100000;
}

/* The rewritten answer, NUL-terminated; free it. */
static char *
rewrite(struct carry *c, uint64_t stamp, const char *text)
{
	struct buf out = { 0 };

	carry_rewrite(c, stamp, text, strlen(text), &out);
	buf_add(&out, "", 1);
	return out.data;
}

/* The value of the line that starts with series (name and labels). */
static double
value_of(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	for (; p != NULL && *p != '\0'; p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	cr_assert_fail("no %s in:\n%s", series, text);
	return -1;
}

static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line)) != NULL) {
		if ((p == text || p[-1] == '\n') &&
		    (p[n] == '\n' || p[n] == '\0'))
			return 1;
		p += n;
	}
	return 0;
}

/* The text must read back whole, and name each family once. */
static void
assert_valid(const char *text)
{
	struct expo_merge *m = expo_merge_create();
	struct expo_stats st;
	struct expo_reader *r;
	struct expo_line line;
	char **seen = NULL;
	size_t nseen = 0, i;
	int rc;

	expo_merge_add(m, "0", text, strlen(text), &st);
	cr_assert_eq(st.malformed, 0, "malformed line %zu in:\n%s",
	    st.malformed_line, text);
	cr_assert_eq(st.type_conflicts, 0, "%s", text);
	expo_merge_free(m);
	r = expo_reader_create(text, strlen(text));
	while ((rc = expo_reader_next(r, &line)) != 0) {
		cr_assert_eq(rc, 1);
		if (line.kind != EXPO_LINE_TYPE)
			continue;
		for (i = 0; i < nseen; i++)
			cr_assert(strlen(seen[i]) != line.familylen ||
				memcmp(seen[i], line.family, line.familylen) !=
				    0,
			    "two TYPE lines for %s", seen[i]);
		seen = xreallocarray(seen, nseen + 1, sizeof *seen);
		seen[nseen++] = xstrndup(line.family, line.familylen);
	}
	expo_reader_free(r);
	for (i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
}

static const char lifetime1[] =
    "# HELP req_total Requests.\n"
    "# TYPE req_total counter\n"
    "req_total{path=\"/a\",code=\"200\"} 10\n"
    "req_total{path=\"/b\",code=\"200\"} 4\n"
    "# HELP req_created Requests.\n"
    "# TYPE req_created gauge\n"
    "req_created{path=\"/a\",code=\"200\"} 1.7e+09\n"
    "# TYPE inflight gauge\n"
    "inflight 3\n"
    "# TYPE lat histogram\n"
    "lat_bucket{le=\"0.1\"} 2\n"
    "lat_bucket{le=\"+Inf\"} 5\n"
    "lat_sum 1.5\n"
    "lat_count 5\n"
    "lat_created 1.7e+09\n"
    "# TYPE rpc summary\n"
    "rpc{quantile=\"0.5\"} 0.2\n"
    "rpc_sum 7.25\n"
    "rpc_count 30\n"
    "# TYPE raw untyped\n"
    "raw 100\n";

static const char lifetime2[] =
    "# HELP req_total Requests.\n"
    "# TYPE req_total counter\n"
    "req_total{code=\"200\",path=\"/a\"} 1\n"
    "# HELP req_created Requests.\n"
    "# TYPE req_created gauge\n"
    "req_created{path=\"/a\",code=\"200\"} 1.8e+09\n"
    "# TYPE inflight gauge\n"
    "inflight 1\n"
    "# TYPE lat histogram\n"
    "lat_bucket{le=\"0.1\"} 1\n"
    "lat_bucket{le=\"+Inf\"} 1\n"
    "lat_sum 0.05\n"
    "lat_count 1\n"
    "# TYPE rpc summary\n"
    "rpc{quantile=\"0.5\"} 0.1\n"
    "rpc_sum 0.1\n"
    "rpc_count 1\n"
    "# TYPE raw untyped\n"
    "raw 7\n";

TestSuite(carry, .init = setup);

Test(carry, counters_add_up_across_lifetimes_and_nothing_else_does)
{
	struct carry *c = carry_create(&limits);
	char *out;

	cr_assert(carry_empty(c));
	cr_assert_eq(carry_add_lifetime(c, lifetime1, strlen(lifetime1), NULL),
	    0);
	cr_assert_not(carry_empty(c));
	/* req x2, lat: 2 buckets, sum, count; rpc: sum, count */
	cr_assert_eq(carry_series(c), 8);
	cr_assert_eq(limits.series, 8);

	out = rewrite(c, 1, lifetime2);
	assert_valid(out);
	/* labels in another order are the same series */
	cr_assert_eq(value_of(out, "req_total{code=\"200\",path=\"/a\"}"), 11);
	/* not produced by this lifetime yet: served at its carried value,
	 * inside its family */
	cr_assert_eq(value_of(out, "req_total{code=\"200\",path=\"/b\"}"), 4);
	cr_assert_eq(value_of(out, "lat_bucket{le=\"0.1\"}"), 3);
	cr_assert_eq(value_of(out, "lat_bucket{le=\"+Inf\"}"), 6);
	cr_assert_eq(value_of(out, "lat_sum"), 1.55);
	cr_assert_eq(value_of(out, "lat_count"), 6);
	cr_assert_eq(value_of(out, "rpc_sum"), 7.35);
	cr_assert_eq(value_of(out, "rpc_count"), 31);
	/* the live worker's own */
	cr_assert_eq(value_of(out, "inflight"), 1);
	cr_assert_eq(value_of(out, "raw"), 7);
	cr_assert_eq(value_of(out, "rpc{quantile=\"0.5\"}"), 0.1);
	/* _created of carried families goes */
	cr_assert_null(strstr(out, "req_created{"), "%s", out);
	cr_assert_null(strstr(out, "lat_created"), "%s", out);
	free(out);
	carry_free(c);
	cr_assert_eq(limits.series, 0, "the cap's count is given back");
}

/* The hostile case 1: a counter that goes down within a lifetime. */
Test(carry, counter_going_down_within_a_lifetime_is_a_reset_of_its_own)
{
	struct carry *c = carry_create(&limits);
	const char *t5 = "# TYPE n_total counter\nn_total 5\n";
	char *out;

	carry_add_lifetime(c, t5, strlen(t5), NULL);
	out = rewrite(c, 10, "# TYPE n_total counter\nn_total 10\n");
	cr_assert_eq(value_of(out, "n_total"), 15);
	free(out);
	/* the worker's counter drops to 4: it was reset, the 10 stay */
	out = rewrite(c, 11, "# TYPE n_total counter\nn_total 4\n");
	cr_assert_eq(value_of(out, "n_total"), 19);
	free(out);
	out = rewrite(c, 12, "# TYPE n_total counter\nn_total 6\n");
	cr_assert_eq(value_of(out, "n_total"), 21);
	free(out);
	/* an answer whose scrape started before the last one applied is
	 * not a reset, however it compares */
	out = rewrite(c, 9, "# TYPE n_total counter\nn_total 5\n");
	cr_assert_eq(value_of(out, "n_total"), 20);
	free(out);
	out = rewrite(c, 13, "# TYPE n_total counter\nn_total 7\n");
	cr_assert_eq(value_of(out, "n_total"), 22, "no fold from the stale 5");
	free(out);
	/* lifetime ends with no final answer (kill -9): the last values */
	carry_end_lifetime(c);
	out = rewrite(c, 14, "# TYPE n_total counter\nn_total 1\n");
	cr_assert_eq(value_of(out, "n_total"), 23);
	free(out);
	carry_free(c);
}

/* The hostile case 2: a family whose type changes. */
Test(carry, family_whose_type_changed_is_dropped_and_counted)
{
	struct carry *c = carry_create(&limits);
	const char *l1 = "# TYPE x counter\nx{a=\"1\"} 5\nx{a=\"2\"} 6\n"
			 "# TYPE y_total counter\ny_total 2\n";
	const char *l2 = "# TYPE x gauge\nx{a=\"1\"} 1\n"
			 "# TYPE y_total counter\ny_total 3\n";
	char *out;

	carry_add_lifetime(c, l1, strlen(l1), NULL);
	cr_assert_eq(carry_series(c), 3);
	out = rewrite(c, 1, l2);
	assert_valid(out);
	cr_assert_eq(limits.type_changes, 1);
	cr_assert_eq(carry_series(c), 1);
	cr_assert_eq(value_of(out, "x{a=\"1\"}"), 1, "the gauge, raw");
	cr_assert_null(strstr(out, "x{a=\"2\"}"), "%s", out);
	cr_assert_eq(value_of(out, "y_total"), 5);
	free(out);

	/* the same in a final answer, and a histogram turned summary */
	carry_clear(c);
	l1 =
	    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 3\n";
	l2 = "# TYPE h summary\nh_sum 2\nh_count 4\n";
	carry_add_lifetime(c, l1, strlen(l1), NULL);
	carry_add_lifetime(c, l2, strlen(l2), NULL);
	cr_assert_eq(limits.type_changes, 2);
	out = rewrite(c, 2, "# TYPE h summary\nh_sum 1\nh_count 1\n");
	assert_valid(out);
	cr_assert_eq(value_of(out, "h_count"), 5);
	cr_assert_null(strstr(out, "h_bucket"), "%s", out);
	free(out);
	carry_free(c);
}

/* The hostile case 3: label sets that come and go. */
Test(carry, label_sets_that_come_and_go)
{
	struct carry *c = carry_create(&limits);
	const char *l1 = "# HELP hits_total Hits.\n# TYPE hits_total counter\n"
			 "hits_total{k=\"1\"} 1\nhits_total{k=\"2\"} 2\n"
			 "# TYPE other_total counter\nother_total 9\n";
	char *out;

	carry_add_lifetime(c, l1, strlen(l1), NULL);
	/* k=1 gone, k=3 new; other_total not produced at all */
	out = rewrite(c, 1,
	    "# TYPE hits_total counter\nhits_total{k=\"2\"} 1\n"
	    "hits_total{k=\"3\"} 5\n# TYPE g gauge\ng 1\n");
	assert_valid(out);
	cr_assert_eq(value_of(out, "hits_total{k=\"1\"}"), 1);
	cr_assert_eq(value_of(out, "hits_total{k=\"2\"}"), 3);
	cr_assert_eq(value_of(out, "hits_total{k=\"3\"}"), 5);
	cr_assert_eq(value_of(out, "other_total"), 9);
	cr_assert(has_line(out, "# TYPE other_total counter"), "%s", out);
	/* the carried k=1 sits inside its family, before the gauge */
	cr_assert_lt(strstr(out, "hits_total{k=\"1\"}"), strstr(out, "g 1"));
	free(out);

	/* k=3 ends its lifetime unseen again: its last value is kept */
	carry_end_lifetime(c);
	out = rewrite(c, 2, "# TYPE g gauge\ng 2\n");
	assert_valid(out);
	cr_assert_eq(value_of(out, "hits_total{k=\"3\"}"), 5);
	cr_assert_eq(value_of(out, "hits_total{k=\"2\"}"), 3);
	cr_assert(has_line(out, "# HELP hits_total Hits."), "%s", out);
	free(out);
	carry_free(c);
}

/* The hostile case 4: huge series counts against the cap. */
Test(carry, huge_series_counts_stop_at_the_shared_cap, .timeout = 30)
{
	struct carry *a = carry_create(&limits), *b = carry_create(&limits);
	struct buf text = { 0 }, out = { 0 };
	char line[64];
	size_t i, n = 200000;
	int len;

	limits.max_series = 1000;
	buf_add(&text, "# TYPE big counter\n", 19);
	for (i = 0; i < n; i++) {
		len = snprintf(line, sizeof line, "big{i=\"%zu\"} 1\n", i);
		buf_add(&text, line, (size_t)len);
	}
	cr_assert_eq(carry_add_lifetime(a, text.data, text.len, NULL), 0);
	cr_assert_eq(carry_series(a), 1000);
	cr_assert_eq(limits.dropped, n - 1000);
	/* the cap is for all slots together */
	carry_add_lifetime(b, text.data, text.len, NULL);
	cr_assert_eq(carry_series(b), 0);
	cr_assert(carry_empty(b));

	/* over the cap, a live series is served raw */
	carry_rewrite(a, 1, text.data, text.len, &out);
	buf_add(&out, "", 1);
	cr_assert_eq(value_of(out.data, "big{i=\"0\"}"), 2);
	cr_assert_eq(value_of(out.data, "big{i=\"150000\"}"), 1);
	buf_finish(&out);

	carry_free(a);
	carry_add_lifetime(b, text.data, text.len, NULL);
	cr_assert_eq(carry_series(b), 1000, "a's room was given back");
	carry_free(b);
	buf_finish(&text);
}

Test(carry, many_families_and_type_flips_stay_consistent, .timeout = 30)
{
	struct carry *c = carry_create(&limits);
	struct buf text = { 0 };
	char line[96];
	size_t i, round;
	int len;

	for (round = 0; round < 4; round++) {
		text.len = 0;
		for (i = 0; i < 2000; i++) {
			/* every other family flips type each round */
			len = snprintf(line, sizeof line,
			    "# TYPE f%zu %s\nf%zu{r=\"x\"} %zu\n", i,
			    (i % 2 == 1 && round % 2 == 1) ? "gauge"
							   : "counter",
			    i, i);
			buf_add(&text, line, (size_t)len);
		}
		carry_add_lifetime(c, text.data, text.len, NULL);
	}
	/* rounds 0,2: counters; 1,3: odd ones gauges, dropped each time */
	cr_assert_eq(limits.type_changes, 1000 + 1000);
	cr_assert_eq(carry_series(c), 1000);
	text.len = 0;
	carry_begin(c, 1);
	carry_render(c, &text);
	buf_add(&text, "", 1);
	assert_valid(text.data);
	cr_assert_eq(value_of(text.data, "f10{r=\"x\"}"), 40);
	cr_assert_null(strstr(text.data, "f11{"));
	buf_finish(&text);
	carry_free(c);
}

Test(carry, render_serves_a_slot_with_no_live_worker)
{
	struct carry *c = carry_create(&limits);
	struct buf out = { 0 };
	char *again;

	carry_add_lifetime(c, lifetime1, strlen(lifetime1), NULL);
	carry_begin(c, 1);
	carry_render(c, &out);
	buf_add(&out, "", 1);
	assert_valid(out.data);
	cr_assert(has_line(out.data, "# HELP req_total Requests."), "%s",
	    out.data);
	cr_assert(has_line(out.data, "# TYPE lat histogram"));
	cr_assert_null(strstr(out.data, "inflight"), "gauges are not carried");
	cr_assert_null(strstr(out.data, "rpc{"), "nor quantiles");

	/* what it renders reads back as the same carry: the state file */
	{
		struct carry *d = carry_create(&limits);
		struct buf out2 = { 0 };

		carry_add_lifetime(d, out.data, out.len - 1, NULL);
		carry_begin(d, 1);
		carry_render(d, &out2);
		buf_add(&out2, "", 1);
		cr_assert_str_eq(out2.data, out.data);
		buf_finish(&out2);
		carry_free(d);
	}
	again = rewrite(c, 2, "");
	cr_assert_str_eq(again, out.data, "an empty answer: all carried");
	free(again);
	buf_finish(&out);
	carry_free(c);
}

Test(carry, malformed_lines_pass_or_are_skipped)
{
	struct carry *c = carry_create(&limits);
	const char *bad = "<html>oops</html>\nnot a metric line {\n";
	const char *mixed = "# TYPE a_total counter\na_total 3\n"
			    "a_total{ 4\n# TYPE a_total gauge\n";
	size_t malformed;
	char *out;

	cr_assert_eq(carry_add_lifetime(c, bad, strlen(bad), &malformed), -1);
	cr_assert_eq(malformed, 2);
	cr_assert(carry_empty(c));
	cr_assert_eq(carry_add_lifetime(c, mixed, strlen(mixed), &malformed),
	    0);
	cr_assert_eq(malformed, 2, "a bad sample, a second TYPE");
	cr_assert_eq(carry_series(c), 1);
	out =
	    rewrite(c, 1, "# TYPE a_total counter\na_total 1\nbroken{ line\n");
	cr_assert(has_line(out, "a_total 4"), "%s", out);
	cr_assert(has_line(out, "broken{ line"), "passed on as it was");
	free(out);
	carry_free(c);
}

Test(carry, nan_and_timestamps)
{
	struct carry *c = carry_create(&limits);
	const char *l1 = "# TYPE t_total counter\nt_total 2 1000\n";
	char *out;

	carry_add_lifetime(c, l1, strlen(l1), NULL);
	out = rewrite(c, 1,
	    "# TYPE t_total counter\nt_total 1 2000\r\n"
	    "# TYPE u_total counter\nu_total NaN\n");
	cr_assert(has_line(out, "t_total 3 2000\r"), "%s", out);
	cr_assert(has_line(out, "u_total NaN"), "%s", out);
	free(out);
	carry_free(c);
}

Test(carry, whole_numbers_format_exactly)
{
	struct carry *c = carry_create(&limits);
	const char *l1 = "# TYPE a_total counter\na_total 9007199254740000\n"
			 "# TYPE b_total counter\nb_total 0.25\n"
			 "# TYPE z_total counter\nz_total 0\n";
	char *out;

	carry_add_lifetime(c, l1, strlen(l1), NULL);
	out = rewrite(c, 1,
	    "# TYPE a_total counter\na_total 992\n"
	    "# TYPE b_total counter\nb_total 1e-1\n"
	    "# TYPE z_total counter\nz_total 7\n");
	cr_assert(has_line(out, "a_total 9007199254740992"), "%s", out);
	cr_assert(has_line(out, "b_total 0.35"), "%s", out);
	cr_assert(has_line(out, "z_total 7"), "%s", out);
	free(out);
	out = rewrite(c, 2,
	    "# TYPE a_total counter\na_total 1000\n"
	    "# TYPE z_total counter\nz_total 1234567\n");
	/* past 2^53: the general formatter, exact all the same */
	cr_assert_eq(value_of(out, "a_total"), 9007199254741000.0, "%s", out);
	cr_assert(has_line(out, "z_total 1234567"), "%s", out);
	free(out);
	carry_free(c);
}

/* A histogram that takes the names of carried counters replaces them. */
Test(carry, live_histogram_takes_the_names_of_carried_counters)
{
	struct carry *c = carry_create(&limits);
	const char *l1 = "# TYPE x_bucket counter\nx_bucket 3\n";
	char *out;

	carry_add_lifetime(c, l1, strlen(l1), NULL);
	out = rewrite(c, 1, "# TYPE x histogram\nx_sum 1\nx_count 1\n");
	assert_valid(out);
	cr_assert_null(strstr(out, "x_bucket"), "%s", out);
	cr_assert_eq(limits.type_changes, 1);
	free(out);
	carry_free(c);
}

/* The fan-out's way: one pass through the merge, then what is missing. */
Test(carry, merge_add_gives_the_same_as_rewrite)
{
	struct carry *a = carry_create(&limits), *b = carry_create(&limits);
	struct expo_merge *m1 = expo_merge_create(), *m2 = expo_merge_create();
	struct buf o1 = { 0 }, o2 = { 0 }, scratch = { 0 };
	char *rw;
	int round;

	carry_add_lifetime(a, lifetime1, strlen(lifetime1), NULL);
	carry_add_lifetime(b, lifetime1, strlen(lifetime1), NULL);
	for (round = 1; round <= 3; round++) {
		expo_merge_reset(m1);
		expo_merge_reset(m2);
		o1.len = o2.len = 0;
		cr_assert_eq(carry_merge_add(a, (uint64_t)round, m1, "3",
				 lifetime2, strlen(lifetime2), &scratch, NULL),
		    0);
		rw = rewrite(b, (uint64_t)round, lifetime2);
		expo_merge_add(m2, "3", rw, strlen(rw), NULL);
		free(rw);
		expo_merge_render(m1, &o1);
		expo_merge_render(m2, &o2);
		buf_add(&o1, "", 1);
		buf_add(&o2, "", 1);
		cr_assert_str_eq(o1.data, o2.data);
	}
	cr_assert(has_line(o1.data,
		      "req_total{worker=\"3\",code=\"200\","
		      "path=\"/b\"} 4"),
	    "%s", o1.data);
	cr_assert(has_line(o1.data, "lat_count{worker=\"3\"} 6"), "%s",
	    o1.data);
	cr_assert_null(strstr(o1.data, "lat_created"));
	buf_finish(&o1);
	buf_finish(&o2);
	buf_finish(&scratch);
	expo_merge_free(m1);
	expo_merge_free(m2);
	carry_free(a);
	carry_free(b);
}

/* Values that are not whole numbers read back as the exact sum. */
Test(carry, fractions_read_back_exactly)
{
	static const char *const pairs[][2] = { { "0.1", "0.2" },
		{ "1e-300", "2.5e-300" }, { "123456.789", "0.001" },
		{ "1e21", "1" }, { "12345678901234567890", "1.5" },
		{ "0.000001", "3" }, { "+Inf", "1" } };
	struct carry *c;
	char text[128], *out;
	size_t i;

	for (i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
		c = carry_create(&limits);
		snprintf(text, sizeof text,
		    "# TYPE s_total counter\ns_total %s\n", pairs[i][0]);
		carry_add_lifetime(c, text, strlen(text), NULL);
		snprintf(text, sizeof text,
		    "# TYPE s_total counter\ns_total %s\n", pairs[i][1]);
		out = rewrite(c, 1, text);
		cr_assert_eq(value_of(out, "s_total"),
		    strtod(pairs[i][0], NULL) + strtod(pairs[i][1], NULL),
		    "%s + %s: %s", pairs[i][0], pairs[i][1], out);
		free(out);
		carry_free(c);
	}
}

/* The fan-out's cached served values follow every change of the carry. */
Test(carry, merge_cache_follows_resets_and_lifetimes)
{
	struct carry *c = carry_create(&limits);
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 }, scratch = { 0 };
	static const struct {
		const char *text;
		int end_before; /* a lifetime ends before this answer */
		double served;
	} steps[] = {
		{ "# TYPE n_total counter\nn_total 5\n", 0, 15 },
		{ "# TYPE n_total counter\nn_total 5\n", 0, 15 }, /* cached */
		{ "# TYPE n_total counter\nn_total 7\n", 0, 17 },
		{ "# TYPE n_total counter\nn_total 2\n", 0, 19 }, /* reset */
		{ "# TYPE n_total counter\nn_total 2\n", 0, 19 },
		{ "# TYPE n_total counter\nn_total 2\n", 1, 21 }, /* ended */
		{ "# TYPE n_total counter\nn_total 2\n", 0, 21 },
	};
	char *p;
	size_t i;

	carry_add_lifetime(c, "# TYPE n_total counter\nn_total 10\n", 34, NULL);
	for (i = 0; i < sizeof steps / sizeof steps[0]; i++) {
		if (steps[i].end_before)
			carry_end_lifetime(c);
		expo_merge_reset(m);
		out.len = 0;
		carry_merge_add(c, i + 1, m, "0", steps[i].text,
		    strlen(steps[i].text), &scratch, NULL);
		expo_merge_render(m, &out);
		buf_add(&out, "", 1);
		p = strstr(out.data, "n_total{worker=\"0\"} ");
		cr_assert_not_null(p, "%s", out.data);
		cr_assert_eq(strtod(p + 20, NULL), steps[i].served,
		    "step %zu: %s", i, out.data);
	}
	buf_finish(&out);
	buf_finish(&scratch);
	expo_merge_free(m);
	carry_free(c);
}

/* The merge of answer text for worker 0 with c, NUL-terminated in out. */
static void
merge_once(struct carry *c, uint64_t stamp, const char *text, struct buf *out)
{
	struct expo_merge *m = expo_merge_create();
	struct buf scratch = { 0 };

	out->len = 0;
	carry_merge_add(c, stamp, m, "0", text, strlen(text), &scratch, NULL);
	expo_merge_render(m, out);
	buf_add(out, "", 1);
	buf_finish(&scratch);
	expo_merge_free(m);
}

/*
 * An answer whose lines are word for word the last one's is served from
 * the cache: not when the family's type changed meanwhile, nor when a
 * finished lifetime brought a family that the live answer contradicts.
 */
Test(carry, merge_cache_is_not_fooled_by_same_lines)
{
	struct carry *c = carry_create(&limits);
	struct buf out = { 0 };
	const char *summary = "# TYPE x summary\nx_count 1\nx_sum 1\n";
	const char *old = "# TYPE x_count counter\nx_count 3\n";

	carry_add_lifetime(c, "# TYPE n counter\nn 10\n", 22, NULL);
	merge_once(c, 1, "# TYPE n counter\nn 5\n", &out);
	merge_once(c, 2, "# TYPE n counter\nn 5\n", &out);
	cr_assert(has_line(out.data, "n{worker=\"0\"} 15"), "%s", out.data);
	merge_once(c, 3, "# TYPE n gauge\nn 5\n", &out);
	cr_assert(has_line(out.data, "n{worker=\"0\"} 5"), "%s", out.data);
	assert_valid(out.data);
	cr_assert_eq(limits.type_changes, 1);
	cr_assert_eq(carry_series(c), 0);

	carry_clear(c);
	merge_once(c, 4, summary, &out);
	merge_once(c, 5, summary, &out);
	carry_add_lifetime(c, old, strlen(old), NULL);
	merge_once(c, 6, summary, &out);
	assert_valid(out.data);
	cr_assert(has_line(out.data, "x_count{worker=\"0\"} 1"), "%s",
	    out.data);
	cr_assert_null(strstr(out.data, "TYPE x_count"), "%s", out.data);
	buf_finish(&out);
	carry_free(c);
}
