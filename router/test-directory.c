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
	f->dir = directory_create(mailtest_etcd_url(f->etcd));
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
	etcd_client *c = etcd_client_create(mailtest_etcd_url(f->etcd));
	char *val;
	size_t len;
	assert_int_equal(etcd_kv_get(c, "/mail/v1/users/a.test/alice", &val, &len, NULL, NULL),
			 MAIL_OK);
	assert_non_null(strstr(val, "\"hash\":\"$argon2id$"));
	assert_null(strstr(val, "s3cret"));
	free(val);
	etcd_client_destroy(&c);

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

static void test_unreachable(void **state)
{
	(void)state;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mailtest_free_port());
	directory *d = directory_create(url);
	char **v;
	size_t n;
	assert_int_equal(directory_tenant_add(d, "a.test"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_tenant_list(d, &v, &n), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_tenant_exists(d, "a.test"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_user_add(d, "a@a.test", "pw"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_authenticate(d, "a@a.test", "pw"), MAIL_ERR_UNAVAILABLE);
	assert_int_equal(directory_user_del(d, "a@a.test"), MAIL_ERR_UNAVAILABLE);
	directory_destroy(&d);
	assert_null(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tenants),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
