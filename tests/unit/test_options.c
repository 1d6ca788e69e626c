#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

#define ARGV(...) ((char *[]){ "promfork", __VA_ARGS__, NULL })
#define ARGC(...) ((int)(sizeof ARGV(__VA_ARGS__) / sizeof(char *)) - 1)
#define PARSE(o, msg, ...) parse(o, ARGV(__VA_ARGS__), ARGC(__VA_ARGS__), msg)
#define REFUSED(needle, ...) \
	refused(ARGV(__VA_ARGS__), ARGC(__VA_ARGS__), needle)

static enum options_result
parse(struct options *o, char **argv, int argc, char **msg)
{
	/*
	 * The options keep pointers into argv, which here is a compound
	 * literal that dies with the caller's block: keep a copy alive.
	 */
	static char *kept[64];

	cr_assert_lt(argc, 64);
	memcpy(kept, argv, sizeof *argv * (size_t)(argc + 1));
	*msg = NULL;
	return options_parse(o, argc, kept, msg);
}

Test(options, full_command_line)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "--port-range", "9400-9463", "--sd-file",
			 "sd/a.json", "--socket", "/run/p.sock",
			 "--target-host", "web1", "--label", "env=prod", "-l",
			 "dc=x", "--log-level", "debug", "--", "gunicorn", "-w",
			 "4", "app:wsgi"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.port_low, 9400);
	cr_assert_eq(o.port_high, 9463);
	cr_assert_str_eq(o.sd_file, "sd/a.json");
	cr_assert_str_eq(o.socket_path, "/run/p.sock");
	cr_assert_str_eq(o.target_host, "web1");
	cr_assert_str_eq(labels_get(&o.labels, "env"), "prod");
	cr_assert_str_eq(labels_get(&o.labels, "dc"), "x");
	cr_assert_eq(o.log_level, LOG_LEVEL_DEBUG);
	cr_assert_str_eq(o.command[0], "gunicorn");
	cr_assert_str_eq(o.command[3], "app:wsgi");
	cr_assert_null(o.command[4]);
	options_finish(&o);
}

Test(options, command_options_are_not_ours)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "gunicorn", "--workers",
			 "2"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_str_eq(o.command[1], "--workers");
	cr_assert_not_null(o.target_host, "defaults to the host name");
	options_finish(&o);
}

Test(options, help_and_version)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "--help"), OPTIONS_EXIT_OK);
	cr_assert_null(msg);
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "--version"), OPTIONS_EXIT_OK);
	cr_assert(strstr(msg, PROMFORK_VERSION) != NULL);
	free(msg);
	options_finish(&o);
}

static void
refused(char **argv, int argc, const char *needle)
{
	struct options o;
	char *msg;

	cr_assert_eq(parse(&o, argv, argc, &msg), OPTIONS_EXIT_USAGE,
	    "expected refusal containing \"%s\"", needle);
	cr_assert_not_null(msg);
	cr_assert(strstr(msg, needle) != NULL, "\"%s\" not in \"%s\"", needle,
	    msg);
	free(msg);
	options_finish(&o);
}

Test(options, bad_values_refused_with_reason)
{
	REFUSED("reversed", "--port-range", "9500-9400", "--", "x");
	REFUSED("1 to 65535", "--port-range", "0-10", "--", "x");
	REFUSED("1 to 65535", "--port-range", "9400-70000", "--", "x");
	REFUSED("LOW-HIGH", "--port-range", "9400", "--", "x");
	REFUSED("whole numbers", "--port-range", "a-b", "--", "x");
	REFUSED("whole numbers", "--port-range", "9400-", "--", "x");
	REFUSED("whole numbers", "--port-range", " 9400-9401", "--", "x");
	REFUSED("not valid", "-r", "9400-9401", "--label", "9x=1", "--", "x");
	REFUSED("reserved", "-r", "9400-9401", "--label", "worker=1", "x");
	REFUSED("NAME=VALUE", "-r", "9400-9401", "--label", "x", "--", "x");
	REFUSED("--log-level", "-r", "9400-9401", "--log-level", "loud", "x");
	REFUSED("--target-host", "-r", "9400-9401", "--target-host", "", "x");
	REFUSED("no COMMAND", "--port-range", "9400-9401");
	REFUSED("no COMMAND", "--port-range", "9400-9401", "--");
	REFUSED("--port-range is required", "--sd-file", "a.json", "--", "x");
	REFUSED("unknown option", "--bogus", "--port-range", "9400-9401", "x");
	REFUSED("needs a value", "--port-range");
}

Test(options, port_range_edges)
{
	uint16_t lo, hi;
	char *cause = NULL;

	cr_assert_eq(options_parse_port_range("1-65535", &lo, &hi, &cause), 0);
	cr_assert_eq(lo, 1);
	cr_assert_eq(hi, 65535);
	cr_assert_eq(options_parse_port_range("9400-9400", &lo, &hi, &cause),
	    0);
	cr_assert_eq(options_parse_port_range("-1-5", &lo, &hi, &cause), -1);
	free(cause);
	cause = NULL;
	cr_assert_eq(options_parse_port_range("99999999999999999999-1", &lo,
			 &hi, &cause),
	    -1);
	free(cause);
}

