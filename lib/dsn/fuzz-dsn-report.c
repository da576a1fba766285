/* libFuzzer target: lib/dsn's report composer (dsn-report.h) with
 * hostile inputs: the original message (as queued: any octets), the
 * remote's diagnostic, the remote MTA name, the final log id and the
 * addresses (as the queue might pass them).
 *
 * Input: two control bytes, then NUL-separated fields:
 *   diagnostic \0 remote-mta \0 final-recipient \0 rcpt-params \0
 *   envelope-sender \0 original (the rest, NULs included)
 * control[0]:
 *   bits 0-2  action (values 5-7: two recipients, failed and delayed)
 *   bit 3     RET=FULL (else HDRS)
 *   bit 4     the transaction was SMTPUTF8
 *   bit 5     tight limits (max_full 256, max_headers 1 KiB,
 *             max_diagnostic 32)
 *   bit 6     an ENVID
 *   bit 7     unique token NULL (random)
 * control[1]: the last digits of the status code.
 *
 * Checked: compose fails only for unusable addresses or statuses and
 * then writes nothing; otherwise every line ends in CRLF and has at most
 * 998 octets, the boundary occurs only as delimiters, every line of the
 * delivery-status part is empty, a continuation or an RFC 3464 field we
 * write, and the flags agree with the content.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dsn-params.h"
#include "dsn-report.h"
#include "xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                               \
	do {                                                                                   \
		if (!(x))                                                                      \
			__builtin_trap();                                                      \
	} while (0)

/* The next NUL-terminated field of *p (the rest when there is no NUL). */
static char *field(const uint8_t **p, size_t *left)
{
	const uint8_t *nul = memchr(*p, 0, *left);
	size_t n = nul ? (size_t)(nul - *p) : *left;
	char *s = xstrndup((const char *)*p, n);
	*p += nul ? n + 1 : n;
	*left -= nul ? n + 1 : n;
	return s;
}

static const char *const status_fields[] = {
	"Original-Envelope-Id:", "Reporting-MTA:",    "Arrival-Date:",     "Original-Recipient:",
	"Final-Recipient:",      "Action:",           "Status:",           "Remote-MTA:",
	"Diagnostic-Code:",      "Last-Attempt-Date:", "Final-Log-ID:",    "Will-Retry-Until:",
};

static void check_status_line(const uint8_t *l, size_t n)
{
	if (n == 0 || l[0] == ' ' || l[0] == '\t')
		return;
	for (size_t i = 0; i < sizeof(status_fields) / sizeof(status_fields[0]); i++) {
		size_t k = strlen(status_fields[i]);
		if (n >= k && memcmp(l, status_fields[i], k) == 0)
			return;
	}
	__builtin_trap();
}

static int has_8bit(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] >= 0x80)
			return 1;
	return 0;
}

