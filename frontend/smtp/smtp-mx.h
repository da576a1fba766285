/* smtp-mx.h: the MX service (inbound mail for hosted domains) on top of the
 * SMTP engine (smtp-server.h). Library mailsmtpmx.
 *
 * What it decides, and nothing else (the engine does the protocol):
 *  - RCPT: the address is normalised (util_address_normalize); invalid ->
 *    501 5.1.3; its domain is not a tenant -> 550 5.7.1 "Relaying denied"
 *    (we are not an open relay); tenant but no such user -> 550 5.1.1
 *    "No such user"; the directory unreachable -> 451 4.3.0. The directory
 *    blocks, so each lookup runs on the libuv thread pool.
 *  - MAIL: any syntactically valid reverse-path, including <>.
 *  - DATA: the message goes to the queue with queue_client_enqueue() under
 *    a fresh queue id; "250 2.0.0 Ok: queued as <qid>" is written only from
 *    the enqueue callback with MAIL_OK (the queue made it durable); any
 *    other status maps through mail_error_info() (451 4.3.0 for temporary).
 * Logs (svc=smtp-mx): the engine's connect/disconnect/rejected, plus
 *   event=accepted sid=.. qid=.. rcpts=N size=..
 *   event=enqueue_failed sid=.. qid=.. error=..
 *   event=rate_limited sid=.. user=.. limit=N at=rcpt|data (submission)
 */
#ifndef MAIL_SMTP_MX_H
#define MAIL_SMTP_MX_H

#include "directory.h"
#include "queue-client.h"
#include "smtp-rate.h"
#include "smtp-server.h"

#include <uv.h>

struct smtp_mx_settings {
	/* Listen address, hostname, limits, timeouts: see smtp-server.h.
	 * Initialise with smtp_mx_settings_init_default(). */
	struct smtp_server_settings server;
	/* 1: the submission service (ports 587 and 465) instead of the MX:
	 *  - AUTH (PLAIN, LOGIN, SCRAM-SHA-256) against the directory, required
	 *    before MAIL (530 5.7.0); credentials only over TLS or from
	 *    loopback (the engine's plaintext_auth, development mode);
	 *  - MAIL FROM must be the authenticated user's own address
	 *    (553 5.7.1 otherwise; <> included);
	 *  - RCPT: a user of ours, or any address outside our tenants: those
	 *    are queued as outbound (rcpt_remote) and wait there, deferred,
	 *    until outbound delivery exists; a missing user of a tenant is
	 *    550 5.1.1 as on the MX;
	 *  - the outbound rate limit of the sender's tenant (smtp-rate.h,
	 *    docs/rate-limits.md): a message with a recipient outside our
	 *    tenants over the user's outbound_per_hour is refused 451 4.7.1
	 *    at the end of DATA, and not queued; a remote RCPT of a user
	 *    already at the limit gets 451 4.7.1 at once; local recipients
	 *    are never counted;
	 *  - the tenant's delay_warning goes with the message to the queue
	 *    (EnqueueRequest.delay_warning).
	 * Tenant settings come from the directory, cached for
	 * SMTP_RATE_TENANT_TTL_MS per tenant (smtp-rate.h). */
	int submission;
	/* Submission: the per-user counts and the tenant settings cache,
	 * shared by every submission listener of the daemon (borrowed, must
	 * outlive the MX as dir does); NULL: the MX keeps its own. */
	struct smtp_rate *rate;
	/* Authentication penalties (frontend/auth-guard.h), optional. */
	unsigned (*auth_delay_ms)(void *arg, const char *ip);
	void (*auth_failed)(void *arg, const char *ip);
	/* Submission: where credentials are checked (frontend/auth-pool.h;
	 * borrowed, must outlive the MX). */
	struct auth_pool *auth;
	/* The MX (not submission): SPF, DKIM, DMARC and
	 * Authentication-Results (smtp-inbound.h; borrowed, must outlive the
	 * MX). NULL: none of them. */
	struct smtp_inbound *inbound;
	/* The MX: greylisting for tenants with greylisting=on
	 * (router/greylist/greylist.h; borrowed). NULL: none. */
	struct greylist *grey;
	/* The MX: forwarded copies get an SRS envelope sender and SRS
	 * addresses of our tenants are taken back (lib/srs/srs.h;
	 * borrowed). NULL: forwarded as they are. */
	const struct srs *srs;
	/* Quotas (client/quota-client.h; borrowed, must outlive the MX):
	 * a recipient (a user, or an alias of one user) already at or over its
	 * own or its tenant's quota gets 452 4.2.2 at RCPT; at the end of DATA
	 * a message that does not fit any of its local recipients is refused
	 * 552 5.2.2, and one that fits some of them is accepted: the store
	 * refuses the others' copies at delivery and the queue bounces them
	 * (DSN 5.2.2; docs/operations.md "Quotas"). NULL: no quotas. */
	struct quota_client *quota;
};

/* smtp_server_settings_init_default() with port 2525 and log_svc
 * "smtp-mx". */
void smtp_mx_settings_init_default(struct smtp_mx_settings *set);

typedef struct smtp_mx smtp_mx;

/* Start listening. dir and qc are borrowed: they must outlive the MX, i.e.
 * stay until the loop has run every pending lookup and enqueue after
 * smtp_mx_stop() (run the loop until it has nothing left to do, then
 * destroy them). Loop thread only. Returns 0 with *mx_r, or -1 with
 * *error_r (static text). */
int smtp_mx_start(uv_loop_t *loop, const struct smtp_mx_settings *set, directory *dir,
		  queue_client *qc, smtp_mx **mx_r, const char **error_r);

/* Stop listening and close every session (421 4.3.2). NULLs *mx. In-flight
 * lookups and enqueues finish on the loop; the memory goes with the last. */
void smtp_mx_stop(smtp_mx **mx);

/* The port the MX listens on (port 0 in the settings picks one). */
int smtp_mx_port(const smtp_mx *mx);

#endif
