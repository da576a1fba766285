/* dsn-samples OUTDIR: write a set of reports composed by lib/dsn, one
 * file NAME.eml each, for test-dsn-email.py to read with another parser
 * (Python's email package). The cases and what they must show are listed
 * in that script; the names here and there must agree. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "dsn-params.h"
#include "dsn-report.h"

static const int64_t T0 = 1709287200; /* Fri, 01 Mar 2024 10:00:00 +0000 */

static const char original[] = "Received: from client.example.org by mx.example.net\r\n"
			       "From: Alice <alice@example.org>\r\n"
			       "To: Bob <bob@example.com>, Carol <carol@example.com>\r\n"
			       "Subject: Hello\r\n"
			       "Message-ID: <20240301.1@example.org>\r\n"
			       "Date: Fri, 01 Mar 2024 10:00:00 +0000\r\n"
			       "MIME-Version: 1.0\r\n"
			       "Content-Type: text/plain; charset=us-ascii\r\n"
			       "\r\n"
			       "The body line one.\r\n"
			       "SECRET-BODY-MARKER\r\n";

static const char original_8bit[] = "From: Alice <alice@example.org>\r\n"
				    "To: bob@example.com\r\n"
				    "Subject: caf\xc3\xa9\r\n"
				    "Message-ID: <8bit.1@example.org>\r\n"
				    "MIME-Version: 1.0\r\n"
				    "Content-Type: text/plain; charset=utf-8\r\n"
				    "Content-Transfer-Encoding: 8bit\r\n"
				    "\r\n"
				    "na\xc3\xafve SECRET-BODY-MARKER\r\n";

static const char original_utf8[] = "From: \xe7\x94\xa8\xe6\x88\xb7 <\xe7\x94\xa8\xe6\x88\xb7@example.org>\r\n"
				    "To: \xc3\xa9l\xc3\xa8ve@example.com\r\n"
				    "Subject: \xe4\xbd\xa0\xe5\xa5\xbd\r\n"
				    "Message-ID: <utf8.1@example.org>\r\n"
				    "MIME-Version: 1.0\r\n"
				    "Content-Type: text/plain; charset=utf-8\r\n"
				    "Content-Transfer-Encoding: 8bit\r\n"
				    "\r\n"
				    "\xe4\xbd\xa0\xe5\xa5\xbd SECRET-BODY-MARKER\r\n";

static int write_report(const char *dir, const char *name, const struct dsn_report *r,
			const struct dsn_report_limits *l)
{
	buf b;
	buf_init(&b);
	const char *err;
	unsigned flags;
	if (dsn_report_compose(r, l, &b, &flags, &err) < 0) {
		fprintf(stderr, "%s: %s\n", name, err);
		return -1;
	}
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s.eml", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0) {
		perror(path);
		return -1;
	}
	buf_deinit(&b);
	return 0;
}

static void parse_mail(struct dsn_mail_params *m, const char *text, unsigned flags)
{
	const char *err;
	dsn_mail_params_init(m);
	if (dsn_mail_params_parse(m, text, strlen(text), flags, &err) < 0) {
		fprintf(stderr, "%s: %s\n", text, err);
		exit(1);
	}
}

