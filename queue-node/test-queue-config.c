/* test-queue-config.c: queue-config.c and queue-dkim.c against a real etcd
 * (tests/support/etcd-fixture.h) on a real uv loop.
 *
 * Records are written the way mailctl writes them (cluster/mailctl-relay.c,
 * mailctl-dkim.c); the cache is refreshed with queue_config_refresh_now()
 * or its timer. Routing precedence (transport > tenant relay > default
 * relay > MX), changes picked up, malformed records skipped, DKIM key
 * choice; signing through queue_dkim_sign() checked by the independent
 * verifier (dkimpy, lib/dkim/dkim-verify.py) with RSA and Ed25519 at once;
 * the cases that stay unsigned; the From parser on its own; teardown with
 * jobs in flight; a refresh that fails keeps the last snapshot. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "dkim-keys.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "queue-config.h"
#include "queue-dkim.h"
#include "test-dkim-verify.h"
#include "util.h"
#include "xalloc.h"

#define T_SIGN_DOMAIN "sign.test"
#define T_TENANT "tenant.test"
#define T_DEST "dest.test"

typedef struct fixture {
	mailtest_etcd *etcd;
	etcd_client *c;       /* the test's writes */
	uv_loop_t loop;
	char *tmp;            /* the verifier's files */
	char *rsa_pem, *ed_pem;
	size_t rsa_pem_len, ed_pem_len;
	char *rsa_txt, *ed_txt; /* "v=DKIM1; k=...; p=..." */
} fixture;

/* ---- helpers ------------------------------------------------------------------- */

static void put(fixture *f, const char *key, const char *value)
{
	assert_int_equal(etcd_kv_put(f->c, key, value, strlen(value), 0), MAIL_OK);
}

static void del(fixture *f, const char *key)
{
	assert_int_equal(etcd_kv_delete(f->c, key), MAIL_OK);
}

static void make_key(enum dkim_alg alg, char **pem_r, size_t *pem_len_r, char **txt_r)
{
	char *pub;
	const char *error;
	assert_int_equal(dkim_key_generate(alg, DKIM_RSA_BITS_DEFAULT, pem_r, pem_len_r, &pub,
					   &error),
			 MAIL_OK);
	*txt_r = dkim_txt_value(alg, pub);
	free(pub);
}

/* A DKIM record for domain/selector, as `mailctl dkim generate` stores it. */
static void put_dkim(fixture *f, const char *domain, const char *selector, enum dkim_alg alg,
		     int active)
{
	int64_t now = util_now_wall_ms();
	struct dkim_record r = {
		.alg = alg,
		.pem = alg == DKIM_ALG_RSA_SHA256 ? f->rsa_pem : f->ed_pem,
		.pem_len = alg == DKIM_ALG_RSA_SHA256 ? f->rsa_pem_len : f->ed_pem_len,
		.created = now,
		.active = active,
		.activated = active ? now : 0,
	};
	size_t len;
	char *json = dkim_record_format(&r, &len);
	char *key = dkim_store_key(domain, selector);
	assert_int_equal(etcd_kv_put(f->c, key, json, len, 0), MAIL_OK);
	free(key);
	dkim_secret_free(json, len);
}

struct refresh_wait {
	int calls;
	int status;
	queue_config **destroy; /* destroy the cache from the callback */
};

static void refresh_cb(int status, void *arg)
{
	struct refresh_wait *w = arg;
	w->calls++;
	w->status = status;
	if (w->destroy != NULL)
		queue_config_destroy(w->destroy);
}

/* Refresh now and run the loop until the answer (the cache's timer does
 * not keep the loop alive). Returns the refresh's status. */
static int refresh(fixture *f, queue_config *cfg)
{
	struct refresh_wait w = { 0 };
	queue_config_refresh_now(cfg, refresh_cb, &w);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(w.calls, 1);
	return w.status;
}

static queue_config *config_new(fixture *f, uint32_t refresh_ms)
{
	struct queue_config_settings set;
	queue_config_settings_default(&set);
	if (refresh_ms != 0)
		set.refresh_ms = refresh_ms;
	queue_config *cfg;
	assert_int_equal(queue_config_create(&f->loop, mailtest_etcd_conf(f->etcd), &set, &cfg), 0);
	return cfg;
}

