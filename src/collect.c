/*
 * Scrapes of a set of leases at once: the one place that starts them with
 * a deadline, finds each lease again when its answer is in (it may have
 * ended, or its slot gone to another process meanwhile), records the result
 * on it, and reports once, when every scrape has ended.  The proxy (one
 * lease, streamed), the fan-out (every lease, buffered) and the status page
 * (the leases not scraped of late) are built on it, and so can a single
 * scrape that has no client at all.  A scrape that cannot even start ends
 * through scrape's done like any other failed one, so each failure has one
 * answer: recorded on the lease, the worker down in the fan-out, 502 from
 * the proxy.  Nothing here knows about the client that asked: its owner
 * cancels the collect when the client goes.
 *
 * A port is scraped only while its listeners belong to the lease's
 * process: a worker that died leaves its port free for anyone, and another
 * user listening there (on 127.0.0.1 or ::1) must get neither the request
 * nor the chance to answer for the worker.  One sock_diag dump of the
 * leases' ports per collect, one read of each lease's fds.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "promfork.h"

struct collect_job {
	struct collect *c;
	size_t i;
	struct scrape *scrape; /* NULL once it has ended */
	struct timespec started;
};

struct collect {
	struct registry *reg;
	struct collect_callbacks cb;
	void *arg;
	struct collect_item *items;
	struct collect_job *jobs;
	size_t n;
	size_t pending;
	struct event *ev_done; /* reports an empty set from the loop */
};

/* The single teardown path of a collect. */
static void
collect_free(struct collect *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		scrape_cancel(c->jobs[i].scrape);
	if (c->ev_done != NULL)
		event_free(c->ev_done);
	free(c->items);
	free(c->jobs);
	free(c);
}

static void
collect_report(struct collect *c)
{
	c->cb.done(c->items, c->n, c->arg);
	collect_free(c);
}

static void
collect_done_cb(evutil_socket_t fd, short events, void *arg)
{
	collect_report(arg);
}

/*
 * One scrape has ended: its result goes on its lease, if that still
 * belongs to the process scraped, and the last one reports.
 */
static void
collect_scrape_done_cb(const struct scrape_result *r, void *arg)
{
	struct collect_job *j = arg;
	struct collect *c = j->c;
	struct collect_item *it = &c->items[j->i];
	struct timespec now;
	struct lease *l;

	j->scrape = NULL; /* it frees itself after this */
	clock_gettime(CLOCK_MONOTONIC, &now);
	it->seconds = (double)(now.tv_sec - j->started.tv_sec) +
	    (double)(now.tv_nsec - j->started.tv_nsec) / 1e9;
	it->status = r->status;
	it->timed_out = r->timed_out;
	it->ok = r->error == NULL;
	snprintf(it->error, sizeof it->error, "%s",
	    r->error != NULL ? r->error : "");
	l = registry_find_lease(c->reg, it->worker, it->pid, it->starttime);
	if (l != NULL)
		lease_record_scrape(l, r);
	if (--c->pending == 0)
		collect_report(c);
}

static int
collect_head_cb(const struct scrape_head *h, void *arg)
{
	struct collect_job *j = arg;
	struct collect *c = j->c;

	if (c->cb.head == NULL)
		return 0;
	return c->cb.head(&c->items[j->i], h, c->arg);
}

static int
collect_body_cb(struct evbuffer *chunk, void *arg)
{
	struct collect_job *j = arg;
	struct collect *c = j->c;

	if (c->cb.body == NULL)
		return 0;
	return c->cb.body(&c->items[j->i], chunk, c->arg);
}

/* The listeners on the ports of the n leases; -1 with *cause when the
 * kernel would not say. */
static int
collect_listeners(struct lease *const *leases, size_t n,
    struct discover_socks *socks, char **cause)
{
	uint16_t low = UINT16_MAX, high = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (leases[i]->port < low)
			low = leases[i]->port;
		if (leases[i]->port > high)
			high = leases[i]->port;
	}
	return discover_listeners(low, high, socks, cause);
}

