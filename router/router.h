/* router.h: membership and "which node serves this key now" (public contract).
 *
 * Cluster state lives in etcd under the prefix /mail/v1/ (key layout in
 * docs/architecture.md):
 *   /mail/v1/nodes/<role>/<id>    node record (persistent: the node is part of
 *                                  the ring even while it is down)
 *   /mail/v1/alive/<role>/<id>    "host:port", under the node's lease: gone
 *                                  within the TTL after the node dies
 *   /mail/v1/ring/<role>          the partition map: partition count, epoch,
 *                                  each partition's replica list (primary first)
 *
 * Keys are placed on partitions by router_partition_of(); partitions are
 * placed on nodes by consistent hashing with virtual nodes (ring.h), and the
 * result is what /mail/v1/ring/<role> holds. In this version every partition
 * has one replica; replication is the next step.
 */
#ifndef MAIL_ROUTER_H
#define MAIL_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

enum router_role { ROUTER_ROLE_QUEUE = 0, ROUTER_ROLE_STORE = 1, ROUTER_ROLE_COUNT_ };

/* "queue" / "store". */
const char *router_role_name(enum router_role role);

#define ROUTER_ID_MAX 64
#define ROUTER_HOST_MAX 64
#define ROUTER_DEFAULT_PARTITIONS 256
#define ROUTER_DEFAULT_LEASE_TTL_S 5

typedef struct router_node {
	char id[ROUTER_ID_MAX];
	char host[ROUTER_HOST_MAX];
	int port;
	uint32_t partition;
	uint64_t epoch;
} router_node;

/* Partition of a key: util_hash64(key) mod n_partitions. Stable forever. */
uint32_t router_partition_of(const void *key, size_t len, uint32_t n_partitions);

/* ---- membership (run by every queue and store node) ------------------ */

typedef struct router_member router_member;

/* Register this node: grant a lease of ttl_s seconds, write its node record
 * and alive key, and make sure the ring of its role includes it (creating the
 * ring with n_partitions when it does not exist yet; compare-and-swap, so
 * nodes starting together converge). Blocks on etcd (call it at start-up,
 * before the loop runs). Then renews the lease from a uv timer on loop every
 * ttl_s/3 seconds (the etcd call runs on the libuv thread pool, never on the
 * loop thread); if the lease is lost it re-registers with a new one.
 * Returns 0, or -1 with *error_r (static text). */
int router_member_start(uv_loop_t *loop, const char *etcd_url, enum router_role role,
			const char *node_id, const char *host, int port, int ttl_s,
			uint32_t n_partitions, router_member **member_r, const char **error_r);
/* Revoke the lease (the node leaves membership at once), stop the timer,
 * free. NULLs *member. Loop thread only. */
void router_member_stop(router_member **member);

/* ---- lookups (frontends and queue nodes) ----------------------------- */

typedef struct router router;

/* Load the rings and the alive sets, then keep them current from a watch on
 * /mail/v1/ in a thread of its own. Blocks until the first load is done.
 * Returns 0, or -1 with *error_r (static text) when etcd cannot be reached. */
int router_create(const char *etcd_url, router **router_r, const char **error_r);
/* Stop the watch thread and free. NULLs *router. */
void router_destroy(router **router);

/* The node serving key on role's ring now (primary of the key's partition,
 * with its live address). Returns 1 and fills *node_r; 0 when the partition's
 * primary is not alive or the ring is empty (callers answer "temporarily
 * unavailable" and may retry). Never blocks on the network. Thread-safe. */
int router_lookup(router *router, enum router_role role, const void *key, size_t len,
		  router_node *node_r);
/* Ask for a reload from etcd soon (after a NOT_PRIMARY or a refused
 * connection). Non-blocking, thread-safe. */
void router_refresh(router *router);

#endif
