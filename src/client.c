/*
 * promfork lease: registers a process with the promfork named by
 * $PROMFORK_SOCKET and prints its port, for shell scripts and programs in
 * any language.  Blocking I/O with timeouts; nothing here runs in the daemon.
 */
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <errno.h>
#include <limits.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "promfork.h"

#define CLIENT_TIMEOUT_S 5
/* A retiring worker waits this long for promfork's last scrape at most. */
#define CLIENT_RETIRE_TIMEOUT_MS 2000
#define CLIENT_RESPONSE_MAX (64 * 1024)

static const char client_help[] =
    "Usage: promfork lease [--pid PID] [--label NAME=VALUE]... [--slot N]\n"
    "                      [--socket PATH] [--json]\n"
    "       promfork lease --retire WORKER [--socket PATH]\n"
    "\n"
    "Leases a metrics port for PID (default: the calling process, i.e. this\n"
    "command's parent) from the promfork named by $PROMFORK_SOCKET and prints\n"
    "the port.  The lease ends by itself when PID exits.\n"
    "\n"
    "  -p, --pid PID            process to lease a port for\n"
    "  -l, --label NAME=VALUE   label on this worker's target (repeatable)\n"
    "  -n, --slot N             take worker slot N if it is free (e.g. the\n"
    "                           server's own worker index); --json says\n"
    "                           which slot was given\n"
    "  -r, --retire WORKER      the worker is about to exit: promfork scrapes\n"
    "                           it once more and ends its lease (waits 2 s\n"
    "                           at most; succeeds with a promfork too old\n"
    "                           to know retire)\n"
    "  -s, --socket PATH        promfork's socket (default: $PROMFORK_SOCKET)\n"
    "      --json               print the whole answer as JSON\n"
    "\n"
    "Example: port=$(promfork lease --label role=web) && exec app --port $port\n"
    "         trap 'promfork lease --retire $worker' EXIT\n"
    "Exit status: 0 leased (retired), 1 refused or promfork unreachable,\n"
    "2 bad usage.\n";

