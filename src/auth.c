/*
 * HTTP basic authentication against the web configuration's bcrypt
 * hashes: the Authorization header's parser (pure, for tests and the
 * fuzzer) and the check, with libcrypt (crypt_rn) doing bcrypt.  A cost-10
 * bcrypt takes about 50 ms, on the event loop; so, as the toolkit does,
 * the outcome for one user, hash and password is kept for AUTH_CACHE_S
 * (under a SHA-256 of the three, never the password itself).  An unknown
 * user costs a bcrypt too, so that timing does not tell which users exist.
 */
#include <crypt.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "promfork.h"

#define AUTH_HEADER_MAX 1024 /* base64 of user:password, well above both */
#define AUTH_CACHE_SIZE 64
#define AUTH_CACHE_S 60
/* The bcrypt of a password nobody knows, checked for unknown users. */
#define AUTH_DUMMY_HASH \
	"$2y$10$I23Rd76z2S1FJHFled784uSQgnZ29xKrZOC51pPUDEc6xS2xWVCBe"

struct auth_entry {
	unsigned char key[SHA256_DIGEST_LENGTH];
	struct timespec until;
	int ok;
	int used;
};

struct auth {
	struct crypt_data cd; /* crypt_r's 32 KiB of state */
	struct auth_entry cache[AUTH_CACHE_SIZE];
	size_t next; /* the entry to replace */
};

/*
 * Parses "Basic BASE64" into user and password (NUL-terminated, each at
 * most AUTH_USER_MAX / AUTH_PASS_MAX - 1 bytes).  -1 on anything else.
 */
int
auth_parse_basic(const char *h, char *user, char *pass)
{
	unsigned char raw[AUTH_HEADER_MAX];
	const char *b64, *colon;
	size_t len, pad = 0, i;
	int n;

	if (strncasecmp(h, "Basic ", 6) != 0)
		return -1;
	for (b64 = h + 6; *b64 == ' '; b64++)
		;
	len = strlen(b64);
	if (len == 0 || len % 4 != 0 || len >= AUTH_HEADER_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if (b64[i] == '=' && i >= len - 2)
			pad++;
		else if (pad > 0 ||
		    (!isalnum((unsigned char)b64[i]) && b64[i] != '+' &&
			b64[i] != '/'))
			return -1;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes: taken off. */
	if ((n = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)len)) <
		0 ||
	    (size_t)n < pad)
		return -1;
	len = (size_t)n - pad;
	if (memchr(raw, '\0', len) != NULL ||
	    (colon = memchr(raw, ':', len)) == NULL)
		return -1;
	if ((size_t)(colon - (char *)raw) >= AUTH_USER_MAX ||
	    len - (size_t)(colon - (char *)raw) - 1 >= AUTH_PASS_MAX)
		return -1;
	memcpy(user, raw, (size_t)(colon - (char *)raw));
	user[colon - (char *)raw] = '\0';
	memcpy(pass, colon + 1, len - (size_t)(colon - (char *)raw) - 1);
	pass[len - (size_t)(colon - (char *)raw) - 1] = '\0';
	OPENSSL_cleanse(raw, sizeof raw);
	return 0;
}

struct auth *
auth_create(void)
{
	return xcalloc(1, sizeof(struct auth));
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	OPENSSL_cleanse(a, sizeof *a);
	free(a);
}

static void
auth_key(const char *user, const char *hash, const char *pass,
    unsigned char *key)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(md, user, strlen(user) + 1) != 1 ||
	    EVP_DigestUpdate(md, hash, strlen(hash) + 1) != 1 ||
	    EVP_DigestUpdate(md, pass, strlen(pass)) != 1 ||
	    EVP_DigestFinal_ex(md, key, NULL) != 1)
		fatalx("sha256");
	EVP_MD_CTX_free(md);
}

static int
auth_bcrypt(struct auth *a, const char *pass, const char *hash)
{
	/* crypt_rn, libxcrypt's crypt_r with the size said and NULL on
	 * failure; also one that sanitizers do not intercept (their crypt_r
	 * takes the place of libcrypt's at link time). */
	const char *out = crypt_rn(pass, hash, &a->cd, sizeof a->cd);
	size_t len = strlen(hash);

	return out != NULL && strlen(out) == len &&
	    CRYPTO_memcmp(out, hash, len) == 0;
}

static int
auth_cached(struct auth *a, const unsigned char *key, int *ok)
{
	struct timespec now;
	size_t i;

	clock_gettime(CLOCK_MONOTONIC, &now);
	for (i = 0; i < AUTH_CACHE_SIZE; i++) {
		struct auth_entry *e = &a->cache[i];

		if (e->used && now.tv_sec < e->until.tv_sec &&
		    CRYPTO_memcmp(e->key, key, sizeof e->key) == 0) {
			*ok = e->ok;
			return 1;
		}
	}
	return 0;
}

static void
auth_remember(struct auth *a, const unsigned char *key, int ok)
{
	struct auth_entry *e = &a->cache[a->next];

	a->next = (a->next + 1) % AUTH_CACHE_SIZE;
	memcpy(e->key, key, sizeof e->key);
	clock_gettime(CLOCK_MONOTONIC, &e->until);
	e->until.tv_sec += AUTH_CACHE_S;
	e->ok = ok;
	e->used = 1;
}

/*
 * Does the Authorization header (NULL: none) name a user of wc with the
 * right password?  1 yes, 0 no.  Without users every request passes.
 */
int
auth_check(struct auth *a, const struct webconfig *wc, const char *header)
{
	char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
	unsigned char key[SHA256_DIGEST_LENGTH];
	const char *hash = NULL;
	size_t i;
	int ok;

	if (wc->nusers == 0)
		return 1;
	if (header == NULL || auth_parse_basic(header, user, pass) != 0)
		return 0;
	for (i = 0; i < wc->nusers; i++) {
		if (strcmp(wc->users[i].name, user) == 0)
			hash = wc->users[i].hash;
	}
	auth_key(user, hash != NULL ? hash : AUTH_DUMMY_HASH, pass, key);
	if (!auth_cached(a, key, &ok)) {
		ok =
		    auth_bcrypt(a, pass, hash != NULL ? hash : AUTH_DUMMY_HASH);
		ok = ok && hash != NULL;
		auth_remember(a, key, ok);
	}
	OPENSSL_cleanse(pass, sizeof pass);
	return ok;
}
