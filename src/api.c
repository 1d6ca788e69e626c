/*
 * The registration API: HTTP/1.1 with JSON bodies on a Unix socket.  The
 * peer is known by SO_PEERCRED and pinned at the accept; only the users who
 * may register can connect at all.  A peer may lease a port for itself or
 * for one of its ancestors, and only when that process belongs to the tree
 * promfork runs, so no outside process can take a port; a lease is released
 * or relabelled only by its own process, an ancestor of it, or root; the
 * operator's labels are the operator's.
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

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>

#include "promfork.h"

#define API_BODY_MAX (16 * 1024)
#define API_HEADER_MAX (8 * 1024)
#define API_DEADLINE_MS 5000
/* The final scrape of a retiring worker: its exit waits for it (the
 * clients give up after 2 s). */
#define API_RETIRE_MS 1000
#define API_RETIRE_BODY_MAX (8 * 1024 * 1024)

struct api {
	struct registry *reg;
	struct api_config cfg;
	struct http_server *server;
};

/*
 * The socket's mode, and its group (-1: left as it is): only the users who
 * may register can connect.  Wrapping a command: promfork's user and the
 * command's (with the command's group when it is another user).
 * Standalone: root and promfork's user; with --allow-uid or --allow-gid
 * everyone may connect, as a mode cannot name a list of users, and the
 * accept drops who is not on it.
 */
mode_t
api_socket_mode(const struct api_config *cfg, gid_t *gid)
{
	*gid = (gid_t)-1;
	if (cfg->tree_root != 0) {
		if (cfg->command_uid == geteuid())
			return 0600;
		*gid = cfg->command_gid;
		return 0660;
	}
	if (cfg->nallow_uids > 0 || cfg->nallow_gids > 0)
		return 0666;
	return 0600;
}

/*
 * Without --socket: a private directory (*dir, removed at exit) keeps the
 * socket ours alone.
 */
