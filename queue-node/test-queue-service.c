/* Unit tests for the ENQUEUE validation of queue-service.c: each bad request
 * gets the error a frontend maps to the right SMTP reply; settings ranges;
 * queue ids from queue_client_new_id() are valid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mail-error.h"
#include "queue-client.h"
#include "queue-dsn.h"
#include "queue-service.h"

static char *rcpts[] = { "alice@example.test", "bob@example.test" };

static void request_init(Queue__EnqueueRequest *req)
{
	queue__enqueue_request__init(req);
	req->queue_id = "0123456789abcdefABCDEF01";
	req->mail_from = "";
	req->rcpt_to = rcpts;
	req->n_rcpt_to = 2;
	req->body.data = (uint8_t *)"Subject: x\r\n\r\nhi\r\n";
	req->body.len = 19;
}

static void test_valid(void **state)
{
	(void)state;
	struct queue_service_settings set;
	queue_service_settings_default(&set);
	Queue__EnqueueRequest req;
	request_init(&req);
	const char *why;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_OK);
}

static void test_bad_queue_id(void **state)
{
	(void)state;
	struct queue_service_settings set;
	queue_service_settings_default(&set);
	Queue__EnqueueRequest req;
	request_init(&req);
	const char *why;
	char longid[70];
	memset(longid, 'a', 65);
	longid[65] = '\0';
	const char *bad[] = { "", "a-b", "../x", "id\n", longid };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		req.queue_id = (char *)bad[i];
		assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
		assert_string_equal(why, "bad queue id");
	}
}

static void test_recipients(void **state)
{
	(void)state;
	struct queue_service_settings set;
	queue_service_settings_default(&set);
	Queue__EnqueueRequest req;
	request_init(&req);
	const char *why;
	req.n_rcpt_to = 0;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	char *badr[] = { "alice@example.test", "no-at-sign" };
	req.rcpt_to = badr;
	req.n_rcpt_to = 2;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	/* more than max_rcpts */
	size_t n = set.max_rcpts + 1;
	char **many = calloc(n, sizeof *many);
	for (size_t i = 0; i < n; i++)
		many[i] = "x@example.test";
	req.rcpt_to = many;
	req.n_rcpt_to = n;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_LIMIT);
	req.n_rcpt_to = n - 1;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_OK);
	free(many);
}

static void test_body_limit(void **state)
{
	(void)state;
	struct queue_service_settings set;
	queue_service_settings_default(&set);
	set.max_body = 10;
	Queue__EnqueueRequest req;
	request_init(&req);
	const char *why;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_TOO_BIG);
	req.body.len = 10;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_OK);
}

static void test_settings_and_ids(void **state)
{
	(void)state;
	struct queue_service_settings set;
	const char *error;
	queue_service_settings_default(&set);
	assert_int_equal(queue_service_settings_check(&set, &error), 0);
	set.max_body = 65u * 1024u * 1024u;
	assert_int_equal(queue_service_settings_check(&set, &error), -1);
	queue_service_settings_default(&set);
	set.max_rcpts = 0;
	assert_int_equal(queue_service_settings_check(&set, &error), -1);
	char a[25], b[25];
	queue_client_new_id(a);
	queue_client_new_id(b);
	assert_int_equal(strlen(a), 24);
	assert_true(queue_store_id_valid(a));
	assert_string_not_equal(a, b);
}

/* A resend of the same message in the same window gets the same queue id;
 * anything else that differs gives another one. */
/* DSN fields (queue-dsn.h): accepted as the SMTP engine gives them,
 * refused (MAIL_ERR_PARAMS) when no SMTP client could have sent them;
 * their log fields. */
static void test_dsn_fields(void **state)
{
	(void)state;
	struct queue_service_settings set;
	queue_service_settings_default(&set);
	Queue__EnqueueRequest req;
	request_init(&req);
	const char *why;
	char log[320];
	assert_string_equal(queue_dsn_log_fields(&req, log, sizeof log), "");
	uint32_t notify[2] = { DSN_NOTIFY_SUCCESS | DSN_NOTIFY_FAILURE, 0 };
	Queue__Orcpt o[2], *op[2] = { &o[0], &o[1] };
	queue__orcpt__init(&o[0]);
	queue__orcpt__init(&o[1]);
	o[1].addr_type = "rfc822";
	o[1].addr = "Bob@Example.TEST";
	req.ret = QUEUE__DSN_RET__RET_FULL;
	req.envid = "env id";
	req.notify = notify;
	req.n_notify = 2;
	req.orcpt = op;
	req.n_orcpt = 2;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_OK);
	assert_string_equal(queue_dsn_log_fields(&req, log, sizeof log),
			    " ret=full envid=\"env id\" notify=1 orcpt=1");
	assert_string_equal(queue_dsn_log_fields(&req, log, 12), " ret=full e");
	req.n_notify = 1;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	assert_string_equal(why, "DSN NOTIFY not one per recipient");
	req.n_notify = 2;
	notify[1] = DSN_NOTIFY_NEVER | DSN_NOTIFY_DELAY;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	assert_string_equal(why, "bad DSN NOTIFY");
	notify[1] = DSN_NOTIFY_NEVER;
	char envid[DSN_ENVID_MAX + 2];
	memset(envid, 'e', sizeof envid - 1);
	envid[sizeof envid - 1] = '\0';
	req.envid = envid;
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	assert_string_equal(why, "bad DSN ENVID");
	envid[DSN_ENVID_MAX] = '\0';
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_OK);
	o[0].addr = "x@y.test"; /* no addr_type */
	assert_int_equal(queue_service_validate(&set, &req, &why), MAIL_ERR_PARAMS);
	assert_string_equal(why, "bad DSN ORCPT");
}

static void test_content_id(void **state)
{
	(void)state;
	char *rcpts[] = { "a@x.test", "b@x.test" };
	char *swapped[] = { "b@x.test", "a@x.test" };
	static const uint8_t body[] = "Subject: s\r\n\r\nbody\r\n";
	const int64_t t = 1700000000000;
	char id[25], again[25], other[25];
	queue_client_content_id(id, "s@y.test", rcpts, 2, body, sizeof body - 1, t);
	assert_int_equal(strlen(id), 24);
	assert_int_equal(strspn(id, "0123456789abcdef"), 24);
	queue_client_content_id(again, "s@y.test", rcpts, 2, body, sizeof body - 1, t + 1000);
	assert_string_equal(id, again);
	queue_client_content_id(other, "s@y.test", rcpts, 2, body, sizeof body - 2, t);
	assert_string_not_equal(id, other);
	queue_client_content_id(other, "", rcpts, 2, body, sizeof body - 1, t);
	assert_string_not_equal(id, other);
	queue_client_content_id(other, "s@y.test", rcpts, 1, body, sizeof body - 1, t);
	assert_string_not_equal(id, other);
	queue_client_content_id(other, "s@y.test", swapped, 2, body, sizeof body - 1, t);
	assert_string_not_equal(id, other);
	queue_client_content_id(other, "s@y.test", rcpts, 2, body, sizeof body - 1,
				t + QUEUE_CLIENT_RESEND_WINDOW_MS);
	assert_string_not_equal(id, other);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_bad_queue_id),
		cmocka_unit_test(test_recipients),
		cmocka_unit_test(test_body_limit),
		cmocka_unit_test(test_settings_and_ids),
		cmocka_unit_test(test_content_id),
		cmocka_unit_test(test_dsn_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
