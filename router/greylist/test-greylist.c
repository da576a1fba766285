/* test-greylist.c: greylist.h against a real etcd (one per test, so lease
 * counts and keys are each test's own), and the naming of triplets
 * without one. Time is the now_ms each call is given: no test sleeps for
 * a greylisting delay. Two greylist objects on one etcd stand for two
 * frontends; destroying one and creating another stands for a restart. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>
#include <signal.h>

#include "etcd-fixture.h"
#include "etcd.h"
#include "greylist-private.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

/* 2026-01-01 00:10 UTC: a few minutes into an hour, so the early retries
 * below stay in the first attempt's lease bucket. */
#define T0 (1767225600000LL + 10 * 60 * 1000)
#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define DELAY 300u

typedef struct fixture {
	mailtest_etcd *etcd;
	etcd_client *raw; /* the test's own look at etcd */
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->raw = etcd_client_create(mailtest_etcd_conf(f->etcd));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	etcd_client_destroy(&f->raw);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

static greylist *gl_new(fixture *f)
{
	greylist *gl = greylist_create(mailtest_etcd_conf(f->etcd), NULL);
	assert_non_null(gl);
	return gl;
}

static struct greylist_stats stats_of(const greylist *gl)
{
	struct greylist_stats st;
	greylist_stats_get(gl, &st);
	/* every check is counted once, whatever its outcome */
	assert_int_equal(st.checks, st.deferred + st.passed + st.errors);
	return st;
}

/* One check that must succeed; its verdict. */
static struct greylist_verdict check(greylist *gl, const char *ip, const char *from,
				     const char *to, int64_t now)
{
	struct greylist_verdict v;
	memset(&v, 0xa5, sizeof v);
	assert_int_equal(greylist_check(gl, ip, from, to, DELAY, now, &v), MAIL_OK);
	assert_int_equal(strlen(v.triplet), GREYLIST_TRIPLET_HEX_LEN);
	return v;
}

static void assert_defer(struct greylist_verdict v, enum greylist_reason reason, unsigned after)
{
	assert_int_equal(v.action, GREYLIST_DEFER);
	assert_string_equal(greylist_reason_name(v.reason), greylist_reason_name(reason));
	assert_int_equal(v.retry_after_s, after);
	assert_int_equal(v.cached, 0);
}

static void assert_pass(struct greylist_verdict v, enum greylist_reason reason, int cached)
{
	assert_int_equal(v.action, GREYLIST_PASS);
	assert_string_equal(greylist_reason_name(v.reason), greylist_reason_name(reason));
	assert_int_equal(v.retry_after_s, 0);
	assert_int_equal(v.cached, cached);
}

/* Every key under prefix; the caller frees with etcd_kvs_free. */
static etcd_kv *keys_under(fixture *f, const char *prefix, size_t *n_r)
{
	etcd_kv *kvs = NULL;
	assert_int_equal(etcd_kv_range_prefix(f->raw, prefix, 0, &kvs, n_r, NULL), MAIL_OK);
	return kvs;
}

/* The distinct leases of the keys under prefix (all must have one). */
static size_t distinct_leases(fixture *f, const char *prefix, size_t *keys_r, int64_t *one_r)
{
	size_t n;
	etcd_kv *kvs = keys_under(f, prefix, &n);
	int64_t seen[64];
	size_t n_seen = 0;
	for (size_t i = 0; i < n; i++) {
		assert_true(kvs[i].lease != 0);
		size_t k = 0;
		while (k < n_seen && seen[k] != kvs[i].lease)
			k++;
		if (k == n_seen) {
			assert_true(n_seen < 64);
			seen[n_seen++] = kvs[i].lease;
		}
	}
	etcd_kvs_free(kvs, n);
	if (keys_r != NULL)
		*keys_r = n;
	if (one_r != NULL)
		*one_r = n_seen > 0 ? seen[0] : 0;
	return n_seen;
}

/* ---- naming, no etcd --------------------------------------------------------- */

static void assert_net(const char *ip, const char *net)
{
	char got[GREYLIST__NET_MAX];
	assert_int_equal(greylist__net(ip, got), 0);
	assert_string_equal(got, net);
}

static void assert_sender(const char *in, const char *out)
{
	char got[GREYLIST_ADDRESS_MAX + 1];
	assert_int_equal(greylist__sender_normalize(in, got), 0);
	assert_string_equal(got, out);
}

static void test_names(void **state)
{
	(void)state;
	assert_net("192.0.2.7", "192.0.2.0/24");
	assert_net("192.0.2.255", "192.0.2.0/24");
	assert_net("::ffff:192.0.2.9", "192.0.2.0/24");
	assert_net("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64");
	assert_net("2001:DB8:1:2::1", "2001:db8:1:2::/64");
	assert_net("::1", "::/64");
	char net[GREYLIST__NET_MAX];
	const char *bad_ips[] = { "", "192.0.2", "192.0.2.256", "example.test", "[::1]",
				  "fe80::1%eth0", "192.0.2.1 ", "1.2.3.4/24" };
	for (size_t i = 0; i < sizeof bad_ips / sizeof bad_ips[0]; i++)
		assert_int_equal(greylist__net(bad_ips[i], net), -1);
	assert_int_equal(greylist__net(NULL, net), -1);

	assert_sender("", "");
	assert_sender("Alice@Example.TEST", "alice@example.test");
	assert_sender("prvs=1234abcdef=bounce@list.test", "bounce@list.test");
	assert_sender("PRVS=4321ABCDEF=Bounce@List.Test", "bounce@list.test");
	assert_sender("prvs=@list.test", "prvs=@list.test"); /* no tag: as it is */
	assert_sender("owner+bounce-17@list.test", "owner@list.test");
	assert_sender("+x@list.test", "+x@list.test");
	assert_sender("bounce-1234-5678@list.test", "bounce-#-#@list.test");
	assert_sender("1234.x@list.test", "#.x@list.test");
	assert_sender("user42@mail.test", "user42@mail.test"); /* not a lone run */
	assert_sender("a_1@mail.test", "a_1@mail.test");
	assert_sender("news@2024.test", "news@2024.test"); /* the domain is kept */
	assert_sender("postmaster", "postmaster");
	char out[GREYLIST_ADDRESS_MAX + 1];
	assert_int_equal(greylist__sender_normalize("a\r\n@x.test", out), -1);

	/* triplets: case does not matter, the /24 and the sender's rules do */
	uint8_t d1[GREYLIST__DIGEST_LEN], d2[GREYLIST__DIGEST_LEN];
	char h1[GREYLIST_TRIPLET_HEX_LEN + 1], h2[GREYLIST_TRIPLET_HEX_LEN + 1];
	assert_int_equal(greylist__triplet("192.0.2.7", "A@X.test", "B@Y.test", d1, h1), 0);
	assert_int_equal(greylist__triplet("192.0.2.99", "a@x.TEST", "b@y.test", d2, h2), 0);
	assert_string_equal(h1, h2);
	assert_int_equal(strspn(h1, "0123456789abcdef"), GREYLIST_TRIPLET_HEX_LEN);
	assert_int_equal(greylist__triplet("192.0.3.7", "a@x.test", "b@y.test", d2, h2), 0);
	assert_string_not_equal(h1, h2);
	/* '|' in addresses: no two splits of one string meet */
	assert_int_equal(greylist__triplet("192.0.2.7", "a|b", "c@y.test", d1, h1), 0);
	assert_int_equal(greylist__triplet("192.0.2.7", "a", "b|c@y.test", d2, h2), 0);
	assert_string_not_equal(h1, h2);
	/* the recipient keeps its +extension and digits */
	assert_int_equal(greylist__triplet("192.0.2.7", "", "u+1@y.test", d1, h1), 0);
	assert_int_equal(greylist__triplet("192.0.2.7", "", "u@y.test", d2, h2), 0);
	assert_string_not_equal(h1, h2);
	/* limits */
	char big[GREYLIST_ADDRESS_MAX + 2];
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(greylist__triplet("192.0.2.7", big, "b@y.test", d1, h1), -1);
	assert_int_equal(greylist__triplet("192.0.2.7", "a@x.test", big, d1, h1), -1);
	big[GREYLIST_ADDRESS_MAX] = '\0';
	assert_int_equal(greylist__triplet("192.0.2.7", big, big, d1, h1), 0);
	assert_int_equal(greylist__triplet("192.0.2.7", "a@x.test", "", d1, h1), -1);
	assert_int_equal(greylist__triplet("192.0.2.7", "a@x.test", "b\x01@y.test", d1, h1), -1);

	/* domains */
	char dom[GREYLIST__DOMAIN_MAX + 1];
	assert_int_equal(greylist__domain("Example.TEST", dom, d1), 0);
	assert_string_equal(dom, "example.test");
	assert_int_equal(greylist__domain("example.test", dom, d2), 0);
	assert_memory_equal(d1, d2, sizeof d1);
	assert_int_equal(greylist__domain("", dom, d1), -1);
	assert_int_equal(greylist__domain("a/b.test", dom, d1), -1);
	assert_int_equal(greylist__domain("-x.test", dom, d1), -1);
	assert_int_equal(greylist__domain(NULL, dom, d1), -1);
}

/* The cache without etcd: bounded, timed, and a clock that goes back does
 * not stretch an entry. */
static void test_cache_table(void **state)
{
	(void)state;
	struct greylist__cache cache;
	greylist__cache_init(&cache, 16, 60);
	uint8_t id[GREYLIST__DIGEST_LEN] = { 0 };
	int64_t stamp;
	assert_int_equal(greylist__cache_get(&cache, id, T0, &stamp), 0);
	greylist__cache_put(&cache, id, T0, 42);
	assert_int_equal(greylist__cache_get(&cache, id, T0 + 59999, &stamp), 1);
	assert_int_equal(stamp, 42);
	assert_int_equal(greylist__cache_get(&cache, id, T0 - 1, &stamp), 0);
	assert_int_equal(greylist__cache_get(&cache, id, T0 + 60000, &stamp), 0);
	greylist__cache_put(&cache, id, T0, 43);
	greylist__cache_forget(&cache, id);
	assert_int_equal(greylist__cache_get(&cache, id, T0, &stamp), 0);

	/* 1000 ids into 16 slots: at most 16 answer, the newest of each set */
	unsigned hits = 0;
	for (unsigned i = 0; i < 1000; i++) {
		memcpy(id, &i, sizeof i);
		memcpy(id + 8, &i, sizeof i);
		greylist__cache_put(&cache, id, T0 + i, i);
	}
	for (unsigned i = 0; i < 1000; i++) {
		memcpy(id, &i, sizeof i);
		memcpy(id + 8, &i, sizeof i);
		if (greylist__cache_get(&cache, id, T0 + 1000, &stamp)) {
			assert_int_equal(stamp, i);
			hits++;
		}
	}
	assert_true(hits > 0 && hits <= 16);
	greylist__cache_deinit(&cache);
}

/* ---- against etcd ------------------------------------------------------------- */

static void test_first_retry_pass(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	const char *ip = "192.0.2.7", *from = "alice@sender.test", *to = "bob@rcpt.test";

	struct greylist_verdict v = check(gl, ip, from, to, T0);
	assert_defer(v, GREYLIST_REASON_NEW, DELAY);
	char triplet[GREYLIST_TRIPLET_HEX_LEN + 1];
	memcpy(triplet, v.triplet, sizeof triplet);

	/* early retries: the remaining time, rounded up */
	assert_defer(check(gl, ip, from, to, T0 + 1), GREYLIST_REASON_EARLY, DELAY);
	assert_defer(check(gl, ip, from, to, T0 + 60 * 1000), GREYLIST_REASON_EARLY, DELAY - 60);
	assert_defer(check(gl, ip, from, to, T0 + DELAY * 1000LL - 1), GREYLIST_REASON_EARLY, 1);

	/* the stored record: the hash names it, no address in clear */
	char key[256];
	snprintf(key, sizeof key, GREYLIST_KEY_TRIPLETS "%s", triplet);
	char *value;
	size_t len;
	assert_int_equal(etcd_kv_get(f->raw, key, &value, &len, NULL, NULL), MAIL_OK);
	char want[128];
	snprintf(want, sizeof want, "{\"first\":%lld,\"passed\":0}", (long long)T0);
	assert_string_equal(value, want);
	free(value);
	size_t n;
	etcd_kv *kvs = keys_under(f, "/mail/", &n);
	for (size_t i = 0; i < n; i++) {
		assert_null(strstr(kvs[i].key, "alice"));
		assert_null(strstr(kvs[i].value, "alice"));
		assert_null(strstr(kvs[i].value, "bob"));
	}
	etcd_kvs_free(kvs, n);

	/* after the delay: passes, and is marked */
	v = check(gl, ip, from, to, T0 + DELAY * 1000LL);
	assert_pass(v, GREYLIST_REASON_RETRIED, 0);
	assert_string_equal(v.triplet, triplet);
	assert_int_equal(etcd_kv_get(f->raw, key, &value, &len, NULL, NULL), MAIL_OK);
	snprintf(want, sizeof want, "{\"first\":%lld,\"passed\":%lld}", (long long)T0,
		 (long long)(T0 + DELAY * 1000LL));
	assert_string_equal(value, want);
	free(value);

	/* then from the cache; the same sender from another host of its /24,
	 * in other case, is the same triplet */
	assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + 1), GREYLIST_REASON_KNOWN, 1);
	assert_pass(check(gl, "192.0.2.200", "Alice@Sender.TEST", "BOB@rcpt.test",
			  T0 + DELAY * 1000LL + 2),
		    GREYLIST_REASON_KNOWN, 1);

	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.checks, 7);
	assert_int_equal(st.deferred, 4);
	assert_int_equal(st.passed, 3);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.cache_hits, 2);
	assert_int_equal(st.etcd_failures, 0);
	greylist_destroy(&gl);
	assert_null(gl);
	greylist_destroy(&gl); /* NULL is fine */
}

