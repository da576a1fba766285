/* test-imapc-reader.c: the benchmarks' IMAP response reader (imap-client.h):
 * whole input and one byte at a time give the same responses; literals are
 * skipped and counted; the limits fail the reader. cmocka. */
#include "imap-client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define MAX_RESP 16

struct got {
	char text[MAX_RESP][256];
	uint64_t literal[MAX_RESP];
	size_t n;
	int error;  /* -1 when the reader failed */
};

/* Feed input in pieces of step bytes; collect the responses. */
static void feed(const char *input, size_t len, size_t step, const struct imapc_limits *lim,
		 struct got *g)
{
	struct imapc_reader r;
	imapc_reader_init(&r, lim);
	memset(g, 0, sizeof(*g));
	for (size_t pos = 0; pos < len && g->error == 0;) {
		size_t chunk = len - pos < step ? len - pos : step;
		size_t off = 0;
		while (off < chunk) {
			size_t used;
			struct imapc_response resp;
			const char *error;
			int ret = imapc_reader_read(&r, (const uint8_t *)input + pos + off,
						    chunk - off, &used, &resp, &error);
			if (ret < 0) {
				g->error = -1;
				assert_non_null(error);
				break;
			}
			off += used;
			if (ret == 1) {
				assert_true(g->n < MAX_RESP);
				assert_true(resp.len < sizeof(g->text[0]));
				memcpy(g->text[g->n], resp.text, resp.len + 1);
				g->literal[g->n] = resp.literal_bytes;
				g->n++;
			} else {
				assert_int_equal(off, chunk);  /* 0: all consumed */
			}
		}
		pos += chunk;
	}
	imapc_reader_deinit(&r);
}

static void check_both(const char *input, const struct imapc_limits *lim, struct got *whole)
{
	struct got bytewise;
	feed(input, strlen(input), strlen(input), lim, whole);
	feed(input, strlen(input), 1, lim, &bytewise);
	assert_int_equal(whole->n, bytewise.n);
	assert_int_equal(whole->error, bytewise.error);
	for (size_t i = 0; i < whole->n; i++) {
		assert_string_equal(whole->text[i], bytewise.text[i]);
		assert_int_equal(whole->literal[i], bytewise.literal[i]);
	}
}

static void test_lines(void **state)
{
	(void)state;
	struct got g;
	check_both("* OK ready\r\n* 3 EXISTS\r\na1 OK done\r\n", NULL, &g);
	assert_int_equal(g.n, 3);
	assert_string_equal(g.text[0], "* OK ready");
	assert_string_equal(g.text[1], "* 3 EXISTS");
	assert_string_equal(g.text[2], "a1 OK done");
	assert_int_equal(g.error, 0);
}

static void test_literals(void **state)
{
	(void)state;
	struct got g;
	check_both("* 1 FETCH (BODY[] {10}\r\nhello\r\nwor FLAGS (\\Seen))\r\n"
		   "* 2 FETCH (ENVELOPE (NIL {3}\r\nabc NIL {0}\r\n))\r\n"
		   "a2 OK\r\n", NULL, &g);
	assert_int_equal(g.n, 3);
	/* the literal's bytes are left out, the rest of the line kept */
	assert_string_equal(g.text[0], "* 1 FETCH (BODY[] {10} FLAGS (\\Seen))");
	assert_int_equal(g.literal[0], 10);
	assert_string_equal(g.text[1], "* 2 FETCH (ENVELOPE (NIL {3} NIL {0}))");
	assert_int_equal(g.literal[1], 3);
	assert_string_equal(g.text[2], "a2 OK");
	assert_int_equal(g.literal[2], 0);
}

static void test_bare_lf_and_continuation(void **state)
{
	(void)state;
	struct got g;
	check_both("+ idling\n* 4 EXISTS\r\n", NULL, &g);
	assert_int_equal(g.n, 2);
	assert_string_equal(g.text[0], "+ idling");
	assert_string_equal(g.text[1], "* 4 EXISTS");
}

static void test_line_limit(void **state)
{
	(void)state;
	struct imapc_limits lim = {.max_line = 16, .max_literal = 100};
	struct got g;
	check_both("* 0123456789abcd\r\n", &lim, &g);   /* 16 bytes: fits */
	assert_int_equal(g.n, 1);
	assert_int_equal(g.error, 0);
	check_both("* 0123456789abcde\r\n", &lim, &g);  /* 17 bytes */
	assert_int_equal(g.n, 0);
	assert_int_equal(g.error, -1);
	check_both("* 0123456789abcde\n", &lim, &g);    /* 17 with a bare LF */
	assert_int_equal(g.n, 0);
	assert_int_equal(g.error, -1);
	/* the text of a response is bounded across its literals too */
	check_both("* 1 (x {1}\r\nx yyyyyyyyyy)\r\n", &lim, &g);
	assert_int_equal(g.error, -1);
}

static void test_literal_limit(void **state)
{
	(void)state;
	struct imapc_limits lim = {.max_line = 100, .max_literal = 10};
	struct got g;
	check_both("* 1 FETCH (BODY[] {10}\r\n0123456789)\r\n", &lim, &g);
	assert_int_equal(g.n, 1);
	check_both("* 1 FETCH (BODY[] {11}\r\n01234567890)\r\n", &lim, &g);
	assert_int_equal(g.n, 0);
	assert_int_equal(g.error, -1);
	/* a literal size too long to be a number is not a literal: a line */
	check_both("* x {1234567890123456789012}\r\n", &lim, &g);
	assert_int_equal(g.n, 1);
}

static void test_failed_stays_failed(void **state)
{
	(void)state;
	struct imapc_limits lim = {.max_line = 4, .max_literal = 4};
	struct imapc_reader r;
	imapc_reader_init(&r, &lim);
	size_t used;
	struct imapc_response resp;
	const char *error;
	assert_int_equal(imapc_reader_read(&r, (const uint8_t *)"* too long\r\n", 12, &used,
					   &resp, &error), -1);
	assert_int_equal(imapc_reader_read(&r, (const uint8_t *)"a\r\n", 3, &used, &resp,
					   &error), -1);
	imapc_reader_deinit(&r);
}

static void test_untagged_number(void **state)
{
	(void)state;
	uint64_t n = 0;
	struct imapc_response r = {.text = "* 42 EXISTS", .len = 11};
	assert_true(imapc_untagged_number(&r, "EXISTS", &n));
	assert_int_equal(n, 42);
	assert_false(imapc_untagged_number(&r, "EXPUNGE", &n));
	struct imapc_response f = {.text = "* 7 FETCH (FLAGS ())", .len = 20};
	assert_true(imapc_untagged_number(&f, "fetch", &n));
	assert_int_equal(n, 7);
	struct imapc_response o = {.text = "* OK [UIDNEXT 5]", .len = 16};
	assert_false(imapc_untagged_number(&o, "OK", &n));
	struct imapc_response x = {.text = "* 3 EXISTSX", .len = 11};
	assert_false(imapc_untagged_number(&x, "EXISTS", &n));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines),
		cmocka_unit_test(test_literals),
		cmocka_unit_test(test_bare_lf_and_continuation),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_literal_limit),
		cmocka_unit_test(test_failed_stays_failed),
		cmocka_unit_test(test_untagged_number),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
