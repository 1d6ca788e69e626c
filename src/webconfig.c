/*
 * --web.config.file: the Prometheus exporter-toolkit's web configuration
 * (YAML, read with libyaml) turned into a struct webconfig: TLS, extra
 * answer headers and basic-auth users.  The keys, values and defaults are
 * the toolkit's; an unknown key is an error, as there.  Every error names
 * the file, the line and what is wrong.  Relative file names are taken
 * from the configuration file's directory, as the toolkit does.  Pure but
 * for reading the file, so tests and the fuzzer call it directly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>
#include <yaml.h>

#include "promfork.h"

#define nitems(a) (sizeof(a) / sizeof((a)[0]))

#define WEBCONFIG_FILE_MAX (1024 * 1024)
#define WEBCONFIG_USERS_MAX 1024
#define WEBCONFIG_LIST_MAX 64 /* cipher suites, curves */

struct webconfig_parse {
	yaml_document_t *doc;
	const char *path;
	const char *dir; /* of path, for relative file names */
	struct webconfig *wc;
	char **cause;
};

static const struct {
	const char *name;
	enum webconfig_client_auth value;
} webconfig_client_auths[] = {
	{ "", WEBCONFIG_NO_CLIENT_CERT },
	{ "NoClientCert", WEBCONFIG_NO_CLIENT_CERT },
	{ "RequestClientCert", WEBCONFIG_REQUEST_CLIENT_CERT },
	{ "RequireAnyClientCert", WEBCONFIG_REQUIRE_ANY_CLIENT_CERT },
	{ "RequireClientCert", WEBCONFIG_REQUIRE_ANY_CLIENT_CERT }, /* old */
	{ "VerifyClientCertIfGiven", WEBCONFIG_VERIFY_CLIENT_CERT_IF_GIVEN },
	{ "RequireAndVerifyClientCert",
	    WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT },
};

static const struct {
	const char *name;
	int value;
} webconfig_versions[] = {
	{ "TLS10", TLS1_VERSION },
	{ "TLS11", TLS1_1_VERSION },
	{ "TLS12", TLS1_2_VERSION },
	{ "TLS13", TLS1_3_VERSION },
};

/* The toolkit's curve names and OpenSSL's for them. */
static const struct {
	const char *name;
	const char *openssl;
} webconfig_curves[] = {
	{ "CurveP256", "P-256" },
	{ "CurveP384", "P-384" },
	{ "CurveP521", "P-521" },
	{ "X25519", "X25519" },
};

/* The headers the toolkit lets an operator set, and their allowed values
 * (NULL: any). */
static const struct {
	const char *name;
	const char *values[3];
} webconfig_headers[] = {
	{ "Strict-Transport-Security", { NULL } },
	{ "X-Content-Type-Options", { "nosniff", NULL } },
	{ "X-Frame-Options", { "deny", "sameorigin", NULL } },
	{ "X-XSS-Protection", { NULL } },
	{ "Content-Security-Policy", { NULL } },
};

static int PRINTFLIKE(3, 4) webconfig_error(struct webconfig_parse *p,
    const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n != NULL)
		xasprintf(p->cause, "%s:%zu: %s", p->path,
		    (size_t)n->start_mark.line + 1, msg);
	else
		xasprintf(p->cause, "%s: %s", p->path, msg);
	free(msg);
	return -1;
}

static const char *
webconfig_scalar_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A plain ~, null or nothing is YAML's null: the key's zero value. */
static int
webconfig_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	v = webconfig_scalar_text(n);
	return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	    strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static int
webconfig_string(struct webconfig_parse *p, const yaml_node_t *n,
    const char *key, char **out)
{
	free(*out);
	*out = NULL;
	if (webconfig_is_null(n))
		return 0;
	if (n->type != YAML_SCALAR_NODE)
		return webconfig_error(p, n, "%s must be a string", key);
	if (strlen(webconfig_scalar_text(n)) != n->data.scalar.length)
		return webconfig_error(p, n, "%s has a NUL byte", key);
	*out = xstrdup(webconfig_scalar_text(n));
	return 0;
}

