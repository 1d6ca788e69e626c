/*
 * Fuzzes the carried totals: the input is split at form feeds into up to
 * three lifetimes' final answers and one live answer, which the carry
 * rewrites.  When the live answer has no malformed line, the rewritten one
 * must read back without one and without a family clash, or the fuzzer
 * aborts; a tiny cap makes the drop paths run too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* False when a line could exceed the parser's caps once rewritten. */
static int
fuzz_carry_checkable(const char *p, size_t len)
{
	struct expo_reader *r = expo_reader_create(p, len);
	struct expo_line l;
	int rc, ok = 1;

	while (ok && (rc = expo_reader_next(r, &l)) != 0)
		ok = rc == 1 && l.len < EXPO_LINE_MAX - 64;
	expo_reader_free(r);
	return ok;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct carry_limits limits = { .max_series = 64 };
	const char *p = (const char *)data, *end, *ff;
	struct carry *c;
	struct expo_merge *m;
	struct buf out = { 0 };
	struct expo_stats st;
	size_t i;

	if (p == NULL)
		p = "";
	end = p + size;
	c = carry_create(&limits);
	for (i = 0; i < 3; i++) {
		if ((ff = memchr(p, '\f', (size_t)(end - p))) == NULL)
			break;
		carry_add_lifetime(c, p, (size_t)(ff - p), NULL);
		p = ff + 1;
	}
	carry_rewrite(c, 1, p, (size_t)(end - p), &out);
	if (limits.series != carry_series(c))
		abort();
	m = expo_merge_create();
	expo_merge_add(m, "0", out.len != 0 ? out.data : "", out.len, &st);
	if (fuzz_carry_checkable(p, (size_t)(end - p)) &&
	    (st.malformed != 0 || st.type_conflicts != 0))
		abort();
	expo_merge_free(m);
	buf_finish(&out);
	carry_free(c);
	if (limits.series != 0)
		abort();
	return 0;
}
