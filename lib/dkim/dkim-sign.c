/* dkim-sign.c: signing with libopendkim (dkim-sign.h).
 *
 * One pass over the message: the header is cut into fields here (so we
 * can count From fields and bound the field count before libopendkim
 * keeps any), each field goes to every key's handle with its line ends as
 * CRLF; the body goes through a small buffer that turns bare LF into CRLF,
 * to every handle in the same chunks. libopendkim hashes as it goes and
 * does the RSA / Ed25519 signing at dkim_eom(); it parses the PEM key only
 * then, so a bad key shows up there, not at dkim_sign().
 */
#include "dkim-sign.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <dkim.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "buf.h"
#include "log.h"
#include "mail-error.h"
#include "xalloc.h"

/* body bytes handed to libopendkim per call (after LF -> CRLF) */
#define DKIM_BODY_CHUNK 16384u

struct dkim_signer {
	DKIM_LIB *lib;
	struct dkim_sign_settings set;
};

/* The header names, as libopendkim takes them: NULL-terminated lists
 * (read-only; libopendkim copies them). */
static const char *const dkim_sign_headers[] = { DKIM_SIGN_HEADERS, NULL };
static const char *const dkim_oversign_headers[] = { DKIM_OVERSIGN_HEADERS, NULL };

struct dkim_sign_settings dkim_sign_settings_default(void)
{
	return (struct dkim_sign_settings){
		.max_message_bytes = DKIM_SIGN_MAX_MESSAGE_DEFAULT,
		.max_header_fields = DKIM_SIGN_MAX_FIELDS_DEFAULT,
		.fixed_time = 0,
	};
}

/* ---- libopendkim's allocator -----------------------------------------------
 *
 * Every buffer libopendkim frees is wiped first: its copy of the private
 * key (dkim_sign() duplicates it) and the canonicalised header fields
 * among them.
 *
 * It also plugs a leak of libopendkim 2.11.0~beta2 (Debian 12): dkim_free()
 * releases the OpenSSL objects of a signing key only for RSA, so every
 * Ed25519 signature left its EVP_PKEY (the private key, unwiped) and the
 * 64-byte signature buffer behind, ~500 bytes a message (fixed upstream:
 * OpenDKIM PR #321, "dkim_free() memory leak"). The key's struct
 * dkim_crypto is itself freed through us, so when an Ed25519 handle frees
 * a block that is that struct (libopendkim's layout, checked field by
 * field: the key size and output length of Ed25519, an output buffer that
 * is a live 64-byte block of this handle, an EVP_PKEY that is an Ed25519
 * key), we free what it points to (and its BIO, should a version keep
 * one). A fixed libopendkim frees and clears those fields first, and
 * another layout fails the checks: either way nothing is freed twice. The
 * ASan build's leak checker over lib_dkim is the test. */

/* libopendkim's struct dkim_crypto (dkim-types.h, OpenSSL build) */
struct dkim__crypto_layout {
	unsigned char pad;
	int keysize;    /* bits of the signature: 512 for Ed25519 */
	size_t inlen;
	size_t outlen;  /* 64 for Ed25519 */
	EVP_PKEY *pkey; /* the private key */
	void *key;      /* RSA only */
	BIO *keydata;   /* over libopendkim's copy of the PEM */
	unsigned char *in;
	unsigned char *out; /* the signature, allocated through us */
};
#define DKIM__CRYPTO_SIZE 64u
#define DKIM__ED25519_SIG_BYTES 64u
_Static_assert(sizeof(struct dkim__crypto_layout) == DKIM__CRYPTO_SIZE,
	       "the layout of libopendkim's struct dkim_crypto on LP64");

/* One libopendkim handle's memory closure. */
typedef struct dkim__mem {
	int ed25519;
	void **blocks; /* its live allocations of DKIM__CRYPTO_SIZE bytes */
	size_t n, cap;
} dkim__mem;

static ssize_t dkim__mem_find(const dkim__mem *m, const void *p)
{
	for (size_t i = m->n; i-- > 0;) {
		if (m->blocks[i] == p)
			return (ssize_t)i;
	}
	return -1;
}

static void dkim__mem_forget(dkim__mem *m, size_t i)
{
	m->blocks[i] = m->blocks[--m->n];
}

static void *dkim__alloc_cb(void *closure, size_t n)
{
	dkim__mem *m = closure;
	void *p = xmalloc(n);
	if (m != NULL && m->ed25519 && n == DKIM__CRYPTO_SIZE) {
		if (m->n == m->cap) {
			m->cap = m->cap != 0 ? 2 * m->cap : 8;
			m->blocks = xrealloc(m->blocks, m->cap * sizeof *m->blocks);
		}
		m->blocks[m->n++] = p;
	}
	return p;
}

