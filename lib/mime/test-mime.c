/* Unit tests for lib/mime: RFC 3501's own ENVELOPE, BODY and section
 * examples; Dovecot's answers for common and broken shapes (verified by
 * running Dovecot 2.3.19.1's imap on these very messages with
 * lib/mime/dovecot-oracle.py); section lookup; any chunking gives the
 * same result; decoders; header filtering; SEARCH text; limits degrade
 * without failing; the part table refuses corruption. */
#include <ctype.h>
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
#include "mime-check.h"
#include "mime.h"
#include "xalloc.h"

/* ---- helpers ---- */

/* The test messages are written with "\n"; mail has CRLF. */
static char *crlf(const char *s, size_t *len_r)
{
	buf b;
	buf_init(&b);
	for (const char *p = s; *p; p++) {
		if (*p == '\n')
			buf_append(&b, "\r\n", 2);
		else
			buf_append(&b, p, 1);
	}
	if (b.data == NULL)
		buf_reserve(&b, 1), b.data[0] = 0;
	return (char *)buf_steal(&b, len_r);
}

struct msg {
	char *data;
	size_t len;
	struct mime_result *r;
};

static struct msg parse(const char *text)
{
	struct msg m;
	m.data = crlf(text, &m.len);
	assert_int_equal(mime_analyze(m.data, m.len, NULL, &m.r), 1);
	assert_true(mime_check_sexp(m.r->envelope, m.r->envelope_len));
	assert_true(mime_check_sexp(m.r->bodystructure, m.r->bodystructure_len));
	assert_true(mime_check_sexp(m.r->body, m.r->body_len));
	assert_int_equal(strlen(m.r->bodystructure), m.r->bodystructure_len);
	assert_int_equal(m.r->size, m.len);
	return m;
}

static void msg_free(struct msg *m)
{
	mime_result_free(&m->r);
	free(m->data);
}

/* A section ("", "1", "4.2.HEADER", "1.MIME", "TEXT"...) as FETCH
 * BODY[...] would slice it; NULL when there is no such part. */
static char *section(const struct msg *m, const char *spec)
{
	uint32_t path[MIME_PATH_MAX];
	size_t depth = 0;
	const char *p = spec;
	while (*p >= '0' && *p <= '9') {
		path[depth++] = (uint32_t)strtoul(p, (char **)&p, 10);
		if (*p == '.')
			p++;
	}
	struct mime_part_loc loc;
	int r = mime_parts_find(m->r->parts, m->r->parts_len, path, depth, &loc);
	assert_true(r >= 0);
	if (r == 0)
		return NULL;
	uint64_t off, len;
	if (*p == 0) {
		off = loc.body_off;
		len = loc.body_len;
	} else if (strcmp(p, "MIME") == 0) {
		off = loc.mime_off;
		len = loc.mime_len;
	} else {
		if (!(loc.flags & MIME_PART_MESSAGE))
			return NULL;
		int hdr = strcmp(p, "HEADER") == 0;
		off = hdr ? loc.hdr_off : loc.text_off;
		len = hdr ? loc.hdr_len : loc.text_len;
	}
	assert_true(off + len <= m->len);
	return xstrndup(m->data + off, (size_t)len);
}

static void assert_section(const struct msg *m, const char *spec, const char *expected_lf)
{
	char *got = section(m, spec);
	if (expected_lf == NULL) {
		if (got != NULL)
			fail_msg("section %s exists: \"%s\"", spec, got);
		return;
	}
	if (got == NULL)
		fail_msg("section %s not found", spec);
	char *exp = crlf(expected_lf, NULL);
	if (strcmp(got, exp) != 0)
		fail_msg("section %s:\n got \"%s\"\nwant \"%s\"", spec, got, exp);
	free(exp);
	free(got);
}

/* Compare IMAP text ignoring the case of letters and the difference
 * between a quoted string and a literal with the same bytes (Dovecot
 * sends lower-case type names as written and prefers literals for
 * strings with quotes; both are the same to an IMAP client). */
static void imap_canon(const char *s, size_t len, buf *out)
{
	size_t i = 0;
	while (i < len) {
		char c = s[i];
		if (c == '"') {
			buf_append(out, "<", 1);
			for (i++; i < len && s[i] != '"'; i++) {
				if (s[i] == '\\')
					i++;
				char l = (char)tolower((unsigned char)s[i]);
				buf_append(out, &l, 1);
			}
			buf_append(out, ">", 1);
			i++;
		} else if (c == '{') {
			size_t n = strtoul(s + i + 1, NULL, 10);
			const char *body = strstr(s + i, "}\r\n") + 3;
			buf_append(out, "<", 1);
			for (size_t k = 0; k < n; k++) {
				char l = (char)tolower((unsigned char)body[k]);
				buf_append(out, &l, 1);
			}
			buf_append(out, ">", 1);
			i = (size_t)(body - s) + n;
		} else {
			char l = (char)tolower((unsigned char)c);
			buf_append(out, &l, 1);
			i++;
		}
	}
}

static void assert_imap_equiv(const char *got, const char *dovecot)
{
	buf a, b;
	buf_init(&a);
	buf_init(&b);
	imap_canon(got, strlen(got), &a);
	imap_canon(dovecot, strlen(dovecot), &b);
	buf_append(&a, "", 0);
	if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
		fail_msg("\n got     %s\n dovecot %s", got, dovecot);
	buf_deinit(&a);
	buf_deinit(&b);
}

/* A body of exactly size bytes with lines LF bytes (CRLF line breaks,
 * the last line without one, as a part before its boundary). */
static void put_body(buf *b, size_t size, size_t lines)
{
	size_t text = size - 2 * lines;
	for (size_t l = 0; l <= lines; l++) {
		size_t n = text / (lines + 1) + (l < text % (lines + 1) ? 1 : 0);
		for (size_t k = 0; k < n; k++)
			buf_append(b, k % 7 == 6 ? " " : "x", 1);
		if (l < lines)
			buf_append(b, "\r\n", 2);
	}
}

/* ---- RFC 3501's examples ---- */

/* RFC 3501 7.4.2: the FETCH response with ENVELOPE and BODY. */
static void test_rfc3501_envelope_and_body(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	char *hdr = crlf("Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
			 "From: Terry Gray <gray@cac.washington.edu>\n"
			 "Subject: IMAP4rev1 WG mtg summary and minutes\n"
			 "To: imap@cac.washington.edu\n"
			 "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n"
			 "Message-Id: <B27397-0100000@cac.washington.edu>\n"
			 "MIME-Version: 1.0\n"
			 "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\n",
			 NULL);
	buf_append_str(&b, hdr);
	free(hdr);
	put_body(&b, 3026, 91);
	buf_append(&b, "\r\n", 2); /* 3028 bytes, 92 lines: the body ends the message */
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	assert_string_equal(r->envelope,
			    "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" "
			    "\"IMAP4rev1 WG mtg summary and minutes\" "
			    "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
			    "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
			    "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
			    "((NIL NIL \"imap\" \"cac.washington.edu\")) "
			    "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")"
			    "(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) NIL NIL "
			    "\"<B27397-0100000@cac.washington.edu>\")");
	assert_string_equal(r->body,
			    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 3028 92)");
	assert_string_equal(r->bodystructure, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL "
					      "NIL \"7BIT\" 3028 92 NIL NIL NIL NIL)");
	assert_int_equal(r->flags, 0);
	mime_result_free(&r);
	buf_deinit(&b);
}

/* RFC 3501 7.4.2 BODY: the multipart example. */
static void test_rfc3501_body_multipart(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	char *t = crlf("Content-Type: multipart/mixed; boundary=\"x\"\n\n--x\n"
		       "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n\n",
		       NULL);
	buf_append_str(&b, t);
	free(t);
	put_body(&b, 1152, 23);
	t = crlf("\n--x\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\n"
		 "Content-ID: <960723163407.20117h@cac.washington.edu>\n"
		 "Content-Description: Compiler diff\n"
		 "Content-Transfer-Encoding: BASE64\n\n",
		 NULL);
	buf_append_str(&b, t);
	free(t);
	put_body(&b, 4554, 73);
	buf_append_str(&b, "\r\n--x--\r\n");
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	assert_string_equal(r->body,
			    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 "
			    "23)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") "
			    "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" "
			    "\"BASE64\" 4554 73) \"MIXED\")");
	mime_result_free(&r);
	buf_deinit(&b);
}

