/* store-client.h: how other nodes talk to the store tier (public contract).
 *
 * Each call finds the store node serving the request's user through the
 * router, fills partition/epoch, sends the RPC through a connection pool and
 * calls back once with the typed response. Temporary failures (no live
 * primary, refused connection, MAIL_ERR_NOT_PRIMARY/STALE_EPOCH/UNAVAILABLE)
 * are retried with a short backoff, after router_refresh(), until the
 * deadline (STORE_CLIENT_DEADLINE_MS); then the callback gets the last error.
 *
 * Loop thread only. The request is copied (packed) before the call returns;
 * the caller keeps ownership of it.
 */
#ifndef MAIL_STORE_CLIENT_H
#define MAIL_STORE_CLIENT_H

#include "router.h"
#include "tls.h"
#include "store.pb-c.h"

#include <stddef.h>

#include <uv.h>

#define STORE_CLIENT_DEADLINE_MS 10000u
/* WATCH is a long poll the store holds up to 25 s (store-service.h): its
 * calls get this deadline instead, and go over connections of their own
 * (STORE_CLIENT_WATCH_LANES of them per store node, chosen by user, so
 * that held calls never fill the server's max_inflight of the connection
 * the other calls use). */
#define STORE_CLIENT_WATCH_DEADLINE_MS 35000u
#define STORE_CLIENT_WATCH_LANES 8u

typedef struct store_client store_client;

/* router is borrowed and must outlive the client. */
store_client *store_client_create(uv_loop_t *loop, router *router);
/* Mutual TLS to the store nodes (this process presents its node certificate
 * and verifies theirs against the cluster CA: lib/daemon-tls.h). Call it
 * right after create, before the first call; tls is borrowed and must
 * outlive the client. Without it: plaintext (loopback development). */
void store_client_set_tls(store_client *client, tls_client *tls);
/* Pending calls get MAIL_ERR_UNAVAILABLE (their callbacks run from inside
 * this call and must not use the client). Not from inside a callback of
 * this client. NULLs *client. */
void store_client_destroy(store_client **client);
/* Calls whose callback has not run yet, WATCH long polls not counted
 * (what a shutdown waits for before store_client_destroy()). */
size_t store_client_pending(const store_client *client);
/* How long each later call may take in all, retries included (0 = the
 * default, STORE_CLIENT_DEADLINE_MS). Tests and latency-bound callers. */
void store_client_set_deadline(store_client *client, uint32_t deadline_ms);

/* resp is the method's response type (Store__DeliverResponse for deliver,
 * ...), non-NULL only when status == MAIL_OK, valid during the callback. */
typedef void store_client_cb(int status, const ProtobufCMessage *resp, void *arg);

void store_client_deliver(store_client *c, const Store__DeliverRequest *req,
			  store_client_cb *cb, void *arg);
void store_client_list(store_client *c, const Store__ListRequest *req,
		       store_client_cb *cb, void *arg);
void store_client_select(store_client *c, const Store__SelectRequest *req,
			 store_client_cb *cb, void *arg);
void store_client_fetch(store_client *c, const Store__FetchRequest *req,
			store_client_cb *cb, void *arg);
void store_client_store_flags(store_client *c, const Store__StoreFlagsRequest *req,
			      store_client_cb *cb, void *arg);
void store_client_expunge(store_client *c, const Store__ExpungeRequest *req,
			  store_client_cb *cb, void *arg);

/* issue 9. Responses: MailboxResponse (create, status), EmptyResponse
 * (delete, rename, subscribe), and each method's own. */
void store_client_mailbox_create(store_client *c, const Store__CreateMailboxRequest *req,
				 store_client_cb *cb, void *arg);
void store_client_mailbox_delete(store_client *c, const Store__DeleteMailboxRequest *req,
				 store_client_cb *cb, void *arg);
/* Erase a user's mailboxes (mailctl user del; the caller's certificate
 * must have role admin): Store__UserPurgeResponse. */
void store_client_user_purge(store_client *c, const Store__UserPurgeRequest *req,
			     store_client_cb *cb, void *arg);
/* A user's quota usage (Store__UsageResponse; issue 12). Frontends, queue
 * nodes and admin tools may call it. */
void store_client_usage(store_client *c, const Store__UsageRequest *req, store_client_cb *cb,
			void *arg);
void store_client_mailbox_rename(store_client *c, const Store__RenameMailboxRequest *req,
				 store_client_cb *cb, void *arg);
void store_client_subscribe(store_client *c, const Store__SubscribeRequest *req,
			    store_client_cb *cb, void *arg);
void store_client_status(store_client *c, const Store__StatusRequest *req, store_client_cb *cb,
			 void *arg);
void store_client_open(store_client *c, const Store__OpenRequest *req, store_client_cb *cb,
		       void *arg);
void store_client_append(store_client *c, const Store__AppendRequest *req, store_client_cb *cb,
			 void *arg);
void store_client_copy(store_client *c, const Store__CopyRequest *req, store_client_cb *cb,
		       void *arg);
void store_client_fetch_meta(store_client *c, const Store__FetchMetaRequest *req,
			     store_client_cb *cb, void *arg);
void store_client_fetch_range(store_client *c, const Store__FetchRangeRequest *req,
			      store_client_cb *cb, void *arg);
void store_client_changes(store_client *c, const Store__ChangesRequest *req,
			  store_client_cb *cb, void *arg);
/* SEARCH (one page: SearchResponse.next_after_uid), SORT, THREAD. */
void store_client_search(store_client *c, const Store__SearchRequest *req, store_client_cb *cb,
			 void *arg);
void store_client_sort(store_client *c, const Store__SortRequest *req, store_client_cb *cb,
		       void *arg);
void store_client_thread(store_client *c, const Store__ThreadRequest *req, store_client_cb *cb,
			 void *arg);
/* The long poll (WatchResponse): retried like the others (NOT_PRIMARY
 * after a failover goes to the new primary with the same modseq) within
 * STORE_CLIENT_WATCH_DEADLINE_MS. */
void store_client_watch(store_client *c, const Store__WatchRequest *req, store_client_cb *cb,
			void *arg);
/* The loop the client runs on (for its users' own timers). */
uv_loop_t *store_client_loop(const store_client *c);

#endif
