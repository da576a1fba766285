/* Unit tests for delivery.c on a real queue store (LevelDB in a temp dir),
 * the real scheduler and a scripted fake of store_client_deliver() (defined
 * here, in place of the store tier's library):
 *  - recipients are walked in order with delivery_id "<qid>/<index>", body
 *    and internal_date from the envelope;
 *  - recipient i is recorded done in the queue store BEFORE recipient i+1 is
 *    sent;
 *  - a permanent error marks the recipient done (bounce is a TODO), a
 *    temporary one is retried after the backoff, only for that recipient;
 *  - the message is deleted once every recipient is done;
 *  - recovery skips done recipients and drops fully done messages;
 *  - stopping with a delivery in flight keeps the message queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>
#include <unistd.h>

#include "delivery.h"
#include "mail-error.h"
#include "xalloc.h"

#define MAX_CALLS 32

/* ---- the fake store client ------------------------------------------------ */

struct fake_answer {
	uv_timer_t timer;
	store_client *client;
	store_client_cb *cb;
	void *arg;
	int status;
	uint32_t uid;
	size_t index;
};

struct store_client {
	uv_loop_t *loop;
	queue_store *qs;        /* to check the ordering promise */
	const char *qid;        /* message under test */
	int temp_failures_left; /* for "temp@..." recipients */
	int hold;               /* never answer (a call in flight at stop) */
	size_t n_calls;
	char users[MAX_CALLS][64];
	char delivery_ids[MAX_CALLS][96];
	size_t body_len[MAX_CALLS];
	int64_t internal_date[MAX_CALLS];
	struct fake_answer *held;
	int answered_done[16];  /* per index: an OK or permanent answer was given */
};

static void answer_close_cb(uv_handle_t *h)
{
	free(h->data);
}

static void answer_cb(uv_timer_t *t)
{
	struct fake_answer *a = t->data;
	Store__DeliverResponse resp = STORE__DELIVER_RESPONSE__INIT;
	resp.uid = a->uid;
	resp.uidvalidity = 7;
	/* delivered ones are recorded before the next recipient; failed ones
	 * with the attempt's outcome at its end */
	if (a->status == MAIL_OK)
		a->client->answered_done[a->index] = 1;
	a->cb(a->status, a->status == MAIL_OK ? &resp.base : NULL, a->arg);
	uv_close((uv_handle_t *)&a->timer, answer_close_cb);
}

void store_client_deliver(store_client *c, const Store__DeliverRequest *req,
			  store_client_cb *cb, void *arg)
{
	assert_true(c->n_calls < MAX_CALLS);
	size_t n = c->n_calls++;
	snprintf(c->users[n], sizeof c->users[n], "%s", req->user);
	snprintf(c->delivery_ids[n], sizeof c->delivery_ids[n], "%s", req->delivery_id);
	c->body_len[n] = req->body.len;
	c->internal_date[n] = req->internal_date;
	assert_string_equal(req->mailbox, "");
	/* Every earlier recipient of this message that got a final answer is
	 * recorded done durably before the next one is sent (ordering). */
	const char *slash = strrchr(req->delivery_id, '/');
	size_t index = (size_t)atoi(slash + 1);
	Queue__QueuedMessage *m = NULL;
	const char *error;
	assert_int_equal(queue_store_get(c->qs, c->qid, &m, &error), 1);
	assert_true(index < 16);
	for (size_t i = 0; i < index; i++)
		if (c->answered_done[i])
			assert_true(m->delivered[i]);
	assert_false(m->delivered[index]);
	queue_store_message_free(&m);

	struct fake_answer *a = xcalloc(1, sizeof *a);
	a->client = c;
	a->cb = cb;
	a->arg = arg;
	a->uid = (uint32_t)n + 1;
	a->index = index;
	if (strncmp(req->user, "perm@", 5) == 0)
		a->status = MAIL_ERR_NOT_FOUND;
	else if (strncmp(req->user, "temp@", 5) == 0 && c->temp_failures_left > 0) {
		c->temp_failures_left--;
		a->status = MAIL_ERR_UNAVAILABLE;
	} else
		a->status = MAIL_OK;
	uv_timer_init(c->loop, &a->timer);
	a->timer.data = a;
	if (c->hold) {
		c->held = a;
		return;
	}
	uv_timer_start(&a->timer, answer_cb, 1, 0);
}

/* ---- fixture -------------------------------------------------------------- */

