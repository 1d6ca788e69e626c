/*
 * systemd socket activation (--systemd-socket): the listening sockets a
 * .socket unit hands over in LISTEN_FDS, with sd_listen_fds' semantics,
 * written here rather than linking libsystemd for two environment
 * variables.  The descriptors start at 3; they are ours only when
 * LISTEN_PID is our pid.  The variables are removed at once, so that
 * COMMAND never takes promfork's sockets for its own.
 */
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

#define ACTIVATION_FD_START 3 /* SD_LISTEN_FDS_START */

/*
 * Reads LISTEN_PID and LISTEN_FDS (either may be NULL: unset) as
 * sd_listen_fds does: *n is how many descriptors from 3 on are ours, 0
 * when the variables are unset or name another process.  At most max.
 */
int
activation_parse(const char *pid, const char *fds, pid_t self, int max, int *n,
    char **cause)
{
	long long v;

	*n = 0;
	if (pid == NULL || fds == NULL)
		return 0;
	if (decimal_parse(pid, 1, INT32_MAX, &v, NULL) != 0) {
		xasprintf(cause,
		    "LISTEN_PID \"%.32s\" is not a process id: is promfork "
		    "started by a systemd .socket unit?",
		    pid);
		return -1;
	}
	if ((pid_t)v != self)
		return 0; /* for another process: systemd's rule */
	if (decimal_parse(fds, 0, max, &v, NULL) != 0) {
		xasprintf(cause,
		    "LISTEN_FDS \"%.32s\" is not a number of sockets from 0 "
		    "to %d",
		    fds, max);
		return -1;
	}
	*n = (int)v;
	return 0;
}

/* A stream socket of IPv4 or IPv6 that listens; made non-blocking. */
static int
activation_check(int fd, char **cause)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	int type = 0, acc = 0, flags;
	socklen_t ilen = sizeof type;

	if (fcntl(fd, F_SETFD, FD_CLOEXEC) == -1) {
		xasprintf(cause, "LISTEN_FDS: descriptor %d: %s", fd,
		    strerror(errno));
		return -1;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &ilen) != 0 ||
	    type != SOCK_STREAM ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		xasprintf(cause,
		    "LISTEN_FDS: descriptor %d is not a TCP socket: the "
		    ".socket unit must use ListenStream= with an address "
		    "and port",
		    fd);
		return -1;
	}
	ilen = sizeof acc;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ilen) != 0 ||
	    !acc) {
		xasprintf(cause,
		    "LISTEN_FDS: descriptor %d does not listen: the .socket "
		    "unit must not set Accept=yes",
		    fd);
		return -1;
	}
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1) {
		xasprintf(cause, "LISTEN_FDS: descriptor %d: %s", fd,
		    strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Takes the sockets systemd passed into fds (room for max); returns how
 * many, or -1 with a cause when there are none or one is unfit.
 */
int
activation_fds(int *fds, int max, char **cause)
{
	int i, n;

	if (activation_parse(getenv("LISTEN_PID"), getenv("LISTEN_FDS"),
		getpid(), max, &n, cause) != 0)
		goto out;
	if (n == 0) {
		*cause = xstrdup("--systemd-socket: systemd passed no sockets "
				 "(LISTEN_FDS and LISTEN_PID are unset or "
				 "name another process): start promfork "
				 "through its .socket unit");
		n = -1;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (activation_check(ACTIVATION_FD_START + i, cause) != 0) {
			n = -1;
			goto out;
		}
		fds[i] = ACTIVATION_FD_START + i;
	}
out:
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}
