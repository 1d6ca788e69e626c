/*
 * What promfork reads of other processes from /proc: parent, CPU time,
 * resident memory and the start time that tells a reused pid from the
 * process that had it before.
 */
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

#define PROC_STAT_MAX 4096
#define PROC_TREE_DEPTH 4096
#define PROC_TREE_WALKS 3 /* again when an ancestor exits meanwhile */

static int
proc_field_ull(const char **p, const char *end, unsigned long long *v)
{
	const char *s = *p;
	unsigned long long n = 0;
	int neg = 0;

	while (s < end && *s == ' ')
		s++;
	if (s < end && *s == '-') {
		neg = 1;
		s++;
	}
	if (s >= end || *s < '0' || *s > '9')
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (n > (ULLONG_MAX - 9) / 10)
			return -1;
		n = n * 10 + (unsigned long long)(*s - '0');
	}
	if (s < end && *s != ' ' && *s != '\n')
		return -1;
	*v = neg ? (unsigned long long)-(long long)n : n;
	*p = s;
	return 0;
}

/*
 * Parses the text of /proc/PID/stat.  The command name may hold spaces and
 * parentheses, so fields are counted from its last ')'.
 */
int
proc_stat_parse(const char *buf, size_t len, struct proc_stat *st, char **cause)
{
	const char *p, *end = buf + len, *close = NULL;
	unsigned long long v, fields[25];
	int i;

	if (len == 0 || len > PROC_STAT_MAX || memchr(buf, '\0', len) != NULL)
		goto bad;
	for (p = buf; p < end; p++) {
		if (*p == ')')
			close = p;
	}
	if (close == NULL || close + 3 >= end || close[1] != ' ')
		goto bad;
	p = buf;
	if (proc_field_ull(&p, close, &v) != 0 || v == 0 || v > INT_MAX ||
	    *p != ' ' || p[1] != '(')
		goto bad;
	st->pid = (pid_t)v;
	st->state = close[2];
	p = close + 3;
	/* fields[4..24] after the state, numbered as in proc(5) */
	for (i = 4; i <= 24; i++) {
		if (proc_field_ull(&p, end, &fields[i]) != 0)
			goto bad;
	}
	if (fields[4] > INT_MAX)
		goto bad;
	st->ppid = (pid_t)fields[4];
	st->utime = fields[14];
	st->stime = fields[15];
	st->starttime = fields[22];
	st->rss_pages = (long long)fields[24];
	return 0;

bad:
	*cause = xstrdup("malformed /proc stat line");
	return -1;
}

/* True for the errors that say this process is out of descriptors. */
int
proc_out_of_fds(int err)
{
	return err == EMFILE || err == ENFILE;
}

/* Why path could not be read, with errno left as err for the caller. */
static void
proc_error(char **cause, const char *path, int err)
{
	if (proc_out_of_fds(err))
		xasprintf(cause, "out of file descriptors (%s: %s)", path,
		    strerror(err));
	else
		xasprintf(cause, "%s: %s", path, strerror(err));
	errno = err;
}

int
proc_stat_read(pid_t pid, struct proc_stat *st, char **cause)
{
	char path[64], buf[PROC_STAT_MAX + 1];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		/* Only a missing entry means the process is gone. */
		if (errno == ENOENT || errno == ESRCH)
			xasprintf(cause, "no process %d", (int)pid);
		else
			proc_error(cause, path, errno);
		return -1;
	}
	n = read(fd, buf, sizeof buf);
	if (n == -1)
		proc_error(cause, path, errno);
	close(fd);
	if (n == -1)
		return -1;
	if (n == 0 || n > PROC_STAT_MAX) {
		xasprintf(cause, "cannot read %s", path);
		errno = EIO;
		return -1;
	}
	if (proc_stat_parse(buf, (size_t)n, st, cause) != 0)
		return -1;
	if (st->state == 'Z' || st->state == 'X') {
		xasprintf(cause, "process %d has exited", (int)pid);
		return -1;
	}
	return 0;
}

