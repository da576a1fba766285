/* router.h: membership and "which node serves this key now" (public contract).
 *
 * Cluster state lives in etcd under the prefix /mail/v1/ (key layout in
 * docs/architecture.md):
 *   /mail/v1/nodes/<role>/<id>    node record (persistent: the node is part of
 *                                  the ring even while it is down)
 *   /mail/v1/alive/<role>/<id>    "host:port", under the node's lease: gone
 *                                  within the TTL after the node dies
 *   /mail/v1/ring/<role>          the partition map: partition count, R,
 *                                  epoch, each partition's replica list
 *                                  "r" (primary first), in-sync set "i" and
 *                                  epoch "e" (ring.h)
 *   /mail/v1/controller           the elected controller's node id, under
 *                                  its lease (router_controller_*)
 *   /mail/v1/progress/<role>/<partition>/<id>
 *                                 {"epoch":E}: written by the DATA PLANE when
 *                                  replica <id> holds every write of
 *                                  <partition> (decimal) that the primary
 *                                  has, and keeps following it, at
 *                                  partition epoch E. If E is still the
 *                                  partition's epoch and <id> is in "r", the
 *                                  controller adds it to "i" (new epoch).
 *                                  A report at an older epoch is ignored:
 *                                  catch up again and report at the new one.
 *                                  No lease needed; later reports overwrite.
 *
 * Node record JSON: {"id":..,"addr":"host:port","created":ms} plus
 * "draining":true once `mailctl node drain` ran (kept across restarts).
 *
 * Keys are placed on partitions by router_partition_of(); partitions are
 * placed on nodes by consistent hashing with virtual nodes (ring.h). With a
 * controller running (router_controller_start on any node(s)), the
 * controller keeps the map: members only create it. Without one, members
 * place themselves on join (every replica then counts as in sync).
 */
#ifndef MAIL_ROUTER_H
#define MAIL_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "etcd.h"

enum router_role { ROUTER_ROLE_QUEUE = 0, ROUTER_ROLE_STORE = 1, ROUTER_ROLE_COUNT_ };

/* "queue" / "store". */
const char *router_role_name(enum router_role role);

#define ROUTER_ID_MAX 64
#define ROUTER_HOST_MAX 64
#define ROUTER_DEFAULT_PARTITIONS 256
#define ROUTER_DEFAULT_LEASE_TTL_S 5
#define ROUTER_DEFAULT_REPLICAS 3
/* most replicas one partition lists (R plus nodes leaving): RING_SLOTS_MAX */
#define ROUTER_REPLICAS_MAX 16

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

/* Register this node (etcd: how to reach etcd and as whom; copied): grant a lease of ttl_s seconds, write its node record
 * and alive key, and make sure the ring of its role includes it (creating the
 * ring with n_partitions when it does not exist yet; compare-and-swap, so
 * nodes starting together converge). Blocks on etcd (call it at start-up,
 * before the loop runs). Then renews the lease from a uv timer on loop every
 * ttl_s/3 seconds (the etcd call runs on the libuv thread pool, never on the
 * loop thread); if the lease is lost it re-registers with a new one.
 * Returns 0, or -1 with *error_r (static text). */
int router_member_start(uv_loop_t *loop, const etcd_conf *etcd, enum router_role role,
			const char *node_id, const char *host, int port, int ttl_s,
			uint32_t n_partitions, router_member **member_r, const char **error_r);

typedef struct router_member_settings {
	int ttl_s;             /* lease TTL; 0: ROUTER_DEFAULT_LEASE_TTL_S */
	uint32_t n_partitions; /* used if this call creates the ring; 0: default */
	uint32_t n_replicas;   /* R, used if this call creates the ring (1..8);
				* 0: ROUTER_DEFAULT_REPLICAS. An existing ring
				* keeps its own R. */
	/* 0: place this node on the ring itself (recompute on join: fine
	 *    without a controller; every replica is then marked in sync).
	 * 1: a controller keeps the map: only create the ring if absent, and
	 *    leave joining to the controller (new replicas enter "i" only
	 *    after the data plane reports them caught up). */
	int controller_managed;
	/* Counts the membership's etcd writes (borrowed, may be NULL; must
	 * outlive the member). */
	etcd_stats *etcd_stats;
} router_member_settings;

