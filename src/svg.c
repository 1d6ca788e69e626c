/*
 * The history drawn for people, as inline SVG in the status page: totals
 * (workers up, recycles per hour, deaths without retiring), a timeline
 * with one row per slot and one bar per lifetime coloured by how it ended,
 * and per worker a CPU and a memory sparkline.  No script and nothing
 * loaded from elsewhere: it works offline and under the page's
 * Content-Security-Policy.  Every text from outside is escaped.  Pure: it
 * reads the history and writes text, for tests to call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "promfork.h"

#define SVG_TIMELINE_W 1000
#define SVG_TIMELINE_LABEL 44 /* the worker numbers, left */
#define SVG_TIMELINE_AXIS 18 /* the time axis, below */
#define SVG_SPARK_W 150
#define SVG_SPARK_H 26
#define SVG_CPU_MIN_SCALE 100 /* thousandths of a CPU: idle is not noise */

static const char svg_style[] =
    "#history h2{font-size:15px;margin:18px 0 8px}"
    "#history dl{margin-bottom:8px}"
    "#timeline{width:100%;height:auto;background:#fff;"
    "box-shadow:0 1px 2px rgba(0,0,0,.1)}"
    "#timeline text{font:11px ui-monospace,monospace;fill:#50575e}"
    "#timeline .row{fill:#f6f7f7}"
    ".life{stroke:#fff;stroke-width:1}" /* lifetimes side by side */
    ".life.live{fill:#2271b1}.life.retired{fill:#00a32a}"
    ".life.released{fill:#72aee6}.life.died{fill:#d63638}"
    ".life.gone{fill:#dba617}.life.shutdown{fill:#8c8f94}"
    ".legend span{display:inline-block;width:10px;height:10px;"
    "margin:0 4px 0 12px;vertical-align:-1px}"
    ".legend .live{background:#2271b1}.legend .retired{background:#00a32a}"
    ".legend .released{background:#72aee6}.legend .died{background:#d63638}"
    ".legend .gone{background:#dba617}"
    "#sparks{display:grid;grid-template-columns:repeat(auto-fill,"
    "minmax(420px,1fr));gap:4px 16px}"
    ".spark{display:flex;align-items:center;gap:6px;background:#fff;"
    "padding:2px 6px;font-size:12px;overflow:hidden}"
    ".spark .w{width:28px;font-weight:600;text-align:right}"
    ".spark .v{width:62px;text-align:right;"
    "font-variant-numeric:tabular-nums}"
    ".spark .lbl{color:#646970;white-space:nowrap;overflow:hidden;"
    "text-overflow:ellipsis;font-family:ui-monospace,monospace}"
    ".spark svg{background:#f6f7f7;flex:none}"
    ".spark polyline{fill:none;stroke-width:1.5}"
    ".spark .cpu polyline{stroke:#2271b1}.spark .mem polyline{stroke:#8a2424}";

/* Writes s with the five HTML and XML metacharacters escaped. */
void
svg_escape(struct evbuffer *out, const char *s)
{
	const char *p, *start = s;

	for (p = s; *p != '\0'; p++) {
		const char *rep;

		switch (*p) {
		case '&':
			rep = "&amp;";
			break;
		case '<':
			rep = "&lt;";
			break;
		case '>':
			rep = "&gt;";
			break;
		case '"':
			rep = "&quot;";
			break;
		case '\'':
			rep = "&#39;";
			break;
		default:
			continue;
		}
		evbuffer_add(out, start, (size_t)(p - start));
		evbuffer_add(out, rep, strlen(rep));
		start = p + 1;
	}
	evbuffer_add(out, start, (size_t)(p - start));
}

static void
svg_fact(struct evbuffer *out, const char *id, const char *name,
    const char *value)
{
	evbuffer_add_printf(out, "<div><dt>%s</dt><dd id=\"%s\">%s</dd></div>",
	    name, id, value);
}

