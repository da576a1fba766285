/* Unit tests for the IMAP parser, sequence sets and FETCH attributes.
 * Every input is fed whole and one byte at a time; both must give the same
 * transcript of events. */
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
			buf_printf(out, "L%zu:", a->len);
			buf_append(out, a->str, a->len);
			break;
		case IMAP_ARG_LIST:
			buf_append_str(out, "(");
			render_list(out, a->list);
			buf_append_str(out, ")");
			break;
		}
	}
}

/* Feed input in chunks of `chunk` bytes; return the transcript. */
static char *run(const struct imap_parser_limits *limits, const char *input, size_t len,
		 size_t chunk)
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

static void check_limits(const struct imap_parser_limits *limits, const char *input,
			 size_t len, const char *expected)
{
	char *whole = run(limits, input, len, len);
	char *bytes = run(limits, input, len, 1);
	char *threes = run(limits, input, len, 3);
	assert_string_equal(whole, expected);
	assert_string_equal(bytes, expected);
	assert_string_equal(threes, expected);
	free(whole);
	free(bytes);
	free(threes);
}

static void check(const char *input, const char *expected)
{
	struct imap_parser_limits limits;
	imap_parser_limits_default(&limits, 1);
	check_limits(&limits, input, strlen(input), expected);
}

static void test_arguments(void **state)
{
	(void)state;
	check("a1 NOOP\r\n", "[a1 NOOP]");
	check("a1 noop\n", "[a1 NOOP]");
	check("\r\n\r\na1 CAPABILITY\r\n", "[a1 CAPABILITY]");
	check("x LOGIN user \"pa ss\"\r\n", "[x LOGIN a:user q:pa ss]");
	check("x LOGIN \"a\\\\b\\\"c\" nil\r\n", "[x LOGIN q:a\\b\"c NIL]");
	check("x LIST \"\" *\r\n", "[x LIST q: a:*]");
	check("x LIST \"\" %/x\r\n", "[x LIST q: a:%/x]");
	check("x STORE 1:* +FLAGS (\\Seen \\Deleted)\r\n",
	      "[x STORE a:1:* a:+FLAGS (a:\\Seen a:\\Deleted)]");
	check("x FETCH 1 (a (b (c)) () d)\r\n", "[x FETCH a:1 (a:a (a:b (a:c)) () a:d)]");
	check("x FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n",
	      "[x FETCH a:1 (a:FLAGS a:BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)]");
	check("x  FETCH  1   FLAGS \r\n", "<x BAD Missing command name>");
	check("x FETCH  1   FLAGS \r\n", "[x FETCH a:1 a:FLAGS]");
	check("x SELECT \"Caf\xc3\xa9\"\r\n", "[x SELECT q:Caf\xc3\xa9]");
	check("a1 NOOP\r\na2 NOOP\r\n", "[a1 NOOP][a2 NOOP]");
	check("a1 NOOP", "...");
}

static void test_literals(void **state)
{
	(void)state;
	/* a literal may hold NUL: explicit lengths */
	struct imap_parser_limits limits;
	imap_parser_limits_default(&limits, 1);
	static const char in[] = "a LOGIN {4}\r\nuser {5}\r\npa\0ss\r\n";
	char *out = run(&limits, in, sizeof(in) - 1, 1);
	assert_int_equal(memcmp(out, "++[a LOGIN L4:user L5:pa\0ss]", 28), 0);
	free(out);
	check("a LOGIN {4+}\r\nuser {0}\r\n\r\n", "+[a LOGIN L4:user L0:]");
	check("a X ({2}\r\nab c)\r\n", "+[a X (L2:ab a:c)]");
	check("a X {2}\nab\n", "+[a X L2:ab]");
	check("a X {3}\r\n\r\n\r\r\n", "+[a X L3:\r\n\r]");
}

