/*
 * The HTTP listener (--listen), for Prometheus and for people: /targets
 * (http_sd), /metrics (own and per-worker), /workers/metrics (fan-out),
 * /workers/N/metrics (proxy), /api/v1/history, /-/healthy and /-/ready,
 * and the status page at /.  The routing lives here; the pages in their
 * own files.  One HTTP server per listening socket (--listen, repeatable,
 * and systemd's), all with this router; the larger answers are gzipped
 * when asked.  The listen address parser is pure, for tests and the
 * fuzzer.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <jansson.h>

#include "promfork.h"

#define WEB_HEADER_MAX (8 * 1024)
#define WEB_BODY_MAX (4 * 1024)
#define WEB_CONNS_MAX 128
/* One address may hold three quarters: a quarter is left for others. */
#define WEB_PEER_CONNS_MAX (WEB_CONNS_MAX * 3 / 4)
#define WEB_IDLE_MS 5000 /* at most; between requests of a kept-alive one */
#define WEB_LIFE_MS 60000 /* then the next answer closes the connection */
#define WEB_LISTEN_MAX 128 /* longer than any ADDR:PORT */
#define WEB_PROBE_MS 1000

struct web {
	/* one per listening socket, all with this router */
	struct http_server *servers[OPTIONS_LISTEN_MAX];
	size_t nservers;
	struct web_config cfg;
	struct metrics_sources src;
	int probe_ms; /* the status page's scrapes, well within the deadline */
	int proxy_ms; /* a proxied scrape, with time left to pass it on */
	struct fanout_scratch fanout;
	struct budget budget; /* for the answers being built */
	struct timespec started; /* for /-/ready's grace */
};

/*
 * Parses ADDR:PORT: an IPv4 address, an IPv6 address in brackets, or
 * nothing (":PORT", every address).  Numeric only, so that what promfork
 * binds never depends on a resolver.  Port 0 asks the kernel for one.
 */
int
web_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len,
    char **cause)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	char host[WEB_LISTEN_MAX];
	const char *colon, *port;
	size_t n = strlen(s);
	long long p;

	memset(ss, 0, sizeof *ss);
	if (n == 0 || n >= WEB_LISTEN_MAX)
		goto bad;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			goto bad;
		n = (size_t)(close - s - 1);
		port = close + 2;
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (decimal_parse(port, 0, 65535, &p, NULL) != 0)
			goto bad_port;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad;
		*len = sizeof *sin6;
		return 0;
	}
	if ((colon = strrchr(s, ':')) == NULL || strchr(s, ':') != colon)
		goto bad;
	n = (size_t)(colon - s);
	memcpy(host, s, n);
	host[n] = '\0';
	if (decimal_parse(colon + 1, 0, 65535, &p, NULL) != 0)
		goto bad_port;
	if (n == 0) {
		/* Every address: IPv6 and, through it, IPv4. */
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		sin6->sin6_addr = in6addr_any;
		*len = sizeof *sin6;
		return 0;
	}
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)p);
	if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		goto bad;
	*len = sizeof *sin;
	return 0;

bad_port:
	xasprintf(cause,
	    "--listen \"%.*s\": the port must be a number from 0 "
	    "to 65535",
	    WEB_LISTEN_MAX, s);
	return -1;
bad:
	xasprintf(cause,
	    "--listen \"%.*s\" is not ADDR:PORT with a numeric "
	    "address, e.g. 127.0.0.1:9400, [::1]:9400 or :9400",
	    WEB_LISTEN_MAX, s);
	return -1;
}