static void
svg_totals(struct evbuffer *out, const struct history *h, time_t now)
{
	struct history_totals t;
	char buf[64], span[32];

	history_totals(h, now, &t);
	if (h->window_s % 3600 == 0)
		snprintf(span, sizeof span, "%d h", h->window_s / 3600);
	else if (h->window_s % 60 == 0)
		snprintf(span, sizeof span, "%d min", h->window_s / 60);
	else
		snprintf(span, sizeof span, "%d s", h->window_s);
	evbuffer_add_printf(out, "<dl id=\"totals\">");
	snprintf(buf, sizeof buf, "%zu of %zu", t.up, t.live);
	svg_fact(out, "workers-up", "workers up (of live)", buf);
	snprintf(buf, sizeof buf, "%.1f", t.recycles_per_hour);
	svg_fact(out, "recycles", "recycles per hour (retired)", buf);
	snprintf(buf, sizeof buf, "%llu", t.ends[LEASE_END_EXIT]);
	evbuffer_add_printf(out,
	    "<div><dt>deaths without retiring, last %s</dt>"
	    "<dd id=\"deaths\">%s</dd></div>",
	    span, buf);
	snprintf(buf, sizeof buf, "%llu", t.ends[LEASE_END_RELEASE]);
	svg_fact(out, "released", "released", buf);
	snprintf(buf, sizeof buf, "%d s for %s", h->resolution_s, span);
	svg_fact(out, "resolution", "history", buf);
	evbuffer_add_printf(out, "</dl>\n");
}

/* Are there samples or lifetimes of slot to draw? */
static int
svg_slot_used(const struct history *h, int slot)
{
	return h->slots[slot] != NULL;
}

static double
svg_time_x(const struct history *h, time_t t, time_t now)
{
	double plot = SVG_TIMELINE_W - SVG_TIMELINE_LABEL - 6;
	double x = (double)(t - (now - h->window_s)) / (double)h->window_s;

	if (x < 0)
		x = 0;
	if (x > 1)
		x = 1;
	return SVG_TIMELINE_LABEL + x * plot;
}

static void
svg_lifetime(struct evbuffer *out, const struct history *h, int slot,
    const struct history_lifetime *lt, double y, double rh, time_t now)
{
	time_t stop = lt->end < 0 ? now : lt->stop;
	double x0, x1;
	char from[32], to[32];
	struct tm tm;

	if (stop < now - h->window_s)
		return; /* before the window */
	x0 = svg_time_x(h, lt->start, now);
	x1 = svg_time_x(h, stop, now);
	if (x1 - x0 < 2)
		x1 = x0 + 2; /* a crash loop's short lives still show */
	gmtime_r(&lt->start, &tm);
	strftime(from, sizeof from, "%H:%M:%S", &tm);
	gmtime_r(&stop, &tm);
	strftime(to, sizeof to, "%H:%M:%S", &tm);
	evbuffer_add_printf(out,
	    "<rect class=\"life %s\" data-worker=\"%d\" data-pid=\"%d\" "
	    "data-ending=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
	    "height=\"%.1f\"><title>worker %d, pid %d: %s to %s UTC, "
	    "%s</title></rect>\n",
	    history_end_name(lt->end), slot, (int)lt->pid,
	    history_end_name(lt->end), x0, y, x1 - x0, rh, slot, (int)lt->pid,
	    from, lt->end < 0 ? "now" : to,
	    lt->end < 0 ? "running" : history_end_name(lt->end));
}

