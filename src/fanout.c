/*
 * The fan-out scrape: GET /workers/metrics scrapes every live worker at
 * once and answers with one exposition, every sample labelled with its
 * worker, for setups that allow one target per host or pod.  Each worker
 * gets the same absolute deadline, so the answer never waits longer than
 * it; a worker that failed, timed out or sent garbage shows up as
 * promfork_worker_up 0 rather than going missing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "promfork.h"

struct fanout {
	struct registry *reg;
	uint64_t stamp; /* when the scrapes started, for the carries */
	struct http_conn *conn;
	struct collect *collect;
	struct fanout_scratch *scratch;
	struct buf *bodies; /* per worker, in slot order */
	size_t nworkers;
};

/* The single teardown path of a fan-out request. */
static void
fanout_free(struct fanout *f)
{
	size_t i;

	if (f->conn != NULL)
		http_conn_on_close(f->conn, NULL, NULL);
	collect_cancel(f->collect);
	for (i = 0; i < f->nworkers; i++)
		buf_finish(&f->bodies[i]);
	free(f->bodies);
	free(f);
}

/*
 * Adds one worker's scrape to the merge, with its slot's carried totals
 * when it has some; 1 when it counts as up.  *merged: its answer went in.
 */
static int
fanout_merge_worker(struct fanout *f, struct expo_merge *m,
    const struct collect_item *it, struct buf *body, size_t *malformed,
    size_t *dropped, int *merged)
{
	struct expo_stats st;
	struct lease *l;
	struct carry *carry;
	char name[16];
	int rc;

	*malformed = *dropped = 0;
	*merged = 0;
	if (!it->ok || it->status != 200)
		return 0;
	/* A lifetime that ended meanwhile is in its slot's totals now. */
	l = registry_find_lease(f->reg, it->worker, it->pid, it->starttime);
	if (l == NULL)
		return 1;
	(void)snprintf(name, sizeof name, "%d", it->worker);
	if ((carry = registry_carry(f->reg, it->worker, 1)) != NULL)
		rc = carry_merge_add(carry, f->stamp, m, name,
		    body->data != NULL ? body->data : "", body->len,
		    &f->scratch->carried, &st);
	else
		rc = expo_merge_add(m, name,
		    body->data != NULL ? body->data : "", body->len, &st);
	*merged = 1;
	/* The slot's final values, should this lifetime end unannounced. */
	if (rc == 0)
		lease_keep_body(l, f->stamp, body);
	*malformed = st.malformed;
	*dropped = st.dropped + st.capped;
	if (st.malformed > 0)
		log_warnx("worker %d: %zu malformed metrics lines dropped, "
			  "the first at line %zu",
		    it->worker, st.malformed, st.malformed_line);
	if (st.type_conflicts > 0)
		log_warnx("worker %d: %zu metric families typed unlike "
			  "another worker's (first: %s); %zu samples dropped",
		    it->worker, st.type_conflicts, st.conflict, st.dropped);
	if (st.capped > 0)
		log_warnx("worker %d: over the caps of %d series or %d names "
			  "a scrape; %zu lines left unread",
		    it->worker, EXPO_SERIES_MAX, EXPO_NAMES_MAX, st.capped);
	return rc == 0;
}

