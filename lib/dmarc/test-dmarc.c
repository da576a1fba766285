/* test-dmarc.c: lib/dmarc/dmarc.h against a real DNS server
 * (tests/support/dnszone.py on a free 127.0.0.1 port) holding the policy
 * records, with Debian's Public Suffix List. Each test makes its own
 * loop, resolver and checker. One test shows the libopendmarc 1.4.2
 * behaviour that dmarc.h works around, so a fixed libopendmarc is noticed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <opendmarc/dmarc.h>

#include "auth-results.h"
#include "dmarc.h"
#include "dns-fixture.h"
#include "dns.h"
#include "mail-error.h"
#include "xalloc.h"

/* Names under .test use the PSL's default rule; those under .co.uk a
 * listed suffix. */
static const char zone[] =
	"$TTL 300\n"
	"_dmarc.reject.test. IN TXT \"v=DMARC1; p=reject; rua=mailto:d@reject.test\"\n"
	"_dmarc.quarantine.test. IN TXT \"v=DMARC1; p=quarantine\"\n"
	"_dmarc.monitor.test. IN TXT \"v=DMARC1; p=none\"\n"
	"_dmarc.strict.test. IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
	"_dmarc.strict.co.uk. IN TXT \"v=DMARC1; p=reject; adkim=s; aspf=s\"\n"
	"_dmarc.parent.test. IN TXT \"v=DMARC1; p=reject; sp=none\"\n"
	"_dmarc.pct0.test. IN TXT \"v=DMARC1; p=reject; pct=0\"\n"
	"_dmarc.pct0q.test. IN TXT \"v=DMARC1; p=quarantine; pct=0\"\n"
	"_dmarc.pct50.test. IN TXT \"v=DMARC1; p=reject; pct=50\"\n"
	"_dmarc.broken.test. IN TXT \"v=DMARC1; p=bogus\"\n"
	"_dmarc.badpct.test. IN TXT \"v=DMARC1; p=reject; pct=abc\"\n"
	"_dmarc.twice.test. IN TXT \"v=DMARC1; p=reject\"\n"
	"_dmarc.twice.test. IN TXT \"v=DMARC1; p=none\"\n"
	"_dmarc.mixed.test. IN TXT \"not a policy\"\n"
	"_dmarc.mixed.test. IN TXT \"v=DMARC1;\" \" p=quarantine\"\n"
	"_dmarc.example.co.uk. IN TXT \"v=DMARC1; p=reject; sp=quarantine\"\n"
	"_dmarc.own.example.co.uk. IN TXT \"v=DMARC1; p=none\"\n"
	"www.norecord.test. IN A 127.0.0.1\n"
	"_dmarc.x.orgfail.test. IN TXT \"v=spf1 -all\"\n";

static mailtest_dns *dns;

static int group_setup(void **state)
{
	(void)state;
	static const char *const args[] = { "--servfail", "_dmarc.servfail.test",
					    "--servfail", "_dmarc.orgfail.test",
					    "--drop", "_dmarc.slow.test", NULL };
	return mailtest_dns_start(zone, args, &dns);
}

static int group_teardown(void **state)
{
	(void)state;
	mailtest_dns_stop(&dns);
	return 0;
}

/* ---- one loop, resolver and checker per test ---- */

struct t {
	uv_loop_t loop;
	dns_resolver *r;
	dmarc_checker *c;
};

static void t_start(struct t *t, uint64_t seed)
{
	struct dns_settings dset = { .server = mailtest_dns_server(dns), .timeout_ms = 500,
				     .tries = 1 };
	const char *error = NULL;
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (dns_resolver_create(&t->loop, &dset, &t->r, &error) < 0)
		fail_msg("dns_resolver_create: %s", error);
	struct dmarc_settings set = dmarc_settings_default();
	set.seed = seed;
	if (dmarc_checker_create(&t->loop, t->r, &set, &t->c, &error) != MAIL_OK)
		fail_msg("dmarc_checker_create: %s", error);
}