static void config_free(fixture *f, queue_config **cfg)
{
	queue_config_destroy(cfg);
	assert_null(*cfg);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* A relay record as `mailctl relay set` writes it. */
static void put_relay(fixture *f, const char *key, const char *url, const char *user,
		      const char *password)
{
	char v[512];
	if (user != NULL)
		snprintf(v, sizeof v, "{\"url\":\"%s\",\"at\":1,\"user\":\"%s\",\"password\":\"%s\"}",
			 url, user, password);
	else
		snprintf(v, sizeof v, "{\"url\":\"%s\",\"at\":1}", url);
	put(f, key, v);
}

static void put_transport(fixture *f, const char *domain, const char *url)
{
	char key[300], v[300];
	snprintf(key, sizeof key, QUEUE_CONFIG_TRANSPORT_PREFIX "%s", domain);
	snprintf(v, sizeof v, "{\"url\":\"%s\",\"at\":1}", url);
	put(f, key, v);
}

static void check_route(queue_config *cfg, const char *sender, const char *rcpt, int want,
			const char *rule, const char *host, unsigned port, const char *user,
			const char *password)
{
	struct queue_route r;
	memset(&r, 0xa5, sizeof r);
	int got = queue_config_route(cfg, sender, rcpt, &r);
	if (got != want)
		fail_msg("route(%s, %s) = %d, want %d", sender ? sender : "NULL",
			 rcpt ? rcpt : "NULL", got, want);
	if (want != 1) {
		assert_null(r.rule);
		assert_string_equal(r.url.host, "");
		queue_route_clear(&r);
		return;
	}
	assert_string_equal(r.rule, rule);
	assert_string_equal(r.url.host, host);
	assert_int_equal(r.url.port, port);
	assert_string_equal(r.user, user);
	assert_string_equal(r.password, password);
	queue_route_clear(&r);
	assert_string_equal(r.password, "");
}

struct sign_result {
	int calls;
	int status;
	uint8_t *out;
	size_t len;
	char domain[DKIM_DOMAIN_MAX + 1]; /* "(null)" when NULL */
};

static void sign_cb(int status, const uint8_t *signed_body, size_t signed_len,
		    const char *domain, void *arg)
{
	struct sign_result *r = arg;
	r->calls++;
	r->status = status;
	r->len = signed_len;
	r->out = NULL;
	if (signed_body != NULL) {
		r->out = xmalloc(signed_len + 1);
		memcpy(r->out, signed_body, signed_len);
		r->out[signed_len] = 0;
	}
	snprintf(r->domain, sizeof r->domain, "%s", domain != NULL ? domain : "(null)");
}

static void sign(fixture *f, queue_dkim *qd, const queue_config *cfg, const char *msg,
		 struct sign_result *r)
{
	memset(r, 0, sizeof *r);
	queue_dkim_sign(qd, &f->loop, cfg, "Q1", (const uint8_t *)msg, strlen(msg), sign_cb, r);
	assert_int_equal(r->calls, 0); /* never from inside the call */
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(r->calls, 1);
}

/* ---- fixture ------------------------------------------------------------------- */

static int group_setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	f->tmp = mailtest_tmpdir("queue-config-test");
	make_key(DKIM_ALG_RSA_SHA256, &f->rsa_pem, &f->rsa_pem_len, &f->rsa_txt);
	make_key(DKIM_ALG_ED25519_SHA256, &f->ed_pem, &f->ed_pem_len, &f->ed_txt);
	*state = f;
	return 0;
}

static int group_teardown(void **state)
{
	fixture *f = *state;
	etcd_client_destroy(&f->c);
	mailtest_etcd_stop(&f->etcd);
	dkim_secret_free(f->rsa_pem, f->rsa_pem_len);
	dkim_secret_free(f->ed_pem, f->ed_pem_len);
	free(f->rsa_txt);
	free(f->ed_txt);
	mailtest_rmrf(f->tmp);
	free(f->tmp);
	free(f);
	return 0;
}

/* Each test starts from empty prefixes and a fresh loop. */
static int setup(void **state)
{
	fixture *f = *state;
	assert_int_equal(etcd_kv_delete_prefix(f->c, "/mail/v1/secrets/", NULL), MAIL_OK);
	assert_int_equal(etcd_kv_delete_prefix(f->c, QUEUE_CONFIG_TRANSPORT_PREFIX, NULL), MAIL_OK);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	return 0;
}

/* ---- routing ------------------------------------------------------------------- */

