#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

/* Nothing binds these ports: the pool has no probe, the workers are sh. */
#define LOW 41000
#define HIGH 41007

struct fixture {
	struct event_base *base;
	struct registry reg;
	struct spawn *sp;
	struct event *tick;
	char dir[64];
	int (*cond)(struct fixture *);
	struct timespec deadline;
	int met;
	size_t min_count; /* fewest leases seen since watch began */
	int watching;
};

static struct fixture fx;

static void
reap(struct fixture *f)
{
	struct lease *l;
	int wstatus;
	pid_t pid;

	/* As main.c's child_reap does. */
	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		if ((l = registry_find_pid(&f->reg, pid)) != NULL)
			lease_close(l, LEASE_END_EXIT);
		if (f->sp != NULL)
			spawn_reaped(f->sp, pid, wstatus);
	}
}

static int
past(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	    (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

static void
tick_cb(evutil_socket_t fd, short events, void *arg)
{
	struct fixture *f = arg;

	reap(f);
	if (f->cond != NULL && f->cond(f)) {
		f->met = 1;
		event_base_loopbreak(f->base);
	} else if (past(&f->deadline))
		event_base_loopbreak(f->base);
}

static void
changed_cb(void *arg)
{
	struct fixture *f = arg;

	if (f->watching && f->reg.count < f->min_count)
		f->min_count = f->reg.count;
}

/* Runs the loop until cond holds or ms have passed; returns cond. */
static int
run_until(int (*cond)(struct fixture *), int ms)
{
	struct timeval tv = { 0, 10 * 1000 };

	fx.cond = cond;
	fx.met = 0;
	clock_gettime(CLOCK_MONOTONIC, &fx.deadline);
	fx.deadline.tv_sec += ms / 1000;
	fx.deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (fx.deadline.tv_nsec >= 1000000000L) {
		fx.deadline.tv_sec++;
		fx.deadline.tv_nsec -= 1000000000L;
	}
	event_add(fx.tick, &tv);
	event_base_dispatch(fx.base);
	return fx.met || (cond != NULL && cond(&fx));
}

static void
setup(void)
{
	memset(&fx, 0, sizeof fx);
	strcpy(fx.dir, "/tmp/promfork-test-spawn.XXXXXX");
	cr_assert_not_null(mkdtemp(fx.dir));
	fx.base = event_base_new();
	registry_init(&fx.reg, fx.base, LOW, HIGH, NULL, NULL);
	registry_listen(&fx.reg, changed_cb, &fx);
	fx.tick = event_new(fx.base, -1, EV_PERSIST, tick_cb, &fx);
}

static void
teardown(void)
{
	char cmd[128];

	spawn_free(fx.sp);
	fx.sp = NULL;
	registry_finish(&fx.reg);
	event_free(fx.tick);
	event_base_free(fx.base);
	while (waitpid(-1, NULL, 0) > 0)
		;
	snprintf(cmd, sizeof cmd, "rm -rf %s", fx.dir);
	system(cmd);
}

TestSuite(spawn, .init = setup, .fini = teardown, .timeout = 30);

/* Starts n workers of sh -c script (with {worker} and {port} in it). */
static void
start(int n, const char *script, int grace_ms)
{
	struct spawn_config cfg;
	char *argv[] = { "/bin/sh", "-c", (char *)script, NULL };
	char *cause = NULL;

	memset(&cfg, 0, sizeof cfg);
	cfg.command = argv;
	cfg.workers = n;
	cfg.grace_ms = grace_ms;
	cfg.socket_path = "/nonexistent/promfork.sock";
	fx.sp = spawn_create(fx.base, &fx.reg, &cfg, &cause);
	cr_assert_not_null(fx.sp, "%s", cause);
}

static char *
script(const char *fmt)
{
	static char buf[512];

	snprintf(buf, sizeof buf, fmt, fx.dir, fx.dir, fx.dir);
	return buf;
}

static pid_t
pid_of(int slot)
{
	struct lease *l = registry_find_worker(&fx.reg, slot);

	return l != NULL ? l->pid : 0;
}

static int
three_leases(struct fixture *f)
{
	return f->reg.count == 3;
}

static int
one_lease(struct fixture *f)
{
	return f->reg.count == 1;
}

static int
two_leases(struct fixture *f)
{
	return f->reg.count == 2;
}

/* Only worker 0's slot is held: the removed workers' slots are free. */
static int
one_slot_held(struct fixture *f)
{
	return pool_nfree(&f->reg.pool) == f->reg.pool.size - 1;
}

static int nready;

/* Each worker touches ready.{worker} once its traps are set. */
static int
ready(struct fixture *f)
{
	char path[128];
	int s;

	for (s = 0; s < nready; s++) {
		snprintf(path, sizeof path, "%s/ready.%d", f->dir, s);
		if (access(path, F_OK) != 0)
			return 0;
	}
	return 1;
}

static int
done(struct fixture *f)
{
	return f->sp != NULL && spawn_done(f->sp);
}

/* What a worker wrote about itself: "WORKER PORT {worker} {port} SOCKET". */
static char *
report(int slot, pid_t pid)
{
	char path[128], *buf = xcalloc(1, 256);
	FILE *f;
	int i;

	snprintf(path, sizeof path, "%s/w%d.%d", fx.dir, slot, (int)pid);
	for (i = 0; i < 200; i++) {
		if ((f = fopen(path, "r")) != NULL) {
			if (fgets(buf, 256, f) != NULL && strchr(buf, '\n')) {
				fclose(f);
				return buf;
			}
			fclose(f);
		}
		usleep(10000);
	}
	cr_assert_fail("worker %d (pid %d) wrote no %s", slot, (int)pid, path);
	return NULL;
}

#define REPORTER \
	"echo \"$PROMFORK_WORKER $PROMFORK_PORT {worker} {port} " \
	"$PROMFORK_SOCKET\" > %s/w{worker}.$$; exec sleep 30"

Test(spawn, argv_substitution)
{
	char *cmd[] = { "srv", "--port={port}", "{worker}", "w{worker}p{port}x",
		"{port}{port}", "{por}", "{{port}}", "", "{worker", NULL };
	char **argv = spawn_argv(cmd, 3, 9403);

	cr_assert_str_eq(argv[0], "srv");
	cr_assert_str_eq(argv[1], "--port=9403");
	cr_assert_str_eq(argv[2], "3");
	cr_assert_str_eq(argv[3], "w3p9403x");
	cr_assert_str_eq(argv[4], "94039403");
	cr_assert_str_eq(argv[5], "{por}");
	cr_assert_str_eq(argv[6], "{9403}");
	cr_assert_str_eq(argv[7], "");
	cr_assert_str_eq(argv[8], "{worker");
	cr_assert_null(argv[9]);
	spawn_argv_free(argv);
	spawn_argv_free(NULL);
}

Test(spawn, backoff_doubles_up_to_a_cap)
{
	cr_assert_eq(spawn_backoff_ms(0), 100);
	cr_assert_eq(spawn_backoff_ms(1), 100);
	cr_assert_eq(spawn_backoff_ms(2), 200);
	cr_assert_eq(spawn_backoff_ms(3), 400);
	cr_assert_eq(spawn_backoff_ms(9), 25600);
	cr_assert_eq(spawn_backoff_ms(10), 30000);
	cr_assert_eq(spawn_backoff_ms(4000000000u), 30000);
}

Test(spawn, workers_get_their_slot_port_and_socket)
{
	int s;

	start(3, script(REPORTER), 1000);
	cr_assert(run_until(three_leases, 5000), "%zu leases", fx.reg.count);
	for (s = 0; s < 3; s++) {
		struct lease *l = registry_find_worker(&fx.reg, s);
		char want[128], *got;

		cr_assert_not_null(l);
		cr_assert_eq(l->source, LEASE_SPAWN);
		cr_assert_eq(l->port, LOW + s);
		got = report(s, l->pid);
		snprintf(want, sizeof want,
		    "%d %d %d %d "
		    "/nonexistent/promfork.sock\n",
		    s, LOW + s, s, LOW + s);
		cr_assert_str_eq(got, want);
		free(got);
	}
	cr_assert_eq(spawn_stats(fx.sp)->starts, 3);
	cr_assert_eq(spawn_stats(fx.sp)->workers, 3);
}

static pid_t old_pid;

static int
slot1_replaced(struct fixture *f)
{
	pid_t p = pid_of(1);

	return p != 0 && p != old_pid;
}

Test(spawn, dead_worker_restarts_in_its_slot)
{
	const struct spawn_stats *st;
	char *got;
	pid_t p0 = 0, p2 = 0;

	start(3, script(REPORTER), 1000);
	cr_assert(run_until(three_leases, 5000));
	old_pid = pid_of(1);
	p0 = pid_of(0);
	p2 = pid_of(2);
	cr_assert_eq(kill(old_pid, SIGKILL), 0);
	cr_assert(run_until(slot1_replaced, 5000), "not restarted");
	cr_assert_eq(pid_of(0), p0, "other workers are left alone");
	cr_assert_eq(pid_of(2), p2);
	got = report(1, pid_of(1));
	cr_assert_eq(strncmp(got, "1 41001 1 41001", 15), 0, "%s", got);
	free(got);
	st = spawn_stats(fx.sp);
	cr_assert_eq(st->deaths, 1);
	cr_assert_eq(st->restarts, 1);
	cr_assert_eq(st->backoff, 0);
}

static int
looping(struct fixture *f)
{
	return spawn_stats(f->sp)->crash_looping == 1;
}

Test(spawn, crash_loop_backs_off_and_keeps_the_slot)
{
	char *argv[] = { "/nonexistent/promfork-test-command", NULL };
	struct spawn_config cfg;
	const struct spawn_stats *st;
	char *cause = NULL;
	enum registry_error error;
	int created;
	struct lease *l;
	pid_t other;

	memset(&cfg, 0, sizeof cfg);
	cfg.command = argv;
	cfg.workers = 1;
	fx.sp = spawn_create(fx.base, &fx.reg, &cfg, &cause);
	cr_assert_not_null(fx.sp, "%s", cause);
	/* 100 + 200 ms of backoff before the third failure */
	cr_assert(run_until(looping, 5000), "no crash loop seen");
	st = spawn_stats(fx.sp);
	cr_assert_geq(st->deaths, 3);
	cr_assert_eq(st->backoff, 1);
	cr_assert_eq(st->workers, 1);

	/* The dead worker's slot 0 is not handed to anyone else. */
	other = fork();
	if (other == 0) {
		pause();
		_exit(0);
	}
	l = registry_lease_pid(&fx.reg, other, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	cr_assert_neq(l->worker, 0);
	kill(other, SIGKILL);
}

Test(spawn, ttin_adds_and_ttou_removes)
{
	pid_t p0;

	start(2, script(REPORTER), 1000);
	cr_assert(run_until(two_leases, 5000));
	p0 = pid_of(0);
	spawn_signal(fx.sp, SIGTTIN);
	cr_assert(run_until(three_leases, 5000));
	cr_assert_neq(pid_of(2), 0, "the new worker takes the next slot");
	cr_assert_eq(spawn_stats(fx.sp)->workers, 3);

	spawn_signal(fx.sp, SIGTTOU);
	cr_assert(run_until(two_leases, 5000));
	cr_assert_eq(pid_of(2), 0, "the newest worker goes");
	cr_assert_eq(pid_of(0), p0);
	spawn_signal(fx.sp, SIGTTOU);
	cr_assert(run_until(one_lease, 5000));
	spawn_signal(fx.sp, SIGTTOU);
	run_until(NULL, 300);
	cr_assert_eq(fx.reg.count, 1, "the last worker stays");
	cr_assert_eq(pid_of(0), p0);
	cr_assert_eq(spawn_stats(fx.sp)->deaths, 0, "removal is no death");
	cr_assert(run_until(one_slot_held, 5000),
	    "a removed worker's slot is no longer reserved");
}

Test(spawn, ttin_refused_when_the_range_is_full)
{
	int i;

	start(8, "exec sleep 30", 1000);
	spawn_signal(fx.sp, SIGTTIN);
	cr_assert_eq(spawn_stats(fx.sp)->workers, 8);
	for (i = 0; i < 8; i++)
		cr_assert_neq(pid_of(i), 0);
}

Test(spawn, term_stops_all_within_grace)
{
	struct timespec t0, t1;
	long ms;

	/* Worker 1 ignores TERM: KILL must follow after the grace period. */
	start(3,
	    script("[ {worker} = 1 ] && trap '' TERM; "
		   "touch %s/ready.{worker}; exec sleep 30"),
	    300);
	nready = 3;
	cr_assert(run_until(ready, 5000));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	spawn_signal(fx.sp, SIGTERM);
	cr_assert(run_until(done, 5000), "not all stopped");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000;
	cr_assert_geq(ms, 250, "KILL came before the grace period: %ld ms", ms);
	cr_assert_lt(ms, 3000, "stopping took %ld ms", ms);
	cr_assert_eq(fx.reg.count, 0);
	cr_assert_eq(spawn_stats(fx.sp)->deaths, 0);
	cr_assert_eq(spawn_stats(fx.sp)->workers, 0);
}

Test(spawn, second_term_kills_at_once)
{
	start(2, script("trap '' TERM; touch %s/ready.{worker}; exec sleep 30"),
	    20000);
	nready = 2;
	cr_assert(run_until(ready, 5000));
	spawn_signal(fx.sp, SIGTERM);
	run_until(NULL, 100);
	cr_assert_eq(fx.reg.count, 2, "they ignore TERM");
	spawn_signal(fx.sp, SIGINT);
	cr_assert(run_until(done, 3000));
}

static pid_t before[3];

static int
all_replaced(struct fixture *f)
{
	int s;

	for (s = 0; s < 3; s++) {
		if (pid_of(s) == 0 || pid_of(s) == before[s])
			return 0;
	}
	return 1;
}

Test(spawn, hup_restarts_one_at_a_time)
{
	int s;

	start(3, "exec sleep 30", 2000);
	cr_assert(run_until(three_leases, 5000));
	for (s = 0; s < 3; s++)
		before[s] = pid_of(s);
	fx.min_count = 3;
	fx.watching = 1;
	spawn_signal(fx.sp, SIGHUP);
	cr_assert(run_until(all_replaced, 15000), "not all restarted");
	cr_assert_eq(fx.min_count, 2, "at most one worker is down at a time");
	cr_assert_eq(spawn_stats(fx.sp)->restarts, 3);
	cr_assert_eq(spawn_stats(fx.sp)->deaths, 0);
}

Test(spawn, hup_stops_when_the_new_worker_dies)
{
	char *cmd;
	FILE *f;
	int s;

	cmd = script("test -e %s/broken && exit 1; touch %s/ready.{worker}; "
		     "exec sleep 30");
	start(3, cmd, 2000);
	nready = 3;
	cr_assert(run_until(ready, 5000));
	for (s = 0; s < 3; s++)
		before[s] = pid_of(s);
	xasprintf(&cmd, "%s/broken", fx.dir);
	f = fopen(cmd, "w");
	cr_assert_not_null(f);
	fclose(f);
	free(cmd);
	spawn_signal(fx.sp, SIGHUP);
	run_until(NULL, 3000);
	cr_assert_eq(pid_of(1), before[1], "worker 1 keeps running");
	cr_assert_eq(pid_of(2), before[2], "worker 2 keeps running");
	cr_assert_geq(spawn_stats(fx.sp)->deaths, 1);
}

Test(spawn, signals_are_passed_to_the_workers)
{
	int s;

	/* sh runs traps only between commands: wait for a child instead. */
	start(2,
	    script("trap 'touch %s/usr1.{worker}' USR1; "
		   "trap 'kill $!; exit 0' TERM; touch %s/ready.{worker}; "
		   "sleep 30 & while kill -0 $! 2>/dev/null; do wait $!; done"),
	    1000);
	nready = 2;
	cr_assert(run_until(ready, 5000));
	spawn_signal(fx.sp, SIGUSR1);
	run_until(NULL, 500);
	for (s = 0; s < 2; s++) {
		char path[128];
		struct stat sb;

		snprintf(path, sizeof path, "%s/usr1.%d", fx.dir, s);
		cr_assert_eq(stat(path, &sb), 0, "worker %d got no USR1", s);
	}
	cr_assert_eq(spawn_stats(fx.sp)->deaths, 0, "USR1 killed no one");
	spawn_signal(fx.sp, SIGTERM); /* so that no sleep is left behind */
	cr_assert(run_until(done, 5000));
}