static void test_networks(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	const char *from = "news@list.test", *to = "carol@rcpt.test";
	assert_defer(check(gl, "198.51.100.10", from, to, T0), GREYLIST_REASON_NEW, DELAY);
	/* another host of the /24: the same triplet, already waiting */
	assert_defer(check(gl, "198.51.100.250", from, to, T0 + 100 * 1000),
		     GREYLIST_REASON_EARLY, DELAY - 100);
	/* over an IPv6 socket, IPv4-mapped: the same */
	assert_defer(check(gl, "::ffff:198.51.100.3", from, to, T0 + 200 * 1000),
		     GREYLIST_REASON_EARLY, DELAY - 200);
	/* the next /24 is a network of its own */
	assert_defer(check(gl, "198.51.101.10", from, to, T0 + 200 * 1000), GREYLIST_REASON_NEW,
		     DELAY);
	/* IPv6: the /64 */
	assert_defer(check(gl, "2001:db8:5:6::1", from, to, T0), GREYLIST_REASON_NEW, DELAY);
	assert_pass(check(gl, "2001:db8:5:6:ffff::2", from, to, T0 + DELAY * 1000LL),
		    GREYLIST_REASON_RETRIED, 0);
	assert_defer(check(gl, "2001:db8:5:7::1", from, to, T0 + DELAY * 1000LL),
		     GREYLIST_REASON_NEW, DELAY);
	/* a mailing list's per-message sender is one triplet */
	assert_defer(check(gl, "203.0.113.5", "prvs=0123abcdef=list-bounces+77-1@l.test", to, T0),
		     GREYLIST_REASON_NEW, DELAY);
	assert_pass(check(gl, "203.0.113.5", "prvs=9876fedcba=list-bounces+78-2@l.test", to,
			  T0 + DELAY * 1000LL),
		    GREYLIST_REASON_RETRIED, 0);
	/* the recipient and the sender each make the triplet */
	assert_defer(check(gl, "203.0.113.5", "list-bounces@l.test", "dave@rcpt.test",
			   T0 + DELAY * 1000LL),
		     GREYLIST_REASON_NEW, DELAY);
	assert_defer(check(gl, "203.0.113.5", "other@l.test", to, T0 + DELAY * 1000LL),
		     GREYLIST_REASON_NEW, DELAY);
	/* the null sender too */
	assert_defer(check(gl, "203.0.113.5", "", to, T0), GREYLIST_REASON_NEW, DELAY);
	assert_pass(check(gl, "203.0.113.9", "", to, T0 + DELAY * 1000LL), GREYLIST_REASON_RETRIED,
		    0);
	greylist_destroy(&gl);
}

