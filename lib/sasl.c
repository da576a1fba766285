/* sasl.c: the server side of PLAIN, LOGIN and SCRAM-SHA-256 (see sasl.h).
 *
 * One explicit state per exchange; sasl_server_step() and the answers to
 * CHECK_PASSWORD and NEED_SCRAM are accepted only in the state that asks
 * for them, and anything else ends the exchange with SASL_STEP_FAIL. A
 * failed exchange stays failed and keeps its first reason.
 *
 * Nothing is appended to out on failure, so a protocol never sends a
 * half-built challenge.
 *
 * SCRAM does not SASLprep (RFC 4013) the user name or the password: both
 * are taken as the bytes the client sent. For ASCII, which addresses and
 * most passwords are, that is the same thing.
 */
#include "sasl.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "xalloc.h"

#define SASL_SHA256_LEN 32u
/* The server's part of the SCRAM nonce: 18 random bytes are 24 base64
 * characters without padding (printable, never ','). */
#define SASL_SCRAM_NONCE_RANDOM 18u
/* Longest server nonce sasl_server_set_nonce() takes (characters). */
#define SASL_SCRAM_NONCE_MAX 64u
/* Shortest server secret that may key the credentials of unknown users. */
#define SASL_SECRET_MIN 16u

/* The one reason every credential failure gives, for a wrong password and
 * for an unknown user alike. */
static const char sasl__auth_failed[] = "authentication failed";

enum sasl_state {
	SASL_STATE_START,          /* no step yet */
	SASL_STATE_PLAIN_MESSAGE,  /* PLAIN: empty challenge sent, message due */
	SASL_STATE_LOGIN_USER,     /* LOGIN: "Username:" sent */
	SASL_STATE_LOGIN_PASSWORD, /* LOGIN: "Password:" sent */
	SASL_STATE_CHECK,          /* CHECK_PASSWORD returned, sasl_server_checked() due */
	SASL_STATE_SCRAM_FIRST,    /* SCRAM: empty challenge sent, client-first due */
	SASL_STATE_SCRAM_KEYS,     /* NEED_SCRAM returned, sasl_server_scram_*() due */
	SASL_STATE_SCRAM_FINAL,    /* server-first sent, client-final due */
	SASL_STATE_DONE,
	SASL_STATE_FAIL,
};

struct sasl_server {
	enum sasl_mech mech;
	enum sasl_state state;
	const char *error; /* static; "" until a failure */
	int error_syntax;
	uint8_t *secret; /* copy, wiped on free; NULL when none was given */
	size_t secret_len;
	char user[SASL_MAX_IDENTITY + 1];
	char password[SASL_MAX_PASSWORD + 1];

	/* SCRAM: what the AuthMessage and the client-final checks need. */
	char server_nonce[SASL_SCRAM_NONCE_MAX + 1]; /* set for tests, else "" */
	buf gs2_header;        /* "n,," or "y,a=...," exactly as sent */
	buf client_first_bare;
	buf server_first;
	buf nonce;             /* client nonce + server nonce */
	struct sasl_scram_keys keys;
	int unknown_user;      /* keys are the fake ones: the proof never verifies */
};

/* How each mechanism begins: the state that takes the client's first
 * message, and the challenge that asks for it when there was no initial
 * response. LOGIN takes an initial response as the user name: not in the
 * draft, but clients send it. */
struct sasl__mech_def {
	const char *name;
	enum sasl_state first_state;
	const char *first_challenge;
};

static const struct sasl__mech_def sasl__mechs[SASL_MECH_COUNT_] = {
	[SASL_MECH_PLAIN] = {"PLAIN", SASL_STATE_PLAIN_MESSAGE, ""},
	[SASL_MECH_LOGIN] = {"LOGIN", SASL_STATE_LOGIN_USER, "Username:"},
	[SASL_MECH_SCRAM_SHA_256] = {"SCRAM-SHA-256", SASL_STATE_SCRAM_FIRST, ""},
};

int sasl_mech_parse(const char *name, enum sasl_mech *mech_r)
{
	for (size_t i = 0; i < SASL_MECH_COUNT_; i++) {
		if (strcasecmp(name, sasl__mechs[i].name) == 0) {
			*mech_r = (enum sasl_mech)i;
			return 0;
		}
	}
	return -1;
}

const char *sasl_mech_name(enum sasl_mech mech)
{
	if ((unsigned)mech >= SASL_MECH_COUNT_)
		return NULL;
	return sasl__mechs[mech].name;
}

