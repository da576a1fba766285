/* Tests of conncheck.h against a real DNS server: tests/support/dnszone.py
 * (python3-dnslib) on a free 127.0.0.1 port, started once for the group
 * with names that answer SERVFAIL or never. Each test makes its own loop,
 * resolver and checker, runs the loop until its callbacks came, then
 * destroys them and checks the loop closes: ASan (the MAIL_FUZZ build)
 * finds what a cancel or a destroy would leak. The names, reverse names
 * included, are written out here, not computed by the code under test
 * (the IPv6 ones are Python's ipaddress reverse_pointer). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "buf.h"
#include "conncheck-private.h"
#include "conncheck.h"
#include "dns-fixture.h"
#include "util.h"

#define V6_1 "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"
#define V6_5 "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2"

static const char zone_head[] =
	"$ORIGIN test.\n"
	"$TTL 300\n"
	/* 192.0.2.10: two names, the second resolves back */
	"10.2.0.192.in-addr.arpa. IN PTR other.good.test.\n"
	"10.2.0.192.in-addr.arpa. IN PTR Mail.Good.Test.\n"
	"other.good.test. IN A 192.0.2.99\n"
	"mail.good.test. IN A 192.0.2.10\n"
	"mail.good.test. IN AAAA 2001:db8::10\n"
	/* .20: a name that points elsewhere */
	"20.2.0.192.in-addr.arpa. IN PTR liar.test.\n"
	"liar.test. IN A 192.0.2.21\n"
	"liar.test. IN AAAA 2001:db8::20\n"
	/* .30: no PTR; .40 SERVFAIL, .50 never answered (args) */
	/* .60: its name's forward lookup fails */
	"60.2.0.192.in-addr.arpa. IN PTR fwd-broken.test.\n"
	/* .80: a name that does not exist, one without address, one good */
	"80.2.0.192.in-addr.arpa. IN PTR gone.test.\n"
	"80.2.0.192.in-addr.arpa. IN PTR noaddr.test.\n"
	"80.2.0.192.in-addr.arpa. IN PTR ok80.test.\n"
	"noaddr.test. IN TXT \"no address\"\n"
	"ok80.test. IN A 192.0.2.80\n"
	/* 2001:db8::1: IPv6, a name with both families */
	V6_1 ".ip6.arpa. IN PTR v6host.test.\n"
	"v6host.test. IN AAAA 2001:db8::1\n"
	"v6host.test. IN A 192.0.2.1\n"
	/* 2001:db8::5: its name has only the IPv4 address */
	V6_5 ".ip6.arpa. IN PTR v4only.test.\n"
	"v4only.test. IN A 192.0.2.5\n"

	/* DNSBL: dnsbl.test lists .10 (two codes, a reason), .20 (no TXT),
	 * the RFC 5782 test entry (a long TXT) and 2001:db8::1 */
	"10.2.0.192.dnsbl.test. IN A 127.0.0.2\n"
	"10.2.0.192.dnsbl.test. IN A 127.0.0.4\n"
	"10.2.0.192.dnsbl.test. IN TXT \"Listed: see https://dnsbl.test/q?192.0.2.10\"\n"
	"20.2.0.192.dnsbl.test. IN A 127.0.0.3\n"
	"2.0.0.127.dnsbl.test. IN A 127.0.0.2\n"
	V6_1 ".dnsbl.test. IN A 127.0.0.2\n"
	V6_1 ".dnsbl.test. IN TXT \"v6 listed\"\n"
	/* zones that answer what is no listing */
	"10.2.0.192.bl-broken.test. IN A 192.0.2.200\n"
	"10.2.0.192.bl-refuse.test. IN A 127.255.255.254\n"
	"10.2.0.192.bl-nodata.test. IN TXT \"only text\"\n"
	"10.2.0.192.bl-aaaa.test. IN AAAA ::1\n"
	/* RHSBL */
	"spammer.example.rhsbl.test. IN A 127.0.0.2\n"
	"spammer.example.rhsbl.test. IN TXT \"spam source\"\n";

static mailtest_dns *dns;

