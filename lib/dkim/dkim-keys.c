/* dkim-keys.c: DKIM key generation, DNS records and the etcd records
 * (dkim-keys.h). */
#include "dkim-keys.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

#define DKIM_ED25519_RAW_LEN 32u

static const char *const dkim_alg_names[DKIM_ALG_COUNT_] = {
	[DKIM_ALG_RSA_SHA256] = "rsa-sha256",
	[DKIM_ALG_ED25519_SHA256] = "ed25519-sha256",
};

const char *dkim_alg_name(enum dkim_alg alg)
{
	return (unsigned)alg < DKIM_ALG_COUNT_ ? dkim_alg_names[alg] : "?";
}

int dkim_alg_parse(const char *name)
{
	for (int a = 0; a < DKIM_ALG_COUNT_; a++) {
		if (name != NULL && strcmp(name, dkim_alg_names[a]) == 0)
			return a;
	}
	return -1;
}

/* ---- names ------------------------------------------------------------ */

int dkim_selector_valid(const char *s)
{
	size_t len = strlen(s), label = 0;
	if (len == 0 || len > DKIM_SELECTOR_MAX)
		return 0;
	for (size_t i = 0; i <= len; i++) {
		char c = s[i];
		if (c == '.' || c == '\0') {
			/* a label: not empty, no '-' at either end */
			if (label == 0 || s[i - 1] == '-' || s[i - label] == '-')
				return 0;
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
			label++;
		} else {
			return 0;
		}
	}
	return 1;
}

char *dkim_name_lower(char *s)
{
	for (char *p = s; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

void dkim_secret_free(void *p, size_t len)
{
	xfree_secret(p, len);
}

/* ---- keys ------------------------------------------------------------- */

/* A passphrase callback that gives none: an encrypted PEM fails to load
 * rather than prompting on a terminal. */
static int dkim_no_passphrase_cb(char *buf, int size, int rwflag, void *arg)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)arg;
	return -1;
}

static char *dkim_base64(const unsigned char *data, size_t len)
{
	char *out = xmalloc(4 * ((len + 2) / 3) + 1);
	EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static int dkim_pkey_is(const EVP_PKEY *pkey, enum dkim_alg alg)
{
	return EVP_PKEY_is_a(pkey, alg == DKIM_ALG_RSA_SHA256 ? "RSA" : "ED25519");
}

/* The p= value of pkey (which is of algorithm alg), or NULL. */
static char *dkim_pkey_public(EVP_PKEY *pkey, enum dkim_alg alg)
{
	if (alg == DKIM_ALG_ED25519_SHA256) {
		unsigned char raw[DKIM_ED25519_RAW_LEN];
		size_t len = sizeof raw;
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1 || len != sizeof raw)
			return NULL;
		return dkim_base64(raw, len);
	}
	int len = i2d_PUBKEY(pkey, NULL);
	if (len <= 0)
		return NULL;
	unsigned char *der = xmalloc((size_t)len), *p = der;
	char *b64 = i2d_PUBKEY(pkey, &p) == len ? dkim_base64(der, (size_t)len) : NULL;
	free(der);
	return b64;
}

