/* test-etcd.c: the etcd client against a real etcd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* After 300 ms, put /app/watch/x as the writer's conf says. */
static void *app_writer_main(void *arg)
{
	writer *w = arg;
	mailtest_sleep_ms(300);
	etcd_client *c = etcd_client_create(w->conf);
	etcd_kv_put(c, "/app/watch/x", "1", 1, 0);
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

/* ---- TLS and credentials ------------------------------------------------ */

/* etcd with https, --client-cert-auth and auth on: root, and "app" who may
 * read and write /app/ and only read /shared/. */
#define AUTH_ROOT_PW "root-pw"
#define AUTH_APP_PW "app-pw"

typedef struct tls_fixture {
	mailtest_etcd *etcd;
	char dir[256];
	char pw_file[300];
	etcd_tokens *tokens;
	etcd_conf conf; /* the fixture's TLS files, user app, tokens */
} tls_fixture;

static int setup_tls(void **state)
{
	tls_fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start_tls(&f->etcd) < 0)
		return -1;
	const mailtest_etcd *e = f->etcd;
	if (mailtest_etcdctl(e, NULL, NULL, "user", "add", "root:" AUTH_ROOT_PW,
			     "--interactive=false", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "user", "add", "app:" AUTH_APP_PW,
			     "--interactive=false", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "role", "add", "app", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "app", "--prefix=true",
			     "readwrite", "/app/", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "app", "--prefix=true",
			     "read", "/shared/", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "user", "grant-role", "app", "app", NULL) != 0 ||
	    mailtest_etcdctl(e, NULL, NULL, "auth", "enable", NULL) != 0)
		return -1;
	f->tokens = etcd_tokens_create();
	f->conf = *mailtest_etcd_conf(e);
	f->conf.user = "app";
	f->conf.password = AUTH_APP_PW;
	f->conf.tokens = f->tokens;
	*state = f;
	return 0;
}

static int teardown_tls(void **state)
{
	tls_fixture *f = *state;
	mailtest_etcd_stop(&f->etcd);
	etcd_tokens_destroy(&f->tokens);
	free(f);
	return 0;
}

static void test_tls_good_credentials(void **state)
{
	tls_fixture *f = *state;
	assert_memory_equal(mailtest_etcd_url(f->etcd), "https://", 8);
	etcd_client *c = etcd_client_create(&f->conf);
	const char *error;
	assert_int_equal(etcd_client_check(c, &error), MAIL_OK);
	assert_int_equal(etcd_kv_put(c, "/app/k", "v", 1, 0), MAIL_OK);
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(c, "/app/k", &v, &len, NULL, NULL), MAIL_OK);
	assert_string_equal(v, "v");
	free(v);
	assert_int_equal(etcd_kv_get(c, "/shared/none", &v, &len, NULL, NULL), MAIL_ERR_NOT_FOUND);
	/* leases carry the token too: grant, attach, keep alive, revoke */
	int64_t lease, ttl;
	assert_int_equal(etcd_lease_grant(c, 5, &lease), MAIL_OK);
	assert_int_equal(etcd_kv_put(c, "/app/leased", "x", 1, lease), MAIL_OK);
	assert_int_equal(etcd_lease_keepalive(c, lease, &ttl), MAIL_OK);
	assert_true(ttl > 0);
	assert_int_equal(etcd_lease_revoke(c, lease), MAIL_OK);
	assert_int_equal(etcd_kv_get(c, "/app/leased", &v, &len, NULL, NULL), MAIL_ERR_NOT_FOUND);
	assert_string_equal(etcd_client_last_error(c), "");

	/* a second client of the same tokens takes the token: one
	 * authentication for both (a daemon's dozen clients cost etcd one
	 * bcrypt, not a dozen) */
	uint64_t auths = etcd_tokens_authentications(f->tokens);
	etcd_client *c2 = etcd_client_create(&f->conf);
	assert_int_equal(etcd_kv_put(c2, "/app/k2", "w", 1, 0), MAIL_OK);
	assert_int_equal(etcd_tokens_authentications(f->tokens), auths);

	/* the watch works with the token */
	writer w = { .conf = &f->conf };
	pthread_t t;
	seen s = { .stop_after = 1 };
	pthread_create(&t, NULL, app_writer_main, &w);
	assert_int_equal(etcd_watch(c2, "/app/watch/", NULL, 0, record_cb, &s, NULL), MAIL_OK);
	pthread_join(t, NULL);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.key[0], "/app/watch/x");
	etcd_client_destroy(&c2);
	etcd_client_destroy(&c);
}