/* ---- the exchange ---------------------------------------------------------- */

sasl_server *sasl_server_new(enum sasl_mech mech, const uint8_t *secret, size_t secret_len)
{
	sasl_server *s = xcalloc(1, sizeof *s);
	s->mech = mech;
	s->state = SASL_STATE_START;
	s->error = "";
	if (secret != NULL && secret_len > 0) {
		s->secret = xmalloc(secret_len);
		memcpy(s->secret, secret, secret_len);
		s->secret_len = secret_len;
	}
	buf_init(&s->gs2_header);
	buf_init(&s->client_first_bare);
	buf_init(&s->server_first);
	buf_init(&s->nonce);
	if ((unsigned)mech >= SASL_MECH_COUNT_) {
		s->state = SASL_STATE_FAIL;
		s->error = "unknown mechanism";
	}
	return s;
}

static void sasl__buf_wipe(buf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	buf_deinit(b);
}

void sasl_server_free(sasl_server **sp)
{
	sasl_server *s = *sp;
	if (s == NULL)
		return;
	*sp = NULL;
	xfree_secret(s->secret, s->secret_len);
	sasl__buf_wipe(&s->gs2_header);
	sasl__buf_wipe(&s->client_first_bare);
	sasl__buf_wipe(&s->server_first);
	sasl__buf_wipe(&s->nonce);
	xfree_secret(s, sizeof *s); /* the password and the keys with it */
}

static int sasl__nonce_char(uint8_t ch)
{
	/* RFC 5802 printable: %x21-2B / %x2D-7E */
	return ch >= 0x21 && ch <= 0x7e && ch != ',';
}

void sasl_server_set_nonce(sasl_server *s, const char *nonce)
{
	size_t len = strlen(nonce);
	/* a test's mistake, not input: stop loudly */
	if (len == 0 || len > SASL_SCRAM_NONCE_MAX)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (!sasl__nonce_char((uint8_t)nonce[i]))
			abort();
	}
	memcpy(s->server_nonce, nonce, len + 1);
}

static enum sasl_step sasl__fail(sasl_server *s, const char *reason, int syntax)
{
	if (s->state != SASL_STATE_FAIL) {
		s->state = SASL_STATE_FAIL;
		s->error = reason;
		s->error_syntax = syntax;
	}
	return SASL_STEP_FAIL;
}

static enum sasl_step sasl__out_of_order(sasl_server *s)
{
	return sasl__fail(s, "step out of order", 0);
}

/* Copy a user name or password field into dst (max bytes + NUL). NULL,
 * or the reason it is refused. */
static const char *sasl__field_copy(char *dst, const uint8_t *v, size_t len, size_t max)
{
	if (len == 0)
		return "empty user name or password";
	if (len > max)
		return max == SASL_MAX_PASSWORD ? "password too long" : "identity too long";
	if (memchr(v, '\0', len) != NULL)
		return "NUL byte in user name or password";
	memcpy(dst, v, len);
	dst[len] = '\0';
	return NULL;
}

static enum sasl_step sasl__check_password(sasl_server *s)
{
	s->state = SASL_STATE_CHECK;
	return SASL_STEP_CHECK_PASSWORD;
}

/* ---- PLAIN (RFC 4616) ------------------------------------------------------- */

/* message = [authzid] NUL authcid NUL passwd */
static enum sasl_step sasl__plain_message(sasl_server *s, const uint8_t *in, size_t len)
{
	if (len == 0)
		return sasl__fail(s, "PLAIN: empty message", 1);
	const uint8_t *end = in + len;
	const uint8_t *nul1 = memchr(in, '\0', len);
	const uint8_t *authcid = nul1 != NULL ? nul1 + 1 : end;
	const uint8_t *nul2 = nul1 != NULL ? memchr(authcid, '\0', (size_t)(end - authcid)) : NULL;
	if (nul2 == NULL)
		return sasl__fail(s, "PLAIN: missing NUL separator", 1);
	size_t authzid_len = (size_t)(nul1 - in);
	size_t authcid_len = (size_t)(nul2 - authcid);
	const uint8_t *passwd = nul2 + 1;
	if (authzid_len > SASL_MAX_IDENTITY)
		return sasl__fail(s, "identity too long", 1);
	const char *why = sasl__field_copy(s->user, authcid, authcid_len, SASL_MAX_IDENTITY);
	if (why == NULL)
		why = sasl__field_copy(s->password, passwd, (size_t)(end - passwd),
				       SASL_MAX_PASSWORD);
	if (why != NULL)
		return sasl__fail(s, why, 1);
	if (authzid_len != 0 && (authzid_len != authcid_len || memcmp(in, authcid, authzid_len) != 0))
		return sasl__fail(s, "authorization identity differs from the user", 0);
	return sasl__check_password(s);
}

