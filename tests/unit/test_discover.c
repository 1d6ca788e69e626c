#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "helpers.h"
#include "promfork.h"

#define LISTEN 10

/* Appends one netlink message to buf at *off; returns its start. */
static unsigned char *
put_msg(unsigned char *buf, size_t *off, uint16_t type, uint32_t seq,
    const void *payload, size_t plen)
{
	struct nlmsghdr nlh;
	unsigned char *start = buf + *off;

	memset(&nlh, 0, sizeof nlh);
	nlh.nlmsg_len = (uint32_t)(NLMSG_HDRLEN + plen);
	nlh.nlmsg_type = type;
	nlh.nlmsg_seq = seq;
	memcpy(start, &nlh, sizeof nlh);
	memcpy(start + NLMSG_HDRLEN, payload, plen);
	*off += NLMSG_ALIGN(nlh.nlmsg_len);
	return start;
}

static void
put_sock(unsigned char *buf, size_t *off, uint32_t seq, int family, int state,
    uint16_t port, uint32_t inode)
{
	struct inet_diag_msg m;

	memset(&m, 0, sizeof m);
	m.idiag_family = (uint8_t)family;
	m.idiag_state = (uint8_t)state;
	m.id.idiag_sport = htons(port);
	m.idiag_inode = inode;
	put_msg(buf, off, SOCK_DIAG_BY_FAMILY, seq, &m, sizeof m);
}

Test(discover, parses_a_dump)
{
	unsigned char buf[1024];
	struct discover_socks socks = { 0 };
	size_t off = 0;
	char *cause = NULL;
	int done = 0;

	put_sock(buf, &off, 7, AF_INET, LISTEN, 9401, 1111);
	put_sock(buf, &off, 7, AF_INET6, LISTEN, 9403, 2222);
	put_sock(buf, &off, 7, AF_INET, LISTEN, 9500, 3333); /* outside */
	put_sock(buf, &off, 6, AF_INET, LISTEN, 9402, 4444); /* stale seq */
	put_msg(buf, &off, NLMSG_DONE, 7, "\0\0\0\0", 4);
	cr_assert_eq(discover_parse_diag(buf, off, 7, 9400, 9463, &socks, &done,
			 &cause),
	    0, "%s", cause);
	cr_assert_eq(done, 1);
	cr_assert_eq(socks.n, 2);
	cr_assert_eq(socks.v[0].port, 9401);
	cr_assert_eq(socks.v[0].inode, 1111);
	cr_assert_eq(socks.v[0].state, LISTEN);
	cr_assert_eq(socks.v[1].port, 9403);
	cr_assert_eq(socks.v[1].family, AF_INET6);
	discover_socks_finish(&socks);
}

Test(discover, dump_in_parts_and_unpadded_last_message)
{
	unsigned char buf[1024];
	struct discover_socks socks = { 0 };
	size_t off = 0;
	char *cause = NULL;
	int done = 0;

	put_sock(buf, &off, 1, AF_INET, LISTEN, 9400, 5);
	cr_assert_eq(discover_parse_diag(buf, off, 1, 9400, 9400, &socks, &done,
			 &cause),
	    0);
	cr_assert_eq(done, 0);
	/* an acknowledgement (error 0) and a NOOP are not errors */
	off = 0;
	put_msg(buf, &off, NLMSG_NOOP, 1, "", 0);
	put_msg(buf, &off, NLMSG_ERROR, 1, "\0\0\0\0", 4);
	put_msg(buf, &off, NLMSG_NOOP, 1, "ab", 2);
	cr_assert_eq(discover_parse_diag(buf, off - 2, 1, 9400, 9400, &socks,
			 &done, &cause),
	    0, "%s", cause);
	cr_assert_eq(socks.n, 1);
	discover_socks_finish(&socks);
}

Test(discover, kernel_error_is_reported)
{
	unsigned char buf[256];
	struct discover_socks socks = { 0 };
	size_t off = 0;
	char *cause = NULL;
	int done = 0, err = -ENOENT;

	put_msg(buf, &off, NLMSG_ERROR, 3, &err, sizeof err);
	cr_assert_eq(discover_parse_diag(buf, off, 3, 1, 65535, &socks, &done,
			 &cause),
	    -1);
	cr_assert_eq(socks.error, ENOENT);
	cr_assert_not_null(strstr(cause, "sock_diag"));
	free(cause);
	discover_socks_finish(&socks);
}

