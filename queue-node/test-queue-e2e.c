/* test-queue-e2e.c: the queue tier end to end, with real processes: a real
 * etcd (tests/support), the store-node and queue-node binaries (from
 * MAIL_BIN_DIR) as children, queue_client and store_client on this test's
 * uv loop.
 *
 *  - an enqueued message arrives in the recipient's INBOX byte for byte;
 *  - the same queue id enqueued twice (one after the other, and twice at
 *    once) is delivered once;
 *  - with the store node down an enqueue is still acknowledged (the queue is
 *    durable); the queue node is then SIGKILLed, the store node started, the
 *    queue node restarted on the same data dir: the message arrives exactly
 *    once to each of its recipients;
 *  - a delivery the store already has ("<qid>/0") is answered as a
 *    duplicate: one copy (the duplicate window is closed by idempotency);
 *  - with the store down past the store client's deadline the queue defers,
 *    retries with backoff and delivers once the store is back;
 *  - a bad request gets its error at once, not after the retry deadline;
 *  - SIGTERM stops the queue node with exit status 0; with no queue node
 *    the client gives up at its deadline with a temporary error.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "etcd-fixture.h"
#include "mail-error.h"
#include "queue-client.h"
#include "store-client.h"
#include "util.h"
#include "xalloc.h"

#define WAIT_MS 30000u

struct node {
	const char *role;  /* "store" / "queue" */
	char *data;
	char *log;
	pid_t pid;
};

struct fixture {
	mailtest_etcd *etcd;
	char *dir;
	struct node store, queue;
	uv_loop_t loop;
	router *router;
	queue_client *qc;
	store_client *sc;
};

/* ---- child processes --------------------------------------------------- */

static int log_has(const char *path, const char *needle, int min_count)
{
	FILE *in = fopen(path, "r");
	char line[4096];
	int n = 0;
	while (in != NULL && fgets(line, sizeof line, in) != NULL)
		n += strstr(line, needle) != NULL;
	if (in != NULL)
		fclose(in);
	return n >= min_count;
}

/* Start <role>-node with stderr appended to its log; wait for one more
 * "event=ready" line than the log had before. */
static void node_start(struct fixture *f, struct node *n)
{
	const char *bin = getenv("MAIL_BIN_DIR");
	char *exe = xasprintf("%s/%s-node", bin != NULL ? bin : "bin", n->role);
	char *id = xasprintf("%s-1", n->role);
	int readies = 0;
	while (log_has(n->log, "event=ready", readies + 1))
		readies++;
	int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 2);
		close(fd);
		execl(exe, exe, "--id", id, "--listen", "127.0.0.1:0", "--data", n->data,
		      "--etcd", mailtest_etcd_url(f->etcd), "--partitions", "8", "--lease-ttl",
		      "2", (char *)NULL);
		_exit(127);
	}
	close(fd);
	free(exe);
	free(id);
	n->pid = pid;
	uint64_t end = util_now_mono_ms() + 15000;
	while (!log_has(n->log, "event=ready", readies + 1)) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			n->pid = 0;
			fail_msg("%s-node exited before ready (see %s)", n->role, n->log);
		}
		if (util_now_mono_ms() > end)
			fail_msg("%s-node not ready in 15 s (see %s)", n->role, n->log);
		mailtest_sleep_ms(50);
	}
}

/* Send sig, reap; returns the wait status. */
static int node_stop(struct node *n, int sig)
{
	int status = 0;
	if (n->pid <= 0)
		return 0;
	kill(n->pid, sig);
	assert_int_equal(waitpid(n->pid, &status, 0), n->pid);
	n->pid = 0;
	return status;
}

/* ---- waiting on the loop ------------------------------------------------ */

static void guard_cb(uv_timer_t *t)
{
	(void)t;
}

