/*
 * Wiring only: options -> checks -> modules -> event loop -> exit status.
 */
#include <sys/prctl.h>

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
	struct mirror sdfile;
	int have_sdfile;
	struct api *api;
	struct discover *discover;
	struct web *web;
	struct history *history;
	int web_fds[OPTIONS_LISTEN_MAX]; /* listening, until web_setup */
	size_t nweb_fds;
	struct webguard *guard; /* --web.config.file */
	char *web_address; /* what --proxy-targets points at */
	char *socket_path;
	char *socket_dir; /* our private directory, removed at exit */
	struct child child;
	struct spawn *spawn; /* --workers */
	struct mirror state; /* standalone --state-file */
	int have_state;
	int stopped; /* standalone: by a signal, as asked */
	struct privsep_cred app_cred; /* --user */
	int have_app_cred;
	struct event *ev_signals[NFORWARDED + 1];
};

static void
usage_exit(const char *message)
{
	fprintf(stderr, "promfork: %s\n", message);
	exit(2);
}

/* A reaped process may be one of the supervisor's workers. */
static void
child_reaped_cb(pid_t pid, int wstatus, void *arg)
{
	struct promfork *pf = arg;

	if (pf->spawn != NULL)
		spawn_reaped(pf->spawn, pid, wstatus);
}

static void
signal_cb(evutil_socket_t sig, short events, void *arg)
{
	struct promfork *pf = arg;

	if (sig == SIGCHLD) {
		child_reap(&pf->child, &pf->reg, child_reaped_cb, pf);
		if (pf->child.exited)
			event_base_loopexit(pf->base, NULL);
	} else if (pf->spawn != NULL)
		spawn_signal(pf->spawn, (int)sig);
	else if (pf->opts.command != NULL)
		child_signal(&pf->child, (int)sig);
	else if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT) {
		/* Standalone: the workers are not ours and stay. */
		log_info("signal %d: stopping", (int)sig);
		pf->stopped = 1;
		event_base_loopexit(pf->base, NULL);
	}
}