static void
bad_diag(const void *buf, size_t len, const char *what)
{
	struct discover_socks socks = { 0 };
	char *cause = NULL;
	int done = 0;

	cr_assert_eq(discover_parse_diag(buf, len, 1, 1, 65535, &socks, &done,
			 &cause),
	    -1, "accepted %s", what);
	cr_assert_not_null(cause, "no cause for %s", what);
	cr_assert_eq(strncmp(cause, "netlink", 7) == 0 ||
		strncmp(cause, "sock_diag", 9) == 0,
	    1, "%s: %s", what, cause);
	free(cause);
	discover_socks_finish(&socks);
}

Test(discover, bad_dumps_refused)
{
	unsigned char buf[512];
	struct nlmsghdr nlh;
	struct inet_diag_msg m;
	size_t off;

	bad_diag("\1\2\3", 3, "a short header");
	off = 0;
	put_sock(buf, &off, 1, AF_INET, LISTEN, 9400, 5);
	bad_diag(buf, off - 1, "a message cut short");

	memcpy(&nlh, buf, sizeof nlh);
	nlh.nlmsg_len = 3;
	memcpy(buf, &nlh, sizeof nlh);
	bad_diag(buf, off, "a length below the header");
	nlh.nlmsg_len = 0xffffffff;
	memcpy(buf, &nlh, sizeof nlh);
	bad_diag(buf, off, "a huge length");

	off = 0;
	put_msg(buf, &off, SOCK_DIAG_BY_FAMILY, 1, "abcd", 4);
	bad_diag(buf, off, "a short inet_diag_msg");

	off = 0;
	put_sock(buf, &off, 1, AF_UNIX, LISTEN, 9400, 5);
	bad_diag(buf, off, "another address family");

	off = 0;
	memset(&m, 0, sizeof m);
	put_msg(buf, &off, 0x55, 1, &m, sizeof m);
	bad_diag(buf, off, "an unknown type");

	off = 0;
	put_msg(buf, &off, NLMSG_ERROR, 1, "\1", 1);
	bad_diag(buf, off, "a short error");
}

Test(discover, parses_fd_links)
{
	uint32_t inode = 0;
	char *cause = NULL;

	cr_assert_eq(discover_parse_fdlink("socket:[4026531993]", 19, &inode,
			 &cause),
	    0);
	cr_assert_eq(inode, 4026531993u);
	cr_assert_eq(discover_parse_fdlink("socket:[7]", 10, &inode, &cause),
	    0);
	cr_assert_eq(inode, 7);
	cr_assert_eq(discover_parse_fdlink("pipe:[12]", 9, &inode, &cause), 1);
	cr_assert_eq(discover_parse_fdlink("/dev/null", 9, &inode, &cause), 1);
	cr_assert_eq(discover_parse_fdlink("sock", 4, &inode, &cause), 1);
	cr_assert_eq(discover_parse_fdlink("", 0, &inode, &cause), 1);
	cr_assert_null(cause);
}

Test(discover, bad_fd_links_refused)
{
	static const char *bad[] = {
		"socket:[]", "socket:[12a]", "socket:[0]", "socket:[12",
		"socket:[4294967296]", "socket:[-1]",
		"socket:[99999999999999999999999]", "socket:[1]]", "socket:[",
		"socket:[1234567890123456789012345678901234567890123456789012345]"
	};
	uint32_t inode = 0;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *cause = NULL;
		cr_assert_eq(discover_parse_fdlink(bad[i], strlen(bad[i]),
				 &inode, &cause),
		    -1, "accepted %s", bad[i]);
		cr_assert_not_null(strstr(cause, "malformed socket link"));
		free(cause);
	}
	cr_assert_eq(inode, 0);
}

static int
depth_of(const struct discover_proc *p, size_t n, pid_t pid)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (p[i].pid == pid)
			return p[i].depth;
	}
	return -99;
}

