/* Tests of the POP3 command parser: every input is fed whole and then one
 * byte at a time, and both must give the same events. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "pop3-parser.h"

/* Feed input in chunks of chunk bytes (0: whole) and describe every
 * event, one per line: "CMD NAME|arg|arg|...|rest=...", "SASL line",
 * "ERR text". SASL mode is switched on after a command named AUTH with
 * no initial response and off after the next line, as the server does. */
static char *run(const struct pop3_parser_limits *limits, const char *input, size_t len,
		 size_t chunk)
{
	pop3_parser *p = pop3_parser_create(limits);
	buf out;
	buf_init(&out);
	size_t off = 0;
	int sasl = 0;
	while (off < len) {
		size_t n = chunk == 0 || len - off < chunk ? len - off : chunk;
		const uint8_t *d = (const uint8_t *)input + off;
		while (n > 0) {
			struct pop3_command *cmd;
			const char *error;
			size_t used;
			pop3_parser_set_sasl(p, sasl);
			int ret = pop3_parser_feed(p, d, n, &used, &cmd, &error);
			assert_true(used <= n);
			if (ret == POP3_PARSE_COMMAND && sasl) {
				buf_printf(&out, "SASL %s\n", cmd->line);
				sasl = 0;
			} else if (ret == POP3_PARSE_COMMAND) {
				buf_printf(&out, "CMD %s", cmd->name);
				for (size_t i = 0; i < cmd->n_args; i++)
					buf_printf(&out, "|%s", cmd->args[i]);
				buf_printf(&out, "|rest=%s\n", cmd->rest);
				sasl = strcmp(cmd->name, "AUTH") == 0 && cmd->n_args == 1;
			} else if (ret == POP3_PARSE_ERROR) {
				buf_printf(&out, "ERR %s\n", error);
				sasl = 0;
			} else {
				assert_int_equal(used, n);
			}
			d += used;
			n -= used;
			off += used;
		}
	}
	pop3_parser_destroy(&p);
	buf_append(&out, "", 1);
	return (char *)buf_steal(&out, NULL);
}

/* Both ways of feeding, compared with want. */
static void expect_limits(const struct pop3_parser_limits *limits, const char *input, size_t len,
			  const char *want)
{
	char *whole = run(limits, input, len, 0);
	char *bytes = run(limits, input, len, 1);
	char *sevens = run(limits, input, len, 7);
	assert_string_equal(whole, want);
	assert_string_equal(bytes, want);
	assert_string_equal(sevens, want);
	free(whole);
	free(bytes);
	free(sevens);
}

static void expect(const char *input, const char *want)
{
	struct pop3_parser_limits limits;
	pop3_parser_limits_default(&limits);
	expect_limits(&limits, input, strlen(input), want);
}

static void test_commands(void **state)
{
	(void)state;
	expect("USER bob@example.test\r\n", "CMD USER|bob@example.test|rest=bob@example.test\n");
	expect("stat\r\nlist 2\nUidl\r\n",
	       "CMD STAT|rest=\nCMD LIST|2|rest=2\nCMD UIDL|rest=\n");
	expect("TOP  1   10  \r\n", "CMD TOP|1|10|rest= 1   10  \n");
	/* PASS takes the rest of the line: spaces belong to the password */
	expect("PASS  my secret \r\n", "CMD PASS|my|secret|rest= my secret \n");
	/* 8-bit bytes pass (UTF-8 names and passwords) */
	expect("USER j\xc3\xb6rg\r\n", "CMD USER|j\xc3\xb6rg|rest=j\xc3\xb6rg\n");
	expect("QUIT", ""); /* no line end yet */
}

static void test_errors(void **state)
{
	(void)state;
	expect("\r\n", "ERR Empty command\n");
	expect(" STAT\r\n", "ERR Unknown command\n");
	expect("RETRX 1\r\n", "ERR Unknown command\n");
	expect("RE1R 1\r\n", "ERR Unknown command\n");
	expect("USER a\tb\r\n", "ERR Invalid characters in the command\n");
	expect("USER a\rb\r\n", "ERR Invalid characters in the command\n");
	expect("LIST 1 2 3 4 5\r\nNOOP\r\n", "ERR Too many arguments\nCMD NOOP|rest=\n");
	static const char nul[] = "USER a\0b\r\nNOOP\r\n";
	struct pop3_parser_limits limits;
	pop3_parser_limits_default(&limits);
	expect_limits(&limits, nul, sizeof(nul) - 1,
		      "ERR Invalid characters in the command\nCMD NOOP|rest=\n");
}

