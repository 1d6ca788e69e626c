/*
 * The wrapped command: started as promfork's child with a clean signal
 * state and PROMFORK_SOCKET in its environment; its exit status becomes
 * promfork's.
 */
#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

/* Runs in the child between fork and exec: only async-signal-safe calls. */
static void
child_reset_signals(void)
{
	struct sigaction sa;
	sigset_t none;
	int sig;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_DFL;
	for (sig = 1; sig < NSIG; sig++)
		(void)sigaction(sig, &sa, NULL);
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * promfork's environment with the NAME=VALUE strings of env put in, built
 * before fork: the child of a process with threads (the sd file writer)
 * must not allocate.  The strings are shared, only the array is new.
 */
static char **
child_environ(char *const *env)
{
	extern char **environ;
	size_t n = 0, k = 0, i, j, len;
	char **out;

	while (environ[n] != NULL)
		n++;
	while (env != NULL && env[k] != NULL)
		k++;
	out = xcalloc(n + k + 1, sizeof *out);
	for (i = 0, n = 0; environ[i] != NULL; i++) {
		for (j = 0; j < k; j++) {
			len = strcspn(env[j], "=") + 1;
			if (strncmp(environ[i], env[j], len) == 0)
				break;
		}
		if (j == k) /* not replaced */
			out[n++] = environ[i];
	}
	for (j = 0; j < k; j++)
		out[n++] = env[j];
	return out;
}

/*
 * Forks and runs argv with the NAME=VALUE strings of env (NULL-terminated,
 * may be NULL) added to its environment, as cred's user when cred is not
 * NULL; deathsig, when not 0, is sent to it should promfork die.  Exit
 * 127/126 when argv[0] cannot be run, as a shell does; 126 too when it
 * cannot become cred's user, so it never runs as promfork's.
 */
pid_t
child_fork(char **argv, char *const *env, int deathsig,
    const struct privsep_cred *cred, char **cause)
{
	pid_t pid, parent = getpid();
	char **envp = child_environ(env);

	pid = fork();
	if (pid == -1) {
		xasprintf(cause, "fork: %s", strerror(errno));
		free(envp);
		return -1;
	}
	if (pid == 0) {
		child_reset_signals();
		proc_nofile_restore();
		if (cred != NULL && privsep_apply(cred) != 0) {
			dprintf(2,
			    "promfork: error: cannot become user %u: %s\n",
			    (unsigned int)cred->uid, strerror(errno));
			_exit(126);
		}
		/* After the user changes, which clears it.  The parent may
		 * have died before prctl: then act as if. */
		if (deathsig != 0 &&
		    (prctl(PR_SET_PDEATHSIG, deathsig) != 0 ||
			getppid() != parent))
			_exit(128 + deathsig);
		execvpe(argv[0], argv, envp);
		dprintf(2, "promfork: error: cannot run %s: %s\n", argv[0],
		    strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	free(envp);
	return pid;
}

int
child_start(struct child *c, char **argv, const char *socket_path,
    const struct privsep_cred *cred, char **cause)
{
	char *env[2] = { NULL, NULL };
	pid_t pid;

	memset(c, 0, sizeof *c);
	if (socket_path != NULL)
		xasprintf(&env[0], "%s=%s", PROMFORK_SOCKET_ENV, socket_path);
	pid = child_fork(argv, env, 0, cred, cause);
	free(env[0]);
	if (pid == -1)
		return -1;
	c->pid = pid;
	c->name = argv[0];
	if (cred != NULL)
		log_info("started %s as pid %d, user %s", argv[0], (int)pid,
		    cred->name);
	else
		log_info("started %s as pid %d", argv[0], (int)pid);
	return 0;
}

/* The status a shell would report: the exit code, or 128 + signal. */
int
child_wait_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 1;
}

/*
 * SIGCHLD: reaps every process that has exited (the command, workers,
 * orphans re-parented to promfork, the subreaper), ends the lease of each
 * and hands each to reaped (when not NULL), for a supervisor above.  The
 * hook keeps the flow one way: child.c is a source and calls no module
 * that calls it.
 */
void
child_reap(struct child *c, struct registry *reg, child_reaped_fn reaped,
    void *arg)
{
	struct lease *l;
	int wstatus;
	pid_t pid;

	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		c->reaped++;
		if (c->pid > 0 && pid == c->pid) {
			c->exited = 1;
			c->status = child_wait_status(wstatus);
			log_info("%s (pid %d) exited with status %d", c->name,
			    (int)pid, c->status);
		} else
			log_debug("reaped pid %d", (int)pid);
		if ((l = registry_find_pid(reg, pid)) != NULL)
			lease_close(l, LEASE_END_EXIT);
		if (reaped != NULL)
			reaped(pid, wstatus, arg);
	}
	registry_check(reg);
}

void
child_signal(struct child *c, int sig)
{
	if (c->pid <= 0 || c->exited)
		return;
	log_debug("forwarding signal %d to pid %d", sig, (int)c->pid);
	if (kill(c->pid, sig) != 0 && errno != ESRCH)
		log_warn("kill %d", (int)c->pid);
}
