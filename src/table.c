/*
 * An open-addressing hash table of names, for the exposition merge: the
 * entries (any struct that starts with a struct table_key) live in the
 * table itself, probed linearly, and the table doubles when half full.
 *
 * Names come from the workers, so an app could choose names that collide
 * if it could compute the hash: every table hashes with SipHash-1-3 under
 * its own random 128-bit key (from getrandom), as Python and Rust do.
 */
#include <sys/random.h>

#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "promfork.h"

#define TABLE_CAP_MIN 256

/*
 * SipHash-1-3 (Aumasson and Bernstein; one compression round, three
 * finalisation rounds), written here by hand: no installed library has a
 * SipHash cheap enough to call once per name (glibc has none, libbsd and
 * nettle 3.8 neither; OpenSSL's EVP_MAC sets up a context per call).  It
 * matches OpenSSL's SIPHASH with c-rounds 1 and d-rounds 3 (test_table).
 */
#define TABLE_ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define TABLE_SIPROUND \
	do { \
		v0 += v1; \
		v1 = TABLE_ROTL(v1, 13); \
		v1 ^= v0; \
		v0 = TABLE_ROTL(v0, 32); \
		v2 += v3; \
		v3 = TABLE_ROTL(v3, 16); \
		v3 ^= v2; \
		v0 += v3; \
		v3 = TABLE_ROTL(v3, 21); \
		v3 ^= v0; \
		v2 += v1; \
		v1 = TABLE_ROTL(v1, 17); \
		v1 ^= v2; \
		v2 = TABLE_ROTL(v2, 32); \
	} while (0)

uint64_t
table_hash(const struct table *t, const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;
	uint64_t v0 = t->key[0] ^ 0x736f6d6570736575ULL;
	uint64_t v1 = t->key[1] ^ 0x646f72616e646f6dULL;
	uint64_t v2 = t->key[0] ^ 0x6c7967656e657261ULL;
	uint64_t v3 = t->key[1] ^ 0x7465646279746573ULL;
	uint64_t m, b = (uint64_t)len << 56;
	size_t i;

	for (; len >= 8; p += 8, len -= 8) {
		memcpy(&m, p, 8);
		m = le64toh(m);
		v3 ^= m;
		TABLE_SIPROUND;
		v0 ^= m;
	}
	for (i = 0; i < len; i++)
		b |= (uint64_t)p[i] << (8 * i);
	v3 ^= b;
	TABLE_SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	TABLE_SIPROUND;
	TABLE_SIPROUND;
	TABLE_SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* An empty table whose entries are esize bytes, under a fresh random key. */
void
table_init(struct table *t, size_t esize)
{
	ssize_t n;

	memset(t, 0, sizeof *t);
	t->esize = esize;
	t->gen = 1;
	do
		n = getrandom(t->key, sizeof t->key, 0);
	while (n == -1 && errno == EINTR);
	if (n != (ssize_t)sizeof t->key)
		fatal("getrandom");
}

void
table_finish(struct table *t)
{
	free(t->slots);
	t->slots = NULL;
	t->n = t->cap = 0;
}

static struct table_key *
table_slot(const struct table *t, size_t i)
{
	return (struct table_key *)(void *)(t->slots + i * t->esize);
}

/* The slot of name: its entry, or the empty slot where it would go. */
static struct table_key *
table_probe(const struct table *t, const char *name, size_t len, uint64_t hash)
{
	size_t i, mask = t->cap - 1;
	struct table_key *k;

	for (i = hash & mask;; i = (i + 1) & mask) {
		k = table_slot(t, i);
		if (k->gen != t->gen ||
		    (k->hash == hash && k->len == len &&
			memcmp(k->name, name, len) == 0))
			return k;
	}
}

static void
table_grow(struct table *t)
{
	unsigned char *old = t->slots;
	size_t oldcap = t->cap, i;
	struct table_key *k;

	t->cap = oldcap != 0 ? oldcap * 2 : TABLE_CAP_MIN;
	t->slots = xcalloc(t->cap, t->esize);
	for (i = 0; i < oldcap; i++) {
		k = (struct table_key *)(void *)(old + i * t->esize);
		if (k->gen == t->gen)
			memcpy(table_probe(t, k->name, k->len, k->hash), k,
			    t->esize);
	}
	free(old);
}

/* The entry of name, or NULL. */
void *
table_find(const struct table *t, const char *name, size_t len)
{
	struct table_key *k;

	if (t->n == 0)
		return NULL;
	k = table_probe(t, name, len, table_hash(t, name, len));
	return k->gen == t->gen ? k : NULL;
}

/*
 * The entry of name, added zeroed but for its key when absent (*added
 * says which).  It keeps the pointer name, whose bytes must live as long
 * as the entry.  Adding may move every entry: no pointer from before
 * survives it.
 */
void *
table_add(struct table *t, const char *name, size_t len, int *added)
{
	uint64_t hash = table_hash(t, name, len);
	struct table_key *k;

	if (len > UINT32_MAX)
		fatalx("table name too long");
	if ((t->n + 1) * 2 > t->cap)
		table_grow(t);
	k = table_probe(t, name, len, hash);
	*added = k->gen != t->gen;
	if (*added) {
		memset(k, 0, t->esize);
		k->name = name;
		k->len = (uint32_t)len;
		k->gen = t->gen;
		k->hash = hash;
		t->n++;
	}
	return k;
}

/* The entries in slot order: start with *i = 0; NULL after the last. */
void *
table_next(const struct table *t, size_t *i)
{
	struct table_key *k;

	while (*i < t->cap) {
		k = table_slot(t, (*i)++);
		if (k->gen == t->gen)
			return k;
	}
	return NULL;
}

/*
 * Forgets every entry but keeps the slots (and the key) for reuse: a new
 * generation, so that it costs nothing however large the table grew.
 */
void
table_clear(struct table *t)
{
	if (t->n == 0)
		return;
	t->n = 0;
	if (++t->gen == 0) {
		memset(t->slots, 0, t->cap * t->esize);
		t->gen = 1;
	}
}
