/*
 * The state file of a standalone promfork: every lease with the pid and
 * start time of its process, rewritten atomically (debounced) on every
 * registry change.  At start the leases whose process still runs, the same
 * process by its start time, are taken up again in their slot, so a restart
 * or a crash of promfork moves no port and drops no target; the rest are
 * forgotten.  The file is outside input: it is size-capped and every field
 * is checked.
 *
 *     {"version": 1, "boot_id": "0f6e...", "leases": [{"worker": 3,
 *      "port": 9403, "pid": 1234, "starttime": 5678, "source": "api",
 *      "created": 1700000000, "labels": {"role": "web"}}]}
 *
 * The file is promfork's alone (0600).  A saved lease is taken up only in
 * the boot that wrote it, and only when a registration of its process now
 * would be allowed: a tampered or stale file adopts nothing else.
 */

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "promfork.h"

#define STATE_DEBOUNCE_MS 5
#define STATE_RETRY_MS 1000
#define STATE_LEASES_MAX 65536 /* one per port at most */

void
state_entries_free(struct state_entry *e, size_t n)
{
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < n; i++)
		labels_finish(&e[i].labels);
	free(e);
}

static int
state_int(json_t *obj, const char *key, long long min, long long max,
    long long *v, size_t idx, char **cause)
{
	json_t *j = json_object_get(obj, key);

	if (!json_is_integer(j) || json_integer_value(j) < min ||
	    json_integer_value(j) > max) {
		xasprintf(cause,
		    "lease %zu: \"%s\" must be an integer from "
		    "%lld to %lld",
		    idx, key, min, max);
		return -1;
	}
	*v = json_integer_value(j);
	return 0;
}

static int
state_parse_entry(json_t *obj, size_t idx, struct state_entry *e, char **cause)
{
	const char *source;
	json_t *labels;
	long long v;

	if (!json_is_object(obj)) {
		xasprintf(cause, "lease %zu is not an object", idx);
		return -1;
	}
	if (state_int(obj, "worker", 0, 65534, &v, idx, cause) != 0)
		return -1;
	e->worker = (int)v;
	if (state_int(obj, "port", 1, 65535, &v, idx, cause) != 0)
		return -1;
	e->port = (uint16_t)v;
	if (state_int(obj, "pid", 2, INT_MAX, &v, idx, cause) != 0)
		return -1;
	e->pid = (pid_t)v;
	if (state_int(obj, "starttime", 0, LLONG_MAX, &v, idx, cause) != 0)
		return -1;
	e->starttime = (unsigned long long)v;
	if (state_int(obj, "created", 0, LLONG_MAX, &v, idx, cause) != 0)
		return -1;
	e->created = (time_t)v;

	source = json_string_value(json_object_get(obj, "source"));
	if (lease_source_parse(source, &e->source) != 0) {
		xasprintf(cause,
		    "lease %zu: \"source\" must be \"api\", "
		    "\"discover\" or \"spawn\"",
		    idx);
		return -1;
	}

	if ((labels = json_object_get(obj, "labels")) != NULL &&
	    labels_from_json(&e->labels, labels, cause) != 0) {
		char *inner = *cause;
		xasprintf(cause, "lease %zu: %s", idx, inner);
		free(inner);
		return -1;
	}
	return 0;
}

static int
state_pid_cmp(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;

	return (x > y) - (x < y);
}

static int
state_pids_repeat(const struct state_entry *e, size_t n, char **cause)
{
	pid_t *pids;
	size_t i;
	int rc = 0;

	if (n < 2)
		return 0;
	pids = xreallocarray(NULL, n, sizeof *pids);
	for (i = 0; i < n; i++)
		pids[i] = e[i].pid;
	qsort(pids, n, sizeof *pids, state_pid_cmp);
	for (i = 1; i < n; i++) {
		if (pids[i] == pids[i - 1]) {
			xasprintf(cause, "pid %d has more than one lease",
			    (int)pids[i]);
			rc = -1;
			break;
		}
	}
	free(pids);
	return rc;
}

