/* test-dkim.c: lib/dkim. Every signature is checked by an independent
 * verifier (dkimpy, test-dkim-verify.h) and by libopendkim's verifier;
 * the public keys reach both through their key-lookup hooks, not DNS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dkim.h>
#include <openssl/evp.h>

#include "buf.h"
#include "dkim-keys.h"
#include "dkim-sign.h"
#include "etcd-fixture.h"
#include "mail-error.h"
#include "test-dkim-verify.h"
#include "xalloc.h"

#define T_DOMAIN "example.test"
#define T_TIME 1764700000u

typedef struct fixture {
	char *tmp;
	struct dkim_key rsa, ed;
	char *rsa_txt, *ed_txt; /* "v=DKIM1; k=...; p=..." */
	dkim_signer *signer;     /* defaults, fixed time */
} fixture;

static void make_key(struct dkim_key *k, enum dkim_alg alg, const char *selector, char **txt_r)
{
	char *pub;
	const char *error;
	memset(k, 0, sizeof *k);
	assert_int_equal(dkim_key_generate(alg, DKIM_RSA_BITS_DEFAULT, &k->pem, &k->pem_len,
					   &pub, &error),
			 MAIL_OK);
	snprintf(k->domain, sizeof k->domain, "%s", T_DOMAIN);
	snprintf(k->selector, sizeof k->selector, "%s", selector);
	k->alg = alg;
	*txt_r = dkim_txt_value(alg, pub);
	free(pub);
}

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	f->tmp = mailtest_tmpdir("dkim-test");
	make_key(&f->rsa, DKIM_ALG_RSA_SHA256, "rsa1", &f->rsa_txt);
	make_key(&f->ed, DKIM_ALG_ED25519_SHA256, "ed1", &f->ed_txt);
	struct dkim_sign_settings set = dkim_sign_settings_default();
	set.fixed_time = T_TIME;
	const char *error;
	if (dkim_signer_create(&set, &f->signer, &error) != MAIL_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	dkim_signer_destroy(&f->signer);
	dkim_key_clear(&f->rsa);
	dkim_key_clear(&f->ed);
	free(f->rsa_txt);
	free(f->ed_txt);
	mailtest_rmrf(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

static const char msg_lf[] =
	"Received: from client by mx (relay); Tue, 2 Dec 2025 10:00:00 +0000\n"
	"From: Alice Example <alice@example.test>\n"
	"To: bob@remote.test,\n"
	"  carol@remote.test\n"
	"Subject: Quarterly figures\n"
	"Date: Tue, 2 Dec 2025 10:00:00 +0000\n"
	"Message-ID: <q1@example.test>\n"
	"MIME-Version: 1.0\n"
	"Content-Type: text/plain; charset=utf-8\n"
	"X-Mailer: test\n"
	"List-Unsubscribe: <mailto:leave@example.test>\n"
	"\n"
	"Hello Bob,   \n"
	"\n"
	"the figures are attached.\t\n"
	"\n"
	"\n";

/* text with every bare LF as CRLF (heap) */
static char *to_crlf(const char *text, size_t *len_r)
{
	size_t n = strlen(text);
	char *out = xmalloc(2 * n + 1), *p = out;
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r'))
			*p++ = '\r';
		*p++ = text[i];
	}
	*p = '\0';
	*len_r = (size_t)(p - out);
	return out;
}

/* fields + msg (heap, NUL-terminated) */
static char *prepend(const char *fields, const char *msg, size_t len, size_t *len_r)
{
	size_t fl = strlen(fields);
	char *out = xmalloc(fl + len + 1);
	memcpy(out, fields, fl);
	memcpy(out + fl, msg, len);
	out[fl + len] = '\0';
	*len_r = fl + len;
	return out;
}

static char *sign_ok(fixture *f, const char *msg, size_t len, const struct dkim_key *keys,
		     size_t n)
{
	char *fields;
	size_t flen;
	const char *error = NULL;
	int err = dkim_signer_sign(f->signer, msg, len, keys, n, "T1", &fields, &flen, &error);
	if (err != MAIL_OK)
		fail_msg("sign: %d %s", err, error);
	assert_int_equal(strlen(fields), flen);
	return fields;
}

/* dkimpy on signed[0..len) with both keys published; its exit status */
static int py_verify(fixture *f, const char *signed_msg, size_t len, char *out, size_t size)
{
	const char *names[] = { "rsa1._domainkey." T_DOMAIN, "ed1._domainkey." T_DOMAIN };
	const char *values[] = { f->rsa_txt, f->ed_txt };
	int rc = dkimtest_verify(f->tmp, signed_msg, len, names, values, 2, out, size);
	if (rc < 0 || rc == 2)
		fail_msg("the verifier did not run (rc %d): %s", rc, out);
	return rc;
}

/* ---- libopendkim as a second verifier ----------------------------------- */

static DKIM_CBSTAT lookup_cb(DKIM *d, DKIM_SIGINFO *sig, u_char *buf, size_t len)
{
	fixture *f = dkim_get_user_context(d);
	const char *sel = (const char *)dkim_sig_getselector(sig);
	const char *txt = strcmp(sel, "rsa1") == 0 ? f->rsa_txt
			  : strcmp(sel, "ed1") == 0 ? f->ed_txt : NULL;
	if (txt == NULL || strlen(txt) >= len)
		return DKIM_CBSTAT_NOTFOUND;
	memcpy(buf, txt, strlen(txt) + 1);
	return DKIM_CBSTAT_CONTINUE;
}

/* How many signatures of signed_msg libopendkim finds good (-1: error). */
static int odkim_verify(fixture *f, const char *signed_msg, size_t len, int *n_sigs_r)
{
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	dkim_set_key_lookup(lib, lookup_cb);
	DKIM_STAT st;
	DKIM *d = dkim_verify(lib, (const u_char *)"V1", NULL, &st);
	dkim_set_user_context(d, f);
	st = dkim_chunk(d, (u_char *)signed_msg, len);
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, NULL, 0);
	if (st == DKIM_STAT_OK)
		st = dkim_eom(d, NULL);
	int good = 0;
	DKIM_SIGINFO **sigs = NULL;
	int n = 0;
	if (dkim_getsiglist(d, &sigs, &n) == DKIM_STAT_OK) {
		for (int i = 0; i < n; i++)
			good += DKIM_SIG_CHECK(sigs[i]) ? 1 : 0;
	}
	*n_sigs_r = n;
	dkim_free(d);
	dkim_close(lib);
	return good;
}

