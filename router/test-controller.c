/* test-controller.c: election and map upkeep against a real etcd.
 *
 * Nodes are fake: a node record, and an alive key under a lease the test
 * holds (revoking it is the node dying, at once). The map is read back from
 * etcd as a member or router would.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "controller-private.h"
#include "etcd-fixture.h"
#include "etcd.h"
#include "mail-error.h"
#include "ring.h"
#include "router.h"
#include "xalloc.h"

#define TTL 2
#define NPART 16

typedef struct fixture {
	mailtest_etcd *etcd;
	const etcd_conf *conf;
	etcd_client *c;
	int64_t lease[8];
	/* CAS hook */
	etcd_client *hook_c;
	int hook_calls;
	uint32_t hook_part;
	char hook_dropped[ROUTER_ID_MAX];
} fixture;

static int setup(void **state)
{
	fixture *f = xcalloc(1, sizeof *f);
	if (mailtest_etcd_start(&f->etcd) < 0)
		return -1;
	f->conf = mailtest_etcd_conf(f->etcd);
	f->c = etcd_client_create(f->conf);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	etcd_client_destroy(&f->c);
	etcd_client_destroy(&f->hook_c);
	mailtest_etcd_stop(&f->etcd);
	free(f);
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *const nodes4[] = { "s1", "s2", "s3", "s4" };

/* Node k (s1..) comes alive: record (unless it exists) and alive key. */
static void node_up(fixture *f, int k)
{
	char *key = xasprintf("/mail/v1/nodes/store/%s", nodes4[k]);
	char *val = xasprintf("{\"id\":\"%s\",\"addr\":\"127.0.0.1:%d\",\"created\":1}",
			      nodes4[k], 40000 + k);
	assert_int_equal(etcd_kv_put(f->c, key, val, strlen(val), 0), MAIL_OK);
	free(key);
	free(val);
	assert_int_equal(etcd_lease_grant(f->c, 60, &f->lease[k]), MAIL_OK);
	key = xasprintf("/mail/v1/alive/store/%s", nodes4[k]);
	val = xasprintf("127.0.0.1:%d", 40000 + k);
	assert_int_equal(etcd_kv_put(f->c, key, val, strlen(val), f->lease[k]), MAIL_OK);
	free(key);
	free(val);
}

static void node_die(fixture *f, int k)
{
	assert_int_equal(etcd_lease_revoke(f->c, f->lease[k]), MAIL_OK);
}

static void ring_create(fixture *f, int n_nodes)
{
	int changed;
	ring_map *m = ring_map_place(NULL, nodes4, (size_t)n_nodes, NPART, 3, &changed);
	char *json = ring_map_to_json(m);
	assert_int_equal(etcd_kv_put(f->c, "/mail/v1/ring/store", json, strlen(json), 0),
			 MAIL_OK);
	free(json);
	ring_map_free(&m);
}

static ring_map *ring_get(etcd_client *c, int64_t *mod_r)
{
	char *v;
	size_t len;
	ring_map *m;
	const char *error;
	assert_int_equal(etcd_kv_get(c, "/mail/v1/ring/store", &v, &len, mod_r, NULL), MAIL_OK);
	assert_int_equal(ring_map_from_json(v, len, &m, &error), 0);
	free(v);
	return m;
}

static int wait_active(router_controller *ctl, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	while (now_ms() < end) {
		if (router_controller_is_active(ctl))
			return 1;
		mailtest_sleep_ms(50);
	}
	return 0;
}

static router_controller *ctl_start(fixture *f, const char *id,
				    const router__controller_hooks *hooks)
{
	router_controller *ctl;
	const char *error;
	assert_int_equal(router__controller_start_hooked(NULL, f->conf, id, TTL, NULL, hooks, &ctl,
							 &error),
			 0);
	return ctl;
}

static void test_election(void **state)
{
	fixture *f = *state;
	router_controller *a = ctl_start(f, "ctl-a", NULL);
	assert_true(wait_active(a, 5000));
	router_controller *b = ctl_start(f, "ctl-b", NULL);
	mailtest_sleep_ms(1500);
	assert_true(router_controller_is_active(a));
	assert_false(router_controller_is_active(b));
	char *v;
	size_t len;
	assert_int_equal(etcd_kv_get(f->c, "/mail/v1/controller", &v, &len, NULL, NULL),
			 MAIL_OK);
	assert_string_equal(v, "ctl-a");
	free(v);

	/* a "crashes" (lease not revoked): b takes over within about the TTL */
	uint64_t t0 = now_ms();
	router__controller_abandon(&a);
	assert_true(wait_active(b, (TTL + 3) * 1000));
	uint64_t took = now_ms() - t0;
	assert_true(took <= (TTL + 3) * 1000);
	assert_int_equal(etcd_kv_get(f->c, "/mail/v1/controller", &v, &len, NULL, NULL),
			 MAIL_OK);
	assert_string_equal(v, "ctl-b");
	free(v);

	/* a clean stop hands over at once */
	router_controller *c = ctl_start(f, "ctl-c", NULL);
	mailtest_sleep_ms(300);
	assert_false(router_controller_is_active(c));
	router_controller_stop(&b);
	assert_null(b);
	assert_true(wait_active(c, 2500));
	router_controller_stop(&c);

	/* bad arguments */
	const char *error;
	assert_int_equal(router_controller_start(NULL, f->conf, "a/b", 2, NULL, &c, &error), -1);
	assert_int_equal(router_controller_start(NULL, f->conf, "", 2, NULL, &c, &error), -1);
}

/* Wait until cond(map) holds (polling etcd); returns the map or NULL. */
typedef int map_cond(const ring_map *m, const void *arg);

static ring_map *wait_map(fixture *f, map_cond *cond, const void *arg, int ms)
{
	uint64_t end = now_ms() + (uint64_t)ms;
	for (;;) {
		ring_map *m = ring_get(f->c, NULL);
		if (cond(m, arg))
			return m;
		ring_map_free(&m);
		if (now_ms() >= end)
			return NULL;
		mailtest_sleep_ms(50);
	}
}

typedef struct p0_arg {
	const char *primary;  /* p0's primary must be this (NULL: anything) */
	const char *not_primary;
	const char *not_insync;
	const char *insync;
} p0_arg;

static int p0_cond(const ring_map *m, const void *argp)
{
	const p0_arg *a = argp;
	const char *r0 = ring_map_replica(m, 0, 0);
	if (a->primary != NULL && strcmp(r0, a->primary) != 0)
		return 0;
	if (a->not_primary != NULL && strcmp(r0, a->not_primary) == 0)
		return 0;
	if (a->not_insync != NULL && ring_map_is_insync(m, 0, a->not_insync))
		return 0;
	if (a->insync != NULL && !ring_map_is_insync(m, 0, a->insync))
		return 0;
	return 1;
}

static int node_index(const char *id)
{
	for (int k = 0; k < 4; k++) {
		if (strcmp(nodes4[k], id) == 0)
			return k;
	}
	fail();
	return -1;
}

static void test_promotion_drop_progress(void **state)
{
	fixture *f = *state;
	for (int k = 0; k < 3; k++)
		node_up(f, k);
	ring_create(f, 3);
	ring_map *m0 = ring_get(f->c, NULL);
	router_controller *ctl = ctl_start(f, "ctl", NULL);
	assert_true(wait_active(ctl, 5000));
	mailtest_sleep_ms(300);
	/* nothing to change: the map is untouched */
	ring_map *m = ring_get(f->c, NULL);
	assert_int_equal(m->epoch, m0->epoch);
	ring_map_free(&m);

	/* the primary of partition 0 dies: an in-sync replica takes over */
	const char *x = ring_map_replica(m0, 0, 0);
	uint64_t t0 = now_ms();
	node_die(f, node_index(x));
	p0_arg a1 = { .not_primary = x, .not_insync = x };
	m = wait_map(f, p0_cond, &a1, 2 * TTL * 1000);
	assert_non_null(m);
	assert_true(now_ms() - t0 <= 2 * TTL * 1000);
	assert_true(ring_map_partition_epoch(m, 0) > ring_map_partition_epoch(m0, 0));
	assert_true(ring_map_is_insync(m0, 0, ring_map_replica(m, 0, 0)));
	assert_true(ring_map_has_replica(m, 0, x)); /* kept in r for its return */
	char z[ROUTER_ID_MAX], y[ROUTER_ID_MAX];
	snprintf(z, sizeof z, "%s", ring_map_replica(m, 0, 0));
	/* y: the third node */
	for (int k = 0; k < 3; k++) {
		if (strcmp(nodes4[k], x) != 0 && strcmp(nodes4[k], z) != 0)
			snprintf(y, sizeof y, "%s", nodes4[k]);
	}
	ring_map_free(&m);

	/* a replica dies: it leaves "i" */
	node_die(f, node_index(y));
	p0_arg a2 = { .primary = z, .not_insync = y };
	m = wait_map(f, p0_cond, &a2, 2 * TTL * 1000);
	assert_non_null(m);
	ring_map_free(&m);

	/* the last in-sync node dies, an out-of-sync one is back: no promotion */
	node_die(f, node_index(z));
	node_up(f, node_index(y));
	mailtest_sleep_ms(2500);
	m = ring_get(f->c, NULL);
	for (uint32_t p = 0; p < NPART; p++) {
		assert_string_not_equal(ring_map_replica(m, p, 0), y);
		assert_true(ring_map_is_insync(m, p, ring_map_replica(m, p, 0)));
	}
	/* y reports caught up on partition 0 at its epoch: it joins "i", and
	 * as the only alive in-sync replica it becomes the primary */
	char *val = xasprintf("{\"epoch\":%llu}",
			      (unsigned long long)ring_map_partition_epoch(m, 0));
	char *key = xasprintf("/mail/v1/progress/store/0/%s", y);
	/* a stale report first: ignored */
	assert_int_equal(etcd_kv_put(f->c, key, "{\"epoch\":1}", 11, 0), MAIL_OK);
	mailtest_sleep_ms(500);
	ring_map *still = ring_get(f->c, NULL);
	assert_false(ring_map_is_insync(still, 0, y));
	ring_map_free(&still);
	assert_int_equal(etcd_kv_put(f->c, key, val, strlen(val), 0), MAIL_OK);
	free(key);
	free(val);
	p0_arg a3 = { .primary = y, .insync = y };
	ring_map *m2 = wait_map(f, p0_cond, &a3, 2 * TTL * 1000);
	assert_non_null(m2);
	assert_true(ring_map_partition_epoch(m2, 0) > ring_map_partition_epoch(m, 0));
	/* other partitions: still without a live primary */
	for (uint32_t p = 1; p < NPART; p++)
		assert_string_not_equal(ring_map_replica(m2, p, 0), y);
	ring_map_free(&m2);
	ring_map_free(&m);
	ring_map_free(&m0);
	router_controller_stop(&ctl);
}

static int d_placed(const ring_map *m, const void *arg)
{
	(void)arg;
	for (uint32_t p = 0; p < NPART; p++) {
		if (ring_map_has_replica(m, p, "s4"))
			return 1;
	}
	return 0;
}

static int d_settled(const ring_map *m, const void *arg)
{
	(void)arg;
	for (uint32_t p = 0; p < NPART; p++) {
		const char *t[RING_REPLICAS_MAX];
		if (m->parts[p].n_r != ring_target(nodes4, 4, 3, p, t) || m->parts[p].n_i != 3)
			return 0;
	}
	return 1;
}

/* Progress reports at each partition's current epoch: of the replicas not
 * in sync (catching up), or of every replica but the primary (in_sync_too:
 * what the nodes do after every epoch change). */
static void report_some(fixture *f, const ring_map *m, int in_sync_too)
{
	for (uint32_t p = 0; p < NPART; p++) {
		for (uint32_t k = in_sync_too ? 1 : 0; k < m->parts[p].n_r; k++) {
			const char *id = ring_map_replica(m, p, k);
			if (!in_sync_too && ring_map_is_insync(m, p, id))
				continue;
			char *key = xasprintf("/mail/v1/progress/store/%u/%s", p, id);
			char *val = xasprintf("{\"epoch\":%llu}",
					      (unsigned long long)m->parts[p].epoch);
			assert_int_equal(etcd_kv_put(f->c, key, val, strlen(val), 0), MAIL_OK);
			free(key);
			free(val);
		}
	}
}

static void report_all(fixture *f, const ring_map *m)
{
	report_some(f, m, 0);
}

static void test_join_waits_for_progress(void **state)
{
	fixture *f = *state;
	for (int k = 0; k < 3; k++)
		node_up(f, k);
	ring_create(f, 3);
	router_controller *ctl = ctl_start(f, "ctl", NULL);
	assert_true(wait_active(ctl, 5000));
	node_up(f, 3);
	ring_map *m = wait_map(f, d_placed, NULL, 4000);
	assert_non_null(m);
	for (uint32_t p = 0; p < NPART; p++) {
		assert_false(ring_map_is_insync(m, p, "s4"));
		assert_string_not_equal(ring_map_replica(m, p, 0), "s4");
	}
	/* still out of "i" a resync later */
	mailtest_sleep_ms(2500);
	ring_map_free(&m);
	m = ring_get(f->c, NULL);
	for (uint32_t p = 0; p < NPART; p++)
		assert_false(ring_map_is_insync(m, p, "s4"));
	report_all(f, m);
	ring_map_free(&m);
	m = wait_map(f, d_settled, NULL, 4000);
	assert_non_null(m);
	ring_map_free(&m);
	router_controller_stop(&ctl);
}

/* Partitions led by the first node of their placement over all 4 nodes. */
static unsigned preferred_count(const ring_map *m)
{
	unsigned n = 0;
	for (uint32_t p = 0; p < NPART; p++) {
		const char *t[RING_REPLICAS_MAX];
		ring_target(nodes4, 4, 3, p, t);
		n += strcmp(ring_map_replica(m, p, 0), t[0]) == 0;
	}
	return n;
}

static void test_rebalance_paced(void **state)
{
	fixture *f = *state;
	const int pace_ms = 300;
	for (int k = 0; k < 4; k++)
		node_up(f, k);
	ring_create(f, 1); /* s1 alone leads everything; s2..s4 join */
	router__controller_hooks hooks = { .resync_ms = pace_ms };
	router_controller *ctl = ctl_start(f, "ctl", &hooks);
	assert_true(wait_active(ctl, 5000));
	/* play the data plane until the map is settled; the primaries stay
	 * where they are until then */
	ring_map *m = NULL;
	uint64_t end = now_ms() + 10000;
	for (;;) {
		ring_map_free(&m);
		m = ring_get(f->c, NULL);
		if (d_settled(m, NULL) || now_ms() > end)
			break;
		for (uint32_t p = 0; p < NPART; p++) {
			const char *t[RING_REPLICAS_MAX];
			ring_target(nodes4, 4, 3, p, t);
			if (!ring_map_is_insync(m, p, t[0]))
				assert_string_not_equal(ring_map_replica(m, p, 0), t[0]);
		}
		/* joiners and members alike, as nodes do at every epoch (the
		 * primary role moves only on a member's report) */
		report_some(f, m, 1);
		mailtest_sleep_ms(20);
	}
	assert_true(d_settled(m, NULL));
	uint64_t settled_t = now_ms();
	unsigned start = preferred_count(m);
	assert_true(start < NPART);
	/* then one move per resync interval (K = max(1, 16/16) = 1), the first
	 * an interval after the write that settled the map: watch it happen */
	unsigned last = start, moves = 0;
	uint64_t first_t = 0, last_t = 0, reported = 0, polled_t = now_ms();
	end = now_ms() + (uint64_t)(NPART * pace_ms * 4);
	while (last < NPART && now_ms() < end) {
		ring_map_free(&m);
		m = ring_get(f->c, NULL);
		/* one move per pass: per poll, one more for each whole interval
		 * a slow poll (a loaded machine, sanitizers) took */
		uint64_t t = now_ms();
		unsigned allowed = 1 + (unsigned)((t - polled_t) / (uint64_t)pace_ms);
		polled_t = t;
		if (m->epoch != reported) {
			/* the replicas catch up at the new epoch and say so: only
			 * then may a primary move to them */
			report_some(f, m, 1);
			reported = m->epoch;
		}
		unsigned now_n = preferred_count(m);
		assert_true(now_n >= last);            /* never moved away again */
		assert_true(now_n - last <= allowed);  /* one per pass, paced */
		if (now_n > last) {
			last_t = now_ms();
			if (first_t == 0)
				first_t = last_t;
			moves += now_n - last;
			last = now_n;
		}
		for (uint32_t p = 0; p < NPART; p++)
			assert_int_equal(m->parts[p].n_i, 3); /* "i" never changes */
		mailtest_sleep_ms(20);
	}
	assert_int_equal(last, NPART);
	assert_int_equal(moves, NPART - start);
	/* the settled map stays quiet for a resync interval, and moves are at
	 * least one interval apart (less the polling slack) */
	assert_true(first_t - settled_t + 100 >= (uint64_t)pace_ms);
	assert_true(last_t - first_t + 100 >= (uint64_t)(moves - 1) * (uint64_t)pace_ms);
	ring_map_free(&m);
	router_controller_stop(&ctl);
}

/* Before the controller's first CAS: write the map behind its back (drop a
 * non-primary replica from "i" of a partition the dying node is not in). */
static void cas_hook(enum router_role role, void *arg)
{
	fixture *f = arg;
	if (role != ROUTER_ROLE_STORE || f->hook_calls++ > 0)
		return;
	int64_t mod;
	ring_map *m = ring_get(f->hook_c, &mod);
	uint32_t p = 0;
	while (p < NPART && ring_map_has_replica(m, p, "s4"))
		p++;
	assert_true(p < NPART);
	f->hook_part = p;
	ring_part *part = &m->parts[p];
	snprintf(f->hook_dropped, sizeof f->hook_dropped, "%s", m->nodes[part->i[part->n_i - 1]]);
	part->n_i--;
	m->epoch++;
	part->epoch = m->epoch;
	char *json = ring_map_to_json(m);
	assert_int_equal(etcd_kv_put_if_mod(f->hook_c, "/mail/v1/ring/store", json, strlen(json),
					    mod, NULL),
			 MAIL_OK);
	free(json);
	ring_map_free(&m);
}

static int s4_out_of_sync(const ring_map *m, const void *arg)
{
	(void)arg;
	for (uint32_t p = 0; p < NPART; p++) {
		if (ring_map_is_insync(m, p, "s4"))
			return 0;
	}
	return 1;
}

static void test_cas_conflict(void **state)
{
	fixture *f = *state;
	for (int k = 0; k < 4; k++)
		node_up(f, k);
	ring_create(f, 4);
	f->hook_c = etcd_client_create(f->conf);
	router__controller_hooks hooks = { .before_cas = cas_hook, .arg = f };
	router_controller *ctl = ctl_start(f, "ctl", &hooks);
	assert_true(wait_active(ctl, 5000));
	node_die(f, 3);
	ring_map *m = wait_map(f, s4_out_of_sync, NULL, 2 * TTL * 1000);
	assert_non_null(m);
	/* the controller lost its first CAS, re-read and kept the other write */
	assert_true(f->hook_calls >= 2);
	assert_false(ring_map_is_insync(m, f->hook_part, f->hook_dropped));
	assert_true(ring_map_has_replica(m, f->hook_part, f->hook_dropped));
	ring_map_free(&m);
	router_controller_stop(&ctl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_election, setup, teardown),
		cmocka_unit_test_setup_teardown(test_promotion_drop_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_join_waits_for_progress, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cas_conflict, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rebalance_paced, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