/*
 * True when pid is a running child of this process.  Its pid cannot be
 * reused before we reap it, so its parent is known without reading /proc.
 */
static int
proc_is_own_child(pid_t pid)
{
	siginfo_t si;

	memset(&si, 0, sizeof si);
	return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) ==
	    0 &&
	    si.si_pid == 0;
}

/*
 * True when pid is root or one of root's descendants.  An ancestor that
 * exits while we walk leaves its children to a subreaper: the walk starts
 * again from pid, a few times at most, and finds their new parent.
 */
int
proc_in_tree(pid_t pid, pid_t root)
{
	struct proc_stat st;
	char *cause = NULL;
	int depth, walks, vanished;
	pid_t p;

	for (walks = 0; walks < PROC_TREE_WALKS; walks++) {
		vanished = 0;
		p = pid;
		for (depth = 0; depth < PROC_TREE_DEPTH && p > 1; depth++) {
			if (p == root)
				return 1;
			if (proc_is_own_child(p)) {
				p = getpid();
				continue;
			}
			if (proc_stat_read(p, &st, &cause) != 0) {
				free(cause);
				cause = NULL;
				vanished = depth > 0; /* an ancestor, not pid */
				break;
			}
			p = st.ppid;
		}
		if (p == root)
			return 1;
		if (!vanished)
			return 0;
	}
	return 0;
}

int
proc_pidfd_open(pid_t pid)
{
#ifdef SYS_pidfd_open
	return (int)syscall(SYS_pidfd_open, pid, 0);
#else
	errno = ENOSYS;
	return -1;
#endif
}

int
proc_exited(int pidfd)
{
	struct pollfd pfd = { pidfd, POLLIN, 0 };

	return poll(&pfd, 1, 0) == 1;
}

/*
 * Holds pid by a pidfd, then reads its stat: while the pidfd shows it
 * running, that stat is its own and not that of a process that reused the
 * pid.  Where pidfd_open is unavailable (ENOSYS, EPERM) ref->pidfd is -1
 * and the caller must check the start time again later.
 */
int
proc_ref_init(pid_t pid, struct proc_ref *ref, char **cause)
{
	int err;

	ref->pid = pid;
	ref->pidfd = proc_pidfd_open(pid);
	if (ref->pidfd == -1 && errno == ESRCH) {
		xasprintf(cause, "no process %d", (int)pid);
		return -1;
	}
	if (ref->pidfd == -1 && proc_out_of_fds(errno)) {
		proc_error(cause, "pidfd_open", errno);
		return -1;
	}
	if (ref->pidfd == -1 && errno != ENOSYS && errno != EPERM)
		log_warn("pidfd_open %d, falling back to polling", (int)pid);
	if (proc_stat_read(pid, &ref->st, cause) != 0)
		goto fail;
	if (ref->pidfd != -1 && proc_exited(ref->pidfd)) {
		xasprintf(cause, "process %d has exited", (int)pid);
		errno = ESRCH;
		goto fail;
	}
	return 0;

fail:
	err = errno;
	proc_ref_finish(ref);
	errno = err;
	return -1;
}

void
proc_ref_finish(struct proc_ref *ref)
{
	if (ref->pidfd != -1)
		close(ref->pidfd);
	ref->pidfd = -1;
}

/* The limit on open files promfork found at start, for its children. */
static struct rlimit proc_nofile_start;
static int proc_nofile_raised;

/*
 * Raises the soft limit on open files to the hard one: every connection,
 * lease and scrape holds descriptors, and running out of them must take a
 * flood, not a busy day.  Returns the limit now in force.
 */
unsigned long long
proc_nofile_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	proc_nofile_start = rl;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			proc_nofile_raised = 1;
		else {
			log_warn("cannot raise the limit on open files to %llu",
			    (unsigned long long)rl.rlim_max);
			rl.rlim_cur = proc_nofile_start.rlim_cur;
		}
	}
	return (unsigned long long)rl.rlim_cur;
}

/*
 * In a child before exec: the command gets the limit promfork was given
 * (programs that use select(2) need fds below 1024).
 */
