/*
 * Tests for value.c: sample values and timestamps as Prometheus' parsers
 * take them (Go's strconv.ParseFloat and ParseInt), the edges of the
 * double range, and hostile text.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "promfork.h"

static int
parse(const char *s)
{
	return value_parse(s, strlen(s));
}

Test(value, decimals)
{
	static const char *const good[] = { "0", "-0", "+0", "1", "1.0", "5.",
		".5", "-.5", "+7", "00012.500", "1e3", "1E+3", "-0.5e-3",
		"1.5E300", "0.10000000000000001",
		"123456789012345678901234567890", "0e999999999999999999",
		"0.0e-99999", "4.9e-324", "1e-400", "1.7976931348623157e308",
		"179769313486231570000000000000e279", "0.00001e313" };
	size_t i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_expect_eq(parse(good[i]), 0, "%s refused", good[i]);
}

Test(value, specials_any_case)
{
	static const char *const good[] = { "Inf", "+Inf", "-Inf", "inf",
		"-INF", "Infinity", "+infinity", "-InFiNiTy", "NaN", "nan",
		"NAN" };
	size_t i;

	for (i = 0; i < sizeof good / sizeof good[0]; i++)
		cr_expect_eq(parse(good[i]), 0, "%s refused", good[i]);
}

Test(value, bad)
{
	static const char *const bad[] = { "", "+", "-", ".", "+.", "e1", ".e1",
		"1e", "1e+", "1e-", "1.2.3", "1..2", "--1", "+-1", "1-", "0x10",
		"0x1p3", "1_000", " 1", "1 ", "1,5", "+nan", "-NaN", "nanx",
		"in", "infinit", "infinityy", "Inf1", "1f", "1e1.5", "\xff",
		/* out of range is an error in Go, so here */
		"1e309", "-1e309", "1.8e308", "1.7976931348623159e308",
		"1e99999999999999999999", "1000000000000000000000e300",
		"0.000001e315" };
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_expect_eq(parse(bad[i]), -1, "%s taken", bad[i]);
}

Test(value, length_is_honoured)
{
	cr_expect_eq(value_parse("12x", 2), 0, "only the first two bytes");
	cr_expect_eq(value_parse("1e309", 4), 0, "1e30");
	cr_expect_eq(value_parse("nan", 2), -1, "na");
	cr_expect_eq(value_parse(NULL, 0), -1);
}

/* Decimals around the top of the range agree with strtod. */
Test(value, range_edge_agrees_with_strtod)
{
	char s[64];
	double v;
	int d, k;

	for (k = 300; k <= 312; k++) {
		for (d = 1; d <= 99; d++) {
			snprintf(s, sizeof s, "%d.%de%d", d / 10, d % 10, k);
			errno = 0;
			v = strtod(s, NULL);
			cr_expect_eq(parse(s), isinf(v) ? -1 : 0, "%s", s);
			snprintf(s, sizeof s, "-%de%d", d, k - 1);
			v = strtod(s, NULL);
			cr_expect_eq(parse(s), isinf(v) ? -1 : 0, "%s", s);
		}
	}
}

/* A long run of digits: the exponent is counted, not overflowed. */
Test(value, long_digit_runs)
{
	char *s = malloc(70000);

	memset(s, '9', 400);
	s[400] = '\0';
	cr_expect_eq(parse(s), -1, "400 digits: 1e400");
	memset(s, '0', 69990);
	s[0] = '0';
	s[1] = '.';
	s[69990] = '1';
	s[69991] = '\0';
	cr_expect_eq(parse(s), 0, "underflow is no error");
	snprintf(s + 69991, 9, "e70300");
	cr_expect_eq(parse(s), -1, "1e310 written long");
	snprintf(s + 69991, 9, "e70000");
	cr_expect_eq(parse(s), 0, "1e11 written long");
	free(s);
}

Test(value, timestamps)
{
	long long ts;

	cr_assert_eq(value_timestamp_parse("1700000000000", 13, &ts), 0);
	cr_expect_eq(ts, 1700000000000LL);
	cr_assert_eq(value_timestamp_parse("+7", 2, &ts), 0);
	cr_expect_eq(ts, 7);
	cr_assert_eq(value_timestamp_parse("-5", 2, &ts), 0);
	cr_expect_eq(ts, -5);
	cr_assert_eq(value_timestamp_parse("007", 3, &ts), 0);
	cr_expect_eq(ts, 7);
	cr_assert_eq(value_timestamp_parse("9223372036854775807", 19, &ts), 0);
	cr_expect_eq(ts, LLONG_MAX);
	cr_assert_eq(value_timestamp_parse("-9223372036854775808", 20, &ts), 0);
	cr_expect_eq(ts, LLONG_MIN);
}

Test(value, bad_timestamps)
{
	static const char *const bad[] = { "", "+", "-", "1.5", "1e3", " 1",
		"1 ", "0x1", "9223372036854775808", "-9223372036854775809",
		"99999999999999999999999", "NaN", "Inf", "1_0" };
	long long ts = 42;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_expect_eq(value_timestamp_parse(bad[i], strlen(bad[i]), &ts),
		    -1, "%s taken", bad[i]);
		cr_expect_eq(ts, 42, "%s: untouched on error", bad[i]);
	}
}
