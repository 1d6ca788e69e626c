/*
 * The registration API: HTTP/1.1 with JSON bodies on a Unix socket.  The
 * peer is known by SO_PEERCRED; it may lease a port for itself or for one of
 * its ancestors, and only when that process belongs to the tree promfork
 * runs, so no outside process can take or release a port.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "promfork.h"

#define API_BODY_MAX (16 * 1024)
#define API_HEADER_MAX (8 * 1024)
#define API_DEADLINE_MS 5000
#define API_CONNS_MAX 256

struct api {
	struct registry *reg;
	struct api_config cfg;
	struct http_server *server;
};

/* Creates the listening socket; a live socket at path is never stolen. */
/*
 * Without --socket: a private directory (*dir, removed at exit) keeps the
 * socket ours alone.
 */
void
api_socket_default(char **path, char **dir)
{
	const char *parent = getenv("RUNTIME_DIRECTORY");
	char *tmpl;

	if (parent == NULL || *parent == '\0')
		parent = getenv("XDG_RUNTIME_DIR");
	if (parent == NULL || *parent == '\0' || access(parent, W_OK) != 0)
		parent = "/tmp";
	xasprintf(&tmpl, "%s/promfork.XXXXXX", parent);
	if (mkdtemp(tmpl) == NULL)
		fatal("cannot create a directory for the socket in %s", parent);
	chmod(tmpl, 0755);
	*dir = tmpl;
	xasprintf(path, "%s/promfork.sock", tmpl);
}

/*
 * What is at a --socket path: -1 with *cause when it cannot be ours (too
 * long, not a socket, a live promfork answers on it), 0 when nothing is
 * there, 1 for a socket left behind by a promfork that died.  Shared by
 * api_listen and --check.
 */
int
api_socket_probe(const char *path, char **cause)
{
	struct sockaddr_un sun;
	struct stat sb;
	int fd, live;

	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause,
		    "--socket %s is longer than %zu bytes; choose "
		    "a shorter path",
		    path, sizeof sun.sun_path - 1);
		return -1;
	}
	if (lstat(path, &sb) != 0)
		return 0;
	if (!S_ISSOCK(sb.st_mode)) {
		xasprintf(cause,
		    "--socket %s exists and is not a "
		    "socket; remove it or choose another path",
		    path);
		return -1;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	live =
	    fd != -1 && connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0;
	if (fd != -1)
		close(fd);
	if (live) {
		xasprintf(cause,
		    "--socket %s is in use by another "
		    "promfork; stop it or choose another path",
		    path);
		return -1;
	}
	return 1;
}

int
api_listen(const char *path, char **cause)
{
	struct sockaddr_un sun;
	int fd;

	switch (api_socket_probe(path, cause)) {
	case -1:
		return -1;
	case 1:
		unlink(path); /* left behind by a promfork that died */
		break;
	}
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd == -1) {
		xasprintf(cause, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		xasprintf(cause, "--socket %s: cannot bind: %s", path,
		    strerror(errno));
		close(fd);
		return -1;
	}
	/* Workers may run as another user; the process tree is the guard. */
	if (chmod(sun.sun_path, 0666) != 0 || listen(fd, 128) != 0) {
		xasprintf(cause, "--socket %s: %s", sun.sun_path,
		    strerror(errno));
		close(fd);
		unlink(sun.sun_path);
		return -1;
	}
	return fd;
}

/*
 * May peer lease (or release) the process st describes?  It must be the
 * peer or an ancestor of it, so a process speaks only for itself or its own
 * parents, and it must be one of promfork's descendants (orphans are
 * re-parented to promfork, the subreaper, so they stay inside).
 */
int
api_authorise(const struct api_config *cfg, pid_t peer,
    const struct proc_stat *st, char **cause)
{
	pid_t self = cfg->tree_root != 0 ? cfg->tree_root : getpid();

	if (st->pid <= 1 || st->pid == self) {
		xasprintf(cause, "pid %d cannot be leased a port",
		    (int)st->pid);
		return -1;
	}
	if (!proc_in_tree(peer, st->pid)) {
		xasprintf(cause,
		    "process %d may lease a port only for itself "
		    "or its ancestors, not for pid %d",
		    (int)peer, (int)st->pid);
		return -1;
	}
	if (cfg->tree_root != 0 && !proc_in_tree(st->ppid, self)) {
		xasprintf(cause,
		    "process %d is not part of the command "
		    "promfork runs",
		    (int)st->pid);
		return -1;
	}
	return 0;
}

static int
api_id_in(unsigned int id, const unsigned int *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (v[i] == id)
			return 1;
	}
	return 0;
}

/*
 * Standalone: may this user register at all?  Root and promfork's own user
 * may; others only by --allow-uid, or --allow-gid for their primary or a
 * supplementary group.
 */
