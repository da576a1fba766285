/* test-store-replication.c: three store-node processes with --replicas 3
 * and a 2 s lease on a real etcd, reached through a store_client:
 *   - 20 deliveries; kill -9 of the user's primary: writes resume through
 *     the client within 2 x TTL (the pause is printed), the 20 messages
 *     keep their UIDs and UIDVALIDITY, new ones get higher UIDs;
 *   - the killed node restarts, re-enters the in-sync set, nothing is
 *     duplicated (a retried delivery id is recognised);
 *   - two of three killed: deliveries fail with a temporary error, never
 *     MAIL_OK; one back: deliveries succeed again. */
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

#define USER "erin@example.com"
#define N_NODES 3
#define TTL_S 2
#define N_FIRST 20
#define WAIT_MS 20000
static const char body[] = "From: dave@example.net\r\nSubject: replicated\r\n\r\nhello\r\n";

struct node {
	char id[16];
	char *data;
	char *log;
	pid_t pid;
};

struct fixture {
	mailtest_etcd *etcd;
	char *dir;
	struct node n[N_NODES];
	uv_loop_t loop;
	router *router;
	store_client *client;
};

static void node_start(struct fixture *f, int i)
{
	struct node *n = &f->n[i];
	const char *bin = getenv("MAIL_BIN_DIR");
	char *exe = xasprintf("%s/store-node", bin != NULL ? bin : "bin");
	int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	assert_true(fd >= 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fd, 2);
		close(fd);
		execl(exe, exe, "--id", n->id, "--listen", "127.0.0.1:0", "--data", n->data,
		      "--etcd", mailtest_etcd_url(f->etcd), "--partitions", "8", "--replicas",
		      "3", "--lease-ttl", "2", (char *)NULL);
		_exit(127);
	}
	close(fd);
	free(exe);
	n->pid = pid;
}

static void node_kill(struct fixture *f, int i)
{
	if (f->n[i].pid <= 0)
		return;
	kill(f->n[i].pid, SIGKILL);
	waitpid(f->n[i].pid, NULL, 0);
	f->n[i].pid = 0;
}

static int node_index(struct fixture *f, const char *id)
{
	for (int i = 0; i < N_NODES; i++)
		if (strcmp(f->n[i].id, id) == 0)
			return i;
	return -1;
}

/* Run the loop (the client's timers) for ms. */
static void run_for(struct fixture *f, unsigned ms)
{
	uint64_t end = util_now_mono_ms() + ms;
	while (util_now_mono_ms() < end) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		mailtest_sleep_ms(20);
	}
}

static uint32_t user_partition(struct fixture *f)
{
	uint32_t n = router_partition_count(f->router, ROUTER_ROLE_STORE);
	assert_true(n > 0);
	return router_partition_of(USER, strlen(USER), n);
}

/* The user's partition has want in-sync members (and node `must`, if
 * >= 0, among them) within ms. */
static int wait_insync(struct fixture *f, uint32_t want, int must, unsigned ms)
{
	uint64_t end = util_now_mono_ms() + ms;
	while (util_now_mono_ms() < end) {
		router_partition rp;
		if (router_partition_count(f->router, ROUTER_ROLE_STORE) > 0 &&
		    router_lookup_partition(f->router, ROUTER_ROLE_STORE, user_partition(f),
					    &rp) == 1 && rp.n_insync >= want) {
			int ok = must < 0;
			for (uint32_t k = 0; k < rp.n_replicas; k++)
				if (must >= 0 && strcmp(rp.replicas[k].id, f->n[must].id) == 0 &&
				    rp.replicas[k].in_sync && rp.replicas[k].alive)
					ok = 1;
			if (ok)
				return 1;
		}
		run_for(f, 100);
	}
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof *f);
	assert_int_equal(mailtest_etcd_start(&f->etcd), 0);
	f->dir = mailtest_tmpdir("store-repl");
	assert_non_null(f->dir);
	for (int i = 0; i < N_NODES; i++) {
		snprintf(f->n[i].id, sizeof f->n[i].id, "store-%c", 'a' + i);
		f->n[i].data = xasprintf("%s/data-%d", f->dir, i);
		f->n[i].log = xasprintf("%s/node-%d.log", f->dir, i);
		node_start(f, i);
	}
	uv_loop_init(&f->loop);
	const char *error = NULL;
	uint64_t end = util_now_mono_ms() + 10000;
	while (router_create(mailtest_etcd_conf(f->etcd), &f->router, &error) < 0) {
		assert_true(util_now_mono_ms() < end);
		mailtest_sleep_ms(100);
	}
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
	for (int i = 0; i < N_NODES; i++) {
		node_kill(f, i);
		free(f->n[i].data);
		free(f->n[i].log);
	}
	mailtest_etcd_stop(&f->etcd);
	if (getenv("MAIL_KEEP_TMP") == NULL)
		mailtest_rmrf(f->dir);
	free(f->dir);
	free(f);
	return 0;
}

