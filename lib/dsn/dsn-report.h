/* dsn-report.h: delivery status notifications as messages (RFC 3464, the
 * multipart/report of RFC 6522, RFC 6533 for internationalised mail, RFC
 * 3834's Auto-Submitted), and when to send one (library maildsn).
 *
 * dsn_report_compose() writes one complete RFC 5322 message:
 *
 *   From: Mail Delivery System <MAILER-DAEMON@reporting-mta>
 *   To: <envelope sender>
 *   Subject: Undelivered Mail Returned to Sender      (any recipient failed)
 *            Delayed Mail (still being retried)       (else any delayed)
 *            Successful Mail Delivery Report          (else)
 *   Date, Message-ID, In-Reply-To / References (the original's Message-ID
 *   when it has a usable one), Auto-Submitted: auto-replied, MIME-Version
 *   Content-Type: multipart/report; report-type=delivery-status
 *     1. text/plain: what happened, per recipient, for a person
 *     2. message/delivery-status: Reporting-MTA, Original-Envelope-Id,
 *        Arrival-Date; per recipient Original-Recipient, Final-Recipient,
 *        Action, Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date,
 *        Final-Log-ID, Will-Retry-Until
 *     3. the original: text/rfc822-headers (its header section), or
 *        message/rfc822 (the whole message) when RET=FULL was given, some
 *        recipient failed and the message is at most max_full octets.
 *        A delay or success report never returns the whole message
 *        (RFC 3461 4.3: RET is about failed DSNs). A bigger message is
 *        returned as headers only: a bounce is never refused for size.
 *
 * Internationalised mail (RFC 6533): when the envelope sender or a final
 * recipient is not ASCII, or the original transaction was SMTPUTF8 and
 * its header section or an ORCPT utf-8 address is not ASCII, the report
 * is a "global" one: message/global-delivery-status (addresses as
 * "utf-8; " and raw UTF-8), message/global-headers or message/global for
 * the original, text/plain; charset=utf-8; DSN_REPORT_SMTPUTF8 tells the
 * caller to send it with SMTPUTF8. Otherwise every part is 7-bit
 * (non-ASCII ORCPT addresses as utf-8-addr-xtext) except an original with
 * 8-bit octets, which goes as it is with Content-Transfer-Encoding: 8bit
 * (DSN_REPORT_8BIT: send with BODY=8BITMIME).
 *
 * The output's lines all end in CRLF and are at most 998 octets: the
 * embedded original's bare LFs and CRs become CRLF and longer lines are
 * broken (header lines with CRLF SP, so they stay one field). No
 * generated header line goes past 78 octets unless one word is longer.
 * The boundary occurs nowhere in the content.
 *
 * The report is sent with the null reverse-path (MAIL FROM:<>), so that
 * no report is ever made about it (dsn_should_send()).
 *
 * No I/O, no global state; any thread with its own objects. Allocation
 * aborts on failure (xalloc.h).
 */
#ifndef MAIL_DSN_REPORT_H
#define MAIL_DSN_REPORT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dsn-params.h"

/* ---- limits ------------------------------------------------------------ */

/* struct dsn_report_limits; a field 0 takes the default, a value outside
 * [min, max] is clamped. */
#define DSN_MAX_FULL_DEFAULT (1024u * 1024) /* octets; min 0 (never the whole
					       message), max 64 MiB */
#define DSN_MAX_FULL_MAX (64u * 1024 * 1024)
#define DSN_MAX_HEADERS_DEFAULT (64u * 1024) /* octets; min 1 KiB, max 1 MiB */
#define DSN_MAX_HEADERS_MIN 1024u
#define DSN_MAX_HEADERS_MAX (1024u * 1024)
#define DSN_MAX_DIAGNOSTIC_DEFAULT 512u /* octets; min 32, max 900 */
#define DSN_MAX_DIAGNOSTIC_MIN 32u
#define DSN_MAX_DIAGNOSTIC_MAX 900u
/* Octets of an address (envelope sender, final recipient) the composer
 * takes; a longer one is an error (SMTP paths are at most 256). */
#define DSN_ADDRESS_MAX 512u

struct dsn_report_limits {
	/* RET=FULL returns the whole original only when it is at most this
	 * big; else its header section. Default 1 MiB: far below any
	 * receiver's size limit, so a bounce is never refused for size. */
	size_t max_full;
	/* The returned header section is cut (at a line end) to this many
	 * octets. Default 64 KiB. */
	size_t max_headers;
	/* A Diagnostic-Code text (the remote's reply) is cut to this many
	 * octets. Default 512, at most 900 (one header line). */
	size_t max_diagnostic;
	/* With max_full, 0 means "the default"; set this to return headers
	 * only, always. */
	int never_full;
};

/* The defaults above. */
struct dsn_report_limits dsn_report_limits_default(void);

/* ---- the report ---------------------------------------------------------- */

enum dsn_action {
	DSN_ACTION_FAILED = 0,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,  /* to a system that sends no DSN */
	DSN_ACTION_EXPANDED, /* delivered to a list or alias that expands */
};

/* "failed", "delayed"...; NULL for a value outside the enum. */
const char *dsn_action_name(enum dsn_action action);
/* The NOTIFY event of an action (failed: FAILURE, delayed: DELAY, the
 * rest: SUCCESS). */
enum dsn_event dsn_action_event(enum dsn_action action);

/* One recipient of the report. Strings are NUL-terminated and read
 * during dsn_report_compose() only. */
