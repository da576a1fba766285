/* delivery.h: local delivery of queued mail to the store tier.
 *
 * The one module that joins the queue store (bytes) and the scheduler (when):
 * it implements the scheduler's ops. One attempt of a message walks its
 * recipients in order; for each one not yet done it calls
 * store_client_deliver(user = recipient, mailbox = "" (INBOX),
 * delivery_id = "<queue id>/<recipient index>", body, internal_date =
 * received_at) and waits for the answer before moving on:
 *   MAIL_OK (duplicate or not)  record the recipient done (sync) first, then
 *                               log event=delivered;
 *   temporary error             leave it; the attempt ends in RETRY;
 *   permanent error             log event=bounce_needed and record it done
 *                               (DSN generation is a later issue).
 * When every recipient is done the message is deleted (sync) and the
 * scheduler forgets it (event=removed).
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

/* store and client are borrowed and must outlive the delivery. settings
 * must pass queue_sched_settings_check(). */
queue_delivery *queue_delivery_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				      queue_store *store, store_client *client);

/* queue_id has just been stored durably: deliver it as soon as a slot is
 * free (a queue id already scheduled is left alone). */
void queue_delivery_enqueued(queue_delivery *d, const char *queue_id);

/* Schedule every message found in the store (call once at start, before
 * the loop runs). Returns the number of messages scheduled, or -1 with
 * *error_r. See the comment at its definition for why this is safe. */
int queue_recover(queue_delivery *d, const char **error_r);

/* Teardown is two steps because the store client calls back pending
 * deliveries from inside store_client_destroy():
 *   queue_delivery_stop(d);      // from now on answers are dropped
 *   store_client_destroy(&sc);   // pending calls come back, jobs freed
 *   queue_delivery_destroy(&d);  // scheduler timers closed, d freed
 * Run the loop once more afterwards (handles close asynchronously). */
void queue_delivery_stop(queue_delivery *d);
void queue_delivery_destroy(queue_delivery **d);

/* Messages held by the scheduler (for tests and metrics). */
size_t queue_delivery_pending(const queue_delivery *d);

#endif
