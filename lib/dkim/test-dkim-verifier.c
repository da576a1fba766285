/* test-dkim-verifier.c: lib/dkim/dkim-verify.h. Messages signed by our
 * own signer (dkim-sign.h) and by an independent one (dkimpy, through
 * lib/dkim/dkim-sign.py under /usr/bin/python3); the keys are published
 * by a real DNS server (tests/support/dnszone.py on a free 127.0.0.1
 * port) and fetched by lib/dns. Each test makes its own loop, resolver
 * and verifier. Also the libopendkim behaviour dkim-verify-run.c relies
 * on, so a changed libopendkim is noticed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <dkim.h>

#include "auth-results.h"
#include "buf.h"
#include "dkim-keys.h"
#include "dkim-sign.h"
#include "dkim-verify.h"
#include "dns-fixture.h"
#include "dns.h"
#include "etcd-fixture.h"
#include "mail-error.h"
#include "xalloc.h"

#define T_DOMAIN "example.test"
#define PYTHON "/usr/bin/python3"

/* ---- keys, the zone, the DNS server (once for the group) ---- */

struct key {
	struct dkim_key k;
	char *txt;          /* "v=DKIM1; k=...; p=..." */
	char pem_path[PATH_MAX];
};

static struct fixture {
	char *tmp;
	mailtest_dns *dns;
	struct key rsa, ed, py_rsa, py_ed, small;
	dkim_signer *signer;
} fx;

static void make_key(struct key *k, enum dkim_alg alg, unsigned bits, const char *selector,
		     const char *domain)
{
	char *pub;
	const char *error;
	memset(k, 0, sizeof *k);
	if (dkim_key_generate(alg, bits, &k->k.pem, &k->k.pem_len, &pub, &error) != MAIL_OK)
		fail_msg("dkim_key_generate: %s", error);
	snprintf(k->k.domain, sizeof k->k.domain, "%s", domain);
	snprintf(k->k.selector, sizeof k->k.selector, "%s", selector);
	k->k.alg = alg;
	k->txt = dkim_txt_value(alg, pub);
	free(pub);
	snprintf(k->pem_path, sizeof k->pem_path, "%s/%s-%s.pem", fx.tmp, selector, domain);
	FILE *f = fopen(k->pem_path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(k->k.pem, 1, k->k.pem_len, f), k->k.pem_len);
	assert_int_equal(fclose(f), 0);
}

static void zone_add(buf *z, const char *selector, const char *domain, const char *value)
{
	char *line = dkim_txt_record(selector, domain, value);
	buf_printf(z, "%s\n", line);
	free(line);
}

static int group_setup(void **state)
{
	(void)state;
	fx.tmp = mailtest_tmpdir("dkim-verifier");
	make_key(&fx.rsa, DKIM_ALG_RSA_SHA256, 2048, "rsa1", T_DOMAIN);
	make_key(&fx.ed, DKIM_ALG_ED25519_SHA256, 0, "ed1", T_DOMAIN);
	make_key(&fx.py_rsa, DKIM_ALG_RSA_SHA256, 2048, "py1", T_DOMAIN);
	make_key(&fx.py_ed, DKIM_ALG_ED25519_SHA256, 0, "pyed", T_DOMAIN);
	make_key(&fx.small, DKIM_ALG_RSA_SHA256, 1024, "small", T_DOMAIN);
	struct dkim_sign_settings set = dkim_sign_settings_default();
	const char *error;
	if (dkim_signer_create(&set, &fx.signer, &error) != MAIL_OK)
		return -1;

	buf z;
	buf_init(&z);
	buf_append_str(&z, "$TTL 300\n");
	zone_add(&z, "rsa1", T_DOMAIN, fx.rsa.txt);
	zone_add(&z, "ed1", T_DOMAIN, fx.ed.txt);
	zone_add(&z, "py1", T_DOMAIN, fx.py_rsa.txt);
	zone_add(&z, "pyed", T_DOMAIN, fx.py_ed.txt);
	zone_add(&z, "small", T_DOMAIN, fx.small.txt);
	/* the same RSA key under other names */
	zone_add(&z, "rsa1", "other.test", fx.rsa.txt);
	zone_add(&z, "revoked", T_DOMAIN, "v=DKIM1; k=rsa; p=");
	zone_add(&z, "garbage", T_DOMAIN, "v=DKIM1; k=rsa; p=QUJDRA==");
	char *testing = xasprintf("v=DKIM1; t=y; %s", fx.rsa.txt + strlen("v=DKIM1; "));
	zone_add(&z, "testing", T_DOMAIN, testing);
	free(testing);
	zone_add(&z, "multi", T_DOMAIN, "not a key record");
	zone_add(&z, "multi", T_DOMAIN, fx.rsa.txt);
	char *huge = xasprintf("%s; n=%0*d", fx.rsa.txt, 700, 0);
	zone_add(&z, "huge", T_DOMAIN, huge);
	free(huge);
	buf_append(&z, "", 1);
	static const char *const args[] = { "--servfail", "rsa1._domainkey.broken.test",
					    "--drop", "rsa1._domainkey.slow.test", NULL };
	int r = mailtest_dns_start((const char *)z.data, args, &fx.dns);
	buf_deinit(&z);
	return r;
}

