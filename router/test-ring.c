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
	assert_null(ring_map_reconcile(m, recs_abc, 3, three, 3, NULL, 0, NULL, &ch, &n));
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
	ring_map *x = ring_map_reconcile(m, recs_abc, 3, alive_bc, 2, NULL, 0, NULL, &ch, &n);
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
	ring_map *y = ring_map_reconcile(x, recs_abc, 3, three, 3, NULL, 0, NULL, &ch, &n);
	assert_null(y);
	/* a stale report (old epoch) is ignored; a current one re-adds it */
	ring_progress stale = { 3, "node-a", m->epoch };
	assert_null(ring_map_reconcile(x, recs_abc, 3, three, 3, &stale, 1, NULL, &ch, &n));
	ring_progress ok = { 3, "node-a", x->parts[3].epoch };
	y = ring_map_reconcile(x, recs_abc, 3, three, 3, &ok, 1, NULL, &ch, &n);
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
	ring_map *x = ring_map_reconcile(m, recs_abc, 3, alive_ab, 2, NULL, 0, NULL, &ch, &n);
	free(ch);
	/* now a and b die; c is alive but out of sync */
	static const char *const alive_c[] = { "node-c" };
	ring_map *y = ring_map_reconcile(x, recs_abc, 3, alive_c, 1, NULL, 0, NULL, &ch, &n);
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
	ring_map *x = ring_map_reconcile(m, recs, 4, four, 4, NULL, 0, NULL, &ch, &n);
	assert_non_null(x);
	free(ch);
	ring_progress rep[16 * 4];
	size_t n_rep = 0, n_d = 0;
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
			n_d++;
			/* the members report at this epoch too, as they do */
			for (uint32_t k = 0; k < x->parts[p].n_i; k++)
				rep[n_rep++] = (ring_progress){ p, ring_map_insync(x, p, k),
								x->parts[p].epoch };
		}
	}
	assert_true(n_d > 0);
	/* node-d reports: it joins "i", the displaced node leaves */
	ring_map *y = ring_map_reconcile(x, recs, 4, four, 4, rep, n_rep, NULL, &ch, &n);
	assert_non_null(y);
	assert_int_equal(n, n_d);
	free(ch);
	for (uint32_t p = 0; p < 16; p++) {
		/* never primary in the pass that put it in "i": its report was
		 * made outside "i", so the old primary may have committed
		 * entries it lacks (CI's e2e_failover drain that never ended:
		 * every replica refused its barrier as conflict_committed) */
		if (ring_map_partition_epoch(y, p) != x->parts[p].epoch)
			assert_string_not_equal(ring_map_replica(y, p, 0), "node-d");
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

/* Four nodes, then node-b drains: *m_r the map before, *x_r the first
 * pass (replacements placed in "r", checked to be joins). */
static const ring_node_info recs_b_drains[] = {
	{ "node-a", 0 }, { "node-b", 1 }, { "node-c", 0 }, { "node-d", 0 }
};

static void drain_first_pass(ring_map **m_r, ring_map **x_r)
{
	int changed;
	ring_change *ch;
	size_t n;
	*m_r = ring_map_place(NULL, four, 4, 16, 3, &changed);
	*x_r = ring_map_reconcile(*m_r, recs_b_drains, 4, four, 4, NULL, 0, NULL, &ch, &n);
	assert_non_null(*x_r);
	for (size_t k = 0; k < n; k++)
		assert_true(ch[k].reasons & RING_REASON_JOIN);
	free(ch);
}

static void test_reconcile_drain(void **state)
{
	(void)state;
	const ring_node_info *recs = recs_b_drains;
	ring_map *m, *x;
	ring_change *ch;
	size_t n;
	drain_first_pass(&m, &x);
	ring_progress rep[16 * 4];
	size_t n_rep = 0;
	for (uint32_t p = 0; p < 16; p++) {
		if (!ring_map_has_replica(m, p, "node-b"))
			continue;
		/* still there, still in sync, until the replacement caught up */
		assert_true(ring_map_is_insync(x, p, "node-b"));
		/* the replacement and the members report at this epoch (only a
		 * member's report lets the primary role move to it: the
		 * replacement was outside "i" when it reported) */
		for (uint32_t k = 0; k < x->parts[p].n_r; k++)
			rep[n_rep++] = (ring_progress){ p, ring_map_replica(x, p, k),
							x->parts[p].epoch };
	}
	ring_map *y = ring_map_reconcile(x, recs, 4, four, 4, rep, n_rep, NULL, &ch, &n);
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

/* The drain of CI's e2e_failover that never ended: a replacement that
 * reported caught up while outside "i" entered "i" and took the primary
 * role in the same pass; the old primary had committed entries after its
 * report, so every replica refused its barrier (conflict_committed) and
 * the partition committed nothing again. Only a report made as a member
 * of "i" may move the primary role. */
static void test_reconcile_no_handoff_to_new_member(void **state)
{
	(void)state;
	const ring_node_info *recs = recs_b_drains;
	ring_map *m, *x;
	ring_change *ch;
	size_t n;
	drain_first_pass(&m, &x);
	/* only the replacements (outside "i") report */
	ring_progress rep[16 * 4];
	size_t n_rep = 0, b_primary = 0;
	for (uint32_t p = 0; p < 16; p++) {
		b_primary += strcmp(ring_map_replica(x, p, 0), "node-b") == 0;
		for (uint32_t k = 0; k < x->parts[p].n_r; k++) {
			const char *id = ring_map_replica(x, p, k);
			if (!ring_map_is_insync(x, p, id))
				rep[n_rep++] = (ring_progress){ p, id, x->parts[p].epoch };
		}
	}
	assert_true(b_primary > 0);
	ring_map *y = ring_map_reconcile(x, recs, 4, four, 4, rep, n_rep, NULL, &ch, &n);
	assert_non_null(y);
	free(ch);
	for (uint32_t p = 0; p < 16; p++) {
		const char *primary = ring_map_replica(y, p, 0);
		/* the new primary was a member of "i" in x (or nothing moved) */
		assert_true(ring_map_is_insync(x, p, primary));
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

/* ---- rule 6: rebalancing primaries ----------------------------------------- */

/* What run_passes saw. */
typedef struct pass_stats {
	unsigned passes, rebalance_passes, moves;
	unsigned max_moves_per_pass;
	int mixed;            /* a pass rebalanced AND changed something else */
	int unsettled_move;   /* a move from a map that was not settled */
	int bad_move;         /* a move to a node not in "i", or "i" changed */
} pass_stats;

/* Is every partition's ring placement (over ids) in "i"? */
static int all_settled(const ring_map *m, const char *const *ids, size_t n_ids)
{
	for (uint32_t p = 0; p < m->n_partitions; p++) {
		const char *t[RING_REPLICAS_MAX];
		uint32_t nt = ring_target(ids, n_ids, m->want_replicas, p, t);
		for (uint32_t k = 0; k < nt; k++) {
			if (!ring_map_is_insync(m, p, t[k]))
				return 0;
		}
	}
	return 1;
}

/* Progress reports (at the current epoch) for every out-of-sync member of
 * "r": the data plane catching every replica up. Returns how many. */
static size_t all_reports(const ring_map *m, ring_progress *out, size_t cap)
{
	size_t n = 0;
	for (uint32_t p = 0; p < m->n_partitions; p++) {
		/* as the nodes do: every replica reports once caught up at
		 * the partition's current epoch (on_caught_up fires per epoch) */
		for (uint32_t k = 1; k < m->parts[p].n_r && n < cap; k++) {
			const char *id = ring_map_replica(m, p, k);
			out[n++] = (ring_progress){ p, id, m->parts[p].epoch };
		}
	}
	return n;
}

/* Check one rebalancing move of partition p from a to b. */
static int move_ok(const ring_map *a, const ring_map *b, uint32_t p)
{
	const char *np = ring_map_replica(b, p, 0);
	if (!ring_map_is_insync(a, p, np) || a->parts[p].n_i != b->parts[p].n_i ||
	    a->parts[p].n_r != b->parts[p].n_r || b->parts[p].epoch != a->epoch + 1)
		return 0;
	for (uint32_t k = 0; k < a->parts[p].n_i; k++) {
		if (strcmp(ring_map_insync(a, p, k), ring_map_insync(b, p, k)) != 0)
			return 0;
	}
	for (uint32_t k = 0; k < a->parts[p].n_r; k++) {
		if (!ring_map_has_replica(b, p, ring_map_replica(a, p, k)))
			return 0;
	}
	return 1;
}

/* Run reconcile passes from m (consumed) until nothing changes (at most
 * max_passes), with every out-of-sync replica reporting caught up after
 * each pass when report is set. Returns the last map. */
static ring_map *run_passes(ring_map *m, const ring_node_info *recs, size_t n_recs,
			    const char *const *alive, size_t n_alive, int report,
			    const ring_reconcile_settings *settings, unsigned max_passes,
			    pass_stats *st)
{
	static ring_progress rep[RING_PARTITIONS_MAX];
	memset(st, 0, sizeof *st);
	const char *placeable[16];
	size_t n_placeable = 0;
	for (size_t k = 0; k < n_recs; k++) {
		if (!recs[k].draining)
			placeable[n_placeable++] = recs[k].id;
	}
	for (unsigned pass = 0; pass < max_passes; pass++) {
		size_t n_rep = report ? all_reports(m, rep, RING_PARTITIONS_MAX) : 0;
		ring_change *ch;
		size_t n;
		ring_map *x = ring_map_reconcile(m, recs, n_recs, alive, n_alive, rep, n_rep,
						 settings, &ch, &n);
		if (x == NULL)
			break;
		st->passes++;
		unsigned moves = 0;
		int other = 0;
		for (size_t k = 0; k < n; k++) {
			if (ch[k].reasons & RING_REASON_REBALANCE) {
				moves++;
				if (!move_ok(m, x, ch[k].partition))
					st->bad_move = 1;
			}
			other |= (ch[k].reasons & ~(unsigned)RING_REASON_REBALANCE) != 0;
		}
		if (moves > 0) {
			st->rebalance_passes++;
			st->mixed |= other;
			st->unsettled_move |= !all_settled(m, placeable, n_placeable);
		}
		st->moves += moves;
		if (moves > st->max_moves_per_pass)
			st->max_moves_per_pass = moves;
		free(ch);
		ring_map_free(&m);
		m = x;
	}
	return m;
}

static unsigned primaries_of(const ring_map *m, const char *id)
{
	unsigned n = 0;
	for (uint32_t p = 0; p < m->n_partitions; p++)
		n += strcmp(ring_map_replica(m, p, 0), id) == 0;
	return n;
}

/* Every partition led by the first node of its placement over ids. */
static int all_preferred(const ring_map *m, const char *const *ids, size_t n_ids)
{
	for (uint32_t p = 0; p < m->n_partitions; p++) {
		const char *t[RING_REPLICAS_MAX];
		if (ring_target(ids, n_ids, m->want_replicas, p, t) == 0 ||
		    strcmp(ring_map_replica(m, p, 0), t[0]) != 0)
			return 0;
	}
	return 1;
}

static void test_rebalance_after_joins(void **state)
{
	(void)state;
	/* the cluster starts with node-a alone (as members place themselves),
	 * then b, c, d join and catch up: without rule 6 node-a would lead
	 * all 256 partitions forever */
	static const ring_node_info recs[] = {
		{ "node-a", 0 }, { "node-b", 0 }, { "node-c", 0 }, { "node-d", 0 }
	};
	int changed;
	ring_map *m = ring_map_place(NULL, four, 1, 256, 3, &changed);
	assert_int_equal(primaries_of(m, "node-a"), 256);
	/* the joins: no rebalancing while replicas are joining and catching
	 * up (the pass limit only stops a runaway loop) */
	ring_reconcile_settings off = { .rebalance_off = 1 };
	pass_stats st;
	m = run_passes(m, recs, 4, four, 4, 1, &off, 100, &st);
	assert_int_equal(st.moves, 0);
	assert_true(all_settled(m, four, 4));
	/* node-a kept every partition it is still placed on (3/4 of them);
	 * only the partitions it left got another primary (rule 5) */
	for (uint32_t p = 0; p < 256; p++) {
		assert_int_equal(m->parts[p].n_i, 3);
		if (ring_map_has_replica(m, p, "node-a"))
			assert_string_equal(ring_map_replica(m, p, 0), "node-a");
	}
	assert_true(primaries_of(m, "node-a") > 256 / 2);
	unsigned unpreferred = 0;
	for (uint32_t p = 0; p < 256; p++) {
		const char *t[RING_REPLICAS_MAX];
		ring_target(four, 4, 3, p, t);
		unpreferred += strcmp(ring_map_replica(m, p, 0), t[0]) != 0;
	}
	assert_true(unpreferred > 256 / 3);

	/* the same joins with rebalancing on */
	ring_map_free(&m);
	m = ring_map_place(NULL, four, 1, 256, 3, &changed);
	m = run_passes(m, recs, 4, four, 4, 1, NULL, 200, &st);
	assert_true(all_preferred(m, four, 4));
	assert_int_equal(st.mixed, 0);
	assert_int_equal(st.unsettled_move, 0);
	assert_int_equal(st.bad_move, 0);
	/* K = 256 / 16 per pass, and every pass but the last used all of it */
	assert_int_equal(st.max_moves_per_pass, 16);
	assert_int_equal(st.rebalance_passes, (st.moves + 15) / 16);
	assert_int_equal(st.moves, unpreferred); /* each moved once, none twice */
	for (int k = 0; k < 4; k++) {
		/* within a factor 2 of partitions / nodes = 64 */
		unsigned n = primaries_of(m, four[k]);
		assert_in_range(n, 32, 128);
	}
	/* settled and balanced: a further pass changes nothing */
	ring_change *ch;
	size_t n;
	assert_null(ring_map_reconcile(m, recs, 4, four, 4, NULL, 0, NULL, &ch, &n));
	ring_map_free(&m);
}

static void test_rebalance_failback(void **state)
{
	(void)state;
	ring_map *m = base_map();
	unsigned led = primaries_of(m, "node-a");
	assert_true(led > 0);
	/* node-a dies: its partitions fail over */
	static const char *const alive_bc[] = { "node-b", "node-c" };
	pass_stats st;
	m = run_passes(m, recs_abc, 3, alive_bc, 2, 1, NULL, 20, &st);
	assert_int_equal(st.moves, 0); /* not settled: node-a is out */
	assert_int_equal(primaries_of(m, "node-a"), 0);
	/* it comes back and catches up: it leads its share again, one
	 * partition per pass (16 partitions: K = 1) */
	m = run_passes(m, recs_abc, 3, three, 3, 1, NULL, 40, &st);
	assert_int_equal(primaries_of(m, "node-a"), led);
	assert_true(all_preferred(m, three, 3));
	assert_int_equal(st.moves, led);
	assert_int_equal(st.max_moves_per_pass, 1);
	assert_int_equal(st.rebalance_passes, led);
	assert_int_equal(st.mixed, 0);
	assert_int_equal(st.unsettled_move, 0);
	assert_int_equal(st.bad_move, 0);
	ring_map_free(&m);
}

/* Swap the first two members of partition p's "r" (primary != preferred). */
static void swap_primary(ring_map *m, uint32_t p)
{
	uint32_t t = m->parts[p].r[0];
	m->parts[p].r[0] = m->parts[p].r[1];
	m->parts[p].r[1] = t;
}

static void test_rebalance_rules(void **state)
{
	(void)state;
	ring_map *m = base_map();
	swap_primary(m, 2);
	swap_primary(m, 9);
	const char *want2 = ring_map_replica(m, 2, 1), *want9 = ring_map_replica(m, 9, 1);
	ring_change *ch;
	size_t n;
	ring_progress rep[256];
	size_t n_rep;

	/* no move to a preferred node without its report of being caught up
	 * at the partition's current epoch (it may miss a recent commit) */
	assert_null(ring_map_reconcile(m, recs_abc, 3, three, 3, NULL, 0, NULL, &ch, &n));

	/* one partition per pass (K = max(1, 16/16)), lowest first */
	n_rep = all_reports(m, rep, 256);
	ring_map *x = ring_map_reconcile(m, recs_abc, 3, three, 3, rep, n_rep, NULL, &ch, &n);
	assert_non_null(x);
	assert_int_equal(n, 1);
	assert_int_equal(ch[0].partition, 2);
	assert_int_equal(ch[0].reasons, RING_REASON_REBALANCE);
	free(ch);
	assert_string_equal(ring_map_replica(x, 2, 0), want2);
	assert_true(move_ok(m, x, 2));
	assert_int_equal(x->epoch, m->epoch + 1);
	assert_int_equal(ring_map_partition_epoch(x, 9), m->parts[9].epoch);
	char why[64];
	assert_string_equal(ring_reason_names(RING_REASON_REBALANCE | RING_REASON_DROP, why,
					      sizeof why),
			    "drop,rebalance");
	n_rep = all_reports(x, rep, 256);
	ring_map *y = ring_map_reconcile(x, recs_abc, 3, three, 3, rep, n_rep, NULL, &ch, &n);
	assert_non_null(y);
	assert_int_equal(n, 1);
	assert_int_equal(ch[0].partition, 9);
	free(ch);
	assert_string_equal(ring_map_replica(y, 9, 0), want9);
	n_rep = all_reports(y, rep, 256);
	assert_null(ring_map_reconcile(y, recs_abc, 3, three, 3, rep, n_rep, NULL, &ch, &n));
	ring_map_free(&y);
	ring_map_free(&x);

	/* a setting raises K; rebalance_off turns the rule off */
	ring_reconcile_settings five_per_pass = { .rebalance_max = 5 };
	n_rep = all_reports(m, rep, 256);
	x = ring_map_reconcile(m, recs_abc, 3, three, 3, rep, n_rep, &five_per_pass, &ch, &n);
	assert_non_null(x);
	assert_int_equal(n, 2);
	free(ch);
	ring_map_free(&x);
	ring_reconcile_settings off = { .rebalance_off = 1 };
	assert_null(ring_map_reconcile(m, recs_abc, 3, three, 3, rep, n_rep, &off, &ch, &n));

	/* partition 2's preferred node drops out of "i" there: no move to it,
	 * and no move anywhere else either (the map is not settled) */
	ring_part *part = &m->parts[2];
	uint32_t pref = part->r[1];
	for (uint32_t k = 0; k < part->n_i; k++) {
		if (part->i[k] == pref) {
			memmove(&part->i[k], &part->i[k + 1],
				(part->n_i - k - 1) * sizeof part->i[0]);
			part->n_i--;
			break;
		}
	}
	assert_false(ring_map_is_insync(m, 2, want2));
	assert_null(ring_map_reconcile(m, recs_abc, 3, three, 3, NULL, 0, &five_per_pass, &ch,
				       &n));
	/* its progress report puts it back in "i" (that pass only); the
	 * next pass rebalances */
	ring_progress back = { 2, want2, m->parts[2].epoch };
	x = ring_map_reconcile(m, recs_abc, 3, three, 3, &back, 1, &five_per_pass, &ch, &n);
	assert_non_null(x);
	assert_int_equal(n, 1);
	assert_int_equal(ch[0].reasons, RING_REASON_INSYNC);
	free(ch);
	assert_string_not_equal(ring_map_replica(x, 2, 0), want2);
	n_rep = all_reports(x, rep, 256); /* caught up at the new epoch */
	y = ring_map_reconcile(x, recs_abc, 3, three, 3, rep, n_rep, &five_per_pass, &ch, &n);
	assert_non_null(y);
	assert_int_equal(n, 2);
	free(ch);
	assert_string_equal(ring_map_replica(y, 2, 0), want2);
	ring_map_free(&y);
	ring_map_free(&x);

	/* the preferred node of partition 9 is dead: it leaves "i" (rule 1)
	 * and never becomes primary */
	const char *alive_ids[2];
	size_t n_alive = 0;
	for (int k = 0; k < 3; k++) {
		if (strcmp(three[k], want9) != 0)
			alive_ids[n_alive++] = three[k];
	}
	x = ring_map_reconcile(m, recs_abc, 3, alive_ids, n_alive, NULL, 0, &five_per_pass, &ch,
			       &n);
	assert_non_null(x);
	for (size_t k = 0; k < n; k++)
		assert_false(ch[k].reasons & RING_REASON_REBALANCE);
	free(ch);
	assert_string_not_equal(ring_map_replica(x, 9, 0), want9);
	ring_map_free(&x);

	/* a draining preferred node is not preferred: the placement skips it */
	ring_node_info drain[3] = { { "node-a", 0 }, { "node-b", 0 }, { "node-c", 0 } };
	for (int k = 0; k < 3; k++)
		drain[k].draining = strcmp(drain[k].id, want9) == 0;
	pass_stats st;
	ring_map *d = base_map();
	swap_primary(d, 9);
	d = run_passes(d, drain, 3, three, 3, 1, &five_per_pass, 20, &st);
	for (uint32_t p = 0; p < 16; p++) {
		assert_string_not_equal(ring_map_replica(d, p, 0), want9);
		assert_false(ring_map_has_replica(d, p, want9));
	}
	assert_int_equal(st.bad_move, 0);
	ring_map_free(&d);
	ring_map_free(&m);
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
		cmocka_unit_test(test_reconcile_no_handoff_to_new_member),
		cmocka_unit_test(test_old_map_without_insync),
		cmocka_unit_test(test_rebalance_after_joins),
		cmocka_unit_test(test_rebalance_failback),
		cmocka_unit_test(test_rebalance_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
