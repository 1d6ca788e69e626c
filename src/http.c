/*
 * A small HTTP/1.1 server for the registration socket and the HTTP
 * listener.  Requests are capped in header and body size and must arrive
 * whole within an absolute deadline (an idle timeout alone lets a client
 * trickle one byte at a time forever); connections are capped in number.
 * Each connection is known by its peer from the moment it is accepted (a
 * Unix peer's credentials and the process itself, pinned by a pidfd; an IP
 * peer's address): a peer the server does not allow is turned away before
 * it counts, and one peer may hold only part of the connections.  A
 * connection idle between requests is closed, and none lives for ever.
 * The parser is pure so tests and the fuzzer call it directly.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "promfork.h"

#define HTTP_TARGET_MAX 2048
#define HTTP_HEAD_MAX 4096 /* with a web configuration's headers */
#define HTTP_WRITE_MAX (256 * 1024) /* per write(2) */
#define HTTP_REFUSED_LOG_S 1 /* refusals at accept: one log line a second */
/* In every answer: a browser must take the Content-Type as it is, never
 * guess HTML from a body a worker chose. */
#define HTTP_HEAD_ALWAYS "X-Content-Type-Options: nosniff\r\n"

/* Linux 6.5; older headers lack it, older kernels answer ENOPROTOOPT. */
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

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
	struct http_peer peer; /* as of the accept */
	int pidfd; /* the Unix peer's process; -1 without */
	unsigned long long starttime; /* the same, without a pidfd */
	int idle; /* between requests: ev_deadline is the idle timeout */
	struct timespec accepted;
	http_close_fn close_fn;
	void *close_arg;
	const char *policy; /* Content-Security-Policy of the next answer */
	const char *encoding; /* Content-Encoding of the next answer */
	char *extra; /* header lines of every answer, from the gate */
	int tls; /* bev is an OpenSSL one */
	http_close_fn drain_fn; /* a streamed body's output fell low */
	void *drain_arg;
	struct http_conn *prev, *next;
};

struct http_server {
	struct event_base *base;
	struct evconnlistener *listener;
	struct http_limits limits;
	http_handler_fn handler;
	http_accept_fn accept; /* NULL: every peer */
	http_tls_fn tls; /* NULL: plain */
	void *tls_arg;
	http_gate_fn gate; /* NULL: every request goes to the handler */
	void *gate_arg;
	int pin_by_pid; /* as without SO_PEERPIDFD */
	void *arg;
	int nconns;
	struct http_conn *conns;
	time_t refused_logged; /* when a refusal at accept was last logged */
	unsigned long long refused; /* since then, not logged */
	struct event *ev_resume; /* accepting again after running out of fds */
	int pause_ms; /* the last pause */
	struct timespec paused; /* when it began */
};

/* Out of descriptors, accepting is paused this long, doubled each time in
 * a row up to the maximum. */
#define HTTP_PAUSE_MIN_MS 10
#define HTTP_PAUSE_MAX_MS 1000

static const struct {
	int status;
	const char *text;
} http_statuses[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 408, "Request Timeout" },
	{ 411, "Length Required" },
	{ 413, "Content Too Large" },
	{ 414, "URI Too Long" },
	{ 429, "Too Many Requests" },
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

/* Who connected, as of the accept (a Unix peer's credentials never
 * change). */
const struct http_peer *
http_conn_peer(const struct http_conn *c)
{
	return &c->peer;
}

/*
 * Is the Unix peer still the process that connected?  A connection can be
 * handed to another process, and the peer's pid can be reused once it has
 * exited: its identity must not outlive it.
 */
