/* Tests of dns.h against a real DNS server: tests/support/dnszone.py
 * (python3-dnslib) on a free 127.0.0.1 port, started once for the group
 * and stopped by its PID. Each test makes its own loop and resolver and
 * runs the loop until the lookups are done; ASan (the MAIL_FUZZ build)
 * finds what a cancel or a destroy would leak. */
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
#include <unistd.h>

#include "buf.h"
#include "dns-fixture.h"
#include "dns.h"
#include "dns-private.h"
#include "util.h"
#include "xalloc.h"

/* A DKIM-like key: base64 of the length of a 2048-bit (392 characters)
 * or 4096-bit (736) RSA public key, in a fixed pattern. */
static char *test_key(size_t len)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *k = xmalloc(len + 1);
	for (size_t i = 0; i < len; i++)
		k[i] = b64[(i * 7 + 3) % 64];
	k[len] = '\0';
	return k;
}

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

struct fixture {
	mailtest_dns *dns;
	char *dkim2048, *dkim4096;
};
static struct fixture fx;

static const char zone_head[] =
	"$ORIGIN example.test.\n"
	"$TTL 300\n"
	/* preferences out of order on the wire */
	"@ IN MX 20 mx-b\n"
	"@ IN MX 10 mx-a\n"
	"@ IN MX 30 mx-c\n"
	"mx-a IN A 127.0.0.11\n"
	"mx-b IN A 127.0.0.12\n"
	"mx-c IN A 127.0.0.13\n"
	"mx-c IN AAAA 2001:db8::13\n"
	/* three of preference 10, two of 20 */
	"equal IN MX 20 e4.equal\n"
	"equal IN MX 10 e1.equal\n"
	"equal IN MX 20 e5.equal\n"
	"equal IN MX 10 e2.equal\n"
	"equal IN MX 10 e3.equal\n"
	"e1.equal IN A 127.0.1.1\n"
	"e2.equal IN A 127.0.1.2\n"
	"e3.equal IN A 127.0.1.3\n"
	"e4.equal IN A 127.0.1.4\n"
	"e5.equal IN A 127.0.1.5\n"
	/* no MX: the domain itself */
	"implicit IN A 127.0.0.20\n"
	"implicit IN AAAA 2001:db8::20\n"
	"implicit IN TXT \"v=spf1 -all\"\n"
	"nullmx IN MX 0 .\n"
	"halfnull IN MX 0 .\n"
	"halfnull IN MX 10 mx-a.example.test.\n"
	/* an exchanger that is a CNAME, two links */
	"cnamemx IN MX 10 alias.cnamemx\n"
	"alias.cnamemx IN CNAME alias2.cnamemx\n"
	"alias2.cnamemx IN CNAME real.cnamemx\n"
	"real.cnamemx IN A 127.0.0.30\n"
	/* exchangers that fail, each its own way, before one that works */
	"partial IN MX 10 noaddr.partial\n"
	"partial IN MX 20 gone.partial\n"
	"partial IN MX 30 broken.partial\n"
	"partial IN MX 40 good.partial\n"
	"noaddr.partial IN TXT \"no address here\"\n"
	"broken.partial IN A 127.0.0.41\n"
	"good.partial IN A 127.0.0.40\n"
	"alltemp IN MX 10 broken.partial\n"
	"alltemp IN MX 20 gone.partial\n"
	"allgone IN MX 10 gone.partial\n"
	"allgone IN MX 20 noaddr.partial\n"
	"dup IN MX 10 mx-a\n"
	"dup IN MX 20 MX-A\n"
	"dual IN A 127.0.0.50\n"
	"dual IN A 127.0.0.51\n"
	"dual IN AAAA 2001:db8::50\n"
	"v6only IN AAAA 2001:db8::60\n"
	"multi IN TXT \"v=spf1 \" \"ip4:192.0.2.0/24 \" \"-all\"\n"
	/* SRV (RFC 6186): two records, and a service not offered */
	"_imaps._tcp IN SRV 0 1 993 mx-a.example.test.\n"
	"_imaps._tcp IN SRV 10 5 9993 MX-B.example.test.\n"
	"_pop3._tcp IN SRV 0 0 0 .\n"
	"multi IN TXT \"second\"\n"
	"11.0.0.127.in-addr.arpa. IN PTR mx-a.example.test.\n"
	"11.0.0.127.in-addr.arpa. IN PTR other.example.test.\n"
	"0.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. IN PTR "
	"dual.example.test.\n";

static int group_setup(void **state)
{
	(void)state;
	buf z;
	buf_init(&z);
	buf_append_str(&z, zone_head);
	/* 20 exchangers (the limit keeps 16); 20 + 20 addresses (16 kept) */
	for (int i = 1; i <= 20; i++) {
		buf_printf(&z, "many IN MX %d m%02d.many\n", i, i);
		buf_printf(&z, "m%02d.many IN A 127.0.3.%d\n", i, i);
		buf_printf(&z, "manyaddr IN A 127.0.2.%d\n", i);
		buf_printf(&z, "manyaddr IN AAAA 2001:db8::2:%d\n", i);
	}
	/* 40 SRV records (the limit keeps 32) */
	for (int i = 1; i <= 40; i++)
		buf_printf(&z, "_many._tcp IN SRV %d 0 %d m%02d.many\n", i, 1000 + i, i);
	char *k2048 = test_key(392), *k4096 = test_key(736);
	fx.dkim2048 = xasprintf("v=DKIM1; k=rsa; p=%s", k2048);
	fx.dkim4096 = xasprintf("v=DKIM1; k=rsa; p=%s", k4096);
	free(k2048);
	free(k4096);
	zone_txt(&z, "sel2048._domainkey", fx.dkim2048);
	zone_txt(&z, "sel4096._domainkey", fx.dkim4096);
	buf_append(&z, "", 1);
	static const char *const args[] = { "--servfail", "broken.partial.example.test",
					    "--refused", "refused.example.test",
					    "--drop", "slow.example.test", NULL };
	int r = mailtest_dns_start((const char *)z.data, args, &fx.dns);
	buf_deinit(&z);
	return r;
}