/* ---- LOGIN (draft-murchison-sasl-login) ------------------------------------ */

static enum sasl_step sasl__login_user(sasl_server *s, const uint8_t *in, size_t len, buf *out)
{
	const char *why = sasl__field_copy(s->user, in, len, SASL_MAX_IDENTITY);
	if (why != NULL)
		return sasl__fail(s, why, 1);
	buf_append_str(out, "Password:");
	s->state = SASL_STATE_LOGIN_PASSWORD;
	return SASL_STEP_CHALLENGE;
}

static enum sasl_step sasl__login_password(sasl_server *s, const uint8_t *in, size_t len)
{
	const char *why = sasl__field_copy(s->password, in, len, SASL_MAX_PASSWORD);
	if (why != NULL)
		return sasl__fail(s, why, 1);
	return sasl__check_password(s);
}

/* ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) ------------------------------------ */

/* A read position in one SCRAM message. */
typedef struct sasl__cursor {
	const uint8_t *p;
	const uint8_t *end;
} sasl__cursor;

/* "<name>=<value>" up to the next ',' or the end; the value may be empty.
 * 0, or -1 when the attribute is not name. */
static int sasl__attr(sasl__cursor *c, char name, const uint8_t **value_r, size_t *len_r)
{
	if (c->end - c->p < 2 || c->p[0] != (uint8_t)name || c->p[1] != '=')
		return -1;
	const uint8_t *v = c->p + 2;
	const uint8_t *comma = memchr(v, ',', (size_t)(c->end - v));
	const uint8_t *vend = comma != NULL ? comma : c->end;
	*value_r = v;
	*len_r = (size_t)(vend - v);
	c->p = vend;
	return 0;
}

static int sasl__comma(sasl__cursor *c)
{
	if (c->p == c->end || *c->p != ',')
		return -1;
	c->p++;
	return 0;
}

/* An optional extension: ALPHA "=" 1*value-char. 0 or -1. */
static int sasl__extension(sasl__cursor *c)
{
	const uint8_t *v;
	size_t len;
	if (c->p == c->end)
		return -1;
	uint8_t name = *c->p;
	int alpha = (name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z');
	if (!alpha || sasl__attr(c, (char)name, &v, &len) < 0 || len == 0)
		return -1;
	return 0;
}

static int sasl__hex_digit(uint8_t ch, uint8_t upper, uint8_t lower)
{
	return ch == upper || ch == lower;
}

/* Decode a saslname into dst (max bytes + NUL): "=2C" is ',', "=3D" is '='
 * (ABNF strings are case-insensitive, RFC 5234, so "=2c" too), any other
 * '=' is an error. 0 or -1 (also when empty or longer than max). */
static int sasl__saslname(const uint8_t *v, size_t len, char *dst, size_t max)
{
	size_t n = 0;
	if (len == 0)
		return -1;
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = v[i];
		if (ch == '=') {
			if (len - i < 3)
				return -1;
			if (v[i + 1] == '2' && sasl__hex_digit(v[i + 2], 'C', 'c'))
				ch = ',';
			else if (v[i + 1] == '3' && sasl__hex_digit(v[i + 2], 'D', 'd'))
				ch = '=';
			else
				return -1;
			i += 2;
		}
		if (n == max)
			return -1;
		dst[n++] = (char)ch;
	}
	dst[n] = '\0';
	return 0;
}

static int sasl__nonce_valid(const uint8_t *v, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (!sasl__nonce_char(v[i]))
			return 0;
	}
	return 1;
}

/* client-first-message = gs2-header client-first-message-bare
 *   gs2-header = ("n" / "y" / "p=" cb-name) "," ["a=" saslname] ","
 *   client-first-message-bare = ["m=" ext ","] "n=" saslname "," "r=" c-nonce
 *                               ["," extensions] */
