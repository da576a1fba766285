/* Tests of spf-check.h against a real DNS server: tests/support/dnszone.py
 * (python3-dnslib) on a free 127.0.0.1 port, started once for the group
 * and stopped by its PID. Each check gets its own loop and checker (so no
 * cache is shared between tests) and runs the loop until its callback;
 * ASan (the MAIL_FUZZ build) finds what a cancel or a destroy with checks
 * in flight would leak. The reader of DNS answers is also fed hand-made
 * packets (test_dns_read). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "dns-fixture.h"
#include "spf-private.h"
#include "util.h"
#include "xalloc.h"

#define RECEIVER "mx.local.test"
#define HELO "client.example.test"

/* s as the quoted character-strings of a TXT record, 255 bytes each. */
static void zone_txt(buf *z, const char *owner, const char *s)
{
	buf_printf(z, "%s IN TXT (", owner);
	for (size_t len = strlen(s); len > 0;) {
		size_t n = len > 255 ? 255 : len;
		buf_printf(z, " \"%.*s\"", (int)n, s);
		s += n;
		len -= n;
	}
	buf_append_str(z, " )\n");
}

static const char zone_head[] =
	"$ORIGIN spf.test.\n"
	"$TTL 300\n"
	"@ IN SOA ns.spf.test. hostmaster.spf.test. 1 3600 600 86400 60\n"
	/* pass, by each mechanism */
	"ip4 IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
	"a IN TXT \"v=spf1 a:host.a.spf.test -all\"\n"
	"host.a IN A 192.0.2.10\n"
	"mx IN TXT \"v=spf1 mx -all\"\n"
	"mx IN MX 10 mx1.mx\n"
	"mx IN MX 20 mx2.mx\n"
	"mx1.mx IN A 198.51.100.20\n"
	"mx2.mx IN A 192.0.2.20\n"
	"inc IN TXT \"v=spf1 include:ip4.spf.test -all\"\n"
	"redir IN TXT \"v=spf1 redirect=ip4.spf.test\"\n"
	"ptr IN TXT \"v=spf1 ptr -all\"\n"
	"30.2.0.192.in-addr.arpa. IN PTR host.ptr.spf.test.\n"
	"host.ptr IN A 192.0.2.30\n"
	"exists IN TXT \"v=spf1 exists:%{i}._ex.spf.test -all\"\n"
	"192.0.2.40._ex IN A 127.0.0.2\n"
	"cn IN CNAME ip4\n"
	/* the other results */
	"fail IN TXT \"v=spf1 ip4:198.51.100.1 -all\"\n"
	"soft IN TXT \"v=spf1 ip4:198.51.100.1 ~all\"\n"
	"neutral IN TXT \"v=spf1 ip4:198.51.100.1 ?all\"\n"
	"bare IN TXT \"v=spf1\"\n"
	"norec IN A 192.0.2.99\n"
	"other IN TXT \"google-site-verification=abc\"\n"
	"two IN TXT \"v=spf1 -all\"\n"
	"two IN TXT \"v=spf1 +all\"\n"
	"syntax IN TXT \"v=spf1 ip4:300.1.1.1 -all\"\n"
	"unknown IN TXT \"v=spf1 foo -all\"\n"
	"incnone IN TXT \"v=spf1 include:norec.spf.test -all\"\n"
	"voids IN TXT \"v=spf1 a:n1.voids.spf.test a:n2.voids.spf.test a:n3.voids.spf.test "
	"ip4:192.0.2.0/24 -all\"\n"
	"twovoids IN TXT \"v=spf1 a:n1.voids.spf.test mx:n2.voids.spf.test ip4:192.0.2.0/24 "
	"-all\"\n"
	"incs IN TXT \"v=spf1 include:i1.incs.spf.test include:i2.incs.spf.test "
	"ip4:192.0.2.0/24 -all\"\n"
	/* temperror */
	"servfail IN TXT \"v=spf1 -all\"\n"
	"incfail IN TXT \"v=spf1 include:servfail.spf.test -all\"\n"
	"afail IN TXT \"v=spf1 a:servfail.spf.test -all\"\n"
	"drop IN TXT \"v=spf1 -all\"\n"
	"refused IN TXT \"v=spf1 -all\"\n"
	/* HELO and IPv6 */
	"helo IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\n"
	"v6 IN TXT \"v=spf1 ip6:2001:db8::/32 -all\"\n"
	"v6a IN TXT \"v=spf1 a:host.v6a.spf.test -all\"\n"
	"host.v6a IN AAAA 2001:db8::5\n"
	"host.v6a IN A 198.51.100.5\n";

static mailtest_dns *dns;

static int group_setup(void **state)
{
	(void)state;
	buf z;
	buf_init(&z);
	buf_append_str(&z, zone_head);
	/* ten and eleven DNS-querying terms; two includes of 5 a: each */
	buf many, ten;
	buf_init(&many);
	buf_init(&ten);
	buf_append_str(&many, "v=spf1");
	buf_append_str(&ten, "v=spf1");
	for (int i = 1; i <= 11; i++) {
		buf_printf(&z, "h%d.t IN A 198.51.100.%d\n", i, i);
		buf_printf(&many, " a:h%d.t.spf.test", i);
		if (i <= 10)
			buf_printf(&ten, " a:h%d.t.spf.test", i);
	}
	buf_append_str(&many, " ip4:192.0.2.0/24 -all");
	buf_append_str(&ten, " ip4:192.0.2.0/24 -all");
	buf_append(&many, "", 1);
	buf_append(&ten, "", 1);
	zone_txt(&z, "eleven", (const char *)many.data);
	zone_txt(&z, "ten", (const char *)ten.data);
	buf_deinit(&many);
	buf_deinit(&ten);
	zone_txt(&z, "i1.incs",
		 "v=spf1 a:h1.t.spf.test a:h2.t.spf.test a:h3.t.spf.test a:h4.t.spf.test "
		 "a:h5.t.spf.test -all");
	zone_txt(&z, "i2.incs",
		 "v=spf1 a:h6.t.spf.test a:h7.t.spf.test a:h8.t.spf.test a:h9.t.spf.test "
		 "a:h10.t.spf.test -all");
	/* over 512 bytes: the UDP answer is truncated, the resolver asks TCP */
	buf big;
	buf_init(&big);
	buf_append_str(&big, "v=spf1");
	for (int i = 1; i <= 40; i++)
		buf_printf(&big, " ip4:10.0.%d.0/24", i);
	buf_append_str(&big, " ip4:192.0.2.0/24 -all");
	buf_append(&big, "", 1);
	zone_txt(&z, "big", (const char *)big.data);
	buf_deinit(&big);
	buf_append(&z, "", 1);
	static const char *const args[] = { "--servfail", "servfail.spf.test",
					    "--refused",  "refused.spf.test",
					    "--drop",     "drop.spf.test",
					    NULL };
	int r = mailtest_dns_start((const char *)z.data, args, &dns);
	buf_deinit(&z);
	return r;
}

