/* The /proc/PID/stat and /proc/PID/status parsers. */
#include <stdint.h>
#include <stdlib.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proc_stat st;
	struct proc_creds pc;
	char *cause = NULL;

	if (proc_stat_parse((const char *)data, size, &st, &cause) != 0)
		free(cause);
	else if (st.pid <= 0 || st.ppid < 0)
		abort();
	cause = NULL;
	if (proc_creds_parse((const char *)data, size, &pc, &cause) != 0)
		free(cause);
	else if (pc.ngroups > PROC_GROUPS_MAX)
		abort();
	return 0;
}
