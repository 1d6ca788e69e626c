/*
 * Fuzzes the /proc/PID/fd link parser of discover.c over an exact-size,
 * unterminated copy of the input: a socket it accepts has an inode that
 * is not 0, and a malformed socket link must say why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = xmalloc(size > 0 ? size : 1), *cause = NULL;
	uint32_t inode = 0;
	int rc;

	memcpy(copy, data, size);
	rc = discover_parse_fdlink(copy, size, &inode, &cause);
	if (rc == 0 && (inode == 0 || size > 64))
		abort();
	if ((rc == -1) != (cause != NULL) || rc < -1 || rc > 1)
		abort();
	free(cause);
	free(copy);
	return 0;
}