static void test_errors(void **state)
{
	(void)state;
	check("\"x NOOP\r\nb NOOP\r\n", "<* BAD Invalid tag>[b NOOP]");
	check("a+ NOOP\r\n", "<* BAD Invalid tag>");
	check("a\r\n", "<a BAD Missing command name>");
	check("a N@OP\r\n", "<a BAD Invalid command name>");
	check("a X (b\r\n", "<a BAD Missing ')'>");
	check("a X b)\r\n", "<a BAD Unexpected ')'>");
	check("a X \"abc\r\nb NOOP\r\n", "<a BAD Missing '\"'>[b NOOP]");
	check("a X \"a\\bc\"\r\n", "<a BAD Invalid escape in quoted string>");
	check("a X {}\r\n", "<a BAD Invalid literal size>");
	check("a X {1x}\r\n", "<a BAD Invalid literal size>");
	check("a X {1+x}\r\n", "<a BAD Invalid literal size>");
	check("a X {1}x\r\n", "<a BAD Missing CRLF after literal size>");
	check("a X {12345678901}\r\n", "<a BAD Literal too large>");
	check("a X \x01\r\n", "<a BAD Invalid characters in command>");
	check("a X ab\x7f\r\n", "<a BAD Invalid characters in atom>");
	check("a X b\rc\r\nd NOOP\r\n", "<a BAD CR without LF>[d NOOP]");
	static const char nul[] = "a X \"a\0b\"\r\nb NOOP\r\n";
	struct imap_parser_limits limits;
	imap_parser_limits_default(&limits, 1);
	check_limits(&limits, nul, sizeof(nul) - 1, "<a BAD NUL in quoted string>[b NOOP]");
}

static void test_limits(void **state)
{
	(void)state;
	struct imap_parser_limits limits = { .max_line = 64, .max_literal = 10, .max_args = 4,
					     .max_depth = 2 };
	char line[300];

	/* overlong line: discarded to LF, then the next command works */
	memset(line, 'x', sizeof(line));
	memcpy(line, "a X ", 4);
	memcpy(line + 290, "\r\nb NOOP\r\n", 10);
	check_limits(&limits, line, 300, "<a BAD Line too long>[b NOOP]");
	/* exactly at the limit is fine: 62 bytes + CRLF counts 63 (LF free) */
	memset(line, 'y', 62);
	memcpy(line, "a X ", 4);
	memcpy(line + 62, "\r\n", 2);
	char *out = run(&limits, line, 64, 1);
	assert_memory_equal(out, "[a X a:yy", 9);
	free(out);

	/* synchronising literal too large: refused at once, no "+" */
	check_limits(&limits, "a X {11}\r\nb NOOP\r\n", 18, "<a BAD Literal too large>[b NOOP]");
	/* non-synchronising: its bytes are skipped, then the line */
	check_limits(&limits, "a X {11+}\r\n0123456789A rest\r\nb NOOP\r\n", 37,
		     "<a BAD Literal too large>[b NOOP]");
	/* literals of one command add up */
	check_limits(&limits, "a X {6}\r\n123456 {6}\r\nb NOOP\r\n", 29,
		     "+<a BAD Literal too large>[b NOOP]");
	check_limits(&limits, "a X 1 2 3 4 5\r\nb NOOP\r\n", 23,
		     "<a BAD Too many arguments>[b NOOP]");
	check_limits(&limits, "a X ((()))\r\nb NOOP\r\n", 20,
		     "<a BAD Too deeply nested lists>[b NOOP]");
	check_limits(&limits, "a X B[[[x]]]\r\nb NOOP\r\n", 22,
		     "<a BAD Too deeply nested brackets>[b NOOP]");

	/* tighter limits before authentication; raised after */
	struct imap_parser_limits pre, post;
	imap_parser_limits_default(&pre, 0);
	imap_parser_limits_default(&post, 1);
	assert_true(pre.max_line < post.max_line);
	imap_parser *p = imap_parser_create(&pre);
	size_t big = pre.max_line + 100;
	char *cmd = malloc(big + 2);
	memset(cmd, 'z', big);
	memcpy(cmd, "a X ", 4);
	memcpy(cmd + big, "\r\n", 2);
	struct imap_command *c;
	const char *error;
	size_t used;
	assert_int_equal(imap_parser_feed(p, (uint8_t *)cmd, big + 2, &used, &c, &error),
			 IMAP_PARSE_ERROR);
	assert_string_equal(error, "Line too long");
	imap_parser_set_limits(p, &post);
	assert_int_equal(imap_parser_feed(p, (uint8_t *)cmd, big + 2, &used, &c, &error),
			 IMAP_PARSE_COMMAND);
	assert_int_equal(used, big + 2);
	assert_int_equal(c->args.args[0].len, big - 4);
	free(cmd);
	imap_parser_destroy(&p);
}

