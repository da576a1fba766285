/* dkim-verify.h: DKIM verification of received mail (RFC 6376, RFC 8463,
 * RFC 8301) with libopendkim; library `maildkimverify`.
 *
 * A verifier checks every DKIM-Signature field of a message, up to
 * max_signatures of them (topmost first: the last signer's first), and
 * gives one result per signature. Nothing blocks the loop, nothing
 * blocks on DNS:
 *
 *   1. pool: the header fields go to a libopendkim verifying handle
 *      (DKIM_LIBFLAGS_DELAYSIGPROC: no key is asked for yet); it parses
 *      the signatures;
 *   2. loop: the keys, TXT <s>._domainkey.<d> of each distinct (d=, s=),
 *      with dns_resolve_txt() (lib/dns: c-ares on the loop), in parallel;
 *   3. pool: the body goes through the handle and dkim_eom() verifies;
 *      libopendkim's key-lookup callback (dkim_set_key_lookup) answers
 *      from the records fetched in step 2, never from DNS;
 *   4. loop: the callback.
 * Signatures whose key lookup failed are decided in step 2 and kept away
 * from libopendkim (dkim_sig_ignore): libopendkim 2.11 aborts the whole
 * message when its key callback says "try again". When no signature is
 * left to verify, step 3 is skipped and the body is never hashed.
 *
 * Results (RFC 8601 2.7.1), with a reason:
 *   pass       the signature verified (rsa-sha256 or ed25519-sha256).
 *   fail       body_hash (the body changed), signature (the signed header
 *              fields changed, or the signature is wrong), body_length
 *              (l= is longer than the body).
 *   neutral    expired (x= passed), future (t= ahead of the clock).
 *   temperror  dns: the key lookup failed for a temporary reason.
 *   permerror  no_key (NXDOMAIN or no TXT at the name), key_revoked (p=
 *              empty), bad_key (a key record that is no usable key: its
 *              syntax, k=, h=, s=, the key itself, over
 *              DKIM_VERIFY_KEY_RECORD_MAX bytes), syntax (the signature
 *              field: a missing or bad tag, h= without From, i= outside
 *              d=, an unknown a= or c=), message (the message header is not
 *              what DKIM needs: no From field that libopendkim accepts).
 *   policy     key_too_small (RSA under min_rsa_bits), algorithm
 *              (rsa-sha1: RFC 8301 forbids counting it; never looked up),
 *              testing (the key says t=y: RFC 6376 3.6.1, not to be
 *              treated as signed), partial_body (l= leaves body bytes
 *              unsigned, only with partial_body_policy set).
 * l= is always noted: length and unsigned_bytes of each signature, so the
 * frontend can tell a pass that covers the body from one that does not
 * (content appended after the signed part, RFC 6376 8.2).
 *
 * Messages. Lines may end in CRLF or bare LF (each bare LF is verified as
 * CRLF, as lib/dkim's signer signs); a last line without its line end
 * gets CRLF. A header line that is no field (no colon, a NUL) makes the
 * whole message MAIL_ERR_PARAMS.
 *
 * Threads and lifetimes. A verifier belongs to one loop: create, destroy,
 * dkim_verify_start() and dkim_verify_cancel() on its thread; callbacks
 * run there. The work runs on libuv's thread pool (uv_queue_work), one
 * job per message at a time; one DKIM_LIB serves them all. The message is
 * borrowed, not copied: keep it until the callback runs, or until
 * dkim_verify_cancel() / dkim_verifier_destroy() returns (which wait for a
 * pool thread reading it to step off: at most one 64 KiB body chunk or
 * one header field). The resolver is borrowed too: destroy the verifier
 * before the resolver (a resolver destroyed first turns pending lookups
 * into temperror).
 */
#ifndef MAIL_DKIM_VERIFY_H
#define MAIL_DKIM_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <uv.h>

#include "dkim-keys.h"
#include "dns.h"

/* ---- settings (every row: default, min, max) ------------------------------ */