/* A file name, taken from the configuration file's directory when
 * relative. */
static int
webconfig_filename(struct webconfig_parse *p, const yaml_node_t *n,
    const char *key, char **out)
{
	char *s = NULL;

	if (webconfig_string(p, n, key, &s) != 0)
		return -1;
	free(*out);
	*out = NULL;
	if (s == NULL || *s == '\0') {
		free(s);
		return 0;
	}
	if (s[0] == '/' || p->dir == NULL)
		*out = s;
	else {
		xasprintf(out, "%s/%s", p->dir, s);
		free(s);
	}
	return 0;
}

static int
webconfig_bool(struct webconfig_parse *p, const yaml_node_t *n, const char *key,
    int *out)
{
	const char *v;

	if (n->type == YAML_SCALAR_NODE &&
	    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		v = webconfig_scalar_text(n);
		if (strcmp(v, "true") == 0 || strcmp(v, "True") == 0 ||
		    strcmp(v, "TRUE") == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(v, "false") == 0 || strcmp(v, "False") == 0 ||
		    strcmp(v, "FALSE") == 0) {
			*out = 0;
			return 0;
		}
	}
	return webconfig_error(p, n, "%s must be true or false", key);
}

static int
webconfig_version(struct webconfig_parse *p, const yaml_node_t *n,
    const char *key, int *out)
{
	size_t i;

	if (n->type == YAML_SCALAR_NODE) {
		for (i = 0; i < nitems(webconfig_versions); i++) {
			if (strcmp(webconfig_scalar_text(n),
				webconfig_versions[i].name) == 0) {
				*out = webconfig_versions[i].value;
				return 0;
			}
		}
	}
	return webconfig_error(p, n,
	    "%s must be one of TLS10, TLS11, TLS12, TLS13", key);
}

/* Appends s to a ':'-separated list. */
static void
webconfig_list_add(char **list, const char *s)
{
	char *old = *list;

	if (old == NULL)
		*list = xstrdup(s);
	else {
		xasprintf(list, "%s:%s", old, s);
		free(old);
	}
}

/* A list of at most WEBCONFIG_LIST_MAX entries. */
static int
webconfig_list(struct webconfig_parse *p, const yaml_node_t *n, const char *key)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return webconfig_error(p, n, "%s must be a list", key);
	if (n->data.sequence.items.top - n->data.sequence.items.start >
	    WEBCONFIG_LIST_MAX)
		return webconfig_error(p, n, "%s: more than %d entries", key,
		    WEBCONFIG_LIST_MAX);
	return 0;
}

/*
 * cipher_suites: Go's names, which are the IANA names (Go's
 * TLS_..._CHACHA20_POLY1305 lacks IANA's _SHA256), turned into OpenSSL's
 * names by OpenSSL itself.
 */
static int
webconfig_ciphers(struct webconfig_parse *p, const yaml_node_t *n)
{
	yaml_node_item_t *it;
	const yaml_node_t *item;
	const char *name, *ossl;
	char *iana;

	free(p->wc->ciphers);
	p->wc->ciphers = NULL;
	if (webconfig_is_null(n))
		return 0;
	if (webconfig_list(p, n, "cipher_suites") != 0)
		return -1;
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		item = yaml_document_get_node(p->doc, *it);
		if (item == NULL || item->type != YAML_SCALAR_NODE)
			return webconfig_error(p, n,
			    "cipher_suites: each entry must be a name");
		name = webconfig_scalar_text(item);
		ossl = OPENSSL_cipher_name(name);
		if (strcmp(ossl, "(NONE)") == 0) {
			xasprintf(&iana, "%s_SHA256", name);
			ossl = OPENSSL_cipher_name(iana);
			free(iana);
		}
		if (strcmp(ossl, "(NONE)") == 0 ||
		    strncmp(name, "TLS_AES_", 8) == 0 ||
		    strncmp(name, "TLS_CHACHA20_", 13) == 0)
			return webconfig_error(p, item,
			    "cipher_suites: \"%s\" is not a TLS 1.2 cipher "
			    "suite this OpenSSL has (use the names of Go's "
			    "crypto/tls, e.g. "
			    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)",
			    name);
		webconfig_list_add(&p->wc->ciphers, ossl);
	}
	return 0;
}

