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
#include <sys/socket.h>

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
enum log_level {
	LOG_LEVEL_ERROR,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG
};
int log_level_parse(const char *, enum log_level *);
void log_init(enum log_level, int json);
void log_warn(const char *, ...) PRINTFLIKE(1, 2);
void log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void log_info(const char *, ...) PRINTFLIKE(1, 2);
void log_debug(const char *, ...) PRINTFLIKE(1, 2);
void fatal(const char *, ...) PRINTFLIKE(1, 2) NORETURN;
#define LOG_LIMIT_PER_S 10
struct log_limit {
	time_t second; /* monotonic */
	unsigned int lines; /* logged in that second */
	unsigned long long suppressed;
};
int log_limit(struct log_limit *, const char *what);
void fatalx(const char *, ...) PRINTFLIKE(1, 2) NORETURN;

/* xmalloc.c */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) PRINTFLIKE(2, 3);
int xvasprintf(char **, const char *, va_list);

/* buf.c */
struct buf {
	char *data;
	size_t len;
	size_t cap;
};
void buf_reserve(struct buf *, size_t);
void buf_add(struct buf *, const void *, size_t);
void buf_printf(struct buf *, const char *, ...) PRINTFLIKE(2, 3);
void buf_finish(struct buf *);
/* decimal.c */
int decimal_parse_n(const char *, size_t, long long min, long long max,
    long long *, char **cause);
int decimal_parse(const char *, long long min, long long max, long long *,
    char **cause);

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
int
labels_set(struct labels *, const char *name, const char *value, char **cause);
int labels_set_arg(struct labels *, const char *arg, char **cause);
int labels_from_json(struct labels *, json_t *, char **cause);
json_t *labels_to_json(const struct labels *);
const char *labels_get(const struct labels *, const char *name);
int labels_equal(const struct labels *, const struct labels *);
void labels_copy(struct labels *, const struct labels *);
void labels_finish(struct labels *);

/* options.c */
#define OPTIONS_LISTEN_MAX 16 /* --listen and systemd's sockets */
struct options {
	uint16_t port_low;
	uint16_t port_high;
	char *sd_file;
	int sd_remove_on_exit;
	char *socket_path;
	char *target_host;
	struct labels labels;
	char *listen[OPTIONS_LISTEN_MAX]; /* --listen ADDR:PORT, repeatable */
	size_t nlisten;
	int systemd_socket; /* --systemd-socket: LISTEN_FDS too */
	size_t http_budget_bytes; /* --http-budget; 0: the default */
	char *web_config; /* --web.config.file, NULL when off */
	int proxy_targets; /* targets point through /workers/N/metrics */
	int http_deadline_ms; /* --http-deadline */
	int continuity; /* carried totals: on unless --no-continuity */
	int carry_hold_ms; /* --carry-hold */
	size_t carry_max_series; /* --carry-max-series */
	enum log_level log_level;
	int log_json;
	int discover; /* --discover */
	int discover_interval_ms;
	char **command; /* NULL-terminated, NULL when standalone */
	int check; /* --check: validate, report and exit */
	int workers; /* --workers: spawn mode when > 0 */
	int grace_ms; /* --grace: TERM to KILL in spawn mode */
	char *state_file; /* standalone only */
	uid_t *allow_uids;
	size_t nallow_uids;
	gid_t *allow_gids;
	size_t nallow_gids;
	char *user; /* --user: COMMAND runs as this user */
	char *group; /* --group */
	char *privsep_user; /* --privsep-user: promfork's own, from root */
	int max_leases_per_uid; /* standalone */
	int history_resolution_s; /* --history-resolution */
	int history_window_s; /* --history-window */
};
enum options_result { OPTIONS_RUN, OPTIONS_EXIT_OK, OPTIONS_EXIT_USAGE };
enum options_result
options_parse(struct options *, int argc, char **argv, char **message);
int
options_parse_port_range(const char *, uint16_t *, uint16_t *, char **cause);
void options_usage(void);
void options_finish(struct options *);

/* pool.c */
typedef int (*pool_probe_fn)(uint16_t port, void *arg);
struct pool {
	uint16_t low;
	size_t size;
	unsigned char *used;
	size_t nused;
	uint64_t *exited_ms; /* per slot: when an exit freed it; 0: never */
	pool_probe_fn probe;
	void *probe_arg;
};
void
pool_init(struct pool *, uint16_t low, uint16_t high, pool_probe_fn, void *);
void pool_finish(struct pool *);
#define POOL_RECENT_MS 10000 /* a slot freed by an exit is kept this long */
int pool_take(struct pool *);
int pool_take_preferred(struct pool *, int preferred, uint64_t now_ms);
int pool_claim(struct pool *, int slot);
void pool_release(struct pool *, int slot);
void pool_release_exited(struct pool *, int slot, uint64_t now_ms);
uint16_t pool_port(const struct pool *, int slot);
size_t pool_nfree(const struct pool *);
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
int proc_exited(int pidfd);
/* A process held by its pidfd (-1 where there is none), and its stat. */
struct proc_ref {
	pid_t pid;
	int pidfd;
	struct proc_stat st;
};
int proc_ref_init(pid_t, struct proc_ref *, char **cause);
void proc_ref_finish(struct proc_ref *);
#define PROC_GROUPS_MAX 256
/* Who a process runs as, from /proc/PID/status. */
struct proc_creds {
	uid_t uid; /* real */
	gid_t gid;
	gid_t groups[PROC_GROUPS_MAX];
	size_t ngroups;
};
int proc_creds_parse(const char *, size_t, struct proc_creds *, char **cause);
int proc_creds_read(pid_t, struct proc_creds *, char **cause);
int proc_out_of_fds(int err);
#define PROC_BOOT_ID_LEN 36 /* a UUID */
const char *proc_boot_id(void);
unsigned long long proc_nofile_raise(void);
void proc_nofile_restore(void);