static int group_teardown(void **state)
{
	(void)state;
	mailtest_dns_stop(&fx.dns);
	free(fx.dkim2048);
	free(fx.dkim4096);
	return 0;
}

/* ---- one loop and one resolver per test ---- */

struct t {
	uv_loop_t loop;
	dns_resolver *r;
};

static void t_start(struct t *t, const struct dns_settings *given)
{
	struct dns_settings set = { .server = mailtest_dns_server(fx.dns), .timeout_ms = 1000 };
	if (given != NULL)
		set = *given;
	const char *error = NULL;
	assert_int_equal(uv_loop_init(&t->loop), 0);
	if (dns_resolver_create(&t->loop, &set, &t->r, &error) < 0)
		fail_msg("dns_resolver_create: %s", error);
}

static void t_run(struct t *t)
{
	uv_run(&t->loop, UV_RUN_DEFAULT);
}

/* Destroy the resolver, let its handles close, and check none is left. */
static void t_end(struct t *t)
{
	dns_resolver_destroy(&t->r);
	assert_null(t->r);
	uv_run(&t->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t->loop), 0);
}

/* What a callback got, copied. */
struct got {
	int called;
	enum dns_status status;
	char text[4096]; /* host: "a1 a2"; txt: "[r1][r2]"; ptr: "n1 n2" */
	struct dns_mx_result *mx;
	int had_result;
};

static void addrs_text(const struct dns_addrs *a, char *out, size_t size)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < a->count && o < size; i++) {
		char ip[INET6_ADDRSTRLEN];
		const struct sockaddr_storage *ss = &a->addrs[i];
		if (ss->ss_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, sizeof ip);
		else
			inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, sizeof ip);
		o += (size_t)snprintf(out + o, size - o, "%s%s", i > 0 ? " " : "", ip);
	}
}

static void host_cb(enum dns_status status, const struct dns_addrs *result, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	g->had_result = result != NULL;
	if (result != NULL)
		addrs_text(result, g->text, sizeof g->text);
}

static void txt_cb(enum dns_status status, const struct dns_txt_result *result, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	g->had_result = result != NULL;
	size_t o = 0;
	for (size_t i = 0; result != NULL && i < result->count && o < sizeof g->text; i++) {
		assert_int_equal(strlen(result->records[i].data), result->records[i].len);
		o += (size_t)snprintf(g->text + o, sizeof g->text - o, "[%s]",
				      result->records[i].data);
	}
}

static void names_cb(enum dns_status status, const struct dns_names *result, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	g->had_result = result != NULL;
	size_t o = 0;
	for (size_t i = 0; result != NULL && i < result->count && o < sizeof g->text; i++)
		o += (size_t)snprintf(g->text + o, sizeof g->text - o, "%s%s", i > 0 ? " " : "",
				      result->names[i]);
}

static void mx_cb(enum dns_status status, const struct dns_mx_result *result, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	g->had_result = result != NULL;
	if (result != NULL)
		g->mx = dns_mx_result_dup(result);
}

/* "name/pref/status/addrs;..." of a copied MX result. */
static const char *mx_text(const struct dns_mx_result *mx, char *out, size_t size)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < mx->count && o < size; i++) {
		const struct dns_mx_host *h = &mx->hosts[i];
		char addrs[1024];
		addrs_text(&h->addrs, addrs, sizeof addrs);
		o += (size_t)snprintf(out + o, size - o, "%s%s/%u/%s/%s", i > 0 ? ";" : "", h->name,
				      h->preference, dns_status_name(h->status), addrs);
	}
	return out;
}

static void resolve_mx(const char *domain, struct got *g)
{
	struct t t;
	t_start(&t, NULL);
	memset(g, 0, sizeof *g);
	dns_request *req = dns_resolve_mx(t.r, domain, mx_cb, g);
	assert_non_null(req);
	assert_int_equal(g->called, 0);
	assert_int_equal(dns_resolver_pending(t.r), 1);
	t_run(&t);
	assert_int_equal(g->called, 1);
	assert_int_equal(dns_resolver_pending(t.r), 0);
	t_end(&t);
}

/* ---- MX ---- */