static void
fanout_family(struct buf *out, const char *name, const char *type,
    const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A gauge family of one count per worker. */
static void
fanout_counts(struct buf *out, const struct fanout *f,
    const struct collect_item *items, const char *name, const char *help,
    const size_t *counts)
{
	size_t i;

	fanout_family(out, name, "gauge", help);
	for (i = 0; i < f->nworkers; i++)
		buf_printf(out, "%s{worker=\"%d\"} %zu\n", name,
		    items[i].worker, counts[i]);
}

/* Merges what arrived and answers; the connection is ours until then. */
static void
fanout_reply(struct fanout *f, const struct collect_item *items)
{
	struct http_conn *c = f->conn;
	struct fanout_scratch *fs = f->scratch;
	struct buf *out = &fs->out;
	size_t i, *malformed, *dropped;
	unsigned char *merged;
	struct carry *carry;
	char name[16];
	int *up, m;

	if (fs->merge == NULL)
		fs->merge = expo_merge_create();
	expo_merge_reset(fs->merge);
	out->len = 0;
	up = xcalloc(f->nworkers + 1, sizeof *up);
	malformed = xcalloc(f->nworkers + 1, sizeof *malformed);
	dropped = xcalloc(f->nworkers + 1, sizeof *dropped);
	merged = xcalloc(f->reg->pool.size, 1);
	for (i = 0; i < f->nworkers; i++) {
		up[i] = fanout_merge_worker(f, fs->merge, &items[i],
		    &f->bodies[i], &malformed[i], &dropped[i], &m);
		merged[items[i].worker] = (unsigned char)m;
	}
	/*
	 * Slots whose worker did not answer, or that have none now, serve
	 * their carried totals: their counters stay where they were.
	 */
	for (i = 0; i < f->reg->pool.size; i++) {
		if (merged[i] ||
		    (carry = registry_carry(f->reg, (int)i,
			 registry_find_worker(f->reg, (int)i) != NULL)) == NULL)
			continue;
		fs->carried.len = 0;
		carry_begin(carry, f->stamp);
		carry_render(carry, &fs->carried);
		(void)snprintf(name, sizeof name, "%d", (int)i);
		expo_merge_add(fs->merge, name,
		    fs->carried.data != NULL ? fs->carried.data : "",
		    fs->carried.len, NULL);
	}
	free(merged);
	expo_merge_render(fs->merge, out);

	fanout_family(out, "promfork_worker_up", "gauge",
	    "1 when the worker answered this scrape with metrics, else 0.");
	for (i = 0; i < f->nworkers; i++)
		buf_printf(out, "promfork_worker_up{worker=\"%d\"} %d\n",
		    items[i].worker, up[i]);
	fanout_family(out, "promfork_worker_scrape_duration_seconds", "gauge",
	    "How long scraping the worker took in this scrape.");
	for (i = 0; i < f->nworkers; i++)
		buf_printf(out,
		    "promfork_worker_scrape_duration_seconds"
		    "{worker=\"%d\"} %.6f\n",
		    items[i].worker, items[i].seconds);
	fanout_counts(out, f, items, "promfork_worker_scrape_malformed_lines",
	    "Lines of the worker's answer dropped as malformed in this "
	    "scrape.",
	    malformed);
	fanout_counts(out, f, items, "promfork_worker_scrape_dropped_series",
	    "Samples of the worker's answer dropped in this scrape: past the "
	    "per-worker caps, or of a family another worker typed otherwise.",
	    dropped);
	free(up);
	free(malformed);
	free(dropped);

	/* Replying may close the connection: forget it first. */
	http_conn_on_close(c, NULL, NULL);
	f->conn = NULL;
	http_reply(c, 200, HTTP_EXPOSITION_TYPE,
	    out->data != NULL ? out->data : "", out->len);
}

static int
fanout_head_cb(struct collect_item *it, const struct scrape_head *h, void *arg)
{
	struct fanout *f = arg;

	/* The scrape refuses a longer body, so this much is safe to take. */
	if (h->length > 0 && (unsigned long long)h->length <= FANOUT_BODY_MAX)
		buf_reserve(&f->bodies[it->index], (size_t)h->length);
	return 0;
}

static int
fanout_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct fanout *f = arg;
	size_t n = evbuffer_get_length(chunk);

	if (n > 0) {
		buf_add(&f->bodies[it->index], evbuffer_pullup(chunk, -1), n);
		evbuffer_drain(chunk, n);
	}
	return 0;
}

static struct log_limit fanout_log;

static void
fanout_done_cb(struct collect_item *items, size_t n, void *arg)
{
	struct fanout *f = arg;
	size_t i;

	f->collect = NULL; /* it frees itself after this */
	for (i = 0; i < n; i++) {
		if (items[i].ok && items[i].status == 200)
			continue;
		if (!log_limit(&fanout_log, "failed fan-out scrapes"))
			break;
		if (!items[i].ok)
			log_warnx("fan-out scrape of worker %d: %s",
			    items[i].worker, items[i].error);
		else if (items[i].status != 200)
			log_warnx("fan-out scrape of worker %d: HTTP status %d",
			    items[i].worker, items[i].status);
	}
	fanout_reply(f, items);
	fanout_free(f);
}

static void
fanout_client_close_cb(void *arg)
{
	struct fanout *f = arg;

	log_debug("fan-out scrape: client went away");
	f->conn = NULL;
	fanout_free(f);
}

/*
 * Answers GET /workers/metrics once every live worker has answered or
 * deadline_ms (what the listener allows the scrape) has passed.
 */
void
fanout_serve(struct http_conn *c, struct registry *reg, int deadline_ms,
    struct fanout_scratch *fs)
{
	static const struct collect_callbacks cb = { fanout_head_cb,
		fanout_body_cb, fanout_done_cb };
	static const struct collect_config cfg_default = {
		HTTP_EXPOSITION_ACCEPT, 0, FANOUT_BODY_MAX
	};
	struct collect_config cfg = cfg_default;
	struct fanout *f = xcalloc(1, sizeof *f);
	struct lease **leases, *l;

	leases = xcalloc(reg->count + 1, sizeof *leases);
	REGISTRY_FOREACH (l, reg)
		leases[f->nworkers++] = l;
	f->reg = reg;
	f->stamp = registry_stamp(reg);
	f->conn = c;
	f->scratch = fs;
	f->bodies = xcalloc(f->nworkers + 1, sizeof *f->bodies);
	/*
	 * A tenth of Prometheus' timeout is left for the merge and the answer:
	 * with a worker that never answers, a scrape given the whole timeout
	 * reaches Prometheus just after it gave up, and the target is down.
	 */
	cfg.deadline_ms = deadline_ms - deadline_ms / 10;
	f->collect =
	    collect_start(reg->base, reg, leases, f->nworkers, &cfg, &cb, f);
	free(leases);
	http_conn_on_close(c, fanout_client_close_cb, f);
}

void
fanout_scratch_finish(struct fanout_scratch *fs)
{
	expo_merge_free(fs->merge);
	fs->merge = NULL;
	buf_finish(&fs->out);
	buf_finish(&fs->carried);
}