static int group_setup(void **state)
{
	(void)state;
	buf z;
	buf_init(&z);
	buf_append_str(&z, zone_head);
	/* .70: twelve names; only the eleventh and twelfth resolve back,
	 * and only ten are looked at */
	for (int i = 1; i <= 12; i++) {
		buf_printf(&z, "70.2.0.192.in-addr.arpa. IN PTR n%02d.many.test.\n", i);
		buf_printf(&z, "n%02d.many.test. IN A 192.0.2.%d\n", i, i > 10 ? 70 : 71);
	}
	/* a TXT of 300 bytes in two strings */
	buf_append_str(&z, "2.0.0.127.dnsbl.test. IN TXT ( \"");
	for (int i = 0; i < 200; i++)
		buf_append(&z, "a", 1);
	buf_append_str(&z, "\" \"");
	for (int i = 0; i < 100; i++)
		buf_append(&z, "b", 1);
	buf_append_str(&z, "\" )\n");
	buf_append(&z, "", 1);
	static const char *const args[] = {
		"--servfail", "40.2.0.192.in-addr.arpa",
		"--drop", "50.2.0.192.in-addr.arpa",
		"--servfail", "fwd-broken.test",
		"--servfail", "10.2.0.192.bl-fail.test",
		"--drop", "10.2.0.192.bl-drop.test",
		NULL,
	};
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

/* ---- one loop, resolver and checker per test ---- */

struct t {
	uv_loop_t loop;
	dns_resolver *r;
	conncheck_checker *c;
};

static void t_start(struct t *t, const struct conncheck_settings *set)
{
	struct dns_settings ds = { .server = mailtest_dns_server(dns), .timeout_ms = 1000 };
	const char *error = NULL;
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (dns_resolver_create(&t->loop, &ds, &t->r, &error) < 0)
		fail_msg("dns_resolver_create: %s", error);
	if (conncheck_checker_create(&t->loop, t->r, set, &t->c, &error) < 0)
		fail_msg("conncheck_checker_create: %s", error);
}

/* Checker, then resolver; their handles close; nothing is left. */
static void t_end(struct t *t)
{
	conncheck_checker_destroy(&t->c);
	assert_null(t->c);
	dns_resolver_destroy(&t->r);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

/* What a callback got, copied. */
struct got {
	int called;
	uint64_t at_ms;
	enum conncheck_ptr_status ptr;
	enum conncheck_fcrdns_status fcrdns;
	char ptr_name[CONNCHECK_NAME_MAX + 1], fcrdns_name[CONNCHECK_NAME_MAX + 1];
	char ip[INET6_ADDRSTRLEN];
	char domain[CONNCHECK_NAME_MAX + 1];
	struct conncheck_bl_zone zones[CONNCHECK_ZONES_MAX];
	size_t count, dropped, listed, temperror;
	/* set by the test: destroy this checker from the callback */
	conncheck_checker **destroy;
};

static void got_bl(struct got *g, const struct conncheck_bl_result *r)
{
	assert_true(r->count <= CONNCHECK_ZONES_MAX);
	if (r->count > 0) /* zones is NULL for none */
		memcpy(g->zones, r->zones, r->count * sizeof r->zones[0]);
	g->count = r->count;
	g->dropped = r->zones_dropped;
	g->listed = r->listed;
	g->temperror = r->temperror;
}

static void client_cb(const struct conncheck_client_result *r, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->at_ms = util_now_mono_ms();
	g->ptr = r->ptr;
	g->fcrdns = r->fcrdns;
	snprintf(g->ptr_name, sizeof g->ptr_name, "%s", r->ptr_name);
	snprintf(g->fcrdns_name, sizeof g->fcrdns_name, "%s", r->fcrdns_name);
	snprintf(g->ip, sizeof g->ip, "%s", r->ip);
	got_bl(g, &r->dnsbl);
	if (g->destroy != NULL)
		conncheck_checker_destroy(g->destroy);
}

static void rhsbl_cb(const struct conncheck_rhsbl_result *r, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->at_ms = util_now_mono_ms();
	snprintf(g->domain, sizeof g->domain, "%s", r->domain);
	got_bl(g, &r->rhsbl);
}

static void never_cb(const struct conncheck_client_result *r, void *arg)
{
	(void)r;
	(void)arg;
	fail_msg("a cancelled check's callback ran");
}

static void never_rhsbl_cb(const struct conncheck_rhsbl_result *r, void *arg)
{
	(void)r;
	(void)arg;
	fail_msg("a cancelled check's callback ran");
}

/* Run the loop until g's callback came (not "until the loop is idle":
 * c-ares keeps asking a dropped name after the check gave up on it). */
static void t_wait(struct t *t, struct got *g)
{
	while (g->called == 0)
		uv_run(&t->loop, UV_RUN_ONCE);
	assert_int_equal(g->called, 1);
}

static struct sockaddr_storage ip(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(25000);
	} else if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(25000);
	} else {
		fail_msg("bad test address %s", text);
	}
	return ss;
}

