/*
 * promfork lease (client.c) against a real API socket: the port on stdout,
 * the whole answer with --json, a refusal and an unreachable promfork exit
 * 1, bad usage exits 2.  Each client runs in a child, as the command does,
 * while the test runs the API's loop.
 */
#include <criterion/criterion.h>

#include <sys/wait.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"
#include "promfork.h"

#define LOW 42300

static char *dir, *sock;
static struct event_base *base;
static struct registry reg;
static struct api *api;
static struct target_config tc = { .host = "127.0.0.1" };

static void
setup(void)
{
	struct api_config cfg = { .tree_root = 0, .tc = &tc };
	char *cause = NULL;
	int fd;

	dir = helpers_tmpdir("client");
	sock = helpers_path(dir, "s");
	base = event_base_new();
	registry_init(&reg, base, LOW, LOW + 3, helpers_probe_all_free, NULL);
	fd = api_listen(sock, &cfg, &cause);
	cr_assert_geq(fd, 0, "%s", cause);
	api = api_create(base, fd, &reg, &cfg);
}

static void
teardown(void)
{
	api_free(api);
	registry_finish(&reg);
	event_base_free(base);
	helpers_rmtree(dir);
	free(sock);
	free(dir);
}

TestSuite(client, .init = setup, .fini = teardown, .timeout = 30);

struct run {
	pid_t parent; /* the client's parent, whose port it leases */
	int fd; /* the client's exit status comes back here */
	int status;
	int done;
	char *out; /* what the client printed */
	char *err;
};

static int
run_done(void *arg)
{
	struct run *r = arg;
	unsigned char st;

	if (!r->done && read(r->fd, &st, 1) == 1) {
		r->status = st;
		r->done = 1;
	}
	return r->done;
}

/*
 * Runs promfork lease ARGS... as the child of a process that stays (its
 * parent, the default --pid, may lease a port only for itself or its
 * ancestors); returns the client's exit status.
 */
static int
run(struct run *r, const char *env_socket, ...)
{
	char *argv[16], *out = helpers_path(dir, "out"),
			*err = helpers_path(dir, "err");
	va_list ap;
	int argc = 0, fd, fds[2], wstatus;
	unsigned char st;
	pid_t client;

	argv[argc++] = "lease";
	va_start(ap, env_socket);
	while (argc < 15 && (argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	argv[argc] = NULL;
	r->done = 0;
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	r->parent = fork();
	cr_assert_neq(r->parent, -1);
	if (r->parent == 0) {
		client = fork();
		if (client == 0) {
			if (env_socket != NULL)
				setenv(PROMFORK_SOCKET_ENV, env_socket, 1);
			else
				unsetenv(PROMFORK_SOCKET_ENV);
			fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			dup2(fd, 1);
			fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			dup2(fd, 2);
			fd = client_lease_main(argc, argv);
			fflush(stdout); /* _exit does not */
			fflush(stderr);
			_exit(fd);
		}
		waitpid(client, &wstatus, 0);
		st = WIFEXITED(wstatus) ? (unsigned char)WEXITSTATUS(wstatus)
					: 255;
		if (write(fds[1], &st, 1) != 1)
			_exit(1);
		for (;;)
			pause(); /* until the test kills it */
	}
	close(fds[1]);
	r->fd = fds[0];
	fcntl(r->fd, F_SETFL, O_NONBLOCK);
	cr_assert(helpers_loop_until(base, run_done, r, 20000), "client hung");
	r->out = helpers_read_file(out);
	r->err = helpers_read_file(err);
	free(out);
	free(err);
	return r->status;
}

static void
run_free(struct run *r)
{
	helpers_kid_kill(r->parent);
	close(r->fd);
	free(r->out);
	free(r->err);
}

Test(client, prints_the_port_of_its_lease)
{
	struct run r;
	struct lease *l;

	cr_assert_eq(run(&r, NULL, "--socket", sock, "--label", "role=web",
			 NULL),
	    0, "%s", r.err);
	cr_assert_str_eq(r.out, "42300\n");
	l = registry_find_pid(&reg, r.parent);
	cr_assert_not_null(l, "the lease is the parent's");
	cr_assert_eq(l->port, LOW);
	cr_assert_str_eq(labels_get(&l->labels, "role"), "web");
	run_free(&r);
}

Test(client, json_prints_the_whole_answer_and_socket_comes_from_env)
{
	struct run r;

	cr_assert_eq(run(&r, sock, "--json", NULL), 0, "%s", r.err);
	cr_assert(strstr(r.out, "\"port\": 42300") != NULL ||
		strstr(r.out, "\"port\":42300") != NULL,
	    "%s", r.out);
	cr_assert(strstr(r.out, "\"worker\"") != NULL, "%s", r.out);
	cr_assert_not_null(registry_find_pid(&reg, r.parent));
	run_free(&r);
}

Test(client, a_refusal_exits_1_with_the_reason)
{
	struct run r;
	pid_t stranger = helpers_kid(); /* not the client's ancestor */
	char pid[16];

	snprintf(pid, sizeof pid, "%d", (int)stranger);
	cr_assert_eq(run(&r, sock, "--pid", pid, NULL), 1);
	cr_assert(strstr(r.err, "refused (403)") != NULL, "%s", r.err);
	cr_assert(strstr(r.err, "only for itself or its ancestors") != NULL,
	    "%s", r.err);
	cr_assert_str_eq(r.out, "");
	cr_assert_eq(reg.count, 0);
	run_free(&r);
	helpers_kid_kill(stranger);
}

Test(client, an_unreachable_promfork_exits_1)
{
	struct run r;
	char *gone = helpers_path(dir, "gone.sock");

	cr_assert_eq(run(&r, NULL, "--socket", gone, NULL), 1);
	cr_assert(strstr(r.err, "cannot connect") != NULL, "%s", r.err);
	run_free(&r);
	cr_assert_eq(run(&r, NULL, NULL), 1, "no socket at all");
	cr_assert(strstr(r.err, "is not set") != NULL, "%s", r.err);
	run_free(&r);
	free(gone);
}

Test(client, bad_usage_exits_2)
{
	static const char *const bad[][3] = {
		{ "--pid", "abc", "not a process id" },
		{ "--pid", "1x", "not a process id" },
		{ "--pid", "99999999999", "not a process id" },
		{ "--pid", "1", "not a process id" },
		{ "--label", "noequals", "write NAME=VALUE" },
		{ "extra", NULL, "unexpected argument" },
		{ "--bogus", NULL, "Usage:" },
	};
	struct run r;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(run(&r, sock, bad[i][0], bad[i][1], NULL), 2,
		    "%s %s", bad[i][0], bad[i][1]);
		cr_assert(strstr(r.err, bad[i][2]) != NULL, "%s: %s", bad[i][0],
		    r.err);
		run_free(&r);
	}
	cr_assert_eq(reg.count, 0);
	cr_assert_eq(run(&r, sock, "--help", NULL), 0);
	cr_assert(strstr(r.out, "Usage: promfork lease") != NULL, "%s", r.out);
	run_free(&r);
}
