#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "promfork.h"

static char dir[] = "/tmp/promfork-test-notify.XXXXXX";
static char path[128];

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/notify", dir);
}

static void
teardown(void)
{
	unlink(path);
	rmdir(dir);
}

TestSuite(notify, .init = setup, .fini = teardown);

/* A datagram socket standing in for the service manager's. */
static int
manager(const char *name)
{
	struct timeval tv = { 5, 0 };
	struct sockaddr_un sun;
	socklen_t len;
	int fd;

	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	cr_assert_neq(fd, -1);
	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, name);
	len =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(name));
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, len), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void
expect(int fd, const char *state)
{
	char buf[128];
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);

	cr_assert_gt(n, 0);
	buf[n] = '\0';
	cr_assert_str_eq(buf, state);
}

Test(notify, ready_and_stopping)
{
	int fd = manager(path);

	setenv("NOTIFY_SOCKET", path, 1);
	notify_init();
	cr_assert_null(getenv("NOTIFY_SOCKET"), "the child must not see it");
	notify_ready();
	expect(fd, "READY=1");
	notify_stopping();
	expect(fd, "STOPPING=1");
	close(fd);
}

Test(notify, abstract_socket)
{
	char name[64];
	int fd;

	snprintf(name, sizeof name, "@promfork-test-notify-%d", (int)getpid());
	fd = manager(name);
	setenv("NOTIFY_SOCKET", name, 1);
	notify_init();
	notify_ready();
	expect(fd, "READY=1");
	close(fd);
}

/* A manager was there at a first init; without one now, nothing is sent
 * to it. */
Test(notify, without_socket_is_a_noop)
{
	struct timeval tv = { 0, 200 * 1000 };
	char buf[64];
	int fd = manager(path);

	setenv("NOTIFY_SOCKET", path, 1);
	notify_init();
	unsetenv("NOTIFY_SOCKET");
	notify_init();
	notify_ready();
	notify_stopping();
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	cr_assert_eq(recv(fd, buf, sizeof buf, 0), -1, "a datagram was sent");
	cr_assert_null(getenv("NOTIFY_SOCKET"));
	close(fd);
}

Test(notify, bad_paths)
{
	char *cause = NULL;
	char longpath[200];

	cr_assert_eq(notify_send("relative/path", "READY=1", &cause), -1);
	cr_assert_not_null(strstr(cause, "relative/path"));
	free(cause);
	cause = NULL;
	cr_assert_eq(notify_send("@", "READY=1", &cause), -1);
	free(cause);
	cause = NULL;
	memset(longpath, 'a', sizeof longpath - 1);
	longpath[0] = '/';
	longpath[sizeof longpath - 1] = '\0';
	cr_assert_eq(notify_send(longpath, "READY=1", &cause), -1);
	free(cause);
	cause = NULL;
	/* nobody listening */
	cr_assert_eq(notify_send(path, "READY=1", &cause), -1);
	free(cause);
}
