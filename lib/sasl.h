/* sasl.h: the server side of SASL (RFC 4422) for SMTP AUTH, IMAP
 * AUTHENTICATE and POP3 AUTH: PLAIN (RFC 4616), LOGIN
 * (draft-murchison-sasl-login) and SCRAM-SHA-256 (RFC 5802, RFC 7677,
 * no channel binding: "p=" is refused, "y" and "n" are accepted).
 *
 * Transport-free and incremental: the protocol layer base64-decodes each
 * client response (sasl_b64_decode, strict: bad alphabet, bad padding or
 * more than SASL_MAX_RESPONSE bytes is an error) and feeds it to
 * sasl_server_step(); whatever the step puts in out is base64-encoded and
 * sent as the next challenge (or, for SASL_STEP_DONE, as the additional
 * success data, e.g. SCRAM's server-final message "v=..."; a protocol that
 * cannot carry data with success, SMTP (RFC 4954) and POP3 (RFC 5034),
 * sends it as one more challenge and expects an empty response).
 *
 * Credentials are not looked up here: the mechanism asks for them.
 *   PLAIN, LOGIN: once user and password are known, a step returns
 *     SASL_STEP_CHECK_PASSWORD; the caller verifies (sasl_server_user(),
 *     sasl_server_password()) and calls sasl_server_checked(ok): DONE or
 *     FAIL follows at once (no more client input needed).
 *   SCRAM-SHA-256: after client-first a step returns SASL_STEP_NEED_SCRAM;
 *     the caller looks up the user's stored keys and calls
 *     sasl_server_scram_keys() (or, for an unknown user,
 *     sasl_server_scram_unknown(): the exchange goes on with keys derived
 *     from a server secret, so an observer cannot tell, and fails at the
 *     end); that call returns SASL_STEP_CHALLENGE with server-first in out.
 *   The authorization identity, when given and different from the
 *   authentication identity (byte for byte), fails the exchange (no proxy
 *   login).
 *
 * Every failure is SASL_STEP_FAIL with a static reason
 * (sasl_server_error()); the protocol answers its "authentication failed"
 * (535 5.7.8, NO [AUTHENTICATIONFAILED], -ERR), or its syntax error when
 * sasl_server_error_is_syntax(). Any call in a state that does not expect
 * it (a response after DONE or FAIL, sasl_server_checked() before
 * CHECK_PASSWORD...) fails the exchange; a failed exchange stays failed
 * and keeps its first reason.
 *
 * SCRAM takes the user name and password as sent: no SASLprep (RFC 4013),
 * which is the identity for ASCII.
 *
 * No I/O, no threads, no global state. Secrets are wiped on free.
 */
#ifndef MAIL_SASL_H
#define MAIL_SASL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define SASL_MAX_RESPONSE 8192u   /* decoded bytes of one client response */
#define SASL_MAX_IDENTITY 320u    /* bytes of a user name / authzid */
#define SASL_MAX_PASSWORD 1024u   /* bytes of a password */
#define SASL_SCRAM_ITERATIONS 4096u /* default for new credentials (RFC 7677) */
#define SASL_SCRAM_SALT_LEN 16u

enum sasl_mech {
	SASL_MECH_PLAIN = 0,
	SASL_MECH_LOGIN,
	SASL_MECH_SCRAM_SHA_256,
	SASL_MECH_COUNT_
};

/* "PLAIN", "LOGIN", "SCRAM-SHA-256" (case-insensitive). 0 or -1. */
int sasl_mech_parse(const char *name, enum sasl_mech *mech_r);
/* The canonical (upper-case) name; NULL for a value out of range. */
const char *sasl_mech_name(enum sasl_mech mech);