static void test_tls_wrong_password(void **state)
{
	tls_fixture *f = *state;
	etcd_conf conf = f->conf;
	conf.password = "not-the-password";
	conf.tokens = etcd_tokens_create();
	etcd_client *c = etcd_client_create(&conf);
	const char *error;
	assert_int_equal(etcd_client_check(c, &error), MAIL_ERR_PERM);
	assert_non_null(strstr(error, "etcd refused user \"app\" (wrong user name or password)"));
	assert_null(strchr(error, '\n'));
	/* the calls that follow fail the same way, without asking etcd
	 * again for a while (each refusal costs it a bcrypt) */
	assert_int_equal(etcd_kv_put(c, "/app/k", "v", 1, 0), MAIL_ERR_PERM);
	assert_non_null(strstr(etcd_client_last_error(c), "wrong user name or password"));
	seen s = { .stop_after = 1 };
	assert_int_equal(etcd_watch(c, "/app/", NULL, 0, record_cb, &s, NULL), MAIL_ERR_PERM);
	assert_int_equal(etcd_tokens_authentications(conf.tokens), 1);
	etcd_client_destroy(&c);
	etcd_tokens_destroy(&conf.tokens);

	/* no user at all while etcd wants one */
	conf = *mailtest_etcd_conf(f->etcd);
	c = etcd_client_create(&conf);
	assert_int_equal(etcd_kv_put(c, "/app/k", "v", 1, 0), MAIL_ERR_PERM);
	assert_non_null(strstr(etcd_client_last_error(c), "etcd wants a user and password"));
	uint64_t start = util_now_mono_ms();
	assert_int_equal(etcd_watch(c, "/app/", NULL, 0, record_cb, &s, NULL), MAIL_ERR_PERM);
	assert_true(util_now_mono_ms() - start < 2000);
	etcd_client_destroy(&c);
}

static void test_tls_no_client_cert(void **state)
{
	tls_fixture *f = *state;
	/* right user and password, but no client certificate: the TLS
	 * handshake fails before a byte of HTTP */
	etcd_conf conf = f->conf;
	conf.cert_file = NULL;
	conf.key_file = NULL;
	conf.tokens = NULL;
	etcd_client *c = etcd_client_create(&conf);
	const char *error;
	uint64_t start = util_now_mono_ms();
	assert_int_equal(etcd_client_check(c, &error), MAIL_ERR_UNAVAILABLE);
	assert_non_null(strstr(error, "/v3/auth/authenticate: "));
	assert_non_null(strstr(error, "etcd may want a client certificate"));
	assert_int_equal(etcd_kv_get(c, "/app/k", &(char *){ NULL }, NULL, NULL, NULL),
			 MAIL_ERR_UNAVAILABLE);
	assert_true(util_now_mono_ms() - start < 3000);
	etcd_client_destroy(&c);

	/* a CA that did not sign etcd's certificate: refused by us */
	char other[300];
	conf = f->conf;
	conf.ca_file = mailtest_etcd_file(f->etcd, "client.pem", other, sizeof other);
	conf.tokens = NULL;
	c = etcd_client_create(&conf);
	assert_int_equal(etcd_client_check(c, &error), MAIL_ERR_UNAVAILABLE);
	etcd_client_destroy(&c);

	/* plain http to the TLS port */
	char url[96];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mailtest_etcd_port(f->etcd));
	conf = f->conf;
	conf.url = url;
	conf.tokens = NULL;
	c = etcd_client_create(&conf);
	assert_int_equal(etcd_kv_put(c, "/app/k", "v", 1, 0), MAIL_ERR_UNAVAILABLE);
	assert_non_null(strstr(etcd_client_last_error(c), "is etcd serving https only?"));
	etcd_client_destroy(&c);
}

