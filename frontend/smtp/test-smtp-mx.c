/* test-smtp-mx.c: the MX against a real etcd (tests/support): recipient
 * validation through the directory, the open-relay refusal, DATA with no
 * queue node alive (451 once the queue client's deadline passes, never
 * 250), and RCPT with etcd dead (451 4.3.0).
 *
 * Acceptance with a live queue node is covered by the end-to-end test
 * (tests/e2e_mail.py), which runs the whole cluster. */
#include "smtp-mx.h"

#include "etcd-fixture.h"
#include "mail-error.h"
#include "router.h"
#include "xalloc.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "test-smtp-client.h"

struct env {
	mailtest_etcd *etcd;
	directory *dir;
	router *router;
	uv_loop_t loop;
	uv_async_t stop_async;
	pthread_t thread;
	queue_client *qc;
	smtp_mx *mx;
	int port;
};

static void stop_async_cb(uv_async_t *a)
{
	struct env *env = a->data;
	smtp_mx_stop(&env->mx);
	queue_client_destroy(&env->qc);
	uv_close((uv_handle_t *)a, NULL);
}

static void *loop_thread(void *arg)
{
	struct env *env = arg;
	uv_run(&env->loop, UV_RUN_DEFAULT);
	return NULL;
}

static int setup(void **state)
{
	struct env *env = xcalloc(1, sizeof *env);
	assert_int_equal(mailtest_etcd_start(&env->etcd), 0);
	const etcd_conf *conf = mailtest_etcd_conf(env->etcd);
	env->dir = directory_create(conf);
	assert_non_null(env->dir);
	assert_int_equal(directory_tenant_add(env->dir, "tenant.test"), MAIL_OK);
	assert_int_equal(directory_user_add(env->dir, "bob@tenant.test", "pw-bob-1"), MAIL_OK);
	const char *err = NULL;
	assert_int_equal(router_create(conf, &env->router, &err), 0);
	assert_int_equal(uv_loop_init(&env->loop), 0);
	env->qc = queue_client_create(&env->loop, env->router);
	uv_async_init(&env->loop, &env->stop_async, stop_async_cb);
	env->stop_async.data = env;
	struct smtp_mx_settings set;
	smtp_mx_settings_init_default(&set);
	set.server.port = 0;
	set.server.hostname = "mx.tenant.test";
	assert_int_equal(smtp_mx_start(&env->loop, &set, env->dir, env->qc, &env->mx, &err), 0);
	env->port = smtp_mx_port(env->mx);
	assert_int_equal(pthread_create(&env->thread, NULL, loop_thread, env), 0);
	*state = env;
	return 0;
}

static int teardown(void **state)
{
	struct env *env = *state;
	uv_async_send(&env->stop_async);
	pthread_join(env->thread, NULL);
	uv_loop_close(&env->loop);
	router_destroy(&env->router);
	directory_destroy(&env->dir);
	mailtest_etcd_stop(&env->etcd);
	free(env);
	return 0;
}

static void test_rcpt_validation(void **state)
{
	struct env *env = *state;
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 mx.tenant.test ESMTP");
	client_sends(c, "EHLO client.test\r\nMAIL FROM:<>\r\n"
			"RCPT TO:<Bob@Tenant.TEST>\r\n"
			"RCPT TO:<alice@tenant.test>\r\n"
			"RCPT TO:<someone@elsewhere.test>\r\n"
			"RCPT TO:<\"quoted\"@tenant.test>\r\n"
			"RCPT TO:<postmaster>\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 2.1.0");
	expect_reply(c, "250 2.1.5");
	expect_reply(c, "550 5.1.1 No such user");
	expect_reply(c, "550 5.7.1 Relaying denied");
	expect_reply(c, "501 5.1.3");
	/* RFC 5321 4.5.1: <postmaster> without a domain is always taken */
	expect_reply(c, "250 2.1.5");
	/* No queue node is alive: the enqueue fails after its deadline and
	 * the client gets a temporary error, never a 250. */
	client_sends(c, "DATA\r\n");
	expect_reply(c, "354 ");
	client_sends(c, "Subject: t\r\n\r\nhello\r\n.\r\n");
	struct timeval tv = { .tv_sec = QUEUE_CLIENT_DEADLINE_MS / 1000 + 10 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	expect_reply(c, "451 4.");
	client_sends(c, "QUIT\r\n");
	expect_reply(c, "221 ");
	client_close(c);
}

static void test_etcd_down(void **state)
{
	struct env *env = *state;
	/* A client that hangs up with a lookup in flight must not hurt. */
	struct client *c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n"
			"RCPT TO:<bob@tenant.test>\r\n");
	client_close(c);

	mailtest_etcd_stop(&env->etcd);
	c = client_connect(env->port);
	expect_reply(c, "220 ");
	client_sends(c, "EHLO client.test\r\nMAIL FROM:<a@b.test>\r\n"
			"RCPT TO:<bob@tenant.test>\r\n");
	expect_reply(c, "250 ");
	expect_reply(c, "250 ");
	struct timeval tv = { .tv_sec = 30 };
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	expect_reply(c, "451 4.3.0");
	client_close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rcpt_validation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_etcd_down, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
