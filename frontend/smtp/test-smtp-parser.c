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

/* Parse input in chunks of `chunk` bytes (0: whole); one line of text per
 * result: "MAIL <arg> size=N body=B" or "ERR 501 5.5.4 text". */
static char *parse_all(const char *input, size_t len, size_t chunk,
		       const struct smtp_limits *limits)
{
	smtp_command_parser p;
	struct smtp_limits def;
	if (limits == NULL) {
		smtp_limits_init_default(&def);
		limits = &def;
	}
	smtp_command_parser_init(&p, limits);
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

static void check(const char *input, const char *expected)
{
	char *whole = parse_all(input, strlen(input), 0, NULL);
	char *bytes = parse_all(input, strlen(input), 1, NULL);
	char *threes = parse_all(input, strlen(input), 3, NULL);
	assert_string_equal(whole, expected);
	assert_string_equal(bytes, expected);
	assert_string_equal(threes, expected);
	free(whole);
	free(bytes);
	free(threes);
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
		cmocka_unit_test(test_data_large),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