/* RFC 3501 6.4.5: the section numbering example, every section. */
static const char rfc3501_sections[] =
	"From: a@example.com\n"
	"Subject: sections\n"
	"Content-Type: MULTIPART/MIXED; boundary=\"b0\"\n"
	"\n"
	"preamble\n"
	"--b0\n"
	"Content-Type: TEXT/PLAIN\n"
	"\n"
	"part 1\n"
	"--b0\n"
	"Content-Type: APPLICATION/OCTET-STREAM\n"
	"Content-Transfer-Encoding: base64\n"
	"\n"
	"cGFydCAy\n"
	"--b0\n"
	"Content-Type: MESSAGE/RFC822\n"
	"\n"
	"Subject: part 3\n"
	"Content-Type: MULTIPART/MIXED; boundary=\"b3\"\n"
	"\n"
	"--b3\n"
	"Content-Type: TEXT/PLAIN\n"
	"\n"
	"part 3.1\n"
	"--b3\n"
	"Content-Type: APPLICATION/OCTET-STREAM\n"
	"\n"
	"part 3.2\n"
	"--b3--\n"
	"--b0\n"
	"Content-Type: MULTIPART/MIXED; boundary=\"b4\"\n"
	"\n"
	"--b4\n"
	"Content-Type: IMAGE/GIF\n"
	"\n"
	"part 4.1\n"
	"--b4\n"
	"Content-Type: MESSAGE/RFC822\n"
	"\n"
	"Subject: part 4.2\n"
	"Content-Type: MULTIPART/MIXED; boundary=\"b42\"\n"
	"\n"
	"--b42\n"
	"Content-Type: TEXT/PLAIN\n"
	"\n"
	"part 4.2.1\n"
	"--b42\n"
	"Content-Type: MULTIPART/ALTERNATIVE; boundary=\"b422\"\n"
	"\n"
	"--b422\n"
	"Content-Type: TEXT/PLAIN\n"
	"\n"
	"part 4.2.2.1\n"
	"--b422\n"
	"Content-Type: TEXT/RICHTEXT\n"
	"\n"
	"part 4.2.2.2\n"
	"--b422--\n"
	"\n"
	"--b42--\n"
	"\n"
	"--b4--\n"
	"epilogue\n"
	"--b0--\n";

static void test_rfc3501_sections(void **state)
{
	(void)state;
	struct msg m = parse(rfc3501_sections);
	assert_int_equal(m.r->flags, 0);
	/* verified with Dovecot */
	assert_imap_equiv(
		m.r->bodystructure,
		"((\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 0 NIL NIL NIL NIL)"
		"(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL)"
		"(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 175 (NIL \"part 3\" NIL NIL NIL NIL NIL "
		"NIL NIL NIL) ((\"TEXT\" \"PLAIN\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL "
		"NIL NIL NIL)(\"APPLICATION\" \"OCTET-STREAM\" NIL NIL NIL \"7bit\" 8 NIL NIL NIL NIL) "
		"\"MIXED\" (\"boundary\" \"b3\") NIL NIL NIL) 12 NIL NIL NIL NIL)((\"IMAGE\" \"GIF\" NIL "
		"NIL NIL \"7bit\" 8 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 302 (NIL "
		"\"part 4.2\" NIL NIL NIL NIL NIL NIL NIL NIL) ((\"TEXT\" \"PLAIN\" (\"charset\" "
		"\"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL)((\"TEXT\" \"PLAIN\" (\"charset\" "
		"\"us-ascii\") NIL NIL \"7bit\" 12 0 NIL NIL NIL NIL)(\"TEXT\" \"RICHTEXT\" (\"charset\" "
		"\"us-ascii\") NIL NIL \"7bit\" 12 0 NIL NIL NIL NIL) \"ALTERNATIVE\" (\"boundary\" "
		"\"b422\") NIL NIL NIL) \"MIXED\" (\"boundary\" \"b42\") NIL NIL NIL) 21 NIL NIL NIL NIL) "
		"\"MIXED\" (\"boundary\" \"b4\") NIL NIL NIL) \"MIXED\" (\"boundary\" \"b0\") NIL NIL "
		"NIL)");
	assert_section(&m, "HEADER", "From: a@example.com\nSubject: sections\n"
				     "Content-Type: MULTIPART/MIXED; boundary=\"b0\"\n\n");
	char *text = section(&m, "TEXT");
	assert_non_null(text);
	assert_true(strncmp(text, "preamble\r\n--b0\r\n", 16) == 0);
	assert_int_equal(strlen(text) + 88, m.len);
	free(text);
	char *all = section(&m, "");
	assert_string_equal(all, m.data);
	free(all);
	assert_section(&m, "1", "part 1");
	assert_section(&m, "1.MIME", "Content-Type: TEXT/PLAIN\n\n");
	assert_section(&m, "2", "cGFydCAy");
	assert_section(&m, "3.HEADER",
		       "Subject: part 3\nContent-Type: MULTIPART/MIXED; boundary=\"b3\"\n\n");
	/* the close delimiter's line break stays with 3 (Dovecot does so) */
	assert_section(&m, "3.TEXT", "--b3\nContent-Type: TEXT/PLAIN\n\npart 3.1\n--b3\n"
				     "Content-Type: APPLICATION/OCTET-STREAM\n\npart 3.2\n--b3--\n");
	assert_section(&m, "3.MIME", "Content-Type: MESSAGE/RFC822\n\n");
	assert_section(&m, "3.1", "part 3.1");
	assert_section(&m, "3.2", "part 3.2");
	assert_section(&m, "3.2.MIME", "Content-Type: APPLICATION/OCTET-STREAM\n\n");
	assert_section(&m, "4.1", "part 4.1");
	assert_section(&m, "4.1.MIME", "Content-Type: IMAGE/GIF\n\n");
	assert_section(&m, "4.2.HEADER",
		       "Subject: part 4.2\nContent-Type: MULTIPART/MIXED; boundary=\"b42\"\n\n");
	assert_section(&m, "4.2.1", "part 4.2.1");
	assert_section(&m, "4.2.2.1", "part 4.2.2.1");
	assert_section(&m, "4.2.2.2", "part 4.2.2.2");
	assert_section(&m, "4.2.2.2.MIME", "Content-Type: TEXT/RICHTEXT\n\n");
	assert_section(&m, "4.2.2", "--b422\nContent-Type: TEXT/PLAIN\n\npart 4.2.2.1\n--b422\n"
				    "Content-Type: TEXT/RICHTEXT\n\npart 4.2.2.2\n--b422--\n");
	/* the epilogue of 4 is its own: 4 ends before the line break that
	 * precedes "--b0--" */
	char *four = section(&m, "4");
	assert_non_null(four);
	assert_true(strlen(four) > 9 && strcmp(four + strlen(four) - 16, "--b4--\r\nepilogue") == 0);
	free(four);
	/* no such parts */
	assert_section(&m, "5", NULL);
	assert_section(&m, "1.1", NULL);
	assert_section(&m, "3.3", NULL);
	assert_section(&m, "4.3", NULL);
	assert_section(&m, "4.2.3", NULL);
	assert_section(&m, "4.2.2.3", NULL);
	assert_section(&m, "1.HEADER", NULL); /* not a message/rfc822 */
	/* the part types in the table */
	uint32_t p[3] = {4, 2, 2};
	struct mime_part_loc loc;
	assert_int_equal(mime_parts_find(m.r->parts, m.r->parts_len, p, 3, &loc), 1);
	assert_int_equal(loc.flags, MIME_PART_MULTIPART);
	p[2] = 1;
	assert_int_equal(mime_parts_find(m.r->parts, m.r->parts_len, p, 3, &loc), 1);
	assert_int_equal(loc.flags, MIME_PART_TEXT);
	assert_string_equal(loc.charset, "us-ascii");
	p[0] = 2;
	assert_int_equal(mime_parts_find(m.r->parts, m.r->parts_len, p, 1, &loc), 1);
	assert_int_equal(loc.encoding, MIME_ENC_BASE64);
	assert_int_equal(m.r->n_parts, 13); /* the root and the 12 numbered parts */
	msg_free(&m);
}

