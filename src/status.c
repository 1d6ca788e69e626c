/*
 * The status page at /: every worker with its pid, port, uptime, CPU,
 * memory and last scrape, for people, and the history drawn (svg.c).  One
 * self-contained HTML document (no external assets, no script) that
 * reloads itself.  Everything that comes
 * from outside (labels, errors, paths) is escaped.  Before rendering, the
 * workers not scraped successfully of late are scraped once, concurrently
 * and with a short deadline, so the last-scrape column is never stale by
 * much.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "promfork.h"

#define STATUS_PROBE_BODY_MAX (32 * 1024 * 1024)
/* The page is its own inline style and nothing else: no script, no
 * fetch, no frame, whatever a label value might smuggle in. */
#define STATUS_POLICY \
	"default-src 'none'; style-src 'unsafe-inline'; img-src data:; " \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

struct status_req {
	struct http_conn *conn;
	struct collect *collect;
	struct metrics_sources src;
};

static const char status_style[] =
    "body{font:14px/1.4 system-ui,-apple-system,\"Segoe UI\",sans-serif;"
    "margin:0;color:#1d2327;background:#f6f7f7}"
    "header{background:#1d2327;color:#fff;padding:12px 20px}"
    "h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c3c4c7}"
    "main{padding:16px 20px}"
    "dl{display:flex;flex-wrap:wrap;gap:8px 28px;margin:0 0 16px}"
    "dt{color:#646970;font-size:12px}dd{margin:0;font-weight:600}"
    "table{border-collapse:collapse;width:100%;background:#fff;"
    "box-shadow:0 1px 2px rgba(0,0,0,.1)}"
    "th,td{padding:6px 10px;text-align:left;border-bottom:1px solid #e0e0e0;"
    "white-space:nowrap}"
    "th{background:#f0f0f1;font-size:12px;text-transform:uppercase;"
    "color:#50575e}"
    "td.num{text-align:right;font-variant-numeric:tabular-nums}"
    ".ok{color:#00750f}.err{color:#b32d2e}.never{color:#646970}"
    ".labels{font-family:ui-monospace,monospace;font-size:12px;"
    "white-space:normal}"
    ".empty{padding:24px;text-align:center;color:#646970}"
    "footer{padding:8px 20px;color:#646970;font-size:12px}"
    "a{color:#2271b1}";