/* client_allowed_sans: names a client certificate must have one of. */
static int
webconfig_sans(struct webconfig_parse *p, const yaml_node_t *n)
{
	struct webconfig *wc = p->wc;
	yaml_node_item_t *it;
	const yaml_node_t *item;
	size_t i;

	for (i = 0; i < wc->nsans; i++)
		free(wc->sans[i]);
	free(wc->sans);
	wc->sans = NULL;
	wc->nsans = 0;
	if (webconfig_is_null(n))
		return 0;
	if (webconfig_list(p, n, "client_allowed_sans") != 0)
		return -1;
	wc->sans = xcalloc((size_t)(n->data.sequence.items.top -
			       n->data.sequence.items.start),
	    sizeof *wc->sans);
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		item = yaml_document_get_node(p->doc, *it);
		if (item == NULL || item->type != YAML_SCALAR_NODE ||
		    *webconfig_scalar_text(item) == '\0' ||
		    strlen(webconfig_scalar_text(item)) !=
			item->data.scalar.length)
			return webconfig_error(p, item != NULL ? item : n,
			    "client_allowed_sans: each entry must be a name");
		wc->sans[wc->nsans++] = xstrdup(webconfig_scalar_text(item));
	}
	return 0;
}

static int
webconfig_curves_parse(struct webconfig_parse *p, const yaml_node_t *n)
{
	yaml_node_item_t *it;
	const yaml_node_t *item;
	size_t i;

	free(p->wc->curves);
	p->wc->curves = NULL;
	if (webconfig_is_null(n))
		return 0;
	if (webconfig_list(p, n, "curve_preferences") != 0)
		return -1;
	for (it = n->data.sequence.items.start; it < n->data.sequence.items.top;
	     it++) {
		item = yaml_document_get_node(p->doc, *it);
		for (i = 0; item != NULL && item->type == YAML_SCALAR_NODE &&
		     i < nitems(webconfig_curves);
		     i++) {
			if (strcmp(webconfig_scalar_text(item),
				webconfig_curves[i].name) == 0)
				break;
		}
		if (item == NULL || item->type != YAML_SCALAR_NODE ||
		    i == nitems(webconfig_curves))
			return webconfig_error(p, item != NULL ? item : n,
			    "curve_preferences: each entry must be one of "
			    "CurveP256, CurveP384, CurveP521, X25519");
		webconfig_list_add(&p->wc->curves, webconfig_curves[i].openssl);
	}
	return 0;
}

/* Checks that a mapping's keys are distinct strings; iterating is then
 * the caller's. */
static int
webconfig_mapping(struct webconfig_parse *p, const yaml_node_t *n,
    const char *what)
{
	yaml_node_pair_t *a, *b;
	const yaml_node_t *ka, *kb;

	if (n->type != YAML_MAPPING_NODE)
		return webconfig_error(p, n, "%s must be a mapping of keys",
		    what);
	for (a = n->data.mapping.pairs.start; a < n->data.mapping.pairs.top;
	     a++) {
		ka = yaml_document_get_node(p->doc, a->key);
		if (ka == NULL || ka->type != YAML_SCALAR_NODE ||
		    strlen(webconfig_scalar_text(ka)) != ka->data.scalar.length)
			return webconfig_error(p, ka != NULL ? ka : n,
			    "%s: keys must be strings", what);
		if (yaml_document_get_node(p->doc, a->value) == NULL)
			return webconfig_error(p, ka, "%s: a key without value",
			    what);
		/* Quadratic, on at most WEBCONFIG_USERS_MAX keys. */
		for (b = n->data.mapping.pairs.start; b < a; b++) {
			kb = yaml_document_get_node(p->doc, b->key);
			if (strcmp(webconfig_scalar_text(ka),
				webconfig_scalar_text(kb)) == 0)
				return webconfig_error(p, ka,
				    "%s: \"%s\" is given twice", what,
				    webconfig_scalar_text(ka));
		}
	}
	return 0;
}

