/* test-ring.c: consistent-hash placement (pure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ring.h"
#include "router.h"

static const char *const three[] = { "node-a", "node-b", "node-c" };
static const char *const four[] = { "node-a", "node-b", "node-c", "node-d" };

static ring_map *place(const ring_map *old, const char *const *nodes, size_t n, int *changed)
{
	int dummy;
	return ring_map_place(old, nodes, n, 256, 1, changed != NULL ? changed : &dummy);
}

static void test_deterministic(void **state)
{
	(void)state;
	/* the input order of node ids must not matter */
	static const char *const shuffled[] = { "node-c", "node-a", "node-b", "node-a" };
	ring_map *a = place(NULL, three, 3, NULL);
	ring_map *b = place(NULL, shuffled, 4, NULL);
	assert_int_equal(b->n_nodes, 3);
	for (uint32_t p = 0; p < 256; p++)
		assert_string_equal(ring_map_replica(a, p, 0), ring_map_replica(b, p, 0));
	char *ja = ring_map_to_json(a), *jb = ring_map_to_json(b);
	assert_string_equal(ja, jb);
	free(ja);
	free(jb);
	ring_map_free(&a);
	ring_map_free(&b);
	assert_null(a);
}

static void test_all_assigned_and_balanced(void **state)
{
	(void)state;
	int changed;
	ring_map *m = place(NULL, three, 3, &changed);
	assert_int_equal(changed, 1);
	assert_int_equal(m->epoch, 1);
	assert_int_equal(m->n_partitions, 256);
	int count[3] = { 0 };
	for (uint32_t p = 0; p < 256; p++) {
		const char *id = ring_map_replica(m, p, 0);
		assert_non_null(id);
		assert_null(ring_map_replica(m, p, 1)); /* R = 1 */
		assert_int_equal(ring_map_partition_epoch(m, p), 1);
		for (int i = 0; i < 3; i++)
			count[i] += strcmp(id, three[i]) == 0;
	}
	for (int i = 0; i < 3; i++) {
		/* 15%..52% of 256 */
		assert_in_range(count[i], 39, 133);
	}
	assert_int_equal(count[0] + count[1] + count[2], 256);
	assert_null(ring_map_replica(m, 256, 0));
	ring_map_free(&m);
}

static void test_add_node_moves_quarter_to_it(void **state)
{
	(void)state;
	ring_map *old = place(NULL, three, 3, NULL);
	int changed;
	ring_map *m = place(old, four, 4, &changed);
	assert_int_equal(changed, 1);
	assert_int_equal(m->epoch, 2);
	int moved = 0;
	for (uint32_t p = 0; p < 256; p++) {
		const char *before = ring_map_replica(old, p, 0);
		const char *after = ring_map_replica(m, p, 0);
		if (strcmp(before, after) != 0) {
			moved++;
			assert_string_equal(after, "node-d");
			assert_int_equal(ring_map_partition_epoch(m, p), 2);
		} else {
			assert_int_equal(ring_map_partition_epoch(m, p), 1);
		}
	}
	assert_true(moved > 0);
	assert_true(moved < 256 * 40 / 100);
	ring_map_free(&old);
	ring_map_free(&m);
}

static void test_remove_node_moves_only_its_partitions(void **state)
{
	(void)state;
	static const char *const two[] = { "node-a", "node-c" };
	ring_map *old = place(NULL, three, 3, NULL);
	ring_map *m = place(old, two, 2, NULL);
	for (uint32_t p = 0; p < 256; p++) {
		const char *before = ring_map_replica(old, p, 0);
		const char *after = ring_map_replica(m, p, 0);
		if (strcmp(before, "node-b") == 0)
			assert_string_not_equal(after, "node-b");
		else
			assert_string_equal(before, after);
	}
	ring_map_free(&old);
	ring_map_free(&m);
}

static void test_same_nodes_no_change(void **state)
{
	(void)state;
	ring_map *old = place(NULL, three, 3, NULL);
	int changed;
	ring_map *m = place(old, three, 3, &changed);
	assert_int_equal(changed, 0);
	assert_int_equal(m->epoch, old->epoch);
	ring_map_free(&old);
	ring_map_free(&m);
}

