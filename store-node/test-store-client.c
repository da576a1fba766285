/* test-store-client.c: store_client through a real etcd, the real router
 * and a real store-node child process: deliver/select/fetch, the node
 * killed with SIGKILL (calls fail with a temporary error at the deadline),
 * restarted on the same data dir (same UID and UIDVALIDITY), and a clean
 * SIGTERM exit. */
#include "store-client.h"

#include "etcd-fixture.h"
#include "mail-error.h"
#include "test-pb-util.h"
#include "util.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#define USER "carol@example.com"
#define WAIT_MS 20000
static const char body[] = "From: dave@example.net\r\nSubject: kept\r\n\r\nstill here\r\n";

struct fixture {
	mailtest_etcd *etcd;
	char *dir;      /* the test's temp dir: data/ and node.log inside */
	char *data;
	char *log;
	pid_t node;
	uv_loop_t loop;
	router *router;
	store_client *client;
};

static char *node_binary(void)
{
	const char *bin = getenv("MAIL_BIN_DIR");
	return xasprintf("%s/store-node", bin != NULL ? bin : "bin");
}

/* Start store-node on a free port with stderr in f->log and wait for its
 * "event=ready" line. */
static void node_start(struct fixture *f)
{
	char *exe = node_binary();
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 2);
		close(fd);
		execl(exe, exe, "--id", "store-a", "--listen", "127.0.0.1:0", "--data", f->data,
		      "--etcd", mailtest_etcd_url(f->etcd), "--partitions", "8", "--lease-ttl",
		      "2", (char *)NULL);
		_exit(127);
	}
	close(fd);
	free(exe);
	f->node = pid;
	uint64_t end = util_now_mono_ms() + 10000;
	for (;;) {
		FILE *in = fopen(f->log, "r");
		char line[1024];
		int ready = 0;
		while (in != NULL && fgets(line, sizeof line, in) != NULL)
			ready |= strstr(line, "event=ready") != NULL;
		if (in != NULL)
			fclose(in);
		if (ready)
			return;
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid) {
			f->node = 0;
			fail_msg("store-node exited before ready (see %s)", f->log);
		}
		if (util_now_mono_ms() > end)
			fail_msg("store-node not ready in 10 s (see %s)", f->log);
		mailtest_sleep_ms(50);
	}
}

/* Send sig and reap; returns the wait status. */
static int node_stop(struct fixture *f, int sig)
{
	int status = 0;
	if (f->node <= 0)
		return 0;
	kill(f->node, sig);
	assert_int_equal(waitpid(f->node, &status, 0), f->node);
	f->node = 0;
	return status;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	assert_int_equal(mailtest_etcd_start(&f->etcd), 0);
	f->dir = mailtest_tmpdir("store-client");
	assert_non_null(f->dir);
	f->data = xasprintf("%s/data", f->dir);
	f->log = xasprintf("%s/node.log", f->dir);
	node_start(f);
	uv_loop_init(&f->loop);
	const char *error = NULL;
	assert_int_equal(router_create(mailtest_etcd_conf(f->etcd), &f->router, &error), 0);
	f->client = store_client_create(&f->loop, f->router);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	store_client_destroy(&f->client);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	uv_loop_close(&f->loop);
	router_destroy(&f->router);
	node_stop(f, SIGKILL);
	mailtest_etcd_stop(&f->etcd);
	mailtest_rmrf(f->dir);
	free(f->dir);
	free(f->data);
	free(f->log);
	free(f);
	return 0;
}

static void deliver(struct fixture *f, const char *delivery_id, struct test_result *r)
{
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	/* a heap copy freed right after the call: the client must not need it */
	req.user = xstrdup(USER);
	req.delivery_id = xstrdup(delivery_id);
	req.body.data = xmalloc(sizeof body);
	memcpy(req.body.data, body, sizeof body - 1);
	req.body.len = sizeof body - 1;
	req.internal_date = 1700000000000;
	test_result_reset(r);
	store_client_deliver(f->client, &req, test_result_cb, r);
	free(req.user);
	free(req.delivery_id);
	free(req.body.data);
	test_result_wait(&f->loop, r, WAIT_MS);
}

static void select_inbox(struct fixture *f, struct test_result *r)
{
	Store__SelectRequest req = STORE__SELECT_REQUEST__INIT;
	req.user = USER;
	req.mailbox = "";
	test_result_reset(r);
	store_client_select(f->client, &req, test_result_cb, r);
	test_result_wait(&f->loop, r, WAIT_MS);
}

