/*
 * Spawn mode (--workers N): promfork forks N copies of COMMAND itself, for
 * servers with no pre-fork of their own.  Each copy owns one pool slot for
 * its whole life: it is told its port and worker number, and when it dies
 * it is restarted in the same slot (with exponential backoff that resets
 * once it has run stably), so its target and series carry on.  While a
 * worker is down its slot stays reserved in the registry, so no one else
 * takes it.
 *
 * Signals: TERM, INT and QUIT stop every worker (TERM, then KILL after the
 * grace period; a second one kills at once), HUP restarts them one at a
 * time, TTIN and TTOU add and remove one; others are passed to every worker.
 */
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

#define SPAWN_BACKOFF_MIN_MS 100
#define SPAWN_BACKOFF_MAX_MS 30000
#define SPAWN_STABLE_MS 10000 /* a worker that ran this long was healthy */
#define SPAWN_ROLL_SETTLE_MS 1000 /* HUP: a new worker must live this long */

enum spawn_state {
	SPAWN_RUNNING,
	SPAWN_BACKOFF, /* dead, the timer restarts it */
	SPAWN_STOPPING /* TERM sent, the timer sends KILL */
};
enum spawn_then { SPAWN_THEN_RESTART, SPAWN_THEN_REMOVE };

struct spawn_worker {
	struct spawn *sp;
	int slot;
	pid_t pid;
	enum spawn_state state;
	enum spawn_then then; /* when STOPPING */
	int roll; /* HUP asked for a restart not yet done */
	unsigned int failures; /* deaths in a row without a stable run */
	struct timespec started;
	struct event *ev_timer;
};

struct spawn {
	struct event_base *base;
	struct registry *reg;
	char **command;
	int grace_ms;
	char *socket_path;
	const struct privsep_cred *cred; /* NULL: as promfork's user */
	struct spawn_worker **w;
	size_t n;
	struct spawn_worker *rolling; /* stopped for HUP, not yet back */
	struct spawn_worker *settling; /* restarted for HUP, on probation */
	struct event *ev_roll;
	int rolling_on; /* a HUP restart is under way */
	int stopping;
	int done;
	struct spawn_stats stats;
};

static void spawn_worker_start(struct spawn_worker *, int restart);
static void spawn_roll_step(struct spawn *);

/* Exponential backoff: 100 ms after the first failure, at most 30 s. */
unsigned int
spawn_backoff_ms(unsigned int failures)
{
	unsigned int ms = SPAWN_BACKOFF_MIN_MS;

	while (failures-- > 1 && ms < SPAWN_BACKOFF_MAX_MS)
		ms *= 2;
	return ms < SPAWN_BACKOFF_MAX_MS ? ms : SPAWN_BACKOFF_MAX_MS;
}

static char *
spawn_subst(const char *arg, const char *worker, const char *port)
{
	size_t len = 0, wl = strlen(worker), pl = strlen(port);
	const char *p;
	char *out, *o;

	for (p = arg; *p != '\0';) {
		if (strncmp(p, "{worker}", 8) == 0) {
			len += wl;
			p += 8;
		} else if (strncmp(p, "{port}", 6) == 0) {
			len += pl;
			p += 6;
		} else {
			len++;
			p++;
		}
	}
	o = out = xmalloc(len + 1);
	for (p = arg; *p != '\0';) {
		if (strncmp(p, "{worker}", 8) == 0) {
			memcpy(o, worker, wl);
			o += wl;
			p += 8;
		} else if (strncmp(p, "{port}", 6) == 0) {
			memcpy(o, port, pl);
			o += pl;
			p += 6;
		} else
			*o++ = *p++;
	}
	*o = '\0';
	return out;
}

/* COMMAND for one worker: {port} and {worker} replaced in every argument. */
char **
spawn_argv(char **command, int worker, uint16_t port)
{
	char ws[16], ps[8], **argv;
	size_t i, n;

	snprintf(ws, sizeof ws, "%d", worker);
	snprintf(ps, sizeof ps, "%u", port);
	for (n = 0; command[n] != NULL; n++)
		;
	argv = xcalloc(n + 1, sizeof *argv);
	for (i = 0; i < n; i++)
		argv[i] = spawn_subst(command[i], ws, ps);
	return argv;
}

