/*
 * Command-line parsing, pure: it checks the syntax and ranges of every value
 * and leaves checks that touch the system (directories, sockets) to main.
 */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

/* Long options without a letter. */
enum {
	OPTIONS_LISTEN = 0x4401,
	OPTIONS_PROXY_TARGETS,
	OPTIONS_HTTP_DEADLINE,
};
enum { OPTIONS_DISCOVER = 0x4501, OPTIONS_DISCOVER_INTERVAL };
enum { OPTIONS_HISTORY_RESOLUTION = 0x4801, OPTIONS_HISTORY_WINDOW };
enum { OPTIONS_WEB_CONFIG = 0x5001 };
enum {
	OPTIONS_NO_CONTINUITY = 0x4601,
	OPTIONS_CARRY_HOLD,
	OPTIONS_CARRY_MAX_SERIES
};
/* The listener's ways in and its budget (issue 16). */
enum { OPTIONS_SYSTEMD_SOCKET = 0x4c01, OPTIONS_HTTP_BUDGET };

static const char options_help[] =
    "Usage: promfork --port-range LOW-HIGH [OPTIONS] -- COMMAND [ARGS...]\n"
    "       promfork --port-range LOW-HIGH --socket PATH [OPTIONS]  (standalone)\n"
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
    "      --discover             also publish the ports of the range that\n"
    "                             COMMAND's processes listen on by themselves\n"
    "                             (e.g. django-prometheus PORT_RANGE)\n"
    "      --discover-interval MS how often to look for new listeners\n"
    "                             (default 200, 10 to 60000)\n"
    "      --log-level LEVEL      error, warn, info (default) or debug\n"
    "      --log-format FORMAT    text (default) or json\n"
    "      --check                validate the options, the sd directory, the\n"
    "                             socket and the ports, report and exit (0 when\n"
    "                             usable, 2 when not); no COMMAND needed\n"
    "      --workers N            spawn mode: run N copies of COMMAND, each with\n"
    "                             PROMFORK_PORT and PROMFORK_WORKER set and\n"
    "                             {port} and {worker} replaced in its arguments;\n"
    "                             a dead one restarts in its slot (with backoff);\n"
    "                             TTIN/TTOU add/remove one, HUP restarts them one\n"
    "                             at a time, TERM stops them\n"
    "      --grace SECONDS        spawn mode: SIGKILL a worker this long after\n"
    "                             SIGTERM (default 10)\n";

/* Three strings: C compilers need not take one longer than 4 095 bytes. */
static const char options_help_listen[] =
    "HTTP listener:\n"
    "      --listen ADDR:PORT     serve HTTP for Prometheus and people: / (status),\n"
    "                             /metrics, /targets (http_sd), /workers/N/metrics\n"
    "                             (proxy), /workers/metrics (all, merged),\n"
    "                             /api/v1/history, /-/healthy, /-/ready; e.g.\n"
    "                             127.0.0.1:9399, [::1]:9399 or :9399 (all);\n"
    "                             repeatable, e.g. IPv4 and IPv6 addresses;\n"
    "                             outside --port-range\n"
    "      --systemd-socket       also serve HTTP on the listening sockets of\n"
    "                             a systemd .socket unit (LISTEN_FDS)\n"
    "      --http-budget MIB      memory for answers being built, all requests\n"
    "                             together; past it the fan-out answers 503\n"
    "                             (default 128)\n"
    "      --proxy-targets        targets name the --listen address with\n"
    "                             __metrics_path__ /workers/N/metrics, so that\n"
    "                             Prometheus needs to reach one port only\n"
    "      --web.config.file FILE TLS, basic auth and headers for --listen, in\n"
    "                             the Prometheus exporter-toolkit's YAML format;\n"
    "                             re-read when it changes\n"
    "      --http-deadline SECS   time for a whole request to --listen,\n"
    "                             proxied scrape included (default 10)\n"
    "      --no-continuity        serve each worker's own counters through the\n"
    "                             proxy and fan-out, without the totals that\n"
    "                             its slot's earlier processes counted\n"
    "      --carry-hold SECS      how long a slot without a live worker keeps\n"
    "                             serving its carried totals (default 300)\n"
    "      --carry-max-series N   carried series, all slots together, at most\n"
    "                             (default 100000); more are served raw\n"
    "      --history-resolution SECS\n"
    "                             with --listen: seconds between two samples\n"
    "                             of each worker's CPU, memory and scrapes\n"
    "                             (default 5)\n"
    "      --history-window SECS  how far back the history on / and at\n"
    "                             /api/v1/history goes (default 3600)\n";