/* One client check of text in zones; returns once its callback came. */
static void client_check(struct t *t, const char *text, const char *const *zones, size_t n,
			 struct got *g)
{
	struct sockaddr_storage ss = ip(text);
	conncheck_job *job =
		conncheck_client_start(t->c, (const struct sockaddr *)&ss, zones, n, client_cb, g);
	assert_non_null(job);
	assert_int_equal(g->called, 0); /* never inside start */
	t_wait(t, g);
}

static const char *addr_text(const struct in_addr *a, char *out)
{
	return inet_ntop(AF_INET, a, out, INET_ADDRSTRLEN);
}

/* ---- PTR and FCrDNS ---- */

static void test_fcrdns_pass(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g = { 0 };
	client_check(&t, "192.0.2.10", NULL, 0, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g.ptr_name, "other.good.test"); /* the first */
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_PASS);
	assert_string_equal(g.fcrdns_name, "mail.good.test"); /* the one that matched, lowercase */
	assert_string_equal(g.ip, "192.0.2.10");
	assert_int_equal(g.count, 0);

	/* the first names do not exist or have no address: the third passes */
	struct got g2 = { 0 };
	client_check(&t, "192.0.2.80", NULL, 0, &g2);
	assert_int_equal(g2.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g2.ptr_name, "gone.test");
	assert_int_equal(g2.fcrdns, CONNCHECK_FCRDNS_PASS);
	assert_string_equal(g2.fcrdns_name, "ok80.test");
	t_end(&t);
}

static void test_fcrdns_mismatch(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g = { 0 };
	client_check(&t, "192.0.2.20", NULL, 0, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g.ptr_name, "liar.test");
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_FAIL);
	assert_string_equal(g.fcrdns_name, "");

	/* twelve names, the matching ones past the tenth: not looked at */
	struct got g2 = { 0 };
	client_check(&t, "192.0.2.70", NULL, 0, &g2);
	assert_int_equal(g2.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g2.ptr_name, "n01.many.test");
	assert_int_equal(g2.fcrdns, CONNCHECK_FCRDNS_FAIL);

	/* an IPv6 client whose name has only an IPv4 address */
	struct got g3 = { 0 };
	client_check(&t, "2001:db8::5", NULL, 0, &g3);
	assert_int_equal(g3.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g3.ptr_name, "v4only.test");
	assert_int_equal(g3.fcrdns, CONNCHECK_FCRDNS_FAIL);
	t_end(&t);
}

static void test_no_ptr(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g = { 0 };
	client_check(&t, "192.0.2.30", NULL, 0, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_NONE);
	assert_string_equal(g.ptr_name, "");
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_FAIL);
	assert_string_equal(g.fcrdns_name, "");
	t_end(&t);
}

static void test_ptr_temperror(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	/* SERVFAIL */
	struct got g = { 0 };
	client_check(&t, "192.0.2.40", NULL, 0, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_TEMPERROR);
	assert_string_equal(g.ptr_name, "");
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_TEMPERROR);
	/* the PTR answers, its name's lookup SERVFAILs */
	struct got g2 = { 0 };
	client_check(&t, "192.0.2.60", NULL, 0, &g2);
	assert_int_equal(g2.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g2.ptr_name, "fwd-broken.test");
	assert_int_equal(g2.fcrdns, CONNCHECK_FCRDNS_TEMPERROR);
	t_end(&t);
}

static void test_ptr_dropped(void **state)
{
	(void)state;
	struct t t;
	struct conncheck_settings set = { .timeout_ms = 300 };
	t_start(&t, &set);
	struct got g = { 0 };
	uint64_t t0 = util_now_mono_ms();
	client_check(&t, "192.0.2.50", NULL, 0, &g);
	uint64_t ms = g.at_ms - t0;
	assert_int_equal(g.ptr, CONNCHECK_PTR_TEMPERROR);
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_TEMPERROR);
	/* the check's deadline, not the resolver's (1 s, then 2 s) */
	if (ms < 290 || ms > 2500)
		fail_msg("ended after %llu ms", (unsigned long long)ms);
	t_end(&t);
}