#define WEBCONFIG_KEY(pair) \
	webconfig_scalar_text(yaml_document_get_node(p->doc, (pair)->key))
#define WEBCONFIG_KEYNODE(pair) yaml_document_get_node(p->doc, (pair)->key)
#define WEBCONFIG_VALUE(pair) yaml_document_get_node(p->doc, (pair)->value)

static int
webconfig_tls(struct webconfig_parse *p, const yaml_node_t *n)
{
	struct webconfig *wc = p->wc;
	yaml_node_pair_t *pair;
	const yaml_node_t *v;
	const char *k;
	char *auth = NULL;
	size_t i;
	int rc = -1;

	if (webconfig_is_null(n))
		return 0;
	if (webconfig_mapping(p, n, "tls_server_config") != 0)
		return -1;
	/* Any key means TLS is wanted: a file with versions or suites and no
	 * certificate is refused, where the toolkit would serve plain HTTP. */
	wc->tls_keys = n->data.mapping.pairs.top > n->data.mapping.pairs.start;
	for (pair = n->data.mapping.pairs.start;
	     pair < n->data.mapping.pairs.top; pair++) {
		k = WEBCONFIG_KEY(pair);
		v = WEBCONFIG_VALUE(pair);
		if (strcmp(k, "cert_file") == 0)
			rc = webconfig_filename(p, v, k, &wc->cert_file);
		else if (strcmp(k, "key_file") == 0)
			rc = webconfig_filename(p, v, k, &wc->key_file);
		else if (strcmp(k, "client_ca_file") == 0)
			rc = webconfig_filename(p, v, k, &wc->client_ca_file);
		else if (strcmp(k, "cert") == 0)
			rc = webconfig_string(p, v, k, &wc->cert);
		else if (strcmp(k, "key") == 0)
			rc = webconfig_string(p, v, k, &wc->key);
		else if (strcmp(k, "client_ca") == 0)
			rc = webconfig_string(p, v, k, &wc->client_ca);
		else if (strcmp(k, "client_auth_type") == 0) {
			if ((rc = webconfig_string(p, v, k, &auth)) != 0)
				goto out;
			for (i = 0; i < nitems(webconfig_client_auths); i++) {
				if (strcmp(auth != NULL ? auth : "",
					webconfig_client_auths[i].name) == 0)
					break;
			}
			if (i == nitems(webconfig_client_auths)) {
				rc = webconfig_error(p, v,
				    "client_auth_type \"%s\" is none of "
				    "NoClientCert, RequestClientCert, "
				    "RequireAnyClientCert, "
				    "VerifyClientCertIfGiven, "
				    "RequireAndVerifyClientCert",
				    auth);
				goto out;
			}
			wc->client_auth = webconfig_client_auths[i].value;
			wc->client_auth_set = *webconfig_client_auths[i].name;
		} else if (strcmp(k, "min_version") == 0)
			rc = webconfig_version(p, v, k, &wc->min_version);
		else if (strcmp(k, "max_version") == 0)
			rc = webconfig_version(p, v, k, &wc->max_version);
		else if (strcmp(k, "cipher_suites") == 0)
			rc = webconfig_ciphers(p, v);
		else if (strcmp(k, "curve_preferences") == 0)
			rc = webconfig_curves_parse(p, v);
		else if (strcmp(k, "prefer_server_cipher_suites") == 0)
			rc = webconfig_bool(p, v, k, &wc->prefer_server);
		else if (strcmp(k, "client_allowed_sans") == 0)
			rc = webconfig_sans(p, v);
		else
			rc = webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "unknown key tls_server_config.%s", k);
		if (rc != 0)
			goto out;
	}
	rc = 0;
out:
	free(auth);
	return rc;
}