/* One row per slot, one bar per lifetime in the window. */
static void
svg_timeline(struct evbuffer *out, const struct history *h, time_t now)
{
	size_t s, i, rows = 0;
	double rh, y, height;
	int k;

	for (s = 0; s < h->nslots; s++)
		rows += svg_slot_used(h, (int)s);
	rh = rows <= 16 ? 16 : 12;
	height = (double)rows * rh + SVG_TIMELINE_AXIS + 4;
	evbuffer_add_printf(out,
	    "<h2>Lifetimes, last %d s</h2>\n<p class=\"legend\">"
	    "<span class=\"live\"></span>running"
	    "<span class=\"retired\"></span>retired"
	    "<span class=\"released\"></span>released"
	    "<span class=\"died\"></span>died without retiring"
	    "<span class=\"gone\"></span>listener gone</p>\n"
	    "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" "
	    "viewBox=\"0 0 %d %.0f\" role=\"img\" "
	    "aria-label=\"lifetimes of each worker slot\">\n",
	    h->window_s, SVG_TIMELINE_W, height);
	y = 2;
	for (s = 0; s < h->nslots; s++) {
		if (!svg_slot_used(h, (int)s))
			continue;
		evbuffer_add_printf(out,
		    "<g class=\"slot\" data-worker=\"%zu\">"
		    "<rect class=\"row\" x=\"%d\" y=\"%.1f\" width=\"%d\" "
		    "height=\"%.1f\"/><text x=\"%d\" y=\"%.1f\" "
		    "text-anchor=\"end\">%zu</text>\n",
		    s, SVG_TIMELINE_LABEL, y,
		    SVG_TIMELINE_W - SVG_TIMELINE_LABEL, rh - 2,
		    SVG_TIMELINE_LABEL - 6, y + rh - 5, s);
		for (i = 0; i < history_lifetimes(h, (int)s); i++)
			svg_lifetime(out, h, (int)s,
			    history_lifetime(h, (int)s, i), y, rh - 2, now);
		evbuffer_add_printf(out, "</g>\n");
		y += rh;
	}
	for (k = 0; k <= 4; k++) {
		double x = SVG_TIMELINE_LABEL +
		    k * (SVG_TIMELINE_W - SVG_TIMELINE_LABEL - 6) / 4.0;
		int ago = h->window_s * (4 - k) / 4;

		evbuffer_add_printf(out,
		    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x,
		    height - 4,
		    k == 0       ? "start"
			: k == 4 ? "end"
				 : "middle");
		if (ago == 0)
			evbuffer_add_printf(out, "now</text>\n");
		else if (ago % 60 == 0)
			evbuffer_add_printf(out, "-%d min</text>\n", ago / 60);
		else
			evbuffer_add_printf(out, "-%d s</text>\n", ago);
	}
	evbuffer_add_printf(out, "</svg>\n");
}

/* A sample's value in a sparkline; -1 when it has none. */
static double
svg_value(const struct history_sample *smp, int mem)
{
	if (smp == NULL)
		return -1;
	if (mem)
		return (smp->flags & HISTORY_SAMPLE_RSS) ? (double)smp->rss_kib
							 : -1;
	return (smp->flags & HISTORY_SAMPLE_CPU) ? (double)smp->cpu_milli : -1;
}

static void
svg_point(struct evbuffer *out, int first, double x, double v, double max)
{
	double y =
	    SVG_SPARK_H - 1 - (max > 0 ? v / max : 0) * (SVG_SPARK_H - 2);

	evbuffer_add_printf(out, "%s%.1f,%.1f", first ? "" : " ", x, y);
}

/*
 * One sparkline, the window's right end being now; a polyline per stretch
 * of one lifetime, so a recycle shows as a break.  max: the top, shared
 * by every worker, so that the one that grows stands out.  Samples that
 * fall on one pixel are one point, their highest: a peak stays, and the
 * page does not grow with the window.
 */
static void
svg_sparkline(struct evbuffer *out, const struct history *h, int slot, int mem,
    double max)
{
	size_t i, n = history_count(h), points = 0;
	double step = h->nsamples > 1
	    ? (double)SVG_SPARK_W / (double)(h->nsamples - 1)
	    : 0;
	double px = 0, pv = -1; /* the point pending */
	pid_t pid = 0;

	evbuffer_add_printf(out,
	    "<svg class=\"%s\" data-worker=\"%d\" width=\"%d\" height=\"%d\" "
	    "viewBox=\"0 0 %d %d\">",
	    mem ? "mem" : "cpu", slot, SVG_SPARK_W, SVG_SPARK_H, SVG_SPARK_W,
	    SVG_SPARK_H);
	for (i = 0; i <= n; i++) {
		const struct history_sample *smp =
		    i < n ? history_at(h, slot, i) : NULL;
		double v = svg_value(smp, mem);
		double x = SVG_SPARK_W - (double)(n - 1 - i) * step;

		if (pv >= 0 && v >= 0 && smp->pid == pid &&
		    (long)x == (long)px) {
			px = x;
			pv = v > pv ? v : pv;
			continue;
		}
		if (pv >= 0)
			svg_point(out, points++ == 0, px, pv, max);
		if (points > 0 && (v < 0 || smp->pid != pid)) {
			evbuffer_add_printf(out, "\"/>");
			points = 0;
		}
		pv = v;
		px = x;
		if (v >= 0 && points == 0) {
			pid = smp->pid;
			evbuffer_add_printf(out,
			    "<polyline data-pid=\"%d\" points=\"", (int)pid);
		}
	}
	evbuffer_add_printf(out, "</svg>");
}