int dkim_key_generate(enum dkim_alg alg, unsigned rsa_bits, char **pem_r, size_t *pem_len_r,
		      char **public_r, const char **error_r)
{
	*pem_r = *public_r = NULL;
	*pem_len_r = 0;
	EVP_PKEY *pkey;
	if (alg == DKIM_ALG_RSA_SHA256) {
		if (rsa_bits < DKIM_RSA_BITS_MIN || rsa_bits > DKIM_RSA_BITS_MAX) {
			*error_r = "RSA keys have 1024 to 4096 bits";
			return MAIL_ERR_PARAMS;
		}
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)rsa_bits);
	} else if (alg == DKIM_ALG_ED25519_SHA256) {
		pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	} else {
		*error_r = "unknown algorithm";
		return MAIL_ERR_PARAMS;
	}
	if (pkey == NULL) {
		*error_r = "key generation failed (OpenSSL)";
		return MAIL_ERR_INTERNAL;
	}
	/* a secure-heap BIO: its buffer is cleared when freed */
	BIO *b = BIO_new(BIO_s_secmem());
	char *data = NULL;
	long len = 0;
	int ok = b != NULL && PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
		 (len = BIO_get_mem_data(b, &data)) > 0;
	if (ok) {
		*pem_r = xmalloc((size_t)len + 1);
		memcpy(*pem_r, data, (size_t)len);
		(*pem_r)[len] = '\0';
		*pem_len_r = (size_t)len;
		*public_r = dkim_pkey_public(pkey, alg);
	}
	BIO_free(b);
	EVP_PKEY_free(pkey);
	if (*public_r == NULL) {
		dkim_secret_free(*pem_r, *pem_len_r);
		*pem_r = NULL;
		*pem_len_r = 0;
		*error_r = "writing the key failed (OpenSSL)";
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

/* Load pem as a private key of algorithm alg (RSA: at least
 * DKIM_RSA_BITS_MIN bits). NULL with *error_r set when it is not one. */
static EVP_PKEY *dkim_key_load(enum dkim_alg alg, const char *pem, size_t pem_len,
			       const char **error_r)
{
	if ((unsigned)alg >= DKIM_ALG_COUNT_ || pem_len > (size_t)INT32_MAX) {
		*error_r = "unknown algorithm";
		return NULL;
	}
	BIO *b = BIO_new_mem_buf(pem, (int)pem_len);
	EVP_PKEY *pkey = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, dkim_no_passphrase_cb, NULL)
				   : NULL;
	BIO_free(b);
	if (pkey == NULL) {
		*error_r = "not a PEM private key";
		return NULL;
	}
	if (!dkim_pkey_is(pkey, alg)) {
		*error_r = "the key is not of its algorithm";
	} else if (alg == DKIM_ALG_RSA_SHA256 && EVP_PKEY_get_bits(pkey) < (int)DKIM_RSA_BITS_MIN) {
		*error_r = "the RSA key is shorter than 1024 bits";
	} else {
		return pkey;
	}
	EVP_PKEY_free(pkey);
	return NULL;
}

int dkim_key_check(enum dkim_alg alg, const char *pem, size_t pem_len, const char **error_r)
{
	EVP_PKEY *pkey = dkim_key_load(alg, pem, pem_len, error_r);
	EVP_PKEY_free(pkey);
	return pkey != NULL ? MAIL_OK : MAIL_ERR_PARAMS;
}

int dkim_key_public(enum dkim_alg alg, const char *pem, size_t pem_len, char **public_r,
		    const char **error_r)
{
	*public_r = NULL;
	EVP_PKEY *pkey = dkim_key_load(alg, pem, pem_len, error_r);
	if (pkey == NULL)
		return MAIL_ERR_PARAMS;
	*public_r = dkim_pkey_public(pkey, alg);
	EVP_PKEY_free(pkey);
	if (*public_r == NULL) {
		*error_r = "cannot write the public key (OpenSSL)";
		return MAIL_ERR_INTERNAL;
	}
	return MAIL_OK;
}

char *dkim_txt_value(enum dkim_alg alg, const char *public_b64)
{
	return xasprintf("v=DKIM1; k=%s; p=%s", alg == DKIM_ALG_ED25519_SHA256 ? "ed25519" : "rsa",
			 public_b64);
}

char *dkim_txt_record(const char *selector, const char *domain, const char *value)
{
	buf b;
	buf_init(&b);
	buf_printf(&b, "%s._domainkey.%s. IN TXT", selector, domain);
	size_t len = strlen(value), at = 0;
	do {
		size_t n = len - at < DKIM_TXT_STRING_MAX ? len - at : DKIM_TXT_STRING_MAX;
		buf_append_str(&b, " \"");
		for (size_t i = at; i < at + n; i++) {
			/* the limit counts the string's bytes, not its escapes */
			if (value[i] == '"' || value[i] == '\\')
				buf_append(&b, "\\", 1);
			buf_append(&b, &value[i], 1);
		}
		buf_append(&b, "\"", 1);
		at += n;
	} while (at < len);
	buf_append(&b, "", 1);
	size_t n;
	return (char *)buf_steal(&b, &n);
}