static enum sasl_step sasl__scram_client_first(sasl_server *s, const uint8_t *in, size_t len)
{
	if (len == 0)
		return sasl__fail(s, "SCRAM: empty client-first message", 1);
	if (memchr(in, '\0', len) != NULL)
		return sasl__fail(s, "SCRAM: NUL byte in message", 1);
	sasl__cursor c = {in, in + len};
	const uint8_t *v;
	size_t vlen;

	if (len >= 2 && in[0] == 'p' && in[1] == '=')
		return sasl__fail(s, "SCRAM: channel binding not supported", 0);
	if (in[0] != 'n' && in[0] != 'y')
		return sasl__fail(s, "SCRAM: bad gs2 header", 1);
	c.p++;
	if (sasl__comma(&c) < 0)
		return sasl__fail(s, "SCRAM: bad gs2 header", 1);
	char authzid[SASL_MAX_IDENTITY + 1] = "";
	if (c.p != c.end && *c.p != ',') {
		if (sasl__attr(&c, 'a', &v, &vlen) < 0 ||
		    sasl__saslname(v, vlen, authzid, SASL_MAX_IDENTITY) < 0)
			return sasl__fail(s, "SCRAM: bad authorization identity", 1);
	}
	if (sasl__comma(&c) < 0)
		return sasl__fail(s, "SCRAM: bad gs2 header", 1);
	const uint8_t *bare = c.p;

	if (c.end - c.p >= 2 && c.p[0] == 'm' && c.p[1] == '=')
		return sasl__fail(s, "SCRAM: mandatory extension not supported", 0);
	if (sasl__attr(&c, 'n', &v, &vlen) < 0 ||
	    sasl__saslname(v, vlen, s->user, SASL_MAX_IDENTITY) < 0)
		return sasl__fail(s, "SCRAM: bad user name", 1);
	if (sasl__comma(&c) < 0 || sasl__attr(&c, 'r', &v, &vlen) < 0 ||
	    !sasl__nonce_valid(v, vlen))
		return sasl__fail(s, "SCRAM: bad nonce", 1);
	const uint8_t *client_nonce = v;
	size_t client_nonce_len = vlen;
	while (c.p != c.end) {
		if (sasl__comma(&c) < 0 || sasl__extension(&c) < 0)
			return sasl__fail(s, "SCRAM: bad extension", 1);
	}
	if (authzid[0] != '\0' && strcmp(authzid, s->user) != 0)
		return sasl__fail(s, "authorization identity differs from the user", 0);

	buf_append(&s->gs2_header, in, (size_t)(bare - in));
	buf_append(&s->client_first_bare, bare, (size_t)(c.end - bare));
	buf_append(&s->nonce, client_nonce, client_nonce_len);
	s->state = SASL_STATE_SCRAM_KEYS;
	return SASL_STEP_NEED_SCRAM;
}

static int sasl__hmac(const uint8_t *key, size_t key_len, const void *data, size_t len,
		      uint8_t md[SASL_SHA256_LEN])
{
	unsigned md_len = 0;
	if (HMAC(EVP_sha256(), key, (int)key_len, data, len, md, &md_len) == NULL ||
	    md_len != SASL_SHA256_LEN)
		return -1;
	return 0;
}

int sasl_scram_keys_derive(const char *password, size_t password_len, const uint8_t *salt,
			   size_t salt_len, unsigned iterations, struct sasl_scram_keys *keys_r)
{
	if (password_len > SASL_MAX_PASSWORD || salt_len == 0 ||
	    salt_len > sizeof keys_r->salt || iterations == 0 || iterations > INT_MAX)
		return -1;
	uint8_t salted[SASL_SHA256_LEN], client_key[SASL_SHA256_LEN];
	/* SaltedPassword := Hi(password, salt, i): no SASLprep (sasl.h) */
	int ok = PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len,
				   (int)iterations, EVP_sha256(), sizeof salted, salted) == 1;
	ok = ok && sasl__hmac(salted, sizeof salted, "Client Key", 10, client_key) == 0;
	ok = ok && SHA256(client_key, sizeof client_key, keys_r->stored_key) != NULL;
	ok = ok && sasl__hmac(salted, sizeof salted, "Server Key", 10, keys_r->server_key) == 0;
	memcpy(keys_r->salt, salt, salt_len);
	keys_r->salt_len = salt_len;
	keys_r->iterations = iterations;
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	return ok ? 0 : -1;
}

