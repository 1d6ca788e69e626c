/*
 * The scrape client: one asynchronous HTTP/1.0 GET to a worker's port on
 * loopback, with an absolute deadline and a cap on the body.  HTTP/1.0 makes
 * the worker answer without chunks and end the body by closing (or by its
 * Content-Length).  Only 127.0.0.1 and ::1 are ever dialled, so no caller can
 * make promfork reach another host; who listens there is the caller's to
 * check (collect.c checks both addresses before a byte goes out).  The
 * response head parser is pure, for tests and the fuzzer.
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "promfork.h"

#define SCRAPE_HEADERS_MAX 100
#define SCRAPE_ACCEPT_MAX 512
#define SCRAPE_PATH_MAX 1024
#define SCRAPE_READ_MAX (64 * 1024) /* per read(2) */
#define SCRAPE_READS_MAX 8 /* per wakeup, so that one worker cannot hog us */
#define SCRAPE_BUFFER_MAX (256 * 1024) /* unread body before we look */

enum scrape_state { SCRAPE_CONNECTING, SCRAPE_HEAD, SCRAPE_BODY };

struct scrape {
	struct event_base *base;
	struct bufferevent *bev;
	struct event *ev_deadline;
	struct event *ev_fail; /* reports an error found before any I/O */
	enum scrape_state state;
	uint16_t port;
	int ipv6; /* dialling ::1 after 127.0.0.1 failed */
	int ipv4_error; /* why 127.0.0.1 failed: the error we report */
	char *request;
	int deadline_ms;
	size_t body_max;
	struct scrape_head head;
	size_t bytes;
	int timed_out;
	struct timespec started;
	char error[160];
	struct scrape_callbacks cb;
	void *arg;
};

static int
scrape_is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
scrape_parse_status_line(const char *line, size_t len, int *status)
{
	/* HTTP/1.x NNN[ reason] */
	if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 ||
	    !scrape_is_digit(line[7]) || line[8] != ' ')
		return -1;
	if (!scrape_is_digit(line[9]) || !scrape_is_digit(line[10]) ||
	    !scrape_is_digit(line[11]) || (len > 12 && line[12] != ' '))
		return -1;
	*status =
	    (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	if (*status < 100)
		return -1;
	return 0;
}

static int
scrape_parse_length(const char *v, size_t len, long long *out)
{
	long long n = 0;
	size_t i;

	if (len == 0 || len > 18)
		return -1;
	for (i = 0; i < len; i++) {
		if (!scrape_is_digit(v[i]))
			return -1;
		n = n * 10 + (v[i] - '0');
	}
	*out = n;
	return 0;
}

/*
 * Parses a response head from the start of buf.  Returns 1 with *consumed
 * set when the head is whole, 0 when more bytes are needed, -1 with *cause
 * when it is malformed, too large, or framed in a way we do not speak.
 */
int
scrape_parse_head(const char *buf, size_t len, struct scrape_head *h,
    size_t *consumed, char **cause)
{
	const char *p = buf, *end, *nl, *colon, *v, *vend;
	size_t n, nheaders = 0;
	int have_length = 0;

	memset(h, 0, sizeof *h);
	h->length = -1;
	if (len == 0) /* buf may be NULL then: an empty evbuffer's pullup */
		return 0;
	if (len > SCRAPE_HEAD_MAX)
		len = SCRAPE_HEAD_MAX;
	end = buf + len;
	/* The head ends at the first empty line. */
	for (;;) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			if (len == SCRAPE_HEAD_MAX) {
				xasprintf(cause,
				    "response head larger than "
				    "%d bytes",
				    SCRAPE_HEAD_MAX);
				return -1;
			}
			return 0;
		}
		if (nl == p || (nl == p + 1 && *p == '\r'))
			break;
		p = nl + 1;
	}
	*consumed = (size_t)(nl + 1 - buf);
	end = p; /* the empty line */
	if (end == buf) {
		xasprintf(cause, "not an HTTP/1.x response");
		return -1;
	}
	if (memchr(buf, '\0', (size_t)(end - buf)) != NULL)
		goto bad;

	nl = memchr(buf, '\n', (size_t)(end - buf) + 1);
	n = (size_t)(nl - buf) - (nl > buf && nl[-1] == '\r');
	if (scrape_parse_status_line(buf, n, &h->status) != 0) {
		xasprintf(cause, "not an HTTP/1.x response");
		return -1;
	}
	for (p = nl + 1; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		vend = nl - (nl > p && nl[-1] == '\r');
		if (++nheaders > SCRAPE_HEADERS_MAX) {
			xasprintf(cause, "more than %d response headers",
			    SCRAPE_HEADERS_MAX);
			return -1;
		}
		colon = memchr(p, ':', (size_t)(vend - p));
		if (colon == NULL || colon == p)
			goto bad;
		for (v = colon + 1; v < vend && (*v == ' ' || *v == '\t'); v++)
			;
		while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		for (n = 0; v + n < vend; n++) {
			unsigned char c = (unsigned char)v[n];
			if ((c < 0x20 && c != '\t') || c == 0x7f)
				goto bad;
		}
		n = (size_t)(colon - p);
		if (n == 14 && strncasecmp(p, "Content-Length", n) == 0) {
			long long l;
			if (have_length ||
			    scrape_parse_length(v, (size_t)(vend - v), &l) !=
				0) {
				xasprintf(cause, "bad Content-Length");
				return -1;
			}
			h->length = l;
			have_length = 1;
		} else if (n == 12 && strncasecmp(p, "Content-Type", n) == 0) {
			if ((size_t)(vend - v) >= sizeof h->content_type) {
				xasprintf(cause,
				    "Content-Type longer than %zu "
				    "bytes",
				    sizeof h->content_type - 1);
				return -1;
			}
			memcpy(h->content_type, v, (size_t)(vend - v));
			h->content_type[vend - v] = '\0';
		} else if (n == 16 &&
		    strncasecmp(p, "Content-Encoding", n) == 0) {
			h->gzip =
			    vend - v == 4 && strncasecmp(v, "gzip", 4) == 0;
		} else if (n == 17 &&
		    strncasecmp(p, "Transfer-Encoding", n) == 0) {
			xasprintf(cause,
			    "Transfer-Encoding in answer to an "
			    "HTTP/1.0 request");
			return -1;
		}
	}
	return 1;

