/* queue-dkim.h: DKIM signing of a queued message off the loop
 * (docs/outbound-dkim.md, "Wiring it into delivery").
 *
 * One queue_dkim per process holds one dkim_signer (lib/dkim/dkim-sign.h).
 * queue_dkim_sign() takes a message, finds the domain of its author (the
 * single From: field), takes that domain's keys from the queue_config
 * cache on the loop, signs on libuv's thread pool and hands the signed
 * message back on the loop:
 *
 *   From: domain   The header section (up to the first empty line, at most
 *                  QUEUE_DKIM_HEADER_MAX bytes) must hold exactly one From
 *                  field (name matched case-insensitively; folded lines
 *                  unfolded). Its value is read as RFC 5322 mailboxes:
 *                  display names, quoted strings, comments (nested),
 *                  angle brackets, a source route inside them, group
 *                  syntax. Each mailbox's domain is the part after the
 *                  last '@' of its addr-spec, lowercased. Several mailboxes
 *                  sign only when they all have the same domain. No From,
 *                  two or more, an address that does not parse, a domain
 *                  literal, domains that differ: the message is not
 *                  signed.
 *   keys           queue_config_dkim_keys(cfg, domain): at most one per
 *                  algorithm (RSA first, then Ed25519: both sign when both
 *                  are active). None: not signed.
 *   result         the DKIM-Signature fields (CRLF line ends) followed by
 *                  the message's bytes exactly as given.
 *
 * Logs (svc=queue): event=dkim_signed qid=.. domain=.. selectors=..,
 * event=dkim_sign_failed qid=.. domain=.. error=<mail_error name>
 * detail=.. (and dkim-sign.c's own lines). Never a key.
 *
 * Threads: create, sign and destroy on the loop thread of the loop given to
 * sign (one loop per queue_dkim); the signing itself runs on the pool.
 */
#ifndef MAIL_QUEUE_DKIM_H
#define MAIL_QUEUE_DKIM_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dkim-sign.h"
#include "queue-config.h"

/* The header section scanned for From (on the loop, so it is bounded). A
 * message whose header is longer fails with MAIL_ERR_LIMIT (the signer
 * would refuse its field count long before). */
#define QUEUE_DKIM_HEADER_MAX (1024u * 1024u)

typedef struct queue_dkim queue_dkim;

/* A signer with set (copied; NULL: dkim_sign_settings_default()). Returns
 * MAIL_OK and *qd_r, or dkim_signer_create()'s error with *error_r
 * (static). */
int queue_dkim_create(const struct dkim_sign_settings *set, queue_dkim **qd_r,
		      const char **error_r);

/* Drop the caller's hold on qd; NULLs *qd (NULL is fine). Safe with jobs in
 * flight:
 *   - no queue_dkim_cb of qd is called after this returns;
 *   - no body is read after this returns: a job still waiting for a pool
 *     thread never signs, and one signing now is waited for (this blocks
 *     the loop for at most the rest of one signature: about 1 ms plus 1 ms
 *     per MB of body), so the caller may free every body at once;
 *   - each job holds a reference on qd; the signer is freed when the last
 *     job's completion has run on the loop: keep running the loop (as for
 *     any handle) before uv_loop_close().
 * Key copies and signed output of the dropped jobs are wiped or freed by
 * their completions. */
void queue_dkim_destroy(queue_dkim **qd);

/* The end of one queue_dkim_sign(), from the loop:
 *   status MAIL_OK, signed_body != NULL: signed; signed_body[0..signed_len)
 *          is the DKIM-Signature fields followed by the message. It is
 *          valid during the call only (copy it to keep it).
 *   status MAIL_OK, signed_body NULL, signed_len 0: not signed (no single
 *          From, or its domain has no active key): send the original body.
 *   status another mail_error: signing failed (logged): MAIL_ERR_PARAMS
 *          the signer refused the message (e.g. a header line that is not
 *          a field), MAIL_ERR_TOO_BIG / MAIL_ERR_LIMIT over a limit of the
 *          settings or QUEUE_DKIM_HEADER_MAX, MAIL_ERR_INTERNAL a bad key
 *          or a libopendkim failure. signed_body NULL; the caller decides
 *          (docs/outbound-dkim.md: send it unsigned).
 * domain: the From domain (lowercase) when one was found, else NULL; valid
 * during the call only. */
typedef void queue_dkim_cb(int status, const uint8_t *signed_body, size_t signed_len,
			   const char *domain, void *arg);

/* Sign body[0..len) for queue_id (copied, for log lines; NULL is fine)
 * with the keys cfg holds for its From domain (cfg NULL: no keys; read on
 * this call, during it). body is borrowed until cb runs (or until
 * queue_dkim_destroy returns). cb runs exactly once (unless qd is destroyed
 * first), later, from loop: never from inside this call, also when the
 * message is not signed. */
void queue_dkim_sign(queue_dkim *qd, uv_loop_t *loop, const queue_config *cfg,
		     const char *queue_id, const uint8_t *body, size_t len, queue_dkim_cb *cb,
		     void *arg);

/* The From domain of msg[0..len) as above, lowercased into
 * domain_r[DKIM_DOMAIN_MAX + 1]. Returns 1 found, 0 none (no single From,
 * or it names no one signable domain), -1 the header section is longer
 * than QUEUE_DKIM_HEADER_MAX. Pure; for queue_dkim_sign and its tests. */
int queue_dkim_from_domain(const uint8_t *msg, size_t len, char *domain_r);

#endif
