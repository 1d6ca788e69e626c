/*
 * Discovery (--discover): publishes the ports of the range that processes of
 * the wrapped command's tree really listen on, for apps that bind a port of
 * the range themselves (django-prometheus PORT_RANGE).  Each pass dumps the
 * TCP listeners of the range with netlink sock_diag; a listener not seen
 * before is mapped to its process by walking /proc/PID/fd of the tree, once.
 * Each owned listener becomes a lease whose slot is its port - LOW; the
 * lease ends when the listener is gone (next pass, or at once on the
 * kernel's socket-destroy notification) or when its process exits (the
 * registry's pidfd).
 *
 * One lease per process, one per port: a listener on a port already leased
 * to the same process, or to an ancestor or descendant of it (a shell that
 * registered itself and runs the server), is that lease.  A registered
 * (API) lease is never ended by discovery.  A listener held by a process
 * outside the tree is never published.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <linux/filter.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

#define DISCOVER_BUF_SIZE (64 * 1024)
#define DISCOVER_RECV_MAX 4096 /* recv calls per dump */
#define DISCOVER_DESTROY_READS 64 /* per wake-up; the rest next time */
#define DISCOVER_PROCS_MAX (4 * 1024 * 1024)
#define DISCOVER_FDLINK_MAX 64
#define DISCOVER_TCP_LISTEN 10 /* TCP_LISTEN of the kernel's tcp_states.h */
/*
 * Anyone may open and close listeners in the range: a destroy event starts
 * a pass no sooner than this after the last one, and /proc is walked at
 * most so often a second (a listener left unresolved waits for the next
 * pass), so that a flood costs promfork a bounded share of a core.
 */
#define DISCOVER_SCAN_GAP_MS 20
#define DISCOVER_WALKS_PER_S 5

enum discover_state {
	DISCOVER_UNRESOLVED, /* not mapped to a process yet */
	DISCOVER_FOREIGN, /* no process of the tree holds it */
	DISCOVER_OWNED,
};

/* One listener of the range, as of the last pass; sorted by inode. */
struct discover_entry {
	uint32_t inode;
	uint16_t port;
	enum discover_state state;
	pid_t pid; /* owner when OWNED, found by a walk */
	pid_t judged; /* other lease holder last judged, and the verdict */
	int related;
	int noted; /* "holds another lease" was logged */
};

struct discover {
	struct event_base *base;
	struct registry *reg;
	struct discover_config cfg;
	int nl; /* sock_diag dumps */
	int nl_destroy; /* socket-destroy notifications, -1 without */
	struct event *ev_destroy;
	struct event *ev_poll;
	uint32_t seq;
	unsigned char *buf;
	struct discover_socks socks;
	struct discover_entry *v;
	size_t n;
	unsigned char *keep; /* per slot, scratch of one pass */
	char *last_error; /* logged once until it changes */
	int warned_fd_access;
	struct discover_stats stats;
	struct timespec last_scan;
	struct event *ev_soon; /* a pass put off by DISCOVER_SCAN_GAP_MS */
	time_t walk_second; /* monotonic second of the walks counted */
	int walks_in_second;
};

void
discover_socks_finish(struct discover_socks *s)
{
	free(s->v);
	memset(s, 0, sizeof *s);
}

static int
discover_socks_add(struct discover_socks *s, const struct discover_sock *ds,
    char **cause)
{
	if (s->n == DISCOVER_SOCKS_MAX) {
		xasprintf(cause, "more than %d sockets in the range",
		    DISCOVER_SOCKS_MAX);
		return -1;
	}
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 16 : s->cap * 2;
		s->v = xreallocarray(s->v, s->cap, sizeof *s->v);
	}
	s->v[s->n++] = *ds;
	return 0;
}

/*
 * Parses a buffer of netlink messages from sock_diag: a dump reply (seq as
 * sent) or a socket-destroy notification (seq 0).  Appends every socket
 * whose local port is in low-high to socks, whatever its state; *done is
 * set at NLMSG_DONE.  Messages of another seq are skipped.  Returns -1 with
 * *cause on a malformed message or a kernel error (socks->error is then its
 * errno, or 0).
 */