static void key_clear(struct key *k)
{
	dkim_key_clear(&k->k);
	free(k->txt);
}

static int group_teardown(void **state)
{
	(void)state;
	mailtest_dns_stop(&fx.dns);
	dkim_signer_destroy(&fx.signer);
	key_clear(&fx.rsa);
	key_clear(&fx.ed);
	key_clear(&fx.py_rsa);
	key_clear(&fx.py_ed);
	key_clear(&fx.small);
	mailtest_rmrf(fx.tmp);
	free(fx.tmp);
	return 0;
}

/* ---- messages ---- */

static const char msg_crlf[] = "From: Alice Example <alice@example.test>\r\n"
			       "To: bob@remote.test\r\n"
			       "Subject: Quarterly figures\r\n"
			       "Date: Tue, 2 Dec 2025 10:00:00 +0000\r\n"
			       "Message-ID: <q1@example.test>\r\n"
			       "\r\n"
			       "Hello Bob,\r\n"
			       "\r\n"
			       "the figures are attached.\r\n";

/* a + b (heap, NUL-terminated) */
static char *cat(const char *a, const char *b)
{
	return xasprintf("%s%s", a, b);
}

/* msg signed by our signer with keys */
static char *sign_own(const char *msg, const struct key *const *keys, size_t n)
{
	struct dkim_key k[4];
	for (size_t i = 0; i < n; i++)
		k[i] = keys[i]->k;
	char *fields;
	size_t flen;
	const char *error;
	if (dkim_signer_sign(fx.signer, msg, strlen(msg), k, n, "T", &fields, &flen, &error) !=
	    MAIL_OK)
		fail_msg("sign: %s", error);
	char *out = cat(fields, msg);
	free(fields);
	return out;
}

/* msg signed by dkimpy (dkim-sign.py) with key as domain; more: its
 * options, NULL-terminated */
static char *sign_py(const char *msg, const struct key *key, const char *domain, ...)
{
	char mpath[PATH_MAX], opath[PATH_MAX];
	snprintf(mpath, sizeof mpath, "%s/py-in.eml", fx.tmp);
	snprintf(opath, sizeof opath, "%s/py-out.eml", fx.tmp);
	FILE *f = fopen(mpath, "wb");
	assert_non_null(f);
	fputs(msg, f);
	assert_int_equal(fclose(f), 0);
	const char *argv[16] = { PYTHON, MAIL_SOURCE_DIR "/lib/dkim/dkim-sign.py", mpath,
				 key->pem_path, dkim_alg_name(key->k.alg), key->k.selector,
				 domain };
	size_t n = 7;
	va_list ap;
	va_start(ap, domain);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 15;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	char *envp[] = { "PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", NULL };
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, opath,
					 O_WRONLY | O_CREAT | O_TRUNC, 0600);
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, PYTHON, &fa, NULL, (char *const *)argv, envp), 0);
	posix_spawn_file_actions_destroy(&fa);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("dkim-sign.py failed (status %d)", status);
	f = fopen(opath, "rb");
	assert_non_null(f);
	buf b;
	buf_init(&b);
	char chunk[4096];
	for (size_t got; (got = fread(chunk, 1, sizeof chunk, f)) > 0;)
		buf_append(&b, chunk, got);
	fclose(f);
	buf_append(&b, "", 1);
	size_t len;
	return (char *)buf_steal(&b, &len);
}

