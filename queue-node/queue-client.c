/* queue-client.c: queue_client_enqueue() over the router and an RPC pool.
 *
 * One operation per enqueue: a private copy of the request (so retries need
 * no caller memory), a deadline QUEUE_CLIENT_DEADLINE_MS from the call and a
 * timer for the backoff between tries. Every try looks the queue id up
 * again, so a retry after router_refresh() follows a moved partition.
 */
#include "queue-client.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mail-error.h"
#include "rpc.h"
#include "util.h"
#include "xalloc.h"

#define QC_BACKOFF_FIRST_MS 50u
#define QC_BACKOFF_MAX_MS 1000u

struct qc_op {
	queue_client *c;
	struct qc_op *prev, *next; /* c->ops */
	Queue__EnqueueRequest *req; /* unpacked private copy */
	uint64_t deadline;          /* util_now_mono_ms() based */
	uint32_t backoff_ms;
	uint32_t tries;
	int last_status;
	int in_rpc;                 /* an RPC callback is outstanding */
	uv_timer_t timer;
	queue_client_cb *cb;
	void *arg;
};

struct queue_client {
	uv_loop_t *loop;
	router *router;
	rpc_pool *pool;
	struct qc_op *ops;
	int destroying;
};

static void qc__try(struct qc_op *op);

queue_client *queue_client_create(uv_loop_t *loop, router *router)
{
	queue_client *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->router = router;
	c->pool = rpc_pool_create(loop, "queue");
	return c;
}

void queue_client_new_id(char *out)
{
	util_random_hex(out, 12);
}

static void qc__op_close_cb(uv_handle_t *h)
{
	struct qc_op *op = h->data;
	queue__enqueue_request__free_unpacked(op->req, NULL);
	free(op);
}

/* Report status once and release the op. */
static void qc__finish(struct qc_op *op, int status)
{
	queue_client *c = op->c;
	if (op->prev != NULL)
		op->prev->next = op->next;
	else
		c->ops = op->next;
	if (op->next != NULL)
		op->next->prev = op->prev;
	uv_timer_stop(&op->timer);
	if (status != MAIL_OK)
		log_event(LOG_WARN, "queue-client",
			  "event=enqueue_failed qid=%s status=%s tries=%u", op->req->queue_id,
			  mail_error_info(status)->name, op->tries);
	op->cb(status, op->req->queue_id, op->arg);
	uv_close((uv_handle_t *)&op->timer, qc__op_close_cb);
}

static void qc__retry_cb(uv_timer_t *timer)
{
	qc__try(timer->data);
}

/* A temporary failure: retry after a backoff, or give up at the deadline. */
static void qc__retry(struct qc_op *op, int status)
{
	op->last_status = status;
	uint64_t now = util_now_mono_ms();
	if (op->c->destroying || now >= op->deadline) {
		qc__finish(op, status);
		return;
	}
	router_refresh(op->c->router);
	uint64_t wait = op->backoff_ms;
	if (now + wait > op->deadline)
		wait = op->deadline - now;
	op->backoff_ms = op->backoff_ms * 2 > QC_BACKOFF_MAX_MS ? QC_BACKOFF_MAX_MS
								: op->backoff_ms * 2;
	uv_timer_start(&op->timer, qc__retry_cb, wait, 0);
}

/* Worth another try: the cluster may answer differently in a moment. Not
 * every "temporary" row qualifies: LIMIT (too many recipients) would get the
 * same answer again, and the SMTP side turns it into a 452 at once. */
static int qc__retryable(int status)
{
	switch (status) {
	case MAIL_ERR_TEMP:
	case MAIL_ERR_UNAVAILABLE:
	case MAIL_ERR_NOT_PRIMARY:
	case MAIL_ERR_STALE_EPOCH:
	case MAIL_ERR_DEADLINE:
		return 1;
	default:
		return 0;
	}
}

static void qc__reply_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	(void)resp;
	struct qc_op *op = arg;
	op->in_rpc = 0;
	if (!qc__retryable(status))
		qc__finish(op, status);
	else
		qc__retry(op, status);
}

static void qc__try(struct qc_op *op)
{
	queue_client *c = op->c;
	const char *qid = op->req->queue_id;
	op->tries++;
	router_node node;
	if (router_lookup(c->router, ROUTER_ROLE_QUEUE, qid, strlen(qid), &node) != 1) {
		qc__retry(op, MAIL_ERR_UNAVAILABLE);
		return;
	}
	op->req->partition = node.partition;
	op->req->epoch = node.epoch;
	rpc_client *rc = rpc_pool_get(c->pool, node.host, node.port);
	uint64_t now = util_now_mono_ms();
	uint64_t left = op->deadline > now ? op->deadline - now : 1;
	uint32_t deadline = left < RPC_DEFAULT_DEADLINE_MS ? (uint32_t)left
							   : RPC_DEFAULT_DEADLINE_MS;
	op->in_rpc = 1;
	rpc_client_call(rc, QUEUE__METHOD__ENQUEUE, &op->req->base,
			&queue__enqueue_response__descriptor, deadline, qc__reply_cb, op);
}

void queue_client_enqueue(queue_client *c, const Queue__EnqueueRequest *req,
			  queue_client_cb *cb, void *arg)
{
	struct qc_op *op = xcalloc(1, sizeof *op);
	op->c = c;
	op->cb = cb;
	op->arg = arg;
	op->deadline = util_now_mono_ms() + QUEUE_CLIENT_DEADLINE_MS;
	op->backoff_ms = QC_BACKOFF_FIRST_MS;
	op->last_status = MAIL_ERR_UNAVAILABLE;
	/* The private copy: pack, then unpack into memory we own. */
	size_t len = queue__enqueue_request__get_packed_size(req);
	uint8_t *packed = xmalloc(len ? len : 1);
	queue__enqueue_request__pack(req, packed);
	op->req = queue__enqueue_request__unpack(NULL, len, packed);
	free(packed);
	if (op->req == NULL)
		abort(); /* we just packed it: only allocation can fail */
	uv_timer_init(c->loop, &op->timer);
	op->timer.data = op;
	op->next = c->ops;
	if (c->ops != NULL)
		c->ops->prev = op;
	c->ops = op;
	/* The first try goes out from the loop, never from inside this call,
	 * so the callback cannot run before the caller has returned. */
	uv_timer_start(&op->timer, qc__retry_cb, 0, 0);
}

void queue_client_destroy(queue_client **client)
{
	queue_client *c = *client;
	if (c == NULL)
		return;
	c->destroying = 1;
	/* Pending RPCs come back with MAIL_ERR_UNAVAILABLE from inside this
	 * call and finish their ops (destroying: no retry). */
	rpc_pool_destroy(&c->pool);
	/* Ops waiting on their backoff timer. */
	while (c->ops != NULL)
		qc__finish(c->ops, MAIL_ERR_UNAVAILABLE);
	free(c);
	*client = NULL;
}