static void test_ipv6(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	static const char *const zones[] = { "dnsbl.test" };
	struct got g = { 0 };
	client_check(&t, "2001:db8::1", zones, 1, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_FOUND);
	assert_string_equal(g.ptr_name, "v6host.test");
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_PASS);
	assert_string_equal(g.ip, "2001:db8::1");
	assert_int_equal(g.count, 1);
	assert_string_equal(g.zones[0].query, V6_1 ".dnsbl.test");
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_LISTED);
	assert_string_equal(g.zones[0].txt, "v6 listed");

	/* an IPv4-mapped client is its IPv4 address, for every lookup */
	struct got g2 = { 0 };
	client_check(&t, "::ffff:192.0.2.10", zones, 1, &g2);
	assert_string_equal(g2.ip, "192.0.2.10");
	assert_int_equal(g2.fcrdns, CONNCHECK_FCRDNS_PASS);
	assert_string_equal(g2.fcrdns_name, "mail.good.test");
	assert_string_equal(g2.zones[0].query, "10.2.0.192.dnsbl.test");
	assert_int_equal(g2.zones[0].status, CONNCHECK_BL_LISTED);
	t_end(&t);
}

/* ---- DNSBL ---- */

static void test_dnsbl(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	static const char *const zones[] = {
		"DNSBL.Test.", "bl-broken.test", "bl-refuse.test", "bl-fail.test",
		"bl-nodata.test", "bl-aaaa.test", "bad..zone", "nowhere.test",
	};
	struct got g = { 0 };
	client_check(&t, "192.0.2.10", zones, 8, &g);
	assert_int_equal(g.count, 8);
	assert_int_equal(g.dropped, 0);
	assert_int_equal(g.listed, 1);
	assert_int_equal(g.temperror, 1);
	char a[INET_ADDRSTRLEN];

	const struct conncheck_bl_zone *z = &g.zones[0];
	assert_string_equal(z->zone, "dnsbl.test");
	assert_string_equal(z->query, "10.2.0.192.dnsbl.test");
	assert_int_equal(z->status, CONNCHECK_BL_LISTED);
	assert_string_equal(z->detail, "listed");
	assert_int_equal(z->naddrs, 2);
	assert_string_equal(addr_text(&z->addrs[0], a), "127.0.0.2");
	assert_string_equal(addr_text(&z->addrs[1], a), "127.0.0.4");
	assert_string_equal(z->txt, "Listed: see https://dnsbl.test/q?192.0.2.10");

	z = &g.zones[1]; /* outside 127/8 */
	assert_int_equal(z->status, CONNCHECK_BL_IGNORED);
	assert_string_equal(z->detail, "answer outside 127/8");
	assert_int_equal(z->naddrs, 1);
	assert_string_equal(addr_text(&z->addrs[0], a), "192.0.2.200");
	assert_string_equal(z->txt, "");

	z = &g.zones[2]; /* 127.255.255.254 */
	assert_int_equal(z->status, CONNCHECK_BL_IGNORED);
	assert_string_equal(z->detail, "zone refused the query");

	z = &g.zones[3];
	assert_int_equal(z->status, CONNCHECK_BL_TEMPERROR);
	assert_string_equal(z->detail, "dns failure");

	z = &g.zones[4];
	assert_int_equal(z->status, CONNCHECK_BL_NOT_LISTED);
	assert_string_equal(z->detail, "no A record");

	z = &g.zones[5]; /* an AAAA only: no A */
	assert_int_equal(z->status, CONNCHECK_BL_NOT_LISTED);
	assert_int_equal(z->naddrs, 0);

	z = &g.zones[6];
	assert_int_equal(z->status, CONNCHECK_BL_UNCHECKED);
	assert_string_equal(z->detail, "bad zone");
	assert_string_equal(z->zone, "bad..zone");
	assert_string_equal(z->query, "");

	z = &g.zones[7];
	assert_int_equal(z->status, CONNCHECK_BL_NOT_LISTED);
	assert_string_equal(z->detail, "nxdomain");

	/* not listed; listed without a TXT; the RFC 5782 test entry */
	struct got g2 = { 0 };
	client_check(&t, "192.0.2.30", zones, 1, &g2);
	assert_int_equal(g2.zones[0].status, CONNCHECK_BL_NOT_LISTED);
	assert_string_equal(g2.zones[0].detail, "nxdomain");
	assert_int_equal(g2.listed, 0);
	struct got g3 = { 0 };
	client_check(&t, "192.0.2.20", zones, 1, &g3);
	assert_int_equal(g3.zones[0].status, CONNCHECK_BL_LISTED);
	assert_string_equal(addr_text(&g3.zones[0].addrs[0], a), "127.0.0.3");
	assert_string_equal(g3.zones[0].txt, "");
	struct got g4 = { 0 };
	client_check(&t, "127.0.0.2", zones, 1, &g4);
	assert_int_equal(g4.zones[0].status, CONNCHECK_BL_LISTED);
	/* 300 bytes of TXT: the first 255 */
	assert_int_equal(strlen(g4.zones[0].txt), CONNCHECK_TXT_MAX);
	assert_int_equal(g4.zones[0].txt[199], 'a');
	assert_int_equal(g4.zones[0].txt[200], 'b');
	t_end(&t);
}

