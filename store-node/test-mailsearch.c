/* Unit tests for store-node/mailsearch: every search key (both ways),
 * nesting, RFC 3501's SEARCH examples, the order of work (metadata, then
 * headers, then ONE body pass), needles cut by chunk boundaries, case
 * folding, malformed programs, failing callbacks; dates from real-world
 * Date: headers; RFC 5256 base subjects; addresses; SORT by every
 * criterion with REVERSE and ties; THREAD ORDEREDSUBJECT and REFERENCES
 * on sets whose expected answers are derived step by step from RFC 5256
 * below; deep threads (iterative code); message-ids.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "buf.h"
#include "mailsearch-private.h"
#include "mailsearch.h"
#include "xalloc.h"

/* ---- a message for the tests ------------------------------------------------- */

/* Headers as "Name: value\n" lines (decoded already, one line per field);
 * the body is handed out in chunks of `chunk` bytes (0: all at once). */
struct tmsg {
	const char *headers;
	const char *body;
	size_t chunk;
	int fail_header, fail_body;
	int header_calls, body_calls;
	struct mailsearch_msg msg;
};

static int tmsg_header(void *ctx, const char *name, mailsearch_text_cb *cb, void *arg)
{
	struct tmsg *t = ctx;
	t->header_calls++;
	if (t->fail_header)
		return -1;
	const char *p = t->headers ? t->headers : "";
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		if (eol == NULL)
			eol = p + strlen(p);
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon != NULL) {
			char field[128];
			size_t flen = (size_t)(colon - p);
			assert_true(flen < sizeof(field));
			memcpy(field, p, flen);
			field[flen] = '\0';
			const char *v = colon + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			if (name == NULL || strcasecmp(name, field) == 0) {
				if (cb(arg, field, v, (size_t)(eol - v)) != 0)
					return 0;
			}
		}
		p = *eol ? eol + 1 : eol;
	}
	return 0;
}

static int tmsg_body(void *ctx, mailsearch_text_cb *cb, void *arg)
{
	struct tmsg *t = ctx;
	t->body_calls++;
	if (t->fail_body)
		return -1;
	const char *b = t->body ? t->body : "";
	size_t len = strlen(b), step = t->chunk ? t->chunk : (len ? len : 1);
	for (size_t off = 0; off < len; off += step) {
		size_t n = len - off < step ? len - off : step;
		if (cb(arg, NULL, b + off, n) != 0)
			break;
	}
	return 0;
}

static const struct mailsearch_msg *tmsg_init(struct tmsg *t, const char *headers,
					      const char *body)
{
	memset(t, 0, sizeof(*t));
	t->headers = headers;
	t->body = body;
	t->msg.uid = 7;
	t->msg.size = 1000;
	t->msg.internal_date_ms = 760168345000; /* 1994-02-02 05:52:25Z */
	t->msg.modseq = 50;
	t->msg.ctx = t;
	t->msg.header = tmsg_header;
	t->msg.body_text = tmsg_body;
	return &t->msg;
}

/* ---- building search programs ------------------------------------------------ */

#define KEY(...) ((struct search_key){__VA_ARGS__})
#define KEYS(...) ((const struct search_key[]){__VA_ARGS__})
#define NKEYS(...) (sizeof(KEYS(__VA_ARGS__)) / sizeof(struct search_key))
#define AND(...) KEY(.op = SEARCH_AND, .children = KEYS(__VA_ARGS__), .n_children = NKEYS(__VA_ARGS__))
#define OR(a, b) KEY(.op = SEARCH_OR, .children = KEYS(a, b), .n_children = 2)
#define NOT(a) KEY(.op = SEARCH_NOT, .children = KEYS(a), .n_children = 1)
#define FLAG(f) KEY(.op = SEARCH_FLAG, .str = (f))
#define HDR(name, v) KEY(.op = SEARCH_HEADER, .str = (name), .str2 = (v))
#define BODY(v) KEY(.op = SEARCH_BODY, .str = (v))
#define TEXT(v) KEY(.op = SEARCH_TEXT, .str = (v))
#define NUM(o, n) KEY(.op = (o), .num = (n))

static const int64_t NOW = 1705485600000; /* 2024-01-17 10:00:00Z */

static int match(const struct search_key k, const struct mailsearch_msg *m)
{
	return mailsearch_match(&k, m, NOW);
}

static const char *const flags_seen_label[] = {"\\Seen", "$Label1", "Work"};

static const char *const std_headers = "From: \"Smith, John\" <john.smith@example.com>\n"
				       "To: ann@example.org, bob@example.org\n"
				       "Cc: Carol <carol@example.net>\n"
				       "Subject: Re: Quarterly report\n"
				       "Date: Tue, 1 Feb 1994 21:52:25 -0800\n"
				       "X-Tag: alpha\n"
				       "X-Tag: beta\n"
				       "X-Empty: \n"
				       "Message-ID: <r1@example.com>\n";
static const char *const std_body = "Hello Ann,\nthe numbers are in the attachment.\n"
				    "Gr\xc3\xbc\xc3\x9f" "e, \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82\n";

/* ---- metadata keys ------------------------------------------------------------ */

static void test_meta_keys(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	t.msg.flags = flags_seen_label;
	t.msg.n_flags = 3;

	assert_int_equal(match(KEY(.op = SEARCH_ALL), m), 1);
	assert_int_equal(match(KEY(.op = SEARCH_NONE), m), 0);

	const struct search_uid_range r1[] = {{1, 3}, {7, 7}, {10, 20}};
	const struct search_uid_range r2[] = {{1, 6}, {8, 100}};
	assert_int_equal(match(KEY(.op = SEARCH_UID, .ranges = r1, .n_ranges = 3), m), 1);
	assert_int_equal(match(KEY(.op = SEARCH_UID, .ranges = r2, .n_ranges = 2), m), 0);
	assert_int_equal(match(KEY(.op = SEARCH_UID, .ranges = r1, .n_ranges = 0), m), 0);

	/* system flags case-insensitive, keywords exact */
	assert_int_equal(match(FLAG("\\Seen"), m), 1);
	assert_int_equal(match(FLAG("\\SEEN"), m), 1);
	assert_int_equal(match(FLAG("\\Flagged"), m), 0);
	assert_int_equal(match(FLAG("$Label1"), m), 1);
	assert_int_equal(match(FLAG("$label1"), m), 0);
	assert_int_equal(match(FLAG("Work"), m), 1);
	assert_int_equal(match(FLAG("Wor"), m), 0);

	/* sizes: strict comparisons */
	assert_int_equal(match(NUM(SEARCH_LARGER, 999), m), 1);
	assert_int_equal(match(NUM(SEARCH_LARGER, 1000), m), 0);
	assert_int_equal(match(NUM(SEARCH_SMALLER, 1001), m), 1);
	assert_int_equal(match(NUM(SEARCH_SMALLER, 1000), m), 0);

	/* MODSEQ: >= */
	assert_int_equal(match(NUM(SEARCH_MODSEQ, 50), m), 1);
	assert_int_equal(match(NUM(SEARCH_MODSEQ, 51), m), 0);
	assert_int_equal(match(NUM(SEARCH_MODSEQ, 0), m), 1);

	/* internal date 1994-02-02 05:52:25Z: UTC day 8798 ("2-Feb-1994") */
	assert_int_equal(match(NUM(SEARCH_ON, 8798), m), 1);
	assert_int_equal(match(NUM(SEARCH_ON, 8797), m), 0);
	assert_int_equal(match(NUM(SEARCH_BEFORE, 8799), m), 1);
	assert_int_equal(match(NUM(SEARCH_BEFORE, 8798), m), 0);
	assert_int_equal(match(NUM(SEARCH_SINCE, 8798), m), 1);
	assert_int_equal(match(NUM(SEARCH_SINCE, 8799), m), 0);
	/* a date before 1970 has a negative day */
	t.msg.internal_date_ms = -1;
	assert_int_equal(match(NUM(SEARCH_BEFORE, 0), m), 1);
	assert_int_equal(match(NUM(SEARCH_SINCE, 0), m), 0);
	t.msg.internal_date_ms = 86400000 - 1; /* last ms of day 0 */
	assert_int_equal(match(NUM(SEARCH_ON, 0), m), 1);
	t.msg.internal_date_ms = 86400000;
	assert_int_equal(match(NUM(SEARCH_ON, 1), m), 1);

	/* OLDER/YOUNGER (RFC 5032): exactly one of them for any interval */
	t.msg.internal_date_ms = NOW - 3600 * 1000; /* an hour ago */
	assert_int_equal(match(NUM(SEARCH_OLDER, 3599), m), 1);
	assert_int_equal(match(NUM(SEARCH_OLDER, 3600), m), 1);
	assert_int_equal(match(NUM(SEARCH_OLDER, 3601), m), 0);
	assert_int_equal(match(NUM(SEARCH_YOUNGER, 3601), m), 1);
	assert_int_equal(match(NUM(SEARCH_YOUNGER, 3600), m), 0);
	assert_int_equal(match(NUM(SEARCH_YOUNGER, UINT64_MAX), m), 1);
	assert_int_equal(match(NUM(SEARCH_OLDER, UINT64_MAX), m), 0);
	t.msg.internal_date_ms = NOW + 1000; /* in the future: young */
	assert_int_equal(match(NUM(SEARCH_YOUNGER, 1), m), 1);
	assert_int_equal(match(NUM(SEARCH_OLDER, 0), m), 0);

	/* none of these read the message */
	assert_int_equal(t.header_calls, 0);
	assert_int_equal(t.body_calls, 0);
}

/* ---- header keys ------------------------------------------------------------------ */

