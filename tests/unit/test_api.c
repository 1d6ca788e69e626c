/*
 * The registration API end to end inside one test process: the test is the
 * daemon (api + event loop) and a forked child is the client, so the child
 * is inside "promfork's" process tree, as a real worker is.
 */
#include <criterion/criterion.h>
#include <grp.h>
#include <sys/stat.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
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
start(uint16_t low, uint16_t high)
{
	struct api_config cfg = { .tree_root = getpid(), .tc = &tc };
	char *cause = NULL;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock, sizeof sock, "%s/s", dir);
	base = event_base_new();
	registry_init(&reg, base, low, high, helpers_probe_all_free, NULL);
	fd = api_listen(sock, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	api = api_create(base, fd, &reg, &cfg);
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
	if (write(fd, raw, strlen(raw)) != (ssize_t)strlen(raw))
		_exit(4);
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

/*
 * Runs one exchange from a child process while the loop serves it, until
 * the client closes the pipe.  With detach the client is a grandchild that
 * has been re-parented away from us, i.e. outside our process tree.
 */
static char *
exchange(const char *raw, int detach)
{
	struct collect c = { calloc(1, 8193), 0 };
	struct event *ev;
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
	close(p[1]);
	ev = event_new(base, p[0], EV_READ | EV_PERSIST, collect_cb, &c);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	close(p[0]);
	waitpid(kid, NULL, 0);
	return c.buf;
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

Test(api, list_shows_leases)
{
	struct lease *l;
	json_t *j;
	char *ans, *cause = NULL;
	int created, status;
	pid_t kid = fork();

	if (kid == 0) {
		pause();
		_exit(0);
	}
	start(20000, 20003);
	l = registry_lease_pid(&reg, kid, NULL, LEASE_API, -1, &created,
	    &status, &cause);
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
	int created, status;
	pid_t kid = fork();

	if (kid == 0) {
		pause();
		_exit(0);
	}
	start(20000, 20000);
	l = registry_lease_pid(&reg, kid, NULL, LEASE_API, -1, &created,
	    &status, &cause);
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

Test(api, release_from_outside_the_tree_is_refused)
{
	char *ans, *cause = NULL;
	int created, status;
	pid_t kid = fork();

	if (kid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL); /* even if an assert fails */
		pause();
		_exit(0);
	}
	start(20000, 20003);
	prctl(PR_SET_CHILD_SUBREAPER, 0);
	cr_assert_not_null(registry_lease_pid(&reg, kid, NULL, LEASE_API, -1,
			       &created, &status, &cause),
	    "%s", cause);
	ans = exchange("DELETE /v1/workers/0 HTTP/1.1\r\nConnection: close\r\n"
		       "\r\n",
	    1);
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
	cr_assert_eq(api_listen(sock, &cause), -1);
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
	struct collect c = { calloc(1, 8193), 0 };
	struct event *ev;
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
	close(p[1]);
	ev = event_new(base, p[0], EV_READ | EV_PERSIST, collect_cb, &c);
	event_add(ev, NULL);
	event_base_dispatch(base);
	event_free(ev);
	close(p[0]);
	waitpid(kid, NULL, 0);
	return c.buf;
}

Test(api, standalone_refuses_other_users)
{
	static const char reg_raw[] =
	    "POST /v1/workers HTTP/1.1\r\n"
	    "Connection: close\r\nContent-Length: 0\r\n\r\n";
	struct api_config cfg = { .tree_root = 0, .tc = &tc };
	char *cause = NULL, *ans;
	int fd;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	cr_assert_not_null(mkdtemp(dir));
	chmod(dir, 0755);
	snprintf(sock, sizeof sock, "%s/s", dir);
	base = event_base_new();
	registry_init(&reg, base, 40100, 40103, helpers_probe_all_free, NULL);
	fd = api_listen(sock, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	api = api_create(base, fd, &reg, &cfg);

	ans = exchange_as(reg_raw, 65534);
	cr_assert_eq(status_of(ans), 403, "%s", ans);
	cr_assert(strstr(ans, "--allow-uid 65534") != NULL, "%s", ans);
	free(ans);
	ans = exchange_as(reg_raw, (uid_t)-1);
	cr_assert_eq(status_of(ans), 201, "root may: %s", ans);
	free(ans);
}

/* One probe for api_listen and --check: free, stale, live, not a socket. */
Test(api_socket, probe_and_listen_over_a_stale_socket)
{
	char longp[sizeof((struct sockaddr_un *)0)->sun_path + 1];
	char *cause = NULL, *d = helpers_tmpdir("api-socket");
	char *p = helpers_path(d, "s.sock"), *f = helpers_path(d, "file");
	int fd, fd2;

	cr_assert_eq(api_socket_probe(p, &cause), 0, "nothing there");
	fd = api_listen(p, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	cr_assert_eq(api_socket_probe(p, &cause), -1, "a live promfork");
	cr_assert(strstr(cause, "in use") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	cr_assert_eq(api_listen(p, &cause), -1);
	free(cause);
	cause = NULL;
	close(fd); /* the socket file stays behind, as after a crash */
	cr_assert_eq(api_socket_probe(p, &cause), 1, "stale");
	fd2 = api_listen(p, &cause);
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
