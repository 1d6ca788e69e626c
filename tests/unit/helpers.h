/*
 * What the unit suites share: a scratch directory, small file helpers, a
 * bounded event loop, a probe that calls every port free and a process to
 * lease.  Compiled into every unit test (tests/meson.build).
 */
#ifndef HELPERS_H
#define HELPERS_H

#include <sys/types.h>

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct registry;

/* A fresh directory under /tmp, named after the suite; removed by rmtree. */
char *helpers_tmpdir(const char *suite);
void helpers_rmtree(const char *dir);
/* dir/name, malloc'd. */
char *helpers_path(const char *dir, const char *name);
/* The whole file, NUL-terminated and malloc'd; NULL when it is missing. */
char *helpers_read_file(const char *path);
void helpers_write_file(const char *path, const char *text);
/* How many entries dir holds, besides . and .. */
int helpers_dir_entries(const char *dir);

/* Runs the loop until cond(arg) holds or ms pass; returns cond's last. */
int
helpers_loop_until(struct event_base *, int (*cond)(void *), void *arg, int ms);
/* Sends req on fd, runs the loop until the answer holds until; its
 * length. */
int helpers_ask(struct event_base *, int fd, const char *req, const char *until,
    char *buf, size_t cap);
/* Runs the loop for about ms. */
void helpers_loop_ms(struct event_base *, int ms);
void helpers_sleep_ms(int ms);
/* Under valgrind: for the few tests of limits or throughput it changes. */
int helpers_under_valgrind(void);

/* A pool probe for tests that bind nothing: every port is free. */
int helpers_probe_all_free(uint16_t port, void *arg);
/* The body of an HTTP response held whole in text. */
const char *helpers_body_of(const char *response);

/* out's text, NUL-terminated and malloc'd; out is freed. */
char *helpers_evbuffer_text(struct evbuffer *out);
/* How many times needle occurs in hay, overlaps included. */
int helpers_count(const char *hay, const char *needle);

/* A child that waits to be killed; helpers_kid_kill reaps it. */
pid_t helpers_kid(void);
void helpers_kid_kill(pid_t);

#endif
