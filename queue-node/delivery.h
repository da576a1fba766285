/* delivery.h: local delivery of queued mail to the store tier.
 *
 * The one module that joins the queue store (bytes) and the scheduler (when):
 * it implements the scheduler's ops. One attempt of a message walks its
 * recipients in order; for each one not yet done it calls
 * store_client_deliver(user = recipient, mailbox = "" (INBOX),
 * delivery_id = "<queue id>/<recipient index>", body, internal_date =
 * received_at) and waits for the answer before moving on:
 *   MAIL_OK (duplicate or not)  record the recipient done (the journal) first,
 *                               then log event=delivered;
 *   temporary error             leave it; the attempt ends in RETRY;
 *   permanent error             log event=bounce_needed and record it done
 *                               (DSN generation is a later issue).
 * When every recipient is done the message is removed (the journal) and
 * the scheduler forgets it (event=removed).
 *
 * Progress is recorded through a journal (below): directly in the queue
 * store with sync writes (standalone, tests), or through the partition's
 * replicated log (queue-repl.h), where a node delivers only the messages
 * of partitions it leads.
 *
 * Loop thread only.
 */
#ifndef MAIL_QUEUE_DELIVERY_H
#define MAIL_QUEUE_DELIVERY_H

#include <uv.h>

#include "queue-store.h"
#include "scheduler.h"
#include "store-client.h"

typedef struct queue_delivery queue_delivery;

/* Ends a journal call: MAIL_OK = recorded durably; MAIL_ERR_NOT_PRIMARY =
 * this node no longer leads the message's partition (the attempt stops and
 * the scheduler forgets the message: its new leader delivers it); any
 * other status = not recorded (retry later). */
typedef void queue_journal_cb(int status, void *arg);

/* How an attempt records its progress. Each call ends with exactly one
 * cb(status, arg), now or later, from the loop. */
struct queue_journal {
	/* Recipient rcpt_index of queue_id is done. */
	void (*mark_done)(void *ctx, const char *queue_id, uint32_t rcpt_index,
			  queue_journal_cb *cb, void *arg);
	/* Every recipient of queue_id is done: forget the message. */
	void (*remove)(void *ctx, const char *queue_id, queue_journal_cb *cb, void *arg);
	/* 1 when this node may deliver queue_id now (it leads the partition).
	 * Asked when an attempt starts. */
	int (*may_deliver)(void *ctx, const char *queue_id);
};

/* store and client are borrowed and must outlive the delivery. settings
 * must pass queue_sched_settings_check(). journal (borrowed, with its ctx)
 * NULL: sync writes to store, every message may be delivered. */
queue_delivery *queue_delivery_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				      queue_store *store, store_client *client,
				      const struct queue_journal *journal, void *journal_ctx);

/* queue_id has just been stored durably: deliver it as soon as a slot is
 * free (a queue id already scheduled is left alone). */
void queue_delivery_enqueued(queue_delivery *d, const char *queue_id);

/* Schedule every message found in the store (call once at start, before
 * the loop runs). Returns the number of messages scheduled, or -1 with
 * *error_r. See the comment at its definition for why this is safe. */
int queue_recover(queue_delivery *d, const char **error_r);

/* The replicated mode: this node now leads a partition. Schedule every
 * message found in the store for which mine(queue_id, arg) returns 1 (the
 * messages of that partition; one already scheduled is left as it is).
 * Returns the number newly scheduled, or -1 with *error_r. */
typedef int queue_delivery_filter(const char *queue_id, void *arg);
int queue_delivery_take_over(queue_delivery *d, queue_delivery_filter *mine, void *arg,
			     const char **error_r);
/* The replicated mode: this node stopped leading a partition. Its
 * scheduled messages (mine(queue_id, arg) = 1) that wait for a retry are
 * tried at once, so each finds it may no longer deliver and is dropped
 * from the scheduler now (the new leader has them). Returns how many. */
size_t queue_delivery_release(queue_delivery *d, queue_delivery_filter *mine, void *arg);

/* Teardown is two steps because the store client (and the journal) call
 * back pending work from inside their destroy:
 *   queue_delivery_stop(d);      // from now on answers are dropped
 *   ...destroy the journal...    // pending journal calls come back
 *   store_client_destroy(&sc);   // pending calls come back, jobs freed
 *   queue_delivery_destroy(&d);  // scheduler timers closed, d freed
 * Run the loop once more afterwards (handles close asynchronously). */
void queue_delivery_stop(queue_delivery *d);
void queue_delivery_destroy(queue_delivery **d);

/* Messages held by the scheduler (for tests and metrics). */
size_t queue_delivery_pending(const queue_delivery *d);

#endif