/* ---- etcd keys ----------------------------------------------------------- */

char *dkim_store_domain_prefix(const char *domain)
{
	return xasprintf(DKIM_STORE_PREFIX "%s/", domain);
}

char *dkim_store_key(const char *domain, const char *selector)
{
	return xasprintf(DKIM_STORE_PREFIX "%s/%s", domain, selector);
}

int dkim_store_key_parse(const char *key, char *domain_r, char *selector_r)
{
	size_t plen = strlen(DKIM_STORE_PREFIX);
	if (strncmp(key, DKIM_STORE_PREFIX, plen) != 0)
		return -1;
	const char *d = key + plen, *slash = strchr(d, '/');
	if (slash == NULL || (size_t)(slash - d) > DKIM_DOMAIN_MAX ||
	    strlen(slash + 1) > DKIM_SELECTOR_MAX)
		return -1;
	memcpy(domain_r, d, (size_t)(slash - d));
	domain_r[slash - d] = '\0';
	strcpy(selector_r, slash + 1);
	if (!util_domain_valid(domain_r) || !dkim_selector_valid(selector_r))
		return -1;
	return 0;
}

/* ---- records --------------------------------------------------------------- */

void dkim_record_clear(struct dkim_record *r)
{
	dkim_secret_free(r->pem, r->pem_len);
	memset(r, 0, sizeof *r);
}

int dkim_record_parse(const void *json, size_t len, struct dkim_record *r, const char **error_r)
{
	memset(r, 0, sizeof *r);
	json_t *j = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
	json_t *alg = json_object_get(j, "algorithm"), *key = json_object_get(j, "key");
	json_t *created = json_object_get(j, "created"), *active = json_object_get(j, "active");
	json_t *activated = json_object_get(j, "activated");
	int err = MAIL_ERR_PARAMS;
	int a = dkim_alg_parse(json_string_value(alg));
	if (!json_is_object(j))
		*error_r = "not a JSON object";
	else if (a < 0)
		*error_r = "no known \"algorithm\"";
	else if (!json_is_string(key) || json_string_length(key) == 0)
		*error_r = "no \"key\"";
	else if (!json_is_integer(created) || !json_is_boolean(active) ||
		 (activated != NULL && !json_is_integer(activated)))
		*error_r = "\"created\", \"active\" or \"activated\" missing or mistyped";
	else
		err = MAIL_OK;
	if (err == MAIL_OK) {
		r->alg = (enum dkim_alg)a;
		r->pem = xstrndup(json_string_value(key), json_string_length(key));
		r->pem_len = strlen(r->pem);
		r->created = json_integer_value(created);
		r->active = json_is_true(active);
		r->activated = json_integer_value(activated);
	}
	if (json_is_string(key)) {
		/* jansson's copy of the key: wiped before it goes back to the
		 * heap (the string is ours to drop, so writing it is safe) */
		OPENSSL_cleanse((char *)json_string_value(key), json_string_length(key));
	}
	json_decref(j);
	return err;
}

/* Append s as the inside of a JSON string (to out, when not NULL); returns
 * the bytes it takes. Two passes (size, then write) so the record is
 * allocated once: no copy of the key is left behind by a realloc. */
static size_t dkim_json_escape(char *out, const char *s)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		char esc[8];
		size_t k;
		if (*p == '"' || *p == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*p;
			k = 2;
		} else if (*p == '\n') {
			memcpy(esc, "\\n", 2);
			k = 2;
		} else if (*p < 0x20) {
			snprintf(esc, sizeof esc, "\\u%04x", *p);
			k = 6;
		} else {
			esc[0] = (char)*p;
			k = 1;
		}
		if (out != NULL)
			memcpy(out + n, esc, k);
		n += k;
	}
	return n;
}

