/*
 * --web.config.file at run time: the configuration in force, its TLS
 * context, and the hooks it puts on a listener's HTTP server (the TLS
 * context at each accept, basic auth and the extra headers before each
 * request).  The file, and the certificate, key and CA files it names,
 * are checked for a change (device, inode, size, modification and change
 * time) at each accept and each request: a stat is about a microsecond,
 * it sees an editor's rename, a plain rewrite and a Kubernetes Secret's
 * symlink swap alike, and needs no inotify descriptor or timer.  A changed
 * file that does not load keeps the old configuration and is logged once
 * per change.  A connection made under an older configuration is closed
 * at its next request, unanswered, so that every answer is given under
 * the TLS policy in force (HTTP clients retry such a request on a new
 * connection).
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "promfork.h"

#define WEBGUARD_FILES 4 /* the config, cert_file, key_file, client_ca_file */
#define WEBGUARD_REALM "promfork"

struct webguard_stamp {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	int err; /* errno of the stat, 0 when it worked */
};

struct webguard {
	char *path;
	struct webconfig *wc;
	SSL_CTX *ctx; /* NULL without TLS */
	char *head; /* extra header lines of every answer */
	char *head_401; /* the same and WWW-Authenticate */
	struct webguard_stamp stamps[WEBGUARD_FILES]; /* of what is in force */
	struct webguard_stamp failed[WEBGUARD_FILES]; /* of a refused file */
	int have_failed;
	struct auth *auth;
};

static void
webguard_stamp(const char *path, struct webguard_stamp *st)
{
	struct stat sb;

	memset(st, 0, sizeof *st);
	if (path == NULL)
		return;
	if (stat(path, &sb) != 0) {
		st->err = errno;
		return;
	}
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtime = sb.st_mtim;
	st->ctime = sb.st_ctim;
}

static void
webguard_stamps(const char *path, const struct webconfig *wc,
    struct webguard_stamp *st)
{
	webguard_stamp(path, &st[0]);
	webguard_stamp(wc != NULL ? wc->cert_file : NULL, &st[1]);
	webguard_stamp(wc != NULL ? wc->key_file : NULL, &st[2]);
	webguard_stamp(wc != NULL ? wc->client_ca_file : NULL, &st[3]);
}

/* Reads and builds everything; NULL config with *cause when it fails. */
static struct webconfig *
webguard_load(const char *path, SSL_CTX **ctx, char **cause)
{
	struct webconfig *wc;

	*ctx = NULL;
	if ((wc = webconfig_read(path, cause)) == NULL)
		return NULL;
	if (wc->tls && (*ctx = tls_ctx_create(wc, path, cause)) == NULL) {
		webconfig_free(wc);
		return NULL;
	}
	return wc;
}

static void
webguard_set(struct webguard *g, struct webconfig *wc, SSL_CTX *ctx)
{
	char *head = xstrdup(""), *next;
	size_t i;

	webconfig_free(g->wc);
	SSL_CTX_free(g->ctx); /* connections hold their own reference */
	g->wc = wc;
	g->ctx = ctx;
	for (i = 0; i < wc->nheaders; i++) {
		/* promfork always sends this one */
		if (strcmp(wc->headers[i].name, "X-Content-Type-Options") == 0)
			continue;
		xasprintf(&next, "%s%s: %s\r\n", head, wc->headers[i].name,
		    wc->headers[i].value);
		free(head);
		head = next;
	}
	free(g->head);
	free(g->head_401);
	g->head = head;
	xasprintf(&g->head_401,
	    "%sWWW-Authenticate: Basic realm=\"" WEBGUARD_REALM
	    "\", charset=\"UTF-8\"\r\n",
	    head);
}

struct webguard *
webguard_create(const char *path, char **cause)
{
	struct webguard *g;
	struct webconfig *wc;
	SSL_CTX *ctx;

	if ((wc = webguard_load(path, &ctx, cause)) == NULL)
		return NULL;
	g = xcalloc(1, sizeof *g);
	g->path = xstrdup(path);
	g->auth = auth_create();
	webguard_set(g, wc, ctx);
	webguard_stamps(path, wc, g->stamps);
	log_info("%s: TLS %s, %zu basic-auth user%s", path,
	    wc->tls ? "on" : "off", wc->nusers, wc->nusers == 1 ? "" : "s");
	return g;
}

/*
 * Takes up a changed file; returns 1 when a new configuration is in force,
 * 0 when nothing changed, -1 when the change did not load (the old
 * configuration stays).
 */
int
webguard_reload(struct webguard *g)
{
	struct webguard_stamp now[WEBGUARD_FILES];
	struct webconfig *wc;
	SSL_CTX *ctx;
	char *cause = NULL;

	webguard_stamps(g->path, g->wc, now);
	if (memcmp(now, g->stamps, sizeof now) == 0)
		return 0;
	if (g->have_failed && memcmp(now, g->failed, sizeof now) == 0)
		return -1;
	if ((wc = webguard_load(g->path, &ctx, &cause)) == NULL) {
		log_warnx("%s; the configuration in force stays", cause);
		free(cause);
		memcpy(g->failed, now, sizeof now);
		g->have_failed = 1;
		return -1;
	}
	g->have_failed = 0;
	webguard_set(g, wc, ctx);
	/* The new file may name other files. */
	webguard_stamps(g->path, wc, g->stamps);
	log_info("%s reloaded: TLS %s, %zu basic-auth user%s", g->path,
	    wc->tls ? "on" : "off", wc->nusers, wc->nusers == 1 ? "" : "s");
	return 1;
}

static SSL_CTX *
webguard_tls_cb(void *arg)
{
	struct webguard *g = arg;

	webguard_reload(g);
	return g->ctx;
}

/*
 * The health checks answer without a password: an orchestrator's probe
 * (the kubelet's) cannot keep a secret, and all they tell is "ok" or why
 * not ready.  TLS and client certificates still apply.
 */
static int
webguard_path_is_open(const char *target)
{
	size_t len = strcspn(target, "?");

	return (len == 10 && strncmp(target, "/-/healthy", len) == 0) ||
	    (len == 8 && strncmp(target, "/-/ready", len) == 0);
}

static int
webguard_gate_cb(struct http_conn *c, struct http_request *req, void *arg)
{
	struct webguard *g = arg;

	webguard_reload(g);
	/* No request is answered under a TLS policy no longer in force (a
	 * client certificate now required, say): the client's next try
	 * makes a new handshake. */
	if (http_conn_tls_ctx(c) != g->ctx) {
		http_conn_drop(c, "the web configuration changed");
		return -1;
	}
	if (!webguard_path_is_open(req->target) &&
	    !auth_check(g->auth, g->wc,
		http_request_header(req, "Authorization"))) {
		http_conn_headers(c, g->head_401);
		http_reply_error(c, 401,
		    "unauthorized: give a user and password of the web "
		    "configuration (HTTP basic auth)");
		return -1;
	}
	http_conn_headers(c, g->head);
	return 0;
}

/* Puts TLS, auth and the headers on every connection of s. */
void
webguard_attach(struct webguard *g, struct http_server *s)
{
	http_server_set_tls(s, webguard_tls_cb, g);
	http_server_set_gate(s, webguard_gate_cb, g);
}

void
webguard_free(struct webguard *g)
{
	if (g == NULL)
		return;
	webconfig_free(g->wc);
	SSL_CTX_free(g->ctx);
	auth_free(g->auth);
	free(g->head);
	free(g->head_401);
	free(g->path);
	free(g);
}
