/*
 * The registry: the single owner of worker state.  A lease is one live
 * worker holding one slot of the port pool; it ends the moment its process
 * is gone (pidfd readable, or the liveness poll where pidfd is missing), on
 * an explicit release, or when a source says so.  Every change is announced
 * to the sinks, which decide when to render.
 */
#include <sys/epoll.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

#define REGISTRY_CHECK_MS 500

static const char *const lease_end_names[LEASE_END_COUNT] = { "exit", "release",
	"gone", "shutdown", "retire" };
static const char *const lease_source_names[] = { "api", "discover", "spawn" };
#define LEASE_SOURCES (sizeof lease_source_names / sizeof lease_source_names[0])

static void registry_exits_cb(evutil_socket_t, short, void *);
static void registry_release(struct registry *, int slot, int exited);

const char *
lease_end_name(enum lease_end e)
{
	return lease_end_names[e];
}

const char *
lease_source_name(enum lease_source s)
{
	return lease_source_names[s];
}

/* The source lease_source_name calls s; -1 for any other string. */
int
lease_source_parse(const char *s, enum lease_source *source)
{
	size_t i;

	for (i = 0; s != NULL && i < LEASE_SOURCES; i++) {
		if (strcmp(s, lease_source_names[i]) == 0) {
			*source = (enum lease_source)i;
			return 0;
		}
	}
	return -1;
}

static void
registry_changed(struct registry *reg)
{
	size_t i;

	for (i = 0; i < reg->nlisteners; i++)
		reg->listeners[i].fn(reg->listeners[i].arg);
}

static void
registry_check_cb(evutil_socket_t fd, short events, void *arg)
{
	registry_check(arg);
}

/* Monotonic milliseconds, for the pool's and the carries' times. */
static uint64_t
registry_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
registry_init(struct registry *reg, struct event_base *base, uint16_t low,
    uint16_t high, pool_probe_fn probe, void *probe_arg)
{
	struct timeval tv = { 0, REGISTRY_CHECK_MS * 1000 };

	memset(reg, 0, sizeof *reg);
	reg->base = base;
	pool_init(&reg->pool, low, high, probe, probe_arg);
	reg->slots = xcalloc(reg->pool.size, sizeof *reg->slots);
	reg->reserved = xcalloc(reg->pool.size, sizeof *reg->reserved);
	reg->stats.slot_leases =
	    xcalloc(reg->pool.size, sizeof *reg->stats.slot_leases);
	reg->prefer = -1;
	{
		static const struct continuity_config cc = { 1, CARRY_HOLD_MS,
			CARRY_MAX_SERIES };

		reg->cont = continuity_create(reg->pool.size, &cc);
	}
	reg->ev_check = event_new(base, -1, EV_PERSIST, registry_check_cb, reg);
	event_add(reg->ev_check, &tv);
	if ((reg->exit_fd = epoll_create1(EPOLL_CLOEXEC)) == -1)
		fatal("epoll_create1");
	reg->ev_exits = event_new(base, reg->exit_fd, EV_READ | EV_PERSIST,
	    registry_exits_cb, reg);
	event_add(reg->ev_exits, NULL);
}

void
registry_finish(struct registry *reg)
{
	reg->nlisteners = 0; /* sinks are gone first; tell no one */
	registry_clear(reg, LEASE_END_SHUTDOWN);
	event_free(reg->ev_check);
	event_free(reg->ev_exits);
	close(reg->exit_fd);
	free(reg->slots);
	free(reg->reserved);
	free(reg->stats.slot_leases);
	continuity_free(reg->cont);
	pool_finish(&reg->pool);
}

/* Slot continuity as the options say; before any lease. */
void
registry_continuity(struct registry *reg, const struct continuity_config *cc)
{
	continuity_free(reg->cont);
	reg->cont = continuity_create(reg->pool.size, cc);
}

/* Takes up slot's carried totals, as a state file kept them. */
int
registry_adopt_carry(struct registry *reg, int slot, const char *text,
    size_t len)
{
	return continuity_adopt(reg->cont, slot, text, len, registry_now_ms());
}

/* A stamp for a scrape starting now, to order the answers it applies. */
uint64_t
registry_stamp(struct registry *reg)
{
	return continuity_stamp(reg->cont);
}

/*
 * The carried totals to serve slot with, NULL when it has none; live: a
 * worker holds the slot.  Without one they last for the hold time.
 */
struct carry *
registry_carry(struct registry *reg, int slot, int live)
{
	return continuity_carry(reg->cont, slot, live, registry_now_ms());
}