/* A non-multipart message: [1] is its body, [1.MIME] its header; a
 * message/rfc822 body: 1.1 is the inner message's body. */
static void test_sections_single(void **state)
{
	(void)state;
	struct msg m = parse("Subject: x\n\nhello\n");
	assert_section(&m, "1", "hello\n");
	assert_section(&m, "1.MIME", "Subject: x\n\n");
	assert_section(&m, "HEADER", "Subject: x\n\n");
	assert_section(&m, "TEXT", "hello\n");
	assert_section(&m, "2", NULL);
	assert_section(&m, "1.1", NULL);
	msg_free(&m);

	m = parse("Subject: outer\nContent-Type: message/rfc822\n\nSubject: inner\n\nbody\n");
	assert_section(&m, "1", "Subject: inner\n\nbody\n");
	assert_section(&m, "1.HEADER", "Subject: inner\n\n");
	assert_section(&m, "1.TEXT", "body\n");
	assert_section(&m, "1.1", "body\n");
	assert_section(&m, "1.1.MIME", "Subject: inner\n\n");
	assert_string_equal(m.r->body,
			    "(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 24 (NIL \"inner\" NIL NIL "
			    "NIL NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") "
			    "NIL NIL \"7BIT\" 6 1) 3)");
	msg_free(&m);

	/* a message/rfc822 part whose message is not multipart: 2.1 is its body */
	m = parse("Content-Type: multipart/mixed; boundary=B\n\n--B\n\none\n--B\n"
		  "Content-Type: message/rfc822\n\nSubject: s\n\ninner body\n--B--\n");
	assert_section(&m, "2.1", "inner body");
	assert_section(&m, "2.TEXT", "inner body");
	assert_section(&m, "2.1.MIME", "Subject: s\n\n");
	assert_section(&m, "2.2", NULL);
	msg_free(&m);
}

/* ---- Dovecot's answers (verified with dovecot-oracle.py) ---- */

struct dovecot_case {
	const char *name;
	const char *msg;
	const char *bodystructure; /* exactly as Dovecot 2.3.19.1 sent it */
	const char *envelope;      /* NULL: not compared */
};

static const struct dovecot_case dovecot_cases[] = {
	{"mixed with preamble and epilogue",
	 "From: a@b.c\nContent-Type: multipart/mixed; boundary=\"XX\"\n\npre\n--XX\n"
	 "Content-Type: text/plain\n\nhello\n--XX\nContent-Type: text/plain; charset=utf-8\n\n"
	 "two lines\nhere\n\n--XX\nContent-Type: text/html\n\n<b>x</b>\n--XX--\nepi\n",
	 "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)"
	 "(\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 17 2 NIL NIL NIL NIL)"
	 "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) "
	 "\"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)",
	 "(NIL NIL ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) "
	 "NIL NIL NIL NIL NIL)"},
	{"no final line break",
	 "From: a@b.c\nSubject: x\n\nhello",
	 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)",
	 "(NIL \"x\" ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) ((NIL NIL \"a\" \"b.c\")) "
	 "NIL NIL NIL NIL NIL)"},
	{"message/rfc822 parts, groups, routes, comments",
	 "From: a@b.c\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\n"
	 "Content-Type: message/rfc822\n\nFrom: \"Joe Q. Public\" <joe@x.y>\nSubject: inner\n"
	 "To: group: a@b, c@d;, \"x y\"@z (comment), <@r1,@r2:u@h>\n"
	 "Cc: undisclosed-recipients:;\nMessage-ID: <id@x>\nIn-Reply-To: <p@q>\n"
	 "Content-Type: multipart/alternative; boundary=YY\n\n--YY\nContent-Type: text/plain\n\n"
	 "t\n--YY\nContent-Type: text/html\n\nh\n--YY--\n\n--XX\nContent-Type: message/rfc822\n\n"
	 "Subject: single\n\nbody\n--XX--\n",
	 "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 308 (NIL \"inner\" ((\"Joe Q. Public\" NIL "
	 "\"joe\" \"x.y\")) ((\"Joe Q. Public\" NIL \"joe\" \"x.y\")) ((\"Joe Q. Public\" NIL "
	 "\"joe\" \"x.y\")) ((NIL NIL \"group\" NIL)(NIL NIL \"a\" \"b\")(NIL NIL \"c\" \"d\")"
	 "(NIL NIL NIL NIL)(\"comment\" NIL \"x y\" \"z\")(NIL \"@r1,@r2\" \"u\" \"h\")) "
	 "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL \"<p@q>\" \"<id@x>\") "
	 "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL)"
	 "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
	 "\"alternative\" (\"boundary\" \"YY\") NIL NIL NIL) 17 NIL NIL NIL NIL)"
	 "(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 23 (NIL \"single\" NIL NIL NIL NIL NIL NIL "
	 "NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL "
	 "NIL NIL) 2 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"XX\") NIL NIL NIL)",
	 NULL},
	{"multipart/digest defaults to message/rfc822",
	 "From: a@b.c\nContent-Type: multipart/digest; boundary=D\n\n--D\n\nSubject: m1\n\none\n"
	 "--D\nContent-Type: text/plain\n\ntwo\n--D--\n",
	 "((\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 18 (NIL \"m1\" NIL NIL NIL NIL NIL NIL NIL "
	 "NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL) "
	 "2 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 "
	 "NIL NIL NIL NIL) \"digest\" (\"boundary\" \"D\") NIL NIL NIL)",
	 NULL},
	{"headers cut by boundaries, junk after a boundary, empty subject and date",
	 "Subject: \nDate:\nContent-Type: MULTIPART/Mixed; BOUNDARY=\"XX\"\n\n--XX junk\n"
	 "Content-Type: text/plain\n--XX\nContent-Type: text/plain\n\n--XX\n"
	 "Content-Type: text/plain; charset=\"UTF-8\"\n\na\n--XX--",
	 "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
	 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
	 "(\"text\" \"plain\" (\"charset\" \"UTF-8\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
	 "\"Mixed\" (\"BOUNDARY\" \"XX\") NIL NIL NIL)",
	 "(\"\" \"\" NIL NIL NIL NIL NIL NIL NIL NIL)"},
	{"an inner multipart closed by the outer boundary",
	 "Content-Type: multipart/mixed; boundary=O\n\n--O\n"
	 "Content-Type: multipart/alternative; boundary=I\n\n--I\nContent-Type: text/plain\n\n"
	 "in1\n--O\nContent-Type: text/plain\n\nlast\n--O--\n",
	 "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 0 NIL NIL NIL NIL) "
	 "\"alternative\" (\"boundary\" \"I\") NIL NIL NIL)(\"text\" \"plain\" (\"charset\" "
	 "\"us-ascii\") NIL NIL \"7bit\" 4 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"O\") NIL "
	 "NIL NIL)",
	 "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"},
	{"a header without a body",
	 "Subject: a\nFrom: b@c",
	 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)",
	 "(NIL \"a\" ((NIL NIL \"b\" \"c\")) ((NIL NIL \"b\" \"c\")) ((NIL NIL \"b\" \"c\")) NIL NIL "
	 "NIL NIL NIL)"},
	{"first Content-Type wins; empty addresses",
	 "Content-Type: text/html\nContent-Type: text/plain; charset=iso-8859-1\n"
	 "Subject: \"q\"  \\ a\nTo: undisclosed-recipients:;\nFrom: <>, Name <a@b>\n\nx\n",
	 "(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 3 1 NIL NIL NIL NIL)",
	 "(NIL {7}\r\n\"q\" \\ a ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"Name\" NIL \"a\" "
	 "\"b\")) ((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"Name\" NIL \"a\" \"b\")) "
	 "((NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")(\"Name\" NIL \"a\" \"b\")) ((NIL NIL "
	 "\"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) NIL NIL NIL NIL)"},
	{"boundary prefixes: the innermost wins",
	 "Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab  \n"
	 "Content-Type: multipart/mixed; boundary=\"abc\"\n\n--abc\nContent-Type: text/plain\n\n"
	 "x\n--abc--\n--ab--\n",
	 "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
	 "\"mixed\" (\"boundary\" \"abc\") NIL NIL NIL) \"mixed\" (\"boundary\" \"ab\") NIL NIL NIL)",
	 NULL},
	{"epilogues, a multipart inside message/rfc822",
	 "Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\n"
	 "Content-Type: multipart/mixed; boundary=\"abc\"\n\n--abc\nContent-Type: text/plain\n\n"
	 "x\n--abc--\nepi\n--ab\nContent-Type: message/rfc822\n\n"
	 "Content-Type: multipart/mixed; boundary=\"z\"\n\n--z\n\ny\n--z--\n--ab--\n",
	 "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
	 "\"mixed\" (\"boundary\" \"abc\") NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" "
	 "64 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ((\"text\" \"plain\" (\"charset\" "
	 "\"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"z\") NIL "
	 "NIL NIL) 6 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"ab\") NIL NIL NIL)",
	 NULL},
	{"an empty part between two boundaries",
	 "Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\n--ab\n\nx\n--ab--\n",
	 "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0 NIL NIL NIL NIL)"
	 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 1 0 NIL NIL NIL NIL) "
	 "\"mixed\" (\"boundary\" \"ab\") NIL NIL NIL)",
	 NULL},
	{"8-bit and encoded headers, odd addresses",
	 "From: =?utf-8?q?J=C3=B6rg?= <j@x.de>, user, @, \"quoted\\\"x\" <a.b@c>, M\xc3\xbcller "
	 "<m@x>\nSender:\nReply-To: \nTo: a@b (Real Name)\nSubject: Gr\xc3\xbc\xc3\x9f" "e \"q\" \\ x\n"
	 "  folded\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <a@b>  (c)\n"
	 "Bcc: <x@[1.2.3.4]>\n\nbody\n",
	 "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 6 1 NIL NIL NIL NIL)",
	 "(\"Mon, 1 Jan 2024 00:00:00 +0000\" {22}\r\nGr\xc3\xbc\xc3\x9f" "e \"q\" \\ x folded "
	 "((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.de\")(NIL NIL \"user\" \"MISSING_DOMAIN\")(NIL "
	 "NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")({8}\r\nquoted\"x NIL \"a.b\" \"c\")({7}\r\n"
	 "M\xc3\xbcller NIL \"m\" \"x\")) ((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.de\")(NIL NIL "
	 "\"user\" \"MISSING_DOMAIN\")(NIL NIL \"MISSING_MAILBOX\" \"MISSING_DOMAIN\")({8}\r\n"
	 "quoted\"x NIL \"a.b\" \"c\")({7}\r\nM\xc3\xbcller NIL \"m\" \"x\")) ((\"=?utf-8?q?J=C3=B6rg?=\" "
	 "NIL \"j\" \"x.de\")(NIL NIL \"user\" \"MISSING_DOMAIN\")(NIL NIL \"MISSING_MAILBOX\" "
	 "\"MISSING_DOMAIN\")({8}\r\nquoted\"x NIL \"a.b\" \"c\")({7}\r\nM\xc3\xbcller NIL \"m\" "
	 "\"x\")) ((\"Real Name\" NIL \"a\" \"b\")) NIL ((NIL NIL \"x\" \"[1.2.3.4]\")) NIL "
	 "\"<a@b>  (c)\")"},
};