/* The newest value of slot's samples, as text. */
static void
svg_now(char *buf, size_t size, const struct history *h, int slot, int mem)
{
	size_t n = history_count(h);
	double v = n > 0 ? svg_value(history_at(h, slot, n - 1), mem) : -1;

	if (v < 0)
		snprintf(buf, size, "-");
	else if (mem)
		snprintf(buf, size, "%.1f MiB", v / 1024.0);
	else
		snprintf(buf, size, "%.0f%%", v / 10.0);
}

static void
svg_sparks(struct evbuffer *out, const struct history *h)
{
	double maxcpu = SVG_CPU_MIN_SCALE, maxmem = 1;
	size_t s, i, n = history_count(h);
	char cpu[32], mem[32];

	for (s = 0; s < h->nslots; s++) {
		for (i = 0; svg_slot_used(h, (int)s) && i < n; i++) {
			const struct history_sample *smp =
			    history_at(h, (int)s, i);

			if (svg_value(smp, 0) > maxcpu)
				maxcpu = svg_value(smp, 0);
			if (svg_value(smp, 1) > maxmem)
				maxmem = svg_value(smp, 1);
		}
	}
	evbuffer_add_printf(out,
	    "<h2>CPU and memory, last %d s (one scale for all: top %.0f%% "
	    "CPU, %.1f MiB)</h2>\n<div id=\"sparks\">\n",
	    h->window_s, maxcpu / 10.0, maxmem / 1024.0);
	for (s = 0; s < h->nslots; s++) {
		const struct lease *l;

		if (!svg_slot_used(h, (int)s))
			continue;
		l = registry_find_worker(h->reg, (int)s);
		svg_now(cpu, sizeof cpu, h, (int)s, 0);
		svg_now(mem, sizeof mem, h, (int)s, 1);
		evbuffer_add_printf(out,
		    "<div class=\"spark\" data-worker=\"%zu\">"
		    "<span class=\"w\">%zu</span>",
		    s, s);
		svg_sparkline(out, h, (int)s, 0, maxcpu);
		evbuffer_add_printf(out, "<span class=\"v\">%s</span>", cpu);
		svg_sparkline(out, h, (int)s, 1, maxmem);
		evbuffer_add_printf(out,
		    "<span class=\"v\">%s</span><span class=\"lbl\">", mem);
		for (i = 0; l != NULL && i < l->labels.n; i++) {
			if (i > 0)
				evbuffer_add(out, " ", 1);
			svg_escape(out, l->labels.v[i].name);
			evbuffer_add(out, "=", 1);
			svg_escape(out, l->labels.v[i].value);
		}
		evbuffer_add_printf(out, "</span></div>\n");
	}
	evbuffer_add_printf(out, "</div>\n");
}

/* The history section of the status page; nothing without a history. */
void
svg_render_history(struct evbuffer *out, const struct history *h, time_t now)
{
	if (h == NULL)
		return;
	evbuffer_add_printf(out,
	    "<style>%s</style>\n<section id=\"history\">\n", svg_style);
	svg_totals(out, h, now);
	svg_timeline(out, h, now);
	svg_sparks(out, h);
	evbuffer_add_printf(out,
	    "<p><a href=\"/api/v1/history\">/api/v1/history</a> "
	    "has the same as JSON.</p>\n</section>\n");
}