/* router_member_start with settings (NULL: all defaults, self-placing).
 * router_member_start(..., ttl_s, n_partitions, ...) is this with
 * { ttl_s, n_partitions, ROUTER_DEFAULT_REPLICAS, 0 }. */
int router_member_start_ex(uv_loop_t *loop, const etcd_conf *etcd, enum router_role role,
			   const char *node_id, const char *host, int port,
			   const router_member_settings *settings, router_member **member_r,
			   const char **error_r);
/* Revoke the lease (the node leaves membership at once), stop the timer,
 * free. NULLs *member. Loop thread only. */
void router_member_stop(router_member **member);
/* Monotonic ms (util_now_mono_ms) before which this node's alive key
 * surely still exists in etcd, so no controller can have declared it dead
 * and promoted another primary in its place: a primary serves reads only
 * before then (a primary cut off from etcd stops answering reads before
 * its replacement can take a write). 0 without a member. Loop thread. */
uint64_t router_member_lease_valid_until(const router_member *member);

/* ---- lookups (frontends and queue nodes) ----------------------------- */

typedef struct router router;

/* Load the rings and the alive sets, then keep them current from a watch on
 * /mail/v1/ in a thread of its own (etcd is copied). Blocks until the first
 * load is done. Returns 0, or -1 with *error_r (static text) when etcd cannot
 * be reached or refuses our user. */
int router_create(const etcd_conf *etcd, router **router_r, const char **error_r);
/* Stop the watch thread and free. NULLs *router. */
void router_destroy(router **router);

/* The node serving key on role's ring now (primary of the key's partition,
 * with its live address). Returns 1 and fills *node_r; 0 when the partition's
 * primary is not alive or the ring is empty (callers answer "temporarily
 * unavailable" and may retry). Never blocks on the network. Thread-safe. */
int router_lookup(router *router, enum router_role role, const void *key, size_t len,
		  router_node *node_r);
/* One partition as the data plane needs it. */
typedef struct router_replica {
	char id[ROUTER_ID_MAX];
	char host[ROUTER_HOST_MAX]; /* "" when not alive */
	int port;                   /* 0 when not alive */
	int alive;                  /* has an alive key now */
	int in_sync;                /* member of the in-sync set "i" */
} router_replica;

typedef struct router_partition {
	uint32_t partition;
	uint64_t epoch;         /* the partition's epoch (fencing) */
	uint32_t want_replicas; /* R of the map */
	uint32_t n_replicas;    /* entries of replicas[]: "r", primary first */
	router_replica replicas[ROUTER_REPLICAS_MAX];
	uint32_t n_insync;      /* size of "i" */
} router_partition;

/* Partition `partition` of role's map: replica list (primary first) with
 * in-sync flags and live addresses, and its epoch. Returns 1 and fills
 * *part_r; 0 when the role has no map or partition is out of range. Never
 * blocks on the network. Thread-safe. */
int router_lookup_partition(router *router, enum router_role role, uint32_t partition,
			    router_partition *part_r);
/* Partition count of role's map, 0 when there is none. Thread-safe. */
uint32_t router_partition_count(router *router, enum router_role role);
/* Epoch of role's whole map (bumped by every change), 0 when there is
 * none: poll it to notice map changes cheaply. Thread-safe. */
uint64_t router_map_epoch(router *router, enum router_role role);

/* Ask for a reload from etcd soon (after a NOT_PRIMARY or a refused
 * connection). Non-blocking, thread-safe. */
void router_refresh(router *router);

#endif