static void test_header_keys(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);

	/* FROM/TO/CC/SUBJECT are HEADER keys: case-insensitive substrings */
	assert_int_equal(match(HDR("From", "smith"), m), 1);
	assert_int_equal(match(HDR("FROM", "JOHN.SMITH@EXAMPLE"), m), 1);
	assert_int_equal(match(HDR("from", "jones"), m), 0);
	assert_int_equal(match(HDR("To", "bob@"), m), 1);
	assert_int_equal(match(HDR("Cc", "carol"), m), 1);
	assert_int_equal(match(HDR("Cc", "ann"), m), 0);
	assert_int_equal(match(HDR("Subject", "quarterly REPORT"), m), 1);
	assert_int_equal(match(HDR("Subject", "annual"), m), 0);
	/* a needle longer than the value, equal to the value */
	assert_int_equal(match(HDR("X-Tag", "alphabet"), m), 0);
	assert_int_equal(match(HDR("X-Tag", "alpha"), m), 1);
	/* the second field of the same name counts too */
	assert_int_equal(match(HDR("X-Tag", "beta"), m), 1);
	/* "" matches when the field exists, even empty */
	assert_int_equal(match(HDR("X-Empty", ""), m), 1);
	assert_int_equal(match(HDR("X-Tag", ""), m), 1);
	assert_int_equal(match(HDR("X-Missing", ""), m), 0);
	assert_int_equal(match(HDR("X-Missing", "a"), m), 0);
	/* the header is not the body */
	assert_int_equal(match(HDR("Subject", "numbers"), m), 0);
	assert_int_equal(t.body_calls, 0);
}

static void test_case_folding(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(
		&t,
		"Subject: \xc3\x89t\xc3\xa9 \xce\x9f\xce\x94\xce\xa5\xce\xa3\xce\xa3\xce\x95\xce\x99\xce\xa3 "
		"\xd0\x9f\xd0\xa0\xd0\x98\xd0\x92\xd0\x95\xd0\xa2 \xc5\x81\xc3\xb3" "d\xc5\xba "
		"\xd4\xb1\xd5\x80 \xe1\xba\x9e 50\xc2\xb5m \xe2\x84\xaa\n",
		"");
	/* Latin-1: "été" vs "ÉTÉ" */
	assert_int_equal(match(HDR("Subject", "\xc3\x89T\xc3\x89"), m), 1);
	assert_int_equal(match(HDR("Subject", "\xc3\xa9t\xc3\xa9"), m), 1);
	/* Greek, final sigma: "οδυσσεις" (with ς at the end) */
	assert_int_equal(match(HDR("Subject", "\xce\xbf\xce\xb4\xcf\x85\xcf\x83\xcf\x83\xce\xb5\xce\xb9\xcf\x82"), m), 1);
	/* Cyrillic: "привет" */
	assert_int_equal(match(HDR("Subject", "\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"), m), 1);
	/* Latin Extended-A: "łódź" vs "ŁÓDŹ" (odd-upper run for Ź) */
	assert_int_equal(match(HDR("Subject", "\xc5\x82\xc3\xb3" "d\xc5\xba"), m), 1);
	assert_int_equal(match(HDR("Subject", "\xc5\x81\xc3\x93" "D\xc5\xb9"), m), 1);
	/* Armenian "ԱՀ" vs "ահ" */
	assert_int_equal(match(HDR("Subject", "\xd5\xa1\xd5\xb0"), m), 1);
	/* capital sharp s folds to ß; micro sign to mu; kelvin to k */
	assert_int_equal(match(HDR("Subject", "\xc3\x9f"), m), 1);
	assert_int_equal(match(HDR("Subject", "50\xce\xbcm"), m), 1);
	assert_int_equal(match(HDR("Subject", "50\xce\x9cM K"), m), 1);
	/* no full folding: ß is not "ss" */
	assert_int_equal(match(HDR("Subject", "ss 50"), m), 0);
	/* different letters stay different */
	assert_int_equal(match(HDR("Subject", "ete"), m), 0);

	/* fold() directly on the edges of the tables */
	assert_int_equal(mailsearch__fold('A'), 'a');
	assert_int_equal(mailsearch__fold('['), '[');
	assert_int_equal(mailsearch__fold(0xd7), 0xd7);   /* multiplication sign */
	assert_int_equal(mailsearch__fold(0xde), 0xfe);   /* thorn */
	assert_int_equal(mailsearch__fold(0x178), 0xff);  /* Ÿ */
	assert_int_equal(mailsearch__fold(0x130), 0x130); /* İ: no simple fold */
	assert_int_equal(mailsearch__fold(0x17f), 's');   /* long s */
	assert_int_equal(mailsearch__fold(0x3a3), 0x3c3);
	assert_int_equal(mailsearch__fold(0x3c2), 0x3c3);
	assert_int_equal(mailsearch__fold(0x401), 0x451); /* Ё */
	assert_int_equal(mailsearch__fold(0x4c1), 0x4c2);
	assert_int_equal(mailsearch__fold(0x1e00), 0x1e01);
	assert_int_equal(mailsearch__fold(0x2126), 0x3c9);
	assert_int_equal(mailsearch__fold(0xff21), 0xff41);
}

/* Raw 8-bit bytes (not UTF-8) match themselves and nothing else. */
static void test_raw_bytes(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, "Subject: caf\xe9 \xff\xfe\n", "");
	assert_int_equal(match(HDR("Subject", "caf\xe9"), m), 1);
	assert_int_equal(match(HDR("Subject", "caf\xc3\xa9"), m), 0); /* é as UTF-8 */
	assert_int_equal(match(HDR("Subject", "CAF\xe9 \xff"), m), 1);
	assert_int_equal(match(HDR("Subject", "\xc9"), m), 0); /* no folding of raw bytes */
}

/* ---- body and text -------------------------------------------------------------- */

static void test_body_and_text(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	for (size_t chunk = 0; chunk <= 7; chunk++) {
		t.chunk = chunk;
		assert_int_equal(match(BODY("numbers are"), m), 1);
		assert_int_equal(match(BODY("NUMBERS ARE IN"), m), 1);
		assert_int_equal(match(BODY("attachment.\ngr"), m), 1);
		assert_int_equal(match(BODY("numbers  are"), m), 0);
		/* multi-byte letters cut by the chunks, and folded */
		assert_int_equal(match(BODY("GR\xc3\x9c\xc3\x9f" "E"), m), 1);
		assert_int_equal(match(BODY("\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82"), m), 1);
		/* the header is not in BODY, but is in TEXT */
		assert_int_equal(match(BODY("Quarterly"), m), 0);
		assert_int_equal(match(TEXT("Quarterly"), m), 1);
		/* TEXT sees field names too */
		assert_int_equal(match(TEXT("x-tag: beta"), m), 1);
		assert_int_equal(match(TEXT("attachment"), m), 1);
		assert_int_equal(match(TEXT("string not in mailbox"), m), 0);
		/* "" is in every body */
		assert_int_equal(match(BODY(""), m), 1);
		assert_int_equal(match(TEXT(""), m), 1);
	}
	/* a needle that only a KMP fallback finds: "aab" in "aaab" cut 1 by 1 */
	const struct mailsearch_msg *m2 = tmsg_init(&t, "", "xaaaab");
	t.chunk = 1;
	assert_int_equal(match(BODY("aaab"), m2), 1);
	assert_int_equal(match(BODY("abab"), m2), 0);
	/* a UTF-8 sequence left unfinished at the end of the body */
	const struct mailsearch_msg *m3 = tmsg_init(&t, "", "abc\xd0");
	assert_int_equal(match(BODY("c\xd0"), m3), 1);
	assert_int_equal(match(BODY("abc"), m3), 1);
}

/* Chunk boundaries at every position of the needle. */
static void test_chunk_boundaries(void **state)
{
	(void)state;
	const char *needle = "\xd0\x9f\xd1\x80\xd0\xb8vet w\xc3\xb6rld";
	char body[256];
	snprintf(body, sizeof(body), "lorem ipsum %s dolor", "\xd0\xbf\xd0\xa0\xd0\x98VET W\xc3\x96RLD");
	struct tmsg t;
	for (size_t chunk = 1; chunk < strlen(body) + 2; chunk++) {
		const struct mailsearch_msg *m = tmsg_init(&t, "", body);
		t.chunk = chunk;
		assert_int_equal(match(BODY(needle), m), 1);
		assert_int_equal(t.body_calls, 1);
	}
}

/* Metadata first, headers next, the body once. */
static void test_order_of_work(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	t.msg.flags = flags_seen_label;
	t.msg.n_flags = 3;

	/* a failing metadata key decides before anything is read, wherever
	 * it sits in the AND */
	assert_int_equal(match(AND(BODY("numbers"), HDR("From", "smith"), FLAG("\\Deleted")), m), 0);
	assert_int_equal(t.header_calls, 0);
	assert_int_equal(t.body_calls, 0);
	assert_int_equal(match(OR(TEXT("zzz"), FLAG("\\Seen")), m), 1);
	assert_int_equal(t.header_calls, 0);
	assert_int_equal(t.body_calls, 0);

	/* a failing header key decides before the body is read */
	assert_int_equal(match(AND(BODY("numbers"), HDR("From", "jones")), m), 0);
	assert_int_equal(t.header_calls, 1);
	assert_int_equal(t.body_calls, 0);

	/* several body keys: one body pass */
	t.header_calls = t.body_calls = 0;
	assert_int_equal(match(AND(BODY("numbers"), BODY("attachment"), NOT(BODY("zebra")),
				   OR(BODY("gorilla"), TEXT("hello ann"))),
			       m),
			 1);
	assert_int_equal(t.body_calls, 1);
	t.body_calls = 0;
	assert_int_equal(match(AND(BODY("numbers"), BODY("zebra")), m), 0);
	assert_int_equal(t.body_calls, 1);

	/* TEXT found in the header: no body */
	t.body_calls = 0;
	assert_int_equal(match(TEXT("quarterly"), m), 1);
	assert_int_equal(t.body_calls, 0);

	/* one program, many messages: the state of one message never
	 * leaks into the next */
	mailsearch_prog *prog;
	const char *error;
	struct search_key k = AND(OR(FLAG("\\Seen"), BODY("needle")), NOT(HDR("Subject", "spam")));
	assert_int_equal(mailsearch_prog_create(&k, &prog, &error), 0);
	assert_int_equal(mailsearch_prog_needs(prog), MAILSEARCH_NEEDS_HEADERS | MAILSEARCH_NEEDS_BODY);
	struct tmsg a, b, c;
	const struct mailsearch_msg *ma = tmsg_init(&a, "Subject: hi\n", "no");
	a.msg.flags = flags_seen_label;
	a.msg.n_flags = 1;
	const struct mailsearch_msg *mb = tmsg_init(&b, "Subject: spam\n", "needle");
	const struct mailsearch_msg *mc = tmsg_init(&c, "Subject: hi\n", "a needle");
	for (int round = 0; round < 2; round++) {
		assert_int_equal(mailsearch_prog_match(prog, ma, NOW), 1);
		assert_int_equal(mailsearch_prog_match(prog, mb, NOW), 0);
		assert_int_equal(mailsearch_prog_match(prog, mc, NOW), 1);
		assert_int_equal(mailsearch_prog_match(prog, mb, NOW), 0);
	}
	assert_int_equal(a.body_calls, 0);
	mailsearch_prog_destroy(&prog);
	assert_null(prog);

	struct search_key meta_only = AND(FLAG("\\Seen"), NUM(SEARCH_LARGER, 3));
	assert_int_equal(mailsearch_prog_create(&meta_only, &prog, &error), 0);
	assert_int_equal(mailsearch_prog_needs(prog), 0);
	/* so the glue may leave the callbacks out */
	struct mailsearch_msg bare = {.uid = 1, .size = 10, .flags = flags_seen_label, .n_flags = 1};
	assert_int_equal(mailsearch_prog_match(prog, &bare, NOW), 1);
	mailsearch_prog_destroy(&prog);
}

