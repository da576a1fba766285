/* dkim-sign.h: DKIM signing of outgoing mail with libopendkim (RFC 6376,
 * RFC 8463; docs/outbound-dkim.md).
 *
 * A signer wraps one libopendkim library handle (DKIM_LIB) set up for
 * signing as below. Its owner is whoever runs the signing, typically a
 * queue node's context: create one per process at start, destroy it at
 * exit; nothing is global. One call signs one whole message with one or
 * more keys (dkim-keys.h: dkim_store_select() picks them from etcd) and
 * returns the DKIM-Signature header fields to put in front of it.
 *
 * What every signature is (decisions, docs/outbound-dkim.md says why):
 *   - c=relaxed/relaxed; no l= (the whole body is signed, so nothing can
 *     be appended); t= the signing time; no x=; no i= (the identity is
 *     the domain, d=).
 *   - h= the fields of DKIM_SIGN_HEADERS that the message has, each as
 *     many times as it occurs, and the fields of DKIM_OVERSIGN_HEADERS
 *     once more than they occur (also when absent): a From, Reply-To,
 *     Subject, To or Cc added later, which a reader would see, breaks the
 *     signature.
 *   - A message must have exactly one From field (RFC 5322 3.6): with none
 *     there is nothing to align with, and with two a reader may be shown
 *     the one that was not meant.
 *   - One signature per key, in the order of the keys given (callers give
 *     RSA first, then Ed25519: RFC 8463 dual signing, verifiers that do
 *     not know Ed25519 skip that one).
 *
 * Line ends: the message may use CRLF or bare LF (or both); it is signed
 * as it will travel, with every bare LF as CRLF. The result always uses
 * CRLF. A lone CR is left as it is. A body whose last line has no line
 * end is signed with a CRLF after it, as SMTP will send it.
 *
 * Secrets: the signer's allocator wipes every buffer libopendkim frees
 * (its copy of the key among them); keys stay the caller's.
 *
 * Threads: dkim_signer_sign() may run on any thread, on one signer from
 * several threads at once (the signer is read-only after create; each call
 * has its own libopendkim handles). create/destroy: one thread, no call in
 * flight. Signing costs CPU (an RSA-2048 signature ~1 ms, the body hash
 * ~1 ms per MB): call it from the thread pool, not a loop thread.
 */
#ifndef MAIL_DKIM_SIGN_H
#define MAIL_DKIM_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "dkim-keys.h"

/* The signed header set (lowercase names). */
#define DKIM_SIGN_HEADERS                                                                     \
	"from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc",            \
		"mime-version", "content-type", "content-transfer-encoding", "content-id",      \
		"content-description", "in-reply-to", "references", "resent-date",             \
		"resent-from", "resent-sender", "resent-to", "resent-cc", "resent-message-id", \
		"list-id", "list-help", "list-unsubscribe", "list-unsubscribe-post",           \
		"list-subscribe", "list-post", "list-owner", "list-archive", "autocrypt"
/* Signed once more than present. */
#define DKIM_OVERSIGN_HEADERS "from", "reply-to", "subject", "to", "cc"

/* ---- settings (every row: default, min, max) ----------------------------- */

struct dkim_sign_settings {
	/* Largest message signed, in bytes as given; a larger one is refused
	 * (MAIL_ERR_TOO_BIG). Default 64 MiB (SMTP takes 32 MiB of DATA, and
	 * the queue adds its trace fields), 1 KiB..1 GiB. */
	size_t max_message_bytes;
	/* Most header fields in the message's header; more is refused
	 * (MAIL_ERR_LIMIT): libopendkim keeps each one. Default 1000,
	 * 16..100000. */
	unsigned max_header_fields;
	/* The t= of every signature, seconds since the epoch; 0 (default):
	 * the clock at each call. For tests (identical input, identical
	 * signature). */
	uint64_t fixed_time;
};

#define DKIM_SIGN_MAX_MESSAGE_DEFAULT (64u << 20)
#define DKIM_SIGN_MAX_MESSAGE_MIN 1024u
#define DKIM_SIGN_MAX_MESSAGE_MAX (1u << 30)
#define DKIM_SIGN_MAX_FIELDS_DEFAULT 1000u
#define DKIM_SIGN_MAX_FIELDS_MIN 16u
#define DKIM_SIGN_MAX_FIELDS_MAX 100000u
/* Most keys one call signs with. */
#define DKIM_SIGN_KEYS_MAX 8u

/* The defaults above. */
struct dkim_sign_settings dkim_sign_settings_default(void);

/* ---- the signer ----------------------------------------------------------- */

typedef struct dkim_signer dkim_signer;

/* A signer with settings (copied; NULL: the defaults). MAIL_OK and
 * *signer_r; MAIL_ERR_PARAMS when a setting is out of its range,
 * MAIL_ERR_INTERNAL when libopendkim cannot be set up (or lacks Ed25519);
 * *error_r (static) says which. */
int dkim_signer_create(const struct dkim_sign_settings *settings, dkim_signer **signer_r,
		       const char **error_r);
/* Close libopendkim's handle and free; NULLs *signer (NULL is fine). */
void dkim_signer_destroy(dkim_signer **signer);

/* Sign msg[0..len) (the header, an empty line, the body; the body may be
 * absent) with keys[0..n_keys) (borrowed; 1..DKIM_SIGN_KEYS_MAX; each key's
 * domain is d=, its selector s=, its PEM the private key). id (may be
 * NULL) names the message in log lines (the queue id).
 *
 * On MAIL_OK *fields_r is a heap string (caller frees) of n_keys fields
 * "DKIM-Signature: v=1; a=...\r\n" (folded with CRLF TAB), to be put
 * before the message's first line as they are, and *fields_len_r its
 * length. Errors (*fields_r NULL, *error_r a static text):
 *   MAIL_ERR_TOO_BIG   len > max_message_bytes
 *   MAIL_ERR_LIMIT     more than max_header_fields fields
 *   MAIL_ERR_PARAMS    no From or more than one; a header line that is not
 *                      a field; a NUL in the header; no keys, too many,
 *                      or a key with an empty domain or selector
 *   MAIL_ERR_INTERNAL  a key is not a PEM private key of its algorithm
 *                      (dkim_key_check: event=dkim_key_invalid), or
 *                      libopendkim failed (event=dkim_sign_failed); the
 *                      detail is in the log line. */
int dkim_signer_sign(dkim_signer *signer, const void *msg, size_t len,
		     const struct dkim_key *keys, size_t n_keys, const char *id, char **fields_r,
		     size_t *fields_len_r, const char **error_r);

#endif
