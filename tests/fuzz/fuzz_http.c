/* The HTTP request parser, with small limits so every cap is reached. */
#include <stdint.h>
#include <stdlib.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_limits lim = {
		.header_max = 512,
		.body_max = 128,
		.deadline_ms = 1000,
		.conns_max = 1,
	};
	struct http_request req;
	size_t used = 0, off = 0;
	int status, rc;

	/* Parse pipelined requests one after another, as a connection does. */
	while (off < size) {
		rc = http_request_parse((const char *)data + off, size - off,
		    &lim, &req, &used, &status);
		if (rc != 1)
			break;
		if (used == 0 || used > size - off)
			abort();
		http_request_header(&req, "Content-Length");
		http_request_finish(&req);
		off += used;
	}
	return 0;
}