/* Two frontends agree; a restarted one remembers. */
static void test_frontends_agree(void **state)
{
	fixture *f = *state;
	greylist *a = gl_new(f), *b = gl_new(f);
	const char *ip = "192.0.2.33", *from = "eve@sender.test", *to = "frank@rcpt.test";

	struct greylist_verdict va = check(a, ip, from, to, T0);
	assert_defer(va, GREYLIST_REASON_NEW, DELAY);
	/* b never saw it, yet knows it is waiting and since when */
	struct greylist_verdict vb = check(b, ip, from, to, T0 + 30 * 1000);
	assert_defer(vb, GREYLIST_REASON_EARLY, DELAY - 30);
	assert_string_equal(va.triplet, vb.triplet);
	/* the retry lands on b: it passes there ... */
	assert_pass(check(b, ip, from, to, T0 + DELAY * 1000LL), GREYLIST_REASON_RETRIED, 0);
	/* ... and a, which only ever deferred it, knows (from etcd) */
	assert_pass(check(a, ip, from, to, T0 + DELAY * 1000LL + 5), GREYLIST_REASON_KNOWN, 0);

	/* a restart: a new object, nothing cached, knows both states */
	greylist_destroy(&a);
	a = gl_new(f);
	assert_pass(check(a, ip, from, to, T0 + 2 * HOUR_MS), GREYLIST_REASON_KNOWN, 0);
	assert_defer(check(b, "192.0.2.33", "other@sender.test", to, T0 + 2 * HOUR_MS),
		     GREYLIST_REASON_NEW, DELAY);
	greylist_destroy(&b);
	b = gl_new(f);
	assert_defer(check(b, "192.0.2.34", "other@sender.test", to, T0 + 2 * HOUR_MS + 1000),
		     GREYLIST_REASON_EARLY, DELAY - 1);

	/* a race: both see an unknown triplet at once; one creates, the other
	 * finds the creation (no error, both defer) */
	assert_defer(check(a, "192.0.2.1", "race@sender.test", to, T0), GREYLIST_REASON_NEW, DELAY);
	struct greylist_verdict vr = check(b, "192.0.2.1", "race@sender.test", to, T0);
	assert_int_equal(vr.action, GREYLIST_DEFER);
	assert_int_equal(vr.retry_after_s, DELAY);
	greylist_destroy(&a);
	greylist_destroy(&b);
}

