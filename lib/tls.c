/* tls.c: see tls.h. OpenSSL through memory BIOs (DEPS-FACTS section 7).
 *
 * Contexts: srv->base is the context every SSL is made from; it holds the
 * protocol settings and the callbacks (SNI, tickets) and the default
 * certificate loaded at creation. The SNI callback then always switches
 * the SSL to a certificate context: a domain's, or the current default
 * (so a reloaded default is what new handshakes get). Ticket keys are
 * taken from the session context, which stays srv->base.
 */
#include "tls.h"

#include "log.h"
#include "xalloc.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define TLS__SVC "tls"
#define TLS__CERT_MAX (1u << 20) /* a certificate or key file */
#define TLS__SECRET_MAX 64u

struct tls__domain {
	char *name;
	SSL_CTX *ctx;
};

struct tls__ticket_key {
	uint64_t period; /* UINT64_MAX: not derived */
	uint8_t name[16];
	uint8_t aes[32];
	uint8_t hmac[32];
};

struct tls_server {
	SSL_CTX *base;
	SSL_CTX *dflt;
	struct tls__domain *domains;
	size_t n_domains;
	uint8_t secret[TLS__SECRET_MAX];
	size_t secret_len;
	unsigned period_s;
	uint64_t clock_s; /* tests; 0 = wall clock */
	X509_STORE *client_ca; /* tls_server_require_client_cert(); NULL = none */
	struct tls__ticket_key keys[TLS_TICKET_PERIODS_ACCEPTED];
};

struct tls_client {
	SSL_CTX *ctx;
};

struct tls_conn {
	tls_server *srv;  /* NULL for a client connection */
	SSL *ssl;
	BIO *rbio, *wbio; /* owned by ssl */
	int done;         /* handshake finished */
	int failed;
	int logged;       /* tls_conn_log_handshake() wrote its line */
	buf held;         /* plaintext written before the handshake finished */
	char sni[256];
	char role[TLS_ROLE_MAX + 1];
	char error[160];
};

/* ---- errors ---------------------------------------------------------- */

/* The first OpenSSL error of the queue as text; the queue is cleared. */
static void tls__take_error(char *out, size_t size)
{
	unsigned long e = ERR_get_error();
	if (e == 0)
		snprintf(out, size, "unknown");
	else
		ERR_error_string_n(e, out, size);
	ERR_clear_error();
}

/* ---- certificate contexts ---------------------------------------------- */

static SSL_CTX *tls__ctx_new(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* only stateless tickets: any frontend resumes */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_COMPRESSION);
	/* an idle connection (IMAP IDLE, thousands of them) keeps no record
	 * buffers: OpenSSL frees them whenever they are empty (~34 KiB a
	 * connection otherwise) */
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/* Load a certificate chain and its key from PEM text into ctx. 0 or -1. */
static int tls__ctx_use_pem(SSL_CTX *ctx, const char *cert, size_t cert_len, const char *key,
			    size_t key_len, const char **error_r)
{
	int ret = -1;
	BIO *cb = BIO_new_mem_buf(cert, (int)cert_len);
	BIO *kb = BIO_new_mem_buf(key, (int)key_len);
	X509 *leaf = cb != NULL ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pkey = kb != NULL ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	if (leaf == NULL) {
		*error_r = "tls: no certificate in the PEM";
		goto out;
	}
	if (pkey == NULL) {
		*error_r = "tls: no private key in the PEM";
		goto out;
	}
	if (SSL_CTX_use_certificate(ctx, leaf) != 1) {
		*error_r = "tls: the certificate was refused";
		goto out;
	}
	X509 *extra;
	while ((extra = PEM_read_bio_X509(cb, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(ctx, extra) != 1) {
			X509_free(extra);
			*error_r = "tls: a chain certificate was refused";
			goto out;
		}
	}
	ERR_clear_error(); /* the end of the PEM is an "error" */
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
		*error_r = "tls: the private key does not match the certificate";
		goto out;
	}
	ret = 0;
out:
	if (ret < 0) {
		char e[160];
		tls__take_error(e, sizeof e);
		log_event(LOG_WARN, TLS__SVC, "event=certificate_refused why=\"%s\" openssl=\"%s\"",
			  *error_r, e);
	}
	X509_free(leaf);
	EVP_PKEY_free(pkey);
	BIO_free(cb);
	BIO_free(kb);
	return ret;
}

