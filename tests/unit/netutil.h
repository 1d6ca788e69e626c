/*
 * Test helpers for the HTTP face: a canned "worker" that answers every
 * connection with fixed bytes (in its own thread, blocking I/O), an event
 * loop run in a thread, and a blocking client.  Loopback and port 0 only.
 */
#ifndef NETUTIL_H
#define NETUTIL_H

#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <event2/event.h>

#define NETUTIL_FN static __attribute__((unused))

struct canned {
	int fd;
	uint16_t port;
	const char *response;
	size_t len;
	int delay_ms; /* before answering */
	int hang; /* 1: never answer, 2: answer, then hold the connection */
	char request[4096]; /* the last request head received */
	int served;
	volatile size_t sent; /* bytes of the response sent so far */
	pthread_t thread;
};

NETUTIL_FN int
netutil_listen(uint16_t *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		abort();
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		abort();
	*port = ntohs(sin.sin_port);
	return fd;
}

/* A port nobody listens on (bound and closed: refused until reused). */
NETUTIL_FN uint16_t
netutil_dead_port(void)
{
	uint16_t port;

	close(netutil_listen(&port));
	return port;
}

/* A process that sleeps until killed, and dies with the test. */
NETUTIL_FN pid_t
netutil_sleeper(void)
{
	pid_t pid = fork();

	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		pause();
		_exit(0);
	}
	if (pid == -1)
		abort();
	return pid;
}

/* One byte, with room for one descriptor passed beside it. */
struct netutil_fdmsg {
	char b;
	struct iovec iov;
	_Alignas(struct cmsghdr) char buf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh;
};

NETUTIL_FN struct msghdr *
netutil_fdmsg_init(struct netutil_fdmsg *m)
{
	memset(m, 0, sizeof *m);
	m->iov.iov_base = &m->b;
	m->iov.iov_len = 1;
	m->mh.msg_iov = &m->iov;
	m->mh.msg_iovlen = 1;
	m->mh.msg_control = m->buf;
	m->mh.msg_controllen = sizeof m->buf;
	return &m->mh;
}

/*
 * A process that sleeps until killed, dies with the test, and keeps every
 * descriptor given to it with netutil_give through *ctl: as a worker
 * holds its listener.
 */
NETUTIL_FN pid_t
netutil_holder(int *ctl)
{
	struct netutil_fdmsg m;
	int sv[2];
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		/* Each fd received stays open until this process dies. */
		while (recvmsg(sv[1], netutil_fdmsg_init(&m), 0) > 0)
			(void)send(sv[1], &m.b, 1, MSG_NOSIGNAL);
		pause();
		_exit(0);
	}
	if (pid == -1)
		abort();
	close(sv[1]);
	*ctl = sv[0];
	return pid;
}

/* The holder behind ctl takes a copy of fd (and has it on return). */
NETUTIL_FN void
netutil_give(int ctl, int fd)
{
	struct netutil_fdmsg m;
	struct msghdr *mh = netutil_fdmsg_init(&m);
	struct cmsghdr *cm = CMSG_FIRSTHDR(mh);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	if (sendmsg(ctl, mh, MSG_NOSIGNAL) != 1 || read(ctl, &m.b, 1) != 1)
		abort();
}

/* A blocking connection to 127.0.0.1:port. */
NETUTIL_FN int
netutil_connect(uint16_t port)
{
	struct sockaddr_in sin;
	int fd;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons(port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sin, sizeof sin) != 0)
		abort();
	return fd;
}

NETUTIL_FN void
netutil_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

NETUTIL_FN void *
canned_main(void *arg)
{
	struct canned *cw = arg;
	int c;

	while ((c = accept(cw->fd, NULL, NULL)) != -1) {
		size_t got = 0;
		ssize_t n;

		memset(cw->request, 0, sizeof cw->request);
		while (got < sizeof cw->request - 1 &&
		    (n = read(c, cw->request + got,
			 sizeof cw->request - 1 - got)) > 0) {
			got += (size_t)n;
			if (strstr(cw->request, "\r\n\r\n") != NULL)
				break;
		}
		if (cw->hang == 1) {
			char b;
			while (read(c, &b, 1) > 0)
				;
			close(c);
			continue;
		}
		if (cw->delay_ms > 0)
			netutil_sleep_ms(cw->delay_ms);
		for (size_t off = 0; off < cw->len; off += (size_t)n) {
			n = send(c, cw->response + off, cw->len - off,
			    MSG_NOSIGNAL);
			if (n <= 0)
				break;
			cw->sent = off + (size_t)n;
		}
		cw->served++;
		if (cw->hang == 2) {
			char b;
			while (read(c, &b, 1) > 0)
				;
		}
		close(c);
	}
	return NULL;
}

NETUTIL_FN void
canned_start(struct canned *cw, const char *response, size_t len)
{
	memset(cw, 0, sizeof *cw);
	cw->response = response;
	cw->len = len;
	cw->fd = netutil_listen(&cw->port);
}

NETUTIL_FN void
canned_run(struct canned *cw)
{
	pthread_create(&cw->thread, NULL, canned_main, cw);
}

NETUTIL_FN void
canned_stop(struct canned *cw)
{
	shutdown(cw->fd, SHUT_RDWR);
	close(cw->fd);
	pthread_join(cw->thread, NULL);
}

/* An event loop in a thread: only that thread touches the base. */
struct loop {
	struct event_base *base;
	struct event *ev_stop;
	int pipe[2];
	pthread_t thread;
};

NETUTIL_FN void
loop_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(arg);
}

NETUTIL_FN void *
loop_main(void *arg)
{
	struct loop *lp = arg;

	event_base_dispatch(lp->base);
	return NULL;
}

NETUTIL_FN void
loop_start(struct loop *lp, struct event_base *base)
{
	lp->base = base;
	if (pipe2(lp->pipe, O_CLOEXEC) != 0)
		abort();
	lp->ev_stop = event_new(base, lp->pipe[0], EV_READ, loop_stop_cb, base);
	event_add(lp->ev_stop, NULL);
	pthread_create(&lp->thread, NULL, loop_main, lp);
}

NETUTIL_FN void
loop_stop(struct loop *lp)
{
	(void)write(lp->pipe[1], "x", 1);
	pthread_join(lp->thread, NULL);
	event_free(lp->ev_stop);
	close(lp->pipe[0]);
	close(lp->pipe[1]);
}

/*
 * Sends req to 127.0.0.1:port and reads until the peer closes or
 * timeout_ms passes; returns the bytes read (NUL-terminated) in *out.
 */
NETUTIL_FN size_t
netutil_exchange(uint16_t port, const char *req, size_t reqlen, int timeout_ms,
    char **out)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);
	struct pollfd pfd;
	int fd = netutil_connect(port);

	if (reqlen > 0 &&
	    send(fd, req, reqlen, MSG_NOSIGNAL) != (ssize_t)reqlen)
		abort();
	pfd.fd = fd;
	pfd.events = POLLIN;
	while (poll(&pfd, 1, timeout_ms) == 1) {
		ssize_t n;

		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
		}
		n = read(fd, buf + len, cap - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	return len;
}

#endif