/* server-first-message = "r=" c-nonce s-nonce ",s=" salt ",i=" iteration-count */
static enum sasl_step sasl__scram_server_first(sasl_server *s, const struct sasl_scram_keys *keys,
					       int unknown_user, buf *out)
{
	if (keys == NULL || keys->salt_len == 0 || keys->salt_len > sizeof keys->salt ||
	    keys->iterations == 0)
		return sasl__fail(s, "SCRAM: unusable stored keys", 0);
	uint8_t random[SASL_SCRAM_NONCE_RANDOM];
	if (s->server_nonce[0] != '\0')
		buf_append_str(&s->nonce, s->server_nonce);
	else if (RAND_bytes(random, sizeof random) == 1)
		sasl_b64_encode(random, sizeof random, &s->nonce);
	else
		return sasl__fail(s, "SCRAM: no random bytes", 0);
	if (&s->keys != keys)
		s->keys = *keys;
	s->unknown_user = unknown_user;

	buf_append_str(&s->server_first, "r=");
	buf_append(&s->server_first, s->nonce.data, s->nonce.len);
	buf_append_str(&s->server_first, ",s=");
	sasl_b64_encode(keys->salt, keys->salt_len, &s->server_first);
	buf_printf(&s->server_first, ",i=%u", keys->iterations);
	buf_append(out, s->server_first.data, s->server_first.len);
	s->state = SASL_STATE_SCRAM_FINAL;
	return SASL_STEP_CHALLENGE;
}

enum sasl_step sasl_server_scram_keys(sasl_server *s, const struct sasl_scram_keys *keys,
				      buf *out)
{
	if (s->state != SASL_STATE_SCRAM_KEYS)
		return sasl__out_of_order(s);
	return sasl__scram_server_first(s, keys, 0, out);
}

/* HMAC(secret, label NUL user): the fake credentials of an unknown user,
 * the same on every attempt (and on every node sharing the secret), so
 * the salt a client sees cannot tell the user does not exist. */
static int sasl__fake_key(const sasl_server *s, const char *label, uint8_t md[SASL_SHA256_LEN])
{
	uint8_t data[32 + SASL_MAX_IDENTITY];
	size_t label_len = strlen(label) + 1;
	size_t user_len = strlen(s->user);
	memcpy(data, label, label_len);
	memcpy(data + label_len, s->user, user_len);
	return sasl__hmac(s->secret, s->secret_len, data, label_len + user_len, md);
}

enum sasl_step sasl_server_scram_unknown(sasl_server *s, buf *out)
{
	if (s->state != SASL_STATE_SCRAM_KEYS)
		return sasl__out_of_order(s);
	if (s->secret == NULL || s->secret_len < SASL_SECRET_MIN)
		return sasl__fail(s, "SCRAM: no server secret for unknown users", 0);
	uint8_t salt[SASL_SHA256_LEN];
	struct sasl_scram_keys *k = &s->keys;
	if (sasl__fake_key(s, "scram-salt", salt) < 0 ||
	    sasl__fake_key(s, "scram-stored-key", k->stored_key) < 0 ||
	    sasl__fake_key(s, "scram-server-key", k->server_key) < 0)
		return sasl__fail(s, "SCRAM: HMAC failed", 0);
	memcpy(k->salt, salt, SASL_SCRAM_SALT_LEN);
	k->salt_len = SASL_SCRAM_SALT_LEN;
	k->iterations = SASL_SCRAM_ITERATIONS;
	OPENSSL_cleanse(salt, sizeof salt);
	return sasl__scram_server_first(s, k, 1, out);
}

/* Verify the proof of client-final over auth_message; on success append
 * "v=" ServerSignature to out. The fake keys of an unknown user go
 * through the same computation and fail like a wrong password. */
