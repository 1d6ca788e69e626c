/*
 * Fuzzes the sock_diag reply parser of discover.c over an exact-size copy
 * of the input, once as a dump reply (seq 1, any port) and once as a
 * destroy notification (seq 0, a narrow range); every socket it returns
 * must be in the range asked for, and a failure must say why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
fuzz_one(const void *buf, size_t len, uint32_t seq, uint16_t low, uint16_t high)
{
	struct discover_socks socks = { NULL, 0, 0, 0 };
	char *cause = NULL;
	size_t i;
	int done = 0, rc;

	rc = discover_parse_diag(buf, len, seq, low, high, &socks, &done,
	    &cause);
	if ((rc == 0) != (cause == NULL))
		abort();
	for (i = 0; i < socks.n; i++) {
		if (socks.v[i].port < low || socks.v[i].port > high)
			abort();
	}
	free(cause);
	discover_socks_finish(&socks);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *copy = xmalloc(size > 0 ? size : 1);

	memcpy(copy, data, size);
	fuzz_one(copy, size, 1, 1, 65535);
	fuzz_one(copy, size, 0, 9400, 9463);
	free(copy);
	return 0;
}