static void test_seqset(void **state)
{
	(void)state;
	struct imap_seqset set;
	const char *error;

	assert_int_equal(imap_seqset_parse("1:*", 10, &set, &error), 0);
	imap_seqset_resolve(&set, 5);
	assert_true(imap_seqset_contains(&set, 1));
	assert_true(imap_seqset_contains(&set, 5));
	assert_false(imap_seqset_contains(&set, 6));
	assert_int_equal(imap_seqset_max(&set), 5);
	imap_seqset_deinit(&set);

	assert_int_equal(imap_seqset_parse("3,5:7,9:8,*", 10, &set, &error), 0);
	imap_seqset_resolve(&set, 20);
	uint32_t in[] = { 3, 5, 6, 7, 8, 9, 20 }, out[] = { 1, 2, 4, 10, 19, 21 };
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
		assert_true(imap_seqset_contains(&set, in[i]));
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]); i++)
		assert_false(imap_seqset_contains(&set, out[i]));
	assert_int_equal(set.count, 3); /* 3, 5:9, 20 after merging */
	imap_seqset_deinit(&set);

	/* reversed range with '*' beyond: "*:4" on a mailbox of 2 */
	assert_int_equal(imap_seqset_parse("*:4", 10, &set, &error), 0);
	imap_seqset_resolve(&set, 2);
	assert_true(imap_seqset_contains(&set, 2));
	assert_true(imap_seqset_contains(&set, 4));
	assert_int_equal(imap_seqset_max(&set), 4);
	imap_seqset_deinit(&set);

	/* empty mailbox: '*' is 0 and matches nothing */
	assert_int_equal(imap_seqset_parse("*", 10, &set, &error), 0);
	imap_seqset_resolve(&set, 0);
	assert_false(imap_seqset_contains(&set, 1));
	imap_seqset_deinit(&set);

	assert_int_equal(imap_seqset_parse("4294967295", 10, &set, &error), 0);
	imap_seqset_deinit(&set);
	const char *bad[] = { "", "0", "01", "1:", ":1", "1,", ",1", "1::2", "a", "4294967296",
			      "1:0", "1 2", "-1", "1:*x" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(imap_seqset_parse(bad[i], 10, &set, &error), -1);
		assert_string_equal(error, "Invalid sequence set");
		assert_null(set.ranges);
	}
	assert_int_equal(imap_seqset_parse("1,2,3", 2, &set, &error), -1);
	assert_string_equal(error, "Too many ranges in sequence set");
}

static int parse_fetch(const char *line, struct imap_fetch_attrs *attrs, const char **error)
{
	struct imap_parser_limits limits;
	imap_parser_limits_default(&limits, 1);
	imap_parser *p = imap_parser_create(&limits);
	struct imap_command *cmd;
	size_t used;
	int ret = imap_parser_feed(p, (const uint8_t *)line, strlen(line), &used, &cmd, error);
	assert_int_equal(ret, IMAP_PARSE_COMMAND);
	ret = imap_fetch_attrs_parse(&cmd->args.args[1], attrs, error);
	imap_parser_destroy(&p);
	return ret;
}

