/*
 * Logging: one line per event on stderr, "promfork: LEVEL: message", or one
 * JSON object per line with --log-format=json.  When stderr is the journal,
 * a "<N>" priority prefix lets journald keep the level.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "promfork.h"

static enum log_level log_threshold = LOG_LEVEL_INFO;
static int log_json;
static int log_journal;

static const char *const log_names[] = { "error", "warn", "info", "debug" };
static const int log_priorities[] = { 3, 4, 6, 7 };

int
log_level_parse(const char *s, enum log_level *level)
{
	size_t i;

	for (i = 0; i < sizeof log_names / sizeof log_names[0]; i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*level = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

static void
log_libevent_cb(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_WARN)
		log_warnx("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

/* True when stderr is the socket that systemd's JOURNAL_STREAM names. */
static int
log_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat sb;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return 0;
	if (fstat(2, &sb) != 0)
		return 0;
	return sb.st_dev == dev && sb.st_ino == ino;
}

void
log_init(enum log_level level, int json)
{
	log_threshold = level;
	log_json = json;
	log_journal = log_stderr_is_journal();
	event_set_log_callback(log_libevent_cb);
}

/* One log line, built whole so it reaches stderr in a single write. */
#define LOG_LINE_MAX 8192
struct log_line {
	char buf[LOG_LINE_MAX];
	size_t len;
};

static void
log_put(struct log_line *l, const char *s, size_t n)
{
	if (n > sizeof l->buf - 1 - l->len) /* keep room for the newline */
		n = sizeof l->buf - 1 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void log_putf(struct log_line *, const char *, ...) PRINTFLIKE(2, 3);

static void
log_putf(struct log_line *l, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n > 0)
		log_put(l, tmp,
		    (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at s, or 0. */
static size_t
log_utf8_len(const unsigned char *s)
{
	size_t n, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

/*
 * Appends msg so that one event stays one line: control characters are
 * escaped; for JSON also quotes and backslashes, and bytes that are not
 * UTF-8 become U+FFFD.  A message too long for the line is cut.
 */
static void
log_put_escaped(struct log_line *l, const char *msg, int json)
{
	const unsigned char *s = (const unsigned char *)msg;
	size_t n;

	/* stops early, whole escapes only, leaving room for the line's end */
	while (*s != '\0' && l->len + 16 < sizeof l->buf) {
		if (json && (*s == '"' || *s == '\\'))
			log_putf(l, "\\%c", *s);
		else if (*s == '\n')
			log_put(l, "\\n", 2);
		else if (*s == '\t')
			log_put(l, json ? "\\t" : "\t", json ? 2 : 1);
		else if (*s < 0x20 || *s == 0x7f)
			log_putf(l, json ? "\\u%04x" : "\\x%02x", *s);
		else if (json && (n = log_utf8_len(s)) != 1) {
			if (n == 0) {
				log_put(l, "\\ufffd", 6);
				n = 1;
			} else
				log_put(l, (const char *)s, n);
			s += n;
			continue;
		} else
			log_put(l, (const char *)s, 1);
		s++;
	}
}

static void
log_vwrite(enum log_level level, const char *fmt, va_list ap, int errnum)
{
	struct log_line line;
	char msg[2048];
	size_t off = 0;
	ssize_t w;
	int n;

	if (level > log_threshold)
		return;
	n = vsnprintf(msg, sizeof msg, fmt, ap);
	if (n >= 0 && errnum != 0 && (size_t)n < sizeof msg)
		snprintf(msg + n, sizeof msg - (size_t)n, ": %s",
		    strerror(errnum));

	line.len = 0;
	/* journald strips "<N>" and keeps N as the entry's priority */
	if (log_journal)
		log_putf(&line, "<%d>", log_priorities[level]);
	if (log_json) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		log_putf(&line,
		    "{\"ts\":%lld.%03ld,\"level\":\"%s\",\"msg\":\"",
		    (long long)ts.tv_sec, ts.tv_nsec / 1000000,
		    log_names[level]);
		log_put_escaped(&line, msg, 1);
		log_put(&line, "\"}", 2);
	} else {
		if (!log_journal)
			log_putf(&line, "promfork: %s: ", log_names[level]);
		log_put_escaped(&line, msg, 0);
	}
	line.buf[line.len++] = '\n';

	fflush(stderr);
	while (off < line.len) {
		w = write(STDERR_FILENO, line.buf + off, line.len - off);
		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

void
log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, fmt, ap, saved);
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_WARN, fmt, ap, 0);
	va_end(ap);
}

void
log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_INFO, fmt, ap, 0);
	va_end(ap);
}

void
log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_DEBUG, fmt, ap, 0);
	va_end(ap);
}

/*
 * May one more line of a kind be logged now?  At most LOG_LIMIT_PER_S a
 * second: a flood (every scrape failing while promfork is out of
 * descriptors) must not become a flood of lines.  The first line of the
 * next second says how many were left out.
 */
int
log_limit(struct log_limit *ll, const char *what)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec != ll->second) {
		if (ll->suppressed > 0)
			log_warnx("%llu more %s not logged", ll->suppressed,
			    what);
		ll->second = now.tv_sec;
		ll->lines = 0;
		ll->suppressed = 0;
	}
	if (ll->lines >= LOG_LIMIT_PER_S) {
		ll->suppressed++;
		return 0;
	}
	ll->lines++;
	return 1;
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, fmt, ap, saved);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_LEVEL_ERROR, fmt, ap, 0);
	va_end(ap);
	exit(1);
}