void
proc_nofile_restore(void)
{
	if (proc_nofile_raised)
		(void)setrlimit(RLIMIT_NOFILE, &proc_nofile_start);
}

#define PROC_STATUS_MAX (64 * 1024)

/* A decimal id ending at white space or the end of the line. */
static int
proc_status_num(const char **p, const char *end, unsigned int *id)
{
	const char *s = *p;
	unsigned long long v = 0;

	if (s >= end || *s < '0' || *s > '9')
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		v = v * 10 + (unsigned long long)(*s - '0');
		if (v >= UINT_MAX)
			return -1;
	}
	if (s < end && *s != '\t' && *s != ' ')
		return -1;
	*id = (unsigned int)v;
	*p = s;
	return 0;
}

/* The first number of the line "Name:\tN ..." in buf, or -1. */
static int
proc_status_id(const char *buf, size_t len, const char *name, unsigned int *id)
{
	size_t nlen = strlen(name);
	const char *p = buf, *end = buf + len, *nl;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if ((size_t)(nl - p) > nlen && memcmp(p, name, nlen) == 0 &&
		    p[nlen] == ':') {
			p += nlen + 1;
			while (p < nl && *p == '\t')
				p++;
			return proc_status_num(&p, nl, id);
		}
		p = nl + 1;
	}
	return -1;
}

/*
 * Parses the real uid, gid and the supplementary groups out of the text of
 * /proc/PID/status.  More groups than fit are an error: a group left out
 * could be the one that matters.
 */
int
proc_creds_parse(const char *buf, size_t len, struct proc_creds *pc,
    char **cause)
{
	const char *p, *end = buf + len, *nl;
	unsigned int id;

	memset(pc, 0, sizeof *pc);
	if (len == 0 || len > PROC_STATUS_MAX || memchr(buf, '\0', len) != NULL)
		goto bad;
	if (proc_status_id(buf, len, "Uid", &id) != 0)
		goto bad;
	pc->uid = (uid_t)id;
	if (proc_status_id(buf, len, "Gid", &id) != 0)
		goto bad;
	pc->gid = (gid_t)id;
	for (p = buf; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if ((size_t)(nl - p) < 7 || memcmp(p, "Groups:", 7) != 0)
			continue;
		for (p += 7; p < nl;) {
			while (p < nl && (*p == '\t' || *p == ' '))
				p++;
			if (p == nl)
				break;
			if (pc->ngroups == PROC_GROUPS_MAX ||
			    proc_status_num(&p, nl, &id) != 0)
				goto bad;
			pc->groups[pc->ngroups++] = (gid_t)id;
		}
		return 0;
	}
bad:
	*cause = xstrdup("malformed /proc status");
	return -1;
}

int
proc_creds_read(pid_t pid, struct proc_creds *pc, char **cause)
{
	char path[64], *buf;
	ssize_t n;
	size_t len = 0;
	int fd, rc;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		proc_error(cause, path, errno);
		return -1;
	}
	buf = xmalloc(PROC_STATUS_MAX + 1);
	while (len < PROC_STATUS_MAX + 1 &&
	    (n = read(fd, buf + len, PROC_STATUS_MAX + 1 - len)) > 0)
		len += (size_t)n;
	close(fd);
	rc = proc_creds_parse(buf, len, pc, cause);
	free(buf);
	return rc;
}

/*
 * This boot's id (/proc/sys/kernel/random/boot_id), read once: pids and
 * start times mean nothing across a reboot.  "" when it cannot be read.
 */
const char *
proc_boot_id(void)
{
	static char id[PROC_BOOT_ID_LEN + 1];
	static int done;
	ssize_t n = 0;
	int fd;

	if (done)
		return id;
	if ((fd = open("/proc/sys/kernel/random/boot_id",
		 O_RDONLY | O_CLOEXEC)) != -1) {
		n = read(fd, id, PROC_BOOT_ID_LEN);
		close(fd);
	}
	id[n == PROC_BOOT_ID_LEN ? PROC_BOOT_ID_LEN : 0] = '\0';
	done = 1;
	return id;
}
