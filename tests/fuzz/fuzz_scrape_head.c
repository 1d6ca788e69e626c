/*
 * Fuzzes the parser of a worker's response head (scrape.c): whatever it
 * accepts must be consistent with what it was given; and the Content-Type
 * the proxy sends on (proxy.c) is an exposition type a browser reads as
 * one type, never the worker's choice of another.
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
	struct scrape_head h;
	size_t consumed = 0;
	const char *type;
	char *cause = NULL;
	int rc;

	rc = scrape_parse_head((const char *)data, size, &h, &consumed, &cause);
	if (rc == 1) {
		if (consumed == 0 || consumed > size ||
		    consumed > SCRAPE_HEAD_MAX)
			abort();
		if (h.status < 100 || h.status > 999 || h.length < -1)
			abort();
		if (strlen(h.content_type) >= sizeof h.content_type ||
		    strpbrk(h.content_type, "\r\n") != NULL)
			abort();
		type = proxy_content_type(h.content_type);
		if (type != h.content_type &&
		    strcmp(type, HTTP_EXPOSITION_TYPE) != 0)
			abort();
		if (strpbrk(type, ",\"\\<>") != NULL ||
		    (strncasecmp(type, "text/plain", 10) != 0 &&
			strncasecmp(type, "application/openmetrics-text", 28) !=
			    0))
			abort();
	} else if (rc == -1) {
		if (cause == NULL)
			abort();
	} else if (rc != 0 || size > SCRAPE_HEAD_MAX)
		abort();
	free(cause);
	return 0;
}
