/* Unit tests for lib/sasl: PLAIN, LOGIN, SCRAM-SHA-256 (the RFC 7677 test
 * vector exactly, and an independent client from tests/support), the
 * state machine's refusals, strict base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/rand.h>

#include "buf.h"
#include "sasl.h"
#include "scram-client.h"
#include "xalloc.h"

static const char test_secret[] = "0123456789abcdef-test-secret";

/* RFC 7677 section 3 */
static const char rfc_client_first[] = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
static const char rfc_server_nonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
static const char rfc_salt_b64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";
static const char rfc_server_first[] =
	"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
static const char rfc_client_final[] =
	"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
	"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
static const char rfc_server_final[] = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/* out as a string ("" when nothing was appended: data may be NULL). */
static const char *text(const buf *b)
{
	return b->len == 0 ? "" : (const char *)b->data;
}

static enum sasl_step step_bytes(sasl_server *s, const void *in, size_t len, buf *out)
{
	buf_reset(out);
	return sasl_server_step(s, in, len, 1, out);
}

static enum sasl_step step_str(sasl_server *s, const char *in, buf *out)
{
	return step_bytes(s, in, strlen(in), out);
}

static void assert_failed(const sasl_server *s, int syntax)
{
	assert_true(sasl_server_error(s)[0] != '\0');
	assert_int_equal(sasl_server_error_is_syntax(s), syntax);
}

static void test_mech_names(void **state)
{
	(void)state;
	enum sasl_mech m;
	assert_int_equal(sasl_mech_parse("plain", &m), 0);
	assert_int_equal(m, SASL_MECH_PLAIN);
	assert_int_equal(sasl_mech_parse("Login", &m), 0);
	assert_int_equal(m, SASL_MECH_LOGIN);
	assert_int_equal(sasl_mech_parse("scram-sha-256", &m), 0);
	assert_int_equal(m, SASL_MECH_SCRAM_SHA_256);
	assert_int_equal(sasl_mech_parse("SCRAM-SHA-256-PLUS", &m), -1);
	assert_int_equal(sasl_mech_parse("CRAM-MD5", &m), -1);
	assert_int_equal(sasl_mech_parse("", &m), -1);
	assert_string_equal(sasl_mech_name(SASL_MECH_SCRAM_SHA_256), "SCRAM-SHA-256");
	assert_null(sasl_mech_name(SASL_MECH_COUNT_));
}

/* ---- PLAIN ------------------------------------------------------------------ */

/* Answer CHECK_PASSWORD with ok: DONE, or FAIL for bad credentials (not
 * syntax); after either every call fails and a failure keeps its reason.
 * Frees *s. */
