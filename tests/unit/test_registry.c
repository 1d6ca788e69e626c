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
lease_as(pid_t pid, int slot, enum lease_source source,
    enum registry_error *error)
{
	enum registry_error e = REGISTRY_OK;
	char *cause = NULL;
	int created;
	struct lease *l = registry_lease_pid(&reg, pid, NULL, source, slot,
	    &created, &e, &cause);

	cr_assert_eq(l == NULL, e != REGISTRY_OK,
	    "an error exactly when "
	    "there is no lease");
	cr_assert_eq(l == NULL, cause != NULL, "a cause with every error");
	if (error != NULL)
		*error = e;
	free(cause);
	return l;
}

static struct lease *
lease(pid_t pid, int slot, enum registry_error *error)
{
	return lease_as(pid, slot, LEASE_API, error);
}

static void
reap(pid_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		kill(p[i], SIGKILL);
		waitpid(p[i], NULL, 0);
	}
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
	enum registry_error error;
	pid_t p[4];

	for (int i = 0; i < 4; i++)
		p[i] = sleeper();
	cr_assert_not_null(lease(p[0], 2, NULL));
	cr_assert_null(lease(p[1], 2, &error), "slot 2 is taken");
	cr_assert_eq(error, REGISTRY_FULL);
	cr_assert_eq(lease(p[1], -1, NULL)->worker, 0);
	cr_assert_eq(lease(p[2], -1, NULL)->worker, 1);
	cr_assert_null(lease(p[3], -1, &error));
	cr_assert_eq(error, REGISTRY_FULL);
	cr_assert_eq(reg.stats.refusals, 2);
	registry_count_refusal(&reg);
	cr_assert_eq(reg.stats.refusals, 3, "refusals from outside count too");
	for (int i = 0; i < 4; i++) {
		kill(p[i], SIGKILL);
		waitpid(p[i], NULL, 0);
	}
}

Test(registry, dead_or_missing_pid_refused)
{
	enum registry_error error;
	pid_t p = fork();

	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	cr_assert_null(lease(p, -1, &error));
	cr_assert_eq(error, REGISTRY_GONE);
	cr_assert_eq(reg.count, 0);
	cr_assert_eq(reg.stats.refusals, 0, "a gone process is not refused");
}