static int
webconfig_headers_parse(struct webconfig_parse *p, const yaml_node_t *n)
{
	struct webconfig *wc = p->wc;
	yaml_node_pair_t *pair;
	const yaml_node_t *v;
	const char *k, *val;
	char *s = NULL;
	size_t i, j;

	if (webconfig_is_null(n))
		return 0;
	if (webconfig_mapping(p, n, "http_server_config.headers") != 0)
		return -1;
	for (pair = n->data.mapping.pairs.start;
	     pair < n->data.mapping.pairs.top; pair++) {
		k = WEBCONFIG_KEY(pair);
		v = WEBCONFIG_VALUE(pair);
		for (i = 0; i < nitems(webconfig_headers); i++) {
			if (strcmp(k, webconfig_headers[i].name) == 0)
				break;
		}
		if (i == nitems(webconfig_headers))
			return webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "HTTP header \"%s\" can not be configured (only "
			    "Strict-Transport-Security, "
			    "X-Content-Type-Options, X-Frame-Options, "
			    "X-XSS-Protection, Content-Security-Policy)",
			    k);
		if (webconfig_string(p, v, k, &s) != 0)
			return -1;
		val = s != NULL ? s : "";
		for (j = 0; webconfig_headers[i].values[j] != NULL; j++) {
			if (strcmp(val, webconfig_headers[i].values[j]) == 0)
				break;
		}
		if (webconfig_headers[i].values[0] != NULL &&
		    webconfig_headers[i].values[j] == NULL) {
			webconfig_error(p, v,
			    "invalid value \"%s\" for %s: expected %s%s%s", val,
			    k, webconfig_headers[i].values[0],
			    webconfig_headers[i].values[1] != NULL ? " or "
								   : "",
			    webconfig_headers[i].values[1] != NULL
				? webconfig_headers[i].values[1]
				: "");
			free(s);
			return -1;
		}
		/* A value is one header line: no line break, no control. */
		for (j = 0; val[j] != '\0'; j++) {
			if ((unsigned char)val[j] < 0x20 || val[j] == 0x7f) {
				free(s);
				return webconfig_error(p, v,
				    "%s: a control character in the value", k);
			}
		}
		if (strlen(val) > WEBCONFIG_HEADER_VALUE_MAX) {
			free(s);
			return webconfig_error(p, v,
			    "%s: the value is longer than %d bytes", k,
			    WEBCONFIG_HEADER_VALUE_MAX);
		}
		/* Blank: the header is unset, as in the toolkit. */
		if (*val != '\0') {
			wc->headers[wc->nheaders].name =
			    webconfig_headers[i].name;
			wc->headers[wc->nheaders].value = s;
			wc->nheaders++;
			s = NULL;
		}
		free(s);
		s = NULL;
	}
	return 0;
}

static int
webconfig_http(struct webconfig_parse *p, const yaml_node_t *n)
{
	yaml_node_pair_t *pair;
	const yaml_node_t *v;
	const char *k;
	int http2;

	if (webconfig_is_null(n))
		return 0;
	if (webconfig_mapping(p, n, "http_server_config") != 0)
		return -1;
	for (pair = n->data.mapping.pairs.start;
	     pair < n->data.mapping.pairs.top; pair++) {
		k = WEBCONFIG_KEY(pair);
		v = WEBCONFIG_VALUE(pair);
		if (strcmp(k, "headers") == 0) {
			if (webconfig_headers_parse(p, v) != 0)
				return -1;
		} else if (strcmp(k, "http2") == 0) {
			/* Accepted and without effect: HTTP/1.1 only. */
			if (webconfig_bool(p, v, k, &http2) != 0)
				return -1;
		} else
			return webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "unknown key http_server_config.%s", k);
	}
	return 0;
}

/*
 * A bcrypt hash as crypt(3) writes it: $2a$, $2b$ or $2y$, a two-digit
 * cost from 04 to 31, $, then 53 characters of bcrypt's base64.
 */
int
webconfig_hash_valid(const char *h)
{
	size_t i;
	int cost;

	if (strlen(h) != 60 || h[0] != '$' || h[1] != '2' ||
	    strchr("aby", h[2]) == NULL || h[2] == '\0' || h[3] != '$' ||
	    h[4] < '0' || h[4] > '9' || h[5] < '0' || h[5] > '9' || h[6] != '$')
		return 0;
	cost = (h[4] - '0') * 10 + (h[5] - '0');
	if (cost < 4 || cost > 31)
		return 0;
	for (i = 7; i < 60; i++) {
		if (strchr("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
			   "wxyz0123456789",
			h[i]) == NULL)
			return 0;
	}
	return 1;
}

