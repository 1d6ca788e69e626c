#include <criterion/criterion.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "promfork.h"

static char *
render(const struct metrics_snapshot *ms)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	metrics_render(out, ms);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

/*
 * Checks the text format the way Prometheus reads it: every family has
 * HELP then TYPE once, its samples follow at once, names are valid, every
 * sample has a number.  Returns the number of samples.
 */
static int
check_exposition(const char *text)
{
	char seen[64][128], family[128] = "";
	int nseen = 0, samples = 0, i;
	const char *p = text;

	cr_assert(text[strlen(text) - 1] == '\n', "ends with a newline");
	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		char line[512], name[128], help[128];
		size_t len = (size_t)(nl - p);

		cr_assert_lt(len, sizeof line);
		memcpy(line, p, len);
		line[len] = '\0';
		p = nl + 1;
		if (sscanf(line, "# HELP %127s %127s", name, help) == 2) {
			for (i = 0; i < nseen; i++)
				cr_assert_str_neq(seen[i], name, "%s twice",
				    name);
			cr_assert_lt(nseen, 64);
			strcpy(seen[nseen++], name);
			strcpy(family, name);
			continue;
		}
		if (sscanf(line, "# TYPE %127s %127s", name, help) == 2) {
			cr_assert_str_eq(name, family, "TYPE after its HELP");
			cr_assert(strcmp(help, "counter") == 0 ||
				strcmp(help, "gauge") == 0,
			    "%s", line);
			continue;
		}
		{
			size_t n = strcspn(line, "{ ");
			char *end;
			const char *v = strrchr(line, ' ');

			cr_assert_neq(line[0], '#', "stray comment: %s", line);
			cr_assert(strncmp(line, family, n) == 0 &&
				family[n] == '\0',
			    "sample %s outside family %s", line, family);
			cr_assert_not_null(v);
			strtod(v + 1, &end);
			cr_assert(end != v + 1 && *end == '\0', "value: %s",
			    line);
			samples++;
		}
	}
	return samples;
}

static void
fake_snapshot(struct metrics_snapshot *ms, struct metrics_worker *w)
{
	memset(ms, 0, sizeof *ms);
	ms->now = 1700000100.5;
	ms->start_time = 1700000000.25;
	ms->cpu_seconds = 1.5;
	ms->rss_bytes = 4096;
	ms->pool_size = 64;
	ms->pool_nfree = 62;
	ms->port_low = 9400;
	ms->leases = 2;
	ms->registrations = 5;
	ms->refusals = 1;
	ms->ends[LEASE_END_EXIT] = 3;
	ms->child_pid = 42;
	ms->child_exits = 7;
	ms->http_conns = 1;
	memset(w, 0, 3 * sizeof *w);
	/* worker 0 live, worker 1 gone (restarts only), worker 2 live but
	 * /proc unreadable */
	w[0].worker = 0;
	w[0].live = 1;
	w[0].pid = 100;
	w[0].have_proc = 1;
	w[0].cpu_seconds = 0.25;
	w[0].rss_bytes = 1048576;
	w[0].start_time = 1700000050.125;
	w[0].leases = 3;
	w[1].worker = 1;
	w[1].leases = 1;
	w[2].worker = 2;
	w[2].live = 1;
	w[2].pid = 102;
	w[2].leases = 1;
	ms->workers = w;
	ms->nworkers = 3;
}

Test(metrics, own_and_per_worker_families)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *text;

	fake_snapshot(&ms, w);
	text = render(&ms);
	cr_assert_eq(check_exposition(text), 22, "%s", text);
	cr_assert(
	    strstr(text, "promfork_releases_total{reason=\"retire\"} 0\n"));
	cr_assert_null(strstr(text, "promfork_carry_"), "continuity off");
	cr_assert(strstr(text, "\npromfork_leases 2\n") != NULL);
	cr_assert(strstr(text, "\npromfork_registrations_total 5\n") != NULL);
	cr_assert(strstr(text, "\npromfork_registration_refusals_total 1\n"));
	cr_assert(strstr(text, "promfork_releases_total{reason=\"exit\"} 3\n"));
	cr_assert(strstr(text,
	    "promfork_releases_total{reason=\"shutdown\"} "
	    "0\n"));
	cr_assert(strstr(text, "\npromfork_port_pool_size 64\n"));
	cr_assert(strstr(text, "\npromfork_port_pool_free 62\n"));
	cr_assert(strstr(text, "\npromfork_child_exits_total 7\n"));
	cr_assert(strstr(text,
	    "promfork_worker_cpu_seconds_total{worker=\"0\"}"
	    " 0.250\n"));
	cr_assert(strstr(text,
	    "promfork_worker_resident_memory_bytes{worker="
	    "\"0\"} 1048576\n"));
	cr_assert(strstr(text,
	    "promfork_worker_start_time_seconds{worker=\"0\"}"
	    " 1700000050.125\n"));
	cr_assert(strstr(text,
	    "promfork_worker_restarts_total{worker=\"0\"} "
	    "2\n"));
	cr_assert(strstr(text,
		      "promfork_worker_restarts_total{worker=\"1\"} "
		      "0\n"),
	    "a free slot keeps its counter");
	cr_assert_null(strstr(text, "cpu_seconds_total{worker=\"1\"}"),
	    "no process numbers for a free slot");
	cr_assert_null(strstr(text, "cpu_seconds_total{worker=\"2\"}"),
	    "no process numbers when /proc could not be read");
	cr_assert_null(strstr(text, "promfork_sd_"),
	    "no sd file, no sd "
	    "metrics");
	free(text);
}

