/* dkim-keys.h: DKIM keys: making them, their DNS record, and how they are
 * stored in etcd (docs/outbound-dkim.md).
 *
 * Storage. One etcd key per (tenant domain, selector):
 *
 *   /mail/v1/secrets/dkim/<domain>/<selector>
 *       {"algorithm":"rsa-sha256"|"ed25519-sha256",
 *        "key":"-----BEGIN PRIVATE KEY-----\n...",   PKCS#8 PEM
 *        "created":<ms>, "active":true|false, "activated":<ms>}
 *
 * Domain and selector are lowercase. "activated" is when the key was last
 * made active (0 or absent: never). Readers ignore fields they do not know,
 * so the record can grow; a record whose algorithm they do not know is
 * skipped (a newer mailctl may store one).
 *
 * The prefix is outside [/mail/v1/alive/, /mail/v1/ring0), the range every
 * node's router reads and watches (router/router-private.h): under
 * /mail/v1/dkim/ every frontend and store node could read the tenants'
 * private keys and every router's watch would carry them. Only queue nodes
 * (which sign) may read /mail/v1/secrets/dkim/, only mailctl (admin) may
 * write it (cluster/local.py ETCD_ROLE_PERMS, docs/security.md).
 *
 * Which keys sign (dkim_store_select): per algorithm, the active key made
 * active last (then the newest, then the greatest selector), so a rotation
 * that writes the new active key before it clears the old one's flag never
 * leaves a moment without a key, and never two keys of one algorithm. With
 * an active RSA and an active Ed25519 key a message gets both signatures
 * (RFC 8463 dual signing), RSA first.
 *
 * Secrets. Every private key this module allocates (PEM strings, parsed
 * records) is wiped when freed through the functions below; copies held by
 * the etcd client's buffers and jansson's parser are not ours to wipe.
 *
 * No global state; every function may run on any thread. Allocation aborts
 * on failure (xalloc.h). Fallible calls return an enum mail_error
 * (lib/mail-error.h; 0 = MAIL_OK) and a static error text in *error_r.
 */
#ifndef MAIL_DKIM_KEYS_H
#define MAIL_DKIM_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* ---- algorithms -------------------------------------------------------- */

enum dkim_alg {
	DKIM_ALG_RSA_SHA256 = 0,     /* a=rsa-sha256 (RFC 6376) */
	DKIM_ALG_ED25519_SHA256 = 1, /* a=ed25519-sha256 (RFC 8463) */
	DKIM_ALG_COUNT_
};

/* "rsa-sha256", "ed25519-sha256"; "?" for anything else. */
const char *dkim_alg_name(enum dkim_alg alg);
/* The algorithm called name (exactly as dkim_alg_name gives it), or -1. */
int dkim_alg_parse(const char *name);

/* ---- names ------------------------------------------------------------- */

/* A selector is one or more DNS labels of [a-z0-9-] (not starting or ending
 * with '-'), dot-separated, at most DKIM_SELECTOR_MAX bytes. Upper case is
 * accepted by callers that lowercase first (dkim_name_lower). */
#define DKIM_SELECTOR_MAX 63u
#define DKIM_DOMAIN_MAX 253u
/* Is s a valid lowercase selector? */
int dkim_selector_valid(const char *s);
/* Lowercase s (ASCII) in place; returns s. */
char *dkim_name_lower(char *s);

/* ---- key generation and the DNS record ---------------------------------- */

#define DKIM_RSA_BITS_DEFAULT 2048u
#define DKIM_RSA_BITS_MIN 1024u /* RFC 8301: verifiers refuse less */
#define DKIM_RSA_BITS_MAX 4096u /* the TXT record stays under 1 KB */

/* A new private key (OpenSSL 3, the default provider's CSPRNG): RSA of
 * rsa_bits (DKIM_RSA_BITS_MIN..MAX; ignored for Ed25519) or Ed25519.
 * On MAIL_OK *pem_r is the PKCS#8 PEM ("BEGIN PRIVATE KEY", NUL-terminated,
 * length in *pem_len_r; free with dkim_secret_free) and *public_r the p=
 * value of its DNS record (heap, caller frees). MAIL_ERR_PARAMS for bad
 * bits, MAIL_ERR_INTERNAL when OpenSSL fails. */
int dkim_key_generate(enum dkim_alg alg, unsigned rsa_bits, char **pem_r, size_t *pem_len_r,
		      char **public_r, const char **error_r);

/* The p= value of pem's public half: base64 of the SubjectPublicKeyInfo
 * DER for RSA (RFC 6376 3.6.1), base64 of the raw 32-byte key for Ed25519
 * (RFC 8463 4.2). *public_r is heap (caller frees). MAIL_ERR_PARAMS when pem
 * is not a private key of algorithm alg (as dkim_key_check). */
