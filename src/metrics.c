/*
 * promfork's own metrics and its workers' process metrics, in the
 * Prometheus text format.  A snapshot gathers every number at once (the
 * registry, the sd writer, the child, /proc); rendering it is pure, and the
 * status page renders the same snapshot for people.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "promfork.h"

static double
metrics_timespec(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

/* Fills what /proc tells of pid; 0 when it is readable. */
static int
metrics_proc(pid_t pid, double boot, double *cpu, long long *rss, double *start)
{
	static long tck, page;
	struct proc_stat st;
	char *cause = NULL;

	if (tck <= 0)
		tck = sysconf(_SC_CLK_TCK);
	if (page <= 0)
		page = sysconf(_SC_PAGESIZE);
	if (tck <= 0 || page <= 0)
		return -1;
	if (proc_stat_read(pid, &st, &cause) != 0) {
		free(cause);
		return -1;
	}
	*cpu = (double)(st.utime + st.stime) / (double)tck;
	*rss = st.rss_pages > 0 ? st.rss_pages * page : 0;
	*start = boot + (double)st.starttime / (double)tck;
	return 0;
}

void
metrics_snapshot_take(struct metrics_snapshot *ms,
    const struct metrics_sources *src)
{
	const struct registry *reg = src->reg;
	struct metrics_worker *w;
	struct timespec rt, bt;
	double boot;
	size_t s, n, i;

	memset(ms, 0, sizeof *ms);
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_BOOTTIME, &bt);
	ms->now = metrics_timespec(&rt);
	/* /proc start times count from boot, on the boot-time clock. */
	boot = ms->now - metrics_timespec(&bt);
	(void)metrics_proc(getpid(), boot, &ms->cpu_seconds, &ms->rss_bytes,
	    &ms->start_time);

	ms->pool_size = reg->pool.size;
	ms->pool_nfree = pool_nfree(&reg->pool);
	ms->port_low = reg->pool.low;
	ms->leases = reg->count;
	ms->registrations = reg->stats.registrations;
	ms->refusals = reg->stats.refusals;
	memcpy(ms->ends, reg->stats.ends, sizeof ms->ends);
	if (reg->cont != NULL && reg->cont->on) {
		ms->have_carry = 1;
		ms->carry_series = reg->cont->limits.series;
		ms->carry_max_series = reg->cont->limits.max_series;
		ms->carry_dropped = reg->cont->limits.dropped;
		ms->carry_type_changes = reg->cont->limits.type_changes;
		ms->carry_lifetimes = reg->cont->lifetimes;
	}
	if (src->sdfile != NULL) {
		ms->have_sdfile = 1;
		ms->sd_path = src->sdfile->path;
		ms->sd_writes = src->sdfile->writes;
		ms->sd_errors = src->sdfile->errors;
		ms->sd_last_write = src->sdfile->last_write;
	}
	if (src->child != NULL) {
		ms->child_pid = src->child->exited ? 0 : src->child->pid;
		ms->child_exits = src->child->reaped;
	}
	for (i = 0; i < src->nhttp; i++)
		ms->http_conns += http_server_conns(src->http[i]);
	if (src->budget != NULL && src->fanout != NULL) {
		ms->have_budget = 1;
		ms->budget = *src->budget;
		ms->fanout_scrapes = src->fanout->scrapes;
		ms->fanout_joined = src->fanout->joined;
	}
	if (src->spawn != NULL) {
		ms->have_spawn = 1;
		ms->spawn = *spawn_stats(src->spawn);
	}
	if (src->discover != NULL) {
		ms->have_discover = 1;
		ms->discover = *discover_stats(src->discover);
	}

	/* Slots only ever taken lowest first: this stays as small as the peak
	 * number of workers, never as large as the churn. */
	for (s = 0, n = 0; s < reg->pool.size; s++) {
		if (reg->stats.slot_leases[s] > 0 ||
		    registry_find_worker(reg, (int)s) != NULL)
			n++;
	}
	ms->workers = n > 0 ? xcalloc(n, sizeof *ms->workers) : NULL;
	for (s = 0, n = 0; s < reg->pool.size; s++) {
		const struct lease *l = registry_find_worker(reg, (int)s);

		if (reg->stats.slot_leases[s] == 0 && l == NULL)
			continue;
		w = &ms->workers[n++];
		w->worker = (int)s;
		w->leases = reg->stats.slot_leases[s];
		w->port = pool_port(&reg->pool, (int)s);
		if (l == NULL)
			continue;
		w->live = 1;
		w->pid = l->pid;
		w->source = l->source;
		w->labels = &l->labels;
		w->leased = l->created;
		w->scrape = l->scrape;
		w->have_proc = metrics_proc(l->pid, boot, &w->cpu_seconds,
				   &w->rss_bytes, &w->start_time) == 0;
	}
	ms->nworkers = n;
}

void
metrics_snapshot_finish(struct metrics_snapshot *ms)
{
	free(ms->workers);
	memset(ms, 0, sizeof *ms);
}

