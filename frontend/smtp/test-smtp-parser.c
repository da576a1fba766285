/* test-smtp-parser.c: the command parser and the DATA reader, fed whole
 * and one byte at a time. */
#include "smtp-parser.h"

#include "buf.h"
#include "xalloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Parse input in chunks of `chunk` bytes (0: whole) with the parser flags;
 * one line of text per result: "MAIL <arg> size=N body=B ret=R envid=<E>",
 * "RCPT <arg> notify=N orcpt=<type;addr>" or "ERR 501 5.5.4 text". */
static char *parse_all_flags(const char *input, size_t len, size_t chunk,
			     const struct smtp_limits *limits, unsigned flags)
{
	smtp_command_parser p;
	struct smtp_limits def;
	if (limits == NULL) {
		smtp_limits_init_default(&def);
		limits = &def;
	}
	smtp_command_parser_init(&p, limits);
	smtp_command_parser_set_flags(&p, flags);
	buf out;
	buf_init(&out);
	size_t off = 0;
	while (off < len) {
		size_t n = chunk == 0 ? len - off : (chunk < len - off ? chunk : len - off);
		size_t pos = 0;
		while (pos < n) {
			struct smtp_command cmd;
			size_t used;
			int ret = smtp_command_parser_feed(&p, (const uint8_t *)input + off + pos,
							   n - pos, &used, &cmd);
			assert_true(used <= n - pos);
			pos += used;
			if (ret == 0) {
				assert_int_equal(pos, n);
			} else if (ret < 0) {
				buf_printf(&out, "ERR %d %s %s\n", cmd.error.code, cmd.error.enh,
					   cmd.error.text);
			} else {
				buf_printf(&out, "%s", smtp_command_name(cmd.kind));
				if (cmd.arg != NULL)
					buf_printf(&out, " <%s>", cmd.arg);
				if (cmd.params.has_size)
					buf_printf(&out, " size=%llu",
						   (unsigned long long)cmd.params.size);
				if (cmd.params.body != SMTP_BODY_UNSPECIFIED)
					buf_printf(&out, " body=%d", (int)cmd.params.body);
				if (cmd.params.dsn.ret != DSN_RET_UNSPECIFIED)
					buf_printf(&out, " ret=%d", (int)cmd.params.dsn.ret);
				if (cmd.params.dsn.has_envid)
					buf_printf(&out, " envid=<%s>", cmd.params.dsn.envid);
				if (cmd.rcpt_params.dsn.notify != 0)
					buf_printf(&out, " notify=%u", cmd.rcpt_params.dsn.notify);
				if (cmd.rcpt_params.dsn.orcpt.kind != DSN_ADDR_NONE)
					buf_printf(&out, " orcpt=<%d:%s;%s>",
						   (int)cmd.rcpt_params.dsn.orcpt.kind,
						   cmd.rcpt_params.dsn.orcpt.type,
						   cmd.rcpt_params.dsn.orcpt.addr);
				buf_append_str(&out, "\n");
			}
		}
		off += n;
	}
	smtp_command_parser_deinit(&p);
	buf_append(&out, "", 1);
	size_t l;
	return (char *)buf_steal(&out, &l);
}

static char *parse_all(const char *input, size_t len, size_t chunk,
		       const struct smtp_limits *limits)
{
	return parse_all_flags(input, len, chunk, limits, 0);
}

/* Whole, one byte at a time and in threes: the same result. */
static void check_flags(const char *input, unsigned flags, const char *expected)
{
	char *whole = parse_all_flags(input, strlen(input), 0, NULL, flags);
	char *bytes = parse_all_flags(input, strlen(input), 1, NULL, flags);
	char *threes = parse_all_flags(input, strlen(input), 3, NULL, flags);
	assert_string_equal(whole, expected);
	assert_string_equal(bytes, expected);
	assert_string_equal(threes, expected);
	free(whole);
	free(bytes);
	free(threes);
}

/* Without SMTP_PARSER_DSN (the parser's default). */
static void check(const char *input, const char *expected)
{
	check_flags(input, 0, expected);
}

static void check_dsn(const char *input, const char *expected)
{
	check_flags(input, SMTP_PARSER_DSN, expected);
}