static void test_dnsbl_no_txt(void **state)
{
	(void)state;
	struct t t;
	struct conncheck_settings set = { .no_txt = 1 };
	t_start(&t, &set);
	static const char *const zones[] = { "dnsbl.test" };
	struct got g = { 0 };
	client_check(&t, "192.0.2.10", zones, 1, &g);
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_LISTED);
	assert_string_equal(g.zones[0].txt, "");
	t_end(&t);
}

static void test_dnsbl_timeout(void **state)
{
	(void)state;
	struct t t;
	struct conncheck_settings set = { .timeout_ms = 300 };
	t_start(&t, &set);
	static const char *const zones[] = { "bl-drop.test", "dnsbl.test" };
	struct got g = { 0 };
	uint64_t t0 = util_now_mono_ms();
	client_check(&t, "192.0.2.10", zones, 2, &g);
	assert_true(g.at_ms - t0 >= 290);
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_TEMPERROR);
	assert_string_equal(g.zones[0].detail, "timed out");
	assert_int_equal(g.zones[1].status, CONNCHECK_BL_LISTED); /* answered in time */
	assert_int_equal(g.ptr, CONNCHECK_PTR_FOUND);
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_PASS);
	assert_int_equal(g.temperror, 1);
	assert_int_equal(g.listed, 1);
	t_end(&t);
}

static void test_zone_limits(void **state)
{
	(void)state;
	struct t t;
	struct conncheck_settings set = { .max_zones = 2 };
	t_start(&t, &set);
	/* a zone of 200 bytes: an IPv4 name fits under it, an IPv6 one not */
	char longzone[256];
	memset(longzone, 'z', 200);
	for (size_t i = 50; i < 200; i += 50)
		longzone[i] = '.';
	memcpy(longzone + 195, ".test", 6);
	const char *zones[] = { longzone, "dnsbl.test", "never.test" };
	struct got g = { 0 };
	client_check(&t, "2001:db8::1", zones, 3, &g);
	assert_int_equal(g.count, 2);
	assert_int_equal(g.dropped, 1);
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_UNCHECKED);
	assert_string_equal(g.zones[0].detail, "name too long");
	assert_string_equal(g.zones[0].zone, longzone);
	assert_int_equal(g.zones[1].status, CONNCHECK_BL_LISTED);
	struct got g2 = { 0 };
	client_check(&t, "192.0.2.30", zones, 1, &g2);
	assert_int_equal(g2.zones[0].status, CONNCHECK_BL_NOT_LISTED);
	assert_int_equal(strlen(g2.zones[0].query), strlen("30.2.0.192.") + 200);
	t_end(&t);
}

static void test_no_client_address(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	static const char *const zones[] = { "dnsbl.test", "bad zone" };
	struct got g = { 0 };
	conncheck_client_start(t.c, (const struct sockaddr *)&un, zones, 2, client_cb, &g);
	assert_int_equal(g.called, 0);
	t_wait(&t, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_NONE);
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_FAIL);
	assert_string_equal(g.ip, "");
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_UNCHECKED);
	assert_string_equal(g.zones[0].detail, "no client address");
	assert_string_equal(g.zones[1].detail, "bad zone");
	struct got g2 = { 0 };
	conncheck_client_start(t.c, NULL, NULL, 0, client_cb, &g2);
	assert_int_equal(g2.called, 0);
	t_wait(&t, &g2);
	assert_int_equal(g2.ptr, CONNCHECK_PTR_NONE);
	t_end(&t);
}

