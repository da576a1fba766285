/* Tests of the pure helpers for mailbox names and arguments: modified
 * UTF-7 (RFC 3501 5.1.3) <-> UTF-8 (imap-utf7.h) and LIST pattern
 * matching (imap-list-match.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap-list-match.h"
#include "imap-utf7.h"

/* UTF-8 <-> modified UTF-7 pairs: RFC 3501's example, RFC 2152's smiley,
 * '&', surrogate pairs, control characters, runs at both ends. */
static const struct {
	const char *utf8;
	const char *utf7;
} pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "\xe2\x98\xba!", "&Jjo-!" },
	{ "&", "&-" },
	{ "a&b&&", "a&-b&-&-" },
	{ "\xc3\xa4", "&AOQ-" },
	{ "\xc3\xa9\xc3\xa9", "&AOkA6Q-" },
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },
	{ "\xc3\x9cn\xc3\xaf" "c\xc3\xb8" "d\xc3\xa9 & co", "&ANw-n&AO8-c&APg-d&AOk- &- co" },
	{ "\x01", "&AAE-" },
	{ "Sent/\xc3\xa4&\xc3\xa4", "Sent/&AOQ-&-&AOQ-" },
};

static void test_round_trips(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		buf b;
		const char *error = NULL;
		buf_init(&b);
		assert_int_equal(imap_utf8_to_utf7(pairs[i].utf8, strlen(pairs[i].utf8), &b), 0);
		buf_append(&b, "", 1);
		assert_string_equal((const char *)b.data, pairs[i].utf7);
		buf_reset(&b);
		assert_int_equal(imap_utf7_to_utf8(pairs[i].utf7, strlen(pairs[i].utf7), &b, &error),
				 0);
		buf_append(&b, "", 1);
		assert_string_equal((const char *)b.data, pairs[i].utf8);
		buf_deinit(&b);
	}
}

/* Every code point class through both directions (the BMP around the
 * surrogates, the astral planes). */