void
registry_listen(struct registry *reg, registry_change_fn fn, void *arg)
{
	if (reg->nlisteners == sizeof reg->listeners / sizeof reg->listeners[0])
		fatalx("too many registry listeners");
	reg->listeners[reg->nlisteners].fn = fn;
	reg->listeners[reg->nlisteners].arg = arg;
	reg->nlisteners++;
}

/* For a sink or source that goes away before the registry. */
void
registry_unlisten(struct registry *reg, registry_change_fn fn, void *arg)
{
	size_t i;

	for (i = 0; i < reg->nlisteners; i++) {
		if (reg->listeners[i].fn == fn &&
		    reg->listeners[i].arg == arg) {
			memmove(&reg->listeners[i], &reg->listeners[i + 1],
			    (reg->nlisteners - i - 1) *
				sizeof reg->listeners[0]);
			reg->nlisteners--;
			return;
		}
	}
}

/*
 * The live lease in the lowest slot above worker (-1: the first), so that
 * REGISTRY_FOREACH walks the leases in slot order.
 */
struct lease *
registry_next(const struct registry *reg, int worker)
{
	size_t s;

	for (s = (size_t)(worker + 1); s < reg->pool.size; s++) {
		if (reg->slots[s] != NULL)
			return reg->slots[s];
	}
	return NULL;
}

struct lease *
registry_find_pid(struct registry *reg, pid_t pid)
{
	struct lease *l;

	REGISTRY_FOREACH (l, reg) {
		if (l->pid == pid)
			return l;
	}
	return NULL;
}

struct lease *
registry_find_worker(const struct registry *reg, int worker)
{
	if (worker < 0 || (size_t)worker >= reg->pool.size)
		return NULL;
	return reg->slots[worker];
}

/* The lease of worker, if it still belongs to the same process. */
struct lease *
registry_find_lease(const struct registry *reg, int worker, pid_t pid,
    unsigned long long starttime)
{
	struct lease *l = registry_find_worker(reg, worker);

	if (l == NULL || l->pid != pid || l->starttime != starttime)
		return NULL;
	return l;
}

/* A registration refused before it reached the registry (by the API). */
void
registry_count_refusal(struct registry *reg)
{
	reg->stats.refusals++;
}

/*
 * Holds slot (-1: the lowest free one) for the leases of source across
 * the lives of their processes: the pool gives it to no one else, a lease
 * of that source naming the slot takes it, and the slot stays held when
 * that lease ends, until registry_unreserve.  Returns the slot, or -1 when
 * it is taken (or none is free).
 */
int
registry_reserve(struct registry *reg, int slot, enum lease_source source)
{
	slot = slot < 0 ? pool_take(&reg->pool) : pool_claim(&reg->pool, slot);
	if (slot >= 0)
		reg->reserved[slot] = (unsigned char)(source + 1);
	return slot;
}

/* Lets slot go; a lease in it keeps it until the lease ends. */
void
registry_unreserve(struct registry *reg, int slot)
{
	if (slot < 0 || (size_t)slot >= reg->pool.size || !reg->reserved[slot])
		return;
	reg->reserved[slot] = 0;
	if (reg->slots[slot] == NULL)
		pool_release(&reg->pool, slot);
}

/*
 * Frees a slot whose lease ended, unless it is reserved; one freed by its
 * process ending goes to the replacement a master forks right away.
 */
static void
registry_release(struct registry *reg, int slot, int exited)
{
	if (reg->reserved[slot])
		return;
	if (exited)
		pool_release_exited(&reg->pool, slot, registry_now_ms());
	else
		pool_release(&reg->pool, slot);
}

/* Takes slot (-1: the pool's choice, reg->prefer first) for source. */
static int
registry_take(struct registry *reg, int slot, enum lease_source source)
{
	if (slot < 0)
		return pool_take_preferred(&reg->pool, reg->prefer,
		    registry_now_ms());
	if ((size_t)slot < reg->pool.size && reg->reserved[slot] != 0)
		return reg->reserved[slot] == source + 1 &&
			reg->slots[slot] == NULL
		    ? slot
		    : -1;
	return pool_claim(&reg->pool, slot);
}

/* Standalone: how many leases the processes of uid hold. */
int
registry_count_uid(const struct registry *reg, uid_t uid)
{
	size_t s;
	int n = 0;

	for (s = 0; s < reg->pool.size; s++) {
		if (reg->slots[s] != NULL && reg->slots[s]->uid == uid)
			n++;
	}
	return n;
}

/* Is the lease's process still the one that registered? */
static int
lease_alive(const struct lease *l)
{
	struct proc_stat st;
	char *cause = NULL;

	if (proc_stat_read(l->pid, &st, &cause) != 0) {
		free(cause);
		/* Out of descriptors says nothing about the process. */
		return proc_out_of_fds(errno);
	}
	return st.starttime == l->starttime;
}