static void fetch_uid(struct fixture *f, uint32_t uid, struct test_result *r)
{
	Store__FetchRequest req = STORE__FETCH_REQUEST__INIT;
	req.user = USER;
	req.mailbox = "INBOX";
	req.uid = uid;
	test_result_reset(r);
	store_client_fetch(f->client, &req, test_result_cb, r);
	test_result_wait(&f->loop, r, WAIT_MS);
}

static void test_deliver_kill_restart(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 };

	deliver(f, "Q7/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__DeliverResponse *d = (const Store__DeliverResponse *)r.resp;
	uint32_t uid = d->uid;
	uint32_t uidvalidity = d->uidvalidity;
	assert_int_equal(uid, 1);
	assert_false(d->duplicate);

	select_inbox(f, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__SelectResponse *s = (const Store__SelectResponse *)r.resp;
	assert_int_equal(s->mailbox->uidvalidity, uidvalidity);
	assert_int_equal(s->mailbox->exists, 1);
	assert_int_equal(s->n_messages, 1);
	assert_int_equal(s->messages[0]->uid, uid);

	fetch_uid(f, uid, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__FetchResponse *fr = (const Store__FetchResponse *)r.resp;
	assert_int_equal(fr->body.len, sizeof body - 1);
	assert_memory_equal(fr->body.data, body, sizeof body - 1);

	/* a permanent error is not retried: it comes back at once */
	uint64_t t0 = util_now_mono_ms();
	fetch_uid(f, 999, &r);
	assert_int_equal(r.status, MAIL_ERR_NOT_FOUND);
	assert_true(util_now_mono_ms() - t0 < 1000);

	/* the node dies: calls keep retrying, then fail with a temporary error
	 * once the deadline has passed */
	int status = node_stop(f, SIGKILL);
	assert_true(WIFSIGNALED(status));
	store_client_set_deadline(f->client, 1500);
	t0 = util_now_mono_ms();
	select_inbox(f, &r);
	uint64_t took = util_now_mono_ms() - t0;
	assert_int_not_equal(r.status, MAIL_OK);
	assert_true(mail_error_info(r.status)->temporary);
	assert_true(took >= 1400);
	assert_true(took < 5000);

	/* back on the same data dir: the message, its UID and UIDVALIDITY
	 * survived; calls made while the router catches up are retried */
	node_start(f);
	store_client_set_deadline(f->client, 0);
	select_inbox(f, &r);
	assert_int_equal(r.status, MAIL_OK);
	s = (const Store__SelectResponse *)r.resp;
	assert_int_equal(s->mailbox->uidvalidity, uidvalidity);
	assert_int_equal(s->n_messages, 1);
	assert_int_equal(s->messages[0]->uid, uid);
	assert_int_equal(s->mailbox->uidnext, uid + 1);

	fetch_uid(f, uid, &r);
	assert_int_equal(r.status, MAIL_OK);
	fr = (const Store__FetchResponse *)r.resp;
	assert_memory_equal(fr->body.data, body, sizeof body - 1);

	/* the queue retrying its delivery gets the original uid back */
	deliver(f, "Q7/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	d = (const Store__DeliverResponse *)r.resp;
	assert_true(d->duplicate);
	assert_int_equal(d->uid, uid);
	deliver(f, "Q8/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	d = (const Store__DeliverResponse *)r.resp;
	assert_int_equal(d->uid, uid + 1);
	assert_int_equal(d->uidvalidity, uidvalidity);
	test_result_reset(&r);

	/* SIGTERM: leaves the ring and exits 0 */
	status = node_stop(f, SIGTERM);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_destroy_fails_pending(void **state)
{
	struct fixture *f = *state;
	node_stop(f, SIGKILL);
	/* nothing answers: the call waits in its backoff when the client goes */
	struct test_result r = { 0 };
	Store__ListRequest req = STORE__LIST_REQUEST__INIT;
	req.user = USER;
	store_client_list(f->client, &req, test_result_cb, &r);
	for (int i = 0; i < 5; i++)
		uv_run(&f->loop, UV_RUN_NOWAIT);
	assert_false(r.done);
	store_client_destroy(&f->client);
	assert_true(r.done);
	assert_int_equal(r.status, MAIL_ERR_UNAVAILABLE);
	test_result_reset(&r);
}

static void test_bad_options(void **state)
{
	(void)state;
	char *exe = node_binary();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);
		dup2(fd, 2);
		execl(exe, exe, "--id", "x", "--listen", "nope", "--data", "/tmp", (char *)NULL);
		_exit(127);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 2);
	free(exe);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_deliver_kill_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_destroy_fails_pending, setup, teardown),
		cmocka_unit_test(test_bad_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
