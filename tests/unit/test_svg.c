#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "promfork.h"

static const char hostile[] = "</svg><script>alert('x')</script>\"&<title>";

static struct event_base *base;
static struct registry reg;
static pid_t kid; /* killed by teardown, should a test fail */

static void
setup(void)
{
	base = event_base_new();
	registry_init(&reg, base, 9400, 9463, helpers_probe_all_free, NULL);
}

static void
teardown(void)
{
	helpers_kid_kill(kid);
	registry_finish(&reg);
	event_base_free(base);
}

TestSuite(svg, .init = setup, .fini = teardown, .timeout = 20);

static char *
render(const struct history *h, time_t now)
{
	struct evbuffer *out = evbuffer_new();

	svg_render_history(out, h, now);
	return helpers_evbuffer_text(out);
}

#define count helpers_count

Test(svg, escape)
{
	struct evbuffer *out = evbuffer_new();
	char *text;

	svg_escape(out, "a<b>&\"c'd");
	svg_escape(out, "");
	svg_escape(out, "plain");
	text = helpers_evbuffer_text(out);
	cr_assert_str_eq(text, "a&lt;b&gt;&amp;&quot;c&#39;dplain");
	free(text);
}

Test(svg, nothing_without_a_history)
{
	char *text = render(NULL, 0);

	cr_assert_str_eq(text, "");
	free(text);
}

/*
 * A hostile label value is text wherever it shows; each lifetime is one bar
 * with its ending; a growing worker's memory line rises.
 */
Test(svg, history_with_hostile_labels)
{
	struct history_config hc = { 5, 300 }; /* a sample: 2.5 px */
	struct history *h = history_create(NULL, &reg, &hc);
	struct labels labels = { NULL, 0 };
	time_t now = 1700003600;
	enum registry_error err;
	char *cause = NULL, *text, *p, *mem;
	struct lease *l;
	int created, i;
	float x, y, firsty = -1, lasty = -1;

	kid = helpers_kid();

	cr_assert_eq(labels_set(&labels, hostile, "v", &cause), -1,
	    "a hostile name is refused");
	free(cause);
	cause = NULL;
	cr_assert_eq(labels_set(&labels, "note", hostile, &cause), 0);
	l = registry_lease_pid(&reg, kid, &labels, LEASE_API, 1, &created, &err,
	    &cause);
	cr_assert_not_null(l, "%s", cause);
	history_lifetime_start(h, 0, 100, now - 290);
	history_lifetime_end(h, 0, LEASE_END_RETIRE, now - 200);
	history_lifetime_start(h, 0, 101, now - 199);
	history_lifetime_end(h, 0, LEASE_END_EXIT, now - 100);
	history_lifetime_start(h, 0, 102, now - 99);
	history_lifetime_end(h, 0, LEASE_END_RELEASE, now - 10);
	history_lifetime_start(h, 1, kid, now - 100);
	history_lifetime_start(h, 2, 300, now - 7200); /* ended before */
	history_lifetime_end(h, 2, LEASE_END_EXIT, now - 3700);
	for (i = 0; i < 10; i++) {
		struct history_sample *smp;

		history_advance(h, now - 45 + 5 * i);
		smp = history_put(h, 1);
		smp->flags = HISTORY_SAMPLE_LIVE | HISTORY_SAMPLE_RSS |
		    HISTORY_SAMPLE_CPU;
		smp->pid = kid;
		smp->rss_kib = 10000 + 5000 * (uint32_t)i; /* grows */
		smp->cpu_milli = 250;
		smp = history_put(h, 0);
		smp->flags = HISTORY_SAMPLE_LIVE | HISTORY_SAMPLE_RSS;
		smp->pid = i < 5 ? 101 : 102; /* a recycle: two lines */
		smp->rss_kib = 20000;
	}
	text = render(h, now);
	cr_assert_null(strstr(text, "<script"), "no element from a label");
	cr_assert_eq(count(text, "<svg "), count(text, "</svg>"),
	    "the label closes nothing");
	cr_assert_geq(count(text,
			  "&lt;/svg&gt;&lt;script&gt;alert(&#39;x&#39;)"
			  "&lt;/script&gt;&quot;&amp;&lt;title&gt;"),
	    1, "the label reads as written");
	cr_assert_eq(count(text, "<rect class=\"life "), 4,
	    "one bar per lifetime in the window, none for slot 2's");
	cr_assert_eq(count(text, "data-ending=\"retired\""), 1);
	cr_assert_eq(count(text, "data-ending=\"died\""), 1);
	cr_assert_eq(count(text, "data-ending=\"released\""), 1);
	cr_assert_eq(count(text, "data-ending=\"live\""), 1);
	cr_assert_eq(count(text, "<g class=\"slot\""), 3, "a row per slot");
	cr_assert_neq(strstr(text, "<dd id=\"deaths\">1</dd>"), NULL, "%s",
	    text);
	cr_assert_neq(strstr(text, "<dd id=\"recycles\">12.0</dd>"), NULL);
	cr_assert_neq(strstr(text, "<dd id=\"workers-up\">1 of 1</dd>"), NULL);
	cr_assert_eq(count(text, "<polyline data-pid=\"101\""), 1);
	cr_assert_eq(count(text, "<polyline data-pid=\"102\""), 1,
	    "a recycle breaks the line");
	/* the growing worker's memory line: its y falls (rises on screen) */
	mem = strstr(text, "<svg class=\"mem\" data-worker=\"1\"");
	cr_assert_not_null(mem);
	p = strstr(mem, "points=\"");
	cr_assert_not_null(p);
	p += 8;
	for (i = 0; i < 10; i++) {
		int n;

		cr_assert_eq(sscanf(p, "%f,%f%n", &x, &y, &n), 2);
		if (i == 0)
			firsty = y;
		else
			cr_assert_lt(y, lasty, "sample %d is higher", i);
		lasty = y;
		p += n;
	}
	cr_assert_eq(*p, '"', "10 points");
	cr_assert_float_eq(x, 150.0, 0.01, "the newest at the right end");
	cr_assert_gt(firsty - lasty, 10);
	free(text);
	labels_finish(&labels);
	history_free(h);
}

