/*
 * The registration API end to end inside one test process: the test is the
 * daemon (api + event loop) and a forked child is the client, so the child
 * is inside "promfork's" process tree, as a real worker is.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <grp.h>
#include <sys/stat.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static char dir[] = "/tmp/promfork-test-api.XXXXXX";
static char sock[256];
static struct event_base *base;
static struct registry reg;
static struct api *api;
static struct target_config tc = { .host = "127.0.0.1" };

static void
start_cfg(uint16_t low, uint16_t high, const struct api_config *cfg)
{
	char *cause = NULL;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof sock, "%s/s", dir);
	base = event_base_new();
	registry_init(&reg, base, low, high, helpers_probe_all_free, NULL);
	fd = api_listen(sock, cfg, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	api = api_create(base, fd, &reg, cfg);
}

static void
start(uint16_t low, uint16_t high)
{
	struct api_config cfg = { .tree_root = getpid(),
		.tc = &tc,
		.command_uid = geteuid(),
		.command_gid = getegid() };

	start_cfg(low, high, &cfg);
}

static void
teardown(void)
{
	if (base == NULL)
		return;
	api_free(api);
	registry_finish(&reg);
	event_base_free(base);
	unlink(sock);
	rmdir(dir);
}

TestSuite(api, .fini = teardown, .timeout = 20);

/* Client side, in the child: send raw, read the answer until close. */
static void
client_exchange(const char *raw, int out)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct timeval tv = { 5, 0 };
	char buf[8192];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	strcpy(sun.sun_path, sock);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0)
		_exit(3);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	/* A server that refuses at the accept may have answered and closed
	 * before we send: the send fails (EPIPE), the answer is still there
	 * to read. */
	if (*raw != '\0')
		(void)send(fd, raw, strlen(raw), MSG_NOSIGNAL);
	while (
	    len < sizeof buf && (n = read(fd, buf + len, sizeof buf - len)) > 0)
		len += (size_t)n;
	if (write(out, buf, len) != (ssize_t)len)
		_exit(5);
}

struct collect {
	char *buf;
	size_t len;
};

static void
collect_cb(evutil_socket_t fd, short ev, void *arg)
{
	struct collect *c = arg;
	ssize_t n = read(fd, c->buf + c->len, 8192 - c->len);

	if (n <= 0)
		event_base_loopbreak(base);
	else
		c->len += (size_t)n;
}

/* Serves until the client kid closes its end of pipe p; its answer. */
static char *
collect_from(pid_t kid, int p[2])
{
	struct collect c = { calloc(1, 8193), 0 };
	struct event *ev;

	close(p[1]);
	ev = event_new(base, p[0], EV_READ | EV_PERSIST, collect_cb, &c);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	close(p[0]);
	waitpid(kid, NULL, 0);
	return c.buf;
}

/*
 * Runs one exchange from a child process while the loop serves it, until
 * the client closes the pipe.  With detach the client is a grandchild that
 * has been re-parented away from us, i.e. outside our process tree.
 */
static char *
exchange(const char *raw, int detach)
{
	pid_t kid;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	kid = fork();
	if (kid == 0) {
		close(p[0]);
		if (detach) {
			pid_t parent = getpid();
			if (fork() != 0)
				_exit(0);
			while (getppid() == parent)
				usleep(1000);
		}
		client_exchange(raw, p[1]);
		_exit(0);
	}
	return collect_from(kid, p);
}

static int
status_of(const char *answer)
{
	int status = 0;

	sscanf(answer, "HTTP/1.1 %d", &status);
	return status;
}

static json_t *
body_of(const char *answer)
{
	const char *b = strstr(answer, "\r\n\r\n");

	return b == NULL ? NULL : json_loads(b + 4, JSON_DECODE_ANY, NULL);
}

static char *
post(const char *body)
{
	char *raw, *ans;

	xasprintf(&raw,
	    "POST /v1/workers HTTP/1.1\r\nConnection: close\r\n"
	    "Content-Length: %zu\r\n\r\n%s",
	    strlen(body), body);
	ans = exchange(raw, 0);
	free(raw);
	return ans;
}

Test(api, register_self_list_and_again)
{
	json_t *j;
	char *ans;
	int i;

	start(20000, 20003);
	ans = post("");
	cr_assert_eq(status_of(ans), 201, "%s", ans);
	j = body_of(ans);
	cr_assert_eq(json_integer_value(json_object_get(j, "worker")), 0);
	cr_assert_eq(json_integer_value(json_object_get(j, "port")), 20000);
	cr_assert_str_eq(json_string_value(json_object_get(j, "target")),
	    "127.0.0.1:20000");
	cr_assert_null(json_object_get(j, "bind"),
	    "direct targets: the worker serves on every interface");
	json_decref(j);
	free(ans);
	/*
	 * The client exited, so its lease ends when the loop runs: at once
	 * with a pidfd, within the 500 ms poll without one (under valgrind,
	 * which knows no pidfd_open).  Bounded: 3 s.
	 */
	for (i = 0; i < 60 && reg.count > 0; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (reg.count > 0)
			usleep(50 * 1000);
	}
	cr_assert_eq(reg.count, 0, "a dead worker's lease ends");
}