static int group_teardown(void **state)
{
	(void)state;
	mailtest_dns_stop(&dns);
	return 0;
}

/* ---- one check, copied ---- */

struct got {
	int called;
	int null_result;
	enum spf_status status;
	enum spf_identity identity;
	char sender[512], domain[300], comment[1024], problem[256], received[4096], ar[1024];
	unsigned terms, voids;
	uint64_t elapsed_ms;
};

static void got_cb(const struct spf_result *r, void *arg)
{
	struct got *g = arg;
	g->called++;
	if (r == NULL) {
		g->null_result = 1;
		return;
	}
	g->status = r->status;
	g->identity = r->identity;
	snprintf(g->sender, sizeof g->sender, "%s", r->sender);
	snprintf(g->domain, sizeof g->domain, "%s", r->domain);
	snprintf(g->comment, sizeof g->comment, "%s", r->comment);
	snprintf(g->problem, sizeof g->problem, "%s", r->problem != NULL ? r->problem : "");
	snprintf(g->received, sizeof g->received, "%s", r->received_spf);
	snprintf(g->ar, sizeof g->ar, "%s", r->auth_results);
	g->terms = r->dns_terms;
	g->voids = r->void_lookups;
	g->elapsed_ms = r->elapsed_ms;
	/* the problem is given exactly for the two error results */
	assert_int_equal(r->problem != NULL,
			 r->status == SPF_TEMPERROR || r->status == SPF_PERMERROR);
}

static struct spf_settings t_settings(void)
{
	struct spf_settings s = spf_settings_default();
	s.dns_server = mailtest_dns_server(dns);
	s.receiver = RECEIVER;
	s.dns_timeout_s = 1;
	s.dns_tries = 1;
	return s;
}

struct t {
	uv_loop_t loop;
	spf_checker *c;
};

static void t_start(struct t *t, const struct spf_settings *set)
{
	const char *error = NULL;
	struct spf_settings s = set != NULL ? *set : t_settings();
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (spf_checker_create(&t->loop, &s, &t->c, &error) < 0)
		fail_msg("spf_checker_create: %s", error);
}

