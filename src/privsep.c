/*
 * Privilege separation: the wrapped command runs as the app's own user and
 * groups (--user, --group), promfork as another user that alone may write
 * the sd directory (the user systemd starts it as, or --privsep-user when
 * started as root).  promfork keeps only the capabilities it still needs:
 * CAP_SETUID and CAP_SETGID while it may start commands, CAP_KILL to pass
 * signals on to them.  A compromised app then cannot write any sd file,
 * signal or trace promfork, or gain its capabilities.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <linux/capability.h>

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

static int
privsep_capget(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3,
		0 };

	memset(data, 0, 2 * sizeof *data);
	return (int)syscall(SYS_capget, &hdr, data);
}

static int
privsep_capset(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3,
		0 };

	return (int)syscall(SYS_capset, &hdr, data);
}

static int
privsep_cap_has(const struct __user_cap_data_struct data[2], int cap)
{
	return (data[cap / 32].permitted & (1U << (cap % 32))) != 0;
}

static void
privsep_cap_add(struct __user_cap_data_struct data[2], int cap)
{
	data[cap / 32].permitted |= 1U << (cap % 32);
	data[cap / 32].effective |= 1U << (cap % 32);
}

/* True when this process may change its user and groups. */
int
privsep_can_setid(void)
{
	struct __user_cap_data_struct data[2];

	if (privsep_capget(data) != 0)
		return geteuid() == 0;
	return privsep_cap_has(data, CAP_SETUID) &&
	    privsep_cap_has(data, CAP_SETGID);
}

/* True when this process may read the fds of other users' processes. */
int
privsep_can_trace(void)
{
	struct __user_cap_data_struct data[2];

	return privsep_capget(data) == 0 &&
	    privsep_cap_has(data, CAP_SYS_PTRACE);
}

/* A user or group by name or number; -1 when there is no such one. */
static int
privsep_id(const char *s, int group, unsigned int *id, char **name)
{
	struct passwd *pw = NULL;
	struct group *gr = NULL;
	long long v;

	if (*s >= '0' && *s <= '9') {
		if (decimal_parse(s, 0, UINT_MAX - 1, &v, NULL) != 0)
			return -1;
		if (group)
			gr = getgrgid((gid_t)v);
		else
			pw = getpwuid((uid_t)v);
	} else if (group)
		gr = getgrnam(s);
	else
		pw = getpwnam(s);
	if (group && gr != NULL) {
		*id = gr->gr_gid;
		*name = xstrdup(gr->gr_name);
		return 0;
	}
	if (!group && pw != NULL) {
		*id = pw->pw_uid;
		*name = xstrdup(pw->pw_name);
		return 0;
	}
	return -1;
}

/*
 * Fills cred with user's uid, its primary group (or group, when given) and
 * its supplementary groups from the group database, leaving out exclude
 * (promfork's own group): the app must share nothing with promfork.
 * An unknown user is an error, never root by default.
 */
int
privsep_lookup(struct privsep_cred *cred, const char *user, const char *group,
    gid_t exclude, char **cause)
{
	gid_t groups[PRIVSEP_GROUPS_MAX];
	struct passwd *pw;
	unsigned int id;
	char *gname = NULL;
	int n = PRIVSEP_GROUPS_MAX, i;

	memset(cred, 0, sizeof *cred);
	if (privsep_id(user, 0, &id, &cred->name) != 0) {
		xasprintf(cause,
		    "--user \"%s\" is not a user of this system: "
		    "refusing to run the command as anyone else",
		    user);
		return -1;
	}
	cred->uid = (uid_t)id;
	if ((pw = getpwuid(cred->uid)) == NULL) {
		xasprintf(cause,
		    "--user \"%s\" has no entry in the user "
		    "database",
		    user);
		goto fail;
	}
	cred->gid = pw->pw_gid;
	if (group != NULL) {
		if (privsep_id(group, 1, &id, &gname) != 0) {
			xasprintf(cause,
			    "--group \"%s\" is not a group of this system",
			    group);
			goto fail;
		}
		free(gname);
		cred->gid = (gid_t)id;
	}
	if (getgrouplist(pw->pw_name, cred->gid, groups, &n) == -1) {
		xasprintf(cause, "--user \"%s\" is in more than %d groups",
		    user, PRIVSEP_GROUPS_MAX);
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if (groups[i] != exclude)
			cred->groups[cred->ngroups++] = groups[i];
	}
	return 0;

fail:
	privsep_cred_clear(cred);
	return -1;
}

void
privsep_cred_clear(struct privsep_cred *cred)
{
	free(cred->name);
	memset(cred, 0, sizeof *cred);
}

/*
 * Becomes cred's user for good: groups, group, user, then no capability
 * left in any set, so that the exec'd command has none of promfork's.
 * Runs in a child between fork and exec: system calls only.
 */
