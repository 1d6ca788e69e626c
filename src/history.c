/*
 * Each slot's history, a sink of the registry: every resolution seconds,
 * one sample per slot (CPU over the interval and resident memory from
 * /proc, the duration and outcome of a scrape promfork made since the
 * sample before), kept for the last window in one ring per slot that all
 * advance together; and each slot's lifetimes (pid, start, end and how it
 * ended: retired, released, died without retiring), learnt from the
 * registry's changes.  Memory is bounded: a slot costs its ring and
 * HISTORY_LIFETIMES_MAX lifetimes, allocated at its first lease, and no
 * more however long promfork runs or however often workers recycle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "promfork.h"

/* What each lease_end means for a lifetime, for people and for JSON. */
static const char *const history_end_names[LEASE_END_COUNT] = { "died",
	"released", "gone", "shutdown", "retired" };

static void history_sample_cb(evutil_socket_t, short, void *);
static void history_changed_cb(void *);

const char *
history_end_name(int end)
{
	if (end < 0 || end >= LEASE_END_COUNT)
		return "live";
	return history_end_names[end];
}

/*
 * A history of reg's slots.  base NULL: no timer and no listener, for tests
 * that advance it and put samples themselves.
 */
struct history *
history_create(struct event_base *base, struct registry *reg,
    const struct history_config *hc)
{
	struct history *h = xcalloc(1, sizeof *h);
	struct timeval tv = { hc->resolution_s, 0 };
	long v;

	h->reg = reg;
	h->resolution_s = hc->resolution_s;
	h->window_s = hc->window_s;
	if (hc->resolution_s < 1 || hc->window_s < hc->resolution_s ||
	    hc->window_s / hc->resolution_s > HISTORY_SAMPLES_MAX)
		fatalx("history: resolution %d s, window %d s",
		    hc->resolution_s,
		    hc->window_s); /* options.c checked them */
	h->nsamples = (size_t)(hc->window_s / hc->resolution_s);
	h->nslots = reg->pool.size;
	h->slots = xcalloc(h->nslots, sizeof *h->slots);
	memcpy(h->ends_seen, reg->stats.ends, sizeof h->ends_seen);
	h->ticks_per_s = (v = sysconf(_SC_CLK_TCK)) > 0 ? v : 100;
	h->page_kib = (v = sysconf(_SC_PAGESIZE)) > 0 ? v / 1024 : 4;
	if (base == NULL)
		return h;
	registry_listen(reg, history_changed_cb, h);
	history_changed(h); /* leases from before, e.g. a state file's */
	h->ev_sample = event_new(base, -1, EV_PERSIST, history_sample_cb, h);
	if (h->ev_sample == NULL || event_add(h->ev_sample, &tv) != 0)
		fatalx("cannot start the history's timer");
	return h;
}

void
history_free(struct history *h)
{
	size_t s;

	if (h == NULL)
		return;
	if (h->ev_sample != NULL) {
		event_free(h->ev_sample);
		registry_unlisten(h->reg, history_changed_cb, h);
	}
	for (s = 0; s < h->nslots; s++) {
		if (h->slots[s] != NULL)
			free(h->slots[s]->samples);
		free(h->slots[s]);
	}
	free(h->slots);
	free(h);
}

/* What one slot costs, once it has had a lease. */
size_t
history_slot_bytes(const struct history *h)
{
	return sizeof(struct history_slot) +
	    h->nsamples * sizeof(struct history_sample);
}

static struct history_slot *
history_slot(struct history *h, int slot)
{
	struct history_slot *hs;

	if (slot < 0 || (size_t)slot >= h->nslots)
		return NULL;
	if ((hs = h->slots[slot]) == NULL) {
		hs = h->slots[slot] = xcalloc(1, sizeof *hs);
		hs->samples = xcalloc(h->nsamples, sizeof *hs->samples);
	}
	return hs;
}

