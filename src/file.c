/*
 * Files on disk, for the sd and state files: an atomic replace (readers see
 * the old text or the new one, never half of it), a bounded whole-file read
 * and what a path check needs.  Blocking I/O: the mirror calls the replace
 * from its writer thread, so nothing here may touch shared state.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "promfork.h"

/* The directory part of path, as dirname(3) gives it; malloc'd. */
char *
file_dir(const char *path)
{
	char *copy = xstrdup(path), *dir = xstrdup(dirname(copy));

	free(copy);
	return dir;
}

/* Can this process create files in dir?  -1 with errno when not. */
int
file_dir_writable(const char *dir)
{
	char *probe;
	int fd, saved;

	xasprintf(&probe, "%s/.promfork-check.XXXXXX", dir);
	if ((fd = mkostemp(probe, O_CLOEXEC)) == -1) {
		saved = errno;
		free(probe);
		errno = saved;
		return -1;
	}
	close(fd);
	unlink(probe);
	free(probe);
	return 0;
}

static int
file_write_all(int fd, const char *data, size_t len)
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

/*
 * Atomically replaces path with data: the text goes to a temporary file in
 * the same directory (named .NAME.tmp.XXXXXX, which no *.json glob of
 * Prometheus' file_sd matches), is synced and given mode (the sd file 0644,
 * the state file 0600), renamed over path, and the directory is synced so
 * that the rename itself is durable.
 */
int
file_replace(const char *path, const char *data, size_t len, mode_t mode,
    char **cause)
{
	char *dir = file_dir(path), *tmp = NULL, *base, *copy;
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
	if (file_write_all(fd, data, len) != 0 || fsync(fd) != 0 ||
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

/*
 * Reads path whole (NUL-terminated) if it is a regular file of at most max
 * bytes; a missing file is no text (0, *buf NULL, *len 0).
 */
int
file_read(const char *path, size_t max, char **buf, size_t *len, char **cause)
{
	struct stat sb;
	ssize_t r;
	size_t got = 0;
	int fd;

	*buf = NULL;
	*len = 0;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		if (errno == ENOENT)
			return 0;
		xasprintf(cause, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    (size_t)sb.st_size > max) {
		xasprintf(cause,
		    "%s is not a regular file of at most %zu bytes", path, max);
		close(fd);
		return -1;
	}
	*buf = xmalloc((size_t)sb.st_size + 1);
	while (got < (size_t)sb.st_size) {
		r = read(fd, *buf + got, (size_t)sb.st_size - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	(*buf)[got] = '\0';
	*len = got;
	return 0;
}
