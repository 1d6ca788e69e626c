/*
 * The fan-out scrape: GET /workers/metrics scrapes every live worker at
 * once and answers with one exposition, every sample labelled with its
 * worker, for setups that allow one target per host or pod.  Each worker
 * gets the same absolute deadline, so the answer never waits longer than
 * it; a worker that failed, timed out or sent garbage shows up as
 * promfork_worker_up 0 rather than going missing.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "promfork.h"

#define FANOUT_ACCEPT "text/plain;version=0.0.4"
#define FANOUT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct fanout_worker {
	struct fanout *req;
	struct scrape *scrape;
	int worker;
	pid_t pid;
	unsigned long long starttime;
	struct timespec started;
	double seconds; /* how long the scrape took */
	int answered; /* a whole 200 response arrived */
	struct expo_buf body;
};

struct fanout {
	struct http_conn *conn;
	struct registry *reg;
	struct fanout_scratch *scratch;
	struct fanout_worker *workers; /* in slot order */
	size_t nworkers;
	size_t pending;
};

/* The single teardown path of a fan-out request. */
static void
fanout_free(struct fanout *f)
{
	size_t i;

	if (f->conn != NULL)
		http_conn_on_close(f->conn, NULL, NULL);
	for (i = 0; i < f->nworkers; i++) {
		scrape_cancel(f->workers[i].scrape);
		free(f->workers[i].body.data);
	}
	free(f->workers);
	free(f);
}

/* Adds one worker's scrape to the merge; 1 when it counts as up. */
static int
fanout_merge_worker(struct expo_merge *m, struct fanout_worker *fw,
    size_t *malformed)
{
	struct expo_stats st;
	char name[16];
	int rc;

	*malformed = 0;
	if (!fw->answered)
		return 0;
	(void)snprintf(name, sizeof name, "%d", fw->worker);
	rc = expo_merge_add(m, name, fw->body.data != NULL ? fw->body.data : "",
	    fw->body.len, &st);
	*malformed = st.malformed;
	if (st.malformed > 0)
		log_warnx("worker %d: %zu malformed metrics lines dropped, "
			  "the first at line %zu",
		    fw->worker, st.malformed, st.malformed_line);
	if (st.type_conflicts > 0)
		log_warnx("worker %d: %zu metric families typed unlike "
			  "another worker's (first: %s); %zu samples dropped",
		    fw->worker, st.type_conflicts, st.conflict, st.dropped);
	return rc == 0;
}

/* Appends a line promfork writes itself; never longer than 512 bytes. */
static void
fanout_printf(struct expo_buf *out, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		fatalx("fan-out line too long");
	expo_buf_add(out, line, (size_t)n);
}

static void
fanout_family(struct expo_buf *out, const char *name, const char *type,
    const char *help)
{
	fanout_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	    type);
}

/* Merges what arrived and answers; the connection is ours until then. */
static void
fanout_reply(struct fanout *f)
{
	struct http_conn *c = f->conn;
	struct fanout_scratch *fs = f->scratch;
	struct expo_buf *out = &fs->out;
	size_t i, *malformed;
	int *up;

	if (fs->merge == NULL)
		fs->merge = expo_merge_create();
	expo_merge_reset(fs->merge);
	out->len = 0;
	up = xcalloc(f->nworkers + 1, sizeof *up);
	malformed = xcalloc(f->nworkers + 1, sizeof *malformed);
	for (i = 0; i < f->nworkers; i++)
		up[i] = fanout_merge_worker(fs->merge, &f->workers[i],
		    &malformed[i]);
	expo_merge_render(fs->merge, out);

	fanout_family(out, "promfork_worker_up", "gauge",
	    "1 when the worker answered this scrape with metrics, else 0.");
	for (i = 0; i < f->nworkers; i++)
		fanout_printf(out, "promfork_worker_up{worker=\"%d\"} %d\n",
		    f->workers[i].worker, up[i]);
	fanout_family(out, "promfork_worker_scrape_duration_seconds", "gauge",
	    "How long scraping the worker took in this scrape.");
	for (i = 0; i < f->nworkers; i++)
		fanout_printf(out,
		    "promfork_worker_scrape_duration_seconds"
		    "{worker=\"%d\"} %.6f\n",
		    f->workers[i].worker, f->workers[i].seconds);
	fanout_family(out, "promfork_worker_scrape_malformed_lines", "gauge",
	    "Lines of the worker's answer dropped as malformed in this "
	    "scrape.");
	for (i = 0; i < f->nworkers; i++)
		fanout_printf(out,
		    "promfork_worker_scrape_malformed_lines"
		    "{worker=\"%d\"} %zu\n",
		    f->workers[i].worker, malformed[i]);
	free(up);
	free(malformed);

	/* Replying may close the connection: forget it first. */
	http_conn_on_close(c, NULL, NULL);
	f->conn = NULL;
	http_reply(c, 200, FANOUT_CONTENT_TYPE,
	    out->data != NULL ? out->data : "", out->len);
}

