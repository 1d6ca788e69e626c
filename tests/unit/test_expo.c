/*
 * Tests for expo.c: parsing the text exposition format, merging several
 * workers' scrapes, hostile input, and promtool accepting the result.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "promfork.h"

#define PROMTOOL "/usr/bin/promtool"

/* Merges n texts as workers "0".."n-1"; returns the NUL-terminated output. */
static char *
merge_n(const char *const *texts, size_t n, struct expo_stats *st, int *rc)
{
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 };
	char worker[24];
	size_t i;
	int r;

	for (i = 0; i < n; i++) {
		snprintf(worker, sizeof worker, "%zu", i);
		r = expo_merge_add(m, worker, texts[i], strlen(texts[i]),
		    st != NULL ? &st[i] : NULL);
		if (rc != NULL)
			rc[i] = r;
	}
	expo_merge_render(m, &out);
	buf_add(&out, "", 1);
	expo_merge_free(m);
	return out.data;
}

static char *
merge1(const char *text, struct expo_stats *st)
{
	return merge_n(&text, 1, st, NULL);
}

static void
expect1(const char *in, const char *want)
{
	struct expo_stats st;
	char *out = merge1(in, &st);

	cr_expect_str_eq(out, want);
	cr_expect_eq(st.malformed, 0, "malformed %zu at line %zu", st.malformed,
	    st.malformed_line);
	cr_expect_eq(st.type_conflicts, 0);
	free(out);
}

/*
 * Runs promtool check metrics on text: its exit status, or -1; what it
 * said goes to *said (for failure messages), which the caller frees.
 */
