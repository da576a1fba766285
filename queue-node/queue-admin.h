/* queue-admin.h: queue administration on one queue node (mailctl queue;
 * queue.proto LIST, SHOW, ACTION; docs/outbound.md "Queue administration").
 *
 * A node answers only for the messages of the partitions it leads (the
 * replicas' copies of other partitions are someone else's to show): the
 * caller asks every alive queue node and merges. Reading walks the queue
 * store; acting goes through the delivery side (queue_delivery_action),
 * which records each change in the partition's replicated log.
 *
 * What a message's state is (QueueSummary.state), from the replicated
 * MessageState (queue_store_get's msg->state; NULL: never attempted):
 *   HELD      state->held;
 *   ACTIVE    an attempt runs now, or the next attempt is due (its time
 *             has come: it waits only for a free delivery slot);
 *   DEFERRED  otherwise: waiting for its next attempt.
 * last_error is the reply of the recipient deferred last ("451 4.3.0
 * text"; "4.4.1 text" when there was no reply, our own reason).
 *
 * Cost: LIST and the bulk ACTIONs decode every message of the led
 * partitions (bodies included) on the loop thread; fine for an operator's
 * command on queues of thousands, not for a monitoring poll.
 *
 * Loop thread only.
 */
#ifndef MAIL_QUEUE_ADMIN_H
#define MAIL_QUEUE_ADMIN_H

#include <stdint.h>

#include "queue-store.h"
#include "queue.pb-c.h"
#include "rpc.h"

/* QueueListRequest.limit: 0 means the default; larger values are cut to
 * the maximum (a reply must fit an RPC frame: ~300 bytes an entry). */
#define QUEUE_ADMIN_LIST_DEFAULT 1000u
#define QUEUE_ADMIN_LIST_MAX 100000u
/* Bulk ACTION (all, domain): messages acted on at once. */
#define QUEUE_ADMIN_ACTION_INFLIGHT 16u

/* Ends one action: an enum mail_error (delivery.h's queue_journal_cb). */
typedef void queue_admin_done_cb(int status, void *arg);

/* What the admin asks of the delivery side; queue-service.c passes
 * queue_delivery's (delivery.h: queue_delivery_leads, _running, _action),
 * tests a fake. ctx is given to create. */
struct queue_admin_ops {
	/* 1 when this node leads queue_id's partition now. */
	int (*leads)(void *ctx, const char *queue_id);
	/* 1 when an attempt of queue_id runs now. */
	int (*running)(void *ctx, const char *queue_id);
	/* Act on queue_id; cb(status, arg) exactly once, from inside the call
	 * or later (delivery.h's queue_delivery_action answers a message it
	 * does not have or lead at once). */
	void (*action)(void *ctx, const char *queue_id, Queue__QueueAction action,
		       queue_admin_done_cb *cb, void *arg);
	/* The partitions there are (0: not known yet); 1 when this node
	 * leads partition p now; queue_id's partition into *p_r (0), or -1
	 * when not known. */
	uint32_t (*partitions)(void *ctx);
	int (*leads_partition)(void *ctx, uint32_t p);
	int (*partition_of)(void *ctx, const char *queue_id, uint32_t *p_r);
};

typedef struct queue_admin queue_admin;

/* store and ops (with ctx) are borrowed and must outlive the admin;
 * node_id (this node's id, QueueSummary.node) is copied. */
queue_admin *queue_admin_create(queue_store *store, const struct queue_admin_ops *ops,
				void *ctx, const char *node_id);
/* Free. Bulk actions still running are detached: they start no further
 * action and reply once the callbacks of those in flight came back.
 * NULLs *admin. */
void queue_admin_destroy(queue_admin **admin);

/* LIST: the messages of the led partitions that match req (domain: a
 * pending recipient there, case-insensitive; state), in queue id order, at
 * most the limit (truncated set when more matched). Returns MAIL_OK with
 * *resp_r (the caller frees it with protobuf_c_message_free_unpacked), or
 * MAIL_ERR_TEMP when the store could not be read. */
int queue_admin_list(queue_admin *admin, const Queue__QueueListRequest *req,
		     Queue__QueueListResponse **resp_r);
/* SHOW: MAIL_OK with *resp_r (freed like LIST's); MAIL_ERR_PARAMS for a
 * malformed id; MAIL_ERR_NOT_FOUND when this node has no such message;
 * MAIL_ERR_NOT_PRIMARY when it holds a copy but does not lead its
 * partition (its leader answers); MAIL_ERR_TEMP on a read error. */
int queue_admin_show(queue_admin *admin, const char *queue_id, Queue__QueueShowResponse **resp_r);

/* ACTION. One message (queue_id): the delivery's status (MAIL_OK,
 * MAIL_ERR_NOT_FOUND, MAIL_ERR_NOT_PRIMARY, ...) with affected 1 or 0.
 * all or domain: every matching message of the led partitions, at most
 * QUEUE_ADMIN_ACTION_INFLIGHT at a time; MAIL_OK with the number recorded
 * (messages gone or handed over meanwhile are skipped), or the first
 * error when none could be recorded but some failed. MAIL_ERR_PARAMS
 * for a bad request (no action, not exactly one target, bad id or
 * domain). cb(status, affected, arg) exactly once, from inside this call
 * (a bad request, an empty selection, actions the delivery side answered
 * at once) or later. */
typedef void queue_admin_action_cb(int status, uint32_t affected, void *arg);
void queue_admin_action(queue_admin *admin, const Queue__QueueActionRequest *req,
			queue_admin_action_cb *cb, void *arg);

/* The RPC handlers (queue-service.c's method table calls these with its
 * admin, NULL until the node has started: MAIL_ERR_UNAVAILABLE). Each
 * replies to call exactly once; req is the method's request message. */
void queue_admin_rpc_list(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req);
void queue_admin_rpc_show(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req);
void queue_admin_rpc_action(queue_admin *admin, rpc_call *call, const ProtobufCMessage *req);

/* Pure helpers (unit-tested). The state of msg at now_ms, given whether an
 * attempt runs (running). */
Queue__QueueFilter queue_admin_state_of(const Queue__QueuedMessage *msg, int running,
					int64_t now_ms);
/* 1 when recipient i of msg is done (its done key, or a DELIVERED or
 * FAILED outcome in msg->state). */
int queue_admin_rcpt_done(const Queue__QueuedMessage *msg, size_t i);

#endif
