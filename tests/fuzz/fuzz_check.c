/*
 * Fuzzes the /proc/net/tcp line parser: the input is split into lines as
 * check.c reads them; a parsed line must carry a state that fits two hex
 * digits, else the fuzzer aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size, *nl;
	struct check_sock sk;
	size_t len;
	char *copy;

	/* the whole input as one line, unterminated, exactly its length */
	copy = xmalloc(size > 0 ? size : 1);
	memcpy(copy, data, size);
	if (check_tcp_parse(copy, size, &sk) == 0 &&
	    (sk.state < 0 || sk.state > 0xff))
		abort();
	free(copy);

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		len = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		copy = xmalloc(len);
		memcpy(copy, p, len);
		if (check_tcp_parse(copy, len, &sk) == 0 &&
		    (sk.state < 0 || sk.state > 0xff))
			abort();
		free(copy);
		p += len;
	}
	return 0;
}