static char **
spawn_argv_dup(char **command)
{
	char **argv;
	size_t i, n;

	for (n = 0; command[n] != NULL; n++)
		;
	argv = xcalloc(n + 1, sizeof *argv);
	for (i = 0; i < n; i++)
		argv[i] = xstrdup(command[i]);
	return argv;
}

void
spawn_argv_free(char **argv)
{
	size_t i;

	if (argv == NULL)
		return;
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

static long long
spawn_ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - t->tv_sec) * 1000 +
	    (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void
spawn_timer_add(struct event *ev, unsigned int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_add(ev, &tv);
}

static void
spawn_worker_remove(struct spawn_worker *w)
{
	struct spawn *sp = w->sp;
	size_t i;

	for (i = 0; i < sp->n; i++) {
		if (sp->w[i] == w)
			break;
	}
	if (i < sp->n) {
		memmove(&sp->w[i], &sp->w[i + 1],
		    (sp->n - i - 1) * sizeof *sp->w);
		sp->n--;
	}
	if (sp->rolling == w)
		sp->rolling = NULL;
	if (sp->settling == w)
		sp->settling = NULL;
	event_free(w->ev_timer);
	registry_unreserve(sp->reg, w->slot);
	free(w);
	spawn_roll_step(sp); /* w may have been the one HUP waited for */
	if (sp->stopping && sp->n == 0 && !sp->done) {
		sp->done = 1;
		log_info("all workers stopped");
		event_base_loopexit(sp->base, NULL);
	}
}

/* TERM now, KILL when the grace period is over. */
static void
spawn_worker_stop(struct spawn_worker *w, enum spawn_then then)
{
	w->then = then;
	if (w->state == SPAWN_STOPPING)
		return;
	w->state = SPAWN_STOPPING;
	log_debug("stopping worker %d (pid %d)", w->slot, (int)w->pid);
	if (kill(w->pid, SIGTERM) != 0 && errno != ESRCH)
		log_warn("kill %d", (int)w->pid);
	spawn_timer_add(w->ev_timer, (unsigned int)w->sp->grace_ms);
}

static void
spawn_worker_timer_cb(evutil_socket_t fd, short events, void *arg)
{
	struct spawn_worker *w = arg;

	switch (w->state) {
	case SPAWN_BACKOFF:
		spawn_worker_start(w, 1);
		break;
	case SPAWN_STOPPING:
		log_warnx("worker %d (pid %d) did not stop within %d ms of "
			  "SIGTERM; sending SIGKILL",
		    w->slot, (int)w->pid, w->sp->grace_ms);
		if (kill(w->pid, SIGKILL) != 0 && errno != ESRCH)
			log_warn("kill %d", (int)w->pid);
		break;
	case SPAWN_RUNNING:
		break;
	}
}

static void
spawn_worker_backoff(struct spawn_worker *w)
{
	unsigned int ms;

	w->failures++;
	ms = spawn_backoff_ms(w->failures);
	w->state = SPAWN_BACKOFF;
	w->pid = 0;
	if (w->failures >= SPAWN_LOOP_FAILURES)
		log_warnx("worker %d is crash looping: %u failures in a row; "
			  "next start in %.1f s",
		    w->slot, w->failures, ms / 1000.0);
	else
		log_info("worker %d restarts in %.1f s", w->slot, ms / 1000.0);
	spawn_timer_add(w->ev_timer, ms);
}

/* Forks the worker in its slot and gives it the lease of that slot. */
static void
spawn_worker_start(struct spawn_worker *w, int restart)
{
	struct spawn *sp = w->sp;
	struct registry *reg = sp->reg;
	uint16_t port = pool_port(&reg->pool, w->slot);
	char *env[4] = { NULL, NULL, NULL, NULL }, **argv, *cause = NULL;
	enum registry_error error;
	struct lease *l;
	int created, i;
	pid_t pid;

	argv = spawn_argv(sp->command, w->slot, port);
	xasprintf(&env[0], "%s=%u", PROMFORK_PORT_ENV, port);
	xasprintf(&env[1], "%s=%d", PROMFORK_WORKER_ENV, w->slot);
	if (sp->socket_path != NULL)
		xasprintf(&env[2], "%s=%s", PROMFORK_SOCKET_ENV,
		    sp->socket_path);
	/* Workers are ours alone: they go when promfork goes. */
	pid = child_fork(argv, env, SIGTERM, sp->cred, &cause);
	for (i = 0; i < 3; i++)
		free(env[i]);
	spawn_argv_free(argv);

	clock_gettime(CLOCK_MONOTONIC, &w->started);
	if (pid == -1) {
		log_warnx("worker %d: %s", w->slot, cause);
		free(cause);
		spawn_worker_backoff(w);
		return;
	}
	sp->stats.starts++;
	if (restart)
		sp->stats.restarts++;
	w->pid = pid;
	w->state = SPAWN_RUNNING;
	log_info("started worker %d as pid %d on port %u", w->slot, (int)pid,
	    port);

	/* The slot is reserved for spawn's leases: this one takes it. */
	l = registry_lease_pid(reg, pid, NULL, LEASE_SPAWN, w->slot, &created,
	    &error, &cause);
	if (l == NULL) {
		/* It died at once; its reaping restarts it. */
		log_warnx("worker %d (pid %d) has no lease: %s", w->slot,
		    (int)pid, cause);
		free(cause);
	}
}

static struct spawn_worker *
spawn_worker_add(struct spawn *sp, int slot)
{
	struct spawn_worker *w = xcalloc(1, sizeof *w);

	w->sp = sp;
	w->slot = slot; /* reserved by spawn_grow */
	w->ev_timer = evtimer_new(sp->base, spawn_worker_timer_cb, w);
	sp->w = xreallocarray(sp->w, sp->n + 1, sizeof *sp->w);
	sp->w[sp->n++] = w;
	spawn_worker_start(w, 0);
	return w;
}

/* TTIN: one more worker, in the lowest free slot. */
static int
spawn_grow(struct spawn *sp, char **cause)
{
	int slot;

	if ((slot = registry_reserve(sp->reg, -1, LEASE_SPAWN)) < 0) {
		xasprintf(cause,
		    "no free port in the range for another "
		    "worker; widen --port-range");
		return -1;
	}
	spawn_worker_add(sp, slot);
	return 0;
}

static unsigned int
spawn_wanted(const struct spawn *sp)
{
	unsigned int n = 0;
	size_t i;

	for (i = 0; i < sp->n; i++) {
		const struct spawn_worker *w = sp->w[i];
		if (w->state != SPAWN_STOPPING || w->then != SPAWN_THEN_REMOVE)
			n++;
	}
	return n;
}

/* TTOU: the newest worker goes, as gunicorn does; one always stays. */
static void
spawn_shrink(struct spawn *sp)
{
	struct spawn_worker *w;
	size_t i;

	if (spawn_wanted(sp) <= 1) {
		log_warnx("SIGTTOU ignored: the last worker stays");
		return;
	}
	for (i = sp->n; i-- > 0;) {
		w = sp->w[i];
		if (w->state == SPAWN_STOPPING && w->then == SPAWN_THEN_REMOVE)
			continue;
		log_info("removing worker %d", w->slot);
		if (sp->rolling == w)
			sp->rolling = NULL;
		if (w->state == SPAWN_BACKOFF)
			spawn_worker_remove(w);
		else
			spawn_worker_stop(w, SPAWN_THEN_REMOVE);
		return;
	}
}

/* HUP: the next worker due for restart is stopped; one at a time. */
static void
spawn_roll_step(struct spawn *sp)
{
	size_t i;

	if (!sp->rolling_on || sp->rolling != NULL || sp->stopping ||
	    event_pending(sp->ev_roll, EV_TIMEOUT, NULL))
		return;
	for (i = 0; i < sp->n; i++) {
		struct spawn_worker *w = sp->w[i];
		if (!w->roll)
			continue;
		w->roll = 0;
		if (w->state != SPAWN_RUNNING)
			continue; /* starts afresh anyway, or is going */
		log_info("restarting worker %d (pid %d)", w->slot, (int)w->pid);
		sp->rolling = w;
		spawn_worker_stop(w, SPAWN_THEN_RESTART);
		return;
	}
	sp->rolling_on = 0;
	log_info("restart of all workers done");
}

static void
spawn_roll_cb(evutil_socket_t fd, short events, void *arg)
{
	struct spawn *sp = arg;

	sp->settling = NULL;
	spawn_roll_step(sp);
}

/* Forgets the restarts HUP asked for; returns how many were left. */
static size_t
spawn_roll_abort(struct spawn *sp)
{
	size_t i, left = 0;

	for (i = 0; i < sp->n; i++) {
		left += (size_t)sp->w[i]->roll;
		sp->w[i]->roll = 0;
	}
	event_del(sp->ev_roll);
	sp->settling = NULL;
	sp->rolling_on = 0;
	return left;
}

static void
spawn_stop_all(struct spawn *sp)
{
	size_t i;

	if (sp->stopping) {
		log_warnx("second stop signal: killing every worker now");
		for (i = 0; i < sp->n; i++) {
			if (sp->w[i]->pid > 0)
				kill(sp->w[i]->pid, SIGKILL);
		}
		return;
	}
	log_info("stopping %zu workers (SIGKILL after %d ms)", sp->n,
	    sp->grace_ms);
	spawn_roll_abort(sp);
	sp->stopping = 1;
	sp->rolling = NULL;
	for (i = sp->n; i-- > 0;) {
		struct spawn_worker *w = sp->w[i];
		if (w->state == SPAWN_BACKOFF)
			spawn_worker_remove(w);
		else
			spawn_worker_stop(w, SPAWN_THEN_REMOVE);
	}
	if (sp->n == 0 && !sp->done) {
		sp->done = 1;
		event_base_loopexit(sp->base, NULL);
	}
}

void
spawn_signal(struct spawn *sp, int sig)
{
	char *cause = NULL;
	size_t i;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
		spawn_stop_all(sp);
		break;
	case SIGHUP:
		if (sp->stopping)
			break;
		log_info("SIGHUP: restarting %zu workers one at a time", sp->n);
		for (i = 0; i < sp->n; i++)
			sp->w[i]->roll = 1;
		sp->rolling_on = 1;
		spawn_roll_step(sp);
		break;
	case SIGTTIN:
		if (sp->stopping)
			break;
		if (spawn_grow(sp, &cause) != 0) {
			log_warnx("SIGTTIN ignored: %s", cause);
			free(cause);
		}
		break;
	case SIGTTOU:
		if (!sp->stopping)
			spawn_shrink(sp);
		break;
	default:
		for (i = 0; i < sp->n; i++) {
			if (sp->w[i]->pid > 0 &&
			    kill(sp->w[i]->pid, sig) != 0 && errno != ESRCH)
				log_warn("kill %d", (int)sp->w[i]->pid);
		}
		break;
	}
}

