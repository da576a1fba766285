/* store-client.c: store-client.h, a typed wrapper over routed-client.h
 * (routing by user on the store ring, retries, deadline). */
#include "store-client.h"

#include "routed-client.h"
#include "xalloc.h"

#include <stdlib.h>

struct store_client {
	routed_client *rc;
};

store_client *store_client_create(uv_loop_t *loop, router *router)
{
	store_client *c = xcalloc(1, sizeof *c);
	c->rc = routed_client_create(loop, router, ROUTER_ROLE_STORE, "store",
				     STORE_CLIENT_DEADLINE_MS);
	return c;
}

void store_client_set_tls(store_client *c, tls_client *tls)
{
	routed_client_set_tls(c->rc, tls);
}

void store_client_set_deadline(store_client *c, uint32_t deadline_ms)
{
	routed_client_set_deadline(c->rc, deadline_ms > 0 ? deadline_ms
							  : STORE_CLIENT_DEADLINE_MS);
}

size_t store_client_pending(const store_client *client)
{
	return routed_client_pending(client->rc);
}

void store_client_destroy(store_client **client)
{
	store_client *c = *client;
	if (c == NULL)
		return;
	*client = NULL;
	routed_client_destroy(&c->rc);
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