static int
webconfig_users(struct webconfig_parse *p, const yaml_node_t *n)
{
	struct webconfig *wc = p->wc;
	yaml_node_pair_t *pair;
	const yaml_node_t *v;
	char *hash = NULL;
	size_t count;

	if (webconfig_is_null(n))
		return 0;
	if (webconfig_mapping(p, n, "basic_auth_users") != 0)
		return -1;
	count =
	    (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (count > WEBCONFIG_USERS_MAX)
		return webconfig_error(p, n,
		    "basic_auth_users: more than %d users",
		    WEBCONFIG_USERS_MAX);
	wc->users = xcalloc(count, sizeof *wc->users);
	for (pair = n->data.mapping.pairs.start;
	     pair < n->data.mapping.pairs.top; pair++) {
		v = WEBCONFIG_VALUE(pair);
		if (strchr(WEBCONFIG_KEY(pair), ':') != NULL)
			return webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "basic_auth_users: a user name cannot hold a "
			    "colon");
		if (webconfig_string(p, v, "a password hash", &hash) != 0)
			return -1;
		if (hash == NULL || !webconfig_hash_valid(hash)) {
			free(hash);
			return webconfig_error(p, v,
			    "basic_auth_users: the password of \"%s\" is not "
			    "a bcrypt hash ($2y$, $2b$ or $2a$, cost 04 to "
			    "31; make one with htpasswd -nBC 10 \"\")",
			    WEBCONFIG_KEY(pair));
		}
		wc->users[wc->nusers].name = xstrdup(WEBCONFIG_KEY(pair));
		wc->users[wc->nusers].hash = hash;
		hash = NULL;
		wc->nusers++;
	}
	return 0;
}