static void test_tls_outside_prefix(void **state)
{
	tls_fixture *f = *state;
	etcd_client *c = etcd_client_create(&f->conf);
	assert_int_equal(etcd_kv_put(c, "/other/k", "v", 1, 0), MAIL_ERR_PERM);
	assert_non_null(strstr(etcd_client_last_error(c), "permission denied to etcd user \"app\""));
	/* read-only: reading works, writing, deleting and CAS do not */
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(c, "/shared/k", &v, &len, NULL, NULL), MAIL_ERR_NOT_FOUND);
	assert_int_equal(etcd_kv_put(c, "/shared/k", "v", 1, 0), MAIL_ERR_PERM);
	assert_int_equal(etcd_kv_create(c, "/shared/k", "v", 1, 0), MAIL_ERR_PERM);
	assert_int_equal(etcd_kv_delete_prefix(c, "/shared/", NULL), MAIL_ERR_PERM);
	etcd_kv *kvs;
	size_t n;
	assert_int_equal(etcd_kv_range_prefix(c, "/other/", 0, &kvs, &n, NULL), MAIL_ERR_PERM);
	/* a watch etcd cancels for permission ends at once, it does not hang */
	seen s = { .stop_after = 1 };
	uint64_t start = util_now_mono_ms();
	assert_int_equal(etcd_watch(c, "/other/", NULL, 0, record_cb, &s, NULL), MAIL_ERR_PERM);
	assert_true(util_now_mono_ms() - start < 2000);
	etcd_client_destroy(&c);
}

static void test_tls_token_after_restart(void **state)
{
	tls_fixture *f = *state;
	etcd_client *c = etcd_client_create(&f->conf);
	etcd_client *w = etcd_client_create(&f->conf);
	assert_int_equal(etcd_kv_put(c, "/app/restart", "1", 1, 0), MAIL_OK);
	uint64_t auths = etcd_tokens_authentications(f->tokens);
	pid_t old = mailtest_etcd_pid(f->etcd);
	/* simple tokens live in etcd's memory: all are gone after this */
	assert_int_equal(mailtest_etcd_restart(f->etcd), 0);
	assert_int_not_equal(mailtest_etcd_pid(f->etcd), old);
	assert_int_equal(etcd_kv_put(c, "/app/restart", "2", 1, 0), MAIL_OK);
	assert_int_equal(etcd_tokens_authentications(f->tokens), auths + 1);
	/* the other client takes the new token without authenticating */
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(w, "/app/restart", &v, &len, NULL, NULL), MAIL_OK);
	assert_string_equal(v, "2");
	free(v);
	assert_int_equal(etcd_tokens_authentications(f->tokens), auths + 1);

	/* and a watch whose token died: etcd cancels it, the client
	 * authenticates again and watches */
	assert_int_equal(mailtest_etcd_restart(f->etcd), 0);
	writer wr = { .conf = &f->conf };
	pthread_t t;
	seen s = { .stop_after = 1 };
	pthread_create(&t, NULL, app_writer_main, &wr);
	assert_int_equal(etcd_watch(w, "/app/watch/", NULL, 0, record_cb, &s, NULL), MAIL_OK);
	pthread_join(t, NULL);
	assert_int_equal(s.n, 1);
	etcd_client_destroy(&w);
	etcd_client_destroy(&c);
}

struct role_changer {
	const mailtest_etcd *etcd;
	int done;
};

/* Grant app more read prefixes, one etcdctl at a time: each bumps etcd's
 * auth revision under the other thread's writes. */