/* ---- RHSBL ---- */

static void rhsbl_check(struct t *t, const char *domain, const char *const *zones, size_t n,
			struct got *g)
{
	conncheck_rhsbl_start(t->c, domain, zones, n, rhsbl_cb, g);
	assert_int_equal(g->called, 0);
	t_wait(t, g);
}

static void test_rhsbl(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	static const char *const zones[] = { "rhsbl.test", "Bad_.zone-" };
	struct got g = { 0 };
	rhsbl_check(&t, "Spammer.EXAMPLE.", zones, 2, &g);
	assert_string_equal(g.domain, "spammer.example");
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_LISTED);
	assert_string_equal(g.zones[0].query, "spammer.example.rhsbl.test");
	assert_string_equal(g.zones[0].txt, "spam source");
	assert_int_equal(g.zones[1].status, CONNCHECK_BL_UNCHECKED);
	assert_string_equal(g.zones[1].detail, "bad zone");
	assert_int_equal(g.listed, 1);

	struct got g2 = { 0 };
	rhsbl_check(&t, "clean.example", zones, 1, &g2);
	assert_int_equal(g2.zones[0].status, CONNCHECK_BL_NOT_LISTED);
	assert_string_equal(g2.zones[0].detail, "nxdomain");

	/* no domain to check: every zone UNCHECKED, the callback later */
	static const char *const bad[] = { "[192.0.2.1]", "", "localhost", "a..b", "-a.b",
					   "a-.b", "a b.c", "x.y\r\n" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct got g3 = { 0 };
		rhsbl_check(&t, bad[i], zones, 1, &g3);
		assert_string_equal(g3.domain, "");
		assert_int_equal(g3.zones[0].status, CONNCHECK_BL_UNCHECKED);
		assert_string_equal(g3.zones[0].detail, "bad domain");
	}
	struct got g4 = { 0 };
	rhsbl_check(&t, NULL, zones, 1, &g4);
	assert_string_equal(g4.zones[0].detail, "bad domain");
	/* together over 253 bytes */
	char longdom[256];
	memset(longdom, 'd', 245);
	for (size_t i = 60; i < 245; i += 60)
		longdom[i] = '.';
	longdom[245] = '\0';
	struct got g5 = { 0 };
	rhsbl_check(&t, longdom, zones, 1, &g5);
	assert_string_equal(g5.domain, longdom);
	assert_string_equal(g5.zones[0].detail, "name too long");
	t_end(&t);
}

/* ---- cancel and destroy ---- */

static void test_cancel(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct sockaddr_storage slow = ip("192.0.2.50"), fast = ip("192.0.2.10");
	static const char *const zones[] = { "bl-drop.test", "dnsbl.test" };
	/* at once, before any answer */
	conncheck_job *j1 = conncheck_client_start(t.c, (const struct sockaddr *)&slow, zones, 2,
						   never_cb, NULL);
	conncheck_cancel(&j1);
	assert_null(j1);
	conncheck_cancel(&j1);
	/* after some answers came (the PTR's forward lookups in flight) */
	conncheck_job *j2 = conncheck_client_start(t.c, (const struct sockaddr *)&fast, zones, 2,
						   never_cb, NULL);
	for (int i = 0; i < 20; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	conncheck_cancel(&j2);
	/* one that is left to finish */
	struct got g = { 0 };
	client_check(&t, "192.0.2.20", NULL, 0, &g);
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_FAIL);
	t_end(&t);
}

