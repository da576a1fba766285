/* Unit tests of repl-tail.c: a partition's recent entries in memory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repl-private.h"
#include "xalloc.h"

/* "<index>@<epoch>", heap, as push takes it. */
static uint8_t *payload_of(uint64_t index, uint64_t epoch, size_t *len_r)
{
	char tmp[48];
	int n = snprintf(tmp, sizeof tmp, "%llu@%llu", (unsigned long long)index,
			 (unsigned long long)epoch);
	uint8_t *p = xmalloc((size_t)n);
	memcpy(p, tmp, (size_t)n);
	*len_r = (size_t)n;
	return p;
}

static void push(struct repl_tail *t, uint64_t index, uint64_t epoch)
{
	size_t len;
	uint8_t *p = payload_of(index, epoch, &len);
	repl_tail_push(t, index, epoch, 0, p, len);
}

/* The tail holds exactly from..to, each entry the one pushed at its index
 * with epoch, and its byte count matches. */
static void assert_holds(const struct repl_tail *t, uint64_t from, uint64_t to, uint64_t epoch)
{
	assert_int_equal(t->n, to - from + 1);
	assert_int_equal(repl_tail_last(t), to);
	assert_null(repl_tail_at(t, from - 1));
	assert_null(repl_tail_at(t, to + 1));
	size_t bytes = 0;
	for (uint64_t i = from; i <= to; i++) {
		const struct repl_tail_entry *e = repl_tail_at(t, i);
		assert_non_null(e);
		size_t len;
		uint8_t *want = payload_of(i, epoch, &len);
		assert_int_equal(e->epoch, epoch);
		assert_int_equal(e->len, len);
		assert_memory_equal(e->payload, want, len);
		free(want);
		bytes += len;
	}
	assert_int_equal(t->bytes, bytes);
}

static void test_push_wrap_trim(void **state)
{
	(void)state;
	struct repl_tail t;
	repl_tail_init(&t);
	assert_int_equal(repl_tail_last(&t), 0);
	assert_null(repl_tail_at(&t, 1));
	for (uint64_t i = 10; i < 40; i++)
		push(&t, i, 1);
	assert_holds(&t, 10, 39, 1);
	/* trim: nothing past upto, never; those under keep_from go */
	repl_tail_trim(&t, 39, 25, 1000, 1 << 20);
	assert_holds(&t, 25, 39, 1);
	repl_tail_trim(&t, 30, 100, 1000, 1 << 20);
	assert_holds(&t, 31, 39, 1);
	/* the ring wraps: pushes after trims from the front */
	for (uint64_t i = 40; i < 100; i++) {
		push(&t, i, 1);
		repl_tail_trim(&t, i, i - 5, 1000, 1 << 20);
	}
	assert_holds(&t, 94, 99, 1);
	/* bounds: entries and bytes */
	repl_tail_trim(&t, 99, 0, 3, 1 << 20);
	assert_holds(&t, 97, 99, 1);
	repl_tail_trim(&t, 99, 0, 100, 9);   /* "98@1" + "99@1" = 8 bytes */
	assert_holds(&t, 98, 99, 1);
	/* upto holds the rest even over the bounds */
	repl_tail_trim(&t, 97, 1000, 0, 0);
	assert_holds(&t, 98, 99, 1);
	repl_tail_deinit(&t);
}

static void test_overwrite_gap_drop(void **state)
{
	(void)state;
	struct repl_tail t;
	repl_tail_init(&t);
	for (uint64_t i = 1; i <= 20; i++)
		push(&t, i, 1);
	/* an index inside the range: replaced from there on */
	push(&t, 15, 2);
	assert_int_equal(repl_tail_last(&t), 15);
	assert_int_equal(repl_tail_at(&t, 15)->epoch, 2);
	assert_int_equal(repl_tail_at(&t, 14)->epoch, 1);
	push(&t, 16, 2);
	assert_int_equal(t.n, 16);
	/* drop_from */
	repl_tail_drop_from(&t, 12);
	assert_holds(&t, 1, 11, 1);
	repl_tail_drop_from(&t, 50);   /* past the end: nothing */
	assert_holds(&t, 1, 11, 1);
	/* a gap: everything goes, the new entry starts a range */
	push(&t, 30, 3);
	assert_holds(&t, 30, 30, 3);
	/* before the first: likewise */
	push(&t, 5, 3);
	assert_holds(&t, 5, 5, 3);
	/* the first index itself: replaced */
	push(&t, 6, 3);
	push(&t, 5, 4);
	assert_holds(&t, 5, 5, 4);
	repl_tail_drop_from(&t, 1);
	assert_int_equal(t.n, 0);
	assert_int_equal(t.bytes, 0);
	assert_int_equal(repl_tail_last(&t), 0);
	/* empty payloads */
	repl_tail_push(&t, 7, 1, 1, NULL, 0);
	assert_int_equal(repl_tail_at(&t, 7)->kind, 1);
	assert_int_equal(repl_tail_at(&t, 7)->len, 0);
	repl_tail_clear(&t);
	assert_null(repl_tail_at(&t, 7));
	repl_tail_deinit(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_push_wrap_trim),
		cmocka_unit_test(test_overwrite_gap_drop),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