static void deliver(struct fixture *f, const char *delivery_id, struct test_result *r)
{
	Store__DeliverRequest req = STORE__DELIVER_REQUEST__INIT;
	req.user = USER;
	req.delivery_id = (char *)delivery_id;
	req.body.data = (uint8_t *)body;
	req.body.len = sizeof body - 1;
	test_result_reset(r);
	store_client_deliver(f->client, &req, test_result_cb, r);
	test_result_wait(&f->loop, r, WAIT_MS + 5000);
}

static void select_inbox(struct fixture *f, struct test_result *r)
{
	Store__SelectRequest req = STORE__SELECT_REQUEST__INIT;
	req.user = USER;
	req.mailbox = "";
	test_result_reset(r);
	store_client_select(f->client, &req, test_result_cb, r);
	test_result_wait(&f->loop, r, WAIT_MS + 5000);
}

/* Every delivery so far: exactly uids[0..n) with uidvalidity. */
static void check_mailbox(struct fixture *f, const uint32_t *uids, size_t n, uint32_t uidvalidity)
{
	struct test_result r = { 0 };
	select_inbox(f, &r);
	assert_int_equal(r.status, MAIL_OK);
	const Store__SelectResponse *s = (const Store__SelectResponse *)r.resp;
	assert_int_equal(s->mailbox->uidvalidity, uidvalidity);
	assert_int_equal(s->n_messages, n);
	for (size_t k = 0; k < n; k++)
		assert_int_equal(s->messages[k]->uid, uids[k]);
	test_result_reset(&r);
}

static void test_failover(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 };
	uint32_t uids[64];
	size_t n_uids = 0;
	char id[32];

	/* The map settles: three replicas, all in sync. */
	assert_true(wait_insync(f, N_NODES, -1, 30000));
	uint32_t uidvalidity = 0;
	for (int k = 0; k < N_FIRST; k++) {
		snprintf(id, sizeof id, "Q%d/0", k);
		deliver(f, id, &r);
		assert_int_equal(r.status, MAIL_OK);
		const Store__DeliverResponse *d = (const Store__DeliverResponse *)r.resp;
		/* duplicate may be 1: the client retried a write that had
		 * committed (a slow loop, a map change); the mailbox check
		 * below proves it is stored once. */
		if (k == 0)
			uidvalidity = d->uidvalidity;
		assert_int_equal(d->uidvalidity, uidvalidity);
		uids[n_uids++] = d->uid;
	}
	check_mailbox(f, uids, n_uids, uidvalidity);

	/* kill -9 the primary: writes resume within 2 x TTL. */
	router_node primary;
	assert_int_equal(router_lookup(f->router, ROUTER_ROLE_STORE, USER, strlen(USER),
				       &primary), 1);
	int victim = node_index(f, primary.id);
	assert_true(victim >= 0);
	uint64_t t0 = util_now_mono_ms();
	node_kill(f, victim);
	snprintf(id, sizeof id, "Q%d/0", N_FIRST);
	deliver(f, id, &r);
	uint64_t pause = util_now_mono_ms() - t0;
	print_message("failover pause: %llu ms (lease TTL %d s)\n", (unsigned long long)pause,
		      TTL_S);
	assert_int_equal(r.status, MAIL_OK);
	assert_true(pause <= 2 * TTL_S * 1000 + 500);
	const Store__DeliverResponse *d = (const Store__DeliverResponse *)r.resp;
	assert_int_equal(d->uidvalidity, uidvalidity);
	assert_true(d->uid > uids[n_uids - 1]);
	uids[n_uids++] = d->uid;
	check_mailbox(f, uids, n_uids, uidvalidity);

	/* The killed node left the in-sync set (the map promoted another). */
	router_partition rp;
	assert_int_equal(router_lookup_partition(f->router, ROUTER_ROLE_STORE, user_partition(f),
						 &rp), 1);
	for (uint32_t k = 0; k < rp.n_replicas; k++)
		if (strcmp(rp.replicas[k].id, f->n[victim].id) == 0)
			assert_false(rp.replicas[k].in_sync);
	assert_string_not_equal(rp.replicas[0].id, f->n[victim].id);

	/* The killed node returns as a replica, re-enters the in-sync set;
	 * a retried delivery is recognised, nothing is duplicated. */
	node_start(f, victim);
	t0 = util_now_mono_ms();
	assert_true(wait_insync(f, N_NODES, victim, 15000));
	print_message("rejoin in sync after %llu ms\n",
		      (unsigned long long)(util_now_mono_ms() - t0));
	deliver(f, "Q3/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	d = (const Store__DeliverResponse *)r.resp;
	assert_true(d->duplicate);
	assert_int_equal(d->uid, uids[3]);
	check_mailbox(f, uids, n_uids, uidvalidity);

	/* Two of three down: temporary errors, never MAIL_OK. */
	assert_int_equal(router_lookup(f->router, ROUTER_ROLE_STORE, USER, strlen(USER),
				       &primary), 1);
	int a = node_index(f, primary.id);
	int b = (a + 1) % N_NODES;
	node_kill(f, a);
	node_kill(f, b);
	store_client_set_deadline(f->client, 4000);
	for (int k = 0; k < 3; k++) {
		snprintf(id, sizeof id, "U%d/0", k);
		deliver(f, id, &r);
		assert_int_not_equal(r.status, MAIL_OK);
		assert_true(mail_error_info(r.status)->temporary);
	}
	/* One back: deliveries succeed again. */
	node_start(f, b);
	store_client_set_deadline(f->client, 0);
	int ok = 0;
	t0 = util_now_mono_ms();
	while (!ok && util_now_mono_ms() - t0 < 30000) {
		deliver(f, "V0/0", &r);
		ok = r.status == MAIL_OK;
	}
	assert_true(ok);
	print_message("writes back %llu ms after one node returned\n",
		      (unsigned long long)(util_now_mono_ms() - t0));
	d = (const Store__DeliverResponse *)r.resp;
	assert_true(d->uid > uids[n_uids - 1]);
	test_result_reset(&r);
}