char *dkim_record_format(const struct dkim_record *r, size_t *len_r)
{
	char head[96], tail[128];
	int hn = snprintf(head, sizeof head, "{\"algorithm\":\"%s\",\"key\":\"", dkim_alg_name(r->alg));
	int tn = snprintf(tail, sizeof tail, "\",\"created\":%lld,\"active\":%s,\"activated\":%lld}",
			  (long long)r->created, r->active ? "true" : "false",
			  (long long)r->activated);
	size_t klen = dkim_json_escape(NULL, r->pem);
	size_t len = (size_t)hn + klen + (size_t)tn;
	char *out = xmalloc(len + 1);
	memcpy(out, head, (size_t)hn);
	dkim_json_escape(out + hn, r->pem);
	memcpy(out + hn + klen, tail, (size_t)tn + 1);
	*len_r = len;
	return out;
}

/* ---- selection -------------------------------------------------------------- */

void dkim_key_clear(struct dkim_key *key)
{
	dkim_secret_free(key->pem, key->pem_len);
	memset(key, 0, sizeof *key);
}

/* Does candidate (with selector cs) beat the current best (bs)? */
static int dkim_record_beats(const struct dkim_record *c, const char *cs,
			     const struct dkim_record *b, const char *bs)
{
	if (c->activated != b->activated)
		return c->activated > b->activated;
	if (c->created != b->created)
		return c->created > b->created;
	return strcmp(cs, bs) > 0;
}

int dkim_store_select(const char *domain, const struct dkim_stored *kvs, size_t n,
		      struct dkim_key *keys_r, size_t *n_r, size_t *skipped_r,
		      const char **error_r)
{
	*n_r = 0;
	if (skipped_r != NULL)
		*skipped_r = 0;
	if (strlen(domain) > DKIM_DOMAIN_MAX || !util_domain_valid(domain)) {
		*error_r = "invalid domain";
		return MAIL_ERR_PARAMS;
	}
	struct dkim_record best[DKIM_ALG_COUNT_];
	char best_sel[DKIM_ALG_COUNT_][DKIM_SELECTOR_MAX + 1];
	memset(best, 0, sizeof best);
	for (size_t k = 0; k < n; k++) {
		char d[DKIM_DOMAIN_MAX + 1], sel[DKIM_SELECTOR_MAX + 1];
		if (dkim_store_key_parse(kvs[k].key, d, sel) < 0 || strcmp(d, domain) != 0)
			continue;
		struct dkim_record r;
		const char *why;
		if (dkim_record_parse(kvs[k].value, kvs[k].value_len, &r, &why) != MAIL_OK) {
			char q[128];
			log_event(LOG_WARN, "dkim", "event=dkim_record_invalid domain=%s selector=%s "
				  "error=%s", d, sel, log_quote(q, sizeof q, why, strlen(why)));
			if (skipped_r != NULL)
				(*skipped_r)++;
			continue;
		}
		struct dkim_record *b = &best[r.alg];
		if (r.active && (b->pem == NULL || dkim_record_beats(&r, sel, b, best_sel[r.alg]))) {
			dkim_record_clear(b);
			*b = r;
			memcpy(best_sel[r.alg], sel, sizeof sel);
		} else {
			dkim_record_clear(&r);
		}
	}
	for (int a = 0; a < DKIM_ALG_COUNT_; a++) {
		if (best[a].pem == NULL)
			continue;
		struct dkim_key *key = &keys_r[(*n_r)++];
		memset(key, 0, sizeof *key);
		snprintf(key->domain, sizeof key->domain, "%s", domain);
		memcpy(key->selector, best_sel[a], sizeof key->selector);
		key->alg = (enum dkim_alg)a;
		key->pem = best[a].pem; /* moved */
		key->pem_len = best[a].pem_len;
	}
	return MAIL_OK;
}