static int
promtool_check(const char *text, char **said)
{
	char in[] = "/tmp/test_expo.XXXXXX", out[] = "/tmp/test_expo.XXXXXX";
	char cmd[128];
	size_t len = strlen(text);
	int fd, ofd, status;
	ssize_t n;

	fd = mkstemp(in);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	ofd = mkstemp(out);
	cr_assert_geq(ofd, 0);
	snprintf(cmd, sizeof cmd, PROMTOOL " check metrics <%s >%s 2>&1", in,
	    out);
	status = system(cmd);
	*said = calloc(1, 4096);
	n = read(ofd, *said, 4095);
	(void)n;
	close(ofd);
	unlink(in);
	unlink(out);
	if (status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Parsing good input */

Test(expo, types)
{
	expect1("# HELP a_total Things done.\n"
		"# TYPE a_total counter\n"
		"a_total{x=\"1\"} 1.0\n"
		"# TYPE g gauge\n"
		"g -2.5\n"
		"# TYPE u untyped\n"
		"u 7\n",
	    "# HELP a_total Things done.\n"
	    "# TYPE a_total counter\n"
	    "a_total{worker=\"0\",x=\"1\"} 1.0\n"
	    "# TYPE g gauge\n"
	    "g{worker=\"0\"} -2.5\n"
	    "# TYPE u untyped\n"
	    "u{worker=\"0\"} 7\n");
}

Test(expo, histogram)
{
	expect1("# HELP h_seconds Latency.\n"
		"# TYPE h_seconds histogram\n"
		"h_seconds_bucket{le=\"0.1\"} 1\n"
		"h_seconds_bucket{le=\"+Inf\"} 2\n"
		"h_seconds_sum 0.35\n"
		"h_seconds_count 2\n"
		"h_seconds_created 1.7e9\n",
	    "# HELP h_seconds Latency.\n"
	    "# TYPE h_seconds histogram\n"
	    "h_seconds_bucket{worker=\"0\",le=\"0.1\"} 1\n"
	    "h_seconds_bucket{worker=\"0\",le=\"+Inf\"} 2\n"
	    "h_seconds_sum{worker=\"0\"} 0.35\n"
	    "h_seconds_count{worker=\"0\"} 2\n"
	    "h_seconds_created{worker=\"0\"} 1.7e9\n");
}

Test(expo, summary)
{
	expect1("# TYPE s summary\n"
		"s{quantile=\"0.5\"} 3\n"
		"s{quantile=\"0.99\"} NaN\n"
		"s_sum 10\n"
		"s_count 4\n",
	    "# TYPE s summary\n"
	    "s{worker=\"0\",quantile=\"0.5\"} 3\n"
	    "s{worker=\"0\",quantile=\"0.99\"} NaN\n"
	    "s_sum{worker=\"0\"} 10\n"
	    "s_count{worker=\"0\"} 4\n");
}

/* client_python gives _created its own gauge family: that must not clash. */
Test(expo, created_family)
{
	expect1("# HELP r_total R.\n"
		"# TYPE r_total counter\n"
		"r_total 1.0\n"
		"# HELP r_created R.\n"
		"# TYPE r_created gauge\n"
		"r_created 1.7e9\n"
		"# TYPE l histogram\n"
		"l_bucket{le=\"+Inf\"} 1.0\n"
		"l_count 1.0\n"
		"l_sum 0.5\n"
		"# TYPE l_created gauge\n"
		"l_created 1.7e9\n",
	    "# HELP r_total R.\n"
	    "# TYPE r_total counter\n"
	    "r_total{worker=\"0\"} 1.0\n"
	    "# HELP r_created R.\n"
	    "# TYPE r_created gauge\n"
	    "r_created{worker=\"0\"} 1.7e9\n"
	    "# TYPE l histogram\n"
	    "l_bucket{worker=\"0\",le=\"+Inf\"} 1.0\n"
	    "l_count{worker=\"0\"} 1.0\n"
	    "l_sum{worker=\"0\"} 0.5\n"
	    "# TYPE l_created gauge\n"
	    "l_created{worker=\"0\"} 1.7e9\n");
}

Test(expo, escapes)
{
	expect1(
	    "# HELP e Help with \\\\ and \\n and \"quotes\".\n"
	    "# TYPE e gauge\n"
	    "e{path=\"C:\\\\dir\\\"x\\\"\\nnext\",empty=\"\",u=\"\xc3\xa9\"} 1\n",
	    "# HELP e Help with \\\\ and \\n and \"quotes\".\n"
	    "# TYPE e gauge\n"
	    "e{worker=\"0\",path=\"C:\\\\dir\\\"x\\\"\\nnext\",empty=\"\","
	    "u=\"\xc3\xa9\"} 1\n");
}

/*
 * Values and timestamps pass through as the worker wrote them: value.c
 * takes only text that Prometheus reads as the same number.
 */
Test(expo, values_and_timestamps_verbatim)
{
	expect1("# TYPE v gauge\n"
		"v{k=\"a\"} 1.0 1700000000000\n"
		"v{k=\"b\"} +Inf\n"
		"v{k=\"c\"} -inf\n"
		"v{k=\"d\"} nan\n"
		"v{k=\"e\"} 1e3 -5\n"
		"v{k=\"f\"} 0.1\n"
		"v{k=\"g\"} -0.5e-3\n"
		"v{k=\"h\"} 1.5E300\n"
		"v{k=\"i\"} .5 +7\n"
		"v{k=\"j\"} 123456789012345678901234567890\n"
		"v{k=\"k\"} -0\n"
		"v{k=\"l\"} Infinity -9223372036854775808\n"
		"v{k=\"m\"} 5. 9223372036854775807\n"
		"v{k=\"n\"} 4.9e-324\n"
		"v{k=\"o\"} 1e-400 007\n"
		"v{k=\"p\"} 1.7976931348623157e308\n",
	    "# TYPE v gauge\n"
	    "v{worker=\"0\",k=\"a\"} 1.0 1700000000000\n"
	    "v{worker=\"0\",k=\"b\"} +Inf\n"
	    "v{worker=\"0\",k=\"c\"} -inf\n"
	    "v{worker=\"0\",k=\"d\"} nan\n"
	    "v{worker=\"0\",k=\"e\"} 1e3 -5\n"
	    "v{worker=\"0\",k=\"f\"} 0.1\n"
	    "v{worker=\"0\",k=\"g\"} -0.5e-3\n"
	    "v{worker=\"0\",k=\"h\"} 1.5E300\n"
	    "v{worker=\"0\",k=\"i\"} .5 +7\n"
	    "v{worker=\"0\",k=\"j\"} 123456789012345678901234567890\n"
	    "v{worker=\"0\",k=\"k\"} -0\n"
	    "v{worker=\"0\",k=\"l\"} Infinity -9223372036854775808\n"
	    "v{worker=\"0\",k=\"m\"} 5. 9223372036854775807\n"
	    "v{worker=\"0\",k=\"n\"} 4.9e-324\n"
	    "v{worker=\"0\",k=\"o\"} 1e-400 007\n"
	    "v{worker=\"0\",k=\"p\"} 1.7976931348623157e308\n");
}

Test(expo, untyped_without_type)
{
	expect1("# HELP x An untyped thing.\n"
		"x 1\n"
		"y{a=\"b\"} 2\n",
	    "# HELP x An untyped thing.\n"
	    "# TYPE x untyped\n"
	    "x{worker=\"0\"} 1\n"
	    "# TYPE y untyped\n"
	    "y{worker=\"0\",a=\"b\"} 2\n");
}

Test(expo, lenient_whitespace_and_comments)
{
	expect1("# a comment\n"
		"#\n"
		"# HELP\n"
		"# TYPE m\n"
		"#HELP m Help without a blank.\n"
		"\n"
		"   \t\n"
		"# TYPE m gauge  \r\n"
		"  m\t{ a = \"1\" , b=\"2\", }\t3  \r\n"
		"m{} 4\n"
		"m{a=\"2\"}5\n"
		"ns:sub:m 6\n",
	    "# HELP m Help without a blank.\n"
	    "# TYPE m gauge\n"
	    "m{worker=\"0\",a=\"1\",b=\"2\"} 3\n"
	    "m{worker=\"0\"} 4\n"
	    "m{worker=\"0\",a=\"2\"} 5\n"
	    "# TYPE ns:sub:m untyped\n"
	    "ns:sub:m{worker=\"0\"} 6\n");
}

Test(expo, stats)
{
	struct expo_stats st;
	char *out = merge1("# TYPE a gauge\na 1\na{x=\"y\"} 2\n\nb 3\n", &st);

	cr_expect_eq(st.lines, 5);
	cr_expect_eq(st.samples, 3);
	cr_expect_eq(st.malformed, 0);
	cr_expect_eq(st.malformed_line, 0);
	cr_expect_eq(st.dropped, 0);
	free(out);
}

/* Merging workers */

Test(expo, merge_groups_families)
{
	const char *in[] = {
		"# HELP a A.\n# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n",
		"# TYPE b gauge\nb 3\n# TYPE c gauge\nc 4\n"
		"# HELP a A.\n# TYPE a gauge\na 5\n",
	};
	char *out = merge_n(in, 2, NULL, NULL);

	cr_expect_str_eq(out,
	    "# HELP a A.\n"
	    "# TYPE a gauge\n"
	    "a{worker=\"0\"} 1\n"
	    "a{worker=\"1\"} 5\n"
	    "# TYPE b gauge\n"
	    "b{worker=\"0\"} 2\n"
	    "b{worker=\"1\"} 3\n"
	    "# TYPE c gauge\n"
	    "c{worker=\"1\"} 4\n");
	free(out);
}

Test(expo, merge_interleaved_samples)
{
	const char *in[] = {
		"# TYPE a gauge\n# TYPE b gauge\n"
		"a{i=\"1\"} 1\nb 2\na{i=\"2\"} 3\n",
		"b 9\n",
	};
	struct expo_stats st[2];
	char *out = merge_n(in, 2, st, NULL);

	/* Worker 1's untyped b clashes with worker 0's gauge b. */
	cr_expect_str_eq(out,
	    "# TYPE a gauge\n"
	    "a{worker=\"0\",i=\"1\"} 1\n"
	    "a{worker=\"0\",i=\"2\"} 3\n"
	    "# TYPE b gauge\n"
	    "b{worker=\"0\"} 2\n");
	cr_expect_eq(st[1].type_conflicts, 1);
	cr_expect_str_eq(st[1].conflict, "b");
	free(out);
}

Test(expo, merge_histograms_of_workers)
{
	const char *h = "# HELP h H.\n# TYPE h histogram\n"
			"h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\n"
			"h_sum 3\nh_count 2\n";
	const char *in[] = { h, h, h };
	char *out = merge_n(in, 3, NULL, NULL);
	const char *p = out;
	int helps = 0, types = 0, samples = 0;

	for (; *p != '\0'; p = strchr(p, '\n') + 1) {
		if (strncmp(p, "# HELP", 6) == 0)
			helps++;
		else if (strncmp(p, "# TYPE", 6) == 0)
			types++;
		else
			samples++;
	}
	cr_expect_eq(strncmp(out, "# HELP h H.\n# TYPE h histogram\n", 30), 0);
	cr_expect_eq(helps, 1);
	cr_expect_eq(types, 1);
	cr_expect_eq(samples, 12);
	cr_expect(strstr(out, "h_count{worker=\"2\"} 2\n") != NULL);
	free(out);
}

Test(expo, merge_exported_worker)
{
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 };
	const char *in = "m{worker=\"x\"} 1\n"
			 "n{worker=\"x\",exported_worker=\"y\"} 2\n";

	expo_merge_add(m, "7", in, strlen(in), NULL);
	expo_merge_render(m, &out);
	buf_add(&out, "", 1);
	cr_expect_str_eq(out.data,
	    "# TYPE m untyped\n"
	    "m{worker=\"7\",exported_worker=\"x\"} 1\n"
	    "# TYPE n untyped\n"
	    "n{worker=\"7\",exported_exported_worker=\"x\","
	    "exported_worker=\"y\"} 2\n");
	buf_finish(&out);
	expo_merge_free(m);
}

Test(expo, merge_worker_escaped)
{
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 };

	expo_merge_add(m, "a\"b\\c\nd", "m 1\n", 4, NULL);
	expo_merge_render(m, &out);
	buf_add(&out, "", 1);
	cr_expect_str_eq(out.data,
	    "# TYPE m untyped\n"
	    "m{worker=\"a\\\"b\\\\c\\nd\"} 1\n");
	buf_finish(&out);
	expo_merge_free(m);
}