/* privsep.c */
#define PRIVSEP_GROUPS_MAX 64
struct privsep_cred {
	uid_t uid;
	gid_t gid;
	gid_t groups[PRIVSEP_GROUPS_MAX]; /* supplementary */
	int ngroups;
	char *name;
};
int privsep_lookup(struct privsep_cred *, const char *user, const char *group,
    gid_t exclude, char **cause);
void privsep_cred_clear(struct privsep_cred *);
int privsep_can_setid(void);
int privsep_can_trace(void);
int privsep_apply(const struct privsep_cred *);
int privsep_keep(int setid, int kill, char **cause);
int privsep_drop(const struct privsep_cred *, char **cause);
void privsep_thread_drop(void);
int privsep_setup(struct privsep_cred *, const struct options *,
    const char *socket_path, const char *socket_dir, char **cause);

/* registry.c */
enum lease_source { LEASE_API, LEASE_DISCOVER, LEASE_SPAWN };
enum lease_end {
	LEASE_END_EXIT, /* the process is gone */
	LEASE_END_RELEASE, /* asked for, by DELETE */
	LEASE_END_GONE, /* discovery: the listener is gone */
	LEASE_END_SHUTDOWN,
	LEASE_END_RETIRE, /* asked for before a graceful exit */
	LEASE_END_COUNT
};
struct registry;
struct continuity;
struct continuity_config;
struct carry;
/* The last scrape of a worker through promfork (proxy, fan-out, status). */
struct lease_scrape {
	time_t when; /* wall clock; 0 when never scraped */
	int ok;
	int status; /* HTTP status; 0 when there was no answer */
	int duration_ms;
	char error[128];
};
struct lease {
	struct registry *reg;
	int worker;
	uint16_t port;
	pid_t pid;
	unsigned long long starttime;
	int pidfd; /* in the registry's exit set */
	struct labels labels;
	enum lease_source source;
	time_t created; /* wall clock, for people */
	struct timespec created_mono;
	uid_t uid; /* standalone: the user of its process; -1 when unknown */
	struct lease_scrape scrape;
	struct buf body; /* the last whole answer: this lifetime's final values
			  * should it end without a retire */
	uint64_t body_stamp; /* the stamp of the scrape that got it */
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
/* Why registry_lease gave no lease; api.c says it in HTTP. */
enum registry_error {
	REGISTRY_OK,
	REGISTRY_FULL, /* no free port, or the slot asked for is taken */
	REGISTRY_GONE, /* the process has exited */
	REGISTRY_NOFDS /* out of file descriptors: ours, and passing */
};
struct registry {
	struct event_base *base;
	struct pool pool;
	struct lease **slots; /* pool.size entries, NULL when free */
	unsigned char *reserved; /* per slot: 1 + the source it is held for */
	size_t count;
	struct event *ev_check; /* liveness poll for leases without pidfd */
	int exit_fd; /* epoll set of the leases' pidfds */
	struct event *ev_exits; /* exit_fd readable: a lease's process exited */
	struct registry_listener listeners[8];
	size_t nlisteners;
	struct registry_stats stats;
	int prefer; /* the slot the registration being made asks for, or -1 */
	struct continuity *cont; /* the slots' carried totals */
};
void registry_init(struct registry *, struct event_base *, uint16_t low,
    uint16_t high, pool_probe_fn, void *probe_arg);
void registry_finish(struct registry *);
void registry_listen(struct registry *, registry_change_fn, void *);
void registry_unlisten(struct registry *, registry_change_fn, void *);
struct lease *registry_lease(struct registry *, struct proc_ref *,
    const struct labels *, enum lease_source, int slot, int *created,
    enum registry_error *, char **cause);
struct lease *registry_lease_pid(struct registry *, pid_t,
    const struct labels *, enum lease_source, int slot, int *created,
    enum registry_error *, char **cause);
struct lease *registry_lease_prefer(struct registry *, struct proc_ref *,
    const struct labels *, enum lease_source, int prefer, int *created,
    enum registry_error *, char **cause);
void registry_continuity(struct registry *, const struct continuity_config *);
uint64_t registry_stamp(struct registry *);
struct carry *registry_carry(struct registry *, int slot, int live);
int registry_adopt_carry(struct registry *, int slot, const char *, size_t);
void registry_count_refusal(struct registry *);
int registry_reserve(struct registry *, int slot, enum lease_source);
void registry_unreserve(struct registry *, int slot);
struct lease *registry_next(const struct registry *, int worker);
/* Every live lease in slot order; the _SAFE form lets the body end l. */
#define REGISTRY_FOREACH(l, reg) \
	for ((l) = registry_next((reg), -1); (l) != NULL; \
	     (l) = registry_next((reg), (l)->worker))
#define REGISTRY_FOREACH_SAFE(l, reg, w) \
	for ((l) = registry_next((reg), -1); \
	     (l) != NULL && ((w) = (l)->worker, 1); \
	     (l) = registry_next((reg), (w)))
void registry_relabel(struct registry *, struct lease *, const struct labels *);
struct lease *registry_find_pid(struct registry *, pid_t);
struct lease *registry_find_worker(const struct registry *, int);
struct lease *registry_find_lease(const struct registry *, int worker, pid_t,
    unsigned long long starttime);
int registry_count_uid(const struct registry *, uid_t);
void registry_check(struct registry *);
void registry_clear(struct registry *, enum lease_end);
const char *lease_end_name(enum lease_end);
const char *lease_source_name(enum lease_source);
int lease_source_parse(const char *, enum lease_source *);
void lease_close(struct lease *, enum lease_end);
struct scrape_result;
void lease_record_scrape(struct lease *, const struct scrape_result *);
void lease_keep_body(struct lease *, uint64_t stamp, struct buf *);

/* target.c */
struct target_config {
	const char *host;
	const struct labels *labels;
	/* When set, every target is this address (promfork's listener) and
	 * __metrics_path__ is /workers/N/metrics: scrapes go through the proxy. */
	const char *proxy_address;
};
char *
target_render(const struct registry *, const struct target_config *, size_t *);
char *target_address(const struct target_config *, uint16_t port);

/* file.c */
char *file_dir(const char *path);
int file_dir_writable(const char *dir);
int file_replace(const char *path, const char *data, size_t len, mode_t,
    char **cause);
int
file_read(const char *path, size_t max, char **buf, size_t *len, char **cause);

/* mirror.c: a file kept in step with the registry, written off the loop */
typedef char *(*mirror_render_fn)(const struct registry *, const void *arg,
    size_t *len); /* malloc'd text */
struct mirror_config {
	const char *path;
	const char *what; /* for the log: "sd file" */
	struct registry *reg;
	mirror_render_fn render;
	const void *arg;
	int debounce_ms; /* changes coalesced this long */
	int retry_ms; /* after a failed write */
	mode_t mode; /* of the file; 0: 0644 */
};
struct mirror_thread;
struct mirror {
	char *path;
	const char *what;
	struct registry *reg;
	mirror_render_fn render;
	const void *arg;
	int debounce_ms;
	int retry_ms;
	mode_t mode;
	struct event *ev_write;
	struct mirror_thread *thread; /* writes off the loop; NULL stopped */
	unsigned long long writes;
	unsigned long long errors;
	time_t last_write;
};
void mirror_init(struct mirror *, const struct mirror_config *);
int mirror_flush(struct mirror *);
void mirror_stop(struct mirror *);
void mirror_finish(struct mirror *);

/* sdfile.c */
enum sd_exit {
	SD_EXIT_EMPTY, /* [], for a Prometheus that outlives us */
	SD_EXIT_REMOVE, /* --sd-remove-on-exit */
	SD_EXIT_KEEP /* the current workers, who outlive us (standalone) */
};
int sdfile_check(const char *path, char **cause);
void sdfile_init(struct mirror *, const char *path, struct registry *,
    const struct target_config *);
int sdfile_finish(struct mirror *, enum sd_exit);

/* http.c */
#define HTTP_HEADERS_MAX 32
/* The Prometheus text exposition format, as promfork serves it. */
#define HTTP_EXPOSITION_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* What promfork asks workers for: the format it reads. */
#define HTTP_EXPOSITION_ACCEPT "text/plain;version=0.0.4"
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
	int idle_ms; /* between requests; 0: the deadline */
	int life_ms; /* then the next answer closes; 0: no limit */
	int peer_conns_max; /* per uid (Unix) or address (IP); 0: no limit */
};
/* Who is at the other end of a connection, as of its accept. */
struct http_peer {
	sa_family_t family;
	struct ucred cred; /* AF_UNIX */
	unsigned char addr[16]; /* IP: IPv6, IPv4 as IPv4-mapped */
};
int http_request_parse(const char *, size_t, const struct http_limits *,
    struct http_request *, size_t *consumed, int *status);
