#include <criterion/criterion.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static const char hostile[] = "</svg><script>alert(\"x\")</script>&'\\\n\t";

static struct event_base *base;
static struct registry reg;
static pid_t kids[4]; /* killed by teardown, should a test fail */

static void
setup(void)
{
	base = event_base_new();
	registry_init(&reg, base, 9400, 9407, helpers_probe_all_free, NULL);
}

static void
teardown(void)
{
	size_t i;

	for (i = 0; i < 4; i++)
		helpers_kid_kill(kids[i]);
	registry_finish(&reg);
	event_base_free(base);
}

TestSuite(history, .init = setup, .fini = teardown, .timeout = 20);

static struct history *
make(int resolution, int window, struct event_base *b)
{
	struct history_config hc = { resolution, window };

	return history_create(b, &reg, &hc);
}

static struct lease *
lease_kid(pid_t pid, const struct labels *labels)
{
	enum registry_error err;
	char *cause = NULL;
	int created;
	struct lease *l = registry_lease_pid(&reg, pid, labels, LEASE_API, -1,
	    &created, &err, &cause);

	cr_assert_not_null(l, "lease: %s", cause);
	return l;
}

Test(history, ring_keeps_the_window_oldest_first)
{
	struct history *h = make(5, 20, NULL); /* 4 samples */
	struct history_sample *smp;
	size_t i;

	cr_assert_eq(history_count(h), 0);
	cr_assert_null(history_put(h, 0), "no sample before the first");
	for (i = 1; i <= 6; i++) {
		history_advance(h, (time_t)(1000 + 5 * i));
		smp = history_put(h, 2);
		cr_assert_not_null(smp);
		smp->flags = HISTORY_SAMPLE_LIVE | HISTORY_SAMPLE_RSS;
		smp->rss_kib = (uint32_t)(100 * i);
	}
	cr_assert_eq(history_count(h), 4, "bounded by the window");
	for (i = 0; i < 4; i++) {
		cr_assert_eq(history_at(h, 2, i)->rss_kib, 100 * (i + 3),
		    "sample %zu is the %zuth taken", i, i + 3);
		cr_assert_eq(history_time(h, i), (time_t)(1000 + 5 * (i + 3)));
	}
	cr_assert_null(history_at(h, 2, 4), "past the newest");
	cr_assert_null(history_at(h, 1, 0), "a slot never leased: nothing");
	cr_assert_null(history_at(h, 99, 0), "a slot out of range");
	cr_assert_null(history_put(h, -1));
	cr_assert_null(history_put(h, 8), "the pool has 8 slots");
	/* a slot that comes later is blank before it came */
	history_put(h, 5)->flags = HISTORY_SAMPLE_LIVE;
	cr_assert_eq(history_at(h, 5, 0)->flags, 0);
	cr_assert_eq(history_at(h, 5, 3)->flags, HISTORY_SAMPLE_LIVE);
	/* advancing blanks the slot's new sample */
	history_advance(h, 1040);
	cr_assert_eq(history_at(h, 2, 3)->flags, 0);
	cr_assert_eq(history_at(h, 2, 2)->rss_kib, 600);
	history_free(h);
}

Test(history, lifetimes_are_bounded)
{
	struct history *h = make(5, 60, NULL);
	size_t i, n = HISTORY_LIFETIMES_MAX + 6;

	for (i = 0; i < n; i++) {
		history_lifetime_start(h, 3, (pid_t)(100 + i), (time_t)i);
		history_lifetime_end(h, 3,
		    i % 2 ? LEASE_END_RETIRE : LEASE_END_EXIT, (time_t)i + 1);
	}
	history_lifetime_start(h, 3, 999, 500);
	cr_assert_eq(history_lifetimes(h, 3), HISTORY_LIFETIMES_MAX);
	cr_assert_eq(h->slots[3]->forgotten, 7);
	cr_assert_eq(history_lifetime(h, 3, 0)->pid, 107, "the oldest kept");
	cr_assert_eq(history_lifetime(h, 3, HISTORY_LIFETIMES_MAX - 1)->pid,
	    999);
	cr_assert_eq(history_lifetime(h, 3, HISTORY_LIFETIMES_MAX - 1)->end, -1,
	    "the newest lives");
	cr_assert_null(history_lifetime(h, 3, HISTORY_LIFETIMES_MAX));
	cr_assert_eq(history_lifetimes(h, 4), 0);
	/* ending a slot that has no live lifetime changes nothing */
	history_lifetime_end(h, 4, LEASE_END_EXIT, 9);
	history_lifetime_end(h, 3, LEASE_END_EXIT, 600);
	history_lifetime_end(h, 3, LEASE_END_RELEASE, 700);
	cr_assert_eq(history_lifetime(h, 3, HISTORY_LIFETIMES_MAX - 1)->end,
	    LEASE_END_EXIT);
	cr_assert_eq(history_lifetime(h, 3, HISTORY_LIFETIMES_MAX - 1)->stop,
	    600);
	history_free(h);
}