/* p (a live 64-byte block of m, about to be freed) may be the Ed25519
 * key's struct dkim_crypto: release what libopendkim leaves behind. */
static void dkim__ed25519_release(dkim__mem *m, const void *p)
{
	struct dkim__crypto_layout c;
	memcpy(&c, p, sizeof c);
	ssize_t out;
	if (c.keysize != 8 * (int)DKIM__ED25519_SIG_BYTES || c.outlen != DKIM__ED25519_SIG_BYTES ||
	    c.pkey == NULL || c.out == NULL || c.out == p ||
	    (out = dkim__mem_find(m, c.out)) < 0 || !EVP_PKEY_is_a(c.pkey, "ED25519"))
		return;
	dkim__mem_forget(m, (size_t)out);
	OPENSSL_cleanse(c.out, DKIM__ED25519_SIG_BYTES);
	free(c.out);
	EVP_PKEY_free(c.pkey); /* clears the key */
	BIO_free(c.keydata);   /* NULL in 2.11.0~beta2: freed after loading */
}

static void dkim__free_cb(void *closure, void *p)
{
	dkim__mem *m = closure;
	if (p == NULL)
		return;
	ssize_t i = m != NULL ? dkim__mem_find(m, p) : -1;
	if (i >= 0) {
		dkim__mem_forget(m, (size_t)i);
		dkim__ed25519_release(m, p);
	}
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

int dkim_signer_create(const struct dkim_sign_settings *settings, dkim_signer **signer_r,
		       const char **error_r)
{
	*signer_r = NULL;
	struct dkim_sign_settings set =
		settings != NULL ? *settings : dkim_sign_settings_default();
	if (set.max_message_bytes < DKIM_SIGN_MAX_MESSAGE_MIN ||
	    set.max_message_bytes > DKIM_SIGN_MAX_MESSAGE_MAX) {
		*error_r = "max_message_bytes out of range (1 KiB..1 GiB)";
		return MAIL_ERR_PARAMS;
	}
	if (set.max_header_fields < DKIM_SIGN_MAX_FIELDS_MIN ||
	    set.max_header_fields > DKIM_SIGN_MAX_FIELDS_MAX) {
		*error_r = "max_header_fields out of range (16..100000)";
		return MAIL_ERR_PARAMS;
	}
	DKIM_LIB *lib = dkim_init(dkim__alloc_cb, dkim__free_cb);
	if (lib == NULL) {
		*error_r = "libopendkim: dkim_init failed";
		return MAIL_ERR_INTERNAL;
	}
	if (!dkim_libfeature(lib, DKIM_FEATURE_SHA256) ||
	    !dkim_libfeature(lib, DKIM_FEATURE_ED25519)) {
		dkim_close(lib);
		*error_r = "libopendkim lacks SHA-256 or Ed25519";
		return MAIL_ERR_INTERNAL;
	}
	const char **sign = (const char **)dkim_sign_headers;
	const char **oversign = (const char **)dkim_oversign_headers;
	DKIM_STAT st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, sign, sizeof sign);
	if (st == DKIM_STAT_OK)
		st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, oversign,
				  sizeof oversign);
	if (st == DKIM_STAT_OK && set.fixed_time != 0) {
		uint64_t t = set.fixed_time;
		st = dkim_options(lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof t);
	}
	if (st != DKIM_STAT_OK) {
		dkim_close(lib);
		*error_r = "libopendkim refused the signing options";
		return MAIL_ERR_INTERNAL;
	}
	dkim_signer *s = xcalloc(1, sizeof *s);
	s->lib = lib;
	s->set = set;
	*signer_r = s;
	return MAIL_OK;
}

void dkim_signer_destroy(dkim_signer **signer)
{
	dkim_signer *s = *signer;
	if (s == NULL)
		return;
	dkim_close(s->lib);
	free(s);
	*signer = NULL;
}

/* ---- one message ------------------------------------------------------------ */

typedef struct dkim__job {
	const dkim_signer *signer;
	const char *id;
	DKIM *d[DKIM_SIGN_KEYS_MAX];
	dkim__mem mem[DKIM_SIGN_KEYS_MAX]; /* each handle's memory closure */
	const struct dkim_key *keys;
	size_t n;
	const char *error; /* the first failure's static text */
	int err;
} dkim__job;

/* Record a libopendkim failure of key k (the detail goes to the log). */
static int dkim__fail(dkim__job *j, size_t k, const char *step, DKIM_STAT st)
{
	const char *detail = j->d[k] != NULL ? dkim_geterror(j->d[k]) : NULL;
	char q[256];
	if (detail == NULL)
		detail = dkim_getresultstr(st);
	log_event(LOG_ERROR, "dkim", "event=dkim_sign_failed qid=%s domain=%s selector=%s a=%s "
		  "step=%s status=%d error=%s", j->id, j->keys[k].domain, j->keys[k].selector,
		  dkim_alg_name(j->keys[k].alg), step, st,
		  log_quote(q, sizeof q, detail != NULL ? detail : "?",
			    detail != NULL ? strlen(detail) : 1));
	j->err = MAIL_ERR_INTERNAL;
	j->error = "libopendkim could not sign (is the key a PEM private key of its algorithm?)";
	return -1;
}

