/*
 * Command-line parsing, pure: it checks the syntax and ranges of every value
 * and leaves checks that touch the system (directories, sockets) to main.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

static const char options_help[] =
"Usage: promfork --port-range LOW-HIGH [OPTIONS] -- COMMAND [ARGS...]\n"
"       promfork lease [--pid PID] [--label NAME=VALUE]...\n"
"\n"
"Runs COMMAND (a pre-fork server such as gunicorn or uWSGI) and gives each\n"
"of its workers a metrics port of its own from LOW-HIGH.  Workers register\n"
"over the Unix socket named by $PROMFORK_SOCKET; each live worker is\n"
"published as its own Prometheus target, labelled worker=\"N\" where its port\n"
"is LOW+N, for exactly as long as its process lives.\n"
"\n"
"Options:\n"
"  -r, --port-range LOW-HIGH  ports to hand out, e.g. 9400-9463 (required)\n"
"  -f, --sd-file PATH         write Prometheus file_sd JSON to PATH; point\n"
"                             Prometheus at the directory, not the file\n"
"      --sd-remove-on-exit    remove PATH at exit instead of writing []\n"
"  -s, --socket PATH          registration socket (default: a private\n"
"                             directory under $RUNTIME_DIRECTORY or /tmp)\n"
"  -t, --target-host HOST     host part of every target (default: hostname)\n"
"  -l, --label NAME=VALUE     static label on every target (repeatable)\n"
"      --log-level LEVEL      error, warn, info (default) or debug\n"
"      --log-format FORMAT    text (default) or json\n"
"  -h, --help                 show this help and exit\n"
"  -V, --version              show the version and exit\n"
"\n"
"Registration API (HTTP/1.1 + JSON on the Unix socket):\n"
"  POST /v1/workers {\"pid\": N, \"labels\": {...}}  lease a port (pid defaults\n"
"                                             to the caller)\n"
"  GET /v1/workers                            list the leases\n"
"  DELETE /v1/workers/N                       release worker N\n"
"From a shell: port=$(promfork lease) registers the calling shell.\n"
"\n"
"Exit status: COMMAND's own, 128+N when it was killed by signal N, 2 for a\n"
"bad option, 126/127 when COMMAND cannot be run.\n";

void
options_usage(void)
{
	fputs(options_help, stdout);
}

static int
options_parse_port(const char *s, uint16_t *port)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 1 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

int
options_parse_port_range(const char *s, uint16_t *low, uint16_t *high,
    char **cause)
{
	const char *dash = strchr(s, '-');
	char *first;
	int rc;

	if (dash == NULL) {
		xasprintf(cause, "--port-range \"%s\" is not LOW-HIGH, "
		    "e.g. 9400-9463", s);
		return -1;
	}
	first = xstrndup(s, (size_t)(dash - s));
	rc = options_parse_port(first, low);
	free(first);
	if (rc != 0 || options_parse_port(dash + 1, high) != 0) {
		xasprintf(cause, "--port-range \"%s\": ports must be whole "
		    "numbers from 1 to 65535, e.g. 9400-9463", s);
		return -1;
	}
	if (*low > *high) {
		xasprintf(cause, "--port-range \"%s\" is reversed: write the "
		    "lower port first, e.g. %u-%u", s, *high, *low);
		return -1;
	}
	return 0;
}

static char *
options_default_host(void)
{
	char host[256];

	if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
		return xstrdup("localhost");
	host[sizeof host - 1] = '\0';
	return xstrdup(host);
}

/*
 * Fills o from argv.  On OPTIONS_EXIT_USAGE *message says what was wrong and
 * what to do; the caller prints it and exits 2 before anything starts.
 */
enum options_result
options_parse(struct options *o, int argc, char **argv, char **message)
{
	static const struct option longopts[] = {
		{ "port-range", required_argument, NULL, 'r' },
		{ "sd-file", required_argument, NULL, 'f' },
		{ "sd-remove-on-exit", no_argument, NULL, 'R' },
		{ "socket", required_argument, NULL, 's' },
		{ "target-host", required_argument, NULL, 't' },
		{ "label", required_argument, NULL, 'l' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	int c, have_range = 0;
	char *cause = NULL;

	memset(o, 0, sizeof *o);
	o->log_level = LOG_LEVEL_INFO;
	*message = NULL;
	optind = 0; /* reset getopt, tests parse more than once */
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:r:f:s:t:l:hV", longopts,
	    NULL)) != -1) {
		switch (c) {
		case 'r':
			if (options_parse_port_range(optarg, &o->port_low,
			    &o->port_high, &cause) != 0)
				goto usage;
			have_range = 1;
			break;
		case 'f':
			free(o->sd_file);
			o->sd_file = xstrdup(optarg);
			break;
		case 'R':
			o->sd_remove_on_exit = 1;
			break;
		case 's':
			free(o->socket_path);
			o->socket_path = xstrdup(optarg);
			break;
		case 't':
			if (optarg[0] == '\0' || strpbrk(optarg, " /\"") !=
			    NULL) {
				xasprintf(&cause, "--target-host \"%s\" is not "
				    "a host name or address", optarg);
				goto usage;
			}
			free(o->target_host);
			o->target_host = xstrdup(optarg);
			break;
		case 'l':
			if (labels_set_arg(&o->labels, optarg, &cause) != 0)
				goto usage;
			break;
		case 'L':
			if (log_level_parse(optarg, &o->log_level) != 0) {
				xasprintf(&cause, "--log-level \"%s\" is not "
				    "one of error, warn, info, debug", optarg);
				goto usage;
			}
			break;
		case 'F':
			if (strcmp(optarg, "json") == 0)
				o->log_json = 1;
			else if (strcmp(optarg, "text") == 0)
				o->log_json = 0;
			else {
				xasprintf(&cause, "--log-format \"%s\" is not "
				    "text or json", optarg);
				goto usage;
			}
			break;
		case 'h':
			return OPTIONS_EXIT_OK;
		case 'V':
			xasprintf(message, "promfork %s", PROMFORK_VERSION);
			return OPTIONS_EXIT_OK;
		case ':':
			xasprintf(&cause, "option %s needs a value",
			    argv[optind - 1]);
			goto usage;
		default:
			if (optopt != 0)
				xasprintf(&cause, "unknown option -%c", optopt);
			else
				xasprintf(&cause, "unknown option %s",
				    argv[optind - 1]);
			goto usage;
		}
	}
	if (!have_range) {
		cause = xstrdup("--port-range is required, e.g. "
		    "--port-range 9400-9463");
		goto usage;
	}
	if (optind >= argc) {
		cause = xstrdup("no COMMAND given: write promfork [OPTIONS] -- "
		    "COMMAND [ARGS...]");
		goto usage;
	}
	o->command = argv + optind;
	if (o->target_host == NULL)
		o->target_host = options_default_host();
	return OPTIONS_RUN;

usage:
	xasprintf(message, "%s (see promfork --help)", cause);
	free(cause);
	return OPTIONS_EXIT_USAGE;
}

void
options_free(struct options *o)
{
	free(o->sd_file);
	free(o->socket_path);
	free(o->target_host);
	labels_clear(&o->labels);
	memset(o, 0, sizeof *o);
}