static void test_dovecot_shapes(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof dovecot_cases / sizeof *dovecot_cases; i++) {
		const struct dovecot_case *c = &dovecot_cases[i];
		print_message("%s\n", c->name);
		struct msg m = parse(c->msg);
		assert_imap_equiv(m.r->bodystructure, c->bodystructure);
		if (c->envelope != NULL)
			assert_imap_equiv(m.r->envelope, c->envelope);
		msg_free(&m);
	}
}

/* Sections of those shapes, as Dovecot sent them. */
static void test_dovecot_sections(void **state)
{
	(void)state;
	struct msg m = parse(dovecot_cases[0].msg);
	assert_section(&m, "1.MIME", "Content-Type: text/plain\n\n");
	assert_section(&m, "1", "hello");
	msg_free(&m);
	m = parse(dovecot_cases[2].msg);
	assert_section(&m, "1.MIME", "Content-Type: message/rfc822\n\n");
	char *one = section(&m, "1");
	assert_int_equal(strlen(one), 308);
	free(one);
	msg_free(&m);
	m = parse(dovecot_cases[3].msg);
	assert_section(&m, "1.MIME", "\n");
	assert_section(&m, "1", "Subject: m1\n\none");
	msg_free(&m);
	m = parse(dovecot_cases[4].msg);
	assert_section(&m, "1.MIME", "Content-Type: text/plain");
	assert_section(&m, "1", "");
	assert_section(&m, "2.MIME", "Content-Type: text/plain\n");
	assert_section(&m, "2", "");
	assert_true(m.r->flags & MIME_RESULT_BROKEN);
	msg_free(&m);
	m = parse(dovecot_cases[5].msg);
	assert_section(&m, "1.MIME", "Content-Type: multipart/alternative; boundary=I\n\n");
	assert_section(&m, "1", "--I\nContent-Type: text/plain\n\nin1");
	assert_section(&m, "2", "last");
	assert_true(m.r->flags & MIME_RESULT_BROKEN); /* I has no close delimiter */
	msg_free(&m);
	m = parse(dovecot_cases[6].msg);
	assert_section(&m, "1.MIME", "Subject: a\nFrom: b@c");
	assert_section(&m, "1", "");
	msg_free(&m);
	m = parse(dovecot_cases[8].msg);
	assert_section(&m, "1", "--abc\nContent-Type: text/plain\n\nx\n--abc--\n");
	msg_free(&m);
	m = parse(dovecot_cases[9].msg);
	assert_section(&m, "1", "--abc\nContent-Type: text/plain\n\nx\n--abc--\nepi");
	assert_section(&m, "2", "Content-Type: multipart/mixed; boundary=\"z\"\n\n--z\n\ny\n--z--\n");
	assert_section(&m, "2.TEXT", "--z\n\ny\n--z--\n");
	msg_free(&m);
	m = parse(dovecot_cases[10].msg);
	assert_section(&m, "1", "");
	assert_section(&m, "2", "x");
	msg_free(&m);
}

/* ---- our own forms where we differ from Dovecot on purpose ---- */

