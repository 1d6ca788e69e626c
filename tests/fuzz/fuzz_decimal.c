/* Decimal numbers: options, ids in request paths, pids in /proc. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *cause = NULL;
	long long v;

	if (decimal_parse_n((const char *)data, size, 0, LLONG_MAX, &v,
		&cause) != 0)
		free(cause);
	cause = NULL;
	s = xstrndup((const char *)data, size);
	if (decimal_parse(s, 1, 65535, &v, &cause) == 0 && (v < 1 || v > 65535))
		abort();
	free(cause);
	free(s);
	return 0;
}