int
privsep_apply(const struct privsep_cred *cred)
{
	struct __user_cap_data_struct none[2];

	if (setgroups((size_t)cred->ngroups, cred->groups) != 0 ||
	    setresgid(cred->gid, cred->gid, cred->gid) != 0 ||
	    setresuid(cred->uid, cred->uid, cred->uid) != 0)
		return -1;
	/* From a user with capabilities (not root) setuid keeps them. */
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL)
		return -1;
	memset(none, 0, sizeof none);
	if (privsep_capset(none) != 0)
		return -1;
	/* Prove it: none of promfork's ids may come back. */
	if (setresuid(0, 0, 0) == 0 || getuid() != cred->uid ||
	    getegid() != cred->gid) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/*
 * Keeps exactly these capabilities (permitted and effective) and drops
 * every other; a capability no longer permitted cannot come back.
 */
int
privsep_keep(int setid, int kill, char **cause)
{
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof data);
	if (setid) {
		privsep_cap_add(data, CAP_SETUID);
		privsep_cap_add(data, CAP_SETGID);
	}
	if (kill)
		privsep_cap_add(data, CAP_KILL);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
	    errno != EINVAL) {
		xasprintf(cause, "cannot clear ambient capabilities: %s",
		    strerror(errno));
		return -1;
	}
	if (privsep_capset(data) != 0) {
		xasprintf(cause, "capset: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/*
 * Started as root: becomes self's user and group (no supplementary
 * groups), keeping CAP_SETUID, CAP_SETGID and CAP_KILL for the commands it
 * starts.
 */
int
privsep_drop(const struct privsep_cred *self, char **cause)
{
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 ||
	    setgroups(0, NULL) != 0 ||
	    setresgid(self->gid, self->gid, self->gid) != 0 ||
	    setresuid(self->uid, self->uid, self->uid) != 0) {
		xasprintf(cause, "cannot become user %s: %s", self->name,
		    strerror(errno));
		return -1;
	}
	(void)prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	return privsep_keep(1, 1, cause);
}

/*
 * Capabilities belong to each thread: one that only writes files drops
 * all of its own.  Root keeps its, which its files may need.
 */
void
privsep_thread_drop(void)
{
	char *cause = NULL;

	if (geteuid() != 0 && privsep_keep(0, 0, &cause) != 0) {
		log_warnx("%s", cause);
		free(cause);
	}
}

/*
 * Started as root with --privsep-user: the sockets are bound, now become
 * that user before any file is written, so that the sd file and its
 * directory are that user's alone.
 */
static int
privsep_self(const char *user, const char *socket_path, const char *socket_dir,
    char **cause)
{
	struct privsep_cred self;
	int rc = -1;

	if (geteuid() != 0) {
		*cause = xstrdup("--privsep-user needs promfork started as "
				 "root");
		return -1;
	}
	if (privsep_lookup(&self, user, NULL, (gid_t)-1, cause) != 0)
		return -1;
	if (self.uid == 0) {
		*cause = xstrdup("--privsep-user must not be root");
		goto out;
	}
	/* So that promfork can remove them at exit; the group stays, as it
	 * is how the command reaches the socket. */
	if (chown(socket_path, self.uid, (gid_t)-1) != 0 ||
	    (socket_dir != NULL && chown(socket_dir, self.uid, (gid_t)-1) != 0))
		log_warn("chown %s", socket_path);
	if (privsep_drop(&self, cause) != 0)
		goto out;
	log_info("running as user %s", self.name);
	rc = 0;
out:
	privsep_cred_clear(&self);
	return rc;
}

/*
 * The options of privilege separation, once the sockets are bound: becomes
 * --privsep-user, then looks up --user into app.  Returns 1 when the
 * command is to run as app, 0 without --user, -1 when the setup is unsafe
 * or impossible (*cause says why).
 */
int
privsep_setup(struct privsep_cred *app, const struct options *o,
    const char *socket_path, const char *socket_dir, char **cause)
{
	const char *why = NULL;

	if (o->privsep_user != NULL &&
	    privsep_self(o->privsep_user, socket_path, socket_dir, cause) != 0)
		return -1;
	if (o->user == NULL)
		return 0;
	if (privsep_lookup(app, o->user, o->group, getegid(), cause) != 0)
		return -1;
	if (app->uid == 0)
		why = "is root";
	else if (app->uid == geteuid())
		why = "is promfork's own user";
	else if (app->gid == getegid())
		why = "would run with promfork's own group";
	if (why != NULL) {
		xasprintf(cause,
		    "--user %s %s: the command could then write the sd "
		    "file; give it a user and group of its own",
		    o->user, why);
		goto fail;
	}
	if (!privsep_can_setid()) {
		*cause = xstrdup("--user: promfork cannot change users; start "
				 "it as root (with --privsep-user) or with the "
				 "capabilities CAP_SETUID, CAP_SETGID and "
				 "CAP_KILL");
		goto fail;
	}
	if (o->discover && !privsep_can_trace()) {
		*cause = xstrdup("--discover with --user: promfork cannot read "
				 "the descriptors of another user's processes "
				 "without CAP_SYS_PTRACE; drop --user or grant "
				 "it");
		goto fail;
	}
	if (geteuid() == 0)
		log_warnx("promfork keeps running as root: give "
			  "--privsep-user to run it as a user of its own");
	return 1;

fail:
	privsep_cred_clear(app);
	return -1;
}