void http_request_finish(struct http_request *);
const char *http_request_header(const struct http_request *, const char *);
const char *http_status_text(int);

struct http_server;
struct http_conn;
typedef void (
    *http_handler_fn)(struct http_conn *, struct http_request *, void *arg);
typedef int (
    *http_accept_fn)(int fd, const struct http_peer *, void *arg, char **cause);
struct http_server *http_server_create(struct event_base *, int listen_fd,
    const struct http_limits *, http_handler_fn, void *arg);
void http_server_set_accept(struct http_server *, http_accept_fn);
void http_server_pin_by_pid(struct http_server *);
/* TLS and authentication (webguard.c sets them on the listener): at each
 * accept, the SSL_CTX for the connection (NULL: plain); before the handler,
 * a gate that answers itself and returns -1 to stop a request. */
struct ssl_ctx_st;
typedef struct ssl_ctx_st *(*http_tls_fn)(void *arg);
typedef int (
    *http_gate_fn)(struct http_conn *, struct http_request *, void *arg);
void http_server_set_tls(struct http_server *, http_tls_fn, void *);
void http_server_set_gate(struct http_server *, http_gate_fn, void *);
int http_server_conns(const struct http_server *);
void http_server_free(struct http_server *);
typedef void (*http_close_fn)(void *arg);
int http_conn_fd(const struct http_conn *);
const struct http_peer *http_conn_peer(const struct http_conn *);
int http_conn_peer_alive(const struct http_conn *);
void http_conn_last(struct http_conn *);
void http_conn_on_close(struct http_conn *, http_close_fn, void *);
void http_conn_policy(struct http_conn *, const char *);
void http_conn_encoding(struct http_conn *, const char *);
typedef void (*http_unref_fn)(const void *data, size_t len, void *arg);
void http_reply_ref(struct http_conn *, int status, const char *content_type,
    const char *body, size_t len, http_unref_fn, void *arg);
void http_conn_headers(struct http_conn *, const char *);
struct ssl_ctx_st *http_conn_tls_ctx(const struct http_conn *);
void http_conn_drop(struct http_conn *, const char *why);
size_t http_conn_unsent(const struct http_conn *);
void http_conn_on_drain(struct http_conn *, size_t low, http_close_fn, void *);
void http_reply(struct http_conn *, int status, const char *content_type,
    const char *body, size_t len);
void http_reply_json(struct http_conn *, int status, json_t *);
void http_reply_error(struct http_conn *, int status, const char *fmt, ...)
    PRINTFLIKE(3, 4);
void http_reply_end(struct http_conn *);
void http_reply_stream(struct http_conn *, int status, const char *content_type,
    long long length);
void http_reply_write(struct http_conn *, struct evbuffer *);
void http_reply_abort(struct http_conn *, const char *why);

/* api.c */
#define API_CONNS_MAX 256
/* One user may hold three quarters: a quarter is always left for others. */
#define API_PEER_CONNS_MAX (API_CONNS_MAX * 3 / 4)
#define API_IDLE_MS 2000 /* between requests on a kept-alive connection */
#define API_LIFE_MS 60000 /* then the next answer closes the connection */
struct api_config {
	pid_t tree_root; /* promfork's pid, the root of the tree that may
			  * register; 0 when standalone */
	const struct target_config *tc;
	/* standalone: who may register besides root and promfork's uid */
	const uid_t *allow_uids;
	size_t nallow_uids;
	const gid_t *allow_gids;
	size_t nallow_gids;
	/* wrapping: the user and group the command runs as */
	uid_t command_uid;
	gid_t command_gid;
	int max_leases_per_uid; /* standalone; 0: no cap */
};
struct api;
mode_t api_socket_mode(const struct api_config *, gid_t *);
void api_socket_default(const struct api_config *, char **path, char **dir);
int api_socket_probe(const char *path, char **cause);
int api_listen(const char *path, const struct api_config *, char **cause);
struct api *api_create(struct event_base *, int fd, struct registry *,
    const struct api_config *);