/* A dead worker of ours: restart it, or finish what was asked of it. */
void
spawn_reaped(struct spawn *sp, pid_t pid, int wstatus)
{
	struct spawn_worker *w = NULL;
	struct lease *l;
	long long ran;
	size_t i;

	for (i = 0; i < sp->n; i++) {
		if (sp->w[i]->pid == pid && sp->w[i]->state != SPAWN_BACKOFF) {
			w = sp->w[i];
			break;
		}
	}
	if (w == NULL)
		return;
	/* The pidfd may not have told the registry yet. */
	if ((l = registry_find_pid(sp->reg, pid)) != NULL)
		lease_close(l, LEASE_END_EXIT);
	event_del(w->ev_timer);
	ran = spawn_ms_since(&w->started);
	w->pid = 0;

	if (w->state == SPAWN_STOPPING && w->then == SPAWN_THEN_REMOVE) {
		log_info("worker %d (pid %d) stopped with status %d", w->slot,
		    (int)pid, child_wait_status(wstatus));
		spawn_worker_remove(w);
		return;
	}
	if (w->state == SPAWN_STOPPING) {
		sp->rolling = NULL;
		sp->settling = w;
		spawn_worker_start(w, 1);
		spawn_timer_add(sp->ev_roll, SPAWN_ROLL_SETTLE_MS);
		return;
	}

	sp->stats.deaths++;
	log_warnx("worker %d (pid %d) exited with status %d after %.1f s",
	    w->slot, (int)pid, child_wait_status(wstatus), ran / 1000.0);
	if (ran >= SPAWN_STABLE_MS)
		w->failures = 0;
	/* A new worker that dies at once stops a HUP from going on. */
	if (sp->settling == w && (i = spawn_roll_abort(sp)) > 0)
		log_warnx(
		    "restart of the workers stopped: worker %d died "
		    "right after its restart; %zu workers keep running as "
		    "they were",
		    w->slot, i);
	spawn_worker_backoff(w);
}

