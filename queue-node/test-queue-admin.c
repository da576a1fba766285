/* Unit tests for queue-admin.c on a real queue store (LevelDB in a temp
 * dir) and a fake delivery side: which messages LIST returns (led
 * partitions only, the domain and state filters, the limit), what a
 * summary says (state, pending, domains, last error), SHOW's recipients
 * and its statuses, ACTION's targets, its bound on actions in flight, the
 * count it replies, and a bulk outliving its admin. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <ftw.h>

#include "mail-error.h"
#include "queue-admin.h"
#include "queue-store.h"
#include "util.h"

#define HOUR_MS (3600 * 1000)

/* ---- the fake delivery side ---------------------------------------------- */

struct fake_call {
	char qid[QUEUE_ID_MAX + 1];
	Queue__QueueAction action;
	queue_admin_done_cb *cb;
	void *arg;
};

struct fake {
	int sync;                 /* answer from inside action() */
	int status;               /* what action() answers */
	const char *running;      /* this queue id has an attempt running */
	struct fake_call calls[256];
	size_t n_calls, answered;
	unsigned inflight, max_inflight;
};

/* This node leads every queue id but those starting with 'X'. */
static int fake_leads(void *ctx, const char *queue_id)
{
	(void)ctx;
	return queue_id[0] != 'X';
}

static int fake_running(void *ctx, const char *queue_id)
{
	struct fake *f = ctx;
	return f->running != NULL && strcmp(f->running, queue_id) == 0;
}

static void fake_action(void *ctx, const char *queue_id, Queue__QueueAction action,
			queue_admin_done_cb *cb, void *arg)
{
	struct fake *f = ctx;
	assert_true(f->n_calls < 256);
	struct fake_call *c = &f->calls[f->n_calls++];
	snprintf(c->qid, sizeof c->qid, "%s", queue_id);
	c->action = action;
	c->cb = cb;
	c->arg = arg;
	if (++f->inflight > f->max_inflight)
		f->max_inflight = f->inflight;
	if (f->sync) {
		f->answered++;
		f->inflight--;
		cb(f->status, arg);
	}
}

/* Answer the oldest unanswered call with status. */
static void fake_answer(struct fake *f, int status)
{
	assert_true(f->answered < f->n_calls);
	struct fake_call *c = &f->calls[f->answered++];
	f->inflight--;
	c->cb(status, c->arg);
}

/* Two partitions: 0 (led) holds every queue id but those starting with
 * 'X', which are in 1 (not led). */
static uint32_t fake_partitions(void *ctx)
{
	(void)ctx;
	return 2;
}

static int fake_leads_partition(void *ctx, uint32_t p)
{
	(void)ctx;
	return p == 0;
}

static int fake_partition_of(void *ctx, const char *queue_id, uint32_t *p_r)
{
	(void)ctx;
	*p_r = queue_id[0] == 'X';
	return 0;
}

static const struct queue_admin_ops fake_ops = {
	fake_leads, fake_running, fake_action, fake_partitions, fake_leads_partition,
	fake_partition_of
};

/* ---- fixture --------------------------------------------------------------- */

