/*
 * Tests for buf.c: the growable buffer keeps what was added, in order,
 * grows by doubling and frees on finish.
 */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "promfork.h"

Test(buf, add_keeps_bytes_in_order)
{
	struct buf b = { 0 };

	buf_add(&b, "abc", 3);
	buf_add(&b, "", 0);
	buf_add(&b, "de\0f", 4);
	cr_assert_eq(b.len, 7);
	cr_assert(memcmp(b.data, "abcde\0f", 7) == 0);
	buf_finish(&b);
	cr_assert_null(b.data);
	cr_assert_eq(b.len, 0);
	cr_assert_eq(b.cap, 0);
}

Test(buf, empty_add_allocates_nothing)
{
	struct buf b = { 0 };

	buf_add(&b, "x", 0);
	cr_assert_null(b.data);
	buf_finish(&b);
	buf_finish(&b); /* twice is harmless */
}

Test(buf, reserve_grows_to_a_power_of_two_and_keeps_data)
{
	struct buf b = { 0 };
	char chunk[1000];
	size_t i, cap;

	buf_reserve(&b, 1);
	cr_assert_eq(b.cap, 256, "first allocation");
	cr_assert_eq(b.len, 0);
	buf_reserve(&b, 256);
	cr_assert_eq(b.cap, 256, "exactly enough room: no growth");
	buf_reserve(&b, 257);
	cr_assert_eq(b.cap, 512);
	for (i = 0; i < 100; i++) {
		memset(chunk, 'a' + (int)(i % 26), sizeof chunk);
		buf_add(&b, chunk, sizeof chunk);
	}
	cr_assert_eq(b.len, 100 * sizeof chunk);
	cr_assert_eq(b.cap, 131072, "doubled up to the next power of two");
	for (i = 0; i < 100; i++)
		cr_assert_eq(b.data[i * sizeof chunk + 999],
		    'a' + (int)(i % 26));
	cap = b.cap;
	b.len = 0; /* emptied for reuse: the allocation stays */
	buf_reserve(&b, cap);
	cr_assert_eq(b.cap, cap);
	buf_finish(&b);
}

Test(buf, printf_appends_without_nul)
{
	struct buf b = { 0 };
	char big[600];

	buf_add(&b, "x", 1);
	buf_printf(&b, "%d-%s", 42, "y");
	cr_assert_eq(b.len, 5);
	cr_assert(memcmp(b.data, "x42-y", 5) == 0);
	buf_printf(&b, "%s", "");
	cr_assert_eq(b.len, 5);
	memset(big, 'z', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	buf_printf(&b, "%s!", big);
	cr_assert_eq(b.len, 5 + 600);
	cr_assert_eq(b.data[b.len - 1], '!');
	cr_assert_eq(b.data[5], 'z');
	buf_finish(&b);
}