Test(discover, marks_the_tree)
{
	struct discover_proc p[] = {
		{ 300, 200, 0 }, /* grandchild, listed before its parent */
		{ 1, 0, 0 }, { 100, 1, 0 }, /* the root */
		{ 200, 100, 0 }, { 201, 100, 0 },
		{ 400, 1, 0 }, /* a stranger */
		{ 401, 400, 0 }, { 500, 999, 0 }, /* parent unknown */
		{ 600, 601, 0 }, /* a loop, only in forged input */
		{ 601, 600, 0 }, { 700, 700, 0 }, /* its own parent */
		{ 800, 301, 0 }, /* parent gone, not the root's */
	};
	size_t n = sizeof p / sizeof p[0];

	discover_tree_mark(p, n, 100);
	cr_assert_eq(depth_of(p, n, 100), 0);
	cr_assert_eq(depth_of(p, n, 200), 1);
	cr_assert_eq(depth_of(p, n, 201), 1);
	cr_assert_eq(depth_of(p, n, 300), 2);
	cr_assert_eq(depth_of(p, n, 1), -1);
	cr_assert_eq(depth_of(p, n, 400), -1);
	cr_assert_eq(depth_of(p, n, 401), -1);
	cr_assert_eq(depth_of(p, n, 500), -1);
	cr_assert_eq(depth_of(p, n, 600), -1);
	cr_assert_eq(depth_of(p, n, 601), -1);
	cr_assert_eq(depth_of(p, n, 700), -1);
	cr_assert_eq(depth_of(p, n, 800), -1);
	discover_tree_mark(NULL, 0, 100);
}

Test(discover, root_missing_from_the_table)
{
	struct discover_proc p[] = { { 5, 4, 0 }, { 6, 5, 0 }, { 7, 3, 0 } };

	discover_tree_mark(p, 3, 4);
	cr_assert_eq(depth_of(p, 3, 5), 1);
	cr_assert_eq(depth_of(p, 3, 6), 2);
	cr_assert_eq(depth_of(p, 3, 7), -1);
}

/*
 * Live tests: this process is the root of the tree, its children listen.
 * Each child is told what to do over a pipe, one byte per step.
 */
struct kid {
	pid_t pid;
	int cmd; /* we write */
	int ack; /* we read */
	uint16_t port;
};