void
api_socket_default(const struct api_config *cfg, char **path, char **dir)
{
	const char *parent = getenv("RUNTIME_DIRECTORY");
	char *tmpl;
	mode_t mode;
	gid_t gid;

	if (parent == NULL || *parent == '\0')
		parent = getenv("XDG_RUNTIME_DIR");
	if (parent == NULL || *parent == '\0' || access(parent, W_OK) != 0)
		parent = "/tmp";
	xasprintf(&tmpl, "%s/promfork.XXXXXX", parent);
	if (mkdtemp(tmpl) == NULL)
		fatal("cannot create a directory for the socket in %s", parent);
	/* Like the socket (api_listen): for the users who may register. */
	mode = api_socket_mode(cfg, &gid);
	if (gid != (gid_t)-1 && chown(tmpl, (uid_t)-1, gid) != 0)
		mode = 0666;
	chmod(tmpl, 0700 | (mode & 0060 ? 0010 : 0) | (mode & 0006 ? 0001 : 0));
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

/* Creates the listening socket; a live socket at path is never stolen. */
int
api_listen(const char *path, const struct api_config *cfg, char **cause)
{
	struct sockaddr_un sun;
	mode_t mode;
	gid_t gid;
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
	mode = api_socket_mode(cfg, &gid);
	/*
	 * Not root (the units start promfork as its own user): the command's
	 * group cannot be given, so everyone may connect and the accept
	 * drops who may not register.
	 */
	if (gid != (gid_t)-1 && chown(sun.sun_path, (uid_t)-1, gid) != 0 &&
	    errno == EPERM) {
		log_debug("--socket %s: cannot give it group %u, so it is "
			  "open to all and the accept decides",
		    sun.sun_path, (unsigned int)gid);
		gid = (gid_t)-1;
		mode = 0666;
	}
	if ((gid != (gid_t)-1 && chown(sun.sun_path, (uid_t)-1, gid) != 0) ||
	    chmod(sun.sun_path, mode) != 0 || listen(fd, 128) != 0) {
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

/*
 * Standalone: may caller lease pid?  Its process must run as the caller
 * (root may lease anyone's), as a user who may register, and that user
 * may hold at most --max-leases-per-uid leases (counted: pid holds none
 * yet).  Adopting a saved lease asks the same with caller 0.
 */
int
api_authorise_process(const struct api_config *cfg, const struct registry *reg,
    uid_t caller, pid_t pid, int counted, uid_t *owner, int *status,
    char **cause)
{
	struct proc_creds pc;
	int held;

	*status = 403;
	if (proc_creds_read(pid, &pc, cause) != 0) {
		*status = proc_out_of_fds(errno) ? 503 : 404;
		return -1;
	}
	*owner = pc.uid;
	if (caller != 0 && pc.uid != caller) {
		xasprintf(cause,
		    "pid %d runs as user %u: user %u may lease only its own "
		    "processes",
		    (int)pid, (unsigned int)pc.uid, (unsigned int)caller);
		return -1;
	}
	if (api_authorise_user(cfg, pc.uid, pc.gid, pc.groups, pc.ngroups,
		cause) != 0)
		return -1;
	if (counted && cfg->max_leases_per_uid > 0 &&
	    (held = registry_count_uid(reg, pc.uid)) >=
		cfg->max_leases_per_uid) {
		*status = 429;
		xasprintf(cause,
		    "user %u holds %d leases, the most "
		    "--max-leases-per-uid allows",
		    (unsigned int)pc.uid, held);
		return -1;
	}
	return 0;
}

/*
* Wrapping a command: may this user connect?  Root, promfork's user and the
 * user the command runs as; the process tree is checked per request.
 */
int
api_authorise_uid(const struct api_config *cfg, uid_t uid, char **cause)
{
	if (uid == 0 || uid == geteuid() || uid == cfg->command_uid)
		return 0;
	xasprintf(cause,
	    "user %u is neither promfork's user nor the one the "
	    "command runs as",
	    (unsigned int)uid);
	return -1;
}

/*
 * At the accept, before the connection counts: a user who may not
 * register is turned away.  Standalone, the groups are those of the
 * peer's connect().
 */
static int
api_peer_accept(int fd, const struct http_peer *p, void *arg, char **cause)
{
	struct api *api = arg;
	gid_t groups[256];
	socklen_t glen = sizeof groups;
	size_t ngroups = 0;
	int rc;

	if (api->cfg.tree_root != 0)
		rc = api_authorise_uid(&api->cfg, p->cred.uid, cause);
	else {
		/* More groups than fit, or an old kernel: the primary
		 * group counts. */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) ==
		    0)
			ngroups = glen / sizeof groups[0];
		rc = api_authorise_user(&api->cfg, p->cred.uid, p->cred.gid,
		    groups, ngroups, cause);
	}
	if (rc != 0)
		registry_count_refusal(api->reg);
	return rc;
}

/*
 * May the peer (uid, pid) act on lease l: release it, retire it, change
 * its labels?  The lease's own process may, and its ancestors (a master
 * speaks for its workers), and root.  Wrapping a command, only processes
 * of its tree act on leases at all.  Standalone, the user that runs the
 * lease's process may too, as one app's tools manage its leases.
 */
int
api_authorise_owner(const struct api_config *cfg, uid_t uid, pid_t peer,
    const struct lease *l, char **cause)
{
	char path[32];
	struct stat sb;

	if (peer == l->pid)
		return 0; /* it was in the tree when it registered */
	if (cfg->tree_root != 0 && !proc_in_tree(peer, cfg->tree_root)) {
		xasprintf(cause,
		    "process %d is not part of the command "
		    "promfork runs",
		    (int)peer);
		return -1;
	}
	if (uid == 0 || proc_in_tree(l->pid, peer))
		return 0;
	if (cfg->tree_root == 0) {
		snprintf(path, sizeof path, "/proc/%d", (int)l->pid);
		if (stat(path, &sb) == 0 && sb.st_uid == uid)
			return 0;
	}
	xasprintf(cause,
	    "worker %d belongs to pid %d: only that process, its "
	    "ancestors or root may change it",
	    l->worker, (int)l->pid);
	return -1;
}

/*
 * May a worker set these labels?  Not those the operator sets: the names
 * given with --label, and job and instance, which Prometheus gives every
 * target.
 */
int
api_labels_check(const struct api_config *cfg, const struct labels *labels,
    char **cause)
{
	const struct labels *op = cfg->tc != NULL ? cfg->tc->labels : NULL;
	size_t i;

	for (i = 0; i < labels->n; i++) {
		const char *name = labels->v[i].name;

		if (strcmp(name, "job") == 0 || strcmp(name, "instance") == 0) {
			xasprintf(cause,
			    "label \"%s\" is Prometheus' own; "
			    "a worker cannot set it",
			    name);
			return -1;
		}
		if (op != NULL && labels_get(op, name) != NULL) {
			xasprintf(cause,
			    "label \"%.64s\" is set by the operator "
			    "(--label); a worker cannot set it",
			    name);
			return -1;
		}
	}
	return 0;
}

/*
 * Is the peer still the process that connected?  Else the connection is
 * refused and closed: its identity must not pass to another process.
 */
static int
api_peer_pinned(struct http_conn *c)
{
	const struct http_peer *p = http_conn_peer(c);

	if (http_conn_peer_alive(c))
		return 1;
	log_warnx("request refused: peer pid %d has exited or its pid now "
		  "names another process",
	    (int)p->cred.pid);
	http_conn_last(c);
	http_reply_error(c, 403,
	    "the process that connected (pid %d) is gone; connect again",
	    (int)p->cred.pid);
	return 0;
}

/*
 * Where the worker should serve its metrics: with --proxy-targets every
 * scrape comes through promfork, on loopback, so the worker binds
 * 127.0.0.1 and nothing else can reach it; for direct targets Prometheus
 * dials the worker, so no "bind" (all interfaces).
 */
static void
api_lease_bind(const struct api *api, json_t *obj)
{
	if (api->cfg.tc != NULL && api->cfg.tc->proxy_address != NULL)
		json_object_set_new(obj, "bind", json_string("127.0.0.1"));
}

static json_t *
api_lease_json(const struct api *api, const struct lease *l, int full)
{
	char *target = target_address(api->cfg.tc, l->port);
	json_t *obj;

	obj = json_pack("{s:i, s:i, s:s}", "worker", l->worker, "port",
	    (int)l->port, "target", target);
	free(target);
	if (!full)
		api_lease_bind(api, obj);
	if (full) {
		json_object_set_new(obj, "pid", json_integer(l->pid));
		json_object_set_new(obj, "source",
		    json_string(lease_source_name(l->source)));
		json_object_set_new(obj, "started", json_integer(l->created));
		json_object_set_new(obj, "labels", labels_to_json(&l->labels));
	}
	return obj;
}

/* Reads {"pid": N, "labels": {...}, "slot": N}; all are optional. */
static int
api_parse_register(const struct http_request *req, pid_t peer, pid_t *pid,
    struct labels *labels, int *has_labels, int *slot, char **cause)
{
	json_error_t err;
	json_t *body, *v;
	const char *key;
	int rc = -1;

	*pid = peer;
	*has_labels = 0;
	*slot = -1;
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
			*has_labels = 1;
		} else if (strcmp(key, "slot") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    json_integer_value(v) > 65535) {
				*cause = xstrdup("\"slot\" must be a worker "
						 "number from 0 to 65535");
				goto out;
			}
			*slot = (int)json_integer_value(v);
		} else {
			xasprintf(cause,
			    "unknown field \"%.64s\": only \"pid\", "
			    "\"labels\" and \"slot\" are known",
			    key);
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(body);
	return rc;
}