/* Client certificates: SNI moves a connection to a certificate context
 * (SSL_set_SSL_CTX), which takes that context's verify store, so every
 * context of a server that requires them carries the CA store and mode. */
static void tls__ctx_verify_clients(SSL_CTX *ctx, X509_STORE *store)
{
	if (store == NULL)
		return;
	SSL_CTX_set1_verify_cert_store(ctx, store);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
}

/* A certificate context from PEM text, or NULL with *error_r. */
static SSL_CTX *tls__cert_ctx(const tls_server *srv, const char *cert, size_t cert_len,
			      const char *key, size_t key_len, const char **error_r)
{
	SSL_CTX *ctx = tls__ctx_new();
	if (ctx == NULL) {
		*error_r = "tls: out of memory";
		return NULL;
	}
	tls__ctx_verify_clients(ctx, srv->client_ca);
	if (tls__ctx_use_pem(ctx, cert, cert_len, key, key_len, error_r) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

/* Read a whole (small) file. NULL with *error_r. */
static char *tls__read_file(const char *path, size_t *len_r, const char **error_r)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		*error_r = "tls: cannot open a certificate or key file";
		log_event(LOG_WARN, TLS__SVC, "event=file_unreadable path=%s", path);
		return NULL;
	}
	char *data = xmalloc(TLS__CERT_MAX + 1);
	size_t n = fread(data, 1, TLS__CERT_MAX + 1, f);
	fclose(f);
	if (n > TLS__CERT_MAX) {
		free(data);
		*error_r = "tls: certificate or key file too large";
		return NULL;
	}
	data[n] = '\0';
	*len_r = n;
	return data;
}

int tls_server_load_default(tls_server *srv, const char *cert_file, const char *key_file,
			    const char **error_r)
{
	size_t cl = 0, kl = 0;
	char *cert = tls__read_file(cert_file, &cl, error_r);
	char *key = cert != NULL ? tls__read_file(key_file, &kl, error_r) : NULL;
	SSL_CTX *ctx = key != NULL ? tls__cert_ctx(srv, cert, cl, key, kl, error_r) : NULL;
	if (ctx != NULL && srv->base != NULL &&
	    tls__ctx_use_pem(srv->base, cert, cl, key, kl, error_r) < 0) {
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
	if (key != NULL)
		OPENSSL_cleanse(key, kl);
	free(cert);
	free(key);
	if (ctx == NULL)
		return -1;
	SSL_CTX_free(srv->dflt); /* connections hold their own reference */
	srv->dflt = ctx;
	log_event(LOG_INFO, TLS__SVC, "event=certificate_loaded domain=default file=%s",
		  cert_file);
	return 0;
}

int tls_server_set_domain(tls_server *srv, const char *domain, const char *cert_pem,
			  size_t cert_len, const char *key_pem, size_t key_len,
			  const char **error_r)
{
	SSL_CTX *ctx = NULL;
	if (cert_pem != NULL) {
		ctx = tls__cert_ctx(srv, cert_pem, cert_len, key_pem, key_len, error_r);
		if (ctx == NULL)
			return -1;
	}
	for (size_t k = 0; k < srv->n_domains; k++) {
		struct tls__domain *d = &srv->domains[k];
		if (strcasecmp(d->name, domain) != 0)
			continue;
		SSL_CTX_free(d->ctx);
		if (ctx != NULL) {
			d->ctx = ctx;
		} else {
			free(d->name);
			srv->domains[k] = srv->domains[--srv->n_domains];
		}
		return 0;
	}
	if (ctx == NULL)
		return 0; /* removing what is not there */
	srv->domains = xrealloc(srv->domains, (srv->n_domains + 1) * sizeof *srv->domains);
	srv->domains[srv->n_domains++] = (struct tls__domain){ xstrdup(domain), ctx };
	return 0;
}

size_t tls_server_domain_count(const tls_server *srv)
{
	return srv->n_domains;
}

/* The certificate context for a server name: the longest domain that is
 * the name or a parent of it, else the default. */
static SSL_CTX *tls__ctx_for(const tls_server *srv, const char *name)
{
	SSL_CTX *best = srv->dflt;
	size_t best_len = 0;
	size_t nl = name != NULL ? strlen(name) : 0;
	for (size_t k = 0; k < srv->n_domains; k++) {
		const struct tls__domain *d = &srv->domains[k];
		size_t dl = strlen(d->name);
		if (dl > nl || dl <= best_len)
			continue;
		const char *tail = name + (nl - dl);
		if (strcasecmp(tail, d->name) != 0)
			continue;
		if (dl < nl && tail[-1] != '.')
			continue;
		best = d->ctx;
		best_len = dl;
	}
	return best;
}

static int tls__servername_cb(SSL *ssl, int *alert, void *arg)
{
	(void)alert;
	tls_server *srv = arg;
	tls_conn *c = SSL_get_app_data(ssl);
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	if (name != NULL && c != NULL)
		snprintf(c->sni, sizeof c->sni, "%s", name);
	SSL_CTX *ctx = tls__ctx_for(srv, name);
	if (ctx != NULL && ctx != SSL_get_SSL_CTX(ssl)) {
		SSL_set_SSL_CTX(ssl, ctx);
		if (srv->client_ca != NULL)
			SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), NULL);
	}
	return SSL_TLSEXT_ERR_OK;
}