/* Not retried within 24 h: started over. Passed 35 days ago: the same. */
static void test_window(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	const char *ip = "192.0.2.44", *from = "late@sender.test", *to = "gina@rcpt.test";
	assert_defer(check(gl, ip, from, to, T0), GREYLIST_REASON_NEW, DELAY);
	/* within the window (24 h) still passes; one more ms does not */
	int64_t t1 = T0 + DAY_MS + 1;
	assert_defer(check(gl, ip, from, to, t1), GREYLIST_REASON_EXPIRED, DELAY);
	assert_defer(check(gl, ip, from, to, t1 + 1000), GREYLIST_REASON_EARLY, DELAY - 1);
	assert_pass(check(gl, ip, from, to, t1 + DELAY * 1000LL), GREYLIST_REASON_RETRIED, 0);

	/* the window's edge itself passes */
	const char *to2 = "hank@rcpt.test";
	assert_defer(check(gl, ip, from, to2, T0), GREYLIST_REASON_NEW, DELAY);
	assert_pass(check(gl, ip, from, to2, T0 + DAY_MS), GREYLIST_REASON_RETRIED, 0);

	/* a delay of a day still leaves an hour to retry (GREYLIST_RETRY_SPAN_MIN_S) */
	struct greylist_verdict v;
	const char *to3 = "ivy@rcpt.test";
	assert_int_equal(greylist_check(gl, ip, from, to3, GREYLIST_DELAY_MAX, T0, &v), MAIL_OK);
	assert_defer(v, GREYLIST_REASON_NEW, GREYLIST_DELAY_MAX);
	assert_int_equal(greylist_check(gl, ip, from, to3, GREYLIST_DELAY_MAX,
					T0 + DAY_MS + HOUR_MS, &v),
			 MAIL_OK);
	assert_pass(v, GREYLIST_REASON_RETRIED, 0);

	/* passed long ago: a fresh object (no cache) at +34 days passes and
	 * refreshes, at +36 days after that it starts over */
	greylist_destroy(&gl);
	gl = gl_new(f);
	int64_t t2 = t1 + DELAY * 1000LL + 34 * DAY_MS;
	assert_pass(check(gl, ip, from, to, t2), GREYLIST_REASON_KNOWN, 0);
	greylist_destroy(&gl);
	gl = gl_new(f);
	assert_pass(check(gl, ip, from, to, t2 + 35 * DAY_MS), GREYLIST_REASON_KNOWN, 0);
	greylist_destroy(&gl);
	gl = gl_new(f);
	assert_defer(check(gl, ip, from, to, t2 + 35 * DAY_MS + 35 * DAY_MS + 1),
		     GREYLIST_REASON_EXPIRED, DELAY);
	greylist_destroy(&gl);
}

/* Leases: every key has one, a bucket's is shared by all keys and all
 * frontends, and a pass refreshes at most once a day. */
