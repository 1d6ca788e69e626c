#include <criterion/criterion.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static struct event_base *base;
static struct registry reg;
static int changes;

static void
changed_cb(void *arg)
{
	changes++;
}

static void
setup(void)
{
	base = event_base_new();
	registry_init(&reg, base, 9400, 9402, helpers_probe_all_free, NULL);
	registry_listen(&reg, changed_cb, NULL);
	changes = 0;
}

static void
teardown(void)
{
	registry_finish(&reg);
	event_base_free(base);
}

TestSuite(registry, .init = setup, .fini = teardown, .timeout = 20);

static pid_t
sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		pause();
		_exit(0);
	}
	return pid;
}

static struct lease *
lease(pid_t pid, int slot, int *status)
{
	char *cause = NULL;
	int created, st = 0;
	struct lease *l = registry_lease_pid(&reg, pid, NULL, LEASE_API, slot,
	    &created, &st, &cause);

	if (status != NULL)
		*status = st;
	free(cause);
	return l;
}

/* Runs the loop until the registry holds n leases, for at most 5 s. */
static void
loop_until_count(size_t n)
{
	for (int i = 0; i < 500 && reg.count != n; i++) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(10000);
	}
}

Test(registry, lease_ends_when_the_process_dies_and_slot_returns)
{
	pid_t a = sleeper(), b = sleeper(), c;
	struct lease *la, *lb, *lc;

	la = lease(a, -1, NULL);
	lb = lease(b, -1, NULL);
	cr_assert_eq(la->worker, 0);
	cr_assert_eq(lb->worker, 1);
	cr_assert_eq(lb->port, 9401);
	cr_assert_eq(lease(a, -1, NULL), la, "same pid, same lease");
	cr_assert_eq(reg.count, 2);
	cr_assert_eq(changes, 2);

	kill(a, SIGKILL);
	loop_until_count(1);
	cr_assert_eq(reg.count, 1, "the dead worker's lease ended");
	cr_assert_eq(reg.stats.ends[LEASE_END_EXIT], 1);
	waitpid(a, NULL, 0);

	c = sleeper();
	lc = lease(c, -1, NULL);
	cr_assert_eq(lc->worker, 0, "the replacement gets the freed slot");
	cr_assert_eq(reg.stats.slot_leases[0], 2);
	kill(b, SIGKILL);
	kill(c, SIGKILL);
	waitpid(b, NULL, 0);
	waitpid(c, NULL, 0);
}

Test(registry, exhausted_and_claims)
{
	pid_t p[4];
	int status;

	for (int i = 0; i < 4; i++)
		p[i] = sleeper();
	cr_assert_not_null(lease(p[0], 2, NULL));
	cr_assert_null(lease(p[1], 2, &status), "slot 2 is taken");
	cr_assert_eq(status, 503);
	cr_assert_eq(lease(p[1], -1, NULL)->worker, 0);
	cr_assert_eq(lease(p[2], -1, NULL)->worker, 1);
	cr_assert_null(lease(p[3], -1, &status));
	cr_assert_eq(status, 503);
	cr_assert_eq(reg.stats.refusals, 2);
	for (int i = 0; i < 4; i++) {
		kill(p[i], SIGKILL);
		waitpid(p[i], NULL, 0);
	}
}

Test(registry, dead_or_missing_pid_refused)
{
	pid_t p = fork();
	int status;

	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	cr_assert_null(lease(p, -1, &status));
	cr_assert_eq(status, 404);
	cr_assert_eq(reg.count, 0);
}

Test(registry, reused_pid_is_a_new_process)
{
	pid_t a = sleeper();
	struct lease *l = lease(a, -1, NULL);

	/* As if the pid now belonged to another process: another start time. */
	l->starttime--;
	cr_assert_eq(l->pidfd >= 0 || l->pidfd == -1, 1);
	l = lease(a, -1, NULL);
	cr_assert_eq(reg.count, 1);
	cr_assert_eq(reg.stats.ends[LEASE_END_EXIT], 1,
	    "the stale lease was ended, not returned");
	kill(a, SIGKILL);
	waitpid(a, NULL, 0);
}

Test(registry, polling_fallback_without_pidfd)
{
	pid_t a = sleeper();
	struct lease *l = lease(a, -1, NULL);

	/* As on a kernel without pidfd_open; closing it leaves the exit set. */
	if (l->pidfd != -1)
		close(l->pidfd);
	l->pidfd = -1;
	kill(a, SIGKILL);
	waitpid(a, NULL, 0);
	loop_until_count(0);
	cr_assert_eq(reg.count, 0, "the poll ended the lease");
}

Test(registry, clear_ends_everything)
{
	pid_t a = sleeper(), b = sleeper();

	lease(a, -1, NULL);
	lease(b, -1, NULL);
	registry_clear(&reg, LEASE_END_SHUTDOWN);
	cr_assert_eq(reg.count, 0);
	cr_assert_eq(reg.stats.ends[LEASE_END_SHUTDOWN], 2);
	cr_assert_eq(pool_nfree(&reg.pool), 3);
	kill(a, SIGKILL);
	kill(b, SIGKILL);
	waitpid(a, NULL, 0);
	waitpid(b, NULL, 0);
}
