/*
 * The file_sd sink: a mirror (mirror.c) of the registry whose text is
 * target_render's, so that Prometheus reads each worker as a target.
 * Prometheus re-reads the file whenever it changes; file_replace makes sure
 * it never sees it half written.  This file says what the sd file is: its
 * path rules, its timings, and what is left of it when promfork exits.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

#define SDFILE_DEBOUNCE_MS 5
#define SDFILE_RETRY_MS 1000

static int
sdfile_has_suffix(const char *path, const char *suffix)
{
	size_t n = strlen(path), m = strlen(suffix);

	return n > m && strcmp(path + n - m, suffix) == 0;
}

/* Refuses a path that Prometheus would not read or promfork cannot write. */
int
sdfile_check(const char *path, char **cause)
{
	char *dir = file_dir(path);
	struct stat sb;
	int rc = -1;

	if (!sdfile_has_suffix(path, ".json")) {
		xasprintf(cause,
		    "--sd-file %s must end in .json: Prometheus' "
		    "file_sd reads only *.json and *.yml files",
		    path);
		goto out;
	}
	if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		xasprintf(cause,
		    "--sd-file %s: directory %s does not exist; "
		    "create it first (mkdir -p %s)",
		    path, dir, dir);
		goto out;
	}
	if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
		xasprintf(cause,
		    "--sd-file %s exists and is not a regular "
		    "file",
		    path);
		goto out;
	}
	if (file_dir_writable(dir) != 0) {
		xasprintf(cause,
		    "--sd-file %s: cannot write in directory %s: "
		    "%s",
		    path, dir, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(dir);
	return rc;
}

static char *
sdfile_render(const struct registry *reg, const void *arg, size_t *len)
{
	return target_render(reg, arg, len);
}

/* Starts the sd file's mirror; the caller writes it first (mirror_flush). */
void
sdfile_init(struct mirror *m, const char *path, struct registry *reg,
    const struct target_config *tc)
{
	struct mirror_config cfg = {
		.path = path,
		.what = "sd file",
		.reg = reg,
		.render = sdfile_render,
		.arg = tc,
		.debounce_ms = SDFILE_DEBOUNCE_MS,
		.retry_ms = SDFILE_RETRY_MS,
	};

	mirror_init(m, &cfg);
}

/*
 * Ends the mirror and leaves behind what Prometheus should see once promfork
 * is gone: no targets ([]), no file, or the current workers, when they
 * outlive us (standalone with a state file).
 */
int
sdfile_finish(struct mirror *m, enum sd_exit how)
{
	char *cause = NULL;
	int rc = 0;

	mirror_stop(m);
	switch (how) {
	case SD_EXIT_KEEP:
		rc = mirror_flush(m);
		break;
	case SD_EXIT_REMOVE:
		if (unlink(m->path) != 0 && errno != ENOENT) {
			log_warn("cannot remove %s", m->path);
			rc = -1;
		}
		break;
	case SD_EXIT_EMPTY:
		if (file_replace(m->path, "[]\n", 3, 0644, &cause) != 0) {
			log_warnx("cannot empty %s: %s", m->path, cause);
			free(cause);
			rc = -1;
		}
		break;
	}
	mirror_finish(m);
	return rc;
}