/* The HTTP status that says why the registry gave no lease. */
static int
api_registry_status(enum registry_error error)
{
	switch (error) {
	case REGISTRY_GONE:
		return 404;
	case REGISTRY_FULL:
	case REGISTRY_NOFDS:
		return 503;
	case REGISTRY_OK:
		break;
	}
	return 500;
}

/*
 * Is the peer of c the lease's owner (api_authorise_owner)?  Else it is
 * answered 403: what is the request, for the log.  A retire asks the same.
 */
static int
api_owner(struct api *api, struct http_conn *c, const struct lease *l,
    const char *what)
{
	const struct http_peer *p = http_conn_peer(c);
	char *cause = NULL;

	if (api_authorise_owner(&api->cfg, p->cred.uid, p->cred.pid, l,
		&cause) == 0)
		return 0;
	log_warnx("%s refused: %s", what, cause);
	registry_count_refusal(api->reg);
	http_reply_error(c, 403, "%s", cause);
	free(cause);
	return -1;
}

/*
 * The lease exists and the body names labels: they replace its labels when
 * they differ and the peer may change them.  0 to answer with the lease.
 */
static int
api_relabel(struct api *api, struct http_conn *c, struct lease *l,
    const struct labels *labels)
{
	if (labels_equal(&l->labels, labels))
		return 0;
	if (api_owner(api, c, l, "relabelling") != 0)
		return -1;
	registry_relabel(api->reg, l, labels);
	return 0;
}

