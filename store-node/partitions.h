/* partitions.h: a store node's replicated partitions (store-node only).
 *
 * Owns the node's router (map lookups), membership (controller-managed,
 * R replicas), a controller candidate, and the repl_node whose "repl"
 * service shares the store service's RPC server. Every ~200 ms it
 * reconciles with the map: for each partition whose replica list "r" names
 * this node, the partition's log is open and its role (primary = r[0]),
 * epoch, members and in-sync flags are those of the map; partitions it no
 * longer holds are closed. A replica that caught up reports it in etcd
 * (/mail/v1/progress/store/<partition>/<id>, from the thread pool).
 *
 * Committed entries are applied with store_service_apply() on every
 * replica, in log order; the primary keeps each result until the
 * proposal's callback hands it over.
 *
 * Loop thread only (the router's and the controller's own threads aside).
 */
#ifndef MAIL_STORE_PARTITIONS_H
#define MAIL_STORE_PARTITIONS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "mailstore.h"
#include "rpc.h"

typedef struct store_partitions store_partitions;

struct store_partitions_settings {
	const char *node_id;
	const char *etcd_url;
	const char *host;        /* advertised host */
	int port;                /* the store (and repl) port */
	const char *repl_dir;    /* LevelDB directory of the logs */
	uint32_t n_partitions;   /* of a new map */
	uint32_t n_replicas;     /* R of a new map */
	int ttl_s;               /* lease TTL (membership and controller) */
};

/* Create the repl node on server, join the ring (blocks on etcd), start
 * the router, the controller and the reconcile timer. mailstore and server
 * are borrowed. Returns 0, or -1 with *error_r (static text). */
int store_partitions_start(uv_loop_t *loop, mailstore *store, rpc_server *server,
			   const struct store_partitions_settings *settings,
			   store_partitions **sp_r, const char **error_r);
/* Leave the ring, stop the controller and the timer. The owner then
 * destroys the RPC server, then calls store_partitions_destroy(). */
void store_partitions_stop(store_partitions *sp);
/* Close every partition (pending proposals fail UNAVAILABLE), free.
 * NULLs *sp. */
void store_partitions_destroy(store_partitions **sp);

/* MAIL_OK with *partition_r when this node is the primary of user's
 * partition now, else MAIL_ERR_NOT_PRIMARY. For a read (read = 1), also
 * MAIL_ERR_UNAVAILABLE (temporary: the client retries) while a new primary
 * has not yet applied every write acknowledged before it took over. */
int store_partitions_primary(store_partitions *sp, const char *user, int read,
			     uint32_t *partition_r);

/* status: the log's (MAIL_OK = committed and applied here); op_status and
 * resp (packed response, valid during the call): what applying computed. */
typedef void store_partitions_done_cb(int status, int op_status, const uint8_t *resp,
				      size_t len, void *arg);
/* Propose payload on partition. MAIL_OK: cb is called once, later; else
 * (NOT_PRIMARY) cb is never called. */
int store_partitions_propose(store_partitions *sp, uint32_t partition, const void *payload,
			     size_t len, store_partitions_done_cb *cb, void *arg);

#endif
