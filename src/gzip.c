/*
 * gzip for the listener's larger answers (/metrics, /targets, the
 * fan-out, a proxied answer promfork builds whole), with zlib, when the
 * request's Accept-Encoding allows it.  The Accept-Encoding reader is pure
 * and bounded, for tests and the fuzzer; an answer too short to gain is
 * sent as it is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "promfork.h"

#define GZIP_HEADER_MAX 1024 /* a longer Accept-Encoding: none of it */
#define GZIP_CODINGS_MAX 32 /* codings read, at most */
/* Fast: on exposition text level 1 gives most of level 6's ratio. */
#define GZIP_LEVEL 1

/*
 * Whether an Accept-Encoding value (NULL: not sent) allows gzip: gzip or
 * x-gzip, else *, with a q-value above 0.  Anything malformed is taken
 * as identity only: the answer is never refused for it.
 */
int
gzip_accepted(const char *v)
{
	const char *p, *end, *semi, *q;
	int star = -1, seen = 0;
	size_t n, len;

	if (v == NULL || (len = strlen(v)) > GZIP_HEADER_MAX)
		return 0;
	for (p = v; p < v + len && seen < GZIP_CODINGS_MAX; p = end + 1) {
		int zero = 0;

		seen++;
		end = p + strcspn(p, ",");
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		semi = memchr(p, ';', (size_t)(end - p));
		n = (size_t)((semi != NULL ? semi : end) - p);
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (semi != NULL) {
			q = semi + 1;
			while (q < end && (*q == ' ' || *q == '\t'))
				q++;
			/* q=0, q=0.0, q=0.000: not acceptable */
			if (end - q >= 3 && (q[0] == 'q' || q[0] == 'Q') &&
			    q[1] == '=' && q[2] == '0') {
				zero = 1;
				for (q += 3; q < end && *q != ' ' && *q != '\t';
				     q++) {
					if (*q != '.' && *q != '0')
						zero = 0;
				}
			}
		}
		if ((n == 4 && strncasecmp(p, "gzip", 4) == 0) ||
		    (n == 6 && strncasecmp(p, "x-gzip", 6) == 0))
			return !zero;
		if (n == 1 && *p == '*')
			star = !zero;
		if (*end == '\0')
			break;
	}
	return star == 1;
}

/* Does the request's Accept-Encoding allow gzip? */
int
gzip_wanted(const struct http_request *req)
{
	return gzip_accepted(http_request_header(req, "Accept-Encoding"));
}

/* Compresses len bytes at in into out (replacing what it held); -1 when
 * zlib fails. */
int
gzip_compress(const char *in, size_t len, struct buf *out)
{
	z_stream z;
	size_t cap;
	int rc;

	memset(&z, 0, sizeof z);
	/* 16 + 15: a gzip wrapper around a 32 KiB window */
	if (deflateInit2(&z, GZIP_LEVEL, Z_DEFLATED, 16 + 15, 8,
		Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	cap = deflateBound(&z, (uLong)len);
	out->len = 0;
	buf_reserve(out, cap);
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out->data;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	out->len = cap - z.avail_out;
	deflateEnd(&z);
	return rc == Z_STREAM_END ? 0 : -1;
}

/*
 * Answers with body, gzip-compressed when gzip is set (the client allows
 * it) and the body is long enough to gain.
 */
void
gzip_reply(struct http_conn *c, int gzip, int status, const char *type,
    const char *body, size_t len)
{
	struct buf z = { NULL, 0, 0 };

	if (gzip && len >= GZIP_MIN && len <= UINT32_MAX &&
	    gzip_compress(body, len, &z) == 0) {
		http_conn_encoding(c, "gzip");
		http_reply(c, status, type, z.data, z.len);
	} else
		http_reply(c, status, type, body, len);
	buf_finish(&z);
}
