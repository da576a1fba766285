/* Unit tests for lib/dsn: xtext and RFC 6533 round trips and errors; the
 * RFC 3461 parameters (its section 8 example, the limits, strictness);
 * formatting back; NOTIFY and null-sender policy; timing; reports for
 * each action with and without ENVID / ORCPT / Remote-MTA, RET=FULL and
 * HDRS, an oversize original, 8-bit and SMTPUTF8 originals, hostile
 * diagnostics and originals (line lengths, CRLF, the boundary).
 * test-dsn-email.py reads the reports with Python's email package. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "dsn-params.h"
#include "dsn-report.h"
#include "xalloc.h"

/* ---- helpers ---- */

/* NUL-terminated copy of b's bytes (the caller frees). */
static char *str_of(const buf *b)
{
	char *s = xmalloc(b->len + 1);
	if (b->len > 0)
		memcpy(s, b->data, b->len);
	s[b->len] = '\0';
	return s;
}

static char *xtext_dec(const char *in, int *ret_r)
{
	buf b;
	buf_init(&b);
	const char *err = NULL;
	*ret_r = dsn_xtext_decode(in, strlen(in), &b, &err);
	if (*ret_r < 0)
		assert_non_null(err);
	char *s = str_of(&b);
	buf_deinit(&b);
	return s;
}

static int mail_parse(struct dsn_mail_params *p, const char *text, unsigned flags)
{
	const char *err = NULL;
	int ret = dsn_mail_params_parse(p, text, strlen(text), flags, &err);
	if (ret < 0)
		assert_non_null(err);
	return ret;
}

static int rcpt_parse(struct dsn_rcpt_params *p, const char *text, unsigned flags)
{
	const char *err = NULL;
	int ret = dsn_rcpt_params_parse(p, text, strlen(text), flags, &err);
	if (ret < 0)
		assert_non_null(err);
	return ret;
}

static int rcpt_one(const char *text, unsigned flags)
{
	struct dsn_rcpt_params p;
	dsn_rcpt_params_init(&p);
	return rcpt_parse(&p, text, flags);
}

static int mail_one(const char *text)
{
	struct dsn_mail_params p;
	dsn_mail_params_init(&p);
	return mail_parse(&p, text, 0);
}

/* ---- xtext ---- */