static void check_and_free(sasl_server **s, int ok)
{
	buf out;
	buf_init(&out);
	assert_int_equal(sasl_server_checked(*s, ok), ok ? SASL_STEP_DONE : SASL_STEP_FAIL);
	const char *reason = ok ? "step out of order" : "authentication failed";
	assert_int_equal(sasl_server_checked(*s, 1), SASL_STEP_FAIL);
	assert_int_equal(step_str(*s, "more", &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	assert_failed(*s, 0);
	assert_string_equal(sasl_server_error(*s), reason);
	sasl_server_free(s);
	assert_null(*s);
	sasl_server_free(s);
	buf_deinit(&out);
}

static void test_plain(void **state)
{
	(void)state;
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_string_equal(sasl_server_user(s), "");
	assert_int_equal(step_bytes(s, "\0alice@a.test\0s3cret", 20, &out),
			 SASL_STEP_CHECK_PASSWORD);
	assert_int_equal(out.len, 0);
	assert_string_equal(sasl_server_user(s), "alice@a.test");
	assert_string_equal(sasl_server_password(s), "s3cret");
	assert_string_equal(sasl_server_error(s), "");
	check_and_free(&s, 1);

	/* no initial response: an empty challenge first; an authzid equal to
	 * the user is fine */
	s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_int_equal(sasl_server_step(s, NULL, 0, 0, &out), SASL_STEP_CHALLENGE);
	assert_int_equal(out.len, 0);
	assert_int_equal(step_bytes(s, "bob\0bob\0wrong", 13, &out), SASL_STEP_CHECK_PASSWORD);
	assert_string_equal(sasl_server_user(s), "bob");
	assert_string_equal(sasl_server_password(s), "wrong");
	check_and_free(&s, 0);
	buf_deinit(&out);
}

/* One PLAIN message of len bytes; the step it gives and, on FAIL, whether
 * that was a syntax error. */
static void plain_expect(const void *msg, size_t len, enum sasl_step want, int syntax)
{
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_int_equal(step_bytes(s, msg, len, &out), want);
	if (want == SASL_STEP_FAIL)
		assert_failed(s, syntax);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	buf_deinit(&out);
}

/* [authzid] NUL user NUL password, each field n bytes of 'x'. */
static size_t plain_build(uint8_t *dst, size_t authzid, size_t user, size_t password)
{
	size_t n = 0;
	memset(dst + n, 'x', authzid);
	n += authzid;
	dst[n++] = '\0';
	memset(dst + n, 'x', user);
	n += user;
	dst[n++] = '\0';
	memset(dst + n, 'p', password);
	return n + password;
}

static void test_plain_malformed(void **state)
{
	(void)state;
	plain_expect("", 0, SASL_STEP_FAIL, 1);
	plain_expect("alice", 5, SASL_STEP_FAIL, 1);
	plain_expect("\0alice", 6, SASL_STEP_FAIL, 1);
	plain_expect("\0alice\0pw\0x", 11, SASL_STEP_FAIL, 1); /* NUL inside the password */
	plain_expect("\0\0pw", 4, SASL_STEP_FAIL, 1);
	plain_expect("\0alice\0", 7, SASL_STEP_FAIL, 1);
	/* a different authorization identity: refused, but not a syntax error */
	plain_expect("bob\0alice\0pw", 12, SASL_STEP_FAIL, 0);
	plain_expect("Alice\0alice\0pw", 14, SASL_STEP_FAIL, 0);

	uint8_t msg[2 * SASL_MAX_IDENTITY + SASL_MAX_PASSWORD + 8];
	size_t len = plain_build(msg, SASL_MAX_IDENTITY, SASL_MAX_IDENTITY, SASL_MAX_PASSWORD);
	plain_expect(msg, len, SASL_STEP_CHECK_PASSWORD, 0);
	len = plain_build(msg, 0, SASL_MAX_IDENTITY + 1, 2);
	plain_expect(msg, len, SASL_STEP_FAIL, 1);
	len = plain_build(msg, 0, 2, SASL_MAX_PASSWORD + 1);
	plain_expect(msg, len, SASL_STEP_FAIL, 1);
	len = plain_build(msg, SASL_MAX_IDENTITY + 1, SASL_MAX_IDENTITY + 1, 2);
	plain_expect(msg, len, SASL_STEP_FAIL, 1);

	uint8_t *big = xcalloc(SASL_MAX_RESPONSE + 1, 1);
	plain_expect(big, SASL_MAX_RESPONSE + 1, SASL_STEP_FAIL, 1);
	free(big);
}

/* ---- LOGIN ------------------------------------------------------------------ */

static void test_login(void **state)
{
	(void)state;
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_LOGIN, NULL, 0);
	assert_int_equal(sasl_server_step(s, NULL, 0, 0, &out), SASL_STEP_CHALLENGE);
	assert_string_equal(text(&out), "Username:");
	assert_int_equal(step_str(s, "alice@a.test", &out), SASL_STEP_CHALLENGE);
	assert_string_equal(text(&out), "Password:");
	assert_string_equal(sasl_server_user(s), "alice@a.test");
	assert_int_equal(step_str(s, "s3cret", &out), SASL_STEP_CHECK_PASSWORD);
	assert_int_equal(out.len, 0);
	assert_string_equal(sasl_server_password(s), "s3cret");
	check_and_free(&s, 1);

	/* an initial response is the user name */
	s = sasl_server_new(SASL_MECH_LOGIN, NULL, 0);
	assert_int_equal(step_str(s, "bob", &out), SASL_STEP_CHALLENGE);
	assert_string_equal(text(&out), "Password:");
	assert_int_equal(step_str(s, "pw", &out), SASL_STEP_CHECK_PASSWORD);
	assert_string_equal(sasl_server_user(s), "bob");
	check_and_free(&s, 0);
	buf_deinit(&out);
}

/* LOGIN with user as the initial response, then password (NULL: the user
 * name is what is refused): a syntax failure, nothing sent. */
static void login_refused(const void *user, size_t user_len, const void *password,
			  size_t password_len)
{
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_LOGIN, NULL, 0);
	enum sasl_step step = step_bytes(s, user, user_len, &out);
	if (password != NULL) {
		assert_int_equal(step, SASL_STEP_CHALLENGE);
		step = step_bytes(s, password, password_len, &out);
	}
	assert_int_equal(step, SASL_STEP_FAIL);
	assert_failed(s, 1);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	buf_deinit(&out);
}