/* 64 slots: a row each, and the page stays a bounded size. */
Test(svg, sixty_four_workers)
{
	struct history_config hc = { 5, 3600 };
	struct history *h = history_create(NULL, &reg, &hc);
	time_t now = 1700003600;
	char *text, *p, *end;
	int s, i, points;

	for (s = 0; s < 64; s++)
		history_lifetime_start(h, s, 1000 + s, now - 3600);
	for (i = 0; i < 720; i++) {
		history_advance(h, now - 3600 + 5 * i);
		for (s = 0; s < 64; s++) {
			struct history_sample *smp = history_put(h, s);

			smp->flags = HISTORY_SAMPLE_LIVE | HISTORY_SAMPLE_RSS |
			    HISTORY_SAMPLE_CPU;
			smp->pid = 1000 + s;
			smp->rss_kib = 30000 + (uint32_t)(i * s);
			smp->cpu_milli = (uint16_t)(i % 100);
		}
	}
	text = render(h, now);
	cr_assert_eq(count(text, "<g class=\"slot\""), 64);
	cr_assert_eq(count(text, "<div class=\"spark\""), 64);
	cr_assert_eq(count(text, "<polyline "), 128);
	/* 720 samples on 150 pixels: a point per pixel, the highest */
	p = strstr(text, "<svg class=\"mem\" data-worker=\"63\"");
	cr_assert_not_null(p);
	p = strstr(p, "points=\"") + 8;
	end = strchr(p, '"');
	points = 1;
	for (; p < end; p++)
		points += *p == ' ';
	cr_assert(points >= 140 && points <= 151, "%d points", points);
	cr_assert_not_null(strstr(text, "150.0,1.0\""),
	    "worker 63's last sample is the top of the scale: %s", end - 20);
	cr_assert_lt(strlen(text), 4 * 1024 * 1024, "%zu bytes", strlen(text));
	free(text);
	history_free(h);
}
