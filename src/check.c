/*
 * promfork --check: validates what a start would need (the sd directory,
 * the socket path, the ports of the range) without starting anything, and
 * prints a short report.  Ports that another process holds are warnings,
 * since the pool skips them; the holder is found with discovery's sock_diag
 * dump and /proc/PID/fd walk, where this user may look.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <netinet/in.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

#define CHECK_REPORT_MAX 20 /* held ports listed one by one */

struct check_report {
	FILE *out;
	int errors;
	int warnings;
};

static void check_say(struct check_report *, const char *, const char *, ...)
    PRINTFLIKE(3, 4);

static void
check_say(struct check_report *r, const char *what, const char *fmt, ...)
{
	va_list ap;

	if (strcmp(what, "error") == 0)
		r->errors++;
	else if (strcmp(what, "warning") == 0)
		r->warnings++;
	fprintf(r->out, "%-8s", what);
	va_start(ap, fmt);
	vfprintf(r->out, fmt, ap);
	va_end(ap);
	fputc('\n', r->out);
}

static void
check_comm(pid_t pid, char *buf, size_t size)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
	buf[0] = '\0';
	if ((f = fopen(path, "re")) == NULL)
		return;
	if (fgets(buf, (int)size, f) == NULL)
		buf[0] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	fclose(f);
}

/* Says who holds port, from what sock_diag and /proc show. */
static void
check_port_held(struct check_report *r, uint16_t port,
    const struct discover_socks *socks, const pid_t *pids)
{
	char comm[32];
	size_t i;

	for (i = 0; i < socks->n; i++) {
		if (socks->v[i].port != port)
			continue;
		if (pids[i] != 0) {
			check_comm(pids[i], comm, sizeof comm);
			check_say(r, "warning",
			    "port %u is held by pid %d (%s, "
			    "uid %u); the pool will skip it",
			    port, (int)pids[i], comm,
			    (unsigned)socks->v[i].uid);
		} else
			check_say(r, "warning",
			    "port %u is held by a process "
			    "of uid %u that this user cannot see; the pool "
			    "will skip it",
			    port, (unsigned)socks->v[i].uid);
		return;
	}
	check_say(r, "warning",
	    "port %u cannot be bound%s; the pool will "
	    "skip it",
	    port,
	    port < 1024 ? " (ports below 1024 need "
			  "privileges)"
			: " (no listener visible: another network namespace "
			  "or a socket without listen)");
}

static void
check_ports(struct check_report *r, const struct options *o)
{
	struct discover_socks socks = { NULL, 0, 0, 0 };
	size_t size, nheld = 0;
	pid_t *pids = NULL;
	uint16_t *held;
	char *cause = NULL;
	unsigned port;

	size = (size_t)o->port_high - o->port_low + 1;
	held = xreallocarray(NULL, size, sizeof *held);
	for (port = o->port_low; port <= o->port_high; port++) {
		if (!pool_port_bindable((uint16_t)port, NULL))
			held[nheld++] = (uint16_t)port;
	}
	if (nheld > 0) {
		/* without sock_diag, every held port is "no listener visible" */
		if (discover_listeners(o->port_low, o->port_high, &socks,
			&cause) != 0) {
			log_debug("--check: %s", cause);
			free(cause);
			socks.n = 0;
		}
		pids = xcalloc(socks.n + 1, sizeof *pids);
		discover_holders(&socks, pids);
	}
	for (size_t i = 0; i < nheld && i < CHECK_REPORT_MAX; i++)
		check_port_held(r, held[i], &socks, pids);
	if (nheld > CHECK_REPORT_MAX)
		check_say(r, "warning", "... and %zu more held ports",
		    nheld - CHECK_REPORT_MAX);
	if (nheld == size)
		check_say(r, "error",
		    "ports %u-%u: none of the %zu ports can "
		    "be bound; choose another --port-range",
		    o->port_low, o->port_high, size);
	else
		check_say(r, "ok", "ports %u-%u: %zu of %zu free", o->port_low,
		    o->port_high, size - nheld, size);
	discover_socks_finish(&socks);
	free(pids);
	free(held);
}

/*
 * Checks a --socket path without binding it: the length fits, the directory
 * exists and is writable, and no live socket (or other file) is in the way.
 */
int
check_socket(const char *path, char **cause)
{
	char *dir;
	struct stat sb;
	int rc = -1;

	if (api_socket_probe(path, cause) == -1)
		return -1;
	dir = file_dir(path);
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		xasprintf(cause, "--socket %s: directory %s does not exist",
		    path, dir);
		goto out;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		xasprintf(cause,
		    "--socket %s: cannot create a socket in %s: %s", path, dir,
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(dir);
	return rc;
}

/* --web.config.file: read and built as at start (certificates loaded). */
static void
check_web_config(struct check_report *r, const struct options *o)
{
	struct webguard *g;
	char *cause = NULL;

	if (o->web_config == NULL)
		return;
	if ((g = webguard_create(o->web_config, &cause)) == NULL) {
		check_say(r, "error", "%s", cause);
		free(cause);
		return;
	}
	webguard_free(g);
	check_say(r, "ok", "web configuration %s", o->web_config);
}

/* Runs every check and prints the report; returns the exit status. */
int
check_run(const struct options *o)
{
	struct check_report r = { stdout, 0, 0 };
	FILE *out = stdout;
	char *cause = NULL;

	check_say(&r, "ok", "options");
	if (o->sd_file == NULL)
		check_say(&r, "ok", "no --sd-file: no file_sd output");
	else if (sdfile_check(o->sd_file, &cause) != 0) {
		check_say(&r, "error", "%s", cause);
		free(cause);
		cause = NULL;
	} else
		check_say(&r, "ok", "sd file %s: directory writable",
		    o->sd_file);

	if (o->socket_path == NULL)
		check_say(&r, "ok",
		    "no --socket: a private directory under "
		    "$RUNTIME_DIRECTORY, $XDG_RUNTIME_DIR or /tmp");
	else if (check_socket(o->socket_path, &cause) != 0) {
		check_say(&r, "error", "%s", cause);
		free(cause);
	} else
		check_say(&r, "ok", "socket %s", o->socket_path);

	check_ports(&r, o);
	check_web_config(&r, o);

	if (r.errors > 0)
		fprintf(out, "promfork --check: %d error%s, %d warning%s\n",
		    r.errors, r.errors == 1 ? "" : "s", r.warnings,
		    r.warnings == 1 ? "" : "s");
	else
		fprintf(out, "promfork --check: usable, %d warning%s\n",
		    r.warnings, r.warnings == 1 ? "" : "s");
	fflush(out);
	return r.errors > 0 ? 2 : 0;
}