/* ---- session tickets ---------------------------------------------------- */

static uint64_t tls__now_s(const tls_server *srv)
{
	return srv->clock_s != 0 ? srv->clock_s : (uint64_t)time(NULL);
}

/* The keys of a period: HKDF-SHA256(secret, info = label | period). */
static int tls__derive(const tls_server *srv, uint64_t period, struct tls__ticket_key *k)
{
	uint8_t info[32] = "mail tls ticket keys v1";
	size_t il = strlen((const char *)info);
	for (int i = 0; i < 8; i++)
		info[il + (size_t)i] = (uint8_t)(period >> (56 - 8 * i));
	il += 8;
	uint8_t out[80];
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)srv->secret,
						  srv->secret_len),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, il),
		OSSL_PARAM_construct_end(),
	};
	int ok = kctx != NULL && EVP_KDF_derive(kctx, out, sizeof out, params) == 1;
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	if (!ok)
		return -1;
	k->period = period;
	memcpy(k->name, out, 16);
	memcpy(k->aes, out + 16, 32);
	memcpy(k->hmac, out + 48, 32);
	OPENSSL_cleanse(out, sizeof out);
	return 0;
}

/* The key of "ago" periods back (0 = now), derived when the period turned. */
static const struct tls__ticket_key *tls__key(tls_server *srv, unsigned ago)
{
	uint64_t now = tls__now_s(srv) / srv->period_s;
	if (now < ago)
		return NULL;
	uint64_t period = now - ago;
	struct tls__ticket_key *k = &srv->keys[period % TLS_TICKET_PERIODS_ACCEPTED];
	if (k->period != period && tls__derive(srv, period, k) < 0)
		return NULL;
	return k;
}

static int tls__mac_init(EVP_MAC_CTX *hctx, const struct tls__ticket_key *k)
{
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac,
						  sizeof k->hmac),
		OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_end(),
	};
	return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

static int tls__ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
			  EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	tls_conn *c = SSL_get_app_data(ssl);
	if (c == NULL)
		return -1;
	tls_server *srv = c->srv;
	if (enc) {
		const struct tls__ticket_key *k = tls__key(srv, 0);
		if (k == NULL || RAND_bytes(iv, 16) != 1)
			return -1;
		memcpy(key_name, k->name, 16);
		if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
		    tls__mac_init(hctx, k) < 0)
			return -1;
		return 1;
	}
	for (unsigned ago = 0; ago < TLS_TICKET_PERIODS_ACCEPTED; ago++) {
		const struct tls__ticket_key *k = tls__key(srv, ago);
		if (k == NULL || CRYPTO_memcmp(k->name, key_name, 16) != 0)
			continue;
		if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 ||
		    tls__mac_init(hctx, k) < 0)
			return -1;
		return ago == 0 ? 1 : 2; /* 2: accept, and issue a new ticket */
	}
	return 0; /* unknown or expired key: a full handshake */
}

