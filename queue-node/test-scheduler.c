/* Unit tests for scheduler.c, driven through its interface with a fake
 * delivery function on a real uv loop: the backoff sequence and its cap,
 * retries that really wait, the in-flight bound with FIFO refill,
 * idempotent add, misuse answered with -1, teardown that leaves the loop
 * closable. No network, no LevelDB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "scheduler.h"

#define MAX_CALLS 64

enum fake_mode {
	FAKE_HOLD,      /* record the call; the test ends the attempt */
	FAKE_FINISH,    /* end it at once with FINISHED (from inside deliver) */
	FAKE_FAIL_UNTIL /* RETRY until attempt == succeed_at, then FINISHED */
};

struct fake {
	queue_sched *sched;
	enum fake_mode mode;
	uint32_t succeed_at;
	size_t n_calls;
	char ids[MAX_CALLS][65];
	uint32_t attempts[MAX_CALLS];
	uint64_t at[MAX_CALLS];       /* uv_now of each call */
	int64_t delays[MAX_CALLS];    /* what queue_sched_done returned */
	uv_loop_t *loop;
};

static void fake_deliver(void *ctx, const char *queue_id, uint32_t attempt)
{
	struct fake *f = ctx;
	assert_true(f->n_calls < MAX_CALLS);
	size_t n = f->n_calls++;
	snprintf(f->ids[n], sizeof f->ids[n], "%s", queue_id);
	f->attempts[n] = attempt;
	f->at[n] = uv_now(f->loop);
	if (f->mode == FAKE_FINISH) {
		f->delays[n] = queue_sched_done(f->sched, queue_id, QUEUE_SCHED_FINISHED);
	} else if (f->mode == FAKE_FAIL_UNTIL) {
		enum queue_sched_outcome o = attempt >= f->succeed_at ? QUEUE_SCHED_FINISHED
								       : QUEUE_SCHED_RETRY;
		f->delays[n] = queue_sched_done(f->sched, queue_id, o);
	}
}

static const struct queue_sched_ops fake_ops = { .deliver = fake_deliver };

static void fake_start(struct fake *f, uv_loop_t *loop, const struct queue_sched_settings *set,
		       enum fake_mode mode)
{
	memset(f, 0, sizeof *f);
	uv_loop_init(loop);
	f->loop = loop;
	f->mode = mode;
	f->sched = queue_sched_create(loop, set, &fake_ops, f);
}

static void fake_stop(struct fake *f)
{
	queue_sched_destroy(&f->sched);
	assert_null(f->sched);
	uv_run(f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(f->loop), 0);
}

static void guard_cb(uv_timer_t *t)
{
	uv_stop(t->loop);
}

/* Run until the scheduler holds nothing, or fail after limit_ms. */
static void run_until_empty(struct fake *f, uint64_t limit_ms)
{
	uv_timer_t guard;
	uv_timer_init(f->loop, &guard);
	uv_timer_start(&guard, guard_cb, limit_ms, 0);
	while (queue_sched_count(f->sched) > 0 && uv_is_active((uv_handle_t *)&guard))
		uv_run(f->loop, UV_RUN_ONCE);
	assert_int_equal(queue_sched_count(f->sched), 0);
	uv_close((uv_handle_t *)&guard, NULL);
	uv_run(f->loop, UV_RUN_NOWAIT);
}

static void test_backoff_sequence(void **state)
{
	(void)state;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	assert_int_equal(set.retry_initial_ms, 1000);
	assert_int_equal(set.retry_max_ms, 60000);
	assert_int_equal(set.max_inflight, 64);
	const uint64_t want[] = { 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000 };
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(queue_sched_backoff_ms(&set, i + 1), want[i]);
	/* no overflow however long the failure streak */
	assert_int_equal(queue_sched_backoff_ms(&set, 1000000), 60000);
	assert_int_equal(queue_sched_backoff_ms(&set, UINT32_MAX), 60000);
	set.retry_initial_ms = 3;
	set.retry_max_ms = 10;
	assert_int_equal(queue_sched_backoff_ms(&set, 1), 3);
	assert_int_equal(queue_sched_backoff_ms(&set, 2), 6);
	assert_int_equal(queue_sched_backoff_ms(&set, 3), 10);
	assert_int_equal(queue_sched_backoff_ms(&set, 4), 10);
}

