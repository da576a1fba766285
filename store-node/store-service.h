/* store-service.h: the "store" RPC service (proto/store.proto) over a
 * mailstore.
 *
 * Each method unpacks its request (the rpc layer does that), calls the
 * mailstore and replies with the typed response or the mail_error status.
 * Deliveries are logged one line each:
 *   event=delivered delivery_id=.. user=.. uid=.. duplicate=0|1
 *
 * Partition/epoch fields are accepted but not checked yet: every partition
 * has one replica, which is the node the router points at. Fencing with
 * MAIL_ERR_NOT_PRIMARY / MAIL_ERR_STALE_EPOCH comes with replication.
 *
 * Loop thread only.
 */
#ifndef MAIL_STORE_SERVICE_H
#define MAIL_STORE_SERVICE_H

#include "mailstore.h"
#include "rpc.h"

#include <uv.h>

#define STORE_SERVICE_NAME "store"

typedef struct store_service store_service;

/* store is borrowed and must outlive the service. Returns 0. */
int store_service_create(uv_loop_t *loop, mailstore *store, store_service **service_r);
/* Listen on host:port (0 = any free port; the bound one in *port_r).
 * Returns 0, or -1 with *error_r (static text). */
int store_service_listen(store_service *service, const char *host, int port, int *port_r,
			 const char **error_r);
/* Close the listener and every connection, free. NULLs *service. Handles
 * close asynchronously: run the loop once more before uv_loop_close(). */
void store_service_destroy(store_service **service);
/* The RPC server's counters (for metrics). */
void store_service_counters(const store_service *service, struct rpc_counters *counters_r);

#endif
