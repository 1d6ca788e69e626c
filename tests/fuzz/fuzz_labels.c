/* Registration bodies: JSON labels and NAME=VALUE arguments. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct labels ls = { NULL, 0 };
	char *cause = NULL, *arg;
	json_t *j;

	j = json_loadb((const char *)data, size, 0, NULL);
	if (j != NULL) {
		if (labels_from_json(&ls,
			json_object_get(j, "labels") != NULL
			    ? json_object_get(j, "labels")
			    : j,
			&cause) != 0)
			free(cause);
		json_decref(j);
	}
	labels_finish(&ls);
	cause = NULL;
	arg = strndup((const char *)data, size);
	if (arg != NULL && labels_set_arg(&ls, arg, &cause) != 0)
		free(cause);
	free(arg);
	labels_finish(&ls);
	return 0;
}