/* Binds and listens; done before anything starts, so errors stop us. */
int
web_listen(const char *s, char **cause)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	socklen_t len;
	int fd, one = 1, zero = 0, any6;

	if (web_parse_listen(s, &ss, &len, cause) != 0)
		return -1;
	any6 = ss.ss_family == AF_INET6 &&
	    memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &in6addr_any,
		sizeof in6addr_any) == 0;
	fd =
	    socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1 && any6 && errno == EAFNOSUPPORT) {
		/* No IPv6 on this host: every IPv4 address then. */
		in_port_t port = ((struct sockaddr_in6 *)&ss)->sin6_port;

		memset(&ss, 0, sizeof ss);
		sin->sin_family = AF_INET;
		sin->sin_port = port;
		len = sizeof *sin;
		any6 = 0;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	}
	if (fd == -1) {
		xasprintf(cause, "--listen %s: socket: %s", s, strerror(errno));
		return -1;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (any6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero,
		    sizeof zero);
	if (bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    listen(fd, WEB_CONNS_MAX) != 0) {
		xasprintf(cause, "--listen %s: cannot listen: %s", s,
		    strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* The port a listening socket is bound to. */
uint16_t
web_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		fatal("getsockname");
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/*
 * The address Prometheus should scrape the listener at: its own address,
 * or target_host when it listens on every address.
 */
char *
web_address(int fd, const char *target_host)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = sizeof ss;
	char host[INET6_ADDRSTRLEN];
	struct target_config tc;

	memset(&tc, 0, sizeof tc);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		fatal("getsockname");
	if (ss.ss_family == AF_INET6) {
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			tc.host = target_host;
		else
			tc.host = inet_ntop(AF_INET6, &sin6->sin6_addr, host,
			    sizeof host);
	} else {
		if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
			tc.host = target_host;
		else
			tc.host = inet_ntop(AF_INET, &sin->sin_addr, host,
			    sizeof host);
	}
	if (tc.host == NULL)
		fatal("inet_ntop");
	return target_address(&tc, web_port(fd));
}

/* Parses the N of /workers/N/metrics; -1 when it is not a worker number. */
static int
web_worker(const char *s, size_t len)
{
	long long v;

	/* one spelling per worker: /workers/03/metrics is not worker 3 */
	if (len > 1 && s[0] == '0')
		return -1;
	if (decimal_parse_n(s, len, 0, 99999, &v, NULL) != 0)
		return -1;
	return (int)v;
}

/*
 * How long a scrape made for Prometheus' request may take (proxy, fan-out):
 * Prometheus says its own timeout in X-Prometheus-Scrape-Timeout-Seconds;
 * never more than max_ms.
 */
int
web_scrape_deadline(const struct http_request *req, int max_ms)
{
	const char *v =
	    http_request_header(req, "X-Prometheus-Scrape-Timeout-Seconds");
	char *end;
	double secs;

	if (v == NULL)
		return max_ms;
	secs = strtod(v, &end);
	if (end == v || *end != '\0' || !isfinite(secs) || secs <= 0)
		return max_ms;
	if (secs * 1000 < max_ms)
		return secs * 1000 < 1 ? 1 : (int)(secs * 1000);
	return max_ms;
}

/* http_sd: the sd file's text, from the same renderer. */
static void
web_targets(struct web *w, struct http_conn *c, int gzip)
{
	size_t len;
	char *text = target_render(w->cfg.reg, w->cfg.tc, &len);

	gzip_reply(c, gzip, 200, "application/json", text, len);
	free(text);
}

static void
web_metrics(struct web *w, struct http_conn *c, int gzip)
{
	struct metrics_snapshot ms;
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL)
		fatalx("evbuffer_new");
	metrics_snapshot_take(&ms, &w->src);
	metrics_render(buf, &ms);
	metrics_snapshot_finish(&ms);
	gzip_reply(c, gzip, 200, HTTP_EXPOSITION_TYPE,
	    (const char *)evbuffer_pullup(buf, -1), evbuffer_get_length(buf));
	evbuffer_free(buf);
}

/* /api/v1/history[?since=T]: every slot's samples and lifetimes
 * (history.c). */
static void
web_history(struct web *w, struct http_conn *c, const char *query, int gzip)
{
	struct buf out = { NULL, 0, 0 };
	char *cause = NULL;
	time_t since;

	if (w->cfg.history == NULL) {
		http_reply_error(c, 404, "no history is kept");
		return;
	}
	if (history_parse_query(query, strcspn(query, "#"), &since, &cause) !=
	    0) {
		http_reply_error(c, 400, "%s", cause);
		free(cause);
		return;
	}
	history_render_json(w->cfg.history, time(NULL), since, &out);
	gzip_reply(c, gzip, 200, "application/json", out.data, out.len);
	buf_finish(&out);
}

/* What /-/ready decides on (ready.c). */
static void
web_ready(struct web *w, struct http_conn *c)
{
	const struct registry *reg = w->cfg.reg;
	struct ready_input in;
	struct timespec now;

	memset(&in, 0, sizeof in);
	in.command = w->cfg.spawn != NULL ||
	    (w->cfg.child != NULL && w->cfg.child->pid != 0);
	in.command_exited = w->cfg.spawn == NULL && w->cfg.child != NULL &&
	    w->cfg.child->exited;
	in.leases = reg->count;
	in.granted = reg->stats.registrations;
	clock_gettime(CLOCK_MONOTONIC, &now);
	in.since_start_ms = (long long)(now.tv_sec - w->started.tv_sec) * 1000 +
	    (now.tv_nsec - w->started.tv_nsec) / 1000000;
	in.grace_ms = READY_GRACE_MS;
	ready_serve(c, &in);
}

static void
web_handle(struct http_conn *c, struct http_request *req, void *arg)
{
	static const char prefix[] = "/workers/", suffix[] = "/metrics";
	struct web *w = arg;
	size_t len = strcspn(req->target, "?#"), plen = sizeof prefix - 1,
	       slen = sizeof suffix - 1;
	const char *path = req->target;
	int worker;

	if (strcmp(req->method, "GET") != 0) {
		http_reply_error(c, 405, "%s is not allowed: use GET",
		    req->method);
		return;
	}
	if (len == 1 && path[0] == '/')
		status_serve(c, w->cfg.reg, &w->src, w->probe_ms);
	else if (len == 8 && strncmp(path, "/targets", len) == 0)
		web_targets(w, c, gzip_wanted(req));
	else if (len == 10 && strncmp(path, "/-/healthy", len) == 0)
		ready_serve_healthy(c);
	else if (len == 8 && strncmp(path, "/-/ready", len) == 0)
		web_ready(w, c);
	else if (len == 8 && strncmp(path, "/metrics", len) == 0)
		web_metrics(w, c, gzip_wanted(req));
	else if (len == 15 && strncmp(path, "/api/v1/history", len) == 0)
		web_history(w, c,
		    path[len] == '?' ? path + len + 1 : path + len,
		    gzip_wanted(req));
	else if (len == 16 && strncmp(path, "/workers/metrics", len) == 0)
		fanout_serve(c, req, w->cfg.reg,
		    web_scrape_deadline(req, w->proxy_ms), &w->fanout);
	else if (len > plen + slen && strncmp(path, prefix, plen) == 0 &&
	    strncmp(path + len - slen, suffix, slen) == 0) {
		worker = web_worker(path + plen, len - plen - slen);
		if (worker < 0)
			http_reply_error(c, 404,
			    "no such page: workers are "
			    "numbered from 0, as in /workers/0/metrics");
		else
			proxy_serve(c, req, w->cfg.reg, worker,
			    web_scrape_deadline(req, w->proxy_ms));
	} else
		http_reply_error(c, 404,
		    "no such page: try /, /targets, /metrics, "
		    "/workers/metrics, /workers/N/metrics, "
		    "/api/v1/history, /-/healthy or /-/ready");
}

/*
 * Serves on every listening socket in fds (--listen, systemd's): a server
 * each, so that each keeps its own connection caps, all with one router.
 */
struct web *
web_create(struct event_base *base, const int *fds, size_t nfds,
    const struct web_config *cfg)
{
	struct http_limits limits = {
		.header_max = WEB_HEADER_MAX,
		.body_max = WEB_BODY_MAX,
		.deadline_ms = cfg->deadline_ms,
		.conns_max = WEB_CONNS_MAX,
		.idle_ms = cfg->deadline_ms < WEB_IDLE_MS ? cfg->deadline_ms
							  : WEB_IDLE_MS,
		.life_ms = WEB_LIFE_MS,
		.peer_conns_max = WEB_PEER_CONNS_MAX,
	};
	struct web *w = xcalloc(1, sizeof *w);
	size_t i;
	char *addr;

	if (nfds > OPTIONS_LISTEN_MAX)
		fatalx("%zu listening sockets, at most %d", nfds,
		    OPTIONS_LISTEN_MAX);
	w->cfg = *cfg;
	clock_gettime(CLOCK_MONOTONIC, &w->started);
	for (i = 0; i < nfds; i++) {
		addr = web_address(fds[i], "*");
		log_info("serving HTTP on %s", addr);
		free(addr);
		w->servers[i] =
		    http_server_create(base, fds[i], &limits, web_handle, w);
		if (cfg->guard != NULL)
			webguard_attach(cfg->guard, w->servers[i]);
	}
	w->nservers = nfds;
	w->src.reg = cfg->reg;
	w->src.sdfile = cfg->sdfile;
	w->src.child = cfg->child;
	w->src.http = w->servers;
	w->src.nhttp = w->nservers;
	w->src.spawn = cfg->spawn;
	w->src.discover = cfg->discover;
	w->src.history = cfg->history;
	budget_init(&w->budget,
	    cfg->budget_bytes > 0 ? cfg->budget_bytes
				  : (size_t)BUDGET_DEFAULT_MIB << 20);
	w->fanout.budget = &w->budget;
	w->src.budget = &w->budget;
	w->src.fanout = &w->fanout;
	w->probe_ms = cfg->deadline_ms / 2 < WEB_PROBE_MS ? cfg->deadline_ms / 2
							  : WEB_PROBE_MS;
	w->proxy_ms = cfg->deadline_ms * 3 / 4;
	return w;
}

void
web_free(struct web *w)
{
	size_t i;

	if (w == NULL)
		return;
	for (i = 0; i < w->nservers; i++)
		http_server_free(w->servers[i]);
	fanout_scratch_finish(&w->fanout);
	free(w);
}
