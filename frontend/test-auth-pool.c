/* test-auth-pool.c: the auth pool against a real etcd and directory:
 * checks, the cache (argon2id once per pair within the TTL; wrong
 * passwords never cached), SCRAM lookups, and a login storm that never
 * holds up the loop's own thread pool. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "auth-pool.h"
#include "directory.h"
#include "etcd-fixture.h"
#include "mail-error.h"

struct result {
	int done;
	int status;
	char user[128];
	int have_keys;
};

static void result_cb(int status, const char *user, const struct sasl_scram_keys *keys,
		      void *arg)
{
	struct result *r = arg;
	r->done = 1;
	r->status = status;
	snprintf(r->user, sizeof r->user, "%s", user != NULL ? user : "");
	r->have_keys = keys != NULL;
}

static void wait_for(uv_loop_t *loop, const int *flag)
{
	for (int i = 0; i < 3000 && !*flag; i++)
		uv_run(loop, UV_RUN_ONCE);
	assert_true(*flag);
}

struct storm {
	int answered;
	int light_done;
	int answered_when_light_done;
};

static void storm_cb(int status, const char *user, const struct sasl_scram_keys *keys,
		     void *arg)
{
	(void)status;
	(void)user;
	(void)keys;
	struct storm *s = arg;
	s->answered++;
}

static void light_work(uv_work_t *w)
{
	(void)w;
}

static void light_done(uv_work_t *w, int status)
{
	(void)status;
	struct storm *s = w->data;
	s->light_done = 1;
	s->answered_when_light_done = s->answered;
}

static void test_pool(void **state)
{
	(void)state;
	mailtest_etcd *etcd;
	assert_int_equal(mailtest_etcd_start(&etcd), 0);
	directory *dir = directory_create(mailtest_etcd_conf(etcd));
	assert_int_equal(directory_tenant_add(dir, "example.test"), MAIL_OK);
	assert_int_equal(directory_user_add(dir, "dora@example.test", "right pw"), MAIL_OK);
	uv_loop_t loop;
	uv_loop_init(&loop);
	const uint8_t key[] = "a frontend secret of 32 bytes..";
	auth_pool *p = auth_pool_start(&loop, dir, key, 32, 0);
	struct auth_pool_stats st;

	struct result r = { 0 };
	auth_pool_password(p, "Dora@Example.TEST", "right pw", result_cb, &r);
	assert_false(r.done); /* never inside the call */
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_string_equal(r.user, "dora@example.test");
	/* the same pair again: from the cache, no argon2id */
	memset(&r, 0, sizeof r);
	auth_pool_password(p, "Dora@Example.TEST", "right pw", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_string_equal(r.user, "dora@example.test");
	auth_pool_get_stats(p, &st);
	assert_int_equal(st.checks, 1);
	assert_int_equal(st.cache_hits, 1);
	/* the cache knows the password, not whether the user may still log
	 * in: disabled, or its tenant suspended, it may not (mailctl) */
	assert_int_equal(directory_user_state_set(dir, "dora@example.test", DIRECTORY_USER_DISABLED),
			 MAIL_OK);
	memset(&r, 0, sizeof r);
	auth_pool_password(p, "Dora@Example.TEST", "right pw", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_ERR_PERM);
	assert_int_equal(directory_user_state_set(dir, "dora@example.test", DIRECTORY_USER_ACTIVE),
			 MAIL_OK);
	struct directory_tenant_settings ts;
	memset(&ts, 0, sizeof ts);
	ts.suspended = 1;
	assert_int_equal(directory_tenant_settings_set(dir, "example.test", &ts,
						      DIRECTORY_TENANT_SUSPENDED), MAIL_OK);
	memset(&r, 0, sizeof r);
	auth_pool_password(p, "Dora@Example.TEST", "right pw", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_ERR_PERM);
	ts.suspended = 0;
	assert_int_equal(directory_tenant_settings_set(dir, "example.test", &ts,
						      DIRECTORY_TENANT_SUSPENDED), MAIL_OK);
	memset(&r, 0, sizeof r);
	auth_pool_password(p, "Dora@Example.TEST", "right pw", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	auth_pool_get_stats(p, &st);
	assert_int_equal(st.checks, 1);           /* no argon2id for any of them */
	assert_int_equal(st.cache_hits, 4);
	/* a wrong password is checked, and never cached */
	for (int i = 0; i < 2; i++) {
		memset(&r, 0, sizeof r);
		auth_pool_password(p, "dora@example.test", "wrong", result_cb, &r);
		wait_for(&loop, &r.done);
		assert_int_equal(r.status, MAIL_ERR_PERM);
	}
	auth_pool_get_stats(p, &st);
	assert_int_equal(st.checks, 3);
	/* SCRAM keys */
	memset(&r, 0, sizeof r);
	auth_pool_scram(p, "dora@example.test", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_OK);
	assert_true(r.have_keys);
	memset(&r, 0, sizeof r);
	auth_pool_scram(p, "nobody@example.test", result_cb, &r);
	wait_for(&loop, &r.done);
	assert_int_equal(r.status, MAIL_ERR_PERM);
	assert_false(r.have_keys);

	/* a storm of wrong passwords: the loop's own pool still answers at
	 * once (a recipient lookup would) */
	struct storm s = { 0 };
	for (int i = 0; i < 12; i++)
		auth_pool_password(p, "dora@example.test", "storm", storm_cb, &s);
	uv_work_t light;
	light.data = &s;
	uv_queue_work(&loop, &light, light_work, light_done);
	wait_for(&loop, &s.light_done);
	assert_true(s.answered_when_light_done < 12);
	while (s.answered < 12)
		uv_run(&loop, UV_RUN_ONCE);

	auth_pool_stop(&p);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	directory_destroy(&dir);
	mailtest_etcd_stop(&etcd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
