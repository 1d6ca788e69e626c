/*
 * The per-worker proxy: GET /workers/N/metrics is passed to the port of
 * live worker N on loopback and its answer streamed back byte for byte, for
 * hosts and containers that expose one port.  The worker is looked up in
 * the registry, so only a live registered worker's own port can be reached,
 * always at COLLECT_PATH; nothing from the request picks the address.
 *
 * With slot continuity the worker is asked for the text format, which the
 * carry reads, and its answer is kept on its lease (the lifetime's final
 * values, should it end unannounced).  While the slot has nothing carried
 * the answer still streams as it comes; once it has, the answer is taken
 * whole and served with the carried totals added, and a slot with no
 * worker serves its carried totals alone for the hold time.
 *
 * What the worker says its answer is does not reach a browser as it is:
 * only the exposition types pass, so that no worker serves HTML on the
 * listener's origin.  A slow client holds the worker back: its answer is
 * not read while too much of it waits for the client.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "promfork.h"

struct proxy {
	struct registry *reg;
	struct http_conn *conn;
	struct collect *collect;
	int worker;
	int started; /* the response head has been sent */
	int keep; /* continuity: keep the answer on the lease */
	int rewrite; /* the slot has carried totals: answer at the end */
	int status; /* the worker's */
	uint64_t stamp;
	struct buf body;
	int paused; /* the worker is not read until the client catches up */
	int gzip; /* the client accepts gzip */
};

/*
 * The Content-Type a worker's answer goes out with: its own when it is
 * an exposition type in plain tokens (no comma, quote or other byte a
 * browser might read a second type from), else the text format.
 */
const char *
proxy_content_type(const char *type)
{
	static const char *const ok[] = { "text/plain",
		"application/openmetrics-text" };
	size_t i, n = strcspn(type, ";");

	while (n > 0 && type[n - 1] == ' ')
		n--;
	for (i = 0; type[i] != '\0'; i++) {
		if (strchr(
			"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-._/+=; ",
			type[i]) == NULL)
			return HTTP_EXPOSITION_TYPE;
	}
	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		if (n == strlen(ok[i]) && strncasecmp(type, ok[i], n) == 0)
			return type;
	}
	return HTTP_EXPOSITION_TYPE;
}

/* The single teardown path of a proxied request. */
static void
proxy_free(struct proxy *p)
{
	if (p->conn != NULL) {
		http_conn_on_close(p->conn, NULL, NULL);
		http_conn_on_drain(p->conn, 0, NULL, NULL);
	}
	collect_cancel(p->collect);
	buf_finish(&p->body);
	free(p);
}

static void
proxy_client_close_cb(void *arg)
{
	struct proxy *p = arg;

	log_debug("proxy to worker %d: client went away", p->worker);
	p->conn = NULL;
	proxy_free(p);
}

/* The client took enough: the worker is read again. */
static void
proxy_client_drain_cb(void *arg)
{
	struct proxy *p = arg;

	if (p->paused) {
		p->paused = 0;
		collect_pause(p->collect, 0);
	}
}

static int
proxy_head_cb(struct collect_item *it, const struct scrape_head *h, void *arg)
{
	struct proxy *p = arg;
	int status = h->status;

	p->status = h->status;
	if (p->rewrite)
		return 0;
	/* 1xx and other oddities are not passed on as they are. */
	if (status < 200 || status > 599)
		status = 502;
	/* asked for only when the client accepts it: passed through */
	if (h->gzip)
		http_conn_encoding(p->conn, "gzip");
	http_reply_stream(p->conn, status, proxy_content_type(h->content_type),
	    h->length);
	http_conn_on_drain(p->conn, PROXY_UNSENT_LOW, proxy_client_drain_cb, p);
	p->started = 1;
	return 0;
}

static int
proxy_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct proxy *p = arg;
	size_t n = evbuffer_get_length(chunk);

	if (p->keep && n > 0)
		buf_add(&p->body, evbuffer_pullup(chunk, -1), n);
	if (p->rewrite) {
		/* taken whole, answered at the end: nothing waits for the
		 * client meanwhile */
		evbuffer_drain(chunk, n);
		return 0;
	}
	http_reply_write(p->conn, chunk);
	if (!p->paused && http_conn_unsent(p->conn) > PROXY_UNSENT_MAX) {
		p->paused = 1;
		collect_pause(p->collect, 1);
	}
	return 0;
}

static struct log_limit proxy_log;