void api_free(struct api *);
int api_authorise(const struct api_config *, pid_t peer,
    const struct proc_stat *, char **cause);
int api_authorise_user(const struct api_config *, uid_t, gid_t,
    const gid_t *groups, size_t ngroups, char **cause);
int api_authorise_uid(const struct api_config *, uid_t, char **cause);
int api_authorise_owner(const struct api_config *, uid_t, pid_t peer,
    const struct lease *, char **cause);
int api_labels_check(const struct api_config *, const struct labels *,
    char **cause);
int api_authorise_process(const struct api_config *, const struct registry *,
    uid_t caller, pid_t, int counted, uid_t *owner, int *status, char **cause);

/* discover.c */
#define DISCOVER_INTERVAL_MS 200
#define DISCOVER_SOCKS_MAX 65536
struct discover_sock {
	uint32_t inode;
	uid_t uid; /* the socket's owner */
	uint16_t port;
	uint8_t family;
	uint8_t state; /* the kernel's TCP state */
};
struct discover_socks {
	struct discover_sock *v;
	size_t n;
	size_t cap;
	int error; /* errno the kernel reported, after a failed parse */
};
struct discover_proc {
	pid_t pid;
	pid_t ppid;
	int depth; /* below the root, which is 0; -1 outside its tree */
};
struct discover_config {
	pid_t root; /* promfork: only its descendants are looked at */
	uint16_t low;
	uint16_t high;
	int interval_ms;
};
struct discover_stats {
	unsigned long long passes;
	unsigned long long walks; /* passes that read /proc */
	unsigned long long walks_deferred; /* over DISCOVER_WALKS_PER_S */
	unsigned long long errors;
	unsigned long long last_pass_us;
	unsigned long long last_walk_us;
	size_t last_walk_procs; /* processes whose fds the last walk read */
	size_t listeners; /* in the range, at the last pass */
};
struct discover;
int discover_parse_diag(const void *, size_t, uint32_t seq, uint16_t low,
    uint16_t high, struct discover_socks *, int *done, char **cause);
int discover_parse_fdlink(const char *, size_t, uint32_t *inode, char **cause);
void discover_tree_mark(struct discover_proc *, size_t, pid_t root);
void discover_socks_finish(struct discover_socks *);
int discover_listeners(uint16_t low, uint16_t high, struct discover_socks *,
    char **cause);
void discover_holders(const struct discover_socks *, pid_t *pids);
int discover_port_owned(const struct discover_socks *, uint16_t port, pid_t,
    pid_t **holders, pid_t *holder, uid_t *uid);
struct discover *discover_create(struct event_base *, struct registry *,
    const struct discover_config *, char **cause);
int discover_scan(struct discover *);
const struct discover_stats *discover_stats(const struct discover *);
void discover_free(struct discover *);
struct discover *
discover_setup(struct event_base *, struct registry *, const struct options *);

/* scrape.c */
#define SCRAPE_HEAD_MAX (16 * 1024)
struct scrape_head {
	int status;
	char content_type[256]; /* empty when not sent */
	long long length; /* Content-Length; -1 when not sent */
	int gzip; /* Content-Encoding: gzip */
};
struct scrape_result {
	int status; /* HTTP status; 0 when there was no answer */
	const char *error; /* NULL when the whole body arrived */
	int duration_ms;
	size_t bytes; /* body bytes received */
	int timed_out; /* the deadline passed */
};
/* head and body return 0 to go on, -1 to stop; done runs exactly once,
 * never from inside scrape_start, and not after scrape_cancel. */
struct scrape_callbacks {
	int (*head)(const struct scrape_head *, void *arg);
	int (*body)(struct evbuffer *, void *arg); /* may take the bytes */
	void (*done)(const struct scrape_result *, void *arg);
};
struct scrape;
int scrape_parse_head(const char *, size_t, struct scrape_head *,
    size_t *consumed, char **cause);
struct scrape *scrape_start(struct event_base *, uint16_t port,
    const char *path, const char *accept, int gzip, int deadline_ms,
    size_t body_max, const struct scrape_callbacks *, void *arg);
struct scrape *scrape_refuse(struct event_base *, uint16_t port,
    const char *error, const struct scrape_callbacks *, void *arg);
void scrape_pause(struct scrape *, int);
void scrape_cancel(struct scrape *);

/* collect.c */
#define COLLECT_PATH "/metrics" /* where every worker is scraped */
struct collect_config {
	const char *accept; /* sent on to the workers; NULL: none */
	int deadline_ms; /* for every scrape, from its start */
	size_t body_max; /* per worker */
	int gzip; /* ask for gzip (Accept-Encoding), pass it through */
};
/* One lease's scrape, as far as it got. */
struct collect_item {
	size_t index; /* in the leases given to collect_start */
	int worker;
	pid_t pid;
	unsigned long long starttime;
	int ok; /* the whole answer arrived, whatever its status */
	int status; /* HTTP status; 0 when there was no answer */
	int timed_out; /* the deadline passed */
	double seconds; /* how long the scrape took */
	char error[160]; /* why it failed; empty when ok */
};
/* head and body may be NULL; they return 0 to go on, -1 to stop that
 * worker's scrape.  done runs exactly once, when every scrape has ended. */
struct collect_callbacks {
	int (*head)(struct collect_item *, const struct scrape_head *, void *);
	int (*body)(struct collect_item *, struct evbuffer *, void *);
	void (*done)(struct collect_item *, size_t n, void *arg);
};
struct collect;
struct collect *collect_start(struct event_base *, struct registry *,
    struct lease *const *, size_t n, const struct collect_config *,
    const struct collect_callbacks *, void *arg);