static void test_replicas_distinct(void **state)
{
	(void)state;
	int changed;
	ring_map *m = ring_map_place(NULL, four, 4, 64, 3, &changed);
	assert_int_equal(m->n_replicas, 3);
	for (uint32_t p = 0; p < 64; p++) {
		const char *r0 = ring_map_replica(m, p, 0), *r1 = ring_map_replica(m, p, 1);
		const char *r2 = ring_map_replica(m, p, 2);
		assert_string_not_equal(r0, r1);
		assert_string_not_equal(r0, r2);
		assert_string_not_equal(r1, r2);
	}
	ring_map_free(&m);
	/* fewer nodes than R: every node once */
	m = ring_map_place(NULL, three, 2, 16, 3, &changed);
	assert_int_equal(m->n_replicas, 2);
	ring_map_free(&m);
	/* no nodes: nothing placed, lookups return NULL */
	m = ring_map_place(NULL, NULL, 0, 16, 1, &changed);
	assert_null(ring_map_replica(m, 0, 0));
	ring_map_free(&m);
}

static void test_json_round_trip(void **state)
{
	(void)state;
	ring_map *old = place(NULL, three, 3, NULL);
	ring_map *m = place(old, four, 4, NULL);
	char *json = ring_map_to_json(m);
	ring_map *back;
	const char *error = NULL;
	assert_int_equal(ring_map_from_json(json, strlen(json), &back, &error), 0);
	assert_int_equal(back->n_partitions, 256);
	assert_int_equal(back->epoch, 2);
	assert_int_equal(back->n_nodes, 4);
	for (uint32_t p = 0; p < 256; p++) {
		assert_string_equal(ring_map_replica(m, p, 0), ring_map_replica(back, p, 0));
		assert_int_equal(ring_map_partition_epoch(m, p),
				 ring_map_partition_epoch(back, p));
	}
	char *again = ring_map_to_json(back);
	assert_string_equal(json, again);
	/* the parsed map is a valid "old" for the next placement */
	int changed;
	ring_map *next = place(back, four, 4, &changed);
	assert_int_equal(changed, 0);
	ring_map_free(&next);
	free(again);
	free(json);
	ring_map_free(&back);
	ring_map_free(&old);
	ring_map_free(&m);
}

static void test_json_malformed_rejected(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{}",
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"]}",
		/* wrong version */
		"{\"version\":2,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":1}]}",
		/* partition count disagrees with the map */
		"{\"version\":1,\"partitions\":2,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":1}]}",
		/* replica names an unknown node */
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"b\"],\"e\":1}]}",
		/* partition epoch above the map epoch */
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":7}]}",
		/* unsorted / duplicate node list */
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,"
		"\"nodes\":[\"b\",\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":1}]}",
		/* duplicate replica */
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":2,"
		"\"nodes\":[\"a\",\"b\"],"
		"\"map\":[{\"r\":[\"a\",\"a\"],\"e\":1}]}",
		/* zero partitions, wrong types, unknown field */
		"{\"version\":1,\"partitions\":0,\"epoch\":1,\"replicas\":1,\"nodes\":[],"
		"\"map\":[]}",
		"{\"version\":1,\"partitions\":\"1\",\"epoch\":1,\"replicas\":1,"
		"\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":1}]}",
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],\"e\":1}],\"extra\":1}",
		/* truncated */
		"{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,\"nodes\":[\"a\"],"
		"\"map\":[{\"r\":[\"a\"],",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ring_map *m = NULL;
		const char *error = NULL;
		assert_int_equal(ring_map_from_json(bad[i], strlen(bad[i]), &m, &error), -1);
		assert_null(m);
		assert_non_null(error);
	}
	/* the smallest valid map parses */
	static const char ok[] = "{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":1,"
				 "\"nodes\":[\"a\"],\"map\":[{\"r\":[\"a\"],\"e\":1}]}";
	ring_map *m;
	const char *error;
	assert_int_equal(ring_map_from_json(ok, strlen(ok), &m, &error), 0);
	assert_string_equal(ring_map_replica(m, 0, 0), "a");
	ring_map_free(&m);
}

static void test_partition_of(void **state)
{
	(void)state;
	/* stable and in range; keys spread */
	assert_int_equal(router_partition_of("a@b.test", 8, 256),
			 router_partition_of("a@b.test", 8, 256));
	int seen[16] = { 0 };
	for (int i = 0; i < 1000; i++) {
		char key[32];
		int len = snprintf(key, sizeof key, "user%d@x.test", i);
		uint32_t p = router_partition_of(key, (size_t)len, 16);
		assert_true(p < 16);
		seen[p]++;
	}
	for (int i = 0; i < 16; i++)
		assert_true(seen[i] > 20);
	assert_string_equal(router_role_name(ROUTER_ROLE_QUEUE), "queue");
	assert_string_equal(router_role_name(ROUTER_ROLE_STORE), "store");
}

