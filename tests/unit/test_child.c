/*
 * child.c: a command runs with a clean signal state and its environment,
 * exits as a shell would report it (127 not found, 126 not runnable,
 * 128 + signal), dies with promfork when asked to, gets promfork's
 * signals, and is reaped with its lease ended.
 */
#include <criterion/criterion.h>

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"
#include "promfork.h"

static char *dir;

static void
setup(void)
{
	dir = helpers_tmpdir("child");
}

static void
teardown(void)
{
	helpers_rmtree(dir);
	free(dir);
}

TestSuite(child, .init = setup, .fini = teardown, .timeout = 90);

/* Waits for pid (bounded: 10 s, 60 s under valgrind, where a process
 * that exits first checks its memory) and returns its raw wait status. */
static int
wait_for(pid_t pid)
{
	int i, wstatus, n = helpers_under_valgrind() ? 6000 : 1000;

	for (i = 0; i < n; i++) {
		if (waitpid(pid, &wstatus, WNOHANG) == pid)
			return wstatus;
		helpers_sleep_ms(10);
	}
	kill(pid, SIGKILL);
	cr_assert_fail("pid %d did not exit", (int)pid);
	return -1;
}

/* Waits (bounded: 10 s) until pid runs the program named comm: until
 * then it may still have the test's signal state, however loaded the
 * machine. */
static void
wait_exec(pid_t pid, const char *comm)
{
	char path[64], text[32];
	int i, fd, same = 0;
	ssize_t n;

	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	for (i = 0; i < 1000 && !same; i++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		n = fd == -1 ? -1 : read(fd, text, sizeof text - 1);
		if (fd != -1)
			close(fd);
		text[n > 0 ? n : 0] = '\0';
		same = strncmp(text, comm, strlen(comm)) == 0 &&
		    text[strlen(comm)] == '\n';
		if (!same)
			helpers_sleep_ms(10);
	}
	cr_assert(same, "pid %d did not start %s", (int)pid, comm);
}

/* Waits (bounded: 10 s) until path exists. */
static void
wait_file(const char *path)
{
	int i;

	for (i = 0; i < 1000 && access(path, F_OK) != 0; i++)
		helpers_sleep_ms(10);
	cr_assert_eq(access(path, F_OK), 0, "%s did not appear", path);
}

static int
run_status(char **argv, char *const *env)
{
	char *cause = NULL;
	pid_t pid = child_fork(argv, env, 0, NULL, &cause);

	cr_assert_neq(pid, -1, "%s", cause);
	return child_wait_status(wait_for(pid));
}

Test(child, exit_codes_as_a_shell_reports_them)
{
	char *exit7[] = { "sh", "-c", "exit 7", NULL };
	char *missing[] = { "promfork-no-such-command", NULL };
	char *noexec = helpers_path(dir, "noexec");
	char *notrunnable[] = { noexec, NULL };
	char *killed[] = { "sh", "-c", "kill -KILL $$", NULL };

	cr_assert_eq(run_status(exit7, NULL), 7);
	cr_assert_eq(run_status(missing, NULL), 127, "not found");
	helpers_write_file(noexec, "#!/bin/sh\nexit 0\n");
	chmod(noexec, 0644);
	cr_assert_eq(run_status(notrunnable, NULL), 126, "not executable");
	cr_assert_eq(run_status(killed, NULL), 128 + SIGKILL);
	cr_assert_eq(child_wait_status(0x7f), 1, "stopped: not an exit");
	free(noexec);
}

Test(child, environment_is_added_and_replaced)
{
	char *argv[] = { "sh", "-c",
		"test \"$PROMFORK_TEST_A\" = new && test \"$PROMFORK_TEST_B\" = b "
		"&& test \"$HOME\" = \"$PROMFORK_TEST_HOME\"",
		NULL };
	char *env[] = { "PROMFORK_TEST_A=new", "PROMFORK_TEST_B=b", NULL };

	setenv("PROMFORK_TEST_A", "old", 1);
	setenv("PROMFORK_TEST_HOME", getenv("HOME") ? getenv("HOME") : "", 1);
	if (getenv("HOME") == NULL)
		setenv("HOME", "", 1);
	cr_assert_eq(run_status(argv, env), 0, "env not as given");
	cr_assert_str_eq(getenv("PROMFORK_TEST_A"), "old", "ours is unchanged");
}

Test(child, signals_are_reset_before_exec)
{
	char *argv[] = { "sleep", "30", NULL };
	char *cause = NULL;
	sigset_t block;
	pid_t pid;

	/* ignored dispositions and the mask survive exec unless reset */
	signal(SIGTERM, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, NULL);
	pid = child_fork(argv, NULL, 0, NULL, &cause);
	cr_assert_neq(pid, -1, "%s", cause);
	wait_exec(pid, "sleep");
	kill(pid, SIGINT);
	cr_assert_eq(child_wait_status(wait_for(pid)), 128 + SIGINT);
	pid = child_fork(argv, NULL, 0, NULL, &cause);
	cr_assert_neq(pid, -1, "%s", cause);
	wait_exec(pid, "sleep");
	kill(pid, SIGTERM);
	cr_assert_eq(child_wait_status(wait_for(pid)), 128 + SIGTERM);
}

