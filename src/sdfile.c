/*
 * The file_sd sink.  Prometheus re-reads the file whenever it changes, so it
 * must never see it half written: each write goes to a temporary file in the
 * same directory (named so that no *.json glob matches it), is synced and
 * renamed over the old one, and the directory is synced.  Bursts of registry
 * changes are coalesced into one write a few milliseconds later, rendered
 * on the loop and written on the writer's thread (a mirror, writer.c).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

#define SDFILE_DEBOUNCE_MS 5
#define SDFILE_RETRY_MS 1000

static char *
sdfile_dir(const char *path)
{
	char *copy = xstrdup(path), *dir = xstrdup(dirname(copy));

	free(copy);
	return dir;
}

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
	char *dir = sdfile_dir(path), *probe = NULL;
	struct stat sb;
	int fd, rc = -1;

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
	xasprintf(&probe, "%s/.promfork-check.XXXXXX", dir);
	if ((fd = mkostemp(probe, O_CLOEXEC)) == -1) {
		xasprintf(cause,
		    "--sd-file %s: cannot write in directory %s: "
		    "%s",
		    path, dir, strerror(errno));
		goto out;
	}
	close(fd);
	unlink(probe);
	rc = 0;
out:
	free(probe);
	free(dir);
	return rc;
}

static int
sdfile_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Atomically replaces path with data: readers see the old or the new file. */
int
sdfile_replace(const char *path, const char *data, size_t len, char **cause)
{
	return sdfile_replace_mode(path, data, len, 0644, cause);
}

/* sdfile_replace, the new file with mode (the state file: 0600). */
int
sdfile_replace_mode(const char *path, const char *data, size_t len, mode_t mode,
    char **cause)
{
	char *dir = sdfile_dir(path), *tmp = NULL, *base, *copy;
	int fd = -1, dfd, rc = -1;

	copy = xstrdup(path);
	base = basename(copy);
	xasprintf(&tmp, "%s/.%s.tmp.XXXXXX", dir, base);
	free(copy);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		xasprintf(cause, "cannot create a file in %s: %s", dir,
		    strerror(errno));
		goto out;
	}
	if (sdfile_write_all(fd, data, len) != 0 || fsync(fd) != 0 ||
	    fchmod(fd, mode) != 0) {
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	if (close(fd) != 0) {
		fd = -1;
		xasprintf(cause, "cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		xasprintf(cause, "cannot rename %s to %s: %s", tmp, path,
		    strerror(errno));
		goto fail;
	}
	/* Make the rename itself durable. */
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		fsync(dfd);
		close(dfd);
	}
	rc = 0;
	goto out;
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
out:
	free(tmp);
	free(dir);
	return rc;
}

static char *
sdfile_render(void *arg, size_t *len)
{
	struct sdfile *sf = arg;

	return target_render(sf->m.reg, sf->tc, len);
}

void
sdfile_init(struct sdfile *sf, const char *path, struct registry *reg,
    const struct target_config *tc)
{
	struct mirror_config cfg = {
		.path = path,
		.what = "sd file",
		.reg = reg,
		.render = sdfile_render,
		.arg = sf,
		.debounce_ms = SDFILE_DEBOUNCE_MS,
		.retry_ms = SDFILE_RETRY_MS,
	};

	sf->tc = tc;
	mirror_init(&sf->m, &cfg);
}

/* Writes the file now, on the loop: at start, to fail early. */
int
sdfile_flush(struct sdfile *sf)
{
	return mirror_flush(&sf->m);
}

/*
 * Leaves [] (or no file) behind, for a Prometheus that outlives us; or, with
 * SDFILE_KEEP, the current workers, when they outlive us (standalone).
 */
int
sdfile_finish(struct sdfile *sf, int remove)
{
	char *cause = NULL;
	int rc = 0;

	mirror_stop(&sf->m);
	if (remove == SDFILE_KEEP)
		rc = mirror_flush(&sf->m);
	else if (remove) {
		if (unlink(sf->m.path) != 0 && errno != ENOENT) {
			log_warn("cannot remove %s", sf->m.path);
			rc = -1;
		}
	} else if (sdfile_replace(sf->m.path, "[]\n", 3, &cause) != 0) {
		log_warnx("cannot empty %s: %s", sf->m.path, cause);
		free(cause);
		rc = -1;
	}
	mirror_free(&sf->m);
	return rc;
}
