/* test-etcd.c: the etcd client against a real etcd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "util.h"
#include "xalloc.h"

typedef struct fixture {
	mailtest_etcd *etcd;
	etcd_client *c;
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

static void test_put_get_delete(void **state)
{
	fixture *f = *state;
	char *v;
	size_t len;
	int64_t mod, create;
	assert_int_equal(etcd_kv_get(f->c, "/t/kv/a", &v, &len, &mod, &create),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(etcd_kv_put(f->c, "/t/kv/a", "hello", 5, 0), MAIL_OK);
	assert_int_equal(etcd_kv_get(f->c, "/t/kv/a", &v, &len, &mod, &create), MAIL_OK);
	assert_int_equal(len, 5);
	assert_string_equal(v, "hello");
	assert_true(mod > 0);
	assert_int_equal(mod, create);
	free(v);

	assert_int_equal(etcd_kv_put(f->c, "/t/kv/a", "bye", 3, 0), MAIL_OK);
	int64_t mod2, create2;
	assert_int_equal(etcd_kv_get(f->c, "/t/kv/a", &v, &len, &mod2, &create2), MAIL_OK);
	assert_string_equal(v, "bye");
	assert_true(mod2 > mod);
	assert_int_equal(create2, create);
	free(v);

	/* binary values and every base64 padding length */
	static const char bin[] = { 'a', '\0', 'b', '\xff', '=', '\n' };
	for (size_t n = 0; n <= sizeof bin; n++) {
		assert_int_equal(etcd_kv_put(f->c, "/t/kv/bin", bin, n, 0), MAIL_OK);
		assert_int_equal(etcd_kv_get(f->c, "/t/kv/bin", &v, &len, NULL, NULL), MAIL_OK);
		assert_int_equal(len, n);
		assert_memory_equal(v, bin, n);
		assert_int_equal(v[n], '\0');
		free(v);
	}

	assert_int_equal(etcd_kv_delete(f->c, "/t/kv/a"), MAIL_OK);
	assert_int_equal(etcd_kv_delete(f->c, "/t/kv/a"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(etcd_kv_get(f->c, "/t/kv/a", &v, &len, NULL, NULL), MAIL_ERR_NOT_FOUND);
}

static void test_range_prefix(void **state)
{
	fixture *f = *state;
	etcd_kv *kvs;
	size_t n;
	int64_t rev;
	assert_int_equal(etcd_kv_range_prefix(f->c, "/t/range/", 0, &kvs, &n, &rev), MAIL_OK);
	assert_int_equal(n, 0);
	etcd_kvs_free(kvs, n);

	/* more than two pages (500 per request); keys outside the prefix
	 * must not show */
	assert_int_equal(etcd_kv_put(f->c, "/t/range", "x", 1, 0), MAIL_OK);
	assert_int_equal(etcd_kv_put(f->c, "/t/range0", "x", 1, 0), MAIL_OK);
	for (int i = 0; i < 1100; i++) {
		char key[64], val[32];
		snprintf(key, sizeof key, "/t/range/k%05d", i);
		int vl = snprintf(val, sizeof val, "%d", i);
		assert_int_equal(etcd_kv_put(f->c, key, val, (size_t)vl, 0), MAIL_OK);
	}
	assert_int_equal(etcd_kv_range_prefix(f->c, "/t/range/", 0, &kvs, &n, &rev), MAIL_OK);
	assert_int_equal(n, 1100);
	for (size_t i = 0; i < n; i++) {
		char key[64], val[32];
		snprintf(key, sizeof key, "/t/range/k%05zu", i);
		snprintf(val, sizeof val, "%zu", i);
		assert_string_equal(kvs[i].key, key);
		assert_string_equal(kvs[i].value, val);
		assert_true(kvs[i].mod_revision <= rev);
	}
	etcd_kvs_free(kvs, n);

	/* a read at an older revision sees the older state */
	int64_t deleted;
	assert_int_equal(etcd_kv_delete_prefix(f->c, "/t/range/", &deleted), MAIL_OK);
	assert_int_equal(deleted, 1100);
	assert_int_equal(etcd_kv_range_prefix(f->c, "/t/range/", 0, &kvs, &n, NULL), MAIL_OK);
	assert_int_equal(n, 0);
	etcd_kvs_free(kvs, n);
	assert_int_equal(etcd_kv_range_prefix(f->c, "/t/range/", rev, &kvs, &n, NULL), MAIL_OK);
	assert_int_equal(n, 1100);
	etcd_kvs_free(kvs, n);
}

static void test_cas(void **state)
{
	fixture *f = *state;
	char *v;
	size_t len;
	int64_t mod, rev;
	assert_int_equal(etcd_kv_create(f->c, "/t/cas/a", "one", 3, 0), MAIL_OK);
	assert_int_equal(etcd_kv_create(f->c, "/t/cas/a", "two", 3, 0), MAIL_ERR_EXISTS);
	assert_int_equal(etcd_kv_get(f->c, "/t/cas/a", &v, &len, &mod, NULL), MAIL_OK);
	assert_string_equal(v, "one");
	free(v);

	assert_int_equal(etcd_kv_put_if_mod(f->c, "/t/cas/a", "three", 5, mod, &rev), MAIL_OK);
	assert_true(rev > mod);
	/* stale revision: conflict, value unchanged */
	assert_int_equal(etcd_kv_put_if_mod(f->c, "/t/cas/a", "four", 4, mod, NULL),
			 MAIL_ERR_EXISTS);
	/* 0 = must not exist */
	assert_int_equal(etcd_kv_put_if_mod(f->c, "/t/cas/a", "five", 4, 0, NULL),
			 MAIL_ERR_EXISTS);
	assert_int_equal(etcd_kv_get(f->c, "/t/cas/a", &v, &len, &mod, NULL), MAIL_OK);
	assert_string_equal(v, "three");
	assert_int_equal(mod, rev);
	free(v);
	assert_int_equal(etcd_kv_put_if_mod(f->c, "/t/cas/new", "n", 1, 0, NULL), MAIL_OK);
	/* a key that vanished does not match its old revision */
	assert_int_equal(etcd_kv_delete(f->c, "/t/cas/a"), MAIL_OK);
	assert_int_equal(etcd_kv_put_if_mod(f->c, "/t/cas/a", "six", 3, rev, NULL),
			 MAIL_ERR_EXISTS);
}

static void test_lease(void **state)
{
	fixture *f = *state;
	int64_t lease, ttl;
	char *v;
	size_t len;
	assert_int_equal(etcd_lease_grant(f->c, 2, &lease), MAIL_OK);
	assert_true(lease != 0);
	assert_int_equal(etcd_kv_put(f->c, "/t/lease/a", "x", 1, lease), MAIL_OK);
	assert_int_equal(etcd_lease_keepalive(f->c, lease, &ttl), MAIL_OK);
	assert_in_range(ttl, 1, 2);

	/* kept alive past the TTL, the key stays */
	for (int i = 0; i < 6; i++) {
		mailtest_sleep_ms(500);
		assert_int_equal(etcd_lease_keepalive(f->c, lease, &ttl), MAIL_OK);
		assert_true(ttl > 0);
	}
	assert_int_equal(etcd_kv_get(f->c, "/t/lease/a", &v, &len, NULL, NULL), MAIL_OK);
	free(v);

	/* left alone, it expires and the key vanishes */
	uint64_t start = util_now_mono_ms();
	int gone = 0;
	while (!gone && util_now_mono_ms() - start < 6000) {
		mailtest_sleep_ms(200);
		int err = etcd_kv_get(f->c, "/t/lease/a", &v, &len, NULL, NULL);
		if (err == MAIL_OK)
			free(v);
		gone = err == MAIL_ERR_NOT_FOUND;
	}
	assert_true(gone);
	assert_true(util_now_mono_ms() - start >= 1000);
	/* an expired lease answers keepalive with TTL 0 */
	assert_int_equal(etcd_lease_keepalive(f->c, lease, &ttl), MAIL_OK);
	assert_int_equal(ttl, 0);
	assert_int_equal(etcd_lease_revoke(f->c, lease), MAIL_ERR_NOT_FOUND);
	assert_int_equal(etcd_kv_put(f->c, "/t/lease/b", "x", 1, lease), MAIL_ERR_NOT_FOUND);

	/* revoking deletes the keys at once */
	assert_int_equal(etcd_lease_grant(f->c, 30, &lease), MAIL_OK);
	assert_int_equal(etcd_kv_put(f->c, "/t/lease/c", "x", 1, lease), MAIL_OK);
	assert_int_equal(etcd_lease_revoke(f->c, lease), MAIL_OK);
	assert_int_equal(etcd_kv_get(f->c, "/t/lease/c", &v, &len, NULL, NULL),
			 MAIL_ERR_NOT_FOUND);
}

/* ---- watch ------------------------------------------------------------- */

typedef struct seen {
	int n;
	int stop_after;
	enum etcd_event_type type[16];
	char key[16][64];
	char value[16][64];
	int64_t rev[16];
} seen;

static int record_cb(const etcd_event *ev, void *arg)
{
	seen *s = arg;
	if (s->n < 16) {
		s->type[s->n] = ev->type;
		snprintf(s->key[s->n], sizeof s->key[0], "%s", ev->key);
		snprintf(s->value[s->n], sizeof s->value[0], "%s", ev->value);
		s->rev[s->n] = ev->mod_revision;
	}
	s->n++;
	return s->n >= s->stop_after;
}

typedef struct writer {
	const etcd_conf *conf;
	int *stop; /* set instead of writing when non-NULL */
} writer;

static void *writer_main(void *arg)
{
	writer *w = arg;
	mailtest_sleep_ms(300);
	if (w->stop != NULL) {
		__atomic_store_n(w->stop, 1, __ATOMIC_SEQ_CST);
		return NULL;
	}
	etcd_client *c = etcd_client_create(w->conf);
	etcd_kv_put(c, "/t/watch/x", "1", 1, 0);
	etcd_kv_put(c, "/t/other", "ignored", 7, 0);
	etcd_kv_put(c, "/t/watch/y", "2", 1, 0);
	etcd_kv_delete(c, "/t/watch/x");
	etcd_client_destroy(&c);
	return NULL;
}

static void test_watch(void **state)
{
	fixture *f = *state;
	writer w = { .conf = mailtest_etcd_conf(f->etcd) };
	pthread_t t;
	seen s = { .stop_after = 3 };
	pthread_create(&t, NULL, writer_main, &w);
	assert_int_equal(etcd_watch(f->c, "/t/watch/", NULL, 0, record_cb, &s, NULL), MAIL_OK);
	pthread_join(t, NULL);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.type[0], ETCD_EVENT_PUT);
	assert_string_equal(s.key[0], "/t/watch/x");
	assert_string_equal(s.value[0], "1");
	assert_int_equal(s.type[1], ETCD_EVENT_PUT);
	assert_string_equal(s.key[1], "/t/watch/y");
	assert_int_equal(s.type[2], ETCD_EVENT_DELETE);
	assert_string_equal(s.key[2], "/t/watch/x");
	assert_string_equal(s.value[2], "");
	assert_true(s.rev[0] < s.rev[1] && s.rev[1] < s.rev[2]);

	/* the handle still works for plain calls after a watch */
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(f->c, "/t/watch/y", &v, &len, NULL, NULL), MAIL_OK);
	free(v);

	/* replay from a revision: the same events, no writer needed; an
	 * explicit range [x, y) selects only /t/watch/x */
	seen r = { .stop_after = 2 };
	assert_int_equal(etcd_watch(f->c, "/t/watch/x", "/t/watch/y", s.rev[0], record_cb, &r,
				    NULL),
			 MAIL_OK);
	assert_string_equal(r.key[0], "/t/watch/x");
	assert_int_equal(r.type[0], ETCD_EVENT_PUT);
	assert_int_equal(r.type[1], ETCD_EVENT_DELETE);
	assert_int_equal(r.rev[1], s.rev[2]);
}