/* "boot_id": 36 characters of hex digits and dashes. */
static int
state_parse_boot_id(json_t *root, char *boot_id, char **cause)
{
	const char *s = json_string_value(json_object_get(root, "boot_id"));
	size_t i;

	for (i = 0; s != NULL && i < PROC_BOOT_ID_LEN; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
			(s[i] >= 'a' && s[i] <= 'f') || s[i] == '-'))
			break;
	}
	if (s == NULL || i != PROC_BOOT_ID_LEN || s[i] != '\0') {
		*cause = xstrdup("state file has no \"boot_id\" of the boot "
				 "that wrote it");
		return -1;
	}
	if (boot_id != NULL)
		memcpy(boot_id, s, PROC_BOOT_ID_LEN + 1);
	return 0;
}

/*
 * Parses the text of a state file into its leases and the id of the boot
 * that wrote it (boot_id: PROC_BOOT_ID_LEN + 1 bytes, may be NULL).
 * Checks syntax and bounds only; whether a lease may be taken up is
 * state_adopt's call.
 */
int
state_parse(const char *buf, size_t len, struct state_entry **entries,
    size_t *n, char *boot_id, char **cause)
{
	struct state_entry *e = NULL;
	json_error_t err;
	json_t *root, *leases;
	size_t i, count = 0;
	int rc = -1;

	*entries = NULL;
	*n = 0;
	if (len > STATE_FILE_MAX) {
		xasprintf(cause, "state file is larger than %d bytes",
		    STATE_FILE_MAX);
		return -1;
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (root == NULL) {
		xasprintf(cause, "state file is not valid JSON: %s (line %d)",
		    err.text, err.line);
		return -1;
	}
	if (!json_is_object(root)) {
		*cause = xstrdup("state file is not a JSON object");
		goto out;
	}
	if (!json_is_integer(json_object_get(root, "version")) ||
	    json_integer_value(json_object_get(root, "version")) !=
		STATE_VERSION) {
		xasprintf(cause, "state file has no \"version\": %d",
		    STATE_VERSION);
		goto out;
	}
	if (state_parse_boot_id(root, boot_id, cause) != 0)
		goto out;
	leases = json_object_get(root, "leases");
	if (!json_is_array(leases)) {
		*cause = xstrdup("state file has no \"leases\" array");
		goto out;
	}
	if (json_array_size(leases) > STATE_LEASES_MAX) {
		xasprintf(cause, "state file has more than %d leases",
		    STATE_LEASES_MAX);
		goto out;
	}
	e = xcalloc(json_array_size(leases) + 1, sizeof *e);
	for (i = 0; i < json_array_size(leases); i++) {
		count++;
		if (state_parse_entry(json_array_get(leases, i), i, &e[i],
			cause) != 0)
			goto out;
		/* Written sorted by worker, which also rules out repeats. */
		if (i > 0 && e[i].worker <= e[i - 1].worker) {
			xasprintf(cause,
			    "lease %zu: worker %d follows worker "
			    "%d; leases must be sorted by worker, each once",
			    i, e[i].worker, e[i - 1].worker);
			goto out;
		}
	}
	if (state_pids_repeat(e, count, cause) != 0)
		goto out;
	*entries = e;
	*n = count;
	e = NULL;
	rc = 0;
out:
	state_entries_free(e, count);
	json_decref(root);
	return rc;
}

/*
 * The slots' carried totals in a state file: {"carried": [{"worker": N,
 * "totals": "<exposition>"}, ...]}, absent when there are none.  Returns
 * how many, or -1 with *cause; every entry is checked before any is kept.
 */
int
state_parse_carried(const char *buf, size_t len, struct state_carried **out,
    size_t *n, char **cause)
{
	struct state_carried *c = NULL;
	json_t *root, *arr, *e, *totals;
	long long worker;
	size_t i;
	int rc = -1;

	*out = NULL;
	*n = 0;
	if (len > STATE_FILE_MAX ||
	    (root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL)) ==
		NULL) {
		*cause = xstrdup("state file is not valid JSON");
		return -1;
	}
	if ((arr = json_object_get(root, "carried")) == NULL) {
		rc = 0;
		goto out;
	}
	if (!json_is_array(arr) || json_array_size(arr) > STATE_LEASES_MAX) {
		xasprintf(cause, "\"carried\" is not an array of at most %d",
		    STATE_LEASES_MAX);
		goto out;
	}
	c = xcalloc(json_array_size(arr) + 1, sizeof *c);
	json_array_foreach(arr, i, e)
	{
		totals = json_object_get(e, "totals");
		if (state_int(e, "worker", 0, 65535, &worker, i, cause) != 0)
			goto out;
		if (!json_is_string(totals)) {
			xasprintf(cause, "carried %zu: no \"totals\" text", i);
			goto out;
		}
		c[i].worker = (int)worker;
		c[i].text = xstrndup(json_string_value(totals),
		    json_string_length(totals));
		c[i].len = json_string_length(totals);
		*n = i + 1;
	}
	*out = c;
	c = NULL;
	rc = 0;
out:
	if (c != NULL)
		state_carried_free(c, *n);
	if (rc != 0)
		*n = 0;
	json_decref(root);
	return rc;
}