static void test_settings(void **state)
{
	fixture *f = *state;
	struct queue_config_settings set;
	const char *error = NULL;
	queue_config_settings_default(&set);
	assert_int_equal(set.refresh_ms, QUEUE_CONFIG_REFRESH_MS_DEFAULT);
	assert_int_equal(queue_config_settings_check(&set, &error), 0);
	set.refresh_ms = QUEUE_CONFIG_REFRESH_MS_MIN - 1;
	assert_int_equal(queue_config_settings_check(&set, &error), -1);
	assert_non_null(strstr(error, "refresh_ms"));
	static int not_null;
	queue_config *cfg = (queue_config *)&not_null; /* NULLed on failure */
	assert_int_equal(queue_config_create(&f->loop, mailtest_etcd_conf(f->etcd), &set, &cfg),
			 -1);
	assert_null(cfg);
	set.refresh_ms = QUEUE_CONFIG_REFRESH_MS_MAX + 1;
	assert_int_equal(queue_config_settings_check(&set, &error), -1);
	set.refresh_ms = QUEUE_CONFIG_REFRESH_MS_MAX;
	assert_int_equal(queue_config_settings_check(&set, &error), 0);
	/* NULL: the defaults */
	assert_int_equal(queue_config_create(&f->loop, mailtest_etcd_conf(f->etcd), NULL, &cfg), 0);
	config_free(f, &cfg);
}

static void test_route_precedence(void **state)
{
	fixture *f = *state;
	put_relay(f, QUEUE_CONFIG_RELAY_DEFAULT_KEY, "smtp+starttls://relay.example:587", "cluster",
		  "cluster-secret");
	put_relay(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX T_TENANT, "smtps://tenant-relay.example:465",
		  "tuser", "tenant-secret");
	put_transport(f, T_DEST, "smtp://[2001:db8::1]:2525");

	queue_config *cfg = config_new(f, 0);
	assert_int_equal(queue_config_ready(cfg), 0);
	check_route(cfg, T_TENANT, "any.test", -1, NULL, NULL, 0, NULL, NULL); /* not loaded */
	struct dkim_key keys[DKIM_ALG_COUNT_];
	assert_int_equal(queue_config_dkim_keys(cfg, T_SIGN_DOMAIN, keys), 0);

	assert_int_equal(refresh(f, cfg), MAIL_OK);
	assert_int_equal(queue_config_ready(cfg), 1);
	assert_int_equal(queue_config_skipped(cfg), 0);
	/* the transport beats the tenant's relay; it never carries AUTH */
	check_route(cfg, T_TENANT, T_DEST, 1, "transport", "2001:db8::1", 2525, "", "");
	check_route(cfg, NULL, "DEST.Test", 1, "transport", "2001:db8::1", 2525, "", "");
	/* the tenant's relay beats the default relay */
	check_route(cfg, T_TENANT, "other.test", 1, "tenant_relay", "tenant-relay.example", 465,
		    "tuser", "tenant-secret");
	check_route(cfg, "Tenant.TEST", "other.test", 1, "tenant_relay", "tenant-relay.example",
		    465, "tuser", "tenant-secret");
	/* anyone else: the default relay */
	check_route(cfg, "nobody.test", "other.test", 1, "relay", "relay.example", 587, "cluster",
		    "cluster-secret");
	check_route(cfg, NULL, "other.test", 1, "relay", "relay.example", 587, "cluster",
		    "cluster-secret");
	check_route(cfg, "", "", 1, "relay", "relay.example", 587, "cluster", "cluster-secret");
	/* exact matches only: no parent or child domain */
	check_route(cfg, "sub." T_TENANT, "sub." T_DEST, 1, "relay", "relay.example", 587,
		    "cluster", "cluster-secret");

	/* without the default relay: the MX */
	del(f, QUEUE_CONFIG_RELAY_DEFAULT_KEY);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, "nobody.test", "other.test", 0, NULL, NULL, 0, NULL, NULL);
	check_route(cfg, T_TENANT, "other.test", 1, "tenant_relay", "tenant-relay.example", 465,
		    "tuser", "tenant-secret");
	/* a relay without AUTH */
	put_relay(f, QUEUE_CONFIG_RELAY_DEFAULT_KEY, "smtp://relay2.example", NULL, NULL);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, "nobody.test", "other.test", 1, "relay", "relay2.example", 25, "", "");
	config_free(f, &cfg);
}