/* The first 8 characters of the b= of the k-th DKIM-Signature of msg. */
static void b_prefix(const char *msg, int k, char out[9])
{
	const char *p = msg;
	for (int i = 0; i <= k; i++) {
		p = strstr(p, "DKIM-Signature:");
		assert_non_null(p);
		p++;
	}
	for (p = strstr(p, "b="); p != NULL; p = strstr(p + 1, "b=")) {
		if (p[-1] == ' ' || p[-1] == '\t' || p[-1] == ';')
			break;
	}
	assert_non_null(p);
	size_t n = 0;
	for (p += 2; n < 8 && *p != '\0'; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			out[n++] = *p;
	}
	out[n] = '\0';
}

/* replace the first old in s by new (heap) */
static char *replace(const char *s, const char *old, const char *new)
{
	const char *at = strstr(s, old);
	assert_non_null(at);
	return xasprintf("%.*s%s%s", (int)(at - s), s, new, at + strlen(old));
}

/* ---- one loop, resolver and verifier per test ---- */

struct t {
	uv_loop_t loop;
	dns_resolver *r;
	dkim_verifier *v;
};

static void t_start(struct t *t, const struct dkim_verify_settings *set)
{
	struct dns_settings dset = { .server = mailtest_dns_server(fx.dns), .timeout_ms = 300,
				     .tries = 1 };
	const char *error = NULL;
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (dns_resolver_create(&t->loop, &dset, &t->r, &error) < 0)
		fail_msg("dns_resolver_create: %s", error);
	if (dkim_verifier_create(&t->loop, t->r, set, &t->v, &error) != MAIL_OK)
		fail_msg("dkim_verifier_create: %s", error);
}

static void t_end(struct t *t)
{
	dkim_verifier_destroy(&t->v);
	assert_null(t->v);
	dns_resolver_destroy(&t->r);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

struct got {
	int called;
	int status;
	size_t count, unchecked;
	struct dkim_verify_sig sigs[8];
};

static void got_cb(int status, const struct dkim_verify_result *r, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	if (r != NULL) {
		g->count = r->count;
		g->unchecked = r->unchecked;
		for (size_t i = 0; i < r->count && i < 8; i++)
			g->sigs[i] = r->sigs[i];
	} else {
		assert_int_not_equal(status, MAIL_OK);
	}
}

static struct got verify_len(struct t *t, const char *msg, size_t len)
{
	struct got g = { 0 };
	dkim_verify_start(t->v, msg, len, "V1", got_cb, &g);
	assert_int_equal(g.called, 0); /* never from inside the start */
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(g.called, 1);
	return g;
}

static struct got verify(struct t *t, const char *msg)
{
	struct got g = verify_len(t, msg, strlen(msg));
	if (g.status != MAIL_OK)
		fail_msg("verify: status %d", g.status);
	return g;
}

static void want(const struct dkim_verify_sig *s, enum dkim_verify_status status,
		 enum dkim_verify_reason reason)
{
	if (s->status != status || s->reason != reason)
		fail_msg("d=%s s=%s: got %s (%s, %s), want %s (%s)", s->domain, s->selector,
			 dkim_verify_status_name(s->status), dkim_verify_reason_text(s->reason),
			 s->detail, dkim_verify_status_name(status),
			 dkim_verify_reason_text(reason));
}

/* ---- signed by us, signed by dkimpy ---- */

static void test_own_signer(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa, &fx.ed };
	char *m = sign_own(msg_crlf, keys, 2);
	struct got g = verify(&t, m);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.unchecked, 0);
	char b[9];
	for (int i = 0; i < 2; i++) {
		const struct dkim_verify_sig *s = &g.sigs[i];
		want(s, DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
		assert_string_equal(s->domain, T_DOMAIN);
		assert_string_equal(s->selector, keys[i]->k.selector);
		assert_string_equal(s->algorithm, dkim_alg_name(keys[i]->k.alg));
		assert_string_equal(s->identity, "");
		assert_string_equal(s->detail, "");
		b_prefix(m, i, b);
		assert_string_equal(s->b, b);
		assert_int_equal(s->length, -1);
		assert_int_equal(s->unsigned_bytes, 0);
	}
	assert_int_equal(g.sigs[0].key_bits, 2048);
	assert_int_equal(g.sigs[1].key_bits, 0);
	free(m);
	t_end(&t);
}