bad:
	xasprintf(cause, "malformed response head");
	return -1;
}

static int
scrape_elapsed_ms(const struct scrape *s)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int)((now.tv_sec - s->started.tv_sec) * 1000 +
	    (now.tv_nsec - s->started.tv_nsec) / 1000000);
}

/* The single teardown path of a scrape. */
static void
scrape_free(struct scrape *s)
{
	if (s->bev != NULL)
		bufferevent_free(s->bev);
	event_free(s->ev_deadline);
	event_free(s->ev_fail);
	free(s->request);
	free(s);
}

/* Reports the result (error NULL: success) and frees the scrape. */
static void
scrape_finish(struct scrape *s, const char *error)
{
	struct scrape_result r;

	if (s->bev != NULL)
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	memset(&r, 0, sizeof r);
	r.status = s->state == SCRAPE_BODY ? s->head.status : 0;
	r.error = error;
	r.duration_ms = scrape_elapsed_ms(s);
	r.bytes = s->bytes;
	r.timed_out = s->timed_out;
	log_debug("scrape of port %u: %s after %d ms, %zu bytes", s->port,
	    error != NULL ? error : "ok", r.duration_ms, r.bytes);
	s->cb.done(&r, s->arg);
	scrape_free(s);
}

static void
scrape_finishf(struct scrape *s, const char *fmt, ...) PRINTFLIKE(2, 3);

static void
scrape_finishf(struct scrape *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->error, sizeof s->error, fmt, ap);
	va_end(ap);
	scrape_finish(s, s->error);
}

/* Hands body bytes on; returns 1 when the scrape has finished. */
static int
scrape_body(struct scrape *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t n = evbuffer_get_length(in);

	if (s->head.length >= 0 &&
	    (unsigned long long)n >
		(unsigned long long)s->head.length - s->bytes)
		n = (size_t)((unsigned long long)s->head.length - s->bytes);
	if (s->bytes + n > s->body_max) {
		scrape_finishf(s, "body larger than %zu bytes", s->body_max);
		return 1;
	}
	if (n > 0) {
		struct evbuffer *chunk = evbuffer_new();
		int rc;

		if (chunk == NULL)
			fatalx("evbuffer_new");
		evbuffer_remove_buffer(in, chunk, n);
		s->bytes += n;
		rc = s->cb.body(chunk, s->arg);
		evbuffer_free(chunk);
		if (rc != 0) {
			scrape_finish(s, "stopped by the caller");
			return 1;
		}
	}
	/* Bytes past Content-Length are the worker's problem, not ours. */
	evbuffer_drain(in, evbuffer_get_length(in));
	if (s->head.length >= 0 && s->bytes == (size_t)s->head.length) {
		scrape_finish(s, NULL);
		return 1;
	}
	return 0;
}

/* Works through what has arrived; returns 1 when the scrape has finished
 * (and s is gone). */
