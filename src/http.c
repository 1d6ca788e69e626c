/*
 * A small HTTP/1.1 server for the registration socket and the HTTP
 * listener.  Requests are capped in header and body size and must arrive
 * whole within an absolute deadline (an idle timeout alone lets a client
 * trickle one byte at a time forever); connections are capped in number.
 * The parser is pure so tests and the fuzzer call it directly.
 */
#include <sys/socket.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>

#include "promfork.h"

#define HTTP_TARGET_MAX 2048
#define HTTP_HEAD_MAX 512
#define HTTP_WRITE_MAX (256 * 1024) /* per write(2) */

enum http_conn_state {
	HTTP_READING, /* waiting for a whole request */
	HTTP_HANDLING, /* the handler owns the request */
	HTTP_STREAMING, /* the handler is writing a body of unknown length */
	HTTP_WRITING, /* the response is queued; close or reuse when sent */
};

struct http_conn {
	struct http_server *server;
	struct bufferevent *bev;
	struct event *ev_deadline;
	enum http_conn_state state;
	int keep_alive;
	int chunked; /* the streamed body goes out in chunks */
	int busy; /* inside http_conn_process: closing must not free */
	int dead; /* closed while busy: http_conn_process frees it */
	struct http_request req;
	struct ucred peer; /* valid when peer_known */
	int peer_known;
	http_close_fn close_fn;
	void *close_arg;
	struct http_conn *prev, *next;
};

struct http_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct http_limits limits;
	http_handler_fn handler;
	void *arg;
	int nconns;
	struct http_conn *conns;
};

static const struct {
	int status;
	const char *text;
} http_statuses[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 408, "Request Timeout" },
	{ 411, "Length Required" },
	{ 413, "Content Too Large" },
	{ 414, "URI Too Long" },
	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" },
	{ 501, "Not Implemented" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
	{ 505, "HTTP Version Not Supported" },
};

const char *
http_status_text(int status)
{
	size_t i;

	for (i = 0; i < sizeof http_statuses / sizeof http_statuses[0]; i++) {
		if (http_statuses[i].status == status)
			return http_statuses[i].text;
	}
	return "Unknown";
}

static int
http_is_token(int c)
{
	return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

void
http_request_finish(struct http_request *req)
{
	size_t i;

	free(req->target);
	for (i = 0; i < req->nheaders; i++) {
		free(req->headers[i].name);
		free(req->headers[i].value);
	}
	free(req->body);
	memset(req, 0, sizeof *req);
}

const char *
http_request_header(const struct http_request *req, const char *name)
{
	size_t i;

	for (i = 0; i < req->nheaders; i++) {
		if (strcasecmp(req->headers[i].name, name) == 0)
			return req->headers[i].value;
	}
	return NULL;
}

/* Finds the end of the header block: the first empty line. */
static const char *
http_headers_end(const char *buf, size_t len, size_t *skip)
{
	const char *p = buf, *end = buf + len, *nl;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		if (nl == p || (nl == p + 1 && *p == '\r')) {
			*skip = (size_t)(nl + 1 - p);
			return p;
		}
		p = nl + 1;
	}
	return NULL;
}

static int
http_parse_request_line(const char *line, size_t len, struct http_request *req,
    int *status)
{
	const char *sp1, *sp2, *end = line + len;
	size_t i;

	sp1 = memchr(line, ' ', len);
	if (sp1 == NULL || sp1 == line ||
	    (size_t)(sp1 - line) >= sizeof req->method)
		return -1;
	for (i = 0; line + i < sp1; i++) {
		if (line[i] < 'A' || line[i] > 'Z')
			return -1;
		req->method[i] = line[i];
	}
	req->method[i] = '\0';
	sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
	if (sp2 == NULL || sp2 == sp1 + 1 || sp1[1] != '/')
		return -1;
	if (sp2 - sp1 - 1 > HTTP_TARGET_MAX) {
		*status = 414;
		return -1;
	}
	for (i = 1; sp1 + i < sp2; i++) {
		if ((unsigned char)sp1[i] <= 0x20 || sp1[i] == 0x7f)
			return -1;
	}
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0)
		return -1;
	if (sp2[8] != '0' && sp2[8] != '1') {
		*status = 505;
		return -1;
	}
	req->minor = sp2[8] - '0';
	req->target = xstrndup(sp1 + 1, (size_t)(sp2 - sp1 - 1));
	return 0;
}

