/* scheduler.h: what to deliver when (retries with backoff, bounded
 * concurrency). Public to the queue node and its tests.
 *
 * The scheduler knows messages only by queue id: it keeps one small entry per
 * queued message (id, attempts, a timer) and never sees bodies, recipients or
 * LevelDB (STYLE.md rule 4). It starts an attempt by calling ops->deliver;
 * whoever implements the ops (delivery.c in the node, a fake in the tests)
 * ends each attempt with exactly one queue_sched_done().
 *
 * An entry is in one of three states:
 *   waiting  its timer runs until the next attempt is due;
 *   ready    due, but max_inflight attempts are running: it waits in FIFO
 *            order for a slot;
 *   running  ops->deliver was called and queue_sched_done() was not yet.
 *
 * Loop thread only.
 */
#ifndef MAIL_QUEUE_SCHEDULER_H
#define MAIL_QUEUE_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* Tunables (STYLE.md rule 15); queue_sched_settings_default() fills the
 * defaults and queue_sched_settings_check() enforces the ranges. */
struct queue_sched_settings {
	/* Delay after the first failed attempt; it doubles after each further
	 * failure. min 1, max 3600000, default 1000 ms. */
	uint32_t retry_initial_ms;
	/* Cap of that delay. min retry_initial_ms, max 86400000, default 60000 ms. */
	uint32_t retry_max_ms;
	/* Attempts running at once (each holds at most one store RPC).
	 * min 1, max 100000, default 64. */
	uint32_t max_inflight;
};

/* The bounds above, for the queue node's option rows. */
#define QUEUE_SCHED_RETRY_INITIAL_MS_DEFAULT 1000u
#define QUEUE_SCHED_RETRY_INITIAL_MS_MAX 3600000u
#define QUEUE_SCHED_RETRY_MAX_MS_DEFAULT 60000u
#define QUEUE_SCHED_RETRY_MAX_MS_MAX 86400000u
#define QUEUE_SCHED_MAX_INFLIGHT_DEFAULT 64u
#define QUEUE_SCHED_MAX_INFLIGHT_MAX 100000u

void queue_sched_settings_default(struct queue_sched_settings *set);
/* Returns 0, or -1 with *error_r (static text naming the bad setting). */
int queue_sched_settings_check(const struct queue_sched_settings *set, const char **error_r);

/* Delay before the next attempt after `failures` failed attempts in a row
 * (failures >= 1): retry_initial_ms * 2^(failures-1), capped at
 * retry_max_ms. Pure. */
uint64_t queue_sched_backoff_ms(const struct queue_sched_settings *set, uint32_t failures);

struct queue_sched_ops {
	/* Start one delivery attempt of queue_id (the string is valid during
	 * the call only). Must end, now or later, with exactly one
	 * queue_sched_done(sched, queue_id, ...); calling it from inside
	 * deliver is allowed. */
	void (*deliver)(void *ctx, const char *queue_id, uint32_t attempt);
};

enum queue_sched_outcome {
	QUEUE_SCHED_FINISHED = 0, /* nothing left to do: forget the message */
	QUEUE_SCHED_RETRY = 1,    /* something failed temporarily: try again later */
};

typedef struct queue_sched queue_sched;

/* ops and ctx are borrowed and must outlive the scheduler. settings are
 * copied (they must pass queue_sched_settings_check). */
queue_sched *queue_sched_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				const struct queue_sched_ops *ops, void *ctx);
/* Stop every timer and free the entries. Attempts still running are
 * forgotten: a later queue_sched_done() for them must not be made (stop the
 * delivery side first). The timers close asynchronously: run the loop once
 * more before uv_loop_close(). NULLs *sched. */
void queue_sched_destroy(queue_sched **sched);

/* Schedule queue_id for an attempt after delay_ms (0: as soon as a slot is
 * free). Idempotent: a queue id the scheduler already holds is left as it is.
 * Returns 1 when added, 0 when already present, -1 when queue_id is too long. */
int queue_sched_add(queue_sched *sched, const char *queue_id, uint64_t delay_ms);

/* End the running attempt of queue_id. FINISHED forgets the entry; RETRY
 * counts a failure and re-arms the entry after queue_sched_backoff_ms().
 * Returns the delay chosen for RETRY (for the caller's log line), 0 for
 * FINISHED, or -1 when queue_id has no running attempt. Freed slots are
 * refilled on a later loop iteration, never from inside this call. */
int64_t queue_sched_done(queue_sched *sched, const char *queue_id,
			 enum queue_sched_outcome outcome);

/* End the running attempt of queue_id with a retry after exactly delay_ms
 * (the replicated schedule of remote deliveries, rather than the backoff).
 * Counts a failure like RETRY. Returns delay_ms, or -1 when queue_id has
 * no running attempt. */
int64_t queue_sched_retry_in(queue_sched *sched, const char *queue_id, uint64_t delay_ms);

/* Drop a waiting or ready entry (a held or deleted message). Returns 1
 * dropped, 0 not held, -1 running (it ends by queue_sched_done). */
int queue_sched_forget(queue_sched *sched, const char *queue_id);

/* When the message of queue_id was received (ms since the epoch; for the
 * queue's age metric). No-op for an unknown id. */
void queue_sched_set_born(queue_sched *sched, const char *queue_id, int64_t born_ms);
/* The smallest born time of the entries held (0 when none). O(entries). */
int64_t queue_sched_oldest_born(const queue_sched *sched);

/* 1 when queue_id has a running attempt. */
int queue_sched_running(const queue_sched *sched, const char *queue_id);

/* Make every waiting entry for which pred(queue_id, arg) returns 1 due
 * now (its attempt starts as soon as a slot is free; ready and running
 * entries are left as they are). Used when this node stops leading a
 * partition: each attempt then finds it may not deliver and ends FINISHED,
 * instead of the entry lingering until its backoff expires. Returns the
 * number of entries made due. Attempts start from the loop, never from
 * inside this call. */
size_t queue_sched_expedite(queue_sched *sched, int (*pred)(const char *queue_id, void *arg),
			    void *arg);

/* Counters for tests and metrics. */
size_t queue_sched_count(const queue_sched *sched);    /* entries held */
size_t queue_sched_inflight(const queue_sched *sched); /* attempts running */

#endif
