/* Unit tests of the IMAP parser's literals beyond the plain ones:
 * literal8 (~{n}, RFC 3516), LITERAL- (RFC 7888 4), over-limit literals
 * handed to the caller (IMAP_PARSE_LITERAL: APPEND), discarding the rest
 * of a refused command, and {n+} literals at the end of a skipped line.
 * Every input is fed whole, one byte at a time and three at a time; all
 * must give the same transcript. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "imap-parser.h"

static void render_list(buf *out, const struct imap_arg_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		const struct imap_arg *a = &list->args[i];
		if (i > 0)
			buf_append_str(out, " ");
		switch (a->type) {
		case IMAP_ARG_NIL:
			buf_append_str(out, "NIL");
			break;
		case IMAP_ARG_ATOM:
			buf_printf(out, "a:%s", a->str);
			break;
		case IMAP_ARG_QUOTED:
			buf_printf(out, "q:%s", a->str);
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "%s%zu:", a->literal8 ? "B" : "L", a->len);
			if (a->len <= 32) {
				for (size_t k = 0; k < a->len; k++)
					buf_append(out, a->str[k] == '\0' ? "@" : &a->str[k], 1);
			} else
				buf_printf(out, "%.4s..", a->str);
			if (a->str[a->len] != '\0')
				fail_msg("literal not NUL-terminated");
			break;
		case IMAP_ARG_LIST:
			buf_append_str(out, "(");
			render_list(out, a->list);
			buf_append_str(out, ")");
			break;
		}
	}
}

/* Feed input in chunks; literals the parser hands over are accepted when
 * no larger than accept_max, else refused; the transcript records each
 * decision as {tag [~]size[+] acc|ref}, and the end of a refused
 * command as ".". */
static char *run(const struct imap_parser_limits *limits, const char *input, size_t len,
		 size_t chunk, uint64_t accept_max)
{
	imap_parser *p = imap_parser_create(limits);
	buf out;
	buf_init(&out);
	size_t off = 0;
	while (off < len) {
		size_t n = len - off < chunk ? len - off : chunk;
		const uint8_t *d = (const uint8_t *)input + off;
		off += n;
		while (n > 0) {
			struct imap_command *cmd;
			const char *error;
			size_t used;
			int ret = imap_parser_feed(p, d, n, &used, &cmd, &error);
			assert_true(used <= n);
			d += used;
			n -= used;
			if (ret == IMAP_PARSE_COMMAND) {
				buf_printf(&out, "[%s %s", cmd->tag, cmd->name);
				if (cmd->args.count > 0)
					buf_append_str(&out, " ");
				render_list(&out, &cmd->args);
				buf_append_str(&out, "]");
			} else if (ret == IMAP_PARSE_CONTINUATION) {
				buf_append_str(&out, "+");
			} else if (ret == IMAP_PARSE_ERROR) {
				buf_printf(&out, "<%s BAD %s>", cmd->tag ? cmd->tag : "*", error);
			} else if (ret == IMAP_PARSE_LITERAL) {
				struct imap_parser_literal lit;
				imap_parser_literal_get(p, &lit);
				assert_non_null(cmd->tag);
				int acc = lit.size <= accept_max;
				buf_printf(&out, "{%s %s%llu%s %s}", cmd->tag, lit.literal8 ? "~" : "",
					   (unsigned long long)lit.size, lit.nonsync ? "+" : "",
					   acc ? "acc" : "ref");
				if (acc)
					imap_parser_literal_accept(p);
				else
					imap_parser_literal_refuse(p);
			} else if (ret == IMAP_PARSE_DROPPED) {
				buf_append_str(&out, ".");
			} else {
				assert_int_equal(n, 0);
			}
		}
	}
	if (!imap_parser_is_idle(p))
		buf_append_str(&out, "...");
	imap_parser_destroy(&p);
	buf_append(&out, "", 1);
	return (char *)buf_steal(&out, NULL);
}

static void check_run_len(const struct imap_parser_limits *limits, const char *input,
			  size_t len, uint64_t accept_max, const char *expected)
{
	size_t chunks[] = { len, 1, 3 };
	for (size_t i = 0; i < 3; i++) {
		char *got = run(limits, input, len, chunks[i], accept_max);
		if (strcmp(got, expected) != 0)
			fail_msg("chunk %zu of \"%s\":\nwant %s\ngot  %s", chunks[i], input, expected,
				 got);
		free(got);
	}
}

static void check_run(const struct imap_parser_limits *limits, const char *input,
		      uint64_t accept_max, const char *expected)
{
	check_run_len(limits, input, strlen(input), accept_max, expected);
}