void collect_pause(struct collect *, int);
void collect_cancel(struct collect *);

/* proxy.c */
#define PROXY_BODY_MAX (32 * 1024 * 1024)
/* The worker is not read while more than this waits for the client... */
#define PROXY_UNSENT_MAX (1024 * 1024)
/* ...and is read again once no more than this does. */
#define PROXY_UNSENT_LOW (256 * 1024)
const char *proxy_content_type(const char *);
void proxy_serve(struct http_conn *, const struct http_request *,
    struct registry *, int worker, int deadline_ms);

/* table.c */
/* The first member of every entry of a table: the name it is found by. */
struct table_key {
	const char *name;
	uint32_t len;
	uint32_t gen; /* the table's: in use; else an empty slot */
	uint64_t hash;
};
struct table {
	unsigned char *slots; /* cap entries of esize bytes */
	size_t esize;
	size_t n;
	size_t cap; /* 0 or a power of two */
	uint32_t gen; /* of the entries in use; table_clear moves it on */
	uint64_t key[2]; /* SipHash-1-3 key, random */
};
void table_init(struct table *, size_t esize);
void table_finish(struct table *);
uint64_t table_hash(const struct table *, const char *, size_t);
void *table_find(const struct table *, const char *, size_t);
void *table_add(struct table *, const char *, size_t, int *added);
void *table_next(const struct table *, size_t *);
void table_clear(struct table *);

/* value.c */
int value_parse(const char *, size_t);
int value_timestamp_parse(const char *, size_t, long long *);

/* expo.c */
#define EXPO_LINE_MAX (64 * 1024) /* longer lines are malformed */
#define EXPO_LABELS_MAX 64 /* per sample, before worker is added */
/* Taken from one worker per scrape, the rest dropped and counted: bounds
 * the merge's work and memory whatever a worker answers. */
#define EXPO_SERIES_MAX 50000 /* samples */
#define EXPO_NAMES_MAX 4096 /* distinct names in samples, HELP and TYPE */
enum expo_type {
	EXPO_UNTYPED,
	EXPO_COUNTER,
	EXPO_GAUGE,
	EXPO_HISTOGRAM,
	EXPO_SUMMARY,
	EXPO_TYPE_COUNT
};
struct expo_label {
	const char *name;
	size_t namelen;
	const char *value; /* escaped, as on the wire, which is canonical */
	size_t valuelen;
};
struct expo_stats {
	size_t lines;
	size_t samples; /* kept */
	size_t dropped; /* samples of families lost to a type conflict */
	size_t capped; /* lines past EXPO_SERIES_MAX or EXPO_NAMES_MAX */
	size_t malformed; /* lines dropped */
	size_t malformed_line; /* the first of them, from 1; 0 when none */
	size_t type_conflicts; /* families another worker typed otherwise */
	char conflict[64]; /* the first such family, truncated */
};
struct expo_merge;
struct expo_merge *expo_merge_create(void);
int expo_merge_add(struct expo_merge *, const char *worker, const char *text,
    size_t len, struct expo_stats *);
void expo_merge_render(struct expo_merge *, struct buf *);
void expo_merge_reset(struct expo_merge *);
void expo_merge_free(struct expo_merge *);
/* One line of an exposition, as expo_reader_next reads it. */
enum expo_line_kind {
	EXPO_LINE_BLANK,
	EXPO_LINE_COMMENT, /* a comment, or a HELP or TYPE line without text */
	EXPO_LINE_HELP,
	EXPO_LINE_TYPE,
	EXPO_LINE_SAMPLE
};
struct expo_line {
	enum expo_line_kind kind;
	const char *text; /* the whole line, without its newline */
	size_t len;
	size_t lineno; /* from 1 */
	/* HELP, TYPE: the name they describe; SAMPLE: its family */
	const char *family;
	size_t familylen;
	enum expo_type type; /* TYPE, SAMPLE */
	const char *help; /* HELP: escaped as on the wire */
	size_t helplen;
	/* SAMPLE */
	const char *name;
	size_t namelen;
	const struct expo_label *labels; /* valid until the next line */
	size_t nlabels;
	const char *valuetext; /* into text */
	size_t valuelen;
};
/* What an edit does to a sample the merge adds. */
enum expo_edit { EXPO_EDIT_KEEP, EXPO_EDIT_SET, EXPO_EDIT_DROP };
/*
 * EXPO_EDIT_SET: the new value's text at *value, *len long, in the edit's
 * own memory, which stays as it is until the edit's next call.
 */
typedef enum expo_edit (*expo_edit_fn)(void *arg, const struct expo_line *,
    const char **value, size_t *len);
int expo_merge_add_edited(struct expo_merge *, const char *worker,
    const char *text, size_t len, expo_edit_fn, void *arg, struct expo_stats *);
struct expo_reader;
struct expo_reader *expo_reader_create(const char *, size_t);
int expo_reader_next(struct expo_reader *, struct expo_line *);
void expo_reader_free(struct expo_reader *);
const char *expo_type_name(enum expo_type);

/* carry.c */
#define CARRY_HOLD_MS (300 * 1000) /* default --carry-hold */
#define CARRY_MAX_SERIES 100000 /* default --carry-max-series */
/* Shared by the carries of all slots. */
struct carry_limits {
	size_t max_series; /* carried series, all slots together */
	size_t series; /* carried now */
	unsigned long long dropped; /* values not carried: over the cap */
	unsigned long long type_changes; /* families dropped: type changed */
};
struct carry;
struct carry *carry_create(struct carry_limits *);
void carry_clear(struct carry *);
void carry_free(struct carry *);
int carry_empty(const struct carry *);
size_t carry_series(const struct carry *);
void carry_begin(struct carry *, uint64_t stamp);
enum expo_edit
carry_apply(struct carry *, const struct expo_line *, double *served);
enum expo_edit carry_edit(void *carry, const struct expo_line *,
    const char **value, size_t *len);