static void test_mx_order(void **state)
{
	(void)state;
	struct got g;
	char text[2048];
	resolve_mx("example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.mx->implicit, 0);
	assert_string_equal(mx_text(g.mx, text, sizeof text),
			    "mx-a.example.test/10/ok/127.0.0.11;"
			    "mx-b.example.test/20/ok/127.0.0.12;"
			    "mx-c.example.test/30/ok/2001:db8::13 127.0.0.13");
	dns_mx_result_free(&g.mx);
	assert_null(g.mx);
}

/* The first three (preference 10) come in several orders over many
 * lookups on one resolver; the last two (20) always after them. Two
 * resolvers with the same seed give the same orders (one lookup at a
 * time: the random source is drawn as answers arrive). */
static void test_mx_equal_preference(void **state)
{
	(void)state;
	enum { LOOKUPS = 60 };
	char orders[2][LOOKUPS][8];
	for (int pass = 0; pass < 2; pass++) {
		struct t t;
		struct dns_settings set = { .server = mailtest_dns_server(fx.dns), .seed = 42 };
		t_start(&t, &set);
		for (int i = 0; i < LOOKUPS; i++) {
			struct got g = { 0 };
			dns_resolve_mx(t.r, "equal.example.test", mx_cb, &g);
			t_run(&t);
			assert_int_equal(g.status, DNS_OK);
			assert_int_equal(g.mx->count, 5);
			for (size_t k = 0; k < 5; k++) {
				const struct dns_mx_host *h = &g.mx->hosts[k];
				assert_int_equal(h->preference, k < 3 ? 10 : 20);
				orders[pass][i][k] = h->name[1]; /* "e1.equal..." */
			}
			orders[pass][i][5] = '\0';
			dns_mx_result_free(&g.mx);
		}
		t_end(&t);
	}
	int distinct10 = 0, distinct20 = 0;
	for (int i = 0; i < LOOKUPS; i++) {
		int seen10 = 0, seen20 = 0;
		for (int k = 0; k < i; k++) {
			seen10 |= memcmp(orders[0][i], orders[0][k], 3) == 0;
			seen20 |= memcmp(orders[0][i] + 3, orders[0][k] + 3, 2) == 0;
		}
		distinct10 += !seen10;
		distinct20 += !seen20;
		assert_string_equal(orders[0][i], orders[1][i]);
	}
	/* 6 orders of three, 2 of two: all show up in 60 lookups but for
	 * astronomically bad luck (and the seed is fixed) */
	if (distinct10 < 3 || distinct20 < 2)
		fail_msg("%d orders of the three, %d of the two", distinct10, distinct20);
}

static void test_mx_implicit(void **state)
{
	(void)state;
	struct got g;
	char text[2048];
	resolve_mx("implicit.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.mx->implicit, 1);
	assert_string_equal(mx_text(g.mx, text, sizeof text),
			    "implicit.example.test/0/ok/2001:db8::20 127.0.0.20");
	dns_mx_result_free(&g.mx);
}

static void test_mx_null(void **state)
{
	(void)state;
	struct got g;
	resolve_mx("nullmx.example.test", &g);
	assert_int_equal(g.status, DNS_NULL_MX);
	assert_int_equal(g.had_result, 0);
	assert_true(dns_status_permanent(g.status));
	/* "." among real exchangers is no null MX: it is skipped */
	char text[2048];
	resolve_mx("halfnull.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(mx_text(g.mx, text, sizeof text), "mx-a.example.test/10/ok/127.0.0.11");
	dns_mx_result_free(&g.mx);
}

static void test_mx_cname_target(void **state)
{
	(void)state;
	struct got g;
	char text[2048];
	resolve_mx("cnamemx.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	/* the name as the MX gives it, the addresses of the chain's end */
	assert_string_equal(mx_text(g.mx, text, sizeof text),
			    "alias.cnamemx.example.test/10/ok/127.0.0.30");
	dns_mx_result_free(&g.mx);
}

static void test_mx_hosts_without_addresses(void **state)
{
	(void)state;
	struct got g;
	char text[2048];
	resolve_mx("partial.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(mx_text(g.mx, text, sizeof text),
			    "noaddr.partial.example.test/10/nodata/;"
			    "gone.partial.example.test/20/nxdomain/;"
			    "broken.partial.example.test/30/temp/;"
			    "good.partial.example.test/40/ok/127.0.0.40");
	dns_mx_result_free(&g.mx);
	/* none with an address: temporary when one failed so */
	resolve_mx("alltemp.example.test", &g);
	assert_int_equal(g.status, DNS_TEMP);
	assert_int_equal(g.mx->count, 2);
	dns_mx_result_free(&g.mx);
	/* ... permanent when none did */
	resolve_mx("allgone.example.test", &g);
	assert_int_equal(g.status, DNS_NODATA);
	assert_true(dns_status_permanent(g.status));
	assert_string_equal(mx_text(g.mx, text, sizeof text),
			    "gone.partial.example.test/10/nxdomain/;"
			    "noaddr.partial.example.test/20/nodata/");
	dns_mx_result_free(&g.mx);
}

static void test_mx_limits(void **state)
{
	(void)state;
	struct got g;
	resolve_mx("many.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_int_equal(g.mx->count, DNS_MX_HOSTS_MAX_DEFAULT);
	assert_int_equal(g.mx->dropped, 20 - DNS_MX_HOSTS_MAX_DEFAULT);
	for (size_t i = 0; i < g.mx->count; i++)
		assert_int_equal(g.mx->hosts[i].preference, i + 1);
	dns_mx_result_free(&g.mx);
	/* a name twice (in any case): kept once, at its best preference */
	char text[2048];
	resolve_mx("dup.example.test", &g);
	assert_string_equal(mx_text(g.mx, text, sizeof text), "mx-a.example.test/10/ok/127.0.0.11");
	assert_int_equal(g.mx->dropped, 1);
	dns_mx_result_free(&g.mx);
	/* smaller limits */
	struct t t;
	struct dns_settings set = { .server = mailtest_dns_server(fx.dns),
				    .limits = { .mx_hosts_max = 2, .addrs_max = 3 } };
	t_start(&t, &set);
	memset(&g, 0, sizeof g);
	dns_resolve_mx(t.r, "many.example.test", mx_cb, &g);
	struct got h = { 0 };
	dns_resolve_host(t.r, "manyaddr.example.test", host_cb, &h);
	t_run(&t);
	assert_int_equal(g.mx->count, 2);
	assert_int_equal(g.mx->dropped, 18);
	dns_mx_result_free(&g.mx);
	assert_string_equal(h.text, "2001:db8::2:1 127.0.2.1 127.0.2.2");
	t_end(&t);
}

static void test_mx_failures(void **state)
{
	(void)state;
	struct got g;
	resolve_mx("nope.example.test", &g);
	assert_int_equal(g.status, DNS_NXDOMAIN);
	assert_int_equal(g.had_result, 0);
	resolve_mx("refused.example.test", &g);
	assert_int_equal(g.status, DNS_TEMP);
	assert_false(dns_status_permanent(g.status));
	resolve_mx("broken.partial.example.test", &g);
	assert_int_equal(g.status, DNS_TEMP);
	resolve_mx("bad..example.test", &g);
	assert_int_equal(g.status, DNS_BADNAME);
}

/* ---- A and AAAA ---- */

static void resolve_host(struct t *t, const char *name, struct got *g)
{
	memset(g, 0, sizeof *g);
	dns_resolve_host(t->r, name, host_cb, g);
	assert_int_equal(g->called, 0);
	t_run(t);
	assert_int_equal(g->called, 1);
}

static void test_host(void **state)
{
	(void)state;
	struct t t;
	struct got g;
	t_start(&t, NULL);
	resolve_host(&t, "dual.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.text, "2001:db8::50 127.0.0.50 127.0.0.51");
	resolve_host(&t, "v6only.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.text, "2001:db8::60");
	/* two CNAME links: c-ares walks the chain in the answer */
	resolve_host(&t, "alias.cnamemx.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.text, "127.0.0.30");
	resolve_host(&t, "MX-A.Example.Test.", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.text, "127.0.0.11");
	/* 20 of each family: 8 + 8 kept */
	resolve_host(&t, "manyaddr.example.test", &g);
	assert_int_equal(g.status, DNS_OK);
	assert_string_equal(g.text, "2001:db8::2:1 2001:db8::2:2 2001:db8::2:3 2001:db8::2:4 "
				    "2001:db8::2:5 2001:db8::2:6 2001:db8::2:7 2001:db8::2:8 "
				    "127.0.2.1 127.0.2.2 127.0.2.3 127.0.2.4 127.0.2.5 127.0.2.6 "
				    "127.0.2.7 127.0.2.8");
	resolve_host(&t, "nope.example.test", &g);
	assert_int_equal(g.status, DNS_NXDOMAIN);
	assert_int_equal(g.had_result, 0);
	resolve_host(&t, "noaddr.partial.example.test", &g);
	assert_int_equal(g.status, DNS_NODATA);
	resolve_host(&t, "broken.partial.example.test", &g);
	assert_int_equal(g.status, DNS_TEMP);
	t_end(&t);
}

/* A bad name is answered from the loop, never inside the call. */
static void test_bad_names(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", ".", "a..b", ".a",
		"x123456789012345678901234567890123456789012345678901234567890abcd.test",
	};
	struct t t;
	t_start(&t, NULL);
	struct got g[5 + 2];
	memset(g, 0, sizeof g);
	for (size_t i = 0; i < 5; i++)
		dns_resolve_host(t.r, bad[i], host_cb, &g[i]);
	dns_resolve_txt(t.r, "", txt_cb, &g[5]);
	struct sockaddr_storage unix_addr = { .ss_family = AF_UNIX };
	dns_resolve_ptr(t.r, (struct sockaddr *)&unix_addr, names_cb, &g[6]);
	for (size_t i = 0; i < 7; i++)
		assert_int_equal(g[i].called, 0);
	assert_int_equal(dns_resolver_pending(t.r), 7);
	t_run(&t);
	for (size_t i = 0; i < 7; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].status, DNS_BADNAME);
	}
	t_end(&t);
}

/* ---- TXT, PTR ---- */

static void test_txt(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[6];
	memset(g, 0, sizeof g);
	dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g[0]);
	dns_resolve_txt(t.r, "sel2048._domainkey.example.test", txt_cb, &g[1]);
	/* over 512 bytes: truncated over UDP, asked again over TCP */
	dns_resolve_txt(t.r, "sel4096._domainkey.example.test", txt_cb, &g[2]);
	dns_resolve_txt(t.r, "nope.example.test", txt_cb, &g[3]);
	dns_resolve_txt(t.r, "mx-a.example.test", txt_cb, &g[4]);
	dns_resolve_txt(t.r, "refused.example.test", txt_cb, &g[5]);
	t_run(&t);
	assert_int_equal(g[0].status, DNS_OK);
	assert_string_equal(g[0].text, "[v=spf1 ip4:192.0.2.0/24 -all][second]");
	char want[1024];
	snprintf(want, sizeof want, "[%s]", fx.dkim2048);
	assert_int_equal(g[1].status, DNS_OK);
	assert_string_equal(g[1].text, want);
	snprintf(want, sizeof want, "[%s]", fx.dkim4096);
	assert_int_equal(g[2].status, DNS_OK);
	assert_string_equal(g[2].text, want);
	assert_int_equal(g[3].status, DNS_NXDOMAIN);
	assert_int_equal(g[4].status, DNS_NODATA);
	assert_int_equal(g[4].had_result, 0);
	assert_int_equal(g[5].status, DNS_TEMP);
	t_end(&t);
}

/* The TXT cache (white box: dns-private.h): answers and NXDOMAIN/NODATA are
 * kept, failures are not; a cached answer is the same as the first; the
 * cache starts over when full; off by default. */
static void test_txt_cache(void **state)
{
	(void)state;
	struct t t;
	struct dns_settings set = { .server = mailtest_dns_server(fx.dns), .timeout_ms = 1000,
				    .txt_cache_ms = 60000, .txt_cache_entries = 3 };
	t_start(&t, &set);
	struct got g[8];
	memset(g, 0, sizeof g);
	dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g[0]);
	dns_resolve_txt(t.r, "nope.example.test", txt_cb, &g[1]);
	dns_resolve_txt(t.r, "refused.example.test", txt_cb, &g[2]);
	t_run(&t);
	assert_int_equal(t.r->cache_entries, 2); /* the refusal is not kept */
	dns_resolve_txt(t.r, "MULTI.example.test", txt_cb, &g[3]);
	dns_resolve_txt(t.r, "nope.example.test", txt_cb, &g[4]);
	t_run(&t);
	assert_int_equal(g[3].status, DNS_OK);
	assert_string_equal(g[3].text, g[0].text);
	assert_int_equal(g[4].status, DNS_NXDOMAIN);
	assert_int_equal(t.r->cache_entries, 2); /* answered from it, nothing added */
	/* full: starts over */
	dns_resolve_txt(t.r, "mx-a.example.test", txt_cb, &g[5]);
	t_run(&t);
	assert_int_equal(g[5].status, DNS_NODATA);
	assert_int_equal(t.r->cache_entries, 3);
	dns_resolve_txt(t.r, "sel2048._domainkey.example.test", txt_cb, &g[6]);
	t_run(&t);
	assert_int_equal(g[6].status, DNS_OK);
	assert_int_equal(t.r->cache_entries, 1);
	t_end(&t);
	/* off by default */
	t_start(&t, NULL);
	dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g[7]);
	t_run(&t);
	assert_null(t.r->cache_buckets);
	t_end(&t);
}

/* The expiry of the one cached entry of kind for name (white box), 0: none. */
static uint64_t cache_expires(dns_resolver *r, enum dns__kind kind, const char *name)
{
	for (size_t b = 0; b < r->cache_nbuckets; b++)
		for (const struct dns__cache_entry *e = r->cache_buckets[b]; e != NULL; e = e->next)
			if (e->kind == kind && strcasecmp(e->name, name) == 0)
				return e->expires;
	return 0;
}

/* The MX cache (white box): final answers are kept (a result, NXDOMAIN,
 * NODATA with its result, a null MX), temporary ones and results with a
 * host that failed for now are not; a hit is the first answer again,
 * called back from the loop, with hosts of equal preference reordered;
 * an entry expires; MX and TXT of one name are apart. */
static void test_mx_cache(void **state)
{
	(void)state;
	struct t t;
	struct dns_settings set = { .server = mailtest_dns_server(fx.dns), .timeout_ms = 1000,
				    .mx_cache_ms = 60000, .seed = 7 };
	t_start(&t, &set);
	static const char *const names[] = { "example.test", "nope.example.test",
					     "refused.example.test", "partial.example.test",
					     "allgone.example.test", "nullmx.example.test" };
	enum { N = sizeof names / sizeof names[0] };
	struct got first[N], again[N];
	char a[2048], b[2048];
	memset(first, 0, sizeof first);
	memset(again, 0, sizeof again);
	for (size_t i = 0; i < N; i++)
		dns_resolve_mx(t.r, names[i], mx_cb, &first[i]);
	t_run(&t);
	/* kept: example, nope, allgone, nullmx; not: refused (temp), partial
	 * (one host's lookup failed for now) */
	assert_int_equal(t.r->cache_entries, 4);
	assert_int_equal(cache_expires(t.r, DNS__MX, "refused.example.test"), 0);
	assert_int_equal(cache_expires(t.r, DNS__MX, "partial.example.test"), 0);
	assert_int_equal(cache_expires(t.r, DNS__TXT, "example.test"), 0);
	for (size_t i = 0; i < N; i++) {
		dns_resolve_mx(t.r, i == 0 ? "EXAMPLE.test" : names[i], mx_cb, &again[i]);
		assert_int_equal(again[i].called, 0); /* never inside the call */
	}
	t_run(&t);
	assert_int_equal(t.r->cache_entries, 4);
	for (size_t i = 0; i < N; i++) {
		assert_int_equal(again[i].called, 1);
		assert_int_equal(again[i].status, first[i].status);
		assert_int_equal(again[i].had_result, first[i].had_result);
		if (first[i].mx != NULL)
			assert_string_equal(mx_text(again[i].mx, b, sizeof b),
					    mx_text(first[i].mx, a, sizeof a));
		dns_mx_result_free(&first[i].mx);
		dns_mx_result_free(&again[i].mx);
	}
	assert_int_equal(again[1].status, DNS_NXDOMAIN);
	assert_int_equal(again[4].status, DNS_NODATA);
	assert_int_equal(again[5].status, DNS_NULL_MX);
	/* hits of equal preferences: new orders, the 20s after the 10s */
	int orders = 0;
	char seen[40][4];
	for (int i = 0; i < 40; i++) {
		struct got g = { 0 };
		dns_resolve_mx(t.r, "equal.example.test", mx_cb, &g);
		t_run(&t);
		assert_int_equal(g.status, DNS_OK);
		assert_int_equal(g.mx->count, 5);
		for (size_t k = 0; k < 5; k++)
			assert_int_equal(g.mx->hosts[k].preference, k < 3 ? 10 : 20);
		for (size_t k = 0; k < 3; k++)
			seen[i][k] = g.mx->hosts[k].name[1];
		seen[i][3] = '\0';
		int dup = 0;
		for (int j = 0; j < i; j++)
			dup |= strcmp(seen[i], seen[j]) == 0;
		orders += !dup;
		dns_mx_result_free(&g.mx);
	}
	assert_int_equal(t.r->cache_entries, 5);
	if (orders < 3)
		fail_msg("%d orders of the three from the cache", orders);
	t_end(&t);

	/* an entry expires: the next lookup asks again and keeps a new one */
	set.mx_cache_ms = 30;
	t_start(&t, &set);
	struct got g = { 0 };
	dns_resolve_mx(t.r, "example.test", mx_cb, &g);
	t_run(&t);
	uint64_t e1 = cache_expires(t.r, DNS__MX, "example.test");
	assert_true(e1 > 0);
	dns_mx_result_free(&g.mx);
	usleep(60 * 1000);
	uv_update_time(&t.loop);
	memset(&g, 0, sizeof g);
	dns_resolve_mx(t.r, "example.test", mx_cb, &g);
	assert_int_equal(t.r->cache_entries, 0); /* the stale one dropped */
	t_run(&t);
	assert_int_equal(g.status, DNS_OK);
	assert_true(cache_expires(t.r, DNS__MX, "example.test") > e1);
	dns_mx_result_free(&g.mx);
	t_end(&t);
}

static void test_ptr(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[3];
	memset(g, 0, sizeof g);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };
	inet_pton(AF_INET, "127.0.0.11", &sin.sin_addr);
	dns_resolve_ptr(t.r, (struct sockaddr *)&sin, names_cb, &g[0]);
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
	inet_pton(AF_INET6, "2001:db8::50", &sin6.sin6_addr);
	dns_resolve_ptr(t.r, (struct sockaddr *)&sin6, names_cb, &g[1]);
	inet_pton(AF_INET, "127.0.0.99", &sin.sin_addr);
	dns_resolve_ptr(t.r, (struct sockaddr *)&sin, names_cb, &g[2]);
	t_run(&t);
	assert_int_equal(g[0].status, DNS_OK);
	assert_string_equal(g[0].text, "mx-a.example.test other.example.test");
	assert_int_equal(g[1].status, DNS_OK);
	assert_string_equal(g[1].text, "dual.example.test");
	/* no PTR for it, no name below it */
	assert_int_equal(g[2].status, DNS_NXDOMAIN);
	t_end(&t);
}

/* ---- SRV, CNAME ---- */

static void srv_cb(enum dns_status status, const struct dns_srv_result *result, void *arg)
{
	struct got *g = arg;
	g->called++;
	g->status = status;
	g->had_result = result != NULL;
	size_t o = 0;
	for (size_t i = 0; result != NULL && i < result->count && o < sizeof g->text; i++) {
		const struct dns_srv *s = &result->records[i];
		o += (size_t)snprintf(g->text + o, sizeof g->text - o, "%s%u/%u/%u/%s",
				      i > 0 ? " " : "", s->priority, s->weight, s->port, s->target);
	}
}

static void test_srv(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[7];
	memset(g, 0, sizeof g);
	dns_resolve_srv(t.r, "_imaps._tcp.example.test", srv_cb, &g[0]);
	dns_resolve_srv(t.r, "_pop3._tcp.example.test", srv_cb, &g[1]);
	dns_resolve_srv(t.r, "_many._tcp.example.test", srv_cb, &g[2]);
	dns_resolve_srv(t.r, "_imap._tcp.example.test", srv_cb, &g[3]);
	dns_resolve_srv(t.r, "mx-a.example.test", srv_cb, &g[4]);
	dns_resolve_srv(t.r, "refused.example.test", srv_cb, &g[5]);
	dns_resolve_srv(t.r, "bad..name", srv_cb, &g[6]);
	t_run(&t);
	assert_int_equal(g[0].status, DNS_OK);
	/* the trailing dot gone, the case as published */
	assert_string_equal(g[0].text, "0/1/993/mx-a.example.test 10/5/9993/MX-B.example.test");
	/* "." (not offered) stays "." */
	assert_int_equal(g[1].status, DNS_OK);
	assert_string_equal(g[1].text, "0/0/0/.");
	assert_int_equal(g[2].status, DNS_OK);
	int n = 1;
	for (const char *p = g[2].text; *p != '\0'; p++)
		n += *p == ' ';
	assert_int_equal(n, DNS_SRV_RECORDS_MAX);
	assert_int_equal(g[3].status, DNS_NXDOMAIN);
	assert_int_equal(g[4].status, DNS_NODATA);
	assert_int_equal(g[4].had_result, 0);
	assert_int_equal(g[5].status, DNS_TEMP);
	assert_int_equal(g[6].status, DNS_BADNAME);
	for (int i = 0; i < 7; i++)
		assert_int_equal(g[i].called, 1);
	t_end(&t);
}

static void test_cname(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[6];
	memset(g, 0, sizeof g);
	/* the first link of a two-link chain: only that link */
	dns_resolve_cname(t.r, "alias.cnamemx.example.test", names_cb, &g[0]);
	dns_resolve_cname(t.r, "ALIAS2.cnamemx.example.test.", names_cb, &g[1]);
	/* not an alias: NODATA; gone: NXDOMAIN */
	dns_resolve_cname(t.r, "mx-a.example.test", names_cb, &g[2]);
	dns_resolve_cname(t.r, "nope.example.test", names_cb, &g[3]);
	dns_resolve_cname(t.r, "refused.example.test", names_cb, &g[4]);
	dns_resolve_cname(t.r, "", names_cb, &g[5]);
	t_run(&t);
	assert_int_equal(g[0].status, DNS_OK);
	assert_string_equal(g[0].text, "alias2.cnamemx.example.test");
	assert_int_equal(g[1].status, DNS_OK);
	assert_string_equal(g[1].text, "real.cnamemx.example.test");
	assert_int_equal(g[2].status, DNS_NODATA);
	assert_int_equal(g[2].had_result, 0);
	assert_int_equal(g[3].status, DNS_NXDOMAIN);
	assert_int_equal(g[4].status, DNS_TEMP);
	assert_int_equal(g[5].status, DNS_BADNAME);
	for (int i = 0; i < 6; i++)
		assert_int_equal(g[i].called, 1);
	t_end(&t);
}

/* ---- timeouts, cancel, destroy ---- */

/* A UDP socket bound and never read: every try times out. */
static int dead_server(char *server, size_t size)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET };
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof sin;
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(server, size, "127.0.0.1:%u", ntohs(sin.sin_port));
	return fd;
}