static int
fanout_head_cb(const struct scrape_head *h, void *arg)
{
	struct fanout_worker *fw = arg;

	/* The scrape refuses a longer body, so this much is safe to take. */
	if (h->length > 0 && (unsigned long long)h->length <= FANOUT_BODY_MAX)
		expo_buf_reserve(&fw->body, (size_t)h->length);
	return 0;
}

static int
fanout_body_cb(struct evbuffer *chunk, void *arg)
{
	struct fanout_worker *fw = arg;
	size_t n = evbuffer_get_length(chunk);

	if (n > 0) {
		expo_buf_add(&fw->body, evbuffer_pullup(chunk, -1), n);
		evbuffer_drain(chunk, n);
	}
	return 0;
}

static void
fanout_done_cb(const struct scrape_result *r, void *arg)
{
	struct fanout_worker *fw = arg;
	struct fanout *f = fw->req;
	struct timespec now;
	struct lease *l;

	fw->scrape = NULL; /* it frees itself after this */
	clock_gettime(CLOCK_MONOTONIC, &now);
	fw->seconds = (double)(now.tv_sec - fw->started.tv_sec) +
	    (double)(now.tv_nsec - fw->started.tv_nsec) / 1e9;
	fw->answered = r->error == NULL && r->status == 200;
	if (r->error != NULL)
		log_warnx("fan-out scrape of worker %d: %s", fw->worker,
		    r->error);
	else if (r->status != 200)
		log_warnx("fan-out scrape of worker %d: HTTP status %d",
		    fw->worker, r->status);
	if ((l = scrape_lease(f->reg, fw->worker, fw->pid, fw->starttime)) !=
	    NULL)
		scrape_record(l, r);
	if (--f->pending > 0)
		return;
	fanout_reply(f);
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

/* Answers GET /workers/metrics once every live worker has answered. */
void
fanout_serve(struct http_conn *c, const struct http_request *req,
    struct registry *reg, int deadline_ms, struct fanout_scratch *fs)
{
	static const struct scrape_callbacks cb = { fanout_head_cb,
		fanout_body_cb, fanout_done_cb };
	struct fanout *f = xcalloc(1, sizeof *f);
	int ms = scrape_deadline(req, deadline_ms);
	size_t s;

	f->conn = c;
	f->reg = reg;
	f->scratch = fs;
	f->workers = xcalloc(reg->count + 1, sizeof *f->workers);
	for (s = 0; s < reg->pool.size && f->nworkers < reg->count; s++) {
		struct lease *l = reg->slots[s];
		struct fanout_worker *fw;

		if (l == NULL)
			continue;
		fw = &f->workers[f->nworkers++];
		fw->req = f;
		fw->worker = l->worker;
		fw->pid = l->pid;
		fw->starttime = l->starttime;
		clock_gettime(CLOCK_MONOTONIC, &fw->started);
		fw->scrape = scrape_start(reg->base, l->port, PROXY_WORKER_PATH,
		    FANOUT_ACCEPT, ms, FANOUT_BODY_MAX, &cb, fw);
		if (fw->scrape == NULL)
			fatalx("cannot scrape %s", PROXY_WORKER_PATH);
		f->pending++;
	}
	if (f->pending == 0) {
		fanout_reply(f);
		fanout_free(f);
		return;
	}
	http_conn_on_close(c, fanout_client_close_cb, f);
}

void
fanout_scratch_finish(struct fanout_scratch *fs)
{
	expo_merge_free(fs->merge);
	fs->merge = NULL;
	expo_buf_finish(&fs->out);
}