/* Run the loop until *done, failing after timeout_ms. */
static void run_until(struct fixture *f, const int *done, unsigned timeout_ms)
{
	uv_timer_t guard;
	uv_timer_init(&f->loop, &guard);
	uv_timer_start(&guard, guard_cb, 100, 100); /* keeps UV_RUN_ONCE returning */
	uint64_t end = util_now_mono_ms() + timeout_ms;
	while (!*done && util_now_mono_ms() < end)
		uv_run(&f->loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(&f->loop, UV_RUN_NOWAIT);
	if (!*done)
		fail_msg("no answer within %u ms", timeout_ms);
}

struct enq_result {
	int done;
	int status;
	char qid[80];
};

static void enq_cb(int status, const char *queue_id, void *arg)
{
	struct enq_result *r = arg;
	r->done = 1;
	r->status = status;
	snprintf(r->qid, sizeof r->qid, "%s", queue_id);
}

static void request_init(Queue__EnqueueRequest *req, const char *qid, char **rcpts, size_t n,
			 const char *body)
{
	queue__enqueue_request__init(req);
	req->queue_id = (char *)qid;
	req->mail_from = "sender@remote.test";
	req->rcpt_to = rcpts;
	req->n_rcpt_to = n;
	req->body.data = (uint8_t *)body;
	req->body.len = strlen(body);
	req->helo = "client.remote.test";
	req->client_addr = "127.0.0.1";
	req->received_at = 1700000000000;
	req->session_id = "e2e";
}

static int enqueue(struct fixture *f, const Queue__EnqueueRequest *req)
{
	struct enq_result r = { 0 };
	queue_client_enqueue(f->qc, req, enq_cb, &r);
	run_until(f, &r.done, QUEUE_CLIENT_DEADLINE_MS + 5000);
	assert_string_equal(r.qid, req->queue_id);
	return r.status;
}

/* What select and fetch answered, copied out of the callback. */
struct mbox_result {
	int done;
	int status;
	size_t n_uids;
	uint32_t uids[16];
	uint8_t *body;
	size_t body_len;
};

static void select_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct mbox_result *r = arg;
	r->done = 1;
	r->status = status;
	r->n_uids = 0;
	if (status != MAIL_OK)
		return;
	const Store__SelectResponse *s = (const Store__SelectResponse *)resp;
	for (size_t i = 0; i < s->n_messages && i < 16; i++)
		r->uids[r->n_uids++] = s->messages[i]->uid;
	if (s->n_messages > 16)
		r->n_uids = s->n_messages;
}

static void fetch_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct mbox_result *r = arg;
	r->done = 1;
	r->status = status;
	if (status != MAIL_OK)
		return;
	const Store__FetchResponse *fr = (const Store__FetchResponse *)resp;
	r->body = xmalloc(fr->body.len + 1);
	memcpy(r->body, fr->body.data, fr->body.len);
	r->body_len = fr->body.len;
}

/* Messages in user's INBOX (0 while the mailbox does not exist yet). */
static size_t inbox_count(struct fixture *f, const char *user, struct mbox_result *r)
{
	Store__SelectRequest req = STORE__SELECT_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = "";
	memset(r, 0, sizeof *r);
	store_client_select(f->sc, &req, select_cb, r);
	run_until(f, &r->done, WAIT_MS);
	return r->status == MAIL_OK ? r->n_uids : 0;
}

/* Wait until user's INBOX holds want messages, then a little longer to see
 * that no duplicate follows; assert exactly want. */
static void wait_inbox(struct fixture *f, const char *user, size_t want, struct mbox_result *r)
{
	uint64_t end = util_now_mono_ms() + WAIT_MS;
	while (inbox_count(f, user, r) < want) {
		if (util_now_mono_ms() > end)
			fail_msg("%s: %zu messages, want %zu", user, r->n_uids, want);
		mailtest_sleep_ms(100);
	}
	mailtest_sleep_ms(1500);
	assert_int_equal(inbox_count(f, user, r), want);
}

static void assert_body(struct fixture *f, const char *user, uint32_t uid, const char *want)
{
	Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
	req.user = (char *)user;
	req.mailbox = "";
	req.uid = uid;
	struct mbox_result r = { 0 };
	store_client_fetch(f->sc, &req, fetch_cb, &r);
	run_until(f, &r.done, WAIT_MS);
	assert_int_equal(r.status, MAIL_OK);
	assert_int_equal(r.body_len, strlen(want));
	assert_memory_equal(r.body, want, r.body_len);
	free(r.body);
}