int
discover_parse_diag(const void *buf, size_t len, uint32_t seq, uint16_t low,
    uint16_t high, struct discover_socks *socks, int *done, char **cause)
{
	const unsigned char *p = buf;
	struct nlmsghdr nlh;
	struct inet_diag_msg msg;
	struct nlmsgerr err;
	struct discover_sock ds;
	size_t off = 0, payload;

	socks->error = 0;
	while (off < len) {
		if (len - off < sizeof nlh) {
			xasprintf(cause,
			    "netlink: %zu bytes left over, a "
			    "header needs %zu",
			    len - off, sizeof nlh);
			return -1;
		}
		memcpy(&nlh, p + off, sizeof nlh);
		if (nlh.nlmsg_len < sizeof nlh || nlh.nlmsg_len > len - off) {
			xasprintf(cause,
			    "netlink: message length %u does not "
			    "fit the %zu bytes left",
			    nlh.nlmsg_len, len - off);
			return -1;
		}
		payload = nlh.nlmsg_len - NLMSG_HDRLEN;
		if (nlh.nlmsg_seq != seq)
			goto next;
		switch (nlh.nlmsg_type) {
		case NLMSG_NOOP:
			break;
		case NLMSG_DONE:
			*done = 1;
			return 0;
		case NLMSG_ERROR:
			if (payload < sizeof err.error) {
				*cause =
				    xstrdup("netlink: short error message");
				return -1;
			}
			memcpy(&err.error, p + off + NLMSG_HDRLEN,
			    sizeof err.error);
			if (err.error == 0) /* an acknowledgement */
				break;
			if (err.error < 0 && err.error > -4096)
				socks->error = -err.error;
			xasprintf(cause, "sock_diag: %s",
			    socks->error != 0 ? strerror(socks->error)
					      : "bad error code");
			return -1;
		case SOCK_DIAG_BY_FAMILY:
			if (payload < sizeof msg) {
				xasprintf(cause,
				    "sock_diag: message of %zu "
				    "bytes, at least %zu expected",
				    payload, sizeof msg);
				return -1;
			}
			memcpy(&msg, p + off + NLMSG_HDRLEN, sizeof msg);
			if (msg.idiag_family != AF_INET &&
			    msg.idiag_family != AF_INET6) {
				xasprintf(cause,
				    "sock_diag: address family %u "
				    "is neither IPv4 nor IPv6",
				    msg.idiag_family);
				return -1;
			}
			ds.port = ntohs(msg.id.idiag_sport);
			if (ds.port < low || ds.port > high)
				break;
			ds.inode = msg.idiag_inode;
			ds.uid = msg.idiag_uid;
			ds.family = msg.idiag_family;
			ds.state = msg.idiag_state;
			if (discover_socks_add(socks, &ds, cause) != 0)
				return -1;
			break;
		default:
			xasprintf(cause,
			    "sock_diag: unexpected message type %u",
			    nlh.nlmsg_type);
			return -1;
		}
	next:
		/* The last message may omit its alignment padding. */
		if (NLMSG_ALIGN(nlh.nlmsg_len) >= len - off)
			break;
		off += NLMSG_ALIGN(nlh.nlmsg_len);
	}
	return 0;
}

/*
 * Parses a /proc/PID/fd link: 0 and *inode for "socket:[N]", 1 for any other
 * kind of file, -1 with *cause for a socket link that is malformed.
 */
int
discover_parse_fdlink(const char *buf, size_t len, uint32_t *inode,
    char **cause)
{
	static const char prefix[] = "socket:[";
	const size_t plen = sizeof prefix - 1;
	unsigned long long v = 0;
	size_t i;

	if (len < plen || memcmp(buf, prefix, plen) != 0)
		return 1;
	if (len > DISCOVER_FDLINK_MAX || len < plen + 2 || buf[len - 1] != ']')
		goto bad;
	for (i = plen; i < len - 1; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			goto bad;
		v = v * 10 + (unsigned long long)(buf[i] - '0');
		if (v > UINT32_MAX)
			goto bad;
	}
	if (v == 0)
		goto bad;
	*inode = (uint32_t)v;
	return 0;
bad:
	xasprintf(cause, "malformed socket link \"%.*s\"",
	    (int)(len < DISCOVER_FDLINK_MAX ? len : DISCOVER_FDLINK_MAX), buf);
	return -1;
}

static int
discover_proc_cmp(const void *a, const void *b)
{
	pid_t x = ((const struct discover_proc *)a)->pid;
	pid_t y = ((const struct discover_proc *)b)->pid;

	return (x > y) - (x < y);
}