/* ---- signing ------------------------------------------------------------- */

static void check_field(const char *fields, const char *alg)
{
	assert_memory_equal(fields, "DKIM-Signature: v=1; ", 21);
	assert_non_null(strstr(fields, alg));
	assert_non_null(strstr(fields, "c=relaxed/relaxed;"));
	assert_non_null(strstr(fields, "d=" T_DOMAIN ";"));
	char t[32];
	snprintf(t, sizeof t, "t=%u;", T_TIME);
	assert_non_null(strstr(fields, t));
	assert_null(strstr(fields, " l="));
	assert_null(strstr(fields, "\tl="));
	assert_null(strstr(fields, "; l="));
	/* every line ends in CRLF, continuations are folded with a TAB */
	for (const char *p = strchr(fields, '\n'); p != NULL; p = strchr(p + 1, '\n'))
		assert_int_equal(p[-1], '\r');
	size_t len = strlen(fields);
	assert_string_equal(fields + len - 2, "\r\n");
}

/* The h= list of the first signature in fields, unfolded, lowercased. */
static void h_tag(const char *fields, char *out, size_t size)
{
	const char *h = strstr(fields, "\th=");
	if (h == NULL)
		h = strstr(fields, " h=");
	assert_non_null(h);
	h++;
	size_t n = 0;
	for (h += 2; *h != ';' && *h != '\0' && n + 1 < size; h++) {
		if (*h != '\r' && *h != '\n' && *h != '\t' && *h != ' ')
			out[n++] = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
	}
	out[n] = '\0';
}

static void test_sign_rsa(void **state)
{
	fixture *f = *state;
	size_t len, slen;
	char *crlf = to_crlf(msg_lf, &len);
	char *fields = sign_ok(f, crlf, len, &f->rsa, 1);
	check_field(fields, "a=rsa-sha256;");
	assert_non_null(strstr(fields, "s=rsa1;"));
	char h[512];
	h_tag(fields, h, sizeof h);
	/* the message's signed fields, in order, then the oversigned ones;
	 * Received and X-Mailer are not signed */
	assert_string_equal(h, "from:to:subject:date:message-id:mime-version:content-type:"
			       "list-unsubscribe:from:reply-to:subject:to:cc");
	char *signed_msg = prepend(fields, crlf, len, &slen);
	char out[2048];
	assert_int_equal(py_verify(f, signed_msg, slen, out, sizeof out), 0);
	assert_memory_equal(out, "pass a=rsa-sha256 d=" T_DOMAIN " s=rsa1", 36);
	int n;
	assert_int_equal(odkim_verify(f, signed_msg, slen, &n), 1);
	assert_int_equal(n, 1);
	free(signed_msg);
	free(fields);
	free(crlf);
}