struct fixture {
	char dir[64];
	uv_loop_t loop;
	queue_store *qs;
	struct store_client fake;
	queue_delivery *d;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/queue_delivery_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	const char *error;
	assert_int_equal(queue_store_open(f->dir, &f->qs, &error), 0);
	uv_loop_init(&f->loop);
	f->fake.loop = &f->loop;
	f->fake.qs = f->qs;
	struct queue_sched_settings set = { .retry_initial_ms = 10, .retry_max_ms = 40,
					    .max_inflight = 4 };
	f->d = queue_delivery_create(&f->loop, &set, f->qs, &f->fake, NULL, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_delivery_stop(f->d);
	if (f->fake.held != NULL) {
		/* what store_client_destroy() does: fail the pending call */
		struct fake_answer *a = f->fake.held;
		a->status = MAIL_ERR_UNAVAILABLE;
		answer_cb(&a->timer);
	}
	queue_delivery_destroy(&f->d);
	assert_null(f->d);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	queue_store_close(&f->qs);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static void put_message(struct fixture *f, const char *qid, char **rcpts, size_t n)
{
	Queue__EnqueueRequest env = QUEUE__ENQUEUE_REQUEST__INIT;
	Queue__QueuedMessage msg = QUEUE__QUEUED_MESSAGE__INIT;
	env.queue_id = (char *)qid;
	env.rcpt_to = rcpts;
	env.n_rcpt_to = n;
	env.body.data = (uint8_t *)"Subject: t\r\n\r\nbody\r\n";
	env.body.len = 20;
	env.received_at = 1700000000555;
	msg.envelope = &env;
	const char *error;
	assert_int_equal(queue_store_put(f->qs, &msg, &error), 0);
	f->fake.qid = qid;
}

static void guard_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

static void run_until_idle(struct fixture *f)
{
	uv_timer_t guard;
	uv_timer_init(&f->loop, &guard);
	uv_timer_start(&guard, guard_cb, 5000, 0);
	while (queue_delivery_pending(f->d) > 0 && uv_is_active((uv_handle_t *)&guard))
		uv_run(&f->loop, UV_RUN_ONCE);
	assert_int_equal(queue_delivery_pending(f->d), 0);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void assert_gone(struct fixture *f, const char *qid)
{
	Queue__QueuedMessage *m = NULL;
	const char *error;
	assert_int_equal(queue_store_get(f->qs, qid, &m, &error), 0);
}

/* ---- tests ---------------------------------------------------------------- */

struct found { int n; char body[8192]; char from[64]; char to[64]; };

static void dsn_load_cb(const Queue__QueuedMessage *m, void *arg)
{
	struct found *fd = arg;
	fd->n++;
	snprintf(fd->from, sizeof fd->from, "%s", m->envelope->mail_from);
	snprintf(fd->to, sizeof fd->to, "%s", m->envelope->rcpt_to[0]);
	size_t n = m->envelope->body.len < sizeof fd->body - 1 ? m->envelope->body.len
							       : sizeof fd->body - 1;
	memcpy(fd->body, m->envelope->body.data, n);
	fd->body[n] = '\0';
}

static void test_ok_perm_temp(void **state)
{
	struct fixture *f = *state;
	char *rcpts[] = { "ok@x.test", "perm@x.test", "temp@x.test", "ok2@x.test" };
	put_message(f, "MIX1", rcpts, 4);
	f->fake.temp_failures_left = 2;
	queue_delivery_enqueued(f->d, "MIX1");
	queue_delivery_enqueued(f->d, "MIX1"); /* idempotent */
	assert_int_equal(f->fake.n_calls, 0);  /* scheduled, not sent inline */
	run_until_idle(f);
	/* attempt 1: all four; attempts 2 and 3: only the deferred one */
	const char *want[] = { "MIX1/0", "MIX1/1", "MIX1/2", "MIX1/3", "MIX1/2", "MIX1/2" };
	assert_int_equal(f->fake.n_calls, 6);
	for (size_t i = 0; i < 6; i++)
		assert_string_equal(f->fake.delivery_ids[i], want[i]);
	assert_string_equal(f->fake.users[1], "perm@x.test");
	assert_int_equal(f->fake.body_len[0], 20);
	assert_int_equal(f->fake.internal_date[0], 1700000000555);
	assert_gone(f, "MIX1");
}

/* A recipient the store refuses for good: recorded FAILED at the end of the
 * attempt, with a DSN to the sender queued in the same write (null sender,
 * multipart/report, Status 5.1.1); a null sender gets none. */
static void test_perm_failure_dsn(void **state)
{
	struct fixture *f = *state;
	Queue__EnqueueRequest env = QUEUE__ENQUEUE_REQUEST__INIT;
	Queue__QueuedMessage msg = QUEUE__QUEUED_MESSAGE__INIT;
	char *rcpts[] = { "ok@x.test", "perm@x.test" };
	env.queue_id = "DSN1";
	env.mail_from = "sender@y.test";
	env.rcpt_to = rcpts;
	env.n_rcpt_to = 2;
	env.body.data = (uint8_t *)"Subject: t\r\n\r\nbody\r\n";
	env.body.len = 20;
	env.received_at = 1700000000555;
	msg.envelope = &env;
	const char *error;
	assert_int_equal(queue_store_put(f->qs, &msg, &error), 0);
	f->fake.qid = "DSN1";
	queue_delivery_enqueued(f->d, "DSN1");
	/* the DSN is scheduled too: its recipient is remote and nothing
	 * delivers remote mail here, so it stays queued (deferred) */
	uv_timer_t guard;
	uv_timer_init(&f->loop, &guard);
	uv_timer_start(&guard, guard_cb, 2000, 0);
	Queue__QueuedMessage *m = NULL;
	while (uv_is_active((uv_handle_t *)&guard) &&
	       queue_store_get(f->qs, "DSN1", &m, &error) == 1) {
		queue_store_message_free(&m);
		uv_run(&f->loop, UV_RUN_ONCE);
	}
	uv_close((uv_handle_t *)&guard, NULL);
	assert_gone(f, "DSN1");
	assert_int_equal(f->fake.n_calls, 2);
	/* the one message left is the DSN */
	struct found found = { 0 };
	assert_int_equal(queue_store_load_all(f->qs, dsn_load_cb, &found, &error), 1);
	assert_string_equal(found.from, "");
	assert_string_equal(found.to, "sender@y.test");
	assert_non_null(strstr(found.body, "multipart/report; report-type=delivery-status"));
	assert_non_null(strstr(found.body, "Final-Recipient: rfc822; perm@x.test"));
	assert_non_null(strstr(found.body, "Status: 5.1.1"));
	assert_non_null(strstr(found.body, "Action: failed"));
	assert_null(strstr(found.body, "Final-Recipient: rfc822; ok@x.test"));
}

static void test_recover_skips_done(void **state)
{
	struct fixture *f = *state;
	const char *error;
	char *rcpts[] = { "a@x.test", "b@x.test", "c@x.test" };
	put_message(f, "REC1", rcpts, 3);
	assert_int_equal(queue_store_mark_delivered(f->qs, "REC1", 0, &error), 0);
	assert_int_equal(queue_store_mark_delivered(f->qs, "REC1", 2, &error), 0);
	/* fully done but not deleted (crash before the delete): dropped */
	char *one[] = { "z@x.test" };
	put_message(f, "DONE1", one, 1);
	assert_int_equal(queue_store_mark_delivered(f->qs, "DONE1", 0, &error), 0);
	f->fake.qid = "REC1";
	assert_int_equal(queue_recover(f->d, &error), 1);
	assert_gone(f, "DONE1");
	run_until_idle(f);
	assert_int_equal(f->fake.n_calls, 1);
	assert_string_equal(f->fake.delivery_ids[0], "REC1/1");
	assert_gone(f, "REC1");
}

static void test_vanished_message(void **state)
{
	struct fixture *f = *state;
	queue_delivery_enqueued(f->d, "NOPE");
	run_until_idle(f);
	assert_int_equal(f->fake.n_calls, 0);
}

static void test_stop_keeps_message(void **state)
{
	struct fixture *f = *state;
	char *rcpts[] = { "a@x.test" };
	put_message(f, "HOLD1", rcpts, 1);
	f->fake.hold = 1;
	queue_delivery_enqueued(f->d, "HOLD1");
	for (int i = 0; i < 5 && f->fake.n_calls == 0; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_int_equal(f->fake.n_calls, 1);
	/* teardown stops with the call in flight; the message must survive */
	queue_delivery_stop(f->d);
	struct fake_answer *a = f->fake.held;
	f->fake.held = NULL;
	a->status = MAIL_OK; /* even an OK arriving after stop is not acted on */
	answer_cb(&a->timer);
	Queue__QueuedMessage *m = NULL;
	const char *error;
	assert_int_equal(queue_store_get(f->qs, "HOLD1", &m, &error), 1);
	assert_false(m->delivered[0]);
	queue_store_message_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ok_perm_temp, setup, teardown),
		cmocka_unit_test_setup_teardown(test_perm_failure_dsn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_recover_skips_done, setup, teardown),
		cmocka_unit_test_setup_teardown(test_vanished_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_keeps_message, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