static void test_xtext(void **state)
{
	(void)state;
	int ret;
	char *s = xtext_dec("abc+2Bdef+3D+20x", &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(s, "abc+def= x");
	free(s);
	s = xtext_dec("", &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(s, "");
	free(s);
	static const char *const bad[] = {
		"+2b",   /* lower-case hex */
		"+2",    /* truncated */
		"a+",    /* truncated */
		"+G1",   /* not hex */
		"a=b",   /* "=" is not an xchar */
		"a b",   /* nor is a space */
		"a\x7f", /* nor DEL */
		"\xc3\xa9",
		"a\tb",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = xtext_dec(bad[i], &ret);
		assert_int_equal(ret, -1);
		free(s);
	}

	/* every octet survives encode + decode; the encoding is xtext */
	uint8_t all[256];
	for (int i = 0; i < 256; i++)
		all[i] = (uint8_t)i;
	buf e, d;
	buf_init(&e);
	buf_init(&d);
	dsn_xtext_encode(all, sizeof(all), &e);
	for (size_t i = 0; i < e.len; i++)
		assert_true(e.data[i] >= '!' && e.data[i] <= '~' && e.data[i] != '=');
	const char *err;
	assert_int_equal(dsn_xtext_decode((const char *)e.data, e.len, &d, &err), 0);
	assert_int_equal(d.len, 256);
	assert_memory_equal(d.data, all, 256);
	buf_reset(&e);
	dsn_xtext_encode("a+b=c d", 7, &e);
	s = str_of(&e);
	assert_string_equal(s, "a+2Bb+3Dc+20d");
	free(s);
	buf_deinit(&e);
	buf_deinit(&d);
}

/* ---- RFC 6533 utf-8 addresses ---- */

static int u8dec(const char *in, unsigned flags, char **out_r)
{
	buf b;
	buf_init(&b);
	const char *err = NULL;
	int ret = dsn_utf8_addr_decode(in, strlen(in), flags, &b, &err);
	if (ret < 0)
		assert_non_null(err);
	*out_r = str_of(&b);
	buf_deinit(&b);
	return ret;
}

static void test_utf8_addr(void **state)
{
	(void)state;
	char *s;
	assert_int_equal(u8dec("\\x{E9}l\\x{E8}ve@\\x{E9}cole.example", 0, &s), 0);
	assert_string_equal(s, "\xc3\xa9l\xc3\xa8ve@\xc3\xa9""cole.example");
	free(s);
	assert_int_equal(u8dec("\\x{e9}a", 0, &s), 0); /* hex letters in either case */
	assert_string_equal(s, "\xc3\xa9""a");
	free(s);
	assert_int_equal(u8dec("a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e", 0, &s), 0);
	assert_string_equal(s, "a+b=c\\d e");
	free(s);
	assert_int_equal(u8dec("\\x{1F600}@x\\x{10FFFF}", 0, &s), 0);
	assert_string_equal(s, "\xf0\x9f\x98\x80@x\xf4\x8f\xbf\xbf");
	free(s);
	assert_int_equal(u8dec("\\x{4E2D}", 0, &s), 0);
	assert_string_equal(s, "\xe4\xb8\xad");
	free(s);
	/* unitext: raw UTF-8 only with SMTPUTF8 */
	assert_int_equal(u8dec("\xc3\xa9l\xc3\xa8ve@x", 0, &s), -1);
	free(s);
	assert_int_equal(u8dec("\xc3\xa9l\xc3\xa8ve@x", DSN_PARSE_SMTPUTF8, &s), 0);
	assert_string_equal(s, "\xc3\xa9l\xc3\xa8ve@x");
	free(s);
	static const char *const bad[] = {
		"",
		"\\x{41}",     /* printable ASCII may not be escaped */
		"\\x{0E9}",    /* not the shortest form */
		"\\x{00E9}",   /* nor this */
		"\\x{E}",      /* one digit */
		"\\x{D800}",   /* surrogate */
		"\\x{110000}", /* beyond Unicode */
		"\\x{1000000}",
		"\\x{E9",      /* unterminated */
		"\\x{}",
		"\\y{E9}",
		"\\x(E9)",
		"\\",
		"a\\b",
		"a+2Bb",       /* "+" is not a QCHAR */
		"a=b",
		"a b",
		"\\x{0A}",     /* decodes to a control */
		"\\x{7F}",
		"\\x{00}",
		"\\x{G1}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(u8dec(bad[i], DSN_PARSE_SMTPUTF8, &s), -1);
		free(s);
	}
	/* malformed raw UTF-8, even with SMTPUTF8 */
	static const char *const badraw[] = {"\xc0\x80", "\xed\xa0\x80", "\xc3", "\xf5\x80\x80\x80",
					     "\x80"};
	for (size_t i = 0; i < sizeof(badraw) / sizeof(badraw[0]); i++) {
		assert_int_equal(u8dec(badraw[i], DSN_PARSE_SMTPUTF8, &s), -1);
		free(s);
	}

	/* encode: xtext form is 7-bit, unitext keeps UTF-8; both decode back */
	const char *addr = "\xc3\xa9l\xc3\xa8ve+x=y\\z \xf0\x9f\x98\x80@\xe4\xb8\xad.example";
	for (int unitext = 0; unitext < 2; unitext++) {
		buf e;
		buf_init(&e);
		dsn_utf8_addr_encode(addr, strlen(addr), unitext, &e);
		char *enc = str_of(&e);
		if (!unitext) {
			for (size_t i = 0; i < e.len; i++)
				assert_true(e.data[i] > 0x20 && e.data[i] < 0x7f);
			assert_string_equal(enc, "\\x{E9}l\\x{E8}ve\\x{2B}x\\x{3D}y\\x{5C}z\\x{20}"
						 "\\x{1F600}@\\x{4E2D}.example");
		}
		assert_int_equal(u8dec(enc, unitext ? DSN_PARSE_SMTPUTF8 : 0, &s), 0);
		assert_string_equal(s, addr);
		free(s);
		free(enc);
		buf_deinit(&e);
	}
}

/* ---- the parameters ---- */

/* RFC 3461 section 8's example transaction. */
static void test_rfc3461_example(void **state)
{
	(void)state;
	struct dsn_mail_params m;
	dsn_mail_params_init(&m);
	assert_int_equal(mail_parse(&m, "RET=HDRS ENVID=QQ314159", 0), 2);
	assert_int_equal(m.ret, DSN_RET_HDRS);
	assert_int_equal(m.has_envid, 1);
	assert_string_equal(m.envid, "QQ314159");

	static const struct {
		const char *params;
		unsigned notify;
		const char *orcpt;
	} rcpts[] = {
		{"NOTIFY=SUCCESS ORCPT=rfc822;Bob@Example.COM", DSN_NOTIFY_SUCCESS,
		 "Bob@Example.COM"},
		{"NOTIFY=FAILURE ORCPT=rfc822;Carol@Ivory.EDU", DSN_NOTIFY_FAILURE,
		 "Carol@Ivory.EDU"},
		{"NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Dana@Ivory.EDU",
		 DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, "Dana@Ivory.EDU"},
		{"NOTIFY=FAILURE ORCPT=rfc822;Eric@Bombs.AF.MIL", DSN_NOTIFY_FAILURE,
		 "Eric@Bombs.AF.MIL"},
		{"NOTIFY=NEVER", DSN_NOTIFY_NEVER, NULL},
		{"NOTIFY=FAILURE ORCPT=rfc822;George@Tax-ME.GOV", DSN_NOTIFY_FAILURE,
		 "George@Tax-ME.GOV"},
	};
	for (size_t i = 0; i < sizeof(rcpts) / sizeof(rcpts[0]); i++) {
		struct dsn_rcpt_params r;
		dsn_rcpt_params_init(&r);
		assert_int_equal(rcpt_parse(&r, rcpts[i].params, 0), rcpts[i].orcpt ? 2 : 1);
		assert_int_equal(r.notify, rcpts[i].notify);
		if (rcpts[i].orcpt) {
			assert_int_equal(r.orcpt.kind, DSN_ADDR_RFC822);
			assert_string_equal(r.orcpt.type, "rfc822");
			assert_string_equal(r.orcpt.addr, rcpts[i].orcpt);
		} else {
			assert_int_equal(r.orcpt.kind, DSN_ADDR_NONE);
		}
	}
}

static void test_notify(void **state)
{
	(void)state;
	struct dsn_rcpt_params r;
	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "notify=delay,Success", 0), 1);
	assert_int_equal(r.notify, DSN_NOTIFY_DELAY | DSN_NOTIFY_SUCCESS);
	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "NOTIFY=SUCCESS,FAILURE,DELAY", 0), 1);
	assert_int_equal(r.notify, DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE | DSN_NOTIFY_DELAY);
	static const char *const bad[] = {
		"NOTIFY=NEVER,SUCCESS", "NOTIFY=FAILURE,NEVER", "NOTIFY=SUCCESS,SUCCESS",
		"NOTIFY=SUCCESS,",      "NOTIFY=,FAILURE",      "NOTIFY",
		"NOTIFY=FOO",           "NOTIFY=SUCCESS,,DELAY", "NOTIFY=SUCCESS NOTIFY=DELAY",
		"NOTIFY=NEVER NOTIFY=NEVER", "NOTIFY=SUCCES",  "NOTIFY=SUCCESSX",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rcpt_one(bad[i], 0), -1);
	/* the per-parameter entry: an error leaves *p as it was */
	const char *err = NULL;
	dsn_rcpt_params_init(&r);
	assert_int_equal(dsn_rcpt_param_parse(&r, "NOTIFY", 6, "NEVER,DELAY", 11, 0, &err), -1);
	assert_non_null(err);
	assert_int_equal(r.notify, 0);
	/* not ours: 0 */
	assert_int_equal(dsn_rcpt_param_parse(&r, "RET", 3, "FULL", 4, 0, &err), 0);
	assert_int_equal(dsn_rcpt_param_parse(&r, "SIZE", 4, "10", 2, 0, &err), 0);
	assert_int_equal(dsn_mail_param_parse(NULL, "NOTIFY", 6, "NEVER", 5, 0, &err), 0);
}