/* Tight limits: lines of 64, literals of 10, non-sync literals of 4. */
static struct imap_parser_limits limits_tight(int events, size_t nonsync)
{
	return (struct imap_parser_limits){ .max_line = 64,
					    .max_literal = 10,
					    .max_args = 16,
					    .max_depth = 4,
					    .max_nonsync_literal = nonsync,
					    .literal_events = events };
}

static void test_literal8(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(0, 0);
	static const char nul[] = "a APPEND x ~{3}\r\na\0c\r\n";
	check_run_len(&l, nul, sizeof(nul) - 1, 0, "+[a APPEND a:x B3:a@c]");
	check_run(&l, "a APPEND x (\\Seen) ~{2+}\r\nab\r\n", 0,
		  "[a APPEND a:x (a:\\Seen) B2:ab]");
	check_run(&l, "a APPEND x UTF8 (~{2+}\r\nab)\r\n", 0, "[a APPEND a:x a:UTF8 (B2:ab)]");
	/* '~' that does not start a literal is an atom's */
	check_run(&l, "a LIST ~peter/mail ~ ~x\r\n", 0, "[a LIST a:~peter/mail a:~ a:~x]");
	check_run(&l, "a X ~(b)\r\n", 0, "[a X a:~ (a:b)]");
	check_run(&l, "a X ~{2\r\n", 0, "<a BAD Invalid literal size>");
	check_run(&l, "a X ~{11}\r\nb NOOP\r\n", 0, "<a BAD Literal too large>[b NOOP]");
}

/* 8-bit atoms only when asked (after ENABLE UTF8=ACCEPT). */
static void test_atom_utf8(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(0, 0);
	check_run(&l, "a CREATE \xc3\x9c\r\n", 0, "<a BAD Invalid characters in command>");
	check_run(&l, "a CREATE x\xc3\x9c\r\n", 0, "<a BAD Invalid characters in atom>");
	l.atom_utf8 = 1;
	check_run(&l, "a CREATE \xc3\x9c x\xc3\x9c\r\n", 0,
		  "[a CREATE a:\xc3\x9c a:x\xc3\x9c]");
	check_run(&l, "a CREATE \x01\r\n", 0, "<a BAD Invalid characters in command>");
}

/* Over-limit literals without events: the old answers, and the rest of
 * the command is now dropped as a whole (its later {n+} included). */
static void test_refused_without_events(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(0, 0);
	check_run(&l, "a X {11+}\r\n0123456789A {3+}\r\nxyz rest\r\nb NOOP\r\n", 0,
		  "<a BAD Literal too large>[b NOOP]");
	/* a synchronising literal after it ends the command: the client
	 * waits for "+" and gets the BAD */
	check_run(&l, "a X {11+}\r\n0123456789A {3}\r\nb NOOP\r\n", 0,
		  "<a BAD Literal too large>[b NOOP]");
	/* LITERAL-: non-synchronising literals over 4 bytes */
	l = limits_tight(0, 4);
	check_run(&l, "a X {5+}\r\nabcde\r\nb X {4+}\r\nabcd\r\n", 0,
		  "<a BAD Literal too large>[b X L4:abcd]");
	check_run(&l, "a X {5}\r\nabcde\r\n", 0, "+[a X L5:abcde]");
}

/* A syntax error before a {n+}: the literal's bytes are skipped with the
 * line instead of being read as commands (RFC 7888 3). */
static void test_skip_line_literal(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(0, 0);
	check_run(&l, "a X \x01 {5+}\r\nb NOO\r\nc NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[c NOOP]");
	check_run(&l, "a X \x01 {5+}\r\nb NOO {2+}\r\n\r\n\r\nc NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[c NOOP]");
	/* an empty one: the next line is the rest of the command */
	check_run(&l, "a X \x01 {0+}\r\nc NOOP\r\nd NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[d NOOP]");
	/* a synchronising one is not skipped: the client waits for "+" */
	check_run(&l, "a X \x01 {5}\r\nc NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[c NOOP]");
	/* not a literal header */
	check_run(&l, "a X \x01 {5+\r\nc NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[c NOOP]");
	check_run(&l, "a X \x01 5+}\r\nc NOOP\r\n", 0,
		  "<a BAD Invalid characters in command>[c NOOP]");
	/* an overlong line that ends in a literal header */
	char line[200];
	memset(line, 'x', sizeof(line));
	memcpy(line, "a X ", 4);
	snprintf(line + 100, sizeof(line) - 100, " {3+}\r\nabc\r\nb NOOP\r\n");
	check_run(&l, line, 0, "<a BAD Line too long>[b NOOP]");
}