static const char options_help_tail[] =
    "Privilege separation:\n"
    "      --user USER            run COMMAND as USER, with its own groups and\n"
    "                             none of promfork's (needs root, or\n"
    "                             CAP_SETUID, CAP_SETGID and CAP_KILL)\n"
    "      --group GROUP          ... and with GROUP instead of USER's own group\n"
    "      --privsep-user USER    started as root: promfork itself continues as\n"
    "                             USER, the only user that may write the sd file\n"
    "Standalone (no COMMAND: one promfork per host that many apps share):\n"
    "      --state-file PATH      keep the leases in PATH and, after a restart,\n"
    "                             take up every worker still running with its\n"
    "                             port; the sd file is then kept at exit\n"
    "      --allow-uid USER       may register besides root and promfork's own\n"
    "                             user (name or number, repeatable)\n"
    "      --allow-gid GROUP      members of GROUP may register (repeatable)\n"
    "      --max-leases-per-uid N the most leases the processes of one user may\n"
    "                             hold (default 128)\n"
    "  -h, --help                 show this help and exit\n"
    "  -V, --version              show the version and exit\n"
    "\n"
    "Registration API (HTTP/1.1 + JSON on the Unix socket):\n"
    "  POST /v1/workers {\"pid\": N, \"labels\": {...}, \"slot\": N}\n"
    "                                             lease a port (pid defaults\n"
    "                                             to the caller; slot: the\n"
    "                                             one wanted, when free)\n"
    "  GET /v1/workers                            list the leases\n"
    "  DELETE /v1/workers/N                       release worker N\n"
    "  POST /v1/workers/N/retire                  worker N is about to exit:\n"
    "                                             scrape it one last time\n"
    "From a shell: port=$(promfork lease) registers the calling shell.\n"
    "\n"
    "Exit status: COMMAND's own, 128+N when it was killed by signal N, 2 for a\n"
    "bad option, 126/127 when COMMAND cannot be run.\n";

void
options_usage(void)
{
	fputs(options_help, stdout);
	fputs(options_help_listen, stdout);
	fputs(options_help_tail, stdout);
}

int
options_parse_port_range(const char *s, uint16_t *low, uint16_t *high,
    char **cause)
{
	const char *dash = strchr(s, '-');
	long long lo, hi;

	if (dash == NULL) {
		xasprintf(cause,
		    "--port-range \"%s\" is not LOW-HIGH, "
		    "e.g. 9400-9463",
		    s);
		return -1;
	}
	if (decimal_parse_n(s, (size_t)(dash - s), 1, 65535, &lo, NULL) != 0 ||
	    decimal_parse(dash + 1, 1, 65535, &hi, NULL) != 0) {
		xasprintf(cause,
		    "--port-range \"%s\": ports must be whole "
		    "numbers from 1 to 65535, e.g. 9400-9463",
		    s);
		return -1;
	}
	*low = (uint16_t)lo;
	*high = (uint16_t)hi;
	if (*low > *high) {
		xasprintf(cause,
		    "--port-range \"%s\" is reversed: write the "
		    "lower port first, e.g. %u-%u",
		    s, *high, *low);
		return -1;
	}
	return 0;
}

static int
options_parse_ms(const char *s, int min, int max, int *ms)
{
	long long v;

	if (decimal_parse(s, min, max, &v, NULL) != 0)
		return -1;
	*ms = (int)v;
	return 0;
}