int tls_server_set_ticket_secret(tls_server *srv, const void *secret, size_t len)
{
	if (len < TLS_TICKET_SECRET_MIN)
		return -1;
	if (len > sizeof srv->secret)
		len = sizeof srv->secret;
	if (len == srv->secret_len && memcmp(srv->secret, secret, len) == 0)
		return 0;
	memcpy(srv->secret, secret, len);
	srv->secret_len = len;
	for (unsigned k = 0; k < TLS_TICKET_PERIODS_ACCEPTED; k++)
		srv->keys[k].period = UINT64_MAX;
	return 0;
}

void tls_server_set_clock(tls_server *srv, uint64_t now_s)
{
	srv->clock_s = now_s;
}

/* ---- the server ---------------------------------------------------------- */

/* A server without its default certificate yet. NULL with *error_r. */
static tls_server *tls__server_new(unsigned ticket_period_s, const char **error_r)
{
	tls_server *srv = xcalloc(1, sizeof *srv);
	srv->period_s = ticket_period_s ? ticket_period_s : TLS_TICKET_PERIOD_S_DEFAULT;
	for (unsigned k = 0; k < TLS_TICKET_PERIODS_ACCEPTED; k++)
		srv->keys[k].period = UINT64_MAX;
	srv->secret_len = 32;
	if (RAND_bytes(srv->secret, (int)srv->secret_len) != 1) {
		*error_r = "tls: no randomness";
		free(srv);
		return NULL;
	}
	srv->base = tls__ctx_new();
	if (srv->base == NULL) {
		*error_r = "tls: out of memory";
		free(srv);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(srv->base, tls__servername_cb);
	SSL_CTX_set_tlsext_servername_arg(srv->base, srv);
	SSL_CTX_set_tlsext_ticket_key_evp_cb(srv->base, tls__ticket_cb);
	SSL_CTX_set_num_tickets(srv->base, 1);
	return srv;
}

int tls_server_create(const struct tls_server_settings *set, tls_server **srv_r,
		      const char **error_r)
{
	tls_server *srv = tls__server_new(set->ticket_period_s, error_r);
	if (srv == NULL)
		return -1;
	if (tls_server_load_default(srv, set->cert_file, set->key_file, error_r) < 0) {
		tls_server_destroy(&srv);
		return -1;
	}
	*srv_r = srv;
	return 0;
}

int tls_server_create_pem(const char *cert, size_t cert_len, const char *key, size_t key_len,
			  tls_server **srv_r, const char **error_r)
{
	tls_server *srv = tls__server_new(0, error_r);
	if (srv == NULL)
		return -1;
	srv->dflt = tls__cert_ctx(srv, cert, cert_len, key, key_len, error_r);
	if (srv->dflt == NULL ||
	    tls__ctx_use_pem(srv->base, cert, cert_len, key, key_len, error_r) < 0) {
		tls_server_destroy(&srv);
		return -1;
	}
	*srv_r = srv;
	return 0;
}

void tls_server_destroy(tls_server **srvp)
{
	tls_server *srv = *srvp;
	if (srv == NULL)
		return;
	*srvp = NULL;
	for (size_t k = 0; k < srv->n_domains; k++) {
		free(srv->domains[k].name);
		SSL_CTX_free(srv->domains[k].ctx);
	}
	free(srv->domains);
	X509_STORE_free(srv->client_ca);
	SSL_CTX_free(srv->dflt);
	SSL_CTX_free(srv->base);
	OPENSSL_cleanse(srv, sizeof *srv);
	free(srv);
}

/* A store of the certificates in a PEM file, or NULL with *error_r. */
static X509_STORE *tls__ca_store(const char *ca_file, const char **error_r)
{
	X509_STORE *store = X509_STORE_new();
	if (store == NULL || X509_STORE_load_file(store, ca_file) != 1) {
		char e[160];
		tls__take_error(e, sizeof e);
		log_event(LOG_WARN, TLS__SVC, "event=ca_unreadable path=%s openssl=\"%s\"",
			  ca_file, e);
		X509_STORE_free(store);
		*error_r = "tls: cannot load the CA file";
		return NULL;
	}
	return store;
}

int tls_server_require_client_cert(tls_server *srv, const char *ca_file, const char **error_r)
{
	X509_STORE *store = tls__ca_store(ca_file, error_r);
	if (store == NULL)
		return -1;
	X509_STORE_free(srv->client_ca);
	srv->client_ca = store;
	tls__ctx_verify_clients(srv->base, store);
	tls__ctx_verify_clients(srv->dflt, store);
	for (size_t k = 0; k < srv->n_domains; k++)
		tls__ctx_verify_clients(srv->domains[k].ctx, store);
	return 0;
}

/* ---- the client side ---------------------------------------------------- */

int tls_client_create(const struct tls_client_settings *set, tls_client **cli_r,
		      const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = "tls: out of memory";
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	X509_STORE *store = tls__ca_store(set->ca_file, error_r);
	if (store == NULL) {
		SSL_CTX_free(ctx);
		return -1;
	}
	SSL_CTX_set_cert_store(ctx, store); /* ctx owns it */
	if (set->cert_file != NULL) {
		size_t cl = 0, kl = 0;
		char *cert = tls__read_file(set->cert_file, &cl, error_r);
		char *key = cert != NULL ? tls__read_file(set->key_file, &kl, error_r) : NULL;
		int r = key != NULL ? tls__ctx_use_pem(ctx, cert, cl, key, kl, error_r) : -1;
		if (key != NULL)
			OPENSSL_cleanse(key, kl);
		free(cert);
		free(key);
		if (r < 0) {
			SSL_CTX_free(ctx);
			return -1;
		}
	}
	tls_client *cli = xcalloc(1, sizeof *cli);
	cli->ctx = ctx;
	*cli_r = cli;
	return 0;
}

int tls_client_create_unverified(tls_client **cli_r, const char **error_r)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL) {
		*error_r = "tls: out of memory";
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	tls_client *cli = xcalloc(1, sizeof *cli);
	cli->ctx = ctx;
	*cli_r = cli;
	return 0;
}

