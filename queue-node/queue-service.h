/* queue-service.h: the queue node's RPC service "queue" (queue.proto).
 *
 * ENQUEUE validates the request, stores it durably and only then replies
 * MAIL_OK (STYLE.md rule 14: the acknowledgement comes from the commit).
 * Replicated (queue_service_set_repl, what the queue node runs): the
 * message goes through its partition's log and MAIL_OK means durable on
 * the partition's in-sync replicas, a majority; a node that is not the
 * partition's primary answers MAIL_ERR_NOT_PRIMARY (the client re-resolves
 * and retries). Standalone (tests): a sync write to the local store, then
 * delivery is scheduled at once. Either way a queue id already stored is
 * acknowledged again without a second copy, so a client retry never
 * duplicates a message.
 *
 * Loop thread only.
 */
#ifndef MAIL_QUEUE_SERVICE_H
#define MAIL_QUEUE_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "delivery.h"
#include "queue-repl.h"
#include "queue-store.h"
#include "queue.pb-c.h"
#include "rpc.h"

/* Tunables (STYLE.md rule 15); queue_service_settings_default() fills the
 * defaults, queue_service_settings_check() enforces the ranges. */
struct queue_service_settings {
	/* Recipients per message. min 1, max 100000, default 1000. */
	uint32_t max_rcpts;
	/* Body bytes. min 1, max 64 MiB (it must fit an RPC frame with its
	 * envelope), default 50 MiB. */
	uint64_t max_body;
};

void queue_service_settings_default(struct queue_service_settings *set);
int queue_service_settings_check(const struct queue_service_settings *set,
				 const char **error_r);

/* Check an EnqueueRequest: queue id 1..64 of [0-9a-zA-Z] and every recipient
 * a plausible address (else MAIL_ERR_PARAMS), 1..max_rcpts recipients (none:
 * MAIL_ERR_PARAMS, too many: MAIL_ERR_LIMIT), body <= max_body (else
 * MAIL_ERR_TOO_BIG). Returns MAIL_OK or that error; *why_r gets static text
 * for the log. Pure. */
int queue_service_validate(const struct queue_service_settings *set,
			   const Queue__EnqueueRequest *req, const char **why_r);

typedef struct queue_service queue_service;

/* store and delivery are borrowed and must outlive the service (delivery
 * may be NULL until queue_service_set_repl(); requests are then refused
 * with MAIL_ERR_NOT_PRIMARY). Returns 0. */
int queue_service_create(uv_loop_t *loop, const struct queue_service_settings *set,
			 queue_store *store, queue_delivery *delivery,
			 queue_service **service_r);
/* Listen on host:port (0 = any free port, reported in *port_r). Returns 0,
 * or -1 with *error_r (static text). */
int queue_service_listen(queue_service *service, const char *host, int port, int *port_r,
			 const char **error_r);
/* Go replicated: enqueue through qr, deliveries by d (both borrowed). */
void queue_service_set_repl(queue_service *service, queue_repl *qr, queue_delivery *d);
/* Sign what our users submit (ENQUEUE with auth_user) with the DKIM keys
 * of its From: domain (queue-dkim.h, keys from cfg) before it is
 * proposed; a signing failure leaves it unsigned (logged), never refused.
 * Both borrowed; NULL: nothing is signed. Replicated mode only. */
struct queue_dkim;
struct queue_config;
void queue_service_set_dkim(queue_service *service, struct queue_dkim *qd,
			    const struct queue_config *cfg);
/* Serve queue administration (LIST, SHOW, ACTION: queue-admin.h, admin
 * role only) for the partitions the delivery set by queue_service_set_repl
 * leads; node_id (copied) names this node in the answers. Call after
 * queue_service_set_repl; until then those methods answer
 * MAIL_ERR_UNAVAILABLE. */
void queue_service_set_admin(queue_service *service, const char *node_id);
/* The service's RPC server, to serve "repl" on the same port. */
rpc_server *queue_service_server(queue_service *service);
/* Close the listener and every connection, free. NULLs *service. Run the
 * loop once more before uv_loop_close(). */
void queue_service_destroy(queue_service **service);
/* The RPC server's counters (for metrics). */
void queue_service_counters(const queue_service *service, struct rpc_counters *counters_r);

#endif