/* ---- nesting and RFC examples ---------------------------------------------------- */

static void test_nesting(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	t.msg.flags = flags_seen_label;
	t.msg.n_flags = 3;
	struct search_key yes = FLAG("\\Seen"), no = FLAG("\\Draft");

	assert_int_equal(match(NOT(yes), m), 0);
	assert_int_equal(match(NOT(no), m), 1);
	assert_int_equal(match(NOT(NOT(yes)), m), 1);
	assert_int_equal(match(OR(no, no), m), 0);
	assert_int_equal(match(OR(no, yes), m), 1);
	assert_int_equal(match(OR(yes, no), m), 1);
	assert_int_equal(match(AND(yes), m), 1);
	assert_int_equal(match(AND(yes, yes, no), m), 0);
	assert_int_equal(match(AND(yes, OR(no, AND(yes, NOT(no)))), m), 1);
	/* unknowns resolved by later phases in every position */
	assert_int_equal(match(OR(AND(yes, BODY("zebra")), AND(HDR("To", "ann"), BODY("numbers"))), m), 1);
	assert_int_equal(match(NOT(OR(BODY("zebra"), HDR("To", "zed"))), m), 1);
	assert_int_equal(match(NOT(AND(BODY("numbers"), TEXT("report"))), m), 0);
	assert_int_equal(match(OR(NOT(TEXT("report")), NOT(BODY("gr\xc3\xbc\xc3\x9f" "e"))), m), 0);

	/* depth: 100 levels are fine, 101 are refused */
	struct search_key chain[101];
	chain[0] = yes;
	for (int i = 1; i < 101; i++)
		chain[i] = KEY(.op = SEARCH_NOT, .children = &chain[i - 1], .n_children = 1);
	assert_int_equal(match(chain[99], m), 0);  /* 99 NOTs + leaf = depth 100 */
	assert_int_equal(match(chain[98], m), 1);
	assert_true(match(chain[100], m) < 0);     /* depth 101 */
}

/* RFC 3501 6.4.4's examples (and RFC 9051's), as the engine parses them. */
static void test_rfc3501_examples(void **state)
{
	(void)state;
	/* SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith" */
	struct search_key ex1 = AND(FLAG("\\Flagged"), NUM(SEARCH_SINCE, 8797), NOT(HDR("From", "Smith")));
	/* SEARCH TEXT "string not in mailbox" */
	struct search_key ex2 = TEXT("string not in mailbox");
	/* SEARCH CHARSET UTF-8 TEXT {12} "XXXXXX" in Cyrillic */
	struct search_key ex3 = TEXT("\xd0\xa5\xd0\xa5\xd0\xa5\xd0\xa5\xd0\xa5\xd0\xa5");
	/* SEARCH OR (FLAGGED SINCE 1-Feb-1994) NOT SEEN */
	struct search_key ex4 = OR(AND(FLAG("\\Flagged"), NUM(SEARCH_SINCE, 8797)), NOT(FLAG("\\Seen")));

	static const char *const flagged[] = {"\\Flagged"};
	static const char *const flagged_seen[] = {"\\Flagged", "\\Seen"};
	struct tmsg a, b, c, d;
	/* flagged, arrived 2 Feb 1994, from Jones */
	const struct mailsearch_msg *ma = tmsg_init(&a, "From: Jones <j@x>\n", "body");
	a.msg.flags = flagged;
	a.msg.n_flags = 1;
	/* flagged, arrived 2 Feb 1994, from Smith */
	const struct mailsearch_msg *mb = tmsg_init(&b, "From: Smith <s@x>\n", "body \xd1\x85\xd1\x85\xd1\x85\xd1\x85\xd1\x85\xd1\x85");
	b.msg.flags = flagged_seen;
	b.msg.n_flags = 2;
	/* flagged, arrived 31 Jan 1994 */
	const struct mailsearch_msg *mc = tmsg_init(&c, "From: Jones <j@x>\n", "body");
	c.msg.flags = flagged;
	c.msg.n_flags = 1;
	c.msg.internal_date_ms = (int64_t)8795 * 86400000 + 1000;
	/* not flagged, seen */
	const struct mailsearch_msg *md = tmsg_init(&d, "From: Jones <j@x>\n", "body");
	d.msg.flags = flagged_seen + 1;
	d.msg.n_flags = 1;

	assert_int_equal(mailsearch_match(&ex1, ma, NOW), 1);
	assert_int_equal(mailsearch_match(&ex1, mb, NOW), 0);
	assert_int_equal(mailsearch_match(&ex1, mc, NOW), 0);
	assert_int_equal(mailsearch_match(&ex1, md, NOW), 0);
	for (const struct mailsearch_msg *m = ma; m; m = m == ma ? mb : m == mb ? mc : m == mc ? md : NULL)
		assert_int_equal(mailsearch_match(&ex2, m, NOW), 0);
	assert_int_equal(mailsearch_match(&ex3, mb, NOW), 1); /* lower-case Cyrillic */
	assert_int_equal(mailsearch_match(&ex3, ma, NOW), 0);
	assert_int_equal(mailsearch_match(&ex4, ma, NOW), 1); /* flagged since, unseen */
	assert_int_equal(mailsearch_match(&ex4, mb, NOW), 1); /* flagged since */
	assert_int_equal(mailsearch_match(&ex4, mc, NOW), 1); /* not seen */
	assert_int_equal(mailsearch_match(&ex4, md, NOW), 0); /* seen, not flagged */
}

/* ---- sent dates ----------------------------------------------------------------- */

static void test_sent_keys(void **state)
{
	(void)state;
	struct tmsg t;
	/* 1 Feb 1994 21:52 in its own zone (2 Feb in UTC): day 8797 */
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, "");
	assert_int_equal(match(NUM(SEARCH_SENTON, 8797), m), 1);
	assert_int_equal(match(NUM(SEARCH_SENTON, 8798), m), 0);
	assert_int_equal(match(NUM(SEARCH_SENTBEFORE, 8798), m), 1);
	assert_int_equal(match(NUM(SEARCH_SENTBEFORE, 8797), m), 0);
	assert_int_equal(match(NUM(SEARCH_SENTSINCE, 8797), m), 1);
	assert_int_equal(match(NUM(SEARCH_SENTSINCE, 8798), m), 0);
	/* several SENT keys: the Date: field is read once */
	t.header_calls = 0;
	assert_int_equal(match(AND(NUM(SEARCH_SENTSINCE, 8790), NUM(SEARCH_SENTBEFORE, 8800),
				   NOT(NUM(SEARCH_SENTON, 8796))),
			       m),
			 1);
	assert_int_equal(t.header_calls, 1);

	/* no Date: none of them; NOT of them does */
	m = tmsg_init(&t, "Subject: x\n", "");
	assert_int_equal(match(NUM(SEARCH_SENTON, 8798), m), 0);
	assert_int_equal(match(NUM(SEARCH_SENTBEFORE, 99999), m), 0);
	assert_int_equal(match(NUM(SEARCH_SENTSINCE, 0), m), 0);
	assert_int_equal(match(NOT(NUM(SEARCH_SENTON, 8798)), m), 1);
	/* unparsable Date: the same */
	m = tmsg_init(&t, "Date: yesterday at noon\n", "");
	assert_int_equal(match(NUM(SEARCH_SENTSINCE, 0), m), 0);
	assert_int_equal(match(NUM(SEARCH_SENTBEFORE, 99999), m), 0);
	/* only the first Date: counts */
	m = tmsg_init(&t, "Date: 3 Feb 1994 00:00 +0000\nDate: 9 Feb 1994 00:00 +0000\n", "");
	assert_int_equal(match(NUM(SEARCH_SENTON, 8799), m), 1);
	assert_int_equal(match(NUM(SEARCH_SENTON, 8805), m), 0);
}

/* ---- malformed programs and failing callbacks ------------------------------------ */