static void
metrics_family(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help,
	    name, type);
}

static void
metrics_ull(struct evbuffer *out, const char *name, const char *type,
    const char *help, unsigned long long v)
{
	metrics_family(out, name, type, help);
	evbuffer_add_printf(out, "%s %llu\n", name, v);
}

static void
metrics_double(struct evbuffer *out, const char *name, const char *type,
    const char *help, double v)
{
	metrics_family(out, name, type, help);
	evbuffer_add_printf(out, "%s %.3f\n", name, v);
}

enum metrics_field {
	METRICS_CPU,
	METRICS_RSS,
	METRICS_START,
	METRICS_RESTARTS
};

/* One per-worker family; samples only where the value is known. */
static void
metrics_workers(struct evbuffer *out, const struct metrics_snapshot *ms,
    const char *name, const char *type, const char *help, enum metrics_field f)
{
	const struct metrics_worker *w;
	size_t i;

	metrics_family(out, name, type, help);
	for (i = 0; i < ms->nworkers; i++) {
		w = &ms->workers[i];
		if (f != METRICS_RESTARTS && !(w->live && w->have_proc))
			continue;
		evbuffer_add_printf(out, "%s{worker=\"%d\"} ", name, w->worker);
		switch (f) {
		case METRICS_CPU:
			evbuffer_add_printf(out, "%.3f\n", w->cpu_seconds);
			break;
		case METRICS_RSS:
			evbuffer_add_printf(out, "%lld\n", w->rss_bytes);
			break;
		case METRICS_START:
			evbuffer_add_printf(out, "%.3f\n", w->start_time);
			break;
		case METRICS_RESTARTS:
			evbuffer_add_printf(out, "%llu\n",
			    w->leases > 0 ? w->leases - 1 : 0);
			break;
		}
	}
}

/* --workers: a crash loop shows as deaths and restarts climbing. */
static void
metrics_render_spawn(struct evbuffer *out, const struct spawn_stats *sp)
{
	metrics_ull(out, "promfork_spawn_workers", "gauge",
	    "Workers promfork is asked to keep running (--workers, TTIN, "
	    "TTOU).",
	    sp->workers);
	metrics_ull(out, "promfork_spawn_starts_total", "counter",
	    "Workers promfork started.", sp->starts);
	metrics_ull(out, "promfork_spawn_restarts_total", "counter",
	    "Workers started again after a death or for HUP.", sp->restarts);
	metrics_ull(out, "promfork_spawn_deaths_total", "counter",
	    "Workers that exited without being asked to.", sp->deaths);
	metrics_ull(out, "promfork_spawn_backoff_workers", "gauge",
	    "Dead workers waiting out their back-off before a restart.",
	    sp->backoff);
	metrics_ull(out, "promfork_spawn_crash_looping_workers", "gauge",
	    "Workers that failed to stay up several times in a row.",
	    sp->crash_looping);
}

static void
metrics_render_discover(struct evbuffer *out, const struct discover_stats *d)
{
	metrics_ull(out, "promfork_discover_passes_total", "counter",
	    "Passes that looked for listeners in the port range.", d->passes);
	metrics_ull(out, "promfork_discover_walks_total", "counter",
	    "Passes that had to read /proc to find a listener's process.",
	    d->walks);
	metrics_ull(out, "promfork_discover_walks_deferred_total", "counter",
	    "Walks of /proc put off to a later pass: more than 5 a second "
	    "were asked for.",
	    d->walks_deferred);
	metrics_ull(out, "promfork_discover_errors_total", "counter",
	    "Passes that failed.", d->errors);
	metrics_family(out, "promfork_discover_last_pass_seconds", "gauge",
	    "How long the last pass took.");
	evbuffer_add_printf(out, "promfork_discover_last_pass_seconds %.6f\n",
	    (double)d->last_pass_us / 1e6);
	metrics_ull(out, "promfork_discover_listeners", "gauge",
	    "Listeners in the port range at the last pass.",
	    (unsigned long long)d->listeners);
}

/* The listener's budget for answers being built, and the fan-outs. */
static void
metrics_render_budget(struct evbuffer *out, const struct metrics_snapshot *ms)
{
	metrics_ull(out, "promfork_http_budget_bytes", "gauge",
	    "Bytes the answers being built hold now (fan-out bodies, "
	    "built answers not yet taken).",
	    ms->budget.used);
	metrics_ull(out, "promfork_http_budget_max_bytes", "gauge",
	    "The budget for answers being built (--http-budget).",
	    ms->budget.max);
	metrics_ull(out, "promfork_http_budget_peak_bytes", "gauge",
	    "The most the answers being built held at once.", ms->budget.peak);
	metrics_ull(out, "promfork_http_budget_refused_total", "counter",
	    "Requests answered 503 because the budget was spent.",
	    ms->budget.refused);
	metrics_ull(out, "promfork_http_budget_stopped_total", "counter",
	    "Worker answers left unread because the budget was spent.",
	    ms->budget.stopped);
	metrics_ull(out, "promfork_fanout_scrapes_total", "counter",
	    "Fan-outs begun: each scrapes every live worker once.",
	    ms->fanout_scrapes);
	metrics_ull(out, "promfork_fanout_joined_total", "counter",
	    "Fan-out requests that shared the scrape in flight.",
	    ms->fanout_joined);
}