/* The checks across keys, after all are read (the toolkit's). */
static int
webconfig_check(struct webconfig_parse *p)
{
	struct webconfig *wc = p->wc;

	wc->tls = wc->cert_file != NULL || wc->key_file != NULL ||
	    wc->client_ca_file != NULL || wc->cert != NULL || wc->key != NULL ||
	    wc->client_ca != NULL || wc->client_auth_set || wc->tls_keys;
	if (!wc->tls)
		return 0;
	if (wc->cert_file == NULL && wc->cert == NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: missing one of cert or cert_file");
	if (wc->key_file == NULL && wc->key == NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: missing one of key or key_file");
	if (wc->cert_file != NULL && wc->cert != NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: cert and cert_file are both given");
	if (wc->key_file != NULL && wc->key != NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: key and key_file are both given");
	if (wc->client_ca_file != NULL && wc->client_ca != NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: client_ca and client_ca_file are "
		    "both given");
	if ((wc->client_ca_file != NULL || wc->client_ca != NULL) &&
	    wc->client_auth == WEBCONFIG_NO_CLIENT_CERT)
		return webconfig_error(p, NULL,
		    "tls_server_config: a client CA is given without a "
		    "client_auth_type (RequireAndVerifyClientCert?)");
	if ((wc->client_auth == WEBCONFIG_VERIFY_CLIENT_CERT_IF_GIVEN ||
		wc->client_auth == WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT) &&
	    wc->client_ca_file == NULL && wc->client_ca == NULL)
		return webconfig_error(p, NULL,
		    "tls_server_config: client_auth_type verifies client "
		    "certificates: give client_ca_file");
	if (wc->nsans > 0 &&
	    wc->client_auth != WEBCONFIG_VERIFY_CLIENT_CERT_IF_GIVEN &&
	    wc->client_auth != WEBCONFIG_REQUIRE_AND_VERIFY_CLIENT_CERT)
		return webconfig_error(p, NULL,
		    "tls_server_config: client_allowed_sans needs verified "
		    "client certificates (RequireAndVerifyClientCert)");
	if (wc->min_version > wc->max_version)
		return webconfig_error(p, NULL,
		    "tls_server_config: min_version is above max_version");
	return 0;
}

static int
webconfig_root(struct webconfig_parse *p, const yaml_node_t *n)
{
	yaml_node_pair_t *pair;
	const yaml_node_t *v;
	const char *k;
	int rc;

	if (webconfig_is_null(n))
		return 0;
	if (webconfig_mapping(p, n, "the file") != 0)
		return -1;
	for (pair = n->data.mapping.pairs.start;
	     pair < n->data.mapping.pairs.top; pair++) {
		k = WEBCONFIG_KEY(pair);
		v = WEBCONFIG_VALUE(pair);
		if (strcmp(k, "tls_server_config") == 0)
			rc = webconfig_tls(p, v);
		else if (strcmp(k, "http_server_config") == 0)
			rc = webconfig_http(p, v);
		else if (strcmp(k, "basic_auth_users") == 0)
			rc = webconfig_users(p, v);
		else if (strcmp(k, "rate_limit") == 0)
			rc = webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "rate_limit is not supported by promfork (its "
			    "listener caps connections per client instead)");
		else
			rc = webconfig_error(p, WEBCONFIG_KEYNODE(pair),
			    "unknown key %s", k);
		if (rc != 0)
			return -1;
	}
	return 0;
}

void
webconfig_free(struct webconfig *wc)
{
	size_t i;

	if (wc == NULL)
		return;
	free(wc->cert_file);
	free(wc->key_file);
	free(wc->client_ca_file);
	free(wc->cert);
	free(wc->key);
	free(wc->client_ca);
	free(wc->ciphers);
	free(wc->curves);
	for (i = 0; i < wc->nheaders; i++)
		free(wc->headers[i].value);
	for (i = 0; i < wc->nsans; i++)
		free(wc->sans[i]);
	free(wc->sans);
	for (i = 0; i < wc->nusers; i++) {
		free(wc->users[i].name);
		free(wc->users[i].hash);
	}
	free(wc->users);
	free(wc);
}

/*
 * Parses the text of a web configuration file; path names it in errors
 * and its directory anchors relative file names.  NULL with *cause set on
 * any error.
 */
struct webconfig *
webconfig_parse(const char *text, size_t len, const char *path, char **cause)
{
	struct webconfig_parse p;
	struct webconfig *wc = xcalloc(1, sizeof *wc);
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	char *dir = file_dir(path);
	int rc = -1;

	wc->min_version = TLS1_2_VERSION;
	wc->max_version = TLS1_3_VERSION;
	wc->prefer_server = 1;
	memset(&p, 0, sizeof p);
	p.path = path;
	p.dir = dir;
	p.wc = wc;
	p.cause = cause;
	if (!yaml_parser_initialize(&parser))
		fatalx("yaml_parser_initialize");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		xasprintf(cause, "%s:%zu: not YAML: %s", path,
		    (size_t)parser.problem_mark.line + 1,
		    parser.problem != NULL ? parser.problem : "parse error");
		yaml_parser_delete(&parser);
		goto out;
	}
	p.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root != NULL && webconfig_root(&p, root) == 0)
		rc = webconfig_check(&p);
	else if (root == NULL)
		rc = webconfig_check(&p);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
out:
	free(dir);
	if (rc != 0) {
		webconfig_free(wc);
		return NULL;
	}
	return wc;
}

/* Reads and parses the file; a missing one is an error. */
struct webconfig *
webconfig_read(const char *path, char **cause)
{
	struct webconfig *wc;
	char *text, *why = NULL;
	size_t len;

	if (file_read(path, WEBCONFIG_FILE_MAX, &text, &len, &why) != 0) {
		xasprintf(cause, "--web.config.file: %s", why);
		free(why);
		return NULL;
	}
	if (text == NULL) {
		xasprintf(cause, "--web.config.file %s: no such file", path);
		return NULL;
	}
	wc = webconfig_parse(text, len, path, cause);
	free(text);
	return wc;
}