static void test_watch_stop_flag(void **state)
{
	fixture *f = *state;
	int stop = 0;
	writer w = { .conf = mailtest_etcd_conf(f->etcd), .stop = &stop };
	pthread_t t;
	seen s = { .stop_after = 100 };
	uint64_t start = util_now_mono_ms();
	pthread_create(&t, NULL, writer_main, &w);
	assert_int_equal(etcd_watch(f->c, "/t/quiet/", NULL, 0, record_cb, &s, &stop), MAIL_OK);
	pthread_join(t, NULL);
	assert_int_equal(s.n, 0);
	assert_true(util_now_mono_ms() - start < 3000);
}

static void test_unreachable(void **state)
{
	(void)state;
	int port = mailtest_free_port();
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = url });
	uint64_t start = util_now_mono_ms();
	char *v;
	size_t len;
	int64_t lease;
	assert_int_equal(etcd_kv_put(c, "/k", "v", 1, 0), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(etcd_kv_get(c, "/k", &v, &len, NULL, NULL), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(etcd_kv_create(c, "/k", "v", 1, 0), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(etcd_lease_grant(c, 5, &lease), MAIL_ERR_UNAVAILABLE);
	seen s = { .stop_after = 1 };
	assert_int_equal(etcd_watch(c, "/k", NULL, 0, record_cb, &s, NULL), MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - start < 2000);
	etcd_client_destroy(&c);

	/* a non-routable address hits the 1 s connect timeout, not more */
	c = etcd_client_create(&(etcd_conf){ .url = "http://10.255.255.1:2379" });
	start = util_now_mono_ms();
	assert_int_equal(etcd_kv_put(c, "/k", "v", 1, 0), MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - start < 2500);
	etcd_client_destroy(&c);
}

/* Several endpoints: a dead member first in the list is skipped, for plain
 * calls and for the watch, and the client stays on the live one. */
static void test_endpoint_list(void **state)
{
	struct fixture *f = *state;
	char urls[256];
	snprintf(urls, sizeof urls, "http://127.0.0.1:%d,%s/", mailtest_free_port(),
		 mailtest_etcd_url(f->etcd));
	etcd_client *c = etcd_client_create(&(etcd_conf){ .url = urls });
	assert_int_equal(etcd_kv_put(c, "/multi/k", "v1", 2, 0), MAIL_OK);
	char *v = NULL;
	size_t len = 0;
	assert_int_equal(etcd_kv_get(c, "/multi/k", &v, &len, NULL, NULL), MAIL_OK);
	assert_int_equal(len, 2);
	assert_memory_equal(v, "v1", 2);
	free(v);
	etcd_client_destroy(&c);

	/* the watch fails over too: its first try hits the dead member, the
	 * caller's retry (as router.c does) lands on the live one */
	c = etcd_client_create(&(etcd_conf){ .url = urls });
	writer w = { .conf = mailtest_etcd_conf(f->etcd) };
	seen s = { .stop_after = 1 };
	int r = etcd_watch(c, "/t/watch/", NULL, 0, record_cb, &s, NULL);
	assert_int_equal(r, MAIL_ERR_UNAVAILABLE);
	pthread_t t;
	pthread_create(&t, NULL, writer_main, &w);
	r = etcd_watch(c, "/t/watch/", NULL, 0, record_cb, &s, NULL);
	pthread_join(t, NULL);
	assert_int_equal(r, MAIL_OK);
	etcd_client_destroy(&c);
}

static void test_etcd_dies(void **state)
{
	/* runs last: stops the shared etcd under a live handle */
	fixture *f = *state;
	assert_int_equal(etcd_kv_put(f->c, "/t/dies", "x", 1, 0), MAIL_OK);
	mailtest_etcd_stop(&f->etcd);
	assert_int_equal(etcd_kv_put(f->c, "/t/dies", "y", 1, 0), MAIL_ERR_UNAVAILABLE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_delete),
		cmocka_unit_test(test_range_prefix),
		cmocka_unit_test(test_cas),
		cmocka_unit_test(test_lease),
		cmocka_unit_test(test_watch),
		cmocka_unit_test(test_watch_stop_flag),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_endpoint_list),
		cmocka_unit_test(test_etcd_dies),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