static void test_sign_ed25519(void **state)
{
	fixture *f = *state;
	size_t len, slen;
	char *crlf = to_crlf(msg_lf, &len);
	char *fields = sign_ok(f, crlf, len, &f->ed, 1);
	check_field(fields, "a=ed25519-sha256;");
	char *signed_msg = prepend(fields, crlf, len, &slen);
	char out[2048];
	assert_int_equal(py_verify(f, signed_msg, slen, out, sizeof out), 0);
	assert_memory_equal(out, "pass a=ed25519-sha256 d=" T_DOMAIN " s=ed1", 40);
	int n;
	assert_int_equal(odkim_verify(f, signed_msg, slen, &n), 1);
	free(signed_msg);
	free(fields);
	free(crlf);
}

static void test_sign_dual(void **state)
{
	fixture *f = *state;
	size_t len, slen;
	char *crlf = to_crlf(msg_lf, &len);
	struct dkim_key keys[2] = { f->rsa, f->ed }; /* shallow: borrowed */
	char *fields = sign_ok(f, crlf, len, keys, 2);
	const char *second = strstr(fields + 1, "DKIM-Signature: ");
	assert_non_null(second);
	assert_null(strstr(second + 1, "DKIM-Signature: "));
	assert_true(strstr(fields, "a=rsa-sha256") < second);
	assert_non_null(strstr(second, "a=ed25519-sha256"));
	char *signed_msg = prepend(fields, crlf, len, &slen);
	char out[4096];
	assert_int_equal(py_verify(f, signed_msg, slen, out, sizeof out), 0);
	assert_non_null(strstr(out, "pass a=rsa-sha256"));
	assert_non_null(strstr(out, "\npass a=ed25519-sha256"));
	int n;
	assert_int_equal(odkim_verify(f, signed_msg, slen, &n), 2);
	assert_int_equal(n, 2);
	free(signed_msg);
	free(fields);
	free(crlf);
}

/* Replace the first old in s (same length) or insert before it. */
static char *edit(const char *s, size_t len, const char *at, const char *insert,
		  size_t replace, size_t *len_r)
{
	const char *p = strstr(s, at);
	assert_non_null(p);
	size_t off = (size_t)(p - s), il = strlen(insert);
	char *out = xmalloc(len + il + 1);
	memcpy(out, s, off);
	memcpy(out + off, insert, il);
	memcpy(out + off + il, s + off + replace, len - off - replace);
	*len_r = len + il - replace;
	out[*len_r] = '\0';
	return out;
}

static void test_tampered(void **state)
{
	fixture *f = *state;
	size_t len, slen, tlen;
	char *crlf = to_crlf(msg_lf, &len);
	struct dkim_key keys[2] = { f->rsa, f->ed };
	char *fields = sign_ok(f, crlf, len, keys, 2);
	char *signed_msg = prepend(fields, crlf, len, &slen);
	char out[4096];
	int n;
	static const struct {
		const char *at, *insert;
		size_t replace;
		int still_valid;
	} cases[] = {
		{ "attached", "ATTACHED", 8, 0 },          /* the body */
		{ "\r\n\r\n\r\n", "\r\nPS\r\n", 0, 0 },     /* text appended */
		{ "Quarterly", "Yearly", 9, 0 },           /* a signed field */
		{ "Subject:", "From: mallory@evil.test\r\n", 0, 0 }, /* a second From */
		{ "Subject:", "Reply-To: mallory@evil.test\r\n", 0, 0 }, /* oversigned */
		{ "Subject:", "Cc: mallory@evil.test\r\n", 0, 0 },
		{ "Hello Bob,   ", "Hello   Bob,", 13, 1 }, /* relaxed: white space */
		{ "X-Mailer:", "X-Spam: no\r\n", 0, 1 },     /* unsigned field added */
		{ "Received:", "Received: by next.hop\r\n", 0, 1 }, /* a relay's trace */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *t = edit(signed_msg, slen, cases[i].at, cases[i].insert, cases[i].replace,
			       &tlen);
		int rc = py_verify(f, t, tlen, out, sizeof out);
		if (cases[i].still_valid != (rc == 0))
			fail_msg("case %zu (%s): verifier said %d: %s", i, cases[i].insert, rc, out);
		assert_int_equal(odkim_verify(f, t, tlen, &n), cases[i].still_valid ? 2 : 0);
		free(t);
	}
	free(signed_msg);
	free(fields);
	free(crlf);
}

