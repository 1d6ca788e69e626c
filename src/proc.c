/*
 * What promfork reads of other processes from /proc: parent, CPU time,
 * resident memory and the start time that tells a reused pid from the
 * process that had it before.
 */
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

int
proc_stat_read(pid_t pid, struct proc_stat *st, char **cause)
{
	char path[64], buf[PROC_STAT_MAX + 1];
	ssize_t n;
	int fd;

	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		xasprintf(cause, "no process %d", (int)pid);
		return -1;
	}
	n = read(fd, buf, sizeof buf);
	close(fd);
	if (n <= 0 || n > PROC_STAT_MAX) {
		xasprintf(cause, "cannot read %s", path);
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

/* True when pid is root or one of root's descendants. */
int
proc_in_tree(pid_t pid, pid_t root)
{
	struct proc_stat st;
	char *cause = NULL;
	int depth;

	for (depth = 0; depth < PROC_TREE_DEPTH && pid > 1; depth++) {
		if (pid == root)
			return 1;
		if (proc_is_own_child(pid)) {
			pid = getpid();
			continue;
		}
		if (proc_stat_read(pid, &st, &cause) != 0) {
			free(cause);
			return 0;
		}
		pid = st.ppid;
	}
	return pid == root;
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
	ref->pid = pid;
	ref->pidfd = proc_pidfd_open(pid);
	if (ref->pidfd == -1 && errno == ESRCH) {
		xasprintf(cause, "no process %d", (int)pid);
		return -1;
	}
	if (ref->pidfd == -1 && errno != ENOSYS && errno != EPERM)
		log_warn("pidfd_open %d, falling back to polling", (int)pid);
	if (proc_stat_read(pid, &ref->st, cause) != 0)
		goto fail;
	if (ref->pidfd != -1 && proc_exited(ref->pidfd)) {
		xasprintf(cause, "process %d has exited", (int)pid);
		goto fail;
	}
	return 0;

fail:
	proc_ref_finish(ref);
	return -1;
}

void
proc_ref_finish(struct proc_ref *ref)
{
	if (ref->pidfd != -1)
		close(ref->pidfd);
	ref->pidfd = -1;
}