static void *role_changer_main(void *arg)
{
	struct role_changer *rc = arg;
	for (int i = 0; i < 8; i++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, "/shared/x%d/", i);
		mailtest_etcdctl(rc->etcd, "root", AUTH_ROOT_PW, "role", "grant-permission", "app",
				 "--prefix=true", "read", prefix, NULL);
	}
	__atomic_store_n(&rc->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_tls_roles_change_meanwhile(void **state)
{
	/* etcd refuses a request whose token was checked before its users
	 * or roles changed ("revision of auth store is old"): the client sends
	 * it again, no call fails and no new authentication is needed */
	tls_fixture *f = *state;
	etcd_client *c = etcd_client_create(&f->conf);
	assert_int_equal(etcd_kv_put(c, "/app/churn", "0", 1, 0), MAIL_OK);
	uint64_t auths = etcd_tokens_authentications(f->tokens);
	struct role_changer rc = { .etcd = f->etcd };
	pthread_t t;
	pthread_create(&t, NULL, role_changer_main, &rc);
	int n = 0, failed = 0;
	while (!__atomic_load_n(&rc.done, __ATOMIC_SEQ_CST)) {
		char v[16];
		int len = snprintf(v, sizeof v, "%d", n++);
		failed += etcd_kv_put(c, "/app/churn", v, (size_t)len, 0) != MAIL_OK;
		failed += etcd_kv_create(c, "/app/churn-cas", v, (size_t)len, 0) == MAIL_ERR_PERM;
	}
	pthread_join(t, NULL);
	assert_true(n > 0);
	assert_int_equal(failed, 0);
	assert_int_equal(etcd_tokens_authentications(f->tokens), auths);
	etcd_client_destroy(&c);
}

/* A daemon that authenticated while etcd's auth was off (no token then)
 * keeps working once an operator turns auth on: etcd's refusals of the
 * tokenless calls make it authenticate again. */
static void test_tls_auth_turned_on(void **state)
{
	(void)state;
	mailtest_etcd *e;
	assert_int_equal(mailtest_etcd_start_tls(&e), 0);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "user", "add", "root:" AUTH_ROOT_PW,
					  "--interactive=false", NULL), 0);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "user", "add", "app:" AUTH_APP_PW,
					  "--interactive=false", NULL), 0);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "role", "add", "app", NULL), 0);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "role", "grant-permission", "app",
					  "--prefix=true", "readwrite", "/app/", NULL), 0);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "user", "grant-role", "app", "app", NULL),
			 0);
	etcd_conf conf = *mailtest_etcd_conf(e);
	conf.user = "app";
	conf.password = AUTH_APP_PW;
	conf.tokens = etcd_tokens_create();
	etcd_client *c = etcd_client_create(&conf);
	assert_int_equal(etcd_kv_put(c, "/app/on", "1", 1, 0), MAIL_OK);
	assert_int_equal(mailtest_etcdctl(e, NULL, NULL, "auth", "enable", NULL), 0);
	/* a range first: etcd answers it "permission denied" without a token */
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(c, "/app/on", &v, &len, NULL, NULL), MAIL_OK);
	free(v);
	assert_int_equal(etcd_kv_put(c, "/app/on", "2", 1, 0), MAIL_OK);
	/* and outside its prefix it is now refused */
	assert_int_equal(etcd_kv_put(c, "/other/on", "1", 1, 0), MAIL_ERR_PERM);
	assert_int_equal(etcd_tokens_authentications(conf.tokens), 2);
	etcd_client_destroy(&c);
	etcd_tokens_destroy(&conf.tokens);
	mailtest_etcd_stop(&e);
}

static void test_password_file(void **state)
{
	(void)state;
	char *dir = mailtest_tmpdir("test-etcd-pw");
	char path[300];
	snprintf(path, sizeof path, "%s/pw", dir);
	char *pw = NULL;
	const char *error = NULL;
	assert_int_equal(etcd_conf_read_password(path, &pw, &error), -1);
	assert_non_null(strstr(error, "cannot open"));
	FILE *fp = fopen(path, "w");
	fputs("s3cret\nignored\n", fp);
	fclose(fp);
	chmod(path, 0644);
	assert_int_equal(etcd_conf_read_password(path, &pw, &error), -1);
	assert_non_null(strstr(error, "readable by others"));
	chmod(path, 0600);
	assert_int_equal(etcd_conf_read_password(path, &pw, &error), 0);
	assert_string_equal(pw, "s3cret");
	xfree_secret(pw, strlen(pw));
	fp = fopen(path, "w");
	fputs("\n", fp);
	fclose(fp);
	assert_int_equal(etcd_conf_read_password(path, &pw, &error), -1);
	assert_non_null(strstr(error, "empty"));
	mailtest_rmrf(dir);
	free(dir);
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
	const struct CMUnitTest tls_tests[] = {
		cmocka_unit_test(test_tls_good_credentials),
		cmocka_unit_test(test_tls_wrong_password),
		cmocka_unit_test(test_tls_no_client_cert),
		cmocka_unit_test(test_tls_outside_prefix),
		cmocka_unit_test(test_tls_roles_change_meanwhile),
		cmocka_unit_test(test_tls_token_after_restart),
		cmocka_unit_test(test_tls_auth_turned_on),
		cmocka_unit_test(test_password_file),
	};
	int failed = cmocka_run_group_tests(tests, setup, teardown);
	return failed + cmocka_run_group_tests_name("tls_auth", tls_tests, setup_tls,
						    teardown_tls);
}