static void test_line_ends(void **state)
{
	fixture *f = *state;
	size_t len, slen;
	char *crlf = to_crlf(msg_lf, &len);
	struct dkim_key keys[2] = { f->rsa, f->ed };
	char *a = sign_ok(f, crlf, len, keys, 2);
	char *b = sign_ok(f, msg_lf, strlen(msg_lf), keys, 2);
	/* same time, deterministic signatures: the same fields */
	assert_string_equal(a, b);
	/* mixed: the header in CRLF, the body in LF */
	const char *body = strstr(msg_lf, "\n\n") + 2;
	size_t hl;
	char *head = xstrndup(msg_lf, (size_t)(body - msg_lf));
	char *head_crlf = to_crlf(head, &hl);
	char *mixed = xasprintf("%s%s", head_crlf, body);
	char *c = sign_ok(f, mixed, strlen(mixed), keys, 2);
	assert_string_equal(a, c);
	/* and what was signed is what travels: the CRLF form verifies */
	char *signed_msg = prepend(b, crlf, len, &slen);
	char out[4096];
	assert_int_equal(py_verify(f, signed_msg, slen, out, sizeof out), 0);
	free(signed_msg);
	free(a);
	free(b);
	free(c);
	free(head);
	free(head_crlf);
	free(mixed);
	free(crlf);
}

static void test_shapes(void **state)
{
	fixture *f = *state;
	char out[4096];
	int n;
	/* no body at all (no empty line) and an empty body; a long body that
	 * crosses the signer's chunks with LF-only lines */
	buf big;
	buf_init(&big);
	buf_append_str(&big, "From: a@example.test\nSubject: big\n\n");
	for (int i = 0; i < 6000; i++)
		buf_printf(&big, "line %d of a long body, with a trailing space \n", i);
	buf_append(&big, "", 1);
	const char *msgs[] = { "From: a@example.test\r\nSubject: x",
			       "From: a@example.test\r\n\r\nno line end",
			       "From: a@example.test\nSubject: x\n",
			       "From: a@example.test\n\n", (const char *)big.data };
	for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
		size_t len, slen;
		/* as it travels: SMTP ends the last line */
		char *ended = xasprintf("%s%s", msgs[i],
					msgs[i][strlen(msgs[i]) - 1] == '\n' ? "" : "\r\n");
		char *crlf = to_crlf(ended, &len);
		free(ended);
		char *fields = sign_ok(f, msgs[i], strlen(msgs[i]), &f->ed, 1);
		char *signed_msg = prepend(fields, crlf, len, &slen);
		int rc = py_verify(f, signed_msg, slen, out, sizeof out);
		if (rc != 0)
			fail_msg("message %zu: %s", i, out);
		assert_int_equal(odkim_verify(f, signed_msg, slen, &n), 1);
		free(signed_msg);
		free(fields);
		free(crlf);
	}
	buf_deinit(&big);
}