static void test_ret_envid(void **state)
{
	(void)state;
	struct dsn_mail_params m;
	dsn_mail_params_init(&m);
	assert_int_equal(mail_parse(&m, "ret=full", 0), 1);
	assert_int_equal(m.ret, DSN_RET_FULL);
	dsn_mail_params_init(&m);
	assert_int_equal(mail_parse(&m, "SIZE=1000 RET=Hdrs BODY=8BITMIME ENVID=a+2Bb+20c", 0), 2);
	assert_int_equal(m.ret, DSN_RET_HDRS);
	assert_string_equal(m.envid, "a+b c");

	char envid[DSN_ENVID_MAX + 2 + 6];
	memcpy(envid, "ENVID=", 6);
	memset(envid + 6, 'x', DSN_ENVID_MAX);
	envid[6 + DSN_ENVID_MAX] = '\0';
	dsn_mail_params_init(&m);
	assert_int_equal(mail_parse(&m, envid, 0), 1);
	assert_int_equal(strlen(m.envid), DSN_ENVID_MAX);
	envid[6 + DSN_ENVID_MAX] = 'x';
	envid[6 + DSN_ENVID_MAX + 1] = '\0';
	assert_int_equal(mail_one(envid), -1); /* 101 */

	static const char *const bad[] = {
		"RET=ALL",   "RET",         "RET=FULL RET=FULL", "RET=FULL RET=HDRS",
		"ENVID",     "ENVID=a+2b",  "ENVID=a+00",        "ENVID=a+0D+0Ab",
		"ENVID=x ENVID=y",          "ENVID=a+7F",        "ENVID=+C3+A9",
		"RET=FULL =x",              "RET=FULL=x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(mail_one(bad[i]), -1);
	/* a tab is white space: printable in RFC 3461's sense */
	assert_int_equal(mail_one("ENVID=a+09b"), 1);
	/* not DSN parameters of MAIL: skipped by the text parser */
	assert_int_equal(mail_one("NOTIFY=NEVER ORCPT=rfc822;a@b"), 0);
}

static void test_orcpt(void **state)
{
	(void)state;
	struct dsn_rcpt_params r;
	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "ORCPT=RFC822;a+2Bb@Example.COM", 0), 1);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_RFC822);
	assert_string_equal(r.orcpt.type, "rfc822");
	assert_string_equal(r.orcpt.addr, "a+b@Example.COM");

	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "ORCPT=x400;/C+3DUS/O+3DExample/S+3DBob/", 0), 1);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_OTHER);
	assert_string_equal(r.orcpt.type, "x400");
	assert_string_equal(r.orcpt.addr, "/C=US/O=Example/S=Bob/");

	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "ORCPT=utf-8;\\x{E9}l\\x{E8}ve@example.com", 0), 1);
	assert_int_equal(r.orcpt.kind, DSN_ADDR_UTF8);
	assert_string_equal(r.orcpt.addr, "\xc3\xa9l\xc3\xa8ve@example.com");
	dsn_rcpt_params_init(&r);
	assert_int_equal(rcpt_parse(&r, "ORCPT=UTF-8;\xc3\xa9l\xc3\xa8ve@example.com",
				    DSN_PARSE_SMTPUTF8),
			 1);
	assert_string_equal(r.orcpt.addr, "\xc3\xa9l\xc3\xa8ve@example.com");
	assert_int_equal(rcpt_one("ORCPT=utf-8;\xc3\xa9l\xc3\xa8ve@example.com", 0), -1);

	/* 500 octets as sent, not 501 */
	char o[6 + DSN_ORCPT_MAX + 2];
	memcpy(o, "ORCPT=rfc822;", 13);
	memset(o + 13, 'a', DSN_ORCPT_MAX - 7);
	o[6 + DSN_ORCPT_MAX] = '\0';
	assert_int_equal(rcpt_one(o, 0), 1);
	o[6 + DSN_ORCPT_MAX] = 'a';
	o[6 + DSN_ORCPT_MAX + 1] = '\0';
	assert_int_equal(rcpt_one(o, 0), -1);

	static const char *const bad[] = {
		"ORCPT",
		"ORCPT=rfc822",       /* no ";" */
		"ORCPT=;a@b",         /* no addr-type */
		"ORCPT=rfc822;",      /* no address */
		"ORCPT=rf(c);a@b",    /* addr-type is an atom */
		"ORCPT=rfc822;a+2b@b", /* lower-case hex */
		"ORCPT=rfc822;a+0D+0ABcc:x@b", /* CR LF decoded */
		"ORCPT=rfc822;a+09b@c",        /* a tab in an address */
		"ORCPT=rfc822;a+C3+A9@b",      /* 8-bit in rfc822 */
		"ORCPT=rfc822;a@b ORCPT=rfc822;a@b",
		"ORCPT=utf-8;\\x{41}@b",
		"ORCPT=utf-8;a\\x{0D}\\x{0A}@b",
		"ORCPT=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;a@b", /* 33-octet addr-type */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(rcpt_one(bad[i], DSN_PARSE_SMTPUTF8), -1);
}

static void test_text_syntax(void **state)
{
	(void)state;
	assert_int_equal(mail_one(""), 0);
	assert_int_equal(mail_one("   "), 0);
	assert_int_equal(mail_one("RET="), -1);
	assert_int_equal(mail_one("=FULL"), -1);
	assert_int_equal(mail_one("RET=FULL=HDRS"), -1);
	assert_int_equal(mail_one("  RET=FULL   ENVID=x  "), 2);
}

