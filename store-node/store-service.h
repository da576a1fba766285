/* store-service.h: the "store" RPC service (proto/store.proto) over a
 * mailstore.
 *
 * Each method unpacks its request (the rpc layer does that), calls the
 * mailstore and replies with the typed response or the mail_error status.
 * Deliveries are logged one line each:
 *   event=delivered delivery_id=.. user=.. uid=.. duplicate=0|1
 *
 * Standalone (no partitions set): every request runs on the mailstore at
 * once. Replicated (store_service_set_partitions): the node answers only
 * for partitions it is the primary of (MAIL_ERR_NOT_PRIMARY otherwise, the
 * partition recomputed from the user); writes (DELIVER, STORE_FLAGS,
 * EXPUNGE, MAILBOX_CREATE/DELETE/RENAME, SUBSCRIBE, APPEND, COPY) go
 * through the partition's log and are answered with the result their apply
 * computed on this node; reads (LIST, SELECT, FETCH, STATUS, OPEN,
 * FETCH_META, FETCH_RANGE, CHANGES) run on the primary's mailstore (a read
 * that would create INBOX first creates it through the log). DELIVER and
 * APPEND entries carry each message's structure record, computed on the
 * primary before it proposes them (store-structure.h). WATCH is a long
 * poll held on the primary (below).
 *
 * Loop thread only.
 */
#ifndef MAIL_STORE_SERVICE_H
#define MAIL_STORE_SERVICE_H

#include "mailstore.h"
#include "rpc.h"

#include <uv.h>

#define STORE_SERVICE_NAME "store"
/* Log-only method: a ListRequest whose apply creates INBOX. */
#define STORE_OP_INBOX 100

/* WATCH (store.proto): a held call is answered after at most
 * STORE_WATCH_HOLD_MS with the current modseq (sooner when the caller's
 * deadline minus STORE_WATCH_MARGIN_MS comes first; store_client's watch
 * deadline is STORE_CLIENT_WATCH_DEADLINE_MS, 35 s), released with
 * NOT_PRIMARY within STORE_WATCH_TICK_MS of this node losing the
 * partition, and with UNAVAILABLE by store_service_destroy(). At most
 * STORE_WATCH_MAX are held (LIMIT past it). */
#define STORE_WATCH_HOLD_MS 25000u
#define STORE_WATCH_MARGIN_MS 2000u
#define STORE_WATCH_TICK_MS 1000u
#define STORE_WATCH_MAX 200000u

typedef struct store_service store_service;
typedef struct repl_host repl_host;
struct repl_host_ops;

/* store is borrowed and must outlive the service. Returns 0. */
int store_service_create(uv_loop_t *loop, mailstore *store, store_service **service_r);
/* Listen on host:port (0 = any free port; the bound one in *port_r).
 * Returns 0, or -1 with *error_r (static text). */
int store_service_listen(store_service *service, const char *host, int port, int *port_r,
			 const char **error_r);
/* Close the listener and every connection, free. NULLs *service. Handles
 * close asynchronously: run the loop once more before uv_loop_close(). */
void store_service_destroy(store_service **service);
/* Route requests through host (borrowed; NULL: standalone again). */
void store_service_set_partitions(store_service *service, repl_host *host);
/* The state machine a store node's repl_host runs (owner: the mailstore):
 * apply = store_service_apply, applied index = mailstore_applied_index. */
const struct repl_host_ops *store_service_repl_ops(void);
/* The service's RPC server, to serve "repl" on the same port. */
rpc_server *store_service_server(store_service *service);
/* Apply one log entry (made by this service on a primary) to store:
 * deterministic on every replica; records index as partition's applied
 * index in the same write. Returns the request's status; on MAIL_OK its
 * packed response is appended to out. */
struct buf;
int store_service_apply(mailstore *store, uint32_t partition, uint64_t index,
			const uint8_t *payload, size_t len, struct buf *out);
/* WATCH calls held now. */
size_t store_service_watches(const store_service *service);
/* The hold time of later WATCH calls (0: STORE_WATCH_HOLD_MS); tests. */
void store_service_set_watch_hold(store_service *service, uint32_t hold_ms);
/* The RPC server's counters (for metrics). */
void store_service_counters(const store_service *service, struct rpc_counters *counters_r);

#endif
