/*
 * Replaces a file atomically on a thread of its own, so that the event
 * loop never waits for a disk: the two fsyncs of an sd file write take
 * from a fraction of a millisecond to many on a busy disk, and the loop
 * serves registrations and scrapes meanwhile.  One write at a time; a
 * newer text submitted while one is in flight replaces any older one still
 * waiting, since only the latest matters.  The result of each write comes
 * back on the loop, through an eventfd.  Below it, the mirror: a file kept
 * in step with the registry through a writer (the sd and state files).
 */
#include <sys/eventfd.h>

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

struct writer {
	char *path;
	mode_t mode; /* of the file written */
	writer_done_fn done;
	void *arg;
	int efd; /* the thread's results wake the loop */
	struct event *ev_done;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	/* under lock */
	char *pending; /* the next text to write; NULL when none */
	size_t pending_len;
	int busy; /* a write is in flight */
	int stop;
	int results; /* finished writes not yet reported */
	int failed; /* the last finished write failed */
	char *cause; /* why, for the loop to log */
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	char *data, *cause;
	uint64_t one = 1;
	ssize_t n;
	size_t len;
	int rc;

	privsep_thread_drop();
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->pending == NULL && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (w->pending == NULL)
			break; /* stopped with nothing left to write */
		data = w->pending;
		len = w->pending_len;
		w->pending = NULL;
		w->busy = 1;
		pthread_mutex_unlock(&w->lock);

		cause = NULL;
		rc = sdfile_replace_mode(w->path, data, len, w->mode, &cause);
		free(data);

		pthread_mutex_lock(&w->lock);
		w->busy = 0;
		w->results++;
		w->failed = rc != 0;
		free(w->cause);
		w->cause = cause;
		pthread_cond_broadcast(&w->wake);
		/* Fails only when the counter is full: woken already. */
		n = write(w->efd, &one, sizeof one);
		(void)n;
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* On the loop: reports the writes that finished since the last time. */
static void
writer_done_cb(evutil_socket_t fd, short events, void *arg)
{
	struct writer *w = arg;
	uint64_t n;
	char *cause;
	int results, failed;

	if (read(w->efd, &n, sizeof n) != sizeof n && errno != EAGAIN)
		log_warn("writer eventfd");
	pthread_mutex_lock(&w->lock);
	results = w->results;
	failed = w->failed;
	cause = w->cause;
	w->results = 0;
	w->cause = NULL;
	pthread_mutex_unlock(&w->lock);
	if (results > 0)
		w->done(results, failed ? cause : NULL, w->arg);
	free(cause);
}

struct writer *
writer_create(struct event_base *base, const char *path, writer_done_fn done,
    void *arg)
{
	struct writer *w = xcalloc(1, sizeof *w);
	int err;

	w->path = xstrdup(path);
	w->mode = 0644;
	w->done = done;
	w->arg = arg;
	if ((w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	w->ev_done =
	    event_new(base, w->efd, EV_READ | EV_PERSIST, writer_done_cb, w);
	if (w->ev_done == NULL || event_add(w->ev_done, NULL) != 0)
		fatalx("cannot watch the writer");
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->wake, NULL);
	if ((err = pthread_create(&w->thread, NULL, writer_main, w)) != 0)
		fatalx("cannot start the writer thread: %s", strerror(err));
	return w;
}

/* Before the first writer_submit: the mode of the file written. */
void
writer_set_mode(struct writer *w, mode_t mode)
{
	w->mode = mode;
}

/* Queues data (taken, malloc'd) to replace the file; the latest wins. */
void
writer_submit(struct writer *w, char *data, size_t len)
{
	pthread_mutex_lock(&w->lock);
	free(w->pending);
	w->pending = data;
	w->pending_len = len;
	pthread_cond_signal(&w->wake);
	pthread_mutex_unlock(&w->lock);
}

/* Waits until nothing is queued or in flight, for a write of our own. */
void
writer_drain(struct writer *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->pending != NULL || w->busy)
		pthread_cond_wait(&w->wake, &w->lock);
	pthread_mutex_unlock(&w->lock);
}

/* Drops what is queued, waits for the write in flight, stops the thread. */
void
writer_free(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	free(w->pending);
	w->pending = NULL;
	w->stop = 1;
	pthread_cond_broadcast(&w->wake);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	event_free(w->ev_done);
	close(w->efd);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->wake);
	free(w->cause);
	free(w->path);
	free(w);
}