static void test_leases(void **state)
{
	fixture *f = *state;
	etcd_stats es = { 0 };
	struct greylist_settings s = { .etcd_stats = &es };
	greylist *a = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	greylist *b = gl_new(f);
	char to[64];
	enum { N = 200 };
	for (int i = 0; i < N; i++) {
		snprintf(to, sizeof to, "user%d@rcpt.test", i);
		greylist *gl = i % 2 ? a : b;
		assert_defer(check(gl, "192.0.2.50", "bulk@sender.test", to, T0 + i),
			     GREYLIST_REASON_NEW, DELAY);
	}
	size_t keys;
	int64_t pending_lease;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, &keys, &pending_lease), 1);
	assert_int_equal(keys, N);
	/* one lease for the hour, granted by one frontend, used by both */
	struct greylist_stats sa = stats_of(a), sb = stats_of(b);
	assert_int_equal(sa.leases_granted + sb.leases_granted, 1);
	/* a's writes: its creates (N/2), and perhaps the registry key */
	assert_true(etcd_stats_writes(&es) >= N / 2 && etcd_stats_writes(&es) <= N / 2 + 1);
	/* round trips: a get and a create per new triplet, and at most 3 for
	 * the lease */
	assert_true(sa.etcd_requests <= 2 * (N / 2) + 3);

	/* all pass after the delay, in a later hour: one long lease */
	for (int i = 0; i < N; i++) {
		snprintf(to, sizeof to, "user%d@rcpt.test", i);
		greylist *gl = i % 2 ? b : a;
		assert_pass(check(gl, "192.0.2.50", "bulk@sender.test", to, T0 + 2 * HOUR_MS + i),
			    GREYLIST_REASON_RETRIED, 0);
	}
	int64_t long_lease;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, &keys, &long_lease), 1);
	assert_true(long_lease != pending_lease);
	sa = stats_of(a);
	sb = stats_of(b);
	assert_int_equal(sa.leases_granted + sb.leases_granted, 2);

	/* a new day: the first pass of each triplet refreshes it onto the
	 * new day's lease; more passes that day do not write */
	greylist_destroy(&a);
	a = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	uint64_t writes = etcd_stats_writes(&es);
	for (int i = 0; i < 10; i++) {
		snprintf(to, sizeof to, "user%d@rcpt.test", i);
		assert_pass(check(a, "192.0.2.50", "bulk@sender.test", to, T0 + DAY_MS + i),
			    GREYLIST_REASON_KNOWN, 0);
	}
	/* ten refreshes and one registry key for the new day's lease */
	assert_int_equal(etcd_stats_writes(&es) - writes, 11);
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, NULL, NULL), 2);
	greylist_destroy(&a);
	a = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	writes = etcd_stats_writes(&es);
	for (int i = 0; i < 10; i++) {
		snprintf(to, sizeof to, "user%d@rcpt.test", i);
		assert_pass(check(a, "192.0.2.50", "bulk@sender.test", to, T0 + DAY_MS + HOUR_MS),
			    GREYLIST_REASON_KNOWN, 0);
	}
	assert_int_equal(etcd_stats_writes(&es), writes);

	/* the registry: one key per bucket, each under its own lease */
	size_t n;
	etcd_kv *kvs = keys_under(f, GREYLIST_KEY_LEASES, &n);
	assert_int_equal(n, 3); /* pending T0's hour, long T0's day, long the next day */
	for (size_t i = 0; i < n; i++)
		assert_int_equal(strtoll(kvs[i].value, NULL, 10), kvs[i].lease);
	etcd_kvs_free(kvs, n);
	greylist_destroy(&a);
	greylist_destroy(&b);
}

/* The etcd round trips of each path (greylist.h's table). */
static uint64_t trips(const greylist *gl)
{
	struct greylist_stats st;
	greylist_stats_get(gl, &st);
	return st.etcd_requests;
}

static void test_round_trips(void **state)
{
	fixture *f = *state;
	greylist *a = gl_new(f), *b = gl_new(f);
	const char *ip = "192.0.2.110", *from = "rt@sender.test";
	uint64_t n = trips(a);
	/* the bucket's lease, first in the cluster: read, grant, register */
	assert_defer(check(a, ip, from, "x@rcpt.test", T0), GREYLIST_REASON_NEW, DELAY);
	assert_int_equal(trips(a) - n, 2 + 3);
	n = trips(b);
	/* another frontend finds the lease registered: one read */
	assert_defer(check(b, ip, from, "y@rcpt.test", T0), GREYLIST_REASON_NEW, DELAY);
	assert_int_equal(trips(b) - n, 2 + 1);
	n = trips(a);
	assert_defer(check(a, ip, from, "z@rcpt.test", T0), GREYLIST_REASON_NEW, DELAY);
	assert_int_equal(trips(a) - n, 2); /* get, create */
	n = trips(a);
	assert_defer(check(a, ip, from, "x@rcpt.test", T0 + 1000), GREYLIST_REASON_EARLY,
		     DELAY - 1);
	assert_int_equal(trips(a) - n, 1); /* get */
	n = trips(a);
	assert_pass(check(a, ip, from, "x@rcpt.test", T0 + DELAY * 1000LL),
		    GREYLIST_REASON_RETRIED, 0);
	assert_int_equal(trips(a) - n, 2 + 3); /* get, put; the day's lease */
	n = trips(a);
	assert_pass(check(a, ip, from, "z@rcpt.test", T0 + DELAY * 1000LL),
		    GREYLIST_REASON_RETRIED, 0);
	assert_int_equal(trips(a) - n, 2); /* get, put */
	n = trips(a);
	assert_pass(check(a, ip, from, "x@rcpt.test", T0 + DELAY * 1000LL + 1),
		    GREYLIST_REASON_KNOWN, 1);
	assert_int_equal(trips(a) - n, 0);
	n = trips(b);
	assert_pass(check(b, ip, from, "x@rcpt.test", T0 + DELAY * 1000LL + 2),
		    GREYLIST_REASON_KNOWN, 0);
	assert_int_equal(trips(b) - n, 1); /* get */
	n = trips(b);
	assert_pass(check(b, ip, from, "z@rcpt.test", T0 + DAY_MS), GREYLIST_REASON_KNOWN, 0);
	assert_int_equal(trips(b) - n, 2 + 3); /* get, the day's refresh; its lease */

	n = trips(a);
	assert_int_equal(greylist_domain_known(a, "rt.test", T0), MAIL_ERR_NOT_FOUND);
	assert_int_equal(trips(a) - n, 1);
	n = trips(a);
	assert_int_equal(greylist_domain_note(a, "rt.test", T0), MAIL_OK);
	assert_int_equal(trips(a) - n, 2); /* get, put (the day's lease is cached) */
	n = trips(a);
	assert_int_equal(greylist_domain_note(a, "rt.test", T0 + 1), MAIL_OK);
	assert_int_equal(greylist_domain_known(a, "rt.test", T0 + 2), MAIL_OK);
	assert_int_equal(trips(a) - n, 0);
	n = trips(b);
	assert_int_equal(greylist_domain_note(b, "rt.test", T0 + 3), MAIL_OK);
	assert_int_equal(trips(b) - n, 1); /* noted today already: no write */
	greylist_destroy(&a);
	greylist_destroy(&b);
}

/* A lease etcd no longer knows: its keys went with it, and the next write
 * gets a new lease (one retry), without an error. */
