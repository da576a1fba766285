/* test-auth-results.c: lib/dmarc/auth-results.h: composing (exact output,
 * quoting of hostile values, folding), reading authserv-ids, the
 * scanner fed whole and one byte at a time, stripping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth-results.h"
#include "mail-error.h"
#include "xalloc.h"

#define OUR_ID "mx.example.net"

static char *compose_ok(const char *id, const struct authres_method *m, size_t n)
{
	char *field;
	size_t len;
	const char *error = NULL;
	int err = authres_compose(id, m, n, &field, &len, &error);
	if (err != MAIL_OK)
		fail_msg("compose: %d %s", err, error);
	assert_int_equal(strlen(field), len);
	return field;
}

/* Every line ends in CRLF, no bare CR or LF, no line over 998 bytes,
 * continuation lines start with a TAB. */
static void check_lines(const char *field)
{
	size_t line = 0;
	for (const char *p = field; *p != '\0'; p++) {
		if (*p == '\r') {
			assert_int_equal(p[1], '\n');
			assert_true(line <= 998);
			line = 0;
			p++;
			if (p[1] != '\0')
				assert_int_equal(p[1], '\t');
			continue;
		}
		assert_int_not_equal(*p, '\n');
		line++;
	}
	assert_int_equal(line, 0); /* ends with CRLF */
}

static void test_compose(void **state)
{
	(void)state;
	struct authres_method m[3] = {
		{ .method = "spf", .result = "pass",
		  .props = { { "smtp", "mailfrom", "alice@example.org" } }, .n_props = 1 },
		{ .method = "dkim", .result = "pass",
		  .props = { { "header", "d", "example.org" },
			     { "header", "s", "s1" },
			     { "header", "a", "rsa-sha256" },
			     { "header", "b", "AbC/dEf+" } },
		  .n_props = 4 },
		{ .method = "dmarc", .result = "pass", .comment = "p=reject dis=none",
		  .props = { { "header", "from", "example.org" } }, .n_props = 1 },
	};
	char *f = compose_ok(OUR_ID, m, 3);
	assert_string_equal(f, "Authentication-Results: mx.example.net;\r\n"
			       "\tspf=pass smtp.mailfrom=alice@example.org;\r\n"
			       "\tdkim=pass header.d=example.org header.s=s1"
			       " header.a=rsa-sha256\r\n"
			       "\theader.b=\"AbC/dEf+\";\r\n"
			       "\tdmarc=pass (p=reject dis=none) header.from=example.org\r\n");
	check_lines(f);
	free(f);

	f = compose_ok(OUR_ID, NULL, 0);
	assert_string_equal(f, "Authentication-Results: mx.example.net; none\r\n");
	free(f);

	/* a property without a value is left out */
	struct authres_method one = { .method = "dkim", .result = "none",
				      .props = { { "header", "d", NULL }, { "header", "i", "" } },
				      .n_props = 2 };
	f = compose_ok(OUR_ID, &one, 1);
	assert_string_equal(f, "Authentication-Results: mx.example.net;\r\n\tdkim=none\r\n");
	free(f);
}

