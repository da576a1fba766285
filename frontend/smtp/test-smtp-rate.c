/* test-smtp-rate.c: the per-user outbound counter and the tenant settings
 * cache (smtp-rate.h), on a clock the test drives. */
#include "smtp-rate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define MIN_MS 60000ull
#define HOUR_MS (60 * MIN_MS)
/* an arbitrary monotonic start, not on a minute boundary */
#define T0 (1000 * HOUR_MS + 12345)

/* limit messages pass, the next is refused, in any order of users. */
static void test_limit(void **state)
{
	(void)state;
	smtp_rate *r = smtp_rate_create(NULL);
	for (int i = 0; i < 3; i++) {
		assert_false(smtp_rate_over(r, "a@x.test", 3, T0));
		assert_true(smtp_rate_take(r, "a@x.test", 3, T0 + (uint64_t)i));
	}
	assert_int_equal(smtp_rate_count(r, "a@x.test", T0), 3);
	assert_true(smtp_rate_over(r, "a@x.test", 3, T0));
	assert_false(smtp_rate_take(r, "a@x.test", 3, T0 + 10));
	assert_int_equal(smtp_rate_count(r, "a@x.test", T0 + 10), 3); /* refused: not counted */
	/* another user is not affected; a higher limit lets one more through */
	assert_true(smtp_rate_take(r, "b@x.test", 3, T0));
	assert_true(smtp_rate_take(r, "a@x.test", 4, T0 + 20));
	assert_false(smtp_rate_take(r, "a@x.test", 4, T0 + 20));
	/* a lowered limit refuses at once */
	assert_false(smtp_rate_take(r, "b@x.test", 1, T0 + 30));
	/* limit 0: no limit, nothing counted, nothing tracked */
	assert_true(smtp_rate_take(r, "c@x.test", 0, T0));
	assert_false(smtp_rate_over(r, "c@x.test", 0, T0));
	assert_int_equal(smtp_rate_count(r, "c@x.test", T0), 0);
	struct smtp_rate_stats st;
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, 2);
	assert_int_equal(st.limited, 3);
	smtp_rate_destroy(&r);
	assert_null(r);
}

/* A message counts for the hour after the minute it was taken in: it
 * leaves the window 59 to 60 minutes later, one minute at a time. */
static void test_sliding_window(void **state)
{
	(void)state;
	smtp_rate *r = smtp_rate_create(NULL);
	uint64_t m0 = (T0 / MIN_MS) * MIN_MS; /* start of the minute */
	/* 2 at minute 0, 1 at minute 10, 2 at minute 30 */
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 1));
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 59999));
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 10 * MIN_MS));
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 30 * MIN_MS));
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 30 * MIN_MS + 5));
	assert_false(smtp_rate_take(r, "u@x.test", 5, m0 + 59 * MIN_MS + 59999));
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0 + 59 * MIN_MS + 59999), 5);
	/* minute 60: minute 0's two are gone */
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0 + 60 * MIN_MS), 3);
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 60 * MIN_MS));
	assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 65 * MIN_MS));
	assert_false(smtp_rate_take(r, "u@x.test", 5, m0 + 69 * MIN_MS));
	/* minute 70: minute 10's one is gone */
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0 + 70 * MIN_MS), 4);
	/* minute 90: only minutes 60 and 65 are left */
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0 + 90 * MIN_MS), 2);
	/* long quiet: everything gone, the buckets reused cleanly */
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0 + 10 * HOUR_MS), 0);
	for (int i = 0; i < 5; i++)
		assert_true(smtp_rate_take(r, "u@x.test", 5, m0 + 10 * HOUR_MS + (uint64_t)i));
	assert_false(smtp_rate_take(r, "u@x.test", 5, m0 + 10 * HOUR_MS + 9));
	/* a clock that seems to go back moves nothing */
	assert_int_equal(smtp_rate_count(r, "u@x.test", m0), 5);
	smtp_rate_destroy(&r);
}

/* A message the queue refused is given back, in its own minute only. */
static void test_give_back(void **state)
{
	(void)state;
	smtp_rate *r = smtp_rate_create(NULL);
	assert_true(smtp_rate_take(r, "u@x.test", 2, T0));
	assert_true(smtp_rate_take(r, "u@x.test", 2, T0 + 5 * MIN_MS));
	assert_false(smtp_rate_take(r, "u@x.test", 2, T0 + 5 * MIN_MS));
	smtp_rate_give_back(r, "u@x.test", T0 + 5 * MIN_MS, T0 + 6 * MIN_MS);
	assert_int_equal(smtp_rate_count(r, "u@x.test", T0 + 6 * MIN_MS), 1);
	/* twice is no more than once: that minute's bucket is empty now */
	smtp_rate_give_back(r, "u@x.test", T0 + 5 * MIN_MS, T0 + 6 * MIN_MS);
	assert_int_equal(smtp_rate_count(r, "u@x.test", T0 + 6 * MIN_MS), 1);
	/* one already out of the window, or of an unknown user: nothing */
	smtp_rate_give_back(r, "u@x.test", T0, T0 + 2 * HOUR_MS);
	smtp_rate_give_back(r, "nobody@x.test", T0, T0);
	assert_int_equal(smtp_rate_count(r, "nobody@x.test", T0), 0);
	smtp_rate_destroy(&r);
}

/* At most max_users users; a new one replaces the least recently used,
 * whose counts are forgotten (and counted as such). */
