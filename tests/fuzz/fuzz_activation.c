/*
 * Fuzzes the LISTEN_PID / LISTEN_FDS reader (activation.c): the input is
 * the two values, split at the first newline.  An accepted pair gives a
 * count within the bound; a refused one always says why.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *nl, *cause = NULL;
	int n = -1;

	s = xstrndup((const char *)data, size);
	if ((nl = strchr(s, '\n')) != NULL)
		*nl++ = '\0';
	if (activation_parse(s, nl, 4242, 16, &n, &cause) == 0) {
		if (n < 0 || n > 16 || cause != NULL)
			abort();
	} else if (cause == NULL)
		abort();
	free(cause);
	free(s);
	return 0;
}