/* The single teardown path of a lease. */
void
lease_close(struct lease *l, enum lease_end why)
{
	struct registry *reg = l->reg;

	log_info("worker %d (pid %d, port %u) released: %s", l->worker,
	    (int)l->pid, l->port, lease_end_name(why));
	if (l->pidfd != -1)
		close(l->pidfd); /* and so leaves the exit set */
	reg->slots[l->worker] = NULL;
	reg->count--;
	registry_release(reg, l->worker,
	    why == LEASE_END_EXIT || why == LEASE_END_RETIRE);
	reg->stats.ends[why]++;
	/* The workers outlive a shutdown: their lifetimes go on. */
	if (why != LEASE_END_SHUTDOWN)
		continuity_end(reg->cont, l->worker, l->body.data, l->body.len,
		    registry_now_ms());
	buf_finish(&l->body);
	labels_finish(&l->labels);
	free(l);
	registry_changed(reg);
}

/*
 * Ends the leases whose process has exited.  The loop runs it when the
 * exit set turns readable, and a new lease runs it first: a pre-fork master
 * replaces a dead worker at once, and the new one must find the old slot
 * free, not race the event loop for it.  One epoll_wait on the set of all
 * pidfds finds them, however many leases there are; each is confirmed on
 * its own pidfd, as the set may still name a pidfd closed since (a child
 * forked meanwhile holds a copy until it execs).
 */
static void
registry_sweep(struct registry *reg)
{
	struct epoll_event evs[64];
	size_t rounds;
	int n, i;

	for (rounds = 0; rounds <= reg->pool.size / 64; rounds++) {
		if ((n = epoll_wait(reg->exit_fd, evs, 64, 0)) <= 0)
			return;
		for (i = 0; i < n; i++) {
			struct lease *l = registry_find_worker(reg,
			    (int)(evs[i].data.u64 & 0xffffffff));

			if (l != NULL && l->pidfd != -1 &&
			    (uint64_t)l->pidfd == evs[i].data.u64 >> 32 &&
			    proc_exited(l->pidfd))
				lease_close(l, LEASE_END_EXIT);
		}
		if (n < 64)
			return;
	}
}

static void
registry_exits_cb(evutil_socket_t fd, short events, void *arg)
{
	registry_sweep(arg);
}

/*
 * Adds the lease's pidfd to the exit set.  One-shot: a process exits once,
 * and a stale entry must not keep the set readable.  Should the set refuse
 * it, the liveness poll watches the lease instead.
 */
static void
registry_watch_exit(struct registry *reg, struct lease *l)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof ev);
	ev.events = EPOLLIN | EPOLLONESHOT;
	ev.data.u64 = (uint64_t)l->pidfd << 32 | (uint32_t)l->worker;
	if (epoll_ctl(reg->exit_fd, EPOLL_CTL_ADD, l->pidfd, &ev) != 0) {
		log_warn("worker %d (pid %d): epoll_ctl, falling back to "
			 "polling",
		    l->worker, (int)l->pid);
		close(l->pidfd);
		l->pidfd = -1;
	}
}

/*
 * Finds or makes the lease of ref's process, taking over its pidfd.  slot
 * is -1 for the lowest free port, or the one slot a source requires.  On
 * failure *error says what went wrong and *cause says why, for people.
 */
struct lease *
registry_lease(struct registry *reg, struct proc_ref *ref,
    const struct labels *labels, enum lease_source source, int slot,
    int *created, enum registry_error *error, char **cause)
{
	struct lease *l;
	pid_t pid = ref->pid;

	*created = 0;
	*error = REGISTRY_OK;
	if ((l = registry_find_pid(reg, pid)) != NULL) {
		if (l->starttime == ref->st.starttime) {
			/* registered now: no longer ends with its listener */
			if (source == LEASE_API && l->source == LEASE_DISCOVER)
				l->source = LEASE_API;
			proc_ref_finish(ref);
			return l;
		}
		lease_close(l, LEASE_END_EXIT);
	}

	registry_sweep(reg);
	if ((slot = registry_take(reg, slot, source)) < 0) {
		proc_ref_finish(ref);
		xasprintf(cause,
		    "no free port in %u-%u: all %zu ports are "
		    "leased or held by other processes; widen --port-range",
		    reg->pool.low,
		    pool_port(&reg->pool, (int)reg->pool.size - 1),
		    reg->pool.size);
		*error = REGISTRY_FULL;
		reg->stats.refusals++;
		return NULL;
	}

	l = xcalloc(1, sizeof *l);
	l->reg = reg;
	l->worker = slot;
	l->port = pool_port(&reg->pool, slot);
	l->pid = pid;
	l->starttime = ref->st.starttime;
	l->pidfd = ref->pidfd;
	ref->pidfd = -1;
	l->source = source;
	if (labels != NULL)
		labels_copy(&l->labels, labels);
	l->created = time(NULL);
	l->uid = (uid_t)-1; /* standalone: its owner, set by who leased it */
	clock_gettime(CLOCK_MONOTONIC, &l->created_mono);
	reg->slots[slot] = l;
	reg->count++;
	reg->stats.registrations++;
	reg->stats.slot_leases[slot]++;
	*created = 1;

	/* Without a pidfd, the pid may have been reused since stat was read. */
	if (l->pidfd == -1 && !lease_alive(l)) {
		xasprintf(cause, "process %d has exited", (int)pid);
		*error = REGISTRY_GONE;
		*created = 0;
		lease_close(l, LEASE_END_EXIT);
		return NULL;
	}
	if (l->pidfd != -1)
		registry_watch_exit(reg, l);
	log_info("worker %d (pid %d) leased port %u (%s)", l->worker, (int)pid,
	    l->port, lease_source_name(source));
	registry_changed(reg);
	return l;
}