static void
signals_init(struct promfork *pf)
{
	size_t i;

	for (i = 0; i <= NFORWARDED; i++) {
		int sig = i < NFORWARDED ? forwarded_signals[i] : SIGCHLD;
		pf->ev_signals[i] = evsignal_new(pf->base, sig, signal_cb, pf);
		if (pf->ev_signals[i] == NULL ||
		    event_add(pf->ev_signals[i], NULL) != 0)
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

/*
 * A listener on a port of the range would take that port from every worker
 * for good (the pool probes every address), silently one slot short.
 */
static void
listeners_outside_range(const struct promfork *pf)
{
	char *cause;
	size_t i;

	for (i = 0; i < pf->nweb_fds; i++) {
		uint16_t port = web_port(pf->web_fds[i]);

		if (port < pf->opts.port_low || port > pf->opts.port_high)
			continue;
		xasprintf(&cause,
		    "the HTTP listener's port %u is inside --port-range "
		    "%u-%u, where it would take a worker's port: listen on "
		    "a port outside the range",
		    port, pf->opts.port_low, pf->opts.port_high);
		usage_exit(cause);
	}
}

static void
setup(struct promfork *pf)
{
	struct api_config acfg;
	char *cause = NULL;
	int api_fd, fd, n;
	size_t i;

	if (pf->opts.sd_file != NULL &&
	    sdfile_check(pf->opts.sd_file, &cause) != 0)
		usage_exit(cause);
	memset(&acfg, 0, sizeof acfg);
	acfg.tree_root = pf->opts.command != NULL ? getpid() : 0;
	acfg.tc = &pf->tc;
	acfg.allow_uids = pf->opts.allow_uids;
	acfg.nallow_uids = pf->opts.nallow_uids;
	acfg.allow_gids = pf->opts.allow_gids;
	acfg.nallow_gids = pf->opts.nallow_gids;
	acfg.max_leases_per_uid =
	    pf->opts.command == NULL ? pf->opts.max_leases_per_uid : 0;
	/* COMMAND runs as --user, else as promfork's own user and group:
	 * the socket is made for it. */
	acfg.command_uid = geteuid();
	acfg.command_gid = getegid();
	if (pf->opts.user != NULL) {
		if (privsep_lookup(&pf->app_cred, pf->opts.user, pf->opts.group,
			getegid(), &cause) != 0)
			usage_exit(cause);
		acfg.command_uid = pf->app_cred.uid;
		acfg.command_gid = pf->app_cred.gid;
		privsep_cred_clear(&pf->app_cred);
	}
	if (pf->opts.socket_path != NULL)
		pf->socket_path = xstrdup(pf->opts.socket_path);
	else
		api_socket_default(&acfg, &pf->socket_path, &pf->socket_dir);
	if ((api_fd = api_listen(pf->socket_path, &acfg, &cause)) == -1)
		usage_exit(cause);
	if (pf->opts.web_config != NULL &&
	    (pf->guard = webguard_create(pf->opts.web_config, &cause)) == NULL)
		usage_exit(cause);
	if (pf->opts.systemd_socket) {
		if ((n = activation_fds(pf->web_fds, OPTIONS_LISTEN_MAX,
			 &cause)) == -1)
			usage_exit(cause);
		pf->nweb_fds = (size_t)n;
	}
	for (i = 0; i < pf->opts.nlisten; i++) {
		if (pf->nweb_fds == OPTIONS_LISTEN_MAX)
			usage_exit("more than 16 listeners: --listen and "
				   "--systemd-socket's together");
		if ((fd = web_listen(pf->opts.listen[i], &cause)) == -1)
			usage_exit(cause);
		pf->web_fds[pf->nweb_fds++] = fd;
	}
	listeners_outside_range(pf);
	switch (privsep_setup(&pf->app_cred, &pf->opts, pf->socket_path,
	    pf->socket_dir, &cause)) {
	case -1:
		usage_exit(cause);
		break;
	case 1:
		pf->have_app_cred = 1;
		break;
	}
	/* as the user that is to write it */
	if (pf->opts.sd_file != NULL &&
	    sdfile_check(pf->opts.sd_file, &cause) != 0)
		usage_exit(cause);

	pf->base = event_base_new();
	if (pf->base == NULL)
		fatalx("event_base_new");
	registry_init(&pf->reg, pf->base, pf->opts.port_low, pf->opts.port_high,
	    pool_port_bindable, NULL);
	{
		struct continuity_config cc = { pf->opts.continuity,
			pf->opts.carry_hold_ms, pf->opts.carry_max_series };

		registry_continuity(&pf->reg, &cc);
	}
	if (pf->nweb_fds > 0) { /* drawn on / and served there */
		struct history_config hc = { pf->opts.history_resolution_s,
			pf->opts.history_window_s };

		pf->history = history_create(pf->base, &pf->reg, &hc);
	}
	pf->tc.host = pf->opts.target_host;
	pf->tc.labels = &pf->opts.labels;
	if (pf->opts.proxy_targets) {
		pf->web_address =
		    web_address(pf->web_fds[0], pf->opts.target_host);
		pf->tc.proxy_address = pf->web_address;
	}
	if (pf->opts.state_file != NULL) {
		/* before the sd file is first written: it shows who is taken up */
		pf->have_state = 1;
		if (state_init(&pf->state, pf->opts.state_file, &pf->reg,
			&acfg) != 0)
			usage_exit("cannot write the --state-file");
	}
	if (pf->opts.sd_file != NULL) {
		sdfile_init(&pf->sdfile, pf->opts.sd_file, &pf->reg, &pf->tc);
		pf->have_sdfile = 1;
		if (mirror_flush(&pf->sdfile) != 0)
			usage_exit("cannot write the sd file");
	}
	pf->api = api_create(pf->base, api_fd, &pf->reg, &acfg);
	if (pf->opts.discover)
		pf->discover = discover_setup(pf->base, &pf->reg, &pf->opts);

	if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
		log_warn("cannot become a subreaper; orphaned workers will "
			 "not be reaped by promfork");
	signal(SIGPIPE, SIG_IGN);
	signals_init(pf);
}

/* After the workers' supervisor, whose numbers /metrics shows. */
static void
web_setup(struct promfork *pf)
{
	struct web_config wcfg;

	if (pf->nweb_fds == 0)
		return;
	memset(&wcfg, 0, sizeof wcfg);
	wcfg.reg = &pf->reg;
	wcfg.tc = &pf->tc;
	wcfg.sdfile = pf->have_sdfile ? &pf->sdfile : NULL;
	wcfg.child = &pf->child;
	wcfg.spawn = pf->spawn;
	wcfg.discover = pf->discover;
	wcfg.deadline_ms = pf->opts.http_deadline_ms;
	wcfg.history = pf->history;
	wcfg.budget_bytes = pf->opts.http_budget_bytes;
	wcfg.guard = pf->guard;
	pf->web = web_create(pf->base, pf->web_fds, pf->nweb_fds, &wcfg);
}

static void
teardown(struct promfork *pf)
{
	web_free(pf->web);
	webguard_free(pf->guard);
	discover_free(pf->discover);
	api_free(pf->api);
	spawn_free(pf->spawn);
	if (pf->have_sdfile) {
		enum sd_exit how = SD_EXIT_EMPTY;

		if (pf->have_state) /* the workers outlive us */
			how = SD_EXIT_KEEP;
		else if (pf->opts.sd_remove_on_exit)
			how = SD_EXIT_REMOVE;
		sdfile_finish(&pf->sdfile, how);
	}
	if (pf->have_state)
		state_finish(&pf->state);
	history_free(pf->history);
	registry_finish(&pf->reg);
	signals_finish(pf);
	event_base_free(pf->base);
	unlink(pf->socket_path);
	if (pf->socket_dir != NULL)
		rmdir(pf->socket_dir);
	free(pf->socket_path);
	free(pf->socket_dir);
	free(pf->web_address);
	privsep_cred_clear(&pf->app_cred);
	options_finish(&pf->opts);
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
		options_finish(&pf.opts);
		return 0;
	case OPTIONS_EXIT_USAGE:
		usage_exit(message);
		break;
	case OPTIONS_RUN:
		break;
	}
	log_init(pf.opts.log_level, pf.opts.log_json);
	if (pf.opts.check) {
		status = check_run(&pf.opts);
		options_finish(&pf.opts);
		return status;
	}
	notify_init();
	log_debug("open files limit %llu", proc_nofile_raise());
	setup(&pf);

	if (pf.opts.workers > 0)
		pf.spawn = spawn_setup(pf.base, &pf.reg, &pf.opts,
		    pf.socket_path, pf.have_app_cred ? &pf.app_cred : NULL);
	else if (pf.opts.command != NULL &&
	    child_start(&pf.child, pf.opts.command, pf.socket_path,
		pf.have_app_cred ? &pf.app_cred : NULL, &cause) != 0)
		fatalx("%s", cause);
	/* The command runs: changing users is no longer needed. */
	if (pf.have_app_cred && pf.opts.workers == 0 && geteuid() != 0 &&
	    privsep_keep(0, 1, &cause) != 0)
		fatalx("%s", cause);
	web_setup(&pf);
	log_info("ports %u-%u, socket %s%s%s", pf.opts.port_low,
	    pf.opts.port_high, pf.socket_path,
	    pf.have_sdfile ? ", sd file " : "",
	    pf.have_sdfile ? pf.opts.sd_file : "");
	notify_ready();

	event_base_dispatch(pf.base);
	notify_stopping();

	if (pf.spawn != NULL)
		status = spawn_done(pf.spawn) ? 0 : 1;
	else if (pf.opts.command == NULL)
		status = pf.stopped ? 0 : 1;
	else
		status = pf.child.exited ? pf.child.status : 1;
	teardown(&pf);
	return status;
}
