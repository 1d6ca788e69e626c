/*
 * The fan-out scrape: GET /workers/metrics scrapes every live worker at
 * once and answers with one exposition, every sample labelled with its
 * worker, for setups that allow one target per host or pod.  Each worker
 * gets the same absolute deadline, so the answer never waits longer than
 * it; a worker that failed, timed out or sent garbage shows up as
 * promfork_worker_up 0 rather than going missing.
 *
 * One fan-out at a time: a request that arrives while one is in flight
 * joins it and gets the same answer, so that N clients never cost N
 * scrapes of every worker.  The answer is built once (and gzipped once
 * if any client asked for it) and every client's connection refers to
 * that one copy until it has taken it.  What the fan-out holds counts
 * against the listener's byte budget (budget.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "promfork.h"

/* A client waiting for the fan-out in flight. */
struct fanout_waiter {
	struct fanout *f;
	struct http_conn *conn; /* NULL once answered or gone */
	int gzip; /* it accepts gzip */
};

struct fanout {
	struct registry *reg;
	uint64_t stamp; /* when the scrapes started, for the carries */
	struct collect *collect;
	struct fanout_scratch *scratch;
	struct buf *bodies; /* per worker, in slot order */
	size_t *charged; /* per worker: budget taken for its body */
	size_t nworkers;
	struct fanout_waiter **waiters;
	size_t nwaiters;
	size_t waiting; /* waiters still connected */
};

/* One built answer, shared by its clients until the last has taken it. */
struct fanout_answer {
	struct fanout_scratch *scratch;
	struct buf plain;
	struct buf gz;
	size_t held; /* budget */
	size_t refs;
};

/* The single teardown path of a fan-out. */
static void
fanout_free(struct fanout *f)
{
	struct budget *b = f->scratch->budget;
	size_t i;

	for (i = 0; i < f->nwaiters; i++) {
		if (f->waiters[i]->conn != NULL)
			http_conn_on_close(f->waiters[i]->conn, NULL, NULL);
		free(f->waiters[i]);
	}
	free(f->waiters);
	if (f->scratch->inflight == f)
		f->scratch->inflight = NULL;
	collect_cancel(f->collect);
	for (i = 0; i < f->nworkers; i++) {
		buf_finish(&f->bodies[i]);
		if (b != NULL)
			budget_give(b, f->charged[i]);
	}
	free(f->bodies);
	free(f->charged);
	free(f);
}

/* A client has the answer, or went away: the last frees the answer and
 * gives its buffer back to the scratch, warm, when that has none. */
static void
fanout_answer_unref(const void *data, size_t len, void *arg)
{
	struct fanout_answer *a = arg;
	struct fanout_scratch *fs = a->scratch;

	if (--a->refs > 0)
		return;
	if (fs->budget != NULL)
		budget_give(fs->budget, a->held);
	if (fs->out.data == NULL)
		fs->out = a->plain;
	else
		buf_finish(&a->plain);
	buf_finish(&a->gz);
	free(a);
}

/* Sends the answer in the scratch's out to every waiter, one copy for
 * all (and one gzipped copy for those that accept it). */