static void test_python_signer(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	char *m = sign_py(msg_crlf, &fx.py_rsa, T_DOMAIN, NULL);
	struct got g = verify(&t, m);
	assert_int_equal(g.count, 1);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	assert_string_equal(g.sigs[0].selector, "py1");
	assert_string_equal(g.sigs[0].identity, "@" T_DOMAIN); /* dkimpy writes i= */
	free(m);
	/* Ed25519, simple/simple, then RSA on top: both pass */
	char *m1 = sign_py(msg_crlf, &fx.py_ed, T_DOMAIN, "--canon", "simple/simple", NULL);
	m = sign_py(m1, &fx.py_rsa, T_DOMAIN, "--headers", "from:subject", NULL);
	g = verify(&t, m);
	assert_int_equal(g.count, 2);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	want(&g.sigs[1], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	assert_string_equal(g.sigs[0].algorithm, "rsa-sha256");
	assert_string_equal(g.sigs[1].algorithm, "ed25519-sha256");
	free(m1);
	free(m);
	t_end(&t);
}

/* a bare-LF copy of a message signed in CRLF form verifies */
static void test_bare_lf(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa };
	char *m = sign_own(msg_crlf, keys, 1);
	char *lf = xstrdup(m);
	size_t o = 0;
	for (size_t i = 0; m[i] != '\0'; i++) {
		if (m[i] != '\r')
			lf[o++] = m[i];
	}
	lf[o] = '\0';
	struct got g = verify(&t, lf);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	/* and without the last line end */
	lf[o - 1] = '\0';
	g = verify(&t, lf);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	free(lf);
	free(m);
	t_end(&t);
}

/* ---- failures ---- */

static void test_tampered(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa, &fx.ed };
	char *m = sign_own(msg_crlf, keys, 2);
	char *body = replace(m, "attached", "attacked");
	struct got g = verify(&t, body);
	want(&g.sigs[0], DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_HASH);
	want(&g.sigs[1], DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_HASH);
	char *subject = replace(m, "Quarterly", "Quarterlx");
	g = verify(&t, subject);
	want(&g.sigs[0], DKIM_VERIFY_FAIL, DKIM_VERIFY_SIGNATURE);
	want(&g.sigs[1], DKIM_VERIFY_FAIL, DKIM_VERIFY_SIGNATURE);
	assert_string_equal(g.sigs[0].detail, "signature verification failed");
	/* the dkimpy-signed one too */
	char *py = sign_py(msg_crlf, &fx.py_ed, T_DOMAIN, NULL);
	char *pyb = replace(py, "Hello", "Hallo");
	g = verify(&t, pyb);
	want(&g.sigs[0], DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_HASH);
	free(py);
	free(pyb);
	free(body);
	free(subject);
	free(m);
	t_end(&t);
}

/* l= is noted; what follows the signed part is counted */
static void test_length_tag(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	char *m = sign_py(msg_crlf, &fx.py_rsa, T_DOMAIN, "--length", NULL);
	struct got g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	size_t body = strlen(strstr(msg_crlf, "\r\n\r\n") + 4);
	assert_int_equal(g.sigs[0].length, (ssize_t)body);
	assert_int_equal(g.sigs[0].unsigned_bytes, 0);
	char *appended = cat(m, "Click here: http://evil.example/\r\n");
	g = verify(&t, appended);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	assert_int_equal(g.sigs[0].length, (ssize_t)body);
	assert_int_equal(g.sigs[0].unsigned_bytes, strlen("Click here: http://evil.example/\r\n"));
	struct authres_method am;
	char comment[64];
	dkim_verify_sig_authres(&g.sigs[0], &am, comment, sizeof comment);
	char want_comment[64];
	snprintf(want_comment, sizeof want_comment, "l=%zu, 34 body bytes unsigned", body);
	assert_string_equal(am.comment, want_comment);
	t_end(&t);

	struct dkim_verify_settings set = dkim_verify_settings_default();
	set.partial_body_policy = 1;
	t_start(&t, &set);
	g = verify(&t, appended);
	want(&g.sigs[0], DKIM_VERIFY_POLICY, DKIM_VERIFY_PARTIAL_BODY);
	g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	/* l= longer than the body: cut the body short */
	char *cut = replace(m, "the figures are attached.\r\n", "");
	g = verify(&t, cut);
	want(&g.sigs[0], DKIM_VERIFY_FAIL, DKIM_VERIFY_BODY_LENGTH);
	free(cut);
	free(appended);
	free(m);
	t_end(&t);
}