Test(child, dies_with_its_parent_when_asked)
{
	char *argv[] = { "sleep", "30", NULL };
	int fds[2], wstatus;
	pid_t mid, pid = 0;
	char *cause = NULL;

	/* we adopt the orphan, so that its end can be seen */
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	cr_assert_eq(pipe(fds), 0);
	mid = fork();
	if (mid == 0) {
		pid = child_fork(argv, NULL, SIGTERM, NULL, &cause);
		if (write(fds[1], &pid, sizeof pid) != sizeof pid)
			_exit(1);
		_exit(0);
	}
	cr_assert_eq(read(fds[0], &pid, sizeof pid), sizeof pid);
	cr_assert_gt(pid, 0);
	wait_for(mid);
	wstatus = wait_for(pid);
	/* by the signal, or, when the parent was gone before the child could
	 * ask for it, by exiting as if killed by it */
	cr_assert(child_wait_status(wstatus) == 128 + SIGTERM, "status %#x",
	    wstatus);
	close(fds[0]);
	close(fds[1]);
}

struct reaped {
	pid_t pid;
	int wstatus;
	int calls;
};

static void
reaped_cb(pid_t pid, int wstatus, void *arg)
{
	struct reaped *r = arg;

	r->pid = pid;
	r->wstatus = wstatus;
	r->calls++;
}

Test(child, start_signal_and_reap)
{
	char *ready = helpers_path(dir, "ready");
	char *argv[] = { "sh", "-c",
		"test \"$PROMFORK_SOCKET\" = /x/promfork.sock || exit 3; "
		"trap 'exit 9' USR1; : > \"$1\"; while :; do sleep 0.05; done",
		"sh", ready, NULL };
	struct event_base *base = event_base_new();
	struct registry reg;
	struct child c;
	struct reaped r = { 0, 0, 0 };
	struct lease *l;
	char *cause = NULL;
	enum registry_error error;
	int created, i;

	registry_init(&reg, base, 42400, 42403, helpers_probe_all_free, NULL);
	cr_assert_eq(child_start(&c, argv, "/x/promfork.sock", NULL, &cause), 0,
	    "%s", cause);
	cr_assert_str_eq(c.name, "sh");
	l = registry_lease_pid(&reg, c.pid, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	wait_file(ready); /* the trap is set */
	child_signal(&c, SIGUSR1);
	for (i = 0; i < 1000 && !c.exited; i++) {
		child_reap(&c, &reg, reaped_cb, &r);
		helpers_sleep_ms(10);
	}
	cr_assert(c.exited);
	cr_assert_eq(c.status, 9, "the command's own exit status");
	cr_assert_eq(c.reaped, 1);
	cr_assert_eq(r.calls, 1);
	cr_assert_eq(r.pid, c.pid);
	cr_assert(WIFEXITED(r.wstatus) && WEXITSTATUS(r.wstatus) == 9);
	cr_assert_eq(reg.count, 0, "the lease ended with the process");
	cr_assert_eq(reg.stats.ends[LEASE_END_EXIT], 1);
	child_signal(&c, SIGUSR1); /* gone: nothing to forward, no error */
	registry_finish(&reg);
	free(ready);
	event_base_free(base);
}

Test(child, reap_takes_orphans_too)
{
	struct event_base *base = event_base_new();
	struct registry reg;
	struct child c;
	struct reaped r = { 0, 0, 0 };
	pid_t orphan = fork();
	int i;

	cr_assert_neq(orphan, -1);
	/* through sh: under valgrind a forked copy of us would exit with
	 * valgrind's own status */
	if (orphan == 0) {
		execl("/bin/sh", "sh", "-c", "exit 5", (char *)NULL);
		_exit(1);
	}
	memset(&c, 0, sizeof c); /* standalone: no command */
	registry_init(&reg, base, 42400, 42403, helpers_probe_all_free, NULL);
	for (i = 0; i < 1000 && r.calls == 0; i++) {
		child_reap(&c, &reg, reaped_cb, &r);
		helpers_sleep_ms(10);
	}
	cr_assert_eq(r.pid, orphan);
	cr_assert(WIFEXITED(r.wstatus) && WEXITSTATUS(r.wstatus) == 5);
	cr_assert_eq(c.exited, 0, "not the command");
	cr_assert_eq(c.reaped, 1);
	child_reap(&c, &reg, NULL, NULL); /* nothing left; no hook is fine */
	registry_finish(&reg);
	event_base_free(base);
}