static ssize_t
discover_proc_find(const struct discover_proc *procs, size_t n, pid_t pid)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (procs[mid].pid == pid)
			return (ssize_t)mid;
		if (procs[mid].pid < pid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

#define DISCOVER_DEPTH_UNKNOWN (-2)
#define DISCOVER_DEPTH_VISITING (-3)

/*
 * Sorts procs by pid and sets each one's depth below root (root itself 0,
 * its children 1), or -1 when it is not root's descendant.  One pass over
 * the table built from /proc, instead of a ppid chain read per process.
 */
void
discover_tree_mark(struct discover_proc *procs, size_t n, pid_t root)
{
	size_t i, nstack, *stack;
	ssize_t j;
	int base;

	if (n == 0)
		return;
	qsort(procs, n, sizeof *procs, discover_proc_cmp);
	for (i = 0; i < n; i++)
		procs[i].depth = DISCOVER_DEPTH_UNKNOWN;
	stack = xcalloc(n, sizeof *stack);
	for (i = 0; i < n; i++) {
		size_t cur = i;

		nstack = 0;
		for (;;) {
			if (procs[cur].pid == root) {
				procs[cur].depth = 0;
				base = 0;
				break;
			}
			if (procs[cur].depth != DISCOVER_DEPTH_UNKNOWN) {
				/* a loop (only in forged input) is not a tree */
				base =
				    procs[cur].depth == DISCOVER_DEPTH_VISITING
				    ? -1
				    : procs[cur].depth;
				break;
			}
			procs[cur].depth = DISCOVER_DEPTH_VISITING;
			stack[nstack++] = cur;
			if (procs[cur].ppid == root) {
				base = 0;
				break;
			}
			j = procs[cur].ppid > 0
			    ? discover_proc_find(procs, n, procs[cur].ppid)
			    : -1;
			if (j < 0) {
				base = -1;
				break;
			}
			cur = (size_t)j;
		}
		while (nstack > 0) {
			cur = stack[--nstack];
			procs[cur].depth = base < 0 ? -1 : ++base;
		}
	}
	free(stack);
}

static int
discover_sock_cmp(const void *a, const void *b)
{
	const struct discover_sock *x = a, *y = b;

	if (x->inode != y->inode)
		return (x->inode > y->inode) - (x->inode < y->inode);
	return (x->port > y->port) - (x->port < y->port);
}

static struct discover_entry *
discover_entry_find(struct discover_entry *v, size_t n, uint32_t inode)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid].inode == inode)
			return &v[mid];
		if (v[mid].inode < inode)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* Logs a pass's error once, until it changes or a pass succeeds. */
static void
discover_error(struct discover *d, char *cause)
{
	if (cause == NULL) {
		free(d->last_error);
		d->last_error = NULL;
		return;
	}
	d->stats.errors++;
	if (d->last_error == NULL || strcmp(d->last_error, cause) != 0)
		log_warnx("discovery: %s", cause);
	free(d->last_error);
	d->last_error = cause;
}

/*
 * Asks the kernel, on netlink socket nl, for the TCP listeners of one family
 * on ports low..high, and appends them to socks.  buf holds
 * DISCOVER_BUF_SIZE bytes.
 */