static void test_prog_errors(void **state)
{
	(void)state;
	mailsearch_prog *prog = (mailsearch_prog *)&prog;
	const char *error = NULL;
	struct search_key leaf = KEY(.op = SEARCH_ALL);
	struct search_key bad[] = {
		KEY(.op = SEARCH_AND, .n_children = 0),
		KEY(.op = SEARCH_OR, .children = &leaf, .n_children = 1),
		KEY(.op = SEARCH_NOT, .children = KEYS(leaf, leaf), .n_children = 2),
		KEY(.op = SEARCH_UID, .ranges = (const struct search_uid_range[]){{5, 3}}, .n_ranges = 1),
		KEY(.op = SEARCH_UID, .ranges = (const struct search_uid_range[]){{1, 5}, {5, 9}}, .n_ranges = 2),
		KEY(.op = SEARCH_UID, .ranges = (const struct search_uid_range[]){{6, 9}, {1, 2}}, .n_ranges = 2),
		KEY(.op = SEARCH_UID, .ranges = NULL, .n_ranges = 1),
		KEY(.op = SEARCH_FLAG, .str = NULL),
		KEY(.op = SEARCH_BODY, .str = NULL),
		KEY(.op = SEARCH_HEADER, .str = "From", .str2 = NULL),
		KEY(.op = SEARCH_HEADER, .str = NULL, .str2 = "x"),
		KEY(.op = (enum search_op)99),
		AND(leaf, KEY(.op = SEARCH_OR, .children = &leaf, .n_children = 1)),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		error = NULL;
		prog = (mailsearch_prog *)&prog;
		assert_int_equal(mailsearch_prog_create(&bad[i], &prog, &error), -1);
		assert_null(prog);
		assert_non_null(error);
	}
	assert_int_equal(mailsearch_prog_create(NULL, &prog, &error), -1);

	/* too many keys */
	size_t n = MAILSEARCH_MAX_NODES;
	struct search_key *kids = xcalloc(n, sizeof(*kids));
	for (size_t i = 0; i < n; i++)
		kids[i] = leaf;
	struct search_key big = KEY(.op = SEARCH_AND, .children = kids, .n_children = n);
	assert_int_equal(mailsearch_prog_create(&big, &prog, &error), -1);
	assert_string_equal(error, "search program too large");
	big.n_children = n - 1; /* with the AND: exactly the limit */
	assert_int_equal(mailsearch_prog_create(&big, &prog, &error), 0);
	mailsearch_prog_destroy(&prog);
	free(kids);
	mailsearch_prog_destroy(&prog); /* NULL is fine */
}

static void test_callback_errors(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	t.fail_header = 1;
	assert_true(match(HDR("From", "smith"), m) < 0);
	assert_true(match(NUM(SEARCH_SENTON, 1), m) < 0);
	assert_true(match(TEXT("x"), m) < 0);
	/* not needed: no error */
	assert_int_equal(match(OR(KEY(.op = SEARCH_ALL), HDR("From", "smith")), m), 1);
	t.fail_header = 0;
	t.fail_body = 1;
	assert_true(match(BODY("numbers"), m) < 0);
	assert_true(match(AND(HDR("From", "smith"), BODY("numbers")), m) < 0);
	assert_int_equal(match(AND(HDR("From", "jones"), BODY("numbers")), m), 0);
	t.msg.body_text = NULL;
	t.fail_body = 0;
	assert_true(match(BODY("numbers"), m) < 0);
}

/* ---- dates ------------------------------------------------------------------------- */

struct date_case {
	const char *s;
	int64_t utc_ms;
	int64_t day;
};