void tls_client_destroy(tls_client **clip)
{
	tls_client *cli = *clip;
	if (cli == NULL)
		return;
	*clip = NULL;
	SSL_CTX_free(cli->ctx);
	free(cli);
}

/* ---- one connection ---------------------------------------------------- */

static tls_conn *tls__conn_new(SSL_CTX *ctx)
{
	tls_conn *c = xcalloc(1, sizeof *c);
	buf_init(&c->held);
	c->ssl = SSL_new(ctx);
	c->rbio = BIO_new(BIO_s_mem());
	c->wbio = BIO_new(BIO_s_mem());
	if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL)
		abort(); /* out of memory, like xmalloc */
	BIO_set_mem_eof_return(c->rbio, -1); /* empty: "retry", not EOF */
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_app_data(c->ssl, c);
	return c;
}

tls_conn *tls_conn_new_server(tls_server *srv)
{
	tls_conn *c = tls__conn_new(srv->base);
	c->srv = srv;
	SSL_set_accept_state(c->ssl);
	return c;
}

tls_conn *tls_conn_new_client(tls_client *cli, const char *host)
{
	tls_conn *c = tls__conn_new(cli->ctx);
	SSL_set_connect_state(c->ssl);
	ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
	if (ip != NULL) {
		/* an address: no SNI (RFC 6066), match the IP SANs */
		X509_VERIFY_PARAM_set1_ip(SSL_get0_param(c->ssl), ASN1_STRING_get0_data(ip),
					  (size_t)ASN1_STRING_length(ip));
		ASN1_OCTET_STRING_free(ip);
	} else {
		ERR_clear_error();
		SSL_set_tlsext_host_name(c->ssl, host);
		SSL_set1_host(c->ssl, host);
	}
	return c;
}

/* The role in the peer's verified certificate into c->role ("" if none). */
static void tls__peer_role(tls_conn *c)
{
	c->role[0] = '\0';
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	if (peer == NULL || SSL_get_verify_result(c->ssl) != X509_V_OK)
		return;
	GENERAL_NAMES *names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
	const size_t pl = strlen(TLS_ROLE_URI_PREFIX);
	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type != GEN_URI)
			continue;
		const char *uri = (const char *)ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		size_t len = (size_t)ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if (len <= pl || len - pl > TLS_ROLE_MAX || strncmp(uri, TLS_ROLE_URI_PREFIX, pl) != 0)
			continue;
		memcpy(c->role, uri + pl, len - pl);
		c->role[len - pl] = '\0';
		break;
	}
	GENERAL_NAMES_free(names);
}

void tls_conn_free(tls_conn **cp)
{
	tls_conn *c = *cp;
	if (c == NULL)
		return;
	*cp = NULL;
	SSL_free(c->ssl); /* frees the BIOs */
	buf_deinit(&c->held);
	free(c);
}