/* ---- R replicas and the controller's rules ------------------------------ */

static const char *const five[] = { "node-a", "node-b", "node-c", "node-d", "node-e" };

static void test_r3_add_fourth_moves_quarter_of_slots(void **state)
{
	(void)state;
	int changed;
	ring_map *a = ring_map_place(NULL, three, 3, 256, 3, &changed);
	ring_map *b = ring_map_place(a, four, 4, 256, 3, &changed);
	assert_int_equal(b->want_replicas, 3);
	assert_int_equal(b->n_replicas, 3);
	/* slots (partition, replica) whose node changed set membership */
	unsigned moved = 0, total = 256 * 3;
	for (uint32_t p = 0; p < 256; p++) {
		for (uint32_t k = 0; k < 3; k++) {
			const char *id = ring_map_replica(b, p, k);
			if (!ring_map_has_replica(a, p, id)) {
				assert_string_equal(id, "node-d"); /* only the new node gains */
				moved++;
			}
		}
	}
	/* about 1/4 of the slots move to the new node */
	assert_true(moved > total / 4 - total / 10 && moved < total / 4 + total / 10);
	ring_map_free(&a);
	ring_map_free(&b);
}

static void test_target_matches_place(void **state)
{
	(void)state;
	int changed;
	ring_map *m = ring_map_place(NULL, five, 5, 64, 3, &changed);
	for (uint32_t p = 0; p < 64; p++) {
		const char *t[RING_REPLICAS_MAX];
		assert_int_equal(ring_target(five, 5, 3, p, t), 3);
		for (uint32_t k = 0; k < 3; k++)
			assert_string_equal(t[k], ring_map_replica(m, p, k));
		assert_int_equal(ring_map_insync(m, p, 2) != NULL, 1);
	}
	ring_map_free(&m);
}

/* A 3-replica map over a,b,c (16 partitions) as the controller starts from. */
static ring_map *base_map(void)
{
	int changed;
	return ring_map_place(NULL, three, 3, 16, 3, &changed);
}

static const ring_node_info recs_abc[] = { { "node-a", 0 }, { "node-b", 0 }, { "node-c", 0 } };

static void test_reconcile_nothing_to_do(void **state)
{
	(void)state;
	ring_map *m = base_map();
	ring_change *ch;
	size_t n;
	assert_null(ring_map_reconcile(m, recs_abc, 3, three, 3, NULL, 0, &ch, &n));
	assert_int_equal(n, 0);
	ring_map_free(&m);
}

static void test_reconcile_promote_and_drop(void **state)
{
	(void)state;
	ring_map *m = base_map();
	/* node-a dies */
	static const char *const alive_bc[] = { "node-b", "node-c" };
	ring_change *ch;
	size_t n;
	ring_map *x = ring_map_reconcile(m, recs_abc, 3, alive_bc, 2, NULL, 0, &ch, &n);
	assert_non_null(x);
	assert_int_equal(x->epoch, m->epoch + 1);
	assert_int_equal(n, 16); /* every partition had node-a */
	for (uint32_t p = 0; p < 16; p++) {
		int was_primary = strcmp(ring_map_replica(m, p, 0), "node-a") == 0;
		assert_string_not_equal(ring_map_replica(x, p, 0), "node-a");
		assert_true(ring_map_has_replica(x, p, "node-a")); /* stays in r */
		assert_false(ring_map_is_insync(x, p, "node-a"));
		assert_int_equal(ring_map_partition_epoch(x, p), x->epoch);
		if (was_primary) {
			/* the first alive in-sync replica took over */
			assert_string_equal(ring_map_replica(x, p, 0), ring_map_insync(m, p, 1));
			assert_true(ch[p].reasons & RING_REASON_PROMOTE);
		} else {
			assert_string_equal(ring_map_replica(x, p, 0), ring_map_replica(m, p, 0));
			assert_int_equal(ch[p].reasons, RING_REASON_DROP);
		}
	}
	free(ch);
	/* the JSON round-trips with "i" */
	char *json = ring_map_to_json(x);
	assert_non_null(strstr(json, "\"i\":["));
	ring_map *back;
	const char *error;
	assert_int_equal(ring_map_from_json(json, strlen(json), &back, &error), 0);
	assert_false(ring_map_is_insync(back, 0, "node-a"));
	ring_map_free(&back);
	free(json);

	/* node-a comes back: in r, not in i until it reports */
	ring_map *y = ring_map_reconcile(x, recs_abc, 3, three, 3, NULL, 0, &ch, &n);
	assert_null(y);
	/* a stale report (old epoch) is ignored; a current one re-adds it */
	ring_progress stale = { 3, "node-a", m->epoch };
	assert_null(ring_map_reconcile(x, recs_abc, 3, three, 3, &stale, 1, &ch, &n));
	ring_progress ok = { 3, "node-a", x->parts[3].epoch };
	y = ring_map_reconcile(x, recs_abc, 3, three, 3, &ok, 1, &ch, &n);
	assert_non_null(y);
	assert_int_equal(n, 1);
	assert_int_equal(ch[0].partition, 3);
	assert_int_equal(ch[0].reasons, RING_REASON_INSYNC);
	assert_true(ring_map_is_insync(y, 3, "node-a"));
	assert_false(ring_map_is_insync(y, 4, "node-a"));
	assert_int_equal(ring_map_partition_epoch(y, 3), x->epoch + 1);
	assert_int_equal(ring_map_partition_epoch(y, 4), x->epoch);
	free(ch);
	ring_map_free(&y);
	ring_map_free(&x);
	ring_map_free(&m);
}