/* Destroy, let the handles close and the pool give the checks back. */
static void t_end(struct t *t)
{
	spf_checker_destroy(&t->c);
	assert_null(t->c);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void check_req(const struct spf_settings *set, const struct spf_request *req,
		      struct got *g)
{
	struct t t;
	t_start(&t, set);
	memset(g, 0, sizeof *g);
	spf_query *q = spf_check(t.c, req, got_cb, g);
	assert_non_null(q);
	assert_int_equal(g->called, 0); /* never inside spf_check */
	assert_int_equal(spf_checker_pending(t.c), 1);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(g->called, 1);
	assert_int_equal(g->null_result, 0);
	assert_int_equal(spf_checker_pending(t.c), 0);
	t_end(&t);
}

static void check(const char *ip, const char *helo, const char *from, struct got *g)
{
	struct spf_request req = { .client_ip = ip, .helo = helo, .mail_from = from, .id = "T1" };
	check_req(NULL, &req, g);
}

/* The status of from at ip (HELO client.example.test). */
static void expect(const char *ip, const char *from, enum spf_status want, struct got *g)
{
	check(ip, HELO, from, g);
	if (g->status != want)
		fail_msg("%s from %s: %s (%s), want %s", from, ip, spf_status_name(g->status),
			 g->problem, spf_status_name(want));
}

/* ---- pass, by each mechanism ---- */

static void test_pass(void **state)
{
	(void)state;
	struct got g;
	expect("192.0.2.1", "alice@ip4.spf.test", SPF_PASS, &g);
	assert_int_equal(g.terms, 0);
	assert_int_equal(g.identity, SPF_IDENTITY_MAILFROM);
	assert_string_equal(g.sender, "alice@ip4.spf.test");
	assert_string_equal(g.domain, "ip4.spf.test");
	assert_string_equal(g.ar, "spf=pass smtp.mailfrom=alice@ip4.spf.test");
	expect("192.0.2.10", "alice@a.spf.test", SPF_PASS, &g);
	assert_int_equal(g.terms, 1);
	/* mx: the MX query is the term, its hosts' A lookups belong to it */
	expect("192.0.2.20", "alice@mx.spf.test", SPF_PASS, &g);
	assert_int_equal(g.terms, 1);
	expect("192.0.2.21", "alice@mx.spf.test", SPF_FAIL, &g);
	expect("192.0.2.5", "alice@inc.spf.test", SPF_PASS, &g);
	assert_int_equal(g.terms, 1);
	expect("192.0.2.5", "alice@redir.spf.test", SPF_PASS, &g);
	expect("192.0.2.30", "alice@ptr.spf.test", SPF_PASS, &g);
	expect("192.0.2.31", "alice@ptr.spf.test", SPF_FAIL, &g);
	expect("192.0.2.40", "alice@exists.spf.test", SPF_PASS, &g);
	expect("192.0.2.41", "alice@exists.spf.test", SPF_FAIL, &g);
	assert_int_equal(g.voids, 1);
	/* a CNAME to the record; a record over 512 bytes (TCP) */
	expect("192.0.2.7", "alice@cn.spf.test", SPF_PASS, &g);
	expect("192.0.2.7", "alice@big.spf.test", SPF_PASS, &g);
	expect("10.0.40.1", "alice@big.spf.test", SPF_PASS, &g);
	expect("10.0.41.1", "alice@big.spf.test", SPF_FAIL, &g);
	/* no local part: postmaster (RFC 7208 4.3); case does not matter */
	expect("192.0.2.1", "@IP4.SPF.test", SPF_PASS, &g);
	assert_string_equal(g.sender, "postmaster@IP4.SPF.test");
	assert_string_equal(g.ar, "spf=pass smtp.mailfrom=IP4.SPF.test");
}

static void test_fail_softfail_neutral(void **state)
{
	(void)state;
	struct got g;
	expect("192.0.2.1", "bob@fail.spf.test", SPF_FAIL, &g);
	assert_string_equal(g.comment, RECEIVER ": domain of bob@fail.spf.test does not "
					"designate 192.0.2.1 as permitted sender");
	assert_string_equal(g.ar, "spf=fail smtp.mailfrom=bob@fail.spf.test");
	expect("198.51.100.1", "bob@fail.spf.test", SPF_PASS, &g);
	expect("192.0.2.1", "bob@soft.spf.test", SPF_SOFTFAIL, &g);
	expect("192.0.2.1", "bob@neutral.spf.test", SPF_NEUTRAL, &g);
	/* "v=spf1" and nothing else: neutral (RFC 7208 4.7) */
	expect("192.0.2.1", "bob@bare.spf.test", SPF_NEUTRAL, &g);
	/* libspf2 would pass a loopback client without looking */
	expect("127.0.0.1", "bob@fail.spf.test", SPF_FAIL, &g);
	expect("::1", "bob@fail.spf.test", SPF_FAIL, &g);
}

static void test_none(void **state)
{
	(void)state;
	struct got g;
	/* a name with records but no TXT; no such name; TXT but not SPF */
	expect("192.0.2.1", "carol@norec.spf.test", SPF_NONE, &g);
	assert_string_equal(g.comment, RECEIVER ": domain of carol@norec.spf.test does not "
					"provide an SPF record");
	expect("192.0.2.1", "carol@nx.spf.test", SPF_NONE, &g);
	expect("192.0.2.1", "carol@other.spf.test", SPF_NONE, &g);
	/* no domain to check (RFC 7208 4.3): no DNS asked */
	static const char *const bad[] = { "carol@localhost", "carol@[192.0.2.1]",
					   "carol@a..spf.test", "carol@.spf.test",
					   "carol@sp ace.spf.test", "carol@spf.test\x01" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		expect("192.0.2.1", bad[i], SPF_NONE, &g);
		assert_string_equal(g.domain, "");
		assert_string_equal(g.ar, "spf=none");
		assert_int_equal(g.terms, 0);
	}
}

static void test_permerror(void **state)
{
	(void)state;
	struct got g;
	expect("192.0.2.1", "dave@two.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(g.problem, "Multiple SPF records for 'two.spf.test'");
	expect("192.0.2.1", "dave@syntax.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(g.problem, "Invalid IPv4 address literal near '300.1.1.1'");
	expect("192.0.2.1", "dave@unknown.spf.test", SPF_PERMERROR, &g);
	/* an include whose target has no record */
	expect("192.0.2.1", "dave@incnone.spf.test", SPF_PERMERROR, &g);
	/* 10 DNS-querying terms are fine, 11 are not (libspf2 alone lets
	 * the 11th through) */
	expect("192.0.2.1", "dave@ten.spf.test", SPF_PASS, &g);
	assert_int_equal(g.terms, 10);
	expect("192.0.2.1", "dave@eleven.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(g.problem, "more than 10 DNS-querying terms (RFC 7208 4.6.4)");
	/* the count runs across includes: 2 + 5 + 5 (libspf2 alone counts
	 * each include apart, and would pass) */
	expect("192.0.2.1", "dave@incs.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(g.problem, "more than 10 DNS-querying terms (RFC 7208 4.6.4)");
	/* two void lookups are fine, three are not */
	expect("192.0.2.1", "dave@twovoids.spf.test", SPF_PASS, &g);
	assert_int_equal(g.voids, 2);
	expect("192.0.2.1", "dave@voids.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(g.problem, "more than 2 void DNS lookups (RFC 7208 4.6.4)");
	assert_int_equal(g.voids, 3);
}

static void test_temperror(void **state)
{
	(void)state;
	struct got g;
	/* SERVFAIL for the record, for an include's, for an a: term */
	expect("192.0.2.1", "erin@servfail.spf.test", SPF_TEMPERROR, &g);
	assert_string_equal(g.problem, "DNS lookup of servfail.spf.test failed");
	expect("192.0.2.1", "erin@incfail.spf.test", SPF_TEMPERROR, &g);
	expect("192.0.2.1", "erin@afail.spf.test", SPF_TEMPERROR, &g);
	expect("192.0.2.1", "erin@refused.spf.test", SPF_TEMPERROR, &g);
	/* never answered: the resolver's try (1 s) ends it */
	expect("192.0.2.1", "erin@drop.spf.test", SPF_TEMPERROR, &g);
	assert_true(g.elapsed_ms >= 900);
	/* the check's own timeout answers first, the pool thread runs out */
	struct spf_settings s = t_settings();
	s.timeout_ms = 200;
	s.dns_timeout_s = 2;
	struct spf_request req = { .client_ip = "192.0.2.1", .helo = HELO,
				   .mail_from = "erin@drop.spf.test" };
	uint64_t t0 = util_now_mono_ms();
	check_req(&s, &req, &g);
	assert_int_equal(g.status, SPF_TEMPERROR);
	assert_string_equal(g.problem, "timed out");
	assert_true(g.elapsed_ms >= 200 && g.elapsed_ms < 1900);
	/* check_req's destroy waited for the pool thread (2 s try) */
	assert_true(util_now_mono_ms() - t0 >= 1500);
	/* a server that is not there */
	s = t_settings();
	s.dns_server = "127.0.0.1:9";
	req.mail_from = "erin@ip4.spf.test";
	check_req(&s, &req, &g);
	assert_int_equal(g.status, SPF_TEMPERROR);
}

static void test_null_sender_helo(void **state)
{
	(void)state;
	struct got g;
	check("192.0.2.1", "helo.spf.test", "", &g);
	assert_int_equal(g.status, SPF_PASS);
	assert_int_equal(g.identity, SPF_IDENTITY_HELO);
	assert_string_equal(g.sender, "postmaster@helo.spf.test");
	assert_string_equal(g.domain, "helo.spf.test");
	assert_string_equal(g.ar, "spf=pass smtp.helo=helo.spf.test");
	check("198.51.100.1", "helo.spf.test", NULL, &g);
	assert_int_equal(g.status, SPF_FAIL);
	/* an address literal or nothing: no domain to check */
	check("192.0.2.1", "[192.0.2.1]", "", &g);
	assert_int_equal(g.status, SPF_NONE);
	assert_int_equal(g.identity, SPF_IDENTITY_HELO);
	assert_string_equal(g.ar, "spf=none");
	check("192.0.2.1", NULL, "", &g);
	assert_int_equal(g.status, SPF_NONE);
	/* the HELO identity asked for, with a MAIL FROM given */
	struct spf_request req = { .client_ip = "198.51.100.9", .helo = "helo.spf.test",
				   .mail_from = "x@ip4.spf.test", .identity = SPF_IDENTITY_HELO };
	check_req(NULL, &req, &g);
	assert_int_equal(g.status, SPF_FAIL);
	assert_int_equal(g.identity, SPF_IDENTITY_HELO);
	assert_string_equal(g.domain, "helo.spf.test");
}

static void test_ipv6(void **state)
{
	(void)state;
	struct got g;
	expect("2001:db8::1", "frank@v6.spf.test", SPF_PASS, &g);
	expect("2001:db9::1", "frank@v6.spf.test", SPF_FAIL, &g);
	expect("2001:db8::5", "frank@v6a.spf.test", SPF_PASS, &g);
	expect("2001:db8::6", "frank@v6a.spf.test", SPF_FAIL, &g);
	/* an IPv4 client on a dual-stack socket: IPv4 (RFC 7208 5.6) */
	expect("::ffff:192.0.2.1", "frank@ip4.spf.test", SPF_PASS, &g);
	expect("::ffff:198.51.100.5", "frank@v6a.spf.test", SPF_PASS, &g);
	/* a sockaddr rather than text */
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8::7", &sin6.sin6_addr);
	struct spf_request req = { .client = (struct sockaddr *)&sin6, .helo = HELO,
				   .mail_from = "frank@v6.spf.test" };
	check_req(NULL, &req, &g);
	assert_int_equal(g.status, SPF_PASS);
	/* no usable address */
	check("not-an-ip", HELO, "frank@v6.spf.test", &g);
	assert_int_equal(g.status, SPF_PERMERROR);
	assert_string_equal(g.problem, "no client address");
}

/* An IPv6 DNS server (dns-fixture.h serves 127.0.0.1 only): dnszone.py's
 * classes on [::1], UDP, run here and stopped by its PID. The resolver
 * keeps an IPv6 server where glibc keeps its own (spf-dns.c). Skipped
 * when ::1 cannot be bound. */
static const char v6_script[] =
	"import os, socket, sys, threading\n"
	"threading.Timer(60, os._exit, [0]).start()  # never outlives a failed test long\n"
	"sys.path.insert(0, sys.argv[1])\n"
	"import dnszone\n"
	"class U(dnszone._UDP):\n"
	"    address_family = socket.AF_INET6\n"
	"zone = dnszone.Zone('$ORIGIN v6srv.test.\\n'\n"
	"                    '@ IN TXT \"v=spf1 ip4:192.0.2.0/24 -all\"\\n')\n"
	"try:\n"
	"    s = U(('::1', 0), dnszone._Handler)\n"
	"except OSError:\n"
	"    print(0, flush=True)\n"
	"    sys.exit(0)\n"
	"s.zone = zone\n"
	"s.log = False\n"
	"print(s.server_address[1], flush=True)\n"
	"s.serve_forever()\n";

static void test_ipv6_server(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl("/usr/bin/python3", "python3", "-c", v6_script,
		      MAIL_SOURCE_DIR "/tests/support", (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	/* the port and a newline (maybe in two writes); the pipe stays open
	 * until the server is stopped, or its next write would kill it */
	char line[32] = "";
	size_t got = 0;
	struct pollfd pfd = { .fd = fds[0], .events = POLLIN };
	while (got < sizeof line - 1 && strchr(line, '\n') == NULL && poll(&pfd, 1, 10000) == 1) {
		ssize_t n = read(fds[0], line + got, sizeof line - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		line[got] = '\0';
	}
	int port = atoi(line);
	if (port > 0) {
		struct spf_settings s = t_settings();
		char server[64];
		snprintf(server, sizeof server, "[::1]:%d", port);
		s.dns_server = server;
		struct got g;
		struct spf_request req = { .client_ip = "192.0.2.1", .mail_from = "l@v6srv.test" };
		check_req(&s, &req, &g);
		assert_int_equal(g.status, SPF_PASS);
		req.client_ip = "198.51.100.1";
		check_req(&s, &req, &g);
		assert_int_equal(g.status, SPF_FAIL);
	}
	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	close(fds[0]);
	if (port <= 0)
		skip();
}

/* Every line of a header field: at most 78 columns here, printable ASCII
 * or TAB, CRLF TAB between lines, CRLF at the end. */
static void assert_folded(const char *f)
{
	size_t len = strlen(f), col = 0;
	assert_true(len > 2 && strcmp(f + len - 2, "\r\n") == 0);
	for (size_t i = 0; i < len - 2; i++) {
		if (f[i] == '\r') {
			assert_true(f[i + 1] == '\n' && f[i + 2] == '\t');
			i++;
			col = 0;
			continue;
		}
		assert_true((f[i] >= ' ' && f[i] < 0x7f) || f[i] == '\t');
		assert_true(++col <= 78);
	}
}

static void test_received_spf(void **state)
{
	(void)state;
	struct got g;
	expect("192.0.2.1", "alice@ip4.spf.test", SPF_PASS, &g);
	assert_string_equal(g.received,
			    "Received-SPF: pass (mx.local.test: domain of alice@ip4.spf.test "
			    "designates\r\n"
			    "\t192.0.2.1 as permitted sender) client-ip=192.0.2.1;\r\n"
			    "\tenvelope-from=\"alice@ip4.spf.test\"; helo=client.example.test;\r\n"
			    "\treceiver=mx.local.test; identity=mailfrom\r\n");
	assert_folded(g.received);
	/* errors say their problem; IPv6 is quoted (':' is no atext) */
	expect("2001:db8::1", "dave@two.spf.test", SPF_PERMERROR, &g);
	assert_string_equal(
		g.received,
		"Received-SPF: permerror (mx.local.test: permanent error in processing domain\r\n"
		"\tof dave@two.spf.test: Multiple SPF records for 'two.spf.test')\r\n"
		"\tclient-ip=\"2001:db8::1\"; envelope-from=\"dave@two.spf.test\";\r\n"
		"\thelo=client.example.test; "
		"problem=\"Multiple SPF records for 'two.spf.test'\";\r\n"
		"\treceiver=mx.local.test; identity=mailfrom\r\n");
	assert_folded(g.received);
	/* the null sender: no envelope-from, identity helo */
	check("192.0.2.1", "helo.spf.test", "", &g);
	assert_string_equal(g.received,
			    "Received-SPF: pass (mx.local.test: domain of "
			    "postmaster@helo.spf.test\r\n"
			    "\tdesignates 192.0.2.1 as permitted sender) client-ip=192.0.2.1;\r\n"
			    "\thelo=helo.spf.test; receiver=mx.local.test; identity=helo\r\n");
	/* what the client sent cannot break the field: quotes, backslashes,
	 * parentheses, control bytes, 8-bit */
	check("192.0.2.1", "evil\"(x)\\\r\nX-Injected: 1", "\"a b\\\"(c)\xc3\xa9\"@fail.spf.test",
	      &g);
	assert_int_equal(g.status, SPF_FAIL);
	assert_folded(g.received);
	assert_null(strstr(g.received, "\r\nX-Injected"));
	assert_non_null(strstr(g.received, "helo=\"evil\\\"(x)\\\\??X-Injected: 1\";"));
	assert_string_equal(g.ar, "spf=fail smtp.mailfrom=fail.spf.test");
	/* the longest input still gives lines within RFC 5322's 998 */
	char from[SPF__MAIL_FROM_MAX + 1];
	memset(from, '"', sizeof from);
	memcpy(from + sizeof from - 1 - 14, "@fail.spf.test", 14);
	from[sizeof from - 1] = '\0';
	check("192.0.2.1", HELO, from, &g);
	assert_int_equal(g.status, SPF_FAIL);
	for (const char *p = g.received, *e; (e = strstr(p, "\r\n")) != NULL; p = e + 2)
		assert_true(e - p <= 998);
}

static void test_cache(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[3];
	struct spf_request req = { .client_ip = "192.0.2.20", .helo = HELO,
				   .mail_from = "gina@mx.spf.test" };
	for (int i = 0; i < 3; i++) {
		memset(&g[i], 0, sizeof g[i]);
		spf_check(t.c, &req, got_cb, &g[i]);
		uv_run(&t.loop, UV_RUN_DEFAULT);
		assert_int_equal(g[i].status, SPF_PASS);
	}
	struct spf_stats st;
	spf_checker_get_stats(t.c, &st);
	/* TXT, MX, A of mx1, A of mx2: asked three times, sent once */
	assert_int_equal(st.checks, 3);
	assert_int_equal(st.evaluated, 3);
	assert_int_equal(st.lookups, 12);
	assert_int_equal(st.dns_queries, 4);
	assert_int_equal(st.caches, 1);
	t_end(&t);

	/* a cache full after 16 answers is replaced by a fresh one */
	struct spf_settings s = t_settings();
	s.cache_entries_max = 16;
	t_start(&t, &s);
	/* exists:%{i}... asks a new name per client address */
	req.mail_from = "gina@exists.spf.test";
	char ip[32];
	for (int i = 0; i < 20; i++) {
		memset(&g[0], 0, sizeof g[0]);
		snprintf(ip, sizeof ip, "192.0.2.%d", 100 + i);
		req.client_ip = ip;
		spf_check(t.c, &req, got_cb, &g[0]);
		uv_run(&t.loop, UV_RUN_DEFAULT);
		assert_int_equal(g[0].status, SPF_FAIL);
	}
	spf_checker_get_stats(t.c, &st);
	assert_true(st.caches >= 2);
	t_end(&t);
}

/* ---- the life of checks ---- */

static void test_cancel(void **state)
{
	(void)state;
	struct t t;
	struct spf_settings s = t_settings();
	s.workers_max = 1;
	t_start(&t, &s);
	struct got g[4];
	memset(g, 0, sizeof g);
	struct spf_request slow = { .client_ip = "192.0.2.1", .mail_from = "h@drop.spf.test" };
	struct spf_request fast = { .client_ip = "192.0.2.1", .mail_from = "h@ip4.spf.test" };
	struct spf_request none = { .client_ip = "192.0.2.1", .mail_from = "h@localhost" };
	spf_query *running = spf_check(t.c, &slow, got_cb, &g[0]);
	spf_query *waiting = spf_check(t.c, &fast, got_cb, &g[1]);
	spf_query *ready = spf_check(t.c, &none, got_cb, &g[2]);
	spf_check(t.c, &fast, got_cb, &g[3]);
	assert_int_equal(spf_checker_pending(t.c), 4);
	spf_query_cancel(&running);
	spf_query_cancel(&waiting);
	spf_query_cancel(&ready);
	assert_null(running);
	spf_query_cancel(&running); /* NULL is fine */
	assert_int_equal(spf_checker_pending(t.c), 1);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(g[0].called + g[1].called + g[2].called, 0);
	assert_int_equal(g[3].called, 1);
	assert_int_equal(g[3].status, SPF_PASS);
	t_end(&t);
}

struct destroy_ctx {
	spf_checker **c;
	int called;
};

static void destroy_cb(const struct spf_result *r, void *arg)
{
	struct destroy_ctx *d = arg;
	assert_non_null(r);
	d->called++;
	spf_checker_destroy(d->c); /* from a callback: fine */
}

static void test_destroy_in_flight(void **state)
{
	(void)state;
	struct t t;
	struct spf_settings s = t_settings();
	s.workers_max = 2;
	t_start(&t, &s);
	struct got g[4];
	memset(g, 0, sizeof g);
	struct spf_request slow = { .client_ip = "192.0.2.1", .mail_from = "i@drop.spf.test" };
	struct spf_request none = { .client_ip = "192.0.2.1", .mail_from = "i@localhost" };
	for (int i = 0; i < 3; i++) /* two in the pool, one waiting */
		spf_check(t.c, &slow, got_cb, &g[i]);
	spf_check(t.c, &none, got_cb, &g[3]);
	uint64_t t0 = util_now_mono_ms();
	spf_checker_destroy(&t.c);
	assert_null(t.c);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].null_result, 1);
	}
	/* the pool threads give their checks back after their try (1 s) */
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_true(util_now_mono_ms() - t0 < 5000);
	assert_int_equal(uv_loop_close(&t.loop), 0);

	/* destroy from a callback, with another check still in the pool */
	t_start(&t, &s);
	struct destroy_ctx d = { &t.c, 0 };
	memset(g, 0, sizeof g);
	spf_check(t.c, &slow, got_cb, &g[0]);
	spf_check(t.c, &none, destroy_cb, &d);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(d.called, 1);
	assert_null(t.c);
	assert_int_equal(g[0].called, 1);
	assert_int_equal(g[0].null_result, 1);
	assert_int_equal(uv_loop_close(&t.loop), 0);
}

static void test_busy(void **state)
{
	(void)state;
	struct t t;
	struct spf_settings s = t_settings();
	s.workers_max = 1;
	s.queue_max = 1;
	t_start(&t, &s);
	struct got g[3];
	memset(g, 0, sizeof g);
	struct spf_request req = { .client_ip = "192.0.2.1", .mail_from = "j@ip4.spf.test" };
	for (int i = 0; i < 3; i++)
		spf_check(t.c, &req, got_cb, &g[i]);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(g[0].status, SPF_PASS);
	assert_int_equal(g[1].status, SPF_PASS);
	assert_int_equal(g[2].status, SPF_TEMPERROR);
	assert_string_equal(g[2].problem, "busy: 1 checks waiting");
	struct spf_stats st;
	spf_checker_get_stats(t.c, &st);
	assert_int_equal(st.busy, 1);
	assert_int_equal(st.evaluated, 2);
	t_end(&t);
}

static void test_settings(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	struct spf_settings bad[8];
	for (int i = 0; i < 8; i++)
		bad[i] = t_settings();
	bad[0].dns_server = "127.0.0.1";
	bad[1].dns_server = "localhost:53";
	bad[2].timeout_ms = 50;
	bad[3].dns_terms_max = 101;
	bad[4].workers_max = 5000;
	bad[5].receiver = "mx local";
	bad[6].receiver = "";
	bad[7].cache_entries_max = 2;
	for (int i = 0; i < 8; i++) {
		spf_checker *c = NULL;
		const char *error = NULL;
		if (spf_checker_create(&loop, &bad[i], &c, &error) != -1 || error == NULL)
			fail_msg("bad settings %d accepted", i);
		assert_null(c);
	}
	spf_checker *c = NULL;
	const char *error = NULL;
	/* NULL: the defaults, resolv.conf, gethostname() */
	assert_int_equal(spf_checker_create(&loop, NULL, &c, &error), 0);
	spf_checker_destroy(&c);
	struct spf_settings v6 = t_settings();
	v6.dns_server = "[::1]:5353";
	assert_int_equal(spf_checker_create(&loop, &v6, &c, &error), 0);
	spf_checker_destroy(&c);
	spf_checker_destroy(&c); /* NULL is fine */
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_string_equal(spf_status_name(SPF_SOFTFAIL), "softfail");
	assert_string_equal(spf_status_name((enum spf_status)99), "unknown");
	assert_string_equal(spf_identity_name(SPF_IDENTITY_HELO), "helo");
}

/* ---- the reader of answers, on hand-made packets ---- */

struct pkt {
	unsigned char b[2048];
	size_t len;
};

static void put16(struct pkt *p, unsigned v)
{
	p->b[p->len++] = (unsigned char)(v >> 8);
	p->b[p->len++] = (unsigned char)v;
}

static void put32(struct pkt *p, unsigned long v)
{
	put16(p, (unsigned)(v >> 16) & 0xffff);
	put16(p, (unsigned)v & 0xffff);
}

static void put_bytes(struct pkt *p, const void *d, size_t n)
{
	memcpy(p->b + p->len, d, n);
	p->len += n;
}

/* header (id 1, QR, RD, RA, rcode, counts) and the question q.test/type */
static void pkt_start(struct pkt *p, unsigned rcode, unsigned an, unsigned ns, int type)
{
	p->len = 0;
	put16(p, 1);
	put16(p, 0x8180 | rcode);
	put16(p, 1);
	put16(p, an);
	put16(p, ns);
	put16(p, 0);
	put_bytes(p, "\x01q\x04test\x00", 8);
	put16(p, (unsigned)type);
	put16(p, 1);
}

/* a record owned by the question's name (pointer to offset 12) */
static void pkt_rr(struct pkt *p, int type, unsigned long ttl, const void *rdata, size_t rdlen)
{
	put16(p, 0xc00c);
	put16(p, (unsigned)type);
	put16(p, 1);
	put32(p, ttl);
	put16(p, (unsigned)rdlen);
	put_bytes(p, rdata, rdlen);
}

static SPF_dns_rr_t *read_pkt(const struct pkt *p, int type, unsigned ttl_max)
{
	return spf__dns_read(NULL, "q.test", type, p->b, (int)p->len, ttl_max);
}

static void test_dns_read(void **state)
{
	(void)state;
	struct pkt p;
	SPF_dns_rr_t *rr;

	/* TXT: strings joined, a NUL inside made 0x01; the smaller TTL */
	pkt_start(&p, ns_r_noerror, 2, 0, ns_t_txt);
	pkt_rr(&p, ns_t_txt, 300, "\x07v=spf1 \x04-all", 13);
	pkt_rr(&p, ns_t_txt, 200, "\x05" "a\0b c", 6);
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 2);
	assert_string_equal(rr->rr[0]->txt, "v=spf1 -all");
	assert_string_equal(rr->rr[1]->txt, "a\x01" "b c");
	assert_int_equal(rr->ttl, 200);
	SPF_dns_rr_free(rr);
	/* the TTL is capped */
	rr = read_pkt(&p, ns_t_txt, 60);
	assert_int_equal(rr->ttl, 60);
	SPF_dns_rr_free(rr);

	/* a character-string longer than its record: malformed */
	pkt_start(&p, ns_r_noerror, 1, 0, ns_t_txt);
	pkt_rr(&p, ns_t_txt, 300, "\x09v=spf1", 7);
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);
	/* an empty TXT record: malformed */
	pkt_start(&p, ns_r_noerror, 1, 0, ns_t_txt);
	pkt_rr(&p, ns_t_txt, 300, "", 0);
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);

	/* A with 5 bytes: malformed; a CNAME before the A: skipped */
	pkt_start(&p, ns_r_noerror, 1, 0, ns_t_a);
	pkt_rr(&p, ns_t_a, 300, "\x01\x02\x03\x04\x05", 5);
	rr = read_pkt(&p, ns_t_a, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);
	pkt_start(&p, ns_r_noerror, 2, 0, ns_t_a);
	pkt_rr(&p, ns_t_cname, 300, "\x01r\xc0\x0e", 4);
	pkt_rr(&p, ns_t_a, 300, "\xc0\x00\x02\x01", 4);
	rr = read_pkt(&p, ns_t_a, 3600);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 1);
	assert_int_equal(ntohl(rr->rr[0]->a.s_addr), 0xc0000201);
	SPF_dns_rr_free(rr);

	/* MX: the name after the preference, compressed; a null MX skipped */
	pkt_start(&p, ns_r_noerror, 2, 0, ns_t_mx);
	pkt_rr(&p, ns_t_mx, 300, "\x00\x0a\x02mx\xc0\x0c", 7);
	pkt_rr(&p, ns_t_mx, 300, "\x00\x00\x00", 3);
	rr = read_pkt(&p, ns_t_mx, 3600);
	assert_int_equal(rr->herrno, NETDB_SUCCESS);
	assert_int_equal(rr->num_rr, 1);
	assert_string_equal(rr->rr[0]->mx, "mx.q.test");
	SPF_dns_rr_free(rr);
	/* a name pointing past the message: malformed */
	pkt_start(&p, ns_r_noerror, 1, 0, ns_t_ptr);
	pkt_rr(&p, ns_t_ptr, 300, "\xc7\xff", 2);
	rr = read_pkt(&p, ns_t_ptr, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);

	/* NXDOMAIN: the SOA's negative TTL, min(TTL 600, MINIMUM 60) */
	static const unsigned char soa[] = "\x02ns\xc0\x0c\x02hm\xc0\x0c"
					   "\x00\x00\x00\x01\x00\x00\x0e\x10\x00\x00\x02\x58"
					   "\x00\x01\x51\x80\x00\x00\x00\x3c";
	pkt_start(&p, ns_r_nxdomain, 0, 1, ns_t_txt);
	pkt_rr(&p, ns_t_soa, 600, soa, sizeof soa - 1);
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, HOST_NOT_FOUND);
	assert_int_equal(rr->ttl, 60);
	SPF_dns_rr_free(rr);
	/* NOERROR, nothing of the type: NO_DATA */
	pkt_start(&p, ns_r_noerror, 0, 1, ns_t_txt);
	pkt_rr(&p, ns_t_soa, 30, soa, sizeof soa - 1);
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, NO_DATA);
	assert_int_equal(rr->ttl, 30);
	SPF_dns_rr_free(rr);

	/* SERVFAIL, REFUSED, a truncated answer, a cut message, none */
	static const unsigned rcodes[] = { ns_r_servfail, ns_r_refused, ns_r_formerr };
	for (size_t i = 0; i < 3; i++) {
		pkt_start(&p, rcodes[i], 0, 0, ns_t_txt);
		rr = read_pkt(&p, ns_t_txt, 3600);
		assert_int_equal(rr->herrno, TRY_AGAIN);
		SPF_dns_rr_free(rr);
	}
	pkt_start(&p, ns_r_noerror, 0, 0, ns_t_txt);
	p.b[2] |= 0x02; /* TC */
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);
	pkt_start(&p, ns_r_noerror, 1, 0, ns_t_txt);
	pkt_rr(&p, ns_t_txt, 300, "\x04-all", 5);
	p.len -= 3;
	rr = read_pkt(&p, ns_t_txt, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);
	rr = spf__dns_read(NULL, "q.test", ns_t_txt, NULL, -1, 3600);
	assert_int_equal(rr->herrno, TRY_AGAIN);
	SPF_dns_rr_free(rr);
}

