/*
 * The OpenSSL context of the listener, made from a web configuration:
 * certificate and key (files or inline PEM), TLS versions, cipher suites
 * and curves, and the client certificate policy mapped from Go's
 * ClientAuthType onto OpenSSL's verify modes.  A context is made whole or
 * not at all, so that a bad reload leaves the old one in use.
 */
#include <sys/socket.h>

#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

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

/* The context's client_allowed_sans, "a\0b\0\0", freed with it: a
 * handshake under an older context still has its own. */
static int tls_sans_idx = -1;

static void
tls_sans_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
    void *argp)
{
	free(ptr);
}

/* Does one of the certificate's SANs (DNS, e-mail, URI or IP address)
 * equal one of names, exactly?  The toolkit's rule. */
static int
tls_sans_match(X509 *cert, const char *names)
{
	GENERAL_NAMES *gens =
	    X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	const GENERAL_NAME *g;
	const ASN1_STRING *a;
	char text[INET6_ADDRSTRLEN];
	const char *n, *v;
	size_t len;
	int i, found = 0;

	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found;
	     i++) {
		g = sk_GENERAL_NAME_value(gens, i);
		v = NULL;
		len = 0;
		switch (g->type) {
		case GEN_DNS:
		case GEN_EMAIL:
		case GEN_URI:
			a = g->d.ia5;
			v = (const char *)ASN1_STRING_get0_data(a);
			len = (size_t)ASN1_STRING_length(a);
			break;
		case GEN_IPADD:
			a = g->d.iPAddress;
			if ((ASN1_STRING_length(a) == 4 &&
				inet_ntop(AF_INET, ASN1_STRING_get0_data(a),
				    text, sizeof text) != NULL) ||
			    (ASN1_STRING_length(a) == 16 &&
				inet_ntop(AF_INET6, ASN1_STRING_get0_data(a),
				    text, sizeof text) != NULL)) {
				v = text;
				len = strlen(text);
			}
			break;
		}
		for (n = names; v != NULL && *n != '\0' && !found;
		     n += strlen(n) + 1)
			found = strlen(n) == len && memcmp(n, v, len) == 0;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

/* OpenSSL's check of the chain, then, for the client's own certificate,
 * client_allowed_sans. */
static int
tls_verify_sans_cb(int ok, X509_STORE_CTX *x)
{
	SSL *ssl;
	const char *names;

	if (!ok || X509_STORE_CTX_get_error_depth(x) != 0)
		return ok;
	ssl =
	    X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
	names = ssl != NULL
	    ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), tls_sans_idx)
	    : NULL;
	if (names == NULL ||
	    tls_sans_match(X509_STORE_CTX_get_current_cert(x), names))
		return 1;
	X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
	return 0;
}

/* Keeps a copy of wc's client_allowed_sans with ctx. */
static int
tls_sans_set(SSL_CTX *ctx, const struct webconfig *wc)
{
	size_t i, len = 1;
	char *names, *p;

	if (tls_sans_idx == -1 &&
	    (tls_sans_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
		 tls_sans_free)) == -1)
		return -1;
	for (i = 0; i < wc->nsans; i++)
		len += strlen(wc->sans[i]) + 1;
	p = names = xmalloc(len);
	for (i = 0; i < wc->nsans; i++) {
		memcpy(p, wc->sans[i], strlen(wc->sans[i]) + 1);
		p += strlen(wc->sans[i]) + 1;
	}
	*p = '\0';
	if (SSL_CTX_set_ex_data(ctx, tls_sans_idx, names) != 1) {
		free(names);
		return -1;
	}
	return 0;
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
	SSL_verify_cb verify = NULL;

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
	case WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT:
		what = "client_allowed_sans";
		if (wc->nsans > 0) {
			if (tls_sans_set(ctx, wc) != 0)
				goto fail;
			verify = tls_verify_sans_cb;
		}
		/* With names to check, a client must show a certificate. */
		SSL_CTX_set_verify(ctx,
		    SSL_VERIFY_PEER |
			(wc->client_auth ==
					WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT ||
				    wc->nsans > 0
				? SSL_VERIFY_FAIL_IF_NO_PEER_CERT
				: 0),
		    verify);
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
