/* queue-dsn.h: the DSN parameters (RFC 3461) of a queued message's
 * envelope (queue.proto's EnqueueRequest ret, envid, notify, orcpt), read
 * back as lib/dsn's structs, and their check on ENQUEUE.
 *
 * A message queued before these fields existed has none of them, and a
 * message whose client gave none has none either: both read as the
 * defaults (RET and ENVID not given, NOTIFY not given, which
 * dsn_notify_wants() takes as FAILURE,DELAY, and no ORCPT). The
 * per-recipient arrays are either empty or parallel to rcpt_to
 * (queue_dsn_check refuses anything else); a reader of a record never
 * trusts that and treats a missing index as "not given".
 *
 * Pure, no global state: any thread with its own objects.
 */
#ifndef MAIL_QUEUE_DSN_H
#define MAIL_QUEUE_DSN_H

#include <stddef.h>

#include "dsn-params.h"
#include "queue.pb-c.h"

/* The MAIL FROM parameters of env into *p (always fills it). */
void queue_dsn_mail(const Queue__EnqueueRequest *env, struct dsn_mail_params *p);

/* The RCPT TO parameters of recipient index i of env into *p (always
 * fills it; defaults for an index the record has no values for). */
void queue_dsn_rcpt(const Queue__EnqueueRequest *env, size_t i, struct dsn_rcpt_params *p);

/* Is what env carries something our SMTP engine could have accepted?
 * The array lengths (0 or n_rcpt_to), RET in range, NOTIFY bits (NEVER
 * alone), the lengths of ENVID and ORCPT (lib/dsn's limits) and no
 * control characters in them (they end up in report header fields).
 * Returns 0, or -1 with *why_r (static text, for the log). */
int queue_dsn_check(const Queue__EnqueueRequest *env, const char **why_r);

/* The DSN values of env as log fields, into out (size octets, always
 * NUL-terminated): "" when it has none, else some of
 *   " ret=full|hdrs envid=<log_quote'd> notify=N orcpt=N"
 * (N: how many recipients gave NOTIFY / ORCPT). Returns out. */
const char *queue_dsn_log_fields(const Queue__EnqueueRequest *env, char *out, size_t size);

#endif