/*
 * Why lease l's port must not be scraped (into error), or 0 when only its
 * process listens there.
 */
static int
collect_refused(const struct lease *l, const struct discover_socks *socks,
    const char *dump_error, pid_t **holders, char *error, size_t len)
{
	pid_t holder;
	uid_t uid;

	if (dump_error != NULL) {
		snprintf(error, len, "cannot tell who holds port %u: %s",
		    l->port, dump_error);
		return -1;
	}
	if (discover_port_owned(socks, l->port, l->pid, holders, &holder,
		&uid) == 0)
		return 0;
	if (holder != 0)
		snprintf(error, len,
		    "port %u is held by pid %d, not by worker %d (pid %d)",
		    l->port, (int)holder, l->worker, (int)l->pid);
	else
		snprintf(error, len,
		    "port %u is held by a process of uid %u, not by worker %d "
		    "(pid %d)",
		    l->port, (unsigned)uid, l->worker, (int)l->pid);
	return -1;
}

/*
 * Scrapes the n leases at COLLECT_PATH, each within cfg->deadline_ms.
 * cb->done runs once every scrape has ended, never from inside
 * collect_start and not after collect_cancel; the collect is gone after it.
 */
struct collect *
collect_start(struct event_base *base, struct registry *reg,
    struct lease *const *leases, size_t n, const struct collect_config *cfg,
    const struct collect_callbacks *cb, void *arg)
{
	static const struct scrape_callbacks scb = { collect_head_cb,
		collect_body_cb, collect_scrape_done_cb };
	struct collect *c = xcalloc(1, sizeof *c);
	struct discover_socks socks = { NULL, 0, 0, 0 };
	struct timeval now = { 0, 0 };
	char *dump_error = NULL, error[sizeof c->items->error];
	pid_t *holders = NULL;
	size_t i;

	c->reg = reg;
	c->cb = *cb;
	c->arg = arg;
	c->n = n;
	c->items = xcalloc(n + 1, sizeof *c->items);
	c->jobs = xcalloc(n + 1, sizeof *c->jobs);
	if (n > 0 && collect_listeners(leases, n, &socks, &dump_error) != 0)
		log_debug("scrapes: %s", dump_error);
	for (i = 0; i < n; i++) {
		struct collect_item *it = &c->items[i];
		struct collect_job *j = &c->jobs[i];

		it->index = i;
		it->worker = leases[i]->worker;
		it->pid = leases[i]->pid;
		it->starttime = leases[i]->starttime;
		j->c = c;
		j->i = i;
		clock_gettime(CLOCK_MONOTONIC, &j->started);
		c->pending++;
		if (collect_refused(leases[i], &socks, dump_error, &holders,
			error, sizeof error) != 0)
			j->scrape = scrape_refuse(base, leases[i]->port, error,
			    &scb, j);
		else
			j->scrape = scrape_start(base, leases[i]->port,
			    COLLECT_PATH, cfg->accept, cfg->gzip,
			    cfg->deadline_ms, cfg->body_max, &scb, j);
	}
	discover_socks_finish(&socks);
	free(holders);
	free(dump_error);
	/* There were none: done still runs from the loop. */
	if (n == 0) {
		c->ev_done = evtimer_new(base, collect_done_cb, c);
		if (c->ev_done == NULL)
			fatalx("evtimer_new");
		event_add(c->ev_done, &now);
	}
	return c;
}

/* Stops reading every worker still answering (paused 1), or goes on. */
void
collect_pause(struct collect *c, int paused)
{
	size_t i;

	for (i = 0; c != NULL && i < c->n; i++)
		scrape_pause(c->jobs[i].scrape, paused);
}

/* Stops every scrape without calling done; accepts NULL. */
void
collect_cancel(struct collect *c)
{
	if (c != NULL)
		collect_free(c);
}