int
http_conn_peer_alive(const struct http_conn *c)
{
	struct proc_stat st;
	char *cause = NULL;

	if (c->peer.family != AF_UNIX)
		return 1;
	if (c->pidfd != -1)
		return !proc_exited(c->pidfd);
	if (proc_stat_read(c->peer.cred.pid, &st, &cause) != 0) {
		free(cause);
		return 0;
	}
	return st.starttime == c->starttime;
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
	if (c->pidfd != -1)
		close(c->pidfd);
	free(c->extra);
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
http_conn_arm(struct http_conn *c, int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	event_add(c->ev_deadline, &tv);
}

static void
http_conn_arm_deadline(struct http_conn *c)
{
	c->idle = 0;
	http_conn_arm(c, c->server->limits.deadline_ms);
}

/*
 * After an answer: a request already begun has the deadline from now; an
 * empty connection has the idle timeout, never a fresh deadline, so that a
 * client cannot keep a connection by asking now and then.
 */
static void
http_conn_wait_next(struct http_conn *c)
{
	if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 ||
	    c->server->limits.idle_ms <= 0) {
		http_conn_arm_deadline(c);
		return;
	}
	c->idle = 1;
	http_conn_arm(c, c->server->limits.idle_ms);
}

/* Has the connection lived its whole life?  Then its next answer closes. */
static int
http_conn_expired(const struct http_conn *c)
{
	struct timespec now;
	long long ms;

	if (c->server->limits.life_ms <= 0)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (long long)(now.tv_sec - c->accepted.tv_sec) * 1000 +
	    (now.tv_nsec - c->accepted.tv_nsec) / 1000000;
	return ms >= c->server->limits.life_ms;
}