static void test_lease_revoked(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	const char *to = "jo@rcpt.test";
	assert_defer(check(gl, "192.0.2.60", "a@sender.test", to, T0), GREYLIST_REASON_NEW, DELAY);
	int64_t lease;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, NULL, &lease), 1);
	assert_int_equal(etcd_lease_revoke(f->raw, lease), MAIL_OK);
	size_t n;
	etcd_kv *kvs = keys_under(f, GREYLIST_KEY_PREFIX, &n);
	assert_int_equal(n, 0); /* the triplet and the registry key */
	etcd_kvs_free(kvs, n);

	/* the object still holds the revoked lease: its next create fails on
	 * it, and is retried on a new one */
	assert_defer(check(gl, "192.0.2.60", "b@sender.test", to, T0 + 1000), GREYLIST_REASON_NEW,
		     DELAY);
	/* the gone triplet is simply new again */
	assert_defer(check(gl, "192.0.2.60", "a@sender.test", to, T0 + 2000), GREYLIST_REASON_NEW,
		     DELAY);
	int64_t fresh;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, &n, &fresh), 1);
	assert_int_equal(n, 2);
	assert_true(fresh != lease);
	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.leases_granted, 2);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.etcd_failures, 0);
	greylist_destroy(&gl);
}

/* Keys someone else wrote badly: a triplet record is rewritten (as a first
 * attempt), a lease registry key replaced, a domain record read as absent;
 * none is an error. */
static void test_bad_records(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	const char *ip = "192.0.2.120", *from = "bad@sender.test", *to = "p@rcpt.test";
	struct greylist_verdict v = check(gl, ip, from, to, T0);
	char key[256];
	snprintf(key, sizeof key, GREYLIST_KEY_TRIPLETS "%s", v.triplet);
	const char *junk[] = { "not json", "[1,2]", "{\"first\":\"x\"}", "{\"first\":0}",
			       "{\"first\":5,\"passed\":-1}", "" };
	for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
		assert_int_equal(etcd_kv_put(f->raw, key, junk[i], strlen(junk[i]), 0), MAIL_OK);
		assert_defer(check(gl, ip, from, to, T0 + 1000), GREYLIST_REASON_EXPIRED, DELAY);
	}
	/* a newer writer's extra fields are fine */
	const char *newer = "{\"first\":1767226200000,\"passed\":0,\"hits\":3}";
	assert_int_equal(etcd_kv_put(f->raw, key, newer, strlen(newer), 0), MAIL_OK);
	assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL), GREYLIST_REASON_RETRIED, 0);

	/* the registry key of a later hour, spoilt before anyone used it */
	int64_t t3 = T0 + 3 * HOUR_MS;
	char lkey[128];
	snprintf(lkey, sizeof lkey, GREYLIST_KEY_LEASES "%u/%lld", 26u * 3600,
		 (long long)(t3 / HOUR_MS * 3600));
	assert_int_equal(etcd_kv_put(f->raw, lkey, "junk", 4, 0), MAIL_OK);
	assert_defer(check(gl, ip, from, "q@rcpt.test", t3), GREYLIST_REASON_NEW, DELAY);
	char *value;
	size_t len;
	int64_t lease;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_LEASES, NULL, NULL), 3);
	assert_int_equal(etcd_kv_get(f->raw, lkey, &value, &len, NULL, NULL), MAIL_OK);
	lease = strtoll(value, NULL, 10);
	free(value);
	assert_true(lease > 0);

	const char *dkey = GREYLIST_KEY_DOMAINS "junk.test";
	assert_int_equal(etcd_kv_put(f->raw, dkey, "{}", 2, 0), MAIL_OK);
	assert_int_equal(greylist_domain_known(gl, "junk.test", T0), MAIL_ERR_NOT_FOUND);
	assert_int_equal(greylist_domain_note(gl, "junk.test", T0), MAIL_OK);
	assert_int_equal(greylist_domain_known(gl, "junk.test", T0), MAIL_OK);
	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.etcd_failures, 0);
	greylist_destroy(&gl);
}

/* A cached pass costs no round trip; after cache_ttl_s it asks again. */
static void test_cache(void **state)
{
	fixture *f = *state;
	struct greylist_settings s = { .cache_ttl_s = 60 };
	greylist *gl = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	const char *ip = "192.0.2.70", *from = "busy@sender.test";
	char to[64];
	for (int i = 0; i < 5; i++) {
		snprintf(to, sizeof to, "r%d@rcpt.test", i);
		check(gl, ip, from, to, T0);
		assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL), GREYLIST_REASON_RETRIED, 0);
	}
	struct greylist_stats before = stats_of(gl);
	for (int round = 0; round < 20; round++) {
		for (int i = 0; i < 5; i++) {
			snprintf(to, sizeof to, "r%d@rcpt.test", i);
			assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + round * 1000),
				    GREYLIST_REASON_KNOWN, 1);
		}
	}
	struct greylist_stats after = stats_of(gl);
	assert_int_equal(after.etcd_requests, before.etcd_requests);
	assert_int_equal(after.cache_hits - before.cache_hits, 100);

	/* a minute later the cache has forgotten: one read each, no write
	 * (same day) */
	for (int i = 0; i < 5; i++) {
		snprintf(to, sizeof to, "r%d@rcpt.test", i);
		assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + 61 * 1000),
			    GREYLIST_REASON_KNOWN, 0);
	}
	before = after;
	after = stats_of(gl);
	assert_int_equal(after.etcd_requests - before.etcd_requests, 5);
	/* pending triplets are never cached: each early retry reads etcd */
	check(gl, ip, from, "pending@rcpt.test", T0);
	before = stats_of(gl);
	for (int i = 1; i <= 3; i++)
		assert_defer(check(gl, ip, from, "pending@rcpt.test", T0 + i * 1000),
			     GREYLIST_REASON_EARLY, DELAY - (unsigned)i);
	after = stats_of(gl);
	assert_int_equal(after.etcd_requests - before.etcd_requests, 3);
	greylist_destroy(&gl);

	/* the cache is bounded: more passes than entries still answer right */
	s = (struct greylist_settings){ .cache_entries = GREYLIST_CACHE_ENTRIES_MIN };
	gl = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	for (int i = 0; i < 5; i++) {
		snprintf(to, sizeof to, "r%d@rcpt.test", i);
		assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + 2000),
			    GREYLIST_REASON_KNOWN, 0);
	}
	greylist_destroy(&gl);
}