static int
scrape_process(struct scrape *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t len, consumed = 0;
	char *cause = NULL;
	int rc;

	if (s->state == SCRAPE_HEAD) {
		len = evbuffer_get_length(in);
		if (len > SCRAPE_HEAD_MAX)
			len = SCRAPE_HEAD_MAX;
		rc = scrape_parse_head((const char *)evbuffer_pullup(in,
					   (ev_ssize_t)len),
		    len, &s->head, &consumed, &cause);
		if (rc == 0)
			return 0;
		if (rc < 0) {
			scrape_finishf(s, "%s", cause);
			free(cause);
			return 1;
		}
		evbuffer_drain(in, consumed);
		if (s->head.length > 0 &&
		    (unsigned long long)s->head.length > s->body_max) {
			scrape_finishf(s,
			    "body of %lld bytes is larger than "
			    "%zu",
			    s->head.length, s->body_max);
			return 1;
		}
		s->state = SCRAPE_BODY;
		if (s->cb.head(&s->head, s->arg) != 0) {
			scrape_finish(s, "stopped by the caller");
			return 1;
		}
		if (s->head.length == 0) {
			scrape_finish(s, NULL);
			return 1;
		}
	}
	if (s->state == SCRAPE_BODY)
		return scrape_body(s);
	return 0;
}

static void scrape_event_cb(struct bufferevent *, short, void *);

/*
 * Takes what the socket holds now, in big reads: libevent 2.1 reads 4 KiB
 * per wakeup, a dozen trips through the loop for a typical scrape.  Stops
 * at the read watermark, as libevent would.  Returns 1 at the end of the
 * stream; errors are left for libevent to find on its next read.
 */
static int
scrape_read_more(struct scrape *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	int fd = (int)bufferevent_getfd(s->bev), i;
	struct evbuffer_iovec v;
	ssize_t n = -1;

	/* The bufferevent keeps its input's end frozen but for its reads. */
	evbuffer_unfreeze(in, 0);
	for (i = 0; i < SCRAPE_READS_MAX &&
	     evbuffer_get_length(in) < SCRAPE_BUFFER_MAX;
	     i++) {
		if (evbuffer_reserve_space(in, SCRAPE_READ_MAX, &v, 1) < 1)
			break;
		n = read(fd, v.iov_base, v.iov_len);
		v.iov_len = n > 0 ? (size_t)n : 0;
		evbuffer_commit_space(in, &v, 1);
		if (n <= 0)
			break;
	}
	evbuffer_freeze(in, 0);
	return n == 0;
}

static void
scrape_read_cb(struct bufferevent *bev, void *arg)
{
	struct scrape *s = arg;

	if (s->state != SCRAPE_CONNECTING && scrape_read_more(s)) {
		scrape_event_cb(bev, BEV_EVENT_EOF | BEV_EVENT_READING, s);
		return;
	}
	scrape_process(s);
}

static int scrape_connect(struct scrape *);

static void
scrape_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct scrape *s = arg;
	int err = EVUTIL_SOCKET_ERROR();

	if (s->ipv6 && s->state == SCRAPE_CONNECTING)
		err = s->ipv4_error;

	if (what & BEV_EVENT_CONNECTED) {
		s->state = SCRAPE_HEAD;
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* Whatever arrived with the close is still ours to read. */
		if (s->state != SCRAPE_CONNECTING && scrape_process(s))
			return;
		if (s->state != SCRAPE_BODY) {
			scrape_finishf(s,
			    "connection closed before a "
			    "complete response head");
		} else {
			if (s->head.length >= 0)
				scrape_finishf(s,
				    "body cut short after %zu "
				    "of %lld bytes",
				    s->bytes, s->head.length);
			else
				scrape_finish(s, NULL);
		}
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		/* A worker may listen on ::1 only; try it once. */
		if (s->state == SCRAPE_CONNECTING && !s->ipv6) {
			s->ipv6 = 1;
			s->ipv4_error = err;
			bufferevent_free(s->bev);
			s->bev = NULL;
			if (scrape_connect(s) == 0)
				return;
		}
		scrape_finishf(s, "%s port %u: %s",
		    s->state == SCRAPE_CONNECTING ? "cannot connect to"
						  : "connection to",
		    s->port, err != 0 ? strerror(err) : "connection refused");
	}
}

static void
scrape_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scrape *s = arg;

	s->timed_out = 1;
	scrape_finishf(s, "no complete answer within %d ms%s", s->deadline_ms,
	    s->state == SCRAPE_CONNECTING ? " (connecting)"
		: s->state == SCRAPE_HEAD ? " (waiting for the head)"
					  : " (reading the body)");
}

static void
scrape_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct scrape *s = arg;

	scrape_finish(s, s->error);
}