Test(expo, merge_help_first_seen)
{
	const char *in[] = {
		"# TYPE m gauge\nm 1\n",
		"# HELP m From one.\n# TYPE m gauge\nm 2\n",
		"# HELP m From two.\n# TYPE m gauge\nm 3\n",
	};
	char *out = merge_n(in, 3, NULL, NULL);

	cr_expect_str_eq(out,
	    "# HELP m From one.\n"
	    "# TYPE m gauge\n"
	    "m{worker=\"0\"} 1\n"
	    "m{worker=\"1\"} 2\n"
	    "m{worker=\"2\"} 3\n");
	free(out);
}

Test(expo, merge_render_twice)
{
	struct expo_merge *m = expo_merge_create();
	struct buf a = { 0 }, b = { 0 };

	expo_merge_add(m, "0", "m 1\n", 4, NULL);
	expo_merge_render(m, &a);
	expo_merge_render(m, &b);
	cr_expect_eq(a.len, b.len);
	cr_expect_eq(memcmp(a.data, b.data, a.len), 0);
	buf_finish(&a);
	buf_finish(&b);
	expo_merge_free(m);
	expo_merge_free(NULL);
}

/* Hostile input */

Test(expo, huge_line)
{
	static char in[EXPO_LINE_MAX + 10 + 64];
	size_t pad = EXPO_LINE_MAX + 10, len;
	struct expo_stats st;
	char *out;

	len = (size_t)sprintf(in, "a 1\nbig{l=\"");
	memset(in + len, 'x', pad);
	len += pad;
	len += (size_t)sprintf(in + len, "\"} 1\nb 2\n");
	out = merge1(in, &st);
	cr_expect_eq(st.malformed, 1);
	cr_expect_eq(st.malformed_line, 2);
	cr_expect_eq(st.samples, 2);
	cr_expect_str_eq(out,
	    "# TYPE a untyped\na{worker=\"0\"} 1\n"
	    "# TYPE b untyped\nb{worker=\"0\"} 2\n");
	free(out);
}