static void test_settings_check(void **state)
{
	(void)state;
	struct queue_sched_settings set;
	const char *error = NULL;
	queue_sched_settings_default(&set);
	assert_int_equal(queue_sched_settings_check(&set, &error), 0);
	set.max_inflight = 0;
	assert_int_equal(queue_sched_settings_check(&set, &error), -1);
	assert_non_null(strstr(error, "max_inflight"));
	queue_sched_settings_default(&set);
	set.retry_max_ms = set.retry_initial_ms - 1;
	assert_int_equal(queue_sched_settings_check(&set, &error), -1);
	assert_non_null(strstr(error, "retry_max_ms"));
	queue_sched_settings_default(&set);
	set.retry_initial_ms = 0;
	assert_int_equal(queue_sched_settings_check(&set, &error), -1);
}

static void test_concurrency_limit(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	set.max_inflight = 3;
	fake_start(&f, &loop, &set, FAKE_HOLD);
	char id[16];
	for (int i = 0; i < 10; i++) {
		snprintf(id, sizeof id, "m%d", i);
		assert_int_equal(queue_sched_add(f.sched, id, 0), 1);
	}
	/* add never delivers from inside itself */
	assert_int_equal(f.n_calls, 0);
	assert_int_equal(queue_sched_count(f.sched), 10);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 3);
	assert_int_equal(queue_sched_inflight(f.sched), 3);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 3); /* still bounded */
	/* Each finished attempt frees one slot, refilled in FIFO order on a
	 * later loop iteration. */
	for (size_t done = 0; done < 10; done++) {
		assert_string_equal(f.ids[done], (snprintf(id, sizeof id, "m%zu", done), id));
		assert_int_equal(queue_sched_done(f.sched, f.ids[done], QUEUE_SCHED_FINISHED), 0);
		size_t started = f.n_calls;
		uv_run(&loop, UV_RUN_NOWAIT);
		size_t want = done + 4 < 10 ? done + 4 : 10;
		assert_int_equal(f.n_calls, want);
		assert_true(f.n_calls >= started);
		assert_true(queue_sched_inflight(f.sched) <= 3);
	}
	assert_int_equal(queue_sched_count(f.sched), 0);
	assert_int_equal(queue_sched_inflight(f.sched), 0);
	fake_stop(&f);
}

static void test_retry_waits_backoff(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set = { .retry_initial_ms = 20, .retry_max_ms = 80,
					    .max_inflight = 4 };
	fake_start(&f, &loop, &set, FAKE_FAIL_UNTIL);
	f.succeed_at = 6;
	assert_int_equal(queue_sched_add(f.sched, "R1", 0), 1);
	run_until_empty(&f, 5000);
	assert_int_equal(f.n_calls, 6);
	const int64_t want[] = { 20, 40, 80, 80, 80, 0 };
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(f.attempts[i], i + 1);
		assert_int_equal(f.delays[i], want[i]);
		if (i > 0) {
			uint64_t gap = f.at[i] - f.at[i - 1];
			/* a timer never fires early; allow a noisy machine to be late */
			assert_true(gap >= (uint64_t)want[i - 1]);
			assert_true(gap < (uint64_t)want[i - 1] + 500);
		}
	}
	fake_stop(&f);
}

static void test_delayed_add(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	fake_start(&f, &loop, &set, FAKE_FINISH);
	uv_update_time(&loop);
	uint64_t t0 = uv_now(&loop);
	assert_int_equal(queue_sched_add(f.sched, "later", 50), 1);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 0);
	run_until_empty(&f, 2000);
	assert_int_equal(f.n_calls, 1);
	assert_true(f.at[0] - t0 >= 50);
	fake_stop(&f);
}

static int starts_with_a(const char *id, void *arg)
{
	(void)arg;
	return id[0] == 'a';
}

/* A released partition: its waiting entries become due at once, the rest
 * keep their timers. */