/* Issue 15 point 9: behind the proxy the worker is told to bind
 * loopback, where only promfork (and this host) can reach it. */
Test(api, proxied_targets_bind_loopback)
{
	json_t *j;
	char *ans;

	tc.proxy_address = "127.0.0.1:9399";
	start(20000, 20003);
	ans = post("");
	cr_assert_eq(status_of(ans), 201, "%s", ans);
	j = body_of(ans);
	cr_assert_str_eq(json_string_value(json_object_get(j, "bind")),
	    "127.0.0.1", "%s", ans);
	json_decref(j);
	free(ans);
	tc.proxy_address = NULL;
}

/* Answers sent at once must not strand requests already read behind them. */
Test(api, pipelined_requests_all_answered_in_order)
{
	const char *p;
	char *ans;
	int n = 0;

	start(20000, 20003);
	ans = exchange("POST /v1/workers HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
		       "GET /v1/workers HTTP/1.1\r\n\r\n"
		       "DELETE /v1/workers/0 HTTP/1.1\r\n\r\n"
		       "GET /v1/nothing HTTP/1.1\r\nConnection: close\r\n\r\n",
	    0);
	for (p = ans; (p = strstr(p, "HTTP/1.1 ")) != NULL; p++)
		n++;
	cr_assert_eq(n, 4, "four answers: %s", ans);
	p = strstr(ans, "HTTP/1.1 201");
	cr_assert_not_null(p, "%s", ans);
	p = strstr(p, "HTTP/1.1 200");
	cr_assert_not_null(p, "%s", ans);
	p = strstr(p, "HTTP/1.1 204");
	cr_assert_not_null(p, "%s", ans);
	cr_assert_not_null(strstr(p, "HTTP/1.1 404"), "%s", ans);
	free(ans);
}

