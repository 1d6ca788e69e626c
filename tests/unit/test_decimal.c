/* decimal.c: digits only, within bounds, overflow refused, and why. */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "promfork.h"

static void
refused(const char *s, long long min, long long max, const char *why)
{
	long long v = 42;
	char *cause = NULL;

	cr_assert_eq(decimal_parse(s, min, max, &v, &cause), -1, "took \"%s\"",
	    s);
	cr_assert_eq(v, 42, "*v is left alone");
	cr_assert(strstr(cause, why) != NULL, "\"%s\": %s", s, cause);
	free(cause);
}

Test(decimal, good_numbers)
{
	long long v;

	cr_assert_eq(decimal_parse("0", 0, 10, &v, NULL), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(decimal_parse("0065535", 1, 65535, &v, NULL), 0);
	cr_assert_eq(v, 65535);
	cr_assert_eq(decimal_parse("9223372036854775807", 0, LLONG_MAX, &v,
			 NULL),
	    0);
	cr_assert_eq(v, LLONG_MAX);
	cr_assert_eq(decimal_parse_n("123abc", 3, 0, 1000, &v, NULL), 0);
	cr_assert_eq(v, 123, "only len bytes are read");
}

Test(decimal, bad_numbers)
{
	refused("", 0, 10, "no digits");
	refused("-1", 0, 10, "not a decimal");
	refused("+1", 0, 10, "not a decimal");
	refused(" 1", 0, 10, "not a decimal");
	refused("1 ", 0, 10, "not a decimal");
	refused("0x10", 0, 100, "not a decimal");
	refused("1.5", 0, 10, "not a decimal");
	refused("11", 0, 10, "not from 0 to 10");
	refused("0", 1, 10, "not from 1 to 10");
	refused("9223372036854775808", 0, LLONG_MAX, "not from");
	refused("99999999999999999999999", 0, LLONG_MAX, "not from");
	refused("99999999999999999999999x", 0, LLONG_MAX, "not a decimal");
	cr_assert_eq(decimal_parse_n("12", 0, 0, 99, &(long long){ 0 }, NULL),
	    -1, "no digits at all");
}