/* The registry's changes become lifetimes, each with how it ended. */
Test(history, lifetimes_follow_the_registry)
{
	struct history *h = make(1, 60, base);
	struct lease *l;
	size_t i;
	int slot[4];

	for (i = 0; i < 4; i++) {
		kids[i] = helpers_kid();
		slot[i] = lease_kid(kids[i], NULL)->worker;
	}
	lease_close(registry_find_worker(&reg, slot[0]), LEASE_END_RETIRE);
	lease_close(registry_find_worker(&reg, slot[1]), LEASE_END_RELEASE);
	kill(kids[2], SIGKILL);
	waitpid(kids[2], NULL, 0);
	kids[2] = 0;
	registry_check(&reg);
	helpers_loop_ms(base, 300);
	cr_assert_null(registry_find_worker(&reg, slot[2]), "the dead one");
	l = lease_kid(kids[0], NULL); /* again: a second lifetime */
	cr_assert_eq(history_lifetimes(h, slot[0]),
	    l->worker == slot[0] ? 2 : 1);
	cr_assert_eq(history_lifetime(h, slot[0], 0)->end, LEASE_END_RETIRE);
	cr_assert_str_eq(history_end_name(history_lifetime(h, slot[0], 0)->end),
	    "retired");
	cr_assert_eq(history_lifetime(h, slot[0], 0)->pid, kids[0]);
	cr_assert_eq(history_lifetime(h, slot[1], 0)->end, LEASE_END_RELEASE);
	cr_assert_eq(history_lifetime(h, slot[2], 0)->end, LEASE_END_EXIT);
	cr_assert_str_eq(history_end_name(LEASE_END_EXIT), "died");
	cr_assert_eq(history_lifetime(h, slot[3], 0)->end, -1);
	cr_assert_str_eq(history_end_name(-1), "live");
	cr_assert_eq(history_lifetime(h, l->worker,
			 history_lifetimes(h, l->worker) - 1)
			 ->end,
	    -1);
	{
		struct history_totals t;

		history_totals(h, time(NULL), &t);
		cr_assert_eq(t.live, 2);
		cr_assert_eq(t.up, 2, "never scraped counts as up");
		cr_assert_eq(t.ends[LEASE_END_RETIRE], 1);
		cr_assert_eq(t.ends[LEASE_END_RELEASE], 1);
		cr_assert_eq(t.ends[LEASE_END_EXIT], 1);
		cr_assert_float_eq(t.recycles_per_hour, 60.0, 1e-9,
		    "one retire in a minute's window: 60 per hour");
		cr_assert(t.bytes >= 3 * history_slot_bytes(h));
	}
	history_free(h);
}

/* A real process sampled: memory at once, CPU from the second sample. */
Test(history, sample_reads_proc)
{
	struct history *h = make(1, 60, base);
	pid_t kid = kids[0] = helpers_kid();
	struct lease *l = lease_kid(kid, NULL);
	const struct history_sample *smp;
	struct scrape_result r = { 200, NULL, 12, 10, 0 };

	history_sample(h);
	smp = history_at(h, l->worker, 0);
	cr_assert(smp->flags & HISTORY_SAMPLE_LIVE);
	cr_assert(smp->flags & HISTORY_SAMPLE_START);
	cr_assert(smp->flags & HISTORY_SAMPLE_RSS);
	cr_assert(smp->rss_kib > 0);
	cr_assert_eq(smp->pid, kid);
	cr_assert_not(smp->flags & HISTORY_SAMPLE_CPU, "no interval yet");
	cr_assert_not(smp->flags & HISTORY_SAMPLE_SCRAPED);
	lease_record_scrape(l, &r);
	helpers_sleep_ms(20);
	history_sample(h);
	smp = history_at(h, l->worker, 1);
	cr_assert(smp->flags & HISTORY_SAMPLE_CPU);
	cr_assert_not(smp->flags & HISTORY_SAMPLE_START);
	cr_assert(smp->flags & HISTORY_SAMPLE_SCRAPED);
	cr_assert(smp->flags & HISTORY_SAMPLE_UP);
	cr_assert_eq(smp->scrape_ms, 12);
	history_sample(h);
	cr_assert_not(history_at(h, l->worker, 2)->flags &
		HISTORY_SAMPLE_SCRAPED,
	    "the same scrape is not sampled twice");
	cr_assert_eq(h->samplings, 3);
	history_free(h);
}