static void test_literal_events(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(1, 0);
	/* small literals never ask */
	check_run(&l, "a X {3}\r\nabc\r\n", 100, "+[a X L3:abc]");
	/* accepted: stored whole; the caller says "+" for a {n} */
	check_run(&l, "a APPEND x {20}\r\n01234567890123456789\r\n", 100,
		  "{a 20 acc}[a APPEND a:x L20:01234567890123456789]");
	check_run(&l, "a APPEND x {20+}\r\n01234567890123456789 {0}\r\n\r\n", 100,
		  "{a 20+ acc}+[a APPEND a:x L20:01234567890123456789 L0:]");
	/* MULTIAPPEND: each one asks; small ones in between count up */
	check_run(&l,
		  "a APPEND x {12+}\r\n012345678901 (\\Seen) {8+}\r\nabcdefgh {8+}\r\nijklmnop\r\n",
		  100, "{a 12+ acc}{a 8+ acc}[a APPEND a:x L12:012345678901 (a:\\Seen) "
		       "L8:abcdefgh L8:ijklmnop]");
	static const char nuls[] = "a APPEND x ~{11}\r\n\0\0\0\0\0\0\0\0\0\0\0\r\n";
	check_run_len(&l, nuls, sizeof(nuls) - 1, 100,
		      "{a ~11 acc}[a APPEND a:x B11:@@@@@@@@@@@]");
	/* refused synchronising: the command is over, nothing more of it */
	check_run(&l, "a APPEND x {20}\r\nb NOOP\r\n", 10, "{a 20 ref}[b NOOP]");
	/* refused non-synchronising: its bytes and the rest of the command
	 * go, later literals too, without another event */
	check_run(&l, "a APPEND x {20+}\r\n01234567890123456789 {30+}\r\n"
		      "012345678901234567890123456789 (x {1}\r\nb NOOP\r\n",
		  10, "{a 20+ ref}.[b NOOP]");
	check_run(&l, "a APPEND x {20+}\r\n01234567890123456789 {3}\r\nb NOOP\r\n", 10,
		  "{a 20+ ref}.[b NOOP]");
	check_run(&l, "a APPEND x {5+}\r\n01234 {20+}\r\n01234567890123456789 \x01 {2+}\r\nab\r\n"
		      "b NOOP\r\n",
		  10, "{a 20+ ref}.[b NOOP]");
	/* the second of two refused, the first accepted */
	check_run(&l, "a APPEND x {12+}\r\n012345678901 {20+}\r\n01234567890123456789\r\nb NOOP\r\n",
		  15, "{a 12+ acc}{a 20+ ref}.[b NOOP]");
	/* LITERAL-: a small {n+} over max_nonsync_literal asks too */
	l = limits_tight(1, 4);
	check_run(&l, "a X {5+}\r\nabcde\r\n", 4, "{a 5+ ref}.");
	check_run(&l, "a X {5+}\r\nabcde\r\n", 5, "{a 5+ acc}[a X L5:abcde]");
}

/* A large accepted literal arrives in pieces: stored exactly, and the
 * buffer never grows past the literal. */
static void test_large_literal(void **state)
{
	(void)state;
	struct imap_parser_limits l = limits_tight(1, 0);
	size_t size = 3 * 1024 * 1024 + 17;
	char head[64];
	int hl = snprintf(head, sizeof(head), "a APPEND INBOX {%zu+}\r\n", size);
	uint8_t *msg = malloc(size);
	for (size_t i = 0; i < size; i++)
		msg[i] = (uint8_t)(i * 7 + (i >> 9));
	imap_parser *p = imap_parser_create(&l);
	struct imap_command *cmd;
	const char *error;
	size_t used;
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)head, (size_t)hl, &used, &cmd, &error),
			 IMAP_PARSE_LITERAL);
	assert_int_equal(used, (size_t)hl);
	imap_parser_literal_accept(p);
	size_t off = 0;
	while (off < size) {
		size_t n = size - off < 65000 ? size - off : 65000;
		assert_int_equal(imap_parser_feed(p, msg + off, n, &used, &cmd, &error),
				 IMAP_PARSE_NEED_MORE);
		assert_int_equal(used, n);
		off += n;
	}
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)"\r\n", 2, &used, &cmd, &error),
			 IMAP_PARSE_COMMAND);
	assert_int_equal(cmd->args.count, 2);
	assert_int_equal(cmd->args.args[1].len, size);
	assert_memory_equal(cmd->args.args[1].str, msg, size);
	assert_int_equal(cmd->args.args[1].str[size], '\0');
	imap_parser_destroy(&p);
	free(msg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_literal8),
		cmocka_unit_test(test_atom_utf8),
		cmocka_unit_test(test_refused_without_events),
		cmocka_unit_test(test_skip_line_literal),
		cmocka_unit_test(test_literal_events),
		cmocka_unit_test(test_large_literal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
