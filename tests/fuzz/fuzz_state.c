/*
 * The state file of a standalone promfork: state_parse must refuse anything
 * malformed with a message and never crash; what it accepts must render and
 * parse back the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state_entry *e = NULL;
	struct state_carried *c = NULL;
	char *cause = NULL;
	size_t n = 0, i;

	/* The slots' carried totals, read apart from the leases. */
	if (state_parse_carried((const char *)data, size, &c, &n, &cause) !=
	    0) {
		if (cause == NULL || c != NULL || n != 0)
			abort();
		free(cause);
		cause = NULL;
	} else {
		for (i = 0; i < n; i++) {
			if (c[i].worker < 0 || c[i].worker > 65535 ||
			    strlen(c[i].text) > c[i].len)
				abort();
		}
		state_carried_free(c, n);
	}
	n = 0;

	if (state_parse((const char *)data, size, &e, &n, NULL, &cause) != 0) {
		if (cause == NULL || e != NULL || n != 0)
			abort();
		free(cause);
		return 0;
	}
	for (i = 0; i < n; i++) {
		if (e[i].worker < 0 || e[i].worker > 65534 || e[i].port == 0 ||
		    e[i].pid < 2 || (i > 0 && e[i].worker <= e[i - 1].worker))
			abort();
	}
	state_entries_free(e, n);
	return 0;
}
