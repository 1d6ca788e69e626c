/*
 * promfork: one metrics port per worker of a pre-fork server, each worker
 * published as its own Prometheus target.
 *
 * The internal header: shared structures and every module's prototypes,
 * grouped by file in the order data flows: sources -> registry -> sinks.
 */
#ifndef PROMFORK_H
#define PROMFORK_H

#include <sys/types.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct event;
struct event_base;
struct evbuffer;
struct bufferevent;
struct evconnlistener;
typedef struct json_t json_t;

#define PROMFORK_VERSION "0.1.0"
#define PROMFORK_SOCKET_ENV "PROMFORK_SOCKET"

#define PRINTFLIKE(f, a) __attribute__((format(printf, f, a)))
#define NORETURN __attribute__((noreturn))

/* log.c */
enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };
int log_level_parse(const char *, enum log_level *);
void log_init(enum log_level, int json);
void log_warn(const char *, ...) PRINTFLIKE(1, 2);
void log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void log_info(const char *, ...) PRINTFLIKE(1, 2);
void log_debug(const char *, ...) PRINTFLIKE(1, 2);
void fatal(const char *, ...) PRINTFLIKE(1, 2) NORETURN;
void fatalx(const char *, ...) PRINTFLIKE(1, 2) NORETURN;

/* xmalloc.c */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);
int xvasprintf(char **, const char *, va_list);

/* label.c */
struct label {
	char *name;
	char *value;
};
struct labels {
	struct label *v;
	size_t n;
};
#define LABEL_VALUE_MAX 1024
#define LABELS_MAX 32
int label_name_check(const char *, char **cause);
int labels_set(struct labels *, const char *name, const char *value,
    char **cause);
int labels_set_arg(struct labels *, const char *arg, char **cause);
int labels_from_json(struct labels *, json_t *, char **cause);
json_t *labels_to_json(const struct labels *);
const char *labels_get(const struct labels *, const char *name);
void labels_copy(struct labels *, const struct labels *);
void labels_clear(struct labels *);

/* options.c */
struct options {
	uint16_t port_low;
	uint16_t port_high;
	char *sd_file;
	int sd_remove_on_exit;
	char *socket_path;
	char *target_host;
	struct labels labels;
	enum log_level log_level;
	int log_json;
	char **command; /* NULL-terminated, NULL when standalone */
};
enum options_result { OPTIONS_RUN, OPTIONS_EXIT_OK, OPTIONS_EXIT_USAGE };
enum options_result options_parse(struct options *, int argc, char **argv,
    char **message);
int options_parse_port_range(const char *, uint16_t *, uint16_t *,
    char **cause);
void options_usage(void);
void options_free(struct options *);

/* pool.c */
typedef int (*pool_probe_fn)(uint16_t port, void *arg);
struct pool {
	uint16_t low;
	size_t size;
	unsigned char *used;
	size_t nused;
	pool_probe_fn probe;
	void *probe_arg;
};
void pool_init(struct pool *, uint16_t low, uint16_t high, pool_probe_fn,
    void *);
void pool_finish(struct pool *);
int pool_take(struct pool *);
int pool_claim(struct pool *, int slot);
void pool_release(struct pool *, int slot);
uint16_t pool_port(const struct pool *, int slot);
int pool_slot(const struct pool *, uint16_t port);
size_t pool_free(const struct pool *);
int pool_port_bindable(uint16_t port, void *arg);

/* proc.c */
struct proc_stat {
	pid_t pid;
	char state;
	pid_t ppid;
	unsigned long long utime; /* clock ticks */
	unsigned long long stime;
	unsigned long long starttime; /* clock ticks after boot */
	long long rss_pages;
};
int proc_stat_parse(const char *, size_t, struct proc_stat *, char **cause);
int proc_stat_read(pid_t, struct proc_stat *, char **cause);
int proc_in_tree(pid_t pid, pid_t root);
int proc_pidfd_open(pid_t);

/* registry.c */
enum lease_source { LEASE_API, LEASE_DISCOVER, LEASE_SPAWN };
enum lease_end {
	LEASE_END_EXIT, /* the process is gone */
	LEASE_END_RELEASE, /* asked for, by DELETE */
	LEASE_END_GONE, /* discovery: the listener is gone */
	LEASE_END_SHUTDOWN,
	LEASE_END_COUNT
};
struct registry;
struct lease {
	struct registry *reg;
	int worker;
	uint16_t port;
	pid_t pid;
	unsigned long long starttime;
	int pidfd;
	struct event *ev_exit;
	struct labels labels;
	enum lease_source source;
	time_t created; /* wall clock, for people */
	struct timespec created_mono;
};
typedef void (*registry_change_fn)(void *arg);
struct registry_listener {
	registry_change_fn fn;
	void *arg;
};
struct registry_stats {
	unsigned long long registrations;
	unsigned long long refusals;
	unsigned long long ends[LEASE_END_COUNT];
	unsigned long long *slot_leases; /* per slot: leases ever granted */
};
struct registry {
	struct event_base *base;
	struct pool pool;
	struct lease **slots; /* pool.size entries, NULL when free */
	size_t count;
	struct event *ev_check; /* liveness poll for leases without pidfd */
	struct registry_listener listeners[8];
	size_t nlisteners;
	struct registry_stats stats;
};
void registry_init(struct registry *, struct event_base *, uint16_t low,
    uint16_t high, pool_probe_fn, void *probe_arg);