/* Standalone: the checks of api_authorise_process for the peer. */
static int
api_register_owner(struct api *api, struct http_conn *c, pid_t pid,
    uid_t *owner, int *status, char **cause)
{
	const struct http_peer *p = http_conn_peer(c);

	return api_authorise_process(&api->cfg, api->reg, p->cred.uid, pid,
	    registry_find_pid(api->reg, pid) == NULL, owner, status, cause);
}

static void
api_register(struct api *api, struct http_conn *c, struct http_request *req,
    pid_t peer)
{
	struct labels labels = { NULL, 0 };
	enum registry_error error;
	struct proc_ref ref;
	struct lease *l;
	char *cause = NULL;
	int created, has_labels, slot, status = 403;
	uid_t owner = (uid_t)-1;
	pid_t pid;

	if (api_parse_register(req, peer, &pid, &labels, &has_labels, &slot,
		&cause) != 0 ||
	    api_labels_check(&api->cfg, &labels, &cause) != 0) {
		http_reply_error(c, 400, "%s", cause);
		goto out;
	}
	/* A pid that names no live process (a dead worker's) is not found;
	 * running out of descriptors is ours, and passes. */
	if (proc_ref_init(pid, &ref, &cause) != 0) {
		status = proc_out_of_fds(errno) ? 503 : 404;
		log_warnx("registration of pid %d refused: %s", (int)pid,
		    cause);
		http_reply_error(c, status, "%s", cause);
		goto out;
	}
	if (api_authorise(&api->cfg, peer, &ref.st, &cause) != 0 ||
	    (api->cfg.tree_root == 0 &&
		api_register_owner(api, c, pid, &owner, &status, &cause) !=
		    0)) {
		proc_ref_finish(&ref);
		log_warnx("registration refused: %s", cause);
		registry_count_refusal(api->reg);
		http_reply_error(c, status, "%s", cause);
		goto out;
	}
	/* A walk from the peer read /proc by its pid: is it still itself? */
	if (pid != peer && !api_peer_pinned(c)) {
		proc_ref_finish(&ref);
		goto out;
	}
	l = registry_find_pid(api->reg, pid);
	if (has_labels && l != NULL && l->starttime == ref.st.starttime &&
	    api_relabel(api, c, l, &labels) != 0) {
		proc_ref_finish(&ref);
		goto out;
	}
	l = registry_lease_prefer(api->reg, &ref, &labels, LEASE_API, slot,
	    &created, &error, &cause);
	if (l == NULL) {
		log_warnx("registration of pid %d refused: %s", (int)pid,
		    cause);
		http_reply_error(c, api_registry_status(error), "%s", cause);
		goto out;
	}
	if (api->cfg.tree_root == 0)
		l->uid = owner;
	http_reply_json(c, created ? 201 : 200, api_lease_json(api, l, 0));
out:
	free(cause);
	labels_finish(&labels);
}

