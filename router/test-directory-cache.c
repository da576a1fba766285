/* test-directory-cache.c: the directory in memory against a real etcd: what
 * a frontend reads comes from the copy, changes reach it, negative answers
 * are never stale, and a stalled or lost watch is found and healed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "directory-cache.h"
#include "directory-private.h"
#include "directory.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "xalloc.h"

typedef struct fixture {
	mailtest_etcd *etcd;
	directory *admin;  /* writes, as mailctl does: no cache */
	directory *cached; /* reads, as a frontend does */
} fixture;

#define CHECK_MS 100
#define RESYNC_MS 600000 /* never, in a test; test_resync sets its own */

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->admin = directory_create(mailtest_etcd_conf(f->etcd));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	directory_destroy(&f->cached);
	directory_destroy(&f->admin);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

static struct directory_cache_stats stats(fixture *f)
{
	struct directory_cache_stats st;
	assert_int_equal(directory_cache_stats(f->cached, &st), 0);
	return st;
}

/* Wait up to 10 s for the copy to be live and hold `keys` keys. */
static void wait_keys(fixture *f, uint64_t keys)
{
	struct directory_cache_stats st = { 0 };
	for (int i = 0; i < 1000; i++) {
		st = stats(f);
		if (st.live && st.keys == keys)
			return;
		mailtest_sleep_ms(10);
	}
	fail_msg("cache: live=%d keys=%llu, want %llu", st.live, (unsigned long long)st.keys,
		 (unsigned long long)keys);
}

static void start_cached_resync(fixture *f, unsigned resync_ms)
{
	f->cached = directory_create(mailtest_etcd_conf(f->etcd));
	directory_cache_start(f->cached, CHECK_MS, resync_ms);
}

static void start_cached(fixture *f)
{
	start_cached_resync(f, RESYNC_MS);
}

/* The lookups a frontend makes are answered from the copy: no read falls
 * back to etcd, and a second start of the cache is harmless. */
