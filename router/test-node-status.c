/* test-node-status.c: the status value (encode, decode, lag rounding, the
 * write decision) and, against a real etcd, that the publisher writes only
 * on a change; the etcd monitor reads a real etcd's size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd-fixture.h"
#include "etcd-monitor.h"
#include "etcd.h"
#include "mail-error.h"
#include "node-status.h"
#include "util.h"
#include "xalloc.h"

static void test_lag_round(void **state)
{
	(void)state;
	assert_int_equal(node_status_lag_round(0), 0);
	assert_int_equal(node_status_lag_round(NODE_STATUS_LAG_SLACK), 0);
	assert_int_equal(node_status_lag_round(NODE_STATUS_LAG_SLACK + 1),
			 NODE_STATUS_LAG_SLACK + 1);
	assert_int_equal(node_status_lag_round(60), 60);
	assert_int_equal(node_status_lag_round(99), 99);
	assert_int_equal(node_status_lag_round(1234), 1200);
	assert_int_equal(node_status_lag_round(987654), 980000);
}

static void test_encode_decode(void **state)
{
	(void)state;
	node_status_lead leads[2] = { 0 };
	leads[0].partition = 7;
	leads[0].epoch = 12;
	leads[1].partition = 3;
	leads[1].epoch = 5;
	snprintf(leads[1].lagging[0].id, sizeof leads[1].lagging[0].id, "store-2");
	leads[1].lagging[0].lag = 1200;
	snprintf(leads[1].lagging[1].id, sizeof leads[1].lagging[1].id, "store-3");
	leads[1].n_lagging = 2; /* store-3 at lag 0: left out */
	buf out;
	buf_init(&out);
	node_status_encode(leads, 2, &out);
	const char *want = "{\"e\":{\"3\":5,\"7\":12},\"lag\":{\"3\":{\"store-2\":1200}},\"v\":2}";
	assert_int_equal(out.len, strlen(want));
	assert_memory_equal(out.data, want, out.len);

	/* the same state in another order: the same bytes */
	node_status_lead swapped[2] = { leads[1], leads[0] };
	buf again;
	buf_init(&again);
	node_status_encode(swapped, 2, &again);
	assert_int_equal(again.len, out.len);
	assert_memory_equal(again.data, out.data, out.len);
	buf_deinit(&again);

	node_status_lead *got;
	size_t n;
	assert_int_equal(node_status_decode((const char *)out.data, out.len, &got, &n), 0);
	assert_int_equal(n, 2);
	uint64_t lag = 99;
	assert_int_equal(node_status_lag_of(got, n, 3, 5, "store-2", &lag), 1);
	assert_int_equal(lag, 1200);
	assert_int_equal(node_status_lag_of(got, n, 3, 5, "store-3", &lag), 1);
	assert_int_equal(lag, 0);
	assert_int_equal(node_status_lag_of(got, n, 7, 12, "store-1", &lag), 1);
	assert_int_equal(lag, 0);
	/* another epoch than the map's, or a partition not led: unknown */
	assert_int_equal(node_status_lag_of(got, n, 3, 6, "store-2", &lag), 0);
	assert_int_equal(node_status_lag_of(got, n, 4, 1, "store-2", &lag), 0);
	free(got);
	buf_deinit(&out);

	/* nothing led: still a status */
	buf_init(&out);
	node_status_encode(NULL, 0, &out);
	assert_int_equal(node_status_decode((const char *)out.data, out.len, &got, &n), 0);
	assert_int_equal(n, 0);
	assert_null(got);
	buf_deinit(&out);

	/* the old timestamped format, and garbage: not a status */
	const char *old = "{\"ts\":1,\"parts\":{\"0\":{\"e\":1,\"last\":5}}}";
	assert_int_equal(node_status_decode(old, strlen(old), &got, &n), -1);
	assert_int_equal(node_status_decode("{", 1, &got, &n), -1);
}

static void test_due(void **state)
{
	(void)state;
	/* never written: at once */
	assert_true(node_status_due(NULL, "a", 1000, 0, 5000));
	/* unchanged: never, however long ago */
	assert_false(node_status_due("a", "a", 1000000, 1000, 5000));
	/* changed: once the interval since the last attempt has passed */
	assert_false(node_status_due("a", "b", 5999, 1000, 5000));
	assert_true(node_status_due("a", "b", 6000, 1000, 5000));
	/* a failed first write is retried at that pace too */
	assert_false(node_status_due(NULL, "a", 2000, 1000, 5000));
}

/* ---- against a real etcd ---------------------------------------------------- */