Test(api, same_pid_again_gets_the_same_lease)
{
	char *ans;

	start(20000, 20003);
	ans = exchange("POST /v1/workers HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
		       "POST /v1/workers HTTP/1.1\r\nContent-Length: 0\r\n"
		       "Connection: close\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 201, "%s", ans);
	cr_assert(strstr(ans, "HTTP/1.1 200 OK") != NULL, "%s", ans);
	cr_assert_eq(strstr(strstr(ans, "HTTP/1.1 200"), "\"port\":20000") !=
		NULL,
	    1, "%s", ans);
	free(ans);
}

Test(api, promfork_itself_and_init_are_refused)
{
	char *ans, body[64];

	start(20000, 20003);
	snprintf(body, sizeof body, "{\"pid\": %d}", (int)getpid());
	ans = post(body);
	cr_assert_eq(status_of(ans), 403, "promfork itself is refused: %s",
	    ans);
	free(ans);
	ans = post("{\"pid\": 1}");
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	free(ans);
}

/* A dead worker's pid names no process: 404, not 403 (issue #9). */
Test(api, dead_pid_is_not_found)
{
	char *ans, body[64];
	pid_t kid = fork();

	if (kid == 0)
		_exit(0);
	waitpid(kid, NULL, 0);
	start(20000, 20003);
	snprintf(body, sizeof body, "{\"pid\": %d}", (int)kid);
	ans = post(body);
	cr_assert_eq(status_of(ans), 404, "%s", ans);
	cr_assert_eq(reg.count, 0);
	free(ans);
}

/*
 * Out of descriptors once the connection is accepted: the pidfd cannot be
 * opened, and that is promfork's trouble (503), not "no process" (404).
 */
Test(api, out_of_descriptors_is_503)
{
	struct rlimit rl = { 64, 64 };
	char *ans;
	int fds[64], n = 0;

	/* valgrind keeps descriptors of its own above the limit we set */
	if (helpers_under_valgrind())
		cr_skip_test("not under valgrind");
	start(20000, 20003);
	cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	while (n < 64 && (fds[n] = dup(0)) != -1)
		n++;
	cr_assert(n > 3 && errno == EMFILE);
	/* the exchange's pipe takes two; one comes back when its write end is
	 * closed after the fork, for the accepted connection */
	close(fds[--n]);
	close(fds[--n]);
	ans = post("");
	cr_assert_eq(status_of(ans), 503, "%s", ans);
	cr_assert(strstr(ans, "out of file descriptors") != NULL, "%s", ans);
	cr_assert_eq(reg.count, 0);
	free(ans);
	while (n > 0)
		close(fds[--n]);
	ans = post("");
	cr_assert_eq(status_of(ans), 201, "then it works: %s", ans);
	free(ans);
}

Test(api, list_shows_leases)
{
	struct lease *l;
	json_t *j;
	char *ans, *cause = NULL;
	enum registry_error error;
	int created;
	pid_t kid = fork();

	if (kid == 0) {
		pause();
		_exit(0);
	}
	start(20000, 20003);
	l = registry_lease_pid(&reg, kid, NULL, LEASE_API, -1, &created, &error,
	    &cause);
	cr_assert_not_null(l, "%s", cause);
	ans = exchange("GET /v1/workers HTTP/1.1\r\nConnection: close\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 200, "%s", ans);
	j = body_of(ans);
	cr_assert_eq(json_array_size(j), 1, "%s", ans);
	cr_assert_eq(json_integer_value(
			 json_object_get(json_array_get(j, 0), "pid")),
	    kid);
	json_decref(j);
	free(ans);
	ans = exchange("DELETE /v1/workers/0 HTTP/1.1\r\nConnection: close\r\n"
		       "\r\n",
	    0);
	cr_assert_eq(status_of(ans), 204, "%s", ans);
	cr_assert_eq(reg.count, 0);
	free(ans);
	ans = exchange("DELETE /v1/workers/0 HTTP/1.1\r\nConnection: close\r\n"
		       "\r\n",
	    0);
	cr_assert_eq(status_of(ans), 404, "%s", ans);
	free(ans);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
}

Test(api, bad_requests)
{
	char *ans, big[20000];

	start(20000, 20003);
	ans = post("{");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	cr_assert(strstr(ans, "not valid JSON") != NULL, "%s", ans);
	free(ans);
	ans = post("[]");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	ans = post("{\"pid\": \"12\"}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	ans = post("{\"pid\": -4}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	ans = post("{\"pids\": 4}");
	cr_assert(strstr(ans, "unknown field") != NULL, "%s", ans);
	free(ans);
	ans = post("{\"labels\": {\"__address__\": \"x:1\"}}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	ans = post("{\"labels\": {\"worker\": \"9\"}}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	memset(big, ' ', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	ans = post(big);
	cr_assert_eq(status_of(ans), 413, "%s", ans);
	free(ans);
	ans = exchange("PUT /v1/workers HTTP/1.1\r\nConnection: close\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 405, "%s", ans);
	free(ans);
	ans = exchange("GET /v2 HTTP/1.1\r\nConnection: close\r\n\r\n", 0);
	cr_assert_eq(status_of(ans), 404, "%s", ans);
	free(ans);
	ans = exchange("DELETE /v1/workers/x HTTP/1.1\r\nConnection: close\r\n"
		       "\r\n",
	    0);
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
	ans = exchange("garbage\r\n\r\n", 0);
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
}

Test(api, exhausted_range_is_503)
{
	struct lease *l;
	char *ans, *cause = NULL;
	enum registry_error error;
	int created;
	pid_t kid = fork();

	if (kid == 0) {
		pause();
		_exit(0);
	}
	start(20000, 20000);
	l = registry_lease_pid(&reg, kid, NULL, LEASE_API, -1, &created, &error,
	    &cause);
	cr_assert_not_null(l);
	ans = post("");
	cr_assert_eq(status_of(ans), 503, "%s", ans);
	cr_assert(strstr(ans, "widen --port-range") != NULL, "%s", ans);
	free(ans);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
}

Test(api, process_outside_the_tree_is_refused)
{
	char *ans;

	start(20000, 20003);
	/* Orphans must not come back to us: the test runner may have made
	 * this process a subreaper. */
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	ans = exchange("POST /v1/workers HTTP/1.1\r\nConnection: close\r\n"
		       "Content-Length: 0\r\n\r\n",
	    1);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	cr_assert(strstr(ans, "not part of the command") != NULL, "%s", ans);
	cr_assert_eq(reg.count, 0);
	free(ans);
}

/* Forks a child that waits until killed; ours to kill, and
 * killed with us even if an assert fails. */
static pid_t
fork_idle(void)
{
	pid_t kid = fork();

	if (kid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	return kid;
}

static const char release0[] = "DELETE /v1/workers/0 HTTP/1.1\r\n"
			       "Connection: close\r\n\r\n";

/* A child leased worker 0 (the api started), waiting until killed. */
static pid_t
lease_idle_child(void)
{
	enum registry_error error;
	char *cause = NULL;
	int created;
	pid_t kid = fork_idle();

	cr_assert_not_null(registry_lease_pid(&reg, kid, NULL, LEASE_API, -1,
			       &created, &error, &cause),
	    "%s", cause);
	return kid;
}

Test(api, release_from_outside_the_tree_is_refused)
{
	char *ans;
	pid_t kid;

	start(20000, 20003);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	kid = lease_idle_child();
	ans = exchange(release0, 1);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	cr_assert_eq(reg.count, 1, "the lease stays");
	free(ans);
	kill(kid, SIGKILL);
	waitpid(kid, NULL, 0);
}

Test(api, socket_in_use_is_refused)
{
	char *cause = NULL;

	start(20000, 20003);
	struct api_config cfg = { .tree_root = getpid() };

	cr_assert_eq(api_listen(sock, &cfg, &cause), -1);
	cr_assert(strstr(cause, "in use") != NULL, "%s", cause);
	free(cause);
}

Test(api, standalone_users_and_groups)
{
	static const uid_t uids[] = { 1000 };
	static const gid_t gids[] = { 50 };
	struct api_config cfg = { .tree_root = 0, .tc = &tc };
	const gid_t groups[] = { 7, 50 };
	char *cause = NULL;

	cr_assert_eq(api_authorise_user(&cfg, 0, 0, NULL, 0, &cause), 0,
	    "root may");
	cr_assert_eq(api_authorise_user(&cfg, geteuid(), 1, NULL, 0, &cause), 0,
	    "promfork's own user may");
	cr_assert_eq(api_authorise_user(&cfg, 12345, 12345, groups, 2, &cause),
	    -1);
	cr_assert(strstr(cause, "--allow-uid 12345") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	cfg.allow_uids = uids;
	cfg.nallow_uids = 1;
	cfg.allow_gids = gids;
	cfg.nallow_gids = 1;
	cr_assert_eq(api_authorise_user(&cfg, 1000, 1000, NULL, 0, &cause), 0);
	cr_assert_eq(api_authorise_user(&cfg, 1001, 50, NULL, 0, &cause), 0,
	    "primary group");
	cr_assert_eq(api_authorise_user(&cfg, 1001, 1001, groups, 2, &cause), 0,
	    "supplementary group");
	cr_assert_eq(api_authorise_user(&cfg, 1001, 1001, groups, 1, &cause),
	    -1);
	free(cause);
}

/* Like exchange, from a child that first becomes uid (when not -1). */
static char *
exchange_as(const char *raw, uid_t uid)
{
	pid_t kid;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	kid = fork();
	if (kid == 0) {
		close(p[0]);
		if (uid != (uid_t)-1 &&
		    (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
			setresuid(uid, uid, uid) != 0))
			_exit(6);
		client_exchange(raw, p[1]);
		_exit(0);
	}
	return collect_from(kid, p);
}

/* Standalone on a socket other users can reach; acting as them needs root. */
static void
start_standalone(uint16_t low, const struct api_config *cfg)
{
	char *cause = NULL;
	int fd;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	cr_assert_not_null(mkdtemp(dir));
	chmod(dir, 0755);
	snprintf(sock, sizeof sock, "%s/s", dir);
	base = event_base_new();
	registry_init(&reg, base, low, low + 3, helpers_probe_all_free, NULL);
	fd = api_listen(sock, cfg, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	api = api_create(base, fd, &reg, cfg);
}

Test(api, standalone_refuses_other_users)
{
	static const char reg_raw[] =
	    "POST /v1/workers HTTP/1.1\r\n"
	    "Connection: close\r\nContent-Length: 0\r\n\r\n";
	struct api_config cfg = { .tree_root = 0, .tc = &tc };
	char *ans;

	start_standalone(40100, &cfg);

	ans = exchange_as(reg_raw, 65534);
	cr_assert_str_eq(ans, "", "the socket's mode keeps it out: %s", ans);
	free(ans);
	/* Past a mode that lets everyone in (as --allow-uid needs), the
	 * accept turns it away, before it sends anything. */
	chmod(sock, 0666);
	ans = exchange_as("", 65534);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	cr_assert(strstr(ans, "--allow-uid 65534") != NULL, "%s", ans);
	free(ans);
	ans = exchange_as(reg_raw, (uid_t)-1);
	cr_assert_eq(status_of(ans), 201, "root may: %s", ans);
	free(ans);
}

/* Trust boundaries (issue 15): who may connect, act on a lease, label. */

Test(api, socket_modes)
{
	static const uid_t uids[] = { 1000 };
	struct api_config cfg = { .tree_root = 1,
		.command_uid = geteuid(),
		.command_gid = 77 };
	struct stat sb;
	gid_t gid;

	cr_assert_eq(api_socket_mode(&cfg, &gid), 0600, "the command is us");
	cr_assert_eq(gid, (gid_t)-1);
	cfg.command_uid = geteuid() + 1;
	cr_assert_eq(api_socket_mode(&cfg, &gid), 0660, "another user");
	cr_assert_eq(gid, 77, "through the command's group");
	cfg.tree_root = 0;
	cr_assert_eq(api_socket_mode(&cfg, &gid), 0600, "standalone");
	cfg.allow_uids = uids;
	cfg.nallow_uids = 1;
	cr_assert_eq(api_socket_mode(&cfg, &gid), 0666,
	    "standalone with --allow-uid: the accept decides");
	start(20000, 20003);
	cr_assert_eq(stat(sock, &sb), 0);
	cr_assert_eq(sb.st_mode & 07777, 0600, "mode %o", sb.st_mode & 07777);
}

/* Wrapping: another user is turned away at the accept, before it counts. */
Test(api, other_user_dropped_at_accept)
{
	char *ans;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	start(20000, 20003);
	chmod(dir, 0755);
	chmod(sock, 0666); /* as if the mode were wrong: the accept holds */
	ans = exchange_as("", 65534);
	cr_assert_eq(status_of(ans), 403, "answered at once: %s", ans);
	cr_assert(strstr(ans, "neither promfork's user") != NULL, "%s", ans);
	cr_assert_eq(reg.stats.refusals, 1);
	free(ans);
}

/* Runs the loop until fd has an answer or is closed, up to ms. */
static char *
answer_on(int fd, int ms)
{
	char *buf = calloc(1, 8193);
	size_t len = 0;
	ssize_t n;
	int i;

	fcntl(fd, F_SETFL, O_NONBLOCK);
	for (i = 0; i < ms / 10; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = read(fd, buf + len, 8192 - len);
		if (n == 0)
			break;
		if (n > 0) {
			len += (size_t)n;
			if (strstr(buf, "\r\n\r\n") != NULL)
				break;
		}
		usleep(10 * 1000);
	}
	return buf;
}

static int
connect_sock(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sun.sun_path, sock);
	if (connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One user cannot take every connection: another still gets in. */
Test(api, connections_capped_per_user)
{
	static const uid_t uids[] = { 65534 };
	static const char reg_raw[] =
	    "POST /v1/workers HTTP/1.1\r\n"
	    "Connection: close\r\nContent-Length: 0\r\n\r\n";
	struct api_config cfg = { .tree_root = 0,
		.tc = &tc,
		.allow_uids = uids,
		.nallow_uids = 1 };
	int fds[API_PEER_CONNS_MAX], extra, i;
	char *ans;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	start_cfg(20000, 20003, &cfg);
	chmod(dir, 0755);
	for (i = 0; i < API_PEER_CONNS_MAX; i++) {
		/* Within the backlog: the loop accepts every few. */
		if (i % 32 == 0)
			event_base_loop(base, EVLOOP_NONBLOCK);
		fds[i] = connect_sock();
		cr_assert_geq(fds[i], 0, "connection %d", i);
	}
	event_base_loop(base, EVLOOP_NONBLOCK);
	extra = connect_sock();
	cr_assert_geq(extra, 0);
	ans = answer_on(extra, 2000);
	cr_assert_eq(status_of(ans), 503, "over this user's share: %s", ans);
	cr_assert(strstr(ans, "from you") != NULL, "%s", ans);
	free(ans);
	close(extra);
	ans = exchange_as(reg_raw, 65534);
	cr_assert_eq(status_of(ans), 201, "another user still registers: %s",
	    ans);
	free(ans);
	for (i = 0; i < API_PEER_CONNS_MAX; i++)
		close(fds[i]);
}

/* A kept-alive connection that goes quiet is closed at the idle timeout,
 * well before the request deadline. */
Test(api, idle_connection_closed)
{
	static const char get[] = "GET /v1/workers HTTP/1.1\r\n\r\n";
	struct timespec t0, t1;
	char *ans, buf[16];
	long long ms;
	int fd, i;

	start(20000, 20003);
	fd = connect_sock();
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, get, sizeof get - 1), (ssize_t)sizeof get - 1);
	ans = answer_on(fd, 2000);
	cr_assert_eq(status_of(ans), 200, "%s", ans);
	cr_assert(strstr(ans, "keep-alive") != NULL, "%s", ans);
	free(ans);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < 400; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (read(fd, buf, sizeof buf) == 0)
			break;
		usleep(10 * 1000);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000LL +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert(i < 400, "closed");
	cr_assert(ms >= API_IDLE_MS - 100 && ms < API_IDLE_MS + 1000,
	    "closed after %lld ms idle, not at the %d ms deadline", ms, 5000);
	close(fd);
}

/* Sends fd over s (SCM_RIGHTS). */
static void
send_fd(int s, int fd)
{
	char c = 'f', cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr msg = { 0 };
	struct cmsghdr *cm;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	if (sendmsg(s, &msg, 0) != 1)
		_exit(7);
}

static int
recv_fd(int s)
{
	char c, cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = { &c, 1 };
	struct msghdr msg = { 0 };
	struct cmsghdr *cm;
	int fd;

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof cbuf;
	cr_assert_eq(recvmsg(s, &msg, 0), 1);
	cm = CMSG_FIRSTHDR(&msg);
	cr_assert_not_null(cm);
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	return fd;
}

/*
 * A child of ours with pid want, made by setting the kernel's last pid
 * (root only); -1 when another process took the pid first.  It waits.
 */
static pid_t
fork_at(pid_t want)
{
	char text[32];
	int attempt, fd;
	pid_t kid;

	for (attempt = 0; attempt < 20; attempt++) {
		fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
		if (fd == -1)
			return -1;
		snprintf(text, sizeof text, "%d", (int)want - 1);
		if (write(fd, text, strlen(text)) < 0) {
			close(fd);
			return -1;
		}
		close(fd);
		if ((kid = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			pause();
			_exit(0);
		}
		if (kid == want)
			return kid;
		kill(kid, SIGKILL);
		waitpid(kid, NULL, 0);
	}
	return -1;
}

/*
 * The peer's identity must not outlive it: a worker connects and hands
 * the connection on, then exits, and its pid is given to a new worker of
 * the tree.  The connection's holder must not speak for that new worker.
 */
Test(api, peer_identity_dies_with_the_peer)
{
	static const char reg_raw[] =
	    "POST /v1/workers HTTP/1.1\r\nContent-Length: 29\r\n\r\n"
	    "{\"labels\": {\"who\": \"thief\"}}\n";
	pid_t a, recycled;
	int sv[2], fd, i;
	char *ans;

	start(20000, 20003);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	if ((a = fork()) == 0) {
		int c = connect_sock();
		char x;

		if (c == -1)
			_exit(3);
		send_fd(sv[1], c);
		(void)read(sv[1], &x, 1); /* exits when told */
		_exit(0);
	}
	fd = recv_fd(sv[0]);
	/* The loop accepts while a is alive: it is pinned at the accept. */
	for (i = 0; i < 5; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(10 * 1000);
	}
	cr_assert_eq(write(sv[0], "x", 1), 1);
	waitpid(a, NULL, 0);
	close(sv[0]);
	close(sv[1]);
	recycled = geteuid() == 0 ? fork_at(a) : -1;
	cr_assert_eq(write(fd, reg_raw, sizeof reg_raw - 1),
	    (ssize_t)sizeof reg_raw - 1);
	ans = answer_on(fd, 2000);
	cr_assert_eq(status_of(ans), 403,
	    "the connecting process is gone%s: %s",
	    recycled > 0 ? " and its pid names a new worker" : "", ans);
	cr_assert(strstr(ans, "is gone") != NULL, "%s", ans);
	cr_assert_eq(reg.count, 0, "no lease for the pid's new owner");
	cr_assert(strstr(ans, "Connection: close") != NULL, "%s", ans);
	free(ans);
	close(fd);
	if (recycled > 0) {
		kill(recycled, SIGKILL);
		waitpid(recycled, NULL, 0);
	}
}

/* A sibling cannot release a worker's lease (as a user that is not root). */
Test(api, sibling_cannot_release)
{
	struct api_config cfg = { .tree_root = getpid(),
		.tc = &tc,
		.command_uid = 65534,
		.command_gid = 65534 };
	char *ans, *cause = NULL;
	pid_t a;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	start_cfg(20000, 20003, &cfg);
	chmod(dir, 0755);
	a = lease_idle_child();
	ans = exchange_as(release0, 65534);
	cr_assert(status_of(ans) == 403 && reg.count == 1 &&
		strstr(ans, "only that process, its ancestors or root") != NULL,
	    "refused, the lease stays: %s", ans);
	free(ans);
	/* Root of the tree (this process, an ancestor) may. */
	cr_assert_eq(api_authorise_owner(&cfg, 0, getpid(), reg.slots[0],
			 &cause),
	    0, "%s", cause);
	kill(a, SIGKILL);
	waitpid(a, NULL, 0);
}

/*
 * Only the lease's process changes its labels when it registers again: a
 * child of it, which may name it, may not relabel it.  p runs as nobody,
 * waits for its lease, has child b try, then tries itself.
 */
Test(api, relabel_only_by_the_owner)
{
	static const char own[] =
	    "POST /v1/workers HTTP/1.1\r\nConnection: close\r\n"
	    "Content-Length: 30\r\n\r\n{\"labels\": {\"role\": \"batch\"}}\n";
	struct api_config cfg = { .tree_root = getpid(),
		.tc = &tc,
		.command_uid = 65534,
		.command_gid = 65534 };
	struct collect c = { calloc(1, 8193), 0 };
	struct labels web = { NULL, 0 };
	char *cause = NULL, *second;
	enum registry_error error;
	int go[2], out[2], created;
	struct event *ev;
	struct lease *l;
	pid_t p;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	start_cfg(20000, 20003, &cfg);
	chmod(dir, 0755);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(out), 0);
	if ((p = fork()) == 0) {
		char body[128], *raw, x;
		int st = 0;
		pid_t b;

		close(go[1]);
		close(out[0]);
		if (setgroups(0, NULL) != 0 || setresgid(65534, 65534, 65534) ||
		    setresuid(65534, 65534, 65534) != 0 ||
		    read(go[0], &x, 1) != 1)
			_exit(6);
		snprintf(body, sizeof body,
		    "{\"pid\": %d, \"labels\": {\"role\": \"evil\"}}",
		    (int)getpid());
		xasprintf(&raw,
		    "POST /v1/workers HTTP/1.1\r\nConnection: close\r\n"
		    "Content-Length: %zu\r\n\r\n%s",
		    strlen(body), body);
		if ((b = fork()) == 0) {
			client_exchange(raw, out[1]);
			_exit(0);
		}
		/* Said in the answers, should b not have asked. */
		if (b == -1)
			dprintf(out[1], "b: fork: %s\n", strerror(errno));
		else if (waitpid(b, &st, 0) != b || st != 0)
			dprintf(out[1], "b: exit status %#x\n", st);
		client_exchange(own, out[1]);
		_exit(0);
	}
	close(go[0]);
	close(out[1]);
	labels_set(&web, "role", "web", &cause);
	l = registry_lease_pid(&reg, p, &web, LEASE_API, -1, &created, &error,
	    &cause);
	cr_assert_not_null(l, "%s", cause);
	cr_assert_eq(write(go[1], "g", 1), 1);
	ev = event_new(base, out[0], EV_READ | EV_PERSIST, collect_cb, &c);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	waitpid(p, NULL, 0);
	close(go[1]);
	close(out[0]);
	cr_assert_eq(status_of(c.buf), 403, "the child may not: %s", c.buf);
	cr_assert(strstr(c.buf, "only that process") != NULL, "%s", c.buf);
	second = strstr(c.buf + 1, "HTTP/1.1 ");
	cr_assert_not_null(second, "%s", c.buf);
	cr_assert_eq(status_of(second), 200, "the process itself may: %s",
	    second);
	labels_finish(&web);
	free(c.buf);
}

/* Workers cannot set the operator's labels, nor job and instance. */
Test(api, operator_labels_refused)
{
	static const char *const bad[] = {
		"{\"labels\": {\"app\": \"bank\"}}",
		"{\"labels\": {\"job\": \"payments\"}}",
		"{\"labels\": {\"instance\": \"db1:9100\"}}",
		"{\"labels\": {\"role\": \"web\", \"job\": \"payments\"}}",
	};
	static struct target_config optc = { .host = "127.0.0.1" };
	static struct labels op = { NULL, 0 };
	struct api_config cfg = { .tree_root = getpid(),
		.tc = &optc,
		.command_uid = geteuid(),
		.command_gid = getegid() };
	char *cause = NULL, *ans;
	size_t i;

	cr_assert_eq(labels_set(&op, "app", "shop", &cause), 0);
	cr_assert_eq(labels_set(&op, "job", "shopjob", &cause), 0);
	optc.labels = &op;
	start_cfg(20000, 20003, &cfg);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ans = post(bad[i]);
		cr_assert_eq(status_of(ans), 400, "%s: %s", bad[i], ans);
		cr_assert(strstr(ans, "cannot set it") != NULL, "%s", ans);
		free(ans);
	}
	cr_assert_eq(reg.count, 0);
	ans = post("{\"labels\": {\"role\": \"web\"}}");
	cr_assert_eq(status_of(ans), 201, "its own labels: %s", ans);
	free(ans);
	labels_finish(&op);
}

/* A root process whose child, as uid, asks for a lease for it. */
static char *
exchange_for_root_parent(uid_t uid)
{
	char raw[256], body[64];
	pid_t kid, grandkid;
	int p[2];

	cr_assert_eq(pipe(p), 0);
	kid = fork();
	if (kid == 0) {
		close(p[0]);
		snprintf(body, sizeof body, "{\"pid\": %d}", (int)getpid());
		snprintf(raw, sizeof raw,
		    "POST /v1/workers HTTP/1.1\r\nConnection: close\r\n"
		    "Content-Length: %zu\r\n\r\n%s",
		    strlen(body), body);
		if ((grandkid = fork()) == 0) {
			if (setgroups(0, NULL) != 0 ||
			    setresgid(uid, uid, uid) != 0 ||
			    setresuid(uid, uid, uid) != 0)
				_exit(6);
			client_exchange(raw, p[1]);
			_exit(0);
		}
		close(p[1]);
		waitpid(grandkid, NULL, 0);
		_exit(0);
	}
	return collect_from(kid, p);
}

/* Standalone: a user leases only its own processes, at most
 * --max-leases-per-uid of them, and a user not allowed cannot even list. */
Test(api, standalone_owner_and_cap)
{
	static const uid_t nobody[] = { 65534 };
	static const char list_raw[] = "GET /v1/workers HTTP/1.1\r\n"
				       "Connection: close\r\n\r\n";
	static const char self_raw[] =
	    "POST /v1/workers HTTP/1.1\r\n"
	    "Connection: close\r\nContent-Length: 0\r\n\r\n";
	struct api_config cfg = { .tree_root = 0, .tc = &tc };
	struct lease *l;
	enum registry_error error;
	char *cause = NULL, *ans;
	int created;
	pid_t held;

	start_standalone(40200, &cfg);
	chmod(sock, 0666); /* past the mode, the accept turns it away */

	ans = exchange_as(list_raw, 65534);
	cr_assert_eq(status_of(ans), 403, "not allowed, not even to list: %s",
	    ans);
	free(ans);
	api_free(api);
	cfg.allow_uids = nobody;
	cfg.nallow_uids = 1;
	cfg.max_leases_per_uid = 1;
	api = api_create(base, api_listen(sock, &cfg, &cause), &reg, &cfg);

	/* its parent runs as root: not nobody's to lease */
	ans = exchange_for_root_parent(65534);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	cr_assert(strstr(ans, "only its own processes") != NULL, "%s", ans);
	free(ans);

	/* nobody already holds its one lease */
	held = fork();
	if (held == 0) {
		if (setresuid(65534, 65534, 65534) != 0)
			_exit(1);
		pause();
		_exit(0);
	}
	usleep(100000);
	l = registry_lease_pid(&reg, held, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	l->uid = 65534;
	ans = exchange_as(self_raw, 65534);
	cr_assert_eq(status_of(ans), 429, "%s", ans);
	cr_assert(strstr(ans, "--max-leases-per-uid") != NULL, "%s", ans);
	free(ans);
	lease_close(l, LEASE_END_RELEASE);
	ans = exchange_as(self_raw, 65534);
	cr_assert_eq(status_of(ans), 201, "under the cap: %s", ans);
	free(ans);
	kill(held, SIGKILL);
	waitpid(held, NULL, 0);
}

/* One probe for api_listen and --check: free, stale, live, not a socket. */
Test(api_socket, probe_and_listen_over_a_stale_socket)
{
	char longp[sizeof((struct sockaddr_un *)0)->sun_path + 1];
	char *cause = NULL, *d = helpers_tmpdir("api-socket");
	char *p = helpers_path(d, "s.sock"), *f = helpers_path(d, "file");
	struct api_config cfg = { .tree_root = getpid(),
		.tc = &tc,
		.command_uid = geteuid(),
		.command_gid = getegid() };
	int fd, fd2;

	cr_assert_eq(api_socket_probe(p, &cause), 0, "nothing there");
	fd = api_listen(p, &cfg, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	cr_assert_eq(api_socket_probe(p, &cause), -1, "a live promfork");
	cr_assert(strstr(cause, "in use") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	cr_assert_eq(api_listen(p, &cfg, &cause), -1);
	free(cause);
	cause = NULL;
	close(fd); /* the socket file stays behind, as after a crash */
	cr_assert_eq(api_socket_probe(p, &cause), 1, "stale");
	fd2 = api_listen(p, &cfg, &cause);
	cr_assert_geq(fd2, 0, "a stale socket is replaced: %s", cause);
	close(fd2);
	helpers_write_file(f, "x");
	cr_assert_eq(api_socket_probe(f, &cause), -1);
	cr_assert(strstr(cause, "not a socket") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	memset(longp, 'a', sizeof longp - 1);
	longp[0] = '/';
	longp[sizeof longp - 1] = '\0';
	cr_assert_eq(api_socket_probe(longp, &cause), -1);
	cr_assert(strstr(cause, "longer than") != NULL, "%s", cause);
	free(cause);
	helpers_rmtree(d);
	free(p);
	free(f);
	free(d);
}

/* A preferred slot is granted when free, else the usual choice. */
Test(api, preferred_slot)
{
	json_t *j;
	char *ans;

	start(20000, 20003);
	ans = post("{\"slot\": 2}");
	cr_assert_eq(status_of(ans), 201, "%s", ans);
	j = body_of(ans);
	cr_assert_eq(json_integer_value(json_object_get(j, "worker")), 2);
	cr_assert_eq(json_integer_value(json_object_get(j, "port")), 20002);
	json_decref(j);
	free(ans);
	ans = post("{\"slot\": 9}");
	cr_assert_eq(status_of(ans), 201, "out of range: the usual choice");
	free(ans);
	ans = post("{\"slot\": -1}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	cr_assert(strstr(ans, "slot") != NULL, "%s", ans);
	free(ans);
	ans = post("{\"slot\": \"2\"}");
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
}

/*
 * Retire: the client registers and retires on one connection; nothing
 * listens on its port, so the final scrape fails, and the lease ends all
 * the same, with reason retire, within the second the scrape may take.
 */
Test(api, retire_ends_the_lease)
{
	static const char raw[] =
	    "POST /v1/workers HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
	    "POST /v1/workers/0/retire HTTP/1.1\r\nConnection: close\r\n"
	    "Content-Length: 0\r\n\r\n";
	char *ans;

	start(20000, 20003);
	ans = exchange(raw, 0);
	cr_assert(strstr(ans, "HTTP/1.1 201 ") != NULL, "%s", ans);
	cr_assert(strstr(ans, "HTTP/1.1 204 ") != NULL, "%s", ans);
	cr_assert_eq(reg.stats.ends[LEASE_END_RETIRE], 1);
	cr_assert_eq(reg.count, 0);
	free(ans);

	ans = exchange("POST /v1/workers/3/retire HTTP/1.1\r\n"
		       "Connection: close\r\nContent-Length: 0\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 404, "%s", ans);
	free(ans);
	ans = exchange("GET /v1/workers/0/retire HTTP/1.1\r\n"
		       "Connection: close\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 405, "%s", ans);
	free(ans);
	ans = exchange("POST /v1/workers/0/other HTTP/1.1\r\n"
		       "Connection: close\r\nContent-Length: 0\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 404, "%s", ans);
	free(ans);
	ans = exchange("POST /v1/workers/x/retire HTTP/1.1\r\n"
		       "Connection: close\r\nContent-Length: 0\r\n\r\n",
	    0);
	cr_assert_eq(status_of(ans), 400, "%s", ans);
	free(ans);
}

/* Retire is refused to a process that may not release. */
Test(api, retire_from_outside_the_tree_is_refused)
{
	char *ans;

	start(20000, 20003);
	free(post(""));
	ans = exchange("POST /v1/workers/0/retire HTTP/1.1\r\n"
		       "Connection: close\r\nContent-Length: 0\r\n\r\n",
	    1);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	free(ans);
}