int
spawn_done(const struct spawn *sp)
{
	return sp->done;
}

const struct spawn_stats *
spawn_stats(struct spawn *sp)
{
	size_t i;

	sp->stats.workers = spawn_wanted(sp);
	sp->stats.backoff = 0;
	sp->stats.crash_looping = 0;
	for (i = 0; i < sp->n; i++) {
		if (sp->w[i]->state != SPAWN_BACKOFF)
			continue;
		sp->stats.backoff++;
		if (sp->w[i]->failures >= SPAWN_LOOP_FAILURES)
			sp->stats.crash_looping++;
	}
	return &sp->stats;
}

struct spawn *
spawn_create(struct event_base *base, struct registry *reg,
    const struct spawn_config *cfg, char **cause)
{
	struct spawn *sp = xcalloc(1, sizeof *sp);
	int i;

	sp->base = base;
	sp->reg = reg;
	sp->command = spawn_argv_dup(cfg->command);
	sp->grace_ms = cfg->grace_ms > 0 ? cfg->grace_ms : SPAWN_GRACE_MS;
	if (cfg->socket_path != NULL)
		sp->socket_path = xstrdup(cfg->socket_path);
	sp->cred = cfg->cred;
	sp->ev_roll = evtimer_new(base, spawn_roll_cb, sp);
	for (i = 0; i < cfg->workers; i++) {
		if (spawn_grow(sp, cause) != 0) {
			spawn_free(sp);
			return NULL;
		}
	}
	return sp;
}