struct fixture {
	char dir[64];
	queue_store *store;
	struct fake fake;
	queue_admin *admin;
	int64_t now;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Store a message: recipients rcpts (comma-separated, the remote ones
 * start with '!'), received at received_at. */
static void put(struct fixture *f, const char *qid, const char *rcpts, int64_t received_at)
{
	char *list = strdup(rcpts), *save = NULL;
	char *addrs[8];
	protobuf_c_boolean remote[8];
	size_t n = 0;
	for (char *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		remote[n] = t[0] == '!';
		addrs[n++] = t + (t[0] == '!');
	}
	Queue__EnqueueRequest env = QUEUE__ENQUEUE_REQUEST__INIT;
	env.queue_id = (char *)qid;
	env.mail_from = "sender@example.test";
	env.rcpt_to = addrs;
	env.n_rcpt_to = n;
	env.rcpt_remote = remote;
	env.n_rcpt_remote = n;
	env.body.data = (uint8_t *)"Subject: x\r\n\r\nhello\r\n";
	env.body.len = 21;
	env.received_at = received_at;
	env.auth_user = "sender@example.test";
	env.helo = "client.test";
	env.client_addr = "192.0.2.1";
	Queue__QueuedMessage msg = QUEUE__QUEUED_MESSAGE__INIT;
	msg.envelope = &env;
	msg.next_attempt_at = received_at;
	const char *error;
	assert_int_equal(queue_store_put(f->store, &msg, &error), 0);
	free(list);
}

/* Give qid a state: attempts, next attempt, held, and outcome (status, code,
 * enh, text, at) for recipient index. */
static void set_state(struct fixture *f, const char *qid, uint32_t attempts, int64_t next,
		      int held, uint32_t index, Queue__RcptStatus status, uint32_t code,
		      const char *enh, const char *text, int64_t at)
{
	Queue__RcptOutcome o = QUEUE__RCPT_OUTCOME__INIT;
	o.index = index;
	o.status = status;
	o.code = code;
	o.enh = (char *)enh;
	o.text = (char *)text;
	o.remote_mta = "mx.example.org";
	o.at = at;
	Queue__RcptOutcome *os[] = { &o };
	Queue__MessageState st = QUEUE__MESSAGE_STATE__INIT;
	st.attempts = attempts;
	st.next_attempt_at = next;
	st.held = held;
	st.rcpts = os;
	st.n_rcpts = 1;
	const char *error;
	assert_int_equal(queue_store_record(f->store, qid, &st, 0, NULL, &error), 0);
}

/* A: local recipients, never attempted (ACTIVE). B: remote, deferred for
 * an hour with a 451 (DEFERRED). C: held. Xnot: a partition we do not
 * lead. D: two domains, its example.org recipient done (delivered). */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	strcpy(f->dir, "/tmp/queue_admin_XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	const char *error;
	assert_int_equal(queue_store_open(f->dir, &f->store, &error), 0);
	f->now = util_now_wall_ms();
	put(f, "A", "u1@example.test,u2@example.test", f->now - 1000);
	put(f, "B", "!far@example.org,!other@Example.ORG,!x@slow.example", f->now - 2 * HOUR_MS);
	set_state(f, "B", 2, f->now + HOUR_MS, 0, 2, QUEUE__RCPT_STATUS__RCPT_DEFERRED, 451,
		  "4.4.1", "connection timed out", f->now - 60000);
	put(f, "C", "!held@example.org", f->now - 3 * HOUR_MS);
	set_state(f, "C", 1, f->now + HOUR_MS, 1, 0, QUEUE__RCPT_STATUS__RCPT_DEFERRED, 0,
		  "4.4.3", "no MX answered", f->now - 120000);
	put(f, "Xnot", "!a@example.org", f->now);
	put(f, "D", "!d@example.org,!e@elsewhere.example", f->now - 4 * HOUR_MS);
	set_state(f, "D", 1, f->now + HOUR_MS, 0, 0, QUEUE__RCPT_STATUS__RCPT_DELIVERED, 250,
		  "2.0.0", "ok", f->now - 1000);
	f->admin = queue_admin_create(f->store, &fake_ops, &f->fake, "queue-7");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_admin_destroy(&f->admin);
	assert_null(f->admin);
	queue_store_close(&f->store);
	nftw(f->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static Queue__QueueListResponse *list(struct fixture *f, const char *domain,
				      Queue__QueueFilter state, uint32_t limit)
{
	Queue__QueueListRequest req = QUEUE__QUEUE_LIST_REQUEST__INIT;
	req.domain = (char *)domain;
	req.state = state;
	req.limit = limit;
	Queue__QueueListResponse *resp;
	assert_int_equal(queue_admin_list(f->admin, &req, &resp), MAIL_OK);
	return resp;
}

/* The queue ids of resp, comma-separated, into buf. */
static const char *ids(const Queue__QueueListResponse *resp, char *buf, size_t size)
{
	buf[0] = '\0';
	for (size_t i = 0; i < resp->n_messages; i++)
		snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", i ? "," : "",
			 resp->messages[i]->queue_id);
	return buf;
}

static void list_free(Queue__QueueListResponse *resp)
{
	protobuf_c_message_free_unpacked(&resp->base, NULL);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_state_of(void **state)
{
	(void)state;
	Queue__QueuedMessage msg = QUEUE__QUEUED_MESSAGE__INIT;
	Queue__MessageState st = QUEUE__MESSAGE_STATE__INIT;
	msg.next_attempt_at = 1000;
	/* never attempted (no state), due */
	assert_int_equal(queue_admin_state_of(&msg, 0, 1000), QUEUE__QUEUE_FILTER__FILTER_ACTIVE);
	msg.state = &st;
	st.attempts = 1;
	st.next_attempt_at = 5000;
	assert_int_equal(queue_admin_state_of(&msg, 0, 1000),
			 QUEUE__QUEUE_FILTER__FILTER_DEFERRED);
	assert_int_equal(queue_admin_state_of(&msg, 1, 1000), QUEUE__QUEUE_FILTER__FILTER_ACTIVE);
	assert_int_equal(queue_admin_state_of(&msg, 0, 5000), QUEUE__QUEUE_FILTER__FILTER_ACTIVE);
	st.next_attempt_at = 0;   /* "as soon as possible" */
	assert_int_equal(queue_admin_state_of(&msg, 0, 1000), QUEUE__QUEUE_FILTER__FILTER_ACTIVE);
	st.held = 1;
	assert_int_equal(queue_admin_state_of(&msg, 1, 1000), QUEUE__QUEUE_FILTER__FILTER_HELD);
}

static void test_list_all(void **state)
{
	struct fixture *f = *state;
	char buf[256];
	Queue__QueueListResponse *resp = list(f, "", QUEUE__QUEUE_FILTER__FILTER_ALL, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "A,B,C,D");
	assert_false(resp->truncated);
	/* what it answered for: partition 0 of 2 (mailctl asks again while
	 * a partition is led by nobody) */
	assert_int_equal(resp->partitions, 2);
	assert_int_equal(resp->n_led, 1);
	assert_int_equal(resp->led[0], 0);
	const Queue__QueueSummary *a = resp->messages[0], *b = resp->messages[1];
	const Queue__QueueSummary *c = resp->messages[2], *d = resp->messages[3];
	assert_int_equal(a->state, QUEUE__QUEUE_FILTER__FILTER_ACTIVE);
	assert_int_equal(a->rcpts, 2);
	assert_int_equal(a->pending, 2);
	assert_int_equal(a->attempts, 0);
	assert_string_equal(a->last_error, "");
	assert_int_equal(a->n_domains, 1);
	assert_string_equal(a->domains[0], "example.test");
	assert_string_equal(a->node, "queue-7");
	assert_string_equal(a->mail_from, "sender@example.test");
	assert_int_equal(a->size, 21);
	assert_int_equal(a->received_at, f->now - 1000);

	assert_int_equal(b->state, QUEUE__QUEUE_FILTER__FILTER_DEFERRED);
	assert_int_equal(b->attempts, 2);
	assert_int_equal(b->next_attempt_at, f->now + HOUR_MS);
	assert_string_equal(b->last_error, "451 4.4.1 connection timed out");
	/* Example.ORG and example.org once, sorted */
	assert_int_equal(b->n_domains, 2);
	assert_string_equal(b->domains[0], "example.org");
	assert_string_equal(b->domains[1], "slow.example");

	assert_int_equal(c->state, QUEUE__QUEUE_FILTER__FILTER_HELD);
	assert_string_equal(c->last_error, "4.4.3 no MX answered");   /* no reply code */

	/* D's example.org recipient is delivered: not pending, not a domain */
	assert_int_equal(d->rcpts, 2);
	assert_int_equal(d->pending, 1);
	assert_int_equal(d->n_domains, 1);
	assert_string_equal(d->domains[0], "elsewhere.example");
	list_free(resp);

	/* a running attempt makes B active */
	f->fake.running = "B";
	resp = list(f, "", QUEUE__QUEUE_FILTER__FILTER_ACTIVE, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "A,B");
	list_free(resp);
}

static void test_list_filters(void **state)
{
	struct fixture *f = *state;
	char buf[256];
	Queue__QueueListResponse *resp = list(f, "example.org", QUEUE__QUEUE_FILTER__FILTER_ALL, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "B,C");   /* not D: delivered there */
	list_free(resp);
	resp = list(f, "EXAMPLE.org", QUEUE__QUEUE_FILTER__FILTER_DEFERRED, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "B");
	list_free(resp);
	resp = list(f, "", QUEUE__QUEUE_FILTER__FILTER_HELD, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "C");
	list_free(resp);
	resp = list(f, "", QUEUE__QUEUE_FILTER__FILTER_DEFERRED, 0);
	assert_string_equal(ids(resp, buf, sizeof buf), "B,D");
	list_free(resp);
	resp = list(f, "nowhere.example", QUEUE__QUEUE_FILTER__FILTER_ALL, 0);
	assert_int_equal(resp->n_messages, 0);
	list_free(resp);
	resp = list(f, "", QUEUE__QUEUE_FILTER__FILTER_ALL, 3);
	assert_string_equal(ids(resp, buf, sizeof buf), "A,B,C");
	assert_true(resp->truncated);
	list_free(resp);
}

static void test_show(void **state)
{
	struct fixture *f = *state;
	Queue__QueueShowResponse *resp;
	assert_int_equal(queue_admin_show(f->admin, "B", &resp), MAIL_OK);
	assert_string_equal(resp->summary->queue_id, "B");
	assert_int_equal(resp->summary->state, QUEUE__QUEUE_FILTER__FILTER_DEFERRED);
	assert_string_equal(resp->auth_user, "sender@example.test");
	assert_string_equal(resp->helo, "client.test");
	assert_string_equal(resp->client_addr, "192.0.2.1");
	assert_int_equal(resp->n_rcpts, 3);
	assert_string_equal(resp->rcpts[0]->addr, "far@example.org");
	assert_true(resp->rcpts[0]->remote);
	assert_false(resp->rcpts[0]->done);
	assert_int_equal(resp->rcpts[0]->outcome->status, QUEUE__RCPT_STATUS__RCPT_PENDING);
	assert_int_equal(resp->rcpts[0]->outcome->index, 0);
	const Queue__RcptOutcome *o = resp->rcpts[2]->outcome;
	assert_int_equal(o->index, 2);
	assert_int_equal(o->status, QUEUE__RCPT_STATUS__RCPT_DEFERRED);
	assert_int_equal(o->code, 451);
	assert_string_equal(o->enh, "4.4.1");
	assert_string_equal(o->text, "connection timed out");
	assert_string_equal(o->remote_mta, "mx.example.org");
	protobuf_c_message_free_unpacked(&resp->base, NULL);

	assert_int_equal(queue_admin_show(f->admin, "D", &resp), MAIL_OK);
	assert_true(resp->rcpts[0]->done);
	assert_int_equal(resp->rcpts[0]->outcome->status, QUEUE__RCPT_STATUS__RCPT_DELIVERED);
	assert_false(resp->rcpts[1]->done);
	protobuf_c_message_free_unpacked(&resp->base, NULL);

	assert_int_equal(queue_admin_show(f->admin, "Xnot", &resp), MAIL_ERR_NOT_PRIMARY);
	assert_null(resp);
	assert_int_equal(queue_admin_show(f->admin, "nosuch", &resp), MAIL_ERR_NOT_FOUND);
	/* not found, but only the leader may say so */
	assert_int_equal(queue_admin_show(f->admin, "Xnosuch", &resp), MAIL_ERR_NOT_PRIMARY);
	assert_int_equal(queue_admin_show(f->admin, "bad-id", &resp), MAIL_ERR_PARAMS);
	assert_int_equal(queue_admin_show(f->admin, "", &resp), MAIL_ERR_PARAMS);
}

struct result {
	int called;
	int status;
	uint32_t affected;
};

static void result_cb(int status, uint32_t affected, void *arg)
{
	struct result *r = arg;
	r->called++;
	r->status = status;
	r->affected = affected;
}

static void action(struct fixture *f, Queue__QueueAction act, const char *qid, int all,
		   const char *domain, struct result *r)
{
	Queue__QueueActionRequest req = QUEUE__QUEUE_ACTION_REQUEST__INIT;
	req.action = act;
	req.queue_id = (char *)qid;
	req.all = all;
	req.domain = (char *)domain;
	memset(r, 0, sizeof *r);
	queue_admin_action(f->admin, &req, result_cb, r);
}

static void test_action_single(void **state)
{
	struct fixture *f = *state;
	struct result r;
	action(f, QUEUE__QUEUE_ACTION__ACTION_HOLD, "B", 0, "", &r);
	assert_int_equal(r.called, 0);             /* the delivery answers later */
	assert_int_equal(f->fake.n_calls, 1);
	assert_string_equal(f->fake.calls[0].qid, "B");
	assert_int_equal(f->fake.calls[0].action, QUEUE__QUEUE_ACTION__ACTION_HOLD);
	fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.affected, 1);

	/* the delivery's status is the answer for one message */
	action(f, QUEUE__QUEUE_ACTION__ACTION_DELETE, "nosuch", 0, "", &r);
	fake_answer(&f->fake, MAIL_ERR_NOT_FOUND);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
	assert_int_equal(r.affected, 0);
}

static void test_action_params(void **state)
{
	struct fixture *f = *state;
	struct result r;
	action(f, QUEUE__QUEUE_ACTION__ACTION_NONE, "B", 0, "", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 0, "", &r);      /* no target */
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "B", 1, "", &r);     /* two */
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 1, "example.org", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "a/b", 0, "", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 0, "not a domain", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	action(f, (Queue__QueueAction)99, "B", 0, "", &r);
	assert_int_equal(r.status, MAIL_ERR_PARAMS);
	assert_int_equal(r.called, 1);
	assert_int_equal(f->fake.n_calls, 0);
}

static void test_action_bulk(void **state)
{
	struct fixture *f = *state;
	struct result r;
	/* domain: B and C (pending there), not D (delivered there) nor Xnot */
	f->fake.sync = 1;
	f->fake.status = MAIL_OK;
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 0, "Example.org", &r);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.affected, 2);
	assert_int_equal(f->fake.n_calls, 2);
	assert_string_equal(f->fake.calls[0].qid, "B");
	assert_string_equal(f->fake.calls[1].qid, "C");

	/* all: the four led messages; one gone meanwhile is skipped */
	f->fake.sync = 0;
	f->fake.n_calls = f->fake.answered = 0;
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 1, "", &r);
	assert_int_equal(f->fake.n_calls, 4);
	fake_answer(&f->fake, MAIL_OK);
	fake_answer(&f->fake, MAIL_ERR_NOT_FOUND);
	fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(r.called, 0);
	fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.affected, 3);

	/* nothing recorded, an error: that error */
	f->fake.sync = 1;
	f->fake.status = MAIL_ERR_TEMP;
	action(f, QUEUE__QUEUE_ACTION__ACTION_HOLD, "", 0, "slow.example", &r);
	assert_int_equal(r.status, MAIL_ERR_TEMP);
	assert_int_equal(r.affected, 0);

	/* an empty selection answers at once */
	action(f, QUEUE__QUEUE_ACTION__ACTION_HOLD, "", 0, "nowhere.example", &r);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.affected, 0);

	/* a second pass over the partitions nobody led: only theirs */
	Queue__QueueActionRequest req = QUEUE__QUEUE_ACTION_REQUEST__INIT;
	uint32_t only[1] = { 1 };
	req.action = QUEUE__QUEUE_ACTION__ACTION_RETRY;
	req.queue_id = "";
	req.domain = "";
	req.all = 1;
	req.partitions = only;
	req.n_partitions = 1;
	f->fake.status = MAIL_OK;
	f->fake.n_calls = f->fake.answered = 0;
	memset(&r, 0, sizeof r);
	queue_admin_action(f->admin, &req, result_cb, &r);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.affected, 0);          /* Xnot's partition is not led */
	assert_int_equal(f->fake.n_calls, 0);
	only[0] = 0;
	memset(&r, 0, sizeof r);
	queue_admin_action(f->admin, &req, result_cb, &r);
	assert_int_equal(r.affected, 4);
	assert_int_equal(f->fake.n_calls, 4);
}

