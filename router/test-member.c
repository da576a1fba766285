/* test-member.c: membership and lookups against a real etcd.
 *
 * The binary doubles as a member process for the kill test:
 *   test-member --member-child URL ROLE ID PORT TTL
 * registers, prints "ready", and runs its loop until killed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "ring.h"
#include "router.h"
#include "util.h"
#include "xalloc.h"

extern char **environ;

typedef struct fixture {
	mailtest_etcd *etcd;
	const etcd_conf *conf;
	etcd_client *c;
	uv_loop_t loop;
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->conf = mailtest_etcd_conf(f->etcd);
	f->c = etcd_client_create(f->conf);
	uv_loop_init(&f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	uv_run(&f->loop, UV_RUN_NOWAIT);
	uv_loop_close(&f->loop);
	etcd_client_destroy(&f->c);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

static void stop_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Run the loop for ms milliseconds. */
static void run_for(uv_loop_t *loop, int ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, stop_cb, (uint64_t)ms, 0);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

static int key_owner(router *r, enum router_role role, int i, router_node *node)
{
	char key[32];
	int len = snprintf(key, sizeof key, "user%d@example.test", i);
	return router_lookup(r, role, key, (size_t)len, node);
}

/* Count keys (of 200) whose lookup succeeds, and those owned by id. */
static int count_found(router *r, enum router_role role, const char *id, int *owned_r)
{
	int found = 0, owned = 0;
	for (int i = 0; i < 200; i++) {
		router_node node;
		if (key_owner(r, role, i, &node) == 1) {
			found++;
			owned += id != NULL && strcmp(node.id, id) == 0;
		}
	}
	if (owned_r != NULL)
		*owned_r = owned;
	return found;
}

static ring_map *read_ring(fixture *f, const char *role)
{
	char key[64], *v;
	size_t len;
	ring_map *map;
	const char *error;
	snprintf(key, sizeof key, "/mail/v1/ring/%s", role);
	if (etcd_kv_get(f->c, key, &v, &len, NULL, NULL) != MAIL_OK)
		return NULL;
	int r = ring_map_from_json(v, len, &map, &error);
	free(v);
	return r == 0 ? map : NULL;
}

static int alive_exists(fixture *f, const char *role, const char *id)
{
	char key[128], *v;
	size_t len;
	snprintf(key, sizeof key, "/mail/v1/alive/%s/%s", role, id);
	int err = etcd_kv_get(f->c, key, &v, &len, NULL, NULL);
	if (err == MAIL_OK)
		free(v);
	return err == MAIL_OK;
}

static void test_two_members_and_stop(void **state)
{
	fixture *f = *state;
	router_member *a, *b;
	const char *error = NULL;
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_QUEUE, "qa",
					     "127.0.0.1", 41001, 5, 64, &a, &error), 0);
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_QUEUE, "qb",
					     "127.0.0.1", 41002, 5, 64, &b, &error), 0);
	ring_map *map = read_ring(f, "queue");
	assert_non_null(map);
	assert_int_equal(map->n_partitions, 64);
	assert_int_equal(map->n_nodes, 2);
	assert_string_equal(map->nodes[0], "qa");
	assert_string_equal(map->nodes[1], "qb");
	assert_int_equal(map->epoch, 2); /* created with qa, then qb added */
	ring_map_free(&map);

	router *r;
	assert_int_equal(router_create(f->conf, &r, &error), 0);
	int owned_a, owned_b;
	assert_int_equal(count_found(r, ROUTER_ROLE_QUEUE, "qa", &owned_a), 200);
	count_found(r, ROUTER_ROLE_QUEUE, "qb", &owned_b);
	assert_true(owned_a > 0 && owned_b > 0);
	assert_int_equal(owned_a + owned_b, 200);
	router_node node;
	assert_int_equal(key_owner(r, ROUTER_ROLE_QUEUE, 0, &node), 1);
	assert_string_equal(node.host, "127.0.0.1");
	assert_int_equal(node.port, strcmp(node.id, "qa") == 0 ? 41001 : 41002);
	assert_true(node.partition < 64);
	assert_true(node.epoch >= 1);
	/* no store nodes: the store ring is empty */
	assert_int_equal(key_owner(r, ROUTER_ROLE_STORE, 0, &node), 0);

	/* stop qb: its alive key goes at once, lookups of its keys fail */
	router_member_stop(&b);
	assert_null(b);
	run_for(&f->loop, 50);
	assert_false(alive_exists(f, "queue", "qb"));
	assert_true(alive_exists(f, "queue", "qa"));
	int found = 0;
	for (int i = 0; i < 100 && found != owned_a; i++) {
		run_for(&f->loop, 50);
		found = count_found(r, ROUTER_ROLE_QUEUE, NULL, NULL);
	}
	assert_int_equal(found, owned_a);
	int still_a;
	count_found(r, ROUTER_ROLE_QUEUE, "qa", &still_a);
	assert_int_equal(still_a, owned_a);

	/* qb is still a ring member (node records are persistent): when it
	 * comes back, it serves the same partitions again */
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_QUEUE, "qb",
					     "127.0.0.1", 41003, 5, 64, &b, &error), 0);
	map = read_ring(f, "queue");
	assert_int_equal(map->epoch, 2);
	ring_map_free(&map);
	for (int i = 0; i < 100 && found != 200; i++) {
		run_for(&f->loop, 50);
		found = count_found(r, ROUTER_ROLE_QUEUE, NULL, NULL);
	}
	assert_int_equal(found, 200);
	count_found(r, ROUTER_ROLE_QUEUE, "qb", &still_a);
	assert_int_equal(still_a, owned_b);
	router_refresh(r); /* a reload keeps the same view */
	run_for(&f->loop, 1500);
	assert_int_equal(count_found(r, ROUTER_ROLE_QUEUE, NULL, NULL), 200);
	router_destroy(&r);
	assert_null(r);
	router_member_stop(&a);
	router_member_stop(&b);
	run_for(&f->loop, 50);
}

