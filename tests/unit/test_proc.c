#include <criterion/criterion.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "promfork.h"

static const char stat_line[] =
    "1234 (gunicorn: worker [app]) S 1200 1200 "
    "1200 0 -1 4194560 5093 0 0 0 150 25 0 0 20 0 3 0 987654 123456789 "
    "4321 18446744073709551615 1 1 0 0 0 0 0 16781312 134234626 0 0 0 17 1 "
    "0 0 0 0 0\n";

Test(proc, parses_a_real_line)
{
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_parse(stat_line, strlen(stat_line), &st, &cause),
	    0);
	cr_assert_eq(st.pid, 1234);
	cr_assert_eq(st.state, 'S');
	cr_assert_eq(st.ppid, 1200);
	cr_assert_eq(st.utime, 150);
	cr_assert_eq(st.stime, 25);
	cr_assert_eq(st.starttime, 987654);
	cr_assert_eq(st.rss_pages, 4321);
}

Test(proc, command_names_with_parentheses_and_spaces)
{
	const char *line = "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 "
			   "1 0 55 0 9 0\n";
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_parse(line, strlen(line), &st, &cause), 0);
	cr_assert_eq(st.state, 'R');
	cr_assert_eq(st.starttime, 55);
	cr_assert_eq(st.rss_pages, 9);
}

static void
bad(const char *line, size_t len)
{
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_parse(line, len, &st, &cause), -1,
	    "accepted "
	    "%.*s",
	    (int)len, line);
	cr_assert_str_eq(cause, "malformed /proc stat line");
	free(cause);
}

Test(proc, bad_input_refused)
{
	char big[5000];

	bad("", 0);
	bad("garbage", 7);
	bad("12 (x) S", 8);
	bad("12 (x)", 6);
	bad("(x) S 1 2 3", 11);
	bad("0 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 55 0 9\n", 52);
	bad("12 (x) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 55 0\n", 50);
	bad("12 (x) S 1 1 1 0 -1 0 0 0 0 0 1x 2 0 0 20 0 1 0 55 0 9\n", 54);
	bad("12 (x) S 99999999999999999999999 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 "
	    "0 1 0 55 0 9\n",
	    76);
	bad("12 (x\0) S 1 1 1 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 55 0 9\n", 53);
	memset(big, '1', sizeof big);
	bad(big, sizeof big);
}

Test(proc, reads_itself_and_knows_its_tree)
{
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_read(getpid(), &st, &cause), 0, "%s", cause);
	cr_assert_eq(st.pid, getpid());
	cr_assert_eq(st.ppid, getppid());
	cr_assert_gt(st.starttime, 0);
	cr_assert(proc_in_tree(getpid(), getpid()));
	cr_assert(proc_in_tree(getpid(), getppid()));
	cr_assert(!proc_in_tree(getppid(), getpid()));
	cr_assert(!proc_in_tree(1, getpid()));
}