static void test_cap_eviction(void **state)
{
	(void)state;
	struct smtp_rate_settings set = { .max_users = 16 };
	smtp_rate *r = smtp_rate_create(&set);
	char name[64];
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof name, "user%d@x.test", i);
		assert_true(smtp_rate_take(r, name, 1, T0));
	}
	struct smtp_rate_stats st;
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, 16);
	/* user0 is used again: user1 becomes the least recently used */
	assert_true(smtp_rate_over(r, "user0@x.test", 1, T0));
	assert_true(smtp_rate_take(r, "new@x.test", 1, T0));
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, 16);
	assert_int_equal(st.evicted_active, 1);
	assert_int_equal(smtp_rate_count(r, "user1@x.test", T0), 0); /* forgotten */
	assert_int_equal(smtp_rate_count(r, "user0@x.test", T0), 1); /* kept */
	assert_false(smtp_rate_take(r, "user0@x.test", 1, T0));
	/* a user whose window is empty goes without being counted as lost */
	for (int i = 0; i < 16; i++) {
		snprintf(name, sizeof name, "late%d@x.test", i);
		assert_true(smtp_rate_take(r, name, 1, T0 + 2 * HOUR_MS));
	}
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, 16);
	assert_int_equal(st.evicted_active, 1);
	/* many more users than the cap: memory stays at the cap */
	for (int i = 0; i < 10000; i++) {
		snprintf(name, sizeof name, "flood%d@x.test", i);
		assert_true(smtp_rate_take(r, name, 100, T0 + 3 * HOUR_MS));
	}
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, 16);
	for (int i = 9984; i < 10000; i++) {
		snprintf(name, sizeof name, "flood%d@x.test", i);
		assert_int_equal(smtp_rate_count(r, name, T0 + 3 * HOUR_MS), 1);
	}
	smtp_rate_destroy(&r);
	/* the cap is clamped to its minimum */
	set.max_users = 1;
	r = smtp_rate_create(&set);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof name, "u%d@x.test", i);
		smtp_rate_take(r, name, 5, T0);
	}
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.users, SMTP_RATE_USERS_MIN);
	smtp_rate_destroy(&r);
}

/* Tenant settings are served for the TTL after they were put, then not;
 * a put refreshes; the cache is bounded too. */
static void test_tenant_cache(void **state)
{
	(void)state;
	struct smtp_rate_settings set = { .max_tenants = 2, .tenant_ttl_ms = 30000 };
	smtp_rate *r = smtp_rate_create(&set);
	struct directory_tenant_settings ts = { .outbound_per_hour = 3, .delay_warning = 1 };
	struct directory_tenant_settings got;
	assert_false(smtp_rate_tenant_get(r, "a.test", T0, &got));
	smtp_rate_tenant_put(r, "a.test", &ts, T0);
	memset(&got, 0, sizeof got);
	assert_true(smtp_rate_tenant_get(r, "a.test", T0 + 29999, &got));
	assert_int_equal(got.outbound_per_hour, 3);
	assert_true(got.delay_warning);
	assert_false(smtp_rate_tenant_get(r, "a.test", T0 + 30000, &got));
	ts.outbound_per_hour = 7;
	smtp_rate_tenant_put(r, "a.test", &ts, T0 + 30000);
	assert_true(smtp_rate_tenant_get(r, "a.test", T0 + 30001, &got));
	assert_int_equal(got.outbound_per_hour, 7);
	/* two more tenants: a.test (least recently used) goes */
	smtp_rate_tenant_put(r, "b.test", &ts, T0 + 30000);
	smtp_rate_tenant_put(r, "c.test", &ts, T0 + 30000);
	assert_false(smtp_rate_tenant_get(r, "a.test", T0 + 30001, &got));
	assert_true(smtp_rate_tenant_get(r, "b.test", T0 + 30001, &got));
	assert_true(smtp_rate_tenant_get(r, "c.test", T0 + 30001, &got));
	struct smtp_rate_stats st;
	smtp_rate_stats_get(r, &st);
	assert_int_equal(st.tenants, 2);
	smtp_rate_destroy(&r);
}

/* tenant_outbound_per_hour: the tenant's key counts apart from its users,
 * and never collides with an address. */
static void test_tenant_key(void **state)
{
	(void)state;
	smtp_rate *r = smtp_rate_create(NULL);
	char key[SMTP_RATE_TENANT_KEY_MAX];
	smtp_rate_tenant_key("a.test", key, sizeof key);
	assert_string_equal(key, "@a.test");
	/* two users of the tenant, a tenant-wide limit of 3 */
	assert_true(smtp_rate_take(r, "ann@a.test", 10, T0));
	assert_true(smtp_rate_take(r, key, 3, T0));
	assert_true(smtp_rate_take(r, "bob@a.test", 10, T0));
	assert_true(smtp_rate_take(r, key, 3, T0));
	assert_true(smtp_rate_take(r, key, 3, T0));
	assert_true(smtp_rate_over(r, key, 3, T0));
	assert_false(smtp_rate_take(r, key, 3, T0));
	/* the users' own counts are theirs */
	assert_int_equal(smtp_rate_count(r, "ann@a.test", T0), 1);
	assert_int_equal(smtp_rate_count(r, "bob@a.test", T0), 1);
	/* given back (the queue refused): room again */
	smtp_rate_give_back(r, key, T0, T0);
	assert_false(smtp_rate_over(r, key, 3, T0));
	smtp_rate_destroy(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenant_key),
		cmocka_unit_test(test_limit),
		cmocka_unit_test(test_sliding_window),
		cmocka_unit_test(test_give_back),
		cmocka_unit_test(test_cap_eviction),
		cmocka_unit_test(test_tenant_cache),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