static char *format_rcpt(const char *params, unsigned pflags, unsigned fflags, int *ret_r)
{
	struct dsn_rcpt_params r;
	dsn_rcpt_params_init(&r);
	assert_true(rcpt_parse(&r, params, pflags) >= 0);
	buf b;
	buf_init(&b);
	*ret_r = dsn_rcpt_params_format(&r, fflags, &b);
	char *s = str_of(&b);
	buf_deinit(&b);
	return s;
}

static void test_format(void **state)
{
	(void)state;
	struct dsn_mail_params m;
	dsn_mail_params_init(&m);
	assert_int_equal(mail_parse(&m, "ENVID=QQ+2B31+3D4159+20x RET=hdrs", 0), 2);
	buf b;
	buf_init(&b);
	dsn_mail_params_format(&m, &b);
	char *s = str_of(&b);
	assert_string_equal(s, " RET=HDRS ENVID=QQ+2B31+3D4159+20x");
	free(s);
	buf_reset(&b);
	dsn_mail_params_init(&m);
	dsn_mail_params_format(&m, &b);
	assert_int_equal(b.len, 0);
	buf_deinit(&b);

	int ret;
	s = format_rcpt("ORCPT=rfc822;Bob@Example.COM NOTIFY=delay,success", 0, 0, &ret);
	assert_int_equal(ret, 0);
	assert_string_equal(s, " NOTIFY=SUCCESS,DELAY ORCPT=rfc822;Bob@Example.COM");
	free(s);
	s = format_rcpt("NOTIFY=NEVER", 0, 0, &ret);
	assert_string_equal(s, " NOTIFY=NEVER");
	free(s);
	s = format_rcpt("ORCPT=rfc822;a+2B+41@b", 0, 0, &ret);
	assert_string_equal(s, " ORCPT=rfc822;a+2BA@b");
	free(s);
	s = format_rcpt("ORCPT=utf-8;\xc3\xa9@b", DSN_PARSE_SMTPUTF8, 0, &ret);
	assert_string_equal(s, " ORCPT=utf-8;\\x{E9}@b");
	free(s);
	s = format_rcpt("ORCPT=utf-8;\\x{E9}@b", 0, DSN_FORMAT_SMTPUTF8, &ret);
	assert_string_equal(s, " ORCPT=utf-8;\xc3\xa9@b");
	free(s);

	/* a unitext ORCPT that outgrows 500 octets as utf-8-addr-xtext: left out */
	buf p;
	buf_init(&p);
	buf_append_str(&p, "NOTIFY=FAILURE ORCPT=utf-8;");
	for (int i = 0; i < 120; i++)
		buf_append_str(&p, "\xe4\xb8\xad");
	buf_append_str(&p, "@b");
	char *params = str_of(&p);
	s = format_rcpt(params, DSN_PARSE_SMTPUTF8, 0, &ret);
	assert_int_equal(ret, -1);
	assert_string_equal(s, " NOTIFY=FAILURE");
	free(s);
	s = format_rcpt(params, DSN_PARSE_SMTPUTF8, DSN_FORMAT_SMTPUTF8, &ret);
	assert_int_equal(ret, 0);
	free(s);
	free(params);
	buf_deinit(&p);
}

static void test_policy(void **state)
{
	(void)state;
	/* NOTIFY absent: failure and delay */
	assert_true(dsn_notify_wants(0, DSN_EVENT_FAILURE));
	assert_true(dsn_notify_wants(0, DSN_EVENT_DELAY));
	assert_false(dsn_notify_wants(0, DSN_EVENT_SUCCESS));
	assert_false(dsn_notify_wants(DSN_NOTIFY_NEVER, DSN_EVENT_FAILURE));
	assert_false(dsn_notify_wants(DSN_NOTIFY_NEVER, DSN_EVENT_DELAY));
	assert_true(dsn_notify_wants(DSN_NOTIFY_SUCCESS, DSN_EVENT_SUCCESS));
	assert_false(dsn_notify_wants(DSN_NOTIFY_SUCCESS, DSN_EVENT_FAILURE));
	assert_false(dsn_notify_wants(DSN_NOTIFY_FAILURE, DSN_EVENT_DELAY));
	assert_true(dsn_notify_wants(DSN_NOTIFY_DELAY, DSN_EVENT_DELAY));

	/* never a report to the null sender; MAILER-DAEMON is an address */
	assert_false(dsn_should_send("", 0, DSN_EVENT_FAILURE));
	assert_false(dsn_should_send("<>", 0, DSN_EVENT_FAILURE));
	assert_false(dsn_should_send(NULL, DSN_NOTIFY_SUCCESS, DSN_EVENT_SUCCESS));
	assert_true(dsn_should_send("MAILER-DAEMON@example.org", 0, DSN_EVENT_FAILURE));
	assert_true(dsn_should_send("a@example.org", 0, DSN_EVENT_DELAY));
	assert_false(dsn_should_send("a@example.org", DSN_NOTIFY_NEVER, DSN_EVENT_FAILURE));
	assert_false(dsn_should_send("a@example.org", 0, DSN_EVENT_SUCCESS));

	assert_int_equal(dsn_action_event(DSN_ACTION_FAILED), DSN_EVENT_FAILURE);
	assert_int_equal(dsn_action_event(DSN_ACTION_DELAYED), DSN_EVENT_DELAY);
	assert_int_equal(dsn_action_event(DSN_ACTION_RELAYED), DSN_EVENT_SUCCESS);
	assert_string_equal(dsn_action_name(DSN_ACTION_EXPANDED), "expanded");
	assert_null(dsn_action_name((enum dsn_action)99));
}