Test(proc, gone_and_zombie_processes_refused)
{
	struct proc_stat st;
	char *cause = NULL;
	pid_t pid = fork();

	if (pid == 0)
		_exit(0);
	/* A zombie until reaped: it has exited all the same. */
	for (int i = 0; i < 200; i++) {
		if (proc_stat_read(pid, &st, &cause) != 0)
			break;
		usleep(10000);
	}
	cr_assert_not_null(cause);
	cr_assert(strstr(cause, "exited") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	waitpid(pid, NULL, 0);
	cr_assert_eq(proc_stat_read(pid, &st, &cause), -1);
	free(cause);
}

/* A child that forks a grandchild; both sleep until killed.  *grandchild
 * is read from a pipe. */
static pid_t
proc_family(pid_t *grandchild)
{
	int p[2];
	pid_t child;

	cr_assert_eq(pipe(p), 0);
	if ((child = fork()) == 0) {
		pid_t g;

		/* both go with the test, even if an assert fails */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if ((g = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			pause();
			_exit(0);
		}
		(void)write(p[1], &g, sizeof g);
		pause();
		_exit(0);
	}
	cr_assert_eq(read(p[0], grandchild, sizeof *grandchild),
	    (ssize_t)sizeof *grandchild);
	close(p[0]);
	close(p[1]);
	return child;
}

Test(proc, walks_through_a_running_child)
{
	pid_t grandchild, child = proc_family(&grandchild);

	cr_assert(proc_in_tree(child, getpid()));
	cr_assert(proc_in_tree(grandchild, getpid()));
	cr_assert(proc_in_tree(grandchild, child));
	cr_assert(proc_in_tree(grandchild, getppid()), "on past promfork");
	cr_assert(!proc_in_tree(child, grandchild));
	kill(grandchild, SIGKILL);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	/* reaped: neither is anyone's descendant now */
	cr_assert(!proc_in_tree(child, getpid()));
}

Test(proc, ref_holds_a_live_process_and_refuses_the_rest)
{
	struct proc_ref ref;
	char *cause = NULL;
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	cr_assert_eq(proc_ref_init(pid, &ref, &cause), 0, "%s", cause);
	cr_assert_eq(ref.pid, pid);
	cr_assert_eq(ref.st.pid, pid);
	cr_assert_eq(ref.st.ppid, getpid());
	/* valgrind knows no pidfd_open: then there is no pidfd */
	if (ref.pidfd != -1)
		cr_assert(!proc_exited(ref.pidfd));
	kill(pid, SIGKILL);
	if (ref.pidfd != -1) {
		for (int i = 0; i < 300 && !proc_exited(ref.pidfd); i++)
			usleep(10000);
		cr_assert(proc_exited(ref.pidfd), "the pidfd saw the exit");
	}
	proc_ref_finish(&ref);
	cr_assert_eq(ref.pidfd, -1);

	/* exited, not yet reaped: waitid without reaping waits for that */
	{
		siginfo_t si;

		cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT),
		    0);
	}
	cr_assert_eq(proc_ref_init(pid, &ref, &cause), -1);
	cr_assert(strstr(cause, "exited") != NULL, "%s", cause);
	cr_assert_eq(ref.pidfd, -1);
	free(cause);
	cause = NULL;

	/* reaped: no such process */
	waitpid(pid, NULL, 0);
	cr_assert_eq(proc_ref_init(pid, &ref, &cause), -1);
	cr_assert(strstr(cause, "no process") != NULL, "%s", cause);
	free(cause);
}

Test(proc, creds_parse)
{
	static const char good[] = "Name:\tx\nUmask:\t0022\nState:\tS\n"
				   "Uid:\t1000\t1001\t1002\t1003\n"
				   "Gid:\t50\t51\t52\t53\n"
				   "Groups:\t4 24 27 \nNSpid:\t1\n";
	static const char none[] = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"
				   "Groups:\n";
	struct proc_creds pc;
	char *cause = NULL;

	cr_assert_eq(proc_creds_parse(good, strlen(good), &pc, &cause), 0, "%s",
	    cause);
	cr_assert_eq(pc.uid, 1000, "the real uid");
	cr_assert_eq(pc.gid, 50);
	cr_assert_eq(pc.ngroups, 3);
	cr_assert_eq(pc.groups[2], 27);
	cr_assert_eq(proc_creds_parse(none, strlen(none), &pc, &cause), 0, "%s",
	    cause);
	cr_assert_eq(pc.ngroups, 0);
	cr_assert_eq(proc_creds_read(getpid(), &pc, &cause), 0, "%s", cause);
	cr_assert_eq(pc.uid, getuid());
}

Test(proc, creds_parse_bad)
{
	static const char *const bad[] = {
		"",
		"Gid:\t0\nGroups:\n",
		"Uid:\t0\nGroups:\n",
		"Uid:\t0\nGid:\t0\n",
		"Uid:\tx\nGid:\t0\nGroups:\n",
		"Uid:\t99999999999\nGid:\t0\nGroups:\n",
		"Uid:\t-1\nGid:\t0\nGroups:\n",
		"Uid:\t1x\nGid:\t0\nGroups:\n",
		"Uid:\t0\nGid:\t0\nGroups:\t1 x\n",
	};
	struct proc_creds pc;
	char *cause = NULL, big[8000];
	size_t i, off;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(proc_creds_parse(bad[i], strlen(bad[i]), &pc,
				 &cause),
		    -1, "accepted %s", bad[i]);
		cr_assert_str_eq(cause, "malformed /proc status");
		free(cause);
		cause = NULL;
	}
	/* more groups than PROC_GROUPS_MAX */
	off = (size_t)sprintf(big, "Uid:\t0\nGid:\t0\nGroups:\t");
	for (i = 0; i <= PROC_GROUPS_MAX; i++)
		off += (size_t)sprintf(big + off, "%zu ", i);
	cr_assert_eq(proc_creds_parse(big, off, &pc, &cause), -1);
	free(cause);
	cr_assert_eq(proc_creds_parse("Uid:\t0\0\nGid:\t0\nGroups:\n", 22, &pc,
			 &cause),
	    -1, "a NUL inside");
	free(cause);
}