static void test_change_picked_up(void **state)
{
	fixture *f = *state;
	put_transport(f, T_DEST, "smtp://a.example");
	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, NULL, T_DEST, 1, "transport", "a.example", 25, "", "");

	/* changed in etcd, then refresh_now: the read answering starts after
	 * the call, so the change is seen */
	put_transport(f, T_DEST, "smtp://b.example:26");
	check_route(cfg, NULL, T_DEST, 1, "transport", "a.example", 25, "", ""); /* cached */
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, NULL, T_DEST, 1, "transport", "b.example", 26, "", "");

	/* a refresh_now while a read runs gets the read after it */
	struct refresh_wait w1 = { 0 }, w2 = { 0 }, w3 = { 0 };
	queue_config_refresh_now(cfg, refresh_cb, &w1);
	put_transport(f, T_DEST, "smtp://c.example");
	queue_config_refresh_now(cfg, refresh_cb, &w2);
	queue_config_refresh_now(cfg, refresh_cb, &w3);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(w1.calls, 1);
	assert_int_equal(w2.calls, 1);
	assert_int_equal(w3.calls, 1);
	assert_int_equal(w2.status, MAIL_OK);
	check_route(cfg, NULL, T_DEST, 1, "transport", "c.example", 25, "", "");

	/* removed */
	del(f, QUEUE_CONFIG_TRANSPORT_PREFIX T_DEST);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, NULL, T_DEST, 0, NULL, NULL, 0, NULL, NULL);
	config_free(f, &cfg);
}