static void test_timing(void **state)
{
	(void)state;
	struct dsn_timing t = dsn_timing_default();
	int64_t a = 1700000000;
	assert_int_equal(t.delay_warning, 4 * 3600);
	assert_int_equal(t.max_lifetime, 5 * 86400);
	assert_int_equal(dsn_timing_due(&t, a, a + 4 * 3600 - 1, 0), DSN_DUE_NONE);
	assert_int_equal(dsn_timing_due(&t, a, a + 4 * 3600, 0), DSN_DUE_DELAY_WARNING);
	assert_int_equal(dsn_timing_due(&t, a, a + 4 * 3600, 1), DSN_DUE_NONE);
	assert_int_equal(dsn_timing_due(&t, a, a + 5 * 86400 - 1, 1), DSN_DUE_NONE);
	assert_int_equal(dsn_timing_due(&t, a, a + 5 * 86400, 0), DSN_DUE_EXPIRED);
	assert_int_equal(dsn_timing_retry_until(&t, a), a + 5 * 86400);
	t.delay_warning = 0; /* the tenant turned the warning off */
	assert_int_equal(dsn_timing_due(&t, a, a + 86400, 0), DSN_DUE_NONE);
	t.max_lifetime = 10; /* clamped to an hour */
	assert_int_equal(dsn_timing_due(&t, a, a + 3599, 0), DSN_DUE_NONE);
	assert_int_equal(dsn_timing_due(&t, a, a + 3600, 0), DSN_DUE_EXPIRED);
}

/* ---- reports ---- */

static const char original[] = "Received: from client.example.org by mx.example.net\r\n"
			       "From: Alice <alice@example.org>\r\n"
			       "To: Bob <bob@example.com>\r\n"
			       "Subject: Hello\r\n"
			       "Message-ID: <20240301.1@example.org>\r\n"
			       "Date: Fri, 01 Mar 2024 10:00:00 +0000\r\n"
			       "\r\n"
			       "The body line one.\r\n"
			       "SECRET-BODY-MARKER\r\n";

static const int64_t T0 = 1709287200; /* Fri, 01 Mar 2024 10:00:00 +0000 */

/* Every line ends in CRLF and has at most 998 octets before it; no NUL. */
static void check_lines(const buf *b)
{
	size_t col = 0;
	for (size_t i = 0; i < b->len; i++) {
		uint8_t c = b->data[i];
		assert_true(c != 0);
		if (c == '\r') {
			assert_true(i + 1 < b->len && b->data[i + 1] == '\n');
			i++;
			col = 0;
			continue;
		}
		assert_true(c != '\n'); /* a bare LF */
		col++;
		assert_true(col <= 998);
	}
	assert_int_equal(col, 0); /* ends with CRLF */
}

/* The boundary, from the top Content-Type (the caller frees). */
static char *boundary_of(const char *msg)
{
	const char *p = strstr(msg, "boundary=\"");
	assert_non_null(p);
	p += 10;
	const char *e = strchr(p, '"');
	assert_non_null(e);
	return xstrndup(p, (size_t)(e - p));
}

struct composed {
	char *msg;
	size_t len;
	unsigned flags;
};

static struct composed compose(const struct dsn_report *r, const struct dsn_report_limits *l)
{
	struct composed c;
	buf b;
	buf_init(&b);
	const char *err = NULL;
	int ret = dsn_report_compose(r, l, &b, &c.flags, &err);
	if (ret != 0)
		fail_msg("compose: %s", err);
	check_lines(&b);
	c.len = b.len;
	c.msg = str_of(&b);
	assert_int_equal(strlen(c.msg), c.len);
	/* the boundary occurs only as delimiters (and in its parameter) */
	char *bnd = boundary_of(c.msg);
	size_t n = 0;
	for (const char *p = strstr(c.msg, bnd); p; p = strstr(p + 1, bnd))
		n++;
	size_t delims = 0;
	char *d = xasprintf("\r\n--%s", bnd);
	for (const char *p = strstr(c.msg, d); p; p = strstr(p + 1, d))
		delims++;
	assert_int_equal(n, delims + 1);
	assert_true(delims >= 3);
	free(d);
	free(bnd);
	buf_deinit(&b);
	return c;
}

static void has(const struct composed *c, const char *s)
{
	if (strstr(c->msg, s) == NULL) {
		fprintf(stderr, "%s\n", c->msg);
		fail_msg("missing \"%s\"", s);
	}
}

static void hasnt(const struct composed *c, const char *s)
{
	if (strstr(c->msg, s) != NULL) {
		fprintf(stderr, "%s\n", c->msg);
		fail_msg("unexpected \"%s\"", s);
	}
}

