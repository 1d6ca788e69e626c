/*
 * Fuzzes the exposition merge: the input is split at form feeds into one
 * to three workers' scrapes, merged and rendered.  The rendered text must
 * read back without a malformed line or a type conflict, else the fuzzer
 * aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* False when a rendered line could exceed the parser's caps on its own:
 * the worker label makes an input line near a cap a little longer. */
static int
fuzz_expo_checkable(const struct buf *b)
{
	const char *p, *end, *nl;
	size_t eq, i;

	if (b->len == 0)
		return 1;
	p = b->data;
	end = p + b->len;
	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			return 0;
		if ((size_t)(nl - p) > EXPO_LINE_MAX - 1024)
			return 0;
		for (eq = 0, i = 0; p + i < nl; i++)
			eq += p[i] == '=';
		if (eq >= EXPO_LABELS_MAX)
			return 0;
		p = nl + 1;
	}
	return 1;
}

/* Scrapes are separated by form feeds; a third one takes the rest. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const workers[] = { "0", "1", "w\"2\\\n" };
	const char *p = (const char *)data, *end, *ff;
	struct expo_merge *m;
	struct buf out = { 0 };
	struct expo_stats st;
	size_t i;

	if (p == NULL)
		p = "";
	end = p + size;
	m = expo_merge_create();
	for (i = 0; i < 3 && p != NULL; i++) {
		ff = i < 2 ? memchr(p, '\f', (size_t)(end - p)) : NULL;
		expo_merge_add(m, workers[i], p,
		    (size_t)((ff != NULL ? ff : end) - p), &st);
		p = ff != NULL ? ff + 1 : NULL;
	}
	expo_merge_render(m, &out);
	expo_merge_free(m);

	m = expo_merge_create();
	expo_merge_add(m, "again", out.len != 0 ? out.data : "", out.len, &st);
	if (fuzz_expo_checkable(&out) &&
	    (st.malformed != 0 || st.type_conflicts != 0))
		abort();
	expo_merge_free(m);
	buf_finish(&out);
	return 0;
}
