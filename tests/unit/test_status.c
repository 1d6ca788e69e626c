#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "promfork.h"

static char *
render(const struct metrics_snapshot *ms)
{
	struct evbuffer *out = evbuffer_new();

	status_render(out, ms);
	return helpers_evbuffer_text(out);
}

#define count helpers_count

static struct labels labels;

static void
fake(struct metrics_snapshot *ms, struct metrics_worker *w)
{
	char *cause = NULL;

	memset(ms, 0, sizeof *ms);
	ms->now = 1700003700;
	ms->start_time = 1700000000;
	ms->pool_size = 10;
	ms->port_low = 9400;
	ms->leases = 2;
	ms->registrations = 3;
	ms->have_sdfile = 1;
	ms->sd_path = "/srv/sd/<app>.json";
	ms->sd_writes = 4;
	ms->sd_last_write = 1700003690;
	memset(w, 0, 3 * sizeof *w);
	memset(&labels, 0, sizeof labels);
	cr_assert_eq(labels_set(&labels, "role", "<script>alert('x')</script>",
			 &cause),
	    0);
	w[0].worker = 0;
	w[0].live = 1;
	w[0].pid = 4242;
	w[0].port = 9400;
	w[0].have_proc = 1;
	w[0].cpu_seconds = 12.5;
	w[0].rss_bytes = 50 * 1048576;
	w[0].start_time = 1700003600;
	w[0].leases = 2;
	w[0].labels = &labels;
	w[0].scrape.when = 1700003695;
	w[0].scrape.ok = 1;
	w[0].scrape.duration_ms = 7;
	w[1].worker = 1; /* a free slot: no row */
	w[1].leases = 1;
	w[2].worker = 2;
	w[2].live = 1;
	w[2].pid = 4343;
	w[2].port = 9402;
	w[2].leases = 1;
	w[2].scrape.when = 1700003699;
	snprintf(w[2].scrape.error, sizeof w[2].scrape.error,
	    "cannot connect to port 9402: <refused> & \"gone\"");
	ms->workers = w;
	ms->nworkers = 3;
}

Test(status, rows_for_live_workers)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *html;

	fake(&ms, w);
	html = render(&ms);
	cr_assert(strncmp(html, "<!DOCTYPE html>", 15) == 0);
	cr_assert_eq(count(html, "<tr class=\"worker\""), 2);
	cr_assert(strstr(html,
	    "data-worker=\"0\" data-pid=\"4242\" "
	    "data-port=\"9400\" data-scrape=\"ok\""));
	cr_assert(strstr(html,
	    "data-worker=\"2\" data-pid=\"4343\" "
	    "data-port=\"9402\" data-scrape=\"error\""));
	cr_assert(strstr(html, "<td class=\"num\">1m 40s</td>"), "uptime");
	cr_assert(strstr(html, "12.50 s"), "CPU");
	cr_assert(strstr(html, "50.0 MiB"), "memory");
	cr_assert(strstr(html, "ok, 7 ms, 5s ago"));
	cr_assert(strstr(html, "2 workers on ports 9400-9409, up 1h 1m"));
	cr_assert(strstr(html, "<a href=\"/workers/0/metrics\">0</a>"));
	labels_finish(&labels);
	free(html);
}

Test(status, everything_from_outside_is_escaped)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *html;

	fake(&ms, w);
	html = render(&ms);
	cr_assert_null(strstr(html, "<script"), "a label cannot inject script");
	cr_assert(strstr(html,
	    "role=&lt;script&gt;alert(&#39;x&#39;)&lt;/"
	    "script&gt;"));
	cr_assert_null(strstr(html, "<refused>"));
	cr_assert(strstr(html, "&lt;refused&gt; &amp; &quot;gone&quot;"));
	cr_assert(strstr(html, "/srv/sd/&lt;app&gt;.json"));
	labels_finish(&labels);
	free(html);
}

Test(status, self_contained_and_refreshing)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *html;

	fake(&ms, w);
	html = render(&ms);
	cr_assert(strstr(html, "<meta http-equiv=\"refresh\" content=\"5\">"));
	cr_assert_null(strstr(html, "http://"), "no external assets");
	cr_assert_null(strstr(html, "https://"), "no external assets");
	cr_assert_null(strstr(html, "src="), "nothing loaded");
	cr_assert(strstr(html, "<link rel=\"icon\" href=\"data:,\">"),
	    "no favicon request");
	labels_finish(&labels);
	free(html);
}

Test(status, empty)
{
	struct metrics_snapshot ms;
	char *html;

	memset(&ms, 0, sizeof ms);
	ms.pool_size = 1;
	html = render(&ms);
	cr_assert(strstr(html, "No workers yet"));
	cr_assert(strstr(html, "<title>promfork: 0 workers</title>"));
	cr_assert_null(strstr(html, "sd file"), "no sd file, no sd facts");
	cr_assert(strstr(html, "</html>\n"));
	free(html);
}

Test(status, one_worker_never_scraped)
{
	struct metrics_snapshot ms;
	struct metrics_worker w;
	char *html;

	memset(&ms, 0, sizeof ms);
	memset(&w, 0, sizeof w);
	w.live = 1;
	w.leases = 1;
	ms.pool_size = 1;
	ms.leases = 1;
	ms.workers = &w;
	ms.nworkers = 1;
	html = render(&ms);
	cr_assert(strstr(html, "<title>promfork: 1 worker</title>"));
	cr_assert(strstr(html, "<td class=\"scrape never\">never</td>"));
	cr_assert(strstr(html, "data-scrape=\"never\""));
	free(html);
}