struct dkim_verify_settings {
	/* Signatures checked per message, topmost first; the rest are counted
	 * (dkim_verify_result.unchecked), neither looked up nor verified.
	 * Bounds the DNS lookups a message can cause. Default 8, 1..64. */
	unsigned max_signatures;
	/* Largest message verified, in bytes; larger: MAIL_ERR_TOO_BIG.
	 * Default 64 MiB, 1 KiB..1 GiB. */
	size_t max_message_bytes;
	/* Most header fields; more: MAIL_ERR_LIMIT (libopendkim keeps each
	 * one). Default 1000, 16..100000. */
	unsigned max_header_fields;
	/* Smallest RSA key accepted, in bits; smaller ones give policy
	 * (key_too_small). Default 1024 (RFC 8301), 1024..4096. */
	unsigned min_rsa_bits;
	/* 1: a pass whose l= leaves body bytes unsigned is policy
	 * (partial_body). Default 0: pass, with unsigned_bytes noted. */
	int partial_body_policy;
};

#define DKIM_VERIFY_SIGS_DEFAULT 8u
#define DKIM_VERIFY_SIGS_MIN 1u
#define DKIM_VERIFY_SIGS_MAX 64u
#define DKIM_VERIFY_MESSAGE_DEFAULT (64u << 20)
#define DKIM_VERIFY_MESSAGE_MIN 1024u
#define DKIM_VERIFY_MESSAGE_MAX (1u << 30)
#define DKIM_VERIFY_FIELDS_DEFAULT 1000u
#define DKIM_VERIFY_FIELDS_MIN 16u
#define DKIM_VERIFY_FIELDS_MAX 100000u
#define DKIM_VERIFY_RSA_BITS_DEFAULT 1024u
#define DKIM_VERIFY_RSA_BITS_MIN 1024u
#define DKIM_VERIFY_RSA_BITS_MAX 4096u
/* The longest key record handed to libopendkim, in bytes (its buffer is
 * 1024 with the NUL; a 4096-bit RSA key's record is about 750). */
#define DKIM_VERIFY_KEY_RECORD_MAX 1023u

/* The defaults above. */
struct dkim_verify_settings dkim_verify_settings_default(void);

/* ---- results -------------------------------------------------------------------- */

enum dkim_verify_status {
	DKIM_VERIFY_PASS = 0,
	DKIM_VERIFY_FAIL,
	DKIM_VERIFY_NEUTRAL,
	DKIM_VERIFY_TEMPERROR,
	DKIM_VERIFY_PERMERROR,
	DKIM_VERIFY_POLICY,
};

enum dkim_verify_reason {
	DKIM_VERIFY_OK = 0,              /* pass */
	DKIM_VERIFY_BODY_HASH,           /* fail */
	DKIM_VERIFY_SIGNATURE,           /* fail */
	DKIM_VERIFY_BODY_LENGTH,         /* fail */
	DKIM_VERIFY_EXPIRED,             /* neutral */
	DKIM_VERIFY_FUTURE,              /* neutral */
	DKIM_VERIFY_DNS,                 /* temperror */
	DKIM_VERIFY_NO_KEY,              /* permerror */
	DKIM_VERIFY_KEY_REVOKED,         /* permerror */
	DKIM_VERIFY_BAD_KEY,             /* permerror */
	DKIM_VERIFY_SYNTAX,              /* permerror */
	DKIM_VERIFY_MESSAGE,             /* permerror */
	DKIM_VERIFY_KEY_TOO_SMALL,       /* policy */
	DKIM_VERIFY_ALGORITHM,           /* policy */
	DKIM_VERIFY_TESTING,             /* policy */
	DKIM_VERIFY_PARTIAL_BODY,        /* policy */
	DKIM_VERIFY_REASON_COUNT_
};

/* "pass", "fail", "neutral", "temperror", "permerror", "policy" (the
 * RFC 8601 result keywords); never NULL. */
const char *dkim_verify_status_name(enum dkim_verify_status status);
/* A few words for logs and the Authentication-Results comment: "bad body
 * hash", "bad signature", "key not found", ...; "" for DKIM_VERIFY_OK;
 * never NULL. */
const char *dkim_verify_reason_text(enum dkim_verify_reason reason);

#define DKIM_VERIFY_ALG_MAX 31u
#define DKIM_VERIFY_IDENTITY_MAX 320u
#define DKIM_VERIFY_B_PREFIX 8u

/* One signature's result. Strings are NUL-terminated, cut to their
 * buffer, "" when the signature has no such tag (or it could not be
 * read). */