/* Many messages: never more than QUEUE_ADMIN_ACTION_INFLIGHT at once. */
static void test_action_bound(void **state)
{
	struct fixture *f = *state;
	char qid[16];
	for (int i = 0; i < 40; i++) {
		snprintf(qid, sizeof qid, "M%02d", i);
		put(f, qid, "!m@many.example", f->now);
	}
	struct result r;
	action(f, QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE, "", 0, "many.example", &r);
	assert_int_equal(f->fake.n_calls, QUEUE_ADMIN_ACTION_INFLIGHT);
	while (f->fake.answered < f->fake.n_calls)
		fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(f->fake.n_calls, 40);
	assert_int_equal(f->fake.max_inflight, QUEUE_ADMIN_ACTION_INFLIGHT);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.affected, 40);
	assert_int_equal(f->fake.calls[39].action, QUEUE__QUEUE_ACTION__ACTION_DELETE_BOUNCE);

	/* the admin goes away with a bulk in flight: no more actions start,
	 * the answer comes once those in flight are back */
	f->fake.n_calls = f->fake.answered = 0;
	f->fake.max_inflight = 0;
	action(f, QUEUE__QUEUE_ACTION__ACTION_RETRY, "", 0, "many.example", &r);
	assert_int_equal(f->fake.n_calls, QUEUE_ADMIN_ACTION_INFLIGHT);
	fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(f->fake.n_calls, QUEUE_ADMIN_ACTION_INFLIGHT + 1);
	queue_admin_destroy(&f->admin);
	while (f->fake.answered < f->fake.n_calls)
		fake_answer(&f->fake, MAIL_OK);
	assert_int_equal(f->fake.n_calls, QUEUE_ADMIN_ACTION_INFLIGHT + 1);
	assert_int_equal(r.called, 1);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.affected, QUEUE_ADMIN_ACTION_INFLIGHT + 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_of),
		cmocka_unit_test_setup_teardown(test_list_all, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_show, setup, teardown),
		cmocka_unit_test_setup_teardown(test_action_single, setup, teardown),
		cmocka_unit_test_setup_teardown(test_action_params, setup, teardown),
		cmocka_unit_test_setup_teardown(test_action_bulk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_action_bound, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