static void test_timeout(void **state)
{
	(void)state;
	char server[64];
	int fd = dead_server(server, sizeof server);
	struct t t;
	struct dns_settings set = { .server = server, .timeout_ms = 200, .tries = 2 };
	t_start(&t, &set);
	struct got g[2];
	memset(g, 0, sizeof g);
	uint64_t start = util_now_mono_ms();
	dns_resolve_mx(t.r, "example.test", mx_cb, &g[0]);
	dns_resolve_host(t.r, "mx-a.example.test", host_cb, &g[1]);
	t_run(&t);
	uint64_t took = util_now_mono_ms() - start;
	assert_int_equal(g[0].status, DNS_TEMP);
	assert_int_equal(g[0].had_result, 0);
	assert_int_equal(g[1].status, DNS_TEMP);
	/* c-ares: 200 ms, then 400 ms for the second try */
	if (took < 500 || took > 3000)
		fail_msg("timed out after %llu ms", (unsigned long long)took);
	t_end(&t);
	close(fd);
}

/* A port nobody listens on: ICMP port unreachable, ECONNREFUSED on the
 * socket, c-ares gives up at once: temporary, and well within the
 * timeouts. */
static void test_connection_refused(void **state)
{
	(void)state;
	char server[64];
	close(dead_server(server, sizeof server));
	struct t t;
	struct dns_settings set = { .server = server, .timeout_ms = 2000, .tries = 2 };
	t_start(&t, &set);
	struct got g = { 0 };
	uint64_t start = util_now_mono_ms();
	dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g);
	t_run(&t);
	uint64_t took = util_now_mono_ms() - start;
	assert_int_equal(g.called, 1);
	assert_int_equal(g.status, DNS_TEMP);
	if (took > 1500)
		fail_msg("refused after %llu ms", (unsigned long long)took);
	t_end(&t);
}