static void test_content_defaults(void **state)
{
	(void)state;
	/* RFC 2045 5.2: an invalid Content-Type is text/plain; us-ascii
	 * (Dovecot sends "text" "" and "" "" here) */
	struct msg m = parse("Content-Type: multipart/mixed; boundary=X\n\n--X\n"
			     "Content-Type: text\nContent-Language: (c) en\n\na\n--X\n"
			     "Content-Type: ;\n\nb\n");
	assert_string_equal(m.r->bodystructure,
			    "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 1 0 "
			    "NIL NIL (\"en\") NIL)(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL "
			    "NIL \"7BIT\" 3 1 NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"X\") NIL NIL "
			    "NIL)");
	assert_true(m.r->flags & MIME_RESULT_BROKEN); /* no close delimiter */
	msg_free(&m);

	/* a multipart without a boundary is opaque text (Dovecot shows an
	 * empty part instead, hiding the text) */
	m = parse("Content-Type: multipart/mixed\n\n--XX\nhi\n");
	assert_string_equal(m.r->body,
			    "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL \"7BIT\" 10 2)");
	assert_true(m.r->flags & MIME_RESULT_BROKEN);
	assert_section(&m, "1", "--XX\nhi\n");
	msg_free(&m);

	/* message/rfc822 in base64 (RFC 2046 forbids it) is not read: an
	 * empty envelope and body, as Dovecot does */
	m = parse("Content-Type: multipart/mixed; boundary=XX\n\n--XX\n"
		  "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n"
		  "U3ViamVjdDogeAoKaGkK\n--XX--\n");
	assert_string_equal(m.r->body,
			    "((\"MESSAGE\" \"RFC822\" NIL NIL NIL \"BASE64\" 20 (NIL NIL NIL NIL NIL "
			    "NIL NIL NIL NIL NIL) (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL "
			    "NIL \"7BIT\" 0 0) 0) \"MIXED\")");
	assert_section(&m, "1.HEADER", NULL);
	msg_free(&m);

	/* extension data of every kind */
	m = parse("Content-Type: multipart/mixed; boundary=XX\n"
		  "Content-Disposition: inline; filename=\"=?utf-8?q?a?=\"\n"
		  "Content-Language: en\nContent-Location: http://example.com/x\n\n--XX\n"
		  "Content-Type: application/octet-stream; name*0=\"long\"; name*1=\"name.txt\"\n"
		  "Content-Disposition: attachment; filename*=utf-8''%E2%82%AC%20x.txt; size=3\n"
		  "Content-Transfer-Encoding: base64\nContent-ID: <cid@x>\n"
		  "Content-Description: a file\nContent-Language: en, de\n"
		  "Content-Location: http://x/y\nContent-MD5: abc\n\neHl6\n--XX\n"
		  "Content-Type: text/plain; charset*=us-ascii'en'abc; format=flowed\n"
		  "Content-Disposition: inline\n\nx\n--XX--\n");
	assert_string_equal(
		m.r->bodystructure,
		"((\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.txt\") \"<cid@x>\" \"a file\" "
		"\"BASE64\" 4 \"abc\" (\"ATTACHMENT\" (\"FILENAME*\" \"utf-8''%E2%82%AC%20x.txt\" "
		"\"SIZE\" \"3\")) (\"en\" \"de\") \"http://x/y\")(\"TEXT\" \"PLAIN\" (\"CHARSET*\" "
		"\"us-ascii'en'abc\" \"FORMAT\" \"flowed\") NIL NIL \"7BIT\" 1 0 NIL (\"INLINE\" NIL) "
		"NIL NIL) \"MIXED\" (\"BOUNDARY\" \"XX\") (\"INLINE\" (\"FILENAME\" \"=?utf-8?q?a?=\")) "
		"(\"en\") \"http://example.com/x\")");
	assert_string_equal(m.r->body,
			    "((\"APPLICATION\" \"OCTET-STREAM\" (\"NAME\" \"longname.txt\") "
			    "\"<cid@x>\" \"a file\" \"BASE64\" 4)(\"TEXT\" \"PLAIN\" (\"CHARSET*\" "
			    "\"us-ascii'en'abc\" \"FORMAT\" \"flowed\") NIL NIL \"7BIT\" 1 0) "
			    "\"MIXED\")");
	msg_free(&m);
}

static void test_rfc2231(void **state)
{
	(void)state;
	/* continuations in any order, mixed extended and plain segments,
	 * a missing section ends the value, unquoted tokens with '=' */
	struct msg m = parse(
		"Content-Type: application/pdf;\n name*1*=%20Rechnung.pdf;\n"
		" name*0*=utf-8'de'%E2%82%AC;\n title*0=\"a b\"; title*3=\"lost\";\n"
		" title*1=c; boundary=----=_Part_1\n\n%PDF\n");
	assert_string_equal(m.r->body, "(\"APPLICATION\" \"PDF\" (\"NAME*\" "
				       "\"utf-8'de'%E2%82%AC%20Rechnung.pdf\" \"TITLE\" \"a bc\" "
				       "\"BOUNDARY\" \"----=_Part_1\") NIL NIL \"7BIT\" 6)");
	msg_free(&m);
	/* a plain segment inside an extended value is percent-encoded */
	m = parse("Content-Type: text/plain; charset=utf-8;\n"
		  " name*0*=us-ascii''a%20b; name*1=\"c d\"\n\nx");
	assert_string_equal(m.r->body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"utf-8\" \"NAME*\" "
				       "\"us-ascii''a%20bc%20d\") NIL NIL \"7BIT\" 1 0)");
	msg_free(&m);
}

static void test_envelope_addresses(void **state)
{
	(void)state;
	struct msg m = parse(
		"From: Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>\n"
		"To:A Group(Some people):Chris Jones <c@(Chris's host.)public.example>,\n"
		"    joe@example.org,\n  John <jdoe@one.test> (my dear friend); (the end of the "
		"group)\n"
		"Cc:(Empty list)(start)Hidden recipients  :(nobody(that I know))  ;\n"
		"Reply-To: Mary Smith <mary@x.test>, jdoe@example.org, Who? <one@y.test>\n"
		"Sender: \"Joe Q. Public\" <john.q.public@example.com>\n"
		"Bcc: \"Giant; \\\"Big\\\" Box\" <sysservices@example.net>\n"
		"Message-ID:              <testabcd.1234@silly.test>\n"
		"In-Reply-To: <1234@local.machine.example>\n"
		"Subject: Saying Hello\nDate: Fri, 21 Nov 1997 09:55:06 -0600\n\nHi\n");
	/* RFC 5322 A.5 and A.1.2, as RFC 3501 structures (the same as
	 * Dovecot's, which sends the Bcc name as a literal) */
	assert_string_equal(
		m.r->envelope,
		"(\"Fri, 21 Nov 1997 09:55:06 -0600\" \"Saying Hello\" ((\"Pete\" NIL \"pete\" "
		"\"silly.test\")) ((\"Joe Q. Public\" NIL \"john.q.public\" \"example.com\")) "
		"((\"Mary Smith\" NIL \"mary\" \"x.test\")(NIL NIL \"jdoe\" \"example.org\")"
		"(\"Who?\" NIL \"one\" \"y.test\")) ((NIL NIL \"A Group\" NIL)(\"Chris Jones\" NIL "
		"\"c\" \"public.example\")(NIL NIL \"joe\" \"example.org\")(\"John\" NIL \"jdoe\" "
		"\"one.test\")(NIL NIL NIL NIL)) ((NIL NIL \"Hidden recipients\" NIL)(NIL NIL NIL "
		"NIL)) ((\"Giant; \\\"Big\\\" Box\" NIL \"sysservices\" \"example.net\")) "
		"\"<1234@local.machine.example>\" \"<testabcd.1234@silly.test>\")");
	msg_free(&m);
	/* nothing but a blank address field: NIL, and the defaults copy NIL */
	m = parse("From: \nTo: ,,\nSubject: s\n\n");
	assert_string_equal(m.r->envelope, "(NIL \"s\" NIL NIL NIL NIL NIL NIL NIL NIL)");
	msg_free(&m);
	/* NUL becomes a space; 8-bit goes in a literal */
	char raw[] = "Subject: a\0b\r\nIn-Reply-To: \xff\r\n\r\n";
	struct mime_result *r;
	mime_analyze(raw, sizeof raw - 1, NULL, &r);
	assert_string_equal(r->envelope, "(NIL \"a b\" NIL NIL NIL NIL NIL NIL {1}\r\n\xff NIL)");
	mime_result_free(&r);
}

/* ---- chunking ---- */

static void assert_same_result(const struct mime_result *a, const struct mime_result *b)
{
	assert_string_equal(a->envelope, b->envelope);
	assert_string_equal(a->bodystructure, b->bodystructure);
	assert_string_equal(a->body, b->body);
	assert_int_equal(a->parts_len, b->parts_len);
	assert_memory_equal(a->parts, b->parts, a->parts_len);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->size, b->size);
}

static void check_chunkings(const char *data, size_t len, const struct mime_limits *lim)
{
	struct mime_result *one, *r;
	mime_analyze(data, len, lim, &one);
	/* byte by byte */
	mime_parser *p = mime_parser_create(lim);
	for (size_t i = 0; i < len; i++)
		mime_parser_feed(p, data + i, 1);
	mime_parser_finish(p, &r);
	mime_parser_destroy(&p);
	assert_same_result(one, r);
	mime_result_free(&r);
	/* random splits */
	unsigned seed = 7;
	for (int round = 0; round < 20; round++) {
		p = mime_parser_create(lim);
		size_t off = 0;
		while (off < len) {
			seed = seed * 1103515245u + 12345u;
			size_t n = 1 + (seed >> 16) % (round < 10 ? 8 : 200);
			if (n > len - off)
				n = len - off;
			mime_parser_feed(p, data + off, n);
			mime_parser_feed(p, data + off, 0);
			off += n;
		}
		mime_parser_finish(p, &r);
		mime_parser_destroy(&p);
		assert_same_result(one, r);
		mime_result_free(&r);
	}
	mime_result_free(&one);
}