static int
http_parse_header(const char *line, size_t len, struct http_request *req,
    int *status)
{
	const char *colon = memchr(line, ':', len), *v, *end = line + len;
	size_t i;

	if (colon == NULL || colon == line)
		return -1;
	for (i = 0; line + i < colon; i++) {
		if (!http_is_token((unsigned char)line[i]))
			return -1;
	}
	for (v = colon + 1; v < end && (*v == ' ' || *v == '\t'); v++)
		;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	for (i = 0; v + i < end; i++) {
		unsigned char c = (unsigned char)v[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	if (req->nheaders == HTTP_HEADERS_MAX) {
		*status = 431;
		return -1;
	}
	req->headers[req->nheaders].name =
	    xstrndup(line, (size_t)(colon - line));
	req->headers[req->nheaders].value = xstrndup(v, (size_t)(end - v));
	req->nheaders++;
	return 0;
}

static int
http_parse_length(const char *s, size_t *len)
{
	long long n;

	if (decimal_parse(s, 0, LLONG_MAX, &n, NULL) != 0)
		return -1;
	*len = (size_t)n;
	return 0;
}

/*
 * Parses one request from the start of buf.  Returns 1 with *consumed set
 * when a whole request is there, 0 when more bytes are needed, -1 with the
 * status to answer when the request is refused.
 */
int
http_request_parse(const char *buf, size_t len, const struct http_limits *lim,
    struct http_request *req, size_t *consumed, int *status)
{
	const char *hend, *p, *nl, *v;
	size_t skip, hlen, blen = 0;

	memset(req, 0, sizeof *req);
	*status = 400;
	hend = http_headers_end(buf, len, &skip);
	if (hend == NULL) {
		if (len > lim->header_max) {
			*status = 431;
			return -1;
		}
		return 0;
	}
	hlen = (size_t)(hend - buf) + skip;
	if (hlen > lim->header_max) {
		*status = 431;
		return -1;
	}
	if (memchr(buf, '\0', hlen) != NULL)
		return -1;

	p = buf;
	nl = memchr(p, '\n', (size_t)(hend - p) + skip);
	if (http_parse_request_line(p,
		(size_t)(nl - p) - (nl > p && nl[-1] == '\r'), req,
		status) != 0)
		goto fail;
	for (p = nl + 1; p < hend; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(hend - p));
		if (http_parse_header(p, (size_t)(nl - p) - (nl[-1] == '\r'),
			req, status) != 0)
			goto fail;
	}

	if (http_request_header(req, "Transfer-Encoding") != NULL) {
		*status = 501;
		goto fail;
	}
	if ((v = http_request_header(req, "Content-Length")) != NULL &&
	    http_parse_length(v, &blen) != 0)
		goto fail;
	if (blen > lim->body_max) {
		*status = 413;
		goto fail;
	}
	if (len - hlen < blen) {
		http_request_finish(req);
		return 0;
	}
	req->body = xmalloc(blen + 1);
	memcpy(req->body, buf + hlen, blen);
	req->body[blen] = '\0';
	req->body_len = blen;

	v = http_request_header(req, "Connection");
	if (req->minor == 1)
		req->keep_alive = v == NULL || strcasecmp(v, "close") != 0;
	else
		req->keep_alive = v != NULL && strcasecmp(v, "keep-alive") == 0;
	*consumed = hlen + blen;
	return 1;

fail:
	http_request_finish(req);
	return -1;
}

int
http_conn_fd(const struct http_conn *c)
{
	return (int)bufferevent_getfd(c->bev);
}

/* The peer's credentials as of its connect(2): they never change, so read
 * once per connection. */
int
http_conn_peercred(struct http_conn *c, struct ucred *cred)
{
	socklen_t len = sizeof c->peer;

	if (!c->peer_known) {
		if (getsockopt(http_conn_fd(c), SOL_SOCKET, SO_PEERCRED,
			&c->peer, &len) != 0)
			return -1;
		c->peer_known = 1;
	}
	*cred = c->peer;
	return 0;
}

void
http_conn_on_close(struct http_conn *c, http_close_fn fn, void *arg)
{
	c->close_fn = fn;
	c->close_arg = arg;
}

int
http_server_conns(const struct http_server *s)
{
	return s->nconns;
}

/* The single teardown path of a connection. */
static void
http_conn_close(struct http_conn *c, const char *why)
{
	struct http_server *s = c->server;

	if (c->dead)
		return;
	log_debug("http connection closed: %s", why);
	if (c->close_fn != NULL)
		c->close_fn(c->close_arg);
	bufferevent_free(c->bev);
	event_free(c->ev_deadline);
	http_request_finish(&c->req);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->nconns--;
	if (c->busy) {
		c->dead = 1;
		return;
	}
	free(c);
}

static void
http_conn_arm_deadline(struct http_conn *c)
{
	struct timeval tv;

	tv.tv_sec = c->server->limits.deadline_ms / 1000;
	tv.tv_usec = (c->server->limits.deadline_ms % 1000) * 1000;
	event_add(c->ev_deadline, &tv);
}

/* Formats the response head; returns its length, which fits in cap. */
static size_t
http_format_head(struct http_conn *c, char *buf, size_t cap, int status,
    const char *content_type, long long length)
{
	char type[300] = "", len[64] = "";
	int n;

	if (content_type != NULL)
		snprintf(type, sizeof type, "Content-Type: %.256s\r\n",
		    content_type);
	if (length >= 0)
		snprintf(len, sizeof len, "Content-Length: %lld\r\n", length);
	else if (c->chunked)
		snprintf(len, sizeof len, "Transfer-Encoding: chunked\r\n");
	n = snprintf(buf, cap,
	    "HTTP/1.1 %d %s\r\n%s%s"
	    "Cache-Control: no-store\r\n"
	    "Connection: %s\r\n\r\n",
	    status, http_status_text(status), type, len,
	    c->keep_alive ? "keep-alive" : "close");
	if (n < 0 || (size_t)n >= cap)
		fatalx("http response head too long");
	return (size_t)n;
}

static void
http_write_head(struct http_conn *c, int status, const char *content_type,
    long long length)
{
	char head[HTTP_HEAD_MAX];
	size_t n = http_format_head(c, head, sizeof head, status, content_type,
	    length);

	evbuffer_add(bufferevent_get_output(c->bev), head, n);
}

/*
 * Sends what it can of a response at once, when nothing is queued before
 * it; returns how much went.  Most answers fit the socket buffer, and
 * this spares the two epoll changes and the wakeup of the queued path.
 */
static size_t
http_send_now(struct http_conn *c, const char *head, size_t hlen,
    const char *body, size_t blen)
{
	struct iovec iov[2] = { { (void *)head, hlen },
		{ (void *)body, blen } };
	struct msghdr msg;
	ssize_t n;

	if (evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
		return 0;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = iov;
	msg.msg_iovlen = blen > 0 ? 2 : 1;
	n = sendmsg(http_conn_fd(c), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n > 0 ? (size_t)n : 0; /* errors surface on the queued path */
}

void
http_reply(struct http_conn *c, int status, const char *content_type,
    const char *body, size_t len)
{
	struct evbuffer *out;
	char head[HTTP_HEAD_MAX];
	size_t hlen, sent = 0;

	if (c->state != HTTP_HANDLING && c->state != HTTP_READING)
		return;
	out = bufferevent_get_output(c->bev);
	hlen = http_format_head(c, head, sizeof head, status, content_type,
	    (long long)len);
	/* Kept alive only: a close here would free c under the caller. */
	if (c->keep_alive)
		sent = http_send_now(c, head, hlen, body, len);
	if (sent == hlen + len) {
		http_request_finish(&c->req);
		c->state = HTTP_READING; /* http_conn_process reads on */
		http_conn_arm_deadline(c);
		return;
	}
	if (sent < hlen) {
		evbuffer_add(out, head + sent, hlen - sent);
		evbuffer_add(out, body, len);
	} else
		evbuffer_add(out, body + (sent - hlen), len - (sent - hlen));
	c->state = HTTP_WRITING;
}

/* Takes the reference to obj. */
void
http_reply_json(struct http_conn *c, int status, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *body;
	int len;

	json_decref(obj);
	if (text == NULL)
		fatalx("cannot render a JSON reply");
	len = xasprintf(&body, "%s\n", text);
	http_reply(c, status, "application/json", body, (size_t)len);
	free(body);
	free(text);
}

void
http_reply_error(struct http_conn *c, int status, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	http_reply_json(c, status, json_pack("{s:s}", "error", msg));
	free(msg);
}

/*
 * Starts a streamed response.  With a length the body must be exactly that
 * long; without one, an HTTP/1.1 client gets chunks, so that a body cut
 * short by http_reply_abort is seen as incomplete and never as a whole.
 */
void
http_reply_stream(struct http_conn *c, int status, const char *content_type,
    long long length)
{
	if (c->state != HTTP_HANDLING)
		return;
	c->keep_alive = 0;
	c->chunked = length < 0 && c->req.minor >= 1;
	http_write_head(c, status, content_type, length);
	c->state = HTTP_STREAMING;
}

/* Moves all of buf into the streamed body. */
void
http_reply_write(struct http_conn *c, struct evbuffer *buf)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = evbuffer_get_length(buf);

	if (c->state != HTTP_STREAMING || len == 0) {
		evbuffer_drain(buf, len);
		return;
	}
	if (c->chunked)
		evbuffer_add_printf(out, "%zx\r\n", len);
	evbuffer_add_buffer(out, buf);
	if (c->chunked)
		evbuffer_add(out, "\r\n", 2);
}

/* Ends a streamed response without its proper end: what is queued still
 * goes out, then the close, so the client sees the cut (no last chunk, or
 * fewer bytes than Content-Length). */
void
http_reply_abort(struct http_conn *c, const char *why)
{
	log_debug("response aborted: %s", why);
	c->keep_alive = 0;
	c->state = HTTP_WRITING;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		http_conn_close(c, why);
}

void
http_reply_end(struct http_conn *c)
{
	if (c->state == HTTP_STREAMING && c->chunked)
		evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
	c->state = HTTP_WRITING;
	/* Nothing left to send: the write callback would never run. */
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		http_conn_close(c, "response sent");
}

static void http_conn_read_cb(struct bufferevent *, void *);

static void
http_conn_refuse(struct http_conn *c, int status, const char *what)
{
	c->keep_alive = 0;
	c->state = HTTP_HANDLING;
	http_reply_error(c, status, "%s", what);
}

/*
 * Answers every whole request in the input, one after the other (a reply
 * sent at once leaves the next pipelined one waiting here).  A handler may
 * close the connection: then it is freed only on the way out.
 */
static void
http_conn_process(struct http_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	const struct http_limits *lim = &c->server->limits;
	size_t len, consumed;
	const char *buf;
	int rc, status;

	if (c->busy)
		return;
	c->busy = 1;
	while (!c->dead && c->state == HTTP_READING &&
	    (len = evbuffer_get_length(in)) > 0) {
		consumed = 0;
		buf = (const char *)evbuffer_pullup(in, -1);
		rc = http_request_parse(buf, len, lim, &c->req, &consumed,
		    &status);
		if (rc == 0)
			break;
		if (rc < 0) {
			log_debug("bad request: %d", status);
			http_conn_refuse(c, status,
			    status == 413       ? "request body too large"
				: status == 431 ? "request headers too large"
				: status == 501
				? "chunked request bodies are not supported"
				: "malformed request");
			break;
		}
		evbuffer_drain(in, consumed);
		c->keep_alive = c->req.keep_alive;
		c->state = HTTP_HANDLING;
		c->server->handler(c, &c->req, c->server->arg);
	}
	c->busy = 0;
	if (c->dead)
		free(c);
}

static void
http_conn_read_cb(struct bufferevent *bev, void *arg)
{
	http_conn_process(arg);
}

static void
http_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	if (c->state != HTTP_WRITING)
		return;
	if (!c->keep_alive) {
		http_conn_close(c, "response sent");
		return;
	}
	http_request_finish(&c->req);
	c->state = HTTP_READING;
	http_conn_arm_deadline(c);
	http_conn_process(c); /* a pipelined request may be waiting */
}

static void
http_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		http_conn_close(c, "socket error");
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* A half-closed client still gets the answer it asked for. */
		if (c->state == HTTP_READING)
			http_conn_close(c, "closed by peer");
		else
			c->keep_alive = 0;
	}
}