Test(options, spawn_mode)
{
	/* o.command points into argv: it must outlive the assertions */
	char *argv[] = { "promfork", "-r", "9400-9403", "--workers", "4",
		"--grace", "2.5", "--", "srv", "--port={port}", NULL };
	struct options o;
	char *msg;

	cr_assert_eq(parse(&o, argv, 10, &msg), OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.workers, 4);
	cr_assert_eq(o.grace_ms, 2500);
	cr_assert_str_eq(o.command[1], "--port={port}");
	options_finish(&o);
	REFUSED("--workers 5 needs as many ports", "-r", "9400-9403",
	    "--workers", "5", "--", "srv");
	REFUSED("--workers needs a COMMAND", "-r", "9400-9403", "--socket", "s",
	    "--workers", "2");
	REFUSED("--workers \"0\"", "-r", "9400-9403", "--workers", "0", "x");
	REFUSED("--workers \"-1\"", "-r", "9400-9403", "--workers", "-1", "x");
	REFUSED("--workers \"2x\"", "-r", "9400-9403", "--workers", "2x", "x");
	REFUSED("--grace \"0\"", "-r", "9400-9403", "--grace", "0", "x");
	REFUSED("--grace \"nan\"", "-r", "9400-9403", "--grace", "nan", "x");
	REFUSED("--grace \"4000\"", "-r", "9400-9403", "--grace", "4000", "x");
}

Test(options, standalone_mode)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9403", "--socket", "/run/p.s",
			 "--state-file", "/var/lib/p/state.json", "--allow-uid",
			 "1000", "--allow-uid", "root", "--allow-gid", "0",
			 "--allow-gid", "100"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_null(o.command, "no COMMAND: standalone");
	cr_assert_str_eq(o.state_file, "/var/lib/p/state.json");
	cr_assert_eq(o.nallow_uids, 2);
	cr_assert_eq(o.allow_uids[0], 1000);
	cr_assert_eq(o.allow_uids[1], 0, "names are looked up");
	cr_assert_eq(o.nallow_gids, 2);
	cr_assert_eq(o.allow_gids[1], 100);
	options_finish(&o);
	REFUSED("for standalone mode", "-r", "9400-9403", "--state-file",
	    "s.json", "--", "srv");
	REFUSED("for standalone mode", "-r", "9400-9403", "--allow-uid", "1",
	    "srv");
	REFUSED("is not a user name or number", "-r", "9400-9403", "-s", "s",
	    "--allow-uid", "no-such-user-promfork");
	REFUSED("is not a group name or number", "-r", "9400-9403", "-s", "s",
	    "--allow-gid", "12x");
	REFUSED("--state-file needs a path", "-r", "9400-9403", "-s", "s",
	    "--state-file", "");
	REFUSED("or give --socket PATH", "-r", "9400-9403", "--state-file",
	    "x.json");
}

Test(options, privsep)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9403", "--user", "shop",
			 "--group", "www", "--privsep-user", "promfork", "--",
			 "srv"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_str_eq(o.user, "shop");
	cr_assert_str_eq(o.group, "www");
	cr_assert_str_eq(o.privsep_user, "promfork");
	cr_assert_eq(o.max_leases_per_uid, 128, "the default");
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9403", "-s", "s",
			 "--max-leases-per-uid", "7"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.max_leases_per_uid, 7);
	options_finish(&o);
	REFUSED("--group needs --user", "-r", "9400-9403", "--group", "www",
	    "--", "srv");
	REFUSED("--user needs a COMMAND", "-r", "9400-9403", "-s", "s",
	    "--user", "shop");
	REFUSED("empty", "-r", "9400-9403", "--user", "", "--", "srv");
	REFUSED("from 1 to 65536", "-r", "9400-9403", "-s", "s",
	    "--max-leases-per-uid", "0");
	REFUSED("from 1 to 65536", "-r", "9400-9403", "-s", "s",
	    "--max-leases-per-uid", "12x");
	REFUSED("for standalone mode", "-r", "9400-9403",
	    "--max-leases-per-uid", "3", "--", "srv");
}

Test(options, discover)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9403", "--", "srv"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.discover, 0);
	cr_assert_eq(o.discover_interval_ms, DISCOVER_INTERVAL_MS);
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9403", "--discover",
			 "--discover-interval", "50", "--", "srv"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.discover, 1);
	cr_assert_eq(o.discover_interval_ms, 50);
	options_finish(&o);
	REFUSED("--discover-interval \"9\" is not", "-r", "9400-9403",
	    "--discover-interval", "9", "srv");
	REFUSED("milliseconds from 10 to 60000", "-r", "9400-9403",
	    "--discover-interval", "60001", "srv");
	REFUSED("--discover-interval \"1s\"", "-r", "9400-9403",
	    "--discover-interval", "1s", "srv");
	REFUSED("--discover-interval \"\"", "-r", "9400-9403",
	    "--discover-interval", "", "srv");
	REFUSED("--discover needs a COMMAND", "-r", "9400-9403", "-s", "s",
	    "--discover");
}