static void test_date_parse(void **state)
{
	(void)state;
	static const struct date_case good[] = {
		{"Tue, 1 Feb 1994 21:52:25 -0800", 760168345000, 8797},
		{"Tue, 01 Feb 1994 21:52:25 -0800 (PST)", 760168345000, 8797},
		{"1 Feb 1994 21:52:25 -0800", 760168345000, 8797},
		{"Tue,  1 Feb 94 21:52 PST", 760168320000, 8797},
		{"Tue 1 Feb 1994 21:52:25 -0800", 760168345000, 8797},
		{"Wed, 17 Jan 2024 10:00:00 +0000", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 GMT", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 UT", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 UTC", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 Z", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 A", 1705485600000, 19739},  /* military: -0000 */
		{"Wed, 17 Jan 2024 10:00:00 CET", 1705485600000, 19739}, /* unknown: UTC */
		{"Wed, 17 Jan 2024 10:00:00", 1705485600000, 19739},     /* no zone */
		{"Wed, 17 Jan 2024 10:00:00 -0000", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 EDT", 1705500000000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 EST", 1705503600000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 CST", 1705507200000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 PDT", 1705510800000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 +0530 (IST)", 1705465800000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 +05:30", 1705465800000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 GMT+0100", 1705482000000, 19739},
		{"Wed, 17 Jan 2024 10:00:00 +0100 CET", 1705482000000, 19739},
		{"Wed, 17 Jan 2024 10:00 +0000", 1705485600000, 19739},
		{"Wed, 17 Jan 2024 3:04:05 +0000", 1705460645000, 19739},
		{"(comment) Wed, (c) 17 (c (nested)) Jan (c) 2024 10 : 00 : 00 (c) +0000 (c)",
		 1705485600000, 19739},
		{"  Wed,\r\n 17 Jan 2024\t10:00:00 +0000 ", 1705485600000, 19739},
		{"Wednesday, 17 January 2024 10:00:00 +0000", 1705485600000, 19739},
		{"Wed, 17-Jan-2024 10:00:00 +0000", 1705485600000, 19739},
		{"17 jan 2024 10:00:00 +0000", 1705485600000, 19739},
		{"Wed Jan 17 10:00:00 2024", 1705485600000, 19739}, /* asctime */
		{"Jan 17 10:00:00 2024", 1705485600000, 19739},
		{"Wed, 17 Jan 24 10:00:00 +0000", 1705485600000, 19739},   /* 2-digit: 2024 */
		{"Mon, 17 Jan 49 00:00:00 +0000", (int64_t)28871 * 86400000, 28871}, /* 2049 */
		{"Tue, 17 Jan 50 00:00:00 +0000", (int64_t)-7289 * 86400000, -7289}, /* 1950 */
		{"Fri, 17 Jan 103 00:00:00 +0000", (int64_t)12069 * 86400000, 12069}, /* 3 digits: 2003 */
		{"17 Jan 2024", (int64_t)19739 * 86400000, 19739}, /* no time: midnight UTC */
		{"Tue, 29 Feb 2000 00:00:00 +0000", (int64_t)11016 * 86400000, 11016},
		{"Fri, 1 Jan 1960 00:00:00 +0000", (int64_t)-3653 * 86400000, -3653},
		{"Thu, 01 Jan 1970 00:00:00 +0000", 0, 0},
		{"Thu, 1 Jan 1970 00:00:00 -0100", 3600000, 0},    /* the day as written */
		{"Fri, 2 Jan 1970 00:30:00 +0100", 84600000, 1},   /* 1 Jan in UTC */
		{"Mon, 31 Dec 2001 23:59:60 +0000", 1009843200000, 11687}, /* leap second */
		{"Sat, 13 Sep 2020 12:26:40 +0000 (UTC)", 1600000000000, 18518},
		{"13 Sept 2020 12:26:40 +0000", 1600000000000, 18518},
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int64_t ms = -1, day = -1;
		int r = mailsearch_date_parse(good[i].s, strlen(good[i].s), &ms, &day);
		if (r != 0 || ms != good[i].utc_ms || day != good[i].day)
			fail_msg("date %zu \"%s\": r=%d ms=%lld day=%lld, want %lld %lld", i, good[i].s,
				 r, (long long)ms, (long long)day, (long long)good[i].utc_ms,
				 (long long)good[i].day);
	}
	static const char *const bad[] = {
		"",
		"   ",
		"yesterday",
		"Wed, 32 Jan 2024 10:00:00 +0000",
		"Wed, 0 Jan 2024 10:00:00 +0000",
		"Wed, 29 Feb 2023 10:00:00 +0000",
		"Wed, 29 Feb 1900 10:00:00 +0000",
		"Wed, 31 Apr 2024 10:00:00 +0000",
		"Wed, 17 Foo 2024 10:00:00 +0000",
		"Wed, 17 Jan 1899 10:00:00 +0000",
		"Wed, 17 Jan 12345 10:00:00 +0000",
		"Wed, 17 Jan 2024 24:00:00 +0000",
		"Wed, 17 Jan 2024 10:60:00 +0000",
		"Wed, 17 Jan 2024 10:00:61 +0000",
		"Wed, 17 Jan 2024 10: +0000",
		"Wed, 123 Jan 2024 10:00:00 +0000",
		"Wed, Jan 2024 10:00:00 +0000",
		"2024-01-17T10:00:00Z",
		"Wed, 17 Jan",
		"((((((((((((((((((nested too deep))))))))))))))))))",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (mailsearch_date_parse(bad[i], strlen(bad[i]), NULL, NULL) == 0)
			fail_msg("date \"%s\" parsed", bad[i]);
	}
	/* length limit, and a counted (not NUL-terminated) string */
	char longd[MAILSEARCH_DATE_MAX + 2];
	memset(longd, ' ', sizeof(longd));
	memcpy(longd + sizeof(longd) - 20, "17 Jan 2024 10:00:00", 20);
	assert_int_equal(mailsearch_date_parse(longd, sizeof(longd), NULL, NULL), -1);
	assert_int_equal(mailsearch_date_parse(longd + 2, sizeof(longd) - 2, NULL, NULL), 0);
	const char *cut = "17 Jan 2024 10:00:00 +0100XXXXXXXX";
	int64_t ms;
	assert_int_equal(mailsearch_date_parse(cut, 11, &ms, NULL), 0);
	assert_int_equal(ms, (int64_t)19739 * 86400000);
}

/* ---- base subjects (RFC 5256 2.1) --------------------------------------------------- */

struct subj_case {
	const char *in, *base;
	int reply;
};

static void test_base_subject(void **state)
{
	(void)state;
	static const struct subj_case cases[] = {
		/* (1) whitespace */
		{"  foo \t  bar  ", "foo bar", 0},
		{"foo\r\n bar", "foo bar", 0},
		{"", "", 0},
		{"   ", "", 0},
		/* (3) subj-refwd: "re", "fw", "fwd", any case, WSP before ":" */
		{"Re: foo", "foo", 1},
		{"RE: Re: re: foo", "foo", 1},
		{"Re:foo", "foo", 1},
		{"Re : foo", "foo", 1},
		{"Fwd: foo", "foo", 1},
		{"FW: foo", "foo", 1},
		{"fw:fwd:re:foo", "foo", 1},
		{"Re[2]: foo", "foo", 1},
		{"Re [2] : foo", "foo", 1},
		{"Re:", "", 1},
		{"Reply: foo", "Reply: foo", 0},
		{"Fwd foo", "Fwd foo", 0},
		{"Sv: foo", "Sv: foo", 0},
		{"Re[2 foo", "Re[2 foo", 0},
		/* blobs before a refwd belong to the leader */
		{"[list] Re: foo", "foo", 1},
		{"[a] [b] Re: [c] Fw: foo", "foo", 1},
		{"[PATCH 1/2] Re: foo", "foo", 1},
		/* (4) a leading blob goes when something is left */
		{"[list] foo", "foo", 0},
		{"Re: [list] foo", "foo", 1},
		{"[list]", "[list]", 0},
		{"[list]   ", "[list]", 0},
		{"[a][b]", "[b]", 0},
		{"[a] [b] c", "c", 0},
		{"re: [list]", "[list]", 1},
		{"[a[b] c", "[a[b] c", 0}, /* "[a[b]" is not a blob */
		/* (2) trailers */
		{"foo (fwd)", "foo", 1},
		{"foo (FWD) (fwd)  ", "foo", 1},
		{"foo(fwd)", "foo", 1},
		{"(fwd)", "", 1},
		{"foo (fwd) bar", "foo (fwd) bar", 0},
		{"Re: (fwd)", "", 1},
		/* (6) [fwd: ...] */
		{"[fwd: foo]", "foo", 1},
		{"[FWD:foo]", "foo", 1},
		{"[Fwd: Re: foo]", "foo", 1},
		{"Re: [fwd: foo] (fwd)", "foo", 1},
		{"[fwd: [list] foo]", "foo", 1},
		{"[fwd: [fwd: foo]]", "foo", 1},
		{"[fwd: foo] bar", "bar", 0}, /* a blob (step 4), not a wrapper */
		{"[fwd: ]", "", 1},
		{"[fwd:]", "", 1},
		{"[fwd: foo", "[fwd: foo", 0},
		/* UTF-8 subjects */
		{"Re: \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", 1},
		{"[\xd0\xa1\xd0\xbf\xd0\xb8\xd1\x81\xd0\xbe\xd0\xba] AW: x", "AW: x", 0},
		/* the middle is never touched */
		{"Re: foo Re: bar", "foo Re: bar", 1},
		{"Re: Re:  [x]  Fwd:  the  end  (fwd)", "the end", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf out;
		buf_init(&out);
		buf_append_str(&out, "<"); /* appended after what is there */
		int reply = -1;
		mailsearch_base_subject(cases[i].in, strlen(cases[i].in), &out, &reply);
		const char *got = (const char *)out.data + 1;
		if (out.len == 1)
			got = "";
		if (strcmp(got, cases[i].base) != 0 || reply != cases[i].reply)
			fail_msg("subject %zu \"%s\": got \"%s\" reply %d, want \"%s\" %d", i,
				 cases[i].in, got, reply, cases[i].base, cases[i].reply);
		/* the base subject of a base subject is itself */
		buf again;
		buf_init(&again);
		mailsearch_base_subject(got, strlen(got), &again, NULL);
		assert_int_equal(again.len, strlen(got));
		if (again.len)
			assert_memory_equal(again.data, got, again.len);
		buf_deinit(&again);
		buf_deinit(&out);
	}
}

/* ---- addresses ---------------------------------------------------------------------- */

struct addr_case {
	const char *in, *mailbox, *host, *display;
	int found;
};

static void test_address_first(void **state)
{
	(void)state;
	static const struct addr_case cases[] = {
		{"john@example.com", "john", "example.com", "", 1},
		{"John Doe <john@example.com>", "john", "example.com", "John Doe", 1},
		{"\"Doe, John\" <john.doe@example.com>, x@y", "john.doe", "example.com", "Doe, John", 1},
		{"  \"Quoted \\\"Q\\\"\"   <q@x>", "q", "x", "Quoted \"Q\"", 1},
		{"john@example.com (John Doe)", "john", "example.com", "John Doe", 1},
		{"john.q.public@example.com", "john.q.public", "example.com", "", 1},
		{"John Q. Public <jqp@example.com>", "jqp", "example.com", "John Q. Public", 1},
		{"<@route1,@route2:user@host>", "user", "host", "", 1},
		{"<user@host>", "user", "host", "", 1},
		{"\"odd local\"@host", "odd local", "host", "", 1},
		{"user@[192.0.2.1]", "user", "[192.0.2.1]", "", 1},
		{"Team: a@x, b@y;", "Team", "", "Team", 1},
		{"undisclosed-recipients:;", "undisclosed-recipients", "", "undisclosed-recipients", 1},
		{", , second@x", "second", "x", "", 1},
		{"postmaster", "postmaster", "", "", 1},
		{"", "", "", "", 0},
		{" , ;", "", "", "", 0},
		{"Ann (the boss) Smith <ann@x>", "ann", "x", "Ann Smith", 1},
		{"\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd <ivan@x>", "ivan", "x", "\xd0\x98\xd0\xb2\xd0\xb0\xd0\xbd", 1},
		/* garbage yields some string, never a crash */
		{"unterminated \"quote <a@b>", "unterminatedquote <a@b>", "", "", 1},
		{"a@b c@d", "a", "b", "", 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		buf mb, host, disp;
		buf_init(&mb);
		buf_init(&host);
		buf_init(&disp);
		int r = mailsearch__address_first(cases[i].in, strlen(cases[i].in), &mb, &host, &disp);
		buf_append(&mb, "", 1);
		buf_append(&host, "", 1);
		buf_append(&disp, "", 1);
		if (r != cases[i].found || strcmp((char *)mb.data, cases[i].mailbox) != 0 ||
		    strcmp((char *)host.data, cases[i].host) != 0 ||
		    strcmp((char *)disp.data, cases[i].display) != 0)
			fail_msg("address %zu \"%s\": %d \"%s\" \"%s\" \"%s\"", i, cases[i].in, r,
				 (char *)mb.data, (char *)host.data, (char *)disp.data);
		buf_deinit(&mb);
		buf_deinit(&host);
		buf_deinit(&disp);
	}
	/* long values are cut at MAILSEARCH_SORT_TEXT_MAX, on a UTF-8 boundary */
	char longv[1200];
	size_t n = 0;
	for (int i = 0; i < 300; i++) {
		memcpy(longv + n, "\xc3\xa9", 2); /* é */
		n += 2;
	}
	memcpy(longv + n, " <a@b>", 7);
	buf mb, host, disp;
	buf_init(&mb);
	buf_init(&host);
	buf_init(&disp);
	assert_int_equal(mailsearch__address_first(longv, strlen(longv), &mb, &host, &disp), 1);
	assert_int_equal(disp.len, MAILSEARCH_SORT_TEXT_MAX);
	assert_int_equal(mb.len, 1);
	buf_deinit(&mb);
	buf_deinit(&host);
	buf_deinit(&disp);
}

/* ---- SORT ------------------------------------------------------------------------- */

static void sort_expect(const struct mailsearch_sort_fields *f, size_t n,
			const struct search_sort *crit, size_t n_crit, const uint32_t *want)
{
	uint32_t got[16];
	assert_true(n <= 16);
	assert_int_equal(mailsearch_sort(f, n, crit, n_crit, got), 0);
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
			fail_msg("sort by %d (reverse %d): position %zu is %u, want %u",
				 crit[0].key, crit[0].reverse, i, got[i], want[i]);
}

#define SORT1(k, rev) ((const struct search_sort[]){{(k), (rev)}})
#define UIDS(...) ((const uint32_t[]){__VA_ARGS__})

static void test_sort(void **state)
{
	(void)state;
	/* uid, size, arrival, sent, subject, from, to, cc, dfrom, dto */
	const struct mailsearch_sort_fields f[] = {
		{5, 300, 1000, 5000, "beta", "zed", "ann", "", "Zed Z", "ann@x", NULL},
		{2, 100, 3000, 4000, "Alpha", "amy", "Bob", "carl", "amy@x", "Bob B", NULL},
		{9, 200, 2000, 4000, "alpha", "AMY", "bob", "Carl", "Amy A", "bob@x", NULL},
		{4, 200, 1000, 6000, "[b]", "_x", "", "dan", "_x@y", "", NULL},
		{7, 100, 3000, 1000, "", "", "ann", "", "", "Ann", NULL},
	};
	size_t n = sizeof(f) / sizeof(f[0]);
	/* ARRIVAL: 1000 (4, 5 by uid), 2000 (9), 3000 (2, 7) */
	sort_expect(f, n, SORT1(SEARCH_SORT_ARRIVAL, 0), 1, UIDS(4, 5, 9, 2, 7));
	/* REVERSE applies to the key, not to the uid tie-break */
	sort_expect(f, n, SORT1(SEARCH_SORT_ARRIVAL, 1), 1, UIDS(2, 7, 9, 4, 5));
	/* SIZE: 100 (2, 7), 200 (4, 9), 300 (5) */
	sort_expect(f, n, SORT1(SEARCH_SORT_SIZE, 0), 1, UIDS(2, 7, 4, 9, 5));
	sort_expect(f, n, SORT1(SEARCH_SORT_SIZE, 1), 1, UIDS(5, 4, 9, 2, 7));
	/* DATE: 1000 (7), 4000 (2, 9), 5000 (5), 6000 (4) */
	sort_expect(f, n, SORT1(SEARCH_SORT_DATE, 0), 1, UIDS(7, 2, 9, 5, 4));
	/* SUBJECT, i;ascii-casemap: "" < "ALPHA" (2, 9) < "BETA" < "[B]" ('[' > 'Z') */
	sort_expect(f, n, SORT1(SEARCH_SORT_SUBJECT, 0), 1, UIDS(7, 2, 9, 5, 4));
	sort_expect(f, n, SORT1(SEARCH_SORT_SUBJECT, 1), 1, UIDS(4, 5, 2, 9, 7));
	/* FROM: "" < "AMY" (2, 9) < "ZED" < "_X" ('_' > 'Z' after upper-casing) */
	sort_expect(f, n, SORT1(SEARCH_SORT_FROM, 0), 1, UIDS(7, 2, 9, 5, 4));
	/* TO: "" (4) < "ANN" (5, 7) < "BOB" (2, 9) */
	sort_expect(f, n, SORT1(SEARCH_SORT_TO, 0), 1, UIDS(4, 5, 7, 2, 9));
	/* CC: "" (5, 7) < "CARL" (2, 9) < "DAN" */
	sort_expect(f, n, SORT1(SEARCH_SORT_CC, 0), 1, UIDS(5, 7, 2, 9, 4));
	sort_expect(f, n, SORT1(SEARCH_SORT_CC, 1), 1, UIDS(4, 2, 9, 5, 7));
	/* DISPLAYFROM: "" < "AMY A" < "AMY@X" < "ZED Z" < "_X@Y" */
	sort_expect(f, n, SORT1(SEARCH_SORT_DISPLAYFROM, 0), 1, UIDS(7, 9, 2, 5, 4));
	/* DISPLAYTO: "" < "ANN" < "ANN@X" < "BOB B" < "BOB@X" */
	sort_expect(f, n, SORT1(SEARCH_SORT_DISPLAYTO, 0), 1, UIDS(4, 7, 5, 2, 9));
	/* several criteria: SIZE, then REVERSE DATE, then ties by uid */
	const struct search_sort two[] = {{SEARCH_SORT_SIZE, 0}, {SEARCH_SORT_DATE, 1}};
	/* size 100: 2 (4000), 7 (1000) -> 2, 7; size 200: 4 (6000), 9 (4000) -> 4, 9 */
	sort_expect(f, n, two, 2, UIDS(2, 7, 4, 9, 5));
	const struct search_sort three[] = {
		{SEARCH_SORT_SUBJECT, 1}, {SEARCH_SORT_ARRIVAL, 1}, {SEARCH_SORT_FROM, 0}};
	/* [b] (4), beta (5), alpha: 2 (3000) before 9 (2000) reversed, "" (7) */
	sort_expect(f, n, three, 3, UIDS(4, 5, 2, 9, 7));

	/* errors */
	uint32_t out[5] = {0};
	assert_int_equal(mailsearch_sort(f, n, SORT1((enum search_sort_key)0, 0), 1, out), -1);
	assert_int_equal(mailsearch_sort(f, n, SORT1((enum search_sort_key)99, 0), 1, out), -1);
	assert_int_equal(mailsearch_sort(f, n, SORT1(SEARCH_SORT_SIZE, 0), 0, out), -1);
	assert_int_equal(out[0], 0);
	assert_int_equal(mailsearch_sort(f, 0, SORT1(SEARCH_SORT_SIZE, 0), 1, out), 0);
}

static void test_sort_fields_get(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m = tmsg_init(&t, std_headers, std_body);
	const struct search_sort all[] = {
		{SEARCH_SORT_ARRIVAL, 0}, {SEARCH_SORT_CC, 0},      {SEARCH_SORT_DATE, 0},
		{SEARCH_SORT_FROM, 0},    {SEARCH_SORT_SIZE, 0},    {SEARCH_SORT_SUBJECT, 0},
		{SEARCH_SORT_TO, 0},      {SEARCH_SORT_DISPLAYFROM, 0}, {SEARCH_SORT_DISPLAYTO, 0},
	};
	struct mailsearch_sort_fields f;
	assert_int_equal(mailsearch_sort_fields_get(m, all, 9, &f), 0);
	assert_int_equal(f.uid, 7);
	assert_int_equal(f.size, 1000);
	assert_int_equal(f.arrival_ms, 760168345000);
	assert_int_equal(f.sent_ms, 760168345000);
	assert_string_equal(f.subject, "Quarterly report");
	assert_string_equal(f.from, "john.smith");
	assert_string_equal(f.to, "ann");
	assert_string_equal(f.cc, "carol");
	assert_string_equal(f.display_from, "Smith, John");
	assert_string_equal(f.display_to, "ann@example.org");
	mailsearch_sort_fields_deinit(&f);

	/* only what is asked for; no Date: the internal date */
	m = tmsg_init(&t, "From: a@b\nSubject: [x] hi\n", "");
	t.msg.internal_date_ms = 42;
	const struct search_sort some[] = {{SEARCH_SORT_SUBJECT, 0}, {SEARCH_SORT_DATE, 1}};
	assert_int_equal(mailsearch_sort_fields_get(m, some, 2, &f), 0);
	assert_string_equal(f.subject, "hi");
	assert_string_equal(f.from, "");
	assert_string_equal(f.display_from, "");
	assert_int_equal(f.sent_ms, 42);
	mailsearch_sort_fields_deinit(&f);

	/* a long subject is cut to MAILSEARCH_SORT_TEXT_MAX */
	char hdr[2000] = "Subject: ";
	for (int i = 0; i < 500; i++)
		strcat(hdr, "ab");
	strcat(hdr, "\n");
	m = tmsg_init(&t, hdr, "");
	assert_int_equal(mailsearch_sort_fields_get(m, some, 1, &f), 0);
	assert_int_equal(strlen(f.subject), MAILSEARCH_SORT_TEXT_MAX);
	mailsearch_sort_fields_deinit(&f);

	/* empty values (found by the fuzzer: no NULL + 0) */
	m = tmsg_init(&t, "Subject:\nFrom:\nTo: \nDate:\n", "");
	assert_int_equal(mailsearch_sort_fields_get(m, all, 9, &f), 0);
	assert_string_equal(f.subject, "");
	assert_string_equal(f.from, "");
	assert_string_equal(f.display_to, "");
	assert_int_equal(f.sent_ms, f.arrival_ms);
	mailsearch_sort_fields_deinit(&f);
	struct mailsearch_thread_msg tf;
	assert_int_equal(mailsearch_thread_fields_get(m, SEARCH_THREAD_REFERENCES, &tf), 0);
	assert_string_equal(tf.base_subject, "");
	mailsearch_thread_fields_deinit(&tf);

	/* unreadable: an error, fields empty but safe */
	m = tmsg_init(&t, std_headers, "");
	t.fail_header = 1;
	assert_true(mailsearch_sort_fields_get(m, all, 9, &f) < 0);
	assert_string_equal(f.subject, "");
	mailsearch_sort_fields_deinit(&f);
}

/* ---- THREAD ---------------------------------------------------------------------- */

#define H(hh, mm) ((int64_t)(hh) * 3600000 + (int64_t)(mm) * 60000)

struct tm_def {
	uint32_t uid;
	int64_t sent;
	const char *subject; /* raw: the base subject is extracted here */
	const char *message_id, *in_reply_to, *references;
};

/* Build the thread input from definitions (base subjects extracted). */
static struct mailsearch_thread_msg *thread_input(const struct tm_def *d, size_t n)
{
	struct mailsearch_thread_msg *m = xcalloc(n, sizeof(*m));
	for (size_t i = 0; i < n; i++) {
		buf b;
		buf_init(&b);
		mailsearch_base_subject(d[i].subject, strlen(d[i].subject), &b, &m[i].is_reply);
		buf_append(&b, "", 1);
		m[i].strings_ = (char *)b.data;
		m[i].base_subject = m[i].strings_;
		m[i].uid = d[i].uid;
		m[i].sent_ms = d[i].sent;
		m[i].message_id = d[i].message_id;
		m[i].in_reply_to = d[i].in_reply_to;
		m[i].references = d[i].references;
	}
	return m;
}

static void thread_expect(enum search_thread_alg alg, const struct tm_def *d, size_t n,
			  const char *want)
{
	struct mailsearch_thread_msg *m = thread_input(d, n);
	buf out;
	buf_init(&out);
	assert_int_equal(mailsearch_thread(alg, m, n, &out), 0);
	buf_append(&out, "", 1);
	if (strcmp((char *)out.data, want) != 0)
		fail_msg("THREAD %d: got %s, want %s", alg, (char *)out.data, want);
	buf_deinit(&out);
	for (size_t i = 0; i < n; i++)
		free(m[i].strings_);
	free(m);
}

/* ORDEREDSUBJECT. The base subjects: 1 "Hello", 2 "hello", 3 "Other",
 * 4 "HELLO", 5 "other" (from "[fwd: other]"), 6 "Third", 7 "", 8 "".
 * Sorted by base subject (i;ascii-casemap: "" < "HELLO" < "OTHER" <
 * "THIRD"), then sent date:
 *   ""      8 (12:30), 7 (13:00)
 *   HELLO   2 (09:00), 1 (10:00), 4 (11:00)
 *   OTHER   3 (08:00), 5 (12:00)
 *   THIRD   6 (07:30)
 * Threads by their first message's date: 6 (07:30), 3 (08:00), 2 (09:00),
 * 8 (12:30). The first message is the parent, the rest its children:
 *   (6)(3 5)(2 (1)(4))(8 7)
 * Messages 9 and 10 share subject and date: uid order decides. */
static void test_thread_orderedsubject(void **state)
{
	(void)state;
	static const struct tm_def d[] = {
		{1, H(10, 0), "Hello", NULL, NULL, NULL},
		{2, H(9, 0), "Re: hello", NULL, NULL, NULL},
		{3, H(8, 0), "Other", NULL, NULL, NULL},
		{4, H(11, 0), "RE: HELLO", NULL, NULL, NULL},
		{5, H(12, 0), "[fwd: other]", NULL, NULL, NULL},
		{6, H(7, 30), "Third", NULL, NULL, NULL},
		{7, H(13, 0), "", NULL, NULL, NULL},
		{8, H(12, 30), "  ", NULL, NULL, NULL},
		{9, H(20, 0), "same", NULL, NULL, NULL},
		{10, H(20, 0), "Same", NULL, NULL, NULL},
	};
	thread_expect(SEARCH_THREAD_ORDEREDSUBJECT, d, 8, "(6)(3 5)(2 (1)(4))(8 7)");
	thread_expect(SEARCH_THREAD_ORDEREDSUBJECT, d, 10, "(6)(3 5)(2 (1)(4))(8 7)(9 10)");
	thread_expect(SEARCH_THREAD_ORDEREDSUBJECT, d, 1, "(1)");
	thread_expect(SEARCH_THREAD_ORDEREDSUBJECT, d, 0, "");
}

/* REFERENCES on 14 messages, derived by hand from RFC 5256 section 3:
 *
 *  uid  Message-ID  refs (References, else In-Reply-To)  subject       sent
 *   1   a           -                                     Meeting       10:00
 *   2   b           R: a                                  Re: Meeting   11:00
 *   3   c           R: a b                                Re: Meeting   12:00
 *   4   d           I: a                                  Re: Meeting   10:30
 *   5   e           R: zz                                 Lunch         09:00
 *   6   f           R: zz                                 Re: Lunch     09:30
 *   7   g           -                                     Re: Lunch     08:00
 *   8   h           -                                     Holiday       13:00
 *   9   (none)      R: h                                  Re: Holiday   14:00
 *  10   b (dup)     R: h                                  Holiday plans 15:00
 *  11   k           R: q k2                               Report        07:00
 *  12   m           R: y                                  Report        16:00
 *  13   p           R: r                                  Re: Zeta      06:30
 *  14   r           I: <junk> (comment <zz@x>)            Zeta          06:00
 *
 * (1) 1: node A. 2: B, A->B. 3: C; 1A a->b kept (B has a parent); 1B
 *     B->C. 4: D, no References, In-Reply-To a: A->D. 5: E, dummy Z for
 *     zz, Z->E. 6: F, Z->F. 7: G. 8: H. 9: no id: a node of its own N9,
 *     H->N9. 10: id b is msg 2's: a node of its own N10, H->N10. 11: K,
 *     dummies Q and K2; 1A Q->K2; 1B K2->K. 12: M, dummy Y, Y->M. 13: P,
 *     dummy R, R->P. 14: r fills dummy R; In-Reply-To has no valid id
 *     ("<junk>" has no '@'; the comment is skipped): no parent.
 * (2) parentless, in order of creation: A, Z, G, H, Q, Y, R.
 * (3) Z is a dummy under the root with 2 children: kept. K2 is a dummy
 *     below the root: K goes up to Q. Q then has one child: K goes up to
 *     the root. Y has one child: M goes up. Root: A, Z, G, H, K, M, R.
 * (4) Z's children sorted: E (09:00), F (09:30); Z sorts as E. Root by
 *     date: R 06:00, K 07:00, G 08:00, Z 09:00, A 10:00, H 13:00, M 16:00.
 * (5) thread subjects: R Zeta, K Report, G Lunch (reply), Z Lunch (of E),
 *     A Meeting, H Holiday, M Report.
 *     B: Zeta->R, Report->K, Lunch->G then Z (a dummy replaces a
 *     message), Meeting->A, Holiday->H; M: K is no dummy, M is no dummy,
 *     K is no reply: K stays.
 *     C: G under Z (the table's is a dummy, G is not). M and K: neither
 *     is a dummy or a reply: a new dummy D1 takes K's place with
 *     children K and M. Root: R, D1, Z, A, H.
 * (6) siblings by date, deepest first: A's B 11:00, D 10:30 -> D, B;
 *     H's N9 14:00, N10 15:00; Z's E 09:00, F 09:30, G 08:00 -> G, E, F;
 *     D1's K, M; root: R 06:00, D1 (K) 07:00, Z (G) 08:00, A, H.
 * Result: (14 13)((11)(12))((7)(5)(6))(1 (4)(2 3))(8 (9)(10))
 */
static void test_thread_references(void **state)
{
	(void)state;
	static const struct tm_def d[] = {
		{1, H(10, 0), "Meeting", "<a@x>", NULL, NULL},
		{2, H(11, 0), "Re: Meeting", "<b@x>", NULL, "<a@x>"},
		{3, H(12, 0), "Re: Meeting", "<c@x>", "<b@x>", "<a@x> <b@x>"},
		{4, H(10, 30), "Re: Meeting", "<d@x>", "<a@x>", NULL},
		{5, H(9, 0), "Lunch", "<e@x>", NULL, "<zz@x>"},
		{6, H(9, 30), "Re: Lunch", "<f@x>", NULL, "<zz@x>"},
		{7, H(8, 0), "Re: Lunch", "<g@x>", NULL, NULL},
		{8, H(13, 0), "Holiday", "<h@x>", NULL, NULL},
		{9, H(14, 0), "Re: Holiday", NULL, NULL, "<h@x>"},
		{10, H(15, 0), "Holiday plans", "<b@x>", NULL, "<h@x>"},
		{11, H(7, 0), "Report", "<k@x>", NULL, "<q@x>\r\n <k2@x>"},
		{12, H(16, 0), "Report", "<m@x>", NULL, "<y@x>"},
		{13, H(6, 30), "Re: Zeta", "<p@x>", NULL, "<r@x>"},
		{14, H(6, 0), "Zeta", "<r@x>", "<junk> (comment <zz@x>)", NULL},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, d, 14,
		      "(14 13)((11)(12))((7)(5)(6))(1 (4)(2 3))(8 (9)(10))");
}

/* Smaller REFERENCES cases, each with its reasoning. */
static void test_thread_references_rules(void **state)
{
	(void)state;
	/* A loop: 1 says its parent is 2, 2 says its parent is 1. 1: dummy
	 * for b, b->1. 2 fills b; its parent would be 1, a descendant of 2:
	 * no link. */
	static const struct tm_def loop[] = {
		{1, H(1, 0), "x", "<a@x>", NULL, "<b@x>"},
		{2, H(2, 0), "x", "<b@x>", NULL, "<a@x>"},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, loop, 2, "(2 1)");
	/* A message that references itself gets no parent. */
	static const struct tm_def self[] = {{1, H(1, 0), "x", "<a@x>", NULL, "<a@x>"}};
	thread_expect(SEARCH_THREAD_REFERENCES, self, 1, "(1)");
	/* 1B breaks a link 1A made from a truncated References: 2 lists
	 * "a c", so c (message 3, a dummy then) goes under a; 3 itself says
	 * its parent is b (message 4 later): 3 moves under b. Message 4 has
	 * no references: 1B leaves it without a parent ("if this message
	 * has no references, it will now have no parent"). */
	static const struct tm_def trunc[] = {
		{1, H(1, 0), "one", "<a@x>", NULL, NULL},
		{2, H(2, 0), "two", "<z@x>", NULL, "<a@x> <c@x>"},
		{3, H(3, 0), "three", "<c@x>", NULL, "<a@x> <b@x>"},
		{4, H(4, 0), "four", "<b@x>", NULL, NULL},
	};
	/* 2: a->c (dummy), c->2. 3 fills c: 1A a->b; 1B: c's parent a is
	 * not b: unlink, link b->c. 4 fills b, unlinks it from a. Trees:
	 * a; b -> c -> 2. Subjects differ: (1)(4 3 2). */
	thread_expect(SEARCH_THREAD_REFERENCES, trunc, 4, "(1)(4 3 2)");
	/* No references at all, one subject: the non-reply is the parent
	 * of the replies (5C), whatever their dates. */
	static const struct tm_def subj[] = {
		{1, H(1, 0), "Re: topic", "<a@x>", NULL, NULL},
		{2, H(2, 0), "topic", "<b@x>", NULL, NULL},
		{3, H(3, 0), "Fwd: topic", "<c@x>", NULL, NULL},
	};
	/* B: 1 (reply) then 2 (not a reply) replaces it. C: 1 under 2, 3
	 * under 2. (6): 2's children 1, 3. */
	thread_expect(SEARCH_THREAD_REFERENCES, subj, 3, "(2 (1)(3))");
	/* Two non-replies with one subject: a dummy holds both. Two empty
	 * subjects are never grouped. */
	static const struct tm_def two[] = {
		{1, H(1, 0), "topic", NULL, NULL, NULL},
		{2, H(2, 0), "", NULL, NULL, NULL},
		{3, H(3, 0), "TOPIC", NULL, NULL, NULL},
		{4, H(4, 0), "", NULL, NULL, NULL},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, two, 4, "((1)(3))(2)(4)");
	/* Two dummies of one subject merge their children: a->1, b->2 with
	 * a and b unknown; both dummies have 2 children so are kept... */
	static const struct tm_def dd[] = {
		{1, H(1, 0), "s", "<1@x>", NULL, "<a@x>"},
		{2, H(2, 0), "Re: s", "<2@x>", NULL, "<a@x>"},
		{3, H(3, 0), "s", "<3@x>", NULL, "<b@x>"},
		{4, H(4, 0), "Re: s", "<4@x>", NULL, "<b@x>"},
	};
	/* ... (5C) the second dummy's children join the first's: 1 2 3 4. */
	thread_expect(SEARCH_THREAD_REFERENCES, dd, 4, "((1)(2)(3)(4))");
	/* Duplicate Message-IDs: only the first keeps it; 3 refers to 1. */
	static const struct tm_def dup[] = {
		{1, H(1, 0), "a", "<d@x>", NULL, NULL},
		{2, H(2, 0), "b", "<d@x>", NULL, NULL},
		{3, H(3, 0), "c", "<e@x>", NULL, "<d@x>"},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, dup, 3, "(1 3)(2)");
	/* Message-ids compare case-sensitively. */
	static const struct tm_def cs[] = {
		{1, H(1, 0), "a", "<ID@x>", NULL, NULL},
		{2, H(2, 0), "b", "<e@x>", NULL, "<id@x>"},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, cs, 2, "(1)(2)");
	/* A dummy under the root with one child is replaced by it; a dummy
	 * chain collapses. */
	static const struct tm_def chain[] = {
		{1, H(2, 0), "a", "<m@x>", NULL, "<p@x> <q@x> <r@x>"},
		{2, H(1, 0), "b", "<n@x>", NULL, NULL},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, chain, 2, "(2)(1)");
	/* Equal dates: uid order. */
	static const struct tm_def eq[] = {
		{1, H(1, 0), "a", "<r@x>", NULL, NULL},
		{2, H(1, 0), "b", "<s@x>", NULL, "<r@x>"},
		{3, H(1, 0), "c", "<t@x>", NULL, "<r@x>"},
		{4, H(1, 0), "d", NULL, NULL, NULL},
	};
	thread_expect(SEARCH_THREAD_REFERENCES, eq, 4, "(1 (2)(3))(4)");

	/* bad input */
	struct mailsearch_thread_msg m[2] = {{.uid = 2, .base_subject = ""}, {.uid = 2, .base_subject = ""}};
	buf out;
	buf_init(&out);
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_REFERENCES, m, 2, &out), -1);
	m[1].uid = 1;
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_ORDEREDSUBJECT, m, 2, &out), -1);
	m[1].uid = 3;
	m[1].base_subject = NULL;
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_REFERENCES, m, 2, &out), -1);
	m[1].base_subject = "";
	assert_int_equal(mailsearch_thread((enum search_thread_alg)7, m, 2, &out), -1);
	assert_int_equal(out.len, 0);
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_REFERENCES, m, 2, &out), 0);
	buf_append(&out, "", 1);
	assert_string_equal((char *)out.data, "(2)(3)");
	buf_deinit(&out);
}