static enum sasl_step sasl__scram_verify(sasl_server *s, const uint8_t proof[SASL_SHA256_LEN],
					 const buf *auth_message, buf *out)
{
	uint8_t signature[SASL_SHA256_LEN], client_key[SASL_SHA256_LEN];
	uint8_t stored_key[SASL_SHA256_LEN];
	/* ClientKey := ClientProof XOR HMAC(StoredKey, AuthMessage) */
	int ok = sasl__hmac(s->keys.stored_key, SASL_SHA256_LEN, auth_message->data,
			    auth_message->len, signature) == 0;
	for (size_t i = 0; i < SASL_SHA256_LEN; i++)
		client_key[i] = proof[i] ^ signature[i];
	ok = ok && SHA256(client_key, sizeof client_key, stored_key) != NULL;
	ok = ok && CRYPTO_memcmp(stored_key, s->keys.stored_key, SASL_SHA256_LEN) == 0;
	ok = ok && !s->unknown_user;
	/* ServerSignature := HMAC(ServerKey, AuthMessage) */
	ok = ok && sasl__hmac(s->keys.server_key, SASL_SHA256_LEN, auth_message->data,
			      auth_message->len, signature) == 0;
	if (ok) {
		buf_append_str(out, "v=");
		sasl_b64_encode(signature, sizeof signature, out);
		s->state = SASL_STATE_DONE;
	}
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(signature, sizeof signature);
	return ok ? SASL_STEP_DONE : sasl__fail(s, sasl__auth_failed, 0);
}

/* client-final-message = "c=" base64(gs2-header) ",r=" nonce ["," extensions]
 *                        ",p=" base64(ClientProof) */
static enum sasl_step sasl__scram_client_final(sasl_server *s, const uint8_t *in, size_t len,
					       buf *out)
{
	if (len == 0 || memchr(in, '\0', len) != NULL)
		return sasl__fail(s, "SCRAM: bad client-final message", 1);
	sasl__cursor c = {in, in + len};
	const uint8_t *cbind, *nonce, *proof_b64 = NULL;
	size_t cbind_len, nonce_len, proof_b64_len = 0;
	if (sasl__attr(&c, 'c', &cbind, &cbind_len) < 0 || sasl__comma(&c) < 0 ||
	    sasl__attr(&c, 'r', &nonce, &nonce_len) < 0)
		return sasl__fail(s, "SCRAM: bad client-final message", 1);
	const uint8_t *without_proof_end = NULL;
	while (proof_b64 == NULL) {
		const uint8_t *comma = c.p;
		if (sasl__comma(&c) < 0)
			return sasl__fail(s, "SCRAM: missing proof", 1);
		if (sasl__attr(&c, 'p', &proof_b64, &proof_b64_len) == 0)
			without_proof_end = comma;
		else if (sasl__extension(&c) < 0)
			return sasl__fail(s, "SCRAM: bad extension", 1);
	}
	if (c.p != c.end)
		return sasl__fail(s, "SCRAM: data after the proof", 1);

	buf proof, expected_cbind;
	buf_init(&proof);
	buf_init(&expected_cbind);
	enum sasl_step step;
	sasl_b64_encode(s->gs2_header.data, s->gs2_header.len, &expected_cbind);
	if (sasl_b64_decode((const char *)proof_b64, proof_b64_len, SASL_SHA256_LEN, &proof) < 0 ||
	    proof.len != SASL_SHA256_LEN) {
		step = sasl__fail(s, "SCRAM: bad proof", 1);
	} else if (cbind_len != expected_cbind.len ||
		   memcmp(cbind, expected_cbind.data, cbind_len) != 0) {
		step = sasl__fail(s, "SCRAM: channel binding data differs from the gs2 header", 0);
	} else if (nonce_len != s->nonce.len || memcmp(nonce, s->nonce.data, nonce_len) != 0) {
		step = sasl__fail(s, "SCRAM: nonce mismatch", 0);
	} else {
		/* AuthMessage := client-first-message-bare "," server-first-message ","
		 *                client-final-message-without-proof */
		buf auth_message;
		buf_init(&auth_message);
		buf_append(&auth_message, s->client_first_bare.data, s->client_first_bare.len);
		buf_append(&auth_message, ",", 1);
		buf_append(&auth_message, s->server_first.data, s->server_first.len);
		buf_append(&auth_message, ",", 1);
		buf_append(&auth_message, in, (size_t)(without_proof_end - in));
		step = sasl__scram_verify(s, proof.data, &auth_message, out);
		buf_deinit(&auth_message);
	}
	sasl__buf_wipe(&proof);
	buf_deinit(&expected_cbind);
	return step;
}

/* ---- dispatch ---------------------------------------------------------------- */