struct dsn_recipient {
	/* The address the message was for (RCPT TO, without <>); UTF-8 when
	 * the transaction was SMTPUTF8. Required; no control characters. */
	const char *final_recipient;
	/* ORCPT as parsed (dsn-params.h); NULL or kind DSN_ADDR_NONE: none. */
	const struct dsn_orcpt *orcpt;
	enum dsn_action action;
	/* RFC 3463 status "class.subject.detail" (2/4/5, 1-3 digits each).
	 * Required. An expired message is "failed" with the last temporary
	 * status, or 4.4.7 when there was none. */
	const char *status;
	/* The host that answered (a DNS name or [address]); NULL: none. A
	 * value that is not a plausible host name is left out. */
	const char *remote_mta;
	/* The remote's SMTP reply ("550 5.1.1 No such user"); NULL: none.
	 * Controls and 8-bit octets become "?" (line ends a space), and it is
	 * cut to max_diagnostic. */
	const char *diagnostic;
	int64_t last_attempt;     /* seconds since the epoch; 0: none */
	int64_t will_retry_until; /* delayed only: when we give up; 0: none */
	const char *final_log_id; /* our queue id for it; NULL: none */
};

struct dsn_report {
	/* Our host name (a DNS name): Reporting-MTA and the From: domain.
	 * Required. */
	const char *reporting_mta;
	/* The original MAIL FROM (without <>): the report's To:. Must not be
	 * null (dsn_should_send()); UTF-8 allowed (makes the report global). */
	const char *envelope_sender;
	/* RET and ENVID of the original MAIL FROM; NULL: neither. */
	const struct dsn_mail_params *mail_params;
	/* The original transaction used SMTPUTF8. */
	int smtputf8;
	int64_t arrival_date; /* when we accepted the message; 0: none */
	int64_t date;         /* the report's Date: (now), seconds */
	const struct dsn_recipient *rcpts; /* at least one */
	size_t n_rcpts;
	/* The original message as queued (NULL with 0: no third part). */
	const void *original;
	size_t original_len;
	/* Makes Message-ID and boundary (letters, digits, "-", "." only; at
	 * most 64 octets); NULL: 96 random bits. For tests. */
	const char *unique;
};

/* What dsn_report_compose() made (its *flags_r). */
#define DSN_REPORT_8BIT 0x01u         /* 8-bit octets: send with BODY=8BITMIME */
#define DSN_REPORT_SMTPUTF8 0x02u     /* a global report: send with SMTPUTF8 */
#define DSN_REPORT_FULL 0x04u         /* the whole original is in it */
#define DSN_REPORT_FULL_TOO_BIG 0x08u /* RET=FULL, but the original was over
					 max_full: headers only */
#define DSN_REPORT_HEADERS_CUT 0x10u  /* the header section was cut */

/* Compose the report for r (limits NULL: the defaults) and append the
 * message to out. Returns 0, *flags_r (may be NULL) set to DSN_REPORT_*;
 * or -1 with *error_r (static text) when r is unusable: no reporting MTA
 * or not a host name, a null or bad envelope sender, no recipients, a
 * recipient without address, with a bad status or action, an address with
 * control characters, invalid UTF-8 or longer than DSN_ADDRESS_MAX. On
 * error out is left as it was. */
int dsn_report_compose(const struct dsn_report *r, const struct dsn_report_limits *limits,
		       buf *out, unsigned *flags_r, const char **error_r);

/* ---- policy -------------------------------------------------------------- */

/* Should a DSN about event go to envelope_sender for a recipient whose
 * NOTIFY bits are notify (0: absent)? 0 when the sender is the null
 * reverse-path (NULL, "" or "<>"): that is a DSN or another notification
 * itself, and a report about a report could loop (RFC 3464 2, RFC 5321
 * 4.5.5). Any other sender gets one, MAILER-DAEMON@... included: only
 * the null sender is special. Then dsn_notify_wants(). Returns 1 or 0. */
int dsn_should_send(const char *envelope_sender, unsigned notify, enum dsn_event event);

/* When a queued message is due a delay warning or has expired. Seconds.
 * A tenant option turns the warning off (delay_warning 0). */
#define DSN_DELAY_WARNING_DEFAULT (4 * 3600)  /* 4 hours; 0: off */
#define DSN_MAX_LIFETIME_DEFAULT (5 * 86400)  /* 5 days; min 1 hour, max 30 days */
#define DSN_MAX_LIFETIME_MIN 3600
#define DSN_MAX_LIFETIME_MAX (30 * 86400)

struct dsn_timing {
	int64_t delay_warning; /* send one "delayed" report this long after
				  arrival; 0: never */
	int64_t max_lifetime;  /* then "failed" (expired) this long after
				  arrival */
};

/* The defaults above. */
struct dsn_timing dsn_timing_default(void);

enum dsn_due {
	DSN_DUE_NONE = 0,
	DSN_DUE_DELAY_WARNING, /* send the (one) delay report now */
	DSN_DUE_EXPIRED,       /* give up: bounce the recipients still queued */
};

/* What is due for a message that arrived at arrival, at now, given
 * whether its delay warning was already sent. A warning is never due
 * once the message has expired, nor when delay_warning >= max_lifetime.
 * max_lifetime is clamped to [MIN, MAX]. */
enum dsn_due dsn_timing_due(const struct dsn_timing *t, int64_t arrival, int64_t now,
			    int warned);
/* Will-Retry-Until of a delay report: arrival + max_lifetime (clamped). */
int64_t dsn_timing_retry_until(const struct dsn_timing *t, int64_t arrival);

#endif