Test(expo, line_at_cap)
{
	static char in[EXPO_LINE_MAX + 2];
	struct expo_stats st;
	size_t len;
	char *out;

	/* Exactly EXPO_LINE_MAX bytes before the newline is still allowed. */
	len = (size_t)sprintf(in, "big{l=\"");
	memset(in + len, 'x', EXPO_LINE_MAX - len - 4);
	memcpy(in + EXPO_LINE_MAX - 4, "\"} 1\n", 6);
	cr_assert_eq(strlen(in), EXPO_LINE_MAX + 1);
	out = merge1(in, &st);
	cr_expect_eq(st.malformed, 0);
	cr_expect_eq(st.samples, 1);
	free(out);
}

Test(expo, bad_escapes)
{
	struct expo_stats st;
	char *out = merge1("m{a=\"\\q\"} 1\n"
			   "# HELP m Bad \\t escape.\n"
			   "# HELP n Ends in a backslash \\\n"
			   "m{a=\"ok\\\"} 3\n"
			   "m 2\n",
	    &st);

	cr_expect_eq(st.malformed, 4);
	cr_expect_eq(st.malformed_line, 1);
	cr_expect_str_eq(out, "# TYPE m untyped\nm{worker=\"0\"} 2\n");
	free(out);
}

Test(expo, unterminated)
{
	struct expo_stats st;
	char *out = merge1("m{a=\"open} 1\n"
			   "m{a=\"x\"\n"
			   "m{a=\"x\" 1\n"
			   "m{a=\"x\",b=} 1\n"
			   "m{a=x} 1\n"
			   "m{a} 1\n"
			   "m{,} 1\n"
			   "m{a=\"x\"\"b\"} 1\n"
			   "m{a=\"open",
	    &st);

	cr_expect_eq(st.malformed, 9);
	cr_expect_eq(st.samples, 0);
	cr_expect_str_eq(out, "");
	free(out);
}

Test(expo, nul_bytes)
{
	static const char in[] = "m 1\nn\0 2\no 3\n# HELP o a\0b\n";
	struct expo_merge *m = expo_merge_create();
	struct buf out = { 0 };
	struct expo_stats st;

	expo_merge_add(m, "0", in, sizeof in - 1, &st);
	expo_merge_render(m, &out);
	buf_add(&out, "", 1);
	cr_expect_eq(st.malformed, 2);
	cr_expect_eq(st.malformed_line, 2);
	cr_expect_str_eq(out.data,
	    "# TYPE m untyped\nm{worker=\"0\"} 1\n"
	    "# TYPE o untyped\no{worker=\"0\"} 3\n");
	buf_finish(&out);
	expo_merge_free(m);
}

Test(expo, no_trailing_newline)
{
	expect1("# TYPE m gauge\nm{a=\"b\"} 1 123",
	    "# TYPE m gauge\nm{worker=\"0\",a=\"b\"} 1 123\n");
}

Test(expo, garbage)
{
	const char *in[] = {
		"<html><body>502 Bad Gateway</body></html>\n",
		"\x01\x02\xff\xfe{}}}{{\"\"\n=== 1\n",
	};
	struct expo_stats st[2];
	int rc[2];
	char *out = merge_n(in, 2, st, rc);

	cr_expect_eq(rc[0], -1);
	cr_expect_eq(rc[1], -1);
	cr_expect_eq(st[0].malformed, 1);
	cr_expect_eq(st[1].malformed, 2);
	cr_expect_str_eq(out, "");
	free(out);
}

Test(expo, empty_input)
{
	const char *in[] = { "", "\n\n", "# just a comment" };
	struct expo_stats st[3];
	int rc[3];
	char *out = merge_n(in, 3, st, rc);

	cr_expect_eq(rc[0], 0);
	cr_expect_eq(rc[1], 0);
	cr_expect_eq(rc[2], 0);
	cr_expect_eq(st[0].lines, 0);
	cr_expect_eq(st[1].lines, 2);
	cr_expect_eq(st[2].malformed, 0);
	cr_expect_str_eq(out, "");
	free(out);
}