/* A new lifetime of slot; the oldest is forgotten when the ring is full. */
void
history_lifetime_start(struct history *h, int slot, pid_t pid, time_t now)
{
	struct history_slot *hs = history_slot(h, slot);
	struct history_lifetime *lt;

	if (hs == NULL)
		return;
	if (hs->nlifetimes == HISTORY_LIFETIMES_MAX) {
		hs->lhead = (hs->lhead + 1) % HISTORY_LIFETIMES_MAX;
		hs->nlifetimes--;
		hs->forgotten++;
	}
	lt = &hs->lifetimes[(hs->lhead + hs->nlifetimes) %
	    HISTORY_LIFETIMES_MAX];
	hs->nlifetimes++;
	lt->pid = pid;
	lt->end = -1;
	lt->start = now;
	lt->stop = 0;
	if (!hs->live)
		h->nlive++;
	hs->live = 1;
	hs->have_ticks = 0;
	hs->scrape_seen = 0;
}

/* The live lifetime of slot ends, as end (a lease_end) says. */
void
history_lifetime_end(struct history *h, int slot, int end, time_t now)
{
	struct history_slot *hs = history_slot(h, slot);
	struct history_lifetime *lt;

	if (hs == NULL || !hs->live || hs->nlifetimes == 0)
		return;
	lt = &hs->lifetimes[(hs->lhead + hs->nlifetimes - 1) %
	    HISTORY_LIFETIMES_MAX];
	lt->end = end;
	lt->stop = now;
	hs->live = 0;
	h->nlive--;
	hs->have_ticks = 0;
}

/*
 * Brings the lifetimes in step with the registry.  The registry announces
 * each change as it makes it, so at most one lease has ended since the
 * last call, and the reason counter that moved says how.
 */
void
history_changed(struct history *h)
{
	struct registry *reg = h->reg;
	unsigned long long moved[LEASE_END_COUNT];
	time_t now = time(NULL);
	size_t s, lives = h->nlive, seen = 0, leases = 0;
	int e;

	for (e = 0; e < LEASE_END_COUNT; e++) {
		moved[e] = reg->stats.ends[e] - h->ends_seen[e];
		h->ends_seen[e] = reg->stats.ends[e];
	}
	/* Past the last slot with a lease or a living lifetime there is
	 * nothing to bring in step: stop there, not at the pool's end. */
	for (s = 0; s < h->nslots && (seen < lives || leases < reg->count);
	     s++) {
		struct history_slot *hs = h->slots[s];
		struct lease *l = reg->slots[s];
		const struct history_lifetime *lt;

		leases += l != NULL;
		if (hs != NULL && hs->live) {
			seen++;
			lt = &hs->lifetimes[(hs->lhead + hs->nlifetimes - 1) %
			    HISTORY_LIFETIMES_MAX];
			if (l != NULL && l->pid == lt->pid &&
			    l->starttime == hs->starttime)
				continue;
			for (e = 0; e < LEASE_END_COUNT && moved[e] == 0; e++)
				;
			if (e == LEASE_END_COUNT)
				e = LEASE_END_EXIT; /* unannounced: gone */
			else
				moved[e]--;
			history_lifetime_end(h, (int)s, e, now);
		}
		if (l != NULL) {
			history_lifetime_start(h, (int)s, l->pid, l->created);
			h->slots[s]->starttime = l->starttime;
		}
	}
}

static void
history_changed_cb(void *arg)
{
	history_changed(arg);
}

/* Moves every ring on by one sample, taken at now, blank until put. */
void
history_advance(struct history *h, time_t now)
{
	size_t s;

	for (s = 0; s < h->nslots; s++) {
		if (h->slots[s] != NULL)
			memset(&h->slots[s]->samples[h->head], 0,
			    sizeof(struct history_sample));
	}
	h->head = (h->head + 1) % h->nsamples;
	if (h->filled < h->nsamples)
		h->filled++;
	h->last = now;
}

/* The newest sample of slot, to fill in; NULL for a slot out of range. */
struct history_sample *
history_put(struct history *h, int slot)
{
	struct history_slot *hs = history_slot(h, slot);

	if (hs == NULL || h->filled == 0)
		return NULL;
	return &hs->samples[(h->head + h->nsamples - 1) % h->nsamples];
}