void registry_finish(struct registry *);
void registry_listen(struct registry *, registry_change_fn, void *);
struct lease *registry_lease(struct registry *, pid_t,
    const struct labels *, enum lease_source, int slot, int *created,
    int *status, char **cause);
struct lease *registry_find_pid(struct registry *, pid_t);
struct lease *registry_find_worker(struct registry *, int);
void registry_check(struct registry *);
void registry_clear(struct registry *, enum lease_end);
const char *lease_end_name(enum lease_end);
const char *lease_source_name(enum lease_source);
void lease_close(struct lease *, enum lease_end);

/* target.c */
struct target_config {
	const char *host;
	const struct labels *labels;
};
json_t *target_groups(const struct registry *, const struct target_config *);
char *target_render(const struct registry *, const struct target_config *,
    size_t *);
char *target_address(const struct target_config *, uint16_t port);

/* sdfile.c */
struct sdfile {
	char *path;
	struct registry *reg;
	const struct target_config *tc;
	struct event *ev_write;
	unsigned long long writes;
	unsigned long long errors;
	time_t last_write;
};
int sdfile_check(const char *path, char **cause);
int sdfile_replace(const char *path, const char *data, size_t len,
    char **cause);
void sdfile_init(struct sdfile *, const char *path, struct registry *,
    const struct target_config *);
int sdfile_flush(struct sdfile *);
int sdfile_finish(struct sdfile *, int remove);

/* http.c */
#define HTTP_HEADERS_MAX 32
struct http_header {
	char *name;
	char *value;
};
struct http_request {
	char method[16];
	char *target; /* path and query as sent */
	int minor; /* HTTP/1.minor */
	struct http_header headers[HTTP_HEADERS_MAX];
	size_t nheaders;
	char *body;
	size_t body_len;
	int keep_alive;
};
struct http_limits {
	size_t header_max;
	size_t body_max;
	int deadline_ms; /* a whole request must arrive within this */
	int conns_max;
};
int http_request_parse(const char *, size_t, const struct http_limits *,
    struct http_request *, size_t *consumed, int *status);
void http_request_clear(struct http_request *);
const char *http_request_header(const struct http_request *, const char *);
const char *http_status_text(int);

struct http_server;
struct http_conn;
typedef void (*http_handler_fn)(struct http_conn *, struct http_request *,
    void *arg);
struct http_server *http_server_create(struct event_base *, int listen_fd,
    const struct http_limits *, http_handler_fn, void *arg);
int http_server_conns(const struct http_server *);
void http_server_free(struct http_server *);
typedef void (*http_close_fn)(void *arg);
int http_conn_fd(const struct http_conn *);
void http_conn_on_close(struct http_conn *, http_close_fn, void *);
void http_reply(struct http_conn *, int status, const char *content_type,
    const char *body, size_t len);
void http_reply_json(struct http_conn *, int status, json_t *);
void http_reply_error(struct http_conn *, int status, const char *fmt, ...)
    PRINTFLIKE(3, 4);
struct evbuffer *http_reply_start(struct http_conn *, int status,
    const char *content_type);
void http_reply_flush(struct http_conn *);
void http_reply_end(struct http_conn *);

/* api.c */
struct api_config {
	pid_t tree_root; /* wrapped command's pid; 0 when standalone */
	const struct target_config *tc;
};
struct api;
int api_listen(const char *path, char **cause);
struct api *api_create(struct event_base *, int fd, struct registry *,
    const struct api_config *);
void api_free(struct api *);
int api_authorise(const struct api_config *, pid_t peer, pid_t pid,
    char **cause);

/* child.c */
struct child {
	pid_t pid;
	int exited;
	int status; /* exit status promfork should pass on */
};
int child_start(struct child *, char **argv, const char *socket_path,
    char **cause);
int child_wait_status(int wstatus);
void child_signal(struct child *, int sig);

/* client.c */
int client_lease_main(int argc, char **argv);

#endif