Test(registry, reused_pid_is_a_new_process)
{
	pid_t a = sleeper();
	struct lease *l = lease(a, -1, NULL);
	struct proc_stat st;
	char *cause = NULL;

	cr_assert_eq(proc_stat_read(a, &st, &cause), 0, "%s", cause);
	/* As if the pid now belonged to another process: another start time. */
	l->starttime--;
	l = lease(a, -1, NULL);
	cr_assert_not_null(l);
	cr_assert_eq(reg.count, 1);
	cr_assert_eq(reg.stats.ends[LEASE_END_EXIT], 1,
	    "the stale lease was ended, not returned");
	cr_assert_eq(l->starttime, st.starttime,
	    "the new lease is the "
	    "process's own");
	cr_assert_eq(reg.stats.registrations, 2);
	/* Its pidfd (where the kernel has them) watches the live process. */
	if (l->pidfd != -1)
		cr_assert_eq(proc_exited(l->pidfd), 0);
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

Test(registry, record_scrape_into_lease)
{
	struct scrape_result r = { .status = 200, .duration_ms = 12 };
	struct lease l;

	memset(&l, 0, sizeof l);
	lease_record_scrape(&l, &r);
	cr_assert(l.scrape.ok);
	cr_assert_neq(l.scrape.when, 0);
	cr_assert_eq(l.scrape.duration_ms, 12);
	cr_assert_str_eq(l.scrape.error, "");

	r.status = 500;
	lease_record_scrape(&l, &r);
	cr_assert_not(l.scrape.ok);
	cr_assert_str_eq(l.scrape.error, "HTTP status 500");

	r.status = 0;
	r.error = "cannot connect to port 1: Connection refused";
	lease_record_scrape(&l, &r);
	cr_assert_not(l.scrape.ok);
	cr_assert_str_eq(l.scrape.error, r.error);
}

Test(registry, iteration_in_slot_order)
{
	pid_t p[3] = { sleeper(), sleeper(), sleeper() };
	struct lease *l;
	int seen[3] = { 0, 0, 0 }, n = 0, last = -1, w;

	REGISTRY_FOREACH (l, &reg)
		n++;
	cr_assert_eq(n, 0, "nothing to walk in an empty registry");
	cr_assert_not_null(lease(p[0], 2, NULL));
	cr_assert_not_null(lease(p[1], 0, NULL));
	cr_assert_not_null(lease(p[2], 1, NULL));
	REGISTRY_FOREACH (l, &reg) {
		cr_assert_gt(l->worker, last, "in slot order");
		last = l->worker;
		seen[l->worker]++;
	}
	cr_assert(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
	/* The safe form survives ending the lease it stands on. */
	n = 0;
	REGISTRY_FOREACH_SAFE (l, &reg, w) {
		if (w != 1)
			lease_close(l, LEASE_END_RELEASE);
		n++;
	}
	cr_assert_eq(n, 3);
	cr_assert_eq(reg.count, 1);
	cr_assert_eq(registry_next(&reg, -1)->worker, 1);
	cr_assert_null(registry_next(&reg, 1));
	reap(p, 3);
}

Test(registry, reserved_slot_is_held_for_its_source)
{
	enum registry_error error;
	pid_t p[3] = { sleeper(), sleeper(), sleeper() };
	struct lease *l;

	cr_assert_eq(registry_reserve(&reg, -1, LEASE_SPAWN), 0);
	cr_assert_eq(registry_reserve(&reg, 0, LEASE_SPAWN), -1,
	    "reserved twice");
	cr_assert_eq(pool_nfree(&reg.pool), 2);
	cr_assert_eq(lease(p[0], -1, NULL)->worker, 1,
	    "the pool skips a reserved slot");
	cr_assert_null(lease(p[1], 0, &error),
	    "another source may not take it");
	cr_assert_eq(error, REGISTRY_FULL);
	l = lease_as(p[1], 0, LEASE_SPAWN, &error);
	cr_assert_not_null(l, "its own source takes it");
	cr_assert_eq(l->worker, 0);
	cr_assert_null(lease_as(p[2], 0, LEASE_SPAWN, &error),
	    "one lease at a time");
	cr_assert_eq(error, REGISTRY_FULL);

	/* The lease ends; the slot stays held for the next process. */
	lease_close(l, LEASE_END_EXIT);
	cr_assert_eq(reg.count, 1);
	cr_assert_eq(pool_nfree(&reg.pool), 1, "still held");
	cr_assert_eq(lease(p[2], -1, NULL)->worker, 2, "the only free one");
	cr_assert_null(registry_find_worker(&reg, 0));
	l = lease_as(p[1], 0, LEASE_SPAWN, NULL);
	cr_assert_not_null(l, "the restart takes the slot again");

	/* Let go while leased: the lease keeps it until it ends. */
	registry_unreserve(&reg, 0);
	cr_assert_eq(pool_nfree(&reg.pool), 0);
	lease_close(l, LEASE_END_EXIT);
	cr_assert_eq(pool_nfree(&reg.pool), 1, "free once the lease ended");
	cr_assert_eq(registry_reserve(&reg, 0, LEASE_SPAWN), 0);
	registry_unreserve(&reg, 0);
	cr_assert_eq(pool_nfree(&reg.pool), 1, "free at once without a lease");
	registry_unreserve(&reg, 0); /* not reserved: nothing happens */
	registry_unreserve(&reg, 7); /* outside the pool: nothing happens */
	cr_assert_eq(pool_nfree(&reg.pool), 1);
	reap(p, 3);
}

Test(registry, find_lease_checks_the_process)
{
	pid_t a = sleeper();
	struct lease *l = lease(a, -1, NULL);

	cr_assert_eq(registry_find_lease(&reg, l->worker, a, l->starttime), l);
	cr_assert_null(registry_find_lease(&reg, l->worker, a,
			   l->starttime + 1),
	    "another process with the same pid");
	cr_assert_null(
	    registry_find_lease(&reg, l->worker, a + 1, l->starttime));
	cr_assert_null(
	    registry_find_lease(&reg, l->worker + 1, a, l->starttime));
	cr_assert_null(registry_find_lease(&reg, -1, a, l->starttime));
	reap(&a, 1);
}