/* 2d 3h, 4h 5m, 6m 7s or 8s. */
static void
status_duration(char *buf, size_t size, double secs)
{
	long long s = secs > 0 ? (long long)secs : 0;

	if (s >= 86400)
		snprintf(buf, size, "%lldd %lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		snprintf(buf, size, "%lldh %lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		snprintf(buf, size, "%lldm %llds", s / 60, s % 60);
	else
		snprintf(buf, size, "%llds", s);
}

static void
status_fact(struct evbuffer *out, const char *name, const char *value)
{
	evbuffer_add_printf(out, "<div><dt>%s</dt><dd>", name);
	svg_escape(out, value);
	evbuffer_add_printf(out, "</dd></div>\n");
}

static void
status_facts(struct evbuffer *out, const struct metrics_snapshot *ms)
{
	char buf[256], ago[32];
	int e;

	evbuffer_add_printf(out, "<dl id=\"facts\">\n");
	snprintf(buf, sizeof buf, "%zu of %zu", ms->leases, ms->pool_size);
	status_fact(out, "ports leased", buf);
	snprintf(buf, sizeof buf, "%llu", ms->registrations);
	status_fact(out, "registrations", buf);
	snprintf(buf, sizeof buf, "%llu", ms->refusals);
	status_fact(out, "refused", buf);
	buf[0] = '\0';
	for (e = 0; e < LEASE_END_COUNT; e++) {
		size_t n = strlen(buf);
		snprintf(buf + n, sizeof buf - n, "%s%s %llu",
		    e > 0 ? ", " : "", lease_end_name((enum lease_end)e),
		    ms->ends[e]);
	}
	status_fact(out, "releases", buf);
	if (ms->child_pid > 0) {
		snprintf(buf, sizeof buf, "%d", (int)ms->child_pid);
		status_fact(out, "command pid", buf);
	}
	if (ms->have_sdfile) {
		status_fact(out, "sd file", ms->sd_path);
		if (ms->sd_last_write > 0) {
			status_duration(ago, sizeof ago,
			    ms->now - (double)ms->sd_last_write);
			snprintf(buf, sizeof buf,
			    "%llu writes, last %s ago, "
			    "%llu errors",
			    ms->sd_writes, ago, ms->sd_errors);
		} else
			snprintf(buf, sizeof buf, "never written, %llu errors",
			    ms->sd_errors);
		status_fact(out, "sd writes", buf);
	}
	evbuffer_add_printf(out, "</dl>\n");
}

static void
status_scrape_cell(struct evbuffer *out, const struct metrics_worker *w,
    double now)
{
	const struct lease_scrape *ls = &w->scrape;
	char ago[32];

	if (ls->when == 0) {
		evbuffer_add_printf(out,
		    "<td class=\"scrape never\">never</td>");
		return;
	}
	status_duration(ago, sizeof ago, now - (double)ls->when);
	if (ls->ok) {
		evbuffer_add_printf(out,
		    "<td class=\"scrape ok\">ok, %d ms, %s "
		    "ago</td>",
		    ls->duration_ms, ago);
		return;
	}
	evbuffer_add_printf(out, "<td class=\"scrape err\" title=\"");
	svg_escape(out, ls->error);
	evbuffer_add_printf(out, "\">failed %s ago: ", ago);
	svg_escape(out, ls->error);
	evbuffer_add_printf(out, "</td>");
}

static void
status_worker_row(struct evbuffer *out, const struct metrics_worker *w,
    double now)
{
	char up[32];
	size_t i;

	evbuffer_add_printf(out,
	    "<tr class=\"worker\" data-worker=\"%d\" "
	    "data-pid=\"%d\" data-port=\"%u\" data-scrape=\"%s\">",
	    w->worker, (int)w->pid, w->port,
	    w->scrape.when == 0 ? "never"
		: w->scrape.ok  ? "ok"
				: "error");
	evbuffer_add_printf(out,
	    "<td class=\"num\"><a href=\"/workers/%d/"
	    "metrics\">%d</a></td><td class=\"num\">%d</td>"
	    "<td class=\"num\">%u</td>",
	    w->worker, w->worker, (int)w->pid, w->port);
	if (w->have_proc) {
		status_duration(up, sizeof up, now - w->start_time);
		evbuffer_add_printf(out,
		    "<td class=\"num\">%s</td>"
		    "<td class=\"num\">%.2f s</td>"
		    "<td class=\"num\">%.1f MiB</td>",
		    up, w->cpu_seconds,
		    (double)w->rss_bytes / (1024.0 * 1024.0));
	} else
		evbuffer_add_printf(out, "<td>-</td><td>-</td><td>-</td>");
	evbuffer_add_printf(out,
	    "<td class=\"num\">%llu</td>"
	    "<td class=\"labels\">",
	    w->leases > 0 ? w->leases - 1 : 0);
	for (i = 0; w->labels != NULL && i < w->labels->n; i++) {
		if (i > 0)
			evbuffer_add(out, " ", 1);
		svg_escape(out, w->labels->v[i].name);
		evbuffer_add(out, "=", 1);
		svg_escape(out, w->labels->v[i].value);
	}
	evbuffer_add_printf(out, "</td><td>%s</td>",
	    lease_source_name(w->source));
	status_scrape_cell(out, w, now);
	evbuffer_add_printf(out, "</tr>\n");
}

/* The whole page; pure, so tests render snapshots of their own. */
void
status_render(struct evbuffer *out, const struct metrics_snapshot *ms)
{
	char up[32], when[64];
	time_t now = (time_t)ms->now;
	struct tm tm;
	size_t i;

	status_duration(up, sizeof up, ms->now - ms->start_time);
	gmtime_r(&now, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
	evbuffer_add_printf(out,
	    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
	    "<meta charset=\"utf-8\">\n"
	    "<meta http-equiv=\"refresh\" content=\"%d\">\n"
	    "<meta name=\"viewport\" content=\"width=device-width, "
	    "initial-scale=1\">\n"
	    "<link rel=\"icon\" href=\"data:,\">\n"
	    "<title>promfork: %zu worker%s</title>\n<style>%s</style>\n"
	    "</head>\n<body>\n<header><h1>promfork</h1>"
	    "<p id=\"summary\">%zu worker%s on ports %u-%u, up %s, "
	    "version %s</p></header>\n<main>\n",
	    STATUS_REFRESH_S, ms->leases, ms->leases == 1 ? "" : "s",
	    status_style, ms->leases, ms->leases == 1 ? "" : "s", ms->port_low,
	    (unsigned)(ms->port_low + ms->pool_size - 1), up, PROMFORK_VERSION);
	status_facts(out, ms);
	svg_render_history(out, ms->history, now);
	evbuffer_add_printf(out,
	    "<table id=\"workers\">\n<thead><tr>"
	    "<th>worker</th><th>pid</th><th>port</th><th>uptime</th>"
	    "<th>CPU</th><th>memory</th><th>restarts</th><th>labels</th>"
	    "<th>source</th><th>last scrape</th></tr></thead>\n<tbody>\n");
	for (i = 0; i < ms->nworkers; i++) {
		if (ms->workers[i].live)
			status_worker_row(out, &ms->workers[i], ms->now);
	}
	if (ms->leases == 0)
		evbuffer_add_printf(out,
		    "<tr><td colspan=\"10\" class=\"empty\">"
		    "No workers yet: they appear here when they register."
		    "</td></tr>\n");
	evbuffer_add_printf(out,
	    "</tbody>\n</table>\n</main>\n<footer>"
	    "Generated %s, reloads every %d s. "
	    "<a href=\"/metrics\">/metrics</a> "
	    "<a href=\"/targets\">/targets</a></footer>\n</body>\n</html>\n",
	    when, STATUS_REFRESH_S);
}

/* The single teardown path of a status request. */
static void
status_req_free(struct status_req *sr)
{
	if (sr->conn != NULL)
		http_conn_on_close(sr->conn, NULL, NULL);
	collect_cancel(sr->collect);
	free(sr);
}

static void
status_reply(struct status_req *sr)
{
	struct http_conn *c = sr->conn;
	struct metrics_snapshot ms;
	struct evbuffer *page = evbuffer_new();

	if (page == NULL)
		fatalx("evbuffer_new");
	metrics_snapshot_take(&ms, &sr->src);
	ms.history = sr->src.history;
	status_render(page, &ms);
	metrics_snapshot_finish(&ms);
	/* Replying may close the connection: forget it first. */
	http_conn_on_close(c, NULL, NULL);
	sr->conn = NULL;
	http_conn_policy(c, STATUS_POLICY);
	http_reply(c, 200, "text/html; charset=utf-8",
	    (const char *)evbuffer_pullup(page, -1), evbuffer_get_length(page));
	evbuffer_free(page);
}

static void
status_probe_done_cb(struct collect_item *items, size_t n, void *arg)
{
	struct status_req *sr = arg;

	sr->collect = NULL; /* it frees itself after this */
	status_reply(sr);
	status_req_free(sr);
}

static void
status_client_close_cb(void *arg)
{
	struct status_req *sr = arg;

	sr->conn = NULL;
	status_req_free(sr);
}

/*
 * Answers GET /.  Workers not scraped well within the refresh interval are
 * scraped first (at most probe_ms), so the page shows how they are now.
 */
void
status_serve(struct http_conn *c, struct registry *reg,
    const struct metrics_sources *src, int probe_ms)
{
	static const struct collect_callbacks cb = { NULL, NULL,
		status_probe_done_cb };
	struct status_req *sr = xcalloc(1, sizeof *sr);
	struct collect_config cfg = { NULL, probe_ms, STATUS_PROBE_BODY_MAX,
		0 };
	struct lease **stale, *l;
	time_t now = time(NULL);
	size_t n = 0;

	sr->conn = c;
	sr->src = *src;
	stale = xcalloc(reg->count + 1, sizeof *stale);
	REGISTRY_FOREACH (l, reg) {
		/* A failure is retried at once: it may have been a moment's. */
		if (l->scrape.when == 0 || !l->scrape.ok ||
		    now - l->scrape.when >= STATUS_REFRESH_S)
			stale[n++] = l;
	}
	sr->collect = collect_start(reg->base, reg, stale, n, &cfg, &cb, sr);
	free(stale);
	http_conn_on_close(c, status_client_close_cb, sr);
}