static void test_commands(void **state)
{
	(void)state;
	check("EHLO client.example.com\r\n", "EHLO <client.example.com>\n");
	check("helo [192.0.2.1]\r\n", "HELO <[192.0.2.1]>\n");
	check("EHLO [IPv6:::1]\r\n", "EHLO <[IPv6:::1]>\n");
	check("MAIL FROM:<a@b.example>\r\n", "MAIL <a@b.example>\n");
	check("mail from:<>\r\n", "MAIL <>\n");
	check("MAIL FROM: <a@b.example> SIZE=1000 BODY=8BITMIME\r\n",
	      "MAIL <a@b.example> size=1000 body=2\n");
	check("MAIL FROM:<a@b.example> body=7bit\r\n", "MAIL <a@b.example> body=1\n");
	check("MAIL FROM:<@relay.example,@r2.example:a@b.example>\r\n", "MAIL <a@b.example>\n");
	check("MAIL FROM:<\"john doe\"@b.example>\r\n", "MAIL <\"john doe\"@b.example>\n");
	check("RCPT TO:<User@Example.COM>\r\n", "RCPT <User@Example.COM>\n");
	check("RCPT TO:<postmaster>\r\n", "RCPT <postmaster>\n");
	check("RCPT TO:<x@[10.0.0.1]>\r\n", "RCPT <x@[10.0.0.1]>\n");
	check("DATA\r\nRSET\r\nNOOP\r\nNOOP hello\r\nQUIT\r\n",
	      "DATA\nRSET\nNOOP <>\nNOOP <hello>\nQUIT\n");
	check("VRFY bob\r\nEXPN list\r\nHELP\r\nHELP MAIL\r\nSTARTTLS\r\n",
	      "VRFY <bob>\nEXPN <list>\nHELP <>\nHELP <MAIL>\nSTARTTLS\n");
	/* Bare LF and trailing spaces are tolerated. */
	check("NOOP\nDATA  \r\n", "NOOP <>\nDATA\n");
}