static int
listen_any(uint16_t port)
{
	struct sockaddr_in sin;
	int fd, on = 1;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_neq(fd, -1);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(fd, 4) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static uint16_t
fd_port(int fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;

	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return ntohs(sin.sin_port);
}

/*
 * A child that listens on port (0: any) and answers commands:
 * 'c' closes the listener, 'f' forks a grandchild that keeps it (its pid is
 * sent back), 'q' exits.
 */
static void
kid_start(struct kid *k, uint16_t port)
{
	int cmd[2], ack[2];
	char c;

	cr_assert_eq(pipe(cmd), 0);
	cr_assert_eq(pipe(ack), 0);
	k->pid = fork();
	cr_assert_neq(k->pid, -1);
	if (k->pid == 0) {
		int fd = listen_any(port);
		uint16_t p = fd == -1 ? 0 : fd_port(fd);
		pid_t g;

		close(cmd[1]);
		close(ack[0]);
		if (write(ack[1], &p, sizeof p) != sizeof p)
			_exit(1);
		while (read(cmd[0], &c, 1) == 1) {
			if (c == 'c')
				close(fd);
			else if (c == 'f') {
				if ((g = fork()) == 0) {
					pause();
					_exit(0);
				}
				if (write(ack[1], &g, sizeof g) != sizeof g)
					_exit(1);
				continue;
			} else
				_exit(0);
			if (write(ack[1], &c, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(cmd[0]);
	close(ack[1]);
	k->cmd = cmd[1];
	k->ack = ack[0];
	cr_assert_eq(read(k->ack, &k->port, sizeof k->port), sizeof k->port);
	cr_assert_neq(k->port, 0);
}

static void
kid_do(struct kid *k, char c)
{
	char r;

	cr_assert_eq(write(k->cmd, &c, 1), 1);
	cr_assert_eq(read(k->ack, &r, 1), 1);
}

static void
kid_stop(struct kid *k)
{
	kill(k->pid, SIGKILL);
	waitpid(k->pid, NULL, 0);
	close(k->cmd);
	close(k->ack);
}

struct world {
	struct event_base *base;
	struct registry reg;
	struct discover *d;
	uint16_t low;
};

/* A range of 5 ports with port in the middle. */
static void
world_init(struct world *w, uint16_t port)
{
	struct discover_config cfg;
	char *cause = NULL;

	w->base = event_base_new();
	w->low = (uint16_t)(port - 2);
	registry_init(&w->reg, w->base, w->low, (uint16_t)(port + 2), NULL,
	    NULL);
	memset(&cfg, 0, sizeof cfg);
	cfg.root = getpid();
	cfg.low = w->low;
	cfg.high = (uint16_t)(port + 2);
	cfg.interval_ms = 60000; /* the tests run the passes */
	w->d = discover_create(w->base, &w->reg, &cfg, &cause);
	cr_assert_not_null(w->d, "%s", cause);
}

static void
world_finish(struct world *w)
{
	discover_free(w->d);
	registry_finish(&w->reg);
	event_base_free(w->base);
}

Test(discover, a_child_listener_is_a_lease_until_it_closes, .timeout = 20)
{
	struct world w;
	struct kid k;
	struct lease *l;

	kid_start(&k, 0);
	world_init(&w, k.port);
	cr_assert_eq(discover_scan(w.d), 0);
	l = registry_find_worker(&w.reg, 2);
	cr_assert_not_null(l);
	cr_assert_eq(l->pid, k.pid);
	cr_assert_eq(l->port, k.port);
	cr_assert_eq(l->source, LEASE_DISCOVER);
	cr_assert_eq(w.reg.count, 1);
	cr_assert_eq(discover_stats(w.d)->walks, 1);

	/* nothing new: no second walk of /proc */
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(discover_stats(w.d)->walks, 1);
	cr_assert_eq(w.reg.count, 1);

	kid_do(&k, 'c');
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(w.reg.count, 0);
	cr_assert_eq(w.reg.stats.ends[LEASE_END_GONE], 1);
	kid_stop(&k);
	world_finish(&w);
}

Test(discover, a_listener_outside_the_tree_is_never_published, .timeout = 20)
{
	struct world w;
	int fd, i;

	/* this process is the root, not part of its own tree */
	fd = listen_any(0);
	cr_assert_neq(fd, -1);
	world_init(&w, fd_port(fd));
	for (i = 0; i < 3; i++)
		cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(w.reg.count, 0);
	cr_assert_eq(discover_stats(w.d)->walks, 1,
	    "a foreign listener is "
	    "looked up once");
	close(fd);
	world_finish(&w);
}

Test(discover, registered_and_discovered_is_one_lease, .timeout = 20)
{
	struct world w;
	struct kid k;
	struct lease *l;
	char *cause = NULL;
	enum registry_error error;
	int created;

	kid_start(&k, 0);
	world_init(&w, k.port);
	l = registry_lease_pid(&w.reg, k.pid, NULL, LEASE_API, 2, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(w.reg.count, 1);
	cr_assert_eq(registry_find_worker(&w.reg, 2), l);
	cr_assert_eq(l->source, LEASE_API);
	/* discovery never ends a registered lease */
	kid_do(&k, 'c');
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(registry_find_worker(&w.reg, 2), l);
	kid_stop(&k);
	world_finish(&w);
}

Test(discover, a_port_leased_to_an_ancestor_is_that_lease, .timeout = 20)
{
	struct world w;
	struct kid k;
	struct lease *l;
	char *cause = NULL;
	enum registry_error error;
	int created;
	pid_t g;

	/* the kid's child gets the listener; the kid holds the lease */
	kid_start(&k, 0);
	world_init(&w, k.port);
	l = registry_lease_pid(&w.reg, k.pid, NULL, LEASE_API, 2, &created,
	    &error, &cause);
	cr_assert_not_null(l, "%s", cause);
	cr_assert_eq(write(k.cmd, "f", 1), 1);
	cr_assert_eq(read(k.ack, &g, sizeof g), sizeof g);
	kid_do(&k, 'c'); /* now only the grandchild holds it */
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(w.reg.count, 1);
	cr_assert_eq(registry_find_worker(&w.reg, 2)->pid, k.pid);
	kill(g, SIGKILL);
	kid_stop(&k);
	world_finish(&w);
}

Test(discover, an_inherited_listener_outlives_its_maker, .timeout = 20)
{
	struct world w;
	struct kid k;
	struct lease *l;
	pid_t g;
	int i;

	/* as promfork is: orphans stay in the tree */
	cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	kid_start(&k, 0);
	cr_assert_eq(write(k.cmd, "f", 1), 1);
	cr_assert_eq(read(k.ack, &g, sizeof g), sizeof g);
	world_init(&w, k.port);
	cr_assert_eq(discover_scan(w.d), 0);
	l = registry_find_worker(&w.reg, 2);
	cr_assert_not_null(l);
	cr_assert_eq(l->pid, k.pid, "the topmost holder owns it");

	kid_stop(&k);
	/* the registry hears of the exit through the pidfd */
	for (i = 0; i < 100 && w.reg.count > 0; i++) {
		event_base_loop(w.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (w.reg.count > 0)
			usleep(10000);
	}
	cr_assert_eq(w.reg.count, 0);
	cr_assert_eq(discover_scan(w.d), 0);
	l = registry_find_worker(&w.reg, 2);
	cr_assert_not_null(l);
	cr_assert_eq(l->pid, g, "the grandchild, re-parented to us, holds it");
	kill(g, SIGKILL);
	waitpid(g, NULL, 0);
	world_finish(&w);
}

Test(discover, refuses_a_config_unlike_the_pool)
{
	struct event_base *base = event_base_new();
	struct registry reg;
	struct discover_config cfg = { getpid(), 9400, 9409, 200 };
	char *cause = NULL;

	registry_init(&reg, base, 9400, 9463, NULL, NULL);
	cr_assert_null(discover_create(base, &reg, &cfg, &cause));
	cr_assert_not_null(strstr(cause, "does not match"));
	free(cause);
	registry_finish(&reg);
	event_base_free(base);
}

Test(discover, registering_a_discovered_worker_makes_it_registered,
    .timeout = 20)
{
	struct world w;
	struct kid k;
	struct lease *l, *r;
	char *cause = NULL;
	enum registry_error error;
	int created;

	kid_start(&k, 0);
	world_init(&w, k.port);
	cr_assert_eq(discover_scan(w.d), 0);
	l = registry_find_worker(&w.reg, 2);
	cr_assert_not_null(l);
	r = registry_lease_pid(&w.reg, k.pid, NULL, LEASE_API, -1, &created,
	    &error, &cause);
	cr_assert_eq(r, l);
	cr_assert_eq(created, 0);
	cr_assert_eq(l->source, LEASE_API);
	kid_do(&k, 'c');
	cr_assert_eq(discover_scan(w.d), 0);
	cr_assert_eq(registry_find_worker(&w.reg, 2), l);
	kid_stop(&k);
	world_finish(&w);
}

/* --check's view: one dump of the range, each listener with its holder. */
Test(discover_once, listeners_and_their_holders)
{
	struct discover_socks socks = { NULL, 0, 0, 0 };
	char *cause = NULL;
	pid_t *pids;
	size_t i, mine = 0;
	uint16_t port;
	int fd = listen_any(0);

	cr_assert_neq(fd, -1);
	port = fd_port(fd);
	cr_assert_eq(discover_listeners(port, port, &socks, &cause), 0, "%s",
	    cause);
	cr_assert_geq(socks.n, 1, "our listener on %u", port);
	pids = xcalloc(socks.n, sizeof *pids);
	discover_holders(&socks, pids);
	for (i = 0; i < socks.n; i++) {
		cr_assert_eq(socks.v[i].port, port, "only the range");
		if (pids[i] == getpid()) {
			cr_assert_eq(socks.v[i].uid, getuid());
			mine++;
		}
	}
	cr_assert_eq(mine, 1, "found in our own fds");
	free(pids);
	discover_socks_finish(&socks);
	close(fd);
	/* nobody listens now: an empty answer, not an error */
	cr_assert_eq(discover_listeners(port, port, &socks, &cause), 0, "%s",
	    cause);
	cr_assert_eq(socks.n, 0);
	discover_socks_finish(&socks);
}