static int
options_parse_seconds(const char *s, int min, int max, int *ms)
{
	if (options_parse_ms(s, min, max, ms) != 0)
		return -1;
	*ms *= 1000;
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

/* Long options of spawn and standalone mode, out of the way of letters. */
enum {
	OPTIONS_WORKERS = 0x701,
	OPTIONS_GRACE,
	OPTIONS_STATE_FILE,
	OPTIONS_ALLOW_UID,
	OPTIONS_ALLOW_GID
};

/* A count of workers or leases: 1 to 65536, one per port at most. */
static int
options_parse_count(const char *arg, int *count)
{
	long long v;

	if (decimal_parse(arg, 1, 65536, &v, NULL) != 0)
		return -1;
	*count = (int)v;
	return 0;
}

/* Privilege separation and the standalone per-user cap. */
enum {
	OPTIONS_USER = 0x801,
	OPTIONS_GROUP,
	OPTIONS_PRIVSEP_USER,
	OPTIONS_MAX_LEASES_PER_UID
};
#define OPTIONS_MAX_LEASES_PER_UID_DEFAULT 128

/* Names only: main looks them up, so an unknown one fails there. */
static int
options_parse_privsep(struct options *o, int opt, const char *arg, char **cause)
{
	char **dst = NULL;

	switch (opt) {
	case OPTIONS_USER:
		dst = &o->user;
		break;
	case OPTIONS_GROUP:
		dst = &o->group;
		break;
	case OPTIONS_PRIVSEP_USER:
		dst = &o->privsep_user;
		break;
	case OPTIONS_MAX_LEASES_PER_UID:
		if (options_parse_count(arg, &o->max_leases_per_uid) != 0) {
			xasprintf(cause,
			    "--max-leases-per-uid \"%s\" is not a number "
			    "from 1 to 65536",
			    arg);
			return -1;
		}
		return 0;
	}
	if (*arg == '\0' || strlen(arg) > 255) {
		xasprintf(cause, "an empty or overlong user or group name");
		return -1;
	}
	free(*dst);
	*dst = xstrdup(arg);
	return 0;
}

/* A user or group by name or number. */
static int
options_parse_id(const char *s, int group, unsigned int *id, char **cause)
{
	struct passwd *pw;
	struct group *gr;
	long long v;

	if (*s >= '0' && *s <= '9') {
		if (decimal_parse(s, 0, UINT_MAX - 1, &v, NULL) == 0) {
			*id = (unsigned int)v;
			return 0;
		}
	} else if (group && (gr = getgrnam(s)) != NULL) {
		*id = gr->gr_gid;
		return 0;
	} else if (!group && (pw = getpwnam(s)) != NULL) {
		*id = pw->pw_uid;
		return 0;
	}
	xasprintf(cause, "--allow-%s \"%s\" is not a %s name or number",
	    group ? "gid" : "uid", s, group ? "group" : "user");
	return -1;
}

/* The options of spawn and standalone mode. */
static int
options_parse_standalone(struct options *o, int opt, const char *arg,
    char **cause)
{
	unsigned int id;
	char *end;
	double d;

	switch (opt) {
	case OPTIONS_WORKERS:
		if (options_parse_count(arg, &o->workers) != 0) {
			xasprintf(cause,
			    "--workers \"%s\" is not a number of "
			    "workers from 1 up",
			    arg);
			return -1;
		}
		return 0;
	case OPTIONS_GRACE:
		errno = 0;
		d = strtod(arg, &end);
		if (*arg < '0' || *arg > '9' || errno != 0 || *end != '\0' ||
		    !(d >= 0.001 && d <= 3600)) {
			xasprintf(cause,
			    "--grace \"%s\" is not a number of "
			    "seconds from 0.001 to 3600",
			    arg);
			return -1;
		}
		o->grace_ms = (int)(d * 1000 + 0.5);
		return 0;
	case OPTIONS_STATE_FILE:
		if (*arg == '\0') {
			*cause = xstrdup("--state-file needs a path");
			return -1;
		}
		free(o->state_file);
		o->state_file = xstrdup(arg);
		return 0;
	case OPTIONS_ALLOW_UID:
		if (options_parse_id(arg, 0, &id, cause) != 0)
			return -1;
		o->allow_uids = xreallocarray(o->allow_uids, o->nallow_uids + 1,
		    sizeof *o->allow_uids);
		o->allow_uids[o->nallow_uids++] = (uid_t)id;
		return 0;
	case OPTIONS_ALLOW_GID:
		if (options_parse_id(arg, 1, &id, cause) != 0)
			return -1;
		o->allow_gids = xreallocarray(o->allow_gids, o->nallow_gids + 1,
		    sizeof *o->allow_gids);
		o->allow_gids[o->nallow_gids++] = (gid_t)id;
		return 0;
	}
	return -1;
}

/* The options of slot continuity (carry.c). */
static int
options_parse_carry(struct options *o, int opt, const char *arg, char **cause)
{
	switch (opt) {
	case OPTIONS_NO_CONTINUITY:
		o->continuity = 0;
		return 0;
	case OPTIONS_CARRY_HOLD:
		if (options_parse_seconds(arg, 0, 86400, &o->carry_hold_ms) !=
		    0) {
			xasprintf(cause,
			    "--carry-hold \"%s\" is not a whole number "
			    "of seconds from 0 to 86400",
			    arg);
			return -1;
		}
		return 0;
	case OPTIONS_CARRY_MAX_SERIES: {
		int n;

		if (options_parse_ms(arg, 0, 999999, &n) != 0) {
			xasprintf(cause,
			    "--carry-max-series \"%s\" is not a whole "
			    "number from 0 to 999999",
			    arg);
			return -1;
		}
		o->carry_max_series = (size_t)n;
		return 0;
	}
	}
	return -1;
}

/* The history's resolution and window, whole seconds (history.c). */
static int
options_parse_history(struct options *o, int opt, const char *arg, char **cause)
{
	const char *name = opt == OPTIONS_HISTORY_RESOLUTION
	    ? "--history-resolution"
	    : "--history-window";
	long long v;

	if (decimal_parse(arg, 1, 86400, &v, NULL) != 0) {
		xasprintf(cause,
		    "%s \"%s\" is not a whole number of seconds from 1 to "
		    "86400",
		    name, arg);
		return -1;
	}
	if (opt == OPTIONS_HISTORY_RESOLUTION)
		o->history_resolution_s = (int)v;
	else
		o->history_window_s = (int)v;
	return 0;
}

/* Are the history's resolution and window one that can be kept? */
static int
options_check_history(const struct options *o, char **cause)
{
	if (o->history_resolution_s < 1 || o->history_resolution_s > 3600) {
		xasprintf(cause,
		    "--history-resolution %d: give a whole number of "
		    "seconds from 1 to 3600",
		    o->history_resolution_s);
		return -1;
	}
	if (o->history_window_s < o->history_resolution_s ||
	    o->history_window_s > 86400) {
		xasprintf(cause,
		    "--history-window %d: give a whole number of seconds "
		    "from the resolution (%d) to 86400",
		    o->history_window_s, o->history_resolution_s);
		return -1;
	}
	if ((size_t)(o->history_window_s / o->history_resolution_s) >
	    HISTORY_SAMPLES_MAX) {
		xasprintf(cause,
		    "--history-window %d with --history-resolution %d "
		    "keeps %d samples per slot, more than %d: widen the "
		    "resolution or shorten the window",
		    o->history_window_s, o->history_resolution_s,
		    o->history_window_s / o->history_resolution_s,
		    HISTORY_SAMPLES_MAX);
		return -1;
	}
	return 0;
}

/* Spawn options need a COMMAND; standalone options need none. */
static int
options_check_modes(struct options *o, char **cause)
{
	size_t ports = (size_t)o->port_high - o->port_low + 1;

	if (o->workers > 0 && o->command == NULL) {
		*cause = xstrdup("--workers needs a COMMAND to run: promfork "
				 "--workers N [OPTIONS] -- COMMAND [ARGS...]");
		return -1;
	}
	if (o->workers > 0 && (size_t)o->workers > ports) {
		xasprintf(cause,
		    "--workers %d needs as many ports, but "
		    "--port-range %u-%u has %zu; widen it",
		    o->workers, o->port_low, o->port_high, ports);
		return -1;
	}
	if (o->command != NULL &&
	    (o->state_file != NULL || o->nallow_uids > 0 ||
		o->nallow_gids > 0)) {
		*cause =
		    xstrdup("--state-file, --allow-uid and --allow-gid are "
			    "for standalone mode, without a COMMAND");
		return -1;
	}
	if (o->command != NULL && o->max_leases_per_uid != 0) {
		*cause = xstrdup("--max-leases-per-uid is for standalone mode, "
				 "without a COMMAND");
		return -1;
	}
	if (o->group != NULL && o->user == NULL) {
		*cause = xstrdup("--group needs --user: the user to run "
				 "COMMAND as");
		return -1;
	}
	if (o->user != NULL && o->command == NULL && !o->check) {
		*cause = xstrdup("--user needs a COMMAND to run as that user");
		return -1;
	}
	return 0;
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
		{ "listen", required_argument, NULL, OPTIONS_LISTEN },
		{ "proxy-targets", no_argument, NULL, OPTIONS_PROXY_TARGETS },
		{ "systemd-socket", no_argument, NULL, OPTIONS_SYSTEMD_SOCKET },
		{ "http-budget", required_argument, NULL, OPTIONS_HTTP_BUDGET },
		{ "web.config.file", required_argument, NULL,
		    OPTIONS_WEB_CONFIG },
		{ "http-deadline", required_argument, NULL,
		    OPTIONS_HTTP_DEADLINE },
		{ "no-continuity", no_argument, NULL, OPTIONS_NO_CONTINUITY },
		{ "carry-hold", required_argument, NULL, OPTIONS_CARRY_HOLD },
		{ "carry-max-series", required_argument, NULL,
		    OPTIONS_CARRY_MAX_SERIES },
		{ "history-resolution", required_argument, NULL,
		    OPTIONS_HISTORY_RESOLUTION },
		{ "history-window", required_argument, NULL,
		    OPTIONS_HISTORY_WINDOW },
		{ "discover", no_argument, NULL, OPTIONS_DISCOVER },
		{ "discover-interval", required_argument, NULL,
		    OPTIONS_DISCOVER_INTERVAL },
		{ "log-level", required_argument, NULL, 'L' },
		{ "log-format", required_argument, NULL, 'F' },
		{ "check", no_argument, NULL, 'K' },
		{ "workers", required_argument, NULL, OPTIONS_WORKERS },
		{ "grace", required_argument, NULL, OPTIONS_GRACE },
		{ "state-file", required_argument, NULL, OPTIONS_STATE_FILE },
		{ "allow-uid", required_argument, NULL, OPTIONS_ALLOW_UID },
		{ "allow-gid", required_argument, NULL, OPTIONS_ALLOW_GID },
		{ "user", required_argument, NULL, OPTIONS_USER },
		{ "group", required_argument, NULL, OPTIONS_GROUP },
		{ "privsep-user", required_argument, NULL,
		    OPTIONS_PRIVSEP_USER },
		{ "max-leases-per-uid", required_argument, NULL,
		    OPTIONS_MAX_LEASES_PER_UID },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' }, { NULL, 0, NULL, 0 }
	};
	int c, have_range = 0;
	char *cause = NULL;

	memset(o, 0, sizeof *o);
	o->log_level = LOG_LEVEL_INFO;
	o->discover_interval_ms = DISCOVER_INTERVAL_MS;
	o->http_deadline_ms = WEB_DEADLINE_MS;
	o->continuity = 1;
	o->carry_hold_ms = CARRY_HOLD_MS;
	o->carry_max_series = CARRY_MAX_SERIES;
	o->history_resolution_s = HISTORY_RESOLUTION_S;
	o->history_window_s = HISTORY_WINDOW_S;
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
			if (optarg[0] == '\0' ||
			    strpbrk(optarg, " /\"") != NULL) {
				xasprintf(&cause,
				    "--target-host \"%s\" is not "
				    "a host name or address",
				    optarg);
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
				xasprintf(&cause,
				    "--log-level \"%s\" is not "
				    "one of error, warn, info, debug",
				    optarg);
				goto usage;
			}
			break;
		case 'F':
			if (strcmp(optarg, "json") == 0)
				o->log_json = 1;
			else if (strcmp(optarg, "text") == 0)
				o->log_json = 0;
			else {
				xasprintf(&cause,
				    "--log-format \"%s\" is not "
				    "text or json",
				    optarg);
				goto usage;
			}
			break;
		case 'K':
			o->check = 1;
			break;
		case OPTIONS_LISTEN: {
			struct sockaddr_storage ss;
			socklen_t sslen;

			if (web_parse_listen(optarg, &ss, &sslen, &cause) != 0)
				goto usage;
			if (o->nlisten == OPTIONS_LISTEN_MAX) {
				xasprintf(&cause,
				    "--listen given more than %d times",
				    OPTIONS_LISTEN_MAX);
				goto usage;
			}
			o->listen[o->nlisten++] = xstrdup(optarg);
			break;
		}
		case OPTIONS_DISCOVER:
			o->discover = 1;
			break;
		case OPTIONS_DISCOVER_INTERVAL:
			if (options_parse_ms(optarg, 10, 60000,
				&o->discover_interval_ms) != 0) {
				xasprintf(&cause,
				    "--discover-interval \"%s\" is "
				    "not a whole number of milliseconds from 10 "
				    "to 60000",
				    optarg);
				goto usage;
			}
			break;
		case OPTIONS_PROXY_TARGETS:
			o->proxy_targets = 1;
			break;
		case OPTIONS_SYSTEMD_SOCKET:
			o->systemd_socket = 1;
			break;
		case OPTIONS_HTTP_BUDGET: {
			long long mib;

			if (decimal_parse(optarg, 1, 65536, &mib, NULL) != 0) {
				xasprintf(&cause,
				    "--http-budget \"%s\" is not a whole "
				    "number of MiB from 1 to 65536",
				    optarg);
				goto usage;
			}
			o->http_budget_bytes = (size_t)mib << 20;
			break;
		}
		case OPTIONS_WEB_CONFIG:
			free(o->web_config);
			o->web_config = xstrdup(optarg);
			break;
		case OPTIONS_HTTP_DEADLINE:
			if (options_parse_seconds(optarg, 1, 3600,
				&o->http_deadline_ms) != 0) {
				xasprintf(&cause,
				    "--http-deadline \"%s\" is not "
				    "a whole number of seconds from 1 to 3600",
				    optarg);
				goto usage;
			}
			break;
		case OPTIONS_NO_CONTINUITY:
		case OPTIONS_CARRY_HOLD:
		case OPTIONS_CARRY_MAX_SERIES:
			if (options_parse_carry(o, c, optarg, &cause) != 0)
				goto usage;
			break;
		case OPTIONS_HISTORY_RESOLUTION:
		case OPTIONS_HISTORY_WINDOW:
			if (options_parse_history(o, c, optarg, &cause) != 0)
				goto usage;
			break;
		case OPTIONS_WORKERS:
		case OPTIONS_GRACE:
		case OPTIONS_STATE_FILE:
		case OPTIONS_ALLOW_UID:
		case OPTIONS_ALLOW_GID:
			if (options_parse_standalone(o, c, optarg, &cause) != 0)
				goto usage;
			break;
		case OPTIONS_USER:
		case OPTIONS_GROUP:
		case OPTIONS_PRIVSEP_USER:
		case OPTIONS_MAX_LEASES_PER_UID:
			if (options_parse_privsep(o, c, optarg, &cause) != 0)
				goto usage;
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
	if (options_check_history(o, &cause) != 0)
		goto usage;
	if (o->proxy_targets && o->nlisten == 0 && !o->systemd_socket) {
		cause = xstrdup("--proxy-targets needs --listen ADDR:PORT or "
				"--systemd-socket: the targets point at the "
				"first listener");
		goto usage;
	}
	if (o->web_config != NULL && o->nlisten == 0 && !o->systemd_socket) {
		cause =
		    xstrdup("--web.config.file needs --listen ADDR:PORT or "
			    "--systemd-socket: it configures the listeners");
		goto usage;
	}
	if (!have_range) {
		cause = xstrdup("--port-range is required, e.g. "
				"--port-range 9400-9463");
		goto usage;
	}
	if (optind >= argc && !o->check && o->socket_path == NULL) {
		cause = xstrdup(
		    "no COMMAND given: write promfork [OPTIONS] -- "
		    "COMMAND [ARGS...], or give --socket PATH to run standalone");
		goto usage;
	}
	if (optind < argc) /* --check runs without a COMMAND */
		o->command = argv + optind;
	if (options_check_modes(o, &cause) != 0)
		goto usage;
	if (o->discover && o->command == NULL && !o->check) {
		cause = xstrdup("--discover needs a COMMAND: it publishes the "
				"ports that COMMAND's processes listen on");
		goto usage;
	}
	if (o->target_host == NULL)
		o->target_host = options_default_host();
	if (o->max_leases_per_uid == 0)
		o->max_leases_per_uid = OPTIONS_MAX_LEASES_PER_UID_DEFAULT;
	return OPTIONS_RUN;

usage:
	xasprintf(message, "%s (see promfork --help)", cause);
	free(cause);
	return OPTIONS_EXIT_USAGE;
}

void
options_finish(struct options *o)
{
	size_t i;

	free(o->sd_file);
	free(o->socket_path);
	free(o->target_host);
	free(o->state_file);
	free(o->allow_uids);
	free(o->allow_gids);
	for (i = 0; i < o->nlisten; i++)
		free(o->listen[i]);
	free(o->web_config);
	free(o->user);
	free(o->group);
	free(o->privsep_user);
	labels_finish(&o->labels);
	memset(o, 0, sizeof *o);
}