/* Replaces a lease's labels (its process asked, or an ancestor of it). */
void
registry_relabel(struct registry *reg, struct lease *l,
    const struct labels *labels)
{
	labels_finish(&l->labels);
	labels_copy(&l->labels, labels);
	log_info("worker %d (pid %d) relabelled", l->worker, (int)l->pid);
	registry_changed(reg);
}

/*
 * registry_lease with a slot the caller would like (a server's own worker
 * index), granted when it is free; otherwise the pool's usual choice.
 */
struct lease *
registry_lease_prefer(struct registry *reg, struct proc_ref *ref,
    const struct labels *labels, enum lease_source source, int prefer,
    int *created, enum registry_error *error, char **cause)
{
	struct lease *l;

	reg->prefer = prefer;
	l = registry_lease(reg, ref, labels, source, -1, created, error, cause);
	reg->prefer = -1;
	return l;
}

/* registry_lease for a pid not yet held. */
struct lease *
registry_lease_pid(struct registry *reg, pid_t pid, const struct labels *labels,
    enum lease_source source, int slot, int *created,
    enum registry_error *error, char **cause)
{
	struct proc_ref ref;

	*created = 0;
	if (proc_ref_init(pid, &ref, cause) != 0) {
		*error =
		    proc_out_of_fds(errno) ? REGISTRY_NOFDS : REGISTRY_GONE;
		return NULL;
	}
	return registry_lease(reg, &ref, labels, source, slot, created, error,
	    cause);
}

/*
 * Ends every lease whose process is gone.  Run on SIGCHLD and by the poll;
 * it is what keeps leases honest where pidfd_open is not available.
 */
void
registry_check(struct registry *reg)
{
	struct lease *l;
	size_t s;
	int w;

	REGISTRY_FOREACH_SAFE (l, reg, w) {
		if (l->pidfd == -1 && !lease_alive(l))
			lease_close(l, LEASE_END_EXIT);
	}
	/* Carried totals of slots long without a worker are forgotten. */
	for (s = 0; s < reg->pool.size; s++) {
		if (reg->slots[s] == NULL)
			registry_carry(reg, (int)s, 0);
	}
}

void
registry_clear(struct registry *reg, enum lease_end why)
{
	struct lease *l;
	int w;

	REGISTRY_FOREACH_SAFE (l, reg, w)
		lease_close(l, why);
}

/*
 * Keeps body, the whole answer to a scrape of l that started at stamp, as
 * the final values of l's lifetime should it end before a newer one: the
 * lease takes body's buffer and leaves body its old one.
 */
void
lease_keep_body(struct lease *l, uint64_t stamp, struct buf *body)
{
	struct buf old = l->body;

	if (stamp < l->body_stamp)
		return;
	l->body_stamp = stamp;
	l->body = *body;
	*body = old;
	body->len = 0;
}

void
lease_record_scrape(struct lease *l, const struct scrape_result *r)
{
	struct lease_scrape *ls = &l->scrape;

	ls->when = time(NULL);
	ls->status = r->status;
	ls->duration_ms = r->duration_ms;
	ls->ok = r->error == NULL && r->status >= 200 && r->status < 300;
	if (r->error != NULL)
		snprintf(ls->error, sizeof ls->error, "%s", r->error);
	else if (!ls->ok)
		snprintf(ls->error, sizeof ls->error, "HTTP status %d",
		    r->status);
	else
		ls->error[0] = '\0';
}