/* ---- fixture -------------------------------------------------------------- */

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	assert_int_equal(mailtest_etcd_start(&f->etcd), 0);
	f->dir = mailtest_tmpdir("queue-e2e");
	assert_non_null(f->dir);
	f->store.role = "store";
	f->store.data = xasprintf("%s/store-data", f->dir);
	f->store.log = xasprintf("%s/store.log", f->dir);
	f->queue.role = "queue";
	f->queue.data = xasprintf("%s/queue-data", f->dir);
	f->queue.log = xasprintf("%s/queue.log", f->dir);
	node_start(f, &f->store);
	node_start(f, &f->queue);
	uv_loop_init(&f->loop);
	const char *error = NULL;
	assert_int_equal(router_create(mailtest_etcd_conf(f->etcd), &f->router, &error), 0);
	f->qc = queue_client_create(&f->loop, f->router);
	f->sc = store_client_create(&f->loop, f->router);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	queue_client_destroy(&f->qc);
	store_client_destroy(&f->sc);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_loop_close(&f->loop);
	router_destroy(&f->router);
	node_stop(&f->queue, SIGKILL);
	node_stop(&f->store, SIGKILL);
	mailtest_etcd_stop(&f->etcd);
	if (getenv("QUEUE_E2E_KEEP") == NULL)
		mailtest_rmrf(f->dir);
	else
		fprintf(stderr, "kept %s\n", f->dir);
	free(f->store.data);
	free(f->store.log);
	free(f->queue.data);
	free(f->queue.log);
	free(f->dir);
	free(f);
	return 0;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_enqueue_delivers(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "From: sender@remote.test\r\nTo: alice@example.com\r\n"
				   "Subject: e2e one\r\n\r\nHello Alice.\r\n..dot\r\n";
	char qid[25];
	queue_client_new_id(qid);
	char *rcpts[] = { "alice@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, qid, rcpts, 1, body);
	assert_int_equal(enqueue(f, &req), MAIL_OK);
	struct mbox_result r;
	wait_inbox(f, "alice@example.com", 1, &r);
	assert_body(f, "alice@example.com", r.uids[0], body);
	char line[128];
	snprintf(line, sizeof line, "event=removed qid=%s", qid);
	uint64_t end = util_now_mono_ms() + 5000;
	while (!log_has(f->queue.log, line, 1) && util_now_mono_ms() < end)
		mailtest_sleep_ms(50);
	assert_true(log_has(f->queue.log, line, 1));
}

static void test_same_queue_id_twice(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: twice\r\n\r\nsent twice, stored once\r\n";
	char *rcpts[] = { "bob@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, "dupQueueId0001", rcpts, 1, body);
	assert_int_equal(enqueue(f, &req), MAIL_OK);
	assert_int_equal(enqueue(f, &req), MAIL_OK);
	/* and twice at once, on a new id */
	static const char body2[] = "Subject: twice at once\r\n\r\nraced\r\n";
	Queue__EnqueueRequest req2;
	request_init(&req2, "dupQueueId0002", rcpts, 1, body2);
	struct enq_result a = { 0 }, b = { 0 };
	queue_client_enqueue(f->qc, &req2, enq_cb, &a);
	queue_client_enqueue(f->qc, &req2, enq_cb, &b);
	run_until(f, &a.done, QUEUE_CLIENT_DEADLINE_MS + 5000);
	run_until(f, &b.done, QUEUE_CLIENT_DEADLINE_MS + 5000);
	assert_int_equal(a.status, MAIL_OK);
	assert_int_equal(b.status, MAIL_OK);
	struct mbox_result r;
	wait_inbox(f, "bob@example.com", 2, &r);
	assert_body(f, "bob@example.com", r.uids[0], body);
	assert_body(f, "bob@example.com", r.uids[1], body2);
}

static void test_bad_request_fails_fast(void **state)
{
	struct fixture *f = *state;
	char *rcpts[] = { "not-an-address" };
	Queue__EnqueueRequest req;
	request_init(&req, "badRcpt01", rcpts, 1, "x\r\n");
	uint64_t t0 = util_now_mono_ms();
	assert_int_equal(enqueue(f, &req), MAIL_ERR_PARAMS);
	req.n_rcpt_to = 0;
	assert_int_equal(enqueue(f, &req), MAIL_ERR_PARAMS);
	char *ok[] = { "carol@example.com" };
	req.rcpt_to = ok;
	req.n_rcpt_to = 1;
	req.queue_id = "bad/id";
	assert_int_equal(enqueue(f, &req), MAIL_ERR_PARAMS);
	assert_true(util_now_mono_ms() - t0 < 5000);
	assert_int_equal(inbox_count(f, "carol@example.com", &(struct mbox_result){ 0 }), 0);
}

static void test_durable_across_crash(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: survives\r\n\r\nqueued while the store was down\r\n";
	char qid[25];
	queue_client_new_id(qid);
	char *rcpts[] = { "dora@example.com", "erin@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, qid, rcpts, 2, body);

	assert_int_equal(node_stop(&f->store, SIGTERM), 0);
	assert_int_equal(enqueue(f, &req), MAIL_OK); /* durable on the queue node */
	mailtest_sleep_ms(500);                      /* a delivery attempt is under way */
	node_stop(&f->queue, SIGKILL);
	node_start(f, &f->store);
	node_start(f, &f->queue);
	struct mbox_result r;
	wait_inbox(f, "dora@example.com", 1, &r);
	assert_body(f, "dora@example.com", r.uids[0], body);
	wait_inbox(f, "erin@example.com", 1, &r);
	assert_body(f, "erin@example.com", r.uids[0], body);
	/* ... delivered by the restarted node, from its store, when it took
	 * the partition over again. */
	char line[128];
	snprintf(line, sizeof line, "event=recovered qid=%s", qid);
	assert_true(log_has(f->queue.log, line, 1));
}

static void deliver_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct mbox_result *r = arg;
	r->done = 1;
	r->status = status;
}

/* The store already holds "<qid>/0" (as after a crash between the store's
 * commit and the queue's "done" flag): the queue's delivery is answered as a
 * duplicate and the mailbox keeps one copy. */
static void test_duplicate_window_closed(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: window\r\n\r\ndelivered before the flag\r\n";
	char qid[25], did[40];
	queue_client_new_id(qid);
	snprintf(did, sizeof did, "%s/0", qid);
	Store__DeliverRequest dr = STORE__DELIVER_REQUEST__INIT;
	dr.user = "frank@example.com";
	dr.mailbox = "";
	dr.delivery_id = did;
	dr.body.data = (uint8_t *)body;
	dr.body.len = strlen(body);
	struct mbox_result r = { 0 };
	store_client_deliver(f->sc, &dr, deliver_cb, &r);
	run_until(f, &r.done, WAIT_MS);
	assert_int_equal(r.status, MAIL_OK);

	char *rcpts[] = { "frank@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, qid, rcpts, 1, body);
	assert_int_equal(enqueue(f, &req), MAIL_OK);
	char line[128];
	snprintf(line, sizeof line, "event=removed qid=%s", qid);
	uint64_t end = util_now_mono_ms() + WAIT_MS;
	while (!log_has(f->queue.log, line, 1) && util_now_mono_ms() < end)
		mailtest_sleep_ms(50);
	assert_true(log_has(f->queue.log, "rcpt=frank@example.com uid=1 uidvalidity=", 1));
	assert_true(log_has(f->queue.log, "duplicate=1", 1));
	wait_inbox(f, "frank@example.com", 1, &r);
	assert_body(f, "frank@example.com", r.uids[0], body);
}

/* The store tier stays down past the store client's deadline: the queue
 * defers (event=deferred), retries with backoff and delivers once the store
 * is back, without a queue restart. */
static void test_deferred_then_delivered(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "Subject: deferred\r\n\r\nwaited for the store\r\n";
	char qid[25];
	queue_client_new_id(qid);
	char *rcpts[] = { "gina@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, qid, rcpts, 1, body);
	assert_int_equal(node_stop(&f->store, SIGTERM), 0);
	assert_int_equal(enqueue(f, &req), MAIL_OK);
	char line[128];
	snprintf(line, sizeof line, "event=deferred qid=%s rcpt=gina@example.com", qid);
	uint64_t end = util_now_mono_ms() + STORE_CLIENT_DEADLINE_MS + 10000;
	while (!log_has(f->queue.log, line, 1) && util_now_mono_ms() < end)
		mailtest_sleep_ms(100);
	assert_true(log_has(f->queue.log, line, 1));
	node_start(f, &f->store);
	struct mbox_result r;
	wait_inbox(f, "gina@example.com", 1, &r);
	assert_body(f, "gina@example.com", r.uids[0], body);
}

static void test_sigterm_exits_zero(void **state)
{
	struct fixture *f = *state;
	int status = node_stop(&f->queue, SIGTERM);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_true(log_has(f->queue.log, "event=stopped", 1));
}

/* No queue node at all: the client retries until its deadline, then
 * reports a temporary error (the SMTP side answers 451). */
static void test_no_queue_node_deadline(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(f->queue.pid, 0);
	char *rcpts[] = { "hal@example.com" };
	Queue__EnqueueRequest req;
	request_init(&req, "noQueueNode1", rcpts, 1, "Subject: x\r\n\r\nx\r\n");
	uint64_t t0 = util_now_mono_ms();
	int status = enqueue(f, &req);
	uint64_t took = util_now_mono_ms() - t0;
	assert_true(status == MAIL_ERR_UNAVAILABLE || status == MAIL_ERR_DEADLINE);
	assert_true(took >= QUEUE_CLIENT_DEADLINE_MS - 100);
	assert_true(took < QUEUE_CLIENT_DEADLINE_MS + 3000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_enqueue_delivers),
		cmocka_unit_test(test_same_queue_id_twice),
		cmocka_unit_test(test_bad_request_fails_fast),
		cmocka_unit_test(test_durable_across_crash),
		cmocka_unit_test(test_duplicate_window_closed),
		cmocka_unit_test(test_deferred_then_delivered),
		cmocka_unit_test(test_sigterm_exits_zero),
		cmocka_unit_test(test_no_queue_node_deadline),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