/* Deep threads: a 200,000-long chain and a 40,000-deep nesting run
 * without recursion. */
static void test_thread_deep(void **state)
{
	(void)state;
	const size_t n = 200000;
	struct mailsearch_thread_msg *m = xcalloc(n, sizeof(*m));
	char *ids = xmalloc(n * 3 * 24);
	for (size_t i = 0; i < n; i++) {
		char *own = ids + i * 72, *ref = own + 24;
		snprintf(own, 24, "<m%zu@x>", i);
		snprintf(ref, 24, "<m%zu@x>", i ? i - 1 : 0);
		m[i].uid = (uint32_t)i + 1;
		m[i].sent_ms = (int64_t)i;
		m[i].base_subject = "deep";
		m[i].message_id = own;
		m[i].references = i ? ref : NULL;
	}
	buf out;
	buf_init(&out);
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_REFERENCES, m, n, &out), 0);
	/* "(1 2 3 ... n)" */
	assert_true(out.len > 10);
	assert_memory_equal(out.data, "(1 2 3 ", 7);
	assert_int_equal(out.data[out.len - 1], ')');
	size_t spaces = 0;
	for (size_t i = 0; i < out.len; i++)
		spaces += out.data[i] == ' ';
	assert_int_equal(spaces, n - 1);

	/* node 2k has children 2k+1 (a leaf) and 2k+2: nesting n/2 deep:
	 * "(1 (2)(3 (4)(5 ..." */
	const size_t n2 = 80001;
	for (size_t i = 0; i < n2; i++) {
		char *ref = ids + i * 72 + 24;
		size_t parent = i == 0 ? 0 : (i % 2 ? i - 1 : i - 2);
		snprintf(ref, 24, "<m%zu@x>", parent);
		m[i].references = i ? ref : NULL;
	}
	buf_reset(&out);
	assert_int_equal(mailsearch_thread(SEARCH_THREAD_REFERENCES, m, n2, &out), 0);
	assert_memory_equal(out.data, "(1 (2)(3 (4)(5 (6)(7 ", 21);
	long depth = 0, max_depth = 0;
	for (size_t i = 0; i < out.len; i++) {
		depth += out.data[i] == '(' ? 1 : out.data[i] == ')' ? -1 : 0;
		assert_true(depth >= 0);
		if (depth > max_depth)
			max_depth = depth;
	}
	assert_int_equal(depth, 0);
	assert_int_equal(max_depth, (long)(n2 - 1) / 2 + 1);
	buf_deinit(&out);
	free(ids);
	free(m);
}