static void test_domains(void **state)
{
	fixture *f = *state;
	etcd_stats es = { 0 };
	struct greylist_settings s = { .etcd_stats = &es };
	greylist *a = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	greylist *b = gl_new(f);
	assert_int_equal(greylist_domain_known(a, "sender.test", T0), MAIL_ERR_NOT_FOUND);
	assert_int_equal(greylist_domain_note(a, "Sender.TEST", T0), MAIL_OK);
	assert_int_equal(etcd_stats_writes(&es), 2); /* the key, the day's registry key */
	assert_int_equal(greylist_domain_known(a, "sender.test", T0 + 1), MAIL_OK);
	/* the other frontend: from etcd, then from its cache */
	struct greylist_stats st0 = stats_of(b);
	assert_int_equal(greylist_domain_known(b, "SENDER.test", T0 + 2), MAIL_OK);
	assert_int_equal(greylist_domain_known(b, "sender.test", T0 + 3), MAIL_OK);
	struct greylist_stats st1 = stats_of(b);
	assert_int_equal(st1.etcd_requests - st0.etcd_requests, 1);
	assert_int_equal(st1.cache_hits - st0.cache_hits, 1);
	assert_int_equal(greylist_domain_known(b, "other.test", T0 + 3), MAIL_ERR_NOT_FOUND);

	/* noted again the same day: no write, from a's cache or from etcd */
	assert_int_equal(greylist_domain_note(a, "sender.test", T0 + HOUR_MS), MAIL_OK);
	greylist_destroy(&a);
	a = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	assert_int_equal(greylist_domain_note(a, "sender.test", T0 + 2 * HOUR_MS), MAIL_OK);
	assert_int_equal(etcd_stats_writes(&es), 2);
	/* the next day: one write (and the new day's registry key) */
	assert_int_equal(greylist_domain_note(a, "sender.test", T0 + DAY_MS), MAIL_OK);
	assert_int_equal(etcd_stats_writes(&es), 4);

	/* stored in clear under its lease, with the time it was noted */
	char *value;
	size_t len;
	assert_int_equal(etcd_kv_get(f->raw, GREYLIST_KEY_DOMAINS "sender.test", &value, &len,
				     NULL, NULL),
			 MAIL_OK);
	char want[64];
	snprintf(want, sizeof want, "{\"noted\":%lld}", (long long)(T0 + DAY_MS));
	assert_string_equal(value, want);
	free(value);
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_DOMAINS, NULL, NULL), 1);

	/* 36 days later it is not known any more, even though the key is
	 * still there (its lease is real time, the test's clock is not) */
	greylist_destroy(&b);
	b = gl_new(f);
	assert_int_equal(greylist_domain_known(b, "sender.test", T0 + DAY_MS + 35 * DAY_MS),
			 MAIL_OK);
	greylist_destroy(&b);
	b = gl_new(f);
	assert_int_equal(greylist_domain_known(b, "sender.test", T0 + DAY_MS + 35 * DAY_MS + 1),
			 MAIL_ERR_NOT_FOUND);

	assert_int_equal(greylist_domain_known(b, "", T0), MAIL_ERR_PARAMS);
	assert_int_equal(greylist_domain_known(b, "a/b", T0), MAIL_ERR_PARAMS);
	assert_int_equal(greylist_domain_known(b, NULL, T0), MAIL_ERR_PARAMS);
	assert_int_equal(greylist_domain_note(b, "-bad.test", T0), MAIL_ERR_PARAMS);
	assert_int_equal(greylist_domain_note(b, "ok.test", 0), MAIL_ERR_PARAMS);
	greylist_destroy(&a);
	greylist_destroy(&b);
}

static void test_params(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	struct greylist_verdict v;
	const char *ip = "192.0.2.80";
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "b@y.test", 0, T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "b@y.test", GREYLIST_DELAY_MAX + 1,
					T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "b@y.test", DELAY, 0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "b@y.test", DELAY, -5, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, "bad", "a@x.test", "b@y.test", DELAY, T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, NULL, "a@x.test", "b@y.test", DELAY, T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, NULL, "b@y.test", DELAY, T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", NULL, DELAY, T0, &v),
			 MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "", DELAY, T0, &v), MAIL_ERR_PARAMS);
	assert_int_equal(greylist_check(gl, ip, "a@x.test", "b@y.test", DELAY, T0, NULL),
			 MAIL_ERR_PARAMS);
	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.errors, 10);
	assert_int_equal(st.etcd_requests, 0);
	greylist_destroy(&gl);

	/* settings out of range: no object */
	struct greylist_settings s = { .retry_window_s = 60 };
	assert_null(greylist_create(mailtest_etcd_conf(f->etcd), &s));
	s = (struct greylist_settings){ .cache_entries = GREYLIST_CACHE_ENTRIES_MAX + 1 };
	assert_null(greylist_create(mailtest_etcd_conf(f->etcd), &s));
	s = (struct greylist_settings){ .passed_ttl_s = GREYLIST_PASSED_TTL_S_MAX };
	gl = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	assert_non_null(gl);
	greylist_destroy(&gl);

	assert_string_equal(greylist_reason_name(GREYLIST_REASON_NEW), "new");
	assert_string_equal(greylist_reason_name(GREYLIST_REASON_KNOWN), "known");
	assert_string_equal(greylist_reason_name((enum greylist_reason)99), "unknown");
}