/* ---- the keys ---- */

/* sign msg_crlf with fx.rsa's key, under another selector or domain */
static char *sign_as(const char *selector, const char *domain)
{
	struct key k = fx.rsa;
	snprintf(k.k.selector, sizeof k.k.selector, "%s", selector);
	snprintf(k.k.domain, sizeof k.k.domain, "%s", domain);
	const struct key *keys[] = { &k };
	return sign_own(msg_crlf, keys, 1);
}

static void test_keys(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	static const struct {
		const char *selector, *domain;
		enum dkim_verify_status status;
		enum dkim_verify_reason reason;
	} cases[] = {
		{ "missing", T_DOMAIN, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_NO_KEY },
		{ "rsa1", "nowhere.test", DKIM_VERIFY_PERMERROR, DKIM_VERIFY_NO_KEY },
		{ "rsa1", "broken.test", DKIM_VERIFY_TEMPERROR, DKIM_VERIFY_DNS },
		{ "rsa1", "slow.test", DKIM_VERIFY_TEMPERROR, DKIM_VERIFY_DNS },
		{ "revoked", T_DOMAIN, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_KEY_REVOKED },
		{ "garbage", T_DOMAIN, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_BAD_KEY },
		{ "huge", T_DOMAIN, DKIM_VERIFY_PERMERROR, DKIM_VERIFY_BAD_KEY },
		{ "testing", T_DOMAIN, DKIM_VERIFY_POLICY, DKIM_VERIFY_TESTING },
		{ "multi", T_DOMAIN, DKIM_VERIFY_PASS, DKIM_VERIFY_OK },
		{ "rsa1", "other.test", DKIM_VERIFY_PASS, DKIM_VERIFY_OK },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *m = sign_as(cases[i].selector, cases[i].domain);
		struct got g = verify(&t, m);
		assert_int_equal(g.count, 1);
		assert_string_equal(g.sigs[0].selector, cases[i].selector);
		assert_string_equal(g.sigs[0].domain, cases[i].domain);
		want(&g.sigs[0], cases[i].status, cases[i].reason);
		free(m);
	}
	/* one message, a good signature beside one whose lookup fails
	 * temporarily: the good one still passes */
	char *m1 = sign_as("rsa1", "broken.test");
	const struct key *keys[] = { &fx.ed };
	char *m = sign_own(m1, keys, 1);
	struct got g = verify(&t, m);
	assert_int_equal(g.count, 2);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	want(&g.sigs[1], DKIM_VERIFY_TEMPERROR, DKIM_VERIFY_DNS);
	free(m1);
	free(m);
	t_end(&t);

	/* RSA under min_rsa_bits */
	struct dkim_verify_settings set = dkim_verify_settings_default();
	set.min_rsa_bits = 2048;
	t_start(&t, &set);
	const struct key *small[] = { &fx.small };
	m = sign_own(msg_crlf, small, 1);
	g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_POLICY, DKIM_VERIFY_KEY_TOO_SMALL);
	free(m);
	t_end(&t);
	t_start(&t, NULL);
	m = sign_own(msg_crlf, small, 1);
	g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	assert_int_equal(g.sigs[0].key_bits, 1024);
	free(m);
	t_end(&t);
}

/* ---- signature fields ---- */