/* --workers: the supervisor of the options' command; exits on failure. */
struct spawn *
spawn_setup(struct event_base *base, struct registry *reg,
    const struct options *o, const char *socket_path,
    const struct privsep_cred *cred)
{
	struct spawn_config cfg;
	struct spawn *sp;
	char *cause = NULL;

	memset(&cfg, 0, sizeof cfg);
	cfg.command = o->command;
	cfg.workers = o->workers;
	cfg.grace_ms = o->grace_ms;
	cfg.socket_path = socket_path;
	cfg.cred = cred;
	if ((sp = spawn_create(base, reg, &cfg, &cause)) == NULL)
		fatalx("%s", cause);
	return sp;
}

/* Workers still running here are killed: promfork is going away. */
void
spawn_free(struct spawn *sp)
{
	size_t i;

	if (sp == NULL)
		return;
	for (i = 0; i < sp->n; i++) {
		struct spawn_worker *w = sp->w[i];
		if (w->pid > 0) {
			log_warnx("killing worker %d (pid %d)", w->slot,
			    (int)w->pid);
			kill(w->pid, SIGKILL);
		}
		event_free(w->ev_timer);
		registry_unreserve(sp->reg, w->slot);
		free(w);
	}
	free(sp->w);
	spawn_argv_free(sp->command);
	event_free(sp->ev_roll);
	free(sp->socket_path);
	free(sp);
}