static void test_chunking(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof dovecot_cases / sizeof *dovecot_cases; i++) {
		size_t len;
		char *d = crlf(dovecot_cases[i].msg, &len);
		check_chunkings(d, len, NULL);
		free(d);
	}
	size_t len;
	char *d = crlf(rfc3501_sections, &len);
	check_chunkings(d, len, NULL);
	/* with limits that bite */
	struct mime_limits lim = mime_limits_default();
	lim.max_parts = 5;
	lim.max_header_bytes = 40;
	check_chunkings(d, len, &lim);
	free(d);
	/* bare LFs, a boundary line at the very end without its LF */
	const char lf[] = "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n\nx\n--b";
	check_chunkings(lf, sizeof lf - 1, NULL);
	struct mime_result *r;
	mime_analyze(lf, sizeof lf - 1, NULL, &r);
	assert_string_equal(r->body, "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
				     "\"7BIT\" 1 0) \"MIXED\")");
	mime_result_free(&r);
}

/* ---- limits ---- */

static void test_limit_depth(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	for (int i = 0; i < 40; i++)
		buf_printf(&b, "Content-Type: multipart/mixed; boundary=\"=_%d_=\"\r\n\r\n--=_%d_=\r\n",
			   i, i);
	buf_append_str(&b, "\r\ndeep\r\n");
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	assert_true(r->flags & MIME_RESULT_TRUNCATED);
	assert_true(mime_check_sexp(r->bodystructure, r->bodystructure_len));
	/* 31 multiparts, then the 32nd level is text */
	size_t open = 0;
	for (const char *s = r->bodystructure; *s == '('; s++)
		open++;
	assert_int_equal(open, 32);
	assert_non_null(strstr(r->bodystructure, "((\"TEXT\" \"PLAIN\""));
	assert_int_equal(r->n_parts, 32); /* the root and 31 numbered parts */
	check_chunkings((const char *)b.data, b.len, NULL);
	mime_result_free(&r);
	buf_deinit(&b);
}

static void test_limit_parts(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=p\r\n\r\n");
	for (int i = 0; i < 2000; i++)
		buf_printf(&b, "--p\r\n\r\npart %d\r\n", i);
	buf_append_str(&b, "--p--\r\n");
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	assert_true(r->flags & MIME_RESULT_TRUNCATED);
	assert_int_equal(r->n_parts, 1000);
	assert_true(mime_check_sexp(r->bodystructure, r->bodystructure_len));
	/* the root and 999 parts; the rest of the message is the root's
	 * (after part 999, as an epilogue would be) */
	uint32_t path[1] = {999};
	struct mime_part_loc loc;
	assert_int_equal(mime_parts_find(r->parts, r->parts_len, path, 1, &loc), 1);
	assert_int_equal(loc.body_len, 8);
	assert_memory_equal(b.data + loc.body_off, "part 998", 8);
	assert_int_equal(mime_parts_find(r->parts, r->parts_len, path, 0, &loc), 1);
	assert_int_equal(loc.text_off + loc.text_len, b.len);
	path[0] = 1000;
	assert_int_equal(mime_parts_find(r->parts, r->parts_len, path, 1, &loc), 0);
	mime_result_free(&r);
	buf_deinit(&b);
}

static void test_limit_header(void **state)
{
	(void)state;
	/* a 300 KiB header: cut at its last whole line within 256 KiB, the
	 * rest is the text/plain body */
	buf b;
	buf_init(&b);
	buf_append_str(&b, "Content-Type: multipart/mixed; boundary=h\r\nSubject: big\r\n");
	for (int i = 0; i < 1500; i++)
		buf_printf(&b, "X-Filler-%04d: %0185d\r\n", i, i);
	buf_append_str(&b, "\r\n--h\r\n\r\nx\r\n--h--\r\n");
	struct mime_result *r;
	mime_analyze(b.data, b.len, NULL, &r);
	assert_true(r->flags & MIME_RESULT_TRUNCATED);
	assert_true(strncmp(r->body, "(\"TEXT\" \"PLAIN\"", 15) == 0);
	assert_true(strstr(r->envelope, "\"big\"") != NULL);
	uint32_t path[1] = {1};
	struct mime_part_loc loc;
	assert_int_equal(mime_parts_find(r->parts, r->parts_len, path, 1, &loc), 1);
	assert_true(loc.mime_len <= 256 * 1024 && loc.mime_len > 256 * 1024 - 300);
	assert_int_equal(loc.body_off, loc.mime_len);
	assert_int_equal(loc.body_off + loc.body_len, b.len);
	assert_int_equal(b.data[loc.body_off], 'X');
	check_chunkings((const char *)b.data, b.len, NULL);
	mime_result_free(&r);

	/* too many fields */
	struct mime_limits lim = mime_limits_default();
	lim.max_header_fields = 10;
	mime_analyze(b.data, b.len, &lim, &r);
	assert_true(r->flags & MIME_RESULT_TRUNCATED);
	assert_int_equal(mime_parts_find(r->parts, r->parts_len, path, 1, &loc), 1);
	assert_true(strncmp((const char *)b.data + loc.body_off, "X-Filler-0008:", 14) == 0);
	mime_result_free(&r);
	buf_deinit(&b);
}

static void test_limit_values(void **state)
{
	(void)state;
	struct mime_limits lim = mime_limits_default();
	lim.max_params = 2;
	lim.max_value_bytes = 8;
	lim.max_addresses = 2;
	lim.max_boundary_len = 5;
	struct msg m;
	m.data = crlf("Subject: 0123456789abc\nTo: a@b, c@d, e@f\n"
		      "Content-Type: text/plain; a=1; b=2; c=3; d=4\n\nx",
		      &m.len);
	mime_analyze(m.data, m.len, &lim, &m.r);
	assert_string_equal(m.r->envelope, "(NIL \"01234567\" NIL NIL NIL ((NIL NIL \"a\" \"b\")"
					   "(NIL NIL \"c\" \"d\")) NIL NIL NIL NIL)");
	assert_string_equal(m.r->body, "(\"TEXT\" \"PLAIN\" (\"A\" \"1\" \"B\" \"2\" \"CHARSET\" "
				       "\"us-ascii\") NIL NIL \"7BIT\" 1 0)");
	assert_true(m.r->flags & MIME_RESULT_TRUNCATED);
	msg_free(&m);
	/* a boundary over the limit: opaque text */
	m.data = crlf("Content-Type: multipart/mixed; boundary=toolong\n\n--toolong\n\nx\n", &m.len);
	mime_analyze(m.data, m.len, &lim, &m.r);
	assert_string_equal(m.r->body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
				       "\"7BIT\" 16 3)");
	assert_true(m.r->flags & MIME_RESULT_TRUNCATED);
	msg_free(&m);
}

/* ---- the part table ---- */