Test(expo, type_conflict)
{
	const char *in[] = {
		"# TYPE m counter\nm 1\n# TYPE ok gauge\nok 1\n",
		"# TYPE m gauge\nm{a=\"1\"} 2\nm{a=\"2\"} 3\n"
		"# TYPE ok gauge\nok 2\n",
	};
	struct expo_stats st[2];
	char *out = merge_n(in, 2, st, NULL);

	cr_expect_eq(st[0].type_conflicts, 0);
	cr_expect_eq(st[1].type_conflicts, 1);
	cr_expect_eq(st[1].dropped, 2);
	cr_expect_eq(st[1].samples, 1);
	cr_expect_str_eq(st[1].conflict, "m");
	cr_expect_str_eq(out,
	    "# TYPE m counter\n"
	    "m{worker=\"0\"} 1\n"
	    "# TYPE ok gauge\n"
	    "ok{worker=\"0\"} 1\n"
	    "ok{worker=\"1\"} 2\n");
	free(out);
}

/* Names a parser would file under another family clash too. */
Test(expo, name_conflicts)
{
	const char *in[] = {
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n"
		"h_sum 1\nh_created 5\n"
		"c_count 3\n",
		"h_bucket{le=\"1\"} 5\n"
		"# TYPE c summary\nc_count 1\nc_sum 2\n"
		"# TYPE h_created gauge\nh_created 6\n",
	};
	struct expo_stats st[2];
	char *out = merge_n(in, 2, st, NULL);

	cr_expect_eq(st[0].type_conflicts, 0);
	cr_expect_eq(st[1].type_conflicts, 3);
	cr_expect_eq(st[1].dropped, 4);
	cr_expect_eq(st[1].samples, 0);
	cr_expect_str_eq(out,
	    "# TYPE h histogram\n"
	    "h_bucket{worker=\"0\",le=\"1\"} 1\n"
	    "h_count{worker=\"0\"} 1\n"
	    "h_sum{worker=\"0\"} 1\n"
	    "h_created{worker=\"0\"} 5\n"
	    "# TYPE c_count untyped\n"
	    "c_count{worker=\"0\"} 3\n");
	free(out);
}

Test(expo, duplicate_type)
{
	struct expo_stats st;
	char *out = merge1("# TYPE m gauge\n# TYPE m counter\n# TYPE m gauge\n"
			   "m 1\n",
	    &st);

	cr_expect_eq(st.malformed, 2);
	cr_expect_eq(st.malformed_line, 2);
	cr_expect_str_eq(out, "# TYPE m gauge\nm{worker=\"0\"} 1\n");
	free(out);
}

Test(expo, type_after_samples)
{
	struct expo_stats st;
	char *out = merge1("# TYPE s summary\ns_sum 1\nm 1\n"
			   "# TYPE m gauge\n# TYPE s_sum gauge\n",
	    &st);

	cr_expect_eq(st.malformed, 2);
	cr_expect_eq(st.malformed_line, 4);
	cr_expect_str_eq(out,
	    "# TYPE s summary\ns_sum{worker=\"0\"} 1\n"
	    "# TYPE m untyped\nm{worker=\"0\"} 1\n");
	free(out);
}

Test(expo, help_after_samples)
{
	struct expo_stats st;
	char *out = merge1("# TYPE m gauge\nm 1\n# HELP m Late help.\n"
			   "# HELP m Second help.\n",
	    &st);

	cr_expect_eq(st.malformed, 1);
	cr_expect_eq(st.malformed_line, 4);
	cr_expect_str_eq(out,
	    "# HELP m Late help.\n# TYPE m gauge\nm{worker=\"0\"} 1\n");
	free(out);
}

Test(expo, label_cap)
{
	struct buf in = { 0 };
	struct expo_stats st;
	char label[32], *out;
	int i, n;

	for (n = EXPO_LABELS_MAX; n <= EXPO_LABELS_MAX + 1; n++) {
		buf_add(&in, "m{", 2);
		for (i = 0; i < n; i++) {
			snprintf(label, sizeof label, "l%d=\"v\",", i);
			buf_add(&in, label, strlen(label));
		}
		buf_add(&in, "} 1\n", 4);
	}
	buf_add(&in, "", 1);
	out = merge1(in.data, &st);
	cr_expect_eq(st.samples, 1);
	cr_expect_eq(st.malformed, 1);
	cr_expect_eq(st.malformed_line, 2);
	free(out);
	buf_finish(&in);
}