static void stop_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Run the loop for ms (the cache's own timer does not keep it running). */
static void run_for(fixture *f, uint64_t ms)
{
	uv_timer_t t;
	uv_timer_init(&f->loop, &t);
	uv_timer_start(&t, stop_cb, ms, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void test_timer_refresh(void **state)
{
	fixture *f = *state;
	put_transport(f, T_DEST, "smtp://a.example");
	queue_config *cfg = config_new(f, QUEUE_CONFIG_REFRESH_MS_MIN);
	/* the first load starts by itself */
	for (int i = 0; i < 100 && !queue_config_ready(cfg); i++)
		run_for(f, 50);
	assert_int_equal(queue_config_ready(cfg), 1);
	check_route(cfg, NULL, T_DEST, 1, "transport", "a.example", 25, "", "");
	put_transport(f, T_DEST, "smtp://b.example");
	struct queue_route r;
	int seen = 0;
	for (int i = 0; i < 100 && !seen; i++) {
		run_for(f, 50);
		assert_int_equal(queue_config_route(cfg, NULL, T_DEST, &r), 1);
		seen = strcmp(r.url.host, "b.example") == 0;
		queue_route_clear(&r);
	}
	assert_true(seen);
	config_free(f, &cfg);
}

static void test_malformed_skipped(void **state)
{
	fixture *f = *state;
	put_relay(f, QUEUE_CONFIG_RELAY_DEFAULT_KEY, "smtp://relay.example", NULL, NULL);
	/* skipped: not JSON; a bad URL; a user without a password; a tenant
	 * that is not a lowercase domain; a transport URL of another scheme;
	 * a transport of an upper-case domain; a DKIM record that does not
	 * parse; a DKIM key that is not <domain>/<selector> */
	put(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX "bad1.test", "not json");
	put(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX "bad2.test", "{\"url\":\"smtp://user@host\"}");
	put(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX "bad3.test",
	    "{\"url\":\"smtp://r.example\",\"user\":\"u\"}");
	put_relay(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX "Bad4.test", "smtp://r.example", NULL, NULL);
	put_transport(f, "bad5.test", "ftp://x.example");
	put_transport(f, "BAD6.test", "smtp://x.example");
	put(f, DKIM_STORE_PREFIX T_SIGN_DOMAIN "/broken", "{\"algorithm\":\"rsa-sha256\"}");
	put(f, DKIM_STORE_PREFIX "nosel.test", "{}");
	/* kept beside them */
	put_relay(f, QUEUE_CONFIG_RELAY_TENANTS_PREFIX T_TENANT, "smtp://t.example", "u", "p");
	put_transport(f, T_DEST, "smtp://d.example");
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 1);
	/* a key of ours that a newer mailctl might use: passed over, not an error */
	put(f, "/mail/v1/secrets/relay/policy", "{\"whatever\":1}");

	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	assert_int_equal(queue_config_skipped(cfg), 8);
	for (int i = 1; i <= 4; i++) {
		char dom[32];
		snprintf(dom, sizeof dom, "bad%d.test", i);
		check_route(cfg, dom, "x.test", 1, "relay", "relay.example", 25, "", "");
	}
	check_route(cfg, NULL, "bad5.test", 1, "relay", "relay.example", 25, "", "");
	check_route(cfg, NULL, "bad6.test", 1, "relay", "relay.example", 25, "", "");
	check_route(cfg, T_TENANT, "x.test", 1, "tenant_relay", "t.example", 25, "u", "p");
	check_route(cfg, NULL, T_DEST, 1, "transport", "d.example", 25, "", "");
	struct dkim_key keys[DKIM_ALG_COUNT_];
	assert_int_equal(queue_config_dkim_keys(cfg, T_SIGN_DOMAIN, keys), 1);
	assert_string_equal(keys[0].selector, "rsa1");
	dkim_key_clear(&keys[0]);

	/* the default relay itself malformed: skipped, so the MX */
	put(f, QUEUE_CONFIG_RELAY_DEFAULT_KEY, "{\"url\":42}");
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	assert_int_equal(queue_config_skipped(cfg), 9);
	check_route(cfg, "nobody.test", "x.test", 0, NULL, NULL, 0, NULL, NULL);
	config_free(f, &cfg);
}

/* ---- DKIM keys and signing ------------------------------------------------------- */

static void test_dkim_keys(void **state)
{
	fixture *f = *state;
	put_dkim(f, T_SIGN_DOMAIN, "old", DKIM_ALG_RSA_SHA256, 0);
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 1);
	put_dkim(f, T_SIGN_DOMAIN, "ed1", DKIM_ALG_ED25519_SHA256, 1);
	put_dkim(f, "inactive.test", "s1", DKIM_ALG_RSA_SHA256, 0);
	put_dkim(f, "a-sign.test", "s1", DKIM_ALG_ED25519_SHA256, 1);
	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);

	struct dkim_key keys[DKIM_ALG_COUNT_];
	size_t n = queue_config_dkim_keys(cfg, "Sign.TEST", keys);
	assert_int_equal(n, 2);
	assert_int_equal(keys[0].alg, DKIM_ALG_RSA_SHA256); /* RSA first */
	assert_string_equal(keys[0].selector, "rsa1");
	assert_string_equal(keys[0].domain, T_SIGN_DOMAIN);
	assert_memory_equal(keys[0].pem, f->rsa_pem, f->rsa_pem_len);
	assert_int_equal(keys[1].alg, DKIM_ALG_ED25519_SHA256);
	assert_string_equal(keys[1].selector, "ed1");
	for (size_t i = 0; i < n; i++)
		dkim_key_clear(&keys[i]);
	assert_null(keys[0].pem);

	n = queue_config_dkim_keys(cfg, "a-sign.test", keys);
	assert_int_equal(n, 1);
	assert_int_equal(keys[0].alg, DKIM_ALG_ED25519_SHA256);
	dkim_key_clear(&keys[0]);
	assert_int_equal(queue_config_dkim_keys(cfg, "inactive.test", keys), 0);
	assert_int_equal(queue_config_dkim_keys(cfg, "none.test", keys), 0);
	assert_int_equal(queue_config_dkim_keys(cfg, "", keys), 0);
	assert_int_equal(queue_config_dkim_keys(cfg, "sub." T_SIGN_DOMAIN, keys), 0);

	/* the RSA key deactivated: Ed25519 alone */
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	n = queue_config_dkim_keys(cfg, T_SIGN_DOMAIN, keys);
	assert_int_equal(n, 1);
	assert_int_equal(keys[0].alg, DKIM_ALG_ED25519_SHA256);
	dkim_key_clear(&keys[0]);
	config_free(f, &cfg);
}

static const char msg_signed[] =
	"Received: from client by mx; Tue, 2 Dec 2025 10:00:00 +0000\r\n"
	"From: (the author) \"Doe, Jane\"\r\n"
	"  <jane@Sign.Test> (folded)\r\n"
	"To: bob@remote.test\r\n"
	"Subject: Quarterly figures\r\n"
	"Date: Tue, 2 Dec 2025 10:00:00 +0000\r\n"
	"Message-ID: <q1@sign.test>\r\n"
	"\r\n"
	"Hello Bob,\r\n"
	"From: not@a-header.test\r\n"
	"the figures are attached.\r\n";