static void
api_list(struct api *api, struct http_conn *c)
{
	json_t *arr = json_array();
	struct lease *l;

	REGISTRY_FOREACH (l, api->reg)
		json_array_append_new(arr, api_lease_json(api, l, 1));
	http_reply_json(c, 200, arr);
}

/*
 * Wrapping a command: is the peer one of its processes?  One that holds a
 * live lease is: it was when it registered, and no process ever leaves.
 */
static int
api_peer_in_tree(struct api *api, pid_t peer, char **cause)
{
	struct lease *l;

	if (api->cfg.tree_root == 0)
		return 0;
	l = registry_find_pid(api->reg, peer);
	if (l != NULL && l->pidfd != -1 && !proc_exited(l->pidfd))
		return 0;
	if (proc_in_tree(peer, api->cfg.tree_root))
		return 0;
	xasprintf(cause, "process %d is not part of the command promfork runs",
	    (int)peer);
	return -1;
}

/*
 * The lease of worker id (idlen bytes of text) that the peer may end, by
 * DELETE /v1/workers/N or a retire: only the lease's process, its
 * ancestors or root (api_authorise_owner).  NULL when not, and then the
 * answer has been sent; what: the request, for the log.
 */
static struct lease *
api_release_check(struct api *api, struct http_conn *c, const char *id,
    size_t idlen, const char *what)
{
	const struct http_peer *p = http_conn_peer(c);
	struct lease *l = NULL;
	char *cause = NULL;
	long long worker;

	if (decimal_parse_n(id, idlen, 0, INT_MAX, &worker, NULL) != 0) {
		http_reply_error(c, 400, "\"%.*s\" is not a worker number",
		    (int)(idlen < 32 ? idlen : 32), id);
		return NULL;
	}
	/* Outsiders learn nothing, not even which workers exist. */
	if (api_peer_in_tree(api, p->cred.pid, &cause) != 0) {
		log_warnx("%s refused: %s", what, cause);
		registry_count_refusal(api->reg);
		http_reply_error(c, 403, "%s", cause);
		free(cause);
		return NULL;
	}
	if ((l = registry_find_worker(api->reg, (int)worker)) == NULL) {
		http_reply_error(c, 404, "no worker %lld", worker);
		return NULL;
	}
	if (api_owner(api, c, l, what) != 0)
		return NULL;
	/* Ancestry read from /proc was matched to the peer's pid: is it still
	 * the peer's? */
	if (p->cred.pid != l->pid && !api_peer_pinned(c))
		return NULL;
	return l;
}

static void
api_release(struct api *api, struct http_conn *c, const char *id)
{
	struct lease *l;

	if ((l = api_release_check(api, c, id, strlen(id), "release")) == NULL)
		return;
	lease_close(l, LEASE_END_RELEASE);
	http_reply(c, 204, NULL, "", 0);
}

/*
 * A worker about to exit asked for its final scrape: the answer, taken
 * within API_RETIRE_MS, is kept as its lifetime's final values and the
 * lease ends.  Should the client go, the scrape and the end go on.
 */
struct api_retire {
	struct registry *reg;
	struct http_conn *conn; /* NULL once the client has gone */
	struct collect *collect;
	uint64_t stamp;
	struct buf body;
};

static void
api_retire_free(struct api_retire *r)
{
	if (r->conn != NULL)
		http_conn_on_close(r->conn, NULL, NULL);
	buf_finish(&r->body);
	free(r);
}

static void
api_retire_close_cb(void *arg)
{
	struct api_retire *r = arg;

	r->conn = NULL;
}

