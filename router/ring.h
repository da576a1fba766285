/* ring.h: placing partitions on nodes by consistent hashing (pure, no I/O).
 *
 * Each node owns RING_VNODES points on a 64-bit ring, at
 * util_hash64("<node-id>#<i>"), i = 0..RING_VNODES-1. Partition p sits at
 * util_hash64("partition#<p>"); its primary is the node of the first vnode
 * clockwise (at or after the partition's point, wrapping), its further
 * replicas the next distinct nodes clockwise. Adding or removing a node thus
 * moves only the partitions that node gains or loses (about 1/N of them).
 *
 * A ring_map is one partition map: the partition count (fixed forever for a
 * cluster), the replication factor R, the map epoch (bumped whenever any
 * partition changes), a node table and, per partition:
 *   "r"  its replica list, primary first. Usually the R nodes the ring
 *        places it on; during a move it also holds nodes that are leaving
 *        (draining, or displaced by a new node) and nodes that died.
 *   "i"  its in-sync set: the members of "r" known to hold every
 *        acknowledged write of the partition (only they may be promoted).
 *        Absent in maps written before replication: then i = r.
 *   "e"  the epoch at which "r" or "i" last changed (what fencing compares).
 * Its JSON form is the value of /mail/v1/ring/<role>:
 *
 *   {"version":1,"partitions":256,"epoch":3,"replicas":3,
 *    "nodes":["q1","q2","q3"],
 *    "map":[{"r":["q2","q1","q3"],"i":["q2","q1"],"e":3},...]}
 *
 * "nodes" names every node the partitions may refer to (sorted, distinct).
 *
 * ring_map objects are immutable once built; share them read-only freely.
 */
#ifndef MAIL_RING_H
#define MAIL_RING_H

#include <stddef.h>
#include <stdint.h>

#define RING_VNODES 64
#define RING_PARTITIONS_MAX 65536
#define RING_NODES_MAX 4096
#define RING_REPLICAS_MAX 8
/* Most members one partition's "r" may hold (R targets plus nodes leaving). */
#define RING_SLOTS_MAX (2 * RING_REPLICAS_MAX)

typedef struct ring_part {
	uint64_t epoch;
	uint32_t n_r, n_i;
	uint32_t r[RING_SLOTS_MAX]; /* indexes into nodes; r[0] is the primary */
	uint32_t i[RING_SLOTS_MAX]; /* indexes into nodes; a subset of r */
} ring_part;

typedef struct ring_map {
	uint32_t n_partitions;
	uint64_t epoch;
	/* min(R, nodes placed): the replica count the ring aims at */
	uint32_t n_replicas;
	/* R as requested when the ring was created */
	uint32_t want_replicas;
	char **nodes; /* sorted, distinct */
	size_t n_nodes;
	ring_part *parts; /* n_partitions entries */
} ring_map;

/* Place n_partitions partitions (1..RING_PARTITIONS_MAX) on nodes with R
 * replicas (1..RING_REPLICAS_MAX), starting from old (NULL for a new ring;
 * otherwise old's partition count and R are kept and n_partitions/R are
 * ignored). When the placement differs from old's, the result's epoch is
 * old's + 1 and every partition whose replica list changed gets that epoch;
 * otherwise epochs are old's and *changed_r is 0. Every partition's "i" is
 * its "r" (a fresh placement: used to create a ring, and by members that
 * place themselves when no controller runs). A new ring starts at epoch
 * 1 (*changed_r = 1). Duplicate node ids are ignored; n_nodes may be 0 (every
 * partition then has no replica). Returns a new map (ring_map_free). */
ring_map *ring_map_place(const ring_map *old, const char *const *nodes, size_t n_nodes,
			 uint32_t n_partitions, uint32_t replicas, int *changed_r);
void ring_map_free(ring_map **map);

/* The i-th replica (0 = primary) of partition p, or NULL when out of range
 * (no nodes). The string belongs to map. */
const char *ring_map_replica(const ring_map *map, uint32_t p, uint32_t i);
/* The k-th member of partition p's in-sync set, or NULL when out of range. */
const char *ring_map_insync(const ring_map *map, uint32_t p, uint32_t k);
/* Is node id in partition p's replica list / in-sync set? 1 or 0. */
int ring_map_has_replica(const ring_map *map, uint32_t p, const char *id);
int ring_map_is_insync(const ring_map *map, uint32_t p, const char *id);

/* Where the ring alone puts partition p: the first min(R, n) distinct nodes
 * clockwise among nodes (duplicates ignored). Writes up to RING_REPLICAS_MAX
 * pointers into nodes to out_r and returns how many. Pure; for tests and
 * tools (ring_map_place and ring_map_reconcile use the same placement). */
