/* The query of /api/v1/history, as a client sends it. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *cause = NULL;
	time_t since;

	if (history_parse_query((const char *)data, size, &since, &cause) != 0)
		free(cause);
	else if (since < 0 || since > HISTORY_SINCE_MAX)
		abort();
	return 0;
}
