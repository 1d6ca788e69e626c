/*
 * Fuzzes the sample value and timestamp parsers against libc: the input is
 * one value.  What value_parse takes strtod must read whole, finite unless
 * it spells an infinity or NaN; a plain decimal (digits, point, exponent)
 * it refuses that strtod reads whole must overflow.  value_timestamp_parse
 * must agree with strtoll on [+-]digits.  Any disagreement aborts.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Only the characters of a decimal: strtod's grammar is Go's there. */
static int
fuzz_value_decimal_chars(const char *s, size_t len, const char *more)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if ((s[i] < '0' || s[i] > '9') && strchr(more, s[i]) == NULL)
			return 0;
	}
	return 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	char *copy, *end;
	long long ts, want;
	double v;
	int ok;

	if (size > 4096)
		return 0;
	copy = malloc(size + 1);
	if (copy == NULL)
		abort();
	if (size > 0)
		memcpy(copy, s, size);
	copy[size] = '\0';

	ok = value_parse(size > 0 ? s : "", size) == 0;
	errno = 0;
	v = strtod(copy, &end);
	if (ok && (end != copy + size || memchr(copy, '\0', size) != NULL))
		abort();
	if (ok && isinf(v) && strpbrk(copy, "iI") == NULL)
		abort();
	if (!ok && size > 0 && end == copy + size &&
	    fuzz_value_decimal_chars(copy, size, ".eE+-") && !isinf(v))
		abort();

	ok = value_timestamp_parse(size > 0 ? s : "", size, &ts) == 0;
	errno = 0;
	want = strtoll(copy, &end, 10);
	if (size > 0 && end == copy + size && errno == 0 &&
	    fuzz_value_decimal_chars(copy, size, "+-") && (!ok || ts != want))
		abort();
	if (ok && (end != copy + size || errno != 0 || ts != want))
		abort();
	free(copy);
	return 0;
}