void
state_carried_free(struct state_carried *c, size_t n)
{
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < n; i++)
		free(c[i].text);
	free(c);
}

char *
state_render(const struct registry *reg, size_t *len)
{
	json_t *root, *leases, *carried;
	const struct lease *l;
	struct buf totals = { NULL, 0, 0 };
	char *text;
	size_t s;

	leases = json_array();
	REGISTRY_FOREACH (l, reg) {
		json_array_append_new(leases,
		    json_pack("{s:i, s:i, s:i, s:I, "
			      "s:s, s:I, s:o}",
			"worker", l->worker, "port", (int)l->port, "pid",
			(int)l->pid, "starttime", (json_int_t)l->starttime,
			"source", lease_source_name(l->source), "created",
			(json_int_t)l->created, "labels",
			labels_to_json(&l->labels)));
	}
	root = json_pack("{s:i, s:s, s:o}", "version", STATE_VERSION, "boot_id",
	    proc_boot_id(), "leases", leases);
	/* Standalone, the carried totals outlive promfork like the workers. */
	carried = json_array();
	for (s = 0; s < reg->pool.size; s++) {
		totals.len = 0;
		if (continuity_render_slot(reg->cont, (int)s, &totals) == 0)
			continue;
		json_array_append_new(carried,
		    json_pack("{s:i, s:s%}", "worker", (int)s, "totals",
			totals.data, totals.len));
	}
	buf_finish(&totals);
	if (json_array_size(carried) > 0)
		json_object_set_new(root, "carried", carried);
	else
		json_decref(carried);
	text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (text == NULL)
		fatalx("cannot render the state file");
	*len = strlen(text);
	return text;
}

/*
 * Takes up one saved lease if its process is still the same one and a
 * registration of it would be allowed now.
 */
static int
state_adopt_entry(struct registry *reg, const struct api_config *acfg,
    const struct state_entry *e)
{
	struct proc_ref ref;
	struct lease *l;
	enum registry_error error;
	char *cause = NULL;
	int created, status;
	uid_t owner;

	if ((size_t)e->worker >= reg->pool.size ||
	    pool_port(&reg->pool, e->worker) != e->port) {
		log_warnx("state: worker %d (pid %d) had port %u, outside "
			  "the port range now; dropped",
		    e->worker, (int)e->pid, e->port);
		return -1;
	}
	if (proc_ref_init(e->pid, &ref, &cause) != 0 ||
	    ref.st.starttime != e->starttime) {
		log_info("state: worker %d (pid %d, port %u) is gone; dropped",
		    e->worker, (int)e->pid, e->port);
		proc_ref_finish(&ref);
		free(cause);
		return -1;
	}
	if (e->pid == getpid() ||
	    api_authorise_process(acfg, reg, 0, e->pid, 1, &owner, &status,
		&cause) != 0) {
		log_warnx("state: worker %d (pid %d) not taken up: %s",
		    e->worker, (int)e->pid,
		    cause != NULL ? cause : "promfork itself");
		proc_ref_finish(&ref);
		free(cause);
		return -1;
	}
	l = registry_lease(reg, &ref, &e->labels, e->source, e->worker,
	    &created, &error, &cause);
	if (l == NULL) {
		log_warnx("state: worker %d (pid %d) not taken up: %s",
		    e->worker, (int)e->pid, cause);
		free(cause);
		return -1;
	}
	l->created = e->created;
	l->uid = owner;
	return 0;
}