static void sign_fails(fixture *f, dkim_signer *s, const char *msg, size_t len,
		       const struct dkim_key *keys, size_t n, int want, const char *text)
{
	char *fields = (char *)"unset";
	size_t flen = 1;
	const char *error = NULL;
	int err = dkim_signer_sign(s != NULL ? s : f->signer, msg, len, keys, n, "T2", &fields,
				   &flen, &error);
	if (err != want)
		fail_msg("want %d, got %d (%s)", want, err, error);
	assert_null(fields);
	assert_int_equal(flen, 0);
	assert_non_null(error);
	if (text != NULL && strstr(error, text) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", error, text);
}

static void test_refused(void **state)
{
	fixture *f = *state;
	const char *m;
#define FAILS(msg, want, text) sign_fails(f, NULL, msg, strlen(msg), &f->rsa, 1, want, text)
	FAILS("To: b@remote.test\nSubject: no sender\n\nbody\n", MAIL_ERR_PARAMS,
	      "no From");
	FAILS("From: a@example.test\nFROM : b@example.test\n\nbody\n", MAIL_ERR_PARAMS,
	      "more than one From");
	/* a From in the body is no From */
	FAILS("To: b@remote.test\n\nFrom: a@example.test\n", MAIL_ERR_PARAMS, "no From");
	FAILS("From: a@example.test\nnot a field\n\nbody\n", MAIL_ERR_PARAMS, "not a field");
	FAILS(": empty name\nFrom: a@example.test\n\n", MAIL_ERR_PARAMS, "not a field");
	FAILS(" folded\nFrom: a@example.test\n\n", MAIL_ERR_PARAMS, "continuation");
	FAILS("", MAIL_ERR_PARAMS, "no From");
	m = "From: a@example.test\nSubject: a\0b\n\nbody\n";
	sign_fails(f, NULL, m, 40, &f->rsa, 1, MAIL_ERR_PARAMS, "NUL");
	/* keys */
	sign_fails(f, NULL, msg_lf, strlen(msg_lf), &f->rsa, 0, MAIL_ERR_PARAMS, NULL);
	struct dkim_key bad = f->rsa;
	bad.selector[0] = '\0';
	sign_fails(f, NULL, msg_lf, strlen(msg_lf), &bad, 1, MAIL_ERR_PARAMS, NULL);
	bad = f->rsa;
	bad.pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n";
	bad.pem_len = strlen(bad.pem);
	sign_fails(f, NULL, msg_lf, strlen(msg_lf), &bad, 1, MAIL_ERR_INTERNAL, "private key");
	bad = f->rsa;
	bad.alg = DKIM_ALG_ED25519_SHA256; /* an RSA key as Ed25519 */
	sign_fails(f, NULL, msg_lf, strlen(msg_lf), &bad, 1, MAIL_ERR_INTERNAL, "private key");
	bad = f->ed;
	bad.alg = DKIM_ALG_RSA_SHA256;
	sign_fails(f, NULL, msg_lf, strlen(msg_lf), &bad, 1, MAIL_ERR_INTERNAL, "private key");
#undef FAILS

	/* limits */
	struct dkim_sign_settings set = dkim_sign_settings_default();
	set.max_message_bytes = 1024;
	set.max_header_fields = 16;
	dkim_signer *s;
	const char *error;
	assert_int_equal(dkim_signer_create(&set, &s, &error), MAIL_OK);
	buf big;
	buf_init(&big);
	buf_append_str(&big, "From: a@example.test\n\n");
	while (big.len < 1024)
		buf_append_str(&big, "0123456789abcdef\n");
	char *fields;
	size_t flen;
	/* the limit itself is allowed */
	assert_int_equal(dkim_signer_sign(s, big.data, 1024, &f->rsa, 1, NULL, &fields, &flen,
					  &error),
			 MAIL_OK);
	free(fields);
	sign_fails(f, s, (const char *)big.data, 1025, &f->rsa, 1, MAIL_ERR_TOO_BIG, "too big");
	buf_reset(&big);
	buf_append_str(&big, "From: a@example.test\n");
	for (int i = 0; i < 15; i++)
		buf_append_str(&big, "X-A: b\n");
	buf_append_str(&big, "\nbody\n");
	assert_int_equal(dkim_signer_sign(s, big.data, big.len, &f->rsa, 1, NULL, &fields, &flen,
					  &error),
			 MAIL_OK);
	free(fields);
	buf_reset(&big);
	buf_append_str(&big, "From: a@example.test\n");
	for (int i = 0; i < 16; i++)
		buf_append_str(&big, "X-A: b\n");
	buf_append_str(&big, "\nbody\n");
	sign_fails(f, s, (const char *)big.data, big.len, &f->rsa, 1, MAIL_ERR_LIMIT,
		   "too many");
	buf_deinit(&big);
	dkim_signer_destroy(&s);
	assert_null(s);

	set = dkim_sign_settings_default();
	set.max_message_bytes = 100;
	assert_int_equal(dkim_signer_create(&set, &s, &error), MAIL_ERR_PARAMS);
	assert_null(s);
	set = dkim_sign_settings_default();
	set.max_header_fields = 200000;
	assert_int_equal(dkim_signer_create(&set, &s, &error), MAIL_ERR_PARAMS);
}

/* ---- keys and records ------------------------------------------------------ */

static void test_keys_public(void **state)
{
	fixture *f = *state;
	char *pub;
	const char *error;
	assert_int_equal(dkim_key_public(DKIM_ALG_RSA_SHA256, f->rsa.pem, f->rsa.pem_len, &pub,
					 &error),
			 MAIL_OK);
	char *txt = dkim_txt_value(DKIM_ALG_RSA_SHA256, pub);
	assert_string_equal(txt, f->rsa_txt);
	free(txt);
	free(pub);
	assert_memory_equal(f->rsa.pem, "-----BEGIN PRIVATE KEY-----\n", 28);
	assert_memory_equal(f->ed.pem, "-----BEGIN PRIVATE KEY-----\n", 28);
	assert_int_equal(dkim_key_public(DKIM_ALG_ED25519_SHA256, f->ed.pem, f->ed.pem_len, &pub,
					 &error),
			 MAIL_OK);
	/* the raw 32-byte key */
	unsigned char raw[64];
	assert_int_equal(EVP_DecodeBlock(raw, (const unsigned char *)pub, (int)strlen(pub)), 33);
	assert_int_equal(strlen(pub), 44);
	assert_string_equal(f->ed_txt + strlen("v=DKIM1; k=ed25519; p="), pub);
	free(pub);
	assert_memory_equal(f->rsa_txt, "v=DKIM1; k=rsa; p=MII", 21);
	/* the wrong algorithm, not a key */
	assert_int_equal(dkim_key_public(DKIM_ALG_ED25519_SHA256, f->rsa.pem, f->rsa.pem_len, &pub,
					 &error),
			 MAIL_ERR_PARAMS);
	assert_null(pub);
	assert_int_equal(dkim_key_public(DKIM_ALG_RSA_SHA256, "junk", 4, &pub, &error),
			 MAIL_ERR_PARAMS);
	char *pem;
	size_t pl;
	assert_int_equal(dkim_key_generate(DKIM_ALG_RSA_SHA256, 512, &pem, &pl, &pub, &error),
			 MAIL_ERR_PARAMS);
	assert_int_equal(dkim_alg_parse("rsa-sha256"), DKIM_ALG_RSA_SHA256);
	assert_int_equal(dkim_alg_parse("ed25519-sha256"), DKIM_ALG_ED25519_SHA256);
	assert_int_equal(dkim_alg_parse("rsa-sha1"), -1);
	assert_int_equal(dkim_alg_parse(NULL), -1);
}

/* The quoted strings of a TXT line, joined; each at most 255 bytes. */
static char *txt_join(const char *line, int *strings_r)
{
	const char *p = strstr(line, " IN TXT ");
	assert_non_null(p);
	p += 8;
	char *out = xmalloc(strlen(line) + 1);
	size_t n = 0;
	*strings_r = 0;
	while (*p == '"') {
		size_t len = 0;
		for (p++; *p != '"'; p++, len++) {
			assert_true(*p != '\0');
			if (*p == '\\')
				p++;
			out[n++] = *p;
		}
		assert_true(len <= 255);
		(*strings_r)++;
		p++;
		if (*p == ' ')
			p++;
	}
	assert_int_equal(*p, '\0');
	out[n] = '\0';
	return out;
}

static void test_txt_record(void **state)
{
	fixture *f = *state;
	int strings;
	char *line = dkim_txt_record("rsa1", T_DOMAIN, f->rsa_txt);
	assert_memory_equal(line, "rsa1._domainkey." T_DOMAIN ". IN TXT \"v=DKIM1; k=rsa; p=",
			    strlen("rsa1._domainkey." T_DOMAIN ". IN TXT \"v=DKIM1; k=rsa; p="));
	char *joined = txt_join(line, &strings);
	assert_string_equal(joined, f->rsa_txt);
	assert_int_equal(strings, 2); /* RSA-2048: ~410 bytes */
	free(joined);
	free(line);
	line = dkim_txt_record("ed1", T_DOMAIN, f->ed_txt);
	joined = txt_join(line, &strings);
	assert_string_equal(joined, f->ed_txt);
	assert_int_equal(strings, 1);
	free(joined);
	free(line);
	/* exactly 255, 256, 510 bytes; quotes escaped but counted once */
	char v[600];
	size_t sizes[] = { 0, 255, 256, 510, 511 };
	int want[] = { 1, 1, 2, 2, 3 };
	for (size_t i = 0; i < 5; i++) {
		memset(v, 'a', sizes[i]);
		v[sizes[i]] = '\0';
		if (sizes[i] > 10)
			v[254] = '"';
		line = dkim_txt_record("s", "d.test", v);
		joined = txt_join(line, &strings);
		assert_string_equal(joined, v);
		assert_int_equal(strings, want[i]);
		free(joined);
		free(line);
	}
}

static void test_names(void **state)
{
	(void)state;
	assert_true(dkim_selector_valid("s20261202"));
	assert_true(dkim_selector_valid("a.b-c.9"));
	assert_false(dkim_selector_valid(""));
	assert_false(dkim_selector_valid("S1"));
	assert_false(dkim_selector_valid("-a"));
	assert_false(dkim_selector_valid("a-"));
	assert_false(dkim_selector_valid("a..b"));
	assert_false(dkim_selector_valid("a/b"));
	assert_false(dkim_selector_valid("a_b"));
	char big[80];
	memset(big, 'a', 64);
	big[64] = '\0';
	assert_false(dkim_selector_valid(big));
	big[63] = '\0';
	assert_true(dkim_selector_valid(big));
	char low[] = "S2026.Example";
	assert_string_equal(dkim_name_lower(low), "s2026.example");

	char *k = dkim_store_key(T_DOMAIN, "s1");
	assert_string_equal(k, "/mail/v1/secrets/dkim/example.test/s1");
	char d[DKIM_DOMAIN_MAX + 1], s[DKIM_SELECTOR_MAX + 1];
	assert_int_equal(dkim_store_key_parse(k, d, s), 0);
	assert_string_equal(d, T_DOMAIN);
	assert_string_equal(s, "s1");
	free(k);
	k = dkim_store_domain_prefix(T_DOMAIN);
	assert_string_equal(k, "/mail/v1/secrets/dkim/example.test/");
	assert_int_equal(dkim_store_key_parse(k, d, s), -1);
	free(k);
	assert_int_equal(dkim_store_key_parse("/mail/v1/tls/certs/x.test", d, s), -1);
	assert_int_equal(dkim_store_key_parse("/mail/v1/secrets/dkim/x.test/a/b", d, s), -1);
	assert_int_equal(dkim_store_key_parse("/mail/v1/secrets/dkim/bad..d/a", d, s), -1);
}

static void test_records(void **state)
{
	fixture *f = *state;
	struct dkim_record r = { .alg = DKIM_ALG_ED25519_SHA256, .pem = f->ed.pem,
				 .pem_len = f->ed.pem_len, .created = 1764700000123,
				 .active = 1, .activated = 1764700000124 };
	size_t len;
	char *json = dkim_record_format(&r, &len);
	assert_int_equal(strlen(json), len);
	assert_non_null(strstr(json, "\"algorithm\":\"ed25519-sha256\""));
	assert_non_null(strstr(json, "\"active\":true"));
	assert_non_null(strstr(json, "-----\\n"));
	struct dkim_record back;
	const char *error;
	assert_int_equal(dkim_record_parse(json, len, &back, &error), MAIL_OK);
	assert_int_equal(back.alg, r.alg);
	assert_string_equal(back.pem, r.pem);
	assert_int_equal(back.pem_len, r.pem_len);
	assert_int_equal(back.created, r.created);
	assert_int_equal(back.active, 1);
	assert_int_equal(back.activated, r.activated);
	dkim_record_clear(&back);
	assert_null(back.pem);
	dkim_secret_free(json, len);

	static const char *const bad[] = {
		"", "[]", "{\"algorithm\":\"rsa-sha1\",\"key\":\"k\",\"created\":1,\"active\":true}",
		"{\"algorithm\":\"rsa-sha256\",\"created\":1,\"active\":true}",
		"{\"algorithm\":\"rsa-sha256\",\"key\":\"\",\"created\":1,\"active\":true}",
		"{\"algorithm\":\"rsa-sha256\",\"key\":\"k\",\"created\":\"1\",\"active\":true}",
		"{\"algorithm\":\"rsa-sha256\",\"key\":\"k\",\"created\":1,\"active\":1}",
		("{\"algorithm\":\"rsa-sha256\",\"key\":\"k\",\"key\":\"j\",\"created\":1,"
		 "\"active\":true}"),
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (dkim_record_parse(bad[i], strlen(bad[i]), &back, &error) != MAIL_ERR_PARAMS)
			fail_msg("bad record %zu parsed", i);
		assert_null(back.pem);
	}
	/* unknown fields are fine, "activated" is optional */
	const char *ok = "{\"algorithm\":\"rsa-sha256\",\"key\":\"k\",\"created\":5,"
			 "\"active\":false,\"by\":\"future\"}";
	assert_int_equal(dkim_record_parse(ok, strlen(ok), &back, &error), MAIL_OK);
	assert_int_equal(back.activated, 0);
	assert_int_equal(back.active, 0);
	dkim_record_clear(&back);
}

static char *rec(enum dkim_alg alg, const char *pem, int64_t created, int active,
		 int64_t activated)
{
	struct dkim_record r = { .alg = alg, .pem = (char *)pem, .pem_len = strlen(pem),
				 .created = created, .active = active, .activated = activated };
	size_t len;
	return dkim_record_format(&r, &len);
}

static void test_select(void **state)
{
	(void)state;
	const char *p = "/mail/v1/secrets/dkim/" T_DOMAIN "/";
	char *keys[] = {
		xasprintf("%sa-old", p), xasprintf("%sb-new", p), xasprintf("%sc-idle", p),
		xasprintf("%sd-ed", p), xasprintf("%se-broken", p),
		xasprintf("/mail/v1/secrets/dkim/other.test/z"), xasprintf("%sf-ed-old", p),
	};
	char *vals[] = {
		/* RSA: a-old active (activated 10), b-new active (activated 20,
		 * created earlier), c-idle newest but inactive */
		rec(DKIM_ALG_RSA_SHA256, "PEM-A", 100, 1, 10),
		rec(DKIM_ALG_RSA_SHA256, "PEM-B", 50, 1, 20),
		rec(DKIM_ALG_RSA_SHA256, "PEM-C", 900, 0, 30),
		rec(DKIM_ALG_ED25519_SHA256, "PEM-D", 100, 1, 0),
		xstrdup("{\"algorithm\":\"rsa-sha256\"}"),
		rec(DKIM_ALG_RSA_SHA256, "PEM-OTHER", 999, 1, 999),
		rec(DKIM_ALG_ED25519_SHA256, "PEM-F", 99, 1, 0),
	};
	size_t n = sizeof keys / sizeof keys[0];
	struct dkim_stored kvs[7];
	for (size_t i = 0; i < n; i++)
		kvs[i] = (struct dkim_stored){ keys[i], vals[i], strlen(vals[i]) };
	struct dkim_key out[DKIM_ALG_COUNT_];
	size_t got, skipped;
	const char *error;
	assert_int_equal(dkim_store_select(T_DOMAIN, kvs, n, out, &got, &skipped, &error),
			 MAIL_OK);
	assert_int_equal(got, 2);
	assert_int_equal(skipped, 1);
	assert_int_equal(out[0].alg, DKIM_ALG_RSA_SHA256);
	assert_string_equal(out[0].selector, "b-new");
	assert_string_equal(out[0].pem, "PEM-B");
	assert_string_equal(out[0].domain, T_DOMAIN);
	assert_int_equal(out[1].alg, DKIM_ALG_ED25519_SHA256);
	assert_string_equal(out[1].selector, "d-ed"); /* same activation: newer */
	dkim_key_clear(&out[0]);
	dkim_key_clear(&out[1]);
	assert_null(out[0].pem);
	/* only inactive keys or none: nothing signs */
	assert_int_equal(dkim_store_select(T_DOMAIN, &kvs[2], 1, out, &got, NULL, &error),
			 MAIL_OK);
	assert_int_equal(got, 0);
	assert_int_equal(dkim_store_select(T_DOMAIN, NULL, 0, out, &got, NULL, &error), MAIL_OK);
	assert_int_equal(got, 0);
	assert_int_equal(dkim_store_select("bad..domain", kvs, n, out, &got, NULL, &error),
			 MAIL_ERR_PARAMS);
	for (size_t i = 0; i < n; i++) {
		free(keys[i]);
		dkim_secret_free(vals[i], strlen(vals[i]));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sign_rsa),
		cmocka_unit_test(test_sign_ed25519),
		cmocka_unit_test(test_sign_dual),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_line_ends),
		cmocka_unit_test(test_shapes),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_keys_public),
		cmocka_unit_test(test_txt_record),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_records),
		cmocka_unit_test(test_select),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