/* How many samples there are, the oldest first. */
size_t
history_count(const struct history *h)
{
	return h->filled;
}

/* Sample i of slot (0: the oldest); NULL when the slot never had one. */
const struct history_sample *
history_at(const struct history *h, int slot, size_t i)
{
	const struct history_slot *hs;

	if (slot < 0 || (size_t)slot >= h->nslots || i >= h->filled ||
	    (hs = h->slots[slot]) == NULL)
		return NULL;
	return &hs->samples[(h->head + h->nsamples - h->filled + i) %
	    h->nsamples];
}

/* When sample i was taken (wall clock). */
time_t
history_time(const struct history *h, size_t i)
{
	return h->last -
	    (time_t)((h->filled - 1 - i) * (size_t)h->resolution_s);
}

size_t
history_lifetimes(const struct history *h, int slot)
{
	if (slot < 0 || (size_t)slot >= h->nslots || h->slots[slot] == NULL)
		return 0;
	return h->slots[slot]->nlifetimes;
}

/* Lifetime i of slot, the oldest kept first. */
const struct history_lifetime *
history_lifetime(const struct history *h, int slot, size_t i)
{
	const struct history_slot *hs;

	if (i >= history_lifetimes(h, slot))
		return NULL;
	hs = h->slots[slot];
	return &hs->lifetimes[(hs->lhead + i) % HISTORY_LIFETIMES_MAX];
}

/* One live lease's sample: /proc, and the scrape since the last one. */
static void
history_sample_lease(struct history *h, struct lease *l, double elapsed)
{
	struct history_sample *smp = history_put(h, l->worker);
	struct history_slot *hs = h->slots[l->worker];
	const struct history_sample *prev;
	struct proc_stat st;
	char *cause = NULL;
	double cpu;

	if (hs == NULL || smp == NULL)
		return;
	smp->flags = HISTORY_SAMPLE_LIVE;
	smp->pid = l->pid;
	prev = h->filled > 1 ? history_at(h, l->worker, h->filled - 2) : NULL;
	if (prev == NULL || !(prev->flags & HISTORY_SAMPLE_LIVE) ||
	    prev->pid != l->pid)
		smp->flags |= HISTORY_SAMPLE_START;
	if (proc_stat_read(l->pid, &st, &cause) == 0 &&
	    st.starttime == l->starttime) {
		unsigned long long ticks = st.utime + st.stime;

		smp->flags |= HISTORY_SAMPLE_RSS;
		smp->rss_kib = st.rss_pages * h->page_kib > UINT32_MAX
		    ? UINT32_MAX
		    : (uint32_t)(st.rss_pages * h->page_kib);
		if (hs->have_ticks && elapsed > 0 && ticks >= hs->ticks) {
			cpu = (double)(ticks - hs->ticks) /
			    (double)h->ticks_per_s / elapsed * 1000.0;
			smp->cpu_milli = cpu > 65535 ? 65535 : (uint16_t)cpu;
			smp->flags |= HISTORY_SAMPLE_CPU;
		}
		hs->ticks = ticks;
		hs->have_ticks = 1;
	}
	free(cause);
	/* A scrape is known by its time: the whole second is close enough. */
	if (l->scrape.when != 0 && l->scrape.when != hs->scrape_seen) {
		hs->scrape_seen = l->scrape.when;
		smp->flags |= HISTORY_SAMPLE_SCRAPED;
		if (l->scrape.ok)
			smp->flags |= HISTORY_SAMPLE_UP;
		smp->scrape_ms = l->scrape.duration_ms > HISTORY_SCRAPE_MS_MAX
		    ? HISTORY_SCRAPE_MS_MAX
		    : (uint16_t)(l->scrape.duration_ms < 0
			      ? 0
			      : l->scrape.duration_ms);
	}
}

