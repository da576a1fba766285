/* routed-client.h: "send this request to the node that serves this key
 * now", with retries (public contract). The store and queue client
 * libraries are thin typed wrappers over it.
 *
 * Each call looks the key up on the role's ring (router_lookup), fills the
 * request's "partition" and "epoch" fields when it has them (found by name,
 * so any request type works), sends the RPC through a connection pool of
 * the service and calls back once with the typed response. Temporary
 * failures (no live primary, a refused or dead connection, TEMP,
 * UNAVAILABLE, NOT_PRIMARY, STALE_EPOCH, DEADLINE) are retried after
 * router_refresh() with a backoff of 50 ms doubling to 1 s, never past the
 * call's deadline; then the callback gets the last error. Any other status
 * (a permanent error, LIMIT...) ends the call at once.
 *
 * Loop thread only. The request is copied (packed) before the call
 * returns; the caller keeps ownership of it. Callbacks never run from
 * inside routed_client_call().
 */
#ifndef MAIL_ROUTED_CLIENT_H
#define MAIL_ROUTED_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "router.h"
#include "tls.h"

typedef struct routed_client routed_client;

/* router is borrowed and must outlive the client. service: the RPC
 * service name (HELLO); deadline_ms: how long one call may take in all,
 * retries included. */
routed_client *routed_client_create(uv_loop_t *loop, router *router, enum router_role role,
				    const char *service, uint32_t deadline_ms);
/* Speak mutual TLS to the nodes (rpc_pool_set_tls): call it right after
 * create, before the first call. tls is borrowed and must outlive the
 * client. */
void routed_client_set_tls(routed_client *client, tls_client *tls);
/* Pending calls get MAIL_ERR_UNAVAILABLE (their callbacks run from inside
 * this call and must not use the client). Not from inside a callback of
 * this client. NULLs *client. */
void routed_client_destroy(routed_client **client);
/* The deadline of later calls. */
void routed_client_set_deadline(routed_client *client, uint32_t deadline_ms);
/* Calls not finished yet (their callbacks have not run). */
size_t routed_client_pending(const routed_client *client);

/* resp is of resp_desc's type, non-NULL only when status == MAIL_OK, valid
 * during the callback. */
typedef void routed_client_cb(int status, const ProtobufCMessage *resp, void *arg);

/* Send req (method of the service) to the node serving key. */
void routed_client_call(routed_client *client, const char *key, uint16_t method,
			const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
			routed_client_cb *cb, void *arg);

#endif