Test(metrics, sd_file_families)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *text;

	fake_snapshot(&ms, w);
	ms.have_sdfile = 1;
	ms.sd_writes = 9;
	ms.sd_errors = 2;
	ms.sd_last_write = 1700000099;
	text = render(&ms);
	check_exposition(text);
	cr_assert(strstr(text, "\npromfork_sd_writes_total 9\n"));
	cr_assert(strstr(text, "\npromfork_sd_write_errors_total 2\n"));
	cr_assert(strstr(text,
	    "\npromfork_sd_last_write_timestamp_seconds "
	    "1700000099.000\n"));
	free(text);
}

Test(metrics, spawn_and_discover_families)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *text;

	fake_snapshot(&ms, w);
	text = render(&ms);
	cr_assert_null(strstr(text, "promfork_spawn_"), "only with --workers");
	cr_assert_null(strstr(text, "promfork_discover_"));
	free(text);

	ms.have_spawn = 1;
	ms.spawn.workers = 4;
	ms.spawn.starts = 9;
	ms.spawn.restarts = 5;
	ms.spawn.deaths = 5;
	ms.spawn.backoff = 1;
	ms.spawn.crash_looping = 1;
	ms.have_discover = 1;
	ms.discover.passes = 30;
	ms.discover.walks = 2;
	ms.discover.last_pass_us = 1500;
	ms.discover.listeners = 3;
	text = render(&ms);
	check_exposition(text);
	cr_assert(strstr(text, "\npromfork_spawn_workers 4\n"), "%s", text);
	cr_assert(strstr(text, "\npromfork_spawn_restarts_total 5\n"));
	cr_assert(strstr(text, "\npromfork_spawn_deaths_total 5\n"));
	cr_assert(strstr(text, "\npromfork_spawn_crash_looping_workers 1\n"));
	cr_assert(strstr(text, "\npromfork_discover_passes_total 30\n"));
	cr_assert(strstr(text, "\npromfork_discover_listeners 3\n"));
	cr_assert(strstr(text, "\npromfork_discover_last_pass_seconds 0.0015"),
	    "%s", text);
	free(text);
}

Test(metrics, empty_registry)
{
	struct metrics_snapshot ms;
	char *text;

	memset(&ms, 0, sizeof ms);
	text = render(&ms);
	check_exposition(text);
	cr_assert(strstr(text,
		      "# TYPE promfork_worker_cpu_seconds_total "
		      "counter\n"),
	    "families are announced even without samples");
	free(text);
}

Test(metrics, snapshot_of_a_live_registry, .timeout = 20)
{
	struct event_base *base = event_base_new();
	struct metrics_sources src;
	struct metrics_snapshot ms;
	struct child child = { .pid = 1, .reaped = 4 };
	struct registry reg;
	struct lease *l;
	char *cause = NULL, *text;
	enum registry_error error;
	int created;
	pid_t pid;

	registry_init(&reg, base, 9400, 9404, helpers_probe_all_free, NULL);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	l = registry_lease_pid(&reg, pid, NULL, LEASE_API, -1, &created, &error,
	    &cause);
	cr_assert_not_null(l, "%s", cause);
	l->scrape.when = 1;
	memset(&src, 0, sizeof src);
	src.reg = &reg;
	src.child = &child;
	metrics_snapshot_take(&ms, &src);
	cr_assert_eq(ms.pool_size, 5);
	cr_assert_eq(ms.pool_nfree, 4);
	cr_assert_eq(ms.leases, 1);
	cr_assert_eq(ms.child_exits, 4);
	cr_assert_eq(ms.child_pid, 1);
	cr_assert_eq(ms.nworkers, 1);
	cr_assert(ms.workers[0].live);
	cr_assert(ms.workers[0].have_proc);
	cr_assert_eq(ms.workers[0].pid, pid);
	cr_assert_eq(ms.workers[0].port, 9400);
	cr_assert_eq(ms.workers[0].scrape.when, 1);
	cr_assert_gt(ms.workers[0].rss_bytes, 0);
	/* The fork started within the last minute of wall-clock time. */
	cr_assert_lt(ms.now - ms.workers[0].start_time, 60.0);
	cr_assert_gt(ms.now - ms.workers[0].start_time, -2.0);
	cr_assert_gt(ms.start_time, 0);
	text = render(&ms);
	check_exposition(text);
	free(text);
	metrics_snapshot_finish(&ms);

	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	lease_close(l, LEASE_END_EXIT);
	metrics_snapshot_take(&ms, &src);
	cr_assert_eq(ms.nworkers, 1, "the slot is remembered");
	cr_assert_not(ms.workers[0].live);
	cr_assert_eq(ms.workers[0].leases, 1);
	metrics_snapshot_finish(&ms);
	registry_finish(&reg);
	event_base_free(base);
}

Test(metrics, carried_totals)
{
	struct metrics_snapshot ms;
	struct metrics_worker w[3];
	char *text;

	fake_snapshot(&ms, w);
	ms.have_carry = 1;
	ms.carry_series = 1234;
	ms.carry_max_series = 100000;
	ms.carry_dropped = 5;
	ms.carry_type_changes = 2;
	ms.carry_lifetimes = 77;
	text = render(&ms);
	cr_assert_eq(check_exposition(text), 27, "%s", text);
	cr_assert(strstr(text, "\npromfork_carry_series 1234\n"));
	cr_assert(strstr(text, "\npromfork_carry_max_series 100000\n"));
	cr_assert(strstr(text, "\npromfork_carry_dropped_total 5\n"));
	cr_assert(strstr(text, "\npromfork_carry_type_changes_total 2\n"));
	cr_assert(strstr(text, "\npromfork_carry_lifetimes_total 77\n"));
	free(text);
}