/* Takes up the slots' carried totals a previous promfork saved. */
static void
state_adopt_carried(const char *buf, size_t len, struct registry *reg)
{
	struct state_carried *c;
	char *cause = NULL;
	size_t n, i, taken = 0;

	if (state_parse_carried(buf, len, &c, &n, &cause) != 0) {
		log_warnx("state: carried totals dropped: %s", cause);
		free(cause);
		return;
	}
	for (i = 0; i < n; i++) {
		if ((size_t)c[i].worker < reg->pool.size &&
		    registry_adopt_carry(reg, c[i].worker, c[i].text,
			c[i].len) == 0)
			taken++;
		else
			log_warnx("state: carried totals of worker %d dropped",
			    c[i].worker);
	}
	if (n > 0)
		log_info("state: took up the carried totals of %zu slots",
		    taken);
	state_carried_free(c, n);
}

/*
 * Reads the state file and takes up every lease whose process still runs;
 * returns how many, or -1 when the file cannot be read or parsed (then
 * nothing is taken up).  state_init writes the file back.
 */
int
state_adopt(const char *path, struct registry *reg,
    const struct api_config *acfg, char **cause)
{
	struct state_entry *e = NULL;
	size_t n = 0, i;
	char *buf, *inner = NULL, boot_id[PROC_BOOT_ID_LEN + 1];
	size_t len;
	int adopted = 0;

	if (file_read(path, STATE_FILE_MAX, &buf, &len, cause) != 0)
		return -1;
	if (buf == NULL)
		return 0;
	if (state_parse(buf, len, &e, &n, boot_id, &inner) != 0) {
		xasprintf(cause, "%s: %s", path, inner);
		free(inner);
		free(buf);
		return -1;
	}
	if (strcmp(boot_id, proc_boot_id()) != 0) {
		xasprintf(cause,
		    "%s was written before the last reboot; its %zu "
		    "processes are not the ones running now",
		    path, n);
		state_entries_free(e, n);
		free(buf);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (state_adopt_entry(reg, acfg, &e[i]) == 0)
			adopted++;
	}
	state_entries_free(e, n);
	state_adopt_carried(buf, len, reg);
	free(buf);
	log_info("state: took up %d of %zu workers from %s", adopted, n, path);
	return adopted;
}

static char *
state_render_mirror(const struct registry *reg, const void *arg, size_t *len)
{
	return state_render(reg, len);
}

/*
 * Starts the state file's mirror: takes up the workers a previous promfork
 * left running, then writes the file back at once, to fail early.  Returns
 * -1 when it cannot be written (the mirror has logged why).
 */
int
state_init(struct mirror *m, const char *path, struct registry *reg,
    const struct api_config *acfg)
{
	struct mirror_config cfg = {
		.path = path,
		.what = "state file",
		.reg = reg,
		.render = state_render_mirror,
		.arg = NULL,
		.debounce_ms = STATE_DEBOUNCE_MS,
		.retry_ms = STATE_RETRY_MS,
		.mode = 0600, /* pids and labels are nobody else's business */
	};
	char *cause = NULL;

	mirror_init(m, &cfg);
	if (state_adopt(path, reg, acfg, &cause) == -1) {
		log_warnx("%s; starting without the saved leases", cause);
		free(cause);
	}
	return mirror_flush(m);
}

/*
 * Writes the leases as they are, before the registry ends them: workers
 * outlive a standalone promfork, and the next one takes them up.
 */
void
state_finish(struct mirror *m)
{
	mirror_stop(m);
	(void)mirror_flush(m);
	mirror_finish(m);
}