typedef struct fixture {
	mailtest_etcd *etcd;
	etcd_client *c;
	const char *value; /* what the collect callback publishes */
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	etcd_client_destroy(&f->c);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

static void collect_cb(buf *out, void *arg)
{
	fixture *f = arg;
	buf_append(out, f->value, strlen(f->value));
}

static int64_t revision(fixture *f)
{
	etcd_member_status st;
	assert_int_equal(etcd_maintenance_status(f->c, &st), MAIL_OK);
	return st.revision;
}

/* Run the loop for ms (the publisher's timer and pool jobs). */
static void run_for(uv_loop_t *loop, int ms)
{
	uint64_t end = util_now_mono_ms() + (uint64_t)ms;
	while (util_now_mono_ms() < end) {
		uv_run(loop, UV_RUN_NOWAIT);
		mailtest_sleep_ms(5);
	}
}

static void test_publisher_writes_on_change_only(void **state)
{
	fixture *f = *state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	etcd_stats stats = { 0 };
	node_status_settings set = {
		.etcd = mailtest_etcd_conf(f->etcd),
		.key = NODE_STATUS_KEY "store/s1",
		.stats = &stats,
		.check_ms = 50,
		.min_interval_ms = 200,
	};
	f->value = "{\"e\":{\"1\":3},\"v\":2}";
	node_status_publisher *pub = node_status_publisher_start(&loop, &set, collect_cb, f);
	run_for(&loop, 500);
	assert_int_equal(node_status_publisher_writes(pub), 1);
	assert_int_equal(etcd_stats_writes(&stats), 1);
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(f->c, set.key, &v, &len, NULL, NULL), MAIL_OK);
	assert_string_equal(v, f->value);
	free(v);

	/* many check rounds and several intervals without a change: no
	 * revision at all */
	int64_t before = revision(f);
	run_for(&loop, 1000);
	assert_int_equal(revision(f), before);
	assert_int_equal(node_status_publisher_writes(pub), 1);

	/* a change: exactly one write */
	f->value = "{\"e\":{\"1\":4},\"v\":2}";
	run_for(&loop, 700);
	assert_int_equal(revision(f), before + 1);
	assert_int_equal(node_status_publisher_writes(pub), 2);
	assert_int_equal(etcd_stats_writes(&stats), 2);

	node_status_publisher_destroy(&pub);
	assert_null(pub);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_monitor_reads_size(void **state)
{
	fixture *f = *state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	etcd_stats stats = { 0 };
	__atomic_store_n(&stats.writes, 7, __ATOMIC_RELAXED);
	etcd_monitor_settings set = {
		.etcd = mailtest_etcd_conf(f->etcd),
		.quota_bytes = 1024, /* far below any etcd: the warning path runs */
		.period_ms = 100,
		.stats = &stats,
	};
	etcd_monitor *mon = etcd_monitor_start(&loop, &set);
	etcd_member_status st;
	for (int i = 0; i < 200 && !etcd_monitor_last(mon, &st); i++)
		run_for(&loop, 10);
	assert_true(etcd_monitor_last(mon, &st));
	assert_true(st.db_size > 0);
	assert_true(st.db_size_in_use > 0 && st.db_size_in_use <= st.db_size);
	assert_true(st.revision >= 1);

	buf out;
	buf_init(&out);
	etcd_monitor_collect(&out, "svc=\"t\",node=\"n\"", mon);
	buf_append(&out, "", 1);
	const char *text = (const char *)out.data;
	char want[128];
	snprintf(want, sizeof want, "mail_etcd_db_size_bytes{svc=\"t\",node=\"n\"} %lld\n",
		 (long long)st.db_size);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "mail_etcd_db_size_in_use_bytes{svc=\"t\",node=\"n\"} "));
	assert_non_null(strstr(text, "mail_etcd_revision{svc=\"t\",node=\"n\"} "));
	assert_non_null(strstr(text, "mail_etcd_quota_bytes{svc=\"t\",node=\"n\"} 1024\n"));
	assert_non_null(strstr(text, "mail_etcd_writes_total{svc=\"t\",node=\"n\"} 7\n"));
	buf_deinit(&out);

	etcd_monitor_destroy(&mon);
	assert_null(mon);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_lag_round),
		cmocka_unit_test(test_encode_decode),
		cmocka_unit_test(test_due),
	};
	const struct CMUnitTest live[] = {
		cmocka_unit_test(test_publisher_writes_on_change_only),
		cmocka_unit_test(test_monitor_reads_size),
	};
	int failed = cmocka_run_group_tests(pure, NULL, NULL);
	return failed + cmocka_run_group_tests(live, setup, teardown);
}
