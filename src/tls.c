/*
 * The OpenSSL context of the listener, made from a web configuration:
 * certificate and key (files or inline PEM), TLS versions, cipher suites
 * and curves, and the client certificate policy mapped from Go's
 * ClientAuthType onto OpenSSL's verify modes.  A context is made whole or
 * not at all, so that a bad reload leaves the old one in use.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "promfork.h"

/* OpenSSL's reason for the last failure, and clears the rest. */
static void
tls_error(char *buf, size_t len)
{
	unsigned long e = ERR_peek_last_error();

	if (e == 0)
		snprintf(buf, len, "unknown error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

/* Request and RequireAny take any certificate: the chain is not checked. */
static int
tls_verify_any_cb(int ok, X509_STORE_CTX *x)
{
	return 1;
}

static int
tls_inline_chain(SSL_CTX *ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509 *x;
	int rc = -1;

	if (bio == NULL)
		return -1;
	if ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) == NULL ||
	    SSL_CTX_use_certificate(ctx, x) != 1)
		goto out;
	X509_free(x);
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, x) != 1)
			goto out;
	}
	x = NULL;
	ERR_clear_error(); /* the end of the PEM data */
	rc = 0;
out:
	X509_free(x);
	BIO_free(bio);
	return rc;
}

static int
tls_inline_key(SSL_CTX *ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = NULL;
	int rc = -1;

	if (bio == NULL)
		return -1;
	if ((k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL)) != NULL &&
	    SSL_CTX_use_PrivateKey(ctx, k) == 1)
		rc = 0;
	EVP_PKEY_free(k);
	BIO_free(bio);
	return rc;
}

/* Trusts the inline CA certificates and names them to clients. */
static int
tls_inline_ca(SSL_CTX *ctx, const char *pem)
{
	BIO *bio = BIO_new_mem_buf(pem, -1);
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	X509 *x;
	int n = 0;

	if (bio == NULL)
		return -1;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) != 1 ||
		    SSL_CTX_add_client_CA(ctx, x) != 1) {
			X509_free(x);
			BIO_free(bio);
			return -1;
		}
		X509_free(x);
		n++;
	}
	BIO_free(bio);
	if (n == 0)
		return -1;
	ERR_clear_error();
	return 0;
}

/*
 * The context for wc; path (the configuration file) names errors.  NULL
 * with *cause when a file cannot be read or does not fit.
 */
SSL_CTX *
tls_ctx_create(const struct webconfig *wc, const char *path, char **cause)
{
	static const unsigned char sid[] = "promfork";
	STACK_OF(X509_NAME) * names;
	SSL_CTX *ctx;
	char why[256];
	const char *what;
	int mode = SSL_VERIFY_NONE;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		what = "cannot make a TLS context";
		goto fail;
	}
	what = "min_version/max_version";
	if (SSL_CTX_set_min_proto_version(ctx, wc->min_version) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, wc->max_version) != 1)
		goto fail;
	if (wc->prefer_server)
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	what = "cipher_suites";
	if (wc->ciphers != NULL &&
	    SSL_CTX_set_cipher_list(ctx, wc->ciphers) != 1)
		goto fail;
	what = "curve_preferences";
	if (wc->curves != NULL &&
	    SSL_CTX_set1_groups_list(ctx, wc->curves) != 1)
		goto fail;
	what = "cert_file";
	if (wc->cert_file != NULL &&
	    SSL_CTX_use_certificate_chain_file(ctx, wc->cert_file) != 1)
		goto fail;
	what = "cert";
	if (wc->cert != NULL && tls_inline_chain(ctx, wc->cert) != 0)
		goto fail;
	what = "key_file";
	if (wc->key_file != NULL &&
	    SSL_CTX_use_PrivateKey_file(ctx, wc->key_file, SSL_FILETYPE_PEM) !=
		1)
		goto fail;
	what = "key";
	if (wc->key != NULL && tls_inline_key(ctx, wc->key) != 0)
		goto fail;
	what = "the key does not match the certificate";
	if (SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	what = "client_ca_file";
	if (wc->client_ca_file != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, wc->client_ca_file,
			NULL) != 1 ||
		    (names = SSL_load_client_CA_file(wc->client_ca_file)) ==
			NULL)
			goto fail;
		SSL_CTX_set_client_CA_list(ctx, names);
	}
	what = "client_ca";
	if (wc->client_ca != NULL && tls_inline_ca(ctx, wc->client_ca) != 0)
		goto fail;
	switch (wc->client_auth) {
	case WEBCONFIG_NO_CLIENT_CERT:
		break;
	case WEBCONFIG_REQUEST_CLIENT_CERT:
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_any_cb);
		break;
	case WEBCONFIG_REQUIRE_ANY_CLIENT_CERT:
		SSL_CTX_set_verify(ctx,
		    SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
		    tls_verify_any_cb);
		break;
	case WEBCONFIG_VERIFY_CLIENT_CERT_IF_GIVEN:
		mode = SSL_VERIFY_PEER;
		SSL_CTX_set_verify(ctx, mode, NULL);
		break;
	case WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT:
		mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		SSL_CTX_set_verify(ctx, mode, NULL);
		break;
	}
	/* Resumed sessions must carry the context their client was checked
	 * in, or OpenSSL refuses them. */
	SSL_CTX_set_session_id_context(ctx, sid, sizeof sid - 1);
	return ctx;

fail:
	tls_error(why, sizeof why);
	xasprintf(cause, "%s: tls_server_config: %s: %s", path, what, why);
	SSL_CTX_free(ctx);
	return NULL;
}
