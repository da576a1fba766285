/* store-client.c: store-client.h, a typed wrapper over routed-client.h
 * (routing by user on the store ring, retries, deadline). */
#include "store-client.h"

#include "routed-client.h"
#include "util.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

struct store_client {
	uv_loop_t *loop;
	routed_client *rc;
	/* WATCH long polls: their own deadline and connections */
	routed_client *watch[STORE_CLIENT_WATCH_LANES];
};

store_client *store_client_create(uv_loop_t *loop, router *router)
{
	store_client *c = xcalloc(1, sizeof *c);
	c->loop = loop;
	c->rc = routed_client_create(loop, router, ROUTER_ROLE_STORE, "store",
				     STORE_CLIENT_DEADLINE_MS);
	for (size_t i = 0; i < STORE_CLIENT_WATCH_LANES; i++)
		c->watch[i] = routed_client_create(loop, router, ROUTER_ROLE_STORE, "store",
						   STORE_CLIENT_WATCH_DEADLINE_MS);
	return c;
}

void store_client_set_tls(store_client *c, tls_client *tls)
{
	routed_client_set_tls(c->rc, tls);
	for (size_t i = 0; i < STORE_CLIENT_WATCH_LANES; i++)
		routed_client_set_tls(c->watch[i], tls);
}

void store_client_set_deadline(store_client *c, uint32_t deadline_ms)
{
	routed_client_set_deadline(c->rc, deadline_ms > 0 ? deadline_ms
							  : STORE_CLIENT_DEADLINE_MS);
}

size_t store_client_pending(const store_client *client)
{
	/* WATCH long polls are not work in flight: a shutdown waiting for
	 * them would wait for their hold time; destroy answers them */
	return routed_client_pending(client->rc);
}

uv_loop_t *store_client_loop(const store_client *c)
{
	return c->loop;
}

void store_client_destroy(store_client **client)
{
	store_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	routed_client_destroy(&c->rc);
	for (size_t i = 0; i < STORE_CLIENT_WATCH_LANES; i++)
		routed_client_destroy(&c->watch[i]);
	free(c);
}

static void store__call(store_client *c, uint16_t method, const ProtobufCMessage *req,
			const ProtobufCMessageDescriptor *resp_desc, const char *user,
			store_client_cb *cb, void *arg)
{
	routed_client_call(c->rc, user, method, req, resp_desc, cb, arg);
}

void store_client_deliver(store_client *c, const Store__DeliverRequest *req,
			  store_client_cb *cb, void *arg)
{
	store__call(c, STORE__METHOD__DELIVER, &req->base, &store__deliver_response__descriptor,
		   req->user, cb, arg);
}

void store_client_list(store_client *c, const Store__ListRequest *req, store_client_cb *cb,
		       void *arg)
{
	store__call(c, STORE__METHOD__LIST, &req->base, &store__list_response__descriptor,
		   req->user, cb, arg);
}

void store_client_select(store_client *c, const Store__SelectRequest *req,
			 store_client_cb *cb, void *arg)
{
	store__call(c, STORE__METHOD__SELECT, &req->base, &store__select_response__descriptor,
		   req->user, cb, arg);
}

void store_client_fetch(store_client *c, const Store__FetchRequest *req, store_client_cb *cb,
			void *arg)
{
	store__call(c, STORE__METHOD__FETCH, &req->base, &store__fetch_response__descriptor,
		   req->user, cb, arg);
}

void store_client_store_flags(store_client *c, const Store__StoreFlagsRequest *req,
			      store_client_cb *cb, void *arg)
{
	store__call(c, STORE__METHOD__STORE_FLAGS, &req->base,
		   &store__store_flags_response__descriptor, req->user, cb, arg);
}

void store_client_expunge(store_client *c, const Store__ExpungeRequest *req,
			  store_client_cb *cb, void *arg)
{
	store__call(c, STORE__METHOD__EXPUNGE, &req->base, &store__expunge_response__descriptor,
		   req->user, cb, arg);
}

#define STORE_CALL(fn, method, type, resp)                                                  \
	void fn(store_client *c, const type *req, store_client_cb *cb, void *arg)            \
	{                                                                                    \
		store__call(c, method, &req->base, &resp, req->user, cb, arg);                \
	}
STORE_CALL(store_client_mailbox_create, STORE__METHOD__MAILBOX_CREATE,
	   Store__CreateMailboxRequest, store__mailbox_response__descriptor)
STORE_CALL(store_client_mailbox_delete, STORE__METHOD__MAILBOX_DELETE,
	   Store__DeleteMailboxRequest, store__empty_response__descriptor)
STORE_CALL(store_client_user_purge, STORE__METHOD__USER_PURGE, Store__UserPurgeRequest,
	   store__user_purge_response__descriptor)
STORE_CALL(store_client_usage, STORE__METHOD__USAGE, Store__UsageRequest,
	   store__usage_response__descriptor)
STORE_CALL(store_client_mailbox_rename, STORE__METHOD__MAILBOX_RENAME,
	   Store__RenameMailboxRequest, store__empty_response__descriptor)
STORE_CALL(store_client_subscribe, STORE__METHOD__SUBSCRIBE, Store__SubscribeRequest,
	   store__empty_response__descriptor)
STORE_CALL(store_client_status, STORE__METHOD__STATUS, Store__StatusRequest,
	   store__mailbox_response__descriptor)
STORE_CALL(store_client_open, STORE__METHOD__OPEN, Store__OpenRequest,
	   store__open_response__descriptor)
STORE_CALL(store_client_append, STORE__METHOD__APPEND, Store__AppendRequest,
	   store__append_response__descriptor)
STORE_CALL(store_client_copy, STORE__METHOD__COPY, Store__CopyRequest,
	   store__copy_response__descriptor)
STORE_CALL(store_client_fetch_meta, STORE__METHOD__FETCH_META, Store__FetchMetaRequest,
	   store__fetch_meta_response__descriptor)
STORE_CALL(store_client_fetch_range, STORE__METHOD__FETCH_RANGE, Store__FetchRangeRequest,
	   store__fetch_range_response__descriptor)
STORE_CALL(store_client_changes, STORE__METHOD__CHANGES, Store__ChangesRequest,
	   store__changes_response__descriptor)
STORE_CALL(store_client_search, STORE__METHOD__SEARCH, Store__SearchRequest,
	   store__search_response__descriptor)
STORE_CALL(store_client_sort, STORE__METHOD__SORT, Store__SortRequest,
	   store__sort_response__descriptor)
STORE_CALL(store_client_thread, STORE__METHOD__THREAD, Store__ThreadRequest,
	   store__thread_response__descriptor)

void store_client_watch(store_client *c, const Store__WatchRequest *req, store_client_cb *cb,
			void *arg)
{
	size_t lane = util_hash64(req->user, strlen(req->user)) % STORE_CLIENT_WATCH_LANES;
	routed_client_call(c->watch[lane], req->user, STORE__METHOD__WATCH, &req->base,
			   &store__watch_response__descriptor, cb, arg);
}