static void test_reconcile_no_promotion_without_insync(void **state)
{
	(void)state;
	ring_map *m = base_map();
	/* only node-c alive, and we first take it out of sync everywhere */
	static const char *const alive_ab[] = { "node-a", "node-b" };
	ring_change *ch;
	size_t n;
	ring_map *x = ring_map_reconcile(m, recs_abc, 3, alive_ab, 2, NULL, 0, &ch, &n);
	free(ch);
	/* now a and b die; c is alive but out of sync */
	static const char *const alive_c[] = { "node-c" };
	ring_map *y = ring_map_reconcile(x, recs_abc, 3, alive_c, 1, NULL, 0, &ch, &n);
	assert_non_null(y);
	free(ch);
	for (uint32_t p = 0; p < 16; p++) {
		/* never an out-of-sync primary: the partition has no live one */
		assert_string_not_equal(ring_map_replica(y, p, 0), "node-c");
		assert_true(ring_map_is_insync(y, p, ring_map_replica(y, p, 0)));
		assert_int_equal(y->parts[p].n_i, 1);
	}
	ring_map_free(&y);
	ring_map_free(&x);
	ring_map_free(&m);
}

static void test_reconcile_join_then_rebalance(void **state)
{
	(void)state;
	ring_map *m = base_map();
	static const ring_node_info recs[] = {
		{ "node-a", 0 }, { "node-b", 0 }, { "node-c", 0 }, { "node-d", 0 }
	};
	ring_change *ch;
	size_t n;
	ring_map *x = ring_map_reconcile(m, recs, 4, four, 4, NULL, 0, &ch, &n);
	assert_non_null(x);
	free(ch);
	ring_progress rep[16];
	size_t n_rep = 0;
	for (uint32_t p = 0; p < 16; p++) {
		const char *t[RING_REPLICAS_MAX];
		uint32_t nt = ring_target(four, 4, 3, p, t);
		int has_d = 0;
		for (uint32_t k = 0; k < nt; k++)
			has_d |= strcmp(t[k], "node-d") == 0;
		assert_int_equal(ring_map_has_replica(x, p, "node-d"), has_d);
		assert_false(ring_map_is_insync(x, p, "node-d")); /* not before it reports */
		assert_string_not_equal(ring_map_replica(x, p, 0), "node-d");
		if (has_d) {
			assert_int_equal(x->parts[p].n_r, 4); /* the displaced one stays */
			rep[n_rep++] = (ring_progress){ p, "node-d", x->parts[p].epoch };
		}
	}
	assert_true(n_rep > 0);
	/* node-d reports: it joins "i", the displaced node leaves */
	ring_map *y = ring_map_reconcile(x, recs, 4, four, 4, rep, n_rep, &ch, &n);
	assert_non_null(y);
	assert_int_equal(n, n_rep);
	free(ch);
	for (uint32_t p = 0; p < 16; p++) {
		const char *t[RING_REPLICAS_MAX];
		uint32_t nt = ring_target(four, 4, 3, p, t);
		assert_int_equal(y->parts[p].n_r, nt);
		assert_int_equal(y->parts[p].n_i, nt);
		for (uint32_t k = 0; k < nt; k++)
			assert_true(ring_map_is_insync(y, p, t[k]));
	}
	ring_map_free(&y);
	ring_map_free(&x);
	ring_map_free(&m);
}

