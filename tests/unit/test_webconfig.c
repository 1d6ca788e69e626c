/*
 * webconfig.c and tls.c: the exporter-toolkit's web configuration is read
 * with its keys and defaults, every bad file is refused naming the file,
 * the line and the reason, and a context is made from good certificates
 * only.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "helpers.h"
#include "promfork.h"

#define HASH "$2y$04$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK"

static char *dir;

static void
setup(void)
{
	dir = helpers_tmpdir("webconfig");
}

static void
teardown(void)
{
	helpers_rmtree(dir);
	free(dir);
}

TestSuite(webconfig, .init = setup, .fini = teardown);

static struct webconfig *
parse(const char *text, char **cause)
{
	*cause = NULL;
	return webconfig_parse(text, strlen(text), "/etc/promfork/web.yml",
	    cause);
}

/* text is refused with a message holding want (and the file's name). */
static void
refused(const char *text, const char *want)
{
	char *cause;
	struct webconfig *wc = parse(text, &cause);

	cr_assert_null(wc, "accepted: %s", text);
	cr_assert_not_null(cause);
	cr_assert(strstr(cause, "/etc/promfork/web.yml") != NULL, "%s", cause);
	cr_assert(strstr(cause, want) != NULL, "want \"%s\" in \"%s\"", want,
	    cause);
	free(cause);
}

Test(webconfig, empty_file_is_plain_http_without_auth)
{
	char *cause;
	struct webconfig *wc = parse("", &cause);

	cr_assert_not_null(wc, "%s", cause);
	cr_assert_eq(wc->tls, 0);
	cr_assert_eq(wc->nusers, 0);
	cr_assert_eq(wc->min_version, TLS1_2_VERSION);
	cr_assert_eq(wc->max_version, TLS1_3_VERSION);
	cr_assert_eq(wc->prefer_server, 1);
	webconfig_free(wc);
}

Test(webconfig, full_file_with_relative_names)
{
	char *cause;
	struct webconfig *wc =
	    parse("tls_server_config:\n"
		  "  cert_file: server.crt\n"
		  "  key_file: /abs/server.key\n"
		  "  client_auth_type: RequireAndVerifyClientCert\n"
		  "  client_ca_file: ca.crt\n"
		  "  min_version: TLS13\n"
		  "  max_version: TLS13\n"
		  "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
		  " TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305]\n"
		  "  curve_preferences: [X25519, CurveP256]\n"
		  "  client_allowed_sans: [prometheus.example, 192.0.2.1]\n"
		  "  prefer_server_cipher_suites: false\n"
		  "http_server_config:\n"
		  "  http2: false\n"
		  "  headers:\n"
		  "    X-Frame-Options: sameorigin\n"
		  "    Strict-Transport-Security: max-age=31536000\n"
		  "    X-XSS-Protection: ''\n"
		  "basic_auth_users:\n"
		  "  alice: " HASH "\n"
		  "  bob: '" HASH "'\n",
		&cause);

	cr_assert_not_null(wc, "%s", cause);
	cr_assert_eq(wc->tls, 1);
	cr_assert_str_eq(wc->cert_file, "/etc/promfork/server.crt");
	cr_assert_str_eq(wc->key_file, "/abs/server.key");
	cr_assert_str_eq(wc->client_ca_file, "/etc/promfork/ca.crt");
	cr_assert_eq(wc->client_auth, WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT);
	cr_assert_eq(wc->min_version, TLS1_3_VERSION);
	cr_assert_str_eq(wc->ciphers,
	    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305");
	cr_assert_str_eq(wc->curves, "X25519:P-256");
	cr_assert_eq(wc->nsans, 2);
	cr_assert_str_eq(wc->sans[1], "192.0.2.1");
	cr_assert_eq(wc->prefer_server, 0);
	cr_assert_eq(wc->nheaders, 2, "a blank header is unset");
	cr_assert_str_eq(wc->headers[0].name, "X-Frame-Options");
	cr_assert_str_eq(wc->headers[0].value, "sameorigin");
	cr_assert_eq(wc->nusers, 2);
	cr_assert_str_eq(wc->users[1].name, "bob");
	cr_assert_str_eq(wc->users[1].hash, HASH);
	webconfig_free(wc);
}

Test(webconfig, unknown_keys_are_refused_with_their_line)
{
	refused("basic_auth_users: {}\nfoo: 1\n", "web.yml:2: unknown key foo");
	refused("tls_server_config:\n  cert_file: a\n  certfile: b\n",
	    ":3: unknown key tls_server_config.certfile");
	refused("http_server_config:\n  gzip: true\n",
	    ":2: unknown key http_server_config.gzip");
	refused("rate_limit:\n  burst: 1\n", "rate_limit is not supported");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  client_allowed_sans: [a]\n",
	    "client_allowed_sans needs verified client certificates");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  client_auth_type: RequireAndVerifyClientCert\n"
		"  client_ca_file: c\n  client_allowed_sans: [a, [b]]\n",
	    ":6: client_allowed_sans: each entry must be a name");
}