static void test_cancel(void **state)
{
	(void)state;
	struct t t;
	struct dns_settings set = { .server = mailtest_dns_server(fx.dns), .timeout_ms = 200,
				    .tries = 1 };
	t_start(&t, &set);
	struct got g[4];
	memset(g, 0, sizeof g);
	/* cancelled before the answer: the server answers, nobody is told */
	dns_request *a = dns_resolve_mx(t.r, "example.test", mx_cb, &g[0]);
	dns_request *b = dns_resolve_host(t.r, "slow.example.test", host_cb, &g[1]);
	dns_request *c = dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g[2]);
	dns_request *d = dns_resolve_host(t.r, "", host_cb, &g[3]); /* settled, not delivered */
	dns_request_cancel(&a);
	dns_request_cancel(&b);
	dns_request_cancel(&d);
	assert_null(a);
	assert_null(b);
	dns_request_cancel(&a); /* NULL is fine */
	assert_int_equal(dns_resolver_pending(t.r), 1);
	t_run(&t);
	assert_int_equal(g[0].called, 0);
	assert_int_equal(g[1].called, 0);
	assert_int_equal(g[3].called, 0);
	assert_int_equal(g[2].called, 1);
	assert_int_equal(g[2].status, DNS_OK);
	(void)c;
	t_end(&t);
}