static void test_expedite(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	fake_start(&f, &loop, &set, FAKE_FINISH);
	assert_int_equal(queue_sched_add(f.sched, "a1", 600000), 1);
	assert_int_equal(queue_sched_add(f.sched, "a2", 600000), 1);
	assert_int_equal(queue_sched_add(f.sched, "b1", 600000), 1);
	assert_int_equal(queue_sched_expedite(f.sched, starts_with_a, NULL), 2);
	assert_int_equal(f.n_calls, 0); /* never from inside the call */
	uv_timer_t guard;
	uv_timer_init(&loop, &guard);
	uv_timer_start(&guard, guard_cb, 2000, 0);
	while (queue_sched_count(f.sched) > 1 && uv_is_active((uv_handle_t *)&guard))
		uv_run(&loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&guard, NULL);
	assert_int_equal(f.n_calls, 2);
	assert_int_equal(f.ids[0][0], 'a');
	assert_int_equal(f.ids[1][0], 'a');
	assert_int_equal(queue_sched_count(f.sched), 1); /* b1 still waits */
	assert_int_equal(queue_sched_expedite(f.sched, starts_with_a, NULL), 0);
	fake_stop(&f);
}

static void test_finish_inside_deliver(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	set.max_inflight = 1;
	fake_start(&f, &loop, &set, FAKE_FINISH);
	char id[16];
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "s%d", i);
		queue_sched_add(f.sched, id, 0);
	}
	run_until_empty(&f, 2000);
	assert_int_equal(f.n_calls, 20);
	for (int i = 0; i < 20; i++) {
		snprintf(id, sizeof id, "s%d", i);
		assert_string_equal(f.ids[i], id);
		assert_int_equal(f.attempts[i], 1);
	}
	fake_stop(&f);
}

static void test_idempotent_add_and_misuse(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	fake_start(&f, &loop, &set, FAKE_HOLD);
	assert_int_equal(queue_sched_add(f.sched, "same", 0), 1);
	assert_int_equal(queue_sched_add(f.sched, "same", 0), 0);
	assert_int_equal(queue_sched_add(f.sched, "same", 1000), 0);
	assert_int_equal(queue_sched_count(f.sched), 1);
	char longid[80];
	memset(longid, 'x', 65);
	longid[65] = '\0';
	assert_int_equal(queue_sched_add(f.sched, longid, 0), -1);
	/* not running yet, unknown: refused */
	assert_int_equal(queue_sched_done(f.sched, "same", QUEUE_SCHED_FINISHED), -1);
	assert_int_equal(queue_sched_done(f.sched, "ghost", QUEUE_SCHED_RETRY), -1);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 1);
	/* a running id added again (a duplicate enqueue) is not started twice */
	assert_int_equal(queue_sched_add(f.sched, "same", 0), 0);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 1);
	assert_int_equal(queue_sched_done(f.sched, "same", QUEUE_SCHED_RETRY), 1000);
	assert_int_equal(queue_sched_done(f.sched, "same", QUEUE_SCHED_RETRY), -1);
	assert_int_equal(queue_sched_count(f.sched), 1);
	assert_int_equal(queue_sched_inflight(f.sched), 0);
	fake_stop(&f);
}

static void test_many_entries_and_teardown(void **state)
{
	(void)state;
	uv_loop_t loop;
	struct fake f;
	struct queue_sched_settings set;
	queue_sched_settings_default(&set);
	set.max_inflight = 2;
	fake_start(&f, &loop, &set, FAKE_HOLD);
	char id[16];
	/* enough to make the table grow several times */
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof id, "n%d", i);
		assert_int_equal(queue_sched_add(f.sched, id, i % 2 ? 0 : 100000), 1);
	}
	for (int i = 0; i < 5000; i++) {
		snprintf(id, sizeof id, "n%d", i);
		assert_int_equal(queue_sched_add(f.sched, id, 0), 0);
	}
	assert_int_equal(queue_sched_count(f.sched), 5000);
	uv_run(&loop, UV_RUN_NOWAIT);
	assert_int_equal(f.n_calls, 2);
	/* Destroy with waiting, ready and running entries: the loop must
	 * still close (every timer closed). */
	fake_stop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_sequence),
		cmocka_unit_test(test_settings_check),
		cmocka_unit_test(test_concurrency_limit),
		cmocka_unit_test(test_retry_waits_backoff),
		cmocka_unit_test(test_delayed_add),
		cmocka_unit_test(test_finish_inside_deliver),
		cmocka_unit_test(test_expedite),
		cmocka_unit_test(test_idempotent_add_and_misuse),
		cmocka_unit_test(test_many_entries_and_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