/* Values from the network cannot break out of the field. */
static void test_compose_hostile(void **state)
{
	(void)state;
	char big[1200];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	/* a UTF-8 "é" (2 bytes) straddling the cut at 256 */
	char utf[300];
	memset(utf, 'x', 255);
	memcpy(utf + 255, "\xc3\xa9zz", 5);
	struct authres_method m = {
		.method = "dkim", .result = "fail",
		.comment = "bad (body) hash\r\nX-Evil: 1",
		.props = { { "header", "d", "evil.example\r\nX-Injected: yes" },
			   { "header", "i", "\"quoted\\\"@example.org" },
			   { "header", "s", "sel ector" },
			   { "header", "b", big },
			   { "header", "a", utf },
			   { "smtp", "mailfrom", "user+tag@sub.example.org" } },
		.n_props = 6,
	};
	char *f = compose_ok(OUR_ID, &m, 1);
	check_lines(f);
	assert_null(strstr(f, "\r\nX-"));
	assert_non_null(strstr(f, "(bad \\(body\\) hash??X-Evil: 1)"));
	assert_non_null(strstr(f, "header.d=\"evil.example??X-Injected: yes\""));
	assert_non_null(strstr(f, "header.i=\"\\\"quoted\\\\\\\"@example.org\""));
	assert_non_null(strstr(f, "header.s=\"sel ector\""));
	assert_non_null(strstr(f, "smtp.mailfrom=user+tag@sub.example.org"));
	/* cut at 256 bytes; the é is not split */
	char want[300];
	snprintf(want, sizeof want, "header.b=%.256s\r\n", big);
	assert_non_null(strstr(f, want));
	snprintf(want, sizeof want, "header.a=%.255s\r\n", utf);
	assert_non_null(strstr(f, want));
	free(f);
}

static void test_compose_params(void **state)
{
	(void)state;
	char *f;
	size_t len;
	const char *error;
	struct authres_method ok = { .method = "spf", .result = "pass" };
	assert_int_equal(authres_compose("", &ok, 1, &f, &len, &error), MAIL_ERR_PARAMS);
	assert_int_equal(authres_compose("mx;evil", &ok, 1, &f, &len, &error), MAIL_ERR_PARAMS);
	assert_int_equal(authres_compose(NULL, &ok, 1, &f, &len, &error), MAIL_ERR_PARAMS);
	struct authres_method bad = { .method = "spf x", .result = "pass" };
	assert_int_equal(authres_compose(OUR_ID, &bad, 1, &f, &len, &error), MAIL_ERR_PARAMS);
	assert_null(f);
	struct authres_method badp = { .method = "spf", .result = "pass",
				       .props = { { "smtp", "mail.from", "x" } }, .n_props = 1 };
	assert_int_equal(authres_compose(OUR_ID, &badp, 1, &f, &len, &error), MAIL_ERR_PARAMS);
	struct authres_method many = { .method = "spf", .result = "pass",
				       .n_props = AUTHRES_PROPS_MAX + 1 };
	assert_int_equal(authres_compose(OUR_ID, &many, 1, &f, &len, &error), MAIL_ERR_PARAMS);
}