Test(options, continuity)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--", "x"),
	    OPTIONS_RUN);
	cr_assert_eq(o.continuity, 1, "on by default");
	cr_assert_eq(o.carry_hold_ms, CARRY_HOLD_MS);
	cr_assert_eq(o.carry_max_series, CARRY_MAX_SERIES);
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--no-continuity",
			 "--carry-hold", "0", "--carry-max-series", "5000",
			 "--", "x"),
	    OPTIONS_RUN);
	cr_assert_eq(o.continuity, 0);
	cr_assert_eq(o.carry_hold_ms, 0);
	cr_assert_eq(o.carry_max_series, 5000);
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--carry-hold", "86400",
			 "--", "x"),
	    OPTIONS_RUN);
	cr_assert_eq(o.carry_hold_ms, 86400 * 1000);
	options_finish(&o);
	REFUSED("--carry-hold", "-r", "9400-9401", "--carry-hold", "-1", "x");
	REFUSED("--carry-hold", "-r", "9400-9401", "--carry-hold", "86401",
	    "x");
	REFUSED("--carry-hold", "-r", "9400-9401", "--carry-hold", "1.5", "x");
	REFUSED("--carry-max-series", "-r", "9400-9401", "--carry-max-series",
	    "1000000", "x");
	REFUSED("--carry-max-series", "-r", "9400-9401", "--carry-max-series",
	    "lots", "x");
}

Test(options, history)
{
	struct options o;
	char *msg = NULL;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--", "x"),
	    OPTIONS_RUN);
	cr_assert_eq(o.history_resolution_s, HISTORY_RESOLUTION_S);
	cr_assert_eq(o.history_window_s, HISTORY_WINDOW_S);
	options_finish(&o);
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--history-resolution",
			 "1", "--history-window", "120", "--", "x"),
	    OPTIONS_RUN);
	cr_assert_eq(o.history_resolution_s, 1);
	cr_assert_eq(o.history_window_s, 120);
	options_finish(&o);
	REFUSED("--history-resolution", "-r", "9400-9401",
	    "--history-resolution", "0", "x");
	REFUSED("--history-resolution", "-r", "9400-9401",
	    "--history-resolution", "5s", "x");
	REFUSED("--history-resolution", "-r", "9400-9401",
	    "--history-resolution", "3601", "--history-window", "7200", "x");
	REFUSED("--history-window", "-r", "9400-9401", "--history-window",
	    "86401", "x");
	REFUSED("--history-window", "-r", "9400-9401", "--history-resolution",
	    "10", "--history-window", "5", "x");
	REFUSED("--history-window", "-r", "9400-9401", "--history-window",
	    "86400", "--history-resolution", "1", "x");
}

Test(options, listen_is_repeatable)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--listen",
			 "127.0.0.1:9399", "--listen", "[::1]:9399",
			 "--systemd-socket", "--", "gunicorn"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.nlisten, 2);
	cr_assert_str_eq(o.listen[0], "127.0.0.1:9399");
	cr_assert_str_eq(o.listen[1], "[::1]:9399");
	cr_assert(o.systemd_socket);
	options_finish(&o);
	/* systemd's sockets are enough for --proxy-targets */
	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--systemd-socket",
			 "--proxy-targets", "--", "gunicorn"),
	    OPTIONS_RUN, "%s", msg);
	options_finish(&o);
}

Test(options, listen_at_most_16_times)
{
	REFUSED("more than 16 times", "-r", "9400-9401", "--listen", ":1",
	    "--listen", ":2", "--listen", ":3", "--listen", ":4", "--listen",
	    ":5", "--listen", ":6", "--listen", ":7", "--listen", ":8",
	    "--listen", ":9", "--listen", ":10", "--listen", ":11", "--listen",
	    ":12", "--listen", ":13", "--listen", ":14", "--listen", ":15",
	    "--listen", ":16", "--listen", ":17", "--", "gunicorn");
	REFUSED("--systemd-socket", "-r", "9400-9401", "--proxy-targets", "--",
	    "gunicorn");
}

Test(options, http_budget)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "--http-budget", "64",
			 "--", "gunicorn"),
	    OPTIONS_RUN, "%s", msg);
	cr_assert_eq(o.http_budget_bytes, (size_t)64 << 20);
	options_finish(&o);
	REFUSED("--http-budget \"0\"", "-r", "9400-9401", "--http-budget", "0",
	    "--", "gunicorn");
	REFUSED("from 1 to 65536", "-r", "9400-9401", "--http-budget", "1e3",
	    "--", "gunicorn");
	REFUSED("from 1 to 65536", "-r", "9400-9401", "--http-budget", "65537",
	    "--", "gunicorn");
}