int
api_authorise_user(const struct api_config *cfg, uid_t uid, gid_t gid,
    const gid_t *groups, size_t ngroups, char **cause)
{
	size_t i;

	if (uid == 0 || uid == geteuid() ||
	    api_id_in(uid, cfg->allow_uids, cfg->nallow_uids) ||
	    api_id_in(gid, cfg->allow_gids, cfg->nallow_gids))
		return 0;
	for (i = 0; i < ngroups; i++) {
		if (api_id_in(groups[i], cfg->allow_gids, cfg->nallow_gids))
			return 0;
	}
	xasprintf(cause,
	    "user %u may not register: start promfork with "
	    "--allow-uid %u or --allow-gid for one of its groups",
	    (unsigned int)uid, (unsigned int)uid);
	return -1;
}

/* Standalone: checks the peer's user and groups, as of its connect(). */
static int
api_peer_user(struct api *api, struct http_conn *c, uid_t *uid, char **cause)
{
	struct ucred cred;
	gid_t groups[256];
	socklen_t glen = sizeof groups;
	size_t ngroups = 0;

	if (http_conn_peercred(c, &cred) != 0) {
		xasprintf(cause, "SO_PEERCRED: %s", strerror(errno));
		return -1;
	}
	*uid = cred.uid;
	/* More groups than fit, or an old kernel: the primary group counts. */
	if (getsockopt(http_conn_fd(c), SOL_SOCKET, SO_PEERGROUPS, groups,
		&glen) == 0)
		ngroups = glen / sizeof groups[0];
	return api_authorise_user(&api->cfg, cred.uid, cred.gid, groups,
	    ngroups, cause);
}

/* Standalone: one app must not end another's lease. */
static int
api_release_owner(uid_t peer_uid, const struct lease *l, char **cause)
{
	char path[32];
	struct stat sb;

	if (peer_uid == 0)
		return 0;
	snprintf(path, sizeof path, "/proc/%d", (int)l->pid);
	if (stat(path, &sb) == 0 && sb.st_uid != peer_uid) {
		xasprintf(cause, "worker %d belongs to another user's process",
		    l->worker);
		return -1;
	}
	return 0;
}

static json_t *
api_lease_json(const struct api *api, const struct lease *l, int full)
{
	char *target = target_address(api->cfg.tc, l->port);
	json_t *obj;

	obj = json_pack("{s:i, s:i, s:s}", "worker", l->worker, "port",
	    (int)l->port, "target", target);
	free(target);
	if (full) {
		json_object_set_new(obj, "pid", json_integer(l->pid));
		json_object_set_new(obj, "source",
		    json_string(lease_source_name(l->source)));
		json_object_set_new(obj, "started", json_integer(l->created));
		json_object_set_new(obj, "labels", labels_to_json(&l->labels));
	}
	return obj;
}

static int
api_peer(struct http_conn *c, pid_t *peer)
{
	struct ucred cred;

	if (http_conn_peercred(c, &cred) != 0 || cred.pid <= 0) {
		log_warn("SO_PEERCRED");
		return -1;
	}
	*peer = cred.pid;
	return 0;
}

/* Reads {"pid": N, "labels": {...}}; both are optional. */
static int
api_parse_register(const struct http_request *req, pid_t peer, pid_t *pid,
    struct labels *labels, char **cause)
{
	json_error_t err;
	json_t *body, *v;
	const char *key;
	int rc = -1;

	*pid = peer;
	if (req->body_len == 0)
		return 0;
	body =
	    json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &err);
	if (body == NULL) {
		xasprintf(cause, "body is not valid JSON: %s (line %d)",
		    err.text, err.line);
		return -1;
	}
	if (!json_is_object(body)) {
		*cause =
		    xstrdup("body must be a JSON object such as "
			    "{\"pid\": 1234, \"labels\": {\"role\": \"web\"}}");
		goto out;
	}
	json_object_foreach(body, key, v)
	{
		if (strcmp(key, "pid") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > INT_MAX) {
				*cause = xstrdup("\"pid\" must be a positive "
						 "integer");
				goto out;
			}
			*pid = (pid_t)json_integer_value(v);
		} else if (strcmp(key, "labels") == 0) {
			if (labels_from_json(labels, v, cause) != 0)
				goto out;
		} else {
			xasprintf(cause,
			    "unknown field \"%.64s\": only \"pid\" "
			    "and \"labels\" are known",
			    key);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(body);
	return rc;
}