static void test_report_failed(void **state)
{
	(void)state;
	struct dsn_mail_params mp;
	dsn_mail_params_init(&mp);
	assert_int_equal(mail_parse(&mp, "RET=HDRS ENVID=QQ314159", 0), 2);
	struct dsn_rcpt_params rp;
	dsn_rcpt_params_init(&rp);
	assert_int_equal(rcpt_parse(&rp, "ORCPT=rfc822;Bob@Example.COM", 0), 1);
	struct dsn_recipient rc = {
		.final_recipient = "bob@example.com",
		.orcpt = &rp.orcpt,
		.action = DSN_ACTION_FAILED,
		.status = "5.1.1",
		.remote_mta = "mx1.example.com",
		.diagnostic = "550 5.1.1 <bob@example.com>: Recipient address rejected",
		.last_attempt = T0 + 60,
		.final_log_id = "Q1234",
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &mp,
		.arrival_date = T0,
		.date = T0 + 61,
		.rcpts = &rc,
		.n_rcpts = 1,
		.original = original,
		.original_len = strlen(original),
		.unique = "u1",
	};
	struct composed c = compose(&r, NULL);
	has(&c, "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n");
	has(&c, "\r\nTo: <alice@example.org>\r\n");
	has(&c, "\r\nSubject: Undelivered Mail Returned to Sender\r\n");
	has(&c, "\r\nDate: Fri, 01 Mar 2024 10:01:01 +0000\r\n");
	has(&c, "\r\nMessage-ID: <dsn.u1@mx.example.net>\r\n");
	has(&c, "\r\nIn-Reply-To: <20240301.1@example.org>\r\n");
	has(&c, "\r\nAuto-Submitted: auto-replied\r\n");
	has(&c, "\r\nMIME-Version: 1.0\r\n");
	has(&c, "Content-Type: multipart/report; report-type=delivery-status;\r\n"
		"\tboundary=\"=_dsn_u1\"\r\n");
	has(&c, "Content-Type: message/delivery-status\r\n");
	has(&c, "\r\n\r\nOriginal-Envelope-Id: QQ314159\r\nReporting-MTA: dns; mx.example.net\r\n"
		"Arrival-Date: Fri, 01 Mar 2024 10:00:00 +0000\r\n\r\n"
		"Original-Recipient: rfc822; Bob@Example.COM\r\n"
		"Final-Recipient: rfc822; bob@example.com\r\n"
		"Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; mx1.example.com\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address "
		"rejected\r\nLast-Attempt-Date: Fri, 01 Mar 2024 10:01:00 +0000\r\n"
		"Final-Log-ID: Q1234\r\n");
	hasnt(&c, "Will-Retry-Until");
	has(&c, "Content-Type: text/rfc822-headers\r\n");
	has(&c, "\r\nSubject: Hello\r\n");
	hasnt(&c, "SECRET-BODY-MARKER"); /* RET=HDRS */
	hasnt(&c, "Content-Transfer-Encoding");
	has(&c, "The mail server mx1.example.com answered: 550 5.1.1");
	assert_int_equal(c.flags, 0);
	free(c.msg);

	/* no ENVID, no ORCPT, no Remote-MTA, no diagnostic, no original */
	struct dsn_recipient rc2 = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.4.4",
	};
	r.mail_params = NULL;
	r.rcpts = &rc2;
	r.original = NULL;
	r.original_len = 0;
	r.arrival_date = 0;
	c = compose(&r, NULL);
	hasnt(&c, "Original-Envelope-Id");
	hasnt(&c, "Original-Recipient");
	hasnt(&c, "Remote-MTA");
	hasnt(&c, "Diagnostic-Code");
	hasnt(&c, "Arrival-Date");
	hasnt(&c, "rfc822-headers");
	hasnt(&c, "In-Reply-To");
	has(&c, "\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
		"Final-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.4.4\r\n");
	free(c.msg);

	/* an ENVID of white space is not folded into a blank line */
	struct dsn_mail_params sp;
	dsn_mail_params_init(&sp);
	buf e;
	buf_init(&e);
	buf_append_str(&e, "ENVID=a");
	for (int i = 0; i < 33; i++)
		buf_append_str(&e, "+20");
	buf_append(&e, "", 1);
	assert_int_equal(mail_parse(&sp, (const char *)e.data, 0), 1);
	buf_deinit(&e);
	r.mail_params = &sp;
	c = compose(&r, NULL);
	has(&c, "\r\nOriginal-Envelope-Id: a                                 \r\n");
	free(c.msg);
	r.mail_params = NULL;

	/* a remote MTA name that is not one is left out */
	rc2.remote_mta = "mx.example.com\r\nX-Evil: 1";
	c = compose(&r, NULL);
	hasnt(&c, "Remote-MTA");
	hasnt(&c, "X-Evil");
	free(c.msg);
}

static void test_report_full(void **state)
{
	(void)state;
	struct dsn_mail_params mp;
	dsn_mail_params_init(&mp);
	assert_int_equal(mail_parse(&mp, "RET=FULL", 0), 1);
	struct dsn_recipient rc = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.2.2",
		.diagnostic = "552 5.2.2 Mailbox full",
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &mp,
		.date = T0,
		.rcpts = &rc,
		.n_rcpts = 1,
		.original = original,
		.original_len = strlen(original),
		.unique = "u2",
	};
	struct composed c = compose(&r, NULL);
	has(&c, "Content-Type: message/rfc822\r\nContent-Description: Undelivered Message\r\n"
		"\r\nReceived: from client.example.org");
	has(&c, "SECRET-BODY-MARKER\r\n");
	has(&c, "The answer was: 552 5.2.2 Mailbox full");
	assert_int_equal(c.flags, DSN_REPORT_FULL);
	free(c.msg);

	/* over max_full: the header only, and says so */
	struct dsn_report_limits l = dsn_report_limits_default();
	l.max_full = 100;
	c = compose(&r, &l);
	has(&c, "Content-Type: text/rfc822-headers\r\n");
	hasnt(&c, "SECRET-BODY-MARKER");
	assert_int_equal(c.flags, DSN_REPORT_FULL_TOO_BIG);
	free(c.msg);
	l.max_full = 0;
	l.never_full = 1;
	c = compose(&r, &l);
	hasnt(&c, "SECRET-BODY-MARKER");
	free(c.msg);

	/* RET=FULL is about failures: a delay report has headers only */
	rc.action = DSN_ACTION_DELAYED;
	rc.status = "4.4.1";
	rc.will_retry_until = T0 + 5 * 86400;
	c = compose(&r, NULL);
	has(&c, "\r\nSubject: Delayed Mail (still being retried)\r\n");
	has(&c, "Action: delayed\r\nStatus: 4.4.1\r\n");
	has(&c, "Will-Retry-Until: Wed, 06 Mar 2024 10:00:00 +0000\r\n");
	has(&c, "10:00:00 +0000. You do not need to send the message again.");
	has(&c, "Content-Type: text/rfc822-headers\r\n");
	hasnt(&c, "SECRET-BODY-MARKER");
	free(c.msg);
}

