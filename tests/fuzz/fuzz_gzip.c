/*
 * Fuzzes the Accept-Encoding reader (gzip.c): any value gives 0 or 1,
 * within its bounds; an accepted value names gzip, x-gzip or *.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	int rc;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	rc = gzip_accepted(s);
	if (rc != 0 && rc != 1)
		abort();
	if (rc == 1 && strcasestr(s, "gzip") == NULL && strchr(s, '*') == NULL)
		abort();
	free(s);
	return 0;
}