/* The JSON parses whatever the labels hold, and says what was kept. */
Test(history, json_with_hostile_labels)
{
	struct history *h = make(5, 20, base);
	struct labels labels = { NULL, 0 };
	struct buf out = { NULL, 0, 0 };
	pid_t kid = kids[0] = helpers_kid();
	json_error_t jerr;
	json_t *doc, *w, *lt;
	char *cause = NULL;
	struct lease *l;

	cr_assert_eq(labels_set(&labels, "role", hostile, &cause), 0);
	l = lease_kid(kid, &labels);
	history_sample(h);
	history_render_json(h, time(NULL), 0, &out);
	doc = json_loadb(out.data, out.len, 0, &jerr);
	cr_assert_not_null(doc, "%s in %.*s", jerr.text, (int)out.len,
	    out.data);
	cr_assert_eq(json_integer_value(
			 json_object_get(doc, "resolution_seconds")),
	    5);
	cr_assert_eq(json_array_size(json_object_get(doc, "times")), 1);
	w = json_array_get(json_object_get(doc, "workers"), 0);
	cr_assert_eq(json_integer_value(json_object_get(w, "worker")),
	    l->worker);
	cr_assert_str_eq(json_string_value(
			     json_object_get(json_object_get(w, "labels"),
				 "role")),
	    hostile);
	cr_assert(json_integer_value(
		      json_array_get(json_object_get(w, "rss_bytes"), 0)) > 0);
	cr_assert(json_is_null(
	    json_array_get(json_object_get(w, "scrape_seconds"), 0)));
	lt = json_array_get(json_object_get(w, "lifetimes"), 0);
	cr_assert_eq(json_integer_value(json_object_get(lt, "pid")), kid);
	cr_assert(json_is_null(json_object_get(lt, "ending")));
	cr_assert_eq(json_integer_value(
			 json_object_get(json_object_get(doc, "totals"),
			     "workers")),
	    1);
	json_decref(doc);
	buf_finish(&out);
	labels_finish(&labels);
	history_free(h);
}

/* ?since=T: only the samples after T, and the lifetimes not over by then. */
Test(history, json_since)
{
	struct history *h = make(5, 60, base);
	struct buf out = { NULL, 0, 0 };
	json_error_t jerr;
	json_t *doc, *w, *lts;
	int i;

	for (i = 0; i < 4; i++) {
		history_advance(h, (time_t)(1000 + 5 * i));
		history_put(h, 2)->flags = HISTORY_SAMPLE_LIVE;
		history_put(h, 2)->pid = (pid_t)(100 + i);
	}
	history_lifetime_start(h, 2, 100, 995);
	history_lifetime_end(h, 2, LEASE_END_EXIT, 1004);
	history_lifetime_start(h, 2, 101, 1004);
	history_render_json(h, 1015, 1005, &out);
	doc = json_loadb(out.data, out.len, 0, &jerr);
	cr_assert_not_null(doc, "%s in %.*s", jerr.text, (int)out.len,
	    out.data);
	cr_assert_eq(json_array_size(json_object_get(doc, "times")), 2);
	cr_assert_eq(json_integer_value(
			 json_array_get(json_object_get(doc, "times"), 0)),
	    1010);
	w = json_array_get(json_object_get(doc, "workers"), 0);
	cr_assert_eq(json_array_size(json_object_get(w, "pid")), 2);
	cr_assert_eq(json_integer_value(
			 json_array_get(json_object_get(w, "pid"), 1)),
	    103);
	lts = json_object_get(w, "lifetimes");
	cr_assert_eq(json_array_size(lts), 1,
	    "the lifetime over at 1004 "
	    "is left out");
	cr_assert_eq(json_integer_value(
			 json_object_get(json_array_get(lts, 0), "pid")),
	    101);
	json_decref(doc);
	buf_finish(&out);
	history_render_json(h, 1015, 2000, &out);
	doc = json_loadb(out.data, out.len, 0, &jerr);
	cr_assert_not_null(doc, "%s", jerr.text);
	cr_assert_eq(json_array_size(json_object_get(doc, "times")), 0);
	json_decref(doc);
	buf_finish(&out);
	history_free(h);
}

Test(history, query_is_since_or_nothing)
{
	static const char *const bad[] = { "since=", "since=-1", "since=1x",
		"since=99999999999999999999", "until=5", "since=5&x=1",
		"SINCE=5", "since", "since=253402300800" };
	char *cause = NULL;
	time_t since = 7;
	size_t i;

	cr_assert_eq(history_parse_query("", 0, &since, &cause), 0);
	cr_assert_eq(since, 0);
	cr_assert_eq(history_parse_query("since=1700000000", 16, &since,
			 &cause),
	    0);
	cr_assert_eq(since, 1700000000);
	/* the length given is what is read */
	cr_assert_eq(history_parse_query("since=12#frag", 8, &since, &cause),
	    0);
	cr_assert_eq(since, 12);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cr_assert_eq(history_parse_query(bad[i], strlen(bad[i]), &since,
				 &cause),
		    -1, "%s", bad[i]);
		cr_assert(strstr(cause, "since=T") != NULL, "%s", cause);
		free(cause);
		cause = NULL;
	}
}
