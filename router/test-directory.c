/* test-directory.c: tenants and users against a real etcd. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "directory.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "sasl.h"
#include "scram-client.h"
#include "xalloc.h"

typedef struct fixture {
	mailtest_etcd *etcd;
	directory *dir;
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->dir = directory_create(mailtest_etcd_conf(f->etcd));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	directory_destroy(&f->dir);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

/* The value stored under key, as etcd holds it (caller frees). */
static char *stored_value(fixture *f, const char *key)
{
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	char *val;
	size_t len;
	assert_int_equal(etcd_kv_get(c, key, &val, &len, NULL, NULL), MAIL_OK);
	etcd_client_destroy(&c);
	return val;
}

static void free_list(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static void test_tenants(void **state)
{
	fixture *f = *state;
	char **v;
	size_t n;
	assert_int_equal(directory_tenant_list(f->dir, &v, &n), MAIL_OK);
	assert_int_equal(n, 0);
	free_list(v, n);

	assert_int_equal(directory_tenant_exists(f->dir, "b.test"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_tenant_add(f->dir, "b.test"), MAIL_OK);
	assert_int_equal(directory_tenant_add(f->dir, "B.Test"), MAIL_ERR_EXISTS);
	assert_int_equal(directory_tenant_add(f->dir, "a.test"), MAIL_OK);
	assert_int_equal(directory_tenant_add(f->dir, "-bad.test"), MAIL_ERR_PARAMS);
	assert_int_equal(directory_tenant_add(f->dir, ""), MAIL_ERR_PARAMS);
	assert_int_equal(directory_tenant_add(f->dir, "a/b.test"), MAIL_ERR_PARAMS);
	assert_int_equal(directory_tenant_exists(f->dir, "B.TEST"), MAIL_OK);

	assert_int_equal(directory_tenant_list(f->dir, &v, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "a.test");
	assert_string_equal(v[1], "b.test");
	free_list(v, n);
}

static void test_users(void **state)
{
	fixture *f = *state;
	char **v;
	size_t n;
	directory_tenant_add(f->dir, "a.test");
	directory_tenant_add(f->dir, "b.test");

	assert_int_equal(directory_user_add(f->dir, "Alice@A.test", "s3cret"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "alice@a.test", "other"), MAIL_ERR_EXISTS);
	assert_int_equal(directory_user_add(f->dir, "bob@a.test", "hunter2"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "carol@b.test", "pw"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "x@nowhere.test", "pw"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_user_add(f->dir, "not-an-address", "pw"), MAIL_ERR_PARAMS);
	assert_int_equal(directory_user_add(f->dir, "dave@a.test", ""), MAIL_ERR_PARAMS);

	assert_int_equal(directory_user_exists(f->dir, "ALICE@a.test"), MAIL_OK);
	assert_int_equal(directory_user_exists(f->dir, "nobody@a.test"), MAIL_ERR_NOT_FOUND);

	/* authentication */
	assert_int_equal(directory_authenticate(f->dir, "alice@a.test", "s3cret"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "ALICE@A.TEST", "s3cret"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "alice@a.test", "S3cret"), MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(f->dir, "alice@a.test", ""), MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(f->dir, "nobody@a.test", "s3cret"),
			 MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(f->dir, "garbage", "s3cret"), MAIL_ERR_PERM);
	/* tenants are isolated: the same local part elsewhere is not alice */
	assert_int_equal(directory_authenticate(f->dir, "alice@b.test", "s3cret"), MAIL_ERR_PERM);

	/* the stored value is an argon2id hash, never the password */
	char *val = stored_value(f, "/mail/v1/users/a.test/alice");
	assert_non_null(strstr(val, "\"hash\":\"$argon2id$"));
	assert_null(strstr(val, "s3cret"));
	free(val);

	/* password change */
	assert_int_equal(directory_user_passwd(f->dir, "alice@a.test", "n3w"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "alice@a.test", "s3cret"), MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(f->dir, "alice@a.test", "n3w"), MAIL_OK);
	assert_int_equal(directory_user_passwd(f->dir, "nobody@a.test", "x"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_user_passwd(f->dir, "alice@a.test", ""), MAIL_ERR_PARAMS);

	/* listing */
	assert_int_equal(directory_user_list(f->dir, "A.test", &v, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_string_equal(v[0], "alice@a.test");
	assert_string_equal(v[1], "bob@a.test");
	free_list(v, n);
	assert_int_equal(directory_user_list(f->dir, "b.test", &v, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_string_equal(v[0], "carol@b.test");
	free_list(v, n);
	assert_int_equal(directory_user_list(f->dir, "nowhere.test", &v, &n), MAIL_ERR_NOT_FOUND);

	/* delete */
	assert_int_equal(directory_user_del(f->dir, "bob@a.test"), MAIL_OK);
	assert_int_equal(directory_user_del(f->dir, "bob@a.test"), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_authenticate(f->dir, "bob@a.test", "hunter2"), MAIL_ERR_PERM);
	assert_int_equal(directory_user_list(f->dir, "a.test", &v, &n), MAIL_OK);
	assert_int_equal(n, 1);
	free_list(v, n);
	/* a deleted user can be added again */
	assert_int_equal(directory_user_add(f->dir, "bob@a.test", "again"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "bob@a.test", "again"), MAIL_OK);
}

/* A SCRAM-SHA-256 login of user with password through lib/sasl, the
 * server holding keys (as directory_user_scram() gave them); the client
 * is tests/support's. DONE (the server-final checked too) or FAIL. */
static enum sasl_step scram_login(const struct sasl_scram_keys *keys, const char *user,
				  const char *password)
{
	static const char secret[] = "directory-test-secret";
	char *bare = xasprintf("n=%s,r=clientnonce", user);
	char *first = xasprintf("n,,%s", bare);
	buf out;
	buf_init(&out);
	sasl_server *s = sasl_server_new(SASL_MECH_SCRAM_SHA_256, (const uint8_t *)secret,
					 strlen(secret));
	assert_int_equal(sasl_server_step(s, (const uint8_t *)first, strlen(first), 1, &out),
			 SASL_STEP_NEED_SCRAM);
	assert_int_equal(sasl_server_scram_keys(s, keys, &out), SASL_STEP_CHALLENGE);
	char *final, *expect;
	assert_int_equal(mailtest_scram_client_final(password, "n,,", bare, (const char *)out.data,
						     &final, &expect),
			 0);
	buf_reset(&out);
	enum sasl_step step = sasl_server_step(s, (const uint8_t *)final, strlen(final), 1, &out);
	if (step == SASL_STEP_DONE)
		assert_memory_equal(out.data, expect, strlen(expect) + 1);
	free(final);
	free(expect);
	buf_deinit(&out);
	sasl_server_free(&s);
	free(first);
	free(bare);
	return step;
}

static void test_scram(void **state)
{
	fixture *f = *state;
	struct sasl_scram_keys keys, again;
	assert_int_equal(directory_tenant_add(f->dir, "s.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "Sam@s.test", "pencil"), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "sam@S.TEST", &keys), MAIL_OK);
	assert_int_equal(keys.salt_len, SASL_SCRAM_SALT_LEN);
	assert_int_equal(keys.iterations, SASL_SCRAM_ITERATIONS);
	assert_int_equal(scram_login(&keys, "sam@s.test", "pencil"), SASL_STEP_DONE);
	assert_int_equal(scram_login(&keys, "sam@s.test", "Pencil"), SASL_STEP_FAIL);
	assert_int_equal(directory_authenticate(f->dir, "sam@s.test", "pencil"), MAIL_OK);

	/* the record holds the hash and the keys, never the password */
	char *val = stored_value(f, "/mail/v1/users/s.test/sam");
	assert_non_null(strstr(val, "\"hash\":\"$argon2id$"));
	assert_non_null(strstr(val, "\"scram\":{\"salt\":\""));
	assert_non_null(strstr(val, "\"i\":4096"));
	assert_null(strstr(val, "pencil"));
	free(val);

	/* passwd: a new salt and new keys; only the new password verifies */
	assert_int_equal(directory_user_passwd(f->dir, "sam@s.test", "n3w pass"), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "sam@s.test", &again), MAIL_OK);
	assert_memory_not_equal(again.salt, keys.salt, SASL_SCRAM_SALT_LEN);
	assert_memory_not_equal(again.stored_key, keys.stored_key, sizeof keys.stored_key);
	assert_int_equal(scram_login(&again, "sam@s.test", "n3w pass"), SASL_STEP_DONE);
	assert_int_equal(scram_login(&again, "sam@s.test", "pencil"), SASL_STEP_FAIL);
	assert_int_equal(scram_login(&keys, "sam@s.test", "n3w pass"), SASL_STEP_FAIL);
	assert_int_equal(directory_authenticate(f->dir, "sam@s.test", "n3w pass"), MAIL_OK);

	/* not found: unknown user, invalid address, the same name elsewhere */
	assert_int_equal(directory_user_scram(f->dir, "nobody@s.test", &keys), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_user_scram(f->dir, "garbage", &keys), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_user_scram(f->dir, "sam@a.test", &keys), MAIL_ERR_NOT_FOUND);

	/* a user from before SCRAM: not found until the next passwd, which
	 * keeps "created" */
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	static const char old[] = "{\"hash\":\"$argon2id$v=19$m=65536,t=2,p=1$x$y\",\"created\":7}";
	assert_int_equal(etcd_kv_put(c, "/mail/v1/users/s.test/old", old, strlen(old), 0), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "old@s.test", &keys), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_user_passwd(f->dir, "old@s.test", "later"), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "old@s.test", &keys), MAIL_OK);
	assert_int_equal(scram_login(&keys, "old@s.test", "later"), SASL_STEP_DONE);
	val = stored_value(f, "/mail/v1/users/s.test/old");
	assert_non_null(strstr(val, "\"created\":7"));
	free(val);

	/* a damaged "scram" object is an internal error, not a login */
	static const char bad[] = "{\"hash\":\"x\",\"created\":1,\"scram\":{\"salt\":\"AAAA\","
				  "\"i\":4096,\"stored\":\"short\",\"server\":\"\"}}";
	assert_int_equal(etcd_kv_put(c, "/mail/v1/users/s.test/bad", bad, strlen(bad), 0), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "bad@s.test", &keys), MAIL_ERR_INTERNAL);
	etcd_client_destroy(&c);
}

/* mailctl user disable|enable, tenant suspend|resume: who may log in and
 * which mail is taken. */
static void test_lifecycle(void **state)
{
	fixture *f = *state;
	struct directory_user_info info;
	struct sasl_scram_keys keys;
	struct directory_rcpt r;
	assert_int_equal(directory_tenant_add(f->dir, "life.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "ann@life.test", "pw-ann-1"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "bob@life.test", "pw-bob-1"), MAIL_OK);
	const char *targets[] = { "ann@life.test", "bob@life.test" };
	assert_int_equal(directory_alias_add(f->dir, "team@life.test", targets, 2), MAIL_OK);
	assert_int_equal(directory_user_info(f->dir, "Ann@life.test", &info), MAIL_OK);
	assert_int_equal(info.state, DIRECTORY_USER_ACTIVE);
	assert_true(info.created_ms > 0);
	assert_true(info.scram);
	assert_int_equal(directory_user_info(f->dir, "nobody@life.test", &info),
			 MAIL_ERR_NOT_FOUND);

	/* disabled: no login by any mechanism, mail refused, skipped in a list */
	assert_int_equal(directory_user_state_set(f->dir, "ann@life.test", DIRECTORY_USER_DISABLED),
			 MAIL_OK);
	assert_int_equal(directory_user_info(f->dir, "ann@life.test", &info), MAIL_OK);
	assert_int_equal(info.state, DIRECTORY_USER_DISABLED);
	assert_string_equal(directory_user_state_name(info.state), "disabled");
	assert_int_equal(directory_authenticate(f->dir, "ann@life.test", "pw-ann-1"), MAIL_ERR_PERM);
	assert_int_equal(directory_user_scram(f->dir, "ann@life.test", &keys), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_rcpt_resolve(f->dir, "ann@life.test", NULL, &r), MAIL_ERR_PERM);
	directory_rcpt_free(&r);
	assert_int_equal(directory_rcpt_resolve(f->dir, "ann+tag@life.test", NULL, &r),
			 MAIL_ERR_PERM);
	directory_rcpt_free(&r);
	assert_int_equal(directory_rcpt_resolve(f->dir, "team@life.test", NULL, &r), MAIL_OK);
	assert_int_equal(r.n_routes, 1);
	assert_string_equal(r.routes[0].address, "bob@life.test");
	directory_rcpt_free(&r);
	/* a new password keeps the state (and "created") */
	assert_int_equal(directory_user_passwd(f->dir, "ann@life.test", "pw-ann-2"), MAIL_OK);
	assert_int_equal(directory_user_info(f->dir, "ann@life.test", &info), MAIL_OK);
	assert_int_equal(info.state, DIRECTORY_USER_DISABLED);
	assert_true(info.created_ms > 0);
	assert_int_equal(directory_user_state_set(f->dir, "ann@life.test", DIRECTORY_USER_ACTIVE),
			 MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "ann@life.test", "pw-ann-2"), MAIL_OK);
	assert_int_equal(directory_user_scram(f->dir, "ann@life.test", &keys), MAIL_OK);
	assert_int_equal(directory_user_state_set(f->dir, "x@life.test", DIRECTORY_USER_DISABLED),
			 MAIL_ERR_NOT_FOUND);

	/* a suspended tenant: nobody logs in, its mail is deferred */
	struct directory_tenant_settings ts;
	memset(&ts, 0, sizeof ts);
	ts.suspended = 1;
	assert_int_equal(directory_tenant_settings_set(f->dir, "life.test", &ts,
						      DIRECTORY_TENANT_SUSPENDED), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "bob@life.test", "pw-bob-1"), MAIL_ERR_PERM);
	assert_int_equal(directory_user_scram(f->dir, "bob@life.test", &keys), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_rcpt_resolve(f->dir, "bob@life.test", NULL, &r), MAIL_ERR_TEMP);
	assert_non_null(r.tenant);
	directory_rcpt_free(&r);
	ts.suspended = 0;
	assert_int_equal(directory_tenant_settings_set(f->dir, "life.test", &ts,
						      DIRECTORY_TENANT_SUSPENDED), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "bob@life.test", "pw-bob-1"), MAIL_OK);
	assert_int_equal(directory_rcpt_resolve(f->dir, "bob@life.test", NULL, &r), MAIL_OK);
	directory_rcpt_free(&r);

	/* max_users: two users, a limit of 3 */
	ts.max_users = 3;
	assert_int_equal(directory_tenant_settings_set(f->dir, "life.test", &ts,
						      DIRECTORY_TENANT_MAX_USERS), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "cy@life.test", "pw-cy-1"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "di@life.test", "pw-di-1"), MAIL_ERR_LIMIT);
	assert_int_equal(directory_user_del(f->dir, "cy@life.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "di@life.test", "pw-di-1"), MAIL_OK);
	struct directory_tenant_settings back;
	assert_int_equal(directory_tenant_settings_get(f->dir, "life.test", &back), MAIL_OK);
	assert_int_equal(back.max_users, 3);
	assert_int_equal(back.suspended, 0);
}

/* Quotas (issue 12): SIZE parsing, a user's limits in its record (kept by
 * the other edits), a tenant's in its settings, directory_quota_get and
 * the routes of a recipient carrying the user's own. */
static void test_quota(void **state)
{
	fixture *f = *state;
	uint64_t n;
	assert_int_equal(directory_size_parse("0", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(directory_size_parse("unlimited", &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(directory_size_parse("12345", &n), 0);
	assert_int_equal(n, 12345);
	assert_int_equal(directory_size_parse("10K", &n), 0);
	assert_int_equal(n, 10240);
	assert_int_equal(directory_size_parse("2m", &n), 0);
	assert_int_equal(n, 2u << 20);
	assert_int_equal(directory_size_parse("3G", &n), 0);
	assert_int_equal(n, 3ull << 30);
	assert_int_equal(directory_size_parse("1T", &n), 0);
	assert_int_equal(n, 1ull << 40);
	const char *bad[] = { "", "12Q", "-1", "K", "1KB", "1.5G", " 1", "99999999999999999999",
			      "2000000T" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(directory_size_parse(bad[i], &n), -1);

	assert_int_equal(directory_tenant_add(f->dir, "quota.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "ann@quota.test", "pw-ann-1"), MAIL_OK);
	struct directory_quota q = { .storage = 10240, .messages = 0 }, u, t;
	assert_int_equal(directory_user_quota_set(f->dir, "Ann@quota.test", &q,
						  DIRECTORY_QUOTA_STORAGE), MAIL_OK);
	q = (struct directory_quota){ .storage = 1, .messages = 7 };
	assert_int_equal(directory_user_quota_set(f->dir, "ann@quota.test", &q,
						  DIRECTORY_QUOTA_MESSAGES), MAIL_OK);
	/* another edit keeps it */
	assert_int_equal(directory_user_passwd(f->dir, "ann@quota.test", "pw-ann-2"), MAIL_OK);
	assert_int_equal(directory_quota_get(f->dir, "ann@quota.test", &u, &t), MAIL_OK);
	assert_int_equal(u.storage, 10240);
	assert_int_equal(u.messages, 7);
	assert_int_equal(t.storage, 0);
	assert_int_equal(t.messages, 0);
	struct directory_rcpt r;
	assert_int_equal(directory_rcpt_resolve(f->dir, "ann@quota.test", NULL, &r), MAIL_OK);
	assert_int_equal(r.routes[0].quota.storage, 10240);
	assert_int_equal(r.routes[0].quota.messages, 7);
	directory_rcpt_free(&r);
	/* the tenant's */
	struct directory_tenant_settings ts;
	memset(&ts, 0, sizeof ts);
	unsigned fields = 0;
	const char *error;
	assert_int_equal(directory_tenant_setting_parse("quota_storage=5G", &ts, &fields, &error), 0);
	assert_int_equal(directory_tenant_setting_parse("quota_messages=100", &ts, &fields, &error),
			 0);
	assert_int_equal(directory_tenant_setting_parse("tenant_outbound_per_hour=50", &ts, &fields,
							&error), 0);
	assert_int_equal(directory_tenant_setting_parse("quota_storage=12Q", &ts, &fields, &error),
			 -1);
	assert_int_equal(directory_tenant_settings_set(f->dir, "quota.test", &ts, fields), MAIL_OK);
	assert_int_equal(directory_quota_get(f->dir, "ann@quota.test", &u, &t), MAIL_OK);
	assert_int_equal(t.storage, 5ull << 30);
	assert_int_equal(t.messages, 100);
	struct directory_tenant_settings back;
	assert_int_equal(directory_tenant_settings_get(f->dir, "quota.test", &back), MAIL_OK);
	assert_int_equal(back.tenant_outbound_per_hour, 50);
	char *text = directory_tenant_settings_format(&back);
	assert_non_null(strstr(text, "quota_storage=5368709120\n"));
	free(text);
	/* 0 removes a limit */
	q = (struct directory_quota){ 0, 0 };
	assert_int_equal(directory_user_quota_set(f->dir, "ann@quota.test", &q,
						  DIRECTORY_QUOTA_STORAGE | DIRECTORY_QUOTA_MESSAGES),
			 MAIL_OK);
	assert_int_equal(directory_quota_get(f->dir, "ann@quota.test", &u, &t), MAIL_OK);
	assert_int_equal(u.storage, 0);
	assert_int_equal(u.messages, 0);
	assert_int_equal(directory_user_quota_set(f->dir, "nobody@quota.test", &q,
						  DIRECTORY_QUOTA_STORAGE), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_quota_get(f->dir, "nobody@quota.test", &u, &t),
			 MAIL_ERR_NOT_FOUND);
}

/* App passwords: generated, valid as a password, listed without their
 * secret, revoked at once; the account password still works; SCRAM keys
 * stay the account password's. */
static void test_app_passwords(void **state)
{
	fixture *f = *state;
	assert_int_equal(directory_tenant_add(f->dir, "app.test"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "cy@app.test", "account pw"), MAIL_OK);
	char pw[DIRECTORY_APP_PASSWORD_LEN + 1], pw2[DIRECTORY_APP_PASSWORD_LEN + 1];
	char id[5], id2[5];
	assert_int_equal(directory_app_password_add(f->dir, "cy@app.test", "phone", pw, id),
			 MAIL_OK);
	assert_int_equal(strlen(pw), DIRECTORY_APP_PASSWORD_LEN);
	assert_true(directory_app_password_shaped(pw));
	assert_int_equal(strncmp(pw, id, 4), 0);
	assert_false(directory_app_password_shaped("account pw"));
	assert_int_equal(directory_app_password_add(f->dir, "cy@app.test", "phone", pw2, id2),
			 MAIL_ERR_EXISTS);
	assert_int_equal(directory_app_password_add(f->dir, "cy@app.test", "", pw2, id2),
			 MAIL_ERR_PARAMS);
	assert_int_equal(directory_app_password_add(f->dir, "nobody@app.test", "x", pw2, id2),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_app_password_add(f->dir, "cy@app.test", "laptop", pw2, id2),
			 MAIL_OK);
	assert_string_not_equal(pw, pw2);

	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw2), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", "account pw"), MAIL_OK);
	char wrong[DIRECTORY_APP_PASSWORD_LEN + 1];
	memcpy(wrong, pw, sizeof wrong);
	wrong[DIRECTORY_APP_PASSWORD_LEN - 1] = wrong[DIRECTORY_APP_PASSWORD_LEN - 1] == 'a' ? 'b'
											      : 'a';
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", wrong), MAIL_ERR_PERM);
	/* another user's app password is not ours */
	assert_int_equal(directory_user_add(f->dir, "di@app.test", "di pw"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "di@app.test", pw), MAIL_ERR_PERM);
	/* the record never holds the password */
	char *rec = stored_value(f, "/mail/v1/users/app.test/cy");
	assert_null(strstr(rec, pw));
	assert_non_null(strstr(rec, "\"name\":\"phone\""));
	free(rec);

	struct directory_app_password *list;
	size_t n;
	assert_int_equal(directory_app_password_list(f->dir, "cy@app.test", &list, &n), MAIL_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].name, "phone");
	assert_string_equal(list[0].id, id);
	assert_true(list[0].created_ms > 0);
	free(list);

	/* revoked by name, then by id */
	assert_int_equal(directory_app_password_revoke(f->dir, "cy@app.test", "phone"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw), MAIL_ERR_PERM);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw2), MAIL_OK);
	assert_int_equal(directory_app_password_revoke(f->dir, "cy@app.test", id2), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw2), MAIL_ERR_PERM);
	assert_int_equal(directory_app_password_revoke(f->dir, "cy@app.test", id2),
			 MAIL_ERR_NOT_FOUND);
	/* a new password keeps the app passwords, a disabled user has none */
	assert_int_equal(directory_app_password_add(f->dir, "cy@app.test", "tablet", pw, id),
			 MAIL_OK);
	assert_int_equal(directory_user_passwd(f->dir, "cy@app.test", "new account pw"), MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw), MAIL_OK);
	assert_int_equal(directory_user_state_set(f->dir, "cy@app.test", DIRECTORY_USER_DISABLED),
			 MAIL_OK);
	assert_int_equal(directory_authenticate(f->dir, "cy@app.test", pw), MAIL_ERR_PERM);
	/* at most DIRECTORY_APP_PASSWORDS_MAX */
	assert_int_equal(directory_user_add(f->dir, "ed@app.test", "ed pw"), MAIL_OK);
	for (unsigned i = 0; i < DIRECTORY_APP_PASSWORDS_MAX; i++) {
		char name[16];
		snprintf(name, sizeof name, "d%u", i);
		assert_int_equal(directory_app_password_add(f->dir, "ed@app.test", name, pw, id),
				 MAIL_OK);
	}
	assert_int_equal(directory_app_password_add(f->dir, "ed@app.test", "one more", pw, id),
			 MAIL_ERR_LIMIT);
}

static void test_unreachable(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mailtest_free_port());
	directory *d = directory_create(&(etcd_conf){ .url = url });
	char **v;
	size_t n;
	assert_int_equal(directory_tenant_add(d, "a.test"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_tenant_list(d, &v, &n), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_tenant_exists(d, "a.test"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_user_add(d, "a@a.test", "pw"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_authenticate(d, "a@a.test", "pw"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_user_del(d, "a@a.test"), MAIL_ERR_UNAVAILABLE);
	struct sasl_scram_keys keys;
	assert_int_equal(directory_user_scram(d, "a@a.test", &keys), MAIL_ERR_UNAVAILABLE);
	directory_destroy(&d);
	assert_null(d);
}


/* KEY=VALUE settings: parse, store, read back, keep the others. */
static void test_tenant_policies(void **state)
{
	fixture *f = *state;
	directory_tenant_add(f->dir, "pol.test");
	struct directory_tenant_settings ts;
	assert_int_equal(directory_tenant_settings_get(f->dir, "pol.test", &ts), MAIL_OK);
	/* the defaults */
	assert_int_equal(ts.spf, DIRECTORY_SPF_RECORD);
	assert_int_equal(ts.dmarc, DIRECTORY_DMARC_RECORD);
	assert_int_equal(ts.greylisting, 0);
	assert_int_equal(ts.greylist_delay, DIRECTORY_GREYLIST_DELAY_DEFAULT);
	assert_string_equal(ts.dnsbl, "");
	assert_int_equal(ts.spam, 1);

	struct directory_tenant_settings set = { 0 };
	unsigned fields = 0;
	const char *why;
	const char *good[] = { "spf=reject", "dmarc=enforce", "greylisting=on",
			       "greylist_delay=2", "dnsbl=Zen.Example,bl.test", "spam=on",
			       "postmaster=Boss@Pol.test", "ptr=greylist" };
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_int_equal(directory_tenant_setting_parse(good[i], &set, &fields, &why), 0);
	const char *bad[] = { "spf=maybe", "greylist_delay=0", "greylist_delay=86401",
			      "dnsbl=a..b", "dnsbl=1.t,2.t,3.t,4.t,5.t,6.t,7.t,8.t,9.t",
			      "postmaster=nobody", "colour=blue", "spam" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(directory_tenant_setting_parse(bad[i], &set, &fields, &why), -1);
	assert_int_equal(directory_tenant_settings_set(f->dir, "pol.test", &set, fields), MAIL_OK);
	/* a later set of one field keeps the others */
	struct directory_tenant_settings one = { .outbound_per_hour = 7 };
	assert_int_equal(directory_tenant_settings_set(f->dir, "pol.test", &one,
						       DIRECTORY_TENANT_OUTBOUND_PER_HOUR),
			 MAIL_OK);
	assert_int_equal(directory_tenant_settings_get(f->dir, "pol.test", &ts), MAIL_OK);
	assert_int_equal(ts.spf, DIRECTORY_SPF_REJECT);
	assert_int_equal(ts.dmarc, DIRECTORY_DMARC_ENFORCE);
	assert_int_equal(ts.ptr, DIRECTORY_PTR_GREYLIST);
	assert_int_equal(ts.greylisting, 1);
	assert_int_equal(ts.greylist_delay, 2);
	assert_string_equal(ts.dnsbl, "zen.example,bl.test");
	assert_int_equal(ts.spam, 1);
	assert_string_equal(ts.postmaster, "boss@pol.test");
	assert_int_equal(ts.outbound_per_hour, 7);
	char *text = directory_tenant_settings_format(&ts);
	assert_non_null(strstr(text, "spf=reject\n"));
	assert_non_null(strstr(text, "greylist_delay=2\n"));
	free(text);
	/* a record written by hand with a bad value reads as the default */
	etcd_client *c = etcd_client_create(mailtest_etcd_conf(f->etcd));
	const char *rec = "{\"created\":1,\"spf\":\"bogus\",\"greylist_delay\":-3,\"dmarc\":\"enforce\"}";
	assert_int_equal(etcd_kv_put(c, "/mail/v1/tenants/pol.test", rec, strlen(rec), 0), MAIL_OK);
	etcd_client_destroy(&c);
	assert_int_equal(directory_tenant_settings_get(f->dir, "pol.test", &ts), MAIL_OK);
	assert_int_equal(ts.spf, DIRECTORY_SPF_RECORD);
	assert_int_equal(ts.greylist_delay, DIRECTORY_GREYLIST_DELAY_DEFAULT);
	assert_int_equal(ts.dmarc, DIRECTORY_DMARC_ENFORCE);
}

/* resolve address into r and return the routes as "addr[/folder][!]" joined
 * by spaces (! = external) */
static int resolved(fixture *f, const char *address, char *out, size_t size)
{
	struct directory_rcpt r;
	int err = directory_rcpt_resolve(f->dir, address, "al.test", &r);
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < r.n_routes; i++)
		o += (size_t)snprintf(out + o, size - o, "%s%s%s%s%s", i > 0 ? " " : "",
				      r.routes[i].address, r.routes[i].folder != NULL ? "/" : "",
				      r.routes[i].folder != NULL ? r.routes[i].folder : "",
				      r.routes[i].external ? "!" : "");
	directory_rcpt_free(&r);
	return err;
}

static void test_aliases(void **state)
{
	fixture *f = *state;
	char out[1024];
	directory_tenant_add(f->dir, "al.test");
	directory_tenant_add(f->dir, "other.test");
	assert_int_equal(directory_user_add(f->dir, "zed@al.test", "pw"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "amy@al.test", "pw"), MAIL_OK);
	assert_int_equal(directory_user_add(f->dir, "oli@other.test", "pw"), MAIL_OK);

	/* a user, case-insensitive domain; unknown user; not our domain */
	assert_int_equal(resolved(f, "zed@AL.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test");
	struct directory_rcpt r;
	assert_int_equal(directory_rcpt_resolve(f->dir, "nobody@al.test", NULL, &r),
			 MAIL_ERR_NOT_FOUND);
	assert_string_equal(r.tenant, "al.test");
	directory_rcpt_free(&r);
	assert_int_equal(directory_rcpt_resolve(f->dir, "x@elsewhere.test", NULL, &r),
			 MAIL_ERR_NOT_FOUND);
	assert_null(r.tenant);
	directory_rcpt_free(&r);

	/* an alias, a list with an outside member and a duplicate */
	const char *t1[] = { "zed@al.test" };
	assert_int_equal(directory_alias_add(f->dir, "Sales@al.test", t1, 1), MAIL_OK);
	assert_int_equal(resolved(f, "sales@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test");
	const char *t2[] = { "sales@al.test", "amy@al.test", "oli@other.test", "Far@Away.test",
			     "amy@al.test" };
	assert_int_equal(directory_alias_add(f->dir, "team@al.test", t2, 5), MAIL_OK);
	assert_int_equal(resolved(f, "team@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test amy@al.test oli@other.test far@away.test!");
	/* aliases on a domain that is no tenant, bad targets */
	assert_int_equal(directory_alias_add(f->dir, "x@away.test", t1, 1), MAIL_ERR_NOT_FOUND);
	const char *bad[] = { "not an address" };
	assert_int_equal(directory_alias_add(f->dir, "y@al.test", bad, 1), MAIL_ERR_PARAMS);

	/* subaddressing: user+tag to user, folder tag; alias+tag too */
	assert_int_equal(resolved(f, "zed+Lists@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test/Lists");
	assert_int_equal(resolved(f, "sales+q3@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test");
	assert_int_equal(resolved(f, "nobody+x@al.test", out, sizeof out), MAIL_ERR_NOT_FOUND);

	/* postmaster: the first user, then postmaster=, also without a domain */
	assert_int_equal(resolved(f, "postmaster@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "amy@al.test");
	struct directory_tenant_settings ts = { 0 };
	snprintf(ts.postmaster, sizeof ts.postmaster, "zed@al.test");
	assert_int_equal(directory_tenant_settings_set(f->dir, "al.test", &ts,
						       DIRECTORY_TENANT_POSTMASTER),
			 MAIL_OK);
	assert_int_equal(resolved(f, "Postmaster", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test");

	/* the catch-all */
	const char *t3[] = { "amy@al.test" };
	assert_int_equal(directory_alias_add(f->dir, "@al.test", t3, 1), MAIL_OK);
	assert_int_equal(resolved(f, "anything@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "amy@al.test");
	assert_int_equal(resolved(f, "zed@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test");

	/* a domain alias */
	assert_int_equal(directory_domain_alias_add(f->dir, "al.example", "al.test"), MAIL_OK);
	assert_int_equal(directory_domain_alias_add(f->dir, "al.example", "al.test"),
			 MAIL_ERR_EXISTS);
	assert_int_equal(directory_domain_alias_add(f->dir, "other.test", "al.test"),
			 MAIL_ERR_EXISTS);
	assert_int_equal(directory_domain_alias_add(f->dir, "x.example", "none.test"),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_rcpt_resolve(f->dir, "Zed@AL.example", NULL, &r), MAIL_OK);
	assert_string_equal(r.tenant, "al.test");
	assert_string_equal(r.routes[0].address, "zed@al.test");
	directory_rcpt_free(&r);
	char **lines;
	size_t n;
	assert_int_equal(directory_domain_alias_list(f->dir, &lines, &n), MAIL_OK);
	assert_int_equal(n, 1);
	assert_string_equal(lines[0], "al.example al.test");
	free_list(lines, n);

	/* a loop: a -> b -> a */
	const char *ta[] = { "loopb@al.test" }, *tb[] = { "loopa@al.test" };
	directory_alias_add(f->dir, "loopa@al.test", ta, 1);
	directory_alias_add(f->dir, "loopb@al.test", tb, 1);
	assert_int_equal(resolved(f, "loopa@al.test", out, sizeof out), MAIL_ERR_LIMIT);

	/* list, delete one target, delete the whole alias */
	struct directory_alias *a;
	assert_int_equal(directory_alias_list(f->dir, "al.test", &a, &n), MAIL_OK);
	assert_int_equal(n, 5);
	assert_string_equal(a[0].alias, "@al.test");
	assert_string_equal(a[1].alias, "loopa@al.test");
	directory_aliases_free(a, n);
	assert_int_equal(directory_alias_del(f->dir, "team@al.test", "nope@away.test"),
			 MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_alias_del(f->dir, "team@al.test", "Far@Away.test"), MAIL_OK);
	assert_int_equal(resolved(f, "team@al.test", out, sizeof out), MAIL_OK);
	assert_string_equal(out, "zed@al.test amy@al.test oli@other.test");
	assert_int_equal(directory_alias_del(f->dir, "sales@al.test", "zed@al.test"), MAIL_OK);
	assert_int_equal(directory_alias_del(f->dir, "sales@al.test", NULL), MAIL_ERR_NOT_FOUND);
	assert_int_equal(directory_alias_del(f->dir, "@al.test", NULL), MAIL_OK);
	assert_int_equal(resolved(f, "anything@al.test", out, sizeof out), MAIL_ERR_NOT_FOUND);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenants),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_scram),
		cmocka_unit_test(test_tenant_policies),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_app_passwords),
		cmocka_unit_test(test_quota),
		cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