Test(webconfig, bad_values_are_refused)
{
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  client_auth_type: RequireAndVerify\n",
	    ":4: client_auth_type \"RequireAndVerify\" is none of");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  min_version: TLS14\n",
	    ":4: min_version must be one of TLS10");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  min_version: TLS13\n  max_version: TLS12\n",
	    "min_version is above max_version");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  cipher_suites: [TLS_RSA_WITH_NOTHING]\n",
	    "\"TLS_RSA_WITH_NOTHING\" is not a TLS 1.2 cipher suite");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
	    "is not a TLS 1.2 cipher suite");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  curve_preferences: [P256]\n",
	    "curve_preferences: each entry must be one of");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  prefer_server_cipher_suites: maybe\n",
	    "prefer_server_cipher_suites must be true or false");
	refused("tls_server_config:\n  cert_file: [a]\n",
	    ":2: cert_file must be a string");
	refused("tls_server_config: 3\n", "must be a mapping");
	refused("- a\n- b\n", "the file must be a mapping");
}

Test(webconfig, tls_needs_cert_and_key_and_a_policy_for_a_ca)
{
	refused("tls_server_config:\n  cert_file: a\n",
	    "missing one of key or key_file");
	/* found by the fuzzer: no certificate, and min above max */
	refused("tls_server_config:\n max_version: TLS11 ",
	    "missing one of cert or cert_file");
	refused("tls_server_config:\n  prefer_server_cipher_suites: true\n",
	    "missing one of cert or cert_file");
	refused("tls_server_config:\n  key_file: a\n",
	    "missing one of cert or cert_file");
	refused("tls_server_config:\n  cert_file: a\n  cert: b\n  key_file: "
		"c\n",
	    "cert and cert_file are both given");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  client_ca_file: c\n",
	    "a client CA is given without a client_auth_type");
	refused("tls_server_config:\n  cert_file: a\n  key_file: b\n"
		"  client_auth_type: RequireAndVerifyClientCert\n",
	    "give client_ca_file");
}

Test(webconfig, headers_the_toolkit_refuses_are_refused)
{
	refused("http_server_config:\n  headers:\n    Server: x\n",
	    ":3: HTTP header \"Server\" can not be configured");
	refused("http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
	    "invalid value \"allow\" for X-Frame-Options: expected deny or "
	    "sameorigin");
	refused("http_server_config:\n  headers:\n"
		"    X-Content-Type-Options: sniff\n",
	    "expected nosniff");
	refused("http_server_config:\n  headers:\n"
		"    Content-Security-Policy: \"a\\r\\nSet-Cookie: x\"\n",
	    "a control character");
}

Test(webconfig, bad_hashes_and_users_are_refused)
{
	refused("basic_auth_users:\n  alice: secret\n",
	    ":2: basic_auth_users: the password of \"alice\" is not a bcrypt "
	    "hash");
	/* wrong prefix, cost out of range, short, bad alphabet */
	refused(
	    "basic_auth_users:\n  a: "
	    "$2x$04$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK\n",
	    "not a bcrypt hash");
	refused(
	    "basic_auth_users:\n  a: "
	    "$2y$03$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK\n",
	    "not a bcrypt hash");
	refused("basic_auth_users:\n  a: "
		"$2y$04$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTc\n",
	    "not a bcrypt hash");
	refused(
	    "basic_auth_users:\n  a: "
	    "$2y$04$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkT!K\n",
	    "not a bcrypt hash");
	refused("basic_auth_users:\n  a:\n", "not a bcrypt hash");
	refused("basic_auth_users:\n  a: " HASH "\n  a: " HASH "\n",
	    ":3: basic_auth_users: \"a\" is given twice");
	refused("basic_auth_users:\n  'a:b': " HASH "\n",
	    "cannot hold a colon");
	cr_assert(webconfig_hash_valid(HASH));
	cr_assert(webconfig_hash_valid(
	    "$2b$31$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK"));
	cr_assert(webconfig_hash_valid(
	    "$2a$10$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK"));
	cr_assert_not(webconfig_hash_valid(
	    "$2y$32$5NJ5JgBCNM/e9SG2SuOFSOyNE7b2sPHnffJ0ThoZQeOfRi/SWkTcK"));
	cr_assert_not(webconfig_hash_valid(""));
}