static void
fanout_send(struct fanout *f)
{
	struct fanout_scratch *fs = f->scratch;
	struct fanout_answer *a = xcalloc(1, sizeof *a);
	struct http_conn *c;
	size_t i;
	int gzip = 0;

	a->scratch = fs;
	a->plain = fs->out;
	memset(&fs->out, 0, sizeof fs->out);
	for (i = 0; i < f->nwaiters; i++)
		gzip |= f->waiters[i]->conn != NULL && f->waiters[i]->gzip;
	if (gzip && a->plain.len >= GZIP_MIN &&
	    gzip_compress(a->plain.data, a->plain.len, &a->gz) != 0)
		buf_finish(&a->gz);
	a->held = a->plain.cap + a->gz.cap;
	if (fs->budget != NULL)
		budget_hold(fs->budget, a->held);
	a->refs = 1; /* ours, until every waiter has its reference */
	for (i = 0; i < f->nwaiters; i++) {
		if ((c = f->waiters[i]->conn) == NULL)
			continue;
		/* Replying may close the connection: forget it first. */
		http_conn_on_close(c, NULL, NULL);
		f->waiters[i]->conn = NULL;
		a->refs++;
		if (f->waiters[i]->gzip && a->gz.len > 0) {
			http_conn_encoding(c, "gzip");
			http_reply_ref(c, 200, HTTP_EXPOSITION_TYPE, a->gz.data,
			    a->gz.len, fanout_answer_unref, a);
		} else
			http_reply_ref(c, 200, HTTP_EXPOSITION_TYPE,
			    a->plain.data != NULL ? a->plain.data : "",
			    a->plain.len, fanout_answer_unref, a);
	}
	fanout_answer_unref(NULL, 0, a);
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

/* Merges what arrived and answers every waiter. */
static void
fanout_reply(struct fanout *f, const struct collect_item *items)
{
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
	fanout_send(f);
}

static struct log_limit fanout_budget_log;

/* Takes budget for the body of worker i to grow to len; -1 when over. */
static int
fanout_charge(struct fanout *f, struct collect_item *it, size_t len)
{
	struct budget *b = f->scratch->budget;

	if (b == NULL || len <= f->charged[it->index])
		return 0;
	if (budget_take(b, len - f->charged[it->index]) != 0) {
		b->stopped++;
		if (log_limit(&fanout_budget_log, "fan-out budget stops"))
			log_warnx("fan-out scrape of worker %d: stopped, the "
				  "listener's budget of %zu bytes for answers "
				  "being built is spent",
			    it->worker, b->max);
		return -1;
	}
	f->charged[it->index] = len;
	return 0;
}

static int
fanout_head_cb(struct collect_item *it, const struct scrape_head *h, void *arg)
{
	struct fanout *f = arg;

	/* The scrape refuses a longer body, so this much is safe to take. */
	if (h->length > 0 && (unsigned long long)h->length <= FANOUT_BODY_MAX) {
		if (fanout_charge(f, it, (size_t)h->length) != 0)
			return -1;
		buf_reserve(&f->bodies[it->index], (size_t)h->length);
	}
	return 0;
}

static int
fanout_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct fanout *f = arg;
	size_t n = evbuffer_get_length(chunk);

	if (n > 0) {
		if (fanout_charge(f, it, f->bodies[it->index].len + n) != 0)
			return -1;
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
	f->scratch->inflight = NULL; /* a request from now on scrapes anew */
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
	struct fanout_waiter *w = arg;
	struct fanout *f = w->f;

	log_debug("fan-out scrape: client went away");
	w->conn = NULL;
	/* The last one gone: nobody wants the scrapes any more. */
	if (--f->waiting == 0)
		fanout_free(f);
}

static void
fanout_wait(struct fanout *f, struct http_conn *c, int gzip)
{
	struct fanout_waiter *w = xcalloc(1, sizeof *w);

	w->f = f;
	w->conn = c;
	w->gzip = gzip;
	f->waiters =
	    xreallocarray(f->waiters, f->nwaiters + 1, sizeof *f->waiters);
	f->waiters[f->nwaiters++] = w;
	f->waiting++;
	http_conn_on_close(c, fanout_client_close_cb, w);
}

/*
 * Answers GET /workers/metrics once every live worker has answered or
 * deadline_ms (what the listener allows the scrape) has passed; joins the
 * fan-out in flight when there is one.
 */
void
fanout_serve(struct http_conn *c, const struct http_request *req,
    struct registry *reg, int deadline_ms, struct fanout_scratch *fs)
{
	static const struct collect_callbacks cb = { fanout_head_cb,
		fanout_body_cb, fanout_done_cb };
	static const struct collect_config cfg_default = {
		HTTP_EXPOSITION_ACCEPT, 0, FANOUT_BODY_MAX, 0
	};
	struct collect_config cfg = cfg_default;
	int gzip = gzip_wanted(req);
	struct fanout *f;
	struct lease **leases, *l;

	if (fs->inflight != NULL) {
		fs->joined++;
		fanout_wait(fs->inflight, c, gzip);
		return;
	}
	if (fs->budget != NULL && budget_full(fs->budget)) {
		fs->budget->refused++;
		http_reply_error(c, 503,
		    "the listener's budget of %zu bytes for answers being "
		    "built is spent: try again when the answers in flight "
		    "have been taken",
		    fs->budget->max);
		return;
	}
	f = xcalloc(1, sizeof *f);
	leases = xcalloc(reg->count + 1, sizeof *leases);
	REGISTRY_FOREACH (l, reg)
		leases[f->nworkers++] = l;
	f->reg = reg;
	f->stamp = registry_stamp(reg);
	f->scratch = fs;
	f->bodies = xcalloc(f->nworkers + 1, sizeof *f->bodies);
	f->charged = xcalloc(f->nworkers + 1, sizeof *f->charged);
	fs->scrapes++;
	fs->inflight = f;
	fanout_wait(f, c, gzip);
	/*
	 * A tenth of Prometheus' timeout is left for the merge and the answer:
	 * with a worker that never answers, a scrape given the whole timeout
	 * reaches Prometheus just after it gave up, and the target is down.
	 */
	cfg.deadline_ms = deadline_ms - deadline_ms / 10;
	f->collect =
	    collect_start(reg->base, reg, leases, f->nworkers, &cfg, &cb, f);
	free(leases);
}

void
fanout_scratch_finish(struct fanout_scratch *fs)
{
	if (fs->inflight != NULL)
		fanout_free(fs->inflight);
	expo_merge_free(fs->merge);
	fs->merge = NULL;
	buf_finish(&fs->out);
	buf_finish(&fs->carried);
}