uint32_t ring_target(const char *const *nodes, size_t n_nodes, uint32_t replicas, uint32_t p,
		     const char **out_r);

/* ---- the controller's rules (pure; router/controller.c feeds them) ------ */

/* A node record: ids with a record take part in the map; draining ones are
 * not placed (they keep what they have until it has moved). */
typedef struct ring_node_info {
	const char *id;
	int draining;
} ring_node_info;

/* "node caught up with partition at epoch" (/mail/v1/progress/...). */
typedef struct ring_progress {
	uint32_t partition;
	const char *node;
	uint64_t epoch;
} ring_progress;

enum ring_reason {
	RING_REASON_PROMOTE = 1 << 0, /* r[0] dead: an alive in-sync replica took over */
	RING_REASON_DROP = 1 << 1,    /* dead replica left "i", or removed node left "r" */
	RING_REASON_JOIN = 1 << 2,    /* a node joined "r" (or one it displaced left) */
	RING_REASON_DRAIN = 1 << 3,   /* a draining node handed off / left */
	RING_REASON_INSYNC = 1 << 4,  /* a replica reported caught up and joined "i" */
	RING_REASON_REBALANCE = 1 << 5, /* the primary moved to the preferred node */
};

/* "promote,drop": the names of the bits in reasons, into buf. */
const char *ring_reason_names(unsigned reasons, char *buf, size_t size);

/* Tunables of ring_map_reconcile (NULL or a zeroed struct: the defaults). */
typedef struct ring_reconcile_settings {
	/* Most partitions whose primary one pass moves (rule 6). 0: the
	 * default, max(1, partitions / RING_REBALANCE_DIVISOR); at most the
	 * partition count. */
	uint32_t rebalance_max;
	/* 1: skip rule 6 in this pass (the controller paces rebalancing). */
	int rebalance_off;
} ring_reconcile_settings;

#define RING_REBALANCE_DIVISOR 16

/* Apply the controller's rules once to every partition of old (see
 * controller.c and docs/replication.md for why each keeps the invariants):
 *   1. a dead non-primary member of "i" leaves "i";
 *   2. a progress report at the partition's current epoch by an alive member
 *      of "r" puts it in "i";
 *   3. a dead (or removed) primary is replaced by the first alive member of
 *      "i"; it stays in "r" (unless removed) and leaves "i"; with no alive
 *      in-sync member nothing is promoted;
 *   4. nodes the ring now places the partition on (records not draining)
 *      join "r", not "i";
 *   5. once every placed node is in "i", members the ring no longer places
 *      leave "r" and "i" (the primary first hands off to a placed in-sync
 *      node); out-of-sync non-placed members and removed non-primary
 *      members leave at once;
 *   6. rebalancing, only in a pass where rules 1-5 changed nothing and
 *      every partition is settled (each node the ring places it on is alive
 *      and in "i"): a partition whose preferred primary (the first node of
 *      its placement) is alive, not draining, in "r" and in "i" but is not
 *      r[0] gets it as primary (moved to the front of "r"; "i" unchanged).
 *      At most settings->rebalance_max partitions per pass, lowest
 *      partition first; never to a node outside "i".
 * alive: ids with an alive key. settings: NULL for the defaults. Every
 * changed partition gets epoch old->epoch + 1 (as does the map). Returns
 * NULL when nothing changed, else the new map, with *changes_r (heap array
 * in partition order, caller frees: partition index and reason bits per
 * changed partition) and *n_changes_r. */
typedef struct ring_change {
	uint32_t partition;
	unsigned reasons;
} ring_change;
ring_map *ring_map_reconcile(const ring_map *old, const ring_node_info *nodes, size_t n_nodes,
			     const char *const *alive, size_t n_alive,
			     const ring_progress *progress, size_t n_progress,
			     const ring_reconcile_settings *settings, ring_change **changes_r,
			     size_t *n_changes_r);
/* Partition p's epoch (0 when p is out of range). */
uint64_t ring_map_partition_epoch(const ring_map *map, uint32_t p);

/* The JSON text of map (caller frees). */
char *ring_map_to_json(const ring_map *map);
/* Parse and validate a map (bounds, node indexes, replica lists naming
 * listed nodes, no duplicate replicas in a partition). Returns 0 and
 * *map_r, or -1 with *error_r (static text). */
int ring_map_from_json(const char *json, size_t len, ring_map **map_r, const char **error_r);

#endif