int carry_complete(const struct carry *);
void carry_end_lifetime(struct carry *);
int carry_add_lifetime(struct carry *, const char *, size_t, size_t *malformed);
void carry_render(struct carry *, struct buf *);
void carry_rewrite(struct carry *, uint64_t stamp, const char *, size_t,
    struct buf *);
void carry_render_finished(const struct carry *, struct buf *);
int carry_merge_add(struct carry *, uint64_t stamp, struct expo_merge *,
    const char *worker, const char *, size_t, struct buf *scratch,
    struct expo_stats *);

/* continuity.c */
struct continuity_config {
	int on; /* --no-continuity turns it off */
	int hold_ms; /* --carry-hold */
	size_t max_series; /* --carry-max-series */
};
struct continuity {
	int on;
	int hold_ms;
	struct carry_limits limits;
	struct carry **carries; /* per slot, NULL until a lifetime ends */
	uint64_t *until_ms; /* per slot: served without a worker until then */
	size_t nslots;
	uint64_t stamp; /* the last scrape's */
	unsigned long long lifetimes; /* ended and carried */
	unsigned long long dropped_logged;
};
struct continuity *
continuity_create(size_t slots, const struct continuity_config *);
void continuity_free(struct continuity *);
uint64_t continuity_stamp(struct continuity *);
size_t continuity_end(struct continuity *, int slot, const char *final,
    size_t len, uint64_t now_ms);
struct carry *
continuity_carry(struct continuity *, int slot, int live, uint64_t now_ms);
int continuity_adopt(struct continuity *, int slot, const char *, size_t,
    uint64_t now_ms);
size_t continuity_render_slot(struct continuity *, int slot, struct buf *);

/* budget.c */
#define BUDGET_DEFAULT_MIB 128
struct budget {
	size_t max;
	size_t used;
	size_t peak;
	unsigned long long refused; /* requests answered 503 for it */
	unsigned long long stopped; /* worker bodies left unread for it */
};
void budget_init(struct budget *, size_t max);
int budget_take(struct budget *, size_t);
void budget_give(struct budget *, size_t);
void budget_hold(struct budget *, size_t);
int budget_full(const struct budget *);

/* gzip.c */
#define GZIP_MIN 512 /* shorter answers go out as they are */
int gzip_accepted(const char *accept_encoding);
int gzip_wanted(const struct http_request *);
int gzip_compress(const char *, size_t, struct buf *out);
void gzip_reply(struct http_conn *, int gzip, int status, const char *type,
    const char *, size_t);

/* fanout.c */
#define FANOUT_BODY_MAX (8 * 1024 * 1024) /* per worker */
struct fanout;
/* Kept from one fan-out scrape to the next, so that a scrape reuses
 * warm buffers instead of growing fresh ones; and the one in flight,
 * which a request arriving meanwhile joins. */
struct fanout_scratch {
	struct expo_merge *merge;
	struct buf out;
	struct buf carried; /* a slot's carried series, rendered */
	struct fanout *inflight;
	struct budget *budget; /* the listener's */
	unsigned long long scrapes; /* fan-outs begun */
	unsigned long long joined; /* requests that shared one in flight */
};
void fanout_serve(struct http_conn *, const struct http_request *,
    struct registry *, int deadline_ms, struct fanout_scratch *);
void fanout_scratch_finish(struct fanout_scratch *);

/* spawn.c: what its supervisor counts, shown in /metrics */
struct spawn_stats {
	unsigned long long starts; /* forks of COMMAND */
	unsigned long long restarts; /* starts after a death or for HUP */
	unsigned long long deaths; /* exits nobody asked for */
	unsigned int workers; /* wanted now: --workers, TTIN, TTOU */
	unsigned int backoff; /* dead, waiting to be restarted */
	unsigned int crash_looping; /* failed SPAWN_LOOP_FAILURES+ in a row */
};

/* metrics.c */
struct metrics_worker {
	int worker;
	int live; /* a lease holds the slot now */
	pid_t pid;
	uint16_t port;
	enum lease_source source;
	const struct labels *labels;
	time_t leased; /* wall clock */
	int have_proc; /* /proc was readable: the fields below are set */
	double cpu_seconds;
	long long rss_bytes;
	double start_time; /* unix seconds */
	unsigned long long leases; /* ever granted on this slot */
	struct lease_scrape scrape;
};
struct metrics_snapshot {
	double now; /* unix seconds */
	double start_time; /* promfork's own */
	double cpu_seconds;
	long long rss_bytes;
	size_t pool_size;
	size_t pool_nfree;
	uint16_t port_low;
	size_t leases;
	unsigned long long registrations;
	unsigned long long refusals;
	unsigned long long ends[LEASE_END_COUNT];
	int have_carry; /* slot continuity is on: the fields below are set */
	size_t carry_series; /* carried now, all slots */
	size_t carry_max_series;
	unsigned long long carry_dropped;
	unsigned long long carry_type_changes;
	unsigned long long carry_lifetimes;
	int have_sdfile;
	const char *sd_path;
	unsigned long long sd_writes;
	unsigned long long sd_errors;
	time_t sd_last_write;
	pid_t child_pid;
	unsigned long long child_exits;
	int http_conns;
	int have_budget; /* the fields below are set */
	struct budget budget;
	unsigned long long fanout_scrapes;
	unsigned long long fanout_joined;
	int have_spawn; /* --workers: the fields below are set */
	struct spawn_stats spawn;
	int have_discover; /* --discover: the fields below are set */
	struct discover_stats discover;
	struct metrics_worker *workers; /* slots that ever had a lease */
	size_t nworkers;
	const struct history *history; /* drawn on the status page; or NULL */
};
struct metrics_sources {
	const struct registry *reg;
	const struct mirror *sdfile; /* NULL without --sd-file */
	const struct child *child;
	struct http_server *const *http; /* the listeners', for their conns */
	size_t nhttp;
	const struct budget *budget; /* NULL: none */
	const struct fanout_scratch *fanout; /* NULL: none */
	struct spawn *spawn; /* NULL without --workers */
	const struct discover *discover; /* NULL without --discover */
	const struct history *history; /* NULL when there is none */
};
void metrics_snapshot_take(struct metrics_snapshot *,
    const struct metrics_sources *);