static int
scrape_connect(struct scrape *s)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len;
	int fd;

	memset(&ss, 0, sizeof ss);
	if (s->ipv6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(s->port);
		sin6->sin6_addr = in6addr_loopback;
		len = sizeof *sin6;
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(s->port);
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof *sin;
	}
	/* Our own socket: libevent's would leak into children forked meanwhile. */
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		snprintf(s->error, sizeof s->error, "socket: %s",
		    strerror(errno));
		return -1;
	}
	s->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (s->bev == NULL)
		fatalx("bufferevent_socket_new");
	bufferevent_setcb(s->bev, scrape_read_cb, NULL, scrape_event_cb, s);
	/* Read no more than one step past the cap before we look. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, SCRAPE_BUFFER_MAX);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	evbuffer_add(bufferevent_get_output(s->bev), s->request,
	    strlen(s->request));
	s->state = SCRAPE_CONNECTING;
	if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&ss,
		(int)len) != 0) {
		snprintf(s->error, sizeof s->error,
		    "cannot connect to port "
		    "%u: %s",
		    s->port, strerror(errno));
		return -1;
	}
	return 0;
}

static int
scrape_header_ok(const char *v, size_t max)
{
	size_t i;

	for (i = 0; v[i] != '\0'; i++) {
		if (i >= max || (unsigned char)v[i] < 0x20 ||
		    (unsigned char)v[i] >= 0x7f)
			return 0;
	}
	return 1;
}

/*
 * Starts GET path on 127.0.0.1:port (then [::1]:port if refused).  accept
 * may be NULL; one that is not plain printable text is not sent.  Never
 * fails: every failure, even a path that is not an absolute path of
 * printable bytes, is reported through done, so callers have one path.
 */
/* A scrape not started yet: done comes through ev_fail or the I/O. */
static struct scrape *
scrape_new(struct event_base *base, uint16_t port, int deadline_ms,
    size_t body_max, const struct scrape_callbacks *cb, void *arg)
{
	struct scrape *s = xcalloc(1, sizeof *s);

	s->base = base;
	s->port = port;
	s->deadline_ms = deadline_ms;
	s->body_max = body_max;
	s->cb = *cb;
	s->arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &s->started);
	s->ev_deadline = evtimer_new(base, scrape_deadline_cb, s);
	s->ev_fail = evtimer_new(base, scrape_fail_cb, s);
	if (s->ev_deadline == NULL || s->ev_fail == NULL)
		fatalx("evtimer_new");
	return s;
}

/*
 * A scrape of port that its caller refused before any byte went out:
 * error is reported through done from the loop, like any other failure.
 */
struct scrape *
scrape_refuse(struct event_base *base, uint16_t port, const char *error,
    const struct scrape_callbacks *cb, void *arg)
{
	struct timeval now = { 0, 0 };
	struct scrape *s = scrape_new(base, port, 0, 0, cb, arg);

	snprintf(s->error, sizeof s->error, "%s", error);
	event_add(s->ev_fail, &now);
	return s;
}

struct scrape *
scrape_start(struct event_base *base, uint16_t port, const char *path,
    const char *accept, int gzip, int deadline_ms, size_t body_max,
    const struct scrape_callbacks *cb, void *arg)
{
	struct timeval tv, now = { 0, 0 };
	struct scrape *s;
	char *accept_line = NULL;

	s = scrape_new(base, port, deadline_ms, body_max, cb, arg);
	/* done never runs inside scrape_start: callers are not ready yet. */
	if (path[0] != '/' || !scrape_header_ok(path, SCRAPE_PATH_MAX) ||
	    strchr(path, ' ') != NULL) {
		snprintf(s->error, sizeof s->error,
		    "cannot scrape port %u: not an absolute path of printable "
		    "bytes",
		    port);
		event_add(s->ev_fail, &now);
		return s;
	}
	if (accept != NULL && scrape_header_ok(accept, SCRAPE_ACCEPT_MAX))
		xasprintf(&accept_line, "Accept: %s\r\n", accept);
	xasprintf(&s->request,
	    "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%u\r\n"
	    "User-Agent: promfork/%s\r\n%s%sConnection: close\r\n\r\n",
	    path, port, PROMFORK_VERSION,
	    accept_line != NULL ? accept_line : "",
	    gzip ? "Accept-Encoding: gzip\r\n" : "");
	free(accept_line);

	tv.tv_sec = deadline_ms / 1000;
	tv.tv_usec = (deadline_ms % 1000) * 1000;
	event_add(s->ev_deadline, &tv);
	if (scrape_connect(s) != 0)
		event_add(s->ev_fail, &now);
	return s;
}

/*
 * Stops reading the worker (paused 1) or goes on (0): a caller whose
 * client is slow holds the worker back instead of queueing its answer.
 * The deadline still runs.
 */
void
scrape_pause(struct scrape *s, int paused)
{
	if (s == NULL || s->bev == NULL || s->state != SCRAPE_BODY)
		return;
	if (paused)
		bufferevent_disable(s->bev, EV_READ);
	else
		bufferevent_enable(s->bev, EV_READ);
}

/* Stops a scrape without calling done. */
void
scrape_cancel(struct scrape *s)
{
	if (s != NULL)
		scrape_free(s);
}