static void t_end(struct t *t)
{
	dmarc_checker_destroy(&t->c);
	assert_null(t->c);
	dns_resolver_destroy(&t->r);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

struct got {
	int called;
	struct dmarc_outcome o;
};

static void got_cb(const struct dmarc_outcome *o, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->o = *o;
}

/* Check req on t and return the outcome (the loop runs until the answer). */
static struct dmarc_outcome check(struct t *t, const struct dmarc_request *req)
{
	struct got g = { 0 };
	dmarc_check_start(t->c, req, got_cb, &g);
	assert_int_equal(g.called, 0); /* never from inside the start */
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(g.called, 1);
	return g.o;
}

/* One From domain, an SPF result for spf_domain and one DKIM result. */
static struct dmarc_outcome check1(struct t *t, const char *from, enum dmarc_auth spf,
				   const char *spf_domain, enum dmarc_auth dkim,
				   const char *dkim_domain)
{
	struct dmarc_dkim d = { dkim_domain, dkim };
	struct dmarc_request req = { .from_domain = from, .spf = spf, .spf_domain = spf_domain,
				     .dkim = &d, .n_dkim = dkim_domain != NULL ? 1 : 0 };
	return check(t, &req);
}

#define UNALIGNED_SPF DMARC_AUTH_PASS, "other.example"
#define UNALIGNED_DKIM DMARC_AUTH_PASS, "other.example"

/* ---- the policies ---- */

static void test_reject(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "Reject.Test.", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.policy, DMARC_DISP_REJECT);
	assert_int_equal(o.disposition, DMARC_DISP_REJECT);
	assert_int_equal(o.pct, 100);
	assert_false(o.sampled_out || o.policy_is_sp || o.dkim_aligned || o.spf_aligned);
	assert_int_equal(o.adkim, 'r');
	assert_int_equal(o.aspf, 'r');
	assert_string_equal(o.from_domain, "reject.test");
	assert_string_equal(o.record_domain, "reject.test");
	assert_string_equal(o.reason, "no aligned pass");

	/* fail and softfail, unaligned or failed DKIM: still fail */
	o = check1(&t, "reject.test", DMARC_AUTH_FAIL, "reject.test", DMARC_AUTH_FAIL,
		   "reject.test");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.disposition, DMARC_DISP_REJECT);
	t_end(&t);
}

static void test_quarantine_and_none(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "quarantine.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.disposition, DMARC_DISP_QUARANTINE);
	o = check1(&t, "monitor.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.policy, DMARC_DISP_NONE);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	t_end(&t);
}

static void test_aligned_dkim_only(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	/* relaxed: a subdomain's signature aligns; SPF failed */
	struct dmarc_outcome o = check1(&t, "reject.test", DMARC_AUTH_FAIL, "reject.test",
					DMARC_AUTH_PASS, "Mail.Reject.Test");
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	assert_true(o.dkim_aligned);
	assert_false(o.spf_aligned);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	assert_string_equal(o.reason, "aligned dkim pass");
	/* one of several signatures is enough */
	struct dmarc_dkim d[3] = { { "other.example", DMARC_AUTH_PASS },
				   { "reject.test", DMARC_AUTH_FAIL },
				   { "reject.test", DMARC_AUTH_PASS } };
	struct dmarc_request req = { .from_domain = "reject.test", .spf = DMARC_AUTH_NONE,
				     .dkim = d, .n_dkim = 3 };
	o = check(&t, &req);
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	t_end(&t);
}

static void test_aligned_spf_only(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "reject.test", DMARC_AUTH_PASS, "bounce.reject.test",
					DMARC_AUTH_FAIL, "reject.test");
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	assert_true(o.spf_aligned);
	assert_false(o.dkim_aligned);
	assert_string_equal(o.reason, "aligned spf pass");
	t_end(&t);
}

/* adkim=s / aspf=s: only the From domain itself aligns (libopendmarc 1.4.2
 * would pass the subdomains). */
static void test_strict(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "strict.test", DMARC_AUTH_PASS, "mail.strict.test",
					DMARC_AUTH_PASS, "mail.strict.test");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.adkim, 's');
	assert_int_equal(o.aspf, 's');
	o = check1(&t, "strict.test", DMARC_AUTH_FAIL, "x.example", DMARC_AUTH_PASS,
		   "strict.test");
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	o = check1(&t, "strict.test", DMARC_AUTH_PASS, "STRICT.TEST.", DMARC_AUTH_NONE, NULL);
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	/* the same under a listed suffix (where libopendmarc's own check
	 * goes wrong) */
	o = check1(&t, "strict.co.uk", DMARC_AUTH_PASS, "mail.strict.co.uk", DMARC_AUTH_PASS,
		   "mail.strict.co.uk");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.disposition, DMARC_DISP_REJECT);
	t_end(&t);
}

/* A public suffix above the From domain never aligns (libopendmarc 1.4.2
 * aligns d=co.uk with example.co.uk). */