/* One sample of every live lease, now. */
void
history_sample(struct history *h)
{
	struct timespec now_mono, c0, c1;
	struct lease *l;
	double elapsed = -1;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	clock_gettime(CLOCK_MONOTONIC, &now_mono);
	if (h->last_mono.tv_sec != 0)
		elapsed = (double)(now_mono.tv_sec - h->last_mono.tv_sec) +
		    (double)(now_mono.tv_nsec - h->last_mono.tv_nsec) / 1e9;
	h->last_mono = now_mono;
	history_advance(h, time(NULL));
	REGISTRY_FOREACH (l, h->reg)
		history_sample_lease(h, l, elapsed);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	h->sample_ns =
	    (unsigned long long)((c1.tv_sec - c0.tv_sec) * 1000000000LL +
		(c1.tv_nsec - c0.tv_nsec));
	h->samplings++;
}

static void
history_sample_cb(evutil_socket_t fd, short events, void *arg)
{
	history_sample(arg);
}

/* The figures above the pictures: now, and over the window. */
void
history_totals(const struct history *h, time_t now, struct history_totals *t)
{
	time_t since = now - h->window_s;
	size_t s, i, used = 0;

	memset(t, 0, sizeof *t);
	for (s = 0; s < h->nslots; s++) {
		const struct history_slot *hs = h->slots[s];
		const struct lease *l;

		if (hs == NULL)
			continue;
		used++;
		if ((l = registry_find_worker(h->reg, (int)s)) != NULL) {
			t->live++;
			/* up unless its last scrape failed */
			if (l->scrape.when == 0 || l->scrape.ok)
				t->up++;
		}
		for (i = 0; i < hs->nlifetimes; i++) {
			const struct history_lifetime *lt =
			    history_lifetime(h, (int)s, i);

			if (lt->end >= 0 && lt->stop >= since)
				t->ends[lt->end]++;
		}
	}
	t->recycles_per_hour =
	    (double)t->ends[LEASE_END_RETIRE] * 3600.0 / (double)h->window_s;
	t->bytes = sizeof *h + h->nslots * sizeof *h->slots +
	    used * history_slot_bytes(h);
}

/*
 * The query of /api/v1/history: empty, or "since=T" with T in seconds
 * since the epoch, for a script that polls and wants only what is newer.
 */
int
history_parse_query(const char *query, size_t len, time_t *since, char **cause)
{
	static const char key[] = "since=";
	long long t;

	*since = 0;
	if (len == 0)
		return 0;
	if (len <= sizeof key - 1 || strncmp(query, key, sizeof key - 1) != 0 ||
	    decimal_parse_n(query + sizeof key - 1, len - (sizeof key - 1), 0,
		HISTORY_SINCE_MAX, &t, NULL) != 0) {
		xasprintf(cause,
		    "the query \"%.*s\" is not understood: give none, or "
		    "since=T with T in seconds since 1970",
		    len > 64 ? 64 : (int)len, query);
		return -1;
	}
	*since = (time_t)t;
	return 0;
}

/* The first sample taken after since. */
static size_t
history_first_after(const struct history *h, time_t since)
{
	size_t i;

	for (i = 0; i < h->filled && history_time(h, i) <= since; i++)
		;
	return i;
}

/* A JSON array of one column of slot's samples from first on; null where
 * it had none. */
static void
history_json_column(const struct history *h, int slot, char column,
    size_t first, struct buf *out)
{
	size_t i;

	buf_add(out, "[", 1);
	for (i = first; i < h->filled; i++) {
		const struct history_sample *smp = history_at(h, slot, i);
		int f = smp != NULL ? smp->flags : 0;

		if (i > first)
			buf_add(out, ",", 1);
		if (column == 'c' && (f & HISTORY_SAMPLE_CPU))
			buf_printf(out, "%.3f", smp->cpu_milli / 1000.0);
		else if (column == 'r' && (f & HISTORY_SAMPLE_RSS))
			buf_printf(out, "%llu",
			    (unsigned long long)smp->rss_kib * 1024);
		else if (column == 's' && (f & HISTORY_SAMPLE_SCRAPED))
			buf_printf(out, "%.3f", smp->scrape_ms / 1000.0);
		else if (column == 'u' && (f & HISTORY_SAMPLE_SCRAPED))
			buf_printf(out, "%d", (f & HISTORY_SAMPLE_UP) ? 1 : 0);
		else if (column == 'p' && (f & HISTORY_SAMPLE_LIVE))
			buf_printf(out, "%d", (int)smp->pid);
		else
			buf_add(out, "null", 4);
	}
	buf_add(out, "]", 1);
}