static void test_sign_verified(void **state)
{
	fixture *f = *state;
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 1);
	put_dkim(f, T_SIGN_DOMAIN, "ed1", DKIM_ALG_ED25519_SHA256, 1);
	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	queue_dkim *qd;
	const char *error = NULL;
	assert_int_equal(queue_dkim_create(NULL, &qd, &error), MAIL_OK);

	struct sign_result r;
	sign(f, qd, cfg, msg_signed, &r);
	assert_int_equal(r.status, MAIL_OK);
	assert_non_null(r.out);
	assert_string_equal(r.domain, T_SIGN_DOMAIN);
	/* two fields in front, the message after them as it was */
	size_t mlen = strlen(msg_signed);
	assert_true(r.len > mlen);
	assert_memory_equal(r.out + r.len - mlen, msg_signed, mlen);
	assert_int_equal(strncmp((const char *)r.out, "DKIM-Signature:", 15), 0);
	const char *second = strstr((const char *)r.out + 1, "\r\nDKIM-Signature:");
	assert_non_null(second);
	assert_true(second < (const char *)r.out + r.len - mlen);

	const char *names[] = { "rsa1._domainkey." T_SIGN_DOMAIN, "ed1._domainkey." T_SIGN_DOMAIN };
	const char *values[] = { f->rsa_txt, f->ed_txt };
	char out[4096];
	int rc = dkimtest_verify(f->tmp, r.out, r.len, names, values, 2, out, sizeof out);
	if (rc != 0)
		fail_msg("dkimpy: %d\n%s", rc, out);
	assert_non_null(strstr(out, "pass a=rsa-sha256 d=" T_SIGN_DOMAIN " s=rsa1"));
	assert_non_null(strstr(out, "pass a=ed25519-sha256 d=" T_SIGN_DOMAIN " s=ed1"));
	/* and it is a real check: a changed body fails */
	uint8_t *tampered = xmalloc(r.len);
	memcpy(tampered, r.out, r.len);
	tampered[r.len - 3] ^= 1;
	assert_int_not_equal(dkimtest_verify(f->tmp, tampered, r.len, names, values, 2, out,
					     sizeof out),
			     0);
	free(tampered);
	free(r.out);

	/* several messages at once */
	struct sign_result many[6];
	memset(many, 0, sizeof many);
	for (size_t i = 0; i < 6; i++)
		queue_dkim_sign(qd, &f->loop, cfg, "Q2", (const uint8_t *)msg_signed, mlen,
				sign_cb, &many[i]);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(many[i].calls, 1);
		assert_int_equal(many[i].status, MAIL_OK);
		assert_non_null(many[i].out);
		free(many[i].out);
	}
	queue_dkim_destroy(&qd);
	assert_null(qd);
	config_free(f, &cfg);
}

