/*
 * promfork --check: validates what a start would need (the sd directory,
 * the socket path, the ports of the range) without starting anything, and
 * prints a short report.  Ports that another process holds are warnings,
 * since the pool skips them; the holder is found through /proc/net/tcp{,6}
 * and /proc/PID/fd where this user may look.
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

#define CHECK_TCP_LINE_MAX 512
#define CHECK_TCP_LISTEN 0x0a
#define CHECK_REPORT_MAX 20 /* held ports listed one by one */

struct check_holder {
	uint16_t port;
	uid_t uid;
	unsigned long long inode;
	pid_t pid; /* 0 when not visible */
};

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

/* Reads the token at *p (up to a space or end) and moves past it. */
static int
check_token(const char **p, const char *end, const char **tok, size_t *len)
{
	const char *s = *p;

	while (s < end && *s == ' ')
		s++;
	if (s >= end)
		return -1;
	*tok = s;
	while (s < end && *s != ' ')
		s++;
	*len = (size_t)(s - *tok);
	*p = s;
	return 0;
}

static int
check_hex(const char *s, size_t len, unsigned long long *v)
{
	size_t i;
	int c;

	if (len == 0 || len > 16)
		return -1;
	*v = 0;
	for (i = 0; i < len; i++) {
		c = tolower((unsigned char)s[i]);
		if (c >= '0' && c <= '9')
			c -= '0';
		else if (c >= 'a' && c <= 'f')
			c -= 'a' - 10;
		else
			return -1;
		*v = *v * 16 + (unsigned long long)c;
	}
	return 0;
}

static int
check_dec(const char *s, size_t len, unsigned long long *v)
{
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	*v = 0;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9' || *v > (ULLONG_MAX - 9) / 10)
			return -1;
		*v = *v * 10 + (unsigned long long)(s[i] - '0');
	}
	return 0;
}