/* A WATCH held by the primary when it is killed: the store client takes
 * it to the new primary with the same modseq, so the delivery made after
 * the failover still wakes it (no change lost). */
static void test_watch_failover(void **state)
{
	struct fixture *f = *state;
	struct test_result r = { 0 }, rw = { 0 };
	assert_true(wait_insync(f, N_NODES, -1, 30000));
	deliver(f, "W0/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	Store__StatusRequest st = STORE__STATUS_REQUEST__INIT;
	st.user = USER;
	st.mailbox = "INBOX";
	test_result_reset(&r);
	store_client_status(f->client, &st, test_result_cb, &r);
	test_result_wait(&f->loop, &r, WAIT_MS);
	assert_int_equal(r.status, MAIL_OK);
	uint64_t m0 = ((const Store__MailboxResponse *)r.resp)->mailbox->highest_modseq;

	Store__WatchRequest w = STORE__WATCH_REQUEST__INIT;
	w.user = USER;
	w.mailbox = "INBOX";
	w.modseq = m0;
	store_client_watch(f->client, &w, test_result_cb, &rw);
	run_for(f, 500);
	assert_false(rw.done);   /* held */

	router_node primary;
	assert_int_equal(router_lookup(f->router, ROUTER_ROLE_STORE, USER, strlen(USER),
				       &primary), 1);
	int victim = node_index(f, primary.id);
	assert_true(victim >= 0);
	uint64_t t0 = util_now_mono_ms();
	node_kill(f, victim);
	deliver(f, "W1/0", &r);
	assert_int_equal(r.status, MAIL_OK);
	uint64_t delivered = util_now_mono_ms();
	test_result_wait(&f->loop, &rw, STORE_CLIENT_WATCH_DEADLINE_MS + 5000);
	assert_int_equal(rw.status, MAIL_OK);
	assert_true(((const Store__WatchResponse *)rw.resp)->highest_modseq > m0);
	print_message("watch answered %llu ms after the kill, %lld ms after the delivery\n",
		      (unsigned long long)(util_now_mono_ms() - t0),
		      (long long)(util_now_mono_ms() - delivered));
	test_result_reset(&r);
	test_result_reset(&rw);
}

int main(void)
{
	/* as the daemons do (lib/daemon.c): a write to a node the test just
	 * stopped is an error on that connection, not the end of the run */
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_failover, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