enum sasl_step {
	SASL_STEP_CHALLENGE = 0,   /* send out (may be empty) and wait for a response */
	SASL_STEP_CHECK_PASSWORD,  /* PLAIN/LOGIN: verify, then sasl_server_checked() */
	SASL_STEP_NEED_SCRAM,      /* SCRAM: look up keys, then sasl_server_scram_*() */
	SASL_STEP_DONE,            /* authenticated as sasl_server_user(); out: final data */
	SASL_STEP_FAIL,            /* see sasl_server_error() */
};

/* The stored SCRAM-SHA-256 credentials of a user (RFC 5802 section 3). */
struct sasl_scram_keys {
	uint8_t salt[64];
	size_t salt_len;
	unsigned iterations;
	uint8_t stored_key[32];
	uint8_t server_key[32];
};

/* Derive keys from a password (mailctl user add/passwd): PBKDF2-HMAC-SHA-256
 * over the password bytes as given. salt_len 1..64, iterations >= 1,
 * password_len <= SASL_MAX_PASSWORD. 0 or -1. */
int sasl_scram_keys_derive(const char *password, size_t password_len, const uint8_t *salt,
			   size_t salt_len, unsigned iterations, struct sasl_scram_keys *keys_r);

typedef struct sasl_server sasl_server;

/* A new exchange (never NULL; the caller frees it with sasl_server_free(),
 * which NULLs *s and wipes what it held). secret (>= 16 bytes, the
 * process's; copied) keys the fake credentials of unknown users; PLAIN
 * and LOGIN need none (NULL, 0); without one sasl_server_scram_unknown()
 * fails. A mech out of range gives an exchange whose first step fails. */
sasl_server *sasl_server_new(enum sasl_mech mech, const uint8_t *secret, size_t secret_len);
void sasl_server_free(sasl_server **s);
/* Tests only: the server nonce SCRAM uses (printable, no ',', at most 64
 * characters; anything else aborts: the test's mistake). Call before the
 * scram keys; otherwise 18 bytes from RAND_bytes, base64. */
void sasl_server_set_nonce(sasl_server *s, const char *nonce);

/* The first step: initial is the decoded initial response (SASL-IR, or
 * AUTH PLAIN <b64>), or NULL when the client sent none (an empty
 * challenge goes out first). Later steps: each decoded client response.
 * Appends to out. */
enum sasl_step sasl_server_step(sasl_server *s, const uint8_t *in, size_t len, int have_in,
				buf *out);
/* PLAIN/LOGIN after SASL_STEP_CHECK_PASSWORD: DONE or FAIL. */
enum sasl_step sasl_server_checked(sasl_server *s, int ok);
/* SCRAM after SASL_STEP_NEED_SCRAM: CHALLENGE (server-first in out) or FAIL. */
enum sasl_step sasl_server_scram_keys(sasl_server *s, const struct sasl_scram_keys *keys,
				      buf *out);
enum sasl_step sasl_server_scram_unknown(sasl_server *s, buf *out);

/* The authentication identity (valid once known, "" before). Strings
 * returned here are owned by s and valid until sasl_server_free(). */
const char *sasl_server_user(const sasl_server *s);
/* PLAIN/LOGIN: the password, valid after CHECK_PASSWORD until free. */
const char *sasl_server_password(const sasl_server *s);
/* A static reason for the log (never for the client); "" before a failure. */
const char *sasl_server_error(const sasl_server *s);
/* 1 when the failure was malformed input (the protocol's syntax error,
 * e.g. 501 5.5.2) rather than bad credentials. */
int sasl_server_error_is_syntax(const sasl_server *s);

/* Base64 (RFC 4648, with padding). Both append to out. decode: strict
 * (length a multiple of 4, the standard alphabet, padding only at the end,
 * unused bits zero, no whitespace); "=" alone and "" are the empty
 * response (RFC 4954). 0, or -1 (invalid or longer than max decoded; out
 * is left as it was). */
int sasl_b64_decode(const char *in, size_t len, size_t max, buf *out);
void sasl_b64_encode(const uint8_t *in, size_t len, buf *out);

#endif
