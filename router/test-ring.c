/* test-ring.c: consistent-hash placement (pure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
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
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