void metrics_snapshot_finish(struct metrics_snapshot *);
void metrics_render(struct evbuffer *, const struct metrics_snapshot *);

/* history.c: each slot's last window of samples and its lifetimes */
#define HISTORY_RESOLUTION_S 5 /* default --history-resolution */
#define HISTORY_WINDOW_S 3600 /* default --history-window */
#define HISTORY_SAMPLES_MAX 17280 /* window / resolution, at most */
#define HISTORY_LIFETIMES_MAX 64 /* per slot; older ones are forgotten */
#define HISTORY_SCRAPE_MS_MAX 65535 /* longer scrapes are shown as this */
#define HISTORY_SAMPLE_LIVE 0x01 /* a lease held the slot */
#define HISTORY_SAMPLE_CPU 0x02 /* cpu_milli is set */
#define HISTORY_SAMPLE_RSS 0x04 /* rss_kib is set */
#define HISTORY_SAMPLE_SCRAPED 0x08 /* scraped since the sample before */
#define HISTORY_SAMPLE_UP 0x10 /* ... and that scrape succeeded */
#define HISTORY_SAMPLE_START 0x20 /* the first of a lifetime */
struct history_sample {
	uint32_t rss_kib;
	uint16_t cpu_milli; /* thousandths of one CPU, over the interval */
	uint16_t scrape_ms;
	uint8_t flags;
	pid_t pid; /* of the lifetime it belongs to */
};
struct history_lifetime {
	pid_t pid;
	int end; /* enum lease_end; -1 while it lives */
	time_t start; /* wall clock */
	time_t stop; /* 0 while it lives */
};
struct history_slot {
	struct history_sample *samples; /* the history's ring, nsamples long */
	struct history_lifetime lifetimes[HISTORY_LIFETIMES_MAX]; /* a ring */
	size_t lhead; /* the oldest */
	size_t nlifetimes;
	unsigned long long forgotten; /* lifetimes pushed out of the ring */
	int live; /* the newest lifetime has not ended */
	unsigned long long starttime; /* of the live lifetime's process */
	unsigned long long ticks; /* its CPU ticks at the last sample */
	int have_ticks;
	time_t scrape_seen; /* the last scrape sampled */
};
struct history_config {
	int resolution_s; /* --history-resolution */
	int window_s; /* --history-window */
};
struct history {
	struct registry *reg;
	struct event *ev_sample;
	int resolution_s;
	int window_s;
	size_t nsamples; /* window_s / resolution_s */
	size_t head; /* where the next sample goes */
	size_t filled; /* samples taken, at most nsamples */
	time_t last; /* wall clock of the newest sample */
	struct timespec last_mono;
	struct history_slot **slots; /* per slot, NULL until its first lease */
	size_t nslots;
	size_t nlive; /* slots whose newest lifetime lives */
	unsigned long long ends_seen[LEASE_END_COUNT];
	long ticks_per_s;
	long page_kib;
	unsigned long long samplings;
	unsigned long long sample_ns; /* CPU time of the last sampling */
};
struct history_totals {
	size_t live; /* leases now */
	size_t up; /* ... but those whose last scrape failed */
	unsigned long long ends[LEASE_END_COUNT]; /* within the window */
	double recycles_per_hour; /* retired within the window, per hour */
	size_t bytes; /* what the history holds in memory */
};
struct history *history_create(struct event_base *, struct registry *,
    const struct history_config *);
void history_free(struct history *);
void history_changed(struct history *);
void history_advance(struct history *, time_t now);
struct history_sample *history_put(struct history *, int slot);
void history_sample(struct history *);
const struct history_sample *
history_at(const struct history *, int slot, size_t i);
time_t history_time(const struct history *, size_t i);
size_t history_count(const struct history *);
const struct history_lifetime *
history_lifetime(const struct history *, int slot, size_t i);
size_t history_lifetimes(const struct history *, int slot);
void history_lifetime_start(struct history *, int slot, pid_t, time_t);
void history_lifetime_end(struct history *, int slot, int end, time_t);
const char *history_end_name(int end);
void
history_totals(const struct history *, time_t now, struct history_totals *);
size_t history_slot_bytes(const struct history *);
#define HISTORY_SINCE_MAX 253402300799LL /* 9999-12-31 */
int history_parse_query(const char *, size_t, time_t *since, char **cause);
void history_render_json(const struct history *, time_t now, time_t since,
    struct buf *);

/* svg.c: the history drawn, for the status page */
void svg_escape(struct evbuffer *, const char *);
void svg_render_history(struct evbuffer *, const struct history *, time_t now);

/* status.c */
#define STATUS_REFRESH_S 5
void status_render(struct evbuffer *, const struct metrics_snapshot *);
void status_serve(struct http_conn *, struct registry *,
    const struct metrics_sources *, int probe_ms);

/* ready.c */
#define READY_GRACE_MS 60000 /* with no lease yet: ready from then on */
#define READY_TYPE "text/plain; charset=utf-8"
struct ready_input {
	int command; /* promfork runs COMMAND (wrapped or --workers) */
	int command_exited;
	size_t leases; /* held now */
	unsigned long long granted; /* ever, since the start */
	long long since_start_ms;
	int grace_ms;
};
int ready_check(const struct ready_input *, const char **why);
void ready_serve_healthy(struct http_conn *);
void ready_serve(struct http_conn *, const struct ready_input *);
/* webconfig.c */
#define WEBCONFIG_HEADER_VALUE_MAX 512
enum webconfig_client_auth {
	WEBCONFIG_NO_CLIENT_CERT,
	WEBCONFIG_REQUEST_CLIENT_CERT,
	WEBCONFIG_REQUIRE_ANY_CLIENT_CERT,
	WEBCONFIG_VERIFY_CLIENT_CERT_IF_GIVEN,
	WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT,
};
struct webconfig {
	int tls; /* tls_server_config enables TLS */
	int tls_keys; /* tls_server_config has keys */
	char *cert_file, *key_file, *client_ca_file; /* absolute or NULL */
	char *cert, *key, *client_ca; /* inline PEM, or NULL */
	enum webconfig_client_auth client_auth;
	int client_auth_set;
	int min_version, max_version; /* OpenSSL's TLS1_2_VERSION... */
	char *ciphers; /* OpenSSL's names, ':'-separated; NULL: default */
	char *curves; /* the same for groups */
	int prefer_server;
	char **sans; /* client_allowed_sans */
	size_t nsans;
	struct {
		const char *name;
		char *value;
	} headers[5];
	size_t nheaders;
	struct webconfig_user {
		char *name, *hash;
	} * users;
	size_t nusers;
};
int webconfig_hash_valid(const char *);
struct webconfig *
webconfig_parse(const char *, size_t, const char *path, char **cause);
struct webconfig *webconfig_read(const char *path, char **cause);
void webconfig_free(struct webconfig *);