static void test_syntax(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa };
	char *good = sign_own(msg_crlf, keys, 1);
	/* a field missing d= (libopendkim refuses it) above a good one */
	char *m = cat("DKIM-Signature: v=1; a=rsa-sha256; s=x; h=from; bh=AAAA; b=QmFkU2ln\r\n",
		      good);
	struct got g = verify(&t, m);
	assert_int_equal(g.count, 2);
	want(&g.sigs[0], DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX);
	assert_string_equal(g.sigs[0].selector, "x");
	assert_string_equal(g.sigs[0].domain, "");
	assert_string_equal(g.sigs[0].b, "QmFkU2ln");
	want(&g.sigs[1], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	free(m);
	/* an unknown algorithm; h= without From; rsa-sha1 (not looked up) */
	static const struct {
		const char *from, *to;
		enum dkim_verify_status status;
		enum dkim_verify_reason reason;
	} cases[] = {
		{ "a=rsa-sha256", "a=rsa-sha512", DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX },
		{ "h=From:To:Subject:Date:Message-ID:from:", "h=To:Subject:Date:Message-ID:",
		  DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX },
		{ "a=rsa-sha256", "a=rsa-sha1", DKIM_VERIFY_POLICY, DKIM_VERIFY_ALGORITHM },
		{ "v=1;", "v=2;", DKIM_VERIFY_PERMERROR, DKIM_VERIFY_SYNTAX },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = replace(good, cases[i].from, cases[i].to);
		g = verify(&t, m);
		assert_int_equal(g.count, 1);
		want(&g.sigs[0], cases[i].status, cases[i].reason);
		assert_string_equal(g.sigs[0].selector, "rsa1");
		free(m);
	}
	/* no From at all: the header is not verifiable */
	m = replace(good, "From: Alice Example <alice@example.test>\r\n", "");
	g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_PERMERROR, DKIM_VERIFY_MESSAGE);
	free(m);
	/* unsigned */
	g = verify(&t, msg_crlf);
	assert_int_equal(g.count, 0);
	free(good);
	t_end(&t);
}

/* t= ahead of the clock (with more than libopendkim's 300 s of drift) */
static void test_future(void **state)
{
	(void)state;
	struct dkim_sign_settings sset = dkim_sign_settings_default();
	sset.fixed_time = (uint64_t)time(NULL) + 86400;
	dkim_signer *future;
	const char *error;
	assert_int_equal(dkim_signer_create(&sset, &future, &error), MAIL_OK);
	char *fields;
	size_t flen;
	assert_int_equal(dkim_signer_sign(future, msg_crlf, strlen(msg_crlf), &fx.rsa.k, 1, "T",
					  &fields, &flen, &error),
			 MAIL_OK);
	char *m = cat(fields, msg_crlf);
	free(fields);
	dkim_signer_destroy(&future);
	struct t t;
	t_start(&t, NULL);
	struct got g = verify(&t, m);
	want(&g.sigs[0], DKIM_VERIFY_NEUTRAL, DKIM_VERIFY_FUTURE);
	assert_string_equal(g.sigs[0].detail, "signature timestamp in the future");
	t_end(&t);
	free(m);
}

/* ---- limits ---- */