static void
api_register(struct api *api, struct http_conn *c, struct http_request *req,
    pid_t peer)
{
	struct labels labels = { NULL, 0 };
	struct proc_ref ref;
	struct lease *l;
	char *cause = NULL;
	int created, status;
	pid_t pid;

	if (api_parse_register(req, peer, &pid, &labels, &cause) != 0) {
		http_reply_error(c, 400, "%s", cause);
		goto out;
	}
	/* A pid that names no live process (a dead worker's) is not found. */
	if (proc_ref_init(pid, &ref, &cause) != 0) {
		log_warnx("registration of pid %d refused: %s", (int)pid,
		    cause);
		http_reply_error(c, 404, "%s", cause);
		goto out;
	}
	if (api_authorise(&api->cfg, peer, &ref.st, &cause) != 0) {
		proc_ref_finish(&ref);
		log_warnx("registration refused: %s", cause);
		api->reg->stats.refusals++;
		http_reply_error(c, 403, "%s", cause);
		goto out;
	}
	l = registry_lease(api->reg, &ref, &labels, LEASE_API, -1, &created,
	    &status, &cause);
	if (l == NULL) {
		log_warnx("registration of pid %d refused: %s", (int)pid,
		    cause);
		http_reply_error(c, status, "%s", cause);
		goto out;
	}
	http_reply_json(c, created ? 201 : 200, api_lease_json(api, l, 0));
out:
	free(cause);
	labels_finish(&labels);
}

static void
api_list(struct api *api, struct http_conn *c)
{
	json_t *arr = json_array();
	size_t s;

	for (s = 0; s < api->reg->pool.size; s++) {
		if (api->reg->slots[s] != NULL)
			json_array_append_new(arr,
			    api_lease_json(api, api->reg->slots[s], 1));
	}
	http_reply_json(c, 200, arr);
}

/*
 * May peer release leases?  A process that holds a live lease is in the
 * tree: it was when it registered, and no process ever leaves it.  Others
 * are looked up.
 */
static int
api_authorise_release(struct api *api, pid_t peer, char **cause)
{
	struct lease *l = registry_find_pid(api->reg, peer);
	struct proc_stat st;

	if (l != NULL && l->pidfd != -1 && !proc_exited(l->pidfd))
		return 0;
	if (proc_stat_read(peer, &st, cause) != 0)
		return -1;
	return api_authorise(&api->cfg, peer, &st, cause);
}

static void
api_release(struct api *api, struct http_conn *c, const char *id, pid_t peer)
{
	struct lease *l = NULL;
	char *cause = NULL;
	long long worker;
	uid_t uid;

	if (decimal_parse(id, 0, INT_MAX, &worker, NULL) != 0) {
		http_reply_error(c, 400, "\"%.32s\" is not a worker number",
		    id);
		return;
	}
	if (api_authorise_release(api, peer, &cause) != 0) {
		log_warnx("release refused: %s", cause);
		http_reply_error(c, 403, "%s", cause);
		free(cause);
		return;
	}
	if ((l = registry_find_worker(api->reg, (int)worker)) == NULL) {
		http_reply_error(c, 404, "no worker %lld", worker);
		return;
	}
	if (api->cfg.tree_root == 0 &&
	    (api_peer_user(api, c, &uid, &cause) != 0 ||
		api_release_owner(uid, l, &cause) != 0)) {
		log_warnx("release refused: %s", cause);
		http_reply_error(c, 403, "%s", cause);
		free(cause);
		return;
	}
	lease_close(l, LEASE_END_RELEASE);
	http_reply(c, 204, NULL, "", 0);
}

static void
api_handle(struct http_conn *c, struct http_request *req, void *arg)
{
	struct api *api = arg;
	const char *path = req->target, *method = req->method;
	char *cause = NULL;
	uid_t uid;
	pid_t peer;

	if (api_peer(c, &peer) != 0) {
		http_reply_error(c, 500, "cannot identify the caller");
		return;
	}
	if (api->cfg.tree_root == 0 &&
	    api_peer_user(api, c, &uid, &cause) != 0) {
		log_warnx("request refused: %s", cause);
		api->reg->stats.refusals++;
		http_reply_error(c, 403, "%s", cause);
		free(cause);
		return;
	}
	if (strcmp(path, "/v1/workers") == 0) {
		if (strcmp(method, "POST") == 0)
			api_register(api, c, req, peer);
		else if (strcmp(method, "GET") == 0)
			api_list(api, c);
		else
			http_reply_error(c, 405,
			    "%s is not allowed here: use "
			    "GET or POST",
			    method);
	} else if (strncmp(path, "/v1/workers/", 12) == 0) {
		if (strcmp(method, "DELETE") == 0)
			api_release(api, c, path + 12, peer);
		else
			http_reply_error(c, 405,
			    "%s is not allowed here: use "
			    "DELETE",
			    method);
	} else
		http_reply_error(c, 404,
		    "no such resource: %.64s; try "
		    "/v1/workers",
		    path);
}

struct api *
api_create(struct event_base *base, int fd, struct registry *reg,
    const struct api_config *cfg)
{
	static const struct http_limits limits = {
		.header_max = API_HEADER_MAX,
		.body_max = API_BODY_MAX,
		.deadline_ms = API_DEADLINE_MS,
		.conns_max = API_CONNS_MAX,
	};
	struct api *api = xcalloc(1, sizeof *api);

	api->reg = reg;
	api->cfg = *cfg;
	api->server = http_server_create(base, fd, &limits, api_handle, api);
	return api;
}

void
api_free(struct api *api)
{
	if (api == NULL)
		return;
	http_server_free(api->server);
	free(api);
}
