/*
 * Fuzzes the --listen ADDR:PORT parser (web.c): an accepted address is one
 * promfork can bind, an IPv4 or IPv6 socket address.
 */
#include <stdint.h>
#include <stdlib.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char *s, *cause = NULL;

	s = xstrndup((const char *)data, size);
	if (web_parse_listen(s, &ss, &len, &cause) == 0) {
		if ((ss.ss_family != AF_INET && ss.ss_family != AF_INET6) ||
		    len == 0 || len > sizeof ss || cause != NULL)
			abort();
	} else if (cause == NULL)
		abort();
	free(cause);
	free(s);
	return 0;
}