static void test_reconcile_drain(void **state)
{
	(void)state;
	/* four nodes, then node-b drains */
	int changed;
	ring_map *m = ring_map_place(NULL, four, 4, 16, 3, &changed);
	static const ring_node_info recs[] = {
		{ "node-a", 0 }, { "node-b", 1 }, { "node-c", 0 }, { "node-d", 0 }
	};
	ring_change *ch;
	size_t n;
	ring_map *x = ring_map_reconcile(m, recs, 4, four, 4, NULL, 0, &ch, &n);
	assert_non_null(x);
	for (size_t k = 0; k < n; k++)
		assert_true(ch[k].reasons & RING_REASON_JOIN);
	free(ch);
	ring_progress rep[16];
	size_t n_rep = 0;
	for (uint32_t p = 0; p < 16; p++) {
		if (!ring_map_has_replica(m, p, "node-b"))
			continue;
		/* still there, still in sync, until the replacement caught up */
		assert_true(ring_map_is_insync(x, p, "node-b"));
		for (uint32_t k = 0; k < x->parts[p].n_r; k++) {
			const char *id = ring_map_replica(x, p, k);
			if (!ring_map_is_insync(x, p, id))
				rep[n_rep++] = (ring_progress){ p, id, x->parts[p].epoch };
		}
	}
	ring_map *y = ring_map_reconcile(x, recs, 4, four, 4, rep, n_rep, &ch, &n);
	assert_non_null(y);
	unsigned all = 0;
	for (size_t k = 0; k < n; k++)
		all |= ch[k].reasons;
	assert_true(all & RING_REASON_DRAIN);
	free(ch);
	for (uint32_t p = 0; p < 16; p++) {
		assert_false(ring_map_has_replica(y, p, "node-b"));
		assert_int_equal(y->parts[p].n_i, 3);
	}
	ring_map_free(&y);
	ring_map_free(&x);
	ring_map_free(&m);
}

static void test_old_map_without_insync(void **state)
{
	(void)state;
	static const char old[] = "{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":2,"
				  "\"nodes\":[\"a\",\"b\"],\"map\":[{\"r\":[\"b\",\"a\"],\"e\":1}]}";
	ring_map *m;
	const char *error;
	assert_int_equal(ring_map_from_json(old, strlen(old), &m, &error), 0);
	assert_true(ring_map_is_insync(m, 0, "a"));
	assert_true(ring_map_is_insync(m, 0, "b"));
	ring_map_free(&m);
	/* "i" must be distinct members of "r" */
	static const char bad[] = "{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":2,"
				  "\"nodes\":[\"a\",\"b\"],\"map\":[{\"r\":[\"b\"],\"i\":[\"a\"],"
				  "\"e\":1}]}";
	assert_int_equal(ring_map_from_json(bad, strlen(bad), &m, &error), -1);
	static const char dup[] = "{\"version\":1,\"partitions\":1,\"epoch\":1,\"replicas\":2,"
				  "\"nodes\":[\"a\",\"b\"],\"map\":[{\"r\":[\"b\",\"a\"],"
				  "\"i\":[\"a\",\"a\"],\"e\":1}]}";
	assert_int_equal(ring_map_from_json(dup, strlen(dup), &m, &error), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_deterministic),
		cmocka_unit_test(test_all_assigned_and_balanced),
		cmocka_unit_test(test_add_node_moves_quarter_to_it),
		cmocka_unit_test(test_remove_node_moves_only_its_partitions),
		cmocka_unit_test(test_same_nodes_no_change),
		cmocka_unit_test(test_replicas_distinct),
		cmocka_unit_test(test_json_round_trip),
		cmocka_unit_test(test_json_malformed_rejected),
		cmocka_unit_test(test_partition_of),
		cmocka_unit_test(test_r3_add_fourth_moves_quarter_of_slots),
		cmocka_unit_test(test_target_matches_place),
		cmocka_unit_test(test_reconcile_nothing_to_do),
		cmocka_unit_test(test_reconcile_promote_and_drop),
		cmocka_unit_test(test_reconcile_no_promotion_without_insync),
		cmocka_unit_test(test_reconcile_join_then_rebalance),
		cmocka_unit_test(test_reconcile_drain),
		cmocka_unit_test(test_old_map_without_insync),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
