/*
 * The listener's byte budget: how much memory the answers being built
 * may hold at once, all requests together (the fan-out's worker bodies
 * as they arrive, its merged answer and the gzip of it until the last
 * client has taken them).  Over it, a new fan-out is refused with 503
 * and a worker's body stops being read, instead of promfork growing
 * until the kernel kills it.  Pure bookkeeping, for tests.
 */
#include "promfork.h"

void
budget_init(struct budget *b, size_t max)
{
	b->max = max;
	b->used = b->peak = 0;
	b->refused = b->stopped = 0;
}

/* Takes n bytes; -1 (and nothing taken) when they do not fit. */
int
budget_take(struct budget *b, size_t n)
{
	if (n > b->max || b->used > b->max - n)
		return -1;
	b->used += n;
	if (b->used > b->peak)
		b->peak = b->used;
	return 0;
}

/* Counts n bytes already held (an answer built), even past the max: new
 * answers then wait until it has been taken. */
void
budget_hold(struct budget *b, size_t n)
{
	b->used += n;
	if (b->used > b->peak)
		b->peak = b->used;
}

void
budget_give(struct budget *b, size_t n)
{
	if (n > b->used)
		fatalx("budget: %zu bytes given back, %zu taken", n, b->used);
	b->used -= n;
}

/* Is all of it taken?  Then no new answer is begun. */
int
budget_full(const struct budget *b)
{
	return b->used >= b->max;
}