static void test_reads_from_copy(void **state)
{
	fixture *f = *state;
	assert_int_equal(directory_cache_stats(f->admin, &(struct directory_cache_stats){ 0 }),
			 -1);
	assert_int_equal(directory_tenant_add(f->admin, "c.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "ann@c.test", "pw-ann-1"), MAIL_OK);
	const char *targets[] = { "ann@c.test" };
	assert_int_equal(directory_alias_add(f->admin, "sales@c.test", targets, 1), MAIL_OK);
	start_cached(f);
	directory_cache_start(f->cached, CHECK_MS, RESYNC_MS);
	wait_keys(f, 3);

	struct directory_cache_stats before = stats(f);
	assert_int_equal(directory_authenticate(f->cached, "Ann@C.test", "pw-ann-1"), MAIL_OK);
	assert_int_equal(directory_user_active(f->cached, "ann@c.test"), MAIL_OK);
	struct directory_rcpt r = { 0 };
	assert_int_equal(directory_rcpt_resolve(f->cached, "sales@c.test", NULL, &r), MAIL_OK);
	assert_int_equal(r.n_routes, 1);
	assert_string_equal(r.routes[0].address, "ann@c.test");
	directory_rcpt_free(&r);
	struct directory_tenant_settings ts;
	assert_int_equal(directory_tenant_settings_get(f->cached, "c.test", &ts), MAIL_OK);
	struct directory_cache_stats after = stats(f);
	assert_true(after.hits > before.hits);
	assert_int_equal(after.fallbacks, before.fallbacks);
	assert_int_equal(after.confirms, before.confirms);
	assert_int_equal(after.loads, 1);
}

/* A user added a moment ago is never refused (the negative answer is read
 * again from etcd); one deleted or changed is seen once the watch brings
 * the event. */
static void test_changes(void **state)
{
	fixture *f = *state;
	start_cached(f);
	wait_keys(f, 0);
	assert_int_equal(directory_tenant_add(f->admin, "d.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "bob@d.test", "pw-bob-1"), MAIL_OK);
	/* right away, whatever the watch has delivered */
	assert_int_equal(directory_authenticate(f->cached, "bob@d.test", "pw-bob-1"), MAIL_OK);
	struct directory_rcpt r = { 0 };
	assert_int_equal(directory_rcpt_resolve(f->cached, "bob@d.test", NULL, &r), MAIL_OK);
	directory_rcpt_free(&r);
	assert_int_equal(directory_rcpt_resolve(f->cached, "nobody@d.test", NULL, &r),
			 MAIL_ERR_NOT_FOUND);
	directory_rcpt_free(&r);
	assert_true(stats(f).confirms >= 1); /* the unknown recipient, at least */
	wait_keys(f, 2);

	/* a new password works at once; the old one stops within the watch's
	 * delay */
	assert_int_equal(directory_user_passwd(f->admin, "bob@d.test", "pw-bob-2"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->cached, "bob@d.test", "pw-bob-2"), MAIL_OK);
	int old = MAIL_OK;
	for (int i = 0; i < 100 && old == MAIL_OK; i++) {
		old = directory_authenticate(f->cached, "bob@d.test", "pw-bob-1");
		if (old == MAIL_OK)
			mailtest_sleep_ms(20);
	}
	assert_int_equal(old, MAIL_ERR_PERM);

	/* disabled, then deleted */
	assert_int_equal(directory_user_state_set(f->admin, "bob@d.test", DIRECTORY_USER_DISABLED),
			 MAIL_OK);
	int st = MAIL_OK;
	for (int i = 0; i < 100 && st == MAIL_OK; i++) {
		st = directory_user_active(f->cached, "bob@d.test");
		if (st == MAIL_OK)
			mailtest_sleep_ms(20);
	}
	assert_int_equal(st, MAIL_ERR_PERM);
	assert_int_equal(directory_user_del(f->admin, "bob@d.test"), MAIL_OK);
	wait_keys(f, 1);
	assert_int_equal(directory_user_exists(f->cached, "bob@d.test"), MAIL_ERR_NOT_FOUND);
}

/* A watch that stops delivering while its stream stays up: the revision
 * check finds the copy holds another number of keys than etcd and loads it
 * again. */
static void test_stalled_watch(void **state)
{
	fixture *f = *state;
	assert_int_equal(directory_tenant_add(f->admin, "e.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "old@e.test", "pw-old-1"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "new@e.test", "pw-new-1"), MAIL_OK);
	start_cached(f);
	wait_keys(f, 3);
	directory_cache_test_drop_events(f->cached->cache, 1);
	assert_int_equal(directory_user_del(f->admin, "old@e.test"), MAIL_OK);
	/* meanwhile the copy answers (a stale yes) */
	assert_int_equal(directory_user_exists(f->cached, "old@e.test"), MAIL_OK);
	struct directory_cache_stats st = { 0 };
	for (int i = 0; i < 500 && (st = stats(f)).loads < 2; i++)
		mailtest_sleep_ms(10);
	assert_true(st.lags >= 1);
	assert_true(st.loads >= 2);
	directory_cache_test_drop_events(f->cached->cache, 0);
	wait_keys(f, 2);
	assert_int_equal(directory_user_exists(f->cached, "old@e.test"), MAIL_ERR_NOT_FOUND);
	/* a user added while the events were dropped is in the copy */
	uint64_t confirms = stats(f).confirms;
	assert_int_equal(directory_user_exists(f->cached, "new@e.test"), MAIL_OK);
	assert_int_equal(stats(f).confirms, confirms);
}

/* A stall that loses only a change of an existing key (the counts agree)
 * is healed by the periodic resync, the copy staying live. */
static void test_resync(void **state)
{
	fixture *f = *state;
	assert_int_equal(directory_tenant_add(f->admin, "h.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "hal@h.test", "pw-hal-1"), MAIL_OK);
	start_cached_resync(f, 1000);
	wait_keys(f, 2);
	directory_cache_test_drop_events(f->cached->cache, 1);
	assert_int_equal(directory_user_state_set(f->admin, "hal@h.test", DIRECTORY_USER_DISABLED),
			 MAIL_OK);
	struct directory_cache_stats st = { 0 };
	for (int i = 0; i < 500 && (st = stats(f)).loads < 2; i++)
		mailtest_sleep_ms(10);
	assert_true(st.loads >= 2);
	assert_int_equal(st.lags, 0);
	assert_int_equal(st.fallbacks, 0);
	char *v = NULL;
	assert_int_equal(directory_cache_get(f->cached->cache, "/mail/v1/users/h.test/hal", &v,
					     NULL),
			 1);
	assert_non_null(strstr(v, "\"disabled\""));
	free(v);
	directory_cache_test_drop_events(f->cached->cache, 0);
}

/* etcd restarted under the cache: the watches end, reads go to etcd
 * meanwhile, and the copy is loaded again once etcd is back. */
static void test_etcd_restart(void **state)
{
	fixture *f = *state;
	assert_int_equal(directory_tenant_add(f->admin, "g.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->admin, "gil@g.test", "pw-gil-1"), MAIL_OK);
	start_cached(f);
	wait_keys(f, 2);
	assert_int_equal(mailtest_etcd_restart(f->etcd), 0);
	struct directory_cache_stats st = { 0 };
	for (int i = 0; i < 1000 && (st = stats(f)).loads < 2; i++)
		mailtest_sleep_ms(10);
	assert_true(st.watch_lost >= 1);
	assert_true(st.loads >= 2);
	wait_keys(f, 2);
	assert_int_equal(directory_authenticate(f->cached, "gil@g.test", "pw-gil-1"), MAIL_OK);
}

static int reset(void **state)
{
	fixture *f = *state;
	directory_destroy(&f->cached);
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	assert_int_equal(etcd_kv_delete_prefix(c, "/mail/v1/", NULL), MAIL_OK);
	etcd_client_destroy(&c);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_reads_from_copy, reset),
		cmocka_unit_test_teardown(test_changes, reset),
		cmocka_unit_test_teardown(test_stalled_watch, reset),
		cmocka_unit_test_teardown(test_resync, reset),
		cmocka_unit_test_teardown(test_etcd_restart, reset),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