static int
discover_dump(int nl, uint32_t seq, unsigned char *buf, int family,
    uint16_t low, uint16_t high, struct discover_socks *socks, char **cause)
{
	struct {
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
		struct nlattr nla;
		struct inet_diag_bc_op bc[4];
	} m;
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	struct iovec iov = { buf, DISCOVER_BUF_SIZE };
	struct msghdr mh = { .msg_name = &kernel,
		.msg_namelen = sizeof kernel,
		.msg_iov = &iov,
		.msg_iovlen = 1 };
	ssize_t n;
	int i, done = 0;

	memset(&m, 0, sizeof m);
	m.nlh.nlmsg_len = sizeof m;
	m.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	m.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	m.nlh.nlmsg_seq = seq;
	m.req.sdiag_family = (uint8_t)family;
	m.req.sdiag_protocol = IPPROTO_TCP;
	m.req.idiag_states = 1U << DISCOVER_TCP_LISTEN;
	/* sport >= low && sport <= high, so only the range comes back */
	m.nla.nla_len = sizeof m.nla + sizeof m.bc;
	m.nla.nla_type = INET_DIAG_REQ_BYTECODE;
	m.bc[0] = (struct inet_diag_bc_op){ INET_DIAG_BC_S_GE, 8, 20 };
	m.bc[1] = (struct inet_diag_bc_op){ 0, 0, low };
	m.bc[2] = (struct inet_diag_bc_op){ INET_DIAG_BC_S_LE, 8, 12 };
	m.bc[3] = (struct inet_diag_bc_op){ 0, 0, high };

	if (sendto(nl, &m, sizeof m, 0, (struct sockaddr *)&kernel,
		sizeof kernel) != (ssize_t)sizeof m) {
		xasprintf(cause, "sock_diag request: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < DISCOVER_RECV_MAX && !done; i++) {
		n = recvmsg(nl, &mh, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			xasprintf(cause, "sock_diag reply: %s",
			    n == 0 ? "end of file" : strerror(errno));
			return -1;
		}
		if (mh.msg_flags & MSG_TRUNC) {
			*cause = xstrdup("sock_diag reply truncated");
			return -1;
		}
		if (discover_parse_diag(buf, (size_t)n, seq, low, high, socks,
			&done, cause) != 0) {
			/* a kernel without IPv6 has no IPv6 listeners */
			if (family == AF_INET6 && socks->error == ENOENT) {
				free(*cause);
				*cause = NULL;
				return 0;
			}
			return -1;
		}
	}
	if (!done) {
		*cause = xstrdup("sock_diag dump did not end");
		return -1;
	}
	return 0;
}

/* Both families' listeners of the range, into d->socks. */
static int
discover_dump_all(struct discover *d, char **cause)
{
	int i, families[] = { AF_INET, AF_INET6 };

	d->socks.n = 0;
	for (i = 0; i < 2; i++) {
		if (++d->seq == 0)
			d->seq++;
		if (discover_dump(d->nl, d->seq, d->buf, families[i],
			d->cfg.low, d->cfg.high, &d->socks, cause) != 0)
			return -1;
	}
	return 0;
}

/*
 * Replaces the entries with the listeners of this pass, keeping what is
 * known of those seen before.  Returns how many are unresolved.
 */
static size_t
discover_merge(struct discover *d)
{
	struct discover_socks *s = &d->socks;
	struct discover_entry *v, *old;
	size_t i, n = 0, unresolved = 0;

	if (s->n > 0)
		qsort(s->v, s->n, sizeof *s->v, discover_sock_cmp);
	v = xcalloc(s->n == 0 ? 1 : s->n, sizeof *v);
	for (i = 0; i < s->n; i++) {
		const struct discover_sock *ds = &s->v[i];

		if (ds->state != DISCOVER_TCP_LISTEN || ds->inode == 0)
			continue;
		if (n > 0 && v[n - 1].inode == ds->inode)
			continue;
		old = discover_entry_find(d->v, d->n, ds->inode);
		if (old != NULL && old->port == ds->port)
			v[n] = *old;
		else {
			memset(&v[n], 0, sizeof v[n]);
			v[n].inode = ds->inode;
			v[n].port = ds->port;
			v[n].state = DISCOVER_UNRESOLVED;
		}
		if (v[n].state == DISCOVER_UNRESOLVED) {
			v[n].pid = 0;
			unresolved++;
		}
		n++;
	}
	free(d->v);
	d->v = v;
	d->n = n;
	return unresolved;
}

/* The pid a /proc entry names, or 0 when it names none. */
static pid_t
discover_dirent_pid(const char *name)
{
	long long pid;

	if (decimal_parse(name, 1, INT_MAX, &pid, NULL) != 0)
		return 0;
	return (pid_t)pid;
}

/* Reads every process's parent from /proc; NULL on failure. */
static struct discover_proc *
discover_procs_read(size_t *np, char **cause)
{
	struct discover_proc *procs = NULL;
	struct proc_stat st;
	struct dirent *de;
	size_t n = 0, cap = 0;
	char *ignored;
	DIR *dir;
	pid_t pid;

	if ((dir = opendir("/proc")) == NULL) {
		xasprintf(cause, "/proc: %s", strerror(errno));
		return NULL;
	}
	while ((de = readdir(dir)) != NULL && n < DISCOVER_PROCS_MAX) {
		if ((pid = discover_dirent_pid(de->d_name)) == 0)
			continue;
		ignored = NULL;
		if (proc_stat_read(pid, &st, &ignored) != 0) {
			free(ignored); /* gone meanwhile, or a zombie */
			continue;
		}
		if (n == cap) {
			cap = cap == 0 ? 256 : cap * 2;
			procs = xreallocarray(procs, cap, sizeof *procs);
		}
		procs[n].pid = st.pid;
		procs[n].ppid = st.ppid;
		procs[n].depth = 0;
		n++;
	}
	closedir(dir);
	*np = n;
	return procs == NULL ? xcalloc(1, sizeof *procs) : procs;
}

/*
 * Calls fn with the inode of every socket pid holds; -1 with errno when its
 * fds cannot be read.  getdents64 on the fd directory saves fdopendir's
 * extra system calls, which add up over many processes.
 */
static int
discover_fds_each(pid_t pid, void (*fn)(uint32_t inode, void *arg), void *arg)
{
	char path[64], link[DISCOVER_FDLINK_MAX + 1], *cause = NULL;
	char dents[4096] __attribute__((aligned(8)));
	struct dirent64 *de;
	uint32_t inode;
	ssize_t n, len, off;
	int dfd;

	snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
	if ((dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	while ((n = getdents64(dfd, dents, sizeof dents)) > 0) {
		for (off = 0; off < n; off += de->d_reclen) {
			de = (struct dirent64 *)(dents + off);
			if (de->d_name[0] == '.')
				continue;
			len = readlinkat(dfd, de->d_name, link, sizeof link);
			if (len <= 0)
				continue;
			if (discover_parse_fdlink(link, (size_t)len, &inode,
				&cause) != 0) {
				if (cause != NULL)
					log_debug("discovery: %s: %s", path,
					    cause);
				free(cause);
				cause = NULL;
				continue;
			}
			fn(inode, arg);
		}
	}
	close(dfd);
	return 0;
}

struct discover_offer {
	struct discover *d;
	pid_t pid;
	size_t found;
};

static void
discover_offer_cb(uint32_t inode, void *arg)
{
	struct discover_offer *o = arg;
	struct discover_entry *e;

	e = discover_entry_find(o->d->v, o->d->n, inode);
	if (e == NULL || e->state != DISCOVER_UNRESOLVED || e->pid != 0)
		return;
	/* the walk goes from the top: this is the topmost */
	e->pid = o->pid;
	o->found++;
}

/*
 * Offers the sockets of one process as owners of unresolved listeners;
 * returns how many listeners it resolved.
 */
static size_t
discover_fds_read(struct discover *d, const struct discover_proc *p)
{
	struct discover_offer o = { d, p->pid, 0 };

	if (discover_fds_each(p->pid, discover_offer_cb, &o) != 0 &&
	    errno == EACCES && !d->warned_fd_access) {
		log_warn("discovery: /proc/%d/fd (run promfork as the user of "
			 "the workers, or as root)",
		    (int)p->pid);
		d->warned_fd_access = 1;
	}
	return o.found;
}

/* Shallow first (a shared socket is its maker's), then newest first. */
static int
discover_walk_cmp(const void *a, const void *b)
{
	const struct discover_proc *x = a, *y = b;

	if (x->depth != y->depth)
		return (x->depth > y->depth) - (x->depth < y->depth);
	return (x->pid < y->pid) - (x->pid > y->pid);
}

/*
 * Maps the unresolved listeners to processes of the tree, reading the fds
 * of as few processes as it can: a new listener most often belongs to the
 * newest process, and the walk stops once every listener is placed.
 */
static int
discover_walk(struct discover *d, size_t pending, char **cause)
{
	struct discover_proc *procs;
	struct timespec t0, t1;
	size_t i, n, ntree = 0, read = 0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if ((procs = discover_procs_read(&n, cause)) == NULL)
		return -1;
	discover_tree_mark(procs, n, d->cfg.root);
	for (i = 0; i < n; i++) {
		if (procs[i].depth > 0)
			procs[ntree++] = procs[i];
	}
	qsort(procs, ntree, sizeof *procs, discover_walk_cmp);
	for (i = 0; i < ntree && pending > 0; i++) {
		size_t found = discover_fds_read(d, &procs[i]);
		pending -= found < pending ? found : pending;
		read++;
	}
	free(procs);
	for (i = 0; i < d->n; i++) {
		struct discover_entry *e = &d->v[i];
		if (e->state != DISCOVER_UNRESOLVED)
			continue;
		if (e->pid != 0) {
			e->state = DISCOVER_OWNED;
			log_debug("discovery: port %u is pid %d's", e->port,
			    (int)e->pid);
		} else {
			e->state = DISCOVER_FOREIGN;
			log_info("discovery: port %u is held by a process "
				 "outside the command's tree; not published",
			    e->port);
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	d->stats.walks++;
	d->stats.last_walk_procs = read;
	d->stats.last_walk_us =
	    (unsigned long long)((t1.tv_sec - t0.tv_sec) * 1000000LL +
		(t1.tv_nsec - t0.tv_nsec) / 1000);
	return 0;
}

/* Is the lease holder the owner itself, or its ancestor or descendant? */
static int
discover_same_worker(struct discover_entry *e, const struct lease *l)
{
	if (l->pid == e->pid)
		return 1;
	if (e->judged != l->pid) {
		e->judged = l->pid;
		e->related = proc_in_tree(e->pid, l->pid) ||
		    proc_in_tree(l->pid, e->pid);
		if (!e->related)
			log_info("discovery: pid %d listens on port %u, which "
				 "is worker %d of pid %d; not published twice",
			    (int)e->pid, e->port, l->worker, (int)l->pid);
	}
	return e->related;
}

/*
 * Turns owned listeners into leases and ends discovered leases whose
 * listener is gone.  Returns 1 when an owner had exited, so its listener
 * (inherited by a child) must be looked up again.
 */
static int
discover_apply(struct discover *d)
{
	struct registry *reg = d->reg;
	struct discover_entry *e;
	enum registry_error error;
	struct lease *l;
	size_t i, s;
	char *cause;
	int created, w, again = 0;

	memset(d->keep, 0, reg->pool.size);
	for (i = 0; i < d->n; i++) {
		e = &d->v[i];
		s = (size_t)(e->port - d->cfg.low);
		l = registry_find_worker(reg, (int)s);
		if (e->state == DISCOVER_OWNED && l != NULL &&
		    discover_same_worker(e, l))
			d->keep[s] = 1;
	}
	REGISTRY_FOREACH_SAFE (l, reg, w) {
		if (l->source == LEASE_DISCOVER && !d->keep[w])
			lease_close(l, LEASE_END_GONE);
	}
	for (i = 0; i < d->n; i++) {
		e = &d->v[i];
		s = (size_t)(e->port - d->cfg.low);
		if (e->state != DISCOVER_OWNED ||
		    registry_find_worker(reg, (int)s) != NULL)
			continue;
		cause = NULL;
		l = registry_lease_pid(reg, e->pid, NULL, LEASE_DISCOVER,
		    (int)s, &created, &error, &cause);
		if (l == NULL) {
			log_debug("discovery: port %u of pid %d: %s", e->port,
			    (int)e->pid, cause);
			if (error == REGISTRY_GONE) {
				e->state = DISCOVER_UNRESOLVED;
				e->pid = 0;
				again = 1;
			}
		} else if ((size_t)l->worker != s && !e->noted) {
			log_info("discovery: pid %d listens on port %u too; it "
				 "is published once, as worker %d",
			    (int)e->pid, e->port, l->worker);
			e->noted = 1;
		}
		free(cause);
	}
	return again;
}

/* May this pass walk /proc?  At most DISCOVER_WALKS_PER_S a second. */
static int
discover_walk_allowed(struct discover *d, const struct timespec *now)
{
	if (now->tv_sec != d->walk_second) {
		d->walk_second = now->tv_sec;
		d->walks_in_second = 0;
	}
	if (d->walks_in_second >= DISCOVER_WALKS_PER_S) {
		d->stats.walks_deferred++;
		return 0;
	}
	d->walks_in_second++;
	return 1;
}

/* One pass: dump, resolve what is new, apply.  Exposed for tests. */
int
discover_scan(struct discover *d)
{
	struct timespec t0, t1;
	char *cause = NULL;
	size_t pending;
	int rounds;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	d->last_scan = t0;
	d->stats.passes++;
	/* a second round only when an owner exited and left a listener */
	for (rounds = 0; rounds < 2; rounds++) {
		if (discover_dump_all(d, &cause) != 0)
			goto fail;
		if ((pending = discover_merge(d)) > 0 &&
		    discover_walk_allowed(d, &t0) &&
		    discover_walk(d, pending, &cause) != 0)
			goto fail;
		if (!discover_apply(d))
			break;
	}
	discover_error(d, NULL);
	d->stats.listeners = d->n;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	d->stats.last_pass_us =
	    (unsigned long long)((t1.tv_sec - t0.tv_sec) * 1000000LL +
		(t1.tv_nsec - t0.tv_nsec) / 1000);
	return 0;

fail:
	discover_error(d, cause);
	return -1;
}

static void
discover_poll_cb(evutil_socket_t fd, short events, void *arg)
{
	discover_scan(arg);
}

static void
discover_soon_cb(evutil_socket_t fd, short events, void *arg)
{
	struct discover *d = arg;

	discover_scan(d);
	/* what was destroyed since the dump began is queued: read on */
	event_add(d->ev_destroy, NULL);
}

/* A pass now, or DISCOVER_SCAN_GAP_MS after the last one: events coalesce. */
static void
discover_scan_soon(struct discover *d)
{
	struct timespec now;
	struct timeval tv;
	long long since_us, wait_us;

	if (evtimer_pending(d->ev_soon, NULL))
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	since_us = (now.tv_sec - d->last_scan.tv_sec) * 1000000LL +
	    (now.tv_nsec - d->last_scan.tv_nsec) / 1000;
	wait_us = DISCOVER_SCAN_GAP_MS * 1000LL - since_us;
	if (wait_us <= 0) {
		discover_scan(d);
		return;
	}
	tv.tv_sec = (time_t)(wait_us / 1000000);
	tv.tv_usec = (suseconds_t)(wait_us % 1000000);
	evtimer_add(d->ev_soon, &tv);
	/* The pass dumps every socket: until it has, more events tell
	 * nothing new, and reading each would cost what the gap saves. */
	if (d->ev_destroy != NULL)
		event_del(d->ev_destroy);
}

/* A socket of the range was destroyed: look now, not at the next tick. */
static void
discover_destroy_cb(evutil_socket_t fd, short events, void *arg)
{
	struct discover *d = arg;
	struct discover_socks socks = { NULL, 0, 0, 0 };
	char *cause = NULL;
	ssize_t n;
	int i, done = 0, wake = 0;

	for (i = 0; i < DISCOVER_DESTROY_READS; i++) {
		n = recv(d->nl_destroy, d->buf, DISCOVER_BUF_SIZE,
		    MSG_DONTWAIT);
		if (n == -1 && errno == EAGAIN)
			break;
		if (n <= 0) {
			wake = 1; /* ENOBUFS: notifications were lost */
			if (n == 0 || errno != ENOBUFS)
				break;
			continue;
		}
		if (discover_parse_diag(d->buf, (size_t)n, 0, d->cfg.low,
			d->cfg.high, &socks, &done, &cause) != 0) {
			log_debug("discovery: destroy notification: %s", cause);
			free(cause);
			cause = NULL;
			wake = 1;
		}
	}
	if (socks.n > 0)
		wake = 1;
	discover_socks_finish(&socks);
	if (wake)
		discover_scan_soon(d);
}

static int
discover_netlink(int flags)
{
	return socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | flags,
	    NETLINK_SOCK_DIAG);
}

/* A socket for sock_diag dumps, whose replies never hang a pass. */
static int
discover_netlink_dumps(char **cause)
{
	struct timeval rcvtimeo = { 1, 0 };
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd;

	if ((fd = discover_netlink(0)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcvtimeo,
		sizeof rcvtimeo) != 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		xasprintf(cause, "netlink sock_diag: %s", strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

/*
 * Subscribes to the kernel's socket-destroy notifications, filtered in the
 * kernel to local ports of the range.  Optional: without them (an old
 * kernel, a sandbox) the poll alone notices a closed listener.
 */
static int
discover_destroy_open(struct discover *d)
{
	struct sock_filter code[] = {
		/* the local port, after nlmsghdr and 4 bytes of inet_diag_msg */
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, NLMSG_HDRLEN + 4),
		BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, d->cfg.low, 0, 2),
		BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, d->cfg.high, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, 0xffffffff),
		BPF_STMT(BPF_RET | BPF_K, 0),
	};
	struct sock_fprog prog = { sizeof code / sizeof code[0], code };
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int fd,
	    groups[] = { SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY };
	size_t i;

	if ((fd = discover_netlink(SOCK_NONBLOCK)) == -1)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) !=
		0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		goto fail;
	for (i = 0; i < sizeof groups / sizeof groups[0]; i++) {
		if (setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP,
			&groups[i], sizeof groups[i]) != 0)
			goto fail;
	}
	d->nl_destroy = fd;
	d->ev_destroy = event_new(d->base, fd, EV_READ | EV_PERSIST,
	    discover_destroy_cb, d);
	event_add(d->ev_destroy, NULL);
	return 0;
fail:
	log_debug("discovery: no socket-destroy notifications (%s); polling "
		  "only",
	    strerror(errno));
	close(fd);
	return -1;
}

/*
 * One dump of the TCP listeners on ports low..high, both families, for
 * --check and for collect's check of who a scrape would reach: appends
 * them to socks, with their owner's uid.
 */
int
discover_listeners(uint16_t low, uint16_t high, struct discover_socks *socks,
    char **cause)
{
	unsigned char *buf;
	int nl, rc = 0;

	if ((nl = discover_netlink_dumps(cause)) == -1)
		return -1;
	buf = xmalloc(DISCOVER_BUF_SIZE);
	if (discover_dump(nl, 1, buf, AF_INET, low, high, socks, cause) != 0 ||
	    discover_dump(nl, 2, buf, AF_INET6, low, high, socks, cause) != 0)
		rc = -1;
	free(buf);
	close(nl);
	return rc;
}

struct discover_holder {
	const struct discover_socks *socks;
	pid_t *pids;
	pid_t pid;
};

static void
discover_holder_cb(uint32_t inode, void *arg)
{
	struct discover_holder *h = arg;
	size_t i;

	for (i = 0; i < h->socks->n; i++) {
		if (h->socks->v[i].inode == inode && h->pids[i] == 0)
			h->pids[i] = h->pid;
	}
}

/*
 * Finds the process holding each socket of socks, where this user may read
 * /proc/PID/fd: pids[i] is socks->v[i]'s, 0 when none is visible.
 */
void
discover_holders(const struct discover_socks *socks, pid_t *pids)
{
	struct discover_holder h = { socks, pids, 0 };
	struct dirent *de;
	DIR *dir;

	memset(pids, 0, socks->n * sizeof *pids);
	if (socks->n == 0 || (dir = opendir("/proc")) == NULL)
		return;
	while ((de = readdir(dir)) != NULL) {
		if ((h.pid = discover_dirent_pid(de->d_name)) != 0)
			(void)discover_fds_each(h.pid, discover_holder_cb, &h);
	}
	closedir(dir);
}

struct discover_mine {
	const struct discover_socks *socks;
	uint16_t port;
	unsigned char *held;
};

static void
discover_mine_cb(uint32_t inode, void *arg)
{
	struct discover_mine *m = arg;
	size_t i;

	for (i = 0; i < m->socks->n; i++) {
		if (m->socks->v[i].inode == inode &&
		    m->socks->v[i].port == m->port)
			m->held[i] = 1;
	}
}

/*
 * Whether pid holds every listener of socks on port (a scrape of it can
 * reach no one else): 0 when it does or none listens; else -1 with
 * *holder (0: not visible to us) and *uid of one that is not pid's.
 * When pid's fds cannot be read (promfork runs as another user, without
 * CAP_SYS_PTRACE), a listener of pid's own user is taken as its.  The
 * holders of foreign listeners are looked up once, in *holders (NULL
 * until then; the caller frees it), with one walk of /proc.
 */
int
discover_port_owned(const struct discover_socks *socks, uint16_t port,
    pid_t pid, pid_t **holders, pid_t *holder, uid_t *uid)
{
	unsigned char *held = xcalloc(socks->n + 1, 1);
	struct discover_mine m = { socks, port, held };
	char path[64];
	struct stat st;
	int rc = 0, fds_read;
	size_t i;

	fds_read = discover_fds_each(pid, discover_mine_cb, &m) == 0;
	snprintf(path, sizeof path, "/proc/%d", (int)pid);
	if (!fds_read && stat(path, &st) == 0) {
		for (i = 0; i < socks->n; i++)
			held[i] = socks->v[i].uid == st.st_uid;
	}
	for (i = 0; i < socks->n && rc == 0; i++) {
		if (socks->v[i].port != port ||
		    socks->v[i].state != DISCOVER_TCP_LISTEN || held[i])
			continue;
		if (*holders == NULL) {
			*holders = xcalloc(socks->n + 1, sizeof **holders);
			discover_holders(socks, *holders);
		}
		*holder = (*holders)[i];
		*uid = socks->v[i].uid;
		rc = -1;
	}
	free(held);
	return rc;
}

struct discover *
discover_create(struct event_base *base, struct registry *reg,
    const struct discover_config *cfg, char **cause)
{
	struct discover *d;
	struct timeval tv;
	char *inner = NULL;

	if (cfg->interval_ms <= 0 || cfg->low > cfg->high ||
	    (size_t)(cfg->high - cfg->low) + 1 != reg->pool.size ||
	    cfg->low != reg->pool.low) {
		*cause = xstrdup("discovery: configuration does not match the "
				 "port pool");
		return NULL;
	}
	d = xcalloc(1, sizeof *d);
	d->base = base;
	d->reg = reg;
	d->cfg = *cfg;
	d->nl_destroy = -1;
	if ((d->nl = discover_netlink_dumps(&inner)) == -1) {
		xasprintf(cause, "--discover needs %s", inner);
		free(inner);
		discover_free(d);
		return NULL;
	}
	d->buf = xmalloc(DISCOVER_BUF_SIZE);
	d->keep = xcalloc(reg->pool.size, 1);
	discover_destroy_open(d);
	tv.tv_sec = cfg->interval_ms / 1000;
	tv.tv_usec = (cfg->interval_ms % 1000) * 1000;
	d->ev_poll = event_new(base, -1, EV_PERSIST, discover_poll_cb, d);
	event_add(d->ev_poll, &tv);
	d->ev_soon = evtimer_new(base, discover_soon_cb, d);
	return d;
}

/*
 * --discover: discovery over the options' port range, below promfork; the
 * range goes into the environment, so that the app picks its ports from
 * it.  Exits on failure.
 */
struct discover *
discover_setup(struct event_base *base, struct registry *reg,
    const struct options *o)
{
	struct discover_config cfg;
	struct discover *d;
	char *cause = NULL, *range;

	memset(&cfg, 0, sizeof cfg);
	cfg.root = getpid();
	cfg.low = o->port_low;
	cfg.high = o->port_high;
	cfg.interval_ms = o->discover_interval_ms;
	if ((d = discover_create(base, reg, &cfg, &cause)) == NULL)
		fatalx("%s", cause);
	xasprintf(&range, "%u-%u", cfg.low, cfg.high);
	setenv("PROMFORK_PORT_RANGE", range, 1);
	free(range);
	return d;
}

const struct discover_stats *
discover_stats(const struct discover *d)
{
	return &d->stats;
}

void
discover_free(struct discover *d)
{
	if (d == NULL)
		return;
	if (d->ev_poll != NULL)
		event_free(d->ev_poll);
	if (d->ev_soon != NULL)
		event_free(d->ev_soon);
	if (d->ev_destroy != NULL)
		event_free(d->ev_destroy);
	if (d->nl_destroy != -1)
		close(d->nl_destroy);
	if (d->nl != -1)
		close(d->nl);
	discover_socks_finish(&d->socks);
	free(d->v);
	free(d->keep);
	free(d->buf);
	free(d->last_error);
	free(d);
}