static void test_suffix_never_aligns(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "example.co.uk", DMARC_AUTH_PASS, "co.uk",
					DMARC_AUTH_PASS, "co.uk");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	o = check1(&t, "reject.test", DMARC_AUTH_NONE, NULL, DMARC_AUTH_PASS, "test");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	/* a sibling under the same organizational domain does */
	o = check1(&t, "news.example.co.uk", DMARC_AUTH_NONE, NULL, DMARC_AUTH_PASS,
		   "mail.example.co.uk");
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	t_end(&t);
}

/* sp= for a subdomain without a record of its own, from the
 * organizational domain's record; p= for one that has its own. */
static void test_subdomain_sp(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "news.example.co.uk", UNALIGNED_SPF,
					UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_string_equal(o.record_domain, "example.co.uk");
	assert_string_equal(o.org_domain, "example.co.uk");
	assert_true(o.policy_is_sp);
	assert_int_equal(o.policy, DMARC_DISP_QUARANTINE);
	assert_int_equal(o.disposition, DMARC_DISP_QUARANTINE);
	/* the organizational domain itself: p */
	o = check1(&t, "example.co.uk", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_false(o.policy_is_sp);
	assert_int_equal(o.disposition, DMARC_DISP_REJECT);
	/* a subdomain with its own record: its p */
	o = check1(&t, "own.example.co.uk", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_string_equal(o.record_domain, "own.example.co.uk");
	assert_false(o.policy_is_sp);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	/* .test has no PSL rule: the default rule "*" makes parent.test the
	 * organizational domain of a.b.parent.test */
	o = check1(&t, "a.b.parent.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_string_equal(o.record_domain, "parent.test");
	assert_true(o.policy_is_sp);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	/* a subdomain of a domain whose record has no sp: p */
	o = check1(&t, "sub.reject.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_false(o.policy_is_sp);
	assert_int_equal(o.disposition, DMARC_DISP_REJECT);
	t_end(&t);
}

static void test_pct(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 7);
	/* pct=0: every fail sampled out, one step milder */
	struct dmarc_outcome o = check1(&t, "pct0.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.pct, 0);
	assert_true(o.sampled_out);
	assert_int_equal(o.policy, DMARC_DISP_REJECT);
	assert_int_equal(o.disposition, DMARC_DISP_QUARANTINE);
	o = check1(&t, "pct0q.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	/* a pass is never sampled */
	o = check1(&t, "pct0.test", DMARC_AUTH_PASS, "pct0.test", DMARC_AUTH_NONE, NULL);
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	assert_false(o.sampled_out);

	/* pct=50: about half (the record is evaluated without DNS here) */
	const char *rec = "v=DMARC1; p=reject; pct=50";
	struct dmarc_request req = { .from_domain = "pct50.test", .spf = DMARC_AUTH_FAIL,
				     .spf_domain = "pct50.test" };
	int rejected = 0;
	for (int i = 0; i < 400; i++) {
		dmarc_evaluate(t.c, &req, rec, strlen(rec), "pct50.test", &o);
		assert_int_equal(o.result, DMARC_RESULT_FAIL);
		assert_int_equal(o.sampled_out, o.disposition == DMARC_DISP_QUARANTINE);
		rejected += o.disposition == DMARC_DISP_REJECT;
	}
	assert_in_range(rejected, 140, 260);
	t_end(&t);
}

static void test_no_record(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "norecord.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_NONE);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	assert_int_equal(o.pct, -1);
	assert_string_equal(o.record_domain, "");
	assert_string_equal(o.reason, "no record");
	/* through the organizational domain, which has none either */
	o = check1(&t, "www.norecord.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_NONE);
	/* two policy records: discovery ends (RFC 7489 6.6.3) */
	o = check1(&t, "twice.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_NONE);
	assert_string_equal(o.reason, "more than one record");
	/* a TXT that is no policy beside one that is (in two strings) */
	o = check1(&t, "mixed.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	assert_int_equal(o.disposition, DMARC_DISP_QUARANTINE);
	t_end(&t);
}

static void test_temperror(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "servfail.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_TEMPERROR);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	assert_string_equal(o.reason, "dns temporary failure");
	/* the From domain has no record, its organizational domain SERVFAILs */
	o = check1(&t, "x.orgfail.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_TEMPERROR);
	/* never answered: the resolver's timeout */
	o = check1(&t, "slow.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_TEMPERROR);
	/* p=reject, nothing passed, an aligned DKIM signature's key lookup
	 * failed temporarily: not a fail */
	o = check1(&t, "reject.test", DMARC_AUTH_FAIL, "reject.test", DMARC_AUTH_TEMPERROR,
		   "reject.test");
	assert_int_equal(o.result, DMARC_RESULT_TEMPERROR);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	o = check1(&t, "reject.test", DMARC_AUTH_TEMPERROR, "reject.test", DMARC_AUTH_NONE,
		   NULL);
	assert_int_equal(o.result, DMARC_RESULT_TEMPERROR);
	/* an unaligned temporary error changes nothing */
	o = check1(&t, "reject.test", DMARC_AUTH_TEMPERROR, "other.example",
		   DMARC_AUTH_TEMPERROR, "other.example");
	assert_int_equal(o.result, DMARC_RESULT_FAIL);
	/* and an aligned pass wins over it */
	o = check1(&t, "reject.test", DMARC_AUTH_TEMPERROR, "reject.test", DMARC_AUTH_PASS,
		   "reject.test");
	assert_int_equal(o.result, DMARC_RESULT_PASS);
	t_end(&t);
}

static void test_permerror(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "broken.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	assert_int_equal(o.disposition, DMARC_DISP_NONE);
	assert_string_equal(o.reason, "record syntax");
	o = check1(&t, "badpct.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	/* a From domain that is none: answered later, from the loop */
	o = check1(&t, "bad..domain", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	assert_string_equal(o.reason, "From domain is not a domain name");
	o = check1(&t, "", UNALIGNED_SPF, UNALIGNED_DKIM);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	/* records too long, or with a NUL (without DNS) */
	struct dmarc_request req = { .from_domain = "reject.test" };
	char big[3000];
	snprintf(big, sizeof big, "v=DMARC1; p=reject; rua=mailto:%0*d@reject.test", 2900, 0);
	dmarc_evaluate(t.c, &req, big, strlen(big), "reject.test", &o);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	assert_string_equal(o.reason, "record too long");
	dmarc_evaluate(t.c, &req, "v=DMARC1; p=reject\0", 19, "reject.test", &o);
	assert_int_equal(o.result, DMARC_RESULT_PERMERROR);
	/* no record given: none */
	dmarc_evaluate(t.c, &req, NULL, 0, NULL, &o);
	assert_int_equal(o.result, DMARC_RESULT_NONE);
	t_end(&t);
}

/* ---- lifetimes ---- */

static void never_cb(const struct dmarc_outcome *o, void *arg)
{
	(void)o;
	(void)arg;
	fail_msg("a cancelled check answered");
}

static void test_cancel_and_destroy(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_request req = { .from_domain = "slow.test" };
	dmarc_check *k = dmarc_check_start(t.c, &req, never_cb, NULL);
	dmarc_check_cancel(&k);
	assert_null(k);
	dmarc_check_cancel(&k); /* NULL is fine */
	/* pending checks die with their checker, silently */
	dmarc_check_start(t.c, &req, never_cb, NULL);
	req.from_domain = "reject.test";
	dmarc_check_start(t.c, &req, never_cb, NULL);
	t_end(&t);
}

/* Settings, and a second checker with another PSL. */
static void test_settings(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	dmarc_checker *c2;
	const char *error;
	struct dmarc_settings set = dmarc_settings_default();
	set.max_record_bytes = 10;
	assert_int_equal(dmarc_checker_create(&t.loop, t.r, &set, &c2, &error), MAIL_ERR_PARAMS);
	set = dmarc_settings_default();
	set.psl_path = "/nonexistent/psl.dat";
	assert_int_equal(dmarc_checker_create(&t.loop, t.r, &set, &c2, &error), MAIL_ERR_PARAMS);
	set.psl_path = DMARC_PSL_DEFAULT;
	assert_int_equal(dmarc_checker_create(&t.loop, t.r, &set, &c2, &error), MAIL_OK);
	dmarc_checker_destroy(&c2);
	t_end(&t);
	/* no checker left: the PSL was unloaded; a missing file fails */
	uv_loop_t loop;
	uv_loop_init(&loop);
	set.psl_path = "/nonexistent/psl.dat";
	assert_int_equal(dmarc_checker_create(&loop, NULL, &set, &c2, &error), MAIL_ERR_INTERNAL);
	uv_loop_close(&loop);
}

static void test_org_domain(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "news.example.co.uk", "example.co.uk" },
		{ "a.b.example.co.uk", "example.co.uk" },
		{ "EXAMPLE.COM.", "example.com" },
		{ "x.y.Example.Com", "example.com" },
		{ "foo.github.io", "foo.github.io" },
		{ "a.foo.github.io", "foo.github.io" },
		{ "co.uk", "co.uk" },
		{ "com", "com" },
		{ "a.b.parent.test", "parent.test" },
		{ "test", "test" },
	};
	char out[DMARC_DOMAIN_MAX + 1];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(dmarc_org_domain(cases[i].in, out), 0);
		if (strcmp(out, cases[i].out) != 0)
			fail_msg("%s: got %s, want %s", cases[i].in, out, cases[i].out);
	}
	assert_int_equal(dmarc_org_domain("", out), -1);
	assert_int_equal(dmarc_org_domain("a..b", out), -1);
	assert_int_equal(dmarc_org_domain(".a.b", out), -1);
	assert_int_equal(dmarc_org_domain("a b.test", out), -1);
	t_end(&t);
}

static void test_authres(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1);
	struct dmarc_outcome o = check1(&t, "reject.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	struct authres_method m;
	char comment[64];
	dmarc_outcome_authres(&o, &m, comment, sizeof comment);
	char *field;
	size_t len;
	const char *error;
	assert_int_equal(authres_compose("mx.example.net", &m, 1, &field, &len, &error), MAIL_OK);
	assert_string_equal(field, "Authentication-Results: mx.example.net;\r\n"
				   "\tdmarc=fail (p=reject dis=reject)"
				   " header.from=reject.test\r\n");
	free(field);
	o = check1(&t, "pct0.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	dmarc_outcome_authres(&o, &m, comment, sizeof comment);
	assert_string_equal(m.comment, "p=reject dis=quarantine sampled-out");
	o = check1(&t, "norecord.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	dmarc_outcome_authres(&o, &m, comment, sizeof comment);
	assert_string_equal(m.result, "none");
	assert_null(m.comment);
	o = check1(&t, "servfail.test", UNALIGNED_SPF, UNALIGNED_DKIM);
	dmarc_outcome_authres(&o, &m, comment, sizeof comment);
	assert_string_equal(m.result, "temperror");
	assert_string_equal(m.comment, "dns temporary failure");
	t_end(&t);
}

/* libopendmarc 1.4.2's own verdicts that dmarc.h does not use. Should one
 * of these start failing, libopendmarc changed: see dmarc.h. */
static int quirk_policy(const char *from, const char *record, const char *org,
			const char *dkim_domain)
{
	DMARC_POLICY_T *p = opendmarc_policy_connect_init((u_char *)"192.0.2.1", 0);
	opendmarc_policy_store_from_domain(p, (u_char *)from);
	opendmarc_policy_store_dmarc(p, (u_char *)record, (u_char *)from, (u_char *)org);
	opendmarc_policy_store_dkim(p, (u_char *)dkim_domain, (u_char *)"s",
				    DMARC_POLICY_DKIM_OUTCOME_PASS, NULL);
	int r = opendmarc_get_policy_to_enforce(p);
	opendmarc_policy_connect_shutdown(p);
	return r;
}

static void test_libopendmarc_quirks(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, 1); /* loads the PSL */
	/* strict alignment passes a subdomain's signature (under a listed
	 * suffix) */
	assert_int_equal(quirk_policy("example.com", "v=DMARC1; p=reject; adkim=s", NULL,
				      "mail.example.com"),
			 DMARC_POLICY_PASS);
	/* a public suffix aligns */
	assert_int_equal(quirk_policy("example.co.uk", "v=DMARC1; p=reject", NULL, "co.uk"),
			 DMARC_POLICY_PASS);
	/* pct is not applied */
	assert_int_equal(quirk_policy("example.co.uk", "v=DMARC1; p=quarantine; pct=0", NULL,
				      "other.example"),
			 DMARC_POLICY_QUARANTINE);
	t_end(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reject),
		cmocka_unit_test(test_quarantine_and_none),
		cmocka_unit_test(test_aligned_dkim_only),
		cmocka_unit_test(test_aligned_spf_only),
		cmocka_unit_test(test_strict),
		cmocka_unit_test(test_suffix_never_aligns),
		cmocka_unit_test(test_subdomain_sp),
		cmocka_unit_test(test_pct),
		cmocka_unit_test(test_no_record),
		cmocka_unit_test(test_temperror),
		cmocka_unit_test(test_permerror),
		cmocka_unit_test(test_cancel_and_destroy),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_authres),
		cmocka_unit_test(test_libopendmarc_quirks),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
