/* test-auth-guard.c: penalties and the cluster-wide block list against a
 * real etcd: the delays, the window, a block written by one guard and
 * honoured by another (two frontends), its lease running out, and the
 * table's bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "auth-guard.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"

/* Run loop until cond(arg) or timeout_ms. Returns cond's last value. */
static int run_until(uv_loop_t *loop, int (*cond)(void *), void *arg, int timeout_ms)
{
	struct timespec step = { 0, 20 * 1000 * 1000 };
	for (int waited = 0; waited < timeout_ms; waited += 20) {
		uv_run(loop, UV_RUN_NOWAIT);
		if (cond(arg))
			return 1;
		nanosleep(&step, NULL);
	}
	return cond(arg);
}

struct probe {
	auth_guard *g;
	const char *ip;
};

static int is_blocked(void *arg)
{
	struct probe *p = arg;
	return auth_guard_blocked(p->g, p->ip);
}

static int is_unblocked(void *arg)
{
	return !is_blocked(arg);
}

static void test_delays_and_window(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct auth_guard_settings set = { 0 };
	auth_guard *g = auth_guard_start(&loop, &set);
	auth_guard_set_now(g, 1000000);
	const char *ip = "198.51.100.7";
	assert_int_equal(auth_guard_delay_ms(g, ip), 0);
	unsigned want[] = { 2000, 4000, 8000, 15000, 15000 };
	for (int i = 0; i < 5; i++) {
		auth_guard_failure(g, ip);
		assert_int_equal(auth_guard_delay_ms(g, ip), want[i]);
	}
	assert_int_equal(auth_guard_delay_ms(g, "198.51.100.8"), 0); /* per address */
	/* the window passes: a clean slate */
	auth_guard_set_now(g, 1000000 + AUTH_GUARD_WINDOW_MS + 1);
	assert_int_equal(auth_guard_delay_ms(g, ip), 0);
	/* bounded: 100,000 addresses later the table has not grown, and the
	 * newest are still counted */
	char other[48];
	for (int i = 0; i < 100000; i++) {
		snprintf(other, sizeof other, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255,
			 i & 255);
		auth_guard_failure(g, other);
	}
	assert_int_equal(auth_guard_failures(g, other), 1);
	/* no etcd: a block is local only */
	for (unsigned i = 0; i < AUTH_GUARD_BLOCK_AFTER; i++)
		auth_guard_failure(g, "192.0.2.99");
	assert_true(auth_guard_blocked(g, "192.0.2.99"));
	auth_guard_stop(&g);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_cluster_block(void **state)
{
	(void)state;
	mailtest_etcd *etcd;
	assert_int_equal(mailtest_etcd_start(&etcd), 0);
	uv_loop_t loop;
	uv_loop_init(&loop);
	struct auth_guard_settings set = {
		.etcd = mailtest_etcd_conf(etcd), .node_id = "frontend-1", .block_ttl_s = 3,
	};
	auth_guard *a = auth_guard_start(&loop, &set);
	set.node_id = "frontend-2";
	auth_guard *b = auth_guard_start(&loop, &set);
	const char *ip = "203.0.113.5";
	for (unsigned i = 0; i + 1 < AUTH_GUARD_BLOCK_AFTER; i++)
		auth_guard_failure(a, ip);
	assert_false(auth_guard_blocked(a, ip));
	auth_guard_failure(a, ip);
	assert_true(auth_guard_blocked(a, ip)); /* at once, here */
	struct probe pb = { b, ip };
	/* the other frontend learns it from etcd */
	assert_true(run_until(&loop, is_blocked, &pb, 6000));
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(etcd));
	char *value = NULL;
	size_t len = 0;
	assert_int_equal(etcd_kv_get(c, AUTH_GUARD_KEY_PREFIX "203.0.113.5", &value, &len, NULL, NULL),
			 MAIL_OK);
	assert_non_null(strstr(value, "auth_failures"));
	assert_non_null(strstr(value, "frontend-1"));
	free(value);
	/* the lease runs out: unblocked everywhere */
	struct probe pa = { a, ip };
	assert_true(run_until(&loop, is_unblocked, &pb, 10000));
	assert_true(run_until(&loop, is_unblocked, &pa, 4000));
	/* an operator's block (no lease) is honoured too */
	const char *op = "{\"reason\":\"operator\"}";
	assert_int_equal(etcd_kv_put(c, AUTH_GUARD_KEY_PREFIX "198.51.100.66", op, strlen(op), 0),
			 MAIL_OK);
	struct probe po = { a, "198.51.100.66" };
	assert_true(run_until(&loop, is_blocked, &po, 6000));
	assert_int_equal(auth_guard_blocked_count(a), 1);
	etcd_client_destroy(&c);
	auth_guard_stop(&a);
	auth_guard_stop(&b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	mailtest_etcd_stop(&etcd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_delays_and_window),
		cmocka_unit_test(test_cluster_block),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