static void test_limits(void **state)
{
	(void)state;
	struct dkim_verify_settings set = dkim_verify_settings_default();
	set.max_signatures = 2;
	set.max_message_bytes = 4096;
	set.max_header_fields = 16;
	struct t t;
	t_start(&t, &set);
	const struct key *keys[] = { &fx.rsa, &fx.ed, &fx.small };
	char *m = sign_own(msg_crlf, keys, 3);
	struct got g = verify(&t, m);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.unchecked, 1);
	want(&g.sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	want(&g.sigs[1], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	free(m);

	buf b;
	buf_init(&b);
	buf_append_str(&b, msg_crlf);
	while (b.len <= 4096)
		buf_append_str(&b, "more body text\r\n");
	g = verify_len(&t, (const char *)b.data, b.len);
	assert_int_equal(g.status, MAIL_ERR_TOO_BIG);
	buf_reset(&b);
	for (int i = 0; i < 17; i++)
		buf_printf(&b, "X-Field-%d: v\r\n", i);
	buf_append_str(&b, msg_crlf);
	g = verify_len(&t, (const char *)b.data, b.len);
	assert_int_equal(g.status, MAIL_ERR_LIMIT);
	g = verify_len(&t, "Subject: x\r\nno colon\r\n\r\nbody\r\n", 31);
	assert_int_equal(g.status, MAIL_ERR_PARAMS);
	g = verify_len(&t, "Subject: x\0y\r\n\r\nbody\r\n", 22);
	assert_int_equal(g.status, MAIL_ERR_PARAMS);
	g = verify_len(&t, " starts folded\r\n\r\n", 18);
	assert_int_equal(g.status, MAIL_ERR_PARAMS);
	buf_deinit(&b);
	t_end(&t);

	struct dkim_verifier *v;
	const char *error;
	set = dkim_verify_settings_default();
	set.max_signatures = 0;
	assert_int_equal(dkim_verifier_create(NULL, NULL, &set, &v, &error), MAIL_ERR_PARAMS);
	set = dkim_verify_settings_default();
	set.min_rsa_bits = 512;
	assert_int_equal(dkim_verifier_create(NULL, NULL, &set, &v, &error), MAIL_ERR_PARAMS);
	set = dkim_verify_settings_default();
	set.max_header_fields = 100001;
	assert_int_equal(dkim_verifier_create(NULL, NULL, &set, &v, &error), MAIL_ERR_PARAMS);
	set = dkim_verify_settings_default();
	set.max_message_bytes = 100;
	assert_int_equal(dkim_verifier_create(NULL, NULL, &set, &v, &error), MAIL_ERR_PARAMS);
}

/* ---- lifetimes ---- */

static void never_cb(int status, const struct dkim_verify_result *r, void *arg)
{
	(void)status;
	(void)r;
	(void)arg;
	fail_msg("a cancelled job answered");
}

static void test_cancel(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa };
	char *m = sign_own(msg_crlf, keys, 1);
	/* on the pool */
	dkim_verify_job *j = dkim_verify_start(t.v, m, strlen(m), "C1", never_cb, NULL);
	dkim_verify_cancel(&j);
	assert_null(j);
	dkim_verify_cancel(&j);
	/* while its key lookup waits (a dropped query): run the loop until
	 * the header step is done, then cancel */
	char *slow = sign_as("rsa1", "slow.test");
	j = dkim_verify_start(t.v, slow, strlen(slow), "C2", never_cb, NULL);
	for (int i = 0; i < 50 && dns_resolver_pending(t.r) == 0; i++)
		uv_run(&t.loop, UV_RUN_ONCE);
	assert_int_equal(dns_resolver_pending(t.r), 1);
	dkim_verify_cancel(&j);
	assert_int_equal(dns_resolver_pending(t.r), 0);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	/* many at once, some cancelled, the rest answered */
	struct got g[20];
	dkim_verify_job *jobs[20];
	memset(g, 0, sizeof g);
	for (int i = 0; i < 20; i++)
		jobs[i] = dkim_verify_start(t.v, m, strlen(m), "C3", got_cb, &g[i]);
	for (int i = 0; i < 20; i += 3)
		dkim_verify_cancel(&jobs[i]);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(g[i].called, i % 3 == 0 ? 0 : 1);
		if (i % 3 != 0)
			want(&g[i].sigs[0], DKIM_VERIFY_PASS, DKIM_VERIFY_OK);
	}
	/* pending jobs die with the verifier, silently, in every phase */
	dkim_verify_start(t.v, m, strlen(m), "C4", never_cb, NULL);
	dkim_verify_start(t.v, slow, strlen(slow), "C5", never_cb, NULL);
	uv_run(&t.loop, UV_RUN_NOWAIT);
	dkim_verify_start(t.v, m, strlen(m), "C6", never_cb, NULL);
	t_end(&t);
	free(slow);
	free(m);
}

/* the verifier destroyed from a callback */
static void destroy_cb(int status, const struct dkim_verify_result *r, void *arg)
{
	(void)status;
	(void)r;
	struct t *t = arg;
	dkim_verifier_destroy(&t->v);
}

static void test_destroy_from_callback(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa };
	char *m = sign_own(msg_crlf, keys, 1);
	dkim_verify_start(t.v, m, strlen(m), "D1", destroy_cb, &t);
	char *slow = sign_as("rsa1", "slow.test");
	dkim_verify_start(t.v, slow, strlen(slow), "D2", never_cb, NULL);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_null(t.v);
	t_end(&t);
	free(slow);
	free(m);
}

/* ---- Authentication-Results ---- */