static void test_login_malformed(void **state)
{
	(void)state;
	char long_field[SASL_MAX_PASSWORD + 1];
	memset(long_field, 'x', sizeof long_field);
	login_refused("", 0, NULL, 0);
	login_refused("al\0ce", 5, NULL, 0);
	login_refused(long_field, SASL_MAX_IDENTITY + 1, NULL, 0);
	login_refused("alice", 5, "", 0);
	login_refused("alice", 5, "p\0w", 3);
	login_refused("alice", 5, long_field, SASL_MAX_PASSWORD + 1);
}

/* ---- the state machine ------------------------------------------------------ */

static void test_out_of_order(void **state)
{
	(void)state;
	buf out;
	buf_init(&out);
	struct sasl_scram_keys keys;
	memset(&keys, 0, sizeof keys);
	keys.salt_len = 4;
	keys.iterations = 4096;

	/* sasl_server_checked() before CHECK_PASSWORD */
	sasl_server *s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_int_equal(sasl_server_checked(s, 1), SASL_STEP_FAIL);
	assert_failed(s, 0);
	const char *first = sasl_server_error(s);
	assert_int_equal(step_bytes(s, "\0a\0b", 4, &out), SASL_STEP_FAIL);
	assert_string_equal(sasl_server_error(s), first);
	sasl_server_free(&s);

	/* a response while the password is being checked */
	s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_int_equal(step_bytes(s, "\0a\0b", 4, &out), SASL_STEP_CHECK_PASSWORD);
	assert_int_equal(step_bytes(s, "\0a\0b", 4, &out), SASL_STEP_FAIL);
	assert_int_equal(sasl_server_checked(s, 1), SASL_STEP_FAIL);
	sasl_server_free(&s);

	/* a later step without a response; data NULL with a length */
	s = sasl_server_new(SASL_MECH_LOGIN, NULL, 0);
	assert_int_equal(sasl_server_step(s, NULL, 0, 0, &out), SASL_STEP_CHALLENGE);
	assert_int_equal(sasl_server_step(s, NULL, 0, 0, &out), SASL_STEP_FAIL);
	sasl_server_free(&s);
	s = sasl_server_new(SASL_MECH_LOGIN, NULL, 0);
	assert_int_equal(sasl_server_step(s, NULL, 3, 1, &out), SASL_STEP_FAIL);
	sasl_server_free(&s);

	/* SCRAM answers at the wrong time, and for the wrong mechanism */
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)test_secret,
			    strlen(test_secret));
	buf_reset(&out);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)test_secret,
			    strlen(test_secret));
	assert_int_equal(step_str(s, rfc_client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(step_str(s, rfc_client_final, &out), SASL_STEP_FAIL);
	assert_int_equal(sasl_server_scram_unknown(s, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)test_secret,
			    strlen(test_secret));
	assert_int_equal(step_str(s, rfc_client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_checked(s, 1), SASL_STEP_FAIL);
	sasl_server_free(&s);
	s = sasl_server_new(SASL_MECH_PLAIN, NULL, 0);
	assert_int_equal(sasl_server_scram_unknown(s, &out), SASL_STEP_FAIL);
	sasl_server_free(&s);

	/* keys twice */
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	assert_int_equal(step_str(s, rfc_client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_CHALLENGE);
	buf_reset(&out);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);

	/* a mechanism out of range */
	s = sasl_server_new(SASL_MECH_COUNT_, NULL, 0);
	assert_int_equal(sasl_server_step(s, NULL, 0, 0, &out), SASL_STEP_FAIL);
	sasl_server_free(&s);
	buf_deinit(&out);
}

/* ---- SCRAM-SHA-256 ------------------------------------------------------------ */

static void rfc_keys(const char *password, struct sasl_scram_keys *keys)
{
	buf salt;
	buf_init(&salt);
	assert_int_equal(sasl_b64_decode(rfc_salt_b64, strlen(rfc_salt_b64), 64, &salt), 0);
	assert_int_equal(sasl_scram_keys_derive(password, strlen(password), salt.data, salt.len,
						4096, keys),
			 0);
	buf_deinit(&salt);
}

/* A SCRAM exchange up to server-first: client_first as the initial
 * response (or after an empty challenge), then keys (NULL: unknown user). */
static sasl_server *scram_begin(const char *client_first, int initial,
				const struct sasl_scram_keys *keys, buf *out)
{
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)test_secret,
					 strlen(test_secret));
	sasl_server_set_nonce(s, rfc_server_nonce);
	if (!initial) {
		assert_int_equal(sasl_server_step(s, NULL, 0, 0, out), SASL_STEP_CHALLENGE);
		assert_int_equal(out->len, 0);
	}
	assert_int_equal(step_str(s, client_first, out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(out->len, 0);
	enum sasl_step step = keys != NULL ? sasl_server_scram_keys(s, keys, out)
					   : sasl_server_scram_unknown(s, out);
	assert_int_equal(step, SASL_STEP_CHALLENGE);
	return s;
}

static void test_scram_rfc7677(void **state)
{
	(void)state;
	static const uint8_t stored_key[32] = {
		0x58, 0x6e, 0x5d, 0xf2, 0x83, 0xe6, 0xdc, 0xeb, 0x5c, 0x3e, 0x79,
		0x1d, 0x8b, 0x85, 0x28, 0xec, 0x19, 0x1e, 0x66, 0x40, 0x45, 0xce,
		0x97, 0x17, 0x92, 0xe2, 0xe6, 0xb5, 0xbb, 0x13, 0xe2, 0xa6};
	struct sasl_scram_keys keys;
	rfc_keys("pencil", &keys);
	assert_int_equal(keys.salt_len, 16);
	assert_int_equal(keys.iterations, 4096);
	assert_memory_equal(keys.stored_key, stored_key, sizeof stored_key);

	buf out;
	buf_init(&out);
	for (int initial = 0; initial <= 1; initial++) {
		sasl_server *s = scram_begin(rfc_client_first, initial, &keys, &out);
		assert_string_equal(sasl_server_user(s), "user");
		assert_string_equal(text(&out), rfc_server_first);
		assert_int_equal(step_str(s, rfc_client_final, &out), SASL_STEP_DONE);
		assert_string_equal(text(&out), rfc_server_final);
		assert_string_equal(sasl_server_password(s), "");
		/* nothing after DONE, not even the empty response SMTP sends */
		assert_int_equal(step_str(s, "", &out), SASL_STEP_FAIL);
		sasl_server_free(&s);
	}
	buf_deinit(&out);
}

static void test_scram_wrong_password(void **state)
{
	(void)state;
	struct sasl_scram_keys keys;
	rfc_keys("pencil2", &keys);
	buf out;
	buf_init(&out);
	sasl_server *s = scram_begin(rfc_client_first, 1, &keys, &out);
	assert_string_equal(text(&out), rfc_server_first); /* same salt, same nonce */
	assert_int_equal(step_str(s, rfc_client_final, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	assert_failed(s, 0);
	assert_string_equal(sasl_server_error(s), "authentication failed");
	sasl_server_free(&s);
	buf_deinit(&out);
}

/* The attribute name's value of a SCRAM message, as a heap string. */
static char *attr_value(const char *msg, const char *name)
{
	const char *p = strstr(msg, name);
	assert_non_null(p);
	p += strlen(name);
	return xstrndup(p, strcspn(p, ","));
}

static void test_scram_unknown_user(void **state)
{
	(void)state;
	buf out;
	buf_init(&out);
	char *salts[3];
	const char *users[3] = {"n,,n=user,r=abc", "n,,n=user,r=other", "n,,n=nobody,r=abc"};
	for (int i = 0; i < 3; i++) {
		sasl_server *s = scram_begin(users[i], 1, NULL, &out);
		salts[i] = attr_value(text(&out), ",s=");
		assert_non_null(strstr(text(&out), ",i=4096"));
		/* an honest client with any password fails at the very end, as
		 * for a wrong password */
		char *final, *expect;
		const char *bare = users[i] + 3;
		assert_int_equal(mailtest_scram_client_final("pencil", "n,,", bare, text(&out),
							     &final, &expect),
				 0);
		assert_int_equal(step_str(s, final, &out), SASL_STEP_FAIL);
		assert_int_equal(out.len, 0);
		assert_failed(s, 0);
		assert_string_equal(sasl_server_error(s), "authentication failed");
		free(final);
		free(expect);
		sasl_server_free(&s);
	}
	/* the salt is stable for a name and differs between names */
	assert_string_equal(salts[0], salts[1]);
	assert_string_not_equal(salts[0], salts[2]);
	buf salt;
	buf_init(&salt);
	assert_int_equal(sasl_b64_decode(salts[0], strlen(salts[0]), 64, &salt), 0);
	assert_int_equal(salt.len, SASL_SCRAM_SALT_LEN);
	buf_deinit(&salt);
	for (int i = 0; i < 3; i++)
		free(salts[i]);

	/* another secret, another salt */
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256,
					 (const uint8_t *)"another secret, 16+ bytes", 25);
	assert_int_equal(step_str(s, users[0], &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_unknown(s, &out), SASL_STEP_CHALLENGE);
	char *other = attr_value(text(&out), ",s=");
	assert_string_not_equal(other, "");
	sasl_server_free(&s);
	s = scram_begin(users[0], 1, NULL, &out);
	char *again = attr_value(text(&out), ",s=");
	assert_string_not_equal(other, again);
	free(again);
	free(other);
	sasl_server_free(&s);

	/* no secret (or a short one): refused rather than predictable */
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)"short", 5);
	assert_int_equal(step_str(s, users[0], &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_unknown(s, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	buf_deinit(&out);
}

/* The RFC exchange up to server-first, then client_final: FAIL, with
 * syntax as given, and for the reason given unless NULL (the nonce and
 * channel binding checks must be what refuses: a proof over the tampered
 * message would verify). */
static void scram_final_expect_fail(const char *client_final, int syntax, const char *reason)
{
	struct sasl_scram_keys keys;
	rfc_keys("pencil", &keys);
	buf out;
	buf_init(&out);
	sasl_server *s = scram_begin(rfc_client_first, 1, &keys, &out);
	assert_int_equal(step_str(s, client_final, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	assert_failed(s, syntax);
	if (reason != NULL)
		assert_string_equal(sasl_server_error(s), reason);
	sasl_server_free(&s);
	buf_deinit(&out);
}

static void test_scram_client_final_refused(void **state)
{
	(void)state;
	static const char proof[] = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	static const char nonce[] = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
	char msg[512];
	/* the nonce tampered with, or only the client's part */
	snprintf(msg, sizeof msg, "c=biws,%sX,%s", nonce, proof);
	scram_final_expect_fail(msg, 0, "SCRAM: nonce mismatch");
	snprintf(msg, sizeof msg, "c=biws,r=rOprNGfwEbeRWgbNEkqO,%s", proof);
	scram_final_expect_fail(msg, 0, "SCRAM: nonce mismatch");
	snprintf(msg, sizeof msg, "c=biws,r=rOprNGfwEbeRWgbNEkqO%%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1,%s",
		 proof);
	scram_final_expect_fail(msg, 0, "SCRAM: nonce mismatch");
	/* c= not the gs2 header sent ("y,,"; "n,," without padding games) */
	snprintf(msg, sizeof msg, "c=eSws,%s,%s", nonce, proof);
	scram_final_expect_fail(msg, 0, "SCRAM: channel binding data differs from the gs2 header");
	snprintf(msg, sizeof msg, "c=,%s,%s", nonce, proof);
	scram_final_expect_fail(msg, 0, "SCRAM: channel binding data differs from the gs2 header");
	/* malformed: a proof of the wrong length or not base64, no proof,
	 * data after it, the attributes out of order */
	snprintf(msg, sizeof msg, "c=biws,%s,p=AAAA", nonce);
	scram_final_expect_fail(msg, 1, NULL);
	snprintf(msg, sizeof msg, "c=biws,%s,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ", nonce);
	scram_final_expect_fail(msg, 1, NULL);
	snprintf(msg, sizeof msg, "c=biws,%s", nonce);
	scram_final_expect_fail(msg, 1, NULL);
	snprintf(msg, sizeof msg, "c=biws,%s,%s,x=1", nonce, proof);
	scram_final_expect_fail(msg, 1, NULL);
	snprintf(msg, sizeof msg, "%s,c=biws,%s", nonce, proof);
	scram_final_expect_fail(msg, 1, NULL);
	snprintf(msg, sizeof msg, "c=biws,%s,,%s", nonce, proof);
	scram_final_expect_fail(msg, 1, NULL);
	scram_final_expect_fail("", 1, NULL);
	/* an extension before the proof is fine, but is part of the
	 * AuthMessage the RFC proof did not sign */
	snprintf(msg, sizeof msg, "c=biws,%s,x=ext,%s", nonce, proof);
	scram_final_expect_fail(msg, 0, "authentication failed");
}

/* client_first as the initial response: FAIL with syntax as given, or
 * NEED_SCRAM with the user name user when user is not NULL. */
static void scram_first_expect(const char *client_first, const char *user, int syntax)
{
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	enum sasl_step step = step_str(s, client_first, &out);
	if (user != NULL) {
		assert_int_equal(step, SASL_STEP_NEED_SCRAM);
		assert_string_equal(sasl_server_user(s), user);
	} else {
		assert_int_equal(step, SASL_STEP_FAIL);
		assert_failed(s, syntax);
	}
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	buf_deinit(&out);
}

static void test_scram_client_first(void **state)
{
	(void)state;
	scram_first_expect("n,,n=user,r=abc", "user", 0);
	scram_first_expect("y,,n=user,r=abc", "user", 0);
	scram_first_expect("n,a=user,n=user,r=abc", "user", 0);
	scram_first_expect("n,,n=user,r=abc,x=ext,y=more", "user", 0);
	scram_first_expect("n,,n=a=2Cb=3Dc,r=abc", "a,b=c", 0);
	scram_first_expect("n,,n=a=2cb=3dc,r=abc", "a,b=c", 0); /* ABNF: case-insensitive */
	scram_first_expect("n,,n=alice@a.test,r=!\"#$%&'()*+-./~", "alice@a.test", 0);

	/* refused, well-formed: channel binding, a mandatory extension, a
	 * different authorization identity */
	scram_first_expect("p=tls-unique,,n=user,r=abc", NULL, 0);
	scram_first_expect("p=tls-server-end-point,a=user,n=user,r=abc", NULL, 0);
	scram_first_expect("n,,m=ext,n=user,r=abc", NULL, 0);
	scram_first_expect("n,a=admin,n=user,r=abc", NULL, 0);

	/* malformed */
	const char *bad[] = {
		"", "n", "n,", "n,,", "x,,n=user,r=abc", "N,,n=user,r=abc", "n,n=user,r=abc",
		"n,a=,n=user,r=abc", "n,a=us=er,n=user,r=abc", "n,,n=,r=abc",
		"n,,n=us=er,r=abc", "n,,n=us=2Xr,r=abc", "n,,n=us=2,r=abc", "n,,n=us=,r=abc",
		"n,,n=user", "n,,n=user,", "n,,n=user,r=", "n,,n=user,r=abc,",
		"n,,n=user,r=abc,1=x", "n,,n=user,r=abc,x=", "n,,n=user,r=abc,x",
		"n,,r=abc,n=user", "n,,n=user,r=ab c", "n,,n=user,r=ab\x7f",
		"n,,user,r=abc", " n,,n=user,r=abc",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		scram_first_expect(bad[i], NULL, 1);

	/* a NUL byte anywhere */
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	assert_int_equal(step_bytes(s, "n,,n=us\0er,r=abc", 16, &out), SASL_STEP_FAIL);
	assert_failed(s, 1);
	sasl_server_free(&s);
	buf_deinit(&out);

	/* a user name longer than SASL_MAX_IDENTITY, also once decoded */
	char msg[2 * SASL_MAX_IDENTITY];
	size_t n = (size_t)snprintf(msg, sizeof msg, "n,,n=");
	memset(msg + n, 'x', SASL_MAX_IDENTITY);
	snprintf(msg + n + SASL_MAX_IDENTITY, sizeof msg - n - SASL_MAX_IDENTITY, ",r=abc");
	char want[SASL_MAX_IDENTITY + 1];
	memset(want, 'x', SASL_MAX_IDENTITY);
	want[SASL_MAX_IDENTITY] = '\0';
	scram_first_expect(msg, want, 0);
	memset(msg + n, 'x', SASL_MAX_IDENTITY + 1);
	snprintf(msg + n + SASL_MAX_IDENTITY + 1, sizeof msg - n - SASL_MAX_IDENTITY - 1,
		 ",r=abc");
	scram_first_expect(msg, NULL, 1);
}

/* A full exchange against the independent client: gs2 header, user,
 * password, salt from RAND_bytes; DONE and the server-final it expects. */
static void scram_roundtrip(const char *gs2_header, const char *bare, const char *user,
			    const char *password)
{
	uint8_t salt[SASL_SCRAM_SALT_LEN];
	struct sasl_scram_keys keys;
	assert_int_equal(RAND_bytes(salt, sizeof salt), 1);
	assert_int_equal(sasl_scram_keys_derive(password, strlen(password), salt, sizeof salt,
						SASL_SCRAM_ITERATIONS, &keys),
			 0);
	char *client_first = xasprintf("%s%s", gs2_header, bare);
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)test_secret,
					 strlen(test_secret));
	assert_int_equal(step_str(s, client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_string_equal(sasl_server_user(s), user);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_CHALLENGE);
	char *final, *expect;
	assert_int_equal(mailtest_scram_client_final(password, gs2_header, bare, text(&out), &final,
						     &expect),
			 0);
	assert_int_equal(step_str(s, final, &out), SASL_STEP_DONE);
	assert_string_equal(text(&out), expect);
	free(final);
	free(expect);
	free(client_first);
	sasl_server_free(&s);
	buf_deinit(&out);
}

static void test_scram_roundtrip(void **state)
{
	(void)state;
	scram_roundtrip("n,,", "n=alice@a.test,r=fyko+d2lbbFgONRv9qkxdawL", "alice@a.test",
			"correct horse");
	scram_roundtrip("y,,", "n=bob,r=x", "bob", "p");
	scram_roundtrip("n,a=b=2Co,", "n=b=2Co,r=nonce,x=ext", "b,o", "with,comma=and=");
	scram_roundtrip("y,a=u,", "n=u,r=12345", "u", "\xc3\xa9t\xc3\xa9");
}

static void test_scram_keys(void **state)
{
	(void)state;
	struct sasl_scram_keys keys, again;
	uint8_t salt[64] = {1, 2, 3};
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 3, 1, &keys), 0);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 3, 1, &again), 0);
	assert_memory_equal(keys.stored_key, again.stored_key, 32);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 3, 2, &again), 0);
	assert_memory_not_equal(keys.stored_key, again.stored_key, 32);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 64, 1, &keys), 0);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 0, 1, &keys), -1);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 65, 1, &keys), -1);
	assert_int_equal(sasl_scram_keys_derive("pw", 2, salt, 3, 0, &keys), -1);
	assert_int_equal(sasl_scram_keys_derive("pw", SASL_MAX_PASSWORD + 1, salt, 3, 1, &keys),
			 -1);

	/* stored keys that cannot be used fail the exchange */
	buf out;
	buf_init(&out);
	memset(&keys, 0, sizeof keys);
	keys.iterations = 4096;
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	assert_int_equal(step_str(s, rfc_client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_FAIL);
	assert_int_equal(out.len, 0);
	sasl_server_free(&s);
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	assert_int_equal(step_str(s, rfc_client_first, &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_keys(s, NULL, &out), SASL_STEP_FAIL);
	sasl_server_free(&s);

	/* without sasl_server_set_nonce: 24 random base64 characters */
	keys.salt_len = 4;
	s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, NULL, 0);
	assert_int_equal(step_str(s, "n,,n=u,r=abc", &out), SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_keys(s, &keys, &out), SASL_STEP_CHALLENGE);
	char *nonce = attr_value(text(&out), "r=");
	assert_int_equal(strlen(nonce), 3 + 24);
	assert_memory_equal(nonce, "abc", 3);
	free(nonce);
	sasl_server_free(&s);
	buf_deinit(&out);
}