static void test_thread_fields_get(void **state)
{
	(void)state;
	struct tmsg t;
	const struct mailsearch_msg *m =
		tmsg_init(&t,
			  "Subject: [list] Re: Plans\n"
			  "Date: Wed, 17 Jan 2024 10:00:00 +0000\n"
			  "Message-ID: <own@x> (trailing comment)\n"
			  "In-Reply-To: Your message of Monday <parent@x>\n"
			  "References: <a@x>\t<b@x>  < c @ x > <bad>\n",
			  "");
	struct mailsearch_thread_msg f;
	assert_int_equal(mailsearch_thread_fields_get(m, SEARCH_THREAD_REFERENCES, &f), 0);
	assert_int_equal(f.uid, 7);
	assert_int_equal(f.sent_ms, 1705485600000);
	assert_string_equal(f.base_subject, "Plans");
	assert_int_equal(f.is_reply, 1);
	assert_string_equal(f.message_id, "<own@x>");
	assert_string_equal(f.in_reply_to, "<parent@x>");
	assert_string_equal(f.references, "<a@x> <b@x> <c@x>");
	mailsearch_thread_fields_deinit(&f);

	/* ORDEREDSUBJECT needs no ids; no Date: internal date */
	m = tmsg_init(&t, "Subject: hello\nMessage-ID: <own@x>\n", "");
	assert_int_equal(mailsearch_thread_fields_get(m, SEARCH_THREAD_ORDEREDSUBJECT, &f), 0);
	assert_int_equal(f.sent_ms, 760168345000);
	assert_string_equal(f.base_subject, "hello");
	assert_int_equal(f.is_reply, 0);
	assert_null(f.message_id);
	assert_null(f.references);
	mailsearch_thread_fields_deinit(&f);

	/* References with more than MAILSEARCH_REFS_MAX ids: the last ones */
	buf h;
	buf_init(&h);
	buf_append_str(&h, "References:");
	for (int i = 0; i < 150; i++)
		buf_printf(&h, " <r%d@x>", i);
	buf_append_str(&h, "\n");
	m = tmsg_init(&t, (const char *)h.data, "");
	assert_int_equal(mailsearch_thread_fields_get(m, SEARCH_THREAD_REFERENCES, &f), 0);
	assert_true(strncmp(f.references, "<r50@x> <r51@x>", 15) == 0);
	assert_non_null(strstr(f.references, "<r149@x>"));
	assert_null(strstr(f.references, "<r49@x>"));
	assert_string_equal(f.base_subject, "");
	mailsearch_thread_fields_deinit(&f);
	buf_deinit(&h);

	m = tmsg_init(&t, "Subject: x\n", "");
	t.fail_header = 1;
	assert_true(mailsearch_thread_fields_get(m, SEARCH_THREAD_REFERENCES, &f) < 0);
	assert_string_equal(f.base_subject, "");
	mailsearch_thread_fields_deinit(&f);
}

