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
	/* Replace queue_id's state with st (its DELIVERED and FAILED
	 * recipients become done; with none left pending the message is
	 * removed), or with remove set remove the message; dsn (NULL: none)
	 * is a message to store in the same step (a DSN about queue_id, whose
	 * id is in queue_id's partition: see same_partition). */
	void (*record)(void *ctx, const char *queue_id, const Queue__MessageState *st,
		       int remove, const Queue__QueuedMessage *dsn, queue_journal_cb *cb,
		       void *arg);
	/* 1 when the ids a and b belong to the same partition. */
	int (*same_partition)(void *ctx, const char *a, const char *b);
	/* The partitions there are (0: not known yet), whether this node
	 * leads partition p now, and queue_id's partition (-1: not known). */
	uint32_t (*partitions)(void *ctx);
	int (*leads_partition)(void *ctx, uint32_t p);
	int (*partition_of)(void *ctx, const char *queue_id, uint32_t *p_r);
};

/* store and client are borrowed and must outlive the delivery. settings
 * must pass queue_sched_settings_check(). journal (borrowed, with its ctx)
 * NULL: sync writes to store, every message may be delivered. */
queue_delivery *queue_delivery_create(uv_loop_t *loop, const struct queue_sched_settings *set,
				      queue_store *store, store_client *client,
				      const struct queue_journal *journal, void *journal_ctx);

/* Remote recipients (queue.proto rcpt_remote) and what becomes of them.
 * Without it they wait, deferred. */
struct outbound;
struct queue_outbound_settings {
	/* Delays after the 1st, 2nd, ... failed attempt, seconds; the last one
	 * repeats. Default 60, 300, 900, 1800, 3600, 7200 (docs/outbound.md). */
	const uint32_t *retry_s;
	size_t n_retry;
	/* A message not delivered this long after it was received bounces
	 * (its pending recipients fail). Seconds; default 5 days. */
	uint32_t expiry_s;
	/* Our host name: the DSNs' Reporting-MTA and From: domain (copied). */
	const char *reporting_mta;
	/* A message whose envelope asks for it (its tenant's option,
	 * EnqueueRequest.delay_warning) gets one "delayed" DSN this long after
	 * it was received while recipients are still deferred. Seconds;
	 * default 4 h; 0: never. */
	uint32_t delay_warning_s;
};
#define QUEUE_RETRY_SCHEDULE_DEFAULT "60,300,900,1800,3600,7200"
#define QUEUE_EXPIRY_S_DEFAULT (5u * 86400u)
#define QUEUE_DELAY_WARNING_S_DEFAULT (4u * 3600u)
/* ob (borrowed; must outlive d, and be destroyed after queue_delivery_stop)
 * delivers remote recipients from now on. set is copied. Call before the
 * loop runs. */
void queue_delivery_set_outbound(queue_delivery *d, struct outbound *ob,
				 const struct queue_outbound_settings *set);
/* Parse "60,300,..." (1..32 values, each 1..86400) into out (room for 32).
 * Returns the count, or -1. */
int queue_retry_schedule_parse(const char *text, uint32_t *out, size_t max);

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

/* ---- administration (queue-admin.c, mailctl queue) ---------------------- */

/* 1 when this node leads queue_id's partition now (it may act on it). */
int queue_delivery_leads(queue_delivery *d, const char *queue_id);
/* The journal's partitions, leads_partition and partition_of (above). */
const struct queue_journal *queue_delivery_journal(const queue_delivery *d, void **ctx_r);
/* 1 when an attempt of queue_id is running now. */
int queue_delivery_running(const queue_delivery *d, const char *queue_id);
/* An administrator's action on queue_id (a message of a partition this
 * node leads), recorded through the journal (replicated):
 *   RETRY          the next attempt is now (a held message stays held);
 *   HOLD           no attempt starts until RELEASE (a running one ends);
 *   RELEASE        un-hold; the next attempt is now;
 *   DELETE         the message is removed, no DSN;
 *   DELETE_BOUNCE  removed, and a "failed" DSN for its pending recipients
 *                  queued to the sender, in the same log entry.
 * On a message whose attempt is running, the action is recorded when the
 * attempt ends (with its outcome). cb(status, arg) once, later: MAIL_OK
 * recorded; MAIL_ERR_NOT_FOUND no such message here; MAIL_ERR_NOT_PRIMARY
 * this node does not lead it; MAIL_ERR_PARAMS a bad action; else not
 * recorded (temporary). */
void queue_delivery_action(queue_delivery *d, const char *queue_id, Queue__QueueAction action,
			   queue_journal_cb *cb, void *arg);

/* Append the outbound metrics in Prometheus text format (labels: the
 * node's, "" or "k=\"v\",..."): recipients sent, deferred and failed per
 * destination domain since start (mail_outbound_rcpts_total; at most
 * DELIVERY_DOMAINS_MAX domains, the rest as domain="_other"), and the age
 * of the oldest message this node is delivering (mail_queue_oldest_seconds). */
#define DELIVERY_DOMAINS_MAX 256
struct buf;
void queue_delivery_metrics(const queue_delivery *d, struct buf *out, const char *labels);

/* Messages held by the scheduler (for tests and metrics). */
size_t queue_delivery_pending(const queue_delivery *d);

#endif