/* "0100007F:1F90" (IPv4) or 32 hex digits, a colon and the port (IPv6). */
static int
check_address(const char *s, size_t len, uint16_t *port)
{
	unsigned long long v;
	size_t i;

	if (len != 8 + 1 + 4 && len != 32 + 1 + 4)
		return -1;
	for (i = 0; i < len - 5; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return -1;
	}
	if (s[len - 5] != ':' || check_hex(s + len - 4, 4, &v) != 0)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/*
 * Parses one line of /proc/net/tcp or /proc/net/tcp6 (see proc(5)): the
 * local port, the state, the owner's uid and the socket inode.  Returns 0,
 * or -1 for the header line and anything malformed.
 */
int
check_tcp_parse(const char *buf, size_t len, struct check_sock *sk)
{
	const char *p = buf, *end, *tok;
	unsigned long long v;
	size_t tlen;
	int i;

	if (len == 0 || len > CHECK_TCP_LINE_MAX ||
	    memchr(buf, '\0', len) != NULL)
		return -1;
	end = buf + len;
	if (end[-1] == '\n')
		end--;
	if (memchr(buf, '\n', (size_t)(end - buf)) != NULL)
		return -1;
	memset(sk, 0, sizeof *sk);
	for (i = 0; i <= 9; i++) {
		if (check_token(&p, end, &tok, &tlen) != 0)
			return -1;
		switch (i) {
		case 0: /* "sl", the slot: "12:" */
			if (tlen < 2 || tok[tlen - 1] != ':' ||
			    check_dec(tok, tlen - 1, &v) != 0)
				return -1;
			break;
		case 1:
			if (check_address(tok, tlen, &sk->port) != 0)
				return -1;
			break;
		case 2:
			if (check_address(tok, tlen, &(uint16_t){ 0 }) != 0)
				return -1;
			break;
		case 3:
			if (tlen != 2 || check_hex(tok, tlen, &v) != 0)
				return -1;
			sk->state = (int)v;
			break;
		case 7:
			if (check_dec(tok, tlen, &v) != 0 || v > UINT_MAX)
				return -1;
			sk->uid = (uid_t)v;
			break;
		case 9:
			if (check_dec(tok, tlen, &v) != 0)
				return -1;
			sk->inode = v;
			break;
		default: /* queues, timers, retransmits, timeout */
			break;
		}
	}
	return 0;
}

/* Collects the listeners on ports low..high from one /proc/net file. */
static void
check_listeners_read(const char *path, uint16_t low, uint16_t high,
    struct check_holder **hv, size_t *hn)
{
	char line[CHECK_TCP_LINE_MAX + 2];
	struct check_sock sk;
	FILE *f;

	if ((f = fopen(path, "re")) == NULL)
		return;
	while (fgets(line, sizeof line, f) != NULL) {
		if (check_tcp_parse(line, strlen(line), &sk) != 0 ||
		    sk.state != CHECK_TCP_LISTEN || sk.port < low ||
		    sk.port > high)
			continue;
		*hv = xreallocarray(*hv, *hn + 1, sizeof **hv);
		(*hv)[*hn].port = sk.port;
		(*hv)[*hn].uid = sk.uid;
		(*hv)[*hn].inode = sk.inode;
		(*hv)[*hn].pid = 0;
		(*hn)++;
	}
	fclose(f);
}

/* Finds which pid owns each socket inode, where /proc/PID/fd is readable. */
static void
check_holders_find(struct check_holder *hv, size_t hn)
{
	char path[64], link[64];
	struct dirent *de, *fde;
	unsigned long long inode;
	DIR *proc, *fds;
	ssize_t n;
	size_t i;
	char *end;
	long pid;

	if (hn == 0 || (proc = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(proc)) != NULL) {
		pid = strtol(de->d_name, &end, 10);
		if (pid <= 0 || *end != '\0')
			continue;
		snprintf(path, sizeof path, "/proc/%ld/fd", pid);
		if ((fds = opendir(path)) == NULL)
			continue;
		while ((fde = readdir(fds)) != NULL) {
			snprintf(path, sizeof path, "/proc/%ld/fd/%.20s", pid,
			    fde->d_name);
			n = readlink(path, link, sizeof link - 1);
			if (n <= 0)
				continue;
			link[n] = '\0';
			if (sscanf(link, "socket:[%llu]", &inode) != 1)
				continue;
			for (i = 0; i < hn; i++) {
				if (hv[i].inode == inode && hv[i].pid == 0)
					hv[i].pid = (pid_t)pid;
			}
		}
		closedir(fds);
	}
	closedir(proc);
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

/* Says who holds port, from what /proc shows. */
static void
check_port_held(struct check_report *r, uint16_t port,
    const struct check_holder *hv, size_t hn)
{
	char comm[32];
	size_t i;

	for (i = 0; i < hn; i++) {
		if (hv[i].port != port)
			continue;
		if (hv[i].pid != 0) {
			check_comm(hv[i].pid, comm, sizeof comm);
			check_say(r, "warning",
			    "port %u is held by pid %d (%s, "
			    "uid %u); the pool will skip it",
			    port, (int)hv[i].pid, comm, (unsigned)hv[i].uid);
		} else
			check_say(r, "warning",
			    "port %u is held by a process "
			    "of uid %u that this user cannot see; the pool "
			    "will skip it",
			    port, (unsigned)hv[i].uid);
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
	struct check_holder *hv = NULL;
	size_t hn = 0, size, nheld = 0;
	uint16_t *held;
	unsigned port;

	size = (size_t)o->port_high - o->port_low + 1;
	held = xreallocarray(NULL, size, sizeof *held);
	for (port = o->port_low; port <= o->port_high; port++) {
		if (!pool_port_bindable((uint16_t)port, NULL))
			held[nheld++] = (uint16_t)port;
	}
	if (nheld > 0) {
		check_listeners_read("/proc/net/tcp", o->port_low, o->port_high,
		    &hv, &hn);
		check_listeners_read("/proc/net/tcp6", o->port_low,
		    o->port_high, &hv, &hn);
		check_holders_find(hv, hn);
	}
	for (size_t i = 0; i < nheld && i < CHECK_REPORT_MAX; i++)
		check_port_held(r, held[i], hv, hn);
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
	free(hv);
	free(held);
}

/*
 * Checks a --socket path without binding it: the length fits, the directory
 * exists and is writable, and no live socket (or other file) is in the way.
 */
int
check_socket(const char *path, char **cause)
{
	struct sockaddr_un sun;
	char *dir, *slash;
	struct stat sb;
	int fd, rc = -1;

	if (strlen(path) >= sizeof sun.sun_path) {
		xasprintf(cause,
		    "--socket %s is longer than %zu bytes; choose "
		    "a shorter path",
		    path, sizeof sun.sun_path - 1);
		return -1;
	}
	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) == NULL)
		strcpy(dir, ".");
	else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
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
	if (lstat(path, &sb) == 0) {
		if (!S_ISSOCK(sb.st_mode)) {
			xasprintf(cause,
			    "--socket %s exists and is not a "
			    "socket; remove it or choose another path",
			    path);
			goto out;
		}
		memset(&sun, 0, sizeof sun);
		sun.sun_family = AF_UNIX;
		strcpy(sun.sun_path, path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd != -1 &&
		    connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
			close(fd);
			xasprintf(cause,
			    "--socket %s is in use by another "
			    "promfork; stop it or choose another path",
			    path);
			goto out;
		}
		if (fd != -1)
			close(fd);
	}
	rc = 0;
out:
	free(dir);
	return rc;
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