Test(expo, bad_names_and_values)
{
	static const char *const bad[] = {
		"1m 1",
		"m-x 1",
		"m{1a=\"x\"} 1",
		"m{a:b=\"x\"} 1",
		"m{__name__=\"x\"} 1",
		"m{a=\"1\",a=\"2\"} 1",
		"m{a=\"\xff\"} 1",
		"m{a=\"\xed\xa0\x80\"} 1",
		"m{a=\"\xc0\xaf\"} 1",
		"m 1e400",
		"m 0x10",
		"m 1_000",
		"m 1e",
		"m .",
		"m +nan",
		"m",
		"m ",
		"m{}",
		"m1",
		"m 1 9223372036854775808",
		"m 1 -9223372036854775809",
		"m 1 1.5",
		"m 1 2 3",
		"# TYPE m bogus",
		"# TYPE m COUNTER",
		"# TYPE m gauge extra",
		"# HELP 1m x",
		"# HELP m{} x",
		"# HELP m bad \xff utf8",
	};
	struct buf in = { 0 };
	struct expo_stats st;
	size_t i;
	char *out;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		buf_add(&in, bad[i], strlen(bad[i]));
		buf_add(&in, "\n", 1);
	}
	buf_add(&in, "", 1);
	out = merge1(in.data, &st);
	cr_expect_eq(st.malformed, sizeof bad / sizeof bad[0]);
	cr_expect_eq(st.samples, 0);
	cr_expect_str_eq(out, "");
	free(out);
	buf_finish(&in);
}

Test(expo, bad_le_and_quantile)
{
	const char *in[] = {
		"# TYPE h histogram\nh_bucket{le=\"bad\"} 1\n"
		"# TYPE s summary\ns{quantile=\"x\"} 1\ns{quantile=\"\\n\"} 1\n",
		"h_bucket{le=\"bad\"} 2\n",
	};
	struct expo_stats st[2];
	char *out = merge_n(in, 2, st, NULL);

	/* The bad lines created no family, so worker 1's h_bucket is free. */
	cr_expect_eq(st[0].malformed, 3);
	cr_expect_eq(st[1].malformed, 0);
	cr_expect_eq(st[1].type_conflicts, 0);
	cr_expect_str_eq(out,
	    "# TYPE h_bucket untyped\n"
	    "h_bucket{worker=\"1\",le=\"bad\"} 2\n");
	free(out);
}

/* promtool, the reference parser, accepts what we render */

static const char clean_scrape[] =
    "# HELP python_gc_objects_collected_total Objects collected during gc\n"
    "# TYPE python_gc_objects_collected_total counter\n"
    "python_gc_objects_collected_total{generation=\"0\"} 405.0\n"
    "python_gc_objects_collected_total{generation=\"1\"} 144.0\n"
    "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
    "# TYPE process_resident_memory_bytes gauge\n"
    "process_resident_memory_bytes 2.2511616e+07\n"
    "# HELP http_requests_total HTTP requests handled.\n"
    "# TYPE http_requests_total counter\n"
    "http_requests_total{code=\"200\",method=\"get\"} 17.0\n"
    "# HELP http_requests_created HTTP requests handled.\n"
    "# TYPE http_requests_created gauge\n"
    "http_requests_created{code=\"200\",method=\"get\"} "
    "1.7958394708559299e+09\n"
    "# HELP inflight_requests In flight.\\nSecond line, \\\\ backslash.\n"
    "# TYPE inflight_requests gauge\n"
    "inflight_requests 3.0\n"
    "# HELP request_latency_seconds Request latency.\n"
    "# TYPE request_latency_seconds histogram\n"
    "request_latency_seconds_bucket{handler=\"/api\\\"x\\\"\","
    "le=\"0.005\"} 1.0\n"
    "request_latency_seconds_bucket{handler=\"/api\\\"x\\\"\","
    "le=\"+Inf\"} 5.0\n"
    "request_latency_seconds_count{handler=\"/api\\\"x\\\"\"} 5.0\n"
    "request_latency_seconds_sum{handler=\"/api\\\"x\\\"\"} 13.943\n"
    "# HELP request_latency_seconds_created Request latency.\n"
    "# TYPE request_latency_seconds_created gauge\n"
    "request_latency_seconds_created{handler=\"/api\\\"x\\\"\"} 1.79e+09\n"
    "# HELP payload_bytes Payload size.\n"
    "# TYPE payload_bytes summary\n"
    "payload_bytes{quantile=\"0.5\"} 512.0\n"
    "payload_bytes_count 2.0\n"
    "payload_bytes_sum 2560.0\n"
    "# HELP build_info Build information.\n"
    "# TYPE build_info gauge\n"
    "build_info{commit=\"abc\\ndef\",version=\"1.2.3\"} 1.0 1700000000000\n";

Test(expo, promtool_clean)
{
	const char *in[] = { clean_scrape, clean_scrape, clean_scrape,
		clean_scrape };
	struct expo_stats st[4];
	char *out, *said;
	size_t i;
	int rc;

	if (access(PROMTOOL, X_OK) != 0)
		cr_skip_test(PROMTOOL " is not installed");
	out = merge_n(in, 4, st, NULL);
	for (i = 0; i < 4; i++) {
		cr_expect_eq(st[i].malformed, 0);
		cr_expect_eq(st[i].type_conflicts, 0);
	}
	rc = promtool_check(clean_scrape, &said);
	cr_expect_eq(rc, 0, "promtool exit %d: %s", rc, said);
	free(said);
	rc = promtool_check(out, &said);
	cr_expect_eq(rc, 0, "promtool exit %d: %s\non:\n%s", rc, said, out);
	free(said);
	free(out);
}

