/* Tests of the compact sequence <-> uid map (imap-uidmap.h): every
 * operation against a plain sorted array, in both shapes, and the sizes
 * that make a 10,000-message session light. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imap-uidmap.h"

/* The naive model. */
struct model {
	uint32_t *uids;
	size_t n;
};

static void check_same(const imap_uidmap *map, const struct model *m)
{
	assert_int_equal(imap_uidmap_count(map), m->n);
	assert_int_equal(imap_uidmap_max_uid(map), m->n > 0 ? m->uids[m->n - 1] : 0);
	for (size_t i = 0; i < m->n; i++) {
		assert_int_equal(imap_uidmap_uid_of(map, (uint32_t)(i + 1)), m->uids[i]);
		assert_int_equal(imap_uidmap_seq_of(map, m->uids[i]), i + 1);
	}
	assert_int_equal(imap_uidmap_uid_of(map, 0), 0);
	assert_int_equal(imap_uidmap_uid_of(map, (uint32_t)m->n + 1), 0);
	/* absent uids and seq_ceil, around every present one */
	uint32_t hi = m->n > 0 ? m->uids[m->n - 1] + 2 : 3;
	size_t k = 0;
	for (uint32_t u = 1; u <= hi; u++) {
		while (k < m->n && m->uids[k] < u)
			k++;
		int present = k < m->n && m->uids[k] == u;
		if (!present)
			assert_int_equal(imap_uidmap_seq_of(map, u), 0);
		assert_int_equal(imap_uidmap_seq_ceil(map, u), k + 1);
	}
}

static void model_remove(struct model *m, const uint32_t *uids, size_t n)
{
	size_t out = 0, k = 0;
	for (size_t i = 0; i < m->n; i++) {
		while (k < n && uids[k] < m->uids[i])
			k++;
		if (k < n && uids[k] == m->uids[i])
			continue;
		m->uids[out++] = m->uids[i];
	}
	m->n = out;
}

static void test_basic(void **state)
{
	(void)state;
	imap_uidmap *map = imap_uidmap_create();
	struct model m = { 0 };
	check_same(map, &m);
	struct search_uid_range r[] = { { 1, 3 }, { 4, 4 }, { 10, 12 } };
	assert_int_equal(imap_uidmap_set(map, r, 3), 0);
	uint32_t want[] = { 1, 2, 3, 4, 10, 11, 12 };
	m.uids = want;
	m.n = 7;
	check_same(map, &m);
	assert_int_equal(imap_uidmap_append(map, 12), -1);
	assert_int_equal(imap_uidmap_append(map, 13), 0);
	uint32_t gone[] = { 2, 11, 13, 99 };
	assert_int_equal(imap_uidmap_remove(map, gone, 4), 3);
	uint32_t want2[] = { 1, 3, 4, 10, 12 };
	m.uids = want2;
	m.n = 5;
	check_same(map, &m);
	/* bad input */
	struct search_uid_range bad[] = { { 5, 6 }, { 6, 7 } };
	assert_int_equal(imap_uidmap_set(map, bad, 2), -1);
	assert_int_equal(imap_uidmap_count(map), 0);
	struct search_uid_range zero[] = { { 0, 6 } };
	assert_int_equal(imap_uidmap_set(map, zero, 1), -1);
	imap_uidmap_destroy(&map);
	assert_null(map);
}

/* Random appends and removals, checked after every step. */
static void test_random(void **state)
{
	(void)state;
	srand(7);
	for (int round = 0; round < 40; round++) {
		imap_uidmap *map = imap_uidmap_create();
		struct model m = { calloc(4000, sizeof(uint32_t)), 0 };
		uint32_t next = 1 + (uint32_t)(rand() % 5);
		int density = 1 + rand() % 4; /* 1: dense ... 4: sparse */
		for (int step = 0; step < 60; step++) {
			int op = rand() % 3;
			if (op < 2 && m.n < 3900) {
				int k = 1 + rand() % 50;
				for (int i = 0; i < k; i++) {
					next += 1 + (uint32_t)(rand() % density == 0 ? rand() % 40 : 0);
					assert_int_equal(imap_uidmap_append(map, next), 0);
					m.uids[m.n++] = next;
				}
			} else if (m.n > 0) {
				uint32_t del[64];
				size_t nd = 0;
				for (size_t i = 0; i < m.n && nd < 64; i++) {
					if (rand() % 5 == 0)
						del[nd++] = m.uids[i];
				}
				assert_int_equal(imap_uidmap_remove(map, del, nd), nd);
				model_remove(&m, del, nd);
			}
			check_same(map, &m);
		}
		/* rebuilt from ranges, it says the same */
		imap_uidmap *copy = imap_uidmap_create();
		struct search_uid_range *r = calloc(m.n + 1, sizeof(*r));
		size_t nr = 0;
		for (size_t i = 0; i < m.n; i++) {
			if (nr > 0 && r[nr - 1].last + 1 == m.uids[i])
				r[nr - 1].last = m.uids[i];
			else
				r[nr++] = (struct search_uid_range){ m.uids[i], m.uids[i] };
		}
		assert_int_equal(imap_uidmap_set(copy, r, nr), 0);
		check_same(copy, &m);
		free(r);
		imap_uidmap_destroy(&copy);
		imap_uidmap_destroy(&map);
		free(m.uids);
	}
}

/* The shapes: one run for a mailbox without holes, a bitmap for many
 * scattered holes, runs again for a few uids spread far apart. */
static void test_shapes_memory(void **state)
{
	(void)state;
	imap_uidmap *map = imap_uidmap_create();
	struct search_uid_range all = { 1, 10000 };
	assert_int_equal(imap_uidmap_set(map, &all, 1), 0);
	assert_false(imap_uidmap_is_bitmap(map));
	assert_true(imap_uidmap_memory(map) <= 128);
	/* every third message expunged: 3,334 holes */
	uint32_t *gone = calloc(4000, sizeof(uint32_t));
	size_t n = 0;
	for (uint32_t u = 3; u <= 10000; u += 3)
		gone[n++] = u;
	assert_int_equal(imap_uidmap_remove(map, gone, n), n);
	assert_true(imap_uidmap_is_bitmap(map));
	assert_int_equal(imap_uidmap_count(map), 10000 - n);
	assert_true(imap_uidmap_memory(map) <= 2048); /* vs 26 KiB of runs */
	assert_int_equal(imap_uidmap_uid_of(map, 3), 4);
	assert_int_equal(imap_uidmap_seq_of(map, 10000), 10000 - n);
	free(gone);
	/* ten uids a million apart: runs */
	struct search_uid_range far[10];
	for (uint32_t i = 0; i < 10; i++)
		far[i] = (struct search_uid_range){ 1 + i * 1000000u, 1 + i * 1000000u };
	assert_int_equal(imap_uidmap_set(map, far, 10), 0);
	assert_false(imap_uidmap_is_bitmap(map));
	assert_int_equal(imap_uidmap_seq_of(map, 9000001), 10);
	assert_int_equal(imap_uidmap_seq_ceil(map, 2), 2);
	imap_uidmap_destroy(&map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_shapes_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