static void test_errors(void **state)
{
	(void)state;
	check("FOO bar\r\n", "ERR 500 5.5.2 Error: command not recognized\n");
	check("\r\n", "ERR 500 5.5.2 Error: bad syntax\n");
	check("EHLO\r\n", "ERR 501 5.5.4 Syntax: EHLO hostname\n");
	check("EHLO a b\r\n", "ERR 501 5.5.4 Syntax: EHLO hostname\n");
	check("HELO bad..name\r\n", "ERR 501 5.5.4 Invalid domain name\n");
	check("HELO [999.1.1.1]\r\n", "ERR 501 5.5.4 Invalid domain name\n");
	check("MAIL\r\n", "ERR 501 5.5.4 Syntax: MAIL FROM:<address>\n");
	check("MAIL TO:<a@b>\r\n", "ERR 501 5.5.4 Syntax: MAIL FROM:<address>\n");
	check("MAIL FROM:a@b.example\r\n", "ERR 501 5.5.4 Syntax: MAIL FROM:<address>\n");
	check("MAIL FROM:<a@b.example\r\n", "ERR 501 5.1.7 Bad sender address syntax\n");
	check("MAIL FROM:<a b@b.example>\r\n", "ERR 501 5.1.7 Bad sender address syntax\n");
	check("MAIL FROM:<ab.example>\r\n", "ERR 501 5.1.7 Bad sender address syntax\n");
	check("MAIL FROM:<a@b.example>x\r\n", "ERR 501 5.5.4 Syntax: MAIL FROM:<address>\n");
	check("MAIL FROM:<a@b.example> SIZE=12x\r\n", "ERR 501 5.5.4 Invalid SIZE parameter\n");
	check("MAIL FROM:<a@b.example> SIZE=99999999999999999999\r\n",
	      "ERR 501 5.5.4 Invalid SIZE parameter\n");
	check("MAIL FROM:<a@b.example> BODY=BINARYMIME\r\n",
	      "ERR 501 5.5.4 Invalid BODY parameter\n");
	check("MAIL FROM:<a@b.example> SMTPUTF8\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check("MAIL FROM:<a@b.example> =x\r\n", "ERR 501 5.5.4 Syntax error in parameters\n");
	check("RCPT TO:<>\r\n", "ERR 501 5.1.3 Bad recipient address syntax\n");
	check("RCPT TO:<a@-bad-.>\r\n", "ERR 501 5.1.3 Bad recipient address syntax\n");
	check("RCPT TO:<a@b.example> NOTIFY=NEVER\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check("RCPT FROM:<a@b.example>\r\n", "ERR 501 5.5.4 Syntax: RCPT TO:<address>\n");
	check("DATA now\r\n", "ERR 501 5.5.4 Syntax: DATA\n");
	check("QUIT x\r\n", "ERR 501 5.5.4 Syntax: QUIT\n");
	check("VRFY\r\n", "ERR 501 5.5.4 Syntax: VRFY address\n");
	check("NOOP \x01\r\n", "ERR 501 5.5.2 Invalid character in command\n");
	check("NOOP \xc3\xa9\r\n", "ERR 501 5.5.2 Invalid character in command\n");
	/* A NUL in the middle of the line. */
	char *r = parse_all("NOOP a\0b\r\nQUIT\r\n", 16, 1, NULL);
	assert_string_equal(r, "ERR 501 5.5.2 Invalid character in command\nQUIT\n");
	free(r);
	/* The path limit (256 octets with the brackets). */
	char line[400];
	memset(line, 'a', sizeof line);
	memcpy(line, "RCPT TO:<", 9);
	memcpy(line + 9 + 250, "@b.example>\r\n", 14);
	check(line, "ERR 501 5.1.3 Bad recipient address syntax\n");
}

/* RFC 3461 with SMTP_PARSER_DSN: the values, the errors (501 5.5.4 with
 * lib/dsn's text), and 555 for what stays unknown. */
static void test_dsn(void **state)
{
	(void)state;
	/* RFC 3461 section 8's example (ORCPT rfc822, xtext decoded). */
	check_dsn("MAIL FROM:<Alice@Pure-Heart.ORG> RET=HDRS ENVID=QQ314159\r\n"
		  "RCPT TO:<Bob@Big-Bucks.COM> NOTIFY=SUCCESS ORCPT=rfc822;Bob@Big-Bucks.COM\r\n"
		  "RCPT TO:<Carol@Ivory.EDU> NOTIFY=FAILURE ORCPT=rfc822;Carol@Ivory.EDU\r\n"
		  "RCPT TO:<Dana@Ivory.EDU> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Dana@Ivory.EDU\r\n"
		  "RCPT TO:<Eric@Bombs.AF.MIL> NOTIFY=NEVER\r\n",
		  "MAIL <Alice@Pure-Heart.ORG> ret=2 envid=<QQ314159>\n"
		  "RCPT <Bob@Big-Bucks.COM> notify=1 orcpt=<1:rfc822;Bob@Big-Bucks.COM>\n"
		  "RCPT <Carol@Ivory.EDU> notify=2 orcpt=<1:rfc822;Carol@Ivory.EDU>\n"
		  "RCPT <Dana@Ivory.EDU> notify=3 orcpt=<1:rfc822;Dana@Ivory.EDU>\n"
		  "RCPT <Eric@Bombs.AF.MIL> notify=8\n");
	/* Mixed with SIZE and BODY, any case, xtext decoded, utf-8 addresses
	 * (xtext form: no SMTPUTF8 yet), other address types kept. */
	check_dsn("MAIL FROM:<a@b.example> SIZE=10 ret=full BODY=8BITMIME ENVID=a+2Bb+3Dc\r\n",
		  "MAIL <a@b.example> size=10 body=2 ret=1 envid=<a+b=c>\n");
	check_dsn("RCPT TO:<x@y.example> notify=delay,Success ORCPT=RFC822;x+2By@y.example\r\n",
		  "RCPT <x@y.example> notify=5 orcpt=<1:rfc822;x+y@y.example>\n");
	check_dsn("RCPT TO:<x@y.example> ORCPT=utf-8;j\\x{E9}r\\x{F4}me@y.example\r\n",
		  "RCPT <x@y.example> orcpt=<2:utf-8;j\xc3\xa9r\xc3\xb4me@y.example>\n");
	check_dsn("RCPT TO:<x@y.example> ORCPT=x400;c+3Dus+3Ba+3Dx\r\n",
		  "RCPT <x@y.example> orcpt=<3:x400;c=us;a=x>\n");
	check_dsn("MAIL FROM:<> RET=HDRS\r\n", "MAIL <> ret=2\n");
	/* Bad values: 501 5.5.4 and lib/dsn's text. */
	check_dsn("MAIL FROM:<a@b.example> RET=ALL\r\n",
		  "ERR 501 5.5.4 Bad RET parameter (FULL or HDRS)\n");
	check_dsn("MAIL FROM:<a@b.example> RET\r\n",
		  "ERR 501 5.5.4 Bad RET parameter (FULL or HDRS)\n");
	check_dsn("MAIL FROM:<a@b.example> RET=FULL RET=HDRS\r\n",
		  "ERR 501 5.5.4 Duplicate RET parameter\n");
	check_dsn("MAIL FROM:<a@b.example> ENVID=a+2b\r\n",
		  "ERR 501 5.5.4 Bad +XX in xtext (two upper-case hex digits)\n");
	check_dsn("MAIL FROM:<a@b.example> ENVID\r\n", "ERR 501 5.5.4 Missing ENVID value\n");
	check_dsn("MAIL FROM:<a@b.example> ENVID=a+0Ab\r\n",
		  "ERR 501 5.5.4 Decoded value is not printable US-ASCII\n");
	check_dsn("RCPT TO:<x@y.example> NOTIFY=NEVER,SUCCESS\r\n",
		  "ERR 501 5.5.4 NOTIFY=NEVER cannot be combined with other values\n");
	check_dsn("RCPT TO:<x@y.example> NOTIFY=SUCCESS,SUCCESS\r\n",
		  "ERR 501 5.5.4 Duplicate value in NOTIFY parameter\n");
	check_dsn("RCPT TO:<x@y.example> NOTIFY=ALWAYS\r\n",
		  "ERR 501 5.5.4 Bad NOTIFY parameter (NEVER or SUCCESS,FAILURE,DELAY)\n");
	check_dsn("RCPT TO:<x@y.example> NOTIFY=DELAY NOTIFY=DELAY\r\n",
		  "ERR 501 5.5.4 Duplicate NOTIFY parameter\n");
	check_dsn("RCPT TO:<x@y.example> ORCPT=x@y.example\r\n",
		  "ERR 501 5.5.4 Bad ORCPT parameter (addr-type;address)\n");
	check_dsn("RCPT TO:<x@y.example> ORCPT=rfc822;\r\n", "ERR 501 5.5.4 Empty ORCPT address\n");
	check_dsn("RCPT TO:<x@y.example> ORCPT=utf-8;\\x{41}@y.example\r\n",
		  "ERR 501 5.5.4 Bad \\x{...} in utf-8 address\n");
	/* Unknown stays 555; DSN's parameters are not MAIL's and RCPT's the
	 * other way round; an empty value is the parameter syntax error. */
	check_dsn("MAIL FROM:<a@b.example> NOTIFY=NEVER\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check_dsn("RCPT TO:<x@y.example> RET=FULL\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check_dsn("RCPT TO:<x@y.example> SIZE=10\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check_dsn("MAIL FROM:<a@b.example> SMTPUTF8\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check_dsn("RCPT TO:<x@y.example> NOTIFY=\r\n",
		  "ERR 501 5.5.4 Syntax error in parameters\n");
	/* Without the flag (DSN not advertised) they are unknown. */
	check("MAIL FROM:<a@b.example> RET=FULL\r\n", "ERR 555 5.5.4 Unsupported parameter\n");
	check("RCPT TO:<x@y.example> ORCPT=rfc822;x@y.example\r\n",
	      "ERR 555 5.5.4 Unsupported parameter\n");
	/* The limits: ENVID 100 octets as sent, ORCPT 500. */
	char line[1000];
	char v[600];
	memset(v, 'e', 100);
	v[100] = '\0';
	snprintf(line, sizeof line, "MAIL FROM:<a@b.example> ENVID=%s\r\n", v);
	char *r = parse_all_flags(line, strlen(line), 1, NULL, SMTP_PARSER_DSN);
	assert_non_null(strstr(r, "MAIL <a@b.example> envid=<eee"));
	free(r);
	snprintf(line, sizeof line, "MAIL FROM:<a@b.example> ENVID=%se\r\n", v);
	check_dsn(line, "ERR 501 5.5.4 ENVID too long (at most 100 characters)\n");
	memcpy(v, "rfc822;", 7);
	memset(v + 7, 'o', 493 - 10);
	memcpy(v + 490, "@y.example", 10);
	v[500] = '\0';
	snprintf(line, sizeof line, "RCPT TO:<x@y.example> ORCPT=%s\r\n", v);
	r = parse_all_flags(line, strlen(line), 0, NULL, SMTP_PARSER_DSN);
	assert_non_null(strstr(r, "orcpt=<1:rfc822;ooo"));
	free(r);
	memcpy(v + 490, "@yy.example", 11);
	v[501] = '\0';
	snprintf(line, sizeof line, "RCPT TO:<x@y.example> ORCPT=%s\r\n", v);
	check_dsn(line, "ERR 501 5.5.4 ORCPT too long (at most 500 characters)\n");
}

/* A line of total octets (terminator included), then QUIT. */
static char *long_line(size_t total, const char *term)
{
	size_t tl = strlen(term);
	char *s = xmalloc(total + 16);
	memcpy(s, "NOOP ", 5);
	memset(s + 5, 'x', total - tl - 5);
	memcpy(s + total - tl, term, tl);
	strcpy(s + total, "QUIT\r\n");
	return s;
}

static void test_line_limit(void **state)
{
	(void)state;
	char *s = long_line(1000, "\r\n");
	char *exp = xmalloc(1100);
	snprintf(exp, 1100, "NOOP <%.*s>\nQUIT\n", 993, s + 5);
	check(s, exp);
	free(s);
	free(exp);

	s = long_line(1001, "\r\n");
	check(s, "ERR 500 5.5.6 Line too long\nQUIT\n");
	free(s);
	/* Bare LF: the same octet count rule. */
	s = long_line(1001, "\n");
	check(s, "ERR 500 5.5.6 Line too long\nQUIT\n");
	free(s);
	/* Far over: discarded without being buffered. */
	size_t big = 200000;
	s = long_line(big, "\r\n");
	smtp_command_parser p;
	struct smtp_limits lim;
	smtp_limits_init_default(&lim);
	smtp_command_parser_init(&p, &lim);
	size_t off = 0;
	int errors = 0;
	while (off < big + 6) {
		struct smtp_command cmd;
		size_t used;
		int ret = smtp_command_parser_feed(&p, (uint8_t *)s + off, 100, &used, &cmd);
		assert_true(p.line.len <= lim.max_line);
		if (ret < 0) {
			errors++;
			assert_int_equal(cmd.error.code, 500);
			assert_string_equal(cmd.error.enh, "5.5.6");
		}
		if (ret > 0)
			assert_int_equal(cmd.kind, SMTP_CMD_QUIT);
		off += used;
		if (off + 100 > big + 6)
			break;
	}
	assert_int_equal(errors, 1);
	smtp_command_parser_deinit(&p);
	free(s);

	/* A smaller configured limit. */
	lim.max_line = 100;
	char *r = parse_all("NOOP 12345678901234567890123456789012345678901234567890"
			    "12345678901234567890123456789012345678901234567890\r\nRSET\r\n",
			    113, 1, &lim);
	assert_string_equal(r, "ERR 500 5.5.6 Line too long\nRSET\n");
	free(r);
}

/* ---- DATA ---- */

struct data_result {
	int done;
	size_t consumed;
	int too_big;
	size_t size;
	char body[4096];
	size_t body_len;
};

static void data_run(const char *in, size_t len, size_t chunk, size_t max,
		     struct data_result *res)
{
	smtp_data_reader r;
	smtp_data_reader_init(&r, max);
	memset(res, 0, sizeof *res);
	size_t off = 0;
	while (off < len && !res->done) {
		size_t n = chunk == 0 ? len - off : (chunk < len - off ? chunk : len - off);
		size_t used;
		res->done = smtp_data_reader_feed(&r, (const uint8_t *)in + off, n, &used);
		assert_true(used <= n);
		if (!res->done)
			assert_int_equal(used, n);
		off += used;
	}
	res->consumed = off;
	res->too_big = r.too_big;
	res->size = r.size;
	assert_true(r.body.len < sizeof res->body);
	memcpy(res->body, r.body.data != NULL ? (char *)r.body.data : "", r.body.len);
	res->body_len = r.body.len;
	smtp_data_reader_deinit(&r);
}

static void data_check(const char *in, size_t max, int done, size_t consumed,
		       const char *body, int too_big)
{
	size_t chunks[] = { 0, 1, 2, 7 };
	for (size_t i = 0; i < 4; i++) {
		struct data_result res;
		data_run(in, strlen(in), chunks[i], max, &res);
		assert_int_equal(res.done, done);
		assert_int_equal(res.consumed, consumed);
		assert_int_equal(res.too_big, too_big);
		assert_int_equal(res.body_len, strlen(body));
		assert_memory_equal(res.body, body, res.body_len);
	}
}

static void test_data(void **state)
{
	(void)state;
	const char *m = "Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n";
	data_check(m, 1000, 1, strlen(m) - 6, "Subject: x\r\n\r\nhello\r\n", 0);
	/* Empty message. */
	data_check(".\r\n", 1000, 1, 3, "", 0);
	/* Dot-unstuffing: a leading dot is removed, only at line starts. */
	data_check("..a\r\n...\r\nb.c\r\n.x\r\n.\r\n", 1000, 1, 22, ".a\r\n..\r\nb.c\r\nx\r\n", 0);
	/* Bare LF (and LF.LF) is data, not an end: no smuggling. */
	data_check("a\n.\nb\r\n.\r\n", 1000, 1, 10, "a\n.\nb\r\n", 0);
	data_check("a\r\n.\nb\r\n.\r\n", 1000, 1, 11, "a\r\n\nb\r\n", 0);
	/* ".\r" followed by something else: the CR is data. */
	data_check("a\r\n.\rb\r\n.\r\n", 1000, 1, 11, "a\r\n\rb\r\n", 0);
	data_check("a\r\n.\r\r\n.\r\n", 1000, 1, 10, "a\r\n\r\r\n", 0);
	/* Incomplete. */
	data_check("hello\r\n.", 1000, 0, 8, "hello\r\n", 0);
	/* Over the limit: nothing stored, read on to the end marker. */
	data_check("0123456789\r\n0123456789\r\n.\r\nNOOP\r\n", 20, 1, 27, "", 1);
	/* Exactly at the limit is fine. */
	data_check("0123456789\r\n0123456\r\n.\r\n", 21, 1, 24, "0123456789\r\n0123456\r\n", 0);
}

static void test_data_large(void **state)
{
	(void)state;
	size_t n = 3 * 1024 * 1024;
	char *in = xmalloc(n + 5);
	for (size_t i = 0; i < n; i++)
		in[i] = (i % 80 == 78) ? '\r' : (i % 80 == 79) ? '\n' : 'a' + (char)(i % 26);
	in[n - 2] = '\r';
	in[n - 1] = '\n';
	memcpy(in + n, ".\r\n", 4);
	smtp_data_reader r;
	smtp_data_reader_init(&r, n);
	size_t used;
	assert_int_equal(smtp_data_reader_feed(&r, (uint8_t *)in, n + 3, &used), 1);
	assert_int_equal(used, n + 3);
	assert_int_equal(r.body.len, n);
	assert_memory_equal(r.body.data, in, n);
	smtp_data_reader_reset(&r);
	r.max_size = n - 1;
	assert_int_equal(smtp_data_reader_feed(&r, (uint8_t *)in, n + 3, &used), 1);
	assert_true(r.too_big);
	assert_int_equal(r.body.len, 0);
	assert_int_equal(r.size, n);
	smtp_data_reader_deinit(&r);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),   cmocka_unit_test(test_errors),
		cmocka_unit_test(test_line_limit), cmocka_unit_test(test_data),
		cmocka_unit_test(test_data_large), cmocka_unit_test(test_dsn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