/* ---- cost ---- */

static void cost_cb(const struct spf_result *r, void *arg)
{
	(void)r;
	(*(int *)arg)++;
}

/* What a check costs with every DNS answer cached (the MX's steady
 * state): checks issued 64 at a time on one loop, workers_max 2 and 8.
 * And what the per-check libspf2 objects cost alone. Printed, not
 * asserted (a shared machine). */
static void test_cost(void **state)
{
	(void)state;
	static const unsigned workers[] = { 2, 8 };
	for (size_t w = 0; w < 2; w++) {
		struct t t;
		struct spf_settings s = t_settings();
		s.workers_max = workers[w];
		s.queue_max = 100000;
		t_start(&t, &s);
		struct spf_request req = { .client_ip = "192.0.2.20", .helo = HELO,
					   .mail_from = "k@mx.spf.test" };
		int done = 0;
		spf_check(t.c, &req, cost_cb, &done); /* warm the cache */
		uv_run(&t.loop, UV_RUN_DEFAULT);
		const int n = 64 * 64;
		uint64_t t0 = util_now_mono_ms();
		for (int i = 0; i < n; i += 64) {
			for (int k = 0; k < 64; k++)
				spf_check(t.c, &req, cost_cb, &done);
			uv_run(&t.loop, UV_RUN_DEFAULT);
		}
		uint64_t ms = util_now_mono_ms() - t0;
		struct spf_stats st;
		spf_checker_get_stats(t.c, &st);
		print_message("cost: workers_max=%u: %d cached checks (mx: 4 lookups each) in %llu "
			      "ms: %.1f us/check, %.0f checks/s; dns_queries=%llu\n",
			      workers[w], n, (unsigned long long)ms, 1000.0 * (double)ms / n,
			      ms > 0 ? 1000.0 * n / (double)ms : 0.0,
			      (unsigned long long)st.dns_queries);
		assert_int_equal(done, n + 1);
		assert_int_equal(st.dns_queries, 4);
		t_end(&t);
	}
	/* uncached: each check asks the loopback server one new name
	 * (exists:%{i}, a new client address each time) */
	for (size_t w = 0; w < 2; w++) {
		struct t t;
		struct spf_settings s = t_settings();
		s.workers_max = workers[w];
		t_start(&t, &s);
		struct spf_request req = { .helo = HELO, .mail_from = "k@exists.spf.test" };
		char ip[32];
		int done = 0;
		const int n = 256;
		uint64_t t0 = util_now_mono_ms();
		for (int i = 0; i < n; i++) {
			snprintf(ip, sizeof ip, "10.%d.%d.%d", (int)w, i / 250, i % 250 + 1);
			req.client_ip = ip;
			spf_check(t.c, &req, cost_cb, &done);
		}
		uv_run(&t.loop, UV_RUN_DEFAULT);
		uint64_t ms = util_now_mono_ms() - t0;
		struct spf_stats st;
		spf_checker_get_stats(t.c, &st);
		print_message("cost: workers_max=%u: %d uncached checks (1 query each to the "
			      "loopback python server) in %llu ms: %.0f us/check; "
			      "dns_queries=%llu\n",
			      workers[w], n, (unsigned long long)ms, 1000.0 * (double)ms / n,
			      (unsigned long long)st.dns_queries);
		assert_int_equal(done, n);
		t_end(&t);
	}
	/* the libspf2 objects of one check, no DNS */
	const int n = 20000;
	uint64_t t0 = util_now_mono_ms();
	for (int i = 0; i < n; i++) {
		SPF_server_t *sv = SPF_server_new_dns(NULL, 0);
		SPF_response_t *resp = NULL;
		SPF_server_set_explanation(sv, "not permitted by SPF", &resp);
		SPF_response_free(resp);
		SPF_request_t *rq = SPF_request_new(sv);
		SPF_request_set_env_from(rq, "k@mx.spf.test");
		SPF_request_free(rq);
		SPF_server_free(sv);
	}
	uint64_t ms = util_now_mono_ms() - t0;
	print_message("cost: libspf2 server+request per check: %.2f us\n",
		      1000.0 * (double)ms / n);
	/* res_ninit + res_nclose: once per check that misses the cache */
	t0 = util_now_mono_ms();
	for (int i = 0; i < n; i++) {
		struct __res_state rs;
		memset(&rs, 0, sizeof rs);
		assert_int_equal(res_ninit(&rs), 0);
		res_nclose(&rs);
	}
	ms = util_now_mono_ms() - t0;
	print_message("cost: res_ninit+res_nclose: %.2f us\n", 1000.0 * (double)ms / n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pass),
		cmocka_unit_test(test_fail_softfail_neutral),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_permerror),
		cmocka_unit_test(test_temperror),
		cmocka_unit_test(test_null_sender_helo),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_ipv6_server),
		cmocka_unit_test(test_received_spf),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_destroy_in_flight),
		cmocka_unit_test(test_busy),
		cmocka_unit_test(test_settings),
		cmocka_unit_test(test_dns_read),
		cmocka_unit_test(test_cost),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