static void test_fetch_attrs(void **state)
{
	(void)state;
	struct imap_fetch_attrs a;
	const char *error;

	assert_int_equal(parse_fetch("a FETCH 1 FAST\r\n", &a, &error), 0);
	assert_int_equal(a.items, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
					  IMAP_FETCH_RFC822_SIZE);
	assert_int_equal(parse_fetch("a FETCH 1 all\r\n", &a, &error), 0);
	assert_int_equal(a.items, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
					  IMAP_FETCH_RFC822_SIZE | IMAP_FETCH_ENVELOPE);
	assert_int_equal(parse_fetch("a FETCH 1 FULL\r\n", &a, &error), 0);
	assert_int_equal(a.items, IMAP_FETCH_FLAGS | IMAP_FETCH_INTERNALDATE |
					  IMAP_FETCH_RFC822_SIZE | IMAP_FETCH_ENVELOPE |
					  IMAP_FETCH_BODY);
	assert_int_equal(parse_fetch("a FETCH 1 (ENVELOPE BODYSTRUCTURE body MODSEQ)\r\n", &a,
				     &error), 0);
	assert_int_equal(a.items, IMAP_FETCH_ENVELOPE | IMAP_FETCH_BODYSTRUCTURE |
					  IMAP_FETCH_BODY | IMAP_FETCH_MODSEQ);
	/* numbered parts, MIME, BINARY (RFC 3516) */
	assert_int_equal(parse_fetch("a FETCH 1 (BODY[1.2.MIME] BODY.PEEK[2.HEADER.FIELDS (A)] "
				     "BINARY[1]<0.5> BINARY.PEEK[] BINARY.SIZE[3.1] BODY[2.TEXT])\r\n",
				     &a, &error), 0);
	assert_int_equal(a.n_bodies, 6);
	assert_int_equal(a.bodies[0].section, IMAP_SECTION_MIME);
	assert_int_equal(a.bodies[0].n_part, 2);
	assert_int_equal(a.bodies[0].part[1], 2);
	assert_int_equal(a.bodies[1].section, IMAP_SECTION_HEADER_FIELDS);
	assert_int_equal(a.bodies[1].part[0], 2);
	assert_int_equal(a.bodies[2].kind, IMAP_FETCH_KIND_BINARY);
	assert_true(a.bodies[2].partial);
	assert_false(a.bodies[2].peek);
	assert_int_equal(a.bodies[3].n_part, 0);
	assert_true(a.bodies[3].peek);
	assert_int_equal(a.bodies[4].kind, IMAP_FETCH_KIND_BINARY_SIZE);
	assert_true(a.bodies[4].peek);
	assert_int_equal(a.bodies[5].section, IMAP_SECTION_TEXT);
	imap_fetch_attrs_deinit(&a);
	assert_int_equal(parse_fetch("a FETCH 1 (UID flags RFC822.SIZE INTERNALDATE)\r\n", &a,
				     &error), 0);
	assert_int_equal(a.items, 0x0f);
	assert_int_equal(a.n_bodies, 0);
	assert_int_equal(parse_fetch("a FETCH 1 (BODY[] BODY.PEEK[HEADER] body[text]<5.10> "
				     "RFC822 RFC822.HEADER RFC822.TEXT)\r\n", &a, &error), 0);
	assert_int_equal(a.n_bodies, 6);
	assert_int_equal(a.bodies[0].section, IMAP_SECTION_ALL);
	assert_false(a.bodies[0].peek);
	assert_int_equal(a.bodies[1].section, IMAP_SECTION_HEADER);
	assert_true(a.bodies[1].peek);
	assert_int_equal(a.bodies[2].section, IMAP_SECTION_TEXT);
	assert_true(a.bodies[2].partial);
	assert_int_equal(a.bodies[2].offset, 5);
	assert_int_equal(a.bodies[2].count, 10);
	assert_true(a.bodies[3].rfc822);
	assert_true(a.bodies[4].peek);
	assert_false(a.bodies[5].peek);
	assert_int_equal(parse_fetch("a FETCH 1 BODY.PEEK[]\r\n", &a, &error), 0);
	assert_true(a.bodies[0].peek);

	const char *bad[] = {
		"a FETCH 1 BINARY[HEADER]\r\n", "a FETCH 1 BINARY.SIZE[1]<0.1>\r\n",
		"a FETCH 1 BODY[MIME]\r\n", "a FETCH 1 BODY[0]\r\n", "a FETCH 1 BODY[1.0]\r\n",
		"a FETCH 1 BODY[1.]\r\n", "a FETCH 1 BODY[1x]\r\n",
		"a FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17]\r\n",
		"a FETCH 1 FOO\r\n", "a FETCH 1 ()\r\n", "a FETCH 1 (FAST)\r\n",
		"a FETCH 1 BODY[\r\n", "a FETCH 1 BODY[]<1>\r\n",
		"a FETCH 1 BODY[]<1.0>\r\n", "a FETCH 1 BODY[]<a.b>\r\n",
		"a FETCH 1 \"FLAGS\"\r\n",
		"a FETCH 1 BODY[]x\r\n", "a FETCH 1 (FLAGS (UID))\r\n",
		"a FETCH 1 (BODY[] BODY[] BODY[] BODY[] BODY[] BODY[] BODY[] BODY[] BODY[])\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(parse_fetch(bad[i], &a, &error), -1);
}

static void test_fetch_header_fields(void **state)
{
	(void)state;
	struct imap_fetch_attrs a;
	const char *error;

	assert_int_equal(parse_fetch("a FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (From to "
				     "Message-ID)] body[header.fields.not (x-Spam)]<2.30>)\r\n",
				     &a, &error), 0);
	assert_int_equal(a.items, IMAP_FETCH_UID);
	assert_int_equal(a.n_bodies, 2);
	assert_int_equal(a.bodies[0].section, IMAP_SECTION_HEADER_FIELDS);
	assert_true(a.bodies[0].peek);
	assert_false(a.bodies[0].partial);
	assert_string_equal(a.bodies[0].fields, "FROM TO MESSAGE-ID");
	assert_int_equal(a.bodies[0].n_fields, 3);
	assert_true(imap_fetch_body_field_match(&a.bodies[0], "message-id", 10));
	assert_true(imap_fetch_body_field_match(&a.bodies[0], "FROM", 4));
	assert_true(imap_fetch_body_field_match(&a.bodies[0], "To", 2));
	assert_false(imap_fetch_body_field_match(&a.bodies[0], "T", 1));
	assert_false(imap_fetch_body_field_match(&a.bodies[0], "Fromx", 5));
	assert_false(imap_fetch_body_field_match(&a.bodies[0], "", 0));
	assert_int_equal(a.bodies[1].section, IMAP_SECTION_HEADER_FIELDS_NOT);
	assert_false(a.bodies[1].peek);
	assert_true(a.bodies[1].partial);
	assert_int_equal(a.bodies[1].offset, 2);
	assert_int_equal(a.bodies[1].count, 30);
	assert_string_equal(a.bodies[1].fields, "X-SPAM");
	imap_fetch_attrs_deinit(&a);
	assert_int_equal(a.n_bodies, 0);
	imap_fetch_attrs_deinit(&a); /* twice is fine */

	/* one atom, not a list; a single field */
	assert_int_equal(parse_fetch("a FETCH 1 BODY[HEADER.FIELDS (SUBJECT)]\r\n", &a, &error),
			 0);
	assert_string_equal(a.bodies[0].fields, "SUBJECT");
	imap_fetch_attrs_deinit(&a);

	/* the limits: 64 names of 128 bytes pass, one more of either is BAD */
	char line[16384];
	char name[IMAP_FETCH_FIELD_NAME_MAX + 2];
	memset(name, 'x', sizeof(name));
	name[IMAP_FETCH_FIELD_NAME_MAX] = '\0';
	size_t n = (size_t)snprintf(line, sizeof(line), "a FETCH 1 BODY[HEADER.FIELDS (");
	for (unsigned i = 0; i < IMAP_FETCH_FIELDS_MAX; i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, "%s%s", i ? " " : "", name);
	snprintf(line + n, sizeof(line) - n, ")]\r\n");
	assert_int_equal(parse_fetch(line, &a, &error), 0);
	assert_int_equal(a.bodies[0].n_fields, IMAP_FETCH_FIELDS_MAX);
	imap_fetch_attrs_deinit(&a);
	snprintf(line + n, sizeof(line) - n, " y)]\r\n");
	assert_int_equal(parse_fetch(line, &a, &error), -1);
	assert_string_equal(error, "Too many header fields");
	name[IMAP_FETCH_FIELD_NAME_MAX] = 'x';
	name[IMAP_FETCH_FIELD_NAME_MAX + 1] = '\0';
	snprintf(line, sizeof(line), "a FETCH 1 BODY[HEADER.FIELDS (FROM %s)]\r\n", name);
	assert_int_equal(parse_fetch(line, &a, &error), -1);
	assert_string_equal(error, "Header field name too long");

	/* the lists of the first eight are freed when the ninth is refused */
	static const char nine_bodies[] = "a FETCH 1 (BODY[HEADER.FIELDS (A)] BODY[HEADER.FIELDS "
					  "(B)] BODY[] BODY[] BODY[] BODY[] BODY[] BODY[] "
					  "BODY[HEADER.FIELDS (C)])\r\n";
	const char *bad[] = {
		"a FETCH 1 BODY[HEADER.FIELDS]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS ()]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS FROM]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM  TO)]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS ( FROM)]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM )]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM:)]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FR*M)]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS ((FROM))]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM)]x\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS (FROM)]<1>\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS  (FROM)]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDS.NOT]\r\n",
		"a FETCH 1 BODY[HEADER.FIELDSX (FROM)]\r\n",
		"a FETCH 1 BODY[1.HEADER.FIELDS ()]\r\n",
		"a FETCH 1 BODY[1.HEADERS]\r\n",
		nine_bodies,
		"a FETCH 1 (BODY[HEADER.FIELDS (A)] FOO)\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a.n_bodies = 99; /* a failed parse leaves nothing to free */
		if (parse_fetch(bad[i], &a, &error) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(a.n_bodies, 0);
	}
	/* quotes and CTLs cannot reach a field name: the command parser
	 * refuses them inside an atom */
	struct imap_parser_limits limits;
	imap_parser_limits_default(&limits, 1);
	imap_parser *p = imap_parser_create(&limits);
	struct imap_command *cmd;
	size_t used;
	const char *q = "a FETCH 1 BODY[HEADER.FIELDS (\"FROM\")]\r\n";
	assert_int_equal(imap_parser_feed(p, (const uint8_t *)q, strlen(q), &used, &cmd, &error),
			 IMAP_PARSE_ERROR);
	imap_parser_destroy(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arguments),  cmocka_unit_test(test_literals),
		cmocka_unit_test(test_errors),     cmocka_unit_test(test_limits),
		cmocka_unit_test(test_seqset),     cmocka_unit_test(test_fetch_attrs),
		cmocka_unit_test(test_fetch_header_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