static void test_parts_corrupt(void **state)
{
	(void)state;
	struct msg m = parse(rfc3501_sections);
	const uint8_t *t = m.r->parts;
	size_t n = m.r->parts_len;
	struct mime_part_loc loc;
	struct mime_part_loc *locs;
	uint64_t size;
	uint32_t path[2] = {4, 2};
	assert_int_equal(mime_parts_decode(t, n, &locs, &size), 13);
	assert_int_equal(size, m.len);
	assert_int_equal(locs[0].depth, 0);
	free(locs);
	/* every truncation is refused (find may succeed early: the entries
	 * before the cut are sound) */
	for (size_t cut = 0; cut < n; cut++)
		assert_int_equal(mime_parts_decode(t, cut, &locs, NULL), -1);
	assert_int_equal(mime_parts_find(t, 10, path, 2, &loc), -1);
	assert_int_equal(mime_parts_find(NULL, 0, path, 2, &loc), -1);
	uint8_t *bad = xmalloc(n + 1);
	/* bad magic, version */
	memcpy(bad, t, n);
	bad[0] = 'X';
	assert_int_equal(mime_parts_find(bad, n, path, 2, &loc), -1);
	memcpy(bad, t, n);
	bad[2] = 2;
	assert_int_equal(mime_parts_decode(bad, n, &locs, NULL), -1);
	/* trailing bytes */
	memcpy(bad, t, n);
	bad[n] = 0;
	assert_int_equal(mime_parts_decode(bad, n + 1, &locs, NULL), -1);
	/* a message size smaller than the regions */
	memcpy(bad, t, n);
	bad[3] = 1;
	assert_int_equal(mime_parts_decode(bad, n, &locs, NULL), -1);
	/* a huge count */
	static const uint8_t huge[] = {'M', 'P', 1, 10, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0};
	assert_int_equal(mime_parts_decode(huge, sizeof huge, &locs, NULL), -1);
	/* any single byte changed: refused or still in range */
	for (size_t i = 0; i < n; i++) {
		for (int v = 0; v < 256; v += 17) {
			memcpy(bad, t, n);
			bad[i] = (uint8_t)v;
			int c = mime_parts_decode(bad, n, &locs, &size);
			for (int k = 0; k < c; k++) {
				assert_true(locs[k].body_off + locs[k].body_len <= size);
				assert_true(locs[k].depth <= MIME_PATH_MAX);
			}
			free(locs);
		}
	}
	free(bad);
	msg_free(&m);
}

/* ---- decoding ---- */

static char *decode(enum mime_encoding enc, const char *in)
{
	buf b;
	buf_init(&b);
	assert_int_equal(mime_decode_transfer(enc, in, strlen(in), &b), 0);
	buf_append(&b, "", 0);
	if (b.data == NULL)
		return xstrdup("");
	return (char *)buf_steal(&b, NULL);
}

#define ASSERT_DECODE(enc, in, out)                                                            \
	do {                                                                                   \
		char *d_ = decode(enc, in);                                                    \
		assert_string_equal(d_, out);                                                  \
		free(d_);                                                                      \
	} while (0)

static void test_decode_base64(void **state)
{
	(void)state;
	ASSERT_DECODE(MIME_ENC_BASE64, "aGVsbG8gd29ybGQ=", "hello world");
	ASSERT_DECODE(MIME_ENC_BASE64, "aGVs\r\nbG8g\r\nd29y\r\nbGQ=\r\n", "hello world");
	ASSERT_DECODE(MIME_ENC_BASE64, "aGV*sb!G8\tgd2 9ybGQ", "hello world"); /* garbage skipped */
	ASSERT_DECODE(MIME_ENC_BASE64, "aGVsbG8=IGlnbm9yZWQ=", "hello"); /* stops at '=' */
	ASSERT_DECODE(MIME_ENC_BASE64, "YQ", "a");                      /* no padding */
	ASSERT_DECODE(MIME_ENC_BASE64, "Y", "");                        /* a lone sextet */
	ASSERT_DECODE(MIME_ENC_BASE64, "", "");
	ASSERT_DECODE(MIME_ENC_BASE64, "+/+/", "\xfb\xff\xbf");
	ASSERT_DECODE(MIME_ENC_7BIT, "as =3D is", "as =3D is");
	ASSERT_DECODE(MIME_ENC_BINARY, "x\r\ny", "x\r\ny");
	buf b;
	buf_init(&b);
	assert_int_equal(mime_decode_transfer(MIME_ENC_UNKNOWN, "abc", 3, &b), -1);
	assert_int_equal(b.len, 0);
	buf_deinit(&b);
}

static void test_decode_qp(void **state)
{
	(void)state;
	ASSERT_DECODE(MIME_ENC_QP, "caf=C3=A9", "caf\xc3\xa9");
	ASSERT_DECODE(MIME_ENC_QP, "caf=c3=a9", "caf\xc3\xa9"); /* lower-case hex */
	ASSERT_DECODE(MIME_ENC_QP, "soft=\r\nbreak", "softbreak");
	ASSERT_DECODE(MIME_ENC_QP, "soft=\nbreak", "softbreak");
	ASSERT_DECODE(MIME_ENC_QP, "soft= \t\r\nbreak", "softbreak");
	ASSERT_DECODE(MIME_ENC_QP, "end=", "end");
	ASSERT_DECODE(MIME_ENC_QP, "trailing   \r\nspace\t\r\n", "trailing\r\nspace\r\n");
	ASSERT_DECODE(MIME_ENC_QP, "keep  inner space", "keep  inner space");
	ASSERT_DECODE(MIME_ENC_QP, "bad =ZZ and =4", "bad =ZZ and =4");
	ASSERT_DECODE(MIME_ENC_QP, "a_b", "a_b"); /* '_' is only a space in RFC 2047 */
	ASSERT_DECODE(MIME_ENC_QP, "=3D=3d", "==");
}

static char *hdecode(const char *in)
{
	buf b;
	buf_init(&b);
	mime_header_decode(in, strlen(in), &b);
	return (char *)buf_steal(&b, NULL);
}

#define ASSERT_HDECODE(in, out)                                                                \
	do {                                                                                   \
		char *d_ = hdecode(in);                                                        \
		assert_string_equal(d_, out);                                                  \
		free(d_);                                                                      \
	} while (0)

static void test_decode_rfc2047(void **state)
{
	(void)state;
	ASSERT_HDECODE("=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard");
	ASSERT_HDECODE("=?utf-8?B?w6l0w6k=?=", "\xc3\xa9t\xc3\xa9");
	ASSERT_HDECODE("=?windows-1252?Q?=80_5?=", "\xe2\x82\xac 5");
	/* RFC 2047 section 8's examples */
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?=)", "(a)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?= b)", "(a b)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", "(ab)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=)", "(ab)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=)", "(ab)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a_b?=)", "(a b)");
	ASSERT_HDECODE("(=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=)", "(a b)");
	/* a UTF-8 character split between two words */
	ASSERT_HDECODE("=?utf-8?Q?caf=C3?= =?utf-8?Q?=A9?=", "caf\xc3\xa9");
	/* RFC 2231 language in the charset */
	ASSERT_HDECODE("=?US-ASCII*EN?Q?Keith_Moore?=", "Keith Moore");
	/* an unknown charset still gives its (sanitised) text */
	ASSERT_HDECODE("=?x-unknown?q?abc?= d", "abc d");
	/* malformed words stay as they are */
	ASSERT_HDECODE("=?utf-8?X?abc?=", "=?utf-8?X?abc?=");
	ASSERT_HDECODE("=?utf-8?Q?a b?=", "=?utf-8?Q?a b?=");
	ASSERT_HDECODE("a = b", "a = b");
	/* raw 8-bit: UTF-8 kept, invalid bytes replaced */
	ASSERT_HDECODE("Gr\xc3\xbc\xc3\x9f" "e \xe9t\xe9", "Gr\xc3\xbc\xc3\x9f" "e \xef\xbf\xbdt\xef\xbf\xbd");
	/* invalid bytes inside a UTF-8 word */
	ASSERT_HDECODE("=?utf-8?q?a=FFb?=", "a\xef\xbf\xbd" "b");
	/* folding */
	ASSERT_HDECODE("a\r\n b", "a b");
	ASSERT_HDECODE("", "");
}