/* Formats the response head; returns its length, which fits in cap. */
static size_t
http_format_head(struct http_conn *c, char *buf, size_t cap, int status,
    const char *content_type, long long length)
{
	char type[300] = "", len[64] = "", policy[300] = "", enc[100] = "";
	int n;

	if (content_type != NULL)
		snprintf(type, sizeof type, "Content-Type: %.256s\r\n",
		    content_type);
	if (c->policy != NULL)
		snprintf(policy, sizeof policy,
		    "Content-Security-Policy: %.256s\r\n", c->policy);
	c->policy = NULL;
	if (c->encoding != NULL)
		snprintf(enc, sizeof enc,
		    "Content-Encoding: %.32s\r\nVary: Accept-Encoding\r\n",
		    c->encoding);
	c->encoding = NULL;
	if (length >= 0)
		snprintf(len, sizeof len, "Content-Length: %lld\r\n", length);
	else if (c->chunked)
		snprintf(len, sizeof len, "Transfer-Encoding: chunked\r\n");
	n = snprintf(buf, cap,
	    "HTTP/1.1 %d %s\r\n%s%s%s%s%s" HTTP_HEAD_ALWAYS
	    "Cache-Control: no-store\r\n"
	    "Connection: %s\r\n\r\n",
	    status, http_status_text(status), type, enc, len, policy,
	    c->extra != NULL ? c->extra : "",
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

	if (c->tls || evbuffer_get_length(bufferevent_get_output(c->bev)) != 0)
		return 0;
	memset(&msg, 0, sizeof msg);
	msg.msg_iov = iov;
	msg.msg_iovlen = blen > 0 ? 2 : 1;
	n = sendmsg(http_conn_fd(c), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	return n > 0 ? (size_t)n : 0; /* errors surface on the queued path */
}

/*
 * Sends what it can of the answer at once, and queues the rest: a copy,
 * or with unref a reference to body, released by calling unref with arg
 * once it has gone or the connection has closed (at once when all went).
 * A reference lets many clients of one answer share one copy.
 */
void
http_reply_ref(struct http_conn *c, int status, const char *content_type,
    const char *body, size_t len, http_unref_fn unref, void *arg)
{
	struct evbuffer *out;
	char head[HTTP_HEAD_MAX];
	size_t hlen, sent = 0;

	if (c->state != HTTP_HANDLING && c->state != HTTP_READING) {
		if (unref != NULL)
			unref(body, len, arg);
		return;
	}
	out = bufferevent_get_output(c->bev);
	hlen = http_format_head(c, head, sizeof head, status, content_type,
	    (long long)len);
	/* Kept alive only: a close here would free c under the caller. */
	if (c->keep_alive)
		sent = http_send_now(c, head, hlen, body, len);
	if (sent == hlen + len) {
		if (unref != NULL)
			unref(body, len, arg);
		http_request_finish(&c->req);
		c->state = HTTP_READING; /* http_conn_process reads on */
		http_conn_wait_next(c);
		return;
	}
	if (sent < hlen) {
		evbuffer_add(out, head + sent, hlen - sent);
		sent = 0;
	} else
		sent -= hlen;
	if (unref == NULL)
		evbuffer_add(out, body + sent, len - sent);
	else if (sent == len) /* an empty body */
		unref(body, len, arg);
	else if (evbuffer_add_reference(out, body + sent, len - sent, unref,
		     arg) != 0)
		fatalx("evbuffer_add_reference");
	c->state = HTTP_WRITING;
}

void
http_reply(struct http_conn *c, int status, const char *content_type,
    const char *body, size_t len)
{
	http_reply_ref(c, status, content_type, body, len, NULL, NULL);
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

/* The answer being made is the connection's last. */
void
http_conn_last(struct http_conn *c)
{
	c->keep_alive = 0;
}

/* The answer being made carries this Content-Security-Policy (a string
 * that outlives it). */
void
http_conn_policy(struct http_conn *c, const char *policy)
{
	c->policy = policy;
}

/* The answer being made carries this Content-Encoding (a string that
 * outlives it), e.g. "gzip". */
void
http_conn_encoding(struct http_conn *c, const char *encoding)
{
	c->encoding = encoding;
}

/* Header lines (each ending in CRLF) for every answer on c from now on;
 * NULL or "" for none. */
void
http_conn_headers(struct http_conn *c, const char *lines)
{
	free(c->extra);
	c->extra = lines != NULL && *lines != '\0' ? xstrdup(lines) : NULL;
}

/* The TLS context c was accepted in; NULL for a plain connection. */
struct ssl_ctx_st *
http_conn_tls_ctx(const struct http_conn *c)
{
	if (!c->tls)
		return NULL;
	return SSL_get_SSL_CTX(bufferevent_openssl_get_ssl(c->bev));
}

/* Closes c without an answer (a gate's way to drop it). */
void
http_conn_drop(struct http_conn *c, const char *why)
{
	http_conn_close(c, why);
}

/* Bytes of the answer queued and not yet taken by the client. */
size_t
http_conn_unsent(const struct http_conn *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

/*
 * While a body streams, fn runs each time the queued output falls to low
 * bytes or fewer: a producer that stopped at a high mark resumes there.
 */
void
http_conn_on_drain(struct http_conn *c, size_t low, http_close_fn fn, void *arg)
{
	c->drain_fn = fn;
	c->drain_arg = arg;
	bufferevent_setwatermark(c->bev, EV_WRITE, fn != NULL ? low : 0, 0);
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
		c->keep_alive = c->req.keep_alive && !http_conn_expired(c);
		c->state = HTTP_HANDLING;
		if (c->server->gate == NULL ||
		    c->server->gate(c, &c->req, c->server->gate_arg) == 0)
			c->server->handler(c, &c->req, c->server->arg);
	}
	c->busy = 0;
	if (c->dead)
		free(c);
}

static void
http_conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	/* The first byte of the next request: it has the deadline now. */
	if (c->idle && c->state == HTTP_READING)
		http_conn_arm_deadline(c);
	http_conn_process(c);
}

static void
http_conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;

	if (c->state == HTTP_STREAMING && c->drain_fn != NULL) {
		c->drain_fn(c->drain_arg);
		return;
	}
	if (c->state != HTTP_WRITING)
		return;
	if (!c->keep_alive) {
		http_conn_close(c, "response sent");
		return;
	}
	http_request_finish(&c->req);
	c->state = HTTP_READING;
	http_conn_wait_next(c);
	http_conn_process(c); /* a pipelined request may be waiting */
}

/* A failed handshake (no client certificate, a wrong one, no common
 * version) is the client's doing: logged for debugging only. */
static void
http_conn_tls_error(struct http_conn *c)
{
	unsigned long e;
	char buf[256];

	while ((e = bufferevent_get_openssl_error(c->bev)) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		log_debug("tls: %s", buf);
	}
}

static void
http_conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;

	if (what & BEV_EVENT_ERROR) {
		if (c->tls)
			http_conn_tls_error(c);
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

	if (c->idle) {
		http_conn_close(c, "idle");
		return;
	}
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
http_send_refusal(int fd, int status, const char *why)
{
	char buf[1024], *body;
	json_t *obj = json_pack("{s:s}", "error", why);
	int n;

	if (obj == NULL || (body = json_dumps(obj, JSON_COMPACT)) == NULL)
		fatalx("cannot render a refusal");
	json_decref(obj);
	n = snprintf(buf, sizeof buf,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: application/json\r\nContent-Length: %zu\r\n" HTTP_HEAD_ALWAYS
	    "Connection: close\r\n\r\n%s\n",
	    status, http_status_text(status), strlen(body) + 1, body);
	free(body);
	if (n > 0 && (size_t)n < sizeof buf)
		(void)send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/*
 * Who connected: a Unix peer's credentials (of its connect(2); they never
 * change), or an IP peer's address, IPv4 as IPv4-mapped IPv6 so that one
 * client is one key on a dual-stack listener.
 */
static int
http_peer_identify(int fd, const struct sockaddr *sa, int salen,
    struct http_peer *p)
{
	socklen_t len = sizeof p->cred;

	memset(p, 0, sizeof *p);
	p->family = sa != NULL && salen > 0 ? sa->sa_family : AF_UNIX;
	switch (p->family) {
	case AF_UNIX:
		return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &p->cred, &len);
	case AF_INET:
		p->addr[10] = p->addr[11] = 0xff;
		memcpy(p->addr + 12,
		    &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return 0;
	case AF_INET6:
		memcpy(p->addr, &((const struct sockaddr_in6 *)sa)->sin6_addr,
		    16);
		return 0;
	}
	return -1;
}

static int
http_peer_same(const struct http_peer *a, const struct http_peer *b)
{
	if (a->family == AF_UNIX || b->family == AF_UNIX)
		return a->family == b->family && a->cred.uid == b->cred.uid;
	return memcmp(a->addr, b->addr, sizeof a->addr) == 0;
}

/* For the log: uid N, or the address. */
static void
http_peer_name(const struct http_peer *p, char *buf, size_t len)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	if (p->family == AF_UNIX)
		snprintf(buf, len, "uid %u (pid %d)", (unsigned int)p->cred.uid,
		    (int)p->cred.pid);
	else if (memcmp(p->addr, mapped, 12) == 0)
		inet_ntop(AF_INET, p->addr + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, p->addr, buf, (socklen_t)len);
}

/*
 * Logs a refusal at accept, at most once a second: refusals cost a peer
 * nothing and must not flood the log either.
 */
static void
http_server_log_refusal(struct http_server *s, const struct http_peer *p,
    const char *why)
{
	time_t now = time(NULL);
	char name[INET6_ADDRSTRLEN + 32];

	if (now - s->refused_logged < HTTP_REFUSED_LOG_S) {
		s->refused++;
		return;
	}
	http_peer_name(p, name, sizeof name);
	if (s->refused > 0)
		log_warnx("connection of %s refused: %s (and %llu more "
			  "refused since the last such line)",
		    name, why, s->refused);
	else
		log_warnx("connection of %s refused: %s", name, why);
	s->refused_logged = now;
	s->refused = 0;
}

/*
 * Holds the Unix peer's process: by SO_PEERPIDFD where the kernel has it
 * (the very process that connected), else by pidfd_open of its pid and its
 * start time.  -1 when that process is already gone.
 */
static int
http_conn_pin(struct http_conn *c, int fd)
{
	struct proc_ref ref;
	socklen_t len = sizeof c->pidfd;
	char *cause = NULL;
	int err;

	c->pidfd = -1;
	if (c->peer.family != AF_UNIX)
		return 0;
	if (!c->server->pin_by_pid &&
	    getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &c->pidfd, &len) == 0) {
		if (!proc_exited(c->pidfd))
			return 0;
		close(c->pidfd);
		c->pidfd = -1;
		errno = ESRCH;
		return -1;
	}
	if (!c->server->pin_by_pid && errno != ENOPROTOOPT && errno != EINVAL &&
	    !proc_out_of_fds(errno))
		log_warn("SO_PEERPIDFD");
	c->pidfd = -1;
	if (c->peer.cred.pid <= 0) {
		errno = ESRCH;
		return -1;
	}
	if (proc_ref_init(c->peer.cred.pid, &ref, &cause) != 0) {
		err = errno; /* out of descriptors, or gone */
		free(cause);
		errno = err;
		return -1;
	}
	c->pidfd = ref.pidfd;
	c->starttime = ref.st.starttime;
	return 0;
}

/* Connections the peer holds now. */
static int
http_server_peer_conns(const struct http_server *s, const struct http_peer *p)
{
	const struct http_conn *c;
	int n = 0;

	for (c = s->conns; c != NULL; c = c->next)
		n += http_peer_same(&c->peer, p);
	return n;
}

/*
 * Decides before a peer holds anything: one the server does not allow is
 * turned away (told why, best effort), then one over its own share, then
 * one over the cap of all.  Returns 0 to take the connection.
 */
static int
http_server_admit(struct http_server *s, int fd, const struct http_peer *p,
    int plain)
{
	char *cause = NULL;
	int rc = -1;

	if (s->accept != NULL && s->accept(fd, p, s->arg, &cause) != 0) {
		http_server_log_refusal(s, p, cause);
		if (plain)
			http_send_refusal(fd, 403, cause);
		goto out;
	}
	if (s->limits.peer_conns_max > 0 &&
	    http_server_peer_conns(s, p) >= s->limits.peer_conns_max) {
		xasprintf(&cause, "it already holds %d connections",
		    s->limits.peer_conns_max);
		http_server_log_refusal(s, p, cause);
		if (plain)
			http_send_refusal(fd, 503,
			    "too many connections from you, try again");
		goto out;
	}
	if (s->nconns >= s->limits.conns_max) {
		xasprintf(&cause, "%d connections already open", s->nconns);
		http_server_log_refusal(s, p, cause);
		if (plain)
			http_send_refusal(fd, 503,
			    "too many connections, try again");
		goto out;
	}
	rc = 0;
out:
	free(cause);
	return rc;
}

/*
 * Closes a connection turned away at the accept.  What the peer has sent
 * by now is read first (at most 64 KiB): a socket closed with unread data
 * resets its peer, whose read after the answer then fails (ECONNRESET)
 * instead of ending.
 */
static void
http_close_refused(int fd)
{
	char buf[4096];
	int i;

	for (i = 0; i < 16 && recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0; i++)
		;
	close(fd);
}

static void
http_server_accept_cb(struct evconnlistener *lst, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct http_server *s = arg;
	struct http_conn *c;
	struct http_peer peer;
	SSL_CTX *ctx = s->tls != NULL ? s->tls(s->tls_arg) : NULL;
	SSL *ssl = NULL;

	if (http_peer_identify(fd, sa, salen, &peer) != 0) {
		log_warn("cannot identify a peer");
		close(fd);
		return;
	}
	if (http_server_admit(s, fd, &peer, ctx == NULL) != 0) {
		http_close_refused(fd);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->server = s;
	c->peer = peer;
	if (http_conn_pin(c, fd) != 0) {
		/* Out of descriptors is ours to say, and passes. */
		if (proc_out_of_fds(errno) && ctx == NULL)
			http_send_refusal(fd, 503, "out of file descriptors");
		else
			log_debug("connection refused: its peer pid %d is gone",
			    (int)peer.cred.pid);
		http_close_refused(fd);
		free(c);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &c->accepted);
	if (ctx != NULL) {
		int one = 1;

		/* OpenSSL writes an answer as several records: without this,
		 * Nagle holds the last one for the client's delayed ACK (40
		 * ms a request, in bench_tls). */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof one);
		if ((ssl = SSL_new(ctx)) == NULL)
			fatalx("SSL_new");
		c->tls = 1;
		c->bev = bufferevent_openssl_socket_new(s->base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
		if (c->bev != NULL)
			/* A client that closes without close_notify has still
			 * had its whole answer: HTTP says where it ends. */
			bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	} else
		c->bev =
		    bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
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
http_server_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct http_server *s = arg;

	evconnlistener_enable(s->listener);
}

/*
 * Out of descriptors, the pending connection stays queued and the
 * listener would wake at once: stop accepting for a while instead of
 * spinning, and say so once per pause.
 */
static void
http_server_pause(struct http_server *s, int err)
{
	struct timespec now;
	struct timeval tv;
	long long since_ms;

	/* Pauses in a row (each within a second of the one before) grow. */
	clock_gettime(CLOCK_MONOTONIC, &now);
	since_ms = (now.tv_sec - s->paused.tv_sec) * 1000LL +
	    (now.tv_nsec - s->paused.tv_nsec) / 1000000;
	if (s->pause_ms == 0 || since_ms > s->pause_ms + 1000)
		s->pause_ms = HTTP_PAUSE_MIN_MS;
	else if ((s->pause_ms *= 2) > HTTP_PAUSE_MAX_MS)
		s->pause_ms = HTTP_PAUSE_MAX_MS;
	s->paused = now;
	log_warnx("accept: %s; not accepting for %d ms (%d connections "
		  "open)",
	    strerror(err), s->pause_ms, s->nconns);
	evconnlistener_disable(s->listener);
	tv.tv_sec = s->pause_ms / 1000;
	tv.tv_usec = (s->pause_ms % 1000) * 1000;
	evtimer_add(s->ev_resume, &tv);
}

static void
http_server_error_cb(struct evconnlistener *lst, void *arg)
{
	struct http_server *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (proc_out_of_fds(err) || err == ENOBUFS || err == ENOMEM)
		http_server_pause(s, err);
	else
		log_warnx("accept: %s", strerror(err));
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
	s->ev_resume = evtimer_new(base, http_server_resume_cb, s);
	return s;
}

/* Pins Unix peers as on kernels before 6.5: for tests of that path. */
void
http_server_pin_by_pid(struct http_server *s)
{
	s->pin_by_pid = 1;
}

/* Sets who may connect at all: fn returns -1 with a cause to refuse. */
void
http_server_set_accept(struct http_server *s, http_accept_fn fn)
{
	s->accept = fn;
}

/* Makes each new connection TLS with the context fn gives (NULL: plain). */
void
http_server_set_tls(struct http_server *s, http_tls_fn fn, void *arg)
{
	s->tls = fn;
	s->tls_arg = arg;
}

/* Runs fn before the handler for each request; fn answers what it stops. */
void
http_server_set_gate(struct http_server *s, http_gate_fn fn, void *arg)
{
	s->gate = fn;
	s->gate_arg = arg;
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	while (s->conns != NULL)
		http_conn_close(s->conns, "server shutdown");
	event_free(s->ev_resume);
	evconnlistener_free(s->listener);
	free(s);
}