static void test_claims(void **state)
{
	(void)state;
	static const struct {
		const char *value;
		int ours;
	} cases[] = {
		{ " mx.example.net; spf=pass smtp.mailfrom=a@b.example", 1 },
		{ " MX.Example.NET.; none", 1 },
		{ " mx.example.net 1; dkim=pass", 1 },
		{ " mx.example.net", 1 },
		{ " (a comment) mx.example.net; none", 1 },
		{ " (nested (comment) \\) ) \"mx.example.net\"; none", 1 },
		{ "\r\n\t(folded)\r\n mx.example.net;\r\n\tspf=fail", 1 },
		{ " \"mx.exa\\mple.net\"; none", 1 },
		{ " mx.example.net.evil; none", 0 },
		{ " evil.mx.example.net; none", 0 },
		{ " other.example; spf=pass", 0 },
		{ " \"other.example\"; none", 0 },
		{ " mx.example.ne; none", 0 },
		/* cannot be read: drop */
		{ "; spf=pass", 1 },
		{ "", 1 },
		{ " (unterminated mx.example.net; none", 1 },
		{ " \"mx.example.net; none", 1 },
		{ " \"\"; none", 1 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int got = authres_value_claims(cases[i].value, strlen(cases[i].value), OUR_ID,
					       AUTHRES_ID_SCAN_DEFAULT);
		if (got != cases[i].ours)
			fail_msg("case %zu (%s): got %d", i, cases[i].value, got);
	}
	/* the id past the scan limit: cannot be read, so ours */
	char v[2048];
	snprintf(v, sizeof v, " (%0*d) other.example; none", 1500, 0);
	assert_int_equal(authres_value_claims(v, strlen(v), OUR_ID, 1024), 1);
	assert_int_equal(authres_value_claims(v, strlen(v), OUR_ID, 4096), 0);
	/* a token cut at the limit that is already longer than ours: not ours */
	snprintf(v, sizeof v, " %0*d", 100, 0);
	assert_int_equal(authres_value_claims(v, strlen(v), OUR_ID, 64), 0);
	/* cut inside what could still be ours */
	assert_int_equal(authres_value_claims(" mx.example.net; none", 21, OUR_ID, 11), 1);
}

/* ---- the scanner --------------------------------------------------------------- */

static const char header[] =
	"Received: from a by b; Tue, 2 Dec 2025 10:00:00 +0000\r\n"
	"Authentication-Results: mx.example.net; spf=pass\r\n"             /* 1 ours */
	"Authentication-Results: other.example;\r\n\tdkim=pass\r\n"        /* 2 not */
	"ARC-Authentication-Results: i=1; mx.example.net; none\r\n"        /* 3 not AR */
	"authentication-results : (c)\r\n MX.EXAMPLE.NET; dkim=fail\r\n"  /* 4 ours */
	"X-Authentication-Results: mx.example.net; none\r\n"               /* 5 not AR */
	"Authentication-Results:mx.example.net;none\n"                     /* 6 ours, LF */
	"Subject: Authentication-Results: mx.example.net\r\n"              /* 7 not */
	"Authentication-Results-X: mx.example.net\r\n"                     /* 8 not AR */
	"Authentication-Results: mx.example.net\r\n"                       /* 9 ours, last */
	"\r\n"
	"Authentication-Results: mx.example.net; in the body\r\n";

struct seen {
	struct authres_field f[32];
	size_t n;
};

/* Scan text feeding step bytes at a time (0: all at once). */
static void scan(const char *text, size_t len, size_t step, struct seen *s, int finish)
{
	authres_scanner *sc;
	const char *error;
	assert_int_equal(authres_scanner_create(OUR_ID, NULL, &sc, &error), MAIL_OK);
	s->n = 0;
	size_t pos = 0;
	while (pos < len) {
		size_t n = step == 0 || len - pos < step ? len - pos : step;
		size_t off = 0;
		while (off < n) {
			size_t used;
			struct authres_field f;
			int r = authres_scanner_feed(sc, text + pos + off, n - off, &used, &f,
						     &error);
			assert_true(r >= 0);
			off += used;
			if (r == 1) {
				assert_true(s->n < 32);
				s->f[s->n++] = f;
			} else {
				assert_int_equal(off, n);
			}
		}
		pos += n;
	}
	struct authres_field f;
	if (finish && authres_scanner_finish(sc, &f) == 1)
		s->f[s->n++] = f;
	authres_scanner_destroy(&sc);
	assert_null(sc);
}

static void test_scanner(void **state)
{
	(void)state;
	size_t len = strlen(header);
	struct seen whole, bytes, sevens;
	scan(header, len, 0, &whole, 1);
	scan(header, len, 1, &bytes, 1);
	scan(header, len, 7, &sevens, 1);
	assert_int_equal(whole.n, 10);
	assert_int_equal(bytes.n, 10);
	assert_memory_equal(whole.f, bytes.f, sizeof whole.f[0] * whole.n);
	assert_memory_equal(whole.f, sevens.f, sizeof whole.f[0] * whole.n);
	static const int is_ar[] = { 0, 1, 1, 0, 1, 0, 1, 0, 0, 1 };
	static const int ours[] = { 0, 1, 0, 0, 1, 0, 1, 0, 0, 1 };
	uint64_t off = 0;
	for (size_t i = 0; i < whole.n; i++) {
		assert_int_equal(whole.f[i].is_authres, is_ar[i]);
		assert_int_equal(whole.f[i].ours, ours[i]);
		/* the fields tile the header */
		assert_int_equal(whole.f[i].offset, off);
		off += whole.f[i].length;
		assert_int_equal(header[off - 1], '\n');
	}
	assert_memory_equal(header + off, "\r\n", 2);

	/* the header ends: the rest is not read */
	authres_scanner *sc;
	const char *error;
	assert_int_equal(authres_scanner_create(OUR_ID, NULL, &sc, &error), MAIL_OK);
	size_t pos = 0, used;
	struct authres_field f;
	while (authres_scanner_feed(sc, header + pos, len - pos, &used, &f, &error) == 1)
		pos += used;
	pos += used;
	assert_int_equal(pos, len);
	assert_true(authres_scanner_header_done(sc));
	assert_int_equal(authres_scanner_finish(sc, &f), 0);
	assert_int_equal(authres_scanner_feed(sc, "x", 1, &used, &f, &error), -1);
	authres_scanner_destroy(&sc);
}

/* A header without a body, a header cut short, stray CRs, a header that
 * starts folded, bare-LF empty line. */
static void test_scanner_edges(void **state)
{
	(void)state;
	struct seen a, b;
	const char *t1 = "Authentication-Results: mx.example.net; none\r\nSubject: x";
	scan(t1, strlen(t1), 0, &a, 1);
	scan(t1, strlen(t1), 1, &b, 1);
	assert_int_equal(a.n, 2);
	assert_memory_equal(a.f, b.f, sizeof a.f[0] * 2);
	assert_true(a.f[0].ours);
	assert_int_equal(a.f[1].offset + a.f[1].length, strlen(t1));

	const char *t2 = " folded first\r\n\rAuthentication-Results: mx.example.net\r\n\r\n";
	scan(t2, strlen(t2), 0, &a, 1);
	scan(t2, strlen(t2), 1, &b, 1);
	assert_int_equal(a.n, 2);
	assert_memory_equal(a.f, b.f, sizeof a.f[0] * 2);
	assert_false(a.f[0].is_authres);
	assert_false(a.f[1].is_authres); /* "\rAuthentication-Results" is another name */
	assert_int_equal(a.f[1].offset, 15);

	const char *t3 = "Authentication-Results: mx.example.net\n\nbody\n";
	scan(t3, strlen(t3), 0, &a, 1);
	assert_int_equal(a.n, 1);
	assert_true(a.f[0].ours);
	assert_int_equal(a.f[0].length, 39);

	const char *t4 = "no colon here\r\nAuthentication-Results: mx.example.net\r";
	scan(t4, strlen(t4), 0, &a, 1);
	assert_int_equal(a.n, 2);
	assert_true(a.f[1].ours);
	assert_int_equal(a.f[1].offset + a.f[1].length, strlen(t4));
}

static void test_scanner_limits(void **state)
{
	(void)state;
	authres_scanner *sc;
	const char *error;
	struct authres_limits lim = { .max_id_scan = 10, .max_header_bytes = 4096 };
	assert_int_equal(authres_scanner_create(OUR_ID, &lim, &sc, &error), MAIL_ERR_PARAMS);
	lim.max_id_scan = AUTHRES_ID_SCAN_MIN;
	assert_int_equal(authres_scanner_create("", &lim, &sc, &error), MAIL_ERR_PARAMS);
	assert_int_equal(authres_scanner_create(OUR_ID, &lim, &sc, &error), MAIL_OK);

	/* a comment longer than max_id_scan hides the id: dropped */
	char field[512];
	snprintf(field, sizeof field, "Authentication-Results: (%0*d) other.example; none\r\n",
		 100, 0);
	size_t used;
	struct authres_field f;
	assert_int_equal(authres_scanner_feed(sc, field, strlen(field), &used, &f, &error), 0);
	assert_int_equal(authres_scanner_finish(sc, &f), 1);
	assert_true(f.is_authres);
	assert_true(f.ours);
	authres_scanner_destroy(&sc);

	/* more header than max_header_bytes */
	assert_int_equal(authres_scanner_create(OUR_ID, &lim, &sc, &error), MAIL_OK);
	char line[100];
	snprintf(line, sizeof line, "X-Filler: %0*d\r\n", 80, 0);
	int r = 0;
	for (int i = 0; i < 100 && r >= 0; i++) {
		size_t pos = 0;
		while (pos < strlen(line) && r >= 0) {
			r = authres_scanner_feed(sc, line + pos, strlen(line) - pos, &used, &f,
						 &error);
			pos += used;
		}
	}
	assert_int_equal(r, -1);
	assert_int_equal(authres_scanner_feed(sc, "x", 1, &used, &f, &error), -1);
	authres_scanner_destroy(&sc);
}

static void test_strip(void **state)
{
	(void)state;
	size_t len = strlen(header);
	uint8_t *m = xmalloc(len);
	memcpy(m, header, len);
	size_t removed;
	const char *error;
	assert_int_equal(authres_strip_ours(m, &len, OUR_ID, NULL, &removed, &error), MAIL_OK);
	assert_int_equal(removed, 4);
	const char *want =
		"Received: from a by b; Tue, 2 Dec 2025 10:00:00 +0000\r\n"
		"Authentication-Results: other.example;\r\n\tdkim=pass\r\n"
		"ARC-Authentication-Results: i=1; mx.example.net; none\r\n"
		"X-Authentication-Results: mx.example.net; none\r\n"
		"Subject: Authentication-Results: mx.example.net\r\n"
		"Authentication-Results-X: mx.example.net\r\n"
		"\r\n"
		"Authentication-Results: mx.example.net; in the body\r\n";
	assert_int_equal(len, strlen(want));
	assert_memory_equal(m, want, len);
	/* again: nothing left to remove */
	assert_int_equal(authres_strip_ours(m, &len, OUR_ID, NULL, &removed, &error), MAIL_OK);
	assert_int_equal(removed, 0);
	assert_int_equal(len, strlen(want));
	free(m);

	/* everything is ours; no body */
	const char *only = "Authentication-Results: mx.example.net; none\r\n"
			   "Authentication-Results: mx.example.net; none";
	len = strlen(only);
	m = xmalloc(len);
	memcpy(m, only, len);
	assert_int_equal(authres_strip_ours(m, &len, OUR_ID, NULL, &removed, &error), MAIL_OK);
	assert_int_equal(removed, 2);
	assert_int_equal(len, 0);
	free(m);
}

/* What we write is found again as ours, and another id's is not. */
static void test_roundtrip(void **state)
{
	(void)state;
	struct authres_method m = { .method = "dkim", .result = "pass",
				    .props = { { "header", "d", "example.org" } }, .n_props = 1 };
	char *f = compose_ok(OUR_ID, &m, 1);
	const char *colon = strchr(f, ':');
	assert_int_equal(authres_value_claims(colon + 1, strlen(colon + 1), OUR_ID, 1024), 1);
	assert_int_equal(authres_value_claims(colon + 1, strlen(colon + 1), "other.example", 1024),
			 0);
	size_t len = strlen(f);
	size_t removed;
	const char *error;
	assert_int_equal(authres_strip_ours((uint8_t *)f, &len, OUR_ID, NULL, &removed, &error),
			 MAIL_OK);
	assert_int_equal(removed, 1);
	assert_int_equal(len, 0);
	free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compose),
		cmocka_unit_test(test_compose_hostile),
		cmocka_unit_test(test_compose_params),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_scanner),
		cmocka_unit_test(test_scanner_edges),
		cmocka_unit_test(test_scanner_limits),
		cmocka_unit_test(test_strip),
		cmocka_unit_test(test_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