/* Cancel one from the callback of another (after the answers are in,
 * before its own callback). */
struct pair {
	dns_request *other;
	struct got g;
};

static void cancel_other_cb(enum dns_status status, const struct dns_addrs *result, void *arg)
{
	struct pair *p = arg;
	host_cb(status, result, &p->g);
	dns_request_cancel(&p->other);
}

static void test_cancel_from_callback(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct pair p = { 0 };
	struct got other = { 0 };
	/* both bad names: settled together, delivered in one turn */
	dns_resolve_host(t.r, "", cancel_other_cb, &p);
	p.other = dns_resolve_host(t.r, "", host_cb, &other);
	t_run(&t);
	assert_int_equal(p.g.called, 1);
	assert_int_equal(other.called, 0);
	t_end(&t);
}

static void test_destroy_pending(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct got g[5];
	memset(g, 0, sizeof g);
	dns_resolve_mx(t.r, "slow.example.test", mx_cb, &g[0]);
	dns_resolve_mx(t.r, "example.test", mx_cb, &g[1]);
	dns_resolve_host(t.r, "slow.example.test", host_cb, &g[2]);
	dns_resolve_txt(t.r, "", txt_cb, &g[3]);
	dns_request *cancelled = dns_resolve_txt(t.r, "multi.example.test", txt_cb, &g[4]);
	dns_request_cancel(&cancelled);
	/* no loop turn yet: nothing answered */
	dns_resolver_destroy(&t.r);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].status, DNS_CANCELLED);
		assert_int_equal(g[i].had_result, 0);
	}
	assert_int_equal(g[4].called, 0);
	uv_run(&t.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&t.loop), 0);
}