static int
client_connect(const char *path, int timeout_ms)
{
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	struct sockaddr_un sun;
	int fd;

	memset(&sun, 0, sizeof sun);
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof sun.sun_path) {
		fprintf(stderr, "promfork lease: socket path %s is too long\n",
		    path);
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
		fprintf(stderr,
		    "promfork lease: cannot connect to %s: %s; is "
		    "promfork running?\n",
		    path, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	return fd;
}

/* POSTs body to path and reads the whole answer; returns the status. */
static int
client_request(int fd, const char *path, const char *body, char **answer)
{
	char *req, *buf = xmalloc(CLIENT_RESPONSE_MAX + 1), *p;
	size_t len = 0;
	ssize_t n;
	int status = -1, reqlen;

	reqlen = xasprintf(&req,
	    "POST %s HTTP/1.1\r\nHost: promfork"
	    "\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n\r\n%s",
	    path, strlen(body), body);
	/* Refused at the accept, the answer is there before we send: read
	 * it all the same. */
	if (send(fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen &&
	    errno != EPIPE && errno != ECONNRESET) {
		fprintf(stderr, "promfork lease: cannot send: %s\n",
		    strerror(errno));
		goto out;
	}
	while (len < CLIENT_RESPONSE_MAX &&
	    (n = read(fd, buf + len, CLIENT_RESPONSE_MAX - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 ||
	    (p = strstr(buf, "\r\n\r\n")) == NULL) {
		fprintf(stderr, "promfork lease: no answer from promfork%s%s\n",
		    len == 0 && errno != 0 ? ": " : "",
		    len == 0 && errno != 0 ? strerror(errno) : "");
		status = -1;
		goto out;
	}
	*answer = xstrdup(p + 4);
out:
	free(req);
	free(buf);
	return status;
}

/*
 * --retire: POST /v1/workers/WORKER/retire.  404 (no such worker: it is
 * gone already) and 405 (a promfork without retire) are not failures: the
 * worker exits either way, and its lease ends with its process.
 */
static int
client_retire(const char *path, long long worker)
{
	char *url, *answer = NULL;
	int fd, status, rc = 1;

	if ((fd = client_connect(path, CLIENT_RETIRE_TIMEOUT_MS)) == -1)
		return 1;
	xasprintf(&url, "/v1/workers/%lld/retire", worker);
	status = client_request(fd, url, "", &answer);
	close(fd);
	if (status == 200 || status == 204 || status == 404 || status == 405)
		rc = 0;
	else if (status != -1)
		fprintf(stderr, "promfork lease: retire refused (%d): %s\n",
		    status, answer);
	free(url);
	free(answer);
	return rc;
}

int
client_lease_main(int argc, char **argv)
{
	static const struct option longopts[] = { { "pid", required_argument,
						      NULL, 'p' },
		{ "label", required_argument, NULL, 'l' },
		{ "socket", required_argument, NULL, 's' },
		{ "slot", required_argument, NULL, 'n' },
		{ "retire", required_argument, NULL, 'r' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	const char *path = getenv(PROMFORK_SOCKET_ENV);
	long long pid = getppid(), slot = -1, retire = -1;
	json_t *req, *labels = json_object(), *ans = NULL;
	char *body = NULL, *answer = NULL;
	int c, fd, status, json = 0, rc = 1;

	optind = 0;
	while ((c = getopt_long(argc, argv, "+p:l:s:n:r:h", longopts, NULL)) !=
	    -1) {
		switch (c) {
		case 'n':
		case 'r':
			if (decimal_parse(optarg, 0, 65535,
				c == 'n' ? &slot : &retire, NULL) != 0) {
				fprintf(stderr,
				    "promfork lease: %s %s is not a "
				    "worker slot\n",
				    c == 'n' ? "--slot" : "--retire", optarg);
				goto usage;
			}
			break;
		case 'p':
			if (decimal_parse(optarg, 2, INT_MAX, &pid, NULL) !=
			    0) {
				fprintf(stderr,
				    "promfork lease: --pid %s is "
				    "not a process id\n",
				    optarg);
				goto usage;
			}
			break;
		case 'l': {
			char *eq = strchr(optarg, '='), *name;
			if (eq == NULL) {
				fprintf(stderr,
				    "promfork lease: --label %s: "
				    "write NAME=VALUE\n",
				    optarg);
				goto usage;
			}
			name = xstrndup(optarg, (size_t)(eq - optarg));
			json_object_set_new(labels, name, json_string(eq + 1));
			free(name);
			break;
		}
		case 's':
			path = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			fputs(client_help, stdout);
			rc = 0;
			goto out;
		default:
			goto usage;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "promfork lease: unexpected argument %s\n",
		    argv[optind]);
		goto usage;
	}
	if (path == NULL || *path == '\0') {
		fprintf(stderr,
		    "promfork lease: $%s is not set: run under "
		    "promfork, or give --socket\n",
		    PROMFORK_SOCKET_ENV);
		goto out;
	}
	if (retire != -1) {
		rc = client_retire(path, retire);
		goto out;
	}
	req = json_pack("{s:I, s:O}", "pid", (json_int_t)pid, "labels", labels);
	if (slot != -1)
		json_object_set_new(req, "slot", json_integer(slot));
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if ((fd = client_connect(path, CLIENT_TIMEOUT_S * 1000)) == -1)
		goto out;
	status = client_request(fd, "/v1/workers", body, &answer);
	close(fd);
	if (status == -1)
		goto out;
	ans = json_loads(answer, 0, NULL);
	if (status != 200 && status != 201) {
		json_t *e = json_object_get(ans, "error");
		fprintf(stderr, "promfork lease: refused (%d): %s\n", status,
		    json_is_string(e) ? json_string_value(e) : answer);
		goto out;
	}
	if (json)
		fputs(answer, stdout);
	else if (json_is_integer(json_object_get(ans, "port")))
		printf("%lld\n",
		    (long long)json_integer_value(
			json_object_get(ans, "port")));
	else {
		fprintf(stderr, "promfork lease: answer has no port: %s\n",
		    answer);
		goto out;
	}
	rc = 0;
	goto out;
usage:
	fputs(client_help, stderr);
	rc = 2;
out:
	json_decref(labels);
	json_decref(ans);
	free(body);
	free(answer);
	return rc;
}
