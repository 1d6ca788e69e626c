/*
 * Slot continuity: the carried totals of every slot of the pool (carry.c),
 * when a lifetime's values join them, how long a slot with no live worker
 * keeps serving them, and the order of scrapes.  The registry owns one and
 * tells it when a lease ends; the proxy and the fan-out ask it for the
 * carry of a slot they serve.  Pure logic: time is passed in.
 */
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

struct continuity *
continuity_create(size_t slots, const struct continuity_config *cfg)
{
	struct continuity *ct = xcalloc(1, sizeof *ct);

	ct->on = cfg->on;
	ct->hold_ms = cfg->hold_ms;
	ct->limits.max_series = cfg->max_series;
	ct->nslots = slots;
	ct->carries = xcalloc(slots, sizeof *ct->carries);
	ct->until_ms = xcalloc(slots, sizeof *ct->until_ms);
	return ct;
}

void
continuity_free(struct continuity *ct)
{
	size_t s;

	if (ct == NULL)
		return;
	for (s = 0; s < ct->nslots; s++)
		carry_free(ct->carries[s]);
	free(ct->carries);
	free(ct->until_ms);
	free(ct);
}

/* A stamp for a scrape starting now: later scrapes get greater ones. */
uint64_t
continuity_stamp(struct continuity *ct)
{
	return ++ct->stamp;
}

static struct carry *
continuity_slot(struct continuity *ct, int slot)
{
	if (slot < 0 || (size_t)slot >= ct->nslots)
		return NULL;
	if (ct->carries[slot] == NULL)
		ct->carries[slot] = carry_create(&ct->limits);
	return ct->carries[slot];
}

/*
 * A lifetime on slot ended at now_ms.  final is its last answer (the
 * retire scrape, else the last scrape promfork made of it; NULL when there
 * was none): its counters join the slot's totals, which the slot serves
 * for hold_ms while no worker holds it.  Returns the malformed lines of
 * final that were skipped.
 */
size_t
continuity_end(struct continuity *ct, int slot, const char *final, size_t len,
    uint64_t now_ms)
{
	struct carry *c;
	size_t malformed = 0;

	if (!ct->on || (c = continuity_slot(ct, slot)) == NULL)
		return 0;
	if (final != NULL && len > 0)
		carry_add_lifetime(c, final, len, &malformed);
	else
		carry_end_lifetime(c);
	ct->until_ms[slot] = now_ms + (uint64_t)ct->hold_ms;
	ct->lifetimes++;
	if (ct->limits.dropped > ct->dropped_logged) {
		log_warnx("slot %d: %llu counter series over "
			  "--carry-max-series %zu are not carried",
		    slot, ct->limits.dropped - ct->dropped_logged,
		    ct->limits.max_series);
		ct->dropped_logged = ct->limits.dropped;
	}
	return malformed;
}

/*
 * The carry to serve slot with, NULL when there is nothing carried.  live:
 * a worker holds the slot now; without one, the carry lasts until its hold
 * time has passed, and is forgotten then.
 */
struct carry *
continuity_carry(struct continuity *ct, int slot, int live, uint64_t now_ms)
{
	struct carry *c;

	if (!ct->on || slot < 0 || (size_t)slot >= ct->nslots ||
	    (c = ct->carries[slot]) == NULL || carry_empty(c))
		return NULL;
	if (!live && now_ms > ct->until_ms[slot]) {
		log_info("slot %d: carried totals of %zu series forgotten "
			 "after --carry-hold",
		    slot, carry_series(c));
		carry_clear(c);
		return NULL;
	}
	return c;
}

/*
 * Takes up slot's totals from text (as continuity_render_slot wrote them)
 * after a restart, held from now_ms as if its last lifetime ended then.
 */
int
continuity_adopt(struct continuity *ct, int slot, const char *text, size_t len,
    uint64_t now_ms)
{
	struct carry *c;

	if (!ct->on || (c = continuity_slot(ct, slot)) == NULL)
		return -1;
	if (carry_add_lifetime(c, text, len, NULL) != 0)
		return -1;
	ct->until_ms[slot] = now_ms + (uint64_t)ct->hold_ms;
	return 0;
}

/* Appends slot's finished lifetimes' totals as an exposition; 0 when
 * there are none. */
size_t
continuity_render_slot(struct continuity *ct, int slot, struct buf *out)
{
	size_t before = out->len;

	if (!ct->on || slot < 0 || (size_t)slot >= ct->nslots ||
	    ct->carries[slot] == NULL || carry_empty(ct->carries[slot]))
		return 0;
	carry_render_finished(ct->carries[slot], out);
	return out->len - before;
}