static void test_keepalive_and_lease_recovery(void **state)
{
	fixture *f = *state;
	router_member *m;
	const char *error;
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_STORE, "s-keep",
					     "127.0.0.1", 42001, 2, 64, &m, &error), 0);
	/* renewals keep the alive key well past the 2 s TTL */
	run_for(&f->loop, 4000);
	assert_true(alive_exists(f, "store", "s-keep"));

	/* lose the lease behind the member's back: it re-registers */
	etcd_kv *kvs;
	size_t n;
	assert_int_equal(etcd_kv_range_prefix(f->c, "/mail/v1/alive/store/s-keep", 0, &kvs, &n,
					      NULL), MAIL_OK);
	assert_int_equal(n, 1);
	assert_string_equal(kvs[0].value, "127.0.0.1:42001");
	assert_int_equal(etcd_lease_revoke(f->c, kvs[0].lease), MAIL_OK);
	etcd_kvs_free(kvs, n);
	assert_false(alive_exists(f, "store", "s-keep"));
	run_for(&f->loop, 1500);
	assert_true(alive_exists(f, "store", "s-keep"));
	router_member_stop(&m);
	run_for(&f->loop, 50);
	assert_false(alive_exists(f, "store", "s-keep"));
}

/* A loop that stalls (a slow disk, a busy CPU) for longer than the TTL
 * keeps its lease: the keeper thread renews it. A loop stuck for longer
 * than the grace (3 TTLs) lets it lapse, and gets it back once it turns. */
static void test_stalled_loop_keeps_lease(void **state)
{
	fixture *f = *state;
	router_member *m;
	const char *error;
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_STORE, "s-stall",
					     "127.0.0.1", 42002, 2, 64, &m, &error), 0);
	run_for(&f->loop, 300);
	/* the loop does not turn for 3.5 s, 1.75 TTLs */
	mailtest_sleep_ms(3500);
	assert_true(alive_exists(f, "store", "s-stall"));
	assert_true(router_member_lease_valid_until(m) > util_now_mono_ms());
	run_for(&f->loop, 300);

	/* stuck for 9 s: past the 6 s grace the keeper stops renewing, and
	 * etcd expires the lease within the TTL after */
	mailtest_sleep_ms(9000);
	assert_false(alive_exists(f, "store", "s-stall"));
	assert_true(router_member_lease_valid_until(m) < util_now_mono_ms());
	/* turning again, the member registers under a new lease (a period,
	 * then a keepalive, a grant and a put: etcd may be slow here) */
	uint64_t until = util_now_mono_ms() + 10000;
	do
		run_for(&f->loop, 200);
	while (!alive_exists(f, "store", "s-stall") && util_now_mono_ms() < until);
	assert_true(alive_exists(f, "store", "s-stall"));
	router_member_stop(&m);
	run_for(&f->loop, 50);
	assert_false(alive_exists(f, "store", "s-stall"));
}