/* ---- base64 ------------------------------------------------------------------- */

static void b64_expect(const char *in, const char *want)
{
	buf out;
	buf_init(&out);
	buf_append_str(&out, "x");
	int r = sasl_b64_decode(in, strlen(in), SASL_MAX_RESPONSE, &out);
	if (want == NULL) {
		assert_int_equal(r, -1);
		assert_int_equal(out.len, 1); /* left as it was */
	} else {
		assert_int_equal(r, 0);
		assert_int_equal(out.len, 1 + strlen(want));
		assert_memory_equal(out.data + 1, want, strlen(want));
	}
	buf_deinit(&out);
}

static void test_b64(void **state)
{
	(void)state;
	/* RFC 4648 section 10 */
	const char *vectors[][2] = {
		{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},     {"foo", "Zm9v"},
		{"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
	};
	buf out;
	buf_init(&out);
	for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
		buf_reset(&out);
		sasl_b64_encode((const uint8_t *)vectors[i][0], strlen(vectors[i][0]), &out);
		assert_string_equal(text(&out), vectors[i][1]);
		b64_expect(vectors[i][1], vectors[i][0]);
	}
	b64_expect("=", ""); /* the empty response */
	b64_expect("+/+/", "\xfb\xff\xbf");

	const char *bad[] = {
		"Zg=", "Zg", "Z", "Z===", "====", "==", "Zg=a", "Zh==", "Zm9=", "Zm8=Zm8=",
		"=Zm8", "Zm 8", "Zm8\n", "Zm8 ", " Zm8=", "Zm-_", "Zm8*", "Zg==Zg==", "Zm9v=",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		b64_expect(bad[i], NULL);
	assert_int_equal(sasl_b64_decode("Zm\0v", 4, 10, &out), -1);

	/* max is checked on the decoded length */
	buf_reset(&out);
	assert_int_equal(sasl_b64_decode("Zm9vYmFy", 8, 6, &out), 0);
	assert_int_equal(sasl_b64_decode("Zm9vYmFy", 8, 5, &out), -1);
	assert_int_equal(sasl_b64_decode("Zm9vYmE=", 8, 5, &out), 0);
	assert_int_equal(out.len, 11);

	/* every length round-trips */
	uint8_t bytes[64];
	assert_int_equal(RAND_bytes(bytes, sizeof bytes), 1);
	buf back;
	buf_init(&back);
	for (size_t n = 0; n <= sizeof bytes; n++) {
		buf_reset(&out);
		buf_reset(&back);
		sasl_b64_encode(bytes, n, &out);
		assert_int_equal(out.len, (n + 2) / 3 * 4);
		assert_int_equal(sasl_b64_decode((const char *)out.data, out.len, n, &back), 0);
		assert_int_equal(back.len, n);
		if (n > 0)
			assert_memory_equal(back.data, bytes, n);
	}
	buf_deinit(&back);
	buf_deinit(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mech_names),
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_plain_malformed),
		cmocka_unit_test(test_login),
		cmocka_unit_test(test_login_malformed),
		cmocka_unit_test(test_out_of_order),
		cmocka_unit_test(test_scram_rfc7677),
		cmocka_unit_test(test_scram_wrong_password),
		cmocka_unit_test(test_scram_unknown_user),
		cmocka_unit_test(test_scram_client_final_refused),
		cmocka_unit_test(test_scram_client_first),
		cmocka_unit_test(test_scram_roundtrip),
		cmocka_unit_test(test_scram_keys),
		cmocka_unit_test(test_b64),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
