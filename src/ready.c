/*
 * /-/healthy and /-/ready for orchestrators (a Kubernetes probe, a load
 * balancer).  Healthy: the event loop answers.  Ready: promfork can give
 * Prometheus what it is for, the metrics of live workers.  Standalone
 * (no COMMAND) that is as soon as it serves.  Wrapping a command, the
 * command must be running and a worker must hold a lease now; with no
 * lease granted yet, it is ready too once READY_GRACE_MS have passed
 * since the start, for an app whose workers never register (promfork
 * cannot tell "not yet" from "never" otherwise).  Once a worker has
 * registered, no live worker means not ready: every worker died, which a
 * probe should see.  The decision is pure, for tests; the answer names
 * the reason and nothing else.
 */
#include <stdlib.h>

#include "promfork.h"

/* 1 when ready; else 0 and *why, a constant string. */
int
ready_check(const struct ready_input *in, const char **why)
{
	*why = NULL;
	if (!in->command)
		return 1;
	if (in->command_exited) {
		*why = "COMMAND has exited";
		return 0;
	}
	if (in->leases > 0)
		return 1;
	if (in->granted > 0) {
		*why = "no live worker: every worker that registered has ended";
		return 0;
	}
	if (in->since_start_ms >= in->grace_ms)
		return 1;
	*why = "no worker has registered yet";
	return 0;
}

/* Answers GET /-/healthy: the loop runs. */
void
ready_serve_healthy(struct http_conn *c)
{
	static const char body[] = "promfork is healthy.\n";

	http_reply(c, 200, READY_TYPE, body, sizeof body - 1);
}

/* Answers GET /-/ready: 200, or 503 with the reason. */
void
ready_serve(struct http_conn *c, const struct ready_input *in)
{
	static const char ok[] = "promfork is ready.\n";
	const char *why;
	char *body;
	int len;

	if (ready_check(in, &why)) {
		http_reply(c, 200, READY_TYPE, ok, sizeof ok - 1);
		return;
	}
	len = xasprintf(&body, "promfork is not ready: %s.\n", why);
	http_reply(c, 503, READY_TYPE, body, (size_t)len);
	free(body);
}
