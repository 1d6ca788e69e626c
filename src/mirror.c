/*
 * A mirror: a file kept in step with the registry (the sd file, the state
 * file).  Bursts of changes are coalesced for debounce_ms, the text is
 * rendered on the loop and written by file_replace on a thread of the
 * mirror's own; a failed write is counted, logged and retried after
 * retry_ms.
 *
 * The thread is promfork's one exception to "no threads": the two fsyncs of
 * a replace stalled the loop 0.2 to 3.3 ms each time on the machines we
 * measured, while registrations and scrapes wait.  Its rule: the thread
 * touches only a rendered string and a path (its own copies), under the
 * lock, and calls nothing but file_replace; it never sees the registry,
 * libevent or the log.  One write at a time; a newer text submitted while
 * one is in flight replaces any older one still waiting, since only the
 * latest matters.  Results come back on the loop through an eventfd.
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

struct mirror_thread {
	char *path; /* the thread's own copy */
	mode_t mode;
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
mirror_thread_main(void *arg)
{
	struct mirror_thread *t = arg;
	char *data, *cause;
	uint64_t one = 1;
	ssize_t n;
	size_t len;
	int rc;

	privsep_thread_drop(); /* it needs no capability to write */
	pthread_mutex_lock(&t->lock);
	for (;;) {
		while (t->pending == NULL && !t->stop)
			pthread_cond_wait(&t->wake, &t->lock);
		if (t->pending == NULL)
			break; /* stopped with nothing left to write */
		data = t->pending;
		len = t->pending_len;
		t->pending = NULL;
		t->busy = 1;
		pthread_mutex_unlock(&t->lock);

		cause = NULL;
		rc = file_replace(t->path, data, len, t->mode, &cause);
		free(data);

		pthread_mutex_lock(&t->lock);
		t->busy = 0;
		t->results++;
		t->failed = rc != 0;
		free(t->cause);
		t->cause = cause;
		pthread_cond_broadcast(&t->wake);
		/* Fails only when the counter is full: woken already. */
		n = write(t->efd, &one, sizeof one);
		(void)n;
	}
	pthread_mutex_unlock(&t->lock);
	return NULL;
}

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

/* On the loop: counts the writes that finished since the last time. */
static void
mirror_done_cb(evutil_socket_t fd, short events, void *arg)
{
	struct mirror *m = arg;
	struct mirror_thread *t = m->thread;
	uint64_t n;
	char *cause;
	int results, failed;

	if (read(t->efd, &n, sizeof n) != sizeof n && errno != EAGAIN)
		log_warn("mirror eventfd");
	pthread_mutex_lock(&t->lock);
	results = t->results;
	failed = t->failed;
	cause = t->cause;
	t->results = 0;
	t->cause = NULL;
	pthread_mutex_unlock(&t->lock);
	if (results > 0) {
		m->writes += (unsigned long long)results - (failed != 0);
		if (failed)
			mirror_failed(m, cause);
		else
			m->last_write = time(NULL);
	}
	free(cause);
}

static void
mirror_thread_create(struct mirror *m)
{
	struct mirror_thread *t = xcalloc(1, sizeof *t);
	int err;

	t->path = xstrdup(m->path);
	t->mode = m->mode;
	if ((t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) == -1)
		fatal("eventfd");
	t->ev_done = event_new(m->reg->base, t->efd, EV_READ | EV_PERSIST,
	    mirror_done_cb, m);
	if (t->ev_done == NULL || event_add(t->ev_done, NULL) != 0)
		fatalx("cannot watch the %s writer", m->what);
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->wake, NULL);
	if ((err = pthread_create(&t->thread, NULL, mirror_thread_main, t)) !=
	    0)
		fatalx("cannot start the %s writer: %s", m->what,
		    strerror(err));
	m->thread = t;
}

/* Queues text (taken, malloc'd) for the thread; the latest wins. */
static void
mirror_thread_submit(struct mirror_thread *t, char *text, size_t len)
{
	pthread_mutex_lock(&t->lock);
	free(t->pending);
	t->pending = text;
	t->pending_len = len;
	pthread_cond_signal(&t->wake);
	pthread_mutex_unlock(&t->lock);
}

/* Waits until nothing is queued or in flight. */
static void
mirror_thread_drain(struct mirror_thread *t)
{
	pthread_mutex_lock(&t->lock);
	while (t->pending != NULL || t->busy)
		pthread_cond_wait(&t->wake, &t->lock);
	pthread_mutex_unlock(&t->lock);
}

/* Drops what is queued, waits for the write in flight, ends the thread. */
static void
mirror_thread_free(struct mirror_thread *t)
{
	pthread_mutex_lock(&t->lock);
	free(t->pending);
	t->pending = NULL;
	t->stop = 1;
	pthread_cond_broadcast(&t->wake);
	pthread_mutex_unlock(&t->lock);
	pthread_join(t->thread, NULL);
	event_free(t->ev_done);
	close(t->efd);
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->wake);
	free(t->cause);
	free(t->path);
	free(t);
}

/* After the debounce: render now, write on the thread. */
static void
mirror_write_cb(evutil_socket_t fd, short events, void *arg)
{
	struct mirror *m = arg;
	size_t len;
	char *text = m->render(m->reg, m->arg, &len);

	mirror_thread_submit(m->thread, text, len);
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
	m->mode = cfg->mode != 0 ? cfg->mode : 0644;
	m->ev_write = evtimer_new(m->reg->base, mirror_write_cb, m);
	mirror_thread_create(m);
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
	if (m->thread != NULL)
		mirror_thread_drain(m->thread); /* an older text must not land
						 * last */
	text = m->render(m->reg, m->arg, &len);
	rc = file_replace(m->path, text, len, m->mode, &cause);
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

/*
 * Stops following the registry and ends the thread, dropping what is
 * queued: from here the file is the caller's, for a last word before
 * mirror_finish (mirror_flush, or a text of its own).
 */
void
mirror_stop(struct mirror *m)
{
	if (m->thread == NULL)
		return;
	registry_unlisten(m->reg, mirror_changed_cb, m);
	mirror_thread_free(m->thread);
	m->thread = NULL;
	if (event_pending(m->ev_write, EV_TIMEOUT, NULL))
		event_del(m->ev_write);
}

void
mirror_finish(struct mirror *m)
{
	mirror_stop(m);
	event_free(m->ev_write);
	free(m->path);
}