static void
http_conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	if (c->state == HTTP_READING && evbuffer_get_length(in) > 0) {
		log_warnx("http request not complete within %d ms, refused",
		    c->server->limits.deadline_ms);
		http_conn_refuse(c, 408, "request not complete in time");
		bufferevent_disable(c->bev, EV_READ);
		/* The peer gets one more deadline to take the answer. */
		http_conn_arm_deadline(c);
		return;
	}
	http_conn_close(c, "deadline");
}

/* Best effort: the refused peer is told why, without ever blocking us. */
static void
http_send_busy(int fd, const char *body, size_t len)
{
	char buf[256];
	int n;

	n = snprintf(buf, sizeof buf,
	    "HTTP/1.1 503 Service Unavailable\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s",
	    len, body);
	if (n > 0 && (size_t)n < sizeof buf)
		(void)send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

static void
http_server_accept_cb(struct evconnlistener *lst, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	static const char busy_body[] = "{\"error\": \"too many "
					"connections, try again\"}\n";
	struct http_server *s = arg;
	struct http_conn *c;

	if (s->nconns >= s->limits.conns_max) {
		log_warnx("connection refused: %d connections already open",
		    s->nconns);
		http_send_busy(fd, busy_body, sizeof busy_body - 1);
		close(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->server = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		fatalx("bufferevent_socket_new");
	c->ev_deadline = evtimer_new(s->base, http_conn_deadline_cb, c);
	bufferevent_setcb(c->bev, http_conn_read_cb, http_conn_write_cb,
	    http_conn_event_cb, c);
	/* Stop reading past one request's worth until it is answered. */
	bufferevent_setwatermark(c->bev, EV_READ, 0,
	    s->limits.header_max + s->limits.body_max + 1);
	/* Streamed bodies go out in bigger writes than libevent's 16 KiB. */
	bufferevent_set_max_single_write(c->bev, HTTP_WRITE_MAX);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	http_conn_arm_deadline(c);
}

static void
http_server_error_cb(struct evconnlistener *lst, void *arg)
{
	log_warn("accept");
}

struct http_server *
http_server_create(struct event_base *base, int fd,
    const struct http_limits *lim, http_handler_fn handler, void *arg)
{
	struct http_server *s = xcalloc(1, sizeof *s);

	s->base = base;
	s->limits = *lim;
	s->handler = handler;
	s->arg = arg;
	s->listener = evconnlistener_new(base, http_server_accept_cb, s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (s->listener == NULL)
		fatalx("evconnlistener_new");
	evconnlistener_set_error_cb(s->listener, http_server_error_cb);
	return s;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	while (s->conns != NULL)
		http_conn_close(s->conns, "server shutdown");
	evconnlistener_free(s->listener);
	free(s);
}