static void test_authres(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	const struct key *keys[] = { &fx.rsa };
	char *m = sign_own(msg_crlf, keys, 1);
	char *tampered = replace(m, "attached", "attacked");
	struct got g = verify(&t, m), g2 = verify(&t, tampered);
	struct authres_method am[3];
	char comments[3][64];
	dkim_verify_sig_authres(&g.sigs[0], &am[0], comments[0], sizeof comments[0]);
	dkim_verify_sig_authres(&g2.sigs[0], &am[1], comments[1], sizeof comments[1]);
	dkim_verify_sig_authres(NULL, &am[2], comments[2], sizeof comments[2]);
	char *field;
	size_t len;
	const char *error;
	assert_int_equal(authres_compose("mx.example.net", am, 3, &field, &len, &error), MAIL_OK);
	char b[9], want_field[512];
	b_prefix(m, 0, b);
	int quote = strpbrk(b, "/=") != NULL; /* tspecials; + is a token char */
	snprintf(want_field, sizeof want_field,
		 "Authentication-Results: mx.example.net;\r\n"
		 "\tdkim=pass header.d=example.test header.s=rsa1 header.a=rsa-sha256\r\n"
		 "\theader.b=%s%s%s;\r\n"
		 "\tdkim=fail (bad body hash) header.d=example.test header.s=rsa1\r\n"
		 "\theader.a=rsa-sha256 header.b=%s%s%s;\r\n"
		 "\tdkim=none\r\n",
		 quote ? "\"" : "", b, quote ? "\"" : "", quote ? "\"" : "", b, quote ? "\"" : "");
	assert_string_equal(field, want_field);
	free(field);
	free(tampered);
	free(m);
	t_end(&t);
}

/* ---- libopendkim 2.11 as dkim-verify-run.c relies on it ---- */

static const char *quirk_record;

static DKIM_CBSTAT quirk_key_cb(DKIM *d, DKIM_SIGINFO *si, u_char *buf, size_t len)
{
	(void)d;
	(void)si;
	if (quirk_record == NULL)
		return DKIM_CBSTAT_TRYAGAIN;
	snprintf((char *)buf, len, "%s", quirk_record);
	return DKIM_CBSTAT_CONTINUE;
}

static void test_libopendkim_quirks(void **state)
{
	(void)state;
	const struct key *keys[] = { &fx.rsa };
	char *m = sign_own(msg_crlf, keys, 1);
	DKIM_LIB *lib = dkim_init(NULL, NULL);
	dkim_set_key_lookup(lib, quirk_key_cb);
	/* a key callback saying "try again" sinks the whole handle */
	quirk_record = NULL;
	DKIM_STAT st;
	DKIM *d = dkim_verify(lib, (const u_char *)"Q", NULL, &st);
	st = dkim_chunk(d, (u_char *)m, strlen(m));
	if (st == DKIM_STAT_OK)
		st = dkim_chunk(d, NULL, 0);
	assert_int_equal(st, DKIM_STAT_CBTRYAGAIN);
	dkim_free(d);
	/* dkim_header refuses a signature field missing d= with SYNTAX */
	d = dkim_verify(lib, (const u_char *)"Q", NULL, &st);
	const char bad[] = "DKIM-Signature: v=1; a=rsa-sha256; s=x; h=from; bh=AAAA; b=AAAA";
	assert_int_equal(dkim_header(d, (u_char *)bad, strlen(bad)), DKIM_STAT_SYNTAX);
	dkim_free(d);
	/* a body hash mismatch keeps the PASSED flag, bh MISMATCH */
	quirk_record = fx.rsa.txt;
	char *t = replace(m, "attached", "attacked");
	d = dkim_verify(lib, (const u_char *)"Q", NULL, &st);
	dkim_chunk(d, (u_char *)t, strlen(t));
	dkim_chunk(d, NULL, 0);
	assert_int_equal(dkim_eom(d, NULL), DKIM_STAT_BADSIG);
	DKIM_SIGINFO *si = dkim_getsignature(d);
	assert_true(dkim_sig_getflags(si) & DKIM_SIGFLAG_PASSED);
	assert_int_equal(dkim_sig_getbh(si), DKIM_SIGBH_MISMATCH);
	dkim_free(d);
	dkim_close(lib);
	free(t);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_own_signer),
		cmocka_unit_test(test_python_signer),
		cmocka_unit_test(test_bare_lf),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_length_tag),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_future),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_destroy_from_callback),
		cmocka_unit_test(test_authres),
		cmocka_unit_test(test_libopendkim_quirks),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