static void test_code_points(void **state)
{
	(void)state;
	static const uint32_t cps[] = { 0x1f, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000,
					0xfffd, 0xffff, 0x10000, 0x10ffff };
	for (size_t i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
		char u8[8];
		uint32_t cp = cps[i];
		size_t n;
		if (cp < 0x80) {
			u8[0] = (char)cp;
			n = 1;
		} else if (cp < 0x800) {
			u8[0] = (char)(0xc0 | (cp >> 6));
			u8[1] = (char)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			u8[0] = (char)(0xe0 | (cp >> 12));
			u8[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
			u8[2] = (char)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			u8[0] = (char)(0xf0 | (cp >> 18));
			u8[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
			u8[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
			u8[3] = (char)(0x80 | (cp & 0x3f));
			n = 4;
		}
		buf a, b;
		const char *error;
		buf_init(&a);
		buf_init(&b);
		assert_int_equal(imap_utf8_to_utf7(u8, n, &a), 0);
		assert_true(a.len > 2 && a.data[0] == '&' && a.data[a.len - 1] == '-');
		assert_int_equal(imap_utf7_to_utf8((const char *)a.data, a.len, &b, &error), 0);
		assert_int_equal(b.len, n);
		assert_memory_equal(b.data, u8, n);
		buf_deinit(&a);
		buf_deinit(&b);
	}
}

static void test_malformed_utf7(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"&",          /* unterminated */
		"&AOQ",       /* unterminated run */
		"a&AOQ-&AOQ-", /* null shift: two runs touch */
		"&AGE-",      /* 'a' needlessly encoded */
		"&ACY-",      /* '&' encoded */
		"&AAA-",      /* U+0000 */
		"&AO-",       /* not a whole code unit */
		"&AOQA-",     /* extra sextet */
		"&AOR-",      /* non-zero padding bits */
		"&2D0-",      /* lone high surrogate */
		"&3gA-",      /* lone low surrogate */
		"&2D3YPQ-",   /* high surrogate followed by a high one */
		"&AOQ=-",     /* '=' is not in the alphabet */
		"&AOQ/-",     /* '/' is not in the alphabet (',' is) */
		"\xc3\xa4",   /* raw 8-bit */
		"a\tb",       /* raw control */
		"a\x7f",
		"&-&",        /* '&' then an unterminated run */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf b;
		const char *error = NULL;
		buf_init(&b);
		buf_append(&b, "kept", 4);
		if (imap_utf7_to_utf8(bad[i], strlen(bad[i]), &b, &error) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_non_null(error);
		assert_int_equal(b.len, 4); /* out left as it was */
		buf_deinit(&b);
	}
}

static void test_invalid_utf8(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"\xc3",             /* truncated */
		"\xc0\xaf",         /* overlong '/' */
		"\xe0\x80\xaf",     /* overlong */
		"\xed\xa0\x80",     /* surrogate */
		"\xf4\x90\x80\x80", /* above U+10FFFF */
		"\xff",
		"a\x80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		buf b;
		buf_init(&b);
		assert_int_equal(imap_utf8_valid(bad[i], strlen(bad[i])), 0);
		assert_int_equal(imap_utf8_to_utf7(bad[i], strlen(bad[i]), &b), -1);
		assert_int_equal(b.len, 0);
		buf_deinit(&b);
	}
	buf b;
	buf_init(&b);
	assert_int_equal(imap_utf8_to_utf7("a\0b", 3, &b), -1); /* NUL */
	buf_deinit(&b);
	assert_int_equal(imap_utf8_valid("\xf4\x8f\xbf\xbf", 4), 1);
}

/* RFC 3501 6.3.8: '*' crosses levels, '%' does not; INBOX is
 * case-insensitive as the first level only. */
static void test_list_match(void **state)
{
	(void)state;
	static const struct {
		const char *pattern, *name;
		int match;
	} cases[] = {
		{ "*", "INBOX", 1 },
		{ "*", "a/b/c", 1 },
		{ "%", "a", 1 },
		{ "%", "a/b", 0 },
		{ "a/%", "a/b", 1 },
		{ "a/%", "a/b/c", 0 },
		{ "a/*", "a/b/c", 1 },
		{ "a/*", "a", 0 },
		{ "a*", "a", 1 },
		{ "a%", "ab/c", 0 },
		{ "%/%", "a/b", 1 },
		{ "%/%", "a/b/c", 0 },
		{ "*/c", "a/b/c", 1 },
		{ "%/c", "a/b/c", 0 },
		{ "inbox", "INBOX", 1 },
		{ "InBoX/%", "INBOX/Sent", 1 },
		{ "inbox/sent", "INBOX/Sent", 0 }, /* only INBOX is caseless */
		{ "INB*", "INBOX", 1 },
		{ "inb%", "INBOX", 1 },
		{ "inboxes", "inboxes", 1 },
		{ "Inboxes", "inboxes", 0 },
		{ "Fruit", "fruit", 0 },
		{ "*2", "foo2/bar2", 1 },
		{ "*2", "foo2/bar1", 0 },
		{ "%*%", "a/b", 1 },
		{ "%%", "a/b", 0 },
		{ "", "", 1 },
		{ "", "a", 0 },
		{ "a", "", 0 },
		{ "\xc3\xa4/%", "\xc3\xa4/\xc3\xb6", 1 },
		{ "%", "\xc3\xa4\xc3\xb6", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (imap_list_match(cases[i].pattern, cases[i].name) != cases[i].match)
			fail_msg("\"%s\" vs \"%s\": want %d", cases[i].pattern, cases[i].name,
				 cases[i].match);
	}
	/* long names take the heap path */
	char name[600], pattern[600];
	memset(name, 'x', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	name[300] = '/';
	snprintf(pattern, sizeof(pattern), "x*x/%%x");
	assert_int_equal(imap_list_match(pattern, name), 1);
	assert_int_equal(imap_list_match("x%", name), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_code_points),
		cmocka_unit_test(test_malformed_utf7),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_list_match),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