Test(webconfig, not_yaml_is_refused_with_its_line)
{
	refused("basic_auth_users:\n  a: [\n", "web.yml:3: not YAML");
	refused("a: 'unterminated\n", "not YAML");
	refused("{", "not YAML");
}

Test(webconfig, missing_and_oversized_files_are_refused)
{
	char *path = helpers_path(dir, "web.yml"), *cause = NULL, *big;

	cr_assert_null(webconfig_read(path, &cause));
	cr_assert(strstr(cause, "no such file") != NULL, "%s", cause);
	free(cause);
	cause = NULL;
	big = malloc(2 * 1024 * 1024 + 1);
	memset(big, '#', 2 * 1024 * 1024);
	big[2 * 1024 * 1024] = '\0';
	helpers_write_file(path, big);
	free(big);
	cr_assert_null(webconfig_read(path, &cause));
	cr_assert(strstr(cause, "at most") != NULL, "%s", cause);
	free(cause);
	free(path);
}

/* Makes a CA, a server certificate and key, and a stray key in dir. */
static void
make_certs(void)
{
	char *cmd;

	xasprintf(&cmd,
	    "cd %s && openssl req -x509 -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 2 "
	    "-subj /CN=ca 2>/dev/null && openssl req -newkey ec -pkeyopt "
	    "ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr "
	    "-subj /CN=localhost 2>/dev/null && openssl x509 -req -in server.csr -CA "
	    "ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 2>/dev/null && "
	    "openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:P-256 "
	    "-out other.key 2>/dev/null >/dev/null",
	    dir);
	cr_assert_eq(system(cmd), 0, "openssl failed");
	free(cmd);
}

static struct ssl_ctx_st *
ctx_of(const char *text, char **cause)
{
	char *path = helpers_path(dir, "web.yml");
	struct webconfig *wc;
	struct ssl_ctx_st *ctx = NULL;

	helpers_write_file(path, text);
	*cause = NULL;
	wc = webconfig_read(path, cause);
	cr_assert_not_null(wc, "%s", *cause);
	ctx = tls_ctx_create(wc, path, cause);
	webconfig_free(wc);
	free(path);
	return ctx;
}

/* The file dir/name with every line indented, as a YAML block scalar. */
static char *
indented(const char *name)
{
	char *path = helpers_path(dir, name), *text = helpers_read_file(path);
	char *out = xstrdup(""), *line, *save = NULL, *next;

	for (line = strtok_r(text, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		xasprintf(&next, "%s    %s\n", out, line);
		free(out);
		out = next;
	}
	free(text);
	free(path);
	return out;
}

Test(webconfig, tls_context_from_good_files_only, .timeout = 30)
{
	static const struct {
		const char *text, *want;
	} bad[] = {
		{ "tls_server_config:\n  cert_file: server.crt\n"
		  "  key_file: other.key\n",
		    "mismatch" },
		{ "tls_server_config:\n  cert_file: nothere.crt\n"
		  "  key_file: server.key\n",
		    "cert_file" },
		/* a key is no certificate */
		{ "tls_server_config:\n  cert_file: server.key\n"
		  "  key_file: server.key\n",
		    "cert_file" },
	};
	struct ssl_ctx_st *ctx;
	char *cause, *cert, *key, *text;
	size_t i;

	make_certs();
	ctx = ctx_of("tls_server_config:\n  cert_file: server.crt\n"
		     "  key_file: server.key\n"
		     "  client_auth_type: RequireAndVerifyClientCert\n"
		     "  client_ca_file: ca.crt\n",
	    &cause);
	cr_assert_not_null(ctx, "%s", cause);
	cr_assert_eq(SSL_CTX_get_verify_mode(ctx),
	    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
	SSL_CTX_free(ctx);

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ctx = ctx_of(bad[i].text, &cause);
		cr_assert_null(ctx, "%s", bad[i].text);
		cr_assert(strstr(cause, bad[i].want) != NULL, "%s", cause);
		free(cause);
	}

	/* Inline PEM, as the toolkit's cert and key. */
	cert = indented("server.crt");
	key = indented("server.key");
	xasprintf(&text, "tls_server_config:\n  cert: |\n%s  key: |\n%s", cert,
	    key);
	free(cert);
	free(key);
	ctx = ctx_of(text, &cause);
	cr_assert_not_null(ctx, "%s", cause);
	SSL_CTX_free(ctx);
	free(text);
}