static void test_report_success(void **state)
{
	(void)state;
	static const struct {
		enum dsn_action action;
		const char *name;
	} cases[] = {
		{DSN_ACTION_DELIVERED, "delivered"},
		{DSN_ACTION_RELAYED, "relayed"},
		{DSN_ACTION_EXPANDED, "expanded"},
	};
	for (size_t i = 0; i < 3; i++) {
		struct dsn_recipient rc = {
			.final_recipient = "bob@example.com",
			.action = cases[i].action,
			.status = "2.0.0",
			.remote_mta = "mx1.example.com",
			.diagnostic = "250 2.0.0 Ok: queued as 4711",
		};
		struct dsn_report r = {
			.reporting_mta = "mx.example.net",
			.envelope_sender = "alice@example.org",
			.date = T0,
			.rcpts = &rc,
			.n_rcpts = 1,
			.original = original,
			.original_len = strlen(original),
			.unique = "u3",
		};
		struct composed c = compose(&r, NULL);
		has(&c, "\r\nSubject: Successful Mail Delivery Report\r\n");
		char *a = xasprintf("\r\nAction: %s\r\nStatus: 2.0.0\r\n", cases[i].name);
		has(&c, a);
		free(a);
		has(&c, "Content-Description: Message Headers\r\n");
		free(c.msg);
	}

	/* several recipients: the subject follows the worst */
	struct dsn_recipient rcs[3] = {
		{.final_recipient = "a@example.com", .action = DSN_ACTION_DELIVERED,
		 .status = "2.0.0"},
		{.final_recipient = "b@example.com", .action = DSN_ACTION_DELAYED, .status = "4.2.0"},
		{.final_recipient = "c@example.com", .action = DSN_ACTION_FAILED, .status = "5.0.0"},
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.date = T0,
		.rcpts = rcs,
		.n_rcpts = 3,
		.unique = "u4",
	};
	struct composed c = compose(&r, NULL);
	has(&c, "Subject: Undelivered Mail Returned to Sender\r\n");
	has(&c, "Final-Recipient: rfc822; a@example.com\r\nAction: delivered\r\n");
	has(&c, "\r\n\r\nFinal-Recipient: rfc822; b@example.com\r\nAction: delayed\r\n");
	has(&c, "\r\n\r\nFinal-Recipient: rfc822; c@example.com\r\nAction: failed\r\n");
	free(c.msg);
	r.n_rcpts = 2;
	c = compose(&r, NULL);
	has(&c, "Subject: Delayed Mail (still being retried)\r\n");
	has(&c, "delivery is being retried. You do not");
	free(c.msg);
}

static void test_report_8bit(void **state)
{
	(void)state;
	static const char msg8[] = "From: alice@example.org\r\n"
				   "Subject: caf\xc3\xa9\r\n"
				   "\r\n"
				   "na\xc3\xafve body\r\n";
	struct dsn_mail_params mp;
	dsn_mail_params_init(&mp);
	mp.ret = DSN_RET_FULL;
	struct dsn_recipient rc = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.1.1",
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &mp,
		.date = T0,
		.rcpts = &rc,
		.n_rcpts = 1,
		.original = msg8,
		.original_len = strlen(msg8),
		.unique = "u5",
	};
	/* 8BITMIME, not SMTPUTF8: message/rfc822 as it is, 8bit */
	struct composed c = compose(&r, NULL);
	has(&c, "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
		"report-type=delivery-status;\r\n\tboundary=\"=_dsn_u5\"\r\n"
		"Content-Transfer-Encoding: 8bit\r\n");
	has(&c, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n");
	has(&c, "Content-Type: message/delivery-status\r\n");
	has(&c, "na\xc3\xafve body");
	assert_int_equal(c.flags, DSN_REPORT_8BIT | DSN_REPORT_FULL);
	free(c.msg);

	/* SMTPUTF8 with UTF-8 in the header and addresses: a global report */
	struct dsn_rcpt_params rp;
	dsn_rcpt_params_init(&rp);
	assert_int_equal(rcpt_parse(&rp, "ORCPT=utf-8;\xc3\xa9l\xc3\xa8ve@example.com",
				    DSN_PARSE_SMTPUTF8),
			 1);
	rc.final_recipient = "\xc3\xa9l\xc3\xa8ve@example.com";
	rc.orcpt = &rp.orcpt;
	r.smtputf8 = 1;
	r.envelope_sender = "\xe7\x94\xa8\xe6\x88\xb7@example.org";
	c = compose(&r, NULL);
	has(&c, "\r\nTo: <\xe7\x94\xa8\xe6\x88\xb7@example.org>\r\n");
	has(&c, "Content-Type: message/global-delivery-status\r\n"
		"Content-Transfer-Encoding: 8bit\r\n");
	has(&c, "Original-Recipient: utf-8; \xc3\xa9l\xc3\xa8ve@example.com\r\n"
		"Final-Recipient: utf-8; \xc3\xa9l\xc3\xa8ve@example.com\r\n");
	has(&c, "Content-Type: message/global\r\n");
	has(&c, "Content-Type: text/plain; charset=utf-8\r\n");
	assert_int_equal(c.flags, DSN_REPORT_8BIT | DSN_REPORT_SMTPUTF8 | DSN_REPORT_FULL);
	free(c.msg);
	mp.ret = DSN_RET_HDRS;
	c = compose(&r, NULL);
	has(&c, "Content-Type: message/global-headers\r\n");
	hasnt(&c, "na\xc3\xafve");
	free(c.msg);

	/* a 7-bit transaction whose ORCPT was utf-8: escaped, still 7-bit */
	struct dsn_rcpt_params rp2;
	dsn_rcpt_params_init(&rp2);
	assert_int_equal(rcpt_parse(&rp2, "ORCPT=utf-8;\\x{E9}l\\x{E8}ve@example.com", 0), 1);
	struct dsn_recipient rc2 = {
		.final_recipient = "eleve@example.com",
		.orcpt = &rp2.orcpt,
		.action = DSN_ACTION_FAILED,
		.status = "5.1.1",
	};
	struct dsn_report r2 = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.date = T0,
		.rcpts = &rc2,
		.n_rcpts = 1,
		.unique = "u6",
	};
	c = compose(&r2, NULL);
	has(&c, "Original-Recipient: utf-8; \\x{E9}l\\x{E8}ve@example.com\r\n");
	has(&c, "Content-Type: message/delivery-status\r\n");
	assert_int_equal(c.flags, 0);
	for (size_t i = 0; i < c.len; i++)
		assert_true((unsigned char)c.msg[i] < 0x80);
	free(c.msg);
}