/* ---- message-ids ------------------------------------------------------------------ */

static void test_msgid(void **state)
{
	(void)state;
	const char *v = "junk <a@b> (c <x@y>) <no-at> <@empty> <left@> < s p @ c e > <\"q q\"@h> "
			"<<nested@n> <unclosed@u";
	const char *want[] = {"<a@b>", "<nested@n>"};
	char id[MAILSEARCH_MSGID_MAX + 1];
	size_t len, pos = 0, n = 0;
	const char *got[8];
	char store[8][MAILSEARCH_MSGID_MAX + 1];
	while (mailsearch__msgid_next(v, strlen(v), &pos, id, &len)) {
		assert_true(n < 8);
		assert_int_equal(strlen(id), len);
		strcpy(store[n], id);
		got[n] = store[n];
		n++;
	}
	assert_int_equal(n, 4);
	assert_string_equal(got[0], want[0]);
	assert_string_equal(got[1], "<sp@ce>");
	assert_string_equal(got[2], "<\"q q\"@h>");
	assert_string_equal(got[3], want[1]);
	assert_int_equal(pos, strlen(v));

	/* the length limit */
	char big[MAILSEARCH_MSGID_MAX + 10];
	memset(big, 'a', sizeof(big));
	big[0] = '<';
	big[5] = '@';
	big[MAILSEARCH_MSGID_MAX - 1] = '>';
	pos = 0;
	assert_int_equal(mailsearch__msgid_next(big, MAILSEARCH_MSGID_MAX, &pos, id, &len), 1);
	assert_int_equal(len, MAILSEARCH_MSGID_MAX);
	big[MAILSEARCH_MSGID_MAX - 1] = 'a';
	big[MAILSEARCH_MSGID_MAX] = '>';
	pos = 0;
	assert_int_equal(mailsearch__msgid_next(big, MAILSEARCH_MSGID_MAX + 1, &pos, id, &len), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_meta_keys),
		cmocka_unit_test(test_header_keys),
		cmocka_unit_test(test_case_folding),
		cmocka_unit_test(test_raw_bytes),
		cmocka_unit_test(test_body_and_text),
		cmocka_unit_test(test_chunk_boundaries),
		cmocka_unit_test(test_order_of_work),
		cmocka_unit_test(test_nesting),
		cmocka_unit_test(test_rfc3501_examples),
		cmocka_unit_test(test_sent_keys),
		cmocka_unit_test(test_prog_errors),
		cmocka_unit_test(test_callback_errors),
		cmocka_unit_test(test_date_parse),
		cmocka_unit_test(test_base_subject),
		cmocka_unit_test(test_address_first),
		cmocka_unit_test(test_sort),
		cmocka_unit_test(test_sort_fields_get),
		cmocka_unit_test(test_thread_orderedsubject),
		cmocka_unit_test(test_thread_references),
		cmocka_unit_test(test_thread_references_rules),
		cmocka_unit_test(test_thread_deep),
		cmocka_unit_test(test_thread_fields_get),
		cmocka_unit_test(test_msgid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
