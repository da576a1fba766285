/* routed-client.c: routed-client.h over the router and an rpc_pool.
 *
 * Every call becomes a `routed_call` that keeps its own packed copy of the
 * request. An attempt looks the key up on the ring, unpacks the copy, fills
 * partition/epoch, sends it (rpc_client_call packs before it returns) and
 * frees the unpacked message. A temporary failure arms the call's timer for
 * the backoff after router_refresh(); at the deadline the caller gets the
 * last error. Every call owns one uv_timer_t; the call is freed in its
 * close_cb.
 */
#include "routed-client.h"

#include "mail-error.h"
#include "rpc.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#define BACKOFF_FIRST_MS 50u
#define BACKOFF_MAX_MS 1000u

struct routed_call {
	routed_client *client;      /* NULL once the client is gone */
	struct routed_call *prev, *next;
	uint16_t method;
	const ProtobufCMessageDescriptor *req_desc;
	const ProtobufCMessageDescriptor *resp_desc;
	uint8_t *packed;           /* the caller's request, packed at submit */
	size_t packed_len;
	char *key;                 /* routing key */
	routed_client_cb *cb;
	void *arg;
	uint64_t deadline;         /* util_now_mono_ms() */
	int last_error;
	uint32_t backoff_ms;
	int in_flight;             /* an rpc call is out: its reply ends the wait */
	uv_timer_t timer;
};

struct routed_client {
	uv_loop_t *loop;
	router *router;
	enum router_role role;
	rpc_pool *pool;
	uint32_t deadline_ms;
	struct routed_call *calls;  /* every unfinished call */
};

routed_client *routed_client_create(uv_loop_t *loop, router *router, enum router_role role,
				    const char *service, uint32_t deadline_ms)
{
	routed_client *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->router = router;
	c->role = role;
	c->pool = rpc_pool_create(loop, service);
	c->deadline_ms = deadline_ms;
	return c;
}

void routed_client_set_tls(routed_client *c, tls_client *tls)
{
	rpc_pool_set_tls(c->pool, tls);
}

void routed_client_set_deadline(routed_client *c, uint32_t deadline_ms)
{
	c->deadline_ms = deadline_ms;
}

static void routed__close_cb(uv_handle_t *handle)
{
	struct routed_call *call = handle->data;
	free(call->packed);
	free(call->key);
	free(call);
}

static void routed__unlink(struct routed_call *call)
{
	routed_client *c = call->client;
	if (c == NULL)
		return;
	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		c->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;
	call->prev = call->next = NULL;
	call->client = NULL;
}

/* Report status once and release the call. */
static void routed__finish(struct routed_call *call, int status, const ProtobufCMessage *resp)
{
	routed__unlink(call);
	uv_timer_stop(&call->timer);
	uv_close((uv_handle_t *)&call->timer, routed__close_cb);
	call->cb(status, status == MAIL_OK ? resp : NULL, call->arg);
}

static int routed__retryable(int status)
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

static void routed__attempt(struct routed_call *call);

static void routed__retry_cb(uv_timer_t *timer)
{
	routed__attempt(timer->data);
}

/* A temporary failure: try again after the backoff, or give up at the
 * deadline with the last error. */
static void routed__retry_later(struct routed_call *call, int status)
{
	call->last_error = status;
	uint64_t now = util_now_mono_ms();
	if (now >= call->deadline) {
		routed__finish(call, call->last_error, NULL);
		return;
	}
	router_refresh(call->client->router);
	uint64_t wait = call->backoff_ms;
	if (wait > call->deadline - now)
		wait = call->deadline - now;
	call->backoff_ms = call->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
								  : call->backoff_ms * 2;
	uv_timer_start(&call->timer, routed__retry_cb, wait, 0);
}

static void routed__reply_cb(int status, const ProtobufCMessage *resp, void *arg)
{
	struct routed_call *call = arg;
	call->in_flight = 0;
	if (call->client == NULL) {
		/* the client is being destroyed: its pool failed this call */
		routed__finish(call, MAIL_ERR_UNAVAILABLE, NULL);
		return;
	}
	if (status == MAIL_OK) {
		routed__finish(call, MAIL_OK, resp);
		return;
	}
	if (routed__retryable(status)) {
		routed__retry_later(call, status);
		return;
	}
	routed__finish(call, status, NULL);
}

/* Point the unpacked request at node's partition and epoch. The fields are
 * found by name so one path serves every request type. */