/*
 * A mirror: a file kept in step with the registry (the sd file, the state
 * file).  Changes are coalesced for debounce_ms, rendered on the loop and
 * written by the writer; a failed write is counted, logged and retried
 * after retry_ms.
 */
static void
mirror_failed(struct mirror *m, const char *cause)
{
	struct timeval retry = { m->retry_ms / 1000,
		(m->retry_ms % 1000) * 1000 };

	m->errors++;
	log_warnx("%s not updated, will retry: %s", m->what, cause);
	if (!event_pending(m->ev_write, EV_TIMEOUT, NULL))
		event_add(m->ev_write, &retry);
}

/* The writer thread's results, back on the loop. */
static void
mirror_written_cb(int results, const char *cause, void *arg)
{
	struct mirror *m = arg;

	m->writes += (unsigned long long)results - (cause != NULL);
	if (cause != NULL)
		mirror_failed(m, cause);
	else
		m->last_write = time(NULL);
}

/* After the debounce: render now, write on the writer's thread. */
static void
mirror_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct mirror *m = arg;
	size_t len;
	char *text = m->render(m->arg, &len);

	writer_submit(m->writer, text, len);
}

static void
mirror_changed_cb(void *arg)
{
	struct mirror *m = arg;
	struct timeval tv = { m->debounce_ms / 1000,
		(m->debounce_ms % 1000) * 1000 };

	if (!event_pending(m->ev_write, EV_TIMEOUT, NULL))
		event_add(m->ev_write, &tv);
}

void
mirror_init(struct mirror *m, const struct mirror_config *cfg)
{
	memset(m, 0, sizeof *m);
	m->path = xstrdup(cfg->path);
	m->what = cfg->what;
	m->reg = cfg->reg;
	m->render = cfg->render;
	m->arg = cfg->arg;
	m->debounce_ms = cfg->debounce_ms;
	m->retry_ms = cfg->retry_ms;
	m->ev_write = evtimer_new(m->reg->base, mirror_write_cb, m);
	m->mode = cfg->mode != 0 ? cfg->mode : 0644;
	m->writer = writer_create(m->reg->base, m->path, mirror_written_cb, m);
	writer_set_mode(m->writer, m->mode);
	registry_listen(m->reg, mirror_changed_cb, m);
}

/* Writes the file now, on the loop: at start, to fail early, and at exit. */
int
mirror_flush(struct mirror *m)
{
	char *text, *cause = NULL;
	size_t len;
	int rc;

	if (event_pending(m->ev_write, EV_TIMEOUT, NULL))
		event_del(m->ev_write);
	if (m->writer != NULL)
		writer_drain(m->writer); /* an older text must not land last */
	text = m->render(m->arg, &len);
	rc = sdfile_replace_mode(m->path, text, len, m->mode, &cause);
	free(text);
	if (rc != 0) {
		mirror_failed(m, cause);
		free(cause);
		return -1;
	}
	m->writes++;
	m->last_write = time(NULL);
	log_debug("wrote %s (%zu workers)", m->path, m->reg->count);
	return 0;
}

/* Stops following the registry and drops what is queued: the last write,
 * if any, is the caller's (mirror_flush before mirror_free). */
void
mirror_stop(struct mirror *m)
{
	registry_unlisten(m->reg, mirror_changed_cb, m);
	writer_free(m->writer);
	m->writer = NULL;
	if (event_pending(m->ev_write, EV_TIMEOUT, NULL))
		event_del(m->ev_write);
}

void
mirror_free(struct mirror *m)
{
	event_free(m->ev_write);
	free(m->path);
}
