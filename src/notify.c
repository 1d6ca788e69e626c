/*
 * Tells the service manager how promfork is doing (Type=notify): the
 * sd_notify(3) datagram protocol spoken directly on $NOTIFY_SOCKET, so
 * promfork needs no libsystemd.  Without $NOTIFY_SOCKET every call is a
 * no-op.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

static char *notify_path;

/*
 * Sends one state string ("READY=1", "STOPPING=1", ...) to path.  A path
 * starting with '@' names an abstract socket.  Returns 0 when sent, -1 on
 * error with *cause set.
 */
int
notify_send(const char *path, const char *state, char **cause)
{
	struct sockaddr_un sun;
	socklen_t len;
	size_t plen;
	ssize_t n;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	plen = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || plen < 2 ||
	    plen >= sizeof sun.sun_path) {
		xasprintf(cause, "NOTIFY_SOCKET %s is not a usable socket path",
		    path);
		return -1;
	}
	memcpy(sun.sun_path, path, plen);
	if (path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		xasprintf(cause, "NOTIFY_SOCKET: socket: %s", strerror(errno));
		return -1;
	}
	n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
	    (struct sockaddr *)&sun, len);
	if (n == -1)
		xasprintf(cause, "NOTIFY_SOCKET %s: %s", path, strerror(errno));
	close(fd);
	return n == -1 ? -1 : 0;
}

/*
 * Takes $NOTIFY_SOCKET out of the environment, so the wrapped command does
 * not speak for promfork (the manager would refuse it under NotifyAccess=main
 * and log every attempt).
 */
void
notify_init(void)
{
	const char *path = getenv("NOTIFY_SOCKET");

	free(notify_path);
	notify_path = NULL;
	if (path != NULL && *path != '\0')
		notify_path = xstrdup(path);
	unsetenv("NOTIFY_SOCKET");
}

static void
notify_state(const char *state)
{
	char *cause = NULL;

	if (notify_path == NULL)
		return;
	if (notify_send(notify_path, state, &cause) != 0) {
		log_warnx("cannot notify the service manager: %s", cause);
		free(cause);
	}
}

/* The socket and the sd file exist: workers may register now. */
void
notify_ready(void)
{
	notify_state("READY=1");
}

void
notify_stopping(void)
{
	notify_state("STOPPING=1");
}
