/*
 * The one parser of decimal integers, for options, ids in request paths,
 * pids in /proc and headers: digits only (no sign, no space, no 0x), within
 * the caller's bounds, without strtol's locale and errno dance.  Callers
 * that speak to a user add their own words; *cause says what was wrong.
 */
#include <limits.h>
#include <string.h>

#include "promfork.h"

/* Parses the len bytes at s; min and max are within 0..LLONG_MAX. */
int
decimal_parse_n(const char *s, size_t len, long long min, long long max,
    long long *v, char **cause)
{
	long long n = 0;
	size_t i;
	int over = 0;

	if (len == 0) {
		if (cause != NULL)
			*cause = xstrdup("no digits");
		return -1;
	}
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9') {
			if (cause != NULL)
				*cause = xstrdup("not a decimal number");
			return -1;
		}
		if (n > (LLONG_MAX - (s[i] - '0')) / 10)
			over = 1; /* go on: a later non-digit is the error */
		else
			n = n * 10 + (s[i] - '0');
	}
	if (over || n < min || n > max) {
		if (cause != NULL)
			xasprintf(cause, "not from %lld to %lld", min, max);
		return -1;
	}
	*v = n;
	return 0;
}

/* Parses the string s. */
int
decimal_parse(const char *s, long long min, long long max, long long *v,
    char **cause)
{
	return decimal_parse_n(s, strlen(s), min, max, v, cause);
}