static void check_output(const buf *b, unsigned flags)
{
	/* lines */
	size_t col = 0;
	for (size_t i = 0; i < b->len; i++) {
		uint8_t c = b->data[i];
		if (c == '\r') {
			CHECK(i + 1 < b->len && b->data[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		CHECK(c != '\n');
		CHECK(++col <= 998);
	}
	CHECK(col == 0);
	/* the boundary */
	const char *msg = (const char *)b->data;
	static const char ct[] = "\r\nContent-Type: multipart/report; "
				 "report-type=delivery-status;\r\n\tboundary=\"";
	const char *p = memmem(msg, b->len, ct, sizeof(ct) - 1);
	CHECK(p != NULL);
	p += sizeof(ct) - 1;
	const char *e = memchr(p, '"', b->len - (size_t)(p - msg));
	CHECK(e != NULL && e > p && e - p <= 70);
	size_t blen = (size_t)(e - p);
	char delim[80];
	delim[0] = '\r', delim[1] = '\n', delim[2] = '-', delim[3] = '-';
	memcpy(delim + 4, p, blen);
	size_t all = 0, delims = 0;
	const uint8_t *parts[4] = {NULL, NULL, NULL, NULL};
	/* in the body (a header value may hold anything) */
	const uint8_t *top = memmem(b->data, b->len, "\r\n\r\n", 4);
	CHECK(top != NULL);
	for (const uint8_t *q = top; (q = memmem(q, b->len - (size_t)(q - b->data), p, blen)); q++)
		all++;
	for (const uint8_t *q = b->data;
	     (q = memmem(q, b->len - (size_t)(q - b->data), delim, blen + 4)); q++) {
		if (delims < 4)
			parts[delims] = q + blen + 4;
		delims++;
	}
	CHECK(all == delims);
	/* 8-bit octets: in the header only in a global report, in the body
	 * only when flagged */
	CHECK(!has_8bit(b->data, (size_t)(top - b->data)) || (flags & DSN_REPORT_SMTPUTF8));
	CHECK(!has_8bit(top, b->len - (size_t)(top - b->data)) || (flags & DSN_REPORT_8BIT));
	CHECK(delims == 3 || delims == 4);
	/* the delivery-status part: its lines after its own header */
	const uint8_t *s = parts[1];
	const uint8_t *end = parts[2] - (blen + 4);
	const uint8_t *body = memmem(s, (size_t)(end - s), "\r\n\r\n", 4);
	CHECK(body != NULL);
	body += 4;
	while (body < end) {
		const uint8_t *nl = memmem(body, (size_t)(end - body), "\r\n", 2);
		size_t n = nl ? (size_t)(nl - body) : (size_t)(end - body);
		check_status_line(body, n);
		body += n + 2;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t c0 = data[0], c1 = data[1];
	const uint8_t *p = data + 2;
	size_t left = size - 2;
	char *diag = field(&p, &left);
	char *remote = field(&p, &left);
	char *final = field(&p, &left);
	char *rparams = field(&p, &left);
	char *sender = field(&p, &left);
	const uint8_t *orig = p;
	size_t olen = left;

	struct dsn_mail_params mp;
	dsn_mail_params_init(&mp);
	mp.ret = (c0 & 0x08) ? DSN_RET_FULL : DSN_RET_HDRS;
	if (c0 & 0x40) {
		mp.has_envid = 1;
		strcpy(mp.envid, "fuzz envid");
	}
	struct dsn_rcpt_params rp;
	dsn_rcpt_params_init(&rp);
	const char *err = NULL;
	if (dsn_rcpt_params_parse(&rp, rparams, strlen(rparams),
				  (c0 & 0x10) ? DSN_PARSE_SMTPUTF8 : 0, &err) < 0)
		dsn_rcpt_params_init(&rp);
	char status[8];
	unsigned action = c0 & 7;
	status[0] = action == DSN_ACTION_FAILED ? '5' : action == DSN_ACTION_DELAYED ? '4' : '2';
	status[1] = '.';
	status[2] = (char)('0' + (c1 & 7));
	status[3] = '.';
	status[4] = (char)('0' + ((c1 >> 3) & 7));
	status[5] = (c1 & 0x40) ? '0' : '\0';
	status[6] = '\0';
	struct dsn_recipient rc[2] = {
		{
			.final_recipient = final,
			.orcpt = &rp.orcpt,
			.action = action < 5 ? (enum dsn_action)action : DSN_ACTION_FAILED,
			.status = status,
			.remote_mta = remote,
			.diagnostic = diag,
			.last_attempt = 1709287200,
			.will_retry_until = 1709287200 + 5 * 86400,
			.final_log_id = diag,
		},
		{
			.final_recipient = "second@example.com",
			.action = DSN_ACTION_DELAYED,
			.status = "4.4.1",
			.will_retry_until = 1709287200 + 5 * 86400,
		},
	};
	if (action >= 5)
		status[0] = '5';
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = sender,
		.mail_params = &mp,
		.smtputf8 = (c0 & 0x10) != 0,
		.arrival_date = 1709287200,
		.date = 1709287260,
		.rcpts = rc,
		.n_rcpts = action >= 5 ? 2 : 1,
		.original = olen ? orig : NULL,
		.original_len = olen,
		.unique = (c0 & 0x80) ? NULL : "fuzz",
	};
	struct dsn_report_limits l = dsn_report_limits_default();
	if (c0 & 0x20) {
		l.max_full = 256;
		l.max_headers = 1; /* clamped to the minimum */
		l.max_diagnostic = 32;
	}
	buf b;
	buf_init(&b);
	unsigned flags = 0;
	int ret = dsn_report_compose(&r, &l, &b, &flags, &err);
	if (ret < 0) {
		CHECK(err != NULL && b.len == 0);
	} else {
		CHECK(ret == 0);
		check_output(&b, flags);
		CHECK(!(flags & DSN_REPORT_FULL) || (mp.ret == DSN_RET_FULL && olen <= l.max_full));
	}
	buf_deinit(&b);
	free(diag);
	free(remote);
	free(final);
	free(rparams);
	free(sender);
	return 0;
}