static void test_charset(void **state)
{
	(void)state;
	buf b;
	buf_init(&b);
	assert_int_equal(mime_charset_to_utf8("iso-8859-1", "\xe9t\xe9", 3, &b), 0);
	assert_string_equal((char *)b.data, "\xc3\xa9t\xc3\xa9");
	buf_reset(&b);
	assert_int_equal(mime_charset_to_utf8("WINDOWS-1252", "\x80\x81", 2, &b), 0);
	assert_string_equal((char *)b.data, "\xe2\x82\xac\xef\xbf\xbd"); /* 0x81 is undefined */
	buf_reset(&b);
	assert_int_equal(mime_charset_to_utf8("UTF-8", "ok\xff", 3, &b), 0);
	assert_string_equal((char *)b.data, "ok\xef\xbf\xbd");
	buf_reset(&b);
	assert_int_equal(mime_charset_to_utf8("no-such-charset", "x\xff", 2, &b), -1);
	assert_string_equal((char *)b.data, "x\xef\xbf\xbd");
	buf_reset(&b);
	assert_int_equal(mime_charset_to_utf8("../../etc/passwd", "x", 1, &b), -1);
	buf_reset(&b);
	/* a multi-byte charset cut in the middle of a character */
	assert_int_equal(mime_charset_to_utf8("utf-16le", "a\0b", 3, &b), 0);
	assert_string_equal((char *)b.data, "a\xef\xbf\xbd");
	buf_reset(&b);
	assert_int_equal(mime_charset_to_utf8("iso-2022-jp", "\x1b$B$\"\x1b(B", 8, &b), 0);
	assert_string_equal((char *)b.data, "\xe3\x81\x82");
	buf_deinit(&b);
}

/* ---- headers for FETCH and SEARCH ---- */

struct fields_seen {
	buf names;
};

static int field_cb(const char *name, size_t name_len, const char *value, size_t value_len,
		    void *arg)
{
	struct fields_seen *s = arg;
	buf_append(&s->names, name, name_len);
	buf_append(&s->names, "=[", 2);
	buf_append(&s->names, value, value_len);
	buf_append(&s->names, "] ", 2);
	return name_len == 4 && strncmp(name, "Stop", 4) == 0 ? 42 : 0;
}

static void test_header_foreach(void **state)
{
	(void)state;
	const char h[] = "Subject: a\r\n b\r\nno colon line\r\nTo :x@y\r\nEmpty:\r\n\r\nBody: no\r\n";
	struct fields_seen s;
	buf_init(&s.names);
	assert_int_equal(mime_header_foreach(h, sizeof h - 1, field_cb, &s), 0);
	buf_append(&s.names, "", 0);
	assert_string_equal((char *)s.names.data, "Subject=[a\r\n b] To=[x@y] Empty=[] ");
	buf_reset(&s.names);
	const char h2[] = "A: 1\r\nStop: 2\r\nB: 3\r\n";
	assert_int_equal(mime_header_foreach(h2, sizeof h2 - 1, field_cb, &s), 42);
	assert_string_equal((char *)s.names.data, "A=[1] Stop=[2] ");
	buf_deinit(&s.names);
}

static void test_header_filter(void **state)
{
	(void)state;
	const char h[] = "From: a@b\r\nSubject: long\r\n\tsubject\r\nTO: c@d\r\n"
			 "X-Other: 1\r\nsubject: again\r\n\r\n";
	const char *names[] = {"Subject", "to"};
	buf out;
	buf_init(&out);
	mime_header_filter(h, sizeof h - 1, names, 2, 0, &out);
	assert_string_equal((char *)out.data,
			    "Subject: long\r\n\tsubject\r\nTO: c@d\r\nsubject: again\r\n\r\n");
	buf_reset(&out);
	mime_header_filter(h, sizeof h - 1, names, 2, 1, &out);
	assert_string_equal((char *)out.data, "From: a@b\r\nX-Other: 1\r\n\r\n");
	buf_reset(&out);
	const char *none[] = {"Nothing"};
	mime_header_filter(h, sizeof h - 1, none, 1, 0, &out);
	assert_string_equal((char *)out.data, "\r\n");
	buf_reset(&out);
	/* a header whose last line has no line break */
	mime_header_filter("A: 1\r\nB: 2", 10, names, 0, 1, &out);
	assert_string_equal((char *)out.data, "A: 1\r\nB: 2\r\n\r\n");
	buf_deinit(&out);
}

struct texts {
	buf all;
	int calls, stop_at;
};

static int text_cb(const char *utf8, size_t len, void *arg)
{
	struct texts *t = arg;
	buf_append(&t->all, utf8, len);
	buf_append(&t->all, "|", 1);
	return ++t->calls == t->stop_at ? 7 : 0;
}

static void test_text_foreach(void **state)
{
	(void)state;
	struct msg m = parse(
		"Subject: x\nContent-Type: multipart/mixed; boundary=T\n\n--T\n"
		"Content-Type: text/plain; charset=iso-8859-1\n"
		"Content-Transfer-Encoding: quoted-printable\n\nR=E9union soft=\n break\n--T\n"
		"Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
		"PGI+w6l0w6k8L2I+\n--T\nContent-Type: application/octet-stream\n"
		"Content-Transfer-Encoding: base64\n\nAAAA\n--T\nContent-Type: text/plain\n"
		"Content-Transfer-Encoding: x-uuencode\n\nbegin\n--T\nContent-Type: message/rfc822\n\n"
		"Subject: inner\nContent-Type: text/plain; charset=windows-1252\n\n\x80 inner\n--T--\n");
	struct texts t;
	buf_init(&t.all);
	t.calls = 0;
	t.stop_at = 0;
	assert_int_equal(mime_text_foreach(m.data, m.len, m.r->parts, m.r->parts_len, text_cb, &t),
			 0);
	buf_append(&t.all, "", 0);
	assert_string_equal((char *)t.all.data,
			    "R\xc3\xa9union soft break|<b>\xc3\xa9t\xc3\xa9</b>|\xe2\x82\xac inner|");
	buf_reset(&t.all);
	t.calls = 0;
	t.stop_at = 2;
	assert_int_equal(mime_text_foreach(m.data, m.len, m.r->parts, m.r->parts_len, text_cb, &t),
			 7);
	assert_int_equal(t.calls, 2);
	/* a table for another message */
	assert_int_equal(
		mime_text_foreach(m.data, m.len - 1, m.r->parts, m.r->parts_len, text_cb, &t), -1);
	assert_int_equal(mime_text_foreach(m.data, m.len, m.r->parts, 3, text_cb, &t), -1);
	buf_deinit(&t.all);
	msg_free(&m);
}

static void test_flags_and_empty(void **state)
{
	(void)state;
	struct mime_result *r;
	mime_analyze("", 0, NULL, &r);
	assert_string_equal(r->envelope, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
	assert_string_equal(r->body, "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"us-ascii\") NIL NIL "
				     "\"7BIT\" 0 0)");
	assert_int_equal(r->flags, 0);
	mime_result_free(&r);
	assert_null(r);
	mime_result_free(NULL);
	mime_parser_destroy(NULL);
	/* missing final boundary: BROKEN, the last part runs to the end */
	struct msg m = parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\nlast\n");
	assert_int_equal(m.r->flags, MIME_RESULT_BROKEN);
	assert_section(&m, "1", "last\n");
	msg_free(&m);
	m = parse("Subject: caf\xc3\xa9\n\nx");
	assert_int_equal(m.r->flags, MIME_RESULT_8BIT_HEADER);
	msg_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc3501_envelope_and_body),
		cmocka_unit_test(test_rfc3501_body_multipart),
		cmocka_unit_test(test_rfc3501_sections),
		cmocka_unit_test(test_sections_single),
		cmocka_unit_test(test_dovecot_shapes),
		cmocka_unit_test(test_dovecot_sections),
		cmocka_unit_test(test_content_defaults),
		cmocka_unit_test(test_rfc2231),
		cmocka_unit_test(test_envelope_addresses),
		cmocka_unit_test(test_chunking),
		cmocka_unit_test(test_limit_depth),
		cmocka_unit_test(test_limit_parts),
		cmocka_unit_test(test_limit_header),
		cmocka_unit_test(test_limit_values),
		cmocka_unit_test(test_parts_corrupt),
		cmocka_unit_test(test_decode_base64),
		cmocka_unit_test(test_decode_qp),
		cmocka_unit_test(test_decode_rfc2047),
		cmocka_unit_test(test_charset),
		cmocka_unit_test(test_header_foreach),
		cmocka_unit_test(test_header_filter),
		cmocka_unit_test(test_text_foreach),
		cmocka_unit_test(test_flags_and_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