/* tls.c */
struct ssl_ctx_st *
tls_ctx_create(const struct webconfig *, const char *path, char **cause);

/* auth.c */
#define AUTH_USER_MAX 256
#define AUTH_PASS_MAX 256
int auth_parse_basic(const char *header, char *user, char *pass);
struct auth;
struct auth *auth_create(void);
int auth_check(struct auth *, const struct webconfig *, const char *header);
void auth_free(struct auth *);

/* webguard.c */
struct webguard;
struct webguard *webguard_create(const char *path, char **cause);
void webguard_attach(struct webguard *, struct http_server *);
int webguard_reload(struct webguard *);
void webguard_free(struct webguard *);

/* web.c */
#define WEB_DEADLINE_MS 10000
struct web_config {
	struct registry *reg;
	const struct target_config *tc;
	const struct mirror *sdfile; /* NULL without --sd-file */
	const struct child *child;
	struct spawn *spawn; /* NULL without --workers */
	const struct discover *discover; /* NULL without --discover */
	int deadline_ms; /* per request, whole */
	struct history *history; /* /api/v1/history and the pictures */
	size_t budget_bytes; /* --http-budget; 0: the default */
	struct webguard *guard; /* --web.config.file; NULL without */
};
struct web;
int web_parse_listen(const char *, struct sockaddr_storage *, socklen_t *,
    char **cause);
int web_listen(const char *, char **cause);
int web_scrape_deadline(const struct http_request *, int max_ms);
uint16_t web_port(int fd);
char *web_address(int fd, const char *target_host);
struct web *web_create(struct event_base *, const int *fds, size_t nfds,
    const struct web_config *);
void web_free(struct web *);

/* activation.c */
int activation_parse(const char *pid, const char *fds, pid_t self, int max,
    int *n, char **cause);
int activation_fds(int *fds, int max, char **cause);

/* child.c */
struct child {
	pid_t pid;
	const char *name; /* argv[0], for the log */
	int exited;
	int status; /* exit status promfork should pass on */
	unsigned long long reaped; /* processes reaped: the command, orphans */
};
pid_t child_fork(char **argv, char *const *env, int deathsig,
    const struct privsep_cred *, char **cause);
int child_start(struct child *, char **argv, const char *socket_path,
    const struct privsep_cred *, char **cause);
int child_wait_status(int wstatus);
typedef void (*child_reaped_fn)(pid_t, int wstatus, void *arg);
void child_reap(struct child *, struct registry *, child_reaped_fn, void *arg);
void child_signal(struct child *, int sig);

/* spawn.c */
#define PROMFORK_PORT_ENV "PROMFORK_PORT"
#define PROMFORK_WORKER_ENV "PROMFORK_WORKER"
#define SPAWN_GRACE_MS 10000 /* default --grace */
#define SPAWN_LOOP_FAILURES 3 /* failures in a row that make a crash loop */
struct spawn_config {
	char **command; /* {port} and {worker} are replaced in each copy */
	int workers;
	int grace_ms; /* TERM to KILL */
	const char *socket_path;
	const struct privsep_cred *cred; /* --user: run the copies as */
};
struct spawn;
struct spawn *spawn_create(struct event_base *, struct registry *,
    const struct spawn_config *, char **cause);
void spawn_free(struct spawn *);
void spawn_signal(struct spawn *, int sig);
void spawn_reaped(struct spawn *, pid_t, int wstatus);
int spawn_done(const struct spawn *);
const struct spawn_stats *spawn_stats(struct spawn *);
struct spawn *
spawn_setup(struct event_base *, struct registry *, const struct options *,
    const char *socket_path, const struct privsep_cred *);
char **spawn_argv(char **command, int worker, uint16_t port);
void spawn_argv_free(char **);
unsigned int spawn_backoff_ms(unsigned int failures);

/* state.c */
#define STATE_FILE_MAX (8 * 1024 * 1024)
#define STATE_VERSION 1
struct state_entry {
	int worker;
	uint16_t port;
	pid_t pid;
	unsigned long long starttime;
	enum lease_source source;
	time_t created;
	struct labels labels;
};
int state_parse(const char *, size_t, struct state_entry **, size_t *,
    char *boot_id, char **cause);
void state_entries_free(struct state_entry *, size_t);
/* A slot's carried totals, as an exposition. */
struct state_carried {
	int worker;
	char *text;
	size_t len;
};
int state_parse_carried(const char *, size_t, struct state_carried **, size_t *,
    char **cause);
void state_carried_free(struct state_carried *, size_t);
char *state_render(const struct registry *, size_t *);
int state_adopt(const char *path, struct registry *, const struct api_config *,
    char **cause);
int state_init(struct mirror *, const char *path, struct registry *,
    const struct api_config *);
void state_finish(struct mirror *);

/* client.c */
int client_lease_main(int argc, char **argv);

/* notify.c */
int notify_send(const char *path, const char *state, char **cause);
void notify_init(void);
void notify_ready(void);
void notify_stopping(void);

/* check.c */
int check_socket(const char *path, char **cause);
int check_run(const struct options *);

#endif
