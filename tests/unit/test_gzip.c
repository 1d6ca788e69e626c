#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "promfork.h"

Test(gzip, accept_encoding)
{
	static const struct {
		const char *v;
		int gzip;
	} cases[] = {
		{ "gzip", 1 },
		{ "GZIP", 1 },
		{ "x-gzip", 1 },
		{ "deflate, gzip", 1 },
		{ " gzip ; q=0.5", 1 },
		{ "gzip;q=1.0, identity; q=0.5, *;q=0", 1 },
		{ "*", 1 },
		{ "br, *;q=0.1", 1 },
		{ "gzip;q=0", 0 },
		{ "gzip; q=0.000", 0 },
		{ "*;q=0", 0 },
		{ "gzip;q=0, *", 0 }, /* gzip named: its q wins */
		{ "identity", 0 },
		{ "deflate, br", 0 },
		{ "gzipx", 0 },
		{ "xgzip", 0 },
		{ "", 0 },
		{ ",,,;;;", 0 },
		{ "gz ip", 0 },
	};
	size_t i;

	cr_assert_eq(gzip_accepted(NULL), 0);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_assert_eq(gzip_accepted(cases[i].v), cases[i].gzip, "\"%s\"",
		    cases[i].v);
}

Test(gzip, bounded)
{
	char *v = malloc(4096);
	size_t i;

	/* past the length bound: identity, whatever it says */
	memset(v, ' ', 4095);
	memcpy(v + 4000, "gzip", 4);
	v[4095] = '\0';
	cr_assert_eq(gzip_accepted(v), 0);
	/* past 32 codings: the rest is not read */
	v[0] = '\0';
	for (i = 0; i < 40; i++)
		strcat(v, "br,");
	strcat(v, "gzip");
	cr_assert_eq(gzip_accepted(v), 0);
	free(v);
}

Test(gzip, compress_round_trip)
{
	struct buf z = { NULL, 0, 0 };
	char in[20000], out[20000];
	uLongf outlen = sizeof out;
	z_stream s;
	size_t i;

	for (i = 0; i < sizeof in; i++)
		in[i] = "metric_total{worker=\"1\"} 42\n"[i % 29];
	cr_assert_eq(gzip_compress(in, sizeof in, &z), 0);
	cr_assert_lt(z.len, sizeof in / 10, "%zu bytes", z.len);
	cr_assert_eq((unsigned char)z.data[0], 0x1f, "gzip magic");
	cr_assert_eq((unsigned char)z.data[1], 0x8b);
	memset(&s, 0, sizeof s);
	cr_assert_eq(inflateInit2(&s, 16 + 15), Z_OK);
	s.next_in = (Bytef *)z.data;
	s.avail_in = (uInt)z.len;
	s.next_out = (Bytef *)out;
	s.avail_out = (uInt)outlen;
	cr_assert_eq(inflate(&s, Z_FINISH), Z_STREAM_END);
	cr_assert_eq(s.total_out, sizeof in);
	inflateEnd(&s);
	cr_assert(memcmp(in, out, sizeof in) == 0);
	/* empty input: a valid empty gzip stream */
	cr_assert_eq(gzip_compress("", 0, &z), 0);
	cr_assert_gt(z.len, 0);
	buf_finish(&z);
}
