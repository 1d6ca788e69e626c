/*
 * Tests for table.c: SipHash-1-3 against OpenSSL's, a random key per
 * table (also across processes), and the table's add, find, growth,
 * iteration and clearing.
 */
#include <sys/wait.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "promfork.h"

struct entry {
	struct table_key k;
	int value;
};

/*
 * SipHash-1-3 with key 00 01 .. 0f of the message 00 01 .. len-1, from
 * `openssl mac -macopt hexkey:000102030405060708090a0b0c0d0e0f -macopt
 * size:8 -macopt c-rounds:1 -macopt d-rounds:3 SIPHASH` (its bytes read
 * as a little-endian integer).
 */
Test(table, siphash13_matches_openssl)
{
	static const struct {
		size_t len;
		uint64_t want;
	} v[] = {
		{ 0, 0xabac0158050fc4dcULL },
		{ 1, 0xc9f49bf37d57ca93ULL },
		{ 7, 0xd3927d989bb11140ULL },
		{ 8, 0x369095118d299a8eULL },
		{ 9, 0x25a48eb36c063de4ULL },
		{ 15, 0xd320d86d2a519956ULL },
		{ 16, 0xcc4fdd1a7d908b66ULL },
		{ 31, 0x2370dd1f8c21d1bcULL },
		{ 63, 0x9d199062b7bbb3a8ULL },
	};
	struct table t;
	char msg[64];
	size_t i;

	table_init(&t, sizeof(struct entry));
	t.key[0] = 0x0706050403020100ULL;
	t.key[1] = 0x0f0e0d0c0b0a0908ULL;
	for (i = 0; i < sizeof msg; i++)
		msg[i] = (char)i;
	for (i = 0; i < sizeof v / sizeof v[0]; i++)
		cr_expect_eq(table_hash(&t, msg, v[i].len), v[i].want,
		    "length %zu: %016llx", v[i].len,
		    (unsigned long long)table_hash(&t, msg, v[i].len));
	table_finish(&t);
}

/* The hash of a fixed name depends on the key, which is random. */
Test(table, key_is_random_and_changes_the_hash)
{
	struct table a, b;

	table_init(&a, sizeof(struct entry));
	table_init(&b, sizeof(struct entry));
	cr_expect(a.key[0] != b.key[0] || a.key[1] != b.key[1],
	    "two tables, one key");
	cr_expect_neq(table_hash(&a, "http_requests_total", 19),
	    table_hash(&b, "http_requests_total", 19));
	cr_expect_eq(table_hash(&a, "http_requests_total", 19),
	    table_hash(&a, "http_requests_total", 19), "stable under one key");
	b.key[0] = a.key[0];
	b.key[1] = a.key[1] ^ 1;
	cr_expect_neq(table_hash(&a, "x", 1), table_hash(&b, "x", 1),
	    "one bit of key");
	table_finish(&a);
	table_finish(&b);
}

/* Another process (a restarted promfork) hashes under another key. */
Test(table, key_differs_between_processes)
{
	uint64_t theirs[2];
	struct table t;
	int fds[2], status;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		table_init(&t, sizeof(struct entry));
		_exit(
		    write(fds[1], t.key, sizeof t.key) == sizeof t.key ? 0 : 1);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], theirs, sizeof theirs),
	    (ssize_t)sizeof theirs);
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	table_init(&t, sizeof(struct entry));
	cr_expect(t.key[0] != theirs[0] || t.key[1] != theirs[1]);
	table_finish(&t);
}

Test(table, add_find_and_grow)
{
	static char names[5000][16];
	struct table t;
	struct entry *e;
	size_t i;
	int added;

	table_init(&t, sizeof(struct entry));
	cr_expect_null(table_find(&t, "a", 1), "empty table");
	for (i = 0; i < 5000; i++) {
		snprintf(names[i], sizeof names[i], "name_%zu", i);
		e = table_add(&t, names[i], strlen(names[i]), &added);
		cr_assert(added);
		cr_assert_eq(e->value, 0, "zeroed");
		e->value = (int)i + 1;
	}
	cr_expect_eq(t.n, 5000);
	cr_expect_eq(t.cap, 16384, "doubled while at most half full");
	for (i = 0; i < 5000; i++) {
		e = table_find(&t, names[i], strlen(names[i]));
		cr_assert_not_null(e, "%s lost", names[i]);
		cr_assert_eq(e->value, (int)i + 1);
		e = table_add(&t, names[i], strlen(names[i]), &added);
		cr_assert(!added, "%s added twice", names[i]);
		cr_assert_eq(e->value, (int)i + 1);
	}
	cr_expect_null(table_find(&t, "name_5000", 9));
	cr_expect_null(table_find(&t, "name_1", 5), "a prefix is not a match");
	cr_expect_null(table_find(&t, "name_1x", 7));
	table_finish(&t);
}

Test(table, embedded_nul_and_empty_names)
{
	struct table t;
	struct entry *e;
	int added;

	table_init(&t, sizeof(struct entry));
	e = table_add(&t, "a\0b", 3, &added);
	e->value = 1;
	e = table_add(&t, "a\0c", 3, &added);
	cr_expect(added);
	e->value = 2;
	e = table_add(&t, "", 0, &added);
	cr_expect(added);
	e->value = 3;
	cr_expect_eq(((struct entry *)table_find(&t, "a\0b", 3))->value, 1);
	cr_expect_eq(((struct entry *)table_find(&t, "a\0c", 3))->value, 2);
	cr_expect_eq(((struct entry *)table_find(&t, "", 0))->value, 3);
	cr_expect_null(table_find(&t, "a", 1));
	table_finish(&t);
}

Test(table, next_visits_each_entry_once_and_clear_keeps_slots)
{
	static char names[300][8];
	unsigned char seen[300] = { 0 };
	struct table t;
	struct entry *e;
	size_t i, n = 0, cap;
	int added;

	table_init(&t, sizeof(struct entry));
	i = 0;
	cr_expect_null(table_next(&t, &i), "empty");
	for (i = 0; i < 300; i++) {
		snprintf(names[i], sizeof names[i], "n%zu", i);
		e = table_add(&t, names[i], strlen(names[i]), &added);
		e->value = (int)i;
	}
	i = 0;
	while ((e = table_next(&t, &i)) != NULL) {
		cr_assert_lt(e->value, 300);
		cr_assert_eq(seen[e->value], 0, "%d twice", e->value);
		seen[e->value] = 1;
		n++;
	}
	cr_expect_eq(n, 300);
	cap = t.cap;
	table_clear(&t);
	cr_expect_eq(t.n, 0);
	cr_expect_eq(t.cap, cap, "slots kept for the next scrape");
	cr_expect_null(table_find(&t, "n1", 2));
	i = 0;
	cr_expect_null(table_next(&t, &i));
	e = table_add(&t, "n1", 2, &added);
	cr_expect(added);
	cr_expect_eq(e->value, 0, "cleared entries are zero");
	table_finish(&t);
	table_finish(&t);
}
