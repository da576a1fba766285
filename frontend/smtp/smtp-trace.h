/* smtp-trace.h: what every message we accept gets in its header (issue 10
 * item 6): a Received: trace field (RFC 5321 4.4, RFC 3848 protocol
 * types) on the MX and on submission, and, on submission only, Date: and
 * Message-ID: when the client left them out (RFC 6409 8.2, 8.3).
 *
 * The fields are written before the message as received, which is never
 * modified; the queue id in Received: is the content id the frontend
 * computed from the client's own bytes, so a resend of the same message
 * still gets the same queue id (client/queue-client.h). Pure functions,
 * any thread.
 */
#ifndef MAIL_SMTP_TRACE_H
#define MAIL_SMTP_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* At most this many header bytes are looked at for Date: and Message-ID:
 * (a header section longer than this is not scanned further: the fields
 * are then added, which at worst duplicates one in a pathological
 * message). */
#define SMTP_TRACE_SCAN_MAX (256u * 1024u)

struct smtp_trace_info {
	const char *helo;       /* as the client gave it ("" or NULL: none) */
	const char *peer_ip;    /* "192.0.2.1" or "2001:db8::1" */
	const char *by;         /* our host name */
	const char *queue_id;
	const char *for_rcpt;   /* the one recipient, or NULL (several: none) */
	int tls;                /* the session runs over TLS */
	int authenticated;      /* AUTH succeeded */
	int64_t now_ms;         /* wall clock, ms since the epoch */
};

/* Append "Received: ..." (folded, CRLF-terminated) to out. Characters of
 * helo and for_rcpt that could break the field (controls, spaces,
 * parentheses, brackets, 8-bit) become '?'; each is cut at 255 bytes. */
void smtp_trace_received(buf *out, const struct smtp_trace_info *ti);

/* 1 when the message's header section (before the first empty line; CRLF
 * or LF line ends) has a field named name (case-insensitive, without the
 * colon), 0 otherwise. Looks at most at SMTP_TRACE_SCAN_MAX bytes. */
int smtp_trace_has_field(const uint8_t *msg, size_t len, const char *name);

/* Loops (RFC 5321 6.3; docs/inbound.md). The Received fields of msg's
 * header section (within SMTP_TRACE_SCAN_MAX bytes). */
unsigned smtp_trace_hops(const uint8_t *msg, size_t len);
/* The Delivered-To fields of msg: i + 1 when one names addresses[i]
 * (normalised addresses, compared after util_address_normalize), else 0.
 * A value over SMTP_TRACE_ADDRESS_MAX bytes names no one. */
#define SMTP_TRACE_ADDRESS_MAX 320u
int smtp_trace_delivered_to(const uint8_t *msg, size_t len, const char *const *addresses,
			    size_t n);

/* Submission: append "Date: ..." and "Message-ID: <...@by>" to out for
 * whichever of the two msg lacks. random_hex: 32 hex characters that make
 * the Message-ID unique (the caller draws them). */
void smtp_trace_submission_fields(buf *out, const uint8_t *msg, size_t len, const char *by,
				  const char *random_hex, int64_t now_ms);

/* RFC 5322 date-time of now_ms in UTC ("Wed, 02 Dec 2026 15:07:39 +0000")
 * into out (>= 32 bytes). */
void smtp_trace_date(char *out, size_t size, int64_t now_ms);

#endif
