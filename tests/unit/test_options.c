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
	*msg = NULL;
	return options_parse(o, argc, argv, msg);
}

Test(options, full_command_line)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "--port-range", "9400-9463", "--sd-file",
	    "sd/a.json", "--socket", "/run/p.sock", "--target-host", "web1",
	    "--label", "env=prod", "-l", "dc=x", "--log-level", "debug", "--",
	    "gunicorn", "-w", "4", "app:wsgi"), OPTIONS_RUN, "%s", msg);
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
	options_free(&o);
}

Test(options, command_options_are_not_ours)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "-r", "9400-9401", "gunicorn", "--workers",
	    "2"), OPTIONS_RUN, "%s", msg);
	cr_assert_str_eq(o.command[1], "--workers");
	cr_assert_not_null(o.target_host, "defaults to the host name");
	options_free(&o);
}

Test(options, help_and_version)
{
	struct options o;
	char *msg;

	cr_assert_eq(PARSE(&o, &msg, "--help"), OPTIONS_EXIT_OK);
	cr_assert_null(msg);
	options_free(&o);
	cr_assert_eq(PARSE(&o, &msg, "--version"), OPTIONS_EXIT_OK);
	cr_assert(strstr(msg, PROMFORK_VERSION) != NULL);
	free(msg);
	options_free(&o);
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
	options_free(&o);
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
	    &hi, &cause), -1);
	free(cause);
}