static void test_report_hostile(void **state)
{
	(void)state;
	/* the boundary is in the original; bare LFs; an endless line */
	buf o;
	buf_init(&o);
	buf_append_str(&o, "Subject: --=_dsn_u7\nX-Long: ");
	for (int i = 0; i < 3000; i++)
		buf_append(&o, "h", 1);
	buf_append_str(&o, "\rX-After-CR: 1\nMessage-ID: <a@b>\n\n=_dsn_u7 body\n");
	for (int i = 0; i < 2500; i++)
		buf_append(&o, "b", 1);
	struct dsn_mail_params mp;
	dsn_mail_params_init(&mp);
	mp.ret = DSN_RET_FULL;
	buf diag;
	buf_init(&diag);
	buf_append_str(&diag, "550 5.7.1 evil\r\nBcc: victim@example.com\r\n\x01\xff");
	for (int i = 0; i < 200; i++)
		buf_append_str(&diag, " word");
	buf_append(&diag, "", 1);
	struct dsn_recipient rc = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.7.1",
		.diagnostic = (const char *)diag.data,
		.final_log_id = "Q\r\nX: y",
	};
	struct dsn_report r = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.mail_params = &mp,
		.date = T0,
		.rcpts = &rc,
		.n_rcpts = 1,
		.original = o.data,
		.original_len = o.len,
		.unique = "u7",
	};
	struct composed c = compose(&r, NULL); /* checks lines and the boundary */
	has(&c, "boundary=\"=_dsn_u7_1\"");
	has(&c, "Diagnostic-Code: smtp; 550 5.7.1 evil  Bcc: victim@example.com  ??");
	hasnt(&c, "\r\nBcc:");
	hasnt(&c, "\r\nX: y");
	has(&c, "Final-Log-ID: Q  X: y\r\n");
	has(&c, "In-Reply-To: <a@b>\r\n");
	/* the diagnostic is cut at 512 octets */
	const char *dc = strstr(c.msg, "Diagnostic-Code:");
	size_t unfolded = 0;
	for (const char *p = dc + 17; !(p[0] == '\r' && p[2] != ' '); p++)
		if (*p != '\r' && *p != '\n')
			unfolded++;
	assert_true(unfolded <= 512 + 6);
	assert_true(unfolded > 400);
	/* the long header line was broken as a folded line */
	has(&c, "\r\n hhh");
	free(c.msg);

	/* a header section over max_headers is cut at a line end */
	mp.ret = DSN_RET_HDRS;
	buf_reset(&o);
	for (int i = 0; i < 200; i++)
		buf_printf(&o, "X-Filler-%03d: some header text to fill the section\r\n", i);
	buf_append_str(&o, "\r\nbody\r\n");
	r.original = o.data;
	r.original_len = o.len;
	struct dsn_report_limits l = dsn_report_limits_default();
	l.max_headers = 2048;
	c = compose(&r, &l);
	assert_true(c.flags & DSN_REPORT_HEADERS_CUT);
	has(&c, "X-Filler-000:");
	hasnt(&c, "X-Filler-199:");
	free(c.msg);
	buf_deinit(&o);
	buf_deinit(&diag);
}

static void test_report_errors(void **state)
{
	(void)state;
	struct dsn_recipient rc = {
		.final_recipient = "bob@example.com",
		.action = DSN_ACTION_FAILED,
		.status = "5.1.1",
	};
	struct dsn_report good = {
		.reporting_mta = "mx.example.net",
		.envelope_sender = "alice@example.org",
		.date = T0,
		.rcpts = &rc,
		.n_rcpts = 1,
	};
	buf b;
	buf_init(&b);
	const char *err;
	unsigned flags;
	assert_int_equal(dsn_report_compose(&good, NULL, &b, &flags, &err), 0);
	buf_reset(&b);

	struct dsn_report r = good;
	r.envelope_sender = "";
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	r = good;
	r.envelope_sender = "a\r\nb@c";
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	r = good;
	r.envelope_sender = "a\xc3@c";
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	r = good;
	r.reporting_mta = "bad host";
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	r = good;
	r.reporting_mta = NULL;
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	r = good;
	r.n_rcpts = 0;
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	static const char *const bad_status[] = {"6.0.0", "5.1", "5.1.1.1", "5.1234.1", "5..1",
						 "x.1.1", "5.1.1 ", ""};
	for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
		struct dsn_recipient rb = rc;
		rb.status = bad_status[i];
		r = good;
		r.rcpts = &rb;
		assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	}
	struct dsn_recipient rb = rc;
	rb.final_recipient = "";
	r = good;
	r.rcpts = &rb;
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	rb = rc;
	rb.action = (enum dsn_action)17;
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	struct dsn_orcpt o;
	memset(&o, 0, sizeof(o));
	o.kind = DSN_ADDR_RFC822;
	strcpy(o.type, "rfc822");
	strcpy(o.addr, "\xc3\xa9@x"); /* non-ASCII in an rfc822 ORCPT */
	rb = rc;
	rb.orcpt = &o;
	assert_int_equal(dsn_report_compose(&r, NULL, &b, NULL, &err), -1);
	assert_int_equal(b.len, 0); /* nothing written on error */
	buf_deinit(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_utf8_addr),
		cmocka_unit_test(test_rfc3461_example),
		cmocka_unit_test(test_notify),
		cmocka_unit_test(test_ret_envid),
		cmocka_unit_test(test_orcpt),
		cmocka_unit_test(test_text_syntax),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_timing),
		cmocka_unit_test(test_report_failed),
		cmocka_unit_test(test_report_full),
		cmocka_unit_test(test_report_success),
		cmocka_unit_test(test_report_8bit),
		cmocka_unit_test(test_report_hostile),
		cmocka_unit_test(test_report_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