static void routed__set_route(ProtobufCMessage *msg, const router_node *node)
{
	const ProtobufCFieldDescriptor *f;
	f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "partition");
	if (f != NULL && f->type == PROTOBUF_C_TYPE_UINT32)
		*(uint32_t *)((char *)msg + f->offset) = node->partition;
	f = protobuf_c_message_descriptor_get_field_by_name(msg->descriptor, "epoch");
	if (f != NULL && f->type == PROTOBUF_C_TYPE_UINT64)
		*(uint64_t *)((char *)msg + f->offset) = node->epoch;
}

/* One attempt. first: the caller's request, during routed_client_call
 * (a shallow copy of it gets the route: nothing unpacked); NULL on a
 * retry, which unpacks the request kept packed. Returns 0 when the call
 * went out, -1 when it waits for a retry (or, on a retry, ended). */
static int routed__attempt_with(struct routed_call *call, const ProtobufCMessage *first)
{
	routed_client *c = call->client;
	router_node node;
	if (router_lookup(c->router, c->role, call->key, strlen(call->key),
			  &node) != 1) {
		if (first == NULL)
			routed__retry_later(call, MAIL_ERR_UNAVAILABLE);
		return -1;
	}
	ProtobufCMessage *msg;
	if (first != NULL) {
		msg = xmalloc(first->descriptor->sizeof_message);
		memcpy(msg, first, first->descriptor->sizeof_message);
	} else {
		msg = protobuf_c_message_unpack(call->req_desc, NULL, call->packed_len,
						call->packed);
		if (msg == NULL) {
			/* we packed it ourselves: cannot happen short of memory trouble */
			routed__finish(call, MAIL_ERR_INTERNAL, NULL);
			return -1;
		}
	}
	routed__set_route(msg, &node);
	uint64_t now = util_now_mono_ms();
	uint64_t left = call->deadline > now ? call->deadline - now : 1;
	rpc_client *rc = rpc_pool_get(c->pool, node.host, node.port);
	call->in_flight = 1;
	rpc_client_call(rc, call->method, msg, call->resp_desc, (uint32_t)left, routed__reply_cb,
			call);
	if (first != NULL)
		free(msg);   /* the shallow copy: its fields are the caller's */
	else
		protobuf_c_message_free_unpacked(msg, NULL);
	return 0;
}

static void routed__attempt(struct routed_call *call)
{
	(void)routed__attempt_with(call, NULL);
}

void routed_client_call(routed_client *c, const char *key, uint16_t method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			routed_client_cb *cb, void *arg)
{
	struct routed_call *call = xcalloc(1, sizeof *call);
	call->client = c;
	call->method = method;
	call->req_desc = req->descriptor;
	call->resp_desc = resp_desc;
	call->packed_len = protobuf_c_message_get_packed_size(req);
	call->packed = xmalloc(call->packed_len > 0 ? call->packed_len : 1);
	protobuf_c_message_pack(req, call->packed);
	call->key = xstrdup(key != NULL ? key : "");
	call->cb = cb;
	call->arg = arg;
	call->deadline = util_now_mono_ms() + c->deadline_ms;
	call->last_error = MAIL_ERR_UNAVAILABLE;
	call->backoff_ms = BACKOFF_FIRST_MS;
	uv_timer_init(c->loop, &call->timer);
	call->timer.data = call;
	call->next = c->calls;
	if (c->calls != NULL)
		c->calls->prev = call;
	c->calls = call;
	/* The first attempt goes out now, from the request as given
	 * (rpc_client_call never calls back inside the call either); when the
	 * router knows no node yet, it runs from the loop, so cb never fires
	 * inside this call. */
	if (routed__attempt_with(call, req) < 0)
		uv_timer_start(&call->timer, routed__retry_cb, 0, 0);
}

size_t routed_client_pending(const routed_client *client)
{
	size_t n = 0;
	for (const struct routed_call *call = client->calls; call != NULL; call = call->next)
		n++;
	return n;
}

void routed_client_destroy(routed_client **client)
{
	routed_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	/* Detach every call first: calls with an rpc in flight are failed by
	 * the pool's destruction (routed__reply_cb sees client == NULL); the
	 * others are failed here. */
	struct routed_call *waiting = NULL;
	while (c->calls != NULL) {
		struct routed_call *call = c->calls;
		routed__unlink(call);
		if (!call->in_flight) {
			call->next = waiting;
			waiting = call;
		}
	}
	rpc_pool_destroy(&c->pool);
	while (waiting != NULL) {
		struct routed_call *call = waiting;
		waiting = call->next;
		call->next = NULL;
		routed__finish(call, MAIL_ERR_UNAVAILABLE, NULL);
	}
	free(c);
}