int dkim_key_public(enum dkim_alg alg, const char *pem, size_t pem_len, char **public_r,
		    const char **error_r);

/* MAIL_OK when pem is a private key of algorithm alg (RSA: at least
 * DKIM_RSA_BITS_MIN bits), else MAIL_ERR_PARAMS and *error_r. */
int dkim_key_check(enum dkim_alg alg, const char *pem, size_t pem_len, const char **error_r);

/* The TXT record's text: "v=DKIM1; k=rsa; p=<public>" (k=ed25519 for
 * Ed25519). Heap, caller frees. */
char *dkim_txt_value(enum dkim_alg alg, const char *public_b64);

/* The zone-file line publishing value for selector and domain:
 *   <selector>._domainkey.<domain>. IN TXT "<at most 255>" "<rest>"
 * The value is cut in character-strings of at most 255 bytes (a DNS
 * character-string's limit; resolvers join them). No newline at the end.
 * Heap, caller frees. */
#define DKIM_TXT_STRING_MAX 255u
char *dkim_txt_record(const char *selector, const char *domain, const char *value);

/* ---- the etcd records ----------------------------------------------------- */

#define DKIM_STORE_PREFIX "/mail/v1/secrets/dkim/"

/* "/mail/v1/secrets/dkim/<domain>/" (heap, caller frees): the prefix of
 * one domain's keys (domain as given: normalise it first). */
char *dkim_store_domain_prefix(const char *domain);
/* "/mail/v1/secrets/dkim/<domain>/<selector>" (heap, caller frees). */
char *dkim_store_key(const char *domain, const char *selector);
/* Split an etcd key under DKIM_STORE_PREFIX into domain and selector
 * (copied into domain_r[DKIM_DOMAIN_MAX + 1], selector_r[DKIM_SELECTOR_MAX
 * + 1]). Returns 0, or -1 when key is not one of ours. */
int dkim_store_key_parse(const char *key, char *domain_r, char *selector_r);

/* One record, parsed. pem is owned (wiped by dkim_record_clear). */
struct dkim_record {
	enum dkim_alg alg;
	char *pem; /* NUL-terminated PKCS#8 PEM */
	size_t pem_len;
	int64_t created;   /* ms since the epoch */
	int active;        /* 1 when it signs */
	int64_t activated; /* ms of the last activation, 0: never */
};

/* Parse a record value. MAIL_ERR_PARAMS when it is not JSON of the form
 * above or names no known algorithm (*error_r says which); on MAIL_OK the
 * caller owns r's pem (dkim_record_clear). */
int dkim_record_parse(const void *json, size_t len, struct dkim_record *r,
		      const char **error_r);
/* The record as compact JSON (heap, NUL-terminated, *len_r bytes; it holds
 * the private key: free with dkim_secret_free). */
char *dkim_record_format(const struct dkim_record *r, size_t *len_r);
/* Wipe and free r's pem; r is zeroed. */
void dkim_record_clear(struct dkim_record *r);

/* Overwrite len bytes of p and free it (NULL is fine). */
void dkim_secret_free(void *p, size_t len);

/* ---- picking the keys a queue node signs with ----------------------------- */

/* One etcd key-value (as etcd_kv_range_prefix returns them; borrowed). */
struct dkim_stored {
	const char *key;
	const void *value;
	size_t value_len;
};

/* A key to sign with (dkim-sign.h). Owns pem: dkim_key_clear wipes it. */
struct dkim_key {
	char domain[DKIM_DOMAIN_MAX + 1];
	char selector[DKIM_SELECTOR_MAX + 1];
	enum dkim_alg alg;
	char *pem;
	size_t pem_len;
};
void dkim_key_clear(struct dkim_key *key);

/* From the stored records of domain (the range of
 * dkim_store_domain_prefix(domain); others are ignored), the keys that
 * sign: at most one per algorithm, RSA first (see the top of this file),
 * copied into keys_r[0..*n_r) (room for DKIM_ALG_COUNT_; the caller clears
 * each with dkim_key_clear). *n_r = 0 when the domain signs nothing.
 * Records that do not parse are skipped (a malformed record never stops
 * the others from signing) and counted in *skipped_r (may be NULL). Always
 * MAIL_OK; MAIL_ERR_PARAMS only for a domain that cannot be one. */
int dkim_store_select(const char *domain, const struct dkim_stored *kvs, size_t n,
		      struct dkim_key *keys_r, size_t *n_r, size_t *skipped_r,
		      const char **error_r);

#endif