/* Hostile scrapes may give lint warnings (exit 3), never errors (exit 1). */
Test(expo, promtool_hostile)
{
	const char *in[] = {
		"# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_created 5\n"
		"m 1\n# TYPE m gauge\n# HELP m Late.\n# HELP m Again.\n"
		"c_count 3\nx{worker=\"w\",exported_worker=\"e\"} NaN\n",
		"h_bucket{le=\"1\"} 5\n# TYPE c summary\nc_count 1\n"
		"# TYPE h_created gauge\nh_created 6\n# TYPE m counter\nm 2\n"
		"x{a=\"\\q\"} 1\n<html>\n# TYPE y gauge\n# TYPE y gauge\ny 1",
		"# TYPE x summary\nx{quantile=\"0.5\"} 1\nx_sum 1\nx_count 1\n"
		"# TYPE h_bucket counter\nh_bucket 1\n"
		"# HELP y Why.\n# TYPE y gauge\ny{a=\"\xc3\xa9\\n\"} -Inf -1\n"
		"# TYPE z gauge\nz{k=\"a\"} -inf\nz{k=\"b\"} nan +7\n"
		"z{k=\"c\"} Infinity\nz{k=\"d\"} 4.9e-324 007\n"
		"z{k=\"e\"} 123456789012345678901234567890.5e-3\n"
		"z{k=\"f\"} 1.7976931348623157e308\nz{k=\"g\"} .5\n",
	};
	char *out, *said;
	int rc;

	if (access(PROMTOOL, X_OK) != 0)
		cr_skip_test(PROMTOOL " is not installed");
	out = merge_n(in, 3, NULL, NULL);
	rc = promtool_check(out, &said);
	cr_expect(rc == 0 || rc == 3, "promtool exit %d: %s\non:\n%s", rc, said,
	    out);
	free(said);
	free(out);
}

/* Caps: what one worker may put in one scrape */

Test(expo, names_cap, .timeout = 30)
{
	struct buf in = { 0 };
	struct expo_stats st;
	char line[64], *out, *p;
	size_t i, families = 0;
	int n;

	for (i = 0; i < EXPO_NAMES_MAX + 100; i++) {
		n = snprintf(line, sizeof line, "n%zu 1\n", i);
		buf_add(&in, line, (size_t)n);
	}
	buf_add(&in, "n0 2\n# comment\n\n", sizeof "n0 2\n# comment\n\n" - 1);
	buf_add(&in, "", 1);
	out = merge1(in.data, &st);
	cr_expect_eq(st.samples, EXPO_NAMES_MAX);
	cr_expect_eq(st.capped, 103, "the lines left, counted, not read");
	cr_expect_eq(st.malformed, 0);
	for (p = out; (p = strstr(p, "# TYPE ")) != NULL; p++)
		families++;
	cr_expect_eq(families, EXPO_NAMES_MAX);
	free(out);
	buf_finish(&in);
}

Test(expo, names_cap_counts_help_and_type)
{
	struct buf in = { 0 };
	struct expo_stats st;
	char line[80], *out;
	size_t i;
	int n;

	for (i = 0; i < EXPO_NAMES_MAX; i++) {
		n = snprintf(line, sizeof line, "# TYPE t%zu gauge\n", i);
		buf_add(&in, line, (size_t)n);
	}
	buf_add(&in, "t0 1\nx 1\n", sizeof "t0 1\nx 1\n" - 1);
	buf_add(&in, "", 1);
	out = merge1(in.data, &st);
	cr_expect_eq(st.samples, 0, "the names were all spent on TYPE lines");
	cr_expect_eq(st.capped, 2);
	cr_expect_str_eq(out, "");
	free(out);
	buf_finish(&in);
}

Test(expo, series_cap, .timeout = 30)
{
	struct buf in = { 0 };
	struct expo_stats st;
	char *out;
	size_t i;

	buf_add(&in, "# TYPE s gauge\n", sizeof "# TYPE s gauge\n" - 1);
	for (i = 0; i < EXPO_SERIES_MAX + 5; i++)
		buf_add(&in, "s 1\n", sizeof "s 1\n" - 1);
	buf_add(&in, "# HELP s late\n \r\n\nbad line\n",
	    sizeof "# HELP s late\n \r\n\nbad line\n" - 1);
	buf_add(&in, "", 1);
	out = merge1(in.data, &st);
	cr_expect_eq(st.samples, EXPO_SERIES_MAX);
	cr_expect_eq(st.capped, 9, "5 samples and 4 lines, not read");
	cr_expect_eq(st.malformed, 0, "past the cap lines are not read");
	cr_expect_eq(st.lines, EXPO_SERIES_MAX + 10);
	cr_expect(strncmp(out, "# TYPE s gauge\ns{worker=\"0\"} 1\n", 31) == 0);
	free(out);
	buf_finish(&in);
}