/* etcd away: an answer within one request timeout, then at once during
 * the backoff; cached passes still answer; back to normal afterwards; and
 * the state survives an etcd restart. */
static void test_unavailable(void **state)
{
	fixture *f = *state;
	struct greylist_settings s = { .unavailable_backoff_ms = 500 };
	greylist *gl = greylist_create(mailtest_etcd_conf(f->etcd), &s);
	const char *ip = "192.0.2.90", *from = "k@sender.test", *to = "l@rcpt.test";
	check(gl, ip, from, to, T0);
	assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL), GREYLIST_REASON_RETRIED, 0);
	struct greylist_verdict v;

	/* hung (SIGSTOP): the connection is accepted, nothing answers; the
	 * etcd client's request timeout (3 s, etcd.h) ends it */
	assert_int_equal(kill(mailtest_etcd_pid(f->etcd), SIGSTOP), 0);
	uint64_t t = util_now_mono_ms();
	assert_int_equal(greylist_check(gl, ip, from, "m@rcpt.test", DELAY, T0, &v),
			 MAIL_ERR_UNAVAILABLE);
	uint64_t took = util_now_mono_ms() - t;
	assert_true(took < 4500);
	/* the backoff: no second timeout */
	t = util_now_mono_ms();
	assert_int_equal(greylist_check(gl, ip, from, "n@rcpt.test", DELAY, T0, &v),
			 MAIL_ERR_UNAVAILABLE);
	assert_int_equal(greylist_domain_known(gl, "sender.test", T0), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(greylist_domain_note(gl, "sender.test", T0), MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - t < 100);
	/* a cached pass does not need etcd */
	assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + 1), GREYLIST_REASON_KNOWN, 1);
	assert_int_equal(kill(mailtest_etcd_pid(f->etcd), SIGCONT), 0);
	mailtest_sleep_ms(600);
	/* a fresh triplet: the create that timed out while etcd was stopped
	 * sat in its socket and may have been applied after SIGCONT, so "m"
	 * may exist now (new or early, both right) */
	assert_defer(check(gl, ip, from, "p@rcpt.test", T0), GREYLIST_REASON_NEW, DELAY);

	/* killed: connection refused, at once */
	assert_int_equal(kill(mailtest_etcd_pid(f->etcd), SIGKILL), 0);
	mailtest_sleep_ms(200);
	t = util_now_mono_ms();
	assert_int_equal(greylist_check(gl, ip, from, "o@rcpt.test", DELAY, T0, &v),
			 MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - t < 1500);
	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.errors, 3);
	assert_int_equal(st.etcd_failures, 2);

	/* etcd back on the same data: the state is there */
	assert_int_equal(mailtest_etcd_restart(f->etcd), 0);
	mailtest_sleep_ms(600);
	greylist_destroy(&gl);
	gl = gl_new(f);
	assert_pass(check(gl, ip, from, to, T0 + DELAY * 1000LL + 2), GREYLIST_REASON_KNOWN, 0);
	assert_defer(check(gl, ip, from, "p@rcpt.test", T0 + 1000), GREYLIST_REASON_EARLY,
		     DELAY - 1);
	greylist_destroy(&gl);
}

/* Many threads on one object (the libuv pool's use): every answer right,
 * one lease per bucket, counters add up (ASan/UBSan build: no races on
 * the cache or the leases). Phase one: every thread checks every triplet
 * at T0 (each defers: one thread creates, the others find it); phase two,
 * after a barrier, after the delay (each passes: retried or known). */
enum { THREADS = 4, TRIPLETS = 30 };

struct thread_arg {
	greylist *gl;
	pthread_barrier_t *barrier;
	int failures;
};

static void thread_phase(struct thread_arg *arg, int64_t now, enum greylist_action want)
{
	char to[64];
	for (int i = 0; i < TRIPLETS; i++) {
		snprintf(to, sizeof to, "t%d@rcpt.test", i);
		struct greylist_verdict v;
		if (greylist_check(arg->gl, "192.0.2.100", "mt@sender.test", to, DELAY, now, &v) !=
			    MAIL_OK ||
		    v.action != want)
			arg->failures++;
	}
}

static void *thread_main(void *p)
{
	struct thread_arg *arg = p;
	thread_phase(arg, T0, GREYLIST_DEFER);
	pthread_barrier_wait(arg->barrier);
	thread_phase(arg, T0 + DELAY * 1000LL, GREYLIST_PASS);
	return NULL;
}

static void test_threads(void **state)
{
	fixture *f = *state;
	greylist *gl = gl_new(f);
	pthread_barrier_t barrier;
	pthread_barrier_init(&barrier, NULL, THREADS);
	pthread_t th[THREADS];
	struct thread_arg args[THREADS];
	for (int i = 0; i < THREADS; i++) {
		args[i] = (struct thread_arg){ .gl = gl, .barrier = &barrier };
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &args[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(args[i].failures, 0);
	}
	pthread_barrier_destroy(&barrier);
	struct greylist_stats st = stats_of(gl);
	assert_int_equal(st.checks, 2 * THREADS * TRIPLETS);
	assert_int_equal(st.deferred, THREADS * TRIPLETS);
	assert_int_equal(st.passed, THREADS * TRIPLETS);
	assert_int_equal(st.leases_granted, 2); /* the hour's, the day's */
	size_t keys;
	assert_int_equal(distinct_leases(f, GREYLIST_KEY_TRIPLETS, &keys, NULL), 1);
	assert_int_equal(keys, TRIPLETS);
	greylist_destroy(&gl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_cache_table),
		cmocka_unit_test_setup_teardown(test_first_retry_pass, setup, teardown),
		cmocka_unit_test_setup_teardown(test_networks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_frontends_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leases, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lease_revoked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_records, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_domains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unavailable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