/* Destroy from a callback: the others still pending get DNS_CANCELLED. */
struct destroyer {
	dns_resolver **r;
	struct got g;
};

static void destroy_cb(enum dns_status status, const struct dns_addrs *result, void *arg)
{
	struct destroyer *d = arg;
	host_cb(status, result, &d->g);
	dns_resolver_destroy(d->r);
}

static void test_destroy_from_callback(void **state)
{
	(void)state;
	struct t t;
	t_start(&t, NULL);
	struct destroyer d = { .r = &t.r };
	struct got g[2];
	memset(g, 0, sizeof g);
	dns_resolve_host(t.r, "mx-a.example.test", destroy_cb, &d);
	dns_resolve_host(t.r, "slow.example.test", host_cb, &g[0]);
	dns_resolve_host(t.r, "", host_cb, &g[1]);
	t_run(&t);
	assert_null(t.r);
	assert_int_equal(d.g.called + g[1].called, 2);
	assert_int_equal(g[0].called, 1);
	assert_int_equal(g[0].status, DNS_CANCELLED);
	assert_int_equal(uv_loop_close(&t.loop), 0);
}

/* ---- settings ---- */

static void test_settings(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "localhost:53", "::1:53",
		"[::1]53", "[nope]:53", "127.0.0.1:5x", "1.2.3:53", "",
	};
	uv_loop_t loop;
	assert_int_equal(uv_loop_init(&loop), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct dns_settings set = { .server = bad[i] };
		dns_resolver *r = NULL;
		const char *error = NULL;
		if (dns_resolver_create(&loop, &set, &r, &error) != -1 || error == NULL)
			fail_msg("\"%s\" accepted", bad[i]);
		assert_null(r);
	}
	static const char *const good[] = { "127.0.0.1:53", "[::1]:5353", NULL };
	for (size_t i = 0; i < 3; i++) {
		struct dns_settings set = { .server = good[i] }; /* NULL: resolv.conf */
		dns_resolver *r = NULL;
		const char *error = NULL;
		if (dns_resolver_create(&loop, &set, &r, &error) < 0)
			fail_msg("\"%s\": %s", good[i] ? good[i] : "(null)", error);
		dns_resolver_destroy(&r);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	assert_string_equal(dns_status_name(DNS_NULL_MX), "null_mx");
	assert_string_equal(dns_status_name((enum dns_status)99), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mx_order),
		cmocka_unit_test(test_mx_equal_preference),
		cmocka_unit_test(test_mx_implicit),
		cmocka_unit_test(test_mx_null),
		cmocka_unit_test(test_mx_cname_target),
		cmocka_unit_test(test_mx_hosts_without_addresses),
		cmocka_unit_test(test_mx_limits),
		cmocka_unit_test(test_mx_failures),
		cmocka_unit_test(test_host),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_txt_cache),
		cmocka_unit_test(test_mx_cache),
		cmocka_unit_test(test_ptr),
		cmocka_unit_test(test_srv),
		cmocka_unit_test(test_cname),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_connection_refused),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_cancel_from_callback),
		cmocka_unit_test(test_destroy_pending),
		cmocka_unit_test(test_destroy_from_callback),
		cmocka_unit_test(test_settings),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