static void test_destroy_in_flight(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct sockaddr_storage slow = ip("192.0.2.50"), fast = ip("192.0.2.10");
	static const char *const zones[] = { "bl-drop.test", "dnsbl.test" };
	/* two that wait for dropped names, some of their lookups answered */
	conncheck_client_start(t.c, (const struct sockaddr *)&slow, zones, 2, never_cb, NULL);
	conncheck_client_start(t.c, (const struct sockaddr *)&fast, zones, 2, never_cb, NULL);
	for (int i = 0; i < 10; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	/* one just started, one with nothing to ask (its callback due on the
	 * next turn) */
	conncheck_rhsbl_start(t.c, "spammer.example", (const char *const[]){ "rhsbl.test" }, 1,
			      never_rhsbl_cb, NULL);
	conncheck_client_start(t.c, NULL, NULL, 0, never_cb, NULL);
	conncheck_checker_destroy(&t.c);
	/* no callback comes, and everything is freed (ASan) */
	for (int i = 0; i < 10; i++)
		uv_run(&t.loop, UV_RUN_NOWAIT);
	t_end(&t);
}

static void test_destroy_from_callback(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct sockaddr_storage slow = ip("192.0.2.50");
	conncheck_client_start(t.c, (const struct sockaddr *)&slow, NULL, 0, never_cb, NULL);
	struct got g = { .destroy = &t.c };
	client_check(&t, "192.0.2.30", NULL, 0, &g);
	assert_null(t.c);
	assert_int_equal(g.ptr, CONNCHECK_PTR_NONE);
	t_end(&t);
}

static void test_resolver_destroyed_first(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct sockaddr_storage slow = ip("192.0.2.50");
	static const char *const zones[] = { "bl-drop.test" };
	struct got g = { 0 };
	conncheck_client_start(t.c, (const struct sockaddr *)&slow, zones, 1, client_cb, &g);
	uv_run(&t.loop, UV_RUN_NOWAIT);
	dns_resolver_destroy(&t.r);
	assert_int_equal(g.called, 0); /* not inside lib/dns */
	t_wait(&t, &g);
	assert_int_equal(g.ptr, CONNCHECK_PTR_TEMPERROR);
	assert_int_equal(g.fcrdns, CONNCHECK_FCRDNS_TEMPERROR);
	assert_int_equal(g.zones[0].status, CONNCHECK_BL_TEMPERROR);
	t_end(&t);
}

/* ---- names, settings ---- */

static void test_names(void **state)
{
	(void)state;
	char out[CONNCHECK_NAME_MAX + 1];
	struct sockaddr_storage v4 = ip("192.0.2.1"), v6 = ip("2001:db8::1"),
				mapped = ip("::ffff:192.0.2.1"), low = ip("::1");
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&v4, "Zen.Spamhaus.ORG.", out,
						sizeof out),
			 0);
	assert_string_equal(out, "1.2.0.192.zen.spamhaus.org");
	assert_int_equal(
		conncheck_reverse_name((struct sockaddr *)&mapped, "dnsbl.test", out, sizeof out), 0);
	assert_string_equal(out, "1.2.0.192.dnsbl.test");
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&v6, "dnsbl.test", out, sizeof out),
			 0);
	assert_string_equal(out, V6_1 ".dnsbl.test");
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&low, "x.test", out, sizeof out),
			 0);
	assert_string_equal(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.x.test");
	/* exactly enough room, one byte short */
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&v4, "d.t", out, 14), 0);
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&v4, "d.t", out, 13), -1);
	assert_string_equal(out, "");
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	assert_int_equal(conncheck_reverse_name((struct sockaddr *)&un, "d.t", out, sizeof out), -1);
	static const char *const bad_zones[] = { "", ".", "one", "a..b", "a.b..", "-a.b", "a-.b",
						 "a.b-", "a b.c", "a.b/c", "a.\xc3\xa9.c" };
	for (size_t i = 0; i < sizeof bad_zones / sizeof bad_zones[0]; i++) {
		strcpy(out, "junk");
		assert_int_equal(conncheck_name_normalize(bad_zones[i], out, sizeof out), -1);
		assert_string_equal(out, "");
		assert_int_equal(conncheck_reverse_name((struct sockaddr *)&v4, bad_zones[i], out,
							sizeof out),
				 -1);
	}
	assert_int_equal(conncheck_name_normalize("A-1.b_C.", out, sizeof out), 0);
	assert_string_equal(out, "a-1.b_c");
	/* 63-byte labels and 253 bytes, not 64 and 254 */
	char name[300];
	memset(name, 'x', sizeof name);
	name[63] = '.';
	name[64 + 63] = '.';
	name[128 + 63] = '.';
	name[253] = '\0';
	assert_int_equal(conncheck_name_normalize(name, out, sizeof out), 0);
	assert_int_equal(conncheck_name_normalize(name, out, 253), -1);
	name[253] = '.';
	name[254] = '\0';
	assert_int_equal(conncheck_name_normalize(name, out, sizeof out), 0);
	name[254] = 'x';
	name[255] = '\0';
	assert_int_equal(conncheck_name_normalize(name, out, sizeof out), -1);
	memset(name, 'x', 64);
	strcpy(name + 64, ".test");
	assert_int_equal(conncheck_name_normalize(name, out, sizeof out), -1);
	/* the PTR rule: one label is enough */
	assert_int_equal(conncheck__name("LocalHost.", 1, out, sizeof out), 0);
	assert_string_equal(out, "localhost");

	/* TXT made safe */
	char txt[CONNCHECK_TXT_MAX + 1];
	conncheck__txt_clean("a\r\nb\0c\x7f\xff", 8, txt, sizeof txt);
	assert_string_equal(txt, "a??b?c??");
	conncheck__txt_clean("abcdef", 6, txt, 4);
	assert_string_equal(txt, "abc");

	/* answers */
	struct sockaddr_storage as[6] = { ip("2001:db8::1"), ip("127.255.255.252"), ip("10.0.0.1"),
					  ip("127.0.0.10"), ip("127.1.2.3"), ip("127.255.254.1") };
	struct conncheck_bl_zone z = { 0 };
	conncheck__bl_classify(as, 6, &z);
	assert_int_equal(z.status, CONNCHECK_BL_LISTED);
	assert_int_equal(z.naddrs, 3);
	conncheck__bl_classify(as, 3, &z);
	assert_int_equal(z.status, CONNCHECK_BL_IGNORED);
	assert_string_equal(z.detail, "zone refused the query");
	assert_int_equal(z.naddrs, 2);
	conncheck__bl_classify(as + 2, 1, &z);
	assert_string_equal(z.detail, "answer outside 127/8");
	conncheck__bl_classify(as, 1, &z);
	assert_int_equal(z.status, CONNCHECK_BL_NOT_LISTED);
	assert_int_equal(z.naddrs, 0);
	struct sockaddr_storage many[8];
	for (int i = 0; i < 8; i++)
		many[i] = ip("127.0.0.2");
	conncheck__bl_classify(many, 8, &z);
	assert_int_equal(z.naddrs, CONNCHECK_BL_ADDRS_MAX);
}