static int dkim__header(dkim__job *j, const uint8_t *field, size_t len)
{
	for (size_t k = 0; k < j->n; k++) {
		DKIM_STAT st = dkim_header(j->d[k], (u_char *)field, len);
		if (st != DKIM_STAT_OK)
			return dkim__fail(j, k, "header", st);
	}
	return 0;
}

static int dkim__body(dkim__job *j, const uint8_t *data, size_t len)
{
	for (size_t k = 0; k < j->n && len > 0; k++) {
		DKIM_STAT st = dkim_body(j->d[k], (u_char *)data, len);
		if (st != DKIM_STAT_OK)
			return dkim__fail(j, k, "body", st);
	}
	return 0;
}

static int dkim__param_fail(dkim__job *j, int err, const char *text)
{
	j->err = err;
	j->error = text;
	return -1;
}

/* Is [name, name+len) the field name "from" (any case; white space
 * before the colon, the obsolete syntax, allowed)? */
static int dkim__is_from(const uint8_t *name, size_t len)
{
	while (len > 0 && (name[len - 1] == ' ' || name[len - 1] == '\t'))
		len--;
	return len == 4 && strncasecmp((const char *)name, "from", 4) == 0;
}

/* Cut the header of m[0..len) into fields and feed them; *body_r gets the
 * offset of the body (len when there is none). 0, or -1 with j->err set. */
static int dkim__headers(dkim__job *j, const uint8_t *m, size_t len, size_t *body_r)
{
	buf field;
	buf_init(&field);
	size_t pos = 0, fields = 0, froms = 0;
	int rc = 0;
	*body_r = len;
	while (pos < len && rc == 0) {
		const uint8_t *nl = memchr(m + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - m) : len;
		size_t next = nl != NULL ? end + 1 : len;
		size_t clen = end - pos;
		if (clen > 0 && m[pos + clen - 1] == '\r')
			clen--;
		const uint8_t *line = m + pos;
		if (memchr(line, '\0', clen) != NULL) {
			rc = dkim__param_fail(j, MAIL_ERR_PARAMS, "a NUL byte in the header");
		} else if (clen == 0) {
			*body_r = next; /* the empty line: the header ends */
			break;
		} else if (line[0] == ' ' || line[0] == '\t') {
			if (fields == 0)
				rc = dkim__param_fail(j, MAIL_ERR_PARAMS,
						      "the header starts with a continuation line");
			buf_append(&field, "\r\n", 2);
			buf_append(&field, line, clen);
		} else {
			const uint8_t *colon = memchr(line, ':', clen);
			int named = colon != NULL && colon > line;
			for (const uint8_t *p = line; named && p < colon; p++)
				named = (*p > 32 && *p < 127) || *p == ' ' || *p == '\t';
			if (!named) {
				rc = dkim__param_fail(j, MAIL_ERR_PARAMS,
						      "a header line is not a field (name: value)");
			} else if (++fields > j->signer->set.max_header_fields) {
				rc = dkim__param_fail(j, MAIL_ERR_LIMIT, "too many header fields");
			} else {
				if (field.len > 0)
					rc = dkim__header(j, field.data, field.len);
				buf_reset(&field);
				buf_append(&field, line, clen);
				froms += dkim__is_from(line, (size_t)(colon - line));
			}
		}
		pos = next;
	}
	if (rc == 0 && field.len > 0)
		rc = dkim__header(j, field.data, field.len);
	buf_deinit(&field);
	if (rc == 0 && froms != 1)
		rc = dkim__param_fail(j, MAIL_ERR_PARAMS,
				      froms == 0 ? "no From header field"
						 : "more than one From header field");
	return rc;
}

/* Feed m[start..len) as the body, every bare LF as CRLF, and a CRLF at the
 * end when the last line has none: SMTP adds one before the final dot
 * (RFC 5321 4.1.1.4), so that is what the verifier gets. */
static int dkim__body_all(dkim__job *j, const uint8_t *m, size_t start, size_t len)
{
	uint8_t chunk[DKIM_BODY_CHUNK];
	size_t n = 0;
	for (size_t i = start; i < len; i++) {
		if (n + 2 > sizeof chunk) {
			if (dkim__body(j, chunk, n) < 0)
				return -1;
			n = 0;
		}
		if (m[i] == '\n' && (i == start || m[i - 1] != '\r'))
			chunk[n++] = '\r';
		chunk[n++] = m[i];
	}
	if (len > start && m[len - 1] != '\n') {
		if (n + 2 > sizeof chunk) {
			if (dkim__body(j, chunk, n) < 0)
				return -1;
			n = 0;
		}
		chunk[n++] = '\r';
		chunk[n++] = '\n';
	}
	return dkim__body(j, chunk, n);
}

