/*
 * Fuzzes the --web.config.file parser (webconfig.c, libyaml underneath):
 * a file is accepted with a configuration or refused with a cause naming
 * the file, never both, never a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct webconfig *wc;
	char *cause = NULL;
	size_t i;

	wc = webconfig_parse((const char *)data, size, "/fuzz/web.yml", &cause);
	if (wc != NULL) {
		if (cause != NULL || wc->min_version > wc->max_version)
			abort();
		for (i = 0; i < wc->nusers; i++) {
			if (!webconfig_hash_valid(wc->users[i].hash))
				abort();
		}
		for (i = 0; i < wc->nheaders; i++) {
			if (strpbrk(wc->headers[i].value, "\r\n") != NULL)
				abort();
		}
		webconfig_free(wc);
	} else if (cause == NULL || strncmp(cause, "/fuzz/web.yml", 13) != 0)
		abort();
	free(cause);
	return 0;
}