void
metrics_render(struct evbuffer *out, const struct metrics_snapshot *ms)
{
	int e;

	metrics_family(out, "promfork_build_info", "gauge",
	    "promfork's version, always 1.");
	evbuffer_add_printf(out, "promfork_build_info{version=\"%s\"} 1\n",
	    PROMFORK_VERSION);
	metrics_ull(out, "promfork_leases", "gauge",
	    "Workers holding a port lease now.", ms->leases);
	metrics_ull(out, "promfork_registrations_total", "counter",
	    "Leases granted.", ms->registrations);
	metrics_ull(out, "promfork_registration_refusals_total", "counter",
	    "Registrations refused: not allowed, or no free port.",
	    ms->refusals);
	metrics_family(out, "promfork_releases_total", "counter",
	    "Leases ended, by reason.");
	for (e = 0; e < LEASE_END_COUNT; e++)
		evbuffer_add_printf(out,
		    "promfork_releases_total{reason=\"%s\"} "
		    "%llu\n",
		    lease_end_name((enum lease_end)e), ms->ends[e]);
	if (ms->have_carry) {
		metrics_ull(out, "promfork_carry_series", "gauge",
		    "Counter series whose finished lifetimes' totals are "
		    "carried now, all slots.",
		    ms->carry_series);
		metrics_ull(out, "promfork_carry_max_series", "gauge",
		    "--carry-max-series.", ms->carry_max_series);
		metrics_ull(out, "promfork_carry_dropped_total", "counter",
		    "Counter values not carried: over --carry-max-series.",
		    ms->carry_dropped);
		metrics_ull(out, "promfork_carry_type_changes_total", "counter",
		    "Carried families dropped because a worker typed them "
		    "otherwise.",
		    ms->carry_type_changes);
		metrics_ull(out, "promfork_carry_lifetimes_total", "counter",
		    "Worker lifetimes whose final values joined their slot's "
		    "totals.",
		    ms->carry_lifetimes);
	}
	metrics_ull(out, "promfork_port_pool_size", "gauge",
	    "Ports in --port-range.", ms->pool_size);
	metrics_ull(out, "promfork_port_pool_free", "gauge",
	    "Ports of the range not leased now.", ms->pool_nfree);
	if (ms->have_sdfile) {
		metrics_ull(out, "promfork_sd_writes_total", "counter",
		    "Times the file_sd file was written.", ms->sd_writes);
		metrics_ull(out, "promfork_sd_write_errors_total", "counter",
		    "Failed writes of the file_sd file.", ms->sd_errors);
		metrics_double(out, "promfork_sd_last_write_timestamp_seconds",
		    "gauge",
		    "When the file_sd file was last written, 0 if "
		    "never.",
		    (double)ms->sd_last_write);
	}
	metrics_ull(out, "promfork_child_exits_total", "counter",
	    "Processes promfork reaped: the command and orphaned workers.",
	    ms->child_exits);
	metrics_ull(out, "promfork_http_connections", "gauge",
	    "Open connections to the HTTP listener.",
	    (unsigned long long)(ms->http_conns > 0 ? ms->http_conns : 0));
	if (ms->have_budget)
		metrics_render_budget(out, ms);

	if (ms->have_spawn)
		metrics_render_spawn(out, &ms->spawn);
	if (ms->have_discover)
		metrics_render_discover(out, &ms->discover);

	metrics_workers(out, ms, "promfork_worker_cpu_seconds_total", "counter",
	    "User and system CPU time of the worker process.", METRICS_CPU);
	metrics_workers(out, ms, "promfork_worker_resident_memory_bytes",
	    "gauge", "Resident memory of the worker process.", METRICS_RSS);
	metrics_workers(out, ms, "promfork_worker_start_time_seconds", "gauge",
	    "Start time of the worker process since the epoch.", METRICS_START);
	metrics_workers(out, ms, "promfork_worker_restarts_total", "counter",
	    "Times the worker slot was leased again after its first lease.",
	    METRICS_RESTARTS);

	metrics_double(out, "process_cpu_seconds_total", "counter",
	    "User and system CPU time of promfork.", ms->cpu_seconds);
	metrics_ull(out, "process_resident_memory_bytes", "gauge",
	    "Resident memory of promfork.",
	    (unsigned long long)(ms->rss_bytes > 0 ? ms->rss_bytes : 0));
	metrics_double(out, "process_start_time_seconds", "gauge",
	    "Start time of promfork since the epoch.", ms->start_time);
}