int dkim_signer_sign(dkim_signer *signer, const void *msg, size_t len,
		     const struct dkim_key *keys, size_t n_keys, const char *id, char **fields_r,
		     size_t *fields_len_r, const char **error_r)
{
	*fields_r = NULL;
	*fields_len_r = 0;
	dkim__job j = { .signer = signer, .id = id != NULL ? id : "-", .keys = keys,
			.n = n_keys };
	if (len > signer->set.max_message_bytes) {
		*error_r = "message too big to sign";
		return MAIL_ERR_TOO_BIG;
	}
	if (n_keys == 0 || n_keys > DKIM_SIGN_KEYS_MAX) {
		*error_r = "no keys, or too many";
		return MAIL_ERR_PARAMS;
	}
	for (size_t k = 0; k < n_keys; k++) {
		const char *why;
		if (keys[k].domain[0] == '\0' || keys[k].selector[0] == '\0' ||
		    keys[k].pem == NULL || (unsigned)keys[k].alg >= DKIM_ALG_COUNT_) {
			*error_r = "a key without domain, selector, algorithm or PEM";
			return MAIL_ERR_PARAMS;
		}
		/* libopendkim signs with whatever key it is given, under the
		 * a= it was told: an RSA key as "ed25519-sha256" would make a
		 * signature no one can verify */
		if (dkim_key_check(keys[k].alg, keys[k].pem, keys[k].pem_len, &why) != MAIL_OK) {
			log_event(LOG_ERROR, "dkim", "event=dkim_key_invalid qid=%s domain=%s "
				  "selector=%s a=%s error=\"%s\"", j.id, keys[k].domain,
				  keys[k].selector, dkim_alg_name(keys[k].alg), why);
			*error_r = "a key is not a private key of its algorithm";
			return MAIL_ERR_INTERNAL;
		}
	}

	int rc = 0;
	for (size_t k = 0; k < n_keys && rc == 0; k++) {
		DKIM_STAT st;
		dkim_alg_t alg = keys[k].alg == DKIM_ALG_RSA_SHA256 ? DKIM_SIGN_RSASHA256
								    : DKIM_SIGN_ED25519SHA256;
		/* no l=: the length is -1 (all of the body) */
		j.mem[k].ed25519 = keys[k].alg == DKIM_ALG_ED25519_SHA256;
		j.d[k] = dkim_sign(signer->lib, (const u_char *)j.id, &j.mem[k],
				   (dkim_sigkey_t)keys[k].pem, (const u_char *)keys[k].selector,
				   (const u_char *)keys[k].domain, DKIM_CANON_RELAXED,
				   DKIM_CANON_RELAXED, alg, -1, &st);
		if (j.d[k] == NULL)
			rc = dkim__fail(&j, k, "start", st);
	}
	size_t body = len;
	if (rc == 0)
		rc = dkim__headers(&j, msg, len, &body);
	for (size_t k = 0; k < n_keys && rc == 0; k++) {
		DKIM_STAT st = dkim_eoh(j.d[k]);
		if (st != DKIM_STAT_OK)
			rc = dkim__fail(&j, k, "eoh", st);
	}
	if (rc == 0)
		rc = dkim__body_all(&j, msg, body, len);

	buf out;
	buf_init(&out);
	for (size_t k = 0; k < n_keys && rc == 0; k++) {
		DKIM_STAT st = dkim_eom(j.d[k], NULL);
		u_char *value = NULL;
		size_t vlen = 0;
		if (st == DKIM_STAT_OK)
			st = dkim_getsighdr_d(j.d[k], strlen(DKIM_SIGNHEADER) + 2, &value, &vlen);
		if (st != DKIM_STAT_OK) {
			rc = dkim__fail(&j, k, "eom", st);
			break;
		}
		buf_append_str(&out, DKIM_SIGNHEADER ": ");
		buf_append(&out, value, vlen);
		buf_append(&out, "\r\n", 2);
	}
	for (size_t k = 0; k < n_keys; k++) {
		if (j.d[k] != NULL)
			dkim_free(j.d[k]);
		free(j.mem[k].blocks);
	}
	if (rc < 0) {
		buf_deinit(&out);
		*error_r = j.error;
		return j.err;
	}
	buf_append(&out, "", 1);
	size_t n;
	*fields_r = (char *)buf_steal(&out, &n);
	*fields_len_r = n - 1;
	return MAIL_OK;
}