static void test_settings(void **state)
{
	(void)state;
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	const struct conncheck_settings bad[] = {
		{ .timeout_ms = 9 },
		{ .timeout_ms = 60001 },
		{ .max_zones = 17 },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		conncheck_checker *c = (conncheck_checker *)1;
		const char *error = NULL;
		assert_int_equal(conncheck_checker_create(&loop, NULL, &bad[i], &c, &error), -1);
		assert_null(c);
		assert_non_null(error);
	}
	struct conncheck_settings def = conncheck_settings_default();
	assert_int_equal(def.timeout_ms, 5000);
	assert_int_equal(def.max_zones, 16);
	conncheck_checker *c = NULL;
	const char *error = NULL;
	assert_int_equal(conncheck_checker_create(&loop, NULL, NULL, &c, &error), 0);
	conncheck_checker_destroy(&c);
	assert_null(c);
	conncheck_checker_destroy(&c);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_string_equal(conncheck_ptr_status_name(CONNCHECK_PTR_TEMPERROR), "temperror");
	assert_string_equal(conncheck_fcrdns_status_name(CONNCHECK_FCRDNS_PASS), "pass");
	assert_string_equal(conncheck_bl_status_name(CONNCHECK_BL_IGNORED), "ignored");
	assert_string_equal(conncheck_bl_status_name((enum conncheck_bl_status)99), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fcrdns_pass),
		cmocka_unit_test(test_fcrdns_mismatch),
		cmocka_unit_test(test_no_ptr),
		cmocka_unit_test(test_ptr_temperror),
		cmocka_unit_test(test_ptr_dropped),
		cmocka_unit_test(test_ipv6),
		cmocka_unit_test(test_dnsbl),
		cmocka_unit_test(test_dnsbl_no_txt),
		cmocka_unit_test(test_dnsbl_timeout),
		cmocka_unit_test(test_zone_limits),
		cmocka_unit_test(test_no_client_address),
		cmocka_unit_test(test_rhsbl),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_destroy_in_flight),
		cmocka_unit_test(test_destroy_from_callback),
		cmocka_unit_test(test_resolver_destroyed_first),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