struct dkim_verify_sig {
	enum dkim_verify_status status;
	enum dkim_verify_reason reason;
	char domain[DKIM_DOMAIN_MAX + 1];           /* d=, header.d */
	char selector[DKIM_DOMAIN_MAX + 1];         /* s=, header.s */
	char algorithm[DKIM_VERIFY_ALG_MAX + 1];    /* a= as written, header.a */
	char identity[DKIM_VERIFY_IDENTITY_MAX + 1]; /* i=, header.i */
	char b[DKIM_VERIFY_B_PREFIX + 1];           /* b='s first 8 characters, header.b */
	/* l=: -1 when absent, else the body bytes it covers; unsigned_bytes:
	 * canonical body bytes after them (0 without l=, or when l= covers
	 * the body). */
	ssize_t length;
	uint64_t unsigned_bytes;
	unsigned key_bits; /* the RSA key's size; 0 for Ed25519 or no key */
	/* libopendkim's words for the failure (static), "" when none: for
	 * the log, not for clients. */
	const char *detail;
};

struct dkim_verify_result {
	/* In header order, topmost first; count 0: the message has no
	 * DKIM-Signature field (dkim=none). At most max_signatures. */
	const struct dkim_verify_sig *sigs;
	size_t count;
	/* Signature fields over max_signatures: not looked at. */
	size_t unchecked;
};

/* ---- the verifier ---------------------------------------------------------------- */

typedef struct dkim_verifier dkim_verifier;
typedef struct dkim_verify_job dkim_verify_job;

/* A verifier on loop asking resolver (borrowed, see the top) with settings
 * (copied; NULL: the defaults). MAIL_OK and *verifier_r; MAIL_ERR_PARAMS
 * with *error_r (static) for a setting out of range; MAIL_ERR_INTERNAL
 * when libopendkim cannot be set up or lacks SHA-256 or Ed25519. Loop
 * thread. */
int dkim_verifier_create(uv_loop_t *loop, dns_resolver *resolver,
			 const struct dkim_verify_settings *settings, dkim_verifier **verifier_r,
			 const char **error_r);

/* Destroy *verifier and NULL it (NULL is fine). Every job still running is
 * cancelled as by dkim_verify_cancel(): no callback runs after this, and
 * no message is read after it returns. Jobs on pool threads finish there
 * and are freed from the loop, with libopendkim's handle after the last:
 * keep running the loop before uv_loop_close(). Loop thread. */
void dkim_verifier_destroy(dkim_verifier **verifier);

/* The end of a job, on the loop, never inside dkim_verify_start(). status
 * MAIL_OK with result (borrowed: valid during the call; copy what you
 * keep), or, with result NULL:
 *   MAIL_ERR_TOO_BIG   the message is over max_message_bytes;
 *   MAIL_ERR_LIMIT     more than max_header_fields header fields;
 *   MAIL_ERR_PARAMS    a header line that is no field, or a NUL in it;
 *   MAIL_ERR_INTERNAL  libopendkim failed (logged).
 * The job handle is invalid from the call on. */
typedef void dkim_verify_cb(int status, const struct dkim_verify_result *result, void *arg);

/* Verify msg[0..len) (borrowed, see the top). id (copied; NULL is fine)
 * names the message in log lines (the session or queue id). cb runs
 * exactly once, later, unless the job is cancelled or the verifier
 * destroyed first. Returns the job (never NULL). Loop thread. */
dkim_verify_job *dkim_verify_start(dkim_verifier *verifier, const void *msg, size_t len,
				   const char *id, dkim_verify_cb *cb, void *arg);

/* Withdraw a job and NULL *job (NULL is fine): its callback never runs,
 * and once this returns msg is not read again (a pool thread reading it
 * now is waited for: one body chunk at most). Only before the callback
 * started. Loop thread. */
void dkim_verify_cancel(dkim_verify_job **job);

/* ---- Authentication-Results ------------------------------------------------------ */

struct authres_method;
/* sig as one dkim method of an Authentication-Results field
 * (lib/dmarc/auth-results.h): dkim=<status> [(reason)] header.d header.i
 * header.s header.a header.b. comment_buf (64 bytes do) holds the
 * comment; m points into it and into sig: compose while both live. With
 * sig NULL: dkim=none. */
void dkim_verify_sig_authres(const struct dkim_verify_sig *sig, struct authres_method *m,
			     char *comment_buf, size_t comment_size);

#endif