static void test_sign_unsigned(void **state)
{
	fixture *f = *state;
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 1);
	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	queue_dkim *qd;
	const char *error = NULL;
	assert_int_equal(queue_dkim_create(NULL, &qd, &error), MAIL_OK);
	struct sign_result r;

	/* no From */
	sign(f, qd, cfg, "To: bob@remote.test\r\nSubject: x\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.status, MAIL_OK);
	assert_null(r.out);
	assert_int_equal(r.len, 0);
	assert_string_equal(r.domain, "(null)");
	/* a From domain without keys */
	sign(f, qd, cfg, "From: a@nokeys.test\r\nTo: b@remote.test\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.status, MAIL_OK);
	assert_null(r.out);
	assert_string_equal(r.domain, "nokeys.test");
	/* two From fields */
	sign(f, qd, cfg, "From: a@sign.test\r\nFrom: b@sign.test\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.status, MAIL_OK);
	assert_null(r.out);
	assert_string_equal(r.domain, "(null)");
	/* no cache: nothing signs */
	sign(f, qd, NULL, "From: a@sign.test\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.status, MAIL_OK);
	assert_null(r.out);
	assert_string_equal(r.domain, T_SIGN_DOMAIN);
	/* the signer refuses a header line that is not a field: an error */
	sign(f, qd, cfg, "From: a@sign.test\r\nnot a field\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	assert_null(r.out);
	assert_string_equal(r.domain, T_SIGN_DOMAIN);
	/* a header over QUEUE_DKIM_HEADER_MAX */
	size_t big = QUEUE_DKIM_HEADER_MAX + 100;
	char *msg = xmalloc(big + 1);
	memset(msg, 'x', big);
	memcpy(msg, "From: a@sign.test\r\nX-Big: ", 26);
	msg[big] = '\0';
	sign(f, qd, cfg, msg, &r);
	assert_int_equal(r.status, MAIL_ERR_LIMIT);
	assert_null(r.out);
	free(msg);
	queue_dkim_destroy(&qd);
	config_free(f, &cfg);
}

/* The From parser on its own: what signs under which domain. */
static void test_from_domain(void **state)
{
	(void)state;
	static const struct {
		const char *msg;
		int want;
		const char *domain;
	} cases[] = {
		{ "From: a@example.test\r\n\r\n", 1, "example.test" },
		{ "from: a@EXAMPLE.test\n\nbody", 1, "example.test" },
		{ "FROM :a@example.test\r\n", 1, "example.test" }, /* obsolete WSP, no body */
		{ "From: Jane Doe <jane@example.test>\r\n\r\n", 1, "example.test" },
		{ "From: \"Doe, Jane <x@evil.test>\" <jane@example.test>\r\n\r\n", 1,
		  "example.test" },
		{ "From: \"quoted@local\"@example.test\r\n\r\n", 1, "example.test" },
		{ "From: jane@example.test (Jane <x@evil.test>, (nested))\r\n\r\n", 1,
		  "example.test" },
		{ "From: (c) Jane\r\n\t<jane@example.test>\r\n (c2)\r\nTo: x@y.test\r\n\r\n", 1,
		  "example.test" },
		{ "From:\r\n jane@example.test\r\n\r\n", 1, "example.test" },
		{ "From: <@route.test,@r2.test:jane@example.test>\r\n\r\n", 1, "example.test" },
		{ "From: a@example.test, B <b@Example.Test>\r\n\r\n", 1, "example.test" },
		{ "From: Team: a@example.test, b@example.test;\r\n\r\n", 1, "example.test" },
		{ "Subject: x\r\nFrom: a@example.test\r\nX: y\r\n\r\nFrom: b@other.test\r\n", 1,
		  "example.test" },
		{ "From a@other.test Mon Dec  1 10:00:00 2025\nFrom: a@example.test\n\n", 1,
		  "example.test" },
		{ "From: a@example.test, b@other.test\r\n\r\n", 0, NULL }, /* two domains */
		{ "From: a@example.test\r\nfrom: a@example.test\r\n\r\n", 0, NULL },
		{ "To: a@example.test\r\n\r\nFrom: a@example.test\r\n", 0, NULL },
		{ "From-Address: a@example.test\r\n\r\n", 0, NULL },
		{ "From: Jane\r\n\r\n", 0, NULL },
		{ "From: jane@[192.0.2.1]\r\n\r\n", 0, NULL },
		{ "From: <jane@example.test\r\n\r\n", 0, NULL },
		{ "From: jane@example.test>\r\n\r\n", 0, NULL },
		{ "From: \"unterminated@example.test\r\n\r\n", 0, NULL },
		{ "From: (unterminated jane@example.test\r\n\r\n", 0, NULL },
		{ "From: <a@example.test> <b@example.test>\r\n\r\n", 0, NULL },
		{ "From: <a@example.test> trailing\r\n\r\n", 0, NULL },
		{ "From: <>\r\n\r\n", 0, NULL },
		{ "From: a@\r\n\r\n", 0, NULL },
		{ "From: @example.test\r\n\r\n", 0, NULL },
		{ "From: a@exa_mple.test\r\n\r\n", 0, NULL },
		{ "", 0, NULL },
		{ "\r\nFrom: a@example.test\r\n", 0, NULL }, /* no header at all */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char d[DKIM_DOMAIN_MAX + 1];
		const char *m = cases[i].msg;
		int got = queue_dkim_from_domain((const uint8_t *)m, strlen(m), d);
		if (got != cases[i].want)
			fail_msg("case %zu: %d, want %d", i, got, cases[i].want);
		if (got == 1)
			assert_string_equal(d, cases[i].domain);
		else
			assert_string_equal(d, "");
	}
	/* a header section that does not end within the limit */
	size_t big = QUEUE_DKIM_HEADER_MAX + 10;
	uint8_t *m = xmalloc(big);
	memset(m, 'x', big);
	memcpy(m, "From: a@example.test\r\nX: ", 25);
	char d[DKIM_DOMAIN_MAX + 1];
	assert_int_equal(queue_dkim_from_domain(m, big, d), -1);
	/* many short lines past the limit, too */
	for (size_t i = 25; i + 7 <= big; i += 8)
		memcpy(m + i, "\r\nX: yy", 7);
	assert_int_equal(queue_dkim_from_domain(m, big, d), -1);
	/* the same header within the limit and a long body: fine */
	memcpy(m + 25, "y\r\n\r\n", 5);
	assert_int_equal(queue_dkim_from_domain(m, big, d), 1);
	assert_string_equal(d, "example.test");
	free(m);
}

/* ---- teardown with work in flight, and failures ---------------------------------- */

static void test_destroy_in_flight(void **state)
{
	fixture *f = *state;
	put_dkim(f, T_SIGN_DOMAIN, "rsa1", DKIM_ALG_RSA_SHA256, 1);
	put_dkim(f, T_SIGN_DOMAIN, "ed1", DKIM_ALG_ED25519_SHA256, 1);
	queue_config *cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);

	/* signing jobs (and one unsigned answer) dropped by destroy: no
	 * callback, and the bodies may go at once */
	queue_dkim *qd;
	const char *error = NULL;
	assert_int_equal(queue_dkim_create(NULL, &qd, &error), MAIL_OK);
	struct sign_result r[9];
	memset(r, 0, sizeof r);
	/* 8 MB bodies: the body hash takes milliseconds, so the jobs that
	 * reached a pool thread are still reading when destroy comes */
	size_t mlen = strlen(msg_signed), big = 8u << 20;
	uint8_t *bodies[9];
	size_t lens[9];
	for (size_t i = 0; i < 9; i++) {
		const char *m = i == 8 ? "To: x@y.test\r\n\r\nno From\r\n" : msg_signed;
		lens[i] = i == 8 ? strlen(m) : big;
		bodies[i] = xmalloc(lens[i]);
		memset(bodies[i], 'b', lens[i]);
		memcpy(bodies[i], m, i == 8 ? lens[i] : mlen);
		queue_dkim_sign(qd, &f->loop, cfg, "Q3", bodies[i], lens[i], sign_cb, &r[i]);
	}
	uv_sleep(5);
	queue_dkim_destroy(&qd);
	assert_null(qd);
	/* ASan would see a read of a freed body */
	for (size_t i = 0; i < 9; i++) {
		memset(bodies[i], 0, lens[i]);
		free(bodies[i]);
	}
	uv_run(&f->loop, UV_RUN_DEFAULT);
	for (size_t i = 0; i < 9; i++)
		assert_int_equal(r[i].calls, 0);

	/* a cache destroyed while its refresh runs: the callback never comes */
	struct refresh_wait w = { 0 };
	queue_config_refresh_now(cfg, refresh_cb, &w);
	queue_config_destroy(&cfg);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(w.calls, 0);

	/* destroyed from its own refresh callback, with another one waiting */
	cfg = config_new(f, 0);
	struct refresh_wait w1 = { .destroy = &cfg }, w2 = { 0 };
	queue_config_refresh_now(cfg, refresh_cb, &w1);
	queue_config_refresh_now(cfg, refresh_cb, &w2);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(w1.calls, 1);
	assert_null(cfg);
	assert_int_equal(w2.calls, 0);
}

static void test_refresh_failure(void **state)
{
	fixture *f = *state;
	/* nothing listens there: never ready */
	int port = mailtest_free_port();
	assert_true(port > 0);
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
	etcd_conf dead = { .url = url };
	queue_config *cfg;
	assert_int_equal(queue_config_create(&f->loop, &dead, NULL, &cfg), 0);
	assert_int_equal(refresh(f, cfg), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(refresh(f, cfg), MAIL_ERR_UNAVAILABLE); /* logged once */
	assert_int_equal(queue_config_ready(cfg), 0);
	check_route(cfg, "a.test", "b.test", -1, NULL, NULL, 0, NULL, NULL);
	config_free(f, &cfg);

	/* loaded, then etcd stops answering: the last snapshot stays */
	put_transport(f, T_DEST, "smtp://a.example");
	cfg = config_new(f, 0);
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	pid_t pid = mailtest_etcd_pid(f->etcd);
	assert_int_equal(kill(pid, SIGSTOP), 0);
	int st = refresh(f, cfg);
	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_int_not_equal(st, MAIL_OK);
	assert_int_equal(queue_config_ready(cfg), 1);
	check_route(cfg, NULL, T_DEST, 1, "transport", "a.example", 25, "", "");
	/* and it recovers */
	put_transport(f, T_DEST, "smtp://b.example");
	assert_int_equal(refresh(f, cfg), MAIL_OK);
	check_route(cfg, NULL, T_DEST, 1, "transport", "b.example", 25, "", "");
	config_free(f, &cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_settings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_route_precedence, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_picked_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_refresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dkim_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_verified, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sign_unsigned, setup, teardown),
		cmocka_unit_test(test_from_domain),
		cmocka_unit_test_setup_teardown(test_destroy_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refresh_failure, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
