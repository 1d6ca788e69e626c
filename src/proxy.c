/*
 * The per-worker proxy: GET /workers/N/metrics is passed to the port of
 * live worker N on loopback and its answer streamed back byte for byte, for
 * hosts and containers that expose one port.  The worker is looked up in
 * the registry, so only a live registered worker's own port can be reached,
 * always at PROXY_WORKER_PATH; nothing from the request picks the address.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "promfork.h"

#define PROXY_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct proxy {
	struct http_conn *conn;
	struct registry *reg;
	struct scrape *scrape;
	int worker;
	pid_t pid;
	unsigned long long starttime;
	int started; /* the response head has been sent */
};

/* The single teardown path of a proxied request. */
static void
proxy_free(struct proxy *p)
{
	if (p->conn != NULL)
		http_conn_on_close(p->conn, NULL, NULL);
	scrape_cancel(p->scrape);
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

static int
proxy_head_cb(const struct scrape_head *h, void *arg)
{
	struct proxy *p = arg;
	int status = h->status;

	/* 1xx and other oddities are not passed on as they are. */
	if (status < 200 || status > 599)
		status = 502;
	http_reply_stream(p->conn, status,
	    h->content_type[0] != '\0' ? h->content_type : PROXY_CONTENT_TYPE,
	    h->length);
	p->started = 1;
	return 0;
}

static int
proxy_body_cb(struct evbuffer *chunk, void *arg)
{
	struct proxy *p = arg;

	http_reply_write(p->conn, chunk);
	return 0;
}

static struct log_limit proxy_log;

static void
proxy_done_cb(const struct scrape_result *r, void *arg)
{
	struct proxy *p = arg;
	struct http_conn *c = p->conn;
	struct lease *l;

	p->scrape = NULL; /* it frees itself after this */
	if ((l = scrape_lease(p->reg, p->worker, p->pid, p->starttime)) != NULL)
		scrape_record(l, r);
	/* Ending the reply may close the connection: we are done with it. */
	http_conn_on_close(c, NULL, NULL);
	p->conn = NULL;
	if (r->error != NULL && log_limit(&proxy_log, "failed proxied scrapes"))
		log_warnx("proxy to worker %d: %s", p->worker, r->error);
	if (r->error == NULL)
		http_reply_end(c);
	else if (p->started)
		http_reply_abort(c, r->error);
	else {
		http_reply_error(c, r->timed_out ? 504 : 502, "worker %d: %s",
		    p->worker, r->error);
	}
	proxy_free(p);
}

/* Answers GET /workers/N/metrics, now or when the worker has answered. */
void
proxy_serve(struct http_conn *c, const struct http_request *req,
    struct registry *reg, int worker, int deadline_ms)
{
	static const struct scrape_callbacks cb = { proxy_head_cb,
		proxy_body_cb, proxy_done_cb };
	struct lease *l = registry_find_worker(reg, worker);
	struct proxy *p;

	if (l == NULL) {
		http_reply_error(c, 404, "no live worker %d", worker);
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->conn = c;
	p->reg = reg;
	p->worker = worker;
	p->pid = l->pid;
	p->starttime = l->starttime;
	p->scrape = scrape_start(reg->base, l->port, PROXY_WORKER_PATH,
	    http_request_header(req, "Accept"),
	    scrape_deadline(req, deadline_ms), PROXY_BODY_MAX, &cb, p);
	if (p->scrape == NULL) {
		free(p);
		http_reply_error(c, 500, "cannot scrape worker %d", worker);
		return;
	}
	http_conn_on_close(c, proxy_client_close_cb, p);
}