static void test_line_limit(void **state)
{
	(void)state;
	/* 255 octets with CRLF pass; 256 do not, and the rest of that line
	 * is dropped up to its LF */
	char line[600];
	memset(line, 'x', sizeof(line));
	memcpy(line, "USER ", 5);
	memcpy(line + 253, "\r\nNOOP\r\n", 9);
	char want[700];
	snprintf(want, sizeof(want), "CMD USER|%.248s|rest=%.248s\n", line + 5, line + 5);
	strcat(want, "CMD NOOP|rest=\n");
	expect(line, want);
	/* a bare LF: 254 octets of text and the LF */
	line[253] = 'x';
	memcpy(line + 254, "\nNOOP\r\n", 8);
	char *out = run(&(struct pop3_parser_limits){ 255, 12290, 4 }, line, strlen(line), 0);
	assert_non_null(strstr(out, "CMD NOOP"));
	assert_null(strstr(out, "ERR"));
	free(out);
	memset(line, 'x', sizeof(line));
	memcpy(line, "USER ", 5);
	memcpy(line + 254, "\r\nNOOP\r\n", 9);
	expect(line, "ERR Line too long\nCMD NOOP|rest=\n");
	/* far over: reported once, never stored */
	memset(line, 'y', sizeof(line));
	memcpy(line + sizeof(line) - 9, "\r\nSTAT\r\n", 9);
	expect(line, "ERR Line too long\nCMD STAT|rest=\n");
}

static void test_auth_lines(void **state)
{
	(void)state;
	struct pop3_parser_limits limits;
	pop3_parser_limits_default(&limits);
	/* AUTH with a long initial response may use max_auth_line */
	char *in = malloc(4100);
	memcpy(in, "AUTH PLAIN ", 11);
	memset(in + 11, 'A', 4000);
	memcpy(in + 11 + 4000, "\r\nNOOP\r\n", 9);
	char *out = run(&limits, in, strlen(in), 0);
	assert_int_equal(strncmp(out, "CMD AUTH|PLAIN|AAAA", 19), 0);
	assert_non_null(strstr(out, "\nCMD NOOP"));
	free(out);
	out = run(&limits, in, strlen(in), 1);
	assert_int_equal(strncmp(out, "CMD AUTH|PLAIN|AAAA", 19), 0);
	free(out);
	free(in);
	/* not for other commands */
	in = malloc(4100);
	memcpy(in, "USER ", 5);
	memset(in + 5, 'B', 4000);
	memcpy(in + 4005, "\r\n", 3);
	out = run(&limits, in, strlen(in), 3);
	assert_string_equal(out, "ERR Line too long\n");
	free(out);
	free(in);
	/* SASL mode: the response line whole, not split */
	expect("AUTH LOGIN\r\nYm9i IGZvbw==\r\nNOOP\r\n",
	       "CMD AUTH|LOGIN|rest=LOGIN\nSASL Ym9i IGZvbw==\nCMD NOOP|rest=\n");
	expect("AUTH PLAIN\r\n\r\n", "CMD AUTH|PLAIN|rest=PLAIN\nSASL \n");
	/* over max_auth_line */
	size_t len = 13000;
	in = malloc(len + 64);
	memcpy(in, "AUTH PLAIN\r\n", 12);
	memset(in + 12, 'C', len);
	memcpy(in + 12 + len, "\r\nNOOP\r\n", 9);
	out = run(&limits, in, strlen(in), 0);
	assert_string_equal(out, "CMD AUTH|PLAIN|rest=PLAIN\nERR Line too long\nCMD NOOP|rest=\n");
	free(out);
	free(in);
}

static void test_limits_bounds(void **state)
{
	(void)state;
	/* out-of-range limits are moved to their bounds */
	struct pop3_parser_limits limits = { 1, 0, 0 };
	expect_limits(&limits, "LIST 1 2\r\n", 10, "ERR Too many arguments\n");
	expect_limits(&limits, "LIST 1\r\n", 8, "CMD LIST|1|rest=1\n");
	expect_limits(&limits, "USER 0123456789\r\n", 17, "ERR Line too long\n");
	expect_limits(&limits, "USER 012345678\r\n", 16, "CMD USER|012345678|rest=012345678\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_auth_lines),
		cmocka_unit_test(test_limits_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