enum sasl_step sasl_server_step(sasl_server *s, const uint8_t *in, size_t len, int have_in,
				buf *out)
{
	if (s->state == SASL_STATE_FAIL)
		return SASL_STEP_FAIL;
	if (have_in && len > SASL_MAX_RESPONSE)
		return sasl__fail(s, "response too long", 1);
	if (in == NULL) {
		if (len != 0)
			return sasl__fail(s, "response without data", 1);
		in = (const uint8_t *)"";
	}
	if (s->state == SASL_STATE_START) {
		const struct sasl__mech_def *def = &sasl__mechs[s->mech];
		s->state = def->first_state;
		if (!have_in) {
			buf_append_str(out, def->first_challenge);
			return SASL_STEP_CHALLENGE;
		}
	} else if (!have_in) {
		/* after the first step every call carries a client response */
		return sasl__out_of_order(s);
	}
	switch (s->state) {
	case SASL_STATE_PLAIN_MESSAGE:
		return sasl__plain_message(s, in, len);
	case SASL_STATE_LOGIN_USER:
		return sasl__login_user(s, in, len, out);
	case SASL_STATE_LOGIN_PASSWORD:
		return sasl__login_password(s, in, len);
	case SASL_STATE_SCRAM_FIRST:
		return sasl__scram_client_first(s, in, len);
	case SASL_STATE_SCRAM_FINAL:
		return sasl__scram_client_final(s, in, len, out);
	case SASL_STATE_START:
	case SASL_STATE_CHECK:
	case SASL_STATE_SCRAM_KEYS:
	case SASL_STATE_DONE:
	case SASL_STATE_FAIL:
		break;
	}
	return sasl__out_of_order(s);
}

enum sasl_step sasl_server_checked(sasl_server *s, int ok)
{
	if (s->state != SASL_STATE_CHECK)
		return sasl__out_of_order(s);
	if (!ok)
		return sasl__fail(s, sasl__auth_failed, 0);
	s->state = SASL_STATE_DONE;
	return SASL_STEP_DONE;
}

const char *sasl_server_user(const sasl_server *s)
{
	return s->user;
}

const char *sasl_server_password(const sasl_server *s)
{
	return s->password;
}

const char *sasl_server_error(const sasl_server *s)
{
	return s->error;
}

int sasl_server_error_is_syntax(const sasl_server *s)
{
	return s->state == SASL_STATE_FAIL && s->error_syntax;
}

/* ---- base64 (RFC 4648) ------------------------------------------------------- */

static const char sasl__b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int sasl__b64_value(uint8_t ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

int sasl_b64_decode(const char *in, size_t len, size_t max, buf *out)
{
	if (len == 1 && in[0] == '=')
		return 0; /* the empty response (RFC 4954) */
	if (len % 4 != 0)
		return -1;
	size_t pad = 0;
	if (len != 0 && in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	size_t n = len / 4 * 3 - pad;
	if (n > max)
		return -1;
	/* decode behind out's data and count it only when all was valid */
	buf_reserve(out, n);
	uint8_t *dst = out->data + out->len;
	const uint8_t *src = (const uint8_t *)in;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		size_t data_chars = i + 4 == len ? 4 - pad : 4;
		uint32_t quad = 0;
		for (size_t j = 0; j < 4; j++) {
			int v = j < data_chars ? sasl__b64_value(src[i + j]) : 0;
			if (v < 0)
				return -1;
			quad = quad << 6 | (uint32_t)v;
		}
		/* the bits a padded quad does not use must be zero (canonical) */
		if ((pad == 1 && i + 4 == len && (quad & 0xff) != 0) ||
		    (pad == 2 && i + 4 == len && (quad & 0xffff) != 0))
			return -1;
		uint8_t bytes[3] = {(uint8_t)(quad >> 16), (uint8_t)(quad >> 8), (uint8_t)quad};
		size_t take = data_chars - 1;
		memcpy(dst + o, bytes, take);
		o += take;
	}
	out->len += o;
	out->data[out->len] = 0;
	return 0;
}

void sasl_b64_encode(const uint8_t *in, size_t len, buf *out)
{
	if (len == 0)
		return;
	buf_reserve(out, (len + 2) / 3 * 4);
	char *dst = (char *)out->data + out->len;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		size_t left = len - i;
		uint32_t v = (uint32_t)in[i] << 16;
		if (left > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (left > 2)
			v |= in[i + 2];
		dst[o++] = sasl__b64_alphabet[v >> 18 & 63];
		dst[o++] = sasl__b64_alphabet[v >> 12 & 63];
		dst[o++] = left > 1 ? sasl__b64_alphabet[v >> 6 & 63] : '=';
		dst[o++] = left > 2 ? sasl__b64_alphabet[v & 63] : '=';
	}
	out->len += o;
	out->data[out->len] = 0;
}