static void test_killed_member_expires(void **state)
{
	fixture *f = *state;
	int out[2];
	assert_int_equal(pipe(out), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
	posix_spawn_file_actions_addclose(&fa, out[0]);
	char *argv[] = { "test-member", "--member-child", (char *)f->conf->url, "store", "s-kill",
			 "43001", "2", NULL };
	pid_t pid;
	assert_int_equal(posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(out[1]);
	char buf[16] = { 0 };
	assert_true(read(out[0], buf, sizeof buf - 1) > 0);
	close(out[0]);
	assert_memory_equal(buf, "ready", 5);

	router *r;
	const char *error;
	assert_int_equal(router_create(f->conf, &r, &error), 0);
	/* s-keep (stopped) and s-kill are both on the store ring; only
	 * s-kill is alive */
	int owned;
	int found = count_found(r, ROUTER_ROLE_STORE, "s-kill", &owned);
	assert_true(found > 0);
	assert_int_equal(found, owned);

	/* kill -9: no revoke; the lease runs out within the TTL */
	uint64_t start = util_now_mono_ms();
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	while (count_found(r, ROUTER_ROLE_STORE, NULL, NULL) > 0 &&
	       util_now_mono_ms() - start < 10000)
		mailtest_sleep_ms(100);
	uint64_t took = util_now_mono_ms() - start;
	assert_int_equal(count_found(r, ROUTER_ROLE_STORE, NULL, NULL), 0);
	assert_true(took < 5000);
	assert_false(alive_exists(f, "store", "s-kill"));
	router_destroy(&r);
}

static void test_unreachable(void **state)
{
	fixture *f = *state;
	char url[64];
	snprintf(url, sizeof url, "http://127.0.0.1:%d", mailtest_free_port());
	router *r = NULL;
	router_member *m = NULL;
	const char *error = NULL;
	etcd_conf conf = { .url = url };
	assert_int_equal(router_create(&conf, &r, &error), -1);
	assert_non_null(error);
	assert_null(r);
	error = NULL;
	assert_int_equal(router_member_start(&f->loop, &conf, ROUTER_ROLE_QUEUE, "x", "127.0.0.1",
					     1, 5, 64, &m, &error), -1);
	assert_non_null(error);
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_QUEUE, "bad/id",
					     "127.0.0.1", 1, 5, 64, &m, &error), -1);
	assert_null(m);
}

static void test_router_survives_etcd_loss(void **state)
{
	/* runs last: the router keeps its last view while etcd is gone */
	fixture *f = *state;
	router_member *m;
	router *r;
	const char *error;
	assert_int_equal(router_member_start(&f->loop, f->conf, ROUTER_ROLE_QUEUE, "qz",
					     "127.0.0.1", 44001, 30, 64, &m, &error), 0);
	assert_int_equal(router_create(f->conf, &r, &error), 0);
	int owned;
	count_found(r, ROUTER_ROLE_QUEUE, "qz", &owned);
	assert_true(owned > 0);
	mailtest_etcd_stop(&f->etcd);
	run_for(&f->loop, 1000);
	router_node node;
	int still;
	count_found(r, ROUTER_ROLE_QUEUE, "qz", &still);
	assert_int_equal(still, owned);
	(void)node;
	router_destroy(&r); /* does not hang while reconnecting */
	router_member_stop(&m); /* the revoke fails quietly */
	run_for(&f->loop, 50);
}

static int member_child(int argc, char **argv)
{
	if (argc != 7)
		return 2;
	/* dies with the test, also when a failed assertion skipped its kill
	 * (else it would hold ctest's output pipe open) */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	uv_loop_t *loop = uv_default_loop();
	router_member *m;
	const char *error;
	enum router_role role = strcmp(argv[3], "store") == 0 ? ROUTER_ROLE_STORE
							     : ROUTER_ROLE_QUEUE;
	etcd_conf conf = { .url = argv[2] };
	if (router_member_start(loop, &conf, role, argv[4], "127.0.0.1", atoi(argv[5]),
				atoi(argv[6]), 64, &m, &error) < 0) {
		fprintf(stderr, "member child: %s\n", error);
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	uv_run(loop, UV_RUN_DEFAULT);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--member-child") == 0)
		return member_child(argc, argv);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_members_and_stop),
		cmocka_unit_test(test_keepalive_and_lease_recovery),
		cmocka_unit_test(test_stalled_loop_keeps_lease),
		cmocka_unit_test(test_killed_member_expires),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_router_survives_etcd_loss),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