/* Answers with slot's carried totals alone, or 404 when it has none. */
static void
proxy_carried(struct http_conn *c, struct registry *reg, int worker,
    uint64_t stamp)
{
	struct carry *carry;
	struct buf out = { NULL, 0, 0 };

	carry = registry_carry(reg, worker,
	    registry_find_worker(reg, worker) != NULL);
	if (carry == NULL) {
		http_reply_error(c, 404, "no live worker %d", worker);
		return;
	}
	carry_begin(carry, stamp);
	carry_render(carry, &out);
	http_reply(c, 200, HTTP_EXPOSITION_TYPE,
	    out.data != NULL ? out.data : "", out.len);
	buf_finish(&out);
}

/* The whole answer of a slot with carried totals, with them added. */
static void
proxy_rewrite(struct proxy *p, struct http_conn *c, struct lease *l)
{
	struct carry *carry = registry_carry(p->reg, p->worker, 1);
	struct buf out = { NULL, 0, 0 };

	if (carry == NULL) { /* forgotten meanwhile: the answer as it is */
		gzip_reply(c, p->gzip, 200, HTTP_EXPOSITION_TYPE,
		    p->body.data != NULL ? p->body.data : "", p->body.len);
		return;
	}
	carry_rewrite(carry, p->stamp, p->body.data != NULL ? p->body.data : "",
	    p->body.len, &out);
	gzip_reply(c, p->gzip, 200, HTTP_EXPOSITION_TYPE,
	    out.data != NULL ? out.data : "", out.len);
	buf_finish(&out);
}

static void
proxy_done_cb(struct collect_item *items, size_t n, void *arg)
{
	struct proxy *p = arg;
	struct http_conn *c = p->conn;
	struct collect_item *it = &items[0];
	struct lease *l;
	int whole = it->ok && p->status == 200;

	p->collect = NULL; /* it frees itself after this */
	l = registry_find_lease(p->reg, it->worker, it->pid, it->starttime);
	/* Ending the reply may close the connection: we are done with it. */
	http_conn_on_close(c, NULL, NULL);
	http_conn_on_drain(c, 0, NULL, NULL);
	p->conn = NULL;
	if (!it->ok && log_limit(&proxy_log, "failed proxied scrapes"))
		log_warnx("proxy to worker %d: %s", p->worker, it->error);
	if (p->rewrite && whole && l != NULL)
		proxy_rewrite(p, c, l);
	else if (p->rewrite && whole) /* its lifetime ended meanwhile */
		proxy_carried(c, p->reg, p->worker, p->stamp);
	else if (p->rewrite && it->ok)
		http_reply_error(c, 502, "worker %d answered %d", p->worker,
		    p->status);
	else if (it->ok)
		http_reply_end(c);
	else if (p->started)
		http_reply_abort(c, it->error);
	else {
		http_reply_error(c, it->timed_out ? 504 : 502, "worker %d: %s",
		    p->worker, it->error);
	}
	if (p->keep && whole && l != NULL)
		lease_keep_body(l, p->stamp, &p->body);
	proxy_free(p);
}

/*
 * Answers GET /workers/N/metrics, now or when the worker has answered;
 * deadline_ms is what the listener allows the scrape.
 */
void
proxy_serve(struct http_conn *c, const struct http_request *req,
    struct registry *reg, int worker, int deadline_ms)
{
	static const struct collect_callbacks cb = { proxy_head_cb,
		proxy_body_cb, proxy_done_cb };
	struct lease *l = registry_find_worker(reg, worker);
	struct collect_config cfg;
	struct proxy *p;

	if (l == NULL) {
		proxy_carried(c, reg, worker, registry_stamp(reg));
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->reg = reg;
	p->conn = c;
	p->worker = worker;
	p->stamp = registry_stamp(reg);
	p->keep = reg->cont->on;
	p->rewrite = registry_carry(reg, worker, 1) != NULL;
	cfg.accept = p->keep ? HTTP_EXPOSITION_ACCEPT
			     : http_request_header(req, "Accept");
	cfg.deadline_ms = deadline_ms;
	cfg.body_max = PROXY_BODY_MAX;
	p->gzip = gzip_wanted(req);
	/* The carry reads the text: with continuity promfork compresses. */
	cfg.gzip = p->gzip && !p->keep;
	p->collect = collect_start(reg->base, reg, &l, 1, &cfg, &cb, p);
	http_conn_on_close(c, proxy_client_close_cb, p);
}