static void parse_rcpt(struct dsn_rcpt_params *p, const char *text, unsigned flags)
{
	const char *err;
	dsn_rcpt_params_init(p);
	if (dsn_rcpt_params_parse(p, text, strlen(text), flags, &err) < 0) {
		fprintf(stderr, "%s: %s\n", text, err);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: dsn-samples OUTDIR\n");
		return 2;
	}
	const char *dir = argv[1];
	int bad = 0;
	struct dsn_mail_params hdrs, full;
	parse_mail(&hdrs, "RET=HDRS ENVID=QQ314159", 0);
	parse_mail(&full, "RET=FULL ENVID=QQ+2B2718", 0);
	struct dsn_rcpt_params bob, carol;
	parse_rcpt(&bob, "NOTIFY=FAILURE ORCPT=rfc822;Bob@Example.COM", 0);
	parse_rcpt(&carol, "NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;Carol@Example.COM", 0);

	struct dsn_recipient failed[2] = {
		{
			.final_recipient = "bob@example.com",
			.orcpt = &bob.orcpt,
			.action = DSN_ACTION_FAILED,
			.status = "5.1.1",
			.remote_mta = "mx1.example.com",
			.diagnostic = "550 5.1.1 <bob@example.com>: Recipient address rejected: "
				      "User unknown in virtual mailbox table",
			.last_attempt = T0 + 60,
			.final_log_id = "Q1234",
		},
		{
			.final_recipient = "carol@example.com",
			.orcpt = &carol.orcpt,
			.action = DSN_ACTION_FAILED,
			.status = "5.2.2",
			.remote_mta = "mx1.example.com",
			.diagnostic = "552 5.2.2 Mailbox full",
			.last_attempt = T0 + 60,
		},
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &hdrs,
		.arrival_date = T0,
		.date = T0 + 61,
		.rcpts = failed,
		.n_rcpts = 2,
		.original = original,
		.original_len = strlen(original),
		.unique = "sample1",
	};
	bad |= write_report(dir, "failed-hdrs", &r, NULL);

	r.mail_params = &full;
	bad |= write_report(dir, "failed-full", &r, NULL);

	struct dsn_report_limits small = dsn_report_limits_default();
	small.max_full = 100;
	bad |= write_report(dir, "failed-oversize", &r, &small);

	struct dsn_recipient plain = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.4.4",
	};
	struct dsn_report r2 = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.date = T0,
		.rcpts = &plain,
		.n_rcpts = 1,
		.original = original,
		.original_len = strlen(original),
		.unique = "sample2",
	};
	bad |= write_report(dir, "failed-plain", &r2, NULL);
	r2.original = NULL;
	r2.original_len = 0;
	bad |= write_report(dir, "failed-no-original", &r2, NULL);

	struct dsn_recipient delayed[2] = {
		{
			.final_recipient = "bob@example.com",
			.orcpt = &bob.orcpt,
			.action = DSN_ACTION_DELAYED,
			.status = "4.4.1",
			.remote_mta = "mx1.example.com",
			.diagnostic = "421 4.4.1 Try again later",
			.last_attempt = T0 + 4 * 3600,
			.will_retry_until = T0 + 5 * 86400,
		},
		{
			.final_recipient = "carol@example.com",
			.action = DSN_ACTION_DELAYED,
			.status = "4.4.1",
			.last_attempt = T0 + 4 * 3600,
			.will_retry_until = T0 + 5 * 86400,
		},
	};
	r.rcpts = delayed;
	r.date = T0 + 4 * 3600;
	bad |= write_report(dir, "delayed", &r, NULL);

	struct dsn_recipient success[3] = {
		{.final_recipient = "bob@example.com",
		 .orcpt = &bob.orcpt,
		 .action = DSN_ACTION_DELIVERED,
		 .status = "2.0.0"},
		{.final_recipient = "carol@example.com",
		 .orcpt = &carol.orcpt,
		 .action = DSN_ACTION_RELAYED,
		 .status = "2.0.0",
		 .remote_mta = "mx1.example.com",
		 .diagnostic = "250 2.0.0 Ok: queued as 4711"},
		{.final_recipient = "list@example.com",
		 .action = DSN_ACTION_EXPANDED,
		 .status = "2.0.0"},
	};
	r.rcpts = success;
	r.n_rcpts = 3;
	bad |= write_report(dir, "delivered", &r, NULL);

	struct dsn_report r8 = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &full,
		.arrival_date = T0,
		.date = T0 + 61,
		.rcpts = &plain,
		.n_rcpts = 1,
		.original = original_8bit,
		.original_len = strlen(original_8bit),
		.unique = "sample8",
	};
	bad |= write_report(dir, "failed-8bit", &r8, NULL);

	struct dsn_rcpt_params eleve;
	parse_rcpt(&eleve, "ORCPT=utf-8;\xc3\xa9l\xc3\xa8ve@example.com", DSN_PARSE_SMTPUTF8);
	struct dsn_recipient intl = {
		.final_recipient = "\xc3\xa9l\xc3\xa8ve@example.com",
		.orcpt = &eleve.orcpt,
		.action = DSN_ACTION_FAILED,
		.status = "5.1.1",
		.remote_mta = "mx1.example.com",
		.diagnostic = "550 5.1.1 unknown",
	};
	struct dsn_report ru = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "\xe7\x94\xa8\xe6\x88\xb7@example.org",
		.mail_params = &full,
		.smtputf8 = 1,
		.arrival_date = T0,
		.date = T0 + 61,
		.rcpts = &intl,
		.n_rcpts = 1,
		.original = original_utf8,
		.original_len = strlen(original_utf8),
		.unique = "sampleu",
	};
	bad |= write_report(dir, "global-full", &ru, NULL);
	ru.mail_params = &hdrs;
	bad |= write_report(dir, "global-hdrs", &ru, NULL);

	/* hostile: the boundary in the original, bare LFs, long lines, a
	 * diagnostic trying to add header lines */
	buf o;
	buf_init(&o);
	buf_append_str(&o, "From: x@example.org\nSubject: --=_dsn_sampleh\nX-Long: ");
	for (int i = 0; i < 3000; i++)
		buf_append(&o, "h", 1);
	buf_append_str(&o, "\nMessage-ID: <h@example.org>\n\n--=_dsn_sampleh--\nbody ");
	for (int i = 0; i < 2500; i++)
		buf_append(&o, "b", 1);
	struct dsn_recipient evil = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.7.1",
		.remote_mta = "mx1.example.com",
		.diagnostic = "550 5.7.1 no\r\nBcc: victim@example.com\r\n\r\n--=_dsn_sampleh--",
	};
	struct dsn_report rh = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "x@example.org",
		.mail_params = &full,
		.date = T0,
		.rcpts = &evil,
		.n_rcpts = 1,
		.original = o.data,
		.original_len = o.len,
		.unique = "sampleh",
	};
	bad |= write_report(dir, "hostile", &rh, NULL);
	buf_deinit(&o);
	return bad ? 1 : 0;
}