static int
api_retire_body_cb(struct collect_item *it, struct evbuffer *chunk, void *arg)
{
	struct api_retire *r = arg;
	size_t n = evbuffer_get_length(chunk);

	buf_add(&r->body, evbuffer_pullup(chunk, -1), n);
	evbuffer_drain(chunk, n);
	return 0;
}

static void
api_retire_done_cb(struct collect_item *it, size_t n, void *arg)
{
	struct api_retire *r = arg;
	struct http_conn *c = r->conn;
	struct lease *l;

	r->collect = NULL; /* it frees itself after this */
	l = registry_find_lease(r->reg, it->worker, it->pid, it->starttime);
	if (l != NULL) {
		if (it->ok && it->status == 200)
			lease_keep_body(l, r->stamp, &r->body);
		else
			log_warnx("worker %d: final scrape: %s", it->worker,
			    it->ok ? "not a 200 answer" : it->error);
		lease_close(l, LEASE_END_RETIRE);
	}
	if (c != NULL) {
		http_conn_on_close(c, NULL, NULL);
		r->conn = NULL;
		http_reply(c, 204, NULL, "", 0);
	}
	api_retire_free(r);
}

/* POST /v1/workers/N/retire, authorised as a release is. */
static void
api_retire(struct api *api, struct http_conn *c, const char *id, size_t idlen)
{
	static const struct collect_callbacks cb = { NULL, api_retire_body_cb,
		api_retire_done_cb };
	static const struct collect_config cfg = { HTTP_EXPOSITION_ACCEPT,
		API_RETIRE_MS, API_RETIRE_BODY_MAX, 0 };
	struct api_retire *r;
	struct lease *l;

	if ((l = api_release_check(api, c, id, idlen, "retire")) == NULL)
		return;
	r = xcalloc(1, sizeof *r);
	r->reg = api->reg;
	r->conn = c;
	r->stamp = registry_stamp(api->reg);
	http_conn_on_close(c, api_retire_close_cb, r);
	r->collect =
	    collect_start(api->reg->base, api->reg, &l, 1, &cfg, &cb, r);
}

/* What follows "/v1/workers/" in path, or NULL. */
static const char *
api_worker_path(const char *path)
{
	static const char prefix[] = "/v1/workers/";

	if (strncmp(path, prefix, sizeof prefix - 1) != 0)
		return NULL;
	return path + sizeof prefix - 1;
}

static void
api_handle(struct http_conn *c, struct http_request *req, void *arg)
{
	struct api *api = arg;
	const char *path = req->target, *method = req->method, *slash, *id;
	pid_t peer = http_conn_peer(c)->cred.pid;

	if (peer <= 0) {
		http_reply_error(c, 500, "cannot identify the caller");
		return;
	}
	if (!api_peer_pinned(c))
		return;
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
	} else if ((id = api_worker_path(path)) != NULL &&
	    (slash = strrchr(path, '/')) >= id) {
		if (strcmp(slash, "/retire") != 0)
			http_reply_error(c, 404,
			    "no such resource: %.64s; try "
			    "/v1/workers/N/retire",
			    path);
		else if (strcmp(method, "POST") == 0)
			api_retire(api, c, id, (size_t)(slash - id));
		else
			http_reply_error(c, 405,
			    "%s is not allowed here: use POST", method);
	} else if (strncmp(path, "/v1/workers/", 12) == 0) {
		if (strcmp(method, "DELETE") == 0)
			api_release(api, c, path + 12);
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
		.idle_ms = API_IDLE_MS,
		.life_ms = API_LIFE_MS,
		.peer_conns_max = API_PEER_CONNS_MAX,
	};
	struct api *api = xcalloc(1, sizeof *api);

	api->reg = reg;
	api->cfg = *cfg;
	api->server = http_server_create(base, fd, &limits, api_handle, api);
	http_server_set_accept(api->server, api_peer_accept);
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