static void
history_json_slot(const struct history *h, int slot, time_t since,
    struct buf *out)
{
	const struct lease *l = registry_find_worker(h->reg, slot);
	static const char columns[] = "crsup";
	static const char *const names[] = { "cpu", "rss_bytes",
		"scrape_seconds", "up", "pid" };
	json_t *labels;
	char *text;
	size_t i, k = 0, n = history_lifetimes(h, slot),
		  first = history_first_after(h, since);

	buf_printf(out, "{\"worker\":%d,\"port\":%u,\"live\":%s", slot,
	    pool_port(&h->reg->pool, slot), l != NULL ? "true" : "false");
	if (l != NULL) {
		labels = labels_to_json(&l->labels);
		text = json_dumps(labels, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(labels);
		if (text == NULL)
			fatalx("json_dumps");
		buf_printf(out, ",\"pid\":%d,\"labels\":%s", (int)l->pid, text);
		free(text);
	}
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		buf_printf(out, ",\"%s\":", names[i]);
		history_json_column(h, slot, columns[i], first, out);
	}
	buf_printf(out, ",\"lifetimes_forgotten\":%llu,\"lifetimes\":[",
	    h->slots[slot]->forgotten);
	for (i = 0; i < n; i++) {
		const struct history_lifetime *lt =
		    history_lifetime(h, slot, i);

		if (lt->end >= 0 && lt->stop <= since)
			continue;
		buf_printf(out, "%s{\"pid\":%d,\"start\":%lld,", k++ ? "," : "",
		    (int)lt->pid, (long long)lt->start);
		if (lt->end < 0)
			buf_printf(out, "\"end\":null,\"ending\":null}");
		else
			buf_printf(out, "\"end\":%lld,\"ending\":\"%s\"}",
			    (long long)lt->stop, history_end_name(lt->end));
	}
	buf_add(out, "]}", 2);
}

/*
 * /api/v1/history: every slot that has had a lease, in slot order, with
 * the samples taken after since and the lifetimes not ended by then.
 */
void
history_render_json(const struct history *h, time_t now, time_t since,
    struct buf *out)
{
	struct history_totals t;
	size_t s, i, n = 0, first = history_first_after(h, since);

	history_totals(h, now, &t);
	buf_printf(out,
	    "{\"resolution_seconds\":%d,\"window_seconds\":%d,"
	    "\"now\":%lld,\"totals\":{\"workers\":%zu,\"workers_up\":%zu,"
	    "\"recycles_per_hour\":%.2f,\"ends\":{",
	    h->resolution_s, h->window_s, (long long)now, t.live, t.up,
	    t.recycles_per_hour);
	for (i = 0; i < LEASE_END_COUNT; i++)
		buf_printf(out, "%s\"%s\":%llu", i ? "," : "",
		    history_end_name((int)i), t.ends[i]);
	buf_printf(out, "},\"memory_bytes\":%zu},\"times\":[", t.bytes);
	for (i = first; i < h->filled; i++)
		buf_printf(out, "%s%lld", i > first ? "," : "",
		    (long long)history_time(h, i));
	buf_add(out, "],\"workers\":[", 13);
	for (s = 0; s < h->nslots; s++) {
		if (h->slots[s] == NULL)
			continue;
		if (n++ > 0)
			buf_add(out, ",", 1);
		history_json_slot(h, (int)s, since, out);
	}
	buf_add(out, "]}\n", 3);
}
