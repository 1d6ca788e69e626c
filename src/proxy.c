/*
 * The per-worker proxy: GET /workers/N/metrics is passed to the port of
 * live worker N on loopback and its answer streamed back byte for byte, for
 * hosts and containers that expose one port.  The worker is looked up in
 * the registry, so only a live registered worker's own port can be reached,
 * always at COLLECT_PATH; nothing from the request picks the address.
 */
#include <stdlib.h>

#include <event2/buffer.h>

#include "promfork.h"

struct proxy {
	struct http_conn *conn;
	struct collect *collect;
	int worker;
	int started; /* the response head has been sent */
};

/* The single teardown path of a proxied request. */
static void
proxy_free(struct proxy *p)
{
	if (p->conn != NULL)
		http_conn_on_close(p->conn, NULL, NULL);
	collect_cancel(p->collect);
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
proxy_head_cb(struct collect_item *it, const struct scrape_head *h, void *arg)
{
	struct proxy *p = arg;
	int status = h->status;

	/* 1xx and other oddities are not passed on as they are. */
	if (status < 200 || status > 599)
		status = 502;
	http_reply_stream(p->conn, status,
	    h->content_type[0] != '\0' ? h->content_type : HTTP_EXPOSITION_TYPE,
	    h->length);
	p->started = 1;
	return 0;
}

static int
proxy_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct proxy *p = arg;

	http_reply_write(p->conn, chunk);
	return 0;
}

static struct log_limit proxy_log;

static void
proxy_done_cb(struct collect_item *items, size_t n, void *arg)
{
	struct proxy *p = arg;
	struct http_conn *c = p->conn;
	struct collect_item *it = &items[0];

	p->collect = NULL; /* it frees itself after this */
	/* Ending the reply may close the connection: we are done with it. */
	http_conn_on_close(c, NULL, NULL);
	p->conn = NULL;
	if (!it->ok && log_limit(&proxy_log, "failed proxied scrapes"))
		log_warnx("proxy to worker %d: %s", p->worker, it->error);
	if (it->ok)
		http_reply_end(c);
	else if (p->started)
		http_reply_abort(c, it->error);
	else {
		http_reply_error(c, it->timed_out ? 504 : 502, "worker %d: %s",
		    p->worker, it->error);
	}
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
		http_reply_error(c, 404, "no live worker %d", worker);
		return;
	}
	cfg.accept = http_request_header(req, "Accept");
	cfg.deadline_ms = deadline_ms;
	cfg.body_max = PROXY_BODY_MAX;
	p = xcalloc(1, sizeof *p);
	p->conn = c;
	p->worker = worker;
	p->collect = collect_start(reg->base, reg, &l, 1, &cfg, &cb, p);
	http_conn_on_close(c, proxy_client_close_cb, p);
}
