#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

static const struct http_limits lim = {
	.header_max = 1024,
	.body_max = 64,
	.deadline_ms = 1000,
	.conns_max = 4,
};

static int
parse(const char *text, struct http_request *req, size_t *consumed, int *status)
{
	return http_request_parse(text, strlen(text), &lim, req, consumed,
	    status);
}

Test(http, get_with_headers)
{
	const char *t = "GET /v1/workers?x=1 HTTP/1.1\r\nHost: a\r\n"
			"X-Thing:  spaced value  \r\n\r\nNEXT";
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse(t, &req, &used, &status), 1);
	cr_assert_str_eq(req.method, "GET");
	cr_assert_str_eq(req.target, "/v1/workers?x=1");
	cr_assert_eq(req.minor, 1);
	cr_assert_eq(req.keep_alive, 1);
	cr_assert_str_eq(http_request_header(&req, "x-thing"), "spaced value");
	cr_assert_null(http_request_header(&req, "Content-Length"));
	cr_assert_eq(used, strlen(t) - 4, "pipelined bytes are left");
	http_request_finish(&req);
}

Test(http, post_with_body_and_bare_newlines)
{
	const char *t = "POST /v1/workers HTTP/1.0\nContent-Length: 4\n\n{}{}";
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse(t, &req, &used, &status), 1);
	cr_assert_eq(req.body_len, 4);
	cr_assert_str_eq(req.body, "{}{}");
	cr_assert_eq(req.keep_alive, 0, "HTTP/1.0 closes by default");
	http_request_finish(&req);
}

Test(http, incomplete_until_whole)
{
	const char *full =
	    "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
	struct http_request req;
	size_t used, n;
	int status;

	for (n = 0; n < strlen(full); n++)
		cr_assert_eq(http_request_parse(full, n, &lim, &req, &used,
				 &status),
		    0, "incomplete at %zu", n);
	cr_assert_eq(parse(full, &req, &used, &status), 1);
	http_request_finish(&req);
}

Test(http, connection_header)
{
	struct http_request req;
	size_t used;
	int status;

	cr_assert_eq(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &req,
			 &used, &status),
	    1);
	cr_assert_eq(req.keep_alive, 0);
	http_request_finish(&req);
	cr_assert_eq(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			 &req, &used, &status),
	    1);
	cr_assert_eq(req.keep_alive, 1);
	http_request_finish(&req);
}

static void
refused(const char *text, size_t len, int want)
{
	struct http_request req;
	size_t used;
	int status = 0;

	cr_assert_eq(http_request_parse(text, len, &lim, &req, &used, &status),
	    -1, "accepted %.*s", (int)len, text);
	cr_assert_eq(status, want, "status %d, want %d for %.*s", status, want,
	    (int)len, text);
}

#define REFUSED(text, want) refused(text, sizeof text - 1, want)

Test(http, bad_requests_get_the_right_status)
{
	char big[2048];

	REFUSED("\r\n\r\n", 400);
	REFUSED("GET\r\n\r\n", 400);
	REFUSED("get / HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET x HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1 \r\n\r\n", 400);
	REFUSED("GET / HTTP/2.0\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.2\r\n\r\n", 505);
	REFUSED("GET / FTP/1.1\r\n\r\n", 400);
	REFUSED("GET /\x01 HTTP/1.1\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\n: empty\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", 400);
	REFUSED("GET / HTTP/1.1\r\nX: \0\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", 400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: "
		"99999999999999999999999999\r\n\r\n",
	    400);
	REFUSED("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413);
	REFUSED("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501);
	memset(big, 'a', sizeof big);
	refused(big, sizeof big, 431);
	memcpy(big, "GET /", 5);
	refused(big, sizeof big, 431);
}

Test(http, too_many_headers)
{
	char text[1024];
	size_t n;
	int i;

	n = (size_t)snprintf(text, sizeof text, "GET / HTTP/1.1\r\n");
	for (i = 0; i < HTTP_HEADERS_MAX + 1; i++)
		n += (size_t)snprintf(text + n, sizeof text - n, "H%d: v\r\n",
		    i);
	n += (size_t)snprintf(text + n, sizeof text - n, "\r\n");
	refused(text, n, 431);
}

Test(http, long_target)
{
	struct http_limits big = lim;
	struct http_request req;
	static char text[5000];
	size_t used;
	int status;

	big.header_max = 8192;
	memcpy(text, "GET /", 5);
	memset(text + 5, 'a', 3000);
	strcpy(text + 3005, " HTTP/1.1\r\n\r\n");
	cr_assert_eq(http_request_parse(text, strlen(text), &big, &req, &used,
			 &status),
	    -1);
	cr_assert_eq(status, 414);
}

Test(http, status_texts)
{
	cr_assert_str_eq(http_status_text(404), "Not Found");
	cr_assert_str_eq(http_status_text(413), "Content Too Large");
	cr_assert_str_eq(http_status_text(999), "Unknown");
}
