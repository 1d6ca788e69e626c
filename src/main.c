/*
 * Wiring only: options -> checks -> modules -> event loop -> exit status.
 */
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

static const int forwarded_signals[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT,
	SIGUSR1, SIGUSR2, SIGTTIN, SIGTTOU, SIGWINCH };
#define NFORWARDED (sizeof forwarded_signals / sizeof forwarded_signals[0])

struct promfork {
	struct options opts;
	struct event_base *base;
	struct registry reg;
	struct target_config tc;
	struct sdfile sdfile;
	int have_sdfile;
	struct api *api;
	char *socket_path;
	char *socket_dir; /* our private directory, removed at exit */
	struct child child;
	struct event *ev_signals[NFORWARDED + 1];
};

static void
usage_exit(const char *message)
{
	fprintf(stderr, "promfork: %s\n", message);
	exit(2);
}

/* Without --socket, a private directory keeps the socket ours alone. */
static void
socket_path_default(struct promfork *pf)
{
	const char *dir = getenv("RUNTIME_DIRECTORY");
	char *tmpl;

	if (dir == NULL || *dir == '\0')
		dir = getenv("XDG_RUNTIME_DIR");
	if (dir == NULL || *dir == '\0' || access(dir, W_OK) != 0)
		dir = "/tmp";
	xasprintf(&tmpl, "%s/promfork.XXXXXX", dir);
	if (mkdtemp(tmpl) == NULL)
		fatal("cannot create a directory for the socket in %s", dir);
	chmod(tmpl, 0755);
	pf->socket_dir = tmpl;
	xasprintf(&pf->socket_path, "%s/promfork.sock", tmpl);
}

static void
child_reap(struct promfork *pf)
{
	struct lease *l;
	int wstatus;
	pid_t pid;

	while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
		if (pid == pf->child.pid) {
			pf->child.exited = 1;
			pf->child.status = child_wait_status(wstatus);
			log_info("%s (pid %d) exited with status %d",
			    pf->opts.command[0], (int)pid, pf->child.status);
		} else
			log_debug("reaped pid %d", (int)pid);
		if ((l = registry_find_pid(&pf->reg, pid)) != NULL)
			lease_close(l, LEASE_END_EXIT);
	}
	registry_check(&pf->reg);
	if (pf->child.exited)
		event_base_loopexit(pf->base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short events, void *arg)
{
	struct promfork *pf = arg;

	if (sig == SIGCHLD)
		child_reap(pf);
	else
		child_signal(&pf->child, (int)sig);
}

static void
signals_init(struct promfork *pf)
{
	size_t i;

	for (i = 0; i <= NFORWARDED; i++) {
		int sig = i < NFORWARDED ? forwarded_signals[i] : SIGCHLD;
		pf->ev_signals[i] = evsignal_new(pf->base, sig, signal_cb, pf);
		if (pf->ev_signals[i] == NULL || event_add(pf->ev_signals[i],
		    NULL) != 0)
			fatalx("cannot handle signal %d", sig);
	}
}

static void
signals_finish(struct promfork *pf)
{
	size_t i;

	for (i = 0; i <= NFORWARDED; i++)
		event_free(pf->ev_signals[i]);
}

static void
setup(struct promfork *pf)
{
	struct api_config acfg;
	char *cause = NULL;
	int fd;

	if (pf->opts.sd_file != NULL && sdfile_check(pf->opts.sd_file,
	    &cause) != 0)
		usage_exit(cause);
	if (pf->opts.socket_path != NULL)
		pf->socket_path = xstrdup(pf->opts.socket_path);
	else
		socket_path_default(pf);
	if ((fd = api_listen(pf->socket_path, &cause)) == -1)
		usage_exit(cause);

	pf->base = event_base_new();
	if (pf->base == NULL)
		fatalx("event_base_new");
	registry_init(&pf->reg, pf->base, pf->opts.port_low,
	    pf->opts.port_high, pool_port_bindable, NULL);
	pf->tc.host = pf->opts.target_host;
	pf->tc.labels = &pf->opts.labels;
	if (pf->opts.sd_file != NULL) {
		sdfile_init(&pf->sdfile, pf->opts.sd_file, &pf->reg, &pf->tc);
		pf->have_sdfile = 1;
		if (sdfile_flush(&pf->sdfile) != 0)
			usage_exit("cannot write the sd file");
	}
	memset(&acfg, 0, sizeof acfg);
	acfg.tree_root = pf->opts.command != NULL ? getpid() : 0;
	acfg.tc = &pf->tc;
	pf->api = api_create(pf->base, fd, &pf->reg, &acfg);

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		log_warn("cannot become a subreaper; orphaned workers will "
		    "not be reaped by promfork");
	signal(SIGPIPE, SIG_IGN);
	signals_init(pf);
}

static void
teardown(struct promfork *pf)
{
	api_free(pf->api);
	if (pf->have_sdfile)
		sdfile_finish(&pf->sdfile, pf->opts.sd_remove_on_exit);
	registry_finish(&pf->reg);
	signals_finish(pf);
	event_base_free(pf->base);
	unlink(pf->socket_path);
	if (pf->socket_dir != NULL)
		rmdir(pf->socket_dir);
	free(pf->socket_path);
	free(pf->socket_dir);
	options_free(&pf->opts);
}

int
main(int argc, char **argv)
{
	struct promfork pf;
	char *message = NULL, *cause = NULL;
	int status;

	if (argc > 1 && strcmp(argv[1], "lease") == 0)
		return client_lease_main(argc - 1, argv + 1);

	memset(&pf, 0, sizeof pf);
	switch (options_parse(&pf.opts, argc, argv, &message)) {
	case OPTIONS_EXIT_OK:
		if (message != NULL)
			puts(message);
		else
			options_usage();
		free(message);
		options_free(&pf.opts);
		return 0;
	case OPTIONS_EXIT_USAGE:
		usage_exit(message);
		break;
	case OPTIONS_RUN:
		break;
	}
	log_init(pf.opts.log_level, pf.opts.log_json);
	setup(&pf);

	if (child_start(&pf.child, pf.opts.command, pf.socket_path,
	    &cause) != 0)
		fatalx("%s", cause);
	log_info("ports %u-%u, socket %s%s%s", pf.opts.port_low,
	    pf.opts.port_high, pf.socket_path, pf.have_sdfile ?
	    ", sd file " : "", pf.have_sdfile ? pf.opts.sd_file : "");

	event_base_dispatch(pf.base);

	status = pf.child.exited ? pf.child.status : 1;
	teardown(&pf);
	return status;
}
