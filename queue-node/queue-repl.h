/* queue-repl.h: the queue node's replicated mode (public to the node).
 *
 * The queue store is the state machine of a repl_host for the role
 * "queue": every message (ENQUEUE), every recipient done and every removal
 * is an entry (queue.proto LogEntry) of the log of the message's partition
 * (router_partition_of(queue id)), applied by every replica with
 * queue_store_apply(). So an ENQUEUE is acknowledged only once the message
 * is durable on every in-sync replica, at least a majority (the 250).
 *
 * Only the partition's leader (repl-host.h: primary, caught up to its
 * barrier) delivers its messages: when a node starts leading a partition it
 * schedules every message of it found in its store (it holds every
 * acknowledged one), and messages enqueued later are scheduled as they are
 * applied. Delivery records progress through queue_repl_journal(), i.e.
 * through the same log; a node that lost the lead finds out there
 * (NOT_PRIMARY) and drops the message, which the new leader delivers with
 * the same delivery ids (the store deduplicates).
 *
 * Loop thread only.
 */
#ifndef MAIL_QUEUE_REPL_H
#define MAIL_QUEUE_REPL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "delivery.h"
#include "queue-store.h"
#include "queue.pb-c.h"
#include "repl-host.h"

typedef struct queue_repl queue_repl;

/* Start the host (set->role must be ROUTER_ROLE_QUEUE) on server, with
 * store (borrowed) as the state machine. Returns 0, or -1 with *error_r;
 * destroy either way. */
int queue_repl_start(uv_loop_t *loop, rpc_server *server, const struct repl_host_settings *set,
		     queue_store *store, queue_repl **qr_r, const char **error_r);
/* The router the host keeps current (for the store client). */
router *queue_repl_router(queue_repl *qr);
/* repl_host_metrics of the queue's partitions. */
void queue_repl_metrics(queue_repl *qr, buf *out, const char *labels);
/* The journal delivery must use (its ctx is qr). */
const struct queue_journal *queue_repl_journal(void);
/* Deliveries go to d (borrowed) from now on; call once, before the loop
 * runs. */
void queue_repl_set_delivery(queue_repl *qr, queue_delivery *d);

/* status: MAIL_OK = the message is durable on the partition's replicas
 * (duplicate = 1 when its queue id was already stored); else the outcome
 * is unknown (retry with the same queue id). */
typedef void queue_repl_enqueue_cb(int status, int duplicate, void *arg);
/* Propose rec for its partition. MAIL_OK: cb is called once, later;
 * MAIL_ERR_NOT_PRIMARY (not this node's partition now): cb is never
 * called. rec is packed before return. */
int queue_repl_enqueue(queue_repl *qr, const Queue__QueuedMessage *rec,
		       queue_repl_enqueue_cb *cb, void *arg);

/* Leave the ring, stop the timers (repl_host_stop). */
void queue_repl_stop(queue_repl *qr);
/* Close the partitions: pending proposals and journal calls fail
 * (UNAVAILABLE) from inside this call. Destroy the RPC server first.
 * NULLs *qr. */
void queue_repl_destroy(queue_repl **qr);

#endif