/* Type-conflict drops count towards the series cap: they were work. */
Test(expo, series_cap_counts_dropped, .timeout = 30)
{
	struct buf in[2] = { { 0 }, { 0 } };
	struct expo_stats st[2];
	const char *texts[2];
	char *out;
	size_t i;

	buf_add(&in[0], "c 1\n", sizeof "c 1\n" - 1);
	buf_add(&in[1], "# TYPE c gauge\n", sizeof "# TYPE c gauge\n" - 1);
	for (i = 0; i < EXPO_SERIES_MAX + 3; i++)
		buf_add(&in[1], "c 1\n", sizeof "c 1\n" - 1);
	buf_add(&in[0], "", 1);
	buf_add(&in[1], "", 1);
	texts[0] = in[0].data;
	texts[1] = in[1].data;
	out = merge_n(texts, 2, st, NULL);
	cr_expect_eq(st[1].dropped, EXPO_SERIES_MAX);
	cr_expect_eq(st[1].capped, 3);
	free(out);
	buf_finish(&in[0]);
	buf_finish(&in[1]);
}

/* How many lines of text the reader refuses. */
static int
reader_fails(const char *text)
{
	struct expo_reader *r = expo_reader_create(text, strlen(text));
	struct expo_line l;
	int rc, fails = 0;

	while ((rc = expo_reader_next(r, &l)) != 0)
		fails += rc == -1;
	expo_reader_free(r);
	return fails;
}

/* The reader: one line at a time, each sample with its family. */
Test(expo_reader, lines_and_families)
{
	const char *text = "# HELP h Latency.\n"
			   "# TYPE h histogram\n"
			   "h_bucket{le=\"1\",a=\"x\\\"y\"} 2\n"
			   "h_count 2\r\n"
			   "\n"
			   "# a comment\n"
			   "# TYPE c_total counter\n"
			   "c_total 1e3 1700000000000\n"
			   "# TYPE s summary\n"
			   "s_total 4\n"
			   "loose 5\n";
	struct expo_reader *r = expo_reader_create(text, strlen(text));
	struct expo_line l;

	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.kind, EXPO_LINE_HELP);
	cr_assert_eq(l.familylen, 1);
	cr_assert_eq(l.helplen, 8);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.kind, EXPO_LINE_TYPE);
	cr_assert_eq(l.type, EXPO_HISTOGRAM);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.kind, EXPO_LINE_SAMPLE);
	cr_assert_eq(l.type, EXPO_HISTOGRAM);
	cr_assert_eq(l.familylen, 1, "h_bucket belongs to h");
	cr_assert_eq(l.namelen, 8);
	cr_assert_eq(l.nlabels, 2);
	cr_assert_eq(l.labels[1].valuelen, 4, "escaped as on the wire");
	cr_assert_eq(strtod(l.valuetext, NULL), 2);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(strtod(l.valuetext, NULL), 2, "CRLF");
	cr_assert_eq(l.valuelen, 1);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.kind, EXPO_LINE_BLANK);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.kind, EXPO_LINE_COMMENT);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.type, EXPO_COUNTER);
	cr_assert_eq(strtod(l.valuetext, NULL), 1000);
	cr_assert_eq(l.valuelen, 3);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.type, EXPO_UNTYPED, "a summary owns no _total");
	cr_assert_eq(l.familylen, 7);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(l.type, EXPO_UNTYPED);
	cr_assert_eq(l.lineno, 11);
	cr_assert_eq(expo_reader_next(r, &l), 0);
	cr_assert_eq(expo_reader_next(r, &l), 0);
	expo_reader_free(r);
}

Test(expo_reader, malformed_lines_are_reported_and_skipped)
{
	static const char *const bad[] = {
		"x{a=\"1\" 1",
		"x{a=\"1\",a=\"2\"} 1",
		"x 1 2 3",
		"x one",
		"x 1e999",
		"x{__name__=\"y\"} 1",
		"# TYPE x counter\n# TYPE x gauge",
		"# TYPE x frobnicator",
		"# HELP x bad \\escape",
		"# TYPE h histogram\nh_bucket{le=\"high\"} 1",
		"x{a=\"\xff\"} 1",
		"x 1 99999999999999999999",
	};
	struct expo_reader *r;
	struct expo_line l;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(reader_fails(bad[i]), 1, "%s", bad[i]);
	/* a NUL byte, and a line over the cap */
	r = expo_reader_create("x\0 1\ny 2\n", 9);
	cr_assert_eq(expo_reader_next(r, &l), -1);
	cr_assert_eq(expo_reader_next(r, &l), 1);
	cr_assert_eq(strtod(l.valuetext, NULL), 2);
	expo_reader_free(r);
	{
		size_t n = EXPO_LINE_MAX + 10;
		char *big = malloc(n);

		memset(big, 'a', n);
		r = expo_reader_create(big, n);
		cr_assert_eq(expo_reader_next(r, &l), -1);
		cr_assert_eq(expo_reader_next(r, &l), 0);
		expo_reader_free(r);
		free(big);
	}
}

/* What the merge refuses, the reader refuses too. */
Test(expo_reader, refuses_what_the_merge_refuses)
{
	static const char *const bad[] = {
		"# HELP x a\n# HELP x b\n",
		"x 1\n# TYPE x counter\n",
		"# TYPE h histogram\nh_sum 1\n# TYPE h summary\n",
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(reader_fails(bad[i]), 1, "%s", bad[i]);
}
