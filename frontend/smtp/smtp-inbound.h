/* smtp-inbound.h: the MX's message authentication (issue 11,
 * docs/inbound.md): SPF of the client for MAIL FROM and HELO, DKIM of
 * every signature, DMARC of the From domain, and the
 * Authentication-Results field every accepted message gets. Part of
 * library mailsmtpmx.
 *
 * One smtp_inbound per frontend holds the checkers (lib/spf, lib/dkim,
 * lib/dmarc) and their DNS resolver (lib/dns, --dns); one inbound_txn per
 * SMTP transaction:
 *
 *   MAIL   inbound_txn_start(): both SPF checks start; MAIL is answered
 *          at once (nothing waits for DNS unless a policy needs it);
 *   RCPT   inbound_txn_spf_wait(): a recipient whose tenant refuses SPF
 *          failures waits for the MAIL FROM result;
 *   DATA   inbound_txn_data(): the fields claiming our authserv-id are
 *          removed (RFC 8601 5), every DKIM signature verified, DMARC
 *          evaluated with both results, and the callback gets the
 *          verdict and the header fields to prepend.
 *
 * No result ever turns a DNS failure into a refusal: temperror is what
 * the caller sees, and only policies (the caller's) refuse.
 *
 * Loop thread only. A transaction lives until inbound_txn_release() and
 * its last check: a check running when the caller lets go finishes and is
 * dropped. The callbacks of inbound_txn_spf_wait() and inbound_txn_data()
 * always run (exactly once, never inside the call that asked), even after
 * release: the caller completes its SMTP command there.
 */
#ifndef MAIL_SMTP_INBOUND_H
#define MAIL_SMTP_INBOUND_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "conncheck.h"
#include "dmarc.h"
#include "rspamd.h"
#include "spf-check.h"

struct smtp_inbound_settings {
	/* The DNS server (--dns text "IP:PORT"), NULL: /etc/resolv.conf. */
	const char *dns_server;
	/* Our authserv-id (the MX's host name), in Authentication-Results
	 * and Received-SPF. Copied. */
	const char *authserv_id;
	/* The longest an SPF check may take (then temperror). */
	unsigned spf_timeout_ms;
#define SMTP_INBOUND_SPF_TIMEOUT_DEFAULT 10000u
	/* rspamd's normal worker ("http://127.0.0.1:11333", --rspamd), NULL:
	 * no spam verdicts; and whether a message waits (451) when rspamd
	 * cannot answer (--rspamd-fail-closed) instead of passing unchecked. */
	const char *rspamd_url;
	int rspamd_fail_closed;
};

typedef struct smtp_inbound smtp_inbound;
typedef struct inbound_txn inbound_txn;

/* MAIL_OK and *in_r, or an error with *error_r (static). */
int smtp_inbound_create(uv_loop_t *loop, const struct smtp_inbound_settings *set,
			smtp_inbound **in_r, const char **error_r);
/* Stopping: every check in flight ends now (SPF as temperror, a DATA
 * with inbound_verdict.aborted, a connection check with a NULL result),
 * and so does every check started later. Loop thread. */
void smtp_inbound_abort(smtp_inbound *in);
/* Transactions and connection checks still alive (the frontend's drain
 * waits for them). */
size_t smtp_inbound_pending(const smtp_inbound *in);
/* The owner's end: aborts what is left (smtp_inbound_abort) and drops
 * its reference. The object is freed with the last reference: a user's
 * (smtp_inbound_ref, an MX whose sessions may still finish a command
 * after the frontend drained), a transaction's, a check's. Run the loop
 * after it (the resolver's handles close). */
void smtp_inbound_destroy(smtp_inbound **in);
/* Another reference (returns in), and its end (*in = NULL). */
smtp_inbound *smtp_inbound_ref(smtp_inbound *in);
void smtp_inbound_unref(smtp_inbound **in);
/* The resolver, for the MX's other checks. */
struct dns_resolver *smtp_inbound_resolver(smtp_inbound *in);

/* A copy of body[0..*len) without the fields claiming our authserv-id
 * (*len updated), for messages no check runs on. The caller frees it. */
uint8_t *smtp_inbound_strip(smtp_inbound *in, const uint8_t *body, size_t *len);

/* MAIL: a transaction for a client (IP text), its HELO and reverse-path
 * ("" for <>); sid names it in logs. */
inbound_txn *inbound_txn_start(smtp_inbound *in, const char *sid, const char *client_ip,
			       const char *helo, const char *mail_from);
/* The caller is done with t (the transaction ended, or the session went).
 * NULLs *t; NULL is fine. */
void inbound_txn_release(inbound_txn **t);

/* The connection checks (lib/conncheck) through the inbound object, so
 * a stop ends them: cb gets NULL then (treat it as temperror). The job
 * is the inbound's: no cancel (the session waits for its answer). */
void smtp_inbound_client_check(smtp_inbound *in, const struct sockaddr *client,
			       const char *const *zones, size_t n,
			       void (*cb)(const struct conncheck_client_result *r, void *arg),
			       void *arg);
void smtp_inbound_rhsbl_check(smtp_inbound *in, const char *domain, const char *const *zones,
			      size_t n,
			      void (*cb)(const struct conncheck_rhsbl_result *r, void *arg),
			      void *arg);

/* The client's reverse DNS as the connection check found it, for the
 * iprev method of Authentication-Results (RFC 8601 2.7.3): result "pass",
 * "fail" or "temperror"; name the verified (or first) PTR name, "" none. */
void inbound_txn_iprev(inbound_txn *t, const char *result, const char *ip, const char *name);

/* The MAIL FROM SPF result, to cb: now-or-later, never inside this call.
 * One wait at a time. */
typedef void inbound_spf_cb(enum spf_status status, void *arg);
void inbound_txn_spf_wait(inbound_txn *t, inbound_spf_cb *cb, void *arg);

struct inbound_verdict {
	/* 1: the frontend is stopping, nothing else is set: answer 4xx */
	int aborted;
	enum spf_status spf;          /* MAIL FROM (HELO for <>) */
	struct dmarc_outcome dmarc;   /* result NONE when there was no From domain */
	size_t dkim_pass;             /* signatures that verified */
	/* spam asked: rspamd's verdict as the MX acts on it (lib/rspamd:
	 * smtp_code != 0 refuses; flags HEADERS, JUNK, UNCHECKED); spam_fields
	 * the X-Spam-* fields ("" none). */
	int spam_checked;
	struct rspamd_reply spam;
	const char *spam_fields;
	/* Authentication-Results and Received-SPF, CRLF-terminated, to put
	 * above the message. */
	const char *fields;
	size_t fields_len;
	/* The message without fields claiming our authserv-id (the caller's
	 * body itself when there were none). */
	const uint8_t *body;
	size_t body_len;
};
/* DATA: body[0..len) (borrowed until cb) checked; with spam (a
 * recipient's tenant says spam=on, and rspamd is configured) rspamd is
 * asked too, with rcpts[0..n) (borrowed until cb). cb gets the verdict
 * (valid during the call). */
typedef void inbound_data_cb(const struct inbound_verdict *v, void *arg);
void inbound_txn_data(inbound_txn *t, const uint8_t *body, size_t len, int spam,
		      const char *const *rcpts, size_t n_rcpts, inbound_data_cb *cb, void *arg);
/* rspamd's counters (lib/rspamd), zero without it. */
void smtp_inbound_rspamd_stats(const smtp_inbound *in, struct rspamd_stats *stats_r);

#endif