/* Move whatever OpenSSL wrote to the network buffer. */
static void tls__drain(tls_conn *c, buf *net_out)
{
	size_t pending;
	while ((pending = BIO_ctrl_pending(c->wbio)) > 0) {
		buf_reserve(net_out, pending);
		int n = BIO_read(c->wbio, net_out->data + net_out->len, (int)pending);
		if (n <= 0)
			break;
		net_out->len += (size_t)n;
	}
}

static int tls__write_now(tls_conn *c, const void *data, size_t len, buf *net_out)
{
	const uint8_t *p = data;
	while (len > 0) {
		size_t n = len > (1u << 30) ? (1u << 30) : len;
		int w = SSL_write(c->ssl, p, (int)n);
		if (w <= 0) {
			tls__take_error(c->error, sizeof c->error);
			c->failed = 1;
			return -1;
		}
		p += w;
		len -= (size_t)w;
		tls__drain(c, net_out);
	}
	return 0;
}

enum tls_feed_result tls_conn_feed(tls_conn *c, const void *data, size_t len, buf *plain_out,
				   buf *net_out)
{
	if (c->failed)
		return TLS_FEED_ERROR;
	if (len > 0 && BIO_write(c->rbio, data, (int)len) != (int)len) {
		snprintf(c->error, sizeof c->error, "out of memory");
		c->failed = 1;
		return TLS_FEED_ERROR;
	}
	if (!c->done) {
		int r = SSL_do_handshake(c->ssl);
		tls__drain(c, net_out);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				return TLS_FEED_OK;
			tls__take_error(c->error, sizeof c->error);
			c->failed = 1;
			return TLS_FEED_ERROR;
		}
		c->done = 1;
		tls__peer_role(c);
		if (c->held.len > 0) {
			int w = tls__write_now(c, c->held.data, c->held.len, net_out);
			buf_reset(&c->held);
			if (w < 0)
				return TLS_FEED_ERROR;
		}
	}
	for (;;) {
		buf_reserve(plain_out, 16384);
		int n = SSL_read(c->ssl, plain_out->data + plain_out->len, 16384);
		tls__drain(c, net_out); /* TLS 1.3 tickets, key updates */
		if (n > 0) {
			plain_out->len += (size_t)n;
			continue;
		}
		int e = SSL_get_error(c->ssl, n);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
			return TLS_FEED_OK;
		if (e == SSL_ERROR_ZERO_RETURN)
			return TLS_FEED_CLOSED;
		tls__take_error(c->error, sizeof c->error);
		c->failed = 1;
		return TLS_FEED_ERROR;
	}
}

int tls_conn_write(tls_conn *c, const void *data, size_t len, buf *net_out)
{
	if (c->failed)
		return -1;
	if (!c->done) {
		buf_append(&c->held, data, len);
		return 0;
	}
	return tls__write_now(c, data, len, net_out);
}

void tls_conn_close_notify(tls_conn *c, buf *net_out)
{
	if (!c->done || c->failed)
		return;
	SSL_shutdown(c->ssl);
	tls__drain(c, net_out);
	ERR_clear_error();
}

int tls_conn_handshake_done(const tls_conn *c)
{
	return c->done;
}

int tls_conn_resumed(const tls_conn *c)
{
	return c->done && SSL_session_reused(c->ssl);
}

const char *tls_conn_version(const tls_conn *c)
{
	return SSL_get_version(c->ssl);
}

const char *tls_conn_cipher(const tls_conn *c)
{
	const char *n = SSL_get_cipher_name(c->ssl);
	return n != NULL ? n : "";
}

const char *tls_conn_sni(const tls_conn *c)
{
	return c->sni;
}

const char *tls_conn_peer_role(const tls_conn *c)
{
	return c->role;
}

void tls_conn_log_handshake(tls_conn *c, const char *svc, const char *sid)
{
	if (c->logged || !c->done)
		return;
	c->logged = 1;
	log_event(LOG_INFO, svc, "event=tls sid=%s version=%s cipher=%s resumed=%d sni=%s", sid,
		  tls_conn_version(c), tls_conn_cipher(c), tls_conn_resumed(c),
		  c->sni[0] ? c->sni : "-");
}

const char *tls_conn_error(const tls_conn *c)
{
	return c->error;
}
