/*
 * auth.c: the Authorization header is parsed strictly, the right password
 * passes for $2y$, $2b$ and $2a$ hashes, and anything else fails: a wrong
 * password, an unknown user, no header, a header that is not Basic.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "promfork.h"

/* bcrypt of "secret", cost 4 */
#define HASH_B "$2b$04$7qOaILEgy/.SBoxY7d90xeYbW7FZ3Q2lUiZf0M7.XvWx1ohVDIQg6"

TestSuite(auth);

Test(auth, parses_basic_credentials)
{
	char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];

	/* alice:se:cret */
	cr_assert_eq(auth_parse_basic("Basic YWxpY2U6c2U6Y3JldA==", user, pass),
	    0);
	cr_assert_str_eq(user, "alice");
	cr_assert_str_eq(pass, "se:cret");
	/* a: (empty password), scheme in any case */
	cr_assert_eq(auth_parse_basic("basic YTo=", user, pass), 0);
	cr_assert_str_eq(user, "a");
	cr_assert_str_eq(pass, "");
}

Test(auth, refuses_bad_headers)
{
	char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX], *big;
	static const char *bad[] = {
		"",
		"Basic",
		"Basic ",
		"Bearer YTo=",
		"Basic YTo", /* length */
		"Basic YT=o", /* padding inside */
		"Basic Y!o=", /* alphabet */
		"Basic YWxpY2U=", /* no colon: "alice" */
		"Basic YQBiOmM=", /* a NUL inside: "a\0b:c" */
		"Basic YTo===",
	};
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(auth_parse_basic(bad[i], user, pass), -1, "%s",
		    bad[i]);
	/* a user name longer than AUTH_USER_MAX: refused, not cut */
	big = malloc(2000);
	strcpy(big, "Basic ");
	memset(big + 6, 'Q', 400);
	strcpy(big + 406, "Ojo="); /* 300 bytes, then "::" */
	cr_assert_eq(auth_parse_basic(big, user, pass), -1);
	memset(big + 6, 'Q', 1500);
	big[1506] = '\0';
	cr_assert_eq(auth_parse_basic(big, user, pass), -1);
	free(big);
}

Test(auth, checks_passwords_against_bcrypt, .timeout = 30)
{
	struct webconfig wc;
	struct webconfig_user users[3];
	struct auth *a = auth_create();
	char y[61], ax[61];

	memcpy(y, HASH_B, 61);
	y[2] = 'y';
	memcpy(ax, HASH_B, 61);
	ax[2] = 'a';
	memset(&wc, 0, sizeof wc);
	users[0].name = "b";
	users[0].hash = HASH_B;
	users[1].name = "y";
	users[1].hash = y;
	users[2].name = "a";
	users[2].hash = ax;
	wc.users = users;
	wc.nusers = 3;
	/* b:secret y:secret a:secret */
	cr_assert_eq(auth_check(a, &wc, "Basic YjpzZWNyZXQ="), 1);
	cr_assert_eq(auth_check(a, &wc, "Basic eTpzZWNyZXQ="), 1);
	cr_assert_eq(auth_check(a, &wc, "Basic YTpzZWNyZXQ="), 1);
	/* again, from the cache */
	cr_assert_eq(auth_check(a, &wc, "Basic YjpzZWNyZXQ="), 1);
	/* b:secreT, b:secret2, c:secret (no such user), nothing */
	cr_assert_eq(auth_check(a, &wc, "Basic YjpzZWNyZVQ="), 0);
	cr_assert_eq(auth_check(a, &wc, "Basic YjpzZWNyZXQy"), 0);
	cr_assert_eq(auth_check(a, &wc, "Basic YzpzZWNyZXQ="), 0);
	cr_assert_eq(auth_check(a, &wc, NULL), 0);
	cr_assert_eq(auth_check(a, &wc, "Bearer x"), 0);
	/* the same password under another hash is not the cached one */
	users[0].hash = "$2b$04$7qOaILEgy/.SBoxY7d90xeYbW7FZ3Q2lUiZf0M7."
			"XvWx1ohVDIQg7";
	cr_assert_eq(auth_check(a, &wc, "Basic YjpzZWNyZXQ="), 0);
	/* without users, everyone passes */
	wc.nusers = 0;
	cr_assert_eq(auth_check(a, &wc, NULL), 1);
	auth_free(a);
}
